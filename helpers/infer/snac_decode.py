"""SNAC decoding for the engine: deterministic whole-clip decoding, streaming, joining pieces.

SNAC decoding is deterministic and position-indexed (:class:`FrameDecoder`): the
decoder's NoiseBlocks normally draw fresh ``torch.randn`` on every call, so a
window decoded for streaming would get different noise than the same frames in a
full decode. Here each NoiseBlock reads its noise from a fixed table indexed by
absolute time (seeded by ``snac_seed``), so any window of frames gets exactly the
noise the full decode gives those samples.

Streaming decodes incrementally (:class:`helpers.infer.snac_stream.IncrementalDecoder`):
each layer of the SNAC decoder keeps only the input tail its own kernel still needs, so
no frame is decoded twice (the sliding window this replaced decoded 2.31x the frames of
a full decode with 3 + 3 frames of context). The decoder's receptive field
(:func:`helpers.infer.snac_stream.decoder_reach`: <= 10 latent steps, 2.5 frames, each side;
9 measured) means audio for frame ``t`` is final once frame ``t + 3`` has arrived
(:data:`STREAM_LOOKAHEAD`). Streamed audio equals the full decode to float32 rounding
(measured ~6e-7; the tests allow :data:`STREAM_TOLERANCE`). A decoder with layers the
incremental path does not know (local attention) falls back to the sliding window with
:data:`STREAM_LEFT_CONTEXT` + :data:`STREAM_LOOKAHEAD` frames of context.

On CUDA the streamed decoding runs on a CUDA stream of its own (:func:`side_stream`), so it
overlaps the language model's decode steps that :class:`helpers.infer.generation.AudioDecoder`
has already queued.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..codec import exact_cuda
from ..tokens import as_codebooks
from .snac_stream import IncrementalDecoder, SnacPush, supported as _incremental_ok

STREAM_LEFT_CONTEXT = 3  # sliding-window fallback only: frames of left context (measured: 2 -> 3e-4 error, 3 -> 7e-7)
STREAM_LOOKAHEAD = 3  # frames of right context awaited: ceil(9 latents of reach / 4 latents per frame)
STREAM_TOLERANCE = 1e-5  # max |stream - full| allowed: float32 conv rounding (measured ~7e-7), not noise
NOISE_CHUNK = 8192  # noise table positions generated per seeded piece


# ----------------------------------------------------------------------------- SNAC decoding
class FrameDecoder:
    """Deterministic, position-indexed SNAC decoding (see the module docstring).

    ``decode(codes)``: full decode, float32 ``(T * samples_per_frame,)`` at 24 kHz.
    ``decode_window(codes, start, stop, emit_from, emit_to)``: decode frames
    ``start..stop`` and return the samples of frames ``emit_from..emit_to``.
    """

    def __init__(self, codec, seed: int = 0):
        self.codec, self.seed = codec, int(seed)
        self.blocks = [m for m in codec.model.decoder.modules() if type(m).__name__ == "NoiseBlock"]
        self._table: dict = {}

    def _noise(self, block: int, offset: int, length: int) -> torch.Tensor:
        first, last = offset // NOISE_CHUNK, (offset + length - 1) // NOISE_CHUNK
        parts = []
        for c in range(first, last + 1):
            key = (block, c)
            if key not in self._table:
                s = np.random.SeedSequence([self.seed, block, c]).generate_state(1)[0]
                g = torch.Generator().manual_seed(int(s))
                self._table[key] = torch.randn(NOISE_CHUNK, generator=g)
            parts.append(self._table[key])
        cat = torch.cat(parts)
        start = offset - first * NOISE_CHUNK
        return cat[start:start + length]

    @torch.inference_mode()
    def _run(self, codes: list[np.ndarray], start_frame: int) -> np.ndarray:
        n_frames = codes[0].shape[0]
        dev = self.codec.device
        originals = []

        def make(i, blk):
            def forward(x):
                b, _, t = x.shape
                per_frame = t // n_frames  # this block's time steps per frame
                n = self._noise(i, start_frame * per_frame, t).to(device=x.device, dtype=x.dtype)
                return x + n.view(1, 1, t) * blk.linear(x)
            return forward

        for i, blk in enumerate(self.blocks):
            originals.append(blk.forward)
            blk.forward = make(i, blk)
        try:
            tensors = [torch.from_numpy(np.ascontiguousarray(c)).to(dev)[None] for c in codes]
            with exact_cuda(dev):
                audio = self.codec.model.decode(tensors)
        finally:
            for blk, f in zip(self.blocks, originals):
                blk.forward = f
        return audio.reshape(-1).float().cpu().numpy()

    def decode(self, codes) -> np.ndarray:
        cb = as_codebooks(codes)
        if cb[0].shape[0] == 0:
            raise ValueError("no frames to decode")
        return self._run(cb, 0)

    def decode_window(self, codes, start: int, stop: int, emit_from: int, emit_to: int) -> np.ndarray:
        cb = as_codebooks(codes)
        if not (0 <= start <= emit_from <= emit_to <= stop <= cb[0].shape[0]):
            raise ValueError(f"bad window {start}..{stop} emitting {emit_from}..{emit_to} of {cb[0].shape[0]} frames")
        win = [c[start * k: stop * k] for c, k in zip(cb, (1, 2, 4))]
        wav = self._run(win, start)
        spf = self.codec.samples_per_frame
        return wav[(emit_from - start) * spf: (emit_to - start) * spf]


def side_stream(device):
    """A context that runs its work on a CUDA stream of its own (reused per device); a no-op
    on CPU. The reads back to the host inside it (``.cpu()``) wait for that stream only.

    Cross-stream ordering: the side stream does not wait for the language model's queued steps
    (that is the overlap), so what it reads must not be pending on another stream. Its inputs
    come from the host (codes, noise) and are copied on it; the codec's weights were put there by
    the load (the new stream waits once, when made, for the work queued before it) and the
    weight-normed copies streaming reads are finished before use
    (``helpers.infer.snac_stream._weights``). Tensors it allocates are used on it only, so
    the caching allocator (per stream) never hands their memory to another stream early."""
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    key = str(device)
    if key not in _SIDE_STREAMS:
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))  # e.g. the codec's load, still queued
        _SIDE_STREAMS[key] = stream
    return torch.cuda.stream(_SIDE_STREAMS[key])


_SIDE_STREAMS: dict = {}


class StreamDecoder:
    """Turns frames arriving one by one into final audio samples.

    ``push(frame_codes)`` with one frame's codes ``(cb1 (1,), cb2 (2,), cb3 (4,))`` returns
    new samples when a chunk is due, else an empty array; ``flush()`` returns the rest.
    The first chunk is decoded once ``first_chunk_frames`` + ``lookahead`` frames have
    arrived (``first_chunk_frames=1``: the lowest latency), later ones every
    ``chunk_frames`` frames. ``incremental`` (default: when the decoder allows it):
    :class:`helpers.infer.snac_stream.IncrementalDecoder`, every frame decoded once; else a
    sliding window re-decoding ``left_context`` + ``lookahead`` frames per chunk. On CUDA the
    decoding runs on its own CUDA stream, so it overlaps the language model's queued steps
    (:class:`AudioDecoder` launches the next frame before handing out the last one).
    """

    def __init__(self, decoder: FrameDecoder, chunk_frames: int = 4, left_context: int = STREAM_LEFT_CONTEXT,
                 lookahead: int = STREAM_LOOKAHEAD, first_chunk_frames: int | None = None,
                 incremental: bool | None = None):
        if chunk_frames < 1 or left_context < 0 or lookahead < 0:
            raise ValueError("need chunk_frames >= 1, left_context >= 0, lookahead >= 0")
        self.dec, self.chunk, self.left, self.ahead = decoder, chunk_frames, left_context, lookahead
        self.first_chunk = first_chunk_frames or chunk_frames
        self.frames: list[list[np.ndarray]] = [[], [], []]
        self.emitted = 0
        if incremental is None:
            incremental = _incremental_ok(decoder.codec.model.decoder)
        self.inc = IncrementalDecoder(decoder.codec, decoder._noise) if incremental else None
        self.fed = 0  # frames handed to the incremental decoder

    def push(self, frame_codes) -> np.ndarray:
        with side_stream(self.dec.codec.device):
            return self._push(frame_codes)

    def flush(self) -> np.ndarray:
        with side_stream(self.dec.codec.device):
            return self._flush()

    def _codes(self):
        return [np.concatenate(f) if f else np.zeros(0, np.int64) for f in self.frames]

    def _push(self, frame_codes) -> np.ndarray:
        job = self.take(frame_codes)
        return job.run() if job is not None else np.zeros(0, np.float32)

    def _flush(self) -> np.ndarray:
        job = self.take_flush()
        return job.run() if job is not None else np.zeros(0, np.float32)

    def take(self, frame_codes) -> SnacPush | None:
        """Add one frame; the decoder call now due (:class:`helpers.infer.snac_stream.SnacPush`), or
        None. ``push`` runs it at once; a server decoding many streams runs the calls of several
        streams together (:func:`helpers.infer.snac_stream.push_batched`). Run each call before the
        next ``take``: the incremental decoder's calls depend on each other."""
        for i, c in enumerate(frame_codes):
            self.frames[i].append(np.asarray(c, dtype=np.int64))
        if self.inc is not None:
            pending = len(self.frames[0])
            due = pending >= self.chunk if self.fed else pending >= self.first_chunk + self.ahead
            if not due:
                return None
            return self._take_pending(final=False)
        n = len(self.frames[0])
        final = n - self.ahead
        need = self.first_chunk if self.emitted == 0 else self.chunk
        if final - self.emitted < need:
            return None
        out = self.dec.decode_window(self._codes(), max(0, self.emitted - self.left), n, self.emitted, final)
        self.emitted = final
        return SnacPush(None, audio=out)

    def take_flush(self) -> SnacPush | None:
        """End the clip: the last decoder call (see :meth:`take`), or None when nothing is left."""
        if self.inc is not None:
            if not (self.fed or len(self.frames[0])):
                return None
            return self._take_pending(final=True)
        n = len(self.frames[0])
        if n == self.emitted:
            return None
        out = self.dec.decode_window(self._codes(), max(0, self.emitted - self.left), n, self.emitted, n)
        self.emitted = n
        return SnacPush(None, audio=out)

    def _take_pending(self, final: bool) -> SnacPush:
        job = SnacPush(self.inc, self._codes(), final)
        self.fed += len(self.frames[0])
        for f in self.frames:  # the incremental decoder keeps the context it still needs
            f.clear()
        return job


class Joiner:
    """Joins pieces of audio (chunks or dialogue turns) incrementally.

    Between pieces: an equal-power crossfade of ``crossfade`` samples (shortened to
    the shorter piece), or, with ``gap > 0``, ``gap`` samples of silence and no
    crossfade. The same object serves whole pieces and streamed bits, with
    identical output: the last ``crossfade`` samples of a piece are held back until
    the next piece (or :meth:`finish`) decides what they become.
    """

    def __init__(self, crossfade: int = 0, gap: int = 0):
        self.xf, self.gap = max(0, int(crossfade)), max(0, int(gap))
        self.held: np.ndarray | None = None  # tail of the previous piece, to be faded out
        self.pending = np.zeros(0, np.float32)  # current piece's audio not yet emitted
        self.pieces = 0

    @staticmethod
    def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        k = len(a)
        if k == 0:
            return np.asarray(b, np.float32)
        t = (np.arange(k, dtype=np.float64) + 0.5) / k
        return (a * np.cos(t * np.pi / 2) + b * np.sin(t * np.pi / 2)).astype(np.float32)

    def start_piece(self) -> np.ndarray:
        out = []
        if self.pieces and self.gap and self.held is not None:
            out += [self.held, np.zeros(self.gap, np.float32)]
            self.held = None
        self.pieces += 1
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def add(self, samples: np.ndarray) -> np.ndarray:
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        out = []
        if self.held is not None:
            k = len(self.held)
            if len(self.pending) <= k:
                return np.zeros(0, np.float32)
            out.append(self._mix(self.held, self.pending[:k]))
            self.pending, self.held = self.pending[k:], None
        keep = min(self.xf, len(self.pending))
        out.append(self.pending[: len(self.pending) - keep])
        self.pending = self.pending[len(self.pending) - keep:]
        return np.concatenate(out)

    def end_piece(self) -> np.ndarray:
        out = []
        if self.held is not None:  # this piece was shorter than the held tail
            k = min(len(self.held), len(self.pending))
            out += [self.held[: len(self.held) - k], self._mix(self.held[len(self.held) - k:], self.pending[:k])]
            self.pending = self.pending[k:]
        self.held, self.pending = self.pending, np.zeros(0, np.float32)
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        out = self.held if self.held is not None else np.zeros(0, np.float32)
        self.held = None
        return out


__all__ = ["FrameDecoder", "StreamDecoder", "Joiner", "side_stream", "STREAM_LEFT_CONTEXT", "STREAM_LOOKAHEAD",
           "STREAM_TOLERANCE", "NOISE_CHUNK"]
