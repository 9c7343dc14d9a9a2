"""Id windows against a naive construction, casing classes, batches."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nerwin.vocab import casing
from nerwin.windows import batches, make_windows


def naive_windows(seqs, m, left, right):
    rows = []
    for s in seqs:
        for t in range(len(s)):
            row = []
            for j in range(t - m, t + m + 1):
                row.append(left if j < 0 else right if j >= len(s) else int(s[j]))
            rows.append(row)
    return np.array(rows, dtype=np.int32).reshape(-1, 2 * m + 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(3, 50), min_size=0, max_size=8), max_size=6),
       st.integers(0, 4))
def test_windows_equal_naive(seqs, m):
    arrays = [np.array(s, dtype=np.int32) for s in seqs]
    got = make_windows(arrays, m, 1, 2)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, naive_windows(seqs, m, 1, 2))


def test_window_never_crosses_sentence():
    w = make_windows([np.array([10, 11]), np.array([20])], 2, 1, 2)
    assert w.tolist() == [[1, 1, 10, 11, 2], [1, 10, 11, 2, 2], [1, 1, 20, 2, 2]]


def test_casing_classes():
    assert [casing(w) for w in ["paris", "EU", "Paris", "McDonald", "1996", ",", "iPhone"]] \
        == [1, 2, 3, 4, 5, 5, 4]


def test_batches_cover_every_row_once_and_are_seeded():
    a = list(batches(103, 10, np.random.default_rng(5)))
    b = list(batches(103, 10, np.random.default_rng(5)))
    assert all((x == y).all() for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(103))
    assert [len(x) for x in a] == [10] * 10 + [3]
    assert np.concatenate(list(batches(5, 2))).tolist() == [0, 1, 2, 3, 4]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=0, max_size=12), st.integers(0, 5),
       st.integers(0, 2**32 - 1))
def test_windows_built_per_batch_equal_the_full_matrix(lengths, m, seed):
    from nerwin.windows import TokenIds, WindowData

    rng = np.random.default_rng(seed)
    n = sum(lengths)
    words = rng.integers(3, 1000, size=n).astype(np.int32)
    case = rng.integers(1, 6, size=n).astype(np.int8)
    seqs = np.split(words, np.cumsum(lengths)[:-1]) if lengths else []
    cseqs = np.split(case, np.cumsum(lengths)[:-1]) if lengths else []
    full_w = make_windows(seqs, m, 1, 2)
    full_c = make_windows(cseqs, m, 0, 0, dtype=np.int8)
    data = WindowData((TokenIds(words, 1, 2), TokenIds(case, 0, 0)),
                      np.zeros(n, dtype=np.int32), np.array(lengths), window=m)
    for idx in (rng.permutation(n)[: rng.integers(0, n + 1)], np.arange(n),
                slice(rng.integers(0, n + 1), None), slice(0, 4096)):
        w, c = data.rows(idx)
        assert w.dtype == np.int32 and c.dtype == np.int8
        np.testing.assert_array_equal(w, full_w[idx].reshape(-1, 2 * m + 1))
        np.testing.assert_array_equal(c, full_c[idx].reshape(-1, 2 * m + 1))
