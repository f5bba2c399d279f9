#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for the CPU (tiny) profile: apt packages + .venv.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng sox >/dev/null
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch==2.13.0 sits in the same file as everything that depends on it, so pip never pulls a CUDA build.
.venv/bin/python -m pip install -q -r requirements-ci.txt
# resemblyzer (offline speaker-similarity stand-in) declares webrtcvad, which needs a compiler;
# webrtcvad-wheels (above) provides the same module, so install it without its declared deps.
.venv/bin/python -m pip install -q --no-deps resemblyzer==0.1.4
# torchao (the optional optimizer adamw_bf16_torchao, compared on the GPU): in a folder of its own, not in
# site-packages, since transformers imports it in every model import once it is installed there; only the
# tests put it on their path (tests/optional_torchao.py). Version: helpers/train/memory.py TORCHAO_VERSION.
[ -d .venv/torchao/torchao ] || .venv/bin/python -m pip install -q --no-deps --target .venv/torchao torchao==0.18.0
