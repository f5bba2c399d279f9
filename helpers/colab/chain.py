"""Run the notebook series top to bottom with papermill, sharing one run directory.

Used by the README's run-everything command (``python scripts/run_all.py``) and by
``tests/test_notebooks.py``: the series is proven to work as a chain, each
notebook reading only what the earlier ones wrote.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..profiles import REPO_ROOT

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


def series() -> list[Path]:
    """The notebooks in order (``00_…`` to ``08_…``)."""
    nbs = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise FileNotFoundError(f"no notebooks in {NOTEBOOKS_DIR}")
    return nbs


def run_notebook(nb: Path, out_dir: Path, profile: str, runs_root: Path, run_name: str,
                 extra_parameters: dict | None = None, kernel_name: str = "python3") -> Path:
    """Execute one notebook with papermill (cwd = notebooks/); returns the executed copy."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / nb.name
    params = {"profile": profile, "runs_root": str(runs_root), "run_name": run_name, **(extra_parameters or {})}
    papermill.execute_notebook(str(nb), str(out), parameters=params, cwd=str(NOTEBOOKS_DIR),
                               kernel_name=kernel_name, progress_bar=False)
    return out


def run_chain(profile: str = "tiny", runs_root: str | os.PathLike | None = None, run_name: str = "demo",
              upto: str | None = None, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Execute every notebook in order (or up to and including the one starting with ``upto``).

    Executed notebooks go to ``<run dir>/executed/`` unless ``out_dir`` is given.
    """
    runs_root = Path(runs_root or REPO_ROOT / "runs").resolve()
    out_dir = Path(out_dir) if out_dir else runs_root / run_name / "executed"
    done = []
    for nb in series():
        t0 = time.time()
        print(f"▶ {nb.name} ...", flush=True)
        done.append(run_notebook(nb, out_dir, profile, runs_root, run_name))
        print(f"  done in {time.time() - t0:.1f} s → {done[-1]}", flush=True)
        if upto and nb.name.startswith(upto):
            break
    return done
