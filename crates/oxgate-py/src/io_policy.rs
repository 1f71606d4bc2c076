//! The I/O thread's scheduling policy with app threads (one of them
//! included, once calls go to it), steered by load. No Python here.
//!
//! While requests arrive as the app works, each one wakes the I/O thread,
//! which by default preempts the app thread on a shared core: two context
//! switches and a cold cache per request (a Django view on one core: 250
//! against 160 us of CPU per request). SCHED_BATCH takes the wakeup
//! preemption away, so the I/O thread runs once the app thread blocks,
//! parks or uses up its slice, and handles every connection that became
//! ready meanwhile in one turn. It keeps its CPU weight. But when requests
//! come one at a time (one client, or a light load), the app thread is
//! done with one before the next arrives, and batching only delays the
//! I/O thread: hello over one connection took 81 against 52 us per
//! request. So the policy follows the load: SCHED_BATCH once requests
//! keep finding a busy app thread, the default once they no longer do.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Contention is counted over windows this long...
const WINDOW: Duration = Duration::from_millis(50);
/// ...and this many contended looks in one turn the policy to batching...
const TO_BATCH: u32 = 16;
/// ...which a window with fewer than this many turns back.
const TO_DEFAULT: u32 = 4;

pub struct IoPolicy {
    state: Mutex<Steer>,
}

struct Steer {
    batch: bool,
    window: Instant,
}

impl IoPolicy {
    pub fn new() -> Self {
        IoPolicy {
            state: Mutex::new(Steer {
                batch: false,
                window: Instant::now(),
            }),
        }
    }

    /// Called on the I/O thread (the policy is the calling thread's) each
    /// time it looks at the queue; `contended` counts the looks that found
    /// requests waiting while an app thread was busy, and is reset here.
    pub fn steer(&self, contended: &AtomicU32) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = contended.load(Ordering::Relaxed);
        if !st.batch && seen >= TO_BATCH {
            st.batch = set(true);
            st.window = Instant::now();
            contended.store(0, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        if now.duration_since(st.window) < WINDOW {
            return;
        }
        if st.batch && seen < TO_DEFAULT {
            st.batch = set(false);
        }
        st.window = now;
        contended.store(0, Ordering::Relaxed);
    }
}

/// Put the calling thread on SCHED_BATCH (`batch`) or the default policy;
/// returns the policy it is on.
fn set(batch: bool) -> bool {
    #[cfg(target_os = "linux")]
    {
        let policy = if batch {
            libc::SCHED_BATCH
        } else {
            libc::SCHED_OTHER
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call; pid 0 is the
        // calling thread, and neither policy needs a privilege.
        if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
            log::debug!(
                "cannot set the I/O thread's scheduling policy: {}",
                std::io::Error::last_os_error()
            );
            return !batch;
        }
    }
    batch
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy() -> i32 {
        // SAFETY: pid 0 is the calling thread; no memory is passed.
        unsafe { libc::sched_getscheduler(0) }
    }

    #[test]
    fn contention_turns_batching_on_and_a_calm_window_off() {
        // On a thread of its own: the policy is per thread.
        std::thread::spawn(|| {
            let (p, seen) = (IoPolicy::new(), AtomicU32::new(0));
            seen.store(TO_BATCH - 1, Ordering::Relaxed);
            p.steer(&seen);
            assert_eq!(policy(), libc::SCHED_OTHER);
            seen.store(TO_BATCH, Ordering::Relaxed);
            p.steer(&seen);
            assert_eq!(policy(), libc::SCHED_BATCH);
            // Still contended at the window's end: it stays.
            std::thread::sleep(WINDOW);
            seen.store(TO_DEFAULT, Ordering::Relaxed);
            p.steer(&seen);
            assert_eq!(policy(), libc::SCHED_BATCH);
            assert_eq!(seen.load(Ordering::Relaxed), 0);
            // A calm window (or a quiet stretch) turns it back.
            std::thread::sleep(WINDOW);
            seen.store(TO_DEFAULT - 1, Ordering::Relaxed);
            p.steer(&seen);
            assert_eq!(policy(), libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }
}
