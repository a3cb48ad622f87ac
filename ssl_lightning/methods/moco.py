"""MoCo v2: contrast queries with momentum keys and a queue of past keys (He et al. 2020; Chen et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.momentum import MomentumSelfSupervised


class MoCo(MomentumSelfSupervised):
    """MoCo v2 (Chen et al. 2020, "Improved baselines with momentum contrastive learning"), from lightly's parts.

    The query network is the encoder and lightly's ``MoCoProjectionHead`` (v2: ``Linear -> ReLU ->
    Linear``); the key network is its momentum copy
    (:class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`). The loss is InfoNCE
    (He et al. 2020, Eq. 1) with the positive key of the other view and ``queue_size`` negatives
    from a queue of past keys: lightly's ``NTXentLoss(memory_bank_size=(queue_size, projection_dim))``,
    symmetrised over the two views (both directions in one call, so both contrast with the queue of
    the previous steps; then this step's ``2B`` keys are enqueued). The queue is made a persistent
    buffer, so a checkpoint holds it (with its pointer) and a resumed run contrasts with the same
    keys. This is v2 with a queue, not v3 (no prediction head, no in-batch negatives).

    Under DDP: each rank's keys are gathered before they are enqueued (lightly's memory bank with
    ``gather_distributed``), so every rank holds the same queue; the key pass shuffles the batch
    across ranks (lightly's ``batch_shuffle_distributed``, MoCo's shuffling BN), which on one
    device changes nothing (batch norm sees the whole batch either way). The query encoder is the
    one monitored and exported.

    Shapes: batch ``(x1, x2: float[B, C, H, W], y: ignored)``; ``forward(x) -> float[B, num_features]``.

    Example config::

        model:
          class_path: ssl_lightning.methods.moco.MoCo
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 1, input_size: 8}}
            projection_dim: 64
            queue_size: 512
            temperature: 0.2
            encoder_path: checkpoints/moco_digits_encoder.pt

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        projection_dim: output size of the projection head (128 in the paper).
        hidden_dim: hidden size of the projection head (``None``: the encoder's ``num_features``, as v2's 2048).
        queue_size: number of past keys used as negatives (65,536 in the paper; below a few batches
            the queue holds mostly the keys of the last steps).
        temperature: InfoNCE temperature (0.2 in v2).
        batch_norm: batch norm after both layers of the projection head (v3's head; v2 has none).
        gather_distributed: under DDP, enqueue the keys of every rank (the queue is then the same on all).
        **momentum_args: :class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`'s arguments
            (``momentum_start``, ``momentum_end``; v2: 0.999 constant) and the base's (``optimizer``, ...).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        queue_size: int = 4096,
        temperature: float = 0.2,
        batch_norm: bool = False,
        gather_distributed: bool = True,
        **momentum_args: Any,
    ) -> None:
        super().__init__(encoder, **momentum_args)
        if projection_dim < 1 or queue_size < 1:
            raise ValueError(f"projection_dim and queue_size must be >= 1, got {projection_dim}, {queue_size}")
        heads = lightly_module("lightly.models.modules.heads", "MoCo")
        self.projection = heads.MoCoProjectionHead(
            self.num_features, hidden_dim or self.num_features, projection_dim, batch_norm=batch_norm
        )
        self.add_teacher("encoder", "encoder_momentum")
        self.add_teacher("projection", "projection_momentum")
        self.criterion = lightly_module("lightly.loss", "MoCo").NTXentLoss(
            temperature, memory_bank_size=(queue_size, projection_dim), gather_distributed=gather_distributed
        )
        # lightly keeps its memory bank out of the state dict; the queue is part of the training state.
        queue = self.criterion.memory_bank
        queue.register_buffer("bank", queue.bank, persistent=True)
        queue.register_buffer("bank_ptr", queue.bank_ptr, persistent=True)

    @property
    def queue(self) -> Tensor:
        """The negatives' queue ``float[queue_size, projection_dim]`` (normalised keys)."""
        return self.criterion.memory_bank.bank

    def keys(self, views: Tensor) -> Tensor:
        """Momentum keys ``float[N, projection_dim]`` of ``views: float[N, C, H, W]`` (no gradient)."""
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        utils = lightly_module("lightly.models.utils", "MoCo")
        with torch.no_grad():
            if distributed:  # shuffling BN (He et al. 2020, Sec. 3.3)
                views, shuffle = utils.batch_shuffle_distributed(views)
            keys = self.projection_momentum(self.encoder_momentum.forward_features(views))
            return utils.batch_unshuffle_distributed(keys, shuffle) if distributed else keys

    def pretraining_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        views = torch.cat([x1, x2])
        q1, q2 = self.projection(self(views)).chunk(2)
        k1, k2 = self.keys(views).chunk(2)
        # Both directions in one call: the mean over 2B queries is the symmetrised loss, and both see the queue
        # of before this step (two calls would enqueue k2 first, the same view's key, as a negative of q2).
        return self.criterion(torch.cat([q1, q2]), torch.cat([k2, k1]))
