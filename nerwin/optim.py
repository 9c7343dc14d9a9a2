"""First-order optimisers (SGD, Adagrad, RMSprop, Adam) and global-norm gradient clipping.

Every optimiser updates a ``dict[str, np.ndarray]`` of parameters in place. Notation: θ is a
parameter, g its gradient, lr the learning rate of this step (the schedule owns it, so it is
an argument of :meth:`Optimizer.step`, not a hyperparameter), t the number of steps taken so
far including this one. All products and powers are element-wise.

==========  ===========================================================================
sgd         v ← μ v + g ;  θ ← θ - lr · v          (μ = 0: θ ← θ - lr · g, no state)
adagrad     G ← G + g² ;  θ ← θ - lr · g / (√G + eps)
rmsprop     s ← ρ s + (1 - ρ) g² ;  θ ← θ - lr · g / (√s + eps)
adam        m ← β1 m + (1 - β1) g ;  v ← β2 v + (1 - β2) g² ;
            m̂ = m / (1 - β1^t) ;  v̂ = v / (1 - β2^t) ;  θ ← θ - lr · m̂ / (√v̂ + eps)
==========  ===========================================================================

Row-sparse (lazy) updates
-------------------------
An embedding table's gradient arrives as a :class:`~nerwin.nn.rowgrad.RowGrad`: only the rows
of words in the batch are non-zero. For such a gradient we read, update and write back ONLY
those rows, of the parameter and of every state array (like PyTorch's ``SparseAdam`` and
sparse Adagrad). The other rows are bit-for-bit untouched. Consequences per rule:

* plain SGD and Adagrad: a zero gradient row changes neither θ nor G under the dense rule
  either, so lazy == dense exactly.
* SGD with momentum, RMSprop, Adam: the dense rule would still act on an absent row (v, s,
  m, v decay towards zero; θ keeps moving by lr·v, or lr·m̂/(√v̂+eps) on stale momentum). The
  lazy rule freezes absent rows instead: their moments do not decay and they do not move.
  A row that is present is updated with its own (possibly old) moments as if the steps in
  between had not happened.
* Adam bias correction uses the global step count t (one per :meth:`Optimizer.step` call),
  as SparseAdam does, not a per-row count. A rare word's first update at step t = 1000 thus
  gets m̂ ≈ (1-β1)·g (no 1/(1-β1^t) boost), i.e. an effective step about (1-β1)/√(1-β2)
  ≈ 3.2 times smaller than the first step of a fresh dense Adam would be.

Lazy updates cost O(R·d) per step instead of O(V·d), which is why they exist.

Flat buffers for the dense parameters
-------------------------------------
The dense parameters (every one whose gradient is a plain array) live in one flat buffer,
with one flat buffer per state slot and one for their gradients: a step copies the
gradients in (one call) and runs the rule once over the whole buffer, a dozen numpy calls
in all instead of a dozen per parameter. Every element gets the same operations in the same
order as when each array is updated on its own, and numpy's element-wise +, ×, ÷ and √ are
correctly rounded whatever the array, so the weights are the same bit for bit
(tests/test_optim.py checks it against a per-parameter reference, with a resume). The
``params`` dict passed to :meth:`Optimizer.step` then holds views of the buffer: code that
reads parameters by name sees the updates; an array taken from the dict before the first
step does not.

Registries
----------
:data:`OPTIMIZERS` maps each config name to its class; a class declares its
``hyperparameters`` (what :meth:`Optimizer.from_config` reads from ``training.optimizer``)
and its ``slots`` (state arrays per parameter, what nerwin.memory's estimate counts). A new
optimiser is one class here, added to the registry, and its config keys.

Numerics
--------
Arithmetic stays in the parameter's dtype: scalars (lr, β, ...) are cast to it first, because
a float64 scalar such as ``np.float64`` (what numpy arithmetic on an lr returns) upcasts
float32 arrays under numpy >= 2 promotion rules, and ``p -= lr * g`` would then build a
float64 temporary and round it back. Updates are in place with scratch arrays kept between
steps (never saved), and the same sequence of steps always gives
bit-identical results, including across :meth:`Optimizer.state_dict` /
:meth:`Optimizer.load_state_dict`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nerwin.nn.rowgrad import RowGrad

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adagrad",
    "Adam",
    "Optimizer",
    "RMSprop",
    "clip_by_global_norm",
    "make_optimizer",
]

Grad = np.ndarray | RowGrad


def _check_unit_interval(name: str, value: float, *, allow_zero: bool) -> float:
    """Return ``value`` as float if it lies in [0, 1) (or (0, 1)), else raise ValueError."""
    value = float(value)
    lo_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (lo_ok and value < 1.0):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")
    return value


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not (eps > 0.0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return eps


def _check_rows(name: str, grad: RowGrad, param: np.ndarray) -> np.ndarray:
    """Validate a RowGrad against its (V, ...) parameter and return its rows as int64.

    Fancy-index assignment ``p[rows] -= u`` silently keeps only one update per repeated row
    and wraps negative ids, so both are rejected here rather than corrupting the table.
    """
    rows = np.asarray(grad.rows)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"RowGrad for {name!r}: rows must be a 1-D integer array")
    values = np.asarray(grad.values)
    if values.shape != (rows.shape[0], *param.shape[1:]):
        raise ValueError(
            f"RowGrad for {name!r}: values shape {values.shape} does not match "
            f"{rows.shape[0]} rows of a parameter of shape {param.shape}"
        )
    if rows.size:
        if rows[0] < 0 or rows[-1] >= param.shape[0]:
            raise ValueError(f"RowGrad for {name!r}: row ids out of range [0, {param.shape[0]})")
        if rows.size > 1 and not np.all(rows[1:] > rows[:-1]):
            raise ValueError(f"RowGrad for {name!r}: rows must be unique and sorted")
    return rows.astype(np.int64, copy=False)


class Optimizer:
    """Shared interface: per-parameter state arrays named ``"<slot>/<param>"`` plus a step count.

    Subclasses set ``name``, ``slot_names`` (the per-parameter state arrays, each with the
    parameter's shape and dtype), ``slots`` (how many; what nerwin.memory counts) and
    ``hyperparameters`` (the keyword arguments of the constructor, read by
    :meth:`from_config`), and implement :meth:`_rule`, which serves the dense update of one
    array, of the flat buffer of every dense parameter, and the lazy update of the rows of a
    RowGrad.

    Flat buffers. On its first step the optimiser moves every parameter whose gradient is a
    dense array (of one dtype) into one flat buffer, and their state arrays into one flat
    buffer per slot, and replaces those entries of the ``params`` dict passed to
    :meth:`step` by views of it (the network reads its parameters by name, so it sees the
    views). A step then copies the dense gradients into one flat gradient buffer and runs the
    rule once over the whole of it: a dozen numpy calls instead of a dozen per parameter,
    with the same arithmetic on every element, so the weights are bit-identical to updating
    each array on its own. An array held from before the first step is no longer updated:
    read parameters from the dict. Pass ``flat=False`` to update the given arrays in place.
    """

    name: str = "optimizer"
    slot_names: tuple[str, ...] = ()
    #: state arrays per parameter (nerwin.memory's estimate asks :meth:`slots_for`)
    slots: int = 0
    #: constructor keywords, read from the optimiser's config section by from_config
    hyperparameters: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], *, flat: bool = True) -> None:
        # Allocate every state array now (zeros, the parameter's dtype) so that the checkpoint
        # of a fresh optimiser already has every key and load_state_dict can check them all.
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, np.dtype] = {}
        for pname, p in params.items():
            p = np.asarray(p)
            if not np.issubdtype(p.dtype, np.floating):
                raise ValueError(f"parameter {pname!r} must be floating point, got {p.dtype}")
            self.shapes[pname] = p.shape
            self.dtypes[pname] = p.dtype
        self.state: dict[str, np.ndarray] = {
            f"{slot}/{pname}": np.zeros(self.shapes[pname], dtype=self.dtypes[pname])
            for slot in self.slot_names
            for pname in params
        }
        self.t = 0  # steps taken; Adam's bias correction needs it, the others just record it
        # One scratch array per parameter, reused by every step (a fresh one per step costs
        # an allocation and, above a few hundred kB, page faults); never part of the state.
        self._scratch: dict[str, np.ndarray] = {}
        self._use_flat = flat
        self._flat: _Flat | None = None

    @classmethod
    def slots_for(cls, **hyper: float) -> int:
        """State arrays per parameter this optimiser keeps with hyperparameters ``hyper``."""
        return cls.slots

    @classmethod
    def from_config(cls, params: dict[str, np.ndarray], cfg: Any, *, flat: bool = True
                    ) -> Optimizer:
        """Build it over ``params`` from a config section with an attribute per
        hyperparameter (``training.optimizer``); only its own hyperparameters are read."""
        return cls(params, flat=flat, **{h: getattr(cfg, h) for h in cls.hyperparameters})

    def _buffer(self, pname: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A scratch array of ``shape`` for ``pname`` (contents undefined)."""
        n = math.prod(shape)
        buf = self._scratch.get(pname)
        if buf is None or buf.size < n or buf.dtype != dtype:
            buf = np.empty(max(n, 0 if buf is None else buf.size), dtype=dtype)
            self._scratch[pname] = buf
        return buf[:n].reshape(shape)

    # -- the update ---------------------------------------------------------------------------

    def step(self, params: dict[str, np.ndarray], grads: dict[str, Grad], lr: float) -> None:
        """Update ``params[name]`` for every ``name`` in ``grads``.

        params: the same names, shapes and dtypes the optimiser was built with; the dense
                ones become views of the flat buffer (see the class docstring).
        grads:  name -> dense gradient (same shape as the parameter) or a RowGrad with
                values (R, *param.shape[1:]). Names absent from ``grads`` (frozen
                parameters) are neither moved nor have their state touched.
        lr:     learning rate of this step, >= 0.
        """
        lr = float(lr)
        if not (lr >= 0.0 and math.isfinite(lr)):
            raise ValueError(f"learning rate must be a finite number >= 0, got {lr!r}")
        dense = self._check(params, grads)
        self.t += 1
        flat = self._flat_for(params, dense) if self._use_flat else None
        for pname, g in grads.items():
            p = params[pname]
            dt = p.dtype.type
            if isinstance(g, RowGrad):
                rows = _check_rows(pname, g, p)
                if rows.size:
                    self._sparse(pname, p, rows, np.asarray(g.values, dtype=p.dtype), dt(lr))
            elif flat is None:
                self._dense(pname, p, np.asarray(g, dtype=p.dtype), dt(lr))
        if flat is not None:
            # Gradients into the flat buffer (one call, casting like np.asarray would),
            # then the rule once over every dense parameter.
            np.concatenate([np.reshape(grads[n], -1) for n in flat.names], out=flat.grad)
            dt = flat.param.dtype.type
            flat.param -= self._rule(dt, flat.state, flat.grad, dt(lr), flat.scratch)

    def _check(self, params: dict[str, np.ndarray], grads: dict[str, Grad]) -> tuple[str, ...]:
        """Check every name, shape and dtype; return the names with a dense gradient."""
        dense = []
        for pname, g in grads.items():
            if pname not in self.shapes:
                raise ValueError(f"gradient for unknown parameter {pname!r}")
            p = params[pname]
            if p.shape != self.shapes[pname] or p.dtype != self.dtypes[pname]:
                raise ValueError(
                    f"parameter {pname!r} is {p.dtype}{p.shape}, optimiser was built for "
                    f"{self.dtypes[pname]}{self.shapes[pname]}"
                )
            if not isinstance(g, RowGrad):
                if np.shape(g) != p.shape:
                    raise ValueError(
                        f"gradient for {pname!r} has shape {np.shape(g)}, parameter {p.shape}"
                    )
                dense.append(pname)
        return tuple(dense)

    def _flat_for(self, params: dict[str, np.ndarray], dense: tuple[str, ...]) -> _Flat | None:
        """The flat buffers for this step's dense gradients, built (or rebuilt) if need be.

        None when there is nothing to gain (fewer than two dense gradients) or they differ
        in dtype; the step then updates each array on its own, which is the same arithmetic.
        """
        flat = self._flat
        if flat is not None and flat.names == dense and all(
                params[n] is flat.views[n] for n in dense):
            return flat
        if len(dense) < 2 or len({self.dtypes[n] for n in dense}) != 1:
            return None
        self._flat = flat = _Flat(dense, params, self.state, self.slot_names)
        params.update(flat.views)
        self.state.update(flat.state_views)
        return flat

    def _rule(self, dt: type, state: tuple[np.ndarray, ...], g: np.ndarray,
              lr: np.floating, u: np.ndarray) -> np.ndarray:
        """Update the state arrays (one per slot) in place; return the step to subtract.

        ``state`` holds whole state arrays (dense, or the flat buffers of every dense
        parameter) or gathered copies of the rows present (lazy); ``dt`` is the parameter's
        scalar type, so every constant is cast to it; ``u`` is a scratch array shaped like g,
        where the step is built and returned.
        """
        raise NotImplementedError

    def _dense(self, pname: str, p: np.ndarray, g: np.ndarray, lr: np.floating) -> None:
        state = tuple(self.state[f"{slot}/{pname}"] for slot in self.slot_names)
        p -= self._rule(p.dtype.type, state, g, lr, self._buffer(pname, g.shape, p.dtype))

    def _sparse(
        self, pname: str, p: np.ndarray, rows: np.ndarray, g: np.ndarray, lr: np.floating
    ) -> None:
        full = [self.state[f"{slot}/{pname}"] for slot in self.slot_names]
        # gathered copies of the rows present (take: the same copy as a[rows], faster)
        part = tuple(np.take(a, rows, axis=0) for a in full)
        step = self._rule(p.dtype.type, part, g, lr, self._buffer(pname, g.shape, p.dtype))
        for a, rows_state in zip(full, part):
            a[rows] = rows_state  # write the updated rows back; the others stay untouched
        p[rows] -= step

    # -- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Flat copy of the state: ``{"<slot>/<param>": array, ..., "t": int64 scalar}``.

        Copies, so that later steps do not alter a checkpoint already taken. Only numeric
        ndarrays, so ``np.savez`` stores it without pickle.
        """
        out = {key: arr.copy() for key, arr in self.state.items()}
        out["t"] = np.array(self.t, dtype=np.int64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the state with ``state`` after checking its keys, shapes and dtypes.

        Raises ValueError naming the first missing, unexpected or mismatching key; on error
        the current state is left unchanged.
        """
        expected = set(self.state) | {"t"}
        for key in sorted(expected - set(state)):
            raise ValueError(f"optimizer state ({self.name}): missing key {key!r}")
        for key in sorted(set(state) - expected):
            raise ValueError(f"optimizer state ({self.name}): unexpected key {key!r}")
        t = np.asarray(state["t"])
        if t.shape != () or not np.issubdtype(t.dtype, np.integer) or int(t) < 0:
            raise ValueError(
                f"optimizer state ({self.name}): key 't' must be a non-negative integer scalar, "
                f"got {t.dtype}{t.shape}"
            )
        for key, mine in self.state.items():
            arr = np.asarray(state[key])
            if arr.shape != mine.shape or arr.dtype != mine.dtype:
                raise ValueError(
                    f"optimizer state ({self.name}): key {key!r} is {arr.dtype}{arr.shape}, "
                    f"expected {mine.dtype}{mine.shape}"
                )
        # Copy into the arrays we hold (some are views of a flat buffer), so the caller's
        # arrays (e.g. an open npz) are not mutated by later steps.
        for key, mine in self.state.items():
            mine[...] = state[key]
        self.t = int(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={len(self.shapes)}, t={self.t})"


class _Flat:
    """One flat buffer for the named parameters, their gradients, each state slot and a
    scratch array, with a view of each parameter and state array into it.

    Building it copies the current values in; the old arrays are no longer used.
    """

    def __init__(self, names: tuple[str, ...], params: dict[str, np.ndarray],
                 state: dict[str, np.ndarray], slot_names: tuple[str, ...]) -> None:
        self.names = names
        dtype = params[names[0]].dtype
        sizes = [params[n].size for n in names]
        bounds = np.cumsum([0, *sizes]).tolist()
        n = bounds[-1]

        def gather(arrays: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            buf = np.empty(n, dtype=dtype)
            views = {}
            for name, a, lo, hi in zip(names, arrays, bounds, bounds[1:]):
                view = buf[lo:hi].reshape(a.shape)
                view[...] = a
                views[name] = view
            return buf, views

        self.param, self.views = gather([params[nm] for nm in names])
        self.state_views: dict[str, np.ndarray] = {}
        slot_bufs = []
        for slot in slot_names:
            buf, views = gather([state[f"{slot}/{nm}"] for nm in names])
            slot_bufs.append(buf)
            self.state_views.update({f"{slot}/{nm}": v for nm, v in views.items()})
        self.state = tuple(slot_bufs)
        self.grad = np.empty(n, dtype=dtype)
        self.scratch = np.empty(n, dtype=dtype)


class SGD(Optimizer):
    """v ← μ v + g ; θ ← θ - lr · v. With μ = 0 this is θ ← θ - lr · g and keeps no state."""

    name = "sgd"
    slots = 1  # with momentum; plain SGD keeps none (slots_for)
    hyperparameters = ("momentum",)

    def __init__(self, params: dict[str, np.ndarray], *, momentum: float = 0.0,
                 flat: bool = True) -> None:
        self.momentum = _check_unit_interval("momentum", momentum, allow_zero=True)
        self.slot_names = ("v",) if self.momentum > 0.0 else ()
        self.slots = len(self.slot_names)
        super().__init__(params, flat=flat)

    @classmethod
    def slots_for(cls, **hyper: float) -> int:
        return 1 if float(hyper.get("momentum", 0.0)) > 0.0 else 0

    def _rule(self, dt: type, state: tuple[np.ndarray, ...], g: np.ndarray,
              lr: np.floating, u: np.ndarray) -> np.ndarray:
        if not state:
            # θ ← θ - lr·g. Lazy rows get the same element-wise arithmetic, so plain sparse
            # SGD is bit-identical to dense SGD (elsewhere dense subtracts lr·0 = 0).
            return np.multiply(lr, g, out=u)
        (v,) = state
        v *= dt(self.momentum)  # v ← μ v + g
        v += g
        return np.multiply(lr, v, out=u)  # θ ← θ - lr·v


class Adagrad(Optimizer):
    """G ← G + g² ; θ ← θ - lr · g / (√G + eps)."""

    name = "adagrad"
    slot_names = ("G",)
    slots = 1
    hyperparameters = ("eps",)

    def __init__(self, params: dict[str, np.ndarray], *, eps: float = 1e-8,
                 flat: bool = True) -> None:
        self.eps = _check_eps(eps)
        super().__init__(params, flat=flat)

    def _rule(self, dt: type, state: tuple[np.ndarray, ...], g: np.ndarray,
              lr: np.floating, u: np.ndarray) -> np.ndarray:
        """Update accumulator G in place; return the step lr·g/(√G + eps) (in u)."""
        (G,) = state
        np.multiply(g, g, out=u)
        G += u  # G ← G + g²
        np.sqrt(G, out=u)  # the one scratch array, reused for every remaining operation
        u += dt(self.eps)
        np.divide(g, u, out=u)
        u *= lr
        return u


class RMSprop(Optimizer):
    """s ← ρ s + (1 - ρ) g² ; θ ← θ - lr · g / (√s + eps)."""

    name = "rmsprop"
    slot_names = ("s",)
    slots = 1
    hyperparameters = ("rho", "eps")

    def __init__(
        self, params: dict[str, np.ndarray], *, rho: float = 0.9, eps: float = 1e-8,
        flat: bool = True,
    ) -> None:
        self.rho = _check_unit_interval("rho", rho, allow_zero=True)
        self.eps = _check_eps(eps)
        super().__init__(params, flat=flat)

    def _rule(self, dt: type, state: tuple[np.ndarray, ...], g: np.ndarray,
              lr: np.floating, u: np.ndarray) -> np.ndarray:
        """Update s in place; return the step lr·g/(√s + eps) (in u)."""
        (s,) = state
        np.multiply(g, g, out=u)
        u *= dt(1.0 - self.rho)
        s *= dt(self.rho)  # s ← ρ s + (1-ρ) g²
        s += u
        np.sqrt(s, out=u)
        u += dt(self.eps)
        np.divide(g, u, out=u)
        u *= lr
        return u


class Adam(Optimizer):
    """m ← β1 m + (1-β1) g ; v ← β2 v + (1-β2) g² ; θ ← θ - lr · m̂ / (√v̂ + eps).

    m̂ = m / (1 - β1^t), v̂ = v / (1 - β2^t) with t the global step count (also for lazy rows).
    """

    name = "adam"
    slot_names = ("m", "v")
    slots = 2
    hyperparameters = ("beta1", "beta2", "eps")

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        flat: bool = True,
    ) -> None:
        self.beta1 = _check_unit_interval("beta1", beta1, allow_zero=True)
        self.beta2 = _check_unit_interval("beta2", beta2, allow_zero=True)
        self.eps = _check_eps(eps)
        super().__init__(params, flat=flat)

    def _rule(self, dt: type, state: tuple[np.ndarray, ...], g: np.ndarray,
              lr: np.floating, u: np.ndarray) -> np.ndarray:
        """Update ``m`` and ``v`` in place; return the step lr·m̂/(√v̂ + eps) (in u)."""
        m, v = state
        b1, b2 = self.beta1, self.beta2
        # Bias corrections in float64 (β^t for large t underflows gracefully to 0 -> 1).
        bc1 = 1.0 - b1**self.t
        bc2 = 1.0 - b2**self.t
        np.multiply(g, dt(1.0 - b1), out=u)
        m *= dt(b1)  # m ← β1 m + (1-β1) g
        m += u
        np.multiply(g, g, out=u)
        u *= dt(1.0 - b2)
        v *= dt(b2)  # v ← β2 v + (1-β2) g²
        v += u
        np.divide(v, dt(bc2), out=u)  # v̂ = v / (1-β2^t)
        np.sqrt(u, out=u)
        u += dt(self.eps)
        np.divide(m, u, out=u)  # m / (√v̂ + eps)
        u *= dt(float(lr) / bc1)  # · lr/(1-β1^t), i.e. lr·m̂/(√v̂ + eps)
        return u


#: The optimisers by config name (training.optimizer.name); the CLI and the config's checks
#: take their choices from it.
OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adagrad, RMSprop, Adam)}


def make_optimizer(
    name: str,
    params: dict[str, np.ndarray],
    *,
    momentum: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    rho: float = 0.9,
    flat: bool = True,
) -> Optimizer:
    """Build optimiser ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    Only the hyperparameters the chosen rule uses are read: sgd -> momentum; adagrad -> eps;
    rmsprop -> rho, eps; adam -> beta1, beta2, eps. Raises ValueError for an unknown name
    (listing the valid ones) or an out-of-range hyperparameter.
    """
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    given = {"momentum": momentum, "beta1": beta1, "beta2": beta2, "eps": eps, "rho": rho}
    return cls(params, flat=flat, **{h: given[h] for h in cls.hyperparameters})


def _sq_norm(a: np.ndarray) -> float:
    """Σ a² accumulated in float64 (a float32 dot product loses digits over 10⁵ entries)."""
    flat = np.asarray(a).reshape(-1)
    if flat.dtype != np.float64:
        flat = flat.astype(np.float64)
    return float(np.dot(flat, flat))


def clip_by_global_norm(grads: dict[str, Grad], max_norm: float) -> float:
    """Rescale all gradients together so their joint L2 norm is at most ``max_norm``.

    ‖g‖ = √(Σ over every dense entry and every RowGrad value of g²); if ‖g‖ > max_norm every
    gradient is multiplied in place by max_norm / ‖g‖ (RowGrad values too), which keeps the
    direction and makes the norm exactly max_norm (up to rounding). Returns ‖g‖ before
    clipping. A non-finite norm (inf/nan gradients) is returned without scaling anything:
    scaling by max_norm/inf = 0 would silently hide the blow-up, so the caller must check.
    """
    max_norm = float(max_norm)
    if not (max_norm > 0.0 and math.isfinite(max_norm)):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    total = 0.0
    for g in grads.values():
        total += _sq_norm(g.values if isinstance(g, RowGrad) else g)
    norm = math.sqrt(total)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            arr = g.values if isinstance(g, RowGrad) else g
            arr *= arr.dtype.type(scale)
    return norm
