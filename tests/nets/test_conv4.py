"""Conv4: the papers' feature sizes and the timm contract."""

from __future__ import annotations

import pickle

import pytest
import torch

from ssl_lightning.nets.conv4 import Conv4, conv4

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


@pytest.mark.parametrize(("size", "channels", "features"), [(28, 1, 64), (84, 3, 1600), (16, 1, 64)])
def test_feature_sizes_of_the_papers(size, channels, features):
    net = conv4(num_classes=5, in_chans=channels, input_size=size)
    x = torch.randn(3, channels, size, size)
    assert net.num_features == features
    assert net.forward_features(x).shape == (3, features)
    out = net(x)
    assert out.shape == (3, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_timm_contract_head_and_reset():
    net = Conv4(num_classes=0)
    assert isinstance(net.head, torch.nn.Identity) and net.num_classes == 0
    x = torch.randn(2, 1, 28, 28)
    assert net(x).shape == (2, 64)
    net.reset_classifier(20)
    assert net.num_classes == 20 and net.head.out_features == 20
    assert net.forward_head(net.forward_features(x)).shape == (2, 20)
    # the layout of the papers: 4 x (conv3x3-64, BN, ReLU, maxpool)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.out_channels == 64 and c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 4
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == 4
    assert pickle.loads(pickle.dumps(net)).num_features == 64


def test_bad_sizes_name_the_fix():
    with pytest.raises(ValueError, match="at least 16x16"):
        Conv4(input_size=8)
    with pytest.raises(ValueError, match="input_size"):
        Conv4(input_size=28)(torch.randn(1, 1, 32, 32))
