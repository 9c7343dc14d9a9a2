"""Output layers: what turns the window network's per-token scores into a loss, its δ, and tags.

A head gets the scores of the tokens of a batch (N, C) (the logistic head: (N,)), their
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

from nerwin.nn import heads

HEADS = ("softmax", "logistic", "crf")
DECODERS = ("viterbi", "argmax")


class Head:
    """Interface (and the softmax head)."""

    name = "softmax"

    def __init__(self, n_tags: int, tags: Sequence[str] = (), decode: str = "argmax",
                 constrained: bool = True) -> None:
        self.n_tags = n_tags
        self.tags = tuple(tags)
        self.decoder = decode
        self.constrained = constrained
        if decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
        if decode == "viterbi" and constrained and len(self.tags) != n_tags:
            raise ValueError(f"constrained decoding needs the {n_tags} tag names, got "
                             f"{len(self.tags)}")
        self._constraints: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def n_scores(self) -> int:
        """Scores per token the network must produce (C, or 1 for the logistic head)."""
        return self.n_tags

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
        """(trans_ok, start_ok, end_ok) of IOB2 when constrained, else None."""
        if not self.constrained:
            return None
        if self._constraints is None:
            from nerwin.nn.crf import allowed_transitions

            self._constraints = allowed_transitions(self.tags)
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

    def __init__(self, n_tags: int = 1, tags: Sequence[str] = (), decode: str = "argmax",
                 constrained: bool = False) -> None:
        super().__init__(n_tags, tags, "argmax", False)

    @property
    def n_scores(self) -> int:
        return 1

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
    PARAMS = ("trans", "start", "end")

    def __init__(self, n_tags: int, tags: Sequence[str] = (), decode: str = "viterbi",
                 constrained: bool = True) -> None:
        super().__init__(n_tags, tags, "viterbi", constrained)

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


def make_head(name: str, n_tags: int, tags: Sequence[str] = (), decode: str = "argmax",
              constrained: bool = True) -> Head:
    """The head called ``name`` (one of HEADS)."""
    cls = {"softmax": Head, "logistic": LogisticHead, "crf": CRFHead}[name]
    return cls(n_tags, tags, decode, constrained)
