//! Fuzz `ChunkedDecoder`: the same bytes fed whole, one at a time and in
//! splits chosen by the input decode to the same body and the same outcome,
//! `consumed` never passes the buffer, and what the decoder accepts is what a
//! naive reader of the same bytes sees (no body a proxy would frame otherwise).
//!
//! Input layout: byte 0 picks `max_line`, bytes 1..4 seed the splits, the
//! rest is the chunked body (fuzz/run prefixes corpus bodies with 4 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxgate_proto::{ChunkedDecoder, DecodeStep};

const CONTROL: usize = 4;

fuzz_target!(|input: &[u8]| {
    let (control, body) = input.split_at(input.len().min(CONTROL));
    let mut ctl = [0u8; CONTROL];
    ctl[..control.len()].copy_from_slice(control);
    // Small values make the line limits reachable; 0 is "no limit"; the rest
    // is what the server passes (max(limit_request_field_size, 1024)).
    let max_line = match ctl[0] {
        0..=40 => usize::from(ctl[0]),
        _ => 8190,
    };
    let seed = u32::from_le_bytes([ctl[1], ctl[2], ctl[3], 0x5a]);

    let whole = feed(body, max_line, &[body.len()]);
    let bytewise = feed(body, max_line, &vec![1; body.len()]);
    assert_eq!(whole, bytewise, "whole vs one byte at a time");
    let pieces = split(body.len(), seed);
    let split_run = feed(body, max_line, &pieces);
    assert_eq!(whole, split_run, "whole vs pieces {pieces:?}");

    // An accepted or unfinished body reads the same to a naive decoder; an
    // error needs no such agreement (the strict decoder refuses more).
    match (&whole.end, reference(body)) {
        (End::Done(at), Reference::Done(data, end)) => {
            assert_eq!(whole.data, data, "body differs from a naive read");
            assert_eq!(*at, end, "body ends elsewhere than a naive read says");
        }
        (End::NeedMore, Reference::Incomplete) | (End::Failed(_), _) => {}
        (end, naive) => panic!("decoder says {end:?}, naive reader says {naive:?}"),
    }
});

#[derive(Debug, PartialEq)]
enum End {
    /// The body ended this many bytes into the stream.
    Done(usize),
    /// The stream ran out inside the body.
    NeedMore,
    Failed(u16),
}

#[derive(Debug, PartialEq)]
struct Run {
    data: Vec<u8>,
    end: End,
}

/// Feed `body` in pieces of the given sizes the way the server does: append
/// what arrived to the unconsumed rest and decode until the decoder wants more.
fn feed(body: &[u8], max_line: usize, pieces: &[usize]) -> Run {
    let mut dec = ChunkedDecoder::new(max_line);
    let mut pending: Vec<u8> = Vec::new();
    let mut data = Vec::new();
    let mut offset = 0; // stream offset of pending[0]
    let mut arrived = 0;
    for &size in pieces {
        let size = size.min(body.len() - arrived);
        pending.extend_from_slice(&body[arrived..arrived + size]);
        arrived += size;
        loop {
            let len = pending.len();
            match dec.decode(&pending) {
                Ok((used, step)) => {
                    assert!(used <= len, "consumed {used} of {len}");
                    match step {
                        DecodeStep::Data(d) => {
                            assert!(!d.is_empty() && d.len() <= used, "Data of {}", d.len());
                            assert_eq!(d, &pending[used - d.len()..used], "Data not at the end");
                            data.extend_from_slice(d);
                        }
                        DecodeStep::Done => {
                            assert!(dec.is_done());
                            let end = offset + used;
                            // Done is sticky and eats nothing more.
                            assert_eq!(dec.decode(&pending[used..]), Ok((0, DecodeStep::Done)));
                            return Run {
                                data,
                                end: End::Done(end),
                            };
                        }
                        DecodeStep::NeedMore => {
                            // The decoder holds nothing back: all it was
                            // given is eaten, so the caller buffers nothing.
                            assert_eq!(used, len, "NeedMore left bytes unconsumed");
                            pending.clear();
                            offset += used;
                            break;
                        }
                    }
                    pending.drain(..used);
                    offset += used;
                }
                Err(e) => {
                    let status = e.status();
                    assert!(
                        matches!(status, 400 | 413 | 431),
                        "status {status} for {e:?}"
                    );
                    assert!(dec.decode(b"0\r\n\r\n").is_err(), "decoder recovered");
                    assert!(!dec.is_done());
                    return Run {
                        data,
                        end: End::Failed(status),
                    };
                }
            }
        }
    }
    assert!(!dec.is_done());
    Run {
        data,
        end: End::NeedMore,
    }
}

/// Piece sizes (1..=64) covering `len` bytes, from a xorshift seeded by the input.
fn split(len: usize, seed: u32) -> Vec<usize> {
    let mut x = seed;
    let mut pieces = Vec::new();
    let mut covered = 0;
    while covered < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let size = 1 + (x % 64) as usize;
        pieces.push(size);
        covered += size;
    }
    pieces
}

#[derive(Debug)]
enum Reference {
    Done(Vec<u8>, usize),
    Incomplete,
    Invalid,
}

/// The simplest reading of RFC 9112 section 7.1: a hex size up to the first
/// non-hex byte, everything else on the size line ignored, `size` bytes and
/// CRLF, then trailer lines until an empty one.
fn reference(buf: &[u8]) -> Reference {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let Some(eol) = find_crlf(buf, pos) else {
            return Reference::Incomplete;
        };
        let line = &buf[pos..eol];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Reference::Invalid;
        }
        let Some(size) = line[..digits].iter().try_fold(0u64, |acc, &b| {
            let d = u64::from((b as char).to_digit(16).unwrap_or(0));
            acc.checked_mul(16)?.checked_add(d)
        }) else {
            return Reference::Invalid;
        };
        pos = eol + 2;
        if size == 0 {
            break;
        }
        let Some(size) = usize::try_from(size).ok().filter(|&s| s <= buf.len() - pos) else {
            return Reference::Incomplete;
        };
        data.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        match buf.get(pos..pos + 2) {
            Some(b"\r\n") => pos += 2,
            Some(_) => return Reference::Invalid,
            None if buf.len() == pos || buf[pos..] == *b"\r" => return Reference::Incomplete,
            None => return Reference::Invalid,
        }
    }
    loop {
        let Some(eol) = find_crlf(buf, pos) else {
            return Reference::Incomplete;
        };
        if eol == pos {
            return Reference::Done(data, pos + 2);
        }
        pos = eol + 2;
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}
