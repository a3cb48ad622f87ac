"""An image folder at scale: start-up, memory per rank and input throughput, in memory vs the decoded cache.

Writes a synthetic class-folder tree of ``--images`` JPEGs (``--size`` pixels square, 10 classes) once
into ``--workdir``, then measures in one run, for ``ImageFolderDataModule`` without and with ``cache_dir``:

1. **start-up**: seconds of ``setup()`` (what a run waits for before its first batch: reading, splits,
   mean/std) for today's in-memory read, a cold cache build (``--workers`` decoding processes) and a
   warm cache open; each in a fresh process.
2. **memory per rank**: 1 and 2 processes (as DDP ranks on one node) each set up the DataModule and
   touch every training image through its DataLoader, then (all of them still alive) read
   ``/proc/self/status`` and ``/proc/self/smaps_rollup``. Reported per process, minus what the process
   held after its imports: peak RSS (``VmHWM``), RSS split into private anonymous memory (``RssAnon``)
   and file pages (``RssFile``; the cache's mapped pages, shared by every process and reclaimable by the
   kernel), and PSS (shared pages divided among the processes mapping them).
3. **throughput**: training images/s through the DataLoader (``--loader-workers``) plus the on-device
   batch conversion and augmentation (flip + pad-crop) on the CPU, alternating the two sources.

Prints every figure and the ratios cache / in-memory.

    python benchmarks/data_scale.py --workdir /tmp/data_scale                  # 50,000 32x32 JPEGs
    python benchmarks/data_scale.py --workdir /tmp/data_scale --images 2000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = 10
FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def write_folder(root: Path, images: int, size: int) -> Path:
    """``root/train/class<k>/<i>.jpg``, written once (a marker file records a finished tree)."""
    done = root / f".complete-{images}-{size}"
    train = root / "train"
    if done.exists():
        return root
    shutil.rmtree(train, ignore_errors=True)
    from PIL import Image

    rng = np.random.default_rng(0)
    start = time.perf_counter()
    ramp = np.linspace(0, 255, size)[None, :, None]
    for i in range(images):
        c = i % CLASSES
        pixels = (ramp * (c + 1) / CLASSES + rng.normal(0, 40, (size, size, 3))).clip(0, 255).astype(np.uint8)
        path = train / f"class{c}" / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
    done.write_text("")
    print(f"wrote {images} {size}x{size} JPEGs to {train} in {time.perf_counter() - start:.1f} s", flush=True)
    return root


def datamodule(args: argparse.Namespace, cached: bool):
    from ssl_lightning.data.augment import HorizontalFlip, PadCrop
    from ssl_lightning.data.folder import ImageFolderDataModule

    return ImageFolderDataModule(
        args.workdir,
        test_dir=None,
        val_size=0,
        cache_dir=str(Path(args.workdir) / "cache") if cached else None,
        cache_workers=args.workers,
        batch_size=args.batch_size,
        num_workers=args.loader_workers,
        augment=[HorizontalFlip(), PadCrop(4, "reflect")],
    )


def memory() -> dict[str, float]:
    """MiB of this process: the ``/proc/self/status`` fields and ``Pss`` from ``smaps_rollup``."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in FIELDS:
                out[key] = int(line.split()[1]) / 1024
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1]) / 1024
    return out


def child(args: argparse.Namespace) -> None:
    """One measurement in a fresh process; prints one JSON line."""
    import torch

    torch.set_num_threads(1)
    if args.child.startswith("startup-"):
        data = datamodule(args, cached=args.child != "startup-memory")
        start = time.perf_counter()
        data.prepare_data()
        data.setup("fit")
        print(json.dumps({"seconds": time.perf_counter() - start}))
        return
    from PIL import Image, JpegImagePlugin  # noqa: F401 (loaded before the baseline: not the dataset's memory)

    from ssl_lightning.data import decoded_cache  # noqa: F401

    data = datamodule(args, cached=args.source == "cache")
    before = memory()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM: the peak from here on
    data.setup("fit")
    total = 0
    for images, _ in data.eval_dataloader(data.datasets["all"]):  # touch every training image
        total += int(images[:, 0, 0, 0].sum())
    print("touched", flush=True)
    sys.stdin.readline()  # wait until every process has touched its images, so PSS shares pages
    after = memory()
    print(json.dumps({k: after[k] - (before[k] if k != "VmHWM" else before["VmRSS"]) for k in after}))


def run_child(args: argparse.Namespace, kind: str, source: str = "") -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", kind, "--source", source or "memory", *args.passthrough]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        sys.exit(f"measurement failed ({process.args})")
    return json.loads(out.strip().splitlines()[-1])


def memory_per_rank(args: argparse.Namespace, source: str, ranks: int) -> dict[str, float]:
    """Mean per-process memory figures of ``ranks`` processes alive at once."""
    processes = [run_child(args, "rss", source) for _ in range(ranks)]
    for p in processes:
        assert p.stdout is not None
        while p.stdout.readline().strip() != "touched":
            if p.poll() is not None:
                sys.exit(f"memory measurement of {source} failed")
    for p in processes:
        assert p.stdin is not None
        p.stdin.write("measure\n")
        p.stdin.flush()
    results = [result(p) for p in processes]
    return {key: statistics.mean(r[key] for r in results) for key in results[0]}


def throughput(args: argparse.Namespace) -> dict[str, float]:
    """Median training images/s of each source over ``--repeats`` alternating passes of ``--measure`` images."""
    import torch

    torch.set_num_threads(1)
    modules = {"memory": datamodule(args, False), "cache": datamodule(args, True)}
    for data in modules.values():
        data.setup("fit")
    rates: dict[str, list[float]] = {name: [] for name in modules}
    generator = torch.Generator().manual_seed(0)
    for repeat in range(args.repeats):
        for name in list(modules) if repeat % 2 else list(modules)[::-1]:
            data = modules[name]
            seen, start = 0, time.perf_counter()
            while seen < args.measure:
                for images, labels in data.train_dataloader():
                    x, _ = data.train_batch_transform(data.to_float(images), labels, generator)
                    data.standardize(x)
                    seen += len(images)
                    if seen >= args.measure:
                        break
            rates[name].append(seen / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/ssl_lightning_data_scale", help="where the image folder is written")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=32)
    default_workers = len(os.sched_getaffinity(0))
    parser.add_argument("--workers", type=int, default=default_workers, help="decoding processes of a cache build")
    parser.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers in the throughput run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--measure", type=int, default=50_000, help="training images per throughput pass")
    parser.add_argument("--repeats", type=int, default=3, help="alternating throughput passes per source")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--source", default="memory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.passthrough = [
        "--workdir", args.workdir, "--images", str(args.images), "--size", str(args.size), "--workers",
        str(args.workers), "--loader-workers", str(args.loader_workers), "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    if args.child:
        child(args)
        return
    write_folder(Path(args.workdir), args.images, args.size)
    print(
        f"{args.images} {args.size}x{args.size} JPEGs, {CLASSES} classes; {len(os.sched_getaffinity(0))} CPU(s) "
        f"available, cache build workers {args.workers}, loader workers {args.loader_workers}",
        flush=True,
    )
    shutil.rmtree(Path(args.workdir) / "cache", ignore_errors=True)
    seconds = {kind: result(run_child(args, f"startup-{kind}"))["seconds"] for kind in ("memory", "cold", "warm")}
    print(
        f"start-up (setup, s): in-memory read {seconds['memory']:.2f} | cold cache build {seconds['cold']:.2f} | "
        f"warm cache open {seconds['warm']:.2f} | in-memory / warm {seconds['memory'] / seconds['warm']:.1f}x, "
        f"cold / in-memory {seconds['cold'] / seconds['memory']:.2f}x",
        flush=True,
    )
    for ranks in (1, 2):
        mem, cache = memory_per_rank(args, "memory", ranks), memory_per_rank(args, "cache", ranks)
        cells = " | ".join(
            f"{key} {mem[key]:.0f} vs {cache[key]:.0f}"
            + (f" ({cache[key] / max(mem[key], 1e-9):.2f}x)" if key in ("VmHWM", "VmRSS", "Pss") else "")
            for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "Pss")
        )
        print(f"memory per rank, {ranks} process(es), MiB in-memory vs cache: {cells}", flush=True)
    rates = throughput(args)
    print(
        f"throughput (DataLoader + on-device augmentation on CPU, img/s): in-memory {rates['memory']:.0f} | "
        f"cache {rates['cache']:.0f} | cache / in-memory {rates['cache'] / rates['memory']:.2f}x"
    )


if __name__ == "__main__":
    main()
