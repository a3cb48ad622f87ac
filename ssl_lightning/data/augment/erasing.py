"""Erasing ops: Cutout's fixed square and random erasing's random box, filled per image.

Both build a boolean box mask per image (:func:`_box_mask`, pixel centres inside the box) and
fill it with a constant (or, for :class:`RandomErasing` with ``value=None``, uniform noise).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ssl_lightning.data.augment.pipeline import (
    BatchAugmentation,
    _check_probability,
    _check_range,
    _chosen,
    _log_uniform,
    _uniform,
)


def _box_mask(x: Tensor, centre: Tensor, size: Tensor) -> Tensor:
    """bool[B, 1, H, W]: pixels inside per-image boxes (centre, size in pixels, as float[B, 2] x/y)."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=x.device).view(1, 1, w) + 0.5
    half = size / 2
    inside_x = (xs >= (centre[:, 0] - half[:, 0]).view(-1, 1, 1)) & (xs < (centre[:, 0] + half[:, 0]).view(-1, 1, 1))
    inside_y = (ys >= (centre[:, 1] - half[:, 1]).view(-1, 1, 1)) & (ys < (centre[:, 1] + half[:, 1]).view(-1, 1, 1))
    return (inside_x & inside_y).unsqueeze(1)


class Cutout(BatchAugmentation):
    """Fill a square of side ``size`` centred anywhere in the image (DeVries & Taylor 2017).

    The square may extend past the border (as in the paper), so some images lose less.

    Example config: ``{class_path: ssl_lightning.data.augment.Cutout, init_args: {size: 0.5, p: 1.0}}``

    Args:
        size: side in pixels (``>= 1``) or as a fraction of the shorter side (``< 1``).
        value: fill value in ``[0, 1]``.
        p: probability per image.
    """

    def __init__(self, size: float = 0.5, value: float = 0.5, p: float = 1.0) -> None:
        _check_probability(p)
        if size <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        self.size = size
        self.value = value
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, (h, w) = len(x), x.shape[-2:]
        side = self.size if self.size >= 1 else self.size * min(h, w)
        centre = torch.rand(n, 2, generator=generator, device=generator.device) * torch.tensor([w, h], device=x.device)
        size = torch.full((n, 2), float(side), device=x.device)
        mask = _box_mask(x, centre, size) & _chosen(self.p, n, generator).view(-1, 1, 1, 1)
        return torch.where(mask, torch.full_like(x, self.value), x)


class RandomErasing(BatchAugmentation):
    """Erase a box of random area and aspect inside each image (Zhong et al. 2020).

    Example config: ``{class_path: ssl_lightning.data.augment.RandomErasing, init_args: {p: 0.5}}``

    Args:
        scale: range of the box area as a fraction of the image.
        ratio: range of the box aspect ratio, drawn log-uniformly.
        value: fill value in ``[0, 1]``, or ``None`` for uniform noise.
        p: probability per image.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.02, 0.33),
        ratio: tuple[float, float] = (0.3, 3.3),
        value: float | None = 0.0,
        p: float = 0.5,
    ) -> None:
        _check_probability(p)
        _check_range("scale", *scale, minimum=0.0)
        _check_range("ratio", *ratio, minimum=1e-6)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.value = value
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, (h, w) = len(x), x.shape[-2:]
        area = _uniform(*self.scale, n, generator) * h * w
        aspect = _log_uniform(*self.ratio, n, generator)
        size = torch.stack([torch.sqrt(area * aspect).clamp(max=w), torch.sqrt(area / aspect).clamp(max=h)], -1)
        limit = torch.tensor([w, h], device=x.device)
        centre = size / 2 + torch.rand(n, 2, generator=generator, device=generator.device) * (limit - size)
        mask = _box_mask(x, centre, size) & _chosen(self.p, n, generator).view(-1, 1, 1, 1)
        if self.value is None:
            fill = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        else:
            fill = torch.full_like(x, self.value)
        return torch.where(mask, fill, x)
