"""The command line: help, version, `nerwin data`, error exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli as run

from nerwin import __version__
from nerwin.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = ROOT / "data" / "sample"



def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["gradcheck"], ["data"],
                                 ["config", "show"]])
def test_help_for_every_command(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Usage:" in r.output


def test_options_have_help_text():
    import click

    def walk(cmd):
        yield cmd
        for sub in getattr(cmd, "commands", {}).values():
            yield from walk(sub)

    for cmd in walk(cli):
        for p in cmd.params:
            if isinstance(p, click.Option):
                assert p.help, f"{cmd.name} {p.opts} has no help text"


def test_data_report_text_and_json():
    train = SAMPLE_DIR / "train.txt"
    r = run("data", train)
    assert r.exit_code == 0, r.output
    assert "sentences" in r.output and "scheme iob2" in r.output
    j = json.loads(run("data", train, SAMPLE_DIR / "dev.txt", "--json").output)
    assert [f["file"] for f in j["files"]] == [str(train), str(SAMPLE_DIR / "dev.txt")]
    s = j["files"][0]
    assert s["tokens"] == sum(1 for line in train.read_text().splitlines()
                              if line and not line.startswith("-DOCSTART-"))
    assert set(s["entities_per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    assert s["longest_sentence"]["tokens"] >= 1


def test_data_with_config_reports_vocabulary_and_coverage(write):
    vec = write("v.txt", "paris 0.1 0.2\nis 0.3 0.4\n")
    train = write("t.txt", "Paris B-LOC\nis O\nnice O\n")
    cfg = write("c.yaml", f"data:\n  train: {train}\nfeatures:\n  vectors: {vec}\n  dim: 2\n")
    r = run("data", train, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert j["vocabulary"]["words"] == 3 + 3
    cov = j["vocabulary"]["coverage_percent"]
    assert cov["exact"] == pytest.approx(66.67) and cov["missing"] == pytest.approx(33.33)
    text = run("data", train, "--config", cfg).output
    assert "exact 66.67 %" in text
    assert j["files"][0]["entities_seen_in_train_percent"] == 100.0


def test_data_reports_entities_seen_in_train(write):
    train = write("t.txt", "Paris B-LOC\nis O\n\nNew B-LOC\nYork I-LOC\n")
    dev = write("d.txt", "Paris B-LOC\nand O\nNew B-LOC\nHaven I-LOC\n\nYork B-LOC\n")
    cfg = write("c.yaml", f"data:\n  train: {train}\n")
    j = json.loads(run("data", dev, "--config", cfg, "--json").output)
    # Paris seen; "New Haven" and "York" (alone) not: 1 of 3
    assert j["files"][0]["entities_seen_in_train_percent"] == pytest.approx(33.33)


def test_data_on_a_bad_file_is_exit_2(write):
    p = write("bad.txt", "a O\nb B-PER X\n")
    r = run("data", p)
    assert r.exit_code == 2 and f"{p}:2:" in r.output and "Traceback" not in r.output


def test_missing_data_file(tmp_path):
    r = run("data", tmp_path / "nope.txt")
    assert r.exit_code == 2 and "no such file" in r.output


def test_unknown_command_is_usage_error():
    assert run("trian").exit_code == 2


def test_resume_and_force_exclude_each_other():
    r = run("train", ROOT / "configs" / "sample.yaml", "--resume", "--force")
    assert r.exit_code == 2 and "exclude" in r.output
