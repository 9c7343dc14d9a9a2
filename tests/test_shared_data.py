"""The reader and the vectors loader on the real data in ../shared/data (CI requires it)."""

from __future__ import annotations

import pytest

from nerwin.conll import entity_counts, read_conll
from nerwin.vectors import load_vectors

EXPECTED = {  # ../shared/data/README.md
    "train.txt": (14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
    "valid.txt": (3250, 51362, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}),
    "test.txt": (3453, 46435, {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conll2003_counts(name, shared_data):
    c = read_conll(shared_data(f"conll2003/{name}"))
    sentences, tokens, ents = EXPECTED[name]
    assert len(c.sentences) == sentences
    assert c.n_tokens == tokens
    assert dict(entity_counts(c.sentences)) == ents
    assert c.scheme == "iob2" and c.repaired == 0


def test_glove_shape_and_subset(shared_data):
    path = shared_data("embeddings/glove.6B.50d.txt.gz")
    v = load_vectors(path, {"the", "germany", "not-a-glove-word-xyz"}, dim=50)
    assert v.n_file == 400_000 and v.dim == 50 and not v.header
    assert sorted(v.index) == ["germany", "the"]
    assert v.vectors.shape == (2, 50) and v.vectors.dtype.name == "float32"
