"""Abbreviations: the edited forms, and the forms people really type (any case, no periods).

:func:`abbreviations` expands the edited forms: phrases ("e.g.", "i.e.", "vs", "p. 4" ->
"page four"), titles before a name ("Dr. Smith", "Mrs Jones"), "Dr"/"St" by context
(Doctor/Saint before a name, Drive/Street after one), street suffixes ("Ave."),
post-nominals ("Jr.", "Ltd.", "etc.") and dotted acronyms ("U.S." -> "U S").

:func:`informal_numbered` and :func:`informal` add the forms of informal, shouted or machine-lowered text,
each only in a position that makes the reading sure:

- "E.G." / "eg," / "Eg" -> "for example", "I.E." / "ie," -> "that is" (without periods only
  with a lower-case second letter, before a comma, colon or a lower-case word: "EG 42" is a
  code), "ETC." / "etc" -> "et cetera", "vol 64" -> "volume sixty-four";
- lower-case titles: "dr." / "prof." before any word ("dr. jones" -> "doctor jones"); "mr",
  "mrs", "ms", "dr", "st", "prof", "mt" with or without a period before a capitalised name
  ("mr MacMillan" -> "mister MacMillan", "st Kilda" -> "saint Kilda"; "main st. and" stays);
- "Ltd", "Inc", "Jr", "Sr" (any case, no period) after a name -> "Limited" ...;
- "No" / "NO" / "no." before a number -> "number" ("No 10 Downing Street"); lower-case
  "no" without a period stays ("no 5 year olds");
- weekday ranges "Mon.-Fri." / "mon - fri" -> "Monday to Friday".

:func:`state_codes`: a US state code after "City, " -> the state ("Austin, TX" -> "Austin,
Texas"; a ZIP code after it digit by digit); codes that are also words people shout ("OK",
"HI", "OR", "IN", "ME") and MD ("Jane Doe, MD": the degree) are left, and so is one before ";"
(an author list: "Chan, CT;").

The output keeps the case of the first letter of what it replaces.
"""
from __future__ import annotations

import re

from .address import US_STATES
from .numbers import digits


def case_like(src: str, word: str) -> str:
    """``word`` with a capital first letter when ``src`` starts with one."""
    return word[0].upper() + word[1:] if src[:1].isupper() else word


def after(m: re.Match, window: int = 200) -> str:
    """The text right after a match (bounded, so long inputs stay linear-time)."""
    return m.string[m.end():m.end() + window]


def keep_stop(following: str) -> str:
    """A period that ended an abbreviation also ends the sentence when the text ends
    or a new sentence starts after it."""
    return "." if (not following.strip() or re.match(r"\s+[\"(]?[A-Z]", following)) else ""


_LOWER_NEXT = r"(?=[,:]|\s+[a-z])"
# With periods in any case ("E.G."), before the dotted-acronym rule would spell them.
_DOTTED_PHRASES = [(re.compile(r"\b([eE])\.\s?[gG]\."), "for example"), (re.compile(r"\b([iI])\.\s?[eE]\."), "that is")]
# Without periods: only where the next word says so (see the module docstring).
_ANY_CASE_PHRASES = [
    (re.compile(r"\b([eE])g\b" + _LOWER_NEXT), "for example"),
    (re.compile(r"\b([iI])e\b" + _LOWER_NEXT), "that is"),
    (re.compile(r"\b([eE])tc\b(?!\.)"), "et cetera"),  # "etc." is the edited form's (it keeps the stop)
]
_ETC_CAPS_RE = re.compile(r"\bETC\.")
_VOL_RE = re.compile(r"\b(?:[vV]ol|VOL)\b(?!\.)(?=\s?\d)")  # "vol 64"
_LOWER_TITLES = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "prof": "professor",
           "mt": "mount"}
# "dr. jones": a lower-case title with a period before any word; without a period only
# before a capitalised name ("st Kilda"; "ms word" stays).
# (On tidy text, so " " and not \s: a title never joins two paragraphs.)
_LOWER_TITLE_RE = re.compile(r"\b(?=[dmps])(?:(dr|prof)\. +(?=[A-Za-z])|(mr|mrs|ms|dr|st|prof|mt)\.? +(?=[A-Z][a-z]))")
_BARE_POSTNOMINAL = {"ltd": "limited", "inc": "incorporated", "jr": "junior", "sr": "senior"}
_BARE_POSTNOMINAL_RE = re.compile(r"(?<=[A-Za-z.],\s)(?i:(ltd|inc|jr|sr))\b(?!\.)|(?<=[A-Za-z]\s)(?i:(ltd|inc|jr|sr))\b(?!\.)"
                             r"(?=\s*(?:[,;:!?()]|$))")
_NO_NUMBER_RE = re.compile(r"\b(No|NO|no\.|No\.|NO\.)\s?(?=\d)")
# Words people shout, and MD: a doctor's degree after a name ("Jane Doe, MD") is as common as Maryland.
_STATE_SKIP = frozenset("OK HI OR IN ME MD".split())
_STATE_RE = re.compile(r"\b([A-Z][a-z]+),\s(" + "|".join(sorted(set(US_STATES) - _STATE_SKIP)) + r")\b"
                       r"(?:\s(\d{5})(?:-(\d{4}))?\b)?(?=$|[.,:!?)]|\s+(?![A-Z]{2}))")  # "Chan, CT;": an author list
_STATE_HINT_RE = re.compile(r", [A-Z]{2}\b")
_WEEKDAYS = {"mon": "Monday", "tue": "Tuesday", "tues": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
             "thur": "Thursday", "thurs": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
_DAY = r"(?i:mon|tues|tue|wed|thurs|thur|thu|fri|sat|sun)"
_WEEKDAY_RANGE_RE = re.compile(r"\b(?=[MTWFSmtwfs])(" + _DAY + r")\.?\s?[-–]\s?(" + _DAY + r")\b(\.?)")

def _state(m: re.Match, accent: str) -> str:
    s = f"{m[1]}, {US_STATES[m[2]]}"
    if m[3]:  # a ZIP code, digit by digit as in addresses
        s += " " + digits(m[3], accent) + (", " + digits(m[4], accent) if m[4] else "")
    return s


def _weekdays(m: re.Match) -> str:
    s = f"{_WEEKDAYS[m[1].lower()]} to {_WEEKDAYS[m[2].lower()]}"
    rest = m.string[m.end():m.end() + 3]
    if m[3] and rest[:1].isalnum():  # "Mon.-Fri.XXth": the period parted two words; keep them apart
        return s + " "
    # "Mon.-Fri." ends the sentence only where the text ends or a new sentence starts
    return s + ("." if m[3] and (not rest.strip() or re.match(r"\s+[A-Z\"]", rest)) else "")


def state_codes(t: str, accent: str) -> str:
    """"Austin, TX" -> "Austin, Texas" (after the address rule, which reads whole addresses)."""
    return _STATE_RE.sub(lambda m: _state(m, accent), t) if _STATE_HINT_RE.search(t) else t


def informal_numbered(t: str) -> str:
    """The informal forms that need the digits still written ("No 10", "vol 64") or must come
    before the edited rules ("ETC." made "etc.", "E.G." before the dotted-acronym rule spells
    it). Runs before the numbers are read."""
    if "o" not in t and "O" not in t and "ETC" not in t and "." not in t:
        return t
    low = t.lower()
    if "etc" in low:
        t = _ETC_CAPS_RE.sub("etc.", t)
    if "." in t:
        for rx, word in _DOTTED_PHRASES:
            t = rx.sub(lambda m, word=word: case_like(m[0], word), t)
    if "vol" in low:
        t = _VOL_RE.sub(lambda m: case_like(m[0], "volume"), t)
    if "no" in low:
        t = _NO_NUMBER_RE.sub(lambda m: case_like(m[0], "number") + " ", t)
    return t


def informal(t: str) -> str:
    """The other informal forms of the module docstring. Runs last, on words only: a rule that
    looks at the next word ("dr. jones", "eg, this", "Acme, ltd") must read the same once a
    number or symbol after it is a word ("dr. 0" -> "dr. zero"), or a second pass would
    change the output."""
    low = t.lower()
    if "e" in low and ("eg" in low or "ie" in low or "etc" in low):
        for rx, word in _ANY_CASE_PHRASES:
            t = rx.sub(lambda m, word=word: case_like(m[0], word), t)
    if "dr" in t or "mr" in t or "ms" in t or "st" in t or "prof" in t or "mt" in t:
        t = _LOWER_TITLE_RE.sub(lambda m: _LOWER_TITLES[m[1] or m[2]] + " ", t)
    if "ltd" in low or "inc" in low or "jr" in low or "sr" in low:
        t = _BARE_POSTNOMINAL_RE.sub(lambda m: case_like(m[0], _BARE_POSTNOMINAL[(m[1] or m[2]).lower()]), t)
    if "-" in t or "–" in t:
        t = _WEEKDAY_RANGE_RE.sub(_weekdays, t)
    return t


# Abbreviations. Titles are expanded before a capitalised name; the period is
# optional for the ones British style writes without it ("Dr Smith").
_TITLES = {"Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Mx": "Mix", "Prof": "Professor", "Mt": "Mount",
           "Gen": "General", "Capt": "Captain", "Lt": "Lieutenant", "Col": "Colonel", "Sgt": "Sergeant",
           "Gov": "Governor", "Sen": "Senator", "Rep": "Representative", "Rev": "Reverend", "Fr": "Father",
           "Pres": "President", "Cpl": "Corporal", "Adm": "Admiral", "Hon": "Honorable",
           "Maj": "Major", "Brig": "Brigadier", "Cmdr": "Commander", "Cdr": "Commander", "Pvt": "Private",
           "Supt": "Superintendent", "Insp": "Inspector", "Amb": "Ambassador", "Atty": "Attorney"}
_TITLES_NO_DOT = ("Mr", "Mrs", "Ms", "Mx", "Mt")
_TITLE_RE = re.compile(r"\b(" + "|".join(sorted(_TITLES, key=len, reverse=True)) + r")(\.)(?!\w)"
                       r"|\b(" + "|".join(_TITLES_NO_DOT) + r")(?=\s+[A-Z])")
_DR_ST_RE = re.compile(r"\b(Dr|St)\b(\.?)")
# Capitalised words that usually start a sentence rather than continue a name.
_SENTENCE_STARTERS = frozenset("The A An I It He She We They You This That These Those There Then But And So "
                               "If In On At As My Our Your His Her Its Their What When Where Why How Who".split())
_STREET_SUFFIX = {"Ave": "Avenue", "Rd": "Road", "Blvd": "Boulevard", "Ln": "Lane", "Sq": "Square", "Hwy": "Highway"}
_STREET_RE = re.compile(r"(?<=[A-Za-z0-9] )(" + "|".join(_STREET_SUFFIX) + r")\.")
_POSTNOMINAL = {"Jr": "Junior", "Sr": "Senior", "Inc": "Incorporated", "Ltd": "Limited", "Corp": "Corporation",
                "Co": "Company", "etc": "et cetera", "Bros": "Brothers"}
_POSTNOMINAL_RE = re.compile(r"\b(" + "|".join(_POSTNOMINAL) + r")\.")
_PHRASES = [  # (regex, replacement): always expanded
    (r"\b([eE])\.\s?g\.", "for example"), (r"\b([iI])\.\s?e\.", "that is"), (r"\b([aA])\.k\.a\.", "also known as"),
    (r"\b([vV])s\.?(?!\w)", "versus"), (r"\b([aA])pprox\.", "approximately"), (r"\b([dD])ept\.", "department"),
    (r"\b([fF])ig\.(?!\w)", "figure"), (r"\b([vV])ol\.(?!\w)", "volume"), (r"\b([pP])p\.(?=\s?\d)", "pages"),
    (r"\b([pP])\.(?=\s?\d)", "page"), (r"\b([nN])o\.(?=\s?\d)", "number"), (r"\b([nN])os\.(?=\s?\d)", "numbers"),
    (r"\b(P)h\.?D\.?(?![A-Za-z0-9])", "P H D"),
]
_PHRASES = [(re.compile(p), r) for p, r in _PHRASES]
_DOTTED_ACRONYM_RE = re.compile(r"\b((?:[A-Za-z]\.){2,})(?![A-Za-z0-9])")


def abbreviations(t: str, accent: str) -> str:
    """The edited forms: phrases ("e.g."), titles before names, "Dr"/"St" by context, street
    suffixes, post-nominals ("Jr."), dotted acronyms ("U.S.")."""
    if "." not in t and not re.search(r"\b(?:Mr|Mrs|Ms|Mx|Mt|Dr|St|[vV]s|[wW]/|and/or)\b", t):
        return t
    for rx, rep in _PHRASES:
        # "p.4": a space after the word, or the number is glued to it ("pagefour")
        t = rx.sub(lambda m, rep=rep: case_like(m[1], rep) + (keep_stop(after(m)) if rep == "P H D" else "")
                   + (" " if m.string[m.end():m.end() + 1].isalnum() else ""), t)

    def title(m):
        abbr = m[1] or m[3]
        word = _TITLES[abbr]
        if abbr == "Hon" and accent == "uk":
            word = "Honourable"
        return word

    t = _TITLE_RE.sub(title, t)

    def dr_st(m):
        abbr, dot = m[1], m[2]
        following = after(m)
        nxt = re.match(r"\s+([A-Za-z']+)", following)
        before = m.string[max(0, m.start() - 80):m.start()]
        prev = re.search(r"([A-Za-z0-9']+)\s+$", before)
        name_follows = nxt is not None and nxt[1][0].isupper() and nxt[1] not in _SENTENCE_STARTERS
        after_name = prev is not None and (prev[1][0].isupper() or prev[1][0].isdigit())
        if not dot and not name_follows and not after_name:
            return m[0]  # a bare "Dr"/"St" with no context: leave it
        if name_follows:
            return "Doctor" if abbr == "Dr" else "Saint"
        if after_name:
            return ("Drive" if abbr == "Dr" else "Street") + (keep_stop(following) if dot else "")
        return ("Doctor" if abbr == "Dr" else "Street") + (keep_stop(following) if dot else "")

    t = _DR_ST_RE.sub(dr_st, t)
    t = _STREET_RE.sub(lambda m: _STREET_SUFFIX[m[1]] + keep_stop(after(m)), t)
    t = _POSTNOMINAL_RE.sub(lambda m: _POSTNOMINAL[m[1]] + keep_stop(after(m)), t)
    t = _DOTTED_ACRONYM_RE.sub(lambda m: " ".join(m[1].replace(".", "").upper()) + keep_stop(after(m)), t)
    return t
