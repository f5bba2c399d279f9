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
#   the same normalizer; the WER is split into insertions, deletions and substitutions;
#   **speaker similarity** — WavLM speaker embeddings of clone vs reference; **MOS** — the UTMOS
#   predictor; **RTF** and **time to first audio**;
# * **every number says what it was measured on**: the model's output, or *ground truth
#   through SNAC* — real held-out speech encoded and decoded by the codec, the ceiling on any
#   audio the model can make. Only model-output numbers pass or fail a target. PESQ/STOI need a
#   recording of the same sentence in the same voice: the project test set has none, so the
#   model's PESQ is N/A there and measured on the LibriSpeech-PC protocol instead;
# * **standard protocols** (Seed-TTS-eval test-en, LibriSpeech-PC test-clean) with their own
#   item lists, WER normalisers and judges, next to published figures;
# * **stability** — failure to stop, loops, duration against the expected length, a long-form
#   set (paragraphs over 60 s through the chunked path) and a two-voice dialogue;
# * whether each emotion moves pitch, speed and energy in the direction of the seed's §12 table
#   (a prosody proxy: no speech-emotion classifier runs offline);
# * **best-of-N**: N candidates per text, the one the ASR judge understands best, and its cost.
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
emotion_model = None  # None: superb/wav2vec2-base-superb-er on Colab (IEMOCAP classes); tiny has no offline classifier
seed = 1234  # base sampling seed; item i uses seed + crc32(item id), so reruns give the same audio
ttfa_items = 3  # items whose time to first audio is measured with streaming
listening_rows = 16  # clips shown in the listening table (all are saved in eval/clips)
max_audio_seconds = None  # cap on each clip (None: the engine guard: 2.5x the duration expected from the text, 1.5-40 s)
tiny_max_audio_seconds = 2.0  # the tiny profile toy model rarely emits <|audio_end|>: its clips stop here
protocols = ("seedtts-test-en", "librispeech-pc-test-clean")  # standard protocols to run (helpers.evaluate.protocols); () skips
protocol_sample = None  # items per protocol; None: the profile's (pilot: a fixed seeded sample of 30; colab: every item, ~1,000 each)
protocol_batch = 8  # protocol items generated together through the engine's batch API
stability = True  # long-form paragraphs (> 60 s) and the two-voice dialogue (assets/eval/stability.json)
best_of_n = 4  # candidates per text for the best-of-N row (1 skips it)
best_of_items = 8  # test-set items re-generated best-of-N
tiny_best_of_items = 1  # the tiny profile: one item, two candidates
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
import pandas as pd
from IPython.display import HTML, Audio, Image, display
from helpers.evaluate import report as ev
from helpers.evaluate import clip_metrics
from helpers.evaluate import figures
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
from helpers.infer.generation import LengthGuard
from helpers.infer.engine import OptimumTTS
judges = ev.load_judges(S.profile, asr=asr_model, speaker=speaker_model, mos=mos_model)
cap = max_audio_seconds or (tiny_max_audio_seconds if S.profile.name == "tiny" else None)
guard = LengthGuard(cap_seconds=cap) if cap else LengthGuard()
tts = OptimumTTS.from_pretrained(S.paths.final_model(stage), snac=S.profile.snac_model, length_guard=guard)
judges.names()

# %% [markdown]
# ## Generate and score every item
#
# One clip per item in `eval/clips/`, its scores in `eval/items/` (a rerun continues here).

# %%
items = ev.evaluate(testset, tts, S.paths.eval, judges, references, seed=seed, ttfa_items=ttfa_items)
items[["item_id", "voice", "reference", "emotion", "wer", "mos", "sim", "rtf", "hypothesis"]]

# %% [markdown]
# ## The ceiling: ground truth through SNAC
#
# Each held-out reference clip (real speech) encoded and decoded by SNAC, scored like the
# model's clips: WER of its transcript, SIM against the original, MOS, and PESQ/STOI against
# the original. No audio the model makes through this codec can beat these numbers; they are
# shown next to the model's, never counted as the model's.

# %%
codec_table = ev.codec_ceiling(tts.codec, references, judges)
codec_table

# %% [markdown]
# ## The judges on human speech
#
# The same judges on the held-out *human* recordings: MOS and WER of each recording, and SIM
# between two different recordings of the same speaker (what a perfect clone would score). A
# judge has its own scale (resemblyzer puts two real recordings of one reader at ~0.84; DNSMOS
# scores clean read speech 2.4–3.5), so SIM and MOS pass relative to these figures.

# %%
from helpers.evaluate import calibration
human_table = calibration.human_figures(references, judges)
human = calibration.human_summary(human_table)
human_table

# %% [markdown]
# ## Against the seed's targets
#
# The seed's anchor rows (Kokoro, OuteTTS, Orpheus) are their published numbers, as quoted by
# the seed, and its targets are absolute numbers from *its* judges (labelled as the seed's).
# Next to them: the same judges as ours on human recordings, and the rule that passes (SIM and
# MOS: a fraction of the human figure, the judge named). WER here is the mean per-utterance
# rate, SIM the mean over cloning items. The `measured on` column says where each of this
# run's numbers comes from; only model output can pass.

# %%
model_name = f"OptimumLLM Audio ({S.profile.name})"
paths = ev.write_report(items, codec_table, S.paths.eval, judges=judges.names(), testset=testset,
                        model_name=model_name, human=human, tables={"human": human_table})
ev.targets_table(ev.summarize(items), model_name, ev.ceiling_summary(codec_table), human, judges.names())

# %% [markdown]
# ## Per voice and per emotion

# %%
display(Image(filename=str(paths["wer_per_voice"])))
figures.breakdown(items[items["kind"] == "voice"], "voice")

# %%
display(Image(filename=str(paths["mos_per_emotion"])))
figures.breakdown(items, "emotion")

# %% [markdown]
# ## Voice cloning: speaker similarity

# %%
display(Image(filename=str(paths["sim_distribution"])))
figures.breakdown(items[items["kind"] == "clone"], "reference")

# %% [markdown]
# ## Emotion control
#
# Each emotional clip against the same voice's neutral clips: median relative change of
# pitch, speaking rate and level, next to the seed's §12 table. Training audio is normalised
# to -23 LUFS, so energy is the hardest column to learn.

# %%
print("emotion judged by:", ev.EMOTION_METHOD)
clip_metrics.emotion_control(items)

# %% [markdown]
# Is the requested emotion *heard*? An emotion classifier (IEMOCAP's neutral, happy, angry,
# sad; excited counts as happy; whisper and calm have no class and are not judged) on every
# clip, where one can run.

# %%
from helpers.evaluate import judges as em
emotion_heard_table = pd.DataFrame()
emotion_judge = emotion_model or (None if S.profile.name == "tiny" else em.SUPERB_ER)
if emotion_judge:
    _, emotion_heard_table = clip_metrics.emotion_recognition(items, S.paths.eval, em.load_emotion_classifier(emotion_judge))
    display(emotion_heard_table)
else:
    print("no emotion classifier runs offline: emotion control is judged by the prosody proxy above only")

# %% [markdown]
# ## Stability on the test set
#
# Failure to stop = the length guard ended a chunk; loops = the loop guard fired or the audio
# repeats itself for 2 s or more; duration ratio = audio seconds / the text at 14 characters
# per second; the WER split into insertions (repeated or invented words), deletions (skipped
# words) and substitutions.

# %%
from helpers.evaluate import stability as st
stability_tables, stability_sections = {}, {}
test_stability = st.stability_summary(items.to_dict("records"))
stability_sections["stability_testset"] = test_stability
pd.DataFrame([test_stability])

# %% [markdown]
# ## Long form and dialogue
#
# Paragraphs estimated at over a minute go through the engine's chunked path; drift is the
# speaker similarity of the first against the last 10 s. The dialogue alternates two built-in
# voices: WER per turn, similarity within each voice across its turns (high is good) and
# between the two speakers (low is good).

# %%
stab_set = st.load_stability_set(S.profile.name)
if stability:
    long_form = st.run_long_form(tts, stab_set["long_form"], judges, seed=seed)
    stability_tables["long_form"] = long_form.drop(columns=["hypothesis"])
    stability_sections["long_form"] = st.stability_summary(long_form.to_dict("records"))
    display(long_form[["id", "audio_s", "expected_s", "duration_ratio", "n_chunks", "hit_length_guard",
                       "audio_loop", "wer", "ins", "del", "sub", "drift_sim", "rtf"]])

# %%
if stability:
    dialogue_turns, dialogue = st.run_dialogue(tts, stab_set["dialogue"], judges, seed=seed)
    stability_tables["dialogue_turns"] = dialogue_turns
    stability_sections["dialogue"] = dialogue
    display(dialogue_turns[["turn", "speaker", "wer", "ins", "del", "sub", "duration_ratio", "audio_loop"]])
    print({k: round(v, 3) for k, v in dialogue.items()})

# %% [markdown]
# ## Standard protocols: Seed-TTS-eval test-en and LibriSpeech-PC test-clean
#
# Each protocol brings its own item list (from the Hub on Colab, small fixtures in the same
# format offline), its own WER normaliser (no number spelling; Seed-TTS-eval keeps
# apostrophes, F5-TTS's list drops them) and its judges (Whisper large-v3 on Colab; the SIM
# judge is our WavLM speaker encoder, not the protocols' WavLM-large checkpoint, so SIM is
# comparable in kind). Published rows are quoted from their sources, not re-run here;
# `status` says which. LibriSpeech-PC has a recording of every target sentence by the
# prompt's speaker, so the model's PESQ/STOI are measured there, against it.

# %%
from helpers.evaluate import protocol_specs, protocols as ep
protocol_tables, protocol_sections = [], {}
for name in protocols:
    proto = protocol_specs.get_protocol(name)
    p_items, p_source = ep.protocol_items(proto, S.profile, S.paths.eval / "protocols",
                                          sample=protocol_sample or S.profile.protocol_sample, seed=seed)
    p_judges = ep.protocol_judges(proto, S.profile, reuse=judges)
    p_clips = ep.run_protocol(proto, p_items, tts, p_judges, seed=seed, out_dir=S.paths.eval / "protocols" / "items",
                              batch_size=protocol_batch)
    protocol_tables.append(ep.protocol_table(proto, p_clips, p_judges.names(), p_source))
    protocol_sections[name] = {**ep.describe(proto), "items": p_source, "n_items": len(p_items),
                               "judges": p_judges.names(), "skipped": p_clips.attrs.get("skipped", [])}
protocol_table = pd.concat(protocol_tables, ignore_index=True) if protocol_tables else pd.DataFrame()
protocol_table

# %% [markdown]
# ## Best of N
#
# The same test items with `candidates=best_of_n`: the candidate the ASR judge transcribes with
# the lowest CER is kept (ties go to speaker similarity). The cost is in the RTF column: every
# candidate is generated and judged. The judge that picks is also the judge that scores here,
# so the WER gain is an optimistic estimate.

# %%
n_bo = tiny_best_of_items if S.profile.name == "tiny" else best_of_items
bo_n = 2 if S.profile.name == "tiny" else best_of_n
best_of_table = pd.DataFrame()
if best_of_n > 1 and n_bo > 0:
    bo_items = [it for it in testset.items if it.kind == "voice"][:n_bo]
    best_of_table, best_of_picks = ev.best_of_rows(bo_items, items, tts, judges, n=bo_n, seed=seed)
best_of_table

# %%
extra = {**stability_tables, "best_of": best_of_table, "emotion_heard": emotion_heard_table}
if len(protocol_table):
    extra["protocols"] = protocol_table
paths.update(ev.add_to_report(S.paths.eval, tables={k: v for k, v in extra.items() if len(v)},
                              sections={**stability_sections, "protocols": protocol_sections,
                                        "best_of": best_of_table, "emotion_heard": emotion_heard_table,
                                        "emotion_judge": emotion_judge or ev.EMOTION_METHOD}))

# %% [markdown]
# ## Listen
#
# All clips are in the run's `eval/clips/`; `eval/listening.html` links them all.

# %%
HTML(figures.listening_html(items, S.paths.eval, max_rows=listening_rows))

# %% [markdown]
# ## What was written
#
# `08_publish` reads `report.json` and the figures for the model card.

# %%
{name: str(p.relative_to(S.paths.root)) for name, p in paths.items()}
