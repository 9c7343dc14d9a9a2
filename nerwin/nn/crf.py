"""Linear-chain CRF output layer: Collobert et al. (2011)'s sentence-level log-likelihood.

A batch holds S sentences laid end to end: per-token tag scores ``scores`` (N, C), sentence
``lengths`` (S,) with sum N, gold ``tags`` (N,). The parameters are plain arrays:

    trans (C, C)   A[i, j] = score of moving from tag i to tag j
    start (C,)     score of a sentence starting with tag j
    end   (C,)     score of a sentence ending with tag i

The score of a tag path y_0 … y_{L-1} of one sentence is

    s(y) = start[y_0] + Σ_t f[t, y_t] + Σ_{t≥1} A[y_{t-1}, y_t] + end[y_{L-1}]

and the loss is −log p(y | sentence) = log Σ_{y'} e^{s(y')} − s(y), summed over sentences
(derivation, node by node: docs/derivations.md §9).

Layout. Sentences are sorted by length, longest first, and padded to ``(Lmax, S, C)`` (time
major): at position t the sentences that are still running are then the first n_t rows, so
each step of the forward, backward and Viterbi recursions works on a contiguous view
``[t, :n_t]`` with no mask. The only Python loop is over positions t = 0 … Lmax−1; everything
per step is vectorised over sentences and tags, and computed in the dtype of ``scores``.

Constraints. ``allowed_transitions`` gives IOB2's allowed moves; forbidden ones get the score
−inf (probability exactly 0). The log-sum-exp subtracts the max over the summed index, so it
never overflows; a max of −inf (a tag no allowed path reaches) is floored to the dtype's
lowest finite number first, so −inf − max stays −inf and never becomes NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

Constraints = tuple[np.ndarray, np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- constraints


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IOB2 constraints for tag strings like 'O', 'B-PER', 'I-PER'.

    Returns (trans_ok (C, C) bool: tag i -> tag j allowed; start_ok (C,) bool; end_ok (C,)
    bool). Forbidden: O -> I-X, B-X/I-X -> I-Y (Y != X), start -> I-X. Every tag may end a
    sentence. A tag that is neither 'O' nor 'B-X'/'I-X' raises ValueError.
    """
    C = len(tags)
    inside: list[str | None] = []  # the type X of I-X, else None
    kind: list[str | None] = []  # the type X of B-X or I-X, None for O
    for tag in tags:
        if tag == "O":
            inside.append(None)
            kind.append(None)
        elif len(tag) > 2 and tag[:2] in ("B-", "I-"):
            kind.append(tag[2:])
            inside.append(tag[2:] if tag[0] == "I" else None)
        else:
            raise ValueError(f"tag {tag!r} is not IOB2: expected 'O', 'B-TYPE' or 'I-TYPE'")
    trans_ok = np.ones((C, C), dtype=bool)
    for j, x in enumerate(inside):
        if x is not None:
            # I-X continues an entity of type X: only B-X and I-X may precede it.
            trans_ok[:, j] = [k == x for k in kind]
    start_ok = np.array([x is None for x in inside], dtype=bool)
    end_ok = np.ones(C, dtype=bool)
    return trans_ok, start_ok, end_ok


# --------------------------------------------------------------------------- layout


class _Layout(NamedTuple):
    S: int
    Lmax: int
    lengths: np.ndarray  # (S,) in the caller's order
    rank: np.ndarray  # (S,) row of sentence s in the sorted (longest first) padded layout
    n_active: list[int]  # n_active[t] = number of sentences with length > t
    pos: np.ndarray  # (N,) position of each token inside its sentence
    row: np.ndarray  # (N,) padded row of each token's sentence (rank of its sentence)
    first: np.ndarray  # (S,) flat index of each sentence's first token
    last: np.ndarray  # (S,) flat index of each sentence's last token
    last_sorted: np.ndarray  # (S,) last position (length - 1) of padded row r


def _layout(lengths: Any, N: int) -> _Layout:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be a 1-d int array, got {lengths.dtype} {lengths.shape}")
    if lengths.size == 0:
        raise ValueError("lengths is empty: a batch needs at least one sentence")
    if lengths.min() < 1:
        s = int(np.argmax(lengths < 1))
        raise ValueError(f"sentence {s} has length {lengths[s]}: every length must be >= 1")
    if int(lengths.sum()) != N:
        raise ValueError(f"lengths sum to {int(lengths.sum())} but there are {N} tokens")
    lengths = lengths.astype(np.intp)
    S = lengths.size
    order = np.argsort(-lengths, kind="stable")
    rank = np.empty(S, dtype=np.intp)
    rank[order] = np.arange(S)
    Lmax = int(lengths[order[0]])
    counts = np.bincount(lengths, minlength=Lmax + 1)
    n_active = (S - np.cumsum(counts)[:Lmax]).tolist()
    ends = np.cumsum(lengths)
    first = ends - lengths
    pos = np.arange(N) - np.repeat(first, lengths)
    row = np.repeat(rank, lengths)
    return _Layout(S, Lmax, lengths, rank, n_active, pos, row, first, ends - 1,
                   lengths[order] - 1)


def _pad(x: np.ndarray, lay: _Layout) -> np.ndarray:
    """(N, C) flat -> (Lmax, S, C) padded, zeros after each sentence's end."""
    out = np.zeros((lay.Lmax, lay.S, x.shape[1]), dtype=x.dtype)
    out[lay.pos, lay.row] = x
    return out


def _effective(trans: np.ndarray, start: np.ndarray, end: np.ndarray,
               constraints: Constraints | None, dtype: np.dtype,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Parameters in ``dtype`` with forbidden entries set to −inf.

    Also returns ``safe``: True when some tag may be unreachable (so a column max can be −inf
    and needs the floor). With IOB2's constraints every tag is reachable at every t ≥ 1 and can
    reach the end, so the floor is skipped.
    """
    C = trans.shape[0] if np.ndim(trans) == 2 else -1
    if np.shape(trans) != (C, C) or np.shape(start) != (C,) or np.shape(end) != (C,):
        raise ValueError(f"trans, start, end must have shapes (C, C), (C,), (C,); got "
                         f"{np.shape(trans)}, {np.shape(start)}, {np.shape(end)}")
    A = np.asarray(trans, dtype=dtype)
    st = np.asarray(start, dtype=dtype)
    en = np.asarray(end, dtype=dtype)
    if constraints is None:
        return A, st, en, False
    trans_ok, start_ok, end_ok = (np.asarray(c, dtype=bool) for c in constraints)
    if trans_ok.shape != (C, C) or start_ok.shape != (C,) or end_ok.shape != (C,):
        raise ValueError(f"constraints must have shapes ({C}, {C}), ({C},), ({C},); got "
                         f"{trans_ok.shape}, {start_ok.shape}, {end_ok.shape}")
    ninf = dtype.type(-np.inf)
    A = np.where(trans_ok, A, ninf)
    st = np.where(start_ok, st, ninf)
    en = np.where(end_ok, en, ninf)
    reach1 = (start_ok[:, None] & trans_ok).any(axis=0)  # tags reachable at t = 1
    safe = not (reach1.all() and trans_ok.any(axis=0).all() and trans_ok.any(axis=1).all()
                and end_ok.all())
    return A, st, en, safe


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"scores must be float32 or float64, got {scores.dtype}")
    return scores


# --------------------------------------------------------------------------- recursions


def _forward(E: np.ndarray, A: np.ndarray, start: np.ndarray, lay: _Layout, safe: bool,
             buf: np.ndarray) -> np.ndarray:
    """α (Lmax, S, C): α[0] = start + E[0];  α[t, j] = E[t, j] + logsumexp_i(α[t-1, i] + A[i, j]).

    Rows past a sentence's end are left unset (never read)."""
    alpha = np.empty_like(E)
    np.add(start, E[0], out=alpha[0])
    floor = np.finfo(E.dtype).min
    for t in range(1, lay.Lmax):
        n = lay.n_active[t]
        tmp = buf[:n]
        np.add(alpha[t - 1, :n, :, None], A, out=tmp)  # (n, i, j)
        m = tmp.max(axis=1)  # (n, j)
        if safe:
            np.maximum(m, floor, out=m)
        tmp -= m[:, None, :]
        np.exp(tmp, out=tmp)
        a = alpha[t, :n]
        np.sum(tmp, axis=1, out=a)
        np.log(a, out=a)
        a += m
        a += E[t, :n]
    return alpha


def _backward(E: np.ndarray, A: np.ndarray, end: np.ndarray, lay: _Layout, safe: bool,
              buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """β (Lmax, S, C): β[L-1] = end;  β[t-1, i] = logsumexp_j(A[i, j] + E[t, j] + β[t, j]).

    Also returns Eβ = E + β (the log-weight of "being at tag j at t and finishing"), which
    the pair marginals reuse. Rows past a sentence's end are left unset (never read)."""
    beta = np.empty_like(E)
    eb = np.empty_like(E)
    rows = np.arange(lay.S)
    beta[lay.last_sorted, rows] = end
    floor = np.finfo(E.dtype).min
    for t in range(lay.Lmax - 1, 0, -1):
        n = lay.n_active[t]
        u = eb[t, :n]
        np.add(E[t, :n], beta[t, :n], out=u)
        tmp = buf[:n]
        np.add(A, u[:, None, :], out=tmp)  # (n, i, j)
        m = tmp.max(axis=2)  # (n, i)
        if safe:
            np.maximum(m, floor, out=m)
        tmp -= m[:, :, None]
        np.exp(tmp, out=tmp)
        b = beta[t - 1, :n]
        np.sum(tmp, axis=2, out=b)
        np.log(b, out=b)
        b += m
    np.add(E[0], beta[0], out=eb[0])
    return beta, eb


def _log_partition(alpha: np.ndarray, end: np.ndarray, lay: _Layout) -> np.ndarray:
    """log Z per padded row (S,): logsumexp_i(α[L-1, i] + end[i]), stable."""
    last = alpha[lay.last_sorted, np.arange(lay.S)] + end  # (S, C)
    m = last.max(axis=1)
    m = np.maximum(m, np.finfo(alpha.dtype).min)
    return m + np.log(np.exp(last - m[:, None]).sum(axis=1))


# --------------------------------------------------------------------------- public API


def crf_nll_forward(scores: np.ndarray, lengths: np.ndarray, tags: np.ndarray,
                    trans: np.ndarray, start: np.ndarray, end: np.ndarray,
                    constraints: Constraints | None = None) -> tuple[float, Any]:
    """Summed negative log-likelihood of the gold tag paths.

    scores (N, C) per-token tag scores of S sentences laid end to end, lengths (S,) int
    (sum = N, every length >= 1), tags (N,) int gold tags; trans (C, C), start (C,), end (C,).
    constraints: None or the triple from allowed_transitions (forbidden transitions get
    probability exactly 0). Returns (loss, cache): loss = Σ_sentences [log Z − s(gold path)]
    (a SUM, not a mean: the caller divides by its token count), as a Python float.
    Raises ValueError naming the sentence if a gold path uses a forbidden transition.
    """
    with np.errstate(divide="ignore"):
        return _nll_forward(scores, lengths, tags, trans, start, end, constraints)


def _nll_forward(scores, lengths, tags, trans, start, end, constraints):
    scores = _check_scores(scores)
    N, C = scores.shape
    dtype = scores.dtype
    lay = _layout(lengths, N)
    y = np.asarray(tags)
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"tags must be an int array of shape ({N},), got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= C:
        raise ValueError(f"tags must be in [0, {C}), got [{y.min()}, {y.max()}]")
    A, st, en, safe = _effective(trans, start, end, constraints, dtype)
    inner = lay.pos > 0  # tokens with a predecessor in their sentence
    y_prev, y_in = y[:-1][inner[1:]], y[inner]
    if constraints is not None:
        trans_ok, start_ok, end_ok = (np.asarray(c, dtype=bool) for c in constraints)
        bad_tok = np.zeros(N, dtype=bool)
        bad_tok[inner] = ~trans_ok[y_prev, y_in]
        bad_tok[lay.first] |= ~start_ok[y[lay.first]]
        bad_tok[lay.last] |= ~end_ok[y[lay.last]]
        if bad_tok.any():
            k = int(np.argmax(bad_tok))
            s = int(np.searchsorted(lay.last, k))
            raise ValueError(f"gold tag path of sentence {s} uses a forbidden transition "
                             f"(token {k - int(lay.first[s])} of the sentence, tag {y[k]})")

    E = _pad(scores, lay)
    buf = np.empty((lay.S, C, C), dtype=dtype)
    alpha = _forward(E, A, st, lay, safe, buf)
    logz = _log_partition(alpha, en, lay)  # (S,) in padded-row order

    # Gold path score per token: its tag score, plus the move into it (start or A), plus
    # end at the last token; summed per sentence.
    gold = scores[np.arange(N), y].copy()
    gold[inner] += A[y_prev, y_in]
    gold[lay.first] += st[y[lay.first]]
    gold[lay.last] += en[y[lay.last]]
    gold_s = np.add.reduceat(gold, lay.first)
    loss = float(np.sum(logz[lay.rank] - gold_s, dtype=np.float64))
    cache = (scores, lay, y, E, A, st, en, safe, buf, alpha, logz)
    return loss, cache


def _marginals(E, A, en, lay, safe, buf, alpha, logz, pairs: bool):
    """Node marginals (N, C) and, with ``pairs``, pair marginals summed over all positions (C, C).

    p(y_t = j) = exp(α[t, j] + β[t, j] − log Z)
    p(y_{t-1} = i, y_t = j) = exp(α[t-1, i] + A[i, j] + E[t, j] + β[t, j] − log Z)
    Forbidden entries are exp(−inf) = 0 exactly.
    """
    beta, eb = _backward(E, A, en, lay, safe, buf)
    lz = logz[lay.row][:, None]  # (N, 1)
    a_f = alpha[lay.pos, lay.row]  # (N, C)
    node = a_f + beta[lay.pos, lay.row]
    node -= lz
    np.exp(node, out=node)
    if not pairs:
        return node, None
    inner = lay.pos > 0
    eb_in = eb[lay.pos[inner], lay.row[inner]]  # (N-S, C)
    eb_in -= lz[inner]
    xi = a_f[:-1][inner[1:]][:, :, None] + A  # (N-S, i, j)
    xi += eb_in[:, None, :]
    np.exp(xi, out=xi)
    return node, xi.sum(axis=0)


def crf_nll_backward(cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the summed loss: dscores (N, C), dtrans (C, C), dstart (C,), dend (C,).

    δ = node marginals − one-hot gold at the scores; pair marginals summed over positions −
    gold transition counts at trans; first-token marginals − gold first tags at start;
    last-token marginals − gold last tags at end. Forbidden entries are exactly 0. Same dtype
    as scores.
    """
    scores, lay, y, E, A, st, en, safe, buf, alpha, logz = cache
    N, C = scores.shape
    with np.errstate(divide="ignore"):
        node, pair = _marginals(E, A, en, lay, safe, buf, alpha, logz, pairs=True)
    inner = lay.pos > 0
    dscores = node  # a fresh array: the one-hot is subtracted in place
    dstart = node[lay.first].sum(axis=0)
    dend = node[lay.last].sum(axis=0)
    dstart -= np.bincount(y[lay.first], minlength=C).astype(dscores.dtype)
    dend -= np.bincount(y[lay.last], minlength=C).astype(dscores.dtype)
    gold_pairs = np.bincount(y[:-1][inner[1:]] * C + y[inner], minlength=C * C)
    dtrans = pair - gold_pairs.reshape(C, C).astype(dscores.dtype)
    dscores[np.arange(N), y] -= 1
    return dscores, dtrans, dstart, dend


def crf_marginals(scores: np.ndarray, lengths: np.ndarray, trans: np.ndarray,
                  start: np.ndarray, end: np.ndarray,
                  constraints: Constraints | None = None) -> np.ndarray:
    """(N, C) node marginals p(y_t = c | sentence) (for confidence scores); rows sum to 1."""
    scores = _check_scores(scores)
    N, C = scores.shape
    lay = _layout(lengths, N)
    A, st, en, safe = _effective(trans, start, end, constraints, scores.dtype)
    E = _pad(scores, lay)
    buf = np.empty((lay.S, C, C), dtype=scores.dtype)
    with np.errstate(divide="ignore"):
        alpha = _forward(E, A, st, lay, safe, buf)
        logz = _log_partition(alpha, en, lay)
        node, _ = _marginals(E, A, en, lay, safe, buf, alpha, logz, pairs=False)
    return node


def viterbi(scores: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray,
            end: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
    """(N,) int64 best tag path per sentence (the argmax of the path score), batched.

    δ[0] = start + E[0];  δ[t, j] = E[t, j] + max_i(δ[t-1, i] + A[i, j]) with the argmax i
    kept as a back-pointer; the last tag is argmax_i(δ[L-1, i] + end[i]), and the path is read
    back through the pointers. Ties go to the lowest tag index.
    """
    scores = _check_scores(scores)
    N, C = scores.shape
    lay = _layout(lengths, N)
    A, st, en, _ = _effective(trans, start, end, constraints, scores.dtype)
    E = _pad(scores, lay)
    S, Lmax = lay.S, lay.Lmax
    delta = np.empty_like(E)
    back = np.empty((Lmax, S, C), dtype=np.intp)
    buf = np.empty((S, C, C), dtype=scores.dtype)
    np.add(st, E[0], out=delta[0])
    for t in range(1, Lmax):
        n = lay.n_active[t]
        tmp = buf[:n]
        np.add(delta[t - 1, :n, :, None], A, out=tmp)  # (n, i, j)
        bp = back[t, :n]
        np.argmax(tmp, axis=1, out=bp)
        d = delta[t, :n]
        np.max(tmp, axis=1, out=d)
        d += E[t, :n]
    rows = np.arange(S)
    path = np.empty((Lmax, S), dtype=np.intp)
    path[lay.last_sorted, rows] = np.argmax(delta[lay.last_sorted, rows] + en, axis=1)
    for t in range(Lmax - 1, 0, -1):
        n = lay.n_active[t]
        path[t - 1, :n] = back[t, rows[:n], path[t, :n]]
    return path[lay.pos, lay.row].astype(np.int64)
