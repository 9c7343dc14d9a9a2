"""nerwin's public Python API: load a model once, tag text; train; evaluate.

Everything here is exported from the package (``nerwin.load``, ``nerwin.train``, ...), and
the command line goes through the same functions (``nerwin tag``, ``eval`` and ``train``
call :func:`load`, :func:`evaluate` and :func:`train`'s internals), so the two cannot drift.

    >>> import nerwin
    >>> ner = nerwin.load("runs/sample/best")          # a run's best/ or last/, or .onnx
    >>> doc = ner("Karel Vosk visited Prague.")
    >>> [(e.type, e.start, e.end, e.text, e.score) for e in doc.entities]

Offsets are Python string indices into the text given: ``text[e.start:e.end] == e.text``
for every entity and ``text[a:b] == token`` for every token.

Threads: a :class:`Tagger` holds no state that tagging changes (the model's parameters
and vocabularies are only read; every call builds its own arrays), so one tagger may be
shared by any number of threads. numpy releases the GIL in its matrix products, so threads
overlap there; for real parallelism use processes (one tagger each).

Errors in what the caller gives (a missing model, a bad config key, a text that is not a
string) raise :class:`nerwin.NerwinError` with the message the command line prints.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerwin.errors import NerwinError
from nerwin.tagging import Entity

if TYPE_CHECKING:  # pragma: no cover
    from nerwin.config import Config
    from nerwin.conll import Corpus
    from nerwin.train import RunInfo

__all__ = ["Doc", "Entity", "Tagger", "evaluate", "load", "train"]

_EOL = re.compile(r"\r\n|\r|\n")  # the line ends nerwin tag splits text input at


@dataclass
class Doc:
    """A tagged text.

    text:      the text as given;
    tokens:    its tokens (split the way CoNLL-2003 is, see nerwin.tokenize);
    offsets:   ``(start, end)`` of each token in ``text``;
    tags:      one IOB2 tag per token;
    entities:  the entities, in order;
    sentences: ``(first, stop)`` token index range of each sentence.
    """

    text: str
    tokens: list[str] = field(default_factory=list)
    offsets: list[tuple[int, int]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    sentences: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (entities as dicts)."""
        d = dataclasses.asdict(self)
        d["offsets"] = [list(o) for o in self.offsets]
        d["sentences"] = [list(s) for s in self.sentences]
        return d


def _lines(text: str) -> Iterator[tuple[int, int, str]]:
    """(line number, offset of the line in ``text``, line) for every line of ``text``."""
    pos, n = 0, 0
    for n, m in enumerate(_EOL.finditer(text), start=1):
        yield n, pos, text[pos:m.start()]
        pos = m.end()
    if pos < len(text) or not text:  # the last line, if it has no line end
        yield n + 1, pos, text[pos:]


class Tagger:
    """A loaded model that tags text (what :func:`load` returns).

    ``ner(text)`` tags one text, ``ner.pipe(texts)`` a stream of them (whole batches
    through the network), ``ner.tag_tokens(sentences)`` pre-tokenised sentences.
    """

    def __init__(self, model: Any, path: str | Path) -> None:
        self.model = model  # nerwin.model.Model, or nerwin.onnx_export.OnnxModel
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"nerwin.Tagger({str(self.path)!r}, tags={self.tags})"

    @property
    def tags(self) -> list[str]:
        """The IOB2 tags the model knows."""
        return list(self.model.lex.tags.itos)

    @property
    def entity_types(self) -> list[str]:
        """The entity types the model can predict."""
        return sorted({t[2:] for t in self.tags if t != "O"})

    # --------------------------------------------------------------- raw text

    def __call__(self, text: str) -> Doc:
        """Tag one text (any number of lines and sentences)."""
        return next(self.pipe([text]))

    def pipe(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[Doc]:
        """Tag a stream of texts, ``batch_size`` texts at a time through the network, one
        :class:`Doc` per text in order. Only one batch is held in memory."""
        if isinstance(texts, str):
            raise NerwinError("pipe() takes an iterable of texts, got one str; "
                              "call the tagger on it instead")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise NerwinError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        batch: list[str] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise NerwinError(f"text {i}: expected a str, got {type(text).__name__}")
            batch.append(text)
            if len(batch) == batch_size:
                yield from self._tag_texts(batch)
                batch = []
        if batch:
            yield from self._tag_texts(batch)

    def _tag_texts(self, texts: list[str]) -> list[Doc]:
        from nerwin.tagging import tag_items, text_block

        per_text = []
        all_items = []
        for text in texts:
            lines = list(_lines(text))  # numbered from 1, none holding a line end
            records = text_block(1, "\n".join(line for _, _, line in lines))
            placed = [(start + it.offset, it) for (_, start, _), rec in zip(lines, records)
                      for it in rec.items]
            per_text.append(placed)
            all_items.extend(it for _, it in placed)
        tag_items(self.model, all_items, scores=True)
        return [_doc(text, placed) for text, placed in zip(texts, per_text)]

    # --------------------------------------------------------------- tokens

    def tag_tokens(self, sentences: Sequence[Sequence[str]]) -> list[Doc]:
        """Tag pre-tokenised sentences: one :class:`Doc` per sentence, whose text is the
        tokens joined by single spaces (offsets and entities refer to that text)."""
        from nerwin.tagging import Item, tag_items

        if isinstance(sentences, str) or not isinstance(sentences, Sequence):
            raise NerwinError("tag_tokens() takes a list of sentences, each a list of tokens")
        items = []
        for i, toks in enumerate(sentences):
            if isinstance(toks, str) or not isinstance(toks, Sequence):
                raise NerwinError(f"sentence {i}: expected a list of token strings, got "
                                  f"{type(toks).__name__}")
            for j, t in enumerate(toks):
                if not isinstance(t, str) or not t or t.isspace():
                    raise NerwinError(f"sentence {i}, token {j}: expected a non-blank str, "
                                      f"got {t!r}")
            starts, ends, pos = [], [], 0
            for t in toks:
                starts.append(pos)
                ends.append(pos + len(t))
                pos += len(t) + 1
            items.append(Item(list(toks), starts, ends, " ".join(toks), i + 1))
        tag_items(self.model, [it for it in items if it.tokens], scores=True)
        return [_doc(it.text, [(0, it)] if it.tokens else []) for it in items]


def _doc(text: str, placed: list[tuple[int, Any]]) -> Doc:
    """A Doc of ``text`` from its tagged items, each placed at its offset in ``text``."""
    doc = Doc(text)
    for base, it in placed:
        first = len(doc.tokens)
        doc.tokens.extend(it.tokens)
        doc.offsets.extend((base + a, base + b) for a, b in zip(it.starts, it.ends))
        doc.tags.extend(it.tags)
        doc.entities.extend(Entity(e.type, base + e.start, base + e.end, e.text, e.score)
                            for e in it.entities)
        doc.sentences.append((first, len(doc.tokens)))
    return doc


# ------------------------------------------------------------------------- loading


def load_model(path: str | Path) -> Any:
    """The model at ``path``: a checkpoint folder (a run's ``best/`` or ``last/``) as a
    nerwin.model.Model, an ensemble folder (``nerwin ensemble``) as a
    nerwin.ensemble.EnsembleModel, or an exported ``.onnx`` file as an onnxruntime-backed
    model with the same tagging methods. What ``nerwin tag`` and :func:`load` use."""
    p = Path(path)
    if p.suffix == ".onnx" and not p.is_dir():
        from nerwin.onnx_export import load_onnx_model

        return load_onnx_model(p)
    from nerwin.model import load_model as load_checkpoint_model

    return load_checkpoint_model(p)


def load(path: str | Path) -> Tagger:
    """Load the model at ``path`` (a run's ``best/`` or ``last/``, an ensemble folder, or
    an exported ``.onnx`` file) and return a :class:`Tagger`. Loading reads and verifies the
    files each time; keep the tagger to tag many texts."""
    if not isinstance(path, (str, Path)):
        raise NerwinError(f"load(): expected a path, got {type(path).__name__}")
    return Tagger(load_model(path), path)


# ------------------------------------------------------------------------- training


def __getattr__(name: str) -> Any:
    # RunInfo lives with the training loop (nerwin.train); imported when first asked for.
    if name == "RunInfo":
        from nerwin.train import RunInfo

        return RunInfo
    raise AttributeError(f"module 'nerwin.api' has no attribute {name!r}")


def resolve_config(config: str | Path | Config,
                   overrides: Mapping[str, Any] | Sequence[str] | None = None) -> Config:
    """A Config from a YAML path (or a Config) with overrides applied (see
    nerwin.config.resolve_config)."""
    from nerwin.config import resolve_config as resolve

    return resolve(config, overrides)


def train(config: str | Path | Config, overrides: Mapping[str, Any] | None = None,
          out: str | Path | None = None, *, resume: bool = False, force: bool = False,
          quiet: bool = True, echo: Any = None) -> RunInfo:
    """Train the model of ``config`` (a YAML path or a Config) with ``overrides``
    applied, into ``out`` (default: the config's output.dir); return a :class:`RunInfo`.

    The same run as ``nerwin train CONFIG --set k=v --out OUT``: ``resume`` and ``force``
    are its flags, ``quiet`` turns off the progress bar, and ``echo`` receives the
    per-epoch lines (default: discarded). ``nerwin.train(...)`` is this function (the
    module nerwin/train.py, callable).
    """
    from nerwin.train import run

    return run(config, overrides, out, resume=resume, force=force, quiet=quiet, echo=echo)


# ------------------------------------------------------------------------- evaluation


def evaluate_corpus(model: str | Path | Tagger | Any, data: str | Path
                    ) -> tuple[dict[str, Any], Corpus, list[list[str]]]:
    """Scores of ``model`` on the CoNLL file ``data``, with the corpus read and the
    predicted tags (what ``nerwin eval`` prints and writes)."""
    if isinstance(model, Tagger):
        m = model.model
    elif isinstance(model, (str, Path)):
        m = load_model(model)
    else:
        m = model
    return evaluate_loaded(m, data)


def evaluate_loaded(m: Any, data: str | Path, runner: Any = None
                    ) -> tuple[dict[str, Any], Corpus, list[list[str]]]:
    """:func:`evaluate_corpus` of a loaded model ``m``, chunk by chunk (nerwin.evaluation);
    ``runner`` runs the chunks elsewhere (``nerwin eval --workers``: nerwin.parallel)."""
    from nerwin.dataset import read_split
    from nerwin.evaluation import evaluate_in_chunks

    if not hasattr(m, "evaluate"):
        raise NerwinError("evaluate needs a checkpoint folder (best/ or last/); an exported "
                          ".onnx model only tags")
    scores, pred, corpus = evaluate_in_chunks(m, lambda: read_split(m.cfg, data), runner)
    scores["file"] = str(corpus.path)
    return scores, corpus, pred


def evaluate(model: str | Path | Tagger, data: str | Path) -> dict[str, Any]:
    """Entity-level scores (conlleval semantics) of ``model`` (a checkpoint path or a
    Tagger) on the CoNLL file ``data``, in percent: ``scores["f1"]``, ``"precision"``,
    ``"recall"``, per type under ``scores["per_type"]``, ``"token_accuracy"``, ``"loss"``,
    ... (the dict ``nerwin eval --json`` prints)."""
    return evaluate_corpus(model, data)[0]
