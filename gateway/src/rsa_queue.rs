//! Who gets the next RSA worker (`[limits] rsa-workers`): first come, first served while few
//! connections wait, newest first once more than `lifo_after` do.
//!
//! A FIFO queue is fair until a flood fills it: then every handshake, a real user's too,
//! waits behind the whole flood (200 queued four-block handshakes are most of a second on two
//! cores). Serving the newest waiter first under overload ("adaptive LIFO") lets a handshake
//! that just arrived through in a few worker slots, while the backlog waits; a connection
//! that gave up is skipped when its turn comes (its permit goes to the next waiter), and one
//! that waits too long is closed by its idle check as before. The backlog is the flood's own
//! connections in the first place, so it is mostly the flood that waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The RSA worker permits.
#[derive(Debug)]
pub(crate) struct RsaQueue {
    inner: Mutex<Inner>,
    /// Waiters beyond which the newest is served first.
    lifo_after: usize,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    waiters: VecDeque<oneshot::Sender<RsaPermit>>,
}

/// One RSA worker, given back when dropped.
#[derive(Debug)]
pub(crate) struct RsaPermit {
    queue: Option<Arc<RsaQueue>>,
}

impl Drop for RsaPermit {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            RsaQueue::release(q);
        }
    }
}

/// The queue went away while waiting (the gateway is shutting down).
#[derive(Debug)]
pub(crate) struct Closed;

impl RsaQueue {
    /// `workers` permits (at least one); newest first once more than `lifo_after` wait.
    pub(crate) fn new(workers: usize, lifo_after: usize) -> RsaQueue {
        RsaQueue { inner: Mutex::new(Inner { free: workers.max(1), waiters: VecDeque::new() }), lifo_after }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics while holding the lock; recover the data if something did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a permit (the name and shape of tokio's `Semaphore::acquire_owned`).
    pub(crate) async fn acquire_owned(self: Arc<Self>) -> Result<RsaPermit, Closed> {
        let rx = {
            let mut g = self.lock();
            if g.free > 0 {
                g.free -= 1;
                drop(g);
                return Ok(RsaPermit { queue: Some(self) });
            }
            let (tx, rx) = oneshot::channel();
            g.waiters.push_back(tx);
            rx
        };
        // A permit sent to a receiver dropped meanwhile is dropped with it, which releases it.
        rx.await.map_err(|_| Closed)
    }

    fn release(queue: Arc<RsaQueue>) {
        let lifo_after = queue.lifo_after;
        let this = queue.clone();
        let mut permit = RsaPermit { queue: Some(queue) };
        let mut g = this.lock();
        loop {
            let next = if g.waiters.len() > lifo_after { g.waiters.pop_back() } else { g.waiters.pop_front() };
            let Some(tx) = next else {
                // Nobody waits: the permit goes back to the pool (without a recursive release).
                permit.queue = None;
                g.free += 1;
                return;
            };
            match tx.send(permit) {
                Ok(()) => return,
                // That connection is gone: the next waiter.
                Err(p) => permit = p,
            }
        }
    }

    /// Connections waiting for a permit.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a waiter that records its number when it gets a permit, then holds it until
    /// told to finish.
    fn waiter(
        q: &Arc<RsaQueue>,
        n: usize,
        order: &Arc<Mutex<Vec<usize>>>,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let (q, order) = (q.clone(), order.clone());
        let h = tokio::spawn(async move {
            let _p = q.acquire_owned().await.unwrap();
            order.lock().unwrap().push(n);
            let _ = done_rx.await;
        });
        (h, done_tx)
    }

    async fn until_waiting(q: &RsaQueue, n: usize) {
        while q.waiting() < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn fifo_while_short_newest_first_when_long_and_gone_waiters_are_skipped() {
        let q = Arc::new(RsaQueue::new(1, 2));
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = q.clone().acquire_owned().await.unwrap();
        // Five waiters; the third gives up before its turn.
        let mut w = Vec::new();
        for n in 1..=5 {
            w.push(waiter(&q, n, &order));
            until_waiting(&q, n).await;
        }
        w[2].0.abort();
        let _ = (&mut w[2].0).await;
        // Five queued (> 2): the newest first; 5 holds the permit until told.
        drop(held);
        while order.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        // Then 4 (four entries still queued, one of them gone: newest first again), and once
        // no more than two wait, first come first served: 1, then 2 (3 gave up: skipped).
        for (i, expected_len) in [(4, 2), (3, 3), (0, 4)] {
            let (_, done) = w.remove(i);
            let _ = done.send(());
            while order.lock().unwrap().len() < expected_len {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(*order.lock().unwrap(), vec![5, 4, 1, 2]);
        let (h, done) = w.remove(0);
        let _ = done.send(());
        let _ = h.await;
        let free = q.lock().free;
        assert_eq!((free, q.waiting()), (1, 0), "the permit is back once nobody waits");
    }

    #[tokio::test]
    async fn permits_come_back() {
        let q = Arc::new(RsaQueue::new(2, 4));
        let a = q.clone().acquire_owned().await.unwrap();
        let b = q.clone().acquire_owned().await.unwrap();
        assert_eq!(q.lock().free, 0);
        drop((a, b));
        assert_eq!(q.lock().free, 2);
        // A receiver dropped with its permit inside gives the permit back too.
        let c = q.clone().acquire_owned().await.unwrap();
        let d = q.clone().acquire_owned().await.unwrap();
        let pending = tokio::spawn(q.clone().acquire_owned());
        until_waiting(&q, 1).await;
        pending.abort();
        let _ = pending.await;
        drop((c, d));
        assert_eq!(q.lock().free, 2);
    }
}
