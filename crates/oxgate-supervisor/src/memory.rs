//! A worker's resident memory, read from /proc/PID/statm (Linux).

/// Resident set size in bytes, or None when it cannot be read.
pub fn rss_bytes(pid: libc::pid_t) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn own_rss_is_readable_and_plausible() {
        let rss = super::rss_bytes(std::process::id() as libc::pid_t).unwrap();
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
