#!/usr/bin/env bash
# The speech server's JSON depth limit under Python 3.13 (tests/infer/test_serve_guard_json.py imports only
# the standard library, pytest and helpers/infer/serve_guard.py). 3.13's json parses nesting that 3.11's
# refuses with RecursionError; the server must answer both the same way, so the test runs on both.
# Builds .venv-py313 (gitignored; pytest only) on first use. PY313 names the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY313=${PY313:-/root/.pyenv/versions/3.13.0/bin/python}
[ -x "$PY313" ] || PY313=python3.13
if [ ! -x .venv-py313/bin/python ]; then
  "$PY313" -m venv .venv-py313
  .venv-py313/bin/pip install -q "pytest==8.3.4"
fi
.venv-py313/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
.venv-py313/bin/python -m pytest -q -p no:cacheprovider --noconftest tests/infer/test_serve_guard_json.py "$@"
