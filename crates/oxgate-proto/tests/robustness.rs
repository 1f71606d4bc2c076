//! No input can panic parse_head or ChunkedDecoder, and a head is judged the
//! same whatever prefix of it has arrived so far.
#![allow(clippy::unwrap_used)]

mod common;

use common::Rng;
use oxgate_proto::{parse_head, ChunkedDecoder, DecodeStep, Limits, Parsed};

/// Bytes drawn mostly from the HTTP alphabet, so random input reaches deep states.
fn random_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"GET /HTP1.0\r\n:; =\"\\\t,0123456789abcdefABCDEF-chunkedHostContent-LengthTransfer-Encoding*?#@[]%";
    let len = rng.below(max_len + 1);
    (0..len)
        .map(|_| match rng.below(10) {
            0 => rng.next() as u8,
            _ => ALPHABET[rng.below(ALPHABET.len())],
        })
        .collect()
}

/// Valid heads with random bytes flipped, inserted or dropped.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(3) {
            0 if at < out.len() => out[at] = rng.next() as u8,
            1 => out.insert(at, b"\r\n \t:,;\0\x80"[rng.below(9)]),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

const SEEDS: &[&[u8]] = &[
    b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    b"POST http://h:80/p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"PUT / HTTP/1.0\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n",
];

#[test]
fn random_bytes_never_panic_parse_head() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let tight = Limits {
        max_request_line: 20,
        max_headers: 3,
        max_header_size: 16,
    };
    for _ in 0..20_000 {
        let input = random_bytes(&mut rng, 200);
        let _ = parse_head(&input, &Limits::default());
        let _ = parse_head(&input, &tight);
        let _ = parse_head(
            &input,
            &Limits {
                max_request_line: 0,
                max_headers: 0,
                max_header_size: 0,
            },
        );
    }
}

#[test]
fn mutated_heads_never_panic_and_complete_heads_stay_in_bounds() {
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for _ in 0..20_000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let input = mutate(&mut rng, seed);
        if let Ok(Parsed::Complete(_, consumed)) = parse_head(&input, &Limits::default()) {
            assert!(consumed <= input.len());
            assert!(input[..consumed].ends_with(b"\r\n\r\n"));
        }
    }
}

#[test]
fn random_bytes_never_panic_the_chunked_decoder() {
    let mut rng = Rng(0x0F0F_1E1E_2D2D_3C3C);
    for _ in 0..20_000 {
        let input = random_bytes(&mut rng, 200);
        let mut dec = ChunkedDecoder::new(rng.below(40));
        let mut rest: &[u8] = &input;
        // Feed in random pieces until an error, Done, or the input runs out.
        let mut guard = 0;
        while guard < 1000 {
            guard += 1;
            let take = (1 + rng.below(16)).min(rest.len());
            match dec.decode(&rest[..take]) {
                Ok((n, step)) => {
                    assert!(n <= take);
                    if let DecodeStep::Data(d) = step {
                        assert!(!d.is_empty() && d.len() <= n);
                    }
                    if matches!(step, DecodeStep::Done) || rest.is_empty() {
                        break;
                    }
                    rest = &rest[n..];
                }
                Err(_) => break,
            }
        }
    }
}

#[test]
fn no_prefix_of_an_invalid_head_is_accepted_and_errors_do_not_change_status() {
    let invalid: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    ];
    for raw in invalid {
        let full = parse_head(raw, &Limits::default()).unwrap_err().status();
        for end in 0..raw.len() {
            match parse_head(&raw[..end], &Limits::default()) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete(..)) => panic!(
                    "prefix accepted: {:?}",
                    String::from_utf8_lossy(&raw[..end])
                ),
                Err(e) => assert_eq!(
                    e.status(),
                    full,
                    "prefix {:?}",
                    String::from_utf8_lossy(&raw[..end])
                ),
            }
        }
    }
}

/// The status every prefix of `raw` that is refused gets; panics if two
/// prefixes (or the whole) disagree, or if a prefix is accepted.
fn same_status_in_every_split(raw: &[u8], limits: &Limits) -> u16 {
    let full = parse_head(raw, limits).unwrap_err().status();
    for end in 0..raw.len() {
        match parse_head(&raw[..end], limits) {
            Ok(Parsed::Partial) => {}
            other => assert!(
                matches!(&other, Err(e) if e.status() == full),
                "prefix of {end} bytes: {other:?}, whole: {full}"
            ),
        }
    }
    full
}

// Found by the `head` fuzz target: a field line that is both over-long and
// malformed early got 400 byte by byte but 431 all at once.
#[test]
fn over_long_field_with_a_bad_name_byte_gets_400_in_every_split() {
    let lim = Limits {
        max_request_line: 24,
        max_headers: 3,
        max_header_size: 20,
    };
    let mut raw = b"POST /form HTTP/1.1\r\nHost: t\r\nC".to_vec();
    raw.extend_from_slice(&[0; 40]);
    raw.extend_from_slice(b"ontent-Type: a\r\n\r\n");
    assert_eq!(same_status_in_every_split(&raw, &lim), 400);
}

#[test]
fn over_long_request_line_with_a_control_byte_early_gets_400_in_every_split() {
    let mut raw = b"GET /\x01".to_vec();
    raw.extend_from_slice(&[b'a'; 5000]);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(same_status_in_every_split(&raw, &Limits::default()), 400);
}

#[test]
fn over_long_field_ended_by_a_bare_lf_gets_431_in_every_split() {
    // 8189 bytes then LF: one past the 8188 a field may hold, LF still inside
    // the window take_line searches.
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    raw.extend_from_slice(&[b'v'; 8186]);
    raw.extend_from_slice(b"\n\r\n");
    assert_eq!(same_status_in_every_split(&raw, &Limits::default()), 431);
}
