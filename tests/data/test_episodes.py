"""Episode sampling: invariants (also property-based), determinism, rank partition, errors."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_lightning.data.episodic.sampling import (
    EpisodeSampler,
    check_episode_request,
    episode_labels,
    group_by_class,
    mix_seed,
    rank_share,
    sample_episodes,
)


def labels_of(sizes: list[int], seed: int = 0) -> torch.Tensor:
    """Labels with ``sizes[c]`` items of class ``c``, shuffled so classes are interleaved."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def assert_valid_episode(episode: list[int], labels: torch.Tensor, n_way: int, k_shot: int, n_query: int) -> None:
    per_class = k_shot + n_query
    assert len(episode) == n_way * per_class
    rows = torch.tensor(episode).view(n_way, per_class)
    classes = labels[rows]
    # every row is one class, and the rows are distinct classes
    assert (classes == classes[:, :1]).all()
    assert len(set(classes[:, 0].tolist())) == n_way
    # k + q distinct items per class, so support and query never share an item
    assert len(set(episode)) == len(episode)
    support, query = set(rows[:, :k_shot].flatten().tolist()), set(rows[:, k_shot:].flatten().tolist())
    assert not support & query


def test_group_by_class_lists_members_in_order():
    members, sizes = group_by_class(torch.tensor([2, 0, 2, 1, 0, 2]))
    assert sizes.tolist() == [2, 1, 3]
    assert members.tolist() == [[1, 4, -1], [3, -1, -1], [0, 2, 5]]


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    n_way=st.integers(1, 8),
    k_shot=st.integers(1, 4),
    n_query=st.integers(1, 4),
    seed=st.integers(0, 2**31),
)
def test_sampled_episodes_satisfy_invariants(sizes, n_way, k_shot, n_query, seed):
    labels = labels_of(sizes, seed)
    feasible = n_way <= len(sizes) and k_shot + n_query <= min(sizes)
    if not feasible:
        with pytest.raises(ValueError, match="n_way|k_shot \\+ n_query"):
            EpisodeSampler(labels, n_way, k_shot, n_query, num_episodes=3, seed=seed)
        return
    sampler = EpisodeSampler(labels, n_way, k_shot, n_query, num_episodes=7, seed=seed)
    episodes = list(sampler)
    assert len(episodes) == len(sampler) == 7
    for episode in episodes:
        assert_valid_episode(episode, labels, n_way, k_shot, n_query)


@settings(max_examples=25, deadline=None)
@given(n_way=st.integers(1, 6), per_class=st.integers(1, 5))
def test_episode_labels_remap_rows_to_0_to_n_minus_1(n_way, per_class):
    labels = episode_labels(n_way, per_class)
    assert labels.tolist() == [c for c in range(n_way) for _ in range(per_class)]


@settings(max_examples=30, deadline=None)
@given(num_items=st.integers(0, 50), world_size=st.integers(1, 6))
def test_rank_shares_cover_every_item_exactly_once(num_items, world_size):
    shares = [list(rank_share(num_items, r, world_size)) for r in range(world_size)]
    assert sorted(i for share in shares for i in share) == list(range(num_items))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_sampling_is_uniform_over_classes_and_items():
    labels = labels_of([6] * 10)
    members, sizes = group_by_class(labels)
    episodes = sample_episodes(members, sizes, 3, 2, 4000, torch.Generator().manual_seed(0))
    class_counts = torch.bincount(labels[episodes[:, :, 0]].flatten(), minlength=10).float()
    item_counts = torch.bincount(episodes.flatten(), minlength=60).float()
    # expected 1200 per class (sd ~ 31) and 400 per item (sd ~ 19)
    assert (class_counts - 1200).abs().max() < 150
    assert (item_counts - 400).abs().max() < 100
    # class order inside an episode is random too: every class shows up in row 0
    assert set(labels[episodes[:, 0, 0]].tolist()) == set(range(10))


def test_fixed_episodes_depend_only_on_seed():
    labels = labels_of([5] * 8)
    a = EpisodeSampler(labels, 4, 1, 2, num_episodes=20, seed=3, fixed=True)
    b = EpisodeSampler(labels.clone(), 4, 1, 2, num_episodes=20, seed=3, fixed=True)
    b.set_epoch(5)  # evaluation episodes ignore the epoch
    assert list(a) == list(b) == list(a)
    assert list(EpisodeSampler(labels, 4, 1, 2, num_episodes=20, seed=4, fixed=True)) != list(a)
    # different streams of one seed (val vs test) are different sets
    assert list(EpisodeSampler(labels, 4, 1, 2, num_episodes=20, seed=3, fixed=True, stream=2)) != list(a)


def test_training_episodes_follow_seed_and_epoch():
    labels = labels_of([5] * 8)
    sampler = EpisodeSampler(labels, 4, 1, 2, num_episodes=10, seed=0)
    epoch0 = list(sampler)
    assert list(sampler) == epoch0  # same epoch, same episodes (a resumed run replays them)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    other = EpisodeSampler(labels, 4, 1, 2, num_episodes=10, seed=0)
    other.set_epoch(1)
    assert list(other) == epoch1


@pytest.mark.parametrize("world_size", [2, 3])
def test_fixed_episodes_are_partitioned_across_ranks(world_size):
    labels = labels_of([5] * 8)
    whole = list(EpisodeSampler(labels, 4, 1, 2, num_episodes=10, seed=1, fixed=True))
    shares = [
        list(EpisodeSampler(labels, 4, 1, 2, num_episodes=10, seed=1, fixed=True, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    assert sum(map(len, shares)) == len(whole)
    merged = [shares[i % world_size][i // world_size] for i in range(len(whole))]
    assert merged == whole  # every fixed episode exactly once, the same set as on one process


def test_training_episodes_differ_between_ranks():
    labels = labels_of([5] * 8)
    ranks = [list(EpisodeSampler(labels, 4, 1, 2, num_episodes=10, rank=r, world_size=2)) for r in range(2)]
    assert ranks[0] != ranks[1]
    assert not set(map(tuple, ranks[0])) & set(map(tuple, ranks[1]))


def test_impossible_requests_name_class_and_numbers():
    sizes = torch.tensor([20, 3, 20])
    names = ["Latin/character01", "Latin/character02", "Greek/character01"]
    with pytest.raises(ValueError, match=r"Class 'Latin/character02' in the val split has 3 items.*1 \+ 15 = 16"):
        check_episode_request(sizes, 2, 1, 15, names, split="val")
    with pytest.raises(ValueError, match="n_way=5 but the train split has only 3 classes"):
        check_episode_request(sizes, 5, 1, 1, names, split="train")
    with pytest.raises(ValueError, match="k_shot must be >= 1"):
        check_episode_request(sizes, 2, 0, 1)


def test_mix_seed_separates_nearby_inputs():
    seeds = {mix_seed(s, 0, e, r) for s in range(3) for e in range(3) for r in range(3)}
    assert len(seeds) == 27
    assert mix_seed(1, 2) == mix_seed(1, 2)


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        labels = labels_of([5] * 8)
        # rank and world size come from the process group (rank=None, world_size=None)
        fixed = list(EpisodeSampler(labels, 4, 1, 2, num_episodes=9, seed=1, fixed=True))
        train = list(EpisodeSampler(labels, 4, 1, 2, num_episodes=6, seed=1))
        torch.save({"fixed": fixed, "train": train}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_samplers_read_rank_from_the_process_group(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children reuse the imported torch instead of re-importing it (seconds, not tens of seconds)
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    labels = labels_of([5] * 8)
    whole = list(EpisodeSampler(labels, 4, 1, 2, num_episodes=9, seed=1, fixed=True))
    assert sorted(results[0]["fixed"] + results[1]["fixed"]) == sorted(whole)
    assert len(results[0]["fixed"]) == 5 and len(results[1]["fixed"]) == 4
    assert results[0]["train"] != results[1]["train"]
