"""The math of the few-shot methods as pure functions, testable without Lightning.

Shapes use ``N`` classes (ways), ``K`` support examples per class, ``M`` query examples in
total and ``D`` feature dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["squared_euclidean", "euclidean", "cosine"]


def prototypes(support_features: Tensor, support_labels: Tensor, n_way: int) -> Tensor:
    """Class means of the support embeddings (Snell et al. 2017, Eq. 1).

    Args:
        support_features: float[N*K, D].
        support_labels: long[N*K] in ``0..n_way-1``.
        n_way: number of classes N.

    Returns:
        float[N, D]; row ``c`` is the mean of the features labelled ``c``.
    """
    counts = torch.bincount(support_labels, minlength=n_way)
    if len(counts) > n_way or bool((counts == 0).any()):
        raise ValueError(
            f"support labels must cover every class 0..{n_way - 1} (got counts {counts.tolist()}); "
            f"check that the episodes are remapped to 0..n_way-1."
        )
    sums = torch.zeros(n_way, support_features.shape[1], dtype=support_features.dtype, device=support_features.device)
    sums.index_add_(0, support_labels, support_features)
    return sums / counts.unsqueeze(1).to(support_features.dtype)


def squared_euclidean_logits(queries: Tensor, centres: Tensor) -> Tensor:
    """Negative squared euclidean distances, the logits of Snell et al. 2017, Eq. 2.

    Args:
        queries: float[M, D].
        centres: float[N, D].

    Returns:
        float[M, N] with entry ``-||q_m - c_n||^2``.
    """
    # Expanded form (|q|^2 - 2 q.c + |c|^2) is one matmul; clamp guards the rounding below 0.
    sq = (queries.pow(2).sum(1, keepdim=True) - 2 * queries @ centres.T + centres.pow(2).sum(1)).clamp_min(0)
    return -sq


def cosine_logits(queries: Tensor, centres: Tensor, scale: float = 10.0) -> Tensor:
    """Scaled cosine similarities (Gidaris & Komodakis 2018; Chen et al. 2019).

    Args:
        queries: float[M, D].
        centres: float[N, D].
        scale: temperature; plain cosine in ``[-1, 1]`` is too flat for a softmax.

    Returns:
        float[M, N] with entry ``scale * cos(q_m, c_n)``.
    """
    return scale * F.normalize(queries, dim=1) @ F.normalize(centres, dim=1).T


def distance_logits(queries: Tensor, centres: Tensor, distance: Distance = "squared_euclidean") -> Tensor:
    """Dispatch to one of the logits above; ``"euclidean"`` is the (unsquared) distance."""
    if distance == "squared_euclidean":
        return squared_euclidean_logits(queries, centres)
    if distance == "euclidean":
        return -torch.cdist(queries, centres)
    if distance == "cosine":
        return cosine_logits(queries, centres)
    raise ValueError(f"unknown distance {distance!r}; use 'squared_euclidean', 'euclidean' or 'cosine'")


def sgd_update(
    params: Mapping[str, Tensor],
    grads: Mapping[str, Tensor | None],
    lr: float | Mapping[str, Tensor],
    first_order: bool = False,
) -> dict[str, Tensor]:
    """``theta' = theta - alpha * g`` for every parameter (``g = None``: parameter unchanged).

    Finn et al. 2017, Eq. 1 (MAML) with a scalar ``alpha``; Li et al. 2017, Eq. 2 (Meta-SGD)
    with a tensor ``alpha`` per parameter, multiplied elementwise. With ``first_order`` the
    gradient is treated as a constant (FOMAML, Finn et al. 2017, Sec. 5.2).
    """
    updated = {}
    for name, param in params.items():
        grad = grads.get(name)
        if grad is None:  # parameter not used by the loss (e.g. a frozen branch): unchanged
            updated[name] = param
            continue
        step = lr if isinstance(lr, float | int) else lr[name]
        updated[name] = param - step * (grad.detach() if first_order else grad)
    return updated


def sgd_step(
    params: Mapping[str, Tensor],
    loss: Tensor,
    lr: float | Mapping[str, Tensor],
    first_order: bool = False,
) -> dict[str, Tensor]:
    """One differentiable inner-loop step ``theta' = theta - alpha * grad L(theta)`` (see :func:`sgd_update`).

    Args:
        params: the current (fast) parameters, ``name -> tensor``; they must be in ``loss``'s graph.
        loss: scalar support loss computed with ``params``.
        lr: one step size for all, or ``name -> tensor`` broadcastable to each parameter.
        first_order: drop the second-order terms (FOMAML, Finn et al. 2017, Sec. 5.2): the
            gradient is treated as a constant, so the outer gradient flows only through
            ``theta`` (and through ``alpha``).

    Returns:
        The updated parameters, still attached to the graph of ``params`` (and of ``lr``).
    """
    names = list(params)
    # create_graph keeps the Hessian-vector terms of the meta-gradient (second order).
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=not first_order, allow_unused=True)
    return sgd_update(params, dict(zip(names, grads, strict=True)), lr, first_order)


def inner_loop(
    loss_fn: Callable[[Mapping[str, Tensor]], Tensor],
    params: Mapping[str, Tensor],
    steps: int,
    lr: float | Mapping[str, Tensor],
    first_order: bool = False,
    traceable: bool = False,
) -> dict[str, Tensor]:
    """Adapt ``params`` with ``steps`` gradient steps on ``loss_fn`` (Finn et al. 2017, Alg. 2, lines 6-8).

    Args:
        loss_fn: maps parameters to the scalar support loss (e.g. via ``torch.func.functional_call``).
        params: the initial parameters ``theta``; not modified.
        steps: number of inner steps (0 returns ``params`` unchanged).
        lr: see :func:`sgd_step`.
        first_order: see :func:`sgd_step`.
        traceable: take the inner gradients with ``torch.func.grad`` instead of
            ``torch.autograd.grad``. Same numbers; slower in eager mode (about 1.2x per MAML
            meta-step on CPU), but ``torch.compile`` traces it, inner and outer backward
            included, into one graph (``torch.autograd.grad`` breaks the graph, and compiled
            graphs cannot be differentiated twice).

    Returns:
        The adapted parameters ``theta'``, differentiable with respect to ``params``.
    """
    if steps < 0:
        raise ValueError(f"inner steps must be >= 0, got {steps}")
    fast = dict(params)
    for _ in range(steps):
        if not traceable:
            fast = sgd_step(fast, loss_fn(fast), lr, first_order)
            continue
        # First order: the gradient at detached weights is a constant for the outer loop, and
        # computing it builds no graph for the meta-gradient to traverse.
        at = {name: p.detach() for name, p in fast.items()} if first_order else fast
        fast = sgd_update(fast, torch.func.grad(loss_fn)(at), lr, first_order)
    return fast


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of ``argmax(logits) == labels``: float scalar."""
    return (logits.argmax(dim=-1) == labels).float().mean()


def confidence_interval(values: Tensor, confidence: float = 0.95) -> tuple[Tensor, Tensor]:
    """Mean and half-width of the normal confidence interval of the mean, over episodes.

    The few-shot literature reports ``mean +- 1.96 * std / sqrt(n)`` over its evaluation
    episodes (e.g. 600 in Finn et al. 2017); ``std`` is the sample standard deviation.

    Args:
        values: float[E], one value (accuracy) per episode.
        confidence: coverage of the interval (0.95 gives the factor 1.96).

    Returns:
        ``(mean, half_width)``; the half-width is NaN for fewer than 2 episodes.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = values.double().flatten()
    if len(values) == 0:
        raise ValueError("confidence_interval needs at least one value, got none")
    mean = values.mean()
    if len(values) < 2:
        return mean, torch.tensor(math.nan, dtype=values.dtype, device=values.device)
    z = math.sqrt(2.0) * torch.special.erfinv(torch.tensor(confidence, dtype=torch.float64)).item()
    return mean, z * values.std(unbiased=True) / math.sqrt(len(values))
