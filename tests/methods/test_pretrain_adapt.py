"""PretrainThenAdapt: the head over the data's base classes, training on batches, evaluation on episodes,
checkpoints, the clear errors, transductive labelling, and the arguments LightningCLI sees."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from jsonargparse import ArgumentParser

from ssl_lightning.methods import RFS, TIM, Baseline, BaselinePlusPlus, SimpleShot
from ssl_lightning.methods.pretrain_adapt import CosineClassifier, eval_mode
from ssl_lightning.nets.conv4 import Conv4
from tests.methods.fewshot_data import FewShotData, quiet_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def conv4() -> Conv4:
    return Conv4(num_classes=0, input_size=16, hidden=8)


def test_head_from_the_data_trains_tests_and_reloads(chdir_tmp):
    model = RFS(conv4(), max_iter=20)
    assert model.head is None
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0)
    trainer.fit(model, datamodule=FewShotData())
    assert model.head.weight.shape == (4, 8) and model.hparams["num_base_classes"] == 4
    (result,) = trainer.test(model, datamodule=FewShotData(), verbose=False)
    assert set(result) >= {"test/loss", "test/acc", "test/acc_ci95"} and "test/transductive" not in result
    assert 0 <= result["test/acc"] <= 1 and result["test/acc_ci95"] >= 0
    path = chdir_tmp / "rfs.ckpt"
    trainer.save_checkpoint(path)
    reloaded = RFS.load_from_checkpoint(path, backbone=conv4())
    assert reloaded.hparams["max_iter"] == 20 and reloaded.head.weight.shape == (4, 8)
    original = model.state_dict()
    assert all(torch.equal(value, original[key]) for key, value in reloaded.state_dict().items())
    # a test run from a config without num_base_classes (--ckpt_path) builds the head the checkpoint has
    fresh = RFS(conv4(), max_iter=20)
    (again,) = quiet_trainer().test(fresh, datamodule=FewShotData(), ckpt_path=path, verbose=False)
    assert again["test/acc"] == pytest.approx(result["test/acc"])


def test_training_logs_loss_and_accuracy_per_epoch():
    model = Baseline(conv4(), epochs=1)
    trainer = quiet_trainer(max_epochs=2, limit_val_batches=1)
    trainer.fit(model, datamodule=FewShotData())
    metrics = trainer.logged_metrics
    assert {"train/loss", "train/acc", "val/acc", "val/acc_ci95"} <= set(metrics)
    assert 0 <= float(metrics["train/acc"]) <= 1


def test_episodes_for_training_are_a_clear_error():
    with pytest.raises(ValueError, match="train_mode batches"):
        quiet_trainer(max_steps=1).fit(SimpleShot(conv4()), datamodule=FewShotData(train_mode="episodes"))
    model = SimpleShot(conv4(), num_base_classes=4)
    episode = FewShotData()._episodes(0)[0]
    with pytest.raises(ValueError, match="train_mode batches"):
        model.training_step(episode, 0)


def test_without_base_classes_the_head_needs_num_base_classes():
    data = FewShotData()
    with pytest.raises(ValueError, match="BaseClassData.*num_base_classes"):
        quiet_trainer(max_steps=1).fit(SimpleShot(conv4()), data.train_dataloader())
    model = SimpleShot(conv4(), num_base_classes=4)
    quiet_trainer(max_steps=1).fit(model, data.train_dataloader())
    with pytest.raises(ValueError, match="base classes but num_base_classes"):
        quiet_trainer(max_steps=1).fit(SimpleShot(conv4(), num_base_classes=3), datamodule=data)


def test_cosine_head_is_scale_times_gain_times_cosine_by_hand():
    head = CosineClassifier(2, 2, scale=2.0)
    with torch.no_grad():
        head.direction.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        head.gain.copy_(torch.tensor([1.0, 3.0]))
    features = torch.tensor([[3.0, 4.0]])  # cosines 0.6 and 7 / (5 sqrt 2)
    expected = torch.tensor([[2.0 * 0.6, 2.0 * 3.0 * 7 / (5 * math.sqrt(2))]])
    assert torch.allclose(head(features), expected)
    model = BaselinePlusPlus(conv4(), num_base_classes=5)
    assert isinstance(model.head, CosineClassifier) and model.head.scale == 2.0  # Chen et al.'s <= 200 classes
    # the fresh head starts as weight_norm does: gain = |direction|
    assert torch.allclose(model.head.gain, model.head.direction.norm(dim=1))


def test_evaluation_embeds_in_eval_mode_and_restores_the_modes():
    model = SimpleShot(conv4(), normalisation="L2N").train()
    model.backbone.features[0].eval()  # a submodule a method froze stays in eval mode afterwards
    running = model.backbone.features[1][1].running_mean.clone()
    episode = FewShotData()._episodes(0)[0]
    model.task_logits(episode[0][0], episode[1][0], episode[2][0], 2)
    assert torch.equal(model.backbone.features[1][1].running_mean, running)  # batch norm statistics untouched
    assert model.backbone.training and not model.backbone.features[0].training
    with eval_mode(model.backbone):
        assert not any(m.training for m in model.backbone.modules())


def test_transductive_methods_say_so_inductive_ones_do_not(caplog):
    data = FewShotData()
    with caplog.at_level(logging.INFO, logger="ssl_lightning.methods.pretrain_adapt"):
        (tim,) = quiet_trainer().test(TIM(conv4(), steps=2, lr=0.01), datamodule=data, verbose=False)
    assert tim["test/transductive"] == 1.0
    assert "TIM is transductive" in caplog.text and "query set" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ssl_lightning.methods.pretrain_adapt"):
        (simple,) = quiet_trainer().test(SimpleShot(conv4(), normalisation="L2N"), datamodule=data, verbose=False)
    assert "test/transductive" not in simple and "transductive" not in caplog.text
    assert TIM.transductive and not any(m.transductive for m in (Baseline, BaselinePlusPlus, RFS, SimpleShot))


def test_lightning_cli_sees_every_argument_once():
    parser = ArgumentParser()
    parser.add_class_arguments(BaselinePlusPlus, "model", skip={"backbone"})
    keys = set(parser.get_defaults()["model"].keys())
    assert {
        "num_base_classes",
        "cosine_scale",
        "epochs",
        "optimizer.class_path",
        "lr_scheduler",
        "backbone_checkpoint",
    } <= keys
    assert "head" not in keys  # BaselinePlusPlus sets it
    assert parser.get_defaults()["model"]["cosine_scale"] == 2.0
    with pytest.raises(TypeError, match="head"):
        BaselinePlusPlus(conv4(), head="linear")
