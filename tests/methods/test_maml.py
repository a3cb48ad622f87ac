"""MAML, FOMAML, ANIL, Meta-SGD: adaptation, meta-gradients, no state between episodes."""

from __future__ import annotations

import pickle

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import DataLoader

from ssl_lightning.methods.anil import ANIL
from ssl_lightning.methods.maml import MAML
from ssl_lightning.methods.metasgd import MetaSGD
from ssl_lightning.nets.conv4 import Conv4
from tests.methods.test_protonet import synthetic_episodes

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def task(seed: int = 0):
    (batch,) = synthetic_episodes(1, tasks=1, size=SIZE, seed=seed)
    return tuple(t[0] for t in batch)


def make(cls=MAML, **kwargs):
    torch.manual_seed(0)  # test-only: same initial weights for every model built here
    return cls(Conv4(num_classes=5, input_size=SIZE), **kwargs)


def meta_gradients(model, sx, sy, qx, qy):
    model.zero_grad()
    F.cross_entropy(model.task_logits(sx, sy, qx, 5), qy).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cls", [MAML, ANIL, MetaSGD])
def test_inner_loop_reduces_support_loss(cls):
    model = make(cls, inner_lr=0.1, inner_steps=3) if cls is not MetaSGD else make(cls, inner_steps=3)
    sx, sy, _, _ = task()
    module = model.adapted_module
    before = F.cross_entropy(model.backbone(sx), sy)
    fast = model.adapt(sx, sy)
    after = F.cross_entropy(functional_call(module, fast, (model.encode(sx),)), sy)
    assert after < before - 0.05


def test_no_state_leaks_across_episodes():
    model = make()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not any("running" in k for k in state)  # batch statistics only (Finn et al. 2017)
    a, b = task(0), task(1)
    first = model.task_logits(a[0], a[1], a[2], 5)
    model.task_logits(b[0], b[1], b[2], 5)
    again = model.task_logits(a[0], a[1], a[2], 5)
    assert torch.equal(first, again)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    # the same in eval mode (validation/test): batch statistics, no running averages
    model.eval()
    assert torch.allclose(model.task_logits(a[0], a[1], a[2], 5), first, atol=1e-6)


def test_first_and_second_order_meta_gradients_differ():
    sx, sy, qx, qy = task()
    second = meta_gradients(make(MAML, inner_steps=2), sx, sy, qx, qy)
    first = meta_gradients(make(MAML, inner_steps=2, first_order=True), sx, sy, qx, qy)
    assert second.keys() == first.keys()
    diff = sum((second[n] - first[n]).norm() for n in second)
    assert diff > 1e-3 * sum(g.norm() for g in second.values())
    # FOMAML's meta-gradient is the query gradient at the adapted weights (Finn et al. 2017, Sec. 5.2)
    fomaml = make(MAML, inner_steps=2, first_order=True)
    fast = {n: p.detach().requires_grad_() for n, p in fomaml.adapt(sx, sy).items()}
    loss = F.cross_entropy(functional_call(fomaml.backbone, fast, (qx,)), qy)
    expected = dict(zip(fast, torch.autograd.grad(loss, list(fast.values())), strict=True))
    for name in first:
        torch.testing.assert_close(first[name], expected[name.removeprefix("backbone.")], rtol=1e-4, atol=1e-6)


def test_test_time_inner_steps():
    model = make(MAML, inner_steps=1, test_inner_steps=3, inner_lr=0.1)
    sx, sy, qx, _ = task()
    train_logits = model.task_logits(sx, sy, qx, 5)
    model.eval()
    eval_logits = model.task_logits(sx, sy, qx, 5)
    three = functional_call(model.backbone, model.adapt(sx, sy, steps=3), (qx,))
    assert torch.equal(eval_logits, three)
    assert not torch.allclose(train_logits, eval_logits)


def test_anil_adapts_only_the_head_but_meta_learns_the_body():
    model = make(ANIL, inner_steps=2)
    sx, sy, qx, qy = task()
    fast = model.adapt(sx, sy)
    assert set(fast) == {"weight", "bias"}  # backbone.head's parameters only
    assert not torch.equal(fast["weight"], model.backbone.head.weight)
    grads = meta_gradients(model, sx, sy, qx, qy)
    assert grads["backbone.features.0.0.weight"].abs().sum() > 0


def test_metasgd_learns_per_parameter_inner_lrs():
    model = make(MetaSGD, inner_steps=1)
    assert set(model.inner_lrs) == {n.replace(".", "_") for n, _ in model.backbone.named_parameters()}
    alpha = model.inner_lrs["head_weight"]
    assert alpha.shape == model.backbone.head.weight.shape
    assert 0.005 <= alpha.min() and alpha.max() <= 0.1 and alpha.std() > 0
    before = alpha.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sx, sy, qx, qy = task()
    meta_gradients(model, sx, sy, qx, qy)
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(before, alpha.detach())
    constant = make(MetaSGD, inner_lr=0.2, inner_lr_range=None)
    assert torch.all(constant.inner_lrs["head_bias"] == 0.2)


def test_lightning_fit_and_test_adapt_under_inference_mode(chdir_tmp):
    model = make(MAML, inner_lr=0.4, inner_steps=1, test_inner_steps=2)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(synthetic_episodes(4, tasks=2, size=SIZE), batch_size=None))
    (result,) = trainer.test(
        model, DataLoader(synthetic_episodes(5, tasks=1, size=SIZE, seed=3), batch_size=None), verbose=False
    )
    assert result["test/acc"] > 0.4  # chance 0.2
    assert result["test/acc_ci95"] >= 0
    path = chdir_tmp / "maml.ckpt"
    trainer.save_checkpoint(path)
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["test_inner_steps"] == 2 and hparams["first_order"] is False
    reloaded = MAML.load_from_checkpoint(path, backbone=Conv4(num_classes=5, input_size=SIZE))
    assert reloaded.test_inner_steps == 2
    assert all(torch.equal(a, b) for a, b in zip(reloaded.parameters(), model.parameters(), strict=True))


def test_bad_arguments():
    with pytest.raises(ValueError, match="inner steps"):
        make(MAML, inner_steps=-1)
    with pytest.raises(ValueError, match="inner_lr"):
        make(MAML, inner_lr=0.0)
    with pytest.raises(ValueError, match="episodic batches"):
        make(MAML)._shared_step(
            (torch.zeros(5, 1, 16, 16), torch.zeros(5), torch.zeros(5, 1, 16, 16), torch.zeros(5)), "train"
        )


def attached(model, **data_args):
    """``model`` as if a Trainer held an EpisodicDataModule with ``data_args`` (setup reads only its options)."""
    from types import SimpleNamespace

    from ssl_lightning.data.episodic import EpisodicDataModule

    model._trainer = SimpleNamespace(datamodule=EpisodicDataModule(root="unread", **data_args))
    return model


@pytest.mark.parametrize("cls", [MAML, ANIL, MetaSGD])
def test_setup_rejects_training_episodes_the_fixed_head_cannot_take(cls):
    attached(make(cls), n_way=5, train_n_way=None).setup("fit")  # train_n_way null: n_way
    attached(make(cls), n_way=5, train_n_way=5, train_n_query=1).setup("fit")  # other shots/queries are fine
    with pytest.raises(ValueError, match="n_way=5.*train_n_way=20.*--data.init_args.train_n_way 5"):
        attached(make(cls), n_way=5, train_n_way=20).setup("fit")
    with pytest.raises(ValueError, match="train_mode='batches'.*--data.init_args.train_mode episodes"):
        attached(make(cls), n_way=5, train_mode="batches").setup("fit")


@pytest.mark.parametrize("cls", [MAML, MetaSGD])
def test_task_by_task_gradients_equal_one_backward_of_the_mean(cls):
    (batch,) = synthetic_episodes(1, tasks=3, size=SIZE, seed=5)
    results = []
    for task_by_task in (False, True):
        model = make(cls)
        loss, accs = model.meta_loss(batch, task_by_task=task_by_task)
        loss.backward()
        results.append((loss.detach(), accs, [p.grad.clone() for p in model.parameters()]))
    (loss_a, accs_a, grads_a), (loss_b, accs_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    assert torch.equal(accs_a, accs_b) and accs_a.shape == (3,)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@pytest.mark.slow  # tracing: ~8 s idle, ~30 s on a loaded 2-core machine
def test_compiled_task_graph_gives_the_eager_meta_gradients():
    """compile_backend traces adaptation + query logits into one graph (no break) with the same numbers.

    aot_eager runs the traced graph's ATen ops without code generation: it checks our tracing
    (torch.func.grad inner loop, functional_call, batch statistics), not inductor's kernels.
    The first-order and per-parameter-lr paths of the traceable inner loop are checked in
    tests/methods/test_functional.py.
    """
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    sx, sy, qx, qy = task()
    eager = meta_gradients(make(MAML, inner_steps=1), sx, sy, qx, qy)
    model = make(MAML, inner_steps=1, compile_backend="aot_eager")
    compiled = meta_gradients(model, sx, sy, qx, qy)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert compiled.keys() == eager.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=1e-5, atol=1e-7)
    again = meta_gradients(model, sx, sy, qx, qy)  # second call: the cached graph, no recompilation
    assert counters["stats"]["unique_graphs"] == 1
    assert all(torch.equal(again[n], compiled[n]) for n in compiled)
    pickle.loads(pickle.dumps(model))  # the compiled function is dropped and rebuilt on use


class _AssertSyncedGradients(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        gathered = trainer.strategy.all_gather(pl_module.backbone.head.bias.grad)
        assert torch.allclose(gathered[0], gathered[1]), "meta-gradients differ between DDP ranks"


@pytest.mark.slow  # spawns 2 processes: ~2 min on a loaded 2-core machine
def test_ddp_two_processes_sync_meta_gradients_and_test_metrics(chdir_tmp):
    """2 CPU processes (gloo): task-by-task meta-gradients are all-reduced once per step; test metrics sync."""
    model = make(MAML, inner_steps=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[_AssertSyncedGradients()],
        limit_val_batches=0,
    )
    trainer.fit(model, DataLoader(synthetic_episodes(4, tasks=2, size=SIZE), batch_size=None))
    (result,) = trainer.test(
        model, DataLoader(synthetic_episodes(4, tasks=1, size=SIZE, seed=2), batch_size=None), verbose=False
    )
    assert 0 <= result["test/acc"] <= 1 and result["test/acc_ci95"] > 0
