"""Seeded, stratified index selection shared by every DataModule.

Pure functions over label tensors: they never touch images, so they serve image and text
data alike and are easy to test.
"""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_split(labels: Tensor, holdout: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices into (keep, holdout) with class proportions preserved.

    Args:
        labels: long[N] class labels.
        holdout: number of indices to hold out (e.g. the validation set size).
        seed: seed of the permutation; the same seed gives the same split on every machine.

    Returns:
        (keep, holdout) index tensors, both sorted.

    Raises:
        ValueError: if ``holdout`` is not in ``[0, N)``.
    """
    n = len(labels)
    if not 0 <= holdout < n:
        raise ValueError(
            f"Cannot hold out {holdout} of {n} training examples for validation. "
            f"Choose a val_size between 0 and {n - 1}."
        )
    if holdout == 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    # Largest-remainder apportionment: each class holds out its share, totals exactly `holdout`.
    exact = counts.double() * holdout / n
    quota = exact.floor().long()
    remainder = holdout - int(quota.sum())
    if remainder > 0:
        order = torch.argsort(exact - quota, descending=True, stable=True)
        quota[order[:remainder]] += 1
    held = []
    for cls, take in zip(classes.tolist(), quota.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:take]])
    holdout_idx = torch.cat(held).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[holdout_idx] = False
    return torch.nonzero(mask).flatten(), holdout_idx


def per_class_subset(labels: Tensor, per_class: int, seed: int) -> Tensor:
    """Pick exactly ``per_class`` indices of every class, seeded.

    Args:
        labels: long[N] class labels.
        per_class: how many examples to keep of each class.
        seed: seed of the choice.

    Returns:
        long[num_classes * per_class] sorted indices into ``labels``.

    Raises:
        ValueError: naming the first class that has fewer than ``per_class`` examples.
    """
    if per_class < 1:
        raise ValueError(f"labels_per_class must be >= 1, got {per_class}. Use null to keep all labels.")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in labels.unique().tolist():
        members = torch.nonzero(labels == cls).flatten()
        if len(members) < per_class:
            raise ValueError(
                f"labels_per_class={per_class} but class {cls} has only {len(members)} training examples. "
                f"Lower labels_per_class to at most {len(members)}."
            )
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def class_counts(labels: Tensor, num_classes: int) -> list[int]:
    """Examples per class as a plain list (for logging and error messages)."""
    return torch.bincount(labels, minlength=num_classes).tolist()
