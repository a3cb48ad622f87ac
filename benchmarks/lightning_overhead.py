"""Cost of the Lightning path: the same LeNet on the same in-memory data, plain loop vs Trainer.

Both sides train LeNet on CIFAR-10-sized uint8 images held in memory, read through the same
``ImageDataModule`` loaders and converted to floats the same way; one side is a hand-written
PyTorch loop, the other ``pl.Trainer.fit`` with ``Classifier`` (metrics and logging on, no
progress bar, no checkpoint writes). Runs alternate A B A B ... in one process and the
median of the per-pair ratios is printed, for wall time and for this process's CPU time (the
latter is less sensitive to other jobs on a shared machine). Goal: <= 1.05.

    python benchmarks/lightning_overhead.py --images 10000 --epochs 2 --repeats 3
    python benchmarks/lightning_overhead.py --threads 1     # one intra-op thread
    python benchmarks/lightning_overhead.py --bare          # also Lightning's floor: a bare LightningModule

``--bare`` adds a third side to each round: the Trainer with a LightningModule that only computes
the cross-entropy (no metrics, no logger), i.e. the cost of Lightning's loop itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor

from ssl_lightning.data.base import ImageDataModule
from ssl_lightning.methods import Classifier
from ssl_lightning.nets import lenet


class SyntheticCIFAR(ImageDataModule):
    """Random uint8[N, 3, 32, 32] images with 10 labels (speed only; content is irrelevant)."""

    def __init__(self, num_images: int, batch_size: int) -> None:
        super().__init__(batch_size=batch_size, val_size=0)
        self.num_images = num_images

    def load_split(self, split: Literal["train", "test"]) -> tuple[Tensor, Tensor, list[str]]:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        n = self.num_images if split == "train" else 100
        images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
        labels = torch.randint(0, 10, (n,), generator=generator)
        return images, labels, [str(i) for i in range(10)]


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain_loop(dm: SyntheticCIFAR, epochs: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = lenet(num_classes=10, in_chans=3, input_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return timed(lambda: train_plain(dm, model, optimizer, epochs))


def train_plain(dm: SyntheticCIFAR, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epochs: int) -> None:
    for epoch in range(epochs):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for images, labels in loader:
            x = dm.standardize(dm.to_float(images))
            loss = F.cross_entropy(model(x), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


class BareModule(pl.LightningModule):
    """LeNet and cross-entropy, nothing else: what the Trainer costs without our method."""

    def __init__(self) -> None:
        super().__init__()
        self.net = lenet(num_classes=10, in_chans=3, input_size=32)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        return F.cross_entropy(self.net(images), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def fit_timed(
    model: pl.LightningModule, dm: SyntheticCIFAR, epochs: int, logger: CSVLogger | bool
) -> tuple[float, float]:
    """Time ``Trainer.fit`` alone (no progress bar, summary, checkpoints or validation)."""
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    return timed(lambda: trainer.fit(model, datamodule=dm))


def bare_trainer_path(dm: SyntheticCIFAR, epochs: int) -> tuple[float, float]:
    torch.manual_seed(0)
    return fit_timed(BareModule(), dm, epochs, logger=False)


def trainer_path(dm: SyntheticCIFAR, epochs: int, log_dir: str) -> tuple[float, float]:
    torch.manual_seed(0)
    model = Classifier(lenet(num_classes=10, in_chans=3, input_size=32))
    return fit_timed(model, dm, epochs, logger=CSVLogger(log_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--bare", action="store_true", help="also time a bare LightningModule (Lightning's floor)")
    parser.add_argument("--log_dir", default="/tmp/ssl_lightning_bench")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    import logging
    import warnings

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    dm = SyntheticCIFAR(args.images, args.batch_size)
    dm.setup("fit")
    plain_loop(dm, 1)  # warm-up: allocator, thread pools
    runs: dict[str, list[tuple[float, float]]] = {"Trainer + Classifier": []}
    if args.bare:
        runs["bare LightningModule"] = []
    plain_runs = []
    for _ in range(args.repeats):
        plain_runs.append(plain_loop(dm, args.epochs))
        runs["Trainer + Classifier"].append(trainer_path(dm, args.epochs, args.log_dir))
        if args.bare:
            runs["bare LightningModule"].append(bare_trainer_path(dm, args.epochs))
    steps = args.epochs * -(-args.images // args.batch_size)
    print(f"LeNet, {args.images} images 3x32x32, batch {args.batch_size}, {args.epochs} epochs ({steps} steps), "
          f"{torch.get_num_threads()} threads, {args.repeats} rounds")
    for index, clock in enumerate(("wall", "CPU")):
        plain = [run[index] for run in plain_runs]
        print(f"{clock} time: plain loop median {statistics.median(plain):.2f} s")
        for name, side in runs.items():
            ours = [run[index] for run in side]
            ratios = [b / a for a, b in zip(plain, ours, strict=True)]
            print(f"  {name:<21}: median {statistics.median(ours):.2f} s, ratio to plain median "
                  f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})  goal <= 1.05")

if __name__ == "__main__":
    main()
