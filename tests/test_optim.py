"""Tests for nerwin.optim: each rule against its textbook formula written out independently.

The reference implementations below are deliberately naive (fresh arrays, no in-place ops,
formulas as printed) so that they share no code path with the optimised implementation.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerwin.nn.rowgrad import RowGrad
from nerwin.optim import (
    OPTIMIZERS,
    Optimizer,
    clip_by_global_norm,
    make_optimizer,
)

# Every configuration the round-trip / dtype tests sweep: (name, hyperparameters).
CONFIGS = [
    ("sgd", {}),
    ("sgd", {"momentum": 0.9}),
    ("adagrad", {"eps": 1e-8}),
    ("rmsprop", {"rho": 0.9, "eps": 1e-8}),
    ("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
]
CONFIG_IDS = ["sgd", "sgd-momentum", "adagrad", "rmsprop", "adam"]


# -- textbook references ------------------------------------------------------------------------


def ref_init(name: str, theta: np.ndarray) -> dict:
    z = np.zeros_like(theta)
    return {"sgd": {"v": z}, "adagrad": {"G": z}, "rmsprop": {"s": z}, "adam": {"m": z, "v": z}}[
        name
    ] | {"t": 0}


def ref_step(name: str, hp: dict, st_: dict, theta: np.ndarray, g: np.ndarray, lr: float):
    """One textbook step; returns (new theta, new state). Never mutates its inputs."""
    t = st_["t"] + 1
    if name == "sgd":
        mu = hp.get("momentum", 0.0)
        v = mu * st_["v"] + g
        return theta - lr * v, {"v": v, "t": t}
    if name == "adagrad":
        G = st_["G"] + g**2
        return theta - lr * g / (np.sqrt(G) + hp["eps"]), {"G": G, "t": t}
    if name == "rmsprop":
        s = hp["rho"] * st_["s"] + (1 - hp["rho"]) * g**2
        return theta - lr * g / (np.sqrt(s) + hp["eps"]), {"s": s, "t": t}
    if name == "adam":
        b1, b2 = hp["beta1"], hp["beta2"]
        m = b1 * st_["m"] + (1 - b1) * g
        v = b2 * st_["v"] + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        return theta - lr * m_hat / (np.sqrt(v_hat) + hp["eps"]), {"m": m, "v": v, "t": t}
    raise AssertionError(name)


# -- a quadratic over two parameters ----------------------------------------------------------


def quadratic(seed: int = 0):
    """f(w) = ½ wᵀAw - bᵀw with w = concat(vec W (3x4), c (5,)); returns (A, b, grad_fn)."""
    rng = np.random.default_rng(seed)
    n = 12 + 5
    Q = rng.normal(size=(n, n))
    A = Q @ Q.T / n + 0.5 * np.eye(n)  # symmetric positive definite
    b = rng.normal(size=n)

    def grad_fn(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        w = np.concatenate([params["W"].reshape(-1), params["c"]])
        gw = A @ w - b  # ∇f = A w - b
        return {"W": gw[:12].reshape(3, 4), "c": gw[12:]}

    return A, b, grad_fn


TEXTBOOK = [
    ("sgd", {}, 0.1),
    ("sgd", {"momentum": 0.9}, 0.05),
    ("adagrad", {"eps": 1e-8}, 0.3),
    ("rmsprop", {"rho": 0.9, "eps": 1e-8}, 0.02),
    ("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, 0.05),
]


@pytest.mark.parametrize(("name", "hp", "lr0"), TEXTBOOK, ids=CONFIG_IDS)
def test_matches_textbook_on_quadratic(name, hp, lr0):
    _, _, grad_fn = quadratic()
    rng = np.random.default_rng(1)
    params = {"W": rng.normal(size=(3, 4)), "c": rng.normal(size=5)}
    ref = {k: v.copy() for k, v in params.items()}
    ref_state = {k: ref_init(name, v) for k, v in ref.items()}
    opt = make_optimizer(name, params, **hp)
    f_start = None
    for step in range(20):
        lr = lr0 * 0.97**step  # a changing lr, as a schedule would give
        opt.step(params, grad_fn(params), lr)
        g_ref = grad_fn(ref)
        for k in ref:
            ref[k], ref_state[k] = ref_step(name, hp, ref_state[k], ref[k], g_ref[k], lr)
        for k in params:
            np.testing.assert_allclose(params[k], ref[k], rtol=1e-12, atol=1e-14)
        if f_start is None:
            f_start = np.linalg.norm(np.concatenate([g.ravel() for g in g_ref.values()]))
    # The rule is not only equal to the reference but actually descends on this problem.
    g_end = np.linalg.norm(np.concatenate([g.ravel() for g in grad_fn(params).values()]))
    assert g_end < f_start


def test_adam_first_step_is_lr_times_sign():
    # With bias correction, m̂ = g and v̂ = g² at t = 1, so the first step is lr·g/(|g|+eps).
    # Without bias correction it would be ~0.316·lr; this pins the correction independently.
    theta = {"x": np.array([1.0, -2.0, 3.0])}
    g = {"x": np.array([0.5, -4.0, 1e-3])}
    opt = make_optimizer("adam", theta, eps=1e-12)
    opt.step(theta, g, 0.01)
    np.testing.assert_allclose(theta["x"], [1.0 - 0.01, -2.0 + 0.01, 3.0 - 0.01], rtol=1e-9)


# -- row-sparse gradients -----------------------------------------------------------------------


def random_rowgrad(rng, V: int, d: int, R: int, dtype=np.float64) -> RowGrad:
    rows = np.sort(rng.choice(V, size=R, replace=False)).astype(np.int64)
    return RowGrad(rows, rng.normal(size=(R, d)).astype(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_sgd_equals_dense_sgd_exactly(dtype):
    rng = np.random.default_rng(2)
    E0 = rng.normal(size=(30, 6)).astype(dtype)
    sparse = {"E": E0.copy()}
    dense = {"E": E0.copy()}
    opt_s = make_optimizer("sgd", sparse)
    opt_d = make_optimizer("sgd", dense)
    for step in range(15):
        rg = random_rowgrad(rng, 30, 6, 1 + step % 7, dtype)
        opt_s.step(sparse, {"E": rg}, 0.37)
        opt_d.step(dense, {"E": rg.to_dense((30, 6))}, 0.37)
        np.testing.assert_array_equal(sparse["E"], dense["E"])
    assert not np.array_equal(sparse["E"], E0)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    V=st.integers(1, 20),
    d=st.integers(1, 5),
    lr=st.floats(1e-4, 10.0),
)
def test_sparse_sgd_equals_dense_sgd_property(seed, V, d, lr):
    rng = np.random.default_rng(seed)
    E0 = rng.normal(size=(V, d))
    R = int(rng.integers(0, V + 1))
    rg = random_rowgrad(rng, V, d, R)
    sparse, dense = {"E": E0.copy()}, {"E": E0.copy()}
    make_optimizer("sgd", sparse).step(sparse, {"E": rg}, lr)
    make_optimizer("sgd", dense).step(dense, {"E": rg.to_dense((V, d))}, lr)
    np.testing.assert_array_equal(sparse["E"], dense["E"])


LAZY = [
    ("sgd", {"momentum": 0.8}),
    ("adagrad", {"eps": 1e-8}),
    ("rmsprop", {"rho": 0.9, "eps": 1e-8}),
    ("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
]
LAZY_IDS = ["sgd-momentum", "adagrad", "rmsprop", "adam"]


@pytest.mark.parametrize(("name", "hp"), LAZY, ids=LAZY_IDS)
def test_lazy_step_touches_only_given_rows(name, hp):
    rng = np.random.default_rng(3)
    V, d = 12, 4
    params = {"E": rng.normal(size=(V, d))}
    opt = make_optimizer(name, params, **hp)
    # A few dense steps first so that every row has non-zero state to (not) disturb.
    for _ in range(3):
        opt.step(params, {"E": rng.normal(size=(V, d))}, 0.1)
    before_p = params["E"].copy()
    before_state = opt.state_dict()
    rg = RowGrad(np.array([1, 5, 6, 10]), rng.normal(size=(4, d)))
    opt.step(params, {"E": rg}, 0.1)
    after_state = opt.state_dict()

    others = np.setdiff1d(np.arange(V), rg.rows)
    np.testing.assert_array_equal(params["E"][others], before_p[others])
    for key in before_state:
        if key != "t":
            np.testing.assert_array_equal(after_state[key][others], before_state[key][others])
            assert not np.array_equal(after_state[key][rg.rows], before_state[key][rg.rows])
    assert not np.array_equal(params["E"][rg.rows], before_p[rg.rows])

    # On the given rows: the dense rule applied to just those rows, with their old state.
    sub = {"E": before_p[rg.rows].copy()}
    ref = make_optimizer(name, sub, **hp)
    ref.load_state_dict(
        {k: (v if k == "t" else v[rg.rows]) for k, v in before_state.items()}
    )
    ref.step(sub, {"E": rg.values}, 0.1)
    np.testing.assert_array_equal(params["E"][rg.rows], sub["E"])
    for key in before_state:
        if key != "t":
            np.testing.assert_array_equal(after_state[key][rg.rows], ref.state_dict()[key])


@pytest.mark.parametrize(("name", "hp"), LAZY, ids=LAZY_IDS)
def test_repeated_lazy_steps_match_hand_loop(name, hp):
    """Many RowGrad steps with varying row sets against a per-row textbook loop."""
    rng = np.random.default_rng(4)
    V, d = 15, 3
    E = rng.normal(size=(V, d))
    params = {"E": E.copy()}
    opt = make_optimizer(name, params, **hp)
    # Hand loop: row i keeps its own textbook state; only rows present are stepped, but the
    # step count t is global (SparseAdam's convention), so we track t separately.
    ref_rows = [E[i].copy() for i in range(V)]
    ref_states = [ref_init(name, E[i]) for i in range(V)]
    touched = np.zeros(V, dtype=bool)
    for t in range(1, 26):
        R = int(rng.integers(1, 6))
        rg = random_rowgrad(rng, V - 1, d, R)  # row V-1 is never present
        lr = 0.05 / np.sqrt(t)
        opt.step(params, {"E": rg}, lr)
        for i, g in zip(rg.rows, rg.values, strict=True):
            state_i = dict(ref_states[i], t=t - 1)  # global t for bias correction
            ref_rows[i], ref_states[i] = ref_step(name, hp, state_i, ref_rows[i], g, lr)
            touched[i] = True
    np.testing.assert_allclose(params["E"], np.stack(ref_rows), rtol=1e-12, atol=1e-14)
    assert touched.sum() >= 5
    np.testing.assert_array_equal(params["E"][~touched], E[~touched])
    assert opt.state_dict()["t"] == 25


def test_lazy_adagrad_equals_dense_adagrad():
    # A zero gradient row leaves both θ and G unchanged under the dense rule, so for Adagrad
    # (and plain SGD) lazy == dense bit for bit, over any number of steps.
    rng = np.random.default_rng(5)
    E0 = rng.normal(size=(20, 4))
    sparse, dense = {"E": E0.copy()}, {"E": E0.copy()}
    opt_s, opt_d = make_optimizer("adagrad", sparse), make_optimizer("adagrad", dense)
    for _ in range(10):
        rg = random_rowgrad(rng, 20, 4, 5)
        opt_s.step(sparse, {"E": rg}, 0.1)
        opt_d.step(dense, {"E": rg.to_dense((20, 4))}, 0.1)
    np.testing.assert_array_equal(sparse["E"], dense["E"])
    np.testing.assert_array_equal(opt_s.state_dict()["G/E"], opt_d.state_dict()["G/E"])


def test_lazy_adam_differs_from_dense_adam_on_absent_rows():
    # Documented difference: dense Adam keeps moving a row on stale momentum after its
    # gradient becomes zero; lazy Adam leaves it (and its moments) alone.
    E0 = np.zeros((3, 2))
    sparse, dense = {"E": E0.copy()}, {"E": E0.copy()}
    opt_s, opt_d = make_optimizer("adam", sparse), make_optimizer("adam", dense)
    g0 = RowGrad(np.array([0, 1]), np.ones((2, 2)))
    g1 = RowGrad(np.array([1]), np.ones((1, 2)))
    opt_s.step(sparse, {"E": g0}, 0.1)
    opt_d.step(dense, {"E": g0.to_dense((3, 2))}, 0.1)
    row0 = sparse["E"][0].copy()
    m0 = opt_s.state_dict()["m/E"][0].copy()
    opt_s.step(sparse, {"E": g1}, 0.1)
    opt_d.step(dense, {"E": g1.to_dense((3, 2))}, 0.1)
    np.testing.assert_array_equal(sparse["E"][0], row0)
    np.testing.assert_array_equal(opt_s.state_dict()["m/E"][0], m0)
    assert np.all(dense["E"][0] < row0)  # still moving in the old direction
    np.testing.assert_array_equal(sparse["E"][1], dense["E"][1])  # present row: same rule
    np.testing.assert_array_equal(sparse["E"][2], E0[2])


def test_rowgrad_validation():
    params = {"E": np.zeros((5, 2))}
    opt = make_optimizer("adam", params)
    with pytest.raises(ValueError, match="unique and sorted"):
        opt.step(params, {"E": RowGrad(np.array([1, 1]), np.ones((2, 2)))}, 0.1)
    with pytest.raises(ValueError, match="out of range"):
        opt.step(params, {"E": RowGrad(np.array([-1, 2]), np.ones((2, 2)))}, 0.1)
    with pytest.raises(ValueError, match="out of range"):
        opt.step(params, {"E": RowGrad(np.array([4, 5]), np.ones((2, 2)))}, 0.1)
    with pytest.raises(ValueError, match="values shape"):
        opt.step(params, {"E": RowGrad(np.array([1, 2]), np.ones((2, 3)))}, 0.1)
    np.testing.assert_array_equal(params["E"], 0.0)


def test_empty_rowgrad_is_a_no_op_on_the_table():
    params = {"E": np.ones((4, 2))}
    opt = make_optimizer("adam", params)
    opt.step(params, {"E": RowGrad(np.zeros(0, np.int64), np.zeros((0, 2)))}, 0.1)
    np.testing.assert_array_equal(params["E"], 1.0)
    assert opt.state_dict()["t"] == 1


# -- frozen parameters, validation --------------------------------------------------------------


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=CONFIG_IDS)
def test_params_missing_from_grads_are_untouched(name, hp):
    rng = np.random.default_rng(6)
    params = {"W": rng.normal(size=(3, 3)), "frozen": rng.normal(size=(4, 2))}
    opt = make_optimizer(name, params, **hp)
    # One step with both, so "frozen" has non-zero state that a wrong rule would decay or use.
    opt.step(params, {"W": rng.normal(size=(3, 3)), "frozen": rng.normal(size=(4, 2))}, 0.1)
    frozen0 = params["frozen"].copy()
    state0 = opt.state_dict()
    W0 = params["W"].copy()
    for _ in range(3):
        opt.step(params, {"W": rng.normal(size=(3, 3))}, 0.1)
    np.testing.assert_array_equal(params["frozen"], frozen0)
    state = opt.state_dict()
    for key in state:
        if key.endswith("/frozen"):
            assert state0[key].any()
            np.testing.assert_array_equal(state[key], state0[key])
    assert not np.array_equal(params["W"], W0)


def test_step_rejects_unknown_and_misshapen_gradients():
    params = {"W": np.zeros((2, 2))}
    opt = make_optimizer("sgd", params)
    with pytest.raises(ValueError, match="'X'"):
        opt.step(params, {"X": np.zeros((2, 2))}, 0.1)
    with pytest.raises(ValueError, match="shape"):
        opt.step(params, {"W": np.zeros((2, 3))}, 0.1)
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(params, {"W": np.zeros((2, 2))}, -1.0)
    with pytest.raises(ValueError, match="floating"):
        make_optimizer("sgd", {"ids": np.zeros(3, dtype=np.int64)})


def test_make_optimizer_names_and_hyperparameters():
    assert tuple(OPTIMIZERS) == ("sgd", "adagrad", "rmsprop", "adam")
    params = {"W": np.zeros(2)}
    for name in OPTIMIZERS:
        opt = make_optimizer(name, params)
        assert isinstance(opt, Optimizer)
        assert opt.name == name
    with pytest.raises(ValueError) as info:
        make_optimizer("adamw", params)
    for name in OPTIMIZERS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("sgd", params, momentum=1.0)
    with pytest.raises(ValueError, match="beta2"):
        make_optimizer("adam", params, beta2=1.5)
    with pytest.raises(ValueError, match="eps"):
        make_optimizer("rmsprop", params, eps=0.0)
    with pytest.raises(ValueError, match="rho"):
        make_optimizer("rmsprop", params, rho=-0.1)


# -- checkpoints --------------------------------------------------------------------------------


def make_params(rng, dtype=np.float64):
    return {"W": rng.normal(size=(5, 4)).astype(dtype), "E": rng.normal(size=(9, 3)).astype(dtype)}


def make_grads(rng, dtype=np.float64):
    return {"W": rng.normal(size=(5, 4)).astype(dtype), "E": random_rowgrad(rng, 9, 3, 4, dtype)}


def savez_roundtrip(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_dict_roundtrip_continues_bit_for_bit(name, hp, dtype):
    rng = np.random.default_rng(7)
    init = make_params(rng, dtype)
    grads = [make_grads(rng, dtype) for _ in range(10)]
    lrs = [0.1 * 0.9**i for i in range(10)]

    straight = {k: v.copy() for k, v in init.items()}
    opt = make_optimizer(name, straight, **hp)
    for g, lr in zip(grads, lrs, strict=True):
        opt.step(straight, g, lr)

    first = {k: v.copy() for k, v in init.items()}
    opt1 = make_optimizer(name, first, **hp)
    for g, lr in zip(grads[:6], lrs[:6], strict=True):
        opt1.step(first, g, lr)
    saved_state = savez_roundtrip(opt1.state_dict())
    saved_params = savez_roundtrip(first)
    del opt1, first

    resumed = {k: v.copy() for k, v in init.items()}  # fresh arrays, then overwritten
    resumed.update(saved_params)
    opt2 = make_optimizer(name, resumed, **hp)
    opt2.load_state_dict(saved_state)
    for g, lr in zip(grads[6:], lrs[6:], strict=True):
        opt2.step(resumed, g, lr)

    for k in init:
        np.testing.assert_array_equal(resumed[k], straight[k])
        assert resumed[k].dtype == dtype
    s_straight, s_resumed = opt.state_dict(), opt2.state_dict()
    assert s_straight.keys() == s_resumed.keys()
    for k in s_straight:
        np.testing.assert_array_equal(s_resumed[k], s_straight[k])
        assert s_resumed[k].dtype == s_straight[k].dtype


def test_fresh_state_dict_has_every_array():
    params = {"W": np.zeros((2, 3), np.float32), "E": np.zeros((4, 2))}
    keys = {
        "sgd": {"t"},
        "adagrad": {"G/W", "G/E", "t"},
        "rmsprop": {"s/W", "s/E", "t"},
        "adam": {"m/W", "m/E", "v/W", "v/E", "t"},
    }
    for name in OPTIMIZERS:
        sd = make_optimizer(name, params).state_dict()
        assert set(sd) == keys[name]
        for k, arr in sd.items():
            assert isinstance(arr, np.ndarray)
            if k == "t":
                assert arr.dtype == np.int64 and arr.shape == () and arr == 0
            else:
                assert arr.shape == params[k.split("/", 1)[1]].shape
                assert arr.dtype == params[k.split("/", 1)[1]].dtype
                assert not arr.any()
    sd = make_optimizer("sgd", params, momentum=0.5).state_dict()
    assert set(sd) == {"v/W", "v/E", "t"}


def test_state_dict_is_a_snapshot():
    params = {"W": np.ones(3)}
    opt = make_optimizer("adam", params)
    snap = opt.state_dict()
    opt.step(params, {"W": np.ones(3)}, 0.1)
    assert not snap["m/W"].any() and snap["t"] == 0
    # ...and loading does not alias the caller's arrays either.
    state = opt.state_dict()
    opt.load_state_dict(state)
    opt.step(params, {"W": np.ones(3)}, 0.1)
    assert state["t"] == 1 and not np.array_equal(state["m/W"], opt.state_dict()["m/W"])


def test_load_state_dict_validates_and_names_the_key():
    params = {"W": np.zeros((2, 3)), "E": np.zeros((4, 2), np.float32)}
    opt = make_optimizer("adam", params)
    opt.step(params, {"W": np.ones((2, 3))}, 0.1)
    good = opt.state_dict()

    bad = dict(good)
    del bad["v/E"]
    with pytest.raises(ValueError, match="missing key 'v/E'"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="unexpected key 'G/W'"):
        opt.load_state_dict(dict(good, **{"G/W": np.zeros((2, 3))}))
    with pytest.raises(ValueError, match="'m/W'.*float64\\(3, 2\\)"):
        opt.load_state_dict(dict(good, **{"m/W": np.zeros((3, 2))}))
    with pytest.raises(ValueError, match="'v/E'.*float64"):
        opt.load_state_dict(dict(good, **{"v/E": np.zeros((4, 2))}))
    with pytest.raises(ValueError, match="'t'"):
        opt.load_state_dict(dict(good, t=np.array(1.5)))
    with pytest.raises(ValueError, match="missing key 'm/"):
        opt.load_state_dict(make_optimizer("adagrad", params).state_dict())
    # A failed load leaves the state as it was.
    after = opt.state_dict()
    for k in good:
        np.testing.assert_array_equal(after[k], good[k])


# -- dtypes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=CONFIG_IDS)
def test_float32_stays_float32(name, hp):
    rng = np.random.default_rng(8)
    p32 = make_params(rng, np.float32)
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}
    opt32 = make_optimizer(name, p32, **hp)
    opt64 = make_optimizer(name, p64, **hp)
    for _ in range(5):
        g = make_grads(rng, np.float64)  # float64 gradients and an np.float64 lr
        opt32.step(p32, g, np.float64(0.01))
        opt64.step(p64, g, np.float64(0.01))
    for k in p32:
        assert p32[k].dtype == np.float32
        np.testing.assert_allclose(p32[k], p64[k], rtol=1e-4, atol=1e-5)
    for k, arr in opt32.state_dict().items():
        if k != "t":
            assert arr.dtype == np.float32


def test_float32_sgd_is_computed_in_float32():
    # θ - lr·g evaluated in float32 (lr rounded to float32 first) differs from the float64
    # result rounded to float32 in a fraction of entries; the step must give the former.
    rng = np.random.default_rng(9)
    p = rng.normal(size=(200, 50)).astype(np.float32)
    g = rng.normal(size=(200, 50)).astype(np.float32)
    lr = np.float64(0.1)
    expected = p - np.float32(lr) * g
    via64 = (p.astype(np.float64) - lr * g.astype(np.float64)).astype(np.float32)
    assert not np.array_equal(expected, via64)  # the test can tell them apart
    params = {"W": p.copy()}
    make_optimizer("sgd", params).step(params, {"W": g}, lr)
    np.testing.assert_array_equal(params["W"], expected)


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=CONFIG_IDS)
def test_same_steps_are_bit_identical(name, hp):
    rng = np.random.default_rng(10)
    init = make_params(rng)
    grads = [make_grads(rng) for _ in range(5)]
    results = []
    for _ in range(2):
        params = {k: v.copy() for k, v in init.items()}
        opt = make_optimizer(name, params, **hp)
        for g in grads:
            opt.step(params, g, 0.1)
        results.append(params)
    for k in init:
        np.testing.assert_array_equal(results[0][k], results[1][k])


# -- clipping -----------------------------------------------------------------------------------


def clip_fixture():
    rng = np.random.default_rng(11)
    grads = {
        "W": rng.normal(size=(4, 5)),
        "b": rng.normal(size=5).astype(np.float32),
        "E": random_rowgrad(rng, 10, 3, 4),
    }
    flat = np.concatenate([grads["W"].ravel(), grads["b"].ravel(), grads["E"].values.ravel()])
    return grads, float(np.linalg.norm(flat.astype(np.float64)))


def test_clip_scales_everything_to_max_norm():
    grads, norm = clip_fixture()
    orig = {"W": grads["W"].copy(), "b": grads["b"].copy(), "E": grads["E"].values.copy()}
    max_norm = norm / 3.0
    returned = clip_by_global_norm(grads, max_norm)
    assert returned == pytest.approx(norm, rel=1e-12)
    flat = np.concatenate([grads["W"].ravel(), grads["b"].ravel(), grads["E"].values.ravel()])
    assert np.linalg.norm(flat.astype(np.float64)) == pytest.approx(max_norm, rel=1e-6)
    scale = max_norm / norm
    np.testing.assert_allclose(grads["W"], orig["W"] * scale, rtol=1e-12)
    np.testing.assert_allclose(grads["E"].values, orig["E"] * scale, rtol=1e-12)
    np.testing.assert_allclose(grads["b"], orig["b"] * scale, rtol=1e-6)
    assert grads["b"].dtype == np.float32


def test_clip_counts_rowgrad_entries_in_the_norm():
    # Dense part alone is under the limit; only with the RowGrad values is it over.
    grads = {"W": np.array([3.0]), "E": RowGrad(np.array([2]), np.array([[4.0]]))}
    assert clip_by_global_norm(grads, 4.0) == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(grads["W"], [3.0 * 4 / 5], rtol=1e-15)
    np.testing.assert_allclose(grads["E"].values, [[4.0 * 4 / 5]], rtol=1e-15)


def test_clip_leaves_small_gradients_untouched():
    grads, norm = clip_fixture()
    orig = {"W": grads["W"].copy(), "b": grads["b"].copy(), "E": grads["E"].values.copy()}
    returned = clip_by_global_norm(grads, norm * 2)
    assert returned == pytest.approx(norm, rel=1e-12)
    # "Exceeds": a norm exactly equal to the limit is not clipped either.
    for max_norm in (norm * 2, returned):
        assert clip_by_global_norm(grads, max_norm) == returned
        np.testing.assert_array_equal(grads["W"], orig["W"])
        np.testing.assert_array_equal(grads["b"], orig["b"])
        np.testing.assert_array_equal(grads["E"].values, orig["E"])


def test_clip_non_finite_and_bad_limit():
    grads = {"W": np.array([1.0, np.inf])}
    assert clip_by_global_norm(grads, 1.0) == np.inf
    np.testing.assert_array_equal(grads["W"], [1.0, np.inf])
    with pytest.raises(ValueError, match="max_norm"):
        clip_by_global_norm({"W": np.ones(2)}, 0.0)


# -- flat buffers: bit for bit the per-parameter update ------------------------------------------


def per_param_rule(name: str, hp: dict, state: list, g: np.ndarray, lr: float, t: int
                   ) -> np.ndarray:
    """The per-parameter update nerwin ran before its flat buffers, op for op (in place, every
    constant cast to the parameter's dtype); updates ``state`` and returns the step."""
    dt = g.dtype.type
    lr_ = dt(lr)
    if name == "sgd":
        if not state:
            return np.multiply(lr_, g)
        (v,) = state
        v *= dt(hp["momentum"])
        v += g
        return np.multiply(lr_, v)
    if name == "adagrad":
        (G,) = state
        G += np.multiply(g, g)
        u = np.sqrt(G)
        u += dt(hp["eps"])
        u = np.divide(g, u)
        u *= lr_
        return u
    if name == "rmsprop":
        (s,) = state
        u = np.multiply(g, g)
        u *= dt(1.0 - hp["rho"])
        s *= dt(hp["rho"])
        s += u
        u = np.sqrt(s)
        u += dt(hp["eps"])
        u = np.divide(g, u)
        u *= lr_
        return u
    m, v = state
    b1, b2 = hp["beta1"], hp["beta2"]
    bc1, bc2 = 1.0 - b1**t, 1.0 - b2**t
    m *= dt(b1)
    m += np.multiply(g, dt(1.0 - b1))
    u = np.multiply(g, g)
    u *= dt(1.0 - b2)
    v *= dt(b2)
    v += u
    u = np.sqrt(np.divide(v, dt(bc2)))
    u += dt(hp["eps"])
    u = np.divide(m, u)
    u *= dt(float(lr_) / bc1)  # lr already rounded to the dtype, as nerwin does
    return u


FLAT_CONFIGS = [
    ("sgd", {"momentum": 0.0}),
    ("sgd", {"momentum": 0.9}),
    ("adagrad", {"eps": 1e-8}),
    ("rmsprop", {"rho": 0.9, "eps": 1e-8}),
    ("adam", {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}),
]


def network_like(rng: np.random.Generator, dtype) -> tuple[dict, list]:
    """Parameters shaped like a small window network (an embedding table with row-sparse
    gradients, the rest dense) and 9 steps of random gradients, with changing rows."""
    params = {
        "E_word": rng.normal(size=(30, 4)).astype(dtype),
        "W1": rng.normal(size=(7, 20)).astype(dtype),
        "b1": rng.normal(size=7).astype(dtype),
        "U": rng.normal(size=(5, 7)).astype(dtype),
        "c": rng.normal(size=5).astype(dtype),
    }
    steps = []
    for _ in range(9):
        rows = np.unique(rng.integers(0, 30, size=6))
        g = {k: (rng.normal(size=v.shape) * rng.uniform(0.01, 3)).astype(dtype)
             for k, v in params.items() if k != "E_word"}
        g["E_word"] = RowGrad(rows, rng.normal(size=(rows.size, 4)).astype(dtype))
        steps.append((g, float(rng.uniform(1e-3, 0.3))))
    return params, steps


@pytest.mark.parametrize(("name", "hp"), FLAT_CONFIGS,
                         ids=["sgd", "sgd-momentum", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_flat_buffers_bit_identical_to_per_parameter_updates(name, hp, dtype, seed):
    rng = np.random.default_rng(seed)
    init, steps = network_like(rng, dtype)
    slot_names = {"sgd": ["v"] if hp.get("momentum") else [], "adagrad": ["G"],
                  "rmsprop": ["s"], "adam": ["m", "v"]}[name]

    # The reference: each parameter on its own, lazy rows for the RowGrad.
    ref = {k: v.copy() for k, v in init.items()}
    ref_state = {k: [np.zeros_like(v) for _ in slot_names] for k, v in init.items()}
    for t, (grads, lr) in enumerate(steps, start=1):
        for k, g in grads.items():
            if isinstance(g, RowGrad):
                part = [s[g.rows] for s in ref_state[k]]
                step = per_param_rule(name, hp, part, g.values, lr, t)
                for s, p in zip(ref_state[k], part):
                    s[g.rows] = p
                ref[k][g.rows] -= step
            else:
                ref[k] -= per_param_rule(name, hp, ref_state[k], g, lr, t)

    # The optimiser, resumed after 4 steps from its state_dict into fresh arrays.
    first = {k: v.copy() for k, v in init.items()}
    opt = make_optimizer(name, dict(first), **hp)
    for grads, lr in steps[:4]:
        opt.step(first, grads, lr)
    assert opt._flat is not None and opt._flat.names == ("W1", "b1", "U", "c")
    for k in ("W1", "b1", "U", "c"):  # the dict now holds views of one buffer
        assert np.shares_memory(first[k], opt._flat.param)
    saved_params = savez_roundtrip(first)
    saved_state = savez_roundtrip(opt.state_dict())
    resumed = dict(saved_params)
    opt2 = make_optimizer(name, dict(resumed), **hp)
    opt2.load_state_dict(saved_state)
    for grads, lr in steps[4:]:
        opt2.step(resumed, grads, lr)

    for k in init:
        assert resumed[k].dtype == dtype
        assert np.array_equal(resumed[k], ref[k]), k
        for slot, arr in zip(slot_names, ref_state[k]):
            assert np.array_equal(opt2.state_dict()[f"{slot}/{k}"], arr), (slot, k)
    # And flat=False (each array updated in place) agrees too.
    plain = {k: v.copy() for k, v in init.items()}
    opt3 = make_optimizer(name, plain, flat=False, **hp)
    for grads, lr in steps:
        opt3.step(plain, grads, lr)
    assert opt3._flat is None
    for k in init:
        assert np.array_equal(plain[k], ref[k]), k


def test_flat_buffers_follow_a_replaced_parameter():
    """A parameter replaced in the dict after the first step (a checkpoint loaded into it) is
    taken in: the next step updates the new values, not the old buffer."""
    rng = np.random.default_rng(3)
    init, steps = network_like(rng, np.float32)
    params = {k: v.copy() for k, v in init.items()}
    opt = make_optimizer("adam", dict(params))
    opt.step(params, *steps[0])
    new_w = rng.normal(size=init["W1"].shape).astype(np.float32)
    params["W1"] = new_w.copy()
    opt.step(params, *steps[1])
    assert np.shares_memory(params["W1"], opt._flat.param)
    ref = {k: v.copy() for k, v in params.items()}
    assert not np.array_equal(params["W1"], new_w)  # it moved from the new values
    plain = {k: v.copy() for k, v in init.items()}
    opt_plain = make_optimizer("adam", plain, flat=False)
    opt_plain.step(plain, *steps[0])
    plain["W1"] = new_w.copy()
    opt_plain.step(plain, *steps[1])
    for k in ref:
        assert np.array_equal(ref[k], plain[k]), k


def test_registries_and_slot_counts():
    params = {"W": np.zeros((2, 3), np.float32)}
    for name, cls in OPTIMIZERS.items():
        assert cls.name == name
        opt = make_optimizer(name, params, momentum=0.5)
        # The slot count memory.py reads is the number of state arrays per parameter.
        assert cls.slots_for(momentum=0.5) == len(opt.state) == opt.slots
    assert OPTIMIZERS["sgd"].slots_for(momentum=0.0) == 0
    assert len(make_optimizer("sgd", params).state) == 0
