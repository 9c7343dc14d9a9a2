"""Tests for nerwin.schedules: every schedule against its closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nerwin.schedules import SCHEDULES, Schedule, make_schedule

lrs = st.floats(1e-6, 10.0)
epochs = st.integers(0, 2000)


@settings(max_examples=100, deadline=None)
@given(lr=lrs, epoch=epochs)
def test_constant(lr, epoch):
    assert make_schedule("constant", lr).lr_at(epoch) == lr


@settings(max_examples=100, deadline=None)
@given(
    lr=lrs,
    epoch=epochs,
    factor=st.floats(0.01, 1.0),
    every=st.integers(1, 50),
)
def test_step_closed_form(lr, epoch, factor, every):
    sched = make_schedule("step", lr, factor=factor, every=every)
    expected = lr * factor ** math.floor(epoch / every)
    assert sched.lr_at(epoch) == pytest.approx(expected, rel=1e-12, abs=0.0)
    # Piecewise constant within a block of `every` epochs, then multiplied by `factor`.
    start = (epoch // every) * every
    assert sched.lr_at(start) == sched.lr_at(epoch)
    assert sched.lr_at(start + every) == pytest.approx(
        sched.lr_at(start) * factor, rel=1e-12, abs=1e-300
    )


@settings(max_examples=100, deadline=None)
@given(lr=lrs, epoch=epochs, k=st.floats(0.0, 2.0))
def test_exponential_closed_form(lr, epoch, k):
    sched = make_schedule("exponential", lr, k=k)
    expected = lr * math.exp(-k * epoch)
    assert sched.lr_at(epoch) == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_exponential_ratio_is_constant_over_many_epochs():
    sched = make_schedule("exponential", 0.5, k=0.03)
    values = np.array([sched.lr_at(e) for e in range(300)])
    assert values[0] == 0.5
    np.testing.assert_allclose(values[1:] / values[:-1], math.exp(-0.03), rtol=1e-12)


def test_halving_every_two_epochs():
    lr0 = 0.2
    sched = make_schedule("step", lr0, every=2)  # factor defaults to 0.5
    got = [sched.lr_at(e) for e in range(8)]
    assert got == [lr0, lr0, lr0 / 2, lr0 / 2, lr0 / 4, lr0 / 4, lr0 / 8, lr0 / 8]


def test_default_step_halves_every_epoch():
    sched = make_schedule("step", 1.0)
    assert [sched.lr_at(e) for e in range(4)] == [1.0, 0.5, 0.25, 0.125]


def test_epoch_zero_is_lr0_for_every_schedule():
    for name in SCHEDULES:
        sched = make_schedule(name, 0.3)
        assert isinstance(sched, Schedule)
        assert sched.lr_at(0) == 0.3
        assert sched.lr_at(np.int64(0)) == 0.3
        assert isinstance(sched.lr_at(5), float)


def test_describe_is_readable():
    assert make_schedule("constant", 0.1).describe() == "constant: lr = 0.1"
    d = make_schedule("step", 0.1, factor=0.5, every=3).describe()
    assert d.startswith("step:") and "0.1" in d and "0.5" in d and "3" in d
    d = make_schedule("exponential", 0.1, k=0.05).describe()
    assert d.startswith("exponential:") and "0.1" in d and "0.05" in d and "exp" in d


def test_names_and_validation():
    assert tuple(SCHEDULES) == ("constant", "step", "exponential")
    with pytest.raises(ValueError) as info:
        make_schedule("cosine", 0.1)
    for name in SCHEDULES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="learning rate"):
        make_schedule("constant", 0.0)
    with pytest.raises(ValueError, match="factor"):
        make_schedule("step", 0.1, factor=0.0)
    with pytest.raises(ValueError, match="every"):
        make_schedule("step", 0.1, every=0)
    with pytest.raises(ValueError, match="every"):
        make_schedule("step", 0.1, every=1.5)
    with pytest.raises(ValueError, match="k must"):
        make_schedule("exponential", 0.1, k=-1.0)
    for name in SCHEDULES:
        with pytest.raises(ValueError, match="epoch"):
            make_schedule(name, 0.1).lr_at(-1)
        with pytest.raises(ValueError, match="epoch"):
            make_schedule(name, 0.1).lr_at(1.5)


@pytest.mark.parametrize(("name", "section", "epoch", "expected"), [
    ("constant", {"factor": 0.1, "every": 7, "k": 3.0}, 5, 0.2),
    ("step", {"factor": 0.5, "every": 2, "k": 3.0}, 5, 0.2 * 0.5**2),
    ("exponential", {"factor": 0.1, "every": 7, "k": 0.3}, 5, 0.2 * math.exp(-1.5)),
])
def test_registry_from_config_reads_only_its_own_keys(name, section, epoch, expected):
    from types import SimpleNamespace

    cls = SCHEDULES[name]
    assert cls.name == name
    sched = cls.from_config(0.2, SimpleNamespace(**section))
    assert isinstance(sched, cls)
    assert sched.lr_at(epoch) == pytest.approx(expected, rel=1e-15)
    # The same schedule as make_schedule builds from keywords.
    assert sched.lr_at(epoch) == make_schedule(name, 0.2, **section).lr_at(epoch)
