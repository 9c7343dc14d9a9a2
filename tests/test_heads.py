"""Softmax cross-entropy and logistic heads: values, gradients, numerical stability."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.gradcheck import numerical_gradient, rel_error
from nerwin.nn import heads

# Central differences in float64 with ε = 1e-5: rounding error ~1e-16/ε and truncation error
# ~ε² leave ~1e-11 absolute noise, i.e. < 1e-6 relative for the gradients below.
TOL = 1e-6
EPS = 1e-5


def test_softmax_rows_sum_to_one_and_shift_invariant():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 5))
    p = heads.softmax(s)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(heads.softmax(s + 123.0), p, rtol=1e-12)
    np.testing.assert_allclose(p, np.exp(s) / np.exp(s).sum(axis=1, keepdims=True), rtol=1e-12)


def test_sigmoid_matches_definition():
    z = np.linspace(-20, 20, 41)
    np.testing.assert_allclose(heads.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-13)


def test_softmax_xent_value_by_hand():
    scores = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    y = np.array([1, 2])
    loss, _ = heads.softmax_xent_forward(scores, y)
    expected = -(np.log(np.exp(2.0) / np.exp([1.0, 2.0, 0.5]).sum()) + np.log(1 / 3)) / 2
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dloss", [1.0, 0.3])
def test_softmax_xent_backward_matches_numeric(dloss):
    rng = np.random.default_rng(1)
    scores = rng.normal(scale=3.0, size=(6, 4))
    y = rng.integers(0, 4, size=6)
    _, cache = heads.softmax_xent_forward(scores, y)
    analytic = heads.softmax_xent_backward(cache, dloss)
    numeric = numerical_gradient(
        lambda: dloss * heads.softmax_xent_forward(scores, y)[0], scores, EPS)
    assert analytic.shape == scores.shape
    assert rel_error(analytic, numeric).max() < TOL
    # δ = (softmax - onehot) / B: each row of δ sums to 0.
    np.testing.assert_allclose(analytic.sum(axis=1), 0.0, atol=1e-15)


def test_logistic_value_matches_bce():
    s = np.array([-3.0, -0.2, 0.0, 0.7, 4.0])
    y = np.array([0, 1, 1, 0, 1])
    loss, _ = heads.logistic_forward(s, y)
    sig = 1 / (1 + np.exp(-s))
    expected = -np.mean(y * np.log(sig) + (1 - y) * np.log(1 - sig))
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dloss", [1.0, 2.5])
def test_logistic_backward_matches_numeric(dloss):
    rng = np.random.default_rng(2)
    s = rng.normal(scale=3.0, size=7)
    y = rng.integers(0, 2, size=7)
    _, cache = heads.logistic_forward(s, y)
    analytic = heads.logistic_backward(cache, dloss)
    numeric = numerical_gradient(lambda: dloss * heads.logistic_forward(s, y)[0], s, EPS)
    assert analytic.shape == s.shape
    assert rel_error(analytic, numeric).max() < TOL
    np.testing.assert_allclose(analytic, dloss * (1 / (1 + np.exp(-s)) - y) / 7, rtol=1e-12)


def test_softmax_head_is_stable_for_huge_scores():
    scores = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0], [1000.0, 1000.0, 999.0]])
    y = np.array([1, 0, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = heads.softmax(scores)
        loss, cache = heads.softmax_xent_forward(scores, y)
        d = heads.softmax_xent_backward(cache)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(d)) and np.isfinite(loss)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # log-softmax by hand: -(-2000) ; -(-1000 - log 2) ; -(999 - (1000 + log(2 + e^-1)))
    expected = (2000.0 + (2000.0 + np.log(2)) + (1 + np.log(2 + np.exp(-1.0)))) / 3
    assert loss == pytest.approx(expected, rel=1e-12)


def test_logistic_head_is_stable_for_huge_scores():
    s = np.array([1000.0, -1000.0, 1000.0, -1000.0])
    y = np.array([1, 0, 0, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sig = heads.sigmoid(s)
        loss, cache = heads.logistic_forward(s, y)
        d = heads.logistic_backward(cache)
    np.testing.assert_array_equal(sig, [1.0, 0.0, 1.0, 0.0])
    # The two confident-right examples cost 0, the two confident-wrong ones 1000 each.
    assert loss == pytest.approx(500.0, rel=1e-12)
    np.testing.assert_allclose(d, [0.0, 0.0, 0.25, -0.25])


def test_heads_keep_float32():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(4, 3)).astype(np.float32)
    _, cache = heads.softmax_xent_forward(scores, np.array([0, 1, 2, 0]))
    assert heads.softmax_xent_backward(cache).dtype == np.float32
    assert heads.softmax(scores).dtype == np.float32
    s = scores[:, 0].copy()
    _, cache = heads.logistic_forward(s, np.array([0, 1, 1, 0]))
    assert heads.logistic_backward(cache).dtype == np.float32
    assert heads.sigmoid(s).dtype == np.float32


def test_heads_reject_bad_labels():
    with pytest.raises(ValueError):
        heads.softmax_xent_forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError):
        heads.softmax_xent_forward(np.zeros((2, 3)), np.array([-1, 0]))
    with pytest.raises(ValueError):
        heads.logistic_forward(np.zeros(2), np.array([0, 2]))
    with pytest.raises(ValueError):
        heads.logistic_forward(np.zeros(2), np.array([0]))
