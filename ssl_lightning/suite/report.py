"""The suite's results: one CSV row per finished run, and the table and plot derived from it.

``results.csv`` is only ever appended to (a resumed suite adds rows, never rewrites them);
``summary.md`` (mean +- std over seeds per method and labels per class) and
``accuracy_vs_labels.png`` are regenerated from it after every run.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any

from ssl_lightning.suite.spec import SuiteSpec

CSV_FIELDS = ["method", "labels_per_class", "seed", "status", "metric", "value", "seconds", "log_dir", "error"]


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


def refresh_reports(suite: SuiteSpec) -> None:
    """Regenerate ``summary.md`` and ``accuracy_vs_labels.png`` from ``results.csv``."""
    rows = read_results(suite.output_dir / "results.csv")
    table = summarize(rows, [m.name for m in suite.methods])
    write_markdown(table, suite.metric, suite.output_dir / "summary.md")
    write_plot(table, suite.metric, suite.output_dir / "accuracy_vs_labels.png")
