"""The few-shot methods one by one: each adaptation on a 2-way toy whose answer is known by hand, inductive
methods blind to the other queries and TIM not, SimpleShot's base mean, fine-tuning that leaves the weights
alone, Meta-Baseline from a pretraining checkpoint, and a few training steps of each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.methods import (
    MAML,
    RFS,
    TIM,
    Baseline,
    BaselinePlusPlus,
    EpisodeFineTune,
    MetaBaseline,
    ProtoNet,
    SimpleShot,
)
from ssl_lightning.methods.episode_adaptation import fit_linear_head, logistic_regression_logits
from ssl_lightning.nets.conv4 import Conv4
from tests.methods.fewshot_data import FewShotData, Identity, quiet_trainer
from tests.methods.test_protonet import synthetic_episodes

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def conv4(num_classes: int = 0) -> Conv4:
    return Conv4(num_classes=num_classes, input_size=16, hidden=8)


def points(*xy: tuple[float, float]) -> torch.Tensor:
    """2-d features as images float[M, 2, 1, 1] (the Identity backbone flattens them back)."""
    return torch.tensor(xy, dtype=torch.float32).view(-1, 2, 1, 1)


def angle(degrees: float) -> tuple[float, float]:
    return math.cos(math.radians(degrees)), math.sin(math.radians(degrees))


# ---- each adaptation by hand ------------------------------------------------------------
def test_simpleshot_centres_normalises_then_takes_the_nearest_centroid():
    model = SimpleShot(Identity())
    support, support_y, query = points((10, 1), (12, 0)), torch.tensor([0, 1]), points((11.5, 1.2))
    with pytest.raises(ValueError, match="base classes' mean"):
        model.task_logits(support, support_y, query, 2)  # CL2N without a base mean
    model.base_mean.copy_(torch.tensor([10.0, 0.0]))
    q = torch.tensor([1.5, 1.2]) / math.hypot(1.5, 1.2)  # centred, normalised; centroids (0, 1) and (1, 0)
    by_hand = -torch.stack([(q - torch.tensor([0.0, 1.0])).norm(), (q - torch.tensor([1.0, 0.0])).norm()])
    assert torch.allclose(model.task_logits(support, support_y, query, 2), by_hand[None], atol=1e-6)
    model.normalisation = "L2N"  # without centring the query is nearer class 0's direction
    assert model.task_logits(support, support_y, query, 2).argmax().item() == 0
    model.normalisation = "UN"
    assert torch.allclose(
        model.task_logits(support, support_y, query, 2), -torch.tensor([[math.hypot(1.5, 0.2), 1.3]])
    )  # plain distances


def test_baselines_and_rfs_fit_their_heads_on_the_support_features():
    support = points((3, 0), (2, 1), (-3, 0), (-2, -1))
    support_y, query, query_y = torch.tensor([0, 0, 1, 1]), points((2.5, 0.3), (-1, -2)), torch.tensor([0, 1])
    features = (support.flatten(1)[None], support_y[None], query.flatten(1)[None])
    for model in (Baseline(Identity(), epochs=30, lr=0.1), BaselinePlusPlus(Identity(), epochs=30, lr=0.1)):
        logits = model.task_logits(support, support_y, query, 2)
        assert torch.equal(logits.argmax(-1), query_y)
        cosine = isinstance(model, BaselinePlusPlus)
        generator = torch.Generator().manual_seed(0)  # the module's seed: the same head as the function's
        expected = fit_linear_head(*features, 2, cosine, 2.0 if cosine else 10.0, 30, 4, 0.1, generator=generator)
        assert torch.allclose(logits, expected[0])
    rfs = RFS(Identity())
    logits = rfs.task_logits(support, support_y, query, 2)
    assert torch.equal(logits.argmax(-1), query_y)
    assert torch.allclose(logits, logistic_regression_logits(*features, 2, C=1.0, max_iter=1000)[0])  # = sklearn's


def test_meta_baseline_and_fine_tuning_use_scaled_cosines_to_the_prototypes():
    support, support_y, query = points((1, 0), (3, 0), (0, 2)), torch.tensor([0, 0, 1]), points((3, 4))
    cosines = torch.tensor([[0.6, 0.8]])  # (3, 4)/5 against the prototypes (2, 0) and (0, 2)
    meta = MetaBaseline(Identity(), temperature=10.0)
    assert torch.allclose(meta.task_logits(support, support_y, query, 2), 10 * cosines)
    assert meta.temperature.requires_grad  # tau is learnt
    frozen = EpisodeFineTune(Identity(), steps=0, cosine_scale=5.0)
    assert torch.allclose(frozen.task_logits(support, support_y, query, 2), 5 * cosines)


# ---- which queries a method reads ---------------------------------------------------------------------
INDUCTIVE = {
    "baseline": lambda: Baseline(conv4(), epochs=3),
    "baseline++": lambda: BaselinePlusPlus(conv4(), epochs=3),
    "rfs": lambda: RFS(conv4(), max_iter=10),
    "simpleshot": lambda: SimpleShot(conv4(), normalisation="L2N"),
    "finetune": lambda: EpisodeFineTune(conv4(), steps=2),
    "meta_baseline": lambda: MetaBaseline(conv4()),
}


@pytest.mark.parametrize("name", sorted(INDUCTIVE))
def test_inductive_methods_give_each_query_the_same_prediction_whatever_the_others(name):
    torch.manual_seed(0)
    model = INDUCTIVE[name]().eval()
    support_x, support_y, query_x, _ = (t[0] for t in synthetic_episodes(1, 1, n_way=2, k=2, q=4, size=16)[0])
    logits = model.task_logits(support_x, support_y, query_x, 2)
    permutation = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    assert torch.allclose(
        model.task_logits(support_x, support_y, query_x[permutation], 2), logits[permutation], atol=1e-5
    )
    others = torch.cat([query_x[:1], torch.randn_like(query_x[1:])])
    assert torch.allclose(model.task_logits(support_x, support_y, others, 2)[0], logits[0], atol=1e-5)


def test_tim_labels_a_query_by_the_query_set_it_is_in():
    """A query at 40 degrees, between class 0 (0 degrees) and class 1 (90 degrees), nearer class 0: TIM's class
    balance term sends it to class 1 when the other queries all look like class 0, and to class 0 otherwise."""
    model = TIM(Identity(), steps=100, lr=0.05)
    support, support_y = points(angle(0), angle(90)), torch.tensor([0, 1])
    near_0 = model.task_logits(support, support_y, points(angle(40), *[angle(5)] * 6), 2)
    near_1 = model.task_logits(support, support_y, points(angle(40), *[angle(85)] * 6), 2)
    assert near_0[0].argmax().item() == 1 and near_1[0].argmax().item() == 0
    assert not torch.allclose(near_0[0], near_1[0])  # its logits read the other queries
    inductive = SimpleShot(Identity(), normalisation="L2N")
    for others in (5, 85):
        assert inductive.task_logits(support, support_y, points(angle(40), *[angle(others)] * 6), 2)[0].argmax() == 0


# ---- SimpleShot's base mean ----------------------------------------------------------------------------
class CountingData(FewShotData):
    calls = 0

    def labelled_features(self, embed, device):
        self.calls += 1
        return super().labelled_features(embed, device)


def test_simpleshot_base_mean_follows_the_weights_and_travels_in_checkpoints(chdir_tmp):
    data, model = CountingData(), SimpleShot(conv4(), num_base_classes=4)
    (before,) = quiet_trainer().test(model, datamodule=data, verbose=False)
    initial = model.base_mean.clone()
    quiet_trainer().test(model, datamodule=data, verbose=False)
    assert data.calls == 1  # same weights: the cached mean
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    (after,) = trainer.test(model, datamodule=data, verbose=False)
    assert data.calls == 2 and not torch.allclose(model.base_mean, initial)  # trained: computed again
    with torch.no_grad():
        assert torch.allclose(model.base_mean, model.eval()(data.train_x).mean(0), atol=1e-5)
    path = chdir_tmp / "simpleshot.ckpt"
    trainer.save_checkpoint(path)
    reloaded = SimpleShot.load_from_checkpoint(path, backbone=conv4())
    assert torch.equal(reloaded.base_mean, model.base_mean)
    # data without base classes (plain episode loaders): the checkpoint's mean
    (other,) = quiet_trainer().test(reloaded, dataloaders=data.test_dataloader(), verbose=False)
    assert other["test/acc"] == pytest.approx(after["test/acc"])
    with pytest.raises(ValueError, match="base classes' mean"):
        quiet_trainer().test(SimpleShot(conv4()), dataloaders=data.test_dataloader(), verbose=False)


# ---- fine-tuning leaves the trained weights alone -----------------------------------------------------------
def test_episode_fine_tuning_trains_a_copy_and_leaves_the_weights_bitwise_unchanged():
    torch.manual_seed(0)
    model = EpisodeFineTune(conv4(), num_base_classes=4, steps=3, lr=0.1)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    (result,) = quiet_trainer().test(model, datamodule=FewShotData(), verbose=False)
    assert 0 <= result["test/acc"] <= 1
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # BN statistics too
    episode = [t[0] for t in FewShotData()._episodes(2)[0]]
    tuned = model.eval().task_logits(episode[0], episode[1], episode[2], 2)
    model.steps = 0
    assert not torch.allclose(tuned, model.task_logits(episode[0], episode[1], episode[2], 2))  # it did fine-tune


# ---- Meta-Baseline (and every episodic method) from a pretraining checkpoint ---------------------------------
def test_meta_baseline_starts_from_the_pretrained_backbone(chdir_tmp):
    pretrained = Baseline(conv4(), epochs=1)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(pretrained, datamodule=FewShotData())
    path = str(chdir_tmp / "pretrained.ckpt")
    trainer.save_checkpoint(path)
    weights = pretrained.backbone.state_dict()
    meta = MetaBaseline(conv4(), backbone_checkpoint=path)
    protonet = ProtoNet(conv4(), backbone_checkpoint=path)
    for model in (meta, protonet):
        assert all(torch.equal(value, weights[key]) for key, value in model.backbone.state_dict().items())
    maml = MAML(conv4(num_classes=2), backbone_checkpoint=path)  # its head of n_way outputs stays fresh
    assert torch.equal(maml.backbone.features[0][0].weight, weights["features.0.0.weight"])
    episodes = FewShotData(train_mode="episodes")
    meta_trainer = quiet_trainer(max_steps=2, limit_val_batches=1)
    meta_trainer.fit(meta, datamodule=episodes)
    assert meta.temperature.item() != 10.0  # learnt
    meta_trainer.save_checkpoint(chdir_tmp / "meta.ckpt")
    reloaded = MetaBaseline.load_from_checkpoint(chdir_tmp / "meta.ckpt", backbone=conv4())
    assert reloaded.hparams["backbone_checkpoint"] == path and torch.equal(reloaded.temperature, meta.temperature)


# ---- a few training steps of each, evaluated on episodes -------------------------------------------------------
TRAINED = {
    "baseline": lambda: Baseline(conv4(), epochs=2),
    "baseline++": lambda: BaselinePlusPlus(conv4(), epochs=2),
    "rfs": lambda: RFS(conv4(), max_iter=5),
    "simpleshot": lambda: SimpleShot(conv4()),
    "tim": lambda: TIM(conv4(), steps=3, label_smoothing=0.1),
    "finetune": lambda: EpisodeFineTune(conv4(), steps=2),
}


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_trains_on_batches_and_tests_on_episodes(name):
    model, data = TRAINED[name](), FewShotData()
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1)
    start = model.backbone.features[0][0].weight.clone()
    trainer.fit(model, datamodule=data)
    assert not torch.equal(model.backbone.features[0][0].weight, start)
    (result,) = trainer.test(model, datamodule=data, verbose=False)
    assert 0 <= result["test/acc"] <= 1 and result["test/acc_ci95"] >= 0
    assert F.cross_entropy(model.head(model(data.train_x)), data.train_y).isfinite()
