"""``nerwin export``: a checkpoint's network as an ONNX graph, and tagging through onnxruntime.

The graph is built from the checkpoint's saved arrays and its meta.json: each part of the
network the config describes (nerwin.nn: feature tables, hidden blocks, the head) writes
its own operators (``to_onnx``), reading the parameters it declares. Feature ids in,
per-token scores out:

    inputs   one (B, 2m+1) int64 id array per lookup table, named ``ids_<feature>``, in the
             window order of the features (word, casing, prefixes, suffixes, shape); for
             the character encoder ``chars`` (U, L) int64, the character ids of the U
             distinct words of the batch (0 = <pad> after each word), and ``char_index``
             (B, 2m+1) int64, the row of ``chars`` at each window position; with a
             convolution block (model.blocks), ``sentence_lengths`` (S,) int64: the batch
             is S whole sentences of these lengths, in order
    network  Gather per table (the char encoder: Pad + Gather + the k shifted slices
             concatenated + MatMul + Add, masked to the word's own positions, ReduceMax:
             nerwin.nn.chars), Concat, Reshape to (B, D), Gemm + nonlinearity per hidden
             layer (Sigmoid, Tanh, Clip(-1, 1) for hardtanh, Relu); a convolution
             block gathers each token's in-sentence neighbours first (CumSum, Where,
             Pad, Gather: nerwin.nn.blocks.Conv); Gemm of the head
    output   ``scores``: (B, C) per-token scores (softmax, crf heads), (B,) for logistic

The decoder (argmax, Viterbi, the crf's Viterbi with its transition, start and end scores)
and the entity scores stay in nerwin's Python code: ``nerwin tag MODEL.onnx`` encodes the
features with nerwin's own code, runs the network in onnxruntime, and decodes as the
checkpoint does.

Metadata (``metadata_props``, all strings, JSON where structured): ``nerwin_version``,
``nerwin_meta`` (the checkpoint's meta: config, every feature's vocabulary, tags, the
gazetteers' entries),
``feature_rules`` (how each input is computed from a token, for a runtime outside
Python), ``inputs``, ``tags``, ``window``, ``head``, ``decode``, ``constrained``, ``crf``
(``trans``, ``start``, ``end`` as lists; empty for other heads), ``positive`` (logistic).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nerwin import __version__
from nerwin.errors import NerwinError

OPSET = 17
IR_VERSION = 8  # what onnxruntime releases from 1.10 on read
EXTRA = "pip install 'nerwin[onnx]'"


def _need(module: str, what: str) -> Any:
    """Import an optional dependency, or say which extra installs it (exit code 2)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise NerwinError(f"{what} needs the {module.split('.')[0]} package, which is not "
                          f"installed: "
                          f"{EXTRA}") from None


def _config_and_lexicon(meta: dict[str, Any], where: str) -> tuple[Any, Any]:
    """The config and the features/tags a checkpoint's meta describes."""
    from nerwin.config import from_dict
    from nerwin.dataset import Lexicon
    from nerwin.features import features_from_vocabs
    from nerwin.vocab import Vocab

    try:
        cfg = from_dict(meta["config"], source=f"{where} (nerwin_meta)", check_files=False)
        feats = features_from_vocabs(cfg.features, meta["vocabs"], scheme=cfg.model.scheme,
                                     gazetteers=meta.get("gazetteers"))
        lex = Lexicon(feats[0].vocab, Vocab(tuple(meta["tags"])), features=feats)
    except (KeyError, TypeError, ValueError) as e:
        raise NerwinError(f"{where}: not a nerwin model ({e})") from None
    return cfg, lex


def feature_rules(lex: Any) -> list[dict[str, Any]]:
    """How each network input is computed from a token (for a runtime outside Python):
    each feature states its own rule (nerwin.features.Feature.rule)."""
    rules = []
    for f in lex.features:
        r: dict[str, Any] = {"name": f.name, "param": f.param, "dim": f.dim,
                             "left_pad": f.left_pad, "right_pad": f.right_pad}
        try:
            r.update(f.rule())
        except NotImplementedError:
            raise NerwinError(f"cannot export the feature {f.name!r} ({type(f).__name__}): "
                              f"the ONNX exporter does not know how it is computed") from None
        rules.append(r)
    return rules


# --------------------------------------------------------------------------- export


class _Builder:
    """What a part's ``to_onnx`` builds with: ``node``, ``param`` (an array of the
    checkpoint, or a given value, as an initializer), ``const``, ``input``, ``use`` (a
    parameter that goes to the metadata instead), and K, dtype, arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], K: int, where: str) -> None:
        from onnx import TensorProto, helper

        self.helper, self.TensorProto = helper, TensorProto
        self.arrays, self.K, self.where = arrays, K, where
        self.dtype = arrays["c"].dtype
        self.used: set[str] = set()
        self.inits: list[Any] = []
        self.nodes: list[Any] = []
        self.inputs: list[Any] = []

    def error(self, what: str) -> NerwinError:
        return NerwinError(f"{self.where}: {what}")

    def use(self, name: str) -> None:
        self.used.add(name)

    def param(self, name: str, value: np.ndarray | None = None) -> str:
        from onnx import numpy_helper

        if value is None:
            if name not in self.arrays:
                raise self.error(f"parameter {name} is missing")
            self.used.add(name)
            value = self.arrays[name]
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(self, name: str, value: Any, dt: Any = np.int64) -> str:
        return self.param(name, np.asarray(value, dtype=dt))

    def node(self, op: str, ins: list[str], out: str, **attrs: Any) -> str:
        self.nodes.append(self.helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def input(self, name: str, dims: list[Any]) -> str:
        self.inputs.append(self.helper.make_tensor_value_info(name, self.TensorProto.INT64,
                                                              dims))
        return name


def build_graph(arrays: dict[str, np.ndarray], cfg: Any, lex: Any, where: str) -> Any:
    """The ONNX ModelProto of the network whose parameters are ``arrays``: each part of the
    network (tables, blocks, head: nerwin.nn) writes its own operators (``to_onnx``)."""
    onnx = _need("onnx", "nerwin export")
    from onnx import TensorProto, helper

    from nerwin.model import net_spec

    dtype = arrays["c"].dtype
    if dtype not in (np.float32, np.float64):
        raise NerwinError(f"{where}: cannot export parameters of dtype {dtype}")
    ftype = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    try:
        spec = net_spec(cfg, lex)
    except NerwinError as e:
        raise NerwinError(f"{where}: {e}") from None
    g = _Builder(arrays, spec.n_positions, where)

    def onnx_of(part: Any) -> Any:
        if not hasattr(part, "to_onnx"):
            raise NerwinError(f"{where}: cannot export the part {type(part).__name__}: it "
                              f"has no ONNX form (to_onnx)")
        return part.to_onnx

    parts = [onnx_of(t)(g, f.name) for f, t in zip(lex.features, spec.tables, strict=True)]
    x = g.node("Concat", parts, "window_cat", axis=2) if len(parts) > 1 else parts[0]
    h = g.node("Reshape", [x, g.const("flat_shape", [0, -1])], "x")  # (B, K * position dim)
    for b in spec.blocks():
        h = onnx_of(b)(g, h)
    dims = onnx_of(spec.make_head())(g, h)
    out = helper.make_tensor_value_info("scores", ftype, dims)
    left = sorted(set(arrays) - g.used)
    if left:
        raise NerwinError(f"{where}: cannot export {', '.join(left)}: the ONNX exporter "
                          f"does not know where these parameters go")
    graph = helper.make_graph(g.nodes, "nerwin", g.inputs, [out], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nerwin", producer_version=__version__)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def export(model_dir: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the network of the checkpoint ``model_dir`` to ``out`` (atomically) as
    ONNX with the metadata a runtime needs; return a short summary."""
    from nerwin.atomic import atomic_write_bytes
    from nerwin.checkpoint import load_checkpoint
    from nerwin.model import expected_shapes

    helper = _need("onnx.helper", "nerwin export")
    arrays, meta = load_checkpoint(model_dir, expected_shapes)
    arrays = {k: v for k, v in arrays.items() if "/" not in k}  # not the optimiser state
    where = str(model_dir)
    cfg, lex = _config_and_lexicon(meta, where)
    model = build_graph(arrays, cfg, lex, where)
    from nerwin.nn.output import Head

    # The head's own parameters (crf: trans, start, end) go to the decoder, in the metadata.
    crf = {k: arrays[k].tolist()
           for k in Head.from_config(cfg.model, lex.tags.itos).param_shapes()}
    keep = {k: meta[k] for k in ("nerwin_version", "config", "vocabs", "tags", "frozen",
                                 "gazetteers") if k in meta}
    props = {
        "nerwin_version": __version__,
        "nerwin_meta": json.dumps(keep, ensure_ascii=False),
        "feature_rules": json.dumps(feature_rules(lex)),
        "inputs": json.dumps([i.name for i in model.graph.input]),
        "tags": json.dumps(list(lex.tags.itos)),
        "window": str(cfg.features.window),
        "head": cfg.model.head,
        "decode": cfg.model.decode or "",
        "constrained": json.dumps(bool(cfg.model.constrained)),
        "positive": cfg.model.positive or "",
        "dtype": str(arrays["c"].dtype),
        "crf": json.dumps(crf),
    }
    helper.set_model_props(model, props)
    data = model.SerializeToString()
    atomic_write_bytes(out, data, "the ONNX file")
    return {"path": str(out), "bytes": len(data), "inputs": json.loads(props["inputs"]),
            "head": cfg.model.head, "tags": len(lex.tags)}


# --------------------------------------------------------------------------- runtime


class OnnxModel:
    """An exported model run by onnxruntime, with the tagging methods of
    nerwin.model.Model that ``nerwin tag`` and nerwin.api use: :meth:`tag`,
    :meth:`token_probabilities`, :meth:`tag_and_probabilities`.

    Features are encoded by nerwin's own code from the vocabularies in the file; the
    scores come from onnxruntime; decoding is nerwin's (argmax, Viterbi, crf). The session
    runs ``threads`` threads (default 1, like nerwin's BLAS default). onnxruntime's
    ``InferenceSession.run`` may be called from several threads at once, and nothing here
    changes during tagging, so a model may be shared by threads.
    """

    def __init__(self, path: Path, session: Any, props: dict[str, str]) -> None:
        self.path = path
        self.session = session
        where = str(path)
        try:
            meta = json.loads(props["nerwin_meta"])
            self.crf = {k: np.asarray(v, dtype=props.get("dtype", "float32"))
                        for k, v in json.loads(props.get("crf", "{}")).items()}
        except (KeyError, ValueError) as e:
            raise NerwinError(f"{where}: not an ONNX file written by nerwin export "
                              f"(metadata: {e})") from None
        self.cfg, self.lex = _config_and_lexicon(meta, where)
        self.input_names = [i.name for i in session.get_inputs()]
        from nerwin.nn.output import Head

        # Decoding, probabilities and labels are the checkpoint's head's (nerwin.nn.output).
        self.head = Head.from_config(self.cfg.model, self.lex.tags.itos)
        self.tables = [f.table() for f in self.lex.features]

    # -- encoding and scores

    def _encode(self, sentences: list[Any]) -> Any:
        from nerwin.conll import Corpus, Sentence
        from nerwin.dataset import encode

        blank = [Sentence(s.tokens, ["O"] * len(s.tokens), s.line) for s in sentences]
        return encode(Corpus(Path("<input>"), blank, scheme="iob2"), self.lex, self.cfg.features)

    def _feed(self, rows: tuple[Any, ...]) -> dict[str, np.ndarray]:
        feed: dict[str, np.ndarray] = {}
        for f, t, a in zip(self.lex.features, self.tables, rows, strict=True):
            feed.update(t.onnx_feed(f.name, a))
        return feed

    def scores(self, data: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """(N, C) or (N,) scores of every token of ``data`` (WindowData), batch by batch
        of whole sentences; and each batch's sentence lengths."""
        from nerwin.model import eval_batches

        outs, lens = [], []
        for rows, lengths in eval_batches(data, True):
            feed = self._feed(data.rows(rows))
            if "sentence_lengths" in self.input_names:  # a block that works per sentence
                feed["sentence_lengths"] = np.asarray(lengths, dtype=np.int64)
            (s,) = self.session.run(["scores"], feed)
            outs.append(s)
            lens.append(lengths)
        if not outs:
            return self.head.empty_scores(), []
        return np.concatenate(outs), lens

    # -- decoding: what the checkpoint's head does, from the scores

    def _decode_ids(self, out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.head.decode(out, lengths, self.crf)

    def _proba(self, out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.head.columns(self.head.proba(out, lengths, self.crf))

    def _tags(self, data: Any, ids: np.ndarray) -> list[list[str]]:
        """IOB2 tags from ids, as nerwin.model.Model.decode (the head's labels, read in its
        scheme: the repair rule; logistic: IO)."""
        from nerwin.conll import to_iob2

        labels = self.head.labels
        return [to_iob2([labels[i] for i in s], self.head.scheme)[0] for s in data.split(ids)]

    def _labels(self) -> list[str]:
        return self.head.labels

    def _run(self, sentences: list[Any], want_ids: bool, want_proba: bool
             ) -> tuple[Any, np.ndarray, np.ndarray]:
        data = self._encode(sentences)
        out, lens = self.scores(data)
        ids = np.empty(len(data), dtype=np.int64)
        probs = np.empty((len(data), len(self._labels())), dtype=np.float64)
        start = 0
        for lengths in lens:  # the decoders work per batch of whole sentences
            n = int(np.sum(lengths))
            o = out[start: start + n]
            if want_ids:
                ids[start: start + n] = self._decode_ids(o, lengths)
            if want_proba:
                probs[start: start + n] = self._proba(o, lengths)
            start += n
        return data, ids, probs

    def tag(self, sentences: list[Any]) -> list[list[str]]:
        """Predicted IOB2 tags for untagged sentences."""
        data, ids, _ = self._run(sentences, True, False)
        return self._tags(data, ids)

    def token_probabilities(self, sentences: list[Any]) -> tuple[list[str], list[np.ndarray]]:
        data, _, probs = self._run(sentences, False, True)
        return self._labels(), data.split(probs)

    def tag_and_probabilities(self, sentences: list[Any]
                              ) -> tuple[list[list[str]], list[str], list[np.ndarray]]:
        data, ids, probs = self._run(sentences, True, True)
        return self._tags(data, ids), self._labels(), data.split(probs)


def load_onnx_model(path: str | Path, threads: int = 1) -> OnnxModel:
    """Open an ONNX file written by ``nerwin export`` in onnxruntime."""
    ort = _need("onnxruntime", "tagging with an .onnx model")
    path = Path(path)
    if not path.is_file():
        raise NerwinError(f"{path}: no such file; expected an .onnx file from nerwin export")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(os.fspath(path), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise NerwinError(f"{path}: cannot load the ONNX file ({msg[:200]})") from None
    props = dict(session.get_modelmeta().custom_metadata_map)
    if "nerwin_meta" not in props:
        raise NerwinError(f"{path}: not an ONNX file written by nerwin export (no "
                          f"nerwin_meta in its metadata)")
    return OnnxModel(path, session, props)
