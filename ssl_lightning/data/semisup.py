"""DataModules for learning from unlabelled images: FixMatch's paired loaders and SimCLR's two views.

Both wrap an :class:`~ssl_lightning.data.base.ImageDataModule` (the *source*), which keeps
owning the data: the splits, the labelled subset (``labels_per_class``, ``subset_file``, ...),
the unlabelled pool (``datasets["all"]``: every non-validation training image, the labelled
ones included, as in FixMatch's reference code), normalization and the val/test loaders.
The wrappers only decide how training batches are drawn and which augmented views they carry.
Images stay uint8 in the loaders; conversion, augmentation (batched, per-sample parameters,
:mod:`ssl_lightning.data.augment`) and standardization run on the device in
``on_after_batch_transfer``, seeded by ``(seed, epoch, batch index)``.

Under DDP Lightning puts a ``DistributedSamplerWrapper`` around the sampler of every loader
inside a ``CombinedLoader`` (``fit_loop.setup_data`` processes ``combined_loader.flattened``), so
each rank draws distinct labelled and unlabelled batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from ssl_lightning.data.augment import (
    Augmentations,
    BatchAugmentation,
    ColorJitter,
    HorizontalFlip,
    RandomResizedCrop,
    augmentation_generator,
    strong_augmentation,
    weak_augmentation,
)
from ssl_lightning.data.base import EpochSeededSampler, ImageDataModule
from ssl_lightning.data.resumable import ResumableDataLoader


class RepeatedSeededSampler(Sampler[int]):
    """``num_samples`` indices from consecutive seeded permutations of ``range(num_items)``.

    Lets a small labelled set fill as many batches as the unlabelled pool does in one epoch
    (like the reference FixMatch's ``RandomSampler(num_samples=...)``), each pass over the
    labelled set in a new order. The order depends only on ``(seed, epoch)``.

    Args:
        num_items: size of the dataset.
        num_samples: indices per epoch.
        seed: base seed.
    """

    def __init__(self, num_items: int, num_samples: int, seed: int) -> None:
        if num_items < 1:
            raise ValueError(f"RepeatedSeededSampler needs a non-empty dataset, got num_items={num_items}")
        self.num_items = num_items
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        passes = -(-self.num_samples // self.num_items)
        order = torch.cat([torch.randperm(self.num_items, generator=generator) for _ in range(passes)])
        return iter(order[: self.num_samples].tolist())


class _SourceWrapper(pl.LightningDataModule):
    """Delegates the lifecycle, val/test loaders and evaluation conversion to ``source``."""

    def __init__(self, source: ImageDataModule) -> None:
        super().__init__()
        if not isinstance(source, ImageDataModule):
            raise ValueError(f"source must be an ImageDataModule (e.g. DigitsDataModule), got {type(source).__name__}")
        self.source = source
        self._fallback_calls = 0

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def seed(self) -> int:
        return self.source.seed

    def prepare_data(self) -> None:
        self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.source.trainer = self.trainer  # lets the source log its class counts and save subsets once
        self.source.setup(stage)

    def val_dataloader(self) -> DataLoader:
        return self.source.val_dataloader()

    def test_dataloader(self) -> DataLoader:
        return self.source.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.source.predict_dataloader()

    def evaluation_input(self, images: Tensor) -> Tensor:
        """uint8[B, C, H, W] on the device -> standardized float[B, C, H, W], no augmentation."""
        return self.source.standardize(self.source.to_float(images))

    def batch_generator(self, device: torch.device | str) -> torch.Generator:
        """Generator for this training batch, seeded by ``(seed, rank, epoch, batch index)``."""
        trainer = self.trainer
        if trainer is None:
            self._fallback_calls += 1
            return augmentation_generator(self.seed, -1, self._fallback_calls, device)
        step = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        # Different ranks see different images already; distinct streams keep their augmentations independent too.
        return augmentation_generator(self.seed + 7919 * trainer.global_rank, trainer.current_epoch, step, device)

    def labelled_features(
        self, embed: Callable[[Tensor], Tensor], device: torch.device | str, batch_size: int = 512
    ) -> tuple[Tensor, Tensor]:
        """Embed the whole labelled training set (no augmentation), e.g. as a kNN memory bank.

        Returns:
            ``(features: float[N, D], labels: long[N])`` on ``device``.
        """
        dataset = self.source.datasets["labelled"]
        features, labels = [], []
        for start in range(0, len(dataset), batch_size):
            images = dataset.images[start : start + batch_size].to(device)
            features.append(embed(self.evaluation_input(images)))
            labels.append(dataset.labels[start : start + batch_size].to(device))
        return torch.cat(features), torch.cat(labels)

    def _train_loader(self, dataset: Any, batch_size: int, sampler: Sampler) -> DataLoader:
        workers = self.source.num_workers
        # resumes mid-epoch from a checkpoint (see ssl_lightning.data.resumable)
        return ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                   persistent_workers=workers > 0)  # fmt: skip

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            return self.training_views(batch)
        images, labels = batch
        return self.evaluation_input(images), labels

    def training_views(self, batch: Any) -> Any:
        raise NotImplementedError


class SemiSupervisedDataModule(_SourceWrapper):
    """Labelled and unlabelled batches side by side for FixMatch-style training (Sohn et al. 2020).

    Each training step gets a dict (Lightning's ``CombinedLoader``, ``max_size_cycle``)::

        {"labelled":   (x: float[B, C, H, W] weakly augmented, y: long[B]),
         "unlabelled": (x_weak: float[mu*B, C, H, W], x_strong: float[mu*B, C, H, W], y: long[mu*B])}

    where ``B`` is the source's ``batch_size`` and the unlabelled images come from every
    training image (labelled ones included). ``x_weak`` and ``x_strong`` are two augmentations
    of the same images with independent per-image parameters: weak = flip (optional) and
    shift; strong = weak ops, RandAugment (2 ops, random magnitude) and Cutout
    (:func:`~ssl_lightning.data.augment.strong_augmentation`). The unlabelled ``y`` are the true
    labels, only for monitoring pseudo-label accuracy. An epoch is one pass over the unlabelled
    pool; the labelled set is redrawn (a new order each pass) as often as needed to keep up.
    The source's own ``augment``/``mix`` and ``sampler`` do not apply to these batches; val
    and test batches are the source's ``(x, y)``, converted without augmentation.

    Example config::

        data:
          class_path: ssl_lightning.data.semisup.SemiSupervisedDataModule
          init_args:
            source:
              class_path: ssl_lightning.data.CIFAR10DataModule
              init_args: {root: data, labels_per_class: 25, batch_size: 64}
            mu: 7
            flip: true

    Args:
        source: the image DataModule that owns the splits (its ``batch_size`` is the labelled batch size).
        mu: unlabelled images per labelled image in a step (FixMatch's mu).
        flip: horizontal flips in both augmentations (turn off for digits and text-like images).
        translate: maximum shift as a fraction of the image size (weak and strong).
        num_ops: RandAugment ops per image in the strong view.
        magnitude: RandAugment maximum magnitude in ``[0, 1]``, drawn per image.
        cutout: Cutout square side as a fraction of the image (0 turns it off).
    """

    def __init__(
        self,
        source: ImageDataModule,
        mu: int = 7,
        flip: bool = True,
        translate: float = 0.125,
        num_ops: int = 2,
        magnitude: float = 1.0,
        cutout: float = 0.5,
    ) -> None:
        super().__init__(source)
        if mu < 1:
            raise ValueError(f"mu (unlabelled images per labelled image) must be >= 1, got {mu}")
        self.mu = mu
        self.weak = weak_augmentation(flip, translate)
        self.strong = strong_augmentation(flip, translate, num_ops, magnitude, cutout)

    def train_dataloader(self) -> CombinedLoader:
        labelled, unlabelled = self.source.datasets["labelled"], self.source.datasets["all"]
        batch_size = self.source.batch_size
        unlabelled_loader = self._train_loader(
            unlabelled, self.mu * batch_size, EpochSeededSampler(len(unlabelled), self.seed + 1)
        )
        steps = len(unlabelled_loader)
        labelled_loader = self._train_loader(
            labelled, batch_size, RepeatedSeededSampler(len(labelled), steps * batch_size, self.seed)
        )
        return CombinedLoader({"labelled": labelled_loader, "unlabelled": unlabelled_loader}, mode="max_size_cycle")

    def training_views(self, batch: dict[str, Any]) -> dict[str, tuple[Tensor, ...]]:
        (x_l, y_l), (x_u, y_u) = batch["labelled"], batch["unlabelled"]
        x_l, x_u = self.source.to_float(x_l), self.source.to_float(x_u)
        generator = self.batch_generator(x_l.device)
        standardize = self.source.standardize
        return {
            "labelled": (standardize(self.weak(x_l, generator)), y_l),
            "unlabelled": (standardize(self.weak(x_u, generator)), standardize(self.strong(x_u, generator)), y_u),
        }


def simclr_augmentation(
    flip: bool = True, crop_scale: tuple[float, float] = (0.2, 1.0), jitter: float = 0.4
) -> Augmentations:
    """SimCLR's view pipeline for small images (Chen et al. 2020, App. A; CIFAR variant without blur).

    Args:
        flip: random horizontal flips.
        crop_scale: area range of the random resized crop.
        jitter: brightness/contrast/saturation strength of the colour jitter (hue: a quarter of it), p=0.8.
    """
    ops: list[BatchAugmentation] = [RandomResizedCrop(scale=crop_scale)]
    if flip:
        ops.append(HorizontalFlip(0.5))
    if jitter > 0:
        ops.append(ColorJitter(jitter, jitter, jitter, min(0.5, jitter / 4), p=0.8))
    return Augmentations(ops)


class TwoViewDataModule(_SourceWrapper):
    """Two independently augmented views of every training image, for contrastive pretraining.

    Training batches are ``(x1: float[B, C, H, W], x2: float[B, C, H, W], y: long[B])`` drawn
    from the source's unlabelled pool (every non-validation training image; ``y`` is ignored
    by SimCLR). Val/test batches are the source's ``(x, y)`` without augmentation, and
    :meth:`labelled_features` embeds the source's labelled set (the kNN monitor's memory bank).

    Example config::

        data:
          class_path: ssl_lightning.data.semisup.TwoViewDataModule
          init_args:
            source:
              class_path: ssl_lightning.data.DigitsDataModule
              init_args: {batch_size: 256, val_size: 300, test_size: 360}
            flip: false

    Args:
        source: the image DataModule that owns the splits (its ``batch_size`` is the number of images per step).
        augment: the view pipeline; ``None`` uses :func:`simclr_augmentation` with ``flip``, ``crop_scale``, ``jitter``.
        flip: see :func:`simclr_augmentation` (ignored when ``augment`` is given).
        crop_scale: see :func:`simclr_augmentation` (ignored when ``augment`` is given).
        jitter: see :func:`simclr_augmentation` (ignored when ``augment`` is given).
    """

    def __init__(
        self,
        source: ImageDataModule,
        augment: list[BatchAugmentation] | None = None,
        flip: bool = True,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        jitter: float = 0.4,
    ) -> None:
        super().__init__(source)
        self.views = Augmentations(augment) if augment else simclr_augmentation(flip, tuple(crop_scale), jitter)

    def train_dataloader(self) -> DataLoader:
        pool = self.source.datasets["all"]
        return self._train_loader(pool, self.source.batch_size, EpochSeededSampler(len(pool), self.seed))

    def training_views(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, labels = batch
        x = self.source.to_float(images)
        generator = self.batch_generator(x.device)
        first = self.source.standardize(self.views(x, generator))
        return first, self.source.standardize(self.views(x, generator)), labels
