"""Fitting image batches to what a backbone takes: channels (grey <-> RGB) and a square size.

One place for the conversions that the pretrained backbones (``TimmBackbone.prepare_input``)
and selection's embeddings (``selection.embeddings.adapt_images``) apply to float batches on
the device. Grey images become RGB by repeating the channel (an ``expand``: a view, no copy),
RGB becomes grey by Rec. 601 luma (as PIL's ``convert("L")``; torchvision's
``rgb_to_grayscale`` rounds the red weight to 0.2989, so it is not used), and resizing is torch's
bilinear ``F.interpolate``.

(The data layer's conversion of a stored uint8 pool, ``data.episodic.match_channels`` /
``resize_images``, rounds back to uint8 and may not import ``nets`` (data and nets are
siblings); it stays there.)

Example::

    x = torch.rand(8, 1, 8, 8)                 # 8x8 grey digits in [0, 1]
    adapt_images(x, in_chans=3, size=64).shape  # (8, 3, 64, 64) for an ImageNet backbone
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: Rec. 601 luma weights (PIL's convert("L"), torchvision's rgb_to_grayscale).
LUMA = (0.299, 0.587, 0.114)


def match_channels(x: Tensor, channels: int) -> Tensor:
    """float[B, C, H, W] -> float[B, channels, H, W]: grey is repeated, RGB becomes luma (channels=1).

    Raises:
        ValueError: any other conversion (e.g. 4 -> 3 channels).
    """
    have = x.shape[1]
    if have == channels:
        return x
    if have == 1:
        return x.expand(-1, channels, -1, -1)
    if have == 3 and channels == 1:
        weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot turn {have}-channel images into {channels} channels; only grey (1) or RGB -> grey can be")


def resize_square(x: Tensor, size: int, antialias: bool | None = None) -> Tensor:
    """float[B, C, H, W] -> float[B, C, size, size], bilinear (unchanged when already that size).

    Args:
        x: the images.
        size: the side of the output.
        antialias: low-pass before subsampling; ``None`` does so only when shrinking (the width
            is larger than ``size``), as the pretrained backbones always have.
    """
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if antialias is None:
        antialias = x.shape[-1] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def adapt_images(x: Any, in_chans: int | None = None, size: int | None = None, antialias: bool | None = None) -> Any:
    """:func:`match_channels` to ``in_chans`` then :func:`resize_square` to ``size`` (``None``: keep).

    Anything that is not a 4-d float tensor (token ids, dicts of text inputs) is returned
    unchanged, so the same call serves image and text pools.
    """
    if not (isinstance(x, Tensor) and x.ndim == 4 and x.is_floating_point()):
        return x
    if in_chans is not None:
        x = match_channels(x, in_chans)
    if size is not None:
        x = resize_square(x, size, antialias)
    return x
