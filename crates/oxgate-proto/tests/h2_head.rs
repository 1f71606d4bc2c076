//! HTTP/2 header sections become the same RequestHead an HTTP/1.1 request
//! would, under the same rules and limits.
#![allow(clippy::unwrap_used)]

use oxgate_proto::h2_head::{head_from_h2, H2Request};
use oxgate_proto::{BodyFraming, Limits, ProtoError, Version};

fn req<'a>(
    method: &'a str,
    authority: Option<&'a str>,
    path: &'a str,
    fields: &'a [(&'a str, &'a [u8])],
    end_stream: bool,
) -> H2Request<'a> {
    H2Request {
        method,
        authority,
        path,
        fields,
        end_stream,
    }
}

#[test]
fn pseudo_headers_map_to_method_target_and_host() {
    let fields: &[(&str, &[u8])] = &[("user-agent", b"t/1"), ("accept", b"*/*")];
    let r = req(
        "GET",
        Some("example.com:8443"),
        "/a%20b?x=1&y",
        fields,
        true,
    );
    let head = head_from_h2(r, &Limits::default()).unwrap();
    assert_eq!(head.version, Version::Http2);
    assert_eq!(head.version.as_str(), "HTTP/2");
    assert_eq!(head.method(), "GET");
    assert_eq!(head.target(), "/a%20b?x=1&y");
    assert_eq!(head.path(), "/a%20b");
    assert_eq!(head.query(), "x=1&y");
    assert_eq!(head.host(), Some("example.com:8443"));
    assert_eq!(head.header("user-agent"), Some(&b"t/1"[..]));
    assert_eq!(head.framing, BodyFraming::None);
    assert!(head.keep_alive);
}

#[test]
fn cookie_fields_are_joined_with_semicolons() {
    let fields: &[(&str, &[u8])] = &[("cookie", b"a=1"), ("x", b"y"), ("cookie", b"b=2")];
    let head = head_from_h2(req("GET", Some("h"), "/", fields, true), &Limits::default()).unwrap();
    let cookies: Vec<_> = head.headers().filter(|h| h.name == "cookie").collect();
    assert_eq!(cookies.len(), 1);
    assert_eq!(cookies[0].value, b"a=1; b=2");
    let gaps: &[(&str, &[u8])] = &[("cookie", b"a=1"), ("cookie", b""), ("cookie", b"b=2")];
    let head = head_from_h2(req("GET", Some("h"), "/", gaps, true), &Limits::default()).unwrap();
    assert_eq!(head.header("cookie"), Some(&b"a=1; b=2"[..]));
}

#[test]
fn a_host_field_must_agree_with_the_authority() {
    let same: &[(&str, &[u8])] = &[("host", b"EXAMPLE.com")];
    let head = head_from_h2(
        req("GET", Some("example.com"), "/", same, true),
        &Limits::default(),
    );
    assert_eq!(head.unwrap().host(), Some("example.com"));
    let other: &[(&str, &[u8])] = &[("host", b"evil.example")];
    let err = head_from_h2(
        req("GET", Some("example.com"), "/", other, true),
        &Limits::default(),
    );
    assert_eq!(err.unwrap_err().status(), 400);
    // Without :authority the Host field is the host, as in HTTP/1.1.
    let head = head_from_h2(req("GET", None, "/", other, true), &Limits::default()).unwrap();
    assert_eq!(head.host(), Some("evil.example"));
    // With neither, the request names no host at all.
    let err = head_from_h2(req("GET", None, "/", &[], true), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
}

#[test]
fn body_framing_follows_content_length_or_the_stream() {
    let sized: &[(&str, &[u8])] = &[("content-length", b"5")];
    let head = head_from_h2(
        req("POST", Some("h"), "/", sized, false),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(head.framing, BodyFraming::Length(5));
    let head = head_from_h2(req("POST", Some("h"), "/", &[], false), &Limits::default()).unwrap();
    assert_eq!(head.framing, BodyFraming::Chunked);
    let head = head_from_h2(req("POST", Some("h"), "/", &[], true), &Limits::default()).unwrap();
    assert_eq!(head.framing, BodyFraming::None);
    let bad: &[(&str, &[u8])] = &[("content-length", b"5, 6")];
    let err = head_from_h2(req("POST", Some("h"), "/", bad, false), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
}

#[test]
fn expect_continue_only_matters_with_a_body() {
    let fields: &[(&str, &[u8])] = &[("expect", b"100-continue"), ("content-length", b"9")];
    let head = head_from_h2(
        req("PUT", Some("h"), "/", fields, false),
        &Limits::default(),
    )
    .unwrap();
    assert!(head.expect_continue);
    let head = head_from_h2(req("PUT", Some("h"), "/", fields, true), &Limits::default()).unwrap();
    assert!(!head.expect_continue);
}

#[test]
fn the_http1_limits_apply() {
    let limits = Limits {
        max_request_line: 64,
        max_headers: 3,
        max_header_size: 40,
    };
    let long_path = format!("/{}", "a".repeat(80));
    let err = head_from_h2(req("GET", Some("h"), &long_path, &[], true), &limits);
    assert_eq!(err.unwrap_err(), ProtoError::UriTooLong);
    let many: &[(&str, &[u8])] = &[("a", b"1"), ("b", b"2"), ("c", b"3")];
    let err = head_from_h2(req("GET", Some("h"), "/", many, true), &limits);
    assert_eq!(err.unwrap_err().status(), 431);
    let big = [("a", &[b'x'; 60][..])];
    let err = head_from_h2(req("GET", Some("h"), "/", &big, true), &limits);
    assert_eq!(err.unwrap_err().status(), 431);
}

#[test]
fn what_cannot_be_a_wsgi_request_is_refused() {
    let err = head_from_h2(
        req("CONNECT", Some("h:443"), "", &[], false),
        &Limits::default(),
    );
    assert_eq!(err.unwrap_err().status(), 501);
    let split: &[(&str, &[u8])] = &[("x", b"a\r\nInjected: 1")];
    let err = head_from_h2(req("GET", Some("h"), "/", split, true), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
    // Cookies are joined before they are written: checked all the same.
    let crumb: &[(&str, &[u8])] = &[("cookie", b"a=1\r\nX-Injected: 1"), ("cookie", b"b=2")];
    let err = head_from_h2(req("GET", Some("h"), "/", crumb, true), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
    let err = head_from_h2(req("GET", Some("h"), "/a b", &[], true), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
    let err = head_from_h2(
        req("GET", Some("bad host"), "/", &[], true),
        &Limits::default(),
    );
    assert_eq!(err.unwrap_err().status(), 400);
    // Nothing may end a line of the head early, whatever h2 let through.
    let smuggle = "/x HTTP/1.1\r\nHost: h\r\n\r\nGET /y";
    let err = head_from_h2(
        req("GET", Some("h"), smuggle, &[], true),
        &Limits::default(),
    );
    assert_eq!(err.unwrap_err().status(), 400);
    let named: &[(&str, &[u8])] = &[("x: 1\r\ny", b"z")];
    let err = head_from_h2(req("GET", Some("h"), "/", named, true), &Limits::default());
    assert_eq!(err.unwrap_err().status(), 400);
}
