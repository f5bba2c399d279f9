"""An OpenAI-compatible speech server for an exported model.

::

    pip install "optimumllm-audio[serve]"
    python -m optimumllm_audio.serve --model optimumai/OptimumLLM-Audio-1.0 --port 8000
    curl http://127.0.0.1:8000/v1/audio/speech -H "Content-Type: application/json" \\
         -d '{"model": "OptimumLLM-Audio-1.0", "input": "Hello there.", "voice": "female_us_01",
              "response_format": "wav", "emotion": "happy"}' -o hello.wav

(From a checkout: ``python -m helpers.infer.serve --model runs/<name>/export``.)

Why FastAPI + uvicorn: the most used, actively maintained Python ASGI pair; request
bodies are validated against a typed model (each error names its field), streaming
responses and client disconnects are first-class, and the OpenAI-compatible servers
people already run in front of TTS models (e.g. for Orpheus) use the same pair, so
their clients work unchanged. The engine behind it is framework-free
(:mod:`helpers.infer.serve_engine`: checks, bounded queue, batching, encoders).

Endpoints
---------
``POST /v1/audio/speech``: OpenAI's fields ``model`` (one of the names /v1/models lists, or
left out: one model is served), ``input`` (1 to :data:`MAX_INPUT_CHARS` characters as written
and at most :data:`MAX_SPOKEN_CHARS` once normalized to the spoken form; nothing speakable -> 400),
``voice`` (a built-in voice, an OpenAI voice name through the alias table
(:mod:`helpers.infer.openai_compat`, ``--voice-aliases``), a saved voice id, or OpenAI's
object form ``{"id": ...}``; default ``male_us_01``), ``instructions`` (free text up
to 4,096 characters: emotion and pace words are applied where present, the rest ignored, and the
``x-speech-applied`` header says what was used; ``--strict-instructions``: 400 unless a trained
emotion is named), ``response_format`` (``mp3`` default as in OpenAI's API,
``opus`` (Ogg), ``aac`` (ADTS), ``flac``, ``wav``, ``pcm`` = raw 16-bit little-endian mono 24 kHz),
``speed`` (0.25-4.0, time-scaling with the pitch kept, :mod:`helpers.infer.speed`), ``stream_format``
(``audio``: the bytes; ``sse``: OpenAI's server-sent events, each ``speech.audio.delta`` carrying
the newly encoded bytes in base64, then ``speech.audio.done``). Every format streams as frames
are decoded, mp3 / opus / aac / flac encoded frame by frame (:mod:`helpers.infer.audio_encode`,
which states what each decodes to). ``pcm``, ``mp3``, ``opus`` and ``aac`` stream by default
(their pieces joined are a complete file); ``wav`` and ``flac`` come whole by default, their
headers stating the true length (a client that saves the body gets a file Python's ``wave``, sox
and libsndfile read alike), and stream with ``"stream": true`` or over SSE (a streamed WAV's
header carries 0xFFFFFFFF sizes, "until the end"; a streamed FLAC's sample count is 0, "unknown"):
for the lowest latency ask for ``pcm``, raw samples with no header or encoder delay. Streamed
samples equal the non-streamed ones to within 1 LSB of 16-bit PCM. Extensions:
``emotion``, ``reference_audio`` (base64 of an audio file, 1-30 s of speech: zero-shot
cloning, instead of ``voice``), ``seed`` (same seed, same audio; default 0), ``stream``
(``false``: one body, encoded whole (mp3 gapless, exact length); ``true``: stream wav / flac too).
Characters the speakable-text guard removed (control, zero-width, emoji) are listed in the
``X-Removed-Characters`` header.

``GET /v1/models``: the model's id (``--model-name``, default the export's name) and the OpenAI
names it also answers to (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``, ``--model-alias``); a
request naming another model is a 404 ``model_not_found``. ``GET /v1/voices``: built-in voices
(gender, accent, trained or not), OpenAI aliases, saved voices, emotions. ``GET /health``: status, backend
(``hf`` or ``vllm``), queue length and limits. ``GET /openapi.json``: this API, as served.

Every error, 404 and 405 included, is OpenAI-shaped JSON,
``{"error": {"message", "type", "param", "code"}}``: 400 for bad input (``param`` names the
field; bodies that are no UTF-8, no JSON or nested too deep too; a foreign ``Host``), 401 for a
missing or wrong API key, 404 / 405 for unknown paths and methods, 413 for an oversized body or
reference, 415 for a body not sent as ``application/json``, 503 with ``Retry-After`` when the
queue is full, 500 if generation itself fails.

Safety (:mod:`helpers.infer.serve_guard`; README "Exposing the server"): the server binds
127.0.0.1 unless ``--host`` says otherwise; JSON is read only under ``application/json``; no
CORS header unless ``--cors-origin``; a ``Host`` that is neither an IP address, localhost, the
bound name nor an ``--allowed-host`` is refused (DNS rebinding); ``--api-key`` (or
``$OPTIMUMLLM_AUDIO_API_KEY``) requires ``Authorization: Bearer <key>`` on /v1/.
"""

import argparse
import asyncio
import base64
import ipaddress
import json
import logging
import os
import sys
from pathlib import Path

from ..tokens import DEFAULT_EMOTION, EMOTIONS, VOICES
from .audio_encode import CODECS, StreamEncoder, codec_formats, encode_whole
from .openai_compat import MAX_INSTRUCTIONS_CHARS, CompatError, load_voice_aliases, read_instructions, resolve_voice
from .serve_engine import (FORMATS, MAX_INPUT_CHARS, MAX_REFERENCE_BYTES, MAX_SPOKEN_CHARS,
                           QueueFullError, RequestError, SpeechEngine, encode_audio, pcm16, read_model_info,
                           wav_header)
from .serve_guard import API_KEY_ENV, Guard, GuardError, check_json_content_type, parse_json_body
from .speed import SPEED_MAX, SPEED_MIN, SpeedStream, change_speed

DEFAULT_HOST = "127.0.0.1"  # loopback: nothing outside this machine can reach the server unless asked
DEFAULT_PORT = 8000
BACKENDS = ("hf", "vllm", "auto")
OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # names OpenAI clients default to: all served here
# formats streamed when the request does not say: those whose bytes, joined, are the whole file anyway.
# wav and flac state their length in a header a stream cannot fill in: whole unless "stream": true or SSE
DEFAULT_STREAMED = ("pcm", "mp3", "opus", "aac")
MAX_BODY_BYTES = MAX_REFERENCE_BYTES * 4 // 3 + 64 * 1024  # a base64 reference clip and the other fields
log = logging.getLogger("optimumllm_audio.serve")
APPLIED_HEADER = "x-speech-applied"  # what the request's emotion / speed resolved to (instructions read)
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          503: "server_busy"}


def _error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param, "code": code}}


def _error(status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
    from fastapi.responses import JSONResponse

    return JSONResponse(_error_body(status, message, code, param), status_code=status, headers=headers)


def _removed_header(removed) -> dict:
    return {"X-Removed-Characters": "; ".join(f"{name} x{n}" for name, n in removed)} if removed else {}


def _sse(event: dict) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def applied_header(emotion: str | None, speed: float, reading, body_emotion=None, body_speed=None) -> dict:
    """``x-speech-applied: emotion=happy; speed=1.2; matched=cheerful,quickly; untrained=sleepy``:
    what was used (``matched``: the instructions' words that set it, where the request's own
    ``emotion`` / ``speed`` did not; ``untrained``: emotions they named that the model lacks,
    ignored). ASCII only: keywords are ``[a-z-]`` words."""
    parts = [f"emotion={emotion or DEFAULT_EMOTION}", f"speed={speed:g}"]
    matched = [w for w, overridden in ((reading.emotion_word, body_emotion is not None),
                                       (reading.speed_word, body_speed is not None)) if w and not overridden]
    if matched:
        parts.append("matched=" + ",".join(matched))
    if reading.untrained:
        parts.append("untrained=" + ",".join(reading.untrained))
    return {APPLIED_HEADER: "; ".join(parts)}


def served_model_id(model: str) -> str:
    """The id ``/v1/models`` shows for ``--model``: a folder's name (the run's, for ``<run>/export``),
    or a hub id's last part (``optimumai/OptimumLLM-Audio-1.0`` -> ``OptimumLLM-Audio-1.0``)."""
    p = Path(model).expanduser()
    if p.exists():
        p = p.resolve()
        return p.parent.name if p.name == "export" and p.parent.name else p.name
    return model.rstrip("/").split("/")[-1]


def trained_emotions(engine) -> list[str]:
    """The emotions ``instructions`` may select: the export's coverage record, else all of them."""
    return list((engine.tts.coverage or {}).get("trained_emotions") or EMOTIONS)


def _decoding(engine) -> str | None:
    """The HF engine's decoding ("compiled" / "eager"; None for vLLM, which decodes its own way)."""
    tts = getattr(engine, "tts", None)
    if getattr(engine, "backend", "hf") != "hf" or tts is None:
        return None
    return "eager" if getattr(tts, "compiled", None) is None else "compiled"


def create_app(engine: SpeechEngine, model_name: str = "optimumllm-audio", voice_aliases: dict | None = None, *,
               api_key: str | None = None, cors_origins=(), allowed_hosts=(), strict_instructions: bool = False,
               model_aliases=()):
    """The FastAPI app over a (not yet started) :class:`SpeechEngine`; the app starts and
    stops the engine with its lifespan. ``voice_aliases``: OpenAI voice name -> built-in voice
    (default: :func:`helpers.infer.openai_compat.load_voice_aliases`, the shipped table).

    Safety (:mod:`helpers.infer.serve_guard`): ``api_key`` required as ``Authorization: Bearer``
    on /v1/ paths when given; ``cors_origins``: origins a browser page may call from (none by
    default: no CORS header at all); ``allowed_hosts``: host names accepted in ``Host`` beside IP
    addresses and localhost (``"*"``: any). ``strict_instructions``: instructions naming no trained
    emotion get a 400 (default: read what can be followed, neutral otherwise; see
    :func:`helpers.infer.openai_compat.read_instructions`).

    Models: ``model_name`` and OpenAI's :data:`OPENAI_TTS_MODELS` are listed by /v1/models and
    accepted; ``model_aliases`` adds names (``"*"``: any name); another ``model`` is a 404."""
    from contextlib import asynccontextmanager
    from typing import Literal

    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.exceptions import HTTPException

    aliases = load_voice_aliases() if voice_aliases is None else dict(voice_aliases)
    model_aliases = [m for m in model_aliases if m != model_name]
    model_ids = list(dict.fromkeys([model_name, *OPENAI_TTS_MODELS, *(m for m in model_aliases if m != "*")]))
    any_model = "*" in model_aliases

    class VoiceObject(BaseModel):
        """OpenAI's voice object."""

        model_config = ConfigDict(extra="forbid")
        id: str = Field(min_length=1, max_length=64)

    class SpeechRequest(BaseModel):
        """Body of POST /v1/audio/speech (see the module docstring)."""

        model_config = ConfigDict(extra="forbid")
        model: str | None = None
        input: str = Field(min_length=1, max_length=MAX_INPUT_CHARS, description=(
            f"The text to speak: 1 to {MAX_INPUT_CHARS:,} characters as written, and at most "
            f"{MAX_SPOKEN_CHARS:,} characters once normalized to its spoken form (numbers, symbols and "
            f"abbreviations read out: 4,000 digits are ~16,000 spoken characters); text with nothing "
            f"speakable left after removing control, zero-width and emoji characters answers 400."))
        voice: str | VoiceObject | None = Field(None, description=(
            "A built-in voice, an OpenAI voice name (alias table: GET /v1/voices), a saved voice id, or "
            '{"id": ...}'))
        instructions: str | None = Field(None, max_length=MAX_INSTRUCTIONS_CHARS, description=(
            "Free text (OpenAI's limit). Emotion keywords ('speak cheerfully' -> happy) and pace words ('slowly' -> "
            "speed 0.85) are applied where present, the rest ignored; the x-speech-applied header says what was "
            "used. A server run with --strict-instructions refuses instructions naming no trained emotion"))
        response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
        speed: float | None = Field(None, ge=SPEED_MIN, le=SPEED_MAX)
        stream_format: Literal["audio", "sse"] | None = None
        emotion: str | None = None
        reference_audio: str | None = Field(None, max_length=MAX_REFERENCE_BYTES * 4 // 3 + 4)
        seed: int = Field(0, ge=0, le=2 ** 63 - 1)
        stream: bool | None = None

    class ErrorDetail(BaseModel):
        message: str
        type: str
        param: str | None
        code: str | None

    class ErrorResponse(BaseModel):
        error: ErrorDetail

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="OptimumLLM Audio speech server", lifespan=lifespan)
    # wav / pcm written by the engine module; mp3, opus, aac, flac by PyAV, every one streamable
    formats = {**{k: v for k, v in engine.formats.items() if k not in CODECS}, **codec_formats()}
    engine.formats = formats  # /health lists what this server answers
    cors_origins = list(cors_origins)
    if cors_origins:  # only when asked: by default a browser page on another origin cannot read an answer
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    # added last, so outermost: the Host and key checks run before CORS and routing
    app.add_middleware(Guard, api_key=api_key, allowed_hosts=allowed_hosts, error_body=_error_body,
                       preflight=bool(cors_origins))
    sr = engine.tts.sample_rate

    def _validation(errors) -> "Response":
        first = errors[0]
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = loc[0] if loc else None
        if first.get("type") == "string_too_long" and param == "input":
            return _error(400, f"input is longer than {MAX_INPUT_CHARS} characters (the limit; split longer "
                               f"text over several requests)", "input", "input_too_long")
        if first.get("type") == "extra_forbidden":
            return _error(400, f"unknown field {loc[-1]!r}", loc[-1], "unknown_field")
        return _error(400, f"{'.'.join(loc) or 'body'}: {first.get('msg')}", param, first.get("type"))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        return _validation(exc.errors())

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        if exc.status_code == 404:
            msg = f"no such path: {request.method} {request.url.path} (see GET /openapi.json)"
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}"
        else:
            msg = str(exc.detail)
        return _error(exc.status_code, msg, None, {404: "unknown_url", 405: "method_not_allowed"}.get(
            exc.status_code), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestError)
    async def _bad(request, exc: RequestError):
        return _error(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(QueueFullError)
    async def _busy(request, exc: QueueFullError):
        return _error(503, str(exc), None, "queue_full", headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Exception)
    async def _crash(request, exc: Exception):
        return _error(500, f"internal error: {type(exc).__name__}: {exc}", None, "internal_error")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name, "backend": getattr(engine, "backend", "hf"), "sample_rate": sr,
                "waiting": engine.waiting, "max_queue": engine.max_queue, "max_batch": engine.max_batch,
                "formats": list(engine.formats), "max_input_chars": MAX_INPUT_CHARS,
                "max_spoken_chars": MAX_SPOKEN_CHARS,
                "backend_reason": getattr(engine, "backend_reason", None),  # --backend auto's choice (issue 31)
                "decoding": _decoding(engine), "warm_up": getattr(engine, "warm_up_result", None)}

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "optimumllm-audio"}
                                           for m in model_ids]}

    @app.get("/v1/voices")
    async def voices() -> dict:
        return {"voices": engine.voices(), "aliases": aliases, "emotions": list(EMOTIONS),
                "trained_emotions": trained_emotions(engine), "default_voice": engine.voices()[0]["id"]}

    async def _body(request: Request) -> "SpeechRequest":
        try:  # first: a cross-site page can send text/plain without a preflight, never application/json
            check_json_content_type(request.headers.get("content-type"))
        except GuardError as e:
            raise RequestError(None, e.message, e.status, e.code) from None
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > MAX_BODY_BYTES:
            raise RequestError(None, f"the body is over {MAX_BODY_BYTES:,} bytes", 413, "body_too_large")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise RequestError(None, f"the body is over {MAX_BODY_BYTES:,} bytes", 413, "body_too_large")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RequestError(None, f"the body is not valid UTF-8 (byte {e.start}): send JSON in UTF-8",
                               code="invalid_utf8") from None
        try:
            data = parse_json_body(text)  # depth counted first: the same 400 on every Python version
        except GuardError as e:
            raise RequestError(None, e.message, e.status, e.code) from None
        except RecursionError:  # not expected after the depth check; kept so a parser change fails cleanly
            raise RequestError(None, "the body's JSON is nested too deeply", code="json_too_deep") from None
        except ValueError as e:
            raise RequestError(None, f"the body is not valid JSON: {e}", code="json_invalid") from None
        if not isinstance(data, dict):
            raise RequestError(None, f"the body must be a JSON object, got {type(data).__name__}",
                               code="json_invalid")
        try:
            return SpeechRequest.model_validate(data)
        except ValidationError as e:
            raise _Invalid(e.errors()) from None
        except RecursionError:
            raise RequestError(None, "the body's JSON is nested too deeply", code="json_too_deep") from None

    class _Invalid(Exception):
        def __init__(self, errors):
            self.errors = errors

    @app.exception_handler(_Invalid)
    async def _invalid_body(request, exc):
        return _validation(exc.errors)

    audio_types = {mime: {"schema": {"type": "string", "format": "binary"}}
                   for mime in dict.fromkeys([*(m for m, _, _ in FORMATS.values()),
                                              *(c.mime for c in CODECS.values())])}
    audio_types["text/event-stream"] = {"schema": {"type": "string"}}
    errors = {code: {"model": ErrorResponse, "description": what} for code, what in (
        (400, "bad input: `param` names the field; or a Host that is not this server's"),
        (404, "the model is not served here"),
        (401, "missing or wrong API key (when the server has one)"), (413, "body or reference clip too large"),
        (415, "the body is not sent as application/json"),
        (500, "generation failed"), (503, "the queue is full: retry after Retry-After seconds"))}

    @app.post("/v1/audio/speech", response_class=Response,
              responses={200: {"content": audio_types, "description": "the audio (or SSE events)"}, **errors},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/SpeechRequest"}}}}})
    async def speech(request: Request):
        body = await _body(request)
        if body.model is not None and body.model not in model_ids and not any_model:
            raise RequestError("model", f"model {body.model[:100]!r} is not served here; this server answers to "
                                        f"{', '.join(model_ids)} (all the same model; the server's --model-alias "
                                        f"adds names)", 404, "model_not_found")
        sse = body.stream_format == "sse"
        fmt = body.response_format
        if body.stream is False and sse:
            raise RequestError("stream_format", "stream_format 'sse' streams events: leave stream out or true")
        if fmt not in formats:
            raise RequestError("response_format", f"unsupported response_format {fmt!r} on this machine: choose one "
                                                  f"of {', '.join(formats)}" + (
                                                      " (mp3, opus, aac and flac need PyAV: pip install av)"
                                                      if fmt in CODECS else ""), code="unsupported_format")
        # by default wav and flac come whole, their headers stating the true length: clients that buffer
        # the body and save it (litellm, the Node SDK) get a file every reader agrees on; the rest stream
        stream = body.stream if body.stream is not None else (sse or fmt in DEFAULT_STREAMED)
        try:
            voice = resolve_voice(body.voice.model_dump() if body.voice is not None and not isinstance(
                body.voice, str) else body.voice, aliases)
            reading = read_instructions(body.instructions, trained_emotions(engine), strict=strict_instructions)
        except CompatError as e:
            raise RequestError(e.param, e.message, code=e.code) from None
        emotion = reading.emotion
        if strict_instructions and emotion is not None and body.emotion is not None and emotion != body.emotion:
            raise RequestError("instructions", f"instructions ask for {emotion!r} but emotion is {body.emotion!r}: "
                                               f"give one of them")
        # the explicit fields win over what the instructions imply (they say exactly what is wanted)
        emotion = body.emotion if body.emotion is not None else emotion
        speed_in = body.speed if body.speed is not None else reading.speed
        engine_stream = bool(stream)  # every format streams (compressed ones frame by frame: audio_encode)
        try:  # the engine validates wav / pcm; for the compressed formats it is handed raw samples (pcm)
            job = await run_in_threadpool(engine.check, text=body.input, voice=voice, emotion=emotion,
                                          seed=body.seed, response_format="pcm" if fmt in CODECS else fmt,
                                          speed=speed_in,
                                          reference_audio=body.reference_audio, stream=engine_stream)
        except RequestError as e:
            if e.param == "voice" and e.code in ("unknown_voice", "invalid_value"):
                raise _unknown_voice(voice, e) from None
            raise
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job.on_piece = lambda piece: loop.call_soon_threadsafe(events.put_nowait, ("piece", piece))
        job.on_done = lambda audio, err: loop.call_soon_threadsafe(events.put_nowait, ("done", (audio, err)))
        engine.submit(job)  # QueueFullError -> 503
        headers = {**_removed_header(job.removed),
                   **applied_header(emotion, job.speed, reading, body.emotion, body.speed)}
        log.info("speech: %s (%d characters)", headers[APPLIED_HEADER], len(job.text))
        media = "text/event-stream" if sse else formats[fmt]
        try:
            kind, value = await events.get()  # first audio, or the end (result or error)
        except asyncio.CancelledError:
            job.cancelled.set()
            raise
        if kind == "done" and value[1] is not None:
            err = value[1]
            if isinstance(err, RequestError):
                return _error(err.status, err.message, err.param, err.code)
            return _error(500, f"generation failed: {type(err).__name__}: {err}", None, "generation_failed")
        if not engine_stream:  # sse always streams (stream false with sse is refused above)
            audio = value[0] if job.speed == 1.0 else await run_in_threadpool(change_speed, value[0], job.speed)
            if fmt in CODECS:
                data = await run_in_threadpool(encode_whole, pcm16(audio), fmt, sr)
            else:
                data = await run_in_threadpool(encode_audio, audio, fmt, sr)
            return Response(data, media_type=media, headers=headers)
        speed = SpeedStream(job.speed)
        encoder = StreamEncoder(fmt, sr) if fmt in CODECS else None
        sent = [0]  # samples handed out

        def encode(samples) -> bytes:
            sent[0] += len(samples)
            pcm = pcm16(samples)
            return encoder.push(pcm) if encoder is not None else pcm.tobytes()

        async def pieces():
            """Audio bytes as frames are decoded (speed applied) and encoded; empty chunks are not sent."""
            try:
                if fmt == "wav":
                    yield wav_header(sr)
                item = (kind, value)
                while True:
                    k, v = item
                    if k == "piece":
                        out = encode(speed.push(v))
                        if out:
                            yield out
                    elif v[1] is not None:  # failed after audio was sent: abort, never a silently short file
                        raise RuntimeError(f"generation failed mid-stream: {v[1]}")
                    else:
                        out = encode(speed.flush()) + (encoder.finish() if encoder is not None else b"")
                        if out:
                            yield out
                        return
                    item = await events.get()
            finally:
                job.cancelled.set()  # client gone or done: the engine drops any further pieces

        if not sse:
            return StreamingResponse(pieces(), media_type=media, headers=headers)

        async def events_sse():
            async for chunk in pieces():
                yield _sse({"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()})
            yield _sse({"type": "speech.audio.done", "usage": _usage(job, sent[0])})

        return StreamingResponse(events_sse(), media_type=media, headers=headers)

    def _unknown_voice(voice: str, err: RequestError) -> RequestError:
        """The engine's unknown-voice error, listing every name accepted here (OpenAI's too)."""
        saved = engine.saved_voice_ids()
        why = ("is not a voice" if err.code == "unknown_voice"
               else "is not a voice id (letters, digits, '_' and '-', not paths)")
        return RequestError("voice", f"{voice[:80]!r} {why}; accepted: built-in voices {', '.join(VOICES)}; OpenAI "
                                     f"voices {', '.join(aliases)}" + (f"; saved voices {', '.join(saved)}"
                                                                       if saved else ""), err.status, err.code)

    def _usage(job, n_samples: int) -> dict:
        """Token counts in OpenAI's shape: text tokens of the spoken input, 7 audio tokens per SNAC frame."""
        n_in = len(engine.tts.tokenizer.encode(job.text, add_special_tokens=False))
        n_out = 7 * -(-round(n_samples * job.speed) // engine.tts.codec.samples_per_frame)  # frames generated
        return {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}

    def openapi():
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(title=app.title, version="1", routes=app.routes,
                              description="OpenAI-compatible speech API (see helpers/infer/serve.py)")
            schema = SpeechRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = doc.setdefault("components", {}).setdefault("schemas", {})
            comps.update(schema.pop("$defs", {}))
            comps["SpeechRequest"] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    return app


class BackgroundServer:
    """Serve ``app`` with uvicorn in a daemon thread (notebooks, tests, benchmarks)::

        with BackgroundServer(create_app(engine)) as server:
            requests.post(f"{server.url}/v1/audio/speech", json={...})

    ``port=0`` picks a free port; ``url`` is known once entered.
    """

    def __init__(self, app, host: str = DEFAULT_HOST, port: int = 0, log_level: str = "warning"):
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.bind((host, port))
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True,
                                       name="optimumllm-tts-http")

    def __enter__(self) -> "BackgroundServer":
        import time

        self.thread.start()
        for _ in range(600):  # bounded: 60 s
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            time.sleep(0.1)
        raise RuntimeError(f"the server at {self.url} did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def pick_backend(backend: str, device: str | None = None) -> str:
    """``auto`` -> ``vllm`` on CUDA when vLLM imports, else ``hf``; ``hf`` / ``vllm`` as given."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    import importlib.util

    import torch

    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    return "vllm" if cuda and importlib.util.find_spec("vllm") is not None else "hf"


def load_engine(model: str, *, snac: str | None = None, device: str | None = None, voices_dir=None,
                max_seconds: float | None = None, max_batch: int = 8, max_queue: int = 32,
                backend: str = "hf", compile="auto", warm_up: bool | None = None) -> SpeechEngine:
    """Load ``model`` (hub id, export folder or run directory) into a :class:`SpeechEngine`
    (``backend="hf"``) or a :class:`helpers.infer.vllm_backend.VLLMSpeechEngine` (``"vllm"``;
    ``"auto"``: :func:`pick_backend`). ``max_seconds``: cap on the audio of one text chunk.
    HF engine only: ``compile`` ("auto": compiled decoding on CUDA, eager on CPU; True; False) and
    ``warm_up`` (compile the decode step's buckets before the first request; None: when compiled)."""
    if compile not in ("auto", True, False):
        raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
    from .engine import OptimumTTS, find_model_folder
    from .generation import LengthGuard

    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    def vllm():
        from .vllm_backend import load_vllm_engine  # vLLM: imported only when asked for

        return load_vllm_engine(model, snac=snac, device=device, voices_dir=voices_dir, max_seconds=max_seconds,
                                max_batch=max_batch, max_queue=max_queue)

    def hf():
        kw = {}
        if max_seconds is not None:
            kw["length_guard"] = LengthGuard(base_seconds=min(LengthGuard().base_seconds, max_seconds),
                                             cap_seconds=float(max_seconds))
        tts = OptimumTTS.from_pretrained(model, snac=snac, device=device, compile=compile, **kw)
        info = read_model_info(find_model_folder(model)) if Path(model).expanduser().exists() else {}
        return SpeechEngine(tts, voices_dir=voices_dir, max_batch=max_batch, max_queue=max_queue, model_info=info,
                            warm_up=warm_up)

    if backend == "auto":  # vLLM only if installed and its start-up self-test passes (issue 31)
        from .vllm_backend import auto_engine

        return auto_engine(vllm, hf, device=device)
    return vllm() if pick_backend(backend, device) == "vllm" else hf()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m optimumllm_audio.serve", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="hub id, exported model folder or run directory")
    ap.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default: loopback only)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--voices", default=None, help="folder of saved voice profiles (<id>.json)")
    ap.add_argument("--snac", default=None, help="codec (default: the one the export names)")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: cuda if present)")
    ap.add_argument("--max-seconds", type=float, default=None, help="cap on the audio of one text chunk")
    ap.add_argument("--max-batch", type=int, default=8, help="text chunks generated together")
    ap.add_argument("--max-queue", type=int, default=32, help="requests allowed to wait; more get 503")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="hf (transformers), vllm, or auto: vllm on CUDA when installed and its start-up "
                         "self-test passes, else hf (compiled on CUDA); /health says which and why")
    ap.add_argument("--voice-aliases", default=None,
                    help="JSON file of OpenAI voice name -> built-in voice (default: the shipped table)")
    ap.add_argument("--api-key", default=None,
                    help=f"require 'Authorization: Bearer <key>' on /v1/ (default: ${API_KEY_ENV} if set, else none)")
    ap.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                    help="an origin (https://app.example) whose pages may call the server from a browser; "
                         "repeatable; none by default")
    ap.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="a host name clients use to reach the server (beside IP addresses and localhost), e.g. "
                         "tts.example.com; repeatable; '*' turns the DNS-rebinding check off")
    ap.add_argument("--model-name", default=None,
                    help="the model id /v1/models lists (default: the export's or hub id's name)")
    ap.add_argument("--model-alias", action="append", default=[], metavar="NAME",
                    help="another model name to answer to, beside tts-1, tts-1-hd and gpt-4o-mini-tts; "
                         "repeatable; '*' accepts any name")
    ap.add_argument("--strict-instructions", action="store_true",
                    help="refuse (400) instructions that name no trained emotion, instead of speaking neutrally")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                    help="HF backend: compiled decoding (auto: on CUDA only; off: eager, e.g. to debug)")
    ap.add_argument("--no-warm-up", action="store_true",
                    help="HF backend: skip compiling the decode step's buckets at start (the first requests "
                         "then pay the compile)")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    api_key = args.api_key if args.api_key is not None else (os.environ.get(API_KEY_ENV) or None)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as e:
        raise SystemExit(f"the speech server needs FastAPI and uvicorn ({e}): pip install "
                         f"\"optimumllm-audio[serve]\"") from None

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and api_key is None:
        print(f"warning: binding {args.host} without an API key (--api-key or ${API_KEY_ENV}): anyone who can "
              f"reach this address can use the server", file=sys.stderr)
    engine = load_engine(args.model, snac=args.snac, device=args.device, voices_dir=args.voices,
                         max_seconds=args.max_seconds, max_batch=args.max_batch, max_queue=args.max_queue,
                         backend=args.backend, compile={"auto": "auto", "on": True, "off": False}[args.compile],
                         warm_up=False if args.no_warm_up else None)
    aliases = load_voice_aliases(args.voice_aliases)
    name = args.model_name or served_model_id(args.model)
    app = create_app(engine, model_name=name, voice_aliases=aliases, api_key=api_key,
                     model_aliases=[*args.model_alias, str(args.model)],
                     cors_origins=args.cors_origin, allowed_hosts=[*args.allowed_host, args.host],
                     strict_instructions=args.strict_instructions)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
