"""The ``ssl-lightning`` command: LightningCLI with this project's defaults.

Every LightningModule and LightningDataModule can be named by class path (subclass mode
for both), so a new method or dataset needs no change here. Defaults a config can
override: a fixed seed, TensorBoard logging under ``lightning_logs/``, a ``ModelCheckpoint``
on ``val/acc`` (plus ``last.ckpt``) and a rich progress bar.

Example::

    ssl-lightning fit --config experiments/quickstart.yaml
    ssl-lightning test --config experiments/quickstart.yaml --ckpt_path <best.ckpt>
"""

from __future__ import annotations

import os
import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

DEBUG_ENV = "SSL_LIGHTNING_DEBUG"

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": ".", "name": "lightning_logs"},
    },
    "callbacks": [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": "val/acc",
                "mode": "max",
                "save_last": True,
                "filename": "best-{epoch}-{step}",
                "auto_insert_metric_name": False,
            },
        },
        {"class_path": "lightning.pytorch.callbacks.RichProgressBar"},
        {"class_path": "lightning.pytorch.callbacks.RichModelSummary", "init_args": {"max_depth": 2}},
    ],
}


class SSLLightningCLI(LightningCLI):
    """LightningCLI in subclass mode for model and data, with ``--test_after_fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Parser defaults (not trainer_defaults, whose callbacks could not be removed): a config's
        # own trainer.logger / trainer.callbacks replaces them; trainer.callbacks+= appends.
        parser.set_defaults({f"trainer.{key}": value for key, value in TRAINER_DEFAULTS.items()})
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After fit, run the test loop on the best checkpoint (fit subcommand only).",
        )

    def after_fit(self) -> None:
        if self.config.fit.get("test_after_fit"):
            ckpt = "best" if self.trainer.checkpoint_callback is not None else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def build_cli(args: list[str] | None = None, run: bool = True) -> SSLLightningCLI:
    """Build (and by default run) the CLI; ``args`` replaces ``sys.argv[1:]`` (for tests)."""
    return SSLLightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": False},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point. User errors print one message; set SSL_LIGHTNING_DEBUG=1 for tracebacks."""
    if os.environ.get(DEBUG_ENV):
        build_cli(args)
        return
    try:
        build_cli(args)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError, TypeError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
