"""fast_dev_run of every pretraining / transfer YAML (CIFAR-10 ones on the tiny fake CIFAR-10)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import EXPERIMENTS, fast_dev_run

PRETRAIN = EXPERIMENTS / "pretrain"
TRANSFER = EXPERIMENTS / "transfer"
NO_TEST = ("--test_after_fit", "false")
SMALL_EFFNET = ("--model.init_args.backbone.init_args.input_size", "32")


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_autoencoder_digits_then_its_encoder_in_a_classifier(chdir_tmp):
    cli = fast_dev_run(PRETRAIN / "autoencoder_digits.yaml", *NO_TEST)
    encoder_file = chdir_tmp / "checkpoints" / "ae_digits_encoder.pt"
    assert cli.trainer.state.finished and encoder_file.is_file()
    cli = fast_dev_run(TRANSFER / "ae_encoder_digits_limited.yaml", *NO_TEST)
    assert cli.model.backbone.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    saved = torch.load(encoder_file, weights_only=True)
    # from scratch and as a linear probe
    fast_dev_run(TRANSFER / "ae_encoder_digits_limited.yaml", *NO_TEST, "--model.init_args.backbone_checkpoint", "null")
    cli = fast_dev_run(
        TRANSFER / "ae_encoder_digits_limited.yaml", *NO_TEST, "--model.init_args.finetune", "linear_probe"
    )
    assert cli.model.backbone_frozen
    assert torch.equal(cli.model.backbone.features[0].weight, saved["features.0.weight"])


def test_effnet_lite0_digits_probe(chdir_tmp):
    cli = fast_dev_run(TRANSFER / "effnet_lite0_digits_probe.yaml", *NO_TEST, *SMALL_EFFNET)
    assert cli.trainer.state.finished
    assert cli.datamodule.cache["labelled"].tensors[0].shape == (100, 1280)


def test_effnet_lite0_digits_limited(chdir_tmp):
    cli = fast_dev_run(TRANSFER / "effnet_lite0_digits_limited.yaml", *NO_TEST, *SMALL_EFFNET)
    assert cli.trainer.state.finished


def test_source_then_target_digits(chdir_tmp):
    # fast_dev_run turns ModelCheckpoint off, so write the source checkpoint the target expects ourselves.
    cli = fast_dev_run(TRANSFER / "source_digits_0to4.yaml", *NO_TEST)
    (chdir_tmp / "checkpoints" / "source_digits_0to4").mkdir(parents=True)
    cli.trainer.save_checkpoint(chdir_tmp / "checkpoints" / "source_digits_0to4" / "best.ckpt")
    cli = fast_dev_run(TRANSFER / "target_digits_5to9.yaml", *NO_TEST)
    assert cli.datamodule.class_names == ["5", "6", "7", "8", "9"]


# ---- CIFAR-10 (tiny fake copy in the official format: 10 train images per class, 4 test) -----
def cifar(root, key: str = "--data.init_args") -> tuple[str, ...]:
    return (f"{key}.root", str(root), f"{key}.val_size", "20")


def test_autoencoder_cifar10_then_encoder_in_a_classifier(chdir_tmp, cifar_root):
    fast_dev_run(PRETRAIN / "autoencoder_cifar10.yaml", *NO_TEST, *cifar(cifar_root))
    assert (chdir_tmp / "checkpoints" / "ae_cifar10_encoder.pt").is_file()
    cli = fast_dev_run(
        TRANSFER / "ae_encoder_cifar10_limited.yaml",
        *NO_TEST,
        *cifar(cifar_root),
        "--data.init_args.labels_per_class",
        "5",
    )
    assert cli.trainer.state.finished


def test_effnet_lite0_cifar10_limited(chdir_tmp, cifar_root):
    cli = fast_dev_run(
        TRANSFER / "effnet_lite0_cifar10_limited.yaml",
        *NO_TEST,
        *SMALL_EFFNET,
        *cifar(cifar_root),
        "--data.init_args.labels_per_class",
        "2",
        "--data.init_args.batch_size",
        "4",
    )
    assert cli.model.backbone.model.conv_stem.weight.shape == (32, 3, 3, 3)


def test_effnet_lite0_cifar10_probe(chdir_tmp, cifar_root):
    source = "--data.init_args.source.init_args"
    cli = fast_dev_run(
        TRANSFER / "effnet_lite0_cifar10_probe.yaml",
        *NO_TEST,
        *SMALL_EFFNET,
        *cifar(cifar_root, source),
        f"{source}.labels_per_class",
        "2",
    )
    assert cli.datamodule.cache["labelled"].tensors[0].shape == (20, 1280)


def test_source_then_target_cifar10(chdir_tmp, cifar_root):
    source = "--data.init_args.source.init_args"
    cli = fast_dev_run(TRANSFER / "source_cifar10_0to4.yaml", *NO_TEST, *cifar(cifar_root, source))
    (chdir_tmp / "checkpoints" / "source_cifar10_0to4").mkdir(parents=True)
    cli.trainer.save_checkpoint(chdir_tmp / "checkpoints" / "source_cifar10_0to4" / "best.ckpt")
    cli = fast_dev_run(
        TRANSFER / "target_cifar10_5to9.yaml", *NO_TEST, *cifar(cifar_root, source), f"{source}.labels_per_class", "2"
    )
    assert cli.datamodule.class_names == ["dog", "frog", "horse", "ship", "truck"]
