#!/usr/bin/env bash
# One GPU check: the CUDA tests and the speed/memory benchmarks, in <= 9 minutes on one H100/H200.
#
#   bash scripts/gpu_check.sh              # on a CUDA machine: run everything, write results
#   bash scripts/gpu_check.sh --dry-run    # anywhere: list what would run, sizes and time budget
#   bash scripts/gpu_check.sh --list-calls # anywhere: tab-separated, for tests/plan/test_gpu_image_imports.py:
#                                          # "call REGEX FOLDER", "step REGEX NAME COMMAND" (each step of that
#                                          # call), "after COMMAND" (run after every call's steps), "install
#                                          # MODULE DIST" (what is installed from the folder when not importable)
#   bash scripts/gpu_check.sh --rehearse --out DIR  # on a CPU: every step's own command at tiny sizes (tiny
#                                          # model, 3 frames, 1 step, aot_eager), so a broken step is found
#                                          # here and not in scarce device time (tests/plan/test_gpu_check_rehearsal.py)
#   bash scripts/gpu_check.sh --out DIR    # results into DIR (default benchmarks/results)
#   bash scripts/gpu_check.sh --only REGEX # only the steps whose name matches REGEX (bash =~; also
#                                          # GPU_CHECK_ONLY=REGEX): the whole check takes four device calls,
#                                          # --only 'gpu tests|bench_train 3B|SNAC', --only 'inference|HTTP',
#                                          # --only 'stage 2 A', --only 'stage 2 B' (each within one 9-minute
#                                          # call; --dry-run prints each call's budget)
#
# No network: random-weight models only (Llama-3.2-3B architecture with the extended
# vocabulary, tiny LLaMA, SNAC 24 kHz architecture). Wheels the GPU machine's image lacks
# are installed from a local folder (default .whl/, ignored by git; GPU_WHEELS=DIR to change), one per device
# call, since the device tool carries at most 64 MiB with the working tree (~14 MiB):
#
#   bash scripts/gpu_wheels.sh               # here, with PyPI access: .whl (~9 MB)  -> --only 'inference|HTTP'
#   bash scripts/gpu_wheels.sh --tests       #                         .whl-tests (~49 MB) -> --only 'gpu tests|...'
#   bash scripts/gpu_wheels.sh --train-only  #                         .whl-train (~4 MB)  -> --only 'stage 2 ...'
#
# and carry that folder (device tool: carry [".whl"]; GPU_WHEELS=<folder> on the GPU machine; --dry-run prints
# each call's folder). Needed beyond the machine's torch/transformers/pandas/pyarrow/pytest: snac (SNAC codec),
# soundfile + soxr (audio I/O), jiwer + rapidfuzz (WER), num2words (text), fastapi + uvicorn + pydantic + audiotsm
# (the HTTP step's speech server), bitsandbytes (8-bit AdamW test), torchao (its AdamW with bf16 stochastic
# rounding) and liger-kernel (fused RMSNorm / SwiGLU / RoPE / linear CE; stage 2 and its GPU test). A module whose
# wheel is not in the carried folder reports "did not install"; what needs it skips or fails with a reason. Not
# carried at all: faster-whisper/ctranslate2 and resemblyzer — the judges test then skips with that reason.
#
# Output: $OUT_DIR/gpu_check_<date>_<card>.jsonl (all benchmark rows), .md (summary table) and
# .log (every step's output). On a machine without a CUDA GPU it says so and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
REHEARSE=0
OUT_DIR=benchmarks/results
ONLY="${GPU_CHECK_ONLY:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --list-calls) DRY=2 ;;
    --rehearse) REHEARSE=1 ;;
    --out) OUT_DIR="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (expected --dry-run, --list-calls, --rehearse, --out DIR, --only REGEX)" >&2; exit 2 ;;
  esac
  shift
done

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
WHEELS="${GPU_WHEELS:-.whl}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export CUBLAS_WORKSPACE_CONFIG=:4096:8   # deterministic cuBLAS for the exact-resume test
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# name | budget (s) | command. The budgets are timeouts, not estimates, and sum to more than one 9-minute call
# (the inference steps compile the 3B decode step: minutes on first use): split it with --only (CALLS below).
# On 2026-12-04 (H200) the benchmark's compiled loop got through loading the 3B model and compiling and timing
# batch 1, not batch 8, in 120 s; the engine's steps compile two buckets each (batch 1 and 8, CUDA graphs
# recorded), hence 240 / 250 s (the HTTP step's second process may find inductor's on-disk cache warm).
# A session's device time (~15 min with the machine's start) holds one or two calls; PRIORITY is the order of
# value: the open targets first (issue 31's decoding, issue 32's stage 2), then the rest.
STEPS=(
  "gpu tests (pytest -m gpu)|230|$PY -m pytest -m gpu -q -p no:cacheprovider -o addopts= -rs tests/test_gpu.py"
  "bench_train 3B, 4K + 8K tokens/micro-batch, 40 GB cap|150|$PY benchmarks/bench_train.py --model llama-3.2-3b --tokens-per-step 4096 8192 --steps 4 --warmup 2 --memory-cap-gb 40 --record @JSONL@"
  "bench_inference 3B, the engine's generate + stream, batch 1 + 8, compiled|240|$PY benchmarks/bench_inference.py --model llama-3.2-3b --batch 1 8 --modes compiled --frames 48 --repeats 2 --out @JSONL@"
  "HF speech server over HTTP, 3B compiled engine, 1/8/32 clients|250|$PY benchmarks/bench_inference.py --model llama-3.2-3b --batch --modes compiled --frames 48 --serve-clients 1 8 32 --serve-requests 1 --out @JSONL@"
  "SNAC encoding, audio-hours per hour|50|$PY benchmarks/bench_data.py --snac-only --clips 32 --seconds 10 --batch-seconds 60 300 600 --record @JSONL@"
)
# Stage 2 as Colab runs it (the colab profile's auto-config for the A100-40GB: 12 x 8K tokens, selective
# checkpointing sized with a 5 % margin; under a 40 GB cap). A: today's path (eager optimizer, eager layers) beside
# the new one (fused optimizer + compiled layers). B: the fused BF16AdamW beside torchao's AdamW (bf16 stochastic
# rounding) and beside Liger-Kernel's fused layers, so the faster of each pair is chosen by measurement (record a
# faster compile / liger row in helpers.train.plan_gpus.SPEEDUPS). Each row records its calibrated hfu. A and B
# each fill one device call: the baseline of each comparison runs in the same call (same card).
STAGE2="$PY benchmarks/bench_train.py --stage 2 --profile colab --steps 3 --warmup 2 --memory-cap-gb 40 --record @JSONL@"
STEPS+=(
  "stage 2 A: colab config, today vs fused optimizer + compiled layers, 40 GB cap|420|$STAGE2 --fused-optimizer off; $STAGE2 --fused-optimizer on --compile-layers"
  "stage 2 B: colab config, fused BF16AdamW vs torchao AdamW vs Liger kernels, 40 GB cap|480|$STAGE2 --fused-optimizer on; $STAGE2 --optimizer adamw_bf16_torchao; $STAGE2 --fused-optimizer on --kernels liger"
)
# The device calls the whole check takes (each matched as --only would; --dry-run prints their budgets).
CALLS=("gpu tests|bench_train 3B|SNAC" "inference|HTTP" "stage 2 A" "stage 2 B")
CALL_WHEELS=(.whl-tests .whl .whl-train .whl-train)  # the wheel folder each call carries (scripts/gpu_wheels.sh)
PRIORITY=("inference|HTTP" "stage 2 A" "gpu tests|bench_train 3B|SNAC" "stage 2 B")
CALL_LIMIT=540
SUMMARY="$PY benchmarks/gpu_summary.py"  # after every call's steps: the summary table
# module:distribution installed from the call's wheel folder when the module does not import (pip resolves each
# one's dependencies in the folder); tests/plan/test_gpu_image_imports.py checks every step's imports against it
INSTALL=(snac:snac bitsandbytes:bitsandbytes soundfile:soundfile soxr:soxr jiwer:jiwer num2words:num2words
         torchao:torchao liger_kernel:liger-kernel fastapi:fastapi uvicorn:uvicorn audiotsm:audiotsm)
WHEEL_S=20
if [ -n "$ONLY" ]; then
  kept=()
  for s in "${STEPS[@]}"; do [[ "${s%%|*}" =~ $ONLY ]] && kept+=("$s"); done
  [ ${#kept[@]} -gt 0 ] || { echo "gpu_check.sh: no step name matches '$ONLY'" >&2; exit 2; }
  STEPS=("${kept[@]}")
fi

if [ "$DRY" = 2 ]; then  # --list-calls
  for ci in "${!CALLS[@]}"; do
    printf 'call\t%s\t%s\n' "${CALLS[$ci]}" "${CALL_WHEELS[$ci]}"
    for s in "${STEPS[@]}"; do
      IFS='|' read -r name _ cmd <<<"$s"
      [[ "$name" =~ ${CALLS[$ci]} ]] && printf 'step\t%s\t%s\t%s\n' "${CALLS[$ci]}" "$name" "$cmd"
    done
  done
  printf 'after\t%s\n' "$SUMMARY"
  for mod in "${INSTALL[@]}"; do printf 'install\t%s\t%s\n' "${mod%%:*}" "${mod##*:}"; done
  exit 0
fi
if [ "$DRY" = 1 ]; then
  echo "gpu_check.sh --dry-run: would run, each under its own timeout (python: $PY, wheels: $WHEELS):"
  total=0
  for s in "${STEPS[@]}"; do
    IFS='|' read -r name budget cmd <<<"$s"
    total=$((total + budget))
    printf '  [%4ss] %s\n         %s\n' "$budget" "$name" "${cmd//@JSONL@/$OUT_DIR/gpu_check_<date>_<card>.jsonl}"
  done
  echo "  sizes: Llama-3.2-3B architecture (3.25 B params, vocab 140,608), bf16 planner configuration for"
  echo "         A100-40GB, packed rows of 1-3K-token documents; decode 48 frames (336 tokens/row);"
  echo "         SNAC on 32 x 10 s clips; tiny 2-layer LLaMA for the tests. All random weights, no network."
  echo "  time budget: ${total} s of steps + ~${WHEEL_S} s installing wheels = $((total + WHEEL_S)) s"
  over=0
  for ci in "${!CALLS[@]}"; do
    c="${CALLS[$ci]}"
    sum=0
    for s in "${STEPS[@]}"; do [[ "${s%%|*}" =~ $c ]] && { IFS='|' read -r _ b _ <<<"$s"; sum=$((sum + b)); }; done
    [ "$sum" -gt 0 ] || continue
    flag=ok; [ $((sum + WHEEL_S)) -le $CALL_LIMIT ] || { flag="OVER"; over=1; }
    printf '  device call --only %-32s %4s s + %s s wheels = %4s s of %s s: %s (carry ["%s"], GPU_WHEELS=%s)\n' \
      "'$c'" "$sum" "$WHEEL_S" "$((sum + WHEEL_S))" "$CALL_LIMIT" "$flag" "${CALL_WHEELS[$ci]}" "${CALL_WHEELS[$ci]}"
  done
  if [ $((total + WHEEL_S)) -gt $CALL_LIMIT ]; then
    echo "  the selection exceeds one ${CALL_LIMIT}-s call: run it as the device calls above (--only)"
  fi
  [ "$over" = 0 ] || echo "  a device call is over its ${CALL_LIMIT}-s budget: split its steps"
  if [ -z "$ONLY" ]; then
    echo "  a session with ~15 min of device time: run the calls in this order, as many as fit:"
    for c in "${PRIORITY[@]}"; do echo "    --only '$c'"; done
  fi
  echo "  results: $OUT_DIR/gpu_check_<date>_<card>.{jsonl,md,log}"
  exit 0
fi

# --rehearse: each step's command at tiny sizes on the CPU. argparse keeps the last value of a repeated flag,
# so the tiny sizes are appended to each benchmark call (one per ';'-separated part) and override the GPU sizes.
rehearse_cmd() {
  local out="" seg
  local IFS=';'
  read -ra segs <<<"$1"
  for seg in "${segs[@]}"; do
    case "$seg" in
      *--kernels\ liger*) seg=" echo 'rehearsal: skipped (Liger-Kernel needs CUDA + Triton; on the CPU it refuses)'" ;;
      *--stage*--compile-layers*)  # proven on the CPU with eager attention by tests/train/test_memory.py
        seg=" echo 'rehearsal: skipped (compiled layers need flex_attention here, which has no CPU backward)'" ;;
      *bench_inference.py*)
        seg="$seg --model tiny --device cpu --frames 3 --repeats 1 --backend aot_eager --threads 1"
        [[ "$seg" == *"--batch 1 8"* ]] && seg="$seg --batch 1 2"
        [[ "$seg" == *--serve-clients* ]] && seg="$seg --serve-clients 1 2" ;;
      *bench_train.py*--stage*)
        seg="$seg --model tiny --device cpu --tokens-per-step 256 --grad-accum 2 --steps 1 --warmup 0 --threads 1 --compile-backend aot_eager" ;;
      *bench_train.py*) seg="$seg --model tiny --device cpu --tokens-per-step 256 --steps 1 --warmup 0 --threads 1" ;;
      *bench_data.py*) seg="$seg --clips 2 --seconds 1 --batch-seconds 2 --device cpu" ;;
    esac
    out+="${out:+;}$seg"
  done
  printf '%s' "$out"
}
if [ "$REHEARSE" = 1 ]; then
  export CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1
  # torchao (the torchao optimizer row) from .venv/torchao, where scripts/setup.sh puts it
  [ -d .venv/torchao/torchao ] && export PYTHONPATH="$PYTHONPATH:$PWD/.venv/torchao"
  for i in "${!STEPS[@]}"; do
    IFS='|' read -r name budget cmd <<<"${STEPS[$i]}"
    STEPS[$i]="$name|$((budget * 3))|$(rehearse_cmd "$cmd")"
  done
elif ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check.sh: no CUDA GPU on this machine ($PY: torch.cuda.is_available() is False or torch is missing);"
  echo "nothing was run. Run it on a GPU machine; 'bash scripts/gpu_check.sh --dry-run' lists the plan."
  exit 0
fi

if [ "$REHEARSE" = 1 ]; then CARD="rehearsal-cpu"
else CARD=$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))'); fi
DATE=$(date -u +%Y-%m-%d)
TAG="$(echo "${DATE}_${CARD}" | tr -c 'A-Za-z0-9._\n-' '_')"
mkdir -p "$OUT_DIR"
JSONL="$OUT_DIR/gpu_check_${TAG}.jsonl"
LOG="$OUT_DIR/gpu_check_${TAG}.log"
STEPS_TSV="$(mktemp)"
: >"$LOG"
echo "gpu_check.sh on $CARD, $DATE; results in $OUT_DIR/gpu_check_${TAG}.*" | tee -a "$LOG"

need=()
[ "$REHEARSE" = 1 ] || for mod in "${INSTALL[@]}"; do
  "$PY" -c "import ${mod%%:*}" 2>/dev/null || need+=("${mod##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ -d "$WHEELS" ]; then
    echo "installing from $WHEELS: ${need[*]}" | tee -a "$LOG"
    # one at a time: a folder with only some of them (gpu_wheels.sh --train-only) installs what it has
    for w in "${need[@]}"; do
      "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$w" >>"$LOG" 2>&1 \
        || echo "$w did not install from $WHEELS (see the log); what needs it skips or fails with a reason" | tee -a "$LOG"
    done
  else
    echo "missing ${need[*]} and no wheel folder $WHEELS (bash scripts/gpu_wheels.sh makes one);" \
         "the tests that need them skip with a reason" | tee -a "$LOG"
  fi
fi

for s in "${STEPS[@]}"; do
  IFS='|' read -r name budget cmd <<<"$s"
  cmd="${cmd//@JSONL@/$JSONL}"
  echo; echo "== $name (budget ${budget} s)" | tee -a "$LOG"
  echo "\$ $cmd" >>"$LOG"
  t0=$(date +%s)
  timeout --kill-after=10 "$budget" bash -c "$cmd" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - t0 ))
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$budget" >>"$STEPS_TSV"
  echo "-- $name: exit $rc after ${secs} s" | tee -a "$LOG"
done

# torch.compile recompiles per bench_train row (issue 23: no recompile storms; a handful per run is expected)
"$PY" - "$JSONL" <<'PYEOF' | tee -a "$LOG"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "compile_recompiles" in r:
        print(f"recompiles: bench_train {r.get('model')} {r.get('tokens_per_step')} tokens/step, {r.get('attention')}: "
              f"{r['compile_recompiles']} recompile(s), {r.get('compile_graphs')} graph(s)")
PYEOF
$SUMMARY "$JSONL" "$STEPS_TSV" >"$OUT_DIR/gpu_check_${TAG}.md"
rm -f "$STEPS_TSV"
echo; cat "$OUT_DIR/gpu_check_${TAG}.md"
echo "Copy the rows into benchmarks/README.md (GPU rows) and commit $OUT_DIR/gpu_check_${TAG}.{jsonl,md}."
