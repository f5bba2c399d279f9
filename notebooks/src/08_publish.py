# %% [markdown]
# # 08 · Publish — export, model card, demo, upload
#
# The finished model leaves the run directory here. First it is **exported**: the last
# stage's weights as safetensors, the tokenizer with every audio, speaker and emotion
# token, a generation config that stops at `<|audio_end|>`, and `optimum_tts.json`, the
# small file that tells `OptimumTTS.from_pretrained` which codec to use and documents the
# token contract. Nothing else travels: no optimizer states, no Drive paths, no token.
#
# Then we **listen** to a few samples, write the **model card** from the run's own records
# (base model and licence, datasets, the stages that ran, the evaluation table of 07,
# voices, emotions, responsible use), **try the model** in a small widget app, and finally
# **upload** the folder to the Hugging Face Hub — private by default. In the `tiny`
# profile the upload is a dry run that shows exactly what would be sent.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
repo_id = None  # None: <your hub username>/Llama-3.2-3B-OptimumLLM-Audio (-pilot for the pilot); a name must start with "Llama"
private = True  # create the repo private; make it public on the Hub once you have checked it
dry_run = None  # None: dry run in the tiny profile (nothing leaves the machine), a real upload in colab
export_stage = None  # None: the newest finished stage (4, else 3, 2, 1)
export_dtype = "bfloat16"  # weights dtype on the Hub (bf16 halves the 3B model to ~6.4 GB)
sample_text = "Welcome to OptimumAI. This is a text to speech model."  # what the sample clips say
sample_items = [("male_us_01", "neutral"), ("female_uk_01", "happy")]  # (voice, emotion) of each sample clip
demo_max_seconds = None  # cap on audio per generated chunk; None: 40 s on colab, 1 s in tiny (untrained model)
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %%
from IPython.display import Audio, Markdown, display
import pandas as pd
from helpers.publish import demo, upload as publish
from helpers.colab import hub_access
from helpers.publish import export
from helpers.publish import model_card
from helpers.colab import project

# %% [markdown]
# ## 0 · Where it will be published
# Checked now, before the export: the HF token (Colab secret `HF_TOKEN`) must belong to the
# repo's owner (you or one of your organisations) and have **write** access. With `repo_id = None`
# the repo is `<your username>/Llama-3.2-3B-OptimumLLM-Audio`; the Llama 3.2 licence (§1.b.i)
# asks for "Llama" at the beginning of the name of a model built from Llama, and any other name
# gets a warning. A dry run (the tiny profile) only resolves the name.

# %%
from helpers.publish.export import base_model_licence
is_dry_run = publish.default_dry_run(S.profile, dry_run)
target = hub_access.publish_target(repo_id, profile=S.profile, dry_run=is_dry_run,
                                built_with_llama=base_model_licence(S.profile.base_model).built_with_llama)
repo_id = target.repo_id
print(target)

# %% [markdown]
# ## 1 · Export
# The newest finished stage is loaded (its checksums verified), cast to the Hub dtype and
# saved with the tokenizer, the generation config and `optimum_tts.json`. The folder is
# checked (allowed files only, every contract token at its id, no private path or token)
# before it replaces the previous export. Rerunning with unchanged weights skips this.

# %%
exported = export.export_model(S.paths, base_model=S.profile.base_model, codec_model=S.profile.snac_model,
                                stage=export_stage, dtype=export_dtype)
print(exported)
exported.table()

# %% [markdown]
# Anyone can load the export with plain `transformers`; this loads it the way a user
# would and runs one forward pass over a prompt.

# %%
pd.Series(export.verify_export(S.paths.export, S.paths), name="export check").to_frame()

# %% [markdown]
# ## 2 · Listen
# The engine is loaded from the export itself — the same files the Hub will serve. The
# sample clips are saved in `export/samples/` and published with the model.

# %%
tts = demo.load_engine(S.paths.export, S.profile, demo_max_seconds)
samples = demo.render_samples(tts, S.paths.export / export.SAMPLES_DIR, sample_items, sample_text)
display(samples)
Audio(samples.loc[0, "file"])

# %% [markdown]
# ## 3 · Model card
# Written only from the run's records. Where a record is missing the card says so (for
# example "Not evaluated" when 07 has not run); it never invents a number.

# %%
card = model_card.write_model_card(S.paths, repo_id=repo_id, repo_url=project.REPO_URL)
Markdown(card.read_text())

# %% [markdown]
# ## 4 · Try it
# Type a text, pick a voice and an emotion, press **Generate**. To clone a voice choose
# "clone", upload a 10–30 s clip (Colab uploads must be under 1 MB — for longer clips
# paste a path on Drive) and, if you like, save it as a profile for later. Only clone
# voices whose owners agreed. The **Dialogue** tab renders a two-speaker script.

# %%
app = demo.build_demo(tts, voices_dir=demo.voices_dir(S.paths))
app.widget

# %% [markdown]
# ## 5 · Publish
# The token comes from the Colab secret `HF_TOKEN` (or the `HF_TOKEN` environment
# variable) and is never printed. A dry run lists every file and its size; a real run
# creates the repo (private unless `private = False`) and uploads the export. If it
# fails, the export stays as it is: fix the cause and rerun this cell.

# %%
result = publish.upload_export(S.paths.export, repo_id, private=private,
                               dry_run=is_dry_run)
print(result)

# %%
print(publish.where(S.paths))
