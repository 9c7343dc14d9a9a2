"""The search space of ``nerwin sweep``: SPACE.yaml maps dotted config keys to distributions.

    training.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-1]}
    model.nonlinearity: {choice: [tanh, relu]}
    model.init_scale: {uniform: [0.01, 0.5]}
    features.window: {int: [1, 3]}

:func:`load_space` reads and checks it (every choice and both ends of every range are
applied to the config and validated as a ``--set`` would be); :func:`suggest` draws a value
from an Optuna trial and :func:`param_value` reads a stored one back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerwin.errors import NerwinError

KINDS = ("choice", "uniform", "log_uniform", "int")


@dataclass(frozen=True)
class Dim:
    """One searched key: ``kind`` in KINDS; ``values`` the choices or (low, high)."""

    key: str
    kind: str
    values: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "values": list(self.values)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def override(key: str, value: Any) -> str:
    """A ``--set`` string: JSON is YAML, so the value loads back with its type."""
    return f"{key}={json.dumps(value)}"


def parse_space(raw: Any, source: str) -> list[Dim]:
    """Check the shape of a space mapping (key -> {kind: [values]}); return its dims."""
    if not isinstance(raw, dict) or not raw:
        raise NerwinError(f"{source}: expected a mapping of config keys to distributions, "
                          f"e.g. training.optimizer.lr: {{log_uniform: [1.0e-4, 1.0e-1]}}")
    dims = []
    for key, spec in raw.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise NerwinError(f"{source}: {key!r}: expected a dotted config key, "
                              f"e.g. training.optimizer.lr")
        if key == "output.dir" or key.startswith("output."):
            raise NerwinError(f"{source}: {key}: the sweep sets the run directory "
                              f"(DIR/trial-NNNN); it cannot be searched")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise NerwinError(f"{source}: {key}: expected one of {{choice: [...]}}, "
                              f"{{uniform: [a, b]}}, {{log_uniform: [a, b]}}, {{int: [a, b]}}; "
                              f"got {spec!r}")
        kind, values = next(iter(spec.items()))
        if not isinstance(values, list) or not values:
            raise NerwinError(f"{source}: {key}: {kind} needs a non-empty list, got {values!r}")
        if kind == "choice":
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise NerwinError(f"{source}: {key}: choice lists a value twice: {values!r}")
        else:
            lo_hi = values
            ok = len(lo_hi) == 2 and all(_is_number(v) for v in lo_hi) and lo_hi[0] < lo_hi[1]
            if kind == "int":
                ok = ok and all(isinstance(v, int) for v in lo_hi)
            if kind == "log_uniform":
                ok = ok and lo_hi[0] > 0
            if not ok:
                need = {"uniform": "two numbers a < b", "int": "two integers a < b",
                        "log_uniform": "two numbers 0 < a < b"}[kind]
                raise NerwinError(f"{source}: {key}: {kind} needs [a, b] with {need}; "
                                  f"got {values!r}")
        dims.append(Dim(key, kind, tuple(values)))
    return dims


def load_space(space_path: str | Path, config_path: str | Path,
               overrides: list[str]) -> list[Dim]:
    """Read SPACE.yaml and validate every key and value against CONFIG, like ``--set``.

    Each choice, and both ends of each range, is applied to the config and validated by
    :func:`nerwin.config.load_config`; an error names SPACE.yaml and the key.
    """
    from nerwin.config import ConfigError, _read_yaml, load_config

    source = str(space_path)
    dims = parse_space(_read_yaml(Path(space_path)), source)
    for d in dims:
        # every choice; both ends of a range, as the sampler gives them (a float for
        # uniform: an integer key is refused here, not in every trial)
        for v in d.values if d.kind in ("choice", "int") else map(float, d.values):
            try:
                load_config(config_path, [*overrides, override(d.key, v)])
            except ConfigError as e:
                rest = str(e)[len(e.source) + 2:]
                if e.key == d.key or d.key.startswith(e.key + "."):
                    raise NerwinError(f"{source}: {rest}") from None
                raise NerwinError(f"{source}: {d.key} = {v!r}: {rest}") from None
    return dims


def suggest(trial: Any, d: Dim) -> Any:
    if d.kind == "choice":
        # Optuna's categoricals hold scalars only; a list choice ([200, 100]) goes as JSON.
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in d.values):
            return trial.suggest_categorical(d.key, list(d.values))
        return json.loads(trial.suggest_categorical(d.key, [json.dumps(v) for v in d.values]))
    if d.kind == "int":
        return trial.suggest_int(d.key, d.values[0], d.values[1])
    return trial.suggest_float(d.key, float(d.values[0]), float(d.values[1]),
                               log=d.kind == "log_uniform")


def param_value(d: Dim, stored: Any) -> Any:
    """A trial's stored param as the config value (JSON-encoded list choices decoded)."""
    if d.kind == "choice" and isinstance(stored, str) and not any(
            isinstance(v, str) for v in d.values):
        return json.loads(stored)
    return stored
