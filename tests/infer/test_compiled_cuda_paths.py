"""The compiled decoding's CUDA-only paths, proven on CPU by forcing them (issue #31).

No GPU has run them yet, and device time is scarce: each test here runs a branch that only CUDA
takes (the "reduce-overhead" mode, CUDA graphs' preconditions, the thread that owns the graphs, a
device other than the CPU) on the CPU, and checks the property the GPU depends on.
"""
import contextlib
import threading
import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch

from helpers.infer.decode_step import CompiledDecoding, ensure_cudagraph_tls, model_step
from helpers.infer.engine import OptimumTTS
from helpers.infer.generation import GREEDY, AudioDecoder, LengthGuard, SamplingConfig
from tiny_export import extended_tiny

torch.set_num_threads(1)

TEXTS = ["Hi.", "A second, longer sentence here."]


@pytest.fixture(scope="module")
def eager(snac_random):
    model, tok, _ = extended_tiny(seed=3)
    return OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(base_seconds=0.4, chars_per_second=60),
                      compile=False)


def _engine(eager, compiled):
    tts = OptimumTTS(eager.model, eager.tokenizer, eager.codec, length_guard=eager.length_guard, compile=False)
    tts.compiled = compiled
    return tts


def _same_audio(a, b):
    for x, y in zip(a, b):
        assert [c.codes[0].tolist() for c in x.chunks] == [c.codes[0].tolist() for c in y.chunks]
        np.testing.assert_array_equal(x.audio, y.audio)


def _quiet_generate(tts, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights: the length guard ends the rows
        return tts.generate_batch(TEXTS, seed=[4, 5], return_result=True, **kw)


# ----------------------------------------------------------------------------- the mode
def test_reduce_overhead_mode_compiles_and_equals_eager(eager):
    """CUDA's default mode, forced on CPU: torch hands a callable backend the mode as a keyword
    (``backend(gm, inputs, mode=...)``), which the counting backend once refused (TypeError)."""
    comp = CompiledDecoding(eager.model, backend="aot_eager", mode="reduce-overhead")
    got = _quiet_generate(_engine(eager, comp))
    _same_audio(_quiet_generate(eager), got)
    assert comp.compiles == 1  # batch bucket 2, one kind: one graph, counted


def test_reduce_overhead_reaches_inductor_as_cuda_graphs(eager, monkeypatch):
    """What the counter passes to inductor's ``compile_fx`` for each graph, read at the call: with
    "reduce-overhead" the config patches turn CUDA graphs on; without a mode they do not. (The
    graph runs as traced, so the decode still equals eager; inductor itself runs in the slow test.)"""
    import torch._inductor.compile_fx as cfx

    calls = []

    def recording_compile_fx(gm, example_inputs, config_patches=None, **kw):
        calls.append(dict(config_patches or {}))
        return gm.forward

    monkeypatch.setattr(cfx, "compile_fx", recording_compile_fx)
    for mode in ("reduce-overhead", None):
        comp = CompiledDecoding(eager.model, backend="inductor", mode=mode)
        got = _quiet_generate(_engine(eager, comp), temperature=0)
        _same_audio(_quiet_generate(eager, temperature=0), got)
        assert comp.compiles == 1
    assert len(calls) == 2, calls
    assert calls[0].get("triton.cudagraphs") is True, calls[0]
    assert not calls[1].get("triton.cudagraphs", False), calls[1]


def test_cudagraphs_are_wanted_only_for_inductor_with_the_mode_on_a_cuda_model(eager):
    def wanted(backend, mode, device):
        comp = CompiledDecoding(eager.model, backend=backend, mode=mode)
        comp.device = torch.device(device)  # the property reads the model's device; CUDA is pretended
        return comp.cudagraphs

    assert wanted("inductor", "reduce-overhead", "cuda") is True
    assert wanted("inductor", "max-autotune", "cuda") is True
    assert wanted("inductor", None, "cuda") is False
    assert wanted("inductor", "max-autotune-no-cudagraphs", "cuda") is False
    assert wanted("aot_eager", "reduce-overhead", "cuda") is False  # only inductor makes CUDA graphs
    assert wanted("inductor", "reduce-overhead", "cpu") is False
    assert CompiledDecoding(eager.model).mode is None  # "auto" on a CPU model: no mode
    with pytest.raises(RuntimeError, match="Unrecognized mode"):
        CompiledDecoding(eager.model, backend="inductor", mode="fastest")
    report = CompiledDecoding(eager.model).cudagraph_report()
    assert report == {"wanted": False, "recorded": 0, "skips": 0, "reasons": [], "non_static_inputs": 0}


# ----------------------------------------------------------------------------- CUDA graphs' preconditions
class _Inputs:
    """A ``torch.compile`` backend that keeps, per graph, AOT's view of its inputs: which are static
    addresses (what inductor's CUDA graphs take as fixed), which the graph mutates, and its outputs."""

    def __init__(self):
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd

        self.graphs = []

        def fw(gm, example_inputs):
            from torch._inductor.utils import any_is_symbolic, get_first_incompatible_cudagraph_node

            meta = torch._guards.TracingContext.get().fw_metadata
            self.graphs.append(dict(
                n=len(example_inputs), static=set(meta.static_input_indices),
                mutated={i for i, info in enumerate(meta.input_info) if info.mutates_data or info.mutates_metadata},
                outputs=len(meta.output_info),
                # inductor's other reasons to skip CUDA graphs: non-tensor inputs, symbolic shapes, an op
                # CUDA graphs cannot hold (a host sync, a data-dependent allocation)
                non_tensor=[type(x).__name__ for x in example_inputs if not isinstance(x, torch.Tensor)],
                symbolic=any_is_symbolic(*example_inputs),
                unsafe_op=get_first_incompatible_cudagraph_node(gm)))
            return make_boxed_func(gm.forward)

        self.backend = aot_autograd(fw_compiler=fw)


def test_the_checker_sees_a_mutated_input_that_is_not_static():
    """The check below is not vacuous: a compiled function that mutates an unmarked tensor shows it
    as a mutated, non-static input (the case where inductor skips CUDA graphs: "mutated inputs")."""
    seen = _Inputs()
    marked = torch.zeros(3)
    torch._dynamo.mark_static_address(marked)
    def plain_fn(x, y):
        x.add_(y.sum())

    def marked_fn(x, y):  # another function: another graph, whatever dynamo guards on
        x.add_(y.sum())

    for fn, x in ((plain_fn, torch.zeros(3)), (marked_fn, marked)):
        torch.compile(fn, backend=seen.backend, fullgraph=True, dynamic=False)(x, torch.ones(2))
    plain, static = seen.graphs[0], seen.graphs[1]
    assert plain["mutated"] - plain["static"] == {0}
    assert static["mutated"] - static["static"] == set()

    def syncs(x):  # a data-dependent output shape: an op CUDA graphs cannot hold
        return x.nonzero()

    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        torch.compile(syncs, backend=seen.backend, fullgraph=True, dynamic=False)(torch.ones(3))
    assert seen.graphs[2]["unsafe_op"] is not None


def test_every_tensor_the_compiled_step_reads_or_mutates_is_a_static_address(eager):
    """The step's graph inputs - weights, the kept StepState, the StaticCache's keys/values/length -
    are all static addresses (no copy into the graph per replay, no "mutated inputs" skip), and
    the step returns nothing (no output a later replay would overwrite)."""
    seen = _Inputs()
    comp = CompiledDecoding(eager.model, backend=seen.backend)
    got = _quiet_generate(_engine(eager, comp))
    _same_audio(_quiet_generate(eager), got)
    (g,) = seen.graphs
    layers = eager.model.config.num_hidden_layers
    assert g["n"] >= len(list(eager.model.parameters())) + 3 * layers  # weights + each layer's k, v, length
    assert g["static"] == set(range(g["n"])), sorted(set(range(g["n"])) - g["static"])
    assert len(g["mutated"]) >= 7 + 3 * layers  # ids pos cpos n done ring frames + each cache layer
    assert g["outputs"] == 0
    assert g["non_tensor"] == [] and not g["symbolic"] and g["unsafe_op"] is None, g


class _Traced(CompiledDecoding):
    """The compiled path's buffers and calls, the step itself run uncompiled (``model_step``)."""

    def __init__(self, model, watch):
        super().__init__(model, backend="eager")
        self.watch = watch

    def step(self, kind, batch, length):
        def run(*args):
            with self.watch:
                model_step(self.model, kind, *args)
        return run


def test_decoding_on_a_device_other_than_the_cpu_keeps_every_tensor_there(monkeypatch):
    """The model on the "meta" device stands in for CUDA: a tensor made without ``device=`` that meets
    a model tensor raises there, as it would on the GPU (on CPU both are the CPU). Eager and compiled
    decoding reach their first host read (after 7 steps) without a device mismatch; no op of the
    forward or of a step makes a tensor off the model's device (on CUDA, a CPU tensor in the graph
    makes inductor skip CUDA graphs); the kept cache and state live on the device, marked static."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    import transformers.masking_utils as masking

    class OffDevice(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops, self.off = 0, []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.ops += 1
            self.off += [str(func) for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.device.type != "meta"]
            return out

    model, tok, layout = extended_tiny(seed=3)
    model.to("meta")
    # meta tensors hold no values: take the mask branch a compiled graph takes (no data-dependent check)
    monkeypatch.setattr(masking, "is_tracing", lambda *a, **k: True)
    watch = OffDevice()
    model.register_forward_pre_hook(lambda m, a: watch.__enter__() and None)
    model.register_forward_hook(lambda m, a, o: watch.__exit__(None, None, None))
    prompts = [layout.build_prompt(tok.encode(t, add_special_tokens=False), voice="male_us_01",
                                   bos_id=tok.bos_token_id) for t in TEXTS]
    for comp in (None, _Traced(model, watch)):
        for sampling in (GREEDY, SamplingConfig()):
            watch.ops = 0
            dec = AudioDecoder(model, layout, prompts, seeds=[1, 2], max_frames=[3, 3], sampling=sampling,
                               compiled=comp)
            with pytest.raises(NotImplementedError, match="meta tensor"):
                dec.run()  # the first st.frames.tolist(): no data on meta
            assert dec.steps == 7 and watch.ops > 7 * 50, (dec.steps, watch.ops)
            assert watch.off == [], sorted(set(watch.off))
    assert comp._caches and comp._states
    for cache in comp._caches.values():
        for layer in cache.layers:
            for t in (layer.keys, layer.values, layer.cumulative_length):
                assert t.device.type == "meta" and getattr(t, "_dynamo_static_input_type", None)
    for state in comp._states.values():
        for t in state.tensors():
            assert t.device.type == "meta" and getattr(t, "_dynamo_static_input_type", None)


# ----------------------------------------------------------------------------- threads
def _old_get_obj(local, attr_name):
    """cudagraph_trees.get_obj before pytorch#184357 (torch 2.11, the GPU image's): no lazy set-up."""
    if hasattr(local, attr_name):
        return getattr(local, attr_name)
    assert torch._C._is_key_in_tls(attr_name)
    return torch._C._get_obj_in_tls(attr_name)


def _in_thread(fn):
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the test thread
            out["error"] = e
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


def test_cuda_graph_trees_work_in_a_thread_that_did_not_import_them(monkeypatch):
    """A "reduce-overhead" step first run in the server's worker thread looked its graph tree up with
    torch 2.11's ``get_obj`` and failed its assert; ``ensure_cudagraph_tls`` sets the thread up first."""
    from torch._inductor import cudagraph_trees as ct

    monkeypatch.setattr(ct, "get_obj", _old_get_obj)
    bare = _in_thread(lambda: ct.get_container(0))
    assert isinstance(bare.get("error"), AssertionError)  # what the worker thread hit
    ready = _in_thread(lambda: (ensure_cudagraph_tls(), ct.get_container(0))[1])
    assert "error" not in ready, ready
    assert isinstance(ready["value"], ct.TreeManagerContainer)
    assert ready["value"] is not ct.get_container(0)  # each thread its own tree
    ensure_cudagraph_tls()  # the importing thread: already set up, left alone
    assert isinstance(ct.get_obj(ct.local, "tree_manager_locks"), defaultdict)


class _PretendCudaGraphs(CompiledDecoding):
    cudagraphs = True  # as on a CUDA model with "reduce-overhead": graphs belong to one thread


def test_cuda_graphs_belong_to_the_first_decoding_thread(eager):
    comp = _PretendCudaGraphs(eager.model, backend="aot_eager")
    tts = _engine(eager, comp)
    want = _quiet_generate(eager)
    _same_audio(want, _quiet_generate(tts))  # this thread owns the compiled steps now
    assert comp.compiles == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        other = _in_thread(lambda: tts.generate_batch(TEXTS, seed=[4, 5], return_result=True))
    assert "error" not in other, other
    _same_audio(want, other["value"])  # decoded eagerly there: the same frames
    msgs = [str(w.message) for w in caught if "CUDA graphs belong to thread" in str(w.message)]
    assert len(msgs) == 1, [str(w.message) for w in caught]
    assert comp.compiles == 1 and not comp._busy
    report = comp.cudagraph_report()
    assert report["wanted"] is True and report["skips"] == 0 and report["reasons"] == []


@pytest.mark.slow
def test_inductor_with_reduce_overhead_equals_eager(eager):
    """Inductor's own kernels under CUDA's mode: the CUDA-graph config patch reaches compile_fx (which,
    for a CPU graph, runs it without CUDA graphs), and the decode equals eager's."""
    comp = CompiledDecoding(eager.model, backend="inductor", mode="reduce-overhead")
    assert comp.counter.config == {"triton.cudagraphs": True}
    _same_audio(_quiet_generate(eager), _quiet_generate(_engine(eager, comp)))
    assert comp.compiles == 1


# ----------------------------------------------------------------------------- SNAC's side stream
def test_the_snac_side_stream_is_made_once_per_device_after_the_work_queued_before_it(monkeypatch):
    """side_stream's CUDA branch run with torch.cuda's stream calls recorded (no GPU here): one
    stream per device ("cuda" is the current device's), made once, and it waits - once, at
    creation - for what the creating thread's stream had queued (the codec's load); entering it
    makes it current."""
    from helpers.infer import snac_decode

    log = []

    class Stream:
        def __init__(self, device):
            self.device = device
            log.append(("new", str(device)))

        def wait_stream(self, other):
            log.append(("wait", other))

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"current({device})")
    monkeypatch.setattr(torch.cuda, "stream", lambda s: ("entered", s))
    monkeypatch.setattr(snac_decode, "_SIDE_STREAMS", {})
    a = snac_decode.side_stream("cuda")
    b = snac_decode.side_stream(torch.device("cuda", 0))
    c = snac_decode.side_stream("cuda:1")
    assert a[0] == "entered" and a[1] is b[1] and c[1] is not a[1]
    assert log == [("new", "cuda:0"), ("wait", "current(cuda:0)"), ("new", "cuda:1"), ("wait", "current(cuda:1)")]
    assert isinstance(snac_decode.side_stream("cpu"), contextlib.nullcontext) and len(log) == 4  # CPU: nothing


def test_the_report_counts_every_graph_of_the_owner_threads_tree(eager, monkeypatch):
    """``recorded`` walks inductor's graph tree (roots per function, children per node) as torch holds
    it; the tree here is built from plain objects (a real one needs CUDA)."""
    from types import SimpleNamespace

    from torch._inductor import cudagraph_trees as ct

    def node(*children):
        return SimpleNamespace(children={"f": list(children)} if children else {})

    tree = SimpleNamespace(roots={"step_a": [node(node(), node(node()))], "step_b": [node()]})  # 5 nodes
    asked = []
    monkeypatch.setattr(ct, "get_manager", lambda index, create_if_none_exists=True: asked.append(
        (index, create_if_none_exists)) or tree)
    comp = _PretendCudaGraphs(eager.model, backend="aot_eager")
    comp.device = torch.device("cuda", 0)
    assert comp.cudagraph_report()["recorded"] is None  # no thread owns the graphs yet
    assert comp._on_owner_thread()  # this thread decodes first: it owns them
    assert comp.cudagraph_report()["recorded"] == 5 and asked == [(0, False)]  # looked up, never created
    assert _in_thread(comp.cudagraph_report)["value"]["recorded"] is None  # another thread's tree: not ours
    monkeypatch.setattr(ct, "get_manager", lambda index, create_if_none_exists=True: None)
    assert comp.cudagraph_report()["recorded"] == 0  # no tree yet on the owner thread
