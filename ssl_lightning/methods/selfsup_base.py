"""The base of self-supervised pretraining on two views: batches, loss logging, kNN monitor, encoder export."""

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
    benchmarking = lightly_module("lightly.utils.benchmarking", "the kNN monitor")
    ranking = benchmarking.knn_predict(
        F.normalize(features, dim=1),
        F.normalize(bank, dim=1).T,  # lightly's bank is float[D, N]
        bank_labels,
        num_classes,
        knn_k=min(k, len(bank)),
        knn_t=temperature,
    )
    return ranking[:, 0]


class SelfSupervisedModule(EncoderExport, OptimizerFromCallables):
    """Pretrain an encoder on two augmented views of unlabelled images; a method supplies only its loss.

    What SimCLR, BYOL, MoCo and DINO share: the encoder (any contract backbone; a classifier
    head is reset to the identity), training batches ``(x1: float[B, C, H, W], x2: float[B, C, H, W],
    y: ignored)`` from :class:`~ssl_lightning.data.two_view.TwoViewDataModule` (anything else is a
    clear error), ``train/loss`` (epoch mean) and ``train/loss_step``, the kNN monitor, and the
    encoder export. A method overrides :meth:`pretraining_loss` (two views -> scalar loss).

    kNN monitor: before each validation (and test) epoch the data module's labelled training set
    is embedded by the encoder (no augmentation, no projection head) and every val/test image is
    classified by a weighted kNN over it (lightly's ``knn_predict``): ``val/knn_acc``,
    ``test/knn_acc``. At the end of fit the encoder's state dict is written to ``encoder_path``;
    that file (or any checkpoint of the module, whose encoder is under ``encoder.``) is a valid
    ``Classifier(backbone_checkpoint=...)`` for a linear probe or fine-tuning.

    Shapes: ``forward(x: float[B, C, H, W]) -> features float[B, num_features]``.

    Example config (the arguments every subclass takes besides its own)::

        model:
          class_path: ssl_lightning.methods.simclr.SimCLR
          init_args:
            encoder: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 0, in_chans: 1, input_size: 8}}
            knn_k: 20
            encoder_path: checkpoints/encoder.pt
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.003}}

    Args:
        encoder: a backbone following the timm contract (``num_features``, ``forward_features``).
        optimizer: builds the optimizer from the trained parameters (:meth:`optimizer_parameters`).
        lr_scheduler: optional; builds a scheduler from the optimizer.
        knn_k: neighbours of the kNN monitor (0 turns it off).
        knn_temperature: temperature of the kNN vote weights.
        encoder_path: where to save the encoder's state dict at the end of fit (``None``: don't).
    """

    def __init__(
        self,
        encoder: nn.Module,
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
        if knn_k < 0:
            raise ValueError(f"knn_k must be >= 0 (0 turns the kNN monitor off), got {knn_k}")
        if getattr(encoder, "num_classes", 0) and hasattr(encoder, "reset_classifier"):
            log.info("%s: removing the encoder's %d-class head (unused)", type(self).__name__, encoder.num_classes)
            encoder.reset_classifier(0)
        self.encoder = encoder
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.knn_k = knn_k
        self.knn_temperature = knn_temperature
        self.encoder_path = encoder_path
        self.mean_loss = MeanMetric()
        self.knn_accuracy = nn.ModuleDict()  # built in setup, once the number of classes is known
        self._bank: tuple[Tensor, Tensor] | None = None

    @property
    def num_features(self) -> int:
        """Size of the encoder's features (the heads' input)."""
        return int(self.encoder.num_features)

    def forward(self, x: Tensor) -> Tensor:
        """float[B, C, H, W] -> encoder features float[B, num_features]."""
        return self.encoder.forward_features(x)

    def pretraining_loss(self, x1: Tensor, x2: Tensor) -> Tensor:
        """The method's loss on two views ``x1, x2: float[B, C, H, W]`` of the same images -> scalar."""
        raise NotImplementedError

    #: whether :meth:`multi_crop_loss` is implemented (the data's ``local_crops`` are refused otherwise)
    takes_local_views = False

    def multi_crop_loss(self, x1: Tensor, x2: Tensor, local: Tensor) -> Tensor:
        """The loss with multi-crop's local views ``local: float[V, B, C, s, s]`` too (methods that take them)."""
        raise NotImplementedError

    def two_views(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(x1, x2, y[, local])`` -> ``(x1, x2)``, or a clear error for batches that are not two views."""
        if not isinstance(batch, list | tuple) or len(batch) not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} needs training batches (x1, x2, y) of two views; use data.class_path: "
                "ssl_lightning.data.two_view.TwoViewDataModule."
            )
        if len(batch) == 4 and not self.takes_local_views:
            raise ValueError(
                f"{type(self).__name__} does not use multi-crop's local views; set data.init_args.local_crops: 0 "
                "(DINO takes them)."
            )
        return batch[0], batch[1]

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x1, x2 = self.two_views(batch)
        loss = self.pretraining_loss(x1, x2) if len(batch) == 3 else self.multi_crop_loss(x1, x2, batch[3])
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
            f"{type(self).__name__}'s kNN monitor",
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
