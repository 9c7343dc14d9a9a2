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
each step of the log-space and Viterbi recursions works on a contiguous view ``[t, :n_t]``
with no mask. The scaled (fast) path runs the backward in reversed time (every sentence's
last token at τ = 0), where the same first n_τ rows are running, stacks it with the forward
and steps both at once over whole rows. The only Python loop is over positions
t = 0 … Lmax−1; everything per step is vectorised over sentences and tags.

Precision. The loss, marginals and gradients are computed in float64 whatever the dtype of
``scores``, and returned in the dtype of ``scores``. At these sizes (C ≈ 9, tens of sentences)
float64 costs the same time as float32 (numpy's per-call overhead dominates), and it matters
twice: the scaled recursion below underflows in float32 as soon as a trained network is
confident (tag scores ~30 nats apart), which would send most batches to the slower log-space
path; and a marginal exp(α + β − log Z) cancels numbers of size |α| ~ 100, which float32 only
resolves to ~1e-5. Viterbi (max and +, no cancellation) runs in the dtype of ``scores``.

Constraints. ``allowed_transitions`` gives IOB2's allowed moves (``allowed_transitions_iobes``
IOBES's, where a sentence may also not end inside an entity); forbidden ones get the score
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


def allowed_transitions_iobes(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IOBES constraints for tag strings like 'O', 'B-PER', 'I-PER', 'E-PER', 'S-PER'.

    B-X opens an entity and I-X continues it; only I-X or E-X (same X) may follow either.
    E-X and S-X close an entity, as O does: after them (and at the start) come O, B-Y or S-Y.
    A sentence may end only on O, E-X or S-X. Same (trans_ok, start_ok, end_ok) triple as
    :func:`allowed_transitions`; a tag that is not 'O' or [BIES]-TYPE raises ValueError.
    """
    prefix: list[str] = []
    types: list[str | None] = []
    for tag in tags:
        if tag == "O":
            prefix.append("O")
            types.append(None)
        elif len(tag) > 2 and tag[1] == "-" and tag[0] in "BIES":
            prefix.append(tag[0])
            types.append(tag[2:])
        else:
            raise ValueError(f"tag {tag!r} is not IOBES: expected 'O' or B-, I-, E-, S-TYPE")
    opens = np.array([p in "BI" for p in prefix], dtype=bool)  # inside an open entity
    inner = np.array([p in "IE" for p in prefix], dtype=bool)  # continues an open entity
    same = np.array([[a == b for b in types] for a in types], dtype=bool)
    # An open entity (after B-X, I-X) must continue with I-X or E-X of its own type; a closed
    # one (after O, E-X, S-X) must not be continued.
    trans_ok = np.where(opens[:, None], inner[None, :] & same, ~inner[None, :])
    start_ok = ~inner
    end_ok = ~opens
    return trans_ok, start_ok, end_ok


def transitions_for(tags: Sequence[str], scheme: str
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The allowed-transition triple of ``tags`` in ``scheme`` (iob2 or iobes)."""
    if scheme == "iobes":
        return allowed_transitions_iobes(tags)
    if scheme == "iob2":
        return allowed_transitions(tags)
    raise ValueError(f"no transition constraints for the scheme {scheme!r}; expected iob2 "
                     f"or iobes")


# --------------------------------------------------------------------------- layout


class _Layout(NamedTuple):
    S: int
    Lmax: int
    lengths: np.ndarray  # (S,) in the caller's order
    rank: np.ndarray  # (S,) row of sentence s in the sorted (longest first) padded layout
    n_active: list[int]  # n_active[t] = number of sentences with length > t
    pos: np.ndarray  # (N,) position of each token inside its sentence
    rpos: np.ndarray  # (N,) position counted from its sentence's end (L - 1 - pos)
    row: np.ndarray  # (N,) padded row of each token's sentence (rank of its sentence)
    first: np.ndarray  # (S,) flat index of each sentence's first token
    last: np.ndarray  # (S,) flat index of each sentence's last token
    last_sorted: np.ndarray  # (S,) last position (length - 1) of padded row r
    inner: np.ndarray  # (N_inner,) flat indices of tokens with a predecessor (position > 0)
    nonlast: np.ndarray  # (N - S,) flat indices of tokens with a successor


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
    rpos = np.repeat(lengths - 1, lengths) - pos
    row = np.repeat(rank, lengths)
    inner = np.flatnonzero(pos)
    return _Layout(S, Lmax, lengths, rank, n_active, pos, rpos, row, first, ends - 1,
                   lengths[order] - 1, inner, inner - 1)


def _pad(x: np.ndarray, lay: _Layout) -> np.ndarray:
    """(N, C) flat -> (Lmax, S, C) padded, zeros after each sentence's end."""
    out = np.zeros((lay.Lmax, lay.S, x.shape[1]), dtype=x.dtype)
    out[lay.pos, lay.row] = x
    return out


_SAFE_CACHE: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray, bool]] = {}


def _constraint_masks(constraints: Constraints, C: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """The three bool masks, checked, and ``safe`` (see _effective); memoised by content."""
    trans_ok, start_ok, end_ok = (np.asarray(c, dtype=bool) for c in constraints)
    if trans_ok.shape != (C, C) or start_ok.shape != (C,) or end_ok.shape != (C,):
        raise ValueError(f"constraints must have shapes ({C}, {C}), ({C},), ({C},); got "
                         f"{trans_ok.shape}, {start_ok.shape}, {end_ok.shape}")
    key = trans_ok.tobytes() + start_ok.tobytes() + end_ok.tobytes()
    hit = _SAFE_CACHE.get(key)
    if hit is None:
        reach1 = (start_ok[:, None] & trans_ok).any(axis=0)  # tags reachable at t = 1
        safe = not (reach1.all() and trans_ok.any(axis=0).all()
                    and trans_ok.any(axis=1).all() and end_ok.all())
        if len(_SAFE_CACHE) > 64:
            _SAFE_CACHE.clear()
        hit = _SAFE_CACHE[key] = (trans_ok, start_ok, end_ok, safe)
    return hit


def _effective(trans: np.ndarray, start: np.ndarray, end: np.ndarray,
               constraints: Constraints | None, dtype: np.dtype):
    """Parameters in ``dtype`` with forbidden entries set to −inf: (A, start, end, safe, ok).

    ``safe`` is True when some tag may be unreachable from the start at some t >= 1 or unable
    to reach the end, so that a column max can be −inf and needs the floor (and the scaled
    recursion's check would not hold). With IOB2's constraints every tag is reachable at every
    t >= 1 and can reach the end, so safe is False. ``ok`` is the bool mask triple or None.
    """
    C = trans.shape[0] if np.ndim(trans) == 2 else -1
    if np.shape(trans) != (C, C) or np.shape(start) != (C,) or np.shape(end) != (C,):
        raise ValueError(f"trans, start, end must have shapes (C, C), (C,), (C,); got "
                         f"{np.shape(trans)}, {np.shape(start)}, {np.shape(end)}")
    A = np.asarray(trans, dtype=dtype)
    st = np.asarray(start, dtype=dtype)
    en = np.asarray(end, dtype=dtype)
    if constraints is None:
        return A, st, en, False, None
    trans_ok, start_ok, end_ok, safe = _constraint_masks(constraints, C)
    ninf = dtype.type(-np.inf)
    A = np.where(trans_ok, A, ninf)
    st = np.where(start_ok, st, ninf)
    en = np.where(end_ok, en, ninf)
    return A, st, en, safe, (trans_ok, start_ok, end_ok)


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must have shape (N, C), got {scores.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        raise ValueError(f"scores must be float32 or float64, got {scores.dtype}")
    return scores


# --------------------------------------------------------------------------- recursions
#
# Two ways to run the forward and backward recursions, with the same result:
#
# * scaled (exp space, Rabiner's scaling): p_t = (p_{t-1} @ K) ⊙ e_t with K = exp(A − max A)
#   (0 where forbidden) and e_t = exp(f_t − max f_t), normalised every _RESCALE_EVERY steps;
#   log α is recovered as log p_t + Σ log(normalisers and shifts). One small matmul and one
#   product per step: a quarter of the numpy calls of the log-space step. It is exact as long
#   as nothing underflows; the result is checked afterwards (every reachable entry of
#   p_{t-1} @ K at least C·tiny/eps, and of p_t at least C·tiny), and if the check fails, the
#   call is redone in log space. Tag scores ~700 nats apart (e.g. scores of ±1e3) do that.
# * log space: α[t, j] = f[t, j] + logsumexp_i(α[t−1, i] + A[i, j]) with the max over i
#   subtracted per column j: stable for any scores.
#
# Both return α and β at the tokens, flat (N, C), and log Z per sentence.

_SCALED = True  # tests switch this off to check the log-space path on its own
# The scaled recursions divide by the running sum every this many steps (a division per step
# would cost a third of the loop). Between two rescalings P and B change by at most C^8 and
# shrink by e^-(a few nats) per step: far inside float64's range; the check catches the rest.
_RESCALE_EVERY = 8


def _forward_log(E: np.ndarray, A: np.ndarray, start: np.ndarray, lay: _Layout, safe: bool,
                 buf: np.ndarray) -> np.ndarray:
    """α (N, C): α[0] = start + f[0];  α[t, j] = f[t, j] + logsumexp_i(α[t-1, i] + A[i, j])."""
    alpha = np.empty_like(E)
    np.add(start, E[0], out=alpha[0])
    floor = np.finfo(E.dtype).min
    for t in range(1, lay.Lmax):
        n = lay.n_active[t]
        tmp = buf[:n]
        np.add(alpha[t - 1, :n, :, None], A, out=tmp)  # (n, i, j)
        m = tmp.max(axis=1)  # (n, j)
        if safe:  # a column of −inf: keep −inf − m = −inf, never −inf − (−inf) = NaN
            np.maximum(m, floor, out=m)
        tmp -= m[:, None, :]
        np.exp(tmp, out=tmp)
        a = alpha[t, :n]
        np.sum(tmp, axis=1, out=a)
        np.log(a, out=a)
        a += m
        a += E[t, :n]
    return alpha[lay.pos, lay.row]


def _backward_log(E: np.ndarray, A: np.ndarray, end: np.ndarray, lay: _Layout, safe: bool,
                  buf: np.ndarray) -> np.ndarray:
    """β (N, C): β[L-1] = end;  β[t-1, i] = logsumexp_j(A[i, j] + f[t, j] + β[t, j])."""
    beta = np.empty_like(E)
    beta[lay.last_sorted, np.arange(lay.S)] = end
    floor = np.finfo(E.dtype).min
    u_all = np.empty((lay.S, E.shape[2]), dtype=E.dtype)
    for t in range(lay.Lmax - 1, 0, -1):
        n = lay.n_active[t]
        u = u_all[:n]
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
    return beta[lay.pos, lay.row]


def _thresholds(dtype: np.dtype, C: int) -> tuple[float, float]:
    """(C·tiny, C·tiny/eps): below the first a value may be subnormal after normalising;
    below the second, terms that underflowed inside a matmul (each < tiny) could be more than
    eps of the sum."""
    fi = np.finfo(dtype)
    return C * float(fi.tiny), C * float(fi.tiny) / float(fi.eps)


def _exp_scores(scores: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """e = exp(f − max_j f) padded twice, (Lmax, 2, S, C): [:, 0] in time order (position t
    at row t), [:, 1] in reversed time (position L−1−τ at row τ); and max_j f padded the same
    way, (Lmax, 2, S). Zeros (e) after each sentence's end."""
    mE = scores.max(axis=1)
    C = scores.shape[1]
    em = np.empty((scores.shape[0], C + 1), dtype=scores.dtype)  # [e | max f]: 2 scatters, not 4
    np.subtract(scores, mE[:, None], out=em[:, :C])
    np.exp(em[:, :C], out=em[:, :C])
    em[:, C] = mE
    XXm = np.zeros((lay.Lmax, 2, lay.S, C + 1), dtype=scores.dtype)
    XXm[lay.pos, 0, lay.row] = em
    XXm[lay.rpos, 1, lay.row] = em
    return XXm[..., :C], XXm[..., C]


def _forward_backward_scaled(scores: np.ndarray, A: np.ndarray, start: np.ndarray,
                             end: np.ndarray, lay: _Layout, first_ok: np.ndarray | None
                             ) -> tuple[np.ndarray, np.ndarray] | None:
    """(α, β) (N, C) each, by scaled exp-space recursions run together; None if something
    underflowed.

    Forward, with K = exp(A − max A) and e_t = exp(f_t − max f_t): P_t holds α_t up to a
    factor: P_0 = exp(start − max start) ⊙ e_0;  P_t = (P_{t-1} @ K / c_{t-1}) ⊙ e_t, c_{t-1} =
    Σ_j P_{t-1}[j] at every _RESCALE_EVERY-th step and 1 at the others, so
    log α_t = log P_t + Σ_{τ≤t} (log c_{τ-1} + max f_τ + max A) (max start at τ = 0).

    Backward, in reversed time τ = L−1−t (every sentence's last token at τ = 0, so the
    sentences still running at step τ are the same first n_τ rows as in the forward):
    B̃_0 = exp(end − max end);  B̃_τ = (U_{τ-1} @ Kᵀ) / σ_τ with U_τ = ẽ_τ ⊙ B̃_τ (ẽ: e in
    reversed time) and σ_τ = Σ_j U_{τ-1}[j] at every _RESCALE_EVERY-th step, 1 at the others:
    log β = log B̃_τ + max end + Σ_{1≤τ'≤τ} (log σ_τ' + max A + max f at τ'−1).

    Both are "state @ matrix, then ⊙ e", so one batched matmul of the stacked states
    [P_{t-1}; U_{t-1}] (2, n, C) with [[K | 1]; [Kᵀ | 1]] (2, C, C+1) and one product make a
    step of both: Q[t] = [P_{t-1} @ K | c_{t-1}] and [B̃_t | σ_t].
    """
    dtype = scores.dtype
    C = scores.shape[1]
    S, Lmax, every = lay.S, lay.Lmax, _RESCALE_EVERY
    small, big = _thresholds(dtype, C)
    mA, mS, mEnd = A.max(), start.max(), end.max()
    KK = np.ones((2, C, C + 1), dtype=dtype)
    np.exp(A - mA, out=KK[0, :, :C])  # exp(−inf) = 0 at forbidden moves
    KK[1, :, :C] = KK[0, :, :C].T
    XX, mm = _exp_scores(scores, lay)
    Y = np.empty_like(XX)  # [P_t; U_τ]
    Q = np.ones((Lmax, 2, S, C + 1), dtype=dtype)  # [Q_t; (B̃_τ | σ_τ)]
    kend = np.exp(end - mEnd)
    if not kend.min() >= small:
        return None
    np.multiply(np.exp(start - mS), XX[0, 0], out=Y[0, 0])
    Q[0, 1, :, :C] = kend
    np.multiply(kend, XX[0, 1], out=Y[0, 1])
    # All S rows at every step, not only the n_t still running: a finished sentence's row
    # is multiplied by e = 0 (and at a rescaling divided 0/0 = NaN), but stays in its own
    # row and after its own tokens, which is all that is read. Whole rows need no slicing,
    # and the per-step views are made once: the loop is two numpy calls a step.
    Yv, Qv, Qcv, Xv = list(Y), list(Q), list(Q[..., :C]), list(XX)
    matmul, multiply, divide = np.matmul, np.multiply, np.divide
    for t in range(1, Lmax):
        q, qc = Qv[t], Qcv[t]
        matmul(Yv[t - 1], KK, out=q)
        if t % every == 0:
            divide(qc, q[..., C:], out=qc)
        multiply(qc, Xv[t], out=Yv[t])
    norm = Q[:, :, :, C]  # c_{t-1} / σ_t where step t rescaled, else 1 (a view: Q changes)
    norm[np.arange(Lmax) % every != 0] = 1
    # The checks, on the tokens only. Every tag is reachable at t >= 1 (safe is False here).
    # `not >=` so that a NaN (0/0 after underflow) fails them too. At t = 0 the forbidden
    # starts are exactly 0 by construction.
    P0 = Y[0, 0] if first_ok is None else Y[0, 0][:, first_ok]
    if not P0.min() >= small:
        return None
    pos, rpos, row = lay.pos, lay.rpos, lay.row
    Pf = Y[pos, 0, row]
    if lay.inner.size:
        if not Pf[lay.inner].min() >= small:
            return None
        Qi = Q[pos[lay.inner], 0, row[lay.inner]]
        if not (Qi[:, :C] * Qi[:, C:]).min() >= big:  # P_{t-1} @ K before any division
            return None
        Bn = Q[rpos[lay.nonlast], 1, row[lay.nonlast]]
        if not (Bn[:, :C] * Bn[:, C:]).min() >= big:  # Kᵀ U before any division
            return None
    # Per step log increments, summed over time: inc[:, 0] forward, inc[:, 1] backward.
    inc = np.log(norm)
    inc += mA
    inc[:, 0] += mm[:, 0]
    inc[1:, 1] += mm[:-1, 1]
    inc[0, 0] = mm[0, 0] + mS
    inc[0, 1] = mEnd
    np.cumsum(inc, axis=0, out=inc)
    alpha = np.log(Pf)
    alpha += inc[pos, 0, row][:, None]
    beta = np.log(Q[rpos, 1, row, :C])
    beta += inc[rpos, 1, row][:, None]
    return alpha, beta


def _alpha_beta(scores, A, st, en, lay, safe, first_ok):
    """(α (N, C), β (N, C) or None: the log-space path computes β only when needed)."""
    if _SCALED and not safe:
        with np.errstate(all="ignore"):  # underflow, or 0/0 after it: the checks reject both
            ab = _forward_backward_scaled(scores, A, st, en, lay, first_ok)
        if ab is not None:
            return ab
    C = scores.shape[1]
    return _forward_log(_pad(scores, lay), A, st, lay, safe,
                        np.empty((lay.S, C, C), dtype=scores.dtype)), None


def _node_marginals_rows(scores: np.ndarray, A: np.ndarray, start: np.ndarray,
                         end: np.ndarray, lay: _Layout, first_ok: np.ndarray | None
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """Node marginals (N, C) by scaled recursions in exp space, and bad (S,) bool (caller's
    order): the sentences whose underflow check failed (their rows are not valid); None if
    the parameters alone fail it. Each sentence's numbers depend on its own scores alone.

    With K = exp(A − max A) (0 where forbidden) and e_t = exp(f_t − max f_t):

        P_0 = exp(start − max start) ⊙ e_0,   P_t = (P_{t-1} K) ⊙ e_t / c_t
        B_{L-1} = exp(end − max end),         B_t = K (e_{t+1} ⊙ B_{t+1}) / d_t

    P_t ∝ α_t and B_t ∝ β_t (one factor per position and sentence), so

        p(y_t = j) = P_t[j] B_t[j] / Σ_j' P_t[j'] B_t[j']

    needs no logarithm and no record of the factors: c_t, d_t are the new state's sum at
    every _RESCALE_EVERY-th position t (else 1), and only keep the states inside float64.

    Each sentence's numbers depend on its own scores alone, to the bit, whichever other
    sentences share the call: a step's sum over the previous tag is a product and a sum
    over that axis (numpy adds the terms in index order, element by element) instead of a
    matrix product, whose rows BLAS may round differently depending on how many there are;
    the rescaling depends on the position t only; and the checks are made per sentence, so
    that a sentence that underflows sends only itself to the log space. The states are
    tags-major and packed: position t of the n_t sentences still running at t (sorted
    longest first: the first n_t rows) are n_t consecutive columns, so numpy's loops run
    along the sentences, each step is one slice, and the work and memory are the tokens',
    not sentences × the longest.

    The checks (`not >=`, so that a NaN fails them too): every state entry at least
    C·tiny, and before a division at least C·tiny/eps (terms that underflowed inside a
    sum, each < tiny, are then below eps of it); Σ_j P_t[j] B_t[j] at least C·tiny/eps.
    """
    dtype = scores.dtype
    N, C = scores.shape
    S, Lmax, every, n_active = lay.S, lay.Lmax, _RESCALE_EVERY, lay.n_active
    small, big = _thresholds(dtype, C)
    kst = np.exp(start - start.max())
    kend = np.exp(end - end.max())
    if not kend.min() >= small:
        return None
    K = np.exp(A - A.max())
    KF = K[:, :, None]  # (i, j, 1): Σ_i P[i] K[i, j]
    KB = K.T[:, :, None]  # (j, i, 1): Σ_j K[i, j] U[j]
    # Packed, tags-major: position t of the n_t running sentences is columns off[t] + row.
    off = np.zeros(Lmax + 1, dtype=np.intp)
    np.cumsum(n_active, out=off[1:])
    col = off[lay.pos] + lay.row  # (N,) each token's column
    e = scores.T.copy()  # (C, N), a copy: the max over tags runs along the tokens
    e -= e.max(axis=0)
    np.exp(e, out=e)
    XX = np.empty((C, N), dtype=dtype)
    XX[:, col] = e
    P = np.empty_like(XX)
    B = np.empty_like(XX)
    prod = np.empty((C, C, S), dtype=dtype)
    low = np.full(S, np.inf, dtype=dtype)  # each sentence's smallest sum before a division
    multiply, reduce, minimum, divide = np.multiply, np.add.reduce, np.minimum, np.divide
    multiply(kst[:, None], XX[:, :S], out=P[:, :S])
    for t in range(1, Lmax):
        n, a, b0 = n_active[t], off[t], off[t - 1]
        q = P[:, a:a + n]
        multiply(P[:, None, b0:b0 + n], KF, out=prod[:, :, :n])
        reduce(prod[:, :, :n], axis=0, out=q)  # Σ_i, i = 0, 1, … in turn
        lo = low[:n]
        minimum(lo, q.min(axis=0), out=lo)
        if t % every == 0:
            divide(q, _sum_tags(q), out=q)
        multiply(q, XX[:, a:a + n], out=q)
    U = np.empty((C, S), dtype=dtype)
    for t in range(Lmax - 1, -1, -1):
        n, a = n_active[t], off[t]
        m = n_active[t + 1] if t + 1 < Lmax else 0  # rows whose sentence goes on after t
        B[:, a + m:a + n] = kend[:, None]  # the sentences that end at t
        if not m:
            continue
        u = U[:, :m]
        b = B[:, a:a + m]
        a1 = off[t + 1]
        multiply(XX[:, a1:a1 + m], B[:, a1:a1 + m], out=u)
        multiply(u[:, None, :], KB, out=prod[:, :, :m])
        reduce(prod[:, :, :m], axis=0, out=b)  # Σ_j, j = 0, 1, … in turn
        lo = low[:m]
        minimum(lo, b.min(axis=0), out=lo)
        if t % every == 0:
            divide(b, _sum_tags(b), out=b)
    G = P * B  # (C, N) in the packed order
    z = _sum_tags(G)
    G /= z
    node = G[:, col].T  # (N, C)
    P0 = P[:, :S].T if first_ok is None else P[first_ok, :S].T
    bad = ~(P0.min(axis=1) >= small)
    bad |= ~(low >= big)
    Pmin = P.min(axis=0)
    np.minimum(Pmin, B.min(axis=0), out=Pmin)
    bad_tok = ~(Pmin[col] >= small)
    bad_tok[lay.first] = False  # P_0 is checked above, at the allowed first tags only
    bad_tok |= ~(z[col] >= big)
    bad[lay.row[bad_tok]] = True
    return node, bad[lay.rank]


def _sum_tags(x: np.ndarray) -> np.ndarray:
    """Σ_i x[i] over the first axis, added in index order for every element. (A numpy sum
    over an axis adds in index order only while another axis runs inside it; over a single
    row it sums pairwise, so one sentence alone would round differently from a batch.)"""
    out = x[0].copy()
    for i in range(1, len(x)):
        out += x[i]
    return out


def _node_marginals(scores, A, st, en, lay, safe, first_ok):
    """Node marginals (N, C), each sentence's rows a function of its own scores alone:
    :func:`_node_marginals_rows`, and the log-space recursions (whose steps reduce over an
    axis in index order, row by row) for the sentences it rejects."""
    C = scores.shape[1]
    bad = np.ones(lay.S, dtype=bool)
    if _SCALED and not safe:
        with np.errstate(all="ignore"):  # underflow, or 0/0 after it: the checks reject both
            nb = _node_marginals_rows(scores, A, st, en, lay, first_ok)
        if nb is not None:
            node, bad = nb
            if not bad.any():
                return node
    if bad.all():
        rows, sub, sub_lay = None, scores, lay
    else:
        rows = np.flatnonzero(np.repeat(bad, lay.lengths))  # the tokens of those sentences
        sub, sub_lay = scores[rows], _layout(lay.lengths[bad], rows.size)
    buf = np.empty((sub_lay.S, C, C), dtype=scores.dtype)
    alpha = _forward_log(_pad(sub, sub_lay), A, st, sub_lay, safe, buf)
    beta = _backward_log(_pad(sub, sub_lay), A, en, sub_lay, safe, buf)
    logz = _log_partition(alpha, en, sub_lay)
    sub_node, _ = _marginals(sub, A, en, sub_lay, safe, alpha, logz, beta, pairs=False)
    if rows is None:
        return sub_node
    node[rows] = sub_node
    return node


def _beta_log(scores, A, en, lay, safe):
    C = scores.shape[1]
    return _backward_log(_pad(scores, lay), A, en, lay, safe,
                         np.empty((lay.S, C, C), dtype=scores.dtype))


def _log_partition(alpha: np.ndarray, end: np.ndarray, lay: _Layout) -> np.ndarray:
    """log Z per sentence (S,): logsumexp_i(α[L-1, i] + end[i]), stable."""
    last = alpha[lay.last] + end  # (S, C)
    m = np.maximum(last.max(axis=1), np.finfo(alpha.dtype).min)
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
    with np.errstate(divide="ignore", under="ignore"):
        return _nll_forward(scores, lengths, tags, trans, start, end, constraints)


def _nll_forward(scores, lengths, tags, trans, start, end, constraints):
    out_dtype = _check_scores(scores).dtype
    scores = np.asarray(scores, dtype=np.float64)  # see "Precision" in the module docstring
    N, C = scores.shape
    lay = _layout(lengths, N)
    y = np.asarray(tags)
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"tags must be an int array of shape ({N},), got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= C:
        raise ValueError(f"tags must be in [0, {C}), got [{y.min()}, {y.max()}]")
    A, st, en, safe, ok = _effective(trans, start, end, constraints, scores.dtype)
    y_first, y_last = y[lay.first], y[lay.last]
    y_prev, y_in = y[lay.nonlast], y[lay.inner]
    # Gold path score per token: its tag score, plus the move into it (start or A), plus
    # end at the last token; summed per sentence. A forbidden move is −inf in A, st or en,
    # so a sentence whose sum is not finite is the only one that needs the check below.
    gold = scores[np.arange(N), y]  # fancy indexing: a new array
    gold[lay.inner] += A[y_prev, y_in]
    gold[lay.first] += st[y_first]
    gold[lay.last] += en[y_last]
    gold_s = np.add.reduceat(gold, lay.first)
    if ok is not None and not np.isfinite(gold_s).all():
        trans_ok, start_ok, end_ok = ok
        bad = np.zeros(N, dtype=bool)
        bad[lay.inner] = ~trans_ok[y_prev, y_in]
        bad[lay.first] |= ~start_ok[y_first]
        bad[lay.last] |= ~end_ok[y_last]
        if bad.any():
            k = int(np.argmax(bad))
            s = int(np.searchsorted(lay.last, k))
            raise ValueError(f"gold tag path of sentence {s} uses a forbidden transition "
                             f"(token {k - int(lay.first[s])} of the sentence, tag {y[k]})")

    alpha, beta = _alpha_beta(scores, A, st, en, lay, safe, None if ok is None else ok[1])
    logz = _log_partition(alpha, en, lay)  # (S,)
    loss = float(np.sum(logz - gold_s, dtype=np.float64))
    cache = (scores, lay, y, A, en, safe, alpha, logz, beta, out_dtype)
    return loss, cache


def _marginals(scores, A, en, lay, safe, alpha, logz, beta, pairs: bool):
    """Node marginals (N, C) and, with ``pairs``, pair marginals summed over all positions (C, C).

    p(y_t = j) = exp(α[t, j] + β[t, j] − log Z)
    p(y_{t-1} = i, y_t = j) = exp(α[t-1, i] + A[i, j] + f[t, j] + β[t, j] − log Z)
    Forbidden entries are exp(−inf) = 0 exactly.
    """
    if beta is None:  # the log-space path
        beta = _beta_log(scores, A, en, lay, safe)
    lz = np.repeat(logz, lay.lengths)[:, None]  # (N, 1)
    node = alpha + beta
    node -= lz
    np.exp(node, out=node)
    if not pairs:
        return node, None
    fb = scores[lay.inner] + beta[lay.inner]  # f[t, j] + β[t, j]
    fb -= lz[lay.inner]
    al = alpha[lay.nonlast]  # α[t-1, i]
    pair = _pair_sum_factored(al, A, fb)
    if pair is None:  # one term per (t, i, j), in log space: always finite
        xi = al[:, :, None] + A  # (N - S, i, j)
        xi += fb[:, None, :]
        np.exp(xi, out=xi)
        pair = xi.sum(axis=0)
    return node, pair


def _pair_sum_factored(al: np.ndarray, A: np.ndarray, fb: np.ndarray) -> np.ndarray | None:
    """Σ_t exp(al[t, i] + A[i, j] + fb[t, j]) (C, C) as one product, or None if it overflowed.

    The summand factors: exp(A[i, j]) · exp(al[t, i] − a_t) · exp(fb[t, j] − b_t) · e^(a_t+b_t)
    with a_t, b_t the row maxima, so the sum over t is exp(A) ⊙ (L̃ᵀ R) with
    L̃[t, i] = exp(al[t, i] − a_t + a_t + b_t) and R[t, j] = exp(fb[t, j] − b_t) in [0, 1]:
    2·C exps a position and a (C × T)(T × C) product instead of C² exps and sums.
    e^(a_t+b_t) is at least p_max / e^(max A) (some pair has probability p_max >= 1/C²), so it
    cannot underflow; it can overflow when the row maxima sit on a forbidden pair (−inf in
    A) far apart, which the finiteness check catches (the caller then sums term by term).
    """
    with np.errstate(over="ignore", invalid="ignore"):  # the check below catches both
        a = al.max(axis=1)
        b = fb.max(axis=1)
        L = al - a[:, None]
        np.exp(L, out=L)
        L *= np.exp(a + b)[:, None]
        R = fb - b[:, None]
        np.exp(R, out=R)
        pair = L.T @ R
        pair *= np.exp(A)  # exp(−inf) = 0 exactly at forbidden moves
    return pair if np.isfinite(pair).all() else None


def crf_nll_backward(cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of the summed loss: dscores (N, C), dtrans (C, C), dstart (C,), dend (C,).

    δ = node marginals − one-hot gold at the scores; pair marginals summed over positions −
    gold transition counts at trans; first-token marginals − gold first tags at start;
    last-token marginals − gold last tags at end. Forbidden entries are exactly 0. Same dtype
    as scores.
    """
    scores, lay, y, A, en, safe, alpha, logz, beta, out_dtype = cache
    N, C = scores.shape
    with np.errstate(divide="ignore", under="ignore"):
        node, pair = _marginals(scores, A, en, lay, safe, alpha, logz, beta, pairs=True)
    dscores = node  # a fresh array: the one-hot is subtracted in place
    dstart = node[lay.first].sum(axis=0)
    dend = node[lay.last].sum(axis=0)
    dstart -= np.bincount(y[lay.first], minlength=C)
    dend -= np.bincount(y[lay.last], minlength=C)
    gold_pairs = np.bincount(y[lay.nonlast] * C + y[lay.inner], minlength=C * C)
    dtrans = pair - gold_pairs.reshape(C, C)
    dscores[np.arange(N), y] -= 1
    return tuple(g.astype(out_dtype, copy=False) for g in (dscores, dtrans, dstart, dend))


def crf_marginals(scores: np.ndarray, lengths: np.ndarray, trans: np.ndarray,
                  start: np.ndarray, end: np.ndarray,
                  constraints: Constraints | None = None) -> np.ndarray:
    """(N, C) node marginals p(y_t = c | sentence) (for confidence scores); rows sum to 1.

    Same dtype as scores. Each sentence's marginals are a function of its own scores alone,
    to the bit, whichever other sentences share the call (:func:`_node_marginals`): a
    tagger may group sentences as it likes, or skip some, and read the same numbers."""
    out_dtype = _check_scores(scores).dtype
    scores = np.asarray(scores, dtype=np.float64)
    lay = _layout(lengths, scores.shape[0])
    A, st, en, safe, ok = _effective(trans, start, end, constraints, scores.dtype)
    with np.errstate(divide="ignore", under="ignore"):
        node = _node_marginals(scores, A, st, en, lay, safe, None if ok is None else ok[1])
    return node.astype(out_dtype, copy=False)


# From this many sentences running at a position on, a Viterbi step finds its argmax by
# comparing with the maximum (C passes along the sentences) instead of numpy's argmax over
# the leading axis; the same back-pointers (a test runs both).
_VITERBI_SCAN = 256


def viterbi(scores: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray,
            end: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
    """(N,) int64 best tag path per sentence (the argmax of the path score), batched.

    δ[0] = start + f[0];  δ[t, j] = f[t, j] + max_i(δ[t-1, i] + A[i, j]) with the argmax i
    kept as a back-pointer; the last tag is argmax_i(δ[L-1, i] + end[i]), and the path is read
    back through the pointers. Ties go to the lowest tag index.

    Packed and tags-major as :func:`_node_marginals_rows`: position t of the n_t sentences
    still running is n_t consecutive columns of (C, N) arrays, so each step is one slice,
    numpy's loops run along the sentences, and memory is linear in the tokens whatever the
    lengths. (Sums and maxima of each sentence's own numbers: the same tags whichever
    sentences share the call.)
    """
    scores = _check_scores(scores)
    N, C = scores.shape
    lay = _layout(lengths, N)
    A, st, en, _, _ = _effective(trans, start, end, constraints, scores.dtype)
    S, Lmax, n_active = lay.S, lay.Lmax, lay.n_active
    off = np.zeros(Lmax + 1, dtype=np.intp)
    np.cumsum(n_active, out=off[1:])
    col = off[lay.pos] + lay.row  # (N,) each token's column
    E = np.empty((C, N), dtype=scores.dtype)
    E[:, col] = scores.T
    delta = np.empty_like(E)
    back = np.empty((C, N), dtype=np.intp)  # back[j, column of t]: the best tag at t − 1
    buf = np.empty((C, C, S), dtype=scores.dtype)
    Ai = A[:, :, None]  # (i, j, 1)
    np.add(st[:, None], E[:, :S], out=delta[:, :S])
    for t in range(1, Lmax):
        n, a, a0 = n_active[t], off[t], off[t - 1]
        tmp = buf[:, :, :n]
        np.add(delta[:, None, a0:a0 + n], Ai, out=tmp)  # (i, j, n)
        d = delta[:, a:a + n]
        if n >= _VITERBI_SCAN:
            # Many sentences: the maximum over i runs along them, and the argmax is the
            # lowest i that reaches it (numpy's argmax over a leading axis copies the array
            # first, and is slower here). NaN: argmax's own rule, below.
            m = tmp.max(axis=0)
            if not np.isnan(m).any():
                bp = back[:, a:a + n]
                for i in range(C - 1, -1, -1):
                    bp[tmp[i] == m] = i
                np.add(m, E[:, a:a + n], out=d)
                continue
        bp = np.argmax(tmp, axis=0)  # (j, n)
        back[:, a:a + n] = bp
        # The maximum is the entry at the argmax: read, not found again by a second pass
        # over tmp (the same number, NaN included; half the work of the step).
        np.add(np.take_along_axis(tmp, bp[None], axis=0)[0], E[:, a:a + n], out=d)
    path = np.empty(N, dtype=np.intp)  # packed, as the columns
    last = off[lay.last_sorted] + np.arange(S)
    path[last] = np.argmax(delta[:, last].T + en, axis=1)
    for t in range(Lmax - 1, 0, -1):
        n, a, a0 = n_active[t], off[t], off[t - 1]
        cols = np.arange(a, a + n)
        path[a0:a0 + n] = back[path[a:a + n], cols]
    return path[col].astype(np.int64)
