//! Request-head parsing and validation (RFC 9112 sections 2-3, 5-6): limits,
//! request-target forms, Host, and the body-framing decision that stops smuggling.

use memchr::memchr;

use crate::error::ProtoError;
use crate::framing::Decider;
use crate::request_line;
use crate::syntax::{field_value_len, is_field_value_byte, is_tchar, trim_ows};

/// gunicorn's ceiling for `limit_request_line`; 0 also means this.
pub const MAX_REQUEST_LINE: usize = 8190;
/// gunicorn's ceiling for `limit_request_fields`; 0 also means this.
pub const MAX_HEADERS: usize = 32768;
/// What `limit_request_field_size = 0` ("unlimited") really allows: a bound
/// must remain, or one endless header line would grow the buffer forever.
pub const MAX_HEADER_SIZE_UNLIMITED: usize = 65536;

/// Limits with gunicorn's names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Max bytes of the request line (without CRLF). gunicorn: 4094.
    pub max_request_line: usize,
    /// Max number of header fields. gunicorn: 100.
    pub max_headers: usize,
    /// Max bytes of one header field line, its CRLF included (gunicorn's
    /// count). gunicorn: 8190.
    pub max_header_size: usize,
}

impl Limits {
    /// The limits `parse_head` really applies, clamped like gunicorn does:
    /// `max_request_line` 0 or above 8190 becomes 8190, `max_headers` 0 or
    /// above 32768 becomes 32768, `max_header_size` 0 becomes 65536.
    pub fn effective(&self) -> Limits {
        let clamp = |v: usize, max: usize| if v == 0 || v > max { max } else { v };
        Limits {
            max_request_line: clamp(self.max_request_line, MAX_REQUEST_LINE),
            max_headers: clamp(self.max_headers, MAX_HEADERS),
            max_header_size: if self.max_header_size == 0 {
                MAX_HEADER_SIZE_UNLIMITED
            } else {
                self.max_header_size
            },
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 4094,
            max_headers: 100,
            max_header_size: 8190,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// RFC 9113: the head came from HEADERS frames (h2_head.rs), never from
    /// a request line.
    Http2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
            Version::Http2 => "HTTP/2",
        }
    }
}

/// One header field as received (name case preserved, value trimmed of OWS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// A token (RFC 9110 section 5.1): ASCII.
    pub name: &'a str,
    /// Raw bytes: obs-text (0x80-0xFF) is kept.
    pub value: &'a [u8],
}

/// Where a piece of the head lies in its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    /// The span of `piece`, a sub-slice of `whole` (or any empty slice).
    fn of(whole: &[u8], piece: &[u8]) -> Span {
        if piece.is_empty() {
            return Span::default();
        }
        let start = (piece.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
        Span {
            start,
            end: start + piece.len(),
        }
    }

    /// This span's bytes in `whole` (none if it lies outside).
    fn get(self, whole: &[u8]) -> &[u8] {
        whole.get(self.start..self.end).unwrap_or_default()
    }
}

/// How the request body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    /// Delimited by the message itself: the chunked coding, or in HTTP/2
    /// the end of the stream.
    Chunked,
}

/// A parsed request head. It keeps one copy of the head's bytes, and every
/// string it gives out is a piece of them: one allocation per head instead
/// of one per part and per header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    raw: Box<[u8]>,
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    host: Option<Span>,
    /// Name and value of each field line, in order.
    fields: Vec<(Span, Span)>,
    pub version: Version,
    pub framing: BodyFraming,
    /// Whether the connection may stay open after this request (RFC 9112 9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (HTTP/1.1 only).
    pub expect_continue: bool,
}

impl RequestHead {
    fn bytes(&self, span: Span) -> &[u8] {
        span.get(&self.raw)
    }

    /// A piece `parse_head` checked to be ASCII (the request line, field
    /// names, a Host that passed `valid_authority`), so never "" by accident.
    fn text(&self, span: Span) -> &str {
        let bytes = self.bytes(span);
        if !bytes.is_ascii() {
            return "";
        }
        // SAFETY: ASCII bytes are valid UTF-8, checked just above. This is
        // from_utf8 without its general-purpose validation, which cost more
        // than the word-at-a-time ASCII check on these short pieces (the
        // accessors run a dozen times per request).
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// Whether the method is exactly `method` (case-sensitive, RFC 9110
    /// section 9.1). Compares bytes: cheaper than `method() == method`,
    /// which checks the piece is ASCII first.
    pub fn method_is(&self, method: &str) -> bool {
        self.bytes(self.method) == method.as_bytes()
    }

    /// The request-target exactly as sent (RAW_URI).
    pub fn target(&self) -> &str {
        self.text(self.target)
    }

    /// Path part of the target, still percent-encoded; "*" for asterisk-form;
    /// for absolute-form only the path ("/" if empty).
    pub fn path(&self) -> &str {
        match self.text(self.path) {
            "" => "/",
            path => path,
        }
    }

    /// Query string without '?', raw.
    pub fn query(&self) -> &str {
        self.text(self.query)
    }

    /// Host from an absolute-form target, else the Host header, if any;
    /// an empty port ("host:") is dropped (RFC 9110 section 4.2.3).
    pub fn host(&self) -> Option<&str> {
        self.host.map(|h| self.text(h))
    }

    /// The header fields in the order they came.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = Header<'_>> + Clone + '_ {
        self.fields.iter().map(|&(name, value)| Header {
            name: self.text(name),
            value: self.bytes(value),
        })
    }

    /// The field lines as they came, from the first field's name to the
    /// blank line that ends the head: two requests whose sections are equal
    /// bytes have the same header fields in the same order.
    pub fn header_section(&self) -> &[u8] {
        match self.fields.first() {
            Some((name, _)) => self.raw.get(name.start..).unwrap_or_default(),
            None => &[],
        }
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Whether any Connection header of `head` lists `token` (case-insensitive,
/// RFC 9110 section 7.6.1), e.g. "close", "keep-alive" or "upgrade".
pub fn connection_has_token(head: &RequestHead, token: &str) -> bool {
    head.headers()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| crate::syntax::list_elements(h.value))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

#[derive(Debug)]
pub enum Parsed {
    /// A full head; the usize is how many bytes of the buffer it took.
    Complete(RequestHead, usize),
    /// Need more bytes; nothing over a limit so far.
    Partial,
}

/// Parse a request head from the start of `buf`.
///
/// Leading empty lines (CRLF, or a lone LF) before the request line are
/// skipped as RFC 9112 section 2.2 allows, up to `max_request_line` bytes of
/// them. Every other line must end in CRLF. Returns `Partial` until the blank
/// line arrives, and an error as soon as the bytes so far already break a
/// rule or a limit (over-long or garbage request line, too many fields, an
/// over-long or malformed field line), so a caller that re-parses the growing
/// buffer after each read never buffers more than the limits allow.
///
/// `Complete(head, consumed)`: `consumed` counts the skipped empty lines, the
/// request line, the field lines and the final CRLF; the body (if any) starts
/// at `buf[consumed]`. The function is stateless: call it again on the whole
/// buffer when more bytes arrive.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtoError> {
    let lim = limits.effective();
    let Some(start) = skip_empty_lines(buf, lim.max_request_line)? else {
        return Ok(Parsed::Partial);
    };
    let rest = buf.get(start..).unwrap_or_default();
    // The everyday request line in one pass; any other is taken and judged
    // in full, which is where every error comes from.
    let (request_line, taken) = match request_line::parse_common(rest, lim.max_request_line) {
        Some(common) => common,
        None => {
            let line = match take_line(
                rest,
                lim.max_request_line,
                ProtoError::UriTooLong,
                check_partial_request_line,
            )? {
                Line::Complete(line) => line,
                Line::Partial => return Ok(Parsed::Partial),
            };
            (
                request_line::parse(line, lim.max_request_line)?,
                line.len() + 2,
            )
        }
    };
    let mut pos = start + taken;

    let mut fields: Vec<(Span, Span)> = Vec::with_capacity(8);
    let mut decider = Decider::default();
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        match rest {
            [] | [b'\r'] => return Ok(Parsed::Partial),
            [b'\r', b'\n', ..] => {
                pos += 2;
                break;
            }
            [b'\r', ..] => return Err(bad("bare CR in header section")),
            [b'\n', ..] => return Err(bad("bare LF in header section")),
            // RFC 9112 section 5.2: obs-fold is refused with 400 outside
            // message/http; section 2.2: so is whitespace before the first
            // field line. Both are classic ways to hide a header from a proxy.
            [b' ' | b'\t', ..] => return Err(bad("obsolete line folding or leading whitespace")),
            _ => {}
        }
        if fields.len() >= lim.max_headers {
            return Err(ProtoError::HeaderFieldsTooLarge("too many header fields"));
        }
        // gunicorn counts a field line with its CRLF against the limit.
        let max = lim.max_header_size.saturating_sub(2);
        let (name, value, taken) = match common_field(rest, max) {
            Some(field) => field,
            None => {
                let too_long = ProtoError::HeaderFieldsTooLarge("header field line too long");
                match take_line(rest, max, too_long, check_partial_field)? {
                    Line::Complete(line) => {
                        let (name, value) = parse_field(line)?;
                        (name, value, line.len() + 2)
                    }
                    Line::Partial => return Ok(Parsed::Partial),
                }
            }
        };
        decider.field(name, value);
        fields.push((Span::of(buf, name), Span::of(buf, value)));
        pos += taken;
    }

    let decided = decider.finish(request_line.version)?;
    let raw: Box<[u8]> = buf.get(..pos).unwrap_or_default().into();
    let head = RequestHead {
        method: Span::of(buf, request_line.method),
        target: Span::of(buf, request_line.target),
        path: Span::of(buf, request_line.path),
        query: Span::of(buf, request_line.query),
        // RFC 9112 section 3.2.2: an absolute-form target's authority wins
        // over the Host header.
        host: request_line.host.or(decided.host).map(|h| Span::of(buf, h)),
        fields,
        version: request_line.version,
        framing: decided.framing,
        keep_alive: decided.keep_alive,
        expect_continue: decided.expect_continue,
        raw,
    };
    Ok(Parsed::Complete(head, pos))
}

const fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

/// Skip the empty lines RFC 9112 section 2.2 lets a server ignore before the
/// request line (left over after a body by some clients). Both CRLF and a
/// lone LF count: they carry no framing, so tolerating them cannot
/// desynchronise anyone. More than `max` bytes of them is abuse.
/// Returns None when the buffer ends inside them.
fn skip_empty_lines(buf: &[u8], max: usize) -> Result<Option<usize>, ProtoError> {
    let mut pos = 0;
    loop {
        match buf.get(pos..).unwrap_or_default() {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            [] | [b'\r'] => return Ok(None),
            _ => return Ok(Some(pos)),
        }
        if pos > max {
            return Err(bad("too many empty lines before the request line"));
        }
    }
}

enum Line<'a> {
    /// The line's content, CRLF excluded.
    Complete(&'a [u8]),
    /// No LF yet, and nothing wrong so far.
    Partial,
}

/// The next CRLF-terminated line of `rest`, refused with `too_long` as soon as
/// its content must exceed `max` bytes, complete or not. Only a window of
/// `max + 2` bytes is searched, so an endless line costs O(limit) per call.
///
/// `check_partial` judges an unfinished line: it refuses early what can
/// never become valid, so a client cannot make us wait for the rest of
/// garbage. It also judges the first `max` bytes of an over-long line before
/// `too_long` is returned: the error is then the one the first offending
/// byte causes, the same whether the line arrives at once or byte by byte.
fn take_line(
    rest: &[u8],
    max: usize,
    too_long: ProtoError,
    check_partial: fn(&[u8]) -> Result<(), ProtoError>,
) -> Result<Line<'_>, ProtoError> {
    let window = &rest[..rest.len().min(max.saturating_add(2))];
    let content = match memchr(b'\n', window) {
        Some(lf) => match window[..lf].split_last() {
            Some((b'\r', content)) if content.len() <= max => return Ok(Line::Complete(content)),
            Some((b'\r', content)) => content,
            // RFC 9112 section 2.2 allows a lone LF as terminator, but a
            // proxy that does not would see a different message: refuse.
            // A line already over the limit before its LF is too long first.
            _ if lf <= max => return Err(bad("bare LF line ending")),
            _ => &window[..lf],
        },
        None => match window.split_last() {
            // A trailing CR may be the start of the CRLF.
            Some((b'\r', content)) => content,
            _ => window,
        },
    };
    check_partial(&content[..content.len().min(max)])?;
    if content.len() > max {
        Err(too_long)
    } else {
        Ok(Line::Partial)
    }
}

/// The field line at the start of `rest` when it has the everyday shape,
/// in one pass: a token name, ':', field-value bytes and CRLF, within `max`.
/// Gives the name, the value without OWS and the bytes taken with the CRLF.
/// None for anything else (unfinished, over the limit, or invalid):
/// `take_line` and `parse_field` then judge it in full, which is what
/// decides every error. So this may only accept what they accept, with the
/// same pieces.
fn common_field(rest: &[u8], max: usize) -> Option<(&[u8], &[u8], usize)> {
    // Only the bytes a line within the limit can span are looked at.
    let rest = &rest[..rest.len().min(max.saturating_add(2))];
    let colon = rest.iter().position(|&b| !is_tchar(b))?;
    let (name, after_name) = rest.split_at(colon);
    let after_colon = match after_name {
        [b':', after_colon @ ..] if !name.is_empty() => after_colon,
        _ => return None,
    };
    let value_len = field_value_len(after_colon);
    let (value, after_value) = after_colon.split_at(value_len);
    if colon + 1 + value_len > max || !after_value.starts_with(b"\r\n") {
        return None;
    }
    Some((name, trim_ows(value), colon + value_len + 3))
}

/// What is already wrong in an unfinished request line: method, target and
/// version are all printable ASCII.
fn check_partial_request_line(prefix: &[u8]) -> Result<(), ProtoError> {
    if prefix.iter().all(|&b| (0x20..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(bad("control or non-ASCII byte in request line"))
    }
}

/// `field-line = field-name ":" OWS field-value OWS` (RFC 9112 section 5):
/// the name (a token) and the value without OWS, as pieces of `line`.
fn parse_field(line: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let colon = memchr(b':', line).ok_or(bad("header line without colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    check_name(name)?;
    check_value(value)?;
    Ok((name, trim_ows(value)))
}

/// What is already wrong in an unfinished field line.
fn check_partial_field(prefix: &[u8]) -> Result<(), ProtoError> {
    match memchr(b':', prefix) {
        Some(colon) => {
            check_name(&prefix[..colon])?;
            check_value(&prefix[colon + 1..])
        }
        None if prefix.iter().all(|&b| is_tchar(b)) => Ok(()),
        None => check_name(prefix),
    }
}

fn check_name(name: &[u8]) -> Result<(), ProtoError> {
    if name.is_empty() {
        return Err(bad("empty header name"));
    }
    if let Some(&b) = name.iter().find(|&&b| !is_tchar(b)) {
        // RFC 9112 section 5.1: no whitespace between name and colon, MUST
        // answer 400 (a proxy might strip it and see another header).
        return Err(bad(if b == b' ' || b == b'\t' {
            "whitespace between header name and colon"
        } else {
            "invalid header name"
        }));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), ProtoError> {
    // RFC 9110 section 5.5: CR, LF and NUL MUST be refused or replaced; we
    // refuse them and every other control but HTAB. obs-text is kept.
    if value.iter().all(|&b| is_field_value_byte(b)) {
        Ok(())
    } else {
        Err(bad("control character in header value"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The full judgement of one field line: take it, then parse it.
    fn full(rest: &[u8], max: usize) -> Option<(&[u8], &[u8], usize)> {
        let too_long = ProtoError::HeaderFieldsTooLarge("header field line too long");
        match take_line(rest, max, too_long, check_partial_field) {
            Ok(Line::Complete(line)) => {
                let (name, value) = parse_field(line).ok()?;
                Some((name, value, line.len() + 2))
            }
            _ => None,
        }
    }

    #[test]
    fn header_section_is_the_field_lines_whatever_the_request_line() {
        let parsed = |raw: &[u8]| match parse_head(raw, &Limits::default()) {
            Ok(Parsed::Complete(head, _)) => head,
            other => panic!("{raw:?}: {other:?}"),
        };
        let a = parsed(b"\r\nGET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\nbody");
        let b = parsed(b"POST /other HTTP/1.0\r\nHost: h\r\nX-A: 1\r\n\r\n");
        assert_eq!(a.header_section(), b"Host: h\r\nX-A: 1\r\n\r\n");
        assert_eq!(a.header_section(), b.header_section());
        let c = parsed(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 2\r\n\r\n");
        assert_ne!(a.header_section(), c.header_section());
        assert_eq!(parsed(b"GET / HTTP/1.0\r\n\r\n").header_section(), b"");
    }

    #[test]
    fn common_field_accepts_only_what_the_full_parse_accepts_alike() {
        let lines: [&[u8]; 16] = [
            b"Host: example.com\r\n",
            b"Host:example.com\r\n",
            b"X-A:  \t spaced \t \r\n",
            b"X-Empty:\r\n",
            b"X-Obs: caf\xc3\xa9\r\n",
            b"X-Tab:\ta\tb\r\n",
            b"X-Colons: a:b:c\r\n",
            b": no name\r\n",
            b"Bad Name: v\r\n",
            b"Name : v\r\n",
            b"X-Ctl: a\x01b\r\n",
            b"X-Del: a\x7fb\r\n",
            b"X-CR: a\rb\r\n",
            b"X-LF: ab\n",
            b"X-Unfinished: abc\r",
            b"NoColon\r\n",
        ];
        for line in lines {
            for max in [0, 5, line.len() - 3, line.len() - 2, line.len(), 8190] {
                let fast = common_field(line, max);
                if fast.is_some() {
                    assert_eq!(fast, full(line, max), "{line:?} max {max}");
                }
            }
        }
        // The everyday shapes do take the one-pass path.
        assert!(common_field(b"Host: example.com\r\n", 8190).is_some());
        assert!(common_field(b"X-Empty:\r\n", 8190).is_some());
        assert!(common_field(b"X-Tab:\ta\tb\r\n", 8190).is_some());
        // A line exactly at the limit is in; one byte more is left to the
        // full parse (which refuses it).
        assert!(common_field(b"Ab: c\r\n", 5).is_some());
        assert!(common_field(b"Ab: cd\r\n", 5).is_none());
    }
}
