"""Heads: the last part of the network's chain, from the top hidden output h to a loss, its δ,
and tags.

A head owns its score layer (``U`` (C, H), ``c`` (C,); the logistic head ``u`` (H,), ``c``
(1,)), the number of scores per token, the targets it is trained on and the gold tags it
is scored against, probabilities, decoding, the loss and δ. It is built from the config by
``Head.from_config`` (HEAD_CLASSES[model.head]) and says which ``model.*`` keys it reads
(``KEYS``), which the config's cross-field checks ask. Nothing outside this module
branches on a head's name.

The loss part gets the scores of the tokens of a batch (N, C) (the logistic head: (N,)), their
targets y (N,) and, when it works per sentence, the sentence lengths (S,) that cut the batch
into whole sentences (Σ lengths = N, in order). It returns the data loss and δ = dJ/dscores,
plus the gradients of its own parameters, and decodes scores into tag ids. Nothing outside
this module branches on the head's name to decode.

  - ``softmax``: J = mean over tokens of −log softmax(s_t)[y_t]  (nerwin.nn.heads);
    decode ``argmax`` per token, or ``viterbi``: the best path over log softmax(s_t) with
    every transition score 0 and the IOB2 constraints (O → I-X, B-X → I-Y, start → I-X
    forbidden), i.e. the most probable *valid* tag sequence under independent per-token
    probabilities.
  - ``logistic``: J = mean binary cross-entropy of σ(s_t); decode 1[s_t > 0].
  - ``crf``: Collobert's sentence-level log-likelihood, a linear-chain CRF over the scores
    with learned transitions ``trans`` (C, C), ``start`` (C,) and ``end`` (C,)
    (nerwin.nn.crf): J = (1/N) Σ_sentences [log Z(s) − score(s, y)]; decode by Viterbi.
    ``constrained`` forbids the invalid IOB2 transitions in training and decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nerwin.errors import NerwinError
from nerwin.nn import heads, layers
from nerwin.nn.parts import Node, Param, affine_back

DECODERS = ("viterbi", "argmax")
#: The model.* keys some head reads (each head lists its own in KEYS); a key set away
#: from its default for a head that does not read it is a config error.
HEAD_KEYS = ("positive", "decode", "constrained", "scheme")


class Head:
    """Interface (and the softmax head)."""

    name = "softmax"
    #: The model.* keys this head reads.
    KEYS: tuple[str, ...] = ("decode", "constrained", "scheme")
    #: The tagging scheme its decoded tags are read in (nerwin.conll.to_iob2); model.scheme
    #: sets it (iob2 or iobes: the tags it trains on and decodes in).
    scheme = "iob2"

    def __init__(self, n_tags: int, tags: Sequence[str] = (), decode: str = "argmax",
                 constrained: bool = True, scheme: str = "iob2") -> None:
        self.n_tags = n_tags
        self.scheme = scheme
        self.tags = tuple(tags)
        self.decoder = decode
        self.constrained = constrained
        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
        if decode == "viterbi" and constrained and len(self.tags) != n_tags:
            raise ValueError(f"constrained decoding needs the {n_tags} tag names, got "
                             f"{len(self.tags)}")
        self._constraints: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- construction from the config
    @classmethod
    def from_config(cls, model: Any, tags: Sequence[str]) -> Head:
        """The head of ``model`` (a ModelConfig) for the training tag set ``tags``."""
        return HEAD_CLASSES[model.head]._from_config(model, tags)

    @classmethod
    def _from_config(cls, model: Any, tags: Sequence[str]) -> Head:
        return cls(len(tags), tags, model.decode or "viterbi", model.constrained,
                   getattr(model, "scheme", "iob2"))

    @classmethod
    def config_problem(cls, model: Any, defaults: dict[str, Any]) -> tuple[str, str] | None:
        """(model key, message) of the first head key ``model`` sets although this head
        does not read it (``defaults``: each key's default), else None."""
        for key in HEAD_KEYS:
            if key not in cls.KEYS and getattr(model, key) != defaults[key]:
                readers = [n for n, c in HEAD_CLASSES.items() if key in c.KEYS]
                return key, (f"only used with model.head: {' or '.join(readers)}; the "
                             f"{cls.name} head does not read it; remove it"
                             + (f" or set model.head: {readers[0]}" if len(readers) == 1
                                else ""))
        return None

    def check_tags(self) -> tuple[str, str] | None:
        """(model key, message) when the training tags cannot serve this head, else None."""
        return None

    def check(self) -> None:
        """NerwinError naming the NetSpec field when the head cannot be built as given."""
        if self.n_tags < 2:
            raise NerwinError(f"n_out: expected at least 2 tags for the {self.name} head, "
                              f"got {self.n_tags}")

    # -- targets, gold tags and labels (what the tags of a corpus mean to this head)
    def targets(self, labels: np.ndarray) -> np.ndarray:
        """What the head is trained on, from (N,) tag ids: the tag ids themselves."""
        return labels

    def gold_tags(self, tags: list[list[str]]) -> list[list[str]]:
        """The gold IOB2 tags of each sentence as this head is scored against them."""
        return tags

    @property
    def labels(self) -> list[str]:
        """The tag of each predicted id (and of each column of :meth:`columns`)."""
        return list(self.tags)

    def columns(self, proba: np.ndarray) -> np.ndarray:
        """(N, len(labels)) probabilities from :meth:`proba`'s output."""
        return proba

    # -- the score layer
    @property
    def n_scores(self) -> int:
        """Scores per token the network must produce (C, or 1 for the logistic head)."""
        return self.n_tags

    def params(self, n_in: int) -> list[Param]:
        """The score layer's parameters (U, c) and then the head's own (zero at start)."""
        C = self.n_scores
        return [Param("U", (C, n_in), "weight", regularised=True, fan=(n_in, C)),
                Param("c", (C,), "zero"),
                *(Param(n, s, "zero") for n, s in self.param_shapes().items())]

    def scores_forward(self, h: np.ndarray, p: dict[str, np.ndarray]
                       ) -> tuple[np.ndarray, Any]:
        """scores = h Uᵀ + c (N, C) and the cache."""
        return layers.affine_forward(h, p["U"], p["c"])

    def scores_backward(self, delta: np.ndarray, cache: Any, need_dh: bool,
                        trainable: set[str] | frozenset[str], p: dict[str, np.ndarray]
                        ) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """(dJ/dh or None, gradients of U and c when trainable) from δ = dJ/dscores."""
        dh, dU, dc = affine_back(delta, cache, need_dh, "U" in trainable)
        grads = {} if dU is None else {"U": dU}
        if "c" in trainable:
            grads["c"] = dc
        return dh, grads

    def nodes(self, B: int, n_in: int) -> list[Node]:
        C = self.n_scores
        own = tuple(self.param_shapes())
        return [Node("scores", "s = h Uᵀ + c", (B, C), ("U", "c"), B * n_in * C),
                Node("loss", self.loss_text, (), own)]

    loss_text = "J = mean_t −log softmax(s_t)[y_t]"

    def to_onnx(self, g: Any, h: str) -> list[Any]:
        """The score layer as ONNX (output ``scores``); returns the output's dims. The head's
        own parameters (crf: trans, start, end) stay with the decoder (metadata)."""
        g.node("Gemm", [h, g.param("U"), g.param("c")], "scores", transB=1)
        for name in self.param_shapes():
            g.use(name)
        return ["batch", self.n_scores]

    def empty_scores(self, dtype: Any = np.float64) -> np.ndarray:
        """Scores of no tokens, shaped as scores_forward's."""
        return np.zeros((0, self.n_scores), dtype=dtype)

    @property
    def per_sentence(self) -> bool:
        """Does the loss or the decoder need whole sentences (and their lengths)?"""
        return self.decoder == "viterbi"

    @property
    def sentence_loss(self) -> bool:
        """Does the loss need whole sentences (training batches of sentences)?"""
        return False

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The head's own parameters (initialised to zero), after the network's."""
        return {}

    def constraints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(trans_ok, start_ok, end_ok) of the head's scheme (IOB2 or IOBES) when
        constrained, else None."""
        if not self.constrained:
            return None
        if self._constraints is None:
            from nerwin.nn.crf import transitions_for

            self._constraints = transitions_for(self.tags, self.scheme)
        return self._constraints

    # -- loss
    def loss(self, out: np.ndarray, y: np.ndarray, lengths: np.ndarray | None,
             params: dict[str, np.ndarray]) -> tuple[float, Any]:
        """Data loss (a mean per token) and the cache of :meth:`backward`."""
        return heads.softmax_xent_forward(out, y)

    def backward(self, cache: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """δ = dJ/dscores (shaped like the scores) and the gradients of the head's params."""
        return heads.softmax_xent_backward(cache), {}

    # -- decoding
    def decode(self, out: np.ndarray, lengths: np.ndarray | None,
               params: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) int64 tag ids (or 1/0 for logistic). Viterbi needs ``lengths``."""
        if self.decoder == "argmax":
            return out.argmax(axis=1).astype(np.int64)
        from nerwin.nn.crf import viterbi

        logp = np.log(np.maximum(heads.softmax(out), np.finfo(out.dtype).tiny))
        C = self.n_tags
        z = np.zeros((C, C), dtype=out.dtype)
        return viterbi(logp, _lengths(lengths, out), z, z[0], z[0], self.constraints())

    def proba(self, out: np.ndarray, lengths: np.ndarray | None,
              params: dict[str, np.ndarray]) -> np.ndarray:
        """Per-token probabilities: (N, C) rows that sum to 1, or (N,) σ(s) for logistic."""
        return heads.softmax(out)


class LogisticHead(Head):
    """Lecture 3's binary classifier: one score per token."""

    name = "logistic"
    KEYS = ("positive",)
    scheme = "io"  # a run of positive tokens is one entity
    loss_text = "J = mean_t [softplus(s_t) − y_t s_t]"

    def __init__(self, n_tags: int = 1, tags: Sequence[str] = (), decode: str = "argmax",
                 constrained: bool = False, scheme: str = "io",
                 positive: str | None = None) -> None:
        super().__init__(n_tags, tags, "argmax", False, "io")
        self.positive = positive

    @classmethod
    def _from_config(cls, model: Any, tags: Sequence[str]) -> Head:
        return cls(1, tags, positive=model.positive)

    @classmethod
    def config_problem(cls, model: Any, defaults: dict[str, Any]) -> tuple[str, str] | None:
        if not model.positive:
            return "positive", ("the logistic head needs the entity type it scores, e.g. "
                                "model.positive: LOC")
        return super().config_problem(model, defaults)

    def check_tags(self) -> tuple[str, str] | None:
        """The positive type must occur in the training tags."""
        if f"B-{self.positive}" in self.tags:
            return None
        types = sorted({t[2:] for t in self.tags if t != "O"})
        return "positive", (f"{self.positive!r} is not an entity type of the training data; "
                            f"expected one of {', '.join(types)}")

    def check(self) -> None:
        if self.n_tags != 1:
            raise NerwinError(f"n_out: expected 1 for the logistic head, got {self.n_tags}")

    def targets(self, labels: np.ndarray) -> np.ndarray:
        """1/0: "is a <positive>" (its B- or I- tag)."""
        p = self.positive
        ids = np.array([self.tags.index(t) for t in (f"B-{p}", f"I-{p}")], dtype=np.int32)
        return np.isin(labels, ids).astype(np.int32)

    def gold_tags(self, tags: list[list[str]]) -> list[list[str]]:
        """Other entity types count as O."""
        p = self.positive
        return [[t if t != "O" and t[2:] == p else "O" for t in s] for s in tags]

    @property
    def labels(self) -> list[str]:
        return ["O", f"I-{self.positive}"]

    def columns(self, proba: np.ndarray) -> np.ndarray:
        return np.stack([1.0 - proba, proba], axis=1)  # (1 - σ(s), σ(s))

    @property
    def n_scores(self) -> int:
        return 1

    def params(self, n_in: int) -> list[Param]:
        return [Param("u", (n_in,), "weight", regularised=True, fan=(n_in, 1)),
                Param("c", (1,), "zero")]

    def scores_forward(self, h, p):  # type: ignore[no-untyped-def]
        # u as a (1, H) matrix, so the score is the same affine layer with one output.
        z, cache = layers.affine_forward(h, p["u"][None, :], p["c"])
        return z[:, 0], cache

    def scores_backward(self, delta, cache, need_dh, trainable, p):  # type: ignore[no-untyped-def]
        dh, du, dc = affine_back(delta[:, None], cache, need_dh, "u" in trainable)
        grads = {} if du is None else {"u": du.reshape(p["u"].shape)}
        if "c" in trainable:
            grads["c"] = dc
        return dh, grads

    def nodes(self, B: int, n_in: int) -> list[Node]:
        return [Node("scores", "s = h u + c", (B,), ("u", "c"), B * n_in),
                Node("loss", self.loss_text, ())]

    def to_onnx(self, g: Any, h: str) -> list[Any]:
        g.use("u")
        s = g.node("Gemm", [h, g.param("u_row", g.arrays["u"][None, :]), g.param("c")], "s",
                   transB=1)
        g.node("Reshape", [s, g.const("vec_shape", [-1])], "scores")
        return ["batch"]

    def empty_scores(self, dtype: Any = np.float64) -> np.ndarray:
        return np.zeros((0,), dtype=dtype)

    @property
    def per_sentence(self) -> bool:
        return False

    def loss(self, out, y, lengths, params):  # type: ignore[no-untyped-def]
        return heads.logistic_forward(out, y)

    def backward(self, cache):  # type: ignore[no-untyped-def]
        return heads.logistic_backward(cache), {}

    def decode(self, out, lengths, params):  # type: ignore[no-untyped-def]
        return (out > 0).astype(np.int64)

    def proba(self, out, lengths, params):  # type: ignore[no-untyped-def]
        return heads.sigmoid(out)


class CRFHead(Head):
    """Linear-chain CRF over the network's scores (Collobert et al. 2011, §3.3.2)."""

    name = "crf"
    KEYS = ("constrained", "scheme")
    PARAMS = ("trans", "start", "end")
    loss_text = "J = (1/N) Σ_sentences [log Z − score(s, y)] (trans, start, end)"

    @classmethod
    def _from_config(cls, model: Any, tags: Sequence[str]) -> Head:
        return cls(len(tags), tags, "viterbi", model.constrained,
                   getattr(model, "scheme", "iob2"))

    def __init__(self, n_tags: int, tags: Sequence[str] = (), decode: str = "viterbi",
                 constrained: bool = True, scheme: str = "iob2") -> None:
        super().__init__(n_tags, tags, "viterbi", constrained, scheme)

    @property
    def sentence_loss(self) -> bool:
        return True

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        C = self.n_tags
        return {"trans": (C, C), "start": (C,), "end": (C,)}

    def loss(self, out, y, lengths, params):  # type: ignore[no-untyped-def]
        from nerwin.nn.crf import crf_nll_forward

        N = out.shape[0]
        total, cache = crf_nll_forward(out, _lengths(lengths, out), y, params["trans"],
                                       params["start"], params["end"], self.constraints())
        # J = (1/N) Σ_sentences NLL: per token, like the softmax head's mean.
        return total / max(N, 1), (cache, N)

    def backward(self, cache):  # type: ignore[no-untyped-def]
        from nerwin.nn.crf import crf_nll_backward

        crf_cache, N = cache
        dS, dA, dstart, dend = crf_nll_backward(crf_cache)
        k = 1.0 / max(N, 1)  # the 1/N of the mean; Python float keeps the dtype (NEP 50)
        return dS * k, {"trans": dA * k, "start": dstart * k, "end": dend * k}

    def decode(self, out, lengths, params):  # type: ignore[no-untyped-def]
        from nerwin.nn.crf import viterbi

        return viterbi(out, _lengths(lengths, out), params["trans"], params["start"],
                       params["end"], self.constraints())

    def proba(self, out, lengths, params):  # type: ignore[no-untyped-def]
        # p(y_t = c | sentence): the forward-backward node marginals of the whole sentence.
        from nerwin.nn.crf import crf_marginals

        return crf_marginals(out, _lengths(lengths, out), params["trans"], params["start"],
                             params["end"], self.constraints())


def _lengths(lengths: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    if lengths is None:
        raise ValueError("this head works on whole sentences: pass their lengths")
    lengths = np.asarray(lengths, dtype=np.int64)
    if int(lengths.sum()) != out.shape[0]:
        raise ValueError(f"sentence lengths sum to {int(lengths.sum())}, but the batch has "
                         f"{out.shape[0]} tokens")
    return lengths


#: name -> class: model.head's choices.
HEAD_CLASSES: dict[str, type[Head]] = {"softmax": Head, "logistic": LogisticHead,
                                       "crf": CRFHead}
HEADS = tuple(HEAD_CLASSES)


def make_head(name: str, n_tags: int, tags: Sequence[str] = (), decode: str = "argmax",
              constrained: bool = True, scheme: str = "iob2") -> Head:
    """The head called ``name`` (one of HEADS)."""
    return HEAD_CLASSES[name](n_tags, tags, decode, constrained, scheme)
