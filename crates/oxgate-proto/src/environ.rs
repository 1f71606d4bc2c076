//! WSGI environ mapping rules (PEP 3333 / CGI): header names to keys, path decoding.
//! Pure functions over strings; building the environ dict is oxgate-py's job.

/// The environ key for a request header, or None when it must be dropped
/// (a name with '_' would alias a dashed one: X_Forwarded_For must not
/// become HTTP_X_FORWARDED_FOR). Content-Type and Content-Length map to
/// CONTENT_TYPE and CONTENT_LENGTH.
pub fn header_key(name: &str) -> Option<String> {
    if name.contains('_') {
        return None;
    }
    // CGI (RFC 3875 section 4.1) names these two without the HTTP_ prefix.
    if name.eq_ignore_ascii_case("content-type") {
        return Some("CONTENT_TYPE".to_owned());
    }
    if name.eq_ignore_ascii_case("content-length") {
        return Some("CONTENT_LENGTH".to_owned());
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_uppercase()
        }
    }));
    Some(key)
}

/// Percent-decode a path into raw bytes (invalid escapes are kept as-is).
///
/// PATH_INFO is the decoded path (PEP 3333 follows CGI here); the caller turns
/// the bytes into a latin-1 `str`. `%2F` decodes to '/' like every other
/// WSGI server does; RAW_URI keeps the original for apps that care.
pub fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            if let Some(&[hi, lo]) = bytes.get(i + 1..i + 3) {
                if let (Some(hi), Some(lo)) = (hex(hi), hex(lo)) {
                    out.push((hi << 4) | lo);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn header_key_prefixes_and_uppercases() {
        assert_eq!(
            header_key("X-Forwarded-For").as_deref(),
            Some("HTTP_X_FORWARDED_FOR")
        );
        assert_eq!(header_key("accept").as_deref(), Some("HTTP_ACCEPT"));
        assert_eq!(header_key("Host").as_deref(), Some("HTTP_HOST"));
    }

    #[test]
    fn header_key_maps_content_type_and_length_without_prefix() {
        assert_eq!(header_key("content-type").as_deref(), Some("CONTENT_TYPE"));
        assert_eq!(header_key("Content-Type").as_deref(), Some("CONTENT_TYPE"));
        assert_eq!(
            header_key("CONTENT-LENGTH").as_deref(),
            Some("CONTENT_LENGTH")
        );
    }

    #[test]
    fn header_key_drops_names_with_underscore() {
        assert_eq!(header_key("X_Forwarded_For"), None);
        assert_eq!(header_key("Content_Length"), None);
        assert_eq!(header_key("_"), None);
    }

    #[test]
    fn percent_decode_decodes_either_case() {
        assert_eq!(percent_decode("/a%20b%2fc%2Fd"), b"/a b/c/d");
        assert_eq!(percent_decode("/%e2%82%AC"), "/\u{20ac}".as_bytes());
        assert_eq!(percent_decode("/%00"), b"/\x00");
        assert_eq!(percent_decode("/%ff"), b"/\xff");
    }

    #[test]
    fn percent_decode_keeps_invalid_and_truncated_escapes() {
        assert_eq!(percent_decode("/%"), b"/%");
        assert_eq!(percent_decode("/%4"), b"/%4");
        assert_eq!(percent_decode("/%zz%4g"), b"/%zz%4g");
        assert_eq!(percent_decode("%%41"), b"%A");
        assert_eq!(percent_decode("/plain"), b"/plain");
        assert_eq!(percent_decode(""), b"");
    }
}
