"""Keep only some classes of an image DataModule, relabelled 0..k-1 (source -> target transfer)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ssl_lightning.data.base import ImageDataModule, InMemoryImageDataset
from ssl_lightning.data.memmap import take_rows
from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.wrapper import WrappedDataModule


class ClassSubsetDataModule(WrappedDataModule):
    """An :class:`ImageDataModule` restricted to ``classes``, whose labels become ``0..len(classes)-1``.

    Every split of ``source`` (labelled, all, val, test) is filtered, so ``labels_per_class``
    of the source still means labelled images per kept class. Conversion, augmentation and
    normalization are the source's own (its statistics come from all of its training images,
    a label-free choice). Mixing that turns labels into soft targets over the source's classes
    is refused with a clear error.

    Batches: ``(x: float[B, C, H, W], y: long[B])`` with ``y`` in ``0..len(classes)-1``.

    Example config (CIFAR-10 classes 5-9, 10 labels each, as a 5-class problem)::

        data:
          class_path: ssl_lightning.data.class_subset.ClassSubsetDataModule
          init_args:
            source:
              class_path: ssl_lightning.data.CIFAR10DataModule
              init_args: {root: data, labels_per_class: 10}
            classes: [5, 6, 7, 8, 9]

    Args:
        source: the image DataModule to filter.
        classes: the source's class indices to keep, in the order of the new labels.
    """

    def __init__(self, source: ImageDataModule, classes: list[int]) -> None:
        super().__init__(source)
        if not classes or len(set(classes)) != len(classes):
            raise ValueError(f"classes must be a non-empty list of distinct class indices, got {classes}")
        self.classes = list(classes)
        self.datasets: dict[str, InMemoryImageDataset] = {}
        self._class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return self._class_names

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        super().setup(stage)
        source_classes = len(self.source.class_names)
        bad = [c for c in self.classes if not 0 <= c < source_classes]
        if bad:
            raise ValueError(
                f"classes {bad} do not exist: {type(self.source).__name__} has classes 0..{source_classes - 1}."
            )
        relabel = torch.full((source_classes,), -1, dtype=torch.long)
        relabel[torch.tensor(self.classes)] = torch.arange(len(self.classes))
        for split, dataset in self.source.datasets.items():
            new_labels = relabel[dataset.labels]
            keep = new_labels >= 0
            self.datasets[split] = InMemoryImageDataset(take_rows(dataset.images, keep), new_labels[keep])
        self._class_names = [self.source.class_names[c] for c in self.classes]
        empty = [c for c in range(len(self.classes)) if not (self.datasets[self.train_pool].labels == c).any()]
        if empty:
            raise ValueError(
                f"class {self.classes[empty[0]]} has no training images in {type(self.source).__name__}; "
                f"check classes and labels_per_class."
            )

    def train_dataloader(self) -> DataLoader:
        dataset = self.datasets[self.train_pool]
        return self._train_loader(dataset, self.batch_size, EpochSeededSampler(len(dataset), self.seed))

    # evaluation loaders over this module's own (filtered) datasets, as the image DataModule builds them
    val_dataloader = ImageDataModule.val_dataloader
    test_dataloader = ImageDataModule.test_dataloader
    predict_dataloader = ImageDataModule.predict_dataloader

    # ---- the source's on-device conversion (to_float, standardize: WrappedDataModule's) ----------
    def train_batch_transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x, y = self.source.train_batch_transform(x, y)
        if y.is_floating_point() and y.shape[-1] != len(self.classes):
            raise ValueError(
                f"{type(self.source).__name__} mixes labels into {y.shape[-1]}-class soft targets but only "
                f"{len(self.classes)} classes are kept; turn mixing off for ClassSubsetDataModule."
            )
        return x, y

    # The base class's conversion, running through the delegating hooks above.
    on_after_batch_transfer = ImageDataModule.on_after_batch_transfer
