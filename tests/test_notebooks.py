"""Every notebook runs top to bottom in the tiny profile, in order, sharing one run directory.

Also: notebooks are built from notebooks/src and committed without outputs.
"""
import json
import subprocess
import sys

import pytest

from helpers.chain import run_notebook, series
from helpers.profiles import REPO_ROOT

NOTEBOOKS = series()


def test_notebooks_match_their_sources_and_have_no_outputs():
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "build_notebooks.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), nb.name
        for c in cells:
            if c["cell_type"] == "code":
                assert not c.get("outputs") and not c.get("execution_count"), nb.name


@pytest.fixture(scope="module")
def chain_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    return root / "runs", root / "executed"


def _outputs_text(nb_path) -> str:
    nb = json.loads(nb_path.read_text())
    parts = []
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            parts.append(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", [])))
            for mime, v in o.get("data", {}).items():
                parts.append(mime)
                parts.append(v if isinstance(v, str) else "".join(v) if isinstance(v, list) else "")
    return "\n".join(parts)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_runs_in_chain(nb, chain_dirs):
    runs_root, out_dir = chain_dirs
    out = run_notebook(nb, out_dir, "tiny", runs_root, "chain")
    text = _outputs_text(out)
    assert "Traceback" not in text
    if nb.stem == "01_preprocess":  # the assets rejects split: every reason shown, clips playable
        for needle in ("low_snr", "too_short", "clipped", "silent", "rejected_low_snr", "<audio", "image/png"):
            assert needle in text, f"{nb.name} output lacks {needle!r}"
    if nb.stem == "04_stage2":  # speakers that are no built-in voice train cloning references
        import re

        m = re.search(r"examples: with_reference\s+(\d+)", text)
        assert m and int(m.group(1)) > 0, f"{nb.name}: no example carries a cloning reference"
        assert "Coverage — profile tiny" in text and "Examples and cloning references per stage" in text
    if nb.stem == "08_publish":  # the export records what the run trained
        runs_root_run = runs_root / "chain" / "export" / "optimum_tts.json"
        cov = json.loads(runs_root_run.read_text())["coverage"]
        assert cov["trained_emotions"] and set(cov["voice_minutes"]) and "friendly" not in cov["trained_emotions"]
    if nb.stem == "00_snac_test":
        for needle in ("CB1", "CB2", "CB3", "<|snac1_", "PESQ-WB", "STOI", "<audio", "random-weight SNAC", "fits", "image/png"):
            assert needle in text, f"{nb.name} output lacks {needle!r}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_papermill_reads_every_parameter(nb):
    """Each assignment of the parameters cell is a parameter papermill can see (a comment it
    cannot parse makes it skip the line and warn 'Passed unknown parameter')."""
    import papermill

    cell = next(c for c in json.loads(nb.read_text())["cells"]
                if "parameters" in c.get("metadata", {}).get("tags", []))
    src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    names = [line.split("=", 1)[0].strip() for line in src.splitlines()
             if line and not line.startswith("#") and "=" in line.split("#", 1)[0]]
    assert sorted(papermill.inspect_notebook(str(nb))) == sorted(names)
