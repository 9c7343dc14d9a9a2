"""Results over seeds: train a config once per seed and print per-seed and mean ± std F1 (JSON).

    python bench/seeds.py configs/conll2003_best.yaml --seeds 0 1 2 --out runs/seeds-best \
        --set data.train=$S/conll2003/train.txt --set data.dev=$S/conll2003/valid.txt \
        --set data.test=$S/conll2003/test.txt \
        --set features.vectors=$S/embeddings/glove.6B.50d.txt.gz

Each seed is one child process ``python -m nerwin train CONFIG --out OUT/seed-S --quiet --set
training.seed=S [--set ...]``, ``--workers`` of them at a time (default 1), each with one BLAS
thread (OPENBLAS_NUM_THREADS=1 and friends), its output in OUT/seed-S.log. The run
directories stay under ``--out`` (default runs/seeds/<config name>), so the models can be
evaluated again or ensembled (``nerwin ensemble OUT/seed-*/best --out ...``).

Per seed: the dev F1 of the best epoch (the model kept in best/), the test F1 of that model
(test_scores.json, when data.test is set), the best epoch, the epochs run and the wall
seconds of the child. Then the mean and the sample standard deviation (n − 1) of dev and test
F1 over the seeds, and the command line. The JSON is printed and written to OUT/seeds.json.
A seed whose run fails stops the script with its log's last line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# One BLAS thread per child: N workers use N cores, and a run's numbers do not depend on
# how many threads the machine had to spare.
ONE_THREAD = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def fail(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
    sys.exit(2)


def child_command(config: str, seed: int, out: Path, overrides: list[str],
                  force: bool) -> list[str]:
    cmd = [sys.executable, "-m", "nerwin", "train", config, "--out", str(out), "--quiet",
           "--set", f"training.seed={seed}"]
    for o in overrides:
        cmd += ["--set", o]
    return cmd + (["--force"] if force else [])


def summarise(seed: int, run: Path, seconds: float) -> dict[str, Any]:
    """One seed's row from its run directory (metrics.jsonl, test_scores.json)."""
    records = [json.loads(line) for line in
               (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    best = [r for r in records if r.get("best")]
    best_rec = best[-1] if best else records[-1]
    test = run / "test_scores.json"
    test_f1 = json.loads(test.read_text(encoding="utf-8"))["f1"] if test.exists() else None
    return {"seed": seed, "dev_f1": best_rec.get("dev_f1"), "test_f1": test_f1,
            "best_epoch": best_rec["epoch"], "epochs_run": records[-1]["epoch"],
            "seconds": round(seconds, 1), "run_dir": str(run)}


def mean_std(values: list[float | None]) -> dict[str, float | None] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return {"mean": round(statistics.fmean(vals), 4),
            "std": None if std is None else round(std, 4), "n": len(vals)}


def last_line(log: Path) -> str:
    lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines()
             if x.strip()]
    return lines[-1] if lines else "(no output)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="a config override for every seed (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="trainings at a time (default 1)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder of the seeds' run directories (default runs/seeds/<config>)")
    ap.add_argument("--force", action="store_true",
                    help="let each run replace an earlier nerwin run in its folder")
    args = ap.parse_args(argv)
    if args.workers < 1:
        fail(f"--workers {args.workers}: expected an integer >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        fail(f"--seeds {' '.join(map(str, args.seeds))}: each seed once")
    if any(s < 0 for s in args.seeds):
        fail("--seeds: expected integers >= 0")
    if any(o.split("=", 1)[0].strip() in ("training.seed", "output.dir")
           for o in args.overrides):
        fail("--set training.seed / output.dir: the script sets them (use --seeds, --out)")
    # Check the config and the overrides once here (one-line error, exit 2) instead of
    # as many times as there are seeds.
    from nerwin.config import load_config
    from nerwin.errors import NerwinError

    try:
        load_config(args.config, args.overrides)
    except NerwinError as e:
        fail(str(e))
    out = args.out or ROOT / "runs" / "seeds" / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)

    env = {**os.environ, **ONE_THREAD}
    pending = list(args.seeds)
    running: dict[int, tuple[subprocess.Popen, float, Any]] = {}
    rows: dict[int, dict[str, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < args.workers:
                seed = pending.pop(0)
                log = open(out / f"seed-{seed}.log", "w", encoding="utf-8")  # noqa: SIM115
                cmd = child_command(args.config, seed, out / f"seed-{seed}", args.overrides,
                                    args.force)
                log.write("$ " + shlex.join(cmd) + "\n")
                log.flush()
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                running[seed] = (proc, time.perf_counter(), log)
            time.sleep(0.2)
            for seed, (proc, t0, log) in list(running.items()):
                if proc.poll() is None:
                    continue
                seconds = time.perf_counter() - t0
                log.close()
                del running[seed]
                if proc.returncode != 0:
                    fail(f"seed {seed}: nerwin train exited with {proc.returncode}: "
                         f"{last_line(out / f'seed-{seed}.log')} (log: {out}/seed-{seed}.log)")
                rows[seed] = summarise(seed, out / f"seed-{seed}", seconds)
    finally:
        for proc, _, log in running.values():  # only on an error or ^C: stop the others
            proc.terminate()
            proc.wait()
            log.close()

    per_seed = [rows[s] for s in args.seeds]
    command = shlex.join(["python", "bench/seeds.py", *sys.argv[1:]] if argv is None
                         else ["python", "bench/seeds.py", *argv])
    result = {"config": args.config, "seeds": per_seed,
              "dev_f1": mean_std([r["dev_f1"] for r in per_seed]),
              "test_f1": mean_std([r["test_f1"] for r in per_seed]),
              "workers": args.workers, "out": str(out), "command": command}
    text = json.dumps(result, indent=2)
    tmp = out / "seeds.json.tmp"
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, out / "seeds.json")
    print(text)
    return result


if __name__ == "__main__":
    main()
