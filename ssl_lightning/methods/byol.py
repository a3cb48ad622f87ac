"""BYOL: predict a momentum target's projection of another view, no negatives (Grill et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.momentum import MomentumSelfSupervised


class BYOL(MomentumSelfSupervised):
    """Bootstrap Your Own Latent (Grill et al. 2020), composed from lightly's parts.

    The online network is the encoder, a projection head and a prediction head (lightly's
    ``BYOLProjectionHead`` and ``BYOLPredictionHead``: ``Linear -> BatchNorm -> ReLU -> Linear``); the
    target network is a momentum copy of encoder and projection head
    (:class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`: cosine momentum of the global
    step, no gradients, not in the optimizer, in the state dict). The loss is the symmetrised
    negative cosine similarity of each view's prediction with the other view's target projection
    (lightly's ``NegativeCosineSimilarity``, Eq. 2; ``-1`` is perfect agreement), as in lightly's
    BYOL example. Each network sees both views in one pass, so their batch norms see ``2B`` images.
    The loss is per sample, so under DDP nothing is gathered (batch norm is per rank unless
    ``trainer.sync_batchnorm``). The online encoder is the one monitored and exported.

    Shapes: batch ``(x1, x2: float[B, C, H, W], y: ignored)``; ``forward(x) -> float[B, num_features]``.

    Example config::

        model:
          class_path: ssl_lightning.methods.byol.BYOL
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 1, input_size: 8}}
            projection_dim: 64
            momentum_start: 0.99
            encoder_path: checkpoints/byol_digits_encoder.pt
        data:
          class_path: ssl_lightning.data.two_view.TwoViewDataModule
          init_args: {source: {class_path: ssl_lightning.data.DigitsDataModule, init_args: {batch_size: 256}}}

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        projection_dim: output size of the projection and prediction heads (256 in the paper).
        hidden_dim: hidden size of both heads (4096 in the paper; ``None``: the encoder's ``num_features``).
        **momentum_args: :class:`~ssl_lightning.methods.momentum.MomentumSelfSupervised`'s arguments
            (``momentum_start``, ``momentum_end``) and the base's (``optimizer``, ``knn_k``, ``encoder_path``, ...).
    """

    def __init__(
        self, encoder: nn.Module, projection_dim: int = 256, hidden_dim: int | None = None, **momentum_args: Any
    ) -> None:
        super().__init__(encoder, **momentum_args)
        if projection_dim < 1:
            raise ValueError(f"projection_dim must be >= 1, got {projection_dim}")
        heads = lightly_module("lightly.models.modules.heads", "BYOL")
        hidden = hidden_dim or self.num_features
        self.projection = heads.BYOLProjectionHead(self.num_features, hidden, projection_dim)
        self.prediction = heads.BYOLPredictionHead(projection_dim, hidden, projection_dim)
        self.add_teacher("encoder", "encoder_momentum")
        self.add_teacher("projection", "projection_momentum")
        self.criterion = lightly_module("lightly.loss", "BYOL").NegativeCosineSimilarity()

    def pretraining_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        views = torch.cat([x1, x2])
        p1, p2 = self.prediction(self.projection(self(views))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.projection_momentum(self.encoder_momentum.forward_features(views)).chunk(2)
        return 0.5 * (self.criterion(p1, z2) + self.criterion(p2, z1))
