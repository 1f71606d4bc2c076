//! One HTTP/2 response from the app's messages: the head as HEADERS (names
//! lower-case, connection-specific fields dropped: RFC 9113 section 8.2.2),
//! the body as DATA sent only within the client's flow-control window, so
//! a client that stops reading holds back the app (--response-buffer), not
//! server memory. A declared Content-Length is a ceiling, as in encode.rs.

use std::fs::File;
use std::future::poll_fn;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode};
use oxgate_proto::response::response_framing;
use oxgate_proto::{ResponseFraming, Version};

use crate::date::with_http_date;
use crate::handler::{ResponseHead, ResponseMsg};
use crate::request_id::RequestId;
use crate::write::{own_response, SERVER};

/// Largest piece of a file read for one DATA run.
const FILE_CHUNK: usize = 64 * 1024;

/// Fields that belong to an HTTP/1.1 connection, never sent in HTTP/2.
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The stream is gone (reset by the client, or the connection closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone;

pub(crate) struct Reply {
    respond: SendResponse<Bytes>,
    body: Option<SendStream<Bytes>>,
    is_head: bool,
    request_id: Option<Arc<RequestId>>,
    /// How long the client may leave the window shut (--write-timeout).
    stall: Duration,
    pub(crate) status: u16,
    /// The head that went out, for the access log.
    pub(crate) resp_head: Option<ResponseHead>,
    /// Body bytes sent (the access log's %(B)s).
    pub(crate) body_sent: u64,
    declared: Option<u64>,
    pub(crate) head_sent: bool,
    /// The stream is closed on our side: END_STREAM or RST_STREAM went.
    pub(crate) ended: bool,
    /// Nothing more can be sent: the stream was reset, or is gone.
    cut: bool,
    /// The response is whole: the app's End (or Whole) came, or the server
    /// answered in its place. What an app sends after its head to a HEAD
    /// request is taken and dropped until then, as over HTTP/1.1.
    pub(crate) complete: bool,
}

impl Reply {
    pub(crate) fn new(
        respond: SendResponse<Bytes>,
        is_head: bool,
        request_id: Option<Arc<RequestId>>,
        stall: Duration,
    ) -> Self {
        Reply {
            respond,
            body: None,
            is_head,
            request_id,
            stall,
            status: 0,
            resp_head: None,
            body_sent: 0,
            declared: None,
            head_sent: false,
            ended: false,
            cut: false,
            complete: false,
        }
    }

    pub(crate) async fn push(&mut self, msg: ResponseMsg) -> Result<(), Gone> {
        match msg {
            ResponseMsg::Whole(head, _) | ResponseMsg::Head(head) if head.status < 200 => {
                // HTTP/2 has no final 1xx response (RFC 9110 section 15.2).
                log::error!("the app answered {}, not a final status: 500", head.status);
                self.fail(500, "Internal Server Error", &[]).await;
                Err(Gone)
            }
            ResponseMsg::Whole(head, body) => self.whole(head, body).await,
            ResponseMsg::Head(head) => self.start(head, None, false),
            ResponseMsg::Body(data) => self.data(data, false).await,
            ResponseMsg::File { file, offset, len } => self.file(&file, offset, len).await,
            ResponseMsg::End if !self.head_sent => {
                // End without a head cannot come from a correct app side.
                self.fail(500, "Internal Server Error", &[]).await;
                Err(Gone)
            }
            ResponseMsg::End => self.end(),
        }
    }

    async fn whole(&mut self, head: ResponseHead, body: Bytes) -> Result<(), Gone> {
        self.start(head, Some(body.len() as u64), body.is_empty())?;
        self.data(body, true).await?;
        self.end()
    }

    fn gone(&mut self) -> Gone {
        self.cut = true;
        self.complete = true;
        Gone
    }

    /// Answer `status` ourselves if nothing of the response went out yet,
    /// else reset the stream: the only honest end of a broken response.
    pub(crate) async fn fail(&mut self, status: u16, reason: &str, extra: &[(&str, &str)]) {
        if self.head_sent {
            self.reset(Reason::INTERNAL_ERROR);
            return;
        }
        let (head, body) = own_response(status, reason, extra);
        let _ = self.whole(head, Bytes::from(body)).await;
    }

    pub(crate) fn reset(&mut self, reason: Reason) {
        self.gone();
        if self.ended {
            return;
        }
        self.ended = true;
        match &mut self.body {
            Some(body) => body.send_reset(reason),
            None => self.respond.send_reset(reason),
        }
    }

    /// `100 Continue` (RFC 9110 section 10.1.1): the app asked for the body.
    pub(crate) fn send_continue(&mut self) {
        if !self.head_sent {
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::CONTINUE;
            let _ = self.respond.send_informational(resp);
        }
    }

    /// Resolves when the client resets the stream.
    pub(crate) async fn reset_by_client(&mut self) -> Reason {
        let reset = poll_fn(|cx| match &mut self.body {
            Some(body) => body.poll_reset(cx),
            None => self.respond.poll_reset(cx),
        })
        .await;
        reset.unwrap_or(Reason::CANCEL)
    }

    fn start(
        &mut self,
        mut head: ResponseHead,
        known: Option<u64>,
        empty: bool,
    ) -> Result<(), Gone> {
        if self.head_sent {
            return Ok(());
        }
        self.status = head.status;
        head.stamp(self.request_id.as_deref(), self.is_head, known);
        let status = head.status;
        // The same decision as HTTP/1.1's, where "close-delimited" or
        // "chunked" mean only that the length is not known in advance.
        let framing = response_framing(
            self.is_head,
            status,
            head.content_length,
            known,
            Version::Http2,
        );
        let no_body = framing == ResponseFraming::NoBody;
        self.declared = match framing {
            ResponseFraming::NoBody => Some(0),
            ResponseFraming::Length(n) => Some(n),
            _ => None,
        };
        let mut resp = Response::new(());
        *resp.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let fields = resp.headers_mut();
        for (name, value) in head.fields() {
            if CONNECTION_SPECIFIC
                .iter()
                .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
            {
                continue;
            }
            // HeaderName lower-cases, as HTTP/2 requires (RFC 9113 section
            // 8.2.1); the checks start_response made let both through.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                fields.append(name, value);
            }
        }
        // RFC 9110 section 8.6: never on 204; on HEAD and 304 the length a
        // GET would have had.
        let length = if no_body {
            head.content_length
        } else {
            self.declared
        };
        if let Some(n) = length.filter(|_| status != 204) {
            fields.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        if !head.has_date {
            with_http_date(|d| {
                if let Ok(v) = HeaderValue::from_str(d) {
                    fields.insert(http::header::DATE, v);
                }
            });
        }
        if !head.has_server {
            fields.insert(http::header::SERVER, HeaderValue::from_static(SERVER));
        }
        let end = no_body || empty;
        self.head_sent = true;
        self.resp_head = Some(head);
        match self.respond.send_response(resp, end) {
            Ok(body) if !end => self.body = Some(body),
            Ok(_) => self.ended = true,
            Err(e) => {
                log::debug!("HTTP/2 response not sent: {e}");
                self.ended = true;
                return Err(self.gone());
            }
        }
        Ok(())
    }

    /// How many of `len` more body bytes the response lets through.
    fn allowance(&self, len: u64) -> Result<u64, Gone> {
        if self.cut {
            return Err(Gone);
        }
        if self.ended || !self.head_sent {
            return Ok(0);
        }
        Ok(match self.declared {
            Some(n) => len.min(n.saturating_sub(self.body_sent)),
            None => len,
        })
    }

    /// `data`, or as much as the response lets through; `last`: nothing
    /// follows it, so its final DATA frame may carry END_STREAM (one frame a
    /// response fewer than an empty one after it).
    async fn data(&mut self, mut data: Bytes, last: bool) -> Result<(), Gone> {
        let n = usize::try_from(self.allowance(data.len() as u64)?).unwrap_or(0);
        data.truncate(n);
        while !data.is_empty() {
            let room = self.room(data.len()).await?;
            let piece = data.split_to(room.min(data.len()));
            let whole = self
                .declared
                .is_none_or(|d| self.body_sent + piece.len() as u64 >= d);
            self.send(piece, last && data.is_empty() && whole)?;
        }
        Ok(())
    }

    /// `len` bytes of `file` from `offset`, read as the window opens: a
    /// page-cache read, as blocking as sendfile(2) would be.
    async fn file(&mut self, file: &File, offset: u64, len: u64) -> Result<(), Gone> {
        let len = self.allowance(len)?;
        let mut done = 0u64;
        while done < len {
            let left = usize::try_from(len - done).unwrap_or(usize::MAX);
            let room = self.room(left.min(FILE_CHUNK)).await?;
            let mut chunk = BytesMut::zeroed(room.min(left).min(FILE_CHUNK));
            let n = loop {
                match file.read_at(&mut chunk, offset + done) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    res => break res,
                }
            };
            match n {
                Ok(n) if n > 0 => {
                    chunk.truncate(n);
                    self.send(chunk.freeze(), false)?;
                    done += n as u64;
                }
                // Shorter than promised, or unreadable: the declared length
                // cannot be met, which `end` reports by a reset.
                Ok(_) => break,
                Err(e) => {
                    log::warn!("reading a response file failed: {e}");
                    break;
                }
            }
        }
        Ok(())
    }

    /// Send `piece`, ending the stream with it when `end`.
    fn send(&mut self, piece: Bytes, end: bool) -> Result<(), Gone> {
        let n = piece.len() as u64;
        let sent = match self.body.as_mut() {
            Some(body) => body.send_data(piece, end).is_ok(),
            None => false,
        };
        if !sent {
            return Err(self.gone());
        }
        self.body_sent += n;
        self.ended |= end;
        Ok(())
    }

    /// Wait until the client's window takes some of `want` bytes; how many.
    /// A window left shut past --write-timeout resets the stream.
    async fn room(&mut self, want: usize) -> Result<usize, Gone> {
        let stall = self.stall;
        let Some(body) = self.body.as_mut() else {
            return Err(self.gone());
        };
        body.reserve_capacity(want);
        let stalled = loop {
            let now = body.capacity();
            if now > 0 {
                return Ok(now);
            }
            match tokio::time::timeout(stall, poll_fn(|cx| body.poll_capacity(cx))).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break false,
                Err(_) => break true,
            }
        };
        if stalled {
            log::debug!("HTTP/2 client kept its window shut past --write-timeout");
            crate::observe::write_stalled();
            self.reset(Reason::CANCEL);
        }
        Err(self.gone())
    }

    fn end(&mut self) -> Result<(), Gone> {
        self.complete = true;
        if self.ended {
            return Ok(());
        }
        if let Some(n) = self.declared.filter(|n| self.body_sent < *n) {
            // Fewer bytes than declared: only a reset tells the client.
            log::warn!(
                "response ended after {} of {n} declared bytes",
                self.body_sent
            );
            self.reset(Reason::INTERNAL_ERROR);
            return Err(Gone);
        }
        self.ended = true;
        let sent = match self.body.as_mut() {
            Some(body) => body.send_data(Bytes::new(), true).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.gone())
        }
    }
}
