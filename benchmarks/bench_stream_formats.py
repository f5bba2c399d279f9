"""First and last audio byte per response format and stream format, over HTTP on 127.0.0.1.

    python benchmarks/bench_stream_formats.py                   # CPU, tiny export, 4 s of audio
    python benchmarks/bench_stream_formats.py --device cuda --seconds 8

What a voice agent hears: time from the request to the first audio byte (for SSE, the first
``speech.audio.delta``) against the last, for pcm, wav, mp3, opus, aac and flac, streamed raw
("audio") and as SSE, and sent whole ("stream": false) for comparison. The model is the tiny
export (random weights: every request runs to its length guard, ``--seconds`` of audio, as
several text chunks); the server is helpers.infer.serve as deployed. Figures only, no asserts;
``--out`` appends one JSON line per row.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_backends import build, tiny_export  # noqa: E402

FORMATS = ("pcm", "wav", "mp3", "opus", "aac", "flac")
TEXT = " ".join(f"Sentence number {i} goes on for a while, to make the text long." for i in range(16))


def one(url: str, fmt: str, mode: str) -> dict:
    """``mode``: audio (streamed bytes), sse (events) or whole ("stream": false)."""
    import requests

    body = {"model": "tiny", "input": TEXT, "voice": "alloy", "response_format": fmt, "seed": 1,
            "stream": mode != "whole"}
    if mode == "sse":
        body["stream_format"] = "sse"
    t0 = time.perf_counter()
    first, pieces, n = None, 0, 0
    with requests.post(f"{url}/v1/audio/speech", json=body, stream=True, timeout=600) as r:
        r.raise_for_status()
        chunks = r.iter_lines() if mode == "sse" else r.iter_content(chunk_size=None)
        for chunk in chunks:
            if mode == "sse":
                if not chunk.startswith(b"data: "):
                    continue
                event = json.loads(chunk[6:])
                if event["type"] != "speech.audio.delta":
                    continue
                chunk = base64.b64decode(event["audio"])
            if chunk:
                first = first if first is not None else time.perf_counter() - t0
                pieces += 1
                n += len(chunk)
    return {"format": fmt, "mode": mode, "first_s": round(first, 3), "last_s": round(time.perf_counter() - t0, 3),
            "pieces": pieces, "bytes": n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio per text chunk (the length guard); 4 chunks")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    args = ap.parse_args(argv)
    import torch

    from helpers.infer.serve import BackgroundServer, create_app

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    warnings.simplefilter("ignore")
    engine = build("hf", tiny_export(tempfile.mkdtemp()), args.device, args.seconds, 8)
    with BackgroundServer(create_app(engine, "tiny")) as server:
        one(server.url, "pcm", "audio")  # warm-up
        print(f"{'format':6} {'mode':5} {'first s':>8} {'last s':>7} {'pieces':>6} {'bytes':>8}")
        for fmt in FORMATS:
            for mode in ("audio", "sse", "whole"):
                row = one(server.url, fmt, mode)
                print(f"{fmt:6} {mode:5} {row['first_s']:8.3f} {row['last_s']:7.3f} {row['pieces']:6d} "
                      f"{row['bytes']:8d}", flush=True)
                if args.out:
                    row.update(device=args.device, date=datetime.date.today().isoformat(), seconds=args.seconds)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
