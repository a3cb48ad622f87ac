"""The augmentation protocol, ops in sequence, and the seeded per-sample randomness they share.

Holds :class:`BatchAugmentation` (the protocol every op follows:
``op(x: float[B, C, H, W], generator) -> float[B, C, H, W]`` in ``[0, 1]``), :class:`Augmentations`
(ops applied in order), :func:`augmentation_generator` (the generator DataModules seed from
``(seed, epoch, batch index)``, so a resumed run sees the augmentations of an uninterrupted one),
and the helpers the ops in :mod:`.geometry`, :mod:`.colour`, :mod:`.erasing` and :mod:`.randaugment`
draw their per-image parameters with (underscored: shared inside this package only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def augmentation_generator(seed: int, epoch: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` whose state depends only on ``(seed, epoch, step)``."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003**2 + epoch * 1_000_003 + step) % (2**63 - 1))
    return generator


def _uniform(low: float, high: float, n: int, generator: torch.Generator) -> Tensor:
    """float[n] drawn uniformly from ``[low, high)`` on the generator's device."""
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _log_uniform(low: float, high: float, n: int, generator: torch.Generator) -> Tensor:
    """float[n] drawn log-uniformly from ``[low, high]`` (aspect ratios: 1/2 and 2 equally likely)."""
    return torch.exp(_uniform(math.log(low), math.log(high), n, generator))


def _chosen(p: float, n: int, generator: torch.Generator) -> Tensor:
    """bool[n]: which images an op with probability ``p`` applies to."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability p must be in [0, 1], got {p}")


def _check_range(name: str, low: float, high: float, minimum: float = -math.inf) -> None:
    if not minimum <= low <= high:
        raise ValueError(f"{name} must be a range (low, high) with {minimum} <= low <= high, got ({low}, {high})")


class BatchAugmentation:
    """Base class: ``op(x: float[B, C, H, W], generator) -> float[B, C, H, W]`` in ``[0, 1]``."""

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class _PerSample(BatchAugmentation):
    """An op applied with probability ``p`` to each image; subclasses transform the chosen ones."""

    def __init__(self, p: float) -> None:
        _check_probability(p)
        self.p = p

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        chosen = _chosen(self.p, len(x), generator)
        if self.p >= 1.0:
            return self.apply(x, generator)
        out = x.clone()
        if chosen.any():
            out[chosen] = self.apply(x[chosen], generator)
        return out


class Augmentations(BatchAugmentation):
    """Ops applied in order.

    Example::

        Augmentations([HorizontalFlip(), PadCrop(4)])(x, generator)

    Args:
        ops: the ops, applied first to last.
    """

    def __init__(self, ops: Sequence[BatchAugmentation]) -> None:
        self.ops = list(ops)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        for op in self.ops:
            x = op(x, generator)
        return x
