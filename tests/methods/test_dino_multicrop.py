"""DINO's multi-crop: local views from TwoViewDataModule, a loss where only the student sees them, the teacher
temperature warm-up, and methods without local views refusing them."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.augment import RandomResizedCrop
from ssl_lightning.data.two_view import TwoViewDataModule
from ssl_lightning.methods.byol import BYOL
from ssl_lightning.methods.dino import DINO

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


class PooledEncoder(nn.Module):
    """A conv and global average pooling: accepts any input size (the timm contract)."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, self.num_features, 3, padding=1)
        self.sizes: list[int] = []  # input sides seen, to check who sees the local views

    def forward_features(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[-1])
        return F.relu(self.conv(x)).mean(dim=(2, 3))


def digits_views(**kwargs) -> TwoViewDataModule:
    dm = TwoViewDataModule(DigitsDataModule(batch_size=16, val_size=100, test_size=100), flip=False, **kwargs)
    dm.setup("fit")
    return dm


def first_views(dm: TwoViewDataModule) -> tuple[Tensor, ...]:
    return dm.training_views(next(iter(dm.train_dataloader())))


def test_random_resized_crop_resizes_to_size_and_refuses_partial_application():
    x = torch.rand(5, 3, 32, 32)
    out = RandomResizedCrop(scale=(0.05, 0.4), size=16)(x, torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 16, 16)
    assert RandomResizedCrop()(x, torch.Generator().manual_seed(0)).shape == x.shape
    with pytest.raises(ValueError, match="needs p = 1"):
        RandomResizedCrop(size=16, p=0.5)


def test_local_crops_are_a_fourth_item_of_small_seeded_views():
    dm = digits_views(local_crops=3)
    x1, x2, y, local = first_views(dm)
    assert x1.shape == x2.shape == (16, 1, 8, 8) and len(y) == 16
    assert local.shape == (3, 16, 1, 4, 4)  # half the side by default
    again = first_views(digits_views(local_crops=3))
    assert all(torch.equal(a, b) for a, b in zip((x1, x2, local), (again[0], again[1], again[3]), strict=True))
    assert not torch.equal(local[0], local[1])  # independent crops
    assert digits_views(local_crops=2, local_size=6).training_views(next(iter(dm.train_dataloader())))[3].shape[-1] == 6
    plain = first_views(digits_views())
    assert len(plain) == 3 and torch.equal(plain[0], x1)  # no local crops: the two views as before
    with pytest.raises(ValueError, match="local_crops must be >= 0"):
        TwoViewDataModule(DigitsDataModule(), local_crops=-1)


def dino(**kwargs) -> DINO:
    return DINO(PooledEncoder(), hidden_dim=16, bottleneck_dim=8, output_dim=12, knn_k=0, momentum_start=0.9, **kwargs)


def test_only_the_student_sees_local_views_and_every_cross_pair_is_in_the_loss():
    torch.manual_seed(0)
    model = dino(teacher_temp=0.05, student_temp=0.2)
    x1, x2, local = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.randn(3, 4, 1, 4, 4)
    model.encoder.sizes.clear()
    model.encoder_momentum.sizes.clear()
    loss = model.multi_crop_loss(x1, x2, local)
    assert model.encoder.sizes == [8, 4] and model.encoder_momentum.sizes == [8]  # teacher: globals only
    with torch.no_grad():  # the expected loss by hand: teacher view i against every student view j != i
        students = [model.head(model.encoder.forward_features(v)) for v in (x1, x2, *local)]
        teachers = [model.head_momentum(model.encoder_momentum.forward_features(v)) for v in (x1, x2)]
        terms = [
            -(F.softmax(t / 0.05, -1) * F.log_softmax(s / 0.2, -1)).sum(-1).mean()
            for i, t in enumerate(teachers)
            for j, s in enumerate(students)
            if i != j
        ]
    assert len(terms) == 2 * 5 - 2
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-6)  # the centre starts at 0
    loss.backward()
    assert model.encoder.conv.weight.grad is not None
    assert all(p.grad is None for p in model.encoder_momentum.parameters())


def test_teacher_temperature_warms_up_over_epochs():
    model = dino(teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=10)
    schedule = model.criterion.teacher_temp_schedule
    assert schedule[0].item() == pytest.approx(0.04) and schedule[-1].item() == pytest.approx(0.07)
    x1, x2 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    cold = dino(teacher_temp=0.04)
    cold.load_state_dict(model.state_dict())  # the same weights and centre
    at_start = model.pretraining_loss(x1, x2).item()  # epoch 0 of an unattached module: the warm-up's start
    warm = dino(teacher_temp=0.07)
    warm.load_state_dict(cold.state_dict())
    assert warm.pretraining_loss(x1, x2).item() != pytest.approx(at_start, rel=1e-3)
    assert cold.pretraining_loss(x1, x2).item() == pytest.approx(at_start, rel=1e-6)
    with pytest.raises(ValueError, match="warmup_teacher_temp"):
        dino(warmup_teacher_temp=0.0)


def trainer(tmp_path, max_steps: int) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                      limit_val_batches=0, enable_model_summary=False, enable_checkpointing=False,
                      default_root_dir=tmp_path)  # fmt: skip


def test_dino_trains_on_local_crops_and_byol_refuses_them(tmp_path):
    dm = TwoViewDataModule(DigitsDataModule(batch_size=16, val_size=100, test_size=100), flip=False, local_crops=2)
    model = dino()
    trainer(tmp_path, 2).fit(model, dm)
    assert 4 in model.encoder.sizes and model.global_step == 2
    byol = BYOL(PooledEncoder(), projection_dim=8, hidden_dim=16, knn_k=0)
    with pytest.raises(ValueError, match="does not use multi-crop's local views.*local_crops: 0"):
        trainer(tmp_path, 1).fit(byol, dm)
