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
from conftest import default_sigint, descendants, forkserver_workers, wait_for_no_descendants
from conftest import run_cli as run
from hypothesis import given, settings
from hypothesis import strategies as st

from nerwin.config import load_config
from nerwin.dataset import build_lexicon, read_split
from nerwin.errors import NerwinError
from nerwin.model import new_model
from nerwin.parallel import Workers
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


def refused_as_conll(text: str) -> bool:
    """Text whose first lines look like CoNLL columns is refused (tested on its own)."""
    from nerwin.tagging import PROBE_LINES, looks_like_conll

    return looks_like_conll([ln for ln in input_lines(text) if ln.strip()][:PROBE_LINES])


TEXT = st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(["Karel Vosk visited Prague.", "\t", "\n", "\n\n", "\U0001F600 ok",
                     "\u05e9\u05dc\u05d5\u05dd \u0639\u0627\u0644\u0645", "U.S. Corp.",
                     "x" * 5000, "a. B? C! ", "\r\n"])), min_size=1, max_size=12).map("".join)


@settings(max_examples=60)
@given(TEXT)
def test_raw_text_in_entities_out_nothing_lost(fresh_model, text):
    if not any(not c.isspace() for c in "".join(input_lines(text))) or refused_as_conll(text):
        return  # no token at all: an error, tested below; CoNLL-looking: tested below
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


# --------------------------------------------------------------------------- read back

UNICODE_TEXT = st.lists(st.one_of(
    st.text(max_size=20),
    st.sampled_from(["Karel Vosk visited Prague.", " ", "\n", "\r", "\r\n", "\t",
                     "Zoe\u0308", "\u0939\u093f\u0928\u094d\u0926\u0940", "\u200b", "\ufeff",
                     "\u200d", "\u00ad", "\u2060", "\u200e", "\u0301", "\U0001F44D\U0001F3FD",
                     "\U0001F1E8\U0001F1FF", "\u05e9\u05b8\u05c1", "\u2028", "\x85", "O",
                     "B-PER", "-DOCSTART-", "\x1c"])), min_size=1, max_size=15).map("".join)


@settings(max_examples=80)
@given(UNICODE_TEXT)
def test_every_output_reads_back(fresh_model, tmp_path_factory, text):
    """conll output reads back with nerwin's own CoNLL reader (same tokens and tags),
    jsonl with json, inline gives the input lines back without its brackets."""
    from nerwin.conll import read_conll
    from nerwin.tokenize import tokenize

    lines = input_lines(text)
    want = [t.text for ln in lines for t in tokenize(ln)]
    if not want or refused_as_conll(text):
        return
    conll = tag_text(fresh_model, text, "conll")
    f = tmp_path_factory.mktemp("rb") / "out.conll"
    f.write_bytes(conll.encode("utf-8"))
    corpus = read_conll(f, scheme="iob2")
    got = [t for s in corpus.sentences for t in s.tokens]
    assert got == want
    assert [t for s in corpus.sentences for t in s.tags] == [
        ln.rsplit(" ", 1)[1] for ln in conll.split("\n") if ln]
    objs = [json.loads(x) for x in tag_text(fresh_model, text, "jsonl").split("\n") if x]
    assert [t for o in objs for t in o["tokens"]] == want
    inline = tag_text(fresh_model, text, "inline").split("\n")[:-1]
    assert len(inline) == len(lines)


# --------------------------------------------------------------------------- conll hint

@pytest.mark.parametrize("text", [
    "-DOCSTART- -X- O O\n\nEU NNP B-ORG\n",
    "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n",
    "EU\tNNP\tB-NP\tB-ORG\nrejects\tVBZ\tB-VP\tO\nGerman\tJJ\tB-NP\tB-MISC\n",
    "\nKarel B-PER\nVosk I-PER\n\nsaid O\n",
])
def test_conll_given_as_text_is_refused_with_a_hint(fresh_model, text):
    with pytest.raises(NerwinError, match="looks like CoNLL columns.*--input-format conll"):
        tag_text(fresh_model, text, "conll")


@pytest.mark.parametrize("text", [
    "Karel Vosk visited Prague.\nHe left.\nThey stayed.\n",
    "Plan B-52 was O\nnot B-52 at all O\nsee I-95 O\n",  # tag-like words, ragged columns
    "I need vitamin B-12\nand zinc O\nor iron O\n",
    "Top scorers:\nMessi 2 O\nRonaldo 1 O\n",  # the same columns, but all "O" and a title
    "O\nO\nO\n",  # one column
    "Karel B-PER\nVosk I-PER\n",  # two lines are too few to tell
])
def test_real_text_is_not_refused(fresh_model, text):
    assert tag_text(fresh_model, text, "conll")


def test_conll_hint_from_the_command_line(trained, write):
    f = write("c.txt", "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n")
    r = run("tag", trained, f, "--quiet")
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"Error: {f}:1: this looks like CoNLL columns (a token and its tags a line), not raw "
        f"text; to tag it as columns pass --input-format conll"]
    assert run("tag", trained, f, "--input-format", "conll").exit_code == 0


# --------------------------------------------------------------------------- reading

class Stream(io.RawIOBase):
    """A byte stream of ``n`` lines ended by ``eol`` that counts the bytes handed out."""

    def __init__(self, n: int, eol: bytes):
        self.data = b"".join(b"line %d here" % i + eol for i in range(n))
        self.pos = 0

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), len(self.data) - self.pos, 4096)
        b[:k] = self.data[self.pos:self.pos + k]
        self.pos += k
        return k


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_reading_is_bounded_whatever_the_line_ends(eol, monkeypatch):
    import nerwin.tagging as tagging

    monkeypatch.setattr(tagging, "READ_BYTES", 10_000)
    raw = Stream(200_000, eol)
    src = io.BufferedReader(raw, buffer_size=10_000)
    blocks = tagging.line_blocks(src, "<s>")
    first, lines = next(blocks)
    assert first == 1 and lines[0] == "line 0 here"
    assert raw.pos < 50_000 < len(raw.data)  # the first block came long before the end
    assert max(len(b) for _, b in blocks) < 2000  # every block small
    total = [ln for _, b in tagging.line_blocks(io.BytesIO(raw.data), "<s>") for ln in b]
    assert total == [f"line {i} here" for i in range(200_000)]


def test_cr_and_crlf_split_across_blocks(monkeypatch):
    import nerwin.tagging as tagging

    monkeypatch.setattr(tagging, "READ_BYTES", 7)
    data = b"ab\r\ncd\re\r\r\nf\n\rg"
    got = [x for _, b in tagging.line_blocks(io.BufferedReader(io.BytesIO(data), 7), "<s>")
           for x in b]
    assert got == ["ab", "cd", "e", "", "f", "", "g"]


# --------------------------------------------------------------------------- fast path

def test_tagger_gives_what_the_model_gives(trained, tmp_path):
    """Tagger.predict (cached encoding, chunk-level Viterbi, array entities) against
    Model.tag_and_probabilities and entity_score, per sentence, for every head."""
    from nerwin.conll import Sentence, read_tokens
    from nerwin.metrics import get_entities
    from nerwin.model import load_model
    from nerwin.tagging import Tagger

    models = [load_model(trained)]
    for head in ("crf", "logistic"):
        out = tmp_path / head
        extra = ["--set", "model.positive=PER"] if head == "logistic" else []
        r = run("train", SAMPLE, "--out", out, "--quiet", "--set", f"model.head={head}",
                "--set", "training.epochs=1", "--set", "data.test=null", *extra)
        assert r.exit_code == 0, r.output
        models.append(load_model(out / "best"))
    sents = read_tokens(TEST)[:300]
    for model in models:
        tagger = Tagger(model)
        for _ in range(2):  # the second time from the cache
            res = tagger.predict([t for s in sents for t in s.tokens],
                                 [len(s.tokens) for s in sents])
            tags, labels, probs = model.tag_and_probabilities(
                [Sentence(s.tokens, ["O"] * len(s.tokens), 1) for s in sents])
            flat = [res.names[i] for i in res.ids.tolist()]
            assert flat == [t for s in tags for t in s]
            want, pos = [], 0
            for tg, pr in zip(tags, probs):
                want += [(pos + s, pos + e, typ, entity_score(pr[s:e], labels, typ))
                         for typ, s, e in get_entities(tg)]
                pos += len(tg)
            got = list(zip(res.ent_start.tolist(), res.ent_end.tolist(),
                           [res.types[x] for x in res.ent_type.tolist()],
                           res.ent_score.tolist()))
            assert got == want and want  # exactly: the same sums in the same order


def test_tagger_encodes_as_the_dataset_does(fresh_model):
    from nerwin.conll import read_tokens
    from nerwin.tagging import Tagger

    sents = read_tokens(TEST)[:200]
    tagger = Tagger(fresh_model)
    tagger.encode(["warm", "the", "cache"], [3])
    data, _, _ = tagger.encode([t for s in sents for t in s.tokens],
                               [len(s.tokens) for s in sents])
    want = fresh_model._encode_untagged(sents)
    idx = np.arange(len(want))
    for a, b in zip(data.rows(idx), want.rows(idx), strict=True):
        np.testing.assert_array_equal(a, b)


def test_tag_texts_and_tag_tokens(trained):
    from nerwin.model import load_model
    from nerwin.tagging import tag_texts, tag_tokens

    model = load_model(trained)
    [items] = tag_texts(model, ["Karel Vosk visited Prague. He left.\nAcme Corp. grew."])
    assert [it.line for it in items] == [1, 1, 2]
    assert items[0].tokens[:2] == ["Karel", "Vosk"] and items[1].offset == 27
    assert [e.text for e in items[0].entities if e.type == "PER"] == ["Karel Vosk"]
    [it] = tag_tokens(model, [["Karel", "Vosk", "said"]])
    assert it.text == "Karel Vosk said" and it.tags[:2] == ["B-PER", "I-PER"]
    assert it.entities[0].start == 0 and it.entities[0].end == 10


# --------------------------------------------------------------------------- workers

MIXED = ("Karel Vosk visited Prague. He left.\n\n  Acme Corp. grew 5 pct.\r\n"
         "Zoe\u0308 met Jan Novak in Brno \u200b today.\n") * 60


@pytest.mark.parametrize("input_format", ["text", "conll"])
@pytest.mark.parametrize("fmt", ["conll", "jsonl", "inline"])
def test_two_workers_write_what_one_writes(trained, fmt, input_format):
    from nerwin.model import load_model

    model = load_model(trained)
    data = TEST.read_bytes() if input_format == "conll" else MIXED.encode("utf-8")
    outs = []
    for workers in (1, 2):
        out = io.StringIO()
        stats = tag_stream(model, io.BytesIO(data), "<t>", out, input_format=input_format,
                           output_format=fmt, chunk_tokens=300,
                           runner=Workers(str(trained), 2) if workers == 2 else None)
        outs.append((out.getvalue(), stats))
    assert outs[0][0] == outs[1][0] and outs[0][0]
    assert outs[0][1] == outs[1][1]


def _start_tagging(trained, tmp_path):
    import time

    # Big enough that the run lasts many seconds after the check below (40,000 lines
    # took about a second: the run could end, its output renamed into place and exit 0,
    # before the signal came).
    big = tmp_path / "big.txt"
    big.write_text("Karel Vosk visited Prague with Acme Corp. in May 1996.\n" * 600_000)
    target = tmp_path / "out.jsonl"
    target.write_text("previous\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # SIGINT at its default in the child, as in a terminal: a test run started as a
    # background job of a script has it ignored, and the child would inherit that (it
    # then ignored the Ctrl-C, finished the run and exited 0).
    p = subprocess.Popen([sys.executable, "-m", "nerwin", "tag", str(trained), str(big),
                          "--output", str(target), "--output-format", "jsonl",
                          "--workers", "2", "--quiet"], env=env, stderr=subprocess.PIPE,
                         text=True, preexec_fn=default_sigint)
    workers = forkserver_workers(p, 2, timeout=60)
    assert len(workers) == 2, descendants(p.pid)
    time.sleep(1.0)  # mid-run
    # Provably still in progress: the workers alive, the output's temporary file there
    # (renamed only when the run is complete), the old output unchanged.
    assert p.poll() is None
    assert all(Path(f"/proc/{w}").exists() for w in workers)
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".out.jsonl.tmp-")]
    assert target.read_text() == "previous\n"
    return p, workers, target


def _check_clean(p, tmp_path, target):

    assert target.read_text() == "previous\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.txt", "out.jsonl"]
    wait_for_no_descendants(p.pid)


def test_a_killed_worker_is_a_clear_error_and_no_output(trained, tmp_path):
    import signal

    p, workers, target = _start_tagging(trained, tmp_path)
    os.kill(workers[0], signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode not in (0, None)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "died (killed by signal SIGKILL)" in lines[0], err
    _check_clean(p, tmp_path, target)
    for w in workers:
        assert not Path(f"/proc/{w}").exists() or "zombie" in Path(
            f"/proc/{w}/status").read_text()


def test_ctrl_c_stops_the_workers_and_writes_nothing(trained, tmp_path):
    import signal

    p, workers, target = _start_tagging(trained, tmp_path)
    os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    _check_clean(p, tmp_path, target)


@given(UNICODE_TEXT)
def test_text_lines_split_as_the_tokenizer_does(text):
    """text_line's shortcuts (one sentence, spans given) give tokenize.sentences' split."""
    from nerwin.tagging import text_line
    from nerwin.tokenize import sentences, token_spans

    for line in input_lines(text) + [text.replace("\n", " ") + " Ok. Yes! No?"]:
        want = [[(t.text, t.start) for t in s] for s in sentences(line)]
        for got in (text_line(3, line), text_line(3, line, token_spans(line))):
            assert [list(zip(it.tokens, [a + it.offset for a in it.starts]))
                    for it in got.items] == want
            for it in got.items:
                assert [it.text[a:b] for a, b in zip(it.starts, it.ends)] == it.tokens


@given(UNICODE_TEXT)
def test_a_chunk_of_lines_is_split_as_each_line_alone(text):
    """chunk_records tokenises a chunk's lines together (text_block): the records are
    those text_line makes of each line alone, the sentences' offsets included."""
    from nerwin.tagging import TextChunk, chunk_records, text_block, text_line

    lines = input_lines(text) + [text.replace("\n", " ") + " Ok. Yes! No?", "",
                                 'He left. "Why?" she asked. Acme Corp. Ltd. grew 5 pct.',
                                 "  Then Mr. Smith came!  (Really.) Yes. ", "end."]
    want = [text_line(7 + k, line) for k, line in enumerate(lines)]
    assert text_block(7, "\n".join(lines)) == want
    assert chunk_records(TextChunk(7, "\n".join(lines))) == want
    assert text_block(1, "") == [text_line(1, "")]


def test_projections_are_built_once_per_plan(fresh_model):
    """The Tagger keeps one Projections per plan: for every chunk size it precomputes the
    same tables as net.projections would, with the same numbers."""
    from nerwin.tagging import Tagger

    net = fresh_model.net
    tagger = Tagger(fresh_model)
    n_rows = sorted(t.n_rows for t in net.spec.tables)
    for n in sorted({1, 50, *n_rows, *(r - 1 for r in n_rows), *(r + 1 for r in n_rows),
                     20_000, 20_017}):
        got, want = tagger._projections(n), net.projections(n)
        assert got.precomputed == want.precomputed, n
        np.testing.assert_array_equal(got.P, want.P)
    assert tagger._projections(20_000) is tagger._projections(20_017)


def test_bad_input_with_workers_is_the_same_error(trained):
    from nerwin.model import load_model

    model = load_model(trained)
    bad = ("Karel Vosk visited Prague.\n" * 3000).encode() + b"bad \xff byte\n"
    for workers in (1, 2):
        with pytest.raises(NerwinError, match=r"<t>:3001: invalid UTF-8"):
            tag_stream(model, io.BytesIO(bad), "<t>", io.StringIO(), chunk_tokens=500,
                       runner=Workers(str(trained), 2) if workers == 2 else None)


# --------------------------------------------------------------------------- text chunks

@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from("ab .\u00e9\u2028\x85"), max_size=40), max_size=60),
       st.lists(st.integers(1, 10), max_size=20), st.integers(1, 60))
def test_text_chunks_are_whole_lines_cut_by_characters(lines, cuts, chunk_chars):
    """Whatever the blocks the lines come in: every line once, in order, numbered; a chunk
    ends at the line with which it reaches chunk_chars characters (a line end counted for
    each line), no sooner, no later."""
    from nerwin.tagging import TextChunk, text_chunks

    blocks, pos = [], 0
    for k in [*cuts, len(lines)]:  # the lines cut into blocks of random sizes
        if pos < len(lines):
            blocks.append((pos + 1, lines[pos:pos + k]))
            pos += k
    got = list(text_chunks(iter(blocks), chunk_chars, 7))
    assert all(isinstance(c, TextChunk) for c in got)
    split = [c.text.split("\n") for c in got]
    assert [ln for part in split for ln in part] == lines
    assert [c.first for c in got] == list(np.cumsum([1] + [len(p) for p in split])[:-1])
    for k, part in enumerate(split):
        size = sum(len(ln) + 1 for ln in part)
        if k < len(split) - 1:
            assert size >= chunk_chars
        assert size - len(part[-1]) - 1 < chunk_chars
        assert got[k].plan_tokens == (7 if size >= chunk_chars else 0)  # full: the plan


def test_full_chunks_share_one_precomputation_plan(fresh_model, monkeypatch):
    """Chunks cut by characters hold more or fewer tokens than chunk_tokens; which tables
    are precomputed is decided by chunk_tokens for every full chunk (the same numbers for
    every sentence wherever the cut falls), by its own tokens for the last one."""
    from nerwin.tagging import Tagger

    seen = []
    real = Tagger._projections

    def spy(self, n):
        seen.append(n)
        return real(self, n)

    monkeypatch.setattr(Tagger, "_projections", spy)
    text = "".join(f"Karel Vosk visited Prague {'x ' * (i % 7)}number {i}.\n"
                   for i in range(400))
    tag_text(fresh_model, text, "jsonl", chunk=200)
    assert len(seen) > 10 and set(seen[:-1]) == {200} and 0 < seen[-1] < 200
    seen.clear()
    tag_text(fresh_model, TEST.read_text(), "jsonl", "conll", chunk=200)  # cut by tokens
    assert len(seen) > 10 and all(n >= 200 for n in seen[:-1])


LONG = ("Karel Vosk visited Prague with Acme Corp. in May 1996. " * 40).strip()  # ~2,200 chars


@pytest.mark.parametrize("fmt", ["conll", "jsonl", "inline"])
def test_three_workers_on_long_and_blank_lines(trained, fmt):
    """Text input whose chunk limit falls inside long lines, with a line longer than a
    whole chunk and runs of blank lines: 3 workers write what 1 writes."""
    from nerwin.model import load_model
    from nerwin.tagging import CHARS_PER_TOKEN, TextChunk, record_chunks

    model = load_model(trained)
    chunk_tokens = 100
    limit = round(chunk_tokens * CHARS_PER_TOKEN)  # 525 characters a chunk
    text = "".join([
        "Jan Novak met Eva in Brno.\n" * 15,  # the limit falls inside the long line after
        LONG + "\n",
        "\n" * (2 * limit),  # more blank lines than a chunk's characters
        LONG[:limit + 75] + "\n",  # one line longer than a chunk
        "  Acme Corp. grew.\n\n",
        LONG[:300] + "\n",
        "\n\n",
        "Eva left.",  # no line end at the end
    ] * 3)
    data = text.encode("utf-8")
    parts = list(record_chunks(io.BytesIO(data), "<t>", chunk_tokens=chunk_tokens))
    lens = [[len(ln) + 1 for ln in p.text.split("\n")] for p in parts if isinstance(
        p, TextChunk)]
    assert len(lens) == len(parts) > 10
    assert lens[0] == [27] * 15 + [len(LONG) + 1]  # the limit fell inside the long line
    assert lens[1] == lens[2] == [1] * limit  # blank lines only
    assert lens[3] == [limit + 76]  # a line longer than a chunk, alone
    outs = []
    for workers in (1, 3):
        out = io.StringIO()
        stats = tag_stream(model, io.BytesIO(data), "<t>", out, output_format=fmt,
                           chunk_tokens=chunk_tokens,
                           runner=Workers(str(trained), 3) if workers == 3 else None)
        outs.append((out.getvalue(), stats))
    assert outs[0][0] == outs[1][0] and outs[0][0]
    assert outs[0][1] == outs[1][1]
    # and what one chunk holding everything writes, but for scores in their last digits
    # (the network's products, batch by batch, may round a row differently with other rows
    # beside it; tags and entities are the same)
    whole = io.StringIO()
    tag_stream(model, io.BytesIO(data), "<t>", whole, output_format=fmt,
               chunk_tokens=10**9)
    if fmt != "jsonl":
        assert whole.getvalue() == outs[0][0]
    else:
        assert ([re.sub(r'"score": [0-9.e-]+', "", x) for x in whole.getvalue().splitlines()]
                == [re.sub(r'"score": [0-9.e-]+', "", x) for x in outs[0][0].splitlines()])


