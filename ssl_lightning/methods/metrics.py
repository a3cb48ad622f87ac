"""Epoch metrics with a light per-step update, for the training loops of small models.

torchmetrics' ``MulticlassAccuracy`` and ``MeanMetric`` validate, cast and NaN-check their inputs
at every ``update`` (on a GPU the NaN check waits for the device). With a ~10 ms LeNet step that
is a visible share of the step (``benchmarks/lightning_overhead.py``). These subclasses keep the
parents' states, ``compute``, DDP sync and checkpoint keys, and only replace ``update`` with the
few tensor ops it needs; the values they compute are the same (tested against the parents).
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy


class RunningAccuracy(MulticlassAccuracy):
    """Micro-averaged multiclass accuracy whose ``update`` is one comparison and three sums.

    ``update(preds, target)``: ``preds`` is logits/probabilities ``float[B, K]`` or class indices
    ``long[B]``; ``target`` is ``long[B]``. No input validation: the caller passes well-formed
    tensors (``Classifier`` does). States are those of ``MulticlassAccuracy(average="micro")``, so
    checkpoints written with either load into the other.

    Example::

        accuracy = RunningAccuracy(num_classes=10)
        accuracy.update(logits, labels)   # float[B, 10], long[B]
        accuracy.compute()                # tensor(0.73)
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, average="micro", validate_args=False)

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.is_floating_point():
            preds = preds.argmax(dim=1)
        correct = (preds == target).sum()
        wrong = target.numel() - correct
        # The states torchmetrics registered with add_state (public attributes, as in any custom Metric).
        self.tp += correct
        self.fp += wrong
        self.tn += self.num_classes * target.numel() - correct - 2 * wrong
        self.fn += wrong


class RunningMean(MeanMetric):
    """Weighted mean whose ``update(value, weight)`` adds ``value.sum() * weight`` and ``weight * numel``.

    Same states and ``compute`` as ``MeanMetric``; no casting or NaN check per update (a NaN loss
    shows up as a NaN mean instead of a warning). ``value`` is a tensor of any shape, ``weight`` a
    number applied to every element.

    Example::

        mean_loss = RunningMean()
        mean_loss.update(loss.detach(), weight=len(batch))
        mean_loss.compute()
    """

    def update(self, value: Tensor, weight: float = 1.0) -> None:  # type: ignore[override]
        self.mean_value += value.sum() * weight
        self.weight += weight * value.numel()


def logs_this_step(module: pl.LightningModule) -> bool:
    """Whether the Trainer writes step metrics to its loggers after this training step.

    ``self.log`` is a visible share of a small model's step (benchmarks/lightning_overhead.py); a
    per-step value logged only on the steps the logger keeps (every ``log_every_n_steps``, or when
    training stops) reaches TensorBoard just the same, and the progress bar shows the latest one.
    Outside a Trainer, always True.
    """
    trainer = module._trainer
    if trainer is None:
        return True
    return bool(trainer._logger_connector.should_update_logs)
