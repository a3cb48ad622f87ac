"""Contrastive self-supervised pretraining: SimCLR (Chen et al. 2020) on any backbone, with a kNN monitor."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.selfsup_base import SelfSupervisedModule, knn_predict, knn_top1

__all__ = ["SimCLR", "knn_predict", "knn_top1", "simclr_projection_head"]  # the kNN votes moved to selfsup_base


def simclr_projection_head(num_features: int, hidden: int, projection_dim: int) -> nn.Module:
    """SimCLR's head ``Linear -> BatchNorm -> ReLU -> Linear`` (Chen et al. 2020), lightly's ``ProjectionHead``.

    Not ``SimCLRProjectionHead``: that one drops the first ``Linear``'s bias (redundant before batch
    norm), which changes the random initialization drawn after it, so the README's SimCLR numbers
    would no longer reproduce from their seeds. This is the head those runs trained, module for module.

    Shapes: ``float[B, num_features] -> float[B, projection_dim]``.
    """
    projection_heads = lightly_module("lightly.models.modules.heads", "SimCLR")
    return projection_heads.ProjectionHead(
        [
            (num_features, hidden, nn.BatchNorm1d(hidden), nn.ReLU(), True),
            (hidden, projection_dim, None, None, True),
        ]
    )


def _load_sequential_projection_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Checkpoints from before lightly's head held the same layers as ``projection.<i>.*``; now ``layers.<i>``."""
    for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isdigit()]:
        state_dict[f"{prefix}layers.{key[len(prefix) :]}"] = state_dict.pop(key)


class SimCLR(SelfSupervisedModule):
    """SimCLR: agree on two augmented views of an image through a projection head (Chen et al. 2020).

    The encoder is any contract backbone with ``num_classes=0`` (its head is reset to the
    identity if not); the projection head (:func:`simclr_projection_head`, lightly's
    ``ProjectionHead``: ``Linear -> BatchNorm -> ReLU -> Linear``) is on its ``forward_features``; the loss is lightly's
    ``NTXentLoss`` (see :func:`~ssl_lightning.methods.losses.nt_xent`; negatives gathered across DDP
    ranks). lightly comes with the ``selfsup`` extra (``pip install 'ssl_lightning[selfsup]'``). Training batches are
    ``(x1: float[B, C, H, W], x2: float[B, C, H, W], y: ignored)`` from
    :class:`~ssl_lightning.data.semisup.TwoViewDataModule`.

    The kNN monitor (``val/knn_acc``, ``test/knn_acc``) and the encoder export (``encoder_path``; the
    file, or any checkpoint of this module, is a valid ``Classifier(backbone_checkpoint=...)``) come
    from :class:`~ssl_lightning.methods.selfsup_base.SelfSupervisedModule`.

    Shapes: ``forward(x: float[B, C, H, W]) -> features float[B, num_features]``.

    Example config::

        model:
          class_path: ssl_lightning.methods.simclr.SimCLR
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 3, input_size: 32}}
            temperature: 0.5
            encoder_path: checkpoints/simclr_cifar10_encoder.pt
        data:
          class_path: ssl_lightning.data.semisup.TwoViewDataModule
          init_args: {source: {class_path: ssl_lightning.data.CIFAR10DataModule, init_args: {batch_size: 256}}}

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        projection_dim: output size of the projection head.
        hidden_dim: hidden size of the projection head (``None``: the encoder's ``num_features``).
        temperature: NT-Xent temperature.
        gather_distributed: under DDP, negatives come from every rank's batch.
        **base_args: :class:`~ssl_lightning.methods.selfsup_base.SelfSupervisedModule`'s arguments
            (``optimizer``, ``lr_scheduler``, ``knn_k``, ``knn_temperature``, ``encoder_path``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.5,
        gather_distributed: bool = True,
        **base_args: Any,
    ) -> None:
        super().__init__(encoder, **base_args)
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        self.projection = simclr_projection_head(self.num_features, hidden_dim or self.num_features, projection_dim)
        self.projection.register_load_state_dict_pre_hook(_load_sequential_projection_keys)
        self.criterion = lightly_module("lightly.loss", "SimCLR").NTXentLoss(
            temperature, gather_distributed=gather_distributed
        )

    def pretraining_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        # One pass over both views (batch norm sees them together, as with a global-BN-free single GPU run).
        z1, z2 = self.projection(self(torch.cat([x1, x2]))).chunk(2)
        return self.criterion(z1, z2)
