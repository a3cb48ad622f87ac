"""SetFitClassifier: the pair loss by hand, body-then-head phases, checkpoint reload, the YAML on tiny files."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.methods.setfit import SetFitClassifier, cosine_pair_loss
from tests.helpers import EXPERIMENTS, fast_dev_run
from tests.test_experiments_text import data_args, write_files

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_cosine_pair_loss_by_hand():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # Same-class pairs similar, different-class pairs orthogonal: nothing to learn.
    assert cosine_pair_loss(torch.stack([e1, 2 * e1, e2]), torch.tensor([0, 0, 1])) == 0
    # Two same-class examples at similarity 0: error (0 - 1)^2.
    assert cosine_pair_loss(torch.stack([e1, e2]), torch.tensor([0, 0])) == 1
    # One positive pair (error 0), two negative pairs at similarity 1 (error 1 each): (0 + 1) / 2, not 2 / 3.
    assert cosine_pair_loss(torch.stack([e1, e1, e1]), torch.tensor([0, 0, 1])) == pytest.approx(0.5)
    assert cosine_pair_loss(e1[None], torch.tensor([0])) == 0


class TinyNet(nn.Module):
    """A two-layer backbone with the timm contract: float[B, 4] -> float[B, 2]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.num_features, self.num_classes = 8, 2
        self.head = nn.Linear(8, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.body(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class Snapshots(pl.Callback):
    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.states.append(copy.deepcopy(pl_module.backbone.state_dict()))


def train(model: SetFitClassifier, epochs: int, callbacks: list[pl.Callback], root) -> pl.Trainer:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=generator)
    y = torch.arange(16) % 2
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
        default_root_dir=root,
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=8))
    return trainer


def test_body_learns_first_then_only_the_head(tmp_path):
    model = SetFitClassifier(TinyNet(), optimizer=torch.optim.SGD, contrastive_epochs=2, backbone_lr_multiplier=1.0)
    start = copy.deepcopy(model.backbone.state_dict())
    snapshots = Snapshots()
    trainer = train(model, 3, [snapshots], tmp_path)
    after = snapshots.states
    for epoch in (0, 1):  # pair phase: the body moves, the head does not
        before = start if epoch == 0 else after[epoch - 1]
        assert not torch.equal(after[epoch]["body.weight"], before["body.weight"])
        assert torch.equal(after[epoch]["head.weight"], start["head.weight"])
    # head phase: the body is frozen, the head learns
    assert torch.equal(after[2]["body.weight"], after[1]["body.weight"])
    assert not torch.equal(after[2]["head.weight"], after[1]["head.weight"])
    assert model.backbone_frozen
    assert "train/pair_loss_epoch" in trainer.logged_metrics and "train/loss" in trainer.logged_metrics

    path = tmp_path / "setfit.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["contrastive_epochs"] == 2
    restored = SetFitClassifier.load_from_checkpoint(path, backbone=TinyNet(), optimizer=torch.optim.SGD)
    assert restored.contrastive_epochs == 2
    assert torch.equal(restored.backbone.head.weight, model.backbone.head.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="contrastive_epochs must be >= 0"):
        SetFitClassifier(TinyNet(), contrastive_epochs=-1)
    model = SetFitClassifier(TinyNet(), contrastive_epochs=0)
    assert model.backbone_frozen  # no pair phase: a linear probe from the start


@pytest.mark.parametrize("contrastive_epochs", ["5", "0"])
def test_setfit_yaml_fast_dev_run(chdir_tmp, contrastive_epochs):
    paths = write_files(chdir_tmp)
    args = data_args(paths)
    args = [*args[:2], *args[4:], "--data.init_args.val_size", "4"]  # no val_file: held out of train
    cli = fast_dev_run(
        EXPERIMENTS / "text" / "setfit_8pc.yaml", *args, "--model.init_args.contrastive_epochs", contrastive_epochs
    )
    assert cli.trainer.state.finished
    assert len(cli.datamodule.datasets["labelled"]) == 16
    logged = cli.trainer.logged_metrics
    assert ("train/pair_loss_epoch" in logged) == (contrastive_epochs == "5")
    assert ("train/loss" in logged) == (contrastive_epochs == "0")
