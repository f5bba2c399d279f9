# %% [markdown]
# # 00 · SNAC test — what the model will hear and say
#
# OptimumLLM Audio speaks through **SNAC 24 kHz**, a neural codec that turns speech into
# three streams of discrete codes at three time scales. The language model never sees a
# waveform: it reads and writes these codes as tokens. This notebook loads the codec,
# encodes a speech clip, shows the three codebooks and the 7-token frames the model will
# read, decodes the codes back to audio and measures how much survives the round trip.
#
# Nothing here is needed by later notebooks; run it to check your runtime and your ears.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
snac_model = None  # None: the profile codec (hubertsiuzdak/snac_24khz on Colab)
clip_path = None  # a speech file of yours (wav/flac/ogg/mp3); None: a bundled clip from assets/
clip_index = 0  # which bundled clip, when clip_path is None
context_tokens = 8192  # the training context the token budget is compared against (seed §5)
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)
print(S); print(session.device_summary())

# %% [markdown]
# ## Preflight
# A few minutes now instead of a failure hours later. One row per check: the HF token and its
# scope (08 needs **write**), access to the base model (Llama licence accepted) and the codec,
# every dataset of phases 1–3 (terms accepted, config and splits exist, one row streams with the
# columns the catalog reads), free space on Drive against what the run will need (modelled), and
# the GPU. Run it first, on the runtime you will train on. Anything that blocks stops here with what to do; the same checks
# run from a terminal with `python -m helpers.plan.preflight --profile {colab|pilot|tiny}`.

# %%
from helpers.plan import preflight
preflight_rows = preflight.run(S.profile.name, runs_root=str(S.paths.root.parent))

# %% [markdown]
# ## Load the codec
# On Colab this downloads `hubertsiuzdak/snac_24khz` (~80 MB). In the `tiny` profile it
# builds the same architecture with **random weights** — offline, same code path.

# %%
from IPython.display import Audio, display
from helpers.evaluate import codec_report
from helpers.audio import load_audio
from helpers.codec import SnacCodec
from helpers.profiles import RANDOM_SNAC_24KHZ

codec = SnacCodec.load(snac_model or S.profile.snac_model)
if (snac_model or S.profile.snac_model) == RANDOM_SNAC_24KHZ:
    print("NOTE: random-weight SNAC (tiny profile): codes are real but meaningless, "
          "and the reconstruction below is noise. Use the colab profile to hear the real codec.")
print(f"sample rate {codec.sample_rate} Hz · hop {codec.hop_length} samples · "
      f"{codec.samples_per_frame} samples per 7-token frame · {codec.tokens_per_second:.2f} tokens/s")

# %% [markdown]
# ## Encode a speech clip

# %%
path, text = (clip_path, "(your clip)") if clip_path else codec_report.bundled_clip(clip_index)
wav, sr = load_audio(path, target_sr=codec.sample_rate)
duration = len(wav) / sr
codes = codec.encode(wav)
print(f"{path}: {duration:.2f} s — “{text}”")
display(Audio(wav, rate=sr))

# %% [markdown]
# ## Three codebooks, three time scales
# CB1 runs at ~12 Hz, CB2 at ~24 Hz, CB3 at ~47 Hz: every CB1 code has 2 CB2 and 4 CB3
# codes under it. The rates come from the model (hop length × VQ strides).

# %%
codebook_report = codec_report.codebook_table(codec, codes, duration)
codebook_report

# %% [markdown]
# ## Frames: what the language model reads
# Each 7-token frame is `CB1[i], CB2[2i], CB2[2i+1], CB3[4i..4i+3]` — coarse to fine
# (seed Appendix A). These are the token strings the extended LLaMA vocabulary holds.

# %%
codec_report.frame_table(codes, n_frames=4)

# %% [markdown]
# ## Decode and listen

# %%
reconstruction = codec.decode(codes)[: len(wav)]
print("original"); display(Audio(wav, rate=sr))
print("SNAC reconstruction"); display(Audio(reconstruction, rate=sr))
codec_report.plot_spectrograms({"original": wav, "reconstruction": reconstruction}, sr);

# %% [markdown]
# ## Round-trip quality
# PESQ (wideband) and STOI are computed at 16 kHz; the log-mel distance at 24 kHz.
# The real codec scores around PESQ 3.8 on clean speech (seed §5); random weights score
# near the floor, as they should.

# %%
quality = codec_report.round_trip_quality(wav, reconstruction, sr)
quality

# %% [markdown]
# ## Token budget
# How many tokens a clip costs against the training context. A cloned voice adds its
# reference clip to the prompt, which is why clips are capped at 30 s.

# %%
codec_report.token_budget_table(codec, context=context_tokens)
