"""Prediction with precomputed first-layer projections (nerwin.nn.project) gives the same
scores (to float rounding) and the same decoded tags as the plain forward pass."""

from __future__ import annotations

import numpy as np
import pytest

from nerwin.nn import project
from nerwin.nn.network import CharSpec, NetSpec, TableSpec, WindowNet, init_params

TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


def random_net(seed: int, head: str = "softmax", hidden=(7,), window: int = 2,
               nonlinearity: str = "tanh", n_words: int = 40, n_case: int = 5,
               chars: bool = False, decode: str = "argmax", dtype=np.float32) -> WindowNet:
    tables: tuple = (TableSpec("E_word", n_words, 4), TableSpec("E_case", n_case, 2))
    if chars:
        tables += (CharSpec(9, 3, 4, 3, 6),)
    spec = NetSpec(tables=tables, window=window, hidden=hidden, nonlinearity=nonlinearity,
                   head=head, n_out=1 if head == "logistic" else len(TAGS), init_scale=0.8,
                   tags=TAGS, decode=decode if head == "softmax" else "argmax")
    rng = np.random.default_rng(seed)
    params = init_params(spec, rng, dtype)
    for name, v in params.items():  # generic values everywhere, crf transitions included
        if name.startswith("b") or name in ("c", "trans", "start", "end"):
            v[...] = rng.normal(scale=0.5, size=v.shape)
    return WindowNet(spec, params)


def random_inputs(net: WindowNet, B: int, seed: int):
    rng = np.random.default_rng(seed)
    K = net.spec.n_positions
    out = []
    for t in net.spec.tables:
        if isinstance(t, CharSpec):
            ch = np.zeros((B, K, t.max_len), dtype=np.int16)
            n = rng.integers(1, t.max_len + 1, size=(B, K))
            for i in range(B):
                for j in range(K):
                    ch[i, j, : n[i, j]] = rng.integers(1, t.n_rows, size=n[i, j])
            out.append(ch)
        else:
            out.append(rng.integers(0, t.n_rows, size=(B, K)).astype(np.int32))
    return tuple(out)


def lengths_of(B: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lens = []
    while sum(lens) < B:
        lens.append(int(min(rng.integers(1, 9), B - sum(lens))))
    return np.array(lens)


@pytest.mark.parametrize("head,decode", [("softmax", "argmax"), ("softmax", "viterbi"),
                                         ("crf", "argmax"), ("logistic", "argmax")])
@pytest.mark.parametrize("seed", range(4))
def test_same_scores_and_tags_as_the_plain_forward_pass(head, decode, seed):
    net = random_net(seed, head=head, decode=decode,
                     nonlinearity=["tanh", "relu", "sigmoid", "hardtanh"][seed])
    B = 300
    inputs = random_inputs(net, B, seed + 10)
    lens = lengths_of(B, seed)
    proj = net.projections(B)
    assert proj is not None and proj.precomputed == (0, 1)  # both tables pay at B=300
    plain, _ = net.forward(inputs)
    fast, _ = net.forward(inputs, proj=proj)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-5)
    assert fast.dtype == plain.dtype == np.float32
    np.testing.assert_array_equal(net.predict(inputs, lens, proj), net.predict(inputs, lens))
    np.testing.assert_allclose(net.predict_proba(inputs, lens, proj),
                               net.predict_proba(inputs, lens), rtol=1e-4, atol=1e-6)


def test_float64_scores_agree_to_rounding():
    net = random_net(1, dtype=np.float64, hidden=(6, 5))
    inputs = random_inputs(net, 200, 3)
    proj = net.projections(200)
    np.testing.assert_allclose(net.forward(inputs, proj=proj)[0], net.forward(inputs)[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [0, 1, 2])
def test_chars_and_tables_left_to_the_matrix_product(window):
    # A vocabulary larger than the input is not precomputed; the char encoder never is.
    net = random_net(2, window=window, n_words=500, chars=True)
    inputs = random_inputs(net, 50, 4)
    proj = net.projections(50)
    assert proj.precomputed == (1,) and proj.rest == [0, 2]
    np.testing.assert_allclose(net.forward(inputs, proj=proj)[0], net.forward(inputs)[0],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(net.predict(inputs, None, proj), net.predict(inputs))


def test_the_rule_per_table():
    net = random_net(0, n_words=40, n_case=5, window=2)
    big = net.projections(1000)
    # casing: 5^5 = 3125 <= COMBINE_MAX_ROWS, one lookup for all positions
    assert [(ti, mode) for ti, mode, _, _ in big.lookups] == [(0, "positions"),
                                                                (1, "combined")]
    assert big.n_lookups == 5 + 1 and big.P.shape == (40 * 5 + 5 ** 5, 7)
    small = net.projections(39)  # fewer tokens than words: the word table is multiplied
    assert small.precomputed == (1,) and small.rest == [0]
    none = net.projections(4)
    assert none.precomputed == () and none.rest == [0, 1]
    inputs = random_inputs(net, 64, 1)
    plain = net.forward(inputs)[0]
    for n in (1000, 39, 4):
        np.testing.assert_allclose(net.forward(inputs, proj=net.projections(n))[0], plain,
                                   rtol=1e-5, atol=1e-5)


def test_memory_cap_sends_a_table_to_the_product(monkeypatch):
    net = random_net(0, n_words=40)
    monkeypatch.setattr(project, "MAX_BYTES", 40 * 5 * 7 * 4 - 1)
    proj = net.projections(1000)
    assert 0 in proj.rest and 0 not in proj.precomputed


def test_combined_table_order_matches_positions(monkeypatch):
    # The same model with casing combined and with casing looked up per position.
    net = random_net(5, n_case=3, window=1)
    inputs = random_inputs(net, 100, 2)
    combined = net.forward(inputs, proj=net.projections(100))[0]
    monkeypatch.setattr(project, "COMBINE_MAX_ROWS", 1)
    proj = net.projections(100)
    assert [m for _, m, _, _ in proj.lookups] == ["positions", "positions"]
    np.testing.assert_allclose(net.forward(inputs, proj=proj)[0], combined, rtol=1e-5,
                               atol=1e-5)


def test_projections_follow_the_parameters():
    net = random_net(3)
    inputs = random_inputs(net, 100, 5)
    before = net.forward(inputs, proj=net.projections(100))[0]
    net.params["W1"] *= 1.5  # what an optimiser step does: in place
    net.params["E_word"][:] += 0.25
    after = net.forward(inputs, proj=net.projections(100))[0]
    np.testing.assert_allclose(after, net.forward(inputs)[0], rtol=1e-5, atol=1e-5)
    assert not np.allclose(after, before)


def test_projections_into_a_reused_buffer_are_the_same_numbers():
    """A buffer handed back (training's workspace) is written, not reallocated, and holds
    what a fresh one holds, after the parameters change too; a small one is not used."""
    net = random_net(3)
    inputs = random_inputs(net, 100, 5)
    first = net.projections(100)
    buf = first.buffer
    again = net.projections(100, out=buf)
    assert again.buffer is buf and np.shares_memory(again.P, buf)
    np.testing.assert_array_equal(again.P, first.P)
    net.params["W1"] *= 1.5
    fresh = net.projections(100)
    reused = net.projections(100, out=buf)
    assert reused.buffer is buf
    np.testing.assert_array_equal(reused.P, fresh.P)
    np.testing.assert_array_equal(net.forward(inputs, proj=reused)[0],
                                  net.forward(inputs, proj=fresh)[0])
    small = np.empty(10, dtype=buf.dtype)
    assert net.projections(100, out=small).buffer is not small


def test_evaluate_with_a_workspace_scores_as_without():
    from nerwin.config import load_config
    from nerwin.dataset import build_lexicon, read_split
    from nerwin.model import new_model

    cfg = load_config("configs/sample.yaml", ["model.head=crf"])
    train = read_split(cfg, cfg.data.train)
    dev = read_split(cfg, cfg.data.dev)
    model = new_model(cfg, build_lexicon(cfg, train, [dev]), np.random.default_rng(0))
    data = model.encode(dev)
    want = model.evaluate(dev, data)
    ws: dict = {}
    got = model.evaluate(dev, data, workspace=ws)
    buf = ws["projections"]
    model.net.params["W1"] *= 0.5
    want2 = model.evaluate(dev, data)
    got2 = model.evaluate(dev, data, workspace=ws)
    assert ws["projections"] is buf  # reused, not reallocated
    assert got == want and got2 == want2 and want2 != want


def test_out_of_range_ids_are_refused_not_read_from_another_table():
    net = random_net(0)
    inputs = list(random_inputs(net, 10, 0))
    proj = net.projections(100)
    inputs[1] = inputs[1].copy()
    inputs[1][0, 0] = 5  # casing has 5 rows
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        net.forward(inputs, proj=proj)
    with pytest.raises(IndexError):
        net.forward(inputs)


def test_projections_are_for_prediction_only():
    net = random_net(0)
    inputs = random_inputs(net, 10, 0)
    with pytest.raises(ValueError, match="prediction only"):
        net.forward(inputs, train=True, proj=net.projections(10))
    no_hidden = random_net(0, hidden=())
    assert no_hidden.projections(100) is None


def test_model_predictions_on_the_sample_equal_the_plain_pass(tmp_path):
    from nerwin.config import load_config
    from nerwin.dataset import build_lexicon, read_split
    from nerwin.model import new_model

    cfg = load_config("configs/sample.yaml", [])
    train = read_split(cfg, cfg.data.train)
    dev = read_split(cfg, cfg.data.dev)
    model = new_model(cfg, build_lexicon(cfg, train, [dev]), np.random.default_rng(0))
    net = model.net
    data = model.encode(dev)
    fast_scores, fast_tags = model.evaluate(dev, data)
    fast_ids = model.predict_ids(data)
    labels, fast_p = model.token_probabilities(dev.sentences)
    net.projections = lambda n: None  # the plain forward pass everywhere
    plain_scores, plain_tags = model.evaluate(dev, data)
    assert fast_tags == plain_tags
    np.testing.assert_array_equal(fast_ids, model.predict_ids(data))
    assert fast_scores["f1"] == plain_scores["f1"]
    assert fast_scores["loss"] == pytest.approx(plain_scores["loss"], rel=1e-5)
    _, plain_p = model.token_probabilities(dev.sentences)
    for a, b in zip(fast_p, plain_p, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_rowgrad_sums_repeated_ids_as_one_reduceat_does_bit_for_bit():
    # RowGrad.from_ids copies the rows of ids seen once and reduces only the repeated
    # ones; the result must be the plain sort + reduceat's, bit for bit (training results
    # stay bit-identical).
    from nerwin.nn.rowgrad import RowGrad

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, V, d = int(rng.integers(1, 600)), int(rng.integers(1, 800)), int(rng.integers(1, 40))
        ids = (rng.zipf(1.2 + rng.random(), n) % V).astype(np.int32)
        dt = [np.float32, np.float64][int(rng.integers(2))]
        g = (rng.standard_normal((n, d)) * 10 ** rng.uniform(-4, 4, (n, 1))).astype(dt)
        order = np.argsort(ids, kind="stable")
        s = ids[order]
        starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
        want = np.add.reduceat(g[order], starts, axis=0)
        got = RowGrad.from_ids(ids, g)
        np.testing.assert_array_equal(got.rows, s[starts])
        assert got.values.dtype == dt and got.values.tobytes() == want.tobytes()


def test_combined_rows_is_n_to_the_k_when_small_and_quick_when_not():
    from nerwin.nn.project import COMBINE_MAX_ROWS, combined_rows

    assert combined_rows(6, 5) == 7776 and combined_rows(2, 14) == COMBINE_MAX_ROWS
    assert combined_rows(2, 15) is None and combined_rows(7, 5) is None
    assert combined_rows(1, 10**9) == 1
    assert combined_rows(6, 10**9) is None  # no 6^(10^9) is ever formed
