"""What the OpenAI speech API names differently: voice aliases and ``instructions``.

Voices. OpenAI's voice names (alloy, ash, ballad, coral, echo, fable, nova, onyx, sage,
shimmer, verse, marin, cedar) map onto this model's built-in voices through an alias table:
:data:`DEFAULT_ALIASES_FILE` (``openai_voices.json`` beside this module, chosen by the
gender and character OpenAI describes for each voice), or a JSON file of the same shape
given to the server (``--voice-aliases``): ``{"aliases": {"alloy": {"voice": "female_us_01"},
...}}`` (a plain ``{"alloy": "female_us_01"}`` is accepted too). Every target must be a
built-in voice; a name that is both an alias and a built-in voice is refused. ``voice`` may
be a string or OpenAI's object form ``{"id": "..."}``.

Instructions. OpenAI accepts any ``instructions`` ("Talk like a pirate.", an agent's persona
prompt); this model was trained on a fixed set of emotions and has no free-form style
control. :func:`read_instructions` reads what it can follow and reports it:

* the **emotion**: the text is lower-cased and split into clauses (at ``.,;:!?``) and words;
  each emotion has keywords (:data:`EMOTION_KEYWORDS`, the emotion's own name included); the
  first keyword in the text that the model was trained on wins. A keyword within three words
  after a negation in its clause ("don't sound angry", "never sad") does not count;
* the **pace**: words such as "slowly" / "quickly" (:data:`PACE_KEYWORDS`) give a ``speed``
  (:data:`PACE_SPEEDS`), stronger after "very" / "much", milder after "slightly" / "a bit";
* everything else is ignored. Instructions naming nothing followable give neutral speech at
  speed 1.0, not an error: an agent whose persona prompt names no emotion keeps speaking.

The server reports what it applied (``x-speech-applied: emotion=happy; speed=1.0; ...``) and
logs it. ``strict=True`` (the server's ``--strict-instructions``) keeps the earlier contract:
instructions that name no trained emotion are refused (HTTP 400 listing the trained emotions and
their keywords), as is one naming an emotion the model was not trained on.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
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
# pace words -> direction; a speed from PACE_SPEEDS by the modifier before them (none / strong / mild)
PACE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "slowly", "slower", "unhurried", "leisurely", "deliberately", "measured", "drawn-out"),
    "fast": ("fast", "faster", "quick", "quickly", "quicker", "rapid", "rapidly", "brisk", "briskly", "hurried",
             "hurriedly", "speedy", "swift", "swiftly"),
}
PACE_SPEEDS = {("slow", None): 0.85, ("slow", "strong"): 0.7, ("slow", "mild"): 0.93,
               ("fast", None): 1.2, ("fast", "strong"): 1.4, ("fast", "mild"): 1.1}
_STRONG = {"very", "really", "much", "extremely", "super", "quite", "so", "way"}
_MILD = {"slightly", "bit", "little", "somewhat", "touch", "tad"}
_NEGATIONS = {"not", "no", "never", "without", "nor", "avoid", "less"}
_NEGATION_REACH = 3  # words after a negation that it covers, within its clause
_CLAUSE = re.compile(r"[.,;:!?\n]+")


@dataclass
class InstructionReading:
    """What :func:`read_instructions` found: ``emotion`` / ``speed`` None where the text sets none;
    ``emotion_word`` / ``speed_word`` the words that set them; ``untrained`` emotions named but not
    trained (ignored)."""

    emotion: str | None = None
    speed: float | None = None
    emotion_word: str | None = None
    speed_word: str | None = None
    untrained: list[str] = field(default_factory=list)


def _clauses(text: str) -> list[list[str]]:
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"n't\b", " not", text)  # don't -> do not, can't -> ca not: the negation is a word
    return [_WORD.findall(c) for c in _CLAUSE.split(text)]


def _negated(words: list[str], i: int) -> bool:
    return any(w in _NEGATIONS for w in words[max(0, i - _NEGATION_REACH):i])


def read_instructions(instructions: str | None, trained=EMOTIONS, strict: bool = False) -> InstructionReading:
    """The emotion and pace ``instructions`` name (see the module doc). ``trained``: the emotions
    the model may use. ``strict``: CompatError when no trained emotion is named."""
    if instructions is None:
        return InstructionReading()
    if not isinstance(instructions, str):
        raise CompatError("instructions", "instructions must be a string", "invalid_instructions")
    if len(instructions) > MAX_INSTRUCTIONS_CHARS:
        raise CompatError("instructions", f"instructions are over {MAX_INSTRUCTIONS_CHARS} characters",
                          "instructions_too_long")
    trained = tuple(trained)
    emo_of = {k: emo for emo, keys in EMOTION_KEYWORDS.items() for k in (*keys, emo)}
    pace_of = {k: pace for pace, keys in PACE_KEYWORDS.items() for k in keys}
    out, named = InstructionReading(), []
    for words in _clauses(instructions):
        for i, w in enumerate(words):
            if (w in emo_of or w in pace_of) and _negated(words, i):
                continue
            if w in emo_of:
                named.append(emo_of[w])
                if emo_of[w] not in trained:
                    if emo_of[w] not in out.untrained:
                        out.untrained.append(emo_of[w])
                elif out.emotion is None:
                    out.emotion, out.emotion_word = emo_of[w], w
            elif w in pace_of and out.speed is None:
                before = set(words[max(0, i - 2):i])
                strength = "strong" if before & _STRONG else "mild" if before & _MILD else None
                out.speed, out.speed_word = PACE_SPEEDS[(pace_of[w], strength)], w
    if strict and out.emotion is None:
        if named:
            raise CompatError("instructions", f"instructions ask for {named[0]!r}, which this model was not trained "
                                              f"on; trained emotions: {', '.join(trained)}", "untrained_emotion")
        if instructions.strip():
            hint = "; ".join(f"{e}: {', '.join(EMOTION_KEYWORDS[e][:3])}" for e in trained if e in EMOTION_KEYWORDS)
            raise CompatError("instructions", f"instructions name no emotion this model was trained on; it can only "
                                              f"change the emotion, to one of: {', '.join(trained)} (keywords: "
                                              f"{hint})", "unsupported_instructions")
    return out


def emotion_from_instructions(instructions: str | None, trained=EMOTIONS) -> str | None:
    """The trained emotion ``instructions`` name, strictly (:func:`read_instructions` with
    ``strict=True``); None for no or blank instructions."""
    return read_instructions(instructions, trained, strict=True).emotion


__all__ = ["DEFAULT_ALIASES_FILE", "OPENAI_VOICES", "EMOTION_KEYWORDS", "PACE_KEYWORDS", "PACE_SPEEDS", "CompatError",
           "InstructionReading", "load_voice_aliases", "voice_name", "resolve_voice", "read_instructions",
           "emotion_from_instructions", "MAX_INSTRUCTIONS_CHARS"]
