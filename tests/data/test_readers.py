"""Readers composed into ImageDataModule: the dataset classes are the base with a reader, one signature."""

from __future__ import annotations

import pytest
import torch
from jsonargparse import ArgumentParser

from ssl_lightning.data import CIFAR10DataModule, DigitsDataModule, ImageDataModule, ImageFolderDataModule
from ssl_lightning.data.digits import DigitsReader


def test_a_dataset_class_is_the_base_with_its_reader():
    named = DigitsDataModule(labels_per_class=5, seed=3)
    composed = ImageDataModule(reader=DigitsReader(test_size=360), val_size=300, labels_per_class=5, seed=3)
    named.setup(), composed.setup()
    for split in ("labelled", "all", "val", "test"):
        assert torch.equal(named.datasets[split].images, composed.datasets[split].images), split
        assert torch.equal(named.datasets[split].labels, composed.datasets[split].labels), split
    loader = named.eval_dataloader(named.datasets["val"])  # the public sequential loader
    assert torch.equal(torch.cat([y for _, y in loader]), named.datasets["val"].labels)
    assert named._loader(named.datasets["val"]).batch_size == loader.batch_size  # the old private name


@pytest.mark.parametrize(
    ("cls", "own", "defaults"),
    [
        (CIFAR10DataModule, {"root", "download"}, {"batch_size": 128, "val_size": 5000}),
        (DigitsDataModule, {"test_size", "split_seed"}, {"batch_size": 64, "val_size": 300}),
        (ImageFolderDataModule, {"root", "train_dir", "image_size"}, {"batch_size": 64, "val_size": 0}),
    ],
)
def test_cli_sees_every_typed_argument_once_and_rejects_typos(cls, own, defaults):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "data")
    found = parser.get_defaults().data
    shared = {"labels_per_class", "imbalance_ratio", "resample", "sampler", "subset_file", "save_subset", "augment"}
    assert own | shared <= set(vars(found)) and "reader" not in vars(found)
    assert {key: getattr(found, key) for key in defaults} == defaults  # dataset defaults kept
    with pytest.raises(Exception, match="lables_per_class"):
        parser.parse_args(["--data.lables_per_class=5"])
    with pytest.raises(Exception, match="sampler"):
        parser.parse_args(["--data.sampler=balanced"])  # typed: a Literal
