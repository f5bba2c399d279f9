"""scripts/gpu_check.sh --rehearse: every step's own command at tiny sizes on the CPU.

Device time is ~15 minutes a session and not every session gets it; the first GPU run of 2026-12-04
lost 3 of 4 steps to faults a CPU could have shown, and the HTTP step of this check (a model name the
server had learnt to refuse) would have failed the same way. The rehearsal runs the same step list, the
same commands (tiny model, 3 frames, one step, aot_eager appended: argparse keeps a repeated flag's
last value) and the same summary; only what cannot run on a CPU is skipped, and says so."""
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_gpu_check_step_runs_at_tiny_size_on_the_cpu(tmp_path):
    p = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--rehearse", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = (tmp_path / "gpu_check_" f"{_tag(tmp_path)}.md").read_text()
    steps = [ln for ln in summary.splitlines() if ln.startswith("| ") and ln.count("|") == 5 and "step" not in ln]
    assert len(steps) >= 7, summary
    for ln in steps:
        assert ln.split("|")[2].strip() == "ok", ln  # every step ran to exit 0
    rows = [json.loads(ln) for ln in next(tmp_path.glob("*.jsonl")).read_text().splitlines()]
    decode = [(r["mode"], r["batch"]) for r in rows if r.get("mode") == "compiled"]
    assert decode == [("compiled", 1), ("compiled", 2)]  # the engine's compiled generate + stream
    assert [r["clients"] for r in rows if r.get("mode") == "serve_hf"] == [1, 2]  # the HTTP step answered
    assert any(r.get("what") == "snac_encode" for r in rows)
    stage = [(r["optimizer"], r["fused_optimizer"]) for r in rows if r.get("stage") == 2]
    assert ("adamw_bf16_stochastic", False) in stage and ("adamw_bf16_stochastic", True) in stage
    if (REPO / ".venv" / "torchao" / "torchao").is_dir():  # scripts/setup.sh installs it there
        assert any(opt == "adamw_bf16_torchao" for opt, _ in stage)
    log = next(tmp_path.glob("*.log")).read_text()
    assert sum(ln.startswith("rehearsal: skipped") for ln in log.splitlines()) == 2  # Liger (CUDA + Triton) and compiled layers (flex backward)
    for section in ("## Training stage as Colab runs it", "## Decoding through the engine", "## Speech server",
                    "## SNAC encoding"):
        assert section in summary


def _tag(folder: Path) -> str:
    return next(folder.glob("*.md")).name.removeprefix("gpu_check_").removesuffix(".md")
