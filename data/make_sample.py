"""Generate the synthetic sample NER corpus in ``data/sample/``.

Every name and sentence template below is invented for this project; nothing is copied from a
real corpus. The output is CoNLL-style (``token TAG`` per line, blank line between sentences,
``-DOCSTART- O`` document breaks) with IOB2 tags over the types PER, ORG, LOC and MISC.

The generator is deterministic: it draws only from its own ``random.Random(seed)`` and iterates
over lists (never sets or dict orderings that could vary), so the same seed yields the same bytes
on every supported Python version.

Usage::

    python data/make_sample.py            # (re)write data/sample/{train,dev,test}.txt
    python data/make_sample.py --check    # exit 1 if the files on disk differ from a fresh run
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

SEED = 20240607
HERE = Path(__file__).resolve().parent
SAMPLE_DIR = HERE / "sample"
SPLITS = ("train", "dev", "test")

# split -> (documents, token budget, probability that an entity slot uses a dev/test-only name,
#           probability that it uses a freshly invented one-off name)
# The one-off names give train the long tail of rare names a real corpus has, so a model must
# learn from context and casing rather than memorise a closed list.
SPLIT_PLAN = {
    "train": (4, 8700, 0.0, 0.2),
    "dev": (3, 2850, 0.32, 0.0),
    "test": (3, 2850, 0.32, 0.0),
}

Token = tuple[str, str]  # (word, IOB2 tag)

# ---------------------------------------------------------------------------------------------
# Invented names. "shared" names may occur in every split; "dev"/"test" names occur only there,
# so a realistic share of dev/test mentions is unseen in train.
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = {
    "shared": [
        "Maria", "Tomas", "Elena", "Jonas", "Ida", "Marek", "Summer", "Rose", "Anika", "Pavel",
        "Lena", "Oskar", "Nadia", "Felix", "Greta", "Hugo", "Selma", "Viktor", "Clara", "Emil",
        "Rafael", "Ines", "Teodor", "Wren", "Bram", "Saskia", "May", "Lucan",
    ],
    "dev": ["Jorunn", "Casimir", "Odile", "Henrik", "Talia"],
    "test": ["Ansel", "Mireille", "Quentin", "Liv", "Dorian"],
}

SURNAMES = {
    "shared": [
        "Aldane", "Varnholt", "Reyk", "Brennick", "Maddery", "Tollan", "Kessing", "Castelmoor",
        "Pellinger", "Hask", "Drummel", "Ferrow", "Quillan", "Grant", "van der Berg",
        "de la Fosse", "ten Hove", "van Dalen", "di Marcoli", "Holm-Varga", "Nwakora",
        "Saltmarsh", "Kavanell", "Ravensholt",
    ],
    "dev": ["Okonra", "Belvane", "Strood", "Marsik", "Ennisford", "de Vrell", "van Hollum"],
    "test": ["Hollowell", "Quenby", "Zarek", "Ashgrove", "van Oort", "Pelletry", "da Montara"],
}

# (slot kind) -> {pool: [names]}; each name is a space-separated token sequence.
NAMES: dict[str, tuple[str, dict[str, list[str]]]] = {
    "CO": ("ORG", {
        "shared": [
            "Talbridge Mining Corp", "North Quarry Mining Corp", "Halvex Industries", "Halvex",
            "Corvane Bank", "Bank of Orvelle", "Merrowfield Holdings", "Ostrelo Airways",
            "Quarrick Motors", "Vantic Telecom", "Sennet Group", "Duvessa", "Kelmore Foods",
            "Praxley Corp.", "Veltrian Rail", "Branvik Energy",
        ],
        "dev": ["Pendrake Shipping", "Abravel Bank", "Lunessa Corp.", "Crestmoor Holdings",
                "Ostwick Steel"],
        "test": ["Oakhurst Freight Group", "Tessaro Industries", "Marrowind Energy",
                 "Bank of Caldor", "Yarrow Biotech"],
    }),
    # lowercase brands / handles that are nevertheless organisations
    "BRAND": ("ORG", {
        "shared": ["zintra", "quorbix"],
        "dev": ["vimbly"],
        "test": ["pluvio"],
    }),
    "TEAM": ("ORG", {
        "shared": [
            "Orvelle United", "Branvik Rovers", "Kestrel", "Port Hallen Athletic",
            "Korsmark City", "Tenna Valley", "Saldre Wanderers", "Quillon", "Altavar Sporting",
        ],
        "dev": ["Ostwick Harriers", "Varda", "Lanthorn Rangers"],
        "test": ["Caldor Albion", "Ferrin Town", "Mossgate Rovers"],
    }),
    "INST": ("ORG", {
        "shared": [
            "Orvelle Senate", "Veltrian Football Association", "National Harbour Authority",
            "Ministry of Waterways", "Osmark Trade Council", "Daily Lantern",
        ],
        "dev": ["Pembrin Water Board", "Sorvany Harbour Board"],
        "test": ["Caldor Press Guild", "Carrowen Rail Authority"],
    }),
    "CITY": ("LOC", {
        "shared": [
            "Orvelle", "Branvik", "Korsmark", "Port Hallen", "San Miraso", "Tessfield",
            "Quillon", "Altavar", "Dunreth", "Saldre",
        ],
        "dev": ["Ostwick", "Varda", "Santa Leora"],
        "test": ["Caldor", "Ferrin", "New Halvary"],
    }),
    "COUNTRY": ("LOC", {
        "shared": ["Veltria", "Osmark", "Marrosia", "Velsland", "Tannory"],
        "dev": ["Pembria", "Sorvany"],
        "test": ["Ysoland", "Carrowen"],
    }),
    "GEO": ("LOC", {
        "shared": ["Lake Orvelle", "Mount Saldre", "River Tenna", "Korsmark Bay",
                   "Greyhollow Forest", "Cape Merrin"],
        "dev": ["Lake Pembrin", "Varda Gorge"],
        "test": ["Mount Ysolde", "Ferrin Sound"],
    }),
    "NAT": ("MISC", {
        "shared": ["Veltrian", "Osmarki", "Marrosian", "Velslander", "Tannorese"],
        "dev": ["Pembrian", "Sorvanian"],
        "test": ["Ysolandic", "Carrowenese"],
    }),
    "EVENT": ("MISC", {
        "shared": ["Orvelle Cup", "Veltria Open", "Lantern Festival", "Tenna Regatta",
                   "Northern Games", "Korsmark Marathon"],
        "dev": ["Varda Marathon", "Ostwick Trophy"],
        "test": ["Ferrin Classic", "Ysolde Games"],
    }),
    "PROD": ("MISC", {
        "shared": ["Halvex X20", "Quarrick Sable", "Vantic V5", "Zintra Go"],
        "dev": ["Lunessa L9", "Crestmoor Lume"],
        "test": ["Tessaro T7", "Oakhurst Vire"],
    }),
    "AWARD": ("MISC", {
        "shared": ["Golden Oar Prize", "Harrow Medal"],
        "dev": ["Crestmoor Prize"],
        "test": ["Silver Quill Award"],
    }),
}

# Syllables for inventing one-off names (train's long tail).
ONSETS = ["B", "Br", "C", "Cr", "D", "Dr", "F", "G", "Gr", "H", "K", "L", "M", "N", "P", "Pr",
          "R", "S", "St", "T", "Tr", "V", "W", "Z"]
VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou"]
CODAS = ["", "n", "r", "l", "s", "th", "nd", "rk", "m", "x"]
ENDINGS = {
    "person": ["ley", "son", "ski", "ova", "ard", "ell", "mann", "ez", "ton", "quist"],
    "place": ["ville", "burg", "mark", "holm", "ford", "stad", "wick", "ora", "by"],
    "country": ["ia", "land", "ary", "istan"],
    "stem": ["ex", "ora", "ant", "ix", "ello", "on"],
}
RARE_PATTERNS = {
    "CO": ["{stem} Corp", "{stem} Group", "{stem} Holdings", "{stem} Industries", "{stem} Motors",
           "{stem} Energy", "{stem} Bank", "{stem} Foods", "{place} Telecom", "{stem}"],
    "BRAND": ["{brand}"],
    "TEAM": ["{place} United", "{place} Rovers", "{place} City", "{place} Athletic", "{place}"],
    "INST": ["{place} Senate", "{place} Trade Council", "{country} Port Authority",
             "Ministry of {stem} Affairs"],
    "CITY": ["{place}", "{place}", "Port {place}", "San {place}"],
    "COUNTRY": ["{country}"],
    "GEO": ["Lake {place}", "Mount {place}", "River {stem}", "{place} Bay"],
    "NAT": ["{stem}ian", "{stem}ese", "{country}ish"],
    "EVENT": ["{place} Cup", "{country} Open", "{place} Marathon", "{stem} Games"],
    "PROD": ["{stem} {code}", "{stem} {code}", "{stem} Nova"],
    "AWARD": ["{stem} Prize", "{stem} Medal"],
}

# ---------------------------------------------------------------------------------------------
# Non-entity fillers.
# ---------------------------------------------------------------------------------------------

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
ORDINALS = ["first", "second", "third", "fourth", "fifth"]
CURRENCIES = ["velts", "VLT", "crowns"]
SPORTS = ["SOCCER", "TENNIS", "ROWING", "CYCLING", "ATHLETICS", "BASKETBALL"]
DECADES = ["1970s", "1980s", "1990s"]

# ---------------------------------------------------------------------------------------------
# Sentence templates. Tokens are space separated; {KIND} is a slot. Entity slots: PFULL (full
# personal name), PSUR (surname only), CO, BRAND, TEAM, INST, CITY, COUNTRY, GEO, NAT, EVENT,
# PROD, AWARD. Everything else is tagged O.
# ---------------------------------------------------------------------------------------------

BODY = {
    "sports": [
        "{TEAM} beat {TEAM} {SCORE} in the {EVENT} on {DAY} .",
        "{PFULL} scored twice as {TEAM} won {SCORE} at home to {TEAM} .",
        "{TEAM} {GOALS} {TEAM} {GOALS}",
        "{TEAM} {GOALS} {TEAM} {GOALS}",
        "Scorers : {PSUR} , {PSUR} and {PSUR}",
        "{NAT} striker {PFULL} has joined {TEAM} on a {NYEAR} contract .",
        "{RANK} . {PFULL} ( {COUNTRY} ) {RTIME}",
        "The {EVENT} will be held in {CITY} in {YEAR} .",
        "{PSUR} , who missed last season with a knee injury , is expected to start against "
        "{TEAM} on {DAY} .",
        "{TEAM} coach {PFULL} said his side had been unlucky .",
        "\" We played well in the first half , \" {PSUR} told reporters .",
        "{NAT} {PFULL} won the {EVENT} for the {ORD} time .",
        "{PFULL} of {COUNTRY} finished {ORD} in {RTIME} .",
        "Attendance : {BIGNUM}",
        "{TEAM} lead the table with {N} points from {N} games .",
        "In the summer , {TEAM} signed {PFULL} from {TEAM} .",
        "{PSUR} equalised in the {MINUTE} minute with a low shot .",
        "{PFULL} retained the title after beating {PFULL} {SET} {SET} .",
        "Final : {TEAM} v {TEAM}",
        "{TEAM} fans celebrated in the streets of {CITY} until late on {DAY} .",
        "{TEAM} have not lost at home since {MONTH} {YEAR} .",
        "Mr. {PSUR} , the {TEAM} chairman , said the club would not sell {PSUR} .",
        "The {NAT} team arrived in {CITY} on {DAY} for the {EVENT} .",
        "{PSUR} was sent off after {N} minutes for a foul on {PFULL} .",
        "Rain delayed the start of the {EVENT} by {N} hours .",
        "{TEAM} goalkeeper {PSUR} saved a penalty in the {MINUTE} minute .",
    ],
    "business": [
        "{CO} shares rose {PCT} percent to {AMT} {CUR} in early trading in {CITY} .",
        "{CO} shares fell {PCT} percent to {AMT} {CUR} .",
        "{CO} said on {DAY} it would cut {BIGNUM} jobs at its {CITY} plant .",
        "Shares in {CO} fell {PCT} percent after the company warned on profits .",
        "{CO} chief executive {PFULL} told analysts the outlook for {YEAR} was good .",
        "The bank said net profit rose to {AMT} million {CUR} in the first half .",
        "{CO} and {CO} agreed to merge in a deal worth {AMT} billion {CUR} .",
        "Analysts at {CO} expect the central bank to hold interest rates at {PCT} percent .",
        "The {NAT} carrier {CO} ordered {N} new aircraft .",
        "Users of {BRAND} can now pay in {CUR} .",
        "{BRAND} said it had {BIGNUM} active users in {COUNTRY} .",
        "{CO} , {CO} and {CO} led the gainers on the {CITY} exchange .",
        "{CO} will launch the {PROD} in {CITY} next summer .",
        "The {PROD} will cost {AMT} {CUR} when it goes on sale in {MONTH} .",
        "Summer sales at {CO} were weaker than expected .",
        "Volume was {BIGNUM} shares .",
        "In {CITY} {CO} opened a new office with {N} staff .",
        "The central bank left its key rate unchanged at {PCT} percent .",
        "{PFULL} , an analyst at {CO} in {CITY} , said the figures were in line with forecasts .",
        "{CO} bought a {PCT} percent stake in {CO} for {AMT} million {CUR} .",
        "The company , based in {CITY} , was founded in {YEAR} .",
        "Exports to {COUNTRY} rose {PCT} percent in {MONTH} , the {INST} said .",
        "The {NAT} currency fell to a {NMONTH} low against the crown .",
        "Source : {CO}",
        "A {BRAND} spokeswoman said the outage lasted {N} hours .",
        "Mr. {PSUR} joined {CO} from {CO} in {YEAR} .",
        "The {PROD} sold {BIGNUM} units in its first week .",
    ],
    "general": [
        "{COUNTRY} President {PFULL} arrived in {CITY} on {DAY} for talks with {PFULL} .",
        "Mr. {PSUR} said the talks with {COUNTRY} had been useful .",
        "Mrs. {PSUR} declined to comment on the report .",
        "Police in {CITY} said {N} people were hurt when a bus left the road near {GEO} .",
        "The {INST} voted {SCORE} to approve the budget .",
        "{PFULL} , a spokesman for the {INST} , declined to comment .",
        "Heavy rain closed roads around {GEO} on {DAY} .",
        "The river burst its bank near {CITY} on {DM} .",
        "{NAT} officials said the border with {COUNTRY} would reopen on {DATE} .",
        "Talks between {COUNTRY} and {COUNTRY} ended without agreement on {DAY} .",
        "The grant of {AMT} million {CUR} will pay for a new harbour at {CITY} .",
        "{PFULL} was born in {CITY} in {YEAR} .",
        "She has lived in {COUNTRY} since the summer of {YEAR} .",
        "Ministers from {COUNTRY} , {COUNTRY} and {COUNTRY} will meet in {CITY} next week .",
        "The {NAT} government said it would not change its policy .",
        "It was the worst flood in {CITY} since the {DECADE} .",
        "Flight {FLIGHT} from {CITY} landed safely at {TIME} .",
        "{GEO} lies about {N} km north of {CITY} .",
        "The novel , written in {NAT} , won the {AWARD} .",
        "Witnesses said the fire started at about {TIME} on {DATE} .",
        "Asked about the vote , {PSUR} said : \" It is too early to say . \"",
        "{PFULL} , {PFULL} and {PFULL} were named to the new cabinet .",
        "The {AWARD} went to {PFULL}",
        "About {BIGNUM} people attended the {EVENT} in {CITY} .",
        "{PFULL} told the {INST} that the plan would cost {AMT} million {CUR} .",
        "Relief workers reached {N} villages north of {CITY} on {DAY} .",
        "The {INST} , which meets in {CITY} , has {N} members .",
        "A grant from the {INST} paid for the study .",
        "{CITY} police arrested {N} men on {DAY} .",
        "Prime Minister {PFULL} said on {DAY} that {COUNTRY} would send aid .",
        "The {NAT} writer {PFULL} will receive the {AWARD} in {CITY} .",
        "Its summer flights to {CITY} start on {DM} .",
    ],
}

# Templates that only ever appear in dev/test: contexts the model has never seen.
BODY_HELDOUT = [
    "Fans of {TEAM} queued overnight outside the ground in {CITY} .",
    "{PFULL} , who once coached {TEAM} , now writes a column for the {INST} .",
    "Customers of {CO} in {COUNTRY} complained about delays .",
    "Snow cut off villages between {CITY} and {GEO} .",
    "The {EVENT} drew visitors from {COUNTRY} and {COUNTRY} .",
    "{BRAND} fixed the fault within {N} hours , {PSUR} said .",
]

HEADLINES = {
    "sports": [
        "{SPORT} - {TEAM} BEAT {TEAM} {SCORE} .",
        "{SPORT} - {NAT} {PSUR} WINS {EVENT} .",
        "{SPORT} - {TEAM} SIGN {PSUR}",
        "{SPORT} - RESULTS FROM THE {EVENT} .",
        "{SPORT} - {PSUR} OUT OF {EVENT} WITH INJURY .",
    ],
    "business": [
        "{CO} SHARES FALL ON PROFIT WARNING .",
        "{CO} TO CUT {BIGNUM} JOBS .",
        "{COUNTRY} INFLATION RISES TO {PCT} PERCENT .",
        "{CO} BUYS STAKE IN {CO} .",
        "{BRAND} USERS TOP {BIGNUM}",
    ],
    "general": [
        "{COUNTRY} AND {COUNTRY} SIGN TRADE PACT",
        "FLOODS HIT {CITY}",
        "{PSUR} SAYS TALKS WITH {COUNTRY} USEFUL .",
        "POLICE ARREST {N} IN {CITY} .",
        "{NAT} MINISTER VISITS {COUNTRY} .",
    ],
}

RESULT_LINES = [
    "{TEAM} {GOALS} {TEAM} {GOALS}",
    "{RANK} . {PFULL} ( {COUNTRY} ) {RTIME}",
]

CLOSINGS = [
    "Reporting by {PFULL}",
    "-- {CITY} newsroom , {PHONE}",
]

# Clauses used to build a few very long sentences (60+ tokens).
CLAUSES = [
    "{PFULL} said the deal with {CO} would be signed in {CITY} before the end of {YEAR}",
    "officials in {COUNTRY} expect exports to rise by {PCT} percent",
    "the {INST} has asked {CO} to explain the delay",
    "{TEAM} will travel to {CITY} for the {EVENT} on {DAY}",
    "prices in {CITY} rose for the {ORD} month in a row",
    "{PSUR} added that he had spoken to Mr. {PSUR} by telephone",
    "the {NAT} delegation , led by {PFULL} , left {CITY} on {DAY}",
    "the bank expects growth of {PCT} percent next year",
    "the summer season around {GEO} had been the busiest since {YEAR}",
    "{BRAND} and {CO} are in talks about a joint venture",
]
CONNECTORS = [", and", ", while", ";", ", but", ", although"]

# ---------------------------------------------------------------------------------------------


def _roster(pool: str, seed: int) -> list[tuple[str, str]]:
    """A fixed list of (first name, surname) people for a name pool."""
    rng = random.Random(seed * 100 + 10 + list(FIRST_NAMES).index(pool))
    firsts = list(FIRST_NAMES[pool])
    if pool != "shared":
        firsts += FIRST_NAMES["shared"][:8]
    surnames = SURNAMES[pool]
    people = [(firsts[i % len(firsts)], sur) for i, sur in enumerate(surnames)]
    people += [(rng.choice(firsts), sur) for sur in surnames]
    rng.shuffle(people)
    return people


class Filler:
    """Fills template slots for one split, choosing names from that split's pools."""

    def __init__(self, rng: random.Random, split: str, p_new: float, p_rare: float,
                 seed: int) -> None:
        self.rng = rng
        self.split = split
        self.p_new = p_new
        self.p_rare = p_rare
        fixed = [n for _, pools in NAMES.values() for names in pools.values() for n in names]
        fixed += [n for names in SURNAMES.values() for n in names]
        self.reserved = {w.lower() for n in fixed for w in n.split()}
        pools = ["shared"] if split == "train" else ["shared", split]
        self.people = {pool: _roster(pool, seed) for pool in pools}

    def _pool(self) -> str:
        if self.split != "train" and self.rng.random() < self.p_new:
            return self.split
        return "shared"

    def _word(self, ending: str) -> str:
        """An invented word that is not part of any fixed name."""
        rng = self.rng
        while True:
            word = rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)
            word += rng.choice(ENDINGS[ending])
            if word.lower() not in self.reserved:
                return word

    def _rare(self, kind: str) -> list[str]:
        rng = self.rng
        pattern = rng.choice(RARE_PATTERNS[kind])
        name = pattern.format(
            stem=self._word("stem"), place=self._word("place"), country=self._word("country"),
            brand=self._word("stem").lower(),
            code=rng.choice("ABCDEFGHKLMNPRSTVXZ") + str(rng.randint(2, 99)),
        )
        return name.split()

    def entity(self, kind: str) -> tuple[list[str], str]:
        rng = self.rng
        rare = self.p_rare > 0 and rng.random() < self.p_rare
        if kind in ("PFULL", "PSUR"):
            if rare:
                first, sur = rng.choice(FIRST_NAMES["shared"]), self._word("person")
            else:
                first, sur = rng.choice(self.people[self._pool()])
            if kind == "PSUR":
                return sur.split(), "PER"
            if " " not in sur and rng.random() < 0.12:
                initial = rng.choice("ABCDEFGHJKLMNPRSTW") + "."
                return [first, initial, sur], "PER"
            return [first, *sur.split()], "PER"
        etype, pools = NAMES[kind]
        if rare:
            return self._rare(kind), etype
        return rng.choice(pools[self._pool()]).split(), etype

    def other(self, kind: str) -> list[str]:
        rng = self.rng
        if kind == "N":
            return [str(rng.randint(2, 12))]
        if kind == "GOALS":
            return [str(rng.randint(0, 5))]
        if kind == "RANK":
            return [str(rng.randint(1, 12))]
        if kind == "PCT":
            return [f"{rng.randint(0, 14)}.{rng.randint(1, 9)}"]
        if kind == "SCORE":
            return [f"{rng.randint(0, 5)}-{rng.randint(0, 4)}"]
        if kind == "SET":
            a = rng.randint(0, 4)
            return [rng.choice([f"6-{a}", f"{a}-6", "7-5", "7-6"])]
        if kind == "BIGNUM":
            return [f"{rng.randint(1, 60)},{rng.randint(0, 999):03d}"]
        if kind == "AMT":
            if rng.random() < 0.5:
                return [f"{rng.randint(1, 99)}.{rng.randint(1, 9)}"]
            return [f"{rng.randint(1, 400)}.{rng.randint(0, 99):02d}"]
        if kind == "YEAR":
            return [str(rng.randint(1988, 2009))]
        if kind == "DATE":
            return [f"{rng.randint(1994, 1999)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"]
        if kind == "DM":
            return [str(rng.randint(1, 28)), rng.choice(MONTHS)]
        if kind == "DAY":
            return [rng.choice(DAYS)]
        if kind == "MONTH":
            return [rng.choice(MONTHS)]
        if kind == "ORD":
            return [rng.choice(ORDINALS)]
        if kind == "CUR":
            return [rng.choice(CURRENCIES)]
        if kind == "SPORT":
            return [rng.choice(SPORTS)]
        if kind == "DECADE":
            return [rng.choice(DECADES)]
        if kind == "TIME":
            return [f"{rng.randint(6, 23)}:{rng.randint(0, 59):02d}"]
        if kind == "RTIME":
            return [f"{rng.randint(1, 3)}:{rng.randint(0, 59):02d}.{rng.randint(0, 99):02d}"]
        if kind == "NYEAR":
            return [f"{rng.randint(2, 5)}-year"]
        if kind == "NMONTH":
            return [f"{rng.randint(3, 18)}-month"]
        if kind == "MINUTE":
            m = rng.randint(2, 89)
            suffix = "th" if 10 <= m % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(m % 10, "th")
            return [f"{m}{suffix}"]
        if kind == "FLIGHT":
            letters = "ABCDEFGHKLMNPRSTVXZ"
            return [f"{rng.choice(letters)}{rng.choice(letters)}{rng.randint(100, 999)}"]
        if kind == "PHONE":
            return [f"+{rng.randint(10, 99)}-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"]
        raise KeyError(kind)

    def fill(self, template: str, used: list[str] | None = None) -> list[Token]:
        """Tag a template's tokens, filling its slots; no name is repeated within ``used``."""
        used = [] if used is None else used
        out: list[Token] = []
        for piece in template.split():
            if piece.startswith("{") and piece.endswith("}") and len(piece) > 2:
                kind = piece[1:-1]
                if kind in ("PFULL", "PSUR") or kind in NAMES:
                    for _ in range(20):
                        words, etype = self.entity(kind)
                        key = words[-1] if etype == "PER" else " ".join(words)
                        if key not in used:
                            break
                    used.append(key)
                    out.extend((w, ("B-" if i == 0 else "I-") + etype) for i, w in enumerate(words))
                else:
                    out.extend((w, "O") for w in self.other(kind))
            else:
                out.append((piece, "O"))
        return out


def _upper(sentence: list[Token]) -> list[Token]:
    return [(w.upper(), t) for w, t in sentence]


def _long_sentence(filler: Filler) -> list[Token]:
    rng = filler.rng
    clauses = list(CLAUSES)
    rng.shuffle(clauses)
    out: list[Token] = []
    used: list[str] = []
    for i, clause in enumerate(clauses):
        if i:
            out.extend((w, "O") for w in rng.choice(CONNECTORS).split())
        out.extend(filler.fill(clause, used))
        if len(out) >= 60:
            break
    word, tag = out[0]
    if tag == "O":
        out[0] = (word[:1].upper() + word[1:], tag)
    out.append((".", "O"))
    return out


def _story(filler: Filler, index: int, heldout: bool) -> list[list[Token]]:
    rng = filler.rng
    topic = rng.choice(["sports", "business", "general"])
    sentences = [_upper(filler.fill(rng.choice(HEADLINES[topic])))]
    city = filler.fill("{CITY}")
    if rng.random() < 0.5:
        sentences.append(_upper(city))
    else:
        sentences.append(_upper(city) + filler.fill("{DATE}"))
    if topic == "sports" and rng.random() < 0.3:
        sentences.append(filler.fill("Results of the {EVENT} on {DAY} :"))
        for _ in range(rng.randint(2, 4)):
            sentences.append(filler.fill(rng.choice(RESULT_LINES)))
    for _ in range(rng.randint(3, 8)):
        if heldout and rng.random() < 0.1:
            template = rng.choice(BODY_HELDOUT)
        else:
            template = rng.choice(BODY[topic])
        sentences.append(filler.fill(template))
    if index % 9 == 2:
        sentences.insert(3, _long_sentence(filler))
    if rng.random() < 0.2:
        sentences.append(filler.fill(rng.choice(CLOSINGS)))
    return sentences


def generate_split(split: str, seed: int = SEED) -> str:
    """Return the text of one split file."""
    n_docs, budget, p_new, p_rare = SPLIT_PLAN[split]
    rng = random.Random(seed * 100 + SPLITS.index(split))
    filler = Filler(rng, split, p_new, p_rare, seed)
    lines = []
    story_index = 0
    for _ in range(n_docs):
        lines.append("-DOCSTART- O\n\n")
        doc_tokens = 0
        while doc_tokens < budget / n_docs:
            for sentence in _story(filler, story_index, heldout=split != "train"):
                lines.append("".join(f"{w} {t}\n" for w, t in sentence) + "\n")
                doc_tokens += len(sentence)
            story_index += 1
    return "".join(lines)


def generate(seed: int = SEED) -> dict[str, str]:
    """Return {file name: file text} for all splits."""
    return {f"{split}.txt": generate_split(split, seed) for split in SPLITS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory and exit 1 if the files on disk differ")
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help="output directory")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        stale = []
        for name, text in files.items():
            path = args.out / name
            if not path.is_file() or path.read_bytes() != text.encode("utf-8"):
                stale.append(str(path))
        if stale:
            print("out of date (run python data/make_sample.py): " + ", ".join(stale),
                  file=sys.stderr)
            return 1
        print(f"{len(files)} sample files up to date in {args.out}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_bytes(text.encode("utf-8"))
    print(f"wrote {', '.join(sorted(files))} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
