"""Rule families of the text frontend, each in both accents, and the speakable-text guard."""
import re

import pytest

from helpers.text import (SpokenText, UnspeakableTextError, normalize, prepare, normalize_transcript, speakable,
                          spoken_length)


def _both(text, us, uk=None):
    assert normalize(text, accent="us") == us
    assert normalize(text, accent="uk") == (us if uk is None else uk)
    for accent in ("us", "uk"):
        once = normalize(text, accent=accent)
        assert not re.search(r"\d", once) and normalize(once, accent=accent) == once


# ----------------------------------------------------------------------------- guard
@pytest.mark.parametrize("text", ["\x00", "\x00\x00\x00", "😀", "😀👍🏽🇬🇧", "\u200b\u200c\u200d\ufeff\u2060",
                                  "", "   ", "...", "\x1b[31m\x1b[0m", "👨\u200d👩\u200d👧"])
def test_guard_refuses_text_with_nothing_speakable(text):
    with pytest.raises(UnspeakableTextError, match="nothing speakable") as err:
        speakable(text)
    assert repr(text[:10])[:8] in str(err.value)
    assert isinstance(err.value, ValueError)


def test_guard_message_quotes_a_truncated_repr():
    with pytest.raises(UnspeakableTextError) as err:
        speakable("\u200b" * 500)
    msg = str(err.value)
    assert "500 characters" in msg and len(msg) < 400 and "ZERO WIDTH SPACE" in msg


@pytest.mark.parametrize("accent", ["us", "uk"])
def test_guard_removes_controls_zero_width_and_emoji(accent):
    s = speakable("\x1b[31mHi\x1b[0m t\u200bhe\u00adre\x00 \U0001F600 I have 3\ufe0f\u20e3 cats\x07", accent=accent)
    assert s == SpokenText("Hi there I have three cats", s.removed)
    names = dict(s.removed)
    assert names["ANSI escape sequence"] == 2
    assert names["U+200B ZERO WIDTH SPACE"] == 1 and names["U+00AD SOFT HYPHEN"] == 1
    assert names["U+0000 NUL (control)"] == 1 and names["U+0007 BEL (control)"] == 1
    assert names["U+1F600 GRINNING FACE"] == 1
    assert len(s) == len(s.text) == spoken_length("\x1b[31mHi\x1b[0m there I have 3 cats", accent=accent)


def test_guard_runs_on_every_entry_point_and_keeps_whitespace():
    assert normalize("a\x00b\tc\nd\u200d") == "ab c d"
    assert normalize("\x1b[31m5") == "five"  # the escape's parameters are not read as a number
    assert prepare("hi\u200b [laugh]\x00")[0].text == "hi <|laugh|>"
    assert normalize_transcript("ok\ufeff 2\x7f") == "ok two"
    assert speakable("[laugh]").text == "[laugh]"  # a non-verbal event is something to render
    assert speakable("I ❤ NY ©").text == "I N Y copyright"  # symbols with a reading stay
    assert speakable("plain").removed == ()


def test_spoken_length_is_the_normalized_length():
    assert spoken_length("$5") == len("five dollars")
    assert spoken_length("$1,000,000", accent="uk") == len("one million dollars")
