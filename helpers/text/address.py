"""Street addresses: ``"2788 San Tomas Expy, Santa Clara, CA 95051"`` ->
``"twenty-seven eighty-eight San Tomas Expressway, Santa Clara, California nine five
zero five one"``.

An address is a house number, an optional compass letter, one to four capitalised
street-name words (or an ordinal: "1st"), and a street-type abbreviation. In it,
the house number is read in pairs the way people say them ("fourteen twenty-eight",
"one twenty-three"; a pair starting with 0 digit by digit), the compass letter and
the street type are spelled out; a two-letter state code after a comma and a
five-digit ZIP code that follow are read as the state's name and digit by digit.
"""
from __future__ import annotations

import re

from .numbers import cardinal, digits, ordinal

STREET_TYPES = {"st": "Street", "ave": "Avenue", "av": "Avenue", "rd": "Road", "blvd": "Boulevard", "ln": "Lane",
                "ct": "Court", "dr": "Drive", "expy": "Expressway", "hwy": "Highway", "pkwy": "Parkway",
                "pl": "Place", "sq": "Square", "ter": "Terrace", "cir": "Circle", "fwy": "Freeway", "trl": "Trail"}
_COMPASS = {"N": "North", "S": "South", "E": "East", "W": "West", "NE": "Northeast", "NW": "Northwest",
            "SE": "Southeast", "SW": "Southwest"}
US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California", "CO": "Colorado",
    "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho",
    "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York", "NC": "North Carolina",
    "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas",
    "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington", "WV": "West Virginia",
    "WI": "Wisconsin", "WY": "Wyoming", "DC": "D C"}
_NAME_STOP = "(?!(?:The|A|An|In|On|At|For|And|Or|Of|To|From|By)\\b)"
_TYPE_ALT = "|".join(sorted(STREET_TYPES, key=len, reverse=True))
ADDRESS_RE = re.compile(
    r"(?<![\w.,$£€-])(?P<num>\d{1,5})\s+(?:(?P<dir>[NSEW]|NE|NW|SE|SW)\s+)?"
    r"(?P<name>(?:\d{1,3}(?:st|nd|rd|th)|" + _NAME_STOP + r"[A-Z][a-z]+)(?:\s+" + _NAME_STOP + r"[A-Z][a-z]+){0,3})\s+"
    r"(?P<type>(?i:" + _TYPE_ALT + r"))(?P<dot>\.?)(?![\w'])"
    r"(?P<tail>(?:,\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2})?,\s+(?:" + "|".join(US_STATES) + r")\b(?:,?\s+\d{5}(?:-\d{4})?\b)?)?")
_TAIL_RE = re.compile(r"(,\s+)(" + "|".join(US_STATES) + r")\b(?:(,?\s+)(\d{5})(?:-(\d{4}))?\b)?")
_ORD_RE = re.compile(r"\b(\d{1,3})(?:st|nd|rd|th)\b")
# A sentence goes on after "St." when the next word is lower case or one of these is not next.
_STARTERS = frozenset("The A An I It He She We They You This That These Those There Then But And So If In On At As "
                      "My Our Your His Her Its Their What When Where Why How Who".split())


def house_number(s: str, accent: str) -> str:
    """"1428" -> "fourteen twenty-eight", "123" -> "one twenty-three", "708" -> "seven zero eight"."""
    if len(s) <= 2 or len(s) > 4:
        return cardinal(int(s), accent) if len(s) <= 2 else digits(s, accent)
    head, pair = s[:-2], s[-2:]
    if pair == "00":
        return cardinal(int(head), accent) + " hundred"
    tail = digits(pair, accent) if pair[0] == "0" else cardinal(int(pair), accent)
    return f"{cardinal(int(head), accent)} {tail}"


def _address(m: re.Match, accent: str) -> str:
    out = [house_number(m["num"], accent)]
    if m["dir"]:
        out.append(_COMPASS[m["dir"]])
    out.append(_ORD_RE.sub(lambda o: ordinal(int(o[1]), accent), m["name"]))
    out.append(STREET_TYPES[m["type"].lower()])
    s = " ".join(out)
    if m["dot"]:
        nxt = re.match(r"\s+([A-Za-z\"]\w*)", m.string[m.end():m.end() + 40])
        if not m.string[m.end():].strip() or (nxt and nxt[1] in _STARTERS):
            s += "."  # "... Elm St. It was": the dot ends the sentence too
    if m["tail"]:
        s += _TAIL_RE.sub(lambda t: t[1] + US_STATES[t[2]] + ((t[3] + digits(t[4], accent)
                                                               + (" " + digits(t[5], accent) if t[5] else ""))
                                                              if t[4] else ""), m["tail"])
    return s


def addresses(text: str, accent: str) -> str:
    return ADDRESS_RE.sub(lambda m: _address(m, accent), text)
