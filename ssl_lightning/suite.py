"""The sample-efficiency suite: methods x labels per class x seeds, one command.

Every run is an ordinary experiment config plus overrides, trained and tested through the
same CLI as any other run and logged to TensorBoard under ``<output_dir>/tensorboard``.
Results are appended to ``<output_dir>/results.csv`` as runs finish, so an interrupted suite
resumes: re-running skips finished runs, re-runs failed or missing ones and never rewrites
earlier rows. ``summary.md`` (mean +- std over seeds) and ``accuracy_vs_labels.png`` are
derived from the CSV after every run.

Suite config::

    output_dir: runs/suites/digits
    labels_per_class: [1, 5, 10, null]     # null = all labels
    seeds: [0, 1, 2]
    methods:
      baseline:
        config: experiments/quickstart.yaml
        overrides: ["--trainer.max_epochs", "30"]
      augment:
        config: experiments/digits/lenet_10pc_augment.yaml
    metric: test/acc

    ssl-lightning-suite --config experiments/suites/digits.yaml
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

CSV_FIELDS = ["method", "labels_per_class", "seed", "status", "metric", "value", "seconds", "log_dir", "error"]
DEFAULT_LABELS_KEY = "--data.init_args.labels_per_class"


@dataclass
class MethodSpec:
    """One line of the plot: a config and how to set its labels per class and seed."""

    name: str
    config: str
    overrides: list[str] = field(default_factory=list)
    labels_key: str = DEFAULT_LABELS_KEY
    seed_keys: list[str] = field(default_factory=lambda: ["--seed_everything", "--data.init_args.seed"])


@dataclass
class SuiteSpec:
    output_dir: Path
    labels_per_class: list[int | None]
    seeds: list[int]
    methods: list[MethodSpec]
    metric: str = "test/acc"
    trainer_overrides: list[str] = field(default_factory=list)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SuiteSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"suite config {path} does not exist; see experiments/suites/ for examples")
        raw = yaml.safe_load(path.read_text())
        known = {"output_dir", "labels_per_class", "seeds", "methods", "metric", "trainer_overrides"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown suite keys {sorted(unknown)}; allowed: {sorted(known)}")
        missing = {"output_dir", "labels_per_class", "seeds", "methods"} - set(raw)
        if missing:
            raise ValueError(f"{path}: missing suite keys {sorted(missing)}")
        methods = []
        for name, spec in raw["methods"].items():
            if "config" not in spec:
                raise ValueError(f"{path}: method {name!r} needs a 'config' (path to an experiment YAML)")
            spec = {**spec, "config": str(resolve_config(spec["config"], path))}
            methods.append(MethodSpec(name=name, **spec))
        return cls(
            output_dir=Path(raw["output_dir"]),
            labels_per_class=list(raw["labels_per_class"]),
            seeds=[int(s) for s in raw["seeds"]],
            methods=methods,
            metric=raw.get("metric", "test/acc"),
            trainer_overrides=[str(a) for a in raw.get("trainer_overrides", [])],
        )


def resolve_config(config: str, suite_path: Path) -> Path:
    """A method's config path: as given (relative to the working directory), else relative to the
    suite file's folder or one of its parents (so suites run from anywhere in the repo)."""
    candidate = Path(config).expanduser()
    if candidate.is_absolute() or candidate.is_file():
        return candidate
    for folder in [suite_path.resolve().parent, *suite_path.resolve().parents]:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"{suite_path}: method config {config} not found (relative to the working directory "
                            f"or to the suite file's folders)")


def run_key(method: str, labels: int | None, seed: int) -> tuple[str, str, str]:
    return method, "all" if labels is None else str(labels), str(seed)


def read_results(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def append_result(path: Path, row: dict[str, Any]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})


def finished_keys(rows: list[dict[str, str]]) -> set[tuple[str, str, str]]:
    return {(r["method"], r["labels_per_class"], r["seed"]) for r in rows if r["status"] == "ok"}


def override_config(folder: Path, key: str, value: int | None) -> Path:
    """A YAML that sets one dotted key (``--data.init_args.labels_per_class``) to ``value``."""
    parts = key.lstrip("-").split(".")
    tree: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        tree = {part: tree}
    path = folder / "overrides" / f"{'.'.join(parts)}={value}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(tree))
    return path


def run_one(suite: SuiteSpec, method: MethodSpec, labels: int | None, seed: int) -> dict[str, Any]:
    """Train and test one configuration in-process; never raises for a failed run."""
    from ssl_lightning.cli import build_cli

    name = f"{method.name}/lpc_{'all' if labels is None else labels}/seed_{seed}"
    args = ["fit", "--config", method.config, *method.overrides, *suite.trainer_overrides]
    # As a config file, not a flag: jsonargparse rejects "null" for a flag nested inside a
    # subclass argument (e.g. --data.init_args.source.init_args.labels_per_class null).
    args += ["--config", str(override_config(suite.output_dir, method.labels_key, labels))]
    for key in method.seed_keys:
        args += [key, str(seed)]
    args += [
        "--test_after_fit", "true",
        "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
        "--trainer.logger.save_dir", str(suite.output_dir / "tensorboard"),
        "--trainer.logger.name", name,
    ]  # fmt: skip
    start = time.perf_counter()
    row: dict[str, Any] = {
        "method": method.name,
        "labels_per_class": "all" if labels is None else labels,
        "seed": seed,
        "metric": suite.metric,
    }
    try:
        with warnings.catch_warnings():
            # The suite's own argv is not the run's; LightningCLI warns about exactly that.
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
            cli = build_cli(args)
        value = cli.trainer.callback_metrics.get(suite.metric)
        if value is None:
            raise KeyError(f"the run logged no {suite.metric!r}; logged: {sorted(cli.trainer.callback_metrics)}")
        row.update(status="ok", value=f"{float(value):.6f}", log_dir=cli.trainer.log_dir)
    except (Exception, SystemExit) as err:  # a failed run (or a config the CLI rejects) is recorded; the suite goes on
        log.exception("run %s failed", name)
        row.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
    row["seconds"] = f"{time.perf_counter() - start:.1f}"
    return row


def summarize(rows: list[dict[str, str]], methods: list[str]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """{method: {labels: (mean, std, n)}} over successful runs (latest row per key wins)."""
    latest: dict[tuple[str, str, str], float] = {}
    for r in rows:
        if r["status"] == "ok":
            latest[(r["method"], r["labels_per_class"], r["seed"])] = float(r["value"])
    table: dict[str, dict[str, tuple[float, float, int]]] = {m: {} for m in methods}
    grouped: dict[tuple[str, str], list[float]] = {}
    for (method, labels, _seed), value in latest.items():
        grouped.setdefault((method, labels), []).append(value)
    for (method, labels), values in grouped.items():
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        table.setdefault(method, {})[labels] = (statistics.mean(values), std, len(values))
    return table


def labels_order(labels: str) -> float:
    return math.inf if labels == "all" else float(labels)


def write_markdown(table: dict[str, dict[str, tuple[float, float, int]]], metric: str, path: Path) -> None:
    columns = sorted({lab for row in table.values() for lab in row}, key=labels_order)
    lines = [
        f"| method \\ labels per class ({metric}) | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method, row in table.items():
        cells = [f"{row[c][0]:.3f} ± {row[c][1]:.3f} (n={row[c][2]})" if c in row else "–" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(table: dict[str, dict[str, tuple[float, float, int]]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [float(lab) for row in table.values() for lab in row if lab != "all"]
    all_x = max(numeric) * 2 if numeric else 1.0
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, row in table.items():
        labels = sorted(row, key=labels_order)
        if not labels:
            continue
        xs = [all_x if lab == "all" else float(lab) for lab in labels]
        ax.errorbar(xs, [row[lab][0] for lab in labels], yerr=[row[lab][1] for lab in labels], marker="o",
                    capsize=3, label=method)
    ax.set_xscale("log")
    ticks = sorted({lab for row in table.values() for lab in row}, key=labels_order)
    ax.set_xticks([all_x if lab == "all" else float(lab) for lab in ticks], ticks)
    ax.minorticks_off()
    ax.set_xlabel("labels per class")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def run_suite(suite: SuiteSpec, dry_run: bool = False) -> list[dict[str, str]]:
    """Run every missing (method, labels, seed) and refresh the table and plot."""
    suite.output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = suite.output_dir / "results.csv"
    done = finished_keys(read_results(csv_path))
    grid = [(m, lab, s) for m in suite.methods for lab in suite.labels_per_class for s in suite.seeds]
    todo = [(m, lab, s) for m, lab, s in grid if run_key(m.name, lab, s) not in done]
    print(f"suite: {len(grid)} runs, {len(grid) - len(todo)} finished earlier, {len(todo)} to run -> {csv_path}")
    if dry_run:
        for m, lab, s in todo:
            print(f"  would run {m.name} labels_per_class={lab} seed={s}")
        return read_results(csv_path)
    # Plain lines, not a rich live display: each run shows the Trainer's own rich progress bar,
    # and rich cannot nest live displays.
    started = time.perf_counter()
    for i, (method, labels, seed) in enumerate(todo):
        elapsed = time.perf_counter() - started
        eta = f"{elapsed / i * (len(todo) - i) / 60:.1f} min" if i else "unknown"
        what = f"{method.name} labels_per_class={'all' if labels is None else labels} seed={seed}"
        print(f"[suite {i}/{len(todo)} done, {len(todo) - i} remaining, ETA {eta}] {what}", flush=True)
        row = run_one(suite, method, labels, seed)
        append_result(csv_path, row)
        refresh_reports(suite)
        print(f"[suite] {what}: {row['status']} {row.get('value', row.get('error', ''))} ({row['seconds']} s)",
              flush=True)
    refresh_reports(suite)
    return read_results(csv_path)


def refresh_reports(suite: SuiteSpec) -> None:
    rows = read_results(suite.output_dir / "results.csv")
    table = summarize(rows, [m.name for m in suite.methods])
    write_markdown(table, suite.metric, suite.output_dir / "summary.md")
    write_plot(table, suite.metric, suite.output_dir / "accuracy_vs_labels.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ssl-lightning-suite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="suite YAML (see experiments/suites/)")
    parser.add_argument("--output_dir", default=None, help="override the suite's output_dir")
    parser.add_argument("--dry_run", action="store_true", help="list the runs that would run, run nothing")
    args = parser.parse_args(argv)
    suite = SuiteSpec.from_yaml(args.config)
    if args.output_dir:
        suite.output_dir = Path(args.output_dir)
    run_suite(suite, dry_run=args.dry_run)
    print(f"results: {suite.output_dir / 'results.csv'}\ntable: {suite.output_dir / 'summary.md'}\n"
          f"plot: {suite.output_dir / 'accuracy_vs_labels.png'}")
    print((suite.output_dir / "summary.md").read_text() if (suite.output_dir / "summary.md").exists() else "")


if __name__ == "__main__":
    main()
