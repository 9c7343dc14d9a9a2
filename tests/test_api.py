"""The public Python API: nerwin.load / Tagger / Doc, nerwin.train, nerwin.evaluate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import docs_text, run_cli
from hypothesis import given
from hypothesis import strategies as st

import nerwin

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
TEST = ROOT / "data" / "sample" / "test.txt"
README = docs_text()  # README.md (Python API) + docs/*.md (spaCy is in docs/integrations.md)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return nerwin.train(SAMPLE, overrides={"training.epochs": 3},
                        out=tmp_path_factory.mktemp("api") / "run").best


@pytest.fixture(scope="module")
def ner(model_dir):
    return nerwin.load(model_dir)


def env_with_checkout() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_import_is_light_and_all_names_resolve():
    code = ("import sys, nerwin; assert 'numpy' not in sys.modules, 'numpy loaded'; "
            "assert sys.modules.get('nerwin.api') is None; "
            "[getattr(nerwin, n) for n in nerwin.__all__]; print(sorted(nerwin.__all__))")
    r = subprocess.run([sys.executable, "-c", code], env=env_with_checkout(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "'load'" in r.stdout and "'NerwinError'" in r.stdout
    with pytest.raises(AttributeError):
        nerwin.no_such_name  # noqa: B018


def test_python_c_prints_entities_whose_offsets_slice_the_text(model_dir):
    text = "Karel Vosk visited Prague."
    r = subprocess.run([sys.executable, "-c",
                        f"import nerwin; print(nerwin.load({str(model_dir)!r})({text!r})"
                        f".entities)"], env=env_with_checkout(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    found = re.findall(r"start=(\d+), end=(\d+), text='([^']*)'", r.stdout)
    assert found, r.stdout
    for a, b, t in found:
        assert text[int(a):int(b)] == t


def test_doc_fields(ner):
    text = "Karel Vosk visited Prague.\r\n\nThen Acme Corp. hired Jana Novak. Fine!\n"
    doc = ner(text)
    assert doc.text == text
    assert len(doc.tokens) == len(doc.offsets) == len(doc.tags)
    assert [text[a:b] for a, b in doc.offsets] == doc.tokens
    assert doc.entities and all(text[e.start:e.end] == e.text for e in doc.entities)
    assert all(0.0 <= e.score <= 1.0 for e in doc.entities)
    assert doc.sentences[0][0] == 0 and doc.sentences[-1][1] == len(doc.tokens)
    assert len(doc.sentences) == 3  # "Corp." never ends a sentence
    assert doc.to_json()["entities"][0]["type"] == doc.entities[0].type


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_offsets_slice_any_text(ner, text):
    doc = ner(text)
    assert [text[a:b] for a, b in doc.offsets] == doc.tokens
    for e in doc.entities:
        assert text[e.start:e.end] == e.text


def test_api_equals_nerwin_tag(ner, model_dir, tmp_path):
    """The API and the command tag alike (one path): same tokens, tags and entities."""
    import json

    lines = ["Karel Vosk visited Prague with Acme Corp.", "", "  EU rejects German call.",
             "Jana Novak (Brno) met J. Smith of Acme Inc. on Monday."]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    r = run_cli("tag", model_dir, src, "--output-format", "jsonl", "--output", out, "--quiet")
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    docs = list(ner.pipe(lines, batch_size=3))
    api_sents = [(d.tokens[a:b], d.tags[a:b]) for d in docs for a, b in d.sentences]
    assert api_sents == [(r["tokens"], r["tags"]) for r in recs]
    api_ents = [(e.type, e.text, round(e.score, 4)) for d in docs for e in d.entities]
    assert api_ents == [(e["type"], e["text"], e["score"]) for r in recs for e in r["entities"]]


def test_pipe_batches_equal_single_calls(ner):
    texts = [f"Karel Vosk {i} visited Prague with Acme Corp." for i in range(7)] + ["", "x"]
    one = [ner(t) for t in texts]
    for bs in (1, 2, 100):
        many = list(ner.pipe(iter(texts), batch_size=bs))
        assert [d.tags for d in many] == [d.tags for d in one]
        assert [[(e.start, e.end, e.type) for e in d.entities] for d in many] == \
            [[(e.start, e.end, e.type) for e in d.entities] for d in one]


def test_tag_tokens(ner):
    docs = ner.tag_tokens([["EU", "rejects", "German", "call"], [], ["Karel", "Vosk"]])
    assert docs[0].text == "EU rejects German call" and len(docs[0].tags) == 4
    assert docs[1].tokens == [] and docs[1].entities == []
    assert [docs[2].text[a:b] for a, b in docs[2].offsets] == ["Karel", "Vosk"]


def test_sharing_a_tagger_between_threads(ner):
    """4 threads tag the same batches at once, 3 times each: exactly what one thread gets
    (the same batches, so the same sums in the same order)."""
    texts = [f"Karel Vosk met Jana Novak {i} times in Brno, Acme Corp. said." * (1 + i % 3)
             for i in range(40)]
    want = [d.to_json() for d in ner.pipe(texts, batch_size=8)]
    got: dict[int, list] = {}
    errors = []

    def work(k: int) -> None:
        try:
            got[k] = [[d.to_json() for d in ner.pipe(texts, batch_size=8)] for _ in range(3)]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(run == want for k in range(4) for run in got[k])


@pytest.mark.parametrize("call, message", [
    (lambda n: nerwin.load(123), "expected a path"),
    (lambda n: nerwin.load("/no/such/model"), "no such checkpoint folder"),
    (lambda n: n(123), "expected a str"),
    (lambda n: list(n.pipe("one text")), "iterable of texts"),
    (lambda n: list(n.pipe(["a"], batch_size=0)), "batch_size"),
    (lambda n: n.tag_tokens([["a", ""]]), "sentence 0, token 1"),
    (lambda n: n.tag_tokens("abc"), "list of sentences"),
])
def test_errors_are_nerwin_errors(ner, call, message):
    with pytest.raises(nerwin.NerwinError, match=message):
        call(ner)


def test_train_and_evaluate_errors_have_the_cli_messages(tmp_path, model_dir):
    with pytest.raises(nerwin.NerwinError) as e:
        nerwin.train(SAMPLE, overrides={"model.hidden_size": 3}, out=tmp_path / "x")
    r = run_cli("train", SAMPLE, "--set", "model.hidden_size=3", "--out", tmp_path / "x")
    assert r.exit_code == 2 and r.output.strip() == f"Error: {e.value}"
    with pytest.raises(nerwin.NerwinError) as e:
        nerwin.evaluate(model_dir, tmp_path / "missing.txt")
    r = run_cli("eval", model_dir, tmp_path / "missing.txt")
    assert r.exit_code == 2 and r.output.strip() == f"Error: {e.value}"


def test_train_run_info_and_evaluate(tmp_path):
    lines: list[str] = []
    run = nerwin.train(str(SAMPLE), {"training.epochs": 2, "model.hidden": [20]},
                       tmp_path / "run", echo=lines.append)
    assert run.out_dir == tmp_path / "run" and run.best == tmp_path / "run" / "best"
    assert run.epochs == 2 and 1 <= run.best_epoch <= 2 and run.best_f1 > 0
    assert [x.split()[:2] for x in lines if x.startswith("epoch")] == [["epoch", "1/2"],
                                                                     ["epoch", "2/2"]]
    assert run.test_scores is not None
    scores = nerwin.evaluate(run.best, TEST)
    assert scores["f1"] == pytest.approx(run.test_scores["f1"])
    assert scores == nerwin.evaluate(nerwin.load(run.best), TEST)
    from nerwin.config import load_config

    again = nerwin.train(load_config(SAMPLE), {"training.epochs": 2, "model.hidden": [20]},
                         tmp_path / "run2")
    assert again.best_f1 == run.best_f1  # a Config works as well as its path


def test_nerwin_train_is_the_function_and_the_module():
    import nerwin.train as module

    assert callable(nerwin.train) and nerwin.train is module
    assert callable(module.train)  # the training loop's own function


def test_the_commands_go_through_the_api(monkeypatch, model_dir):
    import nerwin.api

    calls = []
    real = nerwin.api.load_model
    monkeypatch.setattr(nerwin.api, "load_model", lambda p: calls.append(p) or real(p))
    r = run_cli("tag", model_dir, TEST, "--input-format", "conll", "--quiet")
    assert r.exit_code == 0 and calls == [str(model_dir)]
    r = run_cli("eval", model_dir, TEST)
    assert r.exit_code == 0 and calls == [str(model_dir)] * 2


# ---------------------------------------------------------------- the README's examples


def _blocks(section: str) -> list[tuple[str, str]]:
    """(python code, the text block printed after it) of a section of README.md or docs/."""
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```\n\nprints\n\n```text\n(.*?)```", body, re.S)


def _same_output(got: str, want: str) -> None:
    """Equal line by line, with floats compared at the README's rounding (the figures of
    a seeded training on one BLAS thread; another CPU may round a last digit otherwise)
    and ``/…/`` standing for any path prefix."""
    g, w = got.strip().splitlines(), want.strip().splitlines()
    assert len(g) == len(w), got
    num = re.compile(r"\d+\.\d+")
    for a, b in zip(g, w):
        if "/…/" in b:
            b = b.split("/…/", 1)[1]
            path = b.split(" ")[0]
            assert path in a, (a, b)
            a = a[a.index(path):]
        assert num.sub("#", a) == num.sub("#", b), (a, b)
        for x, y in zip(num.findall(a), num.findall(b)):
            assert abs(float(x) - float(y)) <= 0.02, (a, b)


@pytest.mark.parametrize("section", ["Python API", "spaCy"])
def test_readme_python_examples_run_as_written(tmp_path, section):
    """The README's Python blocks, run in a copy of the checkout after what `make demo`
    runs, print what the README says they print."""
    if section == "spaCy":
        pytest.importorskip("spacy")
    import shutil

    blocks = _blocks(section)
    assert blocks, section
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    demo = [line.split("$(BIN)/", 1)[1] for line in
            (ROOT / "Makefile").read_text().splitlines() if "$(BIN)/nerwin train" in line]
    env = {**env_with_checkout(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if section == "spaCy":
        # spaCy finds the factory through the entry point of an installed nerwin; here the
        # checkout's setup.cfg entry point, installed as a minimal dist-info.
        import configparser

        cfg = configparser.ConfigParser()
        cfg.read(ROOT / "setup.cfg")
        info = tmp_path / "site" / "nerwin_entrypoints-0.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nerwin-entrypoints\n"
                                       "Version: 0.0\n")
        (info / "entry_points.txt").write_text(
            "[spacy_factories]\n" + cfg["options.entry_points"]["spacy_factories"] + "\n")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "site"), str(ROOT)])
    r = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(demo) + " --quiet > /dev/null"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for code, printed in blocks:
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        _same_output(r.stdout, printed)
