"""The self-supervised DataModule: two independently augmented views of every training image (+ local crops).

Wraps an :class:`~ssl_lightning.data.base.ImageDataModule` (the *source*), which keeps owning
the splits, normalization and the val/test loaders; views are made on the device in
``on_after_batch_transfer``, seeded by ``(seed, epoch, batch index)``. With ``local_crops``,
DINO's multi-crop (Caron et al. 2020/2021) adds small views of small regions.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.augment import Augmentations, BatchAugmentation, ColorJitter, HorizontalFlip, RandomResizedCrop
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.wrapper import ViewsDataModule


def simclr_augmentation(
    flip: bool = True, crop_scale: tuple[float, float] = (0.2, 1.0), jitter: float = 0.4, size: int | None = None
) -> Augmentations:
    """SimCLR's view pipeline for small images (Chen et al. 2020, App. A; CIFAR variant without blur).

    Args:
        flip: random horizontal flips.
        crop_scale: area range of the random resized crop.
        jitter: brightness/contrast/saturation strength of the colour jitter (hue: a quarter of it), p=0.8.
        size: output side of the crop (``None``: the image's own size).
    """
    ops: list[BatchAugmentation] = [RandomResizedCrop(scale=crop_scale, size=size)]
    if flip:
        ops.append(HorizontalFlip(0.5))
    if jitter > 0:
        ops.append(ColorJitter(jitter, jitter, jitter, min(0.5, jitter / 4), p=0.8))
    return Augmentations(ops)


class TwoViewDataModule(ViewsDataModule):
    """Two independently augmented views of every training image, for self-supervised pretraining.

    Training batches are ``(x1: float[B, C, H, W], x2: float[B, C, H, W], y: long[B])`` drawn
    from the source's unlabelled pool (every non-validation training image; ``y`` is ignored
    by the methods). With ``local_crops = V > 0`` a fourth item holds multi-crop's local views,
    ``float[V, B, C, s, s]``: crops of ``local_scale`` of the area resized to ``s = local_size``
    (default half the side; DINO's 96 px locals for 224 px globals are 0.43), with the same flip
    and jitter as :func:`simclr_augmentation` (:class:`~ssl_lightning.methods.dino.DINO` uses them;
    methods without local views refuse them). Val/test batches are the source's ``(x, y)`` without
    augmentation, and :meth:`labelled_features` embeds the source's labelled set (the kNN monitor's
    memory bank).

    Example config::

        data:
          class_path: ssl_lightning.data.two_view.TwoViewDataModule
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
        local_crops: number of small local views per image (0: none; DINO's paper uses 6-10).
        local_scale: area range of the local crops (DINO: (0.05, 0.4); the global crops then use (0.4, 1)).
        local_size: side of the local views in pixels; ``None``: half the image side (at least 1).
    """

    def __init__(
        self,
        source: ImageDataModule,
        augment: list[BatchAugmentation] | None = None,
        flip: bool = True,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        jitter: float = 0.4,
        local_crops: int = 0,
        local_scale: tuple[float, float] = (0.05, 0.4),
        local_size: int | None = None,
    ) -> None:
        super().__init__(source)
        if local_crops < 0 or (local_size is not None and local_size < 1):
            raise ValueError(f"local_crops must be >= 0 and local_size >= 1, got {local_crops} and {local_size}")
        self.views = Augmentations(augment) if augment else simclr_augmentation(flip, tuple(crop_scale), jitter)
        self.local_crops = local_crops
        self.local_settings = (flip, tuple(local_scale), jitter)
        self.local_size = local_size

    def train_dataloader(self) -> DataLoader:
        pool = self.source.datasets["all"]
        return self._train_loader(pool, self.source.batch_size, EpochSeededSampler(len(pool), self.seed))

    def training_views(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
        images, labels = batch
        x = self.source.to_float(images)
        generator = self.batch_generator(x.device)
        first = self.source.standardize(self.views(x, generator))
        second = self.source.standardize(self.views(x, generator))
        if not self.local_crops:
            return first, second, labels
        size = self.local_size or max(1, x.shape[-1] // 2)
        local = simclr_augmentation(*self.local_settings, size=size)
        views = [self.source.standardize(local(x, generator)) for _ in range(self.local_crops)]
        return first, second, labels, torch.stack(views)
