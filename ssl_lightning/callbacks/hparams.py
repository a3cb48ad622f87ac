"""One TensorBoard HParams entry per run: its hyperparameters and its best ``val/acc`` / ``test/acc``.

Lightning's own hyperparameter logging writes every run with ``hp_metric = -1`` (its
placeholder) and LightningCLI's ``_instantiator`` / ``_class_path`` bookkeeping as columns,
so the HParams tab cannot compare runs. :class:`HParamsSummary` writes the run's
hyperparameters once, when its first loop starts, flattened to ``model/...`` and ``data/...``
columns (``model/optimizer/lr``, ``data/labels_per_class``) plus ``seed``, without the
``_``-prefixed bookkeeping, and names two metrics: ``hp/best_val_acc``
(the best ``val/acc`` of the fit, logged at its end) and ``hp/test_acc`` (``test/acc``, logged
when a test loop ends). TensorBoard's HParams tab reads a metric's value from its latest
scalar, so a run that was never tested shows an empty cell, not a placeholder.

TensorBoard keeps only the *first* HParams summary of a run (and the metric columns of one of
the runs), which is why it is written once and always names the same metrics. The
``ssl-lightning`` CLI adds this callback to every run (``--hparams_summary.*``) and turns
Lightning's placeholder off (``TensorBoardLogger(default_hp_metric=False)``). Loggers other
than TensorBoard's are left alone.

Example (what the CLI does; in a config ``hparams_summary: {monitor: val/loss, mode: min}``)::

    trainer = Trainer(logger=TensorBoardLogger(".", default_hp_metric=False), callbacks=[HParamsSummary()])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

PLAIN = (bool, int, float, str)


def flatten_hparams(params: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """``{"a": {"init_args": {"b": 1}}}`` -> ``{"a/b": 1}``, for HParams columns.

    Keys starting with ``_`` (LightningCLI's ``_instantiator`` / ``_class_path``) are dropped, an
    ``init_args`` level adds no name part (``model/optimizer/lr``, not ``.../init_args/lr``), and
    values that are not ``bool``/``int``/``float``/``str`` become their ``str``.
    """
    flat: dict[str, bool | int | float | str] = {}
    for key, value in params.items():
        if str(key).startswith("_"):
            continue
        name = prefix if key == "init_args" else f"{prefix}{key}/"
        if isinstance(value, Mapping):
            flat.update(flatten_hparams(value, name))
        else:
            flat[name.rstrip("/")] = value if isinstance(value, PLAIN) else str(value)
    return flat


def run_hparams(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, bool | int | float | str]:
    """The run's hyperparameters without a CLI config: the model's and data's saved hyperparameters and the seed."""
    params = flatten_hparams(pl_module.hparams_initial, "model/")
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None:
        params.update(flatten_hparams(datamodule.hparams_initial, "data/"))
    seed = os.environ.get("PL_GLOBAL_SEED")  # set by seed_everything
    if seed is not None:
        params["seed"] = int(seed)
    return params


class HParamsSummary(Callback):
    """Write the run's hyperparameters once, with its best validation and its test metric, for HParams.

    Example::

        hparams_summary: {monitor: val/acc, mode: max, test_metric: test/acc}

    Args:
        monitor: the validation metric whose best value over the fit is the first HParams metric.
        mode: ``max`` or ``min``: which value of ``monitor`` is the best.
        test_metric: the test metric logged as the second HParams metric when a test loop ends.
    """

    def __init__(
        self, monitor: str = "val/acc", mode: Literal["max", "min"] = "max", test_metric: str = "test/acc"
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"HParamsSummary mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode, self.test_metric = monitor, mode, test_metric
        self.best_name = "hp/best_" + monitor.replace("/", "_")
        self.test_name = "hp/" + test_metric.replace("/", "_")
        self.best: float | None = None
        # Set by the ssl-lightning CLI to the run's config (model and data init args as the YAML gave
        # them, data included even when the DataModule saves no hyperparameters); else run_hparams.
        self.hparams: dict[str, bool | int | float | str] | None = None
        self._written: set[str] = set()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}  # a resumed fit keeps the best value of the epochs before it

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")

    def _loggers(self, trainer: pl.Trainer) -> list[TensorBoardLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]

    @rank_zero_only
    def _write_summary(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from torch.utils.tensorboard.summary import hparams

        for logger in self._loggers(trainer):
            if logger.log_dir in self._written:  # fit then test in one run: one entry
                continue
            self._written.add(logger.log_dir)
            # The metric dict only names the columns: their values are the scalars logged later
            # (logger.log_hyperparams would also log these placeholders as scalars at step 0).
            params = self.hparams if self.hparams is not None else run_hparams(trainer, pl_module)
            summaries = hparams(params, {self.best_name: 0.0, self.test_name: 0.0})
            writer = logger.experiment._get_file_writer()  # as TensorBoardLogger.log_hyperparams writes them
            for summary in summaries:
                writer.add_summary(summary)

    @rank_zero_only
    def _log(self, trainer: pl.Trainer, name: str, value: float) -> None:
        for logger in self._loggers(trainer):
            logger.log_metrics({name: value}, step=trainer.global_step)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_summary(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write_summary(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best = value

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best is not None:
            self._log(trainer, self.best_name, self.best)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.test_metric)
        if value is not None:
            self._log(trainer, self.test_name, float(value))
