"""Hyperparameter saving that keeps checkpoints loadable with ``weights_only=True``."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import lightning.pytorch as pl
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters


def save_plain_hyperparameters(module: pl.LightningModule, objects: Sequence[str], derived: Sequence[str] = ()) -> None:
    """Save the ``__init__`` arguments of ``module`` as plain types.

    Called from a base class's ``__init__``, Lightning collects the arguments of every subclass
    ``__init__`` on the way there (those that call ``super().__init__``), the ``**kwargs`` they
    forward included, so one call in the base saves the whole chain.

    Under LightningCLI the arguments arrive as their config (class paths and init args:
    plain dicts), which ``load_from_checkpoint`` re-instantiates, so everything is kept.
    Built in Python, the object arguments named in ``objects`` (networks, optimizer
    factories) would be pickled into the checkpoint; they are left out, and the caller passes
    them again to ``load_from_checkpoint``. ``derived`` names base-class arguments that a
    subclass computes itself instead of taking them (``FeatureProbe`` sets ``finetune``); they
    are never saved, since the subclass would receive them twice on ``load_from_checkpoint``.
    """
    from_cli = _given_hyperparameters.get() is not None
    # frame=caller's __init__ so Lightning collects that method's arguments, not ours.
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    ignore = list(derived) if from_cli else [*objects, *derived]
    module.save_hyperparameters(ignore=ignore or None, frame=caller)
