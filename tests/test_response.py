"""The response side of PEP 3333: start_response, write(), framing, close(), errors."""

from __future__ import annotations

import os

import pytest
from support import (
    IncompleteResponse,
    read_events,
    simple_request,
    wait_event,
)
from wsgi_responses import BAD_RESPONSES


# With one thread a fast app runs on the I/O thread; with more, an app
# thread writes each response itself: PEP 3333 holds either way.
@pytest.fixture(params=["1", "4"], ids=["inline", "app-thread"])
def resp_server(oxgate, request):
    return oxgate("wsgi_responses", "--threads", request.param)


def get(server, path: str, version: str = "HTTP/1.1", method: str = "GET"):
    with server.connect() as conn:
        return conn.request(simple_request(method, path, version=version), method=method)


def assert_still_serving(server):
    resp = get(server, "/single")
    assert resp.status == 200 and resp.body == b"single item body"


# --- start_response validation -----------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BAD_RESPONSES))
def test_invalid_status_or_headers_are_a_500_and_an_error_log_line(resp_server, kind):
    with resp_server.connect() as conn:
        conn.send(simple_request(target=f"/bad/{kind}"))
        resp = conn.read_response()
    assert resp.status == 500, resp
    raw = resp.raw_head.lower()
    assert b"x-injected" not in raw
    assert b"x-bad" not in raw
    assert b"must not be sent" not in resp.body
    resp_server.wait_for_stderr(r"\[ERROR\]")
    assert_still_serving(resp_server)


def test_invalid_headers_given_while_iterating_are_500_and_close_called(resp_server, events_file):
    resp = get(resp_server, "/bad-lazy")
    assert resp.status == 500
    assert b"x-injected" not in resp.raw_head.lower()
    assert b"must not be sent" not in resp.body
    wait_event(events_file, "close:/bad-lazy")


# --- exc_info ----------------------------------------------------------------------------


def test_exc_info_before_headers_are_sent_replaces_the_response(resp_server, events_file):
    resp = get(resp_server, "/exc-info-before-headers")
    assert resp.status == 503
    assert resp.body == b"replaced response"
    assert resp.header("X-Replaced") == "yes"
    assert not resp.has_header("X-Discarded")
    assert "exc-info-before:replaced" in read_events(events_file)


def test_exc_info_after_headers_are_sent_is_reraised_and_connection_cut(resp_server, events_file):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/exc-info-after-headers"))
        with pytest.raises(IncompleteResponse) as cut:
            conn.read_response()
    assert cut.value.partial.startswith(b"first part;")
    assert b"must not be sent" not in cut.value.partial
    wait_event(events_file, "exc-info-after:reraised")
    assert "exc-info-after:not-reraised" not in read_events(events_file)
    assert_still_serving(resp_server)


def test_second_start_response_without_exc_info_raises(resp_server, events_file):
    resp = get(resp_server, "/start-response-twice")
    assert resp.status == 500
    assert any(e.startswith("twice:raised:") for e in read_events(events_file))


# --- write() and framing -----------------------------------------------------------------


def test_write_callable_sends_before_the_returned_iterable(resp_server):
    resp = get(resp_server, "/write")
    assert resp.status == 200
    assert resp.body == b"written-returned"


def test_start_response_without_headers_is_a_500_naming_the_missing_argument(resp_server):
    resp = get(resp_server, "/start-response-without-headers")
    assert resp.status == 500 and b"must not be sent" not in resp.body
    resp_server.wait_for_stderr(r"missing 1 required positional argument: 'headers'")
    assert_still_serving(resp_server)


def test_write_of_a_str_is_a_500_naming_the_type(resp_server):
    resp = get(resp_server, "/write-str")
    assert resp.status == 500 and b"must not be sent" not in resp.body
    resp_server.wait_for_stderr(r"write\(\) takes bytes, not str")
    assert_still_serving(resp_server)


def test_write_callable_alone_with_empty_iterable(resp_server):
    assert get(resp_server, "/write-only").body == b"only written"


def test_single_item_list_gets_content_length(resp_server):
    resp = get(resp_server, "/single-list")
    assert resp.header("Content-Length") == str(len(b"single item body"))
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == b"single item body"


def test_single_item_sequence_with_close_gets_content_length(resp_server, events_file):
    """PEP 3333: any iterable whose len() is 1, not only an exact list."""
    resp = get(resp_server, "/single")
    assert resp.header("Content-Length") == str(len(b"single item body"))
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == b"single item body"
    wait_event(events_file, "close:/single")


def test_sized_and_unsized_iterables_in_turn_each_get_their_framing(resp_server):
    # Whether a response type has a len() is remembered for the last type seen:
    # types taking turns must each be asked again.
    for path in ("/generator", "/single", "/generator", "/single", "/single", "/generator"):
        resp = get(resp_server, path)
        assert resp.status == 200, (path, resp)
        if path == "/single":
            assert resp.header("Content-Length") == str(len(resp.body)), path
            assert not resp.chunked
        else:
            assert resp.chunked and not resp.has_header("Content-Length"), path


def test_generator_response_is_chunked_on_http11(resp_server):
    resp = get(resp_server, "/generator")
    assert resp.chunked
    assert (resp.header("Transfer-Encoding") or "").lower() == "chunked"
    assert not resp.has_header("Content-Length")
    assert resp.body == b"one,two,three"


def test_generator_response_on_http10_is_close_delimited(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/generator", version="HTTP/1.0", host=None))
        resp = conn.read_head()
        assert not resp.has_header("Transfer-Encoding")
        assert not resp.has_header("Content-Length")
        assert conn.read_until_close() == b"one,two,three"


def test_app_content_length_is_honoured_and_extra_bytes_not_sent(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/cl-longer-body") + simple_request(target="/single"))
        first = conn.read_response()
        assert first.header("Content-Length") == "5"
        assert first.body == b"hello"
        # the next bytes on the wire must be the next response, not leftovers
        second = conn.read_response()
    assert second.status == 200
    assert second.body == b"single item body"


def test_app_content_length_longer_than_body_closes_the_connection(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/cl-shorter-body"))
        head = conn.read_head()
        assert head.header("Content-Length") == "100"
        assert conn.wait_closed(5) == b"0123456789"
    assert_still_serving(resp_server)


def test_head_request_gets_no_body(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request("HEAD", "/generator") + simple_request(target="/single"))
        head = conn.read_response(method="HEAD")
        nxt = conn.read_response()
    assert head.status == 200
    assert nxt.body == b"single item body", "HEAD response body leaked onto the wire"


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_responses_get_no_body(resp_server, code):
    with resp_server.connect() as conn:
        conn.send(simple_request(target=f"/status?code={code}") + simple_request(target="/single"))
        resp = conn.read_response()
        nxt = conn.read_response()
    assert resp.status == code
    assert not resp.has_header("Transfer-Encoding")
    assert nxt.status == 200 and nxt.body == b"single item body", "a body was sent"


# --- close() on every path ---------------------------------------------------------------


def test_close_is_called_after_a_normal_response(resp_server, events_file):
    assert get(resp_server, "/generator").status == 200
    wait_event(events_file, "close:/generator")


def test_close_is_called_when_iteration_raises(resp_server, events_file):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/raise-midway"))
        with pytest.raises(IncompleteResponse):
            conn.read_response()
    wait_event(events_file, "close:/raise-midway")


def test_close_is_called_when_client_disconnects_midway(resp_server, events_file):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/endless"))
        head = conn.read_head()
        assert head.status == 200
        conn.abort()
    wait_event(events_file, "close:/endless", timeout=15)
    assert_still_serving(resp_server)


# --- app exceptions ----------------------------------------------------------------------


def test_exception_before_headers_is_500_with_traceback_in_error_log(resp_server):
    resp = get(resp_server, "/raise-before-headers")
    assert resp.status == 500
    assert b"oxgate-test" not in resp.body, "the traceback must not reach the client"
    resp_server.wait_for_stderr(r"\[ERROR\]")
    resp_server.wait_for_stderr(r"Traceback \(most recent call last\)")
    resp_server.wait_for_stderr(r"RuntimeError: oxgate-test: exception before headers")
    assert_still_serving(resp_server)


def test_exception_in_first_iteration_is_500_and_close_called(resp_server, events_file):
    resp = get(resp_server, "/raise-in-first-next")
    assert resp.status == 500
    resp_server.wait_for_stderr(r"RuntimeError: oxgate-test: iteration failed")
    wait_event(events_file, "close:/raise-in-first-next")


def test_exception_after_headers_cuts_the_chunked_response(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/raise-midway"))
        head = conn.read_head()
        assert head.status == 200
        with pytest.raises(IncompleteResponse):
            conn._read_chunked(head)  # no terminating zero-size chunk may come
    resp_server.wait_for_stderr(r"RuntimeError: oxgate-test: iteration failed")
    assert_still_serving(resp_server)


def test_exception_after_headers_on_http10_closes_the_connection(resp_server):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/raise-midway-http10", version="HTTP/1.0"))
        head = conn.read_head()
        assert head.status == 200
        assert conn.wait_closed(5) == b"partial;"
    assert_still_serving(resp_server)


# --- wsgi.file_wrapper -------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "payload.bin"
    path.write_bytes(os.urandom(300_000))
    return path


def test_file_wrapper_sends_a_real_file_completely(resp_server, data_file, events_file):
    resp = get(resp_server, f"/file?path={data_file}&cl=1")
    assert resp.status == 200
    assert resp.header("Content-Length") == str(data_file.stat().st_size)
    assert resp.body == data_file.read_bytes()
    wait_event(events_file, "file-closed")


def test_file_wrapper_without_content_length_still_sends_the_whole_file(resp_server, data_file):
    resp = get(resp_server, f"/file?path={data_file}")
    assert resp.status == 200
    assert resp.body == data_file.read_bytes()


def test_file_wrapper_starts_at_the_file_position(resp_server, data_file):
    resp = get(resp_server, f"/file?path={data_file}&offset=1000&cl=1")
    assert resp.header("Content-Length") == str(data_file.stat().st_size - 1000)
    assert resp.body == data_file.read_bytes()[1000:]


def test_a_file_answered_by_an_app_thread_goes_out_at_once(oxgate, data_file):
    """An app thread writes what the socket takes at the end of its response, but a
    file is the I/O thread's to send: it must be told then, not find out once the
    keep-alive has run out."""
    server = oxgate("wsgi_responses", "--threads", "4", "--keep-alive", "60")
    with server.connect(timeout=5) as conn:
        resp = conn.request(simple_request(target=f"/file?path={data_file}&cl=1"))
        assert resp.body == data_file.read_bytes()
        assert conn.request(simple_request(target="/single")).body == b"single item body"


def test_file_wrapper_on_http10_sends_the_whole_file(resp_server, data_file):
    with resp_server.connect() as conn:
        conn.send(simple_request(target=f"/file?path={data_file}", version="HTTP/1.0"))
        conn.read_head()
        assert conn.read_until_close() == data_file.read_bytes()


def test_file_wrapper_over_file_like_without_fileno_is_read_in_blocks(resp_server, events_file):
    resp = get(resp_server, "/filelike")
    assert resp.status == 200
    assert resp.body == b"".join(b"block%02d;" % i for i in range(10))
    wait_event(events_file, "filelike-closed")
    reads = [e for e in read_events(events_file) if e.startswith("filelike-read:")]
    assert reads and set(reads) == {"filelike-read:7"}


# --- wsgi.errors -------------------------------------------------------------------------


def test_wsgi_errors_writes_go_to_the_error_log(resp_server):
    assert get(resp_server, "/wsgi-errors").body == b"logged"
    resp_server.wait_for_stderr(r"oxgate-test wsgi\.errors write marker")
    resp_server.wait_for_stderr(r"oxgate-test wsgi\.errors writelines marker")


def test_wsgi_errors_writes_go_to_the_error_log_file(oxgate, tmp_path):
    log = tmp_path / "error.log"
    server = oxgate("wsgi_responses", "--error-logfile", str(log), ready=log)
    assert get(server, "/wsgi-errors").body == b"logged"
    server.stop()
    assert "oxgate-test wsgi.errors write marker" in log.read_text()


# --- more app mistakes and shapes --------------------------------------------------------


def test_app_that_never_calls_start_response_is_500_and_close_called(resp_server, events_file):
    resp = get(resp_server, "/no-start-response")
    assert resp.status == 500
    assert b"never called" not in resp.body
    resp_server.wait_for_stderr(r"\[ERROR\]")
    wait_event(events_file, "close:/no-start-response")


def test_str_body_item_is_500_logged_and_close_called(resp_server, events_file):
    resp = get(resp_server, "/str-body")
    assert resp.status == 500
    assert b"a str, not bytes" not in resp.body
    resp_server.wait_for_stderr(r"\[ERROR\]")
    wait_event(events_file, "close:/str-body")
    assert_still_serving(resp_server)


def test_str_body_item_after_headers_cuts_the_connection(resp_server, events_file):
    with resp_server.connect() as conn:
        conn.send(simple_request(target="/str-body-midway"))
        with pytest.raises(IncompleteResponse) as cut:
            conn.read_response()
    assert b"then a str" not in cut.value.partial
    wait_event(events_file, "close:/str-body-midway")


def test_app_returning_none_is_500_and_logged(resp_server):
    assert get(resp_server, "/none").status == 500
    resp_server.wait_for_stderr(r"\[ERROR\]")
    assert_still_serving(resp_server)


@pytest.mark.parametrize("path", ["/empty-generator", "/empty-list"])
def test_empty_response_body_keeps_the_connection_usable(resp_server, path):
    with resp_server.connect() as conn:
        conn.send(simple_request(target=path) + simple_request(target="/single-list"))
        empty = conn.read_response()
        nxt = conn.read_response()
    assert empty.status == 200 and empty.body == b""
    assert nxt.body == b"single item body"


def test_many_small_chunks_arrive_complete_and_in_order(resp_server, events_file):
    resp = get(resp_server, "/many-chunks")
    assert resp.body == b"".join(b"%04d," % i for i in range(2000))
    wait_event(events_file, "close:/many-chunks")


def test_large_single_item_body_is_sent_completely(resp_server):
    size = 8 * 1024 * 1024 + 7
    resp = get(resp_server, f"/big?size={size}")
    assert resp.header("Content-Length") == str(size)
    assert len(resp.body) == size
    assert resp.body[:512] == bytes(range(256)) * 2
    assert resp.body.endswith(b"x" * 7)


def test_repeated_response_headers_are_sent_separately(resp_server):
    resp = get(resp_server, "/set-cookies")
    assert resp.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_a_latin1_header_value_goes_out_as_latin1_bytes(resp_server):
    # PEP 3333: header values are native strings holding latin-1 code points.
    resp = get(resp_server, "/latin1-header")
    assert resp.status == 200
    assert b"\r\nX-Latin: caf\xe9 \xff\r\n" in resp.raw_head


def test_status_line_reason_phrase_is_passed_through(resp_server):
    resp = get(resp_server, "/custom-status")
    assert resp.status == 299
    assert resp.reason == "Entirely Custom Reason"
    assert resp.body == b"custom"


def test_file_wrapper_head_request_sends_no_body(resp_server, data_file):
    with resp_server.connect() as conn:
        conn.send(
            simple_request("HEAD", f"/file?path={data_file}&cl=1")
            + simple_request(target="/single-list")
        )
        head = conn.read_response(method="HEAD")
        nxt = conn.read_response()
    assert head.header("Content-Length") == str(data_file.stat().st_size)
    assert nxt.body == b"single item body", "file bytes leaked after a HEAD response"


# --- objects a connection's requests share -------------------------------------------------


def test_each_request_on_a_connection_reads_its_own_body(oxgate):
    server = oxgate("keeper_app")
    with server.connect() as conn:
        for body in (b"one", b"", b"three" * 1000, b"4"):
            conn.send(simple_request("POST", "/plain", body=body))
            resp = conn.read_response()
            assert resp.status == 200 and resp.json()["body"] == body.decode()


def test_wsgi_input_and_start_response_kept_past_their_request_are_inert(oxgate):
    # oxgate hands a connection's next request the same objects when nobody
    # else holds them; ones the app kept must neither be handed out again
    # nor reach the next request's body or response.
    server = oxgate("keeper_app")
    with server.connect() as conn:
        conn.send(simple_request("POST", "/keep", body=b"secret"))
        assert conn.read_response().json()["body"] == "se"
        conn.send(simple_request("POST", "/kept", body=b"second"))
        resp = conn.read_response()
        assert resp.status == 200, resp
        out = resp.json()
        assert out["body"] == "second"
        assert not out["kept_is_current"] and not out["kept_start_is_current"]
        assert out["kept_body"] == ""
        assert out["kept_write"] == "OSError"
        assert b"from an old request" not in resp.body
        conn.send(simple_request("POST", "/plain", body=b"third"))
        assert conn.read_response().json()["body"] == "third"


def test_a_kept_write_callable_is_not_handed_to_the_next_request(oxgate):
    # The app gets start_response as a method of the object start_response
    # returns as write(); keeping only write() must keep the object out of
    # the next request too.
    server = oxgate("keeper_app")
    with server.connect() as conn:
        conn.send(simple_request("POST", "/keep-write", body=b"x"))
        assert conn.read_response().status == 200
        conn.send(simple_request("POST", "/kept-write", body=b"y"))
        resp = conn.read_response()
        assert resp.status == 200, resp
        out = resp.json()
        assert out == {"body": "y", "kept_write_is_current": False, "kept_write": "OSError"}
        conn.send(simple_request("POST", "/plain", body=b"z"))
        assert conn.read_response().json()["body"] == "z"
