//! The listening sockets: bound (or taken over by descriptor) by the
//! master before any fork, and what each one's connections speak. Accepts
//! nothing itself; the accept loops are in server.rs.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use oxgate_config::Bind;
use socket2::{Domain, Socket, Type};

/// A bound, listening socket, made by the master before any fork. The
/// master removes a unix socket's file when it exits; workers never do.
pub enum Listener {
    Tcp(StdTcpListener),
    /// The path, and whether the master removes the file at exit.
    Unix(StdUnixListener, PathBuf, bool),
    /// A listener whose connections speak the uwsgi protocol.
    Uwsgi(Box<Listener>),
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http,
    /// nginx's `uwsgi_pass`: one request per connection, as a uwsgi packet.
    Uwsgi,
}

/// Why a bind failed, with the address as the user wrote it.
#[derive(Debug)]
pub struct BindError {
    pub address: String,
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.error.kind() {
            io::ErrorKind::AddrInUse => " (is another server running? pick another --bind)",
            io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges; pick another --bind)"
            }
            io::ErrorKind::AddrNotAvailable => " (that address is not on this machine)",
            _ => "",
        };
        write!(f, "cannot listen on {}: {}{hint}", self.address, self.error)
    }
}

impl Listener {
    /// The socket file of a unix listener.
    pub fn unix_path(&self) -> Option<&PathBuf> {
        match self {
            Listener::Unix(_, path, true) => Some(path),
            Listener::Uwsgi(inner) => inner.unix_path(),
            _ => None,
        }
    }

    /// A socket handed over by descriptor (systemd, or the master we
    /// replace) keeps no record of its protocol: it speaks uwsgi when one of
    /// `binds` is a `uwsgi:` bind of the same address.
    pub fn tag(self, binds: &[Bind]) -> Listener {
        let uwsgi = binds.iter().any(|b| match b {
            Bind::Uwsgi(inner) => self.is_at(inner),
            _ => false,
        });
        if uwsgi {
            Listener::Uwsgi(Box::new(self))
        } else {
            self
        }
    }

    fn is_at(&self, bind: &Bind) -> bool {
        match (self, bind) {
            (Listener::Unix(_, path, _), Bind::Unix(want)) => path == want,
            (Listener::Tcp(l), Bind::Tcp { host, port }) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match (l.local_addr(), (host, *port).to_socket_addrs()) {
                    (Ok(local), Ok(mut addrs)) => addrs.any(|a| a == local),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// A socket handed over already bound and listening (systemd socket
    /// activation, or the master we replace); TCP or unix, as getsockname
    /// says. `owned`: whether our master removes a unix socket file at exit.
    pub fn from_fd(fd: std::os::fd::RawFd, owned: bool) -> Result<Listener, BindError> {
        use std::os::fd::FromRawFd;
        let fail = |error| BindError {
            address: format!("fd://{fd}"),
            error,
        };
        // SAFETY: systemd passed this descriptor to us alone (LISTEN_PID),
        // open, for our use; we take ownership exactly once.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        socket.set_nonblocking(true).map_err(fail)?;
        let local = socket.local_addr().map_err(fail)?;
        if local.is_unix() {
            let path = local.as_pathname().map(PathBuf::from).unwrap_or_default();
            return Ok(Listener::Unix(socket.into(), path, owned));
        }
        Ok(Listener::Tcp(socket.into()))
    }

    pub fn bind(bind: &Bind, backlog: i32, reuse_port: bool) -> Result<Listener, BindError> {
        let address = describe(bind);
        let fail = |error| BindError {
            address: address.clone(),
            error,
        };
        match bind {
            Bind::Tcp { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let addr = (host, *port)
                    .to_socket_addrs()
                    .map_err(fail)?
                    .next()
                    .ok_or_else(|| fail(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
                bind_tcp(addr, backlog, reuse_port)
                    .map(Listener::Tcp)
                    .map_err(fail)
            }
            Bind::Uwsgi(inner) => {
                Listener::bind(inner, backlog, reuse_port).map(|l| Listener::Uwsgi(Box::new(l)))
            }
            Bind::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let l = StdUnixListener::bind(path).map_err(fail)?;
                l.set_nonblocking(true).map_err(fail)?;
                Ok(Listener::Unix(l, path.clone(), true))
            }
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _, _) => l.as_raw_fd(),
            Listener::Uwsgi(inner) => inner.raw_fd(),
        }
    }

    /// "http://127.0.0.1:8000" or "unix:/path", for the Listening line.
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".to_owned(),
            },
            Listener::Unix(_, path, _) => format!("unix:{}", path.display()),
            Listener::Uwsgi(inner) => match inner.url().strip_prefix("http://") {
                Some(addr) => format!("uwsgi://{addr}"),
                None => format!("uwsgi:{}", inner.url()),
            },
        }
    }
}

fn describe(bind: &Bind) -> String {
    match bind {
        Bind::Tcp { host, port } if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{port}")
        }
        Bind::Tcp { host, port } => format!("{host}:{port}"),
        Bind::Unix(path) => format!("unix:{}", path.display()),
        Bind::Uwsgi(inner) => format!("uwsgi:{}", describe(inner)),
    }
}

fn bind_tcp(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
