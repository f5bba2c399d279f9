"""The run plan: what a run costs per notebook before it spends anything (``python -m helpers.plan``).

Per notebook: data hours, tokens, optimizer steps, GPU hours, compute units, local-disk peak and
Drive peak (live data plus what sits in Drive's Trash). Sources:

* before 01: the catalog's phase mixes (:data:`helpers.data.catalog.PHASES` × ``Profile.hours_scale``),
  the stage configs (:func:`helpers.train.config.stage_config`: epochs, tokens per step, saves) and the
  planner's memory/speed model for Colab's A100 (:mod:`helpers.train.planner`);
* with ``run_dir``: the real sizes of what is there (manifest, token shards, stage models,
  checkpoints) and the real hours of each phase from the token shards.

The Drive figures are not a parallel estimate: each stage is replayed through
:func:`helpers.train.checkpoints.simulate_stage`, which runs the very action lists
(:func:`~helpers.train.checkpoints.publish_actions`, :func:`~helpers.train.checkpoints.finish_actions`) that
the trainer executes, with the config's ``keep_last`` and ``drive_deletion``.

Compute units: Colab bills GPU time in compute units (CU; 100 CU = 10 USD, Colab Pro includes 100
a month). An A100 runtime was measured at 13.08 CU per hour (currypurin.com, "Colaboratoryの有料プラン
の仕組みが変更", 2022-09-30: T4 1.96, V100 5.36, A100 13.08 CU/h); Colab does not publish the rate
and it changes, so it is a parameter (:data:`CU_PER_A100_HOUR`).
"""
from __future__ import annotations

import math
from pathlib import Path

from ..train import checkpoints as ckpt, plan_model
from ..colab.drive import DAILY_UPLOAD_LIMIT, DAILY_UPLOAD_MARGIN, GB, tree_bytes
from ..evaluate.protocol_specs import get_protocol
from ..profiles import Profile, RunPaths, as_profile, TINY_LLAMA
from ..data.catalog import PHASES
from ..train.plan_memory import estimate_memory
from ..train.config import stage_config
from ..models import COMPLETE_MARKER
from ..tiny_models import TINY_BPE_VOCAB_SIZE, TINY_LLAMA_CONFIG
from ..tokens import AUDIO_TOKENS_PER_SECOND, N_NEW_TOKENS

CU_PER_A100_HOUR = 13.08  # measured Colab A100 rate (see the module doc); Colab does not publish it
COLAB_PRO_CU_PER_MONTH = 100
PLAN_GPU = "A100-40GB"
CODE_BYTES_PER_AUDIO_TOKEN = 2  # token shards hold int16 SNAC codes: 82 codes per second of audio
MANIFEST_BYTES_PER_CLIP = 300  # 01's manifest row (ids, text, decisions), parquet-compressed
MEAN_CLIP_S = 8.0
BF16 = 2  # bytes per parameter of a saved model (stage models, export) in bf16
# torch.save of a checkpoint to the VM's local disk (modelled, not measured): what one save blocks training.
LOCAL_WRITE_BYTES_PER_S = 0.5e9
# Time of the notebooks the planner does not model: the README's figures (targets, not measurements).
FIXED_GPU_HOURS = {"00_snac_test": 0.1, "03_vocab_extension": 0.1, "07_evaluate": 0.5, "08_publish": 0.2}
# 07's zero-shot protocols, per item (an assumption until 07 measures it: it prints its own rate and re-plans):
# the worst case of a barely trained model, every clip at the 40 s length guard (3,444 audio tokens), generated
# 8 at a time at ~600 audio tokens/s aggregate on an A100 (~5.7 s), plus the judges on the clip and on the
# ground-truth recording (Whisper large-v3, speaker encoder, MOS: ~2 s).
PROTOCOL_S_PER_ITEM = 8.0
EVAL_PROTOCOLS = ("seedtts-test-en", "librispeech-pc-test-clean")  # 07's default protocols
TOKENIZE_GPU_HOURS_PER_1000H = 1.0  # 02's target (< 1 h of A100 per 1,000 h of audio); bench_data measures it
EVAL_DRIVE_BYTES = int(0.2 * GB)  # 07: report, figures, listening clips
STAGE_NOTEBOOK = {2: "04_stage2", 3: "05_stage3", 4: "06_stage4"}


def _shape(profile):
    """The model's shape (ModelShape) for the profile: Llama 3.2 3B with the extended vocabulary, or tiny."""
    import types

    if profile.base_model == TINY_LLAMA:

        cfg = types.SimpleNamespace(**TINY_LLAMA_CONFIG, vocab_size=TINY_BPE_VOCAB_SIZE + N_NEW_TOKENS)
        return plan_model.ModelShape.from_config(cfg)
    return plan_model.LLAMA_3_2_3B_AUDIO


def _catalog_phase_hours(profile) -> dict[int, float]:

    return {n: ph.hours * profile.hours_scale for n, ph in PHASES.items()}


def _catalog_data_hours(profile) -> float:
    """Hours 01 must process: each (dataset, split) once, at the largest amount any phase draws."""

    most: dict[tuple, float] = {}
    for ph in PHASES.values():
        for e in ph.entries:
            key = (e.dataset, e.split_role)
            most[key] = max(most.get(key, 0.0), e.hours)
    return sum(most.values()) * profile.hours_scale


def _run_phase_hours(tokens_dir: Path) -> dict[int, float] | None:
    """Real hours per phase from 02's shards (durations only, no codes read); None before 02."""
    import pyarrow.parquet as pq

    from ..data.shards import list_shards
    from ..data.tokenize_audio import read_phase_ids

    shards = list_shards(tokens_dir) if tokens_dir.is_dir() else []
    if not shards:
        return None
    dur: dict[str, float] = {}
    for p in shards:
        t = pq.read_table(p, columns=["utterance_id", "duration_s"])
        dur.update(zip(t.column("utterance_id").to_pylist(), t.column("duration_s").to_pylist()))
    out = {}
    for n in (1, 2, 3):
        try:
            out[n] = sum(dur.get(i, 0.0) for i in read_phase_ids(tokens_dir, n)) / 3600
        except (FileNotFoundError, ValueError):
            return None
    return out


def checkpoint_bytes(shape, cfg) -> int:
    """Bytes of one checkpoint of ``cfg`` (weights in the training dtype + optimizer state)."""
    from ..train.stage_plan import train_plan_of

    n = shape.param_count()
    tp = train_plan_of(cfg) if cfg.precision != "fp32" else None
    if tp is None:  # fp32 weights + fp32 AdamW moments (CPU / tiny)
        return n * (4 + 8)
    mem = estimate_memory(shape, tp)
    weights = n * (2 if cfg.model_dtype == "bfloat16" else 4)
    return weights + (mem.master_weights if cfg.model_dtype == "bfloat16" else 0) + mem.optimizer_states + mem.cpu


def _stage_plan(stage: int, profile, shape, hours: float, drive_deletion: str | None, real: dict) -> dict:
    """Tokens, steps, GPU hours, saves and checkpoint size of one training stage."""
    from ..train.stage_plan import plan_stage

    over = {"drive_deletion": drive_deletion} if drive_deletion else {}
    cfg = stage_config(stage, profile, progress=False, **over)
    model_config = _ShapeConfig(shape)
    import io
    import contextlib

    with contextlib.redirect_stdout(io.StringIO()):
        gplan, cfg = plan_stage(cfg, model_config, gpu=PLAN_GPU, audio_hours=max(hours, 1e-6), log=lambda m: None)
    per_step = cfg.max_seq_len * cfg.grad_accum
    if cfg.max_steps is not None:
        steps = cfg.max_steps
        tokens = steps * per_step
        epochs = None
    else:
        epochs = cfg.epochs
        tokens = plan_model.stage_tokens(max(hours, 1e-6), epochs=epochs)
        steps = max(1, math.ceil(tokens / per_step))  # padding-free packing: bins are nearly full
    train_hours = tokens / gplan.throughput.tokens_per_s / 3600
    ck = real.get("checkpoint_bytes") or checkpoint_bytes(shape, cfg)
    saves = 1  # the end of the stage
    if cfg.save_every:
        saves += steps // cfg.save_every
    cadence_min = None
    if cfg.save_every_minutes:
        # the recipe stretches the cadence to what Drive's daily upload limit allows (same function)
        cadence_min = max(cfg.save_every_minutes, ckpt.drive_interval_s(ck) / 60)
        saves += int(train_hours * 60 // cadence_min)
    if real.get("checkpoint_saves"):
        saves = real["checkpoint_saves"]
    final = real.get("final_bytes") or shape.param_count() * (2 if cfg.model_dtype == "bfloat16" else 4)
    # GB reaching Drive on the busiest day of the stage: its checkpoints at the cadence, plus the final model
    per_day = ck * saves + final
    if cadence_min:
        per_day = min(per_day, ck * 1440 / cadence_min + final)
    upload_rate = ck / (cadence_min * 60) if cadence_min else None  # bytes/s that keeps pace with the cadence
    # A save blocks training only for the local write of the state (helpers.train.background); hashing,
    # the copy to Drive and retention run while training continues.
    save_block_s = ck / LOCAL_WRITE_BYTES_PER_S
    gpu_hours = train_hours + saves * save_block_s / 3600
    return {"stage": stage, "phase": cfg.phase, "data_hours": hours, "epochs": epochs, "tokens": tokens,
            "steps": steps, "gpu_hours": gpu_hours, "tokens_per_s": gplan.throughput.tokens_per_s,
            "save_block_s": save_block_s,
            "memory_plan": gplan.train.implementation, "checkpoint_bytes": ck, "saves": saves,
            # the configuration the recipe runs on PLAN_GPU, with its predicted speed and peak memory
            "config": (gplan.auto[0] if gplan.auto else
                       f"{cfg.max_seq_len:,} tokens x {cfg.grad_accum} micro-batches, {gplan.train.attention}, "
                       f"checkpointing {cfg.checkpointing}: predicted {gplan.throughput.tokens_per_s:,.0f} tokens/s, "
                       f"peak {gplan.memory.peak / plan_model.GIB:.1f} GiB of {gplan.gpu.memory_gib:.1f} GiB"),
            "auto_config": bool(gplan.auto), "peak_gib": gplan.memory.peak / plan_model.GIB,
            "gpu_memory_gib": gplan.gpu.memory_gib, "mfu": gplan.throughput.mfu,
            "final_bytes": final, "keep_last": cfg.keep_last, "drive_deletion": cfg.drive_deletion,
            "save_every_minutes": cfg.save_every_minutes, "save_every": cfg.save_every,
            "cadence_minutes": cadence_min, "upload_gb_per_day": per_day / GB,
            "upload_rate_needed": upload_rate}


class _ShapeConfig:
    """A model config with the attribute names ModelShape.from_config reads (no model loaded)."""

    def __init__(self, shape):
        self.hidden_size, self.num_hidden_layers = shape.hidden, shape.layers
        self.num_attention_heads, self.num_key_value_heads = shape.heads, shape.kv_heads
        self.intermediate_size, self.vocab_size = shape.intermediate, shape.vocab
        self.tie_word_embeddings, self.head_dim = shape.tied, shape.head_dim


def _real_stage_facts(stage_dir: Path) -> dict:
    """What a run directory says about a stage: final model size, its checkpoints' size and count."""
    import json

    out = {}
    marker = stage_dir / "model" / COMPLETE_MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text()).get("metadata", {})
        out["final_bytes"] = tree_bytes(stage_dir / "model")
        if meta.get("checkpoint_bytes"):
            out["checkpoint_bytes"] = int(meta["checkpoint_bytes"])
        if meta.get("checkpoint_saves"):
            out["checkpoint_saves"] = int(meta["checkpoint_saves"])
    found = ckpt.list_checkpoints(stage_dir / "checkpoints")
    if found and "checkpoint_bytes" not in out:
        out["checkpoint_bytes"] = tree_bytes(found[-1][1])
    return out


def build_plan(profile: Profile | str, run_dir=None, drive_free_gb: float | None = None,
               drive_deletion: str | None = None) -> dict:
    """The run plan of ``profile`` (see the module doc) as a JSON-able dict.

    ``run_dir``: an existing run directory (real sizes and hours); ``drive_free_gb``: the user's
    free Drive space (checked by :func:`plan_problems`); ``drive_deletion``: "trash" or
    "permanent" (default: the profile's stage config).
    """
    profile = as_profile(profile)
    shape = _shape(profile)
    paths = RunPaths(Path(run_dir).expanduser().resolve()) if run_dir else None
    phase_hours = (_run_phase_hours(paths.tokens) if paths else None)
    source = "token shards of the run" if phase_hours else "catalog phase mixes"
    if phase_hours is None:
        phase_hours = _catalog_phase_hours(profile)
    data_hours = _catalog_data_hours(profile)

    def real(path: Path, estimate: int) -> int:
        if paths is not None and path.exists():
            return tree_bytes(path)
        return int(estimate)

    rows, live, trash, peak_all = [], 0, 0, 0

    def row(nb, does, *, hours=None, tokens=None, steps=None, gpu_hours=None, local=0, peak=None, extra=None):
        nonlocal peak_all
        p = max(peak if peak is not None else 0, live + trash)
        peak_all = max(peak_all, p)
        rows.append({"notebook": nb, "does": does, "data_hours": hours, "tokens": tokens, "steps": steps,
                     "gpu_hours": gpu_hours, "compute_units": None if gpu_hours is None else gpu_hours * CU_PER_A100_HOUR,
                     "local_peak_gb": local / GB, "drive_peak_gb": p / GB, "drive_after_gb": live / GB,
                     "trash_gb": trash / GB, **(extra or {})})

    on_cpu = profile.base_model == TINY_LLAMA  # the tiny profile runs on CPU: no GPU hours or compute units
    fixed = {k: (None if on_cpu else v) for k, v in FIXED_GPU_HOURS.items()}
    row("00_snac_test", "SNAC round trip", gpu_hours=fixed["00_snac_test"])
    clips = data_hours * 3600 / MEAN_CLIP_S
    live += real(paths.preprocess if paths else Path("-"), clips * MANIFEST_BYTES_PER_CLIP)
    row("01_preprocess", "analyse + select clips (CPU; bench_data measures its speed)", hours=data_hours)

    total_phase_h = sum(phase_hours.values())
    audio_tokens = int(total_phase_h * 3600 * AUDIO_TOKENS_PER_SECOND)
    live += real(paths.tokens if paths else Path("-"), audio_tokens * CODE_BYTES_PER_AUDIO_TOKEN)
    row("02_tokenize", "SNAC-encode the kept clips", hours=total_phase_h, tokens=audio_tokens,
        gpu_hours=None if on_cpu else total_phase_h / 1000 * TOKENIZE_GPU_HOURS_PER_1000H)
    stage1 = real(paths.stage(1) if paths else Path("-"), shape.param_count() * BF16)
    live += stage1
    row("03_vocab_extension", "stage 1: extended vocabulary", gpu_hours=fixed["03_vocab_extension"],
        local=shape.param_count() * BF16)
    stages = {}
    for stage in (2, 3, 4):
        facts = _real_stage_facts(paths.stage(stage)) if paths else {}
        sp = _stage_plan(stage, profile, shape, phase_hours[stage - 1], drive_deletion, facts)
        sim = ckpt.simulate_stage(sp["checkpoint_bytes"], sp["saves"], sp["final_bytes"], keep_last=sp["keep_last"],
                                  deletion=sp["drive_deletion"], base_bytes=live)
        stage_peak = sim["peak"] + trash
        live, trash = sim["end_live"], trash + sim["trash"]
        sp.update(drive_peak=stage_peak, trash_added=sim["trash"], max_checkpoints=sim["max_checkpoints"])
        stages[stage] = sp
        row(STAGE_NOTEBOOK[stage], f"stage {stage}: phase {sp['phase']}, {sp['epochs'] or '-'} epoch(s)",
            hours=sp["data_hours"], tokens=sp["tokens"], steps=sp["steps"], gpu_hours=None if on_cpu else sp["gpu_hours"],
            local=sp["checkpoint_bytes"], peak=stage_peak)
    live += real(paths.eval if paths else Path("-"), EVAL_DRIVE_BYTES)
    n_protocol = protocol_items_planned(profile)
    measured = measured_protocol_s_per_item(paths.eval) if paths else None
    per_item = measured if measured is not None else PROTOCOL_S_PER_ITEM
    eval_h = None if on_cpu else fixed["07_evaluate"] + n_protocol * per_item / 3600.0
    row("07_evaluate", f"test set + {n_protocol:,} protocol items ({per_item:.1f} s each, "
        f"{'measured by this run' if measured is not None else 'assumed'})", gpu_hours=eval_h,
        local=shape.param_count() * BF16)
    export = shape.param_count() * BF16
    live += real(paths.export if paths else Path("-"), export)
    row("08_publish", "export (bf16) + upload", gpu_hours=fixed["08_publish"], local=export)

    gpu_total = sum(r["gpu_hours"] or 0 for r in rows)
    deletion = stages[2]["drive_deletion"]
    return {
        "profile": profile.name, "run_dir": str(paths.root) if paths else None, "hours_source": source,
        "gpu": PLAN_GPU, "cu_per_gpu_hour": CU_PER_A100_HOUR, "drive_deletion": deletion,
        "drive_free_gb": drive_free_gb, "notebooks": rows,
        "stages": {str(k): v for k, v in stages.items()},
        "totals": {"gpu_hours": gpu_total, "compute_units": gpu_total * CU_PER_A100_HOUR,
                   "colab_pro_months": gpu_total * CU_PER_A100_HOUR / COLAB_PRO_CU_PER_MONTH,
                   "drive_peak_gb": peak_all / GB, "drive_end_gb": live / GB, "trash_gb": trash / GB},
        "notes": _notes(deletion),
    }


def protocol_items_planned(profile: Profile) -> int:
    """Items 07 generates over its default protocols: the profile's seeded sample of each, else the full lists."""

    n = [get_protocol(name).n_items for name in EVAL_PROTOCOLS]
    k = profile.protocol_sample
    return sum(x if k is None else min(k, x) for x in n)


def measured_protocol_s_per_item(eval_dir) -> float | None:
    """Seconds per protocol item that 07 measured in ``eval_dir`` (generation, shared out over its batch, plus
    scoring the clip and the ground truth): the mean over the items cached under ``protocols/items``; None
    before 07 ran."""
    import json

    per_item: dict = {}
    folder = Path(eval_dir) / "protocols" / "items"
    for f in folder.glob("*/*.json") if folder.is_dir() else ():
        for r in json.loads(f.read_text(encoding="utf-8")):
            t = sum(v for v in (r.get("gen_s"), r.get("score_s")) if isinstance(v, (int, float)) and v == v)
            per_item[(f.parent.name, r.get("item_id"))] = per_item.get((f.parent.name, r.get("item_id")), 0.0) + t
    return sum(per_item.values()) / len(per_item) if per_item else None


def _notes(deletion: str) -> list[str]:
    out = ["GPU hours of stages 2-4: the planner's model for Colab's A100-40GB (55 % utilisation assumed; "
           "not yet measured); 00/03/08 and 07's test set: the README's figures; 07's protocols: items x "
           f"{PROTOCOL_S_PER_ITEM:g} s per item (assumed; 07 prints its measured rate); 02: its target of < 1 h "
           "per 1,000 h. 01, 02 and 07 measure their own rate in their first minutes and print re-planned hours.",
           f"compute units at {CU_PER_A100_HOUR} CU per A100 hour (measured 2022 rate; Colab does not publish it).",
           "Drive, at worst: keep_last checkpoints confirmed on Drive through the Drive API and one more being "
           "uploaded (keep_last + 1 = 2 at once): a save never starts an upload beside one still running "
           "(it stays on the VM's disk; the next save tries again), and the last save of a stage is confirmed "
           "before the final model is written; a stage's checkpoints are deleted once its final model is "
           "confirmed on Drive (helpers.train.checkpoints)."]
    if deletion == "permanent":
        out.append("deleted checkpoints are removed permanently through the Drive API (asks once for Drive "
                   "access); small files replaced in place (metrics.csv, eval.csv) may leave old versions in "
                   "the Trash (kilobytes).")
    else:
        out.append("drive_deletion='trash': every deleted checkpoint stays in Drive's Trash for 30 days and "
                   "counts against the quota (included in the peaks above); drive_deletion='permanent' avoids it.")
    return out


def plan_problems(plan: dict) -> list[str]:
    """What does not fit (empty = fits): each line names the shortfall and what to change."""
    free = plan.get("drive_free_gb")
    if free is None:
        return []
    peak = plan["totals"]["drive_peak_gb"]
    if peak <= free:
        return []
    worst = max(plan["notebooks"], key=lambda r: r["drive_peak_gb"])
    msg = (f"the run needs {peak:.1f} GB of Drive at its peak (during {worst['notebook']}), {free:.1f} GB are "
           f"free: short by {peak - free:.1f} GB. ")
    fixes = []
    if plan["drive_deletion"] == "trash" and plan["totals"]["trash_gb"] > 0:
        fixes.append(f"set drive_deletion='permanent' (saves {plan['totals']['trash_gb']:.1f} GB of Trash)")
    fixes.append(f"free at least {peak - free:.1f} GB on Drive (empty its Trash) or get more Drive storage")
    return [msg + "Change: " + "; or ".join(fixes) + "."]


def format_plan(plan: dict) -> str:
    """The plan as a text table plus totals and notes (what the notebooks print)."""
    head = (f"Run plan: profile {plan['profile']!r}, hours from the {plan['hours_source']}, GPU {plan['gpu']}, "
            f"Drive deletion {plan['drive_deletion']!r}")
    cols = ["notebook", "data h", "tokens", "steps", "GPU h", "CU", "local GB", "Drive peak GB", "Drive after GB"]
    lines = [head, "", " | ".join(f"{c:>14}" if i else f"{c:<19}" for i, c in enumerate(cols))]

    def f(v, fmt):
        if v is None:
            return "-"
        if fmt == ".1f" and 0 < v < 0.1:  # tiny runs: megabytes
            fmt = ".4f"
        return format(v, fmt)

    for r in plan["notebooks"]:
        vals = [r["notebook"], f(r["data_hours"], ",.1f"), f(r["tokens"], ",d"), f(r["steps"], ",d"),
                f(r["gpu_hours"], ",.1f"), f(r["compute_units"], ",.0f"), f(r["local_peak_gb"], ".1f"),
                f(r["drive_peak_gb"], ".1f"), f(r["drive_after_gb"], ".1f")]
        lines.append(" | ".join(f"{v:>14}" if i else f"{v:<19}" for i, v in enumerate(vals)))
    t = plan["totals"]
    lines += ["", f"total: {t['gpu_hours']:.1f} GPU h ≈ {t['compute_units']:,.0f} compute units "
                  f"(≈ {t['colab_pro_months']:.1f} months of Colab Pro's 100 CU); Drive peak {t['drive_peak_gb']:.1f} GB "
                  f"(Trash {t['trash_gb']:.1f} GB), {t['drive_end_gb']:.1f} GB at the end"]
    for k, s in plan["stages"].items():
        when = ", ".join(x for x in (f"every {s['cadence_minutes']:.0f} min" if s.get("cadence_minutes") else "",
                                     f"every {s['save_every']} steps" if s["save_every"] else "") if x)
        lines.append(f"stage {k}: {s['steps']:,} steps ≈ {s['gpu_hours']:.1f} h at {s['tokens_per_s']:,.0f} tokens/s "
                     f"({s['memory_plan']}); checkpoint {s['checkpoint_bytes'] / GB:.1f} GB saved {when} and at the end "
                     f"(~{s['saves']} saves, each blocking training ~{s['save_block_s']:.0f} s for the local write; hashing and the copy to Drive run in the background), at most {s['max_checkpoints']} on Drive at once")
        lines.append(f"  config on {plan['gpu']} ({'auto-config' if s['auto_config'] else 'as configured'}): "
                     f"{s['config']}")
        if s.get("cadence_minutes"):
            slow = 5e6  # what a user with a slower mount gets, at 5 MB/s
            lines.append(
                f"  Drive uploads: {s['upload_gb_per_day']:.0f} GB per day of training (Drive allows "
                f"{DAILY_UPLOAD_LIMIT / GB:.0f} GB/day; the cadence keeps {1 - DAILY_UPLOAD_MARGIN:.0%} margin: "
                f"save_every_minutes={s['save_every_minutes']:g} stretched to {s['cadence_minutes']:.0f} min); "
                f"keeping pace needs >= {s['upload_rate_needed'] / 1e6:.1f} MB/s of sustained upload. A slower "
                f"mount gets fewer checkpoints on Drive, never more at once: at {slow / 1e6:.0f} MB/s one every "
                f"{ckpt.drive_interval_s(s['checkpoint_bytes'], slow) / 60:.0f} min (saves in between stay on "
                "the VM's disk)")
    if plan.get("drive_free_gb") is not None:
        fits = not plan_problems(plan)
        lines.append(f"Drive free: {plan['drive_free_gb']:.1f} GB -> {'fits' if fits else 'DOES NOT FIT'}")
    lines += [""] + [f"- {n}" for n in plan["notes"]]
    return "\n".join(lines)
