"""Markdown summary of one ``scripts/gpu_check.sh`` run, from the JSON lines its benchmarks wrote.

    python benchmarks/gpu_summary.py RESULTS.jsonl STEPS.tsv > SUMMARY.md

``RESULTS.jsonl``: rows of bench_train (``tokens_per_step``), bench_inference (``mode``) and
bench_data (``what == "snac_encode"``); ``STEPS.tsv``: one line per check step
(``name<TAB>exit code<TAB>seconds<TAB>budget s``). Targets (issue 15) are printed next to the
figures; nothing is asserted here: the tables say what was measured.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _fmt(v, nd=1):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _cell(text: str, n: int) -> str:
    """Free text (an error message) as one table cell: one line, no column separator, at most n characters."""
    return " ".join(str(text).replace("|", "/").split())[:n]


def cudagraph_text(g, all_reasons: bool = False) -> str:
    """A bench_inference row's ``cudagraphs`` report (CompiledDecoding.cudagraph_report) in words: "off"
    where not wanted; else graphs recorded, skipped and inputs copied per replay, with inductor's first skip
    reason (a table cell: :func:`_cell`) or, ``all_reasons``, every one (bench_inference's printout)."""
    if not g:
        return ""
    if not g.get("wanted"):
        return "off"
    rec = "?" if g.get("recorded") is None else g["recorded"]
    text = f"{rec} recorded, {g.get('skips', 0)} skipped, {g.get('non_static_inputs', 0)} copied"
    reasons = g.get("reasons") or []
    if all_reasons:
        return text + (": " + " | ".join(reasons) if reasons else "")
    return text + (": " + _cell(reasons[0], 80) if reasons else "")


def summary(rows: list[dict], steps: list[tuple[str, int, float, float]]) -> str:
    card = next((r.get("card") or r.get("device") for r in rows if r.get("card") or r.get("device")), "unknown")
    date = next((r["date"] for r in rows if r.get("date")), "unknown")
    out = [f"# GPU check — {card}, {date}", "", "| step | exit | seconds | budget s |", "|---|---:|---:|---:|"]
    for name, rc, secs, budget in steps:
        verdict = "ok" if rc == 0 else ("TIMED OUT" if rc in (124, 137) else f"FAILED ({rc})")
        out.append(f"| {name} | {verdict} | {secs:.0f} | {budget:.0f} |")
    train = [r for r in rows if "tokens_per_step" in r]
    if train:
        out += ["", "## Training (Llama-3.2-3B architecture, extended vocabulary, random weights)", "",
                "Targets on an A100 40 GB (or a card capped to 40 GB): ≥ 6,000 tokens/s at 8K, peak ≤ 38 GiB, "
                "planner within 15 %.", "",
                "| tokens/step | cap GB | attention | precision / optimizer | checkpointing | tokens/s | MFU | "
                "peak GiB | planner tokens/s | planner peak GiB | calibrated hfu |",
                "|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in train:
            if "error" in r:
                out.append(f"| {r['tokens_per_step']} | {_fmt(r.get('memory_cap_gb'))} | | | | {_cell(r['error'], 60)} "
                           f"| | | | | |")
                continue
            out.append(f"| {r['tokens_per_step']} | {_fmt(r.get('memory_cap_gb'))} | {r['attention']} | "
                       f"{r['precision']} / {r['optimizer']} | {r['checkpointing']} | {_fmt(r['tokens_per_s'])} | "
                       f"{_fmt(r.get('mfu'), 3)} | {_fmt(r['peak_memory_gib'], 2)} | "
                       f"{_fmt(r['planner_tokens_per_s'])} | {_fmt(r['planner_peak_gib'], 2)} | "
                       f"{_fmt(r.get('calibrated_hfu'), 3)} |")
    stage = [r for r in rows if "stage" in r and ("split_s" in r or "error" in r)]
    if stage:
        out += ["", "## Training stage as Colab runs it (bench_train --stage; 3B architecture, random weights)", "",
                "Target: ≥ 0.40 MFU under a 40 GB cap, peak ≤ 38 GiB, planner tokens/s and peak within 10 %.", "",
                "| stage | accum × tokens | optimizer (fused) | compiled layers | kernels | checkpointed layers | tokens/s | MFU | "
                "HFU | peak GiB | split s (fwd / bwd / opt / data / other) | host syncs/step | planner tokens/s | "
                "planner peak GiB | calibrated hfu |",
                "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
        for r in stage:
            if "error" in r:  # e.g. an OOM under the cap: which configuration did not fit, and its peak
                out.append(f"| {r['stage']} | | {r.get('optimizer', '')} ({r.get('fused_optimizer', '')}) | "
                           f"{r.get('compile_layers', '')} | {r.get('kernels', 'none')} | | {_cell(r['error'], 80)} | | | "
                           f"{_fmt(r.get('peak_memory_gib'), 2)} | | | | | |")
                continue
            sp = r["split_s"]
            split = " / ".join(_fmt(sp.get(k), 3) for k in ("forward", "backward", "optimizer", "data", "other"))
            out.append(f"| {r['stage']} | {r['grad_accum']} × {r['tokens_per_micro_batch']} | {r.get('optimizer', '')} "
                       f"({r['fused_optimizer']}) | {r['compiled_layers']} | {r.get('kernels', 'none')} | "
                       f"{r['checkpointed_layers']} | {_fmt(r['tokens_per_s'])} | "
                       f"{_fmt(r.get('mfu'), 3)} | {_fmt(r.get('hfu'), 3)} | {_fmt(r['peak_memory_gib'], 2)} | {split} | "
                       f"{_fmt(r.get('host_syncs_per_step'))} | {_fmt(r['planner_tokens_per_s'])} | "
                       f"{_fmt(r['planner_peak_gib'], 2)} | {_fmt(r.get('calibrated_hfu'), 3)} |")
    inf = [r for r in rows if "mode" in r and "tokens_per_s" in r]
    if inf:
        out += ["", "## Decoding through the engine (random weights: every run makes exactly its frames)", "",
                "Targets (issue 31): compiled batch 1 >= 60 % of the card's bandwidth bound (H100 >= 310 tokens/s, "
                "H200 >= 440), stream first audio <= 150 ms after warm-up, batch 8 RTF <= 0.1.", "",
                "| batch | mode | tokens/s | per row | RTF | RTF per stream | stream TTFA s | warm-up s | "
                "recompiles | CUDA graphs | peak GiB |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in inf:
            out.append(f"| {r.get('batch', 1)} | {r['mode']} | {_fmt(r['tokens_per_s'])} | "
                       f"{_fmt(r.get('tokens_per_s_per_row'))} | {r['rtf']} | {r.get('rtf_per_stream', '')} | "
                       f"{r['stream_ttfa_s']} | {r.get('warmup_s', '')} | {r.get('recompiles', '')} | "
                       f"{cudagraph_text(r.get('cudagraphs'))} | {_fmt(r.get('peak_mem_gb'), 2)} |")
    serve = [r for r in rows if r.get("mode") == "serve_hf"]
    if serve:
        out += ["", "## Speech server, HF backend over HTTP (streamed PCM)", "",
                "| engine | clients | requests/s | first audio p50 s | p95 s | real-time streams | compiles |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in serve:
            out.append(f"| {r.get('engine', '')} | {r['clients']} | {r['requests_per_s']} | {r['ttfa_p50_s']} | "
                       f"{r['ttfa_p95_s']} | {r['realtime_streams']} | {r.get('compiles_in_serving', '')} |")
    snac = [r for r in rows if r.get("what") == "snac_encode"]
    if snac:
        out += ["", "## SNAC encoding (24 kHz, random weights)", "", "Target: 1,000 h in < 1 h.", "",
                "| batch (padded seconds; 0 = one at a time) | audio-hours per hour | 1,000 h takes (h) |", "|---:|---:|---:|"]
        for r in snac:
            out.append(f"| {r['batch_seconds']:g} | {_fmt(r['audio_hours_per_hour'])} | "
                       f"{1000 / r['audio_hours_per_hour']:.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line.strip()] \
        if Path(argv[0]).is_file() else []
    steps = []
    for line in Path(argv[1]).read_text().splitlines():
        name, rc, secs, budget = line.split("\t")
        steps.append((name, int(rc), float(secs), float(budget)))
    sys.stdout.write(summary(rows, steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
