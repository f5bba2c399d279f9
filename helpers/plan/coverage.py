"""What the data trains: minutes per stage × built-in voice × emotion, and cloning references.

``python -m helpers.plan --profile colab --coverage [--json]`` prints it (before any
download, from the catalog's facts); the stage notebooks 04-06 print it from the real shards
(``--run-dir``), and the export records it in ``optimum_tts.json`` so that inference can refuse
an emotion the model never heard and warn for a (voice, emotion) pair without data.

Two sources, one report shape (:func:`coverage_report`):

* **catalog facts** (a hub profile, no run directory): every phase entry of
  :data:`helpers.data.catalog.PHASES` × the profile's ``hours_scale`` is spread over the corpus'
  speakers as :func:`helpers.data.sampling.sample_hours` would draw it (balanced: equal shares
  capped by what each speaker has; otherwise proportional), and over its labels in proportion
  to :data:`helpers.data.speaker_facts.LABEL_MINUTES`. Per-speaker minutes are the facts tables'
  where documented, else the corpus' hours split evenly (an estimate, said so in ``basis``).
  Examples and references are expected values from the documented clip lengths and the
  training recipe's draw rule (:func:`helpers.train.sequences.draw_reference`: uniform lengths in the
  configured range, bounded by the context).
* **a run directory** (01/02 done): exact minutes from the token shards and the phase
  selection 02 recorded; voices from the run's ``voices.json`` (or the choice stage 2 will
  make); references by replaying the recipe's draw for epoch 0 on the training split (text
  length from ``encode_text`` when given, else estimated at 4 characters per token).

An emotion counts as *trained* when stages 2-4 together hold at least
:data:`MIN_EMOTION_MINUTES` × the profile's ``hours_scale`` of it (the export refuses the
others). In the seed's mix every emotion label sits in the emotion stage (stage 4), so each
trained emotion also has at least 10 min there (a test checks it); summing over the stages
keeps a scaled-down run (the tiny profile, whose stage 4 holds a handful of clips) honest
about what its earlier stages did train. ``excited`` and ``friendly`` have no label in the mix
(:data:`helpers.data.speaker_facts.UNTRAINED_EMOTION_NOTES`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..data import speaker_facts as SF
from ..infer.emotions import MIN_EMOTION_MINUTES
from ..tokens import (DEFAULT_EMOTION, EMOTIONS, FRAME_SIZE, REFERENCE_MAX_S, REFERENCE_MIN_S, SNAC_FRAMES_PER_SECOND,
                      VOICES)
from ..profiles import PROFILES, Profile, RunPaths, as_profile
from ..train.config import SEED_STAGES, stage_config, StageConfig
from ..data.catalog import CATALOG, Exclude, Fixed, get_spec, PHASES

EMOTION_STAGE = 4  # seed §11: stage 4 (phase 3) is "speaker & emotion alignment"
STAGES = (2, 3, 4)
CHARS_PER_TOKEN = 4.0  # text-length estimate when no tokenizer is given (LLaMA 3 BPE on English)
PROMPT_OVERHEAD = 8  # bos, text_start, text_end, emotion, speaker_start, speaker_end, audio_start, audio_end

# Mean clip length per corpus (seconds) = documented hours / documented clips; used only to turn
# minutes into expected example counts before the download.
CLIP_SECONDS = {
    "libritts_r": (555 * 3600 / 354_000, "≈555 h / ≈354k train clips (hub viewer)"),
    "vctk": (44 * 3600 / 44_078, "44 h / 44,078 mic1 clips"),
    "hifi_tts": (292 * 3600 / 322_478, "292 h / 322,478 train clips (card)"),
    "expresso": (692 * 60 / 11_615, "692 min / 11,615 read clips (card)"),
    "ravdess": (5400 / 1440, "≈1.5 h / 1,440 clips"),
    "emov_db": (7 * 3600 / 6599, "≈7 h / 6,599 clips (card)"),
    "gigaspeech": (5.0, "ASSUMED 5 s: GigaSpeech documents no mean segment length"),
}


# ----------------------------------------------------------------------------- the emotion table
def emotion_sources() -> dict[str, list[str]]:
    """Public emotion -> the dataset labels that train it ("expresso:happy"); corpora without
    emotion labels train ``neutral`` with all their speech ("libritts_r:*")."""

    out: dict[str, list[str]] = {e: [] for e in EMOTIONS}
    for name, spec in CATALOG.items():
        if name == "assets":
            continue
        if isinstance(spec.emotion, Fixed):
            out[spec.emotion.value].append(f"{name}:*")
            continue
        for label, target in spec.emotion_map.items():
            if not isinstance(target, Exclude):
                out[target].append(f"{name}:{label}")
    return out


# ----------------------------------------------------------------------------- helpers
def _water_fill(available: Mapping[str, float], target: float) -> dict[str, float]:
    """Balanced draw: equal shares of ``target`` capped by each speaker's ``available`` minutes."""
    left, out = float(target), {k: 0.0 for k in available}
    active = sorted(available, key=lambda k: available[k])
    while active and left > 1e-9:
        share = left / len(active)
        k = active[0]
        if available[k] - out[k] <= share:
            take = available[k] - out[k]
            out[k] += take
            left -= take
            active.pop(0)
        else:
            for k in active:
                out[k] += share
            left = 0.0
    return out


def _empty_stage(stage: int) -> dict:
    return {"phase": SEED_STAGES[stage][1], "minutes": 0.0, "replay_minutes": 0.0,
            "voice_minutes": {v: 0.0 for v in VOICES}, "emotion_minutes": {e: 0.0 for e in EMOTIONS},
            "voice_emotion_minutes": {v: {} for v in VOICES}, "minutes_by_dataset": {},
            "shortfall_minutes": {}, "examples": 0, "with_voice": 0, "with_reference": 0,
            "reference_seconds": [], "reference_histogram": []}


def _label_fractions(dataset: str) -> dict[str, float]:
    """Public emotion -> share of the corpus' minutes (documented label minutes)."""

    spec = get_spec(dataset)
    if isinstance(spec.emotion, Fixed):
        return {spec.emotion.value: 1.0}
    mins = SF.LABEL_MINUTES[dataset]
    total = sum(mins.values())
    out: dict[str, float] = {}
    for label, m in mins.items():
        target = spec.emotion_map[label]
        if isinstance(target, Exclude):
            continue
        out[target] = out.get(target, 0.0) + m / total
    return out


def _speaker_minutes(dataset: str) -> tuple[dict[str, float], str]:
    """Catalog speaker id -> minutes available, and where the numbers come from."""

    spec = get_spec(dataset)
    try:
        facts = SF.speaker_facts(dataset)
    except FileNotFoundError:
        facts = {}
    n = len(facts) or int(spec.n_speakers)
    even = spec.hours * 60.0 / n
    basis = f"{spec.hours:g} h over {n} speakers, split evenly (estimate)"
    if dataset == "expresso":
        rows, _ = SF.read_table("expresso")
        return {f"expresso:{r['speaker']}": float(r["read_minutes"]) for r in rows}, "facts table (read part split evenly)"
    if facts:
        return {f.speaker_id: even for f in facts.values()}, basis
    # corpora without a speaker table: anonymous equal speakers (only totals matter there)
    return {f"{dataset}:#{i}": even for i in range(n)}, basis


def _expected_histogram(n_refs: float, lo_s: float, hi_s: float, edges: Sequence[float]) -> list[dict]:
    rows = []
    for a, b in zip(edges, edges[1:]):
        overlap = max(0.0, min(b, hi_s) - max(a, lo_s))
        share = overlap / (hi_s - lo_s) if hi_s > lo_s else float(a <= lo_s < b)
        rows.append({"from_s": a, "to_s": b, "references": round(n_refs * share, 1)})
    return rows


# ----------------------------------------------------------------------------- from catalog facts
def coverage_from_catalog(profile, cfgs: Mapping[int, object] | None = None, phases=None) -> dict:
    """The report (see module docstring) from the catalog's facts, for a hub profile."""
    from ..train.sequences import REFERENCE_BINS_S

    if profile.data_source != "hub":
        raise ValueError(f"profile {profile.name!r} reads {profile.data_source!r}, not the catalog's hub corpora: its "
                         f"coverage comes from a run directory (python -m helpers.plan --profile {profile.name} "
                         f"--coverage --run-dir RUN)")
    if phases is None:
        phases = PHASES
    scale = float(profile.hours_scale)
    voice_of = {spk: v for v, spk in SF.BUILTIN_VOICE_PLAN.items()}
    stages = {}
    for stage in STAGES:
        cfg = (cfgs or {}).get(stage) or stage_config(stage, profile)
        st = _empty_stage(stage)
        ph = phases[cfg.phase]
        n_refs_total = 0.0
        for e in ph.entries:
            target = e.hours * scale * 60.0
            avail, basis = _speaker_minutes(e.dataset)
            if e.speakers:
                avail = {k: m for k, m in avail.items() if k in set(e.speakers)}
            pool = sum(avail.values())
            drawn = (_water_fill(avail, target) if e.balance_speakers
                     else {k: m * min(1.0, target / pool) for k, m in avail.items()} if pool else {})
            got = sum(drawn.values())
            st["minutes"] += got
            st["replay_minutes"] += got if e.replay else 0.0
            st["minutes_by_dataset"][e.dataset] = st["minutes_by_dataset"].get(e.dataset, 0.0) + got
            if target - got > 1e-6:
                st["shortfall_minutes"][e.dataset] = target - got
            fr = _label_fractions(e.dataset)
            for emo, f in fr.items():
                st["emotion_minutes"][emo] += got * f
            voice_min = 0.0
            for spk, m in drawn.items():
                v = voice_of.get(spk)
                if v is None or m <= 0:
                    continue
                voice_min += m
                st["voice_minutes"][v] += m
                for emo, f in fr.items():
                    st["voice_emotion_minutes"][v][emo] = st["voice_emotion_minutes"][v].get(emo, 0.0) + m * f
            clip_s = CLIP_SECONDS.get(e.dataset, (5.0, ""))[0]
            examples = got * 60.0 / clip_s
            voice_examples = voice_min * 60.0 / clip_s
            st["examples"] += examples
            st["with_voice"] += voice_examples
            # every other speaker's example carries a reference with probability reference_prob
            # (their other clips always hold >= 3 s: VCTK/Expresso/LibriTTS speakers read dozens)
            n_refs_total += (examples - voice_examples) * cfg.reference_prob
        # Room beside the longest target preprocessing keeps (30 s, ~100 text tokens): the draw's upper bound.
        room_frames = (cfg.max_seq_len - PROMPT_OVERHEAD - 100 - FRAME_SIZE * int(30 * SNAC_FRAMES_PER_SECOND)
                       ) // FRAME_SIZE
        hi_s = min(cfg.reference_max_frames, room_frames) / SNAC_FRAMES_PER_SECOND
        lo_s = cfg.reference_min_frames / SNAC_FRAMES_PER_SECOND
        st["with_reference"] = n_refs_total
        st["reference_range_s"] = [round(lo_s, 2), round(max(lo_s, hi_s), 2)]
        st["reference_histogram"] = _expected_histogram(n_refs_total, lo_s, max(lo_s, hi_s), REFERENCE_BINS_S)
        stages[stage] = st
    voices = {}
    for v in VOICES:
        f = SF.plan_fact(v)
        gender, accent = v.split("_")[:2]
        voices[v] = {"speaker": f.speaker_id, "dataset": f.dataset, "gender": f.gender, "accent": f.accent,
                     "region": f.region, "matches_name": (f.gender, f.accent) == (gender, accent),
                     "basis": f.basis}
        if f.dataset == "vctk":
            voices[v]["matches_name"] &= f.region.lower() in SF.SOUTHERN_ENGLISH_REGIONS
    return _finish({"profile": profile.name, "source": "catalog facts (before any download)",
                    "hours_scale": scale, "voices": voices, "stages": stages}, scale,
                   {d: CATALOG[d].title for d in CATALOG})


# ----------------------------------------------------------------------------- from a run directory
def coverage_from_utterances(stage_utterances: Mapping[int, Sequence], voices, cfgs: Mapping[int, object],
                             encode_text: Callable[[str], Sequence[int]] | None = None, profile_name: str = "",
                             hours_scale: float = 1.0) -> dict:
    """The report from real utterances (:class:`helpers.data.shards.Utterance`) of each stage.

    ``voices``: a :class:`helpers.train.sequences.VoiceSelection`; ``cfgs``: stage -> StageConfig (its
    context, reference bounds and probability, eval split and seed). References are drawn for
    epoch 0 exactly as :class:`helpers.train.sequences.SequenceBuilder` draws them (same generator,
    same order), from the training split only; with ``encode_text`` = the tokenizer's encoder
    the counts equal the recipe's, otherwise text length is estimated.
    """
    import numpy as np

    from ..train.sequences import REFERENCE_BINS_S, draw_reference, reference_histogram, split_eval

    voice_of = voices.speaker_to_voice
    text_len = (lambda t: len(encode_text(t))) if encode_text is not None else (
        lambda t: int(math.ceil(len(t) / CHARS_PER_TOKEN)))
    stages, facts_of = {}, {}
    for stage in STAGES:
        st = _empty_stage(stage)
        utts = list(stage_utterances.get(stage, []))
        cfg = cfgs[stage]
        for u in utts:
            m = float(u.duration_s) / 60.0
            emo = (u.emotion or "").strip() or DEFAULT_EMOTION
            st["minutes"] += m
            st["minutes_by_dataset"][u.dataset] = st["minutes_by_dataset"].get(u.dataset, 0.0) + m
            st["emotion_minutes"][emo] = st["emotion_minutes"].get(emo, 0.0) + m
            v = voice_of.get(u.speaker)
            if v is not None:
                st["voice_minutes"][v] += m
                st["voice_emotion_minutes"][v][emo] = st["voice_emotion_minutes"][v].get(emo, 0.0) + m
                facts_of[v] = u
        if utts:
            train, _ = split_eval(utts, cfg.eval_fraction, cfg.seed)
            rng = np.random.default_rng([int(cfg.seed), 0])
            by_speaker: dict[str, list] = {}
            for p in train:
                by_speaker.setdefault(p.speaker, []).append(p)
            refs = []
            for u in train:
                voice = voice_of.get(u.speaker)
                base = text_len(u.text) + PROMPT_OVERHEAD + FRAME_SIZE * u.n_frames + (voice is not None)
                if base > cfg.max_seq_len:
                    continue
                st["examples"] += 1
                if voice is not None:
                    st["with_voice"] += 1
                    continue
                if cfg.reference_prob > 0 and rng.random() < cfg.reference_prob:
                    others = [p for p in by_speaker.get(u.speaker, []) if p.utterance_id != u.utterance_id]
                    drawn = draw_reference(rng, others, (cfg.max_seq_len - base) // FRAME_SIZE,
                                           cfg.reference_min_frames, cfg.reference_max_frames)
                    if not isinstance(drawn, str):
                        refs.append(drawn[0][0].shape[0] / SNAC_FRAMES_PER_SECOND)
            st["with_reference"] = len(refs)
            st["reference_seconds"] = [round(x, 2) for x in refs]
            st["reference_range_s"] = [round(cfg.reference_min_frames / SNAC_FRAMES_PER_SECOND, 2),
                                       round(cfg.reference_max_frames / SNAC_FRAMES_PER_SECOND, 2)]
            st["reference_histogram"] = reference_histogram(refs, REFERENCE_BINS_S[:-1] + (
                max(REFERENCE_BINS_S[-1], max(refs, default=0.0)),))
        stages[stage] = st
    vrows = {}
    for v in VOICES:
        spk = voices.assignments.get(v)
        u = facts_of.get(v)
        gender, accent = v.split("_")[:2]
        vrows[v] = {"speaker": spk, "dataset": u.dataset if u else None, "gender": u.gender if u else None,
                    "accent": u.accent if u else None, "region": "",
                    "matches_name": bool(u) and (u.gender, u.accent) == (gender, accent),
                    "basis": "token shards"}
    return _finish({"profile": profile_name, "source": "token shards", "hours_scale": hours_scale,
                    "voices": vrows, "stages": stages}, hours_scale, {})


def coverage_from_run(run_dir: str | Path, profile, encode_text=None, utterances: Sequence | None = None) -> dict:
    """The report from a run directory's token shards, phase selection and voices.
    ``utterances``: every utterance of the shards when the caller holds them already (a stage
    notebook: reading ~1,000 h of codes twice would double the RAM they take)."""
    import json

    from ..train.sequences import VoiceSelection, choose_builtin_voices
    from ..data.shards import iter_utterances
    from ..data.tokenize_audio import read_phase_ids
    from ..train.recipe import VOICES_FILE

    paths = RunPaths(Path(run_dir).expanduser().resolve())
    everything = list(iter_utterances(paths.tokens)) if utterances is None else list(utterances)
    by_id = {u.utterance_id: u for u in everything}
    cfgs, stage_utts = {}, {}
    for stage in STAGES:
        f = paths.stage(stage) / "config.json"
        cfgs[stage] = (stage_config(stage, profile) if not f.is_file() else _cfg_from_file(f))
        ids = read_phase_ids(paths.tokens, cfgs[stage].phase)
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise FileNotFoundError(f"phase {cfgs[stage].phase} lists {len(missing)} utterance(s) no shard in "
                                    f"{paths.tokens} holds (first: {missing[:3]}); rerun 02_tokenize")
        stage_utts[stage] = [by_id[i] for i in ids]
    sel = None
    for s in STAGES:
        f = paths.stage(s) / VOICES_FILE
        if f.is_file():
            sel = VoiceSelection.from_dict(json.loads(f.read_text()))
            break
    if sel is None:
        sel = choose_builtin_voices(everything)
    rep = coverage_from_utterances(stage_utts, sel, cfgs, encode_text, profile.name, float(profile.hours_scale))
    rep["source"] = "token shards of the run directory"
    rep["run_dir"] = str(paths.root)  # never copied into an export (model_record): no private paths there
    return rep


def planned_voices(manifest) -> tuple[list[dict], str | None]:
    """01's check of the built-in voices: one row per voice (its planned corpus speaker, the speaker the
    kept clips of ``manifest`` would give it, minutes) and the fallback message, None when every planned
    speaker is there. 04 stops on a fallback unless the run accepts it
    (:func:`helpers.train.recipe.voices_for_stage`); this says so before any GPU time is spent."""
    from types import SimpleNamespace

    from ..train.sequences import choose_builtin_voices, fallback_message

    kept = manifest[(manifest["status"] == "kept") & manifest["speaker"].notna()]
    utts = [SimpleNamespace(utterance_id=r.utterance_id, speaker=r.speaker, gender=r.gender, accent=r.accent,
                            dataset=r.dataset, duration_s=float(r.duration_s)) for r in kept.itertuples()]
    sel = choose_builtin_voices(utts)
    return sel.table(), fallback_message(sel)


def _cfg_from_file(f: Path):
    import json

    return StageConfig.from_dict(json.loads(f.read_text()))


# ----------------------------------------------------------------------------- the report
def _finish(rep: dict, hours_scale: float, titles: dict) -> dict:
    threshold = MIN_EMOTION_MINUTES * hours_scale
    stages = rep["stages"]
    sources = emotion_sources()
    table = []
    for e in EMOTIONS:
        row = {"emotion": e, "labels": ", ".join(sources[e]) or "none"}
        for s in STAGES:
            row[f"stage{s}_min"] = round(stages[s]["emotion_minutes"].get(e, 0.0), 2)
        total = sum(stages[s]["emotion_minutes"].get(e, 0.0) for s in STAGES)
        row["trained"] = total >= threshold > 0
        if not row["trained"]:
            row["why_not"] = SF.UNTRAINED_EMOTION_NOTES.get(e, "no label of the phase mix" if not sources[e]
                                                            else f"under {threshold:g} min in stages 2-4")
        table.append(row)
    problems = []
    for v, row in rep["voices"].items():
        if not row["matches_name"]:
            problems.append(f"{v}: speaker {row['speaker']} is {row['gender']}/{row['accent']}"
                            f"{' (' + row['region'] + ')' if row['region'] else ''}, not what the name says")
        for s in STAGES:
            if stages[s]["voice_minutes"][v] <= 0:
                problems.append(f"{v}: no minutes in stage {s}")
    for s in STAGES:
        st = stages[s]
        for k in ("minutes", "replay_minutes", "examples", "with_voice", "with_reference"):
            st[k] = round(float(st[k]), 2) if k.endswith("minutes") else int(round(st[k]))
        for k in ("voice_minutes", "emotion_minutes", "minutes_by_dataset", "shortfall_minutes"):
            st[k] = {a: round(b, 2) for a, b in st[k].items()}
        st["voice_emotion_minutes"] = {v: {e: round(m, 2) for e, m in d.items() if m > 0}
                                       for v, d in st["voice_emotion_minutes"].items()}
    rep.update({
        "stage_numbers": list(STAGES), "emotion_stage": EMOTION_STAGE, "min_emotion_minutes": threshold,
        "replay_minutes_per_voice": SF.VOICE_REPLAY_MINUTES,
        "reference_bounds_s": [REFERENCE_MIN_S, REFERENCE_MAX_S],
        "emotion_table": table,
        "trained_emotions": [r["emotion"] for r in table if r["trained"]],
        "untrained_emotions": {r["emotion"]: r["why_not"] for r in table if not r["trained"]},
        "problems": problems,
    })
    return rep


def coverage_report(profile: Profile | str = "colab", run_dir: str | Path | None = None, encode_text=None,
                    utterances: Sequence | None = None) -> dict:
    """Minutes per stage × voice × emotion, references per stage, the emotion table.

    ``run_dir`` None: from the catalog's facts (hub profiles; before any download). Otherwise
    from the run's token shards (any profile; ``utterances``: the shards' utterances, if already
    loaded). See the module docstring for the shape.
    """
    profile = as_profile(profile)
    if run_dir is not None:
        return coverage_from_run(run_dir, profile, encode_text, utterances)
    return coverage_from_catalog(profile)


def model_record(report: dict) -> dict:
    """The part of a report an export records in ``optimum_tts.json`` (``"coverage"``)."""
    st = report["stages"]
    pairs: dict[str, dict[str, float]] = {v: {} for v in VOICES}
    for s in STAGES:
        for v, d in st[s]["voice_emotion_minutes"].items():
            for e, m in d.items():
                pairs[v][e] = round(pairs[v].get(e, 0.0) + m, 2)
    return {
        "source": report["source"],
        "voice_minutes": {v: {str(s): st[s]["voice_minutes"][v] for s in STAGES} for v in VOICES},
        "emotion_minutes": {e: {str(s): st[s]["emotion_minutes"].get(e, 0.0) for s in STAGES} for e in EMOTIONS},
        "voice_emotion_minutes": pairs,
        "trained_emotions": list(report["trained_emotions"]),
        "min_emotion_minutes": report["min_emotion_minutes"],
        "emotion_stage": report["emotion_stage"],
        "reference_bounds_s": list(report["reference_bounds_s"]),
        "with_reference": {str(s): st[s]["with_reference"] for s in STAGES},
    }


def run_record(paths, base_model: str) -> dict | None:
    """:func:`model_record` of a run directory's shards (None when it has none), for the export.
    The profile (for the emotion threshold) is the one whose base model the export names."""

    if not (Path(paths.tokens).is_dir() and any(Path(paths.tokens).glob("shard-*.parquet"))):
        return None
    name = next((p.name for p in PROFILES.values() if p.base_model == base_model), "colab")
    return model_record(coverage_report(name, run_dir=paths.root))


def format_coverage(report: dict) -> str:
    """The report as plain-text tables (what ``run_plan --coverage`` prints)."""
    out = [f"Coverage — profile {report['profile']}, from {report['source']}",
           f"(voice replay: {report['replay_minutes_per_voice']:g} min per voice per phase without its corpus; "
           f"references {report['reference_bounds_s'][0]:g}-{report['reference_bounds_s'][1]:g} s)", "",
           "Built-in voices: minutes per stage"]
    head = f"  {'voice':<13} {'speaker':<20} {'gender':<7} {'accent':<8} {'ok':<3} " + " ".join(
        f"{'stage ' + str(s):>9}" for s in STAGES)
    out.append(head)
    for v, r in report["voices"].items():
        mins = " ".join(f"{report['stages'][s]['voice_minutes'][v]:>9.1f}" for s in STAGES)
        out.append(f"  {v:<13} {str(r['speaker']):<20} {str(r['gender']):<7} {str(r['accent']):<8} "
                   f"{'yes' if r['matches_name'] else 'NO':<3} {mins}")
    out += ["", f"Emotions: minutes per stage (trained = >= {report['min_emotion_minutes']:g} min in stages 2-4; "
                f"stage {report['emotion_stage']} is the emotion stage)"]
    out.append(f"  {'emotion':<12} " + " ".join(f"{'stage ' + str(s):>9}" for s in STAGES) + "  trained  labels")
    for r in report["emotion_table"]:
        out.append(f"  {r['emotion']:<12} " + " ".join(f"{r[f'stage{s}_min']:>9.1f}" for s in STAGES)
                   + f"  {'yes' if r['trained'] else 'no ':<7}  {r['labels'] if r['trained'] else r['why_not']}")
    out += ["", "Voice × emotion minutes in the emotion stage"]
    es = report["stages"][report["emotion_stage"]]["voice_emotion_minutes"]
    for v in report["voices"]:
        pairs = ", ".join(f"{e} {m:.1f}" for e, m in sorted(es.get(v, {}).items(), key=lambda x: -x[1]))
        out.append(f"  {v:<13} {pairs or 'none'}")
    out += ["", "Examples and cloning references per stage"]
    for s in STAGES:
        st = report["stages"][s]
        hist = ", ".join(f"{h['from_s']:g}-{h['to_s']:g} s: {h['references']:g}" for h in st["reference_histogram"])
        out.append(f"  stage {s}: {st['minutes'] / 60:.1f} h ({st['replay_minutes']:.0f} min replay), "
                   f"{st['examples']:,} examples, {st['with_voice']:,} with a voice token, "
                   f"{st['with_reference']:,} with a reference [{hist}]")
        if st["shortfall_minutes"]:
            out.append("    shortfall: " + ", ".join(f"{d} {m / 60:.1f} h" for d, m in st["shortfall_minutes"].items()))
    out += ["", "Problems: " + ("none" if not report["problems"] else "")]
    out += [f"  - {p}" for p in report["problems"]]
    return "\n".join(out)


__all__ = ["EMOTION_STAGE", "emotion_sources", "coverage_report", "coverage_from_catalog",
           "coverage_from_utterances", "coverage_from_run", "format_coverage", "model_record", "run_record"]
