//! The `Date` header value (RFC 9110 6.6.1), formatted once a second.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Calls `f` with the current HTTP date; the string is rebuilt only when
/// the second changes, so a busy connection pays one compare per response.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHE.with(|cell| {
        let mut cache = cell.borrow_mut();
        if cache.0 != secs || cache.1.is_empty() {
            *cache = (secs, httpdate::fmt_http_date(now));
        }
        f(&cache.1)
    })
}
