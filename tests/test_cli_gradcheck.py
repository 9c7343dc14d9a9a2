"""`nerwin gradcheck` through the CLI: passes on every nonlinearity and head, fails when a
backward pass is deliberately broken."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import conll_sets, run_cli

from nerwin.nn import layers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "configs" / "sample.yaml")
LECTURE3 = str(ROOT / "configs" / "lecture3.yaml")


def gradcheck(*args: str):
    return run_cli("gradcheck", *args)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "tanh", "hardtanh", "relu"])
def test_every_nonlinearity_passes_on_sample(nonlinearity):
    r = gradcheck(SAMPLE, "--set", f"model.nonlinearity={nonlinearity}")
    assert r.exit_code == 0, r.output
    assert "all ok" in r.output
    for name in ("E_word", "E_case", "W1", "b1", "U", "c"):
        assert f"\n{name} " in r.output


@pytest.mark.parametrize("overrides", [
    ["model.hidden=[20,10]", "training.l2=0.01"],
    ["features.window=0", "model.hidden=[]"],
    ["features.window=3", "model.nonlinearity=relu", "model.hidden=[16,8]"],
    ["features.casing_dim=0", "model.nonlinearity=hardtanh"],
    ["training.l1=0.0001", "model.nonlinearity=sigmoid", "model.hidden=[12]"],
])
def test_depths_windows_and_regularisers(overrides):
    r = gradcheck(SAMPLE, *[a for o in overrides for a in ("--set", o)])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "tanh", "hardtanh", "relu"])
def test_logistic_head_passes(nonlinearity):
    r = gradcheck(LECTURE3, "--set", f"model.nonlinearity={nonlinearity}")
    assert r.exit_code == 0, r.output
    assert "\nu " in r.output


def test_broken_backward_fails_with_exit_1(monkeypatch):
    real = layers.affine_backward

    def broken(dz, cache, **kw):
        dx, dW, db = real(dz, cache, **kw)
        return dx, (None if dW is None else dW * 1.01), db

    monkeypatch.setattr(layers, "affine_backward", broken)
    r = gradcheck(SAMPLE)
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and "FAILED" in r.output


def test_broken_nonlinearity_derivative_fails(monkeypatch):
    monkeypatch.setattr(layers, "tanh_backward", lambda da, a: da * (1 - a))  # wrong: 1 - a
    r = gradcheck(SAMPLE)
    assert r.exit_code == 1
    w1 = next(line for line in r.output.splitlines() if line.startswith("W1 "))
    assert "FAIL" in w1


def test_frozen_vectors_are_listed_not_checked(write):
    words = ["a", "b", "Paris"]
    vec = write("v.txt", "".join(f"{w.lower()} " + " ".join(["0.1"] * 4) + "\n" for w in words))
    train = write("t.txt", "a O\nb O\nParis B-LOC\n\nb O\nParis B-LOC\n")
    cfg = write("c.yaml", f"data:\n  train: {train}\nfeatures:\n  vectors: {vec}\n  dim: 4\n"
                "  freeze: true\nmodel:\n  hidden: [5]\n")
    r = gradcheck(str(cfg), "--samples", "4")
    assert r.exit_code == 0, r.output
    assert "frozen" in next(line for line in r.output.splitlines() if line.startswith("E_word"))


def test_bad_config_is_exit_2():
    r = gradcheck(SAMPLE, "--set", "model.nonlinearity=swish")
    assert r.exit_code == 2 and "model.nonlinearity" in r.output


def test_conll2003_config_with_glove_passes():
    r = gradcheck(str(ROOT / "configs" / "conll2003.yaml"), *conll_sets(dev=False))
    assert r.exit_code == 0, r.output
    assert "(17495, 50)" in r.output  # train vocabulary + specials; GloVe rows included


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_large_eps_leaves_parameters_not_checked_and_fails(nonlinearity):
    """At eps 0.1 every entry of c (and of b1 for tanh) is too noisy to compare: that must
    not read as 'all ok'."""
    r = gradcheck(SAMPLE, "--eps", "0.1", "--set", f"model.nonlinearity={nonlinearity}")
    assert r.exit_code == 1, r.output
    c = next(line for line in r.output.splitlines() if line.startswith("c "))
    assert c.endswith("NOT CHECKED")
    assert "all ok" not in r.output and "not checked)" in r.output
    assert "NOT CHECKED: " in r.output and "not a pass" in r.output


def test_negative_seed_is_a_usage_error():
    r = gradcheck(SAMPLE, "--seed", "-1")
    assert r.exit_code == 2 and "--seed" in r.output and "Traceback" not in r.output


def test_conll2003_best_config_passes():
    """The crf head, suffixes and shape on the real vocabulary, and the char encoder, which
    the shipped config leaves out (~7 s)."""
    r = gradcheck(str(ROOT / "configs" / "conll2003_best.yaml"), *conll_sets(dev=False),
                  "--set", "features.char_filters=30")
    assert r.exit_code == 0, r.output
    for name in ("E_suffix3", "E_shape", "E_char", "W_char", "trans", "start", "end"):
        assert any(line.startswith(name) and line.endswith("ok")
                   for line in r.output.splitlines()), name


# Two convolution blocks and a gazetteer table in one network (issue 17): every parameter
# checked, and a broken backward of either new part fails it.
CONV_BLOCK = "{{width: 3, units: 8, nonlinearity: {f}, dropout: 0.0}}"


def _conv_and_gazetteer(tmp_path: Path, nonlinearity: str = "relu") -> list[str]:
    lst = tmp_path / "loc.txt"
    lst.write_text("Tessfield\nPort Hallen\n")
    block = CONV_BLOCK.format(f=nonlinearity)
    return [SAMPLE, "--set", f"model.blocks=[{block}, {block}]",
            "--set", f"features.gazetteers={{LOC: {lst}}}", "--set", "model.head=crf"]


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "tanh", "hardtanh", "relu"])
def test_two_conv_blocks_and_a_gazetteer_pass(tmp_path, nonlinearity):
    r = gradcheck(*_conv_and_gazetteer(tmp_path, nonlinearity))
    assert r.exit_code == 0, r.output
    assert "all ok" in r.output
    for name in ("E_gaz_LOC", "W1", "W2", "b2", "W3", "b3", "trans"):
        assert any(line.startswith(f"{name} ") and line.endswith("ok")
                   for line in r.output.splitlines()), name


@pytest.mark.parametrize("part", ["gazetteer", "conv"])
def test_two_conv_blocks_and_a_gazetteer_broken_backward_fails(tmp_path, monkeypatch, part):
    from nerwin.nn.blocks import Conv
    from nerwin.nn.tables import LookupTable

    if part == "gazetteer":
        real_table = LookupTable.backward

        def broken_table(self, p, d, cache, trainable):
            return real_table(self, p, d * 1.01 if self.param.startswith("E_gaz") else d,
                              cache, trainable)
        monkeypatch.setattr(LookupTable, "backward", broken_table)
        expect = "E_gaz_LOC"
    else:
        real_conv = Conv.backward

        def broken_conv(self, *a, **kw):
            dh, grads = real_conv(self, *a, **kw)
            if self.W == "W3":
                grads["W3"] = grads["W3"] * 1.01
            return dh, grads
        monkeypatch.setattr(Conv, "backward", broken_conv)
        expect = "W3"
    r = gradcheck(*_conv_and_gazetteer(tmp_path))
    assert r.exit_code == 1, r.output
    failed = [line.split()[0] for line in r.output.splitlines() if line.endswith("FAIL")]
    assert expect in failed, r.output
