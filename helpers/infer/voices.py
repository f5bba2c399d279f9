"""Voices for inference: built-in voice names, cloned reference clips, saved voice profiles.

A voice is one of

* a built-in name (``"male_us_01"``, :data:`helpers.tokens.VOICES`): one token in
  the prompt's speaker block;
* a reference clip (path, bytes, float array at 24 kHz, or ``(array, sample_rate)``):
  prepared like training audio (mono, 24 kHz, leading/trailing silence trimmed,
  -23 LUFS with the peak at most -1 dBFS, all with :mod:`helpers.data.preprocess`'s
  functions), SNAC-encoded, and its frames placed in the speaker block (zero-shot
  cloning, seed §8);
* a saved :class:`VoiceProfile` (``.json``, like OuteTTS' speaker files): the codes of a
  prepared reference, so the WAV need not be kept and is not re-encoded.

Reference length (seed's "voice cloning quality vs reference length" table: 5 s
fair, 10 s good, 15 s very good, 30 s excellent, 60 s+ diminishing returns): the
bounds are the ones training draws its reference lengths from
(:data:`helpers.tokens.REFERENCE_MIN_S` .. :data:`helpers.tokens.REFERENCE_MAX_S`,
3-20 s), so the model is never asked to clone from a length it never saw. Shorter
than :data:`MIN_REFERENCE_S` after trimming is an error, under
:data:`WARN_REFERENCE_S` a warning, longer than :data:`MAX_REFERENCE_S` is cut to its
first 20 s with a warning. A saved :class:`VoiceProfile` is held to the same bounds
in frames when it is used.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import audio as au, clip_audio
from ..tokens import (REFERENCE_MAX_FRAMES, REFERENCE_MAX_S, REFERENCE_MIN_FRAMES, REFERENCE_MIN_S, VOICES,
    as_codebooks)

MIN_REFERENCE_S = REFERENCE_MIN_S  # training never shows a shorter reference (3 s)
WARN_REFERENCE_S = 5.0  # seed: 5 s is "fair"; 10-30 s recommended
MAX_REFERENCE_S = REFERENCE_MAX_S  # training never shows a longer reference (20 s)
PROFILE_FORMAT = 1
PROFILE_KIND = "optimumllm-audio-voice"


class ReferenceAudioError(ValueError):
    """A reference clip cannot be used for cloning (silent, too short, unreadable)."""


@dataclass
class PreparedReference:
    """A reference clip ready for SNAC: float32 ``(n,)`` at ``sample_rate`` Hz, plus what was done."""

    wav: np.ndarray
    sample_rate: int
    source: str
    seconds: float
    trimmed_seconds: float  # silence removed
    cut_seconds: float  # audio beyond MAX_REFERENCE_S dropped
    loudness_lufs: float
    gain_db: float
    warnings: list[str] = field(default_factory=list)


def _describe_source(src) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, tuple):
        return f"array of {np.asarray(src[0]).shape} at {src[1]} Hz"
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes>"
    return f"array of {np.asarray(src).shape}"


def _load(src, sample_rate: int) -> np.ndarray:
    """Any accepted reference form -> mono float32 at ``sample_rate``."""
    if isinstance(src, (str, os.PathLike, bytes, bytearray, memoryview)):
        wav, _ = au.load_audio(src, target_sr=sample_rate, mono=True)
        return wav
    if isinstance(src, tuple):
        if len(src) != 2:
            raise ReferenceAudioError(f"audio_prompt tuple must be (array, sample_rate), got {len(src)} items")
        arr, sr = src
    else:
        arr, sr = src, sample_rate  # a bare array is taken to be at the codec's rate (24 kHz)
    if hasattr(arr, "detach"):
        arr = arr.detach().cpu().numpy()
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.floating):
        raise ReferenceAudioError(f"audio_prompt array must hold float samples in [-1, 1], got dtype {a.dtype}")
    if a.size == 0:
        raise ReferenceAudioError("audio_prompt array is empty")
    a = au.to_mono(a)
    if not np.isfinite(a).all():
        raise ReferenceAudioError(f"audio_prompt has {int((~np.isfinite(a)).sum())} NaN/inf sample(s)")
    return au.resample(a, int(sr), sample_rate) if int(sr) != sample_rate else a.astype(np.float32)


def prepare_reference(src, sample_rate: int = au.DEFAULT_SR, *, max_seconds: float = MAX_REFERENCE_S,
                      cfg: clip_audio.PreprocessConfig = clip_audio.DEFAULT_CONFIG) -> PreparedReference:
    """Load and clean a reference clip for cloning (see the module docstring for the rules).

    ``src``: path / encoded bytes (any rate, any channels), a float array ``(n,)`` or
    ``(n, channels)`` at ``sample_rate`` Hz, or ``(array, sr)``. Returns
    :class:`PreparedReference`; raises :class:`ReferenceAudioError` if it is silent or
    shorter than :data:`MIN_REFERENCE_S` after trimming. Warnings are issued (and kept
    in ``.warnings``) under :data:`WARN_REFERENCE_S` and when cut to ``max_seconds``.
    """
    if not 0 < max_seconds <= MAX_REFERENCE_S:
        raise ValueError(f"max_seconds must be in (0, {MAX_REFERENCE_S:g}] (the longest reference the model was "
                         f"trained on), got {max_seconds!r}")
    name = _describe_source(src)
    wav = _load(src, sample_rate)
    notes: list[str] = []
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak <= 10 ** (cfg.silence_peak_dbfs / 20):
        raise ReferenceAudioError(f"reference audio {name} is silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} "
                                  f"dBFS, below {cfg.silence_peak_dbfs:.0f} dBFS); give a clip of the voice speaking")
    start, end = clip_audio.trim_bounds(wav, sample_rate, cfg)
    trimmed = (len(wav) - (end - start)) / sample_rate
    wav = wav[start:end]
    seconds = len(wav) / sample_rate
    if seconds < MIN_REFERENCE_S:
        raise ReferenceAudioError(f"reference audio {name} has {seconds:.2f} s of speech after trimming silence; "
                                  f"at least {MIN_REFERENCE_S:g} s is needed (the shortest reference the model was "
                                  f"trained on; {MIN_REFERENCE_S:g}-{MAX_REFERENCE_S:g} s accepted, 10-20 s recommended)")
    cut = 0.0
    if seconds > max_seconds:
        cut = seconds - max_seconds
        wav = wav[: int(round(max_seconds * sample_rate))]
        notes.append(f"reference audio {name} is {seconds:.1f} s; only its first {max_seconds:g} s are used "
                     f"(the longest reference the model was trained on)")
        seconds = max_seconds
    if seconds < WARN_REFERENCE_S:
        notes.append(f"reference audio {name} is only {seconds:.1f} s; cloning quality is fair at 5 s and best "
                     f"with 10-20 s")
    # A generous tolerance so normalize_loudness never rejects: a clip whose peak
    # limits the gain is used as loud as it can be, with a warning, not refused.
    loose = clip_audio.PreprocessConfig(**{**cfg.__dict__, "lufs_tolerance_db": 1e9})
    try:
        wav, lufs, gain = clip_audio.normalize_loudness(wav, sample_rate, loose)
    except clip_audio.Reject as e:  # only "silent" is possible with the loose tolerance
        raise ReferenceAudioError(f"reference audio {name}: {e}") from e
    if abs(lufs - cfg.target_lufs) > cfg.lufs_tolerance_db:
        notes.append(f"reference audio {name} reaches only {lufs:.1f} LUFS (target {cfg.target_lufs}) without "
                     f"exceeding the {cfg.peak_ceiling_dbfs} dBFS peak ceiling")
    for n in notes:
        warnings.warn(n, stacklevel=3)
    return PreparedReference(wav=wav, sample_rate=sample_rate, source=name, seconds=seconds,
                             trimmed_seconds=trimmed, cut_seconds=cut, loudness_lufs=lufs, gain_db=gain,
                             warnings=notes)


@dataclass
class VoiceProfile:
    """A cloned voice: SNAC codes ``[cb1 (T,), cb2 (2T,), cb3 (4T,)]`` of a prepared reference.

    Saved as a small JSON file (30 s ≈ 2,460 integers ≈ 15 kB). ``codec`` names the
    SNAC model that made the codes: codes of another codec mean nothing to the model.
    """

    name: str
    codes: list
    codec: str
    seconds: float
    source: str = ""
    created: str = ""

    def __post_init__(self):
        self.codes = as_codebooks(self.codes)  # checks shapes (T, 2T, 4T) and code ranges
        if self.codes[0].shape[0] == 0:
            raise ValueError(f"voice profile {self.name!r} holds no frames")

    @property
    def n_frames(self) -> int:
        return int(self.codes[0].shape[0])

    def to_dict(self) -> dict:
        return {"kind": PROFILE_KIND, "format": PROFILE_FORMAT, "name": self.name, "codec": self.codec,
                "seconds": round(float(self.seconds), 3), "source": self.source, "created": self.created,
                "n_frames": self.n_frames, "codes": [c.tolist() for c in self.codes]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON (atomically); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict()))
        os.replace(tmp, out)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> "VoiceProfile":
        """Read a profile written by :meth:`save`; raises ValueError naming what is wrong."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"voice profile not found: {p}")
        try:
            d = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{p} is not a voice profile (not JSON: {e})") from e
        if not isinstance(d, dict) or d.get("kind") != PROFILE_KIND:
            raise ValueError(f"{p} is not a voice profile (expected \"kind\": \"{PROFILE_KIND}\")")
        if d.get("format") != PROFILE_FORMAT:
            raise ValueError(f"{p}: voice profile format {d.get('format')!r}, this code reads {PROFILE_FORMAT}")
        missing = [k for k in ("name", "codes", "codec", "seconds") if k not in d]
        if missing:
            raise ValueError(f"{p}: voice profile lacks {missing}")
        try:
            return cls(name=d["name"], codes=[np.asarray(c, dtype=np.int64) for c in d["codes"]], codec=d["codec"],
                       seconds=float(d["seconds"]), source=d.get("source", ""), created=d.get("created", ""))
        except ValueError as e:
            raise ValueError(f"{p}: invalid codes in voice profile: {e}") from e


def clone_voice(src, codec, name: str | None = None, **kw) -> VoiceProfile:
    """Prepare ``src`` (see :func:`prepare_reference`) and SNAC-encode it with ``codec``
    (a :class:`helpers.codec.SnacCodec`) into a :class:`VoiceProfile`."""
    ref = prepare_reference(src, codec.sample_rate, **kw)
    codes = codec.encode(ref.wav)
    # The codec pads to whole frames: a clip of exactly REFERENCE_MAX_S may come back one frame
    # longer than training ever showed; that padding frame is dropped.
    codes = [c[: REFERENCE_MAX_FRAMES * m] for c, m in zip(codes, (1, 2, 4))]
    label = name or (Path(src).stem if isinstance(src, (str, os.PathLike)) else "cloned")
    return VoiceProfile(name=label, codes=codes, codec=codec.name, seconds=ref.seconds, source=ref.source,
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def bounded_profile(profile: VoiceProfile) -> VoiceProfile:
    """``profile`` held to the training bounds in frames: fewer than
    :data:`helpers.tokens.REFERENCE_MIN_FRAMES` raises :class:`ReferenceAudioError`, more than
    :data:`helpers.tokens.REFERENCE_MAX_FRAMES` is cut to its first frames with a warning."""
    n = profile.n_frames
    if n < REFERENCE_MIN_FRAMES:
        raise ReferenceAudioError(f"voice profile {profile.name!r} holds {n} frames ({profile.seconds:.1f} s); at least "
                                  f"{REFERENCE_MIN_FRAMES} frames ({MIN_REFERENCE_S:g} s) are needed, the shortest "
                                  f"reference the model was trained on")
    if n <= REFERENCE_MAX_FRAMES:
        return profile
    warnings.warn(f"voice profile {profile.name!r} holds {n} frames ({profile.seconds:.1f} s); only its first "
                  f"{REFERENCE_MAX_FRAMES} frames ({MAX_REFERENCE_S:g} s, the longest reference the model was trained "
                  f"on) are used", stacklevel=3)
    k = REFERENCE_MAX_FRAMES
    return VoiceProfile(name=profile.name, codes=[c[: k * m] for c, m in zip(profile.codes, (1, 2, 4))],
                        codec=profile.codec, seconds=k / profile.n_frames * profile.seconds, source=profile.source,
                        created=profile.created)


@dataclass(frozen=True)
class Voice:
    """What goes into the speaker block: a built-in ``name`` or reference ``codes`` (or neither)."""

    builtin: str | None = None
    profile: VoiceProfile | None = None

    @property
    def label(self) -> str:
        return self.builtin or (self.profile.name if self.profile else "none")


def resolve_voice(spec, codec) -> Voice:
    """A user's voice argument -> :class:`Voice`.

    ``spec``: a built-in name, a path to a saved profile (``.json``), a path to an
    audio file, encoded bytes, an array, ``(array, sr)``, a :class:`VoiceProfile` or a
    :class:`Voice`. An unknown name raises ValueError listing the built-in voices.
    """
    if isinstance(spec, Voice):
        return spec
    if isinstance(spec, VoiceProfile):
        spec = bounded_profile(spec)
        if spec.codec != codec.name:
            warnings.warn(f"voice profile {spec.name!r} was made with codec {spec.codec!r}, the model uses "
                          f"{codec.name!r}: its codes may not describe the same sound", stacklevel=3)
        return Voice(profile=spec)
    if isinstance(spec, str) and spec in VOICES:
        return Voice(builtin=spec)
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec).expanduser()
        if p.is_file():
            if p.suffix.lower() == ".json":
                return resolve_voice(VoiceProfile.load(p), codec)
            return Voice(profile=clone_voice(p, codec))
        if p.suffix or os.sep in str(spec):  # meant as a file
            raise FileNotFoundError(f"voice file not found: {p} (expected a reference clip or a saved voice "
                                    f"profile .json; built-in voices: {', '.join(VOICES)})")
        raise ValueError(f"unknown voice {str(spec)!r}: not a built-in voice ({', '.join(VOICES)}) and no such "
                         f"file (a reference clip .wav/.flac/... or a saved voice profile .json)")
    if spec is None:
        raise ValueError(f"voice is None; give a built-in voice ({', '.join(VOICES)}), a reference clip or a profile")
    return Voice(profile=clone_voice(spec, codec))


__all__ = [
    "MIN_REFERENCE_S", "WARN_REFERENCE_S", "MAX_REFERENCE_S", "ReferenceAudioError", "PreparedReference",
    "prepare_reference", "VoiceProfile", "bounded_profile", "clone_voice", "Voice", "resolve_voice",
]
