"""The gradient checker itself: it passes on a correct net and catches broken gradients."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.gradcheck import (
    GradCheckRow,
    check_gradients,
    format_gradcheck_table,
    numerical_gradient,
    passed,
    rel_error,
)
from nerwin.nn import layers
from nerwin.nn.network import NetSpec, WindowNet, init_params, word_tables
from nerwin.nn.rowgrad import RowGrad

TOL = 1e-5


def build(dtype=np.float64, **kw):
    base = dict(n_words=40, word_dim=6, n_casing=3, casing_dim=2, window=1, hidden=(5, 4),
                nonlinearity="tanh", head="softmax", n_out=3, init_scale=0.5, l2=0.01, l1=0.001)
    base.update(kw)
    tables = word_tables(*(base.pop(k) for k in ("n_words", "word_dim", "n_casing",
                                                 "casing_dim")))
    spec = NetSpec(tables=tables, **base)
    rng = np.random.default_rng(0)
    params = init_params(spec, rng, dtype=dtype)
    for name in params:
        if name.startswith("b") or name == "c":
            params[name][...] = rng.normal(scale=0.3, size=params[name].shape)
    return WindowNet(spec, params)


def batch(net: WindowNet, B: int = 6):
    rng = np.random.default_rng(1)
    K = net.spec.n_positions
    # Only ids < 30 occur, so E_word rows 30..39 are unused in the batch.
    return ((rng.integers(0, 30, size=(B, K)), rng.integers(0, 3, size=(B, K))),
            rng.integers(0, net.spec.n_out, size=B))


def test_passes_on_a_correct_net():
    net = build()
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=50)
    assert [r.name for r in rows] == list(net.params)
    assert all(r.max_rel_error < TOL for r in rows), format_gradcheck_table(rows, TOL)
    by_name = {r.name: r for r in rows}
    # E_word (240 entries) and W1 (5 x 24) exceed max_entries and are sampled; the rest are
    # small enough to be checked entirely.
    # Every sampled entry is compared, or flagged (noisy / kink) and counted.
    considered = {n: r.checked + r.noisy + r.kinks for n, r in by_name.items()}
    assert considered["E_word"] == 50 and considered["W1"] == 50
    assert considered["b1"] == 5 and considered["U"] == 12
    assert sum(r.checked for r in rows) > 0.9 * sum(considered.values())
    assert all(r.shape == net.params[r.name].shape for r in rows)


def test_does_not_change_the_parameters():
    net = build()
    before = {k: v.copy() for k, v in net.params.items()}
    check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=30)
    for name, value in net.params.items():
        np.testing.assert_array_equal(value, before[name])


def test_catches_dW_scaled_by_1_01(monkeypatch):
    """Scaling dW by 1.01 in every affine layer (hidden and head) must be flagged on exactly
    the weight matrices, with relative error ≈ 0.01/2.01 ≈ 5e-3, while b and E stay fine."""
    original = layers.affine_backward

    def broken(dz, cache, **kw):
        dx, dW, db = original(dz, cache, **kw)
        return dx, (None if dW is None else 1.01 * dW), db

    net = build(l2=0.0, l1=0.0)  # no regulariser, so the whole of dW is scaled
    monkeypatch.setattr(layers, "affine_backward", broken)
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=50)
    table = format_gradcheck_table(rows, TOL)
    by_name = {r.name: r for r in rows}
    for name in ("W1", "W2", "U"):
        assert by_name[name].max_rel_error == pytest.approx(0.01 / 2.01, rel=1e-3), table
    for name in ("E_word", "E_case", "b1", "b2", "c"):
        assert by_name[name].max_rel_error < TOL, table
    assert "FAIL" in table and "FAILED" in table


def test_catches_a_two_argument_monkeypatch_on_one_layer(monkeypatch):
    """A plain (dz, cache) replacement that breaks only the head's dW is caught on U only."""
    original = layers.affine_backward
    net = build(l2=0.0, l1=0.0)
    U = net.params["U"]

    def broken(dz, cache):
        dx, dW, db = original(dz, cache)
        return dx, (1.01 * dW if cache[1] is U else dW), db

    monkeypatch.setattr(layers, "affine_backward", broken)
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=50)
    bad = [r.name for r in rows if r.max_rel_error >= TOL]
    assert bad == ["U"]


def test_catches_gradient_on_unused_embedding_rows(monkeypatch):
    """A RowGrad that reports gradient on rows not in the batch is wrong: the numeric
    gradient there is exactly 0, and the checker samples some unused rows."""
    original = layers.embedding_backward
    net = build()
    V = net.params["E_word"].shape[0]

    def leaky(dout, cache):
        g = original(dout, cache)
        if cache[1] != net.spec.tables[0].dim:
            return g
        dense = g.to_dense((V, g.values.shape[1]))
        unused = np.ones(V, dtype=bool)
        unused[g.rows] = False
        dense[unused] += 1e-3  # the rows in the batch keep their correct gradient
        return RowGrad(np.arange(V), dense)

    monkeypatch.setattr(layers, "embedding_backward", leaky)
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=50)
    by_name = {r.name: r for r in rows}
    assert by_name["E_word"].max_rel_error == pytest.approx(1.0)
    assert by_name["W1"].max_rel_error < TOL


def test_catches_a_broken_nonlinearity_backward(monkeypatch):
    net = build(nonlinearity="sigmoid")
    monkeypatch.setattr(layers, "sigmoid_backward", lambda da, a: da * a)  # forgot (1 - a)
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=50)
    bad = {r.name for r in rows if r.max_rel_error >= TOL}
    # Every parameter below the last hidden layer's nonlinearity sees the wrong δ.
    assert bad == {"E_word", "E_case", "W1", "b1", "W2", "b2"}


def test_requires_float64():
    net = build(dtype=np.float32)
    with pytest.raises(ValueError, match="float64"):
        check_gradients(net, *batch(net), rng=np.random.default_rng(0))


def test_frozen_parameters_listed_unchecked():
    net = build()
    net = WindowNet(net.spec, net.params, frozen=frozenset({"E_word", "W2"}))
    rows = check_gradients(net, *batch(net), rng=np.random.default_rng(0), max_entries=30)
    by_name = {r.name: r for r in rows}
    assert by_name["E_word"].checked == 0 and by_name["W2"].checked == 0
    assert all(r.checked > 0 for r in rows if r.name not in ("E_word", "W2"))
    table = format_gradcheck_table(rows, TOL)
    assert table.count("frozen") == 2 and "all ok" in table


def test_numerical_gradient_and_rel_error():
    x = np.array([1.0, -2.0, 3.0])
    g = numerical_gradient(lambda: float(np.sum(x**3)), x)
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])
    assert rel_error(0.0, 0.0) == 0.0
    assert rel_error(1.0, -1.0) == 1.0
    assert rel_error(1.0, 1.01) == pytest.approx(0.01 / 2.01)


def test_format_table():
    rows = [GradCheckRow("W1", (3, 4), 12, 2e-9), GradCheckRow("U", (2, 3), 6, 0.5),
            GradCheckRow("E_word", (10, 2), 0, 0.0, frozen=True),
            GradCheckRow("b1", (3,), 0, 0.0, kinks=2, noisy=1)]
    table = format_gradcheck_table(rows, 1e-6)
    lines = table.splitlines()
    assert lines[0].split() == ["param", "shape", "checked", "kinks", "noisy", "max", "rel",
                                "err", "status"]
    assert "W1" in lines[2] and lines[2].endswith("ok") and "2.00e-09" in lines[2]
    assert lines[3].endswith("FAIL")
    assert lines[4].endswith("frozen")
    assert lines[5].endswith("NOT CHECKED") and lines[5].split()[3:5] == ["2", "1"]
    assert lines[6].endswith("FAILED (1 not checked)")
    assert lines[7].startswith("NOT CHECKED: b1: ") and "not a pass" in lines[7]
    assert "crossed a kink" in lines[8] and "uncertain" in lines[9]


def test_a_parameter_with_nothing_compared_does_not_pass():
    ok = GradCheckRow("W1", (3, 4), 12, 2e-9)
    assert passed([ok], 1e-6)
    assert passed([ok, GradCheckRow("E_word", (10, 2), 0, 0.0, frozen=True)], 1e-6)
    assert not passed([ok, GradCheckRow("b1", (3,), 0, 0.0, kinks=3)], 1e-6)
    assert not passed([ok, GradCheckRow("c", (3,), 0, 0.0, noisy=3)], 1e-6)
    assert not passed([ok, GradCheckRow("c", (0,), 0, 0.0)], 1e-6)


def _noisy_net():
    spec = NetSpec(tables=word_tables(8, 3, 6, 2), window=1, hidden=(4,),
                   nonlinearity="tanh", head="softmax", n_out=3)
    net = WindowNet(spec, init_params(spec, np.random.default_rng(3), np.float64))
    words = np.array([[1, 4, 5], [4, 5, 2]])
    case = np.array([[0, 1, 3], [1, 3, 0]])
    return net, (words, case), np.array([0, 2])


def test_rounding_noise_is_flagged_not_failed(monkeypatch):
    """Add deterministic noise of 1e-11 to J (as a longer float64 computation would have):
    a right derivation must come out as 'noisy' entries, never as a failure."""
    net, inputs, y = _noisy_net()
    clean = net.loss

    def noisy_loss(inp, yy, lengths=None):
        # a pseudo-random function of the parameters, 1e-11 in size
        h = sum(float(np.sin(1e7 * p.sum())) for p in net.params.values())
        return clean(inp, yy, lengths) + 1e-11 * h

    monkeypatch.setattr(net, "loss", noisy_loss)
    rng = np.random.default_rng(0)
    plain = check_gradients(net, inputs, y, eps=1e-6, rng=rng, tol=None)
    assert max(r.max_rel_error for r in plain) > 1e-6  # without screening: false failures
    rows = check_gradients(net, inputs, y, eps=1e-6, rng=np.random.default_rng(0))
    assert all(r.max_rel_error <= 1e-6 for r in rows)
    assert sum(r.noisy for r in rows) > 0


def test_noise_screening_does_not_hide_a_wrong_gradient(monkeypatch):
    net, inputs, y = _noisy_net()
    real = layers.affine_backward

    def broken(dz, cache, **kw):
        dx, dW, db = real(dz, cache, **kw)
        return dx, (None if dW is None else dW * 1.01), db

    monkeypatch.setattr(layers, "affine_backward", broken)
    rows = check_gradients(net, inputs, y, eps=1e-4, rng=np.random.default_rng(0))
    w1 = next(r for r in rows if r.name == "W1")
    assert w1.max_rel_error > 1e-3 and w1.noisy < w1.checked


def test_kink_crossings_are_detected_and_left_out():
    """A relu unit sitting just next to its kink: the ±eps step of its bias crosses it.

    The raw central difference there is the mean of the two one-sided slopes (an error of
    order 1); the checker must flag the entry instead of reporting a false failure.
    """
    spec = NetSpec(tables=word_tables(6, 2), window=0, hidden=(1,),
                   nonlinearity="relu", head="softmax", n_out=3)
    params = init_params(spec, np.random.default_rng(0), np.float64)
    net = WindowNet(spec, params)
    words = (np.array([[3]]),)
    z = float(params["E_word"][3] @ params["W1"][0])
    params["b1"][0] = -z + 1e-7  # z = 1e-7: inside the ±1e-4 step
    assert net.kink_pattern(words).tolist() == [1]
    rows = check_gradients(net, words, np.array([1]), eps=1e-4, rng=np.random.default_rng(0))
    b1 = next(r for r in rows if r.name == "b1")
    assert b1.kinks == 1 and b1.checked == 0
    # Without the detection the same entry is far off: the kink matters.
    _, grads = net.loss_and_grads(words, np.array([1]), train=False)
    numeric = numerical_gradient(lambda: net.loss(words, np.array([1])), params["b1"], 1e-4)
    assert rel_error(grads["b1"], numeric).max() > 1e-3
