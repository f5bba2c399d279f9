"""What the OpenAI speech API names differently: voice aliases and ``instructions``.

Voices. OpenAI's voice names (alloy, ash, ballad, coral, echo, fable, nova, onyx, sage,
shimmer, verse, marin, cedar) map onto this model's built-in voices through an alias table:
:data:`DEFAULT_ALIASES_FILE` (``openai_voices.json`` beside this module, chosen by the
gender and character OpenAI describes for each voice), or a JSON file of the same shape
given to the server (``--voice-aliases``): ``{"aliases": {"alloy": {"voice": "female_us_01"},
...}}`` (a plain ``{"alloy": "female_us_01"}`` is accepted too). Every target must be a
built-in voice; a name that is both an alias and a built-in voice is refused. ``voice`` may
be a string or OpenAI's object form ``{"id": "..."}``.

Instructions. OpenAI's ``instructions`` ("Speak in a cheerful tone") has no free-form
equivalent here: the model was trained on a fixed set of emotions. :func:`emotion_from_instructions`
maps it onto one: the text is lower-cased and split into words; each emotion has keywords
(:data:`EMOTION_KEYWORDS`, the emotion's own name included); the emotion whose keyword occurs
first in the text wins. Instructions that name no emotion, or one the model was not
trained on, are refused (HTTP 400 listing the trained emotions and their keywords): never
silently ignored. Negation is not understood ("not angry" names angry).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..tokens import EMOTIONS, VOICES

DEFAULT_ALIASES_FILE = Path(__file__).with_name("openai_voices.json")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")

# emotion -> words in `instructions` that select it (whole words, lower case; the name itself always counts)
EMOTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neutrally", "plain", "plainly", "flat", "matter-of-fact"),
    "happy": ("happy", "happily", "cheerful", "cheerfully", "joyful", "joyfully", "glad", "upbeat", "positive"),
    "sad": ("sad", "sadly", "sorrowful", "melancholy", "melancholic", "gloomy", "unhappy", "mournful"),
    "angry": ("angry", "angrily", "furious", "furiously", "annoyed", "irritated", "rage"),
    "excited": ("excited", "excitedly", "enthusiastic", "enthusiastically", "energetic", "thrilled"),
    "whisper": ("whisper", "whispering", "whispered", "hushed", "softly-spoken"),
    "calm": ("calm", "calmly", "soothing", "relaxed", "serene", "peaceful", "gentle", "gently"),
    "friendly": ("friendly", "warm", "warmly", "welcoming"),
    "fearful": ("fearful", "fearfully", "scared", "afraid", "frightened", "nervous", "anxious", "terrified"),
    "disgusted": ("disgusted", "disgust", "revolted", "repulsed"),
    "surprised": ("surprised", "surprise", "astonished", "shocked", "startled"),
    "amused": ("amused", "playful", "playfully", "humorous", "wry"),
    "sleepy": ("sleepy", "sleepily", "tired", "drowsy", "yawning"),
    "confused": ("confused", "puzzled", "perplexed", "uncertain", "unsure"),
    "enunciated": ("enunciated", "enunciate", "articulate", "articulated", "clearly", "precise", "precisely"),
    "laughing": ("laughing", "laugh", "laughter", "giggling"),
    "bored": ("bored", "boring", "monotone", "uninterested", "indifferent"),
    "sarcastic": ("sarcastic", "sarcastically", "sarcasm", "ironic", "ironically", "mocking"),
    "sympathetic": ("sympathetic", "sympathetically", "compassionate", "empathetic", "caring", "comforting"),
    "awe": ("awe", "awed", "amazed", "wonder", "awestruck", "reverent"),
    "desire": ("desire", "longing", "yearning", "seductive", "sultry", "flirty"),
    "projected": ("projected", "project", "projecting", "loud", "loudly", "booming", "announcer"),
}
assert set(EMOTION_KEYWORDS) == set(EMOTIONS), "every trained emotion needs keywords"
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
MAX_INSTRUCTIONS_CHARS = 4 * 1024  # OpenAI's limit on `instructions` (characters), as on `input`


class CompatError(ValueError):
    """A request field OpenAI's API accepts that this server cannot honour: ``param`` names it."""

    def __init__(self, param: str, message: str, code: str):
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


# ----------------------------------------------------------------------------- voices
def load_voice_aliases(path=None) -> dict[str, str]:
    """The alias table (OpenAI name -> built-in voice) from ``path`` (default: the shipped one)."""
    p = Path(path) if path is not None else DEFAULT_ALIASES_FILE
    data = json.loads(p.read_text())
    table = data.get("aliases", data) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{p}: expected {{\"aliases\": {{name: {{\"voice\": builtin}}}}}} or {{name: builtin}}")
    out = {}
    for name, target in table.items():
        if name.startswith("_"):
            continue
        voice = target.get("voice") if isinstance(target, dict) else target
        if voice not in VOICES:
            raise ValueError(f"{p}: alias {name!r} -> {voice!r} is not a built-in voice ({', '.join(VOICES)})")
        if name in VOICES:
            raise ValueError(f"{p}: alias {name!r} is already a built-in voice's name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{p}: alias names must be non-empty strings, got {name!r}")
        out[name] = voice
    return out


def voice_name(voice) -> str | None:
    """OpenAI's ``voice``: a string or ``{"id": "..."}`` -> the string (None stays None)."""
    if voice is None or isinstance(voice, str):
        return voice
    if isinstance(voice, dict):
        vid = voice.get("id")
        if set(voice) == {"id"} and isinstance(vid, str):
            return vid
        raise CompatError("voice", "a voice object must be {\"id\": \"<voice>\"} with a string id", "invalid_voice")
    raise CompatError("voice", f"voice must be a string or {{\"id\": ...}}, got {type(voice).__name__}",
                      "invalid_voice")


def resolve_voice(voice, aliases: dict[str, str]) -> str | None:
    """``voice`` (string or object) with an OpenAI alias replaced by its built-in voice."""
    name = voice_name(voice)
    return aliases.get(name, name) if name is not None else None


# ----------------------------------------------------------------------------- instructions
def emotion_from_instructions(instructions: str | None, trained=EMOTIONS) -> str | None:
    """The trained emotion ``instructions`` name (see the module doc); None for no instructions."""
    if instructions is None:
        return None
    if not isinstance(instructions, str):
        raise CompatError("instructions", "instructions must be a string", "invalid_instructions")
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise CompatError("instructions", f"instructions are over {MAX_INSTRUCTIONS_CHARS} characters",
                          "instructions_too_long")
    if not instructions.strip():
        return None
    trained = tuple(trained)
    words = _WORD.findall(instructions.lower())
    first: dict[str, int] = {}
    for emo, keys in EMOTION_KEYWORDS.items():
        keyset = set(keys) | {emo}
        pos = next((i for i, w in enumerate(words) if w in keyset), None)
        if pos is not None:
            first[emo] = pos
    hint = "; ".join(f"{e}: {', '.join(EMOTION_KEYWORDS[e][:3])}" for e in trained if e in EMOTION_KEYWORDS)
    if not first:
        raise CompatError("instructions", f"instructions name no emotion this model was trained on; it can only "
                                          f"change the emotion, to one of: {', '.join(trained)} (keywords: {hint})",
                          "unsupported_instructions")
    emo = min(first, key=lambda e: (first[e], EMOTIONS.index(e)))
    if emo not in trained:
        raise CompatError("instructions", f"instructions ask for {emo!r}, which this model was not trained on; "
                                          f"trained emotions: {', '.join(trained)}", "untrained_emotion")
    return emo


__all__ = ["DEFAULT_ALIASES_FILE", "OPENAI_VOICES", "EMOTION_KEYWORDS", "CompatError", "load_voice_aliases",
           "voice_name", "resolve_voice", "emotion_from_instructions", "MAX_INSTRUCTIONS_CHARS"]
