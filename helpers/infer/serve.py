"""An OpenAI-compatible speech server for an exported model.

::

    pip install "optimumllm-audio[serve]"
    python -m optimumllm_audio.serve --model optimumai/OptimumLLM-Audio-1.0 --port 8000
    curl http://127.0.0.1:8000/v1/audio/speech -H "Content-Type: application/json" \\
         -d '{"model": "optimumllm-audio", "input": "Hello there.", "voice": "female_us_01",
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
``POST /v1/audio/speech``: OpenAI's fields ``model`` (accepted, not used: one model is
served), ``input`` (at most :data:`MAX_INPUT_CHARS` characters), ``voice`` (a built-in
voice or a saved voice id; default ``male_us_01``), ``response_format`` (``mp3``
default as in OpenAI's API, ``opus``, ``flac``, ``wav``, ``pcm`` = raw 16-bit
little-endian mono 24 kHz), ``speed`` (only 1.0: the model has no rate control; other
values answer 400). Extensions: ``emotion`` (see ``GET /v1/voices``), ``reference_audio``
(base64 of an audio file, 1-30 s of speech: zero-shot cloning, instead of ``voice``),
``seed`` (same seed, same audio; default 0), ``stream`` (``true``: ``wav`` or ``pcm``
bytes sent as frames are decoded; a streamed WAV's header carries 0xFFFFFFFF sizes).
Streamed samples equal the non-streamed ones to within 1 LSB of 16-bit PCM.

``GET /v1/voices``: built-in voices (gender, accent, trained or not), saved voices,
emotions. ``GET /health``: status, queue length and limits.

Errors are OpenAI-shaped JSON, ``{"error": {"message", "type", "param", "code"}}``:
400 for bad input (``param`` names the field), 413 for an oversized reference, 503 with
``Retry-After`` when the queue is full, 500 if generation itself fails.

The server binds 127.0.0.1 unless ``--host`` says otherwise; it has no authentication,
so put it behind one before exposing it.
"""

import argparse
import asyncio
import ipaddress
import sys
from pathlib import Path

from .serve_engine import MAX_INPUT_CHARS, QueueFullError, RequestError, SpeechEngine, encode_audio, pcm16, read_model_info, wav_header
from ..tokens import EMOTIONS

DEFAULT_HOST = "127.0.0.1"  # loopback: nothing outside this machine can reach the server unless asked
DEFAULT_PORT = 8000


def _error(status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
    from fastapi.responses import JSONResponse

    kind = "invalid_request_error" if status < 500 else ("server_busy" if status == 503 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def create_app(engine: SpeechEngine, model_name: str = "optimumllm-audio"):
    """The FastAPI app over a (not yet started) :class:`SpeechEngine`; the app starts and
    stops the engine with its lifespan."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field

    class SpeechRequest(BaseModel):
        """Body of POST /v1/audio/speech (see the module docstring)."""

        model_config = ConfigDict(extra="forbid")
        model: str | None = None
        input: str = Field(max_length=MAX_INPUT_CHARS)
        voice: str | None = None
        response_format: str = "mp3"
        speed: float | None = None
        emotion: str | None = None
        reference_audio: str | None = None
        seed: int = 0
        stream: bool = False

    @asynccontextmanager
    async def lifespan(app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="OptimumLLM Audio speech server", lifespan=lifespan)
    sr = engine.tts.sample_rate

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', '')}", None,
                          "json_invalid")
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = loc[-1] if loc else None
        if first.get("type") == "string_too_long" and param == "input":
            return _error(400, f"input is longer than {MAX_INPUT_CHARS} characters (the limit; split longer "
                               f"text over several requests)", "input", "input_too_long")
        if first.get("type") == "extra_forbidden":
            return _error(400, f"unknown field {param!r}", param, "unknown_field")
        return _error(400, f"{param or 'body'}: {first.get('msg')}", param, first.get("type"))

    @app.exception_handler(RequestError)
    async def _bad(request, exc: RequestError):
        return _error(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(QueueFullError)
    async def _busy(request, exc: QueueFullError):
        return _error(503, str(exc), None, "queue_full", headers={"Retry-After": str(exc.retry_after)})

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "sample_rate": sr, "waiting": engine.waiting,
                "max_queue": engine.max_queue, "max_batch": engine.max_batch, "formats": list(engine.formats),
                "max_input_chars": MAX_INPUT_CHARS}

    @app.get("/v1/voices")
    async def voices():
        return {"voices": engine.voices(), "emotions": list(EMOTIONS), "default_voice": engine.voices()[0]["id"]}

    @app.post("/v1/audio/speech")
    async def speech(body: SpeechRequest, request: Request):
        job = await run_in_threadpool(engine.check, text=body.input, voice=body.voice, emotion=body.emotion,
                                      seed=body.seed, response_format=body.response_format, speed=body.speed,
                                      reference_audio=body.reference_audio, stream=body.stream)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        job.on_piece = lambda piece: loop.call_soon_threadsafe(events.put_nowait, ("piece", piece))
        job.on_done = lambda audio, err: loop.call_soon_threadsafe(events.put_nowait, ("done", (audio, err)))
        engine.submit(job)  # QueueFullError -> 503
        media = engine.formats[body.response_format]
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
        if not body.stream:
            data = await run_in_threadpool(encode_audio, value[0], body.response_format, sr)
            return Response(data, media_type=media)

        async def chunks():
            try:
                if body.response_format == "wav":
                    yield wav_header(sr)
                item = (kind, value)
                while True:
                    k, v = item
                    if k == "piece":
                        yield pcm16(v).tobytes()
                    elif v[1] is not None:  # failed after audio was sent: abort, never a silently short file
                        raise RuntimeError(f"generation failed mid-stream: {v[1]}")
                    else:
                        return
                    item = await events.get()
            finally:
                job.cancelled.set()  # client gone or done: the engine drops any further pieces

        return StreamingResponse(chunks(), media_type=media)

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


def load_engine(model: str, *, snac: str | None = None, device: str | None = None, voices_dir=None,
                max_seconds: float | None = None, max_batch: int = 8, max_queue: int = 32) -> SpeechEngine:
    """Load ``model`` (hub id, export folder or run directory) into a :class:`SpeechEngine`.
    ``max_seconds``: cap on the audio of one text chunk (the length guard's cap)."""
    from .generation import LengthGuard
    from .engine import OptimumTTS, find_model_folder

    kw = {}
    if max_seconds is not None:
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        kw["length_guard"] = LengthGuard(base_seconds=min(LengthGuard().base_seconds, max_seconds),
                                         cap_seconds=float(max_seconds))
    tts = OptimumTTS.from_pretrained(model, snac=snac, device=device, **kw)
    info = read_model_info(find_model_folder(model)) if Path(model).expanduser().exists() else {}
    return SpeechEngine(tts, voices_dir=voices_dir, max_batch=max_batch, max_queue=max_queue, model_info=info)


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
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
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
    if not loopback:
        print(f"warning: binding {args.host}: the server has no authentication; anyone who can reach this "
              f"address can use it", file=sys.stderr)
    engine = load_engine(args.model, snac=args.snac, device=args.device, voices_dir=args.voices,
                         max_seconds=args.max_seconds, max_batch=args.max_batch, max_queue=args.max_queue)
    uvicorn.run(create_app(engine, model_name=str(args.model)), host=args.host, port=args.port,
                log_level=args.log_level)


if __name__ == "__main__":
    main()
