"""The light epoch metrics equal torchmetrics' own, share their checkpoint states, and the step loss
is logged on exactly the steps the logger keeps."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.methods import Classifier
from ssl_lightning.methods.metrics import RunningAccuracy, RunningMean
from ssl_lightning.nets import LeNet


def test_running_accuracy_equals_multiclass_accuracy_on_logits_and_indices():
    generator = torch.Generator().manual_seed(0)
    ours, reference = RunningAccuracy(7), MulticlassAccuracy(7, average="micro")
    for batch in range(5):
        logits = torch.randn(13 + batch, 7, generator=generator)
        target = torch.randint(0, 7, (13 + batch,), generator=generator)
        preds = logits if batch % 2 else logits.argmax(dim=1)
        ours.update(preds, target)
        reference.update(preds, target)
    assert 0.0 < reference.compute() < 1.0
    assert torch.equal(ours.compute(), reference.compute())
    for name in ("tp", "fp", "tn", "fn"):
        assert torch.equal(getattr(ours, name), getattr(reference, name)), name


def test_running_accuracy_loads_multiclass_accuracy_states():
    reference = MulticlassAccuracy(3, average="micro")
    reference.persistent(True)
    reference.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    ours = RunningAccuracy(3)
    ours.persistent(True)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert ours.compute() == 0.75


def test_running_mean_equals_mean_metric_with_weights():
    ours, reference = RunningMean(), MeanMetric()
    for value, weight in [(torch.tensor(2.0), 3), (torch.tensor([1.0, 5.0]), 2), (torch.tensor(0.5), 1)]:
        ours.update(value, weight=weight)
        reference.update(value, weight=weight)
    assert torch.allclose(ours.compute(), reference.compute())
    assert torch.allclose(ours.weight, reference.weight) and ours.weight == 8


def test_step_loss_is_logged_on_the_logger_steps_only(chdir_tmp):
    pl.seed_everything(0)
    model = Classifier(LeNet(num_classes=10, in_chans=1, input_size=8, padding=2))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=7,
        log_every_n_steps=3,
        logger=CSVLogger(chdir_tmp),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    called_at, log = [], model.log

    def spy(name, *args, **kwargs):
        if name == "train/loss_step":
            called_at.append(model.global_step)
        return log(name, *args, **kwargs)

    model.log = spy
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=16))
    with open(chdir_tmp / "lightning_logs" / "version_0" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]
    assert steps == [2, 5]  # every 3rd step, 0-based
    assert called_at == [2, 5]  # self.log is not called on the other steps
