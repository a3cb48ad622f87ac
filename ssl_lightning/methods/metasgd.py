"""Meta-SGD (Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.maml import MAML


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
            inner_lr_range: [0.005, 0.1]   # Li et al.'s initial step sizes
            inner_steps: 1
            backbone: {class_path: ssl_lightning.nets.conv4.Conv4, init_args: {num_classes: 5, input_size: 28}}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}

    Args:
        backbone: see :class:`MAML`; the meta-optimizer updates its parameters and the step sizes.
        inner_lr: constant initial step size, used when ``inner_lr_range`` is ``None``.
        inner_lr_range: ``(low, high)``: draw the initial step sizes uniformly from it.
        **maml_args: :class:`~ssl_lightning.methods.maml.MAML`'s other arguments (``optimizer``,
            ``inner_steps``, ``first_order``, ...), documented there; LightningCLI reads the
            ``super().__init__`` call and types and checks them as this class's own.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        inner_lr: float = 0.01,
        inner_lr_range: tuple[float, float] | None = (0.005, 0.1),
        **maml_args: Any,
    ) -> None:
        super().__init__(backbone, inner_lr=inner_lr, **maml_args)
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
