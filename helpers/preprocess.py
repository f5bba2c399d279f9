"""Preprocessing (seed §10): every source clip is kept in the training format or
rejected with one reason from :data:`REASONS`. Nothing is dropped uncounted.

The ONE deterministic clip function is :func:`preprocess_row`; ``01_preprocess``
runs it to build the manifest, and ``02_tokenize`` runs it again on the same
source bytes instead of storing WAVs (1,000 h is ~170 GB as WAV, ~0.6 GB as codes).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

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
                     gain_db=gain, source_sr=sr, source_channels=int(a.shape[1]), source_duration_s=float(src_dur))


# ----------------------------------------------------------------------------- rows
MANIFEST_COLUMNS: tuple[str, ...] = (
    "utterance_id", "dataset", "split_role", "source_index", "speaker", "accent", "gender", "emotion",
    "text", "raw_text", "duration_s", "source_duration_s", "source_sr", "loudness_lufs", "snr_db",
    "status", "reason", "detail",
    "gender_estimated",  # F0 estimate (helpers.gender_estimate), only where the corpus documents no gender; else ""
)
KEPT, REJECTED = "kept", "rejected"


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
               snr_db=p.snr_db, gender_estimated=estimate_gender(p.wav, p.sr) if rec["gender"] == "unknown" else "")
    return rec, p


def _normalized_text(raw_text, accent) -> str:
    from .text import normalize_transcript  # the ONE text frontend

    if raw_text is None or not str(raw_text).strip():
        raise Reject("missing_transcript", "transcript is missing" if raw_text is None else "transcript is empty")
    # The frontend speaks US or UK English; corpora tagged "other" (Irish, Canadian, EmoV-DB, MLS …)
    # get US number/date reading, the closer default for non-British North-Atlantic speech.
    spoken_accent = "uk" if accent == "uk" else "us"
    try:
        text = normalize_transcript(str(raw_text), spoken_accent)
    except ValueError as e:  # unknown [tag] or an inline emotion tag inside a transcript
        raise Reject("transcript_tags", f"{type(e).__name__}: {e}"[:300]) from None
    if not text or not text.strip():
        raise Reject("missing_transcript", f"normalizes to an empty string: {str(raw_text)[:80]!r}")
    return text


# ----------------------------------------------------------------------------- sources
DUPLICATE = "duplicate"  # status of a row already processed from an earlier source (same utterance_id)
OVERSAMPLE = 1.25  # kept hours gathered per source beyond its largest phase target: room for a balanced draw
# Phase targets are multiplied by this per data source: the tiny corpus holds ~3.4 minutes,
# and 1e-5 turns every phase entry into at least one clip (7 h -> 0.25 s: one clip) while
# phase 1 (1,052 h -> 38 s) stays small enough to encode on a CPU in seconds.
HOURS_SCALE: dict[str, float] = {"hub": 1.0, "assets": 1e-5}  # default per data source; profiles carry their own (Profile.hours_scale)


@dataclass(frozen=True)
class Source:
    """One split role of one catalog dataset, streamed until ``max_hours`` are kept (None: all)."""

    dataset: str
    split_role: str
    max_hours: float | None = None

    @property
    def key(self) -> str:
        return f"{self.dataset}__{self.split_role}"


def plan_sources(data_source: str, datasets: list[str] | None = None, hours_scale: float | None = None) -> list[Source]:
    """The sources 01 must stream, in order, to fill every phase of ``helpers.catalog.PHASES``.

    ``data_source``: a profile's ``data_source`` ("hub" or "assets"). For the hub, each
    (dataset, split role) used by a phase becomes a source with ``max_hours`` = its largest
    phase target x ``hours_scale`` x :data:`OVERSAMPLE`; ``datasets`` limits the choice
    (None = all datasets the phases use). For "assets": the whole bundled corpus.
    """
    from .catalog import PHASES, get_spec

    scale = HOURS_SCALE.get(data_source, 1.0) if hours_scale is None else float(hours_scale)
    if not scale > 0:
        raise ValueError(f"hours_scale must be > 0, got {hours_scale!r}")
    if data_source == "assets":
        return [Source("assets", "train", None)]
    if data_source != "hub":
        raise ValueError(f"data_source must be 'hub' or 'assets', got {data_source!r}")
    need: dict[tuple[str, str], float] = {}
    for ph in PHASES.values():
        for e in ph.entries:
            if datasets is not None and e.dataset not in datasets:
                continue
            get_spec(e.dataset).split_names(e.split_role)  # fails loudly for an unknown role
            k = (e.dataset, e.split_role)
            need[k] = max(need.get(k, 0.0), e.hours * scale * OVERSAMPLE)
    if datasets is not None:
        unknown = sorted(set(datasets) - {d for d, _ in need})
        if unknown:
            raise ValueError(f"datasets {unknown} are not used by any phase of helpers.catalog.PHASES")
    return [Source(d, r, h) for (d, r), h in need.items()]


def iter_source_rows(source: Source):
    """``(source_index, common row or catalog.Rejected)`` for every row of ``source``, streamed.

    The ONE way 01 and 02 read data: ``catalog.open_dataset`` (hub, or the assets
    corpus through the same ``datasets`` path) + ``catalog.to_common``.
    """
    from .catalog import get_spec, open_dataset, to_common

    spec = get_spec(source.dataset)
    for i, raw in enumerate(open_dataset(spec, source.split_role, streaming=True)):
        yield i, to_common(spec, raw)


def _process_chunk(args):
    # Worker entry point (module level so process pools can pickle it).
    pairs, cfg = args
    return [(k, *preprocess_row(r, cfg)) for k, r in pairs]


def process_rows(pairs, cfg: PreprocessConfig = DEFAULT_CONFIG, workers: int = 1, chunk: int = 16):
    """``preprocess_row`` over ``(key, row)`` pairs, in order, with ``workers`` processes.

    Yields ``(key, record, Processed | None)`` in input order. Memory stays bounded: at most
    ``workers * 2`` chunks of ``chunk`` rows are in flight.
    """
    if workers <= 1:
        for k, r in pairs:
            yield (k, *preprocess_row(r, cfg))
        return
    from concurrent.futures import ProcessPoolExecutor
    from itertools import islice

    it = iter(pairs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = []
        while True:
            while len(pending) < 2 * workers:
                block = list(islice(it, chunk))
                if not block:
                    break
                pending.append(pool.submit(_process_chunk, (block, cfg)))
            if not pending:
                return
            yield from pending.pop(0).result()


# ----------------------------------------------------------------------------- the 01 run
MANIFEST_FILE = "manifest.parquet"
REPORT_FILE = "report.json"
PARTS_DIR = "parts"  # one finished parquet per source: a rerun skips them
SAMPLES_DIR = "samples"  # a few clips to listen to (not used for training)
PHASE_COLUMNS: tuple[str, ...] = ("phase1", "phase2", "phase3")


def _atomic_parquet(df, path: Path) -> Path:
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _atomic_json(obj, path: Path) -> Path:
    import json
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, default=float)
    os.replace(tmp, path)
    return path


def _process_source(source: Source, seen_ids: set, cfg: PreprocessConfig, workers: int, row_iter,
                    samples_dir: Path | None, n_samples: int, sample_counts: dict, progress: bool):
    import pandas as pd

    records = []
    audio_by_index: dict = {}
    kept_s = 0.0
    target_s = None if source.max_hours is None else source.max_hours * 3600.0

    def pairs():
        for i, row in row_iter(source):
            uid = row.get("utterance_id") if isinstance(row, dict) else None
            if uid is not None and uid in seen_ids:  # processed from an earlier source already
                records.append({c: None for c in MANIFEST_COLUMNS} | {
                    "utterance_id": uid, "dataset": source.dataset, "status": DUPLICATE,
                    "reason": "", "detail": "already processed from an earlier source",
                    "split_role": source.split_role, "source_index": i})
                continue
            if isinstance(row, dict) and samples_dir is not None:
                audio_by_index[i] = row.get("audio")  # for the rejected-clip samples only
            yield i, row

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = (tqdm(total=round(source.max_hours, 3), unit="h kept", desc=source.key)
               if source.max_hours is not None else tqdm(unit="clip", desc=source.key))
    for i, rec, p in process_rows(pairs(), cfg, workers):
        rec["dataset"] = rec["dataset"] or source.dataset
        rec["split_role"], rec["source_index"] = source.split_role, i
        records.append(rec)
        if rec["utterance_id"] is not None:
            seen_ids.add(rec["utterance_id"])
        if p is not None:
            kept_s += p.duration_s
        src_audio = audio_by_index.pop(i, None)
        if samples_dir is not None:
            _maybe_save_sample(rec, p, src_audio, samples_dir, n_samples, sample_counts)
        if bar is not None:
            bar.update(round(p.duration_s / 3600.0, 6) if (p is not None and target_s) else (0 if target_s else 1))
            bar.set_postfix(kept=sum(r["status"] == KEPT for r in records), rejected=sum(r["status"] == REJECTED for r in records))
        if target_s is not None and kept_s >= target_s:
            break
    if bar is not None:
        bar.close()
    df = pd.DataFrame(records, columns=list(MANIFEST_COLUMNS))
    return df.sort_values("source_index", kind="stable").reset_index(drop=True)


def _maybe_save_sample(rec: dict, p: Processed | None, src_audio, folder: Path, n: int, counts: dict) -> None:
    """Keep up to ``n`` kept clips and ``n`` per rejection reason as 16-bit WAVs for listening."""
    key = KEPT if p is not None else f"rejected_{rec['reason']}"
    if counts.get(key, 0) >= n or rec["utterance_id"] is None:
        return
    name = f"{key}__{rec['utterance_id'].replace(':', '_').replace('/', '_')}.wav"
    if p is not None:
        audio.save_wav(folder / name, p.wav, p.sr)
    else:
        return _save_rejected_sample(src_audio, folder / name, counts, key)
    counts[key] = counts.get(key, 0) + 1


def _save_rejected_sample(src, path: Path, counts: dict, key: str) -> None:
    # Rejected clips are saved as decoded (native rate, mono, peak-limited copy) when decodable.
    if src is None:
        return
    try:
        wav, sr = audio.decode_audio_field(src, mono=True)
    except (audio.AudioDecodeError, ValueError, TypeError, FileNotFoundError):
        return  # undecodable: nothing to listen to; the manifest row says why
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak > 1.0:
        wav = wav / peak
    audio.save_wav(path, wav[: int(10 * sr)], sr)  # first 10 s is enough to hear the problem
    counts[key] = counts.get(key, 0) + 1


def run_preprocess(out_dir: str | os.PathLike, sources: list[Source], *, cfg: PreprocessConfig = DEFAULT_CONFIG,
                   hours_scale: float = 1.0, seed: int = 0, workers: int = 1, n_samples: int = 3,
                   row_iter=None, progress: bool = True):
    """Stream ``sources``, keep or reject every row, pick each phase's clips, write the manifest.

    Writes into ``out_dir`` (``RunPaths.preprocess``): ``parts/<dataset>__<role>.parquet``
    (one per finished source; a rerun skips them), ``manifest.parquet`` (columns
    :data:`MANIFEST_COLUMNS` + ``phase1..3`` booleans, rows in stream order),
    ``report.json`` (:func:`build_report`), and ``samples/*.wav`` to listen to.
    ``row_iter(source)`` yields ``(index, common row)``; default :func:`iter_source_rows`.
    Returns the manifest DataFrame.
    """
    import pandas as pd

    out = Path(out_dir)
    row_iter = row_iter or iter_source_rows
    seen: set = set()
    parts = []
    sample_counts: dict = {}
    for src in sources:
        part_path = out / PARTS_DIR / f"{src.key}.parquet"
        if part_path.is_file():
            df = pd.read_parquet(part_path)
        else:
            df = _process_source(src, seen, cfg, workers, row_iter, out / SAMPLES_DIR, n_samples,
                                 sample_counts, progress)
            _atomic_parquet(df, part_path)
        seen.update(u for u in df["utterance_id"] if u is not None)
        parts.append(df)
    manifest = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(MANIFEST_COLUMNS))
    manifest = assign_phases(manifest, sources, hours_scale, seed)
    _atomic_parquet(manifest, out / MANIFEST_FILE)
    report = build_report(manifest)
    report["config"] = asdict(cfg)
    report["sources"] = [asdict(s) for s in sources]
    report["hours_scale"], report["seed"] = hours_scale, seed
    _atomic_json(report, out / REPORT_FILE)
    return manifest


def read_manifest(out_dir: str | os.PathLike):
    """The manifest 01 wrote (``RunPaths.preprocess``); FileNotFoundError names the notebook to run."""
    import pandas as pd

    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing manifest at {path}; run 01_preprocess first")
    return pd.read_parquet(path)


def assign_phases(manifest, sources: list[Source], hours_scale: float, seed: int):
    """Add ``phase1..3`` columns: which kept clips ``catalog.sample_phase`` draws for each phase.

    Pools: for each phase entry (dataset, split role), the kept clips streamed from
    that source (duplicates count for the later source too). With the assets corpus
    (tiny profile) every entry draws from the one corpus pool, so phases overlap.
    """
    import warnings

    from .catalog import PHASES, ShortfallWarning, sample_phase

    m = manifest.copy()
    kept = m[m["status"] == KEPT]
    dur = dict(zip(kept["utterance_id"], kept["duration_s"]))
    spk = dict(zip(kept["utterance_id"], kept["speaker"]))
    assets_only = [s.dataset for s in sources] == ["assets"]
    pools: dict[str, list[dict]] = {}
    if assets_only:
        pool = [{"utterance_id": u, "speaker": spk[u], "duration_s": dur[u]} for u in kept["utterance_id"]]
    for number, ph in PHASES.items():
        chosen: set = set()
        if assets_only:
            pools = {e.dataset: pool for e in ph.entries}
        else:
            pools = {}
            for e in ph.entries:
                rows = m[(m["dataset"] == e.dataset) & (m["split_role"] == e.split_role)]
                ids = [u for u in rows["utterance_id"] if u in dur]
                pools[e.dataset] = [{"utterance_id": u, "speaker": spk[u], "duration_s": dur[u]} for u in ids]
            if not any(pools.values()):
                m[f"phase{number}"] = False
                continue
            # Entries of datasets not streamed (excluded by the notebook's `datasets`) get empty pools.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ShortfallWarning)  # shortfalls are reported via the selection
            sel = sample_phase(number, pools, seed, scale=hours_scale)
        chosen.update(sel.utterance_ids())
        m[f"phase{number}"] = m["utterance_id"].isin(chosen) & (m["status"] == KEPT)
    return m


# ----------------------------------------------------------------------------- report
def build_report(manifest) -> dict:
    """Counts and hours from a manifest: every row is kept, rejected (by reason) or a duplicate.

    ``rows == kept + rejected + duplicates`` always holds (checked here).
    """
    m = manifest
    kept = m[m["status"] == KEPT]
    rej = m[m["status"] == REJECTED]
    dup = m[m["status"] == DUPLICATE]
    if len(kept) + len(rej) + len(dup) != len(m):
        bad = sorted(set(m["status"]) - {KEPT, REJECTED, DUPLICATE})
        raise ValueError(f"manifest has rows with unknown status {bad}")

    def hours(by):
        return {str(k): float(v) / 3600.0 for k, v in kept.groupby(by)["duration_s"].sum().items()}

    rejections: dict = {}
    for (d, r), n in rej.groupby(["dataset", "reason"]).size().items():
        rejections.setdefault(str(d), {})[str(r)] = int(n)
    phases = {}
    for c in PHASE_COLUMNS:
        if c in m.columns:
            sel = kept[kept[c].astype(bool)]
            phases[c] = {"clips": int(len(sel)), "hours": float(sel["duration_s"].sum() / 3600.0),
                         "speakers": int(sel["speaker"].nunique())}
    return {
        "rows": int(len(m)), "kept": int(len(kept)), "rejected": int(len(rej)), "duplicates": int(len(dup)),
        "kept_hours": float(kept["duration_s"].sum() / 3600.0),
        "rejections_by_dataset_reason": rejections,
        "rejections_by_reason": {str(k): int(v) for k, v in rej.groupby("reason").size().items()},
        "hours_by_dataset": hours("dataset"), "hours_by_accent": hours("accent"),
        "hours_by_emotion": hours("emotion"), "hours_by_gender": hours("gender"),
        "speakers": int(kept["speaker"].nunique()),
        "phases": phases,
    }


def read_report(out_dir: str | os.PathLike) -> dict:
    import json

    path = Path(out_dir) / REPORT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing report at {path}; run 01_preprocess first")
    return json.loads(path.read_text())


def summary_table(manifest):
    """Per dataset: rows, kept, rejected, duplicates, kept hours (a DataFrame for display)."""
    import pandas as pd

    g = manifest.groupby("dataset")
    t = pd.DataFrame({
        "rows": g.size(),
        "kept": g["status"].apply(lambda s: int((s == KEPT).sum())),
        "rejected": g["status"].apply(lambda s: int((s == REJECTED).sum())),
        "duplicates": g["status"].apply(lambda s: int((s == DUPLICATE).sum())),
        "kept_hours": g.apply(lambda d: d.loc[d["status"] == KEPT, "duration_s"].sum() / 3600.0, include_groups=False),
    })
    for c in PHASE_COLUMNS:
        if c in manifest.columns:
            t[f"{c}_clips"] = g[c].apply(lambda s: int(s.astype(bool).sum()))
    return t


def rejection_table(manifest):
    """Reason x dataset counts of rejected rows (a DataFrame; empty when nothing was rejected)."""
    import pandas as pd

    rej = manifest[manifest["status"] == REJECTED]
    if rej.empty:
        return pd.DataFrame(columns=["reason"])
    t = rej.pivot_table(index="reason", columns="dataset", values="status", aggfunc="size", fill_value=0)
    t["description"] = [REASONS.get(r, "dataset rule (helpers.catalog)") for r in t.index]
    return t


def plot_report(manifest):
    """Hours per dataset/accent/emotion/speaker, duration + loudness histograms, rejections (a Figure)."""
    import matplotlib.pyplot as plt

    kept = manifest[manifest["status"] == KEPT]
    fig, axes = plt.subplots(2, 4, figsize=(18, 7))
    for ax, col in zip(axes[0], ("dataset", "accent", "emotion", "speaker")):
        h = kept.groupby(col)["duration_s"].sum().sort_values(ascending=False) / 3600.0
        h.head(25).plot.bar(ax=ax)
        ax.set_title(f"kept hours per {col}" + (" (top 25)" if len(h) > 25 else ""))
        ax.set_ylabel("hours")
    axes[1, 0].hist(kept["duration_s"], bins=30)
    axes[1, 0].set_title("duration of kept clips (s)")
    axes[1, 1].hist(kept["loudness_lufs"], bins=30)
    axes[1, 1].set_title("loudness after normalisation (LUFS)")
    axes[1, 2].hist(kept["snr_db"].clip(upper=100), bins=30)
    axes[1, 2].set_title("estimated SNR of kept clips (dB)")
    rej = manifest[manifest["status"] == REJECTED]["reason"].value_counts()
    if len(rej):
        rej.plot.barh(ax=axes[1, 3])
    axes[1, 3].set_title(f"rejections by reason ({int(rej.sum())})")
    fig.tight_layout()
    return fig


def sample_clips(out_dir: str | os.PathLike) -> list[Path]:
    """The listening samples 01 saved (kept first, then rejected by reason)."""
    folder = Path(out_dir) / SAMPLES_DIR
    return sorted(folder.glob("*.wav"), key=lambda p: (not p.name.startswith(KEPT), p.name)) if folder.is_dir() else []


def config_from_report(out_dir: str | os.PathLike) -> PreprocessConfig:
    """The :class:`PreprocessConfig` 01 used (from report.json): 02 must preprocess identically."""
    return PreprocessConfig(**read_report(out_dir)["config"])


def default_workers(profile_name: str) -> int:
    """Preprocessing processes: every CPU core on Colab, 1 in the tiny profile (no pool overhead)."""
    return 1 if profile_name == "tiny" else max(1, os.cpu_count() or 1)
