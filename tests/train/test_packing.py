"""Padding-free packing: bins, boundaries, and attention kept inside each example."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.train.packing import collate, pack, packing_stats, shuffled_bins
from helpers.train.sequences import IGNORE_INDEX, Example

torch.set_num_threads(1)


def test_pack_places_every_example_once_within_budget():
    rng = np.random.default_rng(0)
    # speech-like: 1-10 s clips (~90-900 tokens) in a 4,096-token context
    lengths = rng.integers(90, 900, 500).tolist()
    bins = pack(lengths, 4096)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 4096 for b in bins)
    st = packing_stats(lengths, bins, 4096)
    assert st.pad_tokens == 0 and st.tokens == sum(lengths)
    assert st.budget_waste < 0.02, st.row()
    assert shuffled_bins(lengths, 4096, 1, 0) == shuffled_bins(lengths, 4096, 1, 0)
    assert sorted(map(tuple, shuffled_bins(lengths, 4096, 1, 0))) == sorted(map(tuple, bins))
    with pytest.raises(ValueError, match="longer than the token budget"):
        pack([10, 2000], 1024)


def _ex(ids, n_prompt):
    ids = np.asarray(ids, dtype=np.int64)
    labels = ids.copy()
    labels[:n_prompt] = IGNORE_INDEX
    return Example("x", ids, labels, "none")


def test_collate_restarts_positions_and_blocks_cross_example_targets():
    a, b = _ex([5, 6, 7, 8], 0), _ex([9, 10, 11], 0)  # loss on everything, even the first token
    batch = collate([a, b])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    # first label of each example is masked: token 8 never learns to predict 9
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7, 8, IGNORE_INDEX, 10, 11]]
    assert batch["seq_lens"].tolist() == [4, 3]


def test_packed_loss_equals_unpacked_loss_per_example():
    from helpers.tiny_models import build_tiny_llama
    from helpers.train.recipe import packed_loss_sum

    model = build_tiny_llama(300, seed=0)
    rng = np.random.default_rng(0)
    exs = [_ex(rng.integers(0, 300, n), 3) for n in (17, 40, 9, 33)]
    with torch.no_grad():
        packed, n_packed = packed_loss_sum(model, collate(exs))
        alone = [packed_loss_sum(model, collate([e])) for e in exs]
        # and against the plain HF forward of each example on its own
        for e, (s, n) in zip(exs, alone):
            logits = model(input_ids=torch.from_numpy(e.input_ids)[None]).logits[0, :-1]
            ref = F.cross_entropy(logits, torch.from_numpy(e.labels[1:]), reduction="sum", ignore_index=IGNORE_INDEX)
            assert abs(float(s) - float(ref)) < 1e-4 * max(1.0, float(ref))
    assert n_packed == sum(n for _, n in alone)
    assert abs(float(packed) - sum(float(s) for s, _ in alone)) < 1e-4 * float(packed)
    # a wrongly packed batch (positions not restarting) does attend across examples: the test can fail
    bad = collate(exs)
    bad["position_ids"] = torch.arange(bad["input_ids"].shape[1])[None]
    with torch.no_grad():
        crossed, _ = packed_loss_sum(model, bad)
    assert abs(float(crossed) - float(packed)) > 1e-3


def test_chunked_loss_matches_and_has_same_gradients():
    from helpers.tiny_models import build_tiny_llama
    from helpers.train.recipe import packed_loss_sum

    model = build_tiny_llama(300, seed=1)
    rng = np.random.default_rng(1)
    batch = collate([_ex(rng.integers(0, 300, n), 2) for n in (30, 50)])
    full, _ = packed_loss_sum(model, batch, chunk=0)
    full.backward()  # noqa: the loss tensor is reused below only through .detach()
    g_full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    chunked, _ = packed_loss_sum(model, batch, chunk=16)
    chunked.backward()
    assert abs(float(full.detach()) - float(chunked.detach())) < 1e-4 * float(full)
    assert all(torch.allclose(a, p.grad, atol=1e-6, rtol=1e-4) for a, p in zip(g_full, model.parameters()))


# ----------------------------------------------------------------------------- per-document attention kernels
def _losses_packed_and_alone(model, exs, grad: bool):
    """(packed loss sum, [per-example loss sums], packed grads, summed per-example grads)."""
    from helpers.train.recipe import packed_loss_sum

    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        model.zero_grad()
        packed, _ = packed_loss_sum(model, collate(exs))
        g_packed = None
        if grad:
            packed.backward()
            g_packed = [p.grad.clone() for p in model.parameters()]
            model.zero_grad()
        alone = []
        for e in exs:
            s, _ = packed_loss_sum(model, collate([e]))
            if grad:
                s.backward()  # grads accumulate: the sum over examples
            alone.append(float(s.detach()))
        g_alone = [p.grad.clone() for p in model.parameters()] if grad else None
    return float(packed.detach()), alone, g_packed, g_alone


def test_flex_attention_packed_equals_unpacked_on_cpu(monkeypatch):
    """FlexAttention with the row's document BlockMask: packed == one-by-one losses (forward: PyTorch
    has no FlexAttention backward on CPU; tests/test_gpu.py checks the gradients on CUDA)."""
    import transformers.integrations.flex_attention as hf_flex
    from torch.nn.attention.flex_attention import flex_attention

    from helpers.train import attention
    from helpers.tiny_models import build_tiny_llama

    # transformers torch.compile's flex_attention (~40 s on 2 CPU cores); PyTorch's eager flex_attention is
    # the same computation, so the test calls it uncompiled through transformers' own flex path.
    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention",
                        lambda q, k, v, training=False, **kw: flex_attention(q, k, v, **kw))
    model = build_tiny_llama(300, seed=2)
    assert attention.set_kernel(model, "flex_attention") == "flex_attention"
    rng = np.random.default_rng(2)
    exs = [_ex(rng.integers(0, 300, n), 2) for n in (150, 40, 9, 90)]  # crosses 128-token blocks
    packed, alone, _, _ = _losses_packed_and_alone(model, exs, grad=False)
    assert abs(packed - sum(alone)) < 1e-4 * packed, (packed, alone)
    # the same numbers as the SDPA kernel
    attention.set_kernel(model, "sdpa")
    packed_sdpa, alone_sdpa, _, _ = _losses_packed_and_alone(model, exs, grad=False)
    assert np.allclose(alone, alone_sdpa, rtol=1e-4) and abs(packed - packed_sdpa) < 1e-4 * packed
    # a block mask that ignores the boundaries (one document) attends across examples: the test can fail
    attention.set_kernel(model, "flex_attention")
    batch = collate(exs)
    wrong = attention.document_block_mask([batch["input_ids"].shape[1]])
    from helpers.train import memory

    with torch.no_grad():
        crossed, _ = memory.causal_lm_loss(model, batch["input_ids"], batch["labels"],
                                           position_ids=batch["position_ids"], attention_mask=wrong, reduction="sum")
    assert abs(float(crossed) - packed) > 1e-3


def test_packed_gradients_equal_unpacked_with_the_cpu_training_kernel():
    from helpers.train import attention
    from helpers.tiny_models import build_tiny_llama

    kernel = attention.choose_kernel("cpu", torch.float32)  # what training picks on CPU
    assert kernel == "sdpa"
    model = build_tiny_llama(300, seed=3)
    attention.set_kernel(model, kernel)
    rng = np.random.default_rng(3)
    exs = [_ex(rng.integers(0, 300, n), 2) for n in (25, 60, 11)]
    packed, alone, g_packed, g_alone = _losses_packed_and_alone(model, exs, grad=True)
    assert abs(packed - sum(alone)) < 1e-4 * packed
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g_packed, g_alone))


def test_kernel_choice_and_mask_checks():
    from helpers.train import attention

    assert attention.choose_kernel("cpu", torch.bfloat16) == "sdpa"
    assert attention.choose_kernel("cpu", torch.float32, training=False) == "flex_attention"
    with pytest.raises(RuntimeError, match="no FlexAttention backward on CPU"):
        attention.choose_kernel("cpu", torch.float32, prefer="flex_attention")
    with pytest.raises(ValueError, match="attention must be"):
        attention.choose_kernel("cpu", prefer="flash")
    assert attention.document_ids([2, 3]).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="positive lengths"):
        attention.document_ids([2, 0])

    class _M(torch.nn.Module):  # only what packed_attention_mask reads
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.config = type("C", (), {"_attn_implementation": "flex_attention"})()

    batch = collate([_ex([1, 2, 3], 0), _ex([4, 5], 0)])
    assert attention.packed_attention_mask(_M(), batch).shape == (1, 1, 5, 5)
    bad = dict(batch, seq_lens=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="restart at 0"):
        attention.packed_attention_mask(_M(), bad)
    with pytest.raises(ValueError, match="do not tile"):
        attention.packed_attention_mask(_M(), dict(batch, seq_lens=torch.tensor([3, 3])))


def test_cpu_sdpa_attends_per_document(monkeypatch):
    """set_kernel("sdpa") installs SDPA per document: a packed row runs one causal SDPA call per example and
    layer (no (N, N) mask: ~sum of len² work), with the losses and gradients of the examples trained alone;
    without doc_lens (generation) it is plain SDPA."""
    from helpers.train import attention
    from helpers.tiny_models import build_tiny_llama

    model = build_tiny_llama(300, seed=4)
    assert attention.set_kernel(model, "sdpa") == attention.SDPA_DOCUMENTS
    rng = np.random.default_rng(4)
    lens = (25, 60, 11)
    exs = [_ex(rng.integers(0, 300, n), 2) for n in lens]
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(q, k, v, *a, **kw):
        calls.append((q.shape[2], kw.get("is_causal"), kw.get("attn_mask") if "attn_mask" in kw else None))
        return sdpa(q, k, v, *a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    batch = collate(exs)
    assert attention.packed_kwargs(model, batch) == {"doc_lens": lens}
    packed, alone, g_packed, g_alone = _losses_packed_and_alone(model, exs, grad=True)
    assert abs(packed - sum(alone)) < 1e-4 * packed
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(g_packed, g_alone))
    layers = model.config.num_hidden_layers
    packed_calls = [c for c in calls if c[0] in lens][: layers * len(lens)]
    assert [c[0] for c in packed_calls] == list(lens) * layers and all(c[1] for c in packed_calls)
    # generation / unpacked: plain SDPA, same logits as the sdpa kernel
    ids = torch.from_numpy(exs[1].input_ids)[None]
    with torch.no_grad():
        a = model(input_ids=ids).logits
        model.set_attn_implementation("sdpa")
        b = model(input_ids=ids).logits
    assert torch.allclose(a, b, atol=1e-6)
