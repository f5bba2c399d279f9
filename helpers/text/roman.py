"""Roman numerals: where a numeral is a number, and how it is said.

Capital letters that spell a numeral are far more often something else - the pronoun
"I", "CD", "DC", "MIX", "CV", sizes ("XL"), "Vitamin C", "Malcolm X" - so a numeral is
read only where its position says it is one:

- after a keyword of numbered parts ("Chapter IV", "Super Bowl LVIII", "Type II"):
  a cardinal ("Chapter four"); a plural keyword takes a range ("Chapters I-III":
  "Chapters one to three"); a lower-case keyword ("vol XV", "class V") too, but never before
  a lone "I" ("the part I liked"). Only numerals of I, V, X, L (1..89): "Appendix C" is a letter;
- with an ordinal ending that agrees ("XXth century", "IInd", "XXIst"): the ordinal;
- after "the", two letters or more, not a common acronym ("the XIV" -> "the fourteenth");
- after a capitalised name, regnal or sequel position ("Henry VIII", "Sam II",
  "Louis XIV."): "Henry the Eighth". Names of a fixed regnal list take any numeral but a
  one-letter C, D, L or M (an initial: "Philip D.", "John C. Calhoun"); any other
  capitalised name (three letters or more, not "The", "Los" ...) takes numerals of two or
  more letters from I, V, X, L (not "XL"/"LI"/"LV"...), or "I" only where the sentence or
  clause ends after it ("Sam I." but not "Sam I am"). Google's data reads a numeral after
  a name outside its own list as a cardinal ("Crocodile Dundee two"); #34 chose the regnal
  reading ("Sam the Second"), right for people ("Henry Ford II"), wrong for sequels.

A numeral ends its word; a possessive ("Henry VIII's") or a hyphenated compound
("World War II-era", "Louis XIV-style") may follow.
"""
from __future__ import annotations

import re

from .numbers import cardinal, ordinal

_ROMAN = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
# After keywords only numerals made of I, V, X, L (1..89): "Section C" or "Appendix D" are letters.
_ROMAN_SMALL = r"(?=[XLVI])(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_ROMAN_KEYWORDS = ("Chapter", "Part", "Volume", "Book", "Act", "Scene", "Section", "Article", "Appendix",
                   "Psalm", "Phase", "Stage", "Level", "Episode", "Season", "Round", "Title",
                   "Unit", "Lesson", "World War", "Super Bowl", "Apollo", "Vatican", "Schedule", "Annex",
                   "Type", "Class", "Grade", "Category", "Tier", "Mark", "Mk", "Division", "Formula", "Vol",
                   "Canto", "Movement", "Symphony", "Op", "Opus", "Plate", "Figure", "Table", "Grand Prix")
_REGNAL_NAMES = ("Henry", "Elizabeth", "Louis", "George", "Edward", "Charles", "James", "William", "Richard",
                 "John", "Paul", "Pius", "Benedict", "Gregory", "Leo", "Innocent", "Clement", "Napoleon", "Peter",
                 "Catherine", "Mary", "Philip", "Frederick", "Alexander", "Ramesses", "Ramses", "Constantine",
                 "Victor Emmanuel", "Ferdinand", "Isabella", "Alfonso", "Carlos", "Juan Carlos", "Nicholas",
                 "Ivan", "Olaf", "Harald", "Gustav", "Wilhelm", "Francis", "Anne", "Victoria", "Stephen", "Edmund",
                 "Urban", "Boniface", "Sixtus", "Felipe", "Rama", "Akihito", "Otto", "Rudolf", "Malcolm", "David")
# The numeral must end the word ("Part I'm" is not a numeral; "Henry VIII's", "II-era" are).
_ROMAN_END = r"(?=['’]s\b|--|-[a-z]|[^\w'’-]|$)"
_ROMAN_KEYWORD_RE = re.compile(r"\b(" + "|".join(list(_ROMAN_KEYWORDS) + [k.upper() for k in _ROMAN_KEYWORDS])
                               + r")\s+(" + _ROMAN_SMALL + r")" + _ROMAN_END)
# Lower-case keywords ("vol XV", "volume IV", "class V"), but never a lone "I" ("the part I liked").
_ROMAN_KEYWORD_LOWER_RE = re.compile(r"\b(" + "|".join(k.lower() for k in _ROMAN_KEYWORDS) + r")\s+((?!I(?![XLVI]))"
                                     + _ROMAN_SMALL + r")" + _ROMAN_END)
_ROMAN_KEYWORDS_PLURAL_RE = re.compile(r"\b(" + "|".join(k + "s" for k in _ROMAN_KEYWORDS if " " not in k)
                                       + r")\s+(" + _ROMAN_SMALL + r")\s?[-–]\s?(" + _ROMAN_SMALL + r")" + _ROMAN_END)
_ROMAN_NAME_RE = re.compile(r"\b(" + "|".join(_REGNAL_NAMES) + r")\s+(" + _ROMAN + r")" + _ROMAN_END)
_ROMAN_ORDINAL_RE = re.compile(r"\b(" + _ROMAN + r")(st|nd|rd|th|ST|ND|RD|TH)\b")
_ROMAN_AFTER_THE_RE = re.compile(r"\b([Tt]he|THE)\s+(" + _ROMAN + r")" + _ROMAN_END)
# Any capitalised name: small numerals of two letters or more, or "I" where the clause ends.
_ROMAN_ANY_NAME_RE = re.compile(r"\b([A-Z][a-z]{2,})\s+((?=[XLVI]{2})" + _ROMAN_SMALL + r"|I(?=\s*(?:[.,;:!?)]|$)))"
                                + _ROMAN_END)
# Capital-letter words that are numerals by their letters but nearly always something else.
_NOT_NUMERALS = frozenset("CD DC CV CC MC MD DI DIV MIX MI LI CI XL XXL XXXL XXX LV MM DL CL ML MV DV CM LL "
                          "CID DIM LIV CIV".split())
# Capitalised words before which a numeral is no regnal number (they start a clause or count).
_NOT_NAMES = frozenset("The A An It He She We They You This That These Those There Then But And So If In On "
                       "At As My Our Your His Her Its Their What When Where Why How Who Is Was Are Were Be "
                       "Do Did Does Has Had Have Will Would Can Could Should May Might Must Shall Not No Yes "
                       "Or Of To For From By With Without Than About Into Over After Before "
                       # articles and particles of other languages ("La II Republica")
                       "Los Las Les Der Die Das Del Den Van Von Une Uno Una".split())
# A word made of numeral letters (with an ordinal ending): without one there is nothing to read.
_CANDIDATE_RE = re.compile(r"\b[IVXLCDM]+(?:st|nd|rd|th|ST|ND|RD|TH)?\b")
# Our own output is no name: "Tag XIV XIV" -> "Tag the Fourteenth XIV" must not read the second
# numeral on a second pass ("Fourteenth XIV").
_ORDINAL_WORDS = frozenset(ordinal(n).split("-")[-1].split()[-1].capitalize() for n in list(range(1, 101)) + [1000])
_ROMAN_VALUES = {"M": 1000, "D": 500, "C": 100, "L": 50, "X": 10, "V": 5, "I": 1}


def roman_to_int(s: str) -> int:
    """``roman_to_int("XIV") == 14`` (a numeral the patterns above accept)."""
    total = 0
    for i, c in enumerate(s):
        v = _ROMAN_VALUES[c]
        total += -v if i + 1 < len(s) and _ROMAN_VALUES[s[i + 1]] > v else v
    return total


def _ordinal_suffix(n: int) -> str:
    return "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _regnal(name: str, numeral: str, accent: str) -> str:
    return f"{name} the {ordinal(roman_to_int(numeral), accent).capitalize()}"


_SPELLED_NEXT_RE = re.compile(r" [A-Z]\b")


def _initial(m: re.Match) -> bool:
    """A one-letter "numeral" after a name is an initial unless it is I, V or X ("Philip D.",
    "John C. Calhoun"), X after Malcolm is his name, and one followed by another lone capital
    is a spelled acronym ("Henry I B M" from "Henry IBM": the first pass spells it after this rule)."""
    if len(m[2]) == 1 and (m[2] not in "IVX" or _SPELLED_NEXT_RE.match(m.string, m.end())):
        return True
    return m[0] == "Malcolm X"


def roman_numerals(t: str, accent: str) -> str:
    """Read the Roman numerals of ``t`` whose position says they are numbers (module docstring)."""
    if not _CANDIDATE_RE.search(t):
        return t
    t = _ROMAN_KEYWORDS_PLURAL_RE.sub(
        lambda m: f"{m[1]} {cardinal(roman_to_int(m[2]), accent)} to {cardinal(roman_to_int(m[3]), accent)}", t)
    t = _ROMAN_KEYWORD_RE.sub(lambda m: f"{m[1]} {cardinal(roman_to_int(m[2]), accent)}", t)
    t = _ROMAN_KEYWORD_LOWER_RE.sub(lambda m: f"{m[1]} {cardinal(roman_to_int(m[2]), accent)}", t)

    def with_suffix(m):
        n = roman_to_int(m[1])
        if m[1] in _NOT_NUMERALS or m[2].lower() != _ordinal_suffix(n) or (len(m[1]) == 1 and m[1] not in "IVX"):
            return m[0]
        return ordinal(n, accent)

    t = _ROMAN_ORDINAL_RE.sub(with_suffix, t)
    t = _ROMAN_NAME_RE.sub(lambda m: m[0] if _initial(m) else _regnal(m[1], m[2], accent), t)
    t = _ROMAN_AFTER_THE_RE.sub(lambda m: m[0] if (len(m[2]) < 2 or m[2] in _NOT_NUMERALS)
                                else f"{m[1]} {ordinal(roman_to_int(m[2]), accent)}", t)
    t = _ROMAN_ANY_NAME_RE.sub(lambda m: m[0] if (m[1] in _NOT_NAMES or m[1] in _ORDINAL_WORDS or m[2] in _NOT_NUMERALS)
                               else _regnal(m[1], m[2], accent), t)
    return t
