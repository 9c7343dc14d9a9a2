"""Ensembles: several trained models that tag as one (``nerwin ensemble MODEL MODEL… --out DIR``).

An ensemble folder is self-contained::

    DIR/ensemble.json      the manifest (below)
    DIR/members/0/         a copy of the first member checkpoint (params.npz, meta.json)
    DIR/members/1/         ...

``ensemble.json`` holds ``"format": "nerwin-ensemble"``, ``"format_version"``, ``combine``
(how the members' scores are combined, below), the shared ``tags``, ``scheme`` and ``head``,
and per member its folder, the path it was copied from, and the sha256 of each of its files;
``manifest_sha256`` is the sha256 of the rest of the manifest as canonical JSON, so an
edited manifest is refused on load like an edited checkpoint. Loading checks every file's
hash, then loads each member (which checks its own array hashes).

Combining (one constrained decoding of the averaged scores, whatever the head):

- ``marginals``: each member's per-token probabilities over the tags (softmax:
  its softmax; crf: its forward-backward node marginals) go to logs, the logs are averaged
  over the members, and the tags are the Viterbi path over the averaged log-scores with
  every transition score 0 and the head's allowed-transition mask (IOB2, or the model's
  scheme): the most probable valid tag sequence of the members' geometric mean.
- ``potentials`` (the default): the members' raw network scores and the head's own
  parameters (the crf's transition, start and end scores) are averaged, and the head
  decodes them as one model would (for the crf: its Viterbi with the averaged transitions).

``potentials`` is the default because it scored better on CoNLL-2003 dev (three crf models
of configs/conll2003_best.yaml: 93.69 against 93.55; docs/results.md "Ensembles of seeds"). The
entity scores of ``nerwin tag`` and the API are read from the members' probabilities
averaged (arithmetic mean). Members must share their tags, scheme and head kind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nerwin.checkpoint import (
    META_FILE,
    PARAMS_FILE,
    _fsync_dir,
    _remove,
    _temp_sibling,
)
from nerwin.conll import Corpus, Sentence
from nerwin.errors import NerwinError
from nerwin.metrics import score
from nerwin.windows import WindowData, sentence_batches

# nerwin.model.load_model loads an ensemble through this module, so this module does not
# import nerwin.model: the caller passes the checkpoint loader (``load``), and members are
# typed loosely (nerwin.model.Model).
Model = Any
Loader = Callable[[Path], Any]
PREDICT_BATCH = 4096  # tokens per forward pass, as nerwin.model evaluates
#: A batch: rows start..stop of the encoded corpus and its sentences' lengths (nerwin.model).
Batch = tuple[int, int, Any]

FORMAT = "nerwin-ensemble"
FORMAT_VERSION = 1
MANIFEST = "ensemble.json"
MEMBERS = "members"
COMBINES = ("marginals", "potentials")
_MEMBER_FILES = (PARAMS_FILE, META_FILE)


def is_ensemble_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an ensemble manifest (not checked further)."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_sha256(manifest: dict[str, Any]) -> str:
    rest = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _signature(model: Model) -> dict[str, Any]:
    head = model.net.head
    return {"tags": list(model.lex.tags.itos), "scheme": head.scheme, "head": head.name}


def check_members(models: list[Model], names: list[str]) -> dict[str, Any]:
    """The shared tags, scheme and head of ``models``; a one-line error naming the first
    member that differs from the first one."""
    first = _signature(models[0])
    for m, name in zip(models[1:], names[1:]):
        sig = _signature(m)
        for key in ("head", "scheme", "tags"):
            if sig[key] != first[key]:
                raise NerwinError(
                    f"{name}: its {key} ({_show(sig[key])}) differ from {names[0]}'s "
                    f"({_show(first[key])}); ensemble members must share tags, scheme and "
                    f"head")
    return first


def _show(v: Any) -> str:
    return ", ".join(v) if isinstance(v, list) else str(v)


# --------------------------------------------------------------------------- writing


def write_ensemble(models: list[str | Path], out: str | Path, *, load: Loader,
                   force: bool = False, combine: str = "potentials") -> Path:
    """Write the ensemble of the checkpoint folders ``models`` to ``out`` (atomically).

    Each member is loaded (so verified) first and the members are checked against each
    other; nothing is written before. ``out`` may be new, an empty folder, or (with
    ``force``) an earlier ensemble folder, which is replaced; anything else is refused.
    ``load`` loads one checkpoint folder (nerwin.model.load_checkpoint_model).
    """
    from nerwin.rundir import check_out_path

    if combine not in COMBINES:
        raise NerwinError(f"--combine {combine!r}: expected one of {', '.join(COMBINES)}")
    if not models:
        raise NerwinError("nerwin ensemble: give at least one MODEL (a run's best/ folder)")
    names = [str(m) for m in models]
    loaded = []
    for m in models:
        if is_ensemble_folder(m):
            raise NerwinError(f"{m}: is an ensemble; give its members (or the runs' best/ "
                              f"folders) instead")
        loaded.append(load(Path(m)))
    sig = check_members(loaded, names)
    target = check_out_path(Path(out))
    if target.exists():
        if is_ensemble_folder(target):
            if not force:
                raise NerwinError(f"{out}: an ensemble is already there; use --force to "
                                  f"replace it, or another --out")
        elif not target.is_dir() or any(target.iterdir()):
            raise NerwinError(f"{out}: exists and is not an ensemble folder; refusing to "
                              f"replace it (choose another --out)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(target, "tmp")
    try:
        entries = []
        for i, m in enumerate(models):
            dest = tmp / MEMBERS / str(i)
            dest.mkdir(parents=True)
            files = {}
            for f in _MEMBER_FILES:
                shutil.copyfile(Path(m) / f, dest / f)
                files[f] = _file_sha256(dest / f)
            entries.append({"dir": f"{MEMBERS}/{i}", "source": os.path.abspath(m),
                            "sha256": files})
        manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION,
                                    "combine": combine, **sig, "members": entries}
        manifest["manifest_sha256"] = _manifest_sha256(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for d in (*(tmp / MEMBERS / str(i) for i in range(len(models))), tmp / MEMBERS, tmp):
            _fsync_dir(d)
    except BaseException:
        _remove(tmp)
        raise
    aside = _temp_sibling(target, "old")
    moved = False
    try:
        if os.path.lexists(target):
            os.replace(target, aside)
            moved = True
        os.replace(tmp, target)
    except BaseException:
        if moved and not os.path.lexists(target):
            with contextlib.suppress(OSError):
                os.replace(aside, target)
        _remove(tmp)
        raise
    _fsync_dir(target.parent)
    _remove(aside)
    return target


# --------------------------------------------------------------------------- loading


def load_ensemble(directory: str | Path, load: Loader) -> EnsembleModel:
    """The ensemble in ``directory``, every hash checked (a one-line error otherwise);
    ``load`` loads one member checkpoint (nerwin.model.load_checkpoint_model)."""
    root = Path(directory)
    where = root / MANIFEST
    bad = f"{where}: not a nerwin ensemble manifest"
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except OSError as e:
        raise NerwinError(f"{where}: cannot read the manifest ({e.strerror or e})") from None
    except ValueError as e:
        raise NerwinError(f"{bad} (invalid JSON: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NerwinError(f"{bad} (expected \"format\": \"{FORMAT}\")")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise NerwinError(f"{where}: format_version {manifest.get('format_version')!r}; this "
                          f"nerwin reads {FORMAT_VERSION}")
    if manifest.get("manifest_sha256") != _manifest_sha256(manifest):
        raise NerwinError(f"{where}: manifest_sha256 does not match its contents; the "
                          f"manifest was edited or is corrupt")
    members = manifest.get("members")
    combine = manifest.get("combine")
    if not isinstance(members, list) or not members or combine not in COMBINES:
        raise NerwinError(f"{bad} (expected a non-empty members list and combine one of "
                          f"{', '.join(COMBINES)})")
    models = []
    names = []
    for i, entry in enumerate(members):
        try:
            d, hashes = entry["dir"], entry["sha256"]
            if d != f"{MEMBERS}/{i}" or set(hashes) != set(_MEMBER_FILES):
                raise ValueError(d)
        except (KeyError, TypeError, ValueError):
            raise NerwinError(f"{bad} (member {i} is not {{dir: {MEMBERS}/{i}, sha256: "
                              f"{{params.npz, meta.json}}}})") from None
        member = root / d
        for f in _MEMBER_FILES:
            try:
                digest = _file_sha256(member / f)
            except OSError as e:
                raise NerwinError(f"{member / f}: cannot read ensemble member file "
                                  f"({e.strerror or e})") from None
            if digest != hashes[f]:
                raise NerwinError(f"{member / f}: sha256 does not match {where}; the member "
                                  f"was changed or is corrupt")
        models.append(load(member))
        names.append(str(member))
    sig = check_members(models, names)
    if any(sig[k] != manifest.get(k) for k in sig):
        raise NerwinError(f"{where}: tags, scheme or head differ from its members'")
    return EnsembleModel(models, combine, root)


class EnsembleModel:
    """Members that tag as one model: :meth:`evaluate`, :meth:`tag`,
    :meth:`tag_and_probabilities` and :meth:`token_probabilities` as nerwin.model.Model has
    them, so ``nerwin eval``, ``nerwin tag`` and the API take an ensemble like a model."""

    def __init__(self, members: list[Model], combine: str = "potentials",
                 path: Path | None = None) -> None:
        self.members = members
        self.combine = combine
        self.path = path
        first = members[0]
        self.cfg = first.cfg  # data files are read with the members' scheme and tag column
        self.lex = first.lex
        self.head = first.net.head

    # -------------------------------------------------------------- per-member passes

    def _plan(self, lengths: np.ndarray) -> list[Batch]:
        """The batches of a pass: whole sentences, about PREDICT_BATCH tokens each, as
        consecutive row ranges (start, stop, sentence lengths)."""
        out: list[Batch] = []
        start = 0
        for _, lens in sentence_batches(lengths, PREDICT_BATCH):
            stop = start + int(lens.sum())
            out.append((start, stop, lens))
            start = stop
        return out

    def _member_pass(self, m: Model, data: WindowData, batches: list[Batch], proj: Any,
                     raw: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """(rows, columns) probabilities of member ``m`` on the rows of ``batches`` (its
        encoding ``data``), and its (rows, scores) raw scores when ``raw`` (else None):
        one forward pass."""
        net = m.net
        head = net.head
        lo, hi = _span(batches)
        probs = np.zeros((hi - lo, len(head.labels)), dtype=np.float64)
        scores = np.zeros((hi - lo, *head.empty_scores().shape[1:])) if raw else None
        for a, b, lens in batches:
            s, _ = net.forward(data.rows(slice(a, b)), train=False, proj=proj, lengths=lens)
            probs[a - lo: b - lo] = head.columns(head.proba(s, lens, net.params))
            if scores is not None:
                scores[a - lo: b - lo] = s
        return probs, scores

    def _decode_ids(self, datas: list[WindowData], batches: list[Batch], projs: list[Any]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows,) tag ids of the combined decoding of the rows of ``batches``, and their
        (rows, labels) averaged probabilities; ``datas``: each member's encoding."""
        raw = self.combine == "potentials"
        passes = [self._member_pass(m, d, batches, p, raw)
                  for m, d, p in zip(self.members, datas, projs, strict=True)]
        mean_p = np.mean([p for p, _ in passes], axis=0)
        lo, _ = _span(batches)
        ids = np.empty(len(mean_p), dtype=np.int32)
        if not raw:  # marginals: average the log-probabilities, decode once with the mask
            tiny = np.finfo(np.float64).tiny
            logs = np.mean([np.log(np.maximum(p, tiny)) for p, _ in passes], axis=0)
            self._viterbi(logs, batches, lo, ids)
        else:  # potentials: average raw scores and the head's own parameters
            scores = np.mean([r for _, r in passes], axis=0)
            own = {k: np.mean([m.net.params[k] for m in self.members], axis=0)
                   for k in self.head.param_shapes()}
            for a, b, lens in batches:
                ids[a - lo: b - lo] = self.head.decode(scores[a - lo: b - lo], lens, own)
        return ids, mean_p

    def _viterbi(self, logs: np.ndarray, batches: list[Batch], lo: int,
                 ids: np.ndarray) -> None:
        """Viterbi over averaged log-scores with zero transitions and the head's mask (no
        mask, i.e. argmax, for a head that decodes token by token)."""
        from nerwin.nn.crf import viterbi

        if not self.head.per_sentence:
            ids[:] = logs.argmax(axis=1)
            return
        C = logs.shape[1]
        z = np.zeros((C, C))
        cons = self.head.constraints()
        for a, b, lens in batches:
            ids[a - lo: b - lo] = viterbi(logs[a - lo: b - lo], lens, z, z[0], z[0], cons)

    def _whole(self, corpus: Corpus) -> tuple[np.ndarray, np.ndarray, WindowData]:
        """:meth:`_decode_ids` over all of ``corpus``, and the first member's encoding."""
        datas = [m.encode(corpus) for m in self.members]
        ids, mean_p = self._decode_ids(datas, self._plan(datas[0].lengths),
                                       self.eval_projections(len(datas[0])))
        return ids, mean_p, datas[0]

    # -------------------------------------------------------------- the Model interface

    def gold_tags(self, corpus: Corpus) -> list[list[str]]:
        """The gold tags as the ensemble is scored (its members', e.g. one logistic type)."""
        return self.members[0].gold_tags(corpus)

    def evaluate(self, corpus: Corpus, data: WindowData | None = None
                 ) -> tuple[dict[str, Any], list[list[str]]]:
        """Entity-level scores of the combined tags on ``corpus`` and the tags. ``loss`` is
        the mean over tokens of −log of the members' averaged probability of the gold tag.
        ``nerwin eval`` runs the same batches in chunks: :meth:`eval_part` on each, then
        :meth:`eval_finish` (as nerwin.model.Model)."""
        datas = self.eval_encode(corpus)
        ids, gold_p = self.eval_part(datas, self.eval_plan(corpus.lengths),
                                     self.eval_projections(corpus.n_tokens))
        return self.eval_finish(corpus, ids, gold_p)

    def eval_encode(self, corpus: Corpus) -> list[WindowData]:
        """Each member's encoding of ``corpus`` (their lexicons may differ)."""
        return [m.encode(corpus) for m in self.members]

    def eval_plan(self, lengths: np.ndarray) -> list[Batch]:
        return self._plan(lengths)

    def eval_projections(self, n_tokens: int) -> list[Any]:
        """Each member's projections for a corpus of ``n_tokens`` tokens."""
        # Built from the members' parameters of now, as each member evaluates.
        return [m.net.projections(n_tokens) for m in self.members]

    def eval_part(self, datas: list[WindowData], batches: list[Batch], projs: list[Any]
                  ) -> tuple[np.ndarray, np.ndarray]:
        """The combined ids of the rows of ``batches`` and the members' averaged
        probability of each row's gold tag (what :meth:`eval_finish` turns into the loss)."""
        ids, mean_p = self._decode_ids(datas, batches, projs)
        lo, hi = _span(batches)
        y = self.members[0].targets(datas[0].labels[lo:hi])
        return ids, mean_p[np.arange(len(y)), y] if len(y) else np.zeros(0)

    def eval_finish(self, corpus: Corpus, ids: np.ndarray, gold_p: np.ndarray
                    ) -> tuple[dict[str, Any], list[list[str]]]:
        """Scores and tags of ``corpus`` from its :meth:`eval_part` results, in order."""
        first = self.members[0]
        pred = first.decode_lengths(corpus.lengths, ids)
        scores = score(first.gold_tags(corpus), pred)
        scores["loss"] = float(-np.log(np.maximum(gold_p, np.finfo(np.float64).tiny)).mean()
                               ) if len(gold_p) else 0.0
        return scores, pred

    def tag(self, sentences: list[Sentence]) -> list[list[str]]:
        return self.tag_and_probabilities(sentences)[0]

    def token_probabilities(self, sentences: list[Sentence]
                            ) -> tuple[list[str], list[np.ndarray]]:
        _, labels, probs = self.tag_and_probabilities(sentences)
        return labels, probs

    def tag_and_probabilities(self, sentences: list[Sentence]
                              ) -> tuple[list[list[str]], list[str], list[np.ndarray]]:
        blank = [Sentence(s.tokens, ["O"] * len(s.tokens), s.line) for s in sentences]
        corpus = Corpus(Path("<input>"), blank, scheme="iob2")
        ids, mean_p, data = self._whole(corpus)
        return self.members[0].decode(data, ids), list(self.head.labels), data.split(mean_p)


def _span(batches: list[Batch]) -> tuple[int, int]:
    """(first row, end) of consecutive ``batches``."""
    return (batches[0][0], batches[-1][1]) if batches else (0, 0)
