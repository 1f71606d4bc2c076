//! Serializes response heads and the server's own error responses
//! (RFC 9112 section 4, RFC 9110 section 6.6). Framing is decided by the
//! caller with `oxgate_proto::response::response_framing`.

use std::io::Write;

use oxgate_proto::{ResponseFraming, Version};

use crate::date::with_http_date;
use crate::handler::ResponseHead;

pub const SERVER: &str = "oxgate";

/// Append the status line and headers of `head` to `out`.
pub fn write_head(
    out: &mut Vec<u8>,
    version: Version,
    head: &ResponseHead,
    framing: ResponseFraming,
    keep_alive: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(head.wire());
    match framing {
        ResponseFraming::Length(n) => push_length(out, n),
        ResponseFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        // RFC 9110 8.6: never a Content-Length on 1xx or 204; on HEAD and
        // 304 it tells the length a GET would have had.
        ResponseFraming::NoBody => {
            if let Some(n) = head.content_length {
                if head.status >= 200 && head.status != 204 {
                    push_length(out, n);
                }
            }
        }
        ResponseFraming::CloseDelimited => {}
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    if !head.has_date {
        with_http_date(|d| push_field(out, b"Date", d.as_bytes()));
    }
    if !head.has_server {
        push_field(out, b"Server", SERVER.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// One of the server's own header lines.
fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_length(out: &mut Vec<u8>, n: u64) {
    // Straight into the buffer, without core::fmt's machinery: this runs
    // for nearly every response.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut left = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (left % 10) as u8;
        left /= 10;
        if left == 0 {
            break;
        }
    }
    push_field(out, b"Content-Length", &digits[at..]);
}

/// The head and short text body of a response the server makes itself,
/// whichever the HTTP version.
pub(crate) fn own_response(
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
) -> (ResponseHead, String) {
    let mut head = ResponseHead::new(status, &format!("{status} {reason}"));
    head.push_header("Content-Type", "text/plain; charset=utf-8");
    for (name, value) in extra {
        head.push_header(name, value);
    }
    (head, format!("{status} {reason}\n"))
}

/// A complete response the server makes itself (errors, overload), always
/// with a short text body and `Connection: close` unless `keep_alive`.
/// Returns the body's length.
pub fn simple_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    keep_alive: bool,
) -> u64 {
    let (mut head, body) = own_response(status, reason, extra);
    head.close = !keep_alive;
    write_head(
        out,
        Version::Http11,
        &head,
        ResponseFraming::Length(body.len() as u64),
        keep_alive,
    );
    out.extend_from_slice(body.as_bytes());
    body.len() as u64
}

/// Append a chunk-size line for `len` bytes (RFC 9112 7.1).
pub fn chunk_header(out: &mut Vec<u8>, len: usize) {
    let _ = write!(out, "{len:X}\r\n");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn content_length_digits_are_exact_at_the_edges() {
        for n in [0, 7, 10, 13, 65_536, 1_234_567_890, u64::MAX] {
            let mut out = Vec::new();
            push_length(&mut out, n);
            assert_eq!(out, format!("Content-Length: {n}\r\n").into_bytes());
        }
    }

    #[test]
    fn chunk_sizes_are_upper_case_hex() {
        for (len, line) in [(1, "1\r\n"), (255, "FF\r\n"), (65_536, "10000\r\n")] {
            let mut out = Vec::new();
            chunk_header(&mut out, len);
            assert_eq!(out, line.as_bytes());
        }
    }

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHead {
        let mut head = ResponseHead::new(status, &format!("{status} X"));
        for (name, value) in headers {
            head.push_header(name, value);
        }
        head
    }

    #[test]
    fn head_has_date_server_and_length() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            Version::Http11,
            &head(200, &[]),
            ResponseFraming::Length(5),
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 X\r\n"));
        assert!(text.contains("Content-Length: 5\r\n"));
        assert!(text.contains("Date: "));
        assert!(text.contains("Server: oxgate\r\n"));
        assert!(!text.contains("Connection"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn latin1_header_value_is_sent_as_single_bytes() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            Version::Http11,
            &head(200, &[("X-A", "é")]),
            ResponseFraming::NoBody,
            true,
        );
        assert!(out.windows(6).any(|w| w == b"X-A: \xe9"));
    }

    #[test]
    fn http10_keep_alive_is_announced_and_close_is_explicit() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            Version::Http10,
            &head(200, &[]),
            ResponseFraming::Length(0),
            true,
        );
        assert!(String::from_utf8_lossy(&out).contains("Connection: keep-alive\r\n"));
        out.clear();
        write_head(
            &mut out,
            Version::Http11,
            &head(200, &[]),
            ResponseFraming::Chunked,
            false,
        );
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("Transfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn no_content_length_on_204() {
        let mut h = head(204, &[]);
        h.content_length = Some(3);
        let mut out = Vec::new();
        write_head(&mut out, Version::Http11, &h, ResponseFraming::NoBody, true);
        assert!(!String::from_utf8_lossy(&out).contains("Content-Length"));
    }
}
