"""Draw an augmentation's random parameters on the CPU whatever device its images are on.

A CUDA generator and a CPU generator seeded alike give different streams, so "the same seed on
CUDA and CPU" only compares the ops' arithmetic if both draw the same numbers. Every op draws
through ``torch.rand``/``torch.randint`` with ``generator=..., device=generator.device``;
:func:`cpu_drawn` hands the ops a :class:`CpuDrawnGenerator` that says it is on the images' device,
and routes those two calls to its CPU generator, moving the result to that device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class CpuDrawnGenerator:
    """Looks like a generator on ``device``; its numbers come from a CPU generator seeded ``seed``."""

    def __init__(self, seed: int, device: torch.device | str) -> None:
        self.cpu = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)


@contextlib.contextmanager
def cpu_drawn() -> Iterator[None]:
    """Route ``torch.rand``/``torch.randint`` with a :class:`CpuDrawnGenerator` through its CPU stream."""
    real_rand, real_randint = torch.rand, torch.randint

    def rand(*size, generator=None, device=None, **kwargs):
        if isinstance(generator, CpuDrawnGenerator):
            return real_rand(*size, generator=generator.cpu, device="cpu", **kwargs).to(generator.device)
        return real_rand(*size, generator=generator, device=device, **kwargs)

    def randint(*args, generator=None, device=None, **kwargs):
        if isinstance(generator, CpuDrawnGenerator):
            return real_randint(*args, generator=generator.cpu, device="cpu", **kwargs).to(generator.device)
        return real_randint(*args, generator=generator, device=device, **kwargs)

    torch.rand, torch.randint = rand, randint
    try:
        yield
    finally:
        torch.rand, torch.randint = real_rand, real_randint


def every_op() -> list:
    """One instance of every batched augmentation op (probabilities 1 where they have one, so each acts)."""
    from ssl_lightning.data import augment as A

    return [
        A.HorizontalFlip(0.5),
        A.VerticalFlip(0.5),
        A.RandomAffine(degrees=(-20, 20), translate=0.1, scale=(0.8, 1.2), shear=10),
        A.RandomRotation((-30, 30)),
        A.RandomTranslation(0.125),
        A.PadCrop(4, "reflect"),
        A.RandomResizedCrop(),
        A.ColorJitter(0.4, 0.4, 0.4, 0.1),
        A.Cutout(0.5),
        A.RandomErasing(p=1.0),
        A.RandAugment(num_ops=2, magnitude=0.9),
        A.WeakAugmentation(),
        A.StrongAugmentation(),
    ]
