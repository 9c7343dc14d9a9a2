"""`nerwin tag` tokens/s of two source trees side by side, and whether their outputs are
byte-identical. Prints JSON.

    git worktree add /tmp/base 6c38b0a          # the version to compare against
    python bench/tag_speed.py --base /tmp/base --model /tmp/crf/best
    python bench/tag_speed.py --base /tmp/base --model /tmp/crf/best --formats conll jsonl inline
    python bench/tag_speed.py --model /tmp/crf/best --workers 2   # this tree: 1 vs 2 workers
    python bench/tag_speed.py --base /tmp/base --model /tmp/crf/best --workers 2  # both, both

Method: the input is CoNLL-2003 train's sentences (``--data``) rebuilt as raw text by
nerwin.tokenize.detokenize, one a line, repeated to ``--tokens`` tokens (1M by default).
Each round runs ``python -m nerwin tag MODEL INPUT --output OUT --output-format F --quiet``
as a child process once per tree (or per worker count), alternating, with PYTHONPATH
pointing at the tree: both versions are numpy-only and need nothing compiled, so one
environment serves both and a second one is not needed (the package installed in the
environment is shadowed by PYTHONPATH). Wall-clock seconds and the child's CPU seconds
(user + system, from os.wait4, its children included) are read for each run; the fastest
of ``--rounds`` rounds counts, so that a busy machine, which slows both alike, is less in
the way. The ratio is new/base tokens/s. With ``--base`` and ``--workers N`` both trees run
with 1 and with N workers, and the ratios are each one's tokens/s over the base's with one
worker. The outputs of every format asked for are compared byte for byte (first round):
every contender's against the first one's. Process start and model loading are included: it is
what a user waits for. With ``--workers`` the workers are children of multiprocessing's
fork server, which nobody waits for, so os.wait4 gives the reading parent's CPU seconds
only; the workers' are read from /proc (Linux) by a thread that samples the child's
descendants every 0.1 s (the last tenth of a second of each may be missed), and both are
printed (``cpu_parent_s``, ``cpu_workers_s``; ``cpu_s`` is their sum). CPU seconds show
what the work costs whatever else runs on the machine; wall-clock ratios between worker
counts mean something only on idle cores.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "conll2003" / "train.txt"
sys.path.insert(0, str(ROOT / "bench"))

from tag_breakdown import write_input  # noqa: E402


def _proc_table() -> dict[int, tuple[int, float, float]]:
    """pid -> (parent pid, own CPU seconds, CPU seconds of its reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
            table[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick,
                             (int(fields[13]) + int(fields[14])) / tick)
    return table


class DescendantCPU(threading.Thread):
    """CPU seconds of the descendants of ``pid`` (not ``pid`` itself), sampled from /proc:
    the larger of the sum of each one's last own time seen and, for its children, their
    own plus their reaped children's (a fork server's workers, once it has reaped them)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.own: dict[int, float] = {}
        self.reaped: dict[int, float] = {}
        self.depth1: set[int] = set()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.sample()

    def sample(self) -> None:
        if not os.path.isdir("/proc"):  # pragma: no cover - not Linux
            return
        table = _proc_table()
        todo, depth = [self.pid], {self.pid: 0}
        while todo:
            p = todo.pop()
            for c, (pp, own, kids) in table.items():
                if pp == p and c not in depth:
                    depth[c] = depth[p] + 1
                    todo.append(c)
                    self.own[c] = max(self.own.get(c, 0.0), own)
                    self.reaped[c] = max(self.reaped.get(c, 0.0), kids)
                    if depth[c] == 1:
                        self.depth1.add(c)

    def seconds(self) -> float:
        self.done.set()
        self.join()
        return max(sum(self.own.values()),
                   sum(self.own[c] + self.reaped[c] for c in self.depth1))


def run(tree: Path, model: str, src: Path, dst: Path, fmt: str, workers: int
        ) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the child itself, CPU seconds of its descendants) of
    one `nerwin tag`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "nerwin", "tag", model, str(src), "--output", str(dst),
           "--output-format", fmt, "--quiet"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=tree)
    sampler = DescendantCPU(p.pid)
    if workers > 1:
        sampler.start()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed (status {status}) in {tree}")
    # the child itself (wait4; with its reaped children, which the workers are not)
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, sampler.seconds() if workers > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--base", help="source tree to compare against (a git worktree)")
    ap.add_argument("--new", default=str(ROOT), help="source tree measured (default: this)")
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--formats", nargs="+", default=["jsonl"],
                    choices=["conll", "jsonl", "inline"],
                    help="the first is timed; all are checked byte for byte")
    ap.add_argument("--workers", type=int, default=1,
                    help="compare 1 worker against this many (with --base: both trees)")
    args = ap.parse_args()
    if args.base is None and args.workers < 2:
        ap.error("give --base TREE, or --workers N (N >= 2) to compare worker counts")
    new = Path(args.new).resolve()
    if args.base:
        base = Path(args.base).resolve()
        contenders = [("base", base, 1), ("new", new, 1)]
        if args.workers > 1:
            contenders += [(f"base {args.workers} workers", base, args.workers),
                           (f"new {args.workers} workers", new, args.workers)]
    else:
        contenders = [("1 worker", new, 1), (f"{args.workers} workers", new, args.workers)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.txt"
        n_tokens = write_input(src, Path(args.data), args.tokens)
        identical = {}
        for fmt in args.formats:
            outs = []
            for name, tree, w in contenders:
                dst = Path(tmp) / f"{name}.{fmt}"
                run(tree, args.model, src, dst, fmt, w)
                outs.append(dst)
            identical[fmt] = all(filecmp.cmp(outs[0], o, shallow=False) for o in outs[1:])
            for o in outs:
                o.unlink()
        best = {name: [float("inf"), float("inf")] for name, _, _ in contenders}
        rounds = []
        for _ in range(args.rounds):
            row = {}
            for name, tree, w in contenders:
                wall, cpu_parent, cpu_workers = run(tree, args.model, src, Path(tmp) / "out",
                                                    args.formats[0], w)
                best[name][0] = min(best[name][0], wall)
                best[name][1] = min(best[name][1], cpu_parent + cpu_workers)
                row[name] = {"wall_s": round(wall, 2),
                             "cpu_s": round(cpu_parent + cpu_workers, 2),
                             "cpu_parent_s": round(cpu_parent, 2),
                             "cpu_workers_s": round(cpu_workers, 2)}
            rounds.append(row)
    a = contenders[0][0]
    out = {
        "command": " ".join(["python", *sys.argv]), "model": args.model,
        "tokens": n_tokens, "output_format": args.formats[0],
        "trees": {name: str(tree) for name, tree, _ in contenders},
        "tokens_per_s": {name: round(n_tokens / best[name][0]) for name in best},
        "tokens_per_cpu_s": {name: round(n_tokens / best[name][1]) for name in best},
        "ratio_wall": {b: round(best[a][0] / best[b][0], 2) for b in best if b != a},
        "ratio_cpu": {b: round(best[a][1] / best[b][1], 2) for b in best if b != a},
        "byte_identical": identical, "rounds": rounds,
        "load_avg_at_end": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
