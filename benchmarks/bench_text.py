"""The text frontend: CPU throughput (default) or accuracy on two public TN test sets.

    python benchmarks/bench_text.py [--n 5000] [--accent us]
    python benchmarks/bench_text.py --suite nemo [--accent us] [--show-misses]
    python benchmarks/bench_text.py --suite google [--show-misses]
    python benchmarks/bench_text.py --suite both
    python benchmarks/bench_text.py --suite long     # time on 4,096 / 16,384-char inputs made to backtrack

Throughput: the corpus mixes plain prose with sentences full of numbers, money,
dates, times, units and abbreviations (a harder mix than audiobook transcripts).
Each sentence is unique, so the number-word caches do not make the result look
better than a real corpus. Prints results; asserts nothing.

``--suite nemo``: the English text-normalization test cases of NVIDIA
NeMo-text-processing (Apache-2.0, copied as data into ``benchmarks/data/nemo_en_tn``,
see its README). Each file is a category; a case is ``input~expected`` (more than
one expected form: any counts), and ``test_cases_normalize_with_audio.txt`` holds
``~input`` lines followed by every accepted output (any counts). Cases are
de-duplicated by (category, input, accepted outputs). A case passes when
``strict(normalize(input)) == strict(expected)`` for one accepted ``expected``,
where ``strict`` is exactly, in this order:

1. Unicode NFKC, then lower case;
2. apostrophes (``'`` and U+2019) deleted ("o'clock" == "oclock");
3. every other character that is not a letter, digit or whitespace - hyphens,
   underscores, punctuation, symbols - replaced by a space;
4. whitespace split into words (collapsing runs);
5. the word "and" deleted when the word before it is a scale word (hundred,
   thousand, million, billion, trillion) or a currency word (dollar(s), cent(s),
   pound(s), penny, pence, euro(s), yen, won, yuan, rupee(s)) - "one hundred and
   five" == "one hundred five", "two dollars and five cents" == "two dollars five cents";
6. runs of one-letter words joined ("F B I" == "FBI"): spelled letters written spaced or not
   are the same. Only the runs: "P M E S T" is not NeMo's "PM EST", "twelves and three
   sssssss" not "twelves and threesssssss".

The headline figure ("strict") is that comparison. Beside it the script prints a secondary,
more lenient one ("boundary-free"): step 6 replaced by joining all the words, so no word
boundary counts ("P M E S T" == "PM EST"). For part of 2026-12-07 the boundary-free figure was
the headline; it was judged too lenient to call strict, and the headline is strict again.

Cases listed in ``DEVIATIONS`` are ones where NeMo's expected output is a style a
TTS frontend should not copy; they are printed with the reason and COUNTED AS MISSES
(the total is the plain pass rate; nothing is excluded).

``--suite google``: Google's text-normalization test sentences (Wikipedia; Sproat & Jaitly
2016), the sentence-level copy published by NeMo-text-processing (CC BY 4.0, copied as data
into ``benchmarks/data/google_tn``, see its README). Another reference than NeMo's grammars:
Google's Kestrel system wrote the spoken side. Accent us. How it is read:

1. the written side is tokenized ("in 1984 ." / "( 2005 )" / "Mike 's"); it is detokenized
   first - the space before ``. , ; : ! ? ) 's n't`` and after ``(`` removed, `````` `` ``
   and ``''`` made ``"`` - since written text has no such spaces;
2. only sentences with something to normalize count: those whose written and spoken sides
   differ under the comparison below (3,5xx of 7,551; the rest are plain prose);
3. comparison: the NeMo suite's secondary ``boundary_free`` (no word boundary counts), except
   that a spoken zero is one word whatever its spelling ("o" - Google's - "oh", "zero": "nineteen o eight" ==
   "nineteen oh eight"), and a word of five or more letters that the written text has and
   this frontend kept is not a miss where Google's side respelt it within two letters -
   Google's data makes British spellings American ("centre" -> "center", "favour" ->
   "favor"), which is no normalization a reader hears.

Every miss counts; ``--show-misses`` prints them by the kind of token the written side has.
"""
import argparse
import glob
import os
import random
import re
import time
import unicodedata

from helpers.text import normalize, prepare, split_sentences

TEMPLATES = [
    "The quick brown fox jumps over the lazy dog near the old mill by the river.",
    "She said that she would come back later, but nobody believed her at all.",
    "It cost ${a}.{c:02d} on {m}/{d} at {h}:{mi:02d}am, Dr. Smith's {o}th visit ({p}%).",
    "In {y}, about {big:,} people lived within {k} km of St. Paul's.",
    "Call (555) {a3}-{a4:04d} before {h} p.m. or email info{a}@example.com.",
    "The temperature fell to -{k}°C on {y}-{m:02d}-{d:02d}, the coldest day since {y2}.",
    "Mr. and Mrs. Jones paid £{a}.{c:02d} for {k} kg of apples, i.e. a bargain.",
    "Chapter {r} of the FBI report covers the {decade}0s and NASA's budget of ${a} million.",
    "He ran {k}.{c} miles at {k} mph, then rested for {mi} min.",
    "Our revenue grew {p}.{c}% to €{big:,} in Q{q} {y}, up from {y2}.",
]
ROMANS = ["I", "II", "III", "IV", "V", "IX", "XII"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        out.append(t.format(
            a=rng.randint(1, 9999), c=rng.randint(0, 99), m=rng.randint(1, 12), d=rng.randint(1, 28),
            h=rng.randint(1, 12), mi=rng.randint(0, 59), o=rng.randint(4, 99), p=rng.randint(1, 99),
            y=rng.randint(1900, 2030), y2=rng.randint(1900, 2030), big=rng.randint(1000, 10**9),
            k=rng.randint(1, 500), a3=rng.randint(100, 999), a4=rng.randint(0, 9999), r=rng.choice(ROMANS),
            decade=rng.randint(190, 202), q=rng.randint(1, 4)))
    return out


NEMO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "nemo_en_tn")
_AND_AFTER = frozenset("hundred thousand million billion trillion dollar dollars cent cents pound pounds penny pence "
                       "euro euros yen won yuan rupee rupees".split())

# (category, input): why NeMo's expected output is not what this frontend says. Counted as misses.
# Each reason starts with its kind:
#   (a) a test that predates the NeMo work (commit 1102fec: tests/text_cases.tsv, tests/test_text.py;
#       now tests/core/) pins the contradicting reading - quoted as "input -> expected";
#   (c) NeMo's output is a style a TTS frontend should not copy (or leaves a symbol unread);
#   (n) not implemented: a sound reading this frontend cannot produce yet.
_A_SLASH = "(a) 'his/her' -> 'his or her': a slash between two words is 'or'; NeMo says 'slash'"
_A_SECONDS = ("(a) '10:30:15' -> 'ten thirty and fifteen seconds': a clock time with seconds is a time of day, "
              "not the duration 'N hours N minutes and N seconds'")
_A_RANGE = ("(a) 'from 1999-2005' -> 'from nineteen ninety-nine to two thousand five', '10-20% off' -> 'ten to "
            "twenty percent off', '$5-$10' -> 'five dollars to ten dollars': a hyphen between rising numbers is "
            "'to'; NeMo leaves it unread")
_A_FRACTION = ("(a) '1/2 cup' -> 'one half cup', '2/3 done' -> 'two thirds done': a bare n/m with no date cue "
               "is a fraction")
_A_DIGITS = "(a) every row of test_normalize_table (and the property tests) asserts no digit in the output"
_C_MARKUP = ("(c) markup that names no non-verbal event of the model has no reading and is removed; NeMo passes "
             "it through to the model")
_C_SLASH_LEFT = ("(c) NeMo leaves the '/' in its output (the comparison then drops it); a symbol is never passed "
                 "to the model: 'slash'")
DEVIATIONS = {
    ("cardinal", "13000"): "(c) a round number is a quantity: 'thirteen thousand', not digit by digit",
    ("cardinal", "123000"): "(c) a round number is a quantity: 'one hundred twenty-three thousand', not digit by digit",
    ("range", "2-5"): _A_RANGE,
    ("range", "from 2-10"): _A_RANGE,
    ("punctuation", "1961–1965 and (2006–2012)"): _A_RANGE + " (the en dash is the same range)",
    ("normalize_with_audio", "2%-10%"): "(a) '10-20% off' -> 'ten to twenty percent off': a range of percentages",
    ("range", "170 - 45190"): "(c) 45190 is a quantity here, not a digit string",
    ("date", "11/17/05"): "(a) '3/4/05' -> 'March fourth, oh five': a two-digit year 05 is 'oh five'",
    ("date", "15-01-2020"): ("(a) test_date_order_parameter_overrides_accent: '13/4/2021' (us) -> 'April "
                             "thirteenth, twenty twenty-one': a date is spoken in the accent's style whatever the "
                             "written order"),
    ("date", "15.01.2020"): "(a) as 15-01-2020",
    ("time", "23:00"): "(a) '14:00' -> 'fourteen hundred': 24-hour whole hours",
    ("time", "10:00:00 p.m. e.s.t"): "(c) 'ten hours zero minutes and zero seconds P M' is no reading of a clock time; "
                                     + _A_SECONDS,
    ("time", "1:01:01"): _A_SECONDS,
    ("time", "01:01:01"): _A_SECONDS,
    ("time", "14:10:30"): _A_SECONDS,
    ("time", "21:51:31"): _A_SECONDS,
    ("electronic", "https://www.nvidia.com/dgx-basepod/"): ("(a) 'localhost:80/' -> 'localhost colon eighty': a "
                                                            "trailing slash ends the address and is not read"),
    ("electronic", "upgrade/update"): _A_SLASH,
    ("electronic", "upgrade / update"): _A_SLASH,
    ("electronic", "upgrade/update/downgrade"): _A_SLASH,
    ("fraction", "1795 / 1805"): "(c) not a fraction a speaker would say ('... one thousand eight hundred fifths')",
    ("normalize_with_audio", "1/24"): _A_FRACTION + " (NeMo accepts only date readings)",
    ("normalize_with_audio", "2/8"): _A_FRACTION + " ('two eighths'; NeMo accepts only 'two divided by eight')",
    ("normalize_with_audio", "/ and $"): "(c) NeMo leaves a lone '/' unread; a symbol is never passed to the model",
    ("normalize_with_audio", "This example number 15,000 can be a very long one, and can fail to produce valid "
                             "normalization for such an easy number like 10,125 or dollar value $5349.01, and can "
                             "fail to terminate, and can fail to terminate, and can fail to terminate, and can fail "
                             "to terminate, and can fail to terminate, 452."):
        "(a) '999 bottles' -> 'nine hundred ninety-nine bottles': a bare 452 is 'four hundred fifty-two', "
        "not 'four fifty two' (the only form NeMo accepts here)",
    ("measure", "3 cc/s"): "(c) cc is cubic centimetres (a unit), not the letters 'C C'",
    ("range", "2x8"): "(a) '3x4 room' -> 'three by four room': NxM is a dimension, NeMo says 'two x eight'",
    ("range", "2+3 m2"): "(c) m2 after a number is square metres (as NeMo's own '2x8 m2'), not 'm two'",
    ("serial", "2*8"): "(c) '*' between numbers is multiplication (NeMo's with_audio case says 'times'), not 'asterisk'",
    ("measure", "45º&C"): "(c) 'degrees' is plural after forty-five",
    ("serial", "$12@12%"): "(c) '$12' is 'twelve dollars', not 'dollar twelve'",
    ("serial", "31/31/100"): _C_SLASH_LEFT,
    ("serial", "1/f-4s"): _C_SLASH_LEFT,
    ("serial", "MIG-25/235212-asdg"): _C_SLASH_LEFT + " (otherwise NeMo's reading, adopted for #34: 25 a number, "
                                      "235212 digit by digit)",
    ("serial", "123/261788/2021"): _C_SLASH_LEFT + " (otherwise NeMo's reading, adopted for #34: 261788 digit by "
                                   "digit, 2021 'two thousand twenty-one')",
    ("serial", "1/f"): "(c) 'f' is no unit, so no 'per'; '1/f' is 'one slash f'",
    ("punctuation", "dr. Evil"): ("(c) a title is read in any case (#34's abbreviation family: 'dr. jones' -> "
                                  "'doctor jones'); NeMo leaves the lower-case 'dr.' written"),
    ("whitelist", "Mrs. Norris"): "(a) 'Mrs. Jones' -> 'Missus Jones'",
    ("address", "Main St."): "(a) 'Main St. is busy.' -> 'Main Street is busy.': 'St.' after a name is Street",
    ("roman", "Sam II"): ("(a) 'Henry VIII' -> 'Henry the Eighth': a regnal numeral takes 'the' ('Sam the Second'); "
                          "NeMo's 'Sam second' drops it"),
    ("special_text", "[HH AH0 L OW1]"): _A_DIGITS + " (phoneme strings are not passed through; the 'L' stays a "
                                        "letter since #34, no longer 'liters')",
    ("special_text", "<pitch=-.3>123 123</pitch>"): _C_MARKUP + "; " + _A_DIGITS,
    ("punctuation", "<pitch=-.3>123?123</pitch>"): _C_MARKUP + "; " + _A_DIGITS,
    ("special_text", "go <noise/> home"): _C_MARKUP,
    ("special_text", "go<noise/>home"): _C_MARKUP,
    ("special_text", "<pausing/>"): _C_MARKUP,
    ("special_text", "<singing> haleluja </singing>"): _C_MARKUP,
}

# The families #34's decision said to keep ("Keep ours"): these readings stay, as listed misses.
KEPT_BY_DECISION = frozenset([
    ("address", "Main St."), ("cardinal", "13000"), ("cardinal", "123000"), ("range", "2-5"), ("range", "from 2-10"),
    ("punctuation", "1961–1965 and (2006–2012)"), ("normalize_with_audio", "2%-10%"), ("range", "170 - 45190"),
    ("range", "2x8"), ("serial", "2*8"), ("time", "23:00"), ("time", "10:00:00 p.m. e.s.t"), ("time", "1:01:01"),
    ("time", "01:01:01"), ("time", "14:10:30"), ("time", "21:51:31"), ("measure", "3 cc/s"), ("measure", "45º&C"),
    ("whitelist", "Mrs. Norris"), ("electronic", "upgrade/update"), ("electronic", "upgrade / update"),
    ("electronic", "upgrade/update/downgrade"), ("special_text", "<pitch=-.3>123 123</pitch>"),
    ("punctuation", "<pitch=-.3>123?123</pitch>"), ("special_text", "go <noise/> home"),
    ("special_text", "go<noise/>home"), ("special_text", "<pausing/>"), ("special_text", "<singing> haleluja </singing>"),
])
assert KEPT_BY_DECISION <= DEVIATIONS.keys()


def boundary_free(s: str) -> str:
    """``--suite nemo``'s secondary comparison: :func:`strict` with every word boundary dropped."""
    return strict(s).replace(" ", "")


def strict(s: str) -> str:
    """``--suite nemo``'s headline comparison (module docstring): steps 1-5, then runs of
    one-letter words joined."""
    s = unicodedata.normalize("NFKC", s).lower().replace("'", "").replace("\u2019", "")
    s = re.sub(r"[^\w\s]|_", " ", s)
    words = []
    for w in s.split():
        if w == "and" and words and words[-1] in _AND_AFTER:
            continue
        words.append(w)
    out, run = [], []
    for w in words + [""]:
        if len(w) == 1 and w.isalpha():
            run.append(w)
            continue
        if run:
            out.append("".join(run))
            run = []
        if w:
            out.append(w)
    return " ".join(out)


def nemo_cases(data_dir: str = NEMO_DIR) -> list[tuple[str, str, tuple[str, ...]]]:
    """(category, input, accepted outputs), de-duplicated, in file order."""
    cases, seen = [], set()
    for path in sorted(glob.glob(os.path.join(data_dir, "test_cases_*.txt"))):
        cat = os.path.basename(path)[len("test_cases_"):-len(".txt")]
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if cat == "normalize_with_audio":
            inp, opts = None, []
            for line in lines:
                if line.startswith("~"):
                    if inp is not None:
                        cases.append((cat, inp, tuple(opts)))
                    inp, opts = line.strip().replace("~", ""), []
                elif line.strip():
                    opts.append(line.strip())
            if inp is not None:
                cases.append((cat, inp, tuple(opts)))
        else:
            for line in lines:
                if line.strip():
                    parts = line.split("~")
                    cases.append((cat, parts[0], tuple(parts[1:])))
    out = []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def run_nemo(accent: str, show_misses: bool) -> float:
    cases = nemo_cases()
    per_cat: dict[str, list[int]] = {}
    misses, boundary_only = [], []
    free_ok = 0
    t0 = time.perf_counter()
    for cat, inp, expected in cases:
        got = normalize(inp, accent=accent)
        ok = (cat, inp) not in DEVIATIONS and strict(got) in {strict(e) for e in expected}
        free = (cat, inp) not in DEVIATIONS and boundary_free(got) in {boundary_free(e) for e in expected}
        free_ok += free
        if free and not ok:
            boundary_only.append((cat, inp, got, expected))
        stats = per_cat.setdefault(cat, [0, 0])
        stats[0] += ok
        stats[1] += 1
        if not ok:
            misses.append((cat, inp, got, expected))
    dt = time.perf_counter() - t0
    print(f"NeMo English TN cases, accent={accent}, strict comparison (see docstring)")
    print(f"{'category':<28}{'pass':>6}{'cases':>7}{'accuracy':>10}")
    for cat, (ok, n) in sorted(per_cat.items()):
        print(f"{cat:<28}{ok:>6}{n:>7}{ok / n:>10.1%}")
    total_ok = sum(v[0] for v in per_cat.values())
    print(f"{'TOTAL (strict)':<28}{total_ok:>6}{len(cases):>7}{total_ok / len(cases):>10.1%}")
    print(f"(secondary, boundary-free - no word boundary counts: {free_ok}/{len(cases)} = "
          f"{free_ok / len(cases):.1%})")
    print(f"{len(cases) / dt:,.0f} cases/s ({dt:.2f} s)")
    print(f"\ndocumented deviations ({len(DEVIATIONS)}, counted as misses; (a) pinned by a pre-existing test, "
          f"(c) a style not to copy, (n) not implemented; {len(KEPT_BY_DECISION)} of them kept by #34's decision, "
          f"the rest outside it):")
    for kind in ("(a)", "(c)", "(n)"):
        rows = [(k, why) for k, why in DEVIATIONS.items() if why.startswith(kind)]
        print(f" {kind}: {len(rows)}")
        for (cat, inp), why in rows:
            kept = " [kept by #34's decision]" if (cat, inp) in KEPT_BY_DECISION else ""
            print(f"  [{cat}] {inp[:70]!r}:{kept} {why[4:]}")
    # Misses outside DEVIATIONS that only the secondary comparison passes: listed with that reason
    # every time, so no miss goes unexplained (other misses show with --show-misses).
    print(f"\nmisses that differ from NeMo only in word boundaries ({len(boundary_only)}; they pass the "
          f"boundary-free comparison: the same sounds, the words split elsewhere, e.g. spelled letters "
          f"written spaced, 'P M E S T' for NeMo's 'PM EST'):")
    for cat, inp, got, expected in boundary_only:
        print(f"  [{cat}] {inp[:70]!r}: got {got!r}, NeMo {expected[0]!r}")
    if show_misses:
        print("\nmisses:")
        for cat, inp, got, expected in misses:
            if (cat, inp) in DEVIATIONS or (cat, inp, got, expected) in boundary_only:
                continue
            print(f"  [{cat}] {inp!r}\n      got {got!r}\n      exp {expected[0]!r}")
    return total_ok / len(cases)


GOOGLE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "google_tn", "GoogleTN.json")
_DETOK = [(re.compile(r" ([.,;:!?)%]|'s\b|n't\b)"), r"\1"), (re.compile(r"\( "), "("),
          (re.compile(r"``|''"), '"')]
_ZEROS = {"oh": "o", "zero": "o"}


def detokenize(s: str) -> str:
    for rx, rep in _DETOK:
        s = rx.sub(rep, s)
    return s


def _google_words(s: str) -> list[str]:
    return [_ZEROS.get(w, w) for w in strict(s).split()]


def _close(a: str, b: str) -> bool:
    """Edit distance <= 2 (insert, delete, substitute)."""
    if abs(len(a) - len(b)) > 2:
        return False
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1] <= 2


def google_same(got: str, expected: str, written: str) -> bool:
    """The ``--suite google`` comparison (module docstring)."""
    import difflib
    a, b = _google_words(got), _google_words(expected)
    if "".join(a) == "".join(b):
        return True
    kept = set(_google_words(written))
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal" or "".join(a[i1:i2]) == "".join(b[j1:j2]):
            continue
        if op != "replace" or i2 - i1 != j2 - j1:
            return False
        for x, y in zip(a[i1:i2], b[j1:j2]):
            if not (x.isalpha() and y.isalpha() and len(x) >= 5 and x in kept and _close(x, y)):
                return False
    return True


_KINDS = [("date", re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|"
                              r"November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\b|"
                              r"\d{4}-\d\d-\d\d|\d{1,2}/\d{1,2}/\d{2,4}")),
          ("money", re.compile(r"[$£€¥]")), ("measure/percent", re.compile(r"\d\s?(?:%|°|(?:km|m|cm|mm|µm|μm|nm|kg|g|mg|lb|lbs|oz|mi|ft|in|yd|"
                                            r"mph|km/h|kmh|ha|sq|MB|GB|TB|Hz|kHz|MHz|GHz|W|kW|MW|V|kV|"
                                            r"L|ml|cc|s|ms|min|h|hr)(?:[²³2-3]|/\w+)?(?![\w/]))")),
          ("range", re.compile(r"\d\s?[-–]\s?\d")), ("year/number", re.compile(r"\d")),
          ("letters", re.compile(r"\b[A-Z]{2,}\b|\b(?:[A-Za-z]\.){2,}")), ("other", re.compile(""))]


def _kind(written: str) -> str:
    return next(k for k, rx in _KINDS if rx.search(written))


def google_cases(path: str = GOOGLE_FILE) -> list[tuple[str, str]]:
    """(written, spoken) sentences with something to normalize, detokenized, in file order."""
    import json
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            written, spoken = detokenize(row["text"]), row["gt_normalized"]
            if not google_same(written, spoken, written):
                out.append((written, spoken))
    return out


def run_google(show_misses: bool) -> float:
    cases = google_cases()
    per_kind: dict[str, list[int]] = {}
    misses = []
    t0 = time.perf_counter()
    for written, spoken in cases:
        got = normalize(written, accent="us")
        ok = google_same(got, spoken, written)
        kind = _kind(written)
        stats = per_kind.setdefault(kind, [0, 0])
        stats[0] += ok
        stats[1] += 1
        if not ok:
            misses.append((kind, written, got, spoken))
    dt = time.perf_counter() - t0
    print(f"Google TN test sentences (via NeMo-text-processing data/GoogleTN.json), accent=us, "
          f"{len(cases)} with something to normalize; comparison in the docstring")
    print(f"{'written side has':<28}{'pass':>6}{'cases':>7}{'accuracy':>10}")
    for kind, _ in _KINDS:
        if kind in per_kind:
            ok, n = per_kind[kind]
            print(f"{kind:<28}{ok:>6}{n:>7}{ok / n:>10.1%}")
    total_ok = sum(v[0] for v in per_kind.values())
    print(f"{'TOTAL':<28}{total_ok:>6}{len(cases):>7}{total_ok / len(cases):>10.1%}")
    print(f"{len(cases) / dt:,.0f} sentences/s ({dt:.2f} s, comparison included)")
    if show_misses:
        print("\nmisses:")
        for kind, written, got, spoken in sorted(misses, key=lambda m: m[0]):
            print(f"  [{kind}] {written!r}\n      got {got!r}\n      exp {spoken!r}")
    return total_ok / len(cases)


# Long inputs made to make a regex backtrack: runs of digits, spaces, codes, numerals, tags,
# e-mail names. Linear time doubles the time per doubling of the length (x4 from 4,096 to
# 16,384 characters); quadratic backtracking would give x16.
LONG_INPUTS = {"digits": "1", "spaces": " ", "stars": "* ", "slash codes": "1/", "hyphen codes": "1-", "dotted": "1.",
               "numerals": "X", "regnal": "Sam II ", "hashtags": "#a", "mentions": "@a", "e-mail name": "a",
               "titles": "dr. ", "No": "No 1 ", "states": "Austin, TX ", "day ranges": "5-7 June ", "e": "1e",
               "upper-case www": "WWW."}


def run_long(accent: str) -> None:
    print(f"{'long input':<14}{'4,096 chars':>13}{'16,384 chars':>14}{'ratio':>7}")
    for name, unit in LONG_INPUTS.items():
        times = []
        for n in (4096, 16384):
            text = (unit * (n // len(unit) + 1))[:n] + ("@x.com" if name == "e-mail name" else "")
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                normalize(text, accent=accent)
                best = min(best, time.perf_counter() - t0)
            times.append(best)
        print(f"{name:<14}{times[0] * 1000:>10.1f} ms{times[1] * 1000:>11.1f} ms{times[1] / times[0]:>7.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="sentences to time")
    ap.add_argument("--accent", default="us", choices=["us", "uk"])
    ap.add_argument("--suite", choices=["throughput", "nemo", "google", "both", "long"], default="throughput",
                    help="both: nemo then google, and the two figures side by side")
    ap.add_argument("--show-misses", action="store_true", help="nemo/google: print every miss")
    args = ap.parse_args()
    if args.suite == "long":
        run_long(args.accent)
        return
    if args.suite in ("nemo", "google", "both"):
        figures = {}
        if args.suite in ("nemo", "both"):
            figures["NeMo cases"] = run_nemo(args.accent, args.show_misses)
        if args.suite in ("google", "both"):
            figures["Google sentences"] = run_google(args.show_misses)
        if len(figures) > 1:
            print("\n" + "   ".join(f"{k}: {v:.1%}" for k, v in figures.items()))
        return
    sents = corpus(args.n)
    chars = sum(map(len, sents))

    t0, c0 = time.perf_counter(), time.process_time()
    for s in sents:
        normalize(s, accent=args.accent)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = args.n / dt
    # CPU time as well: on a shared machine wall time includes waiting for a core.
    print(f"normalize: {args.n} sentences ({chars / args.n:.0f} chars avg) in {dt:.2f} s wall, {cpu:.2f} s CPU "
          f"-> {rate:,.0f} sentences/s wall, {args.n / cpu:,.0f} per CPU-second (one core)")
    print(f"projected 100k-sentence corpus: {100_000 / rate:.0f} s wall ({100_000 / rate / 60:.1f} min), "
          f"{100_000 / (args.n / cpu) / 60:.1f} min of CPU")

    text = " ".join(sents[:2000])
    t0 = time.perf_counter()
    segs = prepare(text, accent=args.accent, max_seconds=20.0)
    dt = time.perf_counter() - t0
    print(f"prepare (tags + normalize + split, 2000 sentences as one text): {dt:.2f} s, {len(segs)} chunks")
    t0 = time.perf_counter()
    chunks = split_sentences(text, max_seconds=20.0)
    print(f"split_sentences alone: {time.perf_counter() - t0:.3f} s, {len(chunks)} chunks")


if __name__ == "__main__":
    main()
