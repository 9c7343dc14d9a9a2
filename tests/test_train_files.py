"""``data.train`` as a list of files (train + dev for a final run), and ``data.dev: null``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerwin.cli import cli
from nerwin.config import load_config, train_files
from nerwin.dataset import build_lexicon, read_split, read_train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TRAIN = ROOT / "data" / "sample" / "train.txt"
DEV = ROOT / "data" / "sample" / "dev.txt"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_string_stays_one_path_and_a_list_is_every_file():
    one = load_config(SAMPLE)
    assert isinstance(one.data.train, Path) and train_files(one) == (TRAIN,)
    both = load_config(SAMPLE, [f"data.train=[{TRAIN}, {DEV}]"])
    assert train_files(both) == (TRAIN, DEV)


def test_relative_list_entries_resolve_against_the_shell_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "data")
    cfg = load_config(SAMPLE, ["data.train=[sample/train.txt, sample/dev.txt]"])
    assert train_files(cfg) == (TRAIN, DEV)


def test_a_list_in_the_file_resolves_against_the_config_folder(tmp_path):
    text = SAMPLE.read_text().replace("  train: ../data/sample/train.txt",
                                      f"  train: [{TRAIN}, {DEV.name}]")
    (tmp_path / "c.yaml").write_text(text)
    (tmp_path / DEV.name).write_text(DEV.read_text())
    cfg = load_config(tmp_path / "c.yaml", ["data.test=null", "data.dev=null"])
    assert train_files(cfg) == (TRAIN, tmp_path / DEV.name)


@pytest.mark.parametrize("value, expected", [
    ("[]", "data.train: expected a path or a non-empty list of paths"),
    ("[1]", "data.train: expected a path or a non-empty list of paths"),
    ("[a, '']", "data.train: expected a path or a non-empty list of paths"),
    ("{a: 1}", "data.train: expected a path or a list of paths"),
    (f"[{TRAIN}, nowhere.txt]", "data.train[1]: no such file"),
])
def test_bad_lists_are_one_line_errors_naming_the_key(value, expected):
    r = run("train", SAMPLE, "--set", f"data.train={value}", "--out", "/nonexistent/x")
    assert r.exit_code == 2, r.output
    assert expected in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_the_corpus_and_vocabulary_come_from_every_file():
    cfg = load_config(SAMPLE, [f"data.train=[{TRAIN}, {DEV}]"])
    train, dev = read_split(cfg, TRAIN), read_split(cfg, DEV)
    both = read_train(cfg)
    assert both.n_tokens == train.n_tokens + dev.n_tokens
    assert len(both.lines) == len(train.lines) + len(dev.lines)
    # the sentences, in order: train's then dev's, tokens and tags unchanged
    s = list(both.sentences)
    assert [x.tokens for x in s] == [x.tokens for x in [*train.sentences, *dev.sentences]]
    assert [x.tags for x in s] == [x.tags for x in [*train.sentences, *dev.sentences]]
    # where() names the right file and line
    first_dev_token = train.n_tokens
    assert both.where(first_dev_token) == f"{DEV}:{dev.line_of(0)}"
    assert both.where(0) == f"{TRAIN}:{train.line_of(0)}"
    only_dev_words = set(dev.types) - set(train.types)
    assert only_dev_words
    lex_one = build_lexicon(load_config(SAMPLE), train)
    lex_both = build_lexicon(cfg, both)
    norm = {w.lower() for w in only_dev_words}
    assert any(w in lex_both.words.stoi for w in norm)
    assert len(lex_both.words) > len(lex_one.words)


def test_a_bad_line_in_the_second_file_is_named(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("John\tB-PER\nruns\tO\n\nA\tB-PER\tX\n", encoding="utf-8")
    r = run("train", SAMPLE, "--set", f"data.train=[{TRAIN}, {bad}]", "--out", tmp_path / "o")
    assert r.exit_code == 2, r.output
    assert f"{bad}:4:" in r.output, r.output


def test_an_all_o_training_set_names_every_file(tmp_path):
    o = tmp_path / "o.txt"
    o.write_text("a\tO\nb\tO\n", encoding="utf-8")
    r = run("train", SAMPLE, "--set", f"data.train=[{o}, {o}]", "--set", "data.dev=null",
            "--set", "data.test=null", "--out", tmp_path / "r")
    assert r.exit_code == 2, r.output
    assert f"{o}, {o}: every one of its 4 tags is O" in r.output, r.output


def test_train_on_train_and_dev_without_dev_scoring(tmp_path):
    out = tmp_path / "final"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", f"data.train=[{TRAIN}, {DEV}]",
            "--set", "data.dev=null", "--set", "training.epochs=2")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2] and not any("dev_f1" in x for x in lines)
    meta = json.loads((out / "best" / "meta.json").read_text())
    # without dev data best/ is the last epoch; the checkpoint records both training files
    assert meta["epoch"] == 2 and "dev" not in meta
    assert meta["config"]["data"]["train"] == [str(TRAIN), str(DEV)]
    assert meta["config"]["data"]["dev"] is None
    n_train = read_split(load_config(SAMPLE), TRAIN).n_tokens
    n_dev = read_split(load_config(SAMPLE), DEV).n_tokens
    assert f"training {n_train + n_dev:,} tokens" in r.output
    # the saved config loads back (eval/tag of such a model) and resumes
    r = run("eval", out / "best", DEV)
    assert r.exit_code == 0, r.output
    r = run("train", SAMPLE, "--out", out, "--quiet", "--resume", "--set",
            f"data.train=[{TRAIN}, {DEV}]", "--set", "data.dev=null", "--set",
            "training.epochs=3")
    assert r.exit_code == 0, r.output
    assert json.loads((out / "best" / "meta.json").read_text())["epoch"] == 3


def test_the_final_config_is_the_best_one_on_train_and_dev():
    from nerwin.config import to_dict
    from nerwin.train import _flatten

    best = _flatten(to_dict(load_config(ROOT / "configs" / "conll2003_best.yaml",
                                        check_files=False)))
    final = _flatten(to_dict(load_config(ROOT / "configs" / "conll2003_final.yaml",
                                         check_files=False)))
    differ = {k for k in best if best[k] != final[k]}
    # the epoch count and patience may equal the best config's (a run without early stop)
    assert {"data.train", "data.dev", "output.dir"} <= differ <= {
        "data.train", "data.dev", "training.epochs", "training.patience", "output.dir"}
    assert final["data.train"] == [best["data.train"], best["data.dev"]]
    assert final["data.dev"] is None and final["training.patience"] is None
    assert final["training.epochs"] <= best["training.epochs"]


def test_the_api_and_nerwin_data_take_a_list():
    from nerwin.api import resolve_config

    cfg = resolve_config(SAMPLE, {"data.train": [str(TRAIN), str(DEV)]})
    assert train_files(cfg) == (TRAIN, DEV)

    def words(*sets: str) -> int:
        r = run("data", DEV, "--config", SAMPLE, "--json", *sets)
        assert r.exit_code == 0, r.output
        return json.loads(r.output)["vocabulary"]["words"]

    assert words("--set", f"data.train=[{TRAIN}, {DEV}]") > words()
