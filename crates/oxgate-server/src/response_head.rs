//! A response head as the app shaped it, kept in the bytes it goes out as:
//! the status line and the app's header lines are serialized once, when the
//! app hands them over, rather than kept as a string pair per header and
//! copied again. Checking them is the caller's job (oxgate_proto::response);
//! the lines the server owns (framing, Connection, Date, Server) are added
//! by write.rs.

use std::borrow::Cow;

use crate::request_id::{self, RequestId};

/// Status line and headers as the app gave them, minus the framing headers
/// the server owns (Content-Length, Transfer-Encoding, Connection).
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    /// `200 OK\r\n`, then `Name: value\r\n` per header, values as latin-1.
    wire: Vec<u8>,
    /// Where the status line's CRLF starts in `wire`.
    status_end: usize,
    pub(crate) has_date: bool,
    pub(crate) has_server: bool,
    /// The app's own Content-Length, honoured as the body's length.
    pub content_length: Option<u64>,
    /// The app asked for `Connection: close`.
    pub close: bool,
}

impl ResponseHead {
    /// A head with the whole WSGI status, e.g. "200 OK", and no headers yet.
    pub fn new(status: u16, status_line: &str) -> Self {
        let mut wire = Vec::with_capacity(128);
        wire.extend_from_slice(status_line.as_bytes());
        wire.extend_from_slice(b"\r\n");
        ResponseHead {
            status,
            wire,
            status_end: status_line.len(),
            has_date: false,
            has_server: false,
            content_length: None,
            close: false,
        }
    }

    /// Add a header line. `value`'s characters must be latin-1 (PEP 3333:
    /// they stand for the bytes sent) and neither may hold CR or LF.
    pub fn push_header(&mut self, name: &str, value: &str) {
        self.has_date |= name.eq_ignore_ascii_case("date");
        self.has_server |= name.eq_ignore_ascii_case("server");
        let out = &mut self.wire;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        if value.is_ascii() {
            out.extend_from_slice(value.as_bytes());
        } else {
            out.extend(
                value
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
            );
        }
        out.extend_from_slice(b"\r\n");
    }

    /// What the server adds to the app's head for its request, whichever
    /// the HTTP version: the request's id (--request-id) unless the app sent
    /// one, and for HEAD the length a GET would have had (`known`, when the
    /// server knows it).
    #[inline]
    pub(crate) fn stamp(
        &mut self,
        request_id: Option<&RequestId>,
        is_head: bool,
        known: Option<u64>,
    ) {
        if let Some(id) = request_id {
            if !self.has_header(request_id::HEADER) {
                self.push_header(request_id::HEADER, id.as_str());
            }
        }
        if is_head && self.content_length.is_none() {
            self.content_length = known;
        }
    }

    /// Whether the app sent a header `name` (any case).
    pub fn has_header(&self, name: &str) -> bool {
        let lines = self.wire.get(self.status_end + 2..).unwrap_or_default();
        lines.split(|&b| b == b'\n').any(|line| {
            line.get(..name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                && line.get(name.len()) == Some(&b':')
        })
    }

    /// The whole WSGI status, e.g. "200 OK".
    pub fn status_line(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.wire[..self.status_end])
    }

    /// The status line and header lines, each ending in CRLF.
    pub(crate) fn wire(&self) -> &[u8] {
        &self.wire
    }

    /// The app's headers as they go out: name and value bytes (latin-1).
    pub(crate) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let lines = self.wire.get(self.status_end + 2..).unwrap_or_default();
        lines.split(|&b| b == b'\n').filter_map(|line| {
            let line = line.strip_suffix(b"\r")?;
            let colon = line.iter().position(|&b| b == b':')?;
            Some((&line[..colon], line.get(colon + 2..).unwrap_or_default()))
        })
    }

    /// The app's headers as (name, value) pairs, for the access log.
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.fields()
            .map(|(name, value)| {
                let name = String::from_utf8_lossy(name).into_owned();
                (name, value.iter().map(|&b| char::from(b)).collect())
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::ResponseHead;

    #[test]
    fn headers_go_out_as_given_and_come_back_as_pairs() {
        let mut head = ResponseHead::new(200, "200 OK");
        head.push_header("Content-Type", "text/plain");
        head.push_header("X-Latin", "caf\u{e9}");
        head.push_header("X-Empty", "");
        assert_eq!(
            head.wire(),
            b"200 OK\r\nContent-Type: text/plain\r\nX-Latin: caf\xe9\r\nX-Empty: \r\n"
        );
        assert_eq!(head.status_line(), "200 OK");
        assert_eq!(
            head.header_pairs(),
            [
                ("Content-Type".to_owned(), "text/plain".to_owned()),
                ("X-Latin".to_owned(), "caf\u{e9}".to_owned()),
                ("X-Empty".to_owned(), String::new()),
            ]
        );
        assert!(!head.has_date && !head.has_server);
    }

    #[test]
    fn an_app_date_or_server_header_is_noticed_in_any_case() {
        let mut head = ResponseHead::new(204, "204 No Content");
        head.push_header("date", "Sun, 06 Dec 2026 00:00:00 GMT");
        head.push_header("SERVER", "mine");
        assert!(head.has_date && head.has_server);
        assert!(head.has_header("Server") && head.has_header("DATE"));
        assert!(!head.has_header("Serve") && !head.has_header("X-Request-ID"));
        assert!(head
            .header_pairs()
            .iter()
            .any(|(n, v)| n == "SERVER" && v == "mine"));
    }
}
