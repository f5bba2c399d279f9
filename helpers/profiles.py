"""The profiles (``colab``, ``pilot``, ``tiny``) and the run-directory layout.

One code path: notebooks and helpers take a profile name and read model names,
data sources and sizes from here. ``colab`` is the default everywhere (the full run);
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

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = REPO_ROOT / "assets"
ASSETS_CORPUS_DIR = ASSETS_DIR / "corpus"  # espeak-ng speech corpus (see scripts/make_assets.py)
ASSETS_REJECTS_DIR = ASSETS_DIR / "corpus_rejects"  # clips preprocessing must reject (scripts/make_rejects.py)

# Sentinels understood by the loaders: build the real architecture offline.
TINY_LLAMA = "tiny-llama"  # a LLaMA of a few layers built from a config (helpers.models)
RANDOM_SNAC_24KHZ = "random-snac-24khz"  # SNAC 24 kHz architecture, random weights (helpers.codec)
ASSETS_CORPUS = "assets"  # the bundled speech corpus as a dataset source (helpers.corpus)

# Padded audio seconds per SNAC encoder batch (encode_batch). Sizing for an A100 40 GB: the
# encoder's activations were measured at ~0.6 GiB per 30 s clip in fp32 (CPU, linear in batch),
# i.e. ~0.02 GiB per padded second; 600 s -> ~12 GiB, under a third of the card, leaving room
# for cuDNN workspaces, allocator fragmentation and a CUDA measurement above the CPU one.
# fp32 stays: bf16/fp16 would change near-tied quantizer argmins (codes no longer equal
# batch 1). An OOM halves the budget and retries, so a smaller card degrades, not fails.
DEFAULT_ENCODE_BATCH_SECONDS = 600.0


@dataclass(frozen=True)
class Profile:
    """Names and sizes that differ between Colab and the offline tiny run."""

    name: str
    base_model: str  # LLaMA to extend: a hub id, a local folder, or TINY_LLAMA
    snac_model: str  # SNAC codec: a hub id, a local folder, or RANDOM_SNAC_24KHZ
    data_source: str  # "hub" (the dataset catalog) or ASSETS_CORPUS
    runs_root: str  # where run directories live (Drive on Colab)
    max_seq_len: int  # longest training example in tokens (seed §5: 30 s ≈ 2,620 tokens; a 30 s cloning reference doubles it)
    encode_batch_seconds: float  # padded audio seconds per SNAC encoder batch (02; halved on CUDA OOM)
    eval_asr_model: str  # ASR for WER (helpers.metrics)
    eval_speaker_model: str  # speaker-embedding model for similarity
    eval_mos_model: str  # MOS predictor
    hours_scale: float = 1.0  # multiplies every phase's hours of the seed mix (colab 1.0; tiny: the small corpus)
    run_name: str = "optimumllm-audio-v1"  # default run folder under runs_root (notebooks' run_name = None)
    eval_testset: str = "colab"  # which profile's items of assets/eval/testset.json 07 scores
    extra: dict = field(default_factory=dict)  # further per-profile sizes, documented where used


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
    ),
}
# pilot: colab with only the sizes changed — ~1 % of every phase's hours (a few hours of audio in
# all), its own run folder, and the stage sizes of helpers.config (_PROFILE_SIZES["pilot"]).
PROFILES["pilot"] = replace(PROFILES["colab"], name="pilot", hours_scale=0.01, run_name="optimumllm-audio-pilot")


def get_profile(name: str, **overrides) -> Profile:
    """The named profile, with any field overridden (``get_profile("tiny", max_seq_len=512)``)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides) if overrides else PROFILES[name]


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
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if not run_name or "/" in run_name or run_name in (".", ".."):
        raise ValueError(f"run_name must be a plain folder name, got {run_name!r}")
    return RunPaths(Path(runs_root or prof.runs_root).expanduser().resolve() / run_name)
