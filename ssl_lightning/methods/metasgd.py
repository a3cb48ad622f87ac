"""Meta-SGD (Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning")."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from ssl_lightning.methods.maml import MAML
from ssl_lightning.utils.hparams import save_plain_hyperparameters


class MetaSGD(MAML):
    """MAML with a learned step size for every parameter entry, meta-learned with the initialization.

    Li et al. 2017, Eq. 2-3: ``theta' = theta - alpha o grad L_support(theta)`` where
    ``alpha`` has the shape of ``theta`` and the outer optimizer updates ``theta`` and
    ``alpha`` together on the query loss. The paper uses one inner step and draws ``alpha``
    uniformly from ``[0.005, 0.1]`` (``inner_lr_range``); a constant start (``inner_lr``) is
    also possible. Even with ``first_order=True`` ``alpha`` gets a gradient, through the
    update itself.

    Shapes and batches as in :class:`MAML`; ``inner_lrs[key]`` has the shape of the adapted
    parameter it scales (``key`` is the parameter name with ``.`` replaced by ``_``).

    Example config::

        model:
          class_path: ssl_lightning.methods.metasgd.MetaSGD
          init_args:
            backbone: {class_path: ssl_lightning.nets.conv4.Conv4, init_args: {num_classes: 5, input_size: 28}}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}
            inner_lr_range: [0.005, 0.1]
            inner_steps: 1

    Args:
        backbone: see :class:`MAML`.
        optimizer: builds the meta-optimizer from all parameters, the step sizes included.
        lr_scheduler: see :class:`MAML`.
        inner_lr: constant initial step size, used when ``inner_lr_range`` is ``None``.
        inner_steps: see :class:`MAML`.
        test_inner_steps: see :class:`MAML`.
        first_order: see :class:`MAML`.
        inner_lr_range: ``(low, high)``: draw the initial step sizes uniformly from it.
        compile_backend: see :class:`MAML`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        test_inner_steps: int | None = None,
        first_order: bool = False,
        inner_lr_range: tuple[float, float] | None = (0.005, 0.1),
        compile_backend: str | None = None,
    ) -> None:
        super().__init__(
            backbone, optimizer, lr_scheduler, inner_lr, inner_steps, test_inner_steps, first_order, compile_backend
        )
        save_plain_hyperparameters(self, ["backbone", "optimizer", "lr_scheduler"])
        if inner_lr_range is not None and not 0 <= inner_lr_range[0] <= inner_lr_range[1]:
            raise ValueError(f"inner_lr_range must be (low, high) with 0 <= low <= high, got {inner_lr_range}")
        self.inner_lrs = nn.ParameterDict()
        for name, param in self.adapted_module.named_parameters():
            alpha = torch.full_like(param, inner_lr, requires_grad=False)
            if inner_lr_range is not None:
                alpha.uniform_(*inner_lr_range)  # global RNG, like every nn.Module initialization
            self.inner_lrs[name.replace(".", "_")] = nn.Parameter(alpha)

    def inner_learning_rates(self) -> Mapping[str, Tensor]:
        return {name: self.inner_lrs[name.replace(".", "_")] for name, _ in self.adapted_module.named_parameters()}
