"""The one ``configure_optimizers`` of the methods: an optimizer (and scheduler) from LightningCLI's callables."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

#: What an optimizer is built from: parameters, or parameter groups (dicts with ``"params"``). A group may
#: carry ``"lr_scale"``: its learning rate becomes the optimizer's times that factor.
ParameterSpec = Iterable[nn.Parameter] | list[dict[str, Any]]


def build_optimizer(
    parameters: ParameterSpec, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None = None
) -> Any:
    """What ``configure_optimizers`` returns: the optimizer, or ``{"optimizer", "lr_scheduler"}``.

    ``lr_scale`` of a group is applied after the optimizer is built (the learning rate lives in the
    callable's init args, e.g. ``torch.optim.Adam`` with ``lr: 0.001`` from YAML) and removed from the
    group, so the optimizer's groups are exactly those of an optimizer built by hand; the scheduler
    is built afterwards and sees the scaled rates as the groups' initial rates.

    Example::

        optimizer = build_optimizer([{"params": body, "lr_scale": 0.1}, {"params": head}], torch.optim.Adam)

    Args:
        parameters: the parameters or parameter groups to optimize.
        optimizer: builds the optimizer from ``parameters`` (LightningCLI fills it from YAML).
        lr_scheduler: optional; builds a scheduler from the optimizer (Lightning steps it every epoch).
    """
    built = optimizer(parameters)
    for group in built.param_groups:
        group["lr"] *= group.pop("lr_scale", 1.0)
    if lr_scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": lr_scheduler(built)}


class OptimizerFromCallables(pl.LightningModule):
    """``configure_optimizers`` for every method: ``optimizer_factory`` over :meth:`optimizer_parameters`.

    A method sets ``self.optimizer_factory`` and ``self.scheduler_factory`` (its ``optimizer`` and
    ``lr_scheduler`` arguments) and overrides :meth:`optimizer_parameters` only when it trains a
    part of itself (FixMatch: not its EMA copy) or needs parameter groups (Classifier's
    ``backbone_lr_multiplier``).
    """

    optimizer_factory: OptimizerCallable
    scheduler_factory: LRSchedulerCallable | None

    def optimizer_parameters(self) -> ParameterSpec:
        """The parameters (or groups) the optimizer updates; all of the module's by default."""
        return self.parameters()

    def configure_optimizers(self) -> Any:
        return build_optimizer(self.optimizer_parameters(), self.optimizer_factory, self.scheduler_factory)
