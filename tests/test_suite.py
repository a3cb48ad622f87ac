"""The sample-efficiency suite: grid, results CSV, table, plot, resume without overwriting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from ssl_lightning.suite import SuiteSpec, main, run_suite, summarize
from tests.helpers import EXPERIMENTS, REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def write_suite(tmp_path: Path, methods: dict, labels=(3,), seeds=(0,)) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "out"),
                "labels_per_class": list(labels),
                "seeds": list(seeds),
                "methods": methods,
                "trainer_overrides": ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"],
            }
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
        ("3", "0", "ok"),
        ("3", "1", "ok"),
        ("all", "0", "ok"),
        ("all", "1", "ok"),
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


# ---- methods that choose their labels (select) or pretrain first (pretrain) -----------------
SELECT_LENET = {"config": str(EXPERIMENTS / "selection" / "digits_lenet.yaml"), "strategy": "typiclust"}
SIMCLR_PRETRAIN = {
    "config": str(EXPERIMENTS / "pretrain" / "simclr_digits.yaml"),
    "overrides": ["--trainer.max_steps", "2", "--trainer.check_val_every_n_epoch", "1"],
    "seed_keys": ["--seed_everything", "--data.init_args.source.init_args.seed"],
    "output_key": "--model.init_args.encoder_path",
    "checkpoint_key": "--model.init_args.backbone_checkpoint",
}


def run_config(row: dict) -> dict:
    """The config the run's CLI saved next to its TensorBoard logs."""
    return yaml.safe_load((Path(row["log_dir"]) / "config.yaml").read_text())


def test_typiclust_method_trains_on_its_subset_files(chdir_tmp):
    quickstart = str(EXPERIMENTS / "quickstart.yaml")
    methods = {"typiclust": {"config": quickstart, "labels_per_class": [2], "select": SELECT_LENET}}
    path = write_suite(chdir_tmp, methods, labels=(2, None), seeds=(0, 1))
    suite = SuiteSpec.from_yaml(path)
    assert suite.methods[0].subset_key == "--data.init_args.subset_file"
    run_suite(suite)
    out = chdir_tmp / "out"
    # The method's own grid replaces the suite's (no "all labels" run: nothing to choose there).
    assert [(r["labels_per_class"], r["seed"], r["status"]) for r in rows(out)] == [("2", "0", "ok"), ("2", "1", "ok")]
    for row in rows(out):
        labels, seed = int(row["labels_per_class"]), int(row["seed"])
        subset = out / "subsets" / "typiclust" / f"lpc_{labels}_seed_{seed}.json"
        payload = json.loads(subset.read_text())
        assert len(payload["indices"]) == labels * 10  # a total budget: labels per class x 10 classes
        assert payload["meta"]["strategy"] == "typiclust" and payload["meta"]["seed"] == seed
        data = run_config(row)["data"]["init_args"]
        assert data["subset_file"] == str(subset) and data["labels_per_class"] is None and data["seed"] == seed
    # Another seed is another pool and another selection.
    assert (
        json.loads((out / "subsets/typiclust/lpc_2_seed_0.json").read_text())["indices"]
        != json.loads((out / "subsets/typiclust/lpc_2_seed_1.json").read_text())["indices"]
    )


def test_subset_files_are_reused_for_the_same_request_and_never_overwritten(chdir_tmp):
    from ssl_lightning.suite import subset_file

    quickstart = str(EXPERIMENTS / "quickstart.yaml")
    suite = SuiteSpec.from_yaml(write_suite(chdir_tmp, {"m": {"config": quickstart, "select": SELECT_LENET}}))
    first = subset_file(suite, suite.methods[0], 2, 0)
    written = first.read_bytes()
    assert subset_file(suite, suite.methods[0], 2, 0) == first and first.read_bytes() == written
    other = {"m": {"config": quickstart, "select": {**SELECT_LENET, "strategy": "kcenter"}}}
    suite = SuiteSpec.from_yaml(write_suite(chdir_tmp, other))
    with pytest.raises(FileExistsError, match=r"lpc_2_seed_0.json exists but was made for another request"):
        subset_file(suite, suite.methods[0], 2, 0)
    assert first.read_bytes() == written


def test_pretrain_runs_once_per_seed_and_feeds_every_label_budget(chdir_tmp):
    probe = str(EXPERIMENTS / "transfer" / "simclr_probe_digits.yaml")
    methods = {
        "simclr": {"config": probe, "pretrain": SIMCLR_PRETRAIN},
        # the same pretraining request: the same encoder, not a second pretraining
        "simclr_again": {"config": probe, "labels_per_class": [2], "pretrain": SIMCLR_PRETRAIN},
    }
    path = write_suite(chdir_tmp, methods, labels=(2, 3), seeds=(0,))
    run_suite(SuiteSpec.from_yaml(path))
    out = chdir_tmp / "out"
    assert [r["status"] for r in rows(out)] == ["ok"] * 3
    (encoder,) = (out / "pretrain").glob("simclr_digits-*/seed_0/encoder.pt")
    used = {run_config(r)["model"]["init_args"]["backbone_checkpoint"] for r in rows(out)}
    assert used == {str(encoder)}
    # The pretraining logged like any run (one run, not one per label budget or method).
    assert len(list((out / "tensorboard" / "pretrain").glob("*/seed_0/version_*"))) == 1

    # An encoder whose request file says something else is not reused or overwritten.
    request = encoder.parent / "request.json"
    request.write_text(request.read_text().replace('"seed": 0', '"seed": 5'))
    from ssl_lightning.suite import pretrained_file

    suite = SuiteSpec.from_yaml(path)
    with pytest.raises(FileExistsError, match="never overwrites it. Delete"):
        pretrained_file(suite, suite.methods[0], 0)


@pytest.mark.parametrize("method", ["byol", "moco", "dino"])
def test_momentum_methods_are_pretrain_steps(method, chdir_tmp):
    """BYOL, MoCo and DINO configs plug into a method's pretrain step like SimCLR's (encoder_path -> file)."""
    from ssl_lightning.suite import pretrained_file

    pretrain = {**SIMCLR_PRETRAIN, "config": str(EXPERIMENTS / "pretrain" / f"{method}_digits.yaml")}
    probe = str(EXPERIMENTS / "transfer" / "simclr_probe_digits.yaml")
    suite = SuiteSpec.from_yaml(write_suite(chdir_tmp, {method: {"config": probe, "pretrain": pretrain}}))
    encoder = pretrained_file(suite, suite.methods[0], 0)
    assert encoder.is_file() and encoder.parent.parent.name.startswith(f"{method}_digits-")
    assert "features.0.weight" in torch.load(encoder, weights_only=True)  # a LeNet state dict for the probe


def test_bad_select_and_pretrain_entries_are_clear(tmp_path):
    quickstart = str(EXPERIMENTS / "quickstart.yaml")
    path = write_suite(tmp_path, {"m": {"config": quickstart, "select": {**SELECT_LENET, "budget": 4}}})
    with pytest.raises(ValueError, match=r"method 'm' select has unknown keys \['budget'\]"):
        SuiteSpec.from_yaml(path)
    pretrain = {k: v for k, v in SIMCLR_PRETRAIN.items() if k != "checkpoint_key"}
    path = write_suite(tmp_path, {"m": {"config": quickstart, "pretrain": pretrain}})
    with pytest.raises(ValueError, match=r"method 'm' pretrain needs \['checkpoint_key'\]"):
        SuiteSpec.from_yaml(path)
    path = write_suite(tmp_path, {"m": {"config": quickstart, "labels": [2]}})
    with pytest.raises(ValueError, match=r"method 'm' has unknown keys \['labels'\]"):
        SuiteSpec.from_yaml(path)


def test_methods_flag_runs_a_part_of_the_suite(chdir_tmp, capsys):
    digits = str(EXPERIMENTS / "suites" / "digits.yaml")
    main(["--config", digits, "--dry_run", "--output_dir", "out", "--methods", "lenet+typiclust", "simclr_probe"])
    listed = [line.split()[2] for line in capsys.readouterr().out.splitlines() if "would run" in line]
    assert listed == ["lenet+typiclust"] * 6 + ["simclr_probe"] * 8  # 3 budgets (no "all") vs 4, x 2 seeds
    main(["--config", digits, "--dry_run", "--output_dir", "out", "--methods", "simclr_probe", "--seeds", "7"])
    listed = [line.split()[2:5] for line in capsys.readouterr().out.splitlines() if "would run" in line]
    assert [seed for *_, seed in listed] == ["seed=7"] * 4
    with pytest.raises(SystemExit):
        main(["--config", digits, "--dry_run", "--output_dir", "out", "--methods", "lenet+typiclust", "nope"])
    assert "--methods ['nope'] are not in" in capsys.readouterr().err
