# %% [markdown]
# # 01 · Preprocess — from raw corpora to a clean, counted manifest
#
# The model can only be as good as the audio it learns from. This notebook streams the
# seed's datasets (§9) from the Hub — or, in the `tiny` profile, the bundled espeak corpus
# through the very same `datasets` path — and brings every clip to the seed's §10 format:
# **mono, 24 kHz, -23 LUFS ±1 without clipping, silence trimmed, 1–30 s, SNR ≥ 20 dB**,
# transcripts normalized for TTS.
#
# Every clip is either **kept** or **rejected with a reason**; nothing disappears uncounted.
# No WAVs are stored (1,000 h would be ~170 GB): we write a *manifest* — one row per clip —
# and `02_tokenize` re-streams the kept clips through the same deterministic function.
# The phase-mix sampler of the catalog then picks which kept clips feed training phases 1–3.
#
# Rerunning continues: progress inside a dataset split is saved every `checkpoint_rows` rows
# (a disconnect loses minutes), finished splits are skipped, and the dataset revision each
# split was read at is pinned for this run (02 reads exactly the same data).

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
datasets = None  # None: every dataset the three seed phases use; or a list like ["libritts_r", "vctk"]
hours_scale = None  # multiplies the hours of every phase; None: the profile's (colab 1.0, pilot 0.01, tiny 5e-5)
workers = None  # preprocessing processes; None: all CPU cores on Colab, 1 in the tiny profile
seed = 0  # seed of the phase-mix sampler (same seed, same selection)
n_samples = 3  # clips saved per outcome (kept / each rejection reason) for listening
checkpoint_rows = 1000  # source rows per saved piece: a disconnect loses at most this much work (~1 min on Colab)
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %%
# The run plan (helpers/plan/costs.py): data hours, tokens, steps, GPU hours, compute units, local and Drive peaks per notebook.
from helpers.colab import drive
from helpers.plan import costs as run_plan
rp = run_plan.build_plan(S.profile, run_dir=S.paths.root,
                         drive_free_gb=(drive.free_bytes(S.paths.root) + drive.tree_bytes(S.paths.root)) / drive.GB)
print(run_plan.format_plan(rp))
for line in run_plan.plan_problems(rp):
    print("WARNING, does not fit:", line)

# %% [markdown]
# ## Preflight
# A few minutes now instead of a failure hours later. One row per check: the HF token and its
# scope (08 needs **write**), access to the base model (Llama licence accepted) and the codec,
# every dataset of phases 1–3 (terms accepted, config and splits exist, one row streams with the
# columns the catalog reads), free space on Drive against what the run will need (modelled), and
# the GPU. 01 itself runs on CPU, so the GPU row is skipped here. Anything that blocks stops here with what to do; the same checks
# run from a terminal with `python -m helpers.plan.preflight --profile {colab|pilot|tiny}`.

# %%
from helpers.plan import preflight
preflight_rows = preflight.run(S.profile.name, runs_root=str(S.paths.root.parent), gpu=False)

# %% [markdown]
# ## What we will stream
# One row per (dataset, split): how many kept hours to gather before stopping. Each phase's
# target is scaled by `hours_scale`, and 25 % extra is gathered so the speaker-balanced draw
# has a choice.

# %%
import pandas as pd
from IPython.display import Audio, display
from helpers.data import preprocess as pp
from helpers.plan import coverage
from helpers import clip_audio
from helpers.data import source_stream
scale = S.profile.hours_scale if hours_scale is None else hours_scale
n_workers = pp.default_workers(S.profile) if workers is None else workers
sources = source_stream.plan_sources(S.profile.data_source, datasets, scale)
pd.DataFrame([vars(s) for s in sources])

# %% [markdown]
# The rules every clip goes through (seed §10 plus the documented estimator settings):

# %%
pd.Series(vars(clip_audio.DEFAULT_CONFIG), name="value").to_frame()

# %% [markdown]
# ## Run
# A progress bar per source shows kept hours against the target (with ETA). Every
# `checkpoint_rows` rows a piece is saved under `preprocess/parts/<source>/` with the stream's
# resume point in `preprocess/sources.json`; a rerun continues from there. Finished sources
# are saved as `preprocess/parts/<source>.parquet` and skipped.

# %%
manifest = pp.run_preprocess(S.paths.preprocess, sources, hours_scale=scale, seed=seed,
                             workers=n_workers, n_samples=n_samples, checkpoint_rows=checkpoint_rows)
pp.summary_table(manifest)

# %% [markdown]
# ## Why clips were rejected
# Counts by reason and dataset (reasons from `helpers.data.preprocess.REASONS`, or a catalog rule).

# %%
pp.rejection_table(manifest)

# %% [markdown]
# ## What we kept
# Hours per dataset, accent, emotion and speaker; durations, loudness after normalisation
# (all within -23 ±1 LUFS) and the SNR estimate of kept clips.

# %%
fig = pp.plot_report(manifest)

# %% [markdown]
# ## Training phases
# The catalog's phase-mix sampler draws each phase's hours from the kept clips (phase 1 →
# stage 2, phase 2 → stage 3, phase 3 → stage 4). In the tiny profile every phase draws from
# the one small corpus, so the phases overlap.

# %%
pd.DataFrame(pp.read_report(S.paths.preprocess)["phases"]).T

# %% [markdown]
# ## Built-in voices
# Each of the eight built-in voices is a documented corpus speaker (`helpers.data.speaker_facts.BUILTIN_VOICE_PLAN`).
# If one of them is not among the kept clips (the pilot reads only part of each corpus), this says which
# voice would fall back and to whom; 04 then stops unless you set `accept_voice_fallback = True` there.

# %%
voice_rows, voice_fallback = coverage.planned_voices(manifest)
print(voice_fallback or "every built-in voice has its planned corpus speaker")
pd.DataFrame(voice_rows)

# %% [markdown]
# ## Listen
# A few kept clips (as training will hear them: 24 kHz, -23 LUFS) and a few rejected ones
# (as decoded, first 10 s) — one player per saved clip.

# %%
clips = pp.sample_clips(S.paths.preprocess)
_ = [(print(p.name), display(Audio(str(p)))) for p in clips]
