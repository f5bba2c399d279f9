"""What keeps the speech server safe to run on a laptop or to expose: who may call it, from where.

Threats, and the answer to each (:mod:`helpers.infer.serve` wires them in):

* **A web page driving a server on localhost.** A browser sends a cross-site ``POST`` without
  asking first (no CORS preflight) only for the "simple" content types (``text/plain``,
  form encodings) or none. The server therefore reads a JSON body only under
  ``Content-Type: application/json`` (:func:`check_json_content_type`; anything else is a 415),
  which a foreign page cannot send without a preflight, and the server answers no preflight
  and sends no ``Access-Control-Allow-*`` header unless ``--cors-origin`` names origins.
* **DNS rebinding.** A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 reaches
  the server as a same-origin peer and can read the answers; its requests still carry
  ``Host: evil.example``. :func:`host_allowed` accepts a Host that is an IP address (a rebinding
  page has a name, never a literal address), ``localhost``, or a name the operator configured
  (``--allowed-host``); everything else gets a 400 before any route runs.
* **Anyone on the network.** An optional API key (``--api-key`` or the environment variable
  :data:`API_KEY_ENV`), checked as ``Authorization: Bearer <key>`` on every ``/v1/`` path with a
  constant-time compare (:func:`hmac.compare_digest`: the time taken says nothing about how
  many leading characters were right); a missing or wrong key is a 401 in OpenAI's error shape.
  ``/health`` and ``/openapi.json`` stay open (load balancers, client generators), as in vLLM.
* **Bodies built to exhaust the parser.** :func:`json_depth` counts nesting before parsing, so a
  body nested deeper than :data:`MAX_JSON_DEPTH` is refused the same way on every Python
  (3.11's json raises RecursionError near depth 1,000; 3.13's only far deeper, after the work).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import re

API_KEY_ENV = "OPTIMUMLLM_AUDIO_API_KEY"  # the key, when --api-key is not given (keeps it out of `ps`)
MAX_JSON_DEPTH = 32  # a speech request nests 2 deep ({"voice": {"id": ...}}); 32 leaves room, refuses abuse
JSON_MEDIA_TYPE = "application/json"
PROTECTED_PREFIX = "/v1/"  # the API itself; /health and /openapi.json stay open
# a JSON string (escapes skipped; unterminated runs to the end) or a bracket: strings are passed over whole
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)


class GuardError(ValueError):
    """A request refused before it reaches a route: ``status``, OpenAI error ``code``, extra headers."""

    def __init__(self, status: int, message: str, code: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON ``text``, brackets inside strings not counted.

    A scan, not a parse: it costs one regex pass (strings are skipped whole, so a 27 MB base64
    reference clip is one token), never recurses, and needs no valid JSON (the parser judges that)."""
    depth = deepest = 0
    for m in _JSON_TOKEN.finditer(text):
        c = m.group()[0]
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def parse_json_body(text: str, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads(text)`` after refusing a body nested deeper than ``max_depth`` (GuardError 400
    ``json_too_deep``), so the refusal does not depend on the interpreter's recursion limit."""
    depth = json_depth(text)
    if depth > max_depth:
        raise GuardError(400, f"the body's JSON is nested too deeply ({depth} levels; at most {max_depth})",
                         "json_too_deep")
    return json.loads(text)


def check_json_content_type(content_type: str | None) -> None:
    """GuardError 415 unless ``content_type`` is ``application/json`` (parameters such as charset allowed)."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != JSON_MEDIA_TYPE:
        got = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        raise GuardError(415, f"the body must be JSON sent as Content-Type: {JSON_MEDIA_TYPE}; got {got}",
                         "unsupported_media_type")


def host_allowed(host: str | None, names=()) -> bool:
    """Whether a ``Host`` header may reach the server: an IP address, ``localhost``, or one of
    ``names`` (case-insensitive; ``"*"`` allows any). A missing Host is refused."""
    if not host:
        return False
    names = {n.lower().rstrip(".") for n in names}
    if "*" in names:
        return True
    h = host.strip().lower()
    if h.startswith("["):  # [::1]:8000
        h = h[1:h.find("]")] if "]" in h else h[1:]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    h = h.rstrip(".")
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        return h == "localhost" or h in names


def check_api_key(authorization: str | None, key: str) -> None:
    """GuardError 401 unless ``authorization`` is ``Bearer <key>`` (compared in constant time)."""
    if not authorization:
        raise GuardError(401, "no API key: send it as 'Authorization: Bearer <key>'", "missing_api_key",
                         {"WWW-Authenticate": "Bearer"})
    scheme, _, given = authorization.strip().partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())
    if not ok:
        raise GuardError(401, "incorrect API key (the server's --api-key)", "invalid_api_key",
                         {"WWW-Authenticate": "Bearer"})


class Guard:
    """ASGI middleware: the Host check, then the API key on ``/v1/`` paths (not on CORS preflights,
    which carry no credentials and are answered by the CORS layer inside, when one is configured).
    ``error_body(status, message, code)`` builds the JSON error (OpenAI's shape)."""

    def __init__(self, app, *, api_key: str | None, allowed_hosts=(), error_body, preflight: bool = False):
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key is empty: give a key, or None for no key")
        self.app, self.api_key, self.allowed_hosts = app, api_key, tuple(allowed_hosts)
        self.error_body, self.preflight = error_body, preflight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        try:
            if not host_allowed(headers.get("host"), self.allowed_hosts):
                raise GuardError(400, f"Host {headers.get('host')!r} is not this server's: use its IP address or "
                                      f"localhost, or start it with --allowed-host NAME (DNS-rebinding "
                                      f"protection)", "host_not_allowed")
            is_preflight = (self.preflight and scope["method"] == "OPTIONS"
                            and "access-control-request-method" in headers)
            if self.api_key is not None and scope["path"].startswith(PROTECTED_PREFIX) and not is_preflight:
                check_api_key(headers.get("authorization"), self.api_key)
        except GuardError as e:
            body = json.dumps(self.error_body(e.status, e.message, e.code)).encode()
            hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            hdrs += [(k.lower().encode(), v.encode()) for k, v in e.headers.items()]
            await send({"type": "http.response.start", "status": e.status, "headers": hdrs})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


__all__ = ["API_KEY_ENV", "MAX_JSON_DEPTH", "JSON_MEDIA_TYPE", "GuardError", "json_depth", "parse_json_body",
           "check_json_content_type", "host_allowed", "check_api_key", "Guard"]
