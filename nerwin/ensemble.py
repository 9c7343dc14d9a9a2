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

    def _member_pass(self, m: Model, corpus: Corpus, raw: bool
                     ) -> tuple[np.ndarray, np.ndarray | None, WindowData]:
        """(N, columns) probabilities of member ``m``, its (N, scores) raw scores when
        ``raw`` (else None), and its encoding of ``corpus``: one forward pass."""
        data = m.encode(corpus)
        net = m.net
        head = net.head
        proj = net.projections(len(data))
        probs = np.zeros((len(data), len(head.labels)), dtype=np.float64)
        scores = np.zeros((len(data), *head.empty_scores().shape[1:])) if raw else None
        for rows, lens in sentence_batches(data.lengths, PREDICT_BATCH):
            s, _ = net.forward(data.rows(rows), train=False, proj=proj, lengths=lens)
            probs[rows] = head.columns(head.proba(s, lens, net.params))
            if scores is not None:
                scores[rows] = s
        return probs, scores, data

    def _decode_ids(self, corpus: Corpus) -> tuple[np.ndarray, np.ndarray, WindowData]:
        """(N,) tag ids of the combined decoding, (N, labels) averaged probabilities, and
        the first member's encoding of ``corpus``."""
        raw = self.combine == "potentials"
        passes = [self._member_pass(m, corpus, raw) for m in self.members]
        data = passes[0][2]
        mean_p = np.mean([p for p, _, _ in passes], axis=0)
        lengths = data.lengths
        ids = np.empty(len(data), dtype=np.int32)
        if not raw:  # marginals: average the log-probabilities, decode once with the mask
            tiny = np.finfo(np.float64).tiny
            logs = np.mean([np.log(np.maximum(p, tiny)) for p, _, _ in passes], axis=0)
            self._viterbi(logs, lengths, ids)
        else:  # potentials: average raw scores and the head's own parameters
            scores = np.mean([r for _, r, _ in passes], axis=0)
            own = {k: np.mean([m.net.params[k] for m in self.members], axis=0)
                   for k in self.head.param_shapes()}
            for idx, lens in sentence_batches(lengths, PREDICT_BATCH):
                ids[idx] = self.head.decode(scores[idx], lens, own)
        return ids, mean_p, data

    def _viterbi(self, logs: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> None:
        """Viterbi over averaged log-scores with zero transitions and the head's mask (no
        mask, i.e. argmax, for a head that decodes token by token)."""
        from nerwin.nn.crf import viterbi

        if not self.head.per_sentence:
            ids[:] = logs.argmax(axis=1)
            return
        C = logs.shape[1]
        z = np.zeros((C, C))
        cons = self.head.constraints()
        for idx, lens in sentence_batches(lengths, PREDICT_BATCH):
            ids[idx] = viterbi(logs[idx], lens, z, z[0], z[0], cons)

    # -------------------------------------------------------------- the Model interface

    def gold_tags(self, corpus: Corpus) -> list[list[str]]:
        """The gold tags as the ensemble is scored (its members', e.g. one logistic type)."""
        return self.members[0].gold_tags(corpus)

    def evaluate(self, corpus: Corpus, data: WindowData | None = None
                 ) -> tuple[dict[str, Any], list[list[str]]]:
        """Entity-level scores of the combined tags on ``corpus`` and the tags. ``loss`` is
        the mean over tokens of −log of the members' averaged probability of the gold tag."""
        ids, mean_p, data = self._decode_ids(corpus)
        first = self.members[0]
        pred = first.decode(data, ids)
        scores = score(first.gold_tags(corpus), pred)
        y = first.targets(data.labels)
        gold_p = mean_p[np.arange(len(y)), y] if len(y) else np.zeros(0)
        scores["loss"] = float(-np.log(np.maximum(gold_p, np.finfo(np.float64).tiny)).mean()
                               ) if len(y) else 0.0
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
        ids, mean_p, data = self._decode_ids(corpus)
        return self.members[0].decode(data, ids), list(self.head.labels), data.split(mean_p)
