"""English text normalization: written text -> the words a speaker says.

``normalize("$5.20 on 3/4 at 10:30am, Dr. Smith's 2nd visit (15%)")`` ->
``"five dollars and twenty cents on March fourth at ten thirty A M, Doctor Smith's
second visit (fifteen percent)"``.

One ordered list of rules, each a precompiled regex with a small callback. The
order matters: specific patterns (URLs, phone numbers, dates, times, money, units)
run before the generic number rule that finally speaks every digit left, so the
output never contains a digit. Every rule's output is made of plain words and
punctuation that no rule matches again, which is what makes ``normalize``
idempotent (tests check both properties on random text).

Conventions (chosen once, tested in ``tests/core/test_text.py``):

- Number spelling comes from num2words. Its English converter writes the British
  "and" ("one hundred and five") and commas between groups; there is no en_US
  variant, so for ``accent="us"`` the "and" is removed from number words, and the
  commas are removed for both accents (a comma would be read as a pause).
- Spelled letters are written as capitals separated by spaces ("F B I", "A M"),
  so the model sees one convention for every letter-by-letter reading.
- UK differences: "and" inside numbers, "per cent", "metre/litre", "nought" for a
  zero in decimals, "oh" for a zero in phone numbers, day-month date order,
  "the fourth of March" / "March the fourth", "Honourable".
- Inline tags (``[laugh]``, ``<|laugh|>``) are passed through untouched; use
  :func:`helpers.text.prepare` to interpret them. Markup tags (``<breathing/>``,
  ``<singing>...</singing>``) have no reading and are removed (their content stays).
- Characters with no reading (control, zero-width, emoji) are removed first
  (:mod:`helpers.text.guard`).

Context decides between readings (tests in ``tests/core/test_text_rules.py`` and, for
issue #34's families, ``tests/core/test_text_families.py``):

- four-digit numbers are years unless a plural noun follows or a quantity word
  precedes ("I bought 1035 cans", "over 1500 people"); "in/since/the ..." keep the year;
- an ordinal after "the" before a month does not add a second "the"; a suffix
  that does not agree ("1th") or a leading zero is a code ("111st": "one one one st");
- "St." before a name is Saint, after a name or in an address Street; addresses
  (:mod:`helpers.text.address`) read house numbers in pairs, states and ZIP codes;
- a hyphen between numbers is "to" (a range) unless it is part of a longer
  hyphenated code ("1-413-te-b"), the text is arithmetic ("1-2=5": minus) or the
  pair falls ("978-0": unread; abbreviated ends "2019-20" and clock hours "10-6" stay ranges),
  or a short group stands before a long one that is not round ("1-8090": a code; "1-1000" a
  range); spaced ("1624 - 1713") is the same; after a cue ("ext. 12-34", "order no. 2231-4477")
  the groups are a code, digit by digit; "June 5-7" / "5-7 June" are two days of one month;
- year-first dates ("1998/2/30") are dates whenever month and day are in range;
- "4.4x" is "four point four x" ("3×" "times", "2x8" "by"); US "2,500" is "twenty-five
  hundred"; "A321" a model number in pairs; "Tu (2/22)" a weekday and a date;
- a slash is "per" between a number (and unit) and a unit ("12/kg", "$20/mo"),
  a fraction between numbers, "or" between words, else "slash";
- months in any case ("july", "JAN."); lower-case "may"/"march" only after a day;
- times take seconds, zones (EST, "e.s.t"), every a.m./p.m. spelling, dotted
  forms ("1.59 p.m."); 00:xx a.m. is twelve;
- "1.2e-5" keeps its exponent's sign ("times ten to the minus five"); "5k" is "five thousand",
  "5K" "five K"; "*" between numbers is "times", a word of its own or a key ("dial *69") "star";
- a lone Greek letter is said by name ("Δx": "delta x");
- electronic text, telephone numbers, SSN-like serials, IPv4 addresses (always digit by
  digit, a port as a number), codes with slashes ("123/261788/2021") and social text
  ("#hashTag", "@JaneDoe") are in :mod:`helpers.text.electronic`; e-mail names are split into
  words by :mod:`helpers.text.words`; Roman numerals are read in :mod:`helpers.text.roman`;
  informal abbreviations (any case, no periods, lower-case titles, "Austin, TX", "Mon.-Fri.")
  in :mod:`helpers.text.abbrev`.
"""
from __future__ import annotations

import datetime
import re
import unicodedata

from .abbrev import abbreviations, after, case_like, informal, informal_numbered, keep_stop, state_codes
from .address import addresses
from .electronic import (EXTENSIONS, _BARE_DOMAIN_RE, _CODE_CUE_RE, _EMAIL_RE, _IP_RE, _PHONE_CUE_RE, _PHONE_RE, _URL_HINT_RE,
                         _URL_RE, HYPHEN_CODE_CUE_RE, SLASH_CODE_RE, _read_phone, _read_url, HASHTAG_RE, ISBN_RE,
                         MENTION_RE, read_hyphen_code, read_isbn, read_ip, read_slash_code, tag_words)
from .guard import strip_unspeakable
from .units import _PER_RE, _UNIT_ALT, _per, _unit_name
from .roman import roman_numerals
from .numbers import _is_one, _plural, cardinal, code_number, digits, number, ordinal, year

ACCENTS = ("us", "uk")
DATE_ORDERS = ("mdy", "dmy")
DEFAULT_DATE_ORDER = {"us": "mdy", "uk": "dmy"}

# --------------------------------------------------------------------------- patterns
# A written number: 1,234,567.89 | 1234.5 | .5 (no sign; signs are captured by rules).
_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_SNUM = r"(?:(?<![\w.])[-−])?(?<!\d)" + _NUM  # optionally negative; never starts inside a digit run (linear, not quadratic, on long runs)
_B = r"(?<![\w.])"  # left boundary for a number that starts a token

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_MONTH_ABBR = {"Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "Jun": 6, "Jul": 7, "Aug": 8,
               "Sep": 9, "Sept": 9, "Oct": 10, "Nov": 11, "Dec": 12}
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS)}
_MONTH_ALT = "|".join(list(_MONTHS) + [f"{a}\\.?" for a in sorted(_MONTH_ABBR, key=len, reverse=True)])
# Month names in any case ("july", "JULY", "JUL."); the words "may" and "march" in lower
# case are verbs far more often, so they count only after a day number ("17 may").
_MONTH_ANYCASE = r"(?i:" + _MONTH_ALT + r")"
_MONTH_LEAD = r"(?!may\b|march\b)" + _MONTH_ANYCASE


_MONTH_HINT_RE = re.compile(r"(?i)\b(?:" + "|".join(list(_MONTHS) + list(_MONTH_ABBR)) + r")\b")
_MONTH_NUM_LOWER = {**{m.lower(): i for m, i in _MONTH_NUM.items()}, **{a.lower(): i for a, i in _MONTH_ABBR.items()}}


def _month_number(word: str) -> int:
    return _MONTH_NUM_LOWER[word.rstrip(".").lower()]


# --------------------------------------------------------------------------- unicode
_VULGAR = {"½": "1/2", "¼": "1/4", "¾": "3/4", "⅓": "1/3", "⅔": "2/3", "⅕": "1/5", "⅖": "2/5",
           "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8", "⅞": "7/8"}
_VULGAR_RE = re.compile(r"(\d?)([" + "".join(_VULGAR) + "])")
_PRE_NFKC = str.maketrans({"‘": "'", "’": "'", "ʼ": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"',
                           "²": "^2", "³": "^3", "º": "°", "−": "-", "‐": "-", "‑": "-", "⁄": "/"})


def _unicode(text: str) -> str:
    if text.isascii():
        return text
    text = _VULGAR_RE.sub(lambda m: f"{m[1]} {_VULGAR[m[2]]} ", text)
    text = unicodedata.normalize("NFKC", text.translate(_PRE_NFKC))
    # Other scripts' decimal digits (Arabic-Indic...) -> ASCII so the number rules see them.
    return re.sub(r"\d", lambda m: m[0] if m[0] < "\x80" else str(unicodedata.digit(m[0])), text)


# --------------------------------------------------------------------------- rules
_BRACKET_RE = re.compile(r"\[([^\[\]]*)\]")
_MARKUP_RE = re.compile(r"</?[A-Za-z][\w:-]*(?:[\s=][^<>]*)?/?>")

# Dates.
_ISO_DATE_RE = re.compile(r"\b(\d{4})([-/.])(\d{1,2})\2(\d{1,2})\b(?![-/.]\d)")
_NUM_DATE_RE = re.compile(r"(?<![\w/.-])(\d{1,2})([/.-])(\d{1,2})\2(\d{4}|\d{2})(?![\w/]|\.\d)")
_DATE_CUES = r"on|by|until|till|since|from|before|after|dated|due|until|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_SHORT_DATE_RE = re.compile(r"\b(" + _DATE_CUES + r"|On|By|Until|Since|From|Before|After|Due)(,?\s+\(?)(\d{1,2})/(\d{1,2})(?![\w/]|\.\d)")
# A weekday abbreviation before a numeric date ("Tu (2/22)") - not "We" / "Fr" (pronoun, Father).
_WEEKDAYS = {"Mon": "Monday", "Mo": "Monday", "Tue": "Tuesday", "Tues": "Tuesday", "Tu": "Tuesday",
             "Wed": "Wednesday", "Thu": "Thursday", "Thur": "Thursday", "Thurs": "Thursday", "Th": "Thursday",
             "Fri": "Friday", "Sat": "Saturday", "Sa": "Saturday", "Sun": "Sunday", "Su": "Sunday"}
_WEEKDAY_DATE_RE = re.compile(r"\b(" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\.?(?=,?\s+\(?\d{1,2}/\d{1,2}(?![\w/]|\.\d))")
_ORD_SUFFIX = r"(?:st|nd|rd|th)"
# "Jan 1977", "SEPT 2020": an abbreviated month before a year (with a period: the abbreviation rule).
_MONTH_ABBR_YEAR_RE = re.compile(r"\b(" + "|".join(sorted(list(_MONTH_ABBR) + [a.upper() for a in _MONTH_ABBR], key=len,
                                                          reverse=True)) + r")(?=\s+\d{4}\b)")
_MONTH_DAY_RE = re.compile(r"\b(" + _MONTH_LEAD + r")(?:\s+|-)(\d{1,2})" + _ORD_SUFFIX + r"?\b(?![/:.]?\d)(?!-(?!\d{4}\b)\d)"
                           r"(?:(,?)(?:\s+|-)(\d{4})\b)?")
_DAY_MONTH_RE = re.compile(r"\b(?:([Tt]he)\s+)?(\d{1,2})" + _ORD_SUFFIX + r"?\s+(?:of\s+)?(" + _MONTH_ANYCASE
                           + r")(?![\w])(?:(,?)\s*(\d{4})\b)?")
_DIGIT_HYPHEN_RE = re.compile(r"\d(?:st|nd|rd|th)?\s?[-–]\s?\d")  # a cheap test before the rules that need one
# Day ranges in one month: "June 5-7", "June 5th–7th, 2020", "5–7 June", "5th-7th of June 2020".
_DAY_SPAN = r"(?P<a>\d{1,2})" + _ORD_SUFFIX + r"?\s?[-–]\s?(?P<b>\d{1,2})" + _ORD_SUFFIX + r"?"
_MONTH_DAY_RANGE_RE = re.compile(r"\b(?P<month>" + _MONTH_LEAD + r")\s+" + _DAY_SPAN + r"\b(?![/:.]?\d)"
                                 r"(?:(?P<comma>,?)\s+(?P<y>\d{4})\b)?")
_DAY_RANGE_MONTH_RE = re.compile(r"(?<![\w.,-])" + _DAY_SPAN + r"\s+(?:of\s+)?(?P<month>" + _MONTH_ANYCASE
                                 + r")(?![\w])(?:(?P<comma>,?)\s*(?P<y>\d{4})\b)?")
# Years with an era ("340 A.D", "500 BC"), business quarters ("2Q22", "Q3 2021"), "1980 s".
_ERA_RE = re.compile(r"(?<![\w.])(\d{1,4})\s?(A\.?D|B\.?C\.?E|B\.?C|C\.?E|BCE|BC|AD|CE)(\.?)(?![\w])")
_QUARTER_RE = re.compile(r"\b(?:([1-4])Q(\d{2}|\d{4})|Q([1-4])\s(\d{4}))\b")
_SPACED_DECADE_RE = re.compile(r"\b(1\d|20)(\d0) s\b")


def _valid_date(y: int | None, m: int, d: int) -> bool:
    try:
        datetime.date(2000 if y is None else max(y, 1), m, d)  # 2000: a leap year accepts 29 Feb
        return True
    except ValueError:
        return False


def _say_date(y: int | None, m: int, d: int, accent: str, year_digits: int = 4, style: str | None = None) -> str:
    """US "March fourth, twenty twenty-one"; UK "the fourth of March twenty twenty-one"."""
    month = _MONTHS[m - 1]
    style = style or ("month_day" if accent == "us" else "day_of_month")
    if style == "month_day":
        s = f"{month} {'the ' if accent == 'uk' else ''}{ordinal(d, accent)}"
    else:
        s = f"the {ordinal(d, accent)} of {month}"
    if y is not None:
        spoken = year(y, accent) if year_digits == 4 else (digits(f"{y:02d}", "uk") if y < 10 else cardinal(y, accent))
        s += (", " if style == "month_day" else " ") + spoken
    return s


# Times.
_ZONES = ("EST", "EDT", "CST", "CDT", "MST", "MDT", "PST", "PDT", "AKST", "HST", "GMT", "UTC", "BST", "CET", "CEST",
          "EET", "IST", "JST", "AEST", "AEDT", "ET", "PT", "CT", "MT")
_ZONE = (r"(?:[\s.]?(?P<zone>" + "|".join(r"\.?".join(z) for z in sorted(_ZONES, key=len, reverse=True))
         + r"|(?i:e\.s\.t|p\.s\.t|c\.s\.t|est|pst|cst|gmt|utc))\.?(?![\w]))?")
_AMPM = r"(?P<ap>[aApP])\.?\s?(?P<m>[mM])(?P<dot>\.?)(?![a-zA-Z0-9])"
_TIME_RE = re.compile(r"(?<![\w:.])(?P<h>\d{1,2})(?::(?P<min>\d{2})(?::(?P<s>\d{2}))?(?![\d:])(?:\s?" + _AMPM + ")?"
                      r"|\.(?P<dmin>\d{2})\s?" + _AMPM.replace("?P<", "?P<d") + ")" + _ZONE)
_HOUR_AMPM_RE = re.compile(r"(?<![\w:.])(?P<h>\d{1,2})\s?" + _AMPM + _ZONE)
_AMPM_RANGE_RE = re.compile(r"(?<=[AP] M)\.?\s?[-–]\s?(?=[a-z])")


def _ampm_tail(m: re.Match, following: str, prefix: str = "") -> str:
    tail = " A M" if m[prefix + "ap"] in "aA" else " P M"
    if m["zone"]:
        tail += " " + " ".join(m["zone"].replace(".", "").upper())
    # "at 10 a.m. The" - the dot also ends the sentence: keep one.
    elif m[prefix + "dot"] and (not following.strip() or re.match(r"\s+[A-Z\"]", following)):
        tail += "."
    return tail


def _say_clock(h: int, mi: int, accent: str, with_ampm: bool) -> str:
    if mi == 0:
        if with_ampm:
            return cardinal(h, accent)
        if 1 <= h <= 12:
            return cardinal(h, accent) + " o'clock"
        return ("zero" if h == 0 else cardinal(h, accent)) + " hundred"  # 24 h: "fourteen hundred"
    hw = "zero" if h == 0 else cardinal(h, accent)
    mw = ("oh " + cardinal(mi, accent)) if mi < 10 else cardinal(mi, accent)
    return f"{hw} {mw}"


# Money.
_CURRENCY = {  # symbol: (singular, plural, minor singular, minor plural)
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
    "₹": ("rupee", "rupees", "paisa", "paise"),
    "₩": ("won", "won", None, None),
    "US$": ("U S dollar", "U S dollars", "cent", "cents"),
    "A$": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "AU$": ("Australian dollar", "Australian dollars", "cent", "cents"),
    "C$": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "CA$": ("Canadian dollar", "Canadian dollars", "cent", "cents"),
    "NZ$": ("New Zealand dollar", "New Zealand dollars", "cent", "cents"),
    "HK$": ("Hong Kong dollar", "Hong Kong dollars", "cent", "cents"),
    "S$": ("Singapore dollar", "Singapore dollars", "cent", "cents"),
    "USD": ("dollar", "dollars", "cent", "cents"),
    "GBP": ("pound", "pounds", "penny", "pence"),
    "EUR": ("euro", "euros", "cent", "cents"),
}
_SCALES = {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "mn": "million", "b": "billion",
           "B": "billion", "bn": "billion", "tn": "trillion", "thousand": "thousand", "million": "million",
           "billion": "billion", "trillion": "trillion"}
_SCALE_TAIL = (r"(?:(?P<abbr>bn|mn|tn|[kKmMbB])(?![\w])|\s(?P<sabbr>bn|mn|tn|[bB])(?![\w'])"
               r"|\s(?P<word>thousand|million|billion|trillion)\b)?")
_MONEY_RE = re.compile(r"(?P<sign>(?<![\w.])[-−])?(?P<sym>(?<![A-Za-z])(?:US|AU?|CA?|NZ|HK|S)\$|[$£€¥₹₩])\s?"
                       r"(?P<num>" + _NUM + ")" + _SCALE_TAIL)
_MONEY_POST_RE = re.compile(_B + r"(?P<sign>[-−])?(?P<num>" + _NUM + r")" + _SCALE_TAIL + r"\s?(?P<sym>€|USD|GBP|EUR)(?![\w])")
# "50p" (pence) only for one or two digits: "1080p" is a video resolution.
_MONEY_HINT_RE = re.compile(r"[$£€¥₹₩¢]|\dp|USD|EUR|GBP")
_CENTS_RE = re.compile(_B + r"(?:(?P<num>\d+)\s?¢|(?P<pence>\d{1,2})p(?![\w']))")


def _say_money(num: str, sym: str, scale: str | None, neg: bool, accent: str) -> str:
    one, many, minor_one, minor_many = _CURRENCY[sym]
    intpart, _, frac = num.replace(",", "").partition(".")
    if len(frac) > 2 and not frac[2:].strip("0"):  # "$2.000", "$20.500": the extra zeros say nothing
        frac = frac[:2]
        num = intpart + "." + frac
    if scale:
        s = f"{number(num, accent)} {_SCALES[scale]} {many}"
    elif frac and len(frac) <= 2 and minor_one:
        major, minor = int(intpart or 0), int(frac.ljust(2, "0"))
        parts = []
        if major or not minor:
            parts.append(f"{cardinal(major, accent)} {one if major == 1 else many}")
        if minor:
            parts.append(f"{cardinal(minor, accent)} {minor_one if minor == 1 else minor_many}")
        s = " and ".join(parts)
    elif frac:
        s = f"{number(num, accent)} {many}"
    else:
        s = f"{number(num, accent)} {one if int(intpart) == 1 else many}"
    return ("minus " + s) if neg else s


# A unit needs a number right before it and nothing word-like after it ("5 miles" is not "5 mi").
# The number must start its own token: "AH0 L" (a phoneme string) has no quantity, so no unit.
_UNIT_RE = re.compile(r"(?P<num>(?<![A-Za-z])" + _SNUM + r")(?:\s(?P<scale>thousand|million|billion|trillion))?"
                      r"\s?(?P<unit>" + _UNIT_ALT + r")(?![\w^/])")
# "4 1/2 lbs", "3/4 mi": a fraction before a unit.
_FRACTION_UNIT_RE = re.compile(r"(?<![\w/.])(?:(\d+)\s)?(\d+)/(\d+)\s?(" + _UNIT_ALT + r")(?![\w^/])")
# "1234-123kg", "2-5lb": both ends of a range before a unit are quantities, never years.
_UNIT_RANGE_RE = re.compile(r"(?<![\w.,-])(" + _NUM + r")\s?[-–]\s?(" + _NUM + r")\s?(?=(?:" + _UNIT_ALT + r")(?![\w^/]))")
_DIMS_RE = re.compile(_B + r"(" + _NUM + r")\s?[x×]\s?(" + _NUM + r")(?:\s?[x×]\s?(" + _NUM + r"))?"
                      r"(?:\s?(" + _UNIT_ALT + r")(?![\w^/]))?(?![\w]|\.\d)")
# "4.4x faster", "2x": the letter is said ("four point four x"); the sign "3×" is "times".
_TIMES_RE = re.compile(_B + r"(" + _NUM + r")([x×])(?![\w])")

_PERCENT_RE = re.compile(r"(?P<num>" + _SNUM + r")\s?%")
_ORDINAL_RE = re.compile(_B + r"(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th|ST|ND|RD|TH)\b")
_DECADE_RE = re.compile(r"(?<![\w.])(?:'(\d0)|(\d{2})?(\d0))'?s\b")
# "1624 - 1713" (spaced, as in tokenized or typed text) is the same range as "1624-1713".
_RANGE_RE = re.compile(r"(?<=[\d%])(?:-| - |\s?–\s?)(?=[$£€]?\.?\d)")
_CHAIN_LEFT_RE = re.compile(r"[\w.]-[\d.,]*$")
_CHAIN_RIGHT_RE = re.compile(r"[$£€]?[\d.,]*\d%?-[\w$]")
_DECADE_RANGE_RE = re.compile(r"(?<=\d0s)\s?[-–]\s?(?=(?:\d\d)?\d0s\b)")
_MINUS_RE = re.compile(r"(?<=\d)\s?-\s?(?=\d)")


def _range(m: re.Match) -> str:
    s = m.string
    start = m.start()
    while start > 0 and (s[start - 1].isdigit() or s[start - 1] in ".,%"):
        start -= 1
    if _CHAIN_LEFT_RE.search(s[max(0, start - 2):m.start()]) or _CHAIN_RIGHT_RE.match(s, m.end()):
        return m[0]  # a part of a serial or code, not a range
    left, right = s[start:m.start()], _RANGE_END_RE.match(s, m.end())
    if left.isdigit() and right and len(right[0]) - len(left) >= 3 and int(right[0]) % 100:
        # "1-8090": a short group before a long one that is not a round bound is a code, not a
        # range ("1-1000", "5-10000" stay ranges); the hyphen is a pause.
        return " "
    if (left.isdigit() and right and int(right[0]) < int(left) and len(left) - len(right[0]) >= 2
            and not (len(left) == 4 and len(right[0]) == 2)):
        # "978-0": a range goes up; a falling pair two or more digits shorter on the right is a
        # code (ISBN parts), its hyphen unread. Scores ("won 21-14", "102-98"), abbreviated ends
        # ("2019-20") and clock hours ("open 10-6") stay "to".
        return " "
    return " to "


_RANGE_END_RE = re.compile(r"\d+(?![\d.,%])")
_SPECIAL_SLASH = {"24/7": "twenty-four seven", "9/11": "nine eleven", "50/50": "fifty-fifty", "365/24/7": "three sixty-five twenty-four seven"}
_SPECIAL_SLASH_RE = re.compile(r"(?<![\w/])(" + "|".join(re.escape(k) for k in sorted(_SPECIAL_SLASH, key=len, reverse=True)) + r")(?![\w/])")
_MIXED_FRACTION_RE = re.compile(_B + r"(\d+)\s(\d+)/(\d+)(?![\w/]|\.\d)")
_FRACTION_SUFFIX_RE = re.compile(r"(?<![\w/.])(\d+)/(\d+)(?:st|nd|rd|th|ST|ND|RD|TH)\b")
_INCH_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\"")
_TIMES_SIGN_RE = re.compile(r"(?<=\d)\s?\*\s?(?=\d)")
# A star that is a word of its own ("press * to confirm") or a key before digits ("dial *69");
# elsewhere (emphasis, footnote marks, bullets) it has no reading.
_STAR_RE = re.compile(r"(?<=\w )\*(?= \w)|(?<![\w*])\*(?=\d)")
# A Greek letter on its own (not inside a Greek word) is said by its name: "Δ (x)", "α-helix", "Δx".
_GREEK_RE = re.compile(r"(?<![\u0370-\u03ff])([\u0391-\u03a1\u03a3-\u03a9\u03b1-\u03c9])(?![\u0370-\u03ff])")
# Scientific notation keeps its exponent's sign: "1.2e-5" -> "one point two times ten to the minus five".
_SCI_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([-+−]?)(\d{1,3})(?![\w.])")
_SCI_KILO_HINT_RE = re.compile(r"\d[eEk]")  # a cheap test before the two rules
# "5k", "10k steps": a lower-case k glued to a number is "thousand" ("5K run" stays "five K").
_KILO_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)k(?![\w])")
_RATIO_RE = re.compile(r"(?<![\w:.])(\d+):(\d)(?![\d:])")
_FRACTION_RE = re.compile(r"(?<![\w/.])(\d+)/(\d+)(?![\w/]|\.\d)")
_NUMBER_SIGN_RE = re.compile(r"#\s?(?=\d)")


def _fraction(a: int, b: int, accent: str, mixed: bool = False) -> str:
    if b in (0, 1):
        return f"{cardinal(a, accent)} over {cardinal(b, accent)}"
    if b == 2:
        denom = "half" if a == 1 else "halves"
    elif b == 4:
        denom = "quarter" if a == 1 else "quarters"
    else:
        o = ordinal(b, accent)
        denom = o if a == 1 else _plural(o)
    return f"{'a' if (mixed and a == 1) else cardinal(a, accent)} {denom}"


_MONTH_ABBR_RE = re.compile(r"\b(" + "|".join(sorted(list(_MONTH_ABBR) + [a.upper() for a in _MONTH_ABBR], key=len,
                                                     reverse=True)) + r")\.(?!\w)")


# Acronyms: read as a word (NASA) or spelled (FBI). Unknown all-caps words without a
# vowel are spelled (BBC, HTML); other unknown all-caps words stay (emphasis: "STOP").
READ_ACRONYMS = frozenset(
    "NASA NATO UNESCO UNICEF OPEC FIFA UEFA NAFTA LASER RADAR SCUBA AIDS GIF JPEG PIN SIM RAM ROM LAN WAN "
    "CAPTCHA COVID IKEA ASAP YOLO FOMO POTUS SCOTUS FLOTUS NIMBY AWOL SWAT DARPA ISIS UNIX LIDAR SONAR "
    "MIDI GIS CERN OFCOM OFSTED NICE BAFTA SARS MERS TESOL IELTS TOEFL ANZAC".split())
SPELL_ACRONYMS = frozenset(
    "FBI CIA CEO CFO CTO USA UK EU UN UAE AI API URL USB GPU CPU UI UX IBM ATM UFO ICU IQ IRS EPA FDA DOJ "
    "DOE NIH MIT UCLA NYU USC NBA NFL NHL IRA IOU HIV ETA EST EDT PST PDT UTC ID OS AWS IMF VIP AKA FAQ EV "
    "OBE MBE ISBN ETF IPO ESPN HBO ABC NBC CBS EA AOL NY NYC LA DC AC BA MA MBA FYI DIY BYOB IOC "
    "OECD WHO UEA UCL SUV TBA CEOS AA OED NHS".split()) - {"WHO"}  # WHO is too often the shouted pronoun
_ACRONYM_RE = re.compile(r"\b([A-Z]{2,})(s?)\b")
_US_RE = re.compile(r"\b([Tt]he)\s+US\b")
_OK_RE = re.compile(r"\bOK\b")


def _say_acronym(m: re.Match) -> str:
    word, plural = m[1], m[2]
    if word in READ_ACRONYMS:
        return m[0]
    if word in SPELL_ACRONYMS or not re.search(r"[AEIOUY]", word):
        return " ".join(word) + plural
    return m[0]


# Generic numbers and leftovers.
_WORD_DIGIT_HYPHEN_RE = re.compile(r"(?<=[A-Za-z])-(?=\d)")
# Three or four digits glued after letters are a model number or code ("A321", "RTX4090").
_CODE_NUMBER_RE = re.compile(r"(?<=[A-Za-z])(\d{3,4})(?![\d.,])")
_ALNUM_SPLIT_RE = re.compile(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_DOTTED_NUMBER_RE = re.compile(r"(?<!\d)\d+(?:\.\d+){2,}")  # starts a digit run: linear on long runs
_NEG_RE = re.compile(r"(?<![\w.,)\]])-(?=\.?\d)")
_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|(?<!\.)\.\d+")
_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "×": " times ", "÷": " divided by ",
            "°": " degrees ", "º": " degrees ", "~": " about ", "<": " less than ", ">": " greater than ",
            "^": " to the power of ", "\\": " backslash ", "$": " dollar ", "£": " pound ", "€": " euro ", "₩": " won ",
            "¥": " yen ", "₹": " rupee ", "¢": " cent ", "*": " ", "_": " ", "#": " hash ", "§": " section ",
            "¶": " paragraph ", "©": " copyright ", "®": " registered ", "™": " trademark ", "%": " percent "}
_ETC_RE = re.compile(r"&c\.")
_WORLD_WAR_RE = re.compile(r"\bWW ?(II|I|1|2)\b")
_PLAN_RE = re.compile(r"\b(\d)0(\d)\s?\(([a-z])\)")  # retirement plans: "401(k)", "403(b)"
_W_SLASH_RE = re.compile(r"\b([wW])/(o\b)?(?=\s|$)")  # "w/" with, "w/o" without
_SLASH_WORDS_RE = re.compile(r"\b[aA]nd/or\b|(?<=[A-Za-z])\s*/\s*(?=[A-Za-z])")  # "his/her" -> "his or her"
_SYMBOL_RE = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")
_SPACE_RE = re.compile(r"[ \t\r\f\v]+")
_SPACE_BEFORE_STOP_RE = re.compile(r"(?<=\w) +(?=[.,;:!?](?:\s|$))")
_SPACE_BEFORE_PUNCT_RE = re.compile(r" +([,.;:!?)\]])")
_SPACE_AFTER_OPEN_RE = re.compile(r"([(\[]) +")
_PARAGRAPH_RE = re.compile(r"(?<!\s)\s*\n\s*\n\s*")  # from the start of a whitespace run: linear


def _check(accent: str, date_order: str | None) -> str:
    if accent not in ACCENTS:
        raise ValueError(f"accent must be one of {ACCENTS}, got {accent!r}")
    order = date_order or DEFAULT_DATE_ORDER[accent]
    if order not in DATE_ORDERS:
        raise ValueError(f"date_order must be one of {DATE_ORDERS} or None (default by accent), got {date_order!r}")
    return order


def normalize_plain(text: str, accent: str = "us", date_order: str | None = None) -> str:
    """Normalize text that holds no inline tags (see :func:`helpers.text.normalize`)."""
    order = _check(accent, date_order)
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    t = _unicode(strip_unspeakable(text))
    if " ." in t or " ," in t or " ;" in t or " :" in t or " !" in t or " ?" in t:
        # "Ltd ." / "etc ." (tokenized text): the space goes now, not only at the end, or the
        # abbreviation is seen with its period only on a second pass (not idempotent).
        t = _SPACE_BEFORE_STOP_RE.sub("", t)
    if "<" in t:
        t = _MARKUP_RE.sub(" ", t)
    # Non-tag square brackets ("[1]") become parentheses so a second pass cannot
    # mistake normalized words ("[one]") for an inline tag.
    if "[" in t:
        t = _BRACKET_RE.sub(r"(\1)", t)
    t = t.replace("[", "(").replace("]", ")")

    # Each rule runs only when a cheap test says it can match (several times faster on prose).
    if "@" in t:
        t = _EMAIL_RE.sub(lambda m: _read_url(m[0], accent), t)
    if ("." in t or ":" in t) and _URL_HINT_RE.search(t):
        t = _URL_RE.sub(lambda m: _read_url(m[0], accent), t)

    if "#" in t:
        t = HASHTAG_RE.sub(lambda m: "hashtag " + tag_words(m[1]), t)
    if "@" in t:
        t = MENTION_RE.sub(lambda m: "at " + tag_words(m[1]), t)
    has_digit = any(c.isdigit() for c in t)
    if has_digit:
        if "IS" in t:
            t = ISBN_RE.sub(lambda m: read_isbn(m, accent), t)
        if sum(c.isdigit() for c in t) >= 7:
            t = _PHONE_RE.sub(lambda m: _read_phone(m[0], accent), t)
            t = _PHONE_CUE_RE.sub(lambda m: m[1] + _read_phone(m[2], accent), t)
        if t.count(".") >= 3:
            t = _IP_RE.sub(lambda m: read_ip(m, accent), t)
        if "/" in t and sum(c.isdigit() for c in t) >= 5:
            t = SLASH_CODE_RE.sub(lambda m: read_slash_code(m[0], accent), t)
        if "-" in t and _DIGIT_HYPHEN_RE.search(t):
            t = HYPHEN_CODE_CUE_RE.sub(lambda m: read_hyphen_code(m, accent), t)
        if _CODE_CUE_RE.search(t):
            t = _CODE_CUE_RE.sub(lambda m: f"{m[1]}{m[2]} {digits(m[3], accent)}", t)
        t = addresses(t, accent)
        t = state_codes(t, accent)
        if "(" in t:
            t = _PLAN_RE.sub(lambda m: f"{cardinal(int(m[1]))} oh {cardinal(int(m[2]))} {m[3].upper()}", t)
        t = _dates(t, accent, order)
        if ":" in t or "." in t:
            t = _TIME_RE.sub(lambda m: _time(m, accent), t)
        t = _HOUR_AMPM_RE.sub(lambda m: _hour_ampm(m, accent), t)
        if " M" in t:
            t = _AMPM_RANGE_RE.sub(" to ", t)
        if "-" in t or "–" in t:
            if "=" in t:  # "1-2=5": arithmetic
                t = _MINUS_RE.sub(" minus ", t)
            if "s" in t:
                t = _DECADE_RANGE_RE.sub(" to ", t)
            t = _UNIT_RANGE_RE.sub(lambda m: f"{number(m[1], accent)} to {m[2]} ", t)
            t = _RANGE_RE.sub(_range, t)
        if "/" in t:
            t = _PER_RE.sub(lambda m: _per(m, accent), t)
        if _MONEY_HINT_RE.search(t):
            t = _MONEY_RE.sub(lambda m: _money_match(m, accent), t)
            t = _MONEY_POST_RE.sub(lambda m: _money_match(m, accent), t)
            t = _CENTS_RE.sub(lambda m: _cents(m, accent), t)
        if "%" in t:
            t = _PERCENT_RE.sub(lambda m: number(m["num"], accent) + (" percent" if accent == "us" else " per cent"), t)
        if _SCI_KILO_HINT_RE.search(t):
            t = _SCI_RE.sub(lambda m: f"{number(m[1], accent)} times ten to the "
                                      f"{'minus ' if m[2] in '-−' and m[2] else ''}{cardinal(int(m[3]), accent)}", t)
            t = _KILO_RE.sub(lambda m: number(m[1], accent) + " thousand", t)
        if "x" in t or "×" in t:
            t = _DIMS_RE.sub(lambda m: " by ".join(number(g, accent) for g in m.groups()[:3] if g)
                             + (" " + _unit_name(m[4], False, accent) if m[4] else ""), t)
            t = _TIMES_RE.sub(lambda m: number(m[1], accent) + (" x" if m[2] == "x" else " times"), t)
        if "/" in t:
            t = _FRACTION_UNIT_RE.sub(lambda m: _fraction_unit(m, accent), t)
        t = _UNIT_RE.sub(lambda m: _unit(m, accent), t)
        if "s" in t:
            t = _DECADE_RE.sub(lambda m: _decade(m, accent), t)
        if "/" in t:
            t = _FRACTION_SUFFIX_RE.sub(lambda m: _fraction(int(m[1]), int(m[2]), accent), t)
        t = _ORDINAL_RE.sub(lambda m: _ordinal(m, accent), t)
        if "/" in t:
            t = _SPECIAL_SLASH_RE.sub(lambda m: _SPECIAL_SLASH[m[1]], t)
            t = _MIXED_FRACTION_RE.sub(lambda m: f"{cardinal(int(m[1]), accent)} and "
                                                 f"{_fraction(int(m[2]), int(m[3]), accent, mixed=True)}", t)
            t = _FRACTION_RE.sub(lambda m: _fraction(int(m[1]), int(m[2]), accent), t)
        if "#" in t:
            t = _NUMBER_SIGN_RE.sub("number ", t)
        if '"' in t and t.count('"') % 2:  # 12" with no closing quote: inches
            t = _INCH_RE.sub(lambda m: m[1] + (" inch" if _is_one(m[1]) else " inches"), t)
        if "*" in t:
            t = _TIMES_SIGN_RE.sub(" times ", t)
        if ":" in t:
            t = _RATIO_RE.sub(r"\1 to \2", t)
        # Letters glued to digits are separate words ("MP3", "B2B"); split before the
        # word rules so they see the same word boundaries on every pass.
        t = _CODE_NUMBER_RE.sub(lambda m: " " + code_number(m[1], accent) + " ", t)
        t = _WORD_DIGIT_HYPHEN_RE.sub(" ", t)
        t = _ALNUM_SPLIT_RE.sub(" ", t)

    # Symbols become words before the word rules so every pass sees the same words.
    t = _W_SLASH_RE.sub(lambda m: case_like(m[1], "without" if m[2] else "with"), t)
    t = _SLASH_WORDS_RE.sub(_slash_words, t)
    if "&c" in t:
        t = _ETC_RE.sub(lambda m: "et cetera" + keep_stop(after(m)), t)
    if "*" in t:
        t = _STAR_RE.sub(" star ", t)
    if not t.isascii():
        t = _GREEK_RE.sub(_greek, t)
    t = _SYMBOL_RE.sub(lambda m: " per cent " if (m[0] == "%" and accent == "uk") else _SYMBOLS[m[0]], t)
    if " ." in t:  # a removed symbol before a stop ("SEPT *.") leaves "SEPT ." - join it as a second pass would
        t = _SPACE_BEFORE_STOP_RE.sub("", t)

    if not has_digit:
        t = state_codes(t, accent)
    # After the digit rules, so that letters split from digits ("56dr X" -> "56 dr X") are
    # seen the same on every pass (idempotence); the rest of the informal forms run last.
    t = informal_numbered(t)
    t = abbreviations(t, accent)
    if "." in t:
        t = _MONTH_ABBR_RE.sub(lambda m: _MONTHS[_month_number(m[1]) - 1] + keep_stop(after(m)), t)
    if "WW" in t:
        t = _WORLD_WAR_RE.sub(lambda m: "World War " + cardinal(2 if m[1] in ("II", "2") else 1), t)
    t = roman_numerals(t, accent)

    t = _OK_RE.sub("okay", t)
    t = _US_RE.sub(r"\1 U S", t)
    t = _ACRONYM_RE.sub(_say_acronym, t)

    if has_digit:
        t = _DOTTED_NUMBER_RE.sub(lambda m: " dot ".join(number(p, accent) for p in m[0].split(".")), t)
        t = _NEG_RE.sub("minus ", t)
        t = _NUMBER_RE.sub(lambda m: _bare_number(m, accent), t)

    if "/" in t:
        # Slashes no rule claimed ("1/1/0", "5/a"): the numbers around them are words
        # only now, so decide here, once: between words "or", elsewhere "slash".
        t = t.replace("/", " slash ")
    t = informal(_tidy_space(t))  # on tidy text: one space between words, as a second pass sees it
    if "." in t:  # last, so that words made from numbers ("0.the" -> "zero.the") get the same reading
        t = _BARE_DOMAIN_RE.sub(_bare_domain, t)
    return t


def _greek(m: re.Match) -> str:
    s, i, j = m.string, m.start(), m.end()
    name = unicodedata.name(m[1]).split()[-1].lower()  # "GREEK CAPITAL LETTER DELTA" -> "delta"
    return (" " if i and s[i - 1].isalnum() else "") + name + (" " if j < len(s) and s[j].isalnum() else "")


def _bare_domain(m: re.Match) -> str:
    name, _, ext = m[0].rpartition(".")
    return name.replace(".", " dot ") + " dot " + EXTENSIONS.get(ext, ext)


def _slash_words(m: re.Match) -> str:
    return case_like(m[0][0], "and or") if m[0][0] in "aA" else " or "


def _tidy_space(t: str) -> str:
    paragraphs = _PARAGRAPH_RE.split(t)
    out = []
    for p in paragraphs:
        p = _SPACE_RE.sub(" ", p.replace("\n", " ")).strip()
        p = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", p)
        p = _SPACE_AFTER_OPEN_RE.sub(r"\1", p)
        if p:
            out.append(p)
    return "\n\n".join(out)


def _dates(t: str, accent: str, order: str) -> str:
    def iso(m):
        # Year first is a date layout nothing else uses: read it as written whenever the month
        # and day are in range, even a day the month lacks ("1998/2/30": February thirtieth).
        y, mo, d = int(m[1]), int(m[3]), int(m[4])
        return _say_date(y, mo, d, accent) if 1 <= mo <= 12 and 1 <= d <= 31 else m[0]

    def numeric(m):
        a, b, ys = int(m[1]), int(m[3]), m[4]
        y = int(ys)
        first = (a, b) if order == "mdy" else (b, a)  # (month, day)
        for mo, d in (first, first[::-1]):  # the other order only when the given one is impossible
            if _valid_date(y if len(ys) == 4 else None, mo, d):
                return _say_date(y, mo, d, accent, year_digits=len(ys))
        return m[0]

    def short(m):
        a, b = int(m[3]), int(m[4])
        first = (a, b) if order == "mdy" else (b, a)
        for mo, d in (first, first[::-1]):
            if _valid_date(None, mo, d):
                return f"{m[1]}{m[2]}{_say_date(None, mo, d, accent)}"
        return m[0]

    def month_day(m):
        mo, d = _month_number(m[1]), int(m[2])
        if not _valid_date(None, mo, d):
            return m[0]
        y = int(m[4]) if m[4] else None
        s = _say_date(None, mo, d, accent, style="month_day")
        if y is not None:
            s += (", " if (m[3] or accent == "us") else " ") + year(y, accent)
        return s

    def day_month(m):
        d, mo = int(m[2]), _month_number(m[3])
        if not _valid_date(None, mo, d):
            return m[0]
        s = _say_date(None, mo, d, accent, style="day_of_month")
        if m[1]:  # "The 5th of November": the article is already written
            s = m[1] + s[3:]
        if m[5]:
            s += (", " if m[4] else " ") + year(int(m[5]), accent)
        return s

    if "-" in t or "/" in t or "." in t:
        t = _ISO_DATE_RE.sub(iso, t)
        if "." in t:
            t = _ERA_RE.sub(lambda m: f"{year(int(m[1]), accent)} {' '.join(m[2].replace('.', ''))}"
                                      f"{keep_stop(after(m)) if m[3] else ''}", t)
        t = _NUM_DATE_RE.sub(numeric, t)
        if "/" in t:
            t = _WEEKDAY_DATE_RE.sub(lambda m: _WEEKDAYS[m[1]], t)
            t = _SHORT_DATE_RE.sub(short, t)
    def day_range(m, month_first):
        # "June 5-7" / "5-7 June": two days of one month, read as two ordinals joined by "to"
        mo, a, b = _month_number(m["month"]), int(m["a"]), int(m["b"])
        if not (1 <= a < b <= 31 and _valid_date(None, mo, b)):
            return m[0]
        month = _MONTHS[mo - 1]
        if month_first:
            the = "the " if accent == "uk" else ""
            s = f"{month} {the}{ordinal(a, accent)} to {the}{ordinal(b, accent)}"
        else:
            s = f"the {ordinal(a, accent)} to the {ordinal(b, accent)} of {month}"
        if m["y"]:
            s += (", " if (month_first and (m["comma"] or accent == "us")) else " ") + year(int(m["y"]), accent)
        return s

    if _MONTH_HINT_RE.search(t):
        if ("-" in t or "–" in t) and _DIGIT_HYPHEN_RE.search(t):
            t = _MONTH_DAY_RANGE_RE.sub(lambda m: day_range(m, True), t)
            t = _DAY_RANGE_MONTH_RE.sub(lambda m: day_range(m, False), t)
        t = _MONTH_DAY_RE.sub(month_day, t)
        t = _MONTH_ABBR_YEAR_RE.sub(lambda m: _MONTHS[_month_number(m[1]) - 1], t)
        t = _DAY_MONTH_RE.sub(day_month, t)
    if "Q" in t:
        t = _QUARTER_RE.sub(lambda m: f"the {ordinal(int(m[1] or m[3]), accent)} quarter of "
                                      + (cardinal(int(m[2]), accent) if m[2] and len(m[2]) == 2
                                         else year(int(m[2] or m[4]), accent)), t)
    if "AD" in t or "BC" in t or "CE" in t:
        t = _ERA_RE.sub(lambda m: f"{year(int(m[1]), accent)} {' '.join(m[2].replace('.', ''))}", t)
    if " s" in t:
        t = _SPACED_DECADE_RE.sub(r"\1\2s", t)
    return t


def _time(m: re.Match, accent: str) -> str:
    if m["dmin"] is not None:  # "1.59 p.m."
        h, mi = int(m["h"]), int(m["dmin"])
        if mi > 59 or not 0 <= h <= 12:
            return m[0]
        return _say_clock(h or 12, mi, accent, True) + _ampm_tail(m, after(m), "d")
    if m["min"] is None:
        return m[0]
    h, mi = int(m["h"]), int(m["min"])
    ampm = m["ap"] is not None
    if mi > 59 or h > 23 or (ampm and not 0 <= h <= 12) or (m["s"] and int(m["s"]) > 59):
        return m[0]  # not a clock time; the generic rules read the numbers
    if ampm and h == 0:
        h = 12  # "00:05am" is five past midnight
    s = _say_clock(h, mi, accent, ampm)
    if m["s"] and int(m["s"]):
        sec = int(m["s"])
        s += f" and {cardinal(sec, accent)} second{'' if sec == 1 else 's'}"
    if ampm:
        s += _ampm_tail(m, after(m))
    elif m["zone"]:
        s += " " + " ".join(m["zone"].replace(".", "").upper())
    return s


def _hour_ampm(m: re.Match, accent: str) -> str:
    h = int(m["h"])
    if not 0 <= h <= 12:
        return m[0]
    return cardinal(h or 12, accent) + _ampm_tail(m, after(m))


def _money_match(m: re.Match, accent: str) -> str:
    scale = m["abbr"] or m["sabbr"] or m["word"]
    return _say_money(m["num"], m["sym"], scale, bool(m["sign"]), accent)


def _cents(m: re.Match, accent: str) -> str:
    n = int(m["num"] or m["pence"])
    if m["pence"]:
        return f"{cardinal(n, accent)} {'penny' if n == 1 else 'pence'}"
    return f"{cardinal(n, accent)} {'cent' if n == 1 else 'cents'}"


def _unit(m: re.Match, accent: str) -> str:
    one = _is_one(m["num"]) and not m["scale"]
    scale = f" {m['scale']}" if m["scale"] else ""
    return f"{number(m['num'], accent)}{scale} {_unit_name(m['unit'], one, accent)}"


def _fraction_unit(m: re.Match, accent: str) -> str:
    a, b = int(m[2]), int(m[3])
    if m[1]:  # "four and a half pounds"
        return (f"{cardinal(int(m[1]), accent)} and {_fraction(a, b, accent, mixed=True)} "
                f"{_unit_name(m[4], False, accent)}")
    if a < b:  # "three quarters of a mile"
        return f"{_fraction(a, b, accent)} of a {_unit_name(m[4], True, accent)}"
    return f"{_fraction(a, b, accent)} {_unit_name(m[4], False, accent)}"


def _ordinal(m: re.Match, accent: str) -> str:
    n = int(m[1].replace(",", ""))
    suffix = m[0][len(m[1]):].lower()
    right = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    if suffix != right or (len(m[1]) > 1 and m[1][0] == "0"):
        # "12nd", "111st", "000th": a typo or a code, not an ordinal - say what is written,
        # from three digits (or a leading zero) on digit by digit as codes are read
        if len(m[1]) > 2 or m[1][0] == "0":
            return f"{digits(m[1].replace(',', ''), accent)} {suffix}"
        return f"{number(m[1], accent)} {suffix}"
    return ordinal(n, accent)


def _decade(m: re.Match, accent: str) -> str:
    if m[1]:  # '90s
        return _plural(cardinal(int(m[1]), accent))
    if not m[2] and m[0].endswith("'s"):  # "80's": the number's plural/possessive, said the same as "eighties"
        return cardinal(int(m[3]), accent) + "'s"
    if m[2]:  # 1990s
        return _plural(year(int(m[2] + m[3]), accent))
    return _plural(cardinal(int(m[3]), accent))  # 90s


_COUNT_AFTER_RE = re.compile(r"\s+(?:more |new |other |extra |additional |of )?([a-z]{3,})\b")
_COUNT_BEFORE_RE = re.compile(r"\b(?:than|about|around|over|under|approximately|nearly|almost|exactly|some|only|"
                              r"just|total of|bought|sold|had|has|have|with|the first|the last|all)\s+$")
_YEAR_BEFORE_RE = re.compile(r"\b(?:[Ii]n|[Ss]ince|[Bb]y|of|[Ff]rom|[Uu]ntil|till|[Tt]he|year|circa|[Dd]uring|[Bb]efore|"
                             r"[Aa]fter|to|and|or|early|late|mid|spring|summer|autumn|fall|winter)[\s-]+$")
_NOT_NOUNS = frozenset("was is has its this thus as us his hers yes plus minus versus always perhaps less unless "
                       "whereas besides afterwards towards across upon onwards".split())


def _is_count(m: re.Match) -> bool:
    """A four-digit number is a count, not a year, before a plural noun ("1035 cans") or
    after a quantity word ("over 1500")."""
    before = m.string[max(0, m.start() - 12):m.start()]
    if _YEAR_BEFORE_RE.search(before):
        return False
    nxt = _COUNT_AFTER_RE.match(m.string, m.end())
    if nxt and nxt[1].endswith("s") and not nxt[1].endswith("ss") and nxt[1] not in _NOT_NOUNS:
        return True
    return _COUNT_BEFORE_RE.search(m.string[max(0, m.start() - 20):m.start()]) is not None


def _bare_number(m: re.Match, accent: str) -> str:
    s = m[0]
    if len(s) == 4 and s.isdigit() and s[0] != "0" and 1000 <= int(s) <= 2099 and not _is_count(m):
        return year(int(s), accent)  # a bare four-digit number in this range is nearly always a year
    # ".2" right after letters ("ch.2", "i.245"): a word of its own, not glued ("chpoint two")
    glued = s[0] == "." and m.start() and m.string[m.start() - 1].isalpha()
    return (" " if glued else "") + number(s, accent)
