"""The speech server's engine: request checks, a bounded queue, batched generation, audio encoding.

No web framework here (:mod:`helpers.infer.serve` is the HTTP layer), so the batching can be
used and tested on its own.

Batching. One worker thread owns the :class:`~helpers.infer.engine.OptimumTTS`. It takes
the oldest waiting request, adds whatever else is waiting (up to ``max_batch`` text
chunks in all), and generates every chunk of every request in ONE
:class:`~helpers.infer.generation.AudioDecoder` batch. Each row has its own seeded generator
and left padding keeps its positions, so a request's audio in a batch equals the same
request served alone (:mod:`helpers.infer.generation`'s "batch == one-by-one"; the tests
check it through HTTP). Frames are routed to their request as they complete:

* a streaming request decodes them with a sliding window (:class:`StreamDecoder`,
  3 + 3 frames of context) and hands out audio pieces as soon as they are final; the
  pieces, joined, equal the non-streamed audio to :data:`STREAM_TOLERANCE` in float,
  i.e. at most 1 LSB apart once quantized to 16-bit PCM;
* a non-streaming request is decoded whole when its rows finish, exactly as
  :meth:`OptimumTTS.generate` does (the same codes, :class:`FrameDecoder` and crossfades).

The queue is bounded (``max_queue`` waiting requests): a request that does not fit is
refused at once (:class:`QueueFullError`, HTTP 503 with ``Retry-After``) rather than
left to wait without limit. A client that goes away sets ``cancelled``: a queued job is
skipped, a running one keeps its row in the batch (the batch is one forward pass) but
its audio is dropped, and a decoder batch whose clients have all gone stops early.

Limits (documented for API users, and in the OpenAPI document): input text at most
:data:`MAX_INPUT_CHARS` characters as written (OpenAI's limit) and at most
:data:`MAX_SPOKEN_CHARS` characters once normalized to its spoken form (what the model
reads: "$1,000,000" is 19 spoken characters); text with nothing speakable left after the
speakable-text guard (only control, zero-width or emoji characters, or punctuation) is
refused; long text is cut into chunks of <= 20 s; a reference clip
at most :data:`MAX_REFERENCE_BYTES` encoded, 1-30 s of speech after trimming silence
(:mod:`helpers.infer.voices`); voice ids match :data:`VOICE_ID_PATTERN` and name a file
``<id>.json`` directly inside the voices folder, so no id reaches outside it.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import queue
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..tokens import FRAME_SIZE, VOICES, emotion_token
from ..text.guard import UnspeakableTextError
from .speed import check_speed
from .voices import ReferenceAudioError, Voice, VoiceProfile, prepare_reference

MAX_INPUT_CHARS = 4 * 1024  # OpenAI's limit for /v1/audio/speech: 4,096 characters as written
# the limit that bounds the work: characters of the SPOKEN form (helpers.text.spoken_length), what the
# model reads; 4,000 digits are ~16,000 spoken characters and held the only worker for 58-89 s
MAX_SPOKEN_CHARS = 5000  # ~5.5 min of speech at the frontend's 15 characters/s estimate
MAX_REFERENCE_BYTES = 20 * 1024 * 1024  # an encoded reference clip (a 30 s WAV at 48 kHz stereo is ~5.8 MB)
VOICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"  # saved voice-profile ids: a file name, never a path
_VOICE_ID = re.compile(VOICE_ID_PATTERN)
# response_format -> (MIME type, soundfile format, subtype); wav and pcm are written here
FORMATS = {
    "wav": ("audio/wav", None, None),
    "pcm": ("audio/pcm", None, None),  # raw signed 16-bit little-endian, mono, 24 kHz
    "flac": ("audio/flac", "FLAC", "PCM_16"),
    "mp3": ("audio/mpeg", "MP3", "MPEG_LAYER_III"),  # libsndfile >= 1.1 (bundled with soundfile 0.13)
    "opus": ("audio/ogg", "OGG", "OPUS"),  # Opus in an Ogg container, like OpenAI's
}
# cache positions of the compiled buckets the warm-up makes; every chunk that fits (prompt + its length guard's
# frames: a guard of up to ~24 s of audio) decodes in them, so serving compiles nothing for it (a 3B bucket
# compiles for minutes); a longer chunk compiles its own bucket once
WARM_CACHE_LENGTH = 2048
STREAM_FORMATS = ("wav", "pcm")  # formats whose bytes can be written before the length is known
PCM16_SCALE = 32768  # same quantization as helpers.audio.save_wav: round(x * 32768) clipped to int16


# ----------------------------------------------------------------------------- errors
class RequestError(ValueError):
    """Bad input: ``param`` names the request field, ``status`` the HTTP status (4xx)."""

    def __init__(self, param: str | None, message: str, status: int = 400, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.message, self.status, self.code = param, message, status, code


class QueueFullError(RuntimeError):
    """The bounded queue is full; retry after ``retry_after`` seconds."""

    def __init__(self, max_queue: int, retry_after: int):
        super().__init__(f"the server is busy: {max_queue} request(s) are already waiting; retry in "
                         f"{retry_after} s")
        self.retry_after = retry_after


# ----------------------------------------------------------------------------- audio bytes
def available_formats() -> dict[str, str]:
    """``response_format`` -> MIME type, for the formats this machine's libsndfile can write."""
    import soundfile as sf

    have = sf.available_formats()
    return {k: mime for k, (mime, fmt, sub) in FORMATS.items()
            if fmt is None or (fmt in have and sub in sf.available_subtypes(fmt))}


def pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 ``(n,)`` in [-1, 1] -> int16 ``(n,)`` (``round(x * 32768)``, clipped)."""
    a = np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0)
    return np.clip(np.round(a * PCM16_SCALE), -PCM16_SCALE, PCM16_SCALE - 1).astype("<i2")


def wav_header(sample_rate: int, n_samples: int | None = None) -> bytes:
    """A 44-byte PCM 16-bit mono WAV header; ``n_samples=None`` (a stream of unknown length)
    writes 0xFFFFFFFF sizes, which players read as "until the end of the stream"."""
    data = 0xFFFFFFFF if n_samples is None else 2 * n_samples
    riff = 0xFFFFFFFF if n_samples is None else 36 + data
    return (b"RIFF" + riff.to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + sample_rate.to_bytes(4, "little")
            + (2 * sample_rate).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
            + b"data" + data.to_bytes(4, "little"))


def encode_audio(audio: np.ndarray, response_format: str, sample_rate: int) -> bytes:
    """Whole audio (float32 ``(n,)``) -> the bytes of ``response_format`` (see :data:`FORMATS`)."""
    pcm = pcm16(audio)
    if response_format == "wav":
        return wav_header(sample_rate, len(pcm)) + pcm.tobytes()
    if response_format == "pcm":
        return pcm.tobytes()
    import soundfile as sf

    _, fmt, sub = FORMATS[response_format]
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format=fmt, subtype=sub)
    return buf.getvalue()


# ----------------------------------------------------------------------------- jobs
@dataclass
class SpeechJob:
    """One checked request. ``on_piece(samples)`` receives streamed float32 pieces (streaming
    jobs only); ``on_done(audio, error)`` is called once: the whole audio (``None`` when
    streamed) or the exception. Both are called from the worker thread."""

    text: str
    emotion: str | None
    seed: int
    stream: bool
    voice: Voice | None = None  # a built-in voice or a saved profile
    reference: object = None  # a PreparedReference, SNAC-encoded by the worker
    removed: tuple = ()  # what the speakable-text guard dropped from the input (X-Removed-Characters)
    speed: float = 1.0  # applied by the HTTP layer to the finished pieces (WSOLA, pitch kept)
    on_piece: Callable | None = None
    on_done: Callable | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = 0.0


class StreamRoute:
    """Turns one streaming job's frames (its chunks arrive interleaved) into pieces, in order:
    the same window decoding and crossfades as :meth:`OptimumTTS.stream`.

    ``add`` records a frame and decodes at once. A server decoding many streams on one SNAC
    worker (the vLLM backend) instead ``record``s frames of several streams, then asks each for
    its next due decoder call (:meth:`next_job`), runs those together
    (:func:`helpers.infer.snac_stream.push_batched`) and hands each its audio (:meth:`deliver`):
    the same calls in the same order, so the same pieces. ``error``: the first failure of this
    stream (its later frames are ignored)."""

    def __init__(self, engine: "SpeechEngine", job: SpeechJob, n_chunks: int):
        from .snac_decode import Joiner, StreamDecoder

        tts = engine.tts
        self.job, self.tts = job, tts
        self.joiner = Joiner(crossfade=round(engine.crossfade_ms * tts.sample_rate / 1000))
        self.decoders = [StreamDecoder(tts.frame_decoder, chunk_frames=engine.chunk_frames,
                                       first_chunk_frames=engine.first_chunk_frames) for _ in range(n_chunks)]
        self.frames: list[list] = [[] for _ in range(n_chunks)]
        self.done = [False] * n_chunks
        self.cur, self.pushed = 0, 0
        self.started = self.flushed = False
        self.error: BaseException | None = None

    def _emit(self, piece):
        if len(piece) and not self.job.cancelled.is_set():
            self.job.on_piece(piece)

    def add(self, chunk: int, frame) -> None:
        """Record a frame and run the decoder calls now due, on the SNAC side stream (CUDA): they
        overlap the language model's steps the decoder has already queued, as in ``stream``."""
        from .snac_decode import side_stream

        self.record(chunk, frame)
        with side_stream(self.tts.frame_decoder.codec.device):
            self._pump()

    def record(self, chunk: int, frame) -> None:
        """Keep chunk ``chunk``'s next frame (7 tokens), or ``None``: that chunk has ended."""
        if frame is None:
            self.done[chunk] = True
        else:
            self.frames[chunk].append(self.tts.layout.tokens_to_codes(frame))

    def _pump(self):
        while (job := self.next_job()) is not None:
            self.deliver(job.run())

    def next_job(self):
        """Emit what needs no SNAC call; return this stream's next due decoder call
        (:class:`~helpers.infer.snac_stream.SnacPush`), or None while it waits for frames. Its audio
        goes to :meth:`deliver` before the next call (one stream's calls depend on each other)."""
        while self.cur < len(self.frames):
            if not self.started:
                self._emit(self.joiner.start_piece())
                self.started = True
            sd, frames = self.decoders[self.cur], self.frames[self.cur]
            while self.pushed < len(frames):
                self.pushed += 1
                job = sd.take(frames[self.pushed - 1])
                if job is not None:
                    return job
            if not self.done[self.cur]:
                return None
            if not self.flushed:
                self.flushed = True
                job = sd.take_flush()
                if job is not None:
                    return job
            self._emit(self.joiner.end_piece())
            self.cur, self.pushed, self.started, self.flushed = self.cur + 1, 0, False, False
        self._emit(self.joiner.finish())
        return None

    def deliver(self, audio) -> None:
        self._emit(self.joiner.add(audio))


# ----------------------------------------------------------------------------- engine
class SpeechEngine:
    """Checks requests and runs them in batches on one worker thread (see the module doc).

    ``tts``: a loaded OptimumTTS. ``voices_dir``: folder of saved voice profiles
    (``<id>.json``, :class:`VoiceProfile`), or None. ``max_batch``: text chunks generated
    together; ``max_queue``: requests allowed to wait; ``retry_after_s``: the 503's hint.
    ``model_info``: what the export records (``optimum_tts.json``), shown by :meth:`voices`.
    ``warm_up``: compile the decode step's most used buckets (batch 1 and ``max_batch``'s bucket at
    :data:`WARM_CACHE_LENGTH` cache positions) on the worker thread before the first request (CUDA
    graphs belong to the thread that records them); every batch then decodes in one of them (padded
    up to it), so serving compiles nothing; None (default) = when the engine decodes compiled (CUDA). Requests
    queue meanwhile; ``warm_up_result`` holds the timings (:meth:`OptimumTTS.warm_up`).
    """

    backend = "hf"  # transformers (this module's batched AudioDecoder); helpers.infer.vllm_backend: "vllm"

    def __init__(self, tts, *, voices_dir=None, max_batch: int = 8, max_queue: int = 32,
                 retry_after_s: int = 2, crossfade_ms: float = 40.0, max_chunk_seconds: float = 20.0,
                 chunk_frames: int = 4, first_chunk_frames: int = 2, model_info: dict | None = None,
                 warm_up: bool | None = None):
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1, got {max_batch}, {max_queue}")
        self.tts = tts
        self.voices_dir = Path(voices_dir).resolve() if voices_dir is not None else None
        self.max_batch, self.max_queue, self.retry_after_s = int(max_batch), int(max_queue), int(retry_after_s)
        self.crossfade_ms, self.max_chunk_seconds = float(crossfade_ms), float(max_chunk_seconds)
        self.chunk_frames, self.first_chunk_frames = int(chunk_frames), int(first_chunk_frames)
        self.model_info = model_info or {}
        self.formats = available_formats()
        self._queue: queue.Queue = queue.Queue(maxsize=self.max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches: list[int] = []  # requests per batch run (for the tests and benchmarks)
        self.abandoned = 0  # decoder batches stopped early or skipped because all their clients had gone
        self.warm_up = getattr(tts, "compiled", None) is not None if warm_up is None else bool(warm_up)
        self.warm_up_result: dict | None = None
        from .decode_step import batch_bucket

        self.warm_batches = tuple(sorted({1, batch_bucket(self.max_batch)}))
        # after a warm-up every batch decodes in a warmed bucket (padded up to it): no compile while serving
        self._buckets = dict(batch_buckets=self.warm_batches, min_cache_length=WARM_CACHE_LENGTH) if self.warm_up else {}

    # ------------------------------------------------------------------ voices
    def saved_voice_ids(self) -> list[str]:
        if self.voices_dir is None or not self.voices_dir.is_dir():
            return []
        return sorted(p.stem for p in self.voices_dir.glob("*.json")
                      if _VOICE_ID.fullmatch(p.stem) and p.resolve().parent == self.voices_dir)

    def voices(self) -> list[dict]:
        """Built-in voices (with whether the export's training assigned a speaker to them) and saved profiles."""
        trained = self.model_info.get("trained_voices")
        out = []
        for v in VOICES:
            gender, accent, _ = v.split("_")
            item = {"id": v, "type": "builtin", "gender": gender, "accent": accent}
            if trained is not None:
                item["trained"] = v in trained
            out.append(item)
        for vid in self.saved_voice_ids():
            out.append({"id": vid, "type": "profile"})
        return out

    def _voice(self, voice: str) -> Voice:
        if voice in VOICES:
            return Voice(builtin=voice)
        saved = self.saved_voice_ids()
        known = f"built-in voices: {', '.join(VOICES)}" + (f"; saved voices: {', '.join(saved)}" if saved else "")
        if not _VOICE_ID.fullmatch(voice):
            raise RequestError("voice", f"invalid voice id {voice[:80]!r}: ids are letters, digits, '_' and '-' "
                                        f"(at most 64), not paths ({known})")
        if self.voices_dir is not None:
            path = (self.voices_dir / f"{voice}.json").resolve()
            if path.parent == self.voices_dir and path.is_file():  # a symlink out of the folder is refused
                try:
                    profile = VoiceProfile.load(path)
                except ValueError as e:
                    raise RequestError("voice", f"saved voice {voice!r} is unreadable: {e}", status=500,
                                       code="bad_voice_profile") from e
                return Voice(profile=profile)
        raise RequestError("voice", f"unknown voice {voice!r} ({known})", code="unknown_voice")

    # ------------------------------------------------------------------ checks
    def check(self, *, text, voice=None, emotion=None, seed=0, response_format="mp3", speed=None,
              reference_audio=None, stream=False) -> SpeechJob:
        """Validate a request's fields; returns a :class:`SpeechJob` or raises :class:`RequestError`
        naming the field. Runs the text frontend and reference preparation (no model)."""
        if not isinstance(text, str) or not text.strip():
            raise RequestError("input", "input is empty: give the text to speak", code="empty_input")
        if len(text) > MAX_INPUT_CHARS:
            raise RequestError("input", f"input is {len(text)} characters; at most {MAX_INPUT_CHARS} are allowed "
                                        f"(split longer text over several requests)", code="input_too_long")
        try:  # the speakable-text guard: control / zero-width / emoji characters never reach the prompt
            spoken = self.tts.check_text(text)
        except UnspeakableTextError as e:
            raise RequestError("input", str(e), code="unspeakable_input") from e
        except ValueError as e:
            raise RequestError("input", str(e), code="input_too_long") from e
        if len(spoken) > MAX_SPOKEN_CHARS:
            raise RequestError("input", f"input is {len(spoken):,} characters when spoken ({len(text):,} as "
                                        f"written); at most {MAX_SPOKEN_CHARS:,} spoken characters are allowed "
                                        f"(numbers and symbols are read out: split the text over several "
                                        f"requests)", code="input_too_long")
        if response_format not in self.formats:
            raise RequestError("response_format", f"unsupported response_format {response_format!r}: choose one "
                                                  f"of {', '.join(self.formats)}", code="unsupported_format")
        if stream and response_format not in STREAM_FORMATS:
            raise RequestError("response_format", f"streaming sends {' or '.join(STREAM_FORMATS)} (bytes written "
                                                  f"before the length is known); got {response_format!r}",
                               code="unsupported_format")
        try:  # 0.25-4.0 as in OpenAI's API; applied to the audio by time-scaling (helpers.infer.speed)
            speed = check_speed(speed)
        except ValueError as e:
            raise RequestError("speed", str(e)) from e
        if emotion is not None:
            try:
                emotion_token(emotion)
            except ValueError as e:
                raise RequestError("emotion", str(e), code="unknown_emotion") from e
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
            raise RequestError("seed", f"seed must be an integer in [0, 2**63), got {seed!r}")
        # the job carries the spoken form: it normalizes to itself, so the worker does not redo the digits
        job = SpeechJob(text=spoken.text, emotion=emotion, seed=seed, stream=bool(stream), removed=spoken.removed,
                        speed=speed)
        if reference_audio is not None:
            if voice is not None:
                raise RequestError("reference_audio", "give voice (a built-in or saved voice) or reference_audio "
                                                      "(a clip to clone), not both")
            job.reference = self._reference(reference_audio)
        else:
            job.voice = self._voice(voice if voice is not None else VOICES[0])
        try:  # the text frontend: inline [emotion] tags, normalization, chunking
            self.tts.plan(spoken.text, job.voice or Voice(builtin=VOICES[0]), emotion, seed, self.max_chunk_seconds)
        except ValueError as e:
            raise RequestError("input", str(e)) from e
        return job

    def _reference(self, data) -> object:
        if not isinstance(data, str):
            raise RequestError("reference_audio", "reference_audio must be a base64 string of an audio file")
        if len(data) > MAX_REFERENCE_BYTES * 4 // 3 + 4:
            raise RequestError("reference_audio", f"reference_audio is over {MAX_REFERENCE_BYTES // 2 ** 20} MB",
                               status=413, code="reference_too_large")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError("reference_audio", f"reference_audio is not valid base64: {e}") from e
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # short/long-reference notes: the request goes on
                return prepare_reference(raw, self.tts.sample_rate)
        except ReferenceAudioError as e:
            raise RequestError("reference_audio", str(e), code="bad_reference") from e
        except Exception as e:  # libsndfile's error for bytes that are no audio file it knows
            raise RequestError("reference_audio", f"reference_audio is not a readable audio file "
                                                  f"(wav, flac, ogg, mp3): {e}", code="bad_reference") from e

    # ------------------------------------------------------------------ queue
    def submit(self, job: SpeechJob) -> None:
        """Queue a checked job; raises :class:`QueueFullError` when ``max_queue`` are waiting."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the engine is not running: call start()")
        job.queued_at = time.perf_counter()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(self.max_queue, self.retry_after_s) from None

    def synthesize(self, job: SpeechJob, timeout: float = 600.0) -> np.ndarray:
        """Blocking convenience (tests, benchmarks): submit a non-streaming job and wait for its audio."""
        done = threading.Event()
        box = {}

        def on_done(audio, error):
            box.update(audio=audio, error=error)
            done.set()

        job.on_done, job.stream = on_done, False
        self.submit(job)
        if not done.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        if box["error"] is not None:
            raise box["error"]
        return box["audio"]

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def start(self) -> "SpeechEngine":
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="optimumllm-tts-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self):
        if self.warm_up and self.warm_up_result is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.warm_up_result = self.tts.warm_up(batches=self.warm_batches, lengths=(WARM_CACHE_LENGTH,))
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:  # whatever else is already waiting
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self.run_batch(batch)

    # ------------------------------------------------------------------ generation
    def _prepare(self, job: SpeechJob) -> list[dict]:
        if job.reference is not None:
            ref = job.reference
            codes = self.tts.codec.encode(ref.wav)
            job.voice = Voice(profile=VoiceProfile(name="reference", codes=codes, codec=self.tts.codec.name,
                                                   seconds=ref.seconds, source="request"))
        plan = self.tts.plan(job.text, job.voice, job.emotion, job.seed, self.max_chunk_seconds)
        limit = getattr(self.tts.model.config, "max_position_embeddings", None)
        for p in plan:
            need = len(p["prompt"]) + p["max_frames"] * FRAME_SIZE + 1
            if limit is not None and need > limit:
                raise RequestError("reference_audio" if job.reference is not None else "input",
                                   f"the prompt and its audio need {need} positions, the model has {limit}: "
                                   f"use a shorter reference clip or text")
        return plan

    def run_batch(self, batch: list[SpeechJob]) -> None:
        """Generate every chunk of every job in one decoder batch; deliver audio and errors."""
        from .generation import SamplingConfig

        tts = self.tts
        jobs, plans = [], []
        for job in batch:
            if job.cancelled.is_set():
                continue
            try:
                plans.append(self._prepare(job))
                jobs.append(job)
            except Exception as e:  # this job only; the rest of the batch goes on
                job.on_done(None, e)
        if not jobs:
            return
        self.batches.append(len(jobs))
        rows = [(j, k, c) for j, plan in enumerate(plans) for k, c in enumerate(plan)]
        routes = {j: StreamRoute(self, job, len(plans[j])) for j, job in enumerate(jobs) if job.stream}
        try:
            # rows of one batch run in lock step; more rows than max_batch run as further batches
            for start in range(0, len(rows), self.max_batch):
                part = rows[start:start + self.max_batch]
                owners = [jobs[j] for j in {j for j, _, _ in part}]
                if all(o.cancelled.is_set() for o in owners):
                    self.abandoned += 1  # every client of these rows has gone: skip them
                    continue
                dec = tts.decoder([c for _, _, c in part], SamplingConfig(), **self._buckets)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # length/loop notes are per row, in the results
                    for ev in dec:
                        j, k, _ = part[ev.row]
                        if j in routes:
                            routes[j].add(k, ev.frame)
                        if all(o.cancelled.is_set() for o in owners):
                            self.abandoned += 1  # nobody is listening: stop generating these rows
                            break
                if dec.results is not None:
                    for (j, k, c), g in zip(part, dec.results):
                        c["generated"] = g
        except Exception as e:
            for job in jobs:
                job.on_done(None, e)
            return
        for job, plan in zip(jobs, plans):
            if job.stream or job.cancelled.is_set():
                job.on_done(None, None)
                continue
            try:
                job.on_done(self._assemble([c["generated"] for c in plan]), None)
            except Exception as e:
                job.on_done(None, e)

    def _assemble(self, gens) -> np.ndarray:
        """Whole decode of a job's chunks, joined like :meth:`OptimumTTS.generate`."""
        from .snac_decode import Joiner

        tts = self.tts
        joiner = Joiner(crossfade=round(self.crossfade_ms * tts.sample_rate / 1000))
        parts = []
        for g in gens:
            parts += [joiner.start_piece(), joiner.add(tts.frame_decoder.decode(g.codes)), joiner.end_piece()]
        parts.append(joiner.finish())
        return np.concatenate(parts)


def read_model_info(folder) -> dict:
    """The export's ``optimum_tts.json`` ({} when the folder has none)."""
    from .engine import INFERENCE_CONFIG

    f = Path(folder) / INFERENCE_CONFIG
    return json.loads(f.read_text()) if f.is_file() else {}


__all__ = ["MAX_INPUT_CHARS", "MAX_REFERENCE_BYTES", "VOICE_ID_PATTERN", "FORMATS", "STREAM_FORMATS", "RequestError",
           "QueueFullError", "SpeechJob", "SpeechEngine", "encode_audio", "wav_header", "pcm16", "available_formats",
           "read_model_info",]
