"""Compressed response formats of the speech server (mp3, opus, aac, flac), whole or as a stream.

Why PyAV (FFmpeg's libraries, bundled in the ``av`` wheels): one library gives all four
encoders (LAME, libopus, FFmpeg's AAC, FLAC) and their containers, and it encodes frame by
frame into any writable object, so a stream hands out each frame as soon as it is encoded.
libsndfile (``soundfile``) writes mp3 / ogg-opus / flac but no aac, and buffers Ogg pages.

Two ways out, one encoder:

* :class:`StreamEncoder` writes to a sink that cannot seek: ``push(samples)`` returns the
  bytes encoded so far, ``finish()`` the rest. Nothing written is ever revised, so the pieces
  joined are a valid file and every piece can be sent (or put in an SSE delta) at once;
* :func:`encode_whole` writes to a seekable buffer, so the muxer fills in at the end what a
  stream cannot know: the MP3 Xing/LAME frame (encoder delay and padding: decoders trim them,
  the file decodes to exactly the input's length) and the FLAC STREAMINFO sample count.

What each format decodes to, for ``n`` input samples at 24 kHz (FFmpeg's decoders; checked by
tests/infer/test_audio_encode.py):

======  ======================================  ==========================================
format  whole file                              stream (the pieces joined)
======  ======================================  ==========================================
flac    ``n``, lossless                         ``n``, lossless (STREAMINFO says 0 = unknown)
opus    ``n`` (Ogg pre-skip and end granule)    ``n``, same
mp3     ``n`` (LAME tag: gapless)               ``n`` + encoder delay and padding: at most
                                                :data:`MP3_STREAM_EXTRA` samples (1,105 of
                                                delay first, then the input)
aac     ``n`` + 1,024 priming + padding to a    same (ADTS has no field for either)
        1,024-sample frame: at most
        :data:`AAC_EXTRA` samples
======  ======================================  ==========================================

Bit rates are for 24 kHz mono speech: 64 kb/s mp3 and aac, 32 kb/s opus (Opus is transparent
for speech near there). Ogg pages are closed every :data:`OGG_PAGE_US` so opus streams in
pieces of about that length rather than FFmpeg's default one second.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Codec:
    mime: str
    container: str  # FFmpeg muxer
    encoder: str  # FFmpeg encoder
    bit_rate: int | None
    options: dict = field(default_factory=dict)


OGG_PAGE_US = 60_000  # an Ogg page per 60 ms of opus: stream pieces arrive at about that rate
CODECS = {
    "mp3": Codec("audio/mpeg", "mp3", "libmp3lame", 64_000),
    "opus": Codec("audio/ogg", "ogg", "libopus", 32_000, {"page_duration": str(OGG_PAGE_US)}),
    "aac": Codec("audio/aac", "adts", "aac", 64_000),  # ADTS: AAC frames with headers, streamable
    "flac": Codec("audio/flac", "flac", "flac", None),
}
MP3_DELAY = 1105  # LAME's encoder delay (576 + 529 decoder delay), samples, in a stream decode
MP3_STREAM_EXTRA = MP3_DELAY + 2 * 576  # delay, plus padding up to two 576-sample frames at 24 kHz
AAC_EXTRA = 2 * 1024  # 1,024 priming samples plus padding of the last 1,024-sample frame


class _Sink:
    """A write-only, unseekable file for the muxer: what it writes is final."""

    def __init__(self):
        self.buf = bytearray()

    def write(self, b) -> int:
        self.buf += bytes(b)
        return len(b)

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


class StreamEncoder:
    """Encodes int16 mono samples (``push``) into ``fmt`` (a key of :data:`CODECS`), returning the
    bytes produced so far on each call; ``finish()`` flushes the encoder and closes the file."""

    def __init__(self, fmt: str, sample_rate: int, *, _out=None):
        import av

        if fmt not in CODECS:
            raise ValueError(f"no encoder for {fmt!r}: choose one of {', '.join(CODECS)}")
        c = CODECS[fmt]
        self.sample_rate, self._pts = sample_rate, 0
        self._out = _Sink() if _out is None else _out
        # flush_packets: every muxed packet goes to the sink at once, not into a 32 KB I/O buffer
        self._container = av.open(self._out, mode="w", format=c.container,
                                  options={"flush_packets": "1", **c.options})
        self._stream = self._container.add_stream(c.encoder, rate=sample_rate, layout="mono")
        if c.bit_rate:
            self._stream.bit_rate = c.bit_rate
        self._closed = False

    def _take(self) -> bytes:
        return self._out.take() if isinstance(self._out, _Sink) else b""

    def push(self, pcm: np.ndarray) -> bytes:
        """``pcm``: int16 ``(n,)``; returns the newly encoded bytes (often b"" for a small piece)."""
        import av

        pcm = np.ascontiguousarray(pcm, dtype="<i2").reshape(1, -1)
        if pcm.shape[1]:
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = self.sample_rate, self._pts
            self._pts += pcm.shape[1]
            for packet in self._stream.encode(frame):  # PyAV re-chunks to the encoder's frame size
                self._container.mux(packet)
        return self._take()

    def finish(self) -> bytes:
        """The encoder's last frames and the container's trailer."""
        if not self._closed:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._closed = True
        return self._take()


def encode_whole(pcm: np.ndarray, fmt: str, sample_rate: int) -> bytes:
    """int16 ``(n,)`` -> a complete ``fmt`` file, its headers filled in (see the module doc)."""
    buf = io.BytesIO()
    enc = StreamEncoder(fmt, sample_rate, _out=buf)
    enc.push(pcm)
    enc.finish()
    return buf.getvalue()


def codec_formats() -> dict[str, str]:
    """``response_format`` -> MIME type for the :data:`CODECS` this machine's PyAV can encode
    ({} without PyAV: those formats are then refused with a message naming it)."""
    try:
        import av
    except ImportError:
        return {}
    out = {}
    for fmt, c in CODECS.items():
        try:
            av.codec.Codec(c.encoder, "w")
        except ValueError:  # av.codec.codec.UnknownCodecError: this FFmpeg build lacks the encoder
            continue
        out[fmt] = c.mime
    return out


__all__ = ["CODECS", "Codec", "OGG_PAGE_US", "MP3_DELAY", "MP3_STREAM_EXTRA", "AAC_EXTRA", "StreamEncoder",
           "encode_whole", "codec_formats"]
