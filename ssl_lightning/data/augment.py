"""Batched image augmentation on the training device, with per-sample random parameters.

Every op takes ``x: float[B, C, H, W]`` in ``[0, 1]`` (on any device) and a
``torch.Generator`` on that device, and returns a new ``float[B, C, H, W]``; each image draws
its own parameters (angle, offset, crop box, jitter factors, erased box, ...). DataModules run
the list given as ``augment:`` in ``on_after_batch_transfer`` (training only), with a generator
seeded from ``(seed, epoch, batch index)`` so a resumed run sees the same augmentations as an
uninterrupted one.

Why our own ``affine_grid``/``grid_sample`` code rather than a library:

* torchvision v2 transforms applied to a batched tensor draw **one** set of parameters for
  the whole batch (every image rotated by the same angle), so they would have to run per
  sample in DataLoader workers, which is the slow path this module replaces.
* kornia.augmentation does draw per sample, but from torch's global RNG, so exact
  reproduction after a resume needs global seeding, which library code must not do here; and
  it would be a heavy extra dependency for ~a dozen ops.
* The geometry is small: one ``2x3`` matrix per image in pixel coordinates, converted to
  ``affine_grid``'s normalized coordinates, then one ``grid_sample`` per op. The same code runs
  on CPU and GPU, and is tested against exact references (``torch.flip``, ``torch.rot90``).

Example config (CIFAR-10 style)::

    data:
      init_args:
        augment:
          - class_path: ssl_lightning.data.augment.HorizontalFlip
            init_args: {p: 0.5}
          - class_path: ssl_lightning.data.augment.PadCrop
            init_args: {padding: 4, padding_mode: reflect}
          - class_path: ssl_lightning.data.augment.ColorJitter
            init_args: {brightness: 0.2, contrast: 0.2, saturation: 0.2, p: 0.8}
          - class_path: ssl_lightning.data.augment.Cutout
            init_args: {size: 8, p: 0.5}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PaddingMode = Literal["zeros", "border", "reflection"]

# Rec. 601 luma weights (as PIL's convert("L") and torchvision's rgb_to_grayscale).
_LUMA = (0.299, 0.587, 0.114)


def augmentation_generator(seed: int, epoch: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` whose state depends only on ``(seed, epoch, step)``."""
    generator = torch.Generator(device=device)
    generator.manual_seed((seed * 1_000_003**2 + epoch * 1_000_003 + step) % (2**63 - 1))
    return generator


def _uniform(low: float, high: float, n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device) * (high - low) + low


def _chosen(p: float, n: int, generator: torch.Generator) -> Tensor:
    """bool[n]: which images an op with probability ``p`` applies to."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability p must be in [0, 1], got {p}")


def _check_range(name: str, low: float, high: float, minimum: float = -math.inf) -> None:
    if not minimum <= low <= high:
        raise ValueError(f"{name} must be a range (low, high) with {minimum} <= low <= high, got ({low}, {high})")


def grey(x: Tensor) -> Tensor:
    """float[B, C, H, W] -> float[B, 1, H, W] luma (identity for C=1)."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``other + factor * (x - other)`` per image, clamped to [0, 1] (PIL ImageEnhance semantics)."""
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp(0.0, 1.0)


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
    """Crop a random box (area fraction ``scale``, aspect ``ratio``) and resize it to the full size.

    Example config: ``{class_path: ssl_lightning.data.augment.RandomResizedCrop, init_args: {scale: [0.5, 1.0]}}``

    Args:
        scale: range of the box area as a fraction of the image area.
        ratio: range of the box aspect ratio (width / height), drawn log-uniformly.
        p: probability per image.
    """

    def __init__(
        self, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), p: float = 1.0
    ) -> None:
        super().__init__(p)
        _check_range("scale", *scale, minimum=1e-6)
        _check_range("ratio", *ratio, minimum=1e-6)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)

    def apply(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n = len(x)
        area = _uniform(*self.scale, n, generator)
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n, generator))
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
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


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
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), n, generator))
        size = torch.stack([torch.sqrt(area * aspect).clamp(max=w), torch.sqrt(area / aspect).clamp(max=h)], -1)
        limit = torch.tensor([w, h], device=x.device)
        centre = size / 2 + torch.rand(n, 2, generator=generator, device=generator.device) * (limit - size)
        mask = _box_mask(x, centre, size) & _chosen(self.p, n, generator).view(-1, 1, 1, 1)
        if self.value is None:
            fill = torch.rand(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        else:
            fill = torch.full_like(x, self.value)
        return torch.where(mask, fill, x)


# ---- RandAugment ---------------------------------------------------------------------------
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


# ---- ready-made pipelines --------------------------------------------------------------------
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
