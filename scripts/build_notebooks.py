"""Build notebooks/NN_name.ipynb from notebooks/src/NN_name.py (percent format).

05_stage3 and 06_stage4 are built from 04_stage2.py (see STAGE_VARIANTS).

Why: notebooks are reviewed and diffed as plain Python, and committed without
outputs. Cell markers in the source:

    # %% [markdown]          a markdown cell; following lines are "# "-prefixed text
    # %% tags=["parameters"] the papermill parameters cell
    # %%                     a code cell
    # %% [setup]             the setup cell (helpers/colab/project.py + setup_notebook(name)); the lines that
                             follow form the next code cell

The README's Open-in-Colab table (between the colab-links markers) is written from
helpers/colab/project.py's REPO_URL too.

Usage: python scripts/build_notebooks.py [--check]   (--check fails if any .ipynb is stale)
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
# The setup cell of every notebook: the code of helpers/colab/project.py (where REPO_URL is defined, once),
# then the call for this notebook. A notebook cannot import helpers before it has fetched them, so the
# code is copied in here; a source cell marked `# %% [setup]` starts with it.
PROJECT_FILE = ROOT / "helpers" / "colab" / "project.py"
SETUP_TITLE = "# @title Setup: fetch the project and install what this notebook needs (code: helpers/colab/project.py)"
# Runtimes: 01 streams and filters audio on CPU cores (no GPU work), the rest need an A100.
CPU_NOTEBOOKS = {"01_preprocess"}
README = ROOT / "README.md"
LINKS_BEGIN, LINKS_END = "<!-- colab-links:begin (scripts/build_notebooks.py) -->", "<!-- colab-links:end -->"


def project_code() -> str:
    """helpers/colab/project.py without its module docstring."""
    text = PROJECT_FILE.read_text(encoding="utf-8")
    doc = ast.parse(text).body[0]
    if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)):
        raise ValueError(f"{PROJECT_FILE} must start with a docstring")
    return "\n".join(text.splitlines()[doc.end_lineno:]).strip("\n")


def setup_cell(notebook: str) -> str:
    return (f"{SETUP_TITLE}\n# Colab: fetch the project and install what this notebook needs; elsewhere use this "
            f"repository.\n{project_code()}\n\n\nPROJECT_DIR = setup_notebook({notebook!r})\n"
            f"from helpers.colab import session")


def project_module():
    spec = importlib.util.spec_from_file_location("_project", PROJECT_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def readme_links(names: list[str]) -> str:
    """The README's Open-in-Colab table, written from REPO_URL."""
    p = project_module()
    rows = [LINKS_BEGIN, "| notebook | open |", "|---|---|"]
    for name in names:
        rows.append(f"| `{name}` | [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                    f"({p.colab_url(name, p.REPO_URL, p.REPO_REF)}) |")
    return "\n".join(rows + [LINKS_END])


def with_links(readme: str, names: list[str]) -> str:
    if readme.count(LINKS_BEGIN) != 1 or readme.count(LINKS_END) != 1:
        raise ValueError(f"README.md must hold the markers {LINKS_BEGIN!r} and {LINKS_END!r} once each")
    head, rest = readme.split(LINKS_BEGIN)
    return head + readme_links(names) + rest.split(LINKS_END, 1)[1]


MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def expand_setup(text: str, notebook: str) -> str:
    """Replace each `# %% [setup]` marker by the :func:`setup_cell` cell; the lines after it form the next cell."""
    return re.sub(r"^# %% \[setup\][ \t]*$", lambda _: "# %%\n" + setup_cell(notebook) + "\n# %%", text, flags=re.M)


def parse(text: str, name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    notebook = name.rsplit(".", 1)[0]
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    if notebook in CPU_NOTEBOOKS:  # CPU High-RAM runtime
        nb.metadata["colab"] = {"provenance": [], "machine_shape": "hm"}
    else:  # A100 GPU, High-RAM
        nb.metadata["accelerator"] = "GPU"
        nb.metadata["colab"] = {"provenance": [], "gpuType": "A100", "machine_shape": "hm"}
    text = expand_setup(text, notebook)
    cells: list[tuple[str, list[str], list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = MARKER.match(line)
        if m:
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            cells.append((kind, tags, []))
        elif line.startswith("# %%"):
            raise ValueError(f"{name}:{lineno}: malformed cell marker {line!r}")
        elif not cells:
            if line.strip():
                raise ValueError(f"{name}:{lineno}: text before the first cell marker")
        else:
            cells[-1][2].append(line)
    for kind, tags, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            bad = [l for l in lines if l and not l.startswith("#")]
            if bad:
                raise ValueError(f"{name}: markdown line without '# ' prefix: {bad[0]!r}")
            body = "\n".join(l[2:] if l.startswith("# ") else l[1:] for l in lines)
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
            if tags:
                cell.metadata["tags"] = tags
            if lines and lines[0] == SETUP_TITLE:
                cell.metadata["cellView"] = "form"  # Colab shows the title; the code unfolds on click
        cell.pop("id", None)
        nb.cells.append(cell)
    if not any("parameters" in c.metadata.get("tags", []) for c in nb.cells):
        raise ValueError(f"{name}: no cell tagged parameters")
    return nb


# Notebooks 05 and 06 are notebook 04 with another stage: one source, three notebooks (the three
# training stages run ONE recipe and differ only in the `stage` parameter and their intro).
STAGE_SOURCE = "04_stage2"
STAGE_VARIANTS = {
    "05_stage3": (3, "# # 05 · Stage 3 — High-quality fine-tuning",
                  "# The model is refined on the curated phase-2 mix (seed §9: LibriTTS-R clean, VCTK,\n"
                  "# Expresso, ~184 h; seed §11: LR 1e-5, 24–40 h on an A100). VCTK brings the British voices."),
    "06_stage4": (4, "# # 06 · Stage 4 — Speaker & emotion alignment",
                  "# Speaker prompts and emotion tags are aligned on the phase-3 mix (seed §9: Expresso,\n"
                  "# RAVDESS, EmoV-DB, ~54 h; seed §11: LR 5e-6, 12–20 h on an A100)."),
}


def stage_variant(text: str, stage: int, title: str, intro: str) -> str:
    """Notebook 04's source with another stage number, title and two-line introduction."""
    lines = text.splitlines()
    if not (lines[1].startswith("# # 04") and lines[3].startswith("# The model") and lines[5] == "#"):
        raise ValueError(f"{STAGE_SOURCE}.py no longer starts with the title and a two-line intro")
    lines[1], lines[3:5] = title, intro.splitlines()
    out = "\n".join(lines) + "\n"
    marker = "stage = 2  #"
    if out.count(marker) != 1:
        raise ValueError(f"{STAGE_SOURCE}.py must set the parameter `stage = 2` exactly once")
    return out.replace(marker, f"stage = {stage}  #")


def sources() -> list[tuple[str, str]]:
    """(notebook name, percent-format source) for every notebook, 05/06 derived from 04."""
    out = [(src.stem, src.read_text(encoding="utf-8")) for src in sorted(SRC.glob("[0-9][0-9]_*.py"))]
    base = dict(out)[STAGE_SOURCE]
    out += [(name, stage_variant(base, *v)) for name, v in STAGE_VARIANTS.items()]
    return sorted(out)


def render(nb: nbformat.NotebookNode) -> str:
    nb.nbformat, nb.nbformat_minor = 4, 4
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a notebook differs from its source")
    args = ap.parse_args(argv)
    stale = []
    for name, source in sources():
        target = OUT / (name + ".ipynb")
        text = render(parse(source, name + ".py"))
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(ROOT)}")
    readme = README.read_text(encoding="utf-8")
    linked = with_links(readme, [name for name, _ in sources()])
    if args.check:
        if linked != readme:
            stale.append(README.name + " (Open-in-Colab links)")
    elif linked != readme:
        README.write_text(linked, encoding="utf-8")
        print(f"wrote {README.relative_to(ROOT)} (Open-in-Colab links)")
    if stale:
        print(f"stale notebooks (run python scripts/build_notebooks.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
