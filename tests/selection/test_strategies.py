"""Selection strategies: exact budgets, determinism, and the behaviour each paper promises."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ssl_lightning.selection.strategies import STRATEGIES, kcenter_selection, select, typicality, typiclust_selection


def pool(n: int = 120, d: int = 6, classes: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    embeddings = rng.normal(size=(n, d)) + 3 * np.eye(classes, d)[labels]
    probs = rng.dirichlet(np.ones(classes), n)
    return {"embeddings": embeddings, "probs": probs, "labels": labels}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("labelled", [(), (0, 5, 17, 99)])
def test_exact_budget_of_new_distinct_indices_deterministic_per_seed(strategy, labelled):
    inputs = pool()
    picked = select(strategy, 13, labelled=labelled, seed=3, **inputs)
    assert picked.dtype == np.int64 and len(picked) == 13
    assert len(set(picked.tolist())) == 13
    assert all(0 <= i < 120 for i in picked)
    assert not set(picked.tolist()) & set(labelled)
    np.testing.assert_array_equal(picked, select(strategy, 13, labelled=labelled, seed=3, **inputs))


def test_seeds_change_random_choices():
    inputs = pool()
    assert set(select("random", 10, seed=0, **inputs)) != set(select("random", 10, seed=1, **inputs))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_whole_pool_budget_and_too_large_budget(strategy):
    inputs = pool(n=30)
    rest = [i for i in range(30) if i not in (1, 2, 3, 4)]
    assert sorted(select(strategy, 26, labelled=(1, 2, 3, 4), **inputs)) == rest
    with pytest.raises(ValueError, match="exceeds the 26 unlabelled"):
        select(strategy, 27, labelled=(1, 2, 3, 4), **inputs)


def test_missing_inputs_and_unknown_strategy_are_named():
    with pytest.raises(ValueError, match="needs probs"):
        select("entropy", 3, embeddings=np.zeros((10, 2)))
    with pytest.raises(ValueError, match="needs labels"):
        select("balanced_random", 3, embeddings=np.zeros((10, 2)))
    with pytest.raises(ValueError, match="unknown strategy 'typical'"):
        select("typical", 3, embeddings=np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        select("random", 3, num_items=10, labelled=[12])


def test_balanced_random_is_balanced_counting_labelled_items():
    labels = np.repeat(np.arange(5), 20)
    picked = select("balanced_random", 12, labels=labels, labelled=[0, 1, 20], seed=0)
    counts = np.bincount(labels[np.concatenate([picked, [0, 1, 20]])], minlength=5)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 15


def blobs(seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Three far-apart blobs; each has a dense core on a line (step 0.01) and 19 scattered points.

    The core's middle point has the smallest mean distance to its 20 nearest neighbours (all in
    the core), so it is the most typical point of its blob. Returns (points, middle indices).
    """
    rng = np.random.default_rng(seed)
    points, middles = [], []
    for b, centre in enumerate([(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)]):
        core = np.array(centre) + np.outer(np.arange(-10, 11) * 0.01, [1.0, 0.0])
        angles = rng.uniform(0, 2 * np.pi, 19)
        scattered = np.array(centre) + np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(3, 8, (19, 1))
        middles.append(b * 40 + 10)
        points += [core, scattered]
    return np.concatenate(points), middles


def test_typicality_is_highest_at_the_middle_of_the_dense_core():
    points, middles = blobs()
    scores = typicality(points[:40], 20)
    assert int(np.argmax(scores)) == middles[0]


def test_typiclust_picks_the_densest_point_of_each_cluster():
    points, middles = blobs()
    order = np.random.default_rng(1).permutation(len(points))  # the pool order must not matter
    picked = typiclust_selection(points[order], 3, seed=0)
    assert sorted(order[picked].tolist()) == sorted(middles)


def test_typiclust_skips_clusters_that_are_already_covered():
    points, middles = blobs()
    picked = typiclust_selection(points, 2, labelled=[middles[1] + 3], seed=0)
    assert sorted(picked.tolist()) == [middles[0], middles[2]]


def coverage_radius(points: np.ndarray, centres: list[int]) -> float:
    d = np.linalg.norm(points[:, None] - points[centres][None], axis=2)
    return float(d.min(axis=1).max())


def test_kcenter_is_farthest_first_and_within_twice_the_optimal_cover():
    line = np.arange(11, dtype=float)[:, None]
    assert kcenter_selection(line, 2, labelled=[0]).tolist() == [10, 5]

    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 5]], dtype=float)
    points = np.concatenate([c + rng.normal(0, 0.3, (8, 2)) for c in corners])
    picked = kcenter_selection(points, 5, seed=0).tolist()
    optimal = min(coverage_radius(points, list(c)) for c in itertools.combinations(range(0, 40, 2), 5))
    assert {int(i) // 8 for i in picked} == set(range(5))  # one centre in every group
    assert coverage_radius(points, picked) <= 2 * optimal
    randoms = [select("random", 5, num_items=40, seed=s).tolist() for s in range(20)]
    random_radius = np.mean([coverage_radius(points, r) for r in randoms])
    assert coverage_radius(points, picked) < random_radius


def test_uncertainty_strategies_pick_the_most_uncertain_rows():
    probs = np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.5, 0.45, 0.05], [0.9, 0.05, 0.05], [0.6, 0.2, 0.2]])
    assert select("entropy", 1, probs=probs).tolist() == [1]
    assert select("margin", 2, probs=probs).tolist() == [1, 2]  # margins 0.01, 0.05
    # entropy prefers the flat tail of row 4 (0.95 nats) over the near-tie of row 2 (0.86 nats)
    assert select("entropy", 2, probs=probs, labelled=[1]).tolist() == [4, 2]
