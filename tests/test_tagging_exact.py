"""The tagger's faster paths give exactly what the plain ones give: feature ids kept from
chunk to chunk (TypeCache) against encoding every chunk afresh, for every feature kind and
however the input is cut; the jsonl writer against json.dumps; the chunk-wide conll writer
against the per-record one."""

from __future__ import annotations

import io
import json
import math
import random
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_FEATURES

from nerwin.config import load_config
from nerwin.conll import Corpus, read_tokens
from nerwin.dataset import build_lexicon, encode, read_split
from nerwin.features import TypeCache
from nerwin.model import new_model
from nerwin.tagging import (
    Entity,
    Item,
    Tagger,
    TextLine,
    _json_float,
    _scores_json,
    format_chunk,
    format_record,
    jsonl_lines,
    tag_stream,
    text_line,
)
from nerwin.windows import TokenIds

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"
EVERY_FEATURE = [*ALL_FEATURES, "features.gazetteer_dim=3"]


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory):
    """An untrained model with every feature kind: word, casing, prefix, suffix, shape,
    chars and a gazetteer (whose ids depend on the neighbours, so it is not cached)."""
    lst = tmp_path_factory.mktemp("gaz") / "loc.txt"
    lst.write_text("Tessfield\nPort Hallen\nU.S.\nnew york\n")
    cfg = load_config(SAMPLE, [*EVERY_FEATURE, f"features.gazetteers={{LOC: {lst}}}",
                               "model.head=crf"])
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    kinds = [type(f).__name__ for f in lex.features]
    assert kinds == ["WordFeature", "CasingFeature", "AffixFeature", "AffixFeature",
                     "AffixFeature", "ShapeFeature", "CharFeature", "GazetteerFeature"]
    return new_model(cfg, lex, np.random.default_rng(0))


def _sentences() -> list[list[str]]:
    sents = [s.tokens for s in read_tokens(TEST)]
    # strings that only differ in what one feature sees, and unseen ones
    sents += [["Port", "Hallen", "PORT", "port", "Port-Hallen", "1996", "2001", "x" * 40],
              ["\u2603", "Éclair", "éclair", "Tessfield", "tessfield", "U.S.", "New", "York"]]
    return sents


def _corpus(sents: list[list[str]]) -> Corpus:
    tokens = [t for s in sents for t in s]
    types = list(dict.fromkeys(tokens))
    index = {t: i for i, t in enumerate(types)}
    lens = np.array([len(s) for s in sents], dtype=np.int64)
    return Corpus.from_arrays(Path("<t>"), types, np.array([index[t] for t in tokens],
                                                            dtype=np.int32), ("O",),
                              np.zeros(len(tokens), dtype=np.int32),
                              np.concatenate([[0], np.cumsum(lens)]),
                              np.ones(len(sents), dtype=np.int64))


def _assert_same_inputs(got, want) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert type(a) is type(b)
        if isinstance(a, TokenIds):
            assert (a.left_pad, a.right_pad) == (b.left_pad, b.right_pad)
            assert a.ids.dtype == b.ids.dtype
            np.testing.assert_array_equal(a.ids, b.ids)
        else:  # CharWindows: the rows of each token and the chunk's own table
            assert a.table.dtype == b.table.dtype and a.ids.dtype == b.ids.dtype
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.table, b.table)


@pytest.mark.parametrize("limit", [1 << 17, 50, 1])
@pytest.mark.parametrize("per_chunk", [1, 7, 10_000])
def test_cached_ids_equal_a_fresh_encoding(every_kind, limit, per_chunk):
    """Chunk after chunk through one cache (which starts afresh when ``limit`` is passed:
    with 1, at nearly every call) gives each chunk the very arrays encoding it alone
    gives, for every feature kind, whichever chunk saw a string first."""
    model = every_kind
    cache = TypeCache(model.lex.features, limit=limit)
    sents = _sentences()
    # the same sentences twice, the second time in another order: strings come back
    order = list(range(len(sents))) + list(range(len(sents)))[::-1]
    most = 0  # the most distinct strings of one call
    for k in range(0, len(order), per_chunk):
        corpus = _corpus([sents[i] for i in order[k:k + per_chunk]])
        most = max(most, len(corpus.types))
        want = encode(corpus, model.lex, model.cfg.features)
        got = encode(corpus, model.lex, model.cfg.features, cache)
        _assert_same_inputs(got.inputs, want.inputs)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_array_equal(got.lengths, want.lengths)
        # bounded: never more strings than the limit or than one call's distinct strings
        assert cache.size == len(cache.index) <= max(limit, most)
    assert [f.PER_TOKEN for f in model.lex.features] == [True] * 7 + [False]
    assert cache.cached == list(range(7))


def test_cache_encodes_each_string_once(every_kind):
    tagger = Tagger(every_kind)
    sents = _sentences()
    tokens = [t for s in sents for t in s]
    tagger.encode(tokens, [len(s) for s in sents])
    n_types = len(set(tokens))
    assert tagger._types.misses == n_types
    for s in sents:  # every later chunk finds its strings kept
        tagger.encode(s, [len(s)])
    assert tagger._types.misses == n_types


def _tag(model, text: str, fmt: str, chunk: int, cached: bool, input_format: str = "text"
         ) -> str:
    tagger = Tagger(model)
    if not cached:
        tagger._types = None  # every chunk encoded afresh, as Model.encode does
    out = io.StringIO()
    tag_stream(tagger, io.BytesIO(text.encode("utf-8")), "<t>", out,
               input_format=input_format, output_format=fmt, chunk_tokens=chunk)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["conll", "jsonl", "inline"])
def test_output_is_the_same_with_the_cache_and_without(every_kind, fmt):
    sents = _sentences()
    text = "\n".join(" ".join(s) for s in sents + sents[::-1]) + "\n\nTessfield. Port Hallen!\n"
    # (the same chunks both ways: the crf's probabilities, so the jsonl scores, may differ
    # in their last bits with the sentences that share a forward-backward call)
    for chunk in (1, 5, 200, 10**9):
        want = _tag(every_kind, text, fmt, chunk, cached=False)
        assert want and _tag(every_kind, text, fmt, chunk, cached=True) == want
    if fmt != "jsonl":  # tags do not depend on the chunks
        assert _tag(every_kind, text, fmt, 1, cached=True) == want
    conll = TEST.read_text()
    for chunk in (3, 10**9):
        assert (_tag(every_kind, conll, fmt, chunk, cached=True, input_format="conll")
                == _tag(every_kind, conll, fmt, chunk, cached=False, input_format="conll"))


# --------------------------------------------------------------------------- writers

_TRICKY = ['"', "\\", "a\"b", "\x00", "\x1f", "\x7f", "\u0085", "\u2028", "\u2029", "é",
           "日本", "\U0001F600", "\ud800", "tab\there", "</script>", "'", "{}", "[1, 2]"]
_SCORES = [0.0, 1.0, 0.5, 0.03125, 0.00005, 0.00015, 0.99995, 0.12345, 1e-5, 1e-9,
           0.1 + 0.2, 2 / 3, -0.0, -1e-9, 1.0000001, 2.5, float("nan"), float("inf"),
           float("-inf"), 5e-324, 0.99999999, 1, 0, True]


def _items(rng: random.Random, n: int, plain_tags: bool = True) -> list[Item]:
    items = []
    for k in range(n):
        toks = [rng.choice(_TRICKY + ["Karel", "Vosk", "1996", "."]) for _ in
                range(rng.randint(1, 9))]
        text = " ".join(toks)
        starts, pos = [], 0
        for t in toks:
            starts.append(pos)
            pos += len(t) + 1
        ends = [a + len(t) for a, t in zip(starts, toks)]
        tags = [rng.choice(["O", "B-PER", "I-PER", "B-LOC"] if plain_tags
                           else ["O", 'B-"X"', "I-\\Y", "B-\u2028"]) for _ in toks]
        ents = []
        for _ in range(rng.randint(0, 3)):
            a = rng.randrange(len(toks))
            b = rng.randrange(a, len(toks)) + 1
            score = rng.choice(_SCORES) if rng.random() < 0.3 else rng.random()
            ents.append(Entity(rng.choice(["PER", 'L"OC', "\u2029"]), starts[a], ends[b - 1],
                               text[starts[a]:ends[b - 1]], score))
        items.append(Item(toks, starts, ends, text, k + 1, tags=tags, entities=ents))
    return items


def _dumps(it: Item) -> str:
    obj = {"text": it.text, "tokens": it.tokens,
           "offsets": [[a, b] for a, b in zip(it.starts, it.ends)], "tags": it.tags,
           "entities": [{"type": e.type, "start": e.start, "end": e.end, "text": e.text,
                         "score": round(e.score, 4)} for e in it.entities],
           "line": it.line}
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u0085", "\\u0085").replace("\u2028", "\\u2028").replace(
        "\u2029", "\\u2029") + "\n"


@pytest.mark.parametrize("plain_tags", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_jsonl_lines_is_json_dumps(seed, plain_tags):
    items = _items(random.Random(seed), 300, plain_tags)
    assert jsonl_lines(items) == "".join(map(_dumps, items))
    assert jsonl_lines(items[:1]) == _dumps(items[0])
    assert jsonl_lines([]) == ""
    no_ents = [Item(it.tokens, it.starts, it.ends, it.text, it.line, tags=it.tags)
               for it in items[:20]]
    assert jsonl_lines(no_ents) == "".join(map(_dumps, no_ents))


def test_entity_scores_are_written_as_round_then_repr():
    rng = np.random.default_rng(0)
    scores = [*_SCORES, *rng.random(100_000).tolist(),
              # every 4-place decimal and the halves between them, and their neighbours
              *(k / 10000 for k in range(10001)), *((k + 0.5) / 10000 for k in range(10000)),
              *(math.nextafter((k + 0.5) / 10000, d) for k in range(0, 10000, 7)
                for d in (0.0, 1.0))]
    floats = [x for x in scores if type(x) is float]  # the table's path
    assert len(floats) > 100_000 and _scores_json(floats) == [_json_float(x) for x in floats]
    assert _scores_json(scores) == [_json_float(x) for x in scores]
    assert _scores_json([]) == []
    assert _scores_json([0.5, 1]) == ["0.5", "1"]  # an int stays an int


def test_conll_writer_of_a_text_chunk_equals_per_record():
    rng = random.Random(1)
    lines = ["Karel Vosk visited Prague. He left!", "", "  spaced   out  ", "Acme Corp. grew.",
             "\u2028 odd \x85 spaces"]
    recs = [text_line(k + 1, rng.choice(lines)) for k in range(200)]
    for it in chain.from_iterable(r.items for r in recs):
        it.tags = [rng.choice(["O", "B-PER", "I-PER"]) for _ in it.tokens]
    assert all(isinstance(r, TextLine) for r in recs)
    want = "".join(format_record(r, "conll") for r in recs)
    assert format_chunk(recs, "conll") == want and want
    assert format_chunk([], "conll") == ""
    assert format_chunk(recs[1:2], "conll") == format_record(recs[1], "conll")


# --------------------------------------------------------------------------- features


def _shape_by_chars(token: str) -> str:
    """nerwin.features.word_shape as first written: the reference."""
    out: list[str] = []
    run = 0
    for ch in token:
        if ch.isdigit():
            s = "d"
        elif ch.isalpha():
            s = "X" if ch.isupper() else "x"
        else:
            s = ch
        run = run + 1 if out and out[-1] == s else 1
        if run <= 3:
            out.append(s)
    return "".join(out)


def _words() -> list[str]:
    rng = random.Random(0)
    words = sorted({t for s in read_tokens(TEST) for t in s.tokens})
    alphabet = ("aAzZ09 .-'_\n\t\x00xXd" "éÉßİıǅǈªº²٣Ⅻ\u0301\u2028日本\U0001F600" "ΣσςДд")
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
              for _ in range(20_000)]
    ascii_ = [chr(c) for c in range(128)]
    words += ["".join(rng.choice(ascii_) for _ in range(rng.randint(0, 6)))
              for _ in range(20_000)]
    words += ["", "A", "a", "1", "A1", "1A", "aB", "Ab", "AB", "ab", "_Ab", "-ab", "A-b",
              "A-B", "a-B", "McDonald", "iPhone", "NATO", "U.S.", "x" * 10, "X" * 10,
              "1111", "----", "aaaa\n\n\n\n", "ǅemal", "ǅ", "İstanbul", "ß", "ÉLAN"]
    return words


def test_casing_and_shape_equal_their_per_character_rules():
    from nerwin.features import word_shape
    from nerwin.vocab import casing, casing_by_letters

    words = _words()
    assert [casing(w) for w in words] == [casing_by_letters(w) for w in words]
    assert [word_shape(w) for w in words] == [_shape_by_chars(w) for w in words]


def test_token_json_kept_across_calls_is_bounded_and_exact(monkeypatch):
    import nerwin.tagging as tagging

    monkeypatch.setattr(tagging, "JSON_STRINGS_LIMIT", 25)
    rng = random.Random(5)
    for _ in range(30):  # each call brings new strings; the kept ones start afresh
        items = _items(rng, 20)
        for it in items:
            it.tokens = [t + str(rng.randrange(1000)) for t in it.tokens]
            it.text = " ".join(it.tokens)
            it.starts = [sum(len(t) + 1 for t in it.tokens[:k]) for k in range(len(it.tokens))]
            it.ends = [a + len(t) for a, t in zip(it.starts, it.tokens)]
            it.entities = []
        assert jsonl_lines(items) == "".join(map(_dumps, items))
        # emptied before a call once past the limit: at most one call's strings over it
        assert len(tagging._TOKEN_JSON) <= 25 + sum(len(it.tokens) for it in items)


def test_offset_strings_stay_right_when_threads_write_at_once(monkeypatch):
    """Threads (a Dask worker's) writing jsonl at once each extend the shared table of
    offset strings; it must stay str(i) at i."""
    import threading

    import nerwin.tagging as tagging

    monkeypatch.setattr(tagging, "_INT_STR", [])
    rng = random.Random(9)
    batches = []
    for k in range(16):
        items = _items(rng, 5)
        for it in items:  # offsets far into a long line: each batch needs a longer table
            shift = 5000 * (k + 1)
            it.starts = [a + shift for a in it.starts]
            it.ends = [b + shift for b in it.ends]
            it.text = " " * shift + it.text
            it.entities = []
        batches.append(items)
    outs: dict[int, str] = {}
    threads = [threading.Thread(target=lambda k=k: outs.__setitem__(k, jsonl_lines(
        batches[k]))) for k in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s == str(i) for i, s in enumerate(tagging._INT_STR))
    for k, items in enumerate(batches):
        assert outs[k] == "".join(map(_dumps, items))
