//! The request line (RFC 9112 section 3): method, request-target forms,
//! HTTP version, and the authority syntax shared with the Host header. Only
//! judges one line; limits on the buffer and header rules live in `head`.

use memchr::memchr;

use crate::error::ProtoError;
use crate::head::Version;
use crate::syntax::{
    is_plain_path_byte, is_plain_query_byte, is_reg_name_byte, is_tchar, is_token,
};

/// A request line that passed every check; every part is a piece of the
/// line, and printable ASCII.
#[derive(Debug)]
pub(crate) struct RequestLine<'a> {
    pub(crate) method: &'a [u8],
    pub(crate) target: &'a [u8],
    /// Empty for an absolute-form target without a path, which means "/".
    pub(crate) path: &'a [u8],
    pub(crate) query: &'a [u8],
    pub(crate) version: Version,
    /// The authority of an absolute-form target (RFC 9112 section 3.2.2).
    pub(crate) host: Option<&'a [u8]>,
}

const fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

/// Parse `line` (the request line without its CRLF).
///
/// The order of checks is deliberate: length first (414 is what gunicorn
/// answers for an over-long line; `parse_head` only lets a bad byte within
/// the limit win, so that every split of the stream gets the same status),
/// then bytes, then the
/// version (so the HTTP/2 preface `PRI * HTTP/2.0` is a 505, not a 400 for
/// its asterisk-form), then method and target.
pub(crate) fn parse(line: &[u8], max_len: usize) -> Result<RequestLine<'_>, ProtoError> {
    if line.len() > max_len {
        return Err(ProtoError::UriTooLong);
    }
    // Method, target and version are all printable ASCII; a control byte
    // (bare CR, NUL, HTAB) or obs-text in the line is never valid here.
    if !line.iter().all(|&b| (0x20..=0x7e).contains(&b)) {
        return Err(bad("control or non-ASCII byte in request line"));
    }
    // RFC 9112 section 3: exactly one SP between the three parts. We do not
    // take the lenient "any whitespace" parse the RFC permits: a proxy and
    // this server must split the line the same way.
    let sp1 = memchr(b' ', line).ok_or(bad("request line has no request-target"))?;
    let (method, rest) = (&line[..sp1], &line[sp1 + 1..]);
    // "GET /" without a version is HTTP/0.9, which we do not speak.
    let sp2 = memchr(b' ', rest).ok_or(bad("request line has no HTTP version"))?;
    let (target, version) = (&rest[..sp2], &rest[sp2 + 1..]);
    if memchr(b' ', version).is_some() {
        return Err(bad("extra space in request line"));
    }
    let version = parse_version(version)?;
    if !is_token(method) {
        return Err(bad("method is not a token"));
    }
    if target.is_empty() {
        return Err(bad("empty request-target"));
    }
    let form = parse_target(method, target)?;
    Ok(RequestLine {
        method,
        target,
        path: form.path,
        query: form.query,
        version,
        host: form.host,
    })
}

/// The request line at the start of `rest`, and how many bytes it takes with
/// its CRLF, when it has the everyday shape: a token method other than
/// CONNECT, an origin-form target of printable ASCII without '#', and
/// exactly `HTTP/1.1` or `HTTP/1.0`, within `max_len`. Each byte is looked
/// at once. None for anything else (unfinished, over the limit, another
/// form, or invalid): `parse_head` then takes the line and `parse` judges
/// it, which is what decides every error. So this may only accept lines that
/// `parse` accepts, with the same parts; the crate's tests and the fuzz
/// targets check both paths with every split of the same bytes.
pub(crate) fn parse_common(rest: &[u8], max_len: usize) -> Option<(RequestLine<'_>, usize)> {
    // Only the bytes a line within the limit can span are looked at.
    let rest = &rest[..rest.len().min(max_len.saturating_add(2))];
    let sp1 = rest.iter().position(|&b| !is_tchar(b))?;
    let (method, after) = rest.split_at(sp1);
    if method.is_empty() || method == b"CONNECT" {
        return None;
    }
    let target_and_more = match after {
        [b' ', more @ ..] if more.first() == Some(&b'/') => more,
        _ => return None,
    };
    let path_len = target_and_more
        .iter()
        .position(|&b| !is_plain_path_byte(b))?;
    let (path, after_path) = target_and_more.split_at(path_len);
    let (query, after_target) = match after_path.split_first() {
        Some((b'?', tail)) => {
            let query_len = tail.iter().position(|&b| !is_plain_query_byte(b))?;
            tail.split_at(query_len)
        }
        _ => (&after_path[..0], after_path),
    };
    let version = match after_target.get(..11)? {
        b" HTTP/1.1\r\n" => Version::Http11,
        b" HTTP/1.0\r\n" => Version::Http10,
        _ => return None,
    };
    let target = &target_and_more[..target_and_more.len() - after_target.len()];
    let len = sp1 + 1 + target.len() + 9;
    if len > max_len {
        return None;
    }
    let line = RequestLine {
        method,
        target,
        path,
        query,
        version,
        host: None,
    };
    Some((line, len + 2))
}

/// `HTTP-version = HTTP-name "/" DIGIT "." DIGIT` (RFC 9112 section 2.3);
/// HTTP-name is case-sensitive.
///
/// A higher 1.x minor (HTTP/1.2 .. HTTP/1.9) is served as HTTP/1.1: RFC 9110
/// section 2.5 says a recipient SHOULD process it as the highest minor
/// version it implements, and 505 (section 15.6.6) is about the major
/// version. Any other major version is a 505.
fn parse_version(v: &[u8]) -> Result<Version, ProtoError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' {
                Ok(Version::Http11)
            } else {
                Err(ProtoError::VersionNotSupported)
            }
        }
        _ => Err(bad("malformed HTTP version")),
    }
}

struct TargetParts<'a> {
    path: &'a [u8],
    query: &'a [u8],
    host: Option<&'a [u8]>,
}

/// The four request-target forms of RFC 9112 section 3.2.
fn parse_target<'a>(method: &[u8], target: &'a [u8]) -> Result<TargetParts<'a>, ProtoError> {
    // A fragment is never sent (RFC 9110 section 4.2.4); one here means the
    // client or an intermediary is confused about where the URI ends.
    if memchr(b'#', target).is_some() {
        return Err(bad("fragment in request-target"));
    }
    // authority-form exists only for CONNECT (section 3.2.3), and a WSGI
    // server has no tunnel to offer.
    if method == b"CONNECT" {
        return Err(ProtoError::NotImplemented("CONNECT"));
    }
    if target == b"*" {
        // asterisk-form is only for a server-wide OPTIONS (section 3.2.4).
        if method != b"OPTIONS" {
            return Err(bad("asterisk-form request-target without OPTIONS"));
        }
        return Ok(TargetParts {
            path: target,
            query: &[],
            host: None,
        });
    }
    if target.first() == Some(&b'/') {
        let (path, query) = split_query(target);
        return Ok(TargetParts {
            path,
            query,
            host: None,
        });
    }
    parse_absolute(target)
}

/// absolute-form (RFC 9112 section 3.2.2): only http and https make sense for
/// an origin server; the authority replaces the Host header.
fn parse_absolute(target: &[u8]) -> Result<TargetParts<'_>, ProtoError> {
    let after_scheme = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(bad(
            "request-target is not origin-form or an http(s) absolute-form",
        ))?;
    let auth_end = after_scheme
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after_scheme.len());
    let (authority, rest) = after_scheme.split_at(auth_end);
    // userinfo is deprecated for http(s) (RFC 9110 section 4.2.4) and a classic
    // way to make two parsers disagree on the host.
    if memchr(b'@', authority).is_some() {
        return Err(bad("userinfo in request-target"));
    }
    // An http(s) URI with an empty host is invalid (RFC 9110 section 4.2.1).
    if !valid_authority(authority) || matches!(authority.first(), None | Some(b':')) {
        return Err(bad("invalid authority in request-target"));
    }
    let (path, query) = split_query(rest);
    Ok(TargetParts {
        path,
        query,
        host: Some(without_empty_port(authority)),
    })
}

/// A valid authority without an empty port: "host:" is "host" (RFC 9110
/// section 4.2.3: an empty port means the scheme's default; RFC 3986
/// section 3.2.3: normalizers omit it). Otherwise the WSGI side would see
/// an empty SERVER_PORT, which PEP 3333 forbids. Only for an authority that
/// passed `valid_authority`, where a final ':' can only start the port.
pub(crate) fn without_empty_port(authority: &[u8]) -> &[u8] {
    authority.strip_suffix(b":").unwrap_or(authority)
}

/// Split at the first '?' (RFC 3986 section 3.4); the '?' belongs to neither.
fn split_query(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr(b'?', s) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2 / RFC 3986 section 3.2),
/// as in a Host header or an absolute-form target. An empty value is
/// accepted here (a Host header may be empty); a port with no host is not.
pub(crate) fn valid_authority(a: &[u8]) -> bool {
    if a.is_empty() {
        return true;
    }
    let (host_ok, rest) = if a.first() == Some(&b'[') {
        // IP-literal: "[" ( IPv6address / IPvFuture ) "]". We check the
        // character set, not the full IPv6 grammar: what matters is that the
        // brackets delimit it and nothing else hides inside.
        match memchr(b']', a) {
            Some(close) => {
                let literal = &a[1..close];
                let ok = !literal.is_empty() && literal.iter().all(|&b| is_ip_literal_byte(b));
                (ok, &a[close + 1..])
            }
            None => (false, &a[..0]),
        }
    } else {
        let end = reg_name_len(a);
        let (host, rest) = a.split_at(end);
        // Whatever stopped the reg-name must be the port's ':' (below).
        (!host.is_empty(), rest)
    };
    let port_ok = match rest.split_first() {
        None => true,
        // port = *DIGIT (RFC 3986 section 3.2.3), so "host:" is allowed.
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// How many bytes of `a` form a reg-name, `*( unreserved / pct-encoded /
/// sub-delims )` minus ',' (covers IPv4 too), in one pass with one table
/// lookup a byte. ',' is a sub-delim, but no DNS name has one and it is
/// exactly what two Host lines joined into a list (RFC 9110 section 5.3) by
/// an intermediary look like: it ends the name, which then fails as the
/// start of a port. So does a '%' without two hex digits.
fn reg_name_len(a: &[u8]) -> usize {
    let mut i = 0;
    loop {
        let run = a.get(i..).unwrap_or_default();
        i += run
            .iter()
            .position(|&b| !is_reg_name_byte(b))
            .unwrap_or(run.len());
        match a.get(i..i + 3) {
            Some([b'%', h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
            _ => return i,
        }
    }
}

/// The characters of an IP-literal (RFC 3986 section 3.2.2) we accept.
fn is_ip_literal_byte(b: u8) -> bool {
    is_reg_name_byte(b) || b == b',' || b == b':'
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_common_accepts_only_what_parse_accepts_alike() {
        let lines: [&[u8]; 14] = [
            b"GET / HTTP/1.1\r\n",
            b"GET /a/b?x=1&y=?2 HTTP/1.0\r\n",
            b"PURGE /? HTTP/1.1\r\n",
            b"GET /a#frag HTTP/1.1\r\n",
            b"GET /a?b#frag HTTP/1.1\r\n",
            b"CONNECT /x HTTP/1.1\r\n",
            b"GET http://a/ HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"GET / HTTP/1.2\r\n",
            b"GET /  HTTP/1.1\r\n",
            b"GET / HTTP/1.1 \r\n",
            b"GET\t/ HTTP/1.1\r\n",
            b"G@T / HTTP/1.1\r\n",
            b"GET /\x80 HTTP/1.1\r\n",
        ];
        for bytes in lines {
            for max in [0, bytes.len() - 3, bytes.len() - 2, 8190] {
                let Some((fast, taken)) = parse_common(bytes, max) else {
                    continue;
                };
                let line = &bytes[..bytes.len() - 2];
                let full = parse(line, max).unwrap();
                assert_eq!(taken, bytes.len());
                assert_eq!(
                    (fast.method, fast.target, fast.path, fast.query),
                    (full.method, full.target, full.path, full.query),
                );
                assert_eq!((fast.version, fast.host), (full.version, full.host));
            }
        }
        let ok = |l: &[u8]| parse_common(l, 8190).is_some();
        assert!(ok(b"GET / HTTP/1.1\r\n") && ok(b"GET /a/b?x=1&y=?2 HTTP/1.0\r\n"));
        for other in [&lines[3..9], &lines[9..]].concat() {
            assert!(!ok(other), "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn authority_accepts_names_ports_and_ip_literals() {
        for ok in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"example.com:",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8000",
            b"my_host.local",
            b"xn--bcher-kva.example",
            b"a%41b",
        ] {
            assert!(valid_authority(ok), "{:?}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn authority_refuses_whitespace_slash_userinfo_and_controls() {
        for bad in [
            &b"exa mple.com"[..],
            b"example.com/",
            b"user@example.com",
            b"example.com\x00",
            b"example.com:80x",
            b":80",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"a%4",
            b"a%zz",
            b"caf\xc3\xa9.fr",
            b"a:1:2",
            b"a,b",
        ] {
            assert!(!valid_authority(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
