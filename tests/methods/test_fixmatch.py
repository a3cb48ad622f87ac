"""FixMatch / PseudoLabel: loss pieces, lambda_u=0 is supervised, masking, EMA evaluation, checkpoints."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.semisup import SemiSupervisedDataModule
from ssl_lightning.methods.fixmatch import FixMatch, PseudoLabel
from ssl_lightning.methods.losses import pseudo_label_loss
from ssl_lightning.nets import Conv4, LeNet


def lenet() -> LeNet:
    return LeNet(num_classes=10, in_chans=1, input_size=8, padding=2)


def batch(b: int = 4, mu: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, 8, 8, generator=g)
    weak, strong = torch.randn(2, mu * b, 1, 8, 8, generator=g)
    return {"labelled": (x, torch.arange(b) % 10), "unlabelled": (weak, strong, torch.arange(mu * b) % 10)}


def datamodule(mu: int = 2) -> SemiSupervisedDataModule:
    source = DigitsDataModule(batch_size=8, val_size=300, test_size=360, labels_per_class=2)
    return SemiSupervisedDataModule(source, mu=mu, flip=False)


def trainer(root, **kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=root)  # fmt: skip
    return pl.Trainer(**{**defaults, **kwargs})


def test_mask_excludes_low_confidence_samples_hand_computed():
    # softmax([log 9, 0]) = [0.9, 0.1]; softmax([0, 0]) = [0.5, 0.5]; softmax([0, log 19]) = [0.05, 0.95]
    weak = torch.tensor([[math.log(9), 0.0], [0.0, 0.0], [0.0, math.log(19)]])
    strong = torch.tensor([[0.0, 0.0], [5.0, -5.0], [1.0, 0.0]])
    loss, mask, pseudo = pseudo_label_loss(weak, strong, threshold=0.9)
    assert mask.tolist() == [True, False, True] and pseudo.tolist() == [0, 0, 1]
    # sample 0: CE([0, 0], 0) = log 2; sample 2: CE([1, 0], 1) = log(1 + e); mean over all 3 samples
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.e)) / 3, abs=1e-6)
    loss_strict, mask_strict, _ = pseudo_label_loss(weak, strong, threshold=0.96)
    assert not mask_strict.any() and loss_strict.item() == 0.0


def test_pseudo_labels_carry_no_gradient():
    weak = torch.randn(6, 3, requires_grad=True)
    strong = torch.randn(6, 3, requires_grad=True)
    pseudo_label_loss(weak, strong, threshold=0.0)[0].backward()
    assert weak.grad is None and strong.grad is not None and strong.grad.abs().sum() > 0


def test_lambda_u_zero_gives_the_supervised_loss_from_the_same_forward_pass():
    model = FixMatch(lenet(), lambda_u=0.0, threshold=0.0, ema_decay=None)
    data = batch()
    loss = model.training_step(data, 0)
    x, y = data["labelled"]
    joint = torch.cat([x, *data["unlabelled"][:2]])
    supervised = F.cross_entropy(model.backbone(joint)[: len(x)], y)
    assert torch.allclose(loss, supervised)
    # with threshold 0 every sample is masked in, so lambda_u > 0 must change the loss
    assert not torch.allclose(FixMatch(lenet(), lambda_u=1.0, threshold=0.0).training_step(data, 0), loss)


def test_lambda_u_zero_gradients_equal_supervised_gradients():
    torch.manual_seed(0)
    a, b = FixMatch(lenet(), lambda_u=0.0, threshold=0.0), FixMatch(lenet(), lambda_u=0.0, threshold=0.0)
    b.backbone.load_state_dict(a.backbone.state_dict())
    data = batch()
    a.training_step(data, 0).backward()
    x, y = data["labelled"]
    F.cross_entropy(b.backbone(torch.cat([x, *data["unlabelled"][:2]]))[: len(x)], y).backward()
    for p, q in zip(a.backbone.parameters(), b.backbone.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)


def test_one_forward_pass_over_the_concatenated_batch():
    for method, expected in ((FixMatch, 4 + 8 + 8), (PseudoLabel, 4 + 8)):  # PseudoLabel: no strong view
        model = method(lenet())
        calls = []
        model.backbone.register_forward_hook(lambda module, inputs, output, calls=calls: calls.append(len(inputs[0])))
        model.training_step(batch(b=4, mu=2), 0)
        assert calls == [expected], method.__name__


def test_pseudolabel_trains_the_weak_view_towards_its_own_argmax():
    model = PseudoLabel(lenet(), threshold=0.0)
    data = batch()
    loss_u, mask, pseudo = model.unlabelled_loss([model.backbone(data["unlabelled"][0])])
    logits = model.backbone(data["unlabelled"][0])
    assert mask.all() and torch.equal(pseudo, logits.argmax(1))
    assert torch.allclose(loss_u, F.cross_entropy(logits, logits.argmax(1)))


def test_wrong_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="SemiSupervisedDataModule"):
        FixMatch(lenet()).training_step((torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)), 0)


def test_ema_weights_move_differ_from_online_and_are_evaluated(chdir_tmp):
    pl.seed_everything(0)
    dm = datamodule()
    model = FixMatch(lenet(), ema_decay=0.9, threshold=0.5)
    start = [p.detach().clone() for p in model.ema_backbone.parameters()]
    trainer(chdir_tmp, max_steps=6, limit_val_batches=2, num_sanity_val_steps=0).fit(model, datamodule=dm)
    ema, online = list(model.ema_backbone.parameters()), list(model.backbone.parameters())
    assert any(not torch.equal(e, s) for e, s in zip(ema, start, strict=True)), "EMA never updated"
    assert any(not torch.allclose(e, o) for e, o in zip(ema, online, strict=True)), "EMA equals online weights"
    assert not any(p.requires_grad for p in model.ema_backbone.parameters())
    # evaluation uses the EMA weights: val/acc equals the accuracy of ema_backbone, not of backbone
    results = trainer(chdir_tmp, limit_val_batches=2).validate(model, datamodule=dm, verbose=False)[0]
    images, labels = [], []
    for i, (x, y) in enumerate(dm.val_dataloader()):
        if i == 2:
            break
        images.append(dm.evaluation_input(x))
        labels.append(y)
    x, y = torch.cat(images), torch.cat(labels)
    model.eval()
    with torch.no_grad():
        ema_acc = (model.ema_backbone(x).argmax(1) == y).float().mean().item()
        online_acc = (model.backbone(x).argmax(1) == y).float().mean().item()
        assert torch.equal(model(x), model.ema_backbone(x))
    assert results["val/acc"] == pytest.approx(ema_acc)
    assert ema_acc != online_acc or not torch.equal(model.ema_backbone(x), model.backbone(x))


def test_training_logs_the_unlabelled_statistics(chdir_tmp):
    pl.seed_everything(0)
    model = FixMatch(lenet(), threshold=0.0)  # every pseudo-label used: pseudo_acc is always logged
    t = trainer(chdir_tmp, max_steps=3, limit_val_batches=1, num_sanity_val_steps=0, max_epochs=1)
    t.fit(model, datamodule=datamodule())
    logged = t.callback_metrics
    for name in ("train/loss", "train/loss_x", "train/loss_u", "train/mask_rate", "train/pseudo_acc"):
        assert name in logged, name
    assert logged["train/mask_rate"].item() == 1.0
    assert 0.0 <= logged["train/pseudo_acc"].item() <= 1.0


def test_ema_averages_batch_norm_statistics_and_copies_the_step_counter():
    model = FixMatch(Conv4(num_classes=10, in_chans=1, input_size=16, hidden=4), ema_decay=0.75)
    online_bn, ema_bn = (
        next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        for net in (model.backbone, model.ema_backbone)
    )
    before = ema_bn.running_mean.clone()
    with torch.no_grad():
        model.backbone.train()(torch.randn(4, 1, 16, 16) + 3.0)  # moves the online running statistics
    model.update_ema()
    # ema = 0.75 * ema + 0.25 * online, for the running mean as for the weights; the counter is copied
    assert torch.allclose(ema_bn.running_mean, 0.75 * before + 0.25 * online_bn.running_mean)
    assert not torch.allclose(ema_bn.running_mean, online_bn.running_mean)
    assert int(ema_bn.num_batches_tracked) == int(online_bn.num_batches_tracked) == 1


def test_checkpoint_holds_the_ema_and_reloads(chdir_tmp):
    pl.seed_everything(0)
    model = FixMatch(lenet(), ema_decay=0.5)
    t = trainer(chdir_tmp, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    t.fit(model, datamodule=datamodule())
    t.save_checkpoint(chdir_tmp / "fm.ckpt")
    state = torch.load(chdir_tmp / "fm.ckpt", weights_only=True)
    assert any(k.startswith("ema_backbone.") for k in state["state_dict"])
    restored = FixMatch.load_from_checkpoint(chdir_tmp / "fm.ckpt", backbone=lenet())
    x = torch.randn(5, 1, 8, 8)
    model.eval()
    restored.eval()
    assert torch.equal(model(x), restored(x)) and restored.ema_decay == 0.5


def test_a_checkpoint_written_at_a_step_holds_that_steps_ema_update(chdir_tmp):
    pl.seed_everything(0)
    model = FixMatch(lenet(), ema_decay=0.5)
    saved = pl.callbacks.ModelCheckpoint(dirpath=chdir_tmp, filename="step-{step}", every_n_train_steps=3)
    t = trainer(chdir_tmp, max_steps=3, limit_val_batches=0, enable_checkpointing=True, callbacks=[saved])
    t.fit(model, datamodule=datamodule())
    state = torch.load(chdir_tmp / "step-step=3.ckpt", weights_only=True)["state_dict"]
    for name, value in model.ema_backbone.state_dict().items():
        assert torch.equal(state[f"ema_backbone.{name}"], value), name  # written after step 3's EMA update


def test_checkpoints_hold_the_training_metric_states_and_older_checkpoints_load_strictly(chdir_tmp):
    pl.seed_everything(0)
    model = FixMatch(lenet(), threshold=0.0)
    t = trainer(chdir_tmp, max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    t.fit(model, datamodule=datamodule())
    model.mean_loss["train_"].update(torch.tensor(2.0))  # the states Lightning reset at the epoch's end
    model.pseudo_acc.update(torch.tensor(0.5))
    t.save_checkpoint(chdir_tmp / "fm.ckpt")
    checkpoint = torch.load(chdir_tmp / "fm.ckpt", weights_only=True)
    states = {k for k in checkpoint["state_dict"] if k.startswith(("metrics.", "mean_loss.", "unlabelled", "pseudo"))}
    # the training epoch's metrics (a mid-epoch resume continues them), not val/test ones
    means = ["mean_loss.train_", "unlabelled_stats.loss_x", "unlabelled_stats.loss_u", "unlabelled_stats.mask_rate",
             "pseudo_acc"]  # fmt: skip
    assert states == {
        *(f"metrics.train_.acc.{s}" for s in ("tp", "fp", "tn", "fn")),
        *(f"{m}.{s}" for m in means for s in ("mean_value", "weight")),
    }
    restored = FixMatch.load_from_checkpoint(chdir_tmp / "fm.ckpt", backbone=lenet())
    assert restored.mean_loss["train_"].mean_value == 2.0 and restored.pseudo_acc.mean_value == 0.5
    # a checkpoint from before the states were saved still loads with strict=True (the default)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in states}
    torch.save(checkpoint, chdir_tmp / "old.ckpt")
    old = FixMatch.load_from_checkpoint(chdir_tmp / "old.ckpt", backbone=lenet())
    assert old.mean_loss["train_"].mean_value == 0.0


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="threshold"):
        FixMatch(lenet(), threshold=1.5)
    with pytest.raises(ValueError, match="ema_decay"):
        FixMatch(lenet(), ema_decay=1.0)


def test_ema_equals_the_hand_written_formula_and_old_checkpoint_keys_load():
    torch.manual_seed(0)
    model = FixMatch(Conv4(num_classes=10, in_chans=1, input_size=16, hidden=4), ema_decay=0.9)
    reference = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    for step in range(3):
        with torch.no_grad():
            for p in model.backbone.parameters():
                p.add_(0.1 * torch.randn_like(p))
            model.backbone.train()(torch.randn(4, 1, 16, 16) + step)
        model.update_ema()
        for name, online in model.backbone.state_dict().items():  # the formula the EMA had before AveragedModel
            reference[name] = reference[name].lerp(online, 0.1) if online.is_floating_point() else online.clone()
    for name, value in model.ema_backbone.module.state_dict().items():
        assert torch.allclose(value, reference[name], atol=1e-7), name
    # a checkpoint written before the EMA was an AveragedModel: keys ema_backbone.<name>, no n_averaged
    old = {k.replace("ema_backbone.module.", "ema_backbone."): v for k, v in model.state_dict().items()}
    del old["ema_backbone.n_averaged"]
    restored = FixMatch(Conv4(num_classes=10, in_chans=1, input_size=16, hidden=4), ema_decay=0.9)
    restored.load_state_dict(old)  # strict
    for name, value in model.ema_backbone.module.state_dict().items():
        assert torch.equal(restored.ema_backbone.module.state_dict()[name], value), name
    assert int(restored.ema_backbone.n_averaged) == 1
