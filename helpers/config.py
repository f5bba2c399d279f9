"""Typed configuration of the training stages (seed §11): ONE recipe, three configs.

``StageConfig`` holds every knob of :mod:`helpers.train`; :func:`stage_config`
builds the config of stage 2, 3 or 4 for a profile. The stage notebooks differ
only in the arguments they pass here.

Seed §11:

=====  ============  ==========  ============================================
stage  learning rate  data phase  purpose
=====  ============  ==========  ============================================
2      5e-5           1           large-scale pretraining (~1,050 h)
3      1e-5           2           high-quality fine-tuning (~184 h)
4      5e-6           3           speaker & emotion alignment (~54 h)
=====  ============  ==========  ============================================

Each stage starts from the previous stage's final weights (stage 2 from the
stage-1 vocabulary-extended model).

Resume safety: :data:`RESUME_SAFE_FIELDS` lists the fields that may change
between a run and its resumption (how often to log/save/evaluate, where local
scratch lives, how Drive deletes), and :data:`REPLANNABLE_FIELDS` the memory
settings that change how the same math is computed (activation checkpointing,
CE chunk, attention kernel): :func:`plan_stage` re-plans those for the GPU of
the resuming session. Any other field changed since the newest checkpoint makes
:mod:`helpers.train` refuse to resume, naming the field.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Seed §11: stage -> (learning rate, data phase it trains on).
SEED_STAGES: dict[int, tuple[float, int]] = {2: (5e-5, 1), 3: (1e-5, 2), 4: (5e-6, 3)}

# fp32: fp32 weights and compute (CPU, tiny). bf16-mixed: fp32 weights under bf16 autocast (CUDA).
# bf16-pure: the model is held in bf16, no autocast; needs a BF16AdamW optimizer (fp32 master inside the
# optimizer, or stochastic rounding) so that small updates are not rounded away (helpers.precision).
PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")
# = helpers.memory.OPTIMIZER_KINDS (a test keeps them equal; not imported so this module stays torch-free)
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "adamw_bf16_stochastic", "adamw_bf16_master")
BF16_OPTIMIZERS = ("adamw_bf16_stochastic", "adamw_bf16_master")  # helpers.precision.BF16AdamW
STATE_DTYPES = ("fp32", "bf16")  # BF16AdamW moment dtype
CHECKPOINTING = ("none", "full", "selective")  # = helpers.memory.CHECKPOINTING_MODES
ATTENTION = ("auto", "sdpa", "flex_attention", "flash_attention_2")  # helpers.attention.choose_kernel(prefer=...)
# The memory fields the planner decides (helpers.config.plan_stage); None in a config = "planner's choice".
PLANNED_FIELDS = ("precision", "optimizer", "optimizer_state", "checkpointing", "selective_every", "ce_chunk",
                  "deepspeed")
PLAN_TARGET_GPU = "A100-40GB"  # the GPU the plan is shown for where no CUDA GPU is present (Colab's A100)
LOSS_ON = ("audio", "all")  # "audio": target audio tokens + <|audio_end|>; "all": every token after BOS

# Cloning references (seed §8: 10-30 s recommended). ONE pair of bounds shared by training
# (helpers.sequences draws reference lengths uniformly in this range, bounded by the room the
# context leaves beside the target) and inference (helpers.voices refuses shorter clips and
# crops longer ones), so the model never sees at inference a reference length it never trained on.
# 20 s is the seed's "very good"; 30 s adds little and costs 820 more prompt tokens per example.
SNAC_FRAMES_PER_SECOND = 24_000 / 2048  # CB1 frames per second of SNAC 24 kHz (11.72 Hz)
REFERENCE_MIN_S = 3.0  # shortest reference trained on / accepted at inference
REFERENCE_MAX_S = 20.0  # longest reference trained on; inference crops longer clips to this


def seconds_to_frames(seconds: float, round_up: bool = False) -> int:
    """Whole SNAC frames (CB1) in ``seconds`` of audio (rounded down, or up)."""
    x = seconds * SNAC_FRAMES_PER_SECOND
    return int(-(-x // 1)) if round_up else int(x)


REFERENCE_MIN_FRAMES = seconds_to_frames(REFERENCE_MIN_S, round_up=True)  # 36 frames = 3.07 s: never under 3 s
REFERENCE_MAX_FRAMES = seconds_to_frames(REFERENCE_MAX_S)  # 234 frames = 19.97 s: never over 20 s

# Fields that may differ between a run and its resumption without changing the result.
RESUME_SAFE_FIELDS = frozenset({
    "log_every", "save_every", "save_every_minutes", "eval_every", "keep_last", "local_dir", "progress",
    "eval_max_new_frames", "drive_deletion", "deterministic",
})
# Memory settings that change how the same math is computed, not the math: a resumed run re-plans them
# for the GPU at hand (helpers.config.plan_stage). Activation checkpointing recomputes the same forward;
# the chunked cross entropy sums the same per-token losses in chunks; the attention kernel computes the
# same softmax(QK^T)V. On CPU in fp32 they reproduce bit for bit (tests); on GPU they change rounding
# order only. precision / optimizer / optimizer_state / deepspeed change the update itself: resume refuses.
REPLANNABLE_FIELDS = ("checkpointing", "selective_every", "ce_chunk", "attention")
DRIVE_DELETION = ("trash", "permanent")  # = helpers.drive.DELETION_MODES (a test keeps them equal)


@dataclass
class StageConfig:
    """Everything one training stage needs; validated in ``__post_init__``.

    Sizes are in tokens, steps are optimizer steps (one step = ``grad_accum``
    packed sequences of at most ``max_seq_len`` tokens each).
    """

    stage: int
    """Training stage, 2..4 (stage 1 is vocabulary extension, no training)."""
    phase: int
    """Data phase of the seed's training mix the stage trains on (1..3)."""
    learning_rate: float
    """Peak learning rate reached after warmup (seed §11: 5e-5 / 1e-5 / 5e-6)."""
    max_seq_len: int
    """Token budget of one packed sequence (the training context); longer examples are skipped and counted."""
    max_steps: int | None = None
    """Optimizer steps to train; None = ``epochs`` passes over the phase's data."""
    epochs: float = 1.0
    """Passes over the data when ``max_steps`` is None."""
    grad_accum: int = 1
    """Packed sequences per optimizer step (effective batch = grad_accum * max_seq_len tokens)."""
    warmup_steps: int | None = None
    """Linear warmup steps; None = ``warmup_ratio`` of the total steps."""
    warmup_ratio: float = 0.03
    """Warmup as a fraction of the total steps when ``warmup_steps`` is None."""
    min_lr_ratio: float = 0.1
    """Cosine decays from ``learning_rate`` to ``min_lr_ratio * learning_rate``."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not applied to norms and biases)."""
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; 0 disables clipping."""
    seed: int = 1234
    """Seeds weight-independent randomness: data order, reference-clip choice, dropout."""
    reference_prob: float = 0.5
    """Probability that an utterance of a non-built-in speaker gets a reference clip of another
    utterance of the same speaker in its speaker block (teaches zero-shot cloning)."""
    reference_max_frames: int = REFERENCE_MAX_FRAMES
    """Longest reference in SNAC frames (234 frames = 20 s, 1,638 tokens; :data:`REFERENCE_MAX_S`, the
    bound inference crops to). Each reference length is drawn uniformly between the min and this,
    bounded by the context left beside the target; clips of the same speaker are joined to reach it."""
    reference_min_frames: int = REFERENCE_MIN_FRAMES
    """Shortest reference (36 frames ≈ 3 s, :data:`REFERENCE_MIN_S`, the shortest inference accepts);
    no room for it beside the target = no reference (counted)."""
    loss_on: str = "audio"
    """Which tokens carry loss: "audio" (target audio + <|audio_end|>) or "all"."""
    eval_fraction: float = 0.02
    """Fraction of utterances held out for the evaluation loss (at least one, at most 64)."""
    log_every: int = 10
    """Steps between rows of metrics.csv (the last step is always logged)."""
    save_every: int | None = None
    """Steps between checkpoints; None = by wall clock only (``save_every_minutes``). The last step is
    always saved."""
    save_every_minutes: float | None = 40.0
    """Minutes of training between checkpoints (a disconnect loses at most this much); None = by steps
    only. 40 min: one ~19.5 GB checkpoint copy to Drive takes a few minutes, so saving more often
    would spend a noticeable share of the session copying."""
    eval_every: int = 200
    """Steps between evaluations (held-out loss + one generated sample); 0 disables."""
    eval_max_new_frames: int = 250
    """Cap on frames generated for the evaluation sample (250 frames ≈ 21 s)."""
    keep_last: int = 1
    """Complete checkpoints kept in the run directory during the stage (older ones are deleted after
    the new one is verified, so one more exists while it is written); all are deleted once the
    stage's final model is verified (helpers.checkpoints retention policy)."""
    drive_deletion: str = "trash"
    """How checkpoints are deleted from the run directory on Drive: "trash" (a plain delete; Drive
    keeps the bytes in its Trash for 30 days, counted against the quota) or "permanent" (Drive API
    files.delete; asks once for the user's consent to Drive access). See helpers.drive."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms + cuDNN/cuBLAS deterministic settings. Resume is bit for bit
    on CPU either way (tested); on a GPU this makes repeated runs of the same kernels repeat, at some
    speed cost; it cannot make a different GPU model or library version give the same bits."""
    local_dir: str | None = None
    """Local scratch for checkpoints before the atomic copy to the run directory; None = a temp dir."""
    progress: bool = True
    """Show a tqdm progress bar with tokens/s and ETA."""
    # --- memory / speed (helpers.memory, helpers.planner). None = the planner's choice for the GPU
    # (plan_stage fills it in before training; the colab profile leaves them None, tiny sets them).
    precision: str | None = None
    """"fp32", "bf16-mixed" (fp32 weights, bf16 autocast; CUDA) or "bf16-pure" (bf16 weights, no autocast;
    needs optimizer adamw_bf16_stochastic or adamw_bf16_master)."""
    optimizer: str | None = None
    """"adamw_torch", "adamw_8bit" (bitsandbytes 8-bit states), "adamw_bf16_stochastic" or "adamw_bf16_master"
    (helpers.precision.BF16AdamW: stochastic rounding, or an fp32 master copy in the optimizer state)."""
    optimizer_state: str | None = None
    """Moment dtype of the BF16AdamW optimizers: "fp32" (8 B/param) or "bf16" (4 B/param)."""
    checkpointing: str | None = None
    """Activation checkpointing: "none", "full" (every decoder layer) or "selective" (every
    ``selective_every``-th layer); recomputes activations in backward (~1/3 more layer FLOPs)."""
    selective_every: int | None = None
    """With checkpointing="selective": checkpoint one decoder layer in every this many."""
    ce_chunk: int | None = None
    """Tokens per chunk of the LM head + cross entropy (helpers.memory.chunked_causal_lm_loss); 0 = all
    target tokens in one chunk. Chunking avoids holding (tokens, 140k vocab) fp32 logits at once."""
    attention: str = "auto"
    """Attention kernel for packed rows (helpers.attention): "auto" (flash-attn varlen where installed on CUDA
    with a bf16 model, else FlexAttention with a per-document mask on CUDA, else SDPA), "sdpa" (full-row
    cost), "flex_attention" or "flash_attention_2". The planner prices each (helpers.plan_cost)."""
    deepspeed: str | None = None
    """A DeepSpeed config (a file in configs/, e.g. "configs/ds_zero2_offload.json", or an absolute path):
    train through HF Trainer + DeepSpeed (helpers.distributed) instead of the hand-written loop.
    None = no DeepSpeed, unless plan_stage's plan needs ZeRO (then it names the matching configs/ file)."""
    extra: dict = field(default_factory=dict)
    """Free-form notes recorded in checkpoints (e.g. the planner's choice); part of the resume check."""

    def __post_init__(self):
        def bad(name, want):
            raise ValueError(f"StageConfig.{name} = {getattr(self, name)!r}: expected {want}")

        if self.stage not in SEED_STAGES:
            bad("stage", "2, 3 or 4 (stage 1 is vocabulary extension)")
        if self.phase not in (1, 2, 3):
            bad("phase", "1, 2 or 3")
        if not (0 < self.learning_rate < 1):
            bad("learning_rate", "a float in (0, 1)")
        if self.max_seq_len < 16:
            bad("max_seq_len", "at least 16 tokens")
        if self.max_steps is not None and self.max_steps < 1:
            bad("max_steps", "None or >= 1")
        if self.max_steps is None and not self.epochs > 0:
            bad("epochs", "> 0 when max_steps is None")
        if self.grad_accum < 1:
            bad("grad_accum", ">= 1")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            bad("warmup_steps", "None or >= 0")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            bad("min_lr_ratio", "in [0, 1]")
        self.adam_betas = tuple(float(b) for b in self.adam_betas)
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            bad("adam_betas", "two floats in [0, 1)")
        if self.max_grad_norm < 0:
            bad("max_grad_norm", ">= 0")
        if not 0 <= self.reference_prob <= 1:
            bad("reference_prob", "a probability in [0, 1]")
        if not 1 <= self.reference_min_frames <= self.reference_max_frames:
            bad("reference_min_frames", f"in 1..reference_max_frames ({self.reference_max_frames})")
        if self.reference_max_frames > REFERENCE_MAX_FRAMES:
            bad("reference_max_frames", f"at most {REFERENCE_MAX_FRAMES} ({REFERENCE_MAX_S:g} s): inference crops "
                "references to that length, so longer training references would never be used")
        if self.loss_on not in LOSS_ON:
            bad("loss_on", f"one of {LOSS_ON}")
        if not 0 <= self.eval_fraction < 0.5:
            bad("eval_fraction", "in [0, 0.5)")
        for name in ("log_every", "keep_last"):
            if getattr(self, name) < 1:
                bad(name, ">= 1")
        if self.save_every is not None and self.save_every < 1:
            bad("save_every", "None or >= 1")
        if self.save_every_minutes is not None and not self.save_every_minutes > 0:
            bad("save_every_minutes", "None or > 0 minutes")
        if self.drive_deletion not in DRIVE_DELETION:
            bad("drive_deletion", f"one of {DRIVE_DELETION}")
        if self.eval_every < 0:
            bad("eval_every", ">= 0 (0 disables evaluation)")
        # memory fields: None = not decided yet (plan_stage), else validated
        if self.precision is not None and self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS} (or None = the planner's choice)")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {OPTIMIZERS} (or None = the planner's choice)")
        if self.optimizer_state is not None and self.optimizer_state not in STATE_DTYPES:
            bad("optimizer_state", f"one of {STATE_DTYPES} (or None = the planner's choice)")
        if self.checkpointing is not None and self.checkpointing not in CHECKPOINTING:
            bad("checkpointing", f"one of {CHECKPOINTING} (or None = the planner's choice)")
        if self.selective_every is not None and self.selective_every < 1:
            bad("selective_every", ">= 1")
        if self.ce_chunk is not None and self.ce_chunk < 0:
            bad("ce_chunk", ">= 0 tokens (0 = no chunking)")
        if self.attention not in ATTENTION:
            bad("attention", f"one of {ATTENTION}")
        if self.deepspeed is not None and not (isinstance(self.deepspeed, str) and self.deepspeed.endswith(".json")):
            bad("deepspeed", "None or the path of a DeepSpeed JSON config (e.g. 'configs/ds_zero2.json')")
        if self.precision == "bf16-pure" and self.optimizer in ("adamw_torch", "adamw_8bit"):
            bad("optimizer", "'adamw_bf16_stochastic' or 'adamw_bf16_master' with precision='bf16-pure': "
                             f"{self.optimizer} writes its update into bf16 weights with round-to-nearest, which "
                             "loses every update below half a bf16 ulp (see helpers.precision)")
        if self.precision in ("fp32", "bf16-mixed") and self.optimizer in BF16_OPTIMIZERS:
            bad("optimizer", f"'adamw_torch' or 'adamw_8bit' with precision={self.precision!r} (fp32 weights); "
                             f"{self.optimizer} is for precision='bf16-pure'")
        if self.deepspeed is not None and self.precision == "bf16-pure":
            bad("precision", "'bf16-mixed' or 'fp32' with deepspeed (DeepSpeed's bf16 mode keeps its own fp32 "
                             "master weights and optimizer)")

    # --- planning
    def unplanned(self) -> list[str]:
        """The memory fields still None (to be decided by :func:`plan_stage`)."""
        return [n for n in PLANNED_FIELDS if n != "deepspeed" and getattr(self, n) is None]

    def require_planned(self) -> None:
        """Raise unless every memory field has a value (the recipe calls this in setup)."""
        missing = self.unplanned()
        if missing:
            raise ValueError(f"StageConfig fields {missing} are None (= the planner's choice) but no plan was "
                             "applied: call helpers.config.plan_stage(cfg, model.config) first, or set them")

    @property
    def model_dtype(self) -> str:
        """Dtype name the model is held in during training: "bfloat16" for bf16-pure and DeepSpeed
        (its bf16 mode), else "float32" (fp32 weights; autocast computes in bf16 for bf16-mixed)."""
        self.require_planned()
        if self.precision == "bf16-pure" or (self.deepspeed is not None and self.precision == "bf16-mixed"):
            return "bfloat16"
        return "float32"

    # --- serialisation (stored in every checkpoint; compared on resume)
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StageConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown StageConfig fields {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def rows(self) -> list[dict]:
        """(field, value) rows for a table; values as text so 1e-08 does not print as 0.0."""
        return [{"field": k, "value": repr(v)} for k, v in self.to_dict().items()]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def resume_conflicts(self, saved: dict[str, Any]) -> list[str]:
        """Fields whose change since ``saved`` (a checkpoint's config dict) breaks exact resume,
        as ``"name: saved -> now"`` lines (empty list = safe to resume)."""
        now = self.to_dict()
        out = []
        for name in sorted(set(now) | set(saved)):
            if name in RESUME_SAFE_FIELDS or name in REPLANNABLE_FIELDS:
                continue
            if _norm(now.get(name)) != _norm(saved.get(name)):
                out.append(f"{name}: {saved.get(name)!r} -> {now.get(name)!r}")
        return out


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


# Per-profile sizes of the stages. colab: the real run on an A100 (context 4,096 tokens, ~48k tokens
# per step); tiny: a CPU demo that trains a few dozen steps so the chained notebook test stays fast.
_PROFILE_SIZES: dict[str, dict[str, Any]] = {
    # colab: memory fields stay None -> plan_stage picks them for the detected GPU; epochs per stage
    # from STAGE_EPOCHS; checkpoints every 40 min of training (StageConfig.save_every_minutes).
    # drive_deletion="permanent": deleted checkpoints skip Drive's Trash (Colab asks once for Drive access);
    # with "trash" every deleted ~19.5 GB checkpoint counts against the quota for 30 days (helpers.drive).
    "colab": dict(grad_accum=12, warmup_ratio=0.03, log_every=10, save_every=None, save_every_minutes=40.0,
                  eval_every=500, keep_last=1, drive_deletion="permanent"),
    # pilot: colab at ~1 % of the data (helpers.profiles): a few dozen optimizer steps per stage, minutes
    # each on an A100; smaller steps (grad_accum 4) so even stage 4's ~0.5 h of audio gives several.
    "pilot": dict(grad_accum=4, warmup_ratio=0.03, log_every=1, save_every=100, save_every_minutes=40.0,
                  eval_every=25, keep_last=1, drive_deletion="permanent"),
    # tiny: CPU, so fp32 and torch AdamW; the plan is still computed and shown (for PLAN_TARGET_GPU).
    "tiny": dict(max_steps=20, grad_accum=1, warmup_steps=3, log_every=2, save_every=10, eval_every=10,
                 keep_last=1, eval_max_new_frames=8, eval_fraction=0.1, precision="fp32", optimizer="adamw_torch",
                 optimizer_state="fp32", checkpointing="none", selective_every=2, ce_chunk=0),
}

# Default passes over each stage's data (profiles that set neither max_steps nor epochs). At the planned
# A100-40GB speed (~6,100 tokens/s, helpers.planner) one epoch is ~15 h (stage 2, 1,050 h of speech,
# ~330 M tokens), ~2.6 h (stage 3, 184 h) and ~0.8 h (stage 4, 54 h); the seed budgets 72-120 h /
# 24-40 h / 12-20 h of A100 time.
#  - stage 2: 2 epochs (~30 h planned). ~330 M tokens is little for a 3B model learning a new modality;
#    repeating data up to ~4 epochs costs almost nothing against fresh data (Muennighoff et al. 2023,
#    "Scaling Data-Constrained Language Models"), and 2 keeps the planned time under half the seed's
#    lower budget: margin for a planner that assumes 55 % hardware utilisation.
#  - stage 3: 3 epochs (~8 h planned). 184 h of clean speech at a 5x lower LR; a small set, so more
#    passes, still a third of the seed's budget. The held-out loss (eval.csv) shows any overfitting.
#  - stage 4: 3 epochs (~2.3 h planned). 54 h from few speakers (Expresso 4, RAVDESS 24, EmoV-DB 4):
#    more passes would memorise those voices; the seed's 12-20 h budget would allow ~20.
STAGE_EPOCHS: dict[int, float] = {2: 2.0, 3: 3.0, 4: 3.0}


def stage_config(stage: int, profile, **overrides) -> StageConfig:
    """The seed's config for ``stage`` (2, 3 or 4) under ``profile`` (a name or helpers.profiles.Profile).

    Learning rate and data phase come from seed §11, the context from the profile's
    ``max_seq_len``, sizes from the profile; ``overrides`` replace any field
    (``stage_config(2, "tiny", learning_rate=1e-3)``). ``None`` overrides are ignored so a
    notebook can pass its parameters through unchanged.
    """
    from .profiles import get_profile

    prof = get_profile(profile) if isinstance(profile, str) else profile
    if stage not in SEED_STAGES:
        raise ValueError(f"stage must be one of {sorted(SEED_STAGES)}, got {stage!r}")
    if prof.name not in _PROFILE_SIZES:
        raise ValueError(f"no stage sizes for profile {prof.name!r}; known: {sorted(_PROFILE_SIZES)}")
    lr, phase = SEED_STAGES[stage]
    kw: dict[str, Any] = dict(stage=stage, phase=phase, learning_rate=lr, max_seq_len=prof.max_seq_len)
    sizes = _PROFILE_SIZES[prof.name]
    if "max_steps" not in sizes and "epochs" not in sizes:
        kw["epochs"] = STAGE_EPOCHS[stage]
    kw.update(sizes)
    names = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown StageConfig fields {unknown}; valid fields: {sorted(names)}")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return StageConfig(**kw)


# ----------------------------------------------------------------------------- planning
_CPU_DEFAULTS = dict(precision="fp32", optimizer="adamw_torch", optimizer_state="fp32", checkpointing="none",
                     selective_every=2, ce_chunk=0)


def train_plan_of(cfg: StageConfig, n_gpus: int = 1):
    """The :class:`helpers.planner.TrainPlan` that ``cfg``'s memory fields realise (inverse of
    :func:`helpers.memory.settings_for_plan`), or None for precision="fp32" (fp32 compute is not
    modelled by the planner, which assumes bf16 compute)."""
    from .planner import TrainPlan

    cfg.require_planned()
    common = dict(checkpointing=cfg.checkpointing, selective_every=cfg.selective_every,
                  ce="chunked" if cfg.ce_chunk else "full", ce_chunk_tokens=cfg.ce_chunk or 1024,
                  tokens_per_step=cfg.max_seq_len, grad_accum=cfg.grad_accum, n_gpus=int(n_gpus))
    if cfg.deepspeed is not None:
        from .distributed import zero_settings

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
    """The StageConfig memory fields of a planner Plan (through helpers.memory.settings_for_plan)."""
    import torch

    from .distributed import config_name_for
    from .memory import settings_for_plan

    st = settings_for_plan(plan.train)
    if st.zero_stage:
        precision = "bf16-mixed"  # DeepSpeed bf16: bf16 model, fp32 masters inside DeepSpeed
    else:
        precision = "bf16-mixed" if st.autocast else "bf16-pure"
    return dict(precision=precision, optimizer=st.optimizer,
                optimizer_state="bf16" if st.state_dtype == torch.bfloat16 else "fp32",
                checkpointing=st.checkpointing, selective_every=st.selective_every, ce_chunk=st.ce_chunk,
                deepspeed=(f"configs/{config_name_for(st.zero_stage, st.offload_optimizer, st.offload_params)}"
                           if st.zero_stage else None))


def _replan_for_gpu(values: dict, replan: list, shape, plan, cfg: StageConfig, n: int) -> dict:
    """Activation checkpointing / CE chunk for a resumed run's kept math settings on this GPU."""
    from . import planner

    probe = dataclasses.replace(cfg, **{k: (values[k] if values[k] is not None else _CPU_DEFAULTS.get(k))
                                        for k in PLANNED_FIELDS if k != "deepspeed"},
                                deepspeed=values["deepspeed"])
    fixed = train_plan_of(probe, n)
    if fixed is None:  # fp32 compute is not modelled: keep the CPU-like defaults
        return {k: _CPU_DEFAULTS[k] for k in replan}
    best = planner.replan_memory(shape, plan.gpu, fixed)
    if best is None:
        need = min(planner.estimate_memory(shape, dataclasses.replace(fixed, checkpointing=c, ce=e)).peak
                   for c in planner.CHECKPOINTING for e in planner.CROSS_ENTROPY)
        raise planner.NoFeasiblePlan(
            f"the run in progress uses precision={values['precision']!r}, optimizer={values['optimizer']!r}, "
            f"optimizer_state={values['optimizer_state']!r}, deepspeed={values['deepspeed']!r} (they change the "
            f"math, so resume keeps them); with the most memory-saving checkpointing and CE chunk that needs "
            f"{need / planner.GIB:.1f} GiB, more than {plan.usable_bytes / planner.GIB:.1f} GiB usable on "
            f"{plan.gpu.name}. Resume on a larger GPU, or delete the stage's checkpoints to restart it with this "
            f"GPU's plan.")
    import types

    st = _settings_from_plan(types.SimpleNamespace(train=best))
    return {k: st[k] for k in replan}


def plan_stage(cfg: StageConfig, model_config, *, gpu=None, audio_hours: float | None = None,
               n_gpus: int | None = None, stage_dir: str | os.PathLike | None = None, log=print):
    """``(plan, cfg')``: the planner's choice for this stage's model and token budget, applied to ``cfg``.

    Runs :func:`helpers.planner.plan_for_gpu` with the shape of ``model_config`` (the
    loaded model's ``config``: real layers, width and extended vocabulary), ``max_seq_len``
    tokens per micro-batch and ``grad_accum`` micro-batches per step.

    - ``gpu``: the GPU to plan for and train on (a name like ``"A100-40GB"``, a size in GiB or a
      :class:`~helpers.planner.GPUSpec`); None = the detected CUDA GPU. Without one, the plan is
      made for :data:`PLAN_TARGET_GPU` as information only, and unset fields get CPU values
      (fp32, torch AdamW, no checkpointing, full CE).
    - Fields that are None in ``cfg`` (the colab profile leaves the memory fields None) are
      filled from the plan via :func:`helpers.memory.settings_for_plan` (including a
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
    Raises :class:`helpers.planner.NoFeasiblePlan` when nothing fits the GPU.
    """
    from . import planner

    n = int(n_gpus if n_gpus is not None else os.environ.get("WORLD_SIZE", 1))
    detected = planner.detect_gpu() if gpu is None else None
    on_gpu = gpu is not None or detected is not None
    target = gpu if gpu is not None else (detected or PLAN_TARGET_GPU)
    shape = planner.ModelShape.from_config(model_config)
    if audio_hours is not None:
        train_tokens = planner.stage_tokens(float(audio_hours), epochs=cfg.epochs if cfg.max_steps is None else 1.0)
    elif cfg.max_steps is not None:
        train_tokens = cfg.max_steps * cfg.grad_accum * cfg.max_seq_len * n
    else:
        train_tokens = None
    plan = planner.plan_for_gpu(shape, target, tokens_per_step=cfg.max_seq_len, n_gpus=n,
                                grad_accum=cfg.grad_accum, train_tokens=train_tokens,
                                attention=None if cfg.attention == "auto" else cfg.attention)

    values = {k: getattr(cfg, k) for k in PLANNED_FIELDS}
    previous = {}
    if stage_dir is not None and (Path(stage_dir) / "config.json").is_file():
        saved = json.loads((Path(stage_dir) / "config.json").read_text())
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
            if values["optimizer_state"] is None:
                values["optimizer_state"] = "fp32"
        for k in ("checkpointing", "selective_every", "ce_chunk"):
            if values[k] is None:
                values[k] = source[k]
        if values["deepspeed"] is None and unit_from_plan:  # ZeRO dictates precision + optimizer
            values["deepspeed"] = source["deepspeed"]
        log(f"plan_stage: {'from the plan for ' + plan.gpu.name if on_gpu else 'CPU values (no CUDA GPU)'}: "
            + ", ".join(f"{k}={values[k]!r}" for k in PLANNED_FIELDS if getattr(cfg, k) is None))
    new = dataclasses.replace(cfg, **values)

    if not on_gpu:
        log(f"plan_stage: no CUDA GPU here; the plan is for {plan.gpu.name}, shown as information (this run keeps its own settings)")
        return plan, new
    tp = train_plan_of(new, n)
    if tp is None:
        log(f"WARNING plan_stage: precision='fp32' is not modelled by the planner (it assumes bf16 compute): "
            f"its fit on {plan.gpu.name} is NOT checked; the planner recommends {plan.train.implementation}")
        return plan, new
    need = planner.estimate_memory(shape, tp).peak
    if need > plan.usable_bytes:
        log("\n" + "!" * 100 + f"\nWARNING plan_stage: the configured memory settings need "
            f"{need / planner.GIB:.1f} GiB per GPU > {plan.usable_bytes / planner.GIB:.1f} GiB usable on "
            f"{plan.gpu.name}: expect CUDA out of memory.\n  configured: {tp.implementation}, checkpointing="
            f"{tp.checkpointing}, ce={tp.ce}\n  the planner's choice: {plan.train.implementation}, checkpointing="
            f"{plan.train.checkpointing}, ce={plan.train.ce} ({plan.memory.peak / planner.GIB:.1f} GiB)\n"
            "  Set the memory parameters to None to use the plan.\n" + "!" * 100)
    else:
        log(f"plan_stage: configured settings fit {plan.gpu.name}: {need / planner.GIB:.1f} GiB of "
            f"{plan.usable_bytes / planner.GIB:.1f} GiB usable")
    return plan, new
