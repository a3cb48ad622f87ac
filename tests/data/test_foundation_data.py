"""Digits and CIFAR-10 DataModules: real formats, splits, limited labels, clear errors."""

from __future__ import annotations

import pickle

import pytest
import torch

from ssl_lightning.data import CIFAR10DataModule, DigitsDataModule
from ssl_lightning.data.splits import per_class_subset, stratified_split


def test_cifar10_reads_official_pickle_batches(cifar_root):
    dm = CIFAR10DataModule(root=cifar_root, val_size=20, batch_size=8)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 10
    assert dm.class_names[0] == "airplane"
    images, labels = dm.datasets["labelled"].images, dm.datasets["labelled"].labels
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    assert len(labels) == 100 - 20 and len(dm.datasets["val"]) == 20 and len(dm.datasets["test"]) == 40
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and y.dtype == torch.long and x.shape == (8, 3, 32, 32)


def test_on_after_batch_transfer_standardizes(cifar_root):
    dm = CIFAR10DataModule(root=cifar_root, val_size=20, batch_size=80)
    dm.setup("fit")
    x, _ = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert x.dtype == torch.float32
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.1  # whole training pool in one batch
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_labels_per_class_exact_and_reproducible(cifar_root, seed):
    def labelled(seed):
        dm = CIFAR10DataModule(root=cifar_root, val_size=20, labels_per_class=3, seed=seed)
        dm.setup("fit")
        return dm

    dm = labelled(seed)
    counts = torch.bincount(dm.datasets["labelled"].labels, minlength=10)
    assert counts.tolist() == [3] * 10
    assert len(dm.datasets["all"]) == 80  # the rest stays available as the unlabelled pool
    again = labelled(seed)
    assert torch.equal(dm.datasets["labelled"].images, again.datasets["labelled"].images)
    other = labelled(seed + 10)
    assert not torch.equal(dm.datasets["labelled"].images, other.datasets["labelled"].images)


def test_labels_per_class_too_large_names_class_and_numbers(cifar_root):
    dm = CIFAR10DataModule(root=cifar_root, val_size=20, labels_per_class=50)
    with pytest.raises(ValueError, match=r"labels_per_class=50 but class \d has only \d+ training examples"):
        dm.setup("fit")


def test_val_size_larger_than_training_set(cifar_root):
    dm = CIFAR10DataModule(root=cifar_root, val_size=5000)
    with pytest.raises(ValueError, match="Cannot hold out 5000 of 100 training examples.*val_size"):
        dm.setup("fit")


def test_missing_cifar_names_path_layout_and_flag(tmp_path):
    dm = CIFAR10DataModule(root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "data_batch_1..5" in message and "--data.download true" in message


def test_incomplete_cifar_lists_missing_files(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete: missing data_batch_3"):
        CIFAR10DataModule(root=cifar_root).prepare_data()


def test_corrupt_cifar_batch_is_a_clear_error(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:100])  # truncated pickle
    dm = CIFAR10DataModule(root=cifar_root, val_size=20)
    with pytest.raises(RuntimeError, match="corrupt or truncated"):
        dm.setup("fit")


def test_digits_split_sizes_and_stratification():
    dm = DigitsDataModule(val_size=300, test_size=360)
    dm.setup("fit")
    assert len(dm.datasets["val"]) == 300 and len(dm.datasets["test"]) == 360
    assert len(dm.datasets["labelled"]) == 1797 - 660
    assert dm.datasets["labelled"].images.shape[1:] == (1, 8, 8)
    test_counts = torch.bincount(dm.datasets["test"].labels, minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # 360/10 per class, stratified


def test_digits_test_set_is_independent_of_seed():
    a, b = DigitsDataModule(seed=0), DigitsDataModule(seed=1)
    a.setup("fit")
    b.setup("fit")
    assert torch.equal(a.datasets["test"].images, b.datasets["test"].images)
    assert not torch.equal(a.datasets["val"].labels, b.datasets["val"].labels)


def test_stratified_split_totals_and_proportions():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    keep, held = stratified_split(labels, 20, seed=0)
    assert len(held) == 20 and len(keep) == 80
    assert torch.bincount(labels[held]).tolist() == [12, 6, 2]
    assert set(keep.tolist()).isdisjoint(held.tolist())


def test_per_class_subset_rejects_nonpositive():
    with pytest.raises(ValueError, match="labels_per_class must be >= 1"):
        per_class_subset(torch.tensor([0, 1]), 0, seed=0)


def test_cifar_pickle_fixture_is_the_official_format(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")  # how torchvision reads the official files
    assert batch["data"].shape[1] == 3072 and isinstance(batch["labels"], list)
