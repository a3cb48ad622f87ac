"""Data selection on label tensors and its DataModule options."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch  # what Lightning's fit loop calls every epoch
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.resampling import (
    ClassBalancedBatchSampler,
    inverse_frequency_sampler,
    long_tail_counts,
    long_tail_subset,
    oversample,
    undersample,
)


def imbalanced_labels() -> torch.Tensor:
    """90 of class 0, 30 of class 1, 6 of class 2, shuffled."""
    labels = torch.tensor([0] * 90 + [1] * 30 + [2] * 6)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]


def test_long_tail_counts_follow_the_exponential_profile():
    assert long_tail_counts(10, 100, 10.0) == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert long_tail_counts(3, 50, 1.0) == [50, 50, 50]


def test_long_tail_subset_keeps_those_counts_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    keep = long_tail_subset(labels, 10.0, seed=0)
    assert torch.bincount(labels[keep]).tolist() == long_tail_counts(10, 100, 10.0)
    assert torch.equal(keep, long_tail_subset(labels, 10.0, seed=0))
    assert not torch.equal(keep, long_tail_subset(labels, 10.0, seed=1))


def test_oversample_balances_with_replacement_and_keeps_every_original():
    labels = imbalanced_labels()
    idx = oversample(labels, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [90, 90, 90]
    assert set(range(len(labels))) <= set(idx.tolist())


def test_undersample_balances_without_replacement():
    labels = imbalanced_labels()
    idx = undersample(labels, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [6, 6, 6]
    assert len(set(idx.tolist())) == len(idx)


def test_impossible_requests_name_the_class_and_numbers():
    labels = imbalanced_labels()
    with pytest.raises(ValueError, match="class 2 has only 6 examples"):
        undersample(labels, seed=0, target=10)
    with pytest.raises(ValueError, match="class 0 already has 90"):
        oversample(labels, seed=0, target=50)
    with pytest.raises(ValueError, match="class 3 has 0 examples"):
        oversample(labels, seed=0, num_classes=4)
    with pytest.raises(ValueError, match="class 1 with 0.60 < 1 examples"):
        long_tail_subset(labels, 100.0, seed=0)
    with pytest.raises(ValueError, match="class 0 but it has only 90"):
        long_tail_subset(labels, 2.0, seed=0, head=100)
    with pytest.raises(ValueError, match="class 3 has 0 examples"):
        ClassBalancedBatchSampler(labels, 8, num_classes=4)


def test_inverse_frequency_sampler_balances_classes_over_many_draws():
    labels = imbalanced_labels()
    sampler = inverse_frequency_sampler(labels, seed=0, num_samples=30_000)
    freq = torch.bincount(labels[list(sampler)], minlength=3).double() / 30_000
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.double), atol=0.015)


def test_weighted_sampler_depends_only_on_seed_and_epoch():
    labels = imbalanced_labels()
    a, b = inverse_frequency_sampler(labels, seed=0), inverse_frequency_sampler(labels, seed=0)
    b.set_epoch(1)
    epoch1 = list(b)
    list(a)  # a's epoch 0; then a "resumes" at epoch 1
    a.set_epoch(1)
    assert list(a) == epoch1
    a.set_epoch(2)
    assert list(a) != epoch1
    # without set_epoch (as inside DistributedSamplerWrapper) each pass still draws anew
    c = inverse_frequency_sampler(labels, seed=0)
    assert list(c) != list(c)


def test_class_balanced_batches_hold_each_class_equally():
    labels = imbalanced_labels()
    sampler = ClassBalancedBatchSampler(labels, batch_size=30, seed=0, num_batches=50)
    batches = list(sampler)
    assert len(batches) == 50
    for batch in batches:
        assert torch.bincount(labels[batch], minlength=3).tolist() == [10, 10, 10]
    # the 6 examples of class 2 are cycled (oversampled), the 90 of class 0 seen in turn
    seen = labels[[i for b in batches for i in b]]
    assert (seen == 2).sum() == 500


def test_class_balanced_smaller_batches_than_classes_are_balanced_over_many_batches():
    labels = torch.arange(10).repeat_interleave(20)
    sampler = ClassBalancedBatchSampler(labels, batch_size=4, seed=1, num_batches=5_000)
    drawn = torch.tensor([i for batch in sampler for i in batch])
    freq = torch.bincount(labels[drawn], minlength=10).double() / len(drawn)
    assert torch.allclose(freq, torch.full((10,), 0.1, dtype=torch.double), atol=0.01)
    for batch in list(sampler)[:50]:
        assert len(set(labels[batch].tolist())) == 4  # distinct classes within a batch


def test_lightning_sets_the_epoch_of_a_class_balanced_batch_sampler():
    labels = imbalanced_labels()

    def make() -> DataLoader:
        sampler = ClassBalancedBatchSampler(labels, batch_size=6, seed=2, num_batches=4)
        return DataLoader(TensorDataset(torch.arange(len(labels))), batch_sampler=sampler)

    def epoch(loader: DataLoader, number: int) -> list[list[int]]:
        _set_sampler_epoch(loader, number)
        return [batch.tolist() for (batch,) in loader]

    loader = make()
    epochs = [epoch(loader, n) for n in range(3)]
    assert loader.batch_sampler.epoch == 2
    assert epochs[0] != epochs[1] != epochs[2]
    # a resumed run: a fresh sampler (pass counter 0) that Lightning moves straight to epoch 2
    assert epoch(make(), 2) == epochs[2]


def test_datamodule_imbalance_then_oversampling_counts():
    data = DigitsDataModule(labels_per_class=20, imbalance_ratio=10.0, resample="none")
    data.setup()
    assert data.labelled_class_counts == long_tail_counts(10, 20, 10.0)
    data = DigitsDataModule(labels_per_class=20, imbalance_ratio=10.0, resample="oversample")
    data.setup()
    assert data.labelled_class_counts == [20] * 10
    data = DigitsDataModule(labels_per_class=20, imbalance_ratio=10.0, resample="undersample")
    data.setup()
    assert data.labelled_class_counts == [2] * 10


@pytest.mark.parametrize("sampler", ["weighted", "class_balanced"])
def test_datamodule_samplers_balance_a_long_tail(sampler):
    data = DigitsDataModule(labels_per_class=40, imbalance_ratio=8.0, sampler=sampler, batch_size=20)
    data.setup()
    loader: DataLoader = data.train_dataloader()
    counts = torch.zeros(10)
    for epoch in range(20):
        for s in (loader.sampler, loader.batch_sampler):
            if hasattr(s, "set_epoch"):
                s.set_epoch(epoch)
        for _, y in loader:
            counts += torch.bincount(y, minlength=10)
    freq = counts / counts.sum()
    assert (freq - 0.1).abs().max() < 0.02, freq
