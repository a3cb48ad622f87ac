"""Ready-made pipelines: FixMatch's weak (flip-and-shift) and strong (+ RandAugment + Cutout) augmentation.

Sohn et al. (2020), *FixMatch*, Sec. 2.3: the weak view makes the pseudo-label, the strong
view is trained to predict it. Both are :class:`~ssl_lightning.data.augment.pipeline.Augmentations`
built from the ops of this package.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ssl_lightning.data.augment.erasing import Cutout
from ssl_lightning.data.augment.geometry import HorizontalFlip, PadCrop
from ssl_lightning.data.augment.pipeline import Augmentations, BatchAugmentation
from ssl_lightning.data.augment.randaugment import RandAugment


class WeakAugmentation(Augmentations):
    """FixMatch's weak augmentation: flip-and-shift (Sohn et al. 2020, Sec. 2.3).

    Example config: ``{class_path: ssl_lightning.data.augment.WeakAugmentation, init_args: {flip: false}}``

    Args:
        flip: add a horizontal flip with probability 0.5 (turn off for digits and text-like images).
        translate: maximum shift as a fraction of the size (exact pixel shift by pad-and-crop,
            reflection padding).
    """

    def __init__(self, flip: bool = True, translate: float = 0.125) -> None:
        ops: list[BatchAugmentation] = [HorizontalFlip(0.5)] if flip else []
        ops.append(_FractionPadCrop(translate))
        super().__init__(ops)


class StrongAugmentation(Augmentations):
    """FixMatch's strong augmentation: the weak ops, RandAugment, then Cutout (Sohn et al. 2020).

    Example config::

        {class_path: ssl_lightning.data.augment.StrongAugmentation, init_args: {num_ops: 2, cutout: 0.5}}

    Args:
        flip: see :class:`WeakAugmentation`.
        translate: see :class:`WeakAugmentation`.
        num_ops: RandAugment ops per image.
        magnitude: RandAugment maximum magnitude in ``[0, 1]`` (drawn per image and op).
        cutout: Cutout square side as a fraction of the image (0 turns it off).
    """

    def __init__(
        self, flip: bool = True, translate: float = 0.125, num_ops: int = 2, magnitude: float = 1.0, cutout: float = 0.5
    ) -> None:
        ops = WeakAugmentation(flip, translate).ops
        ops.append(RandAugment(num_ops, magnitude, random_magnitude=True))
        if cutout > 0:
            ops.append(Cutout(cutout, value=0.5, p=1.0))
        super().__init__(ops)


def weak_augmentation(flip: bool = True, translate: float = 0.125) -> WeakAugmentation:
    """The weak pipeline (see :class:`WeakAugmentation`)."""
    return WeakAugmentation(flip, translate)


def strong_augmentation(
    flip: bool = True, translate: float = 0.125, num_ops: int = 2, magnitude: float = 1.0, cutout: float = 0.5
) -> StrongAugmentation:
    """The strong pipeline (see :class:`StrongAugmentation`)."""
    return StrongAugmentation(flip, translate, num_ops, magnitude, cutout)


class _FractionPadCrop(BatchAugmentation):
    """PadCrop whose padding is a fraction of the image size (resolved per batch)."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        pad = round(self.fraction * min(x.shape[-2:]))
        mode: Literal["constant", "reflect"] = "reflect" if 0 < pad < min(x.shape[-2:]) else "constant"
        return PadCrop(pad, mode)(x, generator) if pad > 0 else x
