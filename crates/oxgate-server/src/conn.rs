//! One connection's life: read a head, read or stream its body, hand the
//! request to the app side, write what comes back, then keep-alive or close
//! (RFC 9112 section 9). Protocol decisions come from oxgate-proto.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use oxgate_proto::response::response_framing;
use oxgate_proto::{parse_head, Parsed, ProtoError, RequestHead, ResponseFraming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::access_log::AccessEntry;
use crate::body::{prepare, Prepared, Pump, Step};
use crate::handler::{ConnInfo, Request, Responder, ResponseHead, ResponseMsg, ResponseRx};
use crate::server::Shared;
use crate::stream::Stream;
use crate::write::{chunk_header, simple_response, write_head};

/// Responses up to this size are copied into one write with their head.
const COALESCE: usize = 16 * 1024;
/// Unread body bytes we are willing to discard to keep a connection alive.
const DRAIN_LIMIT: u64 = 1024 * 1024;

pub async fn serve(mut stream: Stream, info: Arc<ConnInfo>, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut first = true;
    loop {
        let head = match read_head(&mut stream, &mut buf, &shared, first).await {
            Ok(Some(head)) => Arc::new(head),
            Ok(None) => return,
            Err(e) => {
                log::debug!("refusing request: {e}");
                let mut out = Vec::new();
                simple_response(&mut out, e.status(), e.reason(), &[], false);
                let _ = stream.write_all(&out).await;
                linger_close(stream).await;
                return;
            }
        };
        first = false;
        let started = Instant::now();
        let settings = &shared.settings;
        let prepared = prepare(&mut stream, &mut buf, &head, settings).await;
        let (body, pump) = match prepared {
            Ok(Prepared::Ready(body)) => (body, None),
            Ok(Prepared::Streaming(body, pump)) => (body, Some(pump)),
            Err(e) => {
                log::debug!("refusing request body: {e}");
                let mut out = Vec::new();
                simple_response(&mut out, e.status(), e.reason(), &[], false);
                let _ = stream.write_all(&out).await;
                linger_close(stream).await;
                return;
            }
        };
        let (responder, rx) = Responder::channel(shared.settings.response_buffer);
        let req = Request {
            head: head.clone(),
            body,
            conn: info.clone(),
            responder,
        };
        if shared.handler.call(req).is_err() {
            // Counted, and logged once a second by the worker: a line per
            // refusal would be a log storm exactly when the worker is busiest.
            shared.refused.fetch_add(1, Ordering::Relaxed);
            let mut out = Vec::new();
            simple_response(
                &mut out,
                503,
                "Service Unavailable",
                &[("Retry-After", "1")],
                false,
            );
            let _ = stream.write_all(&out).await;
            linger_close(stream).await;
            return;
        }
        let mut exchange = Exchange::new(&head);
        let ok = exchange.run(&mut stream, &mut buf, rx, pump, &shared).await;
        if exchange.timed_out {
            log::warn!(
                "{} {} got no response within {}s: answered 504 (the app thread is still busy)",
                head.method,
                head.path,
                shared.settings.request_timeout.map_or(0, |t| t.as_secs())
            );
        }
        if let Some(log) = &shared.access_log {
            log.write(&AccessEntry {
                head: &head,
                conn: &info,
                status: exchange.status,
                headers: &exchange.resp_headers,
                body_bytes: exchange.body_sent,
                started,
            });
        }
        if !ok {
            return;
        }
        if !exchange.keep_alive || shared.shutting_down() {
            let _ = stream.flush().await;
            linger_close(stream).await;
            return;
        }
    }
}

/// Read the next head. `Ok(None)`: the connection ended cleanly, idled
/// out, or the server is stopping between requests.
async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    shared: &Shared,
    first: bool,
) -> Result<Option<RequestHead>, ProtoError> {
    let settings = &shared.settings;
    let mut deadline = None;
    loop {
        if !buf.is_empty() {
            if let Parsed::Complete(head, used) = parse_head(buf, &settings.limits)? {
                let _ = buf.split_to(used);
                return Ok(Some(*head));
            }
        }
        let wait = if buf.is_empty() && !first {
            settings.keepalive
        } else {
            // The head timer starts at its first byte (or at accept).
            let d = *deadline.get_or_insert_with(|| Instant::now() + settings.head_timeout);
            d.saturating_duration_since(Instant::now())
        };
        let mut stopping = shared.shutdown_signal();
        // Between requests a stopping server closes idle connections; a
        // connection accepted just before the stop still gets its answer.
        let idle = buf.is_empty() && !first;
        tokio::select! {
            res = timeout(wait, stream.read_buf(buf)) => match res {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Ok(None),
                // --header-timeout with part of a head: say why (RFC 9110
                // section 15.5.9); a connection that sent nothing just closes.
                Err(_) if !buf.is_empty() => return Err(ProtoError::RequestTimeout),
                Err(_) => return Ok(None),
            },
            _ = stopping.wait_for(|s| *s), if idle => return Ok(None),
            _ = shared.pressure.notified(), if idle => return Ok(None),
        }
    }
}

/// The response half of one request.
struct Exchange {
    is_head: bool,
    version: oxgate_proto::Version,
    keep_alive: bool,
    status: u16,
    resp_headers: Vec<(String, String)>,
    framing: ResponseFraming,
    declared: Option<u64>,
    body_sent: u64,
    head_written: bool,
    /// The app did not start its response within --timeout.
    timed_out: bool,
    out: Vec<u8>,
}

impl Exchange {
    fn new(head: &RequestHead) -> Self {
        Exchange {
            is_head: head.method == "HEAD",
            version: head.version,
            keep_alive: head.keep_alive,
            status: 0,
            resp_headers: Vec::new(),
            framing: ResponseFraming::NoBody,
            declared: None,
            body_sent: 0,
            head_written: false,
            timed_out: false,
            out: Vec::with_capacity(1024),
        }
    }

    /// Drive the response to its end. Returns false when the connection
    /// is already unusable (write error, cut response).
    async fn run(
        &mut self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        mut rx: ResponseRx,
        mut pump: Option<Pump>,
        shared: &Shared,
    ) -> bool {
        let wait = shared.settings.body_timeout;
        // --timeout: past it with nothing sent, the client gets a 504 and
        // the app thread is left to the master (stack dump, recycling).
        let deadline = shared
            .settings
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        let mut ended = false;
        while !ended {
            let limit = deadline.filter(|_| !self.head_written);
            let next = async {
                match limit {
                    Some(at) => tokio::time::timeout_at(at, rx.recv()).await.ok(),
                    None => Some(rx.recv().await),
                }
            };
            let msg = match pump.as_mut().filter(|p| p.active()) {
                Some(p) => {
                    tokio::select! {
                        biased;
                        m = next => m,
                        step = p.step(stream, buf, wait) => {
                            match step {
                                Step::Continue => {
                                    if !self.head_written
                                        && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
                                    {
                                        return false;
                                    }
                                }
                                Step::Refused(e) => {
                                    if !self.head_written {
                                        log::debug!("refusing request body: {e}");
                                        self.status = e.status();
                                        self.keep_alive = false;
                                        self.out.clear();
                                        self.body_sent = simple_response(&mut self.out, e.status(), e.reason(), &[], false);
                                        let _ = self.flush(stream).await;
                                    }
                                    return false;
                                }
                                Step::Progress | Step::Abandoned => {}
                            }
                            continue;
                        }
                    }
                }
                None => next.await,
            };
            let Some(msg) = msg else {
                self.timed_out = true;
                self.status = 504;
                self.keep_alive = false;
                self.out.clear();
                self.body_sent = simple_response(&mut self.out, 504, "Gateway Timeout", &[], false);
                let _ = self.flush(stream).await;
                return false;
            };
            let Some(msg) = msg else {
                // The app side gave up without finishing the response.
                if self.head_written {
                    let _ = self.flush(stream).await;
                    return false;
                }
                self.status = 500;
                self.keep_alive = false;
                self.out.clear();
                self.body_sent =
                    simple_response(&mut self.out, 500, "Internal Server Error", &[], false);
                let _ = self.flush(stream).await;
                return false;
            };
            ended = matches!(msg, ResponseMsg::End | ResponseMsg::Whole(..));
            if pump.as_ref().is_some_and(Pump::awaiting_continue) {
                // Answered without asking for the body: whether the client
                // sends it anyway is unknown (RFC 9110 10.1.1), so the
                // connection cannot carry another request.
                self.keep_alive = false;
            }
            if self.handle(stream, msg).await.is_err() {
                return false;
            }
            // Coalesce what is already queued into one write.
            if !ended && rx.is_empty() && self.flush(stream).await.is_err() {
                return false;
            }
        }
        if self.flush(stream).await.is_err() {
            return false;
        }
        if let Some(p) = pump.as_mut() {
            if !p.drain(stream, buf, DRAIN_LIMIT, wait).await {
                self.keep_alive = false;
            }
        }
        true
    }

    fn start(&mut self, mut head: ResponseHead, known: Option<u64>) {
        self.status = head.status;
        if self.is_head && head.content_length.is_none() {
            // Tell a HEAD client the length its GET would have had.
            head.content_length = known;
        }
        self.framing = response_framing(
            self.is_head,
            head.status,
            head.content_length,
            known,
            self.version,
        );
        self.declared = match self.framing {
            ResponseFraming::Length(n) => Some(n),
            _ => None,
        };
        if head.close || self.framing == ResponseFraming::CloseDelimited {
            self.keep_alive = false;
        }
        write_head(
            &mut self.out,
            self.version,
            &head,
            self.framing,
            self.keep_alive,
        );
        self.head_written = true;
        self.resp_headers = head.headers;
    }

    async fn handle(&mut self, stream: &mut Stream, msg: ResponseMsg) -> std::io::Result<()> {
        match msg {
            ResponseMsg::Whole(head, body) => {
                self.start(head, Some(body.len() as u64));
                self.body(stream, &body).await?;
                self.finish();
            }
            ResponseMsg::Head(head) => self.start(head, None),
            ResponseMsg::Body(data) => self.body(stream, &data).await?,
            ResponseMsg::File { file, offset, len } => {
                let len = self.allowance(len);
                if len > 0 {
                    if self.framing == ResponseFraming::Chunked {
                        chunk_header(&mut self.out, usize::try_from(len).unwrap_or(usize::MAX));
                    }
                    self.flush(stream).await?;
                    let sent = stream.sendfile(&file, offset, len).await?;
                    self.body_sent += sent;
                    if sent < len {
                        // The file shrank under us: the framing is now a lie.
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    if self.framing == ResponseFraming::Chunked {
                        self.out.extend_from_slice(b"\r\n");
                    }
                }
            }
            ResponseMsg::End => self.finish(),
        }
        Ok(())
    }

    /// How many of `len` more body bytes the framing lets through: a
    /// declared Content-Length is a ceiling (extra bytes are not sent).
    fn allowance(&self, len: u64) -> u64 {
        match self.framing {
            ResponseFraming::NoBody => 0,
            _ => match self.declared {
                Some(n) => len.min(n.saturating_sub(self.body_sent)),
                None => len,
            },
        }
    }

    async fn body(&mut self, stream: &mut Stream, data: &[u8]) -> std::io::Result<()> {
        let n = usize::try_from(self.allowance(data.len() as u64)).unwrap_or(0);
        if n == 0 {
            return Ok(());
        }
        let data = &data[..n];
        if self.framing == ResponseFraming::Chunked {
            chunk_header(&mut self.out, n);
        }
        if n <= COALESCE {
            self.out.extend_from_slice(data);
        } else {
            self.flush(stream).await?;
            stream.write_all(data).await?;
        }
        if self.framing == ResponseFraming::Chunked {
            self.out.extend_from_slice(b"\r\n");
        }
        self.body_sent += n as u64;
        Ok(())
    }

    fn finish(&mut self) {
        if !self.head_written {
            // End without a head cannot come from a correct app side.
            self.status = 500;
            self.keep_alive = false;
            self.body_sent =
                simple_response(&mut self.out, 500, "Internal Server Error", &[], false);
            return;
        }
        match self.framing {
            ResponseFraming::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            ResponseFraming::Length(n) if self.body_sent < n => {
                // Fewer bytes than declared: only closing tells the client.
                log::warn!(
                    "response ended after {} of {n} declared bytes",
                    self.body_sent
                );
                self.keep_alive = false;
            }
            ResponseFraming::CloseDelimited => self.keep_alive = false,
            _ => {}
        }
    }

    async fn flush(&mut self, stream: &mut Stream) -> std::io::Result<()> {
        if !self.out.is_empty() {
            stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// Close so the client can read our last response: half-close, then
/// discard what it still sends for a moment, since closing a socket with
/// unread input makes the kernel send RST, which can destroy the response
/// before the client reads it.
async fn linger_close(mut stream: Stream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut budget = 256 * 1024usize;
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => break,
        }
    }
}
