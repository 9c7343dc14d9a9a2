"""The training loop: epochs of shuffled minibatches, dev scores, checkpoints, resume.

A run directory holds::

    config.yaml        the resolved config (defaults filled in, absolute paths)
    metrics.jsonl      one JSON line per epoch
    best/              the model with the best dev F1 (params.npz + meta.json)
    last/              the model after the last finished epoch, with the optimiser state,
                       the RNG state and the loop counters: what --resume continues from
    test_scores.json   scores of best/ on data.test, when configured
    .nerwin-run        the run marker (see nerwin.rundir: what --force may delete)

Every file is written atomically (temp file, then rename), so an interrupted run leaves
the previous epoch's checkpoints intact. Resuming from ``last/`` gives the same weights, bit
for bit, as a run that was never interrupted: the only state is the parameters, the
optimiser arrays, the epoch/step counters and the one numpy Generator (shuffling and
dropout), and all of it is in ``last/``.
"""

from __future__ import annotations

import json
import math
import sys
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nerwin.atomic import atomic_write_text
from nerwin.checkpoint import append_jsonl, load_checkpoint, save_checkpoint
from nerwin.config import Config, dump_yaml, to_dict
from nerwin.conll import Corpus
from nerwin.dataset import build_lexicon, read_split, read_train
from nerwin.errors import NerwinError, TrainingError
from nerwin.gazetteer import check_unchanged
from nerwin.model import Model, expected_shapes, model_from_arrays, new_model
from nerwin.optim import OPTIMIZERS, Optimizer, clip_by_global_norm
from nerwin.rundir import check_out_path, check_run_dir, claim_run_dir
from nerwin.schedules import SCHEDULES, Schedule
from nerwin.threads import blas_threads
from nerwin.windows import WindowData, batches, sentence_batches

OPT_PREFIX = "opt/"
# Keys a resumed run may change: how long to go on, not what is trained.
RESUMABLE_CHANGES = {"training.epochs", "training.patience", "output.dir"}


@dataclass
class LoopState:
    """Counters of the loop; saved in last/meta.json."""

    epoch: int = 0  # finished epochs
    step: int = 0  # optimiser steps taken
    best_f1: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the best one
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    out_dir: Path
    state: LoopState
    test_scores: dict[str, Any] | None = None
    nothing_to_do: str | None = None  # why a resumed run had no epoch left to train


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _check_resume_config(saved: dict[str, Any], cfg: Config, where: Path) -> None:
    a, b = _flatten(saved), _flatten(to_dict(cfg))
    changed = sorted(k for k in set(a) | set(b)
                     if a.get(k) != b.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        diffs = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:5])
        raise NerwinError(f"{where}: cannot resume with a different config ({diffs}); only "
                          f"{', '.join(sorted(RESUMABLE_CHANGES))} may change")


def _save_last(out: Path, model: Model, opt: Optimizer, state: LoopState,
               rng: np.random.Generator) -> None:
    arrays = dict(model.net.params)
    arrays.update({OPT_PREFIX + k: v for k, v in opt.state_dict().items()})
    meta = model.meta()
    meta["optimizer"] = opt.name
    meta["loop"] = state.to_json()
    meta["rng"] = rng.bit_generator.state
    # Results depend on it in the last bits; --resume warns when it differs.
    meta["blas_threads"] = blas_threads()
    save_checkpoint(out / "last", arrays, meta)


def _save_best(out: Path, model: Model, state: LoopState, dev_scores: dict[str, Any] | None
               ) -> None:
    meta = model.meta()
    meta["epoch"], meta["step"] = state.epoch, state.step
    if dev_scores is not None:
        meta["dev"] = {k: dev_scores[k] for k in ("precision", "recall", "f1", "loss")}
    save_checkpoint(out / "best", dict(model.net.params), meta)


def _resume(out: Path, cfg: Config, echo: Callable[[str], None]
            ) -> tuple[Model, dict[str, np.ndarray], LoopState, np.random.Generator]:
    """Load last/ (reading a copy a killed save left, if need be) and check it; no writes."""
    where = out / "last"
    arrays, meta = load_checkpoint(where, expected_shapes)
    _check_resume_config(meta["config"], cfg, where)
    check_unchanged(cfg.features.gazetteers, meta.get("gazetteers"), str(out))
    model = model_from_arrays(arrays, meta, where)
    model.cfg = cfg  # equal to the saved one but for the allowed changes (epochs, patience)
    opt_state = {k[len(OPT_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPT_PREFIX)}
    state = _loop_state(meta.get("loop"), where)
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = meta["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise NerwinError(f"{where}/meta.json: 'rng' is not the state of a numpy PCG64 "
                          f"generator ({e!r}); the checkpoint was edited") from None
    saved, now = meta.get("blas_threads"), blas_threads()
    if saved != now:
        echo(f"warning: {where} was trained with {saved or 'an unknown number of'} BLAS "
             f"thread(s), this process uses {now or 'an unknown number'}: the resumed run "
             f"may differ in the last bits from one never interrupted (set "
             f"OPENBLAS_NUM_THREADS to match)")
    return model, opt_state, state, rng


def _loop_state(loop: Any, where: Path) -> LoopState:
    """The loop counters of last/meta.json, checked field by field."""
    bad = f"{where}/meta.json: 'loop' is not what nerwin writes"
    if not isinstance(loop, dict) or set(loop) != set(LoopState().to_json()):
        raise NerwinError(f"{bad} (expected the keys {', '.join(LoopState().to_json())}); "
                          f"the checkpoint was edited")
    for key in ("epoch", "step", "best_epoch", "bad_epochs"):
        v = loop[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise NerwinError(f"{bad}: loop.{key} is {v!r}, expected an integer >= 0")
    f1 = loop["best_f1"]
    if f1 is not None and (not isinstance(f1, (int, float)) or isinstance(f1, bool)
                           or not math.isfinite(f1)):
        raise NerwinError(f"{bad}: loop.best_f1 is {f1!r}, expected a number or null")
    if not isinstance(loop["stopped_early"], bool):
        raise NerwinError(f"{bad}: loop.stopped_early is {loop['stopped_early']!r}, "
                          f"expected true or false")
    return LoopState(**loop)


def _resume_plan(state: LoopState, tcfg: Any, has_dev: bool) -> tuple[str | None, str | None]:
    """(why there is nothing to do, or None; what changed so training goes on, or None).

    A run that stopped early goes on when training.patience now allows more bad epochs
    (or is null); one that ran all its epochs goes on when training.epochs grew.
    """
    stops = tcfg.patience is not None and has_dev and state.bad_epochs >= tcfg.patience
    if state.stopped_early and stops:
        return (f"nothing to do: the run stopped early after epoch {state.epoch} "
                f"({state.bad_epochs} epochs without a better dev F1, training.patience "
                f"{tcfg.patience}); raise training.patience to go on"), None
    if state.epoch >= tcfg.epochs:
        return (f"nothing to do: the run has finished {state.epoch} epochs and "
                f"training.epochs is {tcfg.epochs}; raise training.epochs to go on"), None
    if state.stopped_early:
        state.stopped_early = False
        return None, (f"training.patience is now {tcfg.patience}: continuing the run that "
                      f"stopped early after epoch {state.epoch}")
    return None, None


def _truncate_metrics(path: Path, epoch: int) -> None:
    """Keep the metrics lines of epochs up to ``epoch`` (those last/ holds).

    A crash after a line was written but before last/ was saved leaves a line for an epoch
    that will run again; a crash mid-write leaves a torn line. Both are dropped.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("epoch", epoch + 1) <= epoch:
            kept.append(record)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def train(cfg: Config, out: Path | None = None, *, resume: bool = False, force: bool = False,
          quiet: bool = False, echo: Callable[[str], None] = print,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Train the configured model; write the run directory; return what happened.

    Everything that can be checked is checked before the run directory is touched: its
    path and contents, every data file, the lexicon and vectors, the model (built, so its
    memory is allocated), every split encoded, and on ``resume`` the whole of last/. Only
    then is the folder claimed (``--force`` clears nerwin's files in it).

    ``on_epoch(record)`` is called with each epoch's metrics line once its checkpoints are
    written; an exception it raises ends training there (``nerwin sweep`` prunes this way),
    and last/ holds that epoch.
    """
    try:
        return _train(cfg, out, resume=resume, force=force, quiet=quiet, echo=echo,
                      on_epoch=on_epoch)
    except OSError as e:
        # A file nerwin had to write could not be (a full disk, a folder made read-only).
        raise NerwinError(f"{e.filename or out or cfg.output.dir}: {e.strerror or e}") from None


@dataclass
class _Run:
    """What a run works on: built and checked by :func:`_prepare` before the run directory
    is touched, then advanced one epoch at a time."""

    out: Path
    cfg: Config
    model: Model
    opt: Optimizer
    schedule: Schedule
    state: LoopState
    rng: np.random.Generator
    train_d: WindowData
    y_train: np.ndarray
    dev_c: Corpus | None
    dev_d: WindowData | None
    test_c: Corpus | None
    test_d: WindowData | None
    # Memory the per-epoch dev evaluation reuses (Model.evaluate's workspace).
    workspace: dict[str, Any] = field(default_factory=dict)


# Overflow in exp/matmul is not worth a RuntimeWarning line: a non-finite loss or weight is
# detected explicitly and stops the run with a message of its own.
@np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")
def _train(cfg: Config, out: Path | None, *, resume: bool, force: bool, quiet: bool,
           echo: Callable[[str], None],
           on_epoch: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    run = _prepare(cfg, out, resume=resume, force=force, echo=echo)
    if isinstance(run, RunResult):  # a resumed run with nothing left to do
        return run
    tcfg = run.cfg.training
    finished = run.state.stopped_early or run.state.epoch >= tcfg.epochs
    while not finished:
        lr = run.schedule.lr_at(run.state.epoch)
        loss_sum, n_seen, seconds = _run_epoch(run, lr, quiet)
        finished = _end_epoch(run, lr, loss_sum, n_seen, seconds, echo, on_epoch)
    result = RunResult(run.out, run.state)
    if run.test_c is not None:
        result.test_scores = _test_scores(run)
    return result


def _prepare(cfg: Config, out: Path | None, *, resume: bool, force: bool,
             echo: Callable[[str], None]) -> _Run | RunResult:
    """Check everything, then claim the run directory; the run, ready for its next epoch."""
    out = check_out_path(Path(out or cfg.output.dir))
    check_run_dir(out, resume=resume, force=force)
    tcfg = cfg.training
    # Read (and so check) every file before touching the run directory: a typo in a data
    # file must not cost a --force'd run its old results.
    train_c = read_train(cfg)
    dev_c = read_split(cfg, cfg.data.dev) if cfg.data.dev else None
    test_c = read_split(cfg, cfg.data.test) if cfg.data.test else None

    go_on = None
    if resume:
        model, opt_state, state, rng = _resume(out, cfg, echo)
        why_not, go_on = _resume_plan(state, tcfg, dev_c is not None)
        if why_not is not None:
            echo(f"{out}: {why_not}")
            return RunResult(out, state, nothing_to_do=why_not)
    else:
        rng = np.random.default_rng(tcfg.seed)
        lex = build_lexicon(cfg, train_c, [c for c in (dev_c, test_c) if c is not None])
        # new_model checks model.positive and the memory estimate (nerwin.memory) before it
        # allocates, so a model too big for memory is refused with the run dir untouched.
        model = new_model(cfg, lex, rng)
        opt_state, state = None, LoopState()
    cfg = model.cfg
    opt = _optimizer(model, opt_state, out)
    s = tcfg.schedule
    schedule = SCHEDULES[s.name].from_config(tcfg.optimizer.lr, s)

    # Encoding checks every tag of every split against the training tags.
    train_d = model.encode(train_c)
    del train_c  # its ids are in train_d now; the token strings are not needed to train
    run = _Run(out, cfg, model, opt, schedule, state, rng, train_d,
               model.targets(train_d.labels), dev_c,
               model.encode(dev_c) if dev_c is not None else None, test_c,
               model.encode(test_c) if test_c is not None else None)

    # Every check passed: now the run directory may change.
    claim_run_dir(out, resume=resume, force=force)
    if resume:
        _truncate_metrics(out / "metrics.jsonl", state.epoch)
        echo(f"resuming {out} after epoch {state.epoch} (step {state.step})")
        if go_on:
            echo(go_on)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    if state.epoch == 0:
        _announce(run, echo)
    return run


def _optimizer(model: Model, opt_state: dict[str, np.ndarray] | None, out: Path
               ) -> Optimizer:
    """The configured optimiser over the trainable parameters, with last/'s state if any.

    Its first step moves the dense parameters into one flat buffer and points
    ``model.net.params`` at views of it (nerwin.optim), so checkpoints read them from there.
    """
    net = model.net
    trainable = {k: v for k, v in net.params.items() if k not in net.frozen}
    o = model.cfg.training.optimizer
    opt = OPTIMIZERS[o.name].from_config(trainable, o)
    if opt_state is not None:
        try:
            opt.load_state_dict(opt_state)
        except ValueError as e:
            raise NerwinError(f"{out / 'last'}: the optimiser state does not fit the model "
                              f"({e}); the checkpoint was written by another config") from None
    return opt


def _announce(run: _Run, echo: Callable[[str], None]) -> None:
    """The first lines of a new run: what is trained, and the word vectors' coverage."""
    model, cfg = run.model, run.cfg
    echo(f"training {len(run.train_d):,} tokens, {len(model.lex.words):,} words, "
         f"{len(model.lex.tags)} tags; parameters "
         f"{sum(p.size for p in model.net.params.values()):,}; run dir {run.out}")
    cov = model.lex.coverage
    if cov is not None:
        pct = cov.percent()
        echo(f"word vectors {cfg.features.vectors}: exact {pct['exact']:.2f} %, "
             f"lowercase {pct['lowercase']:.2f} %, missing {pct['missing']:.2f} % "
             f"of {cov.total:,} words ({'frozen' if cfg.features.freeze else 'fine-tuned'})")


def _run_epoch(run: _Run, lr: float, quiet: bool) -> tuple[float, int, float]:
    """One epoch of optimiser steps; (Σ loss·tokens, tokens, seconds)."""
    net, state, tcfg = run.model.net, run.state, run.cfg.training
    epoch = state.epoch  # 0-based index of the epoch running
    t0 = time.perf_counter()
    loss_sum, n_seen = 0.0, 0
    if net.needs_whole_sentences():  # crf, conv blocks: whole shuffled sentences
        epoch_batches = list(sentence_batches(run.train_d.lengths, tcfg.batch_size, run.rng))
    else:
        epoch_batches = [(idx, None)
                         for idx in batches(len(run.train_d), tcfg.batch_size, run.rng)]
    n_batches = len(epoch_batches)
    bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{tcfg.epochs}", unit="batch",
               disable=True if quiet else None, leave=False)
    for i, (idx, lens) in enumerate(epoch_batches):
        loss, grads = net.loss_and_grads(run.train_d.rows(idx), run.y_train[idx], lens,
                                         train=True, rng=run.rng)
        if not math.isfinite(loss):
            bar.close()
            raise _diverged(f"the loss became {loss}", epoch, state.step + 1, state, lr,
                            run.out)
        if tcfg.clip is not None:
            clip_by_global_norm(grads, tcfg.clip)
        run.opt.step(net.params, grads, lr)
        state.step += 1
        loss_sum += loss * len(idx)
        n_seen += len(idx)
        if i % 50 == 0 or i == n_batches - 1:
            el = time.perf_counter() - t0
            bar.set_postfix(loss=f"{loss_sum / n_seen:.4f}", lr=f"{lr:.3g}",
                            tok_s=f"{n_seen / max(el, 1e-9):,.0f}", refresh=False)
        bar.update(1)
    bar.close()
    return loss_sum, n_seen, time.perf_counter() - t0


def _end_epoch(run: _Run, lr: float, loss_sum: float, n_seen: int, seconds: float,
               echo: Callable[[str], None],
               on_epoch: Callable[[dict[str, Any]], None] | None) -> bool:
    """Score dev, keep count of the best epoch, write the metrics line and the checkpoints;
    True when training is finished."""
    state, tcfg, net = run.state, run.cfg.training, run.model.net
    # A finite loss can still hide an overflowed step: never save non-finite weights.
    bad = [k for k, v in net.params.items() if not np.isfinite(v).all()]
    if bad:
        raise _diverged(f"parameter {bad[0]} became non-finite", state.epoch, state.step,
                        state, lr, run.out)
    state.epoch += 1
    record: dict[str, Any] = {"epoch": state.epoch, "step": state.step,
                              "train_loss": loss_sum / max(1, n_seen), "lr": lr,
                              "tokens_per_s": n_seen / max(seconds, 1e-9),
                              "seconds": seconds}
    dev_scores = None
    if run.dev_c is not None:
        dev_scores, _ = run.model.evaluate(run.dev_c, run.dev_d, workspace=run.workspace)
        f1 = dev_scores["f1"]
        record.update({"dev_loss": dev_scores["loss"],
                       "dev_precision": dev_scores["precision"],
                       "dev_recall": dev_scores["recall"], "dev_f1": f1,
                       "dev_per_type_f1": {t: v["f1"]
                                           for t, v in dev_scores["per_type"].items()}})
        improved = state.best_f1 is None or f1 > state.best_f1
    else:
        improved = True  # without dev data, best/ is the latest model
    if improved:
        state.best_f1 = dev_scores["f1"] if dev_scores else None
        state.best_epoch, state.bad_epochs = state.epoch, 0
    else:
        state.bad_epochs += 1
    record["best"] = improved
    if (tcfg.patience is not None and run.dev_c is not None
            and state.bad_epochs >= tcfg.patience):
        state.stopped_early = True

    # metrics line first, then best/, then last/: on a crash in between, resume sees
    # last/ of the previous epoch and drops the extra metrics line.
    append_jsonl(run.out / "metrics.jsonl", record)
    if improved:
        _save_best(run.out, run.model, state, dev_scores)
    _save_last(run.out, run.model, run.opt, state, run.rng)
    echo(_epoch_line(record, tcfg.epochs))
    if on_epoch is not None:
        on_epoch(record)
    if state.stopped_early:
        echo(f"early stop: no better dev F1 for {state.bad_epochs} epochs "
             f"(training.patience {tcfg.patience}); best epoch {state.best_epoch}")
    return state.stopped_early or state.epoch >= tcfg.epochs


def _test_scores(run: _Run) -> dict[str, Any]:
    """Scores of best/ on the test split, also written to test_scores.json."""
    from nerwin.model import load_model

    assert run.test_c is not None
    best = load_model(run.out / "best")
    scores, _ = best.evaluate(run.test_c, run.test_d, workspace=run.workspace)
    scores["file"] = str(run.test_c.path)
    scores["best_epoch"] = run.state.best_epoch
    atomic_write_text(run.out / "test_scores.json", json.dumps(scores, indent=2) + "\n")
    return scores


def _diverged(what: str, epoch: int, step: int, state: LoopState, lr: float, out: Path
              ) -> TrainingError:
    """The divergence error; it says what last/ holds only when there is a last/."""
    if state.epoch > 0:
        kept = f"{out / 'last'} holds epoch {state.epoch}, the last good one"
    else:
        kept = "No epoch finished, so there is no last/ checkpoint"
    return TrainingError(
        f"{what} at epoch {epoch + 1}, step {step} (lr {lr:g}); training stopped. "
        f"{kept}. Try a lower training.optimizer.lr, or set training.clip")


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    line = (f"epoch {r['epoch']}/{epochs}  loss {r['train_loss']:.4f}  lr {r['lr']:.3g}  "
            f"{r['tokens_per_s']:,.0f} tok/s  {r['seconds']:.1f} s")
    if "dev_f1" in r:
        line += (f"  dev loss {r['dev_loss']:.4f}  P {r['dev_precision']:.2f}  "
                 f"R {r['dev_recall']:.2f}  F1 {r['dev_f1']:.2f}")
    return line + ("  *best*" if r["best"] else "")


@dataclass
class RunInfo:
    """What a training run left: its folder, the best and last checkpoints, the best dev
    F1 and its epoch, the epochs run, and the test scores of best/ (when data.test is set).
    ``nothing_to_do`` says why a resumed run trained no epoch (else None)."""

    out_dir: Path
    best: Path | None
    last: Path
    best_f1: float | None
    best_epoch: int
    epochs: int
    stopped_early: bool
    test_scores: dict[str, Any] | None = None
    nothing_to_do: str | None = None


def run(config: str | Path | Config, overrides: Mapping[str, Any] | None = None,
        out: str | Path | None = None, *, resume: bool = False, force: bool = False,
        quiet: bool = True, echo: Any = None) -> RunInfo:
    """Train the model of ``config`` (a YAML path or a Config) with ``overrides``
    applied, into ``out`` (default: the config's output.dir); return a :class:`RunInfo`.

    The same run as ``nerwin train CONFIG --set k=v --out OUT``: ``resume`` and ``force``
    are its flags, ``quiet`` turns off the progress bar, and ``echo`` receives the
    per-epoch lines (default: discarded).
    """
    import dataclasses
    import os

    from nerwin.config import OutputConfig, resolve_config

    cfg = resolve_config(config, overrides)
    if resume and force:
        raise NerwinError("resume and force exclude each other")
    if out is not None:
        # abspath, not resolve: a symlink loop is train's to report.
        cfg = dataclasses.replace(cfg, output=OutputConfig(dir=Path(os.path.abspath(out))))
    result = train(cfg, cfg.output.dir, resume=resume, force=force, quiet=quiet,
                   echo=echo if echo is not None else (lambda _line: None))
    s = result.state
    best = result.out_dir / "best"
    return RunInfo(out_dir=result.out_dir, best=best if best.is_dir() else None,
                   last=result.out_dir / "last", best_f1=s.best_f1, best_epoch=s.best_epoch,
                   epochs=s.epoch, stopped_early=s.stopped_early,
                   test_scores=result.test_scores, nothing_to_do=result.nothing_to_do)


class _CallableTrainModule(types.ModuleType):
    """The module nerwin.train, callable as :func:`run` (the public ``nerwin.train``)."""

    def __call__(self, config: str | Path | Config,
                 overrides: Mapping[str, Any] | None = None, out: str | Path | None = None,
                 **kwargs: Any) -> RunInfo:
        return run(config, overrides, out, **kwargs)


# ``nerwin.train(config, ...)``, the public API, is this module called: importing it makes
# the package attribute ``nerwin.train`` this module (Python sets a package attribute to the
# submodule of that name whenever the submodule is imported, and ``import nerwin.train as t``
# must keep giving the module), so the module is made callable as :func:`run`.
sys.modules[__name__].__class__ = _CallableTrainModule
