"""The image DataModule base class: one lifecycle for every in-memory image dataset.

Subclasses only say how to read their files (:meth:`ImageDataModule.load_split`). The base
owns everything else: the seeded stratified validation split, the limited-label subset, the
unlabelled pool, the loaders, and the on-device conversion of uint8 images to normalized
floats (``on_after_batch_transfer``), so augmentation and normalization run batched on the
training device instead of per sample in worker processes.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_lightning.data.splits import class_counts, per_class_subset, stratified_split

log = logging.getLogger(__name__)

ImageBatch = tuple[Tensor, Tensor]


class InMemoryImageDataset(Dataset[ImageBatch]):
    """Images and labels held as tensors.

    Args:
        images: uint8[N, C, H, W].
        labels: long[N].
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8[N, C, H, W], got {images.dtype}{list(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> ImageBatch:
        return self.images[index], self.labels[index]


class EpochSeededSampler(Sampler[int]):
    """Random permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so the order of epoch ``e`` is the
    same whether a run went straight through or was resumed from a checkpoint.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        self.num_items = num_items
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())


class ImageDataModule(pl.LightningDataModule):
    """Base class of the image DataModules.

    Batches are ``(x: float[B, C, H, W], y: long[B])``. Images stay uint8 in memory and in the
    loaders; ``on_after_batch_transfer`` scales them to ``[0, 1]`` and, if ``normalize``,
    standardizes them with the training set's per-channel mean and std.

    Subclasses implement :meth:`load_split` and may override :meth:`prepare_data`.

    Args:
        batch_size: examples per training batch (evaluation uses the same size).
        num_workers: DataLoader worker processes. 0 is usually fastest for in-memory data.
        val_size: validation examples held out of the official training set, stratified.
        labels_per_class: keep only this many labelled training examples per class (seeded,
            stratified); ``None`` keeps all. The other training images stay in the
            unlabelled pool.
        train_pool: ``"labelled"`` trains on the labelled subset; ``"all"`` trains on every
            training image (labels still attached but meant to be ignored, e.g. autoencoders).
        normalize: standardize with the training set's mean/std. Turn off for backbones that
            normalize inputs themselves (pretrained ImageNet models expect ``[0, 1]``).
        seed: seed of the validation split, the label subset and the shuffling.
    """

    #: Human-readable class names; subclasses fill it in ``setup``.
    class_names: list[str]

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 5000,
        labels_per_class: int | None = None,
        train_pool: Literal["labelled", "all"] = "labelled",
        normalize: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_size = val_size
        self.labels_per_class = labels_per_class
        self.train_pool = train_pool
        self.normalize = normalize
        self.seed = seed
        self.datasets: dict[str, InMemoryImageDataset] = {}
        self.mean = torch.zeros(1)
        self.std = torch.ones(1)

    # ---- what subclasses provide -------------------------------------------------------
    @abstractmethod
    def load_split(self, split: Literal["train", "test"]) -> tuple[Tensor, Tensor, list[str]]:
        """Read one official split from disk.

        Returns:
            ``(images: uint8[N, C, H, W], labels: long[N], class_names)``.
        """

    # ---- lifecycle ---------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        if not self.datasets:
            self.setup("fit")
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        images, labels, self.class_names = self.load_split("train")
        train_idx, val_idx = stratified_split(labels, self.val_size, self.seed)
        labelled_idx = train_idx
        if self.labels_per_class is not None:
            labelled_idx = train_idx[per_class_subset(labels[train_idx], self.labels_per_class, self.seed)]
        self.datasets["labelled"] = InMemoryImageDataset(images[labelled_idx], labels[labelled_idx])
        self.datasets["all"] = InMemoryImageDataset(images[train_idx], labels[train_idx])
        self.datasets["val"] = InMemoryImageDataset(images[val_idx], labels[val_idx])
        test_images, test_labels, _ = self.load_split("test")
        self.datasets["test"] = InMemoryImageDataset(test_images, test_labels)
        pool = images[train_idx].float() / 255
        self.mean = pool.mean(dim=(0, 2, 3))
        self.std = pool.std(dim=(0, 2, 3)).clamp_min(1e-6)
        log.info(
            "%s: %d labelled / %d training images, %d val, %d test; labelled per class: %s",
            type(self).__name__,
            len(labelled_idx),
            len(train_idx),
            len(val_idx),
            len(test_labels),
            class_counts(labels[labelled_idx], len(self.class_names)),
        )

    # ---- loaders -----------------------------------------------------------------------
    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets[self.train_pool]
        return self._loader(dataset, EpochSeededSampler(len(dataset), self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"])

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # ---- on-device conversion ------------------------------------------------------------
    def to_float(self, images: Tensor) -> Tensor:
        """uint8[B, C, H, W] on any device -> float[B, C, H, W] in ``[0, 1]``."""
        return images.float() / 255

    def standardize(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] in ``[0, 1]`` -> standardized with the training mean/std (if ``normalize``)."""
        if not self.normalize:
            return x
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def train_batch_transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Hook for training-only batch transforms on ``[0, 1]`` images (augmentation, mixing).

        Args:
            x: float[B, C, H, W] in ``[0, 1]`` on the training device.
            y: long[B] labels.

        Returns:
            ``(x, y)``; ``y`` may become float[B, num_classes] soft targets (mixup).
        """
        return x, y

    def on_after_batch_transfer(self, batch: ImageBatch, dataloader_idx: int) -> ImageBatch:
        images, labels = batch
        x = self.to_float(images)
        if self.trainer is not None and self.trainer.training:
            x, labels = self.train_batch_transform(x, labels)
        return self.standardize(x), labels
