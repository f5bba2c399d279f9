"""Sentence splitting for long-form synthesis.

Long text is cut into chunks whose estimated spoken duration fits
``max_seconds``. Boundaries are, in order of preference: paragraph breaks
(blank lines, always), sentence ends, clause punctuation (``, ; : —``), and
finally spaces between words. A cut never falls inside a number ("3.14",
"1,234"), after a title abbreviation ("Dr. Smith"), after an initial ("J. R. R.
Tolkien"), inside a double-quoted passage (for sentence ends) or inside a
``<|token|>``.

Duration estimate: characters / ``chars_per_second``. 14 characters per second is
~2.7 words per second at ~5.2 characters per English word including its space
(a calm read-speech rate of ~160 words per minute). The estimate is meant for
normalized text; on raw text each digit counts as 5 characters because a digit
expands to about one spoken word ("1999" -> "nineteen ninety-nine"), and each
non-verbal token (``<|laugh|>``) counts as ``NONVERBAL_SECONDS``.
"""
from __future__ import annotations

import re

CHARS_PER_SECOND = 14.0
NONVERBAL_SECONDS = 1.0  # a laugh or sigh takes about a second
DEFAULT_MAX_SECONDS = 20.0  # well inside the 30 s clips the model is trained on (preprocessing keeps 1-30 s)

# Abbreviations after which a period does not end a sentence.
_NO_BREAK_AFTER = frozenset(
    "Mr Mrs Ms Mx Dr Prof St Mt Gen Capt Lt Col Sgt Gov Sen Rep Rev Fr Hon Pres Cpl Adm vs v No no Nos "
    "Fig fig Vol vol pp p approx Dept dept Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec e.g i.e "
    "a.k.a cf Ave Rd Blvd Ch ch ed eds".split())
_PARA_RE = re.compile(r"\n\s*\n")
_TOKEN_RE = re.compile(r"<\|[^|<>\s]+\|>")
# Sentence-final punctuation, closing quotes/brackets, then space and the start of a new sentence.
_END_RE = re.compile(r"[.!?…]+[\"')\]]*(?=\s+[\"'(\[<]?[A-Z0-9<\[\"(])")
_CLAUSE_RE = re.compile(r"(?:[,;:]|\s[—–-])(?=\s)")


def estimate_seconds(text: str, chars_per_second: float = CHARS_PER_SECOND) -> float:
    """Estimated spoken duration of ``text`` in seconds (see the module docstring)."""
    n_tokens = len(_TOKEN_RE.findall(text))
    plain = _TOKEN_RE.sub("", text) if n_tokens else text
    n_digits = sum(c.isdigit() for c in plain)
    return (len(plain.strip()) + 4 * n_digits) / chars_per_second + n_tokens * NONVERBAL_SECONDS


def _last_word(s: str) -> str:
    m = re.search(r"(\S+)$", s)
    return m[1] if m else ""


def _sentences(para: str) -> list[str]:
    out, start = [], 0
    for m in _END_RE.finditer(para):
        end = m.end()
        head = para[start:m.start()]
        if m[0].rstrip("\"')]") == ".":
            word = _last_word(head).lstrip("\"'([")
            if word in _NO_BREAK_AFTER or (len(word) == 1 and word.isalpha()):
                continue  # "Dr. Smith", "J. Smith", "e.g. Paris"
        if para[:end].count('"') % 2:
            continue  # inside a quotation
        out.append(para[start:end].strip())
        start = end
    tail = para[start:].strip()
    if tail:
        out.append(tail)
    return out


def _clauses(sentence: str) -> list[str]:
    out, start = [], 0
    for m in _CLAUSE_RE.finditer(sentence):
        piece = sentence[start:m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = sentence[start:].strip()
    if tail:
        out.append(tail)
    return out


def _words(clause: str) -> list[str]:
    """Words, keeping a title abbreviation with the name after it."""
    out: list[str] = []
    for w in clause.split():
        if out and out[-1].rstrip(".") in _NO_BREAK_AFTER and out[-1].endswith("."):
            out[-1] += " " + w
        else:
            out.append(w)
    return out


def _pack(units: list[str], max_seconds: float, cps: float) -> list[str]:
    chunks: list[str] = []
    for u in units:
        if chunks and estimate_seconds(chunks[-1] + " " + u, cps) <= max_seconds:
            chunks[-1] += " " + u
        else:
            chunks.append(u)
    return chunks


def _fit(unit: str, max_seconds: float, cps: float, level: int) -> list[str]:
    """Pieces of ``unit`` that fit: a sentence (level 0) is cut at clauses, a clause
    (level 1) at words; a single word (level 2) longer than the limit stays whole."""
    if estimate_seconds(unit, cps) <= max_seconds or level == 2:
        return [unit]
    parts = _clauses(unit) if level == 0 else _words(unit)
    pieces = [p for part in parts for p in _fit(part, max_seconds, cps, level + 1)]
    return _pack(pieces, max_seconds, cps)


def split_sentences(text: str, max_seconds: float = DEFAULT_MAX_SECONDS,
                    chars_per_second: float = CHARS_PER_SECOND) -> list[str]:
    """Chunks of ``text`` for one synthesis call each, in order.

    Whole sentences are packed together while the chunk's estimate stays within
    ``max_seconds``; a sentence longer than that is cut at clauses, then words.
    A chunk exceeds ``max_seconds`` only when it is a single word that does.
    Joining the chunks with spaces gives back the text with its whitespace
    collapsed (paragraph breaks become chunk boundaries): nothing is lost.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0 (seconds of speech per chunk), got {max_seconds}")
    if not chars_per_second > 0:
        raise ValueError(f"chars_per_second must be > 0, got {chars_per_second}")
    out: list[str] = []
    for para in _PARA_RE.split(text):
        para = " ".join(para.split())
        if not para:
            continue
        pieces = [p for s in _sentences(para) for p in _fit(s, max_seconds, chars_per_second, 0)]
        out += _pack(pieces, max_seconds, chars_per_second)
    return out
