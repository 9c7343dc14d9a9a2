"""Tests for nerwin.metrics: hand-worked cases, then agreement with seqeval (conlleval mode)."""

from __future__ import annotations

import json
import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval import metrics as seqeval_metrics  # the test extra: a hard requirement
from seqeval.metrics import sequence_labeling

from nerwin.metrics import format_table, get_entities, score

# --- get_entities: conlleval's lenient chunk rules --------------------------------------


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], []),
        (["O", "O"], []),
        (["B-PER", "I-PER", "O"], [("PER", 0, 2)]),
        # A chunk still open at the end of the sentence is closed there.
        (["O", "B-LOC", "I-LOC"], [("LOC", 1, 3)]),
        # I- at sentence start, and I- after O, start a chunk.
        (["I-PER", "O", "I-PER", "I-PER"], [("PER", 0, 1), ("PER", 2, 4)]),
        # A type change inside a chunk ends it and starts a new one.
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
        (["I-PER", "I-ORG"], [("PER", 0, 1), ("ORG", 1, 2)]),
        # B- right after I- (or B-) of the same type splits.
        (["B-PER", "I-PER", "B-PER"], [("PER", 0, 2), ("PER", 2, 3)]),
        (["B-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        # Types may contain '-'.
        (["B-GPE-CITY", "I-GPE-CITY"], [("GPE-CITY", 0, 2)]),
        # IOBES: E- closes, S- is a single token, I- after E- starts a new chunk.
        (["B-PER", "E-PER", "S-PER", "I-PER"], [("PER", 0, 2), ("PER", 2, 3), ("PER", 3, 4)]),
        (["S-LOC", "S-LOC"], [("LOC", 0, 1), ("LOC", 1, 2)]),
    ],
)
def test_get_entities_hand_cases(tags: list[str], expected: list[tuple[str, int, int]]) -> None:
    assert get_entities(tags) == expected


@pytest.mark.parametrize("bad", ["PER", "B", "B-", "X-PER", "b-PER", "", "BPER"])
def test_get_entities_rejects_malformed_tags(bad: str) -> None:
    with pytest.raises(ValueError, match="is not 'O'"):
        get_entities(["O", bad])


def test_get_entities_rejects_a_bare_string() -> None:
    # A str is a Sequence[str]; scoring its characters would be silently wrong.
    with pytest.raises(ValueError, match="string"):
        get_entities("B-PER")


# --- score: hand-worked cases ------------------------------------------------------------


def test_score_hand_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "B-ORG"]]
    s = score(gold, pred)
    # gold: PER(0,0-2) LOC(0,3-4) ORG(1,0-1); pred: PER(0,0-2) ORG(0,3-4) ORG(1,0-1) ORG(1,1-2)
    assert s["counts"] == {"gold": 3, "predicted": 4, "correct": 2, "tokens": 6}
    assert s["precision"] == pytest.approx(50.0)
    assert s["recall"] == pytest.approx(200 / 3)
    assert s["f1"] == pytest.approx(2 * 50 * (200 / 3) / (50 + 200 / 3))
    # Tags equal at positions 0, 1, 2 (of 6 tokens).
    assert s["token_accuracy"] == pytest.approx(50.0)
    assert s["per_type"]["PER"] == {
        "precision": 100.0, "recall": 100.0, "f1": 100.0, "support": 1, "predicted": 1,
    }
    assert s["per_type"]["LOC"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0,
    }
    org = s["per_type"]["ORG"]
    assert (org["support"], org["predicted"]) == (1, 3)
    assert org["precision"] == pytest.approx(100 / 3)
    assert org["recall"] == pytest.approx(100.0)
    assert org["f1"] == pytest.approx(50.0)
    assert s["macro"]["f1"] == pytest.approx((100.0 + 0.0 + 50.0) / 3)
    assert s["macro"]["precision"] == pytest.approx((100.0 + 0.0 + 100 / 3) / 3)
    assert s["macro"]["recall"] == pytest.approx((100.0 + 0.0 + 100.0) / 3)


def test_lenient_i_after_o_matches_a_gold_b() -> None:
    # conlleval reads "O I-PER I-PER" as a PER chunk, so it matches "O B-PER I-PER".
    s = score([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert s["f1"] == pytest.approx(100.0)
    # ...but the tags differ, and token accuracy says so.
    assert s["token_accuracy"] == pytest.approx(200 / 3)


def test_split_and_type_change_are_errors() -> None:
    gold = [["B-PER", "I-PER", "I-PER"]]
    assert score(gold, [["B-PER", "I-PER", "B-PER"]])["counts"]["correct"] == 0
    assert score(gold, [["B-PER", "I-LOC", "I-PER"]])["counts"]["correct"] == 0


def test_chunks_do_not_cross_sentences() -> None:
    # Two one-token chunks in two sentences, never one two-token chunk.
    s = score([["I-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert s["counts"] == {"gold": 2, "predicted": 2, "correct": 2, "tokens": 2}
    # Same positions in different sentences are different chunks.
    s = score([["B-PER"], ["O"]], [["O"], ["B-PER"]])
    assert s["counts"]["correct"] == 0


def test_empty_predictions_give_zero_not_nan() -> None:
    s = score([["B-PER", "O"]], [["O", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    assert s["per_type"]["PER"]["predicted"] == 0
    assert s["token_accuracy"] == pytest.approx(50.0)


def test_no_entities_at_all() -> None:
    s = score([["O", "O"]], [["O", "O"]])
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 0.0, 0.0)
    assert s["per_type"] == {}
    assert s["macro"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["token_accuracy"] == 100.0


def test_no_sentences() -> None:
    s = score([], [])
    assert s["counts"] == {"gold": 0, "predicted": 0, "correct": 0, "tokens": 0}
    assert s["token_accuracy"] == 0.0
    assert s["confusion"] == {"labels": [], "matrix": []}


def test_length_mismatch_names_the_sentence() -> None:
    with pytest.raises(ValueError, match="sentence 1"):
        score([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 sentences"):
        score([["O"], ["O"]], [["O"]])


def test_confusion_matrix() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-PER"]]
    conf = score(gold, pred)["confusion"]
    assert conf["labels"] == ["O", "B-LOC", "B-PER", "I-PER"]
    # Rows are gold, columns predicted.
    assert conf["matrix"] == [
        [1, 0, 0, 0],  # gold O
        [0, 0, 1, 0],  # gold B-LOC predicted B-PER
        [0, 0, 1, 0],  # gold B-PER
        [1, 0, 0, 0],  # gold I-PER predicted O
    ]


def test_score_is_json_serialisable() -> None:
    s = score([["B-PER", "I-PER", "O"]], [["B-PER", "O", "B-LOC"]])
    assert json.loads(json.dumps(s, allow_nan=False)) == s


def test_format_table() -> None:
    s = score([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-PER"]])
    table = format_table(s)
    lines = table.splitlines()
    assert lines[0] == "processed 4 tokens with 2 phrases; found: 2 phrases; correct: 1."
    assert lines[1] == "accuracy:  75.00%; precision:  50.00%; recall:  50.00%; FB1:  50.00"
    header = next(line for line in lines if "support" in line)
    assert header.split() == ["type", "precision", "recall", "FB1", "found", "support"]
    per_row = {line.split()[0]: line.split() for line in lines if line.split()}
    # PER: 1 correct of 2 found, 1 gold; LOC: 0 found, 1 gold.
    assert per_row["PER"] == ["PER", "50.00%", "100.00%", "66.67", "2", "1"]
    assert per_row["LOC"] == ["LOC", "0.00%", "0.00%", "0.00", "0", "1"]
    # Token-level numbers are never labelled F1.
    assert "token" in table and "FB1: 75" not in table


# --- agreement with seqeval's default mode (which reproduces conlleval) ------------------


def _random_corpus(
    rng: random.Random, n_sentences: int, tagset: list[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Random gold/pred pairs; about half the predicted tags copy gold so some chunks match."""
    gold, pred = [], []
    for _ in range(n_sentences):
        n = rng.randint(0, 12)
        g = [rng.choice(tagset) for _ in range(n)]
        p = [t if rng.random() < 0.5 else rng.choice(tagset) for t in g]
        gold.append(g)
        pred.append(p)
    return gold, pred


IOB_TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-MISC"]


def _seqeval(gold, pred) -> tuple[float, float, float, dict]:
    """seqeval's micro P, R, F1 and its per-type report (default mode = conlleval's)."""
    with warnings.catch_warnings():
        # seqeval warns on undefined precision/recall; we define them as 0 like it does.
        warnings.simplefilter("ignore")
        return (seqeval_metrics.precision_score(gold, pred),
                seqeval_metrics.recall_score(gold, pred),
                seqeval_metrics.f1_score(gold, pred),
                seqeval_metrics.classification_report(gold, pred, output_dict=True))


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_seqeval(seed: int) -> None:
    rng = random.Random(seed)
    gold, pred = _random_corpus(rng, 800, IOB_TAGS)
    ours = score(gold, pred)
    p, r, f, report = _seqeval(gold, pred)
    assert ours["precision"] / 100 == pytest.approx(p, abs=1e-4)
    assert ours["recall"] / 100 == pytest.approx(r, abs=1e-4)
    assert ours["f1"] / 100 == pytest.approx(f, abs=1e-4)
    types = {k for k in report if not k.endswith(" avg")}
    assert types == set(ours["per_type"])
    for type_ in types:
        assert ours["per_type"][type_]["f1"] / 100 == pytest.approx(
            report[type_]["f1-score"], abs=1e-4
        ), type_
        assert ours["per_type"][type_]["support"] == report[type_]["support"]
    assert ours["macro"]["f1"] / 100 == pytest.approx(report["macro avg"]["f1-score"], abs=1e-4)


def test_agrees_with_seqeval_small_sentences_and_iobes() -> None:
    # Short sentences with few types make boundary and type-change cases frequent.
    rng = random.Random(1234)
    tags = ["O", "B-A", "I-A", "E-A", "S-A", "B-B", "I-B", "E-B", "S-B"]
    for _ in range(40):
        gold, pred = _random_corpus(rng, 50, tags)
        ours = score(gold, pred)
        p, _, f, _ = _seqeval(gold, pred)
        assert ours["f1"] / 100 == pytest.approx(f, abs=1e-4)
        assert ours["precision"] / 100 == pytest.approx(p, abs=1e-4)


def test_get_entities_agrees_with_seqeval() -> None:
    rng = random.Random(7)
    tags = ["O", "B-A", "I-A", "E-A", "S-A", "I-B", "B-B"]
    for _ in range(2000):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 10))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = sequence_labeling.get_entities(seq)
        # seqeval's end is inclusive, ours exclusive.
        assert get_entities(seq) == [(t, s, e + 1) for t, s, e in theirs], seq


# --- properties ------------------------------------------------------------------------

_tag = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER"])
_sentence_pairs = st.lists(
    st.integers(0, 8).flatmap(
        lambda n: st.tuples(st.lists(_tag, min_size=n, max_size=n),
                            st.lists(_tag, min_size=n, max_size=n))
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(_sentence_pairs)
def test_properties(pairs: list[tuple[list[str], list[str]]]) -> None:
    gold = [g for g, _ in pairs]
    pred = [p for _, p in pairs]
    s = score(gold, pred)
    matrix = s["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == s["counts"]["tokens"] == sum(map(len, gold))
    # Row sums count gold tags, column sums predicted tags.
    labels = s["confusion"]["labels"]
    for i, label in enumerate(labels):
        assert sum(matrix[i]) == sum(t == label for g in gold for t in g)
        assert sum(row[i] for row in matrix) == sum(t == label for p in pred for t in p)
    assert sum(v["support"] for v in s["per_type"].values()) == s["counts"]["gold"]
    assert sum(v["predicted"] for v in s["per_type"].values()) == s["counts"]["predicted"]
    for key in ("precision", "recall", "f1", "token_accuracy"):
        assert 0.0 <= s[key] <= 100.0
    # Chunks tile within their sentence and never overlap.
    for g in gold:
        ends = [(start, end) for _, start, end in get_entities(g)]
        assert all(0 <= a < b <= len(g) for a, b in ends)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(ends, ends[1:]))
    # Scoring gold against itself is perfect whenever there is any entity.
    self_score = score(gold, gold)
    assert self_score["token_accuracy"] == (100.0 if self_score["counts"]["tokens"] else 0.0)
    if self_score["counts"]["gold"]:
        assert self_score["f1"] == pytest.approx(100.0)
    # Swapping gold and predictions swaps precision and recall.
    swapped = score(pred, gold)
    assert swapped["precision"] == pytest.approx(s["recall"])
    assert swapped["recall"] == pytest.approx(s["precision"])


def test_conlleval_layout_on_a_hand_computed_example():
    from nerwin.metrics import format_conlleval

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-LOC"]]
    # 6 tokens, 4 tags right; gold chunks PER LOC ORG; found PER ORG ORG LOC; correct PER ORG.
    # P = 2/4, R = 2/3, FB1 = 2PR/(P+R) = 57.142...; ORG: P 1/2, R 1/1, FB1 66.666...
    want = (
        "processed 6 tokens with 3 phrases; found: 4 phrases; correct: 2.\n"
        "accuracy:  66.67%; precision:  50.00%; recall:  66.67%; FB1:  57.14\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              ORG: precision:  50.00%; recall: 100.00%; FB1:  66.67  2\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )
    assert format_conlleval(score(gold, pred)) == want
    empty = format_conlleval(score([], []))
    assert empty == "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
