//! Limits of parse_head with gunicorn's names: request line (414), header
//! count and header line size (431), on complete and partial buffers.
#![allow(clippy::unwrap_used)]

mod common;

use common::{is_partial, parse_with};
use oxgate_proto::{parse_head, Limits, Parsed, ProtoError};

/// A request line of exactly `len` bytes (CRLF excluded).
fn request_line(len: usize) -> Vec<u8> {
    let fixed = "GET / HTTP/1.1".len();
    assert!(len >= fixed);
    let mut line = b"GET /".to_vec();
    line.resize(line.len() + len - fixed, b'a');
    line.extend_from_slice(b" HTTP/1.1");
    assert_eq!(line.len(), len);
    line
}

fn with_line(line: &[u8]) -> Vec<u8> {
    let mut raw = line.to_vec();
    raw.extend_from_slice(b"\r\nHost: a\r\n\r\n");
    raw
}

/// A header field line of exactly `len` bytes (CRLF excluded).
fn field_line(len: usize) -> Vec<u8> {
    let mut line = b"X-Long: ".to_vec();
    line.resize(len, b'v');
    line
}

fn with_field(field: &[u8]) -> Vec<u8> {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    raw.extend_from_slice(field);
    raw.extend_from_slice(b"\r\n\r\n");
    raw
}

fn limits(max_request_line: usize, max_headers: usize, max_header_size: usize) -> Limits {
    Limits {
        max_request_line,
        max_headers,
        max_header_size,
    }
}

#[test]
fn request_line_at_limit_passes_and_one_more_is_414() {
    let lim = limits(100, 100, 8190);
    assert!(parse_with(&with_line(&request_line(100)), &lim).is_ok());
    assert_eq!(
        parse_head(&with_line(&request_line(101)), &lim).unwrap_err(),
        ProtoError::UriTooLong
    );
}

#[test]
fn request_line_over_limit_is_414_before_its_lf_arrives() {
    let lim = limits(100, 100, 8190);
    let at_limit = request_line(100);
    assert!(is_partial(&at_limit, &lim));
    let mut with_cr = at_limit.clone();
    with_cr.push(b'\r');
    assert!(is_partial(&with_cr, &lim));
    let over = request_line(101);
    assert_eq!(parse_head(&over, &lim).unwrap_err(), ProtoError::UriTooLong);
    assert_eq!(
        parse_head(&over[..101], &lim).unwrap_err(),
        ProtoError::UriTooLong
    );
}

#[test]
fn request_line_limit_zero_or_huge_means_8190() {
    for configured in [0, 8191, 1 << 20] {
        let lim = limits(configured, 100, 8190);
        assert!(parse_with(&with_line(&request_line(8190)), &lim).is_ok());
        assert_eq!(
            parse_head(&with_line(&request_line(8191)), &lim).unwrap_err(),
            ProtoError::UriTooLong
        );
        assert_eq!(lim.effective().max_request_line, 8190);
    }
}

#[test]
fn header_count_at_limit_passes_and_one_more_is_431() {
    let lim = limits(4094, 5, 8190);
    // Host plus four more is five fields.
    let five = common::get_with(&["A: 1", "B: 2", "C: 3", "D: 4"]);
    assert_eq!(parse_with(&five, &lim).unwrap().headers().len(), 5);
    let six = common::get_with(&["A: 1", "B: 2", "C: 3", "D: 4", "E: 5"]);
    assert_eq!(parse_head(&six, &lim).unwrap_err().status(), 431);
}

#[test]
fn header_count_over_limit_is_431_on_a_partial_buffer() {
    let lim = limits(4094, 5, 8190);
    let five = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n";
    assert!(is_partial(five, &lim));
    let mut with_cr = five.to_vec();
    with_cr.push(b'\r');
    assert!(is_partial(&with_cr, &lim));
    let mut sixth_started = five.to_vec();
    sixth_started.push(b'E');
    assert_eq!(parse_head(&sixth_started, &lim).unwrap_err().status(), 431);
}

#[test]
fn header_count_limit_zero_or_huge_means_32768() {
    assert_eq!(limits(0, 0, 0).effective().max_headers, 32768);
    assert_eq!(limits(0, 40000, 0).effective().max_headers, 32768);
    let lim = limits(4094, 0, 8190);
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for _ in 1..32768 {
        raw.extend_from_slice(b"X: y\r\n");
    }
    let mut ok = raw.clone();
    ok.extend_from_slice(b"\r\n");
    assert_eq!(parse_with(&ok, &lim).unwrap().headers().len(), 32768);
    raw.extend_from_slice(b"X: y\r\n\r\n");
    assert_eq!(parse_head(&raw, &lim).unwrap_err().status(), 431);
}

#[test]
fn header_line_at_limit_passes_and_one_more_is_431() {
    // The limit counts the line's CRLF, as gunicorn does: 50 + 2.
    let lim = limits(4094, 100, 52);
    assert!(parse_with(&with_field(&field_line(50)), &lim).is_ok());
    assert_eq!(
        parse_head(&with_field(&field_line(51)), &lim)
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn header_line_size_counts_ows() {
    let lim = limits(4094, 100, 12);
    assert!(parse_with(&with_field(b"X:       1"), &lim).is_ok());
    assert_eq!(
        parse_head(&with_field(b"X:        1"), &lim)
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn header_line_over_limit_is_431_before_its_lf_arrives() {
    let lim = limits(4094, 100, 52);
    let prefix = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    let mut at_limit = prefix.clone();
    at_limit.extend_from_slice(&field_line(50));
    assert!(is_partial(&at_limit, &lim));
    at_limit.push(b'\r');
    assert!(is_partial(&at_limit, &lim));
    let mut over = prefix;
    over.extend_from_slice(&field_line(51));
    assert_eq!(parse_head(&over, &lim).unwrap_err().status(), 431);
}

#[test]
fn host_line_counts_against_header_size_too() {
    let lim = limits(4094, 100, 9);
    assert!(parse_with(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &lim).is_ok());
    assert_eq!(
        parse_head(b"GET / HTTP/1.1\r\nHost: ab\r\n\r\n", &lim)
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn header_size_zero_means_65536() {
    let lim = limits(4094, 100, 0);
    assert_eq!(lim.effective().max_header_size, 65536);
    assert!(parse_with(&with_field(&field_line(65534)), &lim).is_ok());
    assert_eq!(
        parse_head(&with_field(&field_line(65535)), &lim)
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn default_limits_are_gunicorns() {
    assert_eq!(Limits::default(), limits(4094, 100, 8190));
    assert_eq!(Limits::default().effective(), Limits::default());
}

#[test]
fn huge_partial_garbage_is_refused_not_buffered_forever() {
    let endless = vec![b'a'; 100_000];
    assert_eq!(
        parse_head(&endless, &Limits::default()).unwrap_err(),
        ProtoError::UriTooLong
    );
    let mut endless_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
    endless_header.resize(endless_header.len() + 100_000, b'v');
    assert_eq!(
        parse_head(&endless_header, &Limits::default())
            .unwrap_err()
            .status(),
        431
    );
}

#[test]
fn every_prefix_of_a_valid_head_is_partial() {
    let lim = Limits::default();
    for raw in [
        common::get_with(&["Accept: */*", "X-Obs: caf\u{e9}"]),
        common::post_with(&["Transfer-Encoding: chunked"]),
        b"\r\n\nOPTIONS * HTTP/1.0\r\n\r\n".to_vec(),
    ] {
        for end in 0..raw.len() {
            assert!(
                is_partial(&raw[..end], &lim),
                "prefix {:?}",
                String::from_utf8_lossy(&raw[..end])
            );
        }
        assert!(matches!(parse_head(&raw, &lim), Ok(Parsed::Complete(_, n)) if n == raw.len()));
    }
}
