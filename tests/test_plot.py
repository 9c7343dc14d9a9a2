"""Pictures: learning curves and the confusion heatmap, checked as figure objects."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import run_cli as run

from nerwin.errors import NerwinError
from nerwin.plot import confusion_figure, learning_curves, read_metrics, save_figure

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"



def record(epoch, f1, best, lr=0.01):
    return {"epoch": epoch, "step": 10 * epoch, "train_loss": 1.0 / epoch, "lr": lr,
            "dev_loss": 0.5 + 0.01 * epoch, "dev_precision": f1, "dev_recall": f1,
            "dev_f1": f1, "dev_per_type_f1": {"LOC": f1 + 1, "PER": f1 - 1},
            "tokens_per_s": 1000.0, "seconds": 1.0, "best": best}


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "myrun"
    d.mkdir()
    recs = [record(1, 50.0, True), record(2, 70.0, True, 0.005), record(3, 65.0, False, 0.0025),
            record(4, 60.0, False, 0.00125)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def test_learning_curves_figure(run_dir):
    fig = learning_curves(read_metrics(run_dir), title="t")
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == ["Loss", "Dev entity F1", "Learning rate"]
    labels = {ln.get_label(): ln for a in axes for ln in a.get_lines()}
    for name in ("train loss", "dev loss", "dev F1 (all)", "LOC", "PER", "learning rate"):
        assert list(labels[name].get_xdata()) == [1, 2, 3, 4], name  # one point per epoch
    assert list(labels["dev F1 (all)"].get_ydata()) == [50.0, 70.0, 65.0, 60.0]
    assert list(labels["learning rate"].get_ydata()) == [0.01, 0.005, 0.0025, 0.00125]
    star = labels["best: epoch 2, F1 70.00"]  # the model in best/ is marked
    assert list(star.get_xdata()) == [2] and list(star.get_ydata()) == [70.0]
    for a in axes:  # a vertical line at the best epoch on every panel
        assert any(list(ln.get_xdata()) == [2, 2] for ln in a.get_lines())


def test_resumed_epochs_and_torn_last_line(run_dir):
    p = run_dir / "metrics.jsonl"
    p.write_text(p.read_text() + json.dumps(record(4, 61.0, False)) + "\n" + '{"epo')
    recs = read_metrics(run_dir)
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4] and recs[-1]["dev_f1"] == 61.0
    p.write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(NerwinError, match=r"metrics.jsonl:2: not a metrics record"):
        read_metrics(run_dir)


def test_plot_command_png_svg_and_errors(run_dir, tmp_path):
    r = run("plot", run_dir)
    assert r.exit_code == 0, r.output
    assert (run_dir / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    svg = tmp_path / "c.svg"
    assert run("plot", run_dir, "--output", svg).exit_code == 0
    assert "<svg" in svg.read_text()[:500]
    r = run("plot", run_dir, "--output", tmp_path / "c.jpg")
    assert r.exit_code == 2 and "expected a file name ending in .png or .svg" in r.output
    r = run("plot", tmp_path)
    assert r.exit_code == 2 and "metrics.jsonl: no such file" in r.output
    r = run("plot", run_dir, "--output", tmp_path / "missing" / "c.png")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_without_matplotlib_one_line_and_exit_2(run_dir, monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    r = run("plot", run_dir)
    assert r.exit_code == 2
    assert r.output.strip() == "Error: pictures need matplotlib: pip install 'nerwin[plot]'"
    assert not (run_dir / "learning_curves.png").exists()


def test_confusion_figure():
    conf = {"labels": ["O", "B-PER", "I-PER"], "matrix": [[8, 2, 0], [1, 3, 0], [0, 0, 5]]}
    fig = confusion_figure(conf)
    ax = fig.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == conf["labels"]
    assert [t.get_text() for t in ax.get_yticklabels()] == conf["labels"]
    assert ax.get_xlabel() == "predicted tag" and ax.get_ylabel() == "gold tag"
    shares = ax.get_images()[0].get_array()
    assert shares.shape == (3, 3) and shares[0][1] == pytest.approx(0.2)
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "3", "5", "8"]


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_the_same_figure_is_the_same_bytes(tmp_path, suffix):
    """No date, and SVG element ids from a fixed salt (matplotlib's default is random)."""
    conf = {"labels": ["O", "B-PER"], "matrix": [[8, 2], [1, 3]]}
    paths = [tmp_path / f"{k}.{suffix}" for k in range(2)]
    for p in paths:
        save_figure(confusion_figure(conf, "t"), p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_save_is_atomic(tmp_path, monkeypatch):
    fig = confusion_figure({"labels": ["O"], "matrix": [[1]]})
    target = tmp_path / "x.png"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("nerwin.plot.atomic_write_bytes", boom)
    with pytest.raises(OSError):
        save_figure(fig, target)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_eval_confusion_and_conlleval(tmp_path):
    out = tmp_path / "run"
    assert run("train", SAMPLE, "--out", out, "--quiet", "--set", "training.epochs=2",
               "--set", "data.test=null").exit_code == 0
    pic = tmp_path / "conf.png"
    r = run("eval", out / "best", TEST, "--confusion", pic, "--conlleval")
    assert r.exit_code == 0, r.output
    assert pic.read_bytes()[:4] == b"\x89PNG"
    lines = r.output.splitlines()
    scores = json.loads(run("eval", out / "best", TEST, "--json").output)
    c = scores["counts"]
    assert lines[0] == (f"processed {c['tokens']} tokens with {c['gold']} phrases; "
                        f"found: {c['predicted']} phrases; correct: {c['correct']}.")
    assert lines[1] == (f"accuracy: {scores['token_accuracy']:6.2f}%; precision: "
                        f"{scores['precision']:6.2f}%; recall: {scores['recall']:6.2f}%; "
                        f"FB1: {scores['f1']:6.2f}")
    t = scores["per_type"]["LOC"]
    assert f"{'LOC':>17}: precision: {t['precision']:6.2f}%; recall: {t['recall']:6.2f}%; " \
           f"FB1: {t['f1']:6.2f}  {t['predicted']}" in lines
    assert len(lines) == 2 + len(scores["per_type"])
    r = run("eval", out / "best", TEST, "--confusion", tmp_path / "c.gif")
    assert r.exit_code == 2 and ".png or .svg" in r.output
    assert run("eval", out / "best", TEST, "--json", "--conlleval").exit_code == 2


def test_run_without_dev_data(tmp_path):
    recs = [{"epoch": e, "step": e, "train_loss": 1.0 / e, "lr": 0.1, "tokens_per_s": 1.0,
             "seconds": 1.0, "best": True} for e in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    fig = learning_curves(read_metrics(tmp_path))
    loss, f1, lr = fig.get_axes()
    assert [ln.get_label() for ln in loss.get_lines() if not ln.get_label().startswith("_")] \
        == ["train loss"]
    assert [t.get_text() for t in f1.texts] == ["no dev data"]
    assert any(list(ln.get_xdata()) == [3, 3] for ln in lr.get_lines())  # last = best/
