//! SIGUSR2: start a new master from the current binary on the same
//! sockets (zero-downtime upgrade, as gunicorn). The new master finds the
//! listening descriptors in $OXGATE_FDS; the old one keeps serving until
//! the operator stops it (TERM), and its pidfile moves to FILE.oldbin.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::fork::{fork, Forked, WorkerHost};
use crate::signals;

/// The variable that carries inherited listening descriptors.
pub const FDS_VAR: &str = "OXGATE_FDS";

/// What the new master is started from.
#[derive(Debug, Clone)]
pub struct Relaunch {
    /// The descriptors of the listening sockets, kept open across exec.
    pub fds: Vec<RawFd>,
    /// Where the first master started (its --chdir may be relative).
    pub start_dir: PathBuf,
}

/// Descriptors a previous master handed over, if any (and forget them, so
/// our own upgrades and workers do not take them for theirs).
pub fn inherited_fds() -> Vec<RawFd> {
    let Some(raw) = std::env::var_os(FDS_VAR) else {
        return Vec::new();
    };
    std::env::remove_var(FDS_VAR);
    raw.to_string_lossy()
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Fork and exec the new master; returns its pid in the old master.
pub fn spawn(host: &mut dyn WorkerHost, how: &Relaunch) -> io::Result<libc::pid_t> {
    // argv[0] as started, not current_exe(): a virtualenv's python is a
    // symlink whose target would not find the venv's packages.
    let mut argv = std::env::args_os();
    let argv0 = argv.next().ok_or_else(|| io::Error::other("no argv[0]"))?;
    let args: Vec<OsString> = argv.collect();
    let as_given = PathBuf::from(&argv0);
    let program = if as_given.is_relative() && as_given.components().count() > 1 {
        how.start_dir.join(as_given)
    } else {
        as_given
    };
    match fork(host)? {
        Forked::Parent(pid) => Ok(pid),
        Forked::Child => {
            host.after_fork_child();
            signals::reset_dispositions();
            host.pre_exec();
            for &fd in &how.fds {
                // SAFETY: fcntl on descriptors this process owns; clearing
                // FD_CLOEXEC lets them survive the exec below.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
                }
            }
            let fds = how
                .fds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let err = std::process::Command::new(&program)
                .args(&args)
                .current_dir(&how.start_dir)
                .env(FDS_VAR, fds)
                .exec();
            log::error!("cannot start the new master ({}): {err}", program.display());
            // SAFETY: this child must never return into the old master's loop.
            unsafe { libc::_exit(1) }
        }
    }
}
