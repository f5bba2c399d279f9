"""``python -m helpers.plan``: what a run will cost before it spends anything.

Two reports share this command:

- the **run plan** (default): per notebook, data hours, tokens, optimizer steps, GPU
  hours, compute units, local-disk and Drive peaks (:mod:`helpers.plan.costs`);
- the **coverage report** (``--coverage``): minutes per stage × built-in voice ×
  emotion, examples with cloning references, reference-length histogram
  (:mod:`helpers.plan.coverage`).

Both are computed from the catalog's facts before 01 and from the real manifest and
shards once they exist (``--run-dir``). Exit status 1 means the plan does not fit
(e.g. ``--drive-free-gb`` too small); the message names what to change.
"""
from __future__ import annotations

import argparse
import json
import sys
from .coverage import coverage_report, format_coverage


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="colab", help="profile name (colab, pilot, tiny)")
    p.add_argument("--run-dir", default=None,
                   help="an existing run directory: use its manifest and shards instead of catalog facts")
    p.add_argument("--drive-free-gb", type=float, default=None,
                   help="free space on the user's Drive in GB; exit 1 when the run's Drive peak does not fit")
    p.add_argument("--drive-deletion", choices=("trash", "permanent"), default=None,
                   help="how deleted checkpoints leave Drive (default: the profile's stage config)")
    p.add_argument("--coverage", action="store_true",
                   help="print minutes per stage x voice x emotion instead of the run plan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.coverage:
        report = coverage_report(args.profile, run_dir=args.run_dir)
        print(json.dumps(report, indent=2, default=str) if args.json else format_coverage(report))
        return 0
    from .costs import build_plan, format_plan, plan_problems

    plan = build_plan(args.profile, run_dir=args.run_dir, drive_free_gb=args.drive_free_gb,
                      **({"drive_deletion": args.drive_deletion} if args.drive_deletion else {}))
    print(json.dumps(plan, indent=2, default=str) if args.json else format_plan(plan))
    problems = plan_problems(plan)
    for line in problems:
        print(f"does not fit: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
