"""Per-clip signal rules shared by preprocessing (01, :mod:`helpers.data.clips`) and the engine's
cloning references (:mod:`helpers.infer.voices`): the targets (:class:`PreprocessConfig`), the
rejection vocabulary (:data:`REASONS`, :class:`Reject`), and the measurements — frame power, SNR
estimate, silence trimming, clipping, loudness and the -23 LUFS gain. The rules themselves are
documented in :mod:`helpers.data.clips`; they live here so that a reference clip is measured and
levelled exactly like training audio without the engine importing the data pipeline.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import audio

# ----------------------------------------------------------------------------- reasons
# Every rejection carries one of these keys; the report counts them per dataset.
REASONS: dict[str, str] = {
    "catalog": "the dataset catalog rejected the row (reason in `detail`)",
    "missing_transcript": "transcript missing or empty after text normalization",
    "transcript_tags": "transcript holds an unknown [tag] or an inline emotion tag (helpers.text refuses it)",
    "missing_audio": "the row has no audio bytes and no readable path",
    "empty_audio": "zero-length audio (0 bytes or 0 samples)",
    "decode_error": "corrupt or unreadable audio (not WAV/FLAC/OGG/MP3 soundfile can decode)",
    "truncated": "the file holds fewer samples than its header declares",
    "non_finite": "NaN or infinite samples",
    "unsupported_sample_rate": "sample rate outside 8-192 kHz",
    "clipped": "more than 0.1 % of samples sit in flat runs at full scale",
    "silent": "peak below -80 dBFS, or no loudness measurable",
    "too_short": "shorter than 1 s after trimming silence",
    "too_long": "longer than 30 s after trimming (or 120 s before)",
    "low_snr": "estimated SNR below 20 dB",
    "loudness_unreachable": "-23 LUFS ±1 unreachable with the peak at most -1 dBFS, even after limiting peaks by up to 6 dB",
}

class Reject(Exception):
    """Raised inside the pipeline when a clip fails a check; carries a REASONS key."""

    def __init__(self, reason: str, detail: str = ""):
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class PreprocessConfig:
    """The seed §10 targets plus the documented estimator settings (all units in the name)."""

    target_sr: int = audio.DEFAULT_SR  # SNAC 24 kHz
    target_lufs: float = -23.0  # EBU R128 programme loudness
    lufs_tolerance_db: float = 1.0  # seed: ±1 dB
    peak_ceiling_dbfs: float = -1.0  # EBU R128 max true peak; keeps 16-bit writes unclipped
    max_limiting_db: float = 6.0  # peaks the -23 LUFS gain pushes above the ceiling by up to this are limited
    limiter_radius_s: float = 0.005  # the limiter's gain reduction starts/ends this long before/after a peak
    min_duration_s: float = 1.0  # seed: shorter clips lack context
    max_duration_s: float = 30.0  # seed: fits the LLaMA context (~2,460 audio tokens)
    max_source_duration_s: float = 120.0  # refuse minutes-long files before resampling them
    min_snr_db: float = 20.0  # seed: reject noisy samples
    min_source_sr: int = 8000
    max_source_sr: int = 192000
    silence_peak_dbfs: float = -80.0  # below this the clip is digital silence / dither
    frame_s: float = 0.02  # analysis frame for SNR and trimming
    hop_s: float = 0.01
    noise_percentile: float = 10.0
    signal_percentile: float = 95.0
    snr_cap_db: float = 100.0  # digital-silence pauses would give +inf
    trim_top_db: float = 40.0  # a frame is speech if within 40 dB of the loudest frame ...
    trim_above_noise_db: float = 6.0  # ... and 6 dB above the noise floor
    trim_pad_s: float = 0.1  # silence kept on each side so onsets/decays are not cut
    clip_level: float = 0.99  # |x| at or above this is at full scale
    clip_min_run: int = 3  # hard clipping makes flat tops: >= 3 consecutive samples
    clip_max_fraction: float = 0.001  # 0.1 % of samples

    def __post_init__(self):
        if not self.min_duration_s < self.max_duration_s <= self.max_source_duration_s:
            raise ValueError("need min_duration_s < max_duration_s <= max_source_duration_s")
        if not 0 <= self.noise_percentile < self.signal_percentile <= 100:
            raise ValueError("need 0 <= noise_percentile < signal_percentile <= 100")
        if self.peak_ceiling_dbfs > 0:
            raise ValueError(f"peak_ceiling_dbfs must be <= 0 dBFS, got {self.peak_ceiling_dbfs}")
        if self.max_limiting_db < 0 or self.limiter_radius_s <= 0:
            raise ValueError(f"need max_limiting_db >= 0 and limiter_radius_s > 0, got {self.max_limiting_db} "
                             f"and {self.limiter_radius_s}")


DEFAULT_CONFIG = PreprocessConfig()


# ----------------------------------------------------------------------------- measurements
def frame_power_db(wav: np.ndarray, sr: int, frame_s: float = 0.02, hop_s: float = 0.01) -> np.ndarray:
    """Mean-square power per frame in dB (re full scale), shape ``(n_frames,)``.

    ``wav`` mono float ``(n,)`` at ``sr`` Hz. Frames of ``frame_s`` every ``hop_s``;
    a clip shorter than one frame is one frame. Digital silence reads -200 dB.
    """
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"expected a non-empty mono waveform (n,), got shape {x.shape}")
    frame = max(1, int(round(frame_s * sr)))
    hop = max(1, int(round(hop_s * sr)))
    frame = min(frame, x.size)
    starts = np.arange(0, x.size - frame + 1, hop)
    if frame % hop == 0:  # the usual case (20 ms frames, 10 ms hop): sum hops, then frames from hops
        k = frame // hop
        n_hops = starts.size + k - 1  # the last frame ends at hop index n_hops
        h = x[: n_hops * hop].reshape(n_hops, hop)
        hs = np.einsum("ij,ij->i", h, h)  # (n_hops,) energy per hop, no running-sum cancellation
        e = hs[: starts.size].copy()
        for i in range(1, k):
            e += hs[i: i + starts.size]
        p = e / frame
    else:
        cs = np.concatenate([[0.0], np.cumsum(x * x)])  # prefix sums: O(n) for all frames
        p = (cs[starts + frame] - cs[starts]) / frame
    return 10.0 * np.log10(np.maximum(p, 1e-20))


def estimate_snr_db(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG,
                    db: np.ndarray | None = None) -> float:
    """Blind SNR estimate in dB of a mono clip (see the module docstring for the rule).

    ``db``: the clip's :func:`frame_power_db` at ``cfg``'s frame/hop when the caller already has it
    (preprocessing shares one pass between the SNR and the trim)."""
    if db is None:
        db = frame_power_db(wav, sr, cfg.frame_s, cfg.hop_s)
    p_noise = 10.0 ** (np.percentile(db, cfg.noise_percentile) / 10.0)
    p_signal = 10.0 ** (np.percentile(db, cfg.signal_percentile) / 10.0)
    if p_signal <= p_noise:
        return 0.0 if p_signal > 1e-19 else -cfg.snr_cap_db  # no speech above the floor
    snr = 10.0 * np.log10((p_signal - p_noise) / p_noise)
    return float(min(snr, cfg.snr_cap_db))


def trim_bounds(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG,
                db: np.ndarray | None = None) -> tuple[int, int]:
    """``(start, end)`` sample indices of the clip without leading/trailing silence.

    A frame is speech when its power is within ``trim_top_db`` of the loudest
    frame and ``trim_above_noise_db`` above the noise floor (10th percentile);
    ``trim_pad_s`` of audio is kept on both sides. Interior pauses are kept. ``db`` as in
    :func:`estimate_snr_db`.
    """
    if db is None:
        db = frame_power_db(wav, sr, cfg.frame_s, cfg.hop_s)
    noise = np.percentile(db, cfg.noise_percentile)
    threshold = max(db.max() - cfg.trim_top_db, noise + cfg.trim_above_noise_db)
    active = np.flatnonzero(db >= min(threshold, db.max()))
    hop = max(1, int(round(cfg.hop_s * sr)))
    frame = max(1, int(round(cfg.frame_s * sr)))
    pad = int(round(cfg.trim_pad_s * sr))
    n = len(wav)
    start = max(0, int(active[0]) * hop - pad)
    end = min(n, int(active[-1]) * hop + frame + pad)
    return start, end


def clipped_fraction(wav: np.ndarray, level: float = 0.99, min_run: int = 3) -> float:
    """Fraction of samples in runs of >= ``min_run`` consecutive samples with |x| >= ``level``.

    ``wav`` ``(n,)`` or ``(n, channels)`` at its native rate (before resampling,
    which would smooth the flat tops). A channel-wise maximum is used.
    """
    a = np.abs(np.asarray(wav, dtype=np.float32))
    if a.ndim == 2:
        a = a.max(axis=1)
    if not a.size or a.max() < level:  # the usual clip: nothing near full scale, no runs to find
        return 0.0
    mask = np.concatenate([[False], a >= level, [False]])
    edges = np.flatnonzero(np.diff(mask.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    runs = ends - starts
    return float(runs[runs >= min_run].sum() / max(1, a.shape[0]))


# BS.1770 gating (the figures pyloudnorm uses): 400 ms blocks every 100 ms, absolute gate -70 LUFS,
# relative gate 10 LU below the gated mean; -0.691 dB is the K-weighting's 1 kHz correction.
_BLOCK_S, _BLOCK_STEP, _ABS_GATE_LUFS, _REL_GATE_LU, _K_OFFSET_DB = 0.4, 0.25, -70.0, 10.0, -0.691


@functools.lru_cache(maxsize=16)
def _k_weighting(sr: int) -> tuple[np.ndarray, float]:
    """``(sos, l1)`` for ``sr``: pyloudnorm's two K-weighting biquads as second-order sections, and the
    L1 norm of their impulse response (bounds how much a per-sample error can move a filtered sample)."""
    import pyloudnorm  # imported here: its scipy import is slow
    from scipy import signal

    stages = list(pyloudnorm.Meter(sr)._filters.values())  # high shelf then high pass, as pyloudnorm applies them
    sos = np.vstack([signal.tf2sos(f.b * f.passband_gain, f.a) for f in stages])
    impulse = np.zeros(max(sr, 1)); impulse[0] = 1.0
    h = signal.sosfilt(sos, impulse)  # the poles sit well inside the unit circle: 1 s holds the whole response
    return sos, float(np.abs(h).sum()) * 1.01


def block_powers(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mean square of the K-weighted mono clip in BS.1770's 400 ms blocks (75 % overlap), shape ``(n_blocks,)``.

    The expensive half of a loudness measurement (the filter); :func:`gated_loudness` turns it into
    LUFS at any gain, so a clip is filtered once however many gains are tried. Blocks start every
    100 ms as in pyloudnorm (which truncates a float product, so its bounds may sit one sample off); a clip shorter than one block raises ValueError as pyloudnorm does.
    """
    from scipy import signal

    x = np.asarray(wav, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] < _BLOCK_S * sr:
        raise ValueError(f"loudness needs a mono clip of at least {_BLOCK_S} s, got shape {x.shape} at {sr} Hz")
    sos, _ = _k_weighting(int(sr))
    y = signal.sosfilt(sos, x)
    n_blocks = int(np.round(((x.shape[0] / sr - _BLOCK_S) / (_BLOCK_S * _BLOCK_STEP)))) + 1
    step = _BLOCK_S * _BLOCK_STEP * sr
    if float(step).is_integer():  # 100 ms is a whole number of samples at every usual rate: sum hops
        step, k = int(step), int(round(1 / _BLOCK_STEP))
        n_hops = n_blocks + k - 1
        if n_hops * step > y.shape[0]:  # the last block overruns the clip: it sums what exists, as pyloudnorm's slice
            y = np.concatenate([y, np.zeros(n_hops * step - y.shape[0])])
        h = y[: n_hops * step].reshape(n_hops, step)
        hs = np.einsum("ij,ij->i", h, h)  # (n_hops,) energy per 100 ms
        z = hs[:n_blocks].copy()
        for i in range(1, k):
            z += hs[i: i + n_blocks]
        return z / (_BLOCK_S * sr)
    j = np.arange(n_blocks) * _BLOCK_STEP
    lo = (_BLOCK_S * j * sr).astype(np.int64)  # pyloudnorm's float expression, truncated as it does
    hi = np.minimum((_BLOCK_S * (j + 1) * sr).astype(np.int64), x.shape[0])
    cs = np.concatenate([[0.0], np.cumsum(y * y)])
    return np.maximum(cs[hi] - cs[lo], 0.0) / (_BLOCK_S * sr)


def _gate(z: np.ndarray) -> tuple[float, np.ndarray, float]:
    """``(lufs, block_lufs, relative_gate)`` of block powers ``z`` (pyloudnorm's gating rule, vectorised)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lb = _K_OFFSET_DB + 10.0 * np.log10(z)
        above = lb >= _ABS_GATE_LUFS
        rel = (_K_OFFSET_DB + 10.0 * np.log10(z[above].mean()) - _REL_GATE_LU) if above.any() else np.nan
        keep = (lb > rel) & (lb > _ABS_GATE_LUFS)
        lufs = _K_OFFSET_DB + 10.0 * np.log10(z[keep].mean()) if keep.any() else -np.inf
    return float(lufs), lb, float(rel)


def gated_loudness(z: np.ndarray, gain_db: float = 0.0) -> float:
    """Integrated loudness (LUFS) of the clip whose :func:`block_powers` are ``z``, after a gain of ``gain_db``.

    The K-weighting is linear, so a gain multiplies every block power by ``10**(gain_db / 10)``;
    the gates are then applied afresh (a quiet block may cross the -70 LUFS gate). ``-inf`` if all
    blocks are gated out.
    """
    return _gate(np.asarray(z, dtype=np.float64) * 10.0 ** (gain_db / 10.0))[0]


def loudness_lufs(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770, pyloudnorm's filters and gating) of a mono clip >= 0.4 s; -inf if all gated."""
    return gated_loudness(block_powers(wav, sr))


def _rounded_loudness_bounds(z: np.ndarray, gain_db: float, sr: int) -> tuple[float, float] | None:
    """Bounds on the loudness of the clip after ``gain_db`` AND rounding to the 16-bit grid, from ``z`` alone.

    Rounding moves each sample by at most half a step (2**-16), so each K-weighted sample moves by at most
    ``l1 * 2**-16`` and each block's RMS by at most that much (triangle inequality). If every block stays
    on one side of both gates within those bounds, the gated set is certain and the loudness lies between
    the gated means of the lower and upper block powers. ``None`` when a block is too close to a gate to
    be sure: the caller measures the rounded clip itself.
    """
    _, l1 = _k_weighting(int(sr))
    err = l1 / (2.0 * audio.PCM16_SCALE)  # worst-case change of one filtered sample, full scale 1.0
    r = np.sqrt(np.asarray(z, dtype=np.float64) * 10.0 ** (gain_db / 10.0))
    z_lo, z_hi = np.maximum(r - err, 0.0) ** 2, (r + err) ** 2
    with np.errstate(divide="ignore"):
        l_lo, l_hi = _K_OFFSET_DB + 10.0 * np.log10(z_lo), _K_OFFSET_DB + 10.0 * np.log10(z_hi)
    above = l_lo >= _ABS_GATE_LUFS
    if not np.array_equal(above, l_hi >= _ABS_GATE_LUFS) or (l_lo == _ABS_GATE_LUFS).any() or not above.any():
        return None
    rel_lo = _K_OFFSET_DB + 10.0 * np.log10(z_lo[above].mean()) - _REL_GATE_LU
    rel_hi = _K_OFFSET_DB + 10.0 * np.log10(z_hi[above].mean()) - _REL_GATE_LU
    keep = (l_lo > rel_hi) & above
    if not np.array_equal(keep, (l_hi > rel_lo) & above) or not keep.any():
        return None  # some block could fall either side of the relative gate
    return (_K_OFFSET_DB + 10.0 * np.log10(z_lo[keep].mean()), _K_OFFSET_DB + 10.0 * np.log10(z_hi[keep].mean()))


def to_pcm16_grid(wav: np.ndarray) -> np.ndarray:
    """Round samples to the 16-bit grid ``k / 32768`` exactly as :func:`helpers.audio.save_wav` does."""
    return _round_pcm16_inplace(np.array(wav, dtype=np.float64))


def gain_to_pcm16(wav: np.ndarray, gain_db: float, sr: int | None = None,
                  cfg: PreprocessConfig | None = None) -> np.ndarray:
    """``wav`` (float32 or float64 ``(n,)``) times ``10**(gain_db / 20)`` in float64, peak-limited to
    ``cfg.peak_ceiling_dbfs`` where the gain pushes samples above it (:func:`limit_peaks`; with ``cfg`` and
    ``sr`` only), rounded to the 16-bit grid: float32 ``(n,)``. The one gain step of 01
    (:func:`normalize_loudness`) and 02's replay, so they agree bit for bit. Where no sample exceeds the
    ceiling the limiter does nothing: the result is the plain gained, rounded clip."""
    y = np.multiply(wav, 10.0 ** (gain_db / 20.0), dtype=np.float64)
    if cfg is not None:
        if sr is None:
            raise ValueError("gain_to_pcm16: the limiter needs the sample rate (sr) along with cfg")
        y = limit_peaks(y, sr, cfg.peak_ceiling_dbfs, cfg.limiter_radius_s, headroom=0.5 / audio.PCM16_SCALE)
    return _round_pcm16_inplace(y)


def limit_peaks(y: np.ndarray, sr: int, ceiling_dbfs: float, radius_s: float = 0.005,
                headroom: float = 0.0) -> np.ndarray:
    """A look-ahead peak limiter: ``y`` (float64 ``(n,)``) with a smooth gain reduction around every sample
    above ``c = 10**(ceiling_dbfs / 20)``, so that none exceeds ``c - headroom``; ``y`` itself when no
    sample exceeds ``c``. ``headroom``: half a 16-bit step when the result is rounded to that grid next,
    so the rounding cannot lift a limited peak above ``c``.

    The gain each sample needs, ``r = min(1, ceiling / |y|)``, is spread by a running minimum over
    ``radius_s`` on each side, then smoothed by a Hann window of the same width. Every smoothed value is an
    average of minima over windows that contain the sample, so it never exceeds that sample's ``r``: the
    ceiling holds, reduction starts ``radius_s`` before a peak and ends ``radius_s`` after it (no clicks),
    and samples farther than ``2 * radius_s`` from any peak are untouched. Deterministic (numpy/scipy
    only), so 02's replay reproduces 01's clip bit for bit.
    """
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    mag = np.abs(y)
    if y.size == 0 or float(mag.max()) <= ceiling * (1.0 + 1e-9):  # float slack of gain = ceiling / peak
        return y
    from scipy.ndimage import minimum_filter1d

    need = np.minimum(1.0, (ceiling - headroom) / np.maximum(mag, 1e-300))
    radius = max(1, int(round(radius_s * sr)))
    spread = minimum_filter1d(need, 2 * radius + 1, mode="nearest")
    kernel = np.hanning(2 * radius + 3)[1:-1]
    kernel /= kernel.sum()
    smooth = np.convolve(np.pad(spread, radius, mode="edge"), kernel, mode="valid")
    gain = np.minimum(smooth, need)  # equal up to float rounding; guarantees the ceiling exactly
    return y * gain


def _round_pcm16_inplace(b: np.ndarray) -> np.ndarray:
    s = float(audio.PCM16_SCALE)
    b *= s
    np.rint(b, out=b)  # np.round(x) == np.rint(x): half to even
    np.clip(b, -s, s - 1, out=b)
    b *= 1.0 / s  # exact: a power of two
    return b.astype(np.float32)


def normalize_loudness(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, float, float]:
    """Gain a mono clip to ``cfg.target_lufs`` without the peak exceeding ``cfg.peak_ceiling_dbfs``.

    Returns ``(wav_on_16bit_grid, final_lufs, gain_db)``; raises :class:`Reject`
    (``silent`` / ``loudness_unreachable``) per the module's loudness rule.

    The clip is K-weighted once. ``final_lufs`` is the loudness after the gain computed from those block
    powers (exact but for the 16-bit rounding); the ±1 LU check uses rigorous bounds on what the
    rounding can do (:func:`_rounded_loudness_bounds`) and measures the rounded clip itself only when
    those bounds straddle a gate or the tolerance edge — so the check decides exactly as re-measuring
    every clip would, without a second filter pass on almost all clips.

    When the peak ceiling caps the gain short of ``target - tolerance`` (a few transient peaks far above
    the speech, common in real recordings), the full gain is applied and the peaks above the ceiling are
    limited (:func:`limit_peaks`) — if they need at most ``cfg.max_limiting_db`` of reduction; the limited
    clip's loudness is measured. More than that (a click in a quiet clip) is ``loudness_unreachable``.
    """
    z = block_powers(wav, sr)
    measured = gated_loudness(z)
    if not np.isfinite(measured):
        raise Reject("silent", "no 400 ms block above the -70 LUFS gate")
    peak = float(np.max(np.abs(wav)))
    target_gain_db = cfg.target_lufs - measured
    ceiling = 10.0 ** (cfg.peak_ceiling_dbfs / 20.0)
    max_gain_db = 20.0 * np.log10(ceiling / peak)
    gain_db = min(target_gain_db, max_gain_db)
    out = gain_to_pcm16(wav, gain_db)
    final = gated_loudness(z, gain_db)  # what training sees, up to the 16-bit rounding bounded below
    lo_hi = _rounded_loudness_bounds(z, gain_db, sr)
    lo_t, hi_t = cfg.target_lufs - cfg.lufs_tolerance_db, cfg.target_lufs + cfg.lufs_tolerance_db
    if lo_hi is None or not (lo_t <= lo_hi[0] and lo_hi[1] <= hi_t or lo_hi[1] < lo_t or lo_hi[0] > hi_t):
        final = loudness_lufs(out, sr)  # too close to call from the bounds: measure the rounded clip
    if np.isfinite(final) and abs(final - cfg.target_lufs) <= cfg.lufs_tolerance_db:
        return out, float(final), float(gain_db)
    limiting_db = target_gain_db - max_gain_db
    if 0 < limiting_db <= cfg.max_limiting_db:
        limited = gain_to_pcm16(wav, target_gain_db, sr, cfg)
        final_limited = loudness_lufs(limited, sr)
        if np.isfinite(final_limited) and abs(final_limited - cfg.target_lufs) <= cfg.lufs_tolerance_db:
            return limited, float(final_limited), float(target_gain_db)
    raise Reject("loudness_unreachable",
                 f"measured {measured:.1f} LUFS with peak {20 * np.log10(peak):.1f} dBFS: the gain to "
                 f"{cfg.target_lufs} LUFS would put the peak {limiting_db:.1f} dB above the "
                 f"{cfg.peak_ceiling_dbfs} dBFS ceiling (limited up to {cfg.max_limiting_db} dB); "
                 f"best reachable without limiting {final:.1f} LUFS")
