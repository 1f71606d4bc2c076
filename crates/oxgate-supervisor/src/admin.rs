//! The --metrics-bind endpoint's sockets, served from the master's own
//! poll loop (no thread, no tokio): non-blocking, one request per
//! connection, a bounded head, a deadline per connection and a cap on
//! connections, so a slow or hostile client costs the master nothing but
//! a few fds. What to answer comes from the master (`Page`); this module
//! only moves bytes and never touches an application client's socket.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// A request head larger than this is refused (431).
const MAX_HEAD: usize = 4096;
/// A connection must be done (head read, response written) by then.
const DEADLINE: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed as they are accepted.
const MAX_CONNS: usize = 32;

/// What the master is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Page {
    Metrics,
    Status,
}

/// A response the master renders.
pub(crate) struct Reply {
    pub content_type: &'static str,
    pub body: String,
}

struct Conn {
    stream: TcpStream,
    deadline: Instant,
    head: Vec<u8>,
    /// The response once known, and how much of it went out.
    out: Option<(Vec<u8>, usize)>,
}

pub(crate) struct Admin {
    listener: TcpListener,
    conns: Vec<Conn>,
}

impl Admin {
    /// Bind `host:port`. SO_REUSEPORT lets a new master (USR2 upgrade) bind
    /// it while this one still runs.
    pub(crate) fn bind(host: &str, port: u16) -> io::Result<Admin> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolves to no address");
        for addr in (host, port).to_socket_addrs()? {
            match listen(addr) {
                Ok(listener) => {
                    return Ok(Admin {
                        listener,
                        conns: Vec::new(),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The descriptors to poll, and for what.
    pub(crate) fn pollfds(&self) -> Vec<libc::pollfd> {
        let mut fds = vec![libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for c in &self.conns {
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events: if c.out.is_some() {
                    libc::POLLOUT
                } else {
                    libc::POLLIN
                },
                revents: 0,
            });
        }
        fds
    }

    /// Accept, read, answer and write what can be done without blocking;
    /// `render` is asked for each complete request.
    pub(crate) fn turn(&mut self, render: &mut dyn FnMut(Page) -> Reply) {
        self.accept();
        let now = Instant::now();
        self.conns
            .retain_mut(|c| now < c.deadline && c.advance(render));
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            if self.conns.len() >= MAX_CONNS || stream.set_nonblocking(true).is_err() {
                continue;
            }
            self.conns.push(Conn {
                stream,
                deadline: Instant::now() + DEADLINE,
                head: Vec::new(),
                out: None,
            });
        }
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

impl Conn {
    /// Move the connection on; false once it is finished or broken.
    fn advance(&mut self, render: &mut dyn FnMut(Page) -> Reply) -> bool {
        if self.out.is_none() {
            match self.read_head() {
                Ok(true) => {
                    let reply = answer(&self.head, render);
                    self.out = Some((reply, 0));
                }
                Ok(false) => return true,
                Err(()) => return false,
            }
        }
        let Some((out, sent)) = &mut self.out else {
            return false;
        };
        while *sent < out.len() {
            match self.stream.write(&out[*sent..]) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return e.kind() == io::ErrorKind::WouldBlock,
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        false
    }

    /// Ok(true) once the head is complete (or too large: answered 431).
    fn read_head(&mut self) -> Result<bool, ()> {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(()),
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(_) => return Err(()),
            }
            if head_end(&self.head).is_some() || self.head.len() > MAX_HEAD {
                return Ok(true);
            }
        }
    }
}

fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    crlf.or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

/// The whole response to one head: GET /metrics and GET / only.
fn answer(head: &[u8], render: &mut dyn FnMut(Page) -> Reply) -> Vec<u8> {
    if head_end(head).is_none() {
        return response(431, "Request Header Fields Too Large", "text/plain", "");
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.trim_ascii().split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    let page = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => Page::Metrics,
        (Some(b"GET"), Some(b"/")) => Page::Status,
        _ => return response(404, "Not Found", "text/plain; charset=utf-8", "not found\n"),
    };
    let reply = render(page);
    response(200, "OK", reply.content_type, &reply.body)
}

fn response(status: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn render(page: Page) -> Reply {
        Reply {
            content_type: "text/plain",
            body: format!("{page:?}"),
        }
    }

    fn text(head: &[u8]) -> String {
        String::from_utf8(answer(head, &mut render)).unwrap()
    }

    #[test]
    fn only_get_of_metrics_and_root_is_answered() {
        assert!(text(b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nMetrics"));
        assert!(text(b"GET /metrics?x=1 HTTP/1.0\n\n").ends_with("Metrics"));
        assert!(text(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").ends_with("Status"));
        for head in [
            &b"POST /metrics HTTP/1.1\r\n\r\n"[..],
            b"GET /metricsx HTTP/1.1\r\n\r\n",
            b"GET /index.html HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
        ] {
            assert!(text(head).starts_with("HTTP/1.1 404 "), "{head:?}");
        }
    }

    #[test]
    fn an_endless_head_gets_431() {
        let head = vec![b'a'; MAX_HEAD + 10];
        assert!(text(&head).starts_with("HTTP/1.1 431 "));
    }

    #[test]
    fn a_client_is_served_without_blocking_and_a_silent_one_is_dropped() {
        let mut admin = Admin::bind("127.0.0.1", 0).unwrap();
        let addr = admin.local_addr().unwrap();
        let silent = TcpStream::connect(addr).unwrap();
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        for _ in 0..200 {
            admin.turn(&mut render);
            let mut buf = [0u8; 512];
            match client.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        assert!(String::from_utf8(got).unwrap().ends_with("Metrics"));
        assert_eq!(admin.conns.len(), 1, "the silent client waits");
        for c in &mut admin.conns {
            c.deadline = Instant::now();
        }
        admin.turn(&mut render);
        assert!(admin.conns.is_empty(), "past its deadline it is dropped");
        drop(silent);
    }
}
