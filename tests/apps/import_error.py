"""An app module that fails at import: oxgate must print this traceback and stop."""


def _configure():
    raise RuntimeError("oxgate-test: broken at import time")


_configure()


def application(environ, start_response):  # pragma: no cover - never reached
    start_response("200 OK", [])
    return [b"unreachable"]
