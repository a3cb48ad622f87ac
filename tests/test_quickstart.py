"""The README's main command works end to end."""

from __future__ import annotations

import torch

from tests.helpers import EXPERIMENTS, fast_dev_run, run_cli


def test_quickstart_fast_dev_run(chdir_tmp):
    cli = fast_dev_run(EXPERIMENTS / "quickstart.yaml", "--test_after_fit", "false")
    assert cli.trainer.state.finished


def test_quickstart_trains_and_tests_best_checkpoint(chdir_tmp):
    cli = run_cli(
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "--trainer.max_epochs",
        "3",
        "--trainer.accelerator",
        "cpu",
    )
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best.endswith(".ckpt")
    # test_after_fit ran the test loop on the best checkpoint
    assert cli.trainer.callback_metrics["test/acc"] > 0.8
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["hyper_parameters"]["backbone"]["class_path"] == "ssl_lightning.nets.LeNet"
    assert (chdir_tmp / "lightning_logs" / "version_0").is_dir()


def test_progress_bar_and_summary_can_be_switched_off_by_flag(chdir_tmp):
    cli = fast_dev_run(EXPERIMENTS / "quickstart.yaml", "--test_after_fit", "false",
                       "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")
    names = [type(callback).__name__ for callback in cli.trainer.callbacks]
    assert cli.trainer.state.finished and cli.trainer.progress_bar_callback is None
    assert not any(name.endswith(("ProgressBar", "ModelSummary")) for name in names), names
    assert sum(name == "ModelCheckpoint" for name in names) == 2  # the other defaults stay
