"""The text DataModule's labelled pool is the image one: imbalance, resampling, samplers, saved subsets.

Also: ``predict`` from a checkpoint alone, without the training file.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.labelled_pool import LabelledPoolMixin
from ssl_lightning.data.resampling import ClassBalancedBatchSampler
from ssl_lightning.data.resumable import ResumableDataLoader
from ssl_lightning.data.text import TextClassificationDataModule
from tests.data.test_text import sentiment_rows, write_csv
from tests.helpers import run_cli
from tests.test_experiments_text import TEXT, data_args, write_files
from tests.test_prediction_writer import WRITER, read_rows


def make(tmp_path: Path, **kwargs) -> TextClassificationDataModule:
    path = tmp_path / "train.csv"
    if not path.exists():
        write_csv(path, sentiment_rows(20))  # classes meh, neg, pos: 20 texts each
    dm = TextClassificationDataModule(train_file=str(path), val_size=6, test_size=6, **kwargs)
    dm.setup()
    return dm


def counts(dm: TextClassificationDataModule, split: str = "labelled") -> list[int]:
    found = Counter(dm.datasets[split].labels)
    return [found[name] for name in dm.class_names]


def test_text_and_images_share_one_labelled_pool_code_path():
    for name in ("select_labelled", "choose_labelled", "training_loader", "_save_subset", "_check_pool"):
        shared = getattr(LabelledPoolMixin, name)
        assert getattr(TextClassificationDataModule, name) is shared and getattr(ImageDataModule, name) is shared


def test_imbalance_ratio_gives_a_long_tail(tmp_path):
    dm = make(tmp_path, labels_per_class=8, imbalance_ratio=4)
    assert counts(dm) == [8, 4, 2] == dm.labelled_class_counts
    assert dm.class_names == ["meh", "neg", "pos"]


@pytest.mark.parametrize(("resample", "expected"), [("oversample", [8, 8, 8]), ("undersample", [2, 2, 2])])
def test_resample_balances_the_labelled_texts(tmp_path, resample, expected):
    dm = make(tmp_path, labels_per_class=8, imbalance_ratio=4, resample=resample)
    assert counts(dm) == expected == dm.labelled_class_counts
    again = make(tmp_path, labels_per_class=8, imbalance_ratio=4, resample=resample)
    assert again.datasets["labelled"].texts == dm.datasets["labelled"].texts  # seeded


def test_class_balanced_sampler_draws_every_class_equally(tmp_path):
    dm = make(tmp_path, labels_per_class=8, imbalance_ratio=4, sampler="class_balanced", batch_size=6)
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader) and isinstance(loader.batch_sampler, ClassBalancedBatchSampler)
    for _, y in loader:
        assert torch.bincount(y, minlength=3).tolist() == [2, 2, 2]


def test_weighted_sampler_with_augmentation_keys(tmp_path):
    from ssl_lightning.data.text_augment import EDA

    dm = make(tmp_path, labels_per_class=4, sampler="weighted", batch_size=4, augment=EDA(0.0, 0.0, 0.3, 0.1))
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(2)
    first = [inputs["input_ids"].tolist() for inputs, _ in loader]
    loader.batch_sampler.sampler.set_epoch(2)
    assert [inputs["input_ids"].tolist() for inputs, _ in loader] == first  # (seed, epoch) fix draws and EDA


@pytest.mark.parametrize("sampler", ["random", "class_balanced"])
def test_text_training_loader_resumes_mid_epoch_exactly(tmp_path, sampler):
    """A state saved after 3 batches of epoch 2, loaded into a fresh DataModule, gives the rest of that epoch
    as an uninterrupted run draws it, EDA included (the trainer-level kill/resume is in tests/test_resume.py)."""
    from ssl_lightning.data.text_augment import EDA

    def fresh():
        dm = make(tmp_path, labels_per_class=6, sampler=sampler, batch_size=3, augment=EDA(0.0, 0.0, 0.3, 0.2))
        loader = dm.train_dataloader()
        for part in loader._samplers():  # what Lightning does before every epoch
            part.set_epoch(2)
        return loader

    def ids(batches):
        return [inputs["input_ids"].tolist() + [y.tolist()] for inputs, y in batches]

    whole = ids(fresh())
    first = fresh()
    iterator = iter(first)
    head = [next(iterator) for _ in range(3)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    resumed = fresh()
    for part in resumed._samplers():
        part.set_epoch(0)  # a new process starts at epoch 0; the state brings epoch 2 back
    resumed.load_state_dict(state)
    assert ids(head) + ids(resumed) == whole and len(whole) > 3


def test_save_subset_round_trip_and_fingerprint_refusal(tmp_path):
    subset = tmp_path / "subset.json"
    first = make(tmp_path, labels_per_class=3, save_subset=str(subset))
    assert subset.is_file() and first.pool_fingerprint
    again = make(tmp_path, subset_file=str(subset))
    assert again.datasets["labelled"].texts == first.datasets["labelled"].texts
    # the same pool size, but seed 1 holds out other validation texts: the indices would mean other texts
    with pytest.raises(ValueError, match="made from another training pool"):
        make(tmp_path, subset_file=str(subset), seed=1)
    with pytest.raises(ValueError, match="not both"):
        make(tmp_path, subset_file=str(subset), imbalance_ratio=2.0)


def test_predict_without_a_training_file_or_checkpoint_is_a_clear_error(tmp_path):
    predict = tmp_path / "new.csv"
    predict.write_text("text\nhello\n")
    dm = TextClassificationDataModule(train_file=str(tmp_path / "gone.csv"), predict_file=str(predict))
    dm.setup("predict")  # reads only the predict file
    with pytest.raises(ValueError, match="gone.csv does not exist.*--ckpt_path"):
        dm.predict_dataloader()


@pytest.mark.usefixtures("one_thread")
def test_predict_from_the_checkpoint_alone(chdir_tmp):
    paths = write_files(chdir_tmp)
    args = [*data_args(paths), "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1"]
    cli = run_cli("fit", "--config", str(TEXT / "bilstm.yaml"), *args, "--trainer.accelerator", "cpu")
    config = Path(cli.trainer.log_dir) / "config.yaml"
    best = cli.trainer.checkpoint_callback.best_model_path
    expected = cli.datamodule.class_names
    shutil.move(paths["train"], chdir_tmp / "moved.csv")  # the config still names it
    out = chdir_tmp / "preds.csv"
    predicted = run_cli(
        "predict", "--config", str(config), "--ckpt_path", best,
        "--data.init_args.predict_file", paths["predict"],
        f"--trainer.callbacks+={WRITER}", "--trainer.callbacks.output_file", str(out),
    )  # fmt: skip
    assert not Path(paths["train"]).exists()
    assert predicted.datamodule.class_names == expected == ["negative", "positive"]
    assert predicted.datamodule.vocabulary == cli.datamodule.vocabulary  # from the checkpoint
    rows = read_rows(out)
    assert [r["text"] for r in rows] == ["a great film", "an awful film"]
    assert all(r["pred_label"] == expected[int(r["pred_index"])] for r in rows)
