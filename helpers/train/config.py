"""Typed configuration of the training stages (seed §11): ONE recipe, three configs.

``StageConfig`` holds every knob of :mod:`helpers.train.recipe`; :func:`stage_config`
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
:mod:`helpers.train.recipe` refuse to resume, naming the field.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..profiles import as_profile
from ..tokens import REFERENCE_MAX_FRAMES, REFERENCE_MAX_S, REFERENCE_MIN_FRAMES  # reference bounds: the token contract

# Seed §11: stage -> (learning rate, data phase it trains on).
SEED_STAGES: dict[int, tuple[float, int]] = {2: (5e-5, 1), 3: (1e-5, 2), 4: (5e-6, 3)}

# fp32: fp32 weights and compute (CPU, tiny). bf16-mixed: fp32 weights under bf16 autocast (CUDA).
# bf16-pure: the model is held in bf16, no autocast; needs a BF16AdamW optimizer (fp32 master inside the
# optimizer, or stochastic rounding) so that small updates are not rounded away (helpers.train.precision).
PRECISIONS = ("fp32", "bf16-mixed", "bf16-pure")
# = helpers.train.memory.OPTIMIZER_KINDS (a test keeps them equal; not imported so this module stays torch-free)
OPTIMIZERS = ("adamw_torch", "adamw_8bit", "adamw_bf16_stochastic", "adamw_bf16_master", "adamw_bf16_torchao")
# for a pure-bf16 model: helpers.train.precision.BF16AdamW, or torchao's AdamW with bf16 stochastic rounding
BF16_OPTIMIZERS = ("adamw_bf16_stochastic", "adamw_bf16_master", "adamw_bf16_torchao")
STATE_DTYPES = ("fp32", "bf16")  # BF16AdamW moment dtype
CHECKPOINTING = ("none", "full", "selective")  # = helpers.train.memory.CHECKPOINTING_MODES
ATTENTION = ("auto", "sdpa", "flex_attention", "flash_attention_2")  # helpers.train.attention.choose_kernel(prefer=...)
KERNELS = ("none", "liger")  # = helpers.train.memory.KERNELS (apply_kernels): Liger-Kernel needs CUDA + Triton
# The memory fields the planner decides (helpers.train.config.plan_stage); None in a config = "planner's choice".
PLANNED_FIELDS = ("precision", "optimizer", "optimizer_state", "checkpointing", "selective_every", "ce_chunk",
                  "deepspeed")
PLAN_TARGET_GPU = "A100-40GB"  # the GPU the plan is shown for where no CUDA GPU is present (Colab's A100)
LOSS_ON = ("audio", "all")  # "audio": target audio tokens + <|audio_end|>; "all": every token after BOS

# Fields that may differ between a run and its resumption without changing the result.
RESUME_SAFE_FIELDS = frozenset({
    "log_every", "save_every", "save_every_minutes", "eval_every", "keep_last", "local_dir", "progress",
    "eval_max_new_frames", "drive_deletion", "deterministic",
    # how the sizes were chosen, not the sizes: a run in progress keeps the max_seq_len / grad_accum it started
    # with (plan_stage), and those are compared; a run started before the field existed resumes
    "auto_config",
})
# Memory settings that change how the same math is computed, not the math: a resumed run re-plans them
# for the GPU at hand (helpers.train.config.plan_stage). Activation checkpointing recomputes the same forward;
# the chunked cross entropy sums the same per-token losses in chunks; the attention kernel computes the
# same softmax(QK^T)V. On CPU in fp32 they reproduce bit for bit (tests); on GPU they change rounding
# order only. precision / optimizer / optimizer_state / deepspeed change the update itself: resume refuses.
REPLANNABLE_FIELDS = ("checkpointing", "selective_every", "ce_chunk", "attention", "checkpoint_layers",
                      "compile_layers", "kernels")
DRIVE_DELETION = ("trash", "permanent")  # = helpers.colab.drive.DELETION_MODES (a test keeps them equal)


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
    stage's final model is verified (helpers.train.checkpoints retention policy)."""
    drive_deletion: str = "trash"
    """How checkpoints are deleted from the run directory on Drive: "trash" (a plain delete; Drive
    keeps the bytes in its Trash for 30 days, counted against the quota) or "permanent" (Drive API
    files.delete; asks once for the user's consent to Drive access). See helpers.colab.drive."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms + cuDNN/cuBLAS deterministic settings. Resume is bit for bit
    on CPU either way (tested); on a GPU this makes repeated runs of the same kernels repeat, at some
    speed cost; it cannot make a different GPU model or library version give the same bits."""
    local_dir: str | None = None
    """Local scratch for checkpoints before the atomic copy to the run directory; None = a temp dir."""
    progress: bool = True
    """Show a tqdm progress bar with tokens/s and ETA."""
    # --- memory / speed (helpers.train.memory, helpers.train.planner). None = the planner's choice for the GPU
    # (plan_stage fills it in before training; the colab profile leaves them None, tiny sets them).
    precision: str | None = None
    """"fp32", "bf16-mixed" (fp32 weights, bf16 autocast; CUDA) or "bf16-pure" (bf16 weights, no autocast;
    needs optimizer adamw_bf16_stochastic or adamw_bf16_master)."""
    optimizer: str | None = None
    """"adamw_torch", "adamw_8bit" (bitsandbytes 8-bit states), "adamw_bf16_stochastic" or "adamw_bf16_master"
    (helpers.train.precision.BF16AdamW: stochastic rounding, or an fp32 master copy in the optimizer state), or
    "adamw_bf16_torchao" (torchao's AdamW with bf16 stochastic rounding, bf16 moments; optional: pip install
    torchao; helpers.train.memory.build_optimizer). The planner never picks torchao: it is chosen by measurement
    (gpu_check.sh, stage 2) and prices it as BF16AdamW's fused update."""
    optimizer_state: str | None = None
    """Moment dtype of the BF16AdamW optimizers: "fp32" (8 B/param) or "bf16" (4 B/param)."""
    checkpointing: str | None = None
    """Activation checkpointing: "none", "full" (every decoder layer) or "selective" (every
    ``selective_every``-th layer); recomputes activations in backward (~1/3 more layer FLOPs)."""
    selective_every: int | None = None
    """With checkpointing="selective": checkpoint one decoder layer in every this many."""
    checkpoint_layers: int | None = None
    """With checkpointing="selective": checkpoint exactly this many decoder layers (the lowest ones: each is then
    recomputed after backward has freed the kept layers above it) instead of every ``selective_every``-th. plan_stage sets it when the plan chose selective checkpointing: the fewest
    layers whose recompute lets the rest keep their activations on the GPU (helpers.train.planner.size_selective)."""
    ce_chunk: int | None = None
    """Tokens per chunk of the LM head + cross entropy (helpers.train.memory.chunked_causal_lm_loss); 0 = all
    target tokens in one chunk. Chunking avoids holding (tokens, 140k vocab) fp32 logits at once."""
    attention: str = "auto"
    """Attention kernel for packed rows (helpers.train.attention): "auto" (flash-attn varlen where installed on CUDA
    with a bf16 model, else FlexAttention with a per-document mask on CUDA, else SDPA), "sdpa" (one SDPA call
    per document of a packed row: helpers.train.attention.sdpa_documents), "flex_attention" or
    "flash_attention_2". The planner prices each (helpers.train.plan_model; it still charges "sdpa" at
    full-row cost, an over-estimate since per-document SDPA)."""
    compile_layers: bool = False
    """torch.compile each decoder layer (helpers.train.memory.compile_layers: one graph serves all layers; on CUDA
    inductor fuses each layer's norms, RoPE, SwiGLU and residual adds into Triton kernels). Off by default until
    bench_train --stage 2 --compile-layers has measured its gain on a GPU; same math (CPU test: aot_eager ==
    eager), so a resumed run may switch it."""
    kernels: str = "none"
    """Fused layer kernels: "none" (the model's own modules) or "liger" (Liger-Kernel's Triton RMSNorm, SwiGLU and
    RoPE, and its fused linear CE: helpers.train.memory.apply_kernels; CUDA only, refuses on the CPU). Same math up to rounding order (tests/test_gpu.py
    compares loss and gradients), so a resumed run may switch it; chosen by measurement (auto_config)."""
    auto_config: bool = False
    """Let :func:`helpers.train.stage_plan.plan_stage` choose the micro-batch and accumulation by
    helpers.train.planner.auto_config for the GPU: ``max_seq_len`` (at least the configured value: a packed row must
    hold the longest example) and ``grad_accum`` (at least the configured tokens per optimizer step), together with
    the memory fields left None, ``compile_layers`` (False = the plan's choice) and ``kernels`` ("none" = the plan's
    choice), keeping :data:`helpers.train.planner.AUTO_HEADROOM` of the card free. A run in progress keeps the sizes
    it started with (exact resume). Without a CUDA GPU the sizes stay as configured."""
    deepspeed: str | None = None
    """A DeepSpeed config (a file in configs/, e.g. "configs/ds_zero2_offload.json", or an absolute path):
    train through HF Trainer + DeepSpeed (helpers.train.distributed) instead of the hand-written loop.
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
        if self.checkpoint_layers is not None and self.checkpoint_layers < 1:
            bad("checkpoint_layers", ">= 1 decoder layers (or None = every selective_every-th)")
        if self.ce_chunk is not None and self.ce_chunk < 0:
            bad("ce_chunk", ">= 0 tokens (0 = no chunking)")
        if self.attention not in ATTENTION:
            bad("attention", f"one of {ATTENTION}")
        if self.kernels not in KERNELS:
            bad("kernels", f"one of {KERNELS}")
        if self.deepspeed is not None and not (isinstance(self.deepspeed, str) and self.deepspeed.endswith(".json")):
            bad("deepspeed", "None or the path of a DeepSpeed JSON config (e.g. 'configs/ds_zero2.json')")
        if self.precision == "bf16-pure" and self.optimizer in ("adamw_torch", "adamw_8bit"):
            bad("optimizer", f"one of {BF16_OPTIMIZERS} with precision='bf16-pure': "
                             f"{self.optimizer} writes its update into bf16 weights with round-to-nearest, which "
                             "loses every update below half a bf16 ulp (see helpers.train.precision)")
        if self.precision in ("fp32", "bf16-mixed") and self.optimizer in BF16_OPTIMIZERS:
            bad("optimizer", f"'adamw_torch' or 'adamw_8bit' with precision={self.precision!r} (fp32 weights); "
                             f"{self.optimizer} is for precision='bf16-pure'")
        if self.optimizer == "adamw_bf16_torchao" and self.optimizer_state == "fp32":
            bad("optimizer_state", "'bf16' with optimizer='adamw_bf16_torchao' (torchao keeps the moments in the "
                                   "parameters' dtype, bf16)")
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
                             "applied: call helpers.train.config.plan_stage(cfg, model.config) first, or set them")

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


# Default passes over each stage's data (profiles that set neither max_steps nor epochs). At the planned
# A100-40GB speed (~6,480 tokens/s, helpers.train.planner.auto_config) one epoch is ~14 h (stage 2, 1,050 h of
# speech, ~330 M tokens), ~2.5 h (stage 3, 184 h) and ~0.7 h (stage 4, 54 h); the seed budgets 72-120 h /
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
    prof = as_profile(profile)
    if stage not in SEED_STAGES:
        raise ValueError(f"stage must be one of {sorted(SEED_STAGES)}, got {stage!r}")
    if not prof.stage_sizes:
        raise ValueError(f"profile {prof.name!r} defines no stage sizes (Profile.stage_sizes)")
    lr, phase = SEED_STAGES[stage]
    kw: dict[str, Any] = dict(stage=stage, phase=phase, learning_rate=lr, max_seq_len=prof.max_seq_len)
    sizes = prof.stage_sizes
    if "max_steps" not in sizes and "epochs" not in sizes:
        kw["epochs"] = STAGE_EPOCHS[stage]
    kw.update(sizes)
    names = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown StageConfig fields {unknown}; valid fields: {sorted(names)}")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return StageConfig(**kw)
