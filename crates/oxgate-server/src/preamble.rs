//! What may come before a connection's first request: the PROXY protocol
//! header of a load balancer (--proxy-protocol), or, on a `uwsgi:` listener,
//! the uwsgi packet that is the request itself. Read within
//! --header-timeout. Parsing is oxgate-proto's.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use oxgate_proto::proxy_protocol::{self, Preamble};
use oxgate_proto::uwsgi::{self, Packet};
use oxgate_proto::{ProtoError, TrustList};
use tokio::io::AsyncReadExt;

use crate::handler::ConnInfo;
use crate::server::Shared;
use crate::stream::Stream;

/// Read a PROXY header if the connection starts with one, and return the
/// connection as it describes it (unchanged without one: a listed peer may
/// also speak plain HTTP, as its health checks do). `Ok(None)`: the peer
/// went away or sent nothing in time.
pub(crate) async fn proxy_header(
    stream: &mut Stream,
    buf: &mut BytesMut,
    info: Arc<ConnInfo>,
    allow: &TrustList,
    shared: &Shared,
) -> Result<Option<Arc<ConnInfo>>, ProtoError> {
    let found = read_until(stream, buf, shared, |b| {
        proxy_protocol::parse(b).map(|p| (p != Preamble::Incomplete).then_some(p))
    })
    .await?;
    match found {
        None => Ok(None),
        Some(Preamble::Header { len, source, tls }) => {
            let relayed = relay(&info, source, tls, allow, shared)?;
            buf.advance(len);
            Ok(Some(Arc::new(relayed)))
        }
        Some(_) => Ok(Some(info)),
    }
}

/// The connection as a PROXY header describes it, if its peer may send
/// one (--proxy-allow-from; a unix socket's peer always may).
fn relay(
    info: &ConnInfo,
    source: Option<std::net::SocketAddr>,
    tls: bool,
    allow: &TrustList,
    shared: &Shared,
) -> Result<ConnInfo, ProtoError> {
    if !info.peer.is_none_or(|p| allow.contains(p.ip())) {
        return Err(ProtoError::Forbidden(
            "PROXY header from a peer not in --proxy-allow-from",
        ));
    }
    Ok(info.relayed(source, tls, &shared.settings.forwarded_allow))
}

/// Read the uwsgi packet and leave in `buf`, in its place, the HTTP/1.0
/// head it stands for (the body follows as it came). The connection is then
/// the client the packet names.
pub(crate) async fn uwsgi_packet(
    stream: &mut Stream,
    buf: &mut BytesMut,
    info: Arc<ConnInfo>,
    shared: &Shared,
) -> Result<Option<Arc<ConnInfo>>, ProtoError> {
    let found = read_until(stream, buf, shared, |b| {
        uwsgi::parse(b).map(|p| match p {
            Packet::Done { len, vars } => Some((len, vars)),
            Packet::Incomplete => None,
        })
    })
    .await?;
    let Some((len, vars)) = found else {
        return Ok(None);
    };
    let t = uwsgi::translate(&vars)?;
    let mut rebuilt = BytesMut::with_capacity(t.head.len() + buf.len() - len);
    rebuilt.extend_from_slice(&t.head);
    rebuilt.extend_from_slice(&buf[len..]);
    *buf = rebuilt;
    let trust = &shared.settings.forwarded_allow;
    let mut relayed = info.relayed(t.client, t.https, trust);
    relayed.cgi = t.environ;
    Ok(Some(Arc::new(relayed)))
}

/// Read until `parse` finds what it looks for. `Ok(None)`: the peer closed,
/// or sent nothing before --header-timeout.
async fn read_until<T>(
    stream: &mut Stream,
    buf: &mut BytesMut,
    shared: &Shared,
    parse: impl Fn(&[u8]) -> Result<Option<T>, ProtoError>,
) -> Result<Option<T>, ProtoError> {
    let deadline = tokio::time::Instant::now() + shared.settings.head_timeout;
    loop {
        if let Some(found) = parse(buf)? {
            return Ok(Some(found));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return Ok(None),
            Err(_) if buf.is_empty() => return Ok(None),
            Err(_) => return Err(ProtoError::RequestTimeout),
        }
    }
}

/// On a TLS port, the PROXY header comes in the clear before the handshake
/// (AWS NLB, HAProxy `send-proxy`). Look at it without taking the bytes
/// that follow (the ClientHello is the TLS layer's), then take exactly the
/// header. `Ok(None)`: the peer went away or sent nothing in time. Errors
/// cannot be answered in HTTP here: the caller closes.
pub(crate) async fn proxy_header_before_tls(
    sock: &mut tokio::net::TcpStream,
    info: ConnInfo,
    allow: &TrustList,
    shared: &Shared,
) -> Result<Option<ConnInfo>, ProtoError> {
    let deadline = tokio::time::Instant::now() + shared.settings.head_timeout;
    let mut buf = vec![0u8; proxy_protocol::MAX_HEADER];
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) | Err(_) => return Ok(None),
        };
        match proxy_protocol::parse(&buf[..n])? {
            Preamble::Absent => return Ok(Some(info)),
            Preamble::Header { len, source, tls } => {
                let relayed = relay(&info, source, tls, allow, shared)?;
                sock.read_exact(&mut buf[..len])
                    .await
                    .map_err(|_| ProtoError::BadRequest("connection closed in a PROXY header"))?;
                return Ok(Some(relayed));
            }
            // Part of a header: peeking again returns at once with the same
            // bytes, so wait a little for the rest (a balancer writes the
            // header in one piece; this is the rare split).
            Preamble::Incomplete if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Preamble::Incomplete => return Err(ProtoError::RequestTimeout),
        }
    }
}
