"""The whole window network: gradients (incl. embeddings), dtypes, freezing, init."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.errors import NerwinError
from nerwin.gradcheck import check_gradients, format_gradcheck_table, numerical_gradient
from nerwin.nn import layers
from nerwin.nn.network import NetSpec, WindowNet, init_params, word_tables
from nerwin.nn.rowgrad import RowGrad

TOL = 1e-5
NONLIN = ["sigmoid", "tanh", "hardtanh", "relu"]


def make_spec(**kw) -> NetSpec:
    base = dict(n_words=12, word_dim=3, n_casing=4, casing_dim=2, window=1, hidden=(4,),
                nonlinearity="tanh", head="softmax", n_out=3, init_scale=0.5, l2=0.05, l1=0.01)
    base.update(kw)
    if base["head"] == "logistic":
        base["n_out"] = 1
    tables = word_tables(*(base.pop(k) for k in ("n_words", "word_dim", "n_casing",
                                                 "casing_dim")))
    return NetSpec(tables=tables, **base)


def make_net(spec: NetSpec, seed: int = 0, dtype=np.float64, frozen=frozenset()) -> WindowNet:
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng, dtype=dtype)
    # Zero biases put a unit exactly on relu's kink whenever the layer below is all dead
    # (z = 0 + b = 0), where central differences are not a derivative; a gradient check wants
    # a generic point, so give every bias a random value.
    for name, value in params.items():
        if name.startswith("b") or name == "c":
            value[...] = rng.normal(scale=0.5, size=value.shape)
    return WindowNet(spec, params, frozen=frozen)


def make_batch(spec: NetSpec, B: int = 5, seed: int = 1):
    rng = np.random.default_rng(seed)
    K = spec.n_positions
    # A vocabulary of 12 and B*K >= 5 ids: repeated ids (summed gradients) are certain for
    # m >= 1 and likely otherwise; the last 3 rows are never used (zero gradient).
    word = spec.tables[0]
    word_ids = rng.integers(0, word.n_rows - 3, size=(B, K))
    word_ids[0, 0] = word_ids[-1, -1]  # at least one repeat
    inputs = [word_ids]
    for t in spec.tables[1:]:
        inputs.append(rng.integers(0, t.n_rows, size=(B, K)))
    n_classes = 2 if spec.head == "logistic" else spec.n_out
    y = rng.integers(0, n_classes, size=B)
    return tuple(inputs), y


def assert_gradcheck(net: WindowNet, batch, max_entries=40):
    rows = check_gradients(net, *batch, rng=np.random.default_rng(2), max_entries=max_entries)
    table = format_gradcheck_table(rows, TOL)
    assert all(r.max_rel_error < TOL for r in rows), table
    return rows


# ------------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("head", ["softmax", "logistic"])
@pytest.mark.parametrize("hidden", [(), (4,), (5, 3)])
@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_gradcheck_layers_nonlinearities_heads(head, hidden, nonlinearity):
    spec = make_spec(head=head, hidden=hidden, nonlinearity=nonlinearity)
    rows = assert_gradcheck(make_net(spec), make_batch(spec))
    names = [r.name for r in rows]
    assert names == list(spec.param_shapes())
    assert all(r.checked > 0 for r in rows)


@pytest.mark.parametrize("window", [0, 1, 2, 3])
@pytest.mark.parametrize("casing_dim", [0, 2])
@pytest.mark.parametrize("head", ["softmax", "logistic"])
def test_gradcheck_windows_and_casing(window, casing_dim, head):
    spec = make_spec(window=window, casing_dim=casing_dim, head=head, hidden=(4,),
                     nonlinearity=NONLIN[window])
    rows = assert_gradcheck(make_net(spec, seed=window), make_batch(spec, seed=window))
    assert ("E_case" in [r.name for r in rows]) == (casing_dim > 0)


def test_gradcheck_without_regularisation_and_xavier_normal():
    spec = make_spec(l2=0.0, l1=0.0, init="xavier_normal", hidden=(4, 4))
    assert_gradcheck(make_net(spec), make_batch(spec))


def test_dropout_gradients_for_a_fixed_mask():
    """With the same rng seed the dropout mask is the same, so the training loss is a fixed
    function of the parameters and its gradient can be checked numerically."""
    spec = make_spec(hidden=(5, 4), dropout=0.4, nonlinearity="sigmoid")
    net = make_net(spec)
    inp, y = make_batch(spec)
    wid, cid = inp

    def f():
        return net.loss_and_grads(inp, y, train=True, rng=np.random.default_rng(7))[0]

    _, grads = net.loss_and_grads(inp, y, train=True, rng=np.random.default_rng(7))
    assert f() != pytest.approx(net.loss(inp, y))  # dropout really is on
    for name in ("W1", "b2", "U"):
        numeric = numerical_gradient(f, net.params[name])
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-9)
    numeric = numerical_gradient(f, net.params["E_word"])
    np.testing.assert_allclose(grads["E_word"].to_dense(net.params["E_word"].shape), numeric,
                               rtol=1e-5, atol=1e-9)


# ------------------------------------------------------------------ regularisation


def test_regulariser_touches_only_weight_matrices():
    spec0 = make_spec(hidden=(4, 3), l2=0.0, l1=0.0)
    spec1 = make_spec(hidden=(4, 3), l2=0.3, l1=0.07)
    net0 = make_net(spec0)
    net1 = WindowNet(spec1, {k: v.copy() for k, v in net0.params.items()})
    batch = make_batch(spec0)
    loss0, g0 = net0.loss_and_grads(*batch, train=False)
    loss1, g1 = net1.loss_and_grads(*batch, train=False)
    weights = ("W1", "W2", "U")
    p = net0.params
    expected = sum(0.15 * np.sum(p[w] ** 2) + 0.07 * np.sum(np.abs(p[w])) for w in weights)
    assert loss1 - loss0 == pytest.approx(expected, rel=1e-10)
    for name in g0:
        if name in weights:
            np.testing.assert_allclose(g1[name] - g0[name],
                                       0.3 * p[name] + 0.07 * np.sign(p[name]), rtol=1e-10)
        elif isinstance(g0[name], RowGrad):
            np.testing.assert_array_equal(g1[name].values, g0[name].values)
        else:
            np.testing.assert_array_equal(g1[name], g0[name])


# ------------------------------------------------------------------ freezing


def test_frozen_embeddings_get_no_gradient_and_no_backward_work(monkeypatch):
    spec = make_spec(hidden=(4,))
    net = make_net(spec, frozen=frozenset({"E_word", "E_case"}))
    batch = make_batch(spec)

    def boom(*args, **kwargs):
        raise AssertionError("embedding_backward called for frozen tables")

    monkeypatch.setattr(layers, "embedding_backward", boom)
    _, grads = net.loss_and_grads(*batch, train=False)
    assert set(grads) == {"W1", "b1", "U", "c"}
    rows = check_gradients(net, *batch, rng=np.random.default_rng(0), max_entries=40)
    by_name = {r.name: r for r in rows}
    assert by_name["E_word"].checked == 0 and by_name["E_case"].checked == 0
    assert all(r.max_rel_error < TOL for r in rows)
    assert "frozen" in format_gradcheck_table(rows, TOL)


def test_frozen_word_embeddings_only():
    spec = make_spec(hidden=(4,))
    net = make_net(spec, frozen=frozenset({"E_word"}))
    batch = make_batch(spec)
    _, grads = net.loss_and_grads(*batch, train=False)
    assert "E_word" not in grads and isinstance(grads["E_case"], RowGrad)
    # The other gradients are unchanged by freezing.
    _, full = make_net(spec).loss_and_grads(*batch, train=False)
    for name in grads:
        a, b = grads[name], full[name]
        if isinstance(a, RowGrad):
            np.testing.assert_array_equal(a.values, b.values)
        else:
            np.testing.assert_array_equal(a, b)


def test_frozen_lower_layers_stop_backprop(monkeypatch):
    """With embeddings and layer 1 frozen, layer 2 must not compute dx (nothing below it
    learns) and layer 1's backward must not run at all."""
    spec = make_spec(hidden=(4, 3))
    frozen = frozenset({"E_word", "E_case", "W1", "b1"})
    net = make_net(spec, frozen=frozen)
    calls = []
    original = layers.affine_backward

    def spy(dz, cache, **kw):
        calls.append(kw)
        return original(dz, cache, **kw)

    monkeypatch.setattr(layers, "affine_backward", spy)
    _, grads = net.loss_and_grads(*make_batch(spec), train=False)
    assert set(grads) == {"W2", "b2", "U", "c"}
    assert calls == [{}, {"need_dx": False, "need_dW": True}]
    monkeypatch.undo()
    assert_gradcheck(net, make_batch(spec))


def test_unknown_frozen_name_is_rejected():
    spec = make_spec()
    with pytest.raises(ValueError):
        WindowNet(spec, init_params(spec, np.random.default_rng(0)), frozen=frozenset({"W9"}))


# ------------------------------------------------------------------ dtypes and outputs


@pytest.mark.parametrize("head", ["softmax", "logistic"])
@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_float32_forward_and_backward_stay_float32(head, nonlinearity):
    spec = make_spec(head=head, nonlinearity=nonlinearity, hidden=(6, 5), dropout=0.3,
                     l2=0.1, l1=0.01)
    net = make_net(spec, dtype=np.float32)
    inp, y = make_batch(spec)
    wid, cid = inp
    out, _ = net.forward(inp, train=True, rng=np.random.default_rng(0))
    assert out.dtype == np.float32
    loss, grads = net.loss_and_grads(inp, y, rng=np.random.default_rng(0))
    assert type(loss) is float
    for name, g in grads.items():
        g = g.values if isinstance(g, RowGrad) else g
        assert g.dtype == np.float32, name
    assert net.predict_proba(inp).dtype == np.float32
    assert type(net.loss(inp, y)) is float


def test_float32_and_float64_agree():
    spec = make_spec(hidden=(4,))
    batch = make_batch(spec)
    l32 = make_net(spec, dtype=np.float32).loss(*batch)
    l64 = make_net(spec, dtype=np.float64).loss(*batch)
    assert l32 == pytest.approx(l64, rel=1e-5)


def test_gradient_shapes_and_rowgrad_rows():
    spec = make_spec(hidden=(4, 3))
    net = make_net(spec)
    inp, y = make_batch(spec)
    wid, cid = inp
    _, grads = net.loss_and_grads(inp, y, train=False)
    assert list(grads) == list(spec.param_shapes())
    for name, g in grads.items():
        if name in ("E_word", "E_case"):
            ids = wid if name == "E_word" else cid
            assert isinstance(g, RowGrad)
            np.testing.assert_array_equal(g.rows, np.unique(ids))
        else:
            assert g.shape == net.params[name].shape


def test_loss_matches_loss_and_grads_in_eval_mode():
    spec = make_spec(dropout=0.5)
    net = make_net(spec)
    batch = make_batch(spec)
    assert net.loss(*batch) == net.loss_and_grads(*batch, train=False)[0]


def test_predict_and_predict_proba():
    spec = make_spec(n_out=4)
    net = make_net(spec)
    inp, _ = make_batch(spec)
    wid, cid = inp
    proba = net.predict_proba(inp)
    assert proba.shape == (5, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(net.predict(inp), proba.argmax(axis=1))

    spec = make_spec(head="logistic")
    net = make_net(spec)
    proba = net.predict_proba(inp)
    assert proba.shape == (5,)
    assert np.all((proba > 0) & (proba < 1))
    pred = net.predict(inp)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))


def test_forward_input_layout():
    """x is [E_word[w] ⊕ E_case[c]] per position, positions t-m..t+m in order: with no hidden
    layer the scores must equal U x + c for x built by hand."""
    spec = make_spec(hidden=(), window=1)
    net = make_net(spec)
    p = net.params
    inp, _ = make_batch(spec)
    wid, cid = inp
    out, _ = net.forward(inp)
    x = np.concatenate([np.concatenate([p["E_word"][wid[:, j]], p["E_case"][cid[:, j]]], axis=1)
                        for j in range(3)], axis=1)
    np.testing.assert_allclose(out, x @ p["U"].T + p["c"], rtol=1e-12)


def test_batch_shape_is_validated():
    spec = make_spec(window=2)
    net = make_net(spec)
    inp, y = make_batch(spec)
    wid, cid = inp
    with pytest.raises(ValueError):
        net.forward((wid[:, :3], cid[:, :3]))
    with pytest.raises(ValueError):
        net.forward((wid,))


def test_dropout_training_needs_rng_and_changes_output():
    spec = make_spec(dropout=0.5, hidden=(8,))
    net = make_net(spec)
    inp, y = make_batch(spec)
    wid, cid = inp
    with pytest.raises(ValueError):
        net.forward(inp, train=True)
    a, _ = net.forward(inp, train=True, rng=np.random.default_rng(0))
    b, _ = net.forward(inp, train=True, rng=np.random.default_rng(0))
    e, _ = net.forward(inp, train=False)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, e)


# ------------------------------------------------------------------ init


def test_param_names_and_shapes():
    spec = make_spec(hidden=(7, 6), window=2, n_out=5)
    params = init_params(spec, np.random.default_rng(0))
    D = 5 * (3 + 2)
    assert {k: v.shape for k, v in params.items()} == {
        "E_word": (12, 3), "E_case": (4, 2), "W1": (7, D), "b1": (7,), "W2": (6, 7), "b2": (6,),
        "U": (5, 6), "c": (5,)}
    assert list(params) == ["E_word", "E_case", "W1", "b1", "W2", "b2", "U", "c"]
    assert all(v.dtype == np.float32 for v in params.values())
    for name in ("b1", "b2", "c"):
        np.testing.assert_array_equal(params[name], 0.0)

    spec = make_spec(hidden=(), casing_dim=0, head="logistic")
    params = init_params(spec, np.random.default_rng(0))
    assert {k: v.shape for k, v in params.items()} == {"E_word": (12, 3), "u": (9,), "c": (1,)}


def test_same_seed_same_params_different_seed_different():
    spec = make_spec(hidden=(4, 3))
    a = init_params(spec, np.random.default_rng(5))
    b = init_params(spec, np.random.default_rng(5))
    c = init_params(spec, np.random.default_rng(6))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["W1"], c["W1"]) and not np.array_equal(a["E_word"], c["E_word"])


def test_xavier_bounds():
    spec = make_spec(hidden=(40,), window=2, word_dim=10, casing_dim=0, n_out=9, n_words=200)
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    for name, fan_in, fan_out in (("W1", 50, 40), ("U", 40, 9), ("E_word", 1, 10)):
        bound = np.sqrt(6 / (fan_in + fan_out))
        w = params[name]
        assert np.abs(w).max() <= bound
        # ... and the bound is actually reached (it is not some smaller range).
        assert np.abs(w).max() > 0.95 * bound
        assert w.min() < 0 < w.max()


def test_xavier_normal_std_and_uniform_scale():
    spec = make_spec(hidden=(60,), window=2, word_dim=10, casing_dim=0, init="xavier_normal")
    w = init_params(spec, np.random.default_rng(0), dtype=np.float64)["W1"]
    assert w.std() == pytest.approx(np.sqrt(2 / (50 + 60)), rel=0.05)
    spec = make_spec(hidden=(60,), window=2, init="uniform", init_scale=0.05)
    params = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    for name in ("W1", "E_word", "U"):
        assert 0.9 * 0.05 < np.abs(params[name]).max() <= 0.05


def test_pretrained_rows_kept_exactly():
    spec = make_spec(n_words=50, word_dim=4, init="uniform", init_scale=0.01)
    rng = np.random.default_rng(3)
    pretrained = rng.normal(size=(50, 4))
    mask = np.zeros(50, dtype=bool)
    mask[::3] = True
    for dtype in (np.float64, np.float32):
        params = init_params(spec, np.random.default_rng(0), dtype=dtype,
                             pretrained=pretrained, pretrained_mask=mask)
        E = params["E_word"]
        assert E.dtype == dtype
        np.testing.assert_array_equal(E[mask], pretrained[mask].astype(dtype))
        # The other rows come from the init (|.| <= 0.01), not from the pretrained matrix.
        assert np.abs(E[~mask]).max() <= 0.01
    # Which rows are pretrained does not shift the random stream of later parameters.
    plain = init_params(spec, np.random.default_rng(0), dtype=np.float64)
    np.testing.assert_array_equal(params["W1"], plain["W1"].astype(np.float32))
    with pytest.raises(ValueError):
        init_params(spec, np.random.default_rng(0), pretrained=pretrained[:, :3])


def test_spec_validation():
    with pytest.raises(NerwinError, match="nonlinearity"):
        make_spec(nonlinearity="swish")
    with pytest.raises(NerwinError, match="n_out"):
        NetSpec(tables=word_tables(5, 2), window=1, hidden=(),
                nonlinearity="tanh", head="logistic", n_out=3)
    with pytest.raises(NerwinError, match="dropout"):
        make_spec(dropout=1.0)
    assert make_spec(hidden=[3, 2]).hidden == (3, 2)
