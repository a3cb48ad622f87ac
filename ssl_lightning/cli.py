"""The ``ssl-lightning`` command: LightningCLI with this project's defaults.

Every LightningModule and LightningDataModule can be named by class path (subclass mode
for both), so a new method or dataset needs no change here. Defaults a config can
override: a fixed seed, TensorBoard logging under ``lightning_logs/``, a ``ModelCheckpoint``
on ``val/acc``, a latest-every-epoch checkpoint linked as ``last.ckpt``, a rich progress bar.

Example::

    ssl-lightning fit --config experiments/quickstart.yaml
    ssl-lightning test --config experiments/quickstart.yaml --ckpt_path <best.ckpt>
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

DEBUG_ENV = "SSL_LIGHTNING_DEBUG"

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": ".", "name": "lightning_logs"},
    },
    "callbacks": [
        # Best on val/acc: what --ckpt_path best and test_after_fit use (listed first, so it is
        # trainer.checkpoint_callback).
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": "val/acc",
                "mode": "max",
                "filename": "best-{epoch}-{step}",
                "auto_insert_metric_name": False,
            },
        },
        # Latest, every epoch, with last.ckpt linked to it: for --ckpt_path last. (A monitored
        # callback's save_last only rewrites last.ckpt when the monitored value improves.)
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"filename": "latest-{epoch}-{step}", "save_last": "link", "auto_insert_metric_name": False},
        },
        {"class_path": "lightning.pytorch.callbacks.RichProgressBar"},
        {"class_path": "lightning.pytorch.callbacks.RichModelSummary", "init_args": {"max_depth": 2}},
    ],
}


class ConciseArgumentParser(LightningArgumentParser):
    """Config errors as one message and a hint, not the whole usage (set SSL_LIGHTNING_DEBUG=1 for it)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if os.environ.get(DEBUG_ENV) or not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {message}\n(run `{prog} --help` for the accepted options)\n")
        self.exit(2)


def check_checkpoint_class(ckpt_path: str | os.PathLike | None, configured_class: str | None) -> None:
    """Fail early, in one line, when ``ckpt_path`` is missing or was written by another model class.

    Args:
        ckpt_path: the ``--ckpt_path`` value ("last"/"best" are resolved by the Trainer and skipped).
        configured_class: the class path of the model the config builds.
    """
    if ckpt_path is None or str(ckpt_path) in ("last", "best", "hpc", "registry"):
        return
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {path} does not exist. Pass the path of a .ckpt file (or 'last').")
    saved = torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("_class_path")
    if saved and configured_class and saved.rsplit(".", 1)[-1] != configured_class.rsplit(".", 1)[-1]:
        raise ValueError(
            f"--ckpt_path {path} was written by {saved} but this config builds {configured_class}. Use the config "
            f"(--config) the checkpoint was trained with, or a checkpoint of {configured_class.rsplit('.', 1)[-1]}."
        )


def resolve_last_checkpoint(config: Any) -> str | None:
    """The newest ``last*.ckpt`` of earlier runs: ``<save_dir>/<name>/version_*/checkpoints``.

    Lightning looks for ``--ckpt_path last`` in the new run's own (empty) version folder, so
    without this a resumed run would warn and train from scratch.
    """
    trainer = config.get("trainer") or {}
    logger = trainer.get("logger")
    if not hasattr(logger, "get"):  # False/None/a list: Lightning's own lookup applies
        return None
    init_args = logger.get("init_args") or {}
    root = Path(init_args.get("save_dir") or trainer.get("default_root_dir") or ".", init_args.get("name") or "")
    found = [p for p in root.glob("*/checkpoints/last*.ckpt") if p.exists()]
    return str(max(found, key=lambda p: p.stat().st_mtime_ns)) if found else None


def check_learning_rates(config: Any) -> None:
    """A non-positive optimizer lr in the config is an error naming the key (any method)."""
    model = config.get("model") if hasattr(config, "get") else None
    init_args = model.get("init_args") if hasattr(model, "get") else None
    optimizer = init_args.get("optimizer") if hasattr(init_args, "get") else None
    lr = optimizer.get("init_args", {}).get("lr") if hasattr(optimizer, "get") else None
    if isinstance(lr, int | float) and lr <= 0:
        raise ValueError(
            f"--model.init_args.optimizer.init_args.lr must be > 0, got {lr}. Use a positive learning rate."
        )


def drop_disabled_callbacks(trainer_config: Any) -> None:
    """``--trainer.enable_progress_bar false`` / ``enable_model_summary false`` remove the default
    progress bar / model summary callbacks, which Lightning would otherwise reject as a conflict."""
    callbacks = trainer_config.get("callbacks")
    if not isinstance(callbacks, list):
        return
    switches = (("enable_progress_bar", "ProgressBar"), ("enable_model_summary", "ModelSummary"))
    disabled = tuple(name for flag, name in switches if trainer_config.get(flag) is False)

    def kept(callback: Any) -> bool:
        return not (disabled and hasattr(callback, "get") and str(callback.get("class_path", "")).endswith(disabled))

    trainer_config.callbacks = [callback for callback in callbacks if kept(callback)]


class SSLLightningCLI(LightningCLI):
    """LightningCLI in subclass mode for model and data, with ``--test_after_fit``."""

    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        if config.get("trainer") is not None:
            drop_disabled_callbacks(config.trainer)

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

    def _parse_ckpt_path(self) -> None:
        # LightningCLI merges the checkpoint's hyperparameters into the config here, class path
        # included; a checkpoint of another model class would silently become a hybrid model.
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            check_learning_rates(config)
            if config.get("ckpt_path") == "last" and (last := resolve_last_checkpoint(config)) is not None:
                config.ckpt_path = last
            model = config.get("model")
            check_checkpoint_class(config.get("ckpt_path"), model.get("class_path") if model else None)
        super()._parse_ckpt_path()

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
        parser_class=ConciseArgumentParser,
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
    except (ValueError, FileNotFoundError, RuntimeError, KeyError, TypeError, MisconfigurationException) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
