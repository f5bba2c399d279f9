"""The architecture of helpers/, enforced: layers, no import cycles, an engine that needs no training code.

The graph counts every import, including those inside functions (they hide cycles). Layers:

- the **core** (the flat modules of helpers/ and helpers/text/) imports nothing above it;
- the **engine**, helpers/infer/, imports only the core and itself: ``pip install optimumllm-audio``
  runs without train/, data/, plan/ or colab/ (checked statically and in a fresh interpreter);
- no import cycle among modules, and none among packages;
- a function-level import of a helpers module is allowed only where it keeps a heavy third-party
  library (torch, transformers, datasets, pandas, ...) out of the importing module's import time —
  never to hide a cycle;
- no module re-exports names it imports from another helpers module (callers import from the
  defining module); a package's ``__init__`` presenting its own API (helpers/text/) is not a re-export.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers.profiles import REPO_ROOT

HELPERS = REPO_ROOT / "helpers"
PACKAGES = ("colab", "data", "train", "infer", "evaluate", "plan", "publish")
ENGINE = "infer"
NOT_IN_ENGINE = ("train", "data", "plan", "colab")
# Entry points kept where published commands name them; they only run a main() of another module.
ENTRY_SHIMS = {"helpers.serve": "python -m optimumllm_audio.serve (named by published model cards)"}
HEAVY = {"torch", "transformers", "snac", "datasets", "pandas", "pyarrow", "scipy", "librosa", "matplotlib",
         "pyloudnorm", "faster_whisper", "resemblyzer", "speechmos", "utmos_pytorch", "deepspeed", "accelerate",
         "bitsandbytes", "fastapi", "uvicorn", "starlette", "huggingface_hub", "ipywidgets", "IPython", "papermill",
         "nbformat", "pesq", "pystoi", "jiwer", "tokenizers", "safetensors", "soundfile", "soxr", "num2words",
         "zhon", "nemo_text_processing", "vllm", "audiotsm", "pyrubberband", "pytsmod", "webrtcvad"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(HELPERS.rglob("*.py")):
        parts = p.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path):
    """``[(target helpers module, at function level?, line)]`` and the third-party roots imported at top level."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found, third_top = [], set()

    def visit(node, in_fn):
        for ch in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(ch, ast.ImportFrom):
                if ch.level:
                    base = here[:len(here) - (ch.level - 1)] + (ch.module.split(".") if ch.module else [])
                    base = ".".join(base)
                else:
                    base = (ch.module or "").replace("optimumllm_audio", "helpers", 1)
                if base.split(".")[0] == "helpers":
                    for a in ch.names:
                        t = f"{base}.{a.name}"
                        found.append((t if t in MODULES else base, fn, ch.lineno))
                elif not fn:
                    third_top.add(base.split(".")[0])
            elif isinstance(ch, ast.Import):
                for a in ch.names:
                    if a.name.split(".")[0] in ("helpers", "optimumllm_audio"):
                        found.append((a.name.replace("optimumllm_audio", "helpers", 1), fn, ch.lineno))
                    elif not fn:
                        third_top.add(a.name.split(".")[0])
            visit(ch, fn)

    visit(tree, False)
    return [(t, fn, ln) for t, fn, ln in found if t in MODULES and t != name], third_top


IMPORTS = {m: _imports(m, p) for m, p in MODULES.items()}


def _package(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "core"


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def _graph(modules_only: bool = True) -> dict[str, set[str]]:
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, (edges, _) in IMPORTS.items():
        for t, _, _ in edges:
            # a package __init__ is a node of its own; importing a submodule runs its package's __init__
            g[m].add(t)
    return g


def test_the_cycle_finder_finds_a_cycle():
    assert _sccs({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _sccs({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_helpers_modules_counting_function_level_imports():
    cycles = _sccs(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_cycle_among_packages():
    g: dict[str, set[str]] = {}
    for m, (edges, _) in IMPORTS.items():
        if m in ENTRY_SHIMS:
            continue
        for t, _, _ in edges:
            a, b = _package(m), _package(t)
            if a != b:
                g.setdefault(a, set()).add(b)
    cycles = _sccs(g)
    assert not cycles, f"package cycles: {cycles} (edges {g})"


def test_the_core_imports_nothing_above_it():
    bad = [(m, t, ln) for m, (edges, _) in IMPORTS.items() if _package(m) == "core" and m not in ENTRY_SHIMS
           for t, _, ln in edges if _package(t) != "core"]
    assert not bad, "core modules importing a package above the core: " + ", ".join(f"{m}:{ln} -> {t}" for m, t, ln in bad)


def test_the_engine_imports_only_the_core_and_itself():
    bad = [(m, t, ln) for m, (edges, _) in IMPORTS.items() if _package(m) == ENGINE
           for t, _, ln in edges if _package(t) not in ("core", ENGINE)]
    assert not bad, "the engine imports " + ", ".join(f"{m}:{ln} -> {t}" for m, t, ln in bad)


def test_function_level_imports_only_keep_heavy_libraries_out_of_import_time():
    def heavy_at_import(mod, seen=None):
        """Heavy third-party roots that importing ``mod`` loads (its top-level imports, transitively)."""
        seen = set() if seen is None else seen
        if mod in seen:
            return set()
        seen.add(mod)
        edges, third = IMPORTS[mod]
        out = third & HEAVY
        for t, fn, _ in edges:
            if not fn:
                out |= heavy_at_import(t, seen)
        parent = mod.rsplit(".", 1)[0]
        if parent in MODULES and parent != mod:
            out |= heavy_at_import(parent, seen)
        return out

    bad = []
    for m, (edges, _) in IMPORTS.items():
        mine = heavy_at_import(m)
        for t, fn, ln in edges:
            if fn and not (heavy_at_import(t) - mine):
                bad.append(f"{MODULES[m].relative_to(REPO_ROOT)}:{ln} imports {t} inside a function, which loads "
                           f"no heavy library that {m} does not already load: import it at the top")
    assert not bad, "\n".join(bad)


def test_no_module_re_exports_names_of_another():
    bad = []
    for m, p in MODULES.items():
        if m in ("helpers", "helpers.text"):
            continue  # the package APIs: helpers.__version__ / OptimumTTS, helpers.text's functions
        tree = ast.parse(p.read_text(encoding="utf-8"))
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("helpers")):
                for a in node.names:
                    bound = a.asname or a.name
                    if bound not in used and f"{m}.{a.name}" not in MODULES:
                        bad.append(f"{p.relative_to(REPO_ROOT)}:{node.lineno} imports {a.name} without using it")
    assert not bad, "re-exports (import from the defining module instead):\n" + "\n".join(bad)


def test_no_helpers_module_branches_on_a_profile_name():
    hits = []
    for p in MODULES.values():
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if any(f'{op} "{n}"' in line or f"{op} '{n}'" in line for op in ("==", "!=") for n in ("tiny", "colab", "pilot")):
                hits.append(f"{p.relative_to(REPO_ROOT)}:{i}: {line.strip()}")
    assert not hits, "behaviour that differs by profile belongs in a Profile field:\n" + "\n".join(hits)


ENGINE_PROBE = r"""
import importlib, pkgutil, sys
import helpers.infer
for m in pkgutil.iter_modules(helpers.infer.__path__, "helpers.infer."):
    importlib.import_module(m.name)
loaded = sorted(n for n in sys.modules if n.split(".")[:2][-1] in {names} and n.startswith("helpers."))
print("LOADED", loaded)
"""


def test_importing_the_engine_loads_no_training_data_plan_or_colab_module():
    code = ENGINE_PROBE.replace("{names}", repr(set(NOT_IN_ENGINE)))
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("LOADED")][-1]
    assert line == "LOADED []", line
