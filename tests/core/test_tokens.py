"""The token contract: layout, exact round trips, grammar errors and repairs, prompts."""
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers import tokens as T
from helpers.tokens import TokenLayout, TokenGrammarError

BASE = 128256  # LLaMA 3.2's base vocabulary, as a test input
L = TokenLayout(BASE)


def random_codes(rng, t):
    return [rng.integers(0, T.CODEBOOK_SIZE, size=per * t) for per in T.CODES_PER_FRAME]


def test_layout_matches_the_seed():
    assert T.AUDIO_VOCAB_SIZE == 12288
    assert T.FRAME_SIZE == 7
    toks = T.new_tokens()
    assert toks[0] == "<|snac1_0|>" and toks[4095] == "<|snac1_4095|>"
    assert toks[4096] == "<|snac2_0|>" and toks[12287] == "<|snac3_4095|>"
    assert len(toks) == len(set(toks)) == T.N_NEW_TOKENS
    # audio range is contiguous right after the base vocabulary, in codebook order
    assert L.audio_id(0, 0) == BASE and L.audio_id(2, 4095) == BASE + 12287
    assert L.token_id("<|snac2_7|>") == BASE + 4096 + 7
    for name in T.STRUCTURE_TOKENS:
        assert L.token_id(name) >= L.audio_end_id_exclusive
    # seed emotions, friendly and dataset labels are all tokens; voices of seed §8
    for e in ("neutral", "happy", "sad", "angry", "excited", "whisper", "calm", "friendly",
              "fearful", "disgusted", "surprised", "amused", "sleepy"):
        assert L.emotion_id(e) > 0
    assert len(T.VOICES) == 8 and sum(v.startswith("female") for v in T.VOICES) == 4
    assert sum("_uk_" in v for v in T.VOICES) == 4
    assert L.padded_vocab_size() % 64 == 0 and L.padded_vocab_size() >= L.vocab_size


def test_names_are_well_formed():
    for t in T.new_tokens():
        assert re.fullmatch(r"<\|[a-z0-9_:]+\|>", t), t


@settings(max_examples=60, deadline=None)
@given(t=st.integers(0, 400), seed=st.integers(0, 2**32 - 1), base=st.integers(1, 200000))
def test_round_trip_codes_tokens_codes_is_exact(t, seed, base):
    layout = TokenLayout(base)
    codes = random_codes(np.random.default_rng(seed), t)
    ids = layout.codes_to_tokens(codes)
    assert ids.shape == (7 * t,)
    back = layout.tokens_to_codes(ids)
    for a, b in zip(codes, back):
        np.testing.assert_array_equal(a, b)
    # and tokens -> codes -> tokens
    np.testing.assert_array_equal(layout.codes_to_tokens(back), ids)


def test_frame_order_is_coarse_to_fine():
    codes = [np.array([1, 2]), np.array([10, 11, 12, 13]), np.array([20, 21, 22, 23, 24, 25, 26, 27])]
    ids = L.codes_to_tokens(codes) - BASE
    cb = 4096
    assert ids.tolist() == [1, cb + 10, cb + 11, 2 * cb + 20, 2 * cb + 21, 2 * cb + 22, 2 * cb + 23,
                            2, cb + 12, cb + 13, 2 * cb + 24, 2 * cb + 25, 2 * cb + 26, 2 * cb + 27]


def test_batched_torch_codes_accepted():
    torch = pytest.importorskip("torch")
    codes = [torch.tensor([[3, 4]]), torch.tensor([[1, 2, 3, 4]]), torch.arange(8).reshape(1, 8)]
    assert L.codes_to_tokens(codes).shape == (14,)


@pytest.mark.parametrize("codes, msg", [
    ([np.array([1]), np.array([1])], "expected 3 codebooks"),
    ([np.array([1]), np.array([1, 2, 3]), np.zeros(4, int)], "codebook 2 has 3 codes"),
    ([np.array([4096]), np.array([1, 2]), np.zeros(4, int)], r"0..4095"),
    ([np.array([-1]), np.array([1, 2]), np.zeros(4, int)], r"0..4095"),
])
def test_bad_codes_are_rejected(codes, msg):
    with pytest.raises(ValueError, match=msg):
        L.codes_to_tokens(codes)


def test_grammar_cb2_token_in_cb1_slot_names_position():
    ids = L.codes_to_tokens(random_codes(np.random.default_rng(0), 3))
    ids[7] = L.audio_id(1, 5)  # frame 1, slot 0 holds a CB2 token
    with pytest.raises(TokenGrammarError) as e:
        L.tokens_to_codes(ids)
    assert e.value.position == 7
    assert "CB1" in str(e.value) and "<|snac2_5|>" in str(e.value)


def test_grammar_truncated_last_frame():
    ids = L.codes_to_tokens(random_codes(np.random.default_rng(1), 2))[:-3]
    with pytest.raises(TokenGrammarError, match="3 more token"):
        L.tokens_to_codes(ids)


def test_grammar_text_token_inside_audio():
    ids = L.codes_to_tokens(random_codes(np.random.default_rng(2), 2))
    ids[4] = 42
    with pytest.raises(TokenGrammarError, match="text token") as e:
        L.tokens_to_codes(ids)
    assert e.value.position == 4 and e.value.token_id == 42


def test_grammar_special_token_inside_audio_is_named():
    ids = L.codes_to_tokens(random_codes(np.random.default_rng(3), 2))
    ids[9] = L.audio_end_id
    with pytest.raises(TokenGrammarError, match=re.escape("<|audio_end|>")):
        L.tokens_to_codes(ids)


def test_repair_drops_bad_frames_and_counts_them():
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 5)
    ids = L.codes_to_tokens(codes)
    ids[7 * 1 + 3] = 17  # frame 1 broken
    ids[7 * 3 + 0] = L.audio_id(2, 0)  # frame 3 broken
    ids = np.concatenate([ids, ids[:4]])  # plus a truncated tail
    back, report = L.tokens_to_codes(ids, on_error="repair")
    assert report.frames_kept == 3 and report.frames_dropped == 2 and report.truncated_tokens == 4
    assert report.repaired and len(report.problems) == 3
    keep = [0, 2, 4]
    np.testing.assert_array_equal(back[0], codes[0][keep])
    np.testing.assert_array_equal(back[1], codes[1].reshape(5, 2)[keep].reshape(-1))
    np.testing.assert_array_equal(back[2], codes[2].reshape(5, 4)[keep].reshape(-1))


def test_repair_on_clean_input_reports_nothing():
    ids = L.codes_to_tokens(random_codes(np.random.default_rng(5), 4))
    _, report = L.tokens_to_codes(ids, on_error="repair")
    assert not report.repaired and report.frames_kept == 4


def test_on_error_must_be_known():
    with pytest.raises(ValueError, match="on_error"):
        L.tokens_to_codes([], on_error="ignore")


def test_prompt_order_with_voice():
    p = L.build_prompt([5, 6, 7], emotion="happy", voice="female_uk_01", bos_id=1)
    assert p == [1, L.text_start_id, 5, 6, 7, L.text_end_id, L.emotion_id("happy"),
                 L.speaker_start_id, L.voice_id("female_uk_01"), L.speaker_end_id, L.audio_start_id]


def test_prompt_with_reference_codes_and_default_emotion():
    ref = random_codes(np.random.default_rng(6), 3)
    p = L.build_prompt([9], reference_codes=ref)
    assert p[3] == L.emotion_id("neutral")
    inner = p[p.index(L.speaker_start_id) + 1: p.index(L.speaker_end_id)]
    for a, b in zip(L.tokens_to_codes(inner), ref):
        np.testing.assert_array_equal(a, b)
    assert p[-1] == L.audio_start_id


def test_prompt_errors():
    with pytest.raises(ValueError, match="valid emotions"):
        L.build_prompt([1], emotion="jolly")
    with pytest.raises(ValueError, match="built-in voices"):
        L.build_prompt([1], voice="bob")
    with pytest.raises(ValueError, match="not both"):
        L.build_prompt([1], voice="male_us_01", reference_codes=random_codes(np.random.default_rng(0), 1))
    with pytest.raises(ValueError, match="base-vocabulary"):
        L.build_prompt([L.audio_id(0, 0)])


def test_nonverbal_ids_allowed_in_text():
    p = L.build_prompt([3, L.nonverbal_id("laugh"), 4])
    assert L.nonverbal_id("laugh") in p


def test_extract_audio():
    codes = random_codes(np.random.default_rng(7), 2)
    seq = L.build_prompt([3]) + L.codes_to_tokens(codes).tolist() + [L.audio_end_id, 99]
    np.testing.assert_array_equal(L.extract_audio(seq), L.codes_to_tokens(codes))
    with pytest.raises(ValueError, match="audio_start"):
        L.extract_audio([1, 2, 3])


def test_slot_masks():
    m = L.slot_masks()
    assert m.shape == (7, L.padded_vocab_size())
    assert m.sum(axis=1).tolist() == [4096] * 7
    assert m[0, L.audio_id(0, 4095)] and not m[1, L.audio_id(0, 4095)] and m[6, L.audio_id(2, 0)]


class _FakeTok:
    """Just enough of a tokenizer to test from_tokenizer without loading one."""

    def __init__(self, base, toks, unk=0):
        self.vocab = {t: base + i for i, t in enumerate(toks)}
        self.unk_token_id = unk

    def convert_tokens_to_ids(self, t):
        if isinstance(t, str):
            return self.vocab.get(t, self.unk_token_id)
        return [self.convert_tokens_to_ids(x) for x in t]


def test_from_tokenizer_checks_every_id():
    assert TokenLayout.from_tokenizer(_FakeTok(500, T.new_tokens())).base_vocab_size == 500
    toks = T.new_tokens()
    toks[100], toks[101] = toks[101], toks[100]
    with pytest.raises(ValueError, match="break the contract"):
        TokenLayout.from_tokenizer(_FakeTok(500, toks))
    with pytest.raises(ValueError, match="extend it"):
        TokenLayout.from_tokenizer(_FakeTok(500, []))


def test_no_token_ids_or_offsets_outside_the_contract():
    """Grep-style guard: no module of helpers/ (except tokens.py) or notebook source holds
    a literal token id, the audio offset or the codebook-size magic numbers."""
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"(?<![\w.])(128\d\d\d|12288|4096|4095)(?![\w.])")
    allowed = {"tokens.py"}
    offenders = []
    files = list((root / "helpers").rglob("*.py")) + list((root / "notebooks" / "src").glob("*.py"))
    for f in files:
        if f.name in allowed:
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if "CUBLAS_WORKSPACE_CONFIG" in code:  # ":4096:8" is cuBLAS's workspace size, not a token number
                continue
            if pattern.search(code):
                offenders.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, "magic token numbers outside helpers/tokens.py:\n" + "\n".join(offenders)
