//! Request ids (--request-id): the client's `X-Request-ID` when it is a sane
//! token, else one made here. Deciding and making the id; putting it in the
//! environ, the response and the log is for their owners.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oxgate_proto::RequestHead;

/// The longest client id passed through.
pub const MAX_CLIENT_ID: usize = 200;

/// The request header (and response header) that carries the id.
pub const HEADER: &str = "X-Request-ID";

/// One request's id, held inline: shared as one `Arc` (a pointer in the
/// request and the encoder, one allocation per request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    len: u8,
    /// Taken from the request's own header: the environ already holds it.
    pub from_client: bool,
    bytes: [u8; MAX_CLIENT_ID],
}

impl RequestId {
    /// `text` is ASCII (a sane client id, or hex digits) of at most
    /// `MAX_CLIENT_ID` bytes; anything else is cut at the first byte that
    /// is not, so `as_str` can rely on it.
    fn new(text: &[u8], from_client: bool) -> Self {
        let ascii = text
            .iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(text.len());
        let len = ascii.min(MAX_CLIENT_ID);
        let mut bytes = [0u8; MAX_CLIENT_ID];
        bytes[..len].copy_from_slice(&text[..len]);
        RequestId {
            len: u8::try_from(len).unwrap_or(u8::MAX),
            from_client,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        let text = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // SAFETY: `new` stores only the ASCII prefix of what it is given,
        // and ASCII is UTF-8. Checking again costs ~100 instructions a call,
        // three calls a request.
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

/// Makes ids for one worker: 128 bits each, 32 hex digits. Unique within
/// the worker (the first half is a bijection of a counter), unpredictable
/// and unique across workers with overwhelming probability (both halves
/// are keyed by 128 random bits read when the worker starts).
#[derive(Debug)]
pub struct RequestIds {
    keys: [u64; 2],
    next: AtomicU64,
}

impl RequestIds {
    /// Keyed from the OS's randomness; call it in the worker, after fork,
    /// so that no two workers share keys.
    pub fn new() -> Self {
        let mut seed = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
        if let Err(e) = read {
            // Still unique within the worker; across workers the pid and
            // clock keep collisions unlikely.
            log::warn!("request ids: cannot read /dev/urandom ({e}); seeding from pid and clock");
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
            seed[8..].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        }
        let (a, b) = seed.split_at(8);
        let word = |half: &[u8]| {
            let mut w = [0u8; 8];
            w.copy_from_slice(half);
            u64::from_le_bytes(w)
        };
        RequestIds::with_keys([word(a), word(b)])
    }

    pub(crate) fn with_keys(keys: [u64; 2]) -> Self {
        RequestIds {
            keys,
            next: AtomicU64::new(0),
        }
    }

    /// A fresh id: 32 lowercase hex digits.
    pub fn generate(&self) -> [u8; 32] {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // splitmix64: the odd multiplier makes `key + n * GOLDEN` distinct
        // for every n, and the finalizer is a bijection.
        const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
        let first = mix(self.keys[0].wrapping_add(n.wrapping_mul(GOLDEN)));
        let second = mix(self.keys[1] ^ first);
        let mut text = [0u8; 32];
        put_hex(&mut text[..16], first);
        put_hex(&mut text[16..], second);
        text
    }

    /// The id for `head`: its `X-Request-ID` if sane and sent once, else a
    /// fresh one.
    pub fn for_request(&self, head: &RequestHead) -> Arc<RequestId> {
        Arc::new(match client_id(head) {
            Some(id) => RequestId::new(id, true),
            None => RequestId::new(&self.generate(), false),
        })
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

/// The request's `X-Request-ID` when it is one sane token: 1 to 200
/// visible ASCII characters (no spaces, no controls), sent once (repeats
/// would reach the app joined with ", ").
fn client_id(head: &RequestHead) -> Option<&[u8]> {
    let mut found = None;
    for h in head.headers() {
        if h.name.eq_ignore_ascii_case(HEADER) {
            if found.is_some() {
                return None;
            }
            found = Some(h.value);
        }
    }
    found.filter(|value| is_sane(value))
}

/// 1 to `MAX_CLIENT_ID` bytes, each visible ASCII (`!` to `~`).
pub fn is_sane(value: &[u8]) -> bool {
    (1..=MAX_CLIENT_ID).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `word` as 16 lowercase hex digits into `out` (16 bytes).
fn put_hex(out: &mut [u8], word: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().enumerate() {
        // The mask keeps the index below 16.
        *digit = DIGITS[((word >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oxgate_proto::{parse_head, Limits, Parsed};
    use std::collections::HashSet;

    fn head(raw: &[u8]) -> RequestHead {
        match parse_head(raw, &Limits::default()).unwrap() {
            Parsed::Complete(head, _) => head,
            Parsed::Partial => panic!("incomplete head"),
        }
    }

    #[test]
    fn generated_ids_are_32_lowercase_hex_digits() {
        let ids = RequestIds::new();
        for _ in 0..100 {
            let id = ids.for_request(&head(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
            assert_eq!(id.as_str().len(), 32);
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id:?}"
            );
        }
    }

    #[test]
    fn generated_ids_do_not_repeat_within_a_worker() {
        let ids = RequestIds::with_keys([0, 0]);
        let seen: HashSet<[u8; 32]> = (0..100_000).map(|_| ids.generate()).collect();
        assert_eq!(seen.len(), 100_000);
    }

    #[test]
    fn workers_with_different_keys_make_different_ids() {
        let a = RequestIds::new();
        let b = RequestIds::new();
        assert_ne!(a.generate(), b.generate());
    }

    #[test]
    fn a_sane_client_id_is_passed_through() {
        let ids = RequestIds::new();
        let id = ids.for_request(&head(
            b"GET / HTTP/1.1\r\nHost: t\r\nx-request-id: abc-123_=:/\r\n\r\n",
        ));
        assert_eq!(id.as_str(), "abc-123_=:/");
        assert!(id.from_client);
    }

    #[test]
    fn a_missing_or_bad_client_id_is_replaced() {
        let ids = RequestIds::new();
        let long = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: {}\r\n\r\n",
            "a".repeat(201)
        );
        let cases: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: has space\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: caf\xe9\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: a\r\nX-Request-ID: b\r\n\r\n",
            long.as_bytes(),
        ];
        for raw in cases {
            let id = ids.for_request(&head(raw));
            assert!(!id.from_client, "{}", String::from_utf8_lossy(raw));
            assert_eq!(id.as_str().len(), 32);
        }
    }

    #[test]
    fn an_id_holds_only_ascii_whatever_it_is_given() {
        assert_eq!(RequestId::new(b"ab\xffc", false).as_str(), "ab");
        assert_eq!(
            RequestId::new(&[b'x'; 300], true).as_str().len(),
            MAX_CLIENT_ID
        );
        assert_eq!(RequestId::new(b"", false).as_str(), "");
    }

    #[test]
    fn sane_means_one_to_two_hundred_visible_ascii_bytes() {
        assert!(is_sane(b"a"));
        assert!(is_sane("x".repeat(200).as_bytes()));
        assert!(!is_sane(b""));
        assert!(!is_sane("x".repeat(201).as_bytes()));
        assert!(!is_sane(b"a\tb"));
        assert!(!is_sane(b"a\x7f"));
        assert!(!is_sane(b"\x80"));
    }
}
