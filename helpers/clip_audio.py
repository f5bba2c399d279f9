"""Per-clip signal rules shared by preprocessing (01, :mod:`helpers.data.clips`) and the engine's
cloning references (:mod:`helpers.infer.voices`): the targets (:class:`PreprocessConfig`), the
rejection vocabulary (:data:`REASONS`, :class:`Reject`), and the measurements — frame power, SNR
estimate, silence trimming, clipping, loudness and the -23 LUFS gain. The rules themselves are
documented in :mod:`helpers.data.clips`; they live here so that a reference clip is measured and
levelled exactly like training audio without the engine importing the data pipeline.
"""
from __future__ import annotations

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
    "loudness_unreachable": "-23 LUFS ±1 unreachable without the peak exceeding -1 dBFS",
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
    cs = np.concatenate([[0.0], np.cumsum(x * x)])  # prefix sums: O(n) for all frames
    starts = np.arange(0, x.size - frame + 1, hop)
    p = (cs[starts + frame] - cs[starts]) / frame
    return 10.0 * np.log10(np.maximum(p, 1e-20))


def estimate_snr_db(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> float:
    """Blind SNR estimate in dB of a mono clip (see the module docstring for the rule)."""
    db = frame_power_db(wav, sr, cfg.frame_s, cfg.hop_s)
    p_noise = 10.0 ** (np.percentile(db, cfg.noise_percentile) / 10.0)
    p_signal = 10.0 ** (np.percentile(db, cfg.signal_percentile) / 10.0)
    if p_signal <= p_noise:
        return 0.0 if p_signal > 1e-19 else -cfg.snr_cap_db  # no speech above the floor
    snr = 10.0 * np.log10((p_signal - p_noise) / p_noise)
    return float(min(snr, cfg.snr_cap_db))


def trim_bounds(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[int, int]:
    """``(start, end)`` sample indices of the clip without leading/trailing silence.

    A frame is speech when its power is within ``trim_top_db`` of the loudest
    frame and ``trim_above_noise_db`` above the noise floor (10th percentile);
    ``trim_pad_s`` of audio is kept on both sides. Interior pauses are kept.
    """
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
    mask = np.concatenate([[False], a >= level, [False]])
    edges = np.flatnonzero(np.diff(mask.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    runs = ends - starts
    return float(runs[runs >= min_run].sum() / max(1, a.shape[0]))


def loudness_lufs(wav: np.ndarray, sr: int) -> float:
    """Integrated loudness (ITU-R BS.1770, pyloudnorm) of a mono clip >= 0.4 s; -inf if all gated."""
    import pyloudnorm  # imported here: its scipy import is slow

    return float(pyloudnorm.Meter(sr).integrated_loudness(np.asarray(wav, dtype=np.float64)))


def to_pcm16_grid(wav: np.ndarray) -> np.ndarray:
    """Round samples to the 16-bit grid ``k / 32768`` exactly as :func:`helpers.audio.save_wav` does."""
    s = audio.PCM16_SCALE
    return (np.clip(np.round(np.asarray(wav, dtype=np.float64) * s), -s, s - 1) / s).astype(np.float32)


def normalize_loudness(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, float, float]:
    """Gain a mono clip to ``cfg.target_lufs`` without the peak exceeding ``cfg.peak_ceiling_dbfs``.

    Returns ``(wav_on_16bit_grid, final_lufs, gain_db)``; raises :class:`Reject`
    (``silent`` / ``loudness_unreachable``) per the module's loudness rule.
    """
    measured = loudness_lufs(wav, sr)
    if not np.isfinite(measured):
        raise Reject("silent", "no 400 ms block above the -70 LUFS gate")
    peak = float(np.max(np.abs(wav)))
    gain_db = cfg.target_lufs - measured
    ceiling = 10.0 ** (cfg.peak_ceiling_dbfs / 20.0)
    max_gain_db = 20.0 * np.log10(ceiling / peak)
    gain_db = min(gain_db, max_gain_db)
    out = to_pcm16_grid(np.asarray(wav, dtype=np.float64) * 10.0 ** (gain_db / 20.0))
    final = loudness_lufs(out, sr)  # re-measured: this is what training sees
    if not np.isfinite(final) or abs(final - cfg.target_lufs) > cfg.lufs_tolerance_db:
        raise Reject("loudness_unreachable",
                     f"measured {measured:.1f} LUFS with peak {20 * np.log10(peak):.1f} dBFS: the gain to "
                     f"{cfg.target_lufs} LUFS would exceed the {cfg.peak_ceiling_dbfs} dBFS ceiling; "
                     f"best reachable {final:.1f} LUFS")
    return out, float(final), float(gain_db)
