//! Response rules: status and header validation for start_response (PEP 3333),
//! and how the body is delimited (RFC 9112 section 6.3, RFC 9110 section 6.4.1).
//! Decides only; writing the bytes is the server's job.

use crate::head::Version;
use crate::syntax::{is_field_value_byte, is_token, parse_decimal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseHeaderError {
    BadStatus(String),
    BadName(String),
    BadValue(String),
}

impl std::fmt::Display for ResponseHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseHeaderError::BadStatus(why)
            | ResponseHeaderError::BadName(why)
            | ResponseHeaderError::BadValue(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ResponseHeaderError {}

/// Validate a WSGI status string like "200 OK"; returns the code.
///
/// PEP 3333 wants "999 Message here": three digits, one space, a reason
/// phrase (which RFC 9112 section 4 allows to be empty, so "200 " passes but
/// "200" does not, as in wsgiref). The reason may hold HTAB, SP, visible ASCII
/// and latin-1 text, never CR, LF, NUL or another control.
pub fn validate_status(status: &str) -> Result<u16, ResponseHeaderError> {
    let shape_err = || {
        ResponseHeaderError::BadStatus(format!(
            "invalid status {status:?}: must be 3 digits, a space and a reason phrase"
        ))
    };
    let bytes = status.as_bytes();
    let (code, reason) = match bytes {
        [a, b, c, b' ', ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            (&bytes[..3], status.get(4..).ok_or_else(shape_err)?)
        }
        _ => return Err(shape_err()),
    };
    let code = parse_decimal(code)
        .and_then(|c| u16::try_from(c).ok())
        .ok_or_else(shape_err)?;
    // RFC 9110 section 15: status codes are 100..=599 in use, but the syntax
    // is any three digits; below 100 is never valid.
    if code < 100 {
        return Err(ResponseHeaderError::BadStatus(format!(
            "invalid status {status:?}: the code must be between 100 and 999"
        )));
    }
    if !latin1_field_text(reason) {
        return Err(ResponseHeaderError::BadStatus(format!(
            "invalid status {status:?}: the reason phrase contains a control or non-latin-1 character"
        )));
    }
    Ok(code)
}

/// Validate a header name (an RFC 9110 token) and value (no CR, LF or NUL).
///
/// Stricter than the minimum: every control but HTAB is refused in values
/// (RFC 9110 section 5.5), and both must be latin-1 (PEP 3333 native strings),
/// so nothing the app sends can split or smuggle a response header.
pub fn validate_header(name: &str, value: &str) -> Result<(), ResponseHeaderError> {
    if !is_token(name.as_bytes()) {
        return Err(ResponseHeaderError::BadName(format!(
            "invalid header name {name:?}: must be a non-empty token (letters, digits and !#$%&'*+-.^_`|~)"
        )));
    }
    if !latin1_field_text(value) {
        return Err(ResponseHeaderError::BadValue(format!(
            "invalid value for header {name:?}: contains CR, LF, NUL, another control character or a character above U+00FF"
        )));
    }
    Ok(())
}

/// Every char is a field-value byte once encoded as latin-1.
fn latin1_field_text(s: &str) -> bool {
    // Nearly every value is ASCII: its bytes are its chars, no decoding.
    if s.is_ascii() {
        return s.bytes().all(is_field_value_byte);
    }
    s.chars()
        .all(|c| u8::try_from(u32::from(c)).is_ok_and(is_field_value_byte))
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus Keep-Alive and the
/// Proxy-* pair of RFC 2616 section 13.5.1 that PEP 3333 and wsgiref forbid):
/// the connection is the server's business, an app must not set them.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    ];
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// A Content-Length value from the app: `1*DIGIT` (RFC 9110 section 8.6),
/// surrounding OWS ignored, anything else (sign, list, overflow) is None.
pub fn parse_content_length(value: &str) -> Option<u64> {
    parse_decimal(value.trim_matches([' ', '\t']).as_bytes())
}

/// How to frame a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// HEAD, 1xx, 204, 304: headers only.
    NoBody,
    Length(u64),
    Chunked,
    /// HTTP/1.0 without a length: the body ends when the connection closes.
    CloseDelimited,
}

/// Choose the response framing (RFC 9112 section 6.3 items 1-2 and 6.1).
///
/// `app_content_length` is the app's own Content-Length header (already
/// parsed with [`parse_content_length`]); `known_body_len` is what the server
/// knows, e.g. a body iterable fully collected or a file's size.
/// With `CloseDelimited` the server must close the connection after the body.
pub fn response_framing(
    head_request: bool,
    status: u16,
    app_content_length: Option<u64>,
    known_body_len: Option<u64>,
    version: Version,
) -> ResponseFraming {
    // RFC 9110 sections 9.3.2, 15.2, 15.3.5 and 15.4.5: these never carry a body.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return ResponseFraming::NoBody;
    }
    match app_content_length.or(known_body_len) {
        Some(len) => ResponseFraming::Length(len),
        // An HTTP/1.0 client does not understand chunked (RFC 9112 section 6.1).
        None if version == Version::Http11 => ResponseFraming::Chunked,
        None => ResponseFraming::CloseDelimited,
    }
}
