"""Linear-chain CRF (nerwin/nn/crf.py): forward algorithm, marginals and Viterbi against
brute-force enumeration of every tag path, gradients against central differences, batching,
IOB2 constraints, stability at huge scores and long sentences, float32."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nerwin.gradcheck import numerical_gradient, rel_error
from nerwin.nn import crf

TOL = 1e-6
EPS = 1e-5

TAGSETS = {
    3: ["O", "B-PER", "I-PER"],
    4: ["O", "B-PER", "I-PER", "B-LOC"],
    5: ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
    9: ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"],
}


# --------------------------------------------------------------------------- brute force


def path_ok(p, con) -> bool:
    if con is None:
        return True
    trans_ok, start_ok, end_ok = con
    return bool(start_ok[p[0]] and end_ok[p[-1]]
                and all(trans_ok[p[t - 1], p[t]] for t in range(1, len(p))))


def path_score(s, p, A, start, end) -> float:
    return (start[p[0]] + end[p[-1]] + sum(s[t, p[t]] for t in range(len(p)))
            + sum(A[p[t - 1], p[t]] for t in range(1, len(p))))


def brute(s, A, start, end, con=None):
    """Every allowed path of one sentence s (L, C): (paths, their scores, log Z)."""
    L, C = s.shape
    paths = [p for p in itertools.product(range(C), repeat=L) if path_ok(p, con)]
    scores = np.array([path_score(s, p, A, start, end) for p in paths])
    m = scores.max()
    return paths, scores, m + np.log(np.exp(scores - m).sum())


def brute_marginals(s, A, start, end, con=None):
    """Node marginals (L, C) and pair marginals summed over t (C, C) of one sentence."""
    L, C = s.shape
    paths, scores, logz = brute(s, A, start, end, con)
    node, pair = np.zeros((L, C)), np.zeros((C, C))
    for p, sc in zip(paths, scores):
        w = np.exp(sc - logz)
        node[np.arange(L), p] += w
        for t in range(1, L):
            pair[p[t - 1], p[t]] += w
    return node, pair


def random_problem(rng, lengths, C, scale=1.0, constrained=False):
    N = int(np.sum(lengths))
    s = rng.normal(scale=scale, size=(N, C))
    A, start, end = rng.normal(size=(C, C)), rng.normal(size=C), rng.normal(size=C)
    con = crf.allowed_transitions(TAGSETS[C]) if constrained else None
    y = random_valid_tags(rng, lengths, C, con)
    return s, np.asarray(lengths), y, A, start, end, con


def random_valid_tags(rng, lengths, C, con):
    """Gold tags: uniform per token, then each invalid I-X becomes B-X (IOB2's repair)."""
    y = rng.integers(0, C, size=int(np.sum(lengths)))
    if con is None:
        return y
    tags = TAGSETS[C]
    k = 0
    for L in lengths:
        for t in range(L):
            tag = tags[y[k + t]]
            prev = tags[y[k + t - 1]] if t else "O"
            if tag.startswith("I-") and prev[2:] != tag[2:]:
                y[k + t] = tags.index("B-" + tag[2:])
        k += L
    return y


@pytest.fixture(params=["scaled", "log"])
def path(request, monkeypatch):
    """Run a test through the scaled exp-space recursions (the default, with the log-space
    fallback) and through the log-space recursions alone."""
    monkeypatch.setattr(crf, "_SCALED", request.param == "scaled")
    return request.param


def split(x, lengths):
    return np.split(x, np.cumsum(lengths)[:-1])


# --------------------------------------------------------------------------- constraints


def test_allowed_transitions_iob2():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    trans_ok, start_ok, end_ok = crf.allowed_transitions(tags)
    assert trans_ok.dtype == bool and trans_ok.shape == (5, 5)
    forbidden = {(i, j) for i, a in enumerate(tags) for j, b in enumerate(tags)
                 if b.startswith("I-") and a[2:] != b[2:]}
    assert forbidden == {(0, 2), (0, 4), (3, 2), (4, 2), (1, 4), (2, 4)}
    for i in range(5):
        for j in range(5):
            assert trans_ok[i, j] == ((i, j) not in forbidden)
    assert start_ok.tolist() == [True, True, False, True, False]
    assert end_ok.all()


def test_allowed_transitions_refuses_non_iob2():
    with pytest.raises(ValueError, match="'E-PER' is not IOB2"):
        crf.allowed_transitions(["O", "B-PER", "E-PER"])


# --------------------------------------------------------------------------- brute force


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("C", [3, 4, 5])
@pytest.mark.parametrize("L", [1, 2, 3, 4])
def test_nll_and_marginals_equal_brute_force(L, C, constrained, path):
    rng = np.random.default_rng(100 * L + 10 * C + constrained)
    s, lengths, y, A, start, end, con = random_problem(rng, [L], C, 1.5, constrained)
    paths, scores, logz = brute(s, A, start, end, con)
    gold = path_score(s, y, A, start, end)
    loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    assert isinstance(loss, float)
    # The forward algorithm's log Z = loss + s(gold) equals the enumeration's.
    assert loss + gold == pytest.approx(logz, rel=1e-12, abs=1e-12)
    assert loss == pytest.approx(logz - gold, rel=1e-10, abs=1e-12)

    node, pair = brute_marginals(s, A, start, end, con)
    np.testing.assert_allclose(crf.crf_marginals(s, lengths, A, start, end, con), node,
                               rtol=1e-10, atol=1e-14)
    dscores, dtrans, dstart, dend = crf.crf_nll_backward(cache)
    onehot = np.eye(C)[y]
    np.testing.assert_allclose(dscores, node - onehot, rtol=1e-10, atol=1e-14)
    # dtrans = Σ_t pair marginals − gold transition counts.
    gold_pairs = np.zeros((C, C))
    for t in range(1, L):
        gold_pairs[y[t - 1], y[t]] += 1
    np.testing.assert_allclose(dtrans + gold_pairs, pair, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dstart, node[0] - onehot[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dend, node[-1] - onehot[-1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("C", [3, 4, 5])
def test_viterbi_equals_brute_force_argmax(C, constrained):
    rng = np.random.default_rng(7 + C + 10 * constrained)
    lengths = [1, 4, 2, 3, 4, 1]
    s, lengths, _, A, start, end, con = random_problem(rng, lengths, C, 2.0, constrained)
    best = crf.viterbi(s, lengths, A, start, end, con)
    assert best.dtype == np.int64 and best.shape == (int(lengths.sum()),)
    for si, yi in zip(split(s, lengths), split(best, lengths)):
        paths, scores, _ = brute(si, A, start, end, con)
        assert tuple(yi) == paths[int(np.argmax(scores))]


def test_constrained_viterbi_output_is_valid_iob2():
    # Scores and transitions that strongly favour invalid moves (O -> I-X, start -> I-X).
    rng = np.random.default_rng(3)
    tags = TAGSETS[9]
    con = crf.allowed_transitions(tags)
    lengths = rng.integers(1, 30, size=40)
    N = int(lengths.sum())
    s = rng.normal(scale=5.0, size=(N, 9))
    s[:, [2, 4, 6, 8]] += 10.0  # every I- tag looks best token by token
    A, start, end = rng.normal(size=(9, 9)), rng.normal(size=9), rng.normal(size=9)
    A[0, [2, 4, 6, 8]] += 20.0
    start[[2, 4, 6, 8]] += 20.0
    free = crf.viterbi(s, lengths, A, start, end)
    best = crf.viterbi(s, lengths, A, start, end, con)
    assert any(not path_ok(y, con) for y in split(free, lengths))  # the test can fail
    assert all(path_ok(y, con) for y in split(best, lengths))


# --------------------------------------------------------------------------- gradients


def check_gradients(s, lengths, y, A, start, end, con, eps=EPS, tol=TOL, atol=None):
    loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    assert np.isfinite(loss)
    grads = crf.crf_nll_backward(cache)
    for g, x in zip(grads, (s, A, start, end)):
        assert g.shape == x.shape and g.dtype == s.dtype and np.isfinite(g).all()
        n = numerical_gradient(
            lambda: crf.crf_nll_forward(s, lengths, y, A, start, end, con)[0], x, eps)
        if atol is None:
            # Relative tolerance, plus the quotient's rounding noise: a few ulp(J) / ε (J is
            # ~100 for L = 50, so entries with tiny gradients carry ~1e-9 of absolute noise).
            noise = 1e-10 * max(1.0, abs(loss)) * (1e-5 / eps)
            assert ((rel_error(g, n) < tol) | (np.abs(g - n) < noise)).all()
            assert rel_error(g, n)[np.abs(g) > 1e-2].max(initial=0) < tol
        else:
            np.testing.assert_allclose(g, n, rtol=0, atol=atol)
    return grads


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("lengths", [[1], [3, 1, 5, 2], [50]])
def test_gradients_match_central_differences(lengths, constrained, path):
    rng = np.random.default_rng(len(lengths) + sum(lengths) + constrained)
    C = 5
    problem = random_problem(rng, lengths, C, 1.0, constrained)
    _, dtrans, dstart, dend = check_gradients(*problem)
    if constrained:
        trans_ok, start_ok, _ = problem[-1]
        # Forbidden entries have probability exactly 0 and are never gold: gradient exactly 0.
        assert (dtrans[~trans_ok] == 0).all() and (dstart[~start_ok] == 0).all()
        if sum(lengths) > 1:
            assert (dtrans[trans_ok] != 0).any()


@pytest.mark.parametrize("constrained", [False, True])
def test_huge_scores_stay_finite_and_correct(constrained):
    rng = np.random.default_rng(11)
    lengths = [1, 4, 50, 3]
    s, lengths, y, A, start, end, con = random_problem(rng, lengths, 5, 1e3, constrained)
    A *= 1e3
    start *= 1e3
    end *= 1e3
    # The loss is ~1e5, so its rounding error is ~1e-11; with ε = 1e-3 a central difference
    # carries ~1e-8 of it, far below the gradients (which are O(1) here: the marginals are
    # nearly 0 or 1).
    with np.errstate(over="raise", invalid="raise"):  # no overflow, no inf - inf
        check_gradients(s, lengths, y, A, start, end, con, eps=1e-3, atol=1e-6)
        marg = crf.crf_marginals(s, lengths, A, start, end, con)
        crf.viterbi(s, lengths, A, start, end, con)
    # α + β − log Z cancels numbers of size ~1e5: 1e-11 of rounding is expected.
    np.testing.assert_allclose(marg.sum(axis=1), 1.0, rtol=1e-9)
    for si, yi in zip(split(s[:5], lengths[:2]), split(y[:5], lengths[:2])):
        _, _, logz = brute(si, A, start, end, con)
        loss, _ = crf.crf_nll_forward(si, np.array([len(si)]), yi, A, start, end, con)
        assert loss == pytest.approx(logz - path_score(si, yi, A, start, end), rel=1e-12,
                                     abs=1e-9)


def test_long_sentence_log_partition_is_stable():
    # L = 200 with scores ~N(0, 30): Z = e^(thousands) overflows any non-log computation.
    rng = np.random.default_rng(5)
    s, lengths, y, A, start, end, con = random_problem(rng, [200], 9, 30.0, True)
    loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    assert np.isfinite(loss) and loss > 0
    assert cache[8] is not None  # the scaled path (the only one with β here) held
    grads = crf.crf_nll_backward(cache)
    assert all(np.isfinite(g).all() for g in grads)
    crf._SCALED = False
    try:
        loss_log, cache_log = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
        grads_log = crf.crf_nll_backward(cache_log)
    finally:
        crf._SCALED = True
    assert loss == pytest.approx(loss_log, rel=1e-13)
    for g, g_log in zip(grads, grads_log):
        np.testing.assert_allclose(g, g_log, rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- batching, dtypes


@pytest.mark.parametrize("constrained", [False, True])
def test_batch_equals_sentences_one_at_a_time(constrained, path):
    rng = np.random.default_rng(2)
    lengths = [7, 1, 12, 3, 3, 1, 20, 5]
    s, lengths, y, A, start, end, con = random_problem(rng, lengths, 9, 2.0, constrained)
    loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    ds, dA, dst, den = crf.crf_nll_backward(cache)
    total = 0.0
    parts_ds, sum_dA, sum_dst, sum_den = [], 0.0, 0.0, 0.0
    for si, yi in zip(split(s, lengths), split(y, lengths)):
        one = np.array([len(si)])
        li, ci = crf.crf_nll_forward(si, one, yi, A, start, end, con)
        g = crf.crf_nll_backward(ci)
        total += li
        parts_ds.append(g[0])
        sum_dA, sum_dst, sum_den = sum_dA + g[1], sum_dst + g[2], sum_den + g[3]
    assert loss == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(ds, np.concatenate(parts_ds), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dA, sum_dA, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dst, sum_dst, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(den, sum_den, rtol=1e-12, atol=1e-13)
    best = crf.viterbi(s, lengths, A, start, end, con)
    one_by_one = [crf.viterbi(si, np.array([len(si)]), A, start, end, con)
                  for si in split(s, lengths)]
    np.testing.assert_array_equal(best, np.concatenate(one_by_one))
    marg = crf.crf_marginals(s, lengths, A, start, end, con)
    one_by_one = [crf.crf_marginals(si, np.array([len(si)]), A, start, end, con)
                  for si in split(s, lengths)]
    # to the bit: a sentence's marginals depend on its own scores alone
    np.testing.assert_array_equal(marg, np.concatenate(one_by_one))


@pytest.mark.parametrize("constrained", [False, True])
def test_marginals_of_a_sentence_do_not_depend_on_the_others(constrained):
    """crf_marginals: each sentence's rows are the same bits alone, in any batch, in any
    order, with sentences that underflow the scaled recursions beside it (which then go
    to log space alone), and they agree with the log-space recursions."""
    rng = np.random.default_rng(5)
    C = 9
    A, start, end = rng.normal(size=(C, C)), rng.normal(size=C), rng.normal(size=C)
    con = crf.allowed_transitions(TAGSETS[9]) if constrained else None
    lengths = rng.integers(1, 40, size=30)
    # scales 400 and 2,000 make the scaled path underflow for those sentences only
    scale = rng.choice([0.1, 1.0, 10.0, 400.0, 2000.0], size=30)
    s = np.concatenate([rng.normal(size=(n, C)) * k for n, k in zip(lengths, scale)])
    lay = crf._layout(lengths, len(s))
    Ae, st, en, safe, ok = crf._effective(A, start, end, con, s.dtype)
    with np.errstate(all="ignore"):
        node_bad = crf._node_marginals_rows(s, Ae, st, en, lay, None if ok is None else ok[1])
    assert node_bad is not None and 0 < node_bad[1].sum() < 30  # a mixed batch
    marg = crf.crf_marginals(s, lengths, A, start, end, con)
    parts = split(s, lengths)
    alone = np.concatenate([crf.crf_marginals(p, np.array([len(p)]), A, start, end, con)
                            for p in parts])
    np.testing.assert_array_equal(marg, alone)
    order = rng.permutation(30)[:17]  # a subset, shuffled
    sub = crf.crf_marginals(np.concatenate([parts[k] for k in order]), lengths[order],
                            A, start, end, con)
    np.testing.assert_array_equal(sub, np.concatenate([split(marg, lengths)[k]
                                                       for k in order]))
    # the scaled recursions agree with the log-space ones where they hold
    crf._SCALED = False
    try:
        log_marg = crf.crf_marginals(s, lengths, A, start, end, con)
    finally:
        crf._SCALED = True
    np.testing.assert_allclose(marg, log_marg, rtol=0, atol=1e-9)
    np.testing.assert_allclose(marg.sum(axis=1), 1.0, rtol=1e-9)


def test_float32_in_float32_out_and_agrees_with_float64():
    rng = np.random.default_rng(9)
    lengths = [14, 2, 30, 1, 9]
    s, lengths, y, A, start, end, con = random_problem(rng, lengths, 9, 3.0, True)
    l64, c64 = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    s32 = s.astype(np.float32)
    A32, st32, en32 = (x.astype(np.float32) for x in (A, start, end))
    l32, c32 = crf.crf_nll_forward(s32, lengths, y, A32, st32, en32, con)
    assert l32 == pytest.approx(l64, rel=1e-5)
    # Computed in float64 inside: the only differences are the inputs' rounding to float32
    # (~1e-7 relative) and the outputs'.
    for g32, g64 in zip(crf.crf_nll_backward(c32), crf.crf_nll_backward(c64)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, atol=5e-6)
    assert crf.crf_marginals(s32, lengths, A32, st32, en32, con).dtype == np.float32
    np.testing.assert_array_equal(crf.viterbi(s32, lengths, A32, st32, en32, con),
                                  crf.viterbi(s, lengths, A, start, end, con))


def test_scaled_recursions_are_used_and_fall_back_when_they_underflow():
    rng = np.random.default_rng(4)
    for scale, expect_scaled in ((3.0, True), (1e3, False)):
        s, lengths, y, A, start, end, con = random_problem(rng, [9, 4, 17], 9, scale, True)
        Ae, st_, en_, safe, ok = crf._effective(A, start, end, con, s.dtype)
        lay = crf._layout(lengths, len(s))
        with np.errstate(all="ignore"):
            ab = crf._forward_backward_scaled(s, Ae, st_, en_, lay, ok[1])
        assert not safe and (ab is not None) == expect_scaled
        if expect_scaled:
            alpha, beta = ab
            E = crf._pad(s, lay)
            buf = np.empty((3, 9, 9))
            np.testing.assert_allclose(alpha, crf._forward_log(E, Ae, st_, lay, False, buf),
                                       rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(beta, crf._backward_log(E, Ae, en_, lay, False, buf),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("constrained", [True, False])
def test_fused_scaled_recursions_match_log_space_for_ragged_batches(constrained):
    # The scaled path steps the forward and the reversed-time backward together over whole
    # rows; sentences of every length around the rescaling period (8), in mixed order, and
    # of length 1 check that no row reads another's or its own padding.
    rng = np.random.default_rng(11)
    lengths = [1, 8, 17, 7, 9, 1, 16, 24, 3, 8, 2]
    s, lengths, y, A, start, end, con = random_problem(rng, lengths, 9, 3.0, constrained)
    Ae, st_, en_, safe, ok = crf._effective(A, start, end, con, s.dtype)
    lay = crf._layout(lengths, len(s))
    with np.errstate(all="ignore"):
        ab = crf._forward_backward_scaled(s, Ae, st_, en_, lay, None if ok is None else ok[1])
    assert ab is not None
    E = crf._pad(s, lay)
    buf = np.empty((len(lengths), 9, 9))
    with np.errstate(divide="ignore"):
        alpha_log = crf._forward_log(E, Ae, st_, lay, False, buf)
        beta_log = crf._backward_log(E, Ae, en_, lay, False, buf)
    for got, want in zip(ab, (alpha_log, beta_log)):
        fin = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), fin)  # −inf exactly where forbidden
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-12, atol=1e-12)


def test_confident_float32_scores_keep_the_scaled_path():
    # A trained network's tag scores are tens of nats apart; in float32 the scaled recursion
    # would underflow there, which is why it runs in float64.
    rng = np.random.default_rng(6)
    s, lengths, y, A, start, end, con = random_problem(rng, [25, 3, 14], 9, 3.0, True)
    s[np.arange(len(y)), y] += 60.0
    s32 = s.astype(np.float32)
    _, cache = crf.crf_nll_forward(s32, lengths, y, A, start, end, con)
    assert cache[8] is not None  # the β that only the scaled recursions return early
    assert all(g.dtype == np.float32 and np.isfinite(g).all()
               for g in crf.crf_nll_backward(cache))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scaled_and_log_paths_agree(dtype, monkeypatch):
    rng = np.random.default_rng(8)
    s, lengths, y, A, start, end, con = random_problem(rng, [14, 2, 30, 1, 9, 40], 9, 4.0,
                                                       True)
    s, A, start, end = (x.astype(dtype) for x in (s, A, start, end))
    out = {}
    for scaled in (True, False):
        monkeypatch.setattr(crf, "_SCALED", scaled)
        loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
        out[scaled] = (loss, *crf.crf_nll_backward(cache))
    tol = 1e-11 if dtype == np.float64 else 1e-6  # float32: the outputs' rounding
    assert out[True][0] == pytest.approx(out[False][0], rel=tol)
    for a, b in zip(out[True][1:], out[False][1:]):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=0, atol=tol)


# --------------------------------------------------------------------------- bad input


def test_forbidden_gold_path_names_the_sentence():
    con = crf.allowed_transitions(TAGSETS[3])
    s = np.zeros((6, 3))
    lengths = np.array([2, 1, 3])
    y = np.array([1, 2, 0, 0, 0, 2])  # sentence 2: O -> I-PER
    args = (np.zeros((3, 3)), np.zeros(3), np.zeros(3), con)
    with pytest.raises(ValueError, match="sentence 2 uses a forbidden transition"):
        crf.crf_nll_forward(s, lengths, y, *args)
    y = np.array([1, 2, 2, 0, 0, 0])  # sentence 1 starts with I-PER
    with pytest.raises(ValueError, match="sentence 1 uses"):
        crf.crf_nll_forward(s, lengths, y, *args)
    crf.crf_nll_forward(s, lengths, y, *args[:3])  # no constraints: any path is allowed


@pytest.mark.parametrize("lengths, match", [
    ([2, 2], "sum to 4 but there are 5 tokens"),
    ([5, 0], "sentence 1 has length 0"),
    ([], "at least one sentence"),
])
def test_bad_lengths_are_refused(lengths, match):
    with pytest.raises(ValueError, match=match):
        crf.crf_nll_forward(np.zeros((5, 3)), np.array(lengths, dtype=int),
                            np.zeros(5, dtype=int), np.zeros((3, 3)), np.zeros(3), np.zeros(3))


# --------------------------------------------------------------------------- properties


@given(lengths=st.lists(st.integers(1, 3), min_size=1, max_size=4),
       C=st.sampled_from([3, 4, 5]), constrained=st.booleans(), seed=st.integers(0, 2**31),
       scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_property_batch_matches_brute_force(lengths, C, constrained, seed, scale):
    rng = np.random.default_rng(seed)
    s, lengths, y, A, start, end, con = random_problem(rng, lengths, C, scale, constrained)
    loss, cache = crf.crf_nll_forward(s, lengths, y, A, start, end, con)
    ds, dA, _, _ = crf.crf_nll_backward(cache)
    best = crf.viterbi(s, lengths, A, start, end, con)
    expected_loss, expected_pair = 0.0, np.zeros((C, C))
    nodes = []
    for si, yi, bi in zip(split(s, lengths), split(y, lengths), split(best, lengths)):
        paths, scores, logz = brute(si, A, start, end, con)
        expected_loss += logz - path_score(si, yi, A, start, end)
        node, pair = brute_marginals(si, A, start, end, con)
        nodes.append(node)
        expected_pair += pair
        for t in range(1, len(yi)):
            expected_pair[yi[t - 1], yi[t]] -= 1
        assert path_score(si, bi, A, start, end) == pytest.approx(scores.max(), rel=1e-12,
                                                                  abs=1e-12)
        assert path_ok(bi, con)
    assert loss == pytest.approx(expected_loss, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(ds, np.concatenate(nodes) - np.eye(C)[y], atol=1e-10)
    np.testing.assert_allclose(dA, expected_pair, atol=1e-10)


@pytest.mark.parametrize("forbid", [False, True])
def test_factored_pair_sum_equals_the_term_by_term_sum(forbid):
    """Σ_t exp(α[t-1, i] + A[i, j] + fb[t, j]) as one product equals the C² exps it replaces,
    with −inf (forbidden) entries of A giving exactly 0; and an overflow is reported as None,
    so the caller sums term by term."""
    rng = np.random.default_rng(3)
    T, C = 40, 5
    al = rng.normal(scale=8.0, size=(T, C))
    fb = rng.normal(scale=8.0, size=(T, C)) - 30.0
    A = rng.normal(size=(C, C))
    if forbid:
        A[0, 1] = A[3, 2] = -np.inf
    want = np.exp(al[:, :, None] + A + fb[:, None, :]).sum(axis=0)
    got = crf._pair_sum_factored(al, A, fb)
    assert got is not None
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    if forbid:
        assert got[0, 1] == 0.0 and got[3, 2] == 0.0
    # The row maxima on a forbidden pair 800 nats apart: e^(a+b) overflows.
    al2, fb2, A2 = al.copy(), fb.copy(), A.copy()
    A2[0, 1] = -np.inf
    al2[0, 0], fb2[0, 1] = 500.0, 300.0
    assert crf._pair_sum_factored(al2, A2, fb2) is None


def _viterbi_two_passes(scores, lengths, trans, start, end, constraints=None):
    """viterbi as it was written before it read the maximum at the argmax: max and argmax
    each a pass over the step's (n, i, j) sums."""
    N, C = scores.shape
    lay = crf._layout(lengths, N)
    A, st, en, _, _ = crf._effective(trans, start, end, constraints, scores.dtype)
    E = crf._pad(scores, lay)
    S, Lmax = lay.S, lay.Lmax
    delta = np.empty_like(E)
    back = np.empty((Lmax, S, C), dtype=np.intp)
    delta[0] = st + E[0]
    for t in range(1, Lmax):
        n = lay.n_active[t]
        tmp = delta[t - 1, :n, :, None] + A
        back[t, :n] = tmp.argmax(axis=1)
        delta[t, :n] = tmp.max(axis=1) + E[t, :n]
    rows = np.arange(S)
    path = np.empty((Lmax, S), dtype=np.intp)
    path[lay.last_sorted, rows] = np.argmax(delta[lay.last_sorted, rows] + en, axis=1)
    for t in range(Lmax - 1, 0, -1):
        n = lay.n_active[t]
        path[t - 1, :n] = back[t, rows[:n], path[t, :n]]
    return path[lay.pos, lay.row].astype(np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("scan", [1, 10**9])  # argmax by comparisons, or numpy's
def test_viterbi_reads_the_maximum_at_the_argmax(dtype, constrained, ties, scan, monkeypatch):
    """The maximum of each step is read at its argmax: the same paths as two passes, ties
    (integer scores: many) and forbidden moves (−inf) included, whichever way a step finds
    its argmax (_VITERBI_SCAN), NaN scores too."""
    monkeypatch.setattr(crf, "_VITERBI_SCAN", scan)
    rng = np.random.default_rng(11)
    lengths = rng.integers(1, 40, size=60)
    s, lengths, _, A, start, end, con = random_problem(rng, list(lengths), 5, 2.0,
                                                         constrained)
    if ties:
        s, A, start, end = (np.round(x) for x in (s, A, start, end))
    s, A, start, end = (x.astype(dtype) for x in (s, A, start, end))
    np.testing.assert_array_equal(crf.viterbi(s, lengths, A, start, end, con),
                                  _viterbi_two_passes(s, lengths, A, start, end, con))
    s = s.copy()
    s[rng.random(s.shape) < 0.01] = np.nan  # a broken model's scores: argmax's rule for NaN
    np.testing.assert_array_equal(crf.viterbi(s, lengths, A, start, end, con),
                                  _viterbi_two_passes(s, lengths, A, start, end, con))
