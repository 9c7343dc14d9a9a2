"""Word-vector files: GloVe and word2vec text, gzip, headers, bad rows, coverage."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nerwin.errors import NerwinError
from nerwin.vectors import load_vectors, match_rows

GLOVE = "the 0.1 0.2 0.3\nParis 1 2 3\nparis 4 5 6\nberlin -1 -2 -3.5\n"


def test_glove_text_and_subset(write):
    v = load_vectors(write("v.txt", GLOVE), {"the", "berlin", "absent"})
    assert v.dim == 3 and v.n_file == 4 and not v.header
    np.testing.assert_array_equal(v.vectors[v.index["berlin"]], [-1, -2, -3.5])
    assert set(v.index) == {"the", "berlin"}


def test_gzip_equals_plain(write):
    plain = load_vectors(write("v.txt", GLOVE))
    gz = load_vectors(write("v.txt.gz", gzip.compress(GLOVE.encode())))
    assert plain.index == gz.index
    np.testing.assert_array_equal(plain.vectors, gz.vectors)


def test_word2vec_header_is_not_a_vector(write):
    v = load_vectors(write("w2v.txt", "4 3\n" + GLOVE))
    assert v.header and v.dim == 3 and v.n_file == 4 and "4" not in v.index


def test_header_width_mismatch_names_line(write):
    p = write("w2v.txt", "4 2\n" + GLOVE)
    with pytest.raises(NerwinError, match=r"w2v.txt:2: 3 values, expected 2 like the header"):
        load_vectors(p)


def test_row_of_wrong_width_names_line(write):
    p = write("v.txt", "a 1 2 3\nb 1 2\n")
    with pytest.raises(NerwinError, match=r"v.txt:2: 2 values, expected 3"):
        load_vectors(p)


def test_dim_mismatch_names_config_key(write):
    with pytest.raises(NerwinError, match="features.dim"):
        load_vectors(write("v.txt", GLOVE), dim=50)


def test_non_number_value(write):
    with pytest.raises(NerwinError, match="'b'"):
        load_vectors(write("v.txt", "a 1 2\nb 1 x\n"))


def test_lookup_exact_then_lowercase_and_coverage(write):
    v = load_vectors(write("v.txt", GLOVE))
    rows, found, cov = match_rows(["Paris", "Berlin", "Rome"], v)
    assert rows.tolist() == [v.index["Paris"], v.index["berlin"], -1]
    assert found.tolist() == [True, True, False]
    assert (cov.exact, cov.lower, cov.missing) == (1, 1, 1)
    assert cov.percent()["missing"] == pytest.approx(100 / 3)
