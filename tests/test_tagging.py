"""`nerwin tag`: text and CoNLL input, conll/jsonl/inline output, streaming, entity scores."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run
from hypothesis import given, settings
from hypothesis import strategies as st

from nerwin.config import load_config
from nerwin.dataset import build_lexicon, read_split
from nerwin.model import new_model
from nerwin.tagging import entity_score, tag_stream

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"



@pytest.fixture(scope="module")
def fresh_model():
    """An untrained model of the sample config: tags at random, instantly."""
    cfg = load_config(SAMPLE)
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    return new_model(cfg, lex, np.random.default_rng(0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("tagrun") / "run"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=4")
    assert r.exit_code == 0, r.output
    return out / "best"


def tag_text(model, text: str, fmt: str, input_format: str = "text", chunk: int = 20_000):
    out = io.StringIO()
    tag_stream(model, io.BytesIO(text.encode("utf-8")), "<t>", out, input_format=input_format,
               output_format=fmt, chunk_tokens=chunk)
    return out.getvalue()


def input_lines(text: str) -> list[str]:
    """The lines as nerwin reads them: ended by \\n, \\r\\n or \\r; a first BOM dropped."""
    lines = re.split("\r\n|\r|\n", text)
    if lines[-1] == "":
        lines.pop()
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    return lines


TEXT = st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(["Karel Vosk visited Prague.", "\t", "\n", "\n\n", "\U0001F600 ok",
                     "\u05e9\u05dc\u05d5\u05dd \u0639\u0627\u0644\u0645", "U.S. Corp.",
                     "x" * 5000, "a. B? C! ", "\r\n"])), min_size=1, max_size=12).map("".join)


@settings(max_examples=60)
@given(TEXT)
def test_raw_text_in_entities_out_nothing_lost(fresh_model, text):
    if not any(not c.isspace() for c in "".join(input_lines(text))):
        return  # no token at all: an error, tested below
    lines = input_lines(text)
    jsonl = tag_text(fresh_model, text, "jsonl")
    objs = [json.loads(x) for x in jsonl.splitlines()]  # no stray line breaks inside
    by_line: dict[int, str] = {}
    for o in objs:
        t = o["text"]
        assert len(o["tags"]) == len(o["tokens"]) == len(o["offsets"])
        assert [t[a:b] for a, b in o["offsets"]] == o["tokens"]
        for e in o["entities"]:
            assert t[e["start"]:e["end"]] == e["text"] and 0.0 <= e["score"] <= 1.0
            assert e["start"] in [a for a, _ in o["offsets"]]
            assert e["end"] in [b for _, b in o["offsets"]]
        assert t in lines[o["line"] - 1]
        by_line[o["line"]] = by_line.get(o["line"], "") + "".join(o["tokens"])
    for i, line in enumerate(lines, start=1):
        assert by_line.get(i, "") == "".join(c for c in line if not c.isspace())
    # inline keeps every input line, spacing included: remove the brackets, get it back
    inline = tag_text(fresh_model, text, "inline")
    out_lines = inline.split("\n")[:-1]
    assert len(out_lines) == len(lines)
    n_ent = sum(len(o["entities"]) for o in objs)
    assert sum(ln.count("]") - lines[i].count("]") for i, ln in enumerate(out_lines)) == n_ent


def test_blank_input_is_an_error(fresh_model, write, trained):
    with pytest.raises(Exception, match="no tokens found"):
        tag_text(fresh_model, " \n\t\n", "conll")
    r = run("tag", trained, write("e.txt", "\n\n"))
    assert r.exit_code == 2 and "no tokens found" in r.output


def test_formats_on_a_sentence(trained):
    text = "Karel Vosk visited Prague with Acme Corp.\n"
    r = run("tag", trained, "-", "--output-format", "jsonl", input=text)
    assert r.exit_code == 0, r.output
    o = json.loads(r.stdout)
    assert o["text"] == text.strip() and o["tokens"][-2:] == ["Corp", "."]
    assert {"text", "tokens", "offsets", "tags", "entities"} <= set(o)
    assert [e["text"] for e in o["entities"] if e["type"] == "PER"] == ["Karel Vosk"]
    inline = run("tag", trained, "-", "--output-format", "inline", input=text).stdout
    assert inline.startswith("[PER Karel Vosk] visited ")
    conll = run("tag", trained, "-", input=text).stdout
    assert conll.splitlines()[:2] == ["Karel B-PER", "Vosk I-PER"]
    assert conll.endswith(". O\n\n")


def test_conll_input_keeps_every_line_and_column(trained, tmp_path):
    src = "-DOCSTART- -X- O\n\nKarel NNP B-PER\nVosk NNP I-PER\nsaid VBD O\n\n\nhi UH O\n"
    f = tmp_path / "in.txt"
    f.write_text(src)
    r = run("tag", trained, f, "--input-format", "conll")
    assert r.exit_code == 0, r.output
    out = r.stdout.split("\n")
    inp = src.split("\n")
    assert len(out) == len(inp)
    for a, b in zip(inp, out):
        assert b == "" if a == "" else b.rsplit(" ", 1)[0] == a
    assert out[0] == "-DOCSTART- -X- O O" and out[2].startswith("Karel NNP B-PER ")
    # tab-separated files stay tab-separated (a token may hold a space)
    t = tmp_path / "tab.txt"
    t.write_text("New York\tB-LOC\nis\tO\n")
    out = run("tag", trained, t, "--input-format", "conll").stdout.splitlines()
    assert [line.split("\t")[:2] for line in out] == [["New York", "B-LOC"], ["is", "O"]]
    assert all(len(line.split("\t")) == 3 for line in out)


def test_conll_output_agrees_with_eval_predictions(trained, tmp_path):
    pred = tmp_path / "pred.txt"
    assert run("eval", trained, TEST, "--predictions", pred).exit_code == 0
    tagged = tmp_path / "tagged.txt"
    r = run("tag", trained, TEST, "--input-format", "conll", "--output", tagged)
    assert r.exit_code == 0, r.output
    want = [(c[0], c[2]) for c in (ln.split() for ln in pred.read_text().splitlines()) if c]
    got = [(c[0], c[-1]) for c in (ln.split() for ln in tagged.read_text().splitlines())
           if c and c[0] != "-DOCSTART-"]
    assert got == want
    assert len(tagged.read_text().split("\n")) == len(TEST.read_text().split("\n"))


def test_ragged_columns_name_file_and_line(trained, write):
    f = write("r.txt", "a X O\nb Y O\n\nc O\n")
    r = run("tag", trained, f, "--input-format", "conll")
    assert r.exit_code == 2
    assert f"{f}:4: found 2 columns, expected 3 as on line 1" in r.output


def test_invalid_utf8_names_the_line(trained, write):
    f = write("u.txt", b"fine\nbad \xff byte\n")
    r = run("tag", trained, f)
    assert r.exit_code == 2 and f"{f}:2: invalid UTF-8" in r.output


def test_chunks_do_not_change_the_output(fresh_model):
    # Float32 sums depend on the batch shape, so scores may differ in the last digits
    # between chunkings; tags, offsets and entities may not.
    def same(a: str, b: str) -> None:
        a_objs = [json.loads(x) for x in a.splitlines()]
        b_objs = [json.loads(x) for x in b.splitlines()]
        scores = [[e.pop("score") for e in o["entities"]] for o in a_objs + b_objs]
        assert a_objs == b_objs and a_objs
        n = len(a_objs)
        for x, y in zip(scores[:n], scores[n:]):
            np.testing.assert_allclose(x, y, atol=2e-4)

    text = TEST.read_text()
    for fmt in ("conll", "inline"):
        a = tag_text(fresh_model, text, fmt, "conll", chunk=1)
        assert a == tag_text(fresh_model, text, fmt, "conll", chunk=10**9) and a
    same(tag_text(fresh_model, text, "jsonl", "conll", chunk=1),
         tag_text(fresh_model, text, "jsonl", "conll"))
    raw = "Karel Vosk visited Prague. He left.\n\nAcme Corp. grew.\n" * 20
    same(tag_text(fresh_model, raw, "jsonl", chunk=3), tag_text(fresh_model, raw, "jsonl"))


class Lines(io.RawIOBase):
    """A byte stream that counts how far it has been read."""

    def __init__(self, n: int):
        self.n, self.read_lines = n, 0

    def readable(self):
        return True

    def __iter__(self):
        for i in range(self.n):
            self.read_lines += 1
            yield f"Karel Vosk visited Prague number {i}.\n".encode()


def test_streams_in_chunks(fresh_model):
    src = Lines(5000)
    seen_at_first_write = []

    class Out(io.StringIO):
        def write(self, s):
            seen_at_first_write.append(src.read_lines)
            return super().write(s)

    out = Out()
    stats = tag_stream(fresh_model, src, "<gen>", out, output_format="jsonl", chunk_tokens=1000)
    assert stats.sentences == 5000 and len(out.getvalue().splitlines()) == 5000
    # the first chunk was written after ~1000 tokens (8 a line), long before the end
    assert seen_at_first_write[0] < 200 and len(seen_at_first_write) > 30


def test_output_is_atomic(trained, tmp_path, write):
    target = tmp_path / "out.txt"
    target.write_text("previous\n")
    bad = write("bad.txt", "a O\n" * 50_000 + "b O O\n")  # ragged after the first chunks
    r = run("tag", trained, bad, "--input-format", "conll", "--output", target)
    assert r.exit_code == 2 and ":50001:" in r.output
    assert target.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt", "out.txt"]
    r = run("tag", trained, write("ok.txt", "Hi there.\n"), "--output", tmp_path / "no" / "x")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_entity_score_is_the_mean_type_probability():
    labels = ["O", "B-PER", "I-PER", "B-LOC"]
    probs = np.array([[0.1, 0.6, 0.2, 0.1], [0.3, 0.1, 0.5, 0.1]])
    assert entity_score(probs, labels, "PER") == pytest.approx((0.8 + 0.6) / 2)
    assert entity_score(probs, labels, "LOC") == pytest.approx(0.1)
    assert entity_score(probs, labels, "ORG") == 0.0


def test_scores_come_from_token_probabilities_only(fresh_model):
    """A head that gives marginals through Model.token_probabilities scores the same way."""

    class Stub:
        def tag(self, sents):
            return [["B-PER", "I-PER"] + ["O"] * (len(s.tokens) - 2) for s in sents]

        def token_probabilities(self, sents):
            p = [np.tile([0.2, 0.5, 0.3], (len(s.tokens), 1)) for s in sents]
            return ["O", "B-PER", "I-PER"], p

        def tag_and_probabilities(self, sents):
            return self.tag(sents), *self.token_probabilities(sents)

    out = io.StringIO()
    tag_stream(Stub(), io.BytesIO(b"Karel Vosk said hello.\n"), "<t>", out,
               output_format="jsonl")
    e = json.loads(out.getvalue())["entities"]
    assert e == [{"type": "PER", "start": 0, "end": 10, "text": "Karel Vosk", "score": 0.8}]


def test_tags_and_scores_take_one_pass_through_the_network(fresh_model, monkeypatch):
    from nerwin.conll import Sentence

    sents = [Sentence(["Karel", "Vosk", "said"], ["O"] * 3, 1), Sentence(["x"], ["O"], 2)]
    tags, labels, probs = fresh_model.tag_and_probabilities(sents)
    assert tags == fresh_model.tag(sents)
    want_labels, want = fresh_model.token_probabilities(sents)
    assert labels == want_labels
    for a, b in zip(probs, want, strict=True):
        np.testing.assert_array_equal(a, b)
    calls = []
    forward = fresh_model.net.forward
    monkeypatch.setattr(fresh_model.net, "forward",
                        lambda *a, **k: calls.append(1) or forward(*a, **k))
    out = tag_text(fresh_model, "Karel Vosk said hello.\n", "jsonl")
    assert json.loads(out)["tokens"] and len(calls) == 1


def test_model_token_probabilities(fresh_model):
    from nerwin.conll import Sentence

    sents = [Sentence(["Karel", "Vosk"], ["O", "O"], 1), Sentence(["x"], ["O"], 2)]
    labels, probs = fresh_model.token_probabilities(sents)
    assert labels == list(fresh_model.lex.tags.itos)
    assert [p.shape for p in probs] == [(2, len(labels)), (1, len(labels))]
    np.testing.assert_allclose(np.concatenate(probs).sum(axis=1), 1.0, rtol=1e-5)
    tags = fresh_model.tag(sents)
    raw_argmax = [[labels[i] for i in p.argmax(axis=1)] for p in probs]
    # tag() is the argmax, up to the repair rule (I-X that starts an entity -> B-X)
    assert [[t[2:] for t in s] for s in tags] == [[t[2:] for t in s] for s in raw_argmax]


def test_help_shows_an_example():
    r = run("tag", "--help")
    assert r.exit_code == 0 and "Examples:" in r.output and "nerwin tag runs/sample/best -" \
        in r.output


def test_python_m_nerwin_and_progress_bar(trained, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    f = tmp_path / "in.txt"
    f.write_text("Karel Vosk visited Prague.\n" * 50)
    p = subprocess.run([sys.executable, "-m", "nerwin", "tag", str(trained), str(f)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Karel ") and "tagging" in p.stderr  # a bar for a file
    p = subprocess.run([sys.executable, "-m", "nerwin", "tag", str(trained), "-"],
                       input=f.read_text(), capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == ""  # none for a pipe
    p = subprocess.run([sys.executable, "-m", "nerwin", "tag", str(trained), "/nope"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert p.stderr.strip() == "Error: /nope: no such file; expected text to tag"


def test_logistic_head_scores_its_one_type(tmp_path):
    out = tmp_path / "l3"
    r = run("train", ROOT / "configs" / "lecture3.yaml", "--out", out, "--quiet",
            "--set", "training.epochs=3", "--set", "data.test=null")
    assert r.exit_code == 0, r.output
    from nerwin.conll import read_tokens
    from nerwin.model import load_model

    model = load_model(out / "best")
    text = "".join(" ".join(s.tokens) + "\n" for s in read_tokens(TEST)[:200])
    objs = [json.loads(x) for x in tag_text(model, text, "jsonl").splitlines()]
    ents = [e for o in objs for e in o["entities"]]
    assert ents and {e["type"] for e in ents} == {"LOC"}
    assert all(0.5 <= e["score"] <= 1.0 for e in ents)  # each token had σ(s) > 1/2
    labels, _ = model.token_probabilities([])
    assert labels == ["O", "I-LOC"]


def test_crf_head_gives_marginals_and_scores(tmp_path):
    """The crf head's token probabilities are its forward-backward marginals, so entity
    scores work for it through the same Model.token_probabilities."""
    from nerwin.conll import read_tokens
    from nerwin.model import load_model
    from nerwin.nn.crf import crf_marginals

    out = tmp_path / "crf"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "model.head=crf",
            "--set", "training.epochs=2", "--set", "data.test=null")
    assert r.exit_code == 0, r.output
    model = load_model(out / "best")
    sents = read_tokens(TEST)[:50]
    labels, probs = model.token_probabilities(sents)
    assert labels == list(model.lex.tags.itos)
    np.testing.assert_allclose(np.concatenate(probs).sum(axis=1), 1.0, rtol=1e-5)
    # the same as crf_marginals over the network's scores of one sentence
    from nerwin.conll import Corpus

    data = model.encode(Corpus(Path("<t>"), sents[:1], scheme="iob2"))
    scores, _ = model.net.forward(data.rows(slice(0, len(data))))
    p = model.net.params
    want = crf_marginals(scores, data.lengths, p["trans"], p["start"], p["end"],
                         model.net.head.constraints())
    np.testing.assert_allclose(probs[0], want, rtol=1e-5, atol=1e-6)
    text = "".join(" ".join(s.tokens) + "\n" for s in sents)
    objs = [json.loads(x) for x in tag_text(model, text, "jsonl").splitlines()]
    ents = [e for o in objs for e in o["entities"]]
    assert ents and all(0.0 < e["score"] <= 1.0 for e in ents)
