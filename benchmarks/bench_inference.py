"""Inference benchmark: tokens/s, real-time factor (RTF) and time to first audio (TTFA).

    python benchmarks/bench_inference.py --model tiny                # CPU, tiny LLaMA (CI-sized)
    python benchmarks/bench_inference.py --model llama-3.2-3b        # GPU, Llama-3.2-3B architecture,
                                                                      # random weights, no hub access

Modes: ``eager`` (DynamicCache, plain forward), ``static`` (StaticCache, plain forward: the
CPU smoke figure) and ``compiled`` (StaticCache + ``torch.compile(mode="reduce-overhead")`` of
the one-token decode step; CUDA). ``--batch`` runs each mode at several batch sizes (rows
decode in lock step; tokens/s counts all rows). Random weights
never emit ``<|audio_end|>`` on purpose, so every run generates exactly ``--frames`` frames
(the length guard ends it): tokens/s is measured on a fixed amount of work.

Targets (issue 7, on an A100): >= 150 audio tokens/s at batch 1 (RTF <= 0.55; SNAC
needs 82 tokens/s for real time), first audio <= 250 ms. Results are appended as one
JSON line per mode to ``--out`` (default benchmarks/results/inference.jsonl) with the
device name and date: record every GPU run.
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

from helpers.infer.generation import AudioDecoder, LengthGuard, SamplingConfig  # noqa: E402
from helpers.infer.engine import OptimumTTS  # noqa: E402
from helpers.tokens import FRAME_SIZE  # noqa: E402

# Llama-3.2-3B's config.json (meta-llama/Llama-3.2-3B), so the GPU numbers are for the real shape.
LLAMA_32_3B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
                   num_key_value_heads=8, max_position_embeddings=131072, rms_norm_eps=1e-5,
                   tie_word_embeddings=True, head_dim=128)
LLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
TEXT = "Welcome to OptimumAI. This benchmark measures how fast speech tokens come out of the model."


def build(model_name: str, device: torch.device, dtype):
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
    return OptimumTTS(model, tok, codec, length_guard=LengthGuard(cap_seconds=1e9))


MODES = ("eager", "static", "compiled")


def run_mode(tts: OptimumTTS, mode: str, frames: int, repeats: int, batch: int = 1) -> dict:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    (job,) = tts.plan(TEXT, tts._voice("male_us_01"), None, 0)
    step_fn = None
    if mode == "compiled":
        step_fn = torch.compile(tts.model.forward, mode="reduce-overhead", fullgraph=False)
    fps = tts.codec.sample_rate / tts.codec.samples_per_frame
    sync = torch.cuda.synchronize if tts.device.type == "cuda" else (lambda: None)
    times, first = [], []
    for r in range(repeats + 1):  # the first run warms up (and compiles)
        dec = AudioDecoder(tts.model, tts.layout, [job["prompt"]] * batch, seeds=[r * batch + i for i in range(batch)],
                           max_frames=[frames] * batch, sampling=SamplingConfig(), loop_guard=None,
                           frames_per_second=fps, static_cache=mode != "eager", step_fn=step_fn)
        sync()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = dec.run()
        sync()
        if r:
            times.append(time.perf_counter() - t0)
            first.append(dec.first_frame_s)
    codes = res[0].codes
    t0 = time.perf_counter()
    wav = tts.frame_decoder.decode(codes)
    sync()
    snac_s = time.perf_counter() - t0
    # Streaming TTFA: call -> first audio piece (1 frame + lookahead, then SNAC on that window).
    stream = tts.stream(TEXT, speaker="male_us_01", chunk_frames=4, first_chunk_frames=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = iter(stream)
        next(it)
    ttfa = stream.time_to_first_audio_s
    gen_s = float(np.median(times))
    tokens = frames * FRAME_SIZE * batch
    audio_s = len(wav) / tts.sample_rate * batch
    return dict(mode=mode, batch=batch, frames=frames, tokens=tokens, gen_seconds=round(gen_s, 4),
                tokens_per_s=round(tokens / gen_s, 1), tokens_per_s_per_row=round(tokens / batch / gen_s, 1),
                snac_decode_s=round(snac_s * batch, 4), rtf=round((gen_s + snac_s * batch) / audio_s, 3),
                first_frame_s=round(float(np.median(first)), 4), stream_ttfa_s=round(ttfa, 4),
                audio_seconds=round(audio_s, 2))


def stream_vs_generate(tts: OptimumTTS, seconds: float = 3.0, repeats: int = 3) -> dict:
    """Total wall time of ``stream()`` (iterated to the end) against ``generate()`` for the same
    ``seconds`` of audio (same text, seed and sampling, so the same frames), and stream's time to
    first audio with the lowest-latency first chunk (1 frame). Runs alternate; medians."""
    saved = tts.length_guard
    tts.length_guard = LengthGuard(base_seconds=seconds, chars_per_second=1e9, cap_seconds=seconds)
    gen, stm, ttfa = [], [], []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tts.generate(TEXT, speaker="male_us_01", seed=0)  # warm-up
            for r in range(repeats):
                t0 = time.perf_counter()
                full = tts.generate(TEXT, speaker="male_us_01", seed=r)
                gen.append(time.perf_counter() - t0)
                s = tts.stream(TEXT, speaker="male_us_01", seed=r, chunk_frames=4, first_chunk_frames=1)
                pieces = list(s)
                stm.append(s.seconds)
                ttfa.append(s.time_to_first_audio_s)
                err = float(np.abs(np.concatenate(pieces) - full).max())
    finally:
        tts.length_guard = saved
    g, st = float(np.median(gen)), float(np.median(stm))
    return dict(mode="stream_vs_generate", audio_seconds=round(len(full) / tts.sample_rate, 2),
                generate_s=round(g, 4), stream_s=round(st, 4), stream_over_generate=round(st / g, 3),
                stream_ttfa_s=round(float(np.median(ttfa)), 4), max_abs_diff=err)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["tiny", "llama-3.2-3b"], default="tiny")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--frames", type=int, default=64, help="frames per run (64 = 448 tokens = 5.5 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=None,
                    help="comma list of eager,static,compiled (default: eager,static on CPU; eager,compiled on CUDA)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes (rows decoded together)")
    ap.add_argument("--stream-seconds", type=float, default=3.0,
                    help="clip length for the streaming/generate total-time ratio (0: skip)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's). On a shared, oversubscribed VM use 1: "
                         "OpenMP threads then wait on each other at every small op of streaming")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "inference.jsonl"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    modes = args.modes.split(",") if args.modes else (["eager", "compiled"] if device.type == "cuda"
                                                      else ["eager", "static"])
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {bad}; expected some of {MODES}")
    tts = build(args.model, device, dtype)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for batch in args.batch:
        for mode in modes:
            row = dict(date=time.strftime("%Y-%m-%d %H:%M"), device=card, model=args.model, dtype=str(dtype),
                       torch=torch.__version__, **run_mode(tts, mode, args.frames, args.repeats, batch))
            rows.append(row)
            print(json.dumps(row))
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    if args.stream_seconds > 0:
        row = dict(date=time.strftime("%Y-%m-%d %H:%M"), device=card, model=args.model, dtype=str(dtype),
                   torch=torch.__version__, **stream_vs_generate(tts, args.stream_seconds, args.repeats))
        print(json.dumps(row))
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"streaming / generate total time for a {row['audio_seconds']} s clip: {row['stream_over_generate']} "
              f"(target <= 1.15); time to first audio {row['stream_ttfa_s']} s "
              f"(generate: {row['generate_s']} s for the whole clip); max |stream - generate| {row['max_abs_diff']:.1e}")
    print(f"\n{'batch':>5} {'mode':>9} {'tokens/s':>9} {'per row':>8} {'RTF':>6} {'first frame s':>13} "
          f"{'stream TTFA s':>13}   ({card}, {args.model})")
    for r in rows:
        print(f"{r['batch']:>5} {r['mode']:>9} {r['tokens_per_s']:>9} {r['tokens_per_s_per_row']:>8} {r['rtf']:>6} "
              f"{r['first_frame_s']:>13} {r['stream_ttfa_s']:>13}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
