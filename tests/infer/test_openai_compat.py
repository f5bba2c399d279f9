"""OpenAI fidelity pieces: voice aliases, the voice object, instructions -> emotion."""
import json

import numpy as np
import pytest

from helpers.infer.openai_compat import (DEFAULT_ALIASES_FILE, EMOTION_KEYWORDS, MAX_INSTRUCTIONS_CHARS,
                                         OPENAI_VOICES, PACE_KEYWORDS, PACE_SPEEDS, CompatError,
                                         emotion_from_instructions, load_voice_aliases, read_instructions,
                                         resolve_voice)
from helpers.tokens import EMOTIONS, VOICES


def test_shipped_table_covers_every_openai_voice():
    table = load_voice_aliases()
    assert set(table) == set(OPENAI_VOICES)
    assert set(table.values()) == set(VOICES)  # every built-in voice is reachable
    assert resolve_voice("shimmer", table) == table["shimmer"]
    assert resolve_voice({"id": "nova"}, table) == table["nova"]
    assert resolve_voice({"id": "female_uk_02"}, table) == "female_uk_02"
    assert resolve_voice("my_saved_voice", table) == "my_saved_voice"  # not an alias: left for the engine


def test_custom_table_and_its_checks(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps({"alloy": "male_uk_02"}))
    assert load_voice_aliases(f) == {"alloy": "male_uk_02"}
    f.write_text(json.dumps({"alloy": "robot"}))
    with pytest.raises(ValueError, match="not a built-in voice"):
        load_voice_aliases(f)
    f.write_text(json.dumps({"male_us_01": "female_us_01"}))
    with pytest.raises(ValueError, match="already a built-in"):
        load_voice_aliases(f)
    assert json.loads(DEFAULT_ALIASES_FILE.read_text())["_doc"]


@pytest.mark.parametrize("voice", [{"name": "alloy"}, {"id": 3}, {"id": "alloy", "x": 1}, 5, ["alloy"]])
def test_bad_voice_objects(voice):
    with pytest.raises(CompatError) as e:
        resolve_voice(voice, {})
    assert e.value.param == "voice"


@pytest.mark.parametrize("text, want", [
    ("Speak in a cheerful and positive tone.", "happy"),
    ("Whisper it, please", "whisper"),
    ("Sound calm, then friendly", "calm"),  # the first keyword in the text wins
    ("Be SARCASTIC.", "sarcastic"),
    ("angry", "angry"),
    ("", None), ("   ", None), (None, None),
])
def test_instructions_name_an_emotion(text, want):
    assert emotion_from_instructions(text) == want


def test_instructions_without_an_emotion_are_refused_listing_the_trained_ones():
    with pytest.raises(CompatError) as e:
        emotion_from_instructions("Use a pirate accent")
    assert e.value.param == "instructions" and e.value.code == "unsupported_instructions"
    assert all(x in e.value.message for x in EMOTIONS)


def test_instructions_naming_an_untrained_emotion_are_refused():
    with pytest.raises(CompatError) as e:
        emotion_from_instructions("sound sleepy", trained=("neutral", "happy"))
    assert e.value.code == "untrained_emotion" and "neutral, happy" in e.value.message


def test_every_emotion_has_keywords_no_keyword_is_shared():
    assert set(EMOTION_KEYWORDS) == set(EMOTIONS)
    seen = {}
    for emo, keys in EMOTION_KEYWORDS.items():
        for k in set(keys) | {emo}:
            assert seen.setdefault(k, emo) == emo, f"{k!r} selects {seen[k]} and {emo}"
            assert emotion_from_instructions(f"please be {k} now") == emo


# ----------------------------------------------------------------------------- free-form instructions
TRAINED = ("neutral", "happy", "sad", "calm", "angry")


@pytest.mark.parametrize("text, emotion, speed, untrained", [
    ("Talk like a pirate.", None, None, []),  # nothing followable: neutral, no error
    ("You are a helpful assistant for ACME. Keep answers short.", None, None, []),
    ("Speak cheerfully and very slowly.", "happy", PACE_SPEEDS[("slow", "strong")], []),
    ("Speak quickly", None, PACE_SPEEDS[("fast", None)], []),
    ("a bit faster, please", None, PACE_SPEEDS[("fast", "mild")], []),
    ("Don't sound angry, be calm.", "calm", None, []),  # negated keyword skipped
    ("Never sad; happy!", "happy", None, []),
    ("No, speak happily", "happy", None, []),  # the negation's clause ended at the comma
    ("Not too fast.", None, None, []),
    ("Sound sleepy and a little sad", "sad", None, ["sleepy"]),  # untrained: skipped, reported
    ("Whisper it", None, None, ["whisper"]),
    ("Be SARCASTIC, then happy", "happy", None, ["sarcastic"]),
    ("", None, None, []), (None, None, None, []),
])
def test_free_form_instructions_are_read_not_refused(text, emotion, speed, untrained):
    r = read_instructions(text, TRAINED)
    assert (r.emotion, r.speed, r.untrained) == (emotion, speed, untrained)


def test_strict_instructions_keep_the_400s():
    with pytest.raises(CompatError) as e:
        read_instructions("Talk like a pirate.", TRAINED, strict=True)
    assert e.value.code == "unsupported_instructions"
    with pytest.raises(CompatError) as e:
        read_instructions("Whisper it", TRAINED, strict=True)
    assert e.value.code == "untrained_emotion"
    assert read_instructions("speak slowly and happily", TRAINED, strict=True).emotion == "happy"
    with pytest.raises(CompatError) as e:
        read_instructions("x" * (MAX_INSTRUCTIONS_CHARS + 1), TRAINED)
    assert e.value.code == "instructions_too_long"


def test_pace_words_never_select_an_emotion():
    emo_words = {k for emo, keys in EMOTION_KEYWORDS.items() for k in (*keys, emo)}
    for pace, words in PACE_KEYWORDS.items():
        assert not set(words) & emo_words, pace
        for w in words:
            r = read_instructions(f"please talk {w}")
            assert r.emotion is None and r.speed == PACE_SPEEDS[(pace, None)] and r.speed_word == w
