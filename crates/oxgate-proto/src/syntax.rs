//! Byte classes and tiny helpers of RFC 9110 syntax (tokens, field values, OWS,
//! lists, decimal lengths). Owns no decisions: callers say what a failure means.

/// tchar (RFC 9110 section 5.6.2):
/// `"!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA`.
const TCHAR: u8 = 1;
/// A byte allowed inside a field value (see `is_field_value_byte`).
const FIELD_VALUE: u8 = 2;
/// A byte of a request-target path that needs no second look: printable
/// ASCII but SP (ends the target), '?' (starts the query) and '#' (refused).
const PATH: u8 = 4;
/// The same inside the query, where '?' is plain data.
const QUERY: u8 = 8;
/// `unreserved / sub-delims` minus ',' (RFC 3986 section 3.2.2), the bytes
/// of a reg-name other than a pct-encoding.
const REG_NAME: u8 = 16;

/// Every class of every byte, so that the loops over a head cost one load
/// and one test per byte (`parse_head` runs on every request).
static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            )
        {
            class |= TCHAR;
        }
        if b == b'\t' || (b >= 0x20 && b != 0x7f) {
            class |= FIELD_VALUE;
        }
        if b > 0x20 && b < 0x7f && b != b'#' {
            class |= QUERY;
            if b != b'?' {
                class |= PATH;
            }
        }
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
            )
        {
            class |= REG_NAME;
        }
        table[i] = class;
        i += 1;
    }
    table
}

#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    CLASS[usize::from(b)] & TCHAR != 0
}

/// `token = 1*tchar` (RFC 9110 section 5.6.2).
#[inline]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte allowed inside a field value: field-vchar (VCHAR / obs-text), SP or
/// HTAB (RFC 9110 section 5.5). Everything else (NUL, CR, LF, other controls,
/// DEL) is refused: a recipient must not pass them on.
#[inline]
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & FIELD_VALUE != 0
}

/// How many bytes at the start of `s` are field-value bytes
/// (`is_field_value_byte`), eight at a time while no byte of the eight is a
/// control (HTAB included) or DEL: header values are most of a head's bytes.
pub(crate) fn field_value_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether some byte of `w` is below `n` (n <= 0x80): exact for "some",
    // though not for which (Bit Twiddling Hacks, "hasless").
    let has_less = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH != 0;
    let mut len = 0;
    for chunk in s.chunks_exact(8) {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let w = u64::from_ne_bytes(bytes);
        // A control, or DEL (the one byte that XOR 0x7f makes zero).
        if has_less(w, 0x20) || has_less(w ^ (ONES * 0x7f), 1) {
            break;
        }
        len += 8;
    }
    let rest = s.get(len..).unwrap_or_default();
    len + rest
        .iter()
        .position(|&b| !is_field_value_byte(b))
        .unwrap_or(rest.len())
}

/// A byte of an origin-form path (see `PATH`).
#[inline]
pub(crate) fn is_plain_path_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & PATH != 0
}

/// A byte of a query (see `QUERY`).
#[inline]
pub(crate) fn is_plain_query_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & QUERY != 0
}

/// A byte of a reg-name other than '%' (see `REG_NAME`).
#[inline]
pub(crate) fn is_reg_name_byte(b: u8) -> bool {
    CLASS[usize::from(b)] & REG_NAME != 0
}

#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Strip OWS (SP / HTAB) from both ends (RFC 9110 section 5.5: it is not part
/// of the field value).
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// The elements of a comma-separated list (RFC 9110 section 5.6.1), OWS trimmed.
/// Empty elements are yielded too, so callers can decide to refuse them.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `1*DIGIT` as a u64; None for an empty string, any other byte, or overflow.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tchar_table_matches_rfc_9110() {
        let specials = b"!#$%&'*+-.^_`|~";
        for b in 0u8..=255 {
            let want = b.is_ascii_alphanumeric() || specials.contains(&b);
            assert_eq!(is_tchar(b), want, "byte {b:#04x}");
        }
    }

    #[test]
    fn other_classes_match_their_definitions() {
        let sub_delims = b"!$&'()*+;=";
        for b in 0u8..=255 {
            let printable = (0x21..=0x7e).contains(&b);
            let value = b == b'\t' || (b >= 0x20 && b != 0x7f);
            assert_eq!(is_field_value_byte(b), value, "value byte {b:#04x}");
            let query = printable && b != b'#';
            assert_eq!(is_plain_query_byte(b), query, "query byte {b:#04x}");
            assert_eq!(is_plain_path_byte(b), query && b != b'?', "path {b:#04x}");
            let reg = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || sub_delims.contains(&b);
            assert_eq!(is_reg_name_byte(b), reg, "reg-name byte {b:#04x}");
        }
    }

    #[test]
    fn field_value_len_stops_at_the_first_byte_a_value_cannot_hold() {
        let base = b"a value of some length \x80\xff obs-text, more than sixteen bytes";
        let bytewise = |s: &[u8]| {
            s.iter()
                .position(|&b| !is_field_value_byte(b))
                .unwrap_or(s.len())
        };
        assert_eq!(field_value_len(base), base.len());
        for at in 0..base.len() {
            for b in 0u8..=255 {
                let mut s = base.to_vec();
                s[at] = b;
                assert_eq!(field_value_len(&s), bytewise(&s), "byte {b:#04x} at {at}");
                assert_eq!(field_value_len(&s[..at]), at);
            }
        }
    }

    #[test]
    fn trim_ows_strips_only_sp_and_htab() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b"\ra\n"), b"\ra\n");
    }

    #[test]
    fn parse_decimal_refuses_signs_spaces_and_overflow() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"007"), Some(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        for bad in [&b""[..], b"+1", b"-1", b" 1", b"1 ", b"0x1", b"1,1"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn list_elements_keeps_empty_elements() {
        let got: Vec<&[u8]> = list_elements(b"a, b ,,c").collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"", b"c"]);
    }
}
