"""Which examples to label: selection strategies as pure functions over a pool.

Every strategy takes the pool (embeddings ``float[N, D]``, predicted probabilities
``float[N, C]`` or, for the oracle baseline, labels ``long[N]``), the indices that are
already labelled and a total ``budget``, and returns exactly ``budget`` distinct, new pool
indices (``int64[budget]``, in the order they were picked). The same inputs and ``seed``
always give the same indices. Budgets are class-agnostic: a budget is a total number of
labels, never a number per class.

========================  ==================================================================
``random``                uniform over the unlabelled pool
``balanced_random``       the same number of labels per class: needs the true labels, so it is
                          an *oracle* baseline that no real annotation campaign can run
``kmeans``                k-means into ``budget`` clusters, the point closest to each centroid
``typiclust``             the most typical point of the largest uncovered clusters
                          (Hacohen et al. 2022, "Active learning on a budget")
``kcenter``               greedy core-set / k-center (Sener & Savarese 2018)
``entropy``, ``margin``   the model's most uncertain predictions (for rounds after the first)
========================  ==================================================================

At very small budgets the representative strategies (``typiclust``, ``kmeans``) beat random
by a wide margin, while uncertainty and core-set selection are no better than random there
(Hacohen et al. 2022, Fig. 1); uncertainty pays off once the model is decent.

Example::

    from ssl_lightning.selection.strategies import select
    picked = select("typiclust", budget=40, embeddings=features, seed=0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

EMBEDDING_STRATEGIES = ("kmeans", "typiclust", "kcenter")
UNCERTAINTY_STRATEGIES = ("entropy", "margin")
STRATEGIES = ("random", "balanced_random", *EMBEDDING_STRATEGIES, *UNCERTAINTY_STRATEGIES)

# Rows of the pairwise-distance blocks: bounds memory at CHUNK x N floats (N = 50k: 400 MB).
CHUNK = 2048


# ---- helpers -------------------------------------------------------------------------------
def _unlabelled(num_items: int, budget: int, labelled: Sequence[int] | np.ndarray) -> np.ndarray:
    """Boolean mask of the unlabelled pool, after checking that ``budget`` fits in it."""
    labelled = np.asarray(labelled, dtype=np.int64).reshape(-1)
    if len(labelled) and (labelled.min() < 0 or labelled.max() >= num_items):
        raise ValueError(
            f"labelled indices must lie in [0, {num_items}), got {labelled.min()}..{labelled.max()}. "
            f"Were they made for another pool?"
        )
    mask = np.ones(num_items, dtype=bool)
    mask[labelled] = False
    available = int(mask.sum())
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if budget > available:
        raise ValueError(
            f"budget {budget} exceeds the {available} unlabelled items of the pool ({num_items} items, "
            f"{num_items - available} already labelled). Lower the budget."
        )
    return mask


def l2_normalize(embeddings: np.ndarray) -> np.ndarray:
    """float[N, D] -> float32[N, D] rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float[n, D], float[m, D] -> float32[n, m] squared Euclidean distances (one matmul)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d, 0.0, out=d)


def typicality(features: np.ndarray, k: int) -> np.ndarray:
    """Inverse mean distance to the ``k`` nearest neighbours (Hacohen et al. 2022, Eq. 2).

    ``Typicality(x) = (1/k * sum_{x_i in kNN(x)} ||x - x_i||_2) ** -1``; a point's own entry is
    not a neighbour.

    Args:
        features: float32[n, D].
        k: neighbours; clipped to ``n - 1``.

    Returns:
        float64[n]; higher is denser. All ones when ``n == 1``.
    """
    n = len(features)
    k = min(k, n - 1)
    if k < 1:
        return np.ones(n)
    # Centred, the one-matmul distances lose no precision to large coordinates (float32 cancellation).
    features = np.asarray(features, dtype=np.float32)
    features = features - features.mean(axis=0)
    mean_distance = np.empty(n)
    for start in range(0, n, CHUNK):
        block = squared_distances(features[start : start + CHUNK], features)
        rows = np.arange(len(block))
        block[rows, start + rows] = np.inf  # not one's own neighbour
        nearest = np.partition(block, k - 1, axis=1)[:, :k]
        mean_distance[start : start + len(block)] = np.sqrt(nearest).mean(axis=1)
    return 1.0 / (mean_distance + 1e-5)


def cluster(features: np.ndarray, num_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means as in the TypiClust code: exact k-means up to 50 clusters, mini-batch beyond.

    Returns:
        ``(assignments: int64[n], centroids: float32[num_clusters, D])``.
    """
    if num_clusters <= 50:
        km = KMeans(n_clusters=num_clusters, n_init=1, random_state=seed)
    else:
        km = MiniBatchKMeans(n_clusters=num_clusters, batch_size=5000, random_state=seed)
    assignments = km.fit_predict(features)
    return assignments.astype(np.int64), km.cluster_centers_.astype(np.float32)


# ---- strategies ----------------------------------------------------------------------------
def random_selection(num_items: int, budget: int, labelled: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """``budget`` unlabelled indices drawn uniformly without replacement."""
    pool = np.flatnonzero(_unlabelled(num_items, budget, labelled))
    return np.random.default_rng(seed).choice(pool, size=budget, replace=False).astype(np.int64)


def balanced_random_selection(
    labels: np.ndarray, budget: int, labelled: Sequence[int] = (), seed: int = 0
) -> np.ndarray:
    """Oracle baseline: random items, as class-balanced as possible (it reads the true labels).

    Each pick goes to the class with the fewest labels so far (already-labelled items count;
    ties in a seeded random class order), so per-class counts differ by at most one unless a
    class runs out of items.

    Args:
        labels: long[N] true labels of the pool.
    """
    labels = np.asarray(labels).reshape(-1)
    mask = _unlabelled(len(labels), budget, labelled)
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))
    queues = {c: list(rng.permutation(np.flatnonzero(mask & (labels == c)))) for c in classes}
    counts = {c: int(((~mask) & (labels == c)).sum()) for c in classes}
    picked: list[int] = []
    for _ in range(budget):
        # min() keeps the first of equals, i.e. the seeded class order breaks ties.
        c = min((c for c in classes if queues[c]), key=lambda c: counts[c])
        picked.append(int(queues[c].pop()))
        counts[c] += 1
    return np.array(picked, dtype=np.int64)


def kmeans_selection(embeddings: np.ndarray, budget: int, labelled: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """k-means of the unlabelled pool into ``budget`` clusters; the item nearest each centroid.

    Args:
        embeddings: float[N, D].
    """
    x = np.asarray(embeddings, dtype=np.float32)
    pool = np.flatnonzero(_unlabelled(len(x), budget, labelled))
    _, centroids = cluster(x[pool], budget, seed)
    taken = np.zeros(len(pool), dtype=bool)
    picked = []
    for centroid in centroids:
        distance = squared_distances(centroid[None], x[pool])[0]
        distance[taken] = np.inf  # two centroids never share their nearest item
        best = int(np.argmin(distance))
        taken[best] = True
        picked.append(pool[best])
    return np.array(picked, dtype=np.int64)


def typiclust_selection(
    embeddings: np.ndarray,
    budget: int,
    labelled: Sequence[int] = (),
    seed: int = 0,
    k_nn: int = 20,
    min_cluster_size: int = 5,
    max_clusters: int = 500,
) -> np.ndarray:
    """TypiClust (Hacohen, Dekel & Weinshall 2022, Alg. 1), following the authors' code.

    k-means splits the pool into ``len(labelled) + budget`` clusters (at most ``max_clusters``);
    clusters of at most ``min_cluster_size`` items are dropped; the rest are visited by fewest
    labelled items first, then largest first, and from each the most typical unlabelled item
    (:func:`typicality` with ``k = min(k_nn, cluster size // 2)``, over the cluster's still
    unlabelled items) is picked. If the budget outlasts the clusters, the visit order repeats.

    Args:
        embeddings: float[N, D]; the paper uses L2-normalized self-supervised features.
        k_nn: neighbours of the typicality estimate (paper: 20).
        min_cluster_size: clusters this small or smaller are skipped (paper: 5).
        max_clusters: cap on k-means clusters (paper: 500).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    mask = _unlabelled(len(x), budget, labelled)
    labelled = np.flatnonzero(~mask)
    num_clusters = min(len(labelled) + budget, max_clusters, len(x))
    assignments, _ = cluster(x, num_clusters, seed)
    sizes = np.bincount(assignments, minlength=num_clusters)
    covered = np.bincount(assignments[labelled], minlength=num_clusters)
    ranked = sorted(range(num_clusters), key=lambda c: (covered[c], -sizes[c], c))
    big = [c for c in ranked if sizes[c] > min_cluster_size]
    # Small clusters are a last resort, used only once every large cluster is exhausted.
    visit_orders = [big, ranked] if big else [ranked]
    picked: list[int] = []
    for order in visit_orders:
        while len(picked) < budget:
            progress = False
            for c in order:
                if len(picked) == budget:
                    break
                members = np.flatnonzero(mask & (assignments == c))
                if len(members) == 0:
                    continue
                scores = typicality(x[members], min(k_nn, len(members) // 2))
                best = int(members[np.argmax(scores)])
                picked.append(best)
                mask[best] = False
                progress = True
            if not progress:
                break
    return np.array(picked, dtype=np.int64)


def kcenter_selection(embeddings: np.ndarray, budget: int, labelled: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """Greedy k-center core-set (Sener & Savarese 2018, Alg. 1).

    Repeatedly picks the item farthest from its nearest labelled-or-picked item, a
    2-approximation of the minimax cover. With nothing labelled, the first centre is a seeded
    random item.

    Args:
        embeddings: float[N, D].
    """
    x = np.asarray(embeddings, dtype=np.float32)
    x = x - x.mean(axis=0)  # see typicality(): precision of the one-matmul distances
    mask = _unlabelled(len(x), budget, labelled)
    centres = list(np.flatnonzero(~mask))
    picked: list[int] = []
    if not centres:
        first = int(np.random.default_rng(seed).choice(np.flatnonzero(mask)))
        picked.append(first)
        centres = [first]
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(centres), CHUNK):
        block = squared_distances(x[centres[start : start + CHUNK]], x)
        nearest = np.minimum(nearest, block.min(axis=0))
    norms = (x * x).sum(axis=1)  # once, not per pick: each pick then costs one matrix-vector product
    while len(picked) < budget:
        far = int(np.argmax(nearest))  # labelled/picked items have distance 0 and never win
        picked.append(far)
        distance = np.maximum(norms + norms[far] - 2.0 * (x @ x[far]), 0.0)
        np.minimum(nearest, distance, out=nearest)
        nearest[far] = 0.0
    return np.array(picked, dtype=np.int64)


def _most_uncertain(scores: np.ndarray, budget: int, labelled: Sequence[int], seed: int) -> np.ndarray:
    """The ``budget`` unlabelled items of highest ``scores``; equal scores in seeded random order."""
    mask = _unlabelled(len(scores), budget, labelled)
    pool = np.random.default_rng(seed).permutation(np.flatnonzero(mask))
    order = np.argsort(-scores[pool], kind="stable")
    return pool[order[:budget]].astype(np.int64)


def entropy_selection(probs: np.ndarray, budget: int, labelled: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """Highest predictive entropy ``-sum_c p_c log p_c``.

    Args:
        probs: float[N, C] predicted class probabilities of the pool.
    """
    p = np.asarray(probs, dtype=np.float64)
    entropy = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=1)
    return _most_uncertain(entropy, budget, labelled, seed)


def margin_selection(probs: np.ndarray, budget: int, labelled: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """Smallest margin between the two most probable classes (Scheffer et al. 2001).

    Args:
        probs: float[N, C] predicted class probabilities of the pool, C >= 2.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"margin needs probabilities float[N, C] with C >= 2, got shape {list(p.shape)}")
    top2 = np.sort(p, axis=1)[:, -2:]
    return _most_uncertain(-(top2[:, 1] - top2[:, 0]), budget, labelled, seed)


def select(
    strategy: str,
    budget: int,
    *,
    embeddings: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    num_items: int | None = None,
    labelled: Sequence[int] = (),
    seed: int = 0,
    normalize: bool = True,
) -> np.ndarray:
    """Run one strategy by name; checks that it got the inputs it needs.

    Args:
        strategy: one of :data:`STRATEGIES`.
        budget: how many new items to pick (a total, not per class).
        embeddings: float[N, D] pool embeddings (``random``, ``kmeans``, ``typiclust``, ``kcenter``).
        probs: float[N, C] predicted probabilities of the pool (``entropy``, ``margin``).
        labels: long[N] true labels of the pool (only the ``balanced_random`` oracle baseline).
        num_items: pool size N (enough for ``random``; otherwise taken from the arrays).
        labelled: indices already labelled; never picked again.
        seed: the same seed and inputs give the same picks.
        normalize: L2-normalize embeddings first, as TypiClust does with its features.

    Returns:
        int64[budget] distinct new pool indices, in the order they were picked.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    needs = {"balanced_random": ("labels", labels), **{s: ("probs", probs) for s in UNCERTAINTY_STRATEGIES}}
    name, value = needs.get(strategy, ("embeddings", embeddings))
    if strategy == "random":
        sizes = [num_items] if num_items is not None else [len(a) for a in (embeddings, probs, labels) if a is not None]
        if not sizes:
            raise ValueError("random selection needs the pool size: pass num_items (or embeddings, probs, labels)")
        return random_selection(sizes[0], budget, labelled, seed)
    if value is None:
        raise ValueError(f"strategy {strategy!r} needs {name}; pass {name}=...")
    if strategy == "balanced_random":
        return balanced_random_selection(value, budget, labelled, seed)
    if strategy == "entropy":
        return entropy_selection(value, budget, labelled, seed)
    if strategy == "margin":
        return margin_selection(value, budget, labelled, seed)
    x = l2_normalize(value) if normalize else np.asarray(value, dtype=np.float32)
    function = {"kmeans": kmeans_selection, "typiclust": typiclust_selection, "kcenter": kcenter_selection}[strategy]
    return function(x, budget, labelled, seed)
