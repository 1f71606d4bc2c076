//! Facts about a static file from its name: its Content-Type, and whether
//! the name carries a content hash (then it never changes and may be
//! cached for a year).

/// The Content-Type for a file name, by extension (case-insensitive);
/// text types say UTF-8. Unknown: application/octet-stream, which browsers
/// download rather than guess at (with `X-Content-Type-Options: nosniff`).
pub fn content_type(name: &[u8]) -> &'static str {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) => &name[i + 1..],
        None => return OCTET_STREAM,
    };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return OCTET_STREAM;
    }
    for (d, s) in lower.iter_mut().zip(ext) {
        *d = s.to_ascii_lowercase();
    }
    let ext = &lower[..ext.len()];
    TYPES
        .iter()
        .find(|(e, _)| e.as_bytes() == ext)
        .map_or(OCTET_STREAM, |(_, t)| t)
}

const OCTET_STREAM: &str = "application/octet-stream";

const TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("xml", "application/xml"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/vnd.microsoft.icon"),
    ("bmp", "image/bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("tar", "application/x-tar"),
    ("wasm", "application/wasm"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("ogv", "video/ogg"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("wav", "audio/wav"),
    ("flac", "audio/flac"),
    ("m4a", "audio/mp4"),
    ("vtt", "text/vtt; charset=utf-8"),
    ("ics", "text/calendar; charset=utf-8"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
];

/// Whether a file name carries a content hash, as Django's
/// ManifestStaticFilesStorage (`app.1a2b3c4d5e6f.css`) and bundlers
/// (`main.3f9a8b7c.js`, `chunk-3f9a8b7c.js`) write them: 8 to 64 hex
/// digits (at least one a letter and one a digit) just before the extension,
/// after a '.' or '-'.
pub fn is_hashed(name: &[u8]) -> bool {
    let Some(dot) = name.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let stem = &name[..dot];
    let Some(sep) = stem.iter().rposition(|&b| b == b'.' || b == b'-') else {
        return false;
    };
    let hash = &stem[sep + 1..];
    (8..=64).contains(&hash.len())
        && hash.iter().all(u8::is_ascii_hexdigit)
        && hash.iter().any(u8::is_ascii_digit)
        && hash.iter().any(u8::is_ascii_alphabetic)
        && sep > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type(b"app.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type(b"a.b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"logo.svg"), "image/svg+xml");
        assert_eq!(content_type(b"font.woff2"), "font/woff2");
        assert_eq!(content_type(b"README"), "application/octet-stream");
        assert_eq!(content_type(b"x.verylongext"), "application/octet-stream");
        assert_eq!(content_type(b"x."), "application/octet-stream");
    }

    #[test]
    fn hashed_names() {
        assert!(is_hashed(b"app.1a2b3c4d5e6f.css"));
        assert!(is_hashed(b"main.3f9a8b7c.js"));
        assert!(is_hashed(b"chunk-3f9a8b7c.js"));
        assert!(!is_hashed(b"app.css"));
        assert!(!is_hashed(b"jquery-3.7.1.min.js"));
        assert!(!is_hashed(b"report-20261206.pdf"));
        assert!(!is_hashed(b"deadbeefcafe.css"));
        assert!(!is_hashed(b"x.abcdefab.js"));
    }
}
