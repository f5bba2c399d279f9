"""Number words for the text frontend: cardinals, ordinals, years, digit strings.

Spelling comes from num2words (British "and", commas between groups); :func:`_tidy`
turns it into the accent's form (US drops the "and") without commas.
"""
from __future__ import annotations

from functools import lru_cache

from num2words import num2words

ACCENTS = ("us", "uk")

# --------------------------------------------------------------------------- number words
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_WORDS_UK_PHONE = ("oh",) + _DIGIT_WORDS[1:]
_DIGIT_WORDS_UK_DECIMAL = ("nought",) + _DIGIT_WORDS[1:]
_MAX_CARDINAL_DIGITS = 15  # longer digit strings are IDs (card numbers...): read digit by digit


def _tidy(words: str, accent: str) -> str:
    """num2words' British output -> the accent's form, without commas."""
    words = words.replace(",", "")
    if accent == "us":
        words = words.replace(" and ", " ")
    return words


@lru_cache(maxsize=32768)
def cardinal(n: int, accent: str = "us") -> str:
    """``cardinal(105, "uk") == "one hundred and five"``; negative numbers say "minus"."""
    if n < 0:
        return "minus " + cardinal(-n, accent)
    return _tidy(num2words(n, lang="en"), accent)


@lru_cache(maxsize=8192)
def ordinal(n: int, accent: str = "us") -> str:
    """``ordinal(21) == "twenty-first"``."""
    return _tidy(num2words(n, lang="en", to="ordinal"), accent)


@lru_cache(maxsize=8192)
def year(n: int, accent: str = "us") -> str:
    """``year(1999) == "nineteen ninety-nine"``, ``year(2005, "us") == "two thousand five"``."""
    return _tidy(num2words(n, lang="en", to="year"), accent).replace("oh-", "oh ")


def digits(s: str, accent: str = "us", style: str = "phone") -> str:
    """Digit-by-digit reading of a string of ASCII digits ("phone": UK says "oh")."""
    if accent == "uk":
        table = _DIGIT_WORDS_UK_PHONE if style == "phone" else _DIGIT_WORDS_UK_DECIMAL
    else:
        table = _DIGIT_WORDS
    return " ".join(table[ord(c) - 48] for c in s)


def code_number(s: str, accent: str = "us") -> str:
    """A number inside a model name or code ("A321", "RTX4090") is read in pairs the way
    people say them: "three twenty-one", "forty ninety"; "X100" "one hundred", "4000"
    "four thousand"; a leading zero digit by digit."""
    if s[0] == "0":
        return digits(s, accent)
    if len(s) == 4 and s[1:] == "000":
        return cardinal(int(s), accent)
    head, pair = s[:-2], s[-2:]
    if pair == "00":
        return cardinal(int(head), accent) + " hundred" if len(s) == 4 else cardinal(int(s), accent)
    return f"{cardinal(int(head), accent)} {digits(pair, accent) if pair[0] == '0' else cardinal(int(pair), accent)}"


def _plural(words: str) -> str:
    """"nineteen ninety" -> "nineteen nineties" (for decades and fractions)."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):  # "six" -> "sixes"
        return words + "es"
    return words + "s"


def number(text: str, accent: str = "us") -> str:
    """Speak a written number: ``"-1,234.50"``, ``".5"``, ``"007"``, ``"3.14"``."""
    neg = text[:1] in "-−"
    body = text.lstrip("-−+")
    intpart, _, frac = body.partition(".")
    grouped = "," in intpart  # "124,444,234,854,823,834,553": grouping says it is a quantity
    intpart = intpart.replace(",", "")
    if grouped and not frac and accent == "us" and len(intpart) == 4 and intpart[2:] == "00" and intpart[1] != "0":
        # US "2,500" -> "twenty-five hundred" (round hundreds from 1,100 to 9,900, not whole thousands)
        words = cardinal(int(intpart[:2]), accent) + " hundred"
        return ("minus " + words) if neg else words
    if not frac and ((len(intpart) > _MAX_CARDINAL_DIGITS and not grouped) or (len(intpart) > 1 and intpart[0] == "0")):
        words = digits(intpart, accent)
    else:
        words = ""
        if intpart:
            value = int(intpart)
            words = _DIGIT_WORDS_UK_DECIMAL[0] if (value == 0 and frac and accent == "uk") else cardinal(value, accent)
        if frac:
            words = (words + " " if words else "") + "point " + digits(frac, accent, "decimal")
    return ("minus " + words) if neg else words


def _is_one(num_text: str) -> bool:
    return num_text.lstrip("+-−") == "1"
