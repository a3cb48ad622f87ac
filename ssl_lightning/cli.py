"""The ``ssl-lightning`` command: LightningCLI with this project's defaults, and :func:`run_config`.

Every LightningModule and LightningDataModule can be named by class path (subclass mode
for both), so a new method or dataset needs no change here. Defaults a config can
override: a fixed seed, TensorBoard logging under ``lightning_logs/`` (without Lightning's
``hp_metric = -1`` placeholder), a ``ModelCheckpoint`` on ``val/acc``, a latest-every-epoch
checkpoint linked as ``last.ckpt``, a rich progress bar. Every run also gets
:class:`~ssl_lightning.callbacks.hparams.HParamsSummary` (``--hparams_summary.*``, outside
``trainer.callbacks`` so a config that replaces the callbacks keeps it): one TensorBoard HParams
entry per run with its best ``val/acc`` and its ``test/acc``.

Python code that runs a config (the suite, active learning, tests) calls :func:`run_config`
instead of building argv lists; it returns a :class:`RunResult`.

Example::

    ssl-lightning fit --config experiments/quickstart.yaml
    ssl-lightning test --config experiments/quickstart.yaml --ckpt_path <best.ckpt>

Data-model facts and ``link_arguments``: nothing is linked, on purpose. With subclass mode for
both model and data, jsonargparse applies a link whenever both keys exist in the chosen classes
and skips it silently otherwise, and a linked target silently ignores the value a config gives
it. Tried against every shipped config (``experiments/``):

* ``data.init_args.n_way`` -> ``model.init_args.backbone.init_args.num_classes``: right for MAML,
  FOMAML, ANIL and Meta-SGD (the head has N outputs), wrong for ProtoNet, whose backbone is
  head-less (``num_classes: 0`` in ``protonet_*.yaml`` became 5, a head it never trains). The
  same key means different things under different methods, so it cannot be one static link;
  an ``n_way`` argument on the MAML-family methods (which would reset the head) could be linked.
* ``data.init_args.image_size`` -> ``model.init_args.backbone.init_args.input_size``: the shipped
  configs parse to the same values with it, but it is wrong elsewhere: ``image_size: null``
  (the images' own size, the folder and episodic default) would set a Conv4/LeNet's
  ``input_size`` to ``None``, and ``TimmBackbone.input_size`` is the size it resizes *to* on the
  device (224 for ImageNet weights), not the data's size.
* ``data.init_args.channels`` -> ``...backbone.init_args.in_chans``: ``channels: null`` (1 if every
  image is grey, else 3) is only known once the images are read, after parsing.
* The number of classes of text data, a label vocabulary's size, a feature cache's
  ``labelled_features``: known only in ``setup``, after the model is built.

The rest of the contract between a DataModule and the method it feeds (``num_classes``,
``class_names``, ``n_way``, ...) is the typed Protocol in :mod:`ssl_lightning.data.contract`; a
method checks it against ``trainer.datamodule`` when the fit starts (e.g. Classifier's error
naming ``--model.backbone.init_args.num_classes``).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ssl_lightning.callbacks.hparams import HParamsSummary, flatten_hparams

DEBUG_ENV = "SSL_LIGHTNING_DEBUG"

TRAINER_DEFAULTS: dict[str, Any] = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # No hp_metric=-1 placeholder: HParamsSummary writes each run's real metrics instead.
        "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
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


def config_hparams(config: Any) -> dict[str, bool | int | float | str]:
    """The HParams columns of a run: its config's model and data (class paths, init args) and seed."""
    sections = {name: config.get(name) for name in ("model", "data")}
    params = flatten_hparams({name: value.as_dict() for name, value in sections.items() if hasattr(value, "as_dict")})
    seed = config.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool):  # LightningCLI replaced `true` by the seed drawn
        params["seed"] = seed
    return params


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

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # HParams columns from the config as written: the DataModules save no hyperparameters of their own.
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        for callback in self.trainer.callbacks:
            if isinstance(callback, HParamsSummary):
                callback.hparams = config_hparams(config)

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
        # Outside trainer.callbacks, so that a config replacing the callback list keeps it: every
        # run of a suite gets the same HParams columns.
        parser.add_lightning_class_args(HParamsSummary, "hparams_summary")

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
        # The fit's own metrics, before a test loop replaces trainer.callback_metrics (see run_config).
        self.fit_metrics = tensor_floats(self.trainer.callback_metrics)
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


def tensor_floats(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``trainer.callback_metrics`` (scalar tensors) as plain floats."""
    return {name: float(value) for name, value in metrics.items()}


def nested_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``{"--data.init_args.seed": 1}`` -> ``{"data": {"init_args": {"seed": 1}}}`` (leading dashes optional)."""
    tree: dict[str, Any] = {}
    for key, value in overrides.items():
        *parents, last = key.lstrip("-").split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r} goes inside {part!r}, which another override sets to a value")
        if isinstance(node.get(last), dict) and isinstance(value, Mapping):
            node[last].update(value)
        elif last in node:
            raise ValueError(f"override {key!r} is given twice (or also as part of a parent key)")
        else:
            node[last] = dict(value) if isinstance(value, Mapping) else value
    return tree


@dataclass
class RunResult:
    """What :func:`run_config` ran and what it measured.

    Attributes:
        trainer: the Trainer (its ``log_dir``, ``checkpoint_callback``, ...).
        model: the LightningModule; after a test of the best checkpoint it holds those weights.
        datamodule: the DataModule, set up.
        best_checkpoint: the best (``val/acc``) checkpoint's path, ``None`` without a monitored one.
        metrics: every metric the run logged last, as floats: the fit's (``val/acc``, ...) updated by
            the test's (``test/acc``) when it was tested.
    """

    trainer: pl.Trainer
    model: pl.LightningModule
    datamodule: pl.LightningDataModule
    best_checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)


def run_config(
    config: str | os.PathLike | Sequence[str | os.PathLike],
    subcommand: Literal["fit", "validate", "test", "predict"] = "fit",
    overrides: Mapping[str, Any] | None = None,
    args: Sequence[str] = (),
    test_after_fit: bool | None = None,
) -> RunResult:
    """Run an experiment config in-process, exactly as ``ssl-lightning SUBCOMMAND --config CONFIG`` would.

    Example::

        result = run_config("experiments/quickstart.yaml", overrides={"trainer.max_epochs": 1}, test_after_fit=True)
        result.metrics["test/acc"], result.best_checkpoint

    Args:
        config: the config file, or several (later ones override earlier ones).
        subcommand: the LightningCLI subcommand.
        overrides: dotted config keys (``"data.init_args.subset_file"``, ``"seed_everything"``; a leading
            ``--`` is allowed) and their values, applied after ``config`` and ``args``. Passed as one
            config, not as flags, so ``None`` works for keys nested inside a subclass's init_args too.
        args: more command-line flags, as ``ssl-lightning`` takes them (e.g. a user's extra flags).
        test_after_fit: test the best checkpoint after fit; ``None`` keeps what the config says.
    """
    configs = [config] if isinstance(config, str | os.PathLike) else list(config)
    argv = [subcommand, *(arg for path in configs for arg in ("--config", str(path))), *args]
    if overrides:
        argv += ["--config", json.dumps(nested_overrides(overrides), default=str)]
    if test_after_fit is not None and subcommand == "fit":
        argv += ["--test_after_fit", str(test_after_fit).lower()]
    with warnings.catch_warnings():
        # The caller's sys.argv (ssl-lightning-suite's, ssl-lightning-select's, pytest's) is not this
        # run's: LightningCLI warns when both are present, which is exactly the point here.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        cli = build_cli(argv)
    trainer = cli.trainer
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
    metrics = {**getattr(cli, "fit_metrics", {}), **tensor_floats(trainer.callback_metrics)}
    return RunResult(trainer, cli.model, cli.datamodule, Path(best) if best else None, metrics)


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
