"""Training throughput on a device: on-device augmentation vs a per-sample pipeline; MAML vs learn2learn.

Measured in one run, both sides alternating on the same machine:

1. **images/s of a training step** on CIFAR-10-shaped data (synthetic uint8 32x32x3): forward,
   backward and an SGD step of a backbone (``--backbone lenet`` or ``resnet12``), fed by

   * *batched* (ours): uint8 batches from an ``ImageDataModule`` loader, moved to the device, then
     ``to_float`` -> flip + 4px reflect pad-crop with per-image parameters -> ``standardize`` there;
   * *per-sample*: a ``DataLoader`` with ``--workers`` processes running torchvision transforms
     (PIL image -> ``RandomHorizontalFlip``, ``RandomCrop(32, 4, reflect)``, ``ToTensor``,
     ``Normalize``) per image, the float batch moved to the device.

2. **MAML meta-steps/s** (second order, conv-4, 5-way 1-shot 28x28, meta-batch ``--meta-batch``):
   :meth:`ssl_lightning.methods.maml.MAML.meta_loss` vs learn2learn's ``clone``/``adapt`` loop (the same
   code as ``benchmarks/maml_vs_learn2learn.py``), if learn2learn is importable.

Prints images/s, meta-steps/s and the ratios (ours / theirs). ``--amp`` runs the model steps under
``torch.autocast(bfloat16)`` (as ``precision: bf16-mixed``).

    python benchmarks/gpu_throughput.py --device cuda                 # on a GPU
    python benchmarks/gpu_throughput.py --device cuda --backbone resnet12 --amp --workers 8
    python benchmarks/gpu_throughput.py --device cpu --images 2000 --measure 512 --workers 1 --meta-steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.input_pipeline import (
    MEAN,
    STD,
    PILDataset,
    SyntheticDataModule,
    our_ops,
    synthetic_cifar,
    torchvision_transform,
)


def backbone(name: str) -> torch.nn.Module:
    from ssl_lightning.nets.lenet import lenet
    from ssl_lightning.nets.resnet12 import resnet12

    return lenet(num_classes=10) if name == "lenet" else resnet12(num_classes=10, drop_rate=0.0)


def training_step(name: str, device: str, amp: bool) -> Callable[[Tensor, Tensor], None]:
    """One SGD step of a fresh backbone (seed 0) on ``(x: float[B, 3, 32, 32], y: long[B])`` on ``device``."""
    torch.manual_seed(0)  # benchmark script: the same initial weights for both pipelines
    net = backbone(name).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    autocast = torch.autocast(torch.device(device).type, torch.bfloat16) if amp else contextlib.nullcontext()

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()

    return step


def batched_inputs(images, labels, batch: int, device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """Ours: uint8 batches to the device, augmentation and standardization there."""
    data = SyntheticDataModule(images, labels, batch, our_ops("cifar"))
    data.setup("fit")
    data.mean, data.std = torch.tensor(MEAN), torch.tensor(STD)
    while True:
        for x, y in data.train_dataloader():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, _ = data.train_batch_transform(data.to_float(x), y)
            yield data.standardize(x), y


def per_sample_inputs(images, labels, batch: int, workers: int, device: str) -> Iterator[tuple[Tensor, Tensor]]:
    """torchvision transforms per image in DataLoader workers; float batches to the device."""
    from torch.utils.data import DataLoader

    dataset = PILDataset(images, labels, torchvision_transform("cifar"))
    loader = DataLoader(dataset, batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def images_per_second(inputs: Iterator[tuple[Tensor, Tensor]], step, measure: int, sync: Callable[[], None]) -> float:
    """Training images/s over ``measure`` images after two warm-up steps (worker start-up excluded)."""
    for _ in range(2):
        step(*next(inputs))
    sync()
    seen, start = 0, time.perf_counter()
    while seen < measure:
        x, y = next(inputs)
        step(x, y)
        seen += len(x)
    sync()
    return seen / (time.perf_counter() - start)


def maml_rates(args: argparse.Namespace, sync: Callable[[], None]) -> dict[str, float]:
    """Median meta-steps/s of ours and learn2learn's MAML, alternating step by step."""
    from benchmarks.maml_vs_learn2learn import build, make_tasks

    impls = ["ours"]
    try:
        import learn2learn  # noqa: F401

        impls.append("l2l")
    except ImportError:
        print("learn2learn is not importable (bash scripts/install_learn2learn.sh): MAML ours only")
    batch = make_tasks(args.meta_batch, 5, args.device)
    steps = {impl: build(impl, 1, 0.4, args.device) for impl in impls}
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for i in range(1 + args.meta_steps):  # the first round is a warm-up
        for impl in impls if i % 2 else impls[::-1]:
            sync()
            start = time.perf_counter()
            steps[impl](batch)
            sync()
            if i:
                times[impl].append(time.perf_counter() - start)
    return {impl: 1 / statistics.median(values) for impl, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=20_000, help="synthetic 32x32x3 training images")
    parser.add_argument("--measure", type=int, default=20_000, help="training images timed per pipeline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the per-sample pipeline")
    parser.add_argument("--backbone", choices=["lenet", "resnet12"], default="lenet")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast in the training steps")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of this process")
    parser.add_argument("--meta-batch", type=int, default=8, help="MAML tasks per meta-step")
    parser.add_argument("--meta-steps", type=int, default=10, help="timed MAML meta-steps per implementation (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    device_name = torch.cuda.get_device_name(args.device) if cuda else "cpu"
    print(
        f"device {device_name}; {args.backbone} SGD steps on {args.images} synthetic 32x32x3 images, batch "
        f"{args.batch_size}{', bf16 autocast' if args.amp else ''}; per-sample DataLoader workers {args.workers}"
    )
    images, labels = synthetic_cifar(args.images)
    step = training_step(args.backbone, args.device, args.amp)
    ours = images_per_second(batched_inputs(images, labels, args.batch_size, args.device), step, args.measure, sync)
    theirs_inputs = per_sample_inputs(images, labels, args.batch_size, args.workers, args.device)
    theirs = images_per_second(theirs_inputs, step, args.measure, sync)
    print(
        f"training step: per-sample torchvision {theirs:9.0f} img/s | on-device augmentation {ours:9.0f} img/s | "
        f"ratio {ours / theirs:5.2f}x"
    )
    if args.meta_steps > 0:
        rates = maml_rates(args, sync)
        line = f"MAML meta-batch {args.meta_batch}, 1 inner step: ours {rates['ours']:7.2f} meta-steps/s"
        if "l2l" in rates:
            line += f" | learn2learn {rates['l2l']:7.2f} meta-steps/s | ratio {rates['ours'] / rates['l2l']:5.2f}x"
        print(line)


if __name__ == "__main__":
    main()
