"""The semi-supervised DataModule: FixMatch's paired labelled/unlabelled loaders.

SimCLR's two-view DataModule moved to :mod:`ssl_lightning.data.two_view`; ``TwoViewDataModule``
and ``simclr_augmentation`` are still importable from here (kept for one release).

It wraps an :class:`~ssl_lightning.data.base.ImageDataModule` (the *source*), which keeps
owning the data: the splits, the labelled subset (``labels_per_class``, ``subset_file``, ...),
the unlabelled pool (``datasets["all"]``: every non-validation training image, the labelled
ones included, as in FixMatch's reference code), normalization and the val/test loaders.
The wrapper only decides how training batches are drawn and which augmented views they carry.
Images stay uint8 in the loaders; conversion, augmentation (batched, per-sample parameters,
:mod:`ssl_lightning.data.augment`) and standardization run on the device in
``on_after_batch_transfer``, seeded by ``(seed, epoch, batch index)``.

Under DDP Lightning puts a ``DistributedSamplerWrapper`` around the sampler of every loader
inside a ``CombinedLoader`` (``fit_loop.setup_data`` processes ``combined_loader.flattened``), so
each rank draws distinct labelled and unlabelled batches. A
:class:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule` source streams both pools through
LitData instead (its ``streaming_loader``; LitData shards them over ranks and workers).
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.utilities import CombinedLoader
from torch import Tensor
from torch.utils.data import Dataset

from ssl_lightning.data.augment import strong_augmentation, weak_augmentation
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.samplers import EpochSeededSampler, RepeatedSeededSampler
from ssl_lightning.data.streaming_datamodule import StreamingImageDataModule
from ssl_lightning.data.two_view import TwoViewDataModule, simclr_augmentation
from ssl_lightning.data.wrapper import ViewsDataModule

__all__ = ["RepeatedSeededSampler", "SemiSupervisedDataModule", "TwoViewDataModule", "simclr_augmentation"]


class WithIndex(Dataset):
    """``dataset[i] + (i,)``: a dataset's items with their index, so a method can track each sample.

    Args:
        dataset: a dataset of tuples (e.g. ``(image, label)``).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (*self.dataset[index], index)


class SemiSupervisedDataModule(ViewsDataModule):
    """Labelled and unlabelled batches side by side for FixMatch-style training (Sohn et al. 2020).

    Each training step gets a dict (Lightning's ``CombinedLoader``, ``max_size_cycle``)::

        {"labelled":   (x: float[B, C, H, W] weakly augmented, y: long[B]),
         "unlabelled": (x_weak: float[mu*B, C, H, W], x_strong: float[mu*B, C, H, W], y: long[mu*B])}

    where ``B`` is the source's ``batch_size`` and the unlabelled images come from every
    training image (labelled ones included). ``x_weak`` and ``x_strong`` are two augmentations
    of the same images with independent per-image parameters: weak = flip (optional) and
    shift; strong = weak ops, RandAugment (2 ops, random magnitude) and Cutout
    (:func:`~ssl_lightning.data.augment.strong_augmentation`). The unlabelled ``y`` are the true
    labels, only for monitoring pseudo-label accuracy. With ``unlabelled_indices`` the unlabelled
    tuple has a fourth element, ``index: long[mu*B]``, each image's position in the unlabelled pool
    (``0..num_unlabelled-1``, the same on every DDP rank), for methods that keep per-sample state
    (FlexMatch). An epoch is one pass over the unlabelled
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
        unlabelled_indices: add each unlabelled image's index in the pool to its batch (FlexMatch needs it).
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
        unlabelled_indices: bool = False,
    ) -> None:
        super().__init__(source)
        if mu < 1:
            raise ValueError(f"mu (unlabelled images per labelled image) must be >= 1, got {mu}")
        self.mu = mu
        self.weak = weak_augmentation(flip, translate)
        self.strong = strong_augmentation(flip, translate, num_ops, magnitude, cutout)
        self.unlabelled_indices = unlabelled_indices

    @property
    def num_unlabelled(self) -> int:
        """Images in the unlabelled pool (runs ``setup`` if needed)."""
        if "all" not in self.source.datasets:
            self.setup("fit")
        return len(self.source.datasets["all"])

    def train_dataloader(self) -> CombinedLoader:
        if isinstance(self.source, StreamingImageDataModule):
            return self._streaming_loaders()
        labelled, unlabelled = self.source.datasets["labelled"], self.source.datasets["all"]
        if self.unlabelled_indices:
            unlabelled = WithIndex(unlabelled)
        batch_size = self.source.batch_size
        unlabelled_loader = self._train_loader(
            unlabelled, self.mu * batch_size, EpochSeededSampler(len(unlabelled), self.seed + 1)
        )
        steps = len(unlabelled_loader)
        labelled_loader = self._train_loader(
            labelled, batch_size, RepeatedSeededSampler(len(labelled), steps * batch_size, self.seed)
        )
        return CombinedLoader({"labelled": labelled_loader, "unlabelled": unlabelled_loader}, mode="max_size_cycle")

    def _streaming_loaders(self) -> CombinedLoader:
        """Both pools as LitData ``StreamingDataLoader``s (sharded and resumed by LitData); the shorter one is
        cycled by ``max_size_cycle``, a new LitData order each pass."""
        source: StreamingImageDataModule = self.source  # type: ignore[assignment]
        batch_size = source.batch_size
        unlabelled = source.streaming_loader("all", self.mu * batch_size, 1, with_index=self.unlabelled_indices)
        labelled = source.streaming_loader("labelled", batch_size)
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="max_size_cycle")

    def training_views(self, batch: dict[str, Any]) -> dict[str, tuple[Tensor, ...]]:
        (x_l, y_l), (x_u, y_u, *index) = batch["labelled"], batch["unlabelled"]
        x_l, x_u = self.source.to_float(x_l), self.source.to_float(x_u)
        generator = self.batch_generator(x_l.device)
        standardize = self.source.standardize
        # one generator, drawn in this order: labelled weak, unlabelled weak, unlabelled strong
        labelled = (standardize(self.weak(x_l, generator)), y_l)
        weak_u, strong_u = standardize(self.weak(x_u, generator)), standardize(self.strong(x_u, generator))
        return {"labelled": labelled, "unlabelled": (weak_u, strong_u, y_u, *index)}
