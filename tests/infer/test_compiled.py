"""Compiled decoding (helpers.infer.decode_step) against eager decoding, on CPU in float32.

The compiled step is the same function as the eager one, traced into one graph
(``fullgraph=True``: a graph break raises) on a bucketed StaticCache. Most tests compile with
"aot_eager" (the traced aten graph, seconds on 2 cores); one runs inductor's generated kernels.
"""
import contextlib
import warnings

import numpy as np
import pytest
import torch

from helpers.infer.decode_step import (CompiledDecoding, StepKind, batch_bucket, counter_uniforms, length_bucket,
                                       seed_words)
from helpers.infer.engine import OptimumTTS
from helpers.infer.snac_decode import STREAM_TOLERANCE
from helpers.infer.generation import GREEDY, AudioDecoder, LengthGuard, SamplingConfig
from tiny_export import extended_tiny

torch.set_num_threads(1)

SAMPLED = SamplingConfig()  # the engine's defaults: temperature 0.6, top-p 0.95, top-k 50, penalty 1.1
TEXTS = ["Hi.", "A somewhat longer sentence, to vary the prompt lengths.", "Third one here."]


@pytest.fixture(scope="module")
def pair(snac_random):
    """The same random tiny model behind an eager and a compiled (aot_eager) engine."""
    model, tok, _ = extended_tiny(seed=3)
    guard = LengthGuard(base_seconds=0.4, chars_per_second=60)
    eager = OptimumTTS(model, tok, snac_random, length_guard=guard, compile=False)
    comp = OptimumTTS(model, tok, snac_random, length_guard=guard, compile=True, compile_backend="aot_eager")
    return eager, comp


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: the length guard ends most rows
        yield


def test_auto_is_eager_on_cpu_and_bad_values_are_refused(pair, snac_random):
    eager, comp = pair
    assert eager.compiled is None and isinstance(comp.compiled, CompiledDecoding)
    auto = OptimumTTS(eager.model, eager.tokenizer, snac_random)
    assert auto.compiled is None  # "auto" compiles on CUDA only
    with pytest.raises(ValueError, match="compile must be"):
        OptimumTTS(eager.model, eager.tokenizer, snac_random, compile="yes")


def test_counter_uniforms_are_uniform_row_independent_and_seed_dependent():
    lo, hi = seed_words([0, 1, 2**40 + 7, -5], "cpu")
    u = torch.stack([counter_uniforms(lo, hi, torch.tensor(n)) for n in range(4000)])  # (N, 4)
    assert u.dtype == torch.float64 and 0 <= u.min() and u.max() < 1
    for col in u.T:  # each seed's stream: mean 1/2, variance 1/12, no repeats
        assert abs(col.mean().item() - 0.5) < 0.02 and abs(col.var().item() - 1 / 12) < 0.005
        assert len(set(col.tolist())) == 4000
    assert not torch.equal(u[:, 0], u[:, 1])
    lo1, hi1 = seed_words([2**40 + 7], "cpu")  # a row's stream does not depend on the batch around it
    assert torch.equal(torch.stack([counter_uniforms(lo1, hi1, torch.tensor(n)) for n in range(4000)])[:, 0],
                       u[:, 2])


def test_buckets():
    assert [batch_bucket(b) for b in (1, 2, 3, 4, 5, 8, 9, 17)] == [1, 2, 4, 4, 8, 8, 16, 32]
    assert [length_bucket(n) for n in (1, 512, 513, 3000, 9000)] == [512, 512, 1024, 4096, 16384]
    assert length_bucket(600, limit=700) == 700  # never past the model's positions when the need fits
    with pytest.raises(ValueError):
        batch_bucket(0)


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_generate_batch_and_generate_compiled_equal_eager(pair, sampling):
    eager, comp = pair
    kw = dict(seed=[5, 6, 7], temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
              repetition_penalty=sampling.repetition_penalty, return_result=True)
    with _quiet():
        e = eager.generate_batch(TEXTS, **kw)
        c = comp.generate_batch(TEXTS, **kw)  # 3 rows: batch bucket 4 with one dummy row
        one = comp.generate(TEXTS[1], **dict(kw, seed=6))  # batch bucket 1
    for er, cr in zip(e, c):
        assert [ch.n_frames for ch in er.chunks] == [ch.n_frames for ch in cr.chunks]
        for a, b in zip(er.chunks, cr.chunks):
            for x, y in zip(a.codes, b.codes):
                np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(er.audio, cr.audio)
    np.testing.assert_array_equal(one.audio, e[1].audio)
    assert sum(ch.n_frames for r in e for ch in r.chunks) > 9  # real work was compared


def test_stream_and_dialogue_compiled_equal_eager(pair):
    eager, comp = pair
    text = "Hello there. [happy] How are you today?"  # two chunks
    with _quiet():
        full = eager.generate(text, seed=11, return_result=True)
        s = comp.stream(text, seed=11, chunk_frames=2, first_chunk_frames=1)
        pieces = list(s)
        script = [("a", "Welcome to the show!"), ("b", "Thanks for having me."), ("a", "Let us begin.")]
        de = eager.generate_dialogue(script, a="male_us_01", b="female_uk_01", seed=2)
        dc = comp.generate_dialogue(script, a="male_us_01", b="female_uk_01", seed=2)
    assert [c.codes[0].tolist() for c in s.chunks] == [c.codes[0].tolist() for c in full.chunks]
    assert np.abs(np.concatenate(pieces) - full.audio).max() <= STREAM_TOLERANCE
    assert [t.voice for t in de.turns] == [t.voice for t in dc.turns]
    np.testing.assert_array_equal(de.audio, dc.audio)


class _SyncCounter:
    """Counts every Tensor method that hands a value to Python (each is a device->host sync on CUDA)."""

    NAMES = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, monkeypatch):
        self.calls = 0
        for name in self.NAMES:
            orig = getattr(torch.Tensor, name)

            def counted(t, *a, _orig=orig, **k):
                self.calls += 1
                return _orig(t, *a, **k)
            monkeypatch.setattr(torch.Tensor, name, counted)


def test_one_host_sync_per_frame(pair, monkeypatch):
    """Counted on the Tensor methods themselves: a per-token ``.item()``/``.tolist()``/``bool(t)``
    anywhere in the loop (or the model) would add 7 per frame."""
    eager, comp = pair
    (job,) = comp.plan("Count the syncs.", comp._voice(), None, 0)
    with _quiet():
        comp.decoder([dict(job, max_frames=3)], SAMPLED).run()  # compiles the bucket before counting
    counter = _SyncCounter(monkeypatch)
    counts = {}
    for frames in (3, 9):
        counter.calls = 0
        with _quiet():
            dec = comp.decoder([dict(job, max_frames=frames)], SAMPLED)
            res = dec.run()
        assert res[0].n_frames == frames and dec.steps == 7 * frames  # the prefill picks token 0
        assert dec.host_syncs == frames
        counts[frames] = counter.calls
    assert counts[9] - counts[3] == 9 - 3, counts  # exactly one more sync per extra frame
    assert counts[3] <= 3 + 4, counts  # plus at most the prefill's few


def test_mixed_lengths_compile_once_per_bucket(pair):
    eager, comp = pair
    cd = CompiledDecoding(comp.model, backend="aot_eager")
    jobs = [j for t in TEXTS for j in comp.plan(t, comp._voice(), None, 0)]
    kind = StepKind.of(SAMPLED)
    runs = [(jobs[:1], 0), (jobs[1:2], 0), (jobs[:2], 0), (jobs[:3], 0), (jobs[1:3], 0), (jobs[2:3], 0),
            (jobs[:1], 600), (jobs[1:3], 700)]  # batch buckets 1, 2, 4 at 512; 1, 2 at 1024 positions
    buckets = set()
    with _quiet():
        for part, floor in runs + runs:  # the second pass must compile nothing
            dec = AudioDecoder(comp.model, comp.layout, [j["prompt"] for j in part], seeds=[1] * len(part),
                               max_frames=[2] * len(part), sampling=SAMPLED, loop_guard=None, compiled=cd,
                               min_cache_length=floor)
            dec.run()
            need = max(len(j["prompt"]) for j in part) + 2 * 7 + 1
            buckets.add((kind, batch_bucket(len(part)), length_bucket(max(need, floor))))
    assert len(buckets) == 5
    assert cd.compiles == len(buckets), (cd.compiles, buckets)


def test_a_decoder_keeps_to_the_given_batch_buckets(pair):
    """The server pads a batch up to a bucket it warmed (3 rows -> 8 of (1, 8)), not to the next power
    of two (4), so serving compiles nothing; the rows still get eager's frames."""
    eager, comp = pair
    cd = CompiledDecoding(comp.model, backend="aot_eager")
    jobs = [j for t in TEXTS for j in comp.plan(t, comp._voice(), None, 0)]
    kw = dict(seeds=[1, 2, 3], max_frames=[2, 2, 2], sampling=SAMPLED, loop_guard=None)
    prompts = [j["prompt"] for j in jobs]
    with _quiet():
        got = AudioDecoder(comp.model, comp.layout, prompts, compiled=cd, batch_buckets=(1, 8), **kw).run()
        want = AudioDecoder(comp.model, comp.layout, prompts, **kw).run()
    assert list(cd._caches) == [(8, 512)] and cd.compiles == 1
    assert [g.tokens.tolist() for g in got] == [w.tokens.tolist() for w in want]
    with pytest.raises(ValueError, match="batch_buckets must be positive ints"):
        AudioDecoder(comp.model, comp.layout, prompts, batch_buckets=(0, 8), **kw)


@pytest.mark.slow
def test_inductor_compiled_equals_eager(pair, snac_random):
    """Inductor's generated C++ kernels (fused, reordered reductions), not just the traced graph."""
    eager, _ = pair
    ind = OptimumTTS(eager.model, eager.tokenizer, snac_random, length_guard=eager.length_guard, compile=True,
                     compile_backend="inductor")
    with _quiet():
        e = eager.generate_batch(TEXTS[:2], seed=[1, 2], return_result=True)
        c = ind.generate_batch(TEXTS[:2], seed=[1, 2], return_result=True)
    assert ind.compiled.compiles == 1
    for er, cr in zip(e, c):
        assert [ch.codes[0].tolist() for ch in er.chunks] == [ch.codes[0].tolist() for ch in cr.chunks]
        np.testing.assert_array_equal(er.audio, cr.audio)


def test_warm_up_compiles_the_bucket_before_the_first_request(pair, snac_random):
    eager, _ = pair
    fresh = OptimumTTS(eager.model, eager.tokenizer, snac_random, length_guard=eager.length_guard, compile=True,
                       compile_backend="aot_eager")
    with _quiet():
        w = fresh.warm_up(batches=(2,), lengths=(512,))
        assert w["compiles"] == 1 and w["compile_seconds"] > 0 and w["seconds"] >= w["compile_seconds"]
        out = fresh.generate_batch(TEXTS[:2], seed=[3, 4], return_result=True)  # batch 2, 512 positions
        ref = eager.generate_batch(TEXTS[:2], seed=[3, 4], return_result=True)
    assert fresh.compiled.compiles == 1  # the request found its bucket compiled
    for a, b in zip(out, ref):
        np.testing.assert_array_equal(a.audio, b.audio)
    assert eager.warm_up()["compiles"] == 0  # eager: nothing to compile


def test_a_half_read_stream_and_a_generate_of_the_same_bucket_do_not_share_buffers(pair):
    """A live stream holds its bucket's kept cache and state; a generate of the same shape meanwhile
    decodes on its own (eagerly), and both give eager's frames."""
    eager, comp = pair
    text = "One shared bucket here."
    with _quiet():
        want_stream = eager.generate(text, seed=21, return_result=True)
        want_gen = eager.generate(text, seed=22, return_result=True)
        s = comp.stream(text, seed=21, chunk_frames=2, first_chunk_frames=1)
        it = iter(s)
        pieces = [next(it)]  # the stream's decoder now holds (sampled, batch 1, 512)
        mid = comp.generate(text, seed=22, return_result=True)
        pieces += list(it)
    np.testing.assert_array_equal(mid.audio, want_gen.audio)
    assert [c.codes[0].tolist() for c in s.chunks] == [c.codes[0].tolist() for c in want_stream.chunks]
    assert np.abs(np.concatenate(pieces) - want_stream.audio).max() <= STREAM_TOLERANCE
    assert not comp.compiled._busy  # released when the decoders finished


def test_a_half_read_sampled_stream_and_a_greedy_generate_of_the_same_shape_do_not_share_a_cache(pair):
    """Greedy and sampled buckets of one (batch, cache length) compile apart but share the kept
    StaticCache: a greedy generate while a sampled stream of that shape is half read must not reset
    and overwrite the stream's cache (it decodes eagerly on its own)."""
    eager, comp = pair
    text = "One shared cache here."
    with _quiet():
        want_stream = eager.generate(text, seed=31, return_result=True)
        want_greedy = eager.generate(text, seed=32, temperature=0, return_result=True)
        s = comp.stream(text, seed=31, chunk_frames=2, first_chunk_frames=1)
        it = iter(s)
        pieces = [next(it)]  # the stream's decoder holds the (batch 1, 512) cache
        mid = comp.generate(text, seed=32, temperature=0, return_result=True)
        pieces += list(it)
    np.testing.assert_array_equal(mid.audio, want_greedy.audio)
    assert [c.codes[0].tolist() for c in s.chunks] == [c.codes[0].tolist() for c in want_stream.chunks]
    assert np.abs(np.concatenate(pieces) - want_stream.audio).max() <= STREAM_TOLERANCE
    assert not comp.compiled._busy


def test_the_servers_hf_backend_warms_up_on_its_worker_and_serves_eagers_audio(pair):
    """SpeechEngine over a compiled engine: warm-up compiles batch 1 and max_batch's bucket on the worker
    thread before the first request; a request's audio equals the eager engine's generate."""
    from helpers.infer.serve_engine import SpeechEngine

    eager, comp = pair
    fresh = OptimumTTS(eager.model, eager.tokenizer, eager.codec, length_guard=eager.length_guard, compile=True,
                       compile_backend="aot_eager")
    engine = SpeechEngine(fresh, max_batch=2, max_queue=4).start()
    try:
        job = engine.check(text="Served compiled.", voice="female_us_01", seed=9, response_format="wav")
        got = engine.synthesize(job, timeout=600)
    finally:
        engine.stop()
    assert engine.warm_up_result is not None and engine.warm_up_result["compiles"] == 2  # (1, 2) at 2,048
    assert fresh.compiled.compiles == 2  # the request (1 row, ~100 positions) decoded in the warmed bucket
    with _quiet():
        want = eager.generate("Served compiled.", speaker="female_us_01", seed=9)
    np.testing.assert_array_equal(got, want)
    assert SpeechEngine(eager, max_batch=2).warm_up is False  # eager engine: nothing to warm up
