//! The Range request header for static files (RFC 9110 section 14): one
//! byte range is served as 206; several, or any we cannot read, are
//! ignored and the whole file is sent, as section 14.2 allows.

use crate::syntax::parse_decimal;

/// What a Range header asks of a representation of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No usable range: send everything (200).
    Full,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// No byte of the file is in the range (416).
    Unsatisfiable,
}

pub fn parse(header: &[u8], size: u64) -> Range {
    let Ok(text) = std::str::from_utf8(header) else {
        return Range::Full;
    };
    let text = text.trim();
    let Some(set) = text
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| &text[6..])
    else {
        return Range::Full;
    };
    // More than one range: a multipart/byteranges answer is not worth it.
    if set.contains(',') {
        return Range::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return Range::Full;
    };
    let number = |s: &str| parse_decimal(s.trim().as_bytes());
    match (first.trim().is_empty(), number(first), number(last)) {
        // "-N": the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Range::Unsatisfiable
            } else {
                Range::Part {
                    start: size.saturating_sub(n),
                    end: size - 1,
                }
            }
        }
        (false, Some(start), end) if last.trim().is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Range::Full;
            }
            if start >= size {
                return Range::Unsatisfiable;
            }
            let end = end.map_or(size - 1, |e| e.min(size - 1));
            Range::Part { start, end }
        }
        _ => Range::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Range};

    fn part(start: u64, end: u64) -> Range {
        Range::Part { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(parse(b"bytes=0-99", 1000), part(0, 99));
        assert_eq!(parse(b"bytes=500-", 1000), part(500, 999));
        assert_eq!(parse(b"bytes=-100", 1000), part(900, 999));
        assert_eq!(parse(b"bytes=-5000", 1000), part(0, 999));
        assert_eq!(parse(b"bytes=990-5000", 1000), part(990, 999));
        assert_eq!(parse(b"Bytes = 1-1", 1000), Range::Full);
        assert_eq!(parse(b"BYTES=1-1", 1000), part(1, 1));
    }

    #[test]
    fn out_of_the_file_is_unsatisfiable() {
        assert_eq!(parse(b"bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(parse(b"bytes=-1", 0), Range::Unsatisfiable);
    }

    #[test]
    fn what_we_do_not_read_is_ignored() {
        for h in [
            &b"bytes=0-1,5-6"[..],
            b"items=0-1",
            b"bytes=5-1",
            b"bytes=a-b",
            b"bytes=-",
            b"bytes=+1-2",
            b"bytes=1",
            b"",
            b"bytes=99999999999999999999-",
        ] {
            assert_eq!(
                parse(h, 1000),
                Range::Full,
                "{:?}",
                String::from_utf8_lossy(h)
            );
        }
    }
}
