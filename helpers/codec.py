"""SNAC 24 kHz codec: waveform <-> three codebooks of integer codes.

:class:`SnacCodec` wraps ``snac.SNAC`` and adds what a data pipeline needs:
loading from the hub / a local folder / random weights offline, properties read
from the model, validated inputs, batched encoding that gives exactly the codes
of one-by-one encoding, and reproducible decoding.

Time grid (24 kHz model; every number is read from the model, not assumed)::

    hop_length        = prod(encoder_rates)        = 512 samples per latent step
    samples_per_frame = hop_length * vq_strides[0] = 2048 samples per 7-token frame
    frame_rates       = sr / (hop * stride)        = 11.72, 23.44, 46.88 Hz (CB1..CB3)
    tokens_per_second = sum(frame_rates)           = 82.03

Batching rule (why batch == single, bit for bit on CPU)
-------------------------------------------------------
The encoder is non-causal: the latent at a time step depends on input up to
``receptive_field`` samples to its right (4,757 samples, 0.198 s, for the 24 kHz
architecture; computed from the conv layers by :func:`encoder_reach` and checked
against autograd in the tests). Padding a clip with zeros to the length of the
longest clip in a batch would therefore change its last frames, and so would
the conv layers' own zero padding at the end of a clip encoded alone. So both
paths encode ``clip + zeros`` where the zero *guard* is at least the receptive
field (rounded up to whole frames: 6,144 samples, 3 frames), and keep only the
first ``T = ceil(n / samples_per_frame)`` frames. Every kept frame then sees the
same real samples and the same zeros in both paths, never the end of the tensor.
The guard costs 0.256 s of extra audio per clip (2.5 % on a 10 s clip).

Whether that equality is also *bitwise* depends on the kernels: float
convolutions whose reduction order changed with the batch size or the length
would flip near-tied argmins in the quantizer. On CPU (oneDNN / the default
convolution, torch 2.13) the tests find the codes identical for every length
and batch size tried. On CUDA, encoding runs with cuDNN in deterministic mode
and TF32 off, which removes the two known sources of shape-dependent results;
bitwise equality there has not been measured.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import tokens as tk
from .audio import resample
from .profiles import DEFAULT_ENCODE_BATCH_SECONDS, RANDOM_SNAC_24KHZ

# The hub's hubertsiuzdak/snac_24khz config.json: the architecture the tiny profile
# builds with random weights (same shapes, same time grid, 19.8 M parameters).
SNAC_24KHZ_CONFIG: dict = dict(
    sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024,
    decoder_rates=[8, 8, 4, 2], attn_window_size=None, codebook_size=tk.CODEBOOK_SIZE, codebook_dim=8,
    vq_strides=[4, 2, 1], noise=True, depthwise=True,
)
RANDOM_SEED = 0  # fixed seed of the random-weight model: same weights on every machine
# SNAC 24 kHz encoder activations per padded second of a batch, fp32: ~0.6 GiB per 30 s clip measured
# on CPU (linear in batch; helpers.profiles.DEFAULT_ENCODE_BATCH_SECONDS). Sizes CUDA batches from free memory.
ENCODE_GIB_PER_PADDED_SECOND = 0.02
CONFIG_FILE, WEIGHTS_FILE = "config.json", "pytorch_model.bin"  # snac's folder layout


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def _seeded(seed: int):
    """Run a block with torch's RNGs (CPU and any CUDA devices) seeded, then restore them."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def calibration_signal(seconds: float = 4.0, sr: int = 24000, seed: int = 0) -> np.ndarray:
    """A fixed synthetic, speech-like signal (float32, ``sr`` Hz): a harmonic tone whose pitch
    glides between 20 and 200 Hz under a syllable-rate envelope, plus bursts of noise.
    Used only to centre the random-weight codec's quantizers (see :func:`center_quantizers`)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 110 + 90 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    sig = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sig = sig + rng.standard_normal(n) * 0.3 * (np.sin(2 * np.pi * 1.3 * t) > 0.5)
    return (0.3 * sig / np.abs(sig).max()).astype(np.float32)


@torch.no_grad()
def center_quantizers(model, signal: np.ndarray) -> None:
    """Shift each quantizer's input-projection bias so its projections of ``signal`` have zero mean.

    Why: with random weights the encoder's output is dominated by a constant offset, so
    after the quantizer's L2 normalisation every frame points the same way and a clip
    uses only 2–10 distinct codes — codes that say nothing about the audio. Centring the
    8-dim projections (residual stage by residual stage, as the quantizer runs) makes the
    codes follow the signal (≈30–40 distinct CB1 codes in a 3 s clip). The weights stay
    random; nothing is learned from speech. Only the ``tiny`` profile's codec does this.
    """
    x = model.preprocess(torch.from_numpy(signal)[None, None])
    residual = model.encoder(x)
    for q in model.quantizer.quantizers:
        z = torch.nn.functional.avg_pool1d(residual, q.stride, q.stride) if q.stride > 1 else residual
        q.in_proj.bias -= q.in_proj(z).mean(dim=(0, 2))
        z_q, _ = q(residual)
        residual = residual - z_q


def encoder_reach(encoder: torch.nn.Module) -> tuple[int, int]:
    """How far (left, right) in input samples one latent step of ``encoder`` looks.

    Walks the Conv1d layers in order (the SNAC encoder is a chain; residual
    branches add reach, the skip adds none). A conv output step at input rate
    ``r`` covers input steps ``[j*s, j*s + s - 1]`` and reads
    ``[j*s - p, j*s - p + (k-1)*d]``, so it reaches ``p*r`` samples left and
    ``((k-1)*d - p - s + 1)*r`` right; reaches add up along the chain. A local
    attention window (absent in the 24 kHz model) adds a whole window each side.
    """
    left = right = 0
    rate = 1  # input samples per step at the current layer
    for mod in encoder.modules():
        if isinstance(mod, torch.nn.Conv1d):
            (k,), (s,), (d,), (p,) = mod.kernel_size, mod.stride, mod.dilation, mod.padding
            left += p * rate
            right += max((k - 1) * d - p - s + 1, 0) * rate
            rate *= s
        elif hasattr(mod, "window_size") and mod.__class__.__name__ == "LocalMHA":
            left += mod.window_size * rate
            right += mod.window_size * rate
    return left, right



def exact_cuda(device: torch.device):
    """Deterministic cuDNN algorithms and full fp32 (no TF32) for the codec's convolutions on CUDA.

    Encoding: the codes must not depend on which algorithm cuDNN picks for a batch shape.
    Decoding: streamed chunks and a whole clip run convolutions of different lengths, and
    with cuDNN's default TF32 they differed by ~6e-4 on an H200 (2026-12-04), 60x the
    streaming tolerance. The previous flags are restored on exit; nothing to set on CPU."""
    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False)

class SnacCodec:
    """A loaded SNAC model in eval mode on one device, with numpy in and out.

    Build it with :meth:`load`. Codes are lists of three int64 arrays of shapes
    ``(T,), (2T,), (4T,)`` (CB1 coarse .. CB3 fine), the layout
    :mod:`helpers.tokens` turns into 7-token frames.
    """

    def __init__(self, model, device: torch.device | str | None = None, name: str = "snac"):
        self.name = name
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self._check_contract()
        left, right = encoder_reach(self.model.encoder)
        self.receptive_field = right  # samples right of a latent step that influence it
        self.receptive_field_left = left
        # Zeros appended to every clip before encoding, whole padding units so that
        # snac's own preprocess() never pads further (see the module docstring).
        unit = self._pad_unit
        self.guard_samples = -(-right // unit) * unit

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name_or_path: str | os.PathLike, device: torch.device | str | None = None) -> "SnacCodec":
        """Load a codec from a hub id, a local folder, or :data:`RANDOM_SNAC_24KHZ`.

        * ``"hubertsiuzdak/snac_24khz"`` (any hub id): ``snac.SNAC.from_pretrained``.
        * a folder holding ``config.json`` + ``pytorch_model.bin`` (as written by
          :meth:`save_pretrained` or the hub repo).
        * ``RANDOM_SNAC_24KHZ``: the 24 kHz architecture with weights from torch
          seed :data:`RANDOM_SEED`, built offline; the caller's RNG state is untouched.
          Its quantizers are centred on a fixed synthetic signal (:func:`center_quantizers`)
          so that codes follow the audio instead of collapsing onto a few values.

        ``device``: default CUDA when present, else CPU.
        """
        from snac import SNAC  # imported here: importing helpers.codec loads nothing

        name = os.fspath(name_or_path)
        if name == RANDOM_SNAC_24KHZ:
            with _seeded(RANDOM_SEED):  # weights are drawn on the CPU
                model = SNAC(**SNAC_24KHZ_CONFIG).eval()
            center_quantizers(model, calibration_signal(sr=SNAC_24KHZ_CONFIG["sampling_rate"]))
            return cls(model, device, name=name)
        path = Path(name).expanduser()
        if path.is_dir():
            missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (path / f).is_file()]
            if missing:
                raise FileNotFoundError(f"SNAC folder {path} lacks {', '.join(missing)}; expected "
                                        f"{CONFIG_FILE} + {WEIGHTS_FILE} (see SnacCodec.save_pretrained)")
            return cls(SNAC.from_pretrained(str(path)), device, name=str(path))
        if path.exists():
            raise ValueError(f"{path} is a file; expected a SNAC folder ({CONFIG_FILE} + {WEIGHTS_FILE}), "
                             f"a hub id, or {RANDOM_SNAC_24KHZ!r}")
        if name.startswith((".", "/", "~")) or name.count("/") != 1:
            raise FileNotFoundError(f"SNAC model {name!r} is neither an existing folder nor a hub id "
                                    f"of the form 'owner/name'")
        try:
            model = SNAC.from_pretrained(name)
        except OSError as e:  # huggingface_hub's errors (offline, 404, no auth) are OSErrors
            raise OSError(f"could not download SNAC model {name!r} from the Hugging Face Hub "
                          f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}): {e}") from e
        return cls(model, device, name=name)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``pytorch_model.bin`` so :meth:`load` (and
        ``snac.SNAC.from_pretrained``) reads the same model back. Returns the folder."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        m = self.model
        config = dict(
            sampling_rate=int(m.sampling_rate), encoder_dim=int(m.encoder_dim),
            encoder_rates=[int(r) for r in m.encoder_rates], latent_dim=int(m.latent_dim),
            decoder_dim=int(m.decoder_dim), decoder_rates=[int(r) for r in m.decoder_rates],
            attn_window_size=m.attn_window_size, codebook_size=int(m.codebook_size),
            codebook_dim=int(m.codebook_dim), vq_strides=[int(s) for s in m.vq_strides],
            noise=self._has_noise, depthwise=self._is_depthwise,
        )
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().cpu() for k, v in m.state_dict().items()}
        torch.save(state, out / WEIGHTS_FILE)
        return out

    @property
    def _has_noise(self) -> bool:
        return any(type(mod).__name__ == "NoiseBlock" for mod in self.model.decoder.modules())

    @property
    def _is_depthwise(self) -> bool:
        # SNAC(depthwise=True) is the only way its encoder gets grouped convolutions.
        return any(isinstance(mod, torch.nn.Conv1d) and mod.groups > 1
                   for mod in self.model.encoder.modules())

    def _check_contract(self) -> None:
        m = self.model
        strides = [int(s) for s in m.vq_strides]
        per_frame = tuple(strides[0] // s for s in strides)
        problems = []
        if m.n_codebooks != tk.N_CODEBOOKS:
            problems.append(f"{m.n_codebooks} codebooks, the token contract has {tk.N_CODEBOOKS}")
        if m.codebook_size != tk.CODEBOOK_SIZE:
            problems.append(f"codebook size {m.codebook_size}, the contract has {tk.CODEBOOK_SIZE}")
        if any(strides[0] % s for s in strides) or per_frame != tk.CODES_PER_FRAME:
            problems.append(f"vq_strides {strides} give {per_frame} codes per frame, the contract "
                            f"has {tk.CODES_PER_FRAME}")
        if problems:
            raise ValueError(f"SNAC model {self.name!r} does not fit helpers.tokens: " + "; ".join(problems)
                             + " (use the 24 kHz model, hubertsiuzdak/snac_24khz)")

    # ------------------------------------------------------------------ time grid
    @property
    def sample_rate(self) -> int:
        """Hz of the waveforms the model takes and returns (24,000)."""
        return int(self.model.sampling_rate)

    @property
    def hop_length(self) -> int:
        """Input samples per latent step: product of the encoder strides (512)."""
        return int(np.prod(self.model.encoder_rates))

    @property
    def vq_strides(self) -> tuple[int, ...]:
        """Latent steps per code of each codebook, coarse to fine ((4, 2, 1))."""
        return tuple(int(s) for s in self.model.vq_strides)

    @property
    def frame_rates(self) -> tuple[float, ...]:
        """Codes per second of each codebook in Hz (11.72, 23.44, 46.88)."""
        return tuple(self.sample_rate / (self.hop_length * s) for s in self.vq_strides)

    @property
    def samples_per_frame(self) -> int:
        """Samples per 7-token frame = one CB1 code (2,048 = 85.3 ms)."""
        return self.hop_length * self.vq_strides[0]

    @property
    def tokens_per_second(self) -> float:
        """Audio tokens per second of speech (82.03)."""
        return float(sum(self.frame_rates))

    @property
    def _pad_unit(self) -> int:
        # snac's preprocess() pads to hop * lcm(vq_strides[0], attention window).
        return self.hop_length * math.lcm(self.vq_strides[0], self.model.attn_window_size or 1)

    def n_frames(self, n_samples: int) -> int:
        """Frames (T) that encoding ``n_samples`` samples yields: ceil(n / samples_per_frame)."""
        return -(-int(n_samples) // self.samples_per_frame)

    def info(self) -> dict:
        """The time grid and size, for display in notebooks."""
        return dict(name=self.name, device=str(self.device), sample_rate=self.sample_rate,
                    hop_length=self.hop_length, vq_strides=self.vq_strides,
                    frame_rates_hz=tuple(round(r, 2) for r in self.frame_rates),
                    samples_per_frame=self.samples_per_frame,
                    tokens_per_second=round(self.tokens_per_second, 2),
                    receptive_field_samples=self.receptive_field, guard_samples=self.guard_samples,
                    parameters=sum(p.numel() for p in self.model.parameters()))

    def __repr__(self) -> str:
        return f"SnacCodec({self.name!r}, device={self.device}, {self.tokens_per_second:.2f} tokens/s)"

    # ------------------------------------------------------------------ encode
    def _prepare(self, wav, sr: int | None, what: str) -> np.ndarray:
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        a = np.asarray(wav)
        if a.ndim == 2 and 1 in a.shape:  # (1, n) or (n, 1): one channel
            a = a.reshape(-1)
        if a.ndim != 1:
            raise ValueError(f"{what}: expected a mono waveform of shape (n,), got {a.shape} "
                             f"(downmix with helpers.audio.to_mono)")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{what}: expected float samples in [-1, 1], got dtype {a.dtype}")
        if a.shape[0] == 0:
            raise ValueError(f"{what}: the waveform is empty")
        if not np.isfinite(a).all():
            raise ValueError(f"{what}: {int((~np.isfinite(a)).sum())} sample(s) are NaN or infinite")
        a = a.astype(np.float32, copy=False)
        if sr is not None and int(sr) != self.sample_rate:
            a = resample(a, int(sr), self.sample_rate)
        return a

    @torch.inference_mode()
    def _encode_padded(self, wavs: list[np.ndarray], n_frames: list[int]) -> list[list[np.ndarray]]:
        """Encode clips together: each padded with zeros to max(T)*spf + guard."""
        length = max(n_frames) * self.samples_per_frame + self.guard_samples
        batch = np.zeros((len(wavs), 1, length), dtype=np.float32)  # (B, 1, L)
        for i, w in enumerate(wavs):
            batch[i, 0, : w.shape[0]] = w
        with exact_cuda(self.device):
            codes = self.model.encode(torch.from_numpy(batch).to(self.device))  # 3 x (B, t_k)
        codes = [c.cpu().numpy().astype(np.int64) for c in codes]
        out = []
        for i, t in enumerate(n_frames):
            out.append([c[i, : t * per].copy() for c, per in zip(codes, tk.CODES_PER_FRAME)])
        return out

    def encode(self, wav, sr: int | None = None) -> list[np.ndarray]:
        """Encode one mono clip.

        ``wav``: float ``(n,)`` at ``sr`` Hz (default: the model's 24 kHz; any other
        rate is resampled with soxr first). Returns ``[cb1 (T,), cb2 (2T,), cb3 (4T,)]``
        int64 with ``T = ceil(n / samples_per_frame)`` (n after resampling); the last
        frame covers the clip's tail plus silence.
        """
        a = self._prepare(wav, sr, "encode")
        return self._encode_padded([a], [self.n_frames(a.shape[0])])[0]

    def batch_plan(self, batch_seconds: float = DEFAULT_ENCODE_BATCH_SECONDS) -> tuple[float, int | None]:
        """``(batch_seconds, batch_size)`` for :meth:`encode_batch` on this device.

        CPU (or any non-CUDA device): one clip per batch. Batching buys a CPU nothing (the
        convolutions already use every core) and padding costs real work: measured 0.24x the
        clip-by-clip rate on mixed lengths (benchmarks/bench_data.py). CUDA: at most
        ``batch_seconds``, lowered to what half the *free* memory holds at
        :data:`ENCODE_GIB_PER_PADDED_SECOND` (the card may hold a model already); never below
        one 30 s clip. The OOM halving of :meth:`encode_batch` stays as the safety net.
        """
        if self.device.type != "cuda":
            return float(batch_seconds), 1
        free, _ = torch.cuda.mem_get_info(self.device)
        fits = 0.5 * free / 2**30 / ENCODE_GIB_PER_PADDED_SECOND
        return float(max(30.0, min(float(batch_seconds), fits))), None

    def padded_seconds(self, n_samples: int) -> float:
        """Seconds of input one clip of ``n_samples`` occupies in a batch row (whole frames + guard)."""
        return (self.n_frames(n_samples) * self.samples_per_frame + self.guard_samples) / self.sample_rate

    def encode_batch(self, wavs: Sequence, sr: int | None = None,
                     batch_seconds: float = DEFAULT_ENCODE_BATCH_SECONDS, batch_size: int | None = None,
                     progress: bool = False) -> list[list[np.ndarray]]:
        """Encode many clips of different lengths; same codes as :meth:`encode` per clip.

        Clips are sorted by length and grouped so that a batch holds at most
        ``batch_seconds`` of *padded* audio (clips x the longest one's padded length:
        what the encoder's activations scale with) and at most ``batch_size`` clips
        (None: no clip limit). A clip longer than the budget is encoded alone. On
        ``torch.cuda.OutOfMemoryError`` the budget is halved and the batch retried
        (a warning says so); one clip alone out of memory re-raises with its length.
        Returns one code list per clip, in input order; ``self.last_encode_stats`` holds
        batches, OOM retries and the final budget. ``progress`` shows a tqdm bar over clips.
        """
        if isinstance(batch_size, bool) or (batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1)):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        if isinstance(batch_seconds, bool) or not isinstance(batch_seconds, (int, float)) or not batch_seconds > 0:
            raise ValueError(f"batch_seconds must be a positive number of seconds, got {batch_seconds!r}")
        clips = [self._prepare(w, sr, f"encode_batch clip {i}") for i, w in enumerate(wavs)]
        stats = {"batches": 0, "oom_retries": 0, "batch_seconds": float(batch_seconds)}
        self.last_encode_stats = stats
        if not clips:
            return []
        frames = [self.n_frames(c.shape[0]) for c in clips]
        order = sorted(range(len(clips)), key=lambda i: frames[i])  # similar lengths together: little padding
        row_s = [self.padded_seconds(clips[i].shape[0]) for i in order]  # ascending
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(clips), desc="SNAC encode", unit="clip")
        result: list = [None] * len(clips)
        budget, pos = float(batch_seconds), 0
        while pos < len(order):
            k = 1  # the batch grows while (clips) x (padded length of its longest, the newest) fits
            while (pos + k < len(order) and (k + 1) * row_s[pos + k] <= budget
                   and (batch_size is None or k < batch_size)):
                k += 1
            idx = order[pos: pos + k]
            try:
                codes = self._encode_padded([clips[i] for i in idx], [frames[i] for i in idx])
            except torch.cuda.OutOfMemoryError as e:
                if k == 1:
                    raise torch.cuda.OutOfMemoryError(
                        f"SNAC encoding ran out of GPU memory on a single clip of {row_s[pos]:.1f} s (padded) "
                        f"on {self.device}: free GPU memory (other models) first") from e
                failed = k * row_s[pos + k - 1]
                budget = failed / 2.0
                stats["oom_retries"] += 1
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                import warnings
                warnings.warn(f"CUDA out of memory encoding {k} clips ({failed:.0f} s padded); retrying with "
                              f"batches of at most {budget:.0f} s", RuntimeWarning, stacklevel=2)
                continue
            for i, c in zip(idx, codes):
                result[i] = c
            pos += k
            stats["batches"] += 1
            if bar is not None:
                bar.update(k)
        stats["batch_seconds"] = budget
        if bar is not None:
            bar.close()
        return result

    # ------------------------------------------------------------------ decode
    @torch.inference_mode()
    def decode(self, codes, seed: int | None = 0) -> np.ndarray:
        """Codes ``[cb1 (T,), cb2 (2T,), cb3 (4T,)]`` -> float32 ``(T * samples_per_frame,)`` at 24 kHz.

        Accepts numpy arrays, lists or tensors (a leading batch dim of 1 too);
        shapes and code ranges are checked by the token contract's rules.
        The decoder's NoiseBlocks draw Gaussian noise from torch's global RNG. With an
        int ``seed`` (default 0) that RNG is forked and seeded for the call, so equal
        codes give equal audio on a given device and the caller's RNG state is
        untouched afterwards; ``seed=None`` draws from the caller's RNG as is (a
        fresh noise realisation each call). CPU and CUDA generators differ, so the
        same seed gives different noise on the two devices.
        """
        cb = tk.as_codebooks(codes)
        if cb[0].shape[0] == 0:
            raise ValueError("decode: no frames to decode (codebook 1 is empty)")
        tensors = [torch.from_numpy(np.ascontiguousarray(c)).to(self.device)[None] for c in cb]  # (1, t_k)
        with contextlib.nullcontext() if seed is None else _seeded(int(seed)), exact_cuda(self.device):
            audio = self.model.decode(tensors)
        return audio.reshape(-1).float().cpu().numpy()

    def decode_tokens(self, ids, layout: tk.TokenLayout, seed: int | None = 0) -> np.ndarray:
        """Flat frame-interleaved audio token ids -> waveform (see :meth:`decode`).

        ``ids`` must be audio tokens only (``layout.extract_audio`` strips the markers);
        grammar errors raise :class:`helpers.tokens.TokenGrammarError`.
        """
        return self.decode(layout.tokens_to_codes(ids), seed=seed)
