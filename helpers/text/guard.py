"""The speakable-text guard: characters with no reading never reach the prompt.

Runs before every other text rule (:func:`strip_unspeakable` is the first thing
:func:`helpers.text.normalize`, :func:`~helpers.text.prepare` and
:func:`~helpers.text.normalize_transcript` do). Removed, never replaced by words:

- control characters, C0 and C1 (NUL, ESC, DEL ...); tab, newline, carriage
  return, vertical tab and form feed count as whitespace and stay. ANSI escape
  sequences (``"\\x1b[31m"``) go as a whole, parameters included;
- invisible format characters: zero-width space / non-joiner / joiner, word
  joiner, byte-order mark, soft hyphen, bidi marks and isolates, invisible
  operators, interlinear annotation marks;
- emoji and pictographs (the emoji blocks, dingbats, miscellaneous symbols and
  pictographs, mahjong / domino / playing cards, regional-indicator flags), with
  what builds them: variation selectors, skin-tone modifiers, the keycap
  combiner, tag characters;
- private-use characters, lone surrogates, non-characters and U+FFFD (a decoding
  error marker).

Symbols that have a reading (``© ® ™ ° % & $ € £ ₩``...) are not touched here;
the normalizer reads them.
"""
from __future__ import annotations

import re
import unicodedata

_ANSI = r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]"
_CONTROL = r"\x00-\x08\x0e-\x1f\x7f-\x9f"
_FORMAT = (r"\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
           r"\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000e0000-\U000e0fff")
_PICTO = (r"\u20e3\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2900-\u297f\u2b00-\u2bff"
          r"\u3030\u303d\u3297\u3299\U0001f000-\U0001faff")
_OTHER = r"\ud800-\udfff\ue000-\uf8ff\ufffc-\uffff\U000f0000-\U0010ffff"
UNSPEAKABLE_RE = re.compile(_ANSI + "|[" + _CONTROL + _FORMAT + _PICTO + _OTHER + "]+")
# ASCII text needs only the control-character test (the common case: one cheap search).
_ASCII_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


class UnspeakableTextError(ValueError):
    """The text holds nothing that can be spoken (after removing what has no reading)."""


def strip_unspeakable(text: str) -> str:
    """``text`` without the characters listed in this module's docstring."""
    if text.isascii() and not _ASCII_RE.search(text):
        return text
    return UNSPEAKABLE_RE.sub("", text)


_C0 = ("NUL SOH STX ETX EOT ENQ ACK BEL BACKSPACE TAB LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM "
       "SUB ESCAPE FS GS RS US").split()


def _name(ch: str) -> str:
    cp = ord(ch)
    if cp < 32:
        return f"U+{cp:04X} {_C0[cp]} (control)"
    if 0x7F <= cp <= 0x9F:
        return f"U+{cp:04X} {'DEL' if cp == 0x7F else 'C1'} (control)"
    try:
        name = unicodedata.name(ch)
    except ValueError:  # control characters and others have no name in the database
        name = unicodedata.category(ch)
    return f"U+{cp:04X} {name}"


def removed_characters(text: str) -> tuple[tuple[str, int], ...]:
    """What :func:`strip_unspeakable` drops from ``text``: ``(("U+200B ZERO WIDTH SPACE", 2), ...)``,
    in order of first appearance. ANSI escape sequences count as one entry each,
    named ``"ANSI escape sequence"``."""
    if text.isascii() and not _ASCII_RE.search(text):
        return ()
    counts: dict[str, int] = {}
    for m in UNSPEAKABLE_RE.finditer(text):
        if m[0].startswith("\x1b") and len(m[0]) > 1 and m[0][1] in "[@ABCDEFGHIJKLMNOPQRSTUVWXYZ\\]^_":
            key = "ANSI escape sequence"
            counts[key] = counts.get(key, 0) + 1
            continue
        for ch in m[0]:
            key = _name(ch)
            counts[key] = counts.get(key, 0) + 1
    return tuple(counts.items())


def describe_input(text: str, limit: int = 60) -> str:
    """A repr of ``text``, cut to ``limit`` characters of repr, for error messages."""
    r = repr(text[:limit])
    return r if len(r) <= limit else r[:limit] + f"... ({len(text)} characters)"
