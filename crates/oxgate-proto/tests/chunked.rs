//! ChunkedDecoder behaviour (RFC 9112 section 7.1): valid bodies decode to the
//! same bytes however the input is split; invalid framing is refused.
#![allow(clippy::unwrap_used)]

mod common;

use common::Rng;
use oxgate_proto::{ChunkedDecoder, DecodeStep, ProtoError};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    body: Vec<u8>,
    done: bool,
    /// Bytes left after Done (or unconsumed when not done).
    rest: Vec<u8>,
}

/// Feed `pieces` one after another, like reads from a socket.
fn run(max_line: usize, pieces: &[&[u8]]) -> Result<Outcome, ProtoError> {
    let mut dec = ChunkedDecoder::new(max_line);
    let mut buf: Vec<u8> = Vec::new();
    let mut body = Vec::new();
    let mut pieces = pieces.iter();
    'feed: for piece in pieces.by_ref() {
        buf.extend_from_slice(piece);
        loop {
            let (n, step) = dec.decode(&buf)?;
            assert!(n <= buf.len());
            match step {
                DecodeStep::Data(d) => {
                    assert!(!d.is_empty(), "empty Data");
                    let start = d.as_ptr() as usize - buf.as_ptr() as usize;
                    assert_eq!(start + d.len(), n, "Data must end at consumed");
                    body.extend_from_slice(d);
                    buf.drain(..n);
                }
                DecodeStep::Done => {
                    buf.drain(..n);
                    assert!(dec.is_done());
                    assert_eq!(dec.decode(b"more").unwrap(), (0, DecodeStep::Done));
                    break 'feed;
                }
                DecodeStep::NeedMore => {
                    buf.drain(..n);
                    break;
                }
            }
        }
    }
    for piece in pieces {
        buf.extend_from_slice(piece);
    }
    Ok(Outcome {
        body,
        done: dec.is_done(),
        rest: buf,
    })
}

/// Every way of feeding `raw` gives the same result as feeding it at once.
fn all_splits(max_line: usize, raw: &[u8]) -> Result<Outcome, ProtoError> {
    let whole = run(max_line, &[raw]);
    let bytes: Vec<&[u8]> = raw.chunks(1).collect();
    assert_eq!(run(max_line, &bytes), whole, "byte by byte");
    for cut in 0..=raw.len() {
        assert_eq!(
            run(max_line, &[&raw[..cut], &raw[cut..]]),
            whole,
            "split at {cut}"
        );
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ raw.len() as u64);
    for _ in 0..200 {
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let len = 1 + rng.below(8);
            let end = (at + len).min(raw.len());
            pieces.push(&raw[at..end]);
            at = end;
        }
        assert_eq!(run(max_line, &pieces), whole, "random split");
    }
    whole
}

fn decodes_to(raw: &[u8], body: &[u8]) {
    let out = all_splits(8190, raw).unwrap();
    assert!(out.done, "{:?}", String::from_utf8_lossy(raw));
    assert_eq!(out.body, body);
    assert_eq!(out.rest, b"");
}

fn refused(max_line: usize, raw: &[u8]) -> u16 {
    all_splits(max_line, raw).unwrap_err().status()
}

#[test]
fn single_chunk_decodes() {
    decodes_to(b"5\r\nhello\r\n0\r\n\r\n", b"hello");
}

#[test]
fn several_chunks_decode_in_order() {
    decodes_to(
        b"5\r\nhello\r\n6\r\n world\r\n1\r\n!\r\n0\r\n\r\n",
        b"hello world!",
    );
}

#[test]
fn empty_body_is_just_the_last_chunk() {
    decodes_to(b"0\r\n\r\n", b"");
}

#[test]
fn hex_sizes_accept_either_case() {
    decodes_to(
        b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
        b"0123456789abcdefghij",
    );
}

#[test]
fn leading_zeros_in_chunk_size_are_accepted() {
    decodes_to(b"0005\r\nhello\r\n000\r\n\r\n", b"hello");
    decodes_to(b"000000000000000000000003\r\nabc\r\n0\r\n\r\n", b"abc");
}

#[test]
fn larger_chunk_decodes() {
    let data: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let mut raw = b"400\r\n".to_vec();
    raw.extend_from_slice(&data);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    decodes_to(&raw, &data);
}

#[test]
fn chunk_extensions_are_accepted_and_ignored() {
    decodes_to(b"5;name=value\r\nhello\r\n0\r\n\r\n", b"hello");
    decodes_to(
        b"5 ; a = \"q \\\" x;\" ; b\r\nhello\r\n0;last\r\n\r\n",
        b"hello",
    );
    decodes_to(b"5;a;b=c;d=\"\"\r\nhello\r\n0\r\n\r\n", b"hello");
    decodes_to(b"5\t;a\r\nhello\r\n0\r\n\r\n", b"hello");
}

#[test]
fn trailers_are_read_and_discarded() {
    decodes_to(
        b"3\r\nabc\r\n0\r\nX-Trailer: v\r\nY:\r\nZ: caf\xc3\xa9\r\n\r\n",
        b"abc",
    );
}

#[test]
fn bytes_after_the_body_are_not_consumed() {
    let out = all_splits(8190, b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n").unwrap();
    assert!(out.done);
    assert_eq!(out.body, b"abc");
    assert_eq!(out.rest, b"GET / HTTP/1.1\r\n");
}

#[test]
fn decode_reports_consumed_exactly() {
    let mut dec = ChunkedDecoder::new(8190);
    let input = b"5\r\nhel";
    assert_eq!(dec.decode(input).unwrap(), (6, DecodeStep::Data(b"hel")));
    assert_eq!(dec.decode(b"").unwrap(), (0, DecodeStep::NeedMore));
    assert_eq!(dec.decode(b"lo\r").unwrap(), (2, DecodeStep::Data(b"lo")));
    assert_eq!(dec.decode(b"\r").unwrap(), (1, DecodeStep::NeedMore));
    assert_eq!(
        dec.decode(b"\n0\r\n\r\nrest").unwrap(),
        (6, DecodeStep::Done)
    );
    assert_eq!(dec.decode(b"rest").unwrap(), (0, DecodeStep::Done));
}

#[test]
fn huge_but_valid_chunk_size_waits_for_data() {
    let mut dec = ChunkedDecoder::new(8190);
    assert_eq!(
        dec.decode(b"ffffffffffffffff\r\n").unwrap(),
        (18, DecodeStep::NeedMore)
    );
    assert_eq!(dec.decode(b"ab").unwrap(), (2, DecodeStep::Data(b"ab")));
}

#[test]
fn chunk_size_overflowing_u64_is_400() {
    assert_eq!(refused(8190, b"10000000000000000\r\n"), 400);
    assert_eq!(refused(8190, b"fffffffffffffffff\r\n"), 400);
}

#[test]
fn missing_or_non_hex_chunk_size_is_400() {
    for raw in [
        &b"\r\n"[..],
        b"x\r\n",
        b";a\r\n",
        b" 5\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b"0x5\r\n",
        b"5,6\r\n",
        b"5x\r\n",
    ] {
        assert_eq!(
            refused(8190, raw),
            400,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn whitespace_after_chunk_size_without_extension_is_400() {
    assert_eq!(refused(8190, b"5 \r\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5;a \r\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5;a=b \r\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn malformed_chunk_extension_is_400() {
    for raw in [
        &b"5;\r\n"[..],
        b"5;=v\r\n",
        b"5;a=\r\n",
        b"5;a b\r\n",
        b"5;a=\"x\r\n",
        b"5;a=\"x\"y\r\n",
        b"5;a=b c\r\n",
        b"5;a=\"\x00\"\r\n",
        b"5;a=\"\\\r\n",
        b"5;a=(\r\n",
    ] {
        assert_eq!(
            refused(8190, raw),
            400,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn bare_lf_as_chunk_line_terminator_is_400() {
    assert_eq!(refused(8190, b"5\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5;a\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5\r\nhello\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5\r\nhello\r\n0\n\r\n"), 400);
    assert_eq!(refused(8190, b"5\r\nhello\r\n0\r\n\n"), 400);
    assert_eq!(refused(8190, b"0\r\nX: a\n\r\n"), 400);
}

#[test]
fn bare_cr_in_chunk_framing_is_400() {
    assert_eq!(refused(8190, b"5\rhello\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"0\r\n\rx"), 400);
}

#[test]
fn chunk_data_not_followed_by_crlf_is_400() {
    assert_eq!(refused(8190, b"5\r\nhelloX\r\n0\r\n\r\n"), 400);
    assert_eq!(refused(8190, b"5\r\nhell\r\n0\r\n\r\n"), 400);
}

#[test]
fn malformed_trailers_are_400() {
    for raw in [
        &b"0\r\nX: a\r\n b\r\n\r\n"[..],
        b"0\r\n X: a\r\n\r\n",
        b"0\r\nX\r\n\r\n",
        b"0\r\nX : a\r\n\r\n",
        b"0\r\n: a\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
        b"0\r\nX: a\x7f\r\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
    ] {
        assert_eq!(
            refused(8190, raw),
            400,
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn chunk_size_line_at_max_line_passes_and_one_more_is_400() {
    decodes_with_max(10, b"0000000005\r\nhello\r\n0\r\n\r\n", b"hello");
    assert_eq!(refused(10, b"00000000005\r\nhello\r\n0\r\n\r\n"), 400);
    decodes_with_max(10, b"5;abcdefgh\r\nhello\r\n0\r\n\r\n", b"hello");
    assert_eq!(refused(10, b"5;abcdefghi\r\nhello\r\n0\r\n\r\n"), 400);
}

#[test]
fn endless_chunk_extension_is_refused() {
    let mut raw = b"5;a=\"".to_vec();
    raw.resize(raw.len() + 100_000, b'x');
    let err = run(8190, &[&raw]).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn trailer_line_at_max_line_passes_and_one_more_is_431() {
    decodes_with_max(10, b"0\r\nX: 1234567\r\n\r\n", b"");
    assert_eq!(refused(10, b"0\r\nX: 12345678\r\n\r\n"), 431);
}

#[test]
fn more_than_100_trailers_is_431() {
    let mut ok = b"0\r\n".to_vec();
    for _ in 0..100 {
        ok.extend_from_slice(b"T: v\r\n");
    }
    let mut too_many = ok.clone();
    ok.extend_from_slice(b"\r\n");
    assert!(run(8190, &[&ok]).unwrap().done);
    too_many.extend_from_slice(b"T: v\r\n\r\n");
    assert_eq!(run(8190, &[&too_many]).unwrap_err().status(), 431);
}

#[test]
fn decoder_stays_failed_after_an_error() {
    let mut dec = ChunkedDecoder::new(8190);
    assert!(dec.decode(b"x").is_err());
    assert!(dec.decode(b"5\r\nhello\r\n").is_err());
}

#[test]
fn max_line_zero_still_bounds_lines() {
    let mut raw = b"5;a=".to_vec();
    raw.resize(raw.len() + 70_000, b'x');
    assert_eq!(run(0, &[&raw]).unwrap_err().status(), 400);
}

fn decodes_with_max(max_line: usize, raw: &[u8], body: &[u8]) {
    let out = all_splits(max_line, raw).unwrap();
    assert!(out.done);
    assert_eq!(out.body, body);
}
