"""Stage planning glue: the GPU planner's choice applied to a :class:`~helpers.train.config.StageConfig`.

:func:`plan_stage` fills the memory fields a config leaves None from :mod:`helpers.train.planner`
for the GPU at hand (or keeps a run in progress's math settings and re-plans only how it is
computed); :func:`train_plan_of` is the inverse: the planner's TrainPlan that a config realises.
Kept apart from the typed config so that the config imports nothing of the trainer.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import types
from pathlib import Path
from typing import Any

from . import planner, plan_memory, plan_model
from .config import BF16_OPTIMIZERS, PLAN_TARGET_GPU, PLANNED_FIELDS, REPLANNABLE_FIELDS, StageConfig
from .distributed import config_name_for, zero_settings
from .memory import settings_for_plan
from .plan_memory import TrainPlan

_CPU_DEFAULTS = dict(precision="fp32", optimizer="adamw_torch", optimizer_state="fp32", checkpointing="none",
                     selective_every=2, ce_chunk=0)


def train_plan_of(cfg: StageConfig, n_gpus: int = 1):
    """The :class:`helpers.train.planner.TrainPlan` that ``cfg``'s memory fields realise (inverse of
    :func:`helpers.train.memory.settings_for_plan`), or None for precision="fp32" (fp32 compute is not
    modelled by the planner, which assumes bf16 compute)."""
    cfg.require_planned()
    common = dict(checkpointing=cfg.checkpointing, selective_every=cfg.selective_every,
                  checkpointed_layers=cfg.checkpoint_layers if cfg.checkpointing == "selective" else None,
                  ce="chunked" if cfg.ce_chunk else "full", ce_chunk_tokens=cfg.ce_chunk or 1024,
                  tokens_per_step=cfg.max_seq_len, grad_accum=cfg.grad_accum, n_gpus=int(n_gpus))
    if cfg.deepspeed is not None:
        stage, off_opt, off_par = zero_settings(cfg.deepspeed)
        return TrainPlan(precision="bf16_mixed_fp32_master", optimizer="adamw_fp32", grad_dtype="bf16",
                         zero_stage=stage, offload_optimizer=off_opt, offload_params=off_par, **common)
    if cfg.precision == "fp32":
        return None
    state = "adamw_bf16" if cfg.optimizer_state == "bf16" else "adamw_fp32"
    if cfg.precision == "bf16-mixed":
        opt = "adamw_8bit" if cfg.optimizer == "adamw_8bit" else "adamw_fp32"
        return TrainPlan(precision="bf16_mixed_fp32_master", optimizer=opt, grad_dtype="fp32", **common)
    if cfg.optimizer == "adamw_bf16_master":
        return TrainPlan(precision="bf16_mixed_fp32_master", optimizer=state, grad_dtype="bf16", **common)
    return TrainPlan(precision="bf16_pure", optimizer=state, stochastic_rounding=True, **common)


def _settings_from_plan(plan) -> dict[str, Any]:
    """The StageConfig memory fields of a planner Plan (through helpers.train.memory.settings_for_plan)."""
    import torch

    st = settings_for_plan(plan.train)
    if st.zero_stage:
        precision = "bf16-mixed"  # DeepSpeed bf16: bf16 model, fp32 masters inside DeepSpeed
    else:
        precision = "bf16-mixed" if st.autocast else "bf16-pure"
    return dict(precision=precision, optimizer=st.optimizer,
                optimizer_state="bf16" if st.state_dtype == torch.bfloat16 else "fp32",
                checkpointing=st.checkpointing, selective_every=st.selective_every, ce_chunk=st.ce_chunk,
                checkpoint_layers=st.checkpoint_layers,
                deepspeed=(f"configs/{config_name_for(st.zero_stage, st.offload_optimizer, st.offload_params)}"
                           if st.zero_stage else None))


def _replan_for_gpu(values: dict, replan: list, shape, plan, cfg: StageConfig, n: int) -> dict:
    """Activation checkpointing / CE chunk for a resumed run's kept math settings on this GPU."""
    probe = dataclasses.replace(cfg, **{k: (values[k] if values[k] is not None else _CPU_DEFAULTS.get(k))
                                        for k in PLANNED_FIELDS if k != "deepspeed"},
                                deepspeed=values["deepspeed"])
    fixed = train_plan_of(probe, n)
    if fixed is None:  # fp32 compute is not modelled: keep the CPU-like defaults
        return {k: _CPU_DEFAULTS[k] for k in replan}
    best = planner.replan_memory(shape, plan.gpu, fixed,
                                 headroom=planner.AUTO_HEADROOM if cfg.auto_config else planner.HEADROOM_FRACTION)
    if best is None:
        need = min(plan_memory.estimate_memory(shape, dataclasses.replace(fixed, checkpointing=c, ce=e)).peak
                   for c in plan_memory.CHECKPOINTING for e in plan_memory.CROSS_ENTROPY)
        raise planner.NoFeasiblePlan(
            f"the run in progress uses precision={values['precision']!r}, optimizer={values['optimizer']!r}, "
            f"optimizer_state={values['optimizer_state']!r}, deepspeed={values['deepspeed']!r} (they change the "
            f"math, so resume keeps them); with the most memory-saving checkpointing and CE chunk that needs "
            f"{need / plan_model.GIB:.1f} GiB, more than {plan.usable_bytes / plan_model.GIB:.1f} GiB usable on "
            f"{plan.gpu.name}. Resume on a larger GPU, or delete the stage's checkpoints to restart it with this "
            f"GPU's plan.")
    st = _settings_from_plan(types.SimpleNamespace(train=best))
    out = {k: st[k] for k in replan}
    if "checkpointing" in replan and cfg.checkpoint_layers is None:  # the count sized for this GPU
        out["checkpoint_layers"] = st["checkpoint_layers"]
    return out


def plan_stage(cfg: StageConfig, model_config, *, gpu=None, audio_hours: float | None = None,
               n_gpus: int | None = None, stage_dir: str | os.PathLike | None = None, log=print):
    """``(plan, cfg')``: the planner's choice for this stage's model and token budget, applied to ``cfg``.

    Runs :func:`helpers.train.planner.plan_for_gpu` with the shape of ``model_config`` (the
    loaded model's ``config``: real layers, width and extended vocabulary), ``max_seq_len``
    tokens per micro-batch and ``grad_accum`` micro-batches per step.

    - ``gpu``: the GPU to plan for and train on (a name like ``"A100-40GB"``, a size in GiB or a
      :class:`~helpers.train.planner.GPUSpec`); None = the detected CUDA GPU. Without one, the plan is
      made for :data:`PLAN_TARGET_GPU` as information only, and unset fields get CPU values
      (fp32, torch AdamW, no checkpointing, full CE).
    - Fields that are None in ``cfg`` (the colab profile leaves the memory fields None) are
      filled from the plan via :func:`helpers.train.memory.settings_for_plan` (including a
      ``configs/ds_*.json`` when the plan needs ZeRO offload). Fields the user set are kept;
      precision/optimizer/optimizer_state are one unit (the plan fills them only when all three
      are None). The resulting configuration's peak memory is then checked against the GPU and
      a loud WARNING is logged when it does not fit.
    - ``stage_dir``: when it holds the ``config.json`` of a run already in progress, its memory
      fields fill the None fields first, so a Colab reconnect on another GPU resumes with the
      settings it started with (exact resume needs them) — the fit check then says whether
      they still fit.
    - ``audio_hours``: hours of speech the stage trains on (for the time estimate; default:
      ``max_steps`` × tokens per step, or the planner's Stage-2 budget).
    - ``n_gpus``: data-parallel GPUs (default: ``$WORLD_SIZE`` or 1).
    - ``cfg.auto_config``: :func:`helpers.train.planner.auto_config` chooses the micro-batch
      (``max_seq_len``), accumulation, checkpointed layers, fused optimizer update, compiled layers and
      kernels for the GPU, keeping :data:`~helpers.train.planner.AUTO_HEADROOM` of its memory free; the
      returned plan prints the choice, its predicted tokens/s and peak memory (``plan.auto``), and ``cfg'``
      carries it to the recipe. A run in progress keeps its sizes (exact resume); without a CUDA GPU the
      sizes stay as configured and the auto-config is information.
    Raises :class:`helpers.train.planner.NoFeasiblePlan` when nothing fits the GPU.
    """
    n = int(n_gpus if n_gpus is not None else os.environ.get("WORLD_SIZE", 1))
    detected = planner.detect_gpu() if gpu is None else None  # through planner: one name to patch in tests
    on_gpu = gpu is not None or detected is not None
    target = gpu if gpu is not None else (detected or PLAN_TARGET_GPU)
    shape = plan_model.ModelShape.from_config(model_config)
    if audio_hours is not None:
        train_tokens = plan_model.stage_tokens(float(audio_hours), epochs=cfg.epochs if cfg.max_steps is None else 1.0)
    elif cfg.max_steps is not None:
        train_tokens = cfg.max_steps * cfg.grad_accum * cfg.max_seq_len * n
    else:
        train_tokens = None
    saved = {}
    if stage_dir is not None and (Path(stage_dir) / "config.json").is_file():
        saved = json.loads((Path(stage_dir) / "config.json").read_text())
    attention = None if cfg.attention == "auto" else cfg.attention
    if cfg.auto_config and saved:
        # a run in progress keeps the micro-batch and accumulation it started with (they change the math)
        sizes = {k: saved[k] for k in ("max_seq_len", "grad_accum") if saved.get(k) is not None}
        if on_gpu and sizes:
            cfg = dataclasses.replace(cfg, **sizes)
        plan = planner.plan_for_gpu(shape, target, tokens_per_step=cfg.max_seq_len, n_gpus=n,
                                    grad_accum=cfg.grad_accum, train_tokens=train_tokens, attention=attention,
                                    headroom=planner.AUTO_HEADROOM)
    elif cfg.auto_config:
        # fused optimizer update: BF16AdamW(fused="auto") compiles it on CUDA where Triton is installed
        fused = detected is None or importlib.util.find_spec("triton") is not None
        auto = planner.auto_config(shape, target, tokens_per_optimizer_step=cfg.max_seq_len * cfg.grad_accum,
                                   min_tokens_per_micro_batch=cfg.max_seq_len,
                                   attentions=None if attention is None else [attention], n_gpus=n,
                                   train_tokens=train_tokens, fused_optimizer=fused)
        plan = auto.plan
        if on_gpu:  # what the recipe runs; the CPU run keeps its own sizes (the plan is information)
            cfg = dataclasses.replace(cfg, max_seq_len=auto.tokens_per_micro_batch, grad_accum=auto.grad_accum,
                                      compile_layers=cfg.compile_layers or auto.compile_layers,
                                      kernels=cfg.kernels if cfg.kernels != "none" else auto.kernels)
    else:
        plan = planner.plan_for_gpu(shape, target, tokens_per_step=cfg.max_seq_len, n_gpus=n,
                                    grad_accum=cfg.grad_accum, train_tokens=train_tokens, attention=attention)

    values = {k: getattr(cfg, k) for k in PLANNED_FIELDS}
    previous = {k: saved.get(k) for k in PLANNED_FIELDS if saved.get(k) is not None}
    unset = [k for k in PLANNED_FIELDS if values[k] is None and k != "deepspeed"]
    if previous and unset:
        # A run in progress: keep what changes the math (precision, optimizer, its states, DeepSpeed);
        # re-plan how it is computed (activation checkpointing, CE chunk) for the GPU at hand.
        math_fields = [k for k in PLANNED_FIELDS if k not in REPLANNABLE_FIELDS]
        kept = [k for k in math_fields if values[k] is None and k in previous]
        for k in kept:
            values[k] = previous[k]
        replan = [k for k in unset if k in REPLANNABLE_FIELDS]
        if not on_gpu:  # nothing to re-plan for: the CPU run keeps what it started with
            for k in replan:
                values[k] = previous.get(k)
        log(f"plan_stage: a run of this stage is in progress in {stage_dir}; keeping the settings that change "
            f"the math ({', '.join(f'{k}={previous[k]!r}' for k in kept)}) so that it resumes exactly"
            + (f"; re-planning {', '.join(replan)} for this GPU" if on_gpu and replan else ""))
        if on_gpu and replan:
            values.update(_replan_for_gpu(values, replan, shape, plan, cfg, n))
        unset = [k for k in unset if values[k] is None]
    if unset:
        source = _settings_from_plan(plan) if on_gpu else dict(_CPU_DEFAULTS, deepspeed=None)
        unit = ("precision", "optimizer", "optimizer_state")
        unit_from_plan = all(values[k] is None for k in unit)
        if unit_from_plan:
            values.update({k: source[k] for k in unit})
        else:  # the user chose part of the unit: complete it consistently instead of mixing in the plan
            if values["precision"] is None:
                values["precision"] = ("bf16-pure" if values["optimizer"] in BF16_OPTIMIZERS else
                                       ("bf16-mixed" if on_gpu else "fp32"))
            if values["optimizer"] is None:
                values["optimizer"] = "adamw_bf16_master" if values["precision"] == "bf16-pure" else "adamw_torch"
            if values["optimizer_state"] is None:  # torchao's moments are in the parameters' dtype
                values["optimizer_state"] = "bf16" if values["optimizer"] == "adamw_bf16_torchao" else "fp32"
        if values["checkpointing"] is None and cfg.checkpoint_layers is None and source.get("checkpoint_layers"):
            values["checkpoint_layers"] = source["checkpoint_layers"]  # the plan's sized selective count
        for k in ("checkpointing", "selective_every", "ce_chunk"):
            if values[k] is None:
                values[k] = source[k]
        if values["deepspeed"] is None and unit_from_plan:  # ZeRO dictates precision + optimizer
            values["deepspeed"] = source["deepspeed"]
        log(f"plan_stage: {'from the plan for ' + plan.gpu.name if on_gpu else 'CPU values (no CUDA GPU)'}: "
            + ", ".join(f"{k}={values[k]!r}" for k in PLANNED_FIELDS if getattr(cfg, k) is None))
    new = dataclasses.replace(cfg, **values)
    if plan.auto:
        log(f"plan_stage: auto-config for {plan.gpu.name}: {plan.auto[0]}"
            + ("" if on_gpu else " (information: this run keeps its own sizes)"))

    if not on_gpu:
        log(f"plan_stage: no CUDA GPU here; the plan is for {plan.gpu.name}, shown as information (this run keeps its own settings)")
        return plan, new
    tp = train_plan_of(new, n)
    if tp is None:
        log(f"WARNING plan_stage: precision='fp32' is not modelled by the planner (it assumes bf16 compute): "
            f"its fit on {plan.gpu.name} is NOT checked; the planner recommends {plan.train.implementation}")
        return plan, new
    need = plan_memory.estimate_memory(shape, tp).peak
    if need > plan.usable_bytes:
        log("\n" + "!" * 100 + f"\nWARNING plan_stage: the configured memory settings need "
            f"{need / plan_model.GIB:.1f} GiB per GPU > {plan.usable_bytes / plan_model.GIB:.1f} GiB usable on "
            f"{plan.gpu.name}: expect CUDA out of memory.\n  configured: {tp.implementation}, checkpointing="
            f"{tp.checkpointing}, ce={tp.ce}\n  the planner's choice: {plan.train.implementation}, checkpointing="
            f"{plan.train.checkpointing}, ce={plan.train.ce} ({plan.memory.peak / plan_model.GIB:.1f} GiB)\n"
            "  Set the memory parameters to None to use the plan.\n" + "!" * 100)
    else:
        log(f"plan_stage: configured settings fit {plan.gpu.name}: {need / plan_model.GIB:.1f} GiB of "
            f"{plan.usable_bytes / plan_model.GIB:.1f} GiB usable")
    return plan, new
