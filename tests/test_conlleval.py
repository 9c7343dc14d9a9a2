"""`eval --conlleval` prints what conlleval.pl prints, for every head and for odd tags.

The reference is tests/conlleval_ref.py, a line-by-line reimplementation of the Perl
script's counting and printing (checked against the script itself on 3,000 random files
with every odd tag it treats specially, while it was written). nerwin's scorer is checked
against it twice: on arbitrary tag sequences (a property test), and end to end, where
conlleval.pl's input is the --predictions file nerwin itself writes for data files with
odd tags, with a model of each head.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from conlleval_ref import conlleval
from hypothesis import given
from hypothesis import strategies as st

from nerwin.metrics import format_conlleval, score

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"


def columns(gold: list[list[str]], pred: list[list[str]]) -> str:
    """conlleval.pl's input: ``token gold guess`` lines, a blank line after each sentence."""
    return "".join("".join(f"w {g} {p}\n" for g, p in zip(gs, ps)) + "\n"
                   for gs, ps in zip(gold, pred))


# --- the reference itself, on what the Perl script is known to do -------------------------

@pytest.mark.parametrize("text,first_line", [
    # a lone I- starts a chunk; B- after I- of the same type starts another (IOB1 reading)
    ("a O O\nb I-PER I-PER\nc B-PER I-PER\n",
     "processed 3 tokens with 2 phrases; found: 1 phrases; correct: 0."),
    # a type change inside a chunk ends it and starts another
    ("a B-PER B-PER\nb I-LOC I-PER\n",
     "processed 2 tokens with 2 phrases; found: 1 phrases; correct: 0."),
    # the script has no rule for S-: two S-PER in a row are one chunk to it
    ("a S-PER S-PER\nb S-PER S-PER\n",
     "processed 2 tokens with 1 phrases; found: 1 phrases; correct: 1."),
    # a chunk never crosses a blank line
    ("a B-PER B-PER\n\nb I-PER I-PER\n",
     "processed 2 tokens with 2 phrases; found: 2 phrases; correct: 2."),
    # a -X- line is a boundary, not a token
    ("-X- O O\na B-PER B-PER\n",
     "processed 1 tokens with 1 phrases; found: 1 phrases; correct: 1."),
    ("a O O\nb O O\n", "processed 2 tokens with 0 phrases; found: 0 phrases; correct: 0."),
])
def test_the_reference_counts_as_the_perl_script(text, first_line):
    assert conlleval(text).splitlines()[0] == first_line


def test_the_reference_prints_per_type_with_the_guessed_count():
    out = conlleval("a B-PER B-LOC\nb O O\nc B-A-B B-A-B\n").splitlines()
    assert out[1] == "accuracy:  66.67%; precision:  50.00%; recall:  50.00%; FB1:  50.00"
    assert out[2:] == ["              A-B: precision: 100.00%; recall: 100.00%; FB1: 100.00  1",
                       "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1",
                       "              PER: precision:   0.00%; recall:   0.00%; FB1:   0.00  0"]


# --- nerwin's scorer on arbitrary B/I/O sequences ------------------------------------------

TAG = st.sampled_from(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC-X", "I-MISC-X"])


@st.composite
def tagged(draw):
    lengths = draw(st.lists(st.integers(1, 8), max_size=5))
    gold = [draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    pred = [draw(st.lists(TAG, min_size=n, max_size=n)) for n in lengths]
    return gold, pred


@given(tagged())
def test_format_conlleval_equals_the_reference_on_any_bio_tags(gp):
    """Lone I-, I- after O, type changes, B- inside a chunk, hyphens in the type: the same
    chunks, counts and numbers as conlleval.pl. (E-/S- tags never reach the scorer from
    `eval`: both columns are converted to IOB2 first; see the end-to-end test.)"""
    gold, pred = gp
    assert format_conlleval(score(gold, pred)) == conlleval(columns(gold, pred))


# --- end to end: eval --conlleval vs conlleval.pl on nerwin's own predictions file ---------

HEADS = {
    "softmax": [],
    "logistic": ["--set", "model.head=logistic", "--set", "model.positive=LOC"],
    "crf": ["--set", "model.head=crf"],
}

ODD_FILES = {
    "sample test": None,  # data/sample/test.txt
    "iob1 (I- starts a chunk)": "Karel I-PER\nVosk I-PER\nvisited O\nPrague I-LOC\n"
                                "Berlin B-LOC\n\nAcme I-ORG\nCorp I-ORG\n",
    "type changes": "Karel B-PER\nVosk I-LOC\nvisited O\nPrague B-LOC\nAcme I-ORG\n",
    "lone I- after O": "Karel O\nVosk I-PER\nvisited O\nPrague I-LOC\nin O\nMay I-MISC\n",
    "iobes (E-, S-)": "Karel B-PER\nVosk E-PER\nvisited O\nPrague S-LOC\nBerlin S-LOC\n\n"
                      "Acme B-ORG\nCorp I-ORG\nLtd E-ORG\n",
    "O only": "Karel O\nVosk O\n\nvisited O\n",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("heads")
    out = {}
    for head, sets in HEADS.items():
        run = root / head
        r = run_cli("train", SAMPLE, "--out", run, "--quiet", "--set", "training.epochs=1",
                    "--set", "data.test=null", *sets)
        assert r.exit_code == 0, r.output
        out[head] = run / "best"
    return out


@pytest.mark.parametrize("name", list(ODD_FILES))
@pytest.mark.parametrize("head", list(HEADS))
def test_eval_conlleval_equals_conlleval_pl_on_the_predictions_file(head, name, models,
                                                                     tmp_path):
    data = TEST
    if ODD_FILES[name] is not None:
        data = tmp_path / "data.txt"
        data.write_text(ODD_FILES[name])
    pred = tmp_path / "pred.txt"
    r = run_cli("eval", models[head], data, "--conlleval", "--predictions", pred)
    assert r.exit_code == 0, r.output
    assert r.output == conlleval(pred.read_text(encoding="utf-8"))


def test_a_logistic_model_is_scored_on_its_one_type_in_both(models, tmp_path):
    """The logistic head detects one type: its scores count that type's gold phrases, and
    the predictions file's gold column says so (other types are O there), so conlleval.pl
    on the file no longer counts every type's phrases (it said 455 where eval said 160)."""
    pred = tmp_path / "pred.txt"
    r = run_cli("eval", models["logistic"], TEST, "--conlleval", "--predictions", pred)
    assert r.exit_code == 0, r.output
    lines = [line for line in TEST.read_text().splitlines()
             if line.strip() and not line.startswith("-DOCSTART-")]
    gold_loc = sum(1 for line in lines if line.endswith(" B-LOC"))
    assert r.output.startswith(f"processed {len(lines)} tokens with {gold_loc} phrases;")
    gold_col = {line.split()[1] for line in pred.read_text().splitlines() if line}
    assert gold_col == {"O", "B-LOC", "I-LOC"}
    assert [line.split()[0] for line in r.output.splitlines()[2:]] == ["LOC:"]


def test_tags_without_a_prefix_are_refused_with_the_reason(models, tmp_path):
    data = tmp_path / "bare.txt"
    data.write_text("Karel PER\nVosk PER\nvisited O\n")
    r = run_cli("eval", models["softmax"], data, "--conlleval")
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "bare.txt:1: 'PER' is not a NER tag" in r.output
