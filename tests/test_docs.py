"""The README and docs/ stay true: the config table (docs/config.md) is what `nerwin config
keys` prints, the README opens with the two commands, and the shipped configs load."""

from __future__ import annotations

from pathlib import Path

from conftest import docs_text

from nerwin.config import describe_keys, keys_markdown, load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = docs_text()  # README.md + docs/*.md


def test_readme_config_table_is_generated_one():
    assert keys_markdown() in (ROOT / "docs" / "config.md").read_text(encoding="utf-8"), \
        "run `nerwin config keys` and paste it into docs/config.md"


def test_readme_opens_with_demo_and_test():
    first_block = README.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_issue_public_keys_exist():
    keys = {k for k, _, _ in describe_keys()}
    public = {"data.train", "data.dev", "data.test", "features.window", "features.vectors",
              "features.freeze", "model.hidden", "model.nonlinearity", "model.init",
              "model.head", "training.epochs", "training.batch_size",
              "training.optimizer.name", "training.optimizer.lr", "training.schedule.name",
              "training.l2", "training.seed", "output.dir"}
    assert public <= keys


def test_shipped_configs_load_with_their_files():
    for name in ("sample.yaml", "lecture3.yaml"):
        cfg = load_config(ROOT / "configs" / name)  # data files exist in the checkout
        assert cfg.data.train is not None and cfg.data.train.is_file()
    cfg = load_config(ROOT / "configs" / "conll2003.yaml", check_files=False)
    assert cfg.features.window == 2 and cfg.model.hidden == (300,)
    assert cfg.features.vectors is not None and cfg.training.optimizer.name == "adam"
    best = load_config(ROOT / "configs" / "conll2003_best.yaml", check_files=False)
    assert best.model.head == "crf"
    for key in ("train", "dev", "test"):  # the same data paths as the baseline
        assert getattr(best.data, key) == getattr(cfg.data, key)
    assert best.features.vectors == cfg.features.vectors


def test_derivations_name_functions_that_exist():
    import re

    from nerwin.nn import blocks, crf, heads, layers, network, output, parts, tables

    text = (ROOT / "docs" / "derivations.md").read_text(encoding="utf-8")
    modules = {"layers": layers, "heads": heads, "network": network, "crf": crf,
               "tables": tables, "blocks": blocks, "output": output, "parts": parts}
    named = [(m, a) for m, a in re.findall(
        r"`(layers|heads|network|crf|tables|blocks|output|parts)\.([A-Za-z_.*]+)`", text)
             if a != "py"]  # `heads.py` is the file
    assert len(named) >= 5
    assert sum(m == "crf" for m, _ in named) >= 5
    for mod, attr in named:
        obj = modules[mod]
        for part in attr.replace("*_forward", "relu_forward").replace(
                "*_backward", "relu_backward").split("."):
            obj = getattr(obj, part)  # AttributeError names what the doc got wrong
    for fn in re.findall(r"`(softmax_xent_backward|embedding_backward)`", text):
        assert hasattr(heads, fn) or hasattr(layers, fn)


def test_the_tour_runs_after_make_demo(tmp_path):
    """The tour's commands, in a copy of the checkout, after what `make demo` runs."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    demo = [line.split("$(BIN)/", 1)[1] for line in (ROOT / "Makefile").read_text().splitlines()
            if "$(BIN)/nerwin train" in line]
    tour = README.split("## A tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    script = "\n".join(["set -e", *demo, tour, tour])  # and the tour runs twice
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]


def test_pytest_reports_why_tests_skip():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "-rs" in cfg["tool:pytest"].get("addopts", "").split()


def test_readme_documents_every_command_and_option():
    import click

    from nerwin.cli import cli

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, cmd in walk(cli, []):
        if path:
            assert f"nerwin {' '.join(path)}" in README, path  # the commands table
        for p in cmd.params:
            if isinstance(p, click.Option):
                for opt in p.opts:
                    if opt.startswith("--") and opt != "--help":
                        assert opt in DOCS, f"{' '.join(path)} {opt}"


def test_readme_picture_is_small_and_present():
    pic = ROOT / "docs" / "learning_curves.png"
    assert "](docs/learning_curves.png)" in README
    assert pic.read_bytes()[:4] == b"\x89PNG" and pic.stat().st_size < 150_000


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (outside code blocks)."""
    import re

    out, inside = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and re.match(r"#{1,6} ", line):
            out.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return out


def test_links_between_readme_and_docs_resolve():
    """The reference moved from README.md to docs/: every relative link of README.md and of
    docs/*.md names a file that exists and, for a Markdown page, a heading it has."""
    import re

    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 8, "README.md links the docs/ pages"
    readme_links = set(re.findall(r"\]\((docs/[^)#]+)", README))
    assert {f"docs/{p.name}" for p in pages[1:]} <= readme_links
    checked = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            assert dest.exists(), f"{page.name}: {target}"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest.read_text(encoding="utf-8")), \
                    f"{page.name}: {target}"
            checked += 1
    assert checked >= 30
