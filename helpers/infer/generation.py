"""Constrained decoding of audio tokens: the frame grammar, sampling, guards, the loop.

Why a hand-written loop rather than ``model.generate``: streaming (frames are
handed out as they are made), the frame grammar, one seeded random stream per batch
row (so a batch gives the same tokens as one-by-one calls), and loop detection
all live in one ~150-line loop over ``model(input_ids, past_key_values=...,
use_cache=True)``. :class:`FrameGrammar` is also a ``transformers``
``LogitsProcessor`` for anyone who prefers ``model.generate``.

Frame grammar (the token contract, :mod:`helpers.tokens`)
----------------------------------------------------------
After ``<|audio_start|>`` the model may only emit audio tokens, and slot ``k``
of each 7-token frame only a token of codebook ``FRAME_SLOTS[k]``;
``<|audio_end|>`` is allowed only at a frame boundary (after at least
``min_frames`` frames) and forced once the row's length guard is reached. Every
other logit is set to ``-inf`` *before* sampling, so a generated sequence always
parses with ``tokens_to_codes(on_error="raise")`` - no frames are dropped after
the fact (the Orpheus notebooks drop invalid tokens afterwards and get clicks
and skipped frames).

Sampling (defaults documented on :class:`SamplingConfig`)
----------------------------------------------------------
repetition penalty -> grammar mask -> temperature -> top-k -> top-p -> draw, all on the
device in one function (:func:`helpers.infer.decode_step.token_step`), so the step compiles
into one graph and the host reads the picked ids once per 7-token frame. The draw is an
inverse-CDF draw in float64 with a uniform number that is a hash of the row's seed and the
token index (:func:`helpers.infer.decode_step.counter_uniforms`): the same on CPU and CUDA,
eager and compiled, for the same probabilities. ``temperature=0`` is greedy (argmax).

Batch == one-by-one: rows are left-padded, with an ``attention_mask`` and
``position_ids`` that start at 0 at each row's first real token, so every row
sees exactly the tokens and RoPE positions it would see alone. Matmuls over a
different batch shape can round differently in the last bit; on CPU float32
with the tiny model the tests find the tokens identical (greedy and sampled).
A token could only differ where a uniform draw falls within ~1e-7 of a CDF
boundary (or an argmax is tied to ~1e-7), which the tests have not hit. The
same holds for compiled against eager decoding (a bucketed ``StaticCache``,
fused kernels): the tests compare their frames.

Guards
------
:class:`LengthGuard`: a row may not exceed ``max_frames`` derived from its text
(no runaway generation); reaching it forces ``<|audio_end|>`` and the result
says ``stop_reason="length"`` with a warning. :class:`LoopGuard`: the same block
of 1..``max_period`` frames repeated for ``min_seconds`` is a degenerate loop;
it is reported (warning + ``stop_reason="loop"`` + :class:`LoopInfo`), and by
default generation of that row stops there.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..tokens import FRAME_SIZE, SNAC_FRAMES_PER_SECOND, TokenLayout
from .decode_step import StepKind, batch_bucket, init_state, length_bucket, model_step, token_step

# Only the default of the guards; the inference engine passes the loaded codec's own rate.
DEFAULT_FRAMES_PER_SECOND = SNAC_FRAMES_PER_SECOND


# ----------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class SamplingConfig:
    """How the next audio token is drawn.

    Defaults follow what works for LLaMA + SNAC TTS (Orpheus' published settings):
    ``temperature=0.6`` (lower = steadier prosody, higher = more varied; 0 = greedy),
    ``top_p=0.95`` (nucleus: drop the unlikely tail that produces artefacts),
    ``top_k=50`` (per slot: at most 50 of the 4,096 codes of the slot's codebook),
    ``repetition_penalty=1.1`` (>= 1.1 keeps the model out of stuck, repeating
    audio; 1.0 = off) applied HF-style (positive logits divided, negative
    multiplied) to the tokens generated in the last ``repetition_window`` tokens
    (default 224 = 32 frames, 2.7 s). Only *generated* tokens are penalised: the
    prompt's reference-clip frames are codes the model should feel free to reuse.
    """

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.1
    repetition_window: int = 32 * FRAME_SIZE

    def __post_init__(self):
        if not (isinstance(self.temperature, (int, float)) and self.temperature >= 0):
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        if not (isinstance(self.repetition_penalty, (int, float)) and self.repetition_penalty >= 1.0):
            raise ValueError(f"repetition_penalty must be >= 1.0 (1.0 = off), got {self.repetition_penalty!r}")
        if isinstance(self.repetition_window, bool) or not isinstance(self.repetition_window, int) \
                or self.repetition_window < 0:
            raise ValueError(f"repetition_window must be an int >= 0 tokens, got {self.repetition_window!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = SamplingConfig(temperature=0.0, top_p=1.0, top_k=0, repetition_penalty=1.0)


@dataclass(frozen=True)
class LengthGuard:
    """Upper bound on the audio of one utterance, sized from its text.

    ``max_seconds(text) = min(max(base_seconds, factor * expected), cap_seconds)`` where
    ``expected = helpers.text.split.estimate_seconds(text, chars_per_second)`` is the text's
    expected spoken duration: characters at a calm read-speech rate of 14 characters per
    second (~160 words per minute; digits left in raw text count as ~one word each, a
    non-verbal token as 1 s). ``factor`` 2.5 lets speech 2.5x slower than that rate (slow,
    expressive or paused delivery) finish, while a model that never emits ``<|audio_end|>``
    costs at most 2.5x the expected audio: a four-word sentence ("Welcome to the show.",
    20 characters, ~1.4 s expected) stops after 3.6 s instead of the 7 s of a fixed
    3 s + 1 s per 5 characters. ``base_seconds`` is the floor for very short texts ("Yes.":
    1.5 s); ``cap_seconds`` keeps a chunk inside what the model was trained on (clips of at
    most 30 s) whatever the text.
    """

    base_seconds: float = 1.5
    chars_per_second: float = 14.0  # = helpers.text.split.CHARS_PER_SECOND (a test keeps them equal)
    cap_seconds: float = 40.0
    factor: float = 2.5

    def __post_init__(self):
        if not (self.base_seconds > 0 and self.chars_per_second > 0 and self.cap_seconds > 0 and self.factor > 0):
            raise ValueError(f"LengthGuard fields must be > 0, got {self}")

    def expected_seconds(self, text: str) -> float:
        """The text's expected spoken duration (:func:`helpers.text.split.estimate_seconds`)."""
        from ..text.split import estimate_seconds  # helpers.text loads the normalizer: not at import time

        return estimate_seconds(text, self.chars_per_second)

    def max_seconds(self, text: str) -> float:
        return min(max(self.base_seconds, self.factor * self.expected_seconds(text)), self.cap_seconds)

    def max_frames(self, text: str, frames_per_second: float = DEFAULT_FRAMES_PER_SECOND) -> int:
        return max(1, math.ceil(self.max_seconds(text) * frames_per_second))


@dataclass(frozen=True)
class LoopGuard:
    """Degenerate-loop detection: the last ``min_seconds`` of frames are copies of one
    block of ``p`` frames, for some ``1 <= p <= max_period`` (exact token equality).

    3 s by default: a real pause of silence can repeat one SNAC frame for a while,
    a stuck model repeats for ever. ``action``: "stop" (default: end the row there,
    warn, ``stop_reason="loop"``), "warn" (warn once, keep generating) or "raise"
    (:class:`DegenerateLoopError`).
    """

    max_period: int = 8
    min_seconds: float = 3.0
    action: str = "stop"

    def __post_init__(self):
        if self.action not in ("stop", "warn", "raise"):
            raise ValueError(f"LoopGuard.action must be 'stop', 'warn' or 'raise', got {self.action!r}")
        if self.max_period < 1 or not self.min_seconds > 0:
            raise ValueError(f"LoopGuard needs max_period >= 1 and min_seconds > 0, got {self}")

    def min_frames(self, frames_per_second: float = DEFAULT_FRAMES_PER_SECOND) -> int:
        return max(2, math.ceil(self.min_seconds * frames_per_second))


class DegenerateLoopError(RuntimeError):
    """Generation got stuck repeating the same frames (``LoopGuard(action="raise")``)."""


@dataclass
class LoopInfo:
    """Where a loop was found: frames ``start_frame .. end_frame`` repeat a ``period``-frame block."""

    start_frame: int
    end_frame: int
    period: int

    def describe(self, fps: float = DEFAULT_FRAMES_PER_SECOND) -> str:
        return (f"frames {self.start_frame}..{self.end_frame} ({self.start_frame / fps:.2f}-"
                f"{self.end_frame / fps:.2f} s) repeat a block of {self.period} frame(s)")


class LoopDetector:
    """Incremental loop check: ``run[p]`` counts consecutive frames equal to the frame
    ``p`` before them; a loop is ``run[p] >= min_frames`` (O(max_period) per frame)."""

    def __init__(self, max_period: int, min_frames: int):
        self.max_period, self.min_frames = max_period, min_frames
        self.frames: list[tuple] = []
        self.run = [0] * (max_period + 1)

    def add(self, frame: Sequence[int]) -> LoopInfo | None:
        f = tuple(int(t) for t in frame)
        self.frames.append(f)
        n = len(self.frames)
        found = None
        for p in range(1, self.max_period + 1):
            self.run[p] = self.run[p] + 1 if n > p and self.frames[n - 1 - p] == f else 0
            if found is None and self.run[p] >= self.min_frames:
                found = LoopInfo(start_frame=n - self.run[p] - p, end_frame=n, period=p)
        return found


def find_loop(frames: Sequence[Sequence[int]], max_period: int = 8, min_frames: int = 36) -> LoopInfo | None:
    """First loop in a list of frames (7-token tuples), or None. See :class:`LoopDetector`."""
    det = LoopDetector(max_period, min_frames)
    for f in frames:
        info = det.add(f)
        if info is not None:
            return info
    return None


# ----------------------------------------------------------------------------- grammar
class FrameGrammar:
    """Logits mask enforcing the frame grammar after ``<|audio_start|>``.

    ``apply(scores (B, V), n_generated, max_frames)``: adds ``-inf`` to every id not
    allowed at token position ``n_generated`` (0-based, counted from the first token
    after ``<|audio_start|>``; all rows of a batch are at the same position).
    ``max_frames``: int or per-row sequence; at a frame boundary with ``n_frames >=
    max_frames[row]`` only ``<|audio_end|>`` remains. ``min_frames``: frames before
    ``<|audio_end|>`` is allowed (>= 1: an empty utterance cannot be decoded).

    As a ``transformers`` logits processor: ``FrameGrammar(layout, V, prompt_length=L,
    max_frames=...)(input_ids, scores)`` with the (padded) prompt length ``L``.
    """

    def __init__(self, layout: TokenLayout, vocab_size: int, *, min_frames: int = 1,
                 max_frames: int | Sequence[int] | None = None, prompt_length: int | None = None):
        if vocab_size < layout.vocab_size:
            raise ValueError(f"vocab_size {vocab_size} is smaller than the token contract's {layout.vocab_size}")
        if min_frames < 1:
            raise ValueError(f"min_frames must be >= 1 (an empty utterance cannot be decoded), got {min_frames}")
        self.layout, self.vocab_size, self.min_frames = layout, vocab_size, min_frames
        self.max_frames, self.prompt_length = max_frames, prompt_length
        allowed = np.zeros((FRAME_SIZE + 2, vocab_size), dtype=bool)
        allowed[:FRAME_SIZE] = layout.slot_masks(vocab_size)
        allowed[FRAME_SIZE] = allowed[0]  # boundary row where <|audio_end|> is also allowed
        allowed[FRAME_SIZE, layout.audio_end_id] = True
        allowed[FRAME_SIZE + 1, layout.audio_end_id] = True  # boundary row at the length limit
        add = np.where(allowed, 0.0, -np.inf).astype(np.float32)
        self._add_cpu = torch.from_numpy(add)  # (9, V): 7 slots, boundary+end, end only
        self._add: dict = {}
        self._idx: dict = {}  # (device, row kinds) -> index tensor on that device

    def mask_rows(self, device, dtype) -> torch.Tensor:
        """The additive mask table ``(9, V)`` on ``device``/``dtype`` (0 or -inf; cached):
        rows 0-6 the frame slots, 7 boundary-or-end, 8 end only; :meth:`row_kinds` picks rows.
        Other backends (vLLM's logits processor) index it the same way."""
        key = (str(device), dtype)
        if key not in self._add:
            self._add[key] = self._add_cpu.to(device=device, dtype=dtype)
        return self._add[key]

    def row_kinds(self, n_generated: int, batch: int, max_frames=None) -> list[int]:
        """Which mask row each batch row gets at position ``n_generated``."""
        slot, n_frames = n_generated % FRAME_SIZE, n_generated // FRAME_SIZE
        if slot:
            return [slot] * batch
        mf = self.max_frames if max_frames is None else max_frames
        mf = [mf] * batch if mf is None or isinstance(mf, (int, np.integer)) else list(mf)
        if len(mf) != batch:
            raise ValueError(f"max_frames has {len(mf)} entries for a batch of {batch}")
        kinds = []
        for m in mf:
            if m is not None and n_frames >= m:
                kinds.append(FRAME_SIZE + 1)
            elif n_frames >= self.min_frames:
                kinds.append(FRAME_SIZE)
            else:
                kinds.append(0)
        return kinds

    def apply(self, scores: torch.Tensor, n_generated: int, max_frames=None) -> torch.Tensor:
        if scores.ndim != 2 or scores.shape[1] != self.vocab_size:
            raise ValueError(f"scores must be (B, {self.vocab_size}), got {tuple(scores.shape)}")
        kinds = tuple(self.row_kinds(n_generated, scores.shape[0], max_frames))
        rows = self.mask_rows(scores.device, scores.dtype)
        key = (str(scores.device), kinds)
        idx = self._idx.get(key)
        if idx is None:  # a handful of distinct patterns per batch: no host->device copy per token
            idx = self._idx[key] = torch.tensor(kinds, device=scores.device)
        return scores + rows.index_select(0, idx)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_length is None:
            raise ValueError("FrameGrammar used as a logits processor needs prompt_length")
        return self.apply(scores, int(input_ids.shape[1]) - self.prompt_length)


# ----------------------------------------------------------------------------- the loop
@dataclass
class Generated:
    """One row's result. ``tokens``: audio ids (7T,) int64 without the markers;
    ``codes``: [cb1 (T,), cb2 (2T,), cb3 (4T,)]; ``stop_reason``: "end" (the model
    emitted ``<|audio_end|>``), "length" (length guard) or "loop" (loop guard)."""

    tokens: np.ndarray
    codes: list
    stop_reason: str
    max_frames: int
    prompt_tokens: int
    loop: LoopInfo | None = None
    seconds: float = 0.0  # wall time of the batch it was generated in

    @property
    def n_frames(self) -> int:
        return int(self.tokens.shape[0] // FRAME_SIZE)


@dataclass
class FrameEvent:
    """Row ``row`` completed frame ``index`` (7 audio token ids), or finished (``frame`` None)."""

    row: int
    index: int
    frame: tuple | None
    stop_reason: str | None = None


def _left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(p) for p in prompts]
    L = max(lengths)
    ids = torch.full((len(prompts), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), L), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, L - len(p):] = 1
    return ids.to(device), mask.to(device)


class AudioDecoder:
    """Generates audio tokens for a batch of prompts (each ending with ``<|audio_start|>``).

    Iterate it to receive :class:`FrameEvent` s as frames complete (streaming), or call
    :meth:`run` for the list of :class:`Generated`. ``seeds``: one per row; row ``i``'s draws
    depend only on ``seeds[i]`` and the token index
    (:func:`helpers.infer.decode_step.counter_uniforms`). ``max_frames``: per-row length guard.
    ``compiled``: a :class:`helpers.infer.decode_step.CompiledDecoding` - the decode step runs
    as its compiled graph on a bucketed ``StaticCache``; None: eagerly on a ``DynamicCache``.
    Both run the same :func:`~helpers.infer.decode_step.token_step`, read the picked ids back
    once per 7-token frame (``host_syncs`` counts the reads) and launch the next frame's steps
    before handing out the frame just read, so a consumer's work (SNAC decoding) overlaps them.
    ``min_cache_length``: compiled only, a floor on the cache length bucket (warm-up uses it to
    compile a bucket without generating that many tokens). ``batch_buckets``: compiled only, the
    batch buckets to pad to (the smallest that holds the rows; more rows than the largest: the
    usual :func:`~helpers.infer.decode_step.batch_bucket`) - a server that warmed some buckets up
    keeps to them instead of compiling another while serving.
    """

    def __init__(self, model, layout: TokenLayout, prompts: Sequence[Sequence[int]], *,
                 seeds: Sequence[int], max_frames: Sequence[int], sampling: SamplingConfig = SamplingConfig(),
                 loop_guard: LoopGuard | None = LoopGuard(), min_frames: int = 1,
                 frames_per_second: float = DEFAULT_FRAMES_PER_SECOND, compiled=None, min_cache_length: int = 0,
                 batch_buckets: Sequence[int] | None = None):
        if not prompts:
            raise ValueError("no prompts to generate from")
        if not (len(seeds) == len(max_frames) == len(prompts)):
            raise ValueError(f"need one seed and one max_frames per prompt: {len(prompts)} prompts, "
                             f"{len(seeds)} seeds, {len(max_frames)} max_frames")
        for i, p in enumerate(prompts):
            if not len(p) or int(p[-1]) != layout.audio_start_id:
                raise ValueError(f"prompt {i} must end with <|audio_start|> (id {layout.audio_start_id}); "
                                 f"build it with TokenLayout.build_prompt")
        bad = [int(m) for m in max_frames if int(m) < 1]
        if bad:
            raise ValueError(f"max_frames must be >= 1 per row (an empty utterance cannot be decoded), got {bad}")
        if min_frames < 1:
            raise ValueError(f"min_frames must be >= 1 (an empty utterance cannot be decoded), got {min_frames}")
        self.model, self.layout, self.prompts = model, layout, [list(map(int, p)) for p in prompts]
        self.seeds = [int(s) for s in seeds]
        self.max_frames = [int(m) for m in max_frames]
        self.sampling, self.loop_guard, self.min_frames = sampling, loop_guard, min_frames
        self.fps, self.compiled, self.min_cache_length = frames_per_second, compiled, int(min_cache_length)
        if batch_buckets is not None and not all(isinstance(b, int) and b >= 1 for b in batch_buckets):
            raise ValueError(f"batch_buckets must be positive ints, got {batch_buckets!r}")
        self.batch_buckets = tuple(sorted(batch_buckets)) if batch_buckets else ()
        self.results: list[Generated] | None = None
        self.first_frame_s: float | None = None  # wall time to the first completed frame of any row
        self.host_syncs = 0  # device -> host reads of picked ids (one per frame)
        self.steps = 0  # decode steps run (forward + token step)

    def run(self) -> list[Generated]:
        for _ in self:
            pass
        return self.results

    @torch.inference_mode()
    def __iter__(self) -> Iterator[FrameEvent]:
        t0 = time.perf_counter()
        model, comp = self.model, self.compiled
        R = len(self.prompts)  # real rows; a compiled bucket adds dummy rows (done from the start)
        L = max(len(p) for p in self.prompts)
        need = L + max(self.max_frames) * FRAME_SIZE + 1
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and need > limit:
            raise ValueError(f"prompt ({L} tokens) + up to {max(self.max_frames)} frames needs {need} positions; "
                             f"the model has {limit}. Shorten the text or the reference clip.")
        kind = StepKind.of(self.sampling)
        rows = next((b for b in self.batch_buckets if b >= R), batch_bucket(R))
        bucket = (kind, rows, length_bucket(max(need, self.min_cache_length), limit))
        if comp is not None and not comp.acquire(*bucket):
            comp = None  # another live decoder holds this bucket's buffers: decode eagerly instead
        try:
            yield from self._decode(comp, bucket, need, t0)
        finally:
            if comp is not None:
                comp.release(*bucket)

    def _decode(self, comp, bucket, need: int, t0: float) -> Iterator[FrameEvent]:
        model, lay = self.model, self.layout
        device = next(model.parameters()).device
        vocab = model.get_output_embeddings().weight.shape[0]
        grammar = FrameGrammar(lay, vocab, min_frames=self.min_frames)
        R = len(self.prompts)
        kind, B, total = bucket if comp is not None else (bucket[0], R, need)
        ids, mask = _left_pad(self.prompts + [self.prompts[0]] * (B - R), lay.pad_id, device)
        L = ids.shape[1]
        full_mask = torch.ones((B, total), dtype=torch.long, device=device)
        full_mask[:, :L] = mask
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, L): RoPE positions start at 0 per row
        st = init_state(seeds=self.seeds + [0] * (B - R), max_frames=self.max_frames + [1] * (B - R),
                        done=[False] * R + [True] * (B - R), mask=full_mask,
                        table=grammar.mask_rows(device, torch.float32), sampling=self.sampling, kind=kind,
                        min_frames=self.min_frames, pad_id=lay.pad_id, end_id=lay.audio_end_id, device=device)
        if comp is not None:
            st = comp.state(kind, st)  # the bucket's tensors at fixed addresses, loaded with this batch
        consts = st.constants()
        cache = comp.cache(B, total) if comp is not None else None
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1, cache_position=torch.arange(L, device=device))
        cache = out.past_key_values
        st.take(*token_step(out.logits[:, -1, :], kind, *st.carried(), *consts))
        st.pos.copy_(positions[:, -1:] + 1)
        st.cpos.fill_(L)
        step = comp.step(kind, B, total) if comp is not None else None
        mutable = (st.ids, st.pos, st.cpos, st.n, st.done, st.ring, st.frames)
        past = L  # eager: the DynamicCache's length, for the attention mask's width

        def launch_frame():
            """Queue 7 decode steps (the device runs them while the host hands out the last frame)."""
            nonlocal past
            for _ in range(FRAME_SIZE):
                if step is not None:
                    step(cache, st.mask, *mutable, *consts)
                else:
                    model_step(model, kind, cache, st.mask[:, :past + 1], *mutable, *consts)
                    past += 1
                self.steps += 1

        tokens: list[list[int]] = [[] for _ in range(R)]
        done = [False] * R
        reasons: list[str | None] = [None] * R
        loops: list[LoopInfo | None] = [None] * R
        detectors = [LoopDetector(self.loop_guard.max_period, self.loop_guard.min_frames(self.fps))
                     if self.loop_guard else None for _ in range(R)]
        launch_frame()  # picks tokens 1..7: frame 0 complete, token 7 is frame 1's slot 0 (or the end)
        f = 0  # the frame read at the next sync
        while True:
            buf = st.frames.tolist()  # the one host sync per frame: frame f and the next token, every row
            self.host_syncs += 1
            lo, nxt = (f % 2) * FRAME_SIZE, ((f + 1) % 2) * FRAME_SIZE
            frame_rows = [b for b in range(R) if not done[b]]
            ends = []
            for b in frame_rows:
                if buf[b][nxt] == lay.audio_end_id:
                    ends.append(b)
            finished = len(ends) == len(frame_rows)
            if not finished:
                launch_frame()
            events = []
            for b in frame_rows:
                frame = tuple(buf[b][lo:lo + FRAME_SIZE])
                tokens[b].extend(frame)
                if self.first_frame_s is None:
                    self.first_frame_s = time.perf_counter() - t0
                events.append(FrameEvent(b, f, frame))
                info = detectors[b].add(frame) if detectors[b] is not None else None
                if info is not None and loops[b] is None:
                    loops[b] = info
                    msg = f"row {b} (seed {self.seeds[b]}): degenerate loop: {info.describe(self.fps)}"
                    if self.loop_guard.action == "raise":
                        raise DegenerateLoopError(msg)
                    if self.loop_guard.action == "stop":
                        warnings.warn(msg + "; generation of this row stopped there", stacklevel=2)
                        done[b], reasons[b] = True, "loop"
                        st.done[b] = True  # a device write, no sync: the row feeds padding from now on
                        events.append(FrameEvent(b, f + 1, None, "loop"))
                    else:
                        warnings.warn(msg + "; generation continues (LoopGuard action='warn')", stacklevel=2)
            for b in ends:
                if not done[b]:
                    done[b] = True
                    reasons[b] = "length" if len(tokens[b]) // FRAME_SIZE >= self.max_frames[b] else "end"
                    events.append(FrameEvent(b, len(tokens[b]) // FRAME_SIZE, None, reasons[b]))
            yield from events
            f += 1
            if all(done):
                break
        elapsed = time.perf_counter() - t0
        self.results = []
        cut = [b for b in range(R) if reasons[b] == "length"]
        if cut:  # one warning per batch, naming the rows
            warnings.warn(f"{len(cut)} of {R} row(s) stopped by the length guard without <|audio_end|> "
                          f"(rows {cut[:10]}{' ...' if len(cut) > 10 else ''}, at "
                          f"{[self.max_frames[b] for b in cut[:10]]} frames); their audio may be cut off",
                          stacklevel=2)
        for b in range(R):
            arr = np.asarray(tokens[b], dtype=np.int64)
            self.results.append(Generated(tokens=arr, codes=lay.tokens_to_codes(arr, on_error="raise"),
                                          stop_reason=reasons[b], max_frames=self.max_frames[b],
                                          prompt_tokens=len(self.prompts[b]), loop=loops[b], seconds=elapsed))


def generate_audio_tokens(model, layout: TokenLayout, prompts: Sequence[Sequence[int]], *, seeds: Sequence[int],
                          max_frames: Sequence[int], sampling: SamplingConfig = SamplingConfig(),
                          loop_guard: LoopGuard | None = LoopGuard(), **kw) -> list[Generated]:
    """Convenience: ``AudioDecoder(...).run()``."""
    return AudioDecoder(model, layout, prompts, seeds=seeds, max_frames=max_frames, sampling=sampling,
                        loop_guard=loop_guard, **kw).run()


__all__ = [
    "SamplingConfig", "GREEDY", "LengthGuard", "LoopGuard", "LoopInfo", "LoopDetector", "find_loop",
    "DegenerateLoopError", "FrameGrammar", "Generated", "FrameEvent",
    "AudioDecoder", "generate_audio_tokens", "DEFAULT_FRAMES_PER_SECOND",
]
