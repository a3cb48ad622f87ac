"""Baseline and Baseline++ (Chen, Liu, Kira, Wang & Huang 2019, "A Closer Look at Few-shot Classification")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.episode_adaptation import fit_linear_head
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt


class Baseline(PretrainThenAdapt):
    """Pretrain a linear classifier on the base classes; per episode, fit a new one on the frozen support features.

    Chen et al. 2019, Sec. 3.1: pretraining is plain cross-entropy over the base classes (see
    :class:`PretrainThenAdapt`); at evaluation a fresh head of ``N`` outputs is trained on the
    support features ``float[T, N*K, D]`` with the backbone frozen, by SGD (momentum 0.9, dampening
    0.9, weight decay ``weight_decay``) in mini-batches of ``batch_size`` for ``epochs`` passes,
    and classifies the queries: ``float[T, N*Q, N]``. The ``T`` episodes of a batch are fitted side
    by side (:func:`~ssl_lightning.methods.episode_adaptation.fit_linear_head`). The heads start from
    a generator seeded with ``seed`` in every batch, so evaluation is deterministic. Inductive. With
    ``head: cosine`` pretraining and adaptation both use the cosine classifier: that is
    :class:`BaselinePlusPlus`. Defaults are Chen et al.'s (``baselinefinetune.py``).

    Example config (Chen et al.'s Conv-4 on miniImageNet pretrains 400 epochs with Adam 1e-3)::

        model:
          class_path: ssl_lightning.methods.Baseline
          init_args:
            backbone:
              class_path: ssl_lightning.nets.conv4.Conv4
              init_args: {num_classes: 0, in_chans: 3, input_size: 84}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

    Args:
        backbone: feature extractor (``num_classes: 0``).
        epochs: passes over the support set per episode.
        batch_size: support mini-batch size of the per-episode fit.
        lr: SGD learning rate of the per-episode fit.
        weight_decay: its weight decay.
        seed: seed of the heads' initialisation and of the support order.
        **pretrain_args: :class:`~ssl_lightning.methods.pretrain_adapt.PretrainThenAdapt`'s arguments
            (``num_base_classes``, ``head``, ``cosine_scale``, ``optimizer``, ...), documented there.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        epochs: int = 100,
        batch_size: int = 4,
        lr: float = 0.01,
        weight_decay: float = 0.001,
        seed: int = 0,
        **pretrain_args: Any,
    ) -> None:
        super().__init__(backbone, **pretrain_args)
        if epochs < 0 or batch_size < 1 or lr <= 0:
            raise ValueError(f"need epochs >= 0, batch_size >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
        self.epochs, self.batch_size, self.lr, self.weight_decay, self.seed = epochs, batch_size, lr, weight_decay, seed

    def adapts_at_evaluation(self) -> bool:
        return True

    def episode_logits(self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
        return fit_linear_head(
            support,
            support_y,
            query,
            n_way,
            cosine=self.head_type == "cosine",
            scale=self.cosine_scale,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            generator=torch.Generator().manual_seed(self.seed),
        )


class BaselinePlusPlus(Baseline):
    """Baseline++ (Chen et al. 2019, Sec. 3.2): :class:`Baseline` with the cosine classifier in both stages.

    Logits ``cosine_scale * cos(f, w_c)`` with weight-normalised class weights
    (:class:`~ssl_lightning.methods.pretrain_adapt.CosineClassifier`) over the base classes in pretraining
    and over the ``N`` ways in each episode's fit, which reduces intra-class variation. Shapes as
    :class:`Baseline`; inductive.

    Example config (Chen et al.'s miniImageNet Conv-4: 48.2 % 1-shot, 66.4 % 5-shot; a ResNet-12 here)::

        model:
          class_path: ssl_lightning.methods.BaselinePlusPlus
          init_args:
            cosine_scale: 2.0
            epochs: 100
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}

    Args:
        backbone: feature extractor (``num_classes: 0``).
        cosine_scale: fixed scale of the cosines; Chen et al. use 2 for up to 200 classes (their
            miniImageNet and CUB runs, and every episode's head) and 10 above.
        **baseline_args: :class:`Baseline`'s arguments (``epochs``, ``lr``, ``optimizer``, ...) except ``head``.
    """

    derived_arguments = ("head",)

    def __init__(self, backbone: nn.Module, *, cosine_scale: float = 2.0, **baseline_args: Any) -> None:
        super().__init__(backbone, head="cosine", cosine_scale=cosine_scale, **baseline_args)
