"""Show what the network sees: a grid of augmented training images in TensorBoard."""

from __future__ import annotations

import inspect

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn

from ssl_lightning.data.augment import augmentation_generator
from ssl_lightning.utils.figures import log_image_grid


class AugmentationGrid(pl.Callback):
    """At the start of training, log each of ``num_images`` training images next to ``views`` augmented versions.

    Uses the DataModule's own ``train_batch_transform`` (augmentation, then mixup/CutMix) on
    the training device, with a generator seeded from the DataModule's seed (it does not
    consume the training randomness). The grid is ``float[num_images * (views + 1), C, H, W]``
    with one row per image: the original first. Logged under ``augment/grid`` (TensorBoard only);
    ``log_image_grid`` min-max scales each image, so pure brightness changes look muted.

    Example config::

        trainer:
          callbacks+:
            - class_path: ssl_lightning.callbacks.augmentation_grid.AugmentationGrid
              init_args: {num_images: 8, views: 7}

    Args:
        num_images: training images shown (the first of the training set).
        views: augmented versions per image.
    """

    def __init__(self, num_images: int = 8, views: int = 7) -> None:
        if num_images < 1 or views < 1:
            raise ValueError(f"num_images and views must be >= 1, got {num_images}, {views}")
        self.num_images = num_images
        self.views = views

    def grid(self, datamodule: pl.LightningDataModule, device: torch.device) -> torch.Tensor:
        """float[num_images * (views + 1), C, H, W] in ``[0, 1]``: each original followed by its views."""
        dataset = datamodule.datasets[datamodule.train_pool]
        images = dataset.images[: self.num_images].to(device)
        labels = dataset.labels[: self.num_images].to(device)
        x = datamodule.to_float(images)
        generator = augmentation_generator(datamodule.seed, -1, 0, device)
        repeated = x.repeat_interleave(self.views, dim=0)
        transform = datamodule.train_batch_transform
        args = (repeated, labels.repeat_interleave(self.views))
        # wrappers may override the hook as (x, y); then it draws from its own per-batch generator
        if "generator" in inspect.signature(transform).parameters:
            augmented, _ = transform(*args, generator=generator)
        else:
            augmented, _ = transform(*args)
        rows = torch.cat([x.unsqueeze(1), augmented.view(len(x), self.views, *x.shape[1:])], dim=1)
        return rows.flatten(0, 1).clamp(0, 1)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        if not all(hasattr(datamodule, a) for a in ("datasets", "train_batch_transform", "to_float", "train_pool")):
            rank_zero_warn(f"AugmentationGrid needs an ImageDataModule, got {type(datamodule).__name__}; skipped.")
            return
        grid = self.grid(datamodule, pl_module.device)
        log_image_grid(trainer.logger, "augment/grid", grid, trainer.global_step, nrow=self.views + 1)
