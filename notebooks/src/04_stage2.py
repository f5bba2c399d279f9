# %% [markdown]
# # 04 · Stage 2 — Large-scale pretraining
#
# The model learns to turn text into SNAC audio tokens on the broad phase-1 mix
# (seed §9: LibriTTS-R, GigaSpeech, HiFi-TTS, ~1,050 h; seed §11: LR 5e-5, 72–120 h on an A100).
#
# This notebook is one of three that run the **same training recipe** (`helpers/train/recipe.py`);
# 04, 05 and 06 differ only in the `stage` parameter, from which `helpers.train.config.stage_config`
# takes the seed's learning rate and data phase (stage 2: 5e-5 on phase 1, stage 3: 1e-5 on
# phase 2, stage 4: 5e-6 on phase 3). Each stage starts from the previous stage's final weights.
#
# **Disconnects.** A checkpoint (weights, optimizer, schedule, RNG, data position) is written every
# `save_every_minutes` of training (40 by default) and at the end of the stage: to local disk first, then
# copied atomically into the run directory with a manifest of SHA-256 hashes. Rerun this notebook after a
# disconnect and it resumes from the newest complete checkpoint; a copy that was cut off is detected and
# the one before it is used. If you changed a parameter that would change the math of the resumed run
# (learning rate, steps, data, precision, optimizer…), it refuses and names the parameter; settings that
# only change how the same math is computed (activation checkpointing, CE chunk) are re-planned for the
# GPU this session got.
#
# **What "exact" means here.** On CPU (fp32), a run killed with SIGKILL and resumed matches the
# uninterrupted run bit for bit — losses and final weights (`tests/train/test_train.py`). On a GPU the resumed
# run continues from the very same state, but GPU kernels may sum in a different order from one run to
# the next, so the curves agree to rounding, not to the bit; `deterministic=True` makes repeated runs on
# the same GPU and library versions repeat (slower), and no setting makes different GPUs agree.
#
# **Drive space.** At most one complete checkpoint plus the one being written is on Drive (a 3B
# checkpoint is ~19.5 GB); once the stage's final model is saved and verified, its checkpoints are
# deleted. Files deleted through the Drive mount go to Drive's Trash, which still counts against your
# quota for 30 days, so by default (`drive_deletion="permanent"`) checkpoints are deleted through the
# Drive API instead (Colab asks once for access to your Drive). The run plan below shows the Drive peak
# of the whole run, Trash included; free space is checked before every large write.
#
# **Memory.** Full fine-tuning of a 3B model on one 40 GB A100 needs memory techniques (bf16, an
# optimizer with small states, activation checkpointing, a chunked cross entropy over the 140k
# vocabulary). A planner (`helpers/train/planner.py`) picks them for the GPU this session got and prints
# its plan before training; any of them can be set by hand below.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
stage = 2  # training stage: 2, 3 or 4 (the only difference between notebooks 04, 05 and 06)
learning_rate = None  # None: the LR of seed §11 for this stage (5e-5 / 1e-5 / 5e-6)
max_steps = None  # None: the profile default (colab: one epoch of the phase data)
grad_accum = None  # packed sequences per optimizer step; None: the profile default
save_every = None  # steps between checkpoints; None: the profile default (colab: by wall clock only)
save_every_minutes = None  # minutes of training between checkpoints; None: the profile default (40)
eval_every = None  # steps between evaluations (held-out loss + a generated sample)
keep_last = None  # complete checkpoints kept on Drive during the stage (default 1; all deleted once the final model is verified)
drive_deletion = None  # "permanent" (Drive API, skips the Trash; asks once for Drive access) or "trash"; None: profile default
deterministic = None  # True: deterministic GPU kernels (repeatable on the same GPU, slower); None: off
reference_prob = None  # chance that an example of a non-built-in speaker carries a cloning reference (default 0.5)
voice_overrides = None  # e.g. {"male_uk_01": "vctk:p243"}: corpus speaker per built-in voice (chosen once, in stage 2)
accept_voice_fallback = None  # True: a voice whose planned speaker is missing trains on the one 04 names; None: the profile's choice (stop, except tiny)
seed = None  # data order and reference choice; None: the default
# memory / speed: None: the planner choice for this GPU (the plan is printed before training)
precision = None  # "bf16-mixed" (fp32 weights, bf16 autocast), "bf16-pure" (bf16 weights) or "fp32"
optimizer = None  # "adamw_torch", "adamw_8bit", "adamw_bf16_stochastic" or "adamw_bf16_master"
checkpointing = None  # activation checkpointing: "none", "full" or "selective"
ce_chunk = None  # tokens per chunk of the LM-head cross entropy; 0: no chunking
deepspeed = None  # e.g. "configs/ds_zero2_offload.json": train through HF Trainer + DeepSpeed ZeRO
launch_gpus = 8  # GPUs of the printed multi-GPU launch command
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %% [markdown]
# ## The run plan
#
# What the whole run costs, per notebook: data hours, tokens, optimizer steps, GPU hours, Colab compute
# units, local-disk and Drive peaks (Trash included). Sizes come from this run directory where they
# exist, from the catalog before; the Drive figures replay the checkpoint policy the trainer uses.

# %%
from helpers.colab import drive
from helpers.plan import costs as run_plan
free_gb = (drive.free_bytes(S.paths.root) + drive.tree_bytes(S.paths.root)) / drive.GB  # what this run may use
rp = run_plan.build_plan(S.profile, run_dir=S.paths.root, drive_free_gb=free_gb, drive_deletion=drive_deletion)
print(run_plan.format_plan(rp))
for line in run_plan.plan_problems(rp):
    print("WARNING, does not fit:", line)

# %% [markdown]
# ## The stage config
#
# One typed dataclass; every field is documented in `helpers/train/config.py` and validated. Memory fields
# left at None are filled in by the planner further down.

# %%
import pandas as pd
from helpers.train import config, recipe as train, stage_plan
cfg = config.stage_config(stage, S.profile, learning_rate=learning_rate, max_steps=max_steps, grad_accum=grad_accum,
                          save_every=save_every, save_every_minutes=save_every_minutes, eval_every=eval_every,
                          keep_last=keep_last, drive_deletion=drive_deletion, deterministic=deterministic,
                          reference_prob=reference_prob, seed=seed, precision=precision, optimizer=optimizer,
                          checkpointing=checkpointing, ce_chunk=ce_chunk, deepspeed=deepspeed)
pd.DataFrame(cfg.rows())

# %% [markdown]
# ## The data of this stage's phase
#
# `02_tokenize` recorded which utterances belong to each phase of the seed's training mix.

# %%
utterances, all_utterances = train.load_phase(S.paths.tokens, cfg.phase)
pd.DataFrame(train.phase_table(utterances))

# %% [markdown]
# ## Built-in voices
#
# Eight corpus speakers become the built-in voices (4 US, 4 British): the documented speakers of
# `helpers.data.speaker_facts.BUILTIN_VOICE_PLAN` (Expresso's two men and two women for the US voices,
# southern-English VCTK speakers for the British ones), else the rule in
# `helpers.train.sequences.choose_builtin_voices`. They are chosen once, in stage 2, and kept in later
# stages. Every other speaker trains zero-shot cloning: with probability `reference_prob` its
# example carries 3-20 s cut from *other* utterances of the same speaker.

# %%
accept = S.profile.accept_voice_fallback if accept_voice_fallback is None else accept_voice_fallback
voices = train.voices_for_stage(S.paths, stage, all_utterances, overrides=voice_overrides, accept_fallback=accept)
pd.DataFrame(voices.table())

# %% [markdown]
# ## Coverage: what this run's data really trains
#
# From the token shards: minutes of every built-in voice and every emotion in each of stages 2, 3
# and 4 (the voices' own speech is replayed into every phase after it appears, so later stages
# do not forget them), the emotions that will count as trained (an export refuses the others),
# and how many examples carry a cloning reference, with the reference lengths (3-20 s, the range
# inference accepts). `python -m helpers.plan --coverage` shows the same before any download.

# %%
from helpers.plan import coverage
cov = coverage.coverage_report(S.profile, run_dir=S.paths.root, utterances=all_utterances)
print(coverage.format_coverage(cov))

# %% [markdown]
# ## The training plan
#
# The planner models the peak GPU memory and the speed of every configuration it knows for this
# model (its real layer count, width and extended vocabulary) and this stage's token budget, keeps
# those that fit the GPU and takes the fastest. Parameters you set above are kept (with a loud
# warning if they cannot fit); the rest come from the plan. A run already in progress keeps the
# settings it started with, so it resumes exactly. Without a GPU (the tiny profile) the plan is
# shown for Colab's A100 as information, and the CPU run uses fp32.

# %%
from IPython.display import display
from transformers import AutoConfig
hours = sum(r["hours"] for r in train.phase_table(utterances))
plan, cfg = stage_plan.plan_stage(cfg, AutoConfig.from_pretrained(S.paths.init_model(stage)),
                              audio_hours=hours, stage_dir=S.paths.stage(stage))
display(plan)  # the choice, its memory breakdown, the speed estimate and why
pd.DataFrame([r for r in cfg.rows() if r["field"] in config.PLANNED_FIELDS + ("attention",)])

# %% [markdown]
# ## Model (the previous stage's final weights) and codec (for listening to samples)
#
# The model is loaded in the dtype the plan trains in (bf16 for pure bf16 and DeepSpeed, else fp32).

# %%
from helpers import models
from helpers.codec import SnacCodec
model, tokenizer = models.load_stage(S.paths.init_model(stage), dtype=cfg.model_dtype)
codec = SnacCodec.load(S.profile.snac_model)
print(f"{models.count_parameters(model):,} parameters from {S.paths.init_model(stage)}")

# %% [markdown]
# ## Setup: examples, packing, resume
#
# Examples follow the prompt format of the token contract; loss is on the audio tokens and
# `<|audio_end|>` only. They are packed padding-free into sequences of `max_seq_len` tokens
# (attention stays inside each example). "resumed from" says where training continues.

# %%
recipe = train.StageRecipe(cfg, model, tokenizer, utterances, S.paths.stage(stage), voices, decoder=codec).setup()
pd.DataFrame(recipe.data_report())

# %% [markdown]
# ## Several GPUs instead of one
#
# The same recipe runs on several GPUs of one machine with DeepSpeed ZeRO (`configs/ds_*.json`):
# run this command from a terminal in the project folder (after this notebook's setup cell above
# wrote the stage's `config.json`). Every GPU runs `python -m helpers.train` through HF Trainer.

# %%
print(train.launch_command(S.paths, stage, cfg, launch_gpus))

# %% [markdown]
# ## Train
#
# The plan above is what runs. The bar shows loss, learning rate, tokens/s and the ETA.
# `metrics.csv` gets a row every `log_every` steps on local disk and is copied to the stage folder on
# Drive with retries; a Drive error is reported and training goes on (the next copy catches up).
# With `deepspeed` set, the same call trains through HF Trainer + DeepSpeed instead.

# %%
result = recipe.train()
result

# %% [markdown]
# ## Save the final weights (the next stage starts from them)
#
# Free space is checked first; once the saved model is verified, the stage's checkpoints are deleted.

# %%
final_dir = recipe.save_final()
recipe.cleanup()
print(final_dir, sorted(p.name for p in final_dir.iterdir()))

# %% [markdown]
# ## Loss and learning rate

# %%
import matplotlib.pyplot as plt
train.plot_metrics(S.paths.stage(stage))
plt.show()

# %% [markdown]
# ## Listen to the newest evaluation sample
#
# Greedy generation from a held-out prompt at the last evaluation, decoded with SNAC.

# %%
from IPython.display import Audio, display
wav_path, row = train.latest_sample(S.paths.stage(stage))
display(pd.DataFrame([row]))
Audio(filename=str(wav_path)) if wav_path else print("no decoded sample yet (evaluation disabled?)")
