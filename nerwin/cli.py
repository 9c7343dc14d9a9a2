"""The command line: click commands that parse options and call the library. Nothing else.

Errors in what the user gave (:class:`~nerwin.errors.NerwinError`) become one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nerwin import __version__
from nerwin.errors import NerwinError
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
    nerwin train CONFIG            train; writes metrics.jsonl, best/ and last/
    nerwin eval MODEL DATA         entity-level scores (conlleval semantics)
    nerwin tag MODEL INPUT         tag new text (one token a line)
    nerwin gradcheck CONFIG        hand-derived vs numerical gradients
    """


@cli.group()
def config() -> None:
    """Inspect configs."""


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
@click.option("--force", is_flag=True, help="Overwrite an existing run in the run directory.")
@click.option("--quiet", is_flag=True, help="No progress bar; only the per-epoch lines.")
def train(config_path: str, overrides: tuple[str, ...], out: str | None, resume: bool,
          force: bool, quiet: bool) -> None:
    """Train the model of CONFIG.

    Writes the run directory: config.yaml, metrics.jsonl (one line per epoch), best/ (best
    dev F1) and last/ (with optimiser state, for --resume), and test_scores.json when
    data.test is set. Ctrl-C keeps the checkpoints of the last finished epoch.
    """
    import dataclasses

    from nerwin.config import OutputConfig, load_config
    from nerwin.metrics import format_table
    from nerwin.train import train as run_training

    if resume and force:
        raise click.UsageError("--resume and --force exclude each other")
    cfg = load_config(config_path, list(overrides))
    if out is not None:
        cfg = dataclasses.replace(cfg, output=OutputConfig(dir=Path(out).resolve()))
    try:
        result = run_training(cfg, cfg.output.dir, resume=resume, force=force, quiet=quiet,
                              echo=click.echo)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted; {cfg.output.dir}/last holds the last finished epoch: "
                   f"continue with --resume", err=True)
        sys.exit(130)
    s = result.state
    if s.best_f1 is not None:
        click.echo(f"best dev F1 {s.best_f1:.2f} at epoch {s.best_epoch}: "
                   f"{result.out_dir / 'best'}")
    if result.test_scores is not None:
        click.echo(f"test scores of best/ on {result.test_scores['file']}:")
        click.echo(format_table(result.test_scores))


@cli.command("eval")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(file_okay=False))
@click.argument("data_file", metavar="DATA_FILE", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
@click.option("--predictions", type=click.Path(dir_okay=False),
              help="Write token, gold and predicted tags in CoNLL columns (conlleval input).")
def eval_cmd(model_dir: str, data_file: str, as_json: bool, predictions: str | None) -> None:
    """Score the model in MODEL_DIR (a run's best/ or last/) on DATA_FILE.

    Entity-level precision, recall and F1 with conlleval's semantics (exact span and type),
    per type and overall, plus token accuracy. The data file is read with the model's own
    scheme and tag column.
    """
    from nerwin.checkpoint import atomic_write_text
    from nerwin.conll import format_predictions
    from nerwin.dataset import read_split
    from nerwin.metrics import format_table
    from nerwin.model import load_model

    model = load_model(model_dir)
    corpus = read_split(model.cfg, data_file)
    scores, pred = model.evaluate(corpus)
    scores["file"] = str(corpus.path)
    if predictions:
        atomic_write_text(predictions, format_predictions(corpus.sentences, pred))
    click.echo(json.dumps(scores, indent=2) if as_json else format_table(scores))


@cli.command()
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(file_okay=False))
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False))
@click.option("--output", type=click.Path(dir_okay=False),
              help="Write the tagged file here (atomically) instead of standard output.")
def tag(model_dir: str, input_file: str, output: str | None) -> None:
    """Tag the tokens of INPUT with the model in MODEL_DIR.

    INPUT has one token a line (the first column; other columns, such as gold tags, are
    ignored) and a blank line between sentences. The output has the token and its IOB2 tag.
    """
    from nerwin.checkpoint import atomic_write_text
    from nerwin.conll import format_columns, read_tokens
    from nerwin.model import load_model

    model = load_model(model_dir)
    sentences = read_tokens(input_file)
    text = format_columns(sentences, model.tag(sentences))
    if output:
        atomic_write_text(output, text)
    else:
        click.echo(text, nl=False)


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
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the parameters, the windows and the sampled entries.")
def gradcheck(config_path: str, overrides: tuple[str, ...], samples: int, eps: float,
              tol: float, max_entries: int, seed: int) -> None:
    """Check every hand-derived gradient of CONFIG's network against central differences.

    Builds the configured network in float64 on SAMPLES windows of the training data
    (dropout off, fixed seed) and prints, per parameter, the entries checked and the
    largest relative error |a - n| / max(1e-8, |a| + |n|). Exit 0 if all pass, 1 if not.
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
               f"{cfg.features.window}, hidden {list(cfg.model.hidden)}, {what}, "
               f"float64, eps {eps:g}")
    click.echo(format_gradcheck_table(rows, tol))
    if not passed(rows, tol):
        sys.exit(1)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="nerwin")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
