"""RFS-simple (Tian, Wang, Krishnan, Tenenbaum & Isola 2020, "Rethinking Few-Shot Image Classification: a Good
Embedding Is All You Need?")."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ssl_lightning.methods.episode_adaptation import logistic_regression_logits
from ssl_lightning.methods.pretrain_adapt import PretrainThenAdapt


class RFS(PretrainThenAdapt):
    """Pretrain a linear classifier on the base classes; per episode, logistic regression on L2-normalised features.

    Tian et al. 2020, Sec. 3 ("RFS-simple", no distillation): pretraining is cross-entropy over the
    merged base classes with a linear head (:class:`PretrainThenAdapt`); at evaluation the frozen
    features ``float[T, N*K, D]`` are L2-normalised and a multinomial logistic regression
    (scikit-learn's ``LogisticRegression(C=1.0)`` objective, as in RFS's ``eval/meta_eval.py``) is
    fitted per episode, all ``T`` episodes at once with L-BFGS in torch
    (:func:`~ssl_lightning.methods.episode_adaptation.logistic_regression_logits`); query logits
    ``float[T, N*Q, N]``. Inductive. Defaults are RFS's (``C=1``, up to 1,000 iterations).

    Example config (RFS's ResNet-12 on miniImageNet: SGD 0.05, momentum 0.9, weight decay 5e-4, 100 epochs
    of batches of 64, learning rate x0.1 at epochs 60, 80)::

        model:
          class_path: ssl_lightning.methods.RFS
          init_args:
            backbone: {class_path: ssl_lightning.nets.resnet12.ResNet12, init_args: {num_classes: 0}}
            optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}}
            lr_scheduler: {class_path: torch.optim.lr_scheduler.MultiStepLR, init_args: {milestones: [60, 80]}}

    Args:
        backbone: feature extractor (``num_classes: 0``).
        C: inverse L2 regularisation strength (scikit-learn's ``C``).
        max_iter: L-BFGS iterations per batch of episodes (it stops earlier at convergence).
        **pretrain_args: :class:`~ssl_lightning.methods.pretrain_adapt.PretrainThenAdapt`'s arguments
            (``num_base_classes``, ``head``, ``optimizer``, ...), documented there.
    """

    def __init__(self, backbone: nn.Module, *, C: float = 1.0, max_iter: int = 1000, **pretrain_args: Any) -> None:
        super().__init__(backbone, **pretrain_args)
        if C <= 0 or max_iter < 1:
            raise ValueError(f"need C > 0 and max_iter >= 1, got {C}, {max_iter}")
        self.C, self.max_iter = C, max_iter

    def adapts_at_evaluation(self) -> bool:
        return True

    def episode_logits(self, support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
        return logistic_regression_logits(support, support_y, query, n_way, C=self.C, max_iter=self.max_iter)
