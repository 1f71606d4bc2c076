//! One response's messages on their way from an app thread to the I/O
//! thread, and the byte budget (--response-buffer) that bounds them.
//!
//! One allocation per request: tokio's unbounded channel allocated a
//! 32-slot block (about 2.9 KB, past glibc's per-thread cache) for every
//! response, which cost a queued request more than its thread hop did.
//! Messages reach the queue only through the outbox, on the I/O thread, so
//! waking the receiving task never crosses threads.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use tokio::time::{Instant, Sleep};

use crate::handler::{Disconnected, ResponseMsg};

/// Per-message bookkeeping counted against the buffer, so a response of
/// many tiny chunks is bounded too.
pub(crate) const MSG_OVERHEAD: usize = 64;

/// A message's weight against the buffer.
pub(crate) fn cost(msg: &ResponseMsg) -> usize {
    MSG_OVERHEAD
        + match msg {
            ResponseMsg::Whole(_, b) | ResponseMsg::Body(b) => b.len(),
            _ => 0,
        }
}

struct Shared {
    limit: usize,
    state: Mutex<State>,
    /// Room was made, or the receiver went: for app threads that wait.
    freed: Condvar,
    /// Live `QueueTx`es, those waiting in the outbox included: at none,
    /// the app side gave up or finished.
    senders: AtomicUsize,
    /// The receiver is gone. Set before its drop takes the lock, so a
    /// sender that checks it under the lock and then waits is woken.
    closed: AtomicBool,
}

struct State {
    /// The oldest message; most responses are one message, which then
    /// needs no allocation beyond the shared block.
    first: Option<ResponseMsg>,
    rest: VecDeque<ResponseMsg>,
    /// Bytes the app side handed over that the I/O side has not taken.
    queued: usize,
    /// App threads waiting for room: notifying costs a futex syscall, so
    /// only when one waits.
    waiting: usize,
    /// The receiving task, when it waits for a message.
    waker: Option<Waker>,
}

impl State {
    fn push(&mut self, msg: ResponseMsg) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(msg);
        } else {
            self.rest.push_back(msg);
        }
    }

    fn pop(&mut self) -> Option<ResponseMsg> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The budget's rule: a message of `n` bytes waits while `queued` bytes are
/// waiting and it would take them past `limit`; one larger than the whole
/// buffer goes once the buffer is empty.
pub(crate) fn must_wait(queued: usize, n: usize, limit: usize) -> bool {
    queued > 0 && queued.saturating_add(n) > limit
}

/// A response queue whose app side may run `limit` bytes ahead.
pub(crate) fn queue(limit: usize) -> (QueueTx, ResponseRx) {
    let shared = Arc::new(Shared {
        limit: limit.max(1),
        state: Mutex::new(State {
            first: None,
            rest: VecDeque::new(),
            queued: 0,
            waiting: 0,
            waker: None,
        }),
        freed: Condvar::new(),
        senders: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
    });
    (QueueTx(shared.clone()), ResponseRx(shared))
}

/// The app side's end.
pub(crate) struct QueueTx(Arc<Shared>);

impl Clone for QueueTx {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        QueueTx(self.0.clone())
    }
}

impl Drop for QueueTx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The receiver learns under the lock that nothing more comes.
            let waker = self.0.lock().waker.take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl QueueTx {
    /// Wait for room for `n` bytes, after `before_wait` if it must; a
    /// message larger than the whole buffer goes once the buffer is empty.
    pub(crate) fn reserve(&self, n: usize, before_wait: impl FnOnce()) -> Result<(), Disconnected> {
        let shared = &*self.0;
        let mut st = shared.lock();
        let mut before_wait = Some(before_wait);
        while !self.is_closed() && must_wait(st.queued, n, shared.limit) {
            if let Some(f) = before_wait.take() {
                f();
            }
            st.waiting += 1;
            st = shared
                .freed
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
            st.waiting -= 1;
        }
        if self.is_closed() {
            return Err(Disconnected);
        }
        st.queued = st.queued.saturating_add(n);
        Ok(())
    }

    /// Whether messages of `n` bytes in all, however split, fit the buffer
    /// now without waiting (only the I/O side frees room meanwhile).
    pub(crate) fn has_room(&self, n: usize) -> bool {
        let st = self.0.lock();
        st.queued.saturating_add(n) <= self.0.limit
    }

    /// I/O side: put a message (already reserved for) on the queue.
    pub(crate) fn deliver(&self, msg: ResponseMsg) {
        let mut st = self.0.lock();
        if self.is_closed() {
            // The connection is gone: its response goes nowhere.
            return;
        }
        st.push(msg);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}

/// The I/O side's end: taking a message frees its room in the buffer.
pub(crate) struct ResponseRx(Arc<Shared>);

impl ResponseRx {
    /// The next message; `None` once every sender is gone and the queue
    /// is empty.
    pub(crate) async fn recv(&mut self) -> Option<ResponseMsg> {
        let shared = &*self.0;
        poll_fn(|cx| {
            let mut st = shared.lock();
            if let Some(msg) = st.pop() {
                st.queued = st.queued.saturating_sub(cost(&msg));
                if st.waiting > 0 {
                    shared.freed.notify_all();
                }
                return Poll::Ready(Some(msg));
            }
            if shared.senders.load(Ordering::Acquire) == 0 {
                return Poll::Ready(None);
            }
            match &mut st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// The next message, waiting no later than `by`'s instant when one
    /// applies (--timeout, until the head goes): `None` once it passed,
    /// `Some(None)` when the app side gave up. `by`'s timer may be armed
    /// for an earlier wait of its own (the connection's keep-alive): it is
    /// left as it is and moved on if it fires first, so a request costs no
    /// timer entry of its own (an insert into and a removal from the timer
    /// wheel, under its lock, per request otherwise).
    pub(crate) async fn recv_by(
        &mut self,
        by: Option<(Instant, Pin<&mut Sleep>)>,
    ) -> Option<Option<ResponseMsg>> {
        let Some((at, mut timer)) = by else {
            return Some(self.recv().await);
        };
        if timer.deadline() > at {
            timer.as_mut().reset(at);
        }
        loop {
            tokio::select! {
                biased;
                msg = self.recv() => return Some(msg),
                () = timer.as_mut() => {}
            }
            if Instant::now() >= at {
                return None;
            }
            timer.as_mut().reset(at);
        }
    }
}

impl Drop for ResponseRx {
    fn drop(&mut self) {
        let shared = &*self.0;
        shared.closed.store(true, Ordering::Release);
        let mut st = shared.lock();
        st.waker = None;
        // What waits is dropped here, on the I/O thread, not by the last
        // sender wherever it runs.
        let (first, rest) = (st.first.take(), std::mem::take(&mut st.rest));
        // Wake an app thread waiting for room: nobody will read its bytes.
        // Every response ends here: a futex wake per request costs a
        // syscall, so only when an app thread waits.
        if st.waiting > 0 {
            shared.freed.notify_all();
        }
        drop(st);
        drop((first, rest));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn body(s: &'static str) -> ResponseMsg {
        ResponseMsg::Body(Bytes::from_static(s.as_bytes()))
    }

    fn text(msg: Option<ResponseMsg>) -> String {
        match msg {
            Some(ResponseMsg::Body(b)) => String::from_utf8_lossy(&b).into_owned(),
            Some(ResponseMsg::End) => "end".into(),
            Some(_) => "other".into(),
            None => "none".into(),
        }
    }

    #[tokio::test]
    async fn messages_arrive_in_order_then_none_once_senders_go() {
        let (tx, mut rx) = queue(1 << 20);
        let tx2 = tx.clone();
        for m in [body("a"), body("b"), body("c")] {
            tx.reserve(cost(&m), || {}).unwrap();
            tx.deliver(m);
        }
        assert_eq!(text(rx.recv().await), "a");
        tx2.reserve(MSG_OVERHEAD, || {}).unwrap();
        tx2.deliver(ResponseMsg::End);
        // "first" is free again while "rest" still holds b and c.
        tx.reserve(cost(&body("d")), || {}).unwrap();
        tx.deliver(body("d"));
        drop((tx, tx2));
        let got: Vec<String> = [
            rx.recv().await,
            rx.recv().await,
            rx.recv().await,
            rx.recv().await,
            rx.recv().await,
        ]
        .into_iter()
        .map(text)
        .collect();
        assert_eq!(got, ["b", "c", "end", "d", "none"]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_delivery_and_on_the_last_sender() {
        let (tx, mut rx) = queue(1 << 20);
        let waiter = tokio::spawn(async move {
            let first = text(rx.recv().await);
            let second = text(rx.recv().await);
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.reserve(MSG_OVERHEAD + 1, || {}).unwrap();
        tx.deliver(body("x"));
        tokio::task::yield_now().await;
        drop(tx);
        let got = waiter.await.unwrap();
        assert_eq!(got, ("x".to_string(), "none".to_string()));
    }

    #[test]
    fn the_budget_holds_the_sender_until_the_receiver_takes() {
        let limit = MSG_OVERHEAD + 10;
        let (tx, mut rx) = queue(limit);
        tx.reserve(limit, || {}).unwrap();
        tx.deliver(body("0123456789"));
        let tx2 = tx.clone();
        let (seen_wait, waited) = std::sync::mpsc::channel();
        let app = std::thread::spawn(move || {
            let r = tx2.reserve(limit, || seen_wait.send(()).unwrap());
            (r, tx2)
        });
        // The app thread is held: it said so before waiting.
        waited.recv().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(text(rt.block_on(rx.recv())), "0123456789");
        let (r, _tx2) = app.join().unwrap();
        assert_eq!(r, Ok(()));
        assert!(!tx.is_closed());
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.reserve(1, || {}), Err(Disconnected));
    }

    #[test]
    fn dropping_the_receiver_frees_a_waiting_sender() {
        let limit = MSG_OVERHEAD;
        let (tx, rx) = queue(limit);
        tx.reserve(limit, || {}).unwrap();
        let (seen_wait, waited) = std::sync::mpsc::channel();
        let app = std::thread::spawn(move || tx.reserve(1, || seen_wait.send(()).unwrap()));
        waited.recv().unwrap();
        drop(rx);
        assert_eq!(app.join().unwrap(), Err(Disconnected));
    }
}
