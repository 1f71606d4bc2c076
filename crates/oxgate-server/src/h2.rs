//! One HTTP/2 connection (RFC 9113): the h2 crate does the framing, HPACK
//! and flow control; this module sets its limits, takes its streams and
//! gives each its own task (h2_stream.rs), and ends the connection when it
//! idles past --keep-alive or the worker stops (GOAWAY, in-flight streams
//! finish). Which connections are HTTP/2 is decided by the caller.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h2::Reason;
use oxgate_proto::Limits;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::handler::ConnInfo;
use crate::server::Shared;
use crate::stream::Stream;

/// The client connection preface's first line (RFC 9113 section 3.4). An
/// HTTP/1 parser reads it as a request line of version HTTP/2.0.
pub(crate) const PREFACE_LINE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// Window a stream starts with: what a client may send of a body before
/// the app reads it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Window of the whole connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Response bytes queued in h2 per stream beyond what the client's window
/// takes (the app's own buffer is --response-buffer).
const SEND_BUFFER: usize = 256 * 1024;
/// Largest header list accepted, whatever the field limits multiply to.
const MAX_HEADER_LIST: u32 = 1024 * 1024;
/// How often a connection that is to close looks whether its last frames
/// have left h2.
const FLUSH_CHECK: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether a connection that began with `buf` is an HTTP/2 client with
/// prior knowledge.
pub(crate) fn is_preface(buf: &[u8]) -> bool {
    buf.starts_with(PREFACE_LINE)
}

/// Serve the connection `stream`, whose first bytes were already read into
/// `read` (the preface, a PROXY header's leftovers), until it closes.
pub(crate) async fn serve(
    stream: Stream,
    read: BytesMut,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
) {
    let settings = &shared.settings;
    let io = Prefixed::new(read.freeze(), stream);
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(stream_limit(settings))
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_send_buffer_size(SEND_BUFFER)
        .max_header_list_size(header_list_limit(&settings.limits));
    let handshake = builder.handshake::<_, Bytes>(io);
    let peer = &info.peer_text.0;
    let mut conn = match tokio::time::timeout(settings.head_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return log::debug!("HTTP/2 handshake with {peer} failed: {e}"),
        Err(_) => {
            return log::debug!("HTTP/2 preface from {peer} not sent within --header-timeout")
        }
    };
    // Held by each stream's task: one strong count means none is running.
    // A task ending says so on `done`.
    let live = Arc::new(());
    let done = Arc::new(Notify::new());
    let mut stop = shared.shutdown_signal();
    // The first request has --header-timeout to come, as over HTTP/1.1;
    // after that, --keep-alive without any stream ends the connection.
    let idle = tokio::time::sleep(settings.head_timeout);
    tokio::pin!(idle);
    let mut idle_armed = true;
    // GOAWAY goes only once no stream is in flight, as one frame naming
    // the last stream taken (RFC 9113 section 6.8), and the connection
    // closes. h2's graceful form (GOAWAY at once, a PING, a second GOAWAY)
    // makes python-h2, httpx's HTTP/2, fail every request it has in flight
    // when the PING comes (python-hyper/h2#1199); this way their responses
    // are out first, and a request racing the GOAWAY is known unprocessed.
    let mut stop_pending = shared.shutting_down();
    // Closing is wanted: it happens once h2 has handed every frame of the
    // last streams to the socket (h2's one-frame GOAWAY drops what is still
    // queued), checked at each FLUSH_CHECK.
    let mut closing = false;
    let mut closed = false;
    let mut check = tokio::time::interval(FLUSH_CHECK);
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((req, respond))) => {
                    idle_armed = false;
                    closing = false;
                    let (info, shared) = (info.clone(), shared.clone());
                    let (live, done) = (live.clone(), done.clone());
                    tokio::spawn(async move {
                        crate::h2_stream::serve(req, respond, info, shared).await;
                        drop(live);
                        done.notify_one();
                    });
                }
                Some(Err(e)) => {
                    log::debug!("HTTP/2 connection with {peer} ended: {e}");
                    break;
                }
                None => break,
            },
            _ = stop.changed(), if !stop_pending => {
                stop_pending = true;
                closing = Arc::strong_count(&live) == 1;
            }
            () = done.notified(), if !closed => {
                if Arc::strong_count(&live) == 1 {
                    if stop_pending {
                        closing = true;
                    } else {
                        idle.as_mut().reset(tokio::time::Instant::now() + settings.keepalive);
                        idle_armed = true;
                    }
                }
            }
            () = &mut idle, if !closed && idle_armed => {
                idle_armed = false;
                closing = true;
            }
            _ = check.tick(), if closing && !closed => {
                if Arc::strong_count(&live) == 1 && !conn.has_streams() {
                    conn.abrupt_shutdown(Reason::NO_ERROR);
                    closed = true;
                }
            }
        }
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS: --http2-max-concurrent-streams, but
/// never more than the worker's request queue holds, so one connection
/// alone cannot fill it: past the limit a client keeps its requests (a
/// browser queues them), where past the queue each would get a 503.
fn stream_limit(settings: &crate::server::Settings) -> u32 {
    let queue = u32::try_from(settings.queue_size).unwrap_or(u32::MAX);
    settings.h2_max_streams.min(queue.max(1))
}

/// SETTINGS_MAX_HEADER_LIST_SIZE from the field limits (RFC 9113 section
/// 6.5.2 counts 32 bytes per field besides name and value); past it h2
/// answers 431 itself, and h2_head applies the limits exactly.
fn header_list_limit(limits: &Limits) -> u32 {
    let lim = limits.effective();
    let per_field = lim.max_header_size.saturating_add(32);
    let total = lim.max_headers.saturating_mul(per_field);
    u32::try_from(total)
        .unwrap_or(u32::MAX)
        .min(MAX_HEADER_LIST)
}

/// The connection with bytes already read from it put back in front, and
/// a check h2 does not make: the first frame after the preface must be
/// SETTINGS (RFC 9113 section 3.4).
struct Prefixed {
    read: Bytes,
    stream: Stream,
    /// Bytes handed to h2 so far, up to the end of the first frame header.
    seen: usize,
    first_frame: [u8; FRAME_HEADER],
}

/// The client preface's fixed part, then a frame header's length.
const MAGIC: usize = 24;
const FRAME_HEADER: usize = 9;

impl Prefixed {
    fn new(read: Bytes, stream: Stream) -> Self {
        Prefixed {
            read,
            stream,
            seen: 0,
            first_frame: [0; FRAME_HEADER],
        }
    }

    /// Look at `fresh`, the next bytes h2 gets, while they are the first
    /// frame's header.
    fn inspect(&mut self, fresh: &[u8]) -> io::Result<()> {
        let end = MAGIC + FRAME_HEADER;
        if self.seen >= end {
            return Ok(());
        }
        for &b in fresh.iter().take(end - self.seen) {
            if let Some(slot) = self.seen.checked_sub(MAGIC) {
                self.first_frame[slot] = b;
            }
            self.seen += 1;
        }
        // Type 0x4 SETTINGS, flags without ACK, stream 0.
        let f = &self.first_frame;
        let settings = f[3] == 0x4 && f[4] & 0x1 == 0 && f[5..] == [0, 0, 0, 0];
        if self.seen == end && !settings {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the first HTTP/2 frame is not SETTINGS (RFC 9113 section 3.4)",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if this.read.has_remaining() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
        } else {
            match Pin::new(&mut this.stream).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        Poll::Ready(this.inspect(&buf.filled()[before..]))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
