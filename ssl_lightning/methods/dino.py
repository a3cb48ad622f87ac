"""DINO: self-distillation of a momentum teacher's centred, sharpened outputs, no labels (Caron et al. 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.momentum import MomentumSelfSupervised


class DINO(MomentumSelfSupervised):
    """DINO (Caron et al. 2021) on two global views and optional multi-crop local views, from lightly's parts.

    Student: the encoder and lightly's ``DINOProjectionHead`` (3-layer MLP, l2-normalised bottleneck,
    weight-normalised last layer of ``output_dim`` prototypes); teacher: their momentum copy
    (:class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`). The loss is lightly's
    ``DINOLoss``: cross-entropy of the student's softmax (``student_temp``) against the teacher's
    centred and sharpened softmax (``teacher_temp``) of the *other* view (Alg. 1); the centre is an
    EMA (``center_momentum``) of the teacher outputs, a buffer of the loss (in the state dict, so a
    checkpoint resumes it exactly). lightly averages the batch centre over DDP ranks (an
    ``all_reduce``), so every rank keeps the same centre. Multi-crop (the paper's default): with
    :class:`~ssl_lightning.data.two_view.TwoViewDataModule`'s ``local_crops = V``, the student also
    sees ``V`` small local views and learns to predict the teacher's output on the global views from
    each of them; the teacher sees only the two global views (Sec. 3.1); the encoder must accept the
    smaller input (global pooling: Conv4, ResNets; LeNet has a fixed input size). The digits YAML keeps
    two views: a local crop of an 8x8 digit is a few pixels. The teacher temperature can warm up
    linearly from ``warmup_teacher_temp`` over ``warmup_teacher_temp_epochs`` epochs (paper: 0.04 ->
    0.07 over 30). The last layer's gradients are dropped for the first ``freeze_last_layer_steps``
    optimizer steps (the paper freezes it during the first epoch). The student encoder is the one
    monitored and exported (the paper evaluates the teacher).

    Shapes: batch ``(x1, x2: float[B, C, H, W], y: ignored[, local: float[V, B, C, s, s]])``;
    ``forward(x) -> float[B, num_features]``.

    Example config::

        model:
          class_path: ssl_lightning.methods.dino.DINO
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 1, input_size: 8}}
            hidden_dim: 256
            bottleneck_dim: 64
            output_dim: 1024
            batch_norm: true
            momentum_start: 0.99
            encoder_path: checkpoints/dino_digits_encoder.pt

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        hidden_dim: hidden size of the head's MLP (2048 in the paper).
        bottleneck_dim: size of the l2-normalised bottleneck (256).
        output_dim: number of prototypes ``K`` of the last layer (65,536).
        batch_norm: batch norm in the head's MLP (DINO's ``use_bn_in_head``; off for ViTs). The digits
            YAML sets it: with LeNet and no batch norm the 600-step run collapsed to uniform outputs.
        teacher_temp: teacher softmax temperature (0.04-0.07 in the paper), after the warm-up.
        warmup_teacher_temp: teacher temperature at epoch 0 (``None``: ``teacher_temp``, no warm-up).
        warmup_teacher_temp_epochs: epochs of the linear warm-up to ``teacher_temp``.
        student_temp: student softmax temperature (0.1).
        center_momentum: EMA rate of the teacher centre (0.9).
        freeze_last_layer_steps: optimizer steps during which the last layer does not train.
        **momentum_args: :class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`'s arguments
            (``momentum_start``, ``momentum_end``; paper 0.996 -> 1) and the base's (``optimizer``, ...).
    """

    def __init__(
        self,
        encoder: nn.Module,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        output_dim: int = 65536,
        batch_norm: bool = False,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float | None = None,
        warmup_teacher_temp_epochs: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        freeze_last_layer_steps: int = 0,
        **momentum_args: Any,
    ) -> None:
        super().__init__(encoder, **momentum_args)
        if min(hidden_dim, bottleneck_dim, output_dim) < 1 or teacher_temp <= 0 or student_temp <= 0:
            raise ValueError(
                "DINO needs hidden_dim, bottleneck_dim, output_dim >= 1 and temperatures > 0, got "
                f"{hidden_dim}, {bottleneck_dim}, {output_dim}, {teacher_temp}, {student_temp}"
            )
        heads = lightly_module("lightly.models.modules.heads", "DINO")
        # lightly's freeze_last_layer counts what cancel_last_layer_gradients is given: here optimizer steps.
        head_args = (self.num_features, hidden_dim, bottleneck_dim, output_dim, batch_norm, freeze_last_layer_steps)
        self.head = heads.DINOProjectionHead(*head_args)
        self.add_teacher("encoder", "encoder_momentum")
        # weight_norm's computed weight cannot be deep-copied: the teacher head is built and loaded instead
        self.add_teacher("head", "head_momentum", build=lambda: heads.DINOProjectionHead(*head_args))
        if warmup_teacher_temp_epochs < 0 or (warmup_teacher_temp is not None and warmup_teacher_temp <= 0):
            raise ValueError(
                "DINO needs warmup_teacher_temp > 0 and warmup_teacher_temp_epochs >= 0, got "
                f"{warmup_teacher_temp} and {warmup_teacher_temp_epochs}"
            )
        self.criterion = lightly_module("lightly.loss", "DINO").DINOLoss(
            output_dim,
            warmup_teacher_temp=teacher_temp if warmup_teacher_temp is None else warmup_teacher_temp,
            teacher_temp=teacher_temp,
            warmup_teacher_temp_epochs=warmup_teacher_temp_epochs,
            student_temp=student_temp,
            center_momentum=center_momentum,
        )

    @property
    def center(self) -> Tensor:
        """The teacher centre ``float[1, 1, output_dim]``."""
        return self.criterion.center

    takes_local_views = True

    def pretraining_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self._loss(x1, x2, None)

    def multi_crop_loss(self, x1: Tensor, x2: Tensor, local: Tensor) -> Tensor:
        return self._loss(x1, x2, local)

    def _loss(self, x1: Tensor, x2: Tensor, local: Tensor | None) -> Tensor:
        views = torch.cat([x1, x2])
        student = list(self.head(self(views)).chunk(2))
        if local is not None:  # local: float[V, B, C, s, s], one forward over all V views
            student += list(self.head(self(local.flatten(0, 1))).chunk(len(local)))
        with torch.no_grad():
            teacher = self.head_momentum(self.encoder_momentum.forward_features(views)).chunk(2)
        # lightly's DINOLoss skips the same-view pairs (teacher i, student i) and updates the centre from the
        # teacher outputs; the epoch sets the warmed-up teacher temperature.
        return self.criterion(list(teacher), student, epoch=self.current_epoch)

    def on_after_backward(self) -> None:
        self.head.cancel_last_layer_gradients(self.global_step)
