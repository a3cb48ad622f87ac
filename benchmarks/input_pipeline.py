"""Images/second of augmented CIFAR-10-sized training batches: per-sample PIL/torchvision vs batched.

Both pipelines start from the same in-memory uint8 images (synthetic, 32x32x3) and end with a
normalized ``float[B, 3, 32, 32]`` training batch with the same augmentations:

* **per-sample** (the seed's pipeline, as ``torchvision.datasets.CIFAR10`` + ``transforms``):
  ``Dataset.__getitem__`` makes a PIL image and runs ``Compose([RandomHorizontalFlip(),
  RandomCrop(32, padding=4, padding_mode="reflect"), ..., ToTensor(), Normalize()])``; a
  ``DataLoader`` with ``--workers`` processes collates the batches.
* **batched** (ours): uint8 batches from an ``ImageDataModule``'s loader, then
  ``to_float`` -> ``train_batch_transform`` (our augmentation ops, each image its own
  parameters) -> ``standardize``, as ``on_after_batch_transfer`` does on the training device.

Two augmentation sets: ``cifar`` (flip + 4px reflect pad-and-crop) and ``heavy`` (plus
rotation +-15 degrees and colour jitter 0.4/0.4/0.4). Prints images/second and the ratio.

    python benchmarks/input_pipeline.py                    # ~1-2 minutes on 2 CPU cores
    python benchmarks/input_pipeline.py --device cuda      # ours on the GPU
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssl_lightning.data.augment import BatchAugmentation, ColorJitter, HorizontalFlip, PadCrop, RandomRotation
from ssl_lightning.data.base import ImageDataModule

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def synthetic_cifar(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8[N, 32, 32, 3] images (HWC, as CIFAR-10's pickles decode) and int64[N] labels."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


class PILDataset(Dataset):
    """What ``torchvision.datasets.CIFAR10.__getitem__`` does: array -> PIL image -> transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def torchvision_transform(kind: str) -> Callable:
    from torchvision import transforms as T

    ops: list = [T.RandomHorizontalFlip(), T.RandomCrop(32, padding=4, padding_mode="reflect")]
    if kind == "heavy":
        ops += [T.RandomRotation(15), T.ColorJitter(0.4, 0.4, 0.4)]
    return T.Compose([*ops, T.ToTensor(), T.Normalize(MEAN, STD)])


def our_ops(kind: str) -> list[BatchAugmentation]:
    ops: list[BatchAugmentation] = [HorizontalFlip(0.5), PadCrop(4, "reflect")]
    if kind == "heavy":
        ops += [RandomRotation((-15, 15)), ColorJitter(0.4, 0.4, 0.4)]
    return ops


class SyntheticDataModule(ImageDataModule):
    """An ImageDataModule over the synthetic images (all of them training images)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, ops: list[BatchAugmentation]) -> None:
        super().__init__(batch_size=batch_size, val_size=0, augment=ops)
        self._images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self._labels = torch.from_numpy(labels).long()

    def load_split(self, split: Literal["train", "test"]) -> tuple[Tensor, Tensor, list[str]]:
        n = len(self._labels) if split == "train" else 0
        return self._images[:n], self._labels[:n], [str(c) for c in range(10)]


def rate(batches: Iterable[Tensor], num_images: int) -> float:
    """Images/second over ``num_images`` after one warm-up batch (worker start-up excluded)."""
    iterator = iter(batches)
    next(iterator)
    seen, start = 0, time.perf_counter()
    for x in iterator:
        seen += len(x)
        if seen >= num_images:
            break
    return seen / (time.perf_counter() - start)


def per_sample_batches(images: np.ndarray, labels: np.ndarray, kind: str, batch: int, workers: int):
    loader = DataLoader(
        PILDataset(images, labels, torchvision_transform(kind)),
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    while True:
        for x, _ in loader:
            yield x


def batched_batches(images: np.ndarray, labels: np.ndarray, kind: str, batch: int, device: str):
    data = SyntheticDataModule(images, labels, batch, our_ops(kind))
    data.setup("fit")
    data.mean, data.std = torch.tensor(MEAN), torch.tensor(STD)
    loader = data.train_dataloader()
    while True:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, _ = data.train_batch_transform(data.to_float(x), y)
            x = data.standardize(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            yield x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000, help="synthetic training images in memory")
    parser.add_argument("--measure", type=int, default=6_000, help="images timed per pipeline (after warm-up)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample pipeline")
    parser.add_argument("--device", default="cpu", help="device of the batched pipeline")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the batched pipeline (1: the per-sample pipeline keeps the other cores for "
        "its workers; on a busy 2-core machine 2 threads are much slower than 1)",
    )
    parser.add_argument("--kinds", nargs="+", default=["cifar", "heavy"], choices=["cifar", "heavy"])
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings (shared machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = synthetic_cifar(args.images)
    print(
        f"{args.images} synthetic 32x32x3 uint8 images, batch {args.batch_size}; per-sample: torchvision+PIL, "
        f"DataLoader num_workers={args.workers}; batched: ours on {args.device}, torch threads "
        f"{torch.get_num_threads()}"
    )
    for kind in args.kinds:
        ours_stream = batched_batches(images, labels, kind, args.batch_size, args.device)
        ours = max(rate(ours_stream, args.measure * 4) for _ in range(args.repeats))
        theirs_stream = per_sample_batches(images, labels, kind, args.batch_size, args.workers)
        theirs = max(rate(theirs_stream, args.measure) for _ in range(args.repeats))
        print(f"{kind:>6}: per-sample {theirs:9.0f} img/s | batched {ours:9.0f} img/s | ratio {ours / theirs:5.1f}x")


if __name__ == "__main__":
    main()
