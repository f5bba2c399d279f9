"""Export (notebook 08, step 1): the final model as a self-contained folder for the Hub.

The newest finished stage (4, else 3, 2, 1) becomes ``RunPaths.export``::

    model.safetensors (or shards + index)  weights, in ``dtype`` (bf16 for the Hub)
    config.json                            plain LlamaForCausalLM config
    tokenizer.json, tokenizer_config.json  the tokenizer with every contract token
    generation_config.json                 stops at <|audio_end|>, pads with <|pad|>,
                                           the sampling defaults of helpers.infer.generation
    optimum_tts.json                       codec ("snac_model", read by OptimumTTS.from_pretrained),
                                           token contract, voices, emotions, coverage (:data:`CONTRACT_FILE`)
    NOTICE                                 Llama attribution (Llama derivatives only)
    README.md                              the model card (:mod:`helpers.publish.model_card`)
    samples/*.wav                          demo clips, when the notebook adds them

Nothing else: no optimizer states, no checkpoints, no run-directory paths (keys such as
``_name_or_path`` are removed and every text file is scanned for the run directory, Drive
and home paths and the HF token before the folder is accepted). The folder is built on
local disk, checked, then copied into the run directory atomically; a rerun with
unchanged weights skips the work. The licence facts of the base model live here too:
the export writes its NOTICE, the card quotes them.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..profiles import TINY_LLAMA, RunPaths
from ..tokens import (AUDIO_END, AUDIO_START, CODEBOOK_SIZE, DEFAULT_EMOTION, EMOTIONS, FRAME_SIZE, FRAME_SLOTS,
    N_CODEBOOKS, N_NEW_TOKENS, NONVERBALS, PAD, SPEAKER_END, SPEAKER_START, STRUCTURE_TOKENS, TEXT_END,
    TEXT_START, VOICES, TokenLayout, nonverbal_token, REFERENCE_MAX_S, REFERENCE_MIN_S)
from ..models import COMPLETE_MARKER, read_complete_marker, _resolve_dtype, load_stage
from ..colab.session import copy_into_run
from ..plan.coverage import run_record
from ..colab.drive import require_free_space, tree_bytes

# ----------------------------------------------------------------------------- constants
# What OptimumTTS.from_pretrained reads besides the HF files (helpers.infer.engine.INFERENCE_CONFIG:
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
                     f"(meta-llama/Llama-3.2-*) and {TINY_LLAMA!r}; add its terms to helpers.publish.upload "
                     f"before publishing a derivative of it")


# ----------------------------------------------------------------------------- small utilities
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- run records
def final_stage(paths: RunPaths, stage: int | None = None) -> tuple[int, Path]:
    """``(stage, model folder)`` of the newest finished stage (4, 3, 2, then 1), or of ``stage``.

    A stage counts as finished when its model folder has ``COMPLETE.json``. Raises
    ``FileNotFoundError`` naming the notebook to run when there is none.
    """

    stages = (stage,) if stage is not None else (4, 3, 2, 1)
    for s in stages:
        folder = paths.final_model(s)
        if (folder / COMPLETE_MARKER).is_file():
            return s, folder
    if stage is not None:
        raise FileNotFoundError(f"stage {stage} has no finished model at {paths.final_model(stage)}; "
                                f"run its notebook to the end first")
    raise FileNotFoundError(f"no finished stage in {paths.root}: run 03_vocab_extension and the training "
                            f"notebooks 04-06 first")


def _marker(folder: Path) -> dict:

    return read_complete_marker(folder)


def _source_fingerprint(marker: dict) -> str:
    """SHA-256 over the file list (names, sizes, hashes) of a stage's COMPLETE.json."""
    return _sha256_bytes(json.dumps(marker["files"], sort_keys=True).encode())


def read_voices(paths: RunPaths) -> dict:
    """The run's built-in voice selection (``voices.json`` of the newest stage that has one):
    ``{"assignments": {voice: speaker}, "unassigned": [...]}``; empty assignments if none."""
    from ..train.recipe import VOICES_FILE

    for s in (4, 3, 2):
        f = paths.stage(s) / VOICES_FILE
        if f.is_file():
            d = json.loads(f.read_text())
            bad = [v for v in d.get("assignments", {}) if v not in VOICES]
            if bad:
                raise ValueError(f"{f}: unknown voices {bad}; built-in voices are {VOICES}")
            return {"assignments": dict(d.get("assignments", {})), "unassigned": list(d.get("unassigned", []))}
    return {"assignments": {}, "unassigned": list(VOICES)}


# ----------------------------------------------------------------------------- contract config
def generation_defaults(tokenizer) -> dict:
    """Sampling defaults (:class:`helpers.infer.generation.SamplingConfig`) and the stop/pad ids."""
    from ..infer.generation import DEFAULT_FRAMES_PER_SECOND, SamplingConfig

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

    ``voices``: :func:`read_voices`'s dict. ``coverage``: :func:`helpers.plan.coverage.model_record` of
    the run (minutes per voice and per emotion per stage, the trained emotions): inference refuses
    an emotion outside it and warns for a (voice, emotion) pair without minutes. Checks the
    tokenizer against the contract.
    """
    from ..infer.generation import SamplingConfig

    layout = TokenLayout.from_tokenizer(tokenizer)
    if embedding_rows < layout.vocab_size:
        raise ValueError(f"the model has {embedding_rows} embedding rows, the tokenizer needs {layout.vocab_size}")
    s = SamplingConfig()
    return {
        "format": CONTRACT_FORMAT, "version": CONTRACT_VERSION, "model_name": MODEL_NAME,
        "base_model": str(base_model),
        "snac_model": str(codec_model),  # the key helpers.infer.engine.OptimumTTS.from_pretrained reads
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
                                f"(build one with helpers.publish.export.export_model)")
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
        raise ExportError(f"no export at {folder}: run helpers.publish.export.export_model first")
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
        raise ExportError(f"{folder} is empty: run helpers.publish.export.export_model first")
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


