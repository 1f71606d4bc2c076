//! `wsgi.input` (PEP 3333 "Input and Error Streams"): read, readline,
//! readlines and iteration over the request body, never past its end.
//! Waiting for body bytes happens without the GIL.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use oxgate_server::{BodyError, BodyStream, RequestBody};
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::lent_body::LentBody;
use crate::pybytes::to_bytes;

struct State {
    /// What is still arriving.
    stream: Option<BodyStream>,
    /// A body received into a `bytes` object: a read of all of it hands
    /// out that object.
    whole: Option<Py<PyBytes>>,
    /// Why the body cannot be read, for the first read to raise.
    lost: Option<PyErr>,
    /// Bytes received but not yet handed to the app.
    pending: Pending,
    eof: bool,
    /// The client closed the connection before the body ended.
    gone: bool,
}

#[pyclass(module = "oxgate", name = "Input", frozen)]
pub struct WsgiInput {
    // Taken out while a read waits without the GIL, so a second thread
    // reading the same stream gets an error instead of a deadlock.
    state: Mutex<Option<State>>,
}

impl State {
    fn new(py: Python<'_>, body: RequestBody) -> Self {
        let mut pending = Pending::default();
        let (mut stream, mut whole, mut lost) = (None, None, None);
        match body {
            RequestBody::Full(b) => pending.push(b),
            RequestBody::Lent(lent) => match LentBody::filled(py, lent) {
                Ok(object) => {
                    pending.push(to_bytes(object.bind(py)));
                    whole = Some(object);
                }
                Err(e) => lost = Some(e),
            },
            RequestBody::Stream(s) => stream = Some(s),
        }
        State {
            eof: stream.is_none() && lost.is_none(),
            stream,
            whole,
            lost,
            pending,
            gone: false,
        }
    }

    fn empty() -> Self {
        State {
            stream: None,
            whole: None,
            lost: None,
            pending: Pending::default(),
            eof: true,
            gone: false,
        }
    }

    /// `data` as a Python object: the body's own when it is all of it.
    fn object<'py>(&self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        if let Some(whole) = &self.whole {
            let whole = whole.bind(py);
            let all = whole.as_bytes();
            if all.as_ptr() == data.as_ptr() && all.len() == data.len() {
                return whole.clone();
            }
        }
        PyBytes::new(py, data)
    }
}

impl WsgiInput {
    pub fn new(py: Python<'_>, body: RequestBody) -> Self {
        WsgiInput {
            state: Mutex::new(Some(State::new(py, body))),
        }
    }

    /// Start over with another body (the object is reused for the
    /// connection's next request).
    pub fn reset(&self, py: Python<'_>, body: RequestBody) {
        let state = State::new(py, body);
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// The request is over: an empty body from now on.
    pub fn clear(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(State::empty());
    }

    /// A read found the client gone (or stalled past --body-timeout) before
    /// the body ended: whatever the app raised next is that disconnect, not
    /// a fault of the app.
    pub fn client_gone(&self) -> bool {
        self.state
            .lock()
            .is_ok_and(|s| s.as_ref().is_some_and(|s| s.gone))
    }

    fn with_state<'py, R>(
        &self,
        py: Python<'py>,
        f: impl FnOnce(Python<'py>, &mut State) -> PyResult<R>,
    ) -> PyResult<R> {
        let taken = self
            .state
            .lock()
            .map_err(|_| PyRuntimeError::new_err("wsgi.input is broken"))?
            .take();
        let Some(mut state) = taken else {
            return Err(PyRuntimeError::new_err(
                "wsgi.input is being read by another thread",
            ));
        };
        let out = f(py, &mut state);
        if let Ok(mut slot) = self.state.lock() {
            *slot = Some(state);
        }
        out
    }
}

impl State {
    /// Pull one more piece from the connection; false at the end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<bool> {
        if self.eof {
            return Ok(false);
        }
        if let Some(e) = self.lost.take() {
            self.eof = true;
            return Err(e);
        }
        let Some(stream) = &mut self.stream else {
            self.eof = true;
            return Ok(false);
        };
        let next: Result<Option<Bytes>, BodyError> = py.detach(|| stream.next_blocking());
        match next {
            Ok(Some(chunk)) => {
                self.pending.push(chunk);
                Ok(true)
            }
            Ok(None) => {
                self.eof = true;
                Ok(false)
            }
            Err(e) => {
                self.eof = true;
                // A stalled body (--body-timeout) was already answered 408
                // by the I/O side: the client is as good as gone.
                self.gone = matches!(e, BodyError::Disconnected | BodyError::TimedOut);
                Err(PyOSError::new_err(e.to_string()))
            }
        }
    }

    fn read(&mut self, py: Python<'_>, size: Option<usize>) -> PyResult<Bytes> {
        match size {
            Some(n) => {
                while self.pending.len() < n && self.fill(py)? {}
                Ok(self.pending.take(n))
            }
            None => {
                while self.fill(py)? {}
                Ok(self.pending.take(usize::MAX))
            }
        }
    }

    fn readline(&mut self, py: Python<'_>, limit: Option<usize>) -> PyResult<Bytes> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.pending.newline(scanned) {
                let end = i + 1;
                return Ok(self.pending.take(limit.map_or(end, |l| l.min(end))));
            }
            scanned = self.pending.len();
            if limit.is_some_and(|l| scanned >= l) || !self.fill(py)? {
                return Ok(self.pending.take(limit.unwrap_or(usize::MAX)));
            }
        }
    }
}

/// Body pieces as they came, so a read within one piece (a whole body
/// read before the app, or a streamed piece read as it came) hands it out
/// without a copy; only a read across pieces joins them.
#[derive(Default)]
struct Pending {
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl Pending {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, piece: Bytes) {
        if !piece.is_empty() {
            self.len += piece.len();
            self.pieces.push_back(piece);
        }
    }

    /// The first `n` bytes (all there are, if fewer).
    fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        self.len -= n;
        let Some(first) = self.pieces.front_mut() else {
            return Bytes::new();
        };
        if first.len() > n {
            return first.split_to(n);
        }
        if first.len() == n {
            return self.pieces.pop_front().unwrap_or_default();
        }
        let mut joined = BytesMut::with_capacity(n);
        while joined.len() < n {
            let Some(piece) = self.pieces.front_mut() else {
                break;
            };
            let want = n - joined.len();
            if piece.len() > want {
                joined.extend_from_slice(&piece.split_to(want));
            } else {
                joined.extend_from_slice(piece);
                self.pieces.pop_front();
            }
        }
        joined.freeze()
    }

    /// Where the first newline at or after `from` is.
    fn newline(&self, from: usize) -> Option<usize> {
        let mut start = 0;
        for piece in &self.pieces {
            let end = start + piece.len();
            if end > from {
                let skip = from.saturating_sub(start);
                if let Some(i) = piece[skip..].iter().position(|&b| b == b'\n') {
                    return Some(start + skip + i);
                }
            }
            start = end;
        }
        None
    }
}

/// Python's convention: None or a negative size means "all".
fn size_arg(size: Option<i64>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl WsgiInput {
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(py, |py, s| {
            let data = s.read(py, size_arg(size))?;
            Ok(s.object(py, &data))
        })
    }

    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<i64>) -> PyResult<Bound<'py, PyBytes>> {
        self.with_state(py, |py, s| {
            let data = s.readline(py, size_arg(size))?;
            Ok(s.object(py, &data))
        })
    }

    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<i64>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|h| *h > 0);
        let lines = self.with_state(py, |py, s| {
            let mut lines = Vec::new();
            let mut total = 0;
            loop {
                let line = s.readline(py, None)?;
                if line.is_empty() {
                    break;
                }
                total += line.len();
                lines.push(s.object(py, &line));
                if hint.is_some_and(|h| total >= h) {
                    break;
                }
            }
            Ok(lines)
        })?;
        PyList::new(py, lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.with_state(py, |py, s| {
            let line = s.readline(py, None)?;
            Ok((!line.is_empty()).then(|| s.object(py, &line)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(pieces: &[&'static [u8]]) -> Pending {
        let mut p = Pending::default();
        for piece in pieces {
            p.push(Bytes::from_static(piece));
        }
        p
    }

    #[test]
    fn a_read_within_one_piece_shares_its_bytes() {
        let body: &'static [u8] = b"hello world";
        let mut p = pending(&[body]);
        let first = p.take(5);
        assert_eq!(first.as_ptr(), body.as_ptr());
        let rest = p.take(100);
        assert_eq!(&rest[..], b" world");
        assert_eq!(rest.as_ptr(), body[5..].as_ptr());
        assert_eq!(p.len(), 0);
        assert!(p.take(1).is_empty());
    }

    #[test]
    fn a_read_across_pieces_joins_them_in_order() {
        let mut p = pending(&[b"ab", b"", b"cde", b"fg"]);
        assert_eq!(p.len(), 7);
        assert_eq!(&p.take(4)[..], b"abcd");
        assert_eq!(&p.take(2)[..], b"ef");
        assert_eq!(&p.take(9)[..], b"g");
    }

    #[test]
    fn newlines_are_found_across_pieces_from_an_offset() {
        let p = pending(&[b"a\nb", b"cd", b"e\nf"]);
        assert_eq!(p.newline(0), Some(1));
        assert_eq!(p.newline(2), Some(6));
        assert_eq!(p.newline(4), Some(6));
        assert_eq!(p.newline(7), None);
        assert_eq!(p.newline(99), None);
    }
}
