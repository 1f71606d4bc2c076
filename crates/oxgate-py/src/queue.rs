//! The bounded queue between the I/O thread and the app threads, which
//! wakes an app thread only when no awake one will get to a request soon.
//! No Python and no I/O here.
//!
//! Waking an idle thread for every request (what a plain channel does)
//! makes N threads take turns on the GIL: a futex wake and a context
//! switch or two per request, and a cold cache for each. A busy thread
//! comes back for the next request by itself, so while requests keep
//! leaving the queue one awake thread is enough. Only when none has left
//! it for `stall` and the awake threads are not using the CPU either (they
//! wait on I/O, the GIL released) does another thread join in, up to
//! `--threads`: a thread that computes holds the GIL, so another one could
//! only wait for it. A call that computes for `slice` gets company anyway,
//! so the requests behind it share the GIL with it (Python switches
//! threads every 5 ms) instead of waiting for its end. A thread that then
//! finds the GIL in use by the others (`Taker::retire`) parks again
//! rather than take its turn on it with every request.
//!
//! The I/O thread looks for stalls with `tend`, on its own timer, so no
//! app thread has to wake up to watch. Pushing wakes nobody either: the
//! I/O thread calls `tend` when it is about to sleep, so the requests it
//! read in one turn of its loop wake one thread once, and that thread does
//! not cut the turn short by preempting it (on a shared core the woken
//! thread tends to run at once). The most recently parked thread is woken
//! first, its cache still warm.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

pub struct Queue<T> {
    state: Mutex<State<T>>,
    cap: usize,
    stall: Duration,
    slice: Duration,
    /// Requests pushed while a thread was busy: they arrive as the app
    /// works (see `io_policy`).
    pub contended: AtomicU32,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Threads running a request, or woken to take one.
    busy: usize,
    /// Parked threads, the most recently parked last.
    idle: Vec<usize>,
    /// Every taker's thread, by taker id.
    threads: Vec<Slot>,
    /// The last take, or the last time a thread was called in.
    progress: Instant,
    /// Stall checks in a row that found every busy thread blocked.
    blocked_seen: u32,
}

struct Slot {
    thread: Thread,
    parked: bool,
    /// /proc/self/task/TID/stat, for the thread's scheduler state.
    stat: Option<Arc<File>>,
}

/// Whether the thread is running or ready to run (state R), rather than
/// blocked: in I/O, a sleep, or waiting for the GIL.
fn computing(stat: &File) -> bool {
    let mut buf = [0u8; 256];
    let Ok(n) = stat.read_at(&mut buf, 0) else {
        return false;
    };
    // "TID (comm) S ...": the name may hold anything but the last ')'.
    let line = &buf[..n];
    line.iter()
        .rposition(|&b| b == b')')
        .and_then(|i| line.get(i + 2))
        .is_some_and(|&state| state == b'R')
}

/// What `take_front_if` found.
pub enum Front<T> {
    Empty,
    /// The first item, which the caller did not want.
    Refused,
    Taken(T),
}

/// One app thread's place in the queue.
pub struct Taker {
    id: usize,
    /// Counted in `busy`.
    counted: bool,
    /// Park at the next take if another thread is busy: this one waited
    /// for the GIL, so the busy ones keep it in use without its help.
    pub retire: bool,
    /// More items waited behind the one it took last.
    pub more: bool,
}

impl<T> Queue<T> {
    /// At most `cap` items wait; another thread is called in once none
    /// was taken for `stall` while the busy ones are blocked, or for
    /// `slice` whatever they do.
    pub fn new(cap: usize, stall: Duration, slice: Duration) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(cap.clamp(1, 1024)),
                closed: false,
                busy: 0,
                idle: Vec::new(),
                threads: Vec::new(),
                progress: Instant::now(),
                blocked_seen: 0,
            }),
            cap: cap.max(1),
            stall,
            slice,
            contended: AtomicU32::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `item`; gives it back when the queue is full or closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut st = self.lock();
        if st.closed || st.items.len() >= self.cap {
            return Err(item);
        }
        if st.busy > 0 {
            self.contended.fetch_add(1, Ordering::Relaxed);
        }
        st.items.push_back(item);
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// The first item, taken by a caller that is not a taker (the I/O
    /// thread running queued requests itself) if `ok` accepts it.
    pub fn take_front_if(&self, ok: impl FnOnce(&T) -> bool) -> Front<T> {
        let mut st = self.lock();
        match st.items.front() {
            None => Front::Empty,
            Some(item) if !ok(item) => Front::Refused,
            Some(_) => st.next(false).map_or(Front::Empty, Front::Taken),
        }
    }

    /// Wake a thread for what was pushed if none is busy, and call in
    /// another if requests wait and none was taken for `stall` (`join`).
    /// Returns when to look again; None while nothing waits (the next
    /// push is the time to look).
    pub fn tend(&self, join: bool) -> Option<Duration> {
        let mut st = self.lock();
        if st.items.is_empty() {
            return None;
        }
        if st.busy == 0 {
            call_in(st);
            // On a shared core the thread called in has often taken its
            // request already: then there is nothing to look at again, and
            // a timer armed from here costs the I/O thread a wakeup (a
            // timer earlier than the driver's next makes tokio write its
            // eventfd).
            return (join && !self.is_empty()).then_some(self.stall);
        }
        if !join {
            return None;
        }
        let since = st.progress.elapsed();
        if since < self.stall {
            st.blocked_seen = 0;
            return Some(self.stall - since);
        }
        // A busy thread that runs (or waits only for the CPU: this thread
        // may be on its core) holds the GIL: another could only wait for
        // it, until a call that long deserves turns on the GIL.
        if since < self.slice {
            // Read without the lock, which a busy thread may be waiting for.
            let stats: Vec<Arc<File>> = st
                .threads
                .iter()
                .filter(|s| !s.parked)
                .filter_map(|s| s.stat.clone())
                .collect();
            drop(st);
            let running = stats.iter().any(|f| computing(f));
            st = self.lock();
            if running {
                st.blocked_seen = 0;
                return Some(self.stall);
            }
            // Blocked at two looks a period apart: not a passing lock or
            // page fault, but I/O or a sleep.
            st.blocked_seen += 1;
            if st.blocked_seen < 2 {
                return Some(self.stall);
            }
            if st.items.is_empty() {
                return None;
            }
        }
        call_in(st);
        Some(self.stall)
    }

    /// Refuse new items; the threads finish what is queued and go.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let mut woken = Vec::new();
        while let Some(t) = st.wake_one() {
            woken.push(t);
        }
        drop(st);
        woken.iter().for_each(Thread::unpark);
    }

    /// A place in the queue for the calling thread.
    pub fn taker(&self) -> Taker {
        // SAFETY: gettid(2) has no preconditions.
        let tid = unsafe { libc::gettid() };
        let stat = File::open(format!("/proc/self/task/{tid}/stat"))
            .ok()
            .map(Arc::new);
        let mut st = self.lock();
        st.threads.push(Slot {
            thread: std::thread::current(),
            parked: false,
            stat,
        });
        Taker {
            id: st.threads.len() - 1,
            counted: false,
            retire: false,
            more: false,
        }
    }

    /// The next item for `me` if one waits now (and `me` may take it: see
    /// `take`'s retiring rule), without blocking: the caller may hold the
    /// GIL, so a thread that keeps up keeps it from one request to the next.
    pub fn try_take(&self, me: &mut Taker) -> Option<T> {
        let mut st = self.lock();
        if me.retire {
            if st.busy > usize::from(me.counted) {
                // Others are busy: `take` parks it.
                return None;
            }
            // Alone: it goes on, as `take` would let it.
            me.retire = false;
        }
        let item = st.next_for(me, false)?;
        if !me.counted {
            st.busy += 1;
            me.counted = true;
        }
        Some(item)
    }

    /// The next item for `me` (made on this thread), parking while there
    /// is none, after calling `idle` once; None once the queue is closed
    /// and empty. Blocks: call it without the GIL.
    pub fn take(&self, me: &mut Taker, idle: impl Fn()) -> Option<T> {
        let mut st = self.lock();
        if !me.counted {
            st.busy += 1;
            me.counted = true;
        }
        // A thread that had to wait for the GIL parks while others are busy.
        let mut retiring = std::mem::take(&mut me.retire);
        loop {
            // An awake thread goes on with whatever is queued, before and
            // after `idle` (which may take a while, unlocked).
            if let Some(item) = st.next_for(me, retiring) {
                return Some(item);
            }
            drop(st);
            idle();
            st = self.lock();
            if let Some(item) = st.next_for(me, retiring) {
                return Some(item);
            }
            retiring = false;
            st.busy -= 1;
            me.counted = false;
            if st.closed {
                return None;
            }
            st.idle.push(me.id);
            st.threads[me.id].parked = true;
            while st.threads[me.id].parked {
                drop(st);
                std::thread::park();
                st = self.lock();
            }
            // Whoever woke us counted us busy.
            me.counted = true;
        }
    }
}

/// Call in the most recently parked thread, which then gets a stall
/// period to take its request; unparked once the lock is let go.
fn call_in<T>(mut st: MutexGuard<'_, State<T>>) {
    st.blocked_seen = 0;
    st.progress = Instant::now();
    let woken = st.wake_one();
    drop(st);
    if let Some(t) = woken {
        t.unpark();
    }
}

impl<T> State<T> {
    /// The next item for an awake thread, unless it is `retiring` and
    /// another thread is busy.
    fn next(&mut self, retiring: bool) -> Option<T> {
        if retiring && self.busy > 1 {
            return None;
        }
        let item = self.items.pop_front()?;
        self.progress = Instant::now();
        Some(item)
    }

    /// `next` for a taker, which learns whether more items wait.
    fn next_for(&mut self, me: &mut Taker, retiring: bool) -> Option<T> {
        let item = self.next(retiring)?;
        me.more = !self.items.is_empty();
        Some(item)
    }

    /// Unpark the most recently parked thread (after unlocking), counted
    /// busy from now on.
    fn wake_one(&mut self) -> Option<Thread> {
        let id = self.idle.pop()?;
        let slot = &mut self.threads[id];
        slot.parked = false;
        self.busy += 1;
        Some(slot.thread.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn parked_threads<T>(q: &Queue<T>, n: usize) {
        while q.lock().idle.len() < n {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn spawn_taker(q: &Arc<Queue<u32>>) -> std::thread::JoinHandle<Vec<u32>> {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut me = q.taker();
            let mut got = Vec::new();
            while let Some(v) = q.take(&mut me, || {}) {
                got.push(v);
            }
            got
        })
    }

    #[test]
    fn a_busy_thread_is_not_joined_while_it_keeps_taking() {
        let q = Arc::new(Queue::new(
            16,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        ));
        let mut me = q.taker();
        q.push(0).unwrap();
        assert_eq!(q.take(&mut me, || {}), Some(0));
        let other = spawn_taker(&q);
        parked_threads(&q, 1);
        for v in 1..6 {
            q.push(v).unwrap();
            // No stall: the other thread stays parked.
            assert!(q.tend(true).is_some());
            assert_eq!(q.take(&mut me, || {}), Some(v));
        }
        assert_eq!(q.lock().idle.len(), 1);
        q.close();
        assert_eq!(q.take(&mut me, || {}), None);
        assert!(other.join().unwrap().is_empty());
    }

    /// Two threads: one took item 1 and holds it, blocked in a sleep (as
    /// in I/O) or computing; the other is parked. 2 is then pushed.
    struct Held {
        q: Arc<Queue<u32>>,
        holder: std::thread::JoinHandle<()>,
        release: Arc<AtomicBool>,
        parked: std::thread::JoinHandle<Vec<u32>>,
    }

    impl Held {
        fn new(stall_ms: u64, slice_ms: u64, compute: bool) -> Held {
            let q = Arc::new(Queue::new(
                16,
                Duration::from_millis(stall_ms),
                Duration::from_millis(slice_ms),
            ));
            q.push(1).unwrap();
            let (q2, release) = (q.clone(), Arc::new(AtomicBool::new(false)));
            let r = release.clone();
            let holder = std::thread::spawn(move || {
                let mut me = q2.taker();
                assert_eq!(q2.take(&mut me, || {}), Some(1));
                let mut x = 0u64;
                while !r.load(Ordering::Relaxed) {
                    if compute {
                        for i in 0..10_000u64 {
                            x = x.wrapping_mul(31).wrapping_add(i);
                        }
                        std::hint::black_box(x);
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
            while !q.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let parked = spawn_taker(&q);
            parked_threads(&q, 1);
            q.push(2).unwrap();
            Held {
                q,
                holder,
                release,
                parked,
            }
        }

        /// Tend as the I/O thread would until the queue is empty.
        fn tend_until_taken(&self) {
            while let Some(wait) = self.q.tend(true) {
                std::thread::sleep(wait);
            }
        }

        /// What the parked thread took, once all is done.
        fn finish(self) -> Vec<u32> {
            self.release.store(true, Ordering::Relaxed);
            self.holder.join().unwrap();
            self.q.close();
            self.parked.join().unwrap()
        }
    }

    #[test]
    fn a_parked_thread_is_called_in_when_the_busy_one_blocks() {
        let held = Held::new(5, 3_600_000, false);
        held.tend_until_taken();
        assert_eq!(held.finish(), vec![2]);
    }

    #[test]
    fn a_busy_thread_that_computes_is_not_joined() {
        let held = Held::new(2, 3_600_000, true);
        // The holder computes (holds "the GIL") for 30 stall periods.
        let until = Instant::now() + Duration::from_millis(60);
        while Instant::now() < until {
            std::thread::sleep(held.q.tend(true).unwrap_or(Duration::from_millis(1)));
        }
        assert!(
            !held.q.is_empty(),
            "a thread was called in beside one computing"
        );
        // The parked thread takes 2 once woken by close.
        assert_eq!(held.finish(), vec![2]);
    }

    #[test]
    fn a_long_computing_call_gets_company_after_a_slice() {
        let before_take = Instant::now();
        let held = Held::new(1, 20, true);
        held.tend_until_taken();
        // Called in, though the holder computes: a slice passed since its take.
        assert!(before_take.elapsed() >= Duration::from_millis(20));
        assert_eq!(held.finish(), vec![2]);
    }

    #[test]
    fn a_thread_that_waited_for_the_gil_parks_while_another_is_busy() {
        // The holder is busy with 1 (Held pushes 2, parks a taker).
        let held = Held::new(3_600_000, 3_600_000, false);
        let q = held.q.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let retiring = std::thread::spawn(move || {
            let mut me = q.taker();
            let first = q.take(&mut me, || {});
            me.retire = true;
            tx.send(first).unwrap();
            q.push(3).unwrap();
            // Parks though 3 waits, until close wakes it.
            let after = q.take(&mut me, || {});
            (first, after)
        });
        assert_eq!(rx.recv().unwrap(), Some(2));
        parked_threads(&held.q, 2);
        assert!(!held.q.is_empty(), "the retiring thread took 3");
        // Woken by close, one of the two parked threads takes 3.
        let other = held.finish();
        let (_, after) = retiring.join().unwrap();
        assert_eq!(other.len() + usize::from(after.is_some()), 1);
    }

    #[test]
    fn a_thread_alone_takes_what_waits_even_if_it_waited_for_the_gil() {
        let q = Queue::new(4, Duration::from_secs(3600), Duration::from_secs(3600));
        let mut me = q.taker();
        q.push(1).unwrap();
        assert_eq!(q.take(&mut me, || {}), Some(1));
        me.retire = true;
        q.push(2).unwrap();
        assert_eq!(q.take(&mut me, || {}), Some(2));
    }

    #[test]
    fn try_take_takes_what_waits_but_leaves_a_retiring_thread_to_park() {
        let q = Queue::new(4, Duration::from_secs(3600), Duration::from_secs(3600));
        let (mut me, mut other) = (q.taker(), q.taker());
        assert_eq!(q.try_take(&mut me), None);
        q.push(1).unwrap();
        assert_eq!(q.try_take(&mut me), Some(1));
        // Alone, a thread that waited for the GIL goes on.
        me.retire = true;
        q.push(2).unwrap();
        assert_eq!(q.try_take(&mut me), Some(2));
        assert!(!me.retire);
        // With another busy, it is left to `take`, which parks it.
        q.push(3).unwrap();
        assert_eq!(q.try_take(&mut other), Some(3));
        me.retire = true;
        q.push(4).unwrap();
        assert_eq!(q.try_take(&mut me), None);
        assert!(me.retire);
        assert_eq!(q.lock().busy, 2);
    }

    #[test]
    fn an_idle_pool_is_woken_by_a_push_one_thread_for_a_burst() {
        let q = Arc::new(Queue::new(
            64,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        ));
        let threads: Vec<_> = (0..3).map(|_| spawn_taker(&q)).collect();
        parked_threads(&q, 3);
        for v in 0..20 {
            q.push(v).unwrap();
        }
        // Pushing wakes nobody; the I/O thread's tend does, once.
        assert_eq!(q.lock().idle.len(), 3);
        q.tend(true);
        while !q.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        q.close();
        let got: Vec<Vec<u32>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 20);
        assert_eq!(got.iter().filter(|g| !g.is_empty()).count(), 1, "{got:?}");
    }

    #[test]
    fn a_full_or_closed_queue_gives_the_item_back() {
        let q = Queue::new(1, Duration::from_millis(1), Duration::from_secs(1));
        q.push(1).unwrap();
        assert_eq!(q.push(2), Err(2));
        q.close();
        let mut me = q.taker();
        assert_eq!(q.take(&mut me, || {}), Some(1));
        assert_eq!(q.take(&mut me, || {}), None);
        assert_eq!(q.push(3), Err(3));
    }

    #[test]
    fn only_a_push_while_a_thread_is_busy_counts_as_contended() {
        let q = Queue::new(16, Duration::from_secs(3600), Duration::from_secs(3600));
        let mut me = q.taker();
        q.push(1).unwrap();
        assert_eq!(q.contended.load(Ordering::Relaxed), 0);
        // Taken: this thread is busy until its next take finds nothing.
        assert_eq!(q.take(&mut me, || {}), Some(1));
        q.push(2).unwrap();
        assert_eq!(q.contended.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_front_is_taken_only_if_wanted_and_in_order() {
        let q = Queue::new(8, Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(q.take_front_if(|_: &u32| true), Front::Empty));
        for v in [1, 2, 3] {
            q.push(v).unwrap();
        }
        assert!(matches!(q.take_front_if(|v| *v != 1), Front::Refused));
        assert!(matches!(q.take_front_if(|v| *v == 1), Front::Taken(1)));
        assert!(matches!(q.take_front_if(|_| true), Front::Taken(2)));
        let mut me = q.taker();
        assert_eq!(q.try_take(&mut me), Some(3));
        assert!(q.is_empty());
    }
}
