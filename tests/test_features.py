"""Token features: shapes, affixes, characters, their vocabularies and windows, their config
keys, checkpoints and bit-identical resume with every feature on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ALL_FEATURES, train_and_resume
from conftest import run_cli as run

from nerwin.checkpoint import load_checkpoint
from nerwin.config import ConfigError, load_config
from nerwin.dataset import build_lexicon, encode, read_split
from nerwin.features import (
    CHAR_BOS,
    CHAR_EOS,
    CHAR_PAD,
    CHAR_UNK,
    affix_key,
    clip_word,
    word_shape,
)
from nerwin.model import load_model, new_model
from nerwin.nn.network import FIRST_WORD_ID
from nerwin.vocab import UNK_ID

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
ALL = ALL_FEATURES



@pytest.mark.parametrize("word,shape", [
    ("Paris", "Xxxx"), ("Washington", "Xxxx"), ("EU", "XX"), ("12.5", "dd.d"),
    ("1996", "ddd"), ("Jean-Pierre", "Xxxx-Xxxx"), ("iPhone", "xXxxx"), ("....", "..."),
    ("Ab-Cd", "Xx-Xx"), ("a", "x"), ("ÉLAN", "XXX"),
])
def test_word_shape(word, shape):
    assert word_shape(word) == shape


def test_affixes_are_lowercased_and_digit_normalised():
    assert affix_key("Running", "suffix", 3) == "ing"
    assert affix_key("Running", "prefix", 2) == "ru"
    assert affix_key("1996", "suffix", 2) == "00"
    assert affix_key("Al", "suffix", 3) == "al"  # a shorter word is its own affix


def test_long_words_are_cut_deterministically():
    assert clip_word("abcdefghij", 4) == "abij"
    assert clip_word("abcdefghij", 5) == "abcij"
    assert clip_word("abc", 5) == "abc"
    assert clip_word("abcdef", 1) == "a"


def test_feature_list_vocabularies_and_windows():
    cfg = load_config(SAMPLE, [*ALL, "features.char_max_len=6", "features.affix_min_count=3"])
    train = read_split(cfg, cfg.data.train)
    lex = build_lexicon(cfg, train)
    names = [f.name for f in lex.features]
    assert names == ["word", "casing", "prefix2", "suffix2", "suffix3", "shape", "chars"]
    assert [f.param for f in lex.features][-2:] == ["E_shape", "E_char"]
    suffix3 = lex.features[4]
    assert suffix3.vocab.itos[:3] == ("<unk>", "<s>", "</s>")
    counts = {}
    for s in train.sentences:
        for t in s.tokens:
            k = affix_key(t, "suffix", 3)
            counts[k] = counts.get(k, 0) + 1
    assert set(suffix3.vocab.itos[3:]) == {k for k, c in counts.items() if c >= 3}
    data = encode(train, lex, cfg.features)
    assert len(data.inputs) == 7
    N, K = len(data), 2 * cfg.features.window + 1
    every = data.rows(np.arange(N))  # the windows of every token (the sample is small)
    assert every[0].shape == (N, K) and data.inputs[-1].ids.shape == (N,)
    # each distinct token is one row of the char table (plus the two pad rows)
    tokens = {t for s in train.sentences for t in s.tokens}
    assert data.inputs[-1].table.shape == (len(tokens) + 2, 6)
    # the first token of the corpus: its left neighbours are the pads of every feature
    first = train.sentences[0].tokens[0]
    pos, left, right = data.positions(np.arange(N))
    row_ids = data.inputs[-1].ids[pos]
    row_ids[left], row_ids[right] = 0, 1
    full = data.inputs[-1].table[row_ids]  # (N, K, 6) character rows
    assert full[0, 0].tolist() == [CHAR_BOS] + [CHAR_PAD] * 5
    centre = [lex.features[-1].vocab.itos[i] if i > CHAR_UNK else "?" for i in full[0, 2]
              if i != CHAR_PAD]
    assert "".join(centre) == clip_word(first, 6)
    last = train.sentences[0].tokens
    assert full[len(last) - 1, 4].tolist() == [CHAR_EOS] + [CHAR_PAD] * 5
    # a batch reads each distinct word once, cut to its longest word
    batch = data.rows(np.arange(40))[-1]
    np.testing.assert_array_equal(batch.chars[batch.index], full[:40, :, :batch.chars.shape[1]])
    assert (full[:40, :, batch.chars.shape[1]:] == CHAR_PAD).all()
    assert len(batch.chars) == len(np.unique(row_ids[:40]))
    assert every[2][0, 0] == 1 and every[5][0, 0] == 1  # <s> of prefix2, shape


def test_unseen_affix_is_unk():
    cfg = load_config(SAMPLE, ALL)
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    suffix2 = lex.features[3]
    assert suffix2.ids(["zzqqxx"]).tolist() == [UNK_ID]
    chars = lex.features[-1]
    assert chars.ids(["\u2603"])[0, 0] == CHAR_UNK


@pytest.mark.parametrize("override,key", [
    ("features.suffixes=[0]", "features.suffixes"),
    ("features.prefixes=[2,2]", "features.prefixes"),
    ("features.char_width=25", "features.char_width"),
    ("features.char_width=4", "features.char_width"),
    ("features.affix_dim=0", "features.affix_dim"),
    ("model.word_dropout=1.0", "model.word_dropout"),
    ("features.shape_dim=-1", "features.shape_dim"),
])
def test_bad_feature_keys_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(SAMPLE, ["features.char_filters=4", override])
    r = run("train", SAMPLE, "--set", "features.char_filters=4", "--set", override,
            "--out", "/nonexistent/x")
    assert r.exit_code == 2 and key in r.output


def test_word_dropout_replaces_only_words_and_is_seeded():
    cfg = load_config(SAMPLE, ["model.word_dropout=0.5", "model.hidden=[]"])
    train = read_split(cfg, cfg.data.train)
    lex = build_lexicon(cfg, train)
    model = new_model(cfg, lex, np.random.default_rng(0), dtype=np.float64)
    data = model.encode(train)
    inputs = data.rows(slice(0, 64))
    seen = {}

    def spy(E, ids):
        seen.setdefault(E.shape[1], []).append(np.array(ids))
        return E[ids], (ids, E.shape[1])

    import nerwin.nn.layers as layers

    real = layers.embedding_forward
    layers.embedding_forward = spy
    try:
        a, _ = model.net.forward(inputs, train=True, rng=np.random.default_rng(1))
        b, _ = model.net.forward(inputs, train=True, rng=np.random.default_rng(1))
        e, _ = model.net.forward(inputs, train=False)
    finally:
        layers.embedding_forward = real
    np.testing.assert_array_equal(a, b)
    dropped = seen[cfg.features.dim][0]
    words = inputs[0]
    changed = dropped != words
    assert changed.any() and (dropped[changed] == UNK_ID).all()
    assert (words[changed] >= FIRST_WORD_ID).all()  # pads and <unk> stay
    rate = changed.sum() / (words >= FIRST_WORD_ID).sum()
    assert 0.35 < rate < 0.65
    np.testing.assert_array_equal(seen[cfg.features.dim][2], words)  # eval: no dropout


def test_checkpoint_keeps_every_vocabulary_and_resume_is_bit_identical(tmp_path):
    args = [f"--set={s}" for s in [*ALL, "model.word_dropout=0.1", "model.dropout=0.2"]]
    full, a = train_and_resume(SAMPLE, args, tmp_path)
    _, meta = load_checkpoint(full / "last")
    assert {"E_prefix2", "E_suffix3", "E_shape", "E_char", "W_char"} <= set(a)
    assert set(meta["vocabs"]) == {"word", "casing", "prefix2", "suffix2", "suffix3",
                                   "shape", "chars"}
    # the saved model rebuilds its features from the checkpoint alone and scores the same
    model = load_model(full / "best")
    assert {f.name for f in model.lex.features} == set(meta["vocabs"])
    dev = read_split(model.cfg, ROOT / "data" / "sample" / "dev.txt")
    scores, _ = model.evaluate(dev)
    best = max((json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()),
               key=lambda m: m["dev_f1"])
    assert scores["f1"] == pytest.approx(best["dev_f1"], abs=1e-9)


def test_gradcheck_cli_with_every_feature():
    r = run("gradcheck", SAMPLE, *[f"--set={s}" for s in ALL], "--set",
            "model.nonlinearity=relu")
    assert r.exit_code == 0, r.output
    for name in ("E_prefix2", "E_suffix2", "E_suffix3", "E_shape", "E_char", "W_char"):
        assert name in r.output


def test_config_keys_lists_the_feature_keys():
    r = run("config", "keys")
    for key in ("features.prefixes", "features.suffixes", "features.shape_dim",
                "features.char_filters", "features.char_width", "features.char_max_len",
                "model.word_dropout", "model.decode", "model.constrained"):
        assert f"`{key}`" in r.output


def test_every_table_gradient_is_row_sparse_and_updated_lazily():
    from nerwin.nn.rowgrad import RowGrad
    from nerwin.optim import make_optimizer

    cfg = load_config(SAMPLE, ALL)
    train = read_split(cfg, cfg.data.train)
    model = new_model(cfg, build_lexicon(cfg, train), np.random.default_rng(0))
    data = model.encode(train)
    idx = np.arange(16)
    _, grads = model.net.loss_and_grads(data.rows(idx), data.labels[idx], train=False)
    tables = [n for n in grads if n.startswith("E_")]
    assert len(tables) == 7 and all(isinstance(grads[n], RowGrad) for n in tables)
    before = {n: model.net.params[n].copy() for n in tables}
    make_optimizer("adam", model.net.params).step(model.net.params, grads, 1e-2)
    for n in tables:  # rows the batch did not use do not move
        untouched = np.setdiff1d(np.arange(before[n].shape[0]), grads[n].rows)
        np.testing.assert_array_equal(model.net.params[n][untouched], before[n][untouched])


@pytest.mark.parametrize("window", [0, 2, 3])
def test_encoded_windows_equal_those_of_the_sentences(window):
    """Per-batch windows over ids encoded once per distinct token equal the full window
    matrix of each feature's ids of each sentence (what encoding built before)."""
    from nerwin.windows import make_windows

    cfg = load_config(SAMPLE, [*ALL, "features.char_max_len=6", f"features.window={window}"])
    train = read_split(cfg, cfg.data.dev)
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    data = encode(train, lex, cfg.features)
    sents = list(train.sentences)
    idx = np.random.default_rng(0).permutation(len(data))[:700]
    got = data.rows(idx)
    for feat, batch in zip(lex.features, got):
        seqs = [feat.ids(s.tokens) for s in sents]
        if feat.name == "chars":
            full = make_windows(seqs, window, feat.pad_row(CHAR_BOS), feat.pad_row(CHAR_EOS),
                                dtype=feat.dtype, row_shape=(6,))[idx]
            width = batch.chars.shape[1]
            np.testing.assert_array_equal(batch.chars[batch.index], full[..., :width])
            assert (full[..., width:] == CHAR_PAD).all()
        else:
            full = make_windows(seqs, window, feat.left_pad, feat.right_pad, dtype=feat.dtype)
            assert batch.dtype == full.dtype
            np.testing.assert_array_equal(batch, full[idx])
    labels = np.concatenate([[lex.tags.stoi[t] for t in s.tags] for s in sents])
    np.testing.assert_array_equal(data.labels, labels)
