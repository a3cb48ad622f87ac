"""Colour ops: brightness, contrast, saturation and hue jitter per image, and the luma and blend they use.

:func:`grey` and :func:`_blend` follow PIL's ``convert("L")`` and ``ImageEnhance`` (a factor
blends each image with a degenerate version of itself); :mod:`.randaugment` reuses them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ssl_lightning.data.augment.pipeline import _PerSample, _uniform

# Rec. 601 luma weights (as PIL's convert("L") and torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)


def grey(x: Tensor) -> Tensor:
    """float[B, C, H, W] -> float[B, 1, H, W] luma (identity for C=1)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``other + factor * (x - other)`` per image, clamped to [0, 1] (PIL ImageEnhance semantics)."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp(0.0, 1.0)


class ColorJitter(_PerSample):
    """Random brightness, contrast, saturation and hue per image (in that order).

    Factors are drawn from ``[1 - v, 1 + v]`` (hue: a shift in ``[-hue, hue]`` of a full turn,
    applied as a rotation in YIQ space). Saturation and hue do nothing to grey images.

    Example config::

        {class_path: ssl_lightning.data.augment.ColorJitter,
         init_args: {brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1, p: 0.8}}

    Args:
        brightness: strength of the brightness change.
        contrast: strength of the contrast change.
        saturation: strength of the saturation change.
        hue: maximum hue shift, in ``[0, 0.5]``.
        p: probability per image.
    """

    def __init__(
        self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0, p: float = 1.0
    ) -> None:
        super().__init__(p)
        if min(brightness, contrast, saturation) < 0 or not 0 <= hue <= 0.5:
            raise ValueError(
                f"brightness/contrast/saturation must be >= 0 and hue in [0, 0.5], got "
                f"{brightness}, {contrast}, {saturation}, {hue}"
            )
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        if self.brightness:
            x = _blend(x, torch.zeros_like(x), _uniform(1 - self.brightness, 1 + self.brightness, n, generator))
        if self.contrast:
            mean = grey(x).mean(dim=(1, 2, 3), keepdim=True)
            x = _blend(x, mean.expand_as(x), _uniform(1 - self.contrast, 1 + self.contrast, n, generator))
        if x.shape[1] == 3 and self.saturation:
            x = _blend(x, grey(x).expand_as(x), _uniform(1 - self.saturation, 1 + self.saturation, n, generator))
        if x.shape[1] == 3 and self.hue:
            x = rotate_hue(x, _uniform(-self.hue, self.hue, n, generator))
        return x


def rotate_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of float[B, 3, H, W] images by ``shift`` (float[B], fraction of a turn) in YIQ space."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype
    )
    from_yiq = torch.linalg.inv(to_yiq)
    angle = 2 * math.pi * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotation = torch.stack(
        [torch.stack([one, zero, zero], -1), torch.stack([zero, cos, -sin], -1), torch.stack([zero, sin, cos], -1)], 1
    )
    matrix = from_yiq @ rotation @ to_yiq  # [B, 3, 3]
    return torch.einsum("bij,bjhw->bihw", matrix, x).clamp(0.0, 1.0)
