"""The ``ssl-lightning-select`` command: choose what to label, once or in active-learning rounds.

One selection (writes a subset file for ``--data.subset_file``)::

    ssl-lightning-select --config experiments/selection/cifar10_effnet.yaml --data.init_args.root ~/data \\
        --strategy typiclust --budget 40 --seed 0 --output subset.json

Active learning (a representative seed set of ``--budget`` labels, then ``--rounds`` rounds
of training with the current subset, scoring the pool and adding ``--per_round`` labels)::

    ssl-lightning-select --config experiments/selection/active_digits.yaml --workdir runs/active_digits

CONFIG is a YAML with ``data`` and ``backbone`` (class_path / init_args, as in the main CLI)
and any of the flags below; flags given after ``--config`` override it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from ssl_lightning.selection.active import run_active_learning

# Moved to ssl_lightning.selection.runner; these names stay importable from here for one release.
from ssl_lightning.selection.runner import (  # noqa: F401
    Strategy,
    build_parser,
    check_arguments,
    embeddings_for,
    extra_meta_of,
    instantiate,
    num_classes_of,
    prepare,
    select_once,
)

DEBUG_ENV = "SSL_LIGHTNING_DEBUG"


def run(args: list[str] | None = None) -> Path:
    """Parse ``args`` (default ``sys.argv[1:]``), then select once or run the active-learning loop."""
    cfg, datamodule, backbone = prepare(args)
    if cfg.rounds > 0:
        return run_active_learning(cfg, datamodule, backbone)
    return select_once(cfg, datamodule, backbone)


def main(args: list[str] | None = None) -> None:
    """Console entry point. User errors print one message; set SSL_LIGHTNING_DEBUG=1 for tracebacks."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.environ.get(DEBUG_ENV):
        run(args)
        return
    try:
        run(args)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, KeyError) as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
