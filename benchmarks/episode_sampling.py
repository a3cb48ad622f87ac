"""Episodes per second: our episode pipeline vs learn2learn's TaskDataset, same in-memory data.

Both sides read the same ``uint8[N, C, H, W]`` tensor (Omniglot-sized by default: 964
classes x 20 images of 1x28x28, random pixels; ``--root`` reads a real folder tree instead)
and produce N-way episodes of ``k_shot + n_query`` images per class with labels remapped to
``0..N-1``:

* ours: ``EpisodeSampler`` -> ``EpisodeDataset`` -> ``EpisodeCollate`` through a
  ``DataLoader`` (what ``EpisodicDataModule.train_dataloader`` builds), output already split
  into ``(support_x, support_y, query_x, query_y)``;
* learn2learn: ``TaskDataset(MetaDataset(TensorDataset(images, labels)), [NWays, KShots,
  LoadData, RemapLabels])`` and ``.sample()`` per episode (its documented pipeline), and the
  same with ``FusedNWaysKShots``. Its output is ``(x, y)`` not yet split into support and
  query, so learn2learn does less work per episode than we do.

Each side runs ``--repeats`` times alternately in one process; the median episodes/second
is printed with the ratio ours / learn2learn. Goal: >= 2x. Without learn2learn the script
says so and exits 0.

    python benchmarks/episode_sampling.py                      # 5-way 1-shot 15-query
    python benchmarks/episode_sampling.py --n-way 20 --n-query 5
    python benchmarks/episode_sampling.py --root data/omniglot --class-depth 2 --image-size 28
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.data.episodic.batch import EpisodeCollate, EpisodeDataset
from ssl_lightning.data.episodic.pools import read_folder_pool
from ssl_lightning.data.episodic.sampling import EpisodeSampler


def synthetic_pool(classes: int, per_class: int, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random uint8[classes * per_class, 1, size, size] images; sampling speed does not depend on pixels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (classes * per_class, 1, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(classes).repeat_interleave(per_class)


def ours(images: Tensor, labels: Tensor, args: argparse.Namespace) -> Callable[[], int]:
    """One pass over ``args.episodes`` episodes through our DataLoader; returns the episode count."""
    sampler = EpisodeSampler(labels, args.n_way, args.k_shot, args.n_query, args.episodes, seed=0)
    loader = DataLoader(
        EpisodeDataset(images, labels),
        sampler=sampler,
        batch_size=args.tasks_per_batch,
        collate_fn=EpisodeCollate(args.n_way, args.k_shot, args.n_query),
    )

    def run() -> int:
        sampler.set_epoch(sampler.epoch + 1)  # fresh episodes every pass, as in training
        count = 0
        for support_x, _, _, _ in loader:
            count += len(support_x)
        return count

    return run


def learn2learn_taskset(images: Tensor, labels: Tensor, args: argparse.Namespace, fused: bool) -> Callable[[], int]:
    import learn2learn as l2l

    dataset = l2l.data.MetaDataset(TensorDataset(images, labels))
    shots = args.k_shot + args.n_query
    if fused:
        sampling = [l2l.data.transforms.FusedNWaysKShots(dataset, n=args.n_way, k=shots)]
    else:
        sampling = [l2l.data.transforms.NWays(dataset, args.n_way), l2l.data.transforms.KShots(dataset, shots)]
    transforms = [*sampling, l2l.data.transforms.LoadData(dataset), l2l.data.transforms.RemapLabels(dataset)]
    taskset = l2l.data.TaskDataset(dataset, task_transforms=transforms, num_tasks=-1)

    def run() -> int:
        for _ in range(args.episodes):
            taskset.sample()
        return args.episodes

    return run


def episodes_per_second(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=964, help="synthetic classes (Omniglot background: 964)")
    parser.add_argument("--per-class", type=int, default=20, help="synthetic images per class")
    parser.add_argument("--size", type=int, default=28, help="synthetic image side")
    parser.add_argument("--root", default=None, help="read this image folder tree instead of synthetic data")
    parser.add_argument("--class-depth", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=15)
    parser.add_argument("--tasks-per-batch", type=int, default=1, help="our DataLoader's tasks per batch")
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(1)  # both sides single-threaded, as a DataLoader worker would be
    if args.root is not None:
        images, labels, _ = read_folder_pool(args.root, args.class_depth, args.image_size, None)
        data = f"{args.root}: {len(labels)} images, {int(labels.max()) + 1} classes, {list(images.shape[1:])}"
    else:
        images, labels = synthetic_pool(args.classes, args.per_class, args.size)
        data = f"synthetic: {args.classes} classes x {args.per_class} images of 1x{args.size}x{args.size} (uint8)"
    print(f"data: {data}")
    print(
        f"task: {args.n_way}-way {args.k_shot}-shot {args.n_query}-query; {args.episodes} episodes per pass, "
        f"{args.repeats} passes; ours with {args.tasks_per_batch} task(s) per batch; 1 thread; "
        f"torch {torch.__version__}, Python {platform.python_version()}, {platform.processor() or platform.machine()}"
    )
    try:
        import learn2learn
    except ImportError:
        print("learn2learn is not importable: run `bash scripts/install_learn2learn.sh` to compare. Nothing to do.")
        return

    contenders = {"ours": ours(images, labels, args)}
    start = time.perf_counter()
    contenders["learn2learn NWays+KShots"] = learn2learn_taskset(images, labels, args, fused=False)
    contenders["learn2learn FusedNWaysKShots"] = learn2learn_taskset(images, labels, args, fused=True)
    print(f"learn2learn {learn2learn.__version__}: MetaDataset bookkeeping took {time.perf_counter() - start:.2f} s")
    for run in contenders.values():  # warm-up
        run()
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, run in contenders.items():
            rates[name].append(episodes_per_second(run))
    ours_rate = statistics.median(rates["ours"])
    print(f"{'pipeline':32s} {'episodes/s (median)':>20s} {'ours / it':>10s}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:32s} {rate:20.0f} {ours_rate / rate:9.1f}x")


if __name__ == "__main__":
    main()
