"""Which selection strategy gives the best classifier for a label budget? A Markdown table.

Embeds the DataModule's training pool and test set once (cached, as ``ssl-lightning-select``
does), then for every budget x strategy x seed selects that many pool items, fits a
scikit-learn logistic regression on their embeddings and labels (a linear probe: only the
selected labels are used) and reports test accuracy as mean ± std over the seeds.

The config is an ``ssl-lightning-select`` config (``data`` + ``backbone``); every select flag
works. ``--features pixels`` uses the raw (DataModule-normalized) pixels instead of a backbone.

    python scripts/selection_eval.py --config experiments/selection/digits_effnet.yaml \\
        --budgets [10,20,40,100] --seeds [0,1,2]
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Literal

import lightning.pytorch as pl
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ssl_lightning.selection.embeddings import pool_labels, pool_outputs
from ssl_lightning.selection.oracle import SimulatedOracle
from ssl_lightning.selection.runner import build_parser, embeddings_for, instantiate
from ssl_lightning.selection.strategies import select

log = logging.getLogger("selection_eval")

REPRESENTATIVE = ["random", "balanced_random", "kmeans", "typiclust", "kcenter"]


def features(cfg, datamodule, backbone, split: str) -> np.ndarray:
    """float32[N, D] embeddings (or flattened pixels) of ``datasets[split]``."""
    if cfg.features == "pixels":
        return pool_outputs(lambda x: x.flatten(1), datamodule, 512, "cpu", split=split, progress=False).numpy()
    result = embeddings_for(cfg, backbone, datamodule, split=split)
    log.info(
        "%s embeddings %s: %s (%s)",
        split,
        result.key,
        list(result.embeddings.shape),
        "cache" if result.from_cache else "computed",
    )
    return result.embeddings.numpy()


def linear_probe_accuracy(scaler, train_x, train_y, test_x, test_y) -> float:
    """Logistic regression (scikit-learn defaults, C=1) on the labelled items' standardized features."""
    model = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x), train_y)
    return float((model.predict(scaler.transform(test_x)) == test_y).mean())


def main(args: list[str] | None = None) -> str:
    parser = build_parser()
    parser.add_argument("--budgets", type=list[int], default=[10, 20, 40, 100])
    parser.add_argument("--strategies", type=list[str], default=REPRESENTATIVE)
    parser.add_argument("--seeds", type=list[int], default=[0, 1, 2])
    parser.add_argument("--features", type=Literal["backbone", "pixels"], default="backbone")
    cfg = parser.parse_args(args)
    start = time.perf_counter()
    pl.seed_everything(cfg.init_seed, verbose=False)
    init = instantiate(parser, cfg)
    datamodule, backbone = init.data, init.backbone
    datamodule.setup("fit")
    pool_x, test_x = features(cfg, datamodule, backbone, "all"), features(cfg, datamodule, backbone, "test")
    test_y = pool_labels(datamodule, "test")
    # Feature statistics of the whole pool need no labels, so every strategy may use them.
    scaler = StandardScaler().fit(pool_x)
    embed_seconds = time.perf_counter() - start
    rows = []
    for strategy in cfg.strategies:
        cells = []
        for budget in cfg.budgets:
            accuracies = []
            for seed in cfg.seeds:
                # A fresh oracle per run: only the picked items' labels ever reach the learner.
                oracle = SimulatedOracle(pool_labels(datamodule))
                inputs = {"labels": pool_labels(datamodule)} if strategy == "balanced_random" else {}
                picked = select(strategy, budget, embeddings=pool_x, seed=seed, normalize=cfg.l2_normalize, **inputs)
                labels = oracle.annotate(picked)
                if len(np.unique(labels)) < 2:  # one class only: the probe predicts it everywhere
                    accuracies.append(float((test_y == labels[0]).mean()))
                    continue
                accuracies.append(linear_probe_accuracy(scaler, pool_x[picked], labels, test_x, test_y))
            cells.append(f"{np.mean(accuracies):.3f} ± {np.std(accuracies):.3f}")
        rows.append(f"| {strategy} | " + " | ".join(cells) + " |")
    what = "raw pixels" if cfg.features == "pixels" else cfg.backbone.class_path.rsplit(".", 1)[-1]
    header = f"| strategy ({what}, {len(pool_x)}-item pool, {len(test_y)} test) | " + " | ".join(
        f"{b} labels" for b in cfg.budgets
    )
    table = "\n".join([header + " |", "|---" * (len(cfg.budgets) + 1) + "|", *rows])
    seconds = time.perf_counter() - start
    footer = (
        f"\nTest accuracy of a logistic regression on the selected items, mean ± std over seeds {cfg.seeds}. "
        f"Wall time {seconds:.0f} s (embedding {embed_seconds:.0f} s)."
    )
    print(table + footer)
    return table


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    main()
