"""Per-episode adaptation on frozen features, each rule checked by hand on tiny 2-way episodes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.methods.episode_adaptation import (
    batched_prototypes,
    cosine_head_logits,
    fit_linear_head,
    logistic_regression_logits,
    simpleshot_logits,
    tim_logits,
)
from ssl_lightning.methods.functional import prototypes


def toy_episodes(tasks=3, shots=5, queries=7, dim=6, seed=0, ways=2):
    """T separable episodes: class c clusters around 6 on axis c (and -3 on axis 0 for class 0)."""
    g = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    query_y = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()

    def draw(labels):
        x = torch.randn(*labels.shape, dim, generator=g)
        x[..., 0] += 6 * (labels == 1) - 3 * (labels == 0)
        x[..., 2] += 6 * (labels == 2)
        return x

    return draw(support_y), support_y, draw(query_y), query_y


def test_batched_prototypes_match_the_per_episode_ones():
    support, support_y, _, _ = toy_episodes()
    batched = batched_prototypes(support, support_y, 2)
    for t in range(len(support)):
        assert torch.allclose(batched[t], prototypes(support[t], support_y[t], 2))


def test_simpleshot_centres_on_the_base_mean_before_normalising():
    support = torch.tensor([[[10.0, 1.0], [12.0, 0.0]]])
    support_y = torch.tensor([[0, 1]])
    query = torch.tensor([[[11.5, 1.2]]])
    base_mean = torch.tensor([10.0, 0.0])
    centred = simpleshot_logits(support, support_y, query, 2, base_mean)
    q = torch.tensor([1.5, 1.2]) / math.hypot(1.5, 1.2)  # by hand: centre, normalise, distance to the means
    expected = -torch.stack([(q - torch.tensor([0.0, 1.0])).norm(), (q - torch.tensor([1.0, 0.0])).norm()])
    assert torch.allclose(centred[0, 0], expected, atol=1e-6)
    assert centred.argmax(-1).item() == 1
    assert simpleshot_logits(support, support_y, query, 2, None).argmax(-1).item() == 0  # L2N alone: class 0


def test_cosine_head_is_scaled_cosine_times_the_class_gain():
    features = torch.tensor([[[3.0, 4.0]]])  # |f| = 5
    direction = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    gain = torch.tensor([[2.0, 0.5]])
    logits = cosine_head_logits(features, direction, gain, scale=2.0)
    assert torch.allclose(logits, torch.tensor([[[2.0 * 0.6 * 2.0, 2.0 * 0.8 * 0.5]]]))


@pytest.mark.parametrize("cosine", [False, True])
def test_baseline_heads_fit_the_support_set_and_are_seeded(cosine):
    support, support_y, query, query_y = toy_episodes()
    kwargs = {"cosine": cosine, "epochs": 20, "lr": 0.1}
    logits = fit_linear_head(support, support_y, query, 2, generator=torch.Generator().manual_seed(1), **kwargs)
    assert logits.shape == (3, 14, 2)
    assert (logits.argmax(-1) == query_y).float().mean() > 0.95
    again = fit_linear_head(support, support_y, query, 2, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(logits, again)


def test_logistic_regression_equals_scikit_learns():
    """3 ways: scikit-learn fits a binary problem with one weight vector, which RFS's 5-way episodes never are."""
    from sklearn.linear_model import LogisticRegression

    support, support_y, query, _ = toy_episodes(tasks=2, dim=4, ways=3)
    support, query = support.double() / 4, query.double()  # float64 like scikit-learn; /4: overlapping classes
    ours = logistic_regression_logits(support, support_y, query, 3, C=1.0).softmax(-1)
    for t in range(2):
        reference = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8)
        reference.fit(F.normalize(support[t], dim=-1).numpy(), support_y[t].numpy())
        theirs = torch.from_numpy(reference.predict_proba(F.normalize(query[t], dim=-1).numpy()))
        assert torch.allclose(ours[t], theirs, atol=1e-5)


def test_tim_starts_from_the_class_means_of_normalised_features():
    support, support_y, query, _ = toy_episodes(tasks=1)
    logits = tim_logits(support, support_y, query, 2, steps=0, temperature=15.0)
    s, q = F.normalize(support, dim=-1), F.normalize(query, dim=-1)
    w = batched_prototypes(s, support_y, 2)
    by_hand = -15.0 / 2 * torch.cdist(q, w).pow(2)
    assert torch.allclose(logits, by_hand, atol=1e-4)


INDUCTIVE = {
    "simpleshot": lambda s, y, q: simpleshot_logits(s, y, q, 2, torch.zeros(s.shape[-1])),
    "baseline": lambda s, y, q: fit_linear_head(s, y, q, 2, epochs=5, generator=torch.Generator().manual_seed(0)),
    "baseline++": lambda s, y, q: fit_linear_head(
        s, y, q, 2, cosine=True, epochs=5, generator=torch.Generator().manual_seed(0)
    ),
    "rfs": lambda s, y, q: logistic_regression_logits(s, y, q, 2),
}


@pytest.mark.parametrize("method", sorted(INDUCTIVE))
def test_inductive_methods_classify_each_query_on_its_own(method):
    support, support_y, query, _ = toy_episodes(tasks=1)
    permutation = torch.randperm(query.shape[1], generator=torch.Generator().manual_seed(3))
    logits = INDUCTIVE[method](support, support_y, query)
    permuted = INDUCTIVE[method](support, support_y, query[:, permutation])
    assert torch.allclose(permuted, logits[:, permutation], atol=1e-5)
    others = query.clone()
    others[:, 1:] = torch.randn_like(others[:, 1:]) * 5  # other queries replaced: query 0 keeps its logits
    assert torch.allclose(INDUCTIVE[method](support, support_y, others)[:, 0], logits[:, 0], atol=1e-5)


def test_tim_is_transductive_it_reads_the_other_queries():
    support, support_y, query, _ = toy_episodes(tasks=1)
    logits = tim_logits(support, support_y, query, 2, steps=50, lr=1e-2)
    others = query.clone()
    others[:, 1:] = torch.randn_like(others[:, 1:]) * 5
    assert not torch.allclose(tim_logits(support, support_y, others, 2, steps=50, lr=1e-2)[:, 0], logits[:, 0])
    permutation = torch.randperm(query.shape[1], generator=torch.Generator().manual_seed(3))
    permuted = tim_logits(support, support_y, query[:, permutation], 2, steps=50, lr=1e-2)
    assert torch.allclose(permuted, logits[:, permutation], atol=1e-4)  # still equivariant to the query order
