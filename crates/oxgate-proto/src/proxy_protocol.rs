//! The PROXY protocol header a load balancer (HAProxy, nginx's
//! `proxy_protocol on`, AWS NLB) sends before the first request: version 1
//! (text) and version 2 (binary), as specified in haproxy's
//! doc/proxy-protocol.txt. Only the client's address and whether it came
//! over TLS are kept.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::ProtoError;

/// The v2 signature; no HTTP request can start with it.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
/// Section 2.1: "a 107-byte buffer" holds the longest v1 line.
const V1_MAX: usize = 107;
/// Addresses plus TLVs; the specification allows up to 64 KiB, but no
/// balancer sends more than a few hundred bytes, and this is read before
/// the client is known.
const V2_MAX_BODY: usize = 4096;
/// The longest header `parse` accepts (v2's fixed part and the largest
/// body; every v1 line is shorter).
pub const MAX_HEADER: usize = 16 + V2_MAX_BODY;
/// PP2_TYPE_SSL and its PP2_CLIENT_SSL bit (section 2.2.5).
const PP2_TYPE_SSL: u8 = 0x20;
const PP2_CLIENT_SSL: u8 = 0x01;

/// What the start of a connection holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preamble {
    /// Too few bytes to tell yet.
    Incomplete,
    /// Not a PROXY header: the bytes are the request itself.
    Absent,
    /// A header of `len` bytes. `source` is `None` for v1 UNKNOWN, v2 LOCAL
    /// (the balancer's own health checks) and address families that are not
    /// IP: the connection's own peer stands.
    Header {
        len: usize,
        source: Option<SocketAddr>,
        tls: bool,
    },
}

fn bad() -> ProtoError {
    ProtoError::BadRequest("invalid PROXY protocol header")
}

/// Look at the first bytes of a connection.
pub fn parse(buf: &[u8]) -> Result<Preamble, ProtoError> {
    if buf.is_empty() {
        return Ok(Preamble::Incomplete);
    }
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Preamble::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return if n < V1_PREFIX.len() {
            Ok(Preamble::Incomplete)
        } else {
            parse_v1(buf)
        };
    }
    Ok(Preamble::Absent)
}

/// `PROXY TCP4 src dst sport dport\r\n`, `PROXY TCP6 ...`, `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Preamble, ProtoError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(bad())
        } else {
            Ok(Preamble::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| bad())?;
    let len = end + 2;
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.first().copied() {
        Some("UNKNOWN") => Ok(Preamble::Header {
            len,
            source: None,
            tls: false,
        }),
        Some(family @ ("TCP4" | "TCP6")) => {
            let [_, src, dst, sport, dport] = parts[..] else {
                return Err(bad());
            };
            let v4 = family == "TCP4";
            let src = v1_addr(src, v4)?;
            v1_addr(dst, v4)?;
            let sport = v1_port(sport)?;
            v1_port(dport)?;
            Ok(Preamble::Header {
                len,
                source: Some(SocketAddr::new(src, sport)),
                tls: false,
            })
        }
        _ => Err(bad()),
    }
}

fn v1_addr(s: &str, v4: bool) -> Result<IpAddr, ProtoError> {
    let ip = if v4 {
        s.parse::<Ipv4Addr>().map(IpAddr::V4)
    } else {
        s.parse::<Ipv6Addr>().map(IpAddr::V6)
    };
    ip.map_err(|_| bad())
}

/// A decimal port without sign or leading zeros (section 2.1).
fn v1_port(s: &str) -> Result<u16, ProtoError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

fn parse_v2(buf: &[u8]) -> Result<Preamble, ProtoError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Preamble::Incomplete);
    };
    let (ver_cmd, family) = (fixed[12], fixed[13]);
    let body_len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 || body_len > V2_MAX_BODY {
        return Err(bad());
    }
    let Some(body) = buf.get(16..16 + body_len) else {
        return Ok(Preamble::Incomplete);
    };
    let len = 16 + body_len;
    let (source, tlvs) = match (ver_cmd & 0x0f, family >> 4, family & 0x0f) {
        // LOCAL: the balancer speaking for itself; addresses are ignored.
        (0, _, _) => (None, &body[..0]),
        // PROXY over TCP (1) or UDP (2) on IPv4.
        (1, 1, 1 | 2) => {
            let a = body.get(..12).ok_or_else(bad)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            (Some(SocketAddr::new(IpAddr::V4(ip), port)), &body[12..])
        }
        (1, 2, 1 | 2) => {
            let a = body.get(..36).ok_or_else(bad)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            (
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)),
                &body[36..],
            )
        }
        // UNSPEC or unix: nothing to say about the client's address.
        (1, 0 | 3, _) => (None, &body[..0]),
        _ => return Err(bad()),
    };
    Ok(Preamble::Header {
        len,
        source,
        tls: client_tls(tlvs)?,
    })
}

/// Whether the TLVs carry PP2_TYPE_SSL with the client-used-TLS bit.
fn client_tls(mut tlvs: &[u8]) -> Result<bool, ProtoError> {
    let mut tls = false;
    while !tlvs.is_empty() {
        let head = tlvs.get(..3).ok_or_else(bad)?;
        let n = usize::from(u16::from_be_bytes([head[1], head[2]]));
        let value = tlvs.get(3..3 + n).ok_or_else(bad)?;
        if head[0] == PP2_TYPE_SSL {
            tls |= value.first().is_some_and(|c| c & PP2_CLIENT_SSL != 0);
        }
        tlvs = &tlvs[3 + n..];
    }
    Ok(tls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(len: usize, source: Option<&str>, tls: bool) -> Preamble {
        Preamble::Header {
            len,
            source: source.map(|s| s.parse().unwrap()),
            tls,
        }
    }

    #[test]
    fn v1_lines_give_the_source() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(parse(line), Ok(header(45, Some("192.0.2.1:56324"), false)));
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(parse(line), Ok(header(40, Some("[2001:db8::1]:1"), false)));
        let line = b"PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n";
        assert_eq!(parse(line), Ok(header(line.len(), None, false)));
    }

    #[test]
    fn partial_headers_wait_and_requests_pass() {
        assert_eq!(parse(b"PRO"), Ok(Preamble::Incomplete));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(Preamble::Incomplete));
        assert_eq!(parse(b"\r\n\r\n\0"), Ok(Preamble::Incomplete));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Ok(Preamble::Absent));
        assert_eq!(parse(b"POST"), Ok(Preamble::Absent));
        assert_eq!(parse(b"PUT"), Ok(Preamble::Absent));
    }

    #[test]
    fn malformed_v1_is_refused() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"[..],
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY HTTP 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 120]].concat();
        assert!(parse(&long).is_err());
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | cmd);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v2_tcp4_tcp6_local_and_tls() {
        let mut body = vec![192, 0, 2, 1, 10, 0, 0, 1];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        let msg = v2(1, 0x11, &body);
        assert_eq!(parse(&msg), Ok(header(28, Some("192.0.2.1:40000"), false)));
        // With an SSL TLV saying the client used TLS, and a NOOP TLV.
        let mut with_tls = body.clone();
        with_tls.extend_from_slice(&[0x04, 0, 1, 0]);
        with_tls.extend_from_slice(&[PP2_TYPE_SSL, 0, 5, 0x01, 0, 0, 0, 0]);
        let msg = v2(1, 0x11, &with_tls);
        assert_eq!(
            parse(&msg),
            Ok(header(msg.len(), Some("192.0.2.1:40000"), true))
        );
        // Cut short: wait for the rest.
        assert_eq!(parse(&msg[..20]), Ok(Preamble::Incomplete));
        let mut body6 = vec![0x20, 0x01, 0x0d, 0xb8];
        body6.extend_from_slice(&[0; 11]);
        body6.push(5);
        body6.extend_from_slice(&[0; 16]);
        body6.extend_from_slice(&8080u16.to_be_bytes());
        body6.extend_from_slice(&80u16.to_be_bytes());
        let msg = v2(1, 0x21, &body6);
        assert_eq!(
            parse(&msg),
            Ok(header(52, Some("[2001:db8::5]:8080"), false))
        );
        assert_eq!(parse(&v2(0, 0, &[])), Ok(header(16, None, false)));
    }

    #[test]
    fn malformed_v2_is_refused() {
        // Version 1 in the v2 framing, an unknown command, a short address
        // block, a TLV running past the end, an oversized body.
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).is_err());
        assert!(parse(&v2(2, 0x11, &[0; 12])).is_err());
        assert!(parse(&v2(1, 0x11, &[0; 8])).is_err());
        let mut body = vec![0; 12];
        body.extend_from_slice(&[0x20, 0, 9, 1]);
        assert!(parse(&v2(1, 0x11, &body)).is_err());
        assert!(parse(&v2(1, 0x11, &vec![0; 5000])).is_err());
    }
}
