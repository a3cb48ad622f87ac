"""Same seed, same config: identical metrics for every method; another seed: different ones.
Every checkpoint a method writes loads with torch.load(..., weights_only=True)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import EXPERIMENTS, run_cli

SHORT = [
    "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1", "--trainer.max_steps", "3",
    "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.check_val_every_n_epoch", "1",
    "--trainer.num_sanity_val_steps", "0", "--trainer.logger", "false", "--test_after_fit", "false",
]  # fmt: skip
EPISODES = [
    "--data.init_args.train_episodes", "6", "--data.init_args.eval_episodes", "4", "--data.init_args.n_query", "3",
]  # fmt: skip

METHODS = {
    "Classifier": ("quickstart.yaml", []),
    "Classifier+augment": ("digits/lenet_10pc_augment.yaml", []),
    "ProtoNet": ("fewshot/protonet_digits_5w1s.yaml", EPISODES),
    "MAML": ("fewshot/maml_digits_5w1s.yaml", EPISODES),
    "ANIL": ("fewshot/maml_digits_5w1s.yaml", [*EPISODES, "--model", "ssl_lightning.methods.anil.ANIL"]),
    "MetaSGD": ("fewshot/maml_digits_5w1s.yaml", [*EPISODES, "--model", "ssl_lightning.methods.metasgd.MetaSGD"]),
    "Autoencoder": ("pretrain/autoencoder_digits.yaml", []),
    "FixMatch": ("semisup/fixmatch_digits.yaml", []),
    "PseudoLabel": ("semisup/pseudolabel_digits.yaml", []),
    "FlexMatch": ("semisup/flexmatch_digits.yaml", []),
    "FreeMatch": ("semisup/freematch_digits.yaml", []),
    "SoftMatch": ("semisup/softmatch_digits.yaml", []),
    "SimCLR": ("pretrain/simclr_digits.yaml", []),
    "BYOL": ("pretrain/byol_digits.yaml", []),
    "MoCo": ("pretrain/moco_digits.yaml", []),
    "DINO": ("pretrain/dino_digits.yaml", []),
}


def run(config: str, extra: list[str], seed: int, workdir: Path) -> tuple[dict[str, float], Path | None]:
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # relative outputs (encoder exports) of the two runs must not meet
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / config),
        *SHORT,
        *extra,
        "--seed_everything",
        str(seed),
        "--trainer.default_root_dir",
        str(workdir),
    ]
    cli = run_cli(*args)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    checkpoint = cli.trainer.checkpoint_callback
    path = Path(checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint else None
    return metrics, path


@pytest.mark.parametrize("method", list(METHODS))
def test_same_seed_same_metrics_and_safe_checkpoints(method, chdir_tmp):
    config, extra = METHODS[method]
    first, checkpoint = run(config, extra, seed=0, workdir=chdir_tmp / "a")
    again, _ = run(config, extra, seed=0, workdir=chdir_tmp / "b")
    assert first and first == again, f"{method}: same seed gave different metrics"

    assert checkpoint is not None and checkpoint.is_file(), f"{method} wrote no checkpoint"
    state = torch.load(checkpoint, weights_only=True)  # plain types only: no pickled objects
    assert state["state_dict"], method


@pytest.mark.parametrize("method", ["Classifier", "ProtoNet", "FixMatch"])
def test_another_seed_gives_other_metrics(method, chdir_tmp):
    config, extra = METHODS[method]
    seed_args = ["--data.init_args.seed", "1"] if method == "ProtoNet" else []
    first, _ = run(config, extra, seed=0, workdir=chdir_tmp / "a")
    other, _ = run(config, [*extra, *seed_args], seed=1, workdir=chdir_tmp / "b")
    assert first != other
