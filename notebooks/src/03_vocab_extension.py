# %% [markdown]
# # 03 · Stage 1 — extend the vocabulary
#
# LLaMA 3.2 reads text. To speak, it needs a token for every SNAC code: 3 × 4,096 audio
# tokens (`<|snac1_0|>` … `<|snac3_4095|>`), plus the structure tokens of the prompt
# (`<|text_start|>`, `<|speaker_start|>`, `<|audio_start|>`, …), one token per emotion and
# one per built-in voice. This notebook appends them to the tokenizer in the order the
# token contract (`helpers/tokens.py`) fixes, grows the embedding matrix to a multiple
# of 64 rows, and initialises the new rows near the mean of the existing ones so the
# model's text behaviour is untouched when training starts.
#
# The result is saved atomically into the run directory (`stage1/`); stage 2 starts from it.
# A rerun finds the finished folder and only shows it again.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
base_model = None  # None: the base LLaMA of the profile (meta-llama/Llama-3.2-3B on Colab)
pad_to_multiple_of = 64  # embedding rows are rounded up to this (tensor-core friendly)
init = "mean"  # how new rows start: "mean" (mean of base rows + small noise)
noise_std = 0.1  # noise of the new rows, in units of the std of the base rows
seed = 0  # seed of that noise
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %% [markdown]
# ## Extend (or find the finished stage 1)
#
# The checks in the report must all hold: new ids contiguous after the base vocabulary,
# text ids and base embedding rows unchanged, base-vocabulary logits unchanged.

# %%
import pandas as pd
from helpers import models
done = (S.paths.stage(1) / models.COMPLETE_MARKER).is_file()
if not done:
    model, tokenizer = models.load_base(base_model or S.profile.base_model)
    model, tokenizer, layout, report = models.extend_vocabulary(
        model, tokenizer, pad_to_multiple_of=pad_to_multiple_of, init=init, noise_std=noise_std, seed=seed)
    models.save_stage(model, tokenizer, S.paths.stage(1), metadata=report.to_dict())
metadata = models.read_complete_marker(S.paths.stage(1))["metadata"]  # the ExtensionReport, as saved
pd.DataFrame({"value": metadata}).drop(index="check_texts")

# %% [markdown]
# ## What was saved
#
# Every file of `stage1/` with its size; `COMPLETE.json` (written last) holds their SHA-256.

# %%
files = models.read_complete_marker(S.paths.stage(1))["files"]
pd.DataFrame([{"file": f, "MB": round(v["bytes"] / 1e6, 2)} for f, v in files.items()])
