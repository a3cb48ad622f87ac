"""The image DataModule base class: one lifecycle for every in-memory image dataset.

Subclasses only say how to read their files (:meth:`ImageDataModule.load_split`). The base
owns everything else: the seeded stratified validation split, the limited-label subset, the
unlabelled pool, the loaders, and the on-device conversion of uint8 images to normalized
floats (``on_after_batch_transfer``), so augmentation and normalization run batched on the
training device instead of per sample in worker processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_lightning.data.augment import Augmentations, BatchAugmentation, augmentation_generator
from ssl_lightning.data.mixing import BatchMix
from ssl_lightning.data.resampling import (
    ClassBalancedBatchSampler,
    inverse_frequency_sampler,
    long_tail_subset,
    oversample,
    undersample,
)
from ssl_lightning.data.resumable import ResumableDataLoader
from ssl_lightning.data.splits import class_counts, per_class_subset, stratified_split
from ssl_lightning.data.subset_file import load_subset, save_subset

log = logging.getLogger(__name__)

ImageBatch = tuple[Tensor, Tensor]


def pool_fingerprint(train_idx: Tensor) -> str:
    """Short hash of the training pool's indices into the official training split.

    Subset files record it so that indices are never applied to a pool built with another
    ``seed``/``val_size`` (which would silently select other images).
    """
    return hashlib.sha1(train_idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


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
        augment: list[BatchAugmentation] | None = None,
        mix: BatchMix | None = None,
        imbalance_ratio: float | None = None,
        resample: Literal["none", "oversample", "undersample"] = "none",
        sampler: Literal["random", "weighted", "class_balanced"] = "random",
        subset_file: str | None = None,
        save_subset: str | None = None,
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
        if subset_file is not None and (labels_per_class is not None or imbalance_ratio is not None):
            raise ValueError(
                f"subset_file={subset_file!r} fixes the labelled set; it cannot be combined with "
                f"labels_per_class={labels_per_class} or imbalance_ratio={imbalance_ratio}. Set those to null."
            )
        self.augment = list(augment) if augment else []
        self.augmentations = Augmentations(self.augment)
        self.mix = mix
        self.imbalance_ratio = imbalance_ratio
        self.resample = resample
        self.sampler = sampler
        self.subset_file = subset_file
        self.save_subset = save_subset
        #: examples per class in the labelled training set actually used (after resampling)
        self.labelled_class_counts: list[int] = []
        #: hash of the training pool (see :func:`pool_fingerprint`), set in ``setup``
        self.pool_fingerprint = ""
        self._transform_calls = 0
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
        pool_labels = labels[train_idx]
        self.pool_fingerprint = pool_fingerprint(train_idx)
        chosen = self.select_labelled(pool_labels)
        if self.save_subset is not None:
            self._save_subset(chosen, pool_labels)
        labelled_idx = train_idx[self._resampled(chosen, pool_labels)]
        self.datasets["labelled"] = InMemoryImageDataset(images[labelled_idx], labels[labelled_idx])
        self.datasets["all"] = InMemoryImageDataset(images[train_idx], labels[train_idx])
        self.datasets["val"] = InMemoryImageDataset(images[val_idx], labels[val_idx])
        test_images, test_labels, _ = self.load_split("test")
        self.datasets["test"] = InMemoryImageDataset(test_images, test_labels)
        pool = images[train_idx].float() / 255
        self.mean = pool.mean(dim=(0, 2, 3))
        self.std = pool.std(dim=(0, 2, 3)).clamp_min(1e-6)
        self.labelled_class_counts = class_counts(labels[labelled_idx], len(self.class_names))
        log.info(
            "%s: %d labelled / %d training images, %d val, %d test; labelled per class: %s",
            type(self).__name__,
            len(labelled_idx),
            len(train_idx),
            len(val_idx),
            len(test_labels),
            self.labelled_class_counts,
        )
        self._log_class_counts()

    # ---- data selection ----------------------------------------------------------------
    def select_labelled(self, pool_labels: Tensor) -> Tensor:
        """Positions (sorted, distinct) in the training pool of the labelled examples.

        Args:
            pool_labels: long[P] labels of the training pool (non-validation training images).
        """
        num_classes = len(self.class_names)
        if self.subset_file is not None:
            indices = load_subset(self.subset_file, type(self).__name__, len(pool_labels))
            self._check_pool(self.subset_file)
            return torch.tensor(indices, dtype=torch.long)
        chosen = torch.arange(len(pool_labels))
        if self.labels_per_class is not None:
            chosen = chosen[per_class_subset(pool_labels, self.labels_per_class, self.seed)]
        if self.imbalance_ratio is not None:
            kept = long_tail_subset(
                pool_labels[chosen], self.imbalance_ratio, self.seed, self.labels_per_class, num_classes
            )
            chosen = chosen[kept]
        return chosen

    def _check_pool(self, path: str) -> None:
        """Subset indices point into the training pool, which depends on ``seed`` and ``val_size``:
        refuse a file made from another pool (when it records the pool's fingerprint)."""
        try:
            meta = json.loads(Path(path).read_text()).get("meta", {})
        except (OSError, json.JSONDecodeError, AttributeError):
            return  # load_subset reports a missing or malformed file precisely
        recorded = meta.get("pool_fingerprint") if isinstance(meta, dict) else None
        if recorded is not None and recorded != self.pool_fingerprint:
            raise ValueError(
                f"subset file {path} was made from another training pool (fingerprint {recorded}, this DataModule's "
                f"is {self.pool_fingerprint}): its indices would select other images. Use the seed and val_size it "
                f"was made with (its meta: seed={meta.get('seed')}, val_size={meta.get('val_size')})."
            )

    def _resampled(self, chosen: Tensor, pool_labels: Tensor) -> Tensor:
        if self.resample == "none":
            return chosen
        resample = oversample if self.resample == "oversample" else undersample
        return chosen[resample(pool_labels[chosen], self.seed, num_classes=len(self.class_names))]

    def _save_subset(self, chosen: Tensor, pool_labels: Tensor) -> None:
        assert self.save_subset is not None
        if self.trainer is not None and not self.trainer.is_global_zero:
            return
        counts = class_counts(pool_labels[chosen], len(self.class_names))
        indices = chosen.tolist()
        try:
            if load_subset(self.save_subset, type(self).__name__, len(pool_labels)) == sorted(indices):
                return  # the same subset is already there (e.g. a re-run)
        except FileNotFoundError:
            pass
        save_subset(
            self.save_subset,
            indices,
            type(self).__name__,
            len(pool_labels),
            per_class_counts={str(c): n for c, n in enumerate(counts)},
            meta={
                "pool_fingerprint": self.pool_fingerprint,
                "seed": self.seed,
                "val_size": self.val_size,
                "labels_per_class": self.labels_per_class,
                "imbalance_ratio": self.imbalance_ratio,
            },
        )
        log.info("saved the labelled subset (%d indices) to %s", len(indices), self.save_subset)

    def _log_class_counts(self) -> None:
        """Write the per-class counts used to TensorBoard's text tab (if a TensorBoard logger is attached)."""
        trainer = self.trainer
        if trainer is None or not trainer.is_global_zero:
            return
        experiment = getattr(trainer.logger, "experiment", None)
        if hasattr(experiment, "add_text"):
            rows = "\n".join(
                f"| {name} | {n} |" for name, n in zip(self.class_names, self.labelled_class_counts, strict=True)
            )
            experiment.add_text("data/labelled_class_counts", f"| class | labelled |\n|---|---|\n{rows}", 0)

    # ---- loaders -----------------------------------------------------------------------
    def _loader(self, dataset: Dataset, sampler: Sampler | None = None, resumable: bool = False) -> DataLoader:
        # training loaders resume mid-epoch from a checkpoint (see ssl_lightning.data.resumable)
        return (ResumableDataLoader if resumable else DataLoader)(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets[self.train_pool]
        if self.sampler == "class_balanced":
            batches = ClassBalancedBatchSampler(dataset.labels, self.batch_size, self.seed, None, len(self.class_names))
            return ResumableDataLoader(
                dataset, batch_sampler=batches, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
            )
        if self.sampler == "weighted":
            weighted = inverse_frequency_sampler(dataset.labels, self.seed, None, len(self.class_names))
            return self._loader(dataset, weighted, resumable=True)
        return self._loader(dataset, EpochSeededSampler(len(dataset), self.seed), resumable=True)

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

    def batch_generator(self, device: torch.device | str) -> torch.Generator:
        """Generator for the current training batch, seeded from ``(seed, epoch, batch index in the epoch)``.

        Lightning restores the epoch and batch counters on resume, so augmentation after a resume
        repeats what an uninterrupted run would draw. Without a trainer a call counter stands in.
        """
        trainer = self.trainer
        if trainer is None:
            self._transform_calls += 1
            return augmentation_generator(self.seed, -1, self._transform_calls, device)
        step = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        # one stream per rank (ranks see different images; their augmentations should be independent too)
        return augmentation_generator(self.seed + 7919 * trainer.global_rank, trainer.current_epoch, step, device)

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
