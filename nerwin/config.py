"""The run configuration: YAML -> typed, frozen dataclasses, with validation and overrides.

A config file has five sections (``data``, ``features``, ``model``, ``training``, ``output``);
every key has a default except ``data.train``. Every error names the config file and the
dotted key (``training.optimizer.lr``) and says what was expected. Relative paths written in
the file resolve against the folder of the config file, so a config can be run from anywhere;
a key written twice is an error (YAML would keep the last silently).

Overrides (``--set training.optimizer.lr=0.01``) are parsed as YAML scalars and validated
exactly like the file; their paths resolve against the current folder, as typed in a shell.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import json
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from nerwin import conll, optim, schedules
from nerwin.errors import NerwinError, os_error
from nerwin.nn import init, layers, output

# The choices come from the modules that implement them: one list each, no copies to drift.
SCHEMES = ("auto", *conll.SCHEMES)
NONLINEARITIES = tuple(layers.NONLINEARITIES)
INITS = tuple(init.INITS)
HEADS = output.HEADS
DECODERS = output.DECODERS
OPTIMIZERS = tuple(optim.OPTIMIZERS)
SCHEDULES = tuple(schedules.SCHEDULES)


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``); ``lr: 1e-3`` would
    otherwise be the string "1e-3" and fail validation for no reason a user can see.
    """


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def safe_load(text: str, source: str = "<yaml>", prefix: str = "") -> Any:
    """yaml.safe_load with YAML 1.2-style floats (``1e-3``) that refuses repeated keys.

    PyYAML keeps the last of two equal keys without a word, so a second ``training:``
    section would silently drop the first: a :class:`ConfigError` names the key (dotted) and
    both lines instead.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_repeated_keys(node, source, prefix)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_repeated_keys(node: yaml.Node, source: str, prefix: str) -> None:
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_repeated_keys(item, source, prefix)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        key = f"{prefix}.{name}" if prefix else str(name)
        line = key_node.start_mark.line + 1
        if name is not None and name != "<<":
            if name in first:
                where = source if source.startswith("--set") else f"{source}:{line}"
                raise ConfigError(where, key, f"repeated key (first on line {first[name]}); "
                                  f"YAML would keep only the last one: merge them into one")
            first[name] = line
        _check_repeated_keys(value_node, source, key)


def _meta(doc: str, *, choices: tuple[str, ...] | None = None, minimum: float | None = None,
          exclusive_min: bool = False, maximum: float | None = None,
          exclusive_max: bool = False, path: str | None = None,
          many: bool = False) -> dict[str, Any]:
    """Field metadata: a one-line doc, allowed choices, numeric range, path kind (``many``:
    a path key that also takes a non-empty list of paths)."""
    return {"doc": doc, "choices": choices, "min": minimum, "exclusive_min": exclusive_min,
            "max": maximum, "exclusive_max": exclusive_max, "path": path, "many": many}


@dataclass(frozen=True)
class DataConfig:
    # A path, or a list of paths (train + dev for a final run): a tuple[Path, ...] then.
    train: Path | None = field(default=None, metadata=_meta(
        "training file in CoNLL columns, or a list of them read in turn as one corpus "
        "(required)", path="file", many=True))
    dev: Path | None = field(default=None, metadata=_meta(
        "development file: dev scores each epoch, early stopping, model-best", path="file"))
    test: Path | None = field(default=None, metadata=_meta(
        "test file: scored once with the best model at the end of training", path="file"))
    tag_column: int = field(default=-1, metadata=_meta(
        "column that holds the NER tag (0-based; -1 = last)"))
    scheme: str = field(default="auto", metadata=_meta(
        "tag scheme of the files; auto detects it from the tag prefixes", choices=SCHEMES))


@dataclass(frozen=True)
class FeaturesConfig:
    window: int = field(default=2, metadata=_meta(
        "m: words on each side of the centre word (the window has 2m+1)", minimum=0))
    vectors: Path | None = field(default=None, metadata=_meta(
        "pretrained word vectors, GloVe/word2vec text, plain or .gz (null = random init)",
        path="file"))
    dim: int = field(default=50, metadata=_meta(
        "word vector dimension (must match the vectors file)", minimum=1))
    freeze: bool = field(default=False, metadata=_meta(
        "keep the word vectors fixed (true) or fine-tune them (false)"))
    lowercase: bool = field(default=True, metadata=_meta("lowercase words before lookup"))
    digits: bool = field(default=True, metadata=_meta("replace every digit by 0"))
    casing_dim: int = field(default=5, metadata=_meta(
        "size of the casing-feature embedding (0 = no casing feature)", minimum=0))
    min_count: int = field(default=1, metadata=_meta(
        "words seen fewer times in train map to <unk> (unless they have a vector)", minimum=1))
    max_size: int | None = field(default=None, metadata=_meta(
        "keep at most this many words from train, most frequent first", minimum=1))
    prefixes: tuple[int, ...] = field(default=(), metadata=_meta(
        "prefix lengths, one table each, e.g. [2, 3] (of the lowercased word; [] = none)",
        minimum=1))
    suffixes: tuple[int, ...] = field(default=(), metadata=_meta(
        "suffix lengths, one table each, e.g. [2, 3] (of the lowercased word; [] = none)",
        minimum=1))
    affix_dim: int = field(default=20, metadata=_meta(
        "size of each prefix/suffix embedding", minimum=1))
    affix_min_count: int = field(default=2, metadata=_meta(
        "prefixes, suffixes and shapes seen fewer times in train map to <unk>", minimum=1))
    shape_dim: int = field(default=0, metadata=_meta(
        "size of the word-shape embedding (Xxxx, XX, dd.d; 0 = no shape feature)",
        minimum=0))
    char_filters: int = field(default=0, metadata=_meta(
        "filters of the character encoder (conv over characters, max over the word; "
        "0 = no character encoder)", minimum=0))
    char_dim: int = field(default=25, metadata=_meta(
        "size of the character embeddings", minimum=1))
    char_width: int = field(default=3, metadata=_meta(
        "characters per convolution window (odd, at most char_max_len)", minimum=1))
    char_max_len: int = field(default=20, metadata=_meta(
        "characters kept per word: a longer word keeps its first half and last half",
        minimum=1))
    gazetteers: dict[str, Path] | None = field(default=None, metadata=_meta(
        "named entry lists, e.g. {LOC: lists/loc.txt}: one UTF-8 entry a line (# comments); "
        "each adds a table of the token's place in a longest match (null = none)",
        path="files"))
    gazetteer_lowercase: bool = field(default=True, metadata=_meta(
        "match gazetteer entries case-insensitively"))
    gazetteer_dim: int = field(default=5, metadata=_meta(
        "size of each gazetteer's match embedding", minimum=1))


@dataclass(frozen=True)
class BlockConfig:
    """One entry of model.blocks: a convolution block over the previous block's outputs
    within each sentence (nerwin.nn.blocks.Conv)."""

    width: int = field(default=3, metadata=_meta(
        "tokens each output reads, odd: 3 = the token and one neighbour each side", minimum=1))
    units: int = field(default=300, metadata=_meta("output units", minimum=1))
    nonlinearity: str = field(default="relu", metadata=_meta(
        "f of the block", choices=NONLINEARITIES))
    dropout: float = field(default=0.0, metadata=_meta(
        "inverted-dropout rate on its output", minimum=0, maximum=1, exclusive_max=True))


@dataclass(frozen=True)
class ModelConfig:
    hidden: tuple[int, ...] = field(default=(100,), metadata=_meta(
        "hidden layer sizes, e.g. [300] or [200, 100]; [] for a linear model", minimum=1))
    nonlinearity: str = field(default="tanh", metadata=_meta(
        "f in h = f(Wx + b)", choices=NONLINEARITIES))
    init: str = field(default="xavier_uniform", metadata=_meta(
        "initialisation of weights and non-pretrained embeddings", choices=INITS))
    init_scale: float = field(default=0.1, metadata=_meta(
        "a of uniform(-a, a) or sigma of normal(0, sigma)", minimum=0, exclusive_min=True))
    dropout: float = field(default=0.0, metadata=_meta(
        "inverted-dropout rate on hidden activations", minimum=0, maximum=1,
        exclusive_max=True))
    word_dropout: float = field(default=0.0, metadata=_meta(
        "in training, replace each word of a window by <unk> with this probability",
        minimum=0, maximum=1, exclusive_max=True))
    input_dropout: float = field(default=0.0, metadata=_meta(
        "inverted-dropout rate on the window vector x (training only)",
        minimum=0, maximum=1, exclusive_max=True))
    blocks: tuple[BlockConfig, ...] = field(default=(), metadata=_meta(
        "convolution blocks after the hidden layers, each {width: 3, units: 300, "
        "nonlinearity: relu, dropout: 0.0}: token t reads the previous layer's outputs "
        "at t-1..t+1 of its sentence (zeros beyond its ends); batches become whole "
        "sentences"))
    head: str = field(default="softmax", metadata=_meta(
        "softmax over all tags, the logistic score of one entity type, or a linear-chain "
        "CRF over the tag scores (sentence-level likelihood)", choices=HEADS))
    positive: str | None = field(default=None, metadata=_meta(
        "entity type for the logistic head, e.g. LOC"))
    decode: str | None = field(default=None, metadata=_meta(
        "softmax head only: viterbi (best valid IOB2 path over the log-probabilities; "
        "null = viterbi) or argmax per token", choices=DECODERS))
    constrained: bool = field(default=True, metadata=_meta(
        "crf and viterbi decoding: forbid the transitions IOB2 does not allow "
        "(O → I-X, B-X → I-Y, start → I-X; with scheme iobes, IOBES's rules)"))
    scheme: str = field(default="iob2", metadata=_meta(
        "the tags the model trains on and decodes in (softmax and crf heads); files in any "
        "scheme are converted on reading, and eval, predictions and tag output stay IOB2",
        choices=("iob2", "iobes")))


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = field(default="adam", metadata=_meta("optimiser", choices=OPTIMIZERS))
    lr: float = field(default=0.001, metadata=_meta(
        "learning rate", minimum=0, exclusive_min=True))
    momentum: float = field(default=0.0, metadata=_meta(
        "SGD momentum", minimum=0, maximum=1, exclusive_max=True))
    beta1: float = field(default=0.9, metadata=_meta(
        "Adam first-moment decay", minimum=0, maximum=1, exclusive_max=True))
    beta2: float = field(default=0.999, metadata=_meta(
        "Adam second-moment decay", minimum=0, maximum=1, exclusive_max=True))
    rho: float = field(default=0.9, metadata=_meta(
        "RMSprop decay of the squared-gradient average", minimum=0, maximum=1,
        exclusive_max=True))
    eps: float = field(default=1e-8, metadata=_meta(
        "added to the denominator of Adagrad/RMSprop/Adam", minimum=0, exclusive_min=True))


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = field(default="constant", metadata=_meta(
        "learning-rate schedule over epochs", choices=SCHEDULES))
    factor: float = field(default=0.5, metadata=_meta(
        "step: multiply the rate by this every `every` epochs", minimum=0,
        exclusive_min=True, maximum=1))
    every: int = field(default=1, metadata=_meta("step: epochs between decays", minimum=1))
    k: float = field(default=0.1, metadata=_meta(
        "exponential: lr = lr0 · exp(-k · epoch)", minimum=0))


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = field(default=10, metadata=_meta("passes over the training data", minimum=1))
    batch_size: int = field(default=32, metadata=_meta(
        "windows per minibatch (crf head or model.blocks: tokens per minibatch, filled with "
        "whole sentences)",
        minimum=1))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    l2: float = field(default=0.0, metadata=_meta(
        "L2 penalty (l2/2)·‖W‖² on weight matrices (not biases, not embeddings)",
        minimum=0))
    l1: float = field(default=0.0, metadata=_meta(
        "L1 penalty l1·Σ‖W‖₁ on weight matrices (not biases, not embeddings)", minimum=0))
    clip: float | None = field(default=None, metadata=_meta(
        "clip gradients to this global L2 norm (null = no clipping)", minimum=0,
        exclusive_min=True))
    seed: int = field(default=0, metadata=_meta("seed of every random draw", minimum=0))
    patience: int | None = field(default=3, metadata=_meta(
        "stop after this many epochs without a better dev F1 (null = never stop early)",
        minimum=1))


@dataclass(frozen=True)
class OutputConfig:
    dir: Path | None = field(default=None, metadata=_meta(
        "run directory: config.yaml, metrics.jsonl, best/, last/ "
        "(null = runs/<config name> under the current folder)", path="dir"))


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # Where the config came from, for messages; not part of the YAML.
    source: str = field(default="<defaults>", compare=False, repr=False,
                        metadata={"internal": True})


class ConfigError(NerwinError):
    """A config value that is missing, unknown, of the wrong type or out of range."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}")
        self.source, self.key = source, key


# ---------------------------------------------------------------------------------------
# Building dataclasses from plain dicts


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _public_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _type_name(tp: Any) -> str:
    if tp is Path:
        return "a path"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) is tuple:
        return "a list of integers"
    if typing.get_origin(tp) is dict:
        return "a mapping of names to paths"
    return getattr(tp, "__name__", str(tp))


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


def _coerce(value: Any, tp: Any, f: dataclasses.Field, source: str, key: str,
            base: Path) -> Any:
    """Check ``value`` against the field's type and metadata; return the typed value."""
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(source, key, f"must not be null; expected {_type_name(inner)}")
    meta = f.metadata

    def bad(expected: str) -> ConfigError:
        return ConfigError(source, key, f"expected {expected}, got {value!r}")

    if inner is bool:
        # Only real YAML booleans: NCRF++ read any string but "True" as False.
        if not isinstance(value, bool):
            raise bad("true or false")
        out: Any = value
    elif inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        out = value
    elif inner is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        out = float(value)
        if not math.isfinite(out):
            raise bad("a finite number")
    elif inner is str:
        if not isinstance(value, str):
            raise bad("a string")
        out = value
    elif inner is Path and meta.get("many") and isinstance(value, (list, tuple)):
        if not value or any(not isinstance(v, str) or not v for v in value):
            raise bad("a path or a non-empty list of paths (strings)")
        out = tuple(_path(v, base) for v in value)
    elif inner is Path:
        if not isinstance(value, str) or not value:
            raise bad("a path or a list of paths (strings)" if meta.get("many")
                      else "a path (a string)")
        out = _path(value, base)
    elif typing.get_origin(inner) is tuple and dataclasses.is_dataclass(
            typing.get_args(inner)[0]):
        if not isinstance(value, (list, tuple)):
            raise bad("a list of mappings, e.g. [{width: 3, units: 300}]")
        item = typing.get_args(inner)[0]
        out = tuple(_build(item, v, source, f"{key}[{i}]", base) for i, v in enumerate(value))
    elif typing.get_origin(inner) is dict:
        # A named map of files (features.gazetteers): names as the ids of tables and ONNX
        # inputs, so letters, digits and _ only; each path relative to the config's folder.
        if not isinstance(value, dict) or not value:
            raise bad("a mapping of names to file paths, e.g. {LOC: lists/loc.txt}")
        out = {}
        for name, v in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ConfigError(source, key, f"expected names of letters, digits and _, "
                                  f"got {name!r}")
            if not isinstance(v, str) or not v:
                raise ConfigError(source, f"{key}.{name}", f"expected a path (a string), "
                                  f"got {v!r}")
            out[name] = _path(v, base)
    elif typing.get_origin(inner) is tuple:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad("a list of integers, e.g. [300]")
        out = tuple(value)
    else:  # pragma: no cover - a field type this loader does not know is a bug here
        raise TypeError(f"unsupported config type {inner!r} for {key}")

    choices = meta.get("choices")
    if choices and out not in choices:
        hint = difflib.get_close_matches(str(out), choices, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(source, key, f"expected one of {', '.join(choices)}; got {out!r}{did}")
    lo, hi = meta.get("min"), meta.get("max")
    for v in (out if isinstance(out, tuple) else (out,)):
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if lo is not None and (v < lo or (meta.get("exclusive_min") and v == lo)):
            op = ">" if meta.get("exclusive_min") else ">="
            raise ConfigError(source, key, f"must be {op} {lo}; got {v!r}")
        if hi is not None and (v > hi or (meta.get("exclusive_max") and v == hi)):
            op = "<" if meta.get("exclusive_max") else "<="
            raise ConfigError(source, key, f"must be {op} {hi}; got {v!r}")
    return out


def _build(cls: type, raw: Any, source: str, prefix: str, base: Path) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        where = prefix or "the top level"
        raise ConfigError(source, where, f"expected a mapping of keys, got {raw!r}")
    hints = _hints(cls)
    fields = {f.name: f for f in _public_fields(cls)}
    for k in raw:
        if k not in fields:
            key = f"{prefix}.{k}" if prefix else str(k)
            hint = difflib.get_close_matches(str(k), list(fields), n=1)
            did = f" (did you mean {(prefix + '.' if prefix else '') + hint[0]!r}?)" if hint else ""
            raise ConfigError(source, key, f"unknown key{did}; valid keys here: "
                              f"{', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw.get(name), source, key, base)
        elif name in raw:
            kwargs[name] = _coerce(raw[name], tp, f, source, key, base)
    return cls(**kwargs)


def _check_cross_fields(cfg: Config) -> None:
    src = cfg.source
    if cfg.data.train is None:
        raise ConfigError(src, "data.train", "required: the path of a CoNLL training file")
    # The head says which model.* keys it reads (nerwin.nn.output.Head.KEYS).
    defaults = {fl.name: fl.default for fl in dataclasses.fields(ModelConfig)}
    problem = output.HEAD_CLASSES[cfg.model.head].config_problem(cfg.model, defaults)
    if problem is not None:
        raise ConfigError(src, f"model.{problem[0]}", problem[1])
    for i, b in enumerate(cfg.model.blocks):
        if b.width % 2 == 0:
            raise ConfigError(src, f"model.blocks[{i}].width", f"expected an odd width (the "
                              f"block reads the token and as many neighbours on each "
                              f"side); got {b.width}")
    f = cfg.features
    if f.char_filters > 0:
        if f.char_width % 2 == 0:
            raise ConfigError(src, "features.char_width", f"expected an odd width (the "
                              f"window is centred on each character); got {f.char_width}")
        if f.char_width > f.char_max_len:
            raise ConfigError(src, "features.char_width", f"must be <= features.char_max_len "
                              f"({f.char_max_len}); got {f.char_width}")
    for key in ("prefixes", "suffixes"):
        lengths = getattr(f, key)
        if len(set(lengths)) != len(lengths):
            raise ConfigError(src, f"features.{key}", f"lengths must be distinct; got "
                              f"{list(lengths)}")
    if cfg.features.freeze and cfg.features.vectors is None:
        raise ConfigError(src, "features.freeze", "freezing needs pretrained vectors "
                          "(features.vectors); random vectors that never train are useless")
    for i, p in enumerate(train_files(cfg)):
        _check_readable(src, "data.train" if isinstance(cfg.data.train, Path)
                        else f"data.train[{i}]", p)
    for key in ("data.dev", "data.test", "features.vectors"):
        section, name = key.split(".")
        p = getattr(getattr(cfg, section), name)
        if p is not None:
            _check_readable(src, key, Path(p))
    for name, p in (cfg.features.gazetteers or {}).items():
        _check_readable(src, f"features.gazetteers.{name}", Path(p))


def train_files(cfg: Config) -> tuple[Path, ...]:
    """The training files: ``data.train`` as a tuple (one path or the configured list)."""
    t = cfg.data.train
    if t is None:
        return ()
    return tuple(Path(p) for p in t) if isinstance(t, tuple) else (Path(t),)


def _check_readable(source: str, key: str, p: Path) -> None:
    """Open ``p`` once, so any reason it cannot be read names the config key."""
    try:
        with open(p, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(source, key, f"no such file: {p}") from None
    except IsADirectoryError:
        raise ConfigError(source, key, f"{p} is a folder; expected a file") from None
    except PermissionError:
        raise ConfigError(source, key, f"permission denied: cannot read {p}") from None
    except OSError as e:
        why = "symbolic link loop" if e.errno == errno.ELOOP else (e.strerror or str(e))
        raise ConfigError(source, key, f"{why}: cannot read {p}") from None


def from_dict(raw: Any, *, source: str = "<config>", base: Path | None = None,
              check_files: bool = True) -> Config:
    """Build and validate a :class:`Config` from a plain dict (as YAML gives)."""
    base = Path.cwd() if base is None else base
    cfg = _build(Config, raw, source, "", base)
    cfg = dataclasses.replace(cfg, source=source)
    if cfg.output.dir is None:
        name = Path(source).stem if source.endswith((".yaml", ".yml")) else "nerwin"
        cfg = dataclasses.replace(cfg, output=OutputConfig(dir=Path.cwd() / "runs" / name))
    if check_files:
        _check_cross_fields(cfg)
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """``"training.optimizer.lr=0.01"`` -> ``("training.optimizer.lr", 0.01)``.

    The value is read as a YAML scalar (or flow list: ``model.hidden=[200,100]``), so
    ``true``, ``null``, ``3`` and ``1e-3`` get their types; anything else stays a string.
    """
    if "=" not in text:
        raise NerwinError(f"--set {text!r}: expected KEY=VALUE, e.g. training.optimizer.lr=0.01")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise NerwinError(f"--set {text!r}: the key must be dotted, e.g. training.epochs")
    try:
        parsed = safe_load(value, f"--set {text!r}", key) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def path_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """The dotted keys whose values are paths (``data.train``, ``output.dir``, ...)."""
    out = set()
    hints = _hints(cls)
    for f in _public_fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out |= path_keys(hints[f.name], key)
        elif f.metadata.get("path"):
            out.add(key)
    return out


def _resolve_cli_paths(key: str, value: Any, cwd: Path) -> Any:
    """Make the paths of an override absolute against ``cwd`` (the folder nerwin runs in).

    A path typed on the command line means what the shell means by it, whichever folder
    the config file is in; the paths written in the config file stay relative to it.
    """
    if isinstance(value, dict):
        return {k: _resolve_cli_paths(f"{key}.{k}", v, cwd) for k, v in value.items()}
    keys = path_keys()
    if key in keys and isinstance(value, list):  # data.train: [A, B]
        return [_resolve_cli_paths(key, v, cwd) for v in value]
    # a named map of paths (features.gazetteers.NAME) is resolved entry by entry
    if (key in keys or key.rpartition(".")[0] in keys) and isinstance(value, str) and value:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else cwd / p)
    return value


def apply_overrides(raw: dict, overrides: list[str], source: str) -> dict:
    """Set each dotted key of ``overrides`` in the nested dict ``raw`` (a copy is returned).

    Path values (:func:`path_keys`) are made absolute against the current folder.
    """
    import copy

    raw = copy.deepcopy(raw) if raw else {}
    cwd = Path.cwd()
    for text in overrides:
        key, value = parse_override(text)
        value = _resolve_cli_paths(key, value, cwd)
        node = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(source, ".".join(parts[: i + 1]),
                                  f"--set {text!r}: this key holds a value, not a section")
            node = child
        node[parts[-1]] = value
    return raw


def _read_yaml(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise NerwinError(f"{path}: no such config file") from None
    except OSError as e:
        raise os_error(path, e, "a YAML config file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NerwinError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return safe_load(text, str(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e)
        raise NerwinError(f"{where}: invalid YAML: {problem}") from None


def load_config(path: str | Path, overrides: list[str] | None = None, *,
                check_files: bool = True) -> Config:
    """Read a YAML config, apply ``--set`` overrides, validate, resolve paths."""
    path = Path(path)
    raw = _read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "the top level", "expected a mapping with sections "
                          "data, features, model, training, output")
    raw = apply_overrides(raw, list(overrides or []), str(path))
    return from_dict(raw, source=str(path), base=path.resolve().parent,
                     check_files=check_files)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML-able data (paths as absolute strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in _public_fields(type(cfg)):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, Path):
            out[f.name] = str(v)
        elif isinstance(v, tuple):
            out[f.name] = [to_dict(x) if dataclasses.is_dataclass(x)
                           else str(x) if isinstance(x, Path) else x for x in v]
        elif isinstance(v, dict):
            out[f.name] = {k: str(x) for k, x in v.items()}
        else:
            out[f.name] = v
    return out


def dump_yaml(cfg: Config) -> str:
    """The resolved config as YAML that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def describe_keys(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default as JSON, doc) for every key: the reference table of the docs."""
    rows = []
    hints = _hints(cls)
    for f in _public_fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_keys(tp, key))
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(default, tuple):
            default = list(default)
        doc = f.metadata.get("doc", "")
        choices = f.metadata.get("choices")
        if choices:
            doc += f"; one of {', '.join(choices)}"
        rows.append((key, json.dumps(default), doc))
    return rows


def keys_markdown() -> str:
    """The config reference as a Markdown table (docs/config.md holds a copy; a test compares)."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{d}` | {doc} |" for k, d, doc in describe_keys()]
    return "\n".join(lines) + "\n"


def starter_yaml() -> str:
    """A config file with every key at its default, each under a one-line comment.

    What ``nerwin config init`` writes: the facts of :func:`describe_keys` (the same as
    ``nerwin config keys``), laid out as YAML that loads back to the default config.
    Defaults are written as JSON, which is YAML too.
    """
    lines = ["# nerwin config: every key at its default (see `nerwin config keys`).",
             "# Paths are relative to this file. Set data.train (at least) before training.",
             "# Any key can also be overridden on the command line: --set model.hidden=[300]"]
    open_sections: list[str] = []
    for key, default, doc in describe_keys():
        *sections, name = key.split(".")
        common = 0
        while (common < min(len(sections), len(open_sections))
               and sections[common] == open_sections[common]):
            common += 1
        for depth in range(common, len(sections)):
            if depth == 0:
                lines.append("")
            lines.append(f"{'  ' * depth}{sections[depth]}:")
        open_sections = sections
        indent = "  " * len(sections)
        lines.append(f"{indent}# {doc}")
        lines.append(f"{indent}{name}: {default}")
    return "\n".join(lines) + "\n"


def _override_text(key: str, value: Any) -> str:
    """``--set`` text of one override: strings as given, anything else as JSON (a YAML
    flow scalar or list, which the config loader reads back to the same value)."""
    if not isinstance(key, str) or not key:
        raise NerwinError(f"overrides: expected dotted config keys, got {key!r}")
    return f"{key}={value}" if isinstance(value, str) else f"{key}={json.dumps(value)}"


def resolve_config(config: str | Path | Config,
                   overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Config:
    """A Config from a YAML path (or a Config) with overrides applied: a mapping
    ``{"training.epochs": 3}`` or the command line's ``["training.epochs=3"]``."""
    if overrides is None:
        texts: list[str] = []
    elif isinstance(overrides, Mapping):
        texts = [_override_text(k, v) for k, v in overrides.items()]
    elif isinstance(overrides, str):
        raise NerwinError("overrides: expected a mapping {key: value} or a list of "
                          "'key=value' strings, got one str")
    else:
        texts = list(overrides)
    if isinstance(config, Config):
        if not texts:
            return config
        raw = apply_overrides(to_dict(config), texts, config.source)
        return from_dict(raw, source=config.source, base=Path.cwd())
    if not isinstance(config, (str, Path)):
        raise NerwinError(f"config: expected a YAML path or a Config, got "
                          f"{type(config).__name__}")
    return load_config(config, texts)
