//! Who gets the next RSA worker (`[limits] rsa-workers`): peers take turns, and within one
//! peer the oldest waiter goes first while few wait, the newest once more than `lifo_after` do.
//!
//! A single FIFO queue is fair until a flood fills it: then every handshake, a real user's
//! too, waits behind the whole flood (200 queued four-block handshakes are most of a second on
//! two cores). So waiters queue per peer (client IP, IPv6 by /64, as the connection caps count
//! them) and a released permit goes to the next peer in a round robin over the peers that
//! have waiters: a handshake from another address waits for about one job per other busy
//! peer, however deep one flooder's backlog is. Within a peer, serving the newest first under
//! overload ("adaptive LIFO") lets that peer's fresh handshake through while its backlog
//! waits (behind `mpush-proxy` or a NAT every client is one peer).
//!
//! A waiter that gives up (its connection closed) is skipped when its turn comes, and the
//! queue is compacted once such entries outnumber the live ones, so its memory stays within
//! twice the live waiters, who are bounded by the open unauthenticated connections.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The RSA worker permits.
#[derive(Debug)]
pub(crate) struct RsaQueue {
    inner: Mutex<Inner>,
    /// A peer's waiters beyond which its newest is served first.
    lifo_after: usize,
}

#[derive(Debug)]
struct Inner {
    free: usize,
    /// Waiters by peer; a peer is here only while it has entries.
    peers: HashMap<IpAddr, VecDeque<oneshot::Sender<RsaPermit>>>,
    /// The peers in `peers`, each once, in the order they get their next turn.
    turns: VecDeque<IpAddr>,
    /// Entries in `peers`, live or given up.
    queued: usize,
    /// Entries whose waiter gave up (at least as many as are still queued): when they are
    /// more than half of `queued`, the queue is compacted.
    gone: usize,
}

impl Inner {
    /// The next entry to offer a permit to: the next peer's turn, and within it the oldest,
    /// or the newest when more than `lifo_after` wait.
    fn pop(&mut self, lifo_after: usize) -> Option<oneshot::Sender<RsaPermit>> {
        loop {
            let peer = self.turns.pop_front()?;
            // `turns` lists exactly the keys of `peers`; a stray turn would only be skipped.
            let Some(waiters) = self.peers.get_mut(&peer) else { continue };
            let tx = if waiters.len() > lifo_after { waiters.pop_back() } else { waiters.pop_front() };
            if waiters.is_empty() {
                self.peers.remove(&peer);
            } else {
                self.turns.push_back(peer);
            }
            if let Some(tx) = tx {
                self.queued = self.queued.saturating_sub(1);
                return Some(tx);
            }
        }
    }

    /// Drops the entries of waiters that gave up; O(entries), run once they are the majority.
    fn compact(&mut self) {
        self.peers.retain(|_, waiters| {
            waiters.retain(|tx| !tx.is_closed());
            !waiters.is_empty()
        });
        let peers = &self.peers;
        self.turns.retain(|p| peers.contains_key(p));
        self.queued = self.peers.values().map(VecDeque::len).sum();
        self.gone = 0;
    }
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

/// A queued waiter; dropped before its permit arrived (the connection closed), it tells the
/// queue its entry is dead.
struct Waiting {
    queue: Arc<RsaQueue>,
    rx: oneshot::Receiver<RsaPermit>,
    done: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // From here on a permit sent to this entry comes back to the sender (and goes to the
        // next waiter); one that arrived just before goes back by being dropped, outside the
        // lock (dropping a permit takes it).
        self.rx.close();
        let served = self.rx.try_recv().is_ok();
        if !served {
            self.queue.gave_up();
        }
    }
}

impl RsaQueue {
    /// `workers` permits (at least one); a peer's newest waiter first once more than
    /// `lifo_after` of its waiters wait.
    pub(crate) fn new(workers: usize, lifo_after: usize) -> RsaQueue {
        RsaQueue {
            inner: Mutex::new(Inner {
                free: workers.max(1),
                peers: HashMap::new(),
                turns: VecDeque::new(),
                queued: 0,
                gone: 0,
            }),
            lifo_after,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics while holding the lock; recover the data if something did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a permit for work on behalf of `peer` (an address as
    /// [`crate::limits::peer_key`] returns it). Dropping the future gives up the place.
    pub(crate) async fn acquire_owned(self: Arc<Self>, peer: IpAddr) -> Result<RsaPermit, Closed> {
        let rx = {
            let mut g = self.lock();
            if g.free > 0 {
                g.free -= 1;
                drop(g);
                return Ok(RsaPermit { queue: Some(self) });
            }
            let (tx, rx) = oneshot::channel();
            let waiters = g.peers.entry(peer).or_default();
            waiters.push_back(tx);
            if waiters.len() == 1 {
                g.turns.push_back(peer);
            }
            g.queued += 1;
            rx
        };
        let mut waiting = Waiting { queue: self, rx, done: false };
        let r = (&mut waiting.rx).await;
        waiting.done = true;
        r.map_err(|_| Closed)
    }

    fn gave_up(&self) {
        let mut g = self.lock();
        g.gone += 1;
        if g.gone * 2 > g.queued {
            g.compact();
        }
    }

    fn release(queue: Arc<RsaQueue>) {
        let lifo_after = queue.lifo_after;
        let this = queue.clone();
        let mut permit = RsaPermit { queue: Some(queue) };
        let mut g = this.lock();
        loop {
            let Some(tx) = g.pop(lifo_after) else {
                // Nobody waits: the permit goes back to the pool (without a recursive release).
                permit.queue = None;
                g.free += 1;
                return;
            };
            match tx.send(permit) {
                Ok(()) => return,
                // That waiter gave up: the next one.
                Err(p) => {
                    permit = p;
                    g.gone = g.gone.saturating_sub(1);
                }
            }
        }
    }

    /// Queue entries (waiting or given up but not yet dropped), and free permits.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        debug_assert_eq!(g.queued, g.peers.values().map(VecDeque::len).sum::<usize>());
        debug_assert_eq!(g.turns.len(), g.peers.len());
        (g.queued, g.free)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    type Order = Arc<Mutex<Vec<(IpAddr, usize)>>>;

    /// A waiter that records (peer, number) when it gets a permit, then holds the permit
    /// until told to finish (or its task is aborted).
    struct Waiter {
        task: tokio::task::JoinHandle<()>,
        finish: oneshot::Sender<()>,
    }

    async fn waiter(q: &Arc<RsaQueue>, peer: IpAddr, n: usize, order: &Order) -> Waiter {
        let before = q.counts().0;
        let (finish, finish_rx) = oneshot::channel::<()>();
        let (q2, order) = (q.clone(), order.clone());
        let task = tokio::spawn(async move {
            let _p = q2.acquire_owned(peer).await.unwrap();
            order.lock().unwrap().push((peer, n));
            let _ = finish_rx.await;
        });
        // Queued before the next one, so that the order of arrival is the test's.
        while q.counts().0 == before {
            tokio::task::yield_now().await;
        }
        Waiter { task, finish }
    }

    async fn until_served(order: &Order, n: usize) {
        while order.lock().unwrap().len() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Finishes the waiter holding the permit and waits until the next one has it.
    async fn hand_on(w: Waiter, order: &Order) {
        let n = order.lock().unwrap().len();
        let _ = w.finish.send(());
        let _ = w.task.await;
        until_served(order, n + 1).await;
    }

    #[tokio::test]
    async fn another_peer_is_served_next_however_long_one_peers_backlog() {
        let q = Arc::new(RsaQueue::new(1, 2));
        let order = Order::default();
        let held = q.clone().acquire_owned(A).await.unwrap();
        // A's backlog, B's handshake, and more of A's after it (newest first alone would
        // serve those before B).
        let mut flood = Vec::new();
        for n in 0..50 {
            flood.push(waiter(&q, A, n, &order).await);
        }
        let legit = waiter(&q, B, 0, &order).await;
        for n in 50..60 {
            flood.push(waiter(&q, A, n, &order).await);
        }
        drop(held);
        until_served(&order, 1).await;
        // A had its turn (its newest: 60 wait), then B's comes.
        assert_eq!(order.lock().unwrap()[0], (A, 59));
        hand_on(flood.pop().unwrap(), &order).await;
        assert_eq!(order.lock().unwrap()[1], (B, 0), "the other peer waits one job, not sixty");
        // Then A again; three peers share in turn.
        let third = waiter(&q, C, 0, &order).await;
        hand_on(legit, &order).await;
        hand_on(flood.pop().unwrap(), &order).await;
        let served: Vec<IpAddr> = order.lock().unwrap().iter().map(|(p, _)| *p).collect();
        assert_eq!(served, vec![A, B, A, C]);
        hand_on(third, &order).await;
        for w in flood {
            w.task.abort();
            let _ = w.task.await;
        }
        // The permit's holder is a flood waiter: all aborted, the permit comes back.
        assert_eq!(q.counts(), (0, 1), "every permit back, no entry left");
    }

    #[tokio::test]
    async fn oldest_first_while_short_newest_first_when_long_and_gone_waiters_are_skipped() {
        let q = Arc::new(RsaQueue::new(1, 2));
        let order = Order::default();
        let held = q.clone().acquire_owned(A).await.unwrap();
        // Five waiters from one peer; the third gives up before its turn.
        let mut w = Vec::new();
        for n in 1..=5 {
            w.push(Some(waiter(&q, A, n, &order).await));
        }
        let gone = w[2].take().unwrap();
        gone.task.abort();
        let _ = gone.task.await;
        // Five queued (> 2): the newest first, then 4 (four entries, one of them gone: newest
        // first again), and once no more than two are queued the oldest: 1, then 2 (3 gave up:
        // skipped).
        drop(held);
        until_served(&order, 1).await;
        for i in [4, 3, 0] {
            hand_on(w[i].take().unwrap(), &order).await;
        }
        let served: Vec<usize> = order.lock().unwrap().iter().map(|(_, n)| *n).collect();
        assert_eq!(served, vec![5, 4, 1, 2]);
        // 2 holds the permit; the queue is empty.
        assert_eq!(q.counts(), (0, 0));
        for x in w.into_iter().flatten() {
            let _ = x.finish.send(());
            let _ = x.task.await;
        }
        assert_eq!(q.counts(), (0, 1), "the permit is back once nobody waits");
    }

    #[tokio::test]
    async fn permits_never_leak() {
        let q = Arc::new(RsaQueue::new(2, 4));
        let a = q.clone().acquire_owned(A).await.unwrap();
        let b = q.clone().acquire_owned(B).await.unwrap();
        assert_eq!(q.counts(), (0, 0));
        drop((a, b));
        assert_eq!(q.counts(), (0, 2));
        // A waiter dropped before its turn, and one dropped with its permit already sent.
        let c = q.clone().acquire_owned(A).await.unwrap();
        let d = q.clone().acquire_owned(A).await.unwrap();
        let pending = tokio::spawn(q.clone().acquire_owned(A));
        while q.counts().0 == 0 {
            tokio::task::yield_now().await;
        }
        pending.abort();
        let _ = pending.await;
        let mut sent = Box::pin(q.clone().acquire_owned(B));
        assert!((&mut sent).now_or_never().is_none());
        drop(c); // the permit goes into `sent`'s channel
        drop(sent); // and back out of it when the waiter gives up
        drop(d);
        assert_eq!(q.counts(), (0, 2));
    }

    #[tokio::test]
    async fn given_up_entries_stay_a_minority() {
        let q = Arc::new(RsaQueue::new(1, 2));
        let held = q.clone().acquire_owned(A).await.unwrap();
        let live = tokio::spawn(q.clone().acquire_owned(B));
        while q.counts().0 == 0 {
            tokio::task::yield_now().await;
        }
        // A flooder whose connections close before their turn, a thousand times: its entries
        // are dropped as they pile up, without any permit being released.
        for _ in 0..1000 {
            let mut w = Box::pin(q.clone().acquire_owned(A));
            assert!((&mut w).now_or_never().is_none());
            drop(w);
            assert!(q.counts().0 <= 3, "given-up entries are compacted: {:?}", q.counts());
        }
        drop(held);
        let permit = live.await.unwrap().unwrap();
        drop(permit);
        assert_eq!(q.counts(), (0, 1));
    }
}
