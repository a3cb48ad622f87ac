"""The base of the DataModules that wrap another one (the *source*), which keeps owning the data.

The semi-supervised, two-view, class-subset and feature-cache DataModules all take an image
DataModule and change only how training (or all) batches are made. :class:`WrappedDataModule`
holds what they share: the source's settings (``batch_size``, ``seed``, ``num_workers``,
``train_pool``, ``class_names``, ``num_classes``), its lifecycle (``prepare_data``, ``setup``
with the trainer handed down so it logs class counts and saves subsets once), its val/test/
predict loaders, its on-device conversion, and the training batch's generator.

Example (a wrapper that only changes the training loader)::

    class Shuffled(WrappedDataModule):
        def train_dataloader(self):
            pool = self.source.datasets["all"]
            return self.source.eval_dataloader(pool)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.resumable import resumable_loader
from ssl_lightning.data.samplers import BatchGenerator


class WrappedDataModule(pl.LightningDataModule):
    """Delegates settings, lifecycle, evaluation loaders and conversion to ``source``.

    Args:
        source: the DataModule that owns the splits (an ``ImageDataModule`` or another wrapper
            with the same members).
    """

    def __init__(self, source: Any) -> None:
        super().__init__()
        self.source = source
        self._batch_generator = BatchGenerator()

    # ---- the source's settings (read-only views of the source's attributes) ------------------
    num_classes = property(lambda self: self.source.num_classes, doc="The source's number of classes.")
    class_names = property(lambda self: self.source.class_names, doc="The source's class names.")
    seed = property(lambda self: self.source.seed, doc="The source's seed.")
    batch_size = property(lambda self: self.source.batch_size, doc="The source's batch size.")
    num_workers = property(lambda self: self.source.num_workers, doc="The source's loader workers.")
    train_pool = property(lambda self: self.source.train_pool, doc="The source's training pool name.")

    # ---- lifecycle -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.source.trainer = self.trainer  # lets the source log its class counts and save subsets once
        self.source.setup(stage)

    def eval_dataloader(self, dataset: Dataset) -> DataLoader:
        """The source's plain sequential loader over ``dataset``."""
        return self.source.eval_dataloader(dataset)

    def _train_loader(
        self,
        dataset: Dataset,
        batch_size: int,
        sampler: Sampler,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int | None = None,
    ) -> DataLoader:
        """A training loader that resumes mid-epoch from a checkpoint (see :mod:`~ssl_lightning.data.resumable`).

        ``collate_fn`` defaults to PyTorch's (image tensors), ``num_workers`` to the source's.
        """
        workers = self.num_workers if num_workers is None else num_workers
        return resumable_loader(dataset, batch_size, sampler, collate_fn, workers)

    def val_dataloader(self) -> Any:
        return self.source.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.source.test_dataloader()

    def predict_dataloader(self) -> Any:
        return self.source.predict_dataloader()

    # ---- the source's on-device conversion -------------------------------------------------
    def to_float(self, images: Tensor) -> Tensor:
        return self.source.to_float(images)

    def standardize(self, x: Tensor) -> Tensor:
        return self.source.standardize(x)

    def evaluation_input(self, images: Tensor) -> Tensor:
        """uint8[B, C, H, W] on the device -> standardized float[B, C, H, W], no augmentation."""
        return self.standardize(self.to_float(images))

    def batch_generator(self, device: torch.device | str) -> torch.Generator:
        """Generator for this training batch, seeded by ``(seed, rank, epoch, batch index)``."""
        return self._batch_generator(self.trainer, self.seed, device)

    def state_dict(self) -> dict[str, Any]:
        return {}


class ViewsDataModule(WrappedDataModule):
    """A wrapper whose training batches are augmented views made on the device (FixMatch, SimCLR).

    Subclasses build ``train_dataloader`` (with :meth:`_train_loader`) and :meth:`training_views`;
    evaluation batches are the source's ``(x, y)`` converted without augmentation.

    Args:
        source: the image DataModule that owns the splits.
    """

    def __init__(self, source: ImageDataModule) -> None:
        if not isinstance(source, ImageDataModule):
            raise ValueError(f"source must be an ImageDataModule (e.g. DigitsDataModule), got {type(source).__name__}")
        super().__init__(source)

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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            return self.training_views(batch)
        images, labels = batch
        return self.evaluation_input(images), labels

    def training_views(self, batch: Any) -> Any:
        """The training batch (uint8 images on the device) -> the views the method trains on."""
        raise NotImplementedError(f"{type(self).__name__} does not implement training_views")
