"""RandAugment (Cubuk et al. 2020) batched: each image draws its own ops and magnitudes.

The op table (:data:`RAND_OPS`) and ranges follow FixMatch's RandAugment (Sohn et al. 2020);
the pixel ops (autocontrast, equalize, sharpness, posterize, solarize) live here because only
RandAugment uses them; colour and geometry come from :mod:`.colour` and :mod:`.geometry`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_lightning.data.augment.colour import _blend, grey
from ssl_lightning.data.augment.geometry import affine_matrix, warp_affine
from ssl_lightning.data.augment.pipeline import BatchAugmentation


def _signed(m: Tensor, generator: torch.Generator) -> Tensor:
    sign = torch.where(torch.rand(len(m), generator=generator, device=generator.device) < 0.5, -1.0, 1.0)
    return m * sign


def _autocontrast(x: Tensor) -> Tensor:
    low = x.amin(dim=(2, 3), keepdim=True)
    high = x.amax(dim=(2, 3), keepdim=True)
    return torch.where(high > low, (x - low) / (high - low).clamp_min(1e-8), x)


def _equalize(x: Tensor) -> Tensor:
    """Histogram equalization per image and channel on 256 levels (PIL ImageOps.equalize, batched)."""
    b, c, h, w = x.shape
    levels = (x * 255).round().long().clamp(0, 255).view(b, c, h * w)
    hist = torch.zeros(b, c, 256, device=x.device).scatter_add_(2, levels, torch.ones_like(levels, dtype=torch.float))
    cdf = hist.cumsum(dim=2)
    first = torch.where(hist > 0, cdf, torch.full_like(cdf, float(h * w))).amin(dim=2, keepdim=True)
    lut = ((cdf - first) / (h * w - first).clamp_min(1) * 255).clamp(0, 255)
    out = lut.gather(2, levels).view(b, c, h, w) / 255
    flat = (first >= h * w).view(b, c, 1, 1)  # single-level images stay as they are
    return torch.where(flat, x, out)


def _sharpen(x: Tensor, factor: Tensor) -> Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device) / 13
    c = x.shape[1]
    smooth = F.conv2d(F.pad(x, [1] * 4, mode="replicate"), kernel.expand(c, 1, 3, 3), groups=c)
    return _blend(x, smooth, factor)


def _geometric(x: Tensor, generator: torch.Generator, **params: Tensor) -> Tensor:
    n = len(x)
    angle = params.get("angle", torch.zeros(n, device=x.device))
    return warp_affine(x, affine_matrix(angle, params.get("translate"), None, params.get("shear")))


RandOp = Callable[[Tensor, Tensor, torch.Generator], Tensor]


def _rand_ops() -> dict[str, RandOp]:
    """RandAugment's ops (Cubuk et al. 2020, Table; ranges as FixMatch's RandAugment), magnitude m in [0, 1]."""

    def size(x: Tensor) -> Tensor:
        return torch.tensor([x.shape[-1], x.shape[-2]], device=x.device)

    def zeros(m: Tensor) -> Tensor:
        return torch.zeros_like(m)

    return {
        "identity": lambda x, m, g: x,
        "autocontrast": lambda x, m, g: _autocontrast(x),
        "equalize": lambda x, m, g: _equalize(x),
        "brightness": lambda x, m, g: _blend(x, torch.zeros_like(x), 1 + 0.9 * _signed(m, g)),
        "contrast": lambda x, m, g: _blend(
            x, grey(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), 1 + 0.9 * _signed(m, g)
        ),
        "color": lambda x, m, g: _blend(x, grey(x).expand_as(x), 1 + 0.9 * _signed(m, g)),
        "sharpness": lambda x, m, g: _sharpen(x, 1 + 0.9 * _signed(m, g)),
        "posterize": lambda x, m, g: (
            (torch.floor(x * 255).long() & (0xFF << (4 * m).round().long()).view(-1, 1, 1, 1)).float() / 255
        ),
        "solarize": lambda x, m, g: torch.where(x < (1 - m).view(-1, 1, 1, 1), x, 1 - x),
        "rotate": lambda x, m, g: _geometric(x, g, angle=30 * _signed(m, g)),
        "shear_x": lambda x, m, g: _geometric(x, g, shear=torch.stack([0.3 * _signed(m, g), zeros(m)], -1)),
        "shear_y": lambda x, m, g: _geometric(x, g, shear=torch.stack([zeros(m), 0.3 * _signed(m, g)], -1)),
        "translate_x": lambda x, m, g: _geometric(
            x, g, translate=torch.stack([0.3 * _signed(m, g), zeros(m)], -1) * size(x)
        ),
        "translate_y": lambda x, m, g: _geometric(
            x, g, translate=torch.stack([zeros(m), 0.3 * _signed(m, g)], -1) * size(x)
        ),
    }


RAND_OPS = tuple(_rand_ops())


class RandAugment(BatchAugmentation):
    """RandAugment (Cubuk et al. 2020): each image gets ``num_ops`` ops drawn uniformly, batched.

    With ``random_magnitude`` each op's magnitude is drawn per image from ``[0, magnitude]``
    (FixMatch's variant, Sohn et al. 2020); otherwise it is ``magnitude`` (the paper's M/30).

    Example config::

        {class_path: ssl_lightning.data.augment.RandAugment, init_args: {num_ops: 2, magnitude: 1.0}}

    Args:
        num_ops: ops applied to each image.
        magnitude: strength in ``[0, 1]`` (1: rotate 30 degrees, shear 0.3, translate 30%, ...).
        random_magnitude: draw the magnitude per image and op from ``[0, magnitude]``.
        ops: names of the ops to draw from (default: all of ``RAND_OPS``).
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 1.0,
        random_magnitude: bool = True,
        ops: list[str] | None = None,
    ) -> None:
        if num_ops < 0 or not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"num_ops must be >= 0 and magnitude in [0, 1], got {num_ops}, {magnitude}")
        unknown = sorted(set(ops or []) - set(RAND_OPS))
        if unknown:
            raise ValueError(f"unknown RandAugment ops {unknown}; choose from {list(RAND_OPS)}")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.random_magnitude = random_magnitude
        self.ops = list(ops) if ops else list(RAND_OPS)
        self._table = _rand_ops()

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        x = x.clone()
        for _ in range(self.num_ops):
            choice = torch.randint(len(self.ops), (n,), generator=generator, device=generator.device)
            magnitude = torch.full((n,), self.magnitude, device=x.device)
            if self.random_magnitude:
                magnitude = magnitude * torch.rand(n, generator=generator, device=generator.device)
            for k, name in enumerate(self.ops):
                chosen = choice == k
                if name != "identity" and chosen.any():
                    x[chosen] = self._table[name](x[chosen], magnitude[chosen], generator).clamp(0.0, 1.0)
        return x

    def __getstate__(self) -> dict:
        state = dict(vars(self))
        state.pop("_table")  # lambdas do not pickle; rebuilt on load
        return state

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)
        self._table = _rand_ops()

    def __repr__(self) -> str:
        return f"RandAugment(num_ops={self.num_ops}, magnitude={self.magnitude}, ops={self.ops})"
