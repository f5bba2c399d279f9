"""Splitting run-together words ("salesteam" -> "sales team") for e-mail local parts.

A name written without spaces is read as one unknown word by a speech model
("enterpriseservices"), so the words are restored where the whole name is made of
known words. The word list (``words.txt``, 25,000 lower-case words ranked by
frequency on English Wikipedia, the most frequent first) is the top of wordninja's
list (MIT, Derek Anderson; licence in ``WORDS_LICENSE``); only the data is used, the
segmenter is this module's: a Viterbi search for the split with the lowest total
cost, a word's cost growing with the log of its frequency rank (Zipf), as in every
unigram segmenter.

A split is used only when it is sure to help a listener:

- the name is not a word itself ("support", "info" stay);
- every piece is a known word of three or more letters (three-letter ones among the
  10,000 most frequent; "my", "no" are never pieces: "myemail" stays), except one short run of
  consonants (2-4 letters, no vowel) read letter by letter ("rtxprohelp" -> "R T X
  pro help"; such a run is an acronym, never a word);
- two to four pieces, the name 6 to 48 letters long;
- otherwise the name stays as written ("sdf", "jdoe", "nvidia").

The list is read on first use (no work at import time). Time is linear in the name's
length (pieces are at most 20 letters long, names at most 48).
"""
from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

_WORDS_FILE = Path(__file__).with_name("words.txt")
_MAX_WORD = 20  # letters: longer pieces are not tried (keeps the search linear)
_MAX_NAME = 48  # letters: a longer name is no run of two to four words (and the search stays cheap)
_VOWELLESS_RE = re.compile(r"[bcdfghjklmnpqrstvwxz]{2,4}")
# Short list entries are mostly abbreviations and fragments ("th", "mi", "js"): a piece has
# three or more letters, a three-letter one among the 10,000 most frequent. Two-letter words
# are left out altogether: "myemail" stays one name (as NeMo's suite reads it).
_THREE_LETTER_RANK = 10_000


@lru_cache(maxsize=1)
def _costs() -> dict[str, float]:
    words = _WORDS_FILE.read_text(encoding="ascii").split()
    scale = math.log(len(words))
    return {w: math.log((rank + 1) * scale) for rank, w in enumerate(words)}


@lru_cache(maxsize=1)
def _pieces() -> dict[str, float]:
    """The words a split may use (see ``_THREE_LETTER_RANK``) and their costs."""
    return {w: c for rank, (w, c) in enumerate(_costs().items())
            if len(w) > 3 or (len(w) == 3 and rank < _THREE_LETTER_RANK)}


def known(word: str) -> bool:
    """``word`` (any case) is in the word list."""
    return word.lower() in _costs()


@lru_cache(maxsize=8192)  # e-mail and hashtag names repeat within a text
def split_words(name: str) -> tuple[str, ...] | None:
    """``"salesteam"`` -> ``("sales", "team")``; ``"rtxprohelp"`` -> ``("RTX", "pro", "help")``
    (a consonant run upper-cased: it is spelled); None when no sure split exists (see the
    module docstring). ``name`` is letters only; its case is kept in the pieces."""
    if not name.isalpha() or not name.isascii() or not 6 <= len(name) <= _MAX_NAME:
        return None
    low = name.lower()
    if low in _costs():
        return None
    costs = _pieces()
    spelled_cost = max(costs.values()) + 2.0  # an acronym costs more than the rarest word
    n = len(low)
    # best[i] = (cost, pieces, acronyms used) of the best split of low[:i]
    best: list[tuple[float, tuple[str, ...], int] | None] = [None] * (n + 1)
    best[0] = (0.0, (), 0)
    for i in range(1, n + 1):
        for j in range(max(0, i - _MAX_WORD), i - 1):  # pieces of >= 2 letters (acronyms)
            prev = best[j]
            if prev is None:
                continue
            piece = low[j:i]
            acr = 0
            c = costs.get(piece)
            if c is None:
                if not _VOWELLESS_RE.fullmatch(piece):
                    continue
                c, acr = spelled_cost, 1
            cand = (prev[0] + c, prev[1] + (piece,), prev[2] + acr)
            if cand[2] <= 1 and (best[i] is None or cand[0] < best[i][0]):
                best[i] = cand
    done = best[n]
    if done is None or not 2 <= len(done[1]) <= 4:
        return None
    out, pos = [], 0
    for piece in done[1]:
        written = name[pos:pos + len(piece)]
        pos += len(piece)
        out.append(written.upper() if piece not in costs else written)
    return tuple(out)
