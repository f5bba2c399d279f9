"""Engine-level load figures for the speech server's two backends (HF batching queue, vLLM).

    .venv-vllm/bin/python benchmarks/bench_backends.py                 # CPU, tiny export
    python benchmarks/bench_backends.py --device cuda --backends hf vllm --clients 1 8 32

No HTTP (the server layer adds the same cost to both): each client submits streaming
requests one after another to the engine (``stream=true``, pcm, different seeds) and
measures time to first audio (TTFA: submit -> first decoded piece). Reported per backend
and client count: requests/s, TTFA p50/p95, and real-time streams = seconds of audio
produced per second of wall time (how many listeners the engine keeps fed). The tiny export
has random weights, so every request runs to its length guard: a fixed amount of work
(``--seconds`` of audio). vLLM's CPU attention needs head_dim >= 32, so the tiny export's
attention is regrouped to 2 heads x 32 for both backends (tests/vllm_backend/conftest.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_export(root) -> Path:
    from tests.tiny_export import make_vllm_tiny_export

    return make_vllm_tiny_export(root)  # one export both backends load (vLLM's CPU attention needs head_dim 32)


def build(backend: str, folder: Path, device: str, seconds: float, max_batch: int):
    from helpers.infer.generation import LengthGuard
    from helpers.profiles import RANDOM_SNAC_24KHZ

    guard = LengthGuard(base_seconds=seconds, chars_per_second=1e9, cap_seconds=seconds)
    if backend == "hf":
        from helpers.infer.engine import OptimumTTS
        from helpers.infer.serve_engine import SpeechEngine

        tts = OptimumTTS.from_pretrained(folder, snac=RANDOM_SNAC_24KHZ, device=device, length_guard=guard)
        return SpeechEngine(tts, max_batch=max_batch, max_queue=256)
    from helpers.infer.vllm_backend import VLLMSpeechEngine, load_tts_without_llm

    tts, folder = load_tts_without_llm(folder, snac=RANDOM_SNAC_24KHZ, device=device, length_guard=guard)
    return VLLMSpeechEngine(tts, folder, device=device, max_batch=max_batch, max_queue=256,
                            engine_kw={"max_model_len": 1024})


def one(engine, seed: int) -> tuple[float, float, int]:
    job = engine.check(text="Hello there.", voice="female_us_01", seed=seed, response_format="pcm", stream=True)
    first, n, done = [None], [0], threading.Event()
    t0 = time.perf_counter()

    def on_piece(p):
        if first[0] is None and len(p):
            first[0] = time.perf_counter() - t0
        n[0] += len(p)
    job.on_piece = on_piece
    job.on_done = lambda a, e: done.set()
    engine.submit(job)
    done.wait(600)
    return first[0] or float("nan"), time.perf_counter() - t0, n[0]


def summarize(clients: int, flat: list, wall: float, sr: int) -> dict:
    """Figures of one load level: ``flat`` holds ``(time to first audio s, total s, samples)`` per request."""
    ttfa = sorted(r[0] for r in flat)
    audio_s = sum(r[2] for r in flat) / sr
    return {"clients": clients, "requests": len(flat), "requests_per_s": round(len(flat) / wall, 2),
            "ttfa_p50_s": round(statistics.median(ttfa), 3),
            "ttfa_p95_s": round(ttfa[min(len(ttfa) - 1, int(0.95 * len(ttfa)))], 3),
            "realtime_streams": round(audio_s / wall, 2), "audio_s_per_request": round(audio_s / len(flat), 2)}


def run(engine, clients: int, per_client: int) -> dict:
    sr = engine.tts.sample_rate
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        res = list(ex.map(lambda c: [one(engine, 1000 * c + i) for i in range(per_client)], range(clients)))
    return summarize(clients, [r for rs in res for r in rs], time.perf_counter() - t0, sr)


def load_options(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The load options this benchmark and bench_serve.py share (device, clients, requests, audio, batch, output)."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio per request (the length guard)")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--out", default=None, help="append JSON lines here")
    return ap


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["hf", "vllm"])
    args = load_options(ap).parse_args(argv)
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    warnings.simplefilter("ignore")
    folder = tiny_export(tempfile.mkdtemp())
    for backend in args.backends:
        engine = build(backend, folder, args.device, args.seconds, args.max_batch).start()
        one(engine, 0)  # warm-up
        for c in args.clients:
            row = dict(backend=backend, device=args.device, machine=platform.processor() or platform.machine(),
                       cpus=os.cpu_count(), **run(engine, c, args.requests))
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
        engine.stop()


if __name__ == "__main__":
    main()
