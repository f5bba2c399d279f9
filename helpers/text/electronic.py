"""Electronic text and digit strings: URLs, e-mail addresses, file paths, phone numbers,
SSN-like serials, IPv4 addresses and codes after a cue ("card ending in 8876").

Addresses are read the way people dictate them ("example dot com slash docs"). A
scheme is read ("H T T P S colon slash slash developer dot ...", "file colon slash
slash slash") except an http(s) scheme before "www.", which already says the address
is a web page ("https://www.example.com" -> "W W W dot example dot com"). File
extensions with a spoken name are read by it ("image.jpg" -> "image dot jpeg");
digit strings digit by digit with a comma (a pause) between the written groups.
"""
from __future__ import annotations

import re

from .numbers import digits

# URLs and e-mail addresses: read the way people dictate them ("example dot com slash docs").
_EMAIL_RE = re.compile(r"(?<![\w.])[A-Za-z0-9][\w.+&-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s<>\"]*)?")
_URL_RE = re.compile(r"\b(?:https?://|ftp://|file:///?|www\.)[^\s<>\"]+"
                     r"|\b(?:localhost|[a-z][\w-]*(?:\.[a-z][\w-]*)+):\d{2,5}\b(?:/[^\s<>\"]*)?|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                     r"\.(?:com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|dev|app)\b(?:/[^\s<>\"]*)?")
_URL_SYMBOLS = {".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ", "@": " at ", ":": " colon ",
                "?": " question mark ", "=": " equals ", "&": " ampersand ", "#": " hash ", "+": " plus ", "~": " tilde ",
                "%": " percent "}
_URL_HINT_RE = re.compile(r":/|www\.|localhost|[a-z]:\d|\.(?:com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|dev|app)\b")
_URL_TOKEN_RE = re.compile(r"\d+|[A-Za-z]+|.")
_SPELLED = frozenset(("www", "http", "https", "ftp"))
# Extensions said by another name than their letters.
EXTENSIONS = {"jpg": "jpeg"}
_WWW_SCHEME_RE = re.compile(r"^(?:https?|ftp)://(?=www\.)", re.I)
# "test.abc", "readme.md": a lower-case name and extension with no space is read as written.
_BARE_DOMAIN_RE = re.compile(r"(?<![\w.@/'])[a-z][a-z0-9-]*[a-z0-9]\.[a-z]{2,6}(?![\w.]|\.\w)")
# Digits after these cues are a code, read digit by digit ("card ending in 8876", "your PIN is 4921").
_CODE_CUE_RE = re.compile(r"\b((?:ending|ends) (?:in|with)|(?:PIN|pin|OTP|otp|passcode|code)(?: is|:)?)"
                          r"(\s+[A-Za-z]{0,3})(\d{3,})\b")


def _read_url(s: str, accent: str) -> str:
    trail = ""
    while s and s[-1] in ".,;:!?)":  # sentence punctuation after the address is not part of it
        trail = s[-1] + trail
        s = s[:-1]
    s = _WWW_SCHEME_RE.sub("", s)
    if s.endswith("/"):
        s = s[:-1]
    out = []
    prev = ""
    for tok in _URL_TOKEN_RE.findall(s):
        if tok.isdigit():
            out.append(digits(tok, accent))
        elif tok.isalpha():
            low = tok.lower()
            if low in _SPELLED:
                out.append(" ".join(tok.upper()))
            else:
                out.append(EXTENSIONS.get(low, tok) if prev == "." else tok)
        else:
            out.append(_URL_SYMBOLS.get(tok, " "))
        prev = tok
    return re.sub(r"\s+", " ", " ".join(out)).strip() + trail


# Phone numbers: digit by digit, a comma (pause) between the written groups.
_PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|(?:1[\s.-])?\(\d{3}\)[\s-]?\d{3}[\s.-]\d{4}"  # (555) 123-4567, (555)-123-4567
    r"|(?:1[.-])?\d{3}[.-]\d{3}[.-]\d{4}(?:-\d{1,4}\b)?"  # 555-123-4567, 1-800-555-1234, an extension
    r"|\d{3}-\d{2}-\d{4}"  # 111-22-3333 (social security and other serials)
    r"|0\d{2,4}[\s-]\d{3,6}(?:[\s-]\d{3,4})?"  # 020 7946 0958, 07700 900123
    r")(?![\w])")
_IP_RE = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]|\.\d)")
_PHONE_CUE_RE = re.compile(r"\b((?:[Tt]el|[Pp]hone|[Cc]all|[Dd]ial|[Ff]ax|[Mm]obile|[Cc]ell)\.?:?\s+)(\d{3}-\d{4})\b")


def _read_phone(s: str, accent: str) -> str:
    groups = re.findall(r"\+|\d+", s)
    if sum(len(g) for g in groups if g != "+") < 7:
        return s  # too short for a phone number: leave it to the other rules
    out, plus = [], False
    for g in groups:
        if g == "+":
            plus = True
            continue
        out.append(("plus " if plus else "") + digits(g, accent))
        plus = False
    return ", ".join(out)
