"""Autoencoder pretraining: learn features from unlabelled images, then transfer the encoder."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric

from ssl_lightning.methods.export import EncoderExport
from ssl_lightning.methods.metrics import logs_this_step
from ssl_lightning.methods.optim import OptimizerFromCallables
from ssl_lightning.nets.decoder import ConvDecoder
from ssl_lightning.utils.figures import log_image_grid
from ssl_lightning.utils.hparams import save_plain_hyperparameters

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


class Autoencoder(EncoderExport, OptimizerFromCallables):
    """Reconstruct images through any contract backbone's features (Hinton & Salakhutdinov 2006).

    The encoder is a backbone with ``num_classes=0`` (its head is reset to the identity if not);
    the decoder (:class:`~ssl_lightning.nets.decoder.ConvDecoder`) maps its
    ``forward_features`` back to ``image_shape``. Labels in the batch are ignored, so train
    it on every training image with ``data.init_args.train_pool: all``. With ``noise`` it is a
    denoising autoencoder (Vincent et al. 2008): the encoder sees corrupted training images
    and the loss compares with the clean ones; validation always reconstructs clean images.

    Logs ``train/loss``, ``val/loss``, ``test/loss`` and, every ``log_images_every_n_epochs``,
    a grid of validation originals (top row) over their reconstructions (bottom row). At the
    end of fit the encoder's state dict is written to ``encoder_path``; that file (or any
    checkpoint of this module) is a valid ``Classifier(backbone_checkpoint=...)``.

    Shapes: batch ``(x: float[B, *image_shape], y: ignored)``; ``forward(x)`` ->
    reconstructions ``float[B, *image_shape]`` (probabilities for ``loss="bce"``).

    Example config::

        model:
          class_path: ssl_lightning.methods.autoencoder.Autoencoder
          init_args:
            encoder:
              class_path: ssl_lightning.nets.LeNet
              init_args: {num_classes: 0, in_chans: 1, input_size: 8, padding: 2}
            image_shape: [1, 8, 8]
            noise: gaussian
            encoder_path: checkpoints/ae_digits_encoder.pt

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        image_shape: ``(channels, height, width)`` of the input images; height must equal width.
        decoder_channels: channels of the decoder's last block.
        loss: ``"mse"`` or ``"bce"`` (images must then lie in ``[0, 1]``: data ``normalize: false``).
        noise: corruption of training inputs: ``"none"``, ``"gaussian"`` (std ``noise_level``) or
            ``"mask"`` (each pixel zeroed with probability ``noise_level``).
        noise_level: std of the Gaussian noise or probability of masking.
        optimizer: builds the optimizer from the parameters.
        lr_scheduler: optional; builds a scheduler from the optimizer.
        log_images_every_n_epochs: how often to log the reconstruction grid (0: never).
        encoder_path: where to save the encoder's state dict at the end of fit (``None``: don't).
        seed: seed of the corruption noise (combined with epoch and step).
    """

    def __init__(
        self,
        encoder: nn.Module,
        image_shape: tuple[int, int, int] = (3, 32, 32),
        decoder_channels: int = 32,
        loss: Literal["mse", "bce"] = "mse",
        noise: Literal["none", "gaussian", "mask"] = "none",
        noise_level: float = 0.2,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        log_images_every_n_epochs: int = 5,
        encoder_path: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["encoder", "optimizer", "lr_scheduler"])
        if loss not in ("mse", "bce"):
            raise ValueError(f"loss must be 'mse' or 'bce', got {loss!r}")
        if noise not in ("none", "gaussian", "mask"):
            raise ValueError(f"noise must be 'none', 'gaussian' or 'mask', got {noise!r}")
        if noise == "mask" and not 0.0 <= noise_level < 1.0:
            raise ValueError(f"masking needs noise_level (the masked fraction) in [0, 1), got {noise_level}")
        if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
            raise ValueError(f"image_shape must be (channels, size, size), got {tuple(image_shape)}")
        num_features = getattr(encoder, "num_features", None)
        if not isinstance(num_features, int) or not hasattr(encoder, "forward_features"):
            raise ValueError(f"{type(encoder).__name__} is not a contract backbone (num_features, forward_features).")
        if getattr(encoder, "num_classes", 0) and hasattr(encoder, "reset_classifier"):
            log.info("Autoencoder: removing the encoder's %d-class head (unused)", encoder.num_classes)
            encoder.reset_classifier(0)
        self.encoder = encoder
        self.image_shape = tuple(image_shape)
        self.decoder = ConvDecoder(num_features, image_shape[0], image_shape[1], decoder_channels)
        self.loss_name = loss
        self.noise = noise
        self.noise_level = noise_level
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.log_images_every_n_epochs = log_images_every_n_epochs
        self.encoder_path = encoder_path
        self.seed = seed
        self.mean_loss = nn.ModuleDict({f"{stage}_": MeanMetric() for stage in STAGES})

    def decode(self, features: Tensor) -> Tensor:
        """float[B, num_features] -> raw decoder output float[B, *image_shape] (logits for BCE)."""
        return self.decoder(features)

    def forward(self, x: Tensor) -> Tensor:
        """float[B, *image_shape] -> reconstructions float[B, *image_shape]."""
        out = self.decode(self.encoder.forward_features(x))
        return torch.sigmoid(out) if self.loss_name == "bce" else out

    def corrupt(self, x: Tensor) -> Tensor:
        """Training-time corruption, seeded by ``(seed, epoch, step)`` so a resumed run repeats it."""
        if self.noise == "none":
            return x
        generator = torch.Generator(device=x.device)
        generator.manual_seed((self.seed * 1_000_003 + self.current_epoch) * 1_000_003 + self.global_step)
        if self.noise == "gaussian":
            return x + self.noise_level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.noise_level
        return x * keep

    def reconstruction_loss(self, output: Tensor, x: Tensor) -> Tensor:
        if self.loss_name == "bce":
            return F.binary_cross_entropy_with_logits(output, x)
        return F.mse_loss(output, x)

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"Autoencoder got images of shape {tuple(x.shape[1:])} but image_shape is {self.image_shape}. "
                f"Set --model.init_args.image_shape '{list(x.shape[1:])}'."
            )
        if self.loss_name == "bce" and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"loss='bce' needs images in [0, 1], got values in [{x.min().item():.2f}, {x.max().item():.2f}]. "
                f"Set data.init_args.normalize: false, or use loss: mse."
            )

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        self._check(x)
        inputs = self.corrupt(x) if stage == "train" else x
        output = self.decode(self.encoder.forward_features(inputs))
        loss = self.reconstruction_loss(output, x)
        self.mean_loss[f"{stage}_"].update(loss.detach(), weight=len(x))
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_"], on_step=False, on_epoch=True, batch_size=len(x))
        if stage == "train" and logs_this_step(self):
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = self._shared_step(batch, "val")
        every = self.log_images_every_n_epochs
        if batch_idx == 0 and every > 0 and self.current_epoch % every == 0 and self.trainer.is_global_zero:
            self.log_reconstructions(batch[0] if isinstance(batch, list | tuple) else batch)
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    @torch.no_grad()
    def log_reconstructions(self, x: Tensor, count: int = 8) -> bool:
        """Log originals (top row) over reconstructions (bottom row) as ``val/reconstructions``."""
        originals = x[:count]
        return log_image_grid(
            self.logger,
            "val/reconstructions",
            torch.cat([originals, self(originals)]),
            self.global_step,
            len(originals),
        )
