#!/usr/bin/env bash
# Real agent clients for tests/agents/test_agent_clients.py (the snippets of docs/use-from-an-agent.md):
#   .venv-agents          Pipecat (OpenAITTSService) and litellm, pinned; their own venv because their
#                         pins clash with the project's (openai, numpy)
#   .venv-livekit         LiveKit Agents' OpenAI plugin, pinned; apart from .venv-agents (protobuf 7 vs Pipecat's 6)
#   tests/agents/node     the official Node `openai` SDK (package.json / package-lock.json), when npm exists
# Idempotent: a built venv / node_modules is kept. About 1 GB and 2-4 min the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
PIPECAT=pipecat-ai[openai]==1.14.0
LITELLM=litellm==1.110.2
LIVEKIT=(livekit-agents==1.8.9 livekit-plugins-openai==1.8.9)
if [ ! -x .venv-agents/bin/python ] || ! .venv-agents/bin/python -c "import pipecat, litellm" 2>/dev/null; then
  "$PY" -m venv .venv-agents
  .venv-agents/bin/pip install -q "$PIPECAT" "$LITELLM"
fi
if [ ! -x .venv-livekit/bin/python ] || ! .venv-livekit/bin/python -c "import livekit.plugins.openai" 2>/dev/null; then
  "$PY" -m venv .venv-livekit
  .venv-livekit/bin/pip install -q "${LIVEKIT[@]}"
fi
if command -v npm >/dev/null; then
  if [ ! -d tests/agents/node/node_modules/openai ]; then
    (cd tests/agents/node && npm ci --no-audit --no-fund --loglevel=error)
  fi
else
  echo "setup_agent_clients: no npm; the Node SDK test will be skipped" >&2
fi
echo "setup_agent_clients: done"
