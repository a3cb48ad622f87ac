"""The scale benchmarks run end to end on tiny sizes (their figures are only meaningful at full size)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from benchmarks import data_scale, gpu_throughput


def test_gpu_throughput_runs_on_cpu(monkeypatch, capsys):
    args = ["--device", "cpu", "--images", "256", "--measure", "128", "--batch-size", "64", "--workers", "0"]
    monkeypatch.setattr(sys, "argv", ["gpu_throughput.py", *args, "--meta-steps", "1", "--meta-batch", "2"])
    threads = torch.get_num_threads()
    try:
        gpu_throughput.main()
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "on-device augmentation" in out and "ratio" in out and "MAML meta-batch 2" in out


def test_data_scale_pieces_on_a_tiny_folder(tmp_path, capsys):
    args = argparse.Namespace(
        workdir=str(tmp_path), images=40, size=8, workers=0, loader_workers=0, batch_size=16, measure=32, repeats=1
    )
    args.passthrough = [
        "--workdir", str(tmp_path), "--images", "40", "--size", "8", "--workers", "0", "--batch-size", "16",
    ]  # fmt: skip
    data_scale.write_folder(tmp_path, 40, 8)
    assert len(list((tmp_path / "train").rglob("*.jpg"))) == 40
    for kind in ("startup-memory", "startup-cold", "startup-warm"):
        args.child = kind
        data_scale.child(args)
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["seconds"] > 0
    assert list((tmp_path / "cache").glob("train-*/manifest.json"))
    rates = data_scale.throughput(args)
    assert rates["memory"] > 0 and rates["cache"] > 0
    memory = data_scale.memory_per_rank(args, "cache", 1)  # one real child process, as a rank
    assert {"VmHWM", "VmRSS", "RssAnon", "RssFile", "Pss"} <= set(memory)
