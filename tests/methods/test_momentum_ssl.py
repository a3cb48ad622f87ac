"""BYOL, MoCo, DINO: frozen teachers outside the optimizer, the momentum update and schedule, exact resume
(teacher, queue, centre), encoder export into a Classifier."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.methods import Classifier
from ssl_lightning.methods.byol import BYOL
from ssl_lightning.methods.dino import DINO
from ssl_lightning.methods.moco import MoCo
from ssl_lightning.methods.momentum import cosine_momentum
from ssl_lightning.nets import LeNet

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def lenet(num_classes: int = 0) -> LeNet:
    return LeNet(num_classes=num_classes, in_chans=1, input_size=8, padding=2)


METHODS = {
    "BYOL": lambda **kw: BYOL(lenet(), projection_dim=16, hidden_dim=32, knn_k=0, momentum_start=0.9, **kw),
    "MoCo": lambda **kw: MoCo(lenet(), projection_dim=16, hidden_dim=32, queue_size=40, knn_k=0, momentum_start=0.9,
                              **kw),
    "DINO": lambda **kw: DINO(lenet(), hidden_dim=32, bottleneck_dim=8, output_dim=32, knn_k=0, momentum_start=0.9,
                              **kw),
    # the digits YAMLs' batch-normed heads: the teacher's running statistics resume too
    "MoCo+bn": lambda **kw: MoCo(lenet(), projection_dim=16, hidden_dim=32, queue_size=40, knn_k=0, batch_norm=True,
                                 momentum_start=0.9, **kw),
    "DINO+bn": lambda **kw: DINO(lenet(), hidden_dim=32, bottleneck_dim=8, output_dim=32, knn_k=0, batch_norm=True,
                                 momentum_start=0.9, **kw),
}  # fmt: skip
QUEUE = ["criterion.memory_bank.bank", "criterion.memory_bank.bank_ptr"]
STATE = {"MoCo": QUEUE, "MoCo+bn": QUEUE, "DINO": ["criterion.center"], "DINO+bn": ["criterion.center"]}


def two_views(n: int = 8) -> DataLoader:
    """(x1, x2, y) batches of 8 digits-sized images; one batch per epoch, so a resumed run sees the same batches."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 8, 8, generator=g)
    views = TensorDataset(x + 0.1 * torch.randn(x.shape, generator=g), x + 0.1 * torch.randn(x.shape, generator=g),
                          torch.zeros(n, dtype=torch.long))  # fmt: skip
    return DataLoader(views, batch_size=8)


def trainer(max_steps: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, **kwargs)  # fmt: skip


def teacher_state(model: pl.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "_momentum." in k or k.startswith("criterion.")}


class RecordMomentum(pl.Callback):
    def __init__(self) -> None:
        self.values: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.values.append((trainer.global_step, pl_module.momentum()))


class StopAfter(pl.Callback):
    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        trainer.should_stop = trainer.global_step >= self.steps


@pytest.mark.parametrize("name", list(METHODS))
def test_teachers_get_no_gradient_are_not_optimised_and_follow_the_schedule(name):
    pl.seed_everything(0)
    model = METHODS[name]()
    teachers = model.teachers()
    assert teachers and all(not p.requires_grad for t in teachers for p in t.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    record = RecordMomentum()
    fit = trainer(4, callbacks=[record])
    fit.fit(model, two_views())
    assert math.isfinite(float(fit.callback_metrics["train/loss"]))
    # the teachers never received a gradient and are not among the optimizer's parameters; every trained one is
    assert all(p.grad is None for t in teachers for p in t.parameters())
    optimised = {id(p) for group in fit.optimizers[0].param_groups for p in group["params"]}
    assert not optimised & {id(p) for t in teachers for p in t.parameters()}
    assert {id(p) for p in model.parameters() if p.requires_grad} <= optimised
    # the student trained and the teacher moved towards it
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("encoder."))
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("encoder_momentum."))
    # momentum of global step k of 4: the cosine schedule from 0.9 to 1
    assert record.values == [(k, pytest.approx(cosine_momentum(k, 4, 0.9, 1.0))) for k in range(4)]
    assert [round(m, 6) for _, m in record.values] == [0.9, 0.925, 0.975, 1.0]  # 1 - 0.1 (cos(pi k / 3) + 1) / 2


def test_cosine_momentum_schedule_values():
    assert cosine_momentum(0, 101, 0.99) == 0.99
    assert cosine_momentum(50, 101, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 2) + 1) / 2)
    assert cosine_momentum(25, 101, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert cosine_momentum(100, 101, 0.99) == cosine_momentum(500, 101, 0.99) == 1.0  # kept after the last step
    assert cosine_momentum(7, 101, 0.999, 0.999) == pytest.approx(0.999)  # constant (MoCo v2)
    with pytest.raises(ValueError, match="0 <= start <= end <= 1"):
        cosine_momentum(0, 10, 0.99, 0.9)
    with pytest.raises(ValueError, match="0 <= start <= end <= 1"):
        BYOL(lenet(), momentum_start=1.5)


@pytest.mark.parametrize("name", list(METHODS))
def test_update_is_the_ema_formula(name):
    torch.manual_seed(0)
    model = METHODS[name]()
    with torch.no_grad():  # move the students away from their copies
        for student, _ in model.teacher_names:
            for p in getattr(model, student).parameters():
                p.add_(torch.randn_like(p))
    pairs = [(s, t) for s, t in model.teacher_names]
    old = {t: [p.clone() for p in getattr(model, t).parameters()] for _, t in pairs}
    model.update_teachers(0.7)
    for student, teacher in pairs:
        for s, t, t_old in zip(getattr(model, student).parameters(), getattr(model, teacher).parameters(), old[teacher],
                               strict=True):  # fmt: skip
            torch.testing.assert_close(t, 0.7 * t_old + 0.3 * s)


@pytest.mark.parametrize("name", list(METHODS))
def test_checkpoint_round_trip_and_resume_restore_teacher_queue_and_centre(name, tmp_path):
    pl.seed_everything(0)
    straight = METHODS[name]()
    trainer(4).fit(straight, two_views())
    for key in STATE.get(name, []):  # the method's extra state is in the state dict and has moved
        assert key in straight.state_dict()
    if name.endswith("+bn"):
        assert any(k.endswith("running_mean") for k in teacher_state(straight))
    if name.startswith("MoCo"):
        # 2 x 8 keys per step into 40 places: 16, 32, then the 8 that fit (pointer back to 0), 16
        assert int(straight.criterion.memory_bank.bank_ptr) == 16
    if name.startswith("DINO"):
        assert straight.center.abs().sum() > 0

    pl.seed_everything(0)
    first = METHODS[name]()
    fit = trainer(4, callbacks=[StopAfter(2)])  # an interrupted run: the same 4-step schedule, stopped after 2
    fit.fit(first, two_views())
    assert fit.global_step == 2
    fit.save_checkpoint(tmp_path / "half.ckpt")
    restored = type(first).load_from_checkpoint(tmp_path / "half.ckpt", encoder=lenet())
    assert teacher_state(restored).keys() == teacher_state(first).keys()
    assert all(torch.equal(v, teacher_state(first)[k]) for k, v in teacher_state(restored).items())

    resumed = METHODS[name]()
    trainer(4).fit(resumed, two_views(), ckpt_path=tmp_path / "half.ckpt")
    expected = straight.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in resumed.state_dict().items()), "resume differs"


@pytest.mark.parametrize("name", list(METHODS))
def test_exported_encoder_loads_into_a_classifier(name, chdir_tmp):
    pl.seed_everything(0)
    model = METHODS[name](encoder_path=str(chdir_tmp / "enc.pt"))
    trainer(2).fit(model, two_views())
    classifier = Classifier(
        lenet(num_classes=10), backbone_checkpoint=str(chdir_tmp / "enc.pt"), finetune="linear_probe"
    )
    model.eval()
    classifier.eval()
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(classifier.backbone.forward_features(x), model(x))


def test_wrong_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="BYOL needs training batches .*TwoViewDataModule"):
        METHODS["BYOL"]().training_step((torch.randn(2, 1, 8, 8), torch.zeros(2)), 0)
