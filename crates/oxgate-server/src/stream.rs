//! One accepted connection, TCP, TLS over TCP, or unix, behind a single
//! type; owns the sendfile(2) path (a copy through the cipher for TLS) and
//! the write-stall timeout. Knows nothing of HTTP.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

use crate::sync_io;

enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Boxed: rustls's connection state is large, and most streams are plain.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Bytes of a file read per write when it cannot go by sendfile(2) (TLS).
const FILE_CHUNK: usize = 64 * 1024;

pub struct Stream {
    io: Io,
    /// A write that makes no progress for this long fails with TimedOut
    /// (a client that stopped reading must not hold the connection).
    write_stall: Duration,
    /// Armed while a write waits; disarmed by any progress. Sound because
    /// no write is ever cancelled midway (conn.rs writes outside `select!`),
    /// so an armed timer always belongs to the write now waiting.
    stall: Option<Pin<Box<Sleep>>>,
}

/// Unlimited, for streams made without a setting.
const NO_STALL_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

impl Stream {
    pub fn tcp(s: TcpStream, write_stall: Duration) -> Self {
        Self::new(Io::Tcp(s), write_stall)
    }

    pub fn unix(s: UnixStream, write_stall: Duration) -> Self {
        Self::new(Io::Unix(s), write_stall)
    }

    pub fn tls(s: TlsStream<TcpStream>, write_stall: Duration) -> Self {
        Self::new(Io::Tls(Box::new(s)), write_stall)
    }

    /// Encrypted: writes must go through this type, never to `raw_fd`.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// TLS, and ALPN chose HTTP/2.
    pub(crate) fn alpn_h2(&self) -> bool {
        matches!(&self.io, Io::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2"))
    }

    /// TLS, and the client named no protocol in ALPN.
    pub(crate) fn alpn_none(&self) -> bool {
        matches!(&self.io, Io::Tls(s) if s.get_ref().1.alpn_protocol().is_none())
    }

    /// Push out what TLS holds back: rustls may keep encrypted bytes when
    /// the socket is full, which only a flush (or the next write) sends.
    /// A no-op for plain streams, which keep nothing.
    pub(crate) async fn flush_tls(&mut self) -> io::Result<()> {
        if self.is_tls() {
            tokio::io::AsyncWriteExt::flush(self).await?;
        }
        Ok(())
    }

    fn new(io: Io, write_stall: Duration) -> Self {
        let write_stall = if write_stall.is_zero() {
            NO_STALL_LIMIT
        } else {
            write_stall
        };
        Stream {
            io,
            write_stall,
            stall: None,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        let ready = async {
            match &self.io {
                Io::Tcp(s) => s.writable().await,
                Io::Unix(s) => s.writable().await,
                Io::Tls(s) => s.get_ref().0.writable().await,
            }
        };
        tokio::time::timeout(self.write_stall, ready)
            .await
            .unwrap_or_else(|_| Err(stalled()))
    }

    fn try_write_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        match &self.io {
            Io::Tcp(s) => s.try_io(Interest::WRITABLE, f),
            Io::Unix(s) => s.try_io(Interest::WRITABLE, f),
            Io::Tls(s) => s.get_ref().0.try_io(Interest::WRITABLE, f),
        }
    }

    /// The socket, for writes from a thread without the runtime. Never for
    /// a TLS stream: bytes written there would bypass the cipher.
    pub(crate) fn raw_fd(&self) -> i32 {
        match &self.io {
            Io::Tcp(s) => s.as_raw_fd(),
            Io::Unix(s) => s.as_raw_fd(),
            Io::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }

    /// Send `len` bytes of `file` from `offset` with sendfile(2); the kernel
    /// copies from the page cache to the socket, no userspace copy. Over
    /// TLS the bytes must be encrypted here: read and written in chunks.
    pub async fn sendfile(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        if self.is_tls() {
            return self.copy_file(file, offset, len).await;
        }
        let mut off = sync_io::file_offset(offset)?;
        let mut left = len;
        let sock = self.raw_fd();
        let src = file.as_raw_fd();
        while left > 0 {
            self.writable().await?;
            let res = self.try_write_io(|| sync_io::sendfile_once(sock, src, &mut off, left));
            match res {
                Ok(0) => break, // the file is shorter than promised
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(len - left)
    }

    /// `len` bytes of `file` from `offset` through the stream's writes.
    async fn copy_file(&mut self, file: &File, offset: u64, len: u64) -> io::Result<u64> {
        use tokio::io::AsyncWriteExt;
        let mut chunk = vec![0u8; FILE_CHUNK.min(usize::try_from(len).unwrap_or(FILE_CHUNK))];
        let mut sent = 0u64;
        while sent < len {
            let want = chunk
                .len()
                .min(usize::try_from(len - sent).unwrap_or(usize::MAX));
            // A page-cache read, as blocking as sendfile(2) itself would be.
            let n = match file.read_at(&mut chunk[..want], offset + sent) {
                Ok(0) => break, // the file is shorter than promised
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        Ok(sent)
    }

    /// After a write returned Pending: fail once the stall timer fires.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.write_stall;
        let timer = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stall = None;
                Poll::Ready(Err(stalled()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Run one write-side poll under the stall timer.
    fn timed<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(&mut Io, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(&mut self.io, cx) {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_stall(cx),
        }
    }
}

fn stalled() -> io::Error {
    crate::observe::write_stalled();
    io::Error::new(
        io::ErrorKind::TimedOut,
        "client stopped reading (write timeout)",
    )
}

// The hot polls keep their TCP arm here and call the others out of line:
// with all three arms inline each poll stayed a function of its own
// between its caller and TcpStream's; this small, it is inlined into its
// caller (~50 instructions a request on hello, bench/instructions.py).
// The out-of-line functions take any `Io`, TCP included, so none needs a
// case that cannot happen.
impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            io => other_read(io, cx, buf),
        }
    }
}

#[inline(never)]
fn other_read(io: &mut Io, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    match io {
        Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
    }
}

#[inline(never)]
fn other_write(io: &mut Io, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
    match io {
        Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
    }
}

#[inline(never)]
fn other_write_vectored(
    io: &mut Io,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    match io {
        Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().timed(cx, |io, cx| match io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            io => other_write(io, cx, buf),
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().timed(cx, |io, cx| match io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            io => other_write_vectored(io, cx, bufs),
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().timed(cx, |io, cx| match io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().timed(cx, |io, cx| match io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        })
    }
}
