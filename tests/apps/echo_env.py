"""Echo the WSGI environ as JSON (values made JSON-safe), plus a few facts about it.

`?env=A,B` adds those os.environ values under "_os_environ".
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import parse_qs


def _safe(value):
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)):
        return [_safe(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    return f"<{type(value).__name__}>"


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    out = {key: _safe(value) for key, value in environ.items()}
    inp = environ["wsgi.input"]
    errors = environ["wsgi.errors"]
    out["_types"] = {key: type(value).__name__ for key, value in environ.items()}
    out["_checks"] = {
        "input_methods": all(
            callable(getattr(inp, m, None)) for m in ("read", "readline", "readlines", "__iter__")
        ),
        "errors_methods": all(
            callable(getattr(errors, m, None)) for m in ("write", "writelines", "flush")
        ),
        "file_wrapper_callable": callable(environ.get("wsgi.file_wrapper")),
        "all_keys_str": all(type(k) is str for k in environ),
        "cgi_values_str": all(
            type(v) is str for k, v in environ.items() if k.isupper() and "." not in k
        ),
    }
    out["_body"] = body.decode("latin-1")
    out["_cwd"] = os.getcwd()
    out["_sys_path"] = list(sys.path)
    names = parse_qs(environ.get("QUERY_STRING", "")).get("env", [""])[0]
    out["_os_environ"] = {n: os.environ.get(n) for n in names.split(",") if n}
    if "mutate" in parse_qs(environ.get("QUERY_STRING", "")):
        # An app may change its environ; the next request must not see it.
        environ["oxgate.test.leak"] = "yes"
        environ["SERVER_NAME"] = "mutated.example"
        environ["REMOTE_ADDR"] = "6.6.6.6"
        environ["HTTP_COOKIE"] = "mutated=1"
    data = json.dumps(out, sort_keys=True).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
