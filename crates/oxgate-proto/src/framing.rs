//! Decisions taken from the header section as a whole: body framing
//! (RFC 9112 section 6), Host (section 3.2), persistence (section 9.3) and
//! Expect (RFC 9110 section 10.1.1). This is the anti-smuggling layer: any
//! framing a front proxy could read differently is refused, never guessed.

use crate::error::ProtoError;
use crate::head::{BodyFraming, Version};
use crate::request_line::{valid_authority, without_empty_port};
use crate::syntax::{is_token, list_elements, parse_decimal, trim_ows};

/// What the header section decided.
#[derive(Debug)]
pub(crate) struct Decisions<'a> {
    pub(crate) framing: BodyFraming,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
    /// The Host header's value (an empty port dropped, a piece of the value),
    /// None when absent or empty. ASCII: it passed `valid_authority`.
    pub(crate) host: Option<&'a [u8]>,
}

const fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

/// Decide from the header fields, given as (name, value) pairs in order.
pub(crate) fn decide<'a>(
    version: Version,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Decisions<'a>, ProtoError> {
    let mut host: Option<&[u8]> = None;
    let mut transfer_encodings: Vec<&[u8]> = Vec::new();
    let mut content_length: Option<&[u8]> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;

    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"host") {
            // RFC 9112 section 3.2: more than one Host line is a 400.
            if host.replace(value).is_some() {
                return Err(bad("more than one Host header"));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encodings.push(value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // RFC 9112 section 6.3 lets a recipient accept repeated identical
            // values; we refuse every repetition: the one parse a proxy and
            // this server cannot disagree on is "exactly one".
            if content_length.replace(value).is_some() {
                return Err(bad("more than one Content-Length header"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list_elements(value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            // RFC 9110 section 10.1.1: only 100-continue is defined; other
            // expectations are ignored rather than answered with 417.
            expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
        }
    }

    let framing = body_framing(version, &transfer_encodings, content_length)?;

    if let Some(value) = host {
        if !valid_authority(value) {
            return Err(bad("invalid Host header"));
        }
    }
    // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request
    // without Host.
    if version == Version::Http11 && host.is_none() {
        return Err(bad("missing Host header"));
    }

    // RFC 9112 section 9.3: 1.1 persists unless "close"; 1.0 only with an
    // explicit keep-alive (RFC 9112 appendix C.2.2), and "close" wins.
    let keep_alive = match version {
        Version::Http11 | Version::Http2 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(Decisions {
        framing,
        keep_alive,
        expect_continue: expect_continue && version == Version::Http11,
        host: host.map(without_empty_port).filter(|v| !v.is_empty()),
    })
}

/// RFC 9112 section 6.3, strict.
fn body_framing(
    version: Version,
    transfer_encodings: &[&[u8]],
    content_length: Option<&[u8]>,
) -> Result<BodyFraming, ProtoError> {
    if !transfer_encodings.is_empty() {
        // Section 6.1: Transfer-Encoding in a 1.0 message means an
        // intermediary may have mangled it; the safe answer is no.
        if version == Version::Http10 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        // Section 6.3 item 3: both present is the textbook smuggling setup;
        // a server MAY reject it, and we do.
        if content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        check_transfer_codings(transfer_encodings)?;
        return Ok(BodyFraming::Chunked);
    }
    match content_length {
        None => Ok(BodyFraming::None),
        Some(value) => {
            // Section 6.3 item 5: a list ("5, 5") or any non-digit is invalid.
            let value = trim_ows(value);
            parse_decimal(value)
                .map(BodyFraming::Length)
                .ok_or(bad("invalid Content-Length"))
        }
    }
}

/// The codings across every Transfer-Encoding line, in order (RFC 9110
/// section 5.3 combines repeated lines into one list).
fn check_transfer_codings(values: &[&[u8]]) -> Result<(), ProtoError> {
    let codings: Vec<&[u8]> = values.iter().flat_map(|v| list_elements(v)).collect();
    if codings.iter().any(|c| c.is_empty()) {
        return Err(bad("empty element in Transfer-Encoding"));
    }
    let Some((last, earlier)) = codings.split_last() else {
        return Err(bad("empty Transfer-Encoding"));
    };
    // Section 6.3 item 4: if chunked is not the final coding the length
    // cannot be determined, and a server MUST answer 400.
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(bad("final transfer-coding is not chunked"));
    }
    // Section 6.1: chunked MUST NOT be applied more than once.
    if earlier.iter().any(|c| c.eq_ignore_ascii_case(b"chunked")) {
        return Err(bad("chunked applied more than once"));
    }
    for coding in earlier {
        // transfer-coding = token *( OWS ";" OWS transfer-parameter )
        let name = coding
            .split(|&b| b == b';')
            .next()
            .map(trim_ows)
            .unwrap_or_default();
        if !is_token(name) {
            return Err(bad("malformed transfer-coding"));
        }
    }
    if !earlier.is_empty() {
        // RFC 9112 section 6.1: an unknown coding is a 501. We decode none
        // besides chunked (gzip and friends belong to the app, not the server).
        return Err(ProtoError::NotImplemented(
            "transfer-coding other than chunked",
        ));
    }
    Ok(())
}
