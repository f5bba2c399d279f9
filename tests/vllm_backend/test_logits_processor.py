"""The frame grammar as a vLLM logits processor, on vLLM's offline engine (CPU)."""
import numpy as np
import pytest

pytest.importorskip("vllm", reason="the vLLM backend's tests run in .venv-vllm (scripts/setup_vllm.sh)")

from helpers.tokens import FRAME_SIZE, TokenLayout


@pytest.fixture(scope="module")
def llm(vllm_export):
    from vllm import LLM

    from helpers.infer.vllm_backend import engine_kwargs

    kw = engine_kwargs(vllm_export, device="cpu", max_num_seqs=8, max_model_len=2048)
    engine = LLM(**kw)
    yield engine
    del engine


@pytest.fixture(scope="module")
def tts(vllm_export):
    from helpers.infer.engine import OptimumTTS
    from helpers.profiles import RANDOM_SNAC_24KHZ

    return OptimumTTS.from_pretrained(vllm_export, snac=RANDOM_SNAC_24KHZ, device="cpu")


def test_every_frame_parses_and_end_only_at_a_boundary(llm, tts):
    from helpers.infer.vllm_backend import sampling_params

    plan = tts.plan("Hello there, this is a test.", _voice(), None, seed=3)
    lay = tts.layout
    reqs, params = [], []
    for k, c in enumerate(plan):
        c = dict(c, max_frames=6 + k)
        reqs.append({"prompt_token_ids": c["prompt"]})
        params.append(sampling_params(lay, c))
    outs = llm.generate(reqs, params, use_tqdm=False)
    for c, o in zip(plan, outs):
        toks = list(o.outputs[0].token_ids)
        assert toks, "no tokens"
        if toks[-1] == lay.audio_end_id:
            toks = toks[:-1]
        assert len(toks) % FRAME_SIZE == 0, f"{len(toks)} tokens: not whole frames"
        codes = lay.tokens_to_codes(np.asarray(toks), on_error="raise")  # raises on any grammar error
        assert codes[0].shape[0] == len(toks) // FRAME_SIZE
        assert all(lay.audio_end_id != t for t in toks)


def test_length_guard_forces_audio_end(llm, tts):
    """The tiny model never stops by itself: the guard must end it at exactly max_frames."""
    from helpers.infer.vllm_backend import sampling_params

    lay = tts.layout
    c = dict(tts.plan("Short.", _voice(), None, seed=0)[0], max_frames=5)
    out = llm.generate([{"prompt_token_ids": c["prompt"]}], [sampling_params(lay, c)], use_tqdm=False)[0]
    toks = list(out.outputs[0].token_ids)
    assert toks[-1] == lay.audio_end_id and len(toks) == 5 * FRAME_SIZE + 1
    assert out.outputs[0].finish_reason == "stop"


def test_unconstrained_requests_pass_through(llm, tts):
    """A request without the grammar's extra_args is left alone (text tokens appear)."""
    from vllm import SamplingParams

    c = tts.plan("Short.", _voice(), None, seed=0)[0]
    out = llm.generate([{"prompt_token_ids": c["prompt"]}],
                       [SamplingParams(max_tokens=40, temperature=1.0, seed=0, ignore_eos=True)], use_tqdm=False)[0]
    lay = tts.layout
    assert any(not lay.is_audio(t) for t in out.outputs[0].token_ids)


def test_same_seed_same_tokens_in_a_batch(llm, tts):
    from helpers.infer.vllm_backend import sampling_params

    lay = tts.layout
    c = dict(tts.plan("Same seed.", _voice(), None, seed=11)[0], max_frames=4)
    alone = llm.generate([{"prompt_token_ids": c["prompt"]}], [sampling_params(lay, c)], use_tqdm=False)[0]
    other = dict(tts.plan("Another text entirely.", _voice(), None, seed=5)[0], max_frames=7)
    both = llm.generate([{"prompt_token_ids": other["prompt"]}, {"prompt_token_ids": c["prompt"]}],
                        [sampling_params(lay, other), sampling_params(lay, c)], use_tqdm=False)
    assert list(both[1].outputs[0].token_ids) == list(alone.outputs[0].token_ids)


def test_processor_masks_like_the_hf_grammar():
    """Unit check of apply() against FrameGrammar + the windowed penalty, row by row."""
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate

    from helpers.infer.generation import FrameGrammar, apply_repetition_penalty
    from helpers.infer.vllm_backend import FrameGrammarLogitsProcessor, sampling_params

    lay = TokenLayout(1538)
    V = 13888
    proc = FrameGrammarLogitsProcessor(None, torch.device("cpu"), False)
    outs = [[], [lay.audio_offset + 5] * 7, [lay.audio_offset + 1] * 3]
    ps = [sampling_params(lay, {"prompt": [1], "seed": 0, "max_frames": m}) for m in (3, 1, 3)]
    ps.append(SamplingParams())
    outs.append([5, 6])
    proc.update_state(BatchUpdate(batch_size=4, removed=[], moved=[],
                                  added=[(i, p, None, o) for i, (p, o) in enumerate(zip(ps, outs))]))
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, V, generator=g)
    got = proc.apply(logits.clone())
    grammar = FrameGrammar(lay, V)
    for i, (o, m) in enumerate(zip(outs[:3], (3, 1, 3))):
        want = logits[i:i + 1]
        if o:
            want = apply_repetition_penalty(want, torch.tensor([o]), 1.1)
        want = grammar.apply(want, len(o), [m])
        assert torch.equal(got[i:i + 1], want), i
    assert torch.equal(got[3], logits[3])  # not a TTS request
    # row 1 is at its length limit at a frame boundary: only <|audio_end|> is left
    assert torch.isfinite(got[1]).nonzero().flatten().tolist() == [lay.audio_end_id]
    # removal and a swap move the rows' state with them
    from vllm.v1.sample.logits_processor import MoveDirectionality
    proc.update_state(BatchUpdate(batch_size=3, removed=[0], added=[], moved=[(1, 2, MoveDirectionality.SWAP)]))
    assert set(proc.rows) == {1, 2} and proc.rows[2].max_frames == 1 and proc.rows[1].max_frames == 3


def test_prompt_ids_equal_the_hf_engines(tts, vllm_export):
    """The vLLM backend's prompts come from the same plan as the HF engine's: identical ids,
    and vLLM's tokenizer of the export agrees on the text tokens."""
    from helpers.infer.vllm_backend import load_tts_without_llm
    from helpers.profiles import RANDOM_SNAC_24KHZ

    light, _ = load_tts_without_llm(vllm_export, snac=RANDOM_SNAC_24KHZ, device="cpu")
    for text, emo in [("Hello there.", None), ("I am so happy today!", "happy"), ("Numbers: 42 and 3.5 kg.", None)]:
        a = tts.plan(text, _voice("female_uk_02"), emo, seed=1)
        b = light.plan(text, _voice("female_uk_02"), emo, seed=1)
        assert [c["prompt"] for c in a] == [c["prompt"] for c in b]
        assert [c["max_frames"] for c in a] == [c["max_frames"] for c in b]


def _voice(name="male_us_01"):
    from helpers.infer.voices import Voice

    return Voice(builtin=name)
