"""The clip analysis of preprocessing (seed §10): every source clip is kept in the
training format or rejected with one reason from :data:`REASONS`. Nothing is dropped
uncounted. (The streaming/resume driver of ``01_preprocess`` is :mod:`helpers.data.preprocess`.)

The ONE deterministic clip function is :func:`preprocess_row`; ``01_preprocess``
runs it to build the manifest and records, per kept clip, the decisions it took
(trim bounds in 24 kHz samples, gain in dB). ``02_tokenize`` does not analyse
again: :func:`replay_row` decodes the same source bytes and applies those
decisions (mono, resample, trim, gain, 16-bit grid) — the same operations in the
same order, so the waveform is bit-identical to what the analysis produced
(tested), without the SNR, clipping and loudness measurements. No WAV is
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
    loudness      gain to -23 LUFS, peak <= -1 dBFS (peaks limited by <= 6 dB); final within ±1 LU, else loudness_unreachable
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
(never clips). If the lowered gain leaves the clip more than 1 LU below target
(peak-to-loudness ratio above 23 dB), the full gain is applied and the samples
it pushes above -1 dBFS are peak-limited (a 5 ms look-ahead, Hann-smoothed gain
reduction, :func:`helpers.clip_audio.limit_peaks`), provided they need at most
6 dB of reduction; otherwise (e.g. a click in a quiet clip) the clip is rejected
as ``loudness_unreachable``. Real read speech needs this: without the limiter 16
of 251 clean LibriSpeech train-clean clips (6.4 %) were rejected, each needing
1.1-5.1 dB of reduction on at most 0.11 % of its samples; clips that reach the
target without it are exactly as before.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from .. import audio
from ..clip_audio import (DEFAULT_CONFIG, PreprocessConfig, Reject, clipped_fraction, estimate_snr_db, frame_power_db, gain_to_pcm16, normalize_loudness, trim_bounds)
from .gender_estimate import estimate_gender

_HEADER_PROBE_BYTES = 8192  # enough of a file to read a WAV/FLAC header's declared length
# A decoder may stop a few thousand samples short of the header's count (padding, last
# frame); beyond this (or 1 %) the file is reported as truncated.
_TRUNCATION_SLACK_SAMPLES = 2048


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
    db = frame_power_db(x, cfg.target_sr, cfg.frame_s, cfg.hop_s)  # one pass shared by the SNR and the trim
    snr = estimate_snr_db(x, cfg.target_sr, cfg, db=db)
    start, end = trim_bounds(x, cfg.target_sr, cfg, db=db)
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
    "gender_estimated",  # F0 estimate (helpers.data.gender_estimate), only where the corpus documents no gender; else ""
)
# Column types, fixed so a manifest's bytes do not depend on which rows one part happened to hold.
_INT_COLUMNS = ("source_index", "source_sr", "trim_start", "trim_end", "source_channels")
_FLOAT_COLUMNS = ("duration_s", "source_duration_s", "loudness_lufs", "snr_db", "gain_db")
KEPT, REJECTED = "kept", "rejected"
BRITISH_ISLES_ACCENTS = ("uk", "scottish", "irish", "welsh")  # text normalised with the UK reading


def preprocess_row(row, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[dict, Processed | None]:
    """One common row (``helpers.data.catalog.to_common``) -> ``(manifest record, Processed or None)``.

    ``row`` is the common dict (audio, text, speaker, accent, gender, emotion,
    utterance_id, dataset) or a ``helpers.data.catalog.Rejected``. Data problems never
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
    return gain_to_pcm16(x, gain_db, cfg.target_sr, cfg)


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
    from ..text import normalize_transcript  # the ONE text frontend

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
