//! Dropping privileges in a worker: the user and group named by --user and
//! --group, and --umask. Names are resolved in the master, before any fork.

use std::ffi::CString;
use std::io;

#[derive(Debug, Clone, Copy, Default)]
pub struct Identity {
    pub uid: Option<libc::uid_t>,
    pub gid: Option<libc::gid_t>,
    pub umask: libc::mode_t,
}

/// Resolve a user name or numeric uid; its primary group comes with it.
pub fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t), String> {
    let c = CString::new(name).map_err(|_| format!("invalid user name '{name}'"))?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage that stays
    // valid until the next getpw* call; we copy the two fields at once and
    // the master is single-threaded.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if !pw.is_null() {
        // SAFETY: non-null, see above.
        return Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) });
    }
    match name.parse::<libc::uid_t>() {
        Ok(uid) => Ok((uid, uid)),
        Err(_) => Err(format!(
            "unknown user '{name}' (give a user name from /etc/passwd or a uid)"
        )),
    }
}

pub fn lookup_group(name: &str) -> Result<libc::gid_t, String> {
    let c = CString::new(name).map_err(|_| format!("invalid group name '{name}'"))?;
    // SAFETY: as in lookup_user, for getgrnam.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if !gr.is_null() {
        // SAFETY: non-null, see above.
        return Ok(unsafe { (*gr).gr_gid });
    }
    name.parse::<libc::gid_t>()
        .map_err(|_| format!("unknown group '{name}' (give a group name from /etc/group or a gid)"))
}

impl Identity {
    /// Apply in the worker: umask, then group, then user (after setuid the
    /// process could no longer change its group).
    pub fn apply(&self) -> io::Result<()> {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(self.umask) };
        if let Some(gid) = self.gid {
            // SAFETY: plain syscalls on our own credentials.
            if unsafe { libc::setgroups(1, &gid) } != 0
                && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
            {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::setgid(gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(uid) = self.uid {
            // SAFETY: as above.
            if unsafe { libc::setuid(uid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
