"""Few-shot methods side by side at the same wall-clock budget: one Markdown table.

Each config is trained with ``ssl-lightning fit`` semantics for exactly ``--max_time`` of wall
clock (``trainer.max_time``, epochs unbounded unless the config stops earlier), then its last
checkpoint is tested on the same fixed, seeded test episodes for every shot count in
``--shots`` (``--data.init_args.k_shot``), ``--episodes`` episodes each. A row gives the mean
query accuracy and the half-width of its 95 % confidence interval over the episodes, the
training time actually used, and whether the method is transductive (it reads the test
queries while adapting, so it is not comparable with the inductive rows).

    python scripts/fewshot_compare.py experiments/fewshot/protonet_digits_5w1s.yaml \\
        experiments/fewshot/rfs_digits_5w1s.yaml --max_time 00:00:02:00 --shots 1 5

Every config must use an episodic test set (``EpisodicDataModule`` or a subclass); extra
``--set key=value`` pairs are applied to every run (e.g. ``--set trainer.devices=1``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from ssl_lightning.cli import run_config

log = logging.getLogger("fewshot_compare")


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a.b": 1, "c": [1, 2]}`` (values parsed as YAML)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def run_one(
    config: str, max_time: str, shots: list[int], episodes: int, extra: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Train ``config`` for ``max_time``, then test the last weights at each shot count."""
    run_dir = out_dir / Path(config).stem
    overrides = {
        "trainer.max_time": max_time,
        "trainer.max_epochs": -1,
        "trainer.default_root_dir": str(run_dir),
        "trainer.logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(run_dir), "name": "lightning_logs", "default_hp_metric": False},
        },
        "trainer.enable_progress_bar": False,
        **extra,
    }
    start = time.perf_counter()
    fitted = run_config(config, "fit", overrides=overrides, test_after_fit=False)
    train_s = time.perf_counter() - start
    ckpt = getattr(fitted.trainer.checkpoint_callback, "last_model_path", "") or ""
    if not ckpt:
        raise SystemExit(f"{config}: no last checkpoint; give its ModelCheckpoint save_last: true.")
    model = fitted.model
    row: dict[str, Any] = {
        "config": config,
        "method": type(model).__name__,
        "transductive": bool(getattr(model, "transductive", False)),
        "train_s": round(train_s, 1),
        "steps": fitted.trainer.global_step,
        "checkpoint": ckpt,
    }
    for k_shot in shots:
        start = time.perf_counter()
        tested = run_config(
            config,
            "test",
            overrides={
                **overrides,
                "data.init_args.k_shot": k_shot,
                "data.init_args.eval_episodes": episodes,
            },
            args=["--ckpt_path", ckpt],
        )
        row[f"{k_shot}-shot"] = (tested.metrics["test/acc"], tested.metrics.get("test/acc_ci95", float("nan")))
        row[f"{k_shot}-shot_test_s"] = round(time.perf_counter() - start, 1)
    return row


def table(rows: list[dict[str, Any]], shots: list[int], max_time: str, episodes: int) -> str:
    """The Markdown table of ``rows``: inductive methods first, transductive ones apart."""
    head = ["method", "config", *(f"5-way {k}-shot" for k in shots), "training", "steps"]
    lines = [f"Budget {max_time} of training per method; {episodes} fixed test episodes, mean ± 95 % CI.", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(rows, key=lambda r: r["transductive"]):
        name = row["method"] + (" (transductive)" if row["transductive"] else "")
        cells = [name, f"`{row['config']}`"]
        cells += [f"{100 * row[f'{k}-shot'][0]:.1f} ± {100 * row[f'{k}-shot'][1]:.1f}" for k in shots]
        cells += [f"{row['train_s']:.0f} s", str(row["steps"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", help="experiment YAMLs (episodic test data)")
    parser.add_argument("--max_time", default="00:00:02:00", help="training budget per method, DD:HH:MM:SS")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5], help="k_shot values to test")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per shot count")
    parser.add_argument("--set", action="append", default=[], help="key=value applied to every run")
    parser.add_argument("--out", default="runs/fewshot_compare/results.json", help="where rows are saved")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    extra = parse_sets(args.set)
    out = Path(args.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    done = {row["config"] for row in rows}
    for config in args.configs:
        if config in done:
            log.info("%s: already in %s, skipped (delete the row to re-run)", config, out)
            continue
        rows.append(run_one(config, args.max_time, args.shots, args.episodes, extra, out.parent / "runs"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=1))
    print(table([r for r in rows if r["config"] in args.configs], args.shots, args.max_time, args.episodes))


if __name__ == "__main__":
    main()
