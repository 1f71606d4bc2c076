//! The `json` access-log format: one JSON object (RFC 8259) per request with
//! fixed keys, written by hand (no serde: a dozen fields of known shape do
//! not need it). The output is pure ASCII; never writes files.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, FixedOffset, Timelike};

use crate::access_format::{push_joined, AccessRecord};

/// Append the object for `rec` (without newline) to `out`.
pub(crate) fn render(rec: &AccessRecord<'_>, out: &mut String) {
    // Writing into a String cannot fail; the fmt::Result is ignored on purpose.
    out.push_str("{\"time\":\"");
    push_rfc3339(out, &rec.time);
    out.push_str("\",\"remote_addr\":");
    match rec.remote_addr {
        "" => out.push_str("null"),
        addr => push_string(out, addr),
    }
    out.push_str(",\"method\":");
    push_string(out, rec.method);
    out.push_str(",\"path\":");
    push_string(out, rec.path);
    out.push_str(",\"query\":");
    push_string(out, rec.query);
    out.push_str(",\"protocol\":");
    push_string(out, rec.protocol);
    let micros = rec.duration.as_micros();
    let _ = write!(
        out,
        ",\"status\":{},\"bytes\":{},\"duration_ms\":{}.{:03}",
        rec.status,
        rec.response_bytes,
        micros / 1000,
        micros % 1000
    );
    out.push_str(",\"user_agent\":");
    push_header(out, rec.request_headers, "user-agent");
    out.push_str(",\"referer\":");
    push_header(out, rec.request_headers, "referer");
    out.push_str(",\"request_id\":");
    match rec.request_id {
        Some(id) => push_string(out, id),
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"pid\":{}}}", rec.pid);
}

/// `2026-03-01T13:55:36.123+01:00`: RFC 3339 with milliseconds and always a
/// numeric offset (the server's local one, as the `%(t)s` atom uses).
fn push_rfc3339(out: &mut String, t: &DateTime<FixedOffset>) {
    let offset = t.offset().local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs() / 60;
    // A leap second shows as nanosecond >= 1e9 in chrono: keep it in 0..=999.
    let millis = (t.nanosecond() / 1_000_000).min(999);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}{sign}{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        offset / 60,
        offset % 60
    );
}

/// A request header as a JSON string: repeated fields joined with ',' (as
/// the `%(a)s`/`%(f)s` atoms show them), `null` when absent.
fn push_header(out: &mut String, headers: &[(&str, &[u8])], name: &str) {
    let start = out.len();
    out.push('"');
    if push_joined(out, headers, name, escape_bytes) {
        out.push('"');
    } else {
        out.truncate(start);
        out.push_str("null");
    }
}

/// `value` as a quoted JSON string.
fn push_string(out: &mut String, value: &str) {
    out.push('"');
    escape_str(out, value);
    out.push('"');
}

/// RFC 8259 section 7, kept to ASCII: `"` and `\` escaped, control
/// characters as their short escape or `\u00XX`, and everything past `~`
/// (DEL, C1 controls a terminal would act on, non-ASCII) as `\uXXXX`, with
/// a surrogate pair above U+FFFF.
fn escape_str(out: &mut String, value: &str) {
    for c in value.chars() {
        let code = u32::from(c);
        if code >= 0x7f {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            push_ascii(out, c);
        }
    }
}

/// Header bytes, read as latin-1 as WSGI reads them (PEP 3333, "Unicode
/// Issues"): a byte >= 0x7f becomes `\u00XX`, so `json.loads` gives the
/// same text as the environ's `HTTP_*` value.
fn escape_bytes(out: &mut String, value: &[u8]) {
    for &b in value {
        if b >= 0x7f {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            push_ascii(out, char::from(b));
        }
    }
}

fn push_ascii(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        c if u32::from(c) < 0x20 => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(value: &str) -> String {
        let mut out = String::new();
        escape_str(&mut out, value);
        out
    }

    fn esc_bytes(value: &[u8]) -> String {
        let mut out = String::new();
        escape_bytes(&mut out, value);
        out
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc_bytes(br#"a"b\c"#), r#"a\"b\\c"#);
    }

    #[test]
    fn control_characters_use_short_escapes_where_json_has_them() {
        assert_eq!(esc("\n\r\t\u{8}\u{c}"), r"\n\r\t\b\f");
        assert_eq!(esc("\0\u{1}\u{1b}\u{1f}"), r"\u0000\u0001\u001b\u001f");
        assert_eq!(esc_bytes(b"\x00\x1b[31m\n"), r"\u0000\u001b[31m\n");
    }

    #[test]
    fn del_c1_and_non_ascii_text_become_unicode_escapes() {
        assert_eq!(esc("\u{7f}\u{9b}caf\u{e9}"), r"\u007f\u009bcaf\u00e9");
        assert_eq!(esc("\u{20ac}"), r"\u20ac");
        // Above the BMP: a UTF-16 surrogate pair (RFC 8259 section 7).
        assert_eq!(esc("\u{1f600}"), r"\ud83d\ude00");
    }

    #[test]
    fn header_bytes_past_ascii_are_their_latin1_code_points() {
        // UTF-8 "é" is two bytes, each shown as its own latin-1 character,
        // exactly as the environ's HTTP_* value holds it.
        assert_eq!(esc_bytes("é".as_bytes()), r"\u00c3\u00a9");
        assert_eq!(esc_bytes(b"\x7f\x80\xff"), r"\u007f\u0080\u00ff");
    }

    #[test]
    fn printable_ascii_passes_unchanged() {
        let printable: String = (0x20u8..0x7f)
            .map(char::from)
            .filter(|c| !matches!(c, '"' | '\\'))
            .collect();
        assert_eq!(esc(&printable), printable);
        assert_eq!(esc_bytes(printable.as_bytes()), printable);
    }

    #[test]
    fn rfc3339_time_has_milliseconds_and_a_numeric_offset() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T13:55:36.123456+05:30").ok();
        let mut out = String::new();
        push_rfc3339(&mut out, &t.unwrap_or_default());
        assert_eq!(out, "2026-03-01T13:55:36.123+05:30");
        let t = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.000Z").ok();
        out.clear();
        push_rfc3339(&mut out, &t.unwrap_or_default());
        assert_eq!(out, "1999-12-31T23:59:59.000+00:00");
        let t = DateTime::parse_from_rfc3339("2000-01-01T00:00:00.9-08:00").ok();
        out.clear();
        push_rfc3339(&mut out, &t.unwrap_or_default());
        assert_eq!(out, "2000-01-01T00:00:00.900-08:00");
    }

    #[test]
    fn absent_headers_are_null_and_repeated_ones_are_joined() {
        let headers: [(&str, &[u8]); 3] = [
            ("User-Agent", b"a"),
            ("Accept", b"*/*"),
            ("user-agent", b"b\"c"),
        ];
        let mut out = String::new();
        push_header(&mut out, &headers, "user-agent");
        assert_eq!(out, r#""a,b\"c""#);
        out.clear();
        push_header(&mut out, &headers, "referer");
        assert_eq!(out, "null");
    }
}
