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
