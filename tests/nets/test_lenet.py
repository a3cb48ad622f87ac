"""LeNet follows the backbone contract for grey and colour inputs."""

from __future__ import annotations

import pickle

import pytest
import torch

from ssl_lightning.nets import LeNet, lenet


@pytest.mark.parametrize(("in_chans", "size"), [(1, 8), (1, 28), (3, 32), (3, 64)])
def test_lenet_shapes(in_chans, size):
    net = lenet(num_classes=7, in_chans=in_chans, input_size=size)
    x = torch.randn(4, in_chans, size, size)
    features = net.forward_features(x)
    assert features.shape == (4, net.num_features)
    assert net.forward_head(features).shape == (4, 7)
    assert net(x).shape == (4, 7)


def test_lenet_seed_architecture_on_cifar():
    net = LeNet(num_classes=10, in_chans=3, input_size=32)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(400, 120), (120, 84), (84, 10)]


def test_reset_classifier_and_feature_extractor_mode():
    net = LeNet(num_classes=10, in_chans=1, input_size=8, padding=2)
    net.reset_classifier(3)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    net.reset_classifier(0)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 84)


def test_backward_and_pickle():
    net = lenet(num_classes=10, in_chans=3, input_size=32)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    clone = pickle.loads(pickle.dumps(net))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(clone(x), net(x))


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="Use padding=2"):
        LeNet(in_chans=1, input_size=8, padding=0)
