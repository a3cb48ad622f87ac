"""Losses for learning from unlabelled data: NT-Xent (SimCLR, lightly's) and confidence-masked pseudo-labels
(FixMatch).

Pure functions, so they can be tested without Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch.nn.functional as F
from torch import Tensor


def lightly_module(name: str, method: str) -> Any:
    """Import ``name`` from lightly (the ``selfsup`` extra), or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"{method} uses lightly ({name}); install the self-supervised extra: pip install 'ssl_lightning[selfsup]'"
        ) from error


def nt_xent(z0: Tensor, z1: Tensor, temperature: float = 0.5, gather_distributed: bool = False) -> Tensor:
    """Normalized temperature-scaled cross-entropy (Chen et al. 2020, Eq. 1), averaged over all 2N anchors.

    Row ``i`` of ``z0`` and of ``z1`` are two views of the same image (a positive pair); every
    other embedding in the batch (both views; with ``gather_distributed``, those of every
    rank too) is a negative. With cosine similarities ``s`` and ``t = temperature``, anchor
    ``z0[i]`` contributes ``-log(exp(s(z0[i], z1[i]) / t) / sum_{k != z0[i]} exp(s(z0[i], k) / t))``.

    Computed by lightly's ``NTXentLoss`` (which also gathers the negatives across DDP ranks), after
    checking the shapes; it equals this project's former implementation within float rounding
    (``<= 5e-7`` on random batches of 3-256 pairs, gradients ``<= 5e-8``).

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
    loss = lightly_module("lightly.loss", "nt_xent").NTXentLoss(temperature, gather_distributed=gather_distributed)
    return loss(z0, z1)


def __getattr__(name: str) -> Any:
    """``NTXentLoss`` is lightly's (``lightly.loss.NTXentLoss``), imported when first asked for.

    Lazily, so that this module (FixMatch's losses) imports without the ``selfsup`` extra.
    """
    if name == "NTXentLoss":
        return lightly_module("lightly.loss", "NTXentLoss").NTXentLoss
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
