"""A small Flask app for oxgate: `oxgate app:app`, or the factory: `oxgate 'app:create_app()'`.

Routes: a page with a form (POST echoes it), a JSON API, a streamed response, and a
raw-body upload that reports what the server handed over.
"""

from __future__ import annotations

import hashlib
import time

from flask import Flask, Response, jsonify, request, stream_with_context

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title></head>
<body>
  <h1>{title}</h1>
  <form method="post" action="/form">
    <label>Name <input name="name"></label>
    <button type="submit">Send</button>
  </form>
</body>
</html>
"""


def create_app(title: str = "Hello from Flask on oxgate") -> Flask:
    """Build the app; oxgate calls this for `app:create_app()` or `app:create_app('Hi')`."""
    flask_app = Flask(__name__)
    flask_app.config["TITLE"] = title

    @flask_app.get("/")
    def index():
        return PAGE.format(title=flask_app.config["TITLE"])

    @flask_app.post("/form")
    def form():
        name = request.form.get("name", "")
        return f"Hello, {name}!"

    @flask_app.get("/api/hello")
    def hello_json():
        return jsonify(message="hello", name=request.args.get("name", "world"))

    @flask_app.post("/api/echo")
    def echo_json():
        payload = request.get_json(silent=True)
        if payload is None:
            return jsonify(error="expected a JSON body"), 400
        return jsonify(received=payload)

    @flask_app.post("/upload")
    def upload():
        data = request.get_data()
        return jsonify(
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            chunked="chunked" in request.headers.get("Transfer-Encoding", "").lower(),
        )

    @flask_app.get("/stream")
    def stream():
        count = min(int(request.args.get("n", "5")), 1000)
        delay = min(float(request.args.get("delay", "0")), 1.0)

        def generate():
            for i in range(count):
                if delay:
                    time.sleep(delay)
                yield f"line {i}\n"

        return Response(stream_with_context(generate()), mimetype="text/plain")

    @flask_app.get("/info")
    def info():
        env = request.environ
        return jsonify(
            server_software=env.get("SERVER_SOFTWARE", ""),
            multithread=bool(env.get("wsgi.multithread")),
            script_name=env.get("SCRIPT_NAME", ""),
            path_info=env.get("PATH_INFO", ""),
            title=flask_app.config["TITLE"],
        )

    return flask_app


app = create_app()
