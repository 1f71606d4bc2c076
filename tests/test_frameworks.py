"""Real frameworks behind oxgate: the Django example site and the Flask example app."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest
from support import EXAMPLES_DIR, base_env

FLASK_DIR = EXAMPLES_DIR / "flask_app"


def csrf_token(html: str) -> str:
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


# --- Django ------------------------------------------------------------------------------


@pytest.fixture
def django(oxgate, django_site):
    return oxgate("--chdir", str(django_site), "mysite.wsgi", "--threads", "2", pythonpath=False)


def test_django_page_renders(django):
    resp = httpx.get(django.url + "/")
    assert resp.status_code == 200
    assert "<h1>Guestbook</h1>" in resp.text
    assert resp.headers["server"].lower().startswith("oxgate")
    csrf_token(resp.text)


def test_django_form_post_with_csrf_token_stores_entry_and_redirects(django):
    with httpx.Client(base_url=django.url) as client:
        page = client.get("/")
        token = csrf_token(page.text)
        assert "csrftoken" in client.cookies
        posted = client.post(
            "/",
            data={"csrfmiddlewaretoken": token, "name": "Ada", "message": "Hello from oxgate"},
        )
        assert posted.status_code == 302
        assert posted.headers["location"] == "/"
        follow = client.get("/")
        assert "Hello from oxgate" in follow.text
        entries = client.get("/api/entries").json()["entries"]
    assert any(e["name"] == "Ada" and e["message"] == "Hello from oxgate" for e in entries)


def test_django_form_post_without_csrf_token_is_forbidden(django):
    resp = httpx.post(django.url + "/", data={"name": "Mallory", "message": "no token"})
    assert resp.status_code == 403


def test_django_json_post_with_csrf_header(django):
    with httpx.Client(base_url=django.url) as client:
        client.get("/")
        token = client.cookies["csrftoken"]
        resp = client.post(
            "/api/echo", json={"a": [1, 2, 3], "b": "caf\u00e9"}, headers={"X-CSRFToken": token}
        )
    assert resp.status_code == 200
    assert resp.json() == {"received": {"a": [1, 2, 3], "b": "caf\u00e9"}}


def test_django_sees_the_wsgi_environ_from_oxgate(django):
    info = httpx.get(django.url + "/api/info?x=caf%C3%A9").json()
    assert info["path"] == "/api/info"
    assert info["query"] == {"x": "caf\u00e9"}
    assert info["multithread"] is True


def test_django_non_ascii_path_reaches_the_url_resolver(django):
    resp = httpx.get(django.url + "/caf%C3%A9/")
    assert resp.status_code == 404


def test_django_under_a_root_path(oxgate, django_site):
    server = oxgate(
        "--chdir", str(django_site), "--root-path", "/site", "mysite.wsgi", pythonpath=False
    )
    info = httpx.get(server.url + "/site/api/info").json()
    assert info["script_name"] == "/site"
    assert info["path_info"] == "/api/info"
    page = httpx.get(server.url + "/site/")
    assert 'action="/site/"' in page.text


def test_django_admin_redirects_to_login_and_login_page_renders(django):
    with httpx.Client(base_url=django.url) as client:
        admin = client.get("/admin/")
        assert admin.status_code == 302
        assert admin.headers["location"].startswith("/admin/login/")
        login = client.get("/admin/login/?next=/admin/")
    assert login.status_code == 200
    assert "Django administration" in login.text
    csrf_token(login.text)


def test_django_admin_login_with_wrong_password_rerenders_the_form(django):
    with httpx.Client(base_url=django.url) as client:
        token = csrf_token(client.get("/admin/login/").text)
        resp = client.post(
            "/admin/login/",
            data={"csrfmiddlewaretoken": token, "username": "nobody", "password": "wrong"},
        )
    assert resp.status_code == 200
    assert "Please enter the correct username and password" in resp.text


def test_django_admin_login_succeeds_and_lists_the_guestbook(oxgate, django_site):
    password = "oxgate-test-password-9"
    created = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=django_site,
        env=base_env(
            {
                "DJANGO_SUPERUSER_USERNAME": "admin-e2e",
                "DJANGO_SUPERUSER_EMAIL": "admin@example.test",
                "DJANGO_SUPERUSER_PASSWORD": password,
            },
            pythonpath=False,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0 or "already taken" in created.stderr, created.stderr
    server = oxgate("--chdir", str(django_site), "mysite.wsgi", pythonpath=False)
    with httpx.Client(base_url=server.url) as client:
        token = csrf_token(client.get("/admin/login/").text)
        resp = client.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": token,
                "username": "admin-e2e",
                "password": password,
                "next": "/admin/",
            },
        )
        assert resp.status_code == 302, resp.text[:500]
        assert resp.headers["location"] == "/admin/"
        index = client.get("/admin/")
        assert index.status_code == 200
        assert "Entries" in index.text
        listing = client.get("/admin/guestbook/entry/")
        assert listing.status_code == 200


def test_django_serves_concurrent_requests_with_threads(django):
    from concurrent.futures import ThreadPoolExecutor

    def fetch(i):
        return httpx.get(f"{django.url}/api/info?i={i}", timeout=30).json()["query"]["i"]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(fetch, range(40)))
    assert got == [str(i) for i in range(40)]


# --- Flask -------------------------------------------------------------------------------


@pytest.fixture
def flask(oxgate):
    return oxgate("--chdir", str(FLASK_DIR), "app:app", pythonpath=False)


def test_flask_index_page(flask):
    resp = httpx.get(flask.url + "/")
    assert resp.status_code == 200
    assert "Hello from Flask on oxgate" in resp.text


def test_flask_form_post(flask):
    resp = httpx.post(flask.url + "/form", data={"name": "Grace"})
    assert resp.text == "Hello, Grace!"


def test_flask_json_routes(flask):
    assert httpx.get(flask.url + "/api/hello?name=ox").json() == {"message": "hello", "name": "ox"}
    echoed = httpx.post(flask.url + "/api/echo", json={"k": ["v", 1]})
    assert echoed.json() == {"received": {"k": ["v", 1]}}
    assert httpx.post(flask.url + "/api/echo", content=b"not json").status_code == 400


def test_flask_streaming_response_is_chunked(flask):
    with httpx.stream("GET", flask.url + "/stream?n=50") as resp:
        assert resp.headers.get("transfer-encoding") == "chunked"
        text = "".join(resp.iter_text())
    assert text == "".join(f"line {i}\n" for i in range(50))


def test_flask_chunked_upload(flask):
    payload = [b"x" * 10_000, b"y" * 20_000, b"z"]
    resp = httpx.post(flask.url + "/upload", content=iter(payload))
    assert resp.json()["size"] == 30_001
    assert resp.json()["chunked"] is True


def test_flask_app_factory(oxgate):
    server = oxgate("--chdir", str(FLASK_DIR), "app:create_app()", pythonpath=False)
    assert httpx.get(server.url + "/info").json()["title"] == "Hello from Flask on oxgate"


def test_flask_app_factory_with_argument(oxgate):
    server = oxgate("--chdir", str(FLASK_DIR), "app:create_app('Custom title')", pythonpath=False)
    assert httpx.get(server.url + "/").text.count("Custom title") == 2
