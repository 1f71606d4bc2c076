//! What a trusted proxy says about the client: RFC 7239 `Forwarded`, or the
//! de-facto X-Forwarded-For/-Proto/-Host/-Port (and gunicorn's secure-scheme
//! headers X-Forwarded-Protocol: ssl, X-Forwarded-Ssl: on). Only called for
//! a connection whose peer is trusted; values that do not parse are ignored,
//! never passed on.

use std::net::{IpAddr, SocketAddr};

use crate::head::Header;
use crate::request_line::{valid_authority, without_empty_port};
use crate::syntax::parse_decimal;
use crate::trust::TrustList;

/// The scheme the client used to reach the first proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL of this scheme means without one.
    pub fn default_port(self) -> &'static str {
        match self {
            Scheme::Http => "80",
            Scheme::Https => "443",
        }
    }

    fn parse(value: &str) -> Option<Scheme> {
        if value.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if value.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }
}

/// The proxies' account of the request; `None` where they said nothing
/// usable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address (and port, when a `Forwarded: for=` gave one).
    pub client: Option<(IpAddr, Option<u16>)>,
    pub scheme: Option<Scheme>,
    /// The Host the client asked for: `uri-host [":" port]`, checked.
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl Forwarded {
    pub fn is_empty(&self) -> bool {
        *self == Forwarded::default()
    }
}

/// The fields that matter here, each repeated line joined as a list.
#[derive(Default)]
struct Fields {
    forwarded: Vec<String>,
    xff: Vec<String>,
    proto: Vec<String>,
    host: Vec<String>,
    port: Vec<String>,
    ssl_on: bool,
}

/// The fields `resolve` reads.
#[derive(Clone, Copy)]
enum Field {
    Forwarded,
    For,
    Host,
    Port,
    Proto,
    Ssl,
    Protocol,
}

/// Which of the fields `resolve` reads `name` is (any case).
fn field(name: &str) -> Option<Field> {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        9 if is("forwarded") => Some(Field::Forwarded),
        15 if is("x-forwarded-for") => Some(Field::For),
        15 if is("x-forwarded-ssl") => Some(Field::Ssl),
        16 if is("x-forwarded-host") => Some(Field::Host),
        16 if is("x-forwarded-port") => Some(Field::Port),
        17 if is("x-forwarded-proto") => Some(Field::Proto),
        20 if is("x-forwarded-protocol") => Some(Field::Protocol),
        _ => None,
    }
}

/// Whether `resolve` reads a field named `name`: a request without any
/// such field resolves to nothing, so a caller that sees none while it
/// walks the headers anyway may skip `resolve`. None of these names holds
/// an underscore, so none is a header the environ drops.
pub fn is_forwarding_field(name: &str) -> bool {
    field(name).is_some()
}

/// What the headers of a request from a trusted peer say. `trust` also
/// decides which hops of a chain are proxies: the client is the nearest
/// address that is not trusted (read from the right, as each proxy appends
/// the address it received from), so a client cannot pose as another by
/// sending its own X-Forwarded-For.
pub fn resolve<'a>(headers: impl Iterator<Item = Header<'a>>, trust: &TrustList) -> Forwarded {
    let mut f = Fields::default();
    let mut any = false;
    for h in headers {
        let Some(field) = field(h.name) else {
            continue;
        };
        any = true;
        let list = match field {
            Field::Forwarded => &mut f.forwarded,
            Field::For => &mut f.xff,
            Field::Host => &mut f.host,
            Field::Port => &mut f.port,
            Field::Proto => &mut f.proto,
            Field::Ssl => {
                f.ssl_on |= h.value.trim_ascii().eq_ignore_ascii_case(b"on");
                continue;
            }
            Field::Protocol => {
                f.ssl_on |= h.value.trim_ascii().eq_ignore_ascii_case(b"ssl");
                continue;
            }
        };
        // Non-ASCII values are ignored: no address, scheme or host has any.
        if let Ok(value) = std::str::from_utf8(h.value) {
            list.extend(
                split_list(value)
                    .into_iter()
                    .map(|item| item.trim().to_owned()),
            );
        }
    }
    if !any {
        return Forwarded::default();
    }
    if !f.forwarded.is_empty() {
        return from_rfc7239(&f.forwarded, trust);
    }
    from_x_forwarded(&f, trust)
}

/// RFC 7239: each element is one hop, `for` the address that proxy
/// received from; `proto` and `host` describe the request it received, so
/// they are read from the element that names the client.
fn from_rfc7239(elements: &[String], trust: &TrustList) -> Forwarded {
    let hops: Vec<Vec<(String, String)>> = elements.iter().map(|e| pairs(e)).collect();
    let param = |hop: &[(String, String)], name: &str| {
        hop.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let fors: Vec<Option<String>> = hops.iter().map(|h| param(h, "for")).collect();
    let Some(at) = client_index(&fors, trust) else {
        return Forwarded::default();
    };
    let hop = &hops[at];
    let host = param(hop, "host").and_then(|h| checked_host(&h));
    Forwarded {
        client: fors[at].as_deref().and_then(parse_node),
        scheme: param(hop, "proto").and_then(|p| Scheme::parse(&p)),
        port: host.as_deref().and_then(port_of),
        host,
    }
}

/// X-Forwarded-*: one list per field. Proto, Host and Port are taken at the
/// client's position when a proxy appended to them as it did to
/// X-Forwarded-For (the lists are as long), else their last value, which
/// the nearest proxy set.
fn from_x_forwarded(f: &Fields, trust: &TrustList) -> Forwarded {
    let fors: Vec<Option<String>> = f.xff.iter().map(|a| Some(a.clone())).collect();
    let at = client_index(&fors, trust);
    let pick = |list: &[String]| -> Option<String> {
        match at {
            Some(i) if list.len() == fors.len() => list.get(i).cloned(),
            _ => list.last().cloned(),
        }
    };
    let scheme = pick(&f.proto)
        .and_then(|p| Scheme::parse(&p))
        .or(f.ssl_on.then_some(Scheme::Https));
    let host = pick(&f.host).and_then(|h| checked_host(&h));
    let port = pick(&f.port)
        .and_then(|p| parse_port(&p))
        .or_else(|| host.as_deref().and_then(port_of));
    Forwarded {
        client: at.and_then(|i| fors[i].as_deref()).and_then(parse_node),
        scheme,
        host,
        port,
    }
}

/// Index of the client in a chain of hops: from the right, the first hop
/// that is not a trusted address; the leftmost if every hop is trusted.
/// `None` for an empty chain.
fn client_index(fors: &[Option<String>], trust: &TrustList) -> Option<usize> {
    if fors.is_empty() {
        return None;
    }
    for (i, node) in fors.iter().enumerate().rev() {
        let trusted = node
            .as_deref()
            .and_then(parse_node)
            .is_some_and(|(ip, _)| trust.contains(ip));
        if !trusted {
            return Some(i);
        }
    }
    Some(0)
}

/// A node (RFC 7239 section 6): `1.2.3.4`, `1.2.3.4:80`, `[v6]`, `[v6]:80`,
/// or a bare IPv6 address as X-Forwarded-For writes it. `unknown` and
/// obfuscated identifiers (`_hidden`) are not addresses.
fn parse_node(node: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    // "[v6]" without a port, or an obfuscated port ("[v6]:_abc").
    let inner = node.strip_prefix('[')?;
    let (addr, _) = inner.split_once(']')?;
    addr.parse::<IpAddr>().ok().map(|ip| (ip, None))
}

fn parse_port(p: &str) -> Option<u16> {
    parse_decimal(p.as_bytes())
        .and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
}

/// A host[:port] that would pass as a Host header, with an empty port
/// dropped.
fn checked_host(h: &str) -> Option<String> {
    if h.is_empty() || !valid_authority(h.as_bytes()) {
        return None;
    }
    let h = without_empty_port(h.as_bytes());
    std::str::from_utf8(h).ok().map(str::to_owned)
}

/// The port of a checked `host[:port]`.
fn port_of(host: &str) -> Option<u16> {
    let after = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.1,
        None => host.find(':').map_or("", |i| &host[i..]),
    };
    after.strip_prefix(':').and_then(parse_port)
}

/// Split a list at commas outside quoted strings (RFC 9110 section 5.6.1).
fn split_list(value: &str) -> Vec<&str> {
    split_outside_quotes(value, b',')
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect()
}

fn split_outside_quotes(value: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&value[start..i]);
            start = i + 1;
        }
    }
    parts.push(&value[start..]);
    parts
}

/// `for=...;proto=...` into (name, unquoted value) pairs.
fn pairs(element: &str) -> Vec<(String, String)> {
    split_outside_quotes(element, b';')
        .into_iter()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_owned(), unquote(v.trim())))
        })
        .collect()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn run(headers: &[(&str, &str)], trust: &str) -> Forwarded {
        let trust = TrustList::parse(trust).unwrap();
        resolve(
            headers.iter().map(|(n, v)| Header {
                name: n,
                value: v.as_bytes(),
            }),
            &trust,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn x_forwarded_for_names_the_nearest_untrusted_hop() {
        let f = run(
            &[("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.0.0.2")],
            "10.0.0.0/8",
        );
        assert_eq!(f.client, Some((ip("1.2.3.4"), None)));
        // Every hop trusted: the leftmost is the client.
        let f = run(&[("X-Forwarded-For", "10.1.1.1, 10.0.0.2")], "10.0.0.0/8");
        assert_eq!(f.client, Some((ip("10.1.1.1"), None)));
        // Repeated lines form one list.
        let f = run(
            &[
                ("X-Forwarded-For", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
            "127.0.0.1",
        );
        assert_eq!(f.client, Some((ip("2.2.2.2"), None)));
        let f = run(&[("X-Forwarded-For", "2001:db8::7")], "");
        assert_eq!(f.client, Some((ip("2001:db8::7"), None)));
    }

    #[test]
    fn garbage_in_the_chain_is_not_an_address() {
        let f = run(&[("X-Forwarded-For", "<script>, 10.0.0.2")], "10.0.0.0/8");
        assert_eq!(f.client, None);
        let f = run(&[("X-Forwarded-For", "unknown")], "");
        assert_eq!(f.client, None);
    }

    #[test]
    fn proto_host_and_port_come_through() {
        let f = run(
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "example.com"),
                ("X-Forwarded-Port", "8443"),
            ],
            "",
        );
        assert_eq!(f.scheme, Some(Scheme::Https));
        assert_eq!(f.host.as_deref(), Some("example.com"));
        assert_eq!(f.port, Some(8443));
        // The port inside the host is used when no X-Forwarded-Port says one.
        let f = run(&[("X-Forwarded-Host", "[2001:db8::1]:9000")], "");
        assert_eq!(f.port, Some(9000));
        let f = run(&[("X-Forwarded-Host", "example.com:")], "");
        assert_eq!(f.host.as_deref(), Some("example.com"));
        assert_eq!(f.port, None);
    }

    #[test]
    fn secure_scheme_headers_of_gunicorn_mean_https() {
        let f = run(&[("X-Forwarded-Ssl", "on")], "");
        assert_eq!(f.scheme, Some(Scheme::Https));
        let f = run(&[("X-Forwarded-Protocol", "ssl")], "");
        assert_eq!(f.scheme, Some(Scheme::Https));
        let f = run(&[("X-Forwarded-Ssl", "off")], "");
        assert_eq!(f.scheme, None);
    }

    #[test]
    fn appended_proto_lists_are_read_at_the_clients_hop() {
        let f = run(
            &[
                ("X-Forwarded-For", "1.2.3.4, 10.0.0.2"),
                ("X-Forwarded-Proto", "https, http"),
            ],
            "10.0.0.0/8",
        );
        assert_eq!(f.client, Some((ip("1.2.3.4"), None)));
        assert_eq!(f.scheme, Some(Scheme::Https));
        // Lists of other lengths: the last value (set by the nearest proxy).
        let f = run(
            &[
                ("X-Forwarded-For", "1.2.3.4, 10.0.0.2"),
                ("X-Forwarded-Proto", "http, https, https"),
            ],
            "10.0.0.0/8",
        );
        assert_eq!(f.scheme, Some(Scheme::Https));
    }

    #[test]
    fn bad_values_are_dropped() {
        let f = run(
            &[
                ("X-Forwarded-Proto", "gopher"),
                ("X-Forwarded-Host", "evil.com/path"),
                ("X-Forwarded-Port", "99999"),
            ],
            "",
        );
        assert_eq!(f.scheme, None);
        assert_eq!(f.host, None);
        assert_eq!(f.port, None);
        let f = run(&[("X-Forwarded-Host", "a b")], "");
        assert_eq!(f.host, None);
    }

    #[test]
    fn rfc7239_elements_are_hops() {
        let f = run(
            &[(
                "Forwarded",
                r#"for="[2001:db8:cafe::17]:4711";proto=https;host=shop.example, for=10.0.0.2;proto=http"#,
            )],
            "10.0.0.0/8",
        );
        assert_eq!(f.client, Some((ip("2001:db8:cafe::17"), Some(4711))));
        assert_eq!(f.scheme, Some(Scheme::Https));
        assert_eq!(f.host.as_deref(), Some("shop.example"));
        // Forwarded wins over X-Forwarded-*.
        let f = run(
            &[
                ("X-Forwarded-For", "9.9.9.9"),
                ("Forwarded", "For=192.0.2.60;Proto=http;By=203.0.113.43"),
            ],
            "",
        );
        assert_eq!(f.client, Some((ip("192.0.2.60"), None)));
        assert_eq!(f.scheme, Some(Scheme::Http));
        // An obfuscated client: no address.
        let f = run(&[("Forwarded", "for=_hidden;proto=https")], "");
        assert_eq!(f.client, None);
        assert_eq!(f.scheme, Some(Scheme::Https));
        // A quoted comma does not split the list.
        let f = run(&[("Forwarded", r#"for="1.2.3.4";host="a,b""#)], "");
        assert_eq!(f.client, Some((ip("1.2.3.4"), None)));
        assert_eq!(f.host, None);
    }

    #[test]
    fn no_forwarding_headers_say_nothing() {
        assert!(run(&[("Host", "x"), ("Accept", "*/*")], "*").is_empty());
    }

    #[test]
    fn forwarding_fields_are_named_in_any_case_and_keep_their_environ_key() {
        let names = [
            "Forwarded",
            "X-Forwarded-For",
            "x-forwarded-ssl",
            "X-FORWARDED-HOST",
            "X-Forwarded-Port",
            "X-Forwarded-Proto",
            "X-Forwarded-Protocol",
        ];
        for name in names {
            assert!(is_forwarding_field(name), "{name}");
            // Callers learn of these fields while building the environ's
            // HTTP_* entries: a dropped name would hide one.
            assert!(crate::environ::header_key(name).is_some(), "{name}");
        }
        for name in [
            "Host",
            "X-Forwarded",
            "X-Forwarded-Fo",
            "X_Forwarded_For",
            "Forwarde",
        ] {
            assert!(!is_forwarding_field(name), "{name}");
        }
    }
}
