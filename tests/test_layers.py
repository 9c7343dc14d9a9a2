"""Each layer's hand-derived backward against central differences (float64)."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.gradcheck import numerical_gradient, rel_error
from nerwin.nn import layers
from nerwin.nn.rowgrad import RowGrad

TOL = 1e-7
NONLIN = sorted(layers.NONLINEARITIES)


def upstream_check(forward, backward, x, rng, eps=1e-6):
    """Analytic vs numeric gradient of L = Σ forward(x) ⊙ G for a random upstream G."""
    out, cache = forward(x)
    G = rng.normal(size=out.shape)
    analytic = backward(G, cache)
    numeric = numerical_gradient(lambda: float(np.sum(forward(x)[0] * G)), x, eps)
    return analytic, numeric


# ------------------------------------------------------------------ affine


def test_affine_forward_is_x_Wt_plus_b():
    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=2)
    z, _ = layers.affine_forward(x, W, b)
    expected = np.array([[W[j] @ x[i] + b[j] for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(z, expected, rtol=1e-12)


def test_affine_backward_matches_numeric_and_shapes():
    rng = np.random.default_rng(1)
    x, W, b = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    z, cache = layers.affine_forward(x, W, b)
    G = rng.normal(size=z.shape)
    dx, dW, db = layers.affine_backward(G, cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape

    def f():
        return float(np.sum(layers.affine_forward(x, W, b)[0] * G))

    for analytic, param in ((dx, x), (dW, W), (db, b)):
        assert rel_error(analytic, numerical_gradient(f, param)).max() < TOL
    # b shares δ with W: its gradient is the batch sum of δ.
    np.testing.assert_allclose(db, G.sum(axis=0))


def test_affine_backward_can_skip_dx_and_dW():
    rng = np.random.default_rng(2)
    x, W, b = rng.normal(size=(5, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    _, cache = layers.affine_forward(x, W, b)
    G = rng.normal(size=(5, 3))
    full = layers.affine_backward(G, cache)
    dx, dW, db = layers.affine_backward(G, cache, need_dx=False, need_dW=False)
    assert dx is None and dW is None
    np.testing.assert_array_equal(db, full[2])


# ------------------------------------------------------------------ nonlinearities


@pytest.mark.parametrize("name", NONLIN)
def test_nonlinearity_backward_matches_numeric_on_generic_inputs(name):
    rng = np.random.default_rng(3)
    fwd, bwd = layers.NONLINEARITIES[name]
    # |z| <= 3 keeps every derivative >= 1e-2, so the relative error of the central
    # difference itself stays ~1e-9 (saturated inputs are tested separately below).
    z = rng.uniform(-3, 3, size=(6, 7))
    # Keep clear of the kinks (0 for relu, ±1 for hardtanh), where central differences
    # straddle two slopes; see test_kinks_use_subgradient_zero_and_differences_disagree.
    z[np.abs(z) < 1e-3] += 0.1
    z[np.abs(np.abs(z) - 1) < 1e-3] += 0.1
    analytic, numeric = upstream_check(fwd, bwd, z, rng, eps=1e-5)
    assert analytic.shape == z.shape
    assert rel_error(analytic, numeric).max() < 1e-6


def test_registry_entries_are_the_module_functions():
    for name, (fwd, bwd) in layers.NONLINEARITIES.items():
        assert fwd is getattr(layers, f"{name}_forward")
        assert bwd is getattr(layers, f"{name}_backward")


EXACT_DERIVATIVE = {
    # Written with e^-|z| so they are accurate (no cancellation) for any z.
    "sigmoid": lambda z: np.exp(-np.abs(z)) / (1 + np.exp(-np.abs(z))) ** 2,
    "tanh": lambda z: 4 * np.exp(-2 * np.abs(z)) / (1 + np.exp(-2 * np.abs(z))) ** 2,
}


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturating_derivatives_vanish_for_large_inputs(name):
    """For large |z| the analytic derivative is ~0 (not nan), as it should be."""
    rng = np.random.default_rng(4)
    fwd, bwd = layers.NONLINEARITIES[name]
    z = np.array([-800.0, -40.0, -20.0, 20.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        analytic, numeric = upstream_check(fwd, bwd, z, rng)
        _, cache = fwd(z)
        deriv = bwd(np.ones_like(z), cache)
    assert np.all(np.isfinite(analytic))
    # The true derivatives are at most σ'(20) ≈ 2e-9 and tanh'(20) ≈ 1.7e-17. From the output,
    # a(1-a) and 1-a² round to exactly 0 once a rounds to ±1: absolute error <= 1e-15.
    assert np.all(deriv >= 0) and np.all(deriv <= 3e-9)
    np.testing.assert_allclose(deriv, EXACT_DERIVATIVE[name](z), rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(analytic, numeric, atol=1e-9)


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_saturating_derivatives_moderately_large_inputs(name):
    """Where the derivative is small but well representable (|z| = 5..10, f' down to ~1e-9)
    the output-based formula is still accurate in relative terms. (Central differences are not
    a good reference here: f(z±ε) differ by ~1e-14, close to rounding.)"""
    fwd, bwd = layers.NONLINEARITIES[name]
    z = np.array([-10.0, -7.0, -5.0, 5.0, 7.0, 10.0])
    _, cache = fwd(z)
    np.testing.assert_allclose(bwd(np.ones_like(z), cache), EXACT_DERIVATIVE[name](z), rtol=1e-6)


def test_hardtanh_just_inside_and_outside_the_edges():
    rng = np.random.default_rng(6)
    fwd, bwd = layers.NONLINEARITIES["hardtanh"]
    inside = np.array([-1 + 1e-4, -0.999, 0.999, 1 - 1e-4])
    outside = np.array([-1 - 1e-4, -1.001, 1.001, 1 + 1e-4, -50.0, 50.0])
    for z, slope in ((inside, 1.0), (outside, 0.0)):
        _, cache = fwd(z)
        np.testing.assert_array_equal(bwd(np.ones_like(z), cache), slope)
        analytic, numeric = upstream_check(fwd, bwd, z, rng)
        np.testing.assert_allclose(analytic, numeric, atol=1e-9)


def test_relu_small_positive_and_negative_inputs():
    rng = np.random.default_rng(7)
    fwd, bwd = layers.NONLINEARITIES["relu"]
    for z, slope in ((np.array([1e-4, 1e-3, 0.5]), 1.0), (np.array([-1e-4, -1e-3, -0.5]), 0.0)):
        _, cache = fwd(z)
        np.testing.assert_array_equal(bwd(np.ones_like(z), cache), slope)
        analytic, numeric = upstream_check(fwd, bwd, z, rng)
        np.testing.assert_allclose(analytic, numeric, atol=1e-9)


@pytest.mark.parametrize("name,kinks", [("relu", [0.0]), ("hardtanh", [-1.0, 1.0])])
def test_kinks_use_subgradient_zero_and_differences_disagree(name, kinks):
    """At a kink there is no derivative. Our convention is the subgradient 0; a central
    difference (f(z+ε) - f(z-ε))/2ε straddles the kink and averages the slopes on the two
    sides (0 and 1), giving 0.5. Both are in the subdifferential [0, 1], so the disagreement
    is expected, not a bug -- and it is why gradient checks avoid exact kinks.
    """
    fwd, bwd = layers.NONLINEARITIES[name]
    z = np.array(kinks)
    _, cache = fwd(z)
    np.testing.assert_array_equal(bwd(np.ones_like(z), cache), 0.0)
    numeric = numerical_gradient(lambda: float(fwd(z)[0].sum()), z, eps=1e-6)
    np.testing.assert_allclose(numeric, 0.5, rtol=1e-6)
    # One-sided differences recover the two slopes.
    right = (fwd(z + 1e-6)[0] - fwd(z)[0]) / 1e-6
    left = (fwd(z)[0] - fwd(z - 1e-6)[0]) / 1e-6
    assert sorted(np.round(np.r_[left, right], 6)) == sorted([0.0, 1.0] * len(kinks))


@pytest.mark.parametrize("name", NONLIN)
def test_nonlinearities_keep_float32(name):
    fwd, bwd = layers.NONLINEARITIES[name]
    z = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    a, cache = fwd(z)
    assert a.dtype == np.float32
    assert bwd(np.ones_like(a), cache).dtype == np.float32


# ------------------------------------------------------------------ embeddings


def test_embedding_forward_looks_up_rows():
    E = np.arange(12.0).reshape(4, 3)
    ids = np.array([[1, 3], [0, 1]])
    out, _ = layers.embedding_forward(E, ids)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 1], E[3])
    np.testing.assert_array_equal(out[1, 0], E[0])


def test_embedding_rejects_negative_ids():
    with pytest.raises(ValueError, match=">= 0"):
        layers.embedding_forward(np.zeros((4, 2)), np.array([[0, -1]]))


def test_embedding_backward_sums_repeated_ids():
    rng = np.random.default_rng(8)
    E = rng.normal(size=(6, 2))
    ids = np.array([[1, 2, 1], [2, 2, 4]])  # 1 twice, 2 three times, 4 once
    out, cache = layers.embedding_forward(E, ids)
    G = rng.normal(size=out.shape)
    g = layers.embedding_backward(G, cache)
    assert isinstance(g, RowGrad)
    np.testing.assert_array_equal(g.rows, [1, 2, 4])
    np.testing.assert_allclose(g.values[0], G[0, 0] + G[0, 2])
    np.testing.assert_allclose(g.values[1], G[0, 1] + G[1, 0] + G[1, 1])
    np.testing.assert_allclose(g.values[2], G[1, 2])
    numeric = numerical_gradient(lambda: float(np.sum(layers.embedding_forward(E, ids)[0] * G)), E)
    np.testing.assert_allclose(g.to_dense(E.shape), numeric, atol=1e-9)


# ------------------------------------------------------------------ dropout


def test_dropout_mask_scaling_and_backward():
    rng = np.random.default_rng(9)
    p = 0.3
    x = rng.uniform(0.5, 1.5, size=(400, 50))
    out, mask = layers.dropout_forward(x, p, rng, train=True)
    kept = out != 0
    # Kept units are scaled by 1/(1-p); dropped ones are exactly 0.
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-12)
    assert abs(kept.mean() - (1 - p)) < 0.01
    # Inverted dropout preserves the expectation: mean(out) ≈ mean(x).
    assert abs(out.mean() / x.mean() - 1) < 0.02
    G = rng.normal(size=x.shape)
    dx = layers.dropout_backward(G, mask)
    np.testing.assert_array_equal(dx[~kept], 0.0)
    np.testing.assert_allclose(dx[kept], G[kept] / (1 - p), rtol=1e-12)


def test_dropout_backward_matches_numeric_for_a_fixed_mask():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(4, 5))
    analytic, numeric = upstream_check(
        lambda t: layers.dropout_forward(t, 0.5, np.random.default_rng(0), train=True),
        layers.dropout_backward, x, rng)
    assert rel_error(analytic, numeric).max() < TOL


def test_dropout_eval_mode_and_p0_are_identity():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 4))
    for p, train in ((0.5, False), (0.0, True)):
        state = rng.bit_generator.state
        out, cache = layers.dropout_forward(x, p, rng, train=train)
        assert out is x
        assert rng.bit_generator.state == state  # no randomness consumed
        G = rng.normal(size=x.shape)
        assert layers.dropout_backward(G, cache) is G


def test_dropout_float32_stays_float32_and_validates():
    rng = np.random.default_rng(12)
    x = np.ones((3, 4), dtype=np.float32)
    out, mask = layers.dropout_forward(x, 0.25, rng, train=True)
    assert out.dtype == np.float32 and mask.dtype == np.float32
    assert layers.dropout_backward(np.ones_like(x), mask).dtype == np.float32
    with pytest.raises(ValueError):
        layers.dropout_forward(x, 1.0, rng, train=True)
    with pytest.raises(ValueError):
        layers.dropout_forward(x, 0.5, None, train=True)
