"""nerwin convert: CoNLL schemes and JSON lines of spans, round trips, errors, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli as run

from nerwin.conll import read_conll
from nerwin.report import data_report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample" / "train.txt"



def sentences(path, scheme="auto"):
    c = read_conll(path, scheme=scheme)
    return [(s.tokens, s.tags) for s in c.sentences]


IOB2 = "EU B-ORG\nrejects O\nGerman B-MISC\nBritish B-MISC\nlamb O\n\nPeter B-PER\nB I-PER\n" \
       "Smith B-PER\n\n"


@pytest.mark.parametrize("to, tags", [
    ("iob1", ["I-ORG", "O", "I-MISC", "B-MISC", "O", "I-PER", "I-PER", "B-PER"]),
    ("iob2", ["B-ORG", "O", "B-MISC", "B-MISC", "O", "B-PER", "I-PER", "B-PER"]),
    ("iobes", ["S-ORG", "O", "S-MISC", "S-MISC", "O", "B-PER", "E-PER", "S-PER"]),
])
def test_schemes_table(write, tmp_path, to, tags):
    src = write("in.txt", IOB2)
    out = tmp_path / f"out.{to}"
    r = run("convert", src, out, "--to", to)
    assert r.exit_code == 0, r.output
    got = [line.split()[1] for line in out.read_text().splitlines() if line]
    assert got == tags
    # and back: the same IOB2 file, byte for byte
    back = tmp_path / "back.txt"
    assert run("convert", out, back, "--to", "iob2", "--scheme", to).exit_code == 0
    assert back.read_text() == IOB2


def test_sample_round_trip_through_every_format(tmp_path):
    want = sentences(SAMPLE)
    prev = SAMPLE
    for k, to in enumerate(["iob1", "iobes", "jsonl", "iob2", "iobes", "iob1", "iob2"]):
        out = tmp_path / f"{k}.{'jsonl' if to == 'jsonl' else 'txt'}"
        r = run("convert", prev, out, "--to", to)
        assert r.exit_code == 0, r.output
        if to != "jsonl":
            assert sentences(out, to) == want
        prev = out
    assert prev.read_bytes() == SAMPLE.read_bytes()  # columns kept, tags the same


def test_jsonl_record_shape_and_offsets(write, tmp_path):
    src = write("in.txt", "-DOCSTART- O\n\n" + IOB2 + "-DOCSTART- O\n\nParis B-LOC\n, O\n"
                "( O\nFrance B-LOC\n) O\n\n")
    out = tmp_path / "o.jsonl"
    assert run("convert", src, out, "--to", "jsonl").exit_code == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["doc"] for r in recs] == [1, 1, 2]
    assert recs[2]["text"] == "Paris, (France)"
    for r in recs:
        for a, b, _ in r["entities"]:
            assert r["text"][a:b].strip() == r["text"][a:b]
        assert [r["text"][a:b] for a, b in r["offsets"]] == r["tokens"]
    assert [(recs[1]["text"][a:b], t) for a, b, t in recs[1]["entities"]] == [("Peter B", "PER"),
                                                                        ("Smith", "PER")]
    back = tmp_path / "back.txt"
    assert run("convert", out, back, "--to", "iob2").exit_code == 0
    assert sentences(back) == sentences(src)
    assert back.read_text().count("-DOCSTART-") == 2


def test_sentences_before_the_first_docstart(write, tmp_path):
    src = write("in.txt", "Paris B-LOC\n\n-DOCSTART- O\n\nEU B-ORG\nsaid O\n\n")
    j, back = tmp_path / "o.jsonl", tmp_path / "back.txt"
    assert run("convert", src, j, "--to", "jsonl").exit_code == 0
    assert run("convert", j, back, "--to", "iob2").exit_code == 0
    assert back.read_text() == "Paris B-LOC\n\n-DOCSTART- O\n\nEU B-ORG\nsaid O\n\n"


def test_jsonl_without_tokens_is_tokenised_and_cut_at_entities(write, tmp_path):
    src = write("in.jsonl", json.dumps({"text": "Acme Corp. opened a Prague-based lab. "
                                        "Karel Vosk runs it.",
                                        "entities": [[0, 10, "ORG"], [20, 26, "LOC"],
                                                     [38, 48, "PER"]]}) + "\n")
    out = tmp_path / "o.txt"
    r = run("convert", src, out, "--to", "iob2")
    assert r.exit_code == 0, r.output
    assert "tokens cut at entity boundaries 1" in r.output
    got = sentences(out)
    assert len(got) == 2  # split into sentences as nerwin tag splits text
    toks = [t for s, _ in got for t in s]
    tags = [t for _, s in got for t in s]
    assert toks[:7] == ["Acme", "Corp.", "opened", "a", "Prague", "-based", "lab"]
    assert tags[:7] == ["B-ORG", "I-ORG", "O", "O", "B-LOC", "O", "O"]
    assert tags[-5:] == ["B-PER", "I-PER", "O", "O", "O"]


def test_entity_across_a_sentence_cut_keeps_one_sentence(write, tmp_path):
    src = write("in.jsonl", json.dumps({"text": "He met Dr. Who. Then left.",
                                        "entities": [[7, 15, "PER"]]}) + "\n"
                + json.dumps({"text": "It was U.S. Steel.", "label": [[7, 17, "ORG"]]}))
    out = tmp_path / "o.txt"
    assert run("convert", src, out, "--to", "iob2").exit_code == 0
    c = read_conll(out)
    assert dict(c.entity_counts()) == {"PER": 1, "ORG": 1}


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON"),
    ('["text"]', 'expected an object with a "text" string'),
    ('{"text": "ab", "entities": [[0, 5, "X"]]}', "outside the text"),
    ('{"text": "ab cd", "entities": [[0, 4, "X"], [3, 5, "Y"]]}', "overlap"),
    ('{"text": "ab", "entities": [[0, 2, "A B"]]}', "without spaces"),
    ('{"text": "ab", "entities": [[0, "2", "X"]]}', "integer offsets"),
    ('{"text": "a  b", "entities": [[1, 3, "X"]]}', "covers only spaces"),
    ('{"text": "ab", "entities": [], "offsets": [[1, 0]]}', "not increasing"),
])
def test_jsonl_errors_are_one_line_with_file_and_line(write, tmp_path, line, message):
    src = write("in.jsonl", '{"text": "fine", "entities": []}\n' + line + "\n")
    out = write("out.txt", "keep me\n")
    r = run("convert", src, out, "--to", "iob2")
    assert r.exit_code == 2
    assert f"{src}:2: " in r.output and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert out.read_text() == "keep me\n"  # written atomically: untouched on error
    assert {p.name for p in tmp_path.iterdir()} == {"in.jsonl", "out.txt"}  # no temp left


def test_conll_reader_errors_and_repairs_as_nerwin_data(write, tmp_path):
    bad = write("bad.txt", "EU B-ORG\nrejects\n")
    r = run("convert", bad, tmp_path / "o.txt", "--to", "iob1")
    assert r.exit_code == 2 and f"{bad}:2: found 1 columns, expected 2" in r.output
    rep = write("rep.txt", "EU I-ORG\nx O\nPeter I-PER\n\n")  # read as IOB2: 2 repairs
    r = run("convert", rep, tmp_path / "o.txt", "--to", "iob2", "--scheme", "iob2")
    assert r.exit_code == 0
    assert "repaired tags 2" in r.output
    assert data_report([rep], None, "iob2")["files"][0]["repaired_tags"] == 2


def test_refuses_same_file_and_jsonl_to_jsonl(write):
    src = write("in.txt", IOB2)
    r = run("convert", src, src, "--to", "iob1")
    assert r.exit_code == 2 and "is the input file" in r.output
    j = write("in.jsonl", '{"text": "a", "entities": []}\n')
    r = run("convert", j, j.with_name("o.jsonl"), "--to", "jsonl")
    assert r.exit_code == 2 and "JSON lines already" in r.output


@pytest.mark.parametrize("name", ["train.txt", "valid.txt", "test.txt"])
def test_conll2003_round_trips_keep_what_nerwin_data_counts(shared_data, tmp_path, name):
    src = shared_data(f"conll2003/{name}")
    want = data_report([src], None, None)["files"][0]
    want_sents = sentences(src)
    prev, scheme = src, "auto"
    for k, to in enumerate(["iob1", "iobes", "jsonl", "iob1", "iob2"]):
        out = tmp_path / f"{k}.{'jsonl' if to == 'jsonl' else 'txt'}"
        r = run("convert", prev, out, "--to", to, "--scheme", scheme)
        assert r.exit_code == 0, r.output
        assert f"{want['entities']:,} entities" in r.output
        if to != "jsonl":
            got = data_report([out], None, to)["files"][0]
            for key in ("sentences", "tokens", "entities", "entities_per_type",
                        "repaired_tags"):
                assert got[key] == want[key], key
            assert sentences(out, to) == want_sents
        prev, scheme = out, "auto" if to == "jsonl" else to
    # CoNLL to CoNLL keeps the columns: iob2 -> iob1 -> iobes -> iob2 is the file itself
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    assert run("convert", src, a, "--to", "iob1").exit_code == 0
    assert run("convert", a, b, "--to", "iobes", "--scheme", "iob1").exit_code == 0
    assert run("convert", b, c, "--to", "iob2", "--scheme", "iobes").exit_code == 0
    assert c.read_bytes() == src.read_bytes()
