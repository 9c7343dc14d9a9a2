"""Bad and odd inputs, through the command line as a user meets them.

Every bad input (a CoNLL file, a config value, a ``--set``, a vectors file, a path that
cannot be read, a model too big for memory) must give exit code 2 and one line that names
the file and line, or the config key, and never a traceback. Every valid odd file (CR line
ends, a byte-order mark mid-file, tabs and spaces mixed, trailing spaces) must be read with
the exact counts, and nerwin's predictions for it must be a file nerwin reads back with one
prediction per token.
"""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import json
from pathlib import Path

import pytest
from conftest import run_cli as run

from nerwin.config import Config, _hints, _public_fields
from nerwin.conll import read_conll, read_tokens

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TRAIN = ("EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\n"
         "Peter B-PER\nBlackburn I-PER\nin O\nParis B-LOC\n")



def assert_one_line_error(r, *where: str) -> str:
    """Exit 2, no traceback, exactly one line of output, naming each of ``where``."""
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = r.output.strip().splitlines()
    assert len(lines) == 1, r.output
    for w in where:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def project(tmp_path):
    """A folder with a small valid training file and a config writer."""
    (tmp_path / "train.txt").write_text(TRAIN, encoding="utf-8")

    def config(body: str = "", name: str = "c.yaml") -> Path:
        p = tmp_path / name
        p.write_text("data:\n  train: train.txt\n" + body, encoding="utf-8")
        return p

    return tmp_path, config


# --------------------------------------------------------------------------------------
# CoNLL files that are wrong: one line naming file:line (or the file, when it has no line)

BAD_CONLL = [
    ("ragged", "a O\nb NNP O\n", 2, "found 3 columns, expected 2"),
    ("lowercase prefix", "a O\nb b-PER\n", 2, "'b-PER' is not a NER tag"),
    ("unknown prefix", "a O\nb X-PER\n", 2, "is not a NER tag"),
    ("prefix without type", "a O\nb B-\n", 2, "is not a NER tag"),
    ("one column", "a\nb\n", 1, "found 1 column"),
    ("invalid utf-8", b"a O\nb\xff O\n", 2, "invalid UTF-8"),
    ("invalid utf-8 after CR lines", b"a O\rb O\r\rc\xff O\r", 4, "invalid UTF-8"),
    ("invalid utf-8 after CRLF lines", b"a O\r\nb O\r\nc\xfe O\r\n", 3, "invalid UTF-8"),
    ("invalid utf-8 after mixed lines", b"a O\r\nb O\rc O\nd\xc3 O\n", 4, "invalid UTF-8"),
    ("empty token", "a\tO\n\tO\n", 2, "empty token"),
    ("empty token after space", "a\tO\n \tB-LOC\n", 2, "empty token"),
    ("empty token CR", b"a\tO\r\tO\r", 2, "empty token"),
    ("tab line among space lines", "a O\nb O\nNew York\tNNP\tO\n", 3, "found 3 columns"),
    ("tab on a blank line, ragged later", "a O\n\t\nb O\nc NNP O\n", 4,
     "found 3 columns, expected 2 as on line 1 (both space-separated)"),
    ("space line among tab lines", "a\tNNP\tO\nb\tNNP\tO\nc O\n", 3,
     "(this line is space-separated, line 1 tab-separated)"),
    ("ragged after CR lines", b"a O\rb O\r\rc x O\r", 4, "found 3 columns"),
    ("ragged after mid-file BOM", "a O\n\ufeffb O\nc x O\n", 3, "found 3 columns"),
    ("tag after trailing tab", "a\tO\nb\tB-LOC\tX\n", 2, "found 3 columns"),
]


@pytest.mark.parametrize("name, content, line, words", BAD_CONLL, ids=[c[0] for c in BAD_CONLL])
def test_bad_conll_file(tmp_path, name, content, line, words):
    p = tmp_path / "bad.txt"
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert_one_line_error(run("data", p), f"{p}:{line}:", words)


@pytest.mark.parametrize("content, scheme, line", [
    ("a B-LOC\nb E-LOC\n", "iob2", 2),
    ("a S-LOC\n", "iob1", 1),
    ("a B-LOC\n", "io", 1),
])
def test_prefix_outside_the_scheme(tmp_path, content, scheme, line):
    p = tmp_path / "bad.txt"
    p.write_text(content, encoding="utf-8")
    assert_one_line_error(run("data", p, "--scheme", scheme), f"{p}:{line}:", scheme)


@pytest.mark.parametrize("content, words", [
    ("", "the file is empty"),
    ("\n\n  \n\t\n", "the file is empty"),
    ("\ufeff\n\ufeff\n", "the file is empty"),
    ("\r\r\r", "the file is empty"),
    ("-DOCSTART- O\n\n", "no tokens found"),
])
def test_file_without_tokens(tmp_path, content, words):
    p = tmp_path / "bad.txt"
    p.write_text(content, encoding="utf-8", newline="")
    assert_one_line_error(run("data", p), f"{p}:", words)


def test_tag_column_that_does_not_exist(project):
    tmp, config = project
    cfg = config("  tag_column: 5\n")
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), f"{tmp / 'train.txt'}:1:",
                          "tag column 5 does not exist")


# --------------------------------------------------------------------------------------
# Paths that cannot be read, named in a config: the key and the reason


def _make_unreadable(kind: str, p: Path, monkeypatch) -> None:
    if kind == "missing":
        return
    if kind == "folder":
        p.mkdir()
    elif kind == "symlink loop":
        p.symlink_to(p)
    elif kind == "permission denied":
        # We run as root, where chmod does not deny reading: deny it at the open() call.
        p.write_text(TRAIN, encoding="utf-8")
        real_open = builtins.open

        def guarded(file, *args, **kwargs):
            if str(file) == str(p):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", guarded)


UNREADABLE = {"missing": "no such file", "folder": "is a folder",
              "symlink loop": "symbolic link loop", "permission denied": "permission denied"}


@pytest.mark.parametrize("key", ["data.train", "data.dev", "data.test", "features.vectors"])
@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_path_in_config_names_the_key(project, monkeypatch, key, kind):
    tmp, config = project
    target = tmp / "target"
    section, name = key.split(".")
    if key == "data.train":
        cfg = tmp / "c.yaml"
        cfg.write_text("data:\n  train: target\n", encoding="utf-8")
    elif section == "data":
        cfg = config(f"  {name}: target\n")
    else:
        cfg = config("features:\n  vectors: target\n  dim: 2\n")
    _make_unreadable(kind, target, monkeypatch)
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), f"{cfg}: {key}:",
                          UNREADABLE[kind], str(target))


@pytest.mark.parametrize("kind", ["symlink loop", "permission denied"])
def test_unreadable_data_file_on_the_command_line(tmp_path, monkeypatch, kind):
    p = tmp_path / "data.txt"
    _make_unreadable(kind, p, monkeypatch)
    assert_one_line_error(run("data", p), f"{p}:", UNREADABLE[kind])


# --------------------------------------------------------------------------------------
# Data that cannot train the model: refused when the files are read, before any epoch


def test_all_o_training_data(project):
    tmp, config = project
    (tmp / "train.txt").write_text("a O\nb O\n\nc O\n", encoding="utf-8")
    r = run("train", config(), "--out", tmp / "run")
    line = assert_one_line_error(r, f"{tmp / 'train.txt'}:", "data.train", "every one of its 3 "
                                 "tags is O", "expected at least one entity")
    assert "n_out" not in line


def test_all_o_training_data_gradcheck(project):
    tmp, config = project
    (tmp / "train.txt").write_text("a O\nb O\n", encoding="utf-8")
    assert_one_line_error(run("gradcheck", config()), f"{tmp / 'train.txt'}:", "data.train")


@pytest.mark.parametrize("split", ["dev", "test"])
@pytest.mark.parametrize("tag, typ", [("B-FOO", "FOO"), ("I-BAR", "BAR")])
def test_tag_unseen_in_training_is_reported_before_training(project, split, tag, typ):
    tmp, config = project
    (tmp / f"{split}.txt").write_text(f"EU B-ORG\n\nrejects O\nx {tag}\n", encoding="utf-8")
    r = run("train", config(f"  {split}: {split}.txt\n"), "--out", tmp / "run")
    assert_one_line_error(r, f"{tmp / (split + '.txt')}:4:", f"entity type {typ!r}",
                          str(tmp / "train.txt"))
    assert not (tmp / "run" / "best").exists()  # no epoch ran


# --------------------------------------------------------------------------------------
# Config values: every key's wrong type, every range, unknown keys, repeated keys


def _keys(cls: type = Config, prefix: str = "") -> list[tuple[str, object, dict]]:
    out = []
    hints = _hints(cls)
    for f in _public_fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            out += _keys(hints[f.name], key)
        else:
            out.append((key, hints[f.name], dict(f.metadata)))
    return out


KEYS = _keys()


def _wrong_value(tp: object, meta: dict) -> str:
    """A YAML value of the wrong type for a field (as text for --set)."""
    name = str(tp)
    if "Config" in name:  # a list of sections (model.blocks): not a list at all
        return "abc"
    if "tuple" in name:
        return "[a, b]"
    if "bool" in name:
        return "maybe"
    if "Path" in name or "str" in name:
        return "[1, 2]" if "Path" in name else "3"
    return "abc"


WRONG_TYPE = [(k, _wrong_value(tp, m)) for k, tp, m in KEYS]


@pytest.mark.parametrize("key, value", WRONG_TYPE, ids=[k for k, _ in WRONG_TYPE])
def test_wrong_type_of_every_key(project, key, value):
    tmp, config = project
    r = run("train", config(), "--out", tmp / "run", "--set", f"{key}={value}")
    assert_one_line_error(r, f": {key}:", "expected")


def _out_of_range(meta: dict) -> list[str]:
    vals = []
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        vals.append(str(lo) if meta.get("exclusive_min") else str(lo - 1))
    if hi is not None:
        vals.append(str(hi) if meta.get("exclusive_max") else str(hi + 0.5))
    return vals


OUT_OF_RANGE = [(k, v, "must be") for k, _, m in KEYS for v in _out_of_range(m)]
OUT_OF_RANGE += [("training.optimizer.lr", ".inf", "finite"), ("training.l2", ".nan", "finite"),
                 ("model.hidden", "[100, 0]", "must be >= 1"),
                 ("model.hidden", "[-3]", "must be >= 1")]


@pytest.mark.parametrize("key, value, words", OUT_OF_RANGE,
                         ids=[f"{k}={v}" for k, v, _ in OUT_OF_RANGE])
def test_out_of_range_value_in_the_file(project, key, value, words):
    """Written in the config file (nested YAML), not --set: both paths are validated."""
    tmp, config = project
    parts = key.split(".")
    assert parts[0] != "data"  # config() writes the data section itself
    body = "".join("  " * i + f"{p}:\n" for i, p in enumerate(parts[:-1]))
    body += "  " * (len(parts) - 1) + f"{parts[-1]}: {value}\n"
    p = config(body)
    assert_one_line_error(run("train", p, "--out", tmp / "run"), f"{p}: {key}:", words)


@pytest.mark.parametrize("body, key", [
    ("datta:\n  x: 1\n", "datta"),
    ("features:\n  windw: 3\n", "features.windw"),
    ("model:\n  hiden: [3]\n", "model.hiden"),
    ("training:\n  optimizer:\n    learning_rate: 0.1\n", "training.optimizer.learning_rate"),
    ("training:\n  schedule:\n    gamma: 0.1\n", "training.schedule.gamma"),
    ("output:\n  path: x\n", "output.path"),
])
def test_unknown_key(project, body, key):
    tmp, config = project
    r = run("train", config(body), "--out", tmp / "run")
    assert_one_line_error(r, f": {key}:", "unknown key")


@pytest.mark.parametrize("body, key, line, first", [
    ("training:\n  epochs: 2\nmodel:\n  hidden: [3]\ntraining:\n  seed: 1\n", "training", 7, 3),
    ("features:\n  window: 1\n  window: 3\n", "features.window", 5, 4),
    ("model:\n  hidden: [3]\n  nonlinearity: relu\n  hidden: [4]\n", "model.hidden", 6, 4),
    ("training:\n  optimizer:\n    lr: 0.1\n    lr: 0.2\n", "training.optimizer.lr", 6, 5),
    ("training:\n  schedule: {name: step, name: constant}\n", "training.schedule.name", 4, 4),
    ("output:\n  dir: a\n  dir: b\n", "output.dir", 5, 4),
    ("data:\n  dev: train.txt\n", "data", 3, 1),
])
def test_repeated_key(project, body, key, line, first):
    tmp, config = project
    p = config(body)
    r = run("train", p, "--out", tmp / "run")
    assert_one_line_error(r, f"{p}:{line}: {key}: repeated key (first on line {first})")


def test_negative_seed_costs_nothing(project):
    tmp, config = project
    r = run("train", config(), "--out", tmp / "run", "--set", "training.seed=-5")
    assert_one_line_error(r, ": training.seed:", ">= 0")


# --------------------------------------------------------------------------------------
# --set forms

SET_FORMS = [
    ("training.epochs", "KEY=VALUE"),
    ("=3", "dotted"),
    ("training..epochs=3", "dotted"),
    (".epochs=3", "dotted"),
    ("training.epochs.x=3", "training.epochs"),
    ("nosuch=1", "nosuch"),
    ("data=3", "data"),
    ("training.optimizer=adam", "training.optimizer"),
    ("training={epochs: 1, epochs: 2}", "training.epochs"),
    ("model.hidden=[1,", "model.hidden"),
    ("model.hidden=[1, [2]]", "model.hidden"),
    ("training.epochs=", "training.epochs"),
    ("training.epochs=null", "training.epochs"),
    ("features.window=1e3", "features.window"),
    ("data.train=", "data.train"),
    ("data.train=nowhere.txt", "data.train"),
]


@pytest.mark.parametrize("form, where", SET_FORMS, ids=[f for f, _ in SET_FORMS])
def test_set_forms(project, form, where):
    tmp, config = project
    r = run("train", config(), "--out", tmp / "run", "--set", form)
    assert_one_line_error(r, where)


def test_set_needs_config(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TRAIN, encoding="utf-8")
    assert_one_line_error(run("data", p, "--set", "training.epochs=1"), "--set needs --config")


def test_set_paths_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    """The README's CoNLL command: S=../shared/data with the config in another folder."""
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    (shared / "train.txt").write_text(TRAIN, encoding="utf-8")
    conf = tmp_path / "configs"
    conf.mkdir()
    (conf / "c.yaml").write_text("data:\n  train: ../data/train.txt\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    r = run("config", "show", "../configs/c.yaml", "--set", "data.train=../shared/data/train.txt",
            "--set", "output.dir=runs/x")
    assert r.exit_code == 0, r.output
    assert f"train: {shared / 'train.txt'}" in r.output
    assert f"dir: {work / 'runs' / 'x'}" in r.output


# --------------------------------------------------------------------------------------
# Vectors files: one line naming file:line


def _vec_rows(n: int = 3) -> str:
    return "".join(f"{w} 0.1 0.2\n" for w in ["eu", "rejects", "german", "peter", "paris"][:n])


BAD_VECTORS = [
    ("nan", "eu 0.1 0.2\nrejects nan 0.2\n", 2, "NaN or an infinite value"),
    ("NaN caps", "eu NaN 0.2\n", 1, "NaN or an infinite value"),
    ("inf", "eu 0.1 0.2\nrejects 0.1 inf\n", 2, "NaN or an infinite value"),
    ("-inf", "eu 0.1 0.2\ngerman -inf 0.2\n", 2, "NaN or an infinite value"),
    ("overflow", "eu 0.1 0.2\npeter 1e39 0.2\n", 2, "beyond float32"),
    ("not a number", "eu 0.1 0.2\nparis 0.1 x\n", 2, "not a number"),
    ("wrong width", "eu 0.1 0.2\nparis 0.1\n", 2, "1 values, expected 2"),
    ("header width", "3 2\neu 0.1 0.2\nparis 0.1 0.2 0.3\n", 3, "expected 2 like the header"),
    ("header promises more", "5 2\n" + _vec_rows(3), 1, "promises 5 vectors but the file has 3"),
    ("header promises fewer", "2 2\n" + _vec_rows(3), 1, "promises 2 vectors but the file has 3"),
    ("repeated wanted word", _vec_rows(3) + "eu 0.3 0.4\n", 4,
     "'eu' is repeated (first on line 1)"),
    ("repeated unwanted word", _vec_rows(2) + "zebra 1 2\nzebra 3 4\n", 4,
     "'zebra' is repeated (first on line 3)"),
    ("invalid utf-8", b"eu 0.1 0.2\nrejects 0.1 0.2\nz\xff 0.1 0.2\n", 3, "invalid UTF-8"),
    ("invalid utf-8 deep", ("".join(f"w{i} 1 2\n" for i in range(3000))).encode()
     + b"\xc3 1 2\n", 3001, "invalid UTF-8"),
    ("word only", "eu\n", 1, "a vector line must be"),
]


@pytest.mark.parametrize("name, content, line, words", BAD_VECTORS,
                         ids=[c[0] for c in BAD_VECTORS])
def test_bad_vectors_file(project, name, content, line, words):
    tmp, config = project
    v = tmp / "vec.txt"
    v.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    cfg = config("features:\n  vectors: vec.txt\n  dim: 2\n")
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), f"{v}:{line}:", words)


def _gz(damage: str) -> bytes:
    data = gzip.compress(("".join(f"w{i} 0.1 0.2\n" for i in range(20000))).encode())
    if damage == "truncated":
        return data[: len(data) // 2]
    if damage == "corrupt":
        return data[:40] + bytes(b ^ 0x3C for b in data[40:90]) + data[90:]
    if damage == "cut after the header":
        return data[:12]
    return b"\x1f\x8bthis is not gzip data"


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "cut after the header", "not gzip"])
def test_damaged_gzip_vectors(project, damage):
    tmp, config = project
    v = tmp / "vec.txt.gz"
    v.write_bytes(_gz(damage))
    cfg = config("features:\n  vectors: vec.txt.gz\n  dim: 2\n")
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), f"{v}: cannot read the "
                          "vectors file")


@pytest.mark.parametrize("content, words", [
    ("", "no vectors in file"),
    ("\n\n", "no vectors in file"),
    ("3 2\n", "no vectors in file"),
])
def test_vectors_without_rows(project, content, words):
    tmp, config = project
    v = tmp / "vec.txt"
    v.write_text(content, encoding="utf-8")
    cfg = config("features:\n  vectors: vec.txt\n  dim: 2\n")
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), f"{v}:", words)


def test_vectors_of_another_width_name_the_key(project):
    tmp, config = project
    (tmp / "vec.txt").write_text(_vec_rows(), encoding="utf-8")
    cfg = config("features:\n  vectors: vec.txt\n  dim: 50\n")
    assert_one_line_error(run("train", cfg, "--out", tmp / "run"), "features.dim", "set "
                          "features.dim: 2")


@pytest.mark.parametrize("prefix", ["\ufeff", "\ufeff2 2\n"])
def test_vectors_with_a_bom_keep_their_first_word(project, prefix):
    tmp, config = project
    rows = "eu 0.1 0.2\nrejects 0.3 0.4\n"
    (tmp / "vec.txt").write_text(prefix + rows, encoding="utf-8")
    cfg = config("features:\n  vectors: vec.txt\n  dim: 2\n")
    r = run("data", tmp / "train.txt", "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    # 8 distinct lowercased training words, 2 of them with vectors (eu, rejects)
    assert json.loads(r.output)["vocabulary"]["coverage_percent"]["exact"] == 25.0


# --------------------------------------------------------------------------------------
# A model too big for memory: refused before anything is allocated, naming the key

TOO_BIG = [
    (["features.window=100000000"], "features.window"),
    (["model.hidden=[100000000]"], "model.hidden"),
    (["model.hidden=[100000, 100000]"], "model.hidden"),
    (["features.dim=1000000000"], "features.dim"),
    (["features.casing_dim=1000000000"], "features.casing_dim"),
    (["features.window=1000000", "model.hidden=[10]"], "features.window"),
    # the character encoder and the other tables: blamed on their own key, not the window
    (["features.char_filters=100000000"], "features.char_filters"),
    (["features.char_filters=50", "features.char_dim=1000000000"], "features.char_dim"),
    (["features.char_filters=50", "features.char_width=1000001",
      "features.char_max_len=1000001"], "features.char_width"),
    (["features.char_filters=50", "features.char_max_len=10000000000"],
     "features.char_max_len"),
    (["features.prefixes=[2]", "features.affix_dim=1000000000"], "features.affix_dim"),
    (["features.suffixes=[3]", "features.affix_dim=1000000000"], "features.affix_dim"),
    (["features.shape_dim=1000000000"], "features.shape_dim"),
]


@pytest.mark.parametrize("command", ["train", "gradcheck"])
@pytest.mark.parametrize("overrides, key", TOO_BIG, ids=[" ".join(o) for o, _ in TOO_BIG])
def test_model_too_big_for_memory(project, command, overrides, key):
    tmp, config = project
    sets = [a for o in overrides for a in ("--set", o)]
    extra = ["--out", tmp / "run"] if command == "train" else []
    r = run(command, config(), *extra, *sets)
    line = assert_one_line_error(r, f": {key}:", "makes the model too big", "of memory is free")
    assert " TB" in line or " GB" in line


# --------------------------------------------------------------------------------------
# gradcheck: a parameter with nothing compared does not pass


def test_gradcheck_with_nothing_compared_is_not_a_pass():
    r = run("gradcheck", SAMPLE, "--eps", "0.1")
    assert r.exit_code == 1, r.output
    assert "NOT CHECKED" in r.output and "all ok" not in r.output


# --------------------------------------------------------------------------------------
# Valid odd files: exact counts, and predictions nerwin reads back, one per token


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """configs/sample.yaml trained for one epoch (a small hidden layer: this is about I/O)."""
    out = tmp_path_factory.mktemp("run") / "sample"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=1",
            "--set", "model.hidden=[16]", "--set", "data.test=null")
    assert r.exit_code == 0, r.output
    return out / "best"


# name, content, sentences, tokens per sentence, entities per type
ODD = [
    ("CR only", b"EU B-ORG\rrejects O\rGerman B-MISC\rcall O\r\rPeter B-PER\rBlackburn I-PER\r",
     [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
     {"ORG": 1, "MISC": 1, "PER": 1}),
    ("mixed CR, LF and CRLF", b"EU B-ORG\r\nrejects O\rGerman B-MISC\ncall O\r\n\r\rPeter B-PER"
     b"\nBlackburn I-PER",
     [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
     {"ORG": 1, "MISC": 1, "PER": 1}),
    ("BOM mid-file", "\ufeffEU B-ORG\nrejects O\n\n\ufeff-DOCSTART- O\n\n\ufeffPeter B-PER\n"
     "Blackburn I-PER\n".encode(),
     [["EU", "rejects"], ["Peter", "Blackburn"]], {"ORG": 1, "PER": 1}),
    ("two files concatenated without a blank line", "\ufeffa O\nParis B-LOC\n\ufeffb O\n"
     "Rome B-LOC\n".encode(),
     [["a", "Paris", "b", "Rome"]], {"LOC": 2}),
    ("tabs and spaces mixed by line", b"EU\tB-ORG\nrejects O\n\t\nNew York\tB-LOC\ncity O\n",
     [["EU", "rejects"], ["New York", "city"]], {"ORG": 1, "LOC": 1}),
    ("trailing space after a tab-separated tag", b"EU\tB-ORG \nrejects\tO \nGerman \tB-MISC\t\n"
     b"call\tO\n",
     [["EU", "rejects", "German", "call"]], {"ORG": 1, "MISC": 1}),
    ("trailing spaces, space-separated", b"EU B-ORG   \nrejects   O\n  \nParis  B-LOC \n",
     [["EU", "rejects"], ["Paris"]], {"ORG": 1, "LOC": 1}),
    ("a tab on a blank line only", b"EU B-ORG\nrejects O\n\t\nPeter B-PER\n",
     [["EU", "rejects"], ["Peter"]], {"ORG": 1, "PER": 1}),
    ("tab-separated with CRLF, four columns", b"EU\tNNP\tB-NP\tB-ORG\r\nrejects\tVBZ\tB-VP\tO"
     b"\r\n\r\nPeter\tNNP\tB-NP\tB-PER\r\n",
     [["EU", "rejects"], ["Peter"]], {"ORG": 1, "PER": 1}),
    ("IOB1 with CR", b"Peter I-PER\rBlackburn I-PER\rParis I-LOC\r",
     [["Peter", "Blackburn", "Paris"]], {"PER": 1, "LOC": 1}),
]


@pytest.mark.parametrize("name, content, sentences, entities", ODD, ids=[o[0] for o in ODD])
def test_valid_odd_file_is_read_right_and_predicted_per_token(tmp_path, model_dir, name, content,
                                                              sentences, entities):
    p = tmp_path / "odd.txt"
    p.write_bytes(content)
    n_tokens = sum(len(s) for s in sentences)
    r = run("data", p, "--json")
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)["files"][0]
    assert (stats["sentences"], stats["tokens"]) == (len(sentences), n_tokens)
    assert stats["entities_per_type"] == entities
    assert [s.tokens for s in read_conll(p).sentences] == sentences

    pred = tmp_path / "pred.txt"
    r = run("eval", model_dir, p, "--predictions", pred)
    assert r.exit_code == 0, r.output
    back = read_conll(pred)  # token, gold, predicted: nerwin reads its own output
    assert [[t.replace("\u00a0", " ") for t in s.tokens] for s in back.sentences] == sentences
    assert back.n_tokens == n_tokens
    gold = read_conll(pred, tag_column=1)
    assert [s.tags for s in gold.sentences] == [s.tags for s in read_conll(p).sentences]

    tagged = tmp_path / "tagged.txt"
    r = run("tag", model_dir, p, "--input-format", "conll", "--output", tagged)
    assert r.exit_code == 0, r.output
    back = read_conll(tagged)
    assert [len(s.tokens) for s in back.sentences] == [len(s) for s in sentences]
    assert [len(s.tokens) for s in read_tokens(tagged)] == [len(s) for s in sentences]
