"""Our MAML's meta-gradients equal learn2learn's on the same Conv4, task and initial weights.

Needs learn2learn (``bash scripts/install_learn2learn.sh``); skipped without it.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.methods.maml import MAML
from ssl_lightning.nets.conv4 import Conv4

l2l = pytest.importorskip("learn2learn")

RTOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def episode(seed: int, n_way: int = 5, k_shot: int = 1, n_query: int = 3, size: int = 28):
    g = torch.Generator().manual_seed(seed)
    support_x = torch.rand(n_way * k_shot, 1, size, size, generator=g)
    query_x = torch.rand(n_way * n_query, 1, size, size, generator=g)
    support_y = torch.arange(n_way).repeat_interleave(k_shot)
    query_y = torch.arange(n_way).repeat_interleave(n_query)
    return support_x, support_y, query_x, query_y


def ours_meta_gradients(net, task, inner_lr, steps, first_order):
    model = MAML(net, inner_lr=inner_lr, inner_steps=steps, first_order=first_order)
    support_x, support_y, query_x, query_y = task
    F.cross_entropy(model.task_logits(support_x, support_y, query_x, n_way=5), query_y).backward()
    return {name: p.grad for name, p in net.named_parameters()}


def l2l_meta_gradients(net, task, inner_lr, steps, first_order):
    maml = l2l.algorithms.MAML(net, lr=inner_lr, first_order=first_order)
    support_x, support_y, query_x, query_y = task
    learner = maml.clone()
    for _ in range(steps):
        learner.adapt(F.cross_entropy(learner(support_x), support_y))
    F.cross_entropy(learner(query_x), query_y).backward()
    return {name: p.grad for name, p in net.named_parameters()}


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradients_match_learn2learn(first_order, steps):
    torch.manual_seed(0)  # test-only: one random initialization shared by both implementations
    net = Conv4(num_classes=5, in_chans=1, input_size=28)
    reference_net = copy.deepcopy(net)  # learn2learn keeps BN running buffers; train mode uses batch stats
    task = episode(seed=steps)
    ours = ours_meta_gradients(net, task, 0.4, steps, first_order)
    theirs = l2l_meta_gradients(reference_net, task, 0.4, steps, first_order)
    assert ours.keys() == theirs.keys()
    largest = max(g.norm() for g in theirs.values())
    compared = 0
    for name, reference in theirs.items():
        # Conv biases feed straight into batch norm, which removes them: their exact gradient is 0 and
        # what autograd returns is rounding noise (degenerate); compare every other parameter.
        if reference.norm() < 1e-5 * largest:
            assert ours[name].norm() < 1e-5 * largest, name
            continue
        torch.testing.assert_close(ours[name], reference, rtol=RTOL, atol=RTOL * reference.abs().max().item())
        assert (ours[name] - reference).norm() <= RTOL * reference.norm(), name
        compared += 1
    assert compared >= 14  # 4 conv weights, 4 BN weights, 4 BN biases, head weight and bias


def test_second_order_differs_from_first_order_in_both_libraries():
    torch.manual_seed(0)
    net = Conv4(num_classes=5, in_chans=1, input_size=28)
    task = episode(seed=7)
    theirs = [l2l_meta_gradients(copy.deepcopy(net), task, 0.4, 1, fo) for fo in (False, True)]
    ours = [ours_meta_gradients(copy.deepcopy(net), task, 0.4, 1, fo) for fo in (False, True)]
    name = "features.0.0.weight"
    assert not torch.allclose(theirs[0][name], theirs[1][name], rtol=1e-3)
    assert not torch.allclose(ours[0][name], ours[1][name], rtol=1e-3)
