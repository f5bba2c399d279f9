"""The JSON nesting-depth limit of the speech server (helpers/infer/serve_guard.py), counted before parsing.

Imports nothing but the standard library and pytest, so that it also runs on Python 3.13
(scripts/test_json_depth_py313.sh): 3.13's json parses ``[`` * 5,000 where 3.11's raises
RecursionError, and the server must refuse both the same way."""
import json
import sys

import pytest

from helpers.infer.serve_guard import MAX_JSON_DEPTH, GuardError, json_depth, parse_json_body


@pytest.mark.parametrize("text, depth", [
    ('{"a": 1}', 1), ('{"voice": {"id": "x"}}', 2), ("[[[]]]", 3), ("1", 0),
    ('{"input": "[[[[{{{{"}', 1),  # brackets inside a string do not count
    ('{"input": "a \\" [[[[ \\\\", "b": [[]]}', 3),  # escaped quote stays inside; escaped backslash ends it
    ("[" * 100000, 100000), ('{"x": "unterminated [[[[', 1),
], ids=lambda v: repr(v)[:24] if isinstance(v, str) else str(v))
def test_json_depth_counts_brackets_outside_strings(text, depth):
    assert json_depth(text) == depth


def test_parse_json_body_refuses_deep_nesting_before_parsing():
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json_body(ok) == json.loads(ok)
    for deep in ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "[" * 10 ** 6 + "]" * 10 ** 6):
        with pytest.raises(GuardError) as e:
            parse_json_body(deep)
        assert e.value.code == "json_too_deep" and "nested too deeply" in e.value.message


@pytest.mark.parametrize("body", [b"[" * 100000 + b"]" * 100000, b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b'{"voice": ' + b'{"id": ' * 40 + b'"x"' + b"}" * 41],
                         ids=["array-100000", "input-5000", "objects-40"])
def test_the_servers_deep_bodies_are_refused_on_this_python(body):
    """The bodies tests/infer/test_serve.py sends over HTTP: refused by the count, whatever json would do."""
    with pytest.raises(GuardError) as e:
        parse_json_body(body.decode())
    assert e.value.status == 400 and "nested too deeply" in e.value.message, sys.version


def test_python_313_would_have_parsed_what_311_refused():
    """Why the count exists: the interpreter's own limit moved (3.13 parses depth 5,000)."""
    text = "[" * 5000 + "]" * 5000
    if sys.version_info >= (3, 13):
        assert json.loads(text) is not None
    else:
        with pytest.raises(RecursionError):
            json.loads(text)
