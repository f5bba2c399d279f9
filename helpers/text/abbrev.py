"""Abbreviations as people really type them: any case, with or without periods.

:mod:`helpers.text.normalize` expands the edited forms ("e.g.", "Dr. Smith", "No. 5",
"Jan."); these rules add the forms of informal, shouted or machine-lowered text, each
only in a position that makes the reading sure:

- "E.G." / "eg," / "Eg" -> "for example", "I.E." / "ie," -> "that is" (without periods only
  with a lower-case second letter, before a comma, colon or a lower-case word: "EG 42" is a code), "ETC." / "etc"
  -> "et cetera";
- lower-case titles: "dr." / "prof." before any word ("dr. jones" -> "doctor jones"); "mr",
  "mrs", "ms", "dr", "st", "prof", "mt" with or without a period before a capitalised name
  ("mr MacMillan" -> "mister MacMillan", "st Kilda" -> "saint Kilda"; "main st. and" stays);
- "Ltd", "Inc", "Jr", "Sr" (any case, no period) after a name -> "Limited" ...;
- "No" / "NO" / "no." before a number -> "number" ("No 10 Downing Street"); lower-case
  "no" without a period stays ("no 5 year olds");
- a US state code after "City, " -> the state ("Austin, TX" -> "Austin, Texas"; a ZIP code
  after it digit by digit); codes
  that are also words people shout ("OK", "HI", "OR", "IN", "ME") are left;
- weekday ranges "Mon.-Fri." / "mon - fri" -> "Monday to Friday".

The output keeps the case of the first letter of what it replaces, as the edited forms do.
"""
from __future__ import annotations

import re

from .address import US_STATES
from .numbers import digits


def _case_like(src: str, word: str) -> str:
    return word[0].upper() + word[1:] if src[:1].isupper() else word


_LOWER_NEXT = r"(?=[,:]|\s+[a-z])"
_PHRASES = [
    (re.compile(r"\b([eE])\.\s?[gG]\.|\b([eE])g\b" + _LOWER_NEXT), "for example"),
    (re.compile(r"\b([iI])\.\s?[eE]\.|\b([iI])e\b" + _LOWER_NEXT), "that is"),
    (re.compile(r"\b([eE])tc\b(?!\.)"), "et cetera"),  # "etc." is the edited form's (it keeps the stop)
]
_ETC_CAPS_RE = re.compile(r"\bETC\.")
_TITLES = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "prof": "professor",
           "mt": "mount"}
# "dr. jones": a lower-case title with a period before any word; without a period only
# before a capitalised name ("st Kilda"; "ms word" stays).
_TITLE_RE = re.compile(r"\b(dr|prof)\.\s+(?=[A-Za-z])|\b(mr|mrs|ms|dr|st|prof|mt)\.?\s+(?=[A-Z][a-z])")
_POSTNOMINAL = {"ltd": "limited", "inc": "incorporated", "jr": "junior", "sr": "senior"}
_POSTNOMINAL_RE = re.compile(r"(?<=[A-Za-z],\s)(?i:(ltd|inc|jr|sr))\b(?!\.)|(?<=[A-Za-z]\s)(?i:(ltd|inc|jr|sr))\b(?!\.)"
                             r"(?=\s*(?:[,;:!?)]|$))")
_NUMBER_RE = re.compile(r"\b(No|NO|no\.|No\.|NO\.)\s?(?=\d)")
_STATE_SKIP = frozenset("OK HI OR IN ME".split())
_STATE_RE = re.compile(r"\b([A-Z][a-z]+),\s(" + "|".join(sorted(set(US_STATES) - _STATE_SKIP)) + r")\b"
                       r"(?:\s(\d{5})(?:-(\d{4}))?\b)?(?=$|[.,:!?)]|\s+(?![A-Z]{2}))")  # "Chan, CT;": an author list
_WEEKDAYS = {"mon": "Monday", "tue": "Tuesday", "tues": "Tuesday", "wed": "Wednesday", "thu": "Thursday",
             "thur": "Thursday", "thurs": "Thursday", "fri": "Friday", "sat": "Saturday", "sun": "Sunday"}
_DAY = r"(?i:mon|tues|tue|wed|thurs|thur|thu|fri|sat|sun)"
_WEEKDAY_RANGE_RE = re.compile(r"\b(" + _DAY + r")\.?\s?[-–]\s?(" + _DAY + r")\b(\.?)")

def _state(m: re.Match, accent: str) -> str:
    s = f"{m[1]}, {US_STATES[m[2]]}"
    if m[3]:  # a ZIP code, digit by digit as in addresses
        s += " " + digits(m[3], accent) + (", " + digits(m[4], accent) if m[4] else "")
    return s


def _weekdays(m: re.Match) -> str:
    s = f"{_WEEKDAYS[m[1].lower()]} to {_WEEKDAYS[m[2].lower()]}"
    rest = m.string[m.end():m.end() + 3]
    # "Mon.-Fri." ends the sentence only where the text ends or a new sentence starts
    return s + ("." if m[3] and (not rest.strip() or re.match(r"\s+[A-Z\"]", rest)) else "")


def state_codes(t: str, accent: str) -> str:
    """"Austin, TX" -> "Austin, Texas" (after the address rule, which reads whole addresses)."""
    return _STATE_RE.sub(lambda m: _state(m, accent), t) if ", " in t else t


def abbreviations_any_case(t: str) -> str:
    """Expand the informal forms listed in the module docstring."""
    # Substring tests first: most sentences have none of these, and they cost far less than
    # a case-insensitive scan.
    low = t.lower()
    if "e" in low and ("eg" in low or "e.g" in low or "ie" in low or "i.e" in low or "etc" in low):
        t = _ETC_CAPS_RE.sub("etc.", t)
        for rx, word in _PHRASES:
            t = rx.sub(lambda m, word=word: _case_like(m[0], word), t)
    if "r" in low or "s" in low or "t" in low:
        t = _TITLE_RE.sub(lambda m: _TITLES[m[1] or m[2]] + " ", t)
    if "ltd" in low or "inc" in low or "jr" in low or "sr" in low:
        t = _POSTNOMINAL_RE.sub(lambda m: _case_like(m[0], _POSTNOMINAL[(m[1] or m[2]).lower()]), t)
    if "no" in low:
        t = _NUMBER_RE.sub(lambda m: _case_like(m[0], "number") + " ", t)
    if "-" in t or "–" in t:
        t = _WEEKDAY_RANGE_RE.sub(_weekdays, t)
    return t
