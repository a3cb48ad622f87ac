"""mixup/CutMix soft targets and the MixtureDataModule (ratios, label spaces)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.augment import augmentation_generator
from ssl_lightning.data.folder import ImageFolderDataModule
from ssl_lightning.data.mixing import CutMix, MixUp, MixUpOrCutMix, soft_targets
from ssl_lightning.data.mixture import MixtureDataModule, MixtureSampler, apportion

MIXES = [MixUp(1.0), CutMix(1.0), MixUpOrCutMix(0.4, 1.0, 0.5)]


def constant_batch(n: int = 16):
    """Image i is constant i / n and has label i, so the mix weights can be read off the pixels."""
    values = torch.arange(n, dtype=torch.float) / n
    x = values.view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    return x, torch.arange(n), values


@pytest.mark.parametrize("mix", MIXES, ids=repr)
def test_targets_are_distributions_matching_the_mixed_pixels(mix):
    x, y, values = constant_batch()
    for step in range(5):
        mixed, targets = mix(x, y, 16, augmentation_generator(0, 0, step))
        assert targets.shape == (16, 16) and targets.dtype == torch.float
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(16))
        assert (targets >= 0).all()
        # the mean pixel of each image is the target-weighted mean of the source values
        torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), targets @ values, atol=1e-5, rtol=0)
        assert (targets.max(dim=1).values < 1).any()  # something was actually mixed


def test_probability_zero_leaves_batch_and_one_hot_targets():
    x, y, _ = constant_batch()
    for mix in [MixUp(1.0, p=0.0), CutMix(1.0, p=0.0)]:
        mixed, targets = mix(x, y, 16, augmentation_generator(0, 0, 0))
        assert torch.equal(mixed, x)
        assert torch.equal(targets, torch.eye(16))


def test_soft_targets_checks_labels():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        soft_targets(torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        MixUp(alpha=0.0)


def test_mixup_in_datamodule_gives_soft_targets_at_training_only():
    data = DigitsDataModule(labels_per_class=5, mix=MixUp(0.4))
    data.setup()
    x = torch.rand(8, 1, 8, 8)
    y = torch.randint(0, 10, (8,))
    _, targets = data.train_batch_transform(x, y)
    assert targets.shape == (8, 10)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    _, labels = data.on_after_batch_transfer((torch.zeros(8, 1, 8, 8, dtype=torch.uint8), y), 0)  # no trainer
    assert torch.equal(labels, y)


# ---- MixtureDataModule --------------------------------------------------------------------
def test_apportion_is_exact():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(apportion(1001, [0.2, 0.5, 0.3])) == 1001


def test_mixture_sampler_honours_ratios_each_epoch():
    sampler = MixtureSampler([50, 1000, 7], [0.5, 0.3, 0.2], epoch_size=1000, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = torch.tensor(list(sampler))
        component = torch.bucketize(drawn, torch.tensor([50, 1050]), right=True)
        assert torch.bincount(component, minlength=3).tolist() == [500, 300, 200]
    assert len(set(drawn[drawn < 50].tolist())) == 50  # small components are cycled through fully


def test_mixture_datamodule_ratios_and_shared_labels():
    data = MixtureDataModule(
        [DigitsDataModule(labels_per_class=5), DigitsDataModule(labels_per_class=20, seed=1)],
        ratios=[3, 1],
        epoch_size=400,
        batch_size=50,
    )
    data.setup()
    assert data.num_classes == 10 and data.sizes == [50, 200]
    loader = data.train_dataloader()
    drawn = torch.tensor(list(loader.sampler))
    assert (drawn < 50).sum() == 300 and (drawn >= 50).sum() == 100
    assert torch.equal(data.datasets["labelled"].labels[:50], data.components[0].datasets["labelled"].labels)
    x, y = next(iter(loader))
    assert x.shape == (50, 1, 8, 8) and y.max() < 10


def write_folder(root, classes, size=8, mode="L"):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((size, size), 30 * i, np.uint8)).convert(mode).save(root / c / f"{i}.png")
    return root


def test_mixture_offset_and_mapped_label_spaces(tmp_path):
    a = ImageFolderDataModule(write_folder(tmp_path / "a", ["cat", "dog"]), train_dir=".", test_dir=None)
    b = ImageFolderDataModule(write_folder(tmp_path / "b", ["car", "ship"]), train_dir=".", test_dir=None)
    offset = MixtureDataModule([a, b], label_space="offset")
    offset.setup()
    assert offset.class_names == ["cat", "dog", "car", "ship"]
    assert offset.datasets["labelled"].labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4

    c = ImageFolderDataModule(write_folder(tmp_path / "c", ["kitten", "puppy"]), train_dir=".", test_dir=None)
    mapped = MixtureDataModule(
        [a, c], label_space="mapped", class_maps=[{"cat": "cat", "dog": "dog"}, {"kitten": "cat", "puppy": "dog"}]
    )
    mapped.setup()
    assert mapped.class_names == ["cat", "dog"]
    assert mapped.datasets["labelled"].labels.tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4


def test_mixture_clashes_raise(tmp_path):
    a = ImageFolderDataModule(write_folder(tmp_path / "a", ["cat", "dog"]), train_dir=".", test_dir=None)
    b = ImageFolderDataModule(write_folder(tmp_path / "b", ["cat", "ship"]), train_dir=".", test_dir=None)
    with pytest.raises(ValueError, match="label_space=shared but component 1"):
        MixtureDataModule([a, b], label_space="shared").setup()
    with pytest.raises(ValueError, match="class 'cat' is in component 0 and component 1"):
        MixtureDataModule([a, b], label_space="offset").setup()
    with pytest.raises(ValueError, match=r"no entry for classes \['ship'\]"):
        maps = [{"cat": "cat", "dog": "dog"}, {"cat": "cat"}]
        MixtureDataModule([a, b], label_space="mapped", class_maps=maps).setup()
    big = ImageFolderDataModule(write_folder(tmp_path / "big", ["cat", "dog"], size=16), train_dir=".", test_dir=None)
    with pytest.raises(ValueError, match="different shapes"):
        MixtureDataModule([a, big]).setup()
    with pytest.raises(ValueError, match="2 datamodules but 3 ratios"):
        MixtureDataModule([a, b], ratios=[1, 1, 1])
