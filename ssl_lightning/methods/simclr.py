"""Contrastive self-supervised pretraining: SimCLR (Chen et al. 2020) on any backbone, with a kNN monitor."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ssl_lightning.data.contract import ClassificationData, LabelledFeatureSource, attached_data, require_data
from ssl_lightning.methods.export import EncoderExport
from ssl_lightning.methods.losses import lightly_module
from ssl_lightning.methods.metrics import logs_this_step
from ssl_lightning.methods.optim import OptimizerFromCallables
from ssl_lightning.utils.hparams import save_plain_hyperparameters

log = logging.getLogger(__name__)


def knn_predict(
    features: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int = 20, temperature: float = 0.1
) -> Tensor:
    """Weighted k-nearest-neighbour class scores by cosine similarity (Wu et al. 2018, Sec. 3.4).

    Each of the ``k`` most similar bank entries votes for its label with weight ``exp(s / temperature)``.
    The kNN monitor uses lightly's ``knn_predict`` (:func:`knn_top1`), which computes the same votes but
    returns only their ranking; this function is kept for the scores themselves (its argmax is
    lightly's top-1).

    Shapes: ``features: float[B, D]``, ``bank: float[N, D]``, ``bank_labels: long[N]``
    -> scores ``float[B, num_classes]``.
    """
    similarity = F.normalize(features, dim=1) @ F.normalize(bank, dim=1).T  # [B, N]
    top, index = similarity.topk(min(k, len(bank)), dim=1)
    votes = F.one_hot(bank_labels[index], num_classes).float() * (top / temperature).exp().unsqueeze(-1)
    return votes.sum(dim=1)


def knn_top1(
    features: Tensor, bank: Tensor, bank_labels: Tensor, num_classes: int, k: int = 20, temperature: float = 0.1
) -> Tensor:
    """The class of the weighted kNN vote (:func:`knn_predict`'s argmax), by lightly's ``knn_predict``.

    Shapes: ``features: float[B, D]``, ``bank: float[N, D]``, ``bank_labels: long[N]`` -> ``long[B]``.
    """
    benchmarking = lightly_module("lightly.utils.benchmarking", "SimCLR's kNN monitor")
    ranking = benchmarking.knn_predict(
        F.normalize(features, dim=1),
        F.normalize(bank, dim=1).T,  # lightly's bank is float[D, N]
        bank_labels,
        num_classes,
        knn_k=min(k, len(bank)),
        knn_t=temperature,
    )
    return ranking[:, 0]


def simclr_projection_head(num_features: int, hidden: int, projection_dim: int) -> nn.Module:
    """SimCLR's head ``Linear -> BatchNorm -> ReLU -> Linear`` (Chen et al. 2020), lightly's ``ProjectionHead``.

    Not ``SimCLRProjectionHead``: that one drops the first ``Linear``'s bias (redundant before batch
    norm), which changes the random initialization drawn after it, so the README's SimCLR numbers
    would no longer reproduce from their seeds. This is the head those runs trained, module for module.

    Shapes: ``float[B, num_features] -> float[B, projection_dim]``.
    """
    projection_heads = lightly_module("lightly.models.modules.heads", "SimCLR")
    return projection_heads.ProjectionHead(
        [
            (num_features, hidden, nn.BatchNorm1d(hidden), nn.ReLU(), True),
            (hidden, projection_dim, None, None, True),
        ]
    )


def _load_sequential_projection_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """Checkpoints from before lightly's head held the same layers as ``projection.<i>.*``; now ``layers.<i>``."""
    for key in [k for k in state_dict if k.startswith(prefix) and k[len(prefix) : len(prefix) + 1].isdigit()]:
        state_dict[f"{prefix}layers.{key[len(prefix) :]}"] = state_dict.pop(key)


class SimCLR(EncoderExport, OptimizerFromCallables):
    """SimCLR: agree on two augmented views of an image through a projection head (Chen et al. 2020).

    The encoder is any contract backbone with ``num_classes=0`` (its head is reset to the
    identity if not); the projection head (:func:`simclr_projection_head`, lightly's
    ``ProjectionHead``: ``Linear -> BatchNorm -> ReLU -> Linear``) is on its ``forward_features``; the loss is lightly's
    ``NTXentLoss`` (see :func:`~ssl_lightning.methods.losses.nt_xent`; negatives gathered across DDP
    ranks). lightly comes with the ``selfsup`` extra (``pip install 'ssl_lightning[selfsup]'``). Training batches are
    ``(x1: float[B, C, H, W], x2: float[B, C, H, W], y: ignored)`` from
    :class:`~ssl_lightning.data.semisup.TwoViewDataModule`.

    Representation quality is monitored without a separate run: before each validation (and
    test) epoch the data module's labelled training set is embedded (no augmentation) and
    every val/test image is classified by a weighted kNN over it (lightly's ``knn_predict``): ``val/knn_acc``,
    ``test/knn_acc``. At the end of fit the encoder's state dict is written to
    ``encoder_path``; that file (or any checkpoint of this module, whose encoder is under
    ``encoder.``) is a valid ``Classifier(backbone_checkpoint=...)`` for a linear probe or fine-tuning.

    Shapes: ``forward(x: float[B, C, H, W]) -> features float[B, num_features]``.

    Example config::

        model:
          class_path: ssl_lightning.methods.simclr.SimCLR
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 3, input_size: 32}}
            temperature: 0.5
            encoder_path: checkpoints/simclr_cifar10_encoder.pt
        data:
          class_path: ssl_lightning.data.semisup.TwoViewDataModule
          init_args: {source: {class_path: ssl_lightning.data.CIFAR10DataModule, init_args: {batch_size: 256}}}

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        projection_dim: output size of the projection head.
        hidden_dim: hidden size of the projection head (``None``: the encoder's ``num_features``).
        temperature: NT-Xent temperature.
        gather_distributed: under DDP, negatives come from every rank's batch.
        optimizer: builds the optimizer from the parameters.
        lr_scheduler: optional; builds a scheduler from the optimizer.
        knn_k: neighbours of the kNN monitor (0 turns it off).
        knn_temperature: temperature of the kNN vote weights.
        encoder_path: where to save the encoder's state dict at the end of fit (``None``: don't).
    """

    def __init__(
        self,
        encoder: nn.Module,
        projection_dim: int = 128,
        hidden_dim: int | None = None,
        temperature: float = 0.5,
        gather_distributed: bool = True,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        knn_k: int = 20,
        knn_temperature: float = 0.1,
        encoder_path: str | None = None,
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["encoder", "optimizer", "lr_scheduler"])
        num_features = getattr(encoder, "num_features", None)
        if not isinstance(num_features, int) or not hasattr(encoder, "forward_features"):
            raise ValueError(f"{type(encoder).__name__} is not a contract backbone (num_features, forward_features).")
        if projection_dim < 1 or knn_k < 0:
            raise ValueError(f"projection_dim must be >= 1 and knn_k >= 0, got {projection_dim}, {knn_k}")
        if getattr(encoder, "num_classes", 0) and hasattr(encoder, "reset_classifier"):
            log.info("SimCLR: removing the encoder's %d-class head (unused)", encoder.num_classes)
            encoder.reset_classifier(0)
        hidden = hidden_dim or num_features
        self.encoder = encoder
        self.projection = simclr_projection_head(num_features, hidden, projection_dim)
        self.projection.register_load_state_dict_pre_hook(_load_sequential_projection_keys)
        self.criterion = lightly_module("lightly.loss", "SimCLR").NTXentLoss(
            temperature, gather_distributed=gather_distributed
        )
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.knn_k = knn_k
        self.knn_temperature = knn_temperature
        self.encoder_path = encoder_path
        self.mean_loss = MeanMetric()
        self.knn_accuracy = nn.ModuleDict()  # built in setup, once the number of classes is known
        self._bank: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> encoder features float[B, num_features]."""
        return self.encoder.forward_features(x)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        if not isinstance(batch, list | tuple) or len(batch) != 3:
            raise ValueError(
                "SimCLR needs training batches (x1, x2, y) of two views; use data.class_path: "
                "ssl_lightning.data.semisup.TwoViewDataModule."
            )
        x1, x2, _ = batch
        # One pass over both views (batch norm sees them together, as with a global-BN-free single GPU run).
        z1, z2 = self.projection(self(torch.cat([x1, x2]))).chunk(2)
        loss = self.criterion(z1, z2)
        self.mean_loss.update(loss.detach(), weight=len(x1))
        self.log("train/loss", self.mean_loss, on_step=False, on_epoch=True, batch_size=len(x1))
        if logs_this_step(self):
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss

    # ---- kNN monitor ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        data = attached_data(self)
        if self.knn_k and isinstance(data, ClassificationData) and not self.knn_accuracy:
            self.knn_accuracy.update(
                {f"{s}_": MulticlassAccuracy(data.num_classes, average="micro") for s in ("val", "test")}
            )

    def _build_bank(self) -> None:
        self._bank = None
        if not self.knn_k or not self.knn_accuracy:
            return
        datamodule = require_data(
            self,
            LabelledFeatureSource,
            "SimCLR's kNN monitor",
            "Use TwoViewDataModule or set model.init_args.knn_k: 0.",
        )
        with torch.no_grad():
            self._bank = datamodule.labelled_features(self, self.device)

    def on_validation_epoch_start(self) -> None:
        self._build_bank()

    def on_test_epoch_start(self) -> None:
        self._build_bank()

    def _knn_step(self, batch: tuple[Tensor, Tensor], stage: str) -> None:
        if self._bank is None:
            return
        x, y = batch
        metric = self.knn_accuracy[f"{stage}_"]
        predicted = knn_top1(self(x), *self._bank, metric.num_classes, self.knn_k, self.knn_temperature)
        metric.update(predicted, y)
        self.log(f"{stage}/knn_acc", metric, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(y))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._knn_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._knn_step(batch, "test")
