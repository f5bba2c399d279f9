"""benchmarks/gpu_summary.py: the decoding table says whether the compiled steps ran as CUDA graphs; a stage that
ran out of memory has its row."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_summary  # noqa: E402

ROW = dict(batch=1, mode="compiled", tokens_per_s=450.0, tokens_per_s_per_row=450.0, rtf=0.19, rtf_per_stream=0.19,
           stream_ttfa_s=0.12, warmup_s=80.0, recompiles=0, peak_mem_gb=7.123)


def _decode_line(row):
    md = gpu_summary.summary([row], [])
    return next(ln for ln in md.splitlines() if ln.startswith("| 1 | compiled"))


def test_cuda_graph_cell_reports_recorded_skipped_and_the_first_reason():
    rec = dict(ROW, cudagraphs=dict(wanted=True, recorded=3, skips=0, reasons=[], non_static_inputs=0))
    assert "| 3 recorded, 0 skipped, 0 copied | 7.12 |" in _decode_line(rec)
    skipped = dict(ROW, cudagraphs=dict(wanted=True, recorded=None, skips=1, non_static_inputs=2,
                                        reasons=["skipping cudagraphs due to mutated inputs (1 instances) | x"]))
    line = _decode_line(skipped)
    assert "? recorded, 1 skipped, 2 copied: skipping cudagraphs due to mutated inputs (1 instances) / x" in line
    assert line.count("|") == _decode_line(rec).count("|")  # a "|" in the reason does not add a column


def test_cuda_graph_cell_off_and_absent():
    assert "| off |" in _decode_line(dict(ROW, cudagraphs=dict(wanted=False)))
    assert _decode_line(dict(ROW)).endswith("|  | 7.12 |")


def test_a_stage_that_ran_out_of_memory_has_its_row():
    """bench_train --stage records an OOM under the cap as a row with `error` (no time split): the stage table
    shows it with its configuration and peak, one line, as many columns as a measured row."""
    oom = dict(stage=2, profile="colab", memory_cap_gb=40.0, fused_optimizer=True, compile_layers=True,
               kernels="liger", optimizer="adamw8bit", peak_memory_gib=37.912,
               error="OOM: CUDA out of memory. Tried to allocate 1.95 GiB.\nGPU 0 | has a total capacity")
    md = gpu_summary.summary([oom], [("stage 2 A", 1, 300.0, 480.0)])
    assert "| stage 2 A | FAILED (1) |" in md
    head = next(ln for ln in md.splitlines() if ln.startswith("| stage | accum"))
    line = next(ln for ln in md.splitlines() if ln.startswith("| 2 |"))
    assert "OOM: CUDA out of memory. Tried to allocate 1.95 GiB. GPU 0 / has" in line and "37.91" in line
    assert "adamw8bit (True)" in line and "liger" in line
    assert line.count("|") == head.count("|")
