"""The spaCy component: doc.ents from nerwin's entities on a real spaCy pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

spacy = pytest.importorskip("spacy")

import nerwin  # noqa: E402
import nerwin.spacy_component  # noqa: E402, F401  (registers the factory)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("spacy") / "run"
    return nerwin.train(ROOT / "configs" / "sample.yaml", overrides={"training.epochs": 4},
                        out=out).best


def nerwin_tag_entities(model, lines, tmp_path):
    """Per line, (start, end, type, score) of `nerwin tag`'s entities, offsets in the line."""
    src = tmp_path / "in.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    dest = tmp_path / "out.jsonl"
    r = run_cli("tag", model, src, "--output-format", "jsonl", "--output", dest, "--quiet")
    assert r.exit_code == 0, r.output
    per_line: list[list[tuple[int, int, str, float]]] = [[] for _ in lines]
    pos = [0] * len(lines)
    for rec in map(json.loads, dest.read_text(encoding="utf-8").splitlines()):
        k = rec["line"] - 1
        base = lines[k].index(rec["text"], pos[k])  # the sentence's place in its line
        pos[k] = base + len(rec["text"])
        per_line[k] += [(base + e["start"], base + e["end"], e["type"], e["score"])
                        for e in rec["entities"]]
    return per_line


def test_conll2003_test_entities_equal_nerwin_tag_where_tokenisations_agree(
        model, shared_data, tmp_path):
    from nerwin.conll import read_conll
    from nerwin.tokenize import detokenize

    lines = [detokenize(s.tokens) for s in read_conll(shared_data("conll2003/test.txt"))
             .sentences]
    want = nerwin_tag_entities(model, lines, tmp_path)
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("nerwin", config={"model": str(model)})
    agree = disagree = 0
    for doc, ents in zip(nlp.pipe(lines, batch_size=64), want, strict=True):
        got = {(e.start_char, e.end_char): e for e in doc.ents}
        for a, b, typ, score in ents:
            if doc.char_span(a, b) is not None:  # both edges on spaCy token boundaries
                agree += 1
                span = got.pop((a, b))
                assert span.label_ == typ
                assert abs(span._.nerwin_score - score) <= 1.01e-4  # jsonl rounds to 4
            else:
                disagree += 1
        # every other spaCy entity is a realigned one (expanded to whole spaCy tokens)
        assert len(got) <= sum(doc.char_span(a, b) is None for a, b, _, _ in ents)
    s = comp.stats
    assert agree > 1000
    assert s["entities"] == agree + disagree
    assert s["exact"] == agree
    assert s["realigned"] + s["dropped"] == disagree
    # How often the two tokenisations disagree at an entity's edge on CoNLL-2003 test
    # (README "spaCy"): a few percent, not zero (spaCy splits what nerwin keeps whole).
    print(f"\nentities {s['entities']}, exact {s['exact']}, realigned {s['realigned']}, "
          f"dropped {s['dropped']}")
    assert 0 < disagree < 0.1 * (agree + disagree)


def test_alignment_modes_table(model):
    text = "Visitors from Prague-based Acme Corp. met Karel Vosk."
    ner = nerwin.load(model)
    ents = ner(text).entities
    nlp = spacy.blank("en")
    assert [t.text for t in nlp(text)][:4] == ["Visitors", "from", "Prague", "-"]
    results = {}
    for mode in ("expand", "contract", "strict"):
        nlp = spacy.blank("en")
        comp = nlp.add_pipe("nerwin", config={"model": str(model), "alignment_mode": mode})
        doc = nlp(text)
        results[mode] = ([(e.start_char, e.end_char, e.label_) for e in doc.ents],
                         dict(comp.stats))
    exact = [e for e in ents if spacy.blank("en")(text).char_span(e.start, e.end)]
    for mode, (spans, stats) in results.items():
        assert stats["exact"] == len(exact)
        assert stats["entities"] == len(ents)
        if mode == "strict":
            assert len(spans) == len(exact) and stats.get("realigned", 0) == 0
    with pytest.raises(ValueError, match="alignment_mode"):
        spacy.blank("en").add_pipe("nerwin", config={"model": str(model),
                                                     "alignment_mode": "nearest"})


def test_pipe_equals_call_and_scores_are_readable(model):
    texts = ["Karel Vosk visited Prague.", "", "Acme Corp. hired Jana Novak in Brno.",
             "nothing here"] * 3
    nlp = spacy.blank("en")
    nlp.add_pipe("nerwin", config={"model": str(model)})
    one = [[(e.start_char, e.end_char, e.label_, e._.nerwin_score) for e in nlp(t).ents]
           for t in texts]
    many = [[(e.start_char, e.end_char, e.label_, e._.nerwin_score) for e in d.ents]
            for d in nlp.pipe(texts, batch_size=5)]
    assert [[x[:3] for x in d] for d in one] == [[x[:3] for x in d] for d in many]
    for a, b in zip(one, many):
        for x, y in zip(a, b):
            assert abs(x[3] - y[3]) < 1e-6 and 0.0 <= x[3] <= 1.0
    doc = nlp(texts[2])
    assert doc.spans["nerwin"].attrs["scores"] == [e._.nerwin_score for e in doc.ents]


def test_to_disk_and_spacy_load_carry_the_model(model, tmp_path):
    own = tmp_path / "own"
    shutil.copytree(model, own)
    nlp = spacy.blank("en")
    nlp.add_pipe("nerwin", config={"model": str(own)})
    text = "Karel Vosk visited Prague with Acme Corp."
    before = [(e.text, e.label_, e._.nerwin_score) for e in nlp(text).ents]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(own)  # the saved pipeline must not need the original folder
    nlp2 = spacy.load(tmp_path / "pipeline")
    after = [(e.text, e.label_, e._.nerwin_score) for e in nlp2(text).ents]
    assert before == after and before
    nlp2.to_disk(tmp_path / "again")  # and a loaded pipeline saves again
    assert (tmp_path / "again" / "nerwin" / "model" / "meta.json").is_file()


def test_spacy_finds_the_factory_through_the_entry_point(model, tmp_path):
    """spacy.load of a saved pipeline in a fresh process that never imports nerwin: the
    factory comes from the spacy_factories entry point declared in setup.cfg (installed
    here as a minimal dist-info beside the checkout's code)."""
    import configparser

    nlp = spacy.blank("en")
    nlp.add_pipe("nerwin", config={"model": str(model)})
    nlp.to_disk(tmp_path / "pipeline")
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    eps = cfg["options.entry_points"]["spacy_factories"].strip()
    site = tmp_path / "site"
    info = site / "nerwin_entrypoints-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nerwin-entrypoints\n"
                                   "Version: 0.0\n")
    (info / "entry_points.txt").write_text(f"[spacy_factories]\n{eps}\n")
    code = ("import sys, spacy; nlp = spacy.load(sys.argv[1]); "
            "assert 'nerwin.spacy_component' in sys.modules; "
            "print([(e.text, e.label_) for e in nlp('Karel Vosk visited Prague.').ents])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "pipeline")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Karel Vosk" in r.stdout


def test_without_spacy_the_import_names_the_extra(monkeypatch):
    import importlib

    monkeypatch.delitem(sys.modules, "nerwin.spacy_component")
    for name in ("spacy", "spacy.language", "spacy.tokens", "spacy.util"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    with pytest.raises(nerwin.NerwinError, match=r"pip install 'nerwin\[spacy\]'"):
        importlib.import_module("nerwin.spacy_component")
