"""The speech server's vLLM backend: continuous batching on vLLM, the frame grammar as a logits processor.

vLLM serves the exported checkpoint as the plain ``LlamaForCausalLM`` it is; what makes it a
TTS engine lives here:

* :class:`FrameGrammarLogitsProcessor` - a vLLM (v1 engine) logits processor that enforces
  the same frame grammar as the HF engine (:class:`~helpers.generation.FrameGrammar`: slot
  ``k`` of a 7-token frame only gets codebook ``FRAME_SLOTS[k]``'s tokens,
  ``<|audio_end|>`` only at a frame boundary after ``min_frames`` frames, and forced once
  the row's length guard ``max_frames`` is reached) and the HF engine's repetition penalty
  (only the last ``repetition_window`` *generated* tokens, HF rule, applied before the mask
  exactly as :class:`~helpers.generation.AudioDecoder` does). vLLM therefore never emits an
  undecodable frame. A request opts in with ``SamplingParams(extra_args={GRAMMAR_ARG: ...})``
  (:func:`sampling_params` builds it); other requests pass through untouched. vLLM's own
  ``repetition_penalty`` stays 1.0 because it would also penalise the prompt (the HF engine
  deliberately does not: a reference clip's codes are free to reuse).
* :func:`sampling_params` - one text chunk of :meth:`OptimumTTS.plan` -> vLLM
  ``SamplingParams``: the same prompt token ids as the HF engine (the plan builds them), the
  same temperature/top-k/top-p, the per-request seed, ``max_tokens = 7 * max_frames + 1``
  and ``<|audio_end|>`` as the stop token.
* :class:`VLLMSpeechEngine` - the server engine on vLLM's ``AsyncLLM``: every text chunk of
  every request is its own vLLM request, so a new request joins the running batch at the
  next step (continuous batching) instead of waiting for a batch to finish. Frames go to one
  SNAC worker thread on the codec's device, which decodes streaming requests with the same
  sliding window and crossfades as the HF engine and whole requests when they finish.

Sampled tokens differ from the HF engine's for the same seed (vLLM draws with its own
per-request generator); the distribution they are drawn from is the same.

The module imports without vLLM installed (the processor's base class is then ``object``);
the engine needs ``pip install "optimumllm-audio[vllm]"``.
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..codec import SnacCodec
from ..tokens import FRAME_SIZE, TokenLayout
from .engine import DEFAULT_SNAC, INFERENCE_CONFIG, OptimumTTS, _default_device, find_model_folder
from .generation import (FrameGrammar, Generated, LengthGuard, LoopDetector, SamplingConfig,
                         apply_repetition_penalty)
from .serve_engine import QueueFullError, SpeechEngine, StreamRoute, read_model_info

GRAMMAR_ARG = "optimum_tts"  # key of SamplingParams.extra_args that turns the frame grammar on for a request

try:  # vLLM >= 0.10 (v1 engine)
    from vllm.v1.sample.logits_processor import BatchUpdate as _BatchUpdate  # noqa: F401
    from vllm.v1.sample.logits_processor import LogitsProcessor as _LogitsProcessorBase
    HAVE_VLLM = True
except ImportError:  # the module still imports (docs, the HF engine's tests); the engine refuses to start
    _LogitsProcessorBase = object
    HAVE_VLLM = False


# ----------------------------------------------------------------------------- per-request state
@dataclass
class _Row:
    grammar: object  # FrameGrammar for this vocabulary
    max_frames: int
    penalty: float
    window: int
    output: list  # vLLM's live list of this request's output token ids (-1 = async placeholder)


def grammar_args(layout: TokenLayout, max_frames: int, *, min_frames: int = 1, repetition_penalty: float = 1.1,
                 repetition_window: int = 32 * FRAME_SIZE) -> dict:
    """The ``extra_args[GRAMMAR_ARG]`` of one request (plain JSON: it crosses vLLM's process boundary)."""
    return {"base_vocab_size": int(layout.base_vocab_size), "max_frames": int(max_frames),
            "min_frames": int(min_frames), "repetition_penalty": float(repetition_penalty),
            "repetition_window": int(repetition_window)}


def _check_args(a) -> dict:
    if not isinstance(a, dict):
        raise ValueError(f"extra_args[{GRAMMAR_ARG!r}] must be a dict, got {type(a).__name__}")
    need = {"base_vocab_size", "max_frames", "min_frames", "repetition_penalty", "repetition_window"}
    if set(a) != need:
        raise ValueError(f"extra_args[{GRAMMAR_ARG!r}] needs exactly {sorted(need)}, got {sorted(a)}")
    for k in ("base_vocab_size", "max_frames", "min_frames"):
        if isinstance(a[k], bool) or not isinstance(a[k], int) or a[k] < 1:
            raise ValueError(f"{GRAMMAR_ARG}.{k} must be an int >= 1, got {a[k]!r}")
    if not isinstance(a["repetition_penalty"], (int, float)) or a["repetition_penalty"] < 1.0:
        raise ValueError(f"{GRAMMAR_ARG}.repetition_penalty must be >= 1.0, got {a['repetition_penalty']!r}")
    if isinstance(a["repetition_window"], bool) or not isinstance(a["repetition_window"], int) \
            or a["repetition_window"] < 0:
        raise ValueError(f"{GRAMMAR_ARG}.repetition_window must be an int >= 0, got {a['repetition_window']!r}")
    return a


class FrameGrammarLogitsProcessor(_LogitsProcessorBase):
    """vLLM v1 logits processor: repetition penalty over the generated window, then the frame grammar.

    Pass the class to ``LLM(..., logits_processors=[FrameGrammarLogitsProcessor])`` (or the
    engine args of ``AsyncLLM``). Rows are vLLM's persistent-batch indices; ``update_state``
    follows vLLM's order (removed, added, moved). A row's position in its frame is the length
    of its output so far: the prompt ends with ``<|audio_start|>``, so output token 0 is
    frame 0's slot 0, as in the HF engine.
    """

    def __init__(self, vllm_config=None, device=None, is_pin_memory: bool = False):
        self.device = device
        self.rows: dict[int, _Row] = {}
        self._grammars: dict[tuple, object] = {}

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        extra = getattr(sampling_params, "extra_args", None) or {}
        if GRAMMAR_ARG in extra:
            _check_args(extra[GRAMMAR_ARG])

    def is_argmax_invariant(self) -> bool:
        return False  # it masks tokens: it changes greedy picks too

    def _grammar(self, base_vocab_size: int, min_frames: int, vocab_size: int):
        key = (base_vocab_size, min_frames, vocab_size)
        g = self._grammars.get(key)
        if g is None:
            g = self._grammars[key] = FrameGrammar(TokenLayout(base_vocab_size), vocab_size, min_frames=min_frames)
        return g

    def _new_row(self, params, output: list):
        a = (getattr(params, "extra_args", None) or {}).get(GRAMMAR_ARG)
        if a is None:
            return None
        a = _check_args(a)
        return _Row(grammar=(a["base_vocab_size"], a["min_frames"]), max_frames=a["max_frames"],
                    penalty=float(a["repetition_penalty"]), window=a["repetition_window"], output=output)

    def update_state(self, batch_update) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _prompt, output in batch_update.added:
            row = self._new_row(params, output)
            if row is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = row
        for a, b, direction in batch_update.moved:
            ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
            if ra is not None:
                self.rows[b] = ra
            if rb is not None and getattr(direction, "name", "") == "SWAP":
                self.rows[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        V = logits.shape[1]
        n_rows = logits.shape[0]
        by_table: dict = {}  # grammar -> (row indices, mask-row kinds)
        for i, r in self.rows.items():
            if i >= n_rows:
                continue
            out = r.output
            n = len(out)  # tokens generated so far (async placeholders count: they are positions)
            if r.penalty != 1.0 and r.window and n:
                hist = [t for t in out[max(0, n - r.window):] if t >= 0]
                if hist:
                    h = torch.tensor([hist], dtype=torch.long, device=logits.device)
                    logits[i:i + 1] = apply_repetition_penalty(logits[i:i + 1], h, r.penalty)
            if isinstance(r.grammar, tuple):
                r.grammar = self._grammar(r.grammar[0], r.grammar[1], V)
            kind = r.grammar.row_kinds(n, 1, [r.max_frames])[0]
            idx, kinds = by_table.setdefault(id(r.grammar), (r.grammar, [], []))[1:]
            idx.append(i)
            kinds.append(kind)
        for grammar, idx, kinds in by_table.values():
            table = grammar.mask_rows(logits.device, logits.dtype)
            rows_t = torch.tensor(idx, dtype=torch.long, device=logits.device)
            kinds_t = torch.tensor(kinds, dtype=torch.long, device=logits.device)
            logits[rows_t] = logits[rows_t] + table.index_select(0, kinds_t)
        return logits


# ----------------------------------------------------------------------------- requests
def sampling_params(layout: TokenLayout, chunk: dict, sampling=None, *, min_frames: int = 1):
    """vLLM ``SamplingParams`` for one chunk of :meth:`OptimumTTS.plan` (``prompt``, ``seed``, ``max_frames``)."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    if sampling is None:
        sampling = SamplingConfig()
    greedy = sampling.temperature == 0
    return SamplingParams(
        temperature=float(sampling.temperature), top_p=1.0 if greedy else float(sampling.top_p),
        top_k=0 if greedy or not sampling.top_k else int(sampling.top_k),
        repetition_penalty=1.0,  # the processor applies the HF engine's windowed penalty instead
        seed=int(chunk["seed"]), max_tokens=FRAME_SIZE * int(chunk["max_frames"]) + 1,
        stop_token_ids=[layout.audio_end_id], ignore_eos=True, detokenize=False, skip_special_tokens=False,
        output_kind=RequestOutputKind.DELTA,
        extra_args={GRAMMAR_ARG: grammar_args(layout, chunk["max_frames"], min_frames=min_frames,
                                              repetition_penalty=sampling.repetition_penalty,
                                              repetition_window=sampling.repetition_window)})


def engine_kwargs(model: str, *, device: str = "cpu", max_num_seqs: int = 64, max_model_len: int | None = None,
                  dtype: str | None = None, gpu_memory_utilization: float | None = None, seed: int = 0) -> dict:
    """vLLM engine arguments for an export folder (``AsyncEngineArgs(**kw)`` / ``LLM(**kw)``).

    On CPU: eager mode (no compile step on 2 cores), bfloat16 (vLLM's CPU attention kernels take
    bf16/fp32; the KV cache size comes from ``VLLM_CPU_KVCACHE_SPACE`` in GiB). vLLM's CPU
    attention supports head sizes 32, 64, 80, ... 512 only: an export with ``head_dim`` 16 is refused.
    """
    kw = dict(model=str(model), tokenizer=str(model), dtype=dtype or "bfloat16", seed=seed,
              max_num_seqs=int(max_num_seqs), logits_processors=[FrameGrammarLogitsProcessor],
              enable_prefix_caching=True)
    if max_model_len is not None:
        kw["max_model_len"] = int(max_model_len)
    if device == "cpu":
        kw["enforce_eager"] = True
    elif gpu_memory_utilization is not None:
        kw["gpu_memory_utilization"] = float(gpu_memory_utilization)
    return kw


def frames_of(tokens: Sequence[int], audio_end_id: int) -> tuple[list[tuple], bool]:
    """Complete 7-token frames of a token list and whether it ended with ``<|audio_end|>``."""
    ended = bool(tokens) and tokens[-1] == audio_end_id
    body = list(tokens[:-1] if ended else tokens)
    n = len(body) // FRAME_SIZE
    return [tuple(body[k * FRAME_SIZE:(k + 1) * FRAME_SIZE]) for k in range(n)], ended


# ----------------------------------------------------------------------------- the engine
class _NoLLM(torch.nn.Module):
    """Stands in for the HF model inside :class:`OptimumTTS` when vLLM holds the weights: the
    text frontend, prompts, codec and checks need the config and the device only."""

    def __init__(self, config, device):
        super().__init__()
        self.config = config
        self.register_buffer("_device_probe", torch.zeros(1, device=device), persistent=False)

    def parameters(self, recurse: bool = True):
        yield self._device_probe


def load_tts_without_llm(model: str, *, snac: str | None = None, device=None, **kw):
    """An :class:`OptimumTTS` for prompts, checks and SNAC decoding, without loading the LLM's weights."""
    import json
    from pathlib import Path

    from transformers import AutoConfig, AutoTokenizer

    device = torch.device(device) if device is not None else _default_device()
    folder = find_model_folder(Path(model).expanduser())
    cfg_file = folder / INFERENCE_CONFIG
    info = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    kw.setdefault("coverage", info.get("coverage"))
    tok = AutoTokenizer.from_pretrained(str(folder))
    codec = SnacCodec.load(snac or info.get("snac_model") or DEFAULT_SNAC, device=device)
    return OptimumTTS(_NoLLM(AutoConfig.from_pretrained(str(folder)), device), tok, codec, **kw), folder


class VLLMSpeechEngine(SpeechEngine):
    """:class:`SpeechEngine`'s checks and routes, generation on vLLM (see the module doc).

    ``tts``: an :class:`OptimumTTS` (its ``model`` may be a stand-in: see
    :func:`load_tts_without_llm`); ``model``: the export folder vLLM loads; ``engine_kw``:
    extra vLLM engine arguments (:func:`engine_kwargs`). ``max_batch`` is vLLM's
    ``max_num_seqs`` (text chunks running together); ``max_queue`` bounds the requests in
    flight beyond that.
    """

    backend = "vllm"

    def __init__(self, tts, model, *, engine_kw: dict | None = None, device: str = "cpu", **kw):
        if not HAVE_VLLM:
            raise RuntimeError('the vLLM backend needs vLLM: pip install "optimumllm-audio[vllm]" '
                               '(on CPU: scripts/setup_vllm.sh)')
        super().__init__(tts, **kw)
        self.model_path = str(model)
        self.engine_kw = dict(engine_kwargs(model, device=device, max_num_seqs=self.max_batch), **(engine_kw or {}))
        self.fps = tts.codec.sample_rate / tts.codec.samples_per_frame
        self._loop: asyncio.AbstractEventLoop | None = None
        self._llm = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self._decode_q: queue.Queue = queue.Queue()
        self._decoder_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.step_batches: list[int] = []  # requests in flight when each new request joined (tests/bench)
        self._next_id = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "VLLMSpeechEngine":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run_loop, name="optimumllm-vllm-loop", daemon=True)
        self._thread.start()
        self._decoder_thread = threading.Thread(target=self._decode_worker, name="optimumllm-snac", daemon=True)
        self._decoder_thread.start()
        if not self._ready.wait(600):
            raise RuntimeError("vLLM did not start within 600 s")
        if self._start_error is not None:
            raise RuntimeError(f"vLLM failed to start: {self._start_error}") from self._start_error
        return self

    def _run_loop(self):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.engine_kw))
        except BaseException as e:  # reported by start()
            self._start_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self):
        """Cancel the requests still running (their clients get an error), then stop vLLM."""
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._loop is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(timeout)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._decode_q.put(None)
        if self._decoder_thread is not None:
            self._decoder_thread.join(timeout)

    @property
    def waiting(self) -> int:
        return max(0, self._in_flight - self.max_batch)

    # ------------------------------------------------------------------ requests
    def submit(self, job) -> None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the engine is not running: call start()")
        with self._lock:
            if self._in_flight >= self.max_batch + self.max_queue:
                raise QueueFullError(self.max_queue, self.retry_after_s)
            self._in_flight += 1
            self.step_batches.append(self._in_flight)
        job.queued_at = time.perf_counter()
        asyncio.run_coroutine_threadsafe(self._run_job(job), self._loop)

    async def _run_job(self, job) -> None:
        loop = asyncio.get_running_loop()
        try:
            if job.cancelled.is_set():
                return
            plan = await loop.run_in_executor(None, self._prepare, job)  # SNAC-encodes a reference clip
            route = StreamRoute(self, job, len(plan)) if job.stream else None
            self.batches.append(1)
            results = await asyncio.gather(*(self._run_chunk(job, k, c, route) for k, c in enumerate(plan)))
            if job.stream or job.cancelled.is_set():
                self._decode_q.put((lambda: job.on_done(None, None),))
            else:
                self._decode_q.put((lambda: job.on_done(self._assemble(results), None),))
        except asyncio.CancelledError:
            job.on_done(None, RuntimeError("the server is shutting down"))
        except Exception as e:
            job.on_done(None, e)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _run_chunk(self, job, k: int, chunk: dict, route):
        lay = self.tts.layout
        params = sampling_params(lay, chunk)
        self._next_id += 1
        rid = f"tts-{self._next_id}-{k}"
        detector = (LoopDetector(self.tts.loop_guard.max_period, self.tts.loop_guard.min_frames(self.fps))
                    if self.tts.loop_guard else None)
        tokens: list[int] = []
        frames: list[tuple] = []
        reason = None
        async for out in self._llm.generate({"prompt_token_ids": list(chunk["prompt"])}, params, rid):
            tokens.extend(out.outputs[0].token_ids)
            got, ended = frames_of(tokens, lay.audio_end_id)
            for f in got[len(frames):]:
                frames.append(f)
                if route is not None:
                    self._decode_q.put((route.add, k, f))
                if detector is not None and detector.add(f) is not None:
                    reason = "loop"
                    break
            if reason is None and ended:
                reason = "length" if len(frames) >= chunk["max_frames"] else "end"
            if reason == "loop" or job.cancelled.is_set():
                await self._llm.abort(rid)
                reason = reason or "cancelled"
                break
            if out.finished:
                reason = reason or ("length" if len(frames) >= chunk["max_frames"] else "end")
                break
        if route is not None:
            self._decode_q.put((route.add, k, None))
        arr = np.asarray([t for f in frames for t in f], dtype=np.int64)
        return Generated(tokens=arr, codes=lay.tokens_to_codes(arr, on_error="raise"), stop_reason=reason,
                             max_frames=chunk["max_frames"], prompt_tokens=len(chunk["prompt"]), loop=None,
                             seconds=time.perf_counter() - job.queued_at)

    def _decode_worker(self):
        """The SNAC worker: stream windows and whole decodes, in arrival order, on the codec's device."""
        while True:
            item = self._decode_q.get()
            if item is None:
                return
            fn, *args = item
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fn(*args)
            except Exception as e:  # a decode failure ends that request, not the worker
                warnings.warn(f"SNAC worker: {type(e).__name__}: {e}", stacklevel=1)

    def run_batch(self, batch) -> None:  # the HF engine's entry point: not used on vLLM
        raise NotImplementedError("VLLMSpeechEngine schedules requests through vLLM (submit)")


def load_vllm_engine(model: str, *, snac: str | None = None, device: str | None = None, voices_dir=None,
                     max_seconds: float | None = None, max_batch: int = 64, max_queue: int = 256,
                     engine_kw: dict | None = None, model_info: dict | None = None) -> VLLMSpeechEngine:
    """An export folder -> a (not yet started) :class:`VLLMSpeechEngine`."""
    kw = {}
    if max_seconds is not None:
        kw["length_guard"] = LengthGuard(base_seconds=min(LengthGuard().base_seconds, max_seconds),
                                         cap_seconds=float(max_seconds))
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tts, folder = load_tts_without_llm(model, snac=snac, device=dev, **kw)
    info = model_info if model_info is not None else read_model_info(folder)
    return VLLMSpeechEngine(tts, folder, engine_kw=engine_kw, device=dev, voices_dir=voices_dir,
                            max_batch=max_batch, max_queue=max_queue, model_info=info)


__all__ = ["GRAMMAR_ARG", "HAVE_VLLM", "FrameGrammarLogitsProcessor", "grammar_args", "sampling_params",
           "engine_kwargs", "frames_of", "load_tts_without_llm", "VLLMSpeechEngine", "load_vllm_engine"]
