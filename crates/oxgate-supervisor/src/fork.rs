//! The only place that forks. The embedding app (Python) gets its
//! before/after hooks around it; the child branch never returns here.

use std::io;

/// What the embedding runtime must do around fork(2), and the worker body.
pub trait WorkerHost {
    /// In the master, right before fork (CPython: PyOS_BeforeFork).
    fn before_fork(&mut self);
    /// In the master, right after fork (CPython: PyOS_AfterFork_Parent).
    fn after_fork_parent(&mut self);
    /// In the master on SIGUSR1: reopen the log files (after rotation).
    fn reopen_logs(&mut self);
    /// In the child: run the worker to its end and return its exit code.
    /// Called after the child's interpreter state is fixed up.
    fn run_worker(&mut self, ctx: crate::WorkerContext) -> i32;
}

pub enum Forked {
    Parent(libc::pid_t),
    /// In the child; the value is the exit code to end with.
    Child,
}

pub fn fork(host: &mut dyn WorkerHost) -> io::Result<Forked> {
    host.before_fork();
    // SAFETY: the master is single-threaded (it never starts a runtime or
    // threads of its own), so the child's only thread is a consistent copy.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let err = io::Error::last_os_error();
        host.after_fork_parent();
        return Err(err);
    }
    if pid == 0 {
        return Ok(Forked::Child);
    }
    host.after_fork_parent();
    Ok(Forked::Parent(pid))
}
