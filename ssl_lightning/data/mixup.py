"""Batch-level mixing for training: mixup, CutMix and a per-batch switch between them, with soft targets.

Each transform takes ``x: float[B, C, H, W]``, ``y: long[B]`` (or already soft
``float[B, K]``), the number of classes ``K`` and a ``torch.Generator`` on the batch's device,
and returns ``(x_mixed: float[B, C, H, W], targets: float[B, K])`` whose rows sum to 1. Every
image is mixed with a partner from a random permutation of the batch, with its own mixing
weight. ``Classifier`` trains on the soft targets and measures accuracy against their argmax.

Example config (on any image DataModule)::

    data:
      init_args:
        mix: {class_path: ssl_lightning.data.mixup.MixUp, init_args: {alpha: 0.2}}
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def soft_targets(y: Tensor, num_classes: int) -> Tensor:
    """long[B] class indices (or float[B, K] soft targets) -> float[B, K]."""
    if y.is_floating_point():
        if y.ndim != 2 or y.shape[1] != num_classes:
            raise ValueError(f"soft targets must be float[B, {num_classes}], got {list(y.shape)}")
        return y
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {int(y.min())}..{int(y.max())}")
    return F.one_hot(y, num_classes).float()


def sample_beta(alpha: float, n: int, generator: torch.Generator) -> Tensor:
    """float[n] draws from Beta(alpha, alpha), on the generator's device, reproducible from it.

    torch's Beta/Gamma samplers take no generator, so one integer is drawn from ``generator``
    to seed NumPy's Beta sampler.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=n)
    return torch.from_numpy(draws).float().to(generator.device)


class BatchMix:
    """Base class: ``mix(x, y, num_classes, generator) -> (x: float[B, C, H, W], y: float[B, K])``."""

    def __init__(self, alpha: float = 1.0, p: float = 1.0) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        self.alpha = alpha
        self.p = p

    def _weights(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Per-image weight of the image itself (1 where not mixed) and the partner permutation."""
        lam = sample_beta(self.alpha, n, generator)
        skip = torch.rand(n, generator=generator, device=generator.device) >= self.p
        lam = torch.where(skip, torch.ones_like(lam), lam)
        perm = torch.randperm(n, generator=generator, device=generator.device)
        return lam, perm

    def __call__(self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, p={self.p})"


class MixUp(BatchMix):
    """mixup (Zhang et al. 2018): ``x = lam x_i + (1 - lam) x_j``, same for the one-hot targets.

    ``lam ~ Beta(alpha, alpha)`` per image; ``j`` is a random permutation of the batch.

    Example config: ``{class_path: ssl_lightning.data.mixup.MixUp, init_args: {alpha: 0.2}}``

    Args:
        alpha: Beta distribution parameter (small: mostly near-clean images).
        p: probability that an image is mixed at all.
    """

    def __call__(self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        targets = soft_targets(y, num_classes)
        lam, perm = self._weights(len(x), generator)
        lam = lam.to(x.dtype)
        mixed = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
        return mixed, lam.view(-1, 1) * targets + (1 - lam.view(-1, 1)) * targets[perm]


class CutMix(BatchMix):
    """CutMix (Yun et al. 2019): paste a box of a partner image; targets weighted by pasted area.

    The box has area fraction ``1 - lam`` (``lam ~ Beta(alpha, alpha)``) and a uniform centre,
    clipped at the border; the targets use the area actually pasted.

    Example config: ``{class_path: ssl_lightning.data.mixup.CutMix, init_args: {alpha: 1.0}}``

    Args:
        alpha: Beta distribution parameter.
        p: probability that an image is mixed at all.
    """

    def __call__(self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        targets = soft_targets(y, num_classes)
        n, (h, w) = len(x), x.shape[-2:]
        lam, perm = self._weights(n, generator)
        cut = torch.sqrt(1 - lam)
        centre = torch.rand(n, 2, generator=generator, device=generator.device)
        x0 = ((centre[:, 0] - cut / 2) * w).round().clamp(0, w)
        x1 = ((centre[:, 0] + cut / 2) * w).round().clamp(0, w)
        y0 = ((centre[:, 1] - cut / 2) * h).round().clamp(0, h)
        y1 = ((centre[:, 1] + cut / 2) * h).round().clamp(0, h)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        inside_x = (cols >= x0.view(-1, 1, 1)) & (cols < x1.view(-1, 1, 1))
        box = inside_x & (rows >= y0.view(-1, 1, 1)) & (rows < y1.view(-1, 1, 1))
        mixed = torch.where(box.unsqueeze(1), x[perm], x)
        kept = 1 - box.flatten(1).float().mean(dim=1)  # the area that stayed the image's own
        return mixed, kept.view(-1, 1) * targets + (1 - kept.view(-1, 1)) * targets[perm]


class MixUpOrCutMix(BatchMix):
    """Per batch, CutMix with probability ``switch_prob``, else mixup (as timm's Mixup).

    Example config::

        {class_path: ssl_lightning.data.mixup.MixUpOrCutMix,
         init_args: {mixup_alpha: 0.2, cutmix_alpha: 1.0, switch_prob: 0.5}}

    Args:
        mixup_alpha: mixup's Beta parameter.
        cutmix_alpha: CutMix's Beta parameter.
        switch_prob: probability of CutMix for a batch.
        p: probability that an image is mixed at all.
    """

    def __init__(
        self, mixup_alpha: float = 0.2, cutmix_alpha: float = 1.0, switch_prob: float = 0.5, p: float = 1.0
    ) -> None:
        super().__init__(mixup_alpha, p)
        self.mixup = MixUp(mixup_alpha, p)
        self.cutmix = CutMix(cutmix_alpha, p)
        self.switch_prob = switch_prob

    def __call__(self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        use_cutmix = torch.rand(1, generator=generator, device=generator.device).item() < self.switch_prob
        return (self.cutmix if use_cutmix else self.mixup)(x, y, num_classes, generator)

    def __repr__(self) -> str:
        return f"MixUpOrCutMix({self.mixup}, {self.cutmix}, switch_prob={self.switch_prob})"
