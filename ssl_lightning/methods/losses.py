"""Losses for learning from unlabelled data: NT-Xent (SimCLR) and confidence-masked pseudo-labels (FixMatch).

Pure functions (plus one thin ``nn.Module``) so they can be tested without Lightning.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _gather(z: Tensor) -> tuple[Tensor, int]:
    """All ranks' ``z`` concatenated (gradients flow back to every rank) and this rank's offset in it.

    The one place where NT-Xent talks to ``torch.distributed``; a no-op in a single process.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    from torch.distributed.nn.functional import all_gather  # differentiable, unlike dist.all_gather

    return torch.cat(all_gather(z)), dist.get_rank() * len(z)


def nt_xent(z0: Tensor, z1: Tensor, temperature: float = 0.5, gather_distributed: bool = False) -> Tensor:
    """Normalized temperature-scaled cross-entropy (Chen et al. 2020, Eq. 1), averaged over all 2N anchors.

    Row ``i`` of ``z0`` and of ``z1`` are two views of the same image (a positive pair); every
    other embedding in the batch (both views; with ``gather_distributed``, those of every
    rank too) is a negative. With cosine similarities ``s`` and ``t = temperature``, anchor
    ``z0[i]`` contributes ``-log(exp(s(z0[i], z1[i]) / t) / sum_{k != z0[i]} exp(s(z0[i], k) / t))``.

    Shapes: ``z0, z1: float[N, D]`` -> scalar.

    Example::

        >>> z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> round(nt_xent(z, z, temperature=1.0).item(), 4)  # log(1 + 2 e^-1)
        0.5514

    Args:
        z0: projections of the first views.
        z1: projections of the second views (same order).
        temperature: softmax temperature ``t``.
        gather_distributed: under DDP, use all ranks' embeddings as negatives (positives stay local).
    """
    if z0.shape != z1.shape or z0.ndim != 2:
        raise ValueError(
            f"nt_xent needs two float[N, D] tensors of the same shape, got {list(z0.shape)} and {list(z1.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z0, z1 = F.normalize(z0, dim=1), F.normalize(z1, dim=1)
    if gather_distributed:
        all0, offset = _gather(z0)
        all1, _ = _gather(z1)
    else:
        all0, all1, offset = z0, z1, 0
    n, total = len(z0), len(all0)
    positives = offset + torch.arange(n, device=z0.device)
    self_mask = F.one_hot(positives, total).bool()  # an anchor is not its own negative
    losses = []
    for anchor, same_view, other_view in ((z0, all0, all1), (z1, all1, all0)):
        to_other = anchor @ other_view.T / temperature  # column positives[i] is the positive
        to_same = (anchor @ same_view.T / temperature).masked_fill(self_mask, float("-inf"))
        losses.append(F.cross_entropy(torch.cat([to_other, to_same], dim=1), positives))
    return (losses[0] + losses[1]) / 2


class NTXentLoss(nn.Module):
    """NT-Xent as a module (the interface of lightly's ``NTXentLoss``, without a memory bank).

    Shapes: ``forward(z0: float[N, D], z1: float[N, D]) -> scalar``.

    Example::

        loss_fn = NTXentLoss(temperature=0.5)
        loss = loss_fn(projection(encoder(x1)), projection(encoder(x2)))

    Args:
        temperature: softmax temperature.
        gather_distributed: under DDP, negatives come from every rank's batch.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        return nt_xent(z0, z1, self.temperature, self.gather_distributed)


def pseudo_label_loss(target_logits: Tensor, logits: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Cross-entropy of ``logits`` against confident hard pseudo-labels from ``target_logits``.

    FixMatch (Sohn et al. 2020, Eq. 2): pseudo-labels are the argmax of the (detached) weak-view
    prediction, kept where its max probability is ``>= threshold``; the loss is averaged over
    *all* ``M`` unlabelled samples (masked ones count as 0). Pseudo-Label (Lee 2013) is the
    case ``logits is target_logits`` (the loss is on the same view).

    Shapes: ``target_logits, logits: float[M, K]`` -> ``(loss: scalar, mask: bool[M], pseudo_labels: long[M])``.

    Args:
        target_logits: logits that make the pseudo-labels (no gradient flows through them).
        logits: logits trained towards the pseudo-labels.
        threshold: confidence threshold ``tau`` in ``[0, 1]``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    probabilities = target_logits.detach().softmax(dim=1)
    confidence, pseudo_labels = probabilities.max(dim=1)
    mask = confidence >= threshold
    per_sample = F.cross_entropy(logits, pseudo_labels, reduction="none")
    return (per_sample * mask).mean(), mask, pseudo_labels
