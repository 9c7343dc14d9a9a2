"""nerwin.dask on a real distributed.LocalCluster of 2 worker processes: every output is
what a single-process `nerwin tag` writes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import run_cli

pytest.importorskip("dask.bag")
distributed = pytest.importorskip("distributed")

import nerwin  # noqa: E402
import nerwin.dask as nd  # noqa: E402
from nerwin.conll import read_tokens  # noqa: E402
from nerwin.tokenize import detokenize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TEST = ROOT / "data" / "sample" / "test.txt"
SAMPLE_DEV = ROOT / "data" / "sample" / "dev.txt"


@pytest.fixture(scope="module")
def client():
    with pytest.MonkeyPatch.context() as mp:
        # the workers are new processes: they import the nerwin of this checkout
        mp.setenv("PYTHONPATH", os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        c = distributed.Client(cluster)
        try:
            assert len(c.scheduler_info()["workers"]) == 2
            yield c
        finally:
            c.close()
            cluster.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return nerwin.train(ROOT / "configs" / "sample.yaml", overrides={"training.epochs": 3},
                        out=tmp_path_factory.mktemp("dask") / "run").best


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """Three raw-text files (one with blank lines and \\r\\n line ends)."""
    d = tmp_path_factory.mktemp("texts")
    lines = [detokenize(s.tokens) for s in read_tokens(SAMPLE_TEST)]
    (d / "a.txt").write_text("\n".join(lines[:100]) + "\n", encoding="utf-8")
    (d / "b.txt").write_bytes(("\r\n".join(lines[100:180]) + "\r\n\r\n\r\n").encode())
    (d / "c.txt").write_text("\n\n".join(lines[180:]) + "\n", encoding="utf-8")
    return d


def nerwin_tag(model, src, tmp_path, *args):
    dest = tmp_path / "single.out"
    r = run_cli("tag", model, src, "--output", dest, "--quiet", *args)
    assert r.exit_code == 0, r.output
    return dest.read_bytes()


@pytest.mark.parametrize("fmt", ["jsonl", "conll", "inline"])
def test_tag_files_equal_nerwin_tag(client, model, texts, tmp_path, fmt):
    out = tmp_path / "out"
    out.mkdir()
    paths = nd.tag_files(str(texts / "*.txt"), model, out, output_format=fmt)
    assert [Path(p).name for p in paths] == [f"{n}.txt.{nd.SUFFIX[fmt]}" for n in "abc"]
    for name, p in zip("abc", paths):
        assert Path(p).read_bytes() == nerwin_tag(model, texts / f"{name}.txt", tmp_path,
                                                  "--output-format", fmt)


def test_conll_files(client, model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    paths = nd.tag_files([str(SAMPLE_TEST), str(SAMPLE_DEV)], model, out,
                         input_format="conll", output_format="conll")
    for src, p in zip((SAMPLE_TEST, SAMPLE_DEV), paths):
        assert Path(p).read_bytes() == nerwin_tag(model, src, tmp_path, "--input-format",
                                                  "conll")


@pytest.mark.parametrize("fmt", ["jsonl", "inline"])
def test_blocks_of_a_big_file_concatenate_to_nerwin_tag(client, model, texts, tmp_path, fmt):
    big = tmp_path / "big.txt"
    big.write_bytes(b"".join((texts / f"{n}.txt").read_bytes() for n in "abc") * 4)
    out = tmp_path / "out"
    out.mkdir()
    paths = nd.tag_files(str(big), model, out, output_format=fmt, blocksize=8_000)
    assert len(paths) > 5  # many partitions, over both workers
    joined = b"".join(Path(p).read_bytes() for p in paths)
    assert joined == nerwin_tag(model, big, tmp_path, "--output-format", fmt)


def test_tag_bag_and_the_model_loads_once_per_worker(client, model, tmp_path):
    import dask.bag as db

    lines = [detokenize(s.tokens) for s in read_tokens(SAMPLE_DEV)]
    out = tmp_path / "out"
    out.mkdir()
    paths = nd.tag_bag(db.from_sequence(lines, npartitions=6), model, out)
    src = tmp_path / "lines.txt"
    src.write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    assert b"".join(Path(p).read_bytes() for p in paths) == nerwin_tag(
        model, src, tmp_path, "--output-format", "jsonl")
    loads = client.run(lambda: nd._model.cache_info().misses)
    assert len(loads) == 2 and sum(loads.values()) >= 1
    # one load per model and worker process, however many tasks it ran: this module
    # uses one model, so at most one miss each
    assert all(n <= 1 for n in loads.values()), loads


def test_errors_name_the_file_or_partition_and_line(client, model, texts, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nbad \xff line\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(nerwin.NerwinError, match=r"bad\.txt:2: invalid UTF-8"):
        nd.tag_files(str(bad), model, out)
    with pytest.raises(nerwin.NerwinError, match=r"<partition 0>:2: invalid UTF-8"):
        nd.tag_files(str(bad), model, out, blocksize=1_000_000)
    assert list(out.iterdir()) == []  # nothing half-written
    with pytest.raises(nerwin.NerwinError, match="no file matches"):
        nd.tag_files(str(tmp_path / "none*.txt"), model, out)
    with pytest.raises(nerwin.NerwinError, match="output folder does not exist"):
        nd.tag_files(str(bad), model, tmp_path / "missing")
    with pytest.raises(nerwin.NerwinError, match="CoNLL sentence"):
        nd.tag_files(str(bad), model, out, input_format="conll", blocksize=100)


def test_without_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(nerwin.NerwinError, match=r"pip install 'nerwin\[dask\]'"):
        nd.tag_files(str(tmp_path / "*.txt"), tmp_path, tmp_path)
