//! Fuzz the response rules an app's `start_response` goes through: a status
//! or header that passes can never split the response (no CR, LF or NUL,
//! latin-1 only), the request parser would read the same field back, and the
//! Content-Length and framing decisions follow their RFC statements.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use oxgate_proto::response::{
    is_hop_by_hop, parse_content_length, response_framing, validate_header, validate_status,
};
use oxgate_proto::{parse_head, Limits, Parsed, ResponseFraming, Version};

#[derive(Debug, Arbitrary)]
struct Input {
    status: String,
    name: String,
    value: String,
    content_length: String,
    head_request: bool,
    code: u16,
    app_length: Option<u64>,
    known_length: Option<u64>,
    http11: bool,
}

fuzz_target!(|input: Input| {
    check_status(&input.status);
    check_header(&input.name, &input.value);
    check_content_length(&input.content_length);
    check_framing(&input);
});

fn field_char(c: char) -> bool {
    c == '\t' || (' '..='\u{ff}').contains(&c) && c != '\u{7f}'
}

fn check_status(status: &str) {
    let got = validate_status(status);
    let b = status.as_bytes();
    let want = (b.len() >= 4
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3] == b' '
        && status[4..].chars().all(field_char))
    .then(|| status[..3].parse::<u16>().ok())
    .flatten()
    .filter(|&code| code >= 100);
    assert_eq!(
        got.as_ref().ok().copied(),
        want,
        "validate_status({status:?}) = {got:?}"
    );
}

fn check_header(name: &str, value: &str) {
    let ok = validate_header(name, value).is_ok();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    assert_eq!(
        ok,
        token && value.chars().all(field_char),
        "{name:?}: {value:?}"
    );
    if !ok || !value.chars().all(|c| c <= '\u{ff}') {
        return;
    }
    // The field line as written (latin-1), read back by our own request
    // parser: one field, the same name, the same value less its OWS. Framing
    // and Host headers are left out: the request side judges their values.
    let framing = ["host", "content-length", "transfer-encoding"];
    if framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return;
    }
    let mut raw = b"GET / HTTP/1.0\r\n".to_vec();
    raw.extend_from_slice(name.as_bytes());
    raw.extend_from_slice(b": ");
    raw.extend(value.chars().map(|c| c as u8));
    raw.extend_from_slice(b"\r\n\r\n");
    let limits = Limits {
        max_request_line: 0,
        max_headers: 0,
        max_header_size: 0,
    };
    match parse_head(&raw, &limits) {
        Ok(Parsed::Complete(head, used)) => {
            assert_eq!(used, raw.len());
            let fields: Vec<_> = head.headers().collect();
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].name, name);
            let trimmed: Vec<u8> = value
                .trim_matches([' ', '\t'])
                .chars()
                .map(|c| c as u8)
                .collect();
            assert_eq!(fields[0].value, trimmed);
        }
        // Only a field too long for the request side's ceiling may differ.
        Err(e) if e.status() == 431 => {}
        other => panic!("{name:?}: {value:?} reads back as {other:?}"),
    }
    let _ = is_hop_by_hop(name);
}

fn check_content_length(value: &str) {
    let trimmed = value.trim_matches([' ', '\t']);
    let want = if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        trimmed.parse::<u64>().ok()
    } else {
        None
    };
    assert_eq!(parse_content_length(value), want, "{value:?}");
}

fn check_framing(input: &Input) {
    let version = if input.http11 {
        Version::Http11
    } else {
        Version::Http10
    };
    let code = input.code;
    let got = response_framing(
        input.head_request,
        code,
        input.app_length,
        input.known_length,
        version,
    );
    let no_body = input.head_request || (100..200).contains(&code) || code == 204 || code == 304;
    let want = match input.app_length.or(input.known_length) {
        _ if no_body => ResponseFraming::NoBody,
        Some(n) => ResponseFraming::Length(n),
        None if input.http11 => ResponseFraming::Chunked,
        None => ResponseFraming::CloseDelimited,
    };
    assert_eq!(got, want);
}
