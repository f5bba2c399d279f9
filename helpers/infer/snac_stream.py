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

Supported: the layer types of the SNAC decoders (weight-normed Conv1d / ConvTranspose1d,
Snake1d, NoiseBlock, ResidualUnit, Tanh). A decoder with local attention (``LocalMHA``,
absent from the 24 kHz model) is refused by :func:`supported`; the engine then falls back
to the sliding window.
"""
from __future__ import annotations

import math
import weakref

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


class _Pointwise:
    def __init__(self, fn):
        self.fn = fn

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        return self.fn(x) if x.shape[-1] else x


class _Conv:
    """Stride-1 Conv1d with symmetric zero padding ``p``: output o reads inputs o-p .. o-p+(k-1)d."""

    def __init__(self, mod: torch.nn.Conv1d, weight: torch.Tensor, bias: torch.Tensor | None):
        if mod.stride[0] != 1 or 2 * mod.padding[0] != (mod.kernel_size[0] - 1) * mod.dilation[0]:
            raise ValueError(f"only length-preserving stride-1 convolutions stream here, got {mod}")
        self.w, self.b = weight, bias
        self.d, self.g, self.p = mod.dilation[0], mod.groups, mod.padding[0]
        self.buf: torch.Tensor | None = None  # inputs from absolute index max(0, n_out - p)
        self.n_in = self.n_out = 0

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        self.buf = x if self.buf is None else torch.cat([self.buf, x], -1)
        self.n_in += x.shape[-1]
        target = self.n_in if final else self.n_in - self.p
        if target <= self.n_out:
            return x[..., :0].new_zeros(x.shape[0], self.w.shape[0], 0)
        lo = self.n_out - self.p  # first input needed (absolute)
        seg = self.buf
        if lo < 0:
            seg = F.pad(seg, (-lo, 0))
        hi = target - 1 + self.p  # last input needed
        if hi >= self.n_in:
            seg = F.pad(seg, (0, hi - self.n_in + 1))
        seg = seg[..., : (target - self.n_out) + 2 * self.p]
        y = F.conv1d(seg, self.w, self.b, dilation=self.d, groups=self.g)
        self.n_out = target
        keep_from = max(0, self.n_out - self.p)
        start = self.n_in - self.buf.shape[-1]
        self.buf = self.buf[..., keep_from - start:]
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

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        self.buf = x if self.buf is None else torch.cat([self.buf, x], -1)
        self.n_in += x.shape[-1]
        if final:
            target = (self.n_in - 1) * self.s - 2 * self.p + self.k + self.op
        else:
            target = self.n_in * self.s - self.p
        if target <= self.n_out or self.n_in == 0:
            return x.new_zeros(x.shape[0], self.w.shape[1] * self.g, 0)
        i0 = self._first_input(self.n_out)
        seg = self.buf[..., i0 - self.buf_start:]
        raw = F.conv_transpose1d(seg, self.w, self.b, stride=self.s, groups=self.g,
                                 output_padding=self.op if final else 0)
        a = self.n_out + self.p - i0 * self.s  # raw index (relative to seg) of output n_out
        y = raw[..., a: a + (target - self.n_out)]
        if y.shape[-1] < target - self.n_out:  # final outputs beyond the last kernel tap: bias only
            y = F.pad(y, (0, target - self.n_out - y.shape[-1]))
        self.n_out = target
        keep = self._first_input(self.n_out)
        self.buf = self.buf[..., max(0, keep - self.buf_start):]
        self.buf_start = max(self.buf_start, keep)
        return y


class _Noise:
    """NoiseBlock with the position-indexed noise of :class:`helpers.infer.snac_decode.FrameDecoder`."""

    def __init__(self, mod, index: int, noise_fn, weights: dict):
        self.lin, self.index, self.noise_fn, self.pos = _Conv(mod.linear, *weights[mod.linear]), index, noise_fn, 0

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        t = x.shape[-1]
        if not t:
            return x
        n = self.noise_fn(self.index, self.pos, t).to(device=x.device, dtype=x.dtype)
        self.pos += t
        return x + n.view(1, 1, t) * self.lin.push(x, True)


class _Seq:
    def __init__(self, ops):
        self.ops = ops

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        for op in self.ops:
            x = op.push(x, final)
        return x


class _Residual:
    """x + block(x): the block lags its input, so the skip holds x until the block catches up."""

    def __init__(self, block: _Seq):
        self.block, self.held = block, None

    def push(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        self.held = x if self.held is None else torch.cat([self.held, x], -1)
        y = self.block.push(x, final)
        t = y.shape[-1]
        out = self.held[..., :t] + y
        self.held = self.held[..., t:]
        return out


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
    (or :meth:`flush`) ends the clip and returns the rest.
    """

    def __init__(self, codec, noise_fn):
        self.codec = codec
        self.net = _build(codec.model.decoder, noise_fn, [0], _weights(codec.model.decoder))
        self.frames = 0

    @torch.inference_mode()
    def push(self, codes, final: bool = False) -> np.ndarray:
        q = self.codec.model.quantizer
        dev = self.codec.device
        n = int(np.asarray(codes[0]).shape[0]) if codes is not None else 0
        if n:
            tensors = [torch.from_numpy(np.ascontiguousarray(c, dtype=np.int64)).to(dev)[None] for c in codes]
            z = q.from_codes(tensors)
        else:
            z = torch.zeros(1, q.quantizers[0].out_proj.weight.shape[0], 0, device=dev)
        self.frames += n
        with exact_cuda(dev):
            y = self.net.push(z, final)
        return y.reshape(-1).float().cpu().numpy()

    def flush(self) -> np.ndarray:
        return self.push(None, final=True)
