"""A trained or fresh model: config + lexicon + network, and its checkpoint form.

This is the piece ``train`` and ``eval`` share, so a score computed during training and one
computed later from ``best/`` come from the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerwin import __version__
from nerwin.checkpoint import load_checkpoint
from nerwin.config import Config, ConfigError, from_dict, to_dict
from nerwin.conll import Corpus, Sentence, to_iob2
from nerwin.dataset import Lexicon, encode
from nerwin.errors import NerwinError
from nerwin.features import features_from_vocabs
from nerwin.memory import check_memory
from nerwin.metrics import score
from nerwin.nn.network import NetSpec, WindowNet, init_params
from nerwin.nn.output import Head
from nerwin.vocab import Vocab
from nerwin.windows import WindowData, sentence_batches

PREDICT_BATCH = 4096  # tokens per forward pass at evaluation: bounds memory, keeps BLAS busy


def net_spec(cfg: Config, lex: Lexicon) -> NetSpec:
    """The network shape the config asks for, sized by the lexicon's features."""
    m, f = cfg.model, cfg.features
    return NetSpec(
        tables=tuple(feat.table() for feat in lex.features),
        window=f.window, hidden=tuple(m.hidden), nonlinearity=m.nonlinearity,
        head=Head.from_config(m, lex.tags.itos), init=m.init,
        init_scale=m.init_scale, dropout=m.dropout, l2=cfg.training.l2, l1=cfg.training.l1,
        word_dropout=m.word_dropout, input_dropout=m.input_dropout,
        conv=tuple((b.width, b.units, b.nonlinearity, b.dropout) for b in m.blocks))


def eval_batches(data: WindowData, per_sentence: bool
                 ) -> list[tuple[np.ndarray | slice, np.ndarray | None]]:
    """(rows, sentence lengths or None) of the evaluation batches: about PREDICT_BATCH
    tokens each; whole sentences when the head or a block needs them (crf, Viterbi), else
    plain row chunks."""
    if per_sentence:
        return [(idx, lens) for idx, lens in sentence_batches(data.lengths, PREDICT_BATCH)]
    return [(slice(i, i + PREDICT_BATCH), None) for i in range(0, len(data), PREDICT_BATCH)]


#: An evaluation batch: rows start..stop of the encoded corpus, and the lengths of its
#: sentences when the batch is whole sentences (else None).
Batch = tuple[int, int, "np.ndarray | None"]


def eval_plan(lengths: np.ndarray, per_sentence: bool) -> list[Batch]:
    """The batches of :func:`eval_batches` as row ranges (start, stop, lengths or None),
    from the sentence lengths alone: what ``nerwin eval`` cuts into chunks before anything
    is encoded (nerwin.evaluation), and what :meth:`Model.evaluate` runs."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if per_sentence:
        out: list[Batch] = []
        start = 0
        for idx, lens in sentence_batches(lengths, PREDICT_BATCH):
            # In order, unshuffled: a batch is the consecutive rows of its sentences.
            stop = start + int(lens.sum())
            assert idx.size == 0 or (idx[0] == start and idx[-1] == stop - 1)
            out.append((start, stop, lens))
            start = stop
        return out
    n = int(lengths.sum())
    return [(i, min(i + PREDICT_BATCH, n), None) for i in range(0, n, PREDICT_BATCH)]


def split_rows(lengths: np.ndarray, flat: np.ndarray) -> list[np.ndarray]:
    """Split a per-token array (N, ...) into sentences of ``lengths`` (WindowData.split
    without the encoding)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


@dataclass
class Model:
    """Everything needed to tag text: the resolved config, the lexicon and the network."""

    cfg: Config
    lex: Lexicon
    net: WindowNet

    # ------------------------------------------------------------------ targets

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """What the head is trained on (nerwin.nn.output: tag ids, or 1/0 for one type)."""
        return self.net.head.targets(labels)

    def gold_tags(self, corpus: Corpus) -> list[list[str]]:
        """Gold IOB2 tags as the model is scored (the head's view: one type keeps only it)."""
        return self.net.head.gold_tags([list(s.tags) for s in corpus.sentences])

    # ------------------------------------------------------------------ prediction

    def encode(self, corpus: Corpus) -> WindowData:
        return encode(corpus, self.lex, self.cfg.features)

    def predict_ids(self, data: WindowData) -> np.ndarray:
        """(N,) predicted class per token (tag id, or 1/0 for logistic), in batches; the
        head decodes (argmax, Viterbi over whole sentences, or 1[s > 0])."""
        out = np.empty(len(data), dtype=np.int32)
        proj = self.net.projections(len(data))
        for rows, lens in eval_batches(data, self.net.needs_whole_sentences(training=False)):
            out[rows] = self.net.predict(data.rows(rows), lens, proj)
        return out

    def decode(self, data: WindowData, pred: np.ndarray) -> list[list[str]]:
        """Per-sentence IOB2 tags from per-token predictions.

        Each id is the head's label of that id, read in the head's scheme: the argmax
        decoder can emit an I-X that does not continue an X; the repair rule of
        nerwin.conll (it becomes B-X, which is how conlleval reads it anyway) makes the
        output valid IOB2 without changing its score. For the logistic head, a run of
        positive tokens is one entity (IO reading).
        """
        return self.decode_lengths(data.lengths, pred)

    def decode_lengths(self, lengths: np.ndarray, pred: np.ndarray) -> list[list[str]]:
        """:meth:`decode` of sentences of ``lengths`` (no encoding needed)."""
        head = self.net.head
        labels = head.labels
        return [to_iob2([labels[i] for i in s], head.scheme)[0]
                for s in split_rows(lengths, pred)]

    def evaluate(self, corpus: Corpus, data: WindowData | None = None,
                 workspace: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any], list[list[str]]]:
        """Entity-level scores on ``corpus`` (plus its mean loss) and the predicted tags.

        One forward pass per batch gives both the predictions and the loss; the loss is the
        mean over all windows, regulariser included once (each batch's loss holds it, and
        the batches are weighted by their share of the windows). ``nerwin eval`` runs the
        same batches in chunks (nerwin.evaluation): :meth:`eval_part` on each, then
        :meth:`eval_finish`.

        ``workspace``: a dict kept by a caller that evaluates again and again (training,
        once an epoch): the memory of the projections is kept there and reused, not
        allocated afresh each time (the same numbers are computed into it).
        """
        data = self.eval_encode(corpus) if data is None else data
        batches = self.eval_plan(data.lengths)
        # Built from the parameters of now (during training: this epoch's), never reused.
        if workspace is None:
            proj = self.eval_projections(len(data))
        else:
            proj = self.net.projections(len(data), out=workspace.get("projections"))
            if proj is not None:
                workspace["projections"] = proj.buffer
        ids, terms = self.eval_part(data, batches, proj)
        return self.eval_finish(corpus, ids, terms)

    def eval_encode(self, corpus: Corpus) -> WindowData:
        """What :meth:`eval_part` reads of ``corpus`` (an ensemble: each member's)."""
        return self.encode(corpus)

    def eval_plan(self, lengths: np.ndarray) -> list[Batch]:
        """The evaluation batches of a corpus of sentences of ``lengths``."""
        return eval_plan(lengths, self.net.needs_whole_sentences(training=False))

    def eval_projections(self, n_tokens: int) -> Any:
        """What :meth:`eval_part` predicts with for a corpus of ``n_tokens`` tokens: the
        network's precomputed projections (which tables are precomputed depends on
        ``n_tokens``, so a chunk is run with its whole corpus's)."""
        return self.net.projections(n_tokens)

    def eval_part(self, data: WindowData, batches: list[Batch], proj: Any
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``batches`` (consecutive row ranges of ``data``): the predicted ids of their
        rows, and per batch its loss times its rows (what :meth:`eval_finish` sums)."""
        y = self.targets(data.labels)
        lo = batches[0][0] if batches else 0
        ids = np.empty((batches[-1][1] if batches else 0) - lo, dtype=np.int32)
        terms = np.empty(len(batches), dtype=np.float64)
        for k, (a, b, lens) in enumerate(batches):
            rows = slice(a, b)
            loss, ids[a - lo: b - lo] = self.net.loss_and_predict(data.rows(rows), y[rows],
                                                                  lens, proj)
            terms[k] = loss * (b - a)
        return ids, terms

    def eval_finish(self, corpus: Corpus, ids: np.ndarray, terms: np.ndarray
                    ) -> tuple[dict[str, Any], list[list[str]]]:
        """Scores and tags of ``corpus`` from its :meth:`eval_part` results, concatenated
        in order (the batches' loss terms summed in order, as one pass would)."""
        pred = self.decode_lengths(corpus.lengths, ids)
        scores = score(self.gold_tags(corpus), pred)
        total = 0.0
        for t in terms.tolist():
            total += t
        scores["loss"] = total / max(1, corpus.n_tokens)
        return scores, pred

    def tag(self, sentences: list[Sentence]) -> list[list[str]]:
        """Predicted IOB2 tags for untagged sentences (their tags are ignored)."""
        data = self._encode_untagged(sentences)
        return self.decode(data, self.predict_ids(data))

    def token_probabilities(self, sentences: list[Sentence]
                            ) -> tuple[list[str], list[np.ndarray]]:
        """The model's probability of each tag at each token of untagged sentences.

        Returns ``(labels, probs)``: ``probs[i]`` is an (n_i, len(labels)) float array for
        sentence i whose column k is the probability of tag ``labels[k]`` (rows sum to 1).
        The softmax head gives its per-token softmax over all tags; the logistic head gives
        the two columns ``O`` and ``I-<positive>`` (1 - σ(s), σ(s)). A head with a sequence
        model (a CRF) gives its per-token marginals here: callers such as the entity score
        of nerwin.tagging only read this method, never the head.
        """
        data, _, labels, probs = self._probabilities(sentences, with_tags=False)
        return labels, data.split(probs)

    def tag_and_probabilities(self, sentences: list[Sentence]
                              ) -> tuple[list[list[str]], list[str], list[np.ndarray]]:
        """:meth:`tag` and :meth:`token_probabilities` from one pass through the network:
        (tags per sentence, labels, probabilities per sentence)."""
        data, ids, labels, probs = self._probabilities(sentences, with_tags=True)
        return self.decode(data, ids), labels, data.split(probs)

    def _probabilities(self, sentences: list[Sentence], with_tags: bool
                       ) -> tuple[WindowData, np.ndarray, list[str], np.ndarray]:
        """(encoded sentences, (N,) predicted ids if ``with_tags``, labels, (N, labels)
        probabilities), from one pass through the network."""
        data = self._encode_untagged(sentences)
        head = self.net.head
        labels = head.labels
        ids = np.empty(len(data), dtype=np.int32)
        out = np.empty((len(data), len(labels)), dtype=np.float64)
        proj = self.net.projections(len(data))
        for rows, lens in eval_batches(data, self.net.needs_whole_sentences(training=False)):
            x = data.rows(rows)
            if with_tags:  # the decoder (Viterbi for crf) only when the tags are wanted
                ids[rows], p = self.net.predict_and_proba(x, lens, proj)
            else:
                p = self.net.predict_proba(x, lens, proj)
            out[rows] = head.columns(p)
        return data, ids, labels, out

    def _encode_untagged(self, sentences: list[Sentence]) -> WindowData:
        blank = [Sentence(s.tokens, ["O"] * len(s.tokens), s.line) for s in sentences]
        return self.encode(Corpus(Path("<input>"), blank, scheme="iob2"))

    # ------------------------------------------------------------------ checkpoint form

    def meta(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: version, config, vocabularies."""
        return {"nerwin_version": __version__, "config": to_dict(self.cfg),
                "vocabs": self.lex.vocabs(), "tags": list(self.lex.tags.itos),
                "frozen": sorted(self.net.frozen), "gazetteers": self.lex.gazetteers()}


def check_head(cfg: Config, lex: Lexicon) -> None:
    """The head must be able to learn from the training tags (e.g. the logistic head's
    positive type must occur in them)."""
    problem = Head.from_config(cfg.model, lex.tags.itos).check_tags()
    if problem is not None:
        raise ConfigError(cfg.source, f"model.{problem[0]}", problem[1])


def new_model(cfg: Config, lex: Lexicon, rng: np.random.Generator,
              dtype: type = np.float32) -> Model:
    """A freshly initialised model (pretrained rows kept, the rest from ``rng``).

    Refused before anything is allocated when it would not fit in memory (nerwin.memory).
    """
    check_head(cfg, lex)
    spec = net_spec(cfg, lex)
    check_memory(cfg, spec, lex.n_tokens, np.dtype(dtype).itemsize)
    params = init_params(spec, rng, dtype, lex.pretrained, lex.pretrained_mask)
    # features.freeze: the word table's rows stay as initialised (pretrained).
    frozen = (frozenset(t.param for t in spec.tables if t.is_words) if cfg.features.freeze
              else frozenset())
    return Model(cfg, lex, WindowNet(spec, params, frozen))


def _from_meta(meta: dict[str, Any], where: Path | str) -> tuple[Config, Lexicon]:
    """The config and lexicon a checkpoint's meta.json describes."""
    try:
        cfg = from_dict(meta["config"], source=f"{where}/meta.json", check_files=False)
        # A checkpoint keeps each feature's vocabulary by name.
        feats = features_from_vocabs(cfg.features, meta["vocabs"], scheme=cfg.model.scheme,
                                     gazetteers=meta.get("gazetteers"))
        return cfg, Lexicon(feats[0].vocab, Vocab(tuple(meta["tags"])), features=feats)
    except (KeyError, TypeError, ValueError) as e:
        raise NerwinError(f"{where}/meta.json: not a nerwin model ({e})") from None


def model_from_arrays(arrays: dict[str, np.ndarray], meta: dict[str, Any],
                      where: Path | str) -> Model:
    """Rebuild a model from checkpoint arrays (names without a prefix) and meta."""
    cfg, lex = _from_meta(meta, where)
    try:
        frozen = frozenset(meta.get("frozen", []))
    except TypeError as e:
        raise NerwinError(f"{where}/meta.json: not a nerwin model ({e})") from None
    spec = net_spec(cfg, lex)
    params = {k: v for k, v in arrays.items() if "/" not in k}
    try:
        net = WindowNet(spec, params, frozen)
    except ValueError as e:
        raise NerwinError(f"{where}: parameters do not fit the saved config: {e}") from None
    return Model(cfg, lex, net)


def expected_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The parameter shapes a checkpoint's (verified) meta.json implies.

    load_checkpoint checks each array's .npy header against them before reading it, so
    a header that claims a huge shape is refused before memory is allocated.
    """
    cfg, lex = _from_meta(meta, "checkpoint")
    return net_spec(cfg, lex).param_shapes()


def load_model(directory: str | Path) -> Model:
    """Load a model checkpoint (``best/`` or ``last/`` of a run), or an ensemble folder
    (``nerwin ensemble``; a nerwin.ensemble.EnsembleModel, which tags and evaluates alike)."""
    from nerwin.ensemble import is_ensemble_folder, load_ensemble

    if is_ensemble_folder(directory):
        return load_ensemble(directory, load_checkpoint_model)  # type: ignore[return-value]
    return load_checkpoint_model(directory)


def load_checkpoint_model(directory: str | Path) -> Model:
    """Load one model checkpoint folder (never an ensemble)."""
    arrays, meta = load_checkpoint(directory, expected_shapes)
    return model_from_arrays(arrays, meta, directory)



def gradcheck_batch(cfg: Config, samples: int, seed: int = 0
                    ) -> tuple[WindowNet, tuple[np.ndarray, ...], np.ndarray,
                               np.ndarray | None, np.random.Generator]:
    """The configured network in float64 and a batch of training data: (net, inputs, y,
    lengths, rng).

    ``samples`` random windows for a per-token head (lengths None); for a head that works
    on whole sentences (crf), random whole sentences until at least ``samples`` tokens.
    What ``nerwin gradcheck`` checks: the same lexicon, features and head as training,
    with a fixed seed so a failure can be reproduced. The crf head's transition scores
    start at 0; they get small random values here, so that their gradient is checked at a
    generic point rather than at the symmetric start.
    """
    from nerwin.dataset import build_lexicon, read_train

    train = read_train(cfg)
    lex = build_lexicon(cfg, train)
    rng = np.random.default_rng(seed)
    model = new_model(cfg, lex, rng, dtype=np.float64)
    data = model.encode(train)
    y_all = model.targets(data.labels)
    if not model.net.needs_whole_sentences(training=False):
        idx = rng.choice(len(data), size=min(samples, len(data)), replace=False)
        return model.net, data.rows(idx), y_all[idx], None, rng
    for name in model.net.head.param_shapes():
        p = model.net.params[name]
        p[...] = rng.normal(0.0, 0.5, size=p.shape)
    picked, lens, n = [], [], 0
    offsets = data.offsets
    for s in rng.permutation(len(data.lengths)).tolist():
        if n >= samples:
            break
        picked.append(np.arange(offsets[s], offsets[s + 1]))
        lens.append(int(data.lengths[s]))
        n += lens[-1]
    idx = np.concatenate(picked)
    return model.net, data.rows(idx), y_all[idx], np.array(lens, dtype=np.int64), rng
