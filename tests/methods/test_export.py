"""Encoder exports never overwrite an existing file, and the check happens before training."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.methods import Autoencoder, SimCLR
from ssl_lightning.methods.export import save_encoder_state
from ssl_lightning.nets import LeNet


def lenet_encoder() -> LeNet:
    return LeNet(num_classes=0, in_chans=1, input_size=8, padding=2)


def test_save_encoder_state_refuses_to_overwrite(tmp_path):
    path = save_encoder_state(lenet_encoder(), tmp_path / "enc.pt")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite.*enc-2.pt"):
        save_encoder_state(lenet_encoder(), path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "make",
    [
        lambda p: Autoencoder(lenet_encoder(), image_shape=(1, 8, 8), encoder_path=str(p)),
        lambda p: SimCLR(lenet_encoder(), projection_dim=8, encoder_path=str(p)),
    ],
    ids=["Autoencoder", "SimCLR"],
)
def test_existing_encoder_path_fails_before_training(make, chdir_tmp):
    path = chdir_tmp / "mine.pt"
    torch.save({"precious": torch.ones(1)}, path)
    model = make(path)
    trainer = pl.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(FileExistsError, match="encoder_path .*mine.pt already exists"):
        trainer.fit(model, datamodule=DigitsDataModule(train_pool="all"))
    assert trainer.global_step == 0
    assert torch.load(path, weights_only=True)["precious"].item() == 1.0
