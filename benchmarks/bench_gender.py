"""gender_estimate on real read speech of documented sex: agreement, abstention, contradiction, cost.

    python benchmarks/bench_gender.py                    # the 24 LibriSpeech clips shipped in assets/speech_real
    python benchmarks/bench_gender.py --dir DIR          # any folder of LibriSpeech-named FLACs (SPEAKER-CHAPTER-UTT.flac)

Each file's reader id is looked up in helpers/data/facts/libritts_r.csv (LibriSpeech SPEAKERS.TXT);
files of readers it does not list are reported and skipped. Prints one line per contradiction (the
reader, documented sex, estimate, median F0) and the totals; nothing is asserted here.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.data.gender_estimate import median_f0, estimate_gender  # noqa: E402
from helpers.data.speaker_facts import gender_map  # noqa: E402
from helpers.profiles import REAL_SPEECH_DIR  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=REAL_SPEECH_DIR, help="folder searched recursively for *.flac")
    args = ap.parse_args(argv)
    files = sorted(args.dir.rglob("*.flac"))
    if not files:
        ap.error(f"no .flac files under {args.dir}")
    documented = gender_map("libritts_r")
    counts, cpu, audio_s, unlisted = Counter(), 0.0, 0.0, []
    for f in files:
        reader = f.name.split("-")[0]
        if reader not in documented:
            unlisted.append(f.name)
            continue
        wav, sr = sf.read(f, dtype="float32")
        t0 = time.process_time()
        got = estimate_gender(wav, sr)
        cpu += time.process_time() - t0
        audio_s += len(wav) / sr
        want = documented[reader]
        verdict = "agree" if got == want else "unknown" if got == "unknown" else "contradict"
        counts[verdict] += 1
        if verdict == "contradict":
            print(f"contradict: {f.name} documented {want}, estimated {got} (median F0 {median_f0(wav, sr):.1f} Hz)")
    n = sum(counts.values())
    print(f"\n{n} clips of {len(set(f.name.split('-')[0] for f in files) - set(u.split('-')[0] for u in unlisted))} "
          f"readers under {args.dir}: agree {counts['agree']} ({counts['agree'] / n:.1%}), unknown {counts['unknown']} "
          f"({counts['unknown'] / n:.1%}), contradict {counts['contradict']} ({counts['contradict'] / n:.1%}); "
          f"{cpu / audio_s:.4f} CPU-s per audio-s (the estimate reads at most the middle 6 s)")
    if unlisted:
        print(f"skipped {len(unlisted)} file(s) of readers not in the facts table: {', '.join(unlisted[:5])}"
              + (" ..." if len(unlisted) > 5 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
