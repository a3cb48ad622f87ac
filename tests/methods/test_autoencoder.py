"""Autoencoder: learning, denoising, the saved encoder's transfer into a Classifier, image logging."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.methods.autoencoder import Autoencoder
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.nets import LeNet
from ssl_lightning.nets.decoder import ConvDecoder
from ssl_lightning.nets.pretrained import TimmBackbone

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def encoder() -> LeNet:
    return LeNet(num_classes=0, in_chans=1, input_size=8, padding=2)


def trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def test_reconstruction_loss_falls_on_a_tiny_dataset():
    pl.seed_everything(0)
    dm = DigitsDataModule(batch_size=32, val_size=32, train_pool="all")
    dm.setup("fit")
    x = dm.standardize(dm.to_float(dm.datasets["val"].images))
    model = Autoencoder(encoder(), image_shape=(1, 8, 8), optimizer=lambda p: torch.optim.Adam(p, lr=0.003))
    model.eval()
    with torch.no_grad():
        before = model.reconstruction_loss(model(x), x).item()
    trainer(max_steps=30, limit_val_batches=0).fit(model, datamodule=dm)
    model.eval()
    with torch.no_grad():
        after = model.reconstruction_loss(model(x), x).item()
    assert after < 0.6 * before


def test_encoder_saved_by_the_autoencoder_reproduces_its_features_in_a_classifier(chdir_tmp):
    pl.seed_everything(0)
    path = chdir_tmp / "ckpt" / "encoder.pt"
    model = Autoencoder(encoder(), image_shape=(1, 8, 8), noise="mask", encoder_path=str(path))
    t = trainer(max_steps=3, limit_val_batches=0)
    t.fit(model, datamodule=DigitsDataModule(batch_size=16, train_pool="all"))
    t.save_checkpoint(chdir_tmp / "ae.ckpt")
    assert path.is_file()
    x = torch.randn(6, 1, 8, 8)
    model.eval()
    expected = model.encoder.forward_features(x)
    for checkpoint in (path, chdir_tmp / "ae.ckpt"):
        classifier = Classifier(LeNet(10, 1, 8, 2), backbone_checkpoint=str(checkpoint)).eval()
        assert torch.equal(classifier.backbone.forward_features(x), expected)
    # and the encoder really trained: a fresh LeNet differs
    assert not torch.equal(LeNet(10, 1, 8, 2).eval().forward_features(x), expected)


def test_corruption_is_seeded_and_does_what_it_says():
    model = Autoencoder(encoder(), image_shape=(1, 8, 8), noise="mask", noise_level=0.5)
    x = torch.rand(64, 1, 8, 8) + 0.1
    masked = model.corrupt(x)
    assert torch.equal(masked, model.corrupt(x))  # same (seed, epoch, step) -> same mask
    assert 0.4 < (masked == 0).float().mean().item() < 0.6
    assert torch.equal(masked[masked != 0], x[masked != 0])
    gaussian = Autoencoder(encoder(), image_shape=(1, 8, 8), noise="gaussian", noise_level=0.1).corrupt(x)
    assert 0.08 < (gaussian - x).std().item() < 0.12
    assert torch.equal(Autoencoder(encoder(), image_shape=(1, 8, 8)).corrupt(x), x)


def test_shape_and_range_errors_are_clear():
    model = Autoencoder(encoder(), image_shape=(1, 8, 8), loss="bce")
    model.trainer = None
    with pytest.raises(ValueError, match=r"images of shape \(3, 8, 8\) but image_shape is \(1, 8, 8\)"):
        model._shared_step((torch.rand(2, 3, 8, 8), None), "val")
    with pytest.raises(ValueError, match="needs images in \\[0, 1\\].*normalize: false"):
        model._shared_step((torch.randn(2, 1, 8, 8) * 3, None), "val")


def test_decoder_matches_any_contract_backbone():
    timm_encoder = TimmBackbone("mobilenetv3_small_050", num_classes=5, in_chans=3, input_size=32)
    model = Autoencoder(timm_encoder, image_shape=(3, 20, 20)).eval()
    assert timm_encoder.num_classes == 0  # the unused head is removed
    assert model(torch.rand(2, 3, 20, 20)).shape == (2, 3, 20, 20)
    assert ConvDecoder(84, 1, 28)(torch.randn(3, 84)).shape == (3, 1, 28, 28)


def test_reconstruction_grid_is_logged_to_tensorboard(chdir_tmp):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = Autoencoder(encoder(), image_shape=(1, 8, 8), log_images_every_n_epochs=1)
    logger = TensorBoardLogger(chdir_tmp, name="logs")
    trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, logger=logger).fit(
        model, datamodule=DigitsDataModule(batch_size=16, train_pool="all")
    )
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "val/reconstructions" in events.Tags()["images"]
    assert {"train/loss", "val/loss"} <= set(events.Tags()["scalars"])
