"""How often nerwin's tokenizer gives back CoNLL-2003's own tokens from raw text. Prints JSON.

    python bench/tokenizer_agreement.py                 # train, valid, test of ../shared/data
    python bench/tokenizer_agreement.py --show 20       # also print 20 disagreements

Method: for every sentence of each file, rebuild raw text from its tokens with
nerwin.tokenize.detokenize (tokens joined by spaces; no space before , . ; : ! ? ) ] } %
... and the clitics 's n't 'm 're 've 'll 'd; none after ( [ { $; double and single quotes
alternate between opening and closing), tokenize it with nerwin.tokenize.tokenize, and count
the sentences whose tokens equal CoNLL's exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerwin.conll import read_tokens
from nerwin.tokenize import agreement

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "conll2003"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*",
                    default=[str(SHARED / f) for f in ("train.txt", "valid.txt", "test.txt")])
    ap.add_argument("--show", type=int, default=0, help="print this many disagreements")
    args = ap.parse_args()
    out = {"command": " ".join(["python", *sys.argv]), "files": {}}
    total_same = total = 0
    shown = 0
    for f in args.files:
        sents = [s.tokens for s in read_tokens(f)]
        same, diffs = agreement(sents)
        total_same += same
        total += len(sents)
        out["files"][Path(f).name] = {"sentences": len(sents), "agree": same,
                                      "percent": round(100 * same / len(sents), 2)}
        for want, got in diffs:
            if shown < args.show:
                print(f"want {want}\ngot  {got}", file=sys.stderr)
                shown += 1
    out["all"] = {"sentences": total, "agree": total_same,
                  "percent": round(100 * total_same / max(1, total), 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
