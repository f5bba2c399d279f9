"""The profiles (``colab``, ``pilot``, ``tiny``) and the run-directory layout.

One code path: notebooks and helpers take a :class:`Profile` and read model names,
data sources, sizes and behaviours from it. ``colab`` is the default everywhere (the full run);
``pilot`` is ``colab`` at about 1 % of the data with stages of minutes (the real hub
models and datasets on the same Colab hardware: try the whole path for a couple of
compute-unit-hours first); ``tiny`` is the offline CPU profile used by tests, CI and
the README's local demo.

Nothing here loads a model or touches the network, GPU or Drive.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
EVAL_ASSETS_DIR = ASSETS_DIR / "eval"  # evaluation test set, stability set, protocol fixtures (scripts/make_eval_assets.py)
ASSETS_CORPUS_DIR = ASSETS_DIR / "corpus"  # espeak-ng speech corpus (see scripts/make_assets.py)
ASSETS_REJECTS_DIR = ASSETS_DIR / "corpus_rejects"  # clips preprocessing must reject (scripts/make_rejects.py)
REAL_SPEECH_DIR = ASSETS_DIR / "speech_real"  # 24 real LibriSpeech clips of documented sex (CC BY 4.0)

# Sentinels understood by the loaders: build the real architecture offline.
TINY_LLAMA = "tiny-llama"  # a LLaMA of a few layers built from a config (helpers.models)
RANDOM_SNAC_24KHZ = "random-snac-24khz"  # SNAC 24 kHz architecture, random weights (helpers.codec)
ASSETS_CORPUS = "assets"  # the bundled speech corpus as a dataset source (helpers.data.corpus)

# Padded audio seconds per SNAC encoder batch (encode_batch). Sizing for an A100 40 GB: the
# encoder's activations were measured at ~0.6 GiB per 30 s clip in fp32 (CPU, linear in batch),
# i.e. ~0.02 GiB per padded second; 600 s -> ~12 GiB, under a third of the card, leaving room
# for cuDNN workspaces, allocator fragmentation and a CUDA measurement above the CPU one.
# fp32 stays: bf16/fp16 would change near-tied quantizer argmins (codes no longer equal
# batch 1). An OOM halves the budget and retries, so a smaller card degrades, not fails.
DEFAULT_ENCODE_BATCH_SECONDS = 600.0


@dataclass(frozen=True)
class Profile:
    """Names, sizes and behaviours that differ between Colab and the offline tiny run.

    Everything that differs by profile is a field here, so no helper branches on a profile's name.
    """

    name: str
    base_model: str  # LLaMA to extend: a hub id, a local folder, or TINY_LLAMA
    snac_model: str  # SNAC codec: a hub id, a local folder, or RANDOM_SNAC_24KHZ
    data_source: str  # "hub" (the dataset catalog) or ASSETS_CORPUS
    runs_root: str  # where run directories live (Drive on Colab)
    max_seq_len: int  # longest training example in tokens (seed §5: 30 s ≈ 2,620 tokens; a 30 s cloning reference doubles it)
    encode_batch_seconds: float  # padded audio seconds per SNAC encoder batch (02; halved on CUDA OOM)
    eval_asr_model: str  # ASR for WER (helpers.evaluate.judges)
    eval_speaker_model: str  # speaker-embedding model for similarity
    eval_mos_model: str  # MOS predictor
    hours_scale: float = 1.0  # multiplies every phase's hours of the seed mix (colab 1.0; tiny: the small corpus)
    run_name: str = "optimumllm-audio-v1"  # default run folder under runs_root (notebooks' run_name = None)
    eval_testset: str = "colab"  # which profile's items of assets/eval/testset.json 07 scores
    # 07's zero-shot protocols: a fixed seeded sample of this many items per list (None: every item, ~1,000 each).
    # The pilot's barely trained model runs to the length guard on most items: tens of items say what it can do.
    protocol_sample: int | None = None
    # Stage sizes (helpers.train.config.stage_config): StageConfig fields this profile sets for stages 2-4.
    stage_sizes: Mapping[str, Any] = field(default_factory=dict)
    # Offline: no Hub, token or network anywhere — preflight skips the token, 07 reads the protocol
    # fixtures in assets/eval, 08 defaults to a dry run (nothing leaves the machine).
    offline: bool = False
    requires_gpu: bool = True  # preflight: an A100-class GPU is required for 02-08
    preprocess_workers: int | None = None  # 01/02 processes; None = every CPU core
    demo_max_seconds: float | None = None  # 08's demo: cap on audio per chunk (an untrained model never stops)
    repo_suffix: str = ""  # appended to 08's default Hub repo name
    # 04: train a built-in voice on another speaker when its planned corpus speaker is not in the data
    # (False: stop and say which voice would fall back to whom; the notebook's accept_voice_fallback overrides)
    accept_voice_fallback: bool = False


# Stage sizes. colab: the real run on an A100; memory fields stay None -> plan_stage picks them for the
# detected GPU; epochs per stage from helpers.train.config.STAGE_EPOCHS; checkpoints every 40 min of
# training (StageConfig.save_every_minutes). drive_deletion="permanent": deleted checkpoints skip Drive's
# Trash (Colab asks once for Drive access); with "trash" every deleted ~19.5 GB checkpoint counts against
# the quota for 30 days (helpers.colab.drive). auto_config: the plan for the session's GPU chooses the micro-batch
# (>= max_seq_len), accumulation (>= 12 x 8K tokens per optimizer step), checkpointed layers, fused optimizer,
# compiled layers and kernels (helpers.train.planner.auto_config), keeping 5 % of the card free.
_COLAB_STAGES = dict(grad_accum=12, warmup_ratio=0.03, log_every=10, save_every=None, save_every_minutes=40.0,
                     eval_every=500, keep_last=1, drive_deletion="permanent", auto_config=True)
# pilot: colab at ~1 % of the data: a few dozen optimizer steps per stage, minutes each on an A100;
# smaller steps (grad_accum 4) so even stage 4's ~0.5 h of audio gives several; the same auto-config as colab.
_PILOT_STAGES = dict(grad_accum=4, warmup_ratio=0.03, log_every=1, save_every=100, save_every_minutes=40.0,
                     eval_every=25, keep_last=1, drive_deletion="permanent", auto_config=True)
# tiny: a CPU demo that trains a few dozen steps so the chained notebook test stays fast; fp32 and torch
# AdamW; the plan is still computed and shown (for helpers.train.config.PLAN_TARGET_GPU).
_TINY_STAGES = dict(max_steps=20, grad_accum=1, warmup_steps=3, log_every=2, save_every=10, eval_every=10,
                    keep_last=1, eval_max_new_frames=8, eval_fraction=0.1, precision="fp32", optimizer="adamw_torch",
                    optimizer_state="fp32", checkpointing="none", selective_every=2, ce_chunk=0)

PROFILES: dict[str, Profile] = {
    "colab": Profile(
        name="colab",
        base_model="meta-llama/Llama-3.2-3B",
        snac_model="hubertsiuzdak/snac_24khz",
        data_source="hub",
        runs_root="/content/drive/MyDrive/optimumllm_audio/runs",
        max_seq_len=8192,
        encode_batch_seconds=DEFAULT_ENCODE_BATCH_SECONDS,  # ~12 GiB of encoder activations on an A100 40 GB
        eval_asr_model="large-v3-turbo",
        eval_speaker_model="microsoft/wavlm-base-plus-sv",
        eval_mos_model="utmos",
        stage_sizes=_COLAB_STAGES,
    ),
    "tiny": Profile(
        name="tiny",
        base_model=TINY_LLAMA,
        snac_model=RANDOM_SNAC_24KHZ,
        data_source=ASSETS_CORPUS,
        runs_root=str(REPO_ROOT / "runs"),
        max_seq_len=1024,
        encode_batch_seconds=1.0,  # every clip alone: on 2 CPU cores batching buys nothing
        eval_asr_model="tiny.en-offline",
        eval_speaker_model="resemblyzer",
        eval_mos_model="dnsmos",
        # 5e-5: phase 1 (1,055 h -> 190 s) takes most of the 243-s corpus, so stage 2 sees several clips of
        # the two non-voice speakers and trains cloning references; phases 2/3 stay small (33 s / 10 s).
        hours_scale=5e-5,
        eval_testset="tiny",
        stage_sizes=_TINY_STAGES,
        offline=True,
        requires_gpu=False,
        preprocess_workers=1,  # no pool overhead on 2 CPU cores
        demo_max_seconds=1.0,  # an untrained model never ends an utterance: cap each chunk's audio
        accept_voice_fallback=True,  # the assets corpus holds none of the catalog's planned voice speakers
        protocol_sample=1,  # one fixture item per protocol
    ),
}
# pilot: colab with only the sizes changed — ~1 % of every phase's hours (a few hours of audio in
# all), its own run folder and Hub repo name, and its own stage sizes.
PROFILES["pilot"] = replace(PROFILES["colab"], name="pilot", hours_scale=0.01, run_name="optimumllm-audio-pilot",
                            stage_sizes=_PILOT_STAGES, repo_suffix="-pilot", protocol_sample=30)


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with any field overridden (``get_profile("tiny", max_seq_len=512)``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]


def as_profile(profile: str | Profile) -> Profile:
    """``profile`` itself, or the named profile: the one place a name becomes a :class:`Profile`
    (entry points that take either: command lines, :func:`run_paths`, ``stage_config``)."""
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, str):
        return get_profile(profile)
    raise TypeError(f"profile must be a Profile or one of {sorted(PROFILES)}, got {type(profile).__name__}")


FINAL_MODEL_DIR = "model"  # a training stage's final model, inside its stage folder
HF_TRAINER_DIR = "hf_trainer"  # the DeepSpeed path's HF Trainer checkpoints, inside the stage folder


@dataclass(frozen=True)
class RunPaths:
    """Every path inside one run directory. Nothing writes outside ``root``.

    Notebook n reads only what notebooks < n wrote here.
    """

    root: Path

    @property
    def preprocess(self) -> Path:  # 01: manifest.parquet, report.json, sample clips
        return self.root / "preprocess"

    @property
    def tokens(self) -> Path:  # 02: token shards (raw SNAC codes + metadata), speaker index
        return self.root / "tokens"

    def stage(self, n: int) -> Path:  # 03 → stage1, 04 → stage2, 05 → stage3, 06 → stage4
        if n not in (1, 2, 3, 4):
            raise ValueError(f"stages are 1..4, got {n}")
        return self.root / f"stage{n}"

    def final_model(self, stage: int) -> Path:
        """Where stage ``stage``'s final model lives (stage 1: the vocabulary-extended model itself)."""
        return self.stage(1) if stage == 1 else self.stage(stage) / FINAL_MODEL_DIR

    def init_model(self, stage: int) -> Path:
        """Training stage ``stage`` (2..4) starts from the previous stage's final weights."""
        if stage not in (2, 3, 4):
            raise ValueError(f"training stages are 2..4, got {stage}")
        return self.final_model(stage - 1)

    def hf_trainer(self, stage: int) -> Path:
        """The DeepSpeed path's HF Trainer checkpoints of a training stage."""
        return self.stage(stage) / HF_TRAINER_DIR

    @property
    def eval(self) -> Path:  # 07: report.csv/json, figures, listening clips
        return self.root / "eval"

    @property
    def export(self) -> Path:  # 08: the folder uploaded to the Hub
        return self.root / "export"

    def ensure(self) -> "RunPaths":
        self.root.mkdir(parents=True, exist_ok=True)
        return self


def run_paths(run_name: str, profile: str | Profile = "colab", runs_root: str | os.PathLike | None = None) -> RunPaths:
    """Run directory ``<runs_root>/<run_name>`` (``runs_root`` defaults to the profile's)."""
    prof = as_profile(profile)
    if not run_name or "/" in run_name or run_name in (".", ".."):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")
    return RunPaths(Path(runs_root or prof.runs_root).expanduser().resolve() / run_name)
