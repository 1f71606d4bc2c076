//! The uwsgi protocol as nginx's `uwsgi_pass` speaks it: a 4-byte header
//! (modifier1, data size as u16 little-endian, modifier2), then CGI variables
//! as length-prefixed key/value pairs, then the request body. The packet is
//! turned into an HTTP/1.0 head so it meets the same checks and limits as a
//! request over HTTP; the variables themselves are kept for the environ.

use std::net::{IpAddr, SocketAddr};

use crate::error::ProtoError;

const HEADER: usize = 4;

/// The start of a uwsgi connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Incomplete,
    /// The variables, in order, and the packet's length in bytes.
    Done {
        len: usize,
        vars: Vec<(String, Vec<u8>)>,
    },
}

fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

/// Read the packet at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Packet, ProtoError> {
    let Some(head) = buf.get(..HEADER) else {
        return Ok(Packet::Incomplete);
    };
    // modifier1 0 is a WSGI request; others are other languages and
    // uWSGI's own commands.
    if head[0] != 0 {
        return Err(bad("uwsgi packet for another modifier than 0 (WSGI)"));
    }
    let size = usize::from(u16::from_le_bytes([head[1], head[2]]));
    let Some(mut data) = buf.get(HEADER..HEADER + size) else {
        return Ok(Packet::Incomplete);
    };
    let mut vars = Vec::new();
    while !data.is_empty() {
        let (key, rest) = take_string(data)?;
        let (value, rest) = take_string(rest)?;
        let key = std::str::from_utf8(key)
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| bad("uwsgi variable name is empty or not text"))?;
        vars.push((key.to_owned(), value.to_vec()));
        data = rest;
    }
    Ok(Packet::Done {
        len: HEADER + size,
        vars,
    })
}

/// One u16-LE-length-prefixed string.
fn take_string(data: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let truncated = || bad("uwsgi variable runs past the packet");
    let len = data.get(..2).ok_or_else(truncated)?;
    let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
    let s = data.get(2..2 + len).ok_or_else(truncated)?;
    Ok((s, &data[2 + len..]))
}

/// A packet's variables, made into what the HTTP side reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// An HTTP/1.0 request head (no keep-alive: one request per connection).
    pub head: Vec<u8>,
    /// REMOTE_ADDR and REMOTE_PORT, when they name an address.
    pub client: Option<SocketAddr>,
    /// HTTPS=on|1, UWSGI_SCHEME=https or REQUEST_SCHEME=https.
    pub https: bool,
    /// The CGI variables to set in the environ as they came (upper-case
    /// names other than HTTP_* and CONTENT_*, which come from the head).
    pub environ: Vec<(String, Vec<u8>)>,
}

/// Client headers that describe the hop to nginx, not this request as it
/// reaches us: nginx has already read the body (so Transfer-Encoding and
/// Expect no longer apply), and the connection is ours to manage.
const HOP_HEADERS: [&str; 6] = [
    "HTTP_TRANSFER_ENCODING",
    "HTTP_CONTENT_LENGTH",
    "HTTP_CONNECTION",
    "HTTP_KEEP_ALIVE",
    "HTTP_EXPECT",
    "HTTP_UPGRADE",
];

pub fn translate(vars: &[(String, Vec<u8>)]) -> Result<Translated, ProtoError> {
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    };
    let method = get("REQUEST_METHOD").unwrap_or(b"GET");
    if method.is_empty() || !method.iter().all(|&b| crate::syntax::is_tchar(b)) {
        return Err(bad("uwsgi REQUEST_METHOD is not a method"));
    }
    let target = match get("REQUEST_URI").filter(|u| !u.is_empty()) {
        Some(uri) => uri.to_vec(),
        None => {
            let mut t = percent_encode_path(get("PATH_INFO").unwrap_or(b"/"));
            if let Some(q) = get("QUERY_STRING").filter(|q| !q.is_empty()) {
                t.push(b'?');
                t.extend_from_slice(q);
            }
            t
        }
    };
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(bad("uwsgi REQUEST_URI holds spaces or control characters"));
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method);
    head.push(b' ');
    head.extend_from_slice(&target);
    head.extend_from_slice(b" HTTP/1.0\r\n");
    let mut environ = Vec::new();
    for (key, value) in vars {
        // A CR or LF in a value would start a line of its own in the head.
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("uwsgi variable value holds CR, LF or NUL"));
        }
        if let Some(name) = key.strip_prefix("HTTP_") {
            if HOP_HEADERS.contains(&key.as_str()) {
                continue;
            }
            let field = name.to_ascii_lowercase().replace('_', "-");
            // The name becomes a line's start too: CR, LF or a colon in it
            // would end the head or the field early (found by fuzzing).
            if field.is_empty() || !field.bytes().all(crate::syntax::is_tchar) {
                return Err(bad("uwsgi HTTP_ variable is not a header name"));
            }
            push_field(&mut head, &field, value);
        } else if key == "CONTENT_LENGTH" {
            if !value.is_empty() {
                push_field(&mut head, "content-length", value);
            }
        } else if key == "CONTENT_TYPE" {
            if !value.is_empty() {
                push_field(&mut head, "content-type", value);
            }
        } else if is_cgi_name(key) {
            environ.push((key.clone(), value.clone()));
        }
    }
    head.extend_from_slice(b"\r\n");
    let text = |name| get(name).and_then(|v| std::str::from_utf8(v).ok());
    let client = text("REMOTE_ADDR")
        .and_then(|a| a.parse::<IpAddr>().ok())
        .map(|ip| {
            SocketAddr::new(
                ip,
                text("REMOTE_PORT")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
            )
        });
    let https = matches!(text("HTTPS"), Some(v) if v.eq_ignore_ascii_case("on") || v == "1")
        || ["UWSGI_SCHEME", "REQUEST_SCHEME"]
            .iter()
            .any(|n| text(n).is_some_and(|v| v.eq_ignore_ascii_case("https")));
    Ok(Translated {
        head,
        client,
        https,
        environ,
    })
}

fn push_field(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// `[A-Z0-9_]+`: never a `wsgi.*` key, so a proxy cannot replace the
/// server's own objects.
fn is_cgi_name(key: &str) -> bool {
    key.bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A decoded PATH_INFO as a request-target path (RFC 3986 section 3.3).
fn percent_encode_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    if out.first() != Some(&b'/') {
        out.insert(0, b'/');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn packet(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (k, v) in vars {
            for s in [k.as_bytes(), v.as_bytes()] {
                data.extend_from_slice(&u16::try_from(s.len()).unwrap().to_le_bytes());
                data.extend_from_slice(s);
            }
        }
        let mut out = vec![0];
        out.extend_from_slice(&u16::try_from(data.len()).unwrap().to_le_bytes());
        out.push(0);
        out.extend_from_slice(&data);
        out
    }

    fn vars_of(p: &[u8]) -> Vec<(String, Vec<u8>)> {
        match parse(p).unwrap() {
            Packet::Done { len, vars } => {
                assert_eq!(len, p.len());
                vars
            }
            Packet::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn packets_parse_and_wait_for_the_rest() {
        let p = packet(&[("REQUEST_METHOD", "GET"), ("PATH_INFO", "/")]);
        assert_eq!(vars_of(&p).len(), 2);
        for cut in 0..p.len() {
            assert_eq!(parse(&p[..cut]), Ok(Packet::Incomplete), "cut at {cut}");
        }
        // The body after the packet is not part of it.
        let mut with_body = p.clone();
        with_body.extend_from_slice(b"body");
        assert!(matches!(parse(&with_body), Ok(Packet::Done { len, .. }) if len == p.len()));
    }

    #[test]
    fn malformed_packets_are_refused() {
        let mut p = packet(&[("A", "b")]);
        p[0] = 5;
        assert!(parse(&p).is_err());
        // A value length running past the data size.
        let p = [0, 4, 0, 0, 1, 0, b'A', 9];
        assert!(parse(&p).is_err());
        assert!(parse(&packet(&[("", "x")])).is_err());
    }

    #[test]
    fn nginx_params_become_a_head_and_environ() {
        let vars = vars_of(&packet(&[
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "5"),
            ("REQUEST_URI", "/x%20y?a=1"),
            ("PATH_INFO", "/x y"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTPS", "on"),
            ("REMOTE_ADDR", "203.0.113.5"),
            ("REMOTE_PORT", "41000"),
            ("HTTP_HOST", "example.com"),
            ("HTTP_X_CUSTOM", "v"),
            ("HTTP_TRANSFER_ENCODING", "chunked"),
            ("HTTP_CONNECTION", "keep-alive"),
            ("wsgi.input", "nope"),
        ]));
        let t = translate(&vars).unwrap();
        assert_eq!(
            String::from_utf8(t.head).unwrap(),
            "POST /x%20y?a=1 HTTP/1.0\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\
             host: example.com\r\nx-custom: v\r\n\r\n"
        );
        assert_eq!(t.client, Some("203.0.113.5:41000".parse().unwrap()));
        assert!(t.https);
        let names: Vec<&str> = t.environ.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "REQUEST_URI",
                "PATH_INFO",
                "SERVER_PROTOCOL",
                "HTTPS",
                "REMOTE_ADDR",
                "REMOTE_PORT"
            ]
        );
    }

    #[test]
    fn a_target_is_made_from_path_info_without_request_uri() {
        let vars = vars_of(&packet(&[
            ("PATH_INFO", "/caf\u{e9} x"),
            ("QUERY_STRING", "q=1"),
        ]));
        let t = translate(&vars).unwrap();
        assert!(t.head.starts_with(b"GET /caf%C3%A9%20x?q=1 HTTP/1.0\r\n"));
        assert!(!t.https);
        assert_eq!(t.client, None);
    }

    #[test]
    fn injection_through_values_and_names_is_refused() {
        for vars in [
            &[("HTTP_X", "a\r\nX-Injected: 1")][..],
            &[("HTTP_\r\n\r\nGET", "x")],
            &[("HTTP_X: 1\r\nY", "x")],
            &[("HTTP_", "x")],
            &[("REQUEST_URI", "/a b")],
            &[("REQUEST_METHOD", "GET /")],
            &[("REQUEST_URI", "/a\0")],
        ] {
            let vars = vars_of(&packet(vars));
            assert!(translate(&vars).is_err(), "{vars:?}");
        }
    }
}
