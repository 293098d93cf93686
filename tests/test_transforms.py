"""Transforms after the reduction: RMSE returns sqrt of the mean, with the exact gradient
and Hessian diagonal of the root."""

import numpy as np
import pytest
import torch

import lossgen as lg


@pytest.mark.parametrize("reduction", ["mean", "sum", "weighted_mean"])
def test_rmse_matches_torch_autograd_of_the_root(reduction):
    rng = np.random.default_rng(3)
    y, p, w = rng.normal(size=(3, 40))
    w = np.abs(w)
    weight = w if reduction == "weighted_mean" else None
    result = lg.get("rmse").compile(reduction=reduction)(y, p, weight=weight)
    pt = torch.tensor(p, requires_grad=True)
    squares = (pt - torch.tensor(y)) ** 2
    reduced = {"mean": squares.mean(), "sum": squares.sum(), "weighted_mean": (torch.tensor(w) * squares).sum() / w.sum()}[reduction]
    root = torch.sqrt(reduced)
    (grad,) = torch.autograd.grad(root, pt, create_graph=True)
    hess = np.array([torch.autograd.grad(grad[i], pt, retain_graph=True)[0][i].item() for i in range(40)])
    assert result.loss == pytest.approx(root.item(), rel=1e-14)
    np.testing.assert_allclose(result.grad, grad.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(result.hess, hess, rtol=1e-12, atol=1e-16)


def test_rmse_reduction_none_gives_the_untransformed_terms():
    result = lg.get("rmse").compile(reduction="none")(np.zeros(3), np.array([1.0, -2.0, 3.0]))
    np.testing.assert_array_equal(result.loss, [1.0, 4.0, 9.0])


def test_unknown_transform_is_a_spec_error():
    with pytest.raises(lg.SpecError, match="transform"):
        lg.Loss("bad", "(p - y)**2", inputs=["y", "p"], wrt="p", transform="cube")


def test_a_transformed_loss_cannot_be_added():
    with pytest.raises(lg.SpecError, match="transform"):
        lg.get("rmse") + lg.get("squared_error")
