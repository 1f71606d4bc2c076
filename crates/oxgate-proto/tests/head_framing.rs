//! Body framing decisions of parse_head (RFC 9112 section 6): the rules that
//! stop request smuggling.
#![allow(clippy::unwrap_used)]

mod common;

use common::{get_with, parse, post_with, status};
use oxgate_proto::{BodyFraming, ProtoError};

#[test]
fn no_framing_headers_means_no_body() {
    assert_eq!(parse(&get_with(&[])).unwrap().framing, BodyFraming::None);
}

#[test]
fn content_length_is_parsed() {
    assert_eq!(
        parse(&post_with(&["Content-Length: 42"])).unwrap().framing,
        BodyFraming::Length(42)
    );
    assert_eq!(
        parse(&post_with(&["content-length:0"])).unwrap().framing,
        BodyFraming::Length(0)
    );
    assert_eq!(
        parse(&post_with(&["Content-Length: 007"])).unwrap().framing,
        BodyFraming::Length(7)
    );
    let max = format!("Content-Length: {}", u64::MAX);
    assert_eq!(
        parse(&post_with(&[&max])).unwrap().framing,
        BodyFraming::Length(u64::MAX)
    );
}

#[test]
fn malformed_content_length_is_400() {
    for bad in [
        "",
        "+5",
        "-5",
        "5 5",
        "0x10",
        "5a",
        "1.0",
        "five",
        "18446744073709551616",
        "99999999999999999999999",
    ] {
        let line = format!("Content-Length: {bad}");
        assert_eq!(status(&post_with(&[&line])), 400, "{bad:?}");
    }
}

#[test]
fn content_length_list_is_400_even_with_identical_values() {
    assert_eq!(status(&post_with(&["Content-Length: 5, 5"])), 400);
    assert_eq!(status(&post_with(&["Content-Length: 5,6"])), 400);
}

#[test]
fn repeated_content_length_headers_are_400_even_when_identical() {
    assert_eq!(
        status(&post_with(&["Content-Length: 5", "Content-Length: 5"])),
        400
    );
    assert_eq!(
        status(&post_with(&["Content-Length: 5", "content-length: 6"])),
        400
    );
}

#[test]
fn chunked_transfer_encoding_is_parsed() {
    for te in ["chunked", "Chunked", "CHUNKED", " chunked "] {
        let line = format!("Transfer-Encoding:{te}");
        assert_eq!(
            parse(&post_with(&[&line])).unwrap().framing,
            BodyFraming::Chunked,
            "{te}"
        );
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    assert_eq!(
        status(&post_with(&[
            "Content-Length: 5",
            "Transfer-Encoding: chunked"
        ])),
        400
    );
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding: chunked",
            "Content-Length: 5"
        ])),
        400
    );
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding: gzip, chunked",
            "Content-Length: 0"
        ])),
        400
    );
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400() {
    for te in [
        "gzip",
        "identity",
        "chunked, identity",
        "chunked, gzip",
        "chunked;q=1",
        "xchunked",
        "chunked x",
    ] {
        let line = format!("Transfer-Encoding: {te}");
        assert_eq!(status(&post_with(&[&line])), 400, "{te}");
    }
}

#[test]
fn chunked_applied_twice_is_400() {
    assert_eq!(
        status(&post_with(&["Transfer-Encoding: chunked, chunked"])),
        400
    );
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: chunked"
        ])),
        400
    );
}

#[test]
fn other_codings_before_chunked_are_501() {
    let err = common::parse(&post_with(&["Transfer-Encoding: gzip, chunked"])).unwrap_err();
    assert!(matches!(err, ProtoError::NotImplemented(_)));
    assert_eq!(
        status(&post_with(&["Transfer-Encoding: deflate;level=1, chunked"])),
        501
    );
    // Lines combine into one list (RFC 9110 section 5.3).
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: chunked"
        ])),
        501
    );
}

#[test]
fn transfer_encoding_lines_combine_so_chunked_then_gzip_is_400() {
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding: chunked",
            "Transfer-Encoding: gzip"
        ])),
        400
    );
}

#[test]
fn empty_transfer_encoding_or_empty_element_is_400() {
    for te in ["", "chunked,,", ",chunked", "gzip,,chunked", " , "] {
        let line = format!("Transfer-Encoding: {te}");
        assert_eq!(status(&post_with(&[&line])), 400, "{te:?}");
    }
    assert_eq!(
        status(&post_with(&[
            "Transfer-Encoding:",
            "Transfer-Encoding: chunked"
        ])),
        400
    );
}

#[test]
fn malformed_coding_before_chunked_is_400() {
    assert_eq!(
        status(&post_with(&["Transfer-Encoding: g(zip, chunked"])),
        400
    );
}

#[test]
fn transfer_encoding_in_http10_is_400() {
    assert_eq!(
        status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
}

#[test]
fn content_length_in_http10_is_accepted() {
    let head = parse(b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert_eq!(head.framing, BodyFraming::Length(3));
}
