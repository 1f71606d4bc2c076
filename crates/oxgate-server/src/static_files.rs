//! Static files (--static-map, --django-static), answered by the I/O loop
//! without the app: which file, conditional requests, ranges and
//! precompressed variants, with the body sent by sendfile(2). The rules on
//! paths, ranges, tags and types are oxgate-proto's; this module adds the
//! file system: where symlinks lead, and what the file is.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use oxgate_proto::byte_range::{self, Range};
use oxgate_proto::static_path::{self, Lookup};
use oxgate_proto::{media_type, validators, RequestHead};

use crate::handler::{ResponseHead, ResponseMsg};

/// A year, for names that carry a content hash (RFC 9111 section 5.2.2.1
/// advises no more).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The mounts of a worker, longest prefix first.
#[derive(Debug)]
pub struct StaticFiles {
    mounts: Vec<Mount>,
    /// Cache-Control for names without a hash.
    cache_control: String,
}

#[derive(Debug)]
pub(crate) struct Mount {
    /// Without a trailing slash ("" for "/").
    prefix: String,
    /// Canonical: every file served must resolve to a path under it.
    root: PathBuf,
    /// The root opened (O_PATH), for openat2(2) beneath it.
    dir: File,
}

/// A request path under a mount.
pub(crate) struct Route<'a> {
    mount: &'a Mount,
    lookup: Lookup,
}

impl StaticFiles {
    /// `mounts`: (URL prefix without trailing slash, directory).
    pub fn new(mounts: &[(String, PathBuf)], max_age: u64) -> io::Result<StaticFiles> {
        let mut out = Vec::with_capacity(mounts.len());
        for (prefix, dir) in mounts {
            let root = std::fs::canonicalize(dir).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("static directory '{}': {e}", dir.display()),
                )
            })?;
            let dir = open_dir(&root)?;
            out.push(Mount {
                prefix: prefix.clone(),
                root,
                dir,
            });
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        Ok(StaticFiles {
            mounts: out,
            cache_control: format!("public, max-age={max_age}"),
        })
    }

    /// The mount `path` is under, if any (the longest prefix wins).
    pub(crate) fn route(&self, path: &str) -> Option<Route<'_>> {
        self.mounts
            .iter()
            .find_map(|mount| match static_path::lookup(&mount.prefix, path) {
                Lookup::Elsewhere => None,
                lookup => Some(Route { mount, lookup }),
            })
    }

    /// The whole answer to `head`, as messages to `out`.
    pub(crate) fn respond(
        &self,
        route: Route<'_>,
        head: &RequestHead,
        out: &mut dyn FnMut(ResponseMsg),
    ) {
        let method = head.method();
        if method != "GET" && method != "HEAD" {
            let mut resp = ResponseHead::new(405, "405 Method Not Allowed");
            resp.push_header("Allow", "GET, HEAD");
            return small(out, resp, b"Method Not Allowed\n");
        }
        let Lookup::File(segments) = route.lookup else {
            return not_found(out);
        };
        let mut path = PathBuf::new();
        for s in &segments {
            path.push(OsStr::from_bytes(s));
        }
        let Some((file, meta)) = open_under(route.mount, &path) else {
            return not_found(out);
        };
        let name = segments.last().map_or(&[][..], Vec::as_slice);
        self.file(head, name, &path, route.mount, file, &meta, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        head: &RequestHead,
        name: &[u8],
        path: &Path,
        mount: &Mount,
        file: File,
        meta: &Metadata,
        out: &mut dyn FnMut(ResponseMsg),
    ) {
        let range = head.header("range");
        // Precompressed siblings: preferred when the client takes them, and
        // a Vary either way, so caches keep the codings apart.
        let accept = head.header("accept-encoding").unwrap_or_default();
        let mut vary = false;
        let mut chosen = None;
        for (coding, suffix) in [("br", ".br"), ("gzip", ".gz")] {
            let mut sibling = path.as_os_str().to_owned();
            sibling.push(suffix);
            let Some(variant) = open_under(mount, Path::new(&sibling)) else {
                continue;
            };
            vary = true;
            if chosen.is_none() && range.is_none() && validators::accepts(accept, coding) {
                chosen = Some((coding, variant));
            }
        }
        let (coding, (file, meta)) = match chosen {
            Some((coding, variant)) => (Some(coding), variant),
            None => (None, (file, meta.clone())),
        };
        let size = meta.len();
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let since_epoch = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        let tag = validators::etag(size, since_epoch.as_nanos(), coding);
        let last_modified = httpdate::fmt_http_date(mtime);
        let cache = if media_type::is_hashed(name) {
            IMMUTABLE
        } else {
            self.cache_control.as_str()
        };
        let headers = |status: u16, line: &str| {
            let mut h = ResponseHead::new(status, line);
            h.push_header("ETag", &tag);
            h.push_header("Last-Modified", &last_modified);
            h.push_header("Cache-Control", cache);
            if vary {
                h.push_header("Vary", "Accept-Encoding");
            }
            h
        };
        if not_modified(head, &tag, since_epoch.as_secs()) {
            let resp = headers(304, "304 Not Modified");
            out(ResponseMsg::Head(resp));
            return out(ResponseMsg::End);
        }
        let range = match range {
            Some(r) if range_applies(head, &tag, since_epoch.as_secs()) => {
                byte_range::parse(r, size)
            }
            _ => Range::Full,
        };
        let (mut resp, offset, len) = match range {
            Range::Full => (headers(200, "200 OK"), 0, size),
            Range::Part { start, end } => {
                let mut h = headers(206, "206 Partial Content");
                h.push_header("Content-Range", &format!("bytes {start}-{end}/{size}"));
                (h, start, end - start + 1)
            }
            Range::Unsatisfiable => {
                let mut h = ResponseHead::new(416, "416 Range Not Satisfiable");
                h.push_header("Content-Range", &format!("bytes */{size}"));
                return small(out, h, b"Range Not Satisfiable\n");
            }
        };
        resp.push_header("Content-Type", media_type::content_type(name));
        if let Some(coding) = coding {
            resp.push_header("Content-Encoding", coding);
        }
        resp.push_header("Accept-Ranges", "bytes");
        resp.push_header("X-Content-Type-Options", "nosniff");
        resp.content_length = Some(len);
        out(ResponseMsg::Head(resp));
        if len > 0 {
            out(ResponseMsg::File { file, offset, len });
        }
        out(ResponseMsg::End);
    }
}

/// Open `rel` (relative to the mount's root) if it is a regular file that
/// resolves, symlinks followed, to a place under the root.
fn open_under(mount: &Mount, rel: &Path) -> Option<(File, Metadata)> {
    let file = match open_beneath(&mount.dir, rel) {
        Ok(file) => file,
        // EXDEV: an absolute symlink, which openat2 will not follow
        // beneath a root; ENOSYS: a kernel before 5.6. Both take the slow
        // way: resolve the whole path, then check where it landed.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ENOSYS)) => {
            let real = std::fs::canonicalize(mount.root.join(rel)).ok()?;
            if !real.starts_with(&mount.root) {
                return None;
            }
            use std::os::unix::fs::OpenOptionsExt;
            // Non-blocking: opening a FIFO must not stall the I/O loop.
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&real)
                .ok()?
        }
        Err(_) => return None,
    };
    let meta = file.metadata().ok()?;
    meta.is_file().then_some((file, meta))
}

fn open_dir(root: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(root)
}

/// openat2(2) with RESOLVE_BENEATH: one system call that refuses any path
/// (`..`, a symlink) leading outside `dir`, where resolving and checking
/// the path ourselves costs a call per component.
fn open_beneath(dir: &File, rel: &Path) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let path = std::ffi::CString::new(rel.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain old data; all-zero is its documented
    // "no options" value, and the fields we need are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `dir` is an open descriptor, `path` a NUL-terminated string
    // and `how` a valid open_how of the size passed; the kernel only reads
    // them for the duration of the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us, open and
    // owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// RFC 9110 section 13.2.2: If-None-Match decides when present; else
/// If-Modified-Since (seconds: HTTP dates have no finer unit).
fn not_modified(head: &RequestHead, tag: &str, mtime: u64) -> bool {
    if let Some(inm) = head.header("if-none-match") {
        return validators::none_match(inm, tag);
    }
    match head.header("if-modified-since").and_then(http_date) {
        Some(since) => mtime <= since,
        None => false,
    }
}

/// Ranges are for GET only (RFC 9110 section 14.2), and with If-Range
/// (section 13.1.5) only if the file is still the one the client has part of.
fn range_applies(head: &RequestHead, tag: &str, mtime: u64) -> bool {
    if head.method() != "GET" {
        return false;
    }
    let Some(cond) = head.header("if-range") else {
        return true;
    };
    let Ok(cond) = std::str::from_utf8(cond) else {
        return false;
    };
    let cond = cond.trim();
    if cond.starts_with('"') || cond.starts_with("W/") {
        return validators::if_range_tag_matches(cond, tag);
    }
    http_date(cond.as_bytes()) == Some(mtime)
}

/// Seconds since the epoch of an HTTP-date.
fn http_date(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let t: SystemTime = httpdate::parse_http_date(text.trim()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

fn not_found(out: &mut dyn FnMut(ResponseMsg)) {
    small(out, ResponseHead::new(404, "404 Not Found"), b"Not Found\n");
}

fn small(out: &mut dyn FnMut(ResponseMsg), mut head: ResponseHead, body: &'static [u8]) {
    head.push_header("Content-Type", "text/plain; charset=utf-8");
    out(ResponseMsg::Whole(head, Bytes::from_static(body)));
}
