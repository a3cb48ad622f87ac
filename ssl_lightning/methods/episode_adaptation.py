"""Per-episode adaptation on frozen features: the "adapt" half of pretrain-then-adapt few-shot methods.

Pure functions, batched over ``T`` episodes where the method allows it, testable without Lightning.
Shapes: ``N`` ways, ``K`` support and ``Q`` query examples per class, ``D`` feature dimensions::

    support: float[T, N*K, D]   support_y: long[T, N*K] in 0..N-1   query: float[T, N*Q, D]

Every function returns query logits ``float[T, N*Q, N]``. Only :func:`tim_logits` reads the query
features while fitting (it is transductive); the others treat each query on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def batched_prototypes(support: Tensor, support_y: Tensor, n_way: int) -> Tensor:
    """Class means per episode: float[T, N*K, D], long[T, N*K] -> float[T, N, D] (Snell et al. 2017, Eq. 1)."""
    one_hot = F.one_hot(support_y, n_way).to(support.dtype)  # [T, NK, N]
    counts = one_hot.sum(1).clamp_min(1)  # [T, N]
    return one_hot.transpose(1, 2) @ support / counts.unsqueeze(-1)


def centre_and_normalise(features: Tensor, base_mean: Tensor | None) -> Tensor:
    """SimpleShot's CL2N (Wang et al. 2019): subtract the base classes' mean feature, then L2-normalise."""
    if base_mean is not None:
        features = features - base_mean
    return F.normalize(features, dim=-1)


def nearest_centroid_logits(support: Tensor, support_y: Tensor, query: Tensor, n_way: int) -> Tensor:
    """Negative euclidean distances of each query to each class mean: SimpleShot's classifier."""
    centres = batched_prototypes(support, support_y, n_way)
    return -torch.cdist(query, centres)


def simpleshot_logits(
    support: Tensor, support_y: Tensor, query: Tensor, n_way: int, base_mean: Tensor | None = None
) -> Tensor:
    """SimpleShot (Wang et al. 2019): nearest centroid on centred, L2-normalised features.

    Args:
        base_mean: float[D], the mean feature of the base (training) classes; ``None`` is the "L2N" variant.
    """
    support, query = centre_and_normalise(support, base_mean), centre_and_normalise(query, base_mean)
    return nearest_centroid_logits(support, support_y, query, n_way)


def cosine_head_logits(features: Tensor, direction: Tensor, gain: Tensor, scale: float) -> Tensor:
    """Baseline++'s cosine classifier (Chen et al. 2019): ``scale * cos(f, v_c) * g_c``.

    ``direction`` float[T, N, D] and ``gain`` float[T, N] are the weight-normalised class weights
    ``w_c = g_c v_c / |v_c|`` of Chen et al.'s ``distLinear`` (``torch.nn.utils.weight_norm``).
    """
    weights = F.normalize(direction, dim=-1) * gain.unsqueeze(-1)
    return scale * F.normalize(features, dim=-1) @ weights.transpose(1, 2)


def fit_linear_head(
    support: Tensor,
    support_y: Tensor,
    query: Tensor,
    n_way: int,
    cosine: bool = False,
    scale: float = 2.0,
    epochs: int = 100,
    batch_size: int = 4,
    lr: float = 0.01,
    weight_decay: float = 0.001,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Baseline / Baseline++ adaptation (Chen et al. 2019, ``baselinefinetune.py``): a new head trained on the
    support features, backbone frozen, by SGD (momentum 0.9, dampening 0.9) in mini-batches of
    ``batch_size`` for ``epochs`` passes over the support set.

    The ``T`` episodes train side by side (one head each, one shared order of support items). ``cosine``
    picks Baseline++'s cosine head (``scale`` 2, the paper's for <= 200 classes) over Baseline's linear one.
    """
    tasks, shots, dim = support.shape
    support = support.detach()
    like = {"device": support.device, "dtype": support.dtype}
    with torch.enable_grad():
        # Drawn on the CPU (where ``generator`` lives) and moved: the same heads on every device.
        if cosine:
            direction = (torch.randn(tasks, n_way, dim, generator=generator) / dim**0.5).to(**like).requires_grad_()
            gain = direction.detach().norm(dim=-1).requires_grad_()
            params = [direction, gain]
        else:
            bound = 1 / dim**0.5  # nn.Linear's initialisation
            weight = torch.empty(tasks, n_way, dim).uniform_(-bound, bound, generator=generator)
            bias = torch.empty(tasks, n_way).uniform_(-bound, bound, generator=generator)
            params = [weight.to(**like).requires_grad_(), bias.to(**like).requires_grad_()]

        def logits_of(features: Tensor) -> Tensor:
            if cosine:
                return cosine_head_logits(features, params[0], params[1], scale)
            return features @ params[0].transpose(1, 2) + params[1].unsqueeze(1)

        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, dampening=0.9, weight_decay=weight_decay)
        for _ in range(epochs):
            order = torch.randperm(shots, generator=generator).to(support.device)
            for start in range(0, shots, batch_size):
                index = order[start : start + batch_size]
                loss = F.cross_entropy(logits_of(support[:, index]).flatten(0, 1), support_y[:, index].flatten())
                optimizer.zero_grad()
                (loss * tasks).backward()  # each episode's own mean loss (the episodes are independent)
                optimizer.step()
        return logits_of(query.detach()).detach()


def logistic_regression_logits(
    support: Tensor, support_y: Tensor, query: Tensor, n_way: int, C: float = 1.0, max_iter: int = 100
) -> Tensor:
    """RFS's classifier (Tian et al. 2020): multinomial logistic regression on L2-normalised features.

    Solves scikit-learn's ``LogisticRegression(C=C)`` objective, ``C * sum_i CE_i + |W|^2 / 2`` (bias not
    penalised), for all ``T`` episodes at once with L-BFGS in torch: the episodes' objectives are
    independent, so minimising their sum minimises each.
    """
    support, query = F.normalize(support.detach(), dim=-1), F.normalize(query.detach(), dim=-1)
    tasks, _, dim = support.shape
    with torch.enable_grad():
        weight = torch.zeros(tasks, n_way, dim, device=support.device, dtype=support.dtype, requires_grad=True)
        bias = torch.zeros(tasks, n_way, device=support.device, dtype=support.dtype, requires_grad=True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            max_iter=max_iter,
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            optimizer.zero_grad()
            logits = support @ weight.transpose(1, 2) + bias.unsqueeze(1)
            loss = C * F.cross_entropy(logits.flatten(0, 1), support_y.flatten(), reduction="sum")
            loss = loss + 0.5 * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
    return (query @ weight.transpose(1, 2) + bias.unsqueeze(1)).detach()


def tim_logits(
    support: Tensor,
    support_y: Tensor,
    query: Tensor,
    n_way: int,
    steps: int = 1000,
    lr: float = 1e-4,
    temperature: float = 15.0,
    cross_entropy_weight: float = 0.1,
    marginal_entropy_weight: float = 1.0,
    conditional_entropy_weight: float = 0.1,
) -> Tensor:
    """TIM-GD (Boudiaf et al. 2020), **transductive**: class weights that fit the support set and maximise
    the mutual information between the queries and their predicted labels.

    On L2-normalised features, weights start at the class means and follow Adam on
    ``lambda * CE(support) - (H(mean query prediction) - alpha * mean H(query prediction))``
    with logits ``temperature * (f.w - |w|^2 / 2 - |f|^2 / 2)``. Defaults are the paper's TIM-GD
    (lambda 0.1, alpha 0.1, T 15, Adam 1e-4 for 1,000 steps).
    """
    support, query = F.normalize(support.detach(), dim=-1), F.normalize(query.detach(), dim=-1)

    def logits_of(features: Tensor, weights: Tensor) -> Tensor:
        return temperature * (
            features @ weights.transpose(1, 2)
            - 0.5 * weights.pow(2).sum(-1).unsqueeze(1)
            - 0.5 * features.pow(2).sum(-1, keepdim=True)
        )

    with torch.enable_grad():
        weights = batched_prototypes(support, support_y, n_way).clone().requires_grad_()
        optimizer = torch.optim.Adam([weights], lr=lr)
        for _ in range(steps):
            cross_entropy = F.cross_entropy(logits_of(support, weights).flatten(0, 1), support_y.flatten())
            probs = logits_of(query, weights).softmax(-1)  # [T, M, N]
            conditional = -(probs * torch.log(probs + 1e-12)).sum(-1).mean(-1)  # [T]
            marginal = probs.mean(1)
            marginal_entropy = -(marginal * torch.log(marginal + 1e-12)).sum(-1)  # [T]
            information = marginal_entropy_weight * marginal_entropy - conditional_entropy_weight * conditional
            loss = support.shape[0] * cross_entropy_weight * cross_entropy - information.sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return logits_of(query, weights).detach()
