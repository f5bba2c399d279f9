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
scratch lives). Any other field changed since the newest checkpoint makes
:mod:`helpers.train` refuse to resume, naming the field.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

# Seed §11: stage -> (learning rate, data phase it trains on).
SEED_STAGES: dict[int, tuple[float, int]] = {2: (5e-5, 1), 3: (1e-5, 2), 4: (5e-6, 3)}

PRECISIONS = ("fp32", "bf16-mixed")  # bf16-mixed: fp32 master weights, bf16 autocast on CUDA
OPTIMIZERS = ("adamw_torch", "adamw_8bit")  # adamw_8bit needs bitsandbytes (GPU runtimes)
LOSS_ON = ("audio", "all")  # "audio": target audio tokens + <|audio_end|>; "all": every token after BOS

# Fields that may differ between a run and its resumption without changing the result.
RESUME_SAFE_FIELDS = frozenset({
    "log_every", "save_every", "eval_every", "keep_last", "local_dir", "progress", "eval_max_new_frames",
})


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
    reference_max_frames: int = 72
    """Longest reference clip in SNAC frames (72 frames ≈ 6 s, 504 tokens); longer ones are cropped
    to a window of whole frames."""
    reference_min_frames: int = 12
    """Shortest useful reference (≈ 1 s); a speaker whose other clips are all shorter gets none."""
    loss_on: str = "audio"
    """Which tokens carry loss: "audio" (target audio + <|audio_end|>) or "all"."""
    eval_fraction: float = 0.02
    """Fraction of utterances held out for the evaluation loss (at least one, at most 64)."""
    log_every: int = 10
    """Steps between rows of metrics.csv (the last step is always logged)."""
    save_every: int = 200
    """Steps between checkpoints (the last step is always saved)."""
    eval_every: int = 200
    """Steps between evaluations (held-out loss + one generated sample); 0 disables."""
    eval_max_new_frames: int = 250
    """Cap on frames generated for the evaluation sample (250 frames ≈ 21 s)."""
    keep_last: int = 2
    """Complete checkpoints kept in the run directory (older ones are deleted)."""
    local_dir: str | None = None
    """Local scratch for checkpoints before the atomic copy to the run directory; None = a temp dir."""
    progress: bool = True
    """Show a tqdm progress bar with tokens/s and ETA."""
    # --- memory / speed hooks (wired to the planner by another issue; defaults are safe everywhere)
    precision: str = "fp32"
    """"fp32" or "bf16-mixed" (fp32 master weights, bf16 autocast; CUDA only)."""
    optimizer: str = "adamw_torch"
    """"adamw_torch" or "adamw_8bit" (bitsandbytes 8-bit states; needs bitsandbytes installed)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (saves memory, ~30% slower)."""
    chunked_ce: int = 0
    """Compute the LM head + cross entropy in chunks of this many tokens (0 = in one go); avoids
    materialising the (N, vocab) fp32 logits of a 140k vocabulary."""
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
        if self.loss_on not in LOSS_ON:
            bad("loss_on", f"one of {LOSS_ON}")
        if not 0 <= self.eval_fraction < 0.5:
            bad("eval_fraction", "in [0, 0.5)")
        for name in ("log_every", "save_every", "keep_last"):
            if getattr(self, name) < 1:
                bad(name, ">= 1")
        if self.eval_every < 0:
            bad("eval_every", ">= 0 (0 disables evaluation)")
        if self.precision not in PRECISIONS:
            bad("precision", f"one of {PRECISIONS}")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", f"one of {OPTIMIZERS}")
        if self.chunked_ce < 0:
            bad("chunked_ce", ">= 0 (0 = no chunking)")

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
            if name in RESUME_SAFE_FIELDS:
                continue
            if _norm(now.get(name)) != _norm(saved.get(name)):
                out.append(f"{name}: {saved.get(name)!r} -> {now.get(name)!r}")
        return out


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


# Per-profile sizes of the stages. colab: the real run on an A100 (context 4,096 tokens, ~48k tokens
# per step); tiny: a CPU demo that trains a few dozen steps so the chained notebook test stays fast.
_PROFILE_SIZES: dict[str, dict[str, Any]] = {
    "colab": dict(epochs=1.0, grad_accum=12, warmup_ratio=0.03, log_every=10, save_every=500,
                  eval_every=500, keep_last=2, precision="bf16-mixed", gradient_checkpointing=True,
                  chunked_ce=1024),
    "tiny": dict(max_steps=20, grad_accum=1, warmup_steps=3, log_every=2, save_every=10, eval_every=10,
                 keep_last=2, eval_max_new_frames=8, eval_fraction=0.1),
}


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
    kw.update(_PROFILE_SIZES[prof.name])
    names = {f.name for f in dataclasses.fields(StageConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown StageConfig fields {unknown}; valid fields: {sorted(names)}")
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return StageConfig(**kw)
