"""Geometric ops: flips, rotation, translation, affine maps, resized crops and pad-and-crop.

Each image draws its own parameters. Resampling ops build one ``2x3`` matrix per image in
centred pixel coordinates (:func:`affine_matrix`), convert it to ``affine_grid``'s normalized
coordinates and resample once with ``grid_sample`` (:func:`warp_affine`); flips and
:class:`PadCrop` move whole pixels and are exact. The code runs unchanged on CPU and GPU and is
tested against exact references (``torch.flip``, ``torch.rot90``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_lightning.data.augment.pipeline import (
    BatchAugmentation,
    _check_probability,
    _check_range,
    _chosen,
    _log_uniform,
    _PerSample,
    _uniform,
)

PaddingMode = Literal["zeros", "border", "reflection"]


def warp_affine(x: Tensor, forward: Tensor, padding_mode: PaddingMode = "zeros") -> Tensor:
    """Apply per-image affine maps given in centred pixel coordinates.

    Args:
        x: float[B, C, H, W].
        forward: float[B, 2, 3]; maps an input pixel position ``p`` (origin at the image centre,
            x right, y down, in pixels) to its output position ``A p + t``.
        padding_mode: what fills pixels that come from outside the image.

    Returns:
        float[B, C, H, W], bilinear resampling.
    """
    b, _, h, w = x.shape
    linear, shift = forward[:, :, :2], forward[:, :, 2:]
    inverse = torch.linalg.inv(linear)
    # grid_sample needs the output->input map in normalized coords (align_corners=False: [-1, 1]
    # spans the image edges), i.e. N A^-1 N^-1 and N (-A^-1 t) with N = diag(2/W, 2/H).
    to_norm = torch.tensor([2.0 / w, 2.0 / h], device=x.device, dtype=x.dtype)
    theta_linear = inverse * to_norm.view(1, 2, 1) / to_norm.view(1, 1, 2)
    theta_shift = -(inverse @ shift) * to_norm.view(1, 2, 1)
    theta = torch.cat([theta_linear, theta_shift], dim=2)
    grid = F.affine_grid(theta, [b, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def affine_matrix(
    angle: Tensor, translate: Tensor | None = None, scale: Tensor | None = None, shear: Tensor | None = None
) -> Tensor:
    """Forward maps float[B, 2, 3] in centred pixel coordinates.

    Args:
        angle: float[B] degrees, counter-clockwise as displayed (torchvision's convention).
        translate: float[B, 2] pixels (x right, y down).
        scale: float[B] zoom factor (> 1 enlarges).
        shear: float[B, 2] shear factors (x by y, y by x).
    """
    rad = torch.deg2rad(angle)
    cos, sin = torch.cos(rad), torch.sin(rad)
    # y points down, so a visually counter-clockwise rotation sends (1, 0) to (cos, -sin).
    linear = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], dim=1)
    if shear is not None:
        ones = torch.ones_like(angle)
        shear_matrix = torch.stack([torch.stack([ones, shear[:, 0]], -1), torch.stack([shear[:, 1], ones], -1)], dim=1)
        linear = linear @ shear_matrix
    if scale is not None:
        linear = linear * scale.view(-1, 1, 1)
    shift = translate if translate is not None else torch.zeros(len(angle), 2, device=angle.device)
    return torch.cat([linear, shift.to(linear.dtype).unsqueeze(-1)], dim=2)


class HorizontalFlip(BatchAugmentation):
    """Mirror left-right each image with probability ``p`` (exact, no resampling).

    Example config: ``{class_path: ssl_lightning.data.augment.HorizontalFlip, init_args: {p: 0.5}}``

    Args:
        p: probability per image.
    """

    def __init__(self, p: float = 0.5) -> None:
        _check_probability(p)
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        chosen = _chosen(self.p, len(x), generator).view(-1, 1, 1, 1)
        return torch.where(chosen, x.flip(-1), x)


class VerticalFlip(HorizontalFlip):
    """Mirror top-bottom each image with probability ``p``.

    Args:
        p: probability per image.
    """

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        chosen = _chosen(self.p, len(x), generator).view(-1, 1, 1, 1)
        return torch.where(chosen, x.flip(-2), x)


class RandomAffine(_PerSample):
    """Rotation, translation, scale and shear in one resampling, parameters drawn per image.

    Example config::

        {class_path: ssl_lightning.data.augment.RandomAffine,
         init_args: {degrees: [-15, 15], translate: 0.1, scale: [0.9, 1.1]}}

    Args:
        degrees: rotation range in degrees (counter-clockwise positive).
        translate: maximum shift as a fraction of width/height (uniform in ``[-t, t]``).
        scale: zoom range.
        shear: maximum shear factor (uniform in ``[-s, s]``, x and y independently).
        padding_mode: ``zeros`` (black), ``border`` or ``reflection``.
        p: probability per image.
    """

    def __init__(
        self,
        degrees: tuple[float, float] = (0.0, 0.0),
        translate: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        shear: float = 0.0,
        padding_mode: PaddingMode = "zeros",
        p: float = 1.0,
    ) -> None:
        super().__init__(p)
        _check_range("degrees", *degrees)
        _check_range("scale", *scale, minimum=1e-3)
        if not 0.0 <= translate <= 1.0 or shear < 0:
            raise ValueError(f"translate must be in [0, 1] and shear >= 0, got {translate}, {shear}")
        self.degrees = tuple(degrees)
        self.translate = translate
        self.scale = tuple(scale)
        self.shear = shear
        self.padding_mode = padding_mode

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, (h, w) = len(x), x.shape[-2:]
        angle = _uniform(*self.degrees, n, generator)
        shift = _uniform(-self.translate, self.translate, 2 * n, generator).view(n, 2)
        shift = shift * torch.tensor([w, h], device=x.device)
        scale = _uniform(*self.scale, n, generator)
        shear = _uniform(-self.shear, self.shear, 2 * n, generator).view(n, 2) if self.shear else None
        return warp_affine(x, affine_matrix(angle, shift, scale, shear), self.padding_mode)


class RandomRotation(RandomAffine):
    """Rotate each image by an angle drawn uniformly from ``degrees``.

    Example config: ``{class_path: ssl_lightning.data.augment.RandomRotation, init_args: {degrees: [-15, 15]}}``

    Args:
        degrees: angle range in degrees, counter-clockwise positive.
        padding_mode: ``zeros``, ``border`` or ``reflection``.
        p: probability per image.
    """

    def __init__(
        self, degrees: tuple[float, float] = (-15.0, 15.0), padding_mode: PaddingMode = "zeros", p: float = 1.0
    ) -> None:
        super().__init__(degrees=degrees, padding_mode=padding_mode, p=p)


class RandomTranslation(RandomAffine):
    """Shift each image by up to ``fraction`` of its width/height (sub-pixel, bilinear).

    Example config: ``{class_path: ssl_lightning.data.augment.RandomTranslation, init_args: {fraction: 0.125}}``

    Args:
        fraction: maximum shift as a fraction of the size.
        padding_mode: ``zeros``, ``border`` or ``reflection``.
        p: probability per image.
    """

    def __init__(self, fraction: float = 0.125, padding_mode: PaddingMode = "zeros", p: float = 1.0) -> None:
        super().__init__(translate=fraction, padding_mode=padding_mode, p=p)


class PadCrop(BatchAugmentation):
    """Pad by ``padding`` pixels and crop back at a random integer offset per image (exact shift).

    The classic CIFAR augmentation (``RandomCrop(32, padding=4)``).

    Example config: ``{class_path: ssl_lightning.data.augment.PadCrop, init_args: {padding: 4}}``

    Args:
        padding: pixels added on every side.
        padding_mode: ``constant`` (zeros), ``reflect`` or ``replicate``.
        p: probability per image (others keep offset 0).
    """

    def __init__(
        self, padding: int = 4, padding_mode: Literal["constant", "reflect", "replicate"] = "constant", p: float = 1.0
    ) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        _check_probability(p)
        self.padding = padding
        self.padding_mode = padding_mode
        self.p = p

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        pad = self.padding
        if self.padding_mode == "reflect" and pad >= min(h, w):
            raise ValueError(f"reflect padding {pad} needs images larger than {pad}px, got {h}x{w}")
        padded = F.pad(x, [pad] * 4, mode=self.padding_mode)
        offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=generator.device)
        offsets = torch.where(_chosen(self.p, n, generator), offsets, pad)
        # every crop position as a strided view [B, C, 2p+1, 2p+1, H, W]; pick one per image (no copy before it)
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)
        return windows[torch.arange(n, device=x.device), :, offsets[0], offsets[1]]


class RandomResizedCrop(_PerSample):
    """Crop a random box (area fraction ``scale``, aspect ``ratio``) and resize it to the full size, or to ``size``.

    Shapes: ``float[B, C, H, W]`` -> ``float[B, C, H, W]`` (``size`` unset) or ``float[B, C, size, size]``
    (multi-crop's small local views, Caron et al. 2020).

    Example config: ``{class_path: ssl_lightning.data.augment.RandomResizedCrop, init_args: {scale: [0.5, 1.0]}}``

    Args:
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio (width / height), drawn log-uniformly.
        p: probability per image (must be 1 with ``size``: every output has the new size).
        size: output side in pixels; ``None`` keeps the input's height and width.
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        p: float = 1.0,
        size: int | None = None,
    ) -> None:
        super().__init__(p)
        _check_range("scale", *scale, minimum=1e-6)
        _check_range("ratio", *ratio, minimum=1e-6)
        if size is not None and (size < 1 or p < 1.0):
            raise ValueError(f"RandomResizedCrop size must be >= 1 and needs p = 1 (all resized), got {size}, {p}")
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.size = size

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        area = _uniform(*self.scale, n, generator)
        aspect = _log_uniform(*self.ratio, n, generator)
        # box size as fractions of width/height; clamped so the box fits (instead of torchvision's retries)
        box_w = torch.sqrt(area * aspect).clamp(max=1.0)
        box_h = torch.sqrt(area / aspect).clamp(max=1.0)
        centre_x = (1 - box_w) * (2 * torch.rand(n, generator=generator, device=generator.device) - 1)
        centre_y = (1 - box_h) * (2 * torch.rand(n, generator=generator, device=generator.device) - 1)
        zeros = torch.zeros_like(box_w)
        # output->input map in normalized coordinates directly: scale by the box, move to its centre
        theta = torch.stack(
            [torch.stack([box_w, zeros, centre_x], -1), torch.stack([zeros, box_h, centre_y], -1)], dim=1
        )
        shape = list(x.shape) if self.size is None else [n, x.shape[1], self.size, self.size]
        grid = F.affine_grid(theta, shape, align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
