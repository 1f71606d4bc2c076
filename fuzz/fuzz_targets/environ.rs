//! Fuzz the environ mapping rules (`oxgate_proto::environ`) on heads that
//! `parse_head` accepted: every header key is a CGI name that no other header
//! can alias (no underscore smuggling), every value is latin-1 text without
//! controls, and PATH_INFO is the exact percent-decoding of the path.
//! Building the dict itself is oxgate-py's job and is not reached from here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxgate_proto::environ::{header_key, percent_decode};
use oxgate_proto::{parse_head, Limits, Parsed};

fuzz_target!(|input: &[u8]| {
    // Any string is a fair argument for the mapping functions themselves.
    let text = String::from_utf8_lossy(input);
    check_key(&text);
    check_decode(&text);

    let Ok(Parsed::Complete(head, _)) = parse_head(input, &Limits::default()) else {
        return;
    };
    let mut keys: Vec<(String, &str)> = Vec::new();
    for h in head.headers() {
        let key = check_key(h.name);
        // Values become latin-1 str: one char per byte, and no byte that
        // would end or fold a header line or terminate a C string.
        assert!(
            h.value
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "value {:?}",
            h.value
        );
        let latin1: String = h.value.iter().map(|&b| char::from(b)).collect();
        let back: Vec<u8> = latin1.chars().map(|c| c as u8).collect();
        assert_eq!(back, h.value);
        if let Some(key) = key {
            keys.push((key, h.name));
        }
    }
    // Two names that map to one key are the same name up to case: the
    // headers combine as RFC 9110 section 5.3 says, nothing else merges in.
    for (i, (ka, na)) in keys.iter().enumerate() {
        for (kb, nb) in &keys[i + 1..] {
            if ka == kb {
                assert!(
                    na.eq_ignore_ascii_case(nb),
                    "{na:?} and {nb:?} both map to {ka}"
                );
            }
        }
    }
    assert!(head.method().bytes().all(|b| b.is_ascii_graphic()));
    assert!(head.query().bytes().all(|b| b.is_ascii_graphic()));
    assert!(head.target().bytes().all(|b| b.is_ascii_graphic()));
    if head.path() != "*" {
        check_decode(head.path());
    }
});

/// `header_key` drops exactly the names with '_' and maps every other name to
/// CONTENT_TYPE, CONTENT_LENGTH or HTTP_ + the name upper-cased with '-' as '_'.
fn check_key(name: &str) -> Option<String> {
    let key = header_key(name);
    let Some(key) = key else {
        assert!(name.contains('_'), "{name:?} dropped");
        return None;
    };
    assert!(!name.contains('_'), "{name:?} with '_' kept as {key}");
    let expected = if name.eq_ignore_ascii_case("content-type") {
        "CONTENT_TYPE".to_owned()
    } else if name.eq_ignore_ascii_case("content-length") {
        "CONTENT_LENGTH".to_owned()
    } else {
        format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"))
    };
    assert_eq!(key, expected);
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^`|~".contains(&b))
    {
        // A token name gives a CGI-safe key: no lower case, no '-', no '=',
        // NUL or space that would break an environment block.
        assert!(
            key.bytes().all(|b| b.is_ascii_uppercase()
                || b.is_ascii_digit()
                || b"!#$%&'*+_.^`|~".contains(&b)),
            "key {key:?}"
        );
    }
    Some(key)
}

/// `percent_decode` turns each `%XX` (either case) into its byte and keeps
/// everything else, bad escapes included, byte for byte.
fn check_decode(path: &str) {
    let got = percent_decode(path);
    let bytes = path.as_bytes();
    let mut want = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes.get(i + 1..i + 3).and_then(|h| {
            let h = std::str::from_utf8(h).ok()?;
            if h.bytes().all(|b| b.is_ascii_hexdigit()) {
                u8::from_str_radix(h, 16).ok()
            } else {
                None
            }
        });
        match escape {
            Some(b) if bytes[i] == b'%' => {
                want.push(b);
                i += 3;
            }
            _ => {
                want.push(bytes[i]);
                i += 1;
            }
        }
    }
    assert_eq!(got, want, "percent_decode({path:?})");
    assert!(got.len() <= bytes.len());
}
