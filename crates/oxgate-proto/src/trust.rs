//! Which peers are trusted to speak for their clients (--forwarded-allow-ips,
//! --proxy-allow-from): addresses, CIDR networks or `*`, as gunicorn writes
//! them. Parsing and matching only; what trust allows is decided elsewhere.

use std::fmt;
use std::net::IpAddr;

/// A parsed allow list. Matching is by address only (never by name): a name
/// would need a DNS lookup per connection and could be pointed anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustList {
    any: bool,
    nets: Vec<(IpAddr, u8)>,
    /// As written, for messages and --print-config.
    text: String,
}

impl TrustList {
    /// `"127.0.0.1,::1"`, `"10.0.0.0/8, 192.168.1.5"`, `"*"`; an empty
    /// string trusts nobody. The error says which entry is wrong and why.
    pub fn parse(raw: &str) -> Result<TrustList, String> {
        let mut list = TrustList {
            text: raw.trim().to_owned(),
            ..TrustList::default()
        };
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
                continue;
            }
            list.nets.push(parse_net(entry)?);
        }
        Ok(list)
    }

    /// Whether `ip` is listed (an IPv4-mapped IPv6 address counts as its IPv4
    /// form, as a dual-stack listener reports IPv4 clients that way).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.any {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|&(net, bits)| in_net(ip, net, bits))
    }

    /// Whether the list trusts nobody.
    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }
}

impl fmt::Display for TrustList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_net(entry: &str) -> Result<(IpAddr, u8), String> {
    let bad = || {
        format!("'{entry}' is not an IP address or network (e.g. 10.0.0.1, 10.0.0.0/8, ::1 or *)")
    };
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (entry, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let ip = addr.parse::<IpAddr>().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        None => max,
        Some(b) => match b.parse::<u8>() {
            Ok(n) if n <= max && !b.starts_with('+') => n,
            _ => return Err(format!("'{entry}': the prefix length must be 0 to {max}")),
        },
    };
    // An IPv4-mapped network is matched as the IPv4 network it covers.
    match canonical(ip) {
        v4 @ IpAddr::V4(_) if ip.is_ipv6() && bits >= 96 => Ok((v4, bits - 96)),
        _ => Ok((ip, bits)),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        (IpAddr::V6(a), IpAddr::V6(n)) => prefix_eq(&a.octets(), &n.octets(), bits),
        _ => false,
    }
}

/// The first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] & mask) == (b[whole] & mask)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::TrustList;

    fn trusts(list: &str, ip: &str) -> bool {
        TrustList::parse(list)
            .unwrap()
            .contains(ip.parse().unwrap())
    }

    #[test]
    fn addresses_networks_and_star_match() {
        assert!(trusts("127.0.0.1,::1", "127.0.0.1"));
        assert!(trusts("127.0.0.1,::1", "::1"));
        assert!(!trusts("127.0.0.1,::1", "127.0.0.2"));
        assert!(trusts("10.0.0.0/8", "10.200.3.4"));
        assert!(!trusts("10.0.0.0/8", "11.0.0.1"));
        assert!(trusts("192.168.1.128/25", "192.168.1.200"));
        assert!(!trusts("192.168.1.128/25", "192.168.1.100"));
        assert!(trusts("fd00::/8", "fd12:3456::1"));
        assert!(!trusts("fd00::/8", "fe80::1"));
        assert!(trusts("0.0.0.0/0", "8.8.8.8"));
        assert!(!trusts("0.0.0.0/0", "::2"));
        assert!(trusts("*", "2001:db8::1"));
        assert!(!trusts("", "127.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_match_their_ipv4_form() {
        assert!(trusts("127.0.0.1", "::ffff:127.0.0.1"));
        assert!(trusts("::ffff:10.0.0.0/104", "10.1.1.1"));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustList::parse("127.0.0.1, proxy.local").unwrap_err();
        assert!(err.contains("'proxy.local'"), "{err}");
        let err = TrustList::parse("10.0.0.0/33").unwrap_err();
        assert!(err.contains("0 to 32"), "{err}");
        assert!(TrustList::parse("::/129").is_err());
        assert!(TrustList::parse("10.0.0.0/+8").is_err());
    }
}
