//! The only place that forks. The embedding app (Python) gets its
//! before/after hooks around it; the child branch never returns here.

use std::io;

use crate::signals;

/// What the embedding runtime must do around fork(2).
pub trait ForkHooks {
    /// In the master, right before fork (CPython: PyOS_BeforeFork).
    fn before_fork(&mut self);
    /// In the master, right after fork (CPython: PyOS_AfterFork_Parent).
    fn after_fork_parent(&mut self);
    /// In a child right after fork (CPython: PyOS_AfterFork_Child).
    fn after_fork_child(&mut self);
}

/// The master's view of the embedding app: fork hooks, server hooks and
/// the worker body.
pub trait WorkerHost: ForkHooks {
    /// In the master on SIGUSR1: reopen the log files (after rotation).
    fn reopen_logs(&mut self);
    /// In the master before a worker is forked (gunicorn's pre_fork hook).
    fn pre_fork(&mut self, _age: u64) {}
    /// In the master after a worker was reaped (child_exit).
    fn child_exit(&mut self, _pid: i32) {}
    /// In the master when TTIN/TTOU changed the worker count.
    fn nworkers_changed(&mut self, _new: usize, _old: usize) {}
    /// In the master on SIGHUP (on_reload).
    fn reloading(&mut self) {}
    /// In the master when it starts to stop (TERM, INT, QUIT), before the
    /// workers are told: stop listening. `handed_over`: a new master
    /// (USR2) has the sockets now, and their files are its own.
    fn stopping(&mut self, _handed_over: bool) {}
    /// In the child about to exec a new master on SIGUSR2 (pre_exec).
    fn pre_exec(&mut self) {}
    /// In the child: run the worker to its end and return its exit code.
    /// Called after `after_fork_child`.
    fn run_worker(&mut self, ctx: crate::WorkerContext) -> i32;
}

pub enum Forked {
    Parent(libc::pid_t),
    /// In the child; the value is the exit code to end with.
    Child,
}

/// Fork with the master's signals blocked across it: a child must never run
/// the master's handlers (they would feed the master's self-pipe and the
/// child would lose, say, the TERM meant for it). The child gets default
/// dispositions before the signals are unblocked; pending ones then act on
/// it as on any process, until it installs its own handlers.
pub fn fork(host: &mut dyn ForkHooks) -> io::Result<Forked> {
    let old = signals::block_all();
    host.before_fork();
    // SAFETY: the master is single-threaded (it never starts a runtime or
    // threads of its own), so the child's only thread is a consistent copy.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = io::Error::last_os_error();
        host.after_fork_parent();
        signals::restore(&old);
        return Err(err);
    }
    if pid == 0 {
        signals::worker_dispositions();
        signals::restore(&old);
        return Ok(Forked::Child);
    }
    host.after_fork_parent();
    signals::restore(&old);
    Ok(Forked::Parent(pid))
}

/// Detach from the terminal (--daemon): fork, new session, fork again so
/// the daemon can never reacquire a terminal, stdio to /dev/null. Returns
/// in the daemon only; both intermediate parents end here.
pub fn daemonize(host: &mut dyn ForkHooks) -> io::Result<()> {
    for step in 0..2 {
        if let Forked::Parent(_) = fork(host)? {
            // SAFETY: the parent's work is done; _exit skips destructors and
            // atexit handlers that belong to the daemon now.
            unsafe { libc::_exit(0) };
        }
        host.after_fork_child();
        // SAFETY: setsid has no preconditions; it fails only if we already
        // lead a group, which the fork above rules out.
        if step == 0 && unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which we own.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&devnull), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
