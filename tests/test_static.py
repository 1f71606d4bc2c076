"""Static files: --static-map and --django-static, answered by the I/O loop without
the app (tests/apps/counter.py counts what reaches it)."""

from __future__ import annotations

import email.utils
import os
import random
import shutil
from pathlib import Path

import httpx
import pytest
from support import (
    EXAMPLES_DIR,
    app_calls,
    base_env,
    error_lines,
    manage,
    run_oxgate,
    simple_request,
)

CSS = b"body { color: #123456; }\n" * 40
BIG = bytes(random.Random(7).randrange(256) for _ in range(3 * 1024 * 1024 + 17))
SECRET = b"outside the static root\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "app.css").write_bytes(CSS)
    (root / "css" / "app.css.gz").write_bytes(b"gzip variant")
    (root / "css" / "app.css.br").write_bytes(b"brotli variant")
    (root / "css" / "app.1a2b3c4d5e6f.css").write_bytes(CSS)
    (root / "js").mkdir()
    (root / "js" / "only-gz.js").write_bytes(b"plain js")
    (root / "js" / "only-gz.js.gz").write_bytes(b"gzipped js")
    (root / "big.bin").write_bytes(BIG)
    (root / "empty.txt").write_bytes(b"")
    (root / ".env").write_bytes(b"SECRET_KEY=hidden")
    (root / ".well-known").mkdir()
    (root / ".well-known" / "security.txt").write_bytes(b"Contact: mailto:x@example.com\n")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "alias.css").symlink_to(root / "css" / "app.css")
    (root / "updir").symlink_to(tmp_path)
    (root / "relative.css").symlink_to(Path("css") / "app.css")
    (root / "relative-leak.txt").symlink_to(Path("..") / "secret.txt")
    os.mkfifo(root / "pipe.txt")
    return root


@pytest.fixture
def server(oxgate, tree: Path):
    return oxgate("counter", "--static-map", f"/static={tree}")


def get(server, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    with server.connect() as conn:
        conn.send(simple_request(method, path, headers=list((headers or {}).items())))
        return conn.read_response(method)


def test_a_file_is_sent_with_type_validators_and_caching_without_the_app(server):
    resp = get(server, "/static/css/app.css")
    assert resp.status == 200
    assert resp.body == CSS
    assert resp.header("content-type") == "text/css; charset=utf-8"
    assert resp.header("content-length") == str(len(CSS))
    assert resp.header("etag", "").startswith('"')
    assert email.utils.parsedate_to_datetime(resp.header("last-modified"))
    assert resp.header("cache-control") == "public, max-age=60"
    assert resp.header("accept-ranges") == "bytes"
    assert resp.header("x-content-type-options") == "nosniff"
    # Variants exist, so caches must keep them apart even for identity.
    assert resp.header("vary") == "Accept-Encoding"
    assert app_calls(server) == 0


def test_paths_outside_the_prefix_reach_the_app(server):
    assert get(server, "/staticfoo/css/app.css").status == 200
    assert get(server, "/other").status == 200
    assert app_calls(server) == 2


def test_hashed_names_are_immutable_for_a_year(server):
    resp = get(server, "/static/css/app.1a2b3c4d5e6f.css")
    assert resp.header("cache-control") == "public, max-age=31536000, immutable"


def test_static_max_age_sets_the_cache_time(oxgate, tree):
    server = oxgate("counter", "--static-map", f"/static={tree}", "--static-max-age", "3600")
    assert get(server, "/static/css/app.css").header("cache-control") == "public, max-age=3600"


def test_if_none_match_and_if_modified_since_give_304(server):
    first = get(server, "/static/css/app.css")
    tag, modified = first.header("etag"), first.header("last-modified")
    resp = get(server, "/static/css/app.css", {"If-None-Match": f'"other", {tag}'})
    assert resp.status == 304
    assert resp.body == b""
    assert resp.header("etag") == tag
    assert get(server, "/static/css/app.css", {"If-None-Match": "W/" + tag}).status == 304
    assert get(server, "/static/css/app.css", {"If-Modified-Since": modified}).status == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert get(server, "/static/css/app.css", {"If-Modified-Since": old}).status == 200
    # If-None-Match decides when both are sent.
    both = {"If-None-Match": '"other"', "If-Modified-Since": modified}
    assert get(server, "/static/css/app.css", both).status == 200


def test_ranges_give_206_and_416(server):
    resp = get(server, "/static/big.bin", {"Range": "bytes=100-199"})
    assert resp.status == 206
    assert resp.body == BIG[100:200]
    assert resp.header("content-range") == f"bytes 100-199/{len(BIG)}"
    resp = get(server, "/static/big.bin", {"Range": "bytes=-10"})
    assert resp.body == BIG[-10:]
    resp = get(server, "/static/big.bin", {"Range": f"bytes={len(BIG) - 5}-"})
    assert resp.body == BIG[-5:]
    resp = get(server, "/static/big.bin", {"Range": f"bytes={len(BIG)}-"})
    assert resp.status == 416
    assert resp.header("content-range") == f"bytes */{len(BIG)}"
    # Several ranges, or a stale If-Range: the whole file.
    resp = get(server, "/static/big.bin", {"Range": "bytes=0-1,5-6"})
    assert (resp.status, len(resp.body)) == (200, len(BIG))
    resp = get(server, "/static/big.bin", {"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert (resp.status, len(resp.body)) == (200, len(BIG))
    tag = get(server, "/static/big.bin", method="HEAD").header("etag")
    resp = get(server, "/static/big.bin", {"Range": "bytes=0-1", "If-Range": tag})
    assert (resp.status, resp.body) == (206, BIG[:2])


def test_a_large_file_arrives_whole(server):
    resp = httpx.get(server.url + "/static/big.bin")
    assert resp.status_code == 200
    assert resp.content == BIG


def test_head_ignores_range_even_with_a_matching_if_range(server):
    # RFC 9110 section 14.2: range handling is defined for GET only.
    tag = get(server, "/static/big.bin", method="HEAD").header("etag")
    for headers in ({"Range": "bytes=0-1"}, {"Range": "bytes=0-1", "If-Range": tag}):
        resp = get(server, "/static/big.bin", headers, method="HEAD")
        assert resp.status == 200, (headers, resp)
        assert resp.header("content-length") == str(len(BIG))
        assert resp.header("content-range") is None


def test_head_sends_the_length_and_no_body(server):
    with server.connect() as conn:
        conn.send(simple_request("HEAD", "/static/big.bin"))
        head = conn.read_response("HEAD")
        # The next response on the connection starts where the head ended.
        conn.send(simple_request("GET", "/static/css/app.css"))
        after = conn.read_response()
    assert head.status == 200
    assert head.header("content-length") == str(len(BIG))
    assert head.body == b""
    assert after.body == CSS


def test_precompressed_variants_follow_accept_encoding(server):
    resp = get(server, "/static/css/app.css", {"Accept-Encoding": "gzip, deflate, br"})
    assert (resp.body, resp.header("content-encoding")) == (b"brotli variant", "br")
    assert resp.header("content-type") == "text/css; charset=utf-8"
    assert resp.header("vary") == "Accept-Encoding"
    resp = get(server, "/static/css/app.css", {"Accept-Encoding": "gzip"})
    assert (resp.body, resp.header("content-encoding")) == (b"gzip variant", "gzip")
    resp = get(server, "/static/css/app.css", {"Accept-Encoding": "br;q=0, gzip;q=0"})
    assert (resp.body, resp.header("content-encoding")) == (CSS, None)
    resp = get(server, "/static/js/only-gz.js", {"Accept-Encoding": "br, gzip"})
    assert resp.body == b"gzipped js"
    # Each variant has its own tag.
    plain = get(server, "/static/css/app.css").header("etag")
    brotli = get(server, "/static/css/app.css", {"Accept-Encoding": "br"}).header("etag")
    assert plain != brotli
    # A range is served from the plain file.
    resp = get(server, "/static/css/app.css", {"Accept-Encoding": "br", "Range": "bytes=0-3"})
    assert (resp.status, resp.body, resp.header("content-encoding")) == (206, CSS[:4], None)


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/css%2f..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/leak.txt",
        "/static/relative-leak.txt",
        "/static/pipe.txt",
        "/static/updir/secret.txt",
        "/static/.env",
        "/static/%2eenv",
        "/static/css",
        "/static/css/",
        "/static/",
        "/static",
        "/static/missing.css",
        "/static/empty.txt%00.css",
    ],
)
def test_nothing_outside_the_root_hidden_or_missing_is_served(server, path):
    resp = get(server, path)
    assert resp.status == 404, (path, resp)
    assert SECRET not in resp.body
    assert app_calls(server) == 0


def test_generated_traversal_attempts_never_leave_the_root(server, tree):
    # Random paths of dot, slash and escape pieces; every answer is a 404 or a file
    # that lies under the root (never the secret next to it).
    inside = {p.read_bytes() for p in tree.rglob("*") if p.is_file() and "leak" not in p.name}
    pieces = ["..", ".", "%2e", "%2E", "%2f", "%2F", "/", "%5c", "secret.txt", "css", "%00"]
    rng = random.Random(1234)
    with server.connect() as conn:
        for _ in range(300):
            path = "/static/" + "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
            conn.send(simple_request("GET", path))
            resp = conn.read_response()
            assert resp.status in (200, 400, 404), (path, resp)
            assert resp.status != 200 or resp.body in inside, path
            assert SECRET not in resp.body, path


def test_symlinks_inside_the_root_and_well_known_are_served(server):
    assert get(server, "/static/alias.css").body == CSS
    assert get(server, "/static/relative.css").body == CSS
    assert get(server, "/static/.well-known/security.txt").status == 200


def test_an_empty_file_is_a_200_with_no_body(server):
    resp = get(server, "/static/empty.txt")
    assert (resp.status, resp.body, resp.header("content-length")) == (200, b"", "0")


def test_other_methods_are_405_with_allow(server):
    resp = get(server, "/static/css/app.css", method="DELETE")
    assert resp.status == 405
    assert resp.header("allow") == "GET, HEAD"
    with server.connect() as conn:
        resp = conn.request(simple_request("POST", "/static/css/app.css", body=b"x=1"))
    assert resp.status == 405
    assert app_calls(server) == 0


def test_longest_prefix_wins(oxgate, tree, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "app.css").write_bytes(b"nested mount")
    server = oxgate(
        "counter", "--static-map", f"/static={tree}", "--static-map", f"/static/css={other}"
    )
    assert get(server, "/static/css/app.css").body == b"nested mount"
    assert get(server, "/static/big.bin", {"Range": "bytes=0-0"}).body == BIG[:1]


def test_many_static_requests_on_one_connection(server):
    with server.connect() as conn:
        for i in range(20):
            conn.send(simple_request("GET", "/static/css/app.css" if i % 2 else "/static/nope"))
            resp = conn.read_response()
            assert resp.status == (200 if i % 2 else 404)


@pytest.mark.parametrize(
    "value,why",
    [
        ("static=/tmp", "URL_PREFIX=DIRECTORY"),
        ("/static", "URL_PREFIX=DIRECTORY"),
        ("/static=/no/such/dir/oxgate", "is not a directory"),
    ],
)
def test_bad_static_map_exits_2_with_one_error_line(value, why):
    result = run_oxgate(["--static-map", value, "counter"])
    lines = error_lines(result.stderr)
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and why in lines[0], result.stderr


# --- Django ------------------------------------------------------------------------------


def test_django_static_serves_collected_files(oxgate, django_site):
    manage(django_site, "collectstatic", "--noinput")
    server = oxgate("--chdir", str(django_site), "mysite.wsgi", "--django-static", pythonpath=False)
    css = (django_site / "staticfiles" / "admin" / "css" / "base.css").read_bytes()
    resp = httpx.get(server.url + "/static/admin/css/base.css")
    assert resp.status_code == 200
    assert resp.content == css
    assert resp.headers["content-type"] == "text/css; charset=utf-8"
    # The admin login page links its CSS where oxgate serves it.
    page = httpx.get(server.url + "/admin/login/").text
    assert '/static/admin/css/base.css"' in page
    # Under --root-path, Django prefixes the relative STATIC_URL: so does oxgate.
    server = oxgate(
        "--chdir",
        str(django_site),
        "mysite.wsgi",
        "--django-static",
        "--root-path",
        "/site",
        pythonpath=False,
    )
    assert httpx.get(server.url + "/site/static/admin/css/base.css").content == css


def test_django_static_without_collected_files_fails_with_one_line(tmp_path):
    site = tmp_path / "django_site"
    shutil.copytree(
        EXAMPLES_DIR / "django_site",
        site,
        ignore=shutil.ignore_patterns("db.sqlite3", "__pycache__", "staticfiles"),
    )
    result = run_oxgate(
        ["--chdir", str(site), "mysite.wsgi", "--django-static", "--bind", "127.0.0.1:0"],
        env=base_env(pythonpath=False),
    )
    lines = error_lines(result.stderr)
    assert result.returncode == 4, result.stderr
    assert len(lines) == 1, result.stderr
    assert "STATIC_ROOT" in lines[0] and "collectstatic" in lines[0], lines[0]
