"""FlexMatch, FreeMatch, SoftMatch: each weighting rule on hand-computed batches, state in checkpoints, DDP state."""

from __future__ import annotations

import math
import os

import lightning.pytorch as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.semisup import SemiSupervisedDataModule
from ssl_lightning.methods import FixMatch, FlexMatch, FreeMatch, SoftMatch, flexmatch, freematch, softmatch
from ssl_lightning.methods.distributed import gather_rows
from ssl_lightning.methods.flexmatch import convex_mapping, learning_effects
from ssl_lightning.methods.freematch import fairness_loss
from ssl_lightning.methods.softmatch import align_to_uniform
from ssl_lightning.nets import LeNet

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def lenet(num_classes: int = 3) -> LeNet:
    return LeNet(num_classes=num_classes, in_chans=1, input_size=8, padding=2)


def flex(num_unlabelled: int = 6, **kwargs) -> FlexMatch:
    model = FlexMatch(lenet(), **{"threshold": 0.9, **kwargs})
    model.track_pool(num_unlabelled)
    return model


def rows(*values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- FlexMatch ------------------------------------------------------------------------------------
def test_flexmatch_class_thresholds_hand_computed():
    model = flex()  # 3 classes, a pool of 6, threshold 0.9, warm-up on
    # step 1: every beta_c is 0, so T_c = M(0) * 0.9 = 0 and every sample counts
    step1 = rows([0.95, 0.03, 0.02], [0.06, 0.92, 0.02], [0.50, 0.30, 0.20], [0.97, 0.02, 0.01])
    assert model.unlabelled_weights(step1, torch.tensor([0, 1, 2, 3])).tolist() == [1, 1, 1, 1]
    # confident (>= 0.9): sample 0 -> class 0, 1 -> 1, 3 -> 0; samples 2, 4, 5 unused
    assert model.selected_label.tolist() == [0, 1, -1, 0, -1, -1]
    # sigma = [2, 1, 0], unused 3: beta = sigma / max(2, 3) = [2/3, 1/3, 0]
    assert torch.allclose(model.learning_effect, torch.tensor([2 / 3, 1 / 3, 0.0]))
    # T_c = M(beta_c) * 0.9 with M(x) = x / (2 - x): M(2/3) = 1/2, M(1/3) = 1/5, M(0) = 0
    assert torch.allclose(model.class_thresholds(), torch.tensor([0.45, 0.18, 0.0]))
    # step 2 uses those thresholds: 0.40 < T_0 = 0.45; class 2 (T 0); 0.85 >= T_1 = 0.18; 0.46 >= 0.45
    step2 = rows([0.40, 0.35, 0.25], [0.02, 0.03, 0.95], [0.10, 0.85, 0.05], [0.46, 0.44, 0.10])
    assert model.unlabelled_weights(step2, torch.tensor([2, 4, 5, 1])).tolist() == [0, 1, 1, 1]
    # only sample 4 was confident (class 2); sample 1 keeps its earlier class 1
    assert model.selected_label.tolist() == [0, 1, -1, 0, 2, -1]
    # sigma = [2, 1, 1], unused 2: beta = [1, 1/2, 1/2]; T = [M(1), M(1/2), M(1/2)] * 0.9 = [0.9, 0.3, 0.3]
    assert torch.allclose(model.class_thresholds(), torch.tensor([0.9, 0.3, 0.3]))
    assert model.weighting_stats()["threshold"].item() == pytest.approx(0.5)


def test_flexmatch_without_warmup_normalises_by_the_largest_class():
    model = flex(threshold_warmup=False)
    step1 = rows([0.95, 0.03, 0.02], [0.06, 0.92, 0.02], [0.50, 0.30, 0.20], [0.97, 0.02, 0.01])
    model.unlabelled_weights(step1, torch.tensor([0, 1, 2, 3]))
    # sigma = [2, 1, 0]: beta = sigma / 2 = [1, 1/2, 0] (the 3 unused samples do not count)
    assert torch.allclose(model.class_thresholds(), torch.tensor([0.9, 0.3, 0.0]))


def test_learning_effects_are_kept_while_one_value_holds_every_sample():
    previous = torch.tensor([0.1, 0.2, 0.3])
    assert learning_effects(torch.full((5,), -1), 3, previous) is previous  # nobody confident yet
    assert learning_effects(torch.full((5,), 2), 3, previous) is previous  # USB: no update then either
    assert torch.equal(learning_effects(torch.tensor([2, 2, -1, -1, -1]), 3, previous), torch.tensor([0, 0, 2 / 3]))
    assert torch.allclose(convex_mapping(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([0.0, 1 / 3, 1.0]))


def test_flexmatch_without_indices_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="data.init_args.unlabelled_indices: true"):
        flex().unlabelled_weights(rows([0.9, 0.05, 0.05]), None)
    model = FlexMatch(lenet(10))
    data = SemiSupervisedDataModule(DigitsDataModule(batch_size=8, val_size=300, test_size=360, labels_per_class=2))
    trainer = pl.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    with pytest.raises(ValueError, match="data.init_args.unlabelled_indices: true"):
        trainer.fit(model, datamodule=data)


# ---- FreeMatch ------------------------------------------------------------------------------------
FREE_BATCH = rows([0.70, 0.20, 0.10], [0.45, 0.35, 0.20], [0.10, 0.80, 0.10], [0.20, 0.20, 0.60])


def test_freematch_self_adaptive_thresholds_hand_computed():
    model = FreeMatch(lenet(), momentum=0.5)  # tau, p_model, label_hist start at 1/3
    weights = model.unlabelled_weights(FREE_BATCH, None)
    # tau = 0.5 * 1/3 + 0.5 * mean(0.70, 0.45, 0.80, 0.60) = 1/6 + 0.31875
    tau = 1 / 6 + 0.5 * (0.70 + 0.45 + 0.80 + 0.60) / 4
    assert model.tau.item() == pytest.approx(tau)
    # p_model = 1/6 + 0.5 * mean rows = 1/6 + 0.5 * [0.3625, 0.3875, 0.25]
    p_model = [1 / 6 + 0.5 * 0.3625, 1 / 6 + 0.5 * 0.3875, 1 / 6 + 0.5 * 0.25]
    assert model.p_model.tolist() == pytest.approx(p_model)
    # argmax histogram [2, 1, 1] / 4
    assert model.label_hist.tolist() == pytest.approx([1 / 6 + 0.25, 1 / 6 + 0.125, 1 / 6 + 0.125])
    # thresholds = p_model / max(p_model) * tau = [0.468581, 0.485417, 0.392823]
    thresholds = [p / p_model[1] * tau for p in p_model]
    assert model.class_thresholds().tolist() == pytest.approx(thresholds)
    assert thresholds[0] == pytest.approx(0.468581, abs=1e-6)
    # 0.70 >= T_0; 0.45 < T_0 = 0.4686; 0.80 >= T_1; 0.60 >= T_2 = 0.3928
    assert weights.tolist() == [1, 0, 1, 1]
    assert model.weighting_stats()["tau"].item() == pytest.approx(tau)


def test_fairness_loss_hand_computed_and_only_over_the_masked_samples():
    strong = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]]).log().requires_grad_()
    mask = torch.tensor([True, True, False])
    p_model, label_hist = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.5, 0.25, 0.25])
    loss = fairness_loss(strong, mask, p_model, label_hist)
    # masked probs: argmax histogram [1/2, 1/2, 0]; mean [0.375, 0.375, 0.25] / hist (1/0 -> 0) -> [0.5, 0.5, 0]
    # target: p_model / label_hist = [1, 1.2, 0.8] -> [1/3, 0.4, 0.8/3]
    expected = (1 / 3) * math.log(0.5 + 1e-12) + 0.4 * math.log(0.5 + 1e-12) + (0.8 / 3) * math.log(1e-12)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert strong.grad[2].abs().sum() == 0 and strong.grad[:2].abs().sum() > 0


def test_freematch_adds_the_weighted_fairness_loss_and_fixmatch_adds_nothing():
    torch.manual_seed(0)
    free, fix = FreeMatch(lenet(), lambda_f=0.5, momentum=0.9), FixMatch(lenet())
    fix.backbone.load_state_dict(free.backbone.state_dict())
    logits = [torch.randn(6, 3), torch.randn(6, 3)]
    weights = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    terms = free.extra_unlabelled_losses(logits, weights)
    expected = 0.5 * fairness_loss(logits[1], weights > 0, free.p_model, free.label_hist)
    assert terms.keys() == {"loss_fair"} and torch.allclose(terms["loss_fair"], expected)
    assert free.extra_unlabelled_losses(logits, torch.zeros(6))["loss_fair"] == 0  # no sample above threshold
    assert fix.extra_unlabelled_losses(logits, weights) == {}


# ---- SoftMatch ------------------------------------------------------------------------------------
SOFT_BATCH = rows([0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.4, 0.3, 0.3])  # confidences .9 .6 .5 .4


def test_softmatch_truncated_gaussian_weights_hand_computed():
    # momentum 0: mu = mean(.9, .6, .5, .4) = 0.6, var = (.09 + 0 + .01 + .04) / 3 (unbiased)
    model = SoftMatch(lenet(), momentum=0.0, dist_align=False)
    weights = model.unlabelled_weights(SOFT_BATCH, None)
    var = 0.14 / 3
    assert model.mu.item() == pytest.approx(0.6) and model.var.item() == pytest.approx(var)
    # 1 at or above mu; below: exp(-(conf - mu)^2 / (2 var / n_sigma^2)), n_sigma = 2
    expected = [1.0, 1.0, math.exp(-(0.1**2) / (2 * var / 4)), math.exp(-(0.2**2) / (2 * var / 4))]
    assert weights.tolist() == pytest.approx(expected)
    assert expected[2] == pytest.approx(0.651439, abs=1e-6) and expected[3] == pytest.approx(0.180092, abs=1e-6)


def test_softmatch_emas_start_at_one_over_c_and_one():
    model = SoftMatch(lenet(), momentum=0.5, dist_align=False)
    weights = model.unlabelled_weights(SOFT_BATCH, None)
    mu, var = 0.5 / 3 + 0.5 * 0.6, 0.5 * 1.0 + 0.5 * 0.14 / 3  # 0.466667, 0.523333
    assert model.mu.item() == pytest.approx(mu) and model.var.item() == pytest.approx(var)
    assert weights.tolist() == pytest.approx([1.0, 1.0, 1.0, math.exp(-((0.4 - mu) ** 2) / (2 * var / 4))])
    assert model.weighting_stats() == {"conf_mu": pytest.approx(mu), "conf_var": pytest.approx(var)}


def test_softmatch_uniform_distribution_alignment_hand_computed():
    model = SoftMatch(lenet(), momentum=0.5)
    batch = rows([0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.4, 0.3, 0.3], [0.8, 0.1, 0.1])
    model.unlabelled_weights(batch, None)
    # the first step sets p_model to the batch mean [2.0, 1.3, 0.7] / 4 (USB's DistAlignEMAHook)
    assert model.p_model.tolist() == pytest.approx([0.5, 0.325, 0.175]) and model.align_steps == 1
    # row 0 aligned: [0.6 / 0.5, 0.3 / 0.325, 0.1 / 0.175] / sum = [1.2, 0.923077, 0.571429] / 2.694505
    aligned = align_to_uniform(batch, model.p_model)
    assert aligned[0].tolist() == pytest.approx([0.445350, 0.342577, 0.212072], abs=1e-5)
    # the confidences are the aligned ones: mu = 0.5 / 3 + 0.5 * mean(max aligned)
    assert model.mu.item() == pytest.approx(0.5 / 3 + 0.5 * aligned.max(dim=1).values.mean().item())
    model.unlabelled_weights(rows([0.2, 0.2, 0.6]), None)  # then an EMA: 0.5 * p_model + 0.5 * batch mean
    assert model.p_model.tolist() == pytest.approx([0.35, 0.2625, 0.3875])


def test_softmatch_pseudo_labels_are_the_unaligned_argmax():
    model = SoftMatch(lenet(), momentum=0.5)
    model.unlabelled_weights(rows([0.6, 0.3, 0.1], [0.6, 0.3, 0.1]), None)  # p_model = [0.6, 0.3, 0.1]
    weak = torch.tensor([[0.5, 0.3, 0.2]]).log()  # aligned: [0.83, 1, 2] / sum -> argmax 2
    assert align_to_uniform(weak.softmax(1), model.p_model).argmax().item() == 2
    _, _, pseudo = model.weighted_pseudo_label_loss(weak, torch.zeros(1, 3), None)
    assert pseudo.tolist() == [0]


# ---- state: checkpoints and DDP -------------------------------------------------------------------
def construct(method: str) -> FixMatch:
    torch.manual_seed(0)
    if method == "flexmatch":
        return FlexMatch(lenet(), threshold=0.5)
    return {"freematch": FreeMatch, "softmatch": SoftMatch}[method](lenet(), momentum=0.7)


def build(method: str) -> FixMatch:
    model = construct(method)
    if isinstance(model, FlexMatch):
        model.track_pool(12)
    return model


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [((3 * torch.randn(4, 3, generator=g)).softmax(1), torch.randperm(12, generator=g)[:4]) for _ in range(n)]


def state(model: FixMatch) -> dict[str, torch.Tensor]:
    return {name: buffer.clone() for name, buffer in model.named_buffers() if not name.startswith(("backbone", "ema"))}


STATE = {
    "flexmatch": {"selected_label", "learning_effect"},
    "freematch": {"tau", "p_model", "label_hist"},
    "softmatch": {"mu", "var", "p_model", "align_steps"},
}


@pytest.mark.parametrize("method", sorted(STATE))
def test_state_round_trips_through_a_checkpoint(method, tmp_path):
    model = build(method)
    first, after = batches(3), batches(2, seed=1)
    for probs, index in first:
        model.unlabelled_weights(probs, index)
    assert STATE[method] <= set(model.state_dict())
    torch.save(model.state_dict(), tmp_path / "state.pt")
    restored = construct(method)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))  # FlexMatch: sized from the file
    fresh = build(method)
    for probs, index in after:
        expected = model.unlabelled_weights(probs, index)
        assert torch.equal(restored.unlabelled_weights(probs, index), expected)
        fresh.unlabelled_weights(probs, index)
    assert all(torch.equal(a, b) for a, b in zip(state(model).values(), state(restored).values(), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(state(model).values(), state(fresh).values(), strict=True))


def test_flexmatch_checkpoint_of_a_fit_holds_the_pool_state(tmp_path):
    pl.seed_everything(0)
    source = DigitsDataModule(batch_size=8, val_size=300, test_size=360, labels_per_class=2)
    data = SemiSupervisedDataModule(source, mu=2, flip=False, unlabelled_indices=True)
    model = FlexMatch(lenet(10), threshold=0.1)  # every max probability of 10 classes is >= 0.1
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    # 3 steps of 2 * 8 distinct unlabelled samples each, all confident
    assert len(model.selected_label) == 1797 - 300 - 360 and (model.selected_label >= 0).sum() == 3 * 16
    assert "train/threshold" in trainer.callback_metrics
    trainer.save_checkpoint(tmp_path / "flex.ckpt")
    restored = FlexMatch.load_from_checkpoint(tmp_path / "flex.ckpt", backbone=lenet(10))
    assert torch.equal(restored.selected_label, model.selected_label)
    assert torch.equal(restored.learning_effect, model.learning_effect)


def contribution(method: str, step: tuple[torch.Tensor, torch.Tensor], threshold: float) -> torch.Tensor:
    """The rows a rank passes to ``gather_rows`` for its batch: probabilities, or FlexMatch's (index, class or -1)."""
    probs, index = step
    if method != "flexmatch":
        return probs
    confidence, classes = probs.max(dim=1)
    return torch.stack([index, torch.where(confidence >= threshold, classes, -1)], dim=1)


@pytest.mark.parametrize("method", sorted(STATE))
def test_two_simulated_ranks_update_from_the_global_batch(method, monkeypatch):
    """Rank r sees batch r and the gather returns both ranks' rows: each rank ends with the state of one
    process that saw the whole global batch, and weights its own samples as that process would."""
    module = {"flexmatch": flexmatch, "freematch": freematch, "softmatch": softmatch}[method]
    ranks, reference, alone = [build(method), build(method)], build(method), build(method)
    for step0, step1 in zip(batches(3, seed=0), batches(3, seed=1), strict=True):
        expected = reference.unlabelled_weights(torch.cat([step0[0], step1[0]]), torch.cat([step0[1], step1[1]]))
        alone.unlabelled_weights(*step0)  # rank 0 without the gather: its local batch only
        rows = [contribution(method, step, reference.threshold) for step in (step0, step1)]
        for r, (model, step) in enumerate(zip(ranks, (step0, step1), strict=True)):

            def all_ranks(local: torch.Tensor, r: int = r, rows: list = rows) -> torch.Tensor:
                assert torch.equal(local, rows[r])
                return torch.cat(rows)

            with monkeypatch.context() as patch:
                patch.setattr(module, "gather_rows", all_ranks)
                assert torch.equal(model.unlabelled_weights(*step), expected[4 * r : 4 * (r + 1)])
    for name, value in state(reference).items():
        assert torch.equal(state(ranks[0])[name], value) and torch.equal(state(ranks[1])[name], value), name
    assert any(not torch.equal(state(alone)[name], value) for name, value in state(reference).items())


# ---- a real 2-process gather (gloo) -------------------------------------------------------------
def _gloo_worker(rank: int, init_file: str, out: str) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        rows = torch.arange(6, dtype=torch.float32).reshape(3, 2) + 10 * rank
        gathered = gather_rows(rows[: 3 - rank])  # uneven: 3 rows on rank 0, 2 on rank 1
        model = build("freematch")
        local = batches(2, seed=rank)
        for probs, index in local:
            model.unlabelled_weights(probs, index)
        torch.save({"gathered": gathered, "state": state(model)}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh interpreters import torch and Lightning: ~35 s on one busy core
def test_gather_rows_under_gloo_gives_every_rank_the_global_batch(tmp_path):
    mp.spawn(_gloo_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    expected_rows = torch.tensor([[0, 1], [2, 3], [4, 5], [10, 11], [12, 13]], dtype=torch.float32)
    assert torch.equal(rank0["gathered"], expected_rows) and torch.equal(rank1["gathered"], expected_rows)
    reference = build("freematch")  # one process over both ranks' batches of each step
    for (p0, i0), (p1, i1) in zip(batches(2, seed=0), batches(2, seed=1), strict=True):
        reference.unlabelled_weights(torch.cat([p0, p1]), torch.cat([i0, i1]))
    for name, value in state(reference).items():
        assert torch.equal(rank0["state"][name], rank1["state"][name]), name
        assert torch.allclose(rank0["state"][name], value, atol=1e-7), name
