"""Moved to :mod:`ssl_lightning.utils.hparams` (a neutral helper every layer may import); this path is
kept for one release."""

from ssl_lightning.utils.hparams import save_plain_hyperparameters

__all__ = ["save_plain_hyperparameters"]
