"""Supervised classification of any backbone: the baseline every other method is measured against."""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from ssl_lightning.data.contract import ClassificationData, attached_data
from ssl_lightning.methods.adapter_checkpoint import FrozenBaseCheckpoint
from ssl_lightning.methods.metrics import RunningAccuracy, RunningMean, logs_this_step
from ssl_lightning.methods.optim import OptimizerFromCallables, ParameterSpec
from ssl_lightning.nets.pretrained import load_weights, read_state_dict
from ssl_lightning.utils.figures import confusion_figure, log_figure
from ssl_lightning.utils.freezing import Freezer
from ssl_lightning.utils.hparams import save_plain_hyperparameters

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")


def persist(*metrics: Metric | MetricCollection) -> None:
    """Save these metrics' states in checkpoints (``state_dict``), so a run resumed in the middle
    of an epoch logs that whole epoch's training metrics, not only the batches after the resume.

    Checkpoints written before the states were saved still load, also strictly: torchmetrics'
    ``_load_from_state_dict`` loads the states that are present and reports none as missing.
    """
    for metric in metrics:
        metric.persistent(True)


def reset_at_epoch_start(metrics: list[Metric | MetricCollection]) -> None:
    """Clear persistent epoch metrics at an epoch's first batch (call from ``on_train_batch_start``).

    A checkpoint written at the end of an epoch holds that epoch's states, and after a resume from
    it Lightning does not always call ``on_train_epoch_start``; the first batch is where they go.
    """
    for metric in metrics:
        metric.reset()


class Classifier(FrozenBaseCheckpoint, OptimizerFromCallables):
    """Cross-entropy training of a backbone that follows the timm contract.

    Batches are ``(x: float[B, ...], y)`` where ``y`` is ``long[B]`` class indices or
    ``float[B, num_classes]`` soft targets (mixup/cutmix); accuracy is always measured against
    the hard labels (the argmax of soft targets). Logs ``{stage}/loss`` and ``{stage}/acc``,
    and a confusion-matrix figure to TensorBoard at the end of testing.

    Transfer learning: ``backbone_checkpoint`` starts the backbone from saved weights;
    ``finetune="linear_probe"`` trains only ``backbone.head`` with the rest of the backbone
    frozen, batch-norm statistics included (those modules stay in eval mode);
    ``backbone_lr_multiplier`` gives the backbone (all but its head) a smaller learning rate
    than the head; :class:`ssl_lightning.callbacks.finetuning.GradualUnfreezing` unfreezes a
    frozen backbone at a set epoch.

    Trainability: the backbone declares what it trains by its parameters' ``requires_grad`` when
    it is built (``HFEncoder(freeze_layers=2)`` or ``freeze_encoder=True``,
    ``BiLSTMClassifier(freeze_embeddings=True)``), and also which of its modules stay in eval mode
    (``HFEncoder`` keeps a frozen encoder's dropout off). The method never thaws those: the linear
    probe, SetFit's head phase and ``GradualUnfreezing`` freeze only the body parameters that were
    trainable and later unfreeze exactly those (:class:`~ssl_lightning.utils.freezing.Freezer`);
    eval mode for a frozen body and ``freeze_batchnorm`` only ever switch more modules to eval.
    This is how a parameter-efficient, adapter-wrapped backbone plugs in: wrap the network before
    passing it as ``backbone`` (e.g. a peft LoRA model, whose base weights are
    ``requires_grad=False`` and adapter weights ``True``, inside a backbone with the timm contract
    and its classifier under ``head``). ``finetune="full"`` then trains the adapters and the head,
    ``"linear_probe"`` the head only, and ``backbone_lr_multiplier`` scales the adapters' learning
    rate; the frozen base weights sit in the optimizer without gradients and never change.
    Checkpoints of such a backbone hold only what trains (adapters, head, buffers) and a checksummed
    reference to the base weights, which are rebuilt from the config on load
    (:mod:`ssl_lightning.methods.adapter_checkpoint`, ``save_frozen_weights``). The start of ``fit`` logs
    the backbone's trainable and total parameter counts (also as ``params/trainable``, ``params/total``).

    Subclasses (FixMatch, FeatureProbe, SetFitClassifier) take their own arguments and forward the
    rest as ``**classifier_args`` to ``super().__init__``; each argument is declared once, here. This
    is not a hidden pass-through: LightningCLI (jsonargparse) reads that ``super().__init__`` call and
    offers, types, documents and checks these arguments as the subclass's own (``--print_config``
    lists them; a misspelt key is an error, as is one the subclass sets itself, e.g. FeatureProbe's
    ``finetune``), and in Python a wrong name is this ``__init__``'s ``TypeError``.

    Example config::

        model:
          class_path: ssl_lightning.methods.Classifier
          init_args:
            backbone: {class_path: ssl_lightning.nets.LeNet, init_args: {num_classes: 10}}
            optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.001}}
            backbone_checkpoint: checkpoints/ae_digits_encoder.pt   # optional
            finetune: full                                          # or linear_probe
            freeze_batchnorm: true                                  # pretrained BN statistics
            backbone_lr_multiplier: 0.1

    Args:
        backbone: the network; its ``num_classes`` must match the data's.
        optimizer: builds the optimizer from the parameters (LightningCLI fills it from YAML).
        lr_scheduler: optional; builds a scheduler from the optimizer, stepped every epoch.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        backbone_checkpoint: start the backbone from this file: a state dict, or a checkpoint of a
            Classifier, an Autoencoder (its encoder) or an episodic model of this project. The head
            is loaded only where present with the same shape; any other mismatch is an error
            naming the first mismatching tensor. It is read again when the module is rebuilt
            (``load_from_checkpoint``, ``ssl-lightning test --config``); pass
            ``backbone_checkpoint=None`` there if the file has moved (the checkpoint's own
            weights replace it anyway).
        finetune: ``"full"`` trains what the backbone declares trainable; ``"linear_probe"`` also freezes all of
            the backbone but its head.
        backbone_lr_multiplier: the backbone's parameters (all but ``backbone.head``) get the
            optimizer's learning rate times this; the head keeps the optimizer's learning rate.
        reset_head: keep the backbone's fresh head even where ``backbone_checkpoint`` has one of
            the same shape (source -> target transfer to other classes).
        freeze_batchnorm: keep every batch-norm layer of the backbone in eval mode while training:
            normalize with the pretrained running statistics and never update them (their affine
            weights still train unless frozen). Usual when fine-tuning a pretrained network on
            small batches of few images, whose batch statistics are noisy and off the pretraining
            distribution.
        save_frozen_weights: whether checkpoints hold the backbone's frozen base weights. ``None``: not
            when the backbone is a :class:`~ssl_lightning.nets.peft_backbone.PeftBackbone` (its
            adapters and head are a few MB, its base hundreds), else yes; ``True``: always; ``False``:
            never (whenever some of the backbone was built frozen, e.g. ``freeze_layers`` or a linear
            probe). Left out, they are rebuilt from the config on load and checked against a sha256.
    """

    #: Arguments of this class that a subclass sets itself and does not take (FeatureProbe: ``finetune``).
    derived_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: nn.Module,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        label_smoothing: float = 0.0,
        backbone_checkpoint: str | None = None,
        finetune: Literal["full", "linear_probe"] = "full",
        backbone_lr_multiplier: float = 1.0,
        reset_head: bool = False,
        freeze_batchnorm: bool = False,
        save_frozen_weights: bool | None = None,
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["backbone", "optimizer", "lr_scheduler"], derived=self.derived_arguments)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if finetune not in ("full", "linear_probe"):
            raise ValueError(f"finetune must be 'full' or 'linear_probe', got {finetune!r}")
        if backbone_lr_multiplier < 0:
            raise ValueError(f"backbone_lr_multiplier must be >= 0, got {backbone_lr_multiplier}")
        self.backbone = backbone
        if backbone_checkpoint is not None:
            state = read_state_dict(backbone_checkpoint)
            if reset_head:
                state = {key: value for key, value in state.items() if not key.startswith("head.")}
            load_weights(backbone, state, backbone_checkpoint, optional=("head.",))
        self.backbone_lr_multiplier = backbone_lr_multiplier
        self.freeze_batchnorm = freeze_batchnorm
        self.body_freezer = Freezer()
        self.set_backbone_frozen(finetune == "linear_probe")
        self.save_frozen_weights = save_frozen_weights
        self.remember_frozen_base()
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.label_smoothing = label_smoothing
        num_classes = self.num_classes
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the suffix.
        self.metrics = nn.ModuleDict(
            {f"{stage}_": MetricCollection({"acc": RunningAccuracy(num_classes)}) for stage in STAGES}
        )
        self.mean_loss = nn.ModuleDict({f"{stage}_": RunningMean() for stage in STAGES})
        self.confusion = MulticlassConfusionMatrix(num_classes)
        persist(self.metrics["train_"], self.mean_loss["train_"])

    @property
    def num_classes(self) -> int:
        num_classes = getattr(self.backbone, "num_classes", None)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(
                f"{type(self.backbone).__name__} has num_classes={num_classes!r}; Classifier needs a backbone "
                f"with a classification head. Set the backbone's num_classes to the number of classes."
            )
        return num_classes

    def named_body_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """The backbone's ``(name, parameter)`` pairs except its head's (those a linear probe freezes)."""
        return [(name, p) for name, p in self.backbone.named_parameters() if not name.startswith("head.")]

    def body_parameters(self) -> list[nn.Parameter]:
        """The backbone's parameters except its head's."""
        return [p for _, p in self.named_body_parameters()]

    @property
    def backbone_frozen(self) -> bool:
        """Whether this module froze the backbone's body (a linear probe, or frozen by a callback)."""
        return self.body_freezer.frozen

    def set_backbone_frozen(self, frozen: bool) -> None:
        """Freeze the backbone except ``backbone.head`` (gradients and BN statistics), or unfreeze
        what this froze: parameters the backbone itself built frozen stay frozen either way."""
        if frozen:
            self.forget_thawed()  # what trained since the module was built is no frozen base any more
            self.body_freezer.freeze(self.named_body_parameters())
        else:
            self.body_freezer.unfreeze(self.named_body_parameters())
        self.train(self.training)

    def train(self, mode: bool = True) -> Classifier:
        """Lightning switches modes around every loop; a frozen backbone body stays in eval mode."""
        super().train(mode)
        if mode and getattr(self, "backbone_frozen", False):
            for name, child in self.backbone.named_children():
                if name != "head":
                    child.eval()
        if mode and getattr(self, "freeze_batchnorm", False):
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def setup(self, stage: str) -> None:
        if stage == "fit" and self._trainer is not None:
            self.log_parameter_counts()
        data = attached_data(self)
        # num_classes is None while a predict-only text DataModule waits for the checkpoint's label map
        known = isinstance(data, ClassificationData) and data.num_classes is not None
        if known and data.num_classes != self.num_classes:
            raise ValueError(
                f"The data has {data.num_classes} classes but the backbone's head has {self.num_classes}. "
                f"Set --model.backbone.init_args.num_classes {data.num_classes}."
            )

    def log_parameter_counts(self) -> None:
        """One log line and the scalars ``params/trainable``, ``params/total``: the backbone's, head included."""
        params = list(self.backbone.parameters())
        trainable, total = sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
        if self.trainer.is_global_zero:
            log.info(
                "%s: %s of %s backbone parameters train (%.3f %%)",
                type(self).__name__, f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1),
            )  # fmt: skip
        for logger in self.trainer.loggers:
            logger.log_metrics({"params/trainable": float(trainable), "params/total": float(total)}, step=0)

    def forward(self, x: Tensor) -> Tensor:
        """float[B, ...] -> logits float[B, num_classes]."""
        return self.backbone(x)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy against class indices ``long[B]`` or soft targets ``float[B, K]``."""
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, targets = batch
        logits = self(x)
        loss = self.loss(logits, targets)
        hard = targets.argmax(dim=1) if targets.is_floating_point() else targets
        self.metrics[f"{stage}_"].update(logits, hard)
        self.mean_loss[f"{stage}_"].update(loss.detach(), weight=len(hard))
        if stage == "train" and logs_this_step(self):
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        if stage == "test":
            self.confusion.update(logits, hard)
        return loss

    def train_metrics(self) -> list[Metric | MetricCollection]:
        """The metrics of a training epoch; their states are saved in checkpoints (see :func:`persist`)."""
        return [self.metrics["train_"], self.mean_loss["train_"]]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            reset_at_epoch_start(self.train_metrics())

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Returns predicted class indices long[B]."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x).argmax(dim=1)

    def log_epoch_metrics(self, stage: str) -> None:
        """Compute, log and reset a stage's ``{stage}/loss`` and ``{stage}/acc``.

        Once per epoch rather than through ``self.log`` at every step: the per-step logging of
        metric objects cost ~15% of a small model's step time (benchmarks/lightning_overhead.py).
        ``compute`` syncs the states across DDP ranks, so every rank logs the same values.
        """
        mean_loss, metrics = self.mean_loss[f"{stage}_"], self.metrics[f"{stage}_"]
        if mean_loss.update_count == 0:  # e.g. limit_val_batches=0
            return
        values = {f"{stage}/loss": mean_loss.compute(), **{f"{stage}/{k}": v for k, v in metrics.compute().items()}}
        self.log_dict(values, prog_bar=stage == "val")
        mean_loss.reset()
        metrics.reset()

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")
        matrix = self.confusion.compute()
        self.confusion.reset()
        data = attached_data(self)
        names = data.class_names if isinstance(data, ClassificationData) else None
        if self.trainer.is_global_zero:
            log_figure(self.logger, "test/confusion_matrix", confusion_figure(matrix, names), self.global_step)

    def trained_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer updates (frozen ones included: unfreezing callbacks thaw them)."""
        return list(self.parameters())

    def optimizer_parameters(self) -> ParameterSpec:
        """The module's parameters; with ``backbone_lr_multiplier``, two groups: the body at that multiple."""
        trained = self.trained_parameters()
        if self.backbone_lr_multiplier == 1.0:
            return trained
        # Frozen parameters stay in their group: they get no gradient (the optimizer skips
        # them) until GradualUnfreezing thaws them.
        body = self.body_parameters()
        body_ids = {id(p) for p in body}
        rest = [p for p in trained if id(p) not in body_ids]
        return [
            {"params": body, "name": "backbone", "lr_scale": self.backbone_lr_multiplier},
            {"params": rest, "name": "head"},
        ]
