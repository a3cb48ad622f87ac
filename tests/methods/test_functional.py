"""The pure few-shot math: prototypes, distance logits, the inner loop, the confidence interval."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_lightning.methods import functional as FS


def test_prototypes_are_class_means_in_any_order():
    features = torch.tensor([[0.0, 0.0], [4.0, 2.0], [2.0, 0.0], [0.0, 6.0]])
    labels = torch.tensor([0, 1, 0, 1])
    expected = torch.tensor([[1.0, 0.0], [2.0, 4.0]])
    assert torch.allclose(FS.prototypes(features, labels, 2), expected)


def test_prototypes_reject_missing_class():
    with pytest.raises(ValueError, match="cover every class"):
        FS.prototypes(torch.zeros(2, 3), torch.tensor([0, 0]), 2)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 6), n=st.integers(1, 5), d=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_squared_euclidean_logits_match_cdist(m, n, d, seed):
    g = torch.Generator().manual_seed(seed)
    q, c = torch.randn(m, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)
    assert torch.allclose(FS.squared_euclidean_logits(q, c), -torch.cdist(q, c).pow(2), atol=1e-10)
    assert torch.allclose(FS.distance_logits(q, c, "euclidean"), -torch.cdist(q, c))


def test_cosine_logits_scale_and_range():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    c = torch.tensor([[3.0, 0.0], [-1.0, 0.0]])
    assert torch.allclose(FS.cosine_logits(q, c, scale=10.0), torch.tensor([[10.0, -10.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="unknown distance"):
        FS.distance_logits(q, c, "manhattan")  # type: ignore[arg-type]


def _quadratic(target: torch.Tensor):
    return lambda p: 0.5 * (p["w"] - target).pow(2).sum()


def test_sgd_step_matches_hand_computation_and_keeps_second_order_graph():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (w**3).sum()  # grad 3 w^2, Hessian diag 6 w
    new = FS.sgd_step({"w": w}, loss, lr=0.1)
    assert torch.allclose(new["w"], torch.tensor([1.0 - 0.3, 2.0 - 1.2]))
    (outer,) = torch.autograd.grad(new["w"].sum(), w)
    # d/dw (w - 0.1 * 3 w^2) = 1 - 0.6 w
    assert torch.allclose(outer, torch.tensor([0.4, -0.2]))


def test_sgd_step_first_order_drops_hessian_and_per_parameter_lr_gets_gradient():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    alpha = torch.tensor([0.1, 0.5], requires_grad=True)
    new = FS.sgd_step({"w": w}, (w**3).sum(), lr={"w": alpha}, first_order=True)
    assert torch.allclose(new["w"], torch.tensor([1.0 - 0.3, 2.0 - 6.0]))
    dw, dalpha = torch.autograd.grad(new["w"].sum(), [w, alpha])
    assert torch.allclose(dw, torch.ones(2))  # identity: no second-order term
    assert torch.allclose(dalpha, -torch.tensor([3.0, 12.0]))  # -grad


def test_inner_loop_converges_on_quadratic_and_leaves_input_untouched():
    target = torch.tensor([3.0, -1.0])
    w = torch.zeros(2, requires_grad=True)
    params = {"w": w}
    fast = FS.inner_loop(_quadratic(target), params, steps=5, lr=0.5)
    # each step halves the distance to the target
    assert torch.allclose(fast["w"], target * (1 - 0.5**5))
    assert params["w"] is w and torch.equal(w, torch.zeros(2))
    assert FS.inner_loop(_quadratic(target), params, steps=0, lr=0.5)["w"] is w
    with pytest.raises(ValueError, match="inner steps"):
        FS.inner_loop(_quadratic(target), params, steps=-1, lr=0.5)


@pytest.mark.parametrize("first_order", [False, True])
def test_traceable_inner_loop_equals_autograd_inner_loop(first_order):
    """torch.func.grad (traceable by torch.compile) gives the same fast weights and meta-gradients."""
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    alpha = torch.tensor([0.1, 0.05], requires_grad=True)

    def loss_fn(p):
        return (p["w"] ** 3).sum()

    results = []
    for traceable in (False, True):
        fast = FS.inner_loop(loss_fn, {"w": w}, steps=2, lr={"w": alpha}, first_order=first_order, traceable=traceable)
        results.append((fast["w"], *torch.autograd.grad(fast["w"].sum(), [w, alpha])))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_inner_loop_reduces_cross_entropy_of_linear_model():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 4, generator=g), torch.arange(5).repeat(2)
    params = {"w": torch.zeros(5, 4, requires_grad=True), "b": torch.zeros(5, requires_grad=True)}

    def loss_fn(p):
        return F.cross_entropy(x @ p["w"].T + p["b"], y)

    fast = FS.inner_loop(loss_fn, params, steps=3, lr=0.5)
    assert loss_fn(fast) < loss_fn(params) - 0.1


def test_confidence_interval_matches_formula():
    values = torch.tensor([0.5, 0.7, 0.9, 0.6])
    mean, half = FS.confidence_interval(values)
    std = values.double().std(unbiased=True)
    assert math.isclose(mean.item(), 0.675, rel_tol=1e-6)
    assert math.isclose(half.item(), 1.959963984540054 * std.item() / 2.0, rel_tol=1e-9)
    assert math.isnan(FS.confidence_interval(torch.tensor([0.5]))[1].item())
    with pytest.raises(ValueError, match="at least one"):
        FS.confidence_interval(torch.tensor([]))


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0]])
    assert FS.accuracy(logits, torch.tensor([0, 1, 1])).item() == pytest.approx(2 / 3)
