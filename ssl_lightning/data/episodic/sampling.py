"""Episode sampling: which items form each N-way K-shot task, as seeded, DDP-aware index lists.

The math lives in pure functions over label tensors (:func:`group_by_class`,
:func:`check_episode_request`, :func:`sample_episodes`, :func:`rank_share`,
:func:`mix_seed`); :class:`EpisodeSampler` wraps them in a ``torch.utils.data.Sampler``.

An episode is ``long[n_way, k_shot + n_query]`` item indices, one row per class: the first
``k_shot`` of a row are the support items, the rest the query items, and row ``j`` gets the
label ``j`` (labels are remapped to ``0..n_way-1`` by position, so the class-to-label map is
random from episode to episode). The sampler yields it flattened row by row.

Randomness comes only from explicit ``torch.Generator`` objects:

* training episodes of epoch ``e`` on rank ``r`` are drawn from ``mix_seed(seed, 0, e, r)``:
  the same on every resumed run, different from epoch to epoch and from rank to rank;
* evaluation episodes are drawn once from ``mix_seed(seed, stream)``: the same fixed set on
  every run and every rank, partitioned over the ranks so each is evaluated exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

__all__ = [
    "EpisodeSampler",
    "check_episode_request",
    "distributed_rank_and_size",
    "episode_labels",
    "episodes_per_rank",
    "group_by_class",
    "mix_seed",
    "rank_share",
    "sample_episodes",
]

#: Random keys per chunk when drawing many episodes at once (bounds the memory of one draw).
_KEYS_PER_CHUNK = 1 << 22


def mix_seed(*parts: int) -> int:
    """Combine integers (seed, stream, epoch, rank, ...) into one well-mixed 63-bit seed.

    ``numpy.random.SeedSequence`` hashes its entropy, so nearby inputs such as ranks 0 and 1
    give unrelated streams (a plain ``seed + rank`` would make rank 1 of seed 0 replay rank 0
    of seed 1).
    """
    state = np.random.SeedSequence([int(p) % (1 << 64) for p in parts]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def group_by_class(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Index the items of every class.

    Args:
        labels: long[N] class labels in ``0..C-1``.

    Returns:
        ``(members: long[C, M], sizes: long[C])``: row ``c`` of ``members`` holds the indices
        of class ``c`` in increasing order, padded with ``-1`` up to ``M``, the largest class.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1:
        raise ValueError(f"labels must be long[N], got shape {list(labels.shape)}")
    if len(labels) == 0:
        return torch.empty(0, 0, dtype=torch.long), torch.empty(0, dtype=torch.long)
    if int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
    sizes = torch.bincount(labels)
    order = torch.argsort(labels, stable=True)
    rank_in_class = torch.arange(len(labels)) - (torch.cumsum(sizes, 0) - sizes)[labels[order]]
    members = torch.full((len(sizes), int(sizes.max())), -1, dtype=torch.long)
    members[labels[order], rank_in_class] = order
    return members, sizes


def check_episode_request(
    sizes: Tensor,
    n_way: int,
    k_shot: int,
    n_query: int,
    class_names: Sequence[str] | None = None,
    split: str = "this",
) -> None:
    """Raise a ``ValueError`` if ``n_way``-way ``k_shot``-shot episodes with ``n_query`` queries are impossible.

    Args:
        sizes: long[C] items per class.
        n_way: classes per episode.
        k_shot: support items per class.
        n_query: query items per class.
        class_names: names used in the message (default: the class index).
        split: name of the split, for the message (``"train"``, ``"val"``, ...).
    """
    for name, value, low in (("n_way", n_way, 1), ("k_shot", k_shot, 1), ("n_query", n_query, 1)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    num_classes = len(sizes)
    if n_way > num_classes:
        raise ValueError(
            f"n_way={n_way} but the {split} split has only {num_classes} classes. Lower n_way to at most "
            f"{num_classes}, or give this split more classes (class_split, split_file, rotations)."
        )
    need = k_shot + n_query
    small = torch.nonzero(sizes < need).flatten().tolist()
    if small:
        names = [class_names[c] if class_names is not None else str(c) for c in small]
        worst = min(small, key=lambda c: int(sizes[c]))
        raise ValueError(
            f"Class {names[small.index(worst)]!r} in the {split} split has {int(sizes[worst])} items but "
            f"k_shot + n_query = {k_shot} + {n_query} = {need} distinct items per class are needed. "
            f"{len(small)} class(es) are too small: {names[:5]}{' ...' if len(small) > 5 else ''}. "
            f"Lower k_shot + n_query to at most {int(sizes.min())}, or remove the classes with fewer than "
            f"{need} items."
        )


def sample_episodes(
    members: Tensor, sizes: Tensor, n_way: int, per_class: int, num_episodes: int, generator: torch.Generator
) -> Tensor:
    """Draw ``num_episodes`` episodes at once.

    Each episode takes ``n_way`` distinct classes uniformly at random, in random order, and
    ``per_class`` distinct items of each class uniformly at random, in random order. Every
    class must have at least ``per_class`` items (:func:`check_episode_request`).

    Args:
        members: long[C, M] from :func:`group_by_class`.
        sizes: long[C] from :func:`group_by_class`.
        n_way: classes per episode.
        per_class: items per class (``k_shot + n_query``).
        num_episodes: episodes to draw.
        generator: the only source of randomness.

    Returns:
        long[num_episodes, n_way, per_class] item indices.
    """
    num_classes, width = members.shape
    episodes = []
    chunk = max(1, _KEYS_PER_CHUNK // max(num_classes, n_way * width))
    for start in range(0, num_episodes, chunk):
        count = min(chunk, num_episodes - start)
        # The n_way smallest of C i.i.d. uniform keys are a uniformly random ordered choice of classes.
        classes = torch.rand(count, num_classes, generator=generator).topk(n_way, dim=1, largest=False).indices
        keys = torch.rand(count, n_way, width, generator=generator)
        # Padding slots get a key above every real one, so they are never among the first `per_class`.
        keys.masked_fill_(torch.arange(width) >= sizes[classes].unsqueeze(-1), 2.0)
        slots = keys.topk(per_class, dim=2, largest=False).indices
        episodes.append(members[classes.unsqueeze(-1), slots])
    if not episodes:
        return torch.empty(0, n_way, per_class, dtype=torch.long)
    return torch.cat(episodes)


def rank_share(num_items: int, rank: int, world_size: int) -> range:
    """The items of ``rank`` when ``num_items`` are dealt round-robin to ``world_size`` ranks.

    The shares are disjoint and together cover ``range(num_items)`` exactly once (no padding,
    so no episode is evaluated twice; ranks differ by at most one item).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return range(rank, num_items, world_size)


def episode_labels(n_way: int, per_class: int) -> Tensor:
    """long[n_way * per_class]: ``[0]*per_class + [1]*per_class + ...``, the labels of a flattened episode row block."""
    return torch.arange(n_way).repeat_interleave(per_class)


def episodes_per_rank(total: int, world_size: int) -> int:
    """Training episodes each rank draws so that all ranks together draw at least ``total``."""
    return math.ceil(total / world_size)


def distributed_rank_and_size() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# Subclassing DistributedSampler only marks this sampler as already rank-aware: Lightning
# then leaves it alone instead of wrapping it in a DistributedSamplerWrapper, which would
# split (and pad) our episodes a second time.
class EpisodeSampler(DistributedSampler):
    """Yields episodes as lists of ``n_way * (k_shot + n_query)`` item indices.

    A list is one episode, row by row: class 0's ``k_shot`` support then ``n_query`` query
    items, then class 1's, ...; the DataLoader's ``batch_size`` stacks ``T`` episodes into a
    task batch (see :class:`~ssl_lightning.data.episodic.EpisodicDataModule`).

    Training (``fixed=False``): ``num_episodes`` fresh episodes per epoch, drawn from
    ``(seed, epoch, rank)``; call :meth:`set_epoch` (Lightning does) for new ones each epoch.
    Evaluation (``fixed=True``): ``num_episodes`` episodes drawn once from ``seed`` alone,
    identical on every run and rank; this rank yields its :func:`rank_share` of them.

    Example::

        sampler = EpisodeSampler(labels, n_way=5, k_shot=1, n_query=15, num_episodes=600, seed=0, fixed=True)
        loader = DataLoader(EpisodeDataset(images), sampler=sampler, batch_size=1, collate_fn=...)

    Args:
        labels: long[N] class labels ``0..C-1`` of the items.
        n_way: classes per episode.
        k_shot: support items per class.
        n_query: query items per class.
        num_episodes: training: episodes per epoch on this rank; evaluation: size of the fixed
            set over all ranks.
        seed: seed of the episodes.
        fixed: evaluation mode (see above).
        rank: this process's rank; ``None`` reads the default process group (0 without one).
        world_size: number of ranks; ``None`` reads the default process group (1 without one).
        class_names: names of the classes for error messages.
        split: name of the split for error messages.
        stream: separates independent fixed sets drawn from one seed (e.g. val 1, test 2).

    Raises:
        ValueError: impossible request (see :func:`check_episode_request`), naming class and numbers.
    """

    def __init__(
        self,
        labels: Tensor,
        n_way: int,
        k_shot: int,
        n_query: int,
        num_episodes: int,
        seed: int = 0,
        fixed: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        class_names: Sequence[str] | None = None,
        split: str = "train",
        stream: int = 1,
    ) -> None:
        if num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
        default_rank, default_size = distributed_rank_and_size()
        self.rank = default_rank if rank is None else rank
        self.num_replicas = default_size if world_size is None else world_size
        rank_share(0, self.rank, self.num_replicas)  # validates rank
        self.members, self.sizes = group_by_class(labels)
        check_episode_request(self.sizes, n_way, k_shot, n_query, class_names, split)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.num_episodes = num_episodes
        self.seed = seed
        self.fixed = fixed
        self.shuffle = not fixed  # DistributedSampler's attributes, for code that reads them
        self.drop_last = False
        self.stream = stream
        self.epoch = 0
        self._fixed: Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.fixed:
            return len(rank_share(self.num_episodes, self.rank, self.num_replicas))
        return self.num_episodes

    def episodes(self) -> Tensor:
        """long[len(self), n_way, k_shot + n_query]: this rank's episodes for the current epoch."""
        per_class = self.k_shot + self.n_query
        if self.fixed:
            if self._fixed is None:
                generator = torch.Generator().manual_seed(mix_seed(self.seed, self.stream))
                every = sample_episodes(self.members, self.sizes, self.n_way, per_class, self.num_episodes, generator)
                self._fixed = every[rank_share(self.num_episodes, self.rank, self.num_replicas)]
            return self._fixed
        generator = torch.Generator().manual_seed(mix_seed(self.seed, 0, self.epoch, self.rank))
        return sample_episodes(self.members, self.sizes, self.n_way, per_class, self.num_episodes, generator)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.episodes().flatten(1).tolist())
