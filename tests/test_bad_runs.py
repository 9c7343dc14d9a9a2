"""Bad and odd run directories, checkpoints, resume/force combinations and output paths.

Each case of the table is driven through the command line and must end with its exit code
(2 for what the user gave), exactly one ``Error:`` line naming the path or key, no
traceback, and nothing changed on disk: every file, folder and symlink of the case's folder
is compared before and after, so nothing of the user's (nor of an old run) is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli as run
from conftest import snapshot

from nerwin import atomic
from nerwin import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "configs" / "sample.yaml"
DEV = ROOT / "data" / "sample" / "dev.txt"
ONE = ("--quiet", "--set", "training.epochs=1")



@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished one-epoch run of the sample config (copied into each case)."""
    out = tmp_path_factory.mktemp("base") / "run"
    r = run("train", SAMPLE, "--out", out, *ONE)
    assert r.exit_code == 0, r.output
    return out


def edit_meta(folder: Path, change: Callable[[dict], None], rehash: bool = False) -> None:
    path = folder / "meta.json"
    meta = json.loads(path.read_text())
    change(meta)
    if rehash:  # a careful forger: the meta hash matches, the contents are still wrong
        meta["meta_sha256"] = ckpt.meta_sha256(meta)
    path.write_text(json.dumps(meta))


def npz_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def write_npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)


def huge_header(folder: Path, name: str) -> None:
    """Rewrite member ``name`` with a header claiming 10^12 float32s, its data unchanged."""
    import io

    members = npz_members(folder / "params.npz")
    fh = io.BytesIO(members[name + ".npy"])
    np.lib.format.read_magic(fh)
    np.lib.format.read_array_header_1_0(fh)
    data = fh.read()
    out = io.BytesIO()  # magic string and header, as numpy writes them
    np.lib.format.write_array_header_1_0(
        out, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    members[name + ".npy"] = out.getvalue() + data
    write_npz(folder / "params.npz", members)


def truncate(path: Path, keep: float | int) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep) if isinstance(keep, float) else keep])


# --- the table ---------------------------------------------------------------------------
# A case: (id, setup, exit code). setup(case_dir, run_dir, monkeypatch) prepares the case
# folder (run_dir is a copy of a finished run inside it) and returns (argv, text that the
# one error line must contain).

Setup = Callable[[Path, Path, pytest.MonkeyPatch], tuple[list, str]]


def force(r: Path, *extra) -> list:
    return ["train", SAMPLE, "--out", r, "--force", *ONE, *extra]


def fresh(r: Path, *extra) -> list:
    return ["train", SAMPLE, "--out", r, *ONE, *extra]


def resume(r: Path, *extra) -> list:
    return ["train", SAMPLE, "--out", r, "--resume", "--quiet", "--set", "training.epochs=2",
            *extra]


def _user_best(t, r, mp):
    (r / "best" / "thesis.tex").write_text("my thesis")
    return force(r), "thesis.tex"


def _user_config_only(t, r, mp):
    u = t / "mine"
    u.mkdir()
    (u / "config.yaml").write_text("my: config\n")
    return force(u), "config.yaml"


def _user_best_folder_only(t, r, mp):
    u = t / "mine"
    (u / "best").mkdir(parents=True)
    (u / "best" / "thesis.tex").write_text("chapter 1")
    return force(u), "thesis.tex"


def _no_marker(t, r, mp):
    (r / ".nerwin-run").unlink()
    return force(r), "config.yaml"


def _forged_marker(t, r, mp):
    (r / ".nerwin-run").write_text("{not json")
    return force(r), ".nerwin-run"


def _marker_other_format(t, r, mp):
    (r / ".nerwin-run").write_text('{"format": "someone-else"}')
    return force(r), ".nerwin-run"


def _symlink(name: str, target: str, mode: str = "force") -> Setup:
    def setup(t, r, mp):
        outside = t / "outside"
        outside.mkdir(exist_ok=True)
        (outside / "precious.txt").write_text("keep me")
        p = r / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()
        p.symlink_to(outside / target if target else t / "nowhere")
        argv = {"force": force, "fresh": fresh, "resume": resume}[mode](r)
        return argv, name

    return setup


def _extra(name: str, is_dir: bool = False, mode: str = "force") -> Setup:
    def setup(t, r, mp):
        p = r / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            p.mkdir()
            (p / "x.txt").write_text("x")
        else:
            p.write_text("user data")
        return {"force": force, "fresh": fresh}[mode](r), Path(name).name

    return setup


def _best_is_file(t, r, mp):
    shutil.rmtree(r / "best")
    (r / "best").write_text("not a folder")
    return force(r), "best"


def _best_other_meta(t, r, mp):
    (r / "best" / "meta.json").write_text('{"format": "other"}')
    return force(r), "best"


def _best_empty(t, r, mp):
    shutil.rmtree(r / "best")
    (r / "best").mkdir()
    return force(r), "best"


def _best_without_params(t, r, mp):
    (r / "best" / "params.npz").unlink()
    return force(r), "lacks params.npz"


def _metrics_is_dir(t, r, mp):
    (r / "metrics.jsonl").unlink()
    (r / "metrics.jsonl").mkdir()
    return force(r), "metrics.jsonl"


def _tmp_sibling_user_file(t, r, mp):
    d = r / ".best.tmp-1-aa"
    d.mkdir()
    (d / "notes.md").write_text("mine")
    return force(r), ".best.tmp-1-aa"


def _home(mode: str) -> Setup:
    def setup(t, r, mp):
        home = t / "home"
        home.mkdir()
        (home / ".bashrc").write_text("# mine")
        mp.setenv("HOME", str(home))
        return {"force": force, "fresh": fresh}[mode](home), "refusing"

    return setup


def _root(mode: str) -> Setup:
    def setup(t, r, mp):
        return {"force": force, "fresh": fresh}[mode](Path("/")), "refusing"

    return setup


def _home_by_config(t, r, mp):
    home = t / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    mp.setenv("HOME", str(home))
    return ["train", SAMPLE, *ONE, "--set", "output.dir=\"~\"", "--force"], "refusing"


def _root_by_config(t, r, mp):
    return ["train", SAMPLE, *ONE, "--set", "output.dir=/", "--force"], "refusing"


def _user_folder_fresh(t, r, mp):
    u = t / "docs"
    u.mkdir()
    (u / "notes.txt").write_text("mine")
    return fresh(u), "notes.txt"


def _user_config_fresh(t, r, mp):
    u = t / "mine"
    u.mkdir()
    (u / "config.yaml").write_text("mine: 1\n")
    return fresh(u), "config.yaml"


def _existing_run(t, r, mp):
    return fresh(r), "--resume"


def _below_file(depth: int) -> Setup:
    def setup(t, r, mp):
        f = t / "afile"
        f.write_text("x")
        return fresh(f.joinpath(*["sub"] * depth)), "afile"

    return setup


def _out_is_file(t, r, mp):
    f = t / "afile"
    f.write_text("x")
    return fresh(f), "afile"


def _loop(mode: str) -> Setup:
    def setup(t, r, mp):
        (t / "loop1").symlink_to(t / "loop2")
        (t / "loop2").symlink_to(t / "loop1")
        return {"force": force, "fresh": fresh, "resume": resume}[mode](t / "loop1"), "loop1"

    return setup


def _loop_below(t, r, mp):
    (t / "loop1").symlink_to(t / "loop2")
    (t / "loop2").symlink_to(t / "loop1")
    return fresh(t / "loop1" / "run"), "loop1"


def _readonly_parent(t, r, mp):
    def no_mkdir(self, *a, **kw):
        raise PermissionError(13, "Permission denied", str(self))

    mp.setattr(Path, "mkdir", no_mkdir)
    return fresh(t / "ro" / "run"), "ro"


def _readonly_marker(t, r, mp):
    def deny(path):
        raise PermissionError(13, "Permission denied", str(path))

    mp.setattr(atomic, "create_new", deny)  # no file can be created in the folder
    (t / "new").mkdir()  # a real read-only folder could not be created either
    return fresh(t / "new"), "new"


# resume


def _resume_nothing(t, r, mp):
    return resume(t / "empty"), "nothing to resume"


def _user_file_in_last(t, r, mp):
    (r / "last" / "thesis.tex").write_text("mine")
    return resume(r), "thesis.tex"


def _resume_forged_marker(t, r, mp):
    (r / ".nerwin-run").write_text("someone's notes")
    return resume(r), ".nerwin-run"


def _resume_and_force(t, r, mp):
    return ["train", SAMPLE, "--out", r, "--resume", "--force"], "exclude"


def _meta_edit(folder: str, change: Callable[[dict], None], text: str, rehash=False,
               cmd: str = "resume") -> Setup:
    def setup(t, r, mp):
        edit_meta(r / folder, change, rehash)
        if cmd == "resume":
            return resume(r), text
        return ["eval", r / folder, DEV], text

    return setup


def _set_nonlinearity(m):
    m["config"]["model"]["nonlinearity"] = "relu"


def _params_edit(folder: str, how: Callable[[Path], None], text: str, cmd="resume") -> Setup:
    def setup(t, r, mp):
        how(r / folder)
        if cmd == "resume":
            return resume(r), text
        return ["eval", r / folder, DEV], text

    return setup


def _drop_member(name: str) -> Callable[[Path], None]:
    def how(folder):
        members = npz_members(folder / "params.npz")
        del members[name + ".npy"]
        write_npz(folder / "params.npz", members)

    return how


def _add_member(folder):
    members = npz_members(folder / "params.npz")
    members["intruder.npy"] = members["b1.npy"]
    write_npz(folder / "params.npz", members)


def _retype(folder):
    arrays = dict(np.load(folder / "params.npz"))
    arrays["b1"] = arrays["b1"].astype(np.float64)
    np.savez(folder / "params.npz", **arrays)


def _resume_changed_config(t, r, mp):
    return resume(r, "--set", "model.hidden=[7]"), "model.hidden"


def _resume_data_error(t, r, mp):
    bad = t / "bad_dev.txt"
    bad.write_text("Paris B-LOC\nis O O\n")
    return resume(r, "--set", f"data.dev={bad}"), "bad_dev.txt:2"


# outputs of eval and tag


def _out_file(cmd: str, where: str) -> Setup:
    opt = "--predictions" if cmd == "eval" else "--output"

    def setup(t, r, mp):
        if where == "missing":
            target = t / "no" / "such" / "pred.txt"
        elif where == "below_file":
            (t / "afile").write_text("x")
            target = t / "afile" / "pred.txt"
        elif where == "is_dir":
            target = t / "adir"
            target.mkdir()
        elif where == "symlink":
            (t / "real.txt").write_text("mine")
            target = t / "link.txt"
            target.symlink_to(t / "real.txt")
        else:  # read-only folder, simulated: the write itself is refused
            def deny(path):
                raise PermissionError(13, "Permission denied", str(path))

            mp.setattr(atomic, "create_new", deny)
            target = t / "pred.txt"
        return [cmd, r / "best", DEV, opt, target], opt

    return setup


def _eval_missing_model(t, r, mp):
    return ["eval", t / "nope", DEV], "nope"


def _eval_model_loop(t, r, mp):
    (t / "m1").symlink_to(t / "m2")
    (t / "m2").symlink_to(t / "m1")
    return ["eval", t / "m1", DEV], "m1"


# checks that must come before --force touches the run


def _bad_vectors(t, r, mp):
    vec = t / "vec.txt"
    vec.write_text("the 0.1 0.2\nof 0.3\n")
    return force(r, "--set", f"features.vectors={vec}", "--set", "features.dim=2"), "vec.txt"


def _positive_absent(t, r, mp):
    return force(r, "--set", "model.head=logistic", "--set", "model.positive=FOO"), \
        "model.positive"


def _unseen_dev_tag(t, r, mp):
    dev = t / "dev.txt"
    dev.write_text("Paris B-LOC\nrocks B-ROCK\n")
    return force(r, "--set", f"data.dev={dev}"), "dev.txt:2"


def _unseen_test_tag(t, r, mp):
    test = t / "test.txt"
    test.write_text("Paris B-LOC\nrocks B-ROCK\n")
    return force(r, "--set", f"data.test={test}"), "test.txt:2"


def _missing_train(t, r, mp):
    return force(r, "--set", f"data.train={t / 'nope.txt'}"), "data.train"


def _bad_train(t, r, mp):
    bad = t / "train.txt"
    bad.write_text("Paris B-LOC\nis O O\n")
    return force(r, "--set", f"data.train={bad}"), "train.txt:2"


CASES: list[tuple[str, Setup, int]] = [
    # --force deletes only what is provably nerwin's
    ("force-user-file-in-best", _user_best, 2),
    ("force-user-config-only", _user_config_only, 2),
    ("force-user-best-folder-only", _user_best_folder_only, 2),
    ("force-run-without-marker", _no_marker, 2),
    ("force-forged-marker", _forged_marker, 2),
    ("force-marker-of-another-format", _marker_other_format, 2),
    ("force-best-symlink-to-folder", _symlink("best", "precious.txt"), 2),
    ("force-best-dangling-symlink", _symlink("best", ""), 2),
    ("force-last-symlink", _symlink("last", "precious.txt"), 2),
    ("force-metrics-symlink", _symlink("metrics.jsonl", "precious.txt"), 2),
    ("force-metrics-dangling-symlink", _symlink("metrics.jsonl", ""), 2),
    ("force-config-symlink", _symlink("config.yaml", "precious.txt"), 2),
    ("force-test-scores-symlink", _symlink("test_scores.json", "precious.txt"), 2),
    ("force-marker-symlink", _symlink(".nerwin-run", "precious.txt"), 2),
    ("force-user-notes-in-run", _extra("notes.txt"), 2),
    ("force-user-folder-in-run", _extra("data", is_dir=True), 2),
    ("force-extra-file-in-last", _extra("last/README"), 2),
    ("force-subfolder-in-last", _extra("last/sub", is_dir=True), 2),
    ("force-best-is-a-file", _best_is_file, 2),
    ("force-best-meta-not-nerwin", _best_other_meta, 2),
    ("force-best-empty-folder", _best_empty, 2),
    ("force-best-without-params", _best_without_params, 2),
    ("force-metrics-is-a-folder", _metrics_is_dir, 2),
    ("force-tmp-sibling-with-user-file", _tmp_sibling_user_file, 2),
    ("force-home", _home("force"), 2),
    ("force-root", _root("force"), 2),
    ("force-root-by-config", _root_by_config, 2),
    ("force-home-by-config", _home_by_config, 2),
    # a new run goes only into a new, empty or nerwin folder
    ("fresh-home", _home("fresh"), 2),
    ("fresh-root", _root("fresh"), 2),
    ("fresh-user-folder", _user_folder_fresh, 2),
    ("fresh-user-config", _user_config_fresh, 2),
    ("fresh-existing-run", _existing_run, 2),
    ("fresh-dangling-metrics-symlink", _symlink("metrics.jsonl", "", "fresh"), 2),
    ("fresh-out-is-a-file", _out_is_file, 2),
    ("fresh-out-below-a-file", _below_file(1), 2),
    ("fresh-out-deep-below-a-file", _below_file(3), 2),
    ("fresh-symlink-loop", _loop("fresh"), 2),
    ("force-symlink-loop", _loop("force"), 2),
    ("fresh-below-a-symlink-loop", _loop_below, 2),
    ("fresh-read-only-parent", _readonly_parent, 2),
    ("fresh-unwritable-folder", _readonly_marker, 2),
    # checks before --force touches anything
    ("force-bad-vectors-file", _bad_vectors, 2),
    ("force-positive-absent", _positive_absent, 2),
    ("force-unseen-dev-tag", _unseen_dev_tag, 2),
    ("force-unseen-test-tag", _unseen_test_tag, 2),
    ("force-missing-train-file", _missing_train, 2),
    ("force-bad-train-file", _bad_train, 2),
    # resume
    ("resume-without-a-run", _resume_nothing, 2),
    ("resume-and-force", _resume_and_force, 2),
    ("resume-symlink-loop", _loop("resume"), 2),
    ("resume-last-symlink", _symlink("last", "precious.txt", "resume"), 2),
    ("resume-metrics-symlink", _symlink("metrics.jsonl", "precious.txt", "resume"), 2),
    ("resume-metrics-dangling-symlink", _symlink("metrics.jsonl", "", "resume"), 2),
    ("resume-config-symlink", _symlink("config.yaml", "precious.txt", "resume"), 2),
    ("resume-best-symlink", _symlink("best", "precious.txt", "resume"), 2),
    ("resume-forged-marker", _resume_forged_marker, 2),
    ("resume-user-file-in-last", _user_file_in_last, 2),
    ("resume-edited-words", _meta_edit("last", lambda m: m["vocabs"]["word"].reverse(),
                                       "meta_sha256"), 2),
    ("resume-edited-tags", _meta_edit("last", lambda m: m["tags"].reverse(),
                                      "meta_sha256"), 2),
    ("resume-edited-nonlinearity", _meta_edit("last", _set_nonlinearity, "meta_sha256"), 2),
    ("resume-edited-loop", _meta_edit("last", lambda m: m["loop"].update(epoch=0),
                                      "meta_sha256"), 2),
    ("resume-edited-rng", _meta_edit("last", lambda m: m["rng"]["state"].update(state=1),
                                     "meta_sha256"), 2),
    ("resume-meta-hash-removed", _meta_edit("last", lambda m: m.pop("meta_sha256"),
                                            "meta_sha256"), 2),
    ("resume-loop-epoch-not-int", _meta_edit("last", lambda m: m["loop"].update(epoch="x"),
                                             "loop.epoch", rehash=True), 2),
    ("resume-loop-negative-step", _meta_edit("last", lambda m: m["loop"].update(step=-3),
                                             "loop.step", rehash=True), 2),
    ("resume-loop-missing-key", _meta_edit("last", lambda m: m["loop"].pop("bad_epochs"),
                                           "'loop'", rehash=True), 2),
    ("resume-loop-not-a-dict", _meta_edit("last", lambda m: m.update(loop=[1, 2]),
                                          "'loop'", rehash=True), 2),
    ("resume-loop-best-f1-string", _meta_edit("last", lambda m: m["loop"].update(
        best_f1="high"), "loop.best_f1", rehash=True), 2),
    ("resume-rng-garbage", _meta_edit("last", lambda m: m.update(rng={"x": 1}), "'rng'",
                                      rehash=True), 2),
    ("resume-rng-missing", _meta_edit("last", lambda m: m.pop("rng"), "'rng'",
                                      rehash=True), 2),
    ("resume-rng-bad-state", _meta_edit("last", lambda m: m["rng"].update(
        state={"state": "x", "inc": 1}), "'rng'", rehash=True), 2),
    ("resume-meta-not-json", _params_edit(
        "last", lambda f: (f / "meta.json").write_text("{oops"), "meta.json"), 2),
    ("resume-meta-missing", _params_edit("last", lambda f: (f / "meta.json").unlink(), "last"),
     2),
    ("resume-params-missing", _params_edit(
        "last", lambda f: (f / "params.npz").unlink(), "params.npz"), 2),
    ("resume-params-empty", _params_edit(
        "last", lambda f: truncate(f / "params.npz", 0), "params.npz"), 2),
    ("resume-params-10-bytes", _params_edit(
        "last", lambda f: truncate(f / "params.npz", 10), "params.npz"), 2),
    ("resume-params-half", _params_edit(
        "last", lambda f: truncate(f / "params.npz", 0.5), "params.npz"), 2),
    ("resume-huge-header-W1", _params_edit("last", lambda f: huge_header(f, "W1"), "'W1'"), 2),
    ("resume-huge-header-opt", _params_edit(
        "last", lambda f: huge_header(f, "opt/m/W1"), "'opt/m/W1'"), 2),
    ("resume-array-missing", _params_edit("last", _drop_member("opt/v/W1"), "'opt/v/W1'"), 2),
    ("resume-array-extra", _params_edit("last", _add_member, "'intruder'"), 2),
    ("resume-array-retyped", _params_edit("last", _retype, "'b1'"), 2),
    ("resume-changed-config", _resume_changed_config, 2),
    ("resume-bad-data-file", _resume_data_error, 2),
    # models read by eval
    ("eval-edited-words", _meta_edit("best", lambda m: m["vocabs"]["word"].reverse(), "meta_sha256",
                                     cmd="eval"), 2),
    ("eval-edited-nonlinearity", _meta_edit("best", _set_nonlinearity, "meta_sha256",
                                            cmd="eval"), 2),
    ("eval-huge-header", _params_edit("best", lambda f: huge_header(f, "E_word"), "'E_word'",
                                      cmd="eval"), 2),
    ("eval-truncated-params", _params_edit("best", lambda f: truncate(f / "params.npz", 0.7),
                                           "params.npz", cmd="eval"), 2),
    ("eval-missing-model", _eval_missing_model, 2),
    ("eval-model-symlink-loop", _eval_model_loop, 2),
    # output files of eval and tag
    ("eval-predictions-missing-folder", _out_file("eval", "missing"), 2),
    ("eval-predictions-below-a-file", _out_file("eval", "below_file"), 2),
    ("eval-predictions-is-a-folder", _out_file("eval", "is_dir"), 2),
    ("eval-predictions-unwritable", _out_file("eval", "unwritable"), 2),
    ("eval-predictions-symlink", _out_file("eval", "symlink"), 2),
    ("tag-output-missing-folder", _out_file("tag", "missing"), 2),
    ("tag-output-below-a-file", _out_file("tag", "below_file"), 2),
    ("tag-output-is-a-folder", _out_file("tag", "is_dir"), 2),
    ("tag-output-unwritable", _out_file("tag", "unwritable"), 2),
    ("tag-output-symlink", _out_file("tag", "symlink"), 2),
]


@pytest.mark.parametrize(("setup", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_case(setup: Setup, code: int, base_run: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    case = tmp_path / "case"
    case.mkdir()
    r = case / "run"
    shutil.copytree(base_run, r, symlinks=True)
    argv, expected = setup(case, r, monkeypatch)
    before = snapshot(case)
    result = run(*argv)
    monkeypatch.undo()
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert expected in errors[0], result.output
    assert snapshot(case) == before  # nothing deleted, nothing written


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


# --- what --force may do ------------------------------------------------------------------


def test_force_replaces_a_nerwin_run_and_its_crash_leftovers(base_run: Path, tmp_path: Path
                                                             ) -> None:
    r = tmp_path / "run"
    shutil.copytree(base_run, r)
    # What killed saves and writes leave behind: nerwin's too.
    shutil.copytree(r / "last", r / ".last.old-1-aa")
    (r / ".best.tmp-2-bb").mkdir()
    (r / ".best.tmp-2-bb" / "params.npz").write_bytes(b"PK half")
    (r / ".metrics.jsonl.tmp-3-cc").write_text("{")
    old = (r / "last" / "meta.json").read_bytes()
    result = run(*force(r, "--set", "training.seed=5"))
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(r)) == [".nerwin-run", "best", "config.yaml", "last",
                                     "metrics.jsonl", "test_scores.json"]
    assert (r / "last" / "meta.json").read_bytes() != old


def test_force_on_a_fresh_folder_and_a_missing_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run(*force(tmp_path / "empty")).exit_code == 0
    assert run(*force(tmp_path / "a" / "b")).exit_code == 0
    marker = json.loads((tmp_path / "a" / "b" / ".nerwin-run").read_text())
    assert marker["format"] == "nerwin-run"


def test_force_with_all_o_training_data_keeps_the_old_run(base_run: Path, tmp_path: Path
                                                          ) -> None:
    # What the error says is another module's business; here: nothing of the run is lost.
    r = tmp_path / "run"
    shutil.copytree(base_run, r)
    train = tmp_path / "o.txt"
    train.write_text("a O\nb O\n\nc O\n")
    before = snapshot(r)
    result = run(*force(r, "--set", f"data.train={train}", "--set", "data.dev=null",
                        "--set", "data.test=null"))
    assert result.exit_code != 0
    assert snapshot(r) == before


def test_a_run_resumed_from_a_legacy_folder_gets_a_marker(base_run: Path, tmp_path: Path
                                                          ) -> None:
    r = tmp_path / "run"
    shutil.copytree(base_run, r)
    (r / ".nerwin-run").unlink()  # as written before markers existed
    result = run(*resume(r))
    assert result.exit_code == 0, result.output
    assert (r / ".nerwin-run").is_file()


# --- symlinks are never written through -------------------------------------------------


def test_append_jsonl_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(outside)
    with pytest.raises(OSError):
        ckpt.append_jsonl(link, {"epoch": 1})
    assert outside.read_text() == "keep\n"
    dangling = tmp_path / "d.jsonl"
    dangling.symlink_to(tmp_path / "nowhere" / "x")
    with pytest.raises(OSError):
        ckpt.append_jsonl(dangling, {"epoch": 1})
    assert not (tmp_path / "nowhere").exists()


# --- meta.json is covered by the checkpoint's hashes ---------------------------------------


@pytest.mark.parametrize("key", ["vocabs", "tags", "config", "frozen", "nerwin_version"])
def test_any_edit_of_meta_is_refused_on_load(base_run: Path, tmp_path: Path, key: str) -> None:
    best = tmp_path / "best"
    shutil.copytree(base_run / "best", best)
    meta = json.loads((best / "meta.json").read_text())
    meta[key] = {"edited": True}
    (best / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ckpt.NerwinError, match="meta_sha256"):
        ckpt.load_checkpoint(best)


def test_a_huge_header_is_refused_before_allocating(base_run: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    last = tmp_path / "last"
    shutil.copytree(base_run / "last", last)
    huge_header(last, "opt/m/W1")
    # Were the member read, numpy would allocate 4 TB for it: no array may be read at all
    # before every header has passed.
    def no_read(*a, **kw):
        raise AssertionError("an array was read before the headers were checked")

    monkeypatch.setattr(np.lib.format, "read_array", no_read)
    with pytest.raises(ckpt.NerwinError, match=r"'opt/m/W1' claims shape \(1000000, 1000000\)"):
        ckpt.load_checkpoint(last)
