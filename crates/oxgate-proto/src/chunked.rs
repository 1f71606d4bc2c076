//! The chunked transfer-coding decoder (RFC 9112 section 7.1), sans-I/O: a
//! byte-at-a-time state machine for framing, zero-copy slices for data. It
//! never buffers and never reads a socket; the caller feeds what it has.

use crate::error::ProtoError;
use crate::head::MAX_HEADER_SIZE_UNLIMITED;
use crate::syntax::{is_field_value_byte, is_ows, is_tchar};

/// How many trailer fields we read (and discard) before refusing.
const MAX_TRAILERS: usize = 100;

/// One step of decoding: how far into the input it got and what it found.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeStep<'a> {
    /// Body bytes (a sub-slice of the input).
    Data(&'a [u8]),
    /// The last chunk and the trailer section are read; the body is over.
    Done,
    /// The input ends inside framing; call again with more bytes.
    NeedMore,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    max_line: usize,
    /// Bytes of the current chunk-size or trailer line so far (CRLF excluded).
    line_len: usize,
    /// The size of the chunk whose size line is being read.
    size: u64,
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `chunk-size = 1*HEXDIG`; `any` once a digit was seen.
    Size {
        any: bool,
    },
    /// Inside `chunk-ext` (see `Ext`).
    Ext(Ext),
    /// CR of the chunk-size line seen.
    SizeLf,
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line or the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    /// An error was returned; the stream cannot be resynchronised.
    Failed,
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
/// (RFC 9112 section 7.1.1). Every position is tracked so that only the
/// grammar passes: a lenient extension parser is where CR/LF confusions hide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// BWS after the size: only ';' may follow.
    AfterSize,
    /// After ';' and BWS, before the name.
    BeforeName,
    Name,
    /// BWS after the name: '=' or ';' must follow.
    AfterName,
    /// After '=' and BWS.
    BeforeValue,
    Token,
    Quoted,
    QuotedEscape,
    /// Just after the closing quote of a value.
    QuotedEnd,
    /// BWS after a value: ';' must follow.
    AfterValue,
}

const fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadRequest(why)
}

impl ChunkedDecoder {
    /// `max_line` bounds chunk-size lines and trailer lines.
    pub fn new(max_line: usize) -> Self {
        // 0 means "no configured limit", which still needs a bound.
        let max_line = if max_line == 0 {
            MAX_HEADER_SIZE_UNLIMITED
        } else {
            max_line
        };
        ChunkedDecoder {
            state: State::Size { any: false },
            max_line,
            line_len: 0,
            size: 0,
            trailers: 0,
        }
    }

    /// True once the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input`; returns the bytes consumed and the step.
    ///
    /// `consumed` counts framing bytes and, for `Data`, the data returned, so
    /// the caller drops `input[..consumed]` and calls again with the rest.
    /// `Data` is never empty and always ends exactly at `consumed` (it is
    /// `input[consumed - data.len()..consumed]`), so a caller holding the
    /// input in a `BytesMut` can split the data off without copying.
    /// `NeedMore` may come with `consumed > 0` (framing bytes eaten). `Done`
    /// counts the final CRLF; bytes after it (a pipelined request) are left
    /// alone. Further calls then return `(0, Done)`. After an error the
    /// decoder stays failed.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, DecodeStep<'a>), ProtoError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Done => return Ok((pos, DecodeStep::Done)),
                State::Failed => return Err(bad("chunked body already failed")),
                State::Data { remaining } => {
                    let rest = input.get(pos..).unwrap_or_default();
                    if rest.is_empty() {
                        return Ok((pos, DecodeStep::NeedMore));
                    }
                    let take = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok((pos + take, DecodeStep::Data(&rest[..take])));
                }
                _ => {
                    let Some(&b) = input.get(pos) else {
                        return Ok((pos, DecodeStep::NeedMore));
                    };
                    if let Err(e) = self.step(b) {
                        self.state = State::Failed;
                        return Err(e);
                    }
                    pos += 1;
                }
            }
        }
    }

    /// Advance the framing state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), ProtoError> {
        let in_size_line = matches!(self.state, State::Size { .. } | State::Ext(_));
        let in_trailer_line = matches!(self.state, State::TrailerName | State::TrailerValue);
        if (in_size_line || in_trailer_line) && b != b'\r' {
            self.line_len += 1;
            if self.line_len > self.max_line {
                return Err(if in_size_line {
                    bad("chunk-size line too long")
                } else {
                    ProtoError::HeaderFieldsTooLarge("trailer field line too long")
                });
            }
        }
        self.state = match self.state {
            State::Size { any } => self.size_byte(any, b)?,
            State::Ext(ext) => ext_byte(ext, b)?,
            State::SizeLf => {
                expect_lf(b)?;
                self.line_len = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data {
                        remaining: self.size,
                    }
                }
            }
            // RFC 9112 section 7.1: chunk-data is followed by exactly CRLF;
            // anything else means the size lied, and we stop.
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataCr => return Err(bad("chunk data not followed by CRLF")),
            State::DataLf => {
                expect_lf(b)?;
                self.size = 0;
                State::Size { any: false }
            }
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                _ if is_tchar(b) => {
                    if self.trailers >= MAX_TRAILERS {
                        return Err(ProtoError::HeaderFieldsTooLarge("too many trailer fields"));
                    }
                    self.line_len = 1;
                    State::TrailerName
                }
                b' ' | b'\t' => return Err(bad("obsolete line folding in trailer")),
                _ => return Err(bad("invalid trailer field")),
            },
            State::TrailerName => match b {
                b':' => State::TrailerValue,
                _ if is_tchar(b) => State::TrailerName,
                _ => return Err(bad("invalid trailer field name")),
            },
            State::TrailerValue => match b {
                b'\r' => State::TrailerLf,
                _ if is_field_value_byte(b) => State::TrailerValue,
                _ => return Err(bad("control character in trailer value")),
            },
            State::TrailerLf => {
                expect_lf(b)?;
                self.trailers += 1;
                State::TrailerStart
            }
            State::FinalLf => {
                expect_lf(b)?;
                State::Done
            }
            // decode() handles these without calling step().
            State::Data { .. } | State::Done | State::Failed => self.state,
        };
        Ok(())
    }

    fn size_byte(&mut self, any: bool, b: u8) -> Result<State, ProtoError> {
        if let Some(digit) = hex_value(b) {
            // More than 16 significant hex digits cannot fit a u64; leading
            // zeros are fine (bounded by max_line).
            if self.size > u64::MAX >> 4 {
                return Err(bad("chunk size overflows"));
            }
            self.size = (self.size << 4) | u64::from(digit);
            return Ok(State::Size { any: true });
        }
        if !any {
            return Err(bad("chunk-size is not a hex number"));
        }
        match b {
            b';' => Ok(State::Ext(Ext::BeforeName)),
            b' ' | b'\t' => Ok(State::Ext(Ext::AfterSize)),
            b'\r' => Ok(State::SizeLf),
            _ => Err(bad("invalid byte after chunk-size")),
        }
    }
}

/// One byte of a chunk extension. A CR may only end the line after a
/// complete name or value: no trailing BWS, since the grammar has none there.
fn ext_byte(ext: Ext, b: u8) -> Result<State, ProtoError> {
    let next = match (ext, b) {
        (Ext::Quoted, b'"') => Ext::QuotedEnd,
        (Ext::Quoted, b'\\') => Ext::QuotedEscape,
        // qdtext (RFC 9110 section 5.6.4): HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
        (Ext::Quoted, _) if is_field_value_byte(b) => Ext::Quoted,
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        (Ext::QuotedEscape, _) if is_field_value_byte(b) => Ext::Quoted,
        (Ext::Quoted | Ext::QuotedEscape, _) => return Err(bad("invalid quoted chunk extension")),

        (Ext::Name | Ext::Token | Ext::QuotedEnd, b'\r') => return Ok(State::SizeLf),
        (Ext::Name | Ext::Token, _) if is_tchar(b) => ext,
        (Ext::BeforeName, _) if is_tchar(b) => Ext::Name,
        (Ext::BeforeValue, b'"') => Ext::Quoted,
        (Ext::BeforeValue, _) if is_tchar(b) => Ext::Token,

        (Ext::Name | Ext::AfterName, b'=') => Ext::BeforeValue,
        (
            Ext::AfterSize
            | Ext::Name
            | Ext::AfterName
            | Ext::Token
            | Ext::QuotedEnd
            | Ext::AfterValue,
            b';',
        ) => Ext::BeforeName,
        (Ext::Name, _) if is_ows(b) => Ext::AfterName,
        (Ext::Token | Ext::QuotedEnd, _) if is_ows(b) => Ext::AfterValue,
        (
            Ext::AfterSize | Ext::BeforeName | Ext::AfterName | Ext::BeforeValue | Ext::AfterValue,
            _,
        ) if is_ows(b) => ext,
        _ => return Err(bad("invalid chunk extension")),
    };
    Ok(State::Ext(next))
}

fn expect_lf(b: u8) -> Result<(), ProtoError> {
    if b == b'\n' {
        Ok(())
    } else {
        Err(bad("bare CR in chunked framing"))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
