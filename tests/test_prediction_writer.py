"""PredictionWriter: ``ssl-lightning predict`` writes a CSV with texts and label names from the checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from ssl_lightning.callbacks.prediction_writer import PredictionWriter, label_names
from tests.helpers import EXPERIMENTS, run_cli
from tests.test_experiments_text import TEXT, data_args, write_files

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

WRITER = "ssl_lightning.callbacks.prediction_writer.PredictionWriter"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def trained(chdir_tmp):
    """A BiLSTM trained a few steps on the tiny sentiment files; returns (paths, config.yaml, best checkpoint)."""
    paths = write_files(chdir_tmp)
    args = [*data_args(paths), "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1"]
    cli = run_cli("fit", "--config", str(TEXT / "bilstm.yaml"), *args, "--trainer.accelerator", "cpu")
    return paths, Path(cli.trainer.log_dir) / "config.yaml", cli.trainer.checkpoint_callback.best_model_path


def predict(config: Path, ckpt: str, *overrides: str) -> object:
    return run_cli("predict", "--config", str(config), "--ckpt_path", ckpt, *overrides)


def test_predict_writes_texts_and_label_names_from_the_checkpoint(trained, chdir_tmp):
    paths, config, best = trained
    # Plain `predict` only returns class indices (and writes nothing): the reason for the callback.
    plain = predict(config, best, "--data.init_args.predict_file", paths["predict"])
    indices = torch.cat(plain.trainer.predict_loop.predictions).tolist()

    # A label order given on the command line (positive=0) loses to the checkpoint's map (negative=0,
    # positive=1), which must name the predictions.
    out = chdir_tmp / "out" / "preds.csv"
    cli = predict(
        config,
        best,
        "--data.init_args.class_names",
        "[positive, negative]",
        "--data.init_args.predict_file",
        paths["predict"],
        f"--trainer.callbacks+={WRITER}",
        "--trainer.callbacks.output_file",
        str(out),
    )
    assert cli.datamodule.class_names == ["negative", "positive"]
    rows = read_rows(out)
    assert list(rows[0]) == ["index", "text", "pred_index", "pred_label"]  # the predict file has no labels
    assert [r["text"] for r in rows] == ["a great film", "an awful film"]
    assert [int(r["pred_index"]) for r in rows] == indices
    assert [r["pred_label"] for r in rows] == [["negative", "positive"][i] for i in indices]


def test_labelled_test_set_default_path_and_no_overwrite(trained, chdir_tmp):
    paths, config, best = trained
    cli = predict(config, best, f"--trainer.callbacks+={WRITER}")  # no predict_file: the test set
    written = Path(cli.trainer.log_dir) / "predictions.csv"
    rows = read_rows(written)
    assert list(rows[0]) == ["index", "text", "label", "pred_index", "pred_label"]
    test_rows = read_rows(Path(paths["test"]))
    assert [r["text"] for r in rows] == [r["text"] for r in test_rows]
    assert [r["label"] for r in rows] == [r["label"] for r in test_rows]
    assert {r["pred_label"] for r in rows} <= {"negative", "positive"}
    assert all(r["pred_label"] == ["negative", "positive"][int(r["pred_index"])] for r in rows)

    with pytest.raises(FileExistsError, match="does not overwrite"):
        trainer = cli.trainer
        writer = PredictionWriter(output_file=str(written))
        writer.on_predict_start(trainer, cli.model)
    writer = PredictionWriter(output_file=str(written), overwrite=True)
    writer.on_predict_start(cli.trainer, cli.model)  # allowed


def test_image_data_writes_true_and_predicted_labels(chdir_tmp):
    args = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--test_after_fit", "false"]
    cli = run_cli("fit", "--config", str(EXPERIMENTS / "quickstart.yaml"), *args, "--trainer.accelerator", "cpu")
    config = Path(cli.trainer.log_dir) / "config.yaml"
    best = cli.trainer.checkpoint_callback.best_model_path
    out = chdir_tmp / "digits.csv"
    predicted = predict(config, best, f"--trainer.callbacks+={WRITER}", "--trainer.callbacks.output_file", str(out))
    rows = read_rows(out)
    assert list(rows[0]) == ["index", "label", "pred_index", "pred_label"]
    test_labels = predicted.datamodule.datasets["test"].labels
    assert [int(r["label"]) for r in rows] == test_labels.tolist()  # digits' class names are "0".."9"
    assert [int(r["pred_index"]) for r in rows] == torch.cat(predicted.trainer.predict_loop.predictions).tolist()


def test_label_names_fallbacks():
    class Names:
        class_names = ["cat", "dog"]

    assert label_names(Names(), [1, 0]) == ["dog", "cat"]
    assert label_names(None, [3]) == ["3"]
