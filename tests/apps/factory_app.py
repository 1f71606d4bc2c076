"""App factories, for `MODULE:factory(args)`."""

from __future__ import annotations


def make_app(greeting: str = "hello", suffix: str = ""):
    text = f"{greeting}{suffix}".encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [text]

    return app


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain application, not the factory"]
