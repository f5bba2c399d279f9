# %% [markdown]
# # 02 · Tokenize — kept audio to SNAC codes, in resumable shards
#
# The language model learns from SNAC codes, not waveforms. This notebook streams the
# clips that `01_preprocess` kept and selected for a training phase — from **exactly the
# dataset revisions 01 pinned** (a changed source is refused) — and rebuilds each clip by
# **applying 01's recorded decisions** (trim, gain; no second analysis, so no WAV was ever
# stored), then encodes them with SNAC 24 kHz in GPU batches of similar lengths, each
# holding at most `encode_batch_seconds` of padded audio (halved automatically on OOM).
#
# Codes are written as parquet **shards** of a fixed number of utterances in manifest
# order, each file written atomically. A rerun skips finished shards and continues the
# unfinished one from its saved parts; a run killed at any point and rerun gives exactly
# the same shards. Shards hold raw codes (0–4095) plus metadata, never vocabulary ids,
# so changing the tokenizer never forces re-encoding. A per-speaker index lets training
# pick a *different* utterance of the same speaker as a voice-cloning reference.

# %% tags=["parameters"]
profile = "colab"  # "colab" (the full run), "pilot" (the same at ~1 % of the data: try it first) or "tiny" (offline CPU demo/tests)
run_name = None  # None: the profile's run folder (optimumllm-audio-v1; pilot: optimumllm-audio-pilot); every notebook of a run uses the same
runs_root = None  # None: the profile default (Drive on Colab, ./runs locally)
snac_model = None  # None: the codec of the profile (hubertsiuzdak/snac_24khz on Colab)
shard_size = 512  # utterances per shard (~1.4 h of speech); a kill loses at most the unsaved part of one
encode_batch_seconds = None  # padded audio seconds per SNAC batch; None: the profile's (600 s: ~12 GiB on an A100 40 GB; halved on OOM)
workers = None  # preprocessing processes; None: all CPU cores on Colab, 1 in the tiny profile
n_listen = 2  # decoded utterances to listen to at the end
# %% [markdown]
# ## Setup

# %% [setup]
S = session.start(profile, run_name, runs_root)   # mounts Drive on Colab; S.profile, S.paths (helpers.profiles.RunPaths)
print(S); print(session.device_summary())

# %% [markdown]
# ## What 01 selected
# Only clips that are kept *and* drawn into some phase are encoded, in manifest order.

# %%
import pandas as pd
from IPython.display import Audio, display
from helpers.data import preprocess as pp, tokenize_audio as ta
from helpers.codec import SnacCodec
manifest = pp.read_manifest(S.paths.preprocess)
selected = ta.selected_rows(manifest)
print(f"{len(selected)} clips, {selected['duration_s'].sum() / 3600:.3f} h to encode")
selected.groupby("dataset")["duration_s"].agg(clips="count", hours=lambda s: s.sum() / 3600)

# %% [markdown]
# ## Load the codec
# The real `hubertsiuzdak/snac_24khz` on Colab; the same architecture with random weights
# in the tiny profile.

# %%
codec = SnacCodec.load(snac_model or S.profile.snac_model)
codec.info()

# %% [markdown]
# ## Encode
# The bar counts clips (with ETA) and shows hours encoded and shards finished. Interrupt and
# rerun at will: finished shards are skipped, and the stream restarts at 01's resume point
# just before the first clip still missing (`rows_read` in the summary).

# %%
summary = ta.run_tokenize(S.paths.tokens, manifest, codec, sources=pp.read_sources(S.paths.preprocess),
                          shard_size=shard_size, batch_seconds=encode_batch_seconds or S.profile.encode_batch_seconds,
                          workers=pp.default_workers(S.profile) if workers is None else workers,
                          cfg=pp.config_from_report(S.paths.preprocess))
summary

# %% [markdown]
# ## The shards
# One row per shard file: 1,000 h of speech fit in ~0.6 GB of codes.

# %%
ta.shard_table(S.paths.tokens)

# %% [markdown]
# Speakers and the utterances each offers as cloning references, and clips per phase:

# %%
index = ta.read_speaker_index(S.paths.tokens)
pd.Series({s: len(ids) for s, ids in index.items()}, name="utterances").sort_values(ascending=False).head(20).plot.bar(
    title="utterances per speaker (top 20)", figsize=(10, 3));
pd.Series({f"phase {n}": len(ta.read_phase_ids(S.paths.tokens, n)) for n in (1, 2, 3)}, name="clips").to_frame()

# %% [markdown]
# ## Listen to the written codes
# Decoded straight from the shards. With the tiny profile's random-weight codec this is
# noise by design; on Colab it is the speech the model will learn to produce.

# %%
examples = ta.decode_examples(S.paths.tokens, codec, n=n_listen)
_ = [(print(u.utterance_id, "·", u.text), display(Audio(w, rate=codec.sample_rate))) for u, w in examples]
