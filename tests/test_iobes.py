"""model.scheme: iobes: the IOBES tag set, labels converted on the way in, IOBES transition
constraints (crf and Viterbi, gradient-checked), predictions read back to IOB2, so eval,
tag output and entity scores look as with an IOB2 model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nerwin.cli import cli
from nerwin.config import ConfigError, load_config
from nerwin.conll import Corpus, Sentence, from_iob2, read_conll, to_iob2
from nerwin.dataset import build_lexicon, encode_labels, read_split
from nerwin.gradcheck import numerical_gradient, rel_error
from nerwin.metrics import score
from nerwin.model import new_model
from nerwin.nn import crf
from nerwin.vocab import Vocab, build_tag_vocab, tag_scheme

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TRAIN = ROOT / "data" / "sample" / "train.txt"
TEST = ROOT / "data" / "sample" / "test.txt"
IOBES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# ------------------------------------------------------------------ tag sets and conversion


def test_tag_vocab_in_iobes():
    v = build_tag_vocab([["B-PER", "I-PER", "O", "B-LOC"]], "iobes")
    assert v.itos == ("O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER",
                      "S-PER")
    assert tag_scheme(v) == "iobes"
    assert tag_scheme(build_tag_vocab([["B-PER"]])) == "iob2"


@pytest.mark.parametrize("iob2,iobes", [
    (["O"], ["O"]),
    (["B-PER"], ["S-PER"]),
    (["B-PER", "I-PER"], ["B-PER", "E-PER"]),
    (["B-PER", "I-PER", "I-PER", "O"], ["B-PER", "I-PER", "E-PER", "O"]),
    (["B-PER", "B-PER", "I-PER"], ["S-PER", "B-PER", "E-PER"]),
    (["B-PER", "B-LOC", "I-LOC", "B-LOC"], ["S-PER", "B-LOC", "E-LOC", "S-LOC"]),
])
def test_conversion_round_trips(iob2, iobes):
    assert from_iob2(iob2, "iobes") == iobes
    assert to_iob2(iobes, "iobes") == (iob2, 0)


def test_labels_of_a_corpus_are_its_iobes_form():
    """encode_labels' array conversion equals from_iob2 sentence by sentence (a sentence's
    last token is never continued by the next sentence's first)."""
    corpus = read_conll(TRAIN)
    tags = build_tag_vocab([corpus.tag_names], "iobes")
    labels = encode_labels(corpus, tags)
    want = [t for s in corpus.sentences for t in from_iob2(list(s.tags), "iobes")]
    assert [tags.itos[i] for i in labels] == want
    assert {"S-PER", "E-LOC", "B-ORG", "I-MISC"} <= set(want)
    # a sentence ending in B-X followed by a sentence starting with I-X (not valid IOB2
    # across the boundary, but the conversion must not read across it)
    c = Corpus(Path("<t>"), [Sentence(("a",), ("B-PER",), 1),
                             Sentence(("b", "c"), ("I-PER", "I-PER"), 3)])
    got = [tags.itos[i] for i in encode_labels(c, tags)]
    assert got[0] == "S-PER"


# ------------------------------------------------------------------ constraints


def test_allowed_transitions_iobes():
    trans_ok, start_ok, end_ok = crf.allowed_transitions_iobes(IOBES)
    ok = {(a, b) for i, a in enumerate(IOBES) for j, b in enumerate(IOBES) if trans_ok[i, j]}
    for a in IOBES:
        for b in IOBES:
            pa, ta = a[0], a[2:]
            pb, tb = b[0], b[2:]
            if pa in "BI":  # an open entity continues with I-X or E-X of its own type
                want = pb in "IE" and ta == tb
            else:  # O, E-X, S-X: closed; only O, B-Y, S-Y may follow
                want = pb in "OBS"
            assert ((a, b) in ok) == want, (a, b)
    assert [t for t, s in zip(IOBES, start_ok) if s] == ["O", "B-PER", "S-PER", "B-LOC",
                                                         "S-LOC"]
    assert [t for t, e in zip(IOBES, end_ok) if e] == ["O", "E-PER", "S-PER", "E-LOC",
                                                       "S-LOC"]
    with pytest.raises(ValueError, match="not IOBES"):
        crf.allowed_transitions_iobes(["O", "X-PER"])
    with pytest.raises(ValueError, match="scheme 'io'"):
        crf.transitions_for(IOBES, "io")


def _valid_iobes(rng, lengths):
    """Random valid IOBES paths: random IOB2 sentences converted."""
    iob2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    out = []
    for L in lengths:
        tags = [iob2[k] for k in rng.integers(0, 5, size=L)]
        tags, _ = to_iob2(tags, "iob2")  # repair: I-X after anything else becomes B-X
        out += [IOBES.index(t) for t in from_iob2(tags, "iobes")]
    return np.array(out)


def test_crf_with_iobes_constraints_matches_brute_force_and_gradcheck():
    rng = np.random.default_rng(0)
    C = len(IOBES)
    con = crf.allowed_transitions_iobes(IOBES)
    lengths = np.array([1, 3, 2])
    N = int(lengths.sum())
    s = rng.normal(size=(N, C))
    A, st, en = rng.normal(size=(C, C)), rng.normal(size=C), rng.normal(size=C)
    y = _valid_iobes(rng, lengths)
    nll, _ = crf.crf_nll_forward(s, lengths, y, A, st, en, con)
    # brute force over every allowed path of each sentence
    import itertools

    trans_ok, start_ok, end_ok = con
    want, k = 0.0, 0
    for L in lengths:
        ss, yy = s[k:k + L], y[k:k + L]
        scores = []
        for p in itertools.product(range(C), repeat=int(L)):
            if not (start_ok[p[0]] and end_ok[p[-1]]
                    and all(trans_ok[p[t - 1], p[t]] for t in range(1, L))):
                continue
            scores.append(st[p[0]] + en[p[-1]] + sum(ss[t, p[t]] for t in range(L))
                          + sum(A[p[t - 1], p[t]] for t in range(1, L)))
        gold = (st[yy[0]] + en[yy[-1]] + sum(ss[t, yy[t]] for t in range(L))
                + sum(A[yy[t - 1], yy[t]] for t in range(1, L)))
        m = max(scores)
        want += m + np.log(np.exp(np.array(scores) - m).sum()) - gold
        k += L
    assert nll == pytest.approx(want, rel=1e-10)
    # gradients against central differences
    _, cache = crf.crf_nll_forward(s, lengths, y, A, st, en, con)
    dS, dA, dst, den = crf.crf_nll_backward(cache)
    for x, dx in ((s, dS), (A, dA), (st, dst), (en, den)):
        num = numerical_gradient(lambda: crf.crf_nll_forward(s, lengths, y, A, st, en,
                                                             con)[0], x, 1e-5)
        allowed = np.isfinite(num) if x is not A else trans_ok
        assert ((rel_error(dx[allowed], num[allowed]) < 1e-6)
                | (np.abs(dx[allowed] - num[allowed]) < 1e-9)).all()
    # Viterbi only returns allowed paths
    best = crf.viterbi(s, lengths, A, st, en, con)
    k = 0
    for L in lengths:
        p = best[k:k + L]
        assert start_ok[p[0]] and end_ok[p[-1]]
        assert all(trans_ok[p[t - 1], p[t]] for t in range(1, L))
        k += L


# ------------------------------------------------------------------ the model


def _model(scheme: str, head: str = "crf"):
    cfg = load_config(SAMPLE, [f"model.scheme={scheme}", f"model.head={head}"])
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    return new_model(cfg, lex, np.random.default_rng(0))


@pytest.mark.parametrize("head", ["crf", "softmax"])
def test_scores_are_the_same_in_either_scheme_for_the_same_entities(head):
    """Predicting the same entities, an IOBES model and an IOB2 model decode to the same
    IOB2 tags, so nerwin eval's scores are identical."""
    corpus = read_conll(TEST)
    gold = [list(s.tags) for s in corpus.sentences]
    rng = np.random.default_rng(1)
    # some predicted entities: the gold ones with a share of sentences blanked or shifted
    pred = [g if rng.random() < 0.7 else ["O"] * len(g) for g in gold]
    pred = [p if rng.random() < 0.8 else to_iob2(["O"] + p[:-1], "iob2")[0] for p in pred]
    results = []
    for scheme in ("iob2", "iobes"):
        m = _model(scheme, head)
        assert m.net.head.scheme == scheme
        data = m.encode(corpus)
        tags = m.lex.tags
        ids = np.array([tags.stoi[t] for p in pred for t in from_iob2(p, scheme)])
        decoded = m.decode(data, ids)
        assert decoded == pred
        results.append(score(m.gold_tags(corpus), decoded))
    assert results[0] == results[1]


def test_logistic_head_refuses_iobes(tmp_path):
    with pytest.raises(ConfigError, match="model.scheme"):
        load_config(ROOT / "configs" / "lecture3.yaml", ["model.scheme=iobes"])


def test_a_model_trained_in_iobes_evaluates_and_tags_in_iob2(tmp_path):
    out = tmp_path / "run"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "model.head=crf",
            "--set", "model.scheme=iobes", "--set", "training.epochs=3")
    assert r.exit_code == 0, r.output
    from nerwin.model import load_model

    model = load_model(out / "best")
    assert model.net.head.scheme == "iobes"
    assert {"E-PER", "S-LOC"} <= set(model.lex.tags.itos)
    scores = json.loads((out / "test_scores.json").read_text())
    assert scores["f1"] > 50
    ev = run("eval", out / "best", TEST)
    assert ev.exit_code == 0, ev.output
    # tag output: IOB2 like the input, E-/S- never appear
    src = tmp_path / "in.conll"
    src.write_text("".join(line.split(" ")[0].rstrip("\n") + "\n"
                           for line in TEST.read_text().splitlines(keepends=True)[:400]))
    dst = tmp_path / "out.conll"
    t = run("tag", out / "best", src, "--input-format", "conll", "--output-format", "conll",
            "--output", dst)
    assert t.exit_code == 0, t.output
    tags = [line.split()[-1] for line in dst.read_text().splitlines() if len(line.split()) > 1]
    assert tags and {t[:2] for t in tags if t != "O"} <= {"B-", "I-"}
    assert any(t != "O" for t in tags)
    # entity scores read E-X and S-X probabilities too: a one-token entity scores > 0
    from nerwin.tagging import entity_score

    labels, probs = model.token_probabilities([Sentence(("Prague",), ("O",), 1)])
    assert "S-LOC" in labels
    loc = entity_score(probs[0], labels, "LOC")
    p = probs[0][0]
    assert loc == pytest.approx(min(1.0, sum(p[k] for k, lab in enumerate(labels)
                                             if lab[2:] == "LOC")))
    assert loc >= p[labels.index("S-LOC")] > 0


def test_vocab_helper_accepts_lists():
    assert tag_scheme(["O", "S-PER"]) == "iobes"
    assert tag_scheme(Vocab(("O", "B-PER", "I-PER"))) == "iob2"
