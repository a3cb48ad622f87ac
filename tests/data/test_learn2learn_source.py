"""learn2learn datasets and task sets feed EpisodicDataModule (skipped where learn2learn is not installed)."""

from __future__ import annotations

import random
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from ssl_lightning.data.episodic import EpisodicDataModule
from ssl_lightning.integrations.learn2learn import Learn2LearnPool, pool_from_learn2learn, require_learn2learn
from tests.data.test_episodes import assert_valid_episode


def test_missing_learn2learn_names_the_install_script(monkeypatch):
    monkeypatch.setitem(sys.modules, "learn2learn", None)  # makes `import learn2learn` fail
    with pytest.raises(ImportError, match="scripts/install_learn2learn.sh"):
        require_learn2learn()
    with pytest.raises(ImportError, match="scripts/install_learn2learn.sh"):
        Learn2LearnPool(benchmark="omniglot").load_pool()


def float_images(num_classes: int, per_class: int, size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """float[N, 1, size, size] in [0, 1] (as ToTensor gives) with exact uint8 levels; label c has level c+1."""
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    levels = (labels + 1).float().view(-1, 1, 1, 1).expand(-1, 1, size, size) / 255
    return levels.contiguous(), labels


def test_meta_dataset_is_pooled_to_uint8_and_sampled_by_us():
    l2l = pytest.importorskip("learn2learn")
    images, labels = float_images(10, 5)
    meta = l2l.data.MetaDataset(TensorDataset(images, labels))
    dm = EpisodicDataModule(source=Learn2LearnPool(datasets=meta), n_way=2, k_shot=2, n_query=2, train_episodes=4)
    dm.setup()
    assert sum(len(d.images) for d in dm.datasets.values()) == 50
    train = dm.datasets["train"]
    assert train.images.dtype == torch.uint8
    # the pixel level still tells the original class: the [0, 1] floats came back exactly
    original = train.images[:, 0, 0, 0].long() - 1
    assert [str(int(original[train.labels == c][0])) for c in range(6)] == dm.class_names["train"]
    for support_x, _, _, query_y in dm.train_dataloader():
        assert support_x.shape == (1, 4, 1, 6, 6) and query_y.tolist() == [[0, 0, 1, 1]]
    for episode in dm.val_dataloader().sampler:
        assert_valid_episode(episode, dm.datasets["val"].labels, 2, 2, 2)


def test_task_datasets_keep_their_class_split():
    l2l = pytest.importorskip("learn2learn")
    images, labels = float_images(9, 4)
    meta = l2l.data.MetaDataset(TensorDataset(images, labels))
    parts = {
        "train": l2l.data.TaskDataset(l2l.data.FilteredMetaDataset(meta, labels=[0, 1, 2, 3, 4]), task_transforms=[]),
        "val": l2l.data.FilteredMetaDataset(meta, labels=[5, 6]),
        "test": l2l.data.FilteredMetaDataset(meta, labels=[7, 8]),
    }
    dm = EpisodicDataModule(source=Learn2LearnPool(datasets=parts), n_way=2, k_shot=1, n_query=1)
    dm.setup()
    assert dm.class_names == {
        "train": ["train/0", "train/1", "train/2", "train/3", "train/4"],
        "val": ["val/5", "val/6"],
        "test": ["test/7", "test/8"],
    }
    levels = dm.datasets["test"].images[:, 0, 0, 0].unique().tolist()
    assert levels == [8, 9]


def test_benchmark_tasksets_are_pooled_with_their_split_and_seeded(monkeypatch):
    l2l = pytest.importorskip("learn2learn")
    images, labels = float_images(8, 3)
    meta = l2l.data.MetaDataset(TensorDataset(images, labels))
    calls = []

    def fake_get_tasksets(name, root):
        classes = list(range(8))
        random.shuffle(classes)  # learn2learn's benchmarks shuffle with the global random
        calls.append(classes)
        sets = [l2l.data.FilteredMetaDataset(meta, labels=c) for c in (classes[:4], classes[4:6], classes[6:])]
        return SimpleNamespace(train=sets[0], validation=sets[1], test=sets[2])

    monkeypatch.setattr(l2l.vision.benchmarks, "get_tasksets", fake_get_tasksets)
    random.seed(123)
    before = random.random()
    random.seed(123)
    pool = Learn2LearnPool(benchmark="omniglot", seed=5)
    _, _, names = pool.load_pool()
    pool.load_pool()
    assert random.random() == before  # the global random state was restored
    assert calls[0] == calls[1]  # and the class shuffle is seeded
    assert [len(pool.class_split()[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert names[:4] == [f"train/{c}" for c in sorted(calls[0][:4])]
    with pytest.raises(ValueError, match="Unknown learn2learn benchmark 'nope'"):
        Learn2LearnPool(benchmark="nope").load_pool()


class PILDigits(Dataset):
    """A plain dataset of (PIL image, int label), like learn2learn's vision datasets without a transform."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        from PIL import Image

        return Image.fromarray(np.full((5, 5, 3), 20 * (index % 3), dtype=np.uint8)), index % 3


def test_pil_images_and_normalized_tensors():
    images, labels, names = pool_from_learn2learn(PILDigits())
    assert images.shape == (12, 3, 5, 5) and images.dtype == torch.uint8
    assert names == ["0", "1", "2"] and labels.tolist() == [0, 1, 2] * 4
    assert images[:, 0, 0, 0].tolist() == [0, 20, 40] * 4
    normalized = TensorDataset(torch.randn(4, 1, 3, 3), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="drop the Normalize transform"):
        pool_from_learn2learn(normalized)
