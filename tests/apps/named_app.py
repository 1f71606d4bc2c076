"""A module whose WSGI callable is named `app`, not `application`."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"named app"]


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"default application"]
