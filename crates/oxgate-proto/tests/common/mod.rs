//! Helpers shared by the integration tests: parse a whole head, check that
//! every prefix of a valid head is Partial, and a deterministic PRNG.
#![allow(dead_code, clippy::unwrap_used)]

use oxgate_proto::{parse_head, Limits, Parsed, ProtoError, RequestHead};

/// Parse a complete head with default limits; asserts it takes all of `raw`.
pub fn parse(raw: &[u8]) -> Result<RequestHead, ProtoError> {
    parse_with(raw, &Limits::default())
}

pub fn parse_with(raw: &[u8], limits: &Limits) -> Result<RequestHead, ProtoError> {
    match parse_head(raw, limits)? {
        Parsed::Complete(head, consumed) => {
            assert_eq!(
                consumed,
                raw.len(),
                "consumed for {:?}",
                String::from_utf8_lossy(raw)
            );
            Ok(head)
        }
        Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(raw)),
    }
}

/// The status an invalid head is answered with.
pub fn status(raw: &[u8]) -> u16 {
    match parse_head(raw, &Limits::default()) {
        Err(e) => e.status(),
        Ok(Parsed::Partial) => panic!("partial: {:?}", String::from_utf8_lossy(raw)),
        Ok(Parsed::Complete(..)) => panic!("accepted: {:?}", String::from_utf8_lossy(raw)),
    }
}

pub fn is_partial(raw: &[u8], limits: &Limits) -> bool {
    matches!(parse_head(raw, limits), Ok(Parsed::Partial))
}

/// A GET with the given extra header lines (each without CRLF).
pub fn get_with(headers: &[&str]) -> Vec<u8> {
    let mut raw = b"GET / HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    for h in headers {
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// A POST with the given extra header lines (each without CRLF).
pub fn post_with(headers: &[&str]) -> Vec<u8> {
    let mut raw = b"POST / HTTP/1.1\r\nHost: example.com\r\n".to_vec();
    for h in headers {
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
