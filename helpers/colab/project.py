"""Where the project comes from (defined once) and the Colab setup that every notebook runs first.

``REPO_URL`` below is the one definition of the project's git home. A notebook cannot
import ``helpers`` before it has fetched them, so ``scripts/build_notebooks.py`` copies the
code of this file (everything after this docstring) into the first code cell of every
notebook, followed by ``PROJECT_DIR = setup_notebook("<notebook>")``; the README's
Open-in-Colab links are written from ``REPO_URL`` by the same script. Change the URL
here, run ``python scripts/build_notebooks.py``, commit: every notebook follows.

What :func:`setup_notebook` does on Colab, in order:

1. uses a copy of the project on Google Drive (``MyDrive/optimumllm-audio``) when there
   is one — nothing is cloned; otherwise
2. clones ``REPO_URL`` (at ``REPO_REF`` when set) into ``/content/optimumllm-audio``. A
   placeholder or unreachable URL stops with one sentence saying what to set;
3. installs the packages this notebook needs (:data:`NOTEBOOK_PACKAGES`, at the versions
   pinned in ``requirements.txt``), printing them first. torch, numpy and ipywidgets are
   held at the runtime's versions through a pip constraints file, so no runtime restart
   is ever needed.

Clone and install have separate completion markers in ``/content/.optimumllm_audio``
(local to the runtime: a fresh runtime installs again). A marker is written only after
its step succeeded, so an interrupted clone or install is redone on the next run.
Outside Colab nothing is fetched or installed: the repository that holds the notebooks
is used as it is.

Standard library only and no relative imports: this code runs in a notebook cell
before the package exists.
"""
import json
import os
import subprocess
import sys

REPO_URL = "https://github.com/YOUR-GITHUB-USER/optimumllm-audio"  # the project's git home (placeholder: set it)
REPO_REF = None  # a branch, tag or commit to pin; None: the default branch
PLACEHOLDER_OWNER = "YOUR-GITHUB-USER"  # a REPO_URL containing this has not been set yet
DRIVE_COPY = "/content/drive/MyDrive/optimumllm-audio"  # a copy of the project on Drive is used without cloning
CLONE_DIR = "/content/optimumllm-audio"  # where Colab clones REPO_URL
STATE_DIR = "/content/.optimumllm_audio"  # completion markers (local to the runtime)
NEVER_INSTALL = ("torch", "numpy", "ipywidgets")  # Colab's own: moving them breaks the runtime

# What each notebook imports beyond Colab's runtime (pip names; versions come from
# requirements.txt). deepspeed (multi-GPU only) and papermill (runs notebooks from the command
# line) are never installed on Colab. tests/colab/test_project.py derives what each notebook's code
# imports (through helpers) and checks it against this map and requirements-colab-runtime.txt;
# scripts/colab_replica.sh runs the notebooks with only these on Colab's runtime.
_SPEECH = ("snac", "pyloudnorm", "num2words")
# zhon: helpers.plan.costs (the preflight's run plan) imports helpers.evaluate.protocol_specs, whose
# WER normaliser imports zhon (pure Python, a few hundred kB) — 07 runs it, the others reach it.
_PLAN = ("zhon",)
_STAGE = _SPEECH + _PLAN + ("bitsandbytes",)
NOTEBOOK_PACKAGES = {
    "00_snac_test": _SPEECH + _PLAN + ("pesq", "pystoi"),  # _SPEECH: the preflight cell prints the run plan (helpers.plan.costs)
    "01_preprocess": ("pyloudnorm", "num2words") + _PLAN,
    "02_tokenize": _SPEECH,
    "03_vocab_extension": (),
    "04_stage2": _STAGE,
    "05_stage3": _STAGE,
    "06_stage4": _STAGE,
    "07_evaluate": _SPEECH + _PLAN + ("jiwer", "pesq", "pystoi", "faster-whisper", "utmos-pytorch"),
    "08_publish": _SPEECH + ("jiwer",),  # jiwer: OptimumTTS.generate(candidates=N) scores candidates by CER
}
BUILT_FROM_SOURCE = {"pesq": "pesq has no wheel for Python 3.13, so pip compiles it (about a minute)"}


class SetupError(RuntimeError):
    """The project could not be fetched or installed; the message says what to do."""


def is_placeholder(url) -> bool:
    return not url or PLACEHOLDER_OWNER in url


def colab_url(notebook: str, repo_url: str = REPO_URL, ref=REPO_REF) -> str:
    """The Open-in-Colab address of ``notebooks/<notebook>.ipynb`` for a GitHub ``repo_url``."""
    prefix = "https://github.com/"
    if not repo_url.startswith(prefix):
        raise ValueError(f"Open-in-Colab links need a GitHub URL ({prefix}<owner>/<repo>), got {repo_url!r}")
    path = repo_url[len(prefix):].rstrip("/")
    path = path[:-4] if path.endswith(".git") else path
    return f"https://colab.research.google.com/github/{path}/blob/{ref or 'main'}/notebooks/{notebook}.ipynb"


def _in_colab() -> bool:
    return "google.colab" in sys.modules


def _mount_drive() -> None:
    if not os.path.isdir("/content/drive/MyDrive"):
        from google.colab import drive  # only importable on Colab

        drive.mount("/content/drive")


def _is_project(folder) -> bool:
    return os.path.isfile(os.path.join(folder, "helpers", "__init__.py")) and \
        os.path.isfile(os.path.join(folder, "requirements.txt"))


def _read_marker(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_marker(path, data) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _last_line(text) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "no output"


def fetch_project(repo_url=REPO_URL, ref=REPO_REF, *, clone_dir=CLONE_DIR, drive_copy=DRIVE_COPY,
                  state_dir=STATE_DIR, run=subprocess.run, mount=_mount_drive) -> str:
    """The project folder on Colab: the Drive copy when there is one, else a (finished) clone."""
    mount()
    if _is_project(drive_copy):
        print(f"Using the project copy on Drive: {drive_copy} (nothing cloned)")
        return drive_copy
    marker = os.path.join(state_dir, "clone.done")
    if _read_marker(marker) == {"url": repo_url, "ref": ref} and _is_project(clone_dir):
        return clone_dir
    if is_placeholder(repo_url):
        raise SetupError(
            f"REPO_URL is still the placeholder {repo_url!r}: set REPO_URL in helpers/colab/project.py to your "
            f"copy's git URL and rebuild the notebooks (python scripts/build_notebooks.py), or copy the "
            f"project folder to Google Drive as MyDrive/optimumllm-audio.")
    if os.path.exists(clone_dir):  # an interrupted or outdated clone: start again
        run(["rm", "-rf", clone_dir], check=True)
    print(f"Cloning {repo_url}" + (f" at {ref}" if ref else "") + f" into {clone_dir}")
    steps = [["git", "clone", "--depth", "1", repo_url, clone_dir]]
    if ref:
        steps += [["git", "-C", clone_dir, "fetch", "--depth", "1", "origin", ref],
                  ["git", "-C", clone_dir, "checkout", "--detach", "FETCH_HEAD"]]
    for cmd in steps:
        r = run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SetupError(
                f"Could not fetch the project ({' '.join(cmd[:3])} said: {_last_line(r.stderr)}): check REPO_URL"
                f"{' and REPO_REF' if ref else ''} in helpers/colab/project.py ({repo_url}), or copy the project "
                f"folder to Google Drive as MyDrive/optimumllm-audio.")
    if not _is_project(clone_dir):
        raise SetupError(f"{repo_url} was cloned but holds no helpers/ package and requirements.txt: "
                         f"REPO_URL in helpers/colab/project.py must point at this project.")
    _write_marker(marker, {"url": repo_url, "ref": ref})
    return clone_dir


def pinned(project_dir, packages) -> list:
    """``name==version`` for each package, from the project's requirements.txt."""
    pins = {}
    with open(os.path.join(project_dir, "requirements.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name = line.split("==", 1)[0].strip()
                pins[name.lower().replace("_", "-")] = line
    missing = [p for p in packages if p.lower().replace("_", "-") not in pins]
    if missing:
        raise SetupError(f"requirements.txt in {project_dir} pins no version of {', '.join(missing)}; "
                         f"add them as name==version.")
    return [pins[p.lower().replace("_", "-")] for p in packages]


def _held_versions(names=NEVER_INSTALL, version=None) -> list:
    """``name==version`` constraint lines for the installed ``names`` (``version``: the lookup, for tests).

    The installed version is written whole, local part included (Colab's torch reads ``2.11.0+cu128``):
    ``==2.11.0+cu128`` is met only by the build that is installed, so pip never replaces it, while a
    package that asks for ``torch==2.11.0`` or ``torch>=2`` still accepts it (PEP 440 ignores the local
    part of a candidate when the specifier has none). A bare ``==2.11.0`` would let pip swap in PyPI's
    own 2.11.0 build, another CUDA, whenever a package made it reinstall torch.
    """
    from importlib import metadata

    version = version or metadata.version
    held = []
    for name in names:
        try:
            held.append(f"{name}=={version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return held


def install_packages(notebook, project_dir, *, state_dir=STATE_DIR, run=subprocess.run, held=None) -> list:
    """Install this notebook's packages unless this runtime already did; returns the pins."""
    if notebook not in NOTEBOOK_PACKAGES:
        raise SetupError(f"unknown notebook {notebook!r}; helpers/colab/project.py knows {sorted(NOTEBOOK_PACKAGES)}")
    pins = pinned(project_dir, NOTEBOOK_PACKAGES[notebook])
    marker = os.path.join(state_dir, f"install-{notebook}.done")
    if not pins or _read_marker(marker) == pins:
        print(f"{notebook}: " + (f"already installed: {', '.join(pins)}" if pins else "needs nothing beyond Colab's runtime"))
        return pins
    print(f"{notebook} installs: {', '.join(pins)}")
    for p in pins:
        note = BUILT_FROM_SOURCE.get(p.split("==")[0])
        if note:
            print(f"  note: {note}")
    os.makedirs(state_dir, exist_ok=True)
    constraints = os.path.join(state_dir, "constraints.txt")
    held = _held_versions() if held is None else held
    with open(constraints, "w", encoding="utf-8") as f:
        f.write("\n".join(held) + "\n")
    print(f"  held at the runtime's versions: {', '.join(held) or 'none found'}")
    cmd = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", "-c", constraints, *pins]
    r = run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("\n".join(((r.stdout or "") + (r.stderr or "")).splitlines()[-25:]))
        raise SetupError(f"pip could not install {', '.join(pins)} (its last lines are above): rerun this "
                         f"cell to retry; nothing was marked as installed.")
    done = [l for l in (r.stdout or "").splitlines() if l.startswith("Successfully installed")]
    print("  " + (done[-1] if done else "all already present"))
    _write_marker(marker, pins)
    return pins


def setup_notebook(notebook, *, repo_url=REPO_URL, ref=REPO_REF, in_colab=None, local_dir=None, add_to_path=True,
                   **colab) -> str:
    """Fetch and install what ``notebook`` needs on Colab; returns the project folder (put on sys.path).

    Outside Colab: the repository above ``notebooks/`` (``local_dir``), nothing installed.
    ``colab``: keyword arguments of :func:`fetch_project` (clone_dir, drive_copy, state_dir, run,
    mount) and of :func:`install_packages` (state_dir, run, held) — the tests fake Colab with them.
    """
    in_colab = _in_colab() if in_colab is None else in_colab
    if in_colab:
        fetch_kw = {k: v for k, v in colab.items() if k in ("clone_dir", "drive_copy", "state_dir", "run", "mount")}
        install_kw = {k: v for k, v in colab.items() if k in ("state_dir", "run", "held")}
        project_dir = fetch_project(repo_url, ref, **fetch_kw)
        install_packages(notebook, project_dir, **install_kw)
    else:
        project_dir = os.path.abspath(local_dir or "..")
        if not os.path.isfile(os.path.join(project_dir, "helpers", "__init__.py")):
            raise SetupError(f"no helpers/ package in {project_dir}: run the notebooks from the repository's "
                             f"notebooks/ folder, or on Colab.")
    if add_to_path and project_dir not in sys.path:
        sys.path.insert(0, project_dir)
    return project_dir
