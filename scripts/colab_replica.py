"""Run the tiny chain 00 -> 08 on the Colab replica (called by scripts/colab_replica.sh, from .venv).

On Colab every notebook runs in a runtime of its own, so here every notebook gets a fresh replica:
a hard-linked copy of the cached runtime venv (``--runtime``; pip replaces files, never edits them,
so the base stays as Colab ships it) and a fresh ``/content``. In its kernel a stand-in ``google.colab`` is imported at start-up, as Colab's kernel does: the setup
cell sees Colab, "mounts" Drive (the stand-in links the project under test in as the Drive copy,
``MyDrive/optimumllm-audio``) and installs the notebook's NOTEBOOK_PACKAGES through its own code
(helpers/colab/project.py: pip with the runtime's torch/numpy/ipywidgets held). Nothing else is
installed, so a module a notebook imports that its setup cell does not install fails here, named.

The setup code's paths are Colab's (``/content/...``): this uses them as they are, so it refuses a
``/content`` it did not make. Each executed notebook gets the checks of tests/test_notebooks.py;
then every helpers module is imported in the replica with our own deprecation warnings as errors
(scripts/import_helpers.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CONTENT = Path("/content")
OURS = CONTENT / ".optimumllm_replica"  # marks a /content this script made (never a real user's)
KERNEL = "colab-replica"

FAKE_COLAB = {
    # a namespace package: google.protobuf (onnxruntime's) stays importable beside it
    "google/colab/__init__.py": '"""Stand-in for Colab\'s google.colab (scripts/colab_replica.py)."""\n',
    "google/colab/drive.py": '''"""Stand-in for google.colab.drive: mount() makes MyDrive and puts the project under test there."""
import os


def mount(mountpoint, force_remount=False, **kw):
    my_drive = os.path.join(mountpoint, "MyDrive")
    os.makedirs(my_drive, exist_ok=True)
    copy = os.path.join(my_drive, "optimumllm-audio")
    if not os.path.lexists(copy):
        os.symlink(os.environ["COLAB_REPLICA_PROJECT"], copy)
    print(f"Mounted at {mountpoint}")
''',
    # Colab's kernel has google.colab imported before the first cell: that is how the code detects Colab
    "sitecustomize.py": "import google.colab  # noqa: F401  (as in Colab's kernel)\n",
}


def prepare_content() -> None:
    if CONTENT.exists() and not OURS.exists():
        raise SystemExit(f"colab replica: {CONTENT} exists and was not made by this script; the setup code uses "
                         f"Colab's /content paths as they are, so run the replica on a machine without one.")
    for p in (CONTENT / "drive", CONTENT / ".optimumllm_audio", CONTENT / "optimumllm-audio"):
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.exists():
            shutil.rmtree(p)
    OURS.mkdir(parents=True, exist_ok=True)


def make_venv(runtime: Path, where: Path) -> Path:
    """A fresh copy of the runtime venv in ``where`` and a kernel spec for it (JUPYTER_PATH points at it)."""
    venv = where / "venv"
    where.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(runtime), str(venv)], check=True)  # hard links: seconds, no space
    fake = where / "fake_colab"
    for rel, text in FAKE_COLAB.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    spec = where / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab replica (Python 3.13)", "language": "python",
        "env": {"PYTHONPATH": str(fake), "COLAB_REPLICA_PROJECT": str(ROOT)}}))
    os.environ["JUPYTER_PATH"] = str(where / "jupyter")
    return venv


def missing_module(err) -> str | None:
    """The module a failed cell could not import, from papermill's error (None: another error)."""
    import re

    if getattr(err, "ename", "") in ("ModuleNotFoundError", "ImportError"):
        m = re.search(r"No module named '([^']+)'", str(getattr(err, "evalue", "")))
        return m.group(1) if m else str(getattr(err, "evalue", ""))
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runtime", type=Path, required=True, help="the cached runtime venv (colab_replica.sh)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: beside the runtime)")
    ap.add_argument("--upto", default=None, help="stop after the notebook starting with this (e.g. 03)")
    ap.add_argument("--start", default=None, help="start at the notebook starting with this (e.g. 07); the "
                    "earlier notebooks' results come from --runs")
    ap.add_argument("--runs", type=Path, default=None, help="with --start: the run folder (<work>/runs) of a "
                    "replica run kept where it stopped before that notebook (--keep --upto 06), copied so it stays "
                    "as it was; a folder holding that notebook's own results would let it resume instead of run")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (venv, executed notebooks)")
    args = ap.parse_args(argv)

    from papermill.exceptions import PapermillExecutionError

    from helpers.colab.chain import run_notebook, series
    from helpers.colab.project import NOTEBOOK_PACKAGES
    from test_notebooks import check_executed

    work = args.work or args.runtime.parent / f"run-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    runs_root, out_dir = work / "runs", work / "executed"  # the run folder: Drive's, shared by the notebooks
    notebooks = series()
    if args.start:
        if not args.runs or not (args.runs / "replica").is_dir():
            raise SystemExit("--start needs --runs, the runs/ folder of a kept earlier replica run (--keep)")
        shutil.copytree(args.runs, runs_root, symlinks=True)
        notebooks = [nb for nb in notebooks if nb.name >= args.start]
    failures = []
    t_all = time.time()
    try:
        for nb in notebooks:
            t0 = time.time()
            print(f"▶ {nb.stem} (its setup cell installs: {', '.join(NOTEBOOK_PACKAGES[nb.stem]) or 'nothing'})",
                  flush=True)
            prepare_content()  # a fresh runtime: nothing installed, no markers
            make_venv(args.runtime, work / nb.stem)
            try:
                out = run_notebook(nb, out_dir, "tiny", runs_root, "replica", kernel_name=KERNEL)
            except PapermillExecutionError as e:
                module = missing_module(e)
                if module:
                    failures.append(f"{nb.stem} imports {module!r}, which neither Colab's runtime "
                                    f"(requirements-colab-runtime.txt) nor its setup cell "
                                    f"(NOTEBOOK_PACKAGES[{nb.stem!r}] in helpers/colab/project.py) installs: "
                                    f"{e.ename}: {e.evalue}")
                else:
                    failures.append(f"{nb.stem} failed in cell {e.exec_count}: {e.ename}: {e.evalue}")
                print(f"  FAILED: {failures[-1]}", flush=True)
                break  # the later notebooks read what this one should have written
            try:
                check_executed(nb, out, runs_root, "replica")
            except AssertionError as e:
                failures.append(f"{nb.stem} ran but its check failed: {e}")
                print(f"  FAILED: {failures[-1]}", flush=True)
                break
            if not args.keep:
                shutil.rmtree(work / nb.stem)
            print(f"  ok in {time.time() - t0:.0f} s", flush=True)
            if args.upto and nb.name.startswith(args.upto):
                break
        if not failures:
            # every helpers module, in a replica holding what all the notebooks install (through the
            # same install code), imported with our own deprecation warnings as errors
            prepare_content()
            venv = make_venv(args.runtime, work / "all")
            py = str(venv / "bin" / "python")
            install_all = ("import sys; sys.path.insert(0, sys.argv[1]); from helpers.colab import project; "
                           "[project.install_packages(nb, sys.argv[1]) for nb in project.NOTEBOOK_PACKAGES]")
            r = subprocess.run([py, "-c", install_all, str(ROOT)], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"colab replica: installing every notebook's packages failed:\n{r.stdout[-3000:]}"
                                 f"{r.stderr[-3000:]}")
            r = subprocess.run([py, str(ROOT / "scripts" / "import_helpers.py"), "--skip-missing"],
                               capture_output=True, text=True)
            print(r.stdout.strip() + r.stderr[-2000:])
            if r.returncode != 0:
                failures.append("a helpers module raised a deprecation warning (or failed to import) in the replica")
    finally:
        if not args.keep and not failures:
            shutil.rmtree(work, ignore_errors=True)
    print(f"colab replica: {time.time() - t_all:.0f} s" + (f", kept {work}" if args.keep or failures else ""))
    for f in failures:
        print(f"COLAB REPLICA FAILED: {f}")
    print("colab replica: " + ("FAILED" if failures else "PASSED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
