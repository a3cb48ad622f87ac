"""Meta-Baseline (Chen, Liu, Xu, Darrell & Wang 2021, "Meta-Baseline: Exploring Simple Meta-Learning for
Few-Shot Learning")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.episodic import EpisodicModule
from ssl_lightning.methods.functional import cosine_logits, prototypes
from ssl_lightning.nets.head import pooled_features


class MetaBaseline(EpisodicModule):
    """A cosine ProtoNet with a learnable temperature, meta-trained on episodes from a classifier-pretrained backbone.

    Chen et al. 2021, Sec. 3: stage one is the Classifier-Baseline (pretrain a linear classifier on
    all base classes: :class:`~ssl_lightning.methods.baseline.Baseline`, ``RFS`` or ``Classifier``
    with this backbone); stage two, this class, starts from those weights (``backbone_checkpoint``:
    the stage-one checkpoint) and trains on **episodes** with the logits ``tau * cos(f(q), p_c)``
    between each query's embedding and the mean support embedding of each class, ``tau`` learnt from
    ``temperature`` (10 in the paper). Evaluation classifies in the same way. Inductive.

    Shapes per episode: ``support_x: float[N*K, C, H, W]``, ``query_x: float[N*Q, C, H, W]`` ->
    embeddings ``float[N*K, D]``, ``float[N*Q, D]`` -> prototypes ``float[N, D]`` -> logits
    ``float[N*Q, N]``; batches hold ``T`` episodes (see :class:`EpisodicModule`).

    Example config (the paper's miniImageNet meta-stage: SGD 0.001, momentum 0.9, weight decay 5e-4,
    4 episodes of 5 ways x 15 queries per batch)::

        model:
          class_path: ssl_lightning.methods.MetaBaseline
          init_args:
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}
            backbone_checkpoint: lightning_logs/version_0/checkpoints/last.ckpt   # the stage-one classifier
            optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.001, momentum: 0.9, weight_decay: 0.0005}}

    Args:
        backbone: embedding network (timm contract); its head is not used (``num_classes: 0``).
        temperature: initial tau.
        learn_temperature: learn tau with the backbone (the paper does).
        **episodic_args: ``optimizer``, ``lr_scheduler`` and ``backbone_checkpoint`` of
            :class:`~ssl_lightning.methods.episodic.EpisodicModule`, documented there.
    """

    def __init__(
        self, backbone: nn.Module, *, temperature: float = 10.0, learn_temperature: bool = True, **episodic_args: Any
    ) -> None:
        super().__init__(backbone, **episodic_args)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = nn.Parameter(torch.tensor(float(temperature)), requires_grad=learn_temperature)

    def forward(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> embeddings float[B, D]."""
        return pooled_features(self.backbone, x)

    def task_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        support, queries = self.embed_episode(support_x, query_x)
        return self.temperature * cosine_logits(queries, prototypes(support, support_y, n_way), scale=1.0)
