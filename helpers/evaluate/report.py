"""Evaluation: a fixed test set, the metrics, a runner that resumes, and the report.

Protocol (seed §14; the same on every run so numbers compare across runs):

* **Test set** — ``assets/eval/testset.json`` (made by ``scripts/make_eval_assets.py``):
  held-out sentences (written for this project, none in the training corpus; digits,
  dates, money and an abbreviation exercise the normalizer), every built-in voice
  (seed §8) in every seed emotion (§12), and cloning items whose reference clips come
  from speakers never trained on (LibriTTS-R test.clean on Colab; two espeak-ng voices
  the bundled corpus does not use in the tiny profile). Item ids are stored, so reruns
  score the same items. :func:`check_held_out` refuses a run whose token shards
  contain a reference speaker or a test sentence.
* **WER / CER** — the judge ASR's transcript of the generated audio against the input
  text, both through :func:`wer_normalize` (``helpers.text.normalize`` with the item's
  accent, then lower case, no punctuation), scored with jiwer. Reported as the mean of
  per-utterance rates (as Seed-TTS-eval does) and pooled over all words.
* **Speaker similarity** — cosine of judge speaker embeddings of the generated audio and
  the reference clip (cloning items).
* **Provenance** — every headline number says what it was measured on: the model's output,
  or *ground truth through SNAC* (:func:`codec_ceiling`: real held-out speech encoded and
  decoded by the codec, scored with the same judges: WER, SIM, MOS, PESQ, STOI), the ceiling
  on any audio the model can make. Only model-output numbers pass or fail a target
  (:func:`passes`, :func:`report_rows`). PESQ/STOI need a recording of the same sentence in
  the same voice: the project test set has none, so the model's are N/A here; the
  LibriSpeech-PC protocol (:mod:`helpers.evaluate.protocols`) measures them.
* **MOS** — a MOS predictor on every generated clip (UTMOS on Colab, DNSMOS offline).
* **RTF** — generation seconds / audio seconds over all items (< 1 is faster than real
  time); **TTFA** — seconds until ``synth.stream`` yields its first chunk, on a few items.
* **Emotion control** — pitch (median F0), speaking rate (characters per second of
  active speech) and level (RMS dB of active speech) of each emotional item against the
  same voice's neutral items, compared in direction with the seed's §12 table. Note that
  preprocessing normalizes every training clip to -23 LUFS, so the model cannot learn the
  table's energy column from loudness; the energy check reports what it finds.

The judge models are parameters (:mod:`helpers.evaluate.judges`); the profile picks them. The
per-clip metrics live in :mod:`helpers.evaluate.clip_metrics`, the figures in
:mod:`helpers.evaluate.figures` (both re-exported here); stability, long form and dialogue in
:mod:`helpers.evaluate.stability`; the standard protocols in :mod:`helpers.evaluate.protocols`;
best-of-N in :mod:`helpers.infer.best_of`.
``evaluate`` takes any *synthesizer*: an object with ``sample_rate`` and
``generate(text, speaker=, emotion=, audio_prompt=, seed=) -> (n,) float``, like
``helpers.infer.engine.OptimumTTS`` (and ``stream(...)`` for TTFA), so the metrics run on
real espeak-ng speech in tests without a model.

Everything is written under one folder (``RunPaths.eval``): ``clips/`` (one WAV per item),
``items/`` (one JSON per scored item: a rerun skips those), ``references/``, the tables
(``items.csv``, ``codec.csv``, ``targets.csv``, ``per_voice.csv``, ``per_emotion.csv``,
``emotion_control.csv``), ``report.json``, ``figures/*.png`` and ``listening.html``.
"""
from __future__ import annotations

import bisect
import io
import json
import os
import re
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .. import audio as au
from .figures import breakdown, listening_html, plot_mos_per_emotion, plot_sim_distribution, plot_wer_per_voice
from . import calibration as calib
from .clip_metrics import (ANCHORS, METRIC_LABELS, METRICS, SEED_PROSODY, TARGETS, codec_round_trip, emotion_control, prosody, reconstruction_quality, speaker_similarity)
from ..scores import error_breakdown, error_rates, pooled_error_rates, wer_normalize
from ..profiles import EVAL_ASSETS_DIR
from .stability import audio_loop, expected_seconds, flag, synthesize
from ..tokens import VOICES
from . import judges as em
from ..data import catalog

TESTSET_FILE = "testset.json"
TESTSET_VERSION = 1  # bump whenever items change: results are comparable only within a version
ITEM_KINDS = ("voice", "clone")


class TestSetError(ValueError):
    """testset.json does not match its contract (names the item or field)."""

    __test__ = False  # not a pytest test class


class HeldOutError(ValueError):
    """A test-set speaker or sentence occurs in the run's training shards."""


# ============================================================================ test set
@dataclass(frozen=True)
class Reference:
    """A cloning reference. ``source="file"``: ``path`` (relative to the test-set folder);
    ``source="catalog"``: the first utterance (by id) of ``speaker`` in ``dataset``'s
    ``split_role`` lasting ``min_s``..``max_s`` seconds (resolved once per run)."""

    name: str
    speaker: str  # "<dataset>:<speaker>", as in token shards
    source: str
    path: str | None = None
    text: str | None = None
    accent: str = "us"
    gender: str = "unknown"
    dataset: str | None = None
    split_role: str | None = None
    min_s: float = 6.0
    max_s: float = 15.0


@dataclass(frozen=True)
class EvalItem:
    """One generation to score: ``text`` in ``emotion``, by built-in ``voice`` or cloned
    from ``reference`` (a :class:`Reference` name); ``accent`` drives WER normalization."""

    item_id: str
    kind: str
    text: str
    sentence_id: str
    emotion: str
    accent: str
    voice: str | None = None
    reference: str | None = None

    @property
    def seed_offset(self) -> int:
        """A stable per-item number (crc32 of the id): adding items never changes others' seeds."""
        return zlib.crc32(self.item_id.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class TestSet:
    version: int
    profile: str
    items: tuple[EvalItem, ...]
    references: dict[str, Reference]
    root: Path  # folder that file references are relative to

    __test__ = False

    @classmethod
    def from_dict(cls, data: Mapping, profile: str, root: str | os.PathLike, where: str = "test set") -> "TestSet":
        """Validate and build from the JSON structure of ``testset.json``."""
        for key in ("version", "sentences", "references", "profiles"):
            if key not in data:
                raise TestSetError(f"{where}: missing key {key!r}")
        if profile not in data["profiles"]:
            raise TestSetError(f"{where}: no items for profile {profile!r}; has {sorted(data['profiles'])}")
        sentences = data["sentences"]
        refs = {}
        for name, r in data["references"].items():
            if r.get("source") not in ("file", "catalog"):
                raise TestSetError(f"{where}: reference {name!r} has source {r.get('source')!r}; expected 'file' or 'catalog'")
            if r["source"] == "file" and not r.get("path"):
                raise TestSetError(f"{where}: file reference {name!r} has no path")
            if r["source"] == "catalog" and not (r.get("dataset") and r.get("split_role")):
                raise TestSetError(f"{where}: catalog reference {name!r} needs dataset and split_role")
            if ":" not in str(r.get("speaker", "")):
                raise TestSetError(f"{where}: reference {name!r} speaker must be '<dataset>:<speaker>', got {r.get('speaker')!r}")
            fields = {k: r[k] for k in ("path", "text", "accent", "gender", "dataset", "split_role", "min_s", "max_s")
                      if k in r and r[k] is not None}
            refs[name] = Reference(name=name, speaker=r["speaker"], source=r["source"], **fields)
        items, seen = [], set()
        for i, it in enumerate(data["profiles"][profile]):
            at = f"{where}: {profile} item {i} ({it.get('id')!r})"
            iid = it.get("id")
            if not iid or not re.fullmatch(r"[A-Za-z0-9_.\-]+", iid):
                raise TestSetError(f"{at}: id must be non-empty letters, digits, '_', '-', '.' (it names files)")
            if iid in seen:
                raise TestSetError(f"{at}: duplicate id")
            seen.add(iid)
            kind = it.get("kind")
            if kind not in ITEM_KINDS:
                raise TestSetError(f"{at}: kind {kind!r}; expected one of {ITEM_KINDS}")
            if it.get("sentence") not in sentences:
                raise TestSetError(f"{at}: unknown sentence {it.get('sentence')!r}")
            if it.get("emotion") not in SEED_PROSODY:
                raise TestSetError(f"{at}: emotion {it.get('emotion')!r}; expected one of {list(SEED_PROSODY)}")
            if it.get("accent") not in ("us", "uk"):
                raise TestSetError(f"{at}: accent {it.get('accent')!r}; expected 'us' or 'uk'")
            if kind == "voice" and it.get("voice") not in VOICES:
                raise TestSetError(f"{at}: voice {it.get('voice')!r}; expected one of {VOICES}")
            if kind == "clone" and it.get("reference") not in refs:
                raise TestSetError(f"{at}: reference {it.get('reference')!r} is not in 'references'")
            items.append(EvalItem(item_id=iid, kind=kind, text=sentences[it["sentence"]], sentence_id=it["sentence"],
                                  emotion=it["emotion"], accent=it["accent"],
                                  voice=it.get("voice") if kind == "voice" else None,
                                  reference=it.get("reference") if kind == "clone" else None))
        if not items:
            raise TestSetError(f"{where}: profile {profile!r} has no items")
        used = {it.reference for it in items if it.reference}
        return cls(version=int(data["version"]), profile=profile, items=tuple(items),
                   references={k: v for k, v in refs.items() if k in used}, root=Path(root))

    @property
    def voices(self) -> list[str]:
        return sorted({it.voice for it in self.items if it.voice})

    @property
    def emotions(self) -> list[str]:
        return sorted({it.emotion for it in self.items})

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([asdict(it) for it in self.items]).set_index("item_id")


def load_testset(profile: str, path: str | os.PathLike | None = None) -> TestSet:
    """The committed test set's items for ``profile`` (``"colab"`` or ``"tiny"``)."""
    path = Path(path) if path is not None else EVAL_ASSETS_DIR / TESTSET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"evaluation test set not found: {path} (make it with scripts/make_eval_assets.py)")
    data = json.loads(path.read_text(encoding="utf-8"))
    ts = TestSet.from_dict(data, profile, path.parent, where=str(path))
    for ref in ts.references.values():
        if ref.source == "file" and not (ts.root / ref.path).is_file():
            raise TestSetError(f"{path}: reference {ref.name!r} file {ts.root / ref.path} does not exist")
    return ts


def training_index(tokens_dir: str | os.PathLike) -> tuple[set[str], set[str]]:
    """(speakers, normalized texts) of every utterance in the run's token shards.

    Reads only the ``speaker`` and ``text`` columns (the codes are most of a shard's bytes)."""
    import pyarrow.parquet as pq

    from ..data.shards import list_shards

    shards = list_shards(tokens_dir)
    if not shards:
        raise FileNotFoundError(f"no token shards (shard-NNNNN.parquet) in {tokens_dir}; run 02_tokenize first")
    speakers, texts = set(), set()
    for p in shards:
        t = pq.read_table(p, columns=["speaker", "text"]).to_pydict()
        speakers.update(t["speaker"])
        texts.update(wer_normalize(x) for x in t["text"] if x)
    return speakers, texts


def check_held_out(testset: TestSet, tokens_dir: str | os.PathLike) -> dict:
    """Refuse (:class:`HeldOutError`) if a cloning reference speaker or a test sentence is in
    the training shards. Returns counts for display."""
    speakers, texts = training_index(tokens_dir)
    seen_speakers = sorted({r.speaker for r in testset.references.values()} & speakers)
    if seen_speakers:
        raise HeldOutError(f"cloning reference speakers {seen_speakers} occur in the training shards in {tokens_dir}; "
                           f"a cloning test must use unseen speakers: pick others in {TESTSET_FILE}")
    seen_texts = sorted({it.sentence_id for it in testset.items if wer_normalize(it.text, it.accent) in texts
                         or wer_normalize(it.text) in texts})
    if seen_texts:
        raise HeldOutError(f"test sentences {seen_texts} occur in the training shards in {tokens_dir}; "
                           f"test sentences must be held out")
    return {"training_speakers": len(speakers), "training_texts": len(texts),
            "reference_speakers_checked": len(testset.references),
            "sentences_checked": len({it.sentence_id for it in testset.items})}


# ============================================================================ references
@dataclass
class ResolvedReference:
    """A reference clip ready to use: float32 ``(n,)`` at ``sample_rate`` plus where it came from."""

    reference: Reference
    wav: np.ndarray = field(repr=False)
    sample_rate: int
    utterance_id: str
    text: str

    @property
    def seconds(self) -> float:
        return len(self.wav) / self.sample_rate


def _pick_catalog_references(refs: Sequence[Reference], rows: Iterable, keep: int = 8) -> dict[str, tuple]:
    """Apply the fixed rule to common rows: per reference speaker, the first utterance in
    utterance-id order lasting ``min_s``..``max_s``. Returns name -> (wav, sr, utt_id, text)."""
    by_speaker = {r.speaker: r for r in refs}
    cands: dict[str, list] = {r.speaker: [] for r in refs}  # per speaker: the `keep` smallest ids, sorted
    for row in rows:
        if not isinstance(row, Mapping) or row.get("speaker") not in by_speaker:
            continue  # other speakers, and Rejected records of the catalog's own filters
        lst = cands[row["speaker"]]
        bisect.insort(lst, (row["utterance_id"], row["text"], row["audio"]), key=lambda e: e[0])
        del lst[keep:]  # bounded memory: a speaker has ~100 utterances with audio bytes
    out = {}
    for spk, ref in by_speaker.items():
        seen = []
        for utt, text, audio_field in cands[spk]:
            wav, sr = au.decode_audio_field(audio_field)
            dur = len(wav) / sr
            seen.append(f"{utt} ({dur:.1f} s)")
            if ref.min_s <= dur <= ref.max_s:
                out[ref.name] = (wav, sr, utt, text)
                break
        if ref.name not in out:
            raise TestSetError(f"reference {ref.name!r}: no utterance of {spk} in {ref.dataset}/{ref.split_role} lasts "
                               f"{ref.min_s}-{ref.max_s} s among the first {keep} by id: {seen or 'speaker not found'}")
    return out


def resolve_references(testset: TestSet, out_dir: str | os.PathLike,
                       open_rows: Callable[[str, str], Iterable] | None = None) -> dict[str, ResolvedReference]:
    """Load every cloning reference of ``testset``; catalog references are chosen once and
    cached in ``<out_dir>/references/`` (FLAC + ``references.json``), so reruns use the same clip.

    ``open_rows(dataset, split_role)`` yields common rows (default:
    ``helpers.data.catalog.open_dataset`` streamed + ``iter_common``)."""
    out_dir = Path(out_dir)
    cache_dir = out_dir / "references"
    index_path = cache_dir / "references.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    resolved: dict[str, ResolvedReference] = {}
    todo: dict[tuple[str, str], list[Reference]] = {}
    for name, ref in testset.references.items():
        if ref.source == "file":
            wav, sr = au.load_audio(testset.root / ref.path, target_sr=None)
            resolved[name] = ResolvedReference(ref, wav, sr, f"file:{ref.path}", ref.text or "")
        elif name in index and (cache_dir / index[name]["file"]).is_file():
            wav, sr = au.load_audio(cache_dir / index[name]["file"], target_sr=None)
            resolved[name] = ResolvedReference(ref, wav, sr, index[name]["utterance_id"], index[name]["text"])
        else:
            todo.setdefault((ref.dataset, ref.split_role), []).append(ref)
    if todo:
        import soundfile as sf

        if open_rows is None:

            def open_rows(dataset, split_role):
                return catalog.iter_common(dataset, catalog.open_dataset(dataset, split_role, streaming=True))
        cache_dir.mkdir(parents=True, exist_ok=True)
        for (dataset, role), refs in todo.items():
            picked = _pick_catalog_references(refs, open_rows(dataset, role))
            for ref in refs:
                wav, sr, utt, text = picked[ref.name]
                fname = f"{ref.name}.flac"
                tmp = cache_dir / f".{fname}.tmp"
                sf.write(tmp, np.clip(wav, -1, 1), sr, format="FLAC", subtype="PCM_16")
                os.replace(tmp, cache_dir / fname)
                index[ref.name] = {"file": fname, "utterance_id": utt, "text": text, "speaker": ref.speaker,
                                   "seconds": round(len(wav) / sr, 3)}
                resolved[ref.name] = ResolvedReference(ref, wav, sr, utt, text)
        _atomic_write(index_path, json.dumps(index, indent=1))
    return resolved


def references_frame(refs: Mapping[str, ResolvedReference]):
    import pandas as pd

    return pd.DataFrame([{"reference": n, "speaker": r.reference.speaker, "utterance_id": r.utterance_id,
                          "seconds": round(r.seconds, 2), "text": r.text} for n, r in refs.items()])


# ============================================================================ metrics
# The per-clip metrics live in helpers.evaluate.clip_metrics (imported above); re-exported here.

# ============================================================================ runner
@dataclass
class Judges:
    """The three judge models (see :mod:`helpers.evaluate.judges`)."""

    asr: object
    speaker: object
    mos: object

    def names(self) -> dict[str, str]:
        return {"asr": self.asr.name, "speaker": self.speaker.name, "mos": self.mos.name}


def load_judges(profile, asr: str | None = None, speaker: str | None = None, mos: str | None = None,
                device: str | None = None) -> Judges:
    """The profile's judge models (``eval_asr_model`` ...), each overridable by name."""

    return Judges(asr=em.load_asr(asr or profile.eval_asr_model, device=device),
                  speaker=em.load_speaker_encoder(speaker or profile.eval_speaker_model, device=device),
                  mos=em.load_mos_predictor(mos or profile.eval_mos_model, device=device))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_safe(v):
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _synth_kwargs(item: EvalItem, refs: Mapping[str, ResolvedReference], seed: int) -> dict:
    prompt = None
    if item.kind == "clone":
        r = refs[item.reference]
        prompt = (r.wav, r.sample_rate)
    return {"speaker": item.voice, "emotion": item.emotion, "audio_prompt": prompt, "seed": seed}


def time_to_first_audio(synth, item: EvalItem, refs: Mapping[str, ResolvedReference], seed: int) -> float:
    """Seconds from calling ``synth.stream(...)`` until its first non-empty chunk."""
    t0 = time.perf_counter()
    chunks = iter(synth.stream(item.text, **_synth_kwargs(item, refs, seed)))
    try:
        for chunk in chunks:
            if chunk is not None and np.asarray(chunk).size:
                return time.perf_counter() - t0
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stop generating: only the first chunk is timed
    raise RuntimeError(f"item {item.item_id}: stream() yielded no audio")


def score_item(item: EvalItem, wav: np.ndarray, sr: int, judges: Judges,
               refs: Mapping[str, ResolvedReference]) -> dict:
    """Every per-item metric of one generated clip: WER/CER and the WER's insertion, deletion
    and substitution rates, MOS, SIM for clones, prosody, duration against the expected one and
    whether the audio loops (:mod:`helpers.evaluate.stability`)."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    hyp = judges.asr.transcribe(wav, sr)
    eb = error_breakdown(item.text, hyp, lambda t: wer_normalize(t, item.accent))
    row = {"hypothesis": hyp, **error_rates(item.text, hyp, item.accent),
           "ins": eb["ins"], "del": eb["del"], "sub": eb["sub"], "mos": float(judges.mos.score(wav, sr))}
    if item.kind == "clone":
        r = refs[item.reference]
        row["sim"] = speaker_similarity(judges.speaker, wav, sr, r.wav, r.sample_rate)
    else:
        row["sim"] = float("nan")
    row.update(prosody(wav, sr, item.text))
    row["duration_ratio"] = (wav.size / sr) / expected_seconds(item.text)
    row["audio_loop"] = audio_loop(wav, sr) is not None
    return row


def evaluate(testset: TestSet, synth, out_dir: str | os.PathLike, judges: Judges,
             references: Mapping[str, ResolvedReference] | None = None, *, seed: int = 1234,
             ttfa_items: int = 3, progress: bool = True):
    """Generate and score every item of ``testset``; returns the per-item table (pandas).

    ``synth``: ``sample_rate`` and ``generate(text, speaker=, emotion=, audio_prompt=, seed=)``
    returning float ``(n,)`` at ``sample_rate`` (``audio_prompt`` is ``(wav, sr)`` for clones,
    else None); with ``ttfa_items > 0`` also ``stream(...)`` (same arguments) for TTFA on the
    first ``ttfa_items`` items. Item ``i`` uses seed ``seed + crc32(item_id)`` so results do
    not depend on item order. Each scored item is written to ``items/<id>.json`` and its clip
    to ``clips/<id>.wav``; a rerun loads those instead of generating again. Where ``generate``
    takes ``return_result`` the chunks' stop reasons are kept (``stop_reasons``,
    ``hit_length_guard``, ``hit_loop_guard``; None where the synthesizer cannot say).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    refs = dict(references or {})
    missing = sorted({it.reference for it in testset.items if it.reference} - set(refs))
    if missing:
        raise ValueError(f"references {missing} are not resolved; call resolve_references(testset, out_dir) first")
    sr = int(synth.sample_rate)
    rows = []
    for n, item in enumerate(tqdm(testset.items, desc="evaluate", disable=not progress)):
        item_json = out_dir / "items" / f"{item.item_id}.json"
        clip = out_dir / "clips" / f"{item.item_id}.wav"
        if item_json.is_file() and clip.is_file():
            rows.append(json.loads(item_json.read_text(encoding="utf-8")))
            continue
        item_seed = seed + item.seed_offset
        wav, reasons, gen_s = synthesize(synth, item.text, **_synth_kwargs(item, refs, item_seed))
        if wav.size == 0:
            raise RuntimeError(f"item {item.item_id}: the synthesizer returned no audio")
        ttfa = time_to_first_audio(synth, item, refs, item_seed) if n < ttfa_items else float("nan")
        au.save_wav(clip, wav, sr)
        row = {**asdict(item), "seed": item_seed, "audio_s": wav.size / sr, "gen_s": gen_s,
               "rtf": gen_s / (wav.size / sr), "ttfa_s": ttfa, "clip": f"clips/{item.item_id}.wav",
               "stop_reasons": None if reasons is None else ",".join(reasons),
               "hit_length_guard": None if reasons is None else "length" in reasons,
               "hit_loop_guard": None if reasons is None else "loop" in reasons}
        row.update(score_item(item, wav, sr, judges, refs))
        row = {k: _json_safe(v) for k, v in row.items()}
        _atomic_write(item_json, json.dumps(row, indent=1))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("wer", "cer", "ins", "del", "sub", "mos", "sim", "f0_hz", "level_db", "speech_s", "chars_per_s",
                "ttfa_s", "rtf", "duration_ratio"):
        # items scored by an older version lack the newer columns: unknown, not zero
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float) if col in df else float("nan")
    return df


def codec_ceiling(codec, references: Mapping[str, ResolvedReference], judges: Judges | None = None):
    """Ground truth through SNAC: every reference clip (real held-out speech) encoded and
    decoded by ``codec``; one row each with PESQ, STOI and log-mel distance against the
    original and, with ``judges``, WER of the reconstruction against the clip's transcript
    (where it has one), SIM of reconstruction vs original and MOS of the reconstruction.
    This is the best any audio the model makes through this codec could score: a ceiling,
    never a measurement of the model."""
    import pandas as pd

    rows = []
    for n, r in references.items():
        ref, rec = codec_round_trip(codec, r.wav, r.sample_rate)
        row = {"reference": n, "speaker": r.reference.speaker, "seconds": round(r.seconds, 2),
               **reconstruction_quality(ref, rec, codec.sample_rate)}
        if judges is not None:
            text = r.text or ""
            row["wer"] = error_rates(text, judges.asr.transcribe(rec, codec.sample_rate),
                                     r.reference.accent)["wer"] if wer_normalize(text) else float("nan")
            row["sim"] = speaker_similarity(judges.speaker, rec, codec.sample_rate, ref, codec.sample_rate)
            row["mos"] = float(judges.mos.score(rec, codec.sample_rate))
        rows.append(row)
    if not rows:
        raise ValueError("no reference clips to measure the codec on")
    return pd.DataFrame(rows)


# ============================================================================ report
# What a number was measured on. Only MODEL_OUTPUT numbers can pass or fail a target.
MODEL_OUTPUT = "model output"
CODEC_CEILING = "ground truth through SNAC"
GROUND_TRUTH = "ground truth"
NOT_MEASURED = "not measured"
CEILING_LABEL = "Ground truth through SNAC (ceiling)"
# Emotion control is always judged by prosody against the seed's §12 table; where an emotion
# classifier can run (Colab: helpers.evaluate.judges.SUPERB_ER) 07 also reports whether the
# requested emotion is heard. Offline there is no classifier (none on PyPI ships weights).
EMOTION_METHOD = "prosody proxy: median F0, speaking rate and level vs the same voice's neutral items"


def summarize(items, codec=None) -> dict[str, float]:
    """Headline numbers of the model's output: mean per-utterance WER/CER (+ pooled) and its
    insertion/deletion/substitution rates, mean SIM over clones, mean MOS, RTF = total
    generation s / total audio s, median TTFA, stability rates. PESQ/STOI need a reference
    recording of the same sentence in the same voice, which the project test set does not
    have: they are NaN here (``codec`` is accepted for old callers and ignored: its PESQ is
    the codec's, see :func:`ceiling_summary`)."""
    pooled = pooled_error_rates(list(items["text"]), list(items["hypothesis"].fillna("")), list(items["accent"]))
    clones = items[items["kind"] == "clone"]
    ttfa = items["ttfa_s"].dropna()

    def rate(col):
        known = [v for v in items[col] if v is not None and v == v] if col in items else []
        return float(np.mean([bool(v) for v in known])) if known else float("nan")

    out = {
        "n_items": int(len(items)),
        "wer": float(items["wer"].mean()), "cer": float(items["cer"].mean()),
        "wer_pooled": pooled["wer"], "cer_pooled": pooled["cer"],
        "sim": float(clones["sim"].mean()) if len(clones) else float("nan"),
        "mos": float(items["mos"].mean()),
        "pesq": float("nan"), "stoi": float("nan"),
        "rtf": float(items["gen_s"].sum() / items["audio_s"].sum()),
        "ttfa_s": float(ttfa.median()) if len(ttfa) else float("nan"),
    }
    for k in ("ins", "del", "sub", "duration_ratio"):
        out[k] = float(items[k].mean()) if k in items else float("nan")
    out["failure_to_stop_rate"] = rate("hit_length_guard")
    loops = [c for c in ("hit_loop_guard", "audio_loop") if c in items]
    out["loop_rate"] = float(np.mean([any(flag(items[c].iloc[i]) for c in loops) for i in range(len(items))])) \
        if loops else float("nan")
    return out


def ceiling_summary(codec) -> dict[str, float]:
    """Means over :func:`codec_ceiling`'s rows (WER/SIM/MOS only when it was given judges)."""
    return {m: float(codec[m].mean()) if m in codec else float("nan") for m in ("wer", "sim", "mos", "pesq", "stoi")}


def provenance(metric: str, summary: Mapping[str, float]) -> str:
    """What ``summary[metric]`` was measured on: :data:`MODEL_OUTPUT`, or
    :data:`NOT_MEASURED` where there is no value (e.g. PESQ without a matching reference)."""
    v = summary.get(metric)
    return MODEL_OUTPUT if v is not None and np.isfinite(v) else NOT_MEASURED


def passes(metric: str, value: float | None, measured_on: str = MODEL_OUTPUT) -> bool | None:
    """Whether ``value`` meets the seed's target for ``metric``; None if there is no value or
    it was not measured on the model's output (a codec or ground-truth number never passes)."""
    if measured_on != MODEL_OUTPUT or value is None or not np.isfinite(value):
        return None
    op, target = TARGETS[metric]
    return value >= target if op == ">=" else value <= target


def _fmt(metric, v):
    if v is None or not np.isfinite(v):
        return "N/A"
    return f"{v * 100:.1f}%" if metric == "wer" else (f"{v:.2f}x" if metric == "rtf" else f"{v:.2f}")


def report_rows(summary: Mapping[str, float], ceiling: Mapping[str, float] | None = None) -> list[dict]:
    """One record per target metric: the model's value, what it was measured on, whether it
    passes (model output only) and the ceiling's value (ground truth through SNAC)."""
    rows = []
    for m in METRICS:
        on = provenance(m, summary)
        v = summary.get(m)
        rows.append({"metric": m, "value": v if on == MODEL_OUTPUT else None, "measured_on": on,
                     "pass": passes(m, v, on),
                     "ceiling": None if ceiling is None or m == "rtf" else ceiling.get(m),
                     "ceiling_measured_on": None if ceiling is None or m == "rtf" else CODEC_CEILING})
    return rows


def targets_table(summary: Mapping[str, float], model_name: str = "This model",
                  ceiling: Mapping[str, float] | None = None, human: Mapping[str, float] | None = None,
                  judges: Mapping[str, str] | None = None):
    """Seed §14's table: the anchors, the seed's target (labelled as the seed's), the same judges on
    human recordings (``human``: :func:`helpers.evaluate.calibration.human_summary`) and the rule that
    passes, this run's model column with what each value was measured on, the ground-truth-through-SNAC
    ceiling, and pass/fail (model output only). With ``human``, a judge-dependent metric (SIM, MOS) passes
    relative to the human figure (:data:`helpers.evaluate.calibration.RELATIVE_RULES`)."""
    import pandas as pd

    judge_of = {"sim": (judges or {}).get("speaker"), "mos": (judges or {}).get("mos"), "wer": (judges or {}).get("asr")}
    rows = []
    for r in report_rows(summary, ceiling):
        m = r["metric"]
        op, target = TARGETS[m]
        row = {"metric": METRIC_LABELS[m]}
        row.update({name: _fmt(m, vals[m]) for name, vals in ANCHORS.items()})
        row["seed target (seed's judges)"] = f"{'≥' if op == '>=' else '≤'} {_fmt(m, target)}"
        if human is not None:
            row[calib.HUMAN_LABEL] = _fmt(m, human.get(m)) if m in ("mos", "wer", "sim") else "—"
            row["pass rule"] = calib.rule_text(m, judge_of.get(m))
            rel = calib.relative_pass(m, r["value"] if r["measured_on"] == MODEL_OUTPUT else None, human.get(m))
            if rel is not None:
                r = {**r, "pass": rel}
        row[model_name] = _fmt(m, r["value"])
        row["measured on"] = r["measured_on"] if m != "pesq" or r["value"] is not None else \
            "not measured: no recording of the same sentence in the same voice"
        if ceiling is not None:
            row[CEILING_LABEL] = "—" if m == "rtf" else _fmt(m, r["ceiling"])
        row["pass"] = "—" if r["pass"] is None else ("✅ pass" if r["pass"] else "❌ fail")
        rows.append(row)
    return pd.DataFrame(rows).set_index("metric")


def write_report(items, codec, out_dir: str | os.PathLike, *, judges: Mapping[str, str] | None = None,
                 testset: TestSet | None = None, model_name: str = "This model",
                 tables: Mapping[str, object] | None = None, sections: Mapping[str, object] | None = None,
                 human: Mapping[str, float] | None = None) -> dict[str, Path]:
    """Write every table, ``report.json``, the three figures and ``listening.html`` into
    ``out_dir``; returns name -> path.

    ``codec``: :func:`codec_ceiling`'s table (the ceiling row). ``tables``: more named tables
    (stability, long-form, dialogue, protocols, best-of-N) written as ``<name>.csv``;
    ``sections``: more JSON-able entries for ``report.json``. In ``report.json``, ``rows``
    says for every target metric what it was measured on; ``pass`` holds a value only for
    numbers measured on the model's output (relative to ``human``, the judges on human recordings, for the
    judge-dependent metrics: see :func:`targets_table`)."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    summary = summarize(items)
    ceiling = ceiling_summary(codec)
    extra = dict(tables or {})
    tables = {
        "items": items, "codec": codec, "targets": targets_table(summary, model_name, ceiling, human, judges),
        "per_voice": breakdown(items[items["kind"] == "voice"], "voice"), "per_emotion": breakdown(items, "emotion"),
        "per_reference": breakdown(items[items["kind"] == "clone"], "reference"),
        "emotion_control": emotion_control(items),
    }
    clash = sorted(set(extra) & set(tables))
    if clash:
        raise ValueError(f"extra tables {clash} would overwrite the report's own tables")
    paths: dict[str, Path] = {}
    for name, df in {**tables, **extra}.items():
        paths[name] = out_dir / f"{name}.csv"
        _atomic_write(paths[name], df.to_csv(index=name in ("targets", "per_voice", "per_emotion", "per_reference")))
    rows = report_rows(summary, ceiling)
    report = {
        "summary": {k: _json_safe(v) for k, v in summary.items()},
        "rows": [{k: _json_safe(v) for k, v in r.items()} for r in rows],
        "pass": {r["metric"]: (r["pass"] if calib.relative_pass(r["metric"], r["value"], (human or {}).get(r["metric"]))
                               is None else calib.relative_pass(r["metric"], r["value"], human[r["metric"]]))
                 for r in rows},
        "human": None if human is None else {"measured_on": calib.HUMAN_LABEL, "rules": calib.RELATIVE_RULES,
                                             **{k: _json_safe(v) for k, v in human.items()}},
        "ceiling": {"measured_on": CODEC_CEILING, **{k: _json_safe(v) for k, v in ceiling.items()}},
        "emotion_method": EMOTION_METHOD,
        "targets": {m: {"op": op, "value": v} for m, (op, v) in TARGETS.items()},
        "anchors": ANCHORS, "judges": dict(judges or {}),
        "testset": None if testset is None else {"version": testset.version, "profile": testset.profile,
                                                 "n_items": len(testset.items)},
        "emotion_control": json.loads(tables["emotion_control"].to_json(orient="records")),
        **dict(sections or {}),
    }
    paths["report"] = out_dir / "report.json"
    _atomic_write(paths["report"], json.dumps(report, indent=1, ensure_ascii=False))
    for name, plot in (("wer_per_voice", plot_wer_per_voice), ("sim_distribution", plot_sim_distribution),
                       ("mos_per_emotion", plot_mos_per_emotion)):
        fig = plot(items)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        paths[name] = out_dir / "figures" / f"{name}.png"
        tmp = paths[name].parent / f".{paths[name].name}.tmp"
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, paths[name])
    paths["listening"] = out_dir / "listening.html"
    _atomic_write(paths["listening"], "<html><body>" + listening_html(items, out_dir, embed=False) + "</body></html>")
    return paths


def add_to_report(out_dir: str | os.PathLike, *, tables: Mapping[str, object] | None = None,
                  sections: Mapping[str, object] | None = None) -> dict[str, Path]:
    """Add tables (``<name>.csv``) and ``report.json`` entries to a report that
    :func:`write_report` already wrote (stability, long form, dialogue, protocols, best-of-N).
    Refuses to replace the core tables or entries. Returns name -> path of what it wrote."""
    out_dir = Path(out_dir)
    report_path = out_dir / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path} does not exist: call write_report first")
    core = {"items", "codec", "targets", "per_voice", "per_emotion", "per_reference", "emotion_control"}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    clash = sorted(set(tables or {}) & core) + sorted(k for k in (sections or {})
                                                      if k in ("summary", "rows", "pass", "ceiling", "targets"))
    if clash:
        raise ValueError(f"{clash} belong to the core report and cannot be replaced")
    paths = {}
    for name, df in (tables or {}).items():
        paths[name] = out_dir / f"{name}.csv"
        _atomic_write(paths[name], df.to_csv(index=False))
    report.update({k: _json_clean(v) for k, v in (sections or {}).items()})
    _atomic_write(report_path, json.dumps(report, indent=1, ensure_ascii=False))
    paths["report"] = report_path
    return paths


def _json_clean(v):
    """Nested dicts/lists/DataFrames -> JSON-able values (NaN -> None)."""
    if hasattr(v, "to_dict") and hasattr(v, "columns"):
        return json.loads(v.to_json(orient="records"))
    if isinstance(v, Mapping):
        return {str(k): _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return _json_safe(v)


def best_of_rows(testset_items, items, synth, judge, *, n: int, seed: int = 1234, references=None):
    """07's best-of-N row: re-generate ``testset_items`` (``helpers.evaluate.report.EvalItem``) with
    ``candidates=n`` and compare with the single-candidate results already in ``items`` (the
    per-item table of ``evaluate``; candidate 0 *is* that clip). Returns ``(table, per_item)``:
    two rows ("1 candidate", "best of n") with mean WER/CER and RTF (all candidates' generation
    and judging time / audio seconds), and the per-item picks."""
    import pandas as pd


    by_id = items.set_index("item_id")
    picks = []
    for it in testset_items:
        res = synth.generate(it.text, candidates=n, judge=judge, return_result=True,
                             **_synth_kwargs(it, references or {}, seed + it.seed_offset))
        best = res.candidates[res.chosen]
        picks.append({"item_id": it.item_id, "chosen": res.chosen, "chosen_seed": best.seed,
                      **{f"cand{c.index}_cer": c.cer for c in res.candidates},
                      **{k: v for k, v in error_rates(it.text, best.hypothesis, it.accent).items()},
                      "seconds": res.seconds, "audio_s": res.duration})
    per_item = pd.DataFrame(picks)
    single = by_id.loc[per_item["item_id"]]
    table = pd.DataFrame([
        {"row": "1 candidate", "measured_on": "model output", "n_items": len(per_item), "candidates": 1,
         "wer": float(single["wer"].mean()), "cer": float(single["cer"].mean()),
         "rtf": float(single["gen_s"].sum() / single["audio_s"].sum())},
        {"row": f"best of {n}", "measured_on": "model output", "n_items": len(per_item), "candidates": n,
         "wer": float(per_item["wer"].mean()), "cer": float(per_item["cer"].mean()),
         "rtf": float(per_item["seconds"].sum() / per_item["audio_s"].sum())},
    ])
    return table, per_item
