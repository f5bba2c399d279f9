"""The model card (notebook 08, step 2): ``README.md`` built only from the run's records.

The profile's base model and its licence (:mod:`helpers.publish.export`), the preprocessing report
(datasets and their licences from :mod:`helpers.data.catalog`), the stage folders (config,
metrics log, completion markers), the evaluation report of 07 (or the words "not
evaluated" when there is none: numbers are never invented), voices, emotions and the
coverage the export records.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Sequence

from .export import (CARD_FILE, CONTRACT_FILE, MODEL_NAME, SAMPLE_RATE, SAMPLES_DIR, ExportError, LicenceInfo,
    _marker, base_model_licence, private_strings, read_contract_config, read_voices)
from ..colab.hub_access import check_repo_id
from ..profiles import ASSETS_CORPUS, FINAL_MODEL_DIR, RANDOM_SNAC_24KHZ, TINY_LLAMA, RunPaths
from ..colab.runlog import atomic_write_text, CsvLog
from ..tokens import (AUDIO_END, AUDIO_START, CODEBOOK_SIZE, DEFAULT_EMOTION, EMOTIONS, FRAME_SIZE, N_NEW_TOKENS,
    NONVERBALS, SPEAKER_END, SPEAKER_START, TEXT_END, TEXT_START, VOICES, emotion_token, nonverbal_token,
    voice_token)
from ..data.catalog import get_spec
from ..models import COMPLETE_MARKER

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
    from ..data.preprocess import REPORT_FILE

    f = paths.preprocess / REPORT_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def dataset_rows(paths: RunPaths) -> list[dict]:
    """Datasets kept by preprocessing (01's report) with hours, Hub id and licence (catalog)."""

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
    from ..train.recipe import CONFIG_FILE, METRICS_FIELDS, METRICS_FILE

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
        final = d / FINAL_MODEL_DIR / COMPLETE_MARKER
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


# Evaluation report of 07 (helpers.evaluate.report.write_report writes both into RunPaths.eval).
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
    check_repo_id(repo_id)
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
    if cov:  # minutes per stage from the run's shards (helpers.plan.coverage), recorded in optimum_tts.json
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
    return atomic_write_text(paths.export / CARD_FILE, build_model_card(paths, **kwargs))


