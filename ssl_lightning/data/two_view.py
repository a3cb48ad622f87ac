"""SimCLR's DataModule: two independently augmented views of every training image.

Wraps an :class:`~ssl_lightning.data.base.ImageDataModule` (the *source*), which keeps owning
the splits, normalization and the val/test loaders; views are made on the device in
``on_after_batch_transfer``, seeded by ``(seed, epoch, batch index)``.
"""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.augment import Augmentations, BatchAugmentation, ColorJitter, HorizontalFlip, RandomResizedCrop
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.wrapper import ViewsDataModule


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


class TwoViewDataModule(ViewsDataModule):
    """Two independently augmented views of every training image, for contrastive pretraining.

    Training batches are ``(x1: float[B, C, H, W], x2: float[B, C, H, W], y: long[B])`` drawn
    from the source's unlabelled pool (every non-validation training image; ``y`` is ignored
    by SimCLR). Val/test batches are the source's ``(x, y)`` without augmentation, and
    :meth:`labelled_features` embeds the source's labelled set (the kNN monitor's memory bank).

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
