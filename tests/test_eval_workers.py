"""nerwin eval --workers N: every output byte-identical to one worker's (and to a whole-corpus
Model.evaluate), a killed worker and Ctrl-C handled, bad values refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    default_sigint,
    descendants,
    forkserver_workers,
    shared_file,
    wait_for_no_descendants,
)
from conftest import run_cli as run

import nerwin.ensemble
import nerwin.model
from nerwin.config import load_config
from nerwin.dataset import build_lexicon, read_split
from nerwin.evaluation import chunks, evaluate_in_chunks
from nerwin.model import load_model, new_model

SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"
DEV = ROOT / "data" / "sample" / "dev.txt"

# Sample config variants: the softmax head decodes whole sentences (Viterbi), with argmax
# its batches are plain row ranges that cut sentences; crf; logistic (one type).
HEADS = {
    "softmax": [],
    "argmax": ["--set", "model.decode=argmax"],
    "crf": ["--set", "model.head=crf"],
    "logistic": ["--set", "model.head=logistic", "--set", "model.positive=PER"],
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One-epoch models of the sample config per head, and two crf ensembles."""
    root = tmp_path_factory.mktemp("evalw")
    out = {}
    for name, sets in {**HEADS, "crf_seed1": HEADS["crf"] + ["--set", "training.seed=1"]
                       }.items():
        r = run("train", SAMPLE, "--out", root / name, "--quiet", "--set", "training.epochs=1",
                *sets)
        assert r.exit_code == 0, r.output
        out[name] = root / name / "best"
    for combine in ("potentials", "marginals"):
        r = run("ensemble", out["crf"], out["crf_seed1"], "--out", root / combine,
                "--combine", combine)
        assert r.exit_code == 0, r.output
        out[f"ensemble_{combine}"] = root / combine
    return out


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of about 150 tokens: the sample test file (2,900 tokens) becomes ~20
    batches, ~10 chunks, so 2 and 3 workers get several chunks each, out of order."""
    monkeypatch.setattr(nerwin.model, "PREDICT_BATCH", 150)
    monkeypatch.setattr(nerwin.ensemble, "PREDICT_BATCH", 150)


def _eval(model, tmp_path, workers, *opts, files=("pred.txt", "conf.svg")):
    """stdout and the bytes of each output file of one nerwin eval run."""
    d = tmp_path / f"w{workers}-{'-'.join(o.strip('-') for o in opts) or 'table'}"
    d.mkdir()
    args = list(opts)
    if "--json" in opts:
        args += ["--predictions", d / files[0], "--confusion", d / files[1]]
    r = run("eval", model, TEST, "--workers", workers, *args)
    assert r.exit_code == 0, r.output
    written = {f: (d / f).read_bytes() for f in files if (d / f).exists()}
    return r.output, written


@pytest.mark.parametrize("name", [*HEADS, "ensemble_potentials", "ensemble_marginals"])
def test_every_output_is_the_same_with_2_and_3_workers(models, name, tmp_path, small_batches):
    model = models[name]
    one = _eval(model, tmp_path, 1, "--json")
    assert one[0] and set(one[1]) == {"pred.txt", "conf.svg"}
    for workers in (2, 3):
        assert _eval(model, tmp_path, workers, "--json") == one, workers
    # ... and what a whole-corpus evaluation gives (the scores training reports for dev).
    m = load_model(model)
    scores, pred = m.evaluate(read_split(m.cfg, TEST))
    scores["file"] = str(TEST)
    assert json.loads(one[0]) == json.loads(json.dumps(scores))


@pytest.mark.parametrize("opt", [(), ("--conlleval",)])
@pytest.mark.parametrize("name", ["softmax", "crf"])
def test_table_and_conlleval_layouts_are_the_same_with_workers(models, name, opt, tmp_path,
                                                               small_batches):
    outs = {w: _eval(models[name], tmp_path, w, *opt)[0] for w in (1, 2, 3)}
    assert outs[1] and outs[1] == outs[2] == outs[3]


@pytest.mark.parametrize("lengths", [[], [3], [3, 4, 7, 1, 2], [12, 1, 1, 9, 5, 5, 5, 2],
                                     [0, 4, 0, 0, 6]])
def test_the_plan_is_the_batches_evaluation_always_used(lengths, monkeypatch):
    """eval_plan's row ranges hold exactly the rows of eval_batches (index arrays or
    slices), batch for batch, with the same sentence lengths."""
    from nerwin.model import eval_batches, eval_plan
    from nerwin.windows import WindowData

    monkeypatch.setattr(nerwin.model, "PREDICT_BATCH", 5)
    n = sum(lengths)
    data = WindowData((np.zeros((n, 1)),), np.zeros(n, dtype=np.int32), np.array(
        lengths, dtype=np.int64))
    for per_sentence in (True, False):
        old = eval_batches(data, per_sentence)
        new = eval_plan(np.array(lengths, dtype=np.int64), per_sentence)
        assert len(old) == len(new)
        for (rows, lens), (a, b, lens2) in zip(old, new, strict=True):
            assert np.arange(n)[rows].tolist() == list(range(a, b))
            assert (lens is None and lens2 is None) or lens.tolist() == lens2.tolist()


def test_the_chunks_are_the_whole_corpus_batches_in_order(models, small_batches):
    """Every batch of the plan, in order, once; each chunk's sentences hold its batches'
    rows and carry the corpus's tokens and tags (the argmax plan cuts sentences)."""
    for name in ("argmax", "crf"):
        m = load_model(models[name])
        corpus = read_split(m.cfg, TEST)
        plan = m.eval_plan(corpus.lengths)
        got = list(chunks(corpus, plan, 2))
        assert len(got) >= 8
        start = 0
        rebuilt = []
        for c in got:
            sub = c.corpus()
            first = int(np.searchsorted(corpus.offsets, start, side="right")) - 1
            t0 = int(corpus.offsets[first])
            for a, b, lens in c.batches:
                rebuilt.append((a + t0, b + t0, None if lens is None else lens.tolist()))
                assert 0 <= a <= b <= sub.n_tokens
            start = rebuilt[-1][1]
            assert sub.tokens_of(0, sub.n_tokens) == corpus.tokens_of(t0, t0 + sub.n_tokens)
            assert [s.tags for s in sub.sentences] == [
                s.tags for s in list(corpus.sentences)[first: first + len(sub.lengths)]]
        assert rebuilt == [(a, b, None if lens is None else lens.tolist())
                           for a, b, lens in plan]
        assert start == corpus.n_tokens
        cut = name == "argmax" and any(
            b not in set(corpus.offsets.tolist()) for _, b, _ in plan[:-1])
        assert cut or name == "crf"  # the argmax plan does cut sentences


def test_at_most_2n_chunks_are_in_flight(models, small_batches):
    """Memory is bounded: when the k-th result comes back, at most k - 1 + 2·N chunks
    have been taken from the input, whatever its size."""
    from nerwin.evaluation import eval_task
    from nerwin.parallel import run_parallel

    m = load_model(models["crf"])
    corpus = read_split(m.cfg, TEST)
    pulled: list[int] = []

    def counting(parts):
        for c in parts:
            pulled.append(1)
            yield c

    seen = []
    for workers in (1, 2):
        pulled.clear()
        got = []
        for k, r in enumerate(run_parallel(str(models["crf"]), counting(
                chunks(corpus, m.eval_plan(corpus.lengths), 1)), workers, eval_task,
                "evaluation"), 1):
            assert len(pulled) <= k - 1 + 2 * workers, (workers, k, len(pulled))
            seen.append(len(pulled) - k)
            got.append(r)
        assert len(got) == len(pulled) >= 15
    assert max(seen) >= 2  # chunks were in flight ahead of the results


@pytest.mark.parametrize("features", [
    [],
    # characters, affixes, shapes, a convolution block, IOBES crf: every encoder
    ["--set", "features.char_filters=8", "--set", "features.char_dim=6",
     "--set", "features.prefixes=[2]", "--set", "features.suffixes=[3]",
     "--set", "features.shape_dim=4", "--set", "model.head=crf",
     "--set", "model.scheme=iobes"],
])
def test_chunks_give_the_whole_corpus_evaluation_bit_for_bit(features, small_batches):
    """An untrained model of each kind (as good as a trained one for equality): chunked,
    in this process, equals Model.evaluate over the whole corpus, loss included."""
    cfg = load_config(SAMPLE, list(features[1::2]))
    lex = build_lexicon(cfg, read_split(cfg, cfg.data.train))
    model = new_model(cfg, lex, np.random.default_rng(0))
    corpus = read_split(cfg, DEV)
    whole = model.evaluate(corpus)
    for k in (1, 2, 5):
        assert evaluate_in_chunks(model, corpus, chunk_batches=k) == (*whole, corpus)


def test_conll2003_dev_is_the_same_with_two_workers(models, tmp_path):
    """The real batch size on CoNLL-2003 dev (51,362 tokens: 13 batches, 7 chunks)."""
    valid = shared_file("conll2003/valid.txt")
    outs = []
    for workers in (1, 2):
        pred = tmp_path / f"pred{workers}.txt"
        r = run("eval", models["crf"], valid, "--json", "--predictions", pred,
                "--workers", workers)
        assert r.exit_code == 0, r.output
        outs.append((r.output, pred.read_bytes()))
    assert outs[0] == outs[1]
    m = load_model(models["crf"])
    scores, _ = m.evaluate(read_split(m.cfg, valid))
    scores["file"] = str(valid)
    assert json.loads(outs[0][0]) == json.loads(json.dumps(scores))


@pytest.mark.parametrize("value, message", [("0", "0 is not in the range x>=1"),
                                            ("two", "'two' is not a valid integer")])
def test_bad_workers_value_is_a_usage_error(models, value, message):
    r = run("eval", models["crf"], TEST, "--workers", value)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_an_unknown_tag_is_the_same_error_with_workers(models, write):
    bad = write("bad.txt", "Karel B-PER\nVosk I-PER\n\nPrague B-FOO\n")
    outs = [run("eval", models["crf"], bad, "--workers", w) for w in (1, 2)]
    assert [r.exit_code for r in outs] == [2, 2]
    assert outs[0].output == outs[1].output
    assert "bad.txt:4: tag 'B-FOO' was never seen in training" in outs[0].output


def test_an_onnx_model_is_refused_with_workers_too(models, tmp_path):
    """eval takes checkpoint folders only (an .onnx file only tags): the same usage error
    with workers, before any is started."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "m.onnx"
    assert run("export", models["crf"], onnx).exit_code == 0
    outs = [run("eval", onnx, TEST, "--workers", w) for w in (1, 2)]
    assert [r.exit_code for r in outs] == [2, 2] and outs[0].output == outs[1].output
    assert "is a file" in outs[0].output


# --------------------------------------------------------------------------- failures


def _start_eval(model, tmp_path):
    # The sample test file 400 times (1.2M tokens): many seconds of work after the workers
    # are up, so the run is provably in progress when the signal comes.
    big = tmp_path / "big.txt"
    big.write_text(TEST.read_text(encoding="utf-8") * 400, encoding="utf-8")
    pred = tmp_path / "pred.txt"
    pred.write_text("previous\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # SIGINT at its default in the child, as in a terminal: a test run started as a
    # background job of a script has it ignored, and the child would inherit that.
    p = subprocess.Popen([sys.executable, "-m", "nerwin", "eval", str(model), str(big),
                          "--predictions", str(pred), "--confusion",
                          str(tmp_path / "conf.png"), "--workers", "2"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    workers = forkserver_workers(p, 2, timeout=120)
    assert len(workers) == 2, descendants(p.pid)
    time.sleep(1.0)  # mid-run
    assert p.poll() is None
    assert all(Path(f"/proc/{w}").exists() for w in workers)
    assert pred.read_text() == "previous\n"
    return p, workers, pred


def _check_clean(p, tmp_path, pred):
    """The old --predictions file as it was, no --confusion picture, no temporary file."""
    assert pred.read_text() == "previous\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.txt", "pred.txt"]
    wait_for_no_descendants(p.pid)


def test_a_killed_worker_is_one_line_exit_2_and_no_output(models, tmp_path):
    import signal

    p, workers, pred = _start_eval(models["crf"], tmp_path)
    os.kill(workers[0], signal.SIGKILL)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "evaluation worker nerwin-eval-" in lines[0]
    assert "died (killed by signal SIGKILL)" in lines[0]
    _check_clean(p, tmp_path, pred)
    for w in workers:
        assert not Path(f"/proc/{w}").exists() or "zombie" in Path(
            f"/proc/{w}/status").read_text()


def test_ctrl_c_is_exit_130_and_no_output(models, tmp_path):
    import signal

    p, workers, pred = _start_eval(models["crf"], tmp_path)
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and out == ""
    assert "interrupted; no output was written" in err and "Traceback" not in err, err
    _check_clean(p, tmp_path, pred)


def test_ctrl_c_with_one_worker_is_exit_130_and_no_output(models, tmp_path):
    """In process too: once the run has used a second of CPU (of the many it needs: the
    file holds 1.2M tokens), Ctrl-C stops it with exit 130 and nothing written."""
    import signal

    big = tmp_path / "big.txt"
    big.write_text(TEST.read_text(encoding="utf-8") * 400, encoding="utf-8")
    pred = tmp_path / "pred.txt"
    pred.write_text("previous\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-m", "nerwin", "eval", str(models["crf"]),
                          str(big), "--predictions", str(pred)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    tick = os.sysconf("SC_CLK_TCK")
    while p.poll() is None:
        fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / tick >= 1.0:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run ended before it could be interrupted"
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and out == "", err
    assert "interrupted; no output was written" in err and "Traceback" not in err, err
    _check_clean(p, tmp_path, pred)
