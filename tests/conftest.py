"""Shared fixtures: tiny datasets written in their real on-disk formats."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, per_class_train: int = 10, per_class_test: int = 4, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in the official python-pickle layout under ``root/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(per_class: int, name: str) -> dict:
        labels = [c for c in range(10) for _ in range(per_class)]
        rng.shuffle(labels)
        # Class-dependent mean colour so a model can learn something.
        data = np.stack([np.clip(rng.normal(20 * c + 30, 30, 3072), 0, 255) for c in labels]).astype(np.uint8)
        # The official files are Python 2 pickles of str-keyed dicts; protocol 2 with str keys reads back the same.
        return {"batch_label": name, "labels": labels, "data": data, "filenames": ["x.png"] * len(labels)}

    per_batch = max(1, per_class_train // 5)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {i}"), f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(per_class_test, "testing batch"), f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 10, "num_vis": 3072}, f, protocol=2)
    return root


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for a test: on a shared 2-core machine extra threads spin, and small
    convolution, LSTM and transformer steps run up to ~10x slower. Opt in per file with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A tiny CIFAR-10 (10 classes x 10 train, x 4 test) in the official pickle format."""
    return write_cifar10(tmp_path / "cifar")


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary working directory so lightning_logs/ never lands in the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
