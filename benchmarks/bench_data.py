"""Throughput of the data pipeline: preprocessing (CPU) and SNAC encoding (CPU or GPU).

Prints audio-hours processed per hour of wall time (x real time) for
  * preprocessing (decode FLAC at 44.1 kHz -> mono/24 kHz/trim/SNR/-23 LUFS), 1 process and N processes;
  * SNAC encoding one clip at a time vs batched (encode_batch), per batch size;
and what that means for 1,000 h (target on an A100: under one hour of GPU time).
No asserts: this measures. Record results with the card and the date.

    python benchmarks/bench_data.py                     # random-weight SNAC, CPU (or the GPU if present)
    python benchmarks/bench_data.py --snac hubertsiuzdak/snac_24khz --clips 64 --batch-sizes 1 16 64
"""
from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import audio, preprocess as pp  # noqa: E402
from helpers.profiles import ASSETS_CORPUS_DIR, RANDOM_SNAC_24KHZ  # noqa: E402


def corpus_clips(n: int, seconds: float, sr: int = 44100) -> list[dict]:
    """``n`` common rows of ~``seconds`` of real espeak speech (corpus clips concatenated), FLAC at ``sr``."""
    files = sorted(ASSETS_CORPUS_DIR.glob("*/*.flac"))
    speech = np.concatenate([sf.read(f, dtype="float32")[0] for f in files])  # 24 kHz
    speech = audio.resample(speech, 24000, sr)
    rows, step = [], int(seconds * sr)
    for i in range(n):
        start = (i * step) % max(1, len(speech) - step)
        buf = io.BytesIO()
        sf.write(buf, speech[start: start + step], sr, format="FLAC", subtype="PCM_16")
        rows.append({"audio": {"bytes": buf.getvalue(), "path": f"c{i}.flac"}, "text": "Benchmark speech clip.",
                     "speaker": "b:s", "accent": "us", "gender": "male", "emotion": "neutral",
                     "utterance_id": f"b:{i}", "dataset": "b"})
    return rows


def bench_preprocess(rows: list[dict], workers: int) -> tuple[float, list]:
    t = time.perf_counter()
    fn = functools.partial(pp.preprocess_row, cfg=pp.DEFAULT_CONFIG)
    out = list(pp.process_rows(((r["utterance_id"], r) for r in rows), fn, workers=workers))
    wall = time.perf_counter() - t
    kept = [p for _, rec, p in out if p is not None]
    return wall, kept


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snac", default=RANDOM_SNAC_24KHZ, help="SNAC hub id, folder, or random-snac-24khz")
    ap.add_argument("--clips", type=int, default=8, help="clips per measurement")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each clip (s)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    args = ap.parse_args(argv)

    import torch

    from helpers.codec import SnacCodec

    rows = corpus_clips(args.clips, args.seconds)
    hours = args.clips * args.seconds / 3600.0
    print(f"{args.clips} clips x {args.seconds:g} s = {hours * 60:.2f} min of 44.1 kHz FLAC speech; "
          f"torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}")

    print("\n== preprocessing (decode, mono, soxr 24 kHz, trim, SNR, -23 LUFS)")
    bench_preprocess(rows[:1], 1)  # warm-up: imports pyloudnorm/scipy
    for w in sorted({1, args.workers}):
        wall, kept = bench_preprocess(rows, w)
        print(f"workers={w:2d}: {wall:6.2f} s wall, {hours / (wall / 3600):8.1f} audio-h per wall-h; "
              f"1,000 h -> {1000 / (hours / (wall / 3600)):6.2f} h   ({len(kept)}/{len(rows)} kept)")
    wavs = [p.wav for p in kept]
    enc_hours = sum(len(w) for w in wavs) / 24000 / 3600

    codec = SnacCodec.load(args.snac, device=args.device)
    dev = codec.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"\n== SNAC encoding on {name} ({codec.name})")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    codec.encode_batch(wavs[:2], batch_size=2)  # warm-up (cuDNN autotune, allocator)
    sync()
    t = time.perf_counter()
    for w in wavs:
        codec.encode(w)
    sync()
    one = time.perf_counter() - t
    print(f"one at a time : {one:6.2f} s, {enc_hours / (one / 3600):8.1f} audio-h per h; 1,000 h -> "
          f"{1000 / (enc_hours / (one / 3600)):6.2f} h")
    for b in args.batch_sizes:
        sync()
        t = time.perf_counter()
        codec.encode_batch(wavs, batch_size=b)
        sync()
        wall = time.perf_counter() - t
        print(f"batch_size={b:3d}: {wall:6.2f} s, {enc_hours / (wall / 3600):8.1f} audio-h per h; 1,000 h -> "
              f"{1000 / (enc_hours / (wall / 3600)):6.2f} h")
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
