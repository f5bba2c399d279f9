"""The text frontend: the ONE place where text becomes what the model reads.

Both data preprocessing (training transcripts) and inference (user text) call
this module, so the model is trained and prompted on the same spoken form.

- :func:`normalize` - written English -> spoken words (numbers, money, dates,
  times, units, abbreviations, acronyms, URLs, symbols), US or UK.
- :func:`parse_tags` - ``[happy] ... [laugh] ...`` -> :class:`Segment` s.
- :func:`split_sentences` - long text -> chunks that fit a duration estimate.
- :func:`prepare` - inference: tags -> normalize -> (optionally) chunks, ready for
  the prompt builder (``segment.emotion``, ``segment.text``).
- :func:`normalize_transcript` - preprocessing: the same path for a transcript,
  returned as the string that goes into the training example's text block.
- :func:`speakable` - the guard for user text: what is left to say (a
  :class:`SpokenText`) or :class:`UnspeakableTextError`; :func:`spoken_length`
  for limits on the spoken form.

Every entry point first removes characters with no reading (control characters,
zero-width and other invisible format characters, emoji; see
:mod:`helpers.text.guard`), so they never reach the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

from .guard import UnspeakableTextError, describe_input, removed_characters, strip_unspeakable
from .normalize import (ACCENTS, DATE_ORDERS, DEFAULT_DATE_ORDER, READ_ACRONYMS, SPELL_ACRONYMS, cardinal,
                        normalize_plain, ordinal, year)
from .split import CHARS_PER_SECOND, DEFAULT_MAX_SECONDS, NONVERBAL_SECONDS, estimate_seconds, split_sentences
from .tags import TAG_ALIASES, TAG_RE, Nonverbal, Segment, UnknownTagError, markup_events, parse_tags

__all__ = [
    "ACCENTS", "DATE_ORDERS", "DEFAULT_DATE_ORDER", "READ_ACRONYMS", "SPELL_ACRONYMS", "CHARS_PER_SECOND",
    "DEFAULT_MAX_SECONDS", "NONVERBAL_SECONDS", "TAG_ALIASES", "Nonverbal", "Segment", "UnknownTagError",
    "normalize", "parse_tags", "split_sentences", "estimate_seconds", "prepare", "normalize_transcript",
    "cardinal", "ordinal", "year", "speakable", "spoken_length", "SpokenText", "UnspeakableTextError",
    "strip_unspeakable",
]


def normalize(text: str, accent: str = "us", date_order: str | None = None) -> str:
    """Written English -> the words a speaker says; contains no digits; idempotent.

    ``accent``: ``"us"`` or ``"uk"`` ("one hundred five" / "one hundred and five",
    "percent" / "per cent", meter / metre ...). ``date_order``: how to read numeric
    dates like 3/4/2021 - ``"mdy"`` or ``"dmy"``; None = by accent (us: mdy, uk: dmy).
    Inline tags (``[laugh]``, ``<|laugh|>``) pass through unchanged; paragraph
    breaks are kept as one blank line, other whitespace collapses to one space.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    text = markup_events(strip_unspeakable(text))
    if "[" not in text and "<|" not in text:
        return normalize_plain(text, accent, date_order)
    parts, pos = [], 0
    for m in TAG_RE.finditer(text):
        parts.append(normalize_plain(text[pos:m.start()], accent, date_order))
        parts.append(m[0])
        pos = m.end()
    parts.append(normalize_plain(text[pos:], accent, date_order))
    return " ".join(p for p in parts if p)


def _normalize_segments(segments: list[Segment], accent: str, date_order: str | None) -> list[Segment]:
    out = []
    for seg in segments:
        pieces = []
        for p in seg.pieces:
            if isinstance(p, Nonverbal):
                pieces.append(p)
            else:
                words = normalize_plain(p, accent, date_order)
                if words:
                    pieces.append(words)
        if not pieces:
            raise ValueError(f"segment {seg.text!r} (emotion {seg.emotion}) has nothing to say after normalization")
        out.append(Segment(seg.emotion, pieces))
    return out


def prepare(text: str, accent: str = "us", date_order: str | None = None, unknown: str = "error",
            max_seconds: float | None = None, chars_per_second: float = CHARS_PER_SECOND) -> list[Segment]:
    """User text -> normalized segments for inference, one generation each.

    ``prepare("[happy] I won $5! [laugh] [sad] It's gone.")`` ->
    ``[Segment("happy", ["I won five dollars!", Nonverbal("laugh")]), Segment("sad", ["It's gone."])]``.

    With ``max_seconds`` each segment is further cut (:func:`split_sentences`) into
    segments of the same emotion whose estimated duration fits. ``segment.text``
    is the string for the prompt's text block (non-verbal events as their tokens).
    Raises :class:`UnknownTagError` for an unknown tag (unless ``unknown="speak"``)
    and ``ValueError`` for empty text.
    """
    segments = _normalize_segments(parse_tags(markup_events(strip_unspeakable(text)), unknown), accent, date_order)
    if not segments:
        raise ValueError("text is empty: nothing to synthesize")
    if max_seconds is None:
        return segments
    out = []
    for seg in segments:
        for chunk in split_sentences(seg.text, max_seconds, chars_per_second):
            # Chunks hold non-verbal events in token form; parsing them again restores the pieces.
            (inner,) = parse_tags(chunk)
            out.append(Segment(seg.emotion, inner.pieces))
    return out


def normalize_transcript(text: str, accent: str = "us", date_order: str | None = None,
                         unknown: str = "error") -> str:
    """A training transcript -> the text-block string of its training example.

    Same path as :func:`prepare` (tags -> normalize), so training and inference see
    one spoken form. Non-verbal tags in transcripts become their tokens
    (``"that's funny [laughs]"`` -> ``"that's funny <|laugh|>"``). Emotion tags are
    refused: a clip's emotion is metadata, one per utterance, not inline text.
    Idempotent; an empty transcript gives ``""`` (the caller counts and rejects it).
    """
    segments = parse_tags(markup_events(strip_unspeakable(text)), unknown)
    tagged = [s for s in segments if s.emotion is not None]
    if tagged:
        raise ValueError(f"transcript has an inline emotion tag [{tagged[0].emotion}]; emotion belongs in the "
                         f"utterance metadata, not in the transcript: {text[:80]!r}")
    if not segments:
        return ""
    return " ".join(s.text for s in _normalize_segments(segments, accent, date_order))


@dataclass(frozen=True)
class SpokenText:
    """What :func:`speakable` returns.

    ``text``: the spoken form (``normalize(text, accent, date_order)``: no digits,
    inline tags kept). ``removed``: what the guard dropped before normalizing, as
    ``(name, count)`` pairs in order of first appearance, e.g.
    ``(("U+200B ZERO WIDTH SPACE", 2), ("U+1F600 GRINNING FACE", 1))``; empty when
    nothing was dropped.
    """

    text: str
    removed: tuple[tuple[str, int], ...] = ()

    def __len__(self) -> int:
        return len(self.text)


def _has_speech(spoken: str) -> bool:
    """A letter outside the tags, or a non-verbal event (a laugh is something to render)."""
    rest = spoken
    events = False
    for m in TAG_RE.finditer(spoken):
        events = True
        rest = rest.replace(m[0], " ", 1)
    return events or any(c.isalpha() for c in rest)


def speakable(text: str, accent: str = "us", date_order: str | None = None) -> SpokenText:
    """The guard for user text: ``text`` -> its spoken form, or a loud error.

    Contract (for the engine and the server):

    - control characters (C0/C1; tab/newline/CR count as whitespace), zero-width and
      other invisible format characters (ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft
      hyphen, bidi marks), ANSI escape sequences, emoji/pictographs and their
      modifiers, private-use characters and U+FFFD are removed first; they never
      reach the output, and ``SpokenText.removed`` says what went;
    - the rest is normalized exactly as :func:`normalize` does (same accent and
      date order arguments, same errors for bad arguments); ``SpokenText.text`` is
      what the prompt builder should receive;
    - when no letter is left (outside inline tags) and no non-verbal tag is given -
      empty text, only NUL bytes, only emoji, only zero-width characters, only
      punctuation - it raises :class:`UnspeakableTextError` (a ``ValueError``) whose
      message quotes a truncated repr of the input and says nothing speakable is left;
    - limits on length should apply to the spoken form: ``len(result)`` (or
      :func:`spoken_length`) is ``len(result.text)``, which is what the model reads
      ("$1,000,000" is 10 characters written and "one million dollars", 19, spoken).
    Raises ``TypeError`` for a non-str ``text``.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    removed = removed_characters(text)
    spoken = normalize(text, accent, date_order)
    if not _has_speech(spoken):
        what = ", ".join(f"{name} x{n}" for name, n in removed[:4]) if removed else "nothing"
        raise UnspeakableTextError(
            f"nothing speakable is left in {describe_input(text)} after normalization "
            f"(removed: {what}); give text with at least one word")
    return SpokenText(spoken, removed)


def spoken_length(text: str, accent: str = "us", date_order: str | None = None) -> int:
    """Characters of the spoken form, ``len(normalize(text, ...))`` - the length a
    limit on model input should check ("$5" is 2 characters written, 10 spoken)."""
    return len(normalize(text, accent, date_order))
