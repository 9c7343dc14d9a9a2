"""``nerwin export``: a checkpoint's network as an ONNX graph, and tagging through onnxruntime.

The graph is built from the checkpoint's saved arrays and its meta.json alone (the
parameter names E_word, E_case, E_prefixN, E_suffixN, E_shape, E_char/W_char/b_char,
W1/b1 ..., U/c or u/c), not from nerwin's network classes. Feature ids in, per-token scores
out:

    inputs   one (B, 2m+1) int64 id array per lookup table, named ``ids_<feature>``, in the
             window order of the features (word, casing, prefixes, suffixes, shape); for
             the character encoder ``chars`` (U, L) int64, the character ids of the U
             distinct words of the batch (0 = <pad> after each word), and ``char_index``
             (B, 2m+1) int64, the row of ``chars`` at each window position
    network  Gather per table (the char encoder: Pad + Gather + the k shifted slices
             concatenated + MatMul + Add, masked to the word's own positions, ReduceMax:
             nerwin.nn.chars), Concat, Reshape to (B, D), Gemm + nonlinearity per hidden
             layer (Sigmoid, Tanh, Clip(-1, 1) for hardtanh, Relu), Gemm of the head
    output   ``scores``: (B, C) per-token scores (softmax, crf heads), (B,) for logistic

The decoder (argmax, Viterbi, the crf's Viterbi with its transition, start and end scores)
and the entity scores stay in nerwin's Python code: ``nerwin tag MODEL.onnx`` encodes the
features with nerwin's own code, runs the network in onnxruntime, and decodes as the
checkpoint does.

Metadata (``metadata_props``, all strings, JSON where structured): ``nerwin_version``,
``nerwin_meta`` (the checkpoint's meta: config, every feature's vocabulary, tags),
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
        feats = features_from_vocabs(cfg.features, meta["vocabs"])
        lex = Lexicon(feats[0].vocab, Vocab(tuple(meta["tags"])), features=feats)
    except (KeyError, TypeError, ValueError) as e:
        raise NerwinError(f"{where}: not a nerwin model ({e})") from None
    return cfg, lex


def feature_rules(lex: Any) -> list[dict[str, Any]]:
    """How each network input is computed from a token (for a runtime outside Python)."""
    from nerwin.features import (
        AffixFeature,
        CasingFeature,
        CharFeature,
        ShapeFeature,
        WordFeature,
    )

    rules = []
    for f in lex.features:
        r: dict[str, Any] = {"name": f.name, "param": f.param, "dim": f.dim,
                             "left_pad": f.left_pad, "right_pad": f.right_pad}
        if isinstance(f, WordFeature):
            r.update(kind="word", lowercase=f.lowercase, digits=f.digits,
                     rule="the id of nerwin.vocab.normalise(token) in the vocabulary, 0 "
                          "(<unk>) when absent; pads 1 (<s>) and 2 (</s>)")
        elif isinstance(f, CasingFeature):
            r.update(kind="casing", rule="nerwin.vocab.casing: one of 5 classes, 0 = pad")
        elif isinstance(f, AffixFeature):
            r.update(kind=f.kind, n=f.n, rule=f"the {f.kind} of length {f.n} of the "
                                              f"lowercased digit-normalised word")
        elif isinstance(f, ShapeFeature):
            r.update(kind="shape", rule="nerwin.features.word_shape")
        elif isinstance(f, CharFeature):
            r.update(kind="chars", filters=f.filters, width=f.width, max_len=f.max_len,
                     rule="character ids (unknown 1, <pad> 0), clipped by "
                          "nerwin.features.clip_word; pads are one character 2 (<s>) or "
                          "3 (</s>)")
        else:
            raise NerwinError(f"cannot export the feature {f.name!r} ({type(f).__name__}): "
                              f"the ONNX exporter does not know how it is computed")
        rules.append(r)
    return rules


# --------------------------------------------------------------------------- export


def build_graph(arrays: dict[str, np.ndarray], cfg: Any, lex: Any, where: str) -> Any:
    """The ONNX ModelProto of the network whose parameters are ``arrays``."""
    onnx = _need("onnx", "nerwin export")
    from onnx import TensorProto, helper, numpy_helper

    from nerwin.features import CharFeature

    dtype = arrays["c"].dtype
    if dtype not in (np.float32, np.float64):
        raise NerwinError(f"{where}: cannot export parameters of dtype {dtype}")
    ftype = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    m = cfg.model
    K = 2 * cfg.features.window + 1
    used: set[str] = set()
    inits: list[Any] = []
    nodes: list[Any] = []
    inputs: list[Any] = []

    def param(name: str, value: np.ndarray | None = None) -> str:
        if value is None:
            if name not in arrays:
                raise NerwinError(f"{where}: parameter {name} is missing")
            used.add(name)
            value = arrays[name]
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(name: str, value: Any, dt: Any = np.int64) -> str:
        return param(name, np.asarray(value, dtype=dt))

    def node(op: str, ins: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    parts = []
    for f in lex.features:
        if isinstance(f, CharFeature):
            h = (f.width - 1) // 2
            inputs.append(helper.make_tensor_value_info("chars", TensorProto.INT64,
                                                        ["words", "max_chars"]))
            inputs.append(helper.make_tensor_value_info("char_index", TensorProto.INT64,
                                                        ["batch", K]))
            padded = node("Pad", ["chars", const("char_pads", [0, h, 0, h])], "chars_padded")
            emb = node("Gather", [param("E_char"), padded], "char_emb")  # (U, L+2h, d)
            shifted = []
            for j in range(f.width):
                end = j - 2 * h if j < 2 * h else np.iinfo(np.int64).max
                shifted.append(node("Slice", [emb, const(f"char_s{j}", [j]),
                                              const(f"char_e{j}", [end]),
                                              const(f"char_ax{j}", [1])], f"char_win{j}"))
            x = node("Concat", shifted, "char_x", axis=2)  # (U, L, width*d)
            Wt = arrays["W_char"].T.copy()
            used.add("W_char")
            z = node("MatMul", [x, param("W_char_T", Wt)], "char_xw")
            z = node("Add", [z, param("b_char")], "char_z")  # (U, L, F)
            valid = node("Not", [node("Equal", ["chars", const("zero_id", 0)], "char_pad")],
                         "char_valid")
            valid = node("Unsqueeze", [valid, const("axis2", [2])], "char_valid3")
            ninf = const("neg_inf", -np.inf, dtype)
            masked = node("Where", [valid, z, ninf], "char_masked")
            enc = node("ReduceMax", [masked], "char_enc", axes=[1], keepdims=0)  # opset 17
            parts.append(node("Gather", [enc, "char_index"], "table_chars"))  # (B, K, F)
        else:
            name = f"ids_{f.name}"
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64,
                                                        ["batch", K]))
            parts.append(node("Gather", [param(f.param), name], f"table_{f.name}"))
    x = node("Concat", parts, "window_cat", axis=2) if len(parts) > 1 else parts[0]
    h = node("Reshape", [x, const("flat_shape", [0, -1])], "x")  # (B, K * position dim)
    act = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "hardtanh": "Clip"}
    if m.nonlinearity not in act:
        raise NerwinError(f"{where}: cannot export the nonlinearity {m.nonlinearity!r}")
    for i in range(1, len(m.hidden) + 1):
        z = node("Gemm", [h, param(f"W{i}"), param(f"b{i}")], f"z{i}", transB=1)
        if m.nonlinearity == "hardtanh":
            h = node("Clip", [z, const("minus1", -1.0, dtype), const("plus1", 1.0, dtype)],
                     f"h{i}")
        else:
            h = node(act[m.nonlinearity], [z], f"h{i}")
    if m.head == "logistic":
        u = arrays["u"][None, :]
        used.add("u")
        s = node("Gemm", [h, param("u_row", u), param("c")], "s", transB=1)
        node("Reshape", [s, const("vec_shape", [-1])], "scores")
        out = helper.make_tensor_value_info("scores", ftype, ["batch"])
    elif m.head in ("softmax", "crf"):
        node("Gemm", [h, param("U"), param("c")], "scores", transB=1)
        out = helper.make_tensor_value_info("scores", ftype, ["batch", len(lex.tags)])
        if m.head == "crf":
            used.update({"trans", "start", "end"})  # in the metadata, for the decoder
    else:
        raise NerwinError(f"{where}: cannot export the head {m.head!r}")
    left = sorted(set(arrays) - used)
    if left:
        raise NerwinError(f"{where}: cannot export {', '.join(left)}: the ONNX exporter "
                          f"does not know where these parameters go")
    graph = helper.make_graph(nodes, "nerwin", inputs, [out], initializer=inits)
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
    crf = ({k: arrays[k].tolist() for k in ("trans", "start", "end")}
           if cfg.model.head == "crf" else {})
    keep = {k: meta[k] for k in ("nerwin_version", "config", "vocabs", "tags", "frozen")
            if k in meta}
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

    # -- encoding and scores

    def _encode(self, sentences: list[Any]) -> Any:
        from nerwin.conll import Corpus, Sentence
        from nerwin.dataset import encode

        blank = [Sentence(s.tokens, ["O"] * len(s.tokens), s.line) for s in sentences]
        return encode(Corpus(Path("<input>"), blank, scheme="iob2"), self.lex, self.cfg.features)

    def _feed(self, rows: tuple[Any, ...]) -> dict[str, np.ndarray]:
        from nerwin.features import CharFeature

        feed = {}
        for f, a in zip(self.lex.features, rows, strict=True):
            if isinstance(f, CharFeature):
                feed["chars"] = np.asarray(a.chars, dtype=np.int64)
                feed["char_index"] = np.asarray(a.index, dtype=np.int64)
            else:
                feed[f"ids_{f.name}"] = np.asarray(a, dtype=np.int64)
        return feed

    def scores(self, data: Any) -> tuple[np.ndarray, list[np.ndarray]]:
        """(N, C) or (N,) scores of every token of ``data`` (WindowData), batch by batch
        of whole sentences; and each batch's sentence lengths."""
        from nerwin.model import eval_batches

        outs, lens = [], []
        for rows, lengths in eval_batches(data, True):
            (s,) = self.session.run(["scores"], self._feed(data.rows(rows)))
            outs.append(s)
            lens.append(lengths)
        if not outs:
            C = len(self.lex.tags)
            return np.zeros((0, C) if self.cfg.model.head != "logistic" else (0,)), []
        return np.concatenate(outs), lens

    # -- decoding: what the checkpoint's head does, from the scores

    def _constraints(self) -> Any:
        from nerwin.nn.crf import allowed_transitions

        return allowed_transitions(self.lex.tags.itos) if self.cfg.model.constrained else None

    def _decode_ids(self, out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        from nerwin.nn.crf import viterbi
        from nerwin.nn.heads import softmax

        m = self.cfg.model
        if m.head == "logistic":
            return (out > 0).astype(np.int64)
        if m.head == "crf":
            return viterbi(out, lengths, self.crf["trans"], self.crf["start"],
                           self.crf["end"], self._constraints())
        if (m.decode or "viterbi") == "argmax":
            return out.argmax(axis=1).astype(np.int64)
        logp = np.log(np.maximum(softmax(out), np.finfo(out.dtype).tiny))
        C = out.shape[1]
        z = np.zeros((C, C), dtype=out.dtype)
        return viterbi(logp, lengths, z, z[0], z[0], self._constraints())

    def _proba(self, out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        from nerwin.nn.crf import crf_marginals
        from nerwin.nn.heads import sigmoid, softmax

        m = self.cfg.model
        if m.head == "logistic":
            p = sigmoid(out)
            return np.stack([1.0 - p, p], axis=1)
        if m.head == "crf":
            return crf_marginals(out, lengths, self.crf["trans"], self.crf["start"],
                                 self.crf["end"], self._constraints())
        return softmax(out)

    def _tags(self, data: Any, ids: np.ndarray) -> list[list[str]]:
        """IOB2 tags from ids, as nerwin.model.Model.decode (repair rule; logistic: IO)."""
        from nerwin.conll import to_iob2

        if self.cfg.model.head != "logistic":
            itos = self.lex.tags.itos
            return [to_iob2([itos[i] for i in s], "iob2")[0] for s in data.split(ids)]
        p = self.cfg.model.positive
        return [to_iob2([f"I-{p}" if v else "O" for v in s], "io")[0]
                for s in data.split(ids)]

    def _labels(self) -> list[str]:
        if self.cfg.model.head == "logistic":
            return ["O", f"I-{self.cfg.model.positive}"]
        return list(self.lex.tags.itos)

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
