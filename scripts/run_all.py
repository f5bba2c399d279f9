"""Run the whole notebook series end to end (default: the offline `tiny` profile).

    python scripts/run_all.py [--profile tiny] [--run-name demo] [--runs-root runs]

Executed notebooks (with their tables, plots and audio players) are written to
<runs-root>/<run-name>/executed/.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers.colab.chain import run_chain  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--run-name", default="demo")
    ap.add_argument("--runs-root", default=None, help="default: ./runs")
    ap.add_argument("--upto", default=None, help="stop after the notebook whose name starts with this")
    a = ap.parse_args()
    outs = run_chain(a.profile, a.runs_root, a.run_name, a.upto)
    run_dir = outs[0].parent.parent
    print(f"\nAll {len(outs)} notebooks ran. Run directory: {run_dir}")
    print(f"Executed notebooks: {outs[0].parent}")
    for name, what in (("eval", "evaluation report"), ("export", "export / demo audio")):
        if (run_dir / name).exists():
            print(f"{what}: {run_dir / name}")
