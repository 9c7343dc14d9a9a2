"""The character encoder: windows, forward against a naive loop, max ties, float64 gradients,
and max switches recognised as kinks by the gradient checker."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.gradcheck import check_gradients, format_gradcheck_table, numerical_gradient
from nerwin.nn import chars
from nerwin.nn.network import CharSpec, NetSpec, TableSpec, WindowNet, init_params

NONLIN = ["sigmoid", "tanh", "hardtanh", "relu"]


def test_char_windows_pad_and_never_cross_rows():
    ids = np.array([[5, 6, 7, 0], [8, 0, 0, 0]])
    win = chars.char_windows(ids, 3)
    assert win.shape == (2, 4, 3)
    assert win[0].tolist() == [[0, 5, 6], [5, 6, 7], [6, 7, 0], [7, 0, 0]]
    assert win[1, 0].tolist() == [0, 8, 0]
    # a row's windows hold only its own ids or <pad>: a word never sees its neighbour
    assert set(win[1].ravel()) <= {0, 8}
    assert chars.char_windows(ids, 1)[:, :, 0].tolist() == ids.tolist()


def naive(E, W, b, ids, width):
    h = (width - 1) // 2
    out = []
    for row in ids:
        n = max(1, int((row != 0).sum()))
        padded = np.concatenate([np.zeros(h, int), row, np.zeros(h, int)])
        zs = [W @ np.concatenate([E[c] for c in padded[j: j + width]]) + b for j in range(n)]
        out.append(np.max(zs, axis=0))
    return np.array(out)


@pytest.mark.parametrize("width", [1, 3, 5])
def test_forward_matches_a_naive_loop(width):
    rng = np.random.default_rng(0)
    E, W, b = rng.normal(size=(9, 4)), rng.normal(size=(6, 4 * width)), rng.normal(size=6)
    ids = np.array([[3, 4, 5, 6, 0, 0], [7, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    out, _ = chars.char_forward(E, W, b, ids, width)
    np.testing.assert_allclose(out, naive(E, W, b, ids, width), rtol=1e-12)


def test_positions_after_the_word_never_win():
    """The padded tail of a row is not part of the word: even with a huge score there it
    must not be the max."""
    E = np.zeros((4, 1))
    E[0] = 100.0  # <pad>'s vector: positions made of pads would score 100
    E[3] = -1.0
    W, b = np.ones((1, 1)), np.zeros(1)
    out, _ = chars.char_forward(E, W, b, np.array([[3, 0, 0]]), 1)
    assert out.tolist() == [[-1.0]]


def test_ties_go_to_the_first_max():
    """'aXa' with width 1: positions 0 and 2 tie exactly; the gradient goes to position 0
    only (a deterministic subgradient), so only E[a] gets it, once."""
    E = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [-1.0, 0.5]])
    W, b = np.array([[1.0, 1.0]]), np.zeros(1)
    ids = np.array([[2, 3, 2]])
    out, cache = chars.char_forward(E, W, b, ids, 1)
    assert out.tolist() == [[3.0]] and cache[3].tolist() == [[0]]
    dE, dW, db = chars.char_backward(np.array([[1.0]]), cache)
    dense = dE.to_dense(E.shape)
    assert dense.tolist() == [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    assert dW.tolist() == [[1.0, 2.0]] and db.tolist() == [1.0]


def test_gradients_float64_against_central_differences():
    rng = np.random.default_rng(3)
    E, W, b = rng.normal(size=(8, 3)), rng.normal(size=(5, 9)), rng.normal(size=5)
    ids = np.array([[3, 4, 5, 3, 0], [6, 0, 0, 0, 0], [7, 6, 5, 4, 3]])
    G = rng.normal(size=(3, 5))

    def f():
        return float((chars.char_forward(E, W, b, ids, 3)[0] * G).sum())

    _, cache = chars.char_forward(E, W, b, ids, 3)
    dE, dW, db = chars.char_backward(G, cache)
    for analytic, param in ((dE.to_dense(E.shape), E), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(f, param, 1e-6),
                                   rtol=1e-6, atol=1e-9)


def char_net(nonlinearity="tanh", hidden=(4,), head="softmax", width=3, seed=0):
    spec = NetSpec(tables=(TableSpec("E_word", 10, 3), CharSpec(9, 3, 4, width, 6)),
                   window=1, hidden=hidden, nonlinearity=nonlinearity, head=head,
                   n_out=1 if head == "logistic" else 3, init_scale=0.5, l2=0.01)
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng, np.float64)
    for name, v in params.items():
        if name.startswith("b") or name == "c":
            v[...] = rng.normal(scale=0.5, size=v.shape)
    return WindowNet(spec, params)


def char_batch(B=4, seed=1):
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 7, size=(B, 3))
    ch = np.zeros((B, 3, 6), dtype=np.int16)
    for i in range(B):
        for j in range(3):
            n = int(rng.integers(1, 7))  # 1..6 characters: short words and full rows
            ch[i, j, :n] = rng.integers(1, 8, size=n)
    return (words, ch), rng.integers(0, 3, size=B)


@pytest.mark.parametrize("hidden", [(), (4,), (4, 3)])
@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_whole_network_with_chars_gradcheck(nonlinearity, hidden):
    net = char_net(nonlinearity, hidden)
    inputs, y = char_batch()
    rows = check_gradients(net, inputs, y, rng=np.random.default_rng(0), max_entries=60)
    assert all(r.max_rel_error < 1e-6 for r in rows), format_gradcheck_table(rows, 1e-6)
    assert {"E_char", "W_char", "b_char"} <= {r.name for r in rows if r.checked > 0}


def test_logistic_head_with_chars_gradcheck():
    net = char_net(head="logistic")
    inputs, _ = char_batch()
    y = np.array([0, 1, 1, 0])
    rows = check_gradients(net, inputs, y, rng=np.random.default_rng(0), max_entries=60)
    assert all(r.max_rel_error < 1e-6 for r in rows), format_gradcheck_table(rows, 1e-6)


def test_a_max_switch_is_a_kink_not_a_failure():
    """Two positions 1e-7 apart: a ±1e-4 step of W_char flips the argmax. The checker must
    see it in kink_pattern and leave the entry out instead of failing it."""
    spec = NetSpec(tables=(TableSpec("E_word", 4, 1), CharSpec(5, 2, 1, 1, 2)), window=0,
                   hidden=(), nonlinearity="tanh", head="softmax", n_out=2)
    params = init_params(spec, np.random.default_rng(0), np.float64)
    params["E_char"][3] = [1.0, 0.0]
    params["E_char"][4] = [0.0, 1.0 - 1e-7]
    params["W_char"][...] = [[1.0, 1.0]]
    net = WindowNet(spec, params)
    inputs = (np.array([[3]]), np.array([[[3, 4]]], dtype=np.int16))
    assert net.kink_pattern(inputs).tolist() == [0]
    rows = check_gradients(net, inputs, np.array([1]), rng=np.random.default_rng(0))
    by = {r.name: r for r in rows}
    assert by["W_char"].kinks == 2 and by["W_char"].max_rel_error < 1e-6
    # Without the detection the quotient is off: the kink is real.
    _, grads = net.loss_and_grads(inputs, np.array([1]), train=False)
    numeric = numerical_gradient(lambda: net.loss(inputs, np.array([1])),
                                 params["W_char"], 1e-4)
    assert np.abs(grads["W_char"] - numeric).max() > 1e-3


def test_char_spec_validation():
    from nerwin.errors import NerwinError

    for width in (2, 7):
        with pytest.raises(NerwinError, match="width"):
            NetSpec(tables=(TableSpec("E_word", 4, 1), CharSpec(5, 2, 1, width, 6)), window=0,
                    hidden=(), nonlinearity="tanh", head="softmax", n_out=2)
