"""Constrained decoding, sampling, guards and the batched decoding loop (helpers.infer.generation)."""
import warnings

import numpy as np
import pytest
import torch

from helpers.infer.generation import (GREEDY, AudioDecoder, DegenerateLoopError, FrameGrammar, LengthGuard,
    LoopGuard, SamplingConfig, find_loop, generate_audio_tokens)
from helpers.tokens import FRAME_SIZE, TokenGrammarError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    """Random-weight tiny LLaMA extended with the token contract."""
    from helpers.models import extend_vocabulary, load_base
    from helpers.profiles import TINY_LLAMA

    model, tok = load_base(TINY_LLAMA)
    model, tok, layout, _ = extend_vocabulary(model, tok)
    return model, tok, layout


def _prompt(tok, layout, text, **kw):
    return layout.build_prompt(tok.encode(text, add_special_tokens=False), bos_id=tok.bos_token_id, **kw)


class Biased(torch.nn.Module):
    """Wraps a model and adds a fixed bias to its logits (to force behaviours)."""

    def __init__(self, model, bias):
        super().__init__()
        self.inner, self.bias, self.config = model, bias, model.config

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, **kw):
        out = self.inner(**kw)
        out.logits = out.logits + self.bias
        return out


def test_1000_random_samples_are_all_valid_frames(tiny):
    model, tok, layout = tiny
    prompts = [_prompt(tok, layout, "Hello there.", voice="male_us_01"),
               _prompt(tok, layout, "A somewhat longer sentence, to vary lengths.", emotion="happy")]
    n_ok, ended = 0, 0
    cfg = SamplingConfig(temperature=1.5, top_p=1.0, top_k=0, repetition_penalty=1.0)  # widest distribution
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # most rows hit the 5-frame length guard (random weights)
        for start in range(0, 1000, 500):
            res = generate_audio_tokens(model, layout, [prompts[i % 2] for i in range(500)],
                                        seeds=list(range(start, start + 500)), max_frames=[5] * 500, sampling=cfg)
            for r in res:
                codes = layout.tokens_to_codes(r.tokens, on_error="raise")  # raises on any violation
                assert len(codes[0]) == r.n_frames and 1 <= r.n_frames <= 5
                assert r.stop_reason == ("end" if r.n_frames < 5 else r.stop_reason)
                ended += r.stop_reason == "end"
                n_ok += 1
    assert n_ok == 1000
    assert ended > 0  # <|audio_end|> was sampled too, and only ever at a frame boundary


def test_audio_end_only_at_frame_boundary_and_not_before_min_frames(tiny):
    model, tok, layout = tiny
    V = model.get_output_embeddings().weight.shape[0]
    bias = torch.zeros(V)
    bias[layout.audio_end_id] = 1e4  # the model wants to stop at once ...
    bias[5] = 2e4  # ... or emit a text token, which the grammar must forbid
    biased = Biased(model, bias)
    res = generate_audio_tokens(biased, layout, [_prompt(tok, layout, "hi")] * 3, seeds=[0, 1, 2],
                                max_frames=[9] * 3, sampling=SamplingConfig())
    for r in res:
        assert r.stop_reason == "end" and r.n_frames == 1  # min_frames=1: ends at the first boundary
        layout.tokens_to_codes(r.tokens)
    res = AudioDecoder(biased, layout, [_prompt(tok, layout, "hi")], seeds=[0], max_frames=[9], min_frames=3,
                       sampling=GREEDY).run()
    assert res[0].n_frames == 3 and res[0].stop_reason == "end"


def test_grammar_works_as_hf_logits_processor(tiny):
    from transformers import LogitsProcessorList

    model, tok, layout = tiny
    p = _prompt(tok, layout, "Hello.")
    V = model.get_output_embeddings().weight.shape[0]
    g = FrameGrammar(layout, V, prompt_length=len(p), max_frames=3)
    ids = torch.tensor([p])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=30,
                         logits_processor=LogitsProcessorList([g]), eos_token_id=layout.audio_end_id,
                         pad_token_id=layout.pad_id)
    new = out[0, len(p):].tolist()
    assert new[-1] == layout.audio_end_id and len(new) == 3 * FRAME_SIZE + 1
    layout.tokens_to_codes(new[:-1])
    with pytest.raises(TokenGrammarError):  # the checker itself is strict: a text token in slot 0 fails
        layout.tokens_to_codes([5] + new[1:FRAME_SIZE])


@pytest.mark.parametrize("cfg", [SamplingConfig(), GREEDY], ids=["sampled", "greedy"])
def test_batch_equals_one_by_one(tiny, cfg):
    model, tok, layout = tiny
    prompts = [_prompt(tok, layout, "Hi.", voice="female_uk_01"),
               _prompt(tok, layout, "A much longer prompt than the first one, padded on the left.", emotion="sad"),
               _prompt(tok, layout, "Third.", emotion="calm")]
    seeds, mf = [11, 12, 13], [4, 7, 5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = generate_audio_tokens(model, layout, prompts, seeds=seeds, max_frames=mf, sampling=cfg)
        single = [generate_audio_tokens(model, layout, [p], seeds=[s], max_frames=[m], sampling=cfg)[0]
                  for p, s, m in zip(prompts, seeds, mf)]
    for b, s in zip(batch, single):
        np.testing.assert_array_equal(b.tokens, s.tokens)  # bitwise: same tokens
    assert [b.n_frames for b in batch] == mf
    if not cfg.greedy:  # a different seed gives different audio
        other = generate_audio_tokens(model, layout, prompts[:1], seeds=[99], max_frames=[4], sampling=cfg)[0]
        assert not np.array_equal(other.tokens, batch[0].tokens)


def test_length_guard_warns_and_reports(tiny):
    model, tok, layout = tiny
    with pytest.warns(UserWarning, match="length guard"):
        r = generate_audio_tokens(model, layout, [_prompt(tok, layout, "x")], seeds=[0], max_frames=[2])[0]
    assert r.stop_reason == "length" and r.n_frames == 2
    g = LengthGuard()
    assert g.max_seconds("a" * 10_000) == g.cap_seconds


def test_length_guard_is_sized_from_the_text():
    """A multiple (2.5x) of the expected duration (14 characters/s), with a 1.5 s floor and a 40 s cap."""
    from helpers.text.split import CHARS_PER_SECOND

    g = LengthGuard()
    assert g.chars_per_second == CHARS_PER_SECOND
    four_words = "Welcome to the show."
    assert g.expected_seconds(four_words) == pytest.approx(20 / 14)
    assert g.max_seconds(four_words) == pytest.approx(2.5 * 20 / 14)  # 3.6 s, not the old 7 s
    assert g.max_frames(four_words, 12.0) == int(np.ceil(2.5 * 20 / 14 * 12.0))
    assert g.max_seconds("Yes.") == g.base_seconds == 1.5  # the floor
    assert g.max_seconds("a" * 10_000) == g.cap_seconds == 40.0  # the cap
    long = "This sentence is a good deal longer than four words, so it gets a longer guard. " * 2
    assert g.max_seconds(long) == pytest.approx(2.5 * len(long.strip()) / 14)
    assert g.max_seconds(long) > 2 * g.max_seconds(four_words)
    # digits in raw text count as about a word each; a non-verbal token as a second
    assert g.expected_seconds("in 1999") > g.expected_seconds("in abcd")
    assert g.expected_seconds("ha <|laugh|>") == pytest.approx(2 / 14 + 1.0)
    # the guard stays proportionate: at most factor x expected (above the floor)
    for text in (four_words, long, "One, two, three, four, five, six."):
        assert g.max_seconds(text) <= max(g.base_seconds, g.factor * g.expected_seconds(text)) + 1e-9
    assert LengthGuard(factor=4.0).max_seconds(four_words) == pytest.approx(4.0 * 20 / 14)
    with pytest.raises(ValueError):
        LengthGuard(factor=0)


def test_degenerate_loop_is_detected_and_reported(tiny):
    model, tok, layout = tiny
    V = model.get_output_embeddings().weight.shape[0]
    bias = torch.zeros(V)
    for cb in range(3):  # one favourite code per codebook -> the same frame for ever
        bias[layout.audio_id(cb, 7)] = 1e4
    biased = Biased(model, bias)
    guard = LoopGuard(max_period=2, min_seconds=0.5)
    with pytest.warns(UserWarning, match="degenerate loop"):
        r = AudioDecoder(biased, layout, [_prompt(tok, layout, "hi")], seeds=[0], max_frames=[40],
                         sampling=GREEDY, loop_guard=guard).run()[0]
    assert r.stop_reason == "loop" and r.loop is not None and r.loop.period == 1
    assert r.n_frames == guard.min_frames() + 1 < 40  # stopped early, not at the length guard
    with pytest.raises(DegenerateLoopError):
        AudioDecoder(biased, layout, [_prompt(tok, layout, "hi")], seeds=[0], max_frames=[40], sampling=GREEDY,
                     loop_guard=LoopGuard(max_period=2, min_seconds=0.5, action="raise")).run()


def test_find_loop_periods():
    a, b, c = (1,) * 7, (2,) * 7, (3,) * 7
    assert find_loop([a, b, c, a, b, c], max_period=3, min_frames=10) is None
    info = find_loop([c] + [a, b] * 8, max_period=3, min_frames=10)
    assert info is not None and info.period == 2 and info.end_frame == 13
    assert find_loop([a, b, c] * 5, max_period=2, min_frames=6) is None  # period 3 > max_period


def test_sampling_config_validation():
    for bad in (dict(temperature=-1), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1), dict(top_k=2.5),
                dict(repetition_penalty=0.9), dict(repetition_window=-1)):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)
    with pytest.raises(ValueError, match="action"):
        LoopGuard(action="ignore")


def test_prompt_must_end_with_audio_start(tiny):
    model, tok, layout = tiny
    with pytest.raises(ValueError, match="audio_start"):
        AudioDecoder(model, layout, [[1, 2, 3]], seeds=[0], max_frames=[1])
    with pytest.raises(ValueError, match="one seed"):
        AudioDecoder(model, layout, [_prompt(tok, layout, "a")], seeds=[0, 1], max_frames=[1])
