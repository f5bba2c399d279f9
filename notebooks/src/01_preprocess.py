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
# Rerunning continues: each finished dataset split is saved as a part and skipped.

# %% tags=["parameters"]
profile = "colab"  # "colab" (A100, hub models, Drive) or "tiny" (offline CPU demo/tests)
run_name = "optimumllm-audio-v1"  # folder under the profile runs root; every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
REPO_URL = "https://github.com/optimumai/optimumllm-audio"  # where Colab fetches this project
PROJECT_DIR = "/content/optimumllm-audio"
datasets = None  # None: every dataset the three seed phases use; or a list like ["libritts_r", "vctk"]
hours_scale = None  # multiplies the hours of every phase; None: 1.0 on the hub, 1e-5 for the tiny corpus
workers = None  # preprocessing processes; None: all CPU cores on Colab, 1 in the tiny profile
seed = 0  # seed of the phase-mix sampler (same seed, same selection)
n_samples = 3  # clips saved per outcome (kept / each rejection reason) for listening
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %%
# The run plan (helpers/plan.py): data hours, tokens, steps, GPU hours, compute units, local and Drive peaks per notebook.
from helpers import drive, plan as run_plan
rp = run_plan.build_plan(S.profile.name, run_dir=S.paths.root,
                         drive_free_gb=(drive.free_bytes(S.paths.root) + drive.tree_bytes(S.paths.root)) / drive.GB)
print(run_plan.format_plan(rp))
for line in run_plan.plan_problems(rp):
    print("WARNING, does not fit:", line)

# %% [markdown]
# ## What we will stream
# One row per (dataset, split): how many kept hours to gather before stopping. Each phase's
# target is scaled by `hours_scale`, and 25 % extra is gathered so the speaker-balanced draw
# has a choice.

# %%
import pandas as pd
from IPython.display import Audio, display
from helpers import preprocess as pp
scale = S.profile.hours_scale if hours_scale is None else hours_scale
n_workers = pp.default_workers(S.profile.name) if workers is None else workers
sources = pp.plan_sources(S.profile.data_source, datasets, scale)
pd.DataFrame([vars(s) for s in sources])

# %% [markdown]
# The rules every clip goes through (seed §10 plus the documented estimator settings):

# %%
pd.Series(vars(pp.DEFAULT_CONFIG), name="value").to_frame()

# %% [markdown]
# ## Run
# A progress bar per source shows kept hours against the target (with ETA). Finished
# sources are saved under `preprocess/parts/` and skipped on a rerun.

# %%
manifest = pp.run_preprocess(S.paths.preprocess, sources, hours_scale=scale, seed=seed,
                             workers=n_workers, n_samples=n_samples)
pp.summary_table(manifest)

# %% [markdown]
# ## Why clips were rejected
# Counts by reason and dataset (reasons from `helpers.preprocess.REASONS`, or a catalog rule).

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
# ## Listen
# A few kept clips (as training will hear them: 24 kHz, -23 LUFS) and a few rejected ones
# (as decoded, first 10 s) — one player per saved clip.

# %%
clips = pp.sample_clips(S.paths.preprocess)
_ = [(print(p.name), display(Audio(str(p)))) for p in clips]
