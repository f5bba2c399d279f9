"""The clip analysis of preprocessing (seed §10): every source clip is kept in the
training format or rejected with one reason from :data:`REASONS`. Nothing is dropped
uncounted. (The streaming/resume driver of ``01_preprocess`` is :mod:`helpers.preprocess`.)

The ONE deterministic clip function is :func:`preprocess_row`; ``01_preprocess``
runs it to build the manifest and records, per kept clip, the decisions it took
(trim bounds in 24 kHz samples, gain in dB). ``02_tokenize`` does not analyse
again: :func:`replay_row` decodes the same source bytes and applies those
decisions (mono, resample, trim, gain, 16-bit grid) — the same operations in the
same order, so the waveform is bit-identical to what the analysis produced
(tested), without the SNR, clipping and two loudness measurements. No WAV is
stored (1,000 h is ~170 GB as WAV, ~0.6 GB as codes).

Per clip, in this order (the first failing check names the reason)::

    transcript    normalize_transcript(text, accent) non-empty     else missing_transcript
    decode        soundfile, bytes or path; header vs data length  else missing_audio / empty_audio /
                                                                        decode_error / truncated / non_finite
    source        8 kHz <= sr <= 192 kHz, <= 120 s before trimming else unsupported_sample_rate / too_long
    clipping      <= 0.1 % samples in flat runs at full scale       else clipped
    mono, 24 kHz  channel mean, soxr HQ
    silence       peak >= -80 dBFS                                  else silent
    SNR           percentile estimate (:func:`estimate_snr_db`)
    trim          leading/trailing silence, 0.1 s kept each side
    duration      1 s <= d <= 30 s after trimming                   else too_short / too_long
    SNR check     >= 20 dB                                          else low_snr
    loudness      gain to -23 LUFS, peak <= -1 dBFS; final within ±1 LU, else loudness_unreachable
    16-bit grid   samples rounded to k / 32768 (what a 16-bit WAV holds)

SNR estimate (documented rule, tested with speech + white noise at known SNRs):
frame powers over 20 ms windows every 10 ms of the 24 kHz mono clip *before*
trimming; noise power = 10th percentile, signal power = 95th percentile;
``SNR = 10 log10((P95 - P10) / P10)``, capped at 100 dB (digital silence).
It assumes at least ~10 % of frames are pauses (true of read speech) and reads a
few dB above the active-speech SNR because the 95th percentile sits above the
mean speech power: speech + white noise at 10 dB active-speech SNR reads ~15 dB
(rejected), at 30 dB reads ~35 dB (kept).

Loudness rule (documented, tested): the gain that brings the clip to -23 LUFS
(pyloudnorm, ITU-R BS.1770) is lowered if it would push the peak above -1 dBFS
(never clips); if the lowered gain leaves the clip more than 1 LU below target
(peak-to-loudness ratio above 23 dB, e.g. a click in a quiet clip), the clip
is rejected as ``loudness_unreachable``. No limiter, so no distortion.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from . import audio
from .gender_estimate import estimate_gender

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

_HEADER_PROBE_BYTES = 8192  # enough of a file to read a WAV/FLAC header's declared length
# A decoder may stop a few thousand samples short of the header's count (padding, last
# frame); beyond this (or 1 %) the file is reported as truncated.
_TRUNCATION_SLACK_SAMPLES = 2048


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


# ----------------------------------------------------------------------------- decoding
def _riff_truncated(head: bytes, total_size: int) -> str | None:
    """For a RIFF/WAVE file: a message if the data chunk declares more bytes than the file holds.

    libsndfile silently returns the samples that are present, so a WAV cut short
    (interrupted download) would otherwise be kept with a transcript that no
    longer matches. Sizes 0 and 0xFFFFFFFF mean "unknown" (streamed WAVs).
    """
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return None
    fmt = "<I" if head[:4] == b"RIFF" else ">I"
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack(fmt, head[pos + 4:pos + 8])[0]
        if cid == b"data":
            if size in (0, 0xFFFFFFFF):
                return None
            have = total_size - (pos + 8)
            if have < size:
                return f"WAV data chunk declares {size} bytes, the file holds {have}"
            return None
        pos += 8 + size + (size & 1)
    return None


def _declared_frames(handle) -> int | None:
    import soundfile as sf

    try:
        return int(sf.info(handle).frames)
    except sf.LibsndfileError:
        return None


def decode_source(field) -> tuple[np.ndarray, int]:
    """Decode an ``Audio(decode=False)`` dict to ``(wav (n, channels) float32, sr)``, or raise :class:`Reject`.

    Maps every way a source file can be bad onto a reason: no bytes/path
    (``missing_audio``), 0 bytes or 0 samples (``empty_audio``), unreadable
    (``decode_error``), shorter than its header says (``truncated``), NaN/inf
    samples (``non_finite``).
    """
    if not isinstance(field, dict):
        raise Reject("missing_audio", f"audio field is {type(field).__name__}, expected a dict with bytes/path")
    data, path = field.get("bytes"), field.get("path")
    if data is not None:
        size = len(data)
        head = bytes(data[:_HEADER_PROBE_BYTES])
        opener = lambda: io.BytesIO(bytes(data))  # noqa: E731 - re-openable handle
        label = path or "<bytes>"
    elif path:
        if not os.path.isfile(path):
            raise Reject("missing_audio", f"file not found: {path}")
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            head = fh.read(_HEADER_PROBE_BYTES)
        opener = lambda: path  # noqa: E731
        label = path
    else:
        raise Reject("missing_audio", "neither bytes nor path")
    if size == 0:
        raise Reject("empty_audio", f"{label}: 0 bytes")
    cut = _riff_truncated(head, size)
    if cut:
        raise Reject("truncated", f"{label}: {cut}")
    try:
        wav, sr = audio.decode_audio_field(field, mono=False)
    except audio.AudioDecodeError as e:
        if _declared_frames(opener()) == 0:
            raise Reject("empty_audio", f"{label}: 0 samples") from None
        raise Reject("decode_error", str(e)) from None
    except FileNotFoundError as e:
        raise Reject("missing_audio", str(e)) from None
    except ValueError as e:  # the only other check in helpers.audio: NaN / inf samples
        raise Reject("non_finite", str(e)) from None
    declared = _declared_frames(opener())
    # MP3/OGG headers can over-declare by a codec frame or two (encoder delay/padding).
    if declared is not None and declared - wav.shape[0] > max(_TRUNCATION_SLACK_SAMPLES, int(0.01 * declared)):
        raise Reject("truncated", f"{label}: header declares {declared} samples, decoded {wav.shape[0]}")
    return wav, sr


# ----------------------------------------------------------------------------- the clip pipeline
@dataclass
class Processed:
    """A kept clip: ``wav`` float32 ``(n,)`` at ``target_sr`` on the 16-bit grid, plus measurements."""

    wav: np.ndarray = field(repr=False)
    sr: int
    duration_s: float
    loudness_lufs: float
    snr_db: float
    gain_db: float
    source_sr: int
    source_channels: int
    source_duration_s: float
    trim_start: int = 0  # first kept sample of the resampled 24 kHz mono clip
    trim_end: int = 0  # one past the last kept sample (same domain)


def preprocess_audio(wav: np.ndarray, sr: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> Processed:
    """Run the clip checks and transforms on decoded audio ``(n,)`` or ``(n, channels)`` at ``sr`` Hz.

    Returns :class:`Processed` or raises :class:`Reject`. Deterministic: the
    same input gives the same output bit for bit (01 and 02 rely on it).
    """
    a = np.asarray(wav, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise Reject("decode_error", f"waveform shape {a.shape}, expected (n,) or (n, channels)")
    if a.shape[0] == 0:
        raise Reject("empty_audio", "0 samples")
    if not np.isfinite(a).all():
        raise Reject("non_finite", f"{int((~np.isfinite(a)).sum())} NaN/inf samples")
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or not cfg.min_source_sr <= sr <= cfg.max_source_sr:
        raise Reject("unsupported_sample_rate", f"{sr!r} Hz, expected {cfg.min_source_sr}-{cfg.max_source_sr}")
    sr = int(sr)
    src_dur = a.shape[0] / sr
    if src_dur > cfg.max_source_duration_s:
        raise Reject("too_long", f"{src_dur:.1f} s before trimming (limit {cfg.max_source_duration_s} s)")
    frac = clipped_fraction(a, cfg.clip_level, cfg.clip_min_run)
    if frac > cfg.clip_max_fraction:
        raise Reject("clipped", f"{100 * frac:.2f} % of samples in flat full-scale runs")
    mono = audio.to_mono(a)
    peak = float(np.max(np.abs(mono)))
    if peak < 10.0 ** (cfg.silence_peak_dbfs / 20.0):
        raise Reject("silent", f"peak {20 * np.log10(max(peak, 1e-12)):.1f} dBFS")
    x = audio.resample(mono, sr, cfg.target_sr)
    snr = estimate_snr_db(x, cfg.target_sr, cfg)
    start, end = trim_bounds(x, cfg.target_sr, cfg)
    x = x[start:end]
    dur = x.shape[0] / cfg.target_sr
    if dur < cfg.min_duration_s:
        raise Reject("too_short", f"{dur:.2f} s after trimming (minimum {cfg.min_duration_s} s)")
    if dur > cfg.max_duration_s:
        raise Reject("too_long", f"{dur:.1f} s after trimming (limit {cfg.max_duration_s} s)")
    if snr < cfg.min_snr_db:
        raise Reject("low_snr", f"estimated {snr:.1f} dB (minimum {cfg.min_snr_db} dB)")
    out, lufs, gain = normalize_loudness(x, cfg.target_sr, cfg)
    return Processed(wav=out, sr=cfg.target_sr, duration_s=float(dur), loudness_lufs=lufs, snr_db=snr,
                     gain_db=gain, source_sr=sr, source_channels=int(a.shape[1]), source_duration_s=float(src_dur),
                     trim_start=int(start), trim_end=int(end))


# ----------------------------------------------------------------------------- rows
MANIFEST_COLUMNS: tuple[str, ...] = (
    "utterance_id", "dataset", "split_role", "source_index", "speaker", "accent", "gender", "emotion",
    "text", "raw_text", "duration_s", "source_duration_s", "source_sr", "loudness_lufs", "snr_db",
    "status", "reason", "detail",
    # 01's decisions for a kept clip, which 02 applies without analysing again (replay_row):
    "trim_start", "trim_end", "gain_db", "source_channels",
    "gender_estimated",  # F0 estimate (helpers.gender_estimate), only where the corpus documents no gender; else ""
)
# Column types, fixed so a manifest's bytes do not depend on which rows one part happened to hold.
_INT_COLUMNS = ("source_index", "source_sr", "trim_start", "trim_end", "source_channels")
_FLOAT_COLUMNS = ("duration_s", "source_duration_s", "loudness_lufs", "snr_db", "gain_db")
KEPT, REJECTED = "kept", "rejected"
BRITISH_ISLES_ACCENTS = ("uk", "scottish", "irish", "welsh")  # text normalised with the UK reading


def preprocess_row(row, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[dict, Processed | None]:
    """One common row (``helpers.catalog.to_common``) -> ``(manifest record, Processed or None)``.

    ``row`` is the common dict (audio, text, speaker, accent, gender, emotion,
    utterance_id, dataset) or a ``helpers.catalog.Rejected``. Data problems never
    raise: they come back as ``status="rejected"`` with a :data:`REASONS` key (or
    the catalog's own key, e.g. ``excluded_emotion``) and a ``detail`` message.
    The record's ``split_role``/``source_index`` are filled by the caller.
    """
    rec = {c: None for c in MANIFEST_COLUMNS}
    if not isinstance(row, dict):  # catalog.Rejected: a dataset rule excluded the row
        reason, detail = getattr(row, "reason", None), getattr(row, "detail", "")
        if not reason:
            raise TypeError(f"expected a common-row dict or catalog.Rejected, got {type(row).__name__}")
        uid = detail.split(": ", 1)[0] if ": " in detail else None
        rec.update(utterance_id=uid, status=REJECTED, reason=str(reason), detail=str(detail))
        return rec, None
    for c in ("utterance_id", "dataset", "speaker", "accent", "gender", "emotion"):
        rec[c] = row.get(c)
    raw_text = row.get("text")
    rec["raw_text"] = raw_text
    try:
        text = _normalized_text(raw_text, row.get("accent"))
        rec["text"] = text
        wav, sr = decode_source(row.get("audio"))
        rec["source_sr"], rec["source_duration_s"] = int(sr), float(wav.shape[0] / sr) if sr else None
        p = preprocess_audio(wav, sr, cfg)
    except Reject as r:
        rec.update(status=REJECTED, reason=r.reason, detail=r.detail)
        return rec, None
    rec.update(status=KEPT, reason="", detail="", duration_s=p.duration_s, loudness_lufs=p.loudness_lufs,
               snr_db=p.snr_db, trim_start=p.trim_start, trim_end=p.trim_end, gain_db=p.gain_db,
               source_channels=p.source_channels,
               gender_estimated=estimate_gender(p.wav, p.sr) if rec["gender"] == "unknown" else "")
    return rec, p


def records_frame(records: list[dict]):
    """Manifest records -> a DataFrame with :data:`MANIFEST_COLUMNS` in fixed types (nullable ints)."""
    import pandas as pd

    df = pd.DataFrame(records, columns=list(MANIFEST_COLUMNS))
    for c in _INT_COLUMNS:
        df[c] = df[c].astype("Int64")
    for c in _FLOAT_COLUMNS:
        df[c] = df[c].astype("float64")
    for c in MANIFEST_COLUMNS:
        if c not in _INT_COLUMNS and c not in _FLOAT_COLUMNS:
            df[c] = df[c].astype(object)
    return df


# ----------------------------------------------------------------------------- 02: replaying 01's decisions
DECISION_COLUMNS: tuple[str, ...] = ("source_sr", "source_channels", "trim_start", "trim_end", "gain_db")


class ReplayError(RuntimeError):
    """The source no longer matches what 01 recorded for a clip (names the clip and the field)."""


def apply_decisions(wav: np.ndarray, sr: int, trim_start: int, trim_end: int, gain_db: float,
                    cfg: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """01's transforms without its analysis: ``(n,)``/``(n, ch)`` at ``sr`` -> float32 ``(trim_end - trim_start,)``
    at ``cfg.target_sr`` on the 16-bit grid. Same operations, same order as :func:`preprocess_audio`
    (channel mean, soxr, slice, float64 gain, 16-bit rounding), so the result is bit-identical."""
    a = np.asarray(wav, dtype=np.float32)
    if a.ndim == 1:
        a = a[:, None]
    x = audio.resample(audio.to_mono(a), int(sr), cfg.target_sr)
    if not 0 <= trim_start < trim_end <= x.shape[0]:
        raise ReplayError(f"trim bounds [{trim_start}, {trim_end}) outside the {x.shape[0]}-sample resampled clip")
    x = x[trim_start:trim_end]
    return to_pcm16_grid(np.asarray(x, dtype=np.float64) * 10.0 ** (gain_db / 20.0))


def replay_row(item, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[np.ndarray]:
    """``(common row, manifest record)`` -> ``(wav,)``: the kept clip 01 described, rebuilt from the source.

    Raises :class:`ReplayError` naming the utterance if the source row no longer decodes, or its
    sample rate, channels or length differ from what 01 recorded (the data changed: rerun 01).
    """
    row, rec = item
    uid = rec["utterance_id"]
    if not isinstance(row, dict) or row.get("utterance_id") != uid:
        got = row.get("utterance_id") if isinstance(row, dict) else type(row).__name__
        raise ReplayError(f"{uid}: the source row at index {rec['source_index']} is now {got!r}; "
                          "the source changed since 01_preprocess — rerun 01")
    try:
        wav, sr = decode_source(row.get("audio"))
    except Reject as r:
        raise ReplayError(f"{uid}: 01 kept this clip, now its audio is rejected ({r}); rerun 01") from None
    for name, now, then in (("source_sr", int(sr), rec["source_sr"]), ("source_channels", int(wav.shape[1]),
                                                                      rec["source_channels"])):
        if then is None or now != int(then):
            raise ReplayError(f"{uid}: {name} is {now}, 01 recorded {then}; rerun 01")
    try:
        out = apply_decisions(wav, sr, int(rec["trim_start"]), int(rec["trim_end"]), float(rec["gain_db"]), cfg)
    except ReplayError as e:
        raise ReplayError(f"{uid}: {e}; rerun 01") from None
    if out.shape[0] / cfg.target_sr != float(rec["duration_s"]):
        raise ReplayError(f"{uid}: replayed duration {out.shape[0] / cfg.target_sr:.4f} s differs from the "
                          f"manifest's {float(rec['duration_s']):.4f} s; rerun 01")
    return (out,)


def _normalized_text(raw_text, accent) -> str:
    from .text import normalize_transcript  # the ONE text frontend

    if raw_text is None or not str(raw_text).strip():
        raise Reject("missing_transcript", "transcript is missing" if raw_text is None else "transcript is empty")
    # The frontend speaks US or UK English: English, Scottish, Welsh and Irish speakers read numbers and
    # dates the British way; "other" (Canadian, EmoV-DB, MLS …) gets the US reading, the closer default
    # for non-British North-Atlantic speech.
    spoken_accent = "uk" if accent in BRITISH_ISLES_ACCENTS else "us"
    try:
        text = normalize_transcript(str(raw_text), spoken_accent)
    except ValueError as e:  # unknown [tag] or an inline emotion tag inside a transcript
        raise Reject("transcript_tags", f"{type(e).__name__}: {e}"[:300]) from None
    if not text or not text.strip():
        raise Reject("missing_transcript", f"normalizes to an empty string: {str(raw_text)[:80]!r}")
    return text
