//! The Python strings an environ can reuse instead of making them per
//! request: environ keys for header names (per worker) and, per connection,
//! a template holding its SERVER_* and REMOTE_* entries and the header
//! values its last request sent. Must not decide any mapping rule: those are oxgate-proto's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

use oxgate_proto::environ::header_key;
use oxgate_proto::forwarded::is_forwarding_field;
use oxgate_proto::Version;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

/// Header names whose keys are kept. Past it (a client making up names)
/// keys are made per request and not interned, so nothing grows forever.
const MAX_KEYS: usize = 512;
/// Header values kept per connection, and the longest one kept.
const MAX_VALUES: usize = 32;
const MAX_VALUE_LEN: usize = 4096;

/// A header name as sent, its environ key (None: the header is dropped)
/// and whether it is a forwarding field.
type KeyMap = HashMap<Box<[u8]>, (Option<Py<PyString>>, bool), BuildHasherDefault<Fnv>>;

/// FNV-1a: a few instructions per byte of a short name, where SipHash
/// costs about a hundred per lookup. Its weakness to chosen collisions
/// does not matter in a map that never holds more than MAX_KEYS names.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Environ keys by header name as sent (clients keep their spelling).
#[derive(Default)]
pub struct HeaderKeys(Mutex<KeyMap>);

/// What `HeaderKeys::get` knows of a header name.
pub struct Key<'py> {
    /// The environ key.
    pub key: Bound<'py, PyString>,
    /// A kept key: interned, so equal keys are one object.
    pub interned: bool,
    /// A field a trusted proxy's account is read from
    /// (`oxgate_proto::forwarded::is_forwarding_field`): known with the key,
    /// so the environ learns whether to resolve one for free.
    pub forwarding: bool,
}

impl HeaderKeys {
    /// What is known of header `name`; None when the header is dropped
    /// (oxgate_proto::environ::header_key).
    pub fn get<'py>(&self, py: Python<'py>, name: &str) -> Option<Key<'py>> {
        let mut keys = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((key, forwarding)) = keys.get(name.as_bytes()) {
            return key.as_ref().map(|k| Key {
                key: k.bind(py).clone(),
                interned: true,
                forwarding: *forwarding,
            });
        }
        let key = header_key(name);
        let forwarding = is_forwarding_field(name);
        if keys.len() >= MAX_KEYS {
            return key.map(|k| Key {
                key: PyString::new(py, &k),
                interned: false,
                forwarding,
            });
        }
        let key = key.map(|k| PyString::intern(py, &k));
        keys.insert(
            name.as_bytes().into(),
            (key.as_ref().map(|k| k.clone().unbind()), forwarding),
        );
        key.map(|key| Key {
            key,
            interned: true,
            forwarding,
        })
    }
}

/// A connection's environ template (see [`ConnStrings::template`]).
pub struct Template {
    /// The request host it was made for.
    pub host: Option<String>,
    pub dict: Py<PyDict>,
    /// The REQUEST_METHOD and SERVER_PROTOCOL it holds (those of the request
    /// it was made at): a request that repeats them sets neither.
    pub method: Box<str>,
    pub version: Version,
    /// The header entries of requests that repeat one field section.
    pub headers: Option<HeaderPreset>,
}

/// Most clients send the same field lines on each request of a connection
/// (an API client, a proxy's health check, a load generator): the template
/// with those requests' header entries in spares a request making them.
#[derive(Default)]
pub struct HeaderPreset {
    /// `RequestHead::header_section` of the last request (at most
    /// MAX_SECTION bytes).
    pub section: Vec<u8>,
    /// Its body was framed by its Content-Length: the one thing besides the
    /// fields that decides its entries (CONTENT_LENGTH is left out otherwise).
    pub length_framed: bool,
    /// The template plus the entries of that section, made when a second
    /// request brought it.
    pub dict: Option<Py<PyDict>>,
    /// The section holds a forwarding field.
    pub forwarding: bool,
}

/// The longest field section a connection keeps entries for.
pub const MAX_SECTION: usize = 8192;

/// What one connection's requests reuse, kept in its `ConnInfo::app_state`.
#[derive(Default)]
pub struct ConnStrings {
    /// The shared dict plus this connection's SERVER_* and REMOTE_* entries,
    /// for the request host it was made for: copied instead of the shared
    /// one, it saves setting them again. Made at a connection's second
    /// request, so a one-request connection does not pay for it.
    pub template: Option<Template>,
    /// An earlier request came on this connection.
    pub seen: bool,
    /// The last value of each header: its key, the bytes, and the str.
    values: Vec<(Py<PyString>, Vec<u8>, Py<PyString>)>,
}

impl ConnStrings {
    /// The str for header value `raw` under `key` (a kept, interned one):
    /// the last request's if it sent the same bytes, else made by `make`
    /// (and kept for the next).
    pub fn value<'py>(
        &mut self,
        py: Python<'py>,
        key: &Bound<'py, PyString>,
        raw: &[u8],
        make: impl FnOnce() -> Bound<'py, PyString>,
    ) -> Bound<'py, PyString> {
        let slot = self.values.iter_mut().find(|(k, _, _)| k.is(key));
        if let Some((_, bytes, s)) = slot {
            if bytes.as_slice() == raw {
                return s.bind(py).clone();
            }
            let made = make();
            if raw.len() <= MAX_VALUE_LEN {
                bytes.clear();
                bytes.extend_from_slice(raw);
                *s = made.clone().unbind();
            }
            return made;
        }
        let made = make();
        if self.values.len() < MAX_VALUES && raw.len() <= MAX_VALUE_LEN {
            self.values
                .push((key.clone().unbind(), raw.to_vec(), made.clone().unbind()));
        }
        made
    }
}
