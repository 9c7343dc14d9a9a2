"""Config loading, validation and overrides, through the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import run_cli as run

from nerwin.config import Config, load_config, parse_override

TRAIN = "a O\nParis B-LOC\n"


@pytest.fixture
def cfg_file(write):
    write("d/train.txt", TRAIN)

    def make(body: str) -> Path:
        return write("c.yaml", "data:\n  train: d/train.txt\n" + body)

    return make



def test_defaults_and_relative_paths(cfg_file, tmp_path):
    cfg = load_config(cfg_file(""))
    assert cfg.data.train == tmp_path / "d" / "train.txt"
    assert cfg.features.window == 2 and cfg.model.hidden == (100,)
    assert cfg.training.optimizer.name == "adam"


def test_override_types():
    assert parse_override("training.optimizer.lr=1e-3") == ("training.optimizer.lr", 1e-3)
    assert parse_override("features.freeze=true") == ("features.freeze", True)
    assert parse_override("model.hidden=[200,100]") == ("model.hidden", [200, 100])
    assert parse_override("features.vectors=null") == ("features.vectors", None)
    assert parse_override("model.positive=LOC") == ("model.positive", "LOC")


def test_overrides_apply(cfg_file):
    cfg = load_config(cfg_file(""), ["training.optimizer.lr=0.05", "model.hidden=[7, 5]",
                                     "training.optimizer.name=sgd"])
    assert cfg.training.optimizer.lr == 0.05 and cfg.model.hidden == (7, 5)
    assert cfg.training.optimizer.name == "sgd"


@pytest.mark.parametrize("body, overrides, key, words", [
    ("model:\n  nonlinerity: tanh\n", [], "model.nonlinerity", "did you mean 'model.nonlinearity'"),
    ("", ["training.optimzer.lr=0.1"], "training.optimzer", "did you mean"),
    ("", ["features.window=-1"], "features.window", ">= 0"),
    ("", ["training.optimizer.lr=0"], "training.optimizer.lr", "> 0"),
    ("", ["training.optimizer.lr=-0.1"], "training.optimizer.lr", "> 0"),
    ("", ["model.dropout=1.0"], "model.dropout", "< 1"),
    ("", ["model.dropout=-0.1"], "model.dropout", ">= 0"),
    ("", ["model.nonlinearity=swish"], "model.nonlinearity", "sigmoid, tanh, hardtanh, relu"),
    ("", ["training.optimizer.name=adamw"], "training.optimizer.name", "did you mean 'adam'"),
    ("", ["training.epochs=ten"], "training.epochs", "expected an integer"),
    ("", ["training.epochs=2.5"], "training.epochs", "expected an integer"),
    ("", ["features.freeze=yes please"], "features.freeze", "true or false"),
    ("", ["model.hidden=[a]"], "model.hidden", "list of integers"),
    ("", ["data.dev=missing.txt"], "data.dev", "no such file"),
    ("", ["model.head=logistic"], "model.positive", "entity type"),
    ("", ["training.schedule.name=cosine"], "training.schedule.name", "constant, step"),
    ("training: 3\n", [], "training", "expected a mapping"),
])
def test_bad_values_exit_2_and_name_the_key(cfg_file, body, overrides, key, words):
    path = cfg_file(body)
    args = ["config", "show", path] + [a for o in overrides for a in ("--set", o)]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert f"{path}: {key}:" in r.output
    assert words in r.output
    assert "Traceback" not in r.output


def test_missing_train_key(write):
    p = write("c.yaml", "model:\n  hidden: [3]\n")
    r = run("config", "show", p)
    assert r.exit_code == 2 and "data.train: required" in r.output


def test_invalid_yaml_names_line(write):
    p = write("c.yaml", "data:\n  train: [unclosed\n")
    r = run("config", "show", p)
    assert r.exit_code == 2 and "invalid YAML" in r.output and str(p) in r.output


def test_missing_config_file(tmp_path):
    r = run("config", "show", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "no such config file" in r.output


def test_bad_set_syntax(cfg_file):
    r = run("config", "show", cfg_file(""), "--set", "training.epochs")
    assert r.exit_code == 2 and "KEY=VALUE" in r.output


def test_debug_shows_traceback(cfg_file):
    r = run("--debug", "config", "show", cfg_file(""), "--set", "training.epochs=0")
    assert r.exit_code != 0 and r.exception is not None


def test_config_show_loads_back_equal(cfg_file, tmp_path):
    path = cfg_file("model:\n  hidden: [20, 10]\n  nonlinearity: relu\n")
    r = run("config", "show", path, "--set", "training.schedule.name=step")
    assert r.exit_code == 0, r.output
    shown = tmp_path / "elsewhere" / "shown.yaml"
    shown.parent.mkdir()
    shown.write_text(r.output)
    a, b = load_config(path, ["training.schedule.name=step"]), load_config(shown)
    assert isinstance(a, Config) and a == b
    assert yaml.safe_load(r.output)["model"]["hidden"] == [20, 10]



def test_set_paths_are_relative_to_the_current_folder(write, tmp_path, monkeypatch):
    """The README's CoNLL command: S=../shared/data, --set paths relative to where it runs,
    while the paths written in the config stay relative to the config's folder."""
    write("shared/data/train.txt", TRAIN)
    write("shared/data/dev.txt", TRAIN)
    write("shared/vec.txt", "a 1 2\n")
    write("conf/d/test.txt", TRAIN)
    cfg = write("conf/c.yaml", "data:\n  train: nowhere.txt\n  test: d/test.txt\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    c = load_config(cfg, ["data.train=../shared/data/train.txt",
                          "data.dev=../shared/data/dev.txt",
                          "features={vectors: ../shared/vec.txt, dim: 2}", "output.dir=runs/x"])
    assert c.data.train == tmp_path / "shared" / "data" / "train.txt"
    assert c.data.dev == tmp_path / "shared" / "data" / "dev.txt"
    assert c.data.test == tmp_path / "conf" / "d" / "test.txt"
    assert c.features.vectors == tmp_path / "shared" / "vec.txt"
    assert c.output.dir == work / "runs" / "x"
    r = run("config", "show", cfg, "--set", "data.train=../shared/data/train.txt")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("body, key, lines", [
    ("training:\n  epochs: 2\nmodel:\n  hidden: [3]\ntraining:\n  seed: 1\n", "training", (5, 1)),
    ("model:\n  hidden: [3]\n  hidden: [4]\n", "model.hidden", (3, 2)),
    ("training:\n  optimizer:\n    lr: 0.1\n    name: sgd\n    lr: 0.2\n",
     "training.optimizer.lr", (5, 3)),
])
def test_repeated_keys_name_key_and_lines(write, body, key, lines):
    p = write("c.yaml", body)
    r = run("config", "show", p)
    assert r.exit_code == 2, r.output
    assert f"{p}:{lines[0]}: {key}: repeated key (first on line {lines[1]})" in r.output


def test_negative_seed_names_the_key(cfg_file):
    r = run("config", "show", cfg_file("training:\n  seed: -1\n"))
    assert r.exit_code == 2 and "training.seed: must be >= 0" in r.output


def test_config_init_writes_every_key_and_loads_back(tmp_path):
    from nerwin.config import describe_keys, from_dict

    path = tmp_path / "starter.yaml"
    r = run("config", "init", path)
    assert r.exit_code == 0, r.output
    text = path.read_text()
    for key, default, doc in describe_keys():
        name = key.rsplit(".", 1)[-1]
        assert f"# {doc}\n" in text and f"{name}: {default}\n" in text, key
    cfg = load_config(path, check_files=False)
    assert cfg == from_dict({}, source=str(path), base=tmp_path, check_files=False)
    # with data.train set it is a config that trains
    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "train.txt"  # exists
    assert load_config(path, [f"data.train={sample}"]).model.hidden == (100,)
    # never overwritten silently
    path.write_text("mine\n")
    r = run("config", "init", path)
    assert r.exit_code == 2 and "--force" in r.output and path.read_text() == "mine\n"
    assert run("config", "init", path, "--force").exit_code == 0
    assert path.read_text() == text
    r = run("config", "init", tmp_path / "no" / "c.yaml")
    assert r.exit_code == 2 and "does not exist" in r.output
