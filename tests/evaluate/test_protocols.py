"""helpers.evaluate.protocols: the protocols' WER normalisers on hand-worked cases, their item
lists (the committed fixtures are in the protocols' own formats) and a protocol run end to
end with the real offline judges on real espeak-ng speech."""
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.evaluate import protocols as ep
from helpers.evaluate import protocol_specs as specs
from helpers.evaluate import report as ev
from helpers import scores
from helpers.audio import load_audio
from helpers.profiles import get_profile

torch.set_num_threads(1)
SEED, F5 = specs.get_protocol("seedtts-test-en"), specs.get_protocol("librispeech-pc-test-clean")


# ----------------------------------------------------------------------------- normalisers, worked by hand
@pytest.mark.parametrize("text, seed, f5", [
    # punctuation goes, the ASCII apostrophe stays for Seed-TTS-eval and goes for F5-TTS
    ("Hello, World! It's 5 o'clock.", "hello world it's 5 o'clock", "hello world its 5 oclock"),
    # a hyphen is deleted, not replaced by a space: two words become one
    ("A well-known man.", "a wellknown man", "a wellknown man"),
    # zhon.hanzi.punctuation includes curly quotes: the typographic apostrophe goes in both
    ("Don’t “stop” now…", "dont stop now", "dont stop now"),
    # one pass of double-space collapsing ("a , b" -> "a  b" -> "a b")
    ("a , b", "a b", "a b"),
    # numbers are not spelled out
    ("Gate 22.", "gate 22", "gate 22"),
])
def test_protocol_normalisers_match_hand_worked_cases(text, seed, f5):
    assert specs.seedtts_normalize(text) == seed
    assert specs.f5_normalize(text) == f5


def test_protocol_wer_follows_each_normaliser():
    # "don't" vs "dont": a substitution under Seed-TTS-eval (apostrophe kept), none under F5-TTS
    assert scores.error_breakdown("Don't stop.", "dont stop", SEED.normalize)["wer"] == pytest.approx(0.5)
    assert scores.error_breakdown("Don't stop.", "dont stop", F5.normalize)["wer"] == 0.0
    # no number normalisation: "22" read back as words is one substitution and one insertion
    b = scores.error_breakdown("Gate 22.", "gate twenty two", SEED.normalize)
    assert (b["wer"], b["sub"], b["ins"], b["del"]) == (pytest.approx(1.0), 0.5, 0.5, 0.0)
    # our own normaliser spells numbers, so the same pair scores 0 in the project protocol
    assert scores.error_rates("Gate 22.", "gate twenty two")["wer"] == 0.0


# ----------------------------------------------------------------------------- item lists
def test_fixtures_parse_in_the_protocols_formats():
    for proto in (SEED, F5):
        items = ep.load_items(proto, ep.fixture_list(proto))
        assert len(items) == 2
        for it in items:
            assert it.prompt_wav.is_file() and it.gt_wav is not None and it.gt_wav.is_file()
            assert it.text and it.prompt_text and it.text != it.prompt_text
            assert it.prompt_wav.stem.split("-")[0] == it.gt_wav.stem.split("-")[0]  # same speaker
    # the same items in both lists
    assert [i.text for i in ep.load_items(SEED, ep.fixture_list(SEED))] == \
        [i.text for i in ep.load_items(F5, ep.fixture_list(F5))]


def test_bad_lists_name_the_line_and_the_expected_format(tmp_path):
    (tmp_path / "meta.lst").write_text("u1|prompt|p.wav\n")
    with pytest.raises(ValueError, match=r"meta.lst:1: expected 4 or 5"):
        ep.parse_seedtts_list(tmp_path / "meta.lst")
    (tmp_path / "meta.lst").write_text("u1|prompt|missing.wav|text\n")
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        ep.parse_seedtts_list(tmp_path / "meta.lst")
    (tmp_path / "x.lst").write_text("1-2-3\t1.0\tprompt\t1-2-4\t2.0\n")
    with pytest.raises(ValueError, match="6 tab-separated"):
        ep.parse_f5_librispeech_list(tmp_path / "x.lst", tmp_path)
    (tmp_path / "x.lst").write_text("1-2-3\t1.0\tprompt\t1-2-4\t2.0\ttext\n")
    with pytest.raises(FileNotFoundError, match="1-2-3"):
        ep.parse_f5_librispeech_list(tmp_path / "x.lst", tmp_path)
    with pytest.raises(ValueError, match="unknown protocol"):
        specs.get_protocol("seedtts-test-zh")


def test_published_figures_carry_their_source_and_status():
    for proto in specs.PROTOCOLS.values():
        assert proto.published
        for p in proto.published:
            assert p.source and p.status in ("quoted", "unverified")
            assert p.wer is None or 0 < p.wer < 0.1
    d = ep.describe(SEED)
    assert d["normalizer"] == "seedtts_normalize" and d["hub"] == "k2-fsa/TTS_eval_datasets/seedtts_testset.tar.gz"


# ----------------------------------------------------------------------------- a run, end to end
class GroundTruthSynth:
    """A 'perfect' model: says each item's text with the item's own ground-truth recording."""

    sample_rate = 16000

    def __init__(self, items):
        self.by_text = {it.text: it.gt_wav for it in items}

    def generate(self, text, speaker=None, emotion=None, audio_prompt=None, seed=0):
        assert audio_prompt is not None  # zero-shot: every item clones its prompt
        wav, sr = load_audio(self.by_text[text], target_sr=None)
        assert sr == self.sample_rate
        return wav


@pytest.fixture(scope="module")
def judges():
    j = ep.protocol_judges(F5, get_profile("tiny"), device="cpu")
    assert j.asr.beam_size == F5.asr_beam_size == 5  # the protocol's decoding, on the stand-in model
    return j


@pytest.mark.parametrize("proto", [SEED, F5], ids=lambda p: p.name)
def test_protocol_run_scores_model_and_ground_truth_rows(proto, judges):
    items, source = ep.protocol_items(proto, get_profile("tiny"), "/nonexistent")
    assert source.startswith("fixture ")
    clips = ep.run_protocol(proto, items, GroundTruthSynth(items), judges, progress=False)
    assert list(clips["measured_on"]) == [ev.MODEL_OUTPUT, ev.GROUND_TRUTH] * 2
    model = clips[clips["measured_on"] == ev.MODEL_OUTPUT]
    assert model["wer"].mean() < 0.3  # Whisper tiny.en on espeak-ng speech
    assert (model["sim"] > 0.6).all()  # same espeak voice as the prompt, another sentence
    assert (model["pesq"] > 4.0).all()  # identical to its matching reference
    table = ep.protocol_table(proto, clips, judges.names(), source)
    ours = table[table["status"] == "re-run here"].set_index("system")
    assert set(ours.index) == {"this model", "ground truth"}
    assert ours.loc["this model", "judges"] == "ASR tiny.en-offline, SIM resemblyzer"
    pub = table[table["measured_on"] == "published"]
    assert len(pub) == len(proto.published) and pub["status"].str.contains("quoted|unverified").all()
    assert isinstance(table, pd.DataFrame) and np.isfinite(ours.loc["this model", "wer"])


def test_seeded_sample_is_fixed_and_in_list_order():
    items = [ep.ProtocolItem(f"u{i}", "p", "x.wav", f"t{i}", None) for i in range(100)]
    a, b = ep.sample_items(items, 30, seed=0), ep.sample_items(items, 30, seed=0)
    assert [i.item_id for i in a] == [i.item_id for i in b] and len(a) == 30
    assert [int(i.item_id[1:]) for i in a] == sorted(int(i.item_id[1:]) for i in a)
    assert ep.sample_items(items, None) == items and ep.sample_items(items, 500) == items
    assert get_profile("pilot").protocol_sample and get_profile("colab").protocol_sample is None


class ShortPromptRefusingSynth(GroundTruthSynth):
    """Refuses a prompt under 3 s as the engine does (ReferenceAudioError), and counts batch calls."""

    def __init__(self, items):
        super().__init__(items)
        self.batches = []

    def generate(self, text, speaker=None, emotion=None, audio_prompt=None, seed=0):
        from helpers.infer.voices import ReferenceAudioError

        wav, sr = audio_prompt
        if len(wav) / sr < 3.0:
            raise ReferenceAudioError(f"reference audio has {len(wav) / sr:.2f} s of speech; at least 3 s needed")
        return super().generate(text, audio_prompt=audio_prompt, seed=seed)

    def generate_cloned(self, texts, prompts, *, seeds, emotion=None, batch_size=8):
        self.batches.append(len(texts))
        return [self.generate(t, audio_prompt=p, seed=s) for t, p, s in zip(texts, prompts, seeds)]


def test_unusable_prompts_are_skipped_and_counted(judges, tmp_path):
    """A prompt shorter than 3 s (ReferenceAudioError) and an undecodable one are skipped with their reasons;
    the usable item is generated and scored, and a rerun from the cache does not stop at them."""
    import soundfile as sf

    items, source = ep.protocol_items(F5, get_profile("tiny"), "/nonexistent")
    good = items[0]
    wav, sr = sf.read(good.prompt_wav, dtype="float32")
    short = tmp_path / "short.wav"
    sf.write(short, wav[: int(1.5 * sr)], sr)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    bad = [ep.ProtocolItem("short", good.prompt_text, str(short), good.text, good.gt_wav),
           ep.ProtocolItem("broken", good.prompt_text, str(broken), good.text, good.gt_wav)]
    synth = ShortPromptRefusingSynth(items)
    clips = ep.run_protocol(F5, [bad[0], good, bad[1]], synth, judges, progress=False, out_dir=tmp_path / "c")
    assert set(clips["item_id"]) == {good.item_id}
    reasons = {s["item_id"]: s["reason"] for s in clips.attrs["skipped"]}
    assert reasons == {"short": "unusable_prompt", "broken": "undecodable_prompt"}
    assert synth.batches and max(synth.batches) >= 1  # generated through the batch API
    table = ep.protocol_table(F5, clips, judges.names(), source)
    assert (table.loc[table["status"] == "re-run here", "skipped"] == 2).all()
    assert set(ep.skipped_table(clips)["reason"]) == {"unusable_prompt", "undecodable_prompt"}
    again = ep.run_protocol(F5, [bad[0], good, bad[1]], synth, judges, progress=False, out_dir=tmp_path / "c")
    assert len(again) == len(clips) and len(again.attrs["skipped"]) == 2
