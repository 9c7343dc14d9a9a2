"""A spaCy pipeline component that sets ``doc.ents`` from a nerwin model (extra ``spacy``).

    import spacy
    nlp = spacy.blank("en")
    nlp.add_pipe("nerwin", config={"model": "runs/sample/best"})
    doc = nlp("Karel Vosk visited Prague.")
    [(e.text, e.label_, e._.nerwin_score) for e in doc.ents]

The factory ``nerwin`` is registered through spaCy's ``spacy_factories`` entry point (so
``spacy.load`` finds it without importing nerwin first) and by importing this module.

How entities reach spaCy's tokens: nerwin tokenises ``doc.text`` itself (the CoNLL-2003
conventions its models were trained on, nerwin.tokenize) and tags it; each entity is a
character span, placed on spaCy's tokens with ``doc.char_span``. Where the two
tokenisations agree at the entity's edges the span is exact. Where an edge falls inside a
spaCy token (spaCy keeps ``Prague-based`` whole where nerwin cuts ``Prague``, say), the
config key ``alignment_mode`` decides: ``"expand"`` (the default) widens the span to the
whole spaCy tokens, ``"contract"`` narrows it to the spaCy tokens inside it, ``"strict"``
drops the entity. A span that would overlap one already placed (possible after expanding),
or that contracts to nothing, is dropped. ``component.stats`` counts every case
(``entities``, ``exact``, ``realigned``, ``dropped``).

Scores: each entity's nerwin score (the mean probability of its type over its tokens) is
``span._.nerwin_score``; ``doc.spans["nerwin"]`` holds the same spans with the scores in
``doc.spans["nerwin"].attrs["scores"]`` (the convention of spaCy's span categoriser).
``doc.ents`` is replaced (an earlier NER component's entities are overwritten).

Serialisation: ``nlp.to_disk(path)`` copies the model (the checkpoint folder, or the
.onnx file) into the component's folder, and ``spacy.load(path)`` reads it from there, so
the saved pipeline does not depend on the original model path.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

try:
    from spacy.language import Language
    from spacy.tokens import Doc, Span, SpanGroup
    from spacy.util import minibatch
except ImportError as e:  # pragma: no cover - the test imports spacy or skips
    from nerwin.errors import NerwinError

    raise NerwinError("the spaCy component needs spaCy: pip install 'nerwin[spacy]'") from e

import nerwin

ALIGNMENT_MODES = ("expand", "contract", "strict")
SPANS_KEY = "nerwin"

if not Span.has_extension("nerwin_score"):
    Span.set_extension("nerwin_score", default=None)


class NerwinComponent:
    """Sets ``doc.ents`` from nerwin's entities (see the module docstring)."""

    def __init__(self, nlp: Language, name: str, model: str, alignment_mode: str = "expand",
                 batch_size: int = 256) -> None:
        if alignment_mode not in ALIGNMENT_MODES:
            raise ValueError(f"nerwin component: alignment_mode {alignment_mode!r}; expected "
                             f"one of {', '.join(ALIGNMENT_MODES)}")
        self.name = name
        self.model_path = str(model) if model else ""
        self.alignment_mode = alignment_mode
        self.batch_size = batch_size
        self.stats: Counter = Counter()
        # Loaded on first use or by from_disk: spacy.load builds the component with the
        # original model path (which may no longer exist) before from_disk gives it the copy.
        self._tagger: Any = None

    @property
    def tagger(self) -> Any:
        if self._tagger is None:
            if not self.model_path:
                raise nerwin.NerwinError('nerwin component: no model; add it with '
                                         'config={"model": "runs/x/best"}')
            self._tagger = nerwin.load(self.model_path)
        return self._tagger

    # -- tagging

    def __call__(self, doc: Doc) -> Doc:
        return self._set(doc, self.tagger(doc.text))

    def pipe(self, stream: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Whole batches of docs through nerwin's network at once."""
        for docs in minibatch(stream, size=batch_size or self.batch_size):
            tagged = self.tagger.pipe([d.text for d in docs], batch_size=len(docs))
            for doc, nd in zip(docs, tagged):
                yield self._set(doc, nd)

    def _set(self, doc: Doc, nd: Any) -> Doc:
        spans: list[Span] = []
        scores: list[float] = []
        taken = set()  # spaCy token indices already inside a span
        for e in nd.entities:
            self.stats["entities"] += 1
            span = doc.char_span(e.start, e.end, label=e.type, alignment_mode="strict")
            how = "exact"
            if span is None and self.alignment_mode != "strict":
                span = doc.char_span(e.start, e.end, label=e.type,
                                     alignment_mode=self.alignment_mode)
                how = "realigned"
            if span is None or len(span) == 0 or taken.intersection(range(span.start,
                                                                          span.end)):
                self.stats["dropped"] += 1
                continue
            self.stats[how] += 1
            taken.update(range(span.start, span.end))
            span._.nerwin_score = e.score
            spans.append(span)
            scores.append(e.score)
        doc.ents = spans
        doc.spans[SPANS_KEY] = SpanGroup(doc, name=SPANS_KEY, spans=spans,
                                         attrs={"scores": scores})
        return doc

    # -- serialisation: the model travels with the pipeline

    def _source(self) -> Path:
        return Path(self._tagger.path if self._tagger is not None else self.model_path)

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        src = self._source()
        for old in ("model", "model.onnx"):
            target = path / old
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        if src.is_dir():
            shutil.copytree(src, path / "model")
        else:
            shutil.copyfile(src, path / "model.onnx")

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> NerwinComponent:
        path = Path(path)
        for name in ("model", "model.onnx"):
            if (path / name).exists():
                self._tagger = nerwin.load(path / name)
                return self
        raise nerwin.NerwinError(f"{path}: no nerwin model in this pipeline folder")


@Language.factory("nerwin", default_config={"model": "", "alignment_mode": "expand",
                                            "batch_size": 256})
def make_nerwin(nlp: Language, name: str, model: str, alignment_mode: str,
                batch_size: int) -> NerwinComponent:
    """The spaCy factory ``nerwin`` (entry point ``spacy_factories``)."""
    return NerwinComponent(nlp, name, model, alignment_mode, batch_size)
