//! The typed errors of request parsing; each one knows the HTTP status it is answered with.

use std::fmt;

/// Why a request was refused before the app saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Malformed request line, header, framing or chunk syntax (400).
    BadRequest(&'static str),
    /// Request line longer than `limit_request_line` (414).
    UriTooLong,
    /// Too many header fields, or one longer than `limit_request_field_size` (431).
    HeaderFieldsTooLarge(&'static str),
    /// A Transfer-Encoding we do not implement (501).
    NotImplemented(&'static str),
    /// An HTTP major version other than 1 (505); a higher 1.x minor is served as 1.1.
    VersionNotSupported,
    /// Body larger than allowed (413).
    PayloadTooLarge,
    /// The head or body did not arrive in time (408, RFC 9110 section 15.5.9).
    RequestTimeout,
    /// Something only a trusted peer may send, from another (403).
    Forbidden(&'static str),
}

impl ProtoError {
    pub fn status(&self) -> u16 {
        match self {
            ProtoError::BadRequest(_) => 400,
            ProtoError::UriTooLong => 414,
            ProtoError::HeaderFieldsTooLarge(_) => 431,
            ProtoError::NotImplemented(_) => 501,
            ProtoError::VersionNotSupported => 505,
            ProtoError::PayloadTooLarge => 413,
            ProtoError::RequestTimeout => 408,
            ProtoError::Forbidden(_) => 403,
        }
    }

    /// The status line's reason phrase.
    pub fn reason(&self) -> &'static str {
        match self {
            ProtoError::BadRequest(_) => "Bad Request",
            ProtoError::UriTooLong => "URI Too Long",
            ProtoError::HeaderFieldsTooLarge(_) => "Request Header Fields Too Large",
            ProtoError::NotImplemented(_) => "Not Implemented",
            ProtoError::VersionNotSupported => "HTTP Version Not Supported",
            ProtoError::PayloadTooLarge => "Payload Too Large",
            ProtoError::RequestTimeout => "Request Timeout",
            ProtoError::Forbidden(_) => "Forbidden",
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::BadRequest(why) => write!(f, "bad request: {why}"),
            ProtoError::UriTooLong => f.write_str("request line too long"),
            ProtoError::HeaderFieldsTooLarge(why) => write!(f, "header fields too large: {why}"),
            ProtoError::NotImplemented(why) => write!(f, "not implemented: {why}"),
            ProtoError::VersionNotSupported => f.write_str("HTTP version not supported"),
            ProtoError::PayloadTooLarge => f.write_str("request body too large"),
            ProtoError::RequestTimeout => f.write_str("request not received in time"),
            ProtoError::Forbidden(why) => write!(f, "forbidden: {why}"),
        }
    }
}

impl std::error::Error for ProtoError {}
