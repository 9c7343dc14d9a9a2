"""The command line: click commands that parse options and call the library. Nothing else.

Errors in what the user gave (:class:`~nerwin.errors.NerwinError`) become one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nerwin import __version__
from nerwin.allocator import collect_less, keep_freed_memory
from nerwin.atomic import atomic_write_text, check_destination
from nerwin.errors import NerwinError, os_error
from nerwin.threads import default_to_one_blas_thread

default_to_one_blas_thread()  # before anything imports numpy

SET_HELP = ("Override a config key, e.g. --set training.optimizer.lr=0.01 (repeatable; "
            "values are YAML scalars or flow lists like [200,100]).")


class InputError(click.ClickException):
    """A user error: printed as ``Error: ...``, exit code 2 like click's usage errors."""

    exit_code = 2


class NerwinGroup(click.Group):
    """The top-level group: turns NerwinError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NerwinError as e:
            if ctx.params.get("debug"):
                raise
            err = InputError(str(e))
            err.exit_code = e.exit_code
            raise err from None


# Output paths are plain click.Path(): nerwin.atomic checks them and says what is wrong in
# one line (click's own check of a folder there is a four-line usage message).


def set_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The repeatable ``--set KEY=VALUE`` option of every command that takes a config."""
    return click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                        help=SET_HELP)(f)


@click.group(cls=NerwinGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nerwin")
@click.option("--debug", is_flag=True, help="Show full tracebacks for input errors.")
def cli(debug: bool) -> None:
    """nerwin: a window-classifier NER trainer whose every gradient is derived by hand.

    \b
    nerwin data FILE...            check CoNLL files before training
    nerwin config show CONFIG      print the resolved config
    nerwin config init FILE        write a starter config with every key
    nerwin train CONFIG            train; writes metrics.jsonl, best/ and last/
    nerwin eval MODEL DATA         entity-level scores (conlleval semantics)
    nerwin plot RUN_DIR            learning curves as a picture
    nerwin tag MODEL INPUT         tag raw text or CoNLL columns
    nerwin convert IN OUT --to S   CoNLL schemes (iob1, iob2, iobes) and JSON lines
    nerwin export MODEL OUT.onnx   the network as ONNX, to tag with onnxruntime
    nerwin ensemble MODEL... --out DIR   several models that tag as one
    nerwin gradcheck CONFIG        hand-derived vs numerical gradients
    nerwin sweep CONFIG --space S  hyperparameter search (Optuna), parallel, resumable
    """


@cli.group()
def config() -> None:
    """Inspect configs, or write a starter one."""


@config.command("show")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@set_option
def config_show(config_path: str, overrides: tuple[str, ...]) -> None:
    """Print CONFIG with every default filled in and paths resolved, as YAML.

    The output is itself a valid config that loads to the same settings.
    """
    from nerwin.config import dump_yaml, load_config

    cfg = load_config(config_path, list(overrides))
    click.echo(dump_yaml(cfg), nl=False)


@config.command("keys")
def config_keys() -> None:
    """Print every config key with its default and meaning (a Markdown table)."""
    from nerwin.config import keys_markdown

    click.echo(keys_markdown(), nl=False)


@config.command("init")
@click.argument("path", metavar="FILE", type=click.Path())
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
def config_init(path: str, force: bool) -> None:
    """Write a starter config to FILE: every key at its default, under a one-line comment.

    The same facts as `nerwin config keys`; the file loads back to the default config.
    Set data.train (and the rest) before training with it.
    """
    from nerwin.config import starter_yaml

    # Without --force nothing is replaced, not even a dangling symlink; with it, a regular
    # file only (nerwin.atomic).
    atomic_write_text(path, starter_yaml(), "the config", replace=force)
    click.echo(f"wrote {path}: set data.train, then `nerwin train {path}`")


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Also report the vocabulary and word-vector coverage of this config.")
@set_option
@click.option("--scheme", type=click.Choice(["auto", "iob1", "iob2", "iobes", "io"]),
              default=None, help="Tag scheme of FILES (default: the config's, else auto).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def data(files: tuple[str, ...], config_path: str | None, overrides: tuple[str, ...],
         scheme: str | None, as_json: bool) -> None:
    """Report what is in CoNLL FILES: sentences, tokens, entities, scheme, repairs.

    With --config, also the vocabulary size and how many words have pretrained vectors.
    """
    from nerwin.report import data_report, format_data_report

    cfg = None
    if config_path:
        from nerwin.config import load_config

        cfg = load_config(config_path, list(overrides))
    elif overrides:
        raise NerwinError("--set needs --config")
    report = data_report([Path(f) for f in files], cfg, scheme)
    click.echo(json.dumps(report, indent=2) if as_json else format_data_report(report))


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@set_option
@click.option("--out", type=click.Path(file_okay=False),
              help="Run directory (default: output.dir of the config).")
@click.option("--resume", is_flag=True, help="Continue the run in the run directory from last/.")
@click.option("--force", is_flag=True,
              help="Start over: delete the run in the run directory (only what nerwin wrote; "
                   "anything else stops it).")
@click.option("--quiet", is_flag=True, help="No progress bar; only the per-epoch lines.")
def train(config_path: str, overrides: tuple[str, ...], out: str | None, resume: bool,
          force: bool, quiet: bool) -> None:
    """Train the model of CONFIG.

    Writes the run directory: config.yaml, metrics.jsonl (one line per epoch), best/ (best
    dev F1) and last/ (with optimiser state, for --resume), and test_scores.json when
    data.test is set. Ctrl-C keeps the checkpoints of the last finished epoch.
    """
    from nerwin.api import resolve_config
    from nerwin.api import train as run_training
    from nerwin.metrics import format_table

    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    cfg = resolve_config(config_path, list(overrides))
    dest = Path(os.path.abspath(out)) if out is not None else cfg.output.dir
    try:
        run = run_training(cfg, out=out, resume=resume, force=force, quiet=quiet,
                           echo=click.echo)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; {dest}/last holds the last finished epoch: "
                   f"continue with --resume", err=True)
        sys.exit(130)
    if run.nothing_to_do:
        return
    if run.best_f1 is not None:
        click.echo(f"best dev F1 {run.best_f1:.2f} at epoch {run.best_epoch}: "
                   f"{run.out_dir / 'best'}")
    if run.test_scores is not None:
        click.echo(f"test scores of best/ on {run.test_scores['file']}:")
        click.echo(format_table(run.test_scores))


@cli.command("eval")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(file_okay=False))
@click.argument("data_file", metavar="DATA_FILE", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@click.option("--conlleval", is_flag=True,
              help="Print the report in conlleval.pl's exact text layout.")
@click.option("--predictions", type=click.Path(),
              help="Write token, gold and predicted tags in CoNLL columns (conlleval input; "
                   "the gold column is what is scored: for a logistic head, its one type).")
@click.option("--confusion", type=click.Path(),
              help="Draw the tag confusion matrix as a heatmap to this .png or .svg file "
                   "(needs matplotlib: pip install 'nerwin[plot]').")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes that predict chunks of the file in parallel (each loads the "
                   "model once); every output is the same as with one.")
def eval_cmd(model_dir: str, data_file: str, as_json: bool, conlleval: bool,
             predictions: str | None, confusion: str | None, workers: int) -> None:
    """Score the model in MODEL_DIR (a run's best/ or last/) on DATA_FILE.

    Entity-level precision, recall and F1 with conlleval's semantics (exact span and type),
    per type and overall, plus token accuracy. The data file is read with the model's own
    scheme and tag column. With --workers N, N processes predict chunks of the file.
    """
    from nerwin.api import evaluate_loaded, load_model
    from nerwin.conll import format_predictions
    from nerwin.metrics import format_conlleval, format_table

    if as_json and conlleval:
        raise click.UsageError("--json and --conlleval exclude each other")
    if predictions is not None:
        check_destination(predictions, "--predictions")
    if confusion is not None:  # fail before the work: bad suffix or path, or no matplotlib
        from nerwin.plot import _figure_class, check_suffix

        check_suffix(confusion)
        check_destination(confusion, "--confusion")
        _figure_class()
    sigint = _SigintFlag()
    written: list[str] = []
    try:
        with sigint:
            model = load_model(model_dir)  # also when workers load their own: fail early
            collect_less()
            runner = None
            if workers > 1:
                from functools import partial

                from nerwin.evaluation import eval_task
                from nerwin.parallel import run_parallel

                runner = partial(run_parallel, model_dir, workers=workers, task=eval_task,
                                 what="evaluation")
            scores, corpus, pred = evaluate_loaded(model, data_file, runner)
            sigint.check()  # a Ctrl-C swallowed on the way: no output from this run
            if predictions is not None:
                # The gold column is what the scores count (model.gold_tags: for the
                # logistic head only its positive type), so conlleval.pl on this file
                # agrees with the report.
                atomic_write_text(predictions, format_predictions(corpus.sentences, pred,
                                                                  model.gold_tags(corpus)),
                                  "--predictions")
                written.append(predictions)
            if confusion is not None:
                from nerwin.plot import confusion_figure, save_figure

                m = Path(model_dir).resolve()
                title = f"Tag confusion: {m.parent.name}/{m.name} on {Path(data_file).name}"
                save_figure(confusion_figure(scores["confusion"], title), confusion,
                            "--confusion")
                written.append(confusion)
    except KeyboardInterrupt:  # the workers are stopped; no output file is half written
        what = f"; wrote only {', '.join(written)}" if written else (
            "; no output was written" if predictions or confusion else "")
        click.echo(f"\ninterrupted{what}", err=True)
        sys.exit(130)
    if as_json:
        click.echo(json.dumps(scores, indent=2))
    elif conlleval:
        click.echo(format_conlleval(scores), nl=False)
    else:
        click.echo(format_table(scores))


@cli.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False))
@click.option("--output", type=click.Path(),
              help="Picture file, .png or .svg (default: RUN_DIR/learning_curves.png).")
def plot(run_dir: str, output: str | None) -> None:
    """Draw the learning curves of the run in RUN_DIR from its metrics.jsonl.

    Train and dev loss, dev F1 overall and per entity type, and the learning rate, one
    point per epoch; the best epoch (the model in best/) is marked. Needs matplotlib:
    pip install 'nerwin[plot]'.
    """
    from nerwin.plot import check_suffix, learning_curves, read_metrics, save_figure

    # The string as given: Path() would drop a trailing "/" that says "a folder".
    target = output if output is not None else str(Path(run_dir) / "learning_curves.png")
    what = "--output" if output is not None else "the picture"
    check_suffix(target)
    records = read_metrics(run_dir)
    check_destination(target, what)
    fig = learning_curves(records, title=f"{Path(run_dir).resolve().name}: learning curves")
    save_figure(fig, target, what)
    click.echo(f"wrote {target}")


@cli.command()
@click.argument("input_file", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("output_file", metavar="OUT", type=click.Path())
@click.option("--to", "target", required=True,
              type=click.Choice(["iob1", "iob2", "iobes", "jsonl"]),
              help="Output: CoNLL columns in this tag scheme, or JSON lines of spans.")
@click.option("--from", "source", type=click.Choice(["auto", "conll", "jsonl"]),
              default="auto", show_default=True,
              help="Input format; auto: jsonl for a .jsonl/.json file, else CoNLL.")
@click.option("--scheme", type=click.Choice(["auto", "iob1", "iob2", "iobes", "io"]),
              default="auto", show_default=True, help="Tag scheme of a CoNLL IN.")
@click.option("--tag-column", default=-1, show_default=True, type=int,
              help="Column of the NER tag in a CoNLL IN (-1: the last).")
def convert(input_file: str, output_file: str, target: str, source: str, scheme: str,
            tag_column: int) -> None:
    """Convert IN to OUT: CoNLL between the IOB1, IOB2 and IOBES schemes, CoNLL to JSON
    lines {"text", "entities": [[start, end, type], ...]}, and JSON lines back to CoNLL.

    CoNLL to CoNLL keeps every line and column and rewrites the tag; tags the reader
    repairs are counted as `nerwin data` counts them. OUT is written atomically.
    """
    from nerwin.convert import convert as run_convert

    check_destination(output_file, "OUT")
    stats = run_convert(input_file, output_file, target, source=source, scheme=scheme,
                        tag_column=tag_column)
    click.echo(stats.summary(output_file))


@cli.command()
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(file_okay=False))
@click.argument("output_file", metavar="OUT.onnx", type=click.Path())
def export(model_dir: str, output_file: str) -> None:
    """Write the network of MODEL_DIR (a run's best/ or last/) as ONNX to OUT.onnx.

    Feature ids in, per-token scores out; the vocabularies, feature rules, tags, window
    and crf scores go into the file's metadata. `nerwin tag OUT.onnx INPUT` tags with it
    through onnxruntime. Needs pip install 'nerwin[onnx]'.
    """
    from nerwin.ensemble import is_ensemble_folder
    from nerwin.onnx_export import export as run_export

    if is_ensemble_folder(model_dir):
        raise NerwinError(f"{model_dir}: is an ensemble; ONNX export takes one model (export "
                          f"a member, e.g. {model_dir}/members/0)")
    check_destination(output_file, "OUT.onnx")
    info = run_export(model_dir, output_file)
    click.echo(f"wrote {info['path']}: {info['bytes']:,} bytes, {info['head']} head, "
               f"{info['tags']} tags, inputs {', '.join(info['inputs'])}")


@cli.command()
@click.argument("models", metavar="MODEL...", nargs=-1, required=True,
                type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The ensemble folder to write (new, empty, or an earlier ensemble with "
                   "--force).")
@click.option("--force", is_flag=True, help="Replace an earlier ensemble folder at --out "
                                            "(never anything else).")
@click.option("--combine", type=click.Choice(["marginals", "potentials"]),
              default="potentials", show_default=True,
              help="potentials: average the members' raw scores and crf transitions and "
                   "decode as one model (better on CoNLL-2003 dev); marginals: average their "
                   "per-token log-probabilities (crf: log marginals) and decode once with "
                   "the allowed-transition mask.")
def ensemble(models: tuple[str, ...], out: str, force: bool, combine: str) -> None:
    """Combine trained models (runs' best/ folders) into one ensemble folder at --out.

    The folder holds copies of the members and a manifest with their hashes; `nerwin
    eval`, `nerwin tag` and nerwin.load() take it like a model. Members must share tags,
    scheme and head.
    """
    from nerwin.ensemble import write_ensemble
    from nerwin.model import load_checkpoint_model

    path = write_ensemble(list(models), out, load=load_checkpoint_model, force=force,
                          combine=combine)
    click.echo(f"wrote {path}: an ensemble of {len(models)} models ({combine})")


TAG_EXAMPLE = """
\b
Examples:
  echo "Karel Vosk visited Prague with Acme Corp." | nerwin tag runs/sample/best -
  nerwin tag runs/sample/best news.txt --output-format jsonl --output news.jsonl
  nerwin tag runs/sample/best data/sample/test.txt --input-format conll
"""


@cli.command(epilog=TAG_EXAMPLE)
@click.argument("model_dir", metavar="MODEL", type=click.Path())
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--input-format", type=click.Choice(["text", "conll"]), default="text",
              show_default=True,
              help="text: plain UTF-8, split into sentences and tokens; conll: one token a "
                   "line (first column), blank line between sentences, columns kept.")
@click.option("--output-format", type=click.Choice(["conll", "jsonl", "inline"]),
              default="conll", show_default=True,
              help="conll: columns plus the tag; jsonl: one JSON object a sentence with "
                   "offsets and scored entities; inline: [PER Karel Vosk] visited ...")
@click.option("--output", type=click.Path(),
              help="Write here (atomically: a temporary file, renamed when complete) "
                   "instead of standard output.")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none for stdin anyway).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes that tag chunks in parallel (each loads the model once); "
                   "the output is the same as with one, in input order.")
def tag(model_dir: str, input_file: str, input_format: str, output_format: str,
        output: str | None, quiet: bool, workers: int) -> None:
    """Tag INPUT (a file, or - for standard input) with MODEL: a run's best/ or last/
    folder, or a .onnx file from `nerwin export` (run by onnxruntime).

    Text input is split into sentences and tokens the way CoNLL-2003 is (every token keeps
    its character offsets); CoNLL input keeps every line and column and appends the tag.
    The input is read, tagged and written in chunks, so memory stays flat on big files; a
    progress bar goes to stderr when INPUT is a file. With --workers N, N processes tag
    chunks of whole lines in parallel.
    """
    if output is not None:
        check_destination(output, "--output")
    if workers > 1:
        from nerwin.parallel import start_early

        start_early()  # the workers' fork server imports nerwin while this process does
    from nerwin.api import load_model

    sigint = _SigintFlag()
    try:
        with sigint:
            model = load_model(model_dir)  # also when workers load their own: fail early
            collect_less()
            # A full or closed standard output is main()'s to report, as for every command.
            _tag_to(model, input_file, output, input_format, output_format, quiet, workers,
                    model_dir, sigint)
    except KeyboardInterrupt:  # the workers are stopped; an --output file is not written
        click.echo("\ninterrupted; no output was written" if output else "\ninterrupted",
                   err=True)
        sys.exit(130)


class _SigintFlag:
    """Within ``with``: Ctrl-C (SIGINT) raises KeyboardInterrupt, as by default, and is
    remembered. Python only prints a KeyboardInterrupt that surfaces in a garbage-collector
    callback or a ``__del__`` (multiprocessing has many) and goes on; :meth:`check` before
    committing an output raises it again, so such a Ctrl-C still stops the command."""

    def __init__(self) -> None:
        self.seen = False
        self._installed = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.seen:
            raise KeyboardInterrupt

    def __enter__(self) -> _SigintFlag:
        import signal
        import threading

        # SIGINT ignored from the start (a background job of a script, nohup) stays
        # ignored, as Python itself leaves it: whoever started us asked for that.
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._installed:
            # None: a handler not set from Python; the default is the nearest to it.
            signal.signal(signal.SIGINT, self._previous if self._previous is not None
                          else signal.default_int_handler)
            self._installed = False


def _tag_to(model: Any, input_file: str, output: str | None, input_format: str,
            output_format: str, quiet: bool, workers: int = 1, model_dir: str | None = None,
            sigint: _SigintFlag | None = None) -> None:
    """Stream INPUT (a file or stdin) through the model into OUTPUT (atomic) or stdout."""
    import contextlib

    from nerwin.atomic import atomic_writer
    from nerwin.tagging import tag_stream

    name = "<stdin>" if input_file == "-" else input_file
    with contextlib.ExitStack() as stack:
        if input_file == "-":
            src = sys.stdin.buffer
        else:
            try:
                src = stack.enter_context(open(input_file, "rb"))  # noqa: SIM115
            except OSError as e:
                raise os_error(input_file, e, "text to tag") from None
        on_bytes = None
        if not quiet and input_file != "-" and os.path.isfile(input_file):
            from tqdm import tqdm

            bar = stack.enter_context(tqdm(total=os.path.getsize(input_file), unit="B",
                                           unit_scale=True, desc="tagging", file=sys.stderr,
                                           leave=False))
            on_bytes = bar.update
        if output is not None:
            out = stack.enter_context(atomic_writer(output, "--output"))
        else:
            out = sys.stdout
        runner = None
        if workers > 1:
            from nerwin.parallel import Workers

            runner = Workers(model_dir or "", workers)
        tag_stream(model, src, name, out, input_format=input_format,
                   output_format=output_format, on_bytes=on_bytes, runner=runner)
        if sigint is not None:
            sigint.check()  # a Ctrl-C swallowed on the way: the output is not renamed into place


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@set_option
@click.option("--samples", default=8, show_default=True, type=click.IntRange(1),
              help="Number of training windows in the checked batch.")
@click.option("--eps", default=1e-4, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Step of the central differences.")
@click.option("--tol", default=1e-6, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Largest relative error that passes.")
@click.option("--max-entries", default=200, show_default=True, type=click.IntRange(1),
              help="Entries checked per parameter (all of them for smaller parameters).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="Seed of the parameters, the windows and the sampled entries.")
def gradcheck(config_path: str, overrides: tuple[str, ...], samples: int, eps: float,
              tol: float, max_entries: int, seed: int) -> None:
    """Check every hand-derived gradient of CONFIG's network against central differences.

    Builds the configured network in float64 on SAMPLES windows of the training data
    (dropout off, fixed seed) and prints, per parameter, the entries checked and the
    largest relative error |a - n| / max(1e-8, |a| + |n|). Exit 0 if all pass, 1 if not; a
    trainable parameter of which no entry could be compared (all crossed a kink or were too
    noisy, e.g. with a large --eps) is NOT CHECKED, which is not a pass (exit 1).
    """
    from nerwin.config import load_config
    from nerwin.gradcheck import check_gradients, format_gradcheck_table, passed
    from nerwin.model import gradcheck_batch

    cfg = load_config(config_path, list(overrides))
    net, inputs, y, lengths, rng = gradcheck_batch(cfg, samples, seed)
    rows = check_gradients(net, inputs, y, lengths=lengths, eps=eps, max_entries=max_entries,
                           rng=rng, tol=tol)
    what = (f"{len(y)} windows" if lengths is None else
            f"{len(lengths)} sentence{'s' * (len(lengths) != 1)}, {len(y)} tokens")
    click.echo(f"{config_path}: {cfg.model.nonlinearity}, head {cfg.model.head}, window "
               f"{cfg.features.window}, hidden {list(cfg.model.hidden)}{_conv_text(cfg)}, "
               f"{what}, "
               f"float64, eps {eps:g}")
    click.echo(format_gradcheck_table(rows, tol))
    if not passed(rows, tol):
        sys.exit(1)


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@set_option
@click.option("--batch", type=click.IntRange(1), default=None,
              help="Tokens in the batch the shapes are for (default: training.batch_size).")
@click.option("--gradients", is_flag=True,
              help="Run one forward and backward pass on the first training batch and add "
                   "the norms of each node's output and δ and of each parameter's gradient.")
@click.option("--format", "fmt", type=click.Choice(["text", "dot"]), default="text",
              show_default=True, help="A table, or Graphviz DOT (dot -Tpng) for a picture.")
def graph(config_path: str, overrides: tuple[str, ...], batch: int | None, gradients: bool,
          fmt: str) -> None:
    """Print the computation graph of CONFIG's network.

    One line per node in topological order (input windows, each table lookup, the
    concatenation, each block's affine map and nonlinearity, the scores and the loss) with
    its output shape for a batch of --batch tokens, the parameters it reads and its forward
    multiply-adds; then every parameter (shape, count, kind, regularised) and the totals.
    The graph is read from the parts the network runs, so it is the network trained.
    """
    from nerwin.config import load_config
    from nerwin.graph import format_dot, format_text, gradient_pass, graph_of, training_batch

    cfg = load_config(config_path, list(overrides))
    n = batch if batch is not None else cfg.training.batch_size
    model, inputs, y, lens = training_batch(cfg, n)
    B = len(y) if gradients else n
    g = graph_of(model.net, B)
    if gradients:
        gradient_pass(g, inputs, y, lens)
        g.batch_text = (f"the first training batch ({len(y)} tokens"
                        + (f" in {len(lens)} sentences" if lens is not None else "")
                        + ") at the initial parameters")
    m = cfg.model
    title = (f"{config_path}: window {cfg.features.window} ({model.net.spec.n_positions} "
             f"positions), hidden {list(m.hidden)} {m.nonlinearity}{_conv_text(cfg)}, "
             f"head {m.head}; "
             f"batch B = {B} tokens")
    click.echo(format_dot(g, title) if fmt == "dot" else format_text(g, title), nl=False)


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--space", "space_path", required=True, type=click.Path(dir_okay=False),
              help="YAML mapping config keys to {choice: [...]}, {uniform: [a, b]}, "
                   "{log_uniform: [a, b]} or {int: [a, b]}.")
@click.option("--out", required=True, type=click.Path(),
              help="Sweep directory (new, empty or this sweep's): trial-NNNN/ run "
                   "directories, sweep.json, study.db, best_config.yaml.")
@click.option("--trials", default=20, show_default=True, type=click.IntRange(1),
              help="Finished (complete or pruned) trials the study should hold in total.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Trials run at once, each in its own process on one BLAS thread.")
@click.option("--storage", default=None,
              help="Optuna storage URL shared by every worker (default: sqlite:///OUT/study.db), "
                   "e.g. postgresql+psycopg2://user:password@host/db; a server's connect "
                   "timeout is 5 s unless the URL sets ?connect_timeout=SECONDS.")
@click.option("--study", "study_name", default=None,
              help="Study name in the storage (default: nerwin).")
@set_option
@click.option("--no-prune", is_flag=True,
              help="Do not stop trials whose dev F1 is below the median of earlier trials.")
@click.option("--json", "as_json", is_flag=True, help="Print the ranked results as JSON.")
def sweep(config_path: str, space_path: str, out: str, trials: int, workers: int,
          storage: str | None, study_name: str | None, overrides: tuple[str, ...],
          no_prune: bool, as_json: bool) -> None:
    """Search the config keys of SPACE for the best dev F1 (Optuna TPE, median pruning).

    Each trial trains CONFIG (with --set and its sampled values) into OUT/trial-NNNN. The same
    command again continues the study up to --trials; on several machines, give each the same
    command and a shared --storage. Prints a ranked table and writes OUT/best_config.yaml.
    """
    from nerwin.sweep import format_results, prepare, run_sweep

    spec = prepare(config_path, space_path, out, trials=trials, storage=storage,
                   study=study_name, overrides=list(overrides), prune=not no_prune)
    result = run_sweep(spec, workers)
    if as_json:
        click.echo(json.dumps(result.to_json(spec), indent=2))
    else:
        if result.stale:
            click.echo(f"marked failed (their worker was gone): trials "
                       f"{', '.join(map(str, result.stale))}")
        click.echo(format_results(result.rows, result.dims))
        if result.best_config is not None:
            click.echo(f"best config: {result.best_config}")
    for e in result.worker_errors:
        click.echo(f"error: {e}", err=True)
    if result.interrupted:
        sys.exit(130)
    if result.best_config is None or result.worker_errors:
        sys.exit(1)


class _StdoutFailed(Exception):
    """Standard output could not be written (a full disk, a closed pipe).

    Deliberately not an OSError: the commands' own OSError handling (and click's, which
    exits 1 on a closed pipe) must leave it to :func:`main`, the one place that reports it.
    """

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _GuardedStdout(io.RawIOBase):
    """File descriptor 1 as a raw stream whose failed writes raise :class:`_StdoutFailed`,
    so a failure of standard output is told apart from any other OSError."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        try:
            return os.write(self._fd, data)
        except OSError as e:
            raise _StdoutFailed(e) from None


def _guard_stdout() -> None:
    """Put :class:`_GuardedStdout` under ``sys.stdout`` (same encoding and buffering)."""
    old = sys.stdout
    try:
        fd = old.fileno()
        old.flush()
    except (AttributeError, OSError, ValueError):
        return  # no real standard output (embedded, or already closed): leave it alone
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(_GuardedStdout(fd)),
                                  encoding=old.encoding, errors=old.errors,
                                  line_buffering=old.line_buffering)


def _stdout_failed(e: OSError) -> int:
    """Report a failed standard output once; the exit code.

    A closed pipe (``nerwin tag ... | head -1``) is the reader saying it has enough: a
    quiet exit with the status a Unix tool killed by SIGPIPE has in the shell, 141, so
    ``set -o pipefail`` still sees that the command did not finish (a ``nerwin train ... |
    head`` stops training) while an interactive ``| head`` shows nothing. Anything else (a
    full disk, an I/O error) is one line on stderr and exit 1. Either way file descriptor 1
    then points at /dev/null, so the interpreter's last flush of what is still buffered
    cannot fail again.
    """
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    if e.errno == errno.EPIPE:
        return 128 + 13  # 13 = SIGPIPE on every POSIX system (signal.SIGPIPE is not on Windows)
    with contextlib.suppress(OSError):
        click.echo(f"Error: cannot write to standard output: {e.strerror or e}", err=True)
    return 1


def main() -> None:
    """Console-script entry point: the CLI, and the one handler of a failed stdout."""
    keep_freed_memory()  # before numpy loads, for this process and its workers
    _guard_stdout()
    code: Any = 0
    try:
        try:
            cli(prog_name="nerwin")  # standalone mode: always ends in SystemExit
        except SystemExit as e:
            code = e.code
        sys.stdout.flush()  # what is still buffered must fail here, not at exit
    except _StdoutFailed as e:
        code = _stdout_failed(e.error)
    sys.exit(code)


def _conv_text(cfg: Any) -> str:
    """", conv blocks 3x300 relu, 3x300 relu" for the summary lines (empty without)."""
    b = cfg.model.blocks
    return (", conv blocks " + ", ".join(f"{x.width}x{x.units} {x.nonlinearity}" for x in b)
            if b else "")


if __name__ == "__main__":  # pragma: no cover
    main()
