"""The speech server on the vLLM backend (``--backend vllm``), over real HTTP on 127.0.0.1, with the
official ``openai`` SDK as the client: the same API as on the hf backend (tests/infer/test_openai_peers.py)."""
import base64
import json

import numpy as np
import pytest

pytest.importorskip("vllm", reason="the vLLM backend's tests run in .venv-vllm (scripts/setup_vllm.sh)")
openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(vllm_export):
    from helpers.infer.serve import BackgroundServer, create_app, load_engine, pick_backend
    from helpers.profiles import RANDOM_SNAC_24KHZ

    assert pick_backend("auto", "cpu") == "hf"  # auto takes vLLM on CUDA only
    engine = load_engine(str(vllm_export), snac=RANDOM_SNAC_24KHZ, device="cpu", max_seconds=0.5, max_batch=8,
                         max_queue=8, backend="vllm")
    with BackgroundServer(create_app(engine, "tiny-vllm")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_health_names_the_backend(server):
    import requests

    h = requests.get(f"{server.url}/health", timeout=30).json()
    assert h["backend"] == "vllm" and h["max_spoken_chars"] > 0


def test_speech_whole_streamed_and_sse_agree(client):
    kw = dict(model="tiny-vllm", voice="alloy", input="Hello from vLLM.", response_format="pcm")
    whole = np.frombuffer(client.audio.speech.create(**kw, extra_body={"stream": False, "seed": 4}).content, "<i2")
    assert len(whole) > 0
    with client.audio.speech.with_streaming_response.create(**kw, extra_body={"seed": 4}) as r:
        streamed = np.frombuffer(b"".join(r.iter_bytes()), "<i2")
    with client.audio.speech.with_streaming_response.create(**kw, stream_format="sse", extra_body={"seed": 4}) as r:
        events = [json.loads(x[6:]) for x in b"".join(r.iter_bytes()).decode().split("\n") if x.startswith("data: ")]
    sse = np.frombuffer(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]), "<i2")
    assert events[-1]["type"] == "speech.audio.done"
    for got in (streamed, sse):
        assert len(got) == len(whole) and np.abs(got.astype(int) - whole.astype(int)).max() <= 1


def test_speed_and_errors(client):
    kw = dict(model="tiny-vllm", voice="ash", input="Speed.", response_format="pcm", extra_body={"stream": False})
    base = len(client.audio.speech.create(**kw).content) // 2
    assert len(client.audio.speech.create(**kw, speed=2.0).content) // 2 == round(base / 2)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tiny-vllm", voice="ash", input="\u200b\U0001F600")
    assert e.value.body["param"] == "input" and e.value.body["code"] == "unspeakable_input"
    with pytest.raises(openai.NotFoundError):
        client.get("/nope", cast_to=object)
