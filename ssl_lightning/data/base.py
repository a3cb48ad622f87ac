"""The image DataModule base class: one lifecycle for every in-memory image dataset.

A *reader* (:class:`ImageReader`: CIFAR-10 batches, scikit-learn's digits, a folder tree) only
reads an official split from disk; :class:`ImageDataModule` owns everything else and declares its
arguments once: the seeded stratified validation split, the labelled subset and the training
batches (:class:`~ssl_lightning.data.labelled_pool.LabelledPoolMixin`, shared with the text
DataModule), the unlabelled pool, the loaders, and the on-device conversion of uint8 images to
normalized floats (``on_after_batch_transfer``), so augmentation and normalization run batched
on the training device instead of per sample in worker processes.
"""

from __future__ import annotations

import logging
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_lightning.data.augment import Augmentations, BatchAugmentation
from ssl_lightning.data.labelled_pool import LabelledPoolMixin, Resample, SamplerName, pool_fingerprint
from ssl_lightning.data.memmap import Images, channel_stats, take_rows
from ssl_lightning.data.mixing import BatchMix
from ssl_lightning.data.samplers import BatchGenerator, EpochSeededSampler
from ssl_lightning.data.splits import stratified_split

__all__ = ["EpochSeededSampler", "ImageDataModule", "ImageReader", "InMemoryImageDataset", "pool_fingerprint"]

log = logging.getLogger(__name__)

ImageBatch = tuple[Tensor, Tensor]
Split = Literal["train", "test"]


class ImageReader:
    """Reads the official splits of one image dataset; knows nothing about subsets or loaders.

    Subclasses implement :meth:`read` and, if they download or verify files, :meth:`prepare`.
    """

    def prepare(self) -> None:
        """Download or verify the files (``LightningDataModule.prepare_data``); nothing by default."""

    def read(self, split: Split) -> tuple[Images, Tensor, list[str]]:
        """Read one official split.

        Returns:
            ``(images: uint8[N, C, H, W], labels: long[N], class_names)``: a tensor, or the
            :class:`~ssl_lightning.data.memmap.MemmapImages` of a decoded cache.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement read(split)")


class InMemoryImageDataset(Dataset[ImageBatch]):
    """Images and labels held as tensors, or images as the rows of a memory-mapped decoded cache.

    Items are ``(uint8[C, H, W], long)``. With a :class:`~ssl_lightning.data.memmap.MemmapImages`
    each item reads its one row from the mapped file (nothing is copied up front), and ``images``
    answers what code reads from a tensor here (``len``, ``shape``, ``images[a:b]``, ``images[index]``).

    Args:
        images: uint8[N, C, H, W] (a tensor or a ``MemmapImages``).
        labels: long[N].
    """

    def __init__(self, images: Images, labels: Tensor) -> None:
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


class ImageDataModule(LabelledPoolMixin, pl.LightningDataModule):
    """The image DataModule: a reader's splits, a labelled pool, loaders and on-device conversion.

    Batches are ``(x: float[B, C, H, W], y: long[B])``. Images stay uint8 in memory and in the
    loaders; ``on_after_batch_transfer`` scales them to ``[0, 1]`` and, if ``normalize``,
    standardizes them with the training set's per-channel mean and std.

    The images come from ``reader`` (an :class:`ImageReader`). The dataset classes
    (:class:`~ssl_lightning.data.CIFAR10DataModule`, :class:`~ssl_lightning.data.DigitsDataModule`,
    :class:`~ssl_lightning.data.ImageFolderDataModule`) are this class with their reader built from
    their own few arguments; a subclass may instead override :meth:`load_split`.

    The labelled training set is chosen in this order: ``subset_file`` (exact indices) or
    ``labels_per_class`` then ``imbalance_ratio``; it may be saved (``save_subset``); then
    ``resample`` balances it by repeating or dropping examples, and ``sampler`` decides how
    training batches are drawn from it. The per-class counts actually used are logged.

    Example config (100 labels per class, augmentation and mixup)::

        data:
          class_path: ssl_lightning.data.CIFAR10DataModule
          init_args:
            labels_per_class: 100
            augment:
              - {class_path: ssl_lightning.data.augment.HorizontalFlip, init_args: {p: 0.5}}
              - {class_path: ssl_lightning.data.augment.PadCrop, init_args: {padding: 4}}
            mix: {class_path: ssl_lightning.data.mixing.MixUp, init_args: {alpha: 0.2}}

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
        seed: seed of the validation split, the label subset, the shuffling and the augmentation.
        augment: batched augmentation ops (:mod:`ssl_lightning.data.augment`) applied in order to
            training batches on the device, each image with its own random parameters. Off by default.
        mix: mixup/CutMix (:mod:`ssl_lightning.data.mixing`) applied after ``augment``; training
            targets become float[B, num_classes] soft targets.
        imbalance_ratio: simulate a long tail on the labelled set: class ``c`` keeps
            ``n * ratio^(-c / (K - 1))`` examples, ``n`` = ``labels_per_class`` or the smallest class.
        resample: ``"oversample"`` repeats examples of smaller classes (with replacement) up to the
            largest class; ``"undersample"`` drops examples of larger classes down to the smallest.
        sampler: how training batches are drawn: ``"random"`` (a seeded permutation per epoch),
            ``"weighted"`` (an inverse-class-frequency ``WeightedRandomSampler``) or
            ``"class_balanced"`` (every batch holds each class equally often).
        subset_file: JSON subset file (:mod:`ssl_lightning.data.subset_file`) whose indices into the
            training pool (the non-validation training images) are the labelled set; the rest stay in
            the unlabelled pool. Excludes ``labels_per_class`` and ``imbalance_ratio``.
        save_subset: write the chosen labelled indices to this subset file (an existing file must hold
            the same indices) so the subset can be reproduced on another machine.
        reader: reads the official train/test splits (last, so positional calls keep their meaning);
            ``None`` only in subclasses that override :meth:`load_split`.
    """

    #: Human-readable class names; filled in ``setup``.
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
        augment: list[BatchAugmentation] | None = None,
        mix: BatchMix | None = None,
        imbalance_ratio: float | None = None,
        resample: Resample = "none",
        sampler: SamplerName = "random",
        subset_file: str | None = None,
        save_subset: str | None = None,
        reader: ImageReader | None = None,
    ) -> None:
        super().__init__()
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}")
        self.reader = reader
        self.val_size = val_size
        self.train_pool = train_pool
        self.normalize = normalize
        self.init_training_loader(batch_size, num_workers, seed)
        self.init_labelled_pool(labels_per_class, imbalance_ratio, resample, sampler, subset_file, save_subset)
        self.augment = list(augment) if augment else []
        self.augmentations = Augmentations(self.augment)
        self.mix = mix
        self._batch_generator = BatchGenerator()
        self.datasets: dict[str, InMemoryImageDataset] = {}
        self.mean = torch.zeros(1)
        self.std = torch.ones(1)

    # ---- reading -----------------------------------------------------------------------
    def load_split(self, split: Split) -> tuple[Images, Tensor, list[str]]:
        """Read one official split from disk (the ``reader``'s).

        Returns:
            ``(images: uint8[N, C, H, W], labels: long[N], class_names)``; images are a tensor, or the
            :class:`~ssl_lightning.data.memmap.MemmapImages` of a decoded cache.
        """
        if self.reader is None:
            raise ValueError(f"{type(self).__name__} has no reader: pass reader= or override load_split.")
        return self.reader.read(split)

    def prepare_data(self) -> None:
        if self.reader is not None:
            self.reader.prepare()

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
        labelled_idx = train_idx[self.choose_labelled(train_idx, labels[train_idx])]
        # take_rows: index views of a memory-mapped cache, copies of a tensor (as before)
        self.datasets["labelled"] = InMemoryImageDataset(take_rows(images, labelled_idx), labels[labelled_idx])
        self.datasets["all"] = InMemoryImageDataset(take_rows(images, train_idx), labels[train_idx])
        self.datasets["val"] = InMemoryImageDataset(take_rows(images, val_idx), labels[val_idx])
        test_images, test_labels, _ = self.load_split("test")
        self.datasets["test"] = InMemoryImageDataset(test_images, test_labels)
        self.mean, self.std = self.pool_statistics(self.datasets["all"].images)
        log.info(
            "%s: %d labelled / %d training images, %d val, %d test%s; labelled per class: %s",
            type(self).__name__,
            len(labelled_idx),
            len(train_idx),
            len(val_idx),
            len(test_labels),
            self.source_description(),
            self.labelled_class_counts,
        )
        self.log_class_counts()

    def pool_statistics(self, images: Images) -> tuple[Tensor, Tensor]:
        """Per-channel ``(mean: float[C], std: float[C])`` in ``[0, 1]`` of the training pool (normalisation)."""
        mean, std = channel_stats(images)
        return mean, std.clamp_min(1e-6)

    def source_description(self) -> str:
        """Where the images come from, for the setup log line (``""``: read as configured)."""
        return ""

    # ---- loaders -----------------------------------------------------------------------
    def eval_dataloader(self, dataset: Dataset) -> DataLoader:
        """A plain sequential loader over ``dataset`` (stored order, ``batch_size``): val, test, embeddings."""
        return DataLoader(
            dataset, batch_size=self.batch_size, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        """Kept for callers of the old private name; use :meth:`eval_dataloader`."""
        if sampler is None:
            return self.eval_dataloader(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets[self.train_pool]
        return self.training_loader(dataset, dataset.labels)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.datasets["val"])

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.datasets["test"])

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

    def batch_generator(self, device: torch.device | str) -> torch.Generator:
        """Generator for the current training batch (:class:`~ssl_lightning.data.samplers.BatchGenerator`)."""
        return self._batch_generator(self.trainer, self.seed, device)

    def train_batch_transform(
        self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Training-only batch transforms on ``[0, 1]`` images: ``augment`` then ``mix``.

        Args:
            x: float[B, C, H, W] in ``[0, 1]`` on the training device.
            y: long[B] labels.
            generator: randomness on ``x``'s device; default :meth:`batch_generator`.

        Returns:
            ``(x, y)``; ``y`` becomes float[B, num_classes] soft targets when ``mix`` is set.
        """
        if not self.augment and self.mix is None:
            return x, y
        if generator is None:
            generator = self.batch_generator(x.device)
        if self.augment:
            x = self.augmentations(x, generator)
        if self.mix is not None:
            x, y = self.mix(x, y, len(self.class_names), generator)
        return x, y

    def on_after_batch_transfer(self, batch: ImageBatch, dataloader_idx: int) -> ImageBatch:
        images, labels = batch
        x = self.to_float(images)
        if self.trainer is not None and self.trainer.training:
            x, labels = self.train_batch_transform(x, labels)
        return self.standardize(x), labels
