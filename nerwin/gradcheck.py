"""Numerical gradient checking by central differences.

For a parameter entry θ_j the numeric gradient is (J(θ + ε e_j) - J(θ - ε e_j)) / 2ε, whose
truncation error is O(ε²) (the ε and ε³ terms cancel), against O(ε) for a one-sided
difference. It is compared with the analytic gradient by the relative error
|a - n| / max(1e-8, |a| + |n|), which is ~1e-7 or smaller in float64 when the derivation is
right and O(1) when it is wrong. Checks need float64: in float32 the rounding error of J,
divided by 2ε, swamps the difference.

relu, hardtanh, the L1 term and the char encoder's max have kinks. Where the ±ε step of one
entry carries a unit (or the weight itself, under L1, or an argmax) across a kink, the
central difference averages two slopes and says nothing about the derivative: such entries
are detected (the network's ``kink_pattern`` differs at θ±ε from θ), left out of the error
and counted in ``kinks``.
A larger ε makes this likelier; a smaller one makes rounding noise larger (above).

Rounding noise. J is computed in float64 with a relative error of some 1e-16 to 1e-14, so
the difference quotient carries an absolute error of about that times |J| / ε, and its O(ε²)
truncation error does not shrink with the gradient either. An entry whose gradient is tiny
(a sum of terms that cancel, an input component near 0) can therefore miss a 1e-6 relative
tolerance whatever ε is, with a perfectly right derivation. The checker bounds each entry's
numerical uncertainty by the sum of

  - the truncation error, (4/3)·|D(ε) - D(ε/2)| (D = the central difference; its error is
    C ε², so D(ε) - D(ε/2) = (3/4) C ε²: Richardson's estimate), and
  - the rounding error, ROUNDING_ULPS·ulp(J) / 2ε: each J is off by a few units in its last
    place, and the four values of D(ε), D(ε/2) may be off alike, so the difference above
    cannot see it,

and, where that bound is itself above ``tol``·(|a| + |n|), counts the entry as ``noisy``
instead of comparing it: at that precision the numbers cannot tell right from wrong. A
wrong derivation is not hidden by this: its error is large next to the uncertainty (a 1 %
error in dW is ~1e4 times the uncertainty of a typical entry).

Frozen parameters are listed with ``frozen`` set and ``checked == 0`` (max_rel_error 0.0) so
the table shows that they were deliberately skipped rather than forgotten. A trainable
parameter of which no entry could be compared (every one crossed a kink or was noisy, as
with a large ε) is NOT CHECKED, and that is not a pass: nothing vouches for its gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nerwin.nn.network import Inputs, WindowNet
from nerwin.nn.rowgrad import RowGrad

#: How many rows not used in the batch are sampled into an embedding check; their analytic
#: and numeric gradients must both be exactly 0.
N_UNUSED_ROWS = 3
#: Units in the last place that one float64 evaluation of J is allowed to be off by (the
#: loss is a mean of log-sum-exps of dot products: a few roundings deep).
ROUNDING_ULPS = 4


@dataclass(frozen=True)
class GradCheckRow:
    """Result for one parameter: how many entries were checked and the worst relative error."""

    name: str
    shape: tuple[int, ...]
    checked: int
    max_rel_error: float
    kinks: int = 0  # entries left out because their ±ε step crossed a kink
    noisy: int = 0  # entries left out because their numerical uncertainty exceeds tol
    frozen: bool = False  # not trained, so deliberately not checked

    def ok(self, tol: float) -> bool:
        """Frozen, or some entries compared and all within ``tol``."""
        return self.frozen or (self.checked > 0 and self.max_rel_error <= tol)


def rel_error(a: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """|a - n| / max(1e-8, |a| + |n|), elementwise (0 when both are 0)."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n))


def numerical_gradient(
    f: Callable[[], float], x: np.ndarray, eps: float = 1e-6,
    entries: np.ndarray | None = None,
    pattern: Callable[[], np.ndarray] | None = None,
    crossed: np.ndarray | None = None,
) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to the array ``x``.

    ``x`` is perturbed in place (and restored exactly, even if f raises). entries: flat
    indices to differentiate (default all). Returns an array shaped like x (float64) holding
    the numeric derivatives at ``entries`` and 0 elsewhere. With ``pattern`` (the side of
    each kink, see WindowNet.kink_pattern), entries whose ±ε step changes the pattern are
    flagged True in ``crossed`` (a bool array shaped like x).
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    idx_list = range(x.size) if entries is None else entries
    base = pattern() if pattern is not None else None
    for flat in idx_list:
        idx = np.unravel_index(int(flat), x.shape)
        old = x[idx]
        try:
            x[idx] = old + eps
            plus = f()
            kink = pattern is not None and not np.array_equal(pattern(), base)
            x[idx] = old - eps
            minus = f()
            kink = kink or (pattern is not None and not np.array_equal(pattern(), base))
        finally:
            x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
        if kink and crossed is not None:
            crossed[idx] = True
    return grad


def _sample_entries(
    name: str, param: np.ndarray, ids: np.ndarray | None, max_entries: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Flat indices of the entries to check (sorted)."""
    if param.size <= max_entries:
        return np.arange(param.size)
    if ids is not None:  # a lookup table: rows of the batch plus a few unused ones
        V, d = param.shape
        used = np.unique(ids)
        unused = np.setdiff1d(np.arange(V), used)
        unused = rng.choice(unused, min(N_UNUSED_ROWS, unused.size), replace=False)
        cols = np.arange(d)
        used_flat = (used[:, None] * d + cols).reshape(-1)
        unused_flat = (unused[:, None] * d + cols).reshape(-1)
        # Reserve about a tenth of the budget for the unused rows, give the rest to used
        # rows, and hand any budget the used rows cannot fill back to unused ones.
        reserve = min(unused_flat.size, max(1, max_entries // 10))
        k_used = min(used_flat.size, max_entries - reserve)
        k_unused = min(unused_flat.size, max_entries - k_used)
        picked = np.concatenate([rng.choice(used_flat, k_used, replace=False),
                                 rng.choice(unused_flat, k_unused, replace=False)])
        return np.sort(picked)
    return np.sort(rng.choice(param.size, max_entries, replace=False))


def _analytic_at(grad: np.ndarray | RowGrad, shape: tuple[int, ...],
                 entries: np.ndarray) -> np.ndarray:
    """The analytic gradient at the given flat indices, without densifying a RowGrad."""
    if isinstance(grad, RowGrad):
        rows, cols = np.unravel_index(entries, shape)
        out = np.zeros(entries.shape, dtype=np.float64)
        if grad.rows.size:
            # grad.rows is sorted and unique: find each wanted row, 0 where it is absent.
            pos = np.minimum(np.searchsorted(grad.rows, rows), grad.rows.size - 1)
            present = grad.rows[pos] == rows
            out[present] = grad.values[pos[present], cols[present]]
        return out
    return np.asarray(grad, dtype=np.float64).reshape(-1)[entries]


def check_gradients(
    net: WindowNet, inputs: Inputs, y: np.ndarray, *, lengths: np.ndarray | None = None,
    eps: float = 1e-4, max_entries: int = 200, rng: np.random.Generator,
    tol: float | None = 1e-6,
) -> list[GradCheckRow]:
    """Compare ``net.loss_and_grads`` with central differences of ``net.loss``, per parameter.

    inputs: one id array per table of the net (see WindowNet); y: (B,); lengths: (S,)
    sentence lengths for a head that works on sentences (crf). The params must be float64
    (ValueError otherwise). Dropout is off on both sides (analytic from loss_and_grads(train=False),
    numeric from the eval-mode net.loss). A parameter with at most ``max_entries`` entries is
    checked entirely; a larger one on a random sample of ``max_entries`` entries drawn with
    ``rng`` -- for every lookup table (word, casing, affixes, shape, characters) from the
    rows used in the batch plus up to
    N_UNUSED_ROWS unused rows (whose gradients must both be exactly 0). Frozen parameters
    appear with checked == 0. Entries whose ±ε step crosses a kink are counted in
    ``kinks``; with ``tol``, entries whose numerical uncertainty (truncation + rounding, see
    the module docstring) exceeds tol·(|a| + |n|) are counted in ``noisy``; neither is
    compared. ``tol=None`` compares every entry that crosses no kink. Returns one row per
    parameter, in the params' order.
    """
    for name, value in net.params.items():
        if value.dtype != np.float64:
            raise ValueError(f"gradient checks need float64 parameters; {name} is {value.dtype}")
    _, grads = net.loss_and_grads(inputs, y, lengths, train=False)
    table_ids = net.table_ids(inputs)

    def f() -> float:
        return net.loss(inputs, y, lengths)

    def pattern() -> np.ndarray:
        return net.kink_pattern(inputs, lengths)

    has_kinks = net.kink_pattern(inputs, lengths).size > 0
    # Rounding part of the uncertainty of (J+ - J-) / 2ε: both J off by ROUNDING_ULPS ulps.
    rounding = 2 * ROUNDING_ULPS * float(np.spacing(abs(f()))) / (2 * eps)

    rows: list[GradCheckRow] = []
    for name, param in net.params.items():
        shape = tuple(param.shape)
        if name in net.frozen:
            if name in grads:
                raise ValueError(f"frozen parameter {name} has a gradient entry")
            rows.append(GradCheckRow(name, shape, 0, 0.0, frozen=True))
            continue
        if name not in grads:
            raise ValueError(f"loss_and_grads returned no gradient for trainable {name}")
        grad = grads[name]
        if isinstance(grad, RowGrad):
            got, ok = grad.values.shape, grad.values.shape[1:] == shape[1:]
        else:
            got = np.shape(grad)
            ok = got == shape
        if not ok:
            raise ValueError(f"gradient of {name} has shape {got}, expected {shape}")
        ids = table_ids.get(name)
        entries = _sample_entries(name, param, None if ids is None else np.asarray(ids),
                                  max_entries, rng)
        crossed = np.zeros(shape, dtype=bool)
        pat = pattern if has_kinks else None
        numeric = numerical_gradient(f, param, eps, entries, pat, crossed).reshape(-1)[entries]
        analytic = _analytic_at(grad, shape, entries)
        kink = crossed.reshape(-1)[entries]
        noisy = np.zeros_like(kink)
        if tol is not None:
            half = numerical_gradient(f, param, eps / 2, entries).reshape(-1)[entries]
            uncertainty = (4 / 3) * np.abs(numeric - half) + rounding
            both_zero = (analytic == 0) & (numeric == 0)  # e.g. unused rows: compared exactly
            noisy = ~kink & ~both_zero & (
                uncertainty > tol * (np.abs(analytic) + np.abs(numeric)))
        keep = ~kink & ~noisy
        errs = rel_error(analytic[keep], numeric[keep])
        err = float(errs.max()) if errs.size else 0.0
        rows.append(GradCheckRow(name, shape, int(keep.sum()), err,
                                 kinks=int(kink.sum()), noisy=int(noisy.sum())))
    return rows


def format_gradcheck_table(rows: list[GradCheckRow], tol: float) -> str:
    """A plain-text table: parameter, shape, entries compared, entries left out at kinks and
    as noisy, max relative error, status.

    status is "ok" (max_rel_error <= tol), "FAIL", "frozen" (not trained, not checked) or
    "NOT CHECKED" (a trainable parameter of which no entry was compared: every sampled one
    crossed a kink or was noisy); NOT CHECKED fails the check, and a line says why.
    """
    header = ("param", "shape", "checked", "kinks", "noisy", "max rel err", "status")
    body = []
    for r in rows:
        if r.checked == 0:
            status = "frozen" if r.frozen else "NOT CHECKED"
            body.append((r.name, str(r.shape), "0", str(r.kinks), str(r.noisy), "-", status))
        else:
            status = "ok" if r.max_rel_error <= tol else "FAIL"
            body.append((r.name, str(r.shape), str(r.checked), str(r.kinks), str(r.noisy),
                         f"{r.max_rel_error:.2e}", status))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i in (0, 1, 6) else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(line, widths, strict=True)))
             for line in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    unchecked = [r.name for r in rows if r.checked == 0 and not r.frozen]
    lines.append(f"tolerance {tol:.0e}: " + ("all ok" if passed(rows, tol) else "FAILED")
                 + (f" ({len(unchecked)} not checked)" if unchecked else ""))
    if unchecked:
        lines.append(f"NOT CHECKED: {', '.join(unchecked)}: every sampled entry crossed a kink "
                     f"or was noisy, so no entry was compared and nothing vouches for the "
                     f"gradient; that is not a pass. Use the default --eps 1e-4 (a large eps "
                     f"crosses kinks and has a large truncation error) or more --samples")
    if any(r.kinks for r in rows):
        lines.append("kinks: entries whose ±eps step crossed a kink of relu/hardtanh/L1/max; "
                     "their difference quotient is not a derivative and is left out")
    if any(r.noisy for r in rows):
        lines.append("noisy: entries whose float64 difference quotient is uncertain (truncation "
                     "+ rounding) by more than the tolerance; left out")
    return "\n".join(line.rstrip() for line in lines)


def passed(rows: list[GradCheckRow], tol: float) -> bool:
    """True when every trainable parameter had entries compared, all within ``tol``."""
    return all(r.ok(tol) for r in rows)
