//! Header-section behaviour of parse_head: field syntax (RFC 9112 section 5),
//! Host (section 3.2), persistence (section 9.3) and Expect.
#![allow(clippy::unwrap_used)]

mod common;

use common::{get_with, parse, status};
use oxgate_proto::{connection_has_token, parse_head, Header, Limits, Version};

#[test]
fn header_names_keep_case_and_values_lose_ows() {
    let head = parse(&get_with(&[
        "X-Thing: \t a value \t",
        "x-empty:",
        "X-Tight:v",
    ]))
    .unwrap();
    assert_eq!(
        head.headers().skip(1).collect::<Vec<_>>(),
        [
            Header {
                name: "X-Thing",
                value: b"a value"
            },
            Header {
                name: "x-empty",
                value: b""
            },
            Header {
                name: "X-Tight",
                value: b"v"
            },
        ]
    );
    assert_eq!(head.header("x-thing"), Some(&b"a value"[..]));
}

#[test]
fn obs_text_in_header_value_is_kept_as_raw_bytes() {
    let head = parse(b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n").unwrap();
    assert_eq!(head.header("x-name"), Some(&b"caf\xc3\xa9 \xff"[..]));
}

#[test]
fn whitespace_between_header_name_and_colon_is_400() {
    assert_eq!(status(&get_with(&["X-Foo : bar"])), 400);
    assert_eq!(status(&get_with(&["Content-Length\t: 0"])), 400);
}

#[test]
fn obs_fold_is_400() {
    assert_eq!(status(&get_with(&["X-Foo: bar", " continued"])), 400);
    assert_eq!(status(&get_with(&["X-Foo: bar", "\tcontinued"])), 400);
}

#[test]
fn whitespace_before_first_header_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
}

#[test]
fn header_without_colon_is_400() {
    assert_eq!(status(&get_with(&["X-Foo bar"])), 400);
}

#[test]
fn empty_or_invalid_header_name_is_400() {
    assert_eq!(status(&get_with(&[": bar"])), 400);
    assert_eq!(status(&get_with(&["X(Foo): bar"])), 400);
    assert_eq!(status(&get_with(&["X\u{e9}: bar"])), 400);
}

#[test]
fn bare_lf_in_header_section_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\n\n"), 400);
}

#[test]
fn bare_cr_in_header_section_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\rX: y\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), 400);
}

#[test]
fn nul_and_control_characters_in_header_value_are_400() {
    for bad in [&b"\x00"[..], b"\x01", b"\x1f", b"\x7f", b"\x0b", b"\x0c"] {
        let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: a".to_vec();
        raw.extend_from_slice(bad);
        raw.extend_from_slice(b"b\r\n\r\n");
        assert_eq!(status(&raw), 400, "{bad:?}");
    }
}

#[test]
fn htab_inside_header_value_is_allowed() {
    let head = parse(&get_with(&["X: a\tb"])).unwrap();
    assert_eq!(head.header("x"), Some(&b"a\tb"[..]));
}

#[test]
fn control_character_in_header_is_400_before_the_head_ends() {
    let err = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00", &Limits::default()).unwrap_err();
    assert_eq!(err.status(), 400);
    let err = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nX Y", &Limits::default()).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn http11_without_host_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GET http://h/ HTTP/1.1\r\n\r\n"), 400);
}

#[test]
fn more_than_one_host_header_is_400() {
    assert_eq!(status(&get_with(&["Host: example.com"])), 400);
    assert_eq!(status(&get_with(&["host: other.example"])), 400);
    assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

#[test]
fn invalid_host_value_is_400() {
    for bad in [
        "a b",
        "a/b",
        "user@a",
        "a:80:81",
        "a,b",
        "[::1",
        "caf\u{e9}",
        ":8080",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 400, "{bad}");
    }
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n"), 400);
}

#[test]
fn valid_host_values_are_accepted() {
    for ok in [
        "example.com",
        "example.com:8080",
        "127.0.0.1",
        "[::1]:8000",
        "[2001:db8::1]",
        "EXAMPLE.com",
        "a_b.local",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {ok}\r\n\r\n");
        assert_eq!(parse(raw.as_bytes()).unwrap().host(), Some(ok));
    }
}

#[test]
fn empty_port_is_dropped_from_host() {
    // RFC 9110 section 4.2.3: an empty port is the default port; keeping the
    // ':' would hand the app an empty SERVER_PORT (PEP 3333 forbids it).
    for (raw_host, host) in [("t:", "t"), ("[::1]:", "[::1]"), ("t:80", "t:80")] {
        let raw = format!("GET / HTTP/1.1\r\nHost: {raw_host}\r\n\r\n");
        let head = parse(raw.as_bytes()).unwrap();
        assert_eq!(head.host(), Some(host), "{raw_host}");
        assert_eq!(head.header("host"), Some(raw_host.as_bytes()));
    }
    let head = parse(b"GET http://a:/p HTTP/1.1\r\nHost: b\r\n\r\n").unwrap();
    assert_eq!(head.host(), Some("a"));
    assert_eq!(head.target(), "http://a:/p");
}

#[test]
fn empty_host_header_is_accepted_with_no_host() {
    let head = parse(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").unwrap();
    assert_eq!(head.host(), None);
    assert_eq!(head.header("host"), Some(&b""[..]));
}

#[test]
fn http11_keeps_alive_unless_connection_close() {
    assert!(parse(&get_with(&[])).unwrap().keep_alive);
    assert!(
        parse(&get_with(&["Connection: keep-alive"]))
            .unwrap()
            .keep_alive
    );
    assert!(!parse(&get_with(&["Connection: close"])).unwrap().keep_alive);
    assert!(
        !parse(&get_with(&["Connection: Upgrade, CLOSE"]))
            .unwrap()
            .keep_alive
    );
    assert!(
        !parse(&get_with(&["Connection: upgrade", "Connection: close"]))
            .unwrap()
            .keep_alive
    );
    // A token that merely contains "close" is another option.
    assert!(
        parse(&get_with(&["Connection: closed"]))
            .unwrap()
            .keep_alive
    );
}

#[test]
fn http10_closes_unless_connection_keep_alive() {
    assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
    assert!(
        parse(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        parse(b"GET / HTTP/1.0\r\nConnection: foo , keep-alive\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        !parse(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
            .unwrap()
            .keep_alive
    );
}

#[test]
fn connection_has_token_matches_whole_tokens_across_headers() {
    let head = parse(&get_with(&[
        "Connection: Upgrade",
        "Connection: foo, HTTP2-Settings",
    ]))
    .unwrap();
    assert!(connection_has_token(&head, "upgrade"));
    assert!(connection_has_token(&head, "http2-settings"));
    assert!(!connection_has_token(&head, "close"));
    assert!(!connection_has_token(&head, "fo"));
}

#[test]
fn expect_100_continue_is_flagged_for_http11_only() {
    assert!(
        parse(&get_with(&["Expect: 100-continue"]))
            .unwrap()
            .expect_continue
    );
    assert!(
        parse(&get_with(&["Expect: 100-Continue "]))
            .unwrap()
            .expect_continue
    );
    assert!(
        !parse(&get_with(&["Expect: something-else"]))
            .unwrap()
            .expect_continue
    );
    let head =
        parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap();
    assert_eq!(head.version, Version::Http10);
    assert!(!head.expect_continue);
}

#[test]
fn header_names_with_underscore_are_parsed_and_left_to_environ() {
    let head = parse(&get_with(&["X_Forwarded_For: 1.2.3.4"])).unwrap();
    assert_eq!(head.header("x_forwarded_for"), Some(&b"1.2.3.4"[..]));
}
