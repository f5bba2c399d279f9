"""Inline tags: ``[happy] Great news! [laugh] I can't believe it.``

Two kinds of tag, both closed sets from the token contract (:mod:`helpers.tokens`):

- emotion tags (``EMOTIONS``): an emotion tag applies to all text after it, up to
  the next emotion tag. Text before the first emotion tag has ``emotion=None``
  (the caller's default). Each run of text under one emotion is a
  :class:`Segment`; inference generates one utterance per segment because the
  prompt carries exactly one emotion token.
- non-verbal tags (``NONVERBALS``): an event placed in the text; it stays in the
  segment as a :class:`Nonverbal` piece and becomes its ``<|name|>`` token inside
  the text block of the prompt.

Tags are written ``[name]`` (case and surrounding spaces ignored; a few spoken
variants like ``[laughs]`` or ``[whispering]`` are accepted, see ``TAG_ALIASES``).
The token form of a non-verbal tag (``<|laugh|>``) is accepted too, so text that
was already prepared parses to the same thing again.

An unknown tag raises :class:`UnknownTagError` listing the valid tags, or with
``unknown="speak"`` its words are kept as ordinary text. Nothing is dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..tokens import EMOTIONS, NONVERBALS, nonverbal_token

# Spoken variants people write -> the contract's name.
TAG_ALIASES = {
    "laughs": "laugh", "laughter": "laugh", "laughing": "laughing",  # "laughing" is the Expresso style (emotion)
    "chuckles": "chuckle", "sighs": "sigh", "gasps": "gasp", "coughs": "cough", "sniffles": "sniffle",
    "sniff": "sniffle", "groans": "groan", "yawns": "yawn", "breathes": "breath", "breathing": "breath",
    "inhale": "breath", "whispering": "whisper", "whispers": "whisper", "whispered": "whisper",
}
# [word] or [two words] - a tag-shaped bracket; "[1]" is not a tag.
TAG_RE = re.compile(r"\[\s*([A-Za-z][A-Za-z _'-]{0,30}?)\s*\]|<\|([a-z_]+)\|>")


# A self-closing markup tag that names a non-verbal event ("<cough/>", "<breathing />")
# becomes the inline tag as written ("[cough]", "[breathing]"): the event is rendered,
# never read. Other markup has no reading and is removed by the normalizer.
_MARKUP_EVENT_RE = re.compile(r"<\s*([A-Za-z]+)\s*/>")


def markup_events(text: str) -> str:
    """``"go <cough/> home"`` -> ``"go [cough] home"`` for the contract's non-verbal events."""
    if "<" not in text:
        return text

    def event(m):
        name = m[1].lower()
        return f" [{name}] " if TAG_ALIASES.get(name, name) in NONVERBALS else m[0]

    return _MARKUP_EVENT_RE.sub(event, text)


class UnknownTagError(ValueError):
    """An inline ``[tag]`` that is neither an emotion nor a non-verbal tag."""


@dataclass(frozen=True)
class Nonverbal:
    """A non-verbal event (``laugh``, ``sigh`` ...) inside the text."""

    name: str

    def __post_init__(self):
        if self.name not in NONVERBALS:
            raise ValueError(f"unknown non-verbal {self.name!r}; valid: {', '.join(NONVERBALS)}")

    @property
    def token(self) -> str:
        """The contract's token string, e.g. ``<|laugh|>``."""
        return nonverbal_token(self.name)


@dataclass
class Segment:
    """Text under one emotion: ``pieces`` are text strings and :class:`Nonverbal` events
    in reading order. ``emotion`` is None where no emotion tag was given."""

    emotion: str | None
    pieces: list = field(default_factory=list)

    def __post_init__(self):
        if self.emotion is not None and self.emotion not in EMOTIONS:
            raise ValueError(f"unknown emotion {self.emotion!r}; valid: {', '.join(EMOTIONS)}")
        for p in self.pieces:
            if not isinstance(p, (str, Nonverbal)):
                raise TypeError(f"segment pieces must be str or Nonverbal, got {type(p).__name__}")

    @property
    def text(self) -> str:
        """What goes inside the prompt's text block: text with non-verbal token strings."""
        return " ".join(p.token if isinstance(p, Nonverbal) else p for p in self.pieces if p)

    @property
    def spoken_text(self) -> str:
        """The words only (no non-verbal events): the reference for WER."""
        return " ".join(p for p in self.pieces if isinstance(p, str) and p)

    @property
    def nonverbals(self) -> list[str]:
        return [p.name for p in self.pieces if isinstance(p, Nonverbal)]


def _valid_tags_message() -> str:
    return (f"valid emotion tags: {', '.join(f'[{e}]' for e in EMOTIONS)}; "
            f"valid non-verbal tags: {', '.join(f'[{n}]' for n in NONVERBALS)}")


def _resolve(raw: str) -> tuple[str, str] | None:
    """Tag text -> ("emotion" | "nonverbal", name), or None when unknown."""
    key = re.sub(r"[\s-]+", "_", raw.strip().lower())
    key = TAG_ALIASES.get(key, key)
    if key in EMOTIONS:
        return "emotion", key
    if key in NONVERBALS:
        return "nonverbal", key
    return None


def parse_tags(text: str, unknown: str = "error") -> list[Segment]:
    """Split tagged text into :class:`Segment` s.

    ``parse_tags("[happy] Great news! [laugh] I can't believe it.")`` ->
    ``[Segment("happy", ["Great news!", Nonverbal("laugh"), "I can't believe it."])]``.

    ``unknown``: ``"error"`` (default) raises :class:`UnknownTagError` naming the
    tag, its position and the valid tags; ``"speak"`` keeps the tag's words as text.
    An emotion tag followed by no text or event raises ``ValueError``.
    Runs of spaces inside text pieces collapse to one; line breaks are kept.
    """
    if unknown not in ("error", "speak"):
        raise ValueError(f"unknown must be 'error' or 'speak', got {unknown!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    segments: list[Segment] = []
    emotion: str | None = None
    emotion_at: int | None = None  # position of the tag that opened the current segment
    pieces: list = []

    def add_text(s: str):
        if pieces and isinstance(pieces[-1], str):
            pieces[-1] += s
        else:
            pieces.append(s)

    def close():
        nonlocal pieces
        cleaned = _clean(pieces)
        if cleaned:
            segments.append(Segment(emotion, cleaned))
        elif emotion_at is not None:
            raise ValueError(f"emotion tag [{emotion}] at character {emotion_at} is followed by no text; "
                             f"put it before the words it should colour")
        pieces = []

    pos = 0
    for m in TAG_RE.finditer(text):
        add_text(text[pos:m.start()])
        pos = m.end()
        raw = m[1] if m[1] is not None else m[2]
        kind = _resolve(raw) if m[1] is not None else (("nonverbal", m[2]) if m[2] in NONVERBALS else None)
        if kind is None:
            if unknown == "error":
                raise UnknownTagError(f"unknown tag {m[0]!r} at character {m.start()}; {_valid_tags_message()} "
                                      f"(pass unknown='speak' to read unknown tags aloud)")
            add_text(f" {raw.strip()} ")
        elif kind[0] == "emotion":
            close()
            emotion, emotion_at = kind[1], m.start()
        else:
            pieces.append(Nonverbal(kind[1]))
    add_text(text[pos:])
    close()
    return segments


def _clean(pieces: list) -> list:
    """Strip text pieces and collapse runs of spaces (line breaks are kept for the
    paragraph logic downstream); drop pieces that are only whitespace (not content)."""
    out = []
    for p in pieces:
        if isinstance(p, str):
            p = re.sub(r"[ \t]+", " ", p).strip()
            if not p:
                continue
        out.append(p)
    return out
