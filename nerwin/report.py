"""``nerwin data``: what a user checks before training, as a dict and as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nerwin.config import Config
from nerwin.conll import Corpus, read_conll


def corpus_stats(c: Corpus) -> dict[str, Any]:
    """Sentences, tokens, entities per type, scheme, repairs and the longest sentence."""
    lengths = c.lengths
    longest = int(np.argmax(lengths))  # the first of the longest, as max() picks
    ents = c.entity_counts()
    return {
        "file": str(c.path),
        "sentences": len(lengths),
        "tokens": c.n_tokens,
        "documents": c.docs,
        "columns": c.columns,
        "scheme": c.scheme,
        "repaired_tags": c.repaired,
        "entities": sum(ents.values()),
        "entities_per_type": dict(sorted(ents.items())),
        "longest_sentence": {"tokens": int(lengths[longest]), "line": int(c.lines[longest])},
    }


def data_report(files: list[Path], cfg: Config | None, scheme: str | None) -> dict[str, Any]:
    """The report of ``nerwin data``; with a config, vocabulary and vector coverage too."""
    scheme = scheme or (cfg.data.scheme if cfg else "auto")
    tag_column = cfg.data.tag_column if cfg else -1
    corpora = [read_conll(f, scheme=scheme, tag_column=tag_column) for f in files]
    by_path = {Path(c.path).resolve(): c for c in corpora}
    report: dict[str, Any] = {"files": [corpus_stats(c) for c in corpora]}
    if cfg is not None:
        from nerwin.config import train_files
        from nerwin.conll import concat_corpora
        from nerwin.dataset import build_lexicon, read_split
        from nerwin.vocab import UNK_ID, encode_words

        def split(path: Path) -> Corpus:
            # A file named on the command line and in the config is read once (with the
            # config's scheme, which is what training would use).
            c = by_path.get(Path(path).resolve())
            return c if c is not None and scheme == cfg.data.scheme else read_split(cfg, path)

        train = concat_corpora([split(p) for p in train_files(cfg)])
        others = [split(p) for p in (cfg.data.dev, cfg.data.test) if p is not None]
        lex = build_lexicon(cfg, train, others, check=False)
        f = cfg.features
        vocab: dict[str, Any] = {"config": cfg.source, "words": len(lex.words),
                                 "tags": list(lex.tags.itos)}
        if lex.coverage is not None:
            vocab["vectors"] = str(f.vectors)
            vocab["coverage_percent"] = {k: round(v, 2)
                                         for k, v in lex.coverage.percent().items()}
        report["vocabulary"] = vocab
        seen = _mentions(train)
        for stats, c in zip(report["files"], corpora):
            mentions = _corpus_mentions(c)
            # Like spaCy's debug data: how much of this file's entities the model saw in
            # training; F1 on seen mentions is memory, on unseen ones generalisation.
            stats["entities_seen_in_train_percent"] = round(
                100.0 * sum(m in seen for m in mentions) / max(1, len(mentions)), 2)
            per_type = encode_words(c.types, lex.words, lowercase=f.lowercase,
                                    digits=f.digits)
            n = c.n_tokens
            unk = int(np.bincount(c.token_ids, minlength=len(c.types))[per_type == UNK_ID]
                      .sum())
            stats["unknown_token_percent"] = round(100.0 * unk / max(1, n), 2)
            stats["unseen_tags"] = sorted(set(c.tag_lines) - set(_raw_tags(lex.tags.itos)))
    return report


def _corpus_mentions(c: Corpus) -> list[tuple[str, tuple[str, ...]]]:
    """(type, tokens) of every entity of the corpus, in order."""
    tag, starts, ends = c.entity_spans()
    types, ids, names = c.types, c.token_ids, c.tag_names
    return [(names[k][2:], tuple(types[i] for i in ids[a:b].tolist()))
            for k, a, b in zip(tag.tolist(), starts.tolist(), ends.tolist())]


def _mentions(c: Corpus) -> set[tuple[str, tuple[str, ...]]]:
    return set(_corpus_mentions(c))


def _raw_tags(iob2: tuple[str, ...]) -> set[str]:
    """Tags in any scheme that map onto the known IOB2 types (for the unseen-tag check)."""
    out = set()
    for t in iob2:
        out.add(t)
        if t != "O":
            out.update(f"{p}-{t[2:]}" for p in "BIES")
    return out


def format_data_report(report: dict[str, Any]) -> str:
    lines = []
    for s in report["files"]:
        ents = ", ".join(f"{k} {v}" for k, v in s["entities_per_type"].items()) or "none"
        lines += [
            f"{s['file']}",
            f"  sentences {s['sentences']:,}   tokens {s['tokens']:,}   "
            f"documents {s['documents']:,}   columns {s['columns']}",
            f"  entities {s['entities']:,}: {ents}",
            f"  scheme {s['scheme']}   repaired tags {s['repaired_tags']}   "
            f"longest sentence {s['longest_sentence']['tokens']} tokens "
            f"(line {s['longest_sentence']['line']})",
        ]
        if "unknown_token_percent" in s:
            lines.append(f"  unknown tokens {s['unknown_token_percent']:.2f} %   entities "
                         f"seen in train {s['entities_seen_in_train_percent']:.2f} %")
            if s["unseen_tags"]:
                lines.append(f"  tags never seen in train: {', '.join(s['unseen_tags'])}")
    v = report.get("vocabulary")
    if v:
        lines.append(f"vocabulary ({v['config']}): {v['words']:,} words, "
                     f"{len(v['tags'])} tags ({' '.join(v['tags'])})")
        if "coverage_percent" in v:
            c = v["coverage_percent"]
            lines.append(f"  vectors {v['vectors']}: exact {c['exact']:.2f} %, "
                         f"lowercase {c['lowercase']:.2f} %, missing {c['missing']:.2f} %")
    return "\n".join(lines)
