"""WideResNet: WRN-28-10's published parameter count, shapes at the benchmarks' sizes, the timm contract."""

from __future__ import annotations

import pickle

import pytest
import torch

from ssl_lightning.nets import ClassifierHeadMixin, WideResNet, pooled_features, wrn28_10

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def test_parameter_count_is_wrn_28_10s_36_5_million():
    net = wrn28_10(num_classes=0)
    body = sum(p.numel() for p in net.parameters())
    # 36,479,194 with a 10-class head is the CIFAR-10 count of Zagoruyko & Komodakis 2016 (36.5M)
    assert body == 36_472_784
    assert body + 640 * 10 + 10 == 36_479_194
    net.reset_classifier(64)
    assert sum(p.numel() for p in net.parameters()) - body == 640 * 64 + 64
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 12 * 2 + 3  # stem, 12 blocks of two 3x3 convs, one 1x1 shortcut per group
    assert sorted({c.out_channels for c in convs}) == [16, 160, 320, 640]


@pytest.mark.parametrize(("side", "maps"), [(84, 21), (32, 8)])
def test_wrn_28_10_shapes_at_miniimagenet_and_cifar_sizes(side, maps):
    # on the meta device: the real shapes of the full-width net without its ~36 GFLOPs per 84x84 image
    with torch.device("meta"):
        net = wrn28_10(num_classes=5).eval()
        x = torch.empty(2, 3, side, side)
        assert net.features[:-3](x).shape == (2, 640, maps, maps)
        assert net.forward_features(x).shape == (2, 640)
        assert net(x).shape == (2, 5)


def test_one_real_forward_of_wrn_28_10_gives_features_without_a_head():
    net = wrn28_10(num_classes=0).eval()
    assert net.num_features == 640 and isinstance(net.head, torch.nn.Identity)
    with torch.no_grad():
        features = pooled_features(net, torch.rand(1, 3, 32, 32))
    assert features.shape == (1, 640) and torch.isfinite(features).all()
    assert (features >= 0).all()  # pooled after the final BN-ReLU


@pytest.mark.parametrize("side", [84, 32])
def test_head_contract_and_backward_on_a_narrow_wrn(side):
    net = WideResNet(num_classes=3, in_chans=1, depth=10, widen_factor=1, drop_rate=0.3)
    assert net.num_features == 64 and isinstance(net, ClassifierHeadMixin)
    net.reset_classifier(7)
    assert list(net.state_dict())[-2:] == ["head.weight", "head.bias"]
    assert net.num_classes == 7 and net.head.out_features == 7
    x = torch.randn(2, 1, side, side)
    assert net.forward_head(net.forward_features(x)).shape == (2, 7)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    assert torch.equal(net(x), net(x))  # dropout off in eval
    assert pickle.loads(pickle.dumps(net)).num_features == 64


def test_bad_arguments_name_the_rule():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=27)
    with pytest.raises(ValueError, match="widen_factor"):
        WideResNet(widen_factor=0)
    with pytest.raises(ValueError, match="drop_rate"):
        WideResNet(drop_rate=1.0)
