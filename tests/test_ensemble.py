"""`nerwin ensemble`: several models that evaluate and tag as one; manifest and hashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nerwin
from nerwin.cli import cli
from nerwin.conll import read_conll
from nerwin.ensemble import EnsembleModel, load_ensemble
from nerwin.ensemble import write_ensemble as _write
from nerwin.errors import NerwinError
from nerwin.model import load_checkpoint_model, load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TRAIN = ROOT / "data" / "sample" / "train.txt"
DEV = ROOT / "data" / "sample" / "dev.txt"
TEST = ROOT / "data" / "sample" / "test.txt"


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def one_line_error(r, expected: str) -> None:
    assert r.exit_code == 2, r.output
    assert expected in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def _train(out: Path, *sets: str) -> Path:
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=2",
            "--set", "data.test=null", *[x for s in sets for x in ("--set", s)])
    assert r.exit_code == 0, r.output
    return out / "best"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two softmax sample models (seeds 0, 1), a crf one, and a logistic one."""
    d = tmp_path_factory.mktemp("members")
    return {"s0": _train(d / "s0"), "s1": _train(d / "s1", "training.seed=1"),
            "crf": _train(d / "crf", "model.head=crf"),
            "crf1": _train(d / "crf1", "model.head=crf", "training.seed=1"),
            "logistic": _train(d / "log", "model.head=logistic", "model.positive=PER",
                               "model.decode=null", "model.constrained=true")}


@pytest.fixture(scope="module")
def pair(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("ens") / "pair"
    r = run("ensemble", models["s0"], models["s1"], "--out", out)
    assert r.exit_code == 0, r.output
    return out


def write_ensemble(models: list[Path], out: Path, **kw) -> Path:
    return _write(models, out, load=load_checkpoint_model, **kw)


def _eval(model: Path) -> tuple[dict, list[list[str]]]:
    m = load_model(model)
    return m.evaluate(read_conll(DEV, scheme=m.cfg.data.scheme))


@pytest.mark.parametrize("member, combine", [("s0", "marginals"), ("s0", "potentials"),
                                             ("crf", "potentials")])
def test_an_ensemble_of_one_model_predicts_as_that_model(models, tmp_path, member, combine):
    # marginals of one softmax member: Viterbi over its log-softmax with the IOB2 mask, as
    # the softmax head decodes; potentials of one member: its own scores and transitions.
    out = write_ensemble([models[member]], tmp_path / "one", combine=combine)
    got, pred = _eval(out)
    want, want_pred = _eval(models[member])
    assert pred == want_pred
    assert got["f1"] == want["f1"] and got["precision"] == want["precision"]


def test_the_ensemble_of_two_evaluates_and_its_f1_is_its_predictions(pair, models, tmp_path):
    r = run("eval", pair, DEV, "--json", "--predictions", tmp_path / "p.txt")
    assert r.exit_code == 0, r.output
    scores = json.loads(r.output)
    pred = [line.split()[-1] for line in (tmp_path / "p.txt").read_text().splitlines()
            if line.strip()]
    gold = [line.split()[-1] for line in DEV.read_text().splitlines()
            if line.strip() and not line.startswith("-DOCSTART-")]
    assert len(pred) == len(gold)
    from nerwin.metrics import score

    assert score([gold], [pred])["f1"] == pytest.approx(scores["f1"])
    members = [_eval(models[k])[0]["f1"] for k in ("s0", "s1")]
    assert 0 < scores["f1"] <= 100 and np.isfinite(scores["loss"])
    # two different members: the ensemble's tags are not simply one member's
    assert members[0] != members[1]


def test_the_crf_combinations_both_evaluate(models, tmp_path):
    for combine in ("marginals", "potentials"):
        out = write_ensemble([models["crf"], models["crf1"]], tmp_path / combine,
                             combine=combine)
        scores, _ = _eval(out)
        assert 50 < scores["f1"] <= 100


@pytest.mark.parametrize("input_format", ["text", "conll"])
@pytest.mark.parametrize("output_format", ["conll", "jsonl", "inline"])
def test_the_ensemble_tags_in_every_format(pair, input_format, output_format):
    text = ("Karel Vosk visited Prague.\n" if input_format == "text"
            else "Karel\nVosk\nvisited\nPrague\n.\n")
    r = run("tag", pair, "-", "--input-format", input_format, "--output-format",
            output_format, input=text)
    assert r.exit_code == 0, r.output
    assert "Prague" in r.output
    if output_format == "jsonl":
        rec = json.loads(r.output.splitlines()[0])
        assert len(rec["tags"]) == 5
        for e in rec["entities"]:
            assert 0.0 <= e["score"] <= 1.0


def test_api_loads_the_ensemble_and_its_scores_are_averaged_probabilities(pair, models):
    ner = nerwin.load(pair)
    assert isinstance(ner.model, EnsembleModel)
    assert ner.tags == list(load_model(models["s0"]).lex.tags.itos)
    doc = ner("Karel Vosk visited Prague.")
    assert len(doc.tags) == len(doc.tokens)
    from nerwin.conll import Sentence

    sent = [Sentence(doc.tokens, ["O"] * len(doc.tokens), 1)]
    labels, probs = ner.model.token_probabilities(sent)
    member_probs = [load_model(models[k]).token_probabilities(sent)[1][0] for k in ("s0", "s1")]
    assert np.allclose(probs[0], np.mean(member_probs, axis=0))
    assert nerwin.evaluate(pair, DEV)["f1"] == _eval(pair)[0]["f1"]


def test_members_with_other_tags_or_head_are_refused(models, tmp_path, write):
    few = write("few.txt", "John\tB-PER\nSmith\tI-PER\nran\tO\n\nParis\tB-LOC\nwon\tO\n")
    other = _train(tmp_path / "few", f"data.train={few}", "data.dev=null")
    r = run("ensemble", models["s0"], other, "--out", tmp_path / "e")
    one_line_error(r, f"{other}: its tags (O, B-LOC, I-LOC, B-PER, I-PER) differ from")
    r = run("ensemble", models["s0"], models["crf"], "--out", tmp_path / "e")
    one_line_error(r, "its head (crf) differ from")
    r = run("ensemble", models["s0"], models["logistic"], "--out", tmp_path / "e")
    assert r.exit_code == 2 and "ensemble members must share tags, scheme and head" in r.output
    assert not (tmp_path / "e").exists()


def test_a_damaged_manifest_or_member_is_refused_in_one_line(models, tmp_path):
    out = write_ensemble([models["s0"], models["s1"]], tmp_path / "e")
    manifest = out / "ensemble.json"
    good = manifest.read_text()
    edited = json.loads(good)
    edited["combine"] = "marginals" if edited["combine"] == "potentials" else "potentials"
    manifest.write_text(json.dumps(edited))
    one_line_error(run("eval", out, DEV), "manifest_sha256 does not match")
    manifest.write_text(good[:-20])
    one_line_error(run("tag", out, "-", input="a b\n"), "not a nerwin ensemble manifest")
    manifest.write_text(good)
    params = out / "members" / "1" / "params.npz"
    data = bytearray(params.read_bytes())
    data[-100] ^= 1
    params.write_bytes(bytes(data))
    one_line_error(run("eval", out, DEV), f"{params}: sha256 does not match")
    (out / "members" / "1" / "params.npz").unlink()
    one_line_error(run("eval", out, DEV), "cannot read ensemble member file")
    with pytest.raises(NerwinError):
        load_ensemble(out, load_checkpoint_model)


def test_out_is_written_only_where_nothing_of_the_users_is_lost(models, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for extra in ([], ["--force"]):
        r = run("ensemble", models["s0"], "--out", mine, *extra)
        one_line_error(r, "exists and is not an ensemble folder")
    assert (mine / "notes.txt").read_text() == "keep"
    out = tmp_path / "e"
    assert run("ensemble", models["s0"], "--out", out).exit_code == 0
    one_line_error(run("ensemble", models["s1"], "--out", out), "use --force to replace it")
    r = run("ensemble", models["s0"], models["s1"], "--out", out, "--force")
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "ensemble.json").read_text())["members"]) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # a checkpoint folder is not an ensemble: --out must not replace it either
    one_line_error(run("ensemble", models["s0"], "--out", models["s1"], "--force"),
                   "exists and is not an ensemble folder")
    one_line_error(run("ensemble", out, models["s0"], "--out", tmp_path / "x"),
                   "is an ensemble; give its members")
    one_line_error(run("export", out, tmp_path / "x.onnx"), "is an ensemble")


def test_the_ensemble_is_self_contained(models, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(models["s0"], src)
    out = write_ensemble([src], tmp_path / "e")
    shutil.rmtree(src)
    assert _eval(out)[1] == _eval(models["s0"])[1]
