//! One response from messages to wire bytes: framing decided once from the
//! head (oxgate-proto), a declared Content-Length as a ceiling, chunking,
//! and small pieces coalesced into one write. Encoding never does I/O, so
//! the same state is written out by the async connection task or, during
//! an inline app call, synchronously by the app's own thread.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use oxgate_proto::response::response_framing;
use oxgate_proto::{RequestHead, ResponseFraming, Version};

use crate::handler::{ResponseHead, ResponseMsg, WholeBody};
use crate::request_id::{self, RequestId};
use crate::stream::Stream;
use crate::sync_io;
use crate::write::{chunk_header, simple_response, write_head};
use tokio::io::AsyncWriteExt;

/// Body pieces up to this size are copied next to their head or chunk
/// framing, so a small response is one write; larger ones go as they are.
const COALESCE: usize = 16 * 1024;
/// Pieces per writev(2) call (IOV_MAX is 1024 on Linux).
const MAX_IOV: usize = 64;

/// Bytes waiting to go out, in order.
enum Item {
    Data(Bytes),
    /// `len` bytes of `file` from `offset`, sent with sendfile(2).
    File {
        file: File,
        offset: u64,
        len: u64,
    },
}

pub struct Encoder {
    is_head: bool,
    version: Version,
    pub(crate) keep_alive: bool,
    pub(crate) status: u16,
    /// The head that went out, for the access log.
    pub(crate) resp_head: Option<ResponseHead>,
    framing: ResponseFraming,
    declared: Option<u64>,
    /// Body bytes accepted for sending (the access log's %(B)s).
    pub(crate) body_sent: u64,
    pub(crate) head_written: bool,
    /// `End` (or `Whole`) was seen: the response is complete.
    pub(crate) ended: bool,
    /// The tail being coalesced; goes out after `items`.
    out: Vec<u8>,
    items: VecDeque<Item>,
    /// Bytes of the `Data` items (files do not take memory).
    in_items: usize,
    /// --request-id: sent as X-Request-ID unless the app sent its own.
    request_id: Option<Arc<RequestId>>,
}

impl Encoder {
    /// The encoder for the response to `head` on a connection: `last`, its
    /// previous response's, made over in place (its allocation and write
    /// buffer used again), or a new one for its first. Boxed, so handing it
    /// to an inline call and back moves a pointer, not the whole state.
    /// `request_id`: the request's id (--request-id), sent back with it.
    pub(crate) fn renew(
        last: Option<Box<Encoder>>,
        head: &RequestHead,
        request_id: Option<Arc<RequestId>>,
    ) -> Box<Encoder> {
        match last {
            Some(mut enc) => {
                enc.reset(head, request_id);
                enc
            }
            None => Box::new(Encoder::new(head, Vec::with_capacity(512), request_id)),
        }
    }

    /// An encoder for the response to `head`, writing into `out`.
    fn new(head: &RequestHead, mut out: Vec<u8>, request_id: Option<Arc<RequestId>>) -> Self {
        out.clear();
        Encoder {
            is_head: head.method_is("HEAD"),
            version: head.version,
            keep_alive: head.keep_alive,
            status: 0,
            resp_head: None,
            framing: ResponseFraming::NoBody,
            declared: None,
            body_sent: 0,
            head_written: false,
            ended: false,
            out,
            items: VecDeque::new(),
            in_items: 0,
            request_id,
        }
    }

    /// What `new` would build, field by field in place: cheaper than building
    /// a whole new encoder over this one, and the queue keeps its allocation
    /// like the write buffer does. Every field is named, so a new one cannot
    /// be forgotten here.
    fn reset(&mut self, head: &RequestHead, request_id: Option<Arc<RequestId>>) {
        let Encoder {
            is_head,
            version,
            keep_alive,
            status,
            resp_head,
            framing,
            declared,
            body_sent,
            head_written,
            ended,
            out,
            items,
            in_items,
            request_id: id,
        } = self;
        *is_head = head.method_is("HEAD");
        *version = head.version;
        *keep_alive = head.keep_alive;
        *status = 0;
        *resp_head = None;
        *framing = ResponseFraming::NoBody;
        *declared = None;
        *body_sent = 0;
        *head_written = false;
        *ended = false;
        out.clear();
        // Almost always empty by now; `clear` would still call out of line.
        if !items.is_empty() {
            items.clear();
        }
        *in_items = 0;
        *id = request_id;
    }

    /// Bytes encoded but not written yet.
    pub(crate) fn queued(&self) -> usize {
        self.in_items + self.out.len()
    }

    pub(crate) fn push(&mut self, msg: ResponseMsg) {
        match msg {
            ResponseMsg::Whole(head, body) => self.push_whole(head, WholeBody::Shared(body)),
            ResponseMsg::Head(head) => self.start(head, None),
            ResponseMsg::Body(data) => self.body(data),
            ResponseMsg::File { file, offset, len } => {
                let len = self.allowance(len);
                if len > 0 {
                    if self.framing == ResponseFraming::Chunked {
                        chunk_header(&mut self.out, usize::try_from(len).unwrap_or(usize::MAX));
                    }
                    self.seal();
                    self.items.push_back(Item::File { file, offset, len });
                    self.body_sent += len;
                    if self.framing == ResponseFraming::Chunked {
                        self.out.extend_from_slice(b"\r\n");
                    }
                }
            }
            ResponseMsg::End => self.finish(),
        }
    }

    /// Answer `status` ourselves instead of the app's response, if none of
    /// it is out yet. Once the head went, the connection just closes after
    /// what is encoded: the only honest end of a broken response.
    pub(crate) fn replace(&mut self, status: u16, reason: &str) {
        self.keep_alive = false;
        if self.head_written {
            return;
        }
        self.status = status;
        self.out.clear();
        self.items.clear();
        self.in_items = 0;
        let id = self
            .request_id
            .as_deref()
            .map(|id| (request_id::HEADER, id.as_str()));
        self.body_sent = simple_response(&mut self.out, status, reason, id.as_slice(), false);
        self.ended = true;
    }

    fn start(&mut self, mut head: ResponseHead, known: Option<u64>) {
        self.status = head.status;
        head.stamp(self.request_id.as_deref(), self.is_head, known);
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
        self.resp_head = Some(head);
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

    /// A whole response at once, its body shared or borrowed.
    pub(crate) fn push_whole(&mut self, head: ResponseHead, body: WholeBody<'_>) {
        self.start(head, Some(body.len() as u64));
        match body {
            WholeBody::Shared(data) => self.body(data),
            WholeBody::Borrowed(data) if data.len() <= COALESCE => self.body_piece(data, None),
            WholeBody::Borrowed(data) => self.body(Bytes::copy_from_slice(data)),
        }
        self.finish();
    }

    fn body(&mut self, data: Bytes) {
        self.body_piece(&data, Some(&data));
    }

    /// `data`, or as much of it as the framing allows; `shared`: the same
    /// bytes as a `Bytes`, queued as they are when large (else copied).
    fn body_piece(&mut self, data: &[u8], shared: Option<&Bytes>) {
        let n = usize::try_from(self.allowance(data.len() as u64)).unwrap_or(0);
        if n == 0 {
            return;
        }
        if self.framing == ResponseFraming::Chunked {
            chunk_header(&mut self.out, n);
        }
        match shared {
            Some(shared) if n > COALESCE => {
                self.seal();
                self.in_items += n;
                self.items.push_back(Item::Data(shared.slice(..n)));
            }
            _ => self.out.extend_from_slice(&data[..n]),
        }
        if self.framing == ResponseFraming::Chunked {
            self.out.extend_from_slice(b"\r\n");
        }
        self.body_sent += n as u64;
    }

    fn finish(&mut self) {
        self.ended = true;
        if !self.head_written {
            // End without a head cannot come from a correct app side.
            self.replace(500, "Internal Server Error");
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

    /// Move the coalesced tail behind the queued items.
    fn seal(&mut self) {
        if !self.out.is_empty() {
            let tail = std::mem::replace(&mut self.out, Vec::with_capacity(512));
            self.in_items += tail.len();
            self.items.push_back(Item::Data(Bytes::from(tail)));
        }
    }

    /// Write everything encoded so far.
    pub(crate) async fn write(&mut self, stream: &mut Stream) -> io::Result<()> {
        if self.items.is_empty() {
            if !self.out.is_empty() {
                // The common case: head and a small body in one write, from
                // a buffer kept for the next response.
                stream.write_all(&self.out).await?;
                self.out.clear();
            }
            return stream.flush_tls().await;
        }
        self.seal();
        while !self.items.is_empty() {
            match self.pop_file() {
                Some((file, offset, len)) => {
                    short_file(stream.sendfile(&file, offset, len).await?, len)?;
                }
                None => self.write_data_run(stream).await?,
            }
        }
        stream.flush_tls().await
    }

    /// The file at the front, taken off the queue; None when data is first.
    fn pop_file(&mut self) -> Option<(File, u64, u64)> {
        if !matches!(self.items.front(), Some(Item::File { .. })) {
            return None;
        }
        match self.items.pop_front() {
            Some(Item::File { file, offset, len }) => Some((file, offset, len)),
            _ => None,
        }
    }

    /// Write the `Data` items at the front with as few writev(2) calls as
    /// the socket allows (a 1 MiB response in 64 KiB pieces is one call,
    /// not sixteen).
    async fn write_data_run(&mut self, stream: &mut Stream) -> io::Result<()> {
        loop {
            let slices = self.data_run();
            if slices.is_empty() {
                return Ok(());
            }
            let n = stream.write_vectored(&slices).await?;
            drop(slices);
            self.consume(n)?;
        }
    }

    /// The run of `Data` items at the front, as writev(2) pieces.
    fn data_run(&self) -> Vec<IoSlice<'_>> {
        self.items
            .iter()
            .map_while(|item| match item {
                Item::Data(d) => Some(IoSlice::new(d)),
                Item::File { .. } => None,
            })
            .take(MAX_IOV)
            .collect()
    }

    /// Drop `n` written bytes from the front items.
    fn consume(&mut self, mut n: usize) -> io::Result<()> {
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.in_items -= n;
        while n > 0 {
            let Some(Item::Data(front)) = self.items.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.items.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        Ok(())
    }

    /// Write on `fd` from this thread, blocking, until no more than `keep`
    /// bytes are left queued. For an app call running on the I/O thread,
    /// where nothing else would write them.
    pub(crate) fn write_sync(&mut self, fd: RawFd, stall: Duration, keep: usize) -> io::Result<()> {
        self.seal();
        while self.queued() > keep && !self.items.is_empty() {
            match self.pop_file() {
                Some((file, offset, len)) => {
                    let sent = sync_io::sendfile(fd, file.as_raw_fd(), offset, len, stall)?;
                    short_file(sent, len)?;
                }
                None => self.write_data_sync(fd, Some(stall))?,
            }
        }
        Ok(())
    }

    /// Write what the socket takes now from this thread, without waiting,
    /// until no more than `keep` bytes are left queued or a file is next.
    pub(crate) fn write_ready(&mut self, fd: RawFd, keep: usize) -> io::Result<()> {
        self.seal();
        while self.queued() > keep && matches!(self.items.front(), Some(Item::Data(_))) {
            match self.write_data_sync(fd, None) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    }

    /// Write what the socket takes now, from this thread, up to a file;
    /// a response in one piece goes from the kept buffer, as `write` has it.
    pub(crate) fn write_now(&mut self, fd: RawFd) -> io::Result<()> {
        if !self.items.is_empty() {
            return self.write_ready(fd, 0);
        }
        if self.out.is_empty() {
            return Ok(());
        }
        match sync_io::write_vectored(fd, &[IoSlice::new(&self.out)], None) {
            Ok(n) => {
                self.out.drain(..n.min(self.out.len()));
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A file waits to be sent.
    pub(crate) fn has_file(&self) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::File { .. }))
    }

    /// One sendmsg(2) of the `Data` items at the front.
    fn write_data_sync(&mut self, fd: RawFd, stall: Option<Duration>) -> io::Result<()> {
        let slices = self.data_run();
        let n = sync_io::write_vectored(fd, &slices, stall)?;
        drop(slices);
        self.consume(n)
    }
}

fn short_file(sent: u64, len: u64) -> io::Result<()> {
    if sent < len {
        // The file shrank under us: the framing is now a lie.
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
