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
//!
//! Input: byte 0 picks the part, the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxgate_proto::forwarded::resolve;
use oxgate_proto::proxy_protocol::{self, Preamble};
use oxgate_proto::uwsgi::{self, Packet};
use oxgate_proto::{parse_head, Header, Limits, Parsed, TrustList, Version};

fuzz_target!(|input: &[u8]| {
    let Some((&which, data)) = input.split_first() else {
        return;
    };
    match which % 3 {
        0 => proxy(data),
        1 => uwsgi_packet(data),
        _ => forwarding(data),
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
