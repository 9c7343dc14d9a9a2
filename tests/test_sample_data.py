"""The bundled synthetic sample corpus: reproducible, well formed and as hard as promised."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SAMPLE_DIR = DATA_DIR / "sample"
SPLITS = ("train", "dev", "test")
TYPES = ("PER", "ORG", "LOC", "MISC")
TOKEN_RANGES = {"train": (8000, 10000), "dev": (2500, 3500), "test": (2500, 3500)}


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_sample", DATA_DIR / "make_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read(path: Path) -> tuple[list[list[tuple[str, str]]], int]:
    """Tiny CoNLL reader: (sentences of (word, tag), number of -DOCSTART- lines)."""
    sentences, current, docstarts = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                sentences.append(current)
                current = []
            continue
        word, tag = line.split(" ")
        if word == "-DOCSTART-":
            assert not current, "-DOCSTART- inside a sentence"
            docstarts += 1
            continue
        current.append((word, tag))
    if current:
        sentences.append(current)
    return sentences, docstarts


def _spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """(start, end exclusive, type) of each IOB2 entity; tags must be valid IOB2."""
    spans, start, etype = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == etype):
            spans.append((start, i, etype))
            start = None
        if tag.startswith("B-"):
            start, etype = i, tag[2:]
    return spans


def _mentions(sentences) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for sent in sentences:
        words = [w for w, _ in sent]
        out += [(t, tuple(words[s:e])) for s, e, t in _spans([t for _, t in sent])]
    return out


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[list[tuple[str, str]]]]:
    return {split: _read(SAMPLE_DIR / f"{split}.txt")[0] for split in SPLITS}


def test_committed_files_match_generator():
    files = _load_generator().generate()
    assert sorted(files) == [f"{s}.txt" for s in sorted(SPLITS)]
    for name, text in files.items():
        assert (SAMPLE_DIR / name).read_bytes() == text.encode("utf-8"), (
            f"{name} is stale: run python data/make_sample.py"
        )


def test_check_mode(tmp_path, capsys):
    gen = _load_generator()
    assert gen.main(["--check", "--out", str(SAMPLE_DIR)]) == 0
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1  # missing files
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "dev.txt").write_text("-DOCSTART- O\n\n", encoding="utf-8")
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1
    capsys.readouterr()


def test_generator_is_deterministic_and_seeded():
    gen = _load_generator()
    assert gen.generate() == gen.generate()
    assert gen.generate(seed=7)["dev.txt"] != gen.generate()["dev.txt"]


@pytest.mark.parametrize("split", SPLITS)
def test_file_layout(split):
    text = (SAMPLE_DIR / f"{split}.txt").read_text(encoding="utf-8")
    assert text.startswith("-DOCSTART- O\n\n")
    assert text.endswith("\n\n") and not text.endswith("\n\n\n")
    assert "\n\n\n" not in text
    for line in text.splitlines():
        assert line == "" or re.fullmatch(r"\S+ (O|[BI]-(PER|ORG|LOC|MISC))", line), line
    _, docstarts = _read(SAMPLE_DIR / f"{split}.txt")
    assert docstarts >= 3  # the leading one plus a couple of breaks inside


@pytest.mark.parametrize("split", SPLITS)
def test_valid_iob2_and_sizes(corpus, split):
    sentences = corpus[split]
    for sent in sentences:
        prev = "O"
        for _, tag in sent:
            if tag.startswith("I-"):
                assert prev in (f"B-{tag[2:]}", tag), f"{tag} after {prev} in {sent}"
            prev = tag
    n_tokens = sum(len(s) for s in sentences)
    lo, hi = TOKEN_RANGES[split]
    assert lo <= n_tokens <= hi
    types = {t for t, _ in _mentions(sentences)}
    assert types == set(TYPES)


def test_multi_token_entities_of_every_type(corpus):
    mentions = _mentions(corpus["train"])
    for etype in TYPES:
        assert any(t == etype and len(ws) >= 2 for t, ws in mentions), etype
    assert any(len(ws) >= 4 for _, ws in mentions)


def test_hard_cases_are_present(corpus):
    train = corpus["train"]
    assert any(s[0][1].startswith("B-") for s in train)  # entity first in sentence
    assert any(s[-1][1] != "O" for s in train)  # entity last in sentence
    # a one-token, all-caps sentence that is an entity (dateline)
    assert any(len(s) == 1 and s[0][0].isupper() and s[0][1].startswith("B-") for s in train)
    # long sentences
    assert max(len(s) for s in train) >= 60
    words = [(w, t) for split in SPLITS for s in corpus[split] for w, t in s]
    assert any(re.search(r"\d", w) for w, _ in words)
    assert any(re.fullmatch(r"\d+-\d+", w) for w, _ in words)  # scores
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d", w) for w, _ in words)  # dates
    assert any(re.fullmatch(r"\d+\.\d+", w) for w, _ in words)  # amounts
    assert any(re.search(r"[A-Za-z]", w) and re.search(r"\d", w) for w, _ in words)
    # all-caps entity tokens in headlines, and a lowercase entity token
    assert any(w.isupper() and len(w) > 1 and t != "O" for w, t in words)
    assert any(w.islower() and t.startswith("B-") for w, t in words)
    # exactly the same surface word as entity in one place and O in another
    as_entity = {w for w, t in words if t != "O"}
    as_other = {w for w, t in words if t == "O"}
    assert as_entity & as_other
    # adjacent entities with nothing between them, and same-type entities split by "," / "and"
    adjacent = same_type_listed = False
    for s in train:
        tags = [t for _, t in s]
        spans = _spans(tags)
        for (_, e1, t1), (s2, _, t2) in zip(spans, spans[1:], strict=False):
            adjacent |= e1 == s2
            same_type_listed |= t1 == t2 and s2 == e1 + 1 and s[e1][0] in (",", "and")
    assert adjacent and same_type_listed


@pytest.mark.parametrize("split", ["dev", "test"])
def test_unseen_share(corpus, split):
    seen = set(_mentions(corpus["train"]))
    mentions = _mentions(corpus[split])
    unseen = sum(m not in seen for m in mentions) / len(mentions)
    assert 0.2 <= unseen <= 0.5
