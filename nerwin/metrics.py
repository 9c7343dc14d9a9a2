"""Entity-level NER scoring with the semantics of CoNLL's ``conlleval.pl``.

A prediction counts as correct only when an entity chunk has exactly the gold type, start
and end. Chunks are read leniently, the way conlleval reads them, so the scorer accepts
any tag sequence a model emits, including ones that are not valid IOB2:

* a chunk starts at ``B-X``; at ``I-X`` when the previous tag is ``O`` or has another
  type (or at the start of the sentence); so ``O I-PER`` is a one-token PER chunk;
* a chunk ends before ``O``, before any ``B-``, before a tag of another type, and at the
  end of the sentence; so ``B-PER I-LOC`` is two chunks and ``I-PER B-PER`` is two;
* IOBES tags are read too (``E-X`` closes a chunk, ``S-X`` is a one-token chunk), with the
  same rules as seqeval's default (conlleval-compatible) mode.

Sentences are scored independently: a chunk never crosses a sentence boundary.

Token accuracy is reported next to the entity scores, as conlleval does, but it is only
ever called "token accuracy": a token-level F1 is not computed at all, because it is easy
to mistake for NER F1 and is always much higher.

The only tag strings accepted are ``"O"`` and ``"<P>-<TYPE>"`` with ``P`` one of
``B I E S`` and a non-empty ``TYPE`` (which may itself contain ``-``); anything else is a
``ValueError``, since a malformed tag means the labels were read wrongly upstream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from nerwin.conll import split_tag

__all__ = ["get_entities", "score", "format_table", "format_conlleval"]

_PREFIXES = ("B", "I", "E", "S")


def _chunk_ends(prev_prefix: str, prefix: str, prev_type: str | None, type_: str | None
                ) -> bool:
    """True when a chunk that includes the previous token ends before the current one.

    These are conlleval's ``endOfChunk`` rules as extended for IOBES by seqeval.
    """
    if prev_prefix == "O":
        return False
    if prev_prefix in ("E", "S"):
        # E- and S- close their chunk whatever follows.
        return True
    if prefix in ("B", "S", "O"):
        return True
    return prev_type != type_


def _chunk_starts(prev_prefix: str, prefix: str, prev_type: str | None, type_: str | None
                  ) -> bool:
    """True when a new chunk starts at the current token (conlleval's ``startOfChunk``)."""
    if prefix == "O":
        return False
    if prefix in ("B", "S"):
        return True
    # I- or E-: continue the open chunk only if there is one of the same type.
    if prev_prefix in ("O", "E", "S"):
        return True
    return prev_type != type_


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Read the entity chunks of one sentence, leniently, as conlleval does.

    Args:
        tags: the tags of one sentence, length ``n``, each ``"O"`` or ``"<B|I|E|S>-TYPE"``.

    Returns:
        ``[(type, start, end), ...]`` in order of ``start``, with ``end`` exclusive, so
        ``tags[start:end]`` are the chunk's tokens. Example:
        ``get_entities(["B-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]``.

    Raises:
        ValueError: a tag is not of the accepted form (see the module docstring), or
            ``tags`` is a single string rather than a sequence of tags.
    """
    if isinstance(tags, str):
        # A str is a Sequence[str] too; iterating it would score its characters.
        raise ValueError(f"expected a sequence of tags, got the string {tags!r}")
    chunks: list[tuple[str, int, int]] = []
    prev_prefix, prev_type = "O", None
    start = 0
    # A trailing "O" closes any chunk still open at the end of the sentence.
    for i, tag in enumerate([*tags, "O"]):
        prefix, type_ = split_tag(tag)
        if _chunk_ends(prev_prefix, prefix, prev_type, type_):
            chunks.append((prev_type, start, i))
        if _chunk_starts(prev_prefix, prefix, prev_type, type_):
            start = i
        prev_prefix, prev_type = prefix, type_
    return chunks


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 in percent; each is 0.0 where its denominator is 0."""
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _label_order(label: str) -> tuple[int, str, int]:
    """Sort key for confusion labels: ``O`` first, then by type, then B, I, E, S."""
    prefix, type_ = split_tag(label)
    if prefix == "O":
        return (0, "", 0)
    return (1, type_, _PREFIXES.index(prefix))


Chunks = set[tuple[int, str, int, int]]  # (sentence index, type, start, end)


def _collect(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
             ) -> tuple[Chunks, Chunks, Counter[tuple[str, str]], int]:
    """The gold and predicted chunks of every sentence, the (gold, predicted) tag pair
    counts and the token count; checks that the sentences pair up."""
    gold_chunks: Chunks = set()
    pred_chunks: Chunks = set()
    pair_counts: Counter[tuple[str, str]] = Counter()
    tokens = 0
    for index, (gold_tags, pred_tags) in enumerate(zip(gold, pred)):
        if isinstance(gold_tags, str) or isinstance(pred_tags, str):
            raise ValueError(
                f"sentence {index}: expected a sequence of tags, got a string"
            )
        if len(gold_tags) != len(pred_tags):
            raise ValueError(
                f"sentence {index}: gold has {len(gold_tags)} tags but the prediction has "
                f"{len(pred_tags)}"
            )
        # The sentence index in the key keeps chunks of different sentences apart.
        gold_chunks.update((index, *chunk) for chunk in get_entities(gold_tags))
        pred_chunks.update((index, *chunk) for chunk in get_entities(pred_tags))
        pair_counts.update(zip(gold_tags, pred_tags))
        tokens += len(gold_tags)
    return gold_chunks, pred_chunks, pair_counts, tokens


def _per_type(gold_chunks: Chunks, pred_chunks: Chunks, correct_chunks: Chunks
              ) -> tuple[dict[str, dict[str, float | int]], dict[str, float]]:
    """Scores per entity type, and their unweighted means (macro)."""
    gold_by_type = Counter(chunk[1] for chunk in gold_chunks)
    pred_by_type = Counter(chunk[1] for chunk in pred_chunks)
    correct_by_type = Counter(chunk[1] for chunk in correct_chunks)
    per_type: dict[str, dict[str, float | int]] = {}
    for type_ in sorted(set(gold_by_type) | set(pred_by_type)):
        p, r, f = _prf(correct_by_type[type_], pred_by_type[type_], gold_by_type[type_])
        per_type[type_] = {
            "precision": p,
            "recall": r,
            "f1": f,
            "support": gold_by_type[type_],
            "predicted": pred_by_type[type_],
        }
    if per_type:
        macro = {
            key: float(np.mean([stats[key] for stats in per_type.values()]))
            for key in ("precision", "recall", "f1")
        }
    else:
        macro = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    return per_type, macro


def _confusion(pair_counts: Counter[tuple[str, str]]) -> tuple[list[str], np.ndarray]:
    """Every tag seen (O first) and the token-level confusion matrix over them."""
    labels = sorted({tag for pair in pair_counts for tag in pair}, key=_label_order)
    position = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (gold_tag, pred_tag), count in pair_counts.items():
        matrix[position[gold_tag], position[pred_tag]] = count
    return labels, matrix


def score(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Score predicted tags against gold tags at the entity level, like conlleval.

    Args:
        gold: ``n_sentences`` sentences, each a sequence of gold tag strings.
        pred: the predicted tags, same number of sentences, each the same length as its
            gold sentence.

    Returns:
        A JSON-serialisable dict (plain ``float``/``int``/``str``/``list``/``dict``);
        every score is in percent, and 0.0 where undefined (nothing predicted or no gold):

        * ``precision``, ``recall``, ``f1``: micro-averaged over entity chunks (an entity
          is correct only with exact type, start and end), as conlleval reports them;
        * ``token_accuracy``: percent of tokens whose tag string is exactly right;
        * ``counts``: ``{"gold", "predicted", "correct"}`` chunk counts, ``"tokens"``;
        * ``per_type``: ``{TYPE: {"precision", "recall", "f1", "support", "predicted"}}``
          for every type seen in gold or predictions; ``support`` is the number of gold
          chunks and ``predicted`` the number of predicted chunks of that type;
        * ``macro``: ``{"precision", "recall", "f1"}``, unweighted means over the types in
          ``per_type`` (each of ``f1`` is the mean of per-type F1, not F1 of the means);
        * ``confusion``: ``{"labels": [tag, ...], "matrix": [[int]]}``, token-level tag
          confusion with ``matrix[i][j]`` = tokens whose gold tag is ``labels[i]`` and
          predicted tag is ``labels[j]``; labels are every tag seen, ``O`` first.

    Raises:
        ValueError: different numbers of sentences, a gold and predicted sentence of
            different lengths (the message names the sentence index), or a malformed tag.
    """
    if isinstance(gold, str) or isinstance(pred, str):
        raise ValueError("gold and pred must be sequences of sentences, not strings")
    if len(gold) != len(pred):
        raise ValueError(
            f"gold has {len(gold)} sentences but predictions have {len(pred)}"
        )

    gold_chunks, pred_chunks, pair_counts, tokens = _collect(gold, pred)
    correct_chunks = gold_chunks & pred_chunks
    n_gold, n_pred, n_correct = len(gold_chunks), len(pred_chunks), len(correct_chunks)
    precision, recall, f1 = _prf(n_correct, n_pred, n_gold)
    per_type, macro = _per_type(gold_chunks, pred_chunks, correct_chunks)
    labels, matrix = _confusion(pair_counts)
    n_right_tags = int(np.trace(matrix))

    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "token_accuracy": 100.0 * n_right_tags / tokens if tokens else 0.0,
        "counts": {
            "gold": n_gold,
            "predicted": n_pred,
            "correct": n_correct,
            "tokens": tokens,
        },
        "per_type": per_type,
        "macro": macro,
        # tolist() turns numpy ints into Python ints so the dict stays JSON-serialisable.
        "confusion": {"labels": labels, "matrix": matrix.tolist()},
    }


def format_table(scores: dict[str, Any]) -> str:
    """Render a :func:`score` result as text in the style of conlleval's report.

    The first two lines are conlleval's own (so they can be compared by eye with
    ``conlleval.pl`` output); a table with a header row follows, one line per entity type,
    then the micro and macro averages. ``found`` is the number of predicted chunks and
    ``support`` the number of gold chunks.

    Args:
        scores: the dict returned by :func:`score`.

    Returns:
        The report, lines joined by ``"\\n"``, without a trailing newline.
    """
    counts = scores["counts"]
    per_type = scores["per_type"]
    width = max([len("macro avg"), *(len(name) for name in per_type)])
    lines = [
        f"processed {counts['tokens']} tokens with {counts['gold']} phrases; "
        f"found: {counts['predicted']} phrases; correct: {counts['correct']}.",
        f"accuracy: {scores['token_accuracy']:6.2f}%; precision: {scores['precision']:6.2f}%; "
        f"recall: {scores['recall']:6.2f}%; FB1: {scores['f1']:6.2f}",
        "(accuracy is per token; precision/recall/FB1 are per entity: exact type and span)",
        "",
        f"{'type':>{width}}  {'precision':>9}  {'recall':>7}  {'FB1':>6}  "
        f"{'found':>6}  {'support':>7}",
    ]

    def row(name: str, p: float, r: float, f: float, found: int, support: int) -> str:
        return (
            f"{name:>{width}}  {p:8.2f}%  {r:6.2f}%  {f:6.2f}  {found:>6d}  {support:>7d}"
        )

    for name, stats in per_type.items():
        lines.append(
            row(name, stats["precision"], stats["recall"], stats["f1"],
                stats["predicted"], stats["support"])
        )
    lines.append("")
    lines.append(
        row("micro avg", scores["precision"], scores["recall"], scores["f1"],
            counts["predicted"], counts["gold"])
    )
    macro = scores["macro"]
    lines.append(
        row("macro avg", macro["precision"], macro["recall"], macro["f1"],
            counts["predicted"], counts["gold"])
    )
    return "\n".join(lines)


# conlleval.pl's own printf formats, verbatim, so the numbers round and align the same way.
_CONLLEVAL_OVERALL = "accuracy: %6.2f%%; precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f\n"
_CONLLEVAL_TYPE = "%17s: precision: %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %d\n"


def format_conlleval(scores: dict[str, Any]) -> str:
    """Render a :func:`score` result exactly as ``conlleval.pl`` prints its report.

    conlleval's printf formats: ``processed N tokens with G phrases; found: P phrases;
    correct: C.``, then (when there are tokens) ``accuracy: %6.2f%%; precision: %6.2f%%;
    recall: %6.2f%%; FB1: %6.2f``, then per type in sorted order ``%17s: precision:
    %6.2f%%; recall: %6.2f%%; FB1: %6.2f  %d`` where the last number is the count of
    *predicted* chunks of the type (not its support). Lines end in ``\\n``.

    For tags of ``O``, ``B-`` and ``I-`` (any sequence: lone ``I-``, type changes, IOB1)
    the counts are conlleval.pl's own (tests/test_conlleval.py checks them against a
    reimplementation of the script). The script has no ``S-`` rule and reads ``E-`` its own
    way, while :func:`get_entities` reads IOBES as seqeval does; ``nerwin eval`` converts
    both columns to IOB2 first, so ``eval --conlleval`` always equals conlleval.pl run on
    the ``--predictions`` file.
    """
    counts = scores["counts"]
    out = [f"processed {counts['tokens']} tokens with {counts['gold']} phrases; "
           f"found: {counts['predicted']} phrases; correct: {counts['correct']}.\n"]
    if counts["tokens"] > 0:
        out.append(_CONLLEVAL_OVERALL % (scores["token_accuracy"], scores["precision"],
                                         scores["recall"], scores["f1"]))
    for name in sorted(scores["per_type"]):
        t = scores["per_type"][name]
        out.append(_CONLLEVAL_TYPE % (name, t["precision"], t["recall"], t["f1"],
                                      t["predicted"]))
    return "".join(out)
