# %% [markdown]
# # 07 · Evaluate — is it as good as the seed promised?
#
# The seed's §14 sets the bar: **MOS ≥ 4.0, WER ≤ 5 %, speaker similarity ≥ 0.85,
# PESQ ≥ 3.5, RTF ≤ 1.5**, next to Kokoro, OuteTTS and Orpheus. This notebook measures the
# final model of the run on a **fixed test set** (`assets/eval/testset.json`) so that numbers
# mean the same on every run:
#
# * held-out sentences (none in the training data; numbers and dates included) read by every
#   built-in voice in every seed emotion, and cloning items with reference clips from speakers
#   the model never heard (LibriTTS-R test.clean);
# * **WER/CER** — a Whisper model transcribes each clip; transcript and input text go through
#   the same normalizer; **speaker similarity** — WavLM speaker embeddings of clone vs reference;
#   **MOS** — the UTMOS predictor; **PESQ/STOI** — SNAC's reconstruction of real held-out
#   speech, the ceiling on any audio the model can make; **RTF** and **time to first audio**;
# * whether each emotion moves pitch, speed and energy in the direction of the seed's §12 table.
#
# Everything lands in the run's `eval/` folder (tables, `report.json`, figures, clips) for
# `08_publish` and the model card. A rerun skips the items already scored.
#
# In the `tiny` profile the judges are offline stand-ins through the same code
# (Whisper tiny.en, resemblyzer, DNSMOS) and the model is a toy: the numbers only show
# that the pipeline works.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
stage = 4  # evaluate this training stage final model (4: the finished model)
asr_model = None  # None: the profile ASR (Whisper large-v3-turbo on Colab)
speaker_model = None  # None: the profile speaker encoder (microsoft/wavlm-base-plus-sv on Colab)
mos_model = None  # None: the profile MOS predictor ("utmos" on Colab, "dnsmos" offline)
seed = 1234  # base sampling seed; item i uses seed + crc32(item id), so reruns give the same audio
ttfa_items = 3  # items whose time to first audio is measured with streaming
listening_rows = 16  # clips shown in the listening table (all are saved in eval/clips)
max_audio_seconds = None  # cap on each clip (None: the engine guard: 3 s + 1 s per 5 characters, at most 40 s)
tiny_max_audio_seconds = 2.0  # the tiny profile toy model rarely emits <|audio_end|>: its clips stop here
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %% [markdown]
# ## The fixed test set
#
# Item ids are stored in the repository, so every run scores the same items. Each item has
# its own seed derived from its id.

# %%
from IPython.display import HTML, Audio, Image, display
from helpers import evaluation as ev
testset = ev.load_testset(S.profile.eval_testset)
print(f"test set v{testset.version}, profile {testset.profile}: {len(testset.items)} items")
testset.to_frame().groupby(["kind", "emotion"]).size().unstack(fill_value=0)

# %% [markdown]
# ## Held out? Checked against the training shards
#
# A cloning score means little if the reference speaker was in the training data, and a WER
# means little on sentences the model memorised. This refuses to go on if either happened.

# %%
ev.check_held_out(testset, S.paths.tokens)

# %% [markdown]
# ## Reference clips for cloning
#
# Chosen once by a fixed rule (first utterance of each speaker, by id, of 6–15 s) and cached
# in the run directory, so reruns clone from the same clips.

# %%
references = ev.resolve_references(testset, S.paths.eval)
display(ev.references_frame(references))
first = next(iter(references.values()))
Audio(first.wav, rate=first.sample_rate)

# %% [markdown]
# ## The judges and the model
#
# Judge models come from the profile; the model is the final weights of stage `stage`.
# A clip that hits the length cap is scored as it is (a model that cannot stop is a finding).

# %%
from helpers.generation import LengthGuard
from helpers.inference import OptimumTTS
from helpers.train import final_model_dir
judges = ev.load_judges(S.profile, asr=asr_model, speaker=speaker_model, mos=mos_model)
cap = max_audio_seconds or (tiny_max_audio_seconds if S.profile.name == "tiny" else None)
guard = LengthGuard(cap_seconds=cap) if cap else LengthGuard()
tts = OptimumTTS.from_pretrained(final_model_dir(S.paths, stage), snac=S.profile.snac_model, length_guard=guard)
judges.names()

# %% [markdown]
# ## Generate and score every item
#
# One clip per item in `eval/clips/`, its scores in `eval/items/` (a rerun continues here).

# %%
items = ev.evaluate(testset, tts, S.paths.eval, judges, references, seed=seed, ttfa_items=ttfa_items)
items[["item_id", "voice", "reference", "emotion", "wer", "mos", "sim", "rtf", "hypothesis"]]

# %% [markdown]
# ## The codec ceiling: PESQ and STOI of SNAC on real held-out speech

# %%
codec_table = ev.codec_ceiling(tts.codec, references)
codec_table

# %% [markdown]
# ## Against the seed's targets
#
# The seed's anchor rows (Kokoro, OuteTTS, Orpheus) are their published numbers, as quoted by
# the seed; WER here is the mean per-utterance rate, SIM the mean over cloning items.

# %%
paths = ev.write_report(items, codec_table, S.paths.eval, judges=judges.names(), testset=testset,
                        model_name=f"OptimumLLM Audio ({S.profile.name})")
ev.targets_table(ev.summarize(items, codec_table), f"OptimumLLM Audio ({S.profile.name})")

# %% [markdown]
# ## Per voice and per emotion

# %%
display(Image(filename=str(paths["wer_per_voice"])))
ev.breakdown(items[items["kind"] == "voice"], "voice")

# %%
display(Image(filename=str(paths["mos_per_emotion"])))
ev.breakdown(items, "emotion")

# %% [markdown]
# ## Voice cloning: speaker similarity

# %%
display(Image(filename=str(paths["sim_distribution"])))
ev.breakdown(items[items["kind"] == "clone"], "reference")

# %% [markdown]
# ## Emotion control
#
# Each emotional clip against the same voice's neutral clips: median relative change of
# pitch, speaking rate and level, next to the seed's §12 table. Training audio is normalised
# to -23 LUFS, so energy is the hardest column to learn.

# %%
ev.emotion_control(items)

# %% [markdown]
# ## Listen
#
# All clips are in the run's `eval/clips/`; `eval/listening.html` links them all.

# %%
HTML(ev.listening_html(items, S.paths.eval, max_rows=listening_rows))

# %% [markdown]
# ## What was written
#
# `08_publish` reads `report.json` and the figures for the model card.

# %%
{name: str(p.relative_to(S.paths.root)) for name, p in paths.items()}
