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
    ssl-lightning-suite --config experiments/suites/digits.yaml --methods lenet simclr_probe --seeds 0 1 2

Two optional steps per method, both cached under ``output_dir`` and never overwritten:

* ``select``: choose which examples to label instead of a random ``labels_per_class``. For every
  (labels, seed) the suite writes one subset file with ``ssl-lightning-select`` (budget =
  labels per class x number of classes, in total, class-agnostic) and the run trains on exactly
  those examples (``subset_key`` is set, ``labels_key`` null). "All labels" runs select nothing.
* ``pretrain``: a run (e.g. SimCLR) once per seed, shared by every label budget, whose output
  (an encoder file) is passed to the method's run through ``checkpoint_key``.

::

    methods:
      lenet+typiclust:
        config: experiments/digits/lenet_10pc.yaml
        labels_per_class: [2, 5, 10]          # this method's own grid (default: the suite's)
        select:
          config: experiments/selection/digits_effnet.yaml
          strategy: typiclust
        # subset_key default: labels_key with its last part replaced by subset_file
      simclr_probe:
        config: experiments/transfer/simclr_probe_digits.yaml
        pretrain:
          config: experiments/pretrain/simclr_digits.yaml
          overrides: ["--trainer.max_steps", "300"]
          seed_keys: ["--seed_everything", "--data.init_args.source.init_args.seed"]
          output_key: --model.init_args.encoder_path
          checkpoint_key: --model.init_args.backbone_checkpoint
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import statistics
import time
import warnings
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

CSV_FIELDS = ["method", "labels_per_class", "seed", "status", "metric", "value", "seconds", "log_dir", "error"]
DEFAULT_LABELS_KEY = "--data.init_args.labels_per_class"


@dataclass
class SelectSpec:
    """How a method chooses its labelled examples: an ``ssl-lightning-select`` config and strategy.

    The selection's DataModule must describe the training run's pool (same data, ``val_size``
    and seed; ``seed_keys`` set the data seed to the suite's seed): a run whose pool differs
    refuses the subset file (its pool fingerprint).
    """

    config: str
    strategy: str = "typiclust"
    overrides: list[str] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["--seed", "--data.init_args.seed"])


@dataclass
class PretrainSpec:
    """A run once per seed (shared by every label budget) whose output file the method's run loads.

    ``output_key`` tells the pretrain run where to write (e.g. ``--model.init_args.encoder_path``);
    ``checkpoint_key`` passes that file to the method's run (e.g. ``--model.init_args.backbone_checkpoint``).
    """

    config: str
    output_key: str
    checkpoint_key: str
    overrides: list[str] = field(default_factory=list)
    seed_keys: list[str] = field(default_factory=lambda: ["--seed_everything", "--data.init_args.seed"])
    output_name: str = "encoder.pt"


@dataclass
class MethodSpec:
    """One line of the plot: a config and how to set its labels per class and seed."""

    name: str
    config: str
    overrides: list[str] = field(default_factory=list)
    labels_key: str = DEFAULT_LABELS_KEY
    seed_keys: list[str] = field(default_factory=lambda: ["--seed_everything", "--data.init_args.seed"])
    labels_per_class: list[int | None] | None = None
    select: SelectSpec | None = None
    subset_key: str | None = None
    pretrain: PretrainSpec | None = None

    def __post_init__(self) -> None:
        if self.select is not None and self.subset_key is None:
            self.subset_key = self.labels_key.rsplit(".", 1)[0] + ".subset_file"


def _spec(cls: type, raw: Any, where: str, suite_path: Path) -> Any:
    """Build a spec dataclass from a YAML mapping, naming unknown and missing keys."""
    if not isinstance(raw, dict):
        raise ValueError(f"{suite_path}: {where} must be a mapping, got {raw!r}")
    fields = cls.__dataclass_fields__
    unknown = set(raw) - set(fields) - ({"name"} if cls is MethodSpec else set())
    if unknown:
        allowed = sorted(f for f in fields if f != "name")
        raise ValueError(f"{suite_path}: {where} has unknown keys {sorted(unknown)}; allowed: {allowed}")
    required = {f for f, info in fields.items() if info.default is info.default_factory is MISSING} - {"name"}
    missing = required - set(raw)
    if missing:
        raise ValueError(f"{suite_path}: {where} needs {sorted(missing)}")
    raw = dict(raw)
    if "config" in raw:
        raw["config"] = str(resolve_config(raw["config"], suite_path))
    return raw


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
            if not isinstance(spec, dict) or "config" not in spec:
                raise ValueError(f"{path}: method {name!r} needs a 'config' (path to an experiment YAML)")
            spec = _spec(MethodSpec, spec, f"method {name!r}", path)
            if spec.get("select") is not None:
                spec["select"] = SelectSpec(**_spec(SelectSpec, spec["select"], f"method {name!r} select", path))
            if spec.get("pretrain") is not None:
                spec["pretrain"] = PretrainSpec(
                    **_spec(PretrainSpec, spec["pretrain"], f"method {name!r} pretrain", path)
                )
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


def file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def select_request(method: MethodSpec, labels: int, seed: int) -> dict[str, Any]:
    """What a subset file answers: the same request may reuse it, another one must not."""
    assert method.select is not None
    spec = method.select
    return {
        "method": method.name,
        # the file's name and contents, not its absolute path: a moved checkout reuses its subsets
        "config": Path(spec.config).name,
        "config_sha": file_sha(spec.config),
        "strategy": spec.strategy,
        "overrides": spec.overrides,
        "labels_per_class": labels,
        "seed": seed,
    }


def subset_file(suite: SuiteSpec, method: MethodSpec, labels: int, seed: int) -> Path:
    """The subset file for (method, labels, seed): reused when it answers the same request,
    written with ``ssl-lightning-select`` when missing, never overwritten."""
    from ssl_lightning.selection.cli import num_classes_of, prepare, select_once

    assert method.select is not None
    spec = method.select
    path = suite.output_dir / "subsets" / method.name / f"lpc_{labels}_seed_{seed}.json"
    request = select_request(method, labels, seed)
    if path.exists():
        recorded = json.loads(path.read_text()).get("meta", {}).get("suite_request")
        if recorded != request:
            raise FileExistsError(
                f"subset file {path} exists but was made for another request ({recorded} instead of {request}); "
                f"the suite never overwrites subset files. Delete it (and the runs that used it from results.csv) "
                f"or use another output_dir."
            )
        log.info("reusing subset file %s", path)
        return path
    args = ["--config", spec.config, "--cache_dir", str(suite.output_dir / "embeddings"), *spec.overrides]
    for key in spec.seed_keys:
        args += [key, str(seed)]
    args += ["--strategy", spec.strategy, "--budget", "1", "--output", str(path)]
    cfg, datamodule, backbone = prepare(args)
    num_classes = num_classes_of(datamodule)
    if num_classes is None:
        raise ValueError(f"{spec.config}: {type(datamodule).__name__} names no classes, so the suite cannot turn "
                         f"{labels} labels per class into a total budget")
    cfg.budget = labels * num_classes  # class-agnostic: the same total as labels_per_class would label
    return select_once(cfg, datamodule, backbone, extra_meta={"suite_request": request})


def pretrained_file(suite: SuiteSpec, method: MethodSpec, seed: int) -> Path:
    """The pretrain run's output for ``seed``: run once, shared by every label budget (and by every
    method with the same pretrain request), under ``pretrain/<config>-<request hash>/seed_<seed>/``."""
    assert method.pretrain is not None
    spec = method.pretrain
    request = {"config": Path(spec.config).name, "config_sha": file_sha(spec.config), "overrides": spec.overrides,
               "seed_keys": spec.seed_keys, "output_key": spec.output_key, "seed": seed}
    digest = hashlib.sha256(json.dumps({**request, "seed": None}, sort_keys=True).encode()).hexdigest()[:10]
    folder = suite.output_dir / "pretrain" / f"{Path(spec.config).stem}-{digest}" / f"seed_{seed}"
    output, request_file = folder / spec.output_name, folder / "request.json"
    if output.exists():
        if not request_file.is_file() or json.loads(request_file.read_text()) != request:
            raise FileExistsError(f"{output} exists but {request_file} does not record this request ({request}); "
                                  f"the suite never overwrites it. Delete {folder} to pretrain again.")
        log.info("reusing pretrained %s", output)
        return output
    args = ["fit", "--config", spec.config, *spec.overrides]
    for key in spec.seed_keys:
        args += [key, str(seed)]
    args += [
        spec.output_key, str(output),
        "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
        "--trainer.logger.save_dir", str(suite.output_dir / "tensorboard"),
        "--trainer.logger.name", f"pretrain/{folder.parent.name}/seed_{seed}",
    ]  # fmt: skip
    print(f"[suite] pretraining {folder.parent.name} seed={seed} for {method.name}", flush=True)
    start = time.perf_counter()
    run_cli(args)
    if not output.is_file():
        raise FileNotFoundError(f"the pretrain run ({spec.config}) finished but wrote no {output}; "
                                f"does {spec.output_key} name the file it writes?")
    request_file.write_text(json.dumps(request, indent=1))
    print(f"[suite] pretrained {output} ({time.perf_counter() - start:.0f} s)", flush=True)
    return output


def run_cli(args: list[str]) -> Any:
    from ssl_lightning.cli import build_cli

    with warnings.catch_warnings():
        # The suite's own argv is not the run's; LightningCLI warns about exactly that.
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return build_cli(args)


def run_args(suite: SuiteSpec, method: MethodSpec, labels: int | None, seed: int) -> list[str]:
    """The run's CLI arguments; writes the subset file and runs the pretraining it needs first."""
    args = ["fit", "--config", method.config, *method.overrides, *suite.trainer_overrides]
    # As a config file, not a flag: jsonargparse rejects "null" for a flag nested inside a
    # subclass argument (e.g. --data.init_args.source.init_args.labels_per_class null).
    if method.select is not None and labels is not None:
        assert method.subset_key is not None
        subset = subset_file(suite, method, labels, seed)
        args += ["--config", str(override_config(suite.output_dir, method.labels_key, None))]
        args += [method.subset_key, str(subset)]
    else:
        args += ["--config", str(override_config(suite.output_dir, method.labels_key, labels))]
    if method.pretrain is not None:
        args += [method.pretrain.checkpoint_key, str(pretrained_file(suite, method, seed))]
    for key in method.seed_keys:
        args += [key, str(seed)]
    return args


def run_one(suite: SuiteSpec, method: MethodSpec, labels: int | None, seed: int) -> dict[str, Any]:
    """Train and test one configuration in-process; never raises for a failed run."""
    name = f"{method.name}/lpc_{'all' if labels is None else labels}/seed_{seed}"
    start = time.perf_counter()
    row: dict[str, Any] = {
        "method": method.name,
        "labels_per_class": "all" if labels is None else labels,
        "seed": seed,
        "metric": suite.metric,
    }
    try:
        args = run_args(suite, method, labels, seed)
        args += [
            "--test_after_fit", "true",
            "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
            "--trainer.logger.save_dir", str(suite.output_dir / "tensorboard"),
            "--trainer.logger.name", name,
        ]  # fmt: skip
        cli = run_cli(args)
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


def method_labels(suite: SuiteSpec, method: MethodSpec) -> list[int | None]:
    return suite.labels_per_class if method.labels_per_class is None else method.labels_per_class


def run_suite(suite: SuiteSpec, dry_run: bool = False) -> list[dict[str, str]]:
    """Run every missing (method, labels, seed) and refresh the table and plot."""
    suite.output_dir.mkdir(parents=True, exist_ok=True)
    csv_path = suite.output_dir / "results.csv"
    done = finished_keys(read_results(csv_path))
    grid = [(m, lab, s) for m in suite.methods for lab in method_labels(suite, m) for s in suite.seeds]
    todo = [(m, lab, s) for m, lab, s in grid if run_key(m.name, lab, s) not in done]
    print(f"suite: {len(grid)} runs, {len(grid) - len(todo)} finished earlier, {len(todo)} to run -> {csv_path}")
    if dry_run:
        for m, lab, s in todo:
            steps = [f"select {m.select.strategy}"] if m.select is not None and lab is not None else []
            steps += ["pretrain (once per seed)"] if m.pretrain is not None else []
            print(f"  would run {m.name} labels_per_class={lab} seed={s}" + (f" ({', '.join(steps)})" if steps else ""))
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
    parser.add_argument("--methods", nargs="+", default=None, help="run only these methods of the suite")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="override the suite's seeds")
    args = parser.parse_args(argv)
    suite = SuiteSpec.from_yaml(args.config)
    if args.methods:
        unknown = sorted(set(args.methods) - {m.name for m in suite.methods})
        if unknown:
            names = [m.name for m in suite.methods]
            parser.error(f"--methods {unknown} are not in {args.config}; its methods: {names}")
        suite.methods = [m for m in suite.methods if m.name in args.methods]
    if args.output_dir:
        suite.output_dir = Path(args.output_dir)
    if args.seeds:
        suite.seeds = args.seeds
    run_suite(suite, dry_run=args.dry_run)
    print(f"results: {suite.output_dir / 'results.csv'}\ntable: {suite.output_dir / 'summary.md'}\n"
          f"plot: {suite.output_dir / 'accuracy_vs_labels.png'}")
    print((suite.output_dir / "summary.md").read_text() if (suite.output_dir / "summary.md").exists() else "")


if __name__ == "__main__":
    main()
