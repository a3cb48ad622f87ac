"""The data-toolkit experiment YAMLs run (fast_dev_run), the grid callback logs, resumes reproduce."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import EXPERIMENTS, fast_dev_run, run_cli

CIFAR_YAMLS = [
    EXPERIMENTS / "cifar10" / "lenet_augment.yaml",
    EXPERIMENTS / "cifar10" / "lenet_100pc.yaml",
    EXPERIMENTS / "cifar10" / "lenet_100pc_augment.yaml",
    EXPERIMENTS / "cifar10" / "lenet_100pc_mixup.yaml",
]
DIGITS_YAMLS = [
    EXPERIMENTS / "digits" / "lenet_10pc.yaml",
    EXPERIMENTS / "digits" / "lenet_10pc_augment.yaml",
    EXPERIMENTS / "digits" / "lenet_longtail_balanced.yaml",
]


@pytest.mark.parametrize("config", CIFAR_YAMLS, ids=lambda p: p.name)
def test_cifar_yamls_fast_dev_run(config, cifar_root, chdir_tmp):
    overrides = ["--data.init_args.root", str(cifar_root), "--data.init_args.val_size", "20"]
    if "100pc" in config.name:
        overrides += ["--data.init_args.labels_per_class", "5"]  # the tiny fixture has 8 per class
    cli = fast_dev_run(config, *overrides, "--test_after_fit", "false")
    assert cli.trainer.state.finished
    assert "train/loss" in cli.trainer.callback_metrics


@pytest.mark.parametrize("config", DIGITS_YAMLS, ids=lambda p: p.name)
def test_digits_yamls_fast_dev_run(config, chdir_tmp):
    cli = fast_dev_run(config, "--test_after_fit", "false")
    assert cli.trainer.state.finished


def test_digits_augment_yaml_trains_with_augmentation_and_grid(chdir_tmp):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli = run_cli(
        "fit",
        "--config",
        str(EXPERIMENTS / "digits" / "lenet_10pc_augment.yaml"),
        "--trainer.max_steps",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--test_after_fit",
        "false",
    )
    assert len(cli.datamodule.augment) == 2
    events = EventAccumulator(cli.trainer.logger.log_dir, size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert "augment/grid" in events.Tags()["images"]
    image = events.Images("augment/grid")[0]
    assert image.width > 8 * 8 and image.height > 10 * 8  # 8 columns x 10 rows of 8x8 digits
    assert "data/labelled_class_counts/text_summary" in events.Tags()["tensors"]


def test_typo_in_augment_yaml_is_an_error(chdir_tmp, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data:\n  init_args:\n    augment:\n"
        "      - {class_path: ssl_lightning.data.augment.RandomRotation, init_args: {degree: [-5, 5]}}\n"
    )
    with pytest.raises(SystemExit):
        fast_dev_run(EXPERIMENTS / "digits" / "lenet_10pc.yaml", "--config", str(bad))


def _fit(*args: str) -> object:
    cli = run_cli(
        "fit",
        "--config",
        str(EXPERIMENTS / "digits" / "lenet_10pc_augment.yaml"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.limit_val_batches",
        "1",
        "--test_after_fit",
        "false",
        "--data.init_args.mix",
        "ssl_lightning.data.mixing.MixUp",
        *args,
    )
    return cli


@pytest.mark.slow
def test_resumed_run_reproduces_uninterrupted_augmented_run(chdir_tmp):
    # final weights are compared in memory: last.ckpt is only rewritten when val/acc improves
    straight = _fit("--trainer.max_epochs", "2").model.state_dict()
    trainer = _fit("--trainer.max_epochs", "1").trainer
    # The CLI's default callbacks: best on val/acc, then latest (the one that writes last.ckpt).
    first = Path(next(c.last_model_path for c in trainer.checkpoint_callbacks if c.last_model_path))
    resumed = _fit("--trainer.max_epochs", "2", "--ckpt_path", str(first)).model.state_dict()
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=name)


def test_input_pipeline_benchmark_runs_small(monkeypatch, capsys):
    import sys

    from benchmarks import input_pipeline

    args = ["--images", "400", "--measure", "128", "--batch-size", "64", "--workers", "0", "--repeats", "1"]
    monkeypatch.setattr(sys, "argv", ["input_pipeline.py", *args])
    threads = torch.get_num_threads()
    try:
        input_pipeline.main()
    finally:
        torch.set_num_threads(threads)  # main() sets the benchmark's thread count
    out = capsys.readouterr().out
    assert "cifar: per-sample" in out and "heavy: per-sample" in out and "x" in out.splitlines()[-1]
