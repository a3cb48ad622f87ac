"""Prototypical Networks (Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning")."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ssl_lightning.methods.episodic import EpisodicModule
from ssl_lightning.methods.functional import Distance, distance_logits, prototypes
from ssl_lightning.nets.head import pooled_features


class ProtoNet(EpisodicModule):
    """Classify each query by its distance to the class means of the embedded support set.

    Snell et al. 2017, Alg. 1: embed support and queries with the backbone's
    ``forward_features``, average the support embeddings of each class into a prototype
    (Eq. 1), and use the negative squared euclidean distances to the prototypes as logits
    (Eq. 2). The backbone's head is not used: give it ``num_classes: 0``.

    Shapes per episode: ``support_x: float[N*K, C, H, W]``, ``query_x: float[N*Q, C, H, W]``
    -> embeddings ``float[N*K, D]``, ``float[N*Q, D]`` -> prototypes ``float[N, D]`` ->
    logits ``float[N*Q, N]``. Batches hold ``T`` such episodes (see :class:`EpisodicModule`).

    Example config::

        model:
          class_path: ssl_lightning.methods.protonet.ProtoNet
          init_args:
            backbone: {class_path: ssl_lightning.nets.conv4.Conv4, init_args: {num_classes: 0, input_size: 28}}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

    Args:
        backbone: embedding network (timm contract); only ``forward_features`` is used.
        distance: ``"squared_euclidean"`` (the paper's choice, Sec. 2.3), ``"euclidean"`` or
            ``"cosine"`` (scaled cosine similarity, which the paper found worse).
        **episodic_args: ``optimizer``, ``lr_scheduler`` (Snell et al. halve the learning rate every
            2000 episodes) and ``backbone_checkpoint`` of :class:`~ssl_lightning.methods.episodic.EpisodicModule`,
            documented there; LightningCLI reads the ``super().__init__`` call and types and checks them
            as this class's own.
    """

    def __init__(self, backbone: nn.Module, *, distance: Distance = "squared_euclidean", **episodic_args: Any) -> None:
        super().__init__(backbone, **episodic_args)
        if distance not in ("squared_euclidean", "euclidean", "cosine"):
            raise ValueError(f"distance must be 'squared_euclidean', 'euclidean' or 'cosine', got {distance!r}")
        self.distance: Distance = distance

    def forward(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> embeddings float[B, D] (a raw timm model's feature maps are pooled)."""
        return pooled_features(self.backbone, x)

    def task_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        support, queries = self.embed_episode(support_x, query_x)
        return distance_logits(queries, prototypes(support, support_y, n_way), self.distance)
