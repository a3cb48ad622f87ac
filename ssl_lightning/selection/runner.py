"""Selecting what to label, as a library: the selection config, building it, one selection.

What ``ssl-lightning-select`` (:mod:`ssl_lightning.selection.cli`), the active-learning loop
(:mod:`ssl_lightning.selection.active`) and the suite's ``select:`` step share:

* :func:`build_parser`: the selection config (``data``, ``backbone``, strategy, budget, ...);
* :func:`prepare`: parse and check arguments, build the DataModule (set up) and the backbone;
* :func:`select_once`: one selection, written as a subset file;
* :func:`embeddings_for`, :func:`num_classes_of`, :func:`check_arguments`: the pieces the loops reuse.

Example::

    cfg, datamodule, backbone = prepare(["--config", "experiments/selection/digits_lenet.yaml",
                                         "--budget", "20", "--output", "subset.json"])
    select_once(cfg, datamodule, backbone)   # -> Path("subset.json")
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from jsonargparse.typing import Path_fr
from torch import nn

from ssl_lightning.data.subset_file import load_subset, save_subset
from ssl_lightning.selection.embeddings import DEFAULT_CACHE_DIR, POOL, compute_embeddings, pool_dataset, pool_labels
from ssl_lightning.selection.oracle import SimulatedOracle
from ssl_lightning.selection.strategies import EMBEDDING_STRATEGIES, STRATEGIES, UNCERTAINTY_STRATEGIES, select

log = logging.getLogger(__name__)

DESCRIPTION = "The ``ssl-lightning-select`` command: choose what to label, once or in active-learning rounds."
Strategy = Literal["random", "balanced_random", "kmeans", "typiclust", "kcenter", "entropy", "margin"]
assert set(Strategy.__args__) == set(STRATEGIES)  # type: ignore[attr-defined]


def build_parser() -> ArgumentParser:
    """The selection config: what ``ssl-lightning-select`` takes (``--help`` lists it)."""
    parser = ArgumentParser(prog="ssl-lightning-select", description=DESCRIPTION, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML naming data, backbone and any flag below.")
    parser.add_subclass_arguments(
        pl.LightningDataModule, "data", required=True, help="The DataModule whose pool to label."
    )
    parser.add_subclass_arguments(nn.Module, "backbone", required=True, help="Embedding backbone (forward_features).")
    parser.add_argument(
        "--strategy", type=Strategy, default="typiclust", help="How to pick; entropy/margin need rounds."
    )
    parser.add_argument("--budget", type=int, default=40, help="Labels to pick (in total, not per class).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the strategy.")
    parser.add_argument("--output", type=Path | None, default=None, help="Subset file to write (never overwritten).")
    parser.add_argument(
        "--init_seed", type=int, default=0, help="Seeds the backbone's random init (weights not from a file)."
    )
    parser.add_argument("--labelled", type=Path | None, default=None, help="Subset file of items labelled already.")
    parser.add_argument("--l2_normalize", type=bool, default=True, help="L2-normalize embeddings (as TypiClust).")
    group = parser.add_argument_group("embeddings")
    group.add_argument("--resolution", type=int | None, default=None, help="Resize images to this side first.")
    group.add_argument("--in_chans", type=int | None, default=None, help="Repeat grey images to this many channels.")
    group.add_argument("--embed_batch_size", type=int, default=256, help="Pool items per forward pass.")
    group.add_argument("--device", type=str | None, default=None, help="cuda / cpu; default: cuda if available.")
    group.add_argument("--cache_dir", type=Path | None, default=DEFAULT_CACHE_DIR, help="Embedding cache; null: off.")
    group = parser.add_argument_group("active learning")
    group.add_argument("--rounds", type=int, default=0, help="Rounds after the seed set; 0: one selection.")
    group.add_argument("--per_round", type=int, default=10, help="Labels added per round.")
    group.add_argument("--initial_strategy", type=Strategy, default="typiclust", help="Strategy of the seed set.")
    group.add_argument(
        "--train_config", type=Path_fr | None, default=None, help="ssl-lightning fit config (relative to CONFIG)."
    )
    group.add_argument("--train_args", type=list[str], default=[], help="Extra ssl-lightning flags per round.")
    group.add_argument("--workdir", type=Path | None, default=None, help="Rounds, curve CSV/PNG; resumes if present.")
    return parser


def instantiate(parser: ArgumentParser, cfg: Namespace) -> Namespace:
    """Build the data and backbone objects (``instantiate`` on jsonargparse >= 4.49, else the old name)."""
    method = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return method(cfg)


def embeddings_for(
    cfg: Namespace, backbone: nn.Module, datamodule: pl.LightningDataModule, split: str = POOL
) -> Any:
    """The embeddings that ``cfg`` asks for (cached), of the pool or of another split."""
    return compute_embeddings(
        backbone,
        datamodule,
        batch_size=cfg.embed_batch_size,
        resolution=cfg.resolution,
        in_chans=cfg.in_chans,
        device=cfg.device,
        cache_dir=cfg.cache_dir,
        backbone_config=cfg.backbone.as_dict(),
        split=split,
    )


def num_classes_of(datamodule: pl.LightningDataModule) -> int | None:
    """Number of classes when the DataModule names them (so per-class counts list empty classes too)."""
    names = getattr(datamodule, "class_names", None)
    return len(names) if names else None


def select_once(
    cfg: Namespace, datamodule: pl.LightningDataModule, backbone: nn.Module, extra_meta: dict[str, Any] | None = None
) -> Path:
    """One selection: ``budget`` new labels (added to ``--labelled`` if given) -> ``--output``.

    ``extra_meta`` goes into the subset file's meta as it is (the suite records its request there).
    """
    check_arguments(cfg)
    dataset_name, num_train = type(datamodule).__name__, len(pool_dataset(datamodule))
    labelled = load_subset(cfg.labelled, dataset_name, num_train) if cfg.labelled is not None else []
    oracle = SimulatedOracle(pool_labels(datamodule))
    oracle.annotate(labelled)
    embedding_key, kwargs = None, {}
    if cfg.strategy in EMBEDDING_STRATEGIES:
        result = embeddings_for(cfg, backbone, datamodule)
        embedding_key, kwargs = result.key, {"embeddings": result.embeddings.numpy()}
    if cfg.strategy == "balanced_random":
        # The oracle baseline reads every label: that is exactly what makes it unattainable in practice.
        kwargs = {"labels": pool_labels(datamodule)}
    start = time.perf_counter()
    picked = select(
        cfg.strategy,
        cfg.budget,
        num_items=num_train,
        labelled=labelled,
        seed=cfg.seed,
        normalize=cfg.l2_normalize,
        **kwargs,
    )
    seconds = time.perf_counter() - start
    oracle.annotate(picked)
    counts = oracle.per_class_counts(num_classes_of(datamodule))
    meta = {
        "strategy": cfg.strategy,
        "seed": cfg.seed,
        "budget": cfg.budget,
        "labelled_before": len(labelled),
        "embedding_key": embedding_key,
        "backbone": cfg.backbone.class_path,
        "selection_seconds": round(seconds, 3),
        **extra_meta_of(datamodule),
        **(extra_meta or {}),
    }
    path = save_subset(cfg.output, oracle.labelled.tolist(), dataset_name, num_train, counts, meta)
    log.info("wrote %s: %d labels by %s, per class %s", path, len(oracle.labelled), cfg.strategy, counts)
    return path


def extra_meta_of(datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """The pool's fingerprint, when the DataModule has one: a training run whose pool differs
    (another seed or val_size) then refuses the subset file instead of labelling other items."""
    fingerprint = getattr(datamodule, "pool_fingerprint", None)
    return {"pool_fingerprint": fingerprint} if fingerprint else {}


def check_arguments(cfg: Namespace) -> None:
    """Fail on impossible requests before anything expensive is built."""
    if cfg.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {cfg.budget}")
    if cfg.rounds > 0:
        if cfg.workdir is None or cfg.train_config is None:
            raise ValueError("active learning (--rounds > 0) needs --workdir DIR and --train_config TRAIN.yaml")
        if cfg.per_round < 1:
            raise ValueError(f"--per_round must be >= 1, got {cfg.per_round}")
        if cfg.initial_strategy in UNCERTAINTY_STRATEGIES:
            raise ValueError(
                f"--initial_strategy {cfg.initial_strategy} needs a trained model; the seed set needs a strategy "
                f"without one (typiclust, kmeans, kcenter, random)."
            )
        return
    if cfg.output is None:
        raise ValueError("--output is required for a single selection (or give --rounds and --workdir).")
    if cfg.output.exists():
        raise FileExistsError(f"{cfg.output} exists; refusing to overwrite a subset file. Choose another --output.")
    if cfg.strategy in UNCERTAINTY_STRATEGIES:
        raise ValueError(
            f"--strategy {cfg.strategy} scores a trained model's predictions; use it in active-learning rounds "
            f"(--rounds R --train_config TRAIN.yaml --workdir DIR), or pick a seed set with typiclust/kmeans/kcenter."
        )


def prepare(args: list[str] | None = None) -> tuple[Namespace, pl.LightningDataModule, nn.Module]:
    """Parse and check ``args``, build the DataModule (set up for fit) and the backbone."""
    parser = build_parser()
    cfg = parser.parse_args(args)
    check_arguments(cfg)
    if cfg.train_config is not None:
        cfg.train_config = Path(cfg.train_config.absolute)
    # Like LightningCLI's seed_everything: the same config always builds the same backbone, so a
    # randomly initialised one gives the same embeddings (and cache key) on every run.
    pl.seed_everything(cfg.init_seed, verbose=False)
    init = instantiate(parser, cfg)
    datamodule, backbone = init.data, init.backbone
    datamodule.setup("fit")
    return cfg, datamodule, backbone
