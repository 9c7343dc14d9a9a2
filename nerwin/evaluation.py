"""``nerwin eval``: a CoNLL file scored chunk by chunk, in this process or in N workers.

The parent reads the file and plans the evaluation batches from the sentence lengths alone
(``model.eval_plan``: about 4096 tokens each; whole sentences when the head or a block
needs them, else plain row ranges, as every evaluation has always cut them). It groups
consecutive batches into chunks of :data:`CHUNK_BATCHES`; a chunk carries the sentences its
batches cover (their tokens and gold tags, re-indexed to the chunk), the batches as row
ranges within them, and the corpus's token count (which tables the network precomputes
depends on it: nerwin.nn.project). ``model.eval_part`` encodes a chunk and runs its batches:
the predicted ids of their rows and the loss terms. With one worker the parent does that
itself, chunk after chunk; with N, nerwin.parallel's workers do (each loads the model once),
at most 2·N chunks in flight. The parent puts the results together in input order and
``model.eval_finish`` scores them.

Equality, by construction: one worker and N run the very same chunks through the very same
code, so every output (the table, ``--json``, ``--conlleval``, ``--predictions``,
``--confusion``) is byte-identical. And a chunk's batches are the batches of a
whole-corpus evaluation (Model.evaluate, which scores dev during training): the same rows
in the same order, the same projections (built for the corpus's token count, not the
chunk's: a test fails otherwise) and the loss terms summed in the same order. A chunk's
distinct tokens keep the corpus's order, so even the character feature's per-batch table of
distinct words has its rows in the same order. So ``nerwin eval`` gives what
Model.evaluate gives, bit for bit (tests check both, on every head, an ensemble of each
kind, every feature and block, and CoNLL-2003 dev).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerwin.conll import Corpus
from nerwin.errors import NerwinError

#: Evaluation batches (about 4096 tokens each) per chunk.
CHUNK_BATCHES = 2


@dataclass(frozen=True)
class EvalChunk:
    """The part of a corpus one chunk reads: its sentences as Corpus arrays (``types`` the
    chunk's distinct tokens, in the corpus's order; ``offsets`` from 0), the batches as
    (start, stop, sentence lengths or None) rows of its encoding, and ``n_tokens``, the
    whole corpus's token count."""

    path: str
    scheme: str
    types: list[str]
    token_ids: np.ndarray
    tag_names: tuple[str, ...]
    tag_ids: np.ndarray
    offsets: np.ndarray
    lines: np.ndarray
    batches: list[tuple[int, int, Any]]
    n_tokens: int

    def corpus(self) -> Corpus:
        return Corpus.from_arrays(Path(self.path), self.types, self.token_ids,
                                  self.tag_names, self.tag_ids, self.offsets, self.lines,
                                  scheme=self.scheme)


def chunks(corpus: Corpus, plan: list[tuple[int, int, Any]],
           chunk_batches: int = CHUNK_BATCHES) -> Iterator[EvalChunk]:
    """The chunks of ``plan`` (consecutive batches of ``corpus``), in order, built lazily."""
    offsets = corpus.offsets
    for i in range(0, len(plan), chunk_batches):
        group = plan[i: i + chunk_batches]
        a, b = group[0][0], group[-1][1]
        # The sentences that hold rows a..b-1: a row-range batch may start or end inside
        # one (argmax softmax and logistic heads cut rows, not sentences); its other rows
        # are encoded, not run.
        s0 = int(np.searchsorted(offsets, a, side="right")) - 1
        s1 = max(s0, int(np.searchsorted(offsets, b, side="left")))
        t0, t1 = int(offsets[s0]), int(offsets[s1])
        uniq, local = np.unique(corpus.token_ids[t0:t1], return_inverse=True)
        types = corpus.types
        yield EvalChunk(
            path=str(corpus.path), scheme=corpus.scheme,
            types=[types[k] for k in uniq.tolist()],
            token_ids=local.astype(np.int32).reshape(-1),
            tag_names=tuple(corpus.tag_names), tag_ids=corpus.tag_ids[t0:t1],
            offsets=offsets[s0: s1 + 1] - t0, lines=corpus.lines[s0:s1],
            batches=[(x - t0, y - t0, lens) for x, y, lens in group],
            n_tokens=corpus.n_tokens)


class ChunkRunner:
    """Runs chunks on one loaded model (nerwin.model.Model or an ensemble): encode, then
    ``eval_part``; keeps the projections of the last corpus size, as they are the same for
    every chunk of one evaluation."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._proj: tuple[int, Any] | None = None

    def __call__(self, chunk: EvalChunk) -> tuple[np.ndarray, np.ndarray]:
        if self._proj is None or self._proj[0] != chunk.n_tokens:
            self._proj = (chunk.n_tokens, self.model.eval_projections(chunk.n_tokens))
        data = self.model.eval_encode(chunk.corpus())
        return self.model.eval_part(data, chunk.batches, self._proj[1])


def eval_task(model_dir: str) -> ChunkRunner:
    """A worker's task (nerwin.parallel.run_parallel): load the model once."""
    from nerwin.model import load_model  # a checkpoint or an ensemble folder, as eval takes

    return ChunkRunner(load_model(model_dir))


Runner = Callable[[Iterator[EvalChunk]], Iterable[tuple[np.ndarray, np.ndarray]]]


def evaluate_in_chunks(model: Any, corpus: Corpus | Callable[[], Corpus],
                       runner: Runner | None = None, chunk_batches: int = CHUNK_BATCHES
                       ) -> tuple[dict[str, Any], list[list[str]], Corpus]:
    """Scores, predicted tags and corpus of ``model`` on ``corpus`` (what Model.evaluate
    gives), chunk by chunk: in this process, or by ``runner``, which gets the chunks and
    gives each one's ``eval_part`` results in order (``nerwin eval --workers``:
    nerwin.parallel's pool with :func:`eval_task`; this module does not import it, as the
    pool imports the API that imports this). ``corpus`` may be a function that reads it:
    it is then called when the first chunk is asked for, so a pool's workers load the model
    while the file is read."""
    from nerwin.dataset import encode_labels

    if not hasattr(model, "eval_part"):
        raise NerwinError("evaluate needs a checkpoint folder (best/ or last/); an exported "
                          ".onnx model only tags")
    read: list[Corpus] = []

    def parts() -> Iterator[EvalChunk]:
        c = corpus() if callable(corpus) else corpus
        # A tag the model does not know is the same one-line error as ever, before any
        # chunk is run.
        encode_labels(c, model.lex.tags)
        read.append(c)
        yield from chunks(c, model.eval_plan(c.lengths), chunk_batches)

    results = map(ChunkRunner(model), parts()) if runner is None else runner(parts())
    ids: list[np.ndarray] = []
    terms: list[np.ndarray] = []
    for i, t in results:
        ids.append(i)
        terms.append(t)
    if not read:  # pragma: no cover - every runner asks for the first chunk
        raise RuntimeError("the evaluation runner never read its chunks")
    scores, pred = model.eval_finish(
        read[0], np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32),
        np.concatenate(terms) if terms else np.zeros(0, dtype=np.float64))
    return scores, pred, read[0]
