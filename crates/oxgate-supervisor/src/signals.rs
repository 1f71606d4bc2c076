//! The master's signals: handlers only write the signal number to a
//! self-pipe; the master loop reads it and dispatches. Children get the
//! default dispositions back before they run worker code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Write end of the self-pipe, for the async-signal-safe handler.
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

pub const HANDLED: [libc::c_int; 11] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGPIPE,
];

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    // SAFETY: errno access and write(2) are async-signal-safe; the byte
    // lives on this handler's stack for the call. errno is restored so the
    // interrupted code sees its own value.
    unsafe {
        let errno = *libc::__errno_location();
        let byte = sig as u8;
        let _ = libc::write(fd, (&byte as *const u8).cast(), 1);
        *libc::__errno_location() = errno;
    }
}

/// The read end of the self-pipe, non-blocking.
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

pub fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl SignalPipe {
    /// Create the pipe and route every handled signal into it.
    pub fn install() -> io::Result<SignalPipe> {
        let (read, write) = pipe_nonblocking()?;
        PIPE_WRITE.store(write.as_raw_fd(), Ordering::Relaxed);
        for sig in HANDLED {
            set_handler(sig, on_signal as *const () as usize)?;
        }
        Ok(SignalPipe { read, write })
    }

    /// A closed stand-in, for the child once it gave its pipe up.
    pub fn placeholder() -> SignalPipe {
        let (read, write) = pipe_nonblocking().unwrap_or_else(|_| std::process::abort());
        SignalPipe { read, write }
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Every signal that arrived since the last call, in order.
    pub fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a stack buffer of the given length.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.extend(buf[..n as usize].iter().map(|&b| libc::c_int::from(b)));
        }
        out
    }

    /// In a new child (whose dispositions `fork` already reset): close
    /// the master's pipe.
    pub fn close_in_child(self) {
        drop(self.write);
        drop(self.read);
    }
}

/// Block every signal the master handles; returns the mask to restore.
pub fn block_all() -> libc::sigset_t {
    // SAFETY: sigset_t values are plain data initialised by sigemptyset
    // before use; pthread_sigmask only reads `set` and writes `old`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in HANDLED {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

pub fn restore(old: &libc::sigset_t) {
    // SAFETY: `old` came from pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Default dispositions back (before exec of a new master).
pub fn reset_dispositions() {
    PIPE_WRITE.store(-1, Ordering::Relaxed);
    for sig in HANDLED {
        let _ = set_handler(sig, libc::SIG_DFL);
    }
}

/// A worker's dispositions: the defaults, except SIGPIPE ignored as the
/// interpreter has it, so a write to a closed socket or pipe fails with
/// EPIPE (BrokenPipeError in Python) instead of killing the worker.
pub fn worker_dispositions() {
    reset_dispositions();
    let _ = set_handler(libc::SIGPIPE, libc::SIG_IGN);
}

fn set_handler(sig: libc::c_int, handler: usize) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
    // `handler` is SIG_DFL or an extern "C" fn(c_int) that only does
    // async-signal-safe work.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn name(sig: libc::c_int) -> String {
    let known = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGWINCH => "SIGWINCH",
        _ => return format!("signal {sig}"),
    };
    known.to_owned()
}
