//! Conditional requests and content coding for static files: the entity
//! tag of a file, If-None-Match (RFC 9110 section 13.1.2, weak
//! comparison), If-Range (section 13.1.5, strong), and whether
//! Accept-Encoding allows a coding (section 12.5.3).

/// A strong entity tag from what changes when the file does; `coding`
/// tells a precompressed variant from the plain file.
pub fn etag(size: u64, mtime_nanos: u128, coding: Option<&str>) -> String {
    match coding {
        Some(c) => format!("\"{mtime_nanos:x}-{size:x}-{c}\""),
        None => format!("\"{mtime_nanos:x}-{size:x}\""),
    }
}

/// If-None-Match matches `tag`: "*", or any listed tag equal to it when
/// the W/ prefixes are ignored.
pub fn none_match(header: &[u8], tag: &str) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    let opaque = tag.trim_start_matches("W/");
    text.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == opaque)
}

/// An If-Range holding an entity tag allows the range only when it is
/// this strong tag exactly.
pub fn if_range_tag_matches(header: &str, tag: &str) -> bool {
    !header.starts_with("W/") && header == tag
}

/// Whether Accept-Encoding lets us send `coding`: listed (or `*`) with a
/// q-value above 0. `identity` is always fine and not asked about here.
pub fn accepts(header: &[u8], coding: &str) -> bool {
    let Ok(text) = std::str::from_utf8(header) else {
        return false;
    };
    let mut star = None;
    for item in text.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .next()
            .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case(coding) {
            return q > 0.0;
        }
        if name == "*" {
            star = Some(q > 0.0);
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_by_coding() {
        assert_eq!(etag(10, 255, None), "\"ff-a\"");
        assert_eq!(etag(10, 255, Some("br")), "\"ff-a-br\"");
    }

    #[test]
    fn if_none_match_lists() {
        let tag = "\"ff-a\"";
        assert!(none_match(b"\"ff-a\"", tag));
        assert!(none_match(b"W/\"ff-a\"", tag));
        assert!(none_match(b"\"x\", \"ff-a\"", tag));
        assert!(none_match(b"*", tag));
        assert!(!none_match(b"\"ff-b\"", tag));
        assert!(!none_match(b"", tag));
    }

    #[test]
    fn if_range_is_strong() {
        assert!(if_range_tag_matches("\"ff-a\"", "\"ff-a\""));
        assert!(!if_range_tag_matches("W/\"ff-a\"", "\"ff-a\""));
    }

    #[test]
    fn accept_encoding_q_values() {
        assert!(accepts(b"gzip, deflate, br", "br"));
        assert!(accepts(b"gzip;q=0.5", "gzip"));
        assert!(!accepts(b"br;q=0", "br"));
        assert!(!accepts(b"br;q=0.0, *", "br"));
        assert!(accepts(b"*", "gzip"));
        assert!(!accepts(b"*;q=0", "gzip"));
        assert!(!accepts(b"gzip", "br"));
        assert!(accepts(b"GZIP", "gzip"));
        assert!(!accepts(b"", "gzip"));
    }
}
