"""Inference benchmark of the engine's own paths: tokens/s, real-time factor (RTF), first audio.

    python benchmarks/bench_inference.py --model tiny                      # CPU, tiny LLaMA (CI-sized)
    python benchmarks/bench_inference.py --model llama-3.2-3b --batch 1 8  # GPU, Llama-3.2-3B architecture,
                                                                            # random weights, no hub access
    python benchmarks/bench_inference.py --model llama-3.2-3b --serve-clients 1 8 32 --modes compiled --batch

Modes: ``eager`` (``OptimumTTS(compile=False)``) and ``compiled`` (``OptimumTTS(compile=True)``: the
static-cache compiled decode step of :mod:`helpers.infer.decode_step`, CUDA graphs on CUDA). Every
figure comes from the engine's public calls - ``generate_batch`` (batch rows decoded together) and
``stream`` - not from a benchmark-only loop. Random weights never emit ``<|audio_end|>`` on purpose
and the loop guard is off, so every row generates exactly ``--frames`` frames (the length guard
ends it): tokens/s is measured on a fixed amount of work.

Per (mode, batch) row: ``warmup_s`` (the first, untimed call: compilation of the bucket and CUDA-graph
capture for ``compiled``), ``tokens_per_s`` (all rows, the whole ``generate_batch`` call: text
frontend, decoding and SNAC), ``rtf`` (wall time / seconds of audio of all rows) and
``rtf_per_stream`` (wall time / seconds of one row's audio), ``stream_ttfa_s`` (``stream`` of one
text with a 1-frame first chunk, after warm-up: call -> first audio piece, measured on the same
engine as the row - the compiled row's figure is the compiled engine's), ``recompiles`` during the
timed calls (0 expected), ``peak_mem_gb`` (CUDA: peak allocated during the row) and ``cudagraphs``
(:meth:`helpers.infer.decode_step.CompiledDecoding.cudagraph_report`: CUDA graphs recorded, or
skipped by inductor and why - the row's speed means little if they were skipped). Timing starts
and stops with the device idle (``torch.cuda.synchronize``). ``--serve-clients``: the server's HF backend
(:class:`helpers.infer.serve_engine.SpeechEngine` over the same engine) behind the real HTTP app,
N clients streaming at once (benchmarks/bench_serve.py's client). Results are appended as JSON
lines to ``--out`` (default benchmarks/results/inference.jsonl) with the device name and date:
record every GPU run. Figures only, no asserts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_serve's HTTP client

from helpers.infer.generation import LengthGuard  # noqa: E402
from helpers.infer.engine import OptimumTTS  # noqa: E402
from helpers.tokens import FRAME_SIZE  # noqa: E402
from gpu_summary import cudagraph_text  # noqa: E402  (the report in words, as the summary table has it)

# Llama-3.2-3B's config.json (meta-llama/Llama-3.2-3B), so the GPU numbers are for the real shape.
LLAMA_32_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                   num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   tie_word_embeddings=True, head_dim=128)
LLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
TEXT = "Welcome to OptimumAI. This benchmark measures how fast speech tokens come out of the model."


def build(model_name: str, device: torch.device, dtype, frames: int, compile: bool = False, backend="inductor"):
    """The engine over ``model_name`` at random weights; every row generates exactly ``frames`` frames."""
    from helpers.codec import SnacCodec
    from helpers.models import extend_vocabulary, load_base
    from helpers.tiny_models import build_tiny_tokenizer
    from helpers.profiles import RANDOM_SNAC_24KHZ, TINY_LLAMA

    if model_name == "tiny":
        model, tok = load_base(TINY_LLAMA)
    else:  # the 3B architecture at random weights, with the tiny tokenizer (text ids do not matter here)
        from transformers import LlamaConfig, LlamaForCausalLM
        tok = build_tiny_tokenizer()
        cfg = LlamaConfig(vocab_size=len(tok), rope_parameters=LLAMA_ROPE, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, **LLAMA_32_3B)
        with torch.device(device):
            model = LlamaForCausalLM(cfg).to(dtype)
        model.config._attn_implementation = "sdpa"
    model, tok, _, _ = extend_vocabulary(model, tok, strict=False, check_texts=["hello"])
    model = model.to(device=device, dtype=dtype).eval()
    codec = SnacCodec.load(RANDOM_SNAC_24KHZ, device=device)
    return engine_over(model, tok, codec, frames, compile, backend)


def engine_over(model, tok, codec, frames: int, compile: bool, backend="inductor") -> OptimumTTS:
    """An :class:`OptimumTTS` whose length guard ends every row at exactly ``frames`` frames (no loop guard)."""
    fps = codec.sample_rate / codec.samples_per_frame
    seconds = (frames - 0.5) / fps  # ceil(seconds * fps) == frames
    guard = LengthGuard(base_seconds=seconds, chars_per_second=1e9, cap_seconds=seconds)
    return OptimumTTS(model, tok, codec, length_guard=guard, loop_guard=None, compile=compile,
                      compile_backend=backend)


MODES = ("eager", "compiled")


def _compiles(tts: OptimumTTS) -> int:
    return tts.compiled.compiles if tts.compiled is not None else 0


def run_mode(tts: OptimumTTS, frames: int, repeats: int, batch: int = 1) -> dict:
    """``generate_batch`` of ``batch`` texts (one chunk each) and ``stream`` of one, after a warm-up call."""
    cuda = tts.device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(tts.device)) if cuda else (lambda: None)
    texts = [TEXT] * batch
    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats(tts.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the length guard ends every row (on purpose)
        t0 = time.perf_counter()
        tts.generate_batch(texts, seed=list(range(batch)), batch_size=batch)  # compiles the bucket
        s = tts.stream(TEXT, seed=0, chunk_frames=4, first_chunk_frames=1)
        list(s)  # stream's own first call (batch 1 bucket) is warm-up too
        sync()
        warmup_s = time.perf_counter() - t0
        before = _compiles(tts)
        times, ttfa, stream_s = [], [], []
        for r in range(repeats):
            sync()  # nothing of the last call still running when the clock starts
            t0 = time.perf_counter()
            res = tts.generate_batch(texts, seed=[r * batch + i for i in range(batch)], batch_size=batch,
                                     return_result=True)
            sync()
            times.append(time.perf_counter() - t0)
            s = tts.stream(TEXT, seed=r, chunk_frames=4, first_chunk_frames=1)
            list(s)  # its pieces are host arrays: the first one's time includes the device's work
            sync()
            ttfa.append(s.time_to_first_audio_s)
            stream_s.append(s.seconds)
    assert all(c.n_frames == frames for x in res for c in x.chunks), "a row did not run to the length guard"
    gen_s = float(np.median(times))
    tokens = frames * FRAME_SIZE * batch
    row_audio = res[0].duration
    return dict(mode="compiled" if tts.compiled is not None else "eager", batch=batch, frames=frames,
                tokens=tokens, warmup_s=round(warmup_s, 2), gen_seconds=round(gen_s, 4),
                tokens_per_s=round(tokens / gen_s, 1), tokens_per_s_per_row=round(tokens / batch / gen_s, 1),
                rtf=round(gen_s / (row_audio * batch), 4), rtf_per_stream=round(gen_s / row_audio, 4),
                stream_ttfa_s=round(float(np.median(ttfa)), 4), stream_s=round(float(np.median(stream_s)), 4),
                recompiles=_compiles(tts) - before, compiles=_compiles(tts),
                compile_s=round(tts.compiled.compile_seconds, 2) if tts.compiled is not None else 0.0,
                audio_seconds=round(row_audio * batch, 2),
                peak_mem_gb=round(torch.cuda.max_memory_allocated(tts.device) / 2**30, 2) if cuda else None,
                cudagraphs=tts.compiled.cudagraph_report() if tts.compiled is not None else None)


def serve_rows(tts: OptimumTTS, clients: list[int], per_client: int, max_batch: int) -> list[dict]:
    """The server's HF backend over HTTP on 127.0.0.1 (the real app), ``c`` clients streaming at once.
    ``tts`` must not have decoded on another thread yet when it is compiled on CUDA: its CUDA graphs
    belong to the first thread that decodes, and the server decodes on its worker."""
    from bench_serve import one, run
    from helpers.infer.serve import BackgroundServer, create_app
    from helpers.infer.serve_engine import SpeechEngine

    engine = SpeechEngine(tts, max_batch=max_batch, max_queue=256)
    rows = []
    with warnings.catch_warnings(), BackgroundServer(create_app(engine, "bench")) as server:
        warnings.simplefilter("ignore")
        one(server.url, 0)  # waits for the engine's own warm-up (compiled buckets) and warms the HTTP path
        before = _compiles(tts)
        warm = engine.warm_up_result or {}
        for c in clients:
            rows.append(dict(mode="serve_hf", **run(server.url, c, per_client), max_batch=max_batch,
                             compiles_in_serving=_compiles(tts) - before,
                             server_warm_up_s=round(warm.get("seconds", 0.0), 2),
                             cudagraphs=warm.get("cudagraphs")))
    return rows


def snac_batch_rows(codec, streams: list[int], frames: int) -> list[dict]:
    """The vLLM backend's SNAC worker (:class:`helpers.infer.vllm_backend.SnacWorker`) decoding N streams
    of ``frames`` frames each, frames interleaved as vLLM emits them, when the worker is behind
    (everything waiting at once): streams per SNAC call and decode seconds, beside the same streams
    decoded one by one (each stream's calls alone, as a worker that keeps up does)."""
    from types import SimpleNamespace

    from helpers.infer.serve_engine import StreamRoute
    from helpers.infer.snac_decode import FrameDecoder
    from helpers.infer.vllm_backend import SnacWorker
    from helpers.tokens import TokenLayout

    lay = TokenLayout(1000)
    eng = SimpleNamespace(tts=SimpleNamespace(layout=lay, sample_rate=codec.sample_rate, frame_decoder=FrameDecoder(codec)),
                          crossfade_ms=40.0, chunk_frames=4, first_chunk_frames=2)
    rng = np.random.default_rng(0)
    rows = []
    for n in streams:
        toks = [lay.codes_to_tokens([rng.integers(0, 4096, frames * k) for k in (1, 2, 4)]) for _ in range(n)]
        frame_lists = [[tuple(t[i:i + FRAME_SIZE]) for i in range(0, len(t), FRAME_SIZE)] for t in toks]
        job = lambda: SimpleNamespace(cancelled=__import__("threading").Event(), on_piece=lambda p: None)  # noqa: E731
        t0 = time.perf_counter()
        for fl in frame_lists:
            r = StreamRoute(eng, job(), 1)
            for f in fl + [None]:
                r.add(0, f)
        alone_s = time.perf_counter() - t0
        routes = [StreamRoute(eng, job(), 1) for _ in range(n)]
        items = [(routes[s], 0, f) for i in range(frames + 1) for s in range(n)
                 for f in [frame_lists[s][i] if i < frames else None]]
        worker = SnacWorker(codec.device)
        t0 = time.perf_counter()
        worker.handle(items)
        batched_s = time.perf_counter() - t0
        rows.append(dict(mode="snac_batch", streams=n, frames=frames, decoder_calls=sum(worker.calls),
                         snac_calls=len(worker.calls), streams_per_call=round(sum(worker.calls) / len(worker.calls), 2),
                         alone_s=round(alone_s, 3), batched_s=round(batched_s, 3)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["tiny", "llama-3.2-3b"], default="tiny")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--frames", type=int, default=64, help="frames per row (64 = 448 tokens = 5.5 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=None,
                    help="comma list of eager,compiled (default: eager on CPU; compiled on CUDA)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend of the compiled mode")
    ap.add_argument("--batch", type=int, nargs="*", default=[1], help="batch sizes (rows decoded together)")
    ap.add_argument("--serve-clients", type=int, nargs="*", default=[],
                    help="also serve the last mode's engine over HTTP with this many clients at once (e.g. 1 8 32)")
    ap.add_argument("--serve-requests", type=int, default=2, help="requests per client")
    ap.add_argument("--serve-max-batch", type=int, default=8, help="the server's max_batch (rows per decode batch)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's). On a shared, oversubscribed VM use 1: "
                         "OpenMP threads then wait on each other at every small op of streaming")
    ap.add_argument("--snac-streams", type=int, nargs="*", default=[],
                    help="only the vLLM backend's batched SNAC worker: this many streams at once (e.g. 1 4 8)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "inference.jsonl"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.snac_streams:
        from helpers.codec import SnacCodec
        from helpers.profiles import RANDOM_SNAC_24KHZ

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r in snac_batch_rows(SnacCodec.load(RANDOM_SNAC_24KHZ, device=device), args.snac_streams, args.frames):
                print(json.dumps(dict(r, device=str(device), threads=torch.get_num_threads())), flush=True)
        return 0
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    modes = args.modes.split(",") if args.modes else (["compiled"] if device.type == "cuda" else ["eager"])
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; expected some of {MODES}")
    t0 = time.perf_counter()
    base = build(args.model, device, dtype, args.frames)
    load_s = time.perf_counter() - t0
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M"), device=card, model=args.model, dtype=str(dtype),
                torch=torch.__version__)
    rows, tts = [], base
    for mode in modes:
        tts = engine_over(base.model, base.tokenizer, base.codec, args.frames, mode == "compiled", args.backend)
        for batch in args.batch:
            rows.append(dict(meta, **run_mode(tts, args.frames, args.repeats, batch)))
            print(json.dumps(rows[-1]), flush=True)
    if args.serve_clients:
        if args.batch:  # a fresh engine over the same weights: the server's worker thread owns its CUDA graphs
            tts = engine_over(base.model, base.tokenizer, base.codec, args.frames, tts.compiled is not None,
                              args.backend)
        for r in serve_rows(tts, args.serve_clients, args.serve_requests, args.serve_max_batch):
            rows.append(dict(meta, engine="compiled" if tts.compiled is not None else "eager", **r))
            print(json.dumps(rows[-1]), flush=True)
    with out.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"\n{'batch':>5} {'mode':>9} {'tokens/s':>9} {'per row':>8} {'RTF':>7} {'RTF/str':>7} {'TTFA s':>7} "
          f"{'warm-up s':>9} {'recomp':>6}   ({card}, {args.model}, model load {load_s:.1f} s)")
    for r in rows:
        if r["mode"] == "serve_hf":
            print(f"{'HTTP':>5} {r['clients']:>3} clients: {r['requests_per_s']} req/s, first audio p50 "
                  f"{r['ttfa_p50_s']} s / p95 {r['ttfa_p95_s']} s, {r['realtime_streams']} real-time streams, "
                  f"{r['compiles_in_serving']} compile(s) while serving")
        else:
            print(f"{r['batch']:>5} {r['mode']:>9} {r['tokens_per_s']:>9} {r['tokens_per_s_per_row']:>8} "
                  f"{r['rtf']:>7} {r['rtf_per_stream']:>7} {r['stream_ttfa_s']:>7} {r['warmup_s']:>9} "
                  f"{r['recompiles']:>6}")
        if (r.get("cudagraphs") or {}).get("wanted"):
            print(f"      CUDA graphs: {cudagraph_text(r['cudagraphs'], all_reasons=True)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
