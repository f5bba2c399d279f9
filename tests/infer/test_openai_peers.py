"""The speech server against real peers on 127.0.0.1: the official ``openai`` SDK, and a bounded
schemathesis run against the server's own /openapi.json (no 5xx, every response as documented).

The model is the random-weight tiny LLaMA with a 0.3 s length cap, so every answer is short;
a request's length is fixed by the cap, which makes speed's effect on length exact to check."""
import base64
import io
import time
import wave

import numpy as np
import pytest
import torch

openai = pytest.importorskip("openai")

from helpers.infer.engine import OptimumTTS  # noqa: E402
from helpers.infer.generation import LengthGuard  # noqa: E402
from helpers.infer.audio_encode import MP3_STREAM_EXTRA  # noqa: E402
from helpers.infer.openai_compat import OPENAI_VOICES  # noqa: E402
from helpers.infer.serve import BackgroundServer, create_app, served_model_id  # noqa: E402
from helpers.infer.serve_engine import SpeechEngine  # noqa: E402
from helpers.tokens import VOICES  # noqa: E402
from tiny_export import extended_tiny  # noqa: E402

torch.set_num_threads(1)
SR = 24000
CAP_S = 0.3


@pytest.fixture(scope="module")
def server(snac_random):
    model, tok, _ = extended_tiny()
    tts = OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(CAP_S, 1e6, CAP_S))
    # a coverage record: instructions may select exactly these emotions
    tts.coverage = {"trained_emotions": ["neutral", "happy", "sad"], "voice_emotion_minutes": {}}
    engine = SpeechEngine(tts, max_batch=8, max_queue=64)
    with BackgroundServer(create_app(engine, "tiny")) as s:
        s.engine = engine
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def _wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        assert w.getnframes() * 2 == len(data) - 44  # sent whole: the header states the true length
        return np.frombuffer(data[44:], "<i2")


def _decode(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as f:
        return np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)])


def test_speech_create_with_an_openai_voice_alias_and_the_voice_object(client, server):
    a = client.audio.speech.create(model="tiny", voice="alloy", input="Hello there.", response_format="wav")
    b = client.audio.speech.create(model="tiny", voice="female_us_01", input="Hello there.", response_format="wav")
    c = client.audio.speech.create(model="tiny", voice={"id": "alloy"}, input="Hello there.",
                                   response_format="wav")
    assert len(_wav(a.content)) > 0
    np.testing.assert_array_equal(_wav(a.content), _wav(b.content))  # alloy -> female_us_01 (the shipped table)
    np.testing.assert_array_equal(_wav(a.content), _wav(c.content))
    mp3 = client.audio.speech.create(model="tiny", voice="onyx", input="Hello there.")  # OpenAI's default: mp3
    assert mp3.response.headers["content-type"] == "audio/mpeg" and len(mp3.content) > 100
    voices = client.get("/voices", cast_to=object)
    assert voices["aliases"]["alloy"] == "female_us_01" and len(voices["aliases"]) == 13
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):  # OpenAI's names: the same model
        r = client.audio.speech.create(model=name, voice="alloy", input="Hello there.", response_format="wav")
        np.testing.assert_array_equal(_wav(r.content), _wav(a.content))


def test_unknown_model_and_voice_errors_list_what_is_accepted(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.")
    err = e.value.body
    assert (err["param"], err["code"], err["type"]) == ("model", "model_not_found", "invalid_request_error")
    assert "tiny, tts-1, tts-1-hd, gpt-4o-mini-tts" in err["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tiny", voice="nobody", input="Hi.")
    err = e.value.body
    assert err["param"] == "voice" and err["code"] == "unknown_voice"
    for v in (*VOICES, *OPENAI_VOICES):
        assert v in err["message"], v
    engine = SpeechEngine(server.engine.tts, max_batch=2, max_queue=4)
    with BackgroundServer(create_app(engine, "tiny", model_aliases=["*"])) as s:  # configured to alias anything
        anyc = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=120)
        assert len(anyc.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.",
                                            response_format="pcm").content) > 0


def test_served_model_id(tmp_path):
    (tmp_path / "my-run" / "export").mkdir(parents=True)
    assert served_model_id(str(tmp_path / "my-run" / "export")) == "my-run"
    assert served_model_id(str(tmp_path / "my-run")) == "my-run"
    assert served_model_id("optimumai/OptimumLLM-Audio-1.0") == "OptimumLLM-Audio-1.0"


def test_streaming_response_in_both_stream_formats(client):
    whole = client.audio.speech.create(model="tiny", voice="echo", input="Stream me, please.",
                                       response_format="pcm", extra_body={"stream": False})
    want = np.frombuffer(whole.content, "<i2")
    with client.audio.speech.with_streaming_response.create(model="tiny", voice="echo", input="Stream me, please.",
                                                            response_format="pcm", stream_format="audio") as r:
        assert r.headers["content-type"] == "audio/pcm"
        pieces = [p for p in r.iter_bytes() if p]
    got = np.frombuffer(b"".join(pieces), "<i2")
    assert len(got) == len(want) and np.abs(got.astype(int) - want.astype(int)).max() <= 1
    with client.audio.speech.with_streaming_response.create(model="tiny", voice="echo", input="Stream me, please.",
                                                            response_format="pcm", stream_format="sse") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = b"".join(r.iter_bytes()).decode()
    events = [__import__("json").loads(line[6:]) for line in text.split("\n") if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["output_tokens"] > 0
    sse = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]), "<i2")
    assert len(sse) == len(want) and np.abs(sse.astype(int) - want.astype(int)).max() <= 1
    with client.audio.speech.with_streaming_response.create(model="tiny", voice="echo", input="Stream me, please.",
                                                            stream_format="sse") as r:  # mp3, frame by frame
        events = [__import__("json").loads(line[6:]) for line in b"".join(r.iter_bytes()).decode().split("\n")
                  if line.startswith("data: ")]
    deltas = [base64.b64decode(e["audio"]) for e in events[:-1]]
    assert len(deltas) >= 2 and all(deltas) and events[-1]["type"] == "speech.audio.done"
    decoded = _decode(b"".join(deltas))
    assert len(want) <= len(decoded) <= len(want) + MP3_STREAM_EXTRA


def test_free_form_instructions_are_applied_and_reported(client, server):
    happy = client.audio.speech.with_raw_response.create(
        model="tiny", voice="nova", input="What a day.", response_format="pcm",
        instructions="You are a friendly pirate. Speak in a cheerful and upbeat tone.")
    same = client.audio.speech.create(model="tiny", voice="nova", input="What a day.", response_format="pcm",
                                      extra_body={"emotion": "happy"})
    assert happy.content == same.content  # 'cheerful' -> happy; 'friendly' is not trained here: skipped
    assert happy.headers["x-speech-applied"] == "emotion=happy; speed=1; matched=cheerful; untrained=friendly"
    pirate = client.audio.speech.with_raw_response.create(model="tiny", voice="nova", input="What a day.",
                                                          response_format="pcm", instructions="Talk like a pirate.")
    neutral = client.audio.speech.create(model="tiny", voice="nova", input="What a day.", response_format="pcm")
    assert pirate.content == neutral.content and pirate.headers["x-speech-applied"] == "emotion=neutral; speed=1"
    furious = client.audio.speech.with_raw_response.create(model="tiny", voice="nova", input="Hi.",
                                                           response_format="pcm", instructions="Sound furious.")
    assert furious.headers["x-speech-applied"] == "emotion=neutral; speed=1; untrained=angry"
    # pace words set speed; an explicit speed wins and the header says so
    slow = client.audio.speech.with_raw_response.create(model="tiny", voice="nova", input="What a day.",
                                                        response_format="pcm", instructions="Speak slowly.")
    assert len(slow.content) // 2 == round(len(neutral.content) // 2 / 0.85)
    assert slow.headers["x-speech-applied"] == "emotion=neutral; speed=0.85; matched=slowly"
    fixed = client.audio.speech.with_raw_response.create(model="tiny", voice="nova", input="What a day.", speed=2.0,
                                                         response_format="pcm", instructions="Speak slowly.")
    assert fixed.headers["x-speech-applied"] == "emotion=neutral; speed=2"
    assert len(fixed.content) // 2 == round(len(neutral.content) // 2 / 2.0)


def test_strict_instructions_refuse_what_names_no_trained_emotion(server):
    engine = SpeechEngine(server.engine.tts, max_batch=2, max_queue=4)
    with BackgroundServer(create_app(engine, "tiny", strict_instructions=True)) as s:
        strict = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0, timeout=120)
        for text, code in (("Talk like a pirate.", "unsupported_instructions"),
                           ("Sound furious.", "untrained_emotion")):
            with pytest.raises(openai.BadRequestError) as e:
                strict.audio.speech.create(model="tiny", voice="nova", input="Hi.", instructions=text)
            err = e.value.body
            assert e.value.status_code == 400 and err["param"] == "instructions" and err["code"] == code
            assert "neutral, happy, sad" in err["message"]
        ok = strict.audio.speech.with_raw_response.create(model="tiny", voice="nova", input="Hi.",
                                                          response_format="pcm", instructions="Sound sad.")
        assert ok.headers["x-speech-applied"] == "emotion=sad; speed=1; matched=sad"


@pytest.mark.parametrize("speed,ratio", [(0.5, 2.0), (2.0, 0.5)])
def test_speed_changes_the_length(client, speed, ratio):
    base = client.audio.speech.create(model="tiny", voice="ash", input="Speed.", response_format="pcm")
    for extra in ({"stream": False}, {}):  # whole and streamed
        r = client.audio.speech.create(model="tiny", voice="ash", input="Speed.", response_format="pcm", speed=speed,
                                       extra_body=extra)
        assert len(r.content) // 2 == round(len(base.content) // 2 * ratio)


def test_404_and_405_errors_have_openais_shape(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.get("/no/such/path", cast_to=object)
    assert set(e.value.body) == {"message", "type", "param", "code"} and e.value.body["code"] == "unknown_url"
    with pytest.raises(openai.APIStatusError) as e:
        client.get("/audio/speech", cast_to=object)
    assert e.value.status_code == 405 and e.value.body["type"] == "invalid_request_error"
    assert e.value.response.headers["allow"] == "POST"


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server):
    """Bounded: every operation of /openapi.json with valid and invalid data (about 30 s here)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {(o.method.upper(), o.path) for o in ops} == {("GET", "/health"), ("GET", "/v1/models"),
                                                          ("GET", "/v1/voices"), ("POST", "/v1/audio/speech")}
    t0, seen = time.perf_counter(), []
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if op.method.upper() == "GET" and mode is GenerationMode.NEGATIVE:
                continue  # nothing to make invalid

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=40 if op.method.upper() == "POST" else 5, deadline=None, database=None,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                # positive_data_acceptance is left out: the schema cannot say "something speakable"
                # (input "?!" fits the schema and gets a 400 naming input), nor a voice's existence
                from schemathesis.specs.openapi.checks import positive_data_acceptance

                excluded = [positive_data_acceptance]
                response = case.call_and_validate(base_url=server.url, excluded_checks=excluded, timeout=120)
                seen.append(response.status_code)

            run()
    assert all(s < 500 for s in seen) and 200 in seen and 400 in seen, sorted(set(seen))
    assert time.perf_counter() - t0 < 120
