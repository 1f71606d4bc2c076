//! Fuzz what may precede or replace an HTTP head: PROXY protocol headers and
//! uwsgi packets, and the forwarding headers a trusted proxy sends.
//!
//! - PROXY: a header is found at the same length in every longer prefix,
//!   never longer than the input, and a prefix of it is `Incomplete`, so a
//!   header split across reads is read the same as whole.
//! - uwsgi: a packet that translates gives a head `parse_head` reads as one
//!   complete HTTP/1.0 head with exactly the fields the translation wrote
//!   (no field or request smuggled in through a variable).
//! - forwarding: whatever the values, `resolve` gives a client, host and
//!   port that parse, and a host that would pass as a Host header.
//! - HTTP/2 header sections: a head `head_from_h2` accepts has exactly the
//!   method and target given, and only fields that were given (the Host
//!   from :authority, the cookies joined), so nothing decoded from HPACK
//!   can smuggle a field or a second request into the head text.
//!
//! Input: byte 0 picks the part, the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxgate_proto::forwarded::resolve;
use oxgate_proto::h2_head::{head_from_h2, H2Request};
use oxgate_proto::proxy_protocol::{self, Preamble};
use oxgate_proto::uwsgi::{self, Packet};
use oxgate_proto::{parse_head, Header, Limits, Parsed, TrustList, Version};

fuzz_target!(|input: &[u8]| {
    let Some((&which, data)) = input.split_first() else {
        return;
    };
    match which % 4 {
        0 => proxy(data),
        1 => uwsgi_packet(data),
        2 => forwarding(data),
        _ => h2_fields(data),
    }
});

fn proxy(data: &[u8]) {
    let whole = proxy_protocol::parse(data);
    if let Ok(Preamble::Header { len, .. }) = &whole {
        assert!(
            *len <= data.len(),
            "header of {len} in {} bytes",
            data.len()
        );
        for cut in 0..*len {
            assert_eq!(
                proxy_protocol::parse(&data[..cut]),
                Ok(Preamble::Incomplete),
                "prefix of {cut} of a {len}-byte header"
            );
        }
        let mut longer = data.to_vec();
        longer.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(proxy_protocol::parse(&longer), whole);
    }
}

fn uwsgi_packet(data: &[u8]) {
    let Ok(Packet::Done { len, vars }) = uwsgi::parse(data) else {
        return;
    };
    assert!(len <= data.len());
    let Ok(t) = uwsgi::translate(&vars) else {
        return;
    };
    let written = t.head.split(|&b| b == b'\n').count().saturating_sub(3);
    match parse_head(&t.head, &Limits::default()) {
        Ok(Parsed::Complete(head, used)) => {
            assert_eq!(used, t.head.len(), "the head ends before its end");
            assert_eq!(head.version, Version::Http10);
            assert_eq!(
                head.headers().len(),
                written,
                "fields differ from those written"
            );
        }
        // Refusing is fine (bad names, limits); reading less or more is not.
        Ok(Parsed::Partial) => panic!("a translated head is incomplete"),
        Err(_) => {}
    }
    for (key, _) in &t.environ {
        assert!(!key.contains('.'), "{key} could replace a wsgi.* entry");
    }
}

fn forwarding(data: &[u8]) {
    // Lines of "name: value" as the head parser would give them.
    let text = String::from_utf8_lossy(data);
    let fields: Vec<(&str, &[u8])> = text
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim(), v.trim().as_bytes()))
        .collect();
    for trust in ["", "*", "127.0.0.1,10.0.0.0/8,::1"] {
        let Ok(list) = TrustList::parse(trust) else {
            panic!("{trust} is a valid list");
        };
        let f = resolve(
            fields.iter().map(|&(name, value)| Header { name, value }),
            &list,
        );
        if let Some(host) = &f.host {
            let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert!(
                matches!(
                    parse_head(request.as_bytes(), &Limits::default()),
                    Ok(Parsed::Complete(..))
                ),
                "host {host:?} would not pass as a Host header"
            );
        }
        assert!(f.port.is_none_or(|p| p > 0));
    }
}

fn h2_fields(data: &[u8]) {
    // NUL-separated: method, authority, path, then name, value pairs.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let (Some(method), Some(authority), Some(path)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let rest: Vec<&str> = parts.collect();
    let fields: Vec<(&str, &[u8])> = rest
        .chunks(2)
        .map(|pair| (pair[0], pair.get(1).copied().unwrap_or("").as_bytes()))
        .collect();
    let authority = (!authority.is_empty()).then_some(authority);
    for end_stream in [true, false] {
        let req = H2Request {
            method,
            authority,
            path,
            fields: &fields,
            end_stream,
        };
        let Ok(head) = head_from_h2(req, &Limits::default()) else {
            continue;
        };
        assert_eq!(head.method(), method);
        assert_eq!(head.target(), path);
        assert_eq!(head.version, Version::Http2);
        let cookies: Vec<&[u8]> = fields
            .iter()
            .filter(|(n, v)| *n == "cookie" && !v.is_empty())
            .map(|(_, v)| *v)
            .collect();
        for h in head.headers() {
            let given = fields
                .iter()
                .any(|(n, v)| *n == h.name && v.trim_ascii() == h.value);
            let host = h.name == "host" && authority.is_some_and(|a| a.as_bytes() == h.value);
            let joined = h.name == "cookie" && cookies.join(&b"; "[..]).trim_ascii() == h.value;
            assert!(given || host || joined, "field {h:?} was not given");
        }
        assert!(head.headers().len() <= fields.len() + 1);
    }
}
