"""Images/second of augmented training batches: LitData streaming vs the in-memory image folder.

A synthetic folder of ``--num-images`` 32x32 JPEGs in 10 class folders is written once into ``--workdir``
(and, once, its LitData chunks: ``ssl-lightning-data optimize``, ``--encoding``). Both DataModules then
serve one epoch of ``(uint8[B, 3, 32, 32], long[B])`` training batches through their own loaders
(in memory: :class:`~ssl_lightning.data.folder.ImageFolderDataModule`, an index sampler over a tensor;
streaming: :class:`~ssl_lightning.data.streaming_datamodule.StreamingImageDataModule`, a
``litdata.StreamingDataLoader``) with ``--workers`` loader processes, and each batch goes through the same
on-device path as ``on_after_batch_transfer``: ``to_float`` -> flip + 4px pad-crop (batched, per-image
parameters) -> ``standardize``. Prints setup seconds, images/second of each and the ratio streaming / memory.

    python benchmarks/streaming_throughput.py --workdir /tmp/ssl_stream_bench          # 20,000 images
    python benchmarks/streaming_throughput.py --workdir /tmp/ssl_stream_bench --device cuda --workers 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_lightning.data.augment import HorizontalFlip, PadCrop
from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.data.folder import ImageFolderDataModule
from ssl_lightning.data.streaming import optimize_image_folder
from ssl_lightning.data.streaming_datamodule import StreamingImageDataModule


def write_folder(folder: Path, num_images: int, seed: int = 0) -> None:
    """``num_images`` 32x32 RGB JPEGs (smooth random colour fields, so they compress like photos) in 10 classes."""
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR)
        path = folder / f"class_{i % 10}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90)


def epoch_rate(data: ImageDataModule, device: str) -> tuple[float, int]:
    """Images/second of one training epoch after its first batch (worker start-up excluded), on-device path included."""
    generator = torch.Generator(device).manual_seed(0)
    iterator = iter(data.train_dataloader())
    next(iterator)
    seen, start = 0, time.perf_counter()
    for images, labels in iterator:
        x = data.to_float(images.to(device, non_blocking=True))
        x, _ = data.train_batch_transform(x, labels.to(device), generator)
        x = data.standardize(x)
        seen += len(x)
    if device == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start), seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="where the folder and chunks are written once")
    parser.add_argument("--num-images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="loader processes of both loaders")
    parser.add_argument("--encoding", choices=("raw", "encoded"), default="raw")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    folder, chunks = args.workdir / "folder", args.workdir / f"ld_{args.encoding}"
    if not folder.exists():
        start = time.perf_counter()
        write_folder(folder, args.num_images)
        print(f"wrote {args.num_images} JPEGs to {folder} in {time.perf_counter() - start:.1f} s")
    if not chunks.exists():
        start = time.perf_counter()
        optimize_image_folder(folder, chunks, encoding=args.encoding, num_workers=max(args.workers, 1))
        print(f"optimized into {chunks} in {time.perf_counter() - start:.1f} s")

    common = {"batch_size": args.batch_size, "num_workers": args.workers, "augment": [HorizontalFlip(0.5), PadCrop(4)]}
    rates = {}
    for name, make in (
        ("in-memory", lambda: ImageFolderDataModule(root=str(folder), train_dir=".", test_dir=None, **common)),
        ("streaming", lambda: StreamingImageDataModule(input_dir=str(chunks), **common)),
    ):
        start = time.perf_counter()
        data = make()
        data.setup("fit")
        setup = time.perf_counter() - start
        rates[name], seen = epoch_rate(data, args.device)
        print(f"{name:>10}: setup {setup:6.1f} s, {rates[name]:9.0f} images/s ({seen} images, one epoch)")
    print(f"ratio streaming / in-memory: {rates['streaming'] / rates['in-memory']:.2f}")


if __name__ == "__main__":
    main()
