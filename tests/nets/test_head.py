"""The shared head (ClassifierHeadMixin) and pooled_features for raw timm models."""

from __future__ import annotations

import pickle

import pytest
import timm
import torch
from torch import Tensor, nn

from ssl_lightning.methods.protonet import ProtoNet
from ssl_lightning.nets import ClassifierHeadMixin, Conv4, LeNet, pooled_features
from ssl_lightning.nets.pretrained import TimmBackbone

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

TINY_TIMM = "mobilenetv3_small_050"


class Tiny(ClassifierHeadMixin, nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_features = 4
        self.body = nn.Linear(5, 4)
        self.reset_classifier(num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)


def test_mixin_gives_the_whole_head_contract():
    torch.manual_seed(0)
    net = Tiny(3)
    x = torch.randn(2, 5)
    assert list(net.state_dict()) == ["body.weight", "body.bias", "head.weight", "head.bias"]
    assert net.num_classes == 3 and net(x).shape == (2, 3)
    assert torch.equal(net(x), net.head(net.body(x)))
    net.reset_classifier(0)
    assert net.num_classes == 0 and isinstance(net.head, nn.Identity)
    assert torch.equal(net(x), net.forward_features(x))
    assert torch.equal(pickle.loads(pickle.dumps(net))(x), net(x))


def test_every_net_of_ours_uses_the_mixin():
    assert isinstance(LeNet(), ClassifierHeadMixin) and isinstance(Conv4(), ClassifierHeadMixin)
    assert isinstance(TimmBackbone(TINY_TIMM, num_classes=0, input_size=None), ClassifierHeadMixin)


@pytest.mark.parametrize(
    ("name", "options"),
    [(TINY_TIMM, {}), ("resnet10t", {}), ("vit_tiny_patch16_224", {"img_size": 32})],
)
def test_pooled_features_of_a_raw_timm_model_are_its_pre_logits(name, options):
    torch.manual_seed(0)
    raw = timm.create_model(name, num_classes=0, **options).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        maps = raw.forward_features(x)
        pooled = pooled_features(raw, x)
        assert maps.ndim in (3, 4)  # timm's forward_features: maps (CNN) or tokens (ViT)
        assert pooled.ndim == 2 and len(pooled) == 2
        assert torch.equal(pooled, raw(x))  # with no classifier, timm's forward is exactly the pooled features


def test_pooled_features_averages_maps_of_other_nets_and_passes_pooled_ones_through():
    class Maps(nn.Module):
        def forward_features(self, x: Tensor) -> Tensor:
            return x

    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    torch.testing.assert_close(pooled_features(Maps(), x), x.mean(dim=(2, 3)))
    features = torch.randn(2, 3)
    assert pooled_features(Maps(), features) is features


def test_a_raw_timm_model_works_with_protonet():
    torch.manual_seed(0)
    raw = timm.create_model(TINY_TIMM, num_classes=0).eval()
    support, query = torch.rand(4, 3, 32, 32), torch.rand(2, 3, 32, 32)
    logits = ProtoNet(raw).task_logits(support, torch.tensor([0, 0, 1, 1]), query, n_way=2)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
