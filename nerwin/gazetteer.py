"""Gazetteers: named lists of (multi-word) entries, matched over sentences.

A list file is UTF-8 text, one entry a line; an empty line and a line starting with ``#``
are skipped. An entry is split into tokens on whitespace, the way CoNLL files hold tokens
(``U.S.``, ``St.`` and ``Saint-Denis`` stay one token each), so write entries tokenised as
the data is; nerwin.tokenize is not applied to them (CoNLL-style data keeps such tokens
whole, and the text that ``nerwin tag`` splits follows CoNLL's rules). With ``lowercase``
(features.gazetteer_lowercase) entries and tokens are compared lowercased.

Matching is greedy leftmost-longest within each sentence: scanning left to right, at each
token not yet inside a match the longest entry that starts there wins; the scan continues
after it. A token inside a match gets the match id of its place in it: B (first) and I (the
rest), or with the IOBES scheme B, I, E (last) and S (a one-token match); any other token
gets O. Ids: 0 the sentence pad, 1 O, 2 B, 3 I, 4 E, 5 S.

Speed: a dict maps each entry's first token to the lengths of the entries that start with
it (longest first); only tokens that start some entry are tried, each distinct token's
lowercased key is computed once per corpus.

A trained model keeps its lists' entries (and each file's sha256) in its checkpoint's
meta.json, so a model folder tags without the list files (see :meth:`Gazetteer.to_meta`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nerwin.errors import NerwinError, utf8_error

PAD, O, B, I, E, S = 0, 1, 2, 3, 4, 5  # noqa: E741 - the tag letters
#: The match classes of each scheme (row i of a list's table is the vector of class i).
CLASSES = {"iob2": ("<pad>", "O", "B", "I"), "iobes": ("<pad>", "O", "B", "I", "E", "S")}


@dataclass(frozen=True)
class Gazetteer:
    """One list: ``entries`` as token tuples (lowercased when ``lowercase``), the file it
    came from and the file's sha256."""

    name: str
    entries: frozenset[tuple[str, ...]]
    lowercase: bool = True
    source: str = ""
    sha256: str = ""
    _first: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False,
                                               repr=False)

    def __post_init__(self) -> None:
        first: dict[str, set[int]] = {}
        for e in self.entries:
            first.setdefault(e[0], set()).add(len(e))
        self._first.update({k: tuple(sorted(v, reverse=True)) for k, v in first.items()})

    def key(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def match(self, keys: Sequence[str], token_ids: np.ndarray, offsets: np.ndarray,
              scheme: str = "iob2") -> np.ndarray:
        """(N,) int8 match ids of a corpus: ``keys[k]`` is the key of distinct token k,
        ``token_ids`` (N,) each token's k, ``offsets`` (S+1,) where each sentence starts."""
        n = len(token_ids)
        out = np.full(n, O, dtype=np.int8)
        starts_entry = np.fromiter((k in self._first for k in keys), dtype=bool,
                                   count=len(keys))
        if n == 0 or not starts_entry.any():
            return out
        cand = np.flatnonzero(starts_entry[token_ids])
        sent_end = offsets[np.searchsorted(offsets, cand, side="right")]
        ids = token_ids.tolist()
        first, entries = self._first, self.entries
        iobes = scheme == "iobes"
        covered = 0  # the first token not inside an earlier match
        for pos, end in zip(cand.tolist(), sent_end.tolist()):
            if pos < covered:
                continue
            head = keys[ids[pos]]
            for length in first[head]:
                stop = pos + length
                if stop > end:
                    continue
                if length == 1 or tuple(keys[k] for k in ids[pos:stop]) in entries:
                    if iobes and length == 1:
                        out[pos] = S
                    else:
                        out[pos] = B
                        out[pos + 1: stop] = I
                        if iobes:
                            out[stop - 1] = E
                    covered = stop
                    break
        return out

    def match_tokens(self, tokens: Sequence[str], scheme: str = "iob2") -> np.ndarray:
        """(n,) match ids of one sentence."""
        keys = [self.key(t) for t in tokens]
        return self.match(keys, np.arange(len(tokens)), np.array([0, len(tokens)]), scheme)

    # -- the checkpoint form
    def to_meta(self) -> dict[str, Any]:
        """What a checkpoint keeps: the file's name and sha256, and the entries (sorted,
        tokens joined by one space) that tagging matches."""
        return {"source": self.source, "sha256": self.sha256, "lowercase": self.lowercase,
                "entries": sorted(" ".join(e) for e in self.entries)}

    @classmethod
    def from_meta(cls, name: str, meta: dict[str, Any]) -> Gazetteer:
        entries = frozenset(tuple(e.split(" ")) for e in meta["entries"])
        return cls(name, entries, bool(meta["lowercase"]), str(meta.get("source", "")),
                   str(meta.get("sha256", "")))


def load_gazetteer(name: str, path: str | Path, lowercase: bool = True) -> Gazetteer:
    """Read the list file ``path``; every problem is a one-line NerwinError naming the file
    (and line): missing, invalid UTF-8, an entry of only whitespace, no entry at all."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NerwinError(f"{path}: no such gazetteer file (features.gazetteers.{name})"
                          ) from None
    except OSError as e:
        raise NerwinError(f"{path}: cannot read the gazetteer (features.gazetteers.{name}): "
                          f"{e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise utf8_error(path, data[:e.start].count(b"\n") + 1, e, data,
                         "the gazetteer") from None
    text = text.removeprefix("\ufeff")
    entries: set[tuple[str, ...]] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if line == "" or line.startswith("#"):
            continue
        tokens = line.split()
        if not tokens:
            raise NerwinError(f"{path}:{lineno}: an entry of only whitespace; expected an "
                              f"entry (tokens separated by spaces), an empty line or a "
                              f"# comment")
        entries.add(tuple(t.lower() for t in tokens) if lowercase else tuple(tokens))
    if not entries:
        raise NerwinError(f"{path}: the gazetteer {name!r} has no entries; expected one "
                          f"entry a line (# starts a comment)")
    return Gazetteer(name, frozenset(entries), lowercase, str(path),
                     hashlib.sha256(data).hexdigest())


def check_unchanged(files: dict[str, Path] | None, stored: dict[str, Any] | None,
                    where: str) -> None:
    """On resume: each list file must still hash to what the run's checkpoint stored (a
    resumed run keeps matching the entries it started with; a silently different list file
    would make the run mean something else)."""
    for name, path in (files or {}).items():
        saved = (stored or {}).get(f"gaz_{name}", {}).get("sha256")
        try:
            now = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            continue  # the config check names a missing file; the checkpoint has the entries
        if saved and now != saved:
            raise NerwinError(f"features.gazetteers.{name}: {path} has changed since the run "
                              f"in {where} started (sha256 {now[:12]}…, the run's {saved[:12]}…); "
                              f"restore the list or start over with --force")
