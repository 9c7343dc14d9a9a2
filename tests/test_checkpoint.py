"""Tests for nerwin.checkpoint: atomic files, checkpoint round-trips, corruption, crashes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from nerwin import checkpoint as ckpt
from nerwin.checkpoint import (
    append_jsonl,
    array_sha256,
    atomic_write_bytes,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from nerwin.errors import NerwinError


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, 3.0], dtype=np.float32)
    return {
        "W1": rng.standard_normal((5, 7)).astype(np.float32),
        "b1": rng.standard_normal(7),  # float64
        "opt/m/W1": rng.standard_normal((5, 7)).astype(np.float32),
        "special": special,  # NaN and -0.0 must survive bit for bit
        "step": np.array(1234, dtype=np.int64),  # 0-d
        "ids": rng.integers(-(2**31), 2**31 - 1, size=(3, 2), dtype=np.int32),
        "mask": rng.random(4) < 0.5,
        "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes("C") == b.tobytes("C")


# --- round trip ------------------------------------------------------------------------


def test_round_trip_bit_for_bit(tmp_path: Path) -> None:
    arrays = _arrays()
    meta = {"epoch": 3, "vocab": ["a", "é", "PER"], "scores": {"f1": 88.25}, "none": None}
    target = tmp_path / "run" / "best"
    assert save_checkpoint(target, arrays, meta) == target
    loaded, loaded_meta = load_checkpoint(target)
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert _bits_equal(loaded[name], array), name
    want = {
        **meta,
        "format": "nerwin-checkpoint",
        "format_version": 1,
        "sha256": {name: array_sha256(array) for name, array in arrays.items()},
    }
    assert loaded_meta == {**want, "meta_sha256": ckpt.meta_sha256(want)}
    assert sorted(os.listdir(target)) == ["meta.json", "params.npz"]
    assert _leftovers(target.parent) == []


def test_params_npz_is_a_plain_npz_without_pickle(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", _arrays(), {})
    with np.load(tmp_path / "c" / "params.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(_arrays())
        assert _bits_equal(npz["opt/m/W1"], _arrays()["opt/m/W1"])


def test_array_sha256_covers_dtype_and_shape() -> None:
    a = np.arange(12, dtype=np.int32)
    assert array_sha256(a) == array_sha256(a.copy())
    assert array_sha256(a) != array_sha256(a.reshape(3, 4))
    assert array_sha256(a) != array_sha256(a.view(np.float32))
    # Memory layout does not matter, only the values in C order.
    m = np.arange(12.0).reshape(3, 4)
    assert array_sha256(m) == array_sha256(np.asfortranarray(m))
    assert len(array_sha256(a)) == 64


def test_reserved_meta_keys_are_overwritten(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c", {"W": np.ones(2)}, {"format": "x", "sha256": {}, "k": 1})
    _, meta = load_checkpoint(tmp_path / "c")
    assert meta["format"] == "nerwin-checkpoint"
    assert set(meta["sha256"]) == {"W"}
    assert meta["k"] == 1


# --- refusing bad input (nothing is written) --------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        np.array([{"a": 1}, None], dtype=object),
        np.array(["a", "b"]),
        np.zeros(2, dtype=[("x", "f4")]),
    ],
)
def test_non_numeric_arrays_are_refused(tmp_path: Path, value: np.ndarray) -> None:
    with pytest.raises(ValueError, match="'bad'"):
        save_checkpoint(tmp_path / "c", {"ok": np.ones(1), "bad": value}, {})
    assert not (tmp_path / "c").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["", "/W", "W/", "a//b", "a\\b", "a\x00b", "a b"])
def test_bad_array_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="array name"):
        save_checkpoint(tmp_path / "c", {name: np.ones(1)}, {})
    assert not (tmp_path / "c").exists()


def test_non_array_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="'W'"):
        save_checkpoint(tmp_path / "c", {"W": [1.0, 2.0]}, {})  # type: ignore[dict-item]


@pytest.mark.parametrize("meta", [{"x": {1, 2}}, {"x": float("nan")}, {"x": object()}])
def test_non_json_meta_is_refused(tmp_path: Path, meta: dict) -> None:
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "c", {"W": np.ones(1)}, meta)
    assert not (tmp_path / "c").exists()


def test_refuses_to_replace_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(NerwinError, match="notes.txt"):
        save_checkpoint(target, {"W": np.ones(1)}, {})
    assert (target / "notes.txt").read_text() == "precious"
    assert _leftovers(tmp_path) == []

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NerwinError, match="not a folder"):
        save_checkpoint(a_file, {"W": np.ones(1)}, {})
    assert a_file.read_text() == "x"


# --- corrupt checkpoints ---------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(), {"epoch": 1})
    return target


def test_flipped_byte_in_array_names_the_array(saved: Path) -> None:
    params = saved / "params.npz"
    raw = bytearray(params.read_bytes())
    data = _arrays()["W1"].tobytes()
    offset = raw.find(data)
    assert offset >= 0 and raw.find(data, offset + 1) < 0
    raw[offset + len(data) // 2] ^= 0x01
    params.write_bytes(bytes(raw))
    # Either the zip CRC or our sha256 catches it; both must name the array and the file.
    with pytest.raises(NerwinError, match=r"params\.npz: array 'W1'"):
        load_checkpoint(saved)


def test_edited_array_fails_its_sha256(saved: Path) -> None:
    arrays = _arrays()
    arrays["opt/m/W1"] = arrays["opt/m/W1"] + np.float32(1e-3)
    # A well-formed npz with different contents: only the hash can tell.
    np.savez(saved / "params.npz", **arrays)
    with pytest.raises(NerwinError, match="array 'opt/m/W1' does not match its sha256"):
        load_checkpoint(saved)


def test_reshaped_array_fails_its_sha256(saved: Path) -> None:
    arrays = _arrays()
    arrays["W1"] = arrays["W1"].reshape(7, 5)
    np.savez(saved / "params.npz", **arrays)
    with pytest.raises(NerwinError, match="'W1' does not match"):
        load_checkpoint(saved)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -1])
def test_truncated_npz(saved: Path, keep: float) -> None:
    params = saved / "params.npz"
    raw = params.read_bytes()
    cut = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    params.write_bytes(raw[:cut])
    with pytest.raises(NerwinError, match=r"params\.npz") as info:
        load_checkpoint(saved)
    assert str(saved) in str(info.value)


def test_missing_and_extra_arrays(saved: Path) -> None:
    arrays = _arrays()
    np.savez(saved / "params.npz", **{**arrays, "intruder": np.ones(1)})
    with pytest.raises(NerwinError, match="'intruder' are not listed"):
        load_checkpoint(saved)
    del arrays["b1"]
    np.savez(saved / "params.npz", **arrays)
    with pytest.raises(NerwinError, match="'b1' listed in meta.json are missing"):
        load_checkpoint(saved)


def test_object_array_in_npz_is_refused_on_load(saved: Path) -> None:
    # Someone replaced a member with a pickled object array: never unpickle it.
    arrays = _arrays()
    arrays["W1"] = np.array([{"evil": 1}], dtype=object)
    np.savez(saved / "params.npz", **arrays)
    with pytest.raises(NerwinError, match="'W1'"):
        load_checkpoint(saved)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: "{not json", "not valid JSON"),
        (lambda m: json.dumps([1, 2]), "JSON object"),
        (lambda m: json.dumps({**m, "format": "other"}), "'format' is 'other'"),
        (lambda m: json.dumps({**m, "format_version": 2}), "unsupported 'format_version' 2"),
        (lambda m: json.dumps({k: v for k, v in m.items() if k != "sha256"}), "'sha256'"),
    ],
)
def test_bad_meta_json(saved: Path, edit, message: str) -> None:
    meta_path = saved / "meta.json"
    meta_path.write_text(edit(json.loads(meta_path.read_text())))
    with pytest.raises(NerwinError, match=message) as info:
        load_checkpoint(saved)
    assert "meta.json" in str(info.value)


def test_missing_files_and_folder(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(NerwinError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "nope")
    (saved / "params.npz").unlink()
    with pytest.raises(NerwinError, match=r"params\.npz: missing"):
        load_checkpoint(saved)
    (saved / "meta.json").unlink()
    with pytest.raises(NerwinError, match=r"meta\.json: missing"):
        load_checkpoint(saved)


# --- overwriting, and crashes while overwriting -----------------------------------------


def _complete_checkpoints(parent: Path) -> dict[str, int]:
    """{folder name: saved 'version'} for every folder in ``parent`` that loads cleanly."""
    found = {}
    for path in parent.iterdir():
        try:
            _, meta = load_checkpoint(path)
        except NerwinError:
            continue
        found[path.name] = meta["version"]
    return found


def test_overwrite_replaces_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    save_checkpoint(target, _arrays(2), {"version": 2})
    arrays, meta = load_checkpoint(target)
    assert meta["version"] == 2
    assert _bits_equal(arrays["W1"], _arrays(2)["W1"])
    assert _leftovers(tmp_path) == []


def test_a_complete_checkpoint_exists_at_every_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    real_replace = os.replace
    # (complete checkpoints on disk, whether the final name exists) around every rename.
    seen: list[tuple[dict[str, int], bool]] = []

    def snapshot() -> None:
        seen.append((_complete_checkpoints(tmp_path), target.exists()))

    def spying_replace(src, dst):
        snapshot()
        real_replace(src, dst)
        snapshot()

    monkeypatch.setattr(os, "replace", spying_replace)
    save_checkpoint(target, _arrays(2), {"version": 2})
    assert len(seen) >= 4  # target aside, new one in
    for state, target_exists in seen:
        # Some complete checkpoint (old or new) is always on disk...
        assert state
        # ...and the final name never holds anything but a complete one.
        if target_exists:
            assert state.get("best") in (1, 2)
    assert seen[0][0]["best"] == 1 and seen[-1][0]["best"] == 2


class _Crash(BaseException):
    """Stands in for the process dying: not an Exception, so no handler swallows it."""


def _failing_replace(monkeypatch: pytest.MonkeyPatch, fail_on: set[int], error: BaseException):
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] in fail_on:
            raise error
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("fail_on", [1, 2])
def test_failed_rename_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_on: int
) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    _failing_replace(monkeypatch, {fail_on}, OSError("disk on fire"))
    with pytest.raises(OSError, match="disk on fire"):
        save_checkpoint(target, _arrays(2), {"version": 2})
    arrays, meta = load_checkpoint(target)
    assert meta["version"] == 1
    assert _bits_equal(arrays["W1"], _arrays(1)["W1"])
    assert _leftovers(tmp_path) == []


def test_hard_crash_between_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    # Die at the second rename; every later rename (the rollback) dies too.
    _failing_replace(monkeypatch, set(range(2, 100)), _Crash())
    with pytest.raises(_Crash):
        save_checkpoint(target, _arrays(2), {"version": 2})
    monkeypatch.undo()

    # No half checkpoint under the final name; the old one is complete, set aside.
    assert not target.exists()
    complete = _complete_checkpoints(tmp_path)
    (aside,) = [name for name, version in complete.items() if version == 1]
    assert aside.startswith(".best.old-")
    # The new one may survive in its temporary folder; it is never under the final name.
    assert set(complete) <= {aside} | {n for n in complete if n.startswith(".best.tmp-")}
    # load reads the complete copy left beside the final name (renaming nothing);
    # recover_checkpoint, for the folder's owner, puts it back under its name.
    # The new copy (.best.tmp-*) is preferred when it survived complete.
    (newest,) = [n for n in complete if n.startswith(".best.tmp-")] or [aside]
    assert load_checkpoint(target)[1]["version"] == complete[newest]
    assert not target.exists()
    assert ckpt.recover_checkpoint(target) == tmp_path / newest
    assert load_checkpoint(target)[1]["version"] == complete[newest]

    # The next save works and clears the leftovers.
    save_checkpoint(target, _arrays(3), {"version": 3})
    assert load_checkpoint(target)[1]["version"] == 3
    assert _leftovers(tmp_path) == []


def test_crash_while_writing_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    real_write = np.lib.format.write_array
    calls = {"n": 0}

    def write_then_fail(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("no space left on device")
        real_write(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_fail)
    with pytest.raises(OSError, match="no space"):
        save_checkpoint(target, _arrays(2), {"version": 2})
    monkeypatch.undo()
    assert load_checkpoint(target)[1]["version"] == 1
    assert _leftovers(tmp_path) == []


def test_stale_folders_from_a_dead_process_are_ignored_then_removed(tmp_path: Path) -> None:
    target = tmp_path / "best"
    save_checkpoint(target, _arrays(1), {"version": 1})
    half = tmp_path / ".best.tmp-99999-deadbeef"
    half.mkdir()
    (half / "params.npz").write_bytes(b"PK\x03\x04 half")
    (tmp_path / ".best.old-99999-deadbeef").mkdir()
    # A similarly named folder of another checkpoint must be left alone.
    (tmp_path / ".best2.tmp-1-aa").mkdir()
    assert load_checkpoint(target)[1]["version"] == 1
    save_checkpoint(target, _arrays(2), {"version": 2})
    assert load_checkpoint(target)[1]["version"] == 2
    assert _leftovers(tmp_path) == [".best2.tmp-1-aa"]


# --- atomic files and JSON lines -------------------------------------------------------


def test_atomic_write_text_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "héllo\n")
    assert path.read_bytes() == "héllo\n".encode()
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_atomic_write_uses_normal_permissions(tmp_path: Path) -> None:
    reference = tmp_path / "ref"
    reference.write_text("x")
    path = tmp_path / "f"
    atomic_write_text(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_atomic_write_failure_keeps_old_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    _failing_replace(monkeypatch, {1}, OSError("boom"))
    with pytest.raises(NerwinError, match="f.txt: cannot write the file: boom"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_append_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"epoch": 1, "loss": 0.5, "name": "é"})
    append_jsonl(path, {"epoch": 2})
    lines = path.read_text(encoding="ascii").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"epoch": 1, "loss": 0.5, "name": "é"},
        {"epoch": 2},
    ]


def test_append_jsonl_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"epoch": 1}\n{"epo')
    append_jsonl(path, {"epoch": 2})
    assert path.read_text().splitlines() == ['{"epoch": 1}', '{"epo', '{"epoch": 2}']


def test_append_jsonl_refuses_nan_and_leaves_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_jsonl(path, {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError):
        append_jsonl(path, {"loss": float("nan")})
    with pytest.raises(TypeError):
        append_jsonl(path, ["not", "a", "dict"])  # type: ignore[arg-type]
    assert path.read_bytes() == before


def test_module_never_enables_pickle() -> None:
    source = Path(ckpt.__file__).read_text()
    assert "allow_pickle=True" not in source
    assert "import pickle" not in source


# --- meta.json's own hash, headers, recovery of a killed swap --------------------------


def test_meta_json_is_covered_by_its_own_hash(saved: Path) -> None:
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["epoch"] = 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(NerwinError, match=r"meta\.json: does not match its 'meta_sha256'"):
        load_checkpoint(saved)
    meta["meta_sha256"] = ckpt.meta_sha256(meta)  # re-hashed: accepted again
    meta_path.write_text(json.dumps(meta))
    assert load_checkpoint(saved)[1]["epoch"] == 2


def test_a_header_claiming_more_than_its_member_holds(saved: Path) -> None:
    import io
    import zipfile

    with zipfile.ZipFile(saved / "params.npz") as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    members["b1.npy"] = head.getvalue() + b"\0" * 16
    with zipfile.ZipFile(saved / "params.npz", "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(NerwinError, match=r"'b1' claims shape \(1099511627776,\) float64"):
        load_checkpoint(saved)
    with pytest.raises(NerwinError, match=r"'W1' has shape \(5, 7\), expected \(7, 5\)"):
        load_checkpoint(saved, lambda meta: {"W1": (7, 5)})


def test_recover_takes_the_newest_complete_copy_only(tmp_path: Path) -> None:
    target = tmp_path / "last"
    save_checkpoint(target, _arrays(1), {"version": 1})
    os.replace(target, tmp_path / ".last.old-1-aa")  # as a save killed mid-swap left it
    broken = tmp_path / ".last.tmp-1-bb"
    broken.mkdir()
    (broken / "params.npz").write_bytes(b"PK half")
    assert ckpt.is_checkpoint_folder(broken, partial=True)
    assert not ckpt.is_checkpoint_folder(broken)
    assert ckpt.recover_checkpoint(target) == tmp_path / ".last.old-1-aa"
    assert load_checkpoint(target)[1]["version"] == 1
    assert ckpt.recover_checkpoint(target) is None  # the final name is there: nothing to do
    assert ckpt.recover_checkpoint(tmp_path / "best") is None  # and nothing to recover
