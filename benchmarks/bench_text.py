"""CPU throughput of the text frontend: sentences per second, projected time for 100k.

    python benchmarks/bench_text.py [--n 5000] [--accent us]

The corpus mixes plain prose with sentences full of numbers, money, dates, times,
units and abbreviations (a harder mix than audiobook transcripts). Each sentence
is unique, so the number-word caches do not make the result look better than a
real corpus. Prints results; asserts nothing.
"""
import argparse
import random
import time

from helpers.text import normalize, prepare, split_sentences

TEMPLATES = [
    "The quick brown fox jumps over the lazy dog near the old mill by the river.",
    "She said that she would come back later, but nobody believed her at all.",
    "It cost ${a}.{c:02d} on {m}/{d} at {h}:{mi:02d}am, Dr. Smith's {o}th visit ({p}%).",
    "In {y}, about {big:,} people lived within {k} km of St. Paul's.",
    "Call (555) {a3}-{a4:04d} before {h} p.m. or email info{a}@example.com.",
    "The temperature fell to -{k}°C on {y}-{m:02d}-{d:02d}, the coldest day since {y2}.",
    "Mr. and Mrs. Jones paid £{a}.{c:02d} for {k} kg of apples, i.e. a bargain.",
    "Chapter {r} of the FBI report covers the {decade}0s and NASA's budget of ${a} million.",
    "He ran {k}.{c} miles at {k} mph, then rested for {mi} min.",
    "Our revenue grew {p}.{c}% to €{big:,} in Q{q} {y}, up from {y2}.",
]
ROMANS = ["I", "II", "III", "IV", "V", "IX", "XII"]


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = TEMPLATES[i % len(TEMPLATES)]
        out.append(t.format(
            a=rng.randint(1, 9999), c=rng.randint(0, 99), m=rng.randint(1, 12), d=rng.randint(1, 28),
            h=rng.randint(1, 12), mi=rng.randint(0, 59), o=rng.randint(4, 99), p=rng.randint(1, 99),
            y=rng.randint(1900, 2030), y2=rng.randint(1900, 2030), big=rng.randint(1000, 10**9),
            k=rng.randint(1, 500), a3=rng.randint(100, 999), a4=rng.randint(0, 9999), r=rng.choice(ROMANS),
            decade=rng.randint(190, 202), q=rng.randint(1, 4)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="sentences to time")
    ap.add_argument("--accent", default="us", choices=["us", "uk"])
    args = ap.parse_args()
    sents = corpus(args.n)
    chars = sum(map(len, sents))

    t0, c0 = time.perf_counter(), time.process_time()
    for s in sents:
        normalize(s, accent=args.accent)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    rate = args.n / dt
    # CPU time as well: on a shared machine wall time includes waiting for a core.
    print(f"normalize: {args.n} sentences ({chars / args.n:.0f} chars avg) in {dt:.2f} s wall, {cpu:.2f} s CPU "
          f"-> {rate:,.0f} sentences/s wall, {args.n / cpu:,.0f} per CPU-second (one core)")
    print(f"projected 100k-sentence corpus: {100_000 / rate:.0f} s wall ({100_000 / rate / 60:.1f} min), "
          f"{100_000 / (args.n / cpu) / 60:.1f} min of CPU")

    text = " ".join(sents[:2000])
    t0 = time.perf_counter()
    segs = prepare(text, accent=args.accent, max_seconds=20.0)
    dt = time.perf_counter() - t0
    print(f"prepare (tags + normalize + split, 2000 sentences as one text): {dt:.2f} s, {len(segs)} chunks")
    t0 = time.perf_counter()
    chunks = split_sentences(text, max_seconds=20.0)
    print(f"split_sentences alone: {time.perf_counter() - t0:.3f} s, {len(chunks)} chunks")


if __name__ == "__main__":
    main()
