//! systemd integration: sd_notify(3) state messages over $NOTIFY_SOCKET,
//! and sockets passed by socket activation (sd_listen_fds(3)).

use std::os::fd::RawFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tell systemd about a state change; a no-op without $NOTIFY_SOCKET.
pub fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(&path),
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at {path}: {e}");
    }
}

/// Descriptors passed by socket activation, if they are meant for us
/// (LISTEN_PID is our pid). They start at 3 (SD_LISTEN_FDS_START).
pub fn listen_fds() -> Vec<RawFd> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !ours {
        return Vec::new();
    }
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<RawFd>().ok())
        .unwrap_or(0);
    // Children must not take them for their own.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    (3..3 + n.max(0)).collect()
}
