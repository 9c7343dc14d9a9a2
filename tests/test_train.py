"""`nerwin train` and `nerwin eval` end to end on the bundled sample corpus."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import conll_sets
from conftest import run_cli as run

from nerwin.checkpoint import load_checkpoint
from nerwin.conll import read_conll
from nerwin.optim import Optimizer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "configs" / "sample.yaml")
DEV = str(ROOT / "data" / "sample" / "dev.txt")



def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "sample"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=6")
    assert r.exit_code == 0, r.output
    return out, r.output


def test_train_writes_the_run_directory(sample_run):
    out, output = sample_run
    for name in ("config.yaml", "metrics.jsonl", "best/params.npz", "best/meta.json",
                 "last/params.npz", "last/meta.json", "test_scores.json"):
        assert (out / name).is_file(), name
    lines = metrics(out)
    assert [r["epoch"] for r in lines] == list(range(1, len(lines) + 1))
    for key in ("step", "train_loss", "lr", "dev_precision", "dev_recall", "dev_f1",
                "dev_per_type_f1", "tokens_per_s", "seconds"):
        assert key in lines[0]
    assert "epoch 1/6" in output and "best dev F1" in output and "FB1" in output
    # the loss goes down and the model learns the sample corpus
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert max(r["dev_f1"] for r in lines) >= 80.0
    assert json.loads((out / "test_scores.json").read_text())["f1"] >= 75.0
    arrays, meta = load_checkpoint(out / "last")
    assert any(k.startswith("opt/") for k in arrays) and meta["loop"]["epoch"] == len(lines)


def test_eval_on_best_reproduces_dev_score(sample_run):
    out, _ = sample_run
    best = max(metrics(out), key=lambda r: r["dev_f1"])
    r = run("eval", out / "best", DEV, "--json")
    assert r.exit_code == 0, r.output
    scores = json.loads(r.output)
    assert scores["f1"] == best["dev_f1"]
    assert scores["precision"] == best["dev_precision"]
    for key in ("recall", "token_accuracy", "per_type"):
        assert key in scores
    table = run("eval", out / "best", DEV)
    assert f"{best['dev_f1']:.2f}" in table.output and "precision" in table.output


def test_eval_writes_conlleval_predictions(sample_run, tmp_path):
    out, _ = sample_run
    pred = tmp_path / "pred.txt"
    r = run("eval", out / "best", DEV, "--predictions", pred)
    assert r.exit_code == 0
    lines = [line.split() for line in pred.read_text().splitlines() if line]
    dev_tokens = [line.split()[0] for line in Path(DEV).read_text().splitlines()
                  if line and not line.startswith("-DOCSTART-")]
    assert [c[0] for c in lines] == dev_tokens and all(len(c) == 3 for c in lines)


def test_eval_rejects_an_unseen_tag(sample_run, write):
    out, _ = sample_run
    p = write("new.txt", "Paris B-LOC\nis O\nfun B-FUN\n")
    r = run("eval", out / "best", p)
    assert r.exit_code == 2
    assert f"{p}:3:" in r.output and "'B-FUN'" in r.output


def test_existing_run_is_not_overwritten(sample_run):
    out, _ = sample_run
    before = (out / "metrics.jsonl").read_bytes()
    r = run("train", SAMPLE, "--out", out, "--quiet")
    assert r.exit_code == 2 and "--resume" in r.output and "--force" in r.output
    assert (out / "metrics.jsonl").read_bytes() == before


def test_eval_of_a_missing_or_corrupt_model(tmp_path, sample_run):
    r = run("eval", tmp_path / "nope", DEV)
    assert r.exit_code == 2 and "no such checkpoint" in r.output
    out, _ = sample_run
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("params.npz", "meta.json"):
        (bad / f).write_bytes((out / "best" / f).read_bytes())
    meta = json.loads((bad / "meta.json").read_text())
    meta["sha256"]["W1"] = "0" * 64
    (bad / "meta.json").write_text(json.dumps(meta))
    r = run("eval", bad, DEV)
    assert r.exit_code == 2 and "W1" in r.output and "sha256" in r.output


def _final_arrays(out: Path) -> dict[str, np.ndarray]:
    arrays, _ = load_checkpoint(out / "last")
    return arrays


STRIP = ("seconds", "tokens_per_s")


def _comparable(lines):
    return [{k: v for k, v in r.items() if k not in STRIP} for r in lines]


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    common = ("--quiet", "--set", "training.epochs=4", "--set", "model.dropout=0.2",
              "--set", "training.patience=null")
    full = tmp_path / "full"
    assert run("train", SAMPLE, "--out", full, *common).exit_code == 0

    # Kill the second run in the middle of epoch 3: after 2.5 epochs of optimiser steps.
    steps_per_epoch = metrics(full)[0]["step"]
    real_step = Optimizer.step
    calls = {"n": 0}

    def dying_step(self, params, grads, lr):
        calls["n"] += 1
        if calls["n"] > 2 * steps_per_epoch + steps_per_epoch // 2:
            raise KeyboardInterrupt
        return real_step(self, params, grads, lr)

    part = tmp_path / "part"
    monkeypatch.setattr(Optimizer, "step", dying_step)
    r = run("train", SAMPLE, "--out", part, *common)
    assert r.exit_code == 130 and "--resume" in r.output
    assert [m["epoch"] for m in metrics(part)] == [1, 2]
    monkeypatch.setattr(Optimizer, "step", real_step)

    r = run("train", SAMPLE, "--out", part, "--resume", *common)
    assert r.exit_code == 0, r.output
    a, b = _final_arrays(full), _final_arrays(part)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k  # bit for bit
    assert _comparable(metrics(full)) == _comparable(metrics(part))
    best_a, _ = load_checkpoint(full / "best")
    best_b, _ = load_checkpoint(part / "best")
    assert all(np.array_equal(best_a[k], best_b[k]) for k in best_a)


def test_resume_can_extend_epochs_but_not_change_the_model(tmp_path):
    out = tmp_path / "r"
    assert run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=1"
               ).exit_code == 0
    r = run("train", SAMPLE, "--out", out, "--quiet", "--resume", "--set", "model.hidden=[7]")
    assert r.exit_code == 2 and "model.hidden" in r.output
    r = run("train", SAMPLE, "--out", out, "--quiet", "--resume", "--set", "training.epochs=2",
            "--set", "training.patience=null")
    assert r.exit_code == 0, r.output
    assert [m["epoch"] for m in metrics(out)] == [1, 2]


def test_resume_drops_metrics_lines_last_does_not_hold(tmp_path):
    out = tmp_path / "r"
    args = ("--quiet", "--set", "training.epochs=2", "--set", "training.patience=null")
    assert run("train", SAMPLE, "--out", out, "--set", "training.epochs=1", *args[:1]
               ).exit_code == 0
    # As after a crash between the metrics line of epoch 2 and its checkpoint, mid-write:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "dev_f1": 1.0}) + "\n" + '{"epoch": 3, "dev_')
    r = run("train", SAMPLE, "--out", out, "--resume", *args)
    assert r.exit_code == 0, r.output
    lines = metrics(out)
    assert [m["epoch"] for m in lines] == [1, 2] and lines[1]["dev_f1"] != 1.0


def test_resume_without_a_run(tmp_path):
    r = run("train", SAMPLE, "--out", tmp_path / "none", "--resume")
    assert r.exit_code == 2 and "nothing to resume" in r.output


def test_same_seed_same_numbers(tmp_path):
    args = ("--quiet", "--set", "training.epochs=1")
    assert run("train", SAMPLE, "--out", tmp_path / "a", *args).exit_code == 0
    assert run("train", SAMPLE, "--out", tmp_path / "b", *args).exit_code == 0
    a, b = _final_arrays(tmp_path / "a"), _final_arrays(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = tmp_path / "c"
    assert run("train", SAMPLE, "--out", c, *args, "--set", "training.seed=1").exit_code == 0
    assert not np.array_equal(a["W1"], _final_arrays(c)["W1"])


def test_divergence_stops_with_a_clear_message_and_keeps_last(tmp_path, monkeypatch):
    from nerwin.nn.network import WindowNet

    n_tokens = read_conll(ROOT / "data" / "sample" / "train.txt").n_tokens
    bad_step = math.ceil(n_tokens / 32) + 10  # in epoch 2 at batch size 32
    real = WindowNet.loss_and_grads
    calls = {"n": 0}

    def exploding(self, *a, **kw):
        calls["n"] += 1
        loss, grads = real(self, *a, **kw)
        return (float("nan") if calls["n"] == bad_step else loss), grads

    monkeypatch.setattr(WindowNet, "loss_and_grads", exploding)
    out = tmp_path / "div"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=3")
    assert r.exit_code == 1
    assert f"epoch 2, step {bad_step}" in r.output.replace("\n", " ")
    assert "lower" in r.output
    _, meta = load_checkpoint(out / "last")
    assert meta["loop"]["epoch"] == 1


def test_logistic_head_trains_and_scores_one_type(tmp_path):
    out = tmp_path / "lec3"
    r = run("train", str(ROOT / "configs" / "lecture3.yaml"), "--out", out, "--quiet",
            "--set", "training.epochs=3")
    assert r.exit_code == 0, r.output
    line = metrics(out)[-1]
    assert set(line["dev_per_type_f1"]) == {"LOC"}
    assert max(m["dev_f1"] for m in metrics(out)) > 50.0


def test_conll2003_with_glove_reaches_the_dev_floor(tmp_path):
    """Two epochs of configs/conll2003.yaml as shipped (batches of 256, constrained Viterbi).
    Measured 2026-11-30: dev F1 90.20 after epoch 2 (seed 0); floor 88."""
    out = tmp_path / "conll"
    r = run("train", ROOT / "configs" / "conll2003.yaml", "--out", out, "--quiet",
            *conll_sets(dev=True), "--set", "training.epochs=2")
    assert r.exit_code == 0, r.output
    assert max(m["dev_f1"] for m in metrics(out)) >= 88.0


def test_tag_agrees_with_eval_predictions(sample_run, tmp_path):
    out, _ = sample_run
    pred = tmp_path / "pred.txt"
    assert run("eval", out / "best", DEV, "--predictions", pred).exit_code == 0
    tagged = tmp_path / "tagged.txt"
    r = run("tag", out / "best", DEV, "--input-format", "conll", "--output", tagged)
    assert r.exit_code == 0, r.output
    want = [(c[0], c[2]) for c in (line.split() for line in pred.read_text().splitlines()) if c]
    got = [(c[0], c[-1]) for c in (line.split() for line in tagged.read_text().splitlines())
           if c and c[0] != "-DOCSTART-"]  # token, gold columns kept, the tag appended
    assert got == want
    # plain tokens, one a line, to standard output
    plain = tmp_path / "plain.txt"
    plain.write_text("Karel\nVosk\nsaid\n\nhello\n")
    r = run("tag", out / "best", plain, "--input-format", "conll")
    assert r.exit_code == 0
    assert [line.split()[0] for line in r.stdout.splitlines() if line] == \
        ["Karel", "Vosk", "said", "hello"]
    assert r.stdout.count("\n\n") == 1  # the input's one blank line, and no more


def test_tag_of_an_empty_file_is_exit_2(sample_run, write):
    out, _ = sample_run
    r = run("tag", out / "best", write("e.txt", "\n\n"))
    assert r.exit_code == 2 and "empty" in r.output


def test_force_with_a_bad_data_file_keeps_the_old_run(tmp_path, write):
    out = tmp_path / "keep"
    assert run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=1"
               ).exit_code == 0
    before = (out / "metrics.jsonl").read_bytes()
    bad = write("bad_dev.txt", "Paris B-LOC\nis O O\n")
    r = run("train", SAMPLE, "--out", out, "--quiet", "--force", "--set", f"data.dev={bad}")
    assert r.exit_code == 2 and f"{bad}:2:" in r.output
    assert (out / "metrics.jsonl").read_bytes() == before and (out / "best").is_dir()


def test_divergence_in_epoch_1_says_there_is_no_last_and_prints_no_warnings(tmp_path):
    # A real overflow: relu units and an absurd SGD rate blow up in the first steps.
    out = tmp_path / "div"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "model.nonlinearity=relu",
            "--set", "training.optimizer.name=sgd", "--set", "training.optimizer.lr=1e30",
            "--set", "training.epochs=2")
    assert r.exit_code == 1, r.output
    assert "epoch 1, step" in r.output and "no last/ checkpoint" in r.output
    assert "holds" not in r.output
    assert "RuntimeWarning" not in r.output and "overflow" not in r.output
    assert not (out / "last").exists()


def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    # The last step of epoch 2 leaves an infinite bias while its loss was finite.
    n_tokens = read_conll(ROOT / "data" / "sample" / "train.txt").n_tokens
    last_step = 2 * math.ceil(n_tokens / 32)
    real_step = Optimizer.step
    calls = {"n": 0}

    def poisoning_step(self, params, grads, lr):
        real_step(self, params, grads, lr)
        calls["n"] += 1
        if calls["n"] == last_step:
            params["b1"][0] = np.inf

    monkeypatch.setattr(Optimizer, "step", poisoning_step)
    out = tmp_path / "inf"
    r = run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=3")
    assert r.exit_code == 1 and "b1 became non-finite" in r.output
    assert "holds epoch 1" in r.output
    _, meta = load_checkpoint(out / "last")
    assert meta["loop"]["epoch"] == 1


def test_resume_of_an_early_stopped_run(tmp_path):
    out = tmp_path / "es"
    common = ("--quiet", "--set", "data.test=null", "--set", "training.epochs=15")
    r = run("train", SAMPLE, "--out", out, *common, "--set", "training.patience=1")
    assert r.exit_code == 0 and "early stop" in r.output
    stopped = len(metrics(out))
    assert stopped < 15
    # Same patience: nothing to do, said in one line, nothing written.
    before = (out / "last" / "meta.json").read_bytes()
    r = run("train", SAMPLE, "--out", out, "--resume", *common, "--set", "training.patience=1")
    assert r.exit_code == 0
    assert r.output.count("\n") == 1 and "nothing to do" in r.output
    assert "training.patience" in r.output
    assert (out / "last" / "meta.json").read_bytes() == before
    # More patience: training goes on, and says why.
    r = run("train", SAMPLE, "--out", out, "--resume", *common, "--set", "training.patience=2")
    assert r.exit_code == 0, r.output
    assert "continuing the run that stopped early" in r.output
    assert len(metrics(out)) > stopped


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(tmp_path):
    out = tmp_path / "done"
    args = ("--quiet", "--set", "training.epochs=1")
    assert run("train", SAMPLE, "--out", out, *args).exit_code == 0
    r = run("train", SAMPLE, "--out", out, "--resume", *args)
    assert r.exit_code == 0
    assert r.output.strip().count("\n") == 0
    assert "nothing to do" in r.output and "training.epochs" in r.output
    r = run("train", SAMPLE, "--out", out, "--resume", "--quiet", "--set", "training.epochs=2")
    assert r.exit_code == 0 and [m["epoch"] for m in metrics(out)] == [1, 2]


def test_blas_threads_are_recorded_and_a_different_count_warns(tmp_path, monkeypatch):
    import nerwin.train as train_mod
    from nerwin.threads import blas_threads

    out = tmp_path / "t"
    assert run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=1"
               ).exit_code == 0
    _, meta = load_checkpoint(out / "last")
    assert meta["blas_threads"] == blas_threads()
    args = ("--resume", "--quiet", "--set", "training.epochs=2")
    monkeypatch.setattr(train_mod, "blas_threads", lambda: 7)
    r = run("train", SAMPLE, "--out", out, *args)
    assert r.exit_code == 0 and "warning" in r.output and "BLAS" in r.output
    assert "7" in r.output


def test_importing_nerwin_applies_the_one_thread_default():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("import nerwin, os, numpy; from nerwin.threads import blas_threads; "
            "print(os.environ.get('OPENBLAS_NUM_THREADS'), blas_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[0] == "1"
    assert out[1] in ("1", "None")  # None: a BLAS nerwin cannot ask
    # numpy loaded first: too late to choose, and nerwin does not pretend it did
    late = subprocess.run([sys.executable, "-c", "import numpy; " + code], env=env,
                          capture_output=True, text=True, check=True).stdout.split()
    assert late[0] == "None"


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam"])
def test_flat_buffers_reach_the_network(name):
    """The optimiser's first step moves the dense parameters into one flat buffer and points
    net.params at views of it; the network must read its weights from there. A few real steps
    on the sample corpus give, bit for bit, the losses and weights of updating each array in
    place (flat=False); a network that kept the arrays it was built with would see stale
    weights, and its losses would differ from the second step on."""
    from nerwin.config import load_config
    from nerwin.dataset import build_lexicon, read_split
    from nerwin.model import new_model
    from nerwin.optim import OPTIMIZERS
    from nerwin.windows import batches

    cfg = load_config(SAMPLE, [f"training.optimizer.name={name}", "model.dropout=0.25",
                               "training.optimizer.momentum=0.9"])
    corpus = read_split(cfg, cfg.data.train)
    runs = []
    for flat in (True, False):
        rng = np.random.default_rng(0)
        model = new_model(cfg, build_lexicon(cfg, corpus), rng)
        data, net = model.encode(corpus), model.net
        y = model.targets(data.labels)
        opt = OPTIMIZERS[name].from_config(dict(net.params), cfg.training.optimizer, flat=flat)
        losses = []
        for idx in list(batches(len(data), 64, rng))[:6]:
            loss, grads = net.loss_and_grads(data.rows(idx), y[idx], None, train=True, rng=rng)
            opt.step(net.params, grads, 0.05)
            losses.append(loss)
        assert (opt._flat is not None) is flat
        runs.append((losses, {k: v.copy() for k, v in net.params.items()}))
    (loss_flat, p_flat), (loss_plain, p_plain) = runs
    assert loss_flat == loss_plain
    assert len(set(loss_flat)) == len(loss_flat)  # the weights moved between steps
    for k in p_plain:
        assert np.array_equal(p_flat[k], p_plain[k]), k
