"""The sample-efficiency suite: grid, results CSV, table, plot, resume without overwriting."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from ssl_lightning.suite import SuiteSpec, main, run_suite, summarize
from tests.helpers import EXPERIMENTS, REPO


def write_suite(tmp_path: Path, methods: dict, labels=(3,), seeds=(0,)) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {"output_dir": str(tmp_path / "out"), "labels_per_class": list(labels), "seeds": list(seeds),
             "methods": methods, "trainer_overrides": ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"]}
        )
    )
    return path


def rows(out: Path) -> list[dict]:
    with (out / "results.csv").open() as f:
        return list(csv.DictReader(f))


def test_suite_runs_grid_writes_reports_and_resumes(chdir_tmp):
    quickstart = str(EXPERIMENTS / "quickstart.yaml")
    path = write_suite(chdir_tmp, {"baseline": {"config": quickstart}}, labels=(3, None), seeds=(0, 1))
    suite = SuiteSpec.from_yaml(path)
    run_suite(suite)
    out = chdir_tmp / "out"
    first = rows(out)
    assert [(r["labels_per_class"], r["seed"], r["status"]) for r in first] == [
        ("3", "0", "ok"), ("3", "1", "ok"), ("all", "0", "ok"), ("all", "1", "ok")
    ]
    assert (out / "accuracy_vs_labels.png").stat().st_size > 1000
    table = (out / "summary.md").read_text()
    assert "| baseline |" in table and "(n=2)" in table
    # Every run logged to TensorBoard like any other run.
    assert all(Path(r["log_dir"]).is_dir() for r in first)

    # Re-running skips finished runs and keeps earlier rows untouched.
    run_suite(SuiteSpec.from_yaml(path))
    assert rows(out) == first

    # A new seed only adds the missing runs.
    path = write_suite(chdir_tmp, {"baseline": {"config": quickstart}}, labels=(3, None), seeds=(0, 1, 2))
    run_suite(SuiteSpec.from_yaml(path))
    after = rows(out)
    assert after[:4] == first and len(after) == 6


def test_failed_run_is_recorded_and_rerun(chdir_tmp):
    bad = chdir_tmp / "bad.yaml"
    bad.write_text((EXPERIMENTS / "quickstart.yaml").read_text().replace("num_classes: 10", "num_classes: 7"))
    path = write_suite(chdir_tmp, {"broken": {"config": str(bad)}})
    run_suite(SuiteSpec.from_yaml(path))
    (row,) = rows(chdir_tmp / "out")
    assert row["status"] == "failed" and "backbone's head has 7" in row["error"]
    bad.write_text((EXPERIMENTS / "quickstart.yaml").read_text())  # the user fixes the config
    run_suite(SuiteSpec.from_yaml(path))
    assert [r["status"] for r in rows(chdir_tmp / "out")] == ["failed", "ok"]


def test_summary_mean_and_std():
    data = [
        {"method": "m", "labels_per_class": "5", "seed": "0", "status": "ok", "value": "0.5"},
        {"method": "m", "labels_per_class": "5", "seed": "1", "status": "ok", "value": "0.7"},
        {"method": "m", "labels_per_class": "5", "seed": "2", "status": "failed", "value": ""},
    ]
    mean, std, n = summarize(data, ["m"])["m"]["5"]
    assert n == 2 and mean == pytest.approx(0.6) and std == pytest.approx(0.1414, abs=1e-3)


def test_bad_suite_configs_are_clear(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("output_dir: x\nlabels_per_class: [1]\nseeds: [0]\nmethods: {}\nepochs: 3\n")
    with pytest.raises(ValueError, match=r"unknown suite keys \['epochs'\]"):
        SuiteSpec.from_yaml(path)
    path.write_text("output_dir: x\nlabels_per_class: [1]\nseeds: [0]\nmethods: {a: {config: nowhere.yaml}}\n")
    with pytest.raises(FileNotFoundError, match="method config nowhere.yaml not found"):
        SuiteSpec.from_yaml(path)


@pytest.mark.parametrize("suite", sorted((EXPERIMENTS / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_suites_parse_and_list_their_runs(suite, chdir_tmp, capsys):
    main(["--config", str(suite), "--dry_run", "--output_dir", str(chdir_tmp / "out")])
    assert "to run" in capsys.readouterr().out
    for method in SuiteSpec.from_yaml(suite).methods:
        assert Path(method.config).is_file() and str(REPO) in str(Path(method.config).resolve())
