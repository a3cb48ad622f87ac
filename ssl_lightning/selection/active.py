"""Pool-based active learning: seed set, then rounds of train -> score the pool -> label more.

Round 0 labels ``budget`` items with ``initial_strategy`` (a representative one: TypiClust by
default, since uncertainty needs a model). Each round then trains with the current subset
through the main CLI (``ssl-lightning fit --config TRAIN --data.init_args.subset_file ...``),
tests the best checkpoint, and, unless it is the last round, picks ``per_round`` new items
with ``strategy``: ``entropy``/``margin`` score the trained model's pool predictions, the
embedding strategies treat the labelled set as covered. A :class:`SimulatedOracle` reveals
labels only for picked items.

Layout of ``workdir`` (re-running resumes: finished rounds are skipped, files never rewritten
except the two summaries, which are regenerated from the rounds)::

    settings.json                 what the run was started with; a resume must match it
    round_00/subset.json          the labelled set trained on in round 0 (subset-file format)
    round_00/pool_probs.npy       float32[N, C] the round's model's pool predictions
    round_00/result.json          {"round", "labels", "test_acc", ...}: written last, marks it done
    round_00/lightning_logs/...   the training run (TensorBoard, checkpoints)
    curve.csv, curve.png          test accuracy versus number of labels
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from jsonargparse import Namespace
from torch import nn

from ssl_lightning.cli import run_config
from ssl_lightning.data.subset_file import load_subset, save_subset
from ssl_lightning.selection.embeddings import dataset_hash, pool_dataset, pool_labels, pool_outputs
from ssl_lightning.selection.oracle import SimulatedOracle
from ssl_lightning.selection.runner import check_arguments, embeddings_for, num_classes_of
from ssl_lightning.selection.strategies import EMBEDDING_STRATEGIES, UNCERTAINTY_STRATEGIES, select

log = logging.getLogger(__name__)

SETTINGS = ("strategy", "initial_strategy", "budget", "per_round", "seed", "l2_normalize", "train_config", "train_args")


def _check_settings(workdir: Path, cfg: Namespace, embedding_key: str | None) -> None:
    """Record the run's settings, or check that a resumed run uses the same ones."""
    settings = {name: str(cfg[name]) if isinstance(cfg[name], Path) else cfg[name] for name in SETTINGS}
    settings["embedding_key"] = embedding_key
    path = workdir / "settings.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = {k: (before.get(k), v) for k, v in settings.items() if before.get(k) != v}
        if changed:
            raise ValueError(
                f"{workdir} holds an active-learning run with other settings ({changed}, as (before, now)). "
                f"Use a new --workdir, or the original settings to resume."
            )
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1))


def _train_round(cfg: Namespace, round_dir: Path, subset: Path, datamodule: pl.LightningDataModule) -> dict[str, Any]:
    """Fit the train config on ``subset``, test the best checkpoint, predict the pool."""
    overrides = {
        "data.init_args.subset_file": str(subset),
        "trainer.default_root_dir": str(round_dir),
        "trainer.logger.init_args.save_dir": str(round_dir),
    }
    # Testing the best checkpoint restores its weights into the model, which then also scores the pool.
    run = run_config(cfg.train_config, "fit", overrides, args=cfg.train_args, test_after_fit=True)
    model, best = run.model, run.best_checkpoint
    test_acc = run.metrics["test/acc"]
    train_pool = pool_dataset(run.datamodule)
    if dataset_hash(train_pool) != dataset_hash(pool_dataset(datamodule)):
        raise ValueError(
            f"the training config {cfg.train_config} builds another training pool than the selection config "
            f"(different data, val_size or seed?). Both must describe the same data."
        )
    model.eval()
    probs = pool_outputs(
        lambda x: model(x).softmax(dim=-1), run.datamodule, cfg.embed_batch_size, model.device, description="scoring"
    )
    np.save(round_dir / "pool_probs.npy", probs.numpy())
    return {"test_acc": test_acc, "checkpoint": str(best) if best is not None else None}


def _write_curve(workdir: Path, results: list[dict[str, Any]], title: str) -> None:
    from matplotlib.figure import Figure

    with open(workdir / "curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["round", "labels", "test_acc"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    figure = Figure(figsize=(4.5, 3.2), layout="constrained")
    axes = figure.subplots()
    axes.plot([r["labels"] for r in results], [r["test_acc"] for r in results], marker="o")
    axes.set(xlabel="labelled examples", ylabel="test accuracy", title=title)
    axes.grid(alpha=0.3)
    figure.savefig(workdir / "curve.png", dpi=120)


def run_active_learning(cfg: Namespace, datamodule: pl.LightningDataModule, backbone: nn.Module) -> Path:
    """Run (or resume) ``cfg.rounds`` rounds in ``cfg.workdir``; returns the curve CSV path."""
    check_arguments(cfg)
    workdir = Path(cfg.workdir)
    needs_embeddings = {cfg.strategy, cfg.initial_strategy} & set(EMBEDDING_STRATEGIES)
    embeddings = embeddings_for(cfg, backbone, datamodule) if needs_embeddings else None
    _check_settings(workdir, cfg, embeddings.key if embeddings is not None else None)
    name, num_train = type(datamodule).__name__, len(pool_dataset(datamodule))
    oracle = SimulatedOracle(pool_labels(datamodule))
    num_classes = num_classes_of(datamodule)
    results = []
    for r in range(cfg.rounds + 1):
        round_dir = workdir / f"round_{r:02d}"
        subset, result_file = round_dir / "subset.json", round_dir / "result.json"
        if subset.is_file():
            oracle.annotate(load_subset(subset, name, num_train))
        else:
            strategy, budget = (cfg.initial_strategy, cfg.budget) if r == 0 else (cfg.strategy, cfg.per_round)
            inputs: dict[str, Any] = {"num_items": num_train}
            if strategy in EMBEDDING_STRATEGIES:
                inputs["embeddings"] = embeddings.embeddings.numpy()
            elif strategy in UNCERTAINTY_STRATEGIES:
                inputs["probs"] = np.load(workdir / f"round_{r - 1:02d}" / "pool_probs.npy")
            elif strategy == "balanced_random":
                inputs["labels"] = pool_labels(datamodule)  # the oracle baseline reads all labels
            picked = select(
                strategy, budget, labelled=oracle.labelled, seed=cfg.seed + r, normalize=cfg.l2_normalize, **inputs
            )
            oracle.annotate(picked)
            meta = {
                "strategy": strategy,
                "seed": cfg.seed + r,
                "budget": budget,
                "round": r,
                "embedding_key": embeddings.key if embeddings is not None else None,
            }
            save_subset(subset, oracle.labelled.tolist(), name, num_train, oracle.per_class_counts(num_classes), meta)
        if result_file.is_file():
            result = json.loads(result_file.read_text())
            log.info("round %d done before: %d labels, test acc %.4f", r, result["labels"], result["test_acc"])
        else:
            result = {"round": r, "labels": len(oracle.labelled), **_train_round(cfg, round_dir, subset, datamodule)}
            result["per_class_counts"] = oracle.per_class_counts(num_classes)
            result_file.write_text(json.dumps(result, indent=1))
            log.info("round %d: %d labels, test acc %.4f", r, result["labels"], result["test_acc"])
        results.append(result)
    title = f"{cfg.initial_strategy} seed set + {cfg.strategy}" if cfg.rounds else cfg.initial_strategy
    _write_curve(workdir, results, title)
    return workdir / "curve.csv"
