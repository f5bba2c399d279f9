"""Budget waste of packing on realistic example lengths: pass/fail at <= 2 %.

A packed row holds whole examples up to a token budget (``helpers.train.packing``). Nothing
is padded, so the figure that matters is ``budget_waste`` = 1 - tokens / (rows x
budget): the share of each fixed-size micro-batch left empty, i.e. compute (and a
fixed-shape batcher's padding) spent on nothing.

Synthetic corpora (default 20,000 examples, 8,192-token budget), lengths built the
way ``helpers.train.sequences`` builds examples:

* clip durations 1-30 s, two shapes: ``lognormal`` (median 6 s, sigma 0.6: the
  shape of read-speech corpora such as LibriTTS-R) and ``uniform`` (every duration
  equally likely: many long clips, the harder case);
* audio tokens: whole SNAC frames, 24,000 / 2,048 frames/s x 7 tokens
  (= ``helpers.train.planner.AUDIO_TOKENS_PER_SECOND``, 82.03 tokens/s);
* text: 3.5 tokens/s of speech; 10 tokens of markers (BOS, voice/text/audio tags);
* ``with references``: half the examples (stage 2's ``reference_prob`` 0.5) carry a
  cloning reference of 12-72 SNAC frames (``reference_min/max_frames``) + 4 markers.

The script exits 1 when any corpus of at least ``--gate-examples`` examples wastes
more than ``--max-percent`` of its budget. ``--assets`` adds the bundled assets
corpus built by the real SequenceBuilder (tiny profile; too few tokens for the gate:
its floor, rounding up to whole rows, is itself several percent).

    python benchmarks/bench_packing.py [--examples 20000] [--budget 8192] [--assets]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXT_TOKENS_PER_S = 3.5  # same assumption as helpers.train.planner.stage_tokens
MARKER_TOKENS = 10
REFERENCE_MARKERS = 4


def synthetic_lengths(n: int, shape: str, reference_prob: float, seed: int = 0) -> list[int]:
    """Example lengths (tokens) of ``n`` synthetic clips of 1-30 s; see the module docstring."""
    import numpy as np

    from helpers.tokens import AUDIO_TOKENS_PER_SECOND
    from helpers.tokens import FRAME_SIZE

    rng = np.random.default_rng([seed, 0 if shape == "lognormal" else 1, int(reference_prob * 100)])
    if shape == "lognormal":
        dur = np.clip(rng.lognormal(np.log(6.0), 0.6, n), 1.0, 30.0)
    elif shape == "uniform":
        dur = rng.uniform(1.0, 30.0, n)
    else:
        raise ValueError(f"shape must be 'lognormal' or 'uniform', got {shape!r}")
    frames = np.ceil(dur * AUDIO_TOKENS_PER_SECOND / FRAME_SIZE)
    lengths = frames * FRAME_SIZE + np.round(dur * TEXT_TOKENS_PER_S) + MARKER_TOKENS
    has_ref = rng.random(n) < reference_prob
    lengths += has_ref * (rng.integers(12, 73, n) * FRAME_SIZE + REFERENCE_MARKERS)
    return lengths.astype(int).tolist()


def assets_rows(budgets, epochs: int):
    """(label, PackingStats) per budget and epoch on the bundled assets corpus (real SequenceBuilder)."""
    import csv

    import soundfile as sf

    from helpers import models
    from helpers.codec import SnacCodec
    from helpers.train.config import stage_config
    from helpers.train.packing import packing_stats, shuffled_bins
    from helpers.profiles import ASSETS_CORPUS_DIR, RANDOM_SNAC_24KHZ, TINY_LLAMA
    from helpers.train.sequences import SequenceBuilder, VoiceSelection, choose_builtin_voices
    from helpers.data.shards import Utterance

    codec = SnacCodec.load(RANDOM_SNAC_24KHZ, device="cpu")  # random weights: code counts are exact
    rows = list(csv.DictReader(open(ASSETS_CORPUS_DIR / "metadata.csv", newline="")))
    utts = []
    for r in rows:
        wav, sr = sf.read(ASSETS_CORPUS_DIR / r["file"], dtype="float32")
        utts.append(Utterance(f"assets:{r['utterance_id']}", "assets", f"assets:{r['speaker']}", r["accent"],
                              r["gender"], r["emotion"], r["text"], len(wav) / sr, codec.encode(wav, sr)))
    _, tok, layout, _ = models.extend_vocabulary(*models.load_base(TINY_LLAMA))
    chosen = choose_builtin_voices(utts).assignments  # half the speakers built-in, half with references
    voices = VoiceSelection({v: chosen[v] for v in sorted(chosen)[::2]})
    for budget in budgets:
        cfg = stage_config(2, "tiny", max_seq_len=budget)
        b = SequenceBuilder.from_config(layout, tok, voices, cfg)
        for epoch in range(epochs):
            exs, _ = b.build(utts, cfg.seed, epoch)
            lengths = [len(e) for e in exs]
            yield f"assets corpus, epoch {epoch}", packing_stats(lengths, shuffled_bins(lengths, budget, cfg.seed,
                                                                                          epoch), budget)


def main(argv=None) -> int:
    import torch

    from helpers.train.packing import pack, packing_stats

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20_000, help="examples per synthetic corpus")
    ap.add_argument("--budget", type=int, default=8192, help="tokens per packed row (max_seq_len)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-percent", type=float, default=2.0, help="fail (exit 1) above this budget waste %%")
    ap.add_argument("--gate-examples", type=int, default=10_000,
                    help="corpora with at least this many examples are held to --max-percent")
    ap.add_argument("--assets", action="store_true", help="also pack the bundled assets corpus (encodes it: ~1 min)")
    ap.add_argument("--assets-budgets", type=int, nargs="+", default=[1024, 4096])
    a = ap.parse_args(argv)
    torch.set_num_threads(1)

    print(f"{'corpus':<42} {'examples':>8} {'rows':>5} {'tokens':>10} {'mean len':>8} {'waste %':>7} "
          f"{'floor %':>7} {'pack s':>6}  verdict")
    failed = []
    for shape in ("lognormal", "uniform"):
        for ref_p in (0.0, 0.5):
            lengths = synthetic_lengths(a.examples, shape, ref_p, a.seed)
            t0 = time.perf_counter()
            bins = pack(lengths, a.budget)
            dt = time.perf_counter() - t0
            st = packing_stats(lengths, bins, a.budget)
            name = f"{shape} 1-30 s, {'with' if ref_p else 'no'} references, {a.budget}"
            gated = st.examples >= a.gate_examples
            ok = 100 * st.budget_waste <= a.max_percent
            if gated and not ok:
                failed.append(name)
            verdict = ("PASS" if ok else "FAIL") if gated else "(not gated: too few examples)"
            print(f"{name:<42} {st.examples:>8} {st.bins:>5} {st.tokens:>10} {st.tokens / st.examples:>8.0f} "
                  f"{100 * st.budget_waste:>7.3f} {100 * st.min_budget_waste:>7.3f} {dt:>6.2f}  {verdict}")
    if a.assets:
        for name, st in assets_rows(a.assets_budgets, 2):
            print(f"{name + ', ' + str(st.budget):<42} {st.examples:>8} {st.bins:>5} {st.tokens:>10} "
                  f"{st.tokens / st.examples:>8.0f} {100 * st.budget_waste:>7.3f} {100 * st.min_budget_waste:>7.3f} "
                  f"{'':>6}  (small corpus: compare with its floor)")
    print(f"budget waste target: <= {a.max_percent}% on corpora of >= {a.gate_examples} examples: "
          + ("all pass" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
