"""SimCLR: NT-Xent by hand, kNN votes, training with the kNN monitor, encoder round-trip into Classifier."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.semisup import TwoViewDataModule
from ssl_lightning.methods import Classifier
from ssl_lightning.methods.losses import NTXentLoss, nt_xent
from ssl_lightning.methods.simclr import SimCLR, knn_predict, knn_top1
from ssl_lightning.nets import LeNet


def lenet(num_classes: int = 0) -> LeNet:
    return LeNet(num_classes=num_classes, in_chans=1, input_size=8, padding=2)


def test_nt_xent_hand_computed_orthogonal_pairs():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each anchor: positive similarity 1, two negatives with similarity 0 -> -log(e / (e + 2))
    expected = -math.log(math.e / (math.e + 2))
    assert nt_xent(z, z, temperature=1.0).item() == pytest.approx(expected, abs=1e-6)
    # temperature 0.5 scales every similarity by 2; inputs are normalized first (scale does not matter)
    expected_half = -math.log(math.e**2 / (math.e**2 + 2))
    assert nt_xent(3 * z, z, temperature=0.5).item() == pytest.approx(expected_half, abs=1e-6)


def test_nt_xent_hand_computed_general_case():
    z0 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    z1 = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    t = 0.5
    views = [z0[0], z0[1], z1[0], z1[1]]  # 2N embeddings, positive of k is (k + 2) % 4
    total = 0.0
    for k in range(4):
        sims = [float(views[k] @ views[j]) / t for j in range(4) if j != k]
        positive = float(views[k] @ views[(k + 2) % 4]) / t
        total += -positive + math.log(sum(math.exp(s) for s in sims))
    assert nt_xent(z0, z1, temperature=t).item() == pytest.approx(total / 4, abs=1e-6)
    assert NTXentLoss(temperature=t)(z0, z1).item() == pytest.approx(total / 4, abs=1e-6)


def test_nt_xent_is_lower_for_aligned_views_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(8, 16, generator=g, requires_grad=True)
    aligned = nt_xent(z0, z0.detach() + 0.01 * torch.randn(8, 16, generator=g))
    shuffled = nt_xent(z0, z0.detach()[torch.randperm(8, generator=g)])
    assert aligned < shuffled
    aligned.backward()
    assert z0.grad is not None and torch.isfinite(z0.grad).all()


def test_nt_xent_rejects_bad_shapes_and_temperature():
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)


def test_knn_predict_votes_of_nearest_neighbours():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 2])
    scores = knn_predict(torch.tensor([[1.0, 0.05], [0.1, 1.0]]), bank, labels, num_classes=3, k=2)
    assert scores.argmax(1).tolist() == [0, 1]
    assert scores[0, 2] == 0  # the opposite vector is not among the 2 nearest
    sims = F.normalize(torch.tensor([[0.1, 1.0]]), dim=1) @ F.normalize(bank, dim=1).T
    top = sims[0].topk(2)
    assert scores[1, 1].item() == pytest.approx(math.exp(top.values[0].item() / 0.1), rel=1e-5)


def test_knn_top1_through_lightly_is_the_argmax_of_the_votes():
    g = torch.Generator().manual_seed(0)
    features, bank = torch.randn(40, 8, generator=g), torch.randn(100, 8, generator=g)
    labels = torch.randint(0, 5, (100,), generator=g)
    for k in (1, 7, 500):  # k above the bank size uses the whole bank
        scores = knn_predict(features, bank, labels, num_classes=5, k=k)
        assert torch.equal(knn_top1(features, bank, labels, num_classes=5, k=k), scores.argmax(1))


def test_simclr_trains_logs_knn_and_encoder_round_trips_into_classifier(chdir_tmp):
    pl.seed_everything(0)
    source = DigitsDataModule(batch_size=32, val_size=300, test_size=360, labels_per_class=5)
    dm = TwoViewDataModule(source, flip=False)
    model = SimCLR(lenet(num_classes=10), projection_dim=16, knn_k=5, encoder_path=str(chdir_tmp / "enc.pt"))
    assert model.encoder.num_classes == 0  # the head was removed
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_steps=3, limit_train_batches=3, limit_val_batches=2,
                         num_sanity_val_steps=0)  # fmt: skip
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainer.fit(model, datamodule=dm)
    assert "train/loss" in trainer.callback_metrics and 0.0 <= trainer.callback_metrics["val/knn_acc"] <= 1.0
    assert any(not torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    # the saved encoder (and the Lightning checkpoint) load into a Classifier whose features match exactly
    trainer.save_checkpoint(chdir_tmp / "simclr.ckpt")
    x = torch.randn(6, 1, 8, 8)
    model.eval()
    for path in (chdir_tmp / "enc.pt", chdir_tmp / "simclr.ckpt"):
        classifier = Classifier(lenet(num_classes=10), backbone_checkpoint=str(path), finetune="linear_probe")
        classifier.eval()
        assert torch.equal(classifier.backbone.forward_features(x), model(x))
        assert [n for n, p in classifier.named_parameters() if p.requires_grad] == ["backbone.head.weight",
                                                                                    "backbone.head.bias"]  # fmt: skip
    restored = SimCLR.load_from_checkpoint(chdir_tmp / "simclr.ckpt", encoder=lenet())
    restored.eval()
    assert torch.equal(restored(x), model(x))


def test_knn_monitor_needs_a_labelled_bank(chdir_tmp):
    model = SimCLR(lenet(), knn_k=3)
    model.knn_accuracy.update({"val_": torch.nn.Identity()})  # as if setup found classes

    class Plain:
        num_classes = 10

    model.trainer = pl.Trainer(accelerator="cpu", logger=False)
    model.trainer.datamodule = Plain()
    with pytest.raises(ValueError, match="knn_k: 0"):
        model._build_bank()


def test_wrong_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="TwoViewDataModule"):
        SimCLR(lenet()).training_step((torch.randn(2, 1, 8, 8), torch.zeros(2)), 0)


def _gathered_loss_worker(rank: int, init_file: str, z0: torch.Tensor, z1: torch.Tensor, out: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        half = len(z0) // 2
        local0 = z0[rank * half : (rank + 1) * half].clone().requires_grad_(True)
        local1 = z1[rank * half : (rank + 1) * half].clone()
        loss = nt_xent(local0, local1, temperature=0.5, gather_distributed=True)
        loss.backward()
        out[rank] = (loss.item(), local0.grad.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_nt_xent_gathered_over_two_ranks_equals_the_full_batch_loss(tmp_path):
    """Under DDP each rank's local loss uses every rank's negatives; their mean is the full-batch loss."""
    import torch.multiprocessing as mp

    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    out = mp.Manager().dict()
    mp.spawn(_gathered_loss_worker, args=(str(tmp_path / "init"), z0, z1, out), nprocs=2, join=True)
    expected = nt_xent(z0, z1, temperature=0.5)
    assert (out[0][0] + out[1][0]) / 2 == pytest.approx(expected.item(), abs=1e-5)
    # all_gather's backward sums every rank's loss gradient into the local rows; DDP then averages over the
    # 2 ranks, so half the local gradient must equal the full-batch loss gradient of those rows
    full0 = z0.clone().requires_grad_(True)
    nt_xent(full0, z1, temperature=0.5).backward()
    for rank in (0, 1):
        assert torch.allclose(out[rank][1] / 2, full0.grad[rank * 4 : (rank + 1) * 4], atol=1e-6)
