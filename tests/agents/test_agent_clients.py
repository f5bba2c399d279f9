"""Real agent clients against a live speech server: the snippets of docs/use-from-an-agent.md, run as written.

Pipecat's OpenAITTSService and litellm run in their own environment (.venv-agents: their pins
clash with the project's), LiveKit Agents' OpenAI plugin in another (.venv-livekit: its protobuf
clashes with Pipecat's), the official Node SDK from tests/agents/node; all are built by
scripts/setup_agent_clients.sh. Where one is missing the test is skipped with that reason, so the
project's tests pass without them; CI builds them. The official Python SDK runs here (its own
tests are tests/infer/test_openai_peers.py); this file measures its streaming too.

Streaming is measured as the time of the first audio byte against the last, on a text of several
chunks; "well before" is asserted as first < last / 2 (figures printed; Pipecat: < 3/4, as it
buffers 0.5 s of audio before its first frame)."""
import ast
import json
import os
import re
import shutil
import subprocess
import time
import wave

import pytest
import torch

from helpers.infer.audio_encode import MP3_STREAM_EXTRA
from helpers.infer.engine import OptimumTTS
from helpers.infer.generation import LengthGuard
from helpers.infer.serve import BackgroundServer, create_app
from helpers.infer.serve_engine import SpeechEngine
from helpers.profiles import REPO_ROOT
from tiny_export import extended_tiny

torch.set_num_threads(1)
KEY = "agent-test-key"
DOC = REPO_ROOT / "docs" / "use-from-an-agent.md"
AGENTS_PY = REPO_ROOT / ".venv-agents" / "bin" / "python"  # Pipecat, litellm
LIVEKIT_PY = REPO_ROOT / ".venv-livekit" / "bin" / "python"  # LiveKit Agents (protobuf clashes with Pipecat's)
NODE_DIR = REPO_ROOT / "tests" / "agents" / "node"
LONG_TEXT = " ".join(f"Sentence number {i} goes on for a while, to make the text long." for i in range(16))


def snippets() -> dict[str, str]:
    """``<!-- snippet: NAME -->`` followed by a fenced block, in the docs page."""
    text = DOC.read_text()
    found = dict(re.findall(r"<!-- snippet: (\w+) -->\n```\w+\n(.*?)\n```", text, re.S))
    assert set(found) == {"pipecat", "litellm", "livekit", "node"}, set(found)
    return found


@pytest.fixture(scope="module")
def server(snac_random):
    model, tok, _ = extended_tiny()
    # 1 s of audio per text chunk (the random model never stops by itself): 4 chunks, about 4 s in all
    tts = OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(1.0, 1e6, 1.0))
    with BackgroundServer(create_app(SpeechEngine(tts, max_batch=8, max_queue=8), "tiny", api_key=KEY)) as s:
        yield s


def _env(server, **extra) -> dict:
    return {**os.environ, "TTS_BASE_URL": f"{server.url}/v1", "TTS_API_KEY": KEY, "TTS_TEXT": LONG_TEXT,
            "HF_HUB_OFFLINE": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", **extra}


def _agents_python(module: str, py=AGENTS_PY):
    if not py.exists():
        pytest.skip(f"no {py.parent.parent.name}: run scripts/setup_agent_clients.sh")
    ok = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, timeout=120).returncode == 0
    if not ok:
        pytest.skip(f"{module} is not in {py.parent.parent.name}: run scripts/setup_agent_clients.sh")
    return str(py)


def _check_wav(path) -> int:
    data = path.read_bytes()
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        assert w.getnframes() * 2 == len(data) - 44 > 0  # the header states the true length
        return w.getnframes()


def test_docs_snippets_are_the_ones_run():
    s = snippets()
    assert "OpenAITTSService" in s["pipecat"] and "litellm.speech" in s["litellm"] and "new OpenAI" in s["node"]
    assert "openai.TTS(" in s["livekit"]


def test_pipecat_openai_tts_service(server):
    py = _agents_python("pipecat.services.openai.tts")
    out = subprocess.run([py, "-c", snippets()["pipecat"]], env=_env(server), capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    print(f"pipecat (pcm): first audio {got['first_s']:.3f} s, last {got['last_s']:.3f} s, {got['bytes']} bytes")
    assert got["errors"] == [] and got["bytes"] > 48000  # > 1 s of 16-bit audio
    # Pipecat holds its first frame until it has 0.5 s of audio (TTSService.chunk_size, against glitches),
    # so its first audio comes later than the first byte; sent whole it would come with the last
    assert got["first_s"] < 0.75 * got["last_s"]


def test_livekit_openai_tts_plugin_mp3_over_sse(server):
    """The plugin's defaults: gpt-4o-mini-tts, mp3, stream_format sse; it decodes the mp3 deltas itself."""
    py = _agents_python("livekit.plugins.openai", LIVEKIT_PY)
    out = subprocess.run([py, "-c", snippets()["livekit"]], env=_env(server), capture_output=True, text=True,
                         timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    got = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    print(f"livekit (mp3 over SSE): first audio {got['first_s']:.3f} s, last {got['last_s']:.3f} s, "
          f"{got['samples']} samples")
    assert 4 * 24000 <= got["samples"] <= 4 * 24000 + MP3_STREAM_EXTRA  # 4 chunks of 1 s, plus the mp3 delay
    assert got["first_s"] < 0.6 * got["last_s"]


def test_litellm_speech_saves_a_whole_wav(server, tmp_path):
    py = _agents_python("litellm")
    out = subprocess.run([py, "-c", snippets()["litellm"]], env=_env(server, TTS_OUT=str(tmp_path / "l.wav")),
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _check_wav(tmp_path / "l.wav") > 0


def test_node_openai_sdk(server, tmp_path):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.skip("no node or no tests/agents/node/node_modules: run scripts/setup_agent_clients.sh")
    # stdin as an ES module resolves "openai" from the working directory's node_modules
    out = subprocess.run([node, "--input-type=module"], input=snippets()["node"], env=_env(
        server, TTS_OUT=str(tmp_path / "n.wav")), capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert _check_wav(tmp_path / "n.wav") > 0
    for fmt in ("pcm", "mp3"):
        r = got[fmt]
        print(f"node {fmt}: first byte {r['first_ms']:.0f} ms, last {r['last_ms']:.0f} ms, {r['chunks']} chunks")
        assert r["chunks"] >= 3 and r["bytes"] > 1000 and r["first_ms"] < r["last_ms"] / 2
        assert r["applied"].startswith("emotion=happy; speed=1")


def test_python_sdk_streams_first_bytes_early(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)
    for fmt in ("pcm", "mp3"):
        t0 = time.perf_counter()
        first, chunks = None, 0
        with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input=LONG_TEXT,
                                                                response_format=fmt) as r:
            for chunk in r.iter_bytes():
                if chunk:
                    first = first if first is not None else time.perf_counter() - t0
                    chunks += 1
        last = time.perf_counter() - t0
        print(f"python sdk {fmt}: first byte {first * 1000:.0f} ms, last {last * 1000:.0f} ms, {chunks} chunks")
        assert chunks >= 3 and first < last / 2
