"""Data selection on label tensors: long-tail imbalance, over/under-sampling, balanced samplers.

Everything here sees only ``labels: long[N]`` (never images), so image and text DataModules
share it. All randomness comes from explicit generators seeded by ``seed`` (and the epoch for
samplers, via ``set_epoch``), so a subset or an epoch's order is the same on every machine and
after a resume. Impossible requests (a class with fewer examples than asked, an empty class)
raise a ``ValueError`` that names the class and the numbers.

Example (a CIFAR-10-LT style training set with imbalance 100, then balanced batches)::

    keep = long_tail_subset(labels, imbalance_ratio=100, seed=0)
    sampler = ClassBalancedBatchSampler(labels[keep], batch_size=128, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler, WeightedRandomSampler


def _pass_generator(seed: int, epoch: int, passes: int) -> torch.Generator:
    """Generator of one pass over a sampler.

    Lightning calls ``set_epoch`` before every epoch (which resets ``passes``), so draws depend
    on ``(seed, epoch)`` only and a resumed run repeats them. Where nobody calls ``set_epoch``
    (e.g. inside Lightning's ``DistributedSamplerWrapper`` under DDP) the pass counter still
    gives every epoch new draws, the same on every rank.
    """
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_003 + passes)


def _members(labels: Tensor, num_classes: int | None) -> list[Tensor]:
    """Indices of each class ``0..K-1``; raises on a class without examples."""
    k = num_classes if num_classes is not None else (int(labels.max()) + 1 if len(labels) else 0)
    if k == 0:
        raise ValueError("no labels given: the dataset is empty.")
    members = [torch.nonzero(labels == c).flatten() for c in range(k)]
    empty = [c for c, m in enumerate(members) if len(m) == 0]
    if empty:
        raise ValueError(
            f"class {empty[0]} has 0 examples (empty classes: {empty} of {k}); resampling cannot create examples "
            f"of an empty class. Check the labels or drop the class."
        )
    return members


def _draw(members: list[Tensor], targets: list[int], seed: int) -> Tensor:
    """Sorted indices: ``targets[c]`` members of each class ``c``, drawn without replacement, class by class."""
    generator = torch.Generator().manual_seed(seed)
    chosen = [
        m[torch.randperm(len(m), generator=generator)[:target]] for m, target in zip(members, targets, strict=True)
    ]
    return torch.cat(chosen).sort().values


def long_tail_counts(num_classes: int, head: int, imbalance_ratio: float) -> list[int]:
    """Examples per class of an exponential long tail (Cui et al. 2019): ``head * ratio^(-c / (K - 1))``.

    Class 0 keeps ``head`` examples and the last class ``head / imbalance_ratio`` (rounded down).
    """
    if imbalance_ratio < 1:
        raise ValueError(f"imbalance_ratio must be >= 1 (largest / smallest class), got {imbalance_ratio}")
    if num_classes == 1:
        return [head]
    return [int(head * imbalance_ratio ** (-c / (num_classes - 1))) for c in range(num_classes)]


def long_tail_subset(
    labels: Tensor, imbalance_ratio: float, seed: int, head: int | None = None, num_classes: int | None = None
) -> Tensor:
    """Keep a long-tailed subset: class ``c`` keeps ``head * imbalance_ratio^(-c / (K - 1))`` examples.

    Args:
        labels: long[N].
        imbalance_ratio: size of the largest class over the smallest (e.g. 100 for CIFAR-10-LT).
        seed: seed of which examples are kept.
        head: size of class 0; default the smallest class size (so every class can afford its share).
        num_classes: number of classes (default ``max(labels) + 1``).

    Returns:
        long[M] sorted indices into ``labels``.

    Raises:
        ValueError: a class has fewer examples than its share, or the tail share rounds to 0.
    """
    members = _members(labels, num_classes)
    sizes = [len(m) for m in members]
    head = min(sizes) if head is None else head
    targets = long_tail_counts(len(members), head, imbalance_ratio)
    for c, (m, target) in enumerate(zip(members, targets, strict=True)):
        if target < 1:
            raise ValueError(
                f"imbalance_ratio={imbalance_ratio} with {head} examples in the head class leaves class {c} with "
                f"{head * imbalance_ratio ** (-c / max(1, len(members) - 1)):.2f} < 1 examples. Lower imbalance_ratio "
                f"to at most {head} or use more data."
            )
        if target > len(m):
            raise ValueError(
                f"the long tail asks for {target} examples of class {c} but it has only {len(m)}. "
                f"Lower head to at most {len(m)}."
            )
    return _draw(members, targets, seed)


def oversample(labels: Tensor, seed: int, target: int | None = None, num_classes: int | None = None) -> Tensor:
    """Grow every class to ``target`` examples by drawing extra copies with replacement.

    Every original example is kept once; the extra copies of a class are drawn uniformly from it.

    Args:
        labels: long[N].
        seed: seed of the draws.
        target: examples per class afterwards (default: the largest class size).
        num_classes: number of classes (default ``max(labels) + 1``).

    Returns:
        long[K * target] indices into ``labels`` (sorted, with repeats).

    Raises:
        ValueError: an empty class, or ``target`` below a class's size (that would be undersampling).
    """
    members = _members(labels, num_classes)
    target = max(len(m) for m in members) if target is None else target
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c, m in enumerate(members):
        if target < len(m):
            raise ValueError(
                f"oversampling to {target} per class but class {c} already has {len(m)}. Use target >= {len(m)} "
                f"or undersample instead."
            )
        extra = torch.randint(len(m), (target - len(m),), generator=generator)
        chosen.append(torch.cat([m, m[extra]]))
    return torch.cat(chosen).sort().values


def undersample(labels: Tensor, seed: int, target: int | None = None, num_classes: int | None = None) -> Tensor:
    """Shrink every class to ``target`` examples, drawn without replacement.

    Args:
        labels: long[N].
        seed: seed of the draws.
        target: examples per class afterwards (default: the smallest class size).
        num_classes: number of classes (default ``max(labels) + 1``).

    Returns:
        long[K * target] sorted indices into ``labels``.

    Raises:
        ValueError: an empty class, or a class with fewer than ``target`` examples.
    """
    members = _members(labels, num_classes)
    target = min(len(m) for m in members) if target is None else target
    for c, m in enumerate(members):
        if target > len(m):
            raise ValueError(
                f"undersampling to {target} per class but class {c} has only {len(m)} examples. "
                f"Use target <= {len(m)} or oversample instead."
            )
    return _draw(members, [target] * len(members), seed)


def inverse_frequency_weights(labels: Tensor, num_classes: int | None = None) -> Tensor:
    """float[N] weight ``1 / count(class of i)``: every class gets the same total weight."""
    members = _members(labels, num_classes)
    counts = torch.tensor([len(m) for m in members], dtype=torch.double)
    return 1.0 / counts[labels]


class EpochWeightedRandomSampler(WeightedRandomSampler):
    """``WeightedRandomSampler`` whose draws depend only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before each epoch, so a resumed run draws what an
    uninterrupted one would; without ``set_epoch`` every pass draws anew.

    Args:
        weights: float[N] sampling weights (need not sum to 1).
        num_samples: indices drawn per epoch.
        seed: seed of the draws.
        replacement: draw with replacement (needed to oversample).
    """

    def __init__(self, weights: Tensor, num_samples: int, seed: int = 0, replacement: bool = True) -> None:
        super().__init__(weights, num_samples, replacement=replacement)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.generator = _pass_generator(self.seed, self.epoch, self.passes)
        self.passes += 1
        return super().__iter__()


def inverse_frequency_sampler(
    labels: Tensor, seed: int = 0, num_samples: int | None = None, num_classes: int | None = None
) -> EpochWeightedRandomSampler:
    """A class-balanced ``WeightedRandomSampler``: each draw picks every class with equal probability.

    Args:
        labels: long[N].
        seed: seed of the draws.
        num_samples: draws per epoch (default N).
        num_classes: number of classes (default ``max(labels) + 1``).
    """
    weights = inverse_frequency_weights(labels, num_classes)
    return EpochWeightedRandomSampler(weights, num_samples or len(labels), seed)


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches with (almost) the same number of examples of every class.

    Each batch holds ``batch_size // K`` examples of every class, and one more of
    ``batch_size % K`` classes drawn at random (so with ``batch_size < K`` each batch has
    ``batch_size`` distinct classes). Within a class, examples are drawn without replacement
    from a shuffled queue that is reshuffled when it runs out, so minority classes repeat
    (oversampling) and majority classes are seen in turn. Yields lists of indices into
    ``labels`` (use as a DataLoader's ``batch_sampler``).

    Example::

        DataLoader(dataset, batch_sampler=ClassBalancedBatchSampler(labels, batch_size=64, seed=0))

    Args:
        labels: long[N].
        batch_size: examples per batch.
        seed: seed of the draws (combined with the epoch set by :meth:`set_epoch`).
        num_batches: batches per epoch (default ``ceil(N / batch_size)``).
        num_classes: number of classes (default ``max(labels) + 1``); each must have examples.
    """

    def __init__(
        self,
        labels: Tensor,
        batch_size: int,
        seed: int = 0,
        num_batches: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.members = _members(labels, num_classes)
        self.batch_size = batch_size
        self.seed = seed
        self.num_batches = num_batches if num_batches is not None else math.ceil(len(labels) / batch_size)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.passes = 0

    @property
    def sampler(self) -> ClassBalancedBatchSampler:
        """This batch sampler itself, so that Lightning calls its :meth:`set_epoch`.

        Lightning calls ``set_epoch`` only on ``loader.sampler`` and ``loader.batch_sampler.sampler``
        (``lightning.fabric.utilities.data._set_sampler_epoch``), never on ``loader.batch_sampler``;
        without this its draws would follow the pass counter, which restarts after a resume.
        """
        return self

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        generator = _pass_generator(self.seed, self.epoch, self.passes)
        self.passes += 1
        k = len(self.members)
        queues: list[list[int]] = [[] for _ in range(k)]

        def take(c: int, n: int) -> list[int]:
            out: list[int] = []
            while len(out) < n:
                if not queues[c]:
                    m = self.members[c]
                    queues[c] = m[torch.randperm(len(m), generator=generator)].tolist()
                need = n - len(out)
                out.extend(queues[c][:need])
                queues[c] = queues[c][need:]
            return out

        base, extra = divmod(self.batch_size, k)
        for _ in range(self.num_batches):
            counts = [base] * k
            for c in torch.randperm(k, generator=generator)[:extra].tolist():
                counts[c] += 1
            batch = [i for c in range(k) for i in take(c, counts[c])]
            order = torch.randperm(len(batch), generator=generator).tolist()
            yield [batch[j] for j in order]
