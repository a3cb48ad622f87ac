"""ResNet-12: the published parameter count, shapes at the benchmarks' sizes, the timm contract."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.nets.resnet12 import DropBlock, ResNet12, resnet12


def test_parameter_count_is_the_papers_12_4_million():
    body = sum(p.numel() for p in ResNet12(num_classes=0).parameters())
    assert 12.3e6 < body < 12.5e6
    with_head = sum(p.numel() for p in ResNet12(num_classes=64).parameters())
    assert with_head - body == 640 * 64 + 64


@pytest.mark.parametrize(("side", "maps"), [(84, 5), (32, 2)])
def test_shapes_at_miniimagenet_and_cifar_sizes(side, maps):
    net = ResNet12(num_classes=5, widths=(8, 16, 24, 32)).eval()
    x = torch.randn(2, 3, side, side)
    assert net.features[:4](x).shape == (2, 32, maps, maps)
    assert net.forward_features(x).shape == (2, 32)
    assert net(x).shape == (2, 5)


def test_head_contract_and_backward():
    net = resnet12(num_classes=0, drop_rate=0.0)
    assert net.num_features == 640 and isinstance(net.head, torch.nn.Identity)
    net = ResNet12(num_classes=3, widths=(4, 4, 4, 4))
    net.reset_classifier(7)
    assert net.num_classes == 7 and net.head.out_features == 7
    net(torch.randn(2, 3, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    pickle.loads(pickle.dumps(net))


def test_dropblock_in_the_last_two_stages_only_while_training():
    net = ResNet12(widths=(4, 4, 4, 4), drop_rate=0.5)
    kinds = [type(stage.drop) for stage in net.features[:4]]
    assert kinds == [torch.nn.Dropout, torch.nn.Dropout, DropBlock, DropBlock]
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))
    with pytest.raises(ValueError, match="at least 16x16"):
        net(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("block_size", [1, 2, 3, 5])
def test_dropblock_drops_about_its_rate_in_whole_squares(block_size):
    torch.manual_seed(0)
    drop = DropBlock(0.2, block_size).train()
    out = drop(torch.ones(64, 4, 10, 10))
    dropped = (out == 0).float()
    assert 0.12 < dropped.mean() < 0.28
    assert torch.allclose(out.mean(), torch.tensor(1.0), atol=0.05)  # kept units rescaled like dropout
    if block_size > 1:  # a dropped unit has a dropped neighbour: squares, not single units
        neighbours = F.avg_pool2d(dropped, 3, stride=1, padding=1) * 9 - dropped  # dropped units around each
        assert (neighbours[dropped.bool()] > 0).all()
    assert torch.equal(drop.eval()(torch.ones(2, 1, 4, 4)), torch.ones(2, 1, 4, 4))
