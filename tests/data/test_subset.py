"""subset_file / save_subset on ImageDataModule: a labelled subset reproducible across machines."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.subset_file import save_subset


def test_saved_subset_reloads_to_the_identical_labelled_set(tmp_path):
    path = tmp_path / "subset.json"
    first = DigitsDataModule(labels_per_class=7, seed=3, save_subset=str(path))
    first.setup()
    payload = json.loads(path.read_text())
    assert payload["dataset"] == "DigitsDataModule" and payload["num_train"] == len(first.datasets["all"])
    assert payload["per_class_counts"] == {str(c): 7 for c in range(10)}
    assert payload["meta"]["pool_fingerprint"] == first.pool_fingerprint
    second = DigitsDataModule(subset_file=str(path), seed=3)
    second.setup()
    for key in ("labelled", "all"):
        assert torch.equal(first.datasets[key].images, second.datasets[key].images)
        assert torch.equal(first.datasets[key].labels, second.datasets[key].labels)
    assert second.labelled_class_counts == [7] * 10


def test_subset_file_indexes_the_training_pool_and_rest_stays_unlabelled(tmp_path):
    probe = DigitsDataModule()
    probe.setup()
    pool = probe.datasets["all"]
    indices = [0, 5, 17, 400]
    path = save_subset(tmp_path / "s.json", indices, "DigitsDataModule", len(pool))
    data = DigitsDataModule(subset_file=str(path), train_pool="labelled")
    data.setup()
    assert torch.equal(data.datasets["labelled"].images, pool.images[indices])
    assert torch.equal(data.datasets["labelled"].labels, pool.labels[indices])
    assert len(data.datasets["all"]) == len(pool)


def test_subset_file_then_oversampling_balances_the_given_subset(tmp_path):
    probe = DigitsDataModule()
    probe.setup()
    labels = probe.datasets["all"].labels
    indices = [int(i) for c in range(10) for i in torch.nonzero(labels == c).flatten()[: c + 1]]
    path = save_subset(tmp_path / "s.json", indices, "DigitsDataModule", len(labels))
    data = DigitsDataModule(subset_file=str(path), resample="oversample")
    data.setup()
    assert data.labelled_class_counts == [10] * 10


def test_per_class_counts_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="ssl_lightning.data.base"):
        DigitsDataModule(labels_per_class=3, imbalance_ratio=3.0).setup()
    assert "labelled per class: [3, 2, 2, 2, 1, 1, 1, 1, 1, 1]" in caplog.text


def test_subset_from_another_pool_is_refused(tmp_path):
    path = tmp_path / "subset.json"
    DigitsDataModule(labels_per_class=2, seed=0, save_subset=str(path)).setup()
    # same pool size, but seed 1 holds out other validation images: the indices would mean other images
    with pytest.raises(ValueError, match="made from another training pool"):
        DigitsDataModule(subset_file=str(path), seed=1).setup()


def test_subset_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot be combined with labels_per_class=5"):
        DigitsDataModule(subset_file="x.json", labels_per_class=5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DigitsDataModule(subset_file=str(tmp_path / "missing.json")).setup()
    path = tmp_path / "s.json"
    DigitsDataModule(labels_per_class=2, save_subset=str(path)).setup()
    with pytest.raises(ValueError, match="indexes a training pool of 1137 examples but this DataModule has 1037"):
        DigitsDataModule(val_size=400, subset_file=str(path)).setup()
    cifar = save_subset(tmp_path / "cifar.json", [1, 2], "CIFAR10DataModule", 1137)
    with pytest.raises(ValueError, match="was made for CIFAR10DataModule, not DigitsDataModule"):
        DigitsDataModule(subset_file=str(cifar)).setup()
    DigitsDataModule(labels_per_class=2, save_subset=str(path)).setup()  # same subset again: fine
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        DigitsDataModule(labels_per_class=3, save_subset=str(path)).setup()
