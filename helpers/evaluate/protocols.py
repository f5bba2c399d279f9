"""Standard zero-shot TTS protocols, so this model's numbers sit in published tables.

Two protocols, each with its item list, its WER normaliser, its judges and the published
figures it is compared with:

``seedtts-test-en`` — Seed-TTS-eval test-en (Seed-TTS, arXiv 2406.02430; code and list:
    github.com/BytedanceSpeech/seed-tts-eval). About 1,000 Common Voice clips ("1,000 samples"
    in its README; the loaded count is reported). List ``en/meta.lst``, one item a line,
    ``utt|prompt text|prompt wav (relative)|text to synthesize[|ground-truth wav]``.
    WER: Whisper-large-v3 transcript; both sides with every character of
    ``string.punctuation`` and ``zhon.hanzi.punctuation`` removed *except the ASCII
    apostrophe* (``run_wer.py``), double spaces collapsed once, lower case; no number
    normalisation; jiwer; the mean of per-utterance WER. SIM: cosine of WavLM-large
    (fine-tuned for speaker verification, UniSpeech's ECAPA-TDNN head) embeddings of the
    generated clip and the prompt.
``librispeech-pc-test-clean`` — the cross-sentence LibriSpeech-PC test-clean list of
    F5-TTS (arXiv 2410.06885; ``data/librispeech_pc_test_clean_cross_sentence.lst`` in
    github.com/SWivid/F5-TTS, 1,127 lines): a 4–10 s target of a speaker prompted by another
    utterance of the same speaker. Tab-separated ``prompt utt, prompt s, prompt text, target
    utt, target s, target text``; audio at ``<root>/<speaker>/<chapter>/<utt>.flac``.
    WER as above but with *every* punctuation character removed, apostrophe included
    (F5-TTS ``utils_eval.run_asr_wer``), faster-whisper large-v3 with beam 5. SIM as above.
    The target utterance's recording is a matching reference (same sentence, same voice):
    PESQ/STOI of the model are computed against it — not time-aligned, so read them as a
    rough lower bound — and ground truth itself is scored as a row of its own.

Where the lists live: both are in the Hub dataset ``k2-fsa/TTS_eval_datasets``
(``seedtts_testset.tar.gz``, ``librispeech_pc_testset.tar.gz``; card licence Apache-2.0,
the audio keeps its sources' licences: Common Voice CC0-1.0, LibriSpeech / LibriSpeech-PC
CC BY 4.0). The original Seed-TTS-eval download is a Google Drive archive linked from its
README. On Colab :func:`fetch_protocol` downloads and unpacks the archive once into the run's
``eval/protocols/``; offline (``tiny``) the fixtures in ``assets/eval/protocols/`` are used:
two items per protocol in the *same* file formats, made by ``scripts/make_eval_assets.py``
from held-out espeak-ng voices.

Judges: on Colab Whisper large-v3 (the protocols' ASR) and the profile's speaker encoder
(``microsoft/wavlm-base-plus-sv``: the protocols' WavLM-large SV checkpoint is a Google Drive
file, not a Hub model, so our SIM is comparable in kind, not to the second digit); in ``tiny``
the offline stand-ins. Every result row names its protocol and judges.
"""
from __future__ import annotations

import os
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import audio as au
from ..infer.voices import ReferenceAudioError  # the engine's refusal of a cloning reference
from ..replan import CU_PER_A100_HOUR, Replan
from ..profiles import EVAL_ASSETS_DIR, Profile
from ..scores import error_breakdown, cosine
from . import judges as em
from .protocol_specs import AUDIO_EXTS, PROTOCOL_HUB_REPO, Protocol
from .report import Judges, GROUND_TRUTH, MODEL_OUTPUT, _atomic_write, _json_safe
from .signal import pesq_wb, stoi

@dataclass(frozen=True)
class ProtocolItem:
    """One zero-shot item: clone ``prompt_wav`` (saying ``prompt_text``) to say ``text``;
    ``gt_wav`` is the recording of ``text`` by the prompt's speaker, where one exists."""

    item_id: str
    prompt_text: str
    prompt_wav: Path
    text: str
    gt_wav: Path | None = None


def _audio_index(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTS}


def parse_seedtts_list(path: str | os.PathLike, audio_root: str | os.PathLike | None = None) -> list[ProtocolItem]:
    """Items of a Seed-TTS-eval ``meta.lst`` (4 or 5 ``|``-separated fields). Paths are
    relative to the list's folder; the ground truth is the 5th field, else
    ``wavs/<utt>.wav`` when present (F5-TTS's convention)."""
    path = Path(path)
    base = path.parent
    items = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        f = line.strip().split("|")
        if len(f) not in (4, 5):
            raise ValueError(f"{path}:{i}: expected 4 or 5 '|'-separated fields "
                             f"(utt|prompt text|prompt wav|text[|gt wav]), got {len(f)}")
        utt, ptext, pwav, text = f[:4]
        prompt = Path(pwav) if Path(pwav).is_absolute() else base / pwav
        gt = (base / f[4]) if len(f) == 5 else base / "wavs" / f"{utt}.wav"
        if not prompt.is_file():
            raise FileNotFoundError(f"{path}:{i}: prompt audio {prompt} does not exist")
        items.append(ProtocolItem(utt, ptext, prompt, text, gt if gt.is_file() else None))
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def parse_f5_librispeech_list(path: str | os.PathLike, audio_root: str | os.PathLike) -> list[ProtocolItem]:
    """Items of F5-TTS's ``librispeech_pc_test_clean_cross_sentence.lst`` (6 tab-separated
    fields). Audio: ``<audio_root>/<speaker>/<chapter>/<utt>.flac``, or any file named
    ``<utt>.flac``/``.wav`` under ``audio_root`` (archives differ in their folders)."""
    path, root = Path(path), Path(audio_root)
    index = None
    items = []

    def find(utt: str, at: str) -> Path:
        nonlocal index
        spk, chap = utt.split("-")[:2]
        p = root / spk / chap / f"{utt}.flac"
        if p.is_file():
            return p
        if index is None:
            index = _audio_index(root)
        if utt not in index:
            raise FileNotFoundError(f"{at}: no audio for utterance {utt} under {root}")
        return index[utt]

    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        f = line.rstrip("\n").split("\t")
        if len(f) != 6:
            raise ValueError(f"{path}:{i}: expected 6 tab-separated fields (prompt utt, prompt s, prompt text, "
                             f"target utt, target s, target text), got {len(f)}")
        putt, _pdur, ptext, gutt, _gdur, gtext = f
        if putt.count("-") != 2 or gutt.count("-") != 2:
            raise ValueError(f"{path}:{i}: utterance ids must look like speaker-chapter-index, got {putt!r}, {gutt!r}")
        at = f"{path}:{i}"
        items.append(ProtocolItem(gutt, ptext, find(putt, at), gtext, find(gutt, at)))
    if not items:
        raise ValueError(f"{path}: no items")
    return items


def load_items(protocol: Protocol, list_path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
               limit: int | None = None) -> list[ProtocolItem]:
    """The protocol's items from its list file (first ``limit`` if given; the list order)."""
    list_path = Path(list_path)
    if protocol.list_format == "seedtts":
        items = parse_seedtts_list(list_path)
    elif protocol.list_format == "f5-librispeech-pc":
        items = parse_f5_librispeech_list(list_path, audio_root or list_path.parent)
    else:
        raise ValueError(f"protocol {protocol.name}: unknown list format {protocol.list_format!r}")
    return items if limit is None else items[:int(limit)]


def fixture_list(protocol: Protocol) -> Path:
    """The offline fixture list of ``protocol`` (``assets/eval/protocols/...``)."""

    p = EVAL_ASSETS_DIR / "protocols" / protocol.fixture_list
    if not p.is_file():
        raise FileNotFoundError(f"protocol fixture {p} is missing; remake it with scripts/make_eval_assets.py")
    return p


def fetch_protocol(protocol: Protocol, cache_dir: str | os.PathLike) -> Path:
    """Download ``protocol.hub_file`` from :data:`PROTOCOL_HUB_REPO` once, unpack it into
    ``cache_dir/<name>/`` and return the item list found there (``protocol.list_glob``)."""
    from huggingface_hub import hf_hub_download

    dest = Path(cache_dir) / protocol.name
    done = dest / ".unpacked"
    if not done.is_file():
        archive = hf_hub_download(PROTOCOL_HUB_REPO, protocol.hub_file, repo_type="dataset")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
        done.write_text(protocol.hub_file)
    found = sorted(dest.glob(protocol.list_glob))
    if protocol.list_format == "f5-librispeech-pc":
        found = [p for p in found if "cross_sentence" in p.name] or found
    if len(found) != 1:
        raise FileNotFoundError(f"{protocol.hub_file} unpacked in {dest}: expected one item list matching "
                                f"{protocol.list_glob!r}, found {[str(p) for p in found]}")
    return found[0]


def sample_items(items: Sequence[ProtocolItem], n: int | None, seed: int = 0) -> list[ProtocolItem]:
    """A fixed seeded sample of ``n`` items, in list order (every item when ``n`` is None or >= the list).
    The same list, ``n`` and ``seed`` give the same items on every machine and rerun."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"protocol sample size must be a positive integer or None, got {n!r}")
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[int(i)] for i in keep]


def protocol_items(protocol: Protocol, profile: Profile, cache_dir: str | os.PathLike,
                   limit: int | None = None, sample: int | None = None,
                   seed: int = 0) -> tuple[list[ProtocolItem], str]:
    """``(items, source)``: the fixtures for an offline profile (``tiny``), the Hub list otherwise.

    ``sample``: a seeded sample of that many items (:func:`sample_items`; the notebook passes the
    profile's ``protocol_sample``: tens of items in the pilot, None = the full list on Colab);
    ``limit``: the first ``limit`` items instead. ``source`` says which."""
    if profile.offline:
        lst = fixture_list(protocol)
        items, source = load_items(protocol, lst, limit=limit), f"fixture assets/eval/{lst.relative_to(EVAL_ASSETS_DIR)}"
    else:
        lst = fetch_protocol(protocol, cache_dir)
        items, source = load_items(protocol, lst, limit=limit), f"hf://datasets/{PROTOCOL_HUB_REPO}/{protocol.hub_file}"
    if sample is not None and sample < len(items):
        n_all = len(items)
        items = sample_items(items, sample, seed)
        source += f" (seeded sample of {len(items)} of {n_all} items, seed {seed})"
    return items, source


# ----------------------------------------------------------------------------- judges and run
def protocol_judges(protocol: Protocol, profile, device: str | None = None, reuse=None):
    """The judges for ``protocol``: its ASR (Whisper large-v3, its beam) and the profile's
    speaker encoder and MOS predictor on Colab; the profile's offline stand-ins in ``tiny``.
    ``reuse``: already loaded :class:`helpers.evaluate.report.Judges` whose speaker and MOS
    models are taken instead of loading them again."""

    offline = profile.eval_asr_model == em.WHISPER_TINY_EN_OFFLINE
    asr = em.load_asr(profile.eval_asr_model if offline else protocol.asr_model, device=device,
                      beam_size=protocol.asr_beam_size)
    if reuse is not None:
        return Judges(asr=asr, speaker=reuse.speaker, mos=reuse.mos)
    return Judges(asr=asr, speaker=em.load_speaker_encoder(profile.eval_speaker_model, device=device),
                  mos=em.load_mos_predictor(profile.eval_mos_model, device=device))


def score_clip(protocol: Protocol, item: ProtocolItem, wav: np.ndarray, sr: int, judges,
               prompt: tuple[np.ndarray, int]) -> dict:
    """WER (+ ins/del/sub) under the protocol's normaliser, SIM against the prompt, MOS, and
    PESQ/STOI against the ground-truth recording where the item has one."""

    hyp = judges.asr.transcribe(wav, sr)
    eb = error_breakdown(item.text, hyp, protocol.normalize)
    row = {"hypothesis": hyp, "wer": eb["wer"], "ins": eb["ins"], "del": eb["del"], "sub": eb["sub"],
           "sim": cosine(judges.speaker.embed(wav, sr), judges.speaker.embed(*prompt)),
           "mos": float(judges.mos.score(wav, sr)), "pesq": float("nan"), "stoi": float("nan")}
    if item.gt_wav is not None:
        gt, gsr = au.load_audio(item.gt_wav, target_sr=None)
        x = au.resample(np.asarray(wav, dtype=np.float32), sr, gsr) if sr != gsr else wav
        row["pesq"], row["stoi"] = pesq_wb(gt, x, gsr), stoi(gt, x, gsr)
    return row


SKIP_REASONS = {
    "undecodable_prompt": "the prompt recording is missing or cannot be decoded",
    "unusable_prompt": "the engine refused the prompt as a cloning reference (ReferenceAudioError: e.g. < 3 s of speech)",
}


def _load_prompt(it: ProtocolItem):
    try:
        return au.load_audio(it.prompt_wav, target_sr=None), None
    except (au.AudioDecodeError, FileNotFoundError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


def _synthesize(synth, items: list, prompts: list, seeds: list, batch_size: int) -> list:
    """One waveform per item, each in its own prompt's voice: the engine's batch API
    (``generate_cloned``, all chunks of a batch together) when the synthesizer has it, else one by one."""
    many = getattr(synth, "generate_cloned", None)
    if many is not None and len(items) > 1:
        return many([it.text for it in items], prompts, seeds=seeds, emotion="neutral", batch_size=batch_size)
    return [synth.generate(it.text, speaker=None, emotion="neutral", audio_prompt=pr, seed=sd)
            for it, pr, sd in zip(items, prompts, seeds)]


def run_protocol(protocol: Protocol, items: Sequence[ProtocolItem], synth, judges, *, seed: int = 1234,
                 score_ground_truth: bool = True, progress: bool = True, out_dir: str | os.PathLike | None = None,
                 batch_size: int = 8):
    """Clone every item's prompt to say its text with ``synth``; score the model's clips and,
    where recordings exist, the ground truth the same way. Returns the per-clip table with
    ``measured_on`` = "model output" or "ground truth" on every row. With ``out_dir`` each
    item's rows go to ``<out_dir>/<protocol>/<id>.json`` and a rerun skips those (a full list
    is an hour or more of generation on Colab).

    Items are generated ``batch_size`` at a time through the engine's batch API (item ``k`` keeps
    seed ``seed + k`` either way). An unusable item — a prompt that does not decode, or one the
    engine refuses as a cloning reference (``ReferenceAudioError``: less than 3 s of speech) — is
    skipped and counted: ``df.attrs["skipped"]`` lists ``{item_id, reason, detail}``
    (reasons: :data:`SKIP_REASONS`), and a rerun does not stop at it.
    """
    import json

    import pandas as pd
    from tqdm.auto import tqdm


    rows, skipped = [], []
    todo = []
    for k, it in enumerate(items):
        cache = None if out_dir is None else Path(out_dir) / protocol.name / f"{it.item_id}.json"
        if cache is not None and cache.is_file():
            rows.extend(json.loads(cache.read_text(encoding="utf-8")))
        else:
            todo.append((k, it, cache))
    bar = tqdm(total=len(todo), desc=protocol.name, disable=not progress)
    import torch  # already loaded by the judges

    rp = Replan(f"07 {protocol.name}", len(todo), "items", cu_per_hour=CU_PER_A100_HOUR if torch.cuda.is_available() else None,
                printer=bar.write)  # 07 re-plans from its measured time per item
    for b in range(0, len(todo), batch_size):
        batch = []
        for k, it, cache in todo[b: b + batch_size]:
            prompt, err = _load_prompt(it)
            if prompt is None:
                skipped.append({"item_id": it.item_id, "reason": "undecodable_prompt", "detail": err})
            else:
                batch.append((k, it, cache, prompt))
        while batch:
            try:
                t0 = time.perf_counter()
                wavs = _synthesize(synth, [x[1] for x in batch], [x[3] for x in batch], [seed + x[0] for x in batch],
                                   batch_size)
                gen_s = (time.perf_counter() - t0) / len(batch)  # per item: the batch's time shared out
                break
            except ReferenceAudioError as e:
                bad = getattr(e, "index", None)
                if bad is None:  # find the refused prompt one by one
                    bad = next((i for i, x in enumerate(batch) if _refuses(synth, x, seed)), 0)
                skipped.append({"item_id": batch[bad][1].item_id, "reason": "unusable_prompt", "detail": str(e)})
                batch.pop(bad)
        else:
            wavs = []
        for (k, it, cache, prompt), wav in zip(batch, wavs):
            wav = np.asarray(wav, dtype=np.float32).reshape(-1)
            if wav.size == 0:
                raise RuntimeError(f"{protocol.name} item {it.item_id}: the synthesizer returned no audio")
            t1 = time.perf_counter()
            scored = score_clip(protocol, it, wav, synth.sample_rate, judges, prompt)
            item_rows = [{"protocol": protocol.name, "item_id": it.item_id, "measured_on": MODEL_OUTPUT,
                          "text": it.text, "audio_s": wav.size / synth.sample_rate, "gen_s": gen_s,
                          "score_s": time.perf_counter() - t1, **scored}]
            if score_ground_truth and it.gt_wav is not None:
                t1 = time.perf_counter()
                gt, gsr = au.load_audio(it.gt_wav, target_sr=None)
                row = score_clip(protocol, ProtocolItem(it.item_id, it.prompt_text, it.prompt_wav, it.text, None),
                                 gt, gsr, judges, prompt)
                item_rows.append({"protocol": protocol.name, "item_id": it.item_id, "measured_on": GROUND_TRUTH,
                                  "text": it.text, "audio_s": gt.size / gsr, "gen_s": float("nan"),
                                  "score_s": time.perf_counter() - t1, **row})
            rows.extend(item_rows)
            if cache is not None:
                _atomic_write(cache, json.dumps([{c: _json_safe(v) for c, v in r.items()} for r in item_rows]))
        bar.update(len(todo[b: b + batch_size]))
        rp.update(len(todo[b: b + batch_size]))
    bar.close()
    order = {it.item_id: k for k, it in enumerate(items)}
    rows.sort(key=lambda r: order.get(r["item_id"], len(order)))  # list order, whatever was cached (stable)
    df = pd.DataFrame(rows, columns=None if rows else ["protocol", "item_id", "measured_on", "text", "audio_s",
                                                       "gen_s", "wer", "ins", "del", "sub", "sim", "mos", "pesq",
                                                       "stoi"])
    for col in ("wer", "ins", "del", "sub", "sim", "mos", "pesq", "stoi", "gen_s", "score_s"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df.attrs["skipped"] = skipped
    return df


def _refuses(synth, x, seed: int) -> bool:
    k, it, _, prompt = x
    try:
        synth.generate(it.text, speaker=None, emotion="neutral", audio_prompt=prompt, seed=seed + k)
    except ReferenceAudioError:
        return True
    return False


def skipped_table(clips):
    """The items a protocol run skipped, counted per reason (a DataFrame for display)."""
    import pandas as pd

    sk = pd.DataFrame(clips.attrs.get("skipped", []), columns=["item_id", "reason", "detail"])
    return sk.groupby("reason").size().rename("items").reset_index() if len(sk) else sk


def protocol_table(protocol: Protocol, clips, judges_names: Mapping[str, str], source: str):
    """This run's rows (model output; ground truth where recorded) next to the protocol's
    published figures. WER is the mean per-utterance rate, as the protocols report it."""
    import pandas as pd

    judged = f"ASR {judges_names.get('asr')}, SIM {judges_names.get('speaker')}"
    rows = []
    for on, sub in clips.groupby("measured_on", sort=False):
        rows.append({"protocol": protocol.title, "system": "this model" if on == "model output" else "ground truth",
                     "measured_on": on, "n": len(sub), "skipped": len(clips.attrs.get("skipped", [])), "wer": sub["wer"].mean(), "ins": sub["ins"].mean(),
                     "del": sub["del"].mean(), "sub": sub["sub"].mean(), "sim": sub["sim"].mean(),
                     "mos": sub["mos"].mean(), "pesq": sub["pesq"].mean(), "stoi": sub["stoi"].mean(),
                     "judges": judged, "items": source, "status": "re-run here"})
    for p in protocol.published:
        rows.append({"protocol": protocol.title, "system": p.system, "measured_on": "published", "n": None,
                     "wer": p.wer, "sim": p.sim, "judges": f"ASR {protocol.asr_model}, SIM {protocol.sim_model}",
                     "items": "full list", "status": f"{p.status}: {p.source}"})
    return pd.DataFrame(rows)


def describe(protocol: Protocol) -> dict:
    """The protocol's definition for ``report.json`` (no callables)."""
    d = asdict(protocol)
    d.pop("normalize")
    d["normalizer"] = protocol.normalize.__name__
    d["hub"] = f"{PROTOCOL_HUB_REPO}/{protocol.hub_file}"
    return d
