"""The small base class of the few-shot methods: one step over a meta-batch of episodes."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import CatMetric, MeanMetric, Metric

from ssl_lightning.methods.classifier import persist, reset_at_epoch_start
from ssl_lightning.methods.functional import accuracy, confidence_interval
from ssl_lightning.methods.metrics import logs_this_step
from ssl_lightning.methods.optim import OptimizerFromCallables
from ssl_lightning.nets.head import pooled_features
from ssl_lightning.nets.weights import load_weights, read_state_dict
from ssl_lightning.utils.hparams import save_plain_hyperparameters

STAGES = ("train", "val", "test")
EVAL_STAGES = ("val", "test")

#: ``(support_x: float[T, N*K, C, H, W], support_y: long[T, N*K],``
#: ``query_x: float[T, N*Q, C, H, W], query_y: long[T, N*Q])``
Episodes = tuple[Tensor, Tensor, Tensor, Tensor]

ResultT = TypeVar("ResultT")


def check_episodes(batch: Any) -> Episodes:
    """``batch`` as :data:`Episodes`, or a ``ValueError`` that shows the shapes it got."""
    shapes = [list(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in batch]
    if len(batch) != 4 or [getattr(t, "ndim", None) for t in batch] != [5, 2, 5, 2]:
        raise ValueError(
            f"episodic batches are (support_x[T, N*K, C, H, W], support_y[T, N*K], query_x[T, N*Q, C, H, W], "
            f"query_y[T, N*Q]); got shapes {shapes}. Use an episodic DataModule "
            f"(ssl_lightning.data.episodic.EpisodicDataModule)."
        )
    return batch


def with_autograd(fn: Callable[..., ResultT], *tensors: Tensor) -> ResultT:
    """``fn(*clones of tensors)`` with autograd on, also inside Lightning's evaluation.

    Lightning evaluates under ``inference_mode`` (or ``no_grad``); adaptation at evaluation (MAML's
    inner loop, a head fitted per episode, fine-tuning) needs autograd, and tensors made in inference
    mode cannot be saved for backward, hence the clones, made outside inference mode.
    """
    with torch.inference_mode(False), torch.enable_grad():
        return fn(*(t.clone() for t in tensors))


class EpisodicModule(OptimizerFromCallables):
    """Base of the episodic (meta-learning) methods; a subclass implements :meth:`task_logits`.

    A batch is a meta-batch of ``T`` episodes (tasks)::

        support_x: float[T, N*K, C, H, W]   support_y: long[T, N*K]   labels 0..N-1
        query_x:   float[T, N*Q, C, H, W]   query_y:   long[T, N*Q]

    The loss of a batch is the mean over its tasks of the query cross-entropy (Finn et al.
    2017, Alg. 2, line 10; Snell et al. 2017, Alg. 1). Logged per stage: ``{stage}/loss`` and
    ``{stage}/acc`` (mean query accuracy over episodes); for evaluation also
    ``{stage}/acc_ci95``, the half-width of the 95% confidence interval of the mean accuracy
    over all evaluation episodes (gathered from every DDP rank by torchmetrics).

    The ``__init__`` arguments of the whole subclass chain are saved as hyperparameters here, once
    (``save_plain_hyperparameters``); a subclass that sets one of this class's arguments itself names
    it in :attr:`derived_arguments`, so that ``load_from_checkpoint`` does not pass it twice.

    Args:
        backbone: a network following the timm contract (e.g. ``Conv4``).
        backbone_checkpoint: start the backbone from this file: a state dict, or a checkpoint of a
            ``Classifier``, an ``Autoencoder``, a pretrain-then-adapt method (``Baseline``, ``RFS``, ...)
            or another episodic model of this project (Meta-Baseline's meta-stage starts from the
            classifier-pretraining weights so). The backbone's head is loaded only where the file has one
            of the same shape (a MAML head of ``n_way`` outputs stays fresh); any other mismatch is an
            error naming the tensor. Read again on ``load_from_checkpoint`` (whose own weights replace
            it); pass ``backbone_checkpoint=None`` there if the file has moved.
        optimizer: builds the (meta-)optimizer from the parameters.
        lr_scheduler: optional; builds a scheduler from the optimizer, stepped every epoch.
    """

    #: Arguments of the base classes that a subclass sets itself and does not take (``BaselinePlusPlus``: ``head``).
    derived_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        backbone: nn.Module,
        backbone_checkpoint: str | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        save_plain_hyperparameters(self, ["backbone", "optimizer", "lr_scheduler"], derived=self.derived_arguments)
        self.backbone = backbone
        if backbone_checkpoint is not None:
            load_weights(backbone, read_state_dict(backbone_checkpoint), backbone_checkpoint, optional=("head.",))
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        # ModuleDict keys cannot be "train" (nn.Module.train), hence the suffix.
        self.mean_loss = nn.ModuleDict({f"{stage}_": MeanMetric() for stage in STAGES})
        self.mean_acc = nn.ModuleDict({f"{stage}_": MeanMetric() for stage in STAGES})
        self.episode_accs = nn.ModuleDict({f"{stage}_": CatMetric() for stage in EVAL_STAGES})
        persist(*self.train_metrics())

    @abstractmethod
    def task_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, n_way: int) -> Tensor:
        """Classify the queries of one episode given its support set.

        Args:
            support_x: float[N*K, C, H, W].
            support_y: long[N*K] in ``0..n_way-1``.
            query_x: float[N*Q, C, H, W].
            n_way: number of classes N.

        Returns:
            query logits float[N*Q, N], differentiable with respect to the meta-parameters.
        """

    def adapts_at_evaluation(self) -> bool:
        """Whether :meth:`task_logits` needs gradients during validation/test (MAML-style adaptation)."""
        return False

    def embed_episode(self, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled features of one episode's support and queries: ``float[N*K, D]``, ``float[N*Q, D]``.

        One forward pass for both, so that batch norm in training mode normalises them with the same
        statistics (ProtoNet, Meta-Baseline).
        """
        features = pooled_features(self.backbone, torch.cat([support_x, query_x]))
        return features[: len(support_x)], features[len(support_x) :]

    def _shared_step(self, batch: Episodes, stage: str) -> Tensor:
        batch = check_episodes(batch)
        if self.adapts_at_evaluation() and stage != "train":
            return with_autograd(lambda *episodes: self._episodes_step(episodes, stage), *batch)
        return self._episodes_step(batch, stage)

    def meta_loss(self, batch: Episodes, task_by_task: bool = False) -> tuple[Tensor, Tensor]:
        """Mean query loss over the ``T`` tasks of a batch, and each task's query accuracy.

        With ``task_by_task``, the gradient of each task's loss is taken (``torch.autograd.grad``)
        and its graph freed before the next task is run, as learn2learn's and Finn et al.'s
        training loops do, so memory holds one task's graph instead of ``T``. The returned loss
        then carries the summed gradients through a linear surrogate: its value is the mean loss
        and ``loss.backward()`` (one call, so DDP syncs once) writes exactly those gradients.

        Returns:
            ``(loss: float scalar, task_accs: float[T])``.
        """
        support_x, support_y, query_x, query_y = batch
        n_tasks = len(support_x)
        n_way = int(support_y.max()) + 1
        task_by_task = task_by_task and n_tasks > 1 and torch.is_grad_enabled()
        params = [p for p in self.parameters() if p.requires_grad] if task_by_task else []
        summed: list[Tensor | None] = [None] * len(params)
        losses, accs = [], []
        for t in range(n_tasks):
            logits = self.task_logits(support_x[t], support_y[t], query_x[t], n_way)
            task_loss = F.cross_entropy(logits, query_y[t])
            accs.append(accuracy(logits.detach(), query_y[t]))
            if not task_by_task:
                losses.append(task_loss)
                continue
            grads = torch.autograd.grad(task_loss / n_tasks, params, allow_unused=True)
            summed = [g if s is None else (s if g is None else s + g) for s, g in zip(summed, grads, strict=True)]
            losses.append(task_loss.detach())
        loss = torch.stack(losses).mean()
        if task_by_task:
            surrogate = sum((p * g).sum() for p, g in zip(params, summed, strict=True) if g is not None)
            loss = loss + (surrogate - surrogate.detach())
        return loss, torch.stack(accs)

    def _episodes_step(self, batch: Episodes, stage: str) -> Tensor:
        loss, task_accs = self.meta_loss(batch, task_by_task=stage == "train")
        if stage in EVAL_STAGES:
            self.episode_accs[f"{stage}_"].update(task_accs)
        return self.record_step(stage, loss, task_accs)

    def record_step(self, stage: str, loss: Tensor, accs: Tensor) -> Tensor:
        """Add a step to the stage's epoch metrics ``{stage}/loss`` and ``{stage}/acc`` and return its loss.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            loss: the step's mean loss (float scalar).
            accs: float[B], the accuracy of each of the ``B`` items the loss averages (episodes, or
                the 0/1 correctness of each image of a plain batch); ``{stage}/acc`` is their mean.
        """
        n_items = len(accs)
        self.mean_loss[f"{stage}_"].update(loss.detach(), weight=n_items)
        self.mean_acc[f"{stage}_"].update(accs)
        self.log(f"{stage}/loss", self.mean_loss[f"{stage}_"], on_step=False, on_epoch=True, batch_size=n_items)
        self.log(
            f"{stage}/acc", self.mean_acc[f"{stage}_"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n_items
        )
        if stage == "train" and logs_this_step(self):
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, prog_bar=True)
        return loss if stage == "train" else loss.detach()

    def _log_confidence_interval(self, stage: str) -> None:
        metric = self.episode_accs[f"{stage}_"]
        if metric.update_count == 0:
            return
        # compute() all-gathers the per-episode accuracies of every rank, so all ranks agree.
        _, half_width = confidence_interval(metric.compute())
        metric.reset()
        # Every rank holds the same value; sync_dist (a mean of equal values) only tells Lightning so.
        self.log(f"{stage}/acc_ci95", half_width.float(), sync_dist=True)

    def train_metrics(self) -> list[Metric]:
        """The metrics of a training epoch; their states are saved in checkpoints (see ``persist``)."""
        return [self.mean_loss["train_"], self.mean_acc["train_"]]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            reset_at_epoch_start(self.train_metrics())

    def training_step(self, batch: Episodes, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Episodes, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Episodes, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_confidence_interval("val")

    def on_test_epoch_end(self) -> None:
        self._log_confidence_interval("test")
