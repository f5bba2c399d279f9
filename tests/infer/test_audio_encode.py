"""mp3 / opus / aac / flac encoded frame by frame (helpers/infer/audio_encode.py), alone and through the server.

Alone: a stream's pieces joined decode (FFmpeg's decoders, through PyAV) to exactly the samples
of the whole file, shifted by the codec's stated delay, and to the lengths the module documents.
Through the server: each format streams in several pieces (raw and as SSE deltas) and the first
piece reaches the client while the engine is held mid-synthesis, so it cannot have waited for
the end."""
import base64
import io
import json
import threading

import numpy as np
import pytest
import requests
import torch

av = pytest.importorskip("av")

from helpers.infer.audio_encode import (AAC_EXTRA, CODECS, MP3_DELAY, MP3_STREAM_EXTRA, StreamEncoder,  # noqa: E402
                                        codec_formats, encode_whole)
from helpers.infer.engine import OptimumTTS  # noqa: E402
from helpers.infer.generation import LengthGuard  # noqa: E402
from helpers.infer.serve import BackgroundServer, create_app  # noqa: E402
from helpers.infer.serve_engine import SpeechEngine, pcm16  # noqa: E402
from tiny_export import extended_tiny  # noqa: E402

torch.set_num_threads(1)
SR = 24000
# format -> (delay before the input in a stream decode, extra samples allowed at the end of a stream decode)
STREAM_SHIFT = {"mp3": (MP3_DELAY, MP3_STREAM_EXTRA), "opus": (0, 0), "aac": (1024, AAC_EXTRA), "flac": (0, 0)}
WHOLE_SHIFT = {"mp3": (0, 0), "opus": (0, 0), "aac": (1024, AAC_EXTRA), "flac": (0, 0)}


def decode(data: bytes) -> np.ndarray:
    """float64 mono at 24 kHz (libopus decodes at 48 kHz: every second sample of its output is not
    a resampling, so opus is compared by length and against its own whole-file decode only)."""
    with av.open(io.BytesIO(data)) as f:
        rate = f.streams.audio[0].codec_context.sample_rate
        out = np.concatenate([fr.to_ndarray().reshape(-1) for fr in f.decode(audio=0)])
    out = out.astype(np.float64) / (32768 if out.dtype == np.int16 else 1)
    return out[::rate // SR]


def _signal(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(n)
    return pcm16(x.astype(np.float32))


def test_every_codec_is_available_here():
    assert codec_formats() == {k: c.mime for k, c in CODECS.items()}


@pytest.mark.parametrize("fmt", list(CODECS))
def test_stream_pieces_decode_to_the_whole_files_samples(fmt):
    n = SR + 123
    pcm = _signal(n)
    enc = StreamEncoder(fmt, SR)
    pieces = [enc.push(pcm[i:i + 2048]) for i in range(0, n, 2048)] + [enc.finish()]
    assert sum(1 for p in pieces if p) >= len(pieces) - 2  # bytes after (nearly) every push, not at the end
    assert pieces[0] or pieces[1]
    stream, whole = decode(b"".join(pieces)), decode(encode_whole(pcm, fmt, SR))
    (s_lag, s_extra), (w_lag, w_extra) = STREAM_SHIFT[fmt], WHOLE_SHIFT[fmt]
    assert n <= len(stream) <= n + s_extra and n <= len(whole) <= n + w_extra, (len(stream), len(whole))
    if fmt in ("opus", "flac", "mp3"):
        assert len(whole) == n  # Ogg granules, STREAMINFO, the LAME tag: exact length
    np.testing.assert_array_equal(stream[s_lag:s_lag + n], whole[w_lag:w_lag + n])  # same frames
    if fmt == "flac":
        np.testing.assert_array_equal(np.round(whole * 32768).astype(int), pcm.astype(int))  # lossless
    elif fmt != "opus":  # lossy at 64 kb/s: close to the input, at the stated delay
        ref = pcm / 32768
        err = np.sqrt(np.mean((whole[w_lag:w_lag + n] - ref) ** 2) / np.mean(ref ** 2))
        assert err < 0.35, err


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="no encoder for 'ogg'"):
        StreamEncoder("ogg", SR)


# ----------------------------------------------------------------------------- through the server
LONG_TEXT = " ".join(f"Sentence number {i} goes on for a while to make the text long." for i in range(8))


@pytest.fixture(scope="module")
def gated(snac_random):
    """A server whose engine can be held after its ``hold_at``-th audio piece of a request until the
    client says it has received bytes (``got_bytes``)."""
    model, tok, _ = extended_tiny()
    tts = OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(0.5, 1e6, 0.5))
    engine = SpeechEngine(tts, max_batch=8, max_queue=8)
    state = {"hold_at": None, "got_bytes": threading.Event(), "released_by_client": None, "pieces": 0}
    submit = engine.submit

    def held_submit(job):
        on_piece = job.on_piece
        state["pieces"] = 0

        def piece(p):
            on_piece(p)
            state["pieces"] += 1
            if state["pieces"] == state["hold_at"]:  # synthesis paused here until the client has bytes
                state["released_by_client"] = state["got_bytes"].wait(60)

        job.on_piece = piece
        submit(job)

    engine.submit = held_submit
    with BackgroundServer(create_app(engine, "tiny")) as s:
        s.state = state
        yield s


@pytest.mark.parametrize("fmt", list(CODECS))
@pytest.mark.parametrize("sse", [False, True], ids=["audio", "sse"])
def test_every_format_streams_its_first_bytes_before_synthesis_ends(gated, fmt, sse):
    st = gated.state
    st.update(hold_at=4, released_by_client=None)
    st["got_bytes"].clear()
    body = {"model": "tiny", "input": LONG_TEXT, "response_format": fmt, "seed": 4, "stream": True}
    if sse:
        body["stream_format"] = "sse"
    chunks = []
    with requests.post(f"{gated.url}/v1/audio/speech", json=body, stream=True, timeout=120) as r:
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/event-stream" if sse else CODECS[fmt].mime)
        for chunk in (r.iter_lines() if sse else r.iter_content(chunk_size=None)):
            if not chunk:
                continue
            if sse:
                event = json.loads(chunk[len(b"data: "):])
                if event["type"] != "speech.audio.delta":
                    assert event["type"] == "speech.audio.done"
                    continue
                chunk = base64.b64decode(event["audio"])
                assert chunk  # every delta carries new bytes
            chunks.append(chunk)
            st["got_bytes"].set()
    assert st["released_by_client"] is True  # the first bytes arrived while synthesis was held
    assert st["pieces"] > st["hold_at"]  # and synthesis went on after them
    assert len(chunks) >= 3
    whole = requests.post(f"{gated.url}/v1/audio/speech", json={**body, "stream": False, "stream_format": None},
                          timeout=120)
    assert whole.status_code == 200
    got, want = decode(b"".join(chunks)), decode(whole.content)
    (s_lag, s_extra), (w_lag, _) = STREAM_SHIFT[fmt], WHOLE_SHIFT[fmt]
    if fmt in ("mp3", "opus", "flac"):
        n = len(want)  # the whole file decodes to the exact length
        assert n <= len(got) <= n + s_extra
    else:  # aac: both carry the priming and padding, in the same number of frames
        n = len(want) - w_lag
        assert len(got) == len(want)
    # the streamed PCM is within 1 LSB of the whole (serve_engine's STREAM_TOLERANCE): same audio, re-encoded
    a, b = got[s_lag:s_lag + n], want[w_lag:w_lag + n]
    m = min(len(a), len(b))
    if fmt == "flac":
        assert np.abs(a[:m] - b[:m]).max() <= 1 / 32768 + 1e-9
    else:
        # lossy: two encodes of (nearly) the same PCM differ in the codec's own choices. Measured on the tiny
        # export after #31's seeded draw: mp3 1.0, opus 0.94 (its 48 kHz output compared every second sample),
        # aac 0.91 for the same request; aac 0.78 against another seed's utterance (mp3/opus fail on length).
        assert np.corrcoef(a[:m], b[:m])[0, 1] > 0.85
