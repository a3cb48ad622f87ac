"""Gradual unfreezing: train the head on a frozen backbone first, then fine-tune everything."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class GradualUnfreezing(Callback):
    """Keep the backbone frozen (weights and BN statistics) before ``unfreeze_at_epoch``, then unfreeze it.

    Works with any LightningModule that has ``set_backbone_frozen(frozen)`` and
    ``backbone_frozen`` (:class:`ssl_lightning.methods.Classifier`). The state is derived from
    the epoch number at the start of every epoch, so a run resumed from a checkpoint is frozen
    exactly when the uninterrupted run was. Unfreezing thaws only what freezing switched off:
    parameters the backbone was built frozen (``HFEncoder(freeze_layers=2)``, a LoRA model's base
    weights) stay frozen (see ``Classifier``, "Trainability"). The optimizer already holds the backbone's
    parameters (in their own group when ``backbone_lr_multiplier != 1``); frozen ones simply
    get no gradient. Warming up the head first keeps its random initial gradients from
    disturbing the pretrained features (Howard & Ruder 2018, ULMFiT, gradual unfreezing).

    Example config::

        trainer:
          callbacks+:
            - class_path: ssl_lightning.callbacks.finetuning.GradualUnfreezing
              init_args: {unfreeze_at_epoch: 3}

    Args:
        unfreeze_at_epoch: the first epoch (0-based) in which the backbone trains.
    """

    def __init__(self, unfreeze_at_epoch: int = 5) -> None:
        if unfreeze_at_epoch < 0:
            raise ValueError(f"unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        self.unfreeze_at_epoch = unfreeze_at_epoch

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not hasattr(pl_module, "set_backbone_frozen"):
            raise ValueError(
                f"GradualUnfreezing needs a module with set_backbone_frozen(); {type(pl_module).__name__} has none. "
                f"Use ssl_lightning.methods.Classifier."
            )

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        frozen = trainer.current_epoch < self.unfreeze_at_epoch
        if frozen != pl_module.backbone_frozen:
            pl_module.set_backbone_frozen(frozen)
            log.info("epoch %d: backbone %s", trainer.current_epoch, "frozen" if frozen else "unfrozen")
