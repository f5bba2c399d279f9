"""Every notebook runs top to bottom in the tiny profile, in order, sharing one run directory.

Also: notebooks are built from notebooks/src and committed without outputs.
"""
import json
import subprocess
import sys

import pytest

from helpers.colab.chain import run_notebook, series
from helpers.profiles import REPO_ROOT, run_paths

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
    check_executed(nb, out, runs_root, "chain")


def check_executed(nb, out, runs_root, run_name) -> None:
    """The checks on one executed notebook of the tiny chain (also run by scripts/colab_replica.py)."""
    text = _outputs_text(out)
    assert "Traceback" not in text
    if nb.stem == "01_preprocess":  # the assets rejects split: every reason shown, clips playable
        for needle in ("low_snr", "too_short", "clipped", "silent", "rejected_low_snr", "<audio", "image/png"):
            assert needle in text, f"{nb.name} output lacks {needle!r}"
    _check_results(nb.stem, run_paths(run_name, "tiny", runs_root), text)
    if nb.stem == "04_stage2":  # speakers that are no built-in voice train cloning references
        import re

        m = re.search(r"examples: with_reference\s+(\d+)", text)
        assert m and int(m.group(1)) > 0, f"{nb.name}: no example carries a cloning reference"
        assert "Coverage — profile tiny" in text and "Examples and cloning references per stage" in text
    if nb.stem == "08_publish":  # the export records what the run trained
        runs_root_run = runs_root / run_name / "export" / "optimum_tts.json"
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


def _check_results(stem: str, paths, text: str) -> None:
    """What each notebook must have left in the run directory (not only: no traceback)."""
    import pandas as pd

    if stem == "00_snac_test":
        assert "HF token" in text and "dataset assets" in text and "FAILED" not in text  # the preflight ran
    elif stem == "01_preprocess":
        from helpers.data import preprocess as pp
        from helpers.data import clips
        from helpers.data.corpus import load_local_corpus

        manifest = pp.read_manifest(paths.preprocess)
        report = pp.read_report(paths.preprocess)
        inputs = sum(len(load_local_corpus(split=s)) for s in ("train", "rejects"))
        assert report["kept"] + report["rejected"] + report["duplicates"] == report["rows"] == len(manifest)
        assert report["rows"] == inputs, (report["rows"], inputs)  # every input clip kept or rejected, none lost
        assert report["kept"] > 0 and report["rejected"] >= 4
        assert (manifest.loc[manifest["status"] == clips.REJECTED, "reason"].astype(str).str.len() > 0).all()
    elif stem == "02_tokenize":
        from helpers.data import preprocess as pp, tokenize_audio as ta
        from helpers.data import clips
        from helpers.data.shards import iter_utterances

        selected = set(ta.selected_rows(pp.read_manifest(paths.preprocess))["utterance_id"])
        encoded = [u.utterance_id for u in iter_utterances(paths.tokens)]
        assert len(encoded) == len(set(encoded)) and set(encoded) == selected and selected
    elif stem == "03_vocab_extension":
        from helpers import models

        assert (paths.stage(1) / models.COMPLETE_MARKER).is_file()
    elif stem in ("04_stage2", "05_stage3", "06_stage4"):
        from helpers import models
        from helpers.train.recipe import METRICS_FILE

        stage = int(stem[-1])
        log = pd.read_csv(paths.stage(stage) / METRICS_FILE)
        assert len(log) >= 2, log
        first, last = float(log["loss"].iloc[0]), float(log["loss"].iloc[-1])
        assert last < first, f"stage {stage}: loss {first} -> {last} did not go down"
        assert (paths.final_model(stage) / models.COMPLETE_MARKER).is_file()
        # a finished stage keeps its final model and no checkpoint (helpers.train.checkpoints retention policy)
        left = [p for d in ("checkpoints", "hf_trainer") for p in (paths.stage(stage) / d).glob("*")]
        assert not left, f"stage {stage} left checkpoints behind: {left}"
    elif stem == "07_evaluate":
        from helpers.evaluate.report import load_testset

        report = json.loads((paths.eval / "report.json").read_text())
        items = pd.read_csv(paths.eval / "items.csv")
        assert report["testset"]["n_items"] == len(load_testset("tiny").items) == len(items) > 0
        assert set(report["summary"]) and set(report["pass"])
        for needle in ("measured on", "ceiling", "Seed-TTS-eval", "LibriSpeech-PC", "best of",
                       "human recordings (same judges)", "of the human figure", "seed target"):
            assert needle in text, f"07 output lacks {needle!r}"
        targets = pd.read_csv(paths.eval / "targets.csv", index_col=0)
        assert "human recordings (same judges)" in targets.columns and "pass rule" in targets.columns
        assert targets.loc["MOS", "human recordings (same judges)"] not in ("N/A", "—")  # the judges ran on human speech
        assert report["human"]["measured_on"] == "human recordings (same judges)"
    elif stem == "08_publish":
        from helpers.publish.export import export_listing

        files = [f.path for f in export_listing(paths.export)]
        assert "DRY RUN: nothing was uploaded" in text
        assert "your-username/Llama-3.2-3B-OptimumLLM-Audio" in text  # the default name, no fixed organisation
        for f in files:
            assert f in text, f"the dry run does not list {f}"
        assert "README.md" in files and any(f.endswith(".safetensors") for f in files)
