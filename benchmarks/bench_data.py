"""Throughput of the data pipeline: preprocessing (CPU) and SNAC encoding (CPU or GPU).

Prints
  * 01's per-row cost over a long source: seconds per 10k rows after 1k rows and after 100k rows
    already processed, through the real driver (run_preprocess: pieces, resume points, progress)
    and the real per-row path; rows are synthetic and cheap (one in ``--audio-every`` carries a
    1.3 s clip that is kept, the others stop at the transcript check), so growth, if any, is the
    driver's bookkeeping (the old progress bar re-summed every record per clip: quadratic);
  * 01's rate beside a plain librosa pipeline on the same files (``librosa.load(sr=24000)`` +
    ``librosa.effects.trim`` + pyloudnorm to -23 LUFS): audio-seconds per CPU-second of one process
    (the per-core rate; CPU time, because the wall clock of a shared machine measures the neighbours),
    interleaved rounds, best of each, and the ratio;
  * preprocessing audio-hours per wall-hour (decode FLAC 44.1 kHz -> mono/24 kHz/trim/SNR/-23 LUFS),
    1 process and N processes;
  * SNAC encoding one clip at a time vs batched by padded seconds (encode_batch), per budget,
    on clips of mixed lengths: audio-hours encoded per hour, and 1,000 h in hours
    (target on an A100: under one hour of GPU time).
No asserts: this measures. Record results with the card and the date.

    python benchmarks/bench_data.py                     # random-weight SNAC, CPU (or the GPU if present)
    python benchmarks/bench_data.py --snac hubertsiuzdak/snac_24khz --clips 64 --batch-seconds 60 300 600
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

from helpers import audio  # noqa: E402
from helpers.data import preprocess as pp  # noqa: E402
from helpers import clip_audio
from helpers.data import clips
from helpers.data import source_stream
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


class SyntheticSource(source_stream.SourceReader):
    """``n`` cheap common rows; records when each row index is handed to 01 (1 worker: no read-ahead)."""

    def __init__(self, n: int, audio_every: int, marks: set):
        self.n, self.marks, self.times = n, marks, {}
        w, _ = sf.read(sorted(ASSETS_CORPUS_DIR.glob("*/*.flac"))[0], dtype="float32")
        buf = io.BytesIO()
        sf.write(buf, audio.resample(w, 24000, 8000)[: int(1.3 * 8000)], 8000, format="WAV", subtype="PCM_16")
        self.clip, self.audio_every = buf.getvalue(), audio_every

    def pin(self, source):
        return {"dataset": source.dataset, "split_role": source.split_role, "hub_id": "synthetic", "config": None,
                "revision": None, "fingerprint": "synthetic"}

    def check(self, source, pin):
        pass

    def rows(self, source, pin, start=None, state_every=0):
        for i in range(start.index if start else 0, self.n):
            if i in self.marks:
                self.times[i] = time.perf_counter()
            real = i % self.audio_every == 0
            yield i, {"audio": {"bytes": self.clip, "path": f"r{i}.wav"}, "text": "A cheap row." if real else None,
                      "speaker": f"b:s{i % 50}", "accent": "us", "gender": "male", "emotion": "neutral",
                      "utterance_id": f"b:{i}", "dataset": "b"}, (
                {"next": i + 1} if state_every and (i + 1) % state_every == 0 else None)


def bench_row_overhead(after: int, window: int, audio_every: int) -> None:
    import tempfile

    marks = {1000, 1000 + window, after, after + window}
    src = SyntheticSource(after + window + 1, audio_every, marks)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        pp.run_preprocess(tmp, [source_stream.Source("assets", "train", None)], reader=src, n_samples=0, progress=False,
                          hours_scale=1e-5)
        total = time.perf_counter() - t
    tm = src.times
    early, late = tm[1000 + window] - tm[1000], tm[after + window] - tm[after]
    per = 10000 / window
    print(f"rows {1000:>7,}..{1000 + window:>7,}: {early * per:6.2f} s per 10k rows")
    print(f"rows {after:>7,}..{after + window:>7,}: {late * per:6.2f} s per 10k rows   "
          f"(ratio {late / early:.2f}; 1 row in {audio_every} with a kept clip; whole run {total:.0f} s)")


def bench_preprocess(rows: list[dict], workers: int) -> tuple[float, list]:
    t = time.perf_counter()
    fn = functools.partial(clips.preprocess_row, cfg=clip_audio.DEFAULT_CONFIG)
    out = list(source_stream.process_rows(((r["utterance_id"], r) for r in rows), fn, workers=workers))
    wall = time.perf_counter() - t
    kept = [p for _, rec, p in out if p is not None]
    return wall, kept


def librosa_baseline(row: dict) -> np.ndarray:
    """The plain pipeline 01 is held against: load at 24 kHz, trim silence, one loudness measurement, gain."""
    import librosa
    import pyloudnorm

    y, sr = librosa.load(io.BytesIO(row["audio"]["bytes"]), sr=24000)
    y, _ = librosa.effects.trim(y)
    return pyloudnorm.normalize.loudness(y, pyloudnorm.Meter(sr).integrated_loudness(y), -23.0)


def bench_vs_librosa(rows: list[dict], rounds: int) -> None:
    """01's ``preprocess_row`` and :func:`librosa_baseline` on the same rows, interleaved; best round of each."""
    import warnings

    audio_s = sum(sf.info(io.BytesIO(r["audio"]["bytes"])).duration for r in rows)
    ours = functools.partial(clips.preprocess_row, cfg=clip_audio.DEFAULT_CONFIG)
    best = {"01 preprocess_row": [], "librosa baseline": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyloudnorm warns on clipping after its gain; irrelevant to the rate
        ours(rows[0]), librosa_baseline(rows[0])  # warm-up: imports, filter design, numba caches
        for _ in range(rounds):
            for name, fn in (("01 preprocess_row", ours), ("librosa baseline", librosa_baseline)):
                c, w = time.process_time(), time.perf_counter()
                for r in rows:
                    fn(r)
                best[name].append((time.process_time() - c, time.perf_counter() - w))
    rate = {}
    for name, runs in best.items():
        cpu, wall = min(runs)
        rate[name] = audio_s / cpu
        print(f"{name:<18}: {rate[name]:7.1f} audio-s per CPU-s   ({audio_s / wall:7.1f} per wall-s; "
              f"best of {rounds}, {len(rows)} files, {audio_s:.0f} s of audio)")
    print(f"ratio 01 / librosa: {rate['01 preprocess_row'] / rate['librosa baseline']:.2f}x")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snac", default=RANDOM_SNAC_24KHZ, help="SNAC hub id, folder, or random-snac-24khz")
    ap.add_argument("--clips", type=int, default=8, help="clips per measurement")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each clip (s)")
    ap.add_argument("--batch-seconds", type=float, nargs="+", default=[1.0, 20.0, 60.0],
                    help="encode_batch budgets (padded seconds per batch) to compare")
    ap.add_argument("--overhead-rows", type=int, default=100_000,
                    help="01 per-row cost is measured after 1k and after this many rows (0: skip)")
    ap.add_argument("--overhead-window", type=int, default=10_000, help="rows per overhead measurement")
    ap.add_argument("--audio-every", type=int, default=20, help="one synthetic row in this many carries audio")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of 01 vs the librosa baseline")
    ap.add_argument("--sr", type=int, default=44100, help="sample rate of the benchmark FLAC files")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes for the parallel run")
    ap.add_argument("--device", default=None, help="cuda / cpu (default: CUDA when present)")
    ap.add_argument("--snac-only", action="store_true",
                    help="skip preprocessing; encode synthetic 24 kHz speech-like clips (GPU check: no FLAC stack)")
    ap.add_argument("--skip-snac", action="store_true", help="preprocessing figures only")
    ap.add_argument("--record", default=None, help="append one JSON line per SNAC measurement to this file")
    args = ap.parse_args(argv)

    import torch

    from helpers.codec import SnacCodec

    if args.overhead_rows and not args.snac_only:
        print("== 01 per-row cost over a long source (real driver and per-row path, cheap synthetic rows)")
        bench_row_overhead(args.overhead_rows, args.overhead_window, args.audio_every)

    if args.snac_only:
        # speech-like: noise under a 3 Hz syllable envelope (SNAC's cost does not depend on the content);
        # mixed lengths (1 s .. the full clip), as real sources have: batching must bucket them
        rng = np.random.default_rng(0)
        wavs = []
        for _ in range(args.clips):
            t = np.arange(int(rng.uniform(1.0, args.seconds) * 24000)) / 24000
            env = np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None) ** 2
            wavs.append((0.3 * env * rng.standard_normal(t.size)).astype(np.float32))
        print(f"{args.clips} synthetic clips of 1-{args.seconds:g} s at 24 kHz (no preprocessing)")
    else:
        rows = corpus_clips(args.clips, args.seconds, args.sr)
        hours = args.clips * args.seconds / 3600.0
        print(f"{args.clips} clips x {args.seconds:g} s = {hours * 60:.2f} min of {args.sr / 1000:g} kHz FLAC speech; "
              f"torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}")
        print(f"\n== 01 beside a plain librosa pipeline on the same {args.sr} Hz FLAC files (one process)")
        bench_vs_librosa(rows, args.rounds)
        print("\n== preprocessing (decode, mono, soxr 24 kHz, trim, SNR, -23 LUFS)")
        bench_preprocess(rows[:1], 1)  # warm-up: imports pyloudnorm/scipy
        for w in sorted({1, args.workers}):
            wall, kept = bench_preprocess(rows, w)
            print(f"workers={w:2d}: {wall:6.2f} s wall, {hours / (wall / 3600):8.1f} audio-h per wall-h; "
                  f"1,000 h -> {1000 / (hours / (wall / 3600)):6.2f} h   ({len(kept)}/{len(rows)} kept)")
        # mixed lengths (1 s .. the full clip), as real sources have: batching must bucket them
        rng = np.random.default_rng(0)
        wavs = [p.wav[: int(rng.uniform(1.0, len(p.wav) / 24000) * 24000)] for p in kept]
    if args.skip_snac:
        return
    enc_hours = sum(len(w) for w in wavs) / 24000 / 3600

    codec = SnacCodec.load(args.snac, device=args.device)
    dev = codec.device
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"\n== SNAC encoding on {name} ({codec.name}), {len(wavs)} clips of 1-{args.seconds:g} s, "
          f"{enc_hours * 60:.2f} min")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def record(budget, wall):
        if args.record:
            import datetime
            import json

            row = {"what": "snac_encode", "date": datetime.date.today().isoformat(), "card": name,
                   "codec": codec.name, "batch_seconds": budget, "clips": len(wavs), "audio_hours": enc_hours,
                   "seconds": round(wall, 4), "audio_hours_per_hour": round(enc_hours / (wall / 3600), 1)}
            with open(args.record, "a") as f:
                f.write(json.dumps(row) + "\n")

    def report(label, wall, extra=""):
        rate = enc_hours / (wall / 3600)
        print(f"{label:<22}: {wall:6.2f} s, {rate:8.1f} audio-h per h; 1,000 h -> {1000 / rate:6.2f} h{extra}")

    codec.encode_batch(wavs[:2], batch_seconds=60.0)  # warm-up (cuDNN, allocator)
    sync()
    t = time.perf_counter()
    for w in wavs:
        codec.encode(w)
    sync()
    one = time.perf_counter() - t
    report("one at a time", one)
    record(0.0, one)
    real_s = sum(len(w) for w in wavs) / 24000
    plan_s, plan_n = codec.batch_plan(max(args.batch_seconds))
    sync()
    t = time.perf_counter()
    codec.encode_batch(wavs, batch_seconds=plan_s, batch_size=plan_n)
    sync()
    wall = time.perf_counter() - t
    report("02 default (by device)", wall, f"   (batch_plan: {plan_s:g} s, batch_size {plan_n}; "
                                           f"{one / wall:.2f}x one at a time)")
    for b in args.batch_seconds:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        sync()
        t = time.perf_counter()
        codec.encode_batch(wavs, batch_seconds=b)
        sync()
        wall = time.perf_counter() - t
        st = codec.last_encode_stats
        mem = (f", peak {torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB" if dev.type == "cuda" else "")
        report(f"batch_seconds={b:g}", wall, f"   ({st['batches']} batches, {st['oom_retries']} OOM retries{mem})")
        record(b, wall)
    print(f"(real audio {real_s:.0f} s; each clip is padded to whole frames + a "
          f"{codec.guard_samples / 24000:.3f} s guard)")


if __name__ == "__main__":
    main()
