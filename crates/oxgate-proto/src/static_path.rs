//! Which file under a static mount a request path names (--static-map),
//! decided on the path alone: percent-decoded once, split into segments,
//! and refused if any segment could step outside the mount or reveal a
//! hidden file. The I/O side still checks where symlinks lead.

use crate::environ::percent_decode;

/// What a request path is to one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The path is not under the mount's prefix.
    Elsewhere,
    /// Under the prefix, but no file may be served for it (traversal,
    /// hidden files, NUL, the mount's own directory): a 404.
    Refused,
    /// The file's path relative to the mount's root, as segments of raw
    /// bytes (Linux file names are bytes).
    File(Vec<Vec<u8>>),
}

/// `prefix`: the mount's URL prefix without a trailing slash ("" for "/").
/// `path`: the request path as sent (still percent-encoded, no query).
pub fn lookup(prefix: &str, path: &str) -> Lookup {
    let Some(rest) = path.strip_prefix(prefix) else {
        return Lookup::Elsewhere;
    };
    // "/static" must not match "/staticfoo".
    let Some(rest) = rest.strip_prefix('/') else {
        return if rest.is_empty() {
            Lookup::Refused
        } else {
            Lookup::Elsewhere
        };
    };
    // Decoded once: "%2e%2e" is "..", "%2f" a separator, and "%252e"
    // stays "%2e", a plain name.
    let decoded = percent_decode(rest);
    let mut segments = Vec::new();
    for segment in decoded.split(|&b| b == b'/') {
        if segment.is_empty() {
            continue;
        }
        let hidden = segment.first() == Some(&b'.') && segment != b".well-known";
        if hidden || segment.contains(&0) || segment.contains(&b'\\') {
            return Lookup::Refused;
        }
        segments.push(segment.to_vec());
    }
    if segments.is_empty() {
        return Lookup::Refused;
    }
    Lookup::File(segments)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(segments: &[&str]) -> Lookup {
        Lookup::File(segments.iter().map(|s| s.as_bytes().to_vec()).collect())
    }

    #[test]
    fn paths_under_the_prefix_name_files() {
        assert_eq!(
            lookup("/static", "/static/css/app.css"),
            file(&["css", "app.css"])
        );
        assert_eq!(lookup("/static", "/static//a//b"), file(&["a", "b"]));
        assert_eq!(
            lookup("/static", "/static/caf%C3%A9.txt"),
            file(&["caf\u{e9}.txt"])
        );
        assert_eq!(lookup("", "/robots.txt"), file(&["robots.txt"]));
        assert_eq!(
            lookup("", "/.well-known/security.txt"),
            file(&[".well-known", "security.txt"])
        );
        // Decoded once only.
        assert_eq!(lookup("/s", "/s/%252e%252e"), file(&["%2e%2e"]));
    }

    #[test]
    fn other_paths_are_elsewhere() {
        assert_eq!(lookup("/static", "/staticfoo/a"), Lookup::Elsewhere);
        assert_eq!(lookup("/static", "/other/a"), Lookup::Elsewhere);
        assert_eq!(lookup("/static", "/Static/a"), Lookup::Elsewhere);
    }

    #[test]
    fn traversal_hidden_files_and_nul_are_refused() {
        for path in [
            "/static/../etc/passwd",
            "/static/a/../../x",
            "/static/%2e%2e/x",
            "/static/%2E%2E%2fx",
            "/static/..%2f..%2fetc",
            "/static/a/%2e%2e",
            "/static/.",
            "/static/.env",
            "/static/.git/config",
            "/static/a%00b",
            "/static/a%5c..%5cb",
            "/static",
            "/static/",
            "/static//",
        ] {
            assert_eq!(lookup("/static", path), Lookup::Refused, "{path}");
        }
    }
}
