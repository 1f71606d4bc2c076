//! Reading request bodies off the connection: in full before the app is
//! called when small, else pumped into the app's `wsgi.input` as it reads.
//! Framing rules come from oxgate-proto; this module only moves bytes.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use oxgate_proto::{BodyFraming, ChunkedDecoder, DecodeStep, ProtoError, RequestHead};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::handler::{BodyBuffer, BodyError, BodyStream, Handler, RequestBody};
use crate::server::Settings;
use crate::stream::Stream;

/// Largest piece handed to the app in one message.
const PIECE: usize = 64 * 1024;
/// Pieces in flight between the connection (either version) and the app.
const DEPTH: usize = 4;

enum Kind {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// What reading ahead of the app found.
pub enum Prepared {
    Ready(RequestBody),
    /// Still arriving: the pump feeds the stream while the app runs.
    Streaming(RequestBody, Pump),
}

/// Read a small body whole before the app runs, so a slow upload never
/// holds a Python thread. Streams when the body is larger than the body
/// buffer or the client waits for `100 Continue`.
pub async fn prepare(
    stream: &mut Stream,
    buf: &mut BytesMut,
    head: &RequestHead,
    settings: &Settings,
    handler: &dyn Handler,
) -> Result<Prepared, ProtoError> {
    let (limit, max_body, wait) = (
        settings.body_buffer,
        settings.max_body,
        settings.body_timeout,
    );
    let max_line = settings.limits.max_header_size.max(1024);
    let kind = match head.framing {
        BodyFraming::None | BodyFraming::Length(0) => {
            return Ok(Prepared::Ready(RequestBody::Full(Bytes::new())))
        }
        // Refused before the app runs and before any `100 Continue`.
        BodyFraming::Length(n) if max_body.is_some_and(|max| n > max) => {
            return Err(ProtoError::PayloadTooLarge)
        }
        BodyFraming::Length(n) => Kind::Length(n),
        BodyFraming::Chunked => Kind::Chunked(ChunkedDecoder::new(max_line)),
    };
    if head.expect_continue {
        let pump = kind.into_pump(max_body.unwrap_or(u64::MAX));
        return Ok(streaming(pump, Bytes::new(), true));
    }
    if let Kind::Length(n) = kind {
        if let Some(n) = usize::try_from(n).ok().filter(|n| *n <= limit) {
            // Exactly the body's length, or the read would take bytes of
            // the next request (or leave some of this body for it).
            if let Some(lent) = handler.body_buffer(n).filter(|b| b.len() == n) {
                return read_lent(stream, buf, lent, wait).await;
            }
            return read_whole(stream, buf, n, wait).await;
        }
    }
    let mut pump = kind.into_pump(max_body.unwrap_or(u64::MAX));
    let mut collected = BytesMut::new();
    loop {
        match pump.decode(buf)? {
            Piece::Data(data) => {
                collected.extend_from_slice(&data);
                if collected.len() > limit {
                    return Ok(streaming(pump, collected.freeze(), false));
                }
            }
            Piece::End => return Ok(Prepared::Ready(RequestBody::Full(collected.freeze()))),
            Piece::NeedMore => {
                if let Kind::Length(n) = pump.kind {
                    if collected.len() as u64 + n > limit as u64 {
                        return Ok(streaming(pump, collected.freeze(), false));
                    }
                }
                match timeout(wait, stream.read_buf(buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => return Err(ProtoError::BadRequest("incomplete request body")),
                    // --body-timeout: the body stalled.
                    Err(_) => return Err(ProtoError::RequestTimeout),
                }
            }
        }
    }
}

/// A body of `n` bytes that fits the body buffer: read into the
/// connection's buffer with room for all of it (a few large reads rather
/// than many small ones) and split off without copying.
async fn read_whole(
    stream: &mut Stream,
    buf: &mut BytesMut,
    n: usize,
    wait: Duration,
) -> Result<Prepared, ProtoError> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        match timeout(wait, stream.read_buf(buf)).await {
            Ok(Ok(got)) if got > 0 => {}
            Ok(_) => return Err(ProtoError::BadRequest("incomplete request body")),
            // --body-timeout: the body stalled.
            Err(_) => return Err(ProtoError::RequestTimeout),
        }
    }
    Ok(Prepared::Ready(RequestBody::Full(buf.split_to(n).freeze())))
}

/// A body into memory the handler lent: what the connection buffer holds
/// of it is copied over, the rest is read straight into it.
async fn read_lent(
    stream: &mut Stream,
    buf: &mut BytesMut,
    mut lent: Box<dyn BodyBuffer>,
    wait: Duration,
) -> Result<Prepared, ProtoError> {
    let mut space = ReadBuf::uninit(lent.space());
    let have = buf.len().min(space.capacity());
    space.put_slice(&buf[..have]);
    buf.advance(have);
    while space.remaining() > 0 {
        let before = space.filled().len();
        let read = poll_fn(|cx| Pin::new(&mut *stream).poll_read(cx, &mut space));
        match timeout(wait, read).await {
            Ok(Ok(())) if space.filled().len() > before => {}
            Ok(_) => return Err(ProtoError::BadRequest("incomplete request body")),
            // --body-timeout: the body stalled.
            Err(_) => return Err(ProtoError::RequestTimeout),
        }
    }
    Ok(Prepared::Ready(RequestBody::Lent(lent)))
}

fn streaming(pump: Pump, first: Bytes, expect_continue: bool) -> Prepared {
    let (body, feed) = Feed::open(first, expect_continue);
    Prepared::Streaming(body, Pump { feed, ..pump })
}

/// The I/O side's end of a body streamed into `wsgi.input`: the channel the
/// pieces go down, and, while the client waits for `100 Continue`, the wait
/// for the app's first read. Shared by the HTTP/1 and HTTP/2 pumps.
pub(crate) struct Feed {
    tx: Option<mpsc::Sender<Result<Bytes, BodyError>>>,
    /// Set while the app has not asked for the body of an
    /// `Expect: 100-continue` request.
    waiting: Option<oneshot::Receiver<()>>,
}

/// Room for one piece on its way to the app.
pub(crate) type Room = mpsc::OwnedPermit<Result<Bytes, BodyError>>;

impl Feed {
    /// Nothing to feed (yet): a body read whole.
    pub(crate) fn closed() -> Self {
        Feed {
            tx: None,
            waiting: None,
        }
    }

    /// The app's stream, with `first` already in it, and its feed.
    pub(crate) fn open(first: Bytes, expect_continue: bool) -> (RequestBody, Feed) {
        let (tx, rx) = mpsc::channel(DEPTH + 1);
        if !first.is_empty() {
            // A fresh channel has room for it.
            let _ = tx.try_send(Ok(first));
        }
        let (want_tx, want_rx) = oneshot::channel();
        let (want, waiting) = if expect_continue {
            (Some(want_tx), Some(want_rx))
        } else {
            (None, None)
        };
        let body = RequestBody::Stream(BodyStream {
            rx,
            want,
            done: false,
        });
        let feed = Feed {
            tx: Some(tx),
            waiting,
        };
        (body, feed)
    }

    /// Pieces may still go to the app, or it may still ask for them.
    pub(crate) fn active(&self) -> bool {
        self.tx.is_some() || self.waiting.is_some()
    }

    /// The client still waits for `100 Continue` and has sent no body.
    pub(crate) fn awaiting_continue(&self) -> bool {
        self.waiting.is_some()
    }

    /// Room for the next piece. `Err`: the app asked for the body (send
    /// `100 Continue`) or let go of it. Cancel-safe.
    pub(crate) async fn room(&mut self) -> Result<Room, Step> {
        if let Some(waiting) = &mut self.waiting {
            let asked = waiting.await.is_ok();
            self.waiting = None;
            if !asked {
                self.tx = None;
                return Err(Step::Abandoned);
            }
            return Err(Step::Continue);
        }
        let Some(tx) = self.tx.clone() else {
            return Err(Step::Abandoned);
        };
        match tx.reserve_owned().await {
            Ok(room) => Ok(room),
            Err(_) => {
                self.tx = None;
                Err(Step::Abandoned)
            }
        }
    }

    /// No more pieces: the body ended, failed, or the app let go.
    pub(crate) fn close(&mut self) {
        self.tx = None;
    }
}

impl Kind {
    fn into_pump(self, max: u64) -> Pump {
        Pump {
            kind: self,
            feed: Feed::closed(),
            finished: false,
            failed: false,
            seen: 0,
            max,
        }
    }
}

enum Piece {
    Data(Bytes),
    End,
    NeedMore,
}

/// Moves a body from the socket to the app, one piece per `step`.
pub struct Pump {
    kind: Kind,
    feed: Feed,
    finished: bool,
    failed: bool,
    /// Body bytes decoded so far, and the most allowed (--limit-request-body).
    seen: u64,
    max: u64,
}

pub enum Step {
    /// The app asked for the body: send `100 Continue` now.
    Continue,
    Progress,
    /// The app let go of wsgi.input; stop pumping.
    Abandoned,
    /// The body broke a rule or a limit midway: answer with its status if
    /// nothing was sent yet, and close.
    Refused(ProtoError),
}

impl Pump {
    /// The connection cannot be reused: the body's end is unknown.
    pub fn spoiled(&self) -> bool {
        self.failed || (!self.finished && self.feed.awaiting_continue())
    }

    /// The client still waits for `100 Continue` and has sent no body.
    pub fn awaiting_continue(&self) -> bool {
        self.feed.awaiting_continue()
    }

    /// Is there anything left for `step` to do?
    pub fn active(&self) -> bool {
        !self.failed && self.feed.active()
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Piece, ProtoError> {
        let piece = self.decode_framing(buf)?;
        if let Piece::Data(d) = &piece {
            self.seen += d.len() as u64;
            if self.seen > self.max {
                return Err(ProtoError::PayloadTooLarge);
            }
        }
        Ok(piece)
    }

    fn decode_framing(&mut self, buf: &mut BytesMut) -> Result<Piece, ProtoError> {
        match &mut self.kind {
            Kind::Length(0) => {
                self.finished = true;
                Ok(Piece::End)
            }
            Kind::Length(left) => {
                if buf.is_empty() {
                    return Ok(Piece::NeedMore);
                }
                let n = buf
                    .len()
                    .min(PIECE)
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                Ok(Piece::Data(buf.split_to(n).freeze()))
            }
            Kind::Chunked(dec) => {
                let (used, step) = dec.decode(buf)?;
                let piece = match step {
                    DecodeStep::Data(d) => Piece::Data(Bytes::copy_from_slice(d)),
                    DecodeStep::Done => {
                        self.finished = true;
                        Piece::End
                    }
                    DecodeStep::NeedMore => Piece::NeedMore,
                };
                buf.advance(used);
                // A decoder may consume framing without yielding data.
                if let (Piece::NeedMore, true) = (&piece, used > 0 && !buf.is_empty()) {
                    return self.decode_framing(buf);
                }
                Ok(piece)
            }
        }
    }

    /// Deliver the next piece to the app. Cancel-safe: dropping the future
    /// loses nothing (reads land in `buf`, sends happen only with a permit).
    pub async fn step(&mut self, stream: &mut Stream, buf: &mut BytesMut, wait: Duration) -> Step {
        let permit = match self.feed.room().await {
            Ok(room) => room,
            Err(step) => return step,
        };
        loop {
            let piece = match self.decode(buf) {
                Ok(piece) => piece,
                Err(e) => {
                    permit.send(Err(BodyError::Invalid(e.to_string())));
                    self.fail();
                    return Step::Refused(e);
                }
            };
            match piece {
                Piece::Data(d) => {
                    permit.send(Ok(d));
                    return Step::Progress;
                }
                Piece::End => {
                    permit.send(Ok(Bytes::new()));
                    self.feed.close();
                    return Step::Progress;
                }
                Piece::NeedMore => match timeout(wait, stream.read_buf(buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    Ok(_) => {
                        permit.send(Err(BodyError::Disconnected));
                        return self.fail();
                    }
                    Err(_) => {
                        permit.send(Err(BodyError::TimedOut));
                        self.fail();
                        return Step::Refused(ProtoError::RequestTimeout);
                    }
                },
            }
        }
    }

    fn fail(&mut self) -> Step {
        self.failed = true;
        self.feed.close();
        Step::Progress
    }

    /// After the response: read and discard what the app left unread, up
    /// to `limit` bytes, so the connection can serve the next request.
    /// Returns whether the connection is still usable.
    pub async fn drain(
        &mut self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        limit: u64,
        wait: Duration,
    ) -> bool {
        if self.finished {
            return true;
        }
        if self.spoiled() {
            return false;
        }
        if let Kind::Length(left) = self.kind {
            if left > limit {
                return false;
            }
        }
        let mut seen = 0u64;
        loop {
            match self.decode(buf) {
                Ok(Piece::End) => return true,
                Ok(Piece::Data(d)) => {
                    seen += d.len() as u64;
                    if seen > limit {
                        return false;
                    }
                }
                Ok(Piece::NeedMore) => match timeout(wait, stream.read_buf(buf)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return false,
                },
                Err(_) => return false,
            }
        }
    }
}
