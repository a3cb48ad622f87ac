"""Checks that need a CUDA device; skipped (still collected) on CPU-only machines such as CI.

* batched augmentation on CUDA equals the CPU result for the same seed (parameters drawn on the CPU
  for both, see :mod:`tests.gpu.cross_device`), and a CUDA generator reproduces itself;
* a ``Classifier``, ``FixMatch`` and ``MAML`` (second order) training step in ``bf16-mixed``;
* DDP over 2 GPUs (NCCL) with the same invariants as the 2-process CPU test, when 2 GPUs are present;
* the decoded cache's memory-mapped batches feed on-device augmentation on CUDA.

    pytest -m gpu tests/gpu -q
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.gpu.cross_device import CpuDrawnGenerator, cpu_drawn, every_op
from tests.helpers import EXPERIMENTS, fast_dev_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def assert_nearly_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    """Float differences of grid_sample/colour maths between devices are tiny; thresholded ops
    (solarize, posterize) may flip the odd pixel that sits on a threshold, so allow 0.1 % of pixels."""
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = (got - want).abs()
    assert diff.mean() < 1e-4, f"mean |cuda - cpu| = {diff.mean():.2e}"
    assert (diff > 1e-3).float().mean() <= 1e-3, f"{(diff > 1e-3).sum()} of {diff.numel()} pixels differ"


@pytest.mark.parametrize("op", every_op(), ids=lambda op: type(op).__name__)
def test_augmentation_on_cuda_equals_cpu_for_the_same_seed(op):
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want = op(x.clone(), torch.Generator().manual_seed(7))
    with cpu_drawn():
        got = op(x.cuda(), CpuDrawnGenerator(7, "cuda"))
    assert got.is_cuda
    assert_nearly_equal(got.cpu(), want)


def test_cuda_generator_reproduces_the_pipeline():
    from ssl_lightning.data.augment import Augmentations, augmentation_generator

    pipeline = Augmentations(every_op())
    x = torch.rand(16, 3, 32, 32, device="cuda")
    first = pipeline(x, augmentation_generator(0, 1, 2, "cuda"))
    again = pipeline(x, augmentation_generator(0, 1, 2, "cuda"))
    other = pipeline(x, augmentation_generator(0, 1, 3, "cuda"))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize(
    "config",
    ["quickstart.yaml", "semisup/fixmatch_digits.yaml", "fewshot/maml_digits_5w1s.yaml"],
    ids=["Classifier", "FixMatch", "MAML"],
)
def test_training_step_in_bf16_mixed(config, chdir_tmp):
    cli = fast_dev_run(
        EXPERIMENTS / config,
        "--trainer.accelerator", "gpu",
        "--trainer.devices", "1",
        "--trainer.precision", "bf16-mixed",
        "--test_after_fit", "false",
    )  # fmt: skip
    trainer = cli.trainer
    assert trainer.state.finished and trainer.precision == "bf16-mixed"
    assert next(cli.model.parameters()).is_cuda and next(cli.model.parameters()).dtype == torch.float32
    loss = float(trainer.callback_metrics["train/loss"])
    assert math.isfinite(loss), loss


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize("kind", ["classifier", "episodic"])
def test_ddp_two_gpus(kind, tmp_path):
    from tests.test_ddp import SYNCED, run_worker

    rank0, rank1 = run_worker(kind, tmp_path, accelerator="gpu")
    assert (rank0["rank"], rank1["rank"], rank0["world_size"]) == (0, 1, 2)
    assert set(rank0["seen"]["train"]).isdisjoint(rank1["seen"]["train"])
    assert set(rank0["seen"]["val"]).isdisjoint(rank1["seen"]["val"])
    for name in SYNCED:
        assert rank0["metrics"][name] == pytest.approx(rank1["metrics"][name], abs=1e-5), name


def test_cached_folder_batches_augment_on_cuda(tmp_path):
    from ssl_lightning.data.augment import HorizontalFlip, PadCrop
    from ssl_lightning.data.folder import ImageFolderDataModule
    from ssl_lightning.data.memmap import MemmapImages
    from tests.data.test_decoded_cache import write_tree

    write_tree(tmp_path / "data" / "train", per_class=8, size=16)
    data = ImageFolderDataModule(
        tmp_path / "data", image_size=16, channels=3, cache_dir=str(tmp_path / "cache"), cache_workers=0,
        batch_size=8, augment=[HorizontalFlip(), PadCrop(2)],
    )  # fmt: skip
    data.setup()
    assert isinstance(data.datasets["labelled"].images, MemmapImages)
    images, labels = next(iter(data.train_dataloader()))
    x, y = data.train_batch_transform(data.to_float(images.cuda()), labels.cuda())
    assert x.is_cuda and x.shape == (8, 3, 16, 16) and torch.isfinite(data.standardize(x)).all()
