"""The selection YAMLs run: select configs through ``ssl-lightning-select`` on digits and on tiny
CIFAR-10 / text files written here, the active-learning train config through fast_dev_run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ssl_lightning.data.subset_file import load_subset
from ssl_lightning.selection.cli import build_parser, main
from tests.helpers import EXPERIMENTS, fast_dev_run

SELECTION = EXPERIMENTS / "selection"


def selected(path: Path) -> dict:
    return json.loads(path.read_text())


def test_digits_lenet_selects_40(chdir_tmp):
    main(["--config", str(SELECTION / "digits_lenet.yaml"), "--cache_dir", "cache", "--output", "s.json"])
    payload = selected(chdir_tmp / "s.json")
    assert len(payload["indices"]) == 40 and payload["meta"]["strategy"] == "typiclust"


def test_cifar10_effnet_selects_on_a_tiny_cifar(cifar_root, chdir_tmp):
    main(
        [
            "--config",
            str(SELECTION / "cifar10_effnet.yaml"),
            "--data.init_args.root",
            str(cifar_root),
            "--data.init_args.val_size",
            "20",
            "--backbone.init_args.input_size",
            "64",
            "--budget",
            "10",
            "--cache_dir",
            "cache",
            "--output",
            "s.json",
        ]
    )
    payload = selected(chdir_tmp / "s.json")
    assert payload["dataset"] == "CIFAR10DataModule" and payload["num_train"] == 80
    assert len(load_subset(chdir_tmp / "s.json", "CIFAR10DataModule", 80)) == 10
    assert payload["meta"]["embedding_key"].startswith("TimmBackbone-CIFAR10DataModule-")


def write_texts(path: Path) -> Path:
    topics = {
        "sports": "the team won the match after a late goal in the final minute",
        "business": "shares fell as the company reported lower quarterly profit and sales",
        "science": "researchers observed a new planet orbiting a distant star with a telescope",
        "world": "the president met foreign ministers to discuss the peace agreement",
    }
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(10):
            for label, text in topics.items():
                writer.writerow([f"{text} {i}", label])
    return path


def test_agnews_minilm_selects_on_a_tiny_csv(chdir_tmp):
    train = write_texts(chdir_tmp / "train.csv")
    main(
        [
            "--config",
            str(SELECTION / "agnews_minilm.yaml"),
            "--data.init_args.train_file",
            str(train),
            "--data.init_args.val_size",
            "4",
            "--data.init_args.test_size",
            "4",
            "--budget",
            "4",
            "--cache_dir",
            "cache",
            "--output",
            "s.json",
        ]
    )
    payload = selected(chdir_tmp / "s.json")
    assert payload["dataset"] == "TextClassificationDataModule" and payload["num_train"] == 32
    assert len(payload["indices"]) == 4
    # one typical text of each of the 4 topic clusters
    assert payload["per_class_counts"] == {"0": 1, "1": 1, "2": 1, "3": 1}


def test_active_digits_config_parses_and_its_train_config_runs(chdir_tmp):
    cfg = build_parser().parse_args(["--config", str(SELECTION / "active_digits.yaml"), "--workdir", "al"])
    assert cfg.rounds == 3 and cfg.strategy == "margin" and cfg.initial_strategy == "typiclust"
    assert Path(cfg.train_config.absolute) == SELECTION / "active_digits_train.yaml"
    cli = fast_dev_run(SELECTION / "active_digits_train.yaml")
    assert cli.trainer.state.finished


def test_digits_effnet_selects(chdir_tmp):
    # a smaller pool and input size than the YAML's, to stay fast on a CPU
    main(
        [
            "--config",
            str(SELECTION / "digits_effnet.yaml"),
            "--data.init_args.test_size",
            "1400",
            "--data.init_args.val_size",
            "300",
            "--backbone.init_args.input_size",
            "32",
            "--budget",
            "20",
            "--cache_dir",
            "cache",
            "--output",
            "s.json",
        ]
    )
    payload = selected(chdir_tmp / "s.json")
    assert payload["num_train"] == 97 and len(payload["indices"]) == 20


def test_r8_minilm_selects_and_its_subset_trains_the_text_config(chdir_tmp):
    train, test = write_texts(chdir_tmp / "train.csv"), write_texts(chdir_tmp / "test.csv")
    files = ["--data.init_args.train_file", str(train), "--data.init_args.test_file", str(test)]
    main(["--config", str(SELECTION / "r8_minilm.yaml"), *files, "--data.init_args.val_size", "8",
          "--budget", "4", "--cache_dir", "cache", "--output", "r8.json"])  # fmt: skip
    payload = selected(chdir_tmp / "r8.json")
    assert payload["num_train"] == 32 and payload["per_class_counts"] == {"0": 1, "1": 1, "2": 1, "3": 1}
    # The YAML's comment: the fine-tuning config trains on exactly that subset (same pool settings).
    cli = fast_dev_run(
        EXPERIMENTS / "text" / "minilm_8pc.yaml", *files, "--data.init_args.val_size", "8",
        "--data.init_args.labels_per_class", "null", "--data.init_args.subset_file", "r8.json",
        "--model.init_args.backbone.init_args.num_classes", "4", "--test_after_fit", "false",
    )  # fmt: skip
    datasets = cli.datamodule.datasets
    assert datasets["labelled"].texts == [datasets["all"].texts[i] for i in payload["indices"]]


def test_selection_eval_script_on_text(chdir_tmp):
    import importlib.util

    from tests.helpers import REPO

    spec = importlib.util.spec_from_file_location("selection_eval", REPO / "scripts" / "selection_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train, test = write_texts(chdir_tmp / "train.csv"), write_texts(chdir_tmp / "test.csv")
    table = module.main(
        ["--config", str(SELECTION / "r8_minilm.yaml"), "--data.init_args.train_file", str(train),
         "--data.init_args.test_file", str(test), "--data.init_args.val_size", "8", "--cache_dir", "cache",
         "--budgets", "[4]", "--strategies", "[random,typiclust]", "--seeds", "[0]"]
    )  # fmt: skip
    lines = table.splitlines()
    assert lines[0].startswith("| strategy (HFEncoder, 32-item pool, 40 test) | 4 labels |")
    # One typical text of each topic: MiniLM separates these four topics perfectly.
    assert lines[3].startswith("| typiclust | 1.000")
