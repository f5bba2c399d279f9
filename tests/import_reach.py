"""Which third-party modules a piece of code reaches, and which distributions provide them (shared by the derived
install checks: tests/colab/test_project.py for the notebooks, tests/plan/test_gpu_image_imports.py for
scripts/gpu_check.sh's device calls).

Reach is static and transitive: every import in the code (function-level ones included) and, through the
helpers modules it imports, theirs; plain modules beside an entry script (``search`` folders, as ``python
script.py`` or pytest's rootdir put them on sys.path) are followed the same way."""
import ast
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _module_file(mod: str) -> Path | None:
    """The file of helpers module ``mod`` (dotted, without the ``helpers.`` prefix; "" = the package)."""
    base = REPO_ROOT / "helpers" / Path(*mod.split(".")) if mod else REPO_ROOT / "helpers"
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _walk(tree: ast.AST, eager: bool):
    """ast.walk, or with ``eager`` only the nodes that run when the module is imported (not function bodies)."""
    if not eager:
        yield from ast.walk(tree)
        return
    todo = [tree]
    while todo:
        n = todo.pop()
        yield n
        if isinstance(n, ast.If) and ast.unparse(n.test).split(".")[-1] == "TYPE_CHECKING":
            todo += n.orelse  # typing.TYPE_CHECKING is False when the code runs
        elif not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo += ast.iter_child_nodes(n)


def _imports(tree: ast.AST, here: list[str], eager: bool = False):
    """``(helpers modules, other top-level module names)`` imported anywhere in ``tree`` (functions too; with
    ``eager``, only at import time); ``here``: the package the code is in, under helpers (for relative imports)."""
    local, ext = set(), set()
    for n in _walk(tree, eager):
        if isinstance(n, ast.ImportFrom):
            if n.level or (n.module or "").split(".")[0] == "helpers":
                if n.level:
                    parts = here[:len(here) - (n.level - 1)] + ((n.module or "").split(".") if n.module else [])
                else:
                    parts = (n.module or "").split(".")[1:]
                base = ".".join(parts)
                for a in n.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    local.add(sub if _module_file(sub) else base)
            elif n.module:
                ext.add(n.module.split(".")[0])
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name.split(".")[0] == "helpers":
                    local.add(a.name.removeprefix("helpers").lstrip("."))
                else:
                    ext.add(a.name.split(".")[0])
        elif isinstance(n, ast.Call) and getattr(n.func, "id", None) in ("_import", "import_module") and n.args:
            name = getattr(n.args[0], "value", None)  # helpers.evaluate.judges._import("faster_whisper", ...)
            if isinstance(name, str) and not name.startswith("."):
                ext.add(name.split(".")[0])
                continue
            lazy = _relative_table(tree, n.args[0])  # helpers/__init__.py: import_module(f".{_LAZY[name]}", ...)
            assert isinstance(name, str) or lazy is not None, \
                f"a dynamic import of a computed name cannot be checked: {ast.unparse(n)}"
            for rel in [name] if isinstance(name, str) else lazy:
                sub = ".".join(here + rel.lstrip(".").split("."))
                local.add(sub if _module_file(sub) else ".".join(here))
    return local, ext


def _relative_table(tree: ast.AST, arg: ast.AST) -> list[str] | None:
    """For ``f".{TABLE[key]}"`` with TABLE a dict literal assigned at the top of ``tree``: its values (relative
    module names, each one the import may name); None for any other computed name."""
    if not (isinstance(arg, ast.JoinedStr) and len(arg.values) == 2 and getattr(arg.values[0], "value", None) == "."
            and isinstance(arg.values[1], ast.FormattedValue) and isinstance(arg.values[1].value, ast.Subscript)
            and isinstance(arg.values[1].value.value, ast.Name)):
        return None
    table = arg.values[1].value.value.id
    for st in getattr(tree, "body", []):
        if (isinstance(st, ast.Assign) and [getattr(t, "id", None) for t in st.targets] == [table]
                and isinstance(st.value, ast.Dict) and all(isinstance(v, ast.Constant) for v in st.value.values)):
            return ["." + v.value for v in st.value.values]
    return None


def _file_imports(path: Path, eager: bool = False):
    rel = path.relative_to(REPO_ROOT / "helpers").with_suffix("")
    return _imports(ast.parse(path.read_text(encoding="utf-8")), list(rel.parts[:-1]), eager)


def reach(code: str, origin: str, search=(), eager: bool = False) -> dict[str, str]:
    """Every non-stdlib top-level module ``code`` (labelled ``origin``) reaches, mapped to the first place that
    imports it (a helpers file, a file found in ``search``, or ``origin``). A top-level import that names a
    ``.py`` file in one of the ``search`` folders is that file's code, followed like a helpers module. With
    ``eager``: only the modules imported when ``code`` runs, before any of its functions is called (a chain of
    import-time imports, the package __init__.py files they run included; a function-level import, which runs
    only if that function is called, is left out)."""
    search = [Path(d) for d in search]

    def beside(name: str) -> Path | None:
        return next((d / f"{name}.py" for d in search if (d / f"{name}.py").is_file()), None)

    local, own = _imports(ast.parse(code), [], eager)
    todo = [(m, origin) for m in local]
    reached = {}
    for m in own:
        if beside(m):
            todo.append((beside(m), origin))
        else:
            reached[m] = origin
    seen = set()
    while todo:
        m, by = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        if isinstance(m, Path):  # a plain module beside an entry script
            p = m
            local, ext = _imports(ast.parse(p.read_text(encoding="utf-8")), [], eager)
        else:
            p = _module_file(m)
            assert p is not None, f"{origin} reaches helpers.{m} (through {by}), which is no module of helpers/"
            local, ext = _file_imports(p, eager)
        for x in ext:
            if beside(x):
                todo.append((beside(x), str(p.relative_to(REPO_ROOT))))
            else:
                reached.setdefault(x, str(p.relative_to(REPO_ROOT)))
        todo += [(x, m) for x in local]
        if eager and isinstance(m, str) and m:  # importing helpers.a.b runs helpers/__init__.py, helpers/a/__init__.py
            todo += [(".".join(m.split(".")[:i]), m) for i in range(m.count(".") + 1)]
    return {m: where for m, where in reached.items()
            if m not in sys.stdlib_module_names and m not in ("helpers", "__future__")}


def _canon(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(_canon(re.split(r"[=<>!~;\[ ]", line, maxsplit=1)[0]))
    return names


def with_dependencies(dists, stop=()) -> set[str]:
    """``dists`` and everything they require (installed metadata, extras not taken), canonical names; a
    distribution in ``stop`` (one provided as installed, with its own dependencies) is kept but not expanded."""
    from importlib import metadata

    from packaging.requirements import Requirement

    out, todo = set(), [_canon(d) for d in dists]
    while todo:
        d = todo.pop()
        if d in out:
            continue
        out.add(d)
        if d in stop:
            continue
        try:
            reqs = metadata.requires(d) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here (a CUDA-only wheel): its own dependencies are not needed by our imports
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(_canon(r.name))
    return out
