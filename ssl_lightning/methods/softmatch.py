"""SoftMatch: FixMatch with soft truncated-Gaussian weights of the pseudo-labels (Chen et al. 2023)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.distributed import gather_rows
from ssl_lightning.methods.fixmatch import FixMatch


def truncated_gaussian_weights(confidence: Tensor, mu: Tensor, var: Tensor, n_sigma: float = 2.0) -> Tensor:
    """``exp(-min(conf - mu, 0)^2 / (2 var / n_sigma^2))``: 1 above the mean confidence (Chen et al. 2023, Eq. 7).

    Shapes: ``confidence: float[M]``, ``mu, var`` scalars -> ``float[M]`` in ``(0, 1]``.
    """
    return torch.exp(-(torch.clamp(confidence - mu, max=0.0) ** 2) / (2 * var / n_sigma**2))


def align_to_uniform(probs: Tensor, p_model: Tensor) -> Tensor:
    """Uniform distribution alignment: ``SumNorm(probs * (1/C) / p_model)`` per row (USB's ``DistAlignEMAHook``).

    Shapes: ``probs: float[M, C]``, ``p_model: float[C]`` -> ``float[M, C]``.
    """
    uniform = 1.0 / probs.shape[1]
    aligned = probs * (uniform + 1e-6) / (p_model + 1e-6)
    return aligned / aligned.sum(dim=1, keepdim=True)


class SoftMatch(FixMatch):
    """SoftMatch: every pseudo-label counts, weighted by its confidence against the mean (Chen et al. 2023).

    A sample's weight is 1 where its confidence is at least ``mu``, the EMA of the batches' mean
    max-confidence, and falls off as a Gaussian of variance ``var / n_sigma^2`` below it, ``var``
    the EMA of the confidences' (unbiased) variance (Eq. 7-8, :func:`truncated_gaussian_weights`;
    ``mu`` starts at ``1/C``, ``var`` at 1). With ``dist_align`` the confidences are those of the
    weak-view probabilities after uniform distribution alignment (Sec. 3.3,
    :func:`align_to_uniform`; ``p_model`` is the EMA of the batches' mean probabilities, set to the
    first batch's mean at the first step); the pseudo-labels stay the argmax of the unaligned
    probabilities, as in USB. Each step updates the EMAs with the batch first, then weights it.

    Under DDP the EMAs are updated from the probabilities of all ranks' samples, so the ranks keep
    equal state. ``mu``, ``var``, ``p_model`` and ``align_steps`` are buffers (in checkpoints).
    ``train/mask_rate`` is the mean weight; logs ``train/conf_mu`` and ``train/conf_var`` besides.

    Example config::

        model:
          class_path: ssl_lightning.methods.SoftMatch
          init_args:
            backbone: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 10}}
            momentum: 0.999
            n_sigma: 2.0

    Args:
        backbone: the network (timm contract).
        momentum: EMA momentum of ``mu``, ``var`` and ``p_model``.
        n_sigma: width of the Gaussian in standard deviations (the weight at ``mu - sqrt(var)`` is ``exp(-n^2/2)``).
        dist_align: uniform distribution alignment before weighting (USB's default).
        **fixmatch_args: :class:`~ssl_lightning.methods.fixmatch.FixMatch`'s arguments (``lambda_u``, the
            maximum weight ``lambda_max`` of the paper; its ``threshold`` is not used).
    """

    extra_stat_names = ("conf_mu", "conf_var")

    def __init__(
        self,
        backbone: nn.Module,
        *,
        momentum: float = 0.999,
        n_sigma: float = 2.0,
        dist_align: bool = True,
        **fixmatch_args: Any,
    ) -> None:
        super().__init__(backbone, **fixmatch_args)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if n_sigma <= 0:
            raise ValueError(f"n_sigma must be > 0, got {n_sigma}")
        self.momentum = momentum
        self.n_sigma = n_sigma
        self.dist_align = dist_align
        self.register_buffer("mu", torch.tensor(1.0 / self.num_classes))
        self.register_buffer("var", torch.tensor(1.0))
        self.register_buffer("p_model", torch.full((self.num_classes,), 1.0 / self.num_classes))
        self.register_buffer("align_steps", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def unlabelled_weights(self, probs_weak: Tensor, indices: Tensor | None) -> Tensor:
        dtype = probs_weak.dtype
        probs = gather_rows(probs_weak).to(self.p_model.dtype)  # the global batch
        m = self.momentum
        if self.dist_align:
            mean = probs.mean(dim=0)
            self.p_model.copy_(torch.where(self.align_steps == 0, mean, m * self.p_model + (1 - m) * mean))
            self.align_steps += 1
            probs, probs_weak = align_to_uniform(probs, self.p_model), align_to_uniform(probs_weak, self.p_model)
        confidence = probs.max(dim=1).values
        self.mu.mul_(m).add_((1 - m) * confidence.mean())
        if len(confidence) > 1:  # the unbiased variance of one sample is undefined
            self.var.mul_(m).add_((1 - m) * confidence.var(unbiased=True))
        weights = truncated_gaussian_weights(probs_weak.max(dim=1).values, self.mu, self.var, self.n_sigma)
        return weights.to(dtype)

    def weighting_stats(self) -> dict[str, Tensor]:
        return {"conf_mu": self.mu.clone(), "conf_var": self.var.clone()}
