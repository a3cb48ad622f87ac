"""The labelled training pool, shared by the image and the text DataModules.

Both DataModules hold a *training pool* (the training examples left after the validation and
test hold-outs) as ``labels: long[P]`` plus their own examples (uint8 images, or texts). Every
choice about which pool examples are labelled and how training batches are drawn from them
sees only those labels and indices, and lives here, once:

1. ``subset_file`` (exact indices into the pool; refused when it records another pool's
   :func:`pool_fingerprint`), or ``labels_per_class`` then ``imbalance_ratio``;
2. ``save_subset`` writes the chosen indices (with the pool fingerprint) to a subset file;
3. ``resample`` repeats (``oversample``) or drops (``undersample``) examples to balance classes;
4. ``sampler`` draws training batches (``random``, ``weighted``, ``class_balanced``) through a
   :class:`~ssl_lightning.data.resumable.ResumableDataLoader`, so a run resumes mid-epoch exactly;
5. the per-class counts used are logged (and written to TensorBoard's text tab).

:class:`LabelledPoolMixin` is that logic as a mixin of a ``LightningDataModule``: the DataModule
declares the arguments in its own typed ``__init__`` (LightningCLI reads them there), passes them
to :meth:`LabelledPoolMixin.init_labelled_pool`, calls :meth:`~LabelledPoolMixin.choose_labelled`
in ``setup`` and :meth:`~LabelledPoolMixin.training_loader` in ``train_dataloader``.

Example (what a DataModule's ``setup``/``train_dataloader`` do)::

    positions = self.choose_labelled(pool_idx, pool_labels)      # long[M] positions into the pool
    labelled = pool_idx[positions]                               # indices into the training file
    ...
    return self.training_loader(dataset, labels=dataset_labels, collate_fn=collate)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from ssl_lightning.data.resampling import (
    ClassBalancedBatchSampler,
    inverse_frequency_sampler,
    long_tail_subset,
    oversample,
    undersample,
)
from ssl_lightning.data.resumable import ResumableDataLoader
from ssl_lightning.data.samplers import EpochSeededSampler
from ssl_lightning.data.splits import class_counts, per_class_subset
from ssl_lightning.data.subset_file import load_subset, save_subset

log = logging.getLogger(__name__)

Resample = Literal["none", "oversample", "undersample"]
SamplerName = Literal["random", "weighted", "class_balanced"]


def pool_fingerprint(train_idx: Tensor) -> str:
    """Short hash of the training pool's indices into the official training split (or file).

    Subset files record it so that indices are never applied to a pool built with another
    ``seed``/``val_size`` (which would silently select other examples).
    """
    return hashlib.sha1(train_idx.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def check_subset_options(subset_file: str | None, labels_per_class: int | None, imbalance_ratio: float | None) -> None:
    """``subset_file`` fixes the labelled set: it excludes ``labels_per_class`` and ``imbalance_ratio``."""
    if subset_file is not None and (labels_per_class is not None or imbalance_ratio is not None):
        raise ValueError(
            f"subset_file={subset_file!r} fixes the labelled set; it cannot be combined with "
            f"labels_per_class={labels_per_class} or imbalance_ratio={imbalance_ratio} (give one, not both). "
            f"Set those to null."
        )


class LabelledPoolMixin:
    """Chooses the labelled part of a training pool and draws training batches from it.

    Mixed into :class:`~ssl_lightning.data.base.ImageDataModule` and
    :class:`~ssl_lightning.data.text.TextClassificationDataModule`; the DataModule provides
    ``val_size``, ``class_names`` and ``trainer``.
    The argument meanings are documented once, in :class:`~ssl_lightning.data.base.ImageDataModule`.
    """

    seed: int
    val_size: Any
    batch_size: int
    num_workers: int
    class_names: list[str]
    trainer: Any

    def init_training_loader(self, batch_size: int, num_workers: int, seed: int) -> None:
        """Check and store the training loader's options (call from ``__init__``)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def init_labelled_pool(
        self,
        labels_per_class: int | None,
        imbalance_ratio: float | None,
        resample: Resample,
        sampler: SamplerName,
        subset_file: str | None,
        save_subset: str | None,
    ) -> None:
        """Check and store the pool options (call from ``__init__``)."""
        check_subset_options(subset_file, labels_per_class, imbalance_ratio)
        self.labels_per_class = labels_per_class
        self.imbalance_ratio = imbalance_ratio
        self.resample = resample
        self.sampler = sampler
        self.subset_file = subset_file
        self.save_subset = save_subset
        #: examples per class in the labelled training set actually used (after resampling)
        self.labelled_class_counts: list[int] = []
        #: hash of the training pool (see :func:`pool_fingerprint`), set in ``setup``
        self.pool_fingerprint = ""

    def choose_labelled(self, pool_idx: Tensor, pool_labels: Tensor) -> Tensor:
        """Positions in the pool of the labelled training examples, resampled (repeats possible).

        Selects (:meth:`select_labelled`), saves (``save_subset``), resamples (``resample``) and
        records ``pool_fingerprint`` and ``labelled_class_counts``.

        Args:
            pool_idx: long[P] indices of the pool's examples in the official training split / file.
            pool_labels: long[P] their labels.

        Returns:
            long[M] positions into the pool.
        """
        self.pool_fingerprint = pool_fingerprint(pool_idx)
        chosen = self.select_labelled(pool_labels)
        if self.save_subset is not None:
            self._save_subset(chosen, pool_labels)
        positions = self._resampled(chosen, pool_labels)
        self.labelled_class_counts = class_counts(pool_labels[positions], len(self.class_names))
        return positions

    def select_labelled(self, pool_labels: Tensor) -> Tensor:
        """Positions (sorted, distinct) in the training pool of the labelled examples.

        Args:
            pool_labels: long[P] labels of the training pool (non-validation training examples).
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
                f"is {self.pool_fingerprint}): its indices would select other examples. Use the seed and val_size it "
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

    def log_class_counts(self) -> None:
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

    def training_sampler(self, labels: Tensor) -> Sampler:
        """The ``sampler`` option for a training set with ``labels: long[N]``.

        ``class_balanced`` gives a batch sampler (use it as ``batch_sampler``), the others index samplers.
        """
        num_classes = len(self.class_names)
        if self.sampler == "class_balanced":
            return ClassBalancedBatchSampler(labels, self.batch_size, self.seed, None, num_classes)
        if self.sampler == "weighted":
            return inverse_frequency_sampler(labels, self.seed, None, num_classes)
        return EpochSeededSampler(len(labels), self.seed)

    def training_loader(
        self,
        dataset: Dataset,
        labels: Tensor,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        wrap_sampler: Callable[[Sampler], Sampler] | None = None,
    ) -> ResumableDataLoader:
        """The training loader: :meth:`training_sampler` in a mid-epoch resumable loader (:mod:`.resumable`).

        Args:
            dataset: the training examples.
            labels: long[N] their labels (what ``weighted``/``class_balanced`` balance).
            collate_fn: batches the items (``None``: the default collation).
            wrap_sampler: applied to the sampler before the loader uses it (e.g. text augmentation's
                ``(epoch, index)`` keys).
        """
        sampler = self.training_sampler(labels)
        if wrap_sampler is not None:
            sampler = wrap_sampler(sampler)
        workers = {"num_workers": self.num_workers, "persistent_workers": self.num_workers > 0}
        if self.sampler == "class_balanced":
            return ResumableDataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, **workers)
        return ResumableDataLoader(dataset, self.batch_size, sampler=sampler, collate_fn=collate_fn, **workers)
