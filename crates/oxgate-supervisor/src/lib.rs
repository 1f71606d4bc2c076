//! The prefork master: binds nothing and serves nothing itself; it forks
//! workers, supervises them through signals, pipes and a scoreboard,
//! respawns, reloads and stops them. No tokio, no pyo3.

mod admin;
mod counters;
mod exposition;
mod fork;
mod identity;
mod master;
mod memory;
mod rlimit;
mod scoreboard;
mod signals;
mod status_page;
pub mod systemd;
pub mod upgrade;
mod view;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use counters::{method_index, Slow, SlowTracker};
pub use fork::{daemonize, ForkHooks, WorkerHost};
pub use identity::{lookup_group, lookup_user, Identity};
pub use master::{run, Exit, STACK_SIGNAL};
pub use rlimit::raise_open_files;
pub use scoreboard::{Scoreboard, THREAD_CELLS};

/// Exit code of a worker that could not start serving (sockets, logs).
pub const EXIT_BOOT: i32 = 3;
/// Exit code of a worker that could not load the application.
pub const EXIT_APP: i32 = 4;

#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub workers: usize,
    /// App threads per worker: with more than one, a stuck request gets a
    /// 504 and a graceful recycle instead of killing its neighbours.
    pub threads: usize,
    /// A request running longer, or a worker silent longer, is killed; None = off.
    pub timeout: Option<Duration>,
    pub graceful_timeout: Duration,
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    pub pidfile: Option<PathBuf>,
    /// Resident bytes past which a worker is replaced; 0 = off.
    pub max_worker_memory: u64,
    /// Daemonized (--daemon): WINCH then stops all workers, as gunicorn.
    pub daemon: bool,
    /// How to start a new master on SIGUSR2.
    pub relaunch: upgrade::Relaunch,
    /// Serve /metrics and the status page on this host and port.
    pub metrics_bind: Option<(String, u16)>,
}

/// What a worker knows about its place in the master's bookkeeping.
pub struct WorkerContext {
    /// This worker's number among all forked so far (gunicorn's worker.age).
    pub age: u64,
    pub scoreboard: Arc<Scoreboard>,
    pub slot: usize,
    /// This worker's request budget (jitter applied); 0 = unlimited.
    pub max_requests: u64,
    notify: OwnedFd,
}

impl WorkerContext {
    fn send(&self, byte: u8) {
        // SAFETY: writing one byte from the stack to our own pipe fd.
        let _ = unsafe { libc::write(self.notify.as_raw_fd(), (&byte as *const u8).cast(), 1) };
    }

    /// The worker cannot boot; the master prints `why` if it gives up.
    pub fn boot_failed(&self, why: &str) {
        let mut note = Vec::with_capacity(why.len() + 2);
        note.push(b'E');
        note.extend(why.bytes().map(|b| if b == b'\n' { b' ' } else { b }));
        note.push(b'\n');
        // SAFETY: writing our own buffer to our own pipe fd.
        let _ = unsafe { libc::write(self.notify.as_raw_fd(), note.as_ptr().cast(), note.len()) };
    }

    /// --reload saw a source file change: replace this worker.
    pub fn code_changed(&self) {
        self.send(b'C');
    }

    /// The worker accepts connections now.
    pub fn ready(&self) {
        self.send(b'R');
    }

    /// The worker reached max_requests: the master starts a replacement
    /// and stops this one once the replacement is ready.
    pub fn retire(&self) {
        self.send(b'M');
    }
}
