//! Fuzz `parse_head`: any bytes are judged Complete, Partial or a typed error,
//! never a panic, the same way whatever prefix of them has arrived, and never
//! by buffering more than the limits allow. Checks the parser, fixes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxgate_proto::{
    connection_has_token, parse_head, BodyFraming, Limits, Parsed, RequestHead, Version,
};

/// The limits a server is run with: gunicorn's defaults, "0 = unlimited"
/// (clamped to the hard ceilings), and tiny ones that make every limit reachable.
const LIMITS: [Limits; 3] = [
    Limits {
        max_request_line: 4094,
        max_headers: 100,
        max_header_size: 8190,
    },
    Limits {
        max_request_line: 0,
        max_headers: 0,
        max_header_size: 0,
    },
    Limits {
        max_request_line: 24,
        max_headers: 3,
        max_header_size: 20,
    },
];

/// Below this size every prefix is re-parsed; above it, a sample around
/// the first `LINES` lines.
const ALL_PREFIXES: usize = 64;
const LINES: usize = 32;

fuzz_target!(|input: &[u8]| {
    for limits in &LIMITS {
        check(input, limits);
    }
});

/// What a result says, comparable across prefixes.
#[derive(Debug, PartialEq)]
enum Outcome {
    Complete(RequestHead, usize),
    Partial,
    Refused(u16),
}

fn judge(buf: &[u8], limits: &Limits) -> Outcome {
    match parse_head(buf, limits) {
        Ok(Parsed::Complete(head, used)) => Outcome::Complete(head, used),
        Ok(Parsed::Partial) => Outcome::Partial,
        Err(e) => {
            // parse_head reads a head only: never 413 (that is the body's
            // business), only the statuses ProtoError documents for heads.
            let status = e.status();
            assert!(
                matches!(status, 400 | 414 | 431 | 501 | 505),
                "unexpected status {status} for {e:?}"
            );
            assert!(!e.to_string().is_empty());
            Outcome::Refused(status)
        }
    }
}

fn check(input: &[u8], limits: &Limits) {
    let whole = judge(input, limits);
    match &whole {
        Outcome::Complete(head, used) => {
            let used = *used;
            assert!(used <= input.len(), "used {used} > len {}", input.len());
            assert!(
                input[..used].ends_with(b"\r\n\r\n"),
                "head must end in CRLFCRLF"
            );
            // The head is all there is to it: the bytes after it (a body, a
            // pipelined request) change nothing.
            assert_eq!(
                judge(&input[..used], limits),
                whole,
                "re-parse of input[..used]"
            );
            check_head(head);
        }
        Outcome::Partial => {
            // Partial only while no blank line ends a head: once the buffer
            // holds CRLFCRLF after the tolerated leading empty lines, the
            // answer must be Complete or an error, or a client could stall us.
            let start = leading_empty_lines(input);
            assert!(
                !contains(&input[start..], b"\r\n\r\n"),
                "Partial although a blank line ends the head"
            );
            // Partial never holds more than the limits allow.
            let lim = limits.effective();
            let bound = 2 * (lim.max_request_line + 2) + lim.max_headers * lim.max_header_size + 2;
            assert!(
                input.len() <= bound,
                "Partial with {} bytes buffered, limits allow {bound}",
                input.len()
            );
        }
        Outcome::Refused(_) => {}
    }
    // A server re-parses the growing buffer after every read, so every split
    // of the same bytes must get the same answer: a prefix of an accepted
    // head is Partial, a prefix of a refused one is Partial or refused with
    // the same status, never accepted.
    let end = match whole {
        Outcome::Complete(_, used) => used,
        _ => input.len(),
    };
    for cut in cuts(input, end, limits) {
        let prefix = judge(&input[..cut], limits);
        match (&whole, &prefix) {
            (_, Outcome::Partial) => {}
            (Outcome::Refused(a), Outcome::Refused(b)) if a == b => {}
            _ => panic!("prefix of {cut} bytes gives {prefix:?}, all {end} bytes give {whole:?}"),
        }
    }
}

/// The prefix lengths to re-parse: all of them for short inputs; else the
/// places where the parser's decisions change (the first bytes of a line,
/// the bytes around each control, space, colon or non-ASCII byte, each
/// line's length limit) and a stride.
fn cuts(input: &[u8], end: usize, limits: &Limits) -> Vec<usize> {
    if end <= ALL_PREFIXES {
        return (0..end).collect();
    }
    let lim = limits.effective();
    let line_max = [lim.max_request_line, lim.max_header_size.saturating_sub(2)];
    let starts = std::iter::once(0).chain(
        input[..end]
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    let mut cuts: Vec<usize> = (0..end).step_by(end / 32 + 1).collect();
    for start in starts.take(LINES) {
        cuts.extend(start..start + 3);
        for max in line_max {
            cuts.extend(start + max..start + max + 4);
        }
    }
    // CR, LF, and the bytes a partial line is refused or judged for.
    let special = |b: u8| !(0x21..=0x7e).contains(&b) || b == b':';
    let specials = input[..end]
        .iter()
        .enumerate()
        .filter(|&(_, &b)| special(b));
    for (i, _) in specials.take(4 * LINES) {
        cuts.extend([i, i + 1]);
    }
    cuts.retain(|&c| c < end);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut pos = 0;
    loop {
        match &buf[pos..] {
            [b'\r', b'\n', ..] => pos += 2,
            [b'\n', ..] => pos += 1,
            _ => return pos,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn count(head: &RequestHead, name: &str) -> usize {
    head.headers()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .count()
}

/// What an accepted head promises to the rest of the server.
fn check_head(head: &RequestHead) {
    assert!(!head.method().is_empty() && head.method().bytes().all(is_tchar));
    assert!(head.target().bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert!(!head.target().contains('#'), "fragment accepted");
    assert!(
        head.path() == "*" || head.path().starts_with('/'),
        "path {:?}",
        head.path()
    );
    assert!(head.query().bytes().all(|b| (0x21..=0x7e).contains(&b)));
    for h in head.headers() {
        assert!(
            !h.name.is_empty() && h.name.bytes().all(is_tchar),
            "name {:?}",
            h.name
        );
        assert!(
            h.value
                .iter()
                .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
            "control byte in value {:?}",
            h.value
        );
        assert!(
            !matches!(h.value.first(), Some(b' ' | b'\t'))
                && !matches!(h.value.last(), Some(b' ' | b'\t')),
            "untrimmed value {:?}",
            h.value
        );
    }
    // One framing, decided from headers nobody can read another way.
    let te = count(head, "transfer-encoding");
    let cl = count(head, "content-length");
    match head.framing {
        BodyFraming::Chunked => {
            assert!(te > 0 && cl == 0 && head.version == Version::Http11);
        }
        BodyFraming::Length(n) => {
            assert!(te == 0 && cl == 1);
            let value = head.header("content-length").unwrap_or_default();
            let digits = String::from_utf8_lossy(value);
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "CL {digits:?}");
            assert_eq!(digits.parse::<u64>().ok(), Some(n));
        }
        BodyFraming::None => assert!(te == 0 && cl == 0),
    }
    assert!(count(head, "host") <= 1, "more than one Host accepted");
    if head.version == Version::Http11 {
        assert_eq!(count(head, "host"), 1, "HTTP/1.1 without Host accepted");
    }
    if let Some(host) = &head.host() {
        assert!(!host.is_empty() && host.is_ascii() && !host.contains(['@', ' ', '/']));
    }
    let close = connection_has_token(head, "close");
    match head.version {
        Version::Http11 => assert_eq!(head.keep_alive, !close),
        Version::Http10 => {
            assert!(!head.expect_continue);
            if head.keep_alive {
                assert!(!close && connection_has_token(head, "keep-alive"));
            }
        }
        Version::Http2 => panic!("HTTP/2 from a request line"),
    }
}
