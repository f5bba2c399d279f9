"""The speech server over real HTTP on loopback (127.0.0.1), against the tiny export.

A real uvicorn server runs in a thread (or, once, the CLI in a subprocess); a real HTTP
client (requests) talks to it. Expected audio comes from the Python API
(``OptimumTTS.generate`` with the same arguments), so "the server" is checked against
"the engine", and streamed against non-streamed, and batched against one-by-one."""
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import soundfile as sf
import torch

from helpers.infer.generation import LengthGuard
from helpers.infer.engine import OptimumTTS
from helpers.profiles import REPO_ROOT
from helpers.infer.serve import BackgroundServer, create_app
from helpers.infer.serve_engine import MAX_INPUT_CHARS, SpeechEngine, pcm16, read_model_info
from helpers.tokens import VOICES
from tiny_export import make_tiny_export, speechy

torch.set_num_threads(1)
SR = 24000
CAP_S = 0.5  # the random tiny model never stops by itself: 0.5 s of audio per text chunk
CAP_FRAMES = 6  # ceil(0.5 s * 11.72 frames/s)
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_tiny_export(tmp_path_factory.mktemp("serve") / "run")


@pytest.fixture(scope="module")
def tts(export):
    return OptimumTTS.from_pretrained(export, device="cpu", length_guard=LengthGuard(CAP_S, 1e6, CAP_S))


@pytest.fixture(scope="module")
def voices_dir(tts, tmp_path_factory):
    """A saved voice ``me``, a valid profile OUTSIDE the folder, and a symlink to it inside."""
    root = tmp_path_factory.mktemp("voices")
    folder = root / "voices"
    with pytest.warns(UserWarning):
        prof = tts.clone_voice(speechy(4.0, seed=5), name="me")  # 3-5 s: accepted with a warning
    prof.save(folder / "me.json")
    prof.save(root / "secret.json")
    (folder / "link.json").symlink_to(root / "secret.json")
    return folder


@pytest.fixture(scope="module")
def server(tts, voices_dir, export):
    engine = SpeechEngine(tts, voices_dir=voices_dir, max_batch=8, max_queue=32, model_info=read_model_info(export))
    with BackgroundServer(create_app(engine, "tiny-export")) as s:
        s.engine = engine
        yield s


def _post(server, timeout=120, **body):
    """A whole (non-streamed) answer unless ``stream`` is given: wav and pcm stream by default, as in OpenAI's API."""
    body.setdefault("stream", False)
    return requests.post(f"{server.url}/v1/audio/speech", json={"model": "tiny-export", **body}, timeout=timeout)


def _wav_samples(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, SR)
        frames = w.readframes(w.getnframes())
        assert w.getnframes() * 2 == len(data) - 44  # the header's size is the body's
    return np.frombuffer(frames, "<i2")


def _wav_bytes(audio, sr=SR) -> str:
    buf = io.BytesIO()
    sf.write(buf, audio, sr, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


# ----------------------------------------------------------------------------- audio
def test_wav_has_the_right_header_and_the_engines_samples(server, tts):
    r = _post(server, input="Hello there, how are you?", voice="female_us_01", emotion="happy", seed=3,
              response_format="wav")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    got = _wav_samples(r.content)
    want = tts.generate("Hello there, how are you?", speaker="female_us_01", emotion="happy", seed=3)
    assert len(got) == len(want) == CAP_FRAMES * tts.codec.samples_per_frame  # the length cap
    np.testing.assert_array_equal(got, pcm16(want))
    assert sf.info(io.BytesIO(r.content)).duration == pytest.approx(len(got) / SR)


def test_other_formats_carry_the_same_audio(server):
    body = dict(input="Formats.", voice="male_uk_01", seed=1)
    wav = _wav_samples(_post(server, response_format="wav", **body).content)
    pcm = _post(server, response_format="pcm", **body)
    assert pcm.headers["content-type"] == "audio/pcm"
    np.testing.assert_array_equal(np.frombuffer(pcm.content, "<i2"), wav)
    flac = _post(server, response_format="flac", **body)
    assert flac.content[:4] == b"fLaC"
    np.testing.assert_array_equal(sf.read(io.BytesIO(flac.content), dtype="int16")[0], wav)  # lossless
    for fmt, magic in (("mp3", None), ("opus", b"OggS")):
        r = _post(server, response_format=fmt, **body)
        assert r.status_code == 200, r.text
        if magic:
            assert r.content[:4] == magic
        decoded, sr = sf.read(io.BytesIO(r.content))
        assert sr == SR and abs(len(decoded) - len(wav)) < 0.1 * SR  # lossy: codec delay/padding only
    default = _post(server, **body)  # OpenAI's default format is mp3
    assert default.headers["content-type"] == "audio/mpeg"


def test_streamed_bytes_equal_the_non_streamed(server):
    text = "A first sentence that is long enough. [sad] And a second one with another emotion."
    whole = _wav_samples(_post(server, input=text, seed=9, response_format="wav").content)
    with requests.post(f"{server.url}/v1/audio/speech", json={"input": text, "seed": 9, "response_format": "wav",
                                                                "stream": True}, stream=True, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        pieces = [c for c in r.iter_content(chunk_size=None) if c]
    data = b"".join(pieces)
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    streamed = np.frombuffer(data[44:], "<i2")
    assert len(streamed) == len(whole) == 2 * CAP_FRAMES * 2048 - 960  # two chunks, one 40 ms crossfade
    # documented tolerance: float streaming error <= 1e-5, so at most 1 LSB after 16-bit quantization
    assert np.abs(streamed.astype(int) - whole.astype(int)).max() <= 1
    pcm = _post(server, input=text, seed=9, response_format="pcm", stream=True)
    assert np.abs(np.frombuffer(pcm.content, "<i2").astype(int) - whole.astype(int)).max() <= 1


def test_cloning_from_a_reference_clip_and_a_saved_voice(server, tts, voices_dir):
    from helpers.infer.voices import VoiceProfile

    ref = speechy(4.0, 16000, seed=8)
    r = _post(server, input="Cloned.", reference_audio=_wav_bytes(ref, 16000), seed=2, response_format="wav")
    assert r.status_code == 200, r.text
    buf = io.BytesIO(base64.b64decode(_wav_bytes(ref, 16000)))
    with pytest.warns(UserWarning):
        want = tts.generate("Cloned.", audio_prompt=buf.getvalue(), seed=2)
    np.testing.assert_array_equal(_wav_samples(r.content), pcm16(want))
    r = _post(server, input="Saved.", voice="me", seed=2, response_format="wav")
    want = tts.generate("Saved.", speaker=VoiceProfile.load(voices_dir / "me.json"), seed=2)
    np.testing.assert_array_equal(_wav_samples(r.content), pcm16(want))


def test_twenty_concurrent_requests_equal_their_one_by_one_results(server):
    bodies = [dict(input=f"Request number {i}.", voice=VOICES[i % len(VOICES)], seed=100 + i, response_format="wav",
                   emotion=("neutral", "happy", "calm")[i % 3], stream=(i % 10 == 1)) for i in range(20)]
    before = len(server.engine.batches)
    with ThreadPoolExecutor(20) as ex:
        together = list(ex.map(lambda b: _post(server, timeout=300, **b), bodies))
    assert [r.status_code for r in together] == [200] * 20
    assert max(server.engine.batches[before:]) > 1  # they really were batched
    for b, r in zip(bodies, together):
        want = _wav_samples(_post(server, **{**b, "stream": False}).content).astype(int)
        got = (np.frombuffer(r.content[44:], "<i2") if b["stream"] else _wav_samples(r.content)).astype(int)
        assert len(got) == len(want) and np.abs(got - want).max() <= (1 if b["stream"] else 0), b


# ----------------------------------------------------------------------------- bad input
def test_every_bad_input_gets_its_status_and_names_its_field(server):
    silent = _wav_bytes(np.zeros(SR * 3, np.float32))
    short = _wav_bytes(np.concatenate([np.zeros(SR), speechy(0.4), np.zeros(SR)]).astype(np.float32))
    cases = [
        (dict(input=""), 400, "input", "at least 1 character"),
        (dict(input="   "), 400, "input", "empty"),
        (dict(input="a" * (MAX_INPUT_CHARS + 1)), 400, "input", str(MAX_INPUT_CHARS)),
        (dict(input="[joyful] Hi."), 400, "input", "joyful"),
        (dict(voice="Hi."), 400, "input", "Field required"),
        (dict(input="Hi.", voice="nobody"), 400, "voice", "'nobody' is not a voice"),
        (dict(input="Hi.", voice="../secret"), 400, "voice", "not paths"),
        (dict(input="Hi.", voice="link"), 400, "voice", "'link' is not a voice"),  # symlink out of the folder
        (dict(input="Hi.", emotion="joyful"), 400, "emotion", "neutral"),
        (dict(input="Hi.", response_format="ogg"), 400, "response_format", "'aac'"),
        (dict(input="Hi.", speed=5.0), 400, "speed", "less than or equal to 4"),
        (dict(input="Hi.", speed=0.1), 400, "speed", "greater than or equal to 0.25"),
        (dict(input="Hi.", seed="x"), 400, "seed", "integer"),
        (dict(input="Hi.", colour="red"), 400, "colour", "unknown field"),
        (dict(input="Hi.", reference_audio="%%% not base64"), 400, "reference_audio", "base64"),
        (dict(input="Hi.", reference_audio=base64.b64encode(b"no audio here" * 50).decode()), 400,
         "reference_audio", "not a readable audio file"),
        (dict(input="Hi.", reference_audio=silent), 400, "reference_audio", "silent"),
        (dict(input="Hi.", reference_audio=short), 400, "reference_audio", "at least 3 s"),
        (dict(input="Hi.", voice="me", reference_audio=short), 400, "reference_audio", "not both"),
    ]
    for body, status, param, fragment in cases:
        r = requests.post(f"{server.url}/v1/audio/speech", json=body, timeout=60)
        err = r.json()["error"]
        assert (r.status_code, err["param"]) == (status, param), (body.keys(), r.status_code, err)
        assert fragment in err["message"], (fragment, err)
    r = requests.post(f"{server.url}/v1/audio/speech", data="{not json", timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    for data, what in ((b'{"input": "\xff\xfe"}', "not valid UTF-8"), (b"[" * 100000 + b"]" * 100000, "nested too"),
                       (b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too")):
        r = requests.post(f"{server.url}/v1/audio/speech", data=data, timeout=60,
                          headers={"Content-Type": "application/json"})
        err = r.json()["error"]
        assert r.status_code == 400 and what in err["message"] and err["type"] == "invalid_request_error", err
    ok = _post(server, input="Hi.", speed=1.0, response_format="pcm")  # speed 1.0 is accepted
    assert ok.status_code == 200


def test_voices_and_health(server):
    v = requests.get(f"{server.url}/v1/voices", timeout=10).json()
    ids = [x["id"] for x in v["voices"]]
    assert ids[:len(VOICES)] == list(VOICES) and ids[len(VOICES):] == ["me"]  # the symlink is not listed
    assert v["voices"][0] == {"id": "male_us_01", "type": "builtin", "gender": "male", "accent": "us",
                              "trained": False}  # the tiny export's run assigned no speakers
    assert "happy" in v["emotions"]
    h = requests.get(f"{server.url}/health", timeout=10).json()
    assert h["status"] == "ok" and h["sample_rate"] == SR and h["max_queue"] == 32
    assert {"wav", "pcm", "flac", "mp3", "opus", "aac"} <= set(h["formats"])


# ----------------------------------------------------------------------------- load and failures
def test_full_queue_answers_503_with_retry_after(tts):
    engine = SpeechEngine(tts, max_batch=1, max_queue=1, retry_after_s=3)
    gate, entered = threading.Event(), threading.Event()
    run = engine.run_batch

    def held(batch):  # the worker holds its first batch until the test lets go
        entered.set()
        gate.wait(60)
        run(batch)

    engine.run_batch = held
    with BackgroundServer(create_app(engine, "tiny-export")) as s, ThreadPoolExecutor(2) as ex:
        first = ex.submit(_post, s, input="One.", response_format="pcm")
        assert entered.wait(60)
        second = ex.submit(_post, s, input="Two.", response_format="pcm")
        for _ in range(600):  # bounded: until the second request waits in the queue
            if engine.waiting == 1:
                break
            time.sleep(0.05)
        assert engine.waiting == 1
        busy = _post(s, input="Three.", response_format="pcm")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "3"
        assert busy.json()["error"]["code"] == "queue_full"
        gate.set()
        assert first.result(120).status_code == 200 and second.result(120).status_code == 200
        assert _post(s, input="Three.", response_format="pcm").status_code == 200  # room again


def test_server_survives_a_client_that_disconnects_mid_stream(server):
    long_text = " ".join(f"Sentence number {i} goes on for a while to make the text long." for i in range(30))
    before, abandoned = len(server.engine.batches), server.engine.abandoned
    r = requests.post(f"{server.url}/v1/audio/speech", json={"input": long_text, "response_format": "pcm",
                                                             "stream": True}, stream=True, timeout=120)
    assert r.status_code == 200
    first = next(r.iter_content(chunk_size=4096))
    assert len(first) > 0
    r.close()  # hang up without reading the rest
    for _ in range(600):  # bounded: the engine finishes (or drops) that batch
        if server.engine.abandoned > abandoned:
            break
        time.sleep(0.05)
    assert server.engine.abandoned > abandoned  # generation for the vanished client stopped early
    assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    again = _post(server, input="Still here.", response_format="wav")
    assert again.status_code == 200 and len(_wav_samples(again.content)) > 0


def test_cli_serves_on_loopback_by_default(export):
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "OPTIMUMLLM_AUDIO_API_KEY": "k-123"}
    proc = subprocess.Popen([sys.executable, "-m", "helpers.infer.serve", "--model", str(export), "--port", str(port),
                             "--max-seconds", "0.5", "--log-level", "warning", "--compile", "off", "--no-warm-up"],
                            cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://{HOST}:{port}"
        for _ in range(1200):  # bounded: 120 s for the model to load
            try:
                health = requests.get(f"{url}/health", timeout=2)
                if health.status_code == 200:
                    break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        assert health.json()["decoding"] == "eager"  # --compile off
        body = {"input": "Hi.", "response_format": "wav", "stream": False}
        assert requests.post(f"{url}/v1/audio/speech", json=body, timeout=60).status_code == 401  # the env's key
        auth = {"Authorization": "Bearer k-123"}
        r = requests.post(f"{url}/v1/audio/speech", json=body, headers=auth, timeout=60)
        assert r.status_code == 200 and len(_wav_samples(r.content)) == 6 * 2048  # 0.5 s cap: 6 frames
        assert requests.get(f"{url}/v1/voices", headers=auth, timeout=10).json()["voices"][0]["id"] == VOICES[0]
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_wav_saved_whole_states_its_true_length(server, tmp_path):
    """What a client that buffers the body (litellm, the Node SDK) saves: OpenAI's clients never send
    the "stream" extension, so a plain request must get a WAV whose header says how long it is."""
    r = requests.post(f"{server.url}/v1/audio/speech", json={"model": "tiny-export", "input": "Saved whole.",
                                                             "response_format": "wav"}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    n = (len(r.content) - 44) // 2
    assert n == CAP_FRAMES * 2048
    assert int.from_bytes(r.content[4:8], "little") == len(r.content) - 8  # RIFF size
    assert int.from_bytes(r.content[40:44], "little") == 2 * n  # data size
    with wave.open(io.BytesIO(r.content)) as w:
        assert w.getnframes() == n  # Python's wave (read 2,147,483,647 frames from a streamed header)
    assert sf.info(io.BytesIO(r.content)).frames == n  # libsndfile
    av = pytest.importorskip("av")  # FFmpeg's demuxer, what ffprobe reads with
    with av.open(io.BytesIO(r.content)) as f:
        assert sum(fr.samples for fr in f.decode(audio=0)) == n
        assert f.duration == pytest.approx(n / SR * 1e6, abs=1e3)  # microseconds, from the header
    path = tmp_path / "saved.wav"
    path.write_bytes(r.content)
    sox = shutil.which("sox")
    if sox:  # sox --i -s prints the sample count (read 24 h 51 min from a streamed header)
        out = subprocess.run([sox, "--i", "-s", str(path)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and int(out.stdout.strip()) == n, out
    # a client that asks for a stream still gets one, its header saying "until the end"
    with requests.post(f"{server.url}/v1/audio/speech", json={"input": "Saved whole.", "response_format": "wav",
                                                               "stream": True}, stream=True, timeout=120) as s:
        data = b"".join(s.iter_content(chunk_size=None))
    assert data[40:44] == b"\xff\xff\xff\xff" and (len(data) - 44) // 2 == n


def test_load_engine_takes_the_decoding_choice_and_health_reports_it(export):
    from helpers.infer.serve import load_engine

    eng = load_engine(str(export), device="cpu", max_seconds=0.5, backend="hf", compile=False)
    assert eng.tts.compiled is None and eng.warm_up is False  # eager: nothing to warm up
    eng2 = load_engine(str(export), device="cpu", max_seconds=0.5, backend="hf", compile=True, warm_up=False)
    assert eng2.tts.compiled is not None and eng2.warm_up is False  # --no-warm-up: compiled lazily
    with BackgroundServer(create_app(eng)) as srv:
        h = requests.get(f"{srv.url}/health", timeout=10).json()
    assert h["decoding"] == "eager" and h["warm_up"] is None
    with pytest.raises(ValueError, match="compile must be 'auto', True or False, got 'yes'"):
        load_engine(str(export), device="cpu", backend="hf", compile="yes")
