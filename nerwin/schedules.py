"""Learning-rate schedules: the learning rate as a function of the 0-based epoch index.

==============  ===========================================  ================================
constant        lr(e) = lr0
step            lr(e) = lr0 · factor^⌊e / every⌋            "halve every k epochs" (factor ½)
exponential     lr(e) = lr0 · exp(-k · e)                    the lectures' lr = lr0·e^{-kt}
==============  ===========================================  ================================

The epoch index e starts at 0, so every schedule begins at lr(0) = lr0.
"""

from __future__ import annotations

import math
import operator
from typing import Any

__all__ = [
    "SCHEDULES",
    "ConstantSchedule",
    "ExponentialSchedule",
    "Schedule",
    "StepSchedule",
    "make_schedule",
]


def _epoch_index(epoch: int) -> int:
    """Return ``epoch`` as a Python int >= 0 (numpy integers accepted; floats and bools not)."""
    if isinstance(epoch, bool):
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    try:
        e = operator.index(epoch)
    except TypeError:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}") from None
    if e < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {e}")
    return e


class Schedule:
    """Base class: ``lr_at(epoch)`` gives the learning rate of that 0-based epoch."""

    name: str = "schedule"
    #: constructor keywords besides lr, read from the schedule's config section by from_config
    hyperparameters: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        lr = float(lr)
        if not (lr > 0.0 and math.isfinite(lr)):
            raise ValueError(f"learning rate must be a positive finite number, got {lr!r}")
        self.lr0 = lr

    @classmethod
    def from_config(cls, lr: float, cfg: Any) -> Schedule:
        """Build it starting at ``lr`` from a config section with an attribute per
        hyperparameter (``training.schedule``); only its own hyperparameters are read."""
        return cls(lr, **{h: getattr(cfg, h) for h in cls.hyperparameters})

    def lr_at(self, epoch: int) -> float:
        """Learning rate for 0-based ``epoch``."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line with the schedule's name and formula, e.g. for logs."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


class ConstantSchedule(Schedule):
    """lr(e) = lr0."""

    name = "constant"

    def lr_at(self, epoch: int) -> float:
        _epoch_index(epoch)
        return self.lr0

    def describe(self) -> str:
        return f"constant: lr = {self.lr0:g}"


class StepSchedule(Schedule):
    """lr(e) = lr0 · factor^⌊e / every⌋: multiply by ``factor`` once every ``every`` epochs."""

    name = "step"
    hyperparameters = ("factor", "every")

    def __init__(self, lr: float, *, factor: float = 0.5, every: int = 1) -> None:
        super().__init__(lr)
        factor = float(factor)
        if not (0.0 < factor <= 1.0):
            raise ValueError(f"step schedule: factor must be in (0, 1], got {factor!r}")
        try:
            every_i = operator.index(every) if not isinstance(every, bool) else 0
        except TypeError:
            every_i = 0
        if every_i < 1:
            raise ValueError(f"step schedule: every must be an integer >= 1, got {every!r}")
        self.factor = factor
        self.every = every_i

    def lr_at(self, epoch: int) -> float:
        # Integer division, so the decay count is exact (no float floor of e / every).
        return self.lr0 * self.factor ** (_epoch_index(epoch) // self.every)

    def describe(self) -> str:
        return (
            f"step: lr = {self.lr0:g} * {self.factor:g}^floor(epoch / {self.every})"
            f" (x{self.factor:g} every {self.every} epoch{'s' if self.every != 1 else ''})"
        )


class ExponentialSchedule(Schedule):
    """lr(e) = lr0 · exp(-k · e)."""

    name = "exponential"
    hyperparameters = ("k",)

    def __init__(self, lr: float, *, k: float = 0.1) -> None:
        super().__init__(lr)
        k = float(k)
        if not (k >= 0.0 and math.isfinite(k)):
            raise ValueError(f"exponential schedule: k must be a finite number >= 0, got {k!r}")
        self.k = k

    def lr_at(self, epoch: int) -> float:
        return self.lr0 * math.exp(-self.k * _epoch_index(epoch))

    def describe(self) -> str:
        return f"exponential: lr = {self.lr0:g} * exp(-{self.k:g} * epoch)"


#: The schedules by config name (training.schedule.name); the CLI and the config's checks take
#: their choices from it.
SCHEDULES: dict[str, type[Schedule]] = {
    c.name: c for c in (ConstantSchedule, StepSchedule, ExponentialSchedule)}


def make_schedule(
    name: str, lr: float, *, factor: float = 0.5, every: int = 1, k: float = 0.1
) -> Schedule:
    """Build schedule ``name`` (one of :data:`SCHEDULES`) starting at ``lr``.

    ``factor`` and ``every`` are read only by "step", ``k`` only by "exponential". Raises
    ValueError for an unknown name (listing the valid ones) or an out-of-range argument.
    """
    cls = SCHEDULES.get(name)
    if cls is None:
        raise ValueError(f"unknown schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
    given = {"factor": factor, "every": every, "k": k}
    return cls(lr, **{h: given[h] for h in cls.hyperparameters})
