"""Running the suite's grid: every missing (method, labels per class, seed), with its select/pretrain steps.

Each run is :func:`ssl_lightning.cli.run_config` on the method's config with the run's labels,
seed and logger as overrides; a failed run is recorded and the suite goes on. The ``select``
and ``pretrain`` steps write files that later runs (and a resumed suite) reuse when they
record the same request, and refuse to overwrite when they record another
(:func:`reuse_or_make`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ssl_lightning.cli import run_config
from ssl_lightning.selection.runner import num_classes_of, prepare, select_once
from ssl_lightning.suite.report import append_result, read_results, refresh_reports
from ssl_lightning.suite.spec import MethodSpec, SuiteSpec, method_labels

log = logging.getLogger(__name__)

TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"


def run_key(method: str, labels: int | None, seed: int) -> tuple[str, str, str]:
    return method, "all" if labels is None else str(labels), str(seed)


def finished_keys(rows: list[dict[str, str]]) -> set[tuple[str, str, str]]:
    return {(r["method"], r["labels_per_class"], r["seed"]) for r in rows if r["status"] == "ok"}


def file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def tensorboard_logger(suite: SuiteSpec, name: str) -> dict[str, Any]:
    """The override that logs a run under ``<output_dir>/tensorboard/<name>``."""
    save_dir = str(suite.output_dir / "tensorboard")
    return {"trainer.logger": {"class_path": TENSORBOARD, "init_args": {"save_dir": save_dir, "name": name}}}


def reuse_or_make(
    output: Path, request: dict[str, Any], recorded: Callable[[], Any], make: Callable[[], Path], remedy: str
) -> Path:
    """The file that answers ``request``: reused when it records the same request, made when missing.

    Args:
        output: the file.
        request: what the file must answer (plain JSON values).
        recorded: reads the request the existing file records (``None`` when it records none).
        make: writes the file and what it answers; returns its path.
        remedy: what the user can do when ``output`` answers another request (it is never overwritten).
    """
    if not output.exists():
        return make()
    before = recorded()
    if before != request:
        raise FileExistsError(
            f"{output} exists but was made for another request ({before} instead of {request}); "
            f"the suite never overwrites it. {remedy}"
        )
    log.info("reusing %s", output)
    return output


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
    written with the ``ssl-lightning-select`` library when missing, never overwritten."""
    assert method.select is not None
    spec = method.select
    path = suite.output_dir / "subsets" / method.name / f"lpc_{labels}_seed_{seed}.json"
    request = select_request(method, labels, seed)

    def make() -> Path:
        args = ["--config", spec.config, "--cache_dir", str(suite.output_dir / "embeddings"), *spec.overrides]
        for key in spec.seed_keys:
            args += [key, str(seed)]
        args += ["--strategy", spec.strategy, "--budget", "1", "--output", str(path)]
        cfg, datamodule, backbone = prepare(args)
        num_classes = num_classes_of(datamodule)
        if num_classes is None:
            raise ValueError(f"{spec.config}: {type(datamodule).__name__} names no classes, so the suite cannot "
                             f"turn {labels} labels per class into a total budget")
        cfg.budget = labels * num_classes  # class-agnostic: the same total as labels_per_class would label
        return select_once(cfg, datamodule, backbone, extra_meta={"suite_request": request})

    return reuse_or_make(
        path,
        request,
        lambda: json.loads(path.read_text()).get("meta", {}).get("suite_request"),
        make,
        "Delete it (and the runs that used it from results.csv) or use another output_dir.",
    )


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

    def make() -> Path:
        overrides = {**{key: seed for key in spec.seed_keys}, spec.output_key: str(output),
                     **tensorboard_logger(suite, f"pretrain/{folder.parent.name}/seed_{seed}")}
        print(f"[suite] pretraining {folder.parent.name} seed={seed} for {method.name}", flush=True)
        start = time.perf_counter()
        run_config(spec.config, "fit", overrides, args=spec.overrides)
        if not output.is_file():
            raise FileNotFoundError(f"the pretrain run ({spec.config}) finished but wrote no {output}; "
                                    f"does {spec.output_key} name the file it writes?")
        request_file.write_text(json.dumps(request, indent=1))
        print(f"[suite] pretrained {output} ({time.perf_counter() - start:.0f} s)", flush=True)
        return output

    return reuse_or_make(
        output,
        request,
        lambda: json.loads(request_file.read_text()) if request_file.is_file() else None,
        make,
        f"Delete {folder} to pretrain again.",
    )


def run_overrides(suite: SuiteSpec, method: MethodSpec, labels: int | None, seed: int) -> dict[str, Any]:
    """The run's config overrides; writes the subset file and runs the pretraining it needs first."""
    overrides: dict[str, Any] = {}
    if method.select is not None and labels is not None:
        assert method.subset_key is not None
        overrides[method.labels_key] = None
        overrides[method.subset_key] = str(subset_file(suite, method, labels, seed))
    else:
        overrides[method.labels_key] = labels
    if method.pretrain is not None:
        overrides[method.pretrain.checkpoint_key] = str(pretrained_file(suite, method, seed))
    overrides.update({key: seed for key in method.seed_keys})
    return overrides


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
        overrides = {**run_overrides(suite, method, labels, seed), **tensorboard_logger(suite, name)}
        result = run_config(
            method.config, "fit", overrides, args=[*method.overrides, *suite.trainer_overrides], test_after_fit=True
        )
        value = result.metrics.get(suite.metric)
        if value is None:
            raise KeyError(f"the run logged no {suite.metric!r}; logged: {sorted(result.metrics)}")
        row.update(status="ok", value=f"{value:.6f}", log_dir=result.trainer.log_dir)
    except (Exception, SystemExit) as err:  # a failed run (or a config the CLI rejects) is recorded; the suite goes on
        log.exception("run %s failed", name)
        row.update(status="failed", error=f"{type(err).__name__}: {err}"[:500])
    row["seconds"] = f"{time.perf_counter() - start:.1f}"
    return row


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


