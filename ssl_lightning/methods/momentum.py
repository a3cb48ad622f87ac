"""A momentum teacher for self-supervised methods: BYOL's target, MoCo's key encoder, DINO's teacher.

The teacher is a frozen copy of a student network, moved towards it by lightly's ``update_momentum``
(``t = m * t + (1 - m) * s``) with ``m`` from a cosine schedule of the trainer's **global step**
(Grill et al. 2020, Sec. 3.2), so a resumed run continues the same schedule. Teachers are ordinary
submodules (their weights and buffers are in the state dict: checkpoints resume exactly), their
parameters never require gradients and are never handed to the optimizer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.optim import ParameterSpec
from ssl_lightning.methods.selfsup_base import SelfSupervisedModule


def momentum_copy(network: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A frozen copy of ``network`` (lightly's ``deactivate_requires_grad``): the teacher at step 0.

    ``copy.deepcopy`` by default; ``build`` makes a module of the same architecture instead, into which
    ``network``'s state dict is loaded (for modules that cannot be deep-copied, such as those with
    ``torch.nn.utils.weight_norm``: DINO's head).
    """
    if build is None:
        teacher = copy.deepcopy(network)
    else:
        teacher = build()
        teacher.load_state_dict(network.state_dict())
    lightly_module("lightly.models.utils", "the momentum teacher").deactivate_requires_grad(teacher)
    return teacher


def cosine_momentum(step: int, total_steps: int, start: float, end: float = 1.0) -> float:
    """Momentum at ``step`` of ``total_steps``: ``end - (end - start) * (cos(pi * step / (total_steps - 1)) + 1) / 2``.

    BYOL's schedule (Grill et al. 2020, Sec. 3.2; DINO uses it too), computed by lightly's
    ``cosine_schedule``: ``start`` at step 0, ``end`` from the last step on (later steps keep ``end``).

    Example::

        >>> cosine_momentum(0, 101, 0.99), round(cosine_momentum(50, 101, 0.99), 6), cosine_momentum(100, 101, 0.99)
        (0.99, 0.995, 1.0)
    """
    if not 0.0 <= start <= end <= 1.0:
        raise ValueError(f"the momentum must rise within [0, 1]: need 0 <= start <= end <= 1, got {start}, {end}")
    scheduler = lightly_module("lightly.utils.scheduler", "the momentum schedule")
    return scheduler.cosine_schedule(min(step, total_steps), total_steps, start, end)


class MomentumSelfSupervised(SelfSupervisedModule):
    """A :class:`~ssl_lightning.methods.selfsup_base.SelfSupervisedModule` with momentum teachers of its students.

    A method builds its student networks, then calls :meth:`add_teacher` for each; at the start of
    every training step (once per optimizer step) every teacher moves towards its student with the
    momentum :meth:`momentum` of the global step, as lightly's examples do. Updating before the
    step's forward pass is the same sequence as updating after the previous optimizer step, and a
    checkpoint written after step ``k`` holds the teacher of step ``k``, so a resumed run repeats
    the uninterrupted one. Logs ``train/momentum``.

    Under DDP the students' weights are synchronised, so every rank's teacher weights stay equal (their
    batch-norm running statistics are per rank, like the students'; ``tests/test_ddp.py`` checks both ranks).

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        momentum_start: teacher momentum at step 0 (papers: BYOL and DINO 0.996, MoCo v2 0.999;
            runs of a few hundred steps want less, e.g. 0.99).
        momentum_end: momentum at the last step (1.0 in BYOL and DINO; equal to ``momentum_start``:
            constant, as in MoCo v2).
        **base_args: :class:`~ssl_lightning.methods.selfsup_base.SelfSupervisedModule`'s arguments.
    """

    def __init__(
        self, encoder: nn.Module, momentum_start: float = 0.99, momentum_end: float = 1.0, **base_args: Any
    ) -> None:
        super().__init__(encoder, **base_args)
        cosine_momentum(0, 1, momentum_start, momentum_end)  # checks the range now, not at the first step
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end
        self.teacher_names: list[tuple[str, str]] = []  # (student, teacher) attribute names
        self._teacher_step: int | None = None

    def add_teacher(self, student: str, teacher: str, build: Callable[[], nn.Module] | None = None) -> nn.Module:
        """Register ``self.<teacher>`` as a frozen copy of the submodule ``self.<student>`` (built by
        ``build`` if given, see :func:`momentum_copy`) and return it."""
        copied = momentum_copy(getattr(self, student), build)
        setattr(self, teacher, copied)
        self.teacher_names.append((student, teacher))
        return copied

    def teachers(self) -> list[nn.Module]:
        return [getattr(self, teacher) for _, teacher in self.teacher_names]

    def momentum(self) -> float:
        """The momentum of the current global step (:func:`cosine_momentum` over the run's optimizer steps)."""
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                f"{type(self).__name__}'s momentum schedule needs a finite run: "
                "set trainer.max_steps or trainer.max_epochs."
            )
        return cosine_momentum(self.global_step, int(total), self.momentum_start, self.momentum_end)

    def update_teachers(self, momentum: float) -> None:
        """``t = m * t + (1 - m) * s`` for every (student, teacher) pair (lightly's ``update_momentum``)."""
        utils = lightly_module("lightly.models.utils", "the momentum teacher")
        for student, teacher in self.teacher_names:
            utils.update_momentum(getattr(self, student), getattr(self, teacher), momentum)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x1, _ = self.two_views(batch)
        if self._teacher_step != self.global_step:  # once per optimizer step, also with gradient accumulation
            momentum = self.momentum()
            self.update_teachers(momentum)
            self._teacher_step = self.global_step
            self.log("train/momentum", momentum, on_step=True, on_epoch=False, batch_size=len(x1))
        return super().training_step(batch, batch_idx)

    def optimizer_parameters(self) -> ParameterSpec:
        """Every parameter but the teachers' (which only move by momentum)."""
        frozen = {id(p) for teacher in self.teachers() for p in teacher.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]
