"""SemiSupervisedDataModule and TwoViewDataModule: batch structure, pools, views, determinism, DDP sampling."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.trainer.connectors.data_connector import _get_distributed_sampler
from lightning.pytorch.utilities import CombinedLoader

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.contract import UnlabelledPoolData
from ssl_lightning.data.semisup import RepeatedSeededSampler, SemiSupervisedDataModule, TwoViewDataModule


def semisup(mu: int = 3, **source_args) -> SemiSupervisedDataModule:
    args = {"batch_size": 8, "val_size": 300, "test_size": 360, "labels_per_class": 2, **source_args}
    source = DigitsDataModule(**args)
    dm = SemiSupervisedDataModule(source, mu=mu, flip=False)
    dm.setup("fit")
    return dm


class _Training:
    """Stands in for a trainer that is training (on_after_batch_transfer then makes training views)."""

    training = True
    current_epoch = 0
    global_rank = 0
    is_global_zero = True
    logger = None

    class fit_loop:  # noqa: N801 - mimics trainer.fit_loop.epoch_loop.batch_progress.current.ready
        class epoch_loop:  # noqa: N801
            class batch_progress:  # noqa: N801
                class current:  # noqa: N801
                    ready = 0


def first_training_batch(dm) -> object:
    batch = next(iter(dm.train_dataloader()))
    batch = batch[0] if isinstance(batch, tuple) and isinstance(batch[0], dict) else batch
    dm.trainer = _Training()
    try:
        return dm.on_after_batch_transfer(batch, 0)
    finally:
        dm.trainer = None


def test_pools_unlabelled_is_every_training_image_including_labelled():
    dm = semisup()
    labelled, pool = dm.source.datasets["labelled"], dm.source.datasets["all"]
    assert len(labelled) == 20 and len(pool) == 1797 - 300 - 360
    pool_rows = {bytes(img.numpy()) for img in pool.images}
    assert all(bytes(img.numpy()) in pool_rows for img in labelled.images)
    assert dm.num_classes == 10


def test_combined_loader_shapes_and_mu_ratio():
    dm = semisup(mu=3)
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    unlabelled_steps = -(-len(dm.source.datasets["all"]) // 24)
    assert len(loader.flattened[0]) == len(loader.flattened[1]) == unlabelled_steps  # labelled redrawn to keep up
    batch = first_training_batch(dm)
    x, y = batch["labelled"]
    x_weak, x_strong, y_u = batch["unlabelled"]
    assert x.shape == (8, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x_weak.shape == x_strong.shape == (24, 1, 8, 8) and y_u.shape == (24,)


def test_unlabelled_indices_are_each_images_position_in_the_pool_and_views_do_not_change():
    dm = semisup(mu=3)
    indexed = SemiSupervisedDataModule(dm.source, mu=3, flip=False, unlabelled_indices=True)
    assert isinstance(indexed, UnlabelledPoolData) and indexed.unlabelled_indices and not dm.unlabelled_indices
    assert indexed.num_unlabelled == len(dm.source.datasets["all"]) == 1797 - 300 - 360
    raw_u = next(iter(indexed.train_dataloader()))[0]["unlabelled"]
    assert len(raw_u) == 3 and raw_u[2].dtype == torch.long and len(set(raw_u[2].tolist())) == 24
    pool = dm.source.datasets["all"]
    for image, label, index in zip(*raw_u, strict=True):
        assert torch.equal(image, pool[int(index)][0]) and label == pool[int(index)][1]
    plain, with_index = first_training_batch(dm)["unlabelled"], first_training_batch(indexed)["unlabelled"]
    assert len(with_index) == 4 and torch.equal(with_index[3], raw_u[2])
    # the same generator draws: indices change nothing else in the batch
    assert all(torch.equal(a, b) for a, b in zip(plain, with_index[:3], strict=True))


def test_weak_and_strong_views_differ_per_sample():
    dm = semisup(mu=4)
    _, raw_u = next(iter(dm.train_dataloader()))[0].values()
    x_weak, x_strong, _ = first_training_batch(dm)["unlabelled"]
    plain = dm.evaluation_input(raw_u[0])
    different = (x_weak - x_strong).flatten(1).abs().amax(dim=1) > 1e-4
    assert different.all(), "every image's strong view must differ from its weak view"
    # the weak view is a small perturbation (1-pixel shift): closer to the plain image than the strong view on average
    assert (x_weak - plain).abs().mean() < (x_strong - plain).abs().mean()


def test_training_views_reproducible_for_same_step_and_differ_across_steps():
    dm = semisup()
    a, b = first_training_batch(dm), first_training_batch(dm)
    assert torch.equal(a["unlabelled"][1], b["unlabelled"][1])
    batch = next(iter(dm.train_dataloader()))[0]
    dm.trainer = _Training()
    _Training.fit_loop.epoch_loop.batch_progress.current.ready = 1
    try:
        c = dm.on_after_batch_transfer(batch, 0)
    finally:
        _Training.fit_loop.epoch_loop.batch_progress.current.ready = 0
        dm.trainer = None
    assert not torch.equal(a["unlabelled"][1], c["unlabelled"][1])


def test_evaluation_batches_are_plain_standardized_images():
    dm = semisup()
    images, labels = next(iter(dm.val_dataloader()))
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert torch.allclose(x, dm.source.standardize(images.float() / 255)) and torch.equal(y, labels)


def test_repeated_sampler_covers_labelled_set_each_pass_in_new_orders():
    sampler = RepeatedSeededSampler(5, 12, seed=0)
    order = list(sampler)
    assert len(order) == 12 and sorted(order[:5]) == sorted(order[5:10]) == list(range(5))
    assert order[:5] != order[5:10] or order[5:10] != order[10:] + order[:3]  # not one fixed order repeated
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_distributed_ranks_draw_distinct_unlabelled_batches():
    """What Lightning does to every loader of a CombinedLoader under DDP (fit_loop.setup_data)."""
    dm = semisup()
    unlabelled = dm.train_dataloader().flattened[1]
    seen = []
    for rank in (0, 1):
        sampler = _get_distributed_sampler(unlabelled, shuffle=True, overfit_batches=0, num_replicas=2, rank=rank)
        seen.append(set(sampler))
    pool = len(dm.source.datasets["all"])  # 1,137: DistributedSampler pads one repeated index to split it evenly
    assert len(seen[0] & seen[1]) <= pool % 2 and seen[0] | seen[1] == set(range(pool))


def test_mu_must_be_positive():
    with pytest.raises(ValueError, match="mu .* must be >= 1, got 0"):
        SemiSupervisedDataModule(DigitsDataModule(), mu=0)


def test_two_view_batches():
    source = DigitsDataModule(batch_size=16, val_size=300, test_size=360, labels_per_class=3)
    dm = TwoViewDataModule(source, flip=False)
    dm.setup("fit")
    x1, x2, y = first_training_batch(dm)
    assert x1.shape == x2.shape == (16, 1, 8, 8) and y.shape == (16,)
    assert ((x1 - x2).flatten(1).abs().amax(dim=1) > 1e-4).all()
    assert len(dm.train_dataloader().dataset) == len(source.datasets["all"])  # every training image
    features, labels = dm.labelled_features(lambda x: x.flatten(1), "cpu", batch_size=7)
    assert features.shape == (30, 64) and torch.equal(labels, source.datasets["labelled"].labels)
