"""Build notebooks/NN_name.ipynb from notebooks/src/NN_name.py (percent format).

05_stage3 and 06_stage4 are built from 04_stage2.py (see STAGE_VARIANTS).

Why: notebooks are reviewed and diffed as plain Python, and committed without
outputs. Cell markers in the source:

    # %% [markdown]          a markdown cell; following lines are "# "-prefixed text
    # %% tags=["parameters"] the papermill parameters cell
    # %%                     a code cell
    # %% [setup]             the setup cell: SETUP_CELL_HEAD, then the lines that follow

Usage: python scripts/build_notebooks.py [--check]   (--check fails if any .ipynb is stale)
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
# The first lines of every notebook's setup cell, written once here: a source cell marked
# `# %% [setup]` starts with them (a notebook cannot import helpers before it has fetched them).
SETUP_CELL_HEAD = """\
# Colab: fetch the project and install what Colab lacks (requirements.txt never touches torch, numpy or ipywidgets).
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.isdir(PROJECT_DIR):
    subprocess.run(["git", "clone", "--depth", "1", REPO_URL, PROJECT_DIR], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", f"{PROJECT_DIR}/requirements.txt"], check=True)
sys.path.insert(0, PROJECT_DIR if "google.colab" in sys.modules else os.path.abspath(".."))
from helpers import session"""
MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def expand_setup(text: str) -> str:
    """Replace each `# %% [setup]` marker by a code cell beginning with SETUP_CELL_HEAD."""
    return re.sub(r"^# %% \[setup\][ \t]*$", lambda _: "# %%\n" + SETUP_CELL_HEAD, text, flags=re.M)


def parse(text: str, name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "accelerator": "GPU",
        "colab": {"provenance": [], "gpuType": "A100", "machine_shape": "hm"},
    }
    text = expand_setup(text)
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
    if stale:
        print(f"stale notebooks (run python scripts/build_notebooks.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
