"""The seeded sampler family: index orders that depend only on ``(seed, epoch)``, and the batch generator.

Lightning calls ``set_epoch`` before every epoch, so the order of epoch ``e`` is the same whether a
run went straight through or was resumed from a checkpoint (with
:class:`~ssl_lightning.data.resumable.ResumableDataLoader`, even in the middle of an epoch). All
three samplers draw from one generator per epoch, :func:`epoch_generator`, as consecutive seeded
permutations (:func:`repeated_permutation`):

- :class:`EpochSeededSampler`: one permutation of the dataset per epoch.
- :class:`RepeatedSeededSampler`: ``num_samples`` indices from consecutive permutations, so a small
  labelled set fills as many batches as a large unlabelled pool (FixMatch).
- :class:`MixtureSampler`: every component of a concatenation in its exact share per epoch.

:func:`batch_generator` is the one place that seeds the on-device randomness of a training batch
(augmentation, mixing, views) from ``(seed, rank, epoch, batch index)``.

Example::

    sampler = EpochSeededSampler(num_items=1000, seed=0)
    sampler.set_epoch(3)            # Lightning does this before each epoch
    order = list(sampler)           # the same on every machine and after a resume
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler

from ssl_lightning.data.augment import augmentation_generator


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch of a seeded sampler."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def repeated_permutation(num_items: int, count: int, generator: torch.Generator) -> Tensor:
    """long[count]: consecutive permutations of ``range(num_items)``, cut at ``count``."""
    passes = -(-count // num_items)
    return torch.cat([torch.randperm(num_items, generator=generator) for _ in range(passes)])[:count]


def apportion(total: int, ratios: Sequence[float]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``ratios`` (largest remainder; sums to ``total``)."""
    weights = torch.tensor(ratios, dtype=torch.double)
    exact = weights / weights.sum() * total
    parts = exact.floor().long()
    remainder = total - int(parts.sum())
    if remainder > 0:
        parts[torch.argsort(exact - parts, descending=True, stable=True)[:remainder]] += 1
    return parts.tolist()


class _EpochSampler(Sampler[int]):
    """Base of the family: a ``seed``, an ``epoch`` set by Lightning, ``num_samples`` indices per epoch."""

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(epoch_generator(self.seed, self.epoch)).tolist())

    def indices(self, generator: torch.Generator) -> Tensor:
        """long[num_samples]: this epoch's indices, drawn from ``generator``."""
        raise NotImplementedError


class RepeatedSeededSampler(_EpochSampler):
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
        super().__init__(num_samples, seed)
        self.num_items = num_items

    def indices(self, generator: torch.Generator) -> Tensor:
        return repeated_permutation(self.num_items, self.num_samples, generator)


class EpochSeededSampler(_EpochSampler):
    """Random permutation that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every epoch, so the order of epoch ``e`` is the
    same whether a run went straight through or was resumed from a checkpoint.

    Args:
        num_items: size of the dataset (an empty dataset gives an empty epoch).
        seed: base seed.
    """

    def __init__(self, num_items: int, seed: int) -> None:
        super().__init__(num_items, seed)
        self.num_items = num_items

    def indices(self, generator: torch.Generator) -> Tensor:
        return torch.randperm(self.num_items, generator=generator)


class MixtureSampler(_EpochSampler):
    """Indices into the concatenation of components, each component in its exact share per epoch.

    An epoch holds ``apportion(epoch_size, ratios)[i]`` examples of component ``i``, drawn from
    seeded permutations of that component (repeated if it is smaller than its share), shuffled
    together. Depends only on ``(seed, epoch)``.

    Args:
        sizes: number of examples of each component (components are concatenated in this order).
        ratios: sampling ratio of each component (normalized).
        epoch_size: examples per epoch.
        seed: seed of the draws.
    """

    def __init__(self, sizes: Sequence[int], ratios: Sequence[float], epoch_size: int, seed: int = 0) -> None:
        if len(sizes) != len(ratios):
            raise ValueError(f"{len(sizes)} components but {len(ratios)} ratios; give one ratio per component.")
        bad = [(i, r) for i, r in enumerate(ratios) if r < 0]
        if bad or sum(ratios) <= 0:
            raise ValueError(f"ratios must be >= 0 with a positive sum, got {list(ratios)}")
        empty = [i for i, (s, r) in enumerate(zip(sizes, ratios, strict=True)) if s == 0 and r > 0]
        if empty:
            raise ValueError(f"component {empty[0]} has no training examples but ratio {ratios[empty[0]]} > 0.")
        super().__init__(epoch_size, seed)
        self.sizes = list(sizes)
        self.ratios = list(ratios)
        self.epoch_size = epoch_size
        self.offsets = torch.tensor([0, *self.sizes]).cumsum(0)[:-1].tolist()

    def indices(self, generator: torch.Generator) -> Tensor:
        parts = []
        for size, offset, share in zip(self.sizes, self.offsets, apportion(self.epoch_size, self.ratios), strict=True):
            if share > 0:
                parts.append(repeated_permutation(size, share, generator) + offset)
        indices = torch.cat(parts)
        return indices[torch.randperm(len(indices), generator=generator)]


class BatchGenerator:
    """Seeds the on-device randomness of each training batch from ``(seed, rank, epoch, batch index)``.

    Lightning restores the epoch and batch counters on resume, so augmentation after a resume
    repeats what an uninterrupted run would draw. Without a trainer (a DataModule used by hand)
    a call counter stands in for the batch index.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, trainer: Any, seed: int, device: torch.device | str) -> torch.Generator:
        if trainer is None:
            self.calls += 1
            return augmentation_generator(seed, -1, self.calls, device)
        step = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        # one stream per rank (ranks see different images; their augmentations should be independent too)
        return augmentation_generator(seed + 7919 * trainer.global_rank, trainer.current_epoch, step, device)
