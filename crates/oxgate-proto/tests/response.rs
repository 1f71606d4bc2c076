//! Response rules: start_response status and header checks (PEP 3333),
//! hop-by-hop names, app Content-Length, and response framing.
#![allow(clippy::unwrap_used)]

use oxgate_proto::response::{
    is_hop_by_hop, parse_content_length, response_framing, validate_header, validate_status,
};
use oxgate_proto::{ResponseFraming, ResponseHeaderError, Version};

#[test]
fn valid_statuses_return_their_code() {
    assert_eq!(validate_status("200 OK"), Ok(200));
    assert_eq!(validate_status("404 Not Found"), Ok(404));
    assert_eq!(validate_status("599 Custom\tthing"), Ok(599));
    assert_eq!(validate_status("999 Whatever"), Ok(999));
    assert_eq!(validate_status("100 Continue"), Ok(100));
    assert_eq!(validate_status("200 "), Ok(200));
    assert_eq!(validate_status("200 D\u{e9}j\u{e0} vu"), Ok(200));
}

#[test]
fn status_without_space_and_reason_is_refused() {
    for bad in [
        "200",
        "200OK",
        "2000 OK",
        "20 OK",
        " 200 OK",
        "abc OK",
        "2x0 OK",
        "",
        "\u{661}\u{662}\u{663} OK",
    ] {
        assert!(
            matches!(validate_status(bad), Err(ResponseHeaderError::BadStatus(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn status_code_below_100_is_refused() {
    assert!(validate_status("099 Low").is_err());
    assert!(validate_status("000 Zero").is_err());
}

#[test]
fn status_reason_with_control_characters_is_refused() {
    for bad in [
        "200 OK\r\nX: y",
        "200 OK\n",
        "200 O\0K",
        "200 O\u{7f}K",
        "200 O\u{1b}K",
        "200 \u{20ac}",
    ] {
        assert!(
            matches!(validate_status(bad), Err(ResponseHeaderError::BadStatus(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn status_error_message_is_human_readable() {
    let err = validate_status("2000 OK").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid status \"2000 OK\": must be 3 digits, a space and a reason phrase"
    );
}

#[test]
fn valid_headers_pass() {
    assert_eq!(
        validate_header("Content-Type", "text/html; charset=utf-8"),
        Ok(())
    );
    assert_eq!(validate_header("X-Empty", ""), Ok(()));
    assert_eq!(validate_header("X-Tab", "a\tb"), Ok(()));
    assert_eq!(validate_header("X-Latin1", "caf\u{e9} \u{ff}"), Ok(()));
    assert_eq!(validate_header("!#$%&'*+-.^_`|~09az", "v"), Ok(()));
}

#[test]
fn header_name_that_is_not_a_token_is_refused() {
    for bad in [
        "",
        "X Foo",
        "X:Foo",
        "X\r\nY",
        "X(",
        "Caf\u{e9}",
        "X\"",
        "X\t",
    ] {
        assert!(
            matches!(
                validate_header(bad, "v"),
                Err(ResponseHeaderError::BadName(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn header_value_with_cr_lf_nul_or_controls_is_refused() {
    for bad in [
        "a\rb",
        "a\nb",
        "a\r\nSet-Cookie: x",
        "a\0b",
        "a\u{1}",
        "a\u{7f}",
        "a\u{0b}",
    ] {
        assert!(
            matches!(
                validate_header("X", bad),
                Err(ResponseHeaderError::BadValue(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn header_value_beyond_latin1_is_refused() {
    assert!(matches!(
        validate_header("X", "\u{20ac}"),
        Err(ResponseHeaderError::BadValue(_))
    ));
    assert!(matches!(
        validate_header("X", "\u{100}"),
        Err(ResponseHeaderError::BadValue(_))
    ));
}

#[test]
fn hop_by_hop_names_are_recognised_case_insensitively() {
    for name in [
        "Connection",
        "keep-alive",
        "Proxy-Authenticate",
        "PROXY-AUTHORIZATION",
        "TE",
        "Trailer",
        "Trailers",
        "Transfer-Encoding",
        "upgrade",
    ] {
        assert!(is_hop_by_hop(name), "{name}");
    }
    for name in [
        "Content-Length",
        "Content-Type",
        "Set-Cookie",
        "Tee",
        "Connections",
    ] {
        assert!(!is_hop_by_hop(name), "{name}");
    }
}

#[test]
fn app_content_length_must_be_digits() {
    assert_eq!(parse_content_length("0"), Some(0));
    assert_eq!(parse_content_length(" 12 "), Some(12));
    assert_eq!(parse_content_length("18446744073709551615"), Some(u64::MAX));
    for bad in [
        "",
        "-1",
        "+1",
        "1.5",
        "0x10",
        "1 2",
        "1,1",
        "18446744073709551616",
        "\u{661}",
    ] {
        assert_eq!(parse_content_length(bad), None, "{bad:?}");
    }
}

#[test]
fn head_requests_and_bodyless_statuses_have_no_body() {
    let v = Version::Http11;
    assert_eq!(
        response_framing(true, 200, Some(10), None, v),
        ResponseFraming::NoBody
    );
    for status in [100, 101, 199, 204, 304] {
        assert_eq!(
            response_framing(false, status, Some(10), Some(10), v),
            ResponseFraming::NoBody,
            "{status}"
        );
    }
}

#[test]
fn app_content_length_wins_over_known_length() {
    let f = response_framing(false, 200, Some(5), Some(7), Version::Http11);
    assert_eq!(f, ResponseFraming::Length(5));
}

#[test]
fn known_length_is_used_without_app_content_length() {
    assert_eq!(
        response_framing(false, 200, None, Some(7), Version::Http10),
        ResponseFraming::Length(7)
    );
    assert_eq!(
        response_framing(false, 205, None, Some(0), Version::Http11),
        ResponseFraming::Length(0)
    );
}

#[test]
fn unknown_length_is_chunked_for_http11_and_close_delimited_for_http10() {
    assert_eq!(
        response_framing(false, 200, None, None, Version::Http11),
        ResponseFraming::Chunked
    );
    assert_eq!(
        response_framing(false, 200, None, None, Version::Http10),
        ResponseFraming::CloseDelimited
    );
}
