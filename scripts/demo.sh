#!/usr/bin/env bash
# Set up (if needed) and run the whole notebook series end to end in the offline tiny profile.
# Executed notebooks land in runs/demo/executed/. Extra arguments go to scripts/run_all.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python scripts/run_all.py "$@"
