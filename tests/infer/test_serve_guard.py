"""The speech server's safety (helpers/infer/serve_guard.py): content type, API key, CORS, Host.

The pure checks are tested alone; then real servers on 127.0.0.1 (the tiny random model, 0.2 s
cap) answer raw HTTP, so what a browser or a rebinding page would send is sent as it is."""
import http.client
import json

import pytest
import requests
import torch

from helpers.infer.engine import OptimumTTS
from helpers.infer.generation import LengthGuard
from helpers.infer.serve import BackgroundServer, create_app
from helpers.infer.serve_engine import SpeechEngine
from helpers.infer.serve_guard import GuardError, check_api_key, check_json_content_type, host_allowed
from tiny_export import extended_tiny

torch.set_num_threads(1)
KEY = "sk-test-0123456789"
BODY = {"model": "tiny", "input": "Hi.", "response_format": "pcm", "stream": False}


# ----------------------------------------------------------------------------- pure checks
@pytest.mark.parametrize("ctype, ok", [("application/json", True), ("application/json; charset=utf-8", True),
                                       ("Application/JSON", True), ("text/plain", False), (None, False), ("", False),
                                       ("application/x-www-form-urlencoded", False), ("multipart/form-data", False),
                                       ("application/jsonp", False)])
def test_json_content_type(ctype, ok):
    if ok:
        check_json_content_type(ctype)
    else:
        with pytest.raises(GuardError) as e:
            check_json_content_type(ctype)
        assert e.value.status == 415


@pytest.mark.parametrize("host, names, ok", [
    ("127.0.0.1:8000", (), True), ("localhost:8000", (), True), ("[::1]:8000", (), True), ("10.1.2.3", (), True),
    ("LOCALHOST", (), True), ("evil.example:8000", (), False), ("evil.example", ("tts.example",), False),
    ("tts.example:443", ("tts.example",), True), ("TTS.Example.", ("tts.example",), True), ("", (), False),
    (None, (), False), ("localhost.evil.example", (), False), ("anything", ("*",), True),
])
def test_host_allowed(host, names, ok):
    assert host_allowed(host, names) is ok


def test_api_key_check():
    check_api_key(f"Bearer {KEY}", KEY)
    check_api_key(f"bearer {KEY}", KEY)
    for bad in (None, "", KEY, f"Basic {KEY}", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", "Bearer "):
        with pytest.raises(GuardError) as e:
            check_api_key(bad, KEY)
        assert e.value.status == 401 and e.value.headers == {"WWW-Authenticate": "Bearer"}


# ----------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def engine_factory(snac_random):
    model, tok, _ = extended_tiny()
    tts = OptimumTTS(model, tok, snac_random, length_guard=LengthGuard(0.2, 1e6, 0.2))
    return lambda: SpeechEngine(tts, max_batch=4, max_queue=8)


@pytest.fixture(scope="module")
def open_server(engine_factory):
    with BackgroundServer(create_app(engine_factory(), "tiny")) as s:
        yield s


@pytest.fixture(scope="module")
def keyed_server(engine_factory):
    app = create_app(engine_factory(), "tiny", api_key=KEY, cors_origins=["https://app.example"],
                     allowed_hosts=["tts.example"])
    with BackgroundServer(app) as s:
        yield s


def _raw(server, method, path, body=None, headers=None):
    """One request with exactly these headers (http.client adds only Host unless it is given)."""
    host, port = server.url.split("//")[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    hdrs = dict(headers or {})
    skip_host = "Host" in hdrs
    conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    for k, v in hdrs.items():
        conn.putheader(k, v)
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    conn.close()
    return out


def test_json_bodies_need_application_json(open_server):
    for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
        status, _, data = _raw(open_server, "POST", "/v1/audio/speech", BODY,
                               {"Content-Type": ctype} if ctype else {})
        err = json.loads(data)["error"]
        assert status == 415 and err["code"] == "unsupported_media_type", (ctype, status, err)
        assert err["type"] == "invalid_request_error" and "application/json" in err["message"]
    status, headers, data = _raw(open_server, "POST", "/v1/audio/speech", BODY, {"Content-Type": "application/json"})
    assert status == 200 and headers["content-type"] == "audio/pcm" and len(data) > 0


def test_no_cors_headers_by_default(open_server):
    origin = {"Origin": "https://evil.example"}
    status, headers, _ = _raw(open_server, "POST", "/v1/audio/speech", BODY,
                              {"Content-Type": "application/json", **origin})
    assert status == 200 and not any(k.startswith("access-control-") for k in headers)
    status, headers, _ = _raw(open_server, "OPTIONS", "/v1/audio/speech", None,
                              {**origin, "Access-Control-Request-Method": "POST",
                               "Access-Control-Request-Headers": "content-type"})
    assert status == 405 and not any(k.startswith("access-control-") for k in headers)  # no preflight granted


def test_foreign_host_is_refused(open_server):
    for host in ("evil.example", "evil.example:80", "localhost.evil.example"):
        status, _, data = _raw(open_server, "POST", "/v1/audio/speech", BODY,
                               {"Host": host, "Content-Type": "application/json"})
        assert status == 400 and json.loads(data)["error"]["code"] == "host_not_allowed", host
    status, _, _ = _raw(open_server, "GET", "/health", None, {"Host": "evil.example"})
    assert status == 400  # every path: a rebinding page reads nothing
    port = open_server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert _raw(open_server, "GET", "/health", None, {"Host": host})[0] == 200


def test_api_key_cors_and_configured_host(keyed_server):
    url = keyed_server.url
    r = requests.post(f"{url}/v1/audio/speech", json=BODY, timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    r = requests.post(f"{url}/v1/audio/speech", json=BODY, headers={"Authorization": "Bearer wrong"}, timeout=60)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert requests.get(f"{url}/v1/models", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    r = requests.post(f"{url}/v1/audio/speech", json=BODY, headers=auth, timeout=60)
    assert r.status_code == 200 and len(r.content) > 0
    assert requests.get(f"{url}/health", timeout=10).status_code == 200  # open, for load balancers
    # the configured name is accepted, others still refused
    hdrs = {"Content-Type": "application/json", **auth}
    assert _raw(keyed_server, "POST", "/v1/audio/speech", BODY, {**hdrs, "Host": "tts.example"})[0] == 200
    assert _raw(keyed_server, "POST", "/v1/audio/speech", BODY, {**hdrs, "Host": "other.example"})[0] == 400
    # CORS for the named origin only: its preflight is granted (no key needed for a preflight)
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers, _ = _raw(keyed_server, "OPTIONS", "/v1/audio/speech", None,
                              {"Origin": "https://app.example", **pre})
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"
    status, headers, _ = _raw(keyed_server, "OPTIONS", "/v1/audio/speech", None,
                              {"Origin": "https://evil.example", **pre})
    assert status == 400 and "access-control-allow-origin" not in headers
    status, headers, _ = _raw(keyed_server, "POST", "/v1/audio/speech", BODY,
                              {**hdrs, "Origin": "https://app.example"})
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"


def test_openai_sdk_with_the_key(keyed_server):
    openai = pytest.importorskip("openai")
    good = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    assert len(good.audio.speech.create(model="tiny", voice="alloy", input="Hi.", response_format="pcm").content) > 0
    bad = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key="sk-wrong", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.audio.speech.create(model="tiny", voice="alloy", input="Hi.", response_format="pcm")
    assert e.value.status_code == 401 and e.value.body["code"] == "invalid_api_key"

