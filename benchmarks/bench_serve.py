"""Speech-server benchmark: requests/s and time to first byte (TTFB) for 1, 4 and 16 concurrent clients.

    python benchmarks/bench_serve.py                       # CPU, tiny model (CI-sized)
    python benchmarks/bench_serve.py --device cuda --frames 48 --clients 1 4 16 64

A real server (helpers.infer.serve: FastAPI + uvicorn) runs in this process on 127.0.0.1 over
the tiny LLaMA (random weights, so every request generates exactly ``--frames`` frames: a
fixed amount of work) and random-weight SNAC. Each client sends ``--requests`` streaming
requests one after another (``response_format=pcm``, ``stream=true``, different seeds);
TTFB is measured from sending the request to the first audio byte, and requests/s over the
whole run. Concurrent requests are batched by the engine (``--max-batch`` text chunks per
decoder batch), so requests/s should grow with the number of clients while TTFB grows less
than linearly. Figures only, no asserts: a GPU run is recorded with the card and the date
(``--out``, one JSON line per client count).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.infer.generation import LengthGuard  # noqa: E402
from helpers.infer.serve import BackgroundServer, create_app  # noqa: E402
from helpers.infer.serve_engine import SpeechEngine  # noqa: E402


def build_engine(device: str, frames: int, max_batch: int, max_queue: int) -> SpeechEngine:
    from helpers.codec import SnacCodec
    from helpers.infer.engine import OptimumTTS
    from helpers.models import extend_vocabulary, load_base
    from helpers.profiles import RANDOM_SNAC_24KHZ, TINY_LLAMA

    model, tok = load_base(TINY_LLAMA)
    model, tok, _, _ = extend_vocabulary(model, tok)
    codec = SnacCodec.load(RANDOM_SNAC_24KHZ, device=device)
    seconds = frames * codec.samples_per_frame / codec.sample_rate  # the length guard ends every request here
    tts = OptimumTTS(model.to(device), tok, codec, length_guard=LengthGuard(seconds, 1e6, seconds))
    return SpeechEngine(tts, max_batch=max_batch, max_queue=max_queue)


def one_request(url: str, seed: int) -> tuple[float, float, int]:
    """(seconds to the first audio byte, total seconds, bytes) of one streaming request."""
    import requests

    t0 = time.perf_counter()
    with requests.post(f"{url}/v1/audio/speech", json={"input": "Welcome to OptimumAI, this is a benchmark.",
                                                        "voice": "female_us_01", "seed": seed, "stream": True,
                                                        "response_format": "pcm"}, stream=True, timeout=600) as r:
        r.raise_for_status()
        ttfb, n = None, 0
        for chunk in r.iter_content(chunk_size=None):
            if chunk and ttfb is None:
                ttfb = time.perf_counter() - t0
            n += len(chunk)
    return ttfb, time.perf_counter() - t0, n


def run(url: str, clients: int, per_client: int) -> dict:
    def client(c):
        return [one_request(url, seed=1000 * c + i) for i in range(per_client)]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        results = [r for rs in ex.map(client, range(clients)) for r in rs]
    wall = time.perf_counter() - t0
    ttfb = sorted(r[0] for r in results)
    audio_s = sum(r[2] for r in results) / 2 / 24000
    return {"clients": clients, "requests": len(results), "wall_s": round(wall, 3),
            "requests_per_s": round(len(results) / wall, 3), "ttfb_median_s": round(statistics.median(ttfb), 3),
            "ttfb_p90_s": round(ttfb[min(len(ttfb) - 1, int(0.9 * len(ttfb)))], 3),
            "audio_s_per_wall_s": round(audio_s / wall, 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    ap.add_argument("--frames", type=int, default=12, help="frames per request (85 ms of audio per frame)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="append one JSON line per client count to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # random weights: every row hits the length guard, by design
    engine = build_engine(args.device, args.frames, args.max_batch, max_queue=max(args.clients) + 1)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"tiny model on {args.device} ({device}), {args.frames} frames/request, max batch {args.max_batch}")
    print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'TTFB med':>9} {'TTFB p90':>9} {'audio s/s':>9} "
          f"{'batch':>5}")
    rows = []
    with BackgroundServer(create_app(engine, "tiny")) as server:
        one_request(server.url, seed=0)  # warm-up (first SNAC/LLaMA calls)
        for c in args.clients:
            before = len(engine.batches)
            row = run(server.url, c, args.requests)
            row["mean_batch"] = round(statistics.mean(engine.batches[before:]), 2)  # requests per decoder batch
            rows.append(row)
            print(f"{c:>7} {row['requests']:>8} {row['requests_per_s']:>7.2f} {row['ttfb_median_s']:>8.3f}s "
                  f"{row['ttfb_p90_s']:>8.3f}s {row['audio_s_per_wall_s']:>9.3f} {row['mean_batch']:>5}")
    stamp = {"date": time.strftime("%Y-%m-%d"), "device": device, "frames": args.frames,
             "max_batch": args.max_batch, "threads": args.threads}
    print("BENCH " + json.dumps([{**stamp, **r} for r in rows]))
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps({**stamp, **r}) + "\n")


if __name__ == "__main__":
    main()
