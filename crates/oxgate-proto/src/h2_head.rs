//! An HTTP/2 request's header section (RFC 9113 section 8.3) as a
//! `RequestHead`: the pseudo-header fields and fields are written out as an
//! HTTP/1.1 head and checked by `parse_head`, so both versions meet the same
//! rules and the same limits, and the app sees one kind of head. Framing
//! (HPACK, frames, flow control) is not here: this takes decoded fields.

use crate::error::ProtoError;
use crate::head::{parse_head, BodyFraming, Limits, Parsed, RequestHead, Version};
use crate::syntax::is_tchar;

/// The decoded header section of one HTTP/2 request.
#[derive(Debug, Clone, Copy)]
pub struct H2Request<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:authority`, if sent.
    pub authority: Option<&'a str>,
    /// `:path`, with its query.
    pub path: &'a str,
    /// The regular fields, names lower-case (RFC 9113 section 8.2.1).
    pub fields: &'a [(&'a str, &'a [u8])],
    /// The HEADERS frame ended the stream: there is no body.
    pub end_stream: bool,
}

const fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

/// The head of `req`, or why it is refused (its status is the answer).
///
/// - `:authority` becomes the Host field; a Host field that names another
///   authority makes the request malformed (RFC 9113 section 8.3.1).
/// - Several `cookie` fields are one again, joined with "; " (section
///   8.2.3), as the app would see them over HTTP/1.1.
/// - Without a content-length the body runs to the end of the stream: the
///   framing is `Chunked` (delimited by the message itself), so the app
///   gets no CONTENT_LENGTH and reads wsgi.input to its end.
pub fn head_from_h2(req: H2Request<'_>, limits: &Limits) -> Result<RequestHead, ProtoError> {
    if req.method == "CONNECT" {
        // Tunnels (section 8.5) are not WSGI requests.
        return Err(ProtoError::NotImplemented("CONNECT"));
    }
    // h2 decodes these into checked types, but the text below must never
    // let a piece end its line early: checked here as well.
    let visible = |s: &str| s.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !visible(req.method) || !visible(req.path) || !req.authority.is_none_or(visible) {
        return Err(bad("invalid pseudo-header field"));
    }
    let token = |name: &str| !name.is_empty() && name.bytes().all(is_tchar);
    if !req.fields.iter().all(|(name, _)| token(name)) {
        return Err(bad("invalid header name"));
    }
    // HPACK carries any octets; CR or LF would end a line of the head text
    // early (in any field, cookies too: found by fuzzing).
    let breaks = |v: &[u8]| v.iter().any(|&b| b == b'\r' || b == b'\n');
    if req.fields.iter().any(|(_, value)| breaks(value)) {
        return Err(bad("CR or LF in a header value"));
    }
    let mut raw = Vec::with_capacity(256);
    raw.extend_from_slice(req.method.as_bytes());
    raw.push(b' ');
    raw.extend_from_slice(req.path.as_bytes());
    raw.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = req.authority.filter(|a| !a.is_empty());
    if let Some(authority) = authority {
        for &(name, value) in req.fields {
            if name == "host" && !value.eq_ignore_ascii_case(authority.as_bytes()) {
                return Err(bad("Host header differs from :authority"));
            }
        }
        field(&mut raw, "host", authority.as_bytes());
    }
    let mut cookies_done = false;
    let mut has_length = false;
    for &(name, value) in req.fields {
        match name {
            "host" if authority.is_some() => {}
            "cookie" if cookies_done => {}
            "cookie" => {
                cookies_done = true;
                let mut joined = Vec::new();
                let crumbs = req
                    .fields
                    .iter()
                    .filter(|(n, v)| *n == "cookie" && !v.is_empty());
                for (_, v) in crumbs {
                    if !joined.is_empty() {
                        joined.extend_from_slice(b"; ");
                    }
                    joined.extend_from_slice(v);
                }
                field(&mut raw, "cookie", &joined);
            }
            _ => {
                has_length |= name == "content-length";
                field(&mut raw, name, value);
            }
        }
    }
    raw.extend_from_slice(b"\r\n");
    let mut head = match parse_head(&raw, limits)? {
        Parsed::Complete(head, _) => head,
        Parsed::Partial => return Err(bad("incomplete header section")),
    };
    head.version = Version::Http2;
    head.keep_alive = true;
    if req.end_stream {
        head.framing = BodyFraming::None;
        head.expect_continue = false;
    } else if !has_length {
        head.framing = BodyFraming::Chunked;
    }
    Ok(head)
}

fn field(raw: &mut Vec<u8>, name: &str, value: &[u8]) {
    raw.extend_from_slice(name.as_bytes());
    raw.extend_from_slice(b": ");
    raw.extend_from_slice(value);
    raw.extend_from_slice(b"\r\n");
}
