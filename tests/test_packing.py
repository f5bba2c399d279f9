"""Padding-free packing: bins, boundaries, and attention kept inside each example."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.packing import collate, pack, packing_stats, shuffled_bins
from helpers.sequences import IGNORE_INDEX, Example

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
    from helpers.models import build_tiny_llama
    from helpers.train import packed_loss_sum

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
    from helpers.models import build_tiny_llama
    from helpers.train import packed_loss_sum

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
