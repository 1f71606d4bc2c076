//! Request-line behaviour of parse_head: method, target forms, version,
//! leading empty lines (RFC 9112 sections 2.2, 3).
#![allow(clippy::unwrap_used)]

mod common;

use common::{parse, status};
use oxgate_proto::{parse_head, Limits, Parsed, ProtoError, Version};

#[test]
fn simple_get_is_parsed() {
    let head = parse(b"GET /index.html?a=1&b=2 HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
    assert_eq!(head.method(), "GET");
    assert_eq!(head.target(), "/index.html?a=1&b=2");
    assert_eq!(head.path(), "/index.html");
    assert_eq!(head.query(), "a=1&b=2");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.host(), Some("example.com"));
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
}

#[test]
fn consumed_stops_at_end_of_head_and_ignores_following_bytes() {
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n";
    match parse_head(raw, &Limits::default()).unwrap() {
        Parsed::Complete(head, consumed) => {
            assert_eq!(consumed, 27);
            assert_eq!(head.path(), "/");
        }
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn empty_buffer_is_partial() {
    assert!(matches!(
        parse_head(b"", &Limits::default()),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn leading_empty_lines_are_skipped_and_counted_in_consumed() {
    let raw = b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    match parse_head(raw, &Limits::default()).unwrap() {
        Parsed::Complete(_, consumed) => assert_eq!(consumed, raw.len()),
        Parsed::Partial => panic!("partial"),
    }
}

#[test]
fn only_empty_lines_is_partial() {
    assert!(matches!(
        parse_head(b"\r\n\r\n\r", &Limits::default()),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn too_many_leading_empty_lines_is_400() {
    // The bound on leading empty lines is max_request_line bytes.
    let limits = Limits {
        max_request_line: 14,
        ..Limits::default()
    };
    let mut ok = b"\r\n".repeat(7);
    ok.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
    assert!(matches!(parse_head(&ok, &limits), Ok(Parsed::Complete(..))));
    let too_many = b"\r\n".repeat(8);
    assert_eq!(parse_head(&too_many, &limits).unwrap_err().status(), 400);
}

#[test]
fn bare_cr_before_request_line_is_400() {
    assert_eq!(status(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn http10_without_host_is_accepted() {
    let head = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(head.version, Version::Http10);
    assert_eq!(head.host(), None);
}

#[test]
fn method_must_be_a_token() {
    assert_eq!(status(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"G\"T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b" / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    // Any token is a method; the app decides what it supports.
    assert_eq!(
        parse(b"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .method(),
        "PURGE"
    );
}

#[test]
fn double_space_in_request_line_is_400() {
    assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn tab_separator_in_request_line_is_400() {
    assert_eq!(status(b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn control_or_non_ascii_byte_in_target_is_400() {
    assert_eq!(status(b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn non_ascii_in_request_line_is_400_before_the_line_ends() {
    let err = parse_head(b"GET /caf\xc3", &Limits::default()).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn http09_request_without_version_is_400() {
    assert_eq!(status(b"GET /\r\n\r\n"), 400);
}

#[test]
fn lowercase_or_malformed_version_is_400() {
    for v in [
        "http/1.1",
        "HTTP/1",
        "HTTP/1.1.1",
        "HTTP/11",
        "HTTP/1.10",
        "HTTPS/1.1",
        "HTTP/a.b",
        "HTTP/",
    ] {
        let raw = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 400, "{v}");
    }
}

#[test]
fn unsupported_major_version_is_505() {
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/3.0", "HTTP/9.9", "HTTP/2.1"] {
        let raw = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 505, "{v}");
    }
}

#[test]
fn higher_minor_version_is_served_as_http11() {
    // RFC 9110 section 2.5: process it as the highest minor we implement,
    // with 1.1's rules (Host required, persistent by default).
    for v in ["HTTP/1.2", "HTTP/1.9"] {
        let raw = format!("GET / {v}\r\nHost: a\r\n\r\n");
        let head = parse(raw.as_bytes()).unwrap();
        assert_eq!(head.version, Version::Http11, "{v}");
        assert!(head.keep_alive, "{v}");
        let no_host = format!("GET / {v}\r\n\r\n");
        assert_eq!(status(no_host.as_bytes()), 400, "{v}");
    }
}

#[test]
fn http2_preface_is_505_as_soon_as_the_request_line_ends() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    assert_eq!(
        parse_head(preface, &Limits::default()).unwrap_err(),
        ProtoError::VersionNotSupported
    );
    assert_eq!(
        parse_head(&preface[..16], &Limits::default()).unwrap_err(),
        ProtoError::VersionNotSupported
    );
}

#[test]
fn request_line_with_bare_lf_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
}

#[test]
fn origin_form_keeps_percent_encoding_and_splits_first_question_mark() {
    let head = parse(b"GET /a%20b/c?x=1?y=2 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(head.path(), "/a%20b/c");
    assert_eq!(head.query(), "x=1?y=2");
    let head = parse(b"GET /p? HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!((head.path(), head.query()), ("/p", ""));
    let head = parse(b"GET //x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(head.path(), "//x");
}

#[test]
fn fragment_in_target_is_400() {
    assert_eq!(status(b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"GET /a?q#frag HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn absolute_form_takes_host_from_target() {
    let head =
        parse(b"GET http://Other.example:8080/p/q?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .unwrap();
    assert_eq!(head.host(), Some("Other.example:8080"));
    assert_eq!(head.path(), "/p/q");
    assert_eq!(head.query(), "x=1");
    assert_eq!(head.target(), "http://Other.example:8080/p/q?x=1");
}

#[test]
fn absolute_form_scheme_is_case_insensitive_and_https_is_accepted() {
    let head = parse(b"GET HTTPS://h/ HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(head.host(), Some("h"));
    assert_eq!(head.path(), "/");
}

#[test]
fn absolute_form_with_empty_path_has_path_slash() {
    let head = parse(b"GET http://h HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!((head.path(), head.query()), ("/", ""));
    let head = parse(b"GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!((head.path(), head.query()), ("/", "q=1"));
}

#[test]
fn absolute_form_with_userinfo_is_400() {
    assert_eq!(
        status(b"GET http://user:pw@h/ HTTP/1.1\r\nHost: h\r\n\r\n"),
        400
    );
    assert_eq!(status(b"GET http://@h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn absolute_form_with_empty_or_invalid_host_is_400() {
    assert_eq!(status(b"GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET http://:80/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET http://h:8x/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET http://h\\x/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn absolute_form_with_other_scheme_is_400() {
    assert_eq!(status(b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    assert_eq!(status(b"GET http:/h HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

#[test]
fn asterisk_form_is_accepted_for_options_only() {
    let head = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!((head.path(), head.query(), head.target()), ("*", "", "*"));
    assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status(b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn connect_is_501() {
    assert_eq!(
        status(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        501
    );
}

#[test]
fn target_in_no_known_form_is_400() {
    assert_eq!(status(b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
        400
    );
    assert_eq!(status(b"GET ?q HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

#[test]
fn request_line_errors_come_before_header_section_is_complete() {
    let err = parse_head(b"GET foo HTTP/1.1\r\nHost: a\r\n", &Limits::default()).unwrap_err();
    assert_eq!(err.status(), 400);
}
