"""Plain batches of the base (training) classes, and training-only augmentation, for the episodic DataModule.

The pretrain-then-adapt few-shot methods (Baseline/Baseline++, Chen et al. 2019; RFS, Tian et al.
2020; SimpleShot, Wang et al. 2019; Meta-Baseline's first stage, Chen et al. 2021) train an ordinary
classifier over every training-split class and are evaluated on the same fixed seeded episodes of
the disjoint val/test classes as the meta-learners. :class:`BaseClassBatches` gives
:class:`~ssl_lightning.data.episodic.EpisodicDataModule` that training mode (``train_mode="batches"``)
and what such a method reads from its data (:class:`ssl_lightning.data.contract.BaseClassData`):

* :meth:`~BaseClassBatches.base_class_loader`: ``(x: uint8[B, C, H, W], y: long[B])`` over the images of
  the train split only (with ``rotations`` the 4x rotation classes), ``y`` in ``0..num_base_classes-1``
  indexing ``class_names["train"]``; a seeded permutation per epoch
  (:class:`~ssl_lightning.data.samplers.EpochSeededSampler`) in a
  :class:`~ssl_lightning.data.resumable.ResumableDataLoader` (exact mid-epoch resume). Under DDP
  Lightning wraps the sampler in its ``DistributedSamplerWrapper``, as for every image DataModule:
  each rank takes every ``world_size``-th index of the epoch's permutation (a disjoint share, padded
  by at most ``world_size - 1`` repeats).
* :attr:`~BaseClassBatches.num_base_classes` and :meth:`~BaseClassBatches.labelled_features` (every
  train-split image embedded once, no augmentation), e.g. for SimpleShot's base-class mean.
* :meth:`~BaseClassBatches.augment_training`: the ``augment`` ops on the device, training only, seeded
  by ``(seed, rank, epoch, batch index)`` (:class:`~ssl_lightning.data.samplers.BatchGenerator`), on
  plain batches and on the support and query images of training episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ssl_lightning.data.augment import Augmentations
from ssl_lightning.data.episodic.batch import EpisodeBatch, EpisodeDataset
from ssl_lightning.data.episodic.sampling import distributed_rank_and_size
from ssl_lightning.data.resumable import ResumableDataLoader
from ssl_lightning.data.samplers import BatchGenerator, EpochSeededSampler

TrainMode = Literal["episodes", "batches"]
TRAIN_MODES: tuple[str, ...] = ("episodes", "batches")


def check_training_options(train_mode: str, batch_size: int) -> None:
    """Raise a ``ValueError`` for a ``train_mode`` or ``batch_size`` the DataModule cannot serve."""
    if train_mode not in TRAIN_MODES:
        raise ValueError(
            f"train_mode must be 'episodes' (N-way K-shot training episodes, for ProtoNet, MAML, ...) or 'batches' "
            f"(plain (x, y) batches of the base classes, for Baseline, RFS, SimpleShot, ...), got {train_mode!r}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


class BaseClassDataset(Dataset[tuple[Tensor, Tensor]]):
    """The images of one split as ``(uint8[C, H, W], long)`` items, its rotated copies included.

    Item ``i`` is item ``i`` of ``episodes`` (an :class:`EpisodeDataset`: with rotations, item ``r * N + j``
    is image ``j`` rotated by ``r * 90`` degrees) with its class ``episodes.labels[i]``.

    Args:
        episodes: the split's images, indexed by lists of items.
    """

    def __init__(self, episodes: EpisodeDataset) -> None:
        self.episodes = episodes
        self.labels = episodes.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.episodes[[index]][0], self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[Tensor, Tensor]]:
        # torch's fetcher reads a whole batch through this: one gather (and one rot90 per quarter) per batch
        return list(zip(self.episodes[indices], self.labels[indices], strict=True))


class BaseClassBatches:
    """Training on plain batches of the train-split classes, and training-only batched augmentation.

    Mixed into :class:`~ssl_lightning.data.episodic.EpisodicDataModule`, which declares and documents the
    arguments (``train_mode``, ``batch_size``, ``augment``, ``seed``, ``num_workers``) and provides
    ``datasets``, ``class_names``, ``setup`` and ``trainer``.
    """

    train_mode: str
    batch_size: int
    seed: int
    num_workers: int
    datasets: dict[str, EpisodeDataset]
    class_names: dict[str, list[str]]
    trainer: Any
    setup: Callable[..., None]

    def init_base_batches(self, train_mode: str, batch_size: int, augment: list | None) -> None:
        """Check and store the options (call from ``__init__``)."""
        check_training_options(train_mode, batch_size)
        self.train_mode = train_mode
        self.batch_size = batch_size
        self.augment = list(augment) if augment else []
        self.augmentations = Augmentations(self.augment)
        self._batch_generator = BatchGenerator()

    def _train_split(self) -> EpisodeDataset:
        if not self.datasets:
            self.setup()
        if not self.class_names["train"]:
            raise ValueError(
                f"{type(self).__name__}: the train split has no classes, so there are no base-class images to train "
                f"on (train_mode={self.train_mode!r}). Give the train split classes (class_split, split_file)."
            )
        return self.datasets["train"]

    @property
    def num_base_classes(self) -> int:
        """Classes of the train split (after rotations: 4x); runs ``setup()`` if needed."""
        if not self.datasets:
            self.setup()
        return len(self.class_names["train"])

    def base_class_loader(self) -> ResumableDataLoader:
        """``(x: uint8[B, C, H, W], y: long[B])`` batches over the train split, a seeded new order every epoch.

        ``drop_last``: every batch has ``batch_size`` images (the partial last batch of an epoch would
        give BatchNorm a batch of one, and a different loss scale); the dropped images differ per epoch.
        """
        dataset = BaseClassDataset(self._train_split())
        _, world_size = distributed_rank_and_size()
        if len(dataset) // world_size < self.batch_size:
            raise ValueError(
                f"{type(self).__name__}: the train split has {len(dataset)} images ({len(dataset) // world_size} per "
                f"rank over {world_size} rank(s)), fewer than batch_size={self.batch_size}: no full training "
                f"batch. Lower batch_size."
            )
        return ResumableDataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochSeededSampler(len(dataset), self.seed),
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @torch.no_grad()
    def labelled_features(self, embed: Callable[[Tensor], Tensor], device: torch.device | str) -> tuple[Tensor, Tensor]:
        """``embed`` every train-split image once (rotated copies included), in order, without augmentation.

        Args:
            embed: float[B, C, H, W] in ``[0, 1]`` -> float[B, D] (e.g. a backbone's pooled features).
            device: where images are embedded and the result is returned.

        Returns:
            ``(features: float[N, D], labels: long[N])`` on ``device``, labels in ``0..num_base_classes-1``.
        """
        dataset = self._train_split()
        features = []
        for start in range(0, len(dataset), self.batch_size):
            images = dataset[list(range(start, min(start + self.batch_size, len(dataset))))]
            features.append(embed(images.to(device).float() / 255))
        return torch.cat(features), dataset.labels.to(device)

    def augment_training(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Apply ``augment`` to a float training batch on the device: ``(x, y)``, or an episode batch.

        An episode batch has its support and query images (``float[T, N*K, ...]`` and ``float[T, N*Q, ...]``)
        augmented together as ``T * N * (K + Q)`` images, each with its own parameters; labels are untouched.
        """
        if not self.augment:
            return batch
        if len(batch) == 2:
            x, y = batch
            return self.augmentations(x, self._batch_generator(self.trainer, self.seed, x.device)), y
        support_x, support_y, query_x, query_y = batch  # type: ignore[misc]
        images = torch.cat([support_x, query_x], dim=1)
        generator = self._batch_generator(self.trainer, self.seed, images.device)
        images = self.augmentations(images.flatten(0, 1), generator).reshape(images.shape)
        shots = support_x.shape[1]
        episode: EpisodeBatch = (images[:, :shots], support_y, images[:, shots:], query_y)
        return episode
