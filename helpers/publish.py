"""Publishing (notebook 08): export the final model, write its model card, upload it.

Three steps, each re-runnable on its own:

1. :func:`export_model` — the newest finished stage (4, else 3, 2, 1) becomes a
   self-contained folder ``RunPaths.export``::

       model.safetensors (or shards + index)  weights, in ``dtype`` (bf16 for the Hub)
       config.json                            plain LlamaForCausalLM config
       tokenizer.json, tokenizer_config.json  the tokenizer with every contract token
       generation_config.json                 stops at <|audio_end|>, pads with <|pad|>,
                                              the sampling defaults of helpers.generation
       optimum_tts.json                       codec ("snac_model", read by OptimumTTS.from_pretrained),
                                              token contract, voices, emotions (:data:`CONTRACT_FILE`)
       NOTICE                                 Llama attribution (Llama derivatives only)
       README.md                              the model card (:func:`write_model_card`)
       samples/*.wav                          demo clips, when the notebook adds them

   Nothing else: no optimizer states, no checkpoints, no run-directory paths (keys
   such as ``_name_or_path`` are removed and every text file is scanned for the run
   directory, Drive and home paths and the HF token before the folder is accepted).
   The folder is built on local disk, checked, then copied into the run directory
   atomically; a rerun with unchanged weights skips the work.

2. :func:`write_model_card` — ``README.md`` built only from the run's records:
   the profile's base model and its licence, the preprocessing report (datasets and
   their licences from :mod:`helpers.catalog`), the stage folders (config, metrics
   log, completion markers), the evaluation report of 07 (or the words "not
   evaluated" when there is none: numbers are never invented), voices and emotions.

3. :func:`upload_export` — creates the Hub repo (private by default) and uploads
   exactly the files :func:`export_listing` lists. ``dry_run=True`` (the tiny
   profile's default) returns that listing without touching the network. The
   token comes from :func:`helpers.models.get_hf_token` (env ``HF_TOKEN`` or the
   Colab secret) and is never printed, logged or written; error messages are
   scrubbed of it. A missing token or a failed upload raises a clear error and
   leaves the export untouched for a retry.

Nothing here runs at import time.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .hub_access import (DEFAULT_MODEL_NAME, PublishAccessError, PublishTarget, check_repo_id,  # noqa: F401
                         default_repo_id, licence_name_warning, publish_target)
from .profiles import ASSETS_CORPUS, RANDOM_SNAC_24KHZ, TINY_LLAMA, RunPaths
from .tokens import (
    AUDIO_END, AUDIO_START, CODEBOOK_SIZE, DEFAULT_EMOTION, EMOTIONS, FRAME_SIZE, FRAME_SLOTS,
    N_CODEBOOKS, N_NEW_TOKENS, NONVERBALS, PAD, SPEAKER_END, SPEAKER_START, STRUCTURE_TOKENS,
    TEXT_END, TEXT_START, VOICES, TokenLayout, emotion_token, nonverbal_token, voice_token,
)

# ----------------------------------------------------------------------------- constants
# What OptimumTTS.from_pretrained reads besides the HF files (helpers.inference.INFERENCE_CONFIG:
# its "snac_model" names the codec); the rest of the file documents the token contract.
CONTRACT_FILE = "optimum_tts.json"
CONTRACT_FORMAT = "optimumllm-audio-contract"
CONTRACT_VERSION = 1
CARD_FILE = "README.md"  # the Hub shows README.md as the model card
NOTICE_FILE = "NOTICE"
SAMPLES_DIR = "samples"
MODEL_NAME = "OptimumLLM Audio 1.0"
SAMPLE_RATE = 24_000  # SNAC 24 kHz
MAX_AUDIO_SECONDS = 30.0  # longest training clip (seed §10): the generation config's default budget
MAX_REFERENCE_SECONDS = 30.0  # seed §12: 10-30 s reference clips; longer ones add little

# What may be in an export (anything else, e.g. optimizer.pt or a checkpoint, is refused).
_ALLOWED = (
    re.compile(r"^model(-\d{5}-of-\d{5})?\.safetensors$"),
    re.compile(r"^model\.safetensors\.index\.json$"),
    re.compile(r"^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map|"
               r"added_tokens|chat_template)\.json$"),
    re.compile(r"^chat_template\.jinja$"),
    re.compile(r"^" + re.escape(CONTRACT_FILE) + r"$"),
    re.compile(r"^(README\.md|NOTICE|LICENSE(\.txt)?|USE_POLICY\.md)$"),
    re.compile(r"^" + SAMPLES_DIR + r"/[A-Za-z0-9_.\-]+\.(wav|flac|mp3)$"),
)
_TEXT_SUFFIXES = {".json", ".md", ".txt", ".jinja", ""}
# Keys transformers may write that hold where a model was loaded from (a Drive path).
_PATH_KEYS = ("_name_or_path", "name_or_path", "_commit_hash")


class ExportError(RuntimeError):
    """The export folder is missing, incomplete, holds a file it must not, or leaks a path."""


class HubTokenError(RuntimeError):
    """No Hugging Face token was found for the upload."""


class UploadError(RuntimeError):
    """The Hub refused or the network failed; the export folder is untouched."""


# ----------------------------------------------------------------------------- licences
@dataclass(frozen=True)
class LicenceInfo:
    """Licence terms the export inherits from its base model."""

    hub_id: str  # the Hub's ``license:`` value
    name: str
    url: str
    built_with_llama: bool  # Llama 3.2 licence §1.b.i: display "Built with Llama"
    notice: str | None  # text of the NOTICE file the licence asks for, or None
    summary: str  # one paragraph for the card


LLAMA_32 = LicenceInfo(
    hub_id="llama3.2",
    name="Llama 3.2 Community License Agreement",
    url="https://www.llama.com/llama3_2/license/",
    built_with_llama=True,
    notice="Llama 3.2 is licensed under the Llama 3.2 Community License, "
           "Copyright © Meta Platforms, Inc. All Rights Reserved.\n",
    summary=(
        "This model is a derivative of Meta's Llama 3.2 and is distributed under the "
        "**Llama 3.2 Community License Agreement** (https://www.llama.com/llama3_2/license/). "
        "Use must comply with that licence and the Llama 3.2 Acceptable Use Policy "
        "(https://www.llama.com/llama3_2/use-policy/). Redistribution must include a copy of the "
        "licence and the attribution in `NOTICE`; products built with it must display "
        "\"Built with Llama\"; licensees with more than 700 million monthly active users need a "
        "separate licence from Meta."),
)
TINY_TEST_LICENCE = LicenceInfo(
    hub_id="apache-2.0",
    name="Apache License 2.0 (test model, no third-party weights)",
    url="https://www.apache.org/licenses/LICENSE-2.0",
    built_with_llama=False,
    notice=None,
    summary=(
        "Test model of the offline `tiny` profile: a 2-layer network with the LLaMA architecture, "
        "randomly initialised and trained on a tiny synthetic (espeak-ng) corpus. It contains no "
        "Meta Llama weights and no third-party speech, so no base-model licence applies."),
)


def base_model_licence(base_model: str) -> LicenceInfo:
    """The licence a model fine-tuned from ``base_model`` inherits.

    Llama 3.2 models (``meta-llama/Llama-3.2-*`` or a local copy whose folder name says
    Llama-3.2) carry the Llama 3.2 Community License; the tiny profile's random LLaMA
    carries none. Any other base raises ``ValueError``: a licence is looked up, not guessed.
    """
    name = str(base_model)
    if name == TINY_LLAMA:
        return TINY_TEST_LICENCE
    if re.search(r"llama[-_ ]?3\.2", name, re.IGNORECASE):
        return LLAMA_32
    raise ValueError(f"no licence known for base model {name!r}: this module knows Llama 3.2 "
                     f"(meta-llama/Llama-3.2-*) and {TINY_LLAMA!r}; add its terms to helpers.publish "
                     f"before publishing a derivative of it")


# ----------------------------------------------------------------------------- small utilities
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _md_cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of ``rows`` (dicts); ``columns`` default to the first row's keys."""
    if not rows:
        raise ValueError("md_table needs at least one row")
    cols = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_md_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- run records
def final_stage(paths: RunPaths, stage: int | None = None) -> tuple[int, Path]:
    """``(stage, model folder)`` of the newest finished stage (4, 3, 2, then 1), or of ``stage``.

    A stage counts as finished when its model folder has ``COMPLETE.json``. Raises
    ``FileNotFoundError`` naming the notebook to run when there is none.
    """
    from .models import COMPLETE_MARKER
    from .train import final_model_dir

    stages = (stage,) if stage is not None else (4, 3, 2, 1)
    for s in stages:
        folder = final_model_dir(paths, s)
        if (folder / COMPLETE_MARKER).is_file():
            return s, folder
    if stage is not None:
        raise FileNotFoundError(f"stage {stage} has no finished model at {final_model_dir(paths, stage)}; "
                                f"run its notebook to the end first")
    raise FileNotFoundError(f"no finished stage in {paths.root}: run 03_vocab_extension and the training "
                            f"notebooks 04-06 first")


def _marker(folder: Path) -> dict:
    from .models import read_complete_marker

    return read_complete_marker(folder)


def _source_fingerprint(marker: dict) -> str:
    """SHA-256 over the file list (names, sizes, hashes) of a stage's COMPLETE.json."""
    return _sha256_bytes(json.dumps(marker["files"], sort_keys=True).encode())


def read_voices(paths: RunPaths) -> dict:
    """The run's built-in voice selection (``voices.json`` of the newest stage that has one):
    ``{"assignments": {voice: speaker}, "unassigned": [...]}``; empty assignments if none."""
    from .train import VOICES_FILE

    for s in (4, 3, 2):
        f = paths.stage(s) / VOICES_FILE
        if f.is_file():
            d = json.loads(f.read_text())
            bad = [v for v in d.get("assignments", {}) if v not in VOICES]
            if bad:
                raise ValueError(f"{f}: unknown voices {bad}; built-in voices are {VOICES}")
            return {"assignments": dict(d.get("assignments", {})), "unassigned": list(d.get("unassigned", []))}
    return {"assignments": {}, "unassigned": list(VOICES)}


def voice_rows(paths: RunPaths) -> list[dict]:
    """One row per built-in voice: name, gender, accent, the corpus speaker it was trained on."""
    sel = read_voices(paths)
    rows = []
    for v in VOICES:
        gender, accent, _ = v.split("_")
        spk = sel["assignments"].get(v)
        rows.append({"voice": v, "gender": gender, "accent": {"us": "US English", "uk": "British English"}[accent],
                     "token": f"`{voice_token(v)}`", "trained on": spk or "not trained (no eligible speaker in the data)"})
    return rows


def _read_preprocess_report(paths: RunPaths) -> dict | None:
    from .preprocess import REPORT_FILE

    f = paths.preprocess / REPORT_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def dataset_rows(paths: RunPaths) -> list[dict]:
    """Datasets kept by preprocessing (01's report) with hours, Hub id and licence (catalog)."""
    from .catalog import get_spec

    report = _read_preprocess_report(paths)
    if report is None:
        return []
    rows = []
    for name, hours in sorted(report.get("hours_by_dataset", {}).items()):
        spec = get_spec(name)
        rows.append({"dataset": spec.title, "source": "bundled espeak-ng corpus" if spec.hub_id == ASSETS_CORPUS
                     else spec.hub_id, "hours kept": round(float(hours), 4), "licence": spec.licence,
                     "_hub_id": None if spec.hub_id == ASSETS_CORPUS else spec.hub_id})
    return rows


def emotion_rows(paths: RunPaths) -> list[dict]:
    """One row per emotion token with the hours of training speech that carried it."""
    report = _read_preprocess_report(paths) or {}
    hours = report.get("hours_by_emotion", {})
    rows = []
    for e in EMOTIONS:
        h = hours.get(e)
        rows.append({"emotion": e, "token": f"`{emotion_token(e)}`",
                     "hours of training speech": round(float(h), 4) if h else 0.0,
                     "learned": "yes" if h else "no data: the token has no trained effect"})
    return rows


def _hardware(*sources: dict) -> str | None:
    for d in sources:
        for k in ("hardware", "gpu", "device"):
            if d.get(k):
                return str(d[k])
    return None


def stage_rows(paths: RunPaths) -> list[dict]:
    """The training stages this run actually ran, from their records.

    Stage 1 from its COMPLETE.json; stages 2-4 from ``config.json`` (learning rate,
    data phase), the last row of ``metrics.csv`` (optimizer steps, tokens, wall time)
    and ``model/COMPLETE.json``. A stage with a metrics log but no final model is
    listed as unfinished; a stage that never started is left out. Hardware comes from
    the records when they hold it ("hardware"/"gpu"/"device" in the marker's metadata
    or the config's ``extra``), else it says "not recorded".
    """
    from .models import COMPLETE_MARKER
    from .train import CONFIG_FILE, FINAL_DIR, METRICS_FIELDS, METRICS_FILE, CsvLog

    rows = []
    s1 = paths.stage(1)
    if (s1 / COMPLETE_MARKER).is_file():
        meta = _marker(s1).get("metadata", {})
        secs = meta.get("seconds")
        rows.append({"stage": 1, "what": "vocabulary extension", "learning rate": None, "data phase": None,
                     "steps": 0, "tokens": 0, "hours": round(float(secs) / 3600, 4) if secs else None,
                     "hardware": _hardware(meta) or "not recorded", "status": "finished"})
    for s in (2, 3, 4):
        d = paths.stage(s)
        cfg_path, log = d / CONFIG_FILE, CsvLog(d / METRICS_FILE, METRICS_FIELDS)
        metrics = log.rows()
        final = d / FINAL_DIR / COMPLETE_MARKER
        if not (cfg_path.is_file() or metrics or final.is_file()):
            continue
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        meta = json.loads(final.read_text()).get("metadata", {}) if final.is_file() else {}
        last = metrics[-1] if metrics else {}
        rows.append({
            "stage": s, "what": {2: "pretraining", 3: "high-quality fine-tuning", 4: "speaker & emotion alignment"}[s],
            "learning rate": cfg.get("learning_rate"), "data phase": cfg.get("phase"),
            "steps": int(meta.get("step", last.get("step", 0)) or 0),
            "tokens": int(last["tokens"]) if last.get("tokens") else None,
            "hours": round(float(last["elapsed_s"]) / 3600, 4) if last.get("elapsed_s") else None,
            "hardware": _hardware(meta, cfg.get("extra", {})) or "not recorded",
            "status": "finished" if final.is_file() else f"unfinished (stopped at step {last.get('step', 0)})",
        })
    return rows


# Evaluation report of 07 (helpers.evaluation.write_report writes both into RunPaths.eval).
EVAL_TABLE_FILE = "targets.csv"  # seed §14's table with this run's column and pass/fail per metric
EVAL_REPORT_FILE = "report.json"  # summary, judges (ASR, speaker, MOS models), test set


def eval_table(paths: RunPaths) -> tuple[list[dict] | None, str]:
    """``(rows, source)`` of 07's evaluation table (``targets.csv``), or ``(None, reason)``.

    Rows are shown exactly as 07 wrote them; nothing is computed or rounded here.
    """
    import csv

    f = paths.eval / EVAL_TABLE_FILE
    if not f.is_file():
        return None, f"no evaluation table ({paths.eval.name}/{EVAL_TABLE_FILE}): 07_evaluate has not been run"
    with f.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None, f"{paths.eval.name}/{EVAL_TABLE_FILE} is empty"
    return rows, f"{paths.eval.name}/{EVAL_TABLE_FILE}"


def eval_context(paths: RunPaths) -> str:
    """One line about how 07 evaluated (judge models, test set) from ``report.json``; "" if absent."""
    f = paths.eval / EVAL_REPORT_FILE
    if not f.is_file():
        return ""
    rep = json.loads(f.read_text())
    bits = []
    if rep.get("judges"):
        bits.append("judges: " + ", ".join(f"{k} = `{v}`" for k, v in sorted(rep["judges"].items())))
    ts = rep.get("testset") or {}
    if ts:
        bits.append(f"test set: version {ts.get('version')}, {ts.get('n_items')} items ({ts.get('profile')} profile)")
    return "; ".join(bits)


# ----------------------------------------------------------------------------- contract config
def generation_defaults(tokenizer) -> dict:
    """Sampling defaults (:class:`helpers.generation.SamplingConfig`) and the stop/pad ids."""
    from .generation import DEFAULT_FRAMES_PER_SECOND, SamplingConfig

    layout = TokenLayout.from_tokenizer(tokenizer)
    s = SamplingConfig()
    max_frames = math.ceil(MAX_AUDIO_SECONDS * DEFAULT_FRAMES_PER_SECOND)
    return {
        "do_sample": True, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
        "repetition_penalty": s.repetition_penalty,
        "max_new_tokens": max_frames * FRAME_SIZE + 1,  # 30 s of frames + <|audio_end|>
        "eos_token_id": layout.audio_end_id, "pad_token_id": layout.pad_id,
        "bos_token_id": tokenizer.bos_token_id,
    }


def contract_config(tokenizer, *, base_model: str, codec_model: str, voices: dict, stage: int,
                    source_fingerprint: str, embedding_rows: int, coverage: dict | None = None) -> dict:
    """The dict written to :data:`CONTRACT_FILE`: everything beyond the HF files that
    ``OptimumTTS.from_pretrained`` needs (codec, token contract, voices, emotions, defaults).

    ``voices``: :func:`read_voices`'s dict. ``coverage``: :func:`helpers.coverage.model_record` of
    the run (minutes per voice and per emotion per stage, the trained emotions): inference refuses
    an emotion outside it and warns for a (voice, emotion) pair without minutes. Checks the
    tokenizer against the contract.
    """
    from .config import REFERENCE_MAX_S, REFERENCE_MIN_S
    from .generation import SamplingConfig

    layout = TokenLayout.from_tokenizer(tokenizer)
    if embedding_rows < layout.vocab_size:
        raise ValueError(f"the model has {embedding_rows} embedding rows, the tokenizer needs {layout.vocab_size}")
    s = SamplingConfig()
    return {
        "format": CONTRACT_FORMAT, "version": CONTRACT_VERSION, "model_name": MODEL_NAME,
        "base_model": str(base_model),
        "snac_model": str(codec_model),  # the key helpers.inference.OptimumTTS.from_pretrained reads
        "codec": {"model": str(codec_model), "sample_rate": SAMPLE_RATE, "n_codebooks": N_CODEBOOKS,
                  "codebook_size": CODEBOOK_SIZE},
        "tokens": {
            "base_vocab_size": layout.base_vocab_size, "audio_offset": layout.audio_offset,
            "n_new_tokens": N_NEW_TOKENS, "vocab_size": layout.vocab_size, "embedding_rows": int(embedding_rows),
            "frame_size": FRAME_SIZE, "frame_slots": list(FRAME_SLOTS),
            "audio_token_format": "<|snac{codebook}_{code}|> with codebook 1..3, code 0..4095",
            "structure": {t: layout.token_id(t) for t in STRUCTURE_TOKENS},
            "prompt": [f"<bos>", TEXT_START, "{text}", TEXT_END, "<|emotion:{emotion}|>", SPEAKER_START,
                       "<|speaker:{voice}|> or reference-clip frames", SPEAKER_END, AUDIO_START],
            "stop": AUDIO_END, "pad": PAD,
        },
        "emotions": list(EMOTIONS), "default_emotion": DEFAULT_EMOTION,
        "voices": list(VOICES),
        "trained_voices": {v: s_ for v, s_ in voices.get("assignments", {}).items()},
        "nonverbals": [nonverbal_token(n) for n in NONVERBALS],
        "sampling": {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
                     "repetition_penalty": s.repetition_penalty},
        # the bounds training drew reference lengths from; inference refuses shorter and crops longer clips
        "min_reference_seconds": REFERENCE_MIN_S, "max_reference_seconds": REFERENCE_MAX_S,
        "coverage": coverage,
        "source": {"stage": int(stage), "fingerprint": source_fingerprint},
    }


def read_contract_config(folder: str | os.PathLike, tokenizer=None) -> dict:
    """The parsed :data:`CONTRACT_FILE` of an export; with ``tokenizer``, checks its ids match.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the folder and what is wrong.
    """
    f = Path(folder) / CONTRACT_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{folder} has no {CONTRACT_FILE}: it is not an OptimumLLM Audio export "
                                f"(build one with helpers.publish.export_model)")
    cfg = json.loads(f.read_text())
    if cfg.get("format") != CONTRACT_FORMAT or cfg.get("version") != CONTRACT_VERSION:
        raise ValueError(f"{f}: format {cfg.get('format')!r} version {cfg.get('version')!r}; this code reads "
                         f"{CONTRACT_FORMAT!r} version {CONTRACT_VERSION}")
    missing = [k for k in ("snac_model", "codec", "tokens", "emotions", "voices", "sampling") if k not in cfg]
    if missing:
        raise ValueError(f"{f}: missing keys {missing}")
    if tokenizer is not None:
        layout = TokenLayout.from_tokenizer(tokenizer)
        if layout.base_vocab_size != cfg["tokens"]["base_vocab_size"]:
            raise ValueError(f"{f}: base_vocab_size {cfg['tokens']['base_vocab_size']} but the tokenizer's "
                             f"audio tokens start at {layout.base_vocab_size}")
    return cfg


# ----------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportFile:
    path: str  # relative, POSIX
    bytes: int


def export_listing(folder: str | os.PathLike) -> list[ExportFile]:
    """Every file of an export (what an upload sends), sorted; hidden files are ignored.

    Raises :class:`ExportError` for a file an export must not contain (optimizer states,
    checkpoints, anything not in the allowed set) or an empty folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"no export at {folder}: run helpers.publish.export_model first")
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in p.relative_to(folder).parts) or not p.is_file():
            continue
        if not any(rx.match(rel) for rx in _ALLOWED):
            raise ExportError(f"{folder}: {rel!r} does not belong in an export (only weights, configs, the "
                              f"tokenizer, {CONTRACT_FILE}, the card, NOTICE/LICENSE and {SAMPLES_DIR}/*.wav)")
        out.append(ExportFile(rel, p.stat().st_size))
    if not out:
        raise ExportError(f"{folder} is empty: run helpers.publish.export_model first")
    return out


def _strip_path_keys(obj):
    if isinstance(obj, dict):
        return {k: _strip_path_keys(v) for k, v in obj.items() if k not in _PATH_KEYS}
    if isinstance(obj, list):
        return [_strip_path_keys(v) for v in obj]
    return obj


def _sanitize_json_files(folder: Path) -> None:
    for p in folder.glob("*.json"):
        data = json.loads(p.read_text(encoding="utf-8"))
        clean = _strip_path_keys(data)
        if clean != data:
            p.write_text(json.dumps(clean, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def private_strings(paths: RunPaths | None = None, extra: Iterable[str] = ()) -> list[str]:
    """Strings that must never appear in an export or a card: the run directory and its
    runs root, Drive mount paths, the home folder and the HF token (when one is set)."""
    out = ["/content/drive", "MyDrive"]
    home = str(Path.home())
    if len(home) > 1:
        out.append(home + "/")
    if paths is not None:
        out += [str(paths.root), str(paths.root.parent) + "/"]
    tok = os.environ.get("HF_TOKEN", "").strip()
    if tok:
        out.append(tok)
    out += [s for s in extra if s]
    return sorted(set(out))


def _safetensors_header(path: Path) -> dict:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def check_privacy(folder: str | os.PathLike, forbidden: Sequence[str]) -> None:
    """Raise :class:`ExportError` if a text file (or a safetensors header) of ``folder``
    contains any of ``forbidden``; the message names the file, never the token itself."""
    folder = Path(folder)
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix == ".safetensors":
            text = json.dumps(_safetensors_header(p))
        elif p.suffix in _TEXT_SUFFIXES:
            text = p.read_text(encoding="utf-8", errors="replace")
        else:
            continue
        for s in forbidden:
            if s and s in text:
                what = "the HF token" if s == os.environ.get("HF_TOKEN", "").strip() else repr(s)
                raise ExportError(f"{p.relative_to(folder)} contains {what}: an export must not carry "
                                  f"personal paths or secrets")


@dataclass
class ExportResult:
    folder: Path
    stage: int
    source: Path
    files: list[ExportFile]
    skipped: bool  # True: the export already held these weights
    seconds: float

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def table(self):
        import pandas as pd

        return pd.DataFrame([{"file": f.path, "size": _fmt_bytes(f.bytes), "bytes": f.bytes} for f in self.files])

    def __str__(self) -> str:
        how = "already up to date" if self.skipped else f"written in {self.seconds:.1f} s"
        return (f"export of stage {self.stage}: {len(self.files)} files, {_fmt_bytes(self.total_bytes)}, {how}\n"
                f"  {self.folder}")


def _export_is_current(export_dir: Path, fingerprint: str, dtype_name: str | None) -> bool:
    f = export_dir / CONTRACT_FILE
    if not f.is_file():
        return False
    try:
        cfg = json.loads(f.read_text())
        export_listing(export_dir)
    except (ValueError, ExportError):
        return False
    src = cfg.get("source", {})
    return src.get("fingerprint") == fingerprint and src.get("dtype") == dtype_name


def export_model(paths: RunPaths, *, base_model: str, codec_model: str, stage: int | None = None,
                 dtype: str | None = "bfloat16", force: bool = False, log=print) -> ExportResult:
    """Build ``paths.export`` from the newest finished stage (or ``stage``); see the module doc.

    ``base_model`` / ``codec_model``: the profile's names (recorded in the contract and
    the card; the licence follows the base model). ``dtype``: weights dtype on the Hub
    ("bfloat16" halves a 3B model to ~6.4 GB; None keeps the stage's dtype).
    Skips the work when the export already holds these weights in this dtype (``force``
    rebuilds). A rebuilt export has no card or samples until the notebook writes them again.
    """
    import torch
    from transformers import GenerationConfig

    from .models import _resolve_dtype, load_stage
    from .session import copy_into_run

    t0 = time.time()
    licence = base_model_licence(base_model)
    s, source = final_stage(paths, stage)
    fingerprint = _source_fingerprint(_marker(source))
    export_dir = paths.export
    if not force and _export_is_current(export_dir, fingerprint, dtype):
        files = export_listing(export_dir)
        log(f"export already holds stage {s}'s weights ({dtype or 'as trained'}): nothing to do")
        return ExportResult(export_dir, s, source, files, True, time.time() - t0)

    model, tokenizer = load_stage(source)
    if dtype is not None:
        model = model.to(_resolve_dtype(dtype))
    rows = model.get_input_embeddings().weight.shape[0]
    from .coverage import run_record

    cfg = contract_config(tokenizer, base_model=base_model, codec_model=codec_model, voices=read_voices(paths),
                          stage=s, source_fingerprint=fingerprint, embedding_rows=rows,
                          coverage=run_record(paths, base_model))
    cfg["source"]["dtype"] = dtype
    gen = generation_defaults(tokenizer)
    with tempfile.TemporaryDirectory(prefix="optimumllm-export-") as tmp:
        out = Path(tmp) / "export"
        model.save_pretrained(out)  # safetensors
        tokenizer.save_pretrained(out)
        GenerationConfig(**gen).save_pretrained(out)
        (out / CONTRACT_FILE).write_text(json.dumps(cfg, indent=1, ensure_ascii=False) + "\n")
        if licence.notice:
            (out / NOTICE_FILE).write_text(licence.notice)
        _sanitize_json_files(out)
        _check_export(out, paths)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        from .drive import require_free_space, tree_bytes

        require_free_space(export_dir.parent, tree_bytes(out), "the export")  # before copying: clear error, old kept
        copy_into_run(out, export_dir)
    files = export_listing(export_dir)
    log(f"exported stage {s} ({source.relative_to(paths.root)}) to {export_dir}")
    return ExportResult(export_dir, s, source, files, False, time.time() - t0)


def _check_export(folder: Path, paths: RunPaths | None) -> None:
    """Cheap checks before the export is accepted: allowed files only, tokenizer follows the
    contract, the weights have an embedding row per id, no private string anywhere."""
    from transformers import AutoConfig, AutoTokenizer

    export_listing(folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    cfg = read_contract_config(folder, tok)
    AutoConfig.from_pretrained(str(folder))
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise ExportError(f"{folder}: no .safetensors weights")
    shapes = {}
    for p in shards:
        shapes.update({k: v["shape"] for k, v in _safetensors_header(p).items() if k != "__metadata__"})
    emb = next((v for k, v in shapes.items() if k.endswith("embed_tokens.weight")), None)
    if emb is None or emb[0] < cfg["tokens"]["vocab_size"]:
        raise ExportError(f"{folder}: embedding shape {emb} cannot hold {cfg['tokens']['vocab_size']} token ids")
    check_privacy(folder, private_strings(paths))


def verify_export(folder: str | os.PathLike, paths: RunPaths | None = None) -> dict:
    """Full check of an export, as a user would load it: ``AutoTokenizer`` and
    ``AutoModelForCausalLM`` load it, the tokenizer holds every contract token at its id,
    and one forward pass gives logits over the whole vocabulary. Returns a summary dict."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    _check_export(folder, paths)
    tok = AutoTokenizer.from_pretrained(str(folder))
    layout = TokenLayout.from_tokenizer(tok)
    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = layout.build_prompt(tok("Hello.", add_special_tokens=False).input_ids, emotion=DEFAULT_EMOTION,
                              voice=VOICES[0], bos_id=tok.bos_token_id)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    if logits.shape[-1] < layout.vocab_size:
        raise ExportError(f"{folder}: logits over {logits.shape[-1]} ids, the contract needs {layout.vocab_size}")
    return {"architecture": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""), "vocab_size": len(tok),
            "contract_tokens": N_NEW_TOKENS, "audio_offset": layout.audio_offset,
            "files": len(export_listing(folder))}


# ----------------------------------------------------------------------------- model card
_USAGE = '''Install the inference engine (Python >= 3.10; source: {repo_url}):

```bash
pip install optimumllm-audio
```

```python
from optimumllm_audio import OptimumTTS

model = OptimumTTS.from_pretrained("{model_ref}")

# Generate with built-in speaker
wav = model.generate(text="Welcome to OptimumAI.", speaker="{voice}", emotion="{emotion}")
model.save(wav, "welcome.wav")  # {sr} Hz mono, 16-bit WAV
```

```python
# Voice cloning from audio prompt: 3-20 s (10-20 s recommended, the lengths training used;
# longer clips are cut to 20 s) of clean speech of a consenting speaker
wav = model.generate(text="This is my cloned voice.", audio_prompt="reference_voice.wav", emotion="{emotion}")

# Two-speaker dialogue
wav = model.generate_dialogue(
    script=[("speaker1", "Welcome to the show!"), ("speaker2", "Thanks for having me.")],
    speaker1="male_us_01", speaker2="custom_voice.wav",
)

# Streaming: float32 pieces at {sr} Hz, handed out as frames are decoded
for chunk in model.stream("A long answer, spoken while it is generated.", speaker="{voice}"):
    ...  # play or send each chunk
```

An OpenAI-compatible speech server (`POST /v1/audio/speech`, streaming, `GET /v1/voices`):

```bash
pip install "optimumllm-audio[serve]"
python -m optimumllm_audio.serve --model {model_ref} --port 8000
curl http://127.0.0.1:8000/v1/audio/speech -H "Content-Type: application/json" \\
  -d '{{"input": "Welcome to OptimumAI.", "voice": "{voice}", "emotion": "{emotion}", "response_format": "wav"}}' \\
  -o welcome.wav
```'''


def _front_matter(licence: LicenceInfo, base_model: str, datasets: Sequence[str]) -> str:
    lines = ["---", f"license: {licence.hub_id}"]
    if licence.hub_id == "llama3.2":
        lines += ["license_name: llama3.2", f"license_link: {licence.url}"]
    if "/" in base_model and not Path(base_model).is_absolute() and not base_model.startswith("."):
        lines.append(f"base_model: {base_model}")
    lines += ["library_name: transformers", "pipeline_tag: text-to-speech", "language:", "- en", "tags:"]
    lines += [f"- {t}" for t in ("text-to-speech", "tts", "snac", "llama", "voice-cloning", "emotion")]
    if datasets:
        lines.append("datasets:")
        lines += [f"- {d}" for d in datasets]
    lines.append("---")
    return "\n".join(lines)


def build_model_card(paths: RunPaths, *, repo_id: str,
                     repo_url: str = "https://github.com/optimumai/optimumllm-audio",
                     model_ref: str | None = None) -> str:
    """The model card (markdown with Hub YAML metadata) from the run's records.

    Sections: title (+ "Built with Llama" for Llama derivatives), summary, usage,
    voices, emotions and tags, training data (datasets, hours, licences), training
    procedure (the stages actually run), evaluation (07's table, or "Not evaluated"),
    limitations, responsible use (voice-cloning consent), licence, samples. The base
    model and codec are read from the export's :data:`CONTRACT_FILE` (so the card always
    describes the weights next to it). ``model_ref``: the name in the usage snippet
    (default ``repo_id``). Raises ``ValueError`` for a base model whose licence is unknown.
    """
    _check_repo_id(repo_id)
    contract = read_contract_config(paths.export)
    base_model, codec_model = contract["base_model"], contract["snac_model"]
    licence = base_model_licence(base_model)
    datasets = dataset_rows(paths)
    stages = stage_rows(paths)
    evals, eval_source = eval_table(paths)
    voices = voice_rows(paths)
    emotions = emotion_rows(paths)
    tiny = base_model == TINY_LLAMA or codec_model == RANDOM_SNAC_24KHZ
    trained_voice = next((r["voice"] for r in voices if not r["trained on"].startswith("not trained")), VOICES[0])
    hub_datasets = [d["_hub_id"] for d in datasets if d["_hub_id"]]

    parts = [_front_matter(licence, base_model, hub_datasets), f"# {MODEL_NAME}"]
    if licence.built_with_llama:
        parts.append("**Built with Llama**")
    if tiny:
        parts.append("> **Test model.** This export comes from the offline `tiny` profile (a 2-layer random "
                     "LLaMA, SNAC with random weights, a synthetic espeak-ng corpus). It exists to prove the "
                     "pipeline end to end and produces noise, not speech.")
    parts.append(
        f"A text-to-speech model: **{'a tiny random LLaMA' if base_model == TINY_LLAMA else base_model}** "
        f"with its vocabulary extended by {N_NEW_TOKENS:,} tokens — the 3 × {CODEBOOK_SIZE:,} codes of the "
        f"**SNAC 24 kHz** neural codec (`{codec_model}`) plus text, speaker, emotion and non-verbal markers — "
        f"and fully fine-tuned to read text and write audio codes, {FRAME_SIZE} tokens per codec frame. "
        f"It has {len(VOICES)} built-in voices, zero-shot voice cloning from a reference clip, "
        f"{len(EMOTIONS)} emotion tokens and two-speaker dialogue. Output: {SAMPLE_RATE:,} Hz mono audio.")

    parts.append("## Usage\n\n" + _USAGE.format(repo_url=repo_url, model_ref=model_ref or repo_id,
                                                voice=trained_voice, emotion=DEFAULT_EMOTION, sr=SAMPLE_RATE)
                 + "\n\n"
                   f"The weights also load with plain `transformers` (`AutoModelForCausalLM`, `AutoTokenizer`); "
                   f"turning the generated tokens into audio needs the token contract in `{CONTRACT_FILE}` "
                   f"and the SNAC decoder. The prompt is `{TEXT_START} text {TEXT_END} <|emotion:NAME|> "
                   f"{SPEAKER_START} <|speaker:NAME|> {SPEAKER_END} {AUDIO_START}`; generation stops at "
                   f"`{AUDIO_END}`.")

    cov = contract.get("coverage")
    if cov:  # minutes per stage from the run's shards (helpers.coverage), recorded in optimum_tts.json
        for r in voices:
            r.update({f"stage {k} min": m for k, m in cov["voice_minutes"].get(r["voice"], {}).items()})
        for r in emotions:
            mins = cov["emotion_minutes"].get(r["emotion"], {})
            r.update({f"stage {k} min": m for k, m in mins.items()})
            r["learned"] = ("yes" if r["emotion"] in cov["trained_emotions"] else
                            f"no (under {cov['min_emotion_minutes']:g} min of training speech): "
                            f"generate() refuses it")
    parts.append("## Voices\n\n" + ("Minutes of each voice's own speech per training stage (built-in voices are "
                                     "replayed into every stage after they appear):\n\n" if cov else "")
                 + md_table(voices))
    parts.append("## Emotions and tags\n\nEmotion tokens, with the training speech labelled with each"
                 + (" (minutes per stage; `generate()` accepts only the trained ones and warns for a voice that "
                    "never spoke an emotion)" if cov else " (an emotion without data is in the vocabulary but "
                                                           "has no learned effect)") + ":\n\n"
                 + md_table(emotions)
                 + "\n\nNon-verbal tags written inside the text: "
                 + ", ".join(f"`{nonverbal_token(n)}`" for n in NONVERBALS) + ".")

    if datasets:
        nc = [d["dataset"] for d in datasets if re.search(r"NC|non-commercial", d["licence"], re.IGNORECASE)]
        body = md_table(datasets, ["dataset", "source", "hours kept", "licence"])
        if nc:
            body += ("\n\n**Non-commercial data:** " + ", ".join(nc) + " are licensed for non-commercial use "
                     "only; check whether their terms allow your use of a model trained on them.")
        parts.append("## Training data\n\nSpeech kept after preprocessing (mono, 24 kHz, −23 LUFS, 1–30 s, "
                     "SNR ≥ 20 dB), from the run's preprocessing report:\n\n" + body)
    else:
        parts.append("## Training data\n\nNot recorded: the run directory has no preprocessing report.")

    if stages:
        parts.append("## Training procedure\n\nThe stages this run actually ran, from their logs "
                     "(tokens = packed tokens processed, hours = wall-clock training time):\n\n"
                     + md_table(stages, ["stage", "what", "learning rate", "data phase", "steps", "tokens",
                                         "hours", "hardware", "status"]))
    else:
        parts.append("## Training procedure\n\nNot recorded: the run directory has no stage records.")

    if evals:
        ctx = eval_context(paths)
        parts.append(f"## Evaluation\n\nFrom the run's evaluation report (`{eval_source}`): the seed's targets, "
                     f"reference models and this model's measurements"
                     + (f" ({ctx})" if ctx else "") + ":\n\n" + md_table(evals))
    else:
        parts.append(f"## Evaluation\n\nNot evaluated: {eval_source}. No quality numbers are claimed.")

    parts.append(
        "## Limitations\n\n"
        "- English only; accents are US and British English as in the training data.\n"
        "- Long inputs are split into sentences and synthesised chunk by chunk; prosody does not carry "
        "across chunks.\n"
        "- Voice cloning quality depends on the reference: 10–30 s of clean speech works best; noisy, "
        "music-backed or very short clips give unstable voices.\n"
        "- Sampling can occasionally produce mispronunciations, skipped or repeated words, or artefacts; "
        "a length guard and a loop guard stop runaway generations.\n"
        "- Emotion control is only as good as the labelled data listed above.")
    parts.append(
        "## Responsible use\n\n"
        "- **Consent for voice cloning.** Clone a voice only with the explicit, informed permission of the "
        "person it belongs to. Do not clone public figures or private people without their consent.\n"
        "- **No deception.** Do not use the model for impersonation, fraud, defamation, voice-based "
        "authentication bypass, or to make anyone believe synthetic speech is a real recording of a person.\n"
        "- **Disclose** synthetic speech to listeners where it could be mistaken for a real person.\n"
        "- **Follow the licences** below" + (" and the Llama 3.2 Acceptable Use Policy" if licence.built_with_llama
                                             else "") + ", and the terms of the datasets above.")
    samples = sorted((paths.export / SAMPLES_DIR).glob("*.wav"))
    if samples:
        parts.append("## Samples\n\nGenerated by this model (files in `samples/`): "
                     + ", ".join(f"[{p.stem}]({SAMPLES_DIR}/{p.name})" for p in samples) + ".")
    parts.append(f"## Licence\n\n{licence.summary}"
                 + (f"\n\n{licence.notice.strip()}" if licence.notice else ""))
    card = "\n\n".join(parts) + "\n"
    for s in private_strings(paths):
        if s in card:
            raise ExportError("the model card would contain a private path or the HF token; refusing to write it")
    return card


def write_model_card(paths: RunPaths, **kwargs) -> Path:
    """Write :func:`build_model_card` to ``paths.export/README.md`` (atomically); returns the path."""
    if not paths.export.is_dir():
        raise ExportError(f"no export at {paths.export}: run export_model first")
    return _atomic_write_text(paths.export / CARD_FILE, build_model_card(paths, **kwargs))


# ----------------------------------------------------------------------------- upload
def _check_repo_id(repo_id: str) -> None:
    check_repo_id(repo_id)  # helpers.hub_access: where the default name, the licence check and access live


def default_dry_run(profile_name: str, dry_run: bool | None = None) -> bool:
    """``dry_run`` if given; else True for the tiny profile (nothing leaves the machine), False for colab."""
    return bool(dry_run) if dry_run is not None else profile_name == "tiny"


def where(paths: RunPaths) -> str:
    """Where 08 left things: the export, its card and sample audio, the evaluation report."""
    samples = sorted((paths.export / SAMPLES_DIR).glob("*.wav"))
    _, eval_source = eval_table(paths)
    lines = [f"export (uploaded folder): {paths.export}",
             f"model card:               {paths.export / CARD_FILE}",
             f"demo audio:               {paths.export / SAMPLES_DIR} ({len(samples)} clips)"]
    report = paths.eval / EVAL_REPORT_FILE
    lines.append(f"evaluation report:        {report}" if report.is_file() else f"evaluation report:        none ({eval_source})")
    return "\n".join(lines)


@dataclass
class UploadResult:
    repo_id: str
    private: bool
    dry_run: bool
    files: list[ExportFile]
    url: str | None  # the repo's URL after a real upload; None for a dry run
    folder: Path
    commit: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    def table(self):
        import pandas as pd

        rows = [{"file": f.path, "size": _fmt_bytes(f.bytes), "bytes": f.bytes} for f in self.files]
        rows.append({"file": f"TOTAL ({len(self.files)} files)", "size": _fmt_bytes(self.total_bytes),
                     "bytes": self.total_bytes})
        return pd.DataFrame(rows)

    def __str__(self) -> str:
        vis = "private" if self.private else "public"
        if self.dry_run:
            head = (f"DRY RUN: nothing was uploaded. A real run would create the {vis} model repo "
                    f"{self.repo_id} and upload these {len(self.files)} files ({_fmt_bytes(self.total_bytes)}) "
                    f"from {self.folder}:")
        else:
            head = f"uploaded {len(self.files)} files ({_fmt_bytes(self.total_bytes)}) to the {vis} repo {self.url}"
        lines = [head] + [f"  {f.path:<40} {_fmt_bytes(f.bytes):>10}" for f in self.files]
        lines.append(f"  {'total':<40} {_fmt_bytes(self.total_bytes):>10}")
        return "\n".join(lines)


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "<redacted>") if secret else text


def upload_export(folder: str | os.PathLike, repo_id: str, *, private: bool = True, dry_run: bool = False,
                  token: str | None = None, commit_message: str = f"Upload {MODEL_NAME}", api=None) -> UploadResult:
    """Create ``repo_id`` on the Hub (``private`` by default) and upload the export ``folder``.

    ``dry_run``: return the listing (file names, sizes, total) of what would be uploaded,
    touching neither the network nor the token. Otherwise the token is ``token`` or
    :func:`helpers.models.get_hf_token` (env ``HF_TOKEN``, then the Colab secret);
    ``api`` defaults to ``huggingface_hub.HfApi()`` (tests pass a stand-in).
    Raises :class:`HubTokenError` without a token and :class:`UploadError` when the Hub
    refuses or the network fails; both leave the export as it was, so rerunning retries.
    """
    _check_repo_id(repo_id)
    folder = Path(folder)
    files = export_listing(folder)
    if CARD_FILE not in {f.path for f in files}:
        raise ExportError(f"{folder} has no {CARD_FILE}: write the model card (write_model_card) before uploading")
    if dry_run:
        return UploadResult(repo_id, private, True, files, None, folder)
    if token is None:
        from .models import get_hf_token

        token = get_hf_token()
    if not token:
        raise HubTokenError(
            "No Hugging Face token: nothing was uploaded and the export is unchanged. Create a token with "
            "'write' access at https://huggingface.co/settings/tokens, then in Colab add it under Secrets "
            "(key icon) as HF_TOKEN with notebook access on, or set the HF_TOKEN environment variable, "
            "and rerun this cell.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        repo_url = api.create_repo(repo_id, token=token, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token, repo_type="model",
                                   commit_message=commit_message, allow_patterns=[f.path for f in files])
    except Exception as e:  # any Hub/network failure: report it without the token, keep the export
        # `from None`: the original exception (whose text or request headers may hold the token)
        # is not chained into the traceback; its type and scrubbed message are in ours.
        detail = _redact(f"{type(e).__name__}: {e}", token)
        raise UploadError(
            f"Upload of {folder} to {repo_id} failed ({detail}). The export is intact; check the token has "
            f"'write' access and that the repo name is yours or your organisation's, then rerun this cell "
            f"to retry.") from None
    url = str(getattr(repo_url, "url", None) or repo_url or f"https://huggingface.co/{repo_id}")
    return UploadResult(repo_id, private, False, files, url, folder,
                        commit=getattr(commit, "oid", None) or getattr(commit, "commit_url", None))


__all__ = [
    "CONTRACT_FILE", "CARD_FILE", "NOTICE_FILE", "SAMPLES_DIR", "LicenceInfo", "LLAMA_32", "TINY_TEST_LICENCE",
    "base_model_licence", "ExportError", "HubTokenError", "UploadError", "final_stage", "read_voices",
    "voice_rows", "dataset_rows", "emotion_rows", "stage_rows", "eval_table", "eval_context", "generation_defaults",
    "contract_config", "read_contract_config", "ExportFile", "export_listing", "private_strings",
    "check_privacy", "ExportResult", "export_model", "verify_export", "md_table", "build_model_card",
    "write_model_card", "default_dry_run", "where", "UploadResult", "upload_export",
    "DEFAULT_MODEL_NAME", "PublishAccessError", "PublishTarget", "default_repo_id", "licence_name_warning",
    "publish_target",
]
