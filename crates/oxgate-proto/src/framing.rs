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

/// The header fields seen so far, as far as the decisions care: fed each
/// field as `parse_head` takes it, so no second walk over the fields and
/// only names of the right length are compared.
#[derive(Debug, Default)]
pub(crate) struct Decider<'a> {
    host: Option<&'a [u8]>,
    transfer_encodings: Vec<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    close: bool,
    keep_alive_token: bool,
    expect_continue: bool,
    /// The first repeated Host or Content-Length. It is the answer once the
    /// whole section has been read (a bad line later is answered first), and
    /// nothing after it counts, as if the walk over the fields stopped there.
    repeated: Option<ProtoError>,
}

impl<'a> Decider<'a> {
    /// Take note of one field (name as sent, value without OWS).
    #[inline]
    pub(crate) fn field(&mut self, name: &[u8], value: &'a [u8]) {
        if self.repeated.is_some() {
            return;
        }
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                // RFC 9112 section 3.2: more than one Host line is a 400.
                let earlier = self.host.replace(value);
                self.refuse_repeat(earlier, "more than one Host header");
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                self.transfer_encodings.push(value);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // RFC 9112 section 6.3 lets a recipient accept repeated
                // identical values; we refuse every repetition: the one parse
                // a proxy and this server cannot disagree on is "exactly one".
                let earlier = self.content_length.replace(value);
                self.refuse_repeat(earlier, "more than one Content-Length header");
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in list_elements(value) {
                    self.close |= option.eq_ignore_ascii_case(b"close");
                    self.keep_alive_token |= option.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                // RFC 9110 section 10.1.1: only 100-continue is defined; other
                // expectations are ignored rather than answered with 417.
                self.expect_continue |= trim_ows(value).eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }

    /// A field that may appear once had an `earlier` value.
    fn refuse_repeat(&mut self, earlier: Option<&[u8]>, why: &'static str) {
        if earlier.is_some() {
            self.repeated = Some(bad(why));
        }
    }

    /// Decide, once every field line has been read.
    pub(crate) fn finish(self, version: Version) -> Result<Decisions<'a>, ProtoError> {
        if let Some(repeated) = self.repeated {
            return Err(repeated);
        }
        let host = self.host;
        let framing = body_framing(version, &self.transfer_encodings, self.content_length)?;

        if let Some(value) = host {
            if !valid_authority(value) {
                return Err(bad("invalid Host header"));
            }
        }
        // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1
        // request without Host.
        if version == Version::Http11 && host.is_none() {
            return Err(bad("missing Host header"));
        }

        // RFC 9112 section 9.3: 1.1 persists unless "close"; 1.0 only with
        // an explicit keep-alive (RFC 9112 appendix C.2.2), and "close" wins.
        let keep_alive = match version {
            Version::Http11 | Version::Http2 => !self.close,
            Version::Http10 => self.keep_alive_token && !self.close,
        };
        Ok(Decisions {
            framing,
            keep_alive,
            expect_continue: self.expect_continue && version == Version::Http11,
            host: host.map(without_empty_port).filter(|v| !v.is_empty()),
        })
    }
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
