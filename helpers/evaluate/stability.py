"""Stability: the failures users report most for LLM TTS, measured.

* **Failure to stop** — the engine's length guard (:class:`helpers.infer.generation.LengthGuard`)
  ended a chunk because the model never emitted ``<|audio_end|>`` (``stop_reason ==
  "length"``). Known only for synthesizers that report stop reasons (``OptimumTTS``).
* **Loops** — the loop guard fired (``stop_reason == "loop"``: the same SNAC frames over and
  over) *or* :func:`audio_loop` finds a stretch of audio that repeats itself (a block of
  0.2–3 s copied for at least 2 s), which also catches loops that are not token-exact and
  works on any synthesizer's audio.
* **Skipped or repeated words** — the WER split into deletions, insertions and
  substitutions (:func:`helpers.evaluate.clip_metrics.error_breakdown`): a truncated clip raises the
  deletion rate, a repeated phrase the insertion rate.
* **Duration ratio** — audio seconds / :func:`expected_seconds` (the text at 14 characters
  per second, :data:`helpers.text.CHARS_PER_SECOND`): ≫ 1 is a model that rambles or
  stalls, ≪ 1 one that skips.
* **Long form** — paragraphs estimated over 60 s, generated through the engine's chunked
  path (``generate`` cuts them into chunks of ≤ 20 s): all of the above over the paragraph,
  and *drift*, the speaker similarity of the first against the last 10 s.
* **Dialogue** — a two-speaker script through ``generate_dialogue``: WER per turn;
  *within-voice similarity* (mean cosine between turns of the same speaker: a voice that
  changes across turns lowers it) and *cross-speaker similarity* (mean cosine between turns
  of different speakers: the two voices should stay apart, so lower is better);
  ``speaker_separation`` = within − cross.

The long-form paragraphs and the dialogue script live in ``assets/eval/stability.json``
(written for this project; a tiny profile subset).
"""
from __future__ import annotations

import inspect
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import audio as au
from ..profiles import EVAL_ASSETS_DIR
from ..scores import error_breakdown, wer_normalize, cosine
from ..tokens import VOICES

STABILITY_FILE = "stability.json"
LOOP_SR = 16000
LOOP_HOP = 160  # 10 ms frames
LOOP_MIN_LAG_S = 0.2  # shorter periods are steady vowels or silence, not a loop
LOOP_MAX_LAG_S = 3.0
LOOP_MIN_SECONDS = 2.0  # repeated for at least this long
LOOP_SIMILARITY = 0.9  # cosine of mean-removed log-mel frames, frame vs frame one period earlier
LOOP_ACTIVE_DB = 35.0  # frames within 35 dB of the loudest are speech


def expected_seconds(text: str) -> float:
    """Seconds a reader takes for ``text`` at :data:`helpers.text.CHARS_PER_SECOND` (14/s),
    counting the characters of the normalized text (numbers spelled out)."""
    from ..text import CHARS_PER_SECOND

    n = len(wer_normalize(text))
    if n == 0:
        raise ValueError(f"text {text!r} is empty after normalization")
    return n / CHARS_PER_SECOND


@dataclass
class AudioLoop:
    """A stretch ``start_s .. end_s`` that repeats the audio ``period_s`` seconds before it."""

    start_s: float
    end_s: float
    period_s: float

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


def audio_loop(wav: np.ndarray, sr: int, min_seconds: float = LOOP_MIN_SECONDS) -> AudioLoop | None:
    """The longest self-repeating stretch of at least ``min_seconds`` in ``wav``, or None.

    Log-mel frames (40 bands, 10 ms hop at 16 kHz, mean removed per frame) are compared with
    the frame ``lag`` earlier for every lag of 0.2–3 s; a loop is a run of active-speech frames
    whose cosine stays above :data:`LOOP_SIMILARITY` for ``min_seconds``. Natural speech does
    not repeat itself at a fixed lag for two seconds; a model stuck on a phrase does."""
    import librosa

    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError("audio_loop needs non-empty, finite audio")
    x = au.resample(x, int(sr), LOOP_SR) if int(sr) != LOOP_SR else x
    mel = librosa.feature.melspectrogram(y=x, sr=LOOP_SR, n_fft=512, hop_length=LOOP_HOP, n_mels=40)
    db = librosa.power_to_db(mel + 1e-10, ref=1.0).T  # (T, 40)
    energy = db.max(axis=1)
    active = energy > energy.max() - LOOP_ACTIVE_DB
    f = db - db.mean(axis=1, keepdims=True)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-6)
    fps = LOOP_SR / LOOP_HOP
    need = int(round(min_seconds * fps))
    lo, hi = int(round(LOOP_MIN_LAG_S * fps)), int(round(LOOP_MAX_LAG_S * fps))
    best = None
    for lag in range(lo, min(hi, len(f) - need) + 1):
        both = active[lag:] & active[:-lag]
        # pauses repeat with the phrase: a frame silent at both ends continues a run, but a
        # run must be mostly speech (two seconds of silence are not a loop)
        ok = ((np.einsum("ij,ij->i", f[lag:], f[:-lag]) > LOOP_SIMILARITY) & both) | (~active[lag:] & ~active[:-lag])
        if (ok & both).sum() < need // 2:
            continue
        edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, b in zip(starts, ends):
            if b - a >= need and both[a:b].mean() >= 0.5 and (best is None or b - a > best[1] - best[0]):
                best = (a + lag, b + lag, lag)
    if best is None:
        return None
    return AudioLoop(best[0] / fps, best[1] / fps, best[2] / fps)


def stability_row(text: str, hypothesis: str, wav: np.ndarray, sr: int, stop_reasons: Sequence[str] | None = None,
                  accent: str = "us") -> dict:
    """The stability measures of one generated clip (see the module docstring)."""
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    eb = error_breakdown(text, hypothesis, lambda t: wer_normalize(t, accent))
    loop = audio_loop(x, sr)
    return {"wer": eb["wer"], "ins": eb["ins"], "del": eb["del"], "sub": eb["sub"],
            "audio_s": x.size / sr, "expected_s": expected_seconds(text),
            "duration_ratio": (x.size / sr) / expected_seconds(text),
            "n_chunks": None if stop_reasons is None else len(stop_reasons),
            "hit_length_guard": None if stop_reasons is None else "length" in stop_reasons,
            "hit_loop_guard": None if stop_reasons is None else "loop" in stop_reasons,
            "audio_loop": loop is not None, "audio_loop_s": 0.0 if loop is None else loop.seconds}


def flag(v) -> bool:
    """True/False from a table cell that may be None or NaN (unknown counts as False)."""
    return bool(v) if v is not None and v == v else False


def stability_summary(rows) -> dict[str, float]:
    """Rates over a table of :func:`stability_row` rows: failure-to-stop rate (NaN when the
    synthesizer reports no stop reasons), loop rate (loop guard or audio loop), mean duration
    ratio and mean WER with its insertion/deletion/substitution rates."""
    import pandas as pd

    df = pd.DataFrame(rows)
    known = df["hit_length_guard"].dropna()
    loops = df["audio_loop"].map(flag) | df["hit_loop_guard"].map(flag)
    return {"n": int(len(df)), "failure_to_stop_rate": float(known.astype(bool).mean()) if len(known) else float("nan"),
            "loop_rate": float(loops.mean()), "duration_ratio": float(df["duration_ratio"].mean()),
            "wer": float(df["wer"].mean()), "ins": float(df["ins"].mean()), "del": float(df["del"].mean()),
            "sub": float(df["sub"].mean())}


# ----------------------------------------------------------------------------- long form
def drift_similarity(encoder, wav: np.ndarray, sr: int, window_s: float = 10.0) -> float:
    """Cosine of speaker embeddings of the first and the last ``window_s`` seconds (NaN when
    the clip is shorter than two windows): a voice that drifts over a long text lowers it."""

    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    n = int(window_s * sr)
    if x.size < 2 * n:
        return float("nan")
    return cosine(encoder.embed(x[:n], sr), encoder.embed(x[-n:], sr))


def score_long_form(text: str, wav: np.ndarray, sr: int, judges, stop_reasons: Sequence[str] | None = None,
                    accent: str = "us") -> dict:
    """:func:`stability_row` of a paragraph plus its transcript and :func:`drift_similarity`."""
    hyp = judges.asr.transcribe(wav, sr)
    return {"hypothesis": hyp, **stability_row(text, hyp, wav, sr, stop_reasons, accent),
            "drift_sim": drift_similarity(judges.speaker, wav, sr)}


# ----------------------------------------------------------------------------- dialogue
def score_dialogue(turns: Sequence[Mapping], sr: int, judges, accent: str = "us"):
    """Per-turn WER (+ ins/del/sub) and the speaker measures of one dialogue.

    ``turns``: dicts with ``speaker`` (script name), ``text`` and ``wav`` (float ``(n,)`` at
    ``sr``). Returns ``(per_turn, summary)``: a table and ``{"within_voice_sim",
    "cross_speaker_sim", "speaker_separation", "wer", ...}``."""
    import pandas as pd

    if len(turns) < 2 or len({t["speaker"] for t in turns}) < 2:
        raise ValueError("a dialogue needs at least two turns by two different speakers")
    rows, embs = [], []
    for i, t in enumerate(turns):
        wav = np.asarray(t["wav"], dtype=np.float32).reshape(-1)
        hyp = judges.asr.transcribe(wav, sr)
        rows.append({"turn": i, "speaker": t["speaker"], "text": t["text"], "hypothesis": hyp,
                     **stability_row(t["text"], hyp, wav, sr, t.get("stop_reasons"), accent)})
        embs.append(judges.speaker.embed(wav, sr))
    within, cross = [], []
    for i in range(len(turns)):
        for j in range(i + 1, len(turns)):
            (within if turns[i]["speaker"] == turns[j]["speaker"] else cross).append(cosine(embs[i], embs[j]))
    if not within:
        raise ValueError("no speaker has two turns: within-voice similarity needs repeated speakers")
    per_turn = pd.DataFrame(rows)
    w, c = float(np.mean(within)), float(np.mean(cross))
    summary = {"n_turns": len(turns), "within_voice_sim": w, "cross_speaker_sim": c, "speaker_separation": w - c,
               "wer": float(per_turn["wer"].mean()), "ins": float(per_turn["ins"].mean()),
               "del": float(per_turn["del"].mean()), "sub": float(per_turn["sub"].mean())}
    return per_turn, summary


# ----------------------------------------------------------------------------- one generation, timed
def synthesize(synth, text: str, **kwargs) -> tuple[np.ndarray, list[str] | None, float]:
    """``(wav, stop_reasons, seconds)`` of one ``synth.generate`` call.

    ``stop_reasons``: one per generated chunk ("end", "length" = the length guard stopped a
    model that did not stop, "loop" = the loop guard) when ``synth.generate`` accepts
    ``return_result=True`` (``OptimumTTS`` does); None for synthesizers that cannot say."""
    t0 = time.perf_counter()
    try:
        has_result = "return_result" in inspect.signature(synth.generate).parameters
    except (TypeError, ValueError):
        has_result = False
    if has_result:
        res = synth.generate(text, return_result=True, **kwargs)
        wav, reasons = res.audio, [c.stop_reason for c in res.chunks]
    else:
        wav, reasons = synth.generate(text, **kwargs), None
    seconds = time.perf_counter() - t0
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    return wav, reasons, seconds



# ----------------------------------------------------------------------------- the sets
def load_stability_set(profile: str, path: str | os.PathLike | None = None) -> dict:
    """``{"long_form": [{"id", "text"}], "dialogue": {"voices": {name: voice}, "script": [[name, text], ...]}}``
    for ``profile`` from ``assets/eval/stability.json``."""
    path = Path(path) if path is not None else EVAL_ASSETS_DIR / STABILITY_FILE
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if profile not in data.get("profiles", {}):
        raise ValueError(f"{path}: no stability set for profile {profile!r}; has {sorted(data.get('profiles', {}))}")
    p = data["profiles"][profile]
    paragraphs = {x["id"]: x["text"] for x in data["long_form"]}
    unknown = [i for i in p["long_form"] if i not in paragraphs]
    if unknown:
        raise ValueError(f"{path}: profile {profile!r} names unknown paragraphs {unknown}")
    dia = data["dialogue"]
    bad = sorted(v for v in dia["voices"].values() if v not in VOICES)
    if bad:
        raise ValueError(f"{path}: dialogue voices {bad} are not built-in voices {VOICES}")
    script = dia["script"][:p["dialogue_turns"]]
    missing = sorted({s for s, _ in script} - set(dia["voices"]))
    if missing:
        raise ValueError(f"{path}: dialogue speakers {missing} have no voice")
    return {"long_form": [{"id": i, "text": paragraphs[i]} for i in p["long_form"]],
            "dialogue": {"voices": dict(dia["voices"]), "script": [list(t) for t in script]}}


def run_long_form(synth, paragraphs: Sequence[Mapping], judges, *, seed: int = 1234, speaker: str | None = None):
    """Generate every paragraph through ``synth.generate`` (its chunked path) and score it;
    returns a table with one row per paragraph (``gen_s`` and ``rtf`` included)."""
    import pandas as pd

    rows = []
    for k, p in enumerate(paragraphs):
        wav, reasons, gen_s = synthesize(synth, p["text"], speaker=speaker, emotion="neutral",
                                         audio_prompt=None, seed=seed + k)
        row = {"id": p["id"], "chars": len(p["text"]), **score_long_form(p["text"], wav, synth.sample_rate, judges,
                                                                         reasons)}
        row.update(gen_s=gen_s, rtf=gen_s / max(row["audio_s"], 1e-9))
        rows.append(row)
    return pd.DataFrame(rows)


def run_dialogue(synth, dialogue: Mapping, judges, *, seed: int = 1234):
    """Render ``dialogue`` (``voices`` + ``script``) with ``synth.generate_dialogue`` when it
    has one (``OptimumTTS``), else turn by turn with ``generate``; returns
    :func:`score_dialogue`'s ``(per_turn, summary)``."""
    script = [tuple(t) for t in dialogue["script"]]
    voices = dict(dialogue["voices"])
    if hasattr(synth, "generate_dialogue"):
        res = synth.generate_dialogue(script, seed=seed, **voices)
        turns = [{"speaker": t.speaker, "text": t.text, "wav": t.audio} for t in res.turns]
    else:
        turns = [{"speaker": s, "text": text,
                  "wav": synth.generate(text, speaker=voices[s], emotion="neutral", audio_prompt=None,
                                        seed=seed + 1000 * i)}
                 for i, (s, text) in enumerate(script)]
    return score_dialogue(turns, synth.sample_rate, judges)
