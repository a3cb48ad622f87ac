"""fast_dev_run of every semi-/self-supervised experiment config (CIFAR-10 ones on a tiny fake CIFAR-10)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import EXPERIMENTS, fast_dev_run

DIGITS = [
    EXPERIMENTS / "semisup" / "fixmatch_digits.yaml",
    EXPERIMENTS / "semisup" / "pseudolabel_digits.yaml",
    EXPERIMENTS / "semisup" / "flexmatch_digits.yaml",
    EXPERIMENTS / "semisup" / "freematch_digits.yaml",
    EXPERIMENTS / "semisup" / "softmatch_digits.yaml",
]
CIFAR = [
    EXPERIMENTS / "semisup" / "fixmatch_cifar10_250.yaml",
    EXPERIMENTS / "semisup" / "fixmatch_cifar10_250_conv4.yaml",
    EXPERIMENTS / "semisup" / "flexmatch_cifar10_250_conv4.yaml",
    EXPERIMENTS / "semisup" / "freematch_cifar10_250_conv4.yaml",
    EXPERIMENTS / "semisup" / "softmatch_cifar10_250_conv4.yaml",
    EXPERIMENTS / "pretrain" / "simclr_cifar10.yaml",
    *(EXPERIMENTS / "pretrain" / f"{method}_cifar10.yaml" for method in ("byol", "moco", "dino")),
    EXPERIMENTS / "pretrain" / "dino_multicrop_cifar10.yaml",
]
MOMENTUM_DIGITS = ["byol", "moco", "dino"]  # experiments/pretrain/<method>_digits.yaml
# the tiny CIFAR-10 has 10 training images per class: hold out 20, label 2 per class
SOURCE = "--data.init_args.source.init_args"
TINY_CIFAR = (f"{SOURCE}.val_size", "20", f"{SOURCE}.labels_per_class", "2", "--test_after_fit", "false")

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.mark.parametrize("config", DIGITS, ids=lambda p: p.stem)
def test_digits_semisup_config_runs(config, chdir_tmp):
    cli = fast_dev_run(config, "--test_after_fit", "false")
    assert "train/mask_rate" in cli.trainer.callback_metrics and "val/acc" in cli.trainer.callback_metrics
    for name in cli.model.extra_stat_names:  # the adaptive methods' thresholds (FlexMatch, FreeMatch, SoftMatch)
        assert f"train/{name}" in cli.trainer.callback_metrics, name


@pytest.mark.parametrize("config", CIFAR, ids=lambda p: p.stem)
def test_cifar_configs_run(config, chdir_tmp, cifar_root):
    cli = fast_dev_run(config, f"{SOURCE}.root", str(cifar_root), *TINY_CIFAR)
    assert "train/loss" in cli.trainer.callback_metrics


def test_simclr_digits_then_probe_of_its_encoder(chdir_tmp):
    fast_dev_run(EXPERIMENTS / "pretrain" / "simclr_digits.yaml")
    encoder = chdir_tmp / "checkpoints" / "simclr_digits_encoder.pt"
    assert encoder.is_file()
    probe = EXPERIMENTS / "transfer" / "simclr_probe_digits.yaml"
    cli = fast_dev_run(probe, "--test_after_fit", "false")
    saved = torch.load(encoder, weights_only=True)
    loaded = cli.model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # the probe starts from the SimCLR encoder
    trainable = [n for n, p in cli.model.named_parameters() if p.requires_grad]
    assert trainable == ["backbone.head.weight", "backbone.head.bias"]


@pytest.mark.parametrize("method", MOMENTUM_DIGITS)
def test_momentum_method_digits_then_probe_of_its_encoder(method, chdir_tmp):
    cli = fast_dev_run(EXPERIMENTS / "pretrain" / f"{method}_digits.yaml")
    assert "train/momentum" in cli.trainer.callback_metrics and "val/knn_acc" in cli.trainer.callback_metrics
    encoder = chdir_tmp / "checkpoints" / f"{method}_digits_encoder.pt"
    probe = EXPERIMENTS / "transfer" / "simclr_probe_digits.yaml"
    cli = fast_dev_run(probe, "--model.init_args.backbone_checkpoint", str(encoder), "--test_after_fit", "false")
    saved = torch.load(encoder, weights_only=True)
    loaded = cli.model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # the probe starts from this encoder


def test_probe_without_checkpoint_is_the_random_init_baseline(chdir_tmp):
    probe = EXPERIMENTS / "transfer" / "simclr_probe_digits.yaml"
    cli = fast_dev_run(probe, "--model.init_args.backbone_checkpoint", "null", "--test_after_fit", "false")
    assert cli.model.hparams.backbone_checkpoint is None


def test_simclr_cifar10_then_probe_of_its_encoder(chdir_tmp, cifar_root):
    fast_dev_run(EXPERIMENTS / "pretrain" / "simclr_cifar10.yaml", f"{SOURCE}.root", str(cifar_root), *TINY_CIFAR)
    encoder = chdir_tmp / "checkpoints" / "simclr_cifar10_encoder.pt"
    assert encoder.is_file()
    probe = EXPERIMENTS / "transfer" / "simclr_probe_cifar10.yaml"
    tiny = ("--data.init_args.root", str(cifar_root), "--data.init_args.val_size", "20", "--test_after_fit", "false")
    tiny = (*tiny, "--data.init_args.labels_per_class", "2")
    cli = fast_dev_run(probe, *tiny)
    saved = torch.load(encoder, weights_only=True)
    loaded = cli.model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())  # the probe starts from the SimCLR encoder
    trainable = [n for n, p in cli.model.named_parameters() if p.requires_grad]
    assert trainable == ["backbone.head.weight", "backbone.head.bias"]
    # the random-init reference: same probe, no encoder file
    cli = fast_dev_run(probe, *tiny, "--model.init_args.backbone_checkpoint", "null")
    assert not torch.equal(cli.model.backbone.features[0].weight, saved["features.0.weight"])


def test_text_minilm_fixmatch_config_runs_on_a_tiny_csv(chdir_tmp):
    from tests.test_experiments_text import write_files

    paths = write_files(chdir_tmp, per_class=10)
    data = "--data.init_args"  # flat, as in every text config
    text = f"{data}.train_file", paths["train"], f"{data}.val_size", "4", f"{data}.labels_per_class", "2"
    cli = fast_dev_run(EXPERIMENTS / "semisup" / "text_minilm_8pc.yaml", *text, "--test_after_fit", "false")
    metrics = cli.trainer.callback_metrics
    assert "train/mask_rate" in metrics and "train/loss_u" in metrics and "val/acc" in metrics
    assert cli.datamodule.num_unlabelled == len(cli.datamodule.datasets["all"])  # every training text
    assert cli.datamodule.labels_per_class == 2 and cli.datamodule.labelled_class_counts == [2, 2]
    pool = cli.datamodule.unlabelled
    assert pool.strong.p_rd == 0.2 and pool.token_dropout == 0.1 and pool.mu == 2
    # the pool's own options from the command line, and FlexMatch's indices
    flex = "--model.class_path", "ssl_lightning.methods.flexmatch.FlexMatch", f"{data}.unlabelled.indices", "true"
    cli = fast_dev_run(EXPERIMENTS / "semisup" / "text_minilm_8pc.yaml", *text, *flex, f"{data}.unlabelled.mu", "3",
                       "--test_after_fit", "false")  # fmt: skip
    assert cli.datamodule.unlabelled.mu == 3 and len(cli.model.selected_label) == cli.datamodule.num_unlabelled
