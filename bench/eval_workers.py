"""`nerwin eval --workers N`: where one process's time goes, and wall-clock time of 1 and N
workers side by side, with the outputs compared byte for byte. Prints JSON.

    python bench/eval_workers.py --model runs/sample/best
    python bench/eval_workers.py --model /tmp/best/best --repeat 4 --workers 2 --rounds 3

Method. The data (``--data``, CoNLL-2003 dev by default) is written ``--repeat`` times into
one temporary file. Part one runs the evaluation in this process, step by step, and reads
the CPU seconds (time.process_time, one BLAS thread) of each: reading the file, cutting the
chunks, building the network's projections (once per process: every worker builds its
own), running the chunks (``ChunkRunner``: encoding and the network, the one part the
workers share out), scoring (decoding the ids to tags, conlleval's counts) and formatting
``--predictions`` and ``--json``. ``amdahl_bound`` is the most N workers could gain from
that: only the chunks are shared. Part two runs ``python -m nerwin eval MODEL DATA --json
--predictions OUT --workers W`` as a child process for W = 1 and ``--workers``,
alternating, ``--rounds`` times: the least wall-clock time and the least CPU time of all
its processes (the workers' read from /proc while they run) count, process start and model
loading included; stdout and the predictions of every run must be the same bytes. The load
average before and after is printed: on a shared machine the wall-clock ratio says little
about idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "conll2003" / "valid.txt"


def breakdown(model_dir: str, data: Path) -> dict[str, float]:
    """CPU seconds of each step of one in-process evaluation."""
    sys.path.insert(0, str(ROOT))
    from nerwin.api import load_model
    from nerwin.conll import format_predictions
    from nerwin.dataset import encode_labels, read_split
    from nerwin.evaluation import ChunkRunner, chunks

    model = load_model(model_dir)
    out: dict[str, float] = {}
    t = time.process_time()

    def step(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = round(now - t, 3)
        t = now

    corpus = read_split(model.cfg, data)
    encode_labels(corpus, model.lex.tags)
    step("read")
    parts = list(chunks(corpus, model.eval_plan(corpus.lengths)))
    step("cut_chunks")
    runner = ChunkRunner(model)
    runner._proj = (corpus.n_tokens, model.eval_projections(corpus.n_tokens))
    step("projections")  # once per process: each worker builds its own
    results = [runner(c) for c in parts]
    step("run_chunks")
    import numpy as np

    scores, pred = model.eval_finish(corpus, np.concatenate([i for i, _ in results]),
                                     np.concatenate([x for _, x in results]))
    step("score")
    format_predictions(corpus.sentences, pred, model.gold_tags(corpus))
    json.dumps(scores, indent=2)
    step("format")
    total = sum(out.values())
    out["total"] = round(total, 3)
    out["chunks"] = len(parts)
    out["tokens"] = corpus.n_tokens
    out["run_chunks_share"] = round(out["run_chunks"] / total, 3)
    return out


def amdahl(b: dict[str, float], n: int) -> float:
    """The most n workers can gain: the chunks shared out, everything else (the parent's
    steps, and the projections, which every worker builds) not."""
    return b["total"] / (b["total"] - b["run_chunks"] + b["run_chunks"] / n)


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (its reaped children not included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _children(pids: set[int]) -> set[int]:
    """Every process whose parent is in ``pids``, transitively."""
    found = set(pids)
    while True:
        more = set()
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) not in found:
                try:
                    ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in found:
                    more.add(int(d.name))
        if not more:
            return found - pids
        found |= more


def run_eval(model: str, data: Path, pred: Path, workers: int
             ) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the command and of the processes below it, stdout).

    The command's own CPU time is exact (getrusage of the reaped child); its descendants'
    (the fork server and the workers, whom it does not wait for) is read from /proc every
    20 ms while they run, so each can be short by up to 20 ms."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "nerwin", "eval", model, str(data), "--json",
           "--predictions", str(pred), "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        last: dict[int, int] = {}
        while p.poll() is None:
            for pid in _children({p.pid}):
                ticks = _cpu_ticks(pid)
                if ticks is not None:
                    last[pid] = max(last.get(pid, 0), ticks)
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {p.stderr.read() if p.stderr else ''}")
        out.seek(0)
        stdout = out.read()
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, own + sum(last.values()) / os.sysconf("SC_CLK_TCK"), stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a checkpoint or ensemble folder")
    ap.add_argument("--data", type=Path, default=SHARED, help="a CoNLL file")
    ap.add_argument("--repeat", type=int, default=1, help="the data this many times")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.txt"
        # a blank line after the last sentence, so that the copies do not run together
        text = args.data.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
        data.write_text(text * args.repeat, encoding="utf-8")
        load_before = os.getloadavg()
        result: dict[str, object] = {"breakdown_cpu_s": breakdown(args.model, data)}
        best: dict[int, float] = {}
        cpu: dict[int, float] = {}
        seen: dict[int, tuple[str, bytes]] = {}
        for _ in range(args.rounds):
            for w in (1, args.workers):
                pred = Path(tmp) / f"pred{w}.txt"
                wall, cpu_s, stdout = run_eval(args.model, data, pred, w)
                best[w] = min(best.get(w, wall), wall)
                cpu[w] = min(cpu.get(w, cpu_s), cpu_s)
                got = (stdout, pred.read_bytes())
                if seen.setdefault(w, got) != got or seen[1] != got:
                    sys.exit(f"outputs differ with {w} workers")
        result.update({
            "model": args.model, "data": str(args.data), "repeat": args.repeat,
            "wall_s": {str(w): round(s, 3) for w, s in best.items()},
            "cpu_s": {str(w): round(s, 3) for w, s in cpu.items()},
            "speedup": round(best[1] / best[args.workers], 3),
            "amdahl_bound": round(amdahl(result["breakdown_cpu_s"],  # type: ignore[arg-type]
                                         args.workers), 3),
            "identical_outputs": True,
            "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpus": os.cpu_count()})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
