"""Time per meta-step and peak memory of our MAML versus learn2learn's MAML, measured in one run.

Both train the same Conv4 (same initial weights, batch norm on batch statistics) on the same
seeded 5-way 1-shot tasks (28x28, like Omniglot) with Adam, second-order MAML:

* ours: :meth:`ssl_lightning.methods.maml.MAML.meta_loss` (``torch.func.functional_call`` fast
  weights, one task graph at a time) followed by one ``backward`` and ``optimizer.step``, i.e.
  exactly what the Lightning training step does; with ``--compile-backend inductor`` each task's
  adaptation and query forward is compiled (``MAML(compile_backend="inductor")``; the warm-up
  meta-step compiles and is not timed, its duration is printed);
* learn2learn 0.2.0: the loop of its examples, ``learner = maml.clone()``, ``learner.adapt(...)``
  per inner step, ``backward`` of each task's query loss divided by the meta-batch.

Times are medians over meta-steps that alternate between the two implementations in one
process (so a shared machine's changing load hits both alike). Peak memory is measured for
each implementation alone in a fresh subprocess, over the measured meta-step after the
warm-up: on CPU it is the peak resident set size during that step (``VmHWM``, reset through
``/proc/self/clear_refs``) minus the resident size before it, with glibc told to return freed
memory at once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``) so that the resident
size follows the live tensors; on CUDA it is ``torch.cuda.max_memory_allocated`` over the
allocation before the step. A second part runs 500 meta-steps of each and reports the memory
after step 50 and after the last step (a leak shows as growth).

Usage::

    bash scripts/install_learn2learn.sh                     # learn2learn on Python >= 3.11
    python benchmarks/maml_vs_learn2learn.py                # default: meta-batch 8, 1 and 5 inner steps
    python benchmarks/maml_vs_learn2learn.py --full         # meta-batch 8 and 32, 1 and 5 steps, 5 timed steps
    python benchmarks/maml_vs_learn2learn.py --full --compile-backend inductor  # ours compiled
    python benchmarks/maml_vs_learn2learn.py --device cuda --full --threads 8

Goals (issue 6): time ratio ours/learn2learn <= 0.9, memory ratio <= 1.0, no growth over 500 steps.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_WAY, K_SHOT, IMAGE = 5, 1, 28


def current_rss_mib() -> float:
    """Resident set size now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss`, in MiB (Linux ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux >= 4.0: writing 5 to clear_refs resets ``VmHWM``)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def make_tasks(meta_batch: int, n_query: int, device: str, seed: int = 0):
    """One seeded meta-batch: (support_x[T,N*K,1,28,28], support_y[T,N*K], query_x[T,N*Q,...], query_y[T,N*Q])."""
    import torch

    g = torch.Generator().manual_seed(seed)
    support_x = torch.rand(meta_batch, N_WAY * K_SHOT, 1, IMAGE, IMAGE, generator=g)
    query_x = torch.rand(meta_batch, N_WAY * n_query, 1, IMAGE, IMAGE, generator=g)
    support_y = torch.arange(N_WAY).repeat_interleave(K_SHOT).expand(meta_batch, -1).contiguous()
    query_y = torch.arange(N_WAY).repeat_interleave(n_query).expand(meta_batch, -1).contiguous()
    return tuple(t.to(device) for t in (support_x, support_y, query_x, query_y))


def build(impl: str, inner_steps: int, inner_lr: float, device: str, compile_backend: str | None = None):
    """Return ``step(batch)`` running one meta-step of ``impl`` on a fresh Conv4 (seed 0)."""
    import torch
    import torch.nn.functional as F

    from ssl_lightning.methods.maml import MAML, use_batch_statistics
    from ssl_lightning.nets.conv4 import Conv4

    torch.manual_seed(0)  # benchmark script: the same initial weights for both implementations
    net = Conv4(num_classes=N_WAY, in_chans=1, input_size=IMAGE)
    use_batch_statistics(net)  # both on batch statistics: identical computation
    if impl == "ours":
        model = MAML(net, inner_lr=inner_lr, inner_steps=inner_steps, compile_backend=compile_backend).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(batch) -> float:
            optimizer.zero_grad()
            loss, _ = model.meta_loss(batch, task_by_task=True)
            loss.backward()
            optimizer.step()
            return loss.item()

        return step
    import learn2learn as l2l

    maml = l2l.algorithms.MAML(net.to(device), lr=inner_lr, first_order=False)
    optimizer = torch.optim.Adam(maml.parameters(), lr=1e-3)

    def l2l_step(batch) -> float:
        support_x, support_y, query_x, query_y = batch
        optimizer.zero_grad()
        total = 0.0
        for t in range(len(support_x)):
            learner = maml.clone()
            for _ in range(inner_steps):
                learner.adapt(F.cross_entropy(learner(support_x[t]), support_y[t]))
            loss = F.cross_entropy(learner(query_x[t]), query_y[t]) / len(support_x)
            loss.backward()
            total += loss.item()
        optimizer.step()
        return total

    return l2l_step


def worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    batch = make_tasks(args.meta_batch, args.n_query, args.device)
    step = build(args.impl, args.inner_steps, args.inner_lr, args.device, args.compile_backend)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    trace = []
    for _ in range(args.warmup):
        step(batch)
    sync()
    gc.collect()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = current_rss_mib()
        reset_peak_rss()
    start = time.perf_counter()
    for i in range(args.steps):
        loss = step(batch)
        if args.trace_every and (i + 1) % args.trace_every == 0:
            trace.append((i + 1, (torch.cuda.memory_allocated() / 2**20) if cuda else current_rss_mib()))
    sync()
    seconds = (time.perf_counter() - start) / max(args.steps, 1)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mib()) - before
    return {"impl": args.impl, "seconds_per_step": seconds, "peak_mib": peak, "last_loss": loss, "trace": trace}


def interleaved_times(args: argparse.Namespace) -> dict:
    """Median seconds per meta-step of both implementations, alternating step by step in one process.

    Alternating cancels most of the drift of a shared machine's load between the two.
    """
    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batch = make_tasks(args.meta_batch, args.n_query, args.device)
    steps = {
        impl: build(impl, args.inner_steps, args.inner_lr, args.device, args.compile_backend)
        for impl in ("ours", "l2l")
    }
    times: dict[str, list[float]] = {impl: [] for impl in steps}
    start = time.perf_counter()
    steps["ours"](batch)  # not timed: compiles when --compile-backend is given
    sync()
    first_step = time.perf_counter() - start
    steps["l2l"](batch)  # the same untimed extra step for learn2learn
    for i in range(args.warmup + args.steps):
        for impl in ("ours", "l2l") if i % 2 else ("l2l", "ours"):
            sync()
            start = time.perf_counter()
            steps[impl](batch)
            sync()
            if i >= args.warmup:
                times[impl].append(time.perf_counter() - start)
    return {**{impl: statistics.median(values) for impl, values in times.items()}, "first_step": first_step}


def run_worker(impl: str, meta_batch: int, inner_steps: int, steps: int, args: argparse.Namespace, trace_every=0):
    command = [
        sys.executable, __file__, "--worker", impl, "--meta-batch", str(meta_batch), "--inner-steps",
        str(inner_steps), "--steps", str(steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
        "--device", args.device, "--n-query", str(args.n_query), "--trace-every", str(trace_every),
    ] + (["--compile-backend", args.compile_backend] if args.compile_backend else [])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if impl != "both":  # memory runs: glibc returns freed memory at once, so RSS follows the live tensors
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"measurement failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="meta-batch 8 and 32, 1 and 5 inner steps, 5 timed steps")
    parser.add_argument("--meta-batch", type=int, nargs="+", default=None)
    parser.add_argument("--inner-steps", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed meta-steps per implementation")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--growth-steps", type=int, default=500, help="meta-steps of the memory-growth run (0: skip)")
    parser.add_argument("--growth-meta-batch", type=int, default=1)
    parser.add_argument("--n-query", type=int, default=5, help="query images per class")
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (same for both)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend for ours (e.g. inductor)")
    parser.add_argument("--repeats", type=int, default=1, help="timing runs per configuration; medians reported")
    parser.add_argument("--worker", choices=["ours", "l2l", "both"], help=argparse.SUPPRESS)
    parser.add_argument("--trace-every", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one measurement; the lists hold a single value here
        args.impl, args.meta_batch, args.inner_steps = args.worker, args.meta_batch[0], args.inner_steps[0]
        print(json.dumps(interleaved_times(args) if args.worker == "both" else worker(args)))
        return
    try:
        import learn2learn  # noqa: F401
    except ImportError:
        sys.exit("learn2learn is not installed: run `bash scripts/install_learn2learn.sh` first.")
    meta_batches = args.meta_batch or ([8, 32] if args.full else [8])
    inner_steps = args.inner_steps or [1, 5]
    timed = args.steps or (5 if args.full else 3)
    print(
        f"device={args.device} threads={args.threads} conv4 {N_WAY}-way {K_SHOT}-shot {args.n_query} queries, "
        f"{IMAGE}x{IMAGE}, second order; time: median of {timed} alternating meta-steps after {args.warmup} warm-up"
    )
    if args.compile_backend:
        print(
            f"ours compiled with torch.compile(backend={args.compile_backend!r}); first meta-step (compiling) untimed"
        )
    if args.repeats > 1:
        print(f"time: median over {args.repeats} runs (fresh processes) of each run's ratio; [min, max] of the ratios")
    print(f"{'meta-batch':>10} {'steps':>5} | {'ours s/step':>11} {'l2l s/step':>10} {'time x':>7} | "
          f"{'ours MiB':>8} {'l2l MiB':>8} {'mem x':>6}")  # fmt: skip
    for mb in meta_batches:
        for steps in inner_steps:
            runs = [run_worker("both", mb, steps, timed, args) for _ in range(args.repeats)]
            ratios = sorted(run["ours"] / run["l2l"] for run in runs)
            # memory: each implementation alone in a fresh process, one measured meta-step
            ours, ref = (run_worker(impl, mb, steps, 1, args) for impl in ("ours", "l2l"))
            t_ours = statistics.median(run["ours"] for run in runs)
            t_ref = statistics.median(run["l2l"] for run in runs)
            m_ours, m_ref = ours["peak_mib"], ref["peak_mib"]
            spread = f" [{ratios[0]:.2f}, {ratios[-1]:.2f}]" if len(runs) > 1 else ""
            first = f"; first step {max(run['first_step'] for run in runs):.0f} s" if args.compile_backend else ""
            print(
                f"{mb:>10} {steps:>5} | {t_ours:>11.3f} {t_ref:>10.3f} {statistics.median(ratios):>6.2f}x | "
                f"{m_ours:>8.1f} {m_ref:>8.1f} {m_ours / max(m_ref, 1e-9):>5.2f}x{spread}{first}",
                flush=True,
            )
    if args.growth_steps > 0:
        n, every = args.growth_steps, max(args.growth_steps // 10, 1)
        print(f"memory over {n} meta-steps (meta-batch {args.growth_meta_batch}, 1 inner step), resident MiB:")
        for impl in ("ours", "l2l"):
            result = run_worker(impl, args.growth_meta_batch, 1, n, args, trace_every=every)
            trace = result["trace"]
            (first_step, first), (last_step, last) = trace[0], trace[-1]
            print(
                f"  {impl:>4}: {first:.1f} MiB at step {first_step}, {last:.1f} MiB at step {last_step} "
                f"(growth {last - first:+.1f} MiB); {result['seconds_per_step']:.3f} s/step; "
                f"every {every} steps: {[round(m, 1) for _, m in trace]}",
                flush=True,
            )


if __name__ == "__main__":
    main()
