"""The text YAMLs run end to end on tiny files; a checkpoint predicts the same label names after reloading."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from ssl_lightning.data.text import TextClassificationDataModule
from ssl_lightning.methods import Classifier
from tests.helpers import EXPERIMENTS, fast_dev_run, run_cli

TEXT = EXPERIMENTS / "text"


def write_files(folder: Path, per_class: int = 14) -> dict[str, str]:
    """Two sentiment classes with quoted, comma-holding texts; train/val/test CSVs and an unlabelled predict file."""
    positive = ["good", "great", "lovely", "fine", '"superb", truly']
    negative = ["bad", "awful", "dull", "boring", "terrible,\nreally"]
    paths = {}
    for split, count in [("train", per_class), ("val", 3), ("test", 3)]:
        rows = []
        for i in range(count):
            rows.append((f"a {positive[i % 5]} film {i}", "positive"))
            rows.append((f"a {negative[i % 5]} film {i}", "negative"))
        paths[split] = str(folder / f"{split}.csv")
        with open(paths[split], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    paths["predict"] = str(folder / "predict.jsonl")
    Path(paths["predict"]).write_text('{"text": "a great film"}\n{"text": "an awful film"}\n')
    return paths


def data_args(paths: dict[str, str]) -> list[str]:
    return [
        "--data.init_args.train_file",
        paths["train"],
        "--data.init_args.val_file",
        paths["val"],
        "--data.init_args.test_file",
        paths["test"],
        "--test_after_fit",
        "false",
    ]


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.mark.parametrize("config", ["bilstm.yaml", "minilm_finetune.yaml", "minilm_8pc.yaml"])
def test_text_yaml_fast_dev_run(chdir_tmp, config):
    paths = write_files(chdir_tmp)
    args = data_args(paths)
    if config == "minilm_8pc.yaml":  # no val_file: a stratified val_size is held out of the training file
        args = [*args[:2], *args[4:], "--data.init_args.val_size", "4"]
    if config == "bilstm.yaml":  # EDA from the command line, as the YAML's comment shows
        args += ["--data.init_args.augment", "{alpha_sr: 0, alpha_ri: 0.2, alpha_rs: 0.2, p_rd: 0.2}"]
    cli = fast_dev_run(TEXT / config, *args)
    assert cli.trainer.state.finished
    assert cli.datamodule.class_names == ["negative", "positive"]
    if config == "bilstm.yaml":
        assert cli.datamodule.datasets["labelled"].augment.p_rd == 0.2
    if config == "minilm_8pc.yaml":
        assert len(cli.datamodule.datasets["labelled"]) == 16  # 8 labels per class
        assert len(cli.datamodule.datasets["val"]) == 4


def test_bilstm_checkpoint_round_trip_predicts_the_same_labels(chdir_tmp):
    paths = write_files(chdir_tmp)
    cli = run_cli(
        "fit",
        "--config",
        str(TEXT / "bilstm.yaml"),
        *data_args(paths),
        "--data.init_args.predict_file",
        paths["predict"],
        "--data.init_args.batch_size",
        "8",
        "--trainer.max_epochs",
        "4",
        "--trainer.accelerator",
        "cpu",
    )
    best = cli.trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(best, weights_only=True)  # plain types only
    assert checkpoint["datamodule_hyper_parameters"]["class_names"] == ["negative", "positive"]

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trained = Classifier.load_from_checkpoint(best)
    expected = torch.cat(trainer.predict(trained, datamodule=cli.datamodule))

    # A fresh process: model and data rebuilt from the checkpoint (load_from_checkpoint restores the data's
    # state before setup). Even pointed at another training file, the checkpoint's vocabulary and labels win.
    other = chdir_tmp / "other.csv"
    other.write_text("text,label\nzebra zebra positive,positive\nzebra negative,negative\n")
    model = Classifier.load_from_checkpoint(best)
    datamodule = TextClassificationDataModule.load_from_checkpoint(best, train_file=str(other), val_size=0)
    datamodule.setup("predict")
    assert "zebra" not in datamodule.vocabulary and datamodule.class_names == ["negative", "positive"]
    predicted = torch.cat(trainer.predict(model, datamodule=datamodule, ckpt_path=best))
    assert torch.equal(predicted, expected)
    assert datamodule.vocabulary == checkpoint["TextClassificationDataModule"]["vocabulary"]
    assert datamodule.decode(predicted) == [datamodule.class_names[i] for i in predicted.tolist()]
    assert set(datamodule.decode(predicted)) <= {"negative", "positive"}
