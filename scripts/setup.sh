#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for the CPU (tiny) profile: apt packages + .venv.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
APT=""
command -v espeak-ng >/dev/null || APT="$APT espeak-ng"
command -v sox >/dev/null || APT="$APT sox"
# libfuse2 (what fusepy loads) and fusermount: the FUSE-mounted stand-in Drive of tests/train/test_drive_fuse.py
# (skipped without them). Debian's `fuse` only where fuse3's fusermount3 is absent: the two packages conflict.
[ -n "$(ls /usr/lib/*/libfuse.so.2 /lib/*/libfuse.so.2 2>/dev/null)" ] || APT="$APT libfuse2"
command -v fusermount >/dev/null || command -v fusermount3 >/dev/null || APT="$APT fuse"
if [ -n "$APT" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT >/dev/null
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
