"""Issue #24's wiring: the speakable-text guard and spoken-length limits in the engine and the server.

The engine (OptimumTTS.generate / stream / generate_batch / generate_dialogue) runs user text through
:func:`helpers.text.speakable` before any prompt is built: text with nothing speakable is refused with
an error that quotes it; control, zero-width and emoji characters are removed (reported in the result)
and never reach the tokenizer. Length limits count the spoken (normalized) form."""
import json

import numpy as np
import pytest
import requests
import torch

from helpers.infer.engine import OptimumTTS, SpokenTextTooLongError
from helpers.infer.generation import LengthGuard
from helpers.infer.serve import BackgroundServer, create_app
from helpers.infer.serve_engine import MAX_INPUT_CHARS, MAX_SPOKEN_CHARS, SpeechEngine
from helpers.text import UnspeakableTextError, spoken_length
from tiny_export import extended_tiny

torch.set_num_threads(1)
UNSPEAKABLE = ["", "   ", "\x00\x00\x00", "\U0001F600\U0001F389", "\u200b\u200c\u200d\ufeff", "?!...", "\x1b[31m"]


@pytest.fixture(scope="module")
def tts(snac_random):
    model, tok, _ = extended_tiny()
    return OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(base_seconds=0.2, chars_per_second=1e6,
                                                                        cap_seconds=0.2))


class _Spy:
    """Wraps the tokenizer: records every string the engine encodes."""

    def __init__(self, tok):
        self.tok, self.seen = tok, []

    def encode(self, text, **kw):
        self.seen.append(text)
        return self.tok.encode(text, **kw)

    def __getattr__(self, name):
        return getattr(self.tok, name)


@pytest.mark.parametrize("text", UNSPEAKABLE)
def test_engine_refuses_text_with_nothing_speakable_naming_it(tts, text):
    for call in (lambda: tts.generate(text), lambda: tts.stream(text), lambda: tts.generate_batch(["Hi.", text]),
                 lambda: tts.generate_dialogue([("a", "Hi."), ("a", text)], a="male_us_01")):
        with pytest.raises(UnspeakableTextError) as e:
            call()
        assert repr(text)[:20] in str(e.value)  # the message quotes the input


def test_control_and_zero_width_characters_never_reach_the_tokenizer_and_are_reported(tts):
    text = "Hel\u200blo\x00 there\x1b[31m \U0001F600 friend."
    spy = _Spy(tts.tokenizer)
    tts.tokenizer = spy
    try:
        res = tts.generate(text, return_result=True)
        stream = tts.stream(text)
        pieces = list(stream)
        dia = tts.generate_dialogue([("a", text)], a="male_us_01")
    finally:
        tts.tokenizer = spy.tok
    assert spy.seen and all(s == "Hello there friend." for s in spy.seen), spy.seen
    names = dict(res.removed)
    assert names["U+200B ZERO WIDTH SPACE"] == 1 and names["ANSI escape sequence"] == 1
    assert any("NUL" in k for k in names) and any("GRINNING FACE" in k for k in names)
    assert stream.removed == res.removed == dia.turns[0].removed
    assert res.chunks[0].text == "Hello there friend." and len(pieces) > 0
    clean = tts.generate("Hello there friend.", return_result=True)
    assert clean.removed == ()
    np.testing.assert_array_equal(res.audio, clean.audio)  # same prompt, same audio


def test_engine_length_limit_counts_the_spoken_form(tts):
    old = tts.max_spoken_chars
    try:
        tts.max_spoken_chars = 100
        digits = "7" * 30  # 30 characters written, ~130 spoken
        assert len(digits) < 100 < spoken_length(digits)
        with pytest.raises(SpokenTextTooLongError, match=r"characters when spoken \(30 as written\)"):
            tts.generate(digits)
        words = "word " * 19  # 95 written and spoken: fits
        assert tts.generate(words).size > 0
    finally:
        tts.max_spoken_chars = old
    with pytest.raises(ValueError, match="max_spoken_chars"):
        OptimumTTS(tts.model, tts.tokenizer, tts.codec, max_spoken_chars=0)


@pytest.fixture(scope="module")
def server(tts):
    with BackgroundServer(create_app(SpeechEngine(tts, max_batch=4, max_queue=8))) as s:
        yield s


def _post(server, **body):
    return requests.post(f"{server.url}/v1/audio/speech", json={"response_format": "pcm", **body}, timeout=120)


@pytest.mark.parametrize("text", UNSPEAKABLE[2:])
def test_server_answers_400_naming_input_for_unspeakable_text(server, text):
    r = _post(server, input=text)
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "input" and err["code"] == "unspeakable_input", err
    assert "nothing speakable" in err["message"]


def test_server_limit_counts_the_spoken_form_and_is_in_the_openapi_document(server):
    digits = "1" * 1300  # 1,300 written (under OpenAI's 4,096), over 5,000 spoken
    assert len(digits) < MAX_INPUT_CHARS and spoken_length(digits) > MAX_SPOKEN_CHARS
    r = _post(server, input=digits)
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "input" and err["code"] == "input_too_long", err
    assert f"at most {MAX_SPOKEN_CHARS:,} spoken characters" in err["message"]
    ok = _post(server, input="Hi\u200b there.")  # removed characters are reported in a header
    assert ok.status_code == 200 and "U+200B" in ok.headers["x-removed-characters"]
    doc = requests.get(f"{server.url}/openapi.json", timeout=30).json()
    field = doc["components"]["schemas"]["SpeechRequest"]["properties"]["input"]
    assert field["maxLength"] == MAX_INPUT_CHARS and field["minLength"] == 1
    assert f"{MAX_SPOKEN_CHARS:,}" in field["description"] and "spoken" in field["description"]
    op = doc["paths"]["/v1/audio/speech"]["post"]
    assert "422" not in json.dumps(doc) and {"400", "413", "500", "503"} <= set(op["responses"])
    assert {"audio/mpeg", "audio/wav", "audio/pcm", "audio/flac", "audio/ogg", "audio/aac", "text/event-stream"} \
        == set(op["responses"]["200"]["content"])
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SpeechRequest")
