//! What the environ shows of a TLS client certificate: its subject as an
//! RFC 4514 string, and the certificate as PEM (RFC 7468). Reads just
//! enough DER (X.690) to find the subject; verifying certificates is
//! rustls's job, never this module's.

/// One DER element: its tag and its contents.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    /// The whole element, tag and length included.
    whole: &'a [u8],
}

/// The element at the front of `buf`, and what follows it. Definite
/// lengths only, as DER requires; `None` for anything malformed.
fn next(buf: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let head = buf.len() - rest.len();
    let (body, after) = rest.split_at(len);
    let whole = &buf[..head + len];
    Some((Tlv { tag, body, whole }, after))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// tbsCertificate's `[0] EXPLICIT Version`.
const VERSION: u8 = 0xa0;

/// The subject of a DER certificate, RFC 4514 style: most specific first,
/// "CN=client,OU=dev,O=Example". `None` when the DER cannot be read.
pub fn subject_dn(cert: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version,
    //   serialNumber, signature, issuer, validity, subject, ... }, ... }
    let (cert, _) = next(cert).filter(|(t, _)| t.tag == SEQUENCE)?;
    let (tbs, _) = next(cert.body).filter(|(t, _)| t.tag == SEQUENCE)?;
    let mut rest = tbs.body;
    let mut field = 0;
    loop {
        let (tlv, after) = next(rest)?;
        rest = after;
        if tlv.tag == VERSION && field == 0 {
            continue;
        }
        // serial, signature, issuer, validity, then the subject.
        if field == 4 {
            return (tlv.tag == SEQUENCE).then(|| name(tlv.body)).flatten();
        }
        field += 1;
    }
}

/// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF
/// AttributeTypeAndValue), written last RDN first (RFC 4514 section 2.1).
fn name(mut rdns: &[u8]) -> Option<String> {
    let mut parts = Vec::new();
    while !rdns.is_empty() {
        let (set, after) = next(rdns).filter(|(t, _)| t.tag == SET)?;
        rdns = after;
        let mut avas = Vec::new();
        let mut rest = set.body;
        while !rest.is_empty() {
            let (ava, after) = next(rest).filter(|(t, _)| t.tag == SEQUENCE)?;
            rest = after;
            let (oid, value) = next(ava.body).filter(|(t, _)| t.tag == OID)?;
            let (value, _) = next(value)?;
            avas.push(attribute(oid.body, &value));
        }
        parts.push(avas.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

/// "TYPE=value": a short name for the usual types (RFC 4514 section 3),
/// else the dotted OID with the value as `#` and its DER in hex.
fn attribute(oid: &[u8], value: &Tlv<'_>) -> String {
    let short = match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x09] => Some("STREET"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => Some("DC"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => Some("UID"),
        _ => None,
    };
    match (short, text(value)) {
        (Some(short), Some(text)) => format!("{short}={}", escape(&text)),
        (short, _) => {
            let name = short.map_or_else(|| dotted(oid), str::to_owned);
            let hex: String = value.whole.iter().map(|b| format!("{b:02x}")).collect();
            format!("{name}=#{hex}")
        }
    }
}

/// A directory string's text; `None` for types without a text form.
fn text(value: &Tlv<'_>) -> Option<String> {
    match value.tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => String::from_utf8(value.body.to_vec()).ok(),
        // TeletexString: latin-1 in practice.
        0x14 => Some(value.body.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UCS-2, big-endian.
        0x1e => {
            let pairs = value.body.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units = pairs.map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4: backslash before the characters that would end
/// or split the value, and before a leading '#' or space and a trailing space.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => out.push('\\'),
            '#' if i == 0 => out.push('\\'),
            ' ' if i == 0 || i == last => out.push('\\'),
            '\0' => {
                out.push_str("\\00");
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

/// An OID in dotted decimal (X.690 section 8.19).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for &b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    let text: Vec<String> = arcs.iter().map(u64::to_string).collect();
    text.join(".")
}

/// `der` as a PEM block with `label` (RFC 7468): base64 in 64-column lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = Vec::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]);
            } else {
                b64.push(b'=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.chunks(64) {
        // Only ASCII went into `b64`.
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else {
            out.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
        }
        out.extend_from_slice(body);
        out
    }

    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut body = tlv(OID, oid);
        body.extend(tlv(tag, value));
        tlv(SET, &tlv(SEQUENCE, &body))
    }

    /// A certificate shell with `subject` in its place; the other fields
    /// are stand-ins of the right shape.
    fn cert(subject: &[u8], with_version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(tlv(VERSION, &tlv(0x02, &[2])));
        }
        tbs.extend(tlv(0x02, &[0x01, 0x02]));
        tbs.extend(tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48])));
        tbs.extend(tlv(SEQUENCE, &ava(&[0x55, 0x04, 0x03], 0x0c, b"issuer")));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, subject));
        tbs.extend(tlv(SEQUENCE, &[])); // subjectPublicKeyInfo
        tlv(SEQUENCE, &tlv(SEQUENCE, &tbs))
    }

    #[test]
    fn subject_is_written_most_specific_first() {
        let mut subject = ava(&[0x55, 0x04, 0x06], 0x13, b"DE");
        subject.extend(ava(&[0x55, 0x04, 0x0a], 0x0c, b"Example"));
        subject.extend(ava(&[0x55, 0x04, 0x03], 0x0c, b"client"));
        for with_version in [true, false] {
            let dn = subject_dn(&cert(&subject, with_version));
            assert_eq!(dn.as_deref(), Some("CN=client,O=Example,C=DE"));
        }
    }

    #[test]
    fn special_characters_in_values_are_escaped() {
        let subject = ava(&[0x55, 0x04, 0x03], 0x0c, b" a,b+c=\"d\" ");
        assert_eq!(
            subject_dn(&cert(&subject, true)).as_deref(),
            Some("CN=\\ a\\,b\\+c=\\\"d\\\"\\ ")
        );
        let subject = ava(&[0x55, 0x04, 0x03], 0x0c, b"#x");
        assert_eq!(
            subject_dn(&cert(&subject, true)).as_deref(),
            Some("CN=\\#x")
        );
    }

    #[test]
    fn unknown_types_are_dotted_oids_with_hex_values() {
        // 1.2.840.113549.1.9.1 (emailAddress), an IA5String.
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let subject = ava(&oid, 0x16, b"a@b");
        assert_eq!(
            subject_dn(&cert(&subject, true)).as_deref(),
            Some("1.2.840.113549.1.9.1=#1603614062")
        );
    }

    #[test]
    fn bmp_strings_are_decoded() {
        let subject = ava(&[0x55, 0x04, 0x03], 0x1e, &[0x00, 0x41, 0x00, 0xe9]);
        assert_eq!(subject_dn(&cert(&subject, true)).as_deref(), Some("CN=Aé"));
    }

    #[test]
    fn malformed_der_gives_none_at_every_cut() {
        let full = cert(&ava(&[0x55, 0x04, 0x03], 0x0c, b"client"), true);
        for cut in 0..full.len() {
            assert_eq!(subject_dn(&full[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject_dn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_dn(&[]), None);
    }

    #[test]
    fn pem_is_base64_in_64_column_lines() {
        assert_eq!(pem("X", b""), "-----BEGIN X-----\n-----END X-----\n");
        assert_eq!(
            pem("CERTIFICATE", b"hello"),
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"
        );
        let long = pem("C", &[0xffu8; 50]);
        let lines: Vec<&str> = long.lines().collect();
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "//8=");
        assert_eq!(
            pem("C", b"ab"),
            "-----BEGIN C-----\nYWI=\n-----END C-----\n"
        );
    }
}
