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


def test_bom_does_not_lose_the_first_word(write):
    v = load_vectors(write("v.txt", ("\ufeff" + GLOVE).encode("utf-8")))
    assert "the" in v.index and v.n_file == 4


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "1e39"])
def test_non_finite_value_names_the_line(write, value):
    p = write("v.txt", f"a 1 2\nb 1 {value}\nc 3 4\n")
    with pytest.raises(NerwinError, match=r"v.txt:2: the vector of 'b' holds NaN"):
        load_vectors(p)


def test_non_number_names_the_line(write):
    with pytest.raises(NerwinError, match=r"v.txt:3: the vector of 'c' holds a value that is "
                       r"not a number"):
        load_vectors(write("v.txt", "a 1 2\nb 1 2\nc x 2\n"))


@pytest.mark.parametrize("promised, words", [(5, "a truncated download"), (3, "fix the header")])
def test_header_row_count_must_match(write, promised, words):
    p = write("w2v.txt", f"{promised} 3\n" + GLOVE)
    with pytest.raises(NerwinError, match=rf"w2v.txt:1: the word2vec header promises "
                       rf"{promised} vectors but the file has 4; {words}"):
        load_vectors(p)


@pytest.mark.parametrize("wanted", [None, {"paris"}, {"x"}])
def test_repeated_word_names_both_lines(write, wanted):
    p = write("v.txt", GLOVE + "paris 7 8 9\n")
    with pytest.raises(NerwinError, match=r"v.txt:5: the word 'paris' is repeated \(first on "
                       r"line 3\)"):
        load_vectors(p, wanted)


def test_hash_collision_is_not_a_repeat(write, monkeypatch):
    """Two different words with one hash: the second pass tells them apart."""
    import builtins

    import nerwin.vectors as vmod

    monkeypatch.setattr(vmod, "hash", lambda w: 7 if w in ("the", "paris") else builtins.hash(w),
                        raising=False)
    v = load_vectors(write("v.txt", GLOVE))
    assert v.n_file == 4


def test_invalid_utf8_names_its_own_line(write):
    body = "".join(f"w{i} 1 2\n" for i in range(5000)).encode() + b"bad\xff 1 2\nz 1 2\n"
    with pytest.raises(NerwinError, match=r"v.txt:5001: invalid UTF-8"):
        load_vectors(write("v.txt", body))


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "not gzip"])
def test_damaged_gzip_is_one_line(write, damage):
    data = gzip.compress(("".join(f"w{i} 1 2\n" for i in range(20000))).encode())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "corrupt":
        data = data[:30] + bytes(b ^ 0x5A for b in data[30:60]) + data[60:]
    else:
        data = b"\x1f\x8b" + b"not really gzip at all"
    p = write("v.txt.gz", data)
    with pytest.raises(NerwinError) as e:
        load_vectors(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: cannot read the vectors file") and "\n" not in msg


@pytest.mark.parametrize("kind", ["missing", "folder", "loop"])
def test_unreadable_path(tmp_path, kind):
    p = tmp_path / "v.txt"
    if kind == "folder":
        p.mkdir()
    elif kind == "loop":
        p.symlink_to(tmp_path / "v.txt")
    with pytest.raises(NerwinError, match={"missing": "no such file", "folder": "is a folder",
                                           "loop": "symbolic link loop"}[kind]):
        load_vectors(p)
