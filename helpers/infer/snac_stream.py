"""Incremental SNAC decoding for streaming: every layer keeps exactly the context it needs.

Why: the SNAC decoder is non-causal, and a sliding window that re-decodes a few frames of
left and right context for every chunk decodes each frame several times (2.31x the frames
of a full decode with 3 + 3 frames of context and 4-frame chunks). Here the decoder runs
*layer by layer* on the new frames only: each convolution keeps the tail of its input it
still needs (its own kernel reach, at its own rate) and emits the outputs whose inputs
have all arrived. No frame is decoded twice; the only overhead is a few kernel-widths of
input per layer per call.

Receptive field (:func:`decoder_reach`, from the conv layers; the tests check it by
decoding windows): for the 24 kHz model an output sample depends on latents up to
``9`` steps (2.25 frames) either side, so audio for frame ``t`` is final once frame
``t + 3`` has arrived (:data:`helpers.infer.snac_decode.STREAM_LOOKAHEAD`). The incremental
decoder emits everything that is final after every call, which is exactly that.

Exactness: the same convolutions on the same inputs, with left/right zero padding only at
the true ends of the clip, and the same position-indexed noise
(:class:`helpers.infer.snac_decode.FrameDecoder`'s table): streamed audio equals the full decode
up to float32 rounding (the tests allow :data:`helpers.infer.snac_decode.STREAM_TOLERANCE`).

Batched across streams (:func:`push_batched`, the vLLM backend's SNAC worker): a layer's state
*shape* (buffer lengths) depends only on how many frames it has been fed, and stops changing after
the first few; decoders whose next call has the same plan (every slice, pad and output length equal)
run as one call with the streams stacked on the batch axis, each row reading its own noise
positions. Convolutions never mix rows, so each stream gets what it gets decoded alone (equal to
float rounding: a batch may take another kernel than one row; measured <= 6e-7 on CPU).

Supported: the layer types of the SNAC decoders (weight-normed Conv1d / ConvTranspose1d,
Snake1d, NoiseBlock, ResidualUnit, Tanh). A decoder with local attention (``LocalMHA``,
absent from the 24 kHz model) is refused by :func:`supported`; the engine then falls back
to the sliding window.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..codec import exact_cuda


def decoder_reach(decoder: torch.nn.Module) -> tuple[int, int]:
    """Upper bound on how far (left, right), in decoder *input* (latent) steps, one output sample looks.

    Walks the convolutions in order (the decoder is a chain; residual branches add their
    reach, skips add none) with ``scale`` = latent steps per step of the current layer:
    a Conv1d (kernel k, dilation d, padding p) reads ``p`` steps left and ``(k-1)d - p``
    right; a ConvTranspose1d (k, stride s, padding p) reads about ``(k-1-p)/s`` input steps
    left and ``p/s`` right, then divides ``scale`` by ``s``. 24 kHz model: 9.3 latents
    each side, rounded up to 10 (measured by decoding windows: 9 suffice, 8 do not).
    """
    left = right = 0.0
    scale = 1.0
    for mod in decoder.modules():
        if isinstance(mod, torch.nn.ConvTranspose1d):
            (k,), (s,), (p,) = mod.kernel_size, mod.stride, mod.padding
            left, right = left + (k - 1 - p) / s * scale, right + p / s * scale
            scale /= s
        elif isinstance(mod, torch.nn.Conv1d):
            (k,), (d,), (p,) = mod.kernel_size, mod.dilation, mod.padding
            left, right = left + p * scale, right + ((k - 1) * d - p) * scale
    return math.ceil(left), math.ceil(right)


def supported(decoder: torch.nn.Module) -> bool:
    """True when every layer of ``decoder`` is one :class:`IncrementalDecoder` can stream."""
    known = {"Conv1d", "ConvTranspose1d", "Snake1d", "NoiseBlock", "ResidualUnit", "Tanh", "Sequential",
             "DecoderBlock", "Decoder", "ParametrizedConv1d", "ParametrizedConvTranspose1d", "ParametrizationList",
             "ModuleDict", "_WeightNorm", "Identity"}
    return all(type(m).__name__ in known for m in decoder.modules())


def _stack(parts: list) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, 0)


def _split(ops, name: str, t: torch.Tensor) -> None:
    """Give row ``i`` of a batched state tensor back to stream ``i``'s op (batch dim kept: (1, C, n))."""
    for i, o in enumerate(ops):
        setattr(o, name, t[i:i + 1])


# Every op has the same two halves: ``plan(t, final) -> (key, t_out)`` reads only its own counters
# and buffer lengths (no tensors, no change), and ``run(ops, x, final)`` pushes the stacked input
# ``x`` (B, C, t) of B streams whose plans are equal through the op, one row per stream, and
# updates each stream's state. One stream alone is ``run([op], x, final)``: the same code, B = 1.
# Equal plans mean every slice, pad and output length is the same for all rows, so stacking
# changes nothing but the batch size of the convolutions (:func:`push_batched`).
class _Pointwise:
    def __init__(self, fn):
        self.fn = fn

    def plan(self, t: int, final: bool):
        return (), t

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        return ops[0].fn(x) if x.shape[-1] else x


def _buflen(buf) -> int:
    return 0 if buf is None else buf.shape[-1]


class _Conv:
    """Stride-1 Conv1d with symmetric zero padding ``p``: output o reads inputs o-p .. o-p+(k-1)d."""

    def __init__(self, mod: torch.nn.Conv1d, weight: torch.Tensor, bias: torch.Tensor | None):
        if mod.stride[0] != 1 or 2 * mod.padding[0] != (mod.kernel_size[0] - 1) * mod.dilation[0]:
            raise ValueError(f"only length-preserving stride-1 convolutions stream here, got {mod}")
        self.w, self.b = weight, bias
        self.d, self.g, self.p = mod.dilation[0], mod.groups, mod.padding[0]
        self.buf: torch.Tensor | None = None  # inputs from absolute index max(0, n_out - p)
        self.n_in = self.n_out = 0

    def plan(self, t: int, final: bool):
        n_in, blen = self.n_in + t, _buflen(self.buf) + t
        target = n_in if final else n_in - self.p
        if target <= self.n_out:
            return (blen, None), 0
        lo = self.n_out - self.p  # first input needed (absolute)
        hi = target - 1 + self.p  # last input needed
        keep = max(0, target - self.p) - (n_in - blen)  # buffer index kept from
        return (blen, max(0, -lo), max(0, hi - n_in + 1), target - self.n_out + 2 * self.p, keep), target - self.n_out

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        me, t = ops[0], x.shape[-1]
        (blen, *cut), n = me.plan(t, final)
        buf = x if blen == t else torch.cat([_stack([o.buf for o in ops]), x], -1)
        for o in ops:
            o.n_in += t
        if cut == [None]:
            _split(ops, "buf", buf)
            return x.new_zeros(x.shape[0], me.w.shape[0], 0)
        padl, padr, seglen, keep = cut
        seg = F.pad(buf, (padl, padr)) if padl or padr else buf
        y = F.conv1d(seg[..., :seglen], me.w, me.b, dilation=me.d, groups=me.g)
        for o in ops:
            o.n_out += n
        _split(ops, "buf", buf[..., keep:])
        return y


class _ConvT:
    """ConvTranspose1d (k, s, p, output_padding): output o = raw u - p, raw u reads inputs
    i with 0 <= u - i*s < k, so raw outputs below n_in*s are final."""

    def __init__(self, mod: torch.nn.ConvTranspose1d, weight: torch.Tensor, bias: torch.Tensor | None):
        self.w, self.b = weight, bias
        (self.k,), (self.s,), (self.p,), (self.op,) = mod.kernel_size, mod.stride, mod.padding, mod.output_padding
        self.g = mod.groups
        self.buf: torch.Tensor | None = None
        self.buf_start = 0  # absolute index of buf[..., 0]
        self.n_in = self.n_out = 0

    def _first_input(self, o: int) -> int:
        return max(0, math.ceil((o + self.p - self.k + 1) / self.s))

    def plan(self, t: int, final: bool):
        n_in, blen = self.n_in + t, _buflen(self.buf) + t
        if final:
            target = (n_in - 1) * self.s - 2 * self.p + self.k + self.op
        else:
            target = n_in * self.s - self.p
        if target <= self.n_out or n_in == 0:
            return (blen, final, None), 0
        i0 = self._first_input(self.n_out)
        a = self.n_out + self.p - i0 * self.s  # raw index (relative to seg) of output n_out
        keep = max(0, self._first_input(target) - self.buf_start)
        return (blen, final, i0 - self.buf_start, a, keep), target - self.n_out

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        me, t = ops[0], x.shape[-1]
        (blen, _, *cut), n = me.plan(t, final)
        buf = x if blen == t else torch.cat([_stack([o.buf for o in ops]), x], -1)
        for o in ops:
            o.n_in += t
        if cut == [None]:
            _split(ops, "buf", buf)
            return x.new_zeros(x.shape[0], me.w.shape[1] * me.g, 0)
        seg0, a, keep = cut
        raw = F.conv_transpose1d(buf[..., seg0:], me.w, me.b, stride=me.s, groups=me.g,
                                 output_padding=me.op if final else 0)
        y = raw[..., a: a + n]
        if y.shape[-1] < n:  # final outputs beyond the last kernel tap: bias only
            y = F.pad(y, (0, n - y.shape[-1]))
        for o in ops:
            o.n_out += n
            o.buf_start = max(o.buf_start, o._first_input(o.n_out))
        _split(ops, "buf", buf[..., keep:])
        return y


class _Noise:
    """NoiseBlock with the position-indexed noise of :class:`helpers.infer.snac_decode.FrameDecoder`:
    each stream (row) reads the noise of its own positions."""

    def __init__(self, mod, index: int, noise_fn, weights: dict):
        self.lin, self.index, self.noise_fn, self.pos = _Conv(mod.linear, *weights[mod.linear]), index, noise_fn, 0

    def plan(self, t: int, final: bool):
        return self.lin.plan(t, True)[0], t

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        t = x.shape[-1]
        if not t:
            return x
        n = torch.stack([o.noise_fn(o.index, o.pos, t) for o in ops]).to(device=x.device, dtype=x.dtype)
        for o in ops:
            o.pos += t
        return x + n.view(len(ops), 1, t) * _Conv.run([o.lin for o in ops], x, True)


class _Seq:
    def __init__(self, ops):
        self.ops = ops

    def plan(self, t: int, final: bool):
        keys = []
        for op in self.ops:
            k, t = op.plan(t, final)
            keys.append(k)
        return tuple(keys), t

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        for j, op in enumerate(ops[0].ops):
            x = type(op).run([o.ops[j] for o in ops], x, final)
        return x


class _Residual:
    """x + block(x): the block lags its input, so the skip holds x until the block catches up."""

    def __init__(self, block: _Seq):
        self.block, self.held = block, None

    def plan(self, t: int, final: bool):
        k, n = self.block.plan(t, final)
        return (_buflen(self.held) + t, k), n

    @staticmethod
    def run(ops, x: torch.Tensor, final: bool) -> torch.Tensor:
        held = x if _buflen(ops[0].held) == 0 else torch.cat([_stack([o.held for o in ops]), x], -1)
        y = _Seq.run([o.block for o in ops], x, final)
        t = y.shape[-1]
        _split(ops, "held", held[..., t:])
        return held[..., :t] + y


_WEIGHTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@torch.no_grad()
def _weights(decoder: torch.nn.Module) -> dict:
    """Each convolution's (weight, bias), weight norm applied once per decoder (recomputing it
    for every stream costs ~0.4 s on CPU). Cached while the decoder lives; cleared when a
    weight's version changes (fine-tuning the codec in place)."""
    stamp = tuple(p._version for p in decoder.parameters())
    got = _WEIGHTS.get(decoder)
    if got is None or got[0] != stamp:
        w = {}
        with torch.nn.utils.parametrize.cached():
            for m in decoder.modules():
                if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                    w[m] = (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
        dev = next(decoder.parameters()).device
        if dev.type == "cuda":  # made on this thread's current stream, read from others (the side
            torch.cuda.current_stream(dev).synchronize()  # stream): finished first, once per decoder
        got = _WEIGHTS[decoder] = (stamp, w)
    return got[1]


def _build(mod, noise_fn, counter: list, weights: dict) -> object:
    name = type(mod).__name__
    if isinstance(mod, torch.nn.ConvTranspose1d):
        return _ConvT(mod, *weights[mod])
    if isinstance(mod, torch.nn.Conv1d):
        return _Conv(mod, *weights[mod])
    if name == "NoiseBlock":
        counter[0] += 1
        return _Noise(mod, counter[0] - 1, noise_fn, weights)
    if name == "ResidualUnit":
        return _Residual(_build(mod.block, noise_fn, counter, weights))
    if isinstance(mod, torch.nn.Sequential):
        return _Seq([_build(m, noise_fn, counter, weights) for m in mod])
    if name in ("DecoderBlock", "Decoder"):
        return _build(mod.block if name == "DecoderBlock" else mod.model, noise_fn, counter, weights)
    if name in ("Snake1d", "Tanh", "Identity"):
        return _Pointwise(mod)
    raise ValueError(f"cannot stream a {name} layer")


class IncrementalDecoder:
    """Decode SNAC codes frame by frame; ``push(codes)`` returns the audio now final.

    ``codec``: a :class:`helpers.codec.SnacCodec`; ``noise_fn(block, offset, length)``: the
    position-indexed noise (``FrameDecoder._noise``). ``push(codes, final=False)`` with the
    codes of one or more new frames (``[cb1 (n,), cb2 (2n,), cb3 (4n,)]``); ``final=True``
    (or :meth:`flush`) ends the clip and returns the rest. :func:`push_batched` pushes several
    streams' decoders in one call.
    """

    def __init__(self, codec, noise_fn):
        self.codec = codec
        self.weights = _weights(codec.model.decoder)  # shared by decoders of the same codec weights
        self.net = _build(codec.model.decoder, noise_fn, [0], self.weights)
        self.frames = 0

    def push(self, codes, final: bool = False) -> np.ndarray:
        out = push_batched([SnacPush(self, codes, final)])[0]
        if isinstance(out, BaseException):
            raise out
        return out

    def flush(self) -> np.ndarray:
        return self.push(None, final=True)


@dataclass
class SnacPush:
    """One due call of one stream's decoder: ``dec.push(codes, final)``. ``audio``: set instead of ``dec``
    when the samples are already decoded (a sliding-window stream); :func:`push_batched` passes them on."""

    dec: IncrementalDecoder | None
    codes: list | None = None
    final: bool = False
    audio: np.ndarray | None = None

    def run(self) -> np.ndarray:
        return self.audio if self.dec is None else self.dec.push(self.codes, self.final)


@torch.inference_mode()
def _latents(push: SnacPush) -> torch.Tensor:
    """(1, C, 4n) decoder input of one push; bad codes raise here, for this stream only."""
    q, dev = push.dec.codec.model.quantizer, push.dec.codec.device
    codes = push.codes
    n = int(np.asarray(codes[0]).shape[0]) if codes is not None else 0
    if not n:
        return torch.zeros(1, q.quantizers[0].out_proj.weight.shape[0], 0, device=dev)
    size = q.quantizers[0].codebook_size
    tensors = []
    for i, c in enumerate(codes):
        c = np.ascontiguousarray(c, dtype=np.int64)
        want = n * q.quantizers[0].stride // q.quantizers[i].stride  # cb1 n, cb2 2n, cb3 4n
        if c.shape != (want,) or c.min() < 0 or c.max() >= size:
            raise ValueError(f"codebook {i + 1} of a {n}-frame push: expected {want} codes in 0..{size - 1}, "
                             f"got shape {c.shape}, range {c.min()}..{c.max()}")
        tensors.append(torch.from_numpy(c).to(dev)[None])
    return q.from_codes(tensors)


@torch.inference_mode()
def push_batched(pushes: list, calls: list | None = None) -> list:
    """Run several streams' due decoder calls (:class:`SnacPush`) with as few SNAC calls as possible.

    Calls whose decoders are in the same state *shape* (:meth:`_Seq.plan`: every layer's buffer
    length and every slice/pad/output length of this push equal; typically streams past their first
    few frames pushing the same number of frames) run as one batched pass, one row per stream, each
    row with its own position-indexed noise. Rows of a convolution do not mix, so each stream gets
    the audio it gets decoded alone (the tests check it; on CPU it is bit-identical, on other
    devices a different batch size may pick another kernel: float rounding, within
    :data:`helpers.infer.snac_decode.STREAM_TOLERANCE`). Returns per push, in order, its samples or
    the exception that push raised (bad codes fail their own stream only); ``calls`` (a list) gets
    the number of streams of each SNAC call made. Calls to the same decoder must not share a batch
    (each depends on the previous one's state): they raise.
    """
    out: list = [None] * len(pushes)
    groups: dict = {}
    seen = set()
    for i, p in enumerate(pushes):
        if p.dec is None:
            out[i] = p.audio if p.audio is not None else np.zeros(0, np.float32)
            continue
        if id(p.dec) in seen:
            raise ValueError("push_batched: two calls of the same decoder in one batch; run them one after the other")
        seen.add(id(p.dec))
        try:
            z = _latents(p)
            key = (id(p.dec.weights), p.final, p.dec.net.plan(z.shape[-1], p.final)[0])  # one pass: same weights
        except Exception as e:  # this stream's codes: its own error
            out[i] = e
            continue
        groups.setdefault(key, []).append((i, p, z))
    for members in groups.values():
        decs = [p.dec for _, p, _ in members]
        dev = decs[0].codec.device
        try:
            with exact_cuda(dev):
                y = type(decs[0].net).run([d.net for d in decs], torch.cat([z for _, _, z in members]), members[0][1].final)
            y = y.float().cpu().numpy()
        except Exception as e:  # not a stream's input: a failure of the pass itself ends all its streams
            y = e
        if calls is not None:
            calls.append(len(members))
        for row, (i, p, z) in enumerate(members):
            p.dec.frames += int(np.asarray(p.codes[0]).shape[0]) if p.codes is not None else 0
            out[i] = y if isinstance(y, BaseException) else y[row].reshape(-1)
    return out
