"""Electronic text and digit strings: URLs, e-mail addresses, file paths, phone numbers,
SSN-like serials, IPv4 addresses and codes after a cue ("card ending in 8876").

Addresses are read the way people dictate them ("example dot com slash docs"). A
written scheme is read, before "www." too ("H T T P S colon slash slash W W W dot
example dot com", "file colon slash slash slash"): it is part of what was written and a
listener copying the address down needs it (http and https differ). File
extensions with a spoken name are read by it ("image.jpg" -> "image dot jpeg");
digit strings digit by digit with a comma (a pause) between the written groups.
"""
from __future__ import annotations

import re

from .numbers import cardinal, code_number, digits
from .words import split_words

# URLs and e-mail addresses: read the way people dictate them ("example dot com slash docs").
_EMAIL_RE = re.compile(r"(?<![\w.])[A-Za-z0-9][\w.+&-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+(?:/[^\s<>\"]*)?")
# A scheme and "www." in any case ("HTTPS://WWW.BBC.CO.UK"): RFC 3986 makes schemes and hosts case-insensitive.
_URL_RE = re.compile(r"\b(?i:https?://|ftp://|file:///?|www\.)[^\s<>\"]+"
                     r"|\b(?:localhost|[a-z][\w-]*(?:\.[a-z][\w-]*)+):\d{2,5}\b(?:/[^\s<>\"]*)?|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
                     r"\.(?:com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|dev|app)\b(?:/[^\s<>\"]*)?")
_URL_SYMBOLS = {".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ", "@": " at ", ":": " colon ",
                "?": " question mark ", "=": " equals ", "&": " ampersand ", "#": " hash ", "+": " plus ", "~": " tilde ",
                "%": " percent "}
_URL_HINT_RE = re.compile(r":/|(?i:www)\.|localhost|[a-z]:\d|\.(?:com|org|net|edu|gov|io|ai|co|uk|us|de|fr|info|dev|app)\b")
_URL_TOKEN_RE = re.compile(r"\d+|[A-Za-z]+|.")
_SPELLED = frozenset(("www", "http", "https", "ftp"))
# Extensions said by another name than their letters.
EXTENSIONS = {"jpg": "jpeg"}
# "test.abc", "readme.md": a lower-case name and extension with no space is read as written.
_BARE_DOMAIN_RE = re.compile(r"(?<![\w.@/'])[a-z][a-z0-9-]*[a-z0-9]\.[a-z]{2,6}(?![\w.]|\.\w)")
# Digits after these cues are a code, read digit by digit ("card ending in 8876", "your PIN is 4921").
_CODE_CUE_RE = re.compile(r"\b((?:ending|ends) (?:in|with)|(?:PIN|pin|OTP|otp|passcode|code)(?: is|:)?)"
                          r"(\s+[A-Za-z]{0,3})(\d{3,})\b")

# A code with slashes, a long digit group and letters or two separators ("MIG-25/235212-asdg",
# "123/261788/2021"): no
# fraction, date or range; "/" is "slash", a hyphen a pause, a group of five or more digits
# is read digit by digit and a shorter one as a number.
SLASH_CODE_RE = re.compile(r"(?<![\w/.-])(?=[\w-]*/)(?=[\w/-]*\d{5})[A-Za-z0-9]+(?:[/-][A-Za-z0-9]+)+(?![\w/])")
_CODE_PART_RE = re.compile(r"\d+|[A-Za-z]+|[/-]")
# After these cues digits joined by hyphens are a code or an extension, never a range
# ("ext. 12-34", "order no. 2231-4477"): each group digit by digit, a pause between groups.
HYPHEN_CODE_CUE_RE = re.compile(
    r"\b(?:(?P<ext>[Ee]xt\.?|[Ee]xtension|[Xx](?=\s?\d))|(?P<cue>[Cc]ode|[Rr]ef\.?|[Rr]eference|ID|[Ss]erial|[Oo]rder|"
    r"[Aa]ccount|[Ii]nvoice|[Tt]icket|[Bb]ooking|[Cc]onfirmation|(?=(?:[Pp]art|[Mm]odel)\s+(?:[Nn]o\.|[Nn]umber|#))"
    r"[Pp]art|[Mm]odel))(?P<no>\s+(?:[Nn]o\.|[Nn]umber|#))?(?P<sep>:|\s+is)?\s*#?\s*(?P<code>\d+(?:-\d+)+)(?![\w-])")

# Book and serial numbers are read digit by digit, a pause at each hyphen; the check digit
# may be X ("ISBN 0-486-43365-X", "ISBN 978-0816648368", "ISSN 0891-1851").
ISBN_RE = re.compile(r"\b(ISBN|ISSN)(?:-1[03])?(:?\s*)((?:\d(?:\s?-\s?|\s)?){6,16}[\dXx])(?![\w-])")


def read_isbn(m: re.Match, accent: str) -> str:
    groups = re.split(r"[\s-]+", m[3])
    return (" ".join(m[1]) + m[2].rstrip() + " "
            + ", ".join(" ".join(digits(c, accent) if c.isdigit() else c.upper() for c in g) for g in groups))


def read_slash_code(code: str, accent: str) -> str:
    if code.count("/") + code.count("-") < 2 and not any(c.isalpha() for c in code):
        return code  # "12639/12640": one slash between two numbers is a fraction
    out = []
    for tok in _CODE_PART_RE.findall(code):
        if tok == "/":
            out.append("slash")
        elif tok.isdigit():
            out.append(digits(tok, accent) if len(tok) >= 5 or tok[0] == "0" else cardinal(int(tok), accent))
        elif tok != "-":
            out.append(tok)
    return " ".join(out)


def read_hyphen_code(m: re.Match, accent: str) -> str:
    cue = "extension" if m["ext"] else m["cue"].rstrip(".")
    if cue == "Ref" or cue == "ref":
        cue = "reference" if cue == "ref" else "Reference"
    cue += (" number" if m["no"] else "") + (m["sep"] or "")
    return cue + " " + ", ".join(digits(g, accent) for g in m["code"].split("-"))

# Social text: "#hashTag" -> "hashtag hash Tag", "@JaneDoe" -> "at Jane Doe". A tag or handle
# is split at its capitals (camelCase) and underscores, an all-lower-case one into words where
# it is run-together words ("#blacklivesmatter"); "#1" stays a number sign (normalize.py).
HASHTAG_RE = re.compile(r"(?<![\w&#/])#([A-Za-z][A-Za-z0-9_]*)(?![\w#])")  # "#mytext#" is no tag
MENTION_RE = re.compile(r"(?<![\w.@/])@([A-Za-z_][A-Za-z0-9_]*)")
_CAMEL_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def tag_words(tag: str) -> str:
    """``"hashTag"`` -> ``"hash Tag"``, ``"black_lives"`` -> ``"black lives"``,
    ``"throwbackthursday"`` -> ``"throwback thursday"``; digits stay for the number rules."""
    out = []
    for part in tag.split("_"):
        for piece in _CAMEL_RE.findall(part):
            words = split_words(piece) if piece.islower() else None
            out.extend(words or (piece,))
    return " ".join(out)


def _read_port(port: str, accent: str) -> str:
    """A port is a number said the way people say it: "80" eighty, "443" four forty-three,
    "8080" eighty eighty, "3000" three thousand; five digits digit by digit."""
    if len(port) <= 2 or port[0] == "0" and len(port) <= 2:
        return cardinal(int(port), accent)
    if len(port) <= 4 and port[0] != "0":
        return code_number(port, accent)
    return digits(port, accent)


def _read_path_number(tok: str, accent: str) -> str:
    """Digits in a URL path: a round number is a name or quantity ("rtx-6000": six thousand),
    other digit strings are read digit by digit as codes ("/123-sm": one two three)."""
    if 2 <= len(tok) <= 6 and tok[0] != "0" and tok.endswith("00"):
        return cardinal(int(tok), accent)
    return digits(tok, accent)


def _read_url(s: str, accent: str) -> str:
    """A URL, e-mail address or host[:port][/path] -> words. Host digits are read digit by
    digit, a port as a number (:func:`_read_port`), path numbers by :func:`_read_path_number`;
    an e-mail's local part is split into words where it is run-together words
    ("salesteam@" -> "sales team at")."""
    trail = ""
    while s and s[-1] in ".,;:!?)":  # sentence punctuation after the address is not part of it
        trail = s[-1] + trail
        s = s[:-1]
    if s.endswith("/"):
        s = s[:-1]
    scheme = s.find("://")
    host_start = scheme + 3 if scheme >= 0 else 0
    if s.startswith("file:"):
        host_start = len(s)  # "file:///c/docs": all path
    path_start = s.find("/", host_start)
    if path_start < 0:
        path_start = len(s)
    at = s.find("@") if scheme < 0 else -1
    out = []
    prev = ""
    for m in _URL_TOKEN_RE.finditer(s):
        tok, pos = m[0], m.start()
        if tok.isdigit():
            if prev == ":" and host_start <= pos < path_start:
                out.append(_read_port(tok, accent))
            elif pos > path_start:
                out.append(_read_path_number(tok, accent))
            else:
                out.append(digits(tok, accent))
        elif tok.isalpha():
            low = tok.lower()
            pieces = split_words(tok) if pos < at else None
            if low in _SPELLED:
                out.append(" ".join(tok.upper()))
            elif pieces:
                out.append(" ".join(" ".join(p) if p.isupper() else p for p in pieces))
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
_IP_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?(?![\w:]|\.\d)")


def read_ip(m: re.Match, accent: str) -> str:
    """An IPv4 address (and port): every part digit by digit, whatever its length, so the
    four parts sound alike ("10.0.0.1" one zero dot zero dot zero dot one); a port as a number."""
    s = " dot ".join(digits(g, accent) for g in m[1].split("."))
    return s + (" colon " + _read_port(m[2], accent) if m[2] else "")
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
