"""ProtoNet: the loss of a hand-computed episode, training, evaluation logging, checkpoints."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_lightning.methods.protonet import ProtoNet
from ssl_lightning.nets.conv4 import Conv4

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


class Flatten(nn.Module):
    """Identity embedding (plus one unused weight so an optimizer can be built)."""

    num_classes = 0
    num_features = 2

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.head = nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def _episode(points: list[list[float]]) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.float32).view(-1, 2, 1, 1)


def test_loss_of_hand_computed_episode():
    # 2-way 2-shot: prototypes are the class means (0, 0) and (2, 0).
    support_x = _episode([[0, 1], [0, -1], [2, 0], [2, 0]])
    support_y = torch.tensor([0, 0, 1, 1])
    # query (1, 0) labelled 0: distances 1 and 1 -> loss ln 2, 50% chance, argmax picks class 0
    # query (0, 0) labelled 1: squared distances 0 and 4 -> logits (0, -4) -> loss ln(1 + e^4)
    query_x = _episode([[1, 0], [0, 0]])
    query_y = torch.tensor([0, 1])
    expected = (math.log(2) + math.log(1 + math.exp(4))) / 2
    model = ProtoNet(Flatten())
    logits = model.task_logits(support_x, support_y, query_x, n_way=2)
    assert torch.allclose(logits, torch.tensor([[-1.0, -1.0], [0.0, -4.0]]))
    batch = tuple(t.unsqueeze(0).repeat(3, *[1] * t.ndim) for t in (support_x, support_y, query_x, query_y))
    loss, accs = model.meta_loss(batch)  # T = 3 identical tasks: mean = one task's loss
    assert torch.equal(accs, torch.full((3,), 0.5))  # the tie goes to class 0 (right), (0, 0) to class 0 (wrong)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_cosine_distance_and_bad_distance():
    model = ProtoNet(Flatten(), distance="cosine")
    logits = model.task_logits(_episode([[1, 0], [0, 1]]), torch.tensor([0, 1]), _episode([[2, 0]]), n_way=2)
    assert torch.allclose(logits, torch.tensor([[10.0, 0.0]]))
    with pytest.raises(ValueError, match="distance"):
        ProtoNet(Flatten(), distance="l1")  # type: ignore[arg-type]


def synthetic_episodes(n_batches: int, tasks: int, n_way: int = 5, k: int = 1, q: int = 3, size: int = 16, seed=0):
    """Episodes whose classes are separable: each class is a noisy constant-intensity pattern."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n_batches):
        patterns = torch.randn(tasks, n_way, 1, 1, size, size, generator=g)
        sx = (patterns + 0.3 * torch.randn(tasks, n_way, k, 1, size, size, generator=g)).flatten(1, 2)
        qx = (patterns + 0.3 * torch.randn(tasks, n_way, q, 1, size, size, generator=g)).flatten(1, 2)
        sy = torch.arange(n_way).repeat_interleave(k).expand(tasks, -1)
        qy = torch.arange(n_way).repeat_interleave(q).expand(tasks, -1)
        batches.append((sx, sy.clone(), qx, qy.clone()))
    return batches


def test_trains_and_logs_accuracy_with_confidence_interval(chdir_tmp):
    model = ProtoNet(Conv4(num_classes=0, input_size=16))
    train = DataLoader(synthetic_episodes(4, tasks=2), batch_size=None)
    test = DataLoader(synthetic_episodes(6, tasks=1, seed=1), batch_size=None)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, train)
    (result,) = trainer.test(model, test, verbose=False)
    assert set(result) >= {"test/loss", "test/acc", "test/acc_ci95"}
    assert result["test/acc"] > 0.6  # separable patterns; chance is 0.2
    assert 0 <= result["test/acc_ci95"] < 0.5
    path = chdir_tmp / "protonet.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["distance"] == "squared_euclidean"
    reloaded = ProtoNet.load_from_checkpoint(path, backbone=Conv4(num_classes=0, input_size=16))
    x = torch.randn(2, 1, 16, 16)
    assert torch.allclose(reloaded.eval()(x), model.eval()(x))
