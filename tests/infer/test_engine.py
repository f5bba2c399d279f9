"""OptimumTTS end to end on CPU: a tiny LLaMA trained in the test, random-weight SNAC."""
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers.infer.generation import LengthGuard
from helpers.infer.engine import OptimumTTS
from helpers.infer.snac_decode import STREAM_TOLERANCE, FrameDecoder, Joiner, StreamDecoder
from helpers.text import UnknownTagError
from helpers.tokens import VOICES
from helpers.infer.voices import ReferenceAudioError, Voice, VoiceProfile, prepare_reference
from tiny_export import extended_tiny

torch.set_num_threads(1)

FRAMES = 14  # ~1.2 s of each assets utterance (as in tests/train/test_learns.py)


@pytest.fixture(scope="module")
def random_tts(snac_random):
    """Random-weight tiny model; a short length guard keeps decoding cheap."""
    model, tok, _ = extended_tiny()
    return OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(base_seconds=0.3, chars_per_second=60))


@pytest.fixture(scope="module")
def trained(snac_random, tmp_path_factory):
    """The tiny model trained by the project's own recipe (:class:`helpers.train.recipe.StageRecipe`, stage 2
    config) on four real assets utterances - their real SNAC codes, transcripts, speakers and emotions
    - until it memorises them (the it-learns set-up of tests/train/test_learns.py). Returns the engine, the
    utterances (the independent expectations) and each utterance's built-in voice."""
    from helpers.train.config import stage_config
    from helpers.train.sequences import choose_builtin_voices
    from helpers.train.recipe import StageRecipe
    from assets_utterances import assets_utterances as _assets_utterances

    tmp = tmp_path_factory.mktemp("recipe")
    utts = _assets_utterances(snac_random)
    model, tok, _ = extended_tiny()
    voices = choose_builtin_voices(utts, min_utterances=1)
    cfg = stage_config(2, "tiny", learning_rate=3e-3, max_steps=180, warmup_steps=10, min_lr_ratio=1.0,
                       weight_decay=0.0, max_seq_len=1024, reference_prob=0.0, eval_fraction=0.0, eval_every=0,
                       save_every=180, log_every=20, progress=False, local_dir=str(tmp / "local"))
    recipe = StageRecipe(cfg, model, tok, utts, tmp / "stage2", voices, log=lambda m: None).setup()
    result = recipe.train()
    assert result.final_loss < 0.05, result
    voice_of = {spk: v for v, spk in voices.assignments.items()}
    tts = OptimumTTS(recipe.model, tok, snac_random)
    return tts, utts, [voice_of[u.speaker] for u in utts], recipe


def _speechy(seconds, sr=24000, seed=0):
    """Noise with a syllable-like envelope and short pauses (loudness and trimming work on it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
    return (0.3 * env * rng.standard_normal(t.size)).astype(np.float32)


# ----------------------------------------------------------------------------- learning + loading
def _emotion(u):
    return u.emotion or "neutral"


def test_engine_prompts_are_the_prompts_the_recipe_trained_on(trained):
    """OptimumTTS.plan (text frontend + TokenLayout) builds exactly the recipe's prompt for each
    utterance's transcript, voice and emotion: training and inference agree on the format."""
    tts, utts, voices, recipe = trained
    for u, v in zip(utts, voices):
        (job,) = tts.plan(u.text, Voice(builtin=v), _emotion(u))
        assert job["prompt"] == list(recipe.builder.prompt(u)), u.utterance_id


def test_greedy_reproduces_the_real_codes_of_trained_utterances(trained):
    tts, utts, voices, _ = trained
    assert len(set(voices)) == 4  # four speakers, four different built-in voices
    for u, v in zip(utts, voices):
        res = tts.generate(u.text, speaker=v, emotion=_emotion(u), temperature=0, return_result=True)
        (chunk,) = res.chunks
        assert (chunk.stop_reason, chunk.n_frames, res.voice) == ("end", FRAMES, v), u.utterance_id
        for got, want in zip(chunk.codes, u.codes):  # the asset's real SNAC codes
            np.testing.assert_array_equal(got, want, err_msg=u.utterance_id)
        assert res.audio.shape == (FRAMES * tts.codec.samples_per_frame,)
        assert res.duration == pytest.approx(u.duration_s)
    # the voice token matters: another trained voice does not give this utterance's codes
    other = tts.generate(utts[0].text, speaker=voices[1], emotion=_emotion(utts[0]), temperature=0,
                         return_result=True).chunks[0]
    assert [c.tolist() for c in other.codes] != [c.tolist() for c in utts[0].codes]


def test_saved_stage_loads_from_run_dir_and_plain_transformers(trained, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from helpers.models import save_stage
    from helpers.profiles import RANDOM_SNAC_24KHZ, RunPaths

    tts, utts, voices, _ = trained
    run = RunPaths(tmp_path / "run")
    folder = save_stage(tts.model, tts.tokenizer, run.final_model(4))
    loaded = OptimumTTS.from_pretrained(run.root, snac=RANDOM_SNAC_24KHZ, device="cpu")
    assert loaded.model.dtype == torch.float32
    u, v = utts[1], voices[1]
    res = loaded.generate(u.text, speaker=v, emotion=_emotion(u), temperature=0, return_result=True)
    for got, want in zip(res.chunks[0].codes, u.codes):
        np.testing.assert_array_equal(got, want)
    # a plain transformers load of the same folder works too
    m = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tts.plan(u.text, Voice(builtin=v), _emotion(u))[0]["prompt"]])
    with torch.no_grad():
        np.testing.assert_allclose(m(ids).logits.numpy(), tts.model(ids).logits.numpy(), atol=1e-5)
    assert tok.convert_tokens_to_ids("<|audio_end|>") == tts.layout.audio_end_id
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(FileNotFoundError, match="finished stage"):
        OptimumTTS.from_pretrained(tmp_path / "not_a_run", snac=RANDOM_SNAC_24KHZ, device="cpu")


def test_dialogue_order_voices_and_pause(trained):
    """Each turn holds its utterance's real codes, decoded (the codes come from the asset, not from
    a first generation), in script order, with the pause between turns."""
    tts, utts, voices, _ = trained
    order = [0, 2, 0]
    script = [("host" if i == 0 else "guest", utts[i].text, _emotion(utts[i])) for i in order]
    res = tts.generate_dialogue(script, host=voices[0], guest=voices[2], pause_s=0.25, temperature=0)
    assert [(t.speaker, t.voice, t.text) for t in res.turns] == [
        ("host", voices[0], utts[0].text), ("guest", voices[2], utts[2].text), ("host", voices[0], utts[0].text)]
    pause = round(0.25 * tts.sample_rate)
    for turn, i in zip(res.turns, order):
        np.testing.assert_array_equal(turn.audio, tts.frame_decoder.decode(utts[i].codes))
        np.testing.assert_array_equal(res.audio[turn.start:turn.end], turn.audio)
    assert res.turns[1].start - res.turns[0].end == pause and res.turns[2].start - res.turns[1].end == pause
    assert np.all(res.audio[res.turns[0].end:res.turns[1].start] == 0)
    assert len(np.asarray(res)) == res.turns[-1].end == 3 * FRAMES * tts.codec.samples_per_frame + 2 * pause
    with pytest.raises(ValueError, match="no voice for speaker"):
        tts.generate_dialogue(script, host=voices[0])


# ----------------------------------------------------------------------------- stream / batch
def test_stream_equals_generate(random_tts):
    text = "Hello there. [happy] How are you today?"  # two chunks (two emotions) joined with a crossfade
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: length guard
        full = random_tts.generate(text, seed=7, return_result=True)
        stream = random_tts.stream(text, seed=7, chunk_frames=2, first_chunk_frames=1)
        pieces = list(stream)
    assert len(full.chunks) == 2 and len(pieces) > 3
    streamed = np.concatenate(pieces)
    assert streamed.shape == full.audio.shape
    assert np.abs(streamed - full.audio).max() <= STREAM_TOLERANCE
    assert stream.time_to_first_audio_s is not None and stream.time_to_first_audio_s < stream.seconds
    assert [c.codes[0].tolist() for c in stream.chunks] == [c.codes[0].tolist() for c in full.chunks]


@pytest.mark.parametrize("incremental", [True, False])
def test_stream_decoder_matches_full_decode(snac_random, incremental):
    fd = FrameDecoder(snac_random, seed=3)
    rng = np.random.default_rng(1)
    T = 9
    codes = [rng.integers(0, 4096, T * k) for k in (1, 2, 4)]
    full = fd.decode(codes)
    sd = StreamDecoder(fd, chunk_frames=2, first_chunk_frames=1, incremental=incremental)
    out = [sd.push([c[f * k:(f + 1) * k] for c, k in zip(codes, (1, 2, 4))]) for f in range(T)] + [sd.flush()]
    assert np.abs(np.concatenate(out) - full).max() <= STREAM_TOLERANCE
    assert len(out[0]) == len(out[1]) == len(out[2]) == 0 and len(out[3]) > 0  # first audio after 1 + 3 frames
    np.testing.assert_array_equal(fd.decode(codes), full)  # deterministic
    assert np.abs(FrameDecoder(snac_random, seed=4).decode(codes) - full).max() > 1e-4  # the noise is seeded


def test_incremental_decoder_decodes_each_frame_once(snac_random, monkeypatch):
    """Any split of the frames into pushes gives the full decode, and the quantizer (the decoder's
    input) sees every frame exactly once: no re-decoded context."""
    from helpers.infer.snac_stream import IncrementalDecoder

    fd = FrameDecoder(snac_random, seed=0)
    rng = np.random.default_rng(2)
    T = 13
    codes = [rng.integers(0, 4096, T * k) for k in (1, 2, 4)]
    full = fd.decode(codes)
    seen = []
    q = snac_random.model.quantizer
    original = q.from_codes
    monkeypatch.setattr(q, "from_codes", lambda c: (seen.append(c[0].shape[-1]), original(c))[1])
    for sizes in ([1] * T, [5, 1, 7], [T]):
        seen.clear()
        inc, out, f = IncrementalDecoder(snac_random, fd._noise), [], 0
        for n in sizes:
            out.append(inc.push([c[f * k:(f + n) * k] for c, k in zip(codes, (1, 2, 4))]))
            f += n
        out.append(inc.flush())
        assert np.abs(np.concatenate(out) - full).max() <= STREAM_TOLERANCE, sizes
        assert sum(seen) == T


def test_decoder_receptive_field(snac_random):
    """decoder_reach bounds what an output sample reads: a window with that many latents of
    context each side reproduces the full decode; 1 latent less context on the right does not
    (the measured reach is 9 latents, the architectural bound 10)."""
    from helpers.infer.snac_stream import decoder_reach

    left, right = decoder_reach(snac_random.model.decoder)
    assert (left, right) == (11, 10)
    m = snac_random.model
    rng = np.random.default_rng(1)
    T = 12
    codes = [torch.from_numpy(rng.integers(0, 4096, T * k))[None] for k in (1, 2, 4)]
    with torch.inference_mode():
        z = m.quantizer.from_codes(codes)
        full = _decode_no_noise(m, z)
        spl = 512
        a, b = 20, 28  # emit latents a..b
        for ctx, ok in ((9, True), (right, True), (8, False)):
            w = _decode_no_noise(m, z[..., a - ctx: b + ctx])[(ctx * spl):(ctx + b - a) * spl]
            err = float((w - full[a * spl:b * spl]).abs().max())
            assert (err <= STREAM_TOLERANCE) == ok, (ctx, err)


def _decode_no_noise(m, z):
    blocks = [b for b in m.decoder.modules() if type(b).__name__ == "NoiseBlock"]
    saved = [b.forward for b in blocks]
    for b in blocks:
        b.forward = lambda x: x
    try:
        return m.decoder(z).reshape(-1)
    finally:
        for b, f in zip(blocks, saved):
            b.forward = f


def test_joiner_streamed_equals_whole():
    rng = np.random.default_rng(0)
    pieces = [rng.standard_normal(n).astype(np.float32) for n in (500, 30, 800)]
    for xf, gap in ((100, 0), (0, 50)):
        whole = Joiner(xf, gap)
        a = []
        for p in pieces:
            a += [whole.start_piece(), whole.add(p), whole.end_piece()]
        a.append(whole.finish())
        bits = Joiner(xf, gap)
        b = []
        for p in pieces:
            b.append(bits.start_piece())
            b += [bits.add(p[i:i + 7]) for i in range(0, len(p), 7)]
            b.append(bits.end_piece())
        b.append(bits.finish())
        np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
        # xf: the 30-sample piece is all crossfade, so the next boundary has no tail left to fade
        assert len(np.concatenate(a)) == sum(map(len, pieces)) - (30 if xf else -2 * gap)


def test_batch_equals_one_by_one(random_tts):
    texts = ["First text.", "A second, longer text to pad.", "Third."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = random_tts.generate(texts, seed=5, speaker="female_us_02")
        single = [random_tts.generate(t, seed=5, speaker="female_us_02") for t in texts]
    for b, s in zip(batch, single):
        np.testing.assert_array_equal(b, s)


def test_cloned_batch_equals_one_by_one_and_names_a_refused_prompt(random_tts):
    """07's batch API: each text in its own reference's voice, equal to one-by-one calls; an unusable
    reference raises ReferenceAudioError with its index before anything is generated."""
    from helpers.infer.voices import ReferenceAudioError
    from helpers.profiles import ASSETS_CORPUS_DIR

    refs = [str(p) for p in sorted(ASSETS_CORPUS_DIR.glob("clone_*/*.flac"))[:2]]
    texts = ["First text.", "A second, longer text."]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = random_tts.generate_cloned(texts, refs, seeds=[3, 4])
        single = [random_tts.generate(t, audio_prompt=r, seed=s) for t, r, s in zip(texts, refs, [3, 4])]
        for b, s in zip(batch, single):
            np.testing.assert_array_equal(b, s)
        short = (np.zeros(24000, np.float32), 24000)
        with pytest.raises(ReferenceAudioError) as e:
            random_tts.generate_cloned(texts, [refs[0], short], seeds=[1, 2])
    assert e.value.index == 1


# ----------------------------------------------------------------------------- voices + bad input
def test_default_voice_and_save(random_tts, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = random_tts.generate("Hi.", seed=1)
        b = random_tts.generate("Hi.", seed=1, speaker=VOICES[0])
    np.testing.assert_array_equal(a, b)
    path = random_tts.save(a, tmp_path / "out.wav")
    data, sr = sf.read(path)
    assert sr == 24000 and len(data) == len(a)


def test_clone_profile_roundtrip(random_tts, tmp_path):
    ref = (np.stack([_speechy(4.0, 16000)] * 2, axis=1), 16000)  # stereo at 16 kHz
    with pytest.warns(UserWarning, match=r"only 3\.\d s"):
        prof = random_tts.clone_voice(ref, name="me")
    path = prof.save(tmp_path / "me.json")
    back = VoiceProfile.load(path)
    for x, y in zip(back.codes, prof.codes):
        np.testing.assert_array_equal(x, y)
    assert back.codec == random_tts.codec.name and json.loads(path.read_text())["name"] == "me"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from_profile = random_tts.generate("Hi.", speaker=str(path), seed=2, return_result=True)
        from_audio = random_tts.generate("Hi.", audio_prompt=ref, seed=2, return_result=True)
    np.testing.assert_array_equal(from_profile.audio, from_audio.audio)
    assert from_profile.voice == "me"
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(ValueError, match="not a voice profile"):
        VoiceProfile.load(tmp_path / "bad.json")


def test_reference_rules():
    sr = 24000
    with pytest.raises(ReferenceAudioError, match="silent"):
        prepare_reference(np.zeros(sr * 6, np.float32))
    short = np.concatenate([np.zeros(sr * 2), _speechy(0.4), np.zeros(sr * 2)]).astype(np.float32)
    with pytest.raises(ReferenceAudioError, match="at least 3 s"):
        prepare_reference(short)
    with pytest.raises(ReferenceAudioError, match="at least 3 s"):  # the shortest reference training shows
        prepare_reference(_speechy(2.5))
    with pytest.warns(UserWarning, match="first 20 s"):  # the longest reference training shows
        long = prepare_reference((_speechy(32.0, 16000), 16000))
    assert long.seconds == 20.0 and len(long.wav) == 20 * sr and long.cut_seconds > 11.5
    with pytest.raises(ValueError, match="max_seconds"):
        prepare_reference(_speechy(12.0), max_seconds=25.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 12 s: no warning
        ok = prepare_reference(_speechy(12.0))
    assert abs(ok.loudness_lufs - (-23.0)) <= 1.0 and np.abs(ok.wav).max() <= 10 ** (-1 / 20) + 1e-4
    with pytest.raises(ReferenceAudioError, match="float"):
        prepare_reference(np.ones(sr * 6, dtype=np.int16))


def test_saved_profiles_are_held_to_the_training_bounds():
    """The same bounds as training (helpers.train.config): >= 36 frames (3 s), at most 234 frames (20 s)."""
    from helpers.tokens import REFERENCE_MAX_FRAMES, REFERENCE_MIN_FRAMES
    from helpers.infer.voices import bounded_profile

    def prof(n):
        rng = np.random.default_rng(n)
        return VoiceProfile("p", [rng.integers(0, 4096, k * n) for k in (1, 2, 4)], "snac", n / 11.72)

    with pytest.warns(UserWarning, match="first 234 frames"):
        cut = bounded_profile(prof(300))
    assert cut.n_frames == REFERENCE_MAX_FRAMES and [len(c) for c in cut.codes] == [234, 468, 936]
    assert bounded_profile(prof(REFERENCE_MIN_FRAMES)).n_frames == REFERENCE_MIN_FRAMES
    with pytest.raises(ReferenceAudioError, match="at least 36 frames"):
        bounded_profile(prof(REFERENCE_MIN_FRAMES - 1))


def test_untrained_emotions_are_refused_and_pairs_warn(random_tts):
    """An export records its coverage: an emotion without data raises, listing the trained ones;
    a (built-in voice, emotion) pair without data warns. Without a record: a warning only."""
    from helpers.infer.emotions import UntrainedEmotionWarning

    record = {"trained_emotions": ["neutral", "happy"], "min_emotion_minutes": 10.0,
              "voice_emotion_minutes": {"male_us_01": {"neutral": 30.0, "happy": 12.0}, "male_uk_01": {"neutral": 20.0}}}
    old = random_tts.coverage
    try:
        random_tts.coverage = record
        for emo in ("excited", "friendly"):
            with pytest.raises(ValueError, match="trained emotions: neutral, happy"):
                random_tts.generate("Hi.", emotion=emo)
            with pytest.raises(ValueError, match=f"emotion '{emo}' was not trained"):
                random_tts.generate(f"[{emo}] Hi.")
        with pytest.warns(UntrainedEmotionWarning, match="'male_uk_01' was never trained with emotion 'happy'"):
            random_tts.plan("Hi.", random_tts._voice("male_uk_01"), emotion="happy")
        with warnings.catch_warnings():
            warnings.simplefilter("error", UntrainedEmotionWarning)
            random_tts.plan("Hi.", random_tts._voice("male_us_01"), emotion="happy")  # trained pair: silent
        random_tts.coverage = None
        with pytest.warns(UntrainedEmotionWarning, match="no training coverage.*'excited'"):
            random_tts.plan("Hi.", random_tts._voice("male_us_01"), emotion="excited")
    finally:
        random_tts.coverage = old


def test_bad_inputs_name_the_valid_choices(random_tts, tmp_path):
    with pytest.raises(ValueError, match="valid emotions: neutral"):
        random_tts.generate("Hi.", emotion="joyful")
    with pytest.raises(ValueError, match="male_us_01"):
        random_tts.generate("Hi.", speaker="bob")
    with pytest.raises(ValueError, match="not both"):
        random_tts.generate("Hi.", speaker="male_us_01", audio_prompt=_speechy(6.0))
    with pytest.raises(UnknownTagError, match="valid emotion tags"):
        random_tts.generate("[joyful] Hi.")
    with pytest.raises(ValueError, match="empty"):
        random_tts.generate("   ")
    with pytest.raises(FileNotFoundError):
        random_tts.generate("Hi.", audio_prompt=str(tmp_path / "missing.wav"))
    with pytest.raises(ValueError, match="seeds"):
        random_tts.generate_batch(["a", "b"], seed=[1])


def test_hub_model_reads_its_inference_config(tmp_path, monkeypatch):
    """A hub id's optimum_tts.json names the codec; a repo without one falls back to the default."""
    import json as _json

    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    from helpers.infer import engine as inference

    cfg = tmp_path / "optimum_tts.json"
    cfg.write_text(_json.dumps({"snac_model": "someone/snac_custom"}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: str(cfg))
    assert inference._hub_inference_config("me/model") == {"snac_model": "someone/snac_custom"}

    def missing(repo, name):
        raise EntryNotFoundError(f"{name} not in {repo}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", missing)
    assert inference._hub_inference_config("me/plain-llama") == {}
