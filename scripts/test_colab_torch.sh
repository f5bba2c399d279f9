#!/usr/bin/env bash
# The torch-sensitive tests on Colab's torch (2.11, Triton 3.6: requirements-colab-runtime.txt), which is also
# the lent GPU machine's release; .venv holds a CPU torch 2.13. Compiled decoding, the fused optimizer, flex /
# per-document SDPA attention, compiled layers, torchao's optimizer, a killed run's exact resume, the GPU test
# file's collection, and `scripts/gpu_check.sh --rehearse` (tests/plan/test_gpu_check_rehearsal.py) with
# PYTHON set to that interpreter: a step that breaks on 2.11 shows here, not in scarce device time.
#
#   bash scripts/test_colab_torch.sh              # builds what is missing, runs, prints a summary; exit 1 on a failure
#   bash scripts/test_colab_torch.sh --no-build   # stops (exit 2) when the Colab replica's venv is absent
#   bash scripts/test_colab_torch.sh -k compiled  # further arguments go to pytest
#
# Interpreter: the Colab replica's cached runtime venv (scripts/colab_replica.sh: Python 3.13 with exactly
# requirements-colab-runtime.txt, under ~/.cache/optimumllm-colab-replica/runtime-<hash>), built through that
# script when absent (~5 min with pip's cache warm, ~6 GB; a cold cache downloads ~3 GB) and never installed
# into. The test-only packages it lacks go into an overlay folder beside it (pip --target --no-deps, keyed by a
# hash of their pins and the runtime), put first on PYTHONPATH; their versions are requirements-ci.txt's /
# requirements.txt's where those pin them, else below (what .venv resolves).
# Needs .venv (scripts/setup.sh) only for scripts/colab_replica.sh itself (papermill is not used here).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=1
if [ "${1:-}" = --no-build ]; then BUILD=0; shift; fi

# pytest + pytest-timeout (pytest.ini's timeout), snac (+ einops) and num2words (+ docopt) for helpers,
# bitsandbytes (adamw_8bit), torchao (adamw_bf16_torchao; its .so files need torch >= 2.11, which 2.11 meets),
# fastapi (+ its opentelemetry-api) + starlette + uvicorn + audiotsm (the server's speed stream, imported by
# every request): gpu_check's HTTP step, the [serve] extra of pyproject.toml without av (mp3 etc.; the step asks
# for pcm). Colab's runtime has their pydantic, anyio, h11, click.
OVERLAY=(pytest iniconfig pluggy pytest-timeout snac einops num2words docopt bitsandbytes torchao
         fastapi opentelemetry-api starlette uvicorn audiotsm)
declare -A FALLBACK=([iniconfig]=2.3.1 [pluggy]=1.7.0 [einops]=0.8.2 [docopt]=0.6.2 [opentelemetry-api]=1.45.3
                     [torchao]=$(sed -n 's/^TORCHAO_VERSION = "\(.*\)"$/\1/p' helpers/train/memory.py))
TESTS=(
  tests/infer/test_compiled.py           # CompiledDecoding: aot_eager and inductor, warm-up, the server's HF backend
  tests/infer/test_compiled_cuda_paths.py  # CUDA-graph preconditions, the mode reaching inductor, owner thread
  tests/train/test_precision.py          # BF16AdamW incl. its compiled (fused) update forced on the CPU
  tests/train/test_fused_kernels.py      # Liger's refusal on the CPU, the kernels config
  tests/train/test_packing.py            # helpers/train/attention.py: flex forward, per-document SDPA
  tests/train/test_memory.py             # chunked CE, checkpointing, compile_layers, the stage benchmark
  tests/train/test_torchao_optim.py      # torchao's AdamW (bf16 stochastic rounding), compiled per shape
  tests/train/test_cuda_paths.py         # compiled layers + selective checkpointing, flex in compiled layers, mask builder, autocast
  "tests/train/test_train.py::test_killed_run_resumes_bitwise"  # SIGKILL + exact resume
  # the compiled per-document SDPA (dynamic=True) in the recipe: recompiles stay bounded (dynamo's guards)
  "tests/train/test_train.py::test_compiled_attention_trains_over_many_lengths_without_recompile_storm"
  # the recipe's optimizers (BF16AdamW, bitsandbytes 8-bit, torchao) resume exactly from a checkpoint
  "tests/train/test_train.py::test_memory_techniques_train_and_resume_exactly"
  tests/test_gpu.py                      # collected on 2.11 (the GPU machine's torch); skips without CUDA
  tests/plan/test_gpu_check_rehearsal.py # bash scripts/gpu_check.sh --rehearse with PYTHON=<runtime>
)

say() { echo "colab torch tests: $*"; }

RUNTIME=$(bash scripts/colab_replica.sh --runtime-path)
if [ ! -f "$RUNTIME/.complete" ]; then
  say "the Colab replica's runtime venv is absent ($RUNTIME)."
  say "scripts/colab_replica.sh builds it (Python 3.13 + requirements-colab-runtime.txt, ~5 min with pip's cache"
  say "warm, ~6 GB): 'bash scripts/colab_replica.sh --build-runtime' alone, or with the notebook chain."
  [ "$BUILD" = 1 ] || { say "--no-build: stopping"; exit 2; }
  say "building it now"
  RUNTIME=$(bash scripts/colab_replica.sh --build-runtime)
fi
PY="$RUNTIME/bin/python"

pin() {  # NAME -> NAME==VERSION from the requirements files, else FALLBACK
  local v
  v=$(sed -n "s/^$1==\([^ #]*\).*/\1/p" requirements-ci.txt requirements.txt | head -1)
  [ -n "$v" ] || v=${FALLBACK[$1]:-}
  [ -n "$v" ] || { echo "test_colab_torch.sh: no pinned version for $1" >&2; exit 1; }
  echo "$1==$v"
}
PINS=()
for p in "${OVERLAY[@]}"; do PINS+=("$(pin "$p")"); done
CACHE=$(dirname "$RUNTIME")
KEY=$( { printf '%s\n' "${PINS[@]}"; basename "$RUNTIME"; } | sha256sum | cut -c1-16)
OVL="$CACHE/overlay-$KEY"
if [ ! -f "$OVL/.complete" ]; then
  say "installing the test-only packages into $OVL: ${PINS[*]}"
  rm -rf "$OVL" "$OVL.part"
  if ! "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$OVL.part" "${PINS[@]}" \
      >"$CACHE/overlay-$KEY.log" 2>&1; then
    grep -v "^WARNING: Location" "$CACHE/overlay-$KEY.log" | tail -20
    say "installing the overlay failed (log: $CACHE/overlay-$KEY.log)" >&2
    exit 1
  fi
  touch "$OVL.part/.complete"
  mv "$OVL.part" "$OVL"
  for old in "$CACHE"/overlay-*; do  # overlays of older pins only take disk
    case "$old" in "$OVL"|"$OVL.log") ;; *) rm -rf "$old" ;; esac
  done
fi

export PYTHONPATH="$OVL:$PWD" PYTHON="$PY"  # PYTHON: gpu_check.sh's interpreter (the rehearsal test)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export CUDA_VISIBLE_DEVICES=""
# what runs: the versions, and every optional package imported (a test that would skip for a missing
# module fails here instead, naming it)
"$PY" - <<'EOF'
import importlib, importlib.metadata, sys
import torch, transformers, triton
print(f"colab torch tests: Python {sys.version.split()[0]}, torch {torch.__version__}, Triton {triton.__version__}, "
      f"transformers {transformers.__version__}")
missing = []
for mod, dist in (("pytest", "pytest"), ("pytest_timeout", "pytest-timeout"), ("snac", "snac"),
                  ("num2words", "num2words"), ("bitsandbytes", "bitsandbytes"), ("torchao", "torchao"),
                  ("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("audiotsm", "audiotsm")):
    try:
        m = importlib.import_module(mod)
        print(f"  {dist} {importlib.metadata.version(dist)} from {m.__file__}")
    except Exception as e:  # noqa: BLE001 - any failure to import is the finding
        missing.append(f"{mod}: {type(e).__name__}: {e}")
if missing:
    sys.exit("colab torch tests: these do not import on this runtime:\n  " + "\n  ".join(missing))
EOF

WORK=$(mktemp -d "${TMPDIR:-/tmp}/colab-torch-tests.XXXXXX")
t0=$(date +%s)
set +e
"$PY" -m pytest -p no:cacheprovider -o addopts= -q -rfEs --durations=10 --basetemp "$WORK/tmp" \
  --junitxml "$WORK/junit.xml" "${TESTS[@]}" "$@"
rc=$?
set -e
secs=$(( $(date +%s) - t0 ))

echo
echo "== colab torch tests: summary (torch $("$PY" -c 'import torch; print(torch.__version__)'), ${secs} s)"
"$PY" - "$WORK/junit.xml" <<'EOF'
import collections, sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError) as e:
    sys.exit(f"no junit report ({e}): pytest did not get to run the tests")
files = collections.OrderedDict()
for case in root.iter("testcase"):
    f = files.setdefault(case.get("file") or case.get("classname", "?").replace(".", "/") + ".py",
                         {"passed": 0, "failed": 0, "skipped": 0, "s": 0.0, "why": []})
    f["s"] += float(case.get("time", 0))
    bad = case.find("failure") if case.find("failure") is not None else case.find("error")
    if bad is not None:
        f["failed"] += 1
        f["why"].append(f"{case.get('name')}: {(bad.get('message') or '').splitlines()[0][:200] if bad.get('message') else ''}")
    elif case.find("skipped") is not None:
        f["skipped"] += 1
    else:
        f["passed"] += 1
print(f"| {'test file':<44} | passed | failed | skipped | seconds |")
for name, f in files.items():
    print(f"| {name:<44} | {f['passed']:>6} | {f['failed']:>6} | {f['skipped']:>7} | {f['s']:>7.0f} |")
    for w in f["why"]:
        print(f"|   FAILED {w}")
EOF
for md in "$WORK"/tmp/test_every_gpu_check_step_runs[0-9]*/gpu_check_*.md; do
  [ -f "$md" ] && { echo; echo "gpu_check.sh --rehearse on this runtime ($md):"; cat "$md"; }
done
if [ "$rc" != 0 ]; then
  say "FAILED (pytest exit $rc). The rehearsal's log and results, when it ran: $WORK/tmp/test_every_gpu_check_step_runs0/"
  exit 1
fi
say "all passed on $("$PY" -c 'import torch; print("torch", torch.__version__)') in ${secs} s"
rm -rf "$WORK"
