"""Transfer modes of Classifier: linear probe, gradual unfreezing, lr groups, checkpoints, cached features."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from ssl_lightning.callbacks.finetuning import GradualUnfreezing
from ssl_lightning.data import DigitsDataModule
from ssl_lightning.data.class_subset import ClassSubsetDataModule
from ssl_lightning.methods.classifier import Classifier
from ssl_lightning.methods.feature_cache import FeatureCacheDataModule, FeatureProbe
from ssl_lightning.nets import LeNet
from ssl_lightning.nets.pretrained import TimmBackbone

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def bn_backbone(num_classes: int = 10) -> TimmBackbone:
    """A tiny randomly initialised timm network with batch norm, for grey 8x8 digits."""
    return TimmBackbone("mobilenetv3_small_050", num_classes=num_classes, in_chans=1, input_size=32)


def lenet(num_classes: int = 10, in_chans: int = 1) -> LeNet:
    return LeNet(num_classes=num_classes, in_chans=in_chans, input_size=8, padding=2)


def trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def body_state(model: Classifier) -> dict[str, torch.Tensor]:
    """Everything in the backbone but the head, buffers (BN running statistics) included."""
    return {k: v.clone() for k, v in model.backbone.state_dict().items() if not k.startswith("head.")}


def tiny_digits(**kwargs) -> DigitsDataModule:
    return DigitsDataModule(**{"batch_size": 8, "labels_per_class": 2, "normalize": False, **kwargs})


def test_linear_probe_keeps_weights_and_bn_statistics_while_the_head_learns():
    pl.seed_everything(0)
    model = Classifier(bn_backbone(), finetune="linear_probe", optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    before, head_before = body_state(model), model.backbone.head.weight.clone()
    trainer(max_steps=3, limit_val_batches=0).fit(model, datamodule=tiny_digits())
    after = body_state(model)
    assert any("running_mean" in k for k in after)
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert not torch.equal(head_before, model.backbone.head.weight)


def test_full_finetune_updates_bn_statistics_and_weights():
    """The counterpart: the same run without freezing changes the backbone."""
    pl.seed_everything(0)
    model = Classifier(bn_backbone(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    before = body_state(model)
    trainer(max_steps=3, limit_val_batches=0).fit(model, datamodule=tiny_digits())
    after = body_state(model)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("running_mean" in k for k in changed) and any(k.endswith("conv_stem.weight") for k in changed)


def test_freeze_batchnorm_keeps_running_statistics_while_all_weights_train():
    pl.seed_everything(0)
    model = Classifier(bn_backbone(), freeze_batchnorm=True, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    before = body_state(model)
    trainer(max_steps=3, limit_val_batches=0).fit(model, datamodule=tiny_digits())
    after = body_state(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    statistics = {k for k in before if k.endswith(("running_mean", "running_var"))}
    assert statistics and not statistics & changed
    assert any(k.endswith("conv_stem.weight") for k in changed) and any(k.endswith("bn1.weight") for k in changed)
    model.train()
    assert model.training and not model.backbone.model.bn1.training


class RecordFrozen(Callback):
    def __init__(self) -> None:
        self.per_epoch: dict[int, tuple[bool, bool, bool]] = {}
        self.body_after_epoch: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        stem = pl_module.backbone.model.conv_stem.weight
        bn = pl_module.backbone.model.bn1
        self.per_epoch[trainer.current_epoch] = (pl_module.backbone_frozen, stem.requires_grad, bn.training)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.body_after_epoch[trainer.current_epoch] = body_state(pl_module)


def test_gradual_unfreezing_unfreezes_at_the_set_epoch():
    pl.seed_everything(0)
    model = Classifier(bn_backbone(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    record = RecordFrozen()
    initial = body_state(model)
    t = trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=1, callbacks=[GradualUnfreezing(2), record])
    t.fit(model, datamodule=tiny_digits())
    # epochs 0, 1: frozen (no gradient, BN in eval mode); epoch 2: trained
    assert record.per_epoch == {0: (True, False, False), 1: (True, False, False), 2: (False, True, True)}
    for key in initial:
        assert torch.equal(initial[key], record.body_after_epoch[1][key]), key
    assert not torch.equal(initial["model.conv_stem.weight"], record.body_after_epoch[2]["model.conv_stem.weight"])


def test_backbone_lr_multiplier_builds_two_parameter_groups():
    model = Classifier(lenet(), optimizer=lambda p: torch.optim.Adam(p, lr=0.01), backbone_lr_multiplier=0.1)
    optimizer = model.configure_optimizers()
    backbone_group, head_group = optimizer.param_groups
    assert backbone_group["lr"] == pytest.approx(0.001) and head_group["lr"] == pytest.approx(0.01)
    head_ids = {id(p) for p in model.backbone.head.parameters()}
    assert {id(p) for p in head_group["params"]} == head_ids
    assert len(backbone_group["params"]) == len(list(model.parameters())) - len(head_ids)


def test_soft_targets_still_work_in_a_linear_probe():
    model = Classifier(lenet(), finetune="linear_probe")
    model.trainer = None
    soft = torch.softmax(torch.randn(4, 10), dim=1)
    loss = model._shared_step((torch.randn(4, 1, 8, 8), soft), "val")
    assert torch.isfinite(loss)


def test_backbone_checkpoint_from_a_classifier_checkpoint_skips_a_differently_shaped_head(chdir_tmp):
    pl.seed_everything(0)
    source = Classifier(lenet(10))
    t = trainer(max_steps=2, limit_val_batches=0)
    t.fit(source, datamodule=tiny_digits())
    t.save_checkpoint(chdir_tmp / "source.ckpt")
    target = Classifier(lenet(5), backbone_checkpoint=str(chdir_tmp / "source.ckpt"))
    x = torch.randn(3, 1, 8, 8)
    source.eval(), target.eval()
    assert torch.equal(target.backbone.forward_features(x), source.backbone.forward_features(x))
    assert target.backbone.head.weight.shape == (5, 84)


def test_mismatched_backbone_checkpoint_names_the_first_tensor_and_both_shapes(chdir_tmp):
    torch.save(lenet(10, in_chans=1).state_dict(), chdir_tmp / "grey.pt")
    with pytest.raises(
        ValueError, match=r"tensor 'features.0.weight' has shape \(6, 1, 5, 5\) in .*grey.pt but \(6, 3, 5, 5\)"
    ):
        Classifier(lenet(10, in_chans=3), backbone_checkpoint=str(chdir_tmp / "grey.pt"))


def test_cached_feature_probe_equals_the_slow_path(chdir_tmp):
    pl.seed_everything(0)
    pretrained = Classifier(lenet(), optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    trainer(max_steps=20, limit_val_batches=0).fit(pretrained, datamodule=DigitsDataModule(batch_size=64))
    weights = pretrained.backbone.state_dict()  # a partly trained backbone, so the probe has something to find
    slow = Classifier(lenet(), finetune="linear_probe", optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    fast = FeatureProbe(lenet(), optimizer=lambda p: torch.optim.Adam(p, lr=0.02))
    slow.backbone.load_state_dict(weights)
    fast.backbone.load_state_dict(weights)
    results = []
    for model, data in [
        (slow, DigitsDataModule(batch_size=16, labels_per_class=10)),
        (fast, FeatureCacheDataModule(DigitsDataModule(batch_size=16, labels_per_class=10))),
    ]:
        t = trainer(max_epochs=4)
        t.fit(model, datamodule=data)
        results.append(t.test(model, datamodule=data, verbose=False)[0])
    torch.testing.assert_close(fast.backbone.head.weight, slow.backbone.head.weight, atol=1e-5, rtol=1e-4)
    assert not torch.equal(fast.backbone.head.weight, Classifier(lenet()).backbone.head.weight)
    assert results[0]["test/acc"] == results[1]["test/acc"] > 0.3
    # the checkpointed probe classifies images as a plain Classifier
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(fast.backbone.eval()(x), slow.backbone.eval()(x), atol=1e-4, rtol=1e-4)


class FlippingDigits(DigitsDataModule):
    def train_batch_transform(self, x, y):
        return x.flip(-1), y


def test_feature_cache_refuses_augmented_data(chdir_tmp):
    with pytest.raises(ValueError, match="changes training images"):
        trainer(fast_dev_run=1).fit(FeatureProbe(lenet()), datamodule=FeatureCacheDataModule(FlippingDigits()))


def test_feature_cache_needs_a_feature_probe(chdir_tmp):
    with pytest.raises(ValueError, match="only FeatureProbe takes"):
        trainer(fast_dev_run=1).fit(Classifier(lenet()), datamodule=FeatureCacheDataModule(DigitsDataModule()))


def test_class_subset_keeps_and_relabels_classes():
    source = DigitsDataModule(labels_per_class=3)
    subset = ClassSubsetDataModule(source, [7, 2, 9])
    subset.setup("fit")
    assert subset.num_classes == 3 and subset.class_names == ["7", "2", "9"]
    labelled = subset.datasets["labelled"]
    assert torch.bincount(labelled.labels).tolist() == [3, 3, 3]
    original = source.datasets["labelled"]
    for new_label, old_label in enumerate([7, 2, 9]):
        assert torch.equal(labelled.images[labelled.labels == new_label], original.images[original.labels == old_label])
    assert set(subset.datasets["test"].labels.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match=r"classes \[12\] do not exist"):
        ClassSubsetDataModule(DigitsDataModule(), [1, 12]).setup("fit")


def test_reset_head_keeps_a_fresh_head_of_the_same_shape(chdir_tmp):
    source = Classifier(lenet(5))
    torch.save(source.backbone.state_dict(), chdir_tmp / "source.pt")
    torch.manual_seed(0)
    kept = Classifier(lenet(5), backbone_checkpoint=str(chdir_tmp / "source.pt"))
    torch.manual_seed(0)
    fresh = Classifier(lenet(5), backbone_checkpoint=str(chdir_tmp / "source.pt"), reset_head=True)
    torch.manual_seed(0)
    untouched = Classifier(lenet(5))
    assert torch.equal(kept.backbone.head.weight, source.backbone.head.weight)
    assert torch.equal(fresh.backbone.head.weight, untouched.backbone.head.weight)
    assert torch.equal(fresh.backbone.features[0].weight, source.backbone.features[0].weight)
