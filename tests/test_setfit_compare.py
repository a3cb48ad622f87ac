"""scripts/setfit_compare.py: SetFit and the frozen-encoder probe see exactly the texts our YAML run trains on."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections import Counter

import pytest

from tests.helpers import REPO, fast_dev_run
from tests.test_experiments_text import TEXT, write_files

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

spec = importlib.util.spec_from_file_location("setfit_compare", REPO / "scripts" / "setfit_compare.py")
setfit_compare = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = setfit_compare  # dataclasses look their module up there
spec.loader.exec_module(setfit_compare)


def test_data_args_come_from_the_yaml():
    args = setfit_compare.data_args(TEXT / "minilm_8pc.yaml")
    assert (args["labels_per_class"], args["val_size"], args["seed"]) == (8, 64, 0)
    assert setfit_compare.data_args(TEXT / "minilm_8pc.yaml", labels_per_class=64, seed=None)["labels_per_class"] == 64
    with pytest.raises(ValueError, match="TextClassificationDataModule"):
        setfit_compare.data_args(REPO / "experiments" / "quickstart.yaml")


def test_split_is_the_one_the_cli_run_trains_on(chdir_tmp):
    paths = write_files(chdir_tmp)
    overrides = [
        "--data.init_args.labels_per_class",
        "4",
        "--data.init_args.val_size",
        "4",
        "--data.init_args.seed",
        "3",
    ]
    cli = fast_dev_run(
        TEXT / "bilstm.yaml",
        "--data.init_args.train_file",
        paths["train"],
        "--data.init_args.test_file",
        paths["test"],
        *overrides,
        "--test_after_fit",
        "false",
    )
    labelled, test = cli.datamodule.datasets["labelled"], cli.datamodule.datasets["test"]
    kwargs = setfit_compare.data_args(
        TEXT / "bilstm.yaml", test_file=paths["test"], labels_per_class=4, val_size=4, seed=3
    )
    split = setfit_compare.few_shot_split(paths["train"], **kwargs)
    assert split.train_texts == labelled.texts
    assert [split.class_names[i] for i in split.train_labels] == labelled.labels
    assert split.test_texts == test.texts
    assert Counter(split.train_labels) == {0: 4, 1: 4}
    other = setfit_compare.few_shot_split(paths["train"], **{**kwargs, "seed": 4})
    assert other.train_texts != split.train_texts  # the seed picks the labelled texts


def test_probe_end_to_end_exports_the_split(chdir_tmp):
    paths = write_files(chdir_tmp)
    rows = setfit_compare.main(
        [
            "--config",
            str(TEXT / "minilm_8pc.yaml"),
            "--train_file",
            paths["train"],
            "--test_file",
            paths["test"],
            "--val_size",
            "4",
            "--methods",
            "[probe]",
            "--export_dir",
            "split",
            "--results",
            "results.jsonl",
        ]
    )
    assert [row["method"] for row in rows] == ["probe"]
    # "good"/"great" vs "bad"/"awful" films: the frozen MiniLM separates them.
    assert rows[0]["accuracy"] >= 0.8 and rows[0]["train"] == 16 and rows[0]["test"] == 6
    with open("split/train.csv", newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert Counter(row["label"] for row in exported) == {"negative": 8, "positive": 8}
    assert json.loads((chdir_tmp / "results.jsonl").read_text().splitlines()[0])["accuracy"] == rows[0]["accuracy"]


def test_setfit_runs_when_installed(chdir_tmp):
    pytest.importorskip("setfit")
    paths = write_files(chdir_tmp, per_class=4)
    args = ["--config", str(TEXT / "minilm_8pc.yaml"), "--train_file", paths["train"], "--test_file", paths["test"]]
    args += ["--labels_per_class", "2", "--val_size", "2", "--methods", "[setfit]", "--num_iterations", "1"]
    rows = setfit_compare.main(args)
    assert rows[0]["method"] == "setfit" and 0.0 <= rows[0]["accuracy"] <= 1.0 and rows[0]["train"] == 4
