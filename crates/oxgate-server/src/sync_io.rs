//! Blocking writes on a connection's non-blocking socket, for an app call
//! running inline on the I/O thread whose response outgrew
//! --response-buffer: nothing else can write while it runs, so it waits
//! for the client itself, bounded by --write-timeout per stall.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;
use std::time::Duration;

/// One sendmsg(2) of `slices` (send(2) of a lone one, which spares the
/// kernel copying in a msghdr and an iovec: about 3% of an app thread's
/// CPU on a tiny response), waiting while the socket is full; returns how
/// many bytes went. Fails with TimedOut when nothing could be written for
/// `stall`, at once with WouldBlock when `stall` is None.
pub fn write_vectored(
    fd: RawFd,
    slices: &[IoSlice<'_>],
    stall: Option<Duration>,
) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec (std guarantees it on unix).
    msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slices.len();
    loop {
        // SAFETY: the caller guarantees `fd` is the connection's socket,
        // open for the whole call; `one` and `msg` point at `slices`, which
        // outlive the call. MSG_NOSIGNAL: a closed peer is an error, not
        // SIGPIPE.
        let n = match slices {
            [one] => unsafe { libc::send(fd, one.as_ptr().cast(), one.len(), libc::MSG_NOSIGNAL) },
            _ => unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) },
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => wait_writable(fd, stall.ok_or(e)?)?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
}

/// sendfile(2) `len` bytes of `file` from `offset`; returns how many went
/// (fewer when the file is shorter than promised).
pub fn sendfile(fd: RawFd, file: RawFd, offset: u64, len: u64, stall: Duration) -> io::Result<u64> {
    let mut off = file_offset(offset)?;
    let mut left = len;
    while left > 0 {
        match sendfile_once(fd, file, &mut off, left) {
            Ok(0) => break,
            Ok(n) => left -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(fd, stall)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(len - left)
}

/// A file offset as sendfile(2) takes it.
pub fn file_offset(offset: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file offset too large"))
}

/// One sendfile(2) call of up to `left` bytes (at most 1 GiB) from `off`,
/// which the kernel advances. Ok(0): the file ended.
pub fn sendfile_once(
    sock: RawFd,
    file: RawFd,
    off: &mut libc::off_t,
    left: u64,
) -> io::Result<u64> {
    let want = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
    // SAFETY: the callers keep both descriptors open for the whole call
    // (the socket is the connection's, the file is borrowed), and `off` is
    // a valid, exclusively borrowed off_t the kernel updates.
    let n = unsafe { libc::sendfile(sock, file, off, want) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as u64)
    }
}

fn wait_writable(fd: RawFd, stall: Duration) -> io::Result<()> {
    let ms = libc::c_int::try_from(stall.as_millis()).unwrap_or(libc::c_int::MAX);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, exclusively borrowed for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            // POLLERR/POLLHUP also end the wait: the next send reports it.
            return Ok(());
        }
        if n == 0 {
            crate::observe::write_stalled();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading (write timeout)",
            ));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
