"""FreeMatch: FixMatch with self-adaptive thresholds and a fairness loss (Wang et al. 2023)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ssl_lightning.methods.distributed import gather_rows
from ssl_lightning.methods.fixmatch import FixMatch


def self_adaptive_thresholds(tau: Tensor, p_model: Tensor) -> Tensor:
    """Class thresholds ``MaxNorm(p_model) * tau`` (Wang et al. 2023, Eq. 6-8): ``float[C]``."""
    return p_model / p_model.max() * tau


def fairness_loss(logits: Tensor, mask: Tensor, p_model: Tensor, label_hist: Tensor) -> Tensor:
    """FreeMatch's self-adaptive fairness loss (Wang et al. 2023, Eq. 11), as USB's ``entropy_loss``.

    ``sum_c SumNorm(p_model / label_hist)_c * log SumNorm(mean_probs / hist)_c`` over the masked
    samples' strong-view predictions: ``mean_probs`` their mean probability vector and ``hist``
    the histogram of their argmax (classes nobody predicts get scale 0, as in USB). Minimising
    this negative cross-entropy against the model's own class distribution spreads the
    predictions over the classes. The gradient flows through ``logits`` only.

    Shapes: ``logits: float[M, C]``, ``mask: bool[M]`` (at least one true), ``p_model, label_hist:
    float[C]`` -> scalar.
    """
    probs = logits[mask].softmax(dim=1)
    hist = torch.bincount(probs.argmax(dim=1), minlength=logits.shape[1]).to(probs.dtype)
    hist = hist / hist.sum()
    target = p_model * torch.nan_to_num(1.0 / label_hist, posinf=0.0)
    target = target / target.sum()
    mean = probs.mean(dim=0) * torch.nan_to_num(1.0 / hist, posinf=0.0)
    mean = mean / mean.sum()
    return (target * torch.log(mean + 1e-12)).sum()


class FreeMatch(FixMatch):
    """FreeMatch: confidence thresholds that follow the model's own learning status (Wang et al. 2023).

    Self-adaptive thresholding (Sec. 3.2): a global threshold ``tau`` is the EMA of the mean
    max-confidence of the unlabelled batches (Eq. 5) and ``p_model`` the EMA of their mean
    probability vector (Eq. 7); class ``c``'s threshold is ``MaxNorm(p_model)_c * tau`` (Eq. 8,
    :func:`self_adaptive_thresholds`) and a sample counts where its confidence is ``>=`` the
    threshold of its argmax class. Each step first updates the EMAs with the batch, then weights
    it, as USB's ``FreeMatchThresholingHook``. Both start at ``1/C`` as in the paper (USB starts
    them at 1, i.e. from a high threshold). The self-adaptive fairness loss
    (:func:`fairness_loss`, weight ``lambda_f``; Eq. 11) is added to the loss on the masked
    strong-view predictions, using ``label_hist``, the EMA of the batches' argmax histogram.

    Under DDP the EMAs are updated from the probabilities of all ranks' samples, so the ranks keep
    equal state. ``tau``, ``p_model`` and ``label_hist`` are buffers (in checkpoints). Logs
    ``train/tau``, ``train/threshold`` (the mean class threshold) and ``train/loss_fair`` (the
    weighted term) besides FixMatch's metrics.

    Example config::

        model:
          class_path: ssl_lightning.methods.FreeMatch
          init_args:
            backbone: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 10}}
            momentum: 0.999
            lambda_f: 0.01

    Args:
        backbone: the network (timm contract).
        momentum: EMA momentum ``lambda`` of ``tau``, ``p_model`` and ``label_hist``.
        lambda_f: weight of the fairness loss (USB's ``ent_loss_ratio``, 0.01; 0 turns it off).
        **fixmatch_args: :class:`~ssl_lightning.methods.fixmatch.FixMatch`'s arguments (``lambda_u``, ...;
            its ``threshold`` is not used: the thresholds adapt).
    """

    extra_stat_names = ("tau", "threshold", "loss_fair")

    def __init__(self, backbone: nn.Module, *, momentum: float = 0.999, lambda_f: float = 0.01, **fixmatch_args: Any):
        super().__init__(backbone, **fixmatch_args)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if lambda_f < 0:
            raise ValueError(f"lambda_f must be >= 0, got {lambda_f}")
        self.momentum = momentum
        self.lambda_f = lambda_f
        uniform = torch.full((self.num_classes,), 1.0 / self.num_classes)
        self.register_buffer("tau", torch.tensor(1.0 / self.num_classes))
        self.register_buffer("p_model", uniform.clone())
        self.register_buffer("label_hist", uniform.clone())

    def class_thresholds(self) -> Tensor:
        return self_adaptive_thresholds(self.tau, self.p_model)

    @torch.no_grad()
    def unlabelled_weights(self, probs_weak: Tensor, indices: Tensor | None) -> Tensor:
        probs = gather_rows(probs_weak).to(self.p_model.dtype)  # the global batch
        confidence, classes = probs.max(dim=1)
        hist = torch.bincount(classes, minlength=self.num_classes).to(probs.dtype) / len(classes)
        m = self.momentum
        self.tau.mul_(m).add_((1 - m) * confidence.mean())
        self.p_model.mul_(m).add_((1 - m) * probs.mean(dim=0))
        self.label_hist.mul_(m).add_((1 - m) * hist)
        confidence, classes = probs_weak.max(dim=1)
        return (confidence >= self.class_thresholds()[classes]).to(probs_weak.dtype)

    def extra_unlabelled_losses(self, logits: list[Tensor], weights: Tensor) -> dict[str, Tensor]:
        mask = weights > 0
        if self.lambda_f == 0 or not mask.any():
            return {"loss_fair": weights.new_zeros(())}
        strong = logits[-1]
        return {"loss_fair": self.lambda_f * fairness_loss(strong, mask, self.p_model, self.label_hist)}

    def weighting_stats(self) -> dict[str, Tensor]:
        return {"tau": self.tau.clone(), "threshold": self.class_thresholds().mean()}
