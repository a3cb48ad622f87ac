"""Test helpers shared across test files (import as ``from tests.helpers import ...``)."""

from __future__ import annotations

from pathlib import Path

from ssl_lightning.cli import build_cli

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"


def run_cli(*args: str) -> object:
    """Run ``ssl-lightning <args>`` in-process and return the CLI object."""
    return build_cli(list(args))


def fast_dev_run(config: str | Path, *overrides: str, subcommand: str = "fit") -> object:
    """``fit --config CONFIG --trainer.fast_dev_run 2`` with overrides, on CPU, no test-after-fit."""
    return run_cli(
        subcommand,
        "--config",
        str(config),
        "--trainer.fast_dev_run",
        "2",
        "--trainer.accelerator",
        "cpu",
        *overrides,
    )
