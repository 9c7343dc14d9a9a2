"""nerwin export + nerwin tag MODEL.onnx: the same tags and scores as the checkpoint, for
every table kind, block and head; without the extra, a one-line error naming it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import nerwin  # noqa: E402
from nerwin.errors import NerwinError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"



# Every table kind (word, casing, prefix, suffix, shape, chars), every nonlinearity, every
# head and decoder, with and without hidden layers.
CONFIGS = {
    "plain": {},
    "all_tables_crf_relu": {"features.prefixes": [2], "features.suffixes": [2, 3],
                            "features.shape_dim": 4, "features.char_filters": 8,
                            "features.char_dim": 6, "features.char_width": 3,
                            "model.hidden": [16, 8], "model.nonlinearity": "relu",
                            "model.head": "crf"},
    "logistic_hardtanh_chars5": {"model.head": "logistic", "model.positive": "PER",
                                 "model.nonlinearity": "hardtanh", "features.window": 1,
                                 "features.char_filters": 5, "features.char_width": 5},
    "viterbi_sigmoid_no_hidden": {"model.hidden": [], "model.nonlinearity": "sigmoid",
                                  "model.decode": "viterbi", "features.casing_dim": 0},
    "argmax": {"model.decode": "argmax", "features.suffixes": [3]},
    # Convolution blocks over whole sentences (the graph reads sentence_lengths), both widths.
    "conv_blocks_tanh_relu": {"model.hidden": [12], "model.input_dropout": 0.1,
                              "model.blocks": [{"width": 3, "units": 10, "dropout": 0.2},
                                               {"width": 5, "units": 6,
                                                "nonlinearity": "tanh"}]},
    "conv_crf_hardtanh": {"model.head": "crf", "model.hidden": [8],
                          "model.blocks": [{"width": 3, "units": 7,
                                            "nonlinearity": "hardtanh"}]},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (checkpoint folder, .onnx file), each trained for 2 epochs on the sample."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, over in CONFIGS.items():
        run_info = nerwin.train(SAMPLE, overrides={"training.epochs": 2, **over},
                                out=root / name)
        onnx_path = root / f"{name}.onnx"
        r = run("export", run_info.best, onnx_path)
        assert r.exit_code == 0, r.output
        out[name] = (run_info.best, onnx_path)
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("fmt", ["conll", "text"])
def test_tag_output_identical(exported, tmp_path, name, fmt):
    ckpt, onnx_path = exported[name]
    outs = {}
    src = TEST
    if fmt == "text":  # raw text (nerwin tag refuses CoNLL columns given as text)
        from nerwin.conll import read_tokens

        src = tmp_path / "test.txt"
        src.write_text("".join(" ".join(s.tokens) + "\n" for s in read_tokens(TEST)),
                       encoding="utf-8")
    for what, model in (("ckpt", ckpt), ("onnx", onnx_path)):
        for of in ("conll", "jsonl", "inline"):
            dest = tmp_path / f"{what}.{of}"
            r = run("tag", model, src, "--input-format", fmt, "--output-format", of,
                    "--output", dest, "--quiet")
            assert r.exit_code == 0, r.output
            outs[what, of] = dest.read_text(encoding="utf-8")
    assert outs["ckpt", "conll"] == outs["onnx", "conll"]
    assert outs["ckpt", "inline"] == outs["onnx", "inline"]
    a = [json.loads(x) for x in outs["ckpt", "jsonl"].splitlines()]
    b = [json.loads(x) for x in outs["onnx", "jsonl"].splitlines()]
    assert len(a) == len(b)
    for x, y in zip(a, b):
        sx, sy = ([e.pop("score") for e in r["entities"]] for r in (x, y))
        assert x == y
        assert np.allclose(sx, sy, atol=1.01e-4, rtol=0)  # rounded to 4 places, 1e-5 apart


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_probabilities_within_1e5(exported, name):
    from nerwin.api import load_model
    from nerwin.conll import read_tokens

    ckpt, onnx_path = exported[name]
    sents = read_tokens(TEST)
    la, pa = load_model(ckpt).token_probabilities(sents)
    lb, pb = load_model(onnx_path).token_probabilities(sents)
    assert la == lb
    assert max(float(np.abs(x - y).max()) for x, y in zip(pa, pb)) < 1e-5


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scores_within_1e5_of_the_network(exported, name):
    """The graph's raw scores against the checkpoint network's forward pass."""
    from nerwin.api import load_model
    from nerwin.conll import read_tokens

    ckpt, onnx_path = exported[name]
    sents = read_tokens(TEST)[:200]
    model, om = load_model(ckpt), load_model(onnx_path)
    data = model._encode_untagged(sents)
    # All sentences as one batch of whole sentences (a convolution block reads the lengths).
    ref = model.net.forward(data.rows(slice(0, len(data))), train=False,
                            lengths=data.lengths)[0]
    got, _ = om.scores(om._encode(sents))
    assert got.shape == ref.shape
    assert float(np.abs(got - ref).max()) < 1e-5


def test_metadata_holds_what_a_runtime_needs(exported):
    import onnx

    _, onnx_path = exported["all_tables_crf_relu"]
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["nerwin_version"] == nerwin.__version__
    assert props["head"] == "crf" and props["window"] == "2"
    crf = json.loads(props["crf"])
    assert set(crf) == {"trans", "start", "end"}
    tags = json.loads(props["tags"])
    assert np.array(crf["trans"]).shape == (len(tags), len(tags))
    rules = {r["name"]: r for r in json.loads(props["feature_rules"])}
    assert set(rules) == {"word", "casing", "prefix2", "suffix2", "suffix3", "shape", "chars"}
    assert rules["chars"]["width"] == 3
    meta = json.loads(props["nerwin_meta"])
    assert set(meta["vocabs"]) == set(rules)
    assert json.loads(props["inputs"]) == ["ids_word", "ids_casing", "ids_prefix2",
                                           "ids_suffix2", "ids_suffix3", "ids_shape",
                                           "chars", "char_index"]


def test_unknown_part_is_refused_by_name(exported):
    from nerwin.checkpoint import load_checkpoint
    from nerwin.onnx_export import _config_and_lexicon, build_graph

    ckpt, _ = exported["plain"]
    arrays, meta = load_checkpoint(ckpt)
    cfg, lex = _config_and_lexicon(meta, str(ckpt))
    arrays["W_mystery"] = np.zeros((2, 2), np.float32)
    with pytest.raises(NerwinError, match="cannot export W_mystery"):
        build_graph(arrays, cfg, lex, str(ckpt))


def test_api_load_onnx_offsets(exported):
    _, onnx_path = exported["plain"]
    ner = nerwin.load(onnx_path)
    text = "Karel Vosk visited Prague. Acme Corp. hired him."
    doc = ner(text)
    assert all(text[e.start:e.end] == e.text for e in doc.entities)
    with pytest.raises(NerwinError, match="only tags"):
        nerwin.evaluate(ner, TEST)


def test_without_the_extra_the_commands_name_it(exported, monkeypatch, tmp_path):
    ckpt, onnx_path = exported["plain"]
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    r = run("export", ckpt, tmp_path / "x.onnx")
    assert r.exit_code == 2 and "pip install 'nerwin[onnx]'" in r.output, r.output
    assert not (tmp_path / "x.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    r = run("tag", onnx_path, TEST, "--input-format", "conll")
    assert r.exit_code == 2 and "pip install 'nerwin[onnx]'" in r.output, r.output
    assert "Traceback" not in r.output


def test_bad_onnx_files_are_one_line_errors(write):
    r = run("tag", write("junk.onnx", b"not a model"), TEST)
    assert r.exit_code == 2 and "cannot load the ONNX file" in r.output
    r = run("tag", write("none.onnx", b"x").with_name("missing.onnx"), TEST)
    assert r.exit_code == 2 and "no such file" in r.output


# ------------------------------------------------------------------ CoNLL-2003 (shared data)


@pytest.mark.parametrize("config", ["conll2003.yaml", "conll2003_best.yaml"])
def test_conll2003_models_tag_identically(shared_data, tmp_path, config):
    """The plain and the best config, trained for one epoch on CoNLL-2003 train, tag its
    test set identically from the checkpoint and from the ONNX file."""
    d = {k: shared_data(f"conll2003/{k}.txt") for k in ("train", "valid", "test")}
    glove = shared_data("embeddings/glove.6B.50d.txt.gz")
    run_info = nerwin.train(ROOT / "configs" / config, overrides={
        "training.epochs": 1, "data.train": str(d["train"]), "data.dev": str(d["valid"]),
        "data.test": None, "features.vectors": str(glove)}, out=tmp_path / "run")
    onnx_path = tmp_path / "m.onnx"
    assert run("export", run_info.best, onnx_path).exit_code == 0
    outs = []
    for model in (run_info.best, onnx_path):
        dest = tmp_path / f"{len(outs)}.txt"
        r = run("tag", model, d["test"], "--input-format", "conll", "--output", dest,
                "--quiet")
        assert r.exit_code == 0, r.output
        outs.append(dest.read_bytes())
    assert outs[0] == outs[1]
