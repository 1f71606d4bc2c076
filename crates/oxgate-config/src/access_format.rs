//! The access-log line: gunicorn's `%(atom)s` format compiled once, then
//! rendered per request without re-parsing. Client-controlled text is escaped
//! so a request cannot forge or break log lines. Formats; never writes files.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use crate::access_json;
use crate::error::ConfigError;

/// The format value that selects one JSON object per line (access_json.rs)
/// instead of `%(atom)s` text: a format of just this word would log the same
/// word for every request, so no working gunicorn format is taken away.
pub const JSON_FORMAT: &str = "json";

/// gunicorn's default: Apache's combined log format.
pub const DEFAULT_ACCESS_LOG_FORMAT: &str =
    r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// The atoms a format may use, with their meaning (for --help and the docs).
pub(crate) const ATOM_DOCS: &[(&str, &str)] = &[
    ("h", "remote address"),
    ("l", "`-` (identd is not used)"),
    ("u", "user name from `Authorization: Basic`, or `-`"),
    ("t", "request start time, `[10/Oct/2000:13:55:36 +0000]`"),
    ("r", "request line, `GET /path?query HTTP/1.1`"),
    ("m", "request method"),
    ("U", "URL path without query string"),
    ("q", "query string"),
    ("H", "protocol, `HTTP/1.1`"),
    ("s", "status code"),
    ("B", "response body bytes"),
    ("b", "response body bytes, `-` when 0"),
    ("f", "`Referer` header"),
    ("a", "`User-Agent` header"),
    ("T", "request time in whole seconds"),
    ("M", "request time in milliseconds"),
    ("D", "request time in microseconds"),
    ("L", "request time in decimal seconds, `0.001234`"),
    ("p", "process id, `<1234>`"),
    (
        "rid",
        "the request id of `--request-id`, `-` when off (an oxgate atom)",
    ),
    ("{name}i", "request header `name`"),
    ("{name}o", "response header `name`"),
    (
        "{name}e",
        "WSGI environ variable `name` (not available: always `-`)",
    ),
];

/// One finished request, as the access log sees it.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    pub remote_addr: &'a str,
    pub method: &'a str,
    /// The raw request target, as received.
    pub target: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    /// "HTTP/1.1".
    pub protocol: &'a str,
    pub status: u16,
    /// Body bytes sent.
    pub response_bytes: u64,
    pub request_headers: &'a [(&'a str, &'a [u8])],
    pub response_headers: &'a [(&'a str, &'a str)],
    pub duration: Duration,
    /// When the request started.
    pub time: DateTime<FixedOffset>,
    pub pid: u32,
    /// The id `--request-id` gave the request; None when it is off.
    pub request_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    RemoteAddr,
    Ident,
    User,
    Time,
    RequestLine,
    Method,
    Path,
    Query,
    Protocol,
    Status,
    Bytes,
    BytesOrDash,
    Referer,
    UserAgent,
    Seconds,
    Millis,
    Micros,
    DecimalSeconds,
    Pid,
    RequestId,
    /// The whole line as one JSON object.
    Json,
    /// Lowercased name (gunicorn lowercases both sides).
    RequestHeader(String),
    ResponseHeader(String),
    Environ,
}

/// A compiled access-log format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogFormat {
    source: String,
    parts: Vec<Part>,
}

impl Default for AccessLogFormat {
    fn default() -> Self {
        // The default is a constant that a test proves compiles; the fallback
        // only keeps this infallible without an unwrap.
        AccessLogFormat::compile(DEFAULT_ACCESS_LOG_FORMAT).unwrap_or_else(|_| AccessLogFormat {
            source: DEFAULT_ACCESS_LOG_FORMAT.to_string(),
            parts: vec![Part::Literal(DEFAULT_ACCESS_LOG_FORMAT.to_string())],
        })
    }
}

impl AccessLogFormat {
    /// Compile a format; unknown atoms and stray `%` are errors.
    pub fn parse(fmt: &str) -> Result<AccessLogFormat, ConfigError> {
        AccessLogFormat::compile(fmt)
            .map_err(|why| ConfigError::new(format!("invalid access log format: {why}")))
    }

    /// The format text it was compiled from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Compile, with an error that says only what is wrong.
    pub(crate) fn compile(fmt: &str) -> Result<AccessLogFormat, String> {
        if fmt == JSON_FORMAT {
            return Ok(AccessLogFormat {
                source: fmt.to_string(),
                parts: vec![Part::Json],
            });
        }
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = fmt;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let offset = fmt.len() - rest.len() + at;
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let Some(inner) = after.strip_prefix('(') else {
                return Err(format!(
                    "'%' at position {offset} must start '%(atom)s'; write '%%' for a literal percent"
                ));
            };
            let Some((name, tail)) = inner.split_once(')') else {
                return Err(format!(
                    "'%(' at position {offset} is never closed with ')s'"
                ));
            };
            let Some(tail) = tail.strip_prefix('s') else {
                return Err(format!(
                    "write '%({name})s': only the 's' conversion is supported"
                ));
            };
            let part = atom(name).ok_or_else(|| {
                format!(
                    "unknown atom '%({name})s'; known atoms: {}",
                    ATOM_DOCS
                        .iter()
                        .map(|(a, _)| *a)
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })?;
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(AccessLogFormat {
            source: fmt.to_string(),
            parts,
        })
    }

    /// Whether rendering looks at `AccessRecord::response_headers` (making
    /// them costs the access log an allocation per header).
    pub fn uses_response_headers(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::ResponseHeader(_)))
    }

    /// Append one log line (without newline) for `rec` to `out`.
    pub fn render(&self, rec: &AccessRecord<'_>, out: &mut String) {
        for part in &self.parts {
            render_part(part, rec, out);
        }
    }
}

fn atom(name: &str) -> Option<Part> {
    let part = match name {
        "h" => Part::RemoteAddr,
        "l" => Part::Ident,
        "u" => Part::User,
        "t" => Part::Time,
        "r" => Part::RequestLine,
        "m" => Part::Method,
        "U" => Part::Path,
        "q" => Part::Query,
        "H" => Part::Protocol,
        "s" => Part::Status,
        "B" => Part::Bytes,
        "b" => Part::BytesOrDash,
        "f" => Part::Referer,
        "a" => Part::UserAgent,
        "T" => Part::Seconds,
        "M" => Part::Millis,
        "D" => Part::Micros,
        "L" => Part::DecimalSeconds,
        "p" => Part::Pid,
        "rid" => Part::RequestId,
        _ => {
            let inner = name.strip_prefix('{')?;
            let (header, kind) = inner.rsplit_once('}')?;
            if header.is_empty() {
                return None;
            }
            let header = header.to_ascii_lowercase();
            match kind {
                "i" => Part::RequestHeader(header),
                "o" => Part::ResponseHeader(header),
                "e" => Part::Environ,
                _ => return None,
            }
        }
    };
    Some(part)
}

fn render_part(part: &Part, rec: &AccessRecord<'_>, out: &mut String) {
    // Writing into a String cannot fail; the fmt::Result is ignored on purpose.
    match part {
        Part::Literal(text) => out.push_str(text),
        Part::RemoteAddr => push_str_or_dash(out, rec.remote_addr),
        Part::Ident | Part::Environ => out.push('-'),
        Part::User => match basic_auth_user(rec.request_headers) {
            Some(user) => escape_str(out, &user),
            None => out.push('-'),
        },
        Part::Time => push_time(out, &rec.time),
        Part::RequestLine => {
            escape_str(out, rec.method);
            out.push(' ');
            escape_str(out, rec.target);
            out.push(' ');
            escape_str(out, rec.protocol);
        }
        Part::Method => escape_str(out, rec.method),
        Part::Path => escape_str(out, rec.path),
        Part::Query => escape_str(out, rec.query),
        Part::Protocol => escape_str(out, rec.protocol),
        Part::Status => {
            let _ = write!(out, "{}", rec.status);
        }
        Part::Bytes => {
            let _ = write!(out, "{}", rec.response_bytes);
        }
        Part::BytesOrDash if rec.response_bytes == 0 => out.push('-'),
        Part::BytesOrDash => {
            let _ = write!(out, "{}", rec.response_bytes);
        }
        Part::Referer => push_joined_header(out, rec.request_headers, "referer"),
        Part::UserAgent => push_joined_header(out, rec.request_headers, "user-agent"),
        Part::Seconds => {
            let _ = write!(out, "{}", rec.duration.as_secs());
        }
        Part::Millis => {
            let _ = write!(out, "{}", rec.duration.as_millis());
        }
        Part::Micros => {
            let _ = write!(out, "{}", rec.duration.as_micros());
        }
        Part::DecimalSeconds => {
            let d = rec.duration;
            let _ = write!(out, "{}.{:06}", d.as_secs(), d.subsec_micros());
        }
        Part::Pid => {
            let _ = write!(out, "<{}>", rec.pid);
        }
        Part::RequestId => push_str_or_dash(out, rec.request_id.unwrap_or_default()),
        Part::Json => access_json::render(rec, out),
        // Like gunicorn's atoms dict, a repeated header shows its last value.
        Part::RequestHeader(name) => {
            match rec
                .request_headers
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some((_, value)) => escape_bytes(out, value),
                None => out.push('-'),
            }
        }
        Part::ResponseHeader(name) => {
            match rec
                .response_headers
                .iter()
                .rev()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                Some((_, value)) => escape_str(out, value),
                None => out.push('-'),
            }
        }
    }
}

thread_local! {
    /// The last second `push_time` wrote (timestamp, offset), as it wrote it:
    /// a busy worker logs many lines a second.
    static LAST_TIME: RefCell<(i64, i32, String)> = const { RefCell::new((0, 0, String::new())) };
}

/// `[10/Oct/2000:13:55:36 -0700]`, written by hand: chrono's `format` would
/// re-parse its pattern on every request.
fn push_time(out: &mut String, t: &DateTime<FixedOffset>) {
    let key = (t.timestamp(), t.offset().local_minus_utc());
    LAST_TIME.with_borrow_mut(|(secs, offset, text)| {
        if (*secs, *offset) != key || text.is_empty() {
            text.clear();
            render_time(text, t);
            (*secs, *offset) = key;
        }
        out.push_str(text);
    });
}

fn render_time(out: &mut String, t: &DateTime<FixedOffset>) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = usize::try_from(t.month0())
        .ok()
        .and_then(|m| MONTHS.get(m))
        .unwrap_or(&"???");
    let offset = t.offset().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs() / 60;
    let _ = write!(
        out,
        "[{:02}/{month}/{:04}:{:02}:{:02}:{:02} {sign}{:02}{:02}]",
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second(),
        offset / 60,
        offset % 60
    );
}

/// Referer and User-Agent come from the WSGI environ in gunicorn, where
/// repeated headers are joined with ','; do the same.
fn push_joined_header(out: &mut String, headers: &[(&str, &[u8])], name: &str) {
    if !push_joined(out, headers, name, escape_bytes) {
        out.push('-');
    }
}

/// Every `name` header's value, escaped by `escape` and joined with ',';
/// false when there is none.
pub(crate) fn push_joined(
    out: &mut String,
    headers: &[(&str, &[u8])],
    name: &str,
    escape: fn(&mut String, &[u8]),
) -> bool {
    let mut found = false;
    for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
        if found {
            out.push(',');
        }
        found = true;
        escape(out, value);
    }
    found
}

fn push_str_or_dash(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('-');
    } else {
        escape_str(out, value);
    }
}

/// Bytes a client could use to break or forge a log line: C0 controls (CR,
/// LF, ESC), DEL, C1 controls (terminals act on U+009B CSI), the quote that
/// delimits fields in the default format, and the backslash that introduces
/// our escapes (so the escaped text stays unambiguous).
fn needs_escape(c: u32) -> bool {
    c < 0x20 || (0x7f..=0x9f).contains(&c) || c == u32::from(b'"') || c == u32::from(b'\\')
}

fn escape_str(out: &mut String, value: &str) {
    for c in value.chars() {
        if needs_escape(u32::from(c)) {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
}

/// Header values are bytes (RFC 9110 section 5.5 allows obs-text): shown as
/// latin-1, like WSGI's native strings (PEP 3333, "Unicode Issues").
fn escape_bytes(out: &mut String, value: &[u8]) {
    for &b in value {
        if needs_escape(u32::from(b)) {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// The user name of `Authorization: Basic base64(user:password)` (RFC 7617),
/// as gunicorn's `%(u)s` shows it; `None` when absent, malformed or not UTF-8.
fn basic_auth_user(headers: &[(&str, &[u8])]) -> Option<String> {
    let (_, value) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))?;
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, credentials) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(credentials.trim())?;
    let user = decoded.split(|&b| b == b':').next()?;
    let user = String::from_utf8(user.to_vec()).ok()?;
    (!user.is_empty()).then_some(user)
}

/// Standard base64 (RFC 4648 section 4), padding optional. Small enough that
/// a dependency is not worth it for one log atom.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation keeps exactly the 8 bits just completed.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One leftover character carries only 6 bits: not valid base64.
    (bits < 6).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_format_compiles() {
        assert!(AccessLogFormat::compile(DEFAULT_ACCESS_LOG_FORMAT).is_ok());
        assert_eq!(
            AccessLogFormat::default().as_str(),
            DEFAULT_ACCESS_LOG_FORMAT
        );
    }

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
        assert_eq!(base64_decode("").unwrap(), b"");
    }

    #[test]
    fn base64_rejects_bad_characters_and_lengths() {
        assert!(base64_decode("a*b").is_none());
        assert!(base64_decode("Y").is_none());
    }

    #[test]
    fn a_remembered_time_is_written_again_only_for_its_own_second_and_offset() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let west = FixedOffset::west_opt(7 * 3600).unwrap();
        let at = |secs: i64, nanos: u32, tz: FixedOffset| {
            DateTime::from_timestamp(secs, nanos)
                .unwrap()
                .with_timezone(&tz)
        };
        // In this order: the same second again, the same second elsewhere,
        // the next second, and a second long past.
        let cases = [
            (at(971_185_536, 0, west), "[10/Oct/2000:06:45:36 -0700]"),
            (at(971_185_536, 5, west), "[10/Oct/2000:06:45:36 -0700]"),
            (at(971_185_536, 0, utc), "[10/Oct/2000:13:45:36 +0000]"),
            (at(971_185_537, 0, utc), "[10/Oct/2000:13:45:37 +0000]"),
            (at(0, 0, utc), "[01/Jan/1970:00:00:00 +0000]"),
        ];
        for (t, want) in cases {
            let mut out = String::from("x");
            push_time(&mut out, &t);
            assert_eq!(out, format!("x{want}"), "{t}");
        }
    }
}
