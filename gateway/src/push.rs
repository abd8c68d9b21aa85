//! Server -> client pushes with MPUSH's result codes (1 success, 2 failure, 3 offline,
//! 4 timeout), shared by the HTTP push API and embedders.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpush_protocol::AckMode;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::conn::ConnCommand;
use crate::Shared;

/// The outcome of a push to one user, MPUSH's `PushResult` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PushResult {
    /// 1: written (ack none) or acknowledged (auto/biz).
    Success,
    /// 2: the connection failed or closed before the result was known.
    Failure,
    /// 3: the user has no connection.
    Offline,
    /// 4: no ack within the timeout.
    Timeout,
}

impl PushResult {
    /// MPUSH's numeric code.
    pub fn code(self) -> u8 {
        match self {
            PushResult::Success => 1,
            PushResult::Failure => 2,
            PushResult::Offline => 3,
            PushResult::Timeout => 4,
        }
    }

    /// The lower-case name used by the push API.
    pub fn name(self) -> &'static str {
        match self {
            PushResult::Success => "success",
            PushResult::Failure => "failure",
            PushResult::Offline => "offline",
            PushResult::Timeout => "timeout",
        }
    }

    /// Best of several connections' results: one success is enough.
    fn rank(self) -> u8 {
        match self {
            PushResult::Success => 0,
            PushResult::Timeout => 1,
            PushResult::Failure => 2,
            PushResult::Offline => 3,
        }
    }
}

/// Whom to push to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushTarget {
    /// These users (every connection of each, one per client type).
    Users(Vec<String>),
    /// Every bound user whose bind carried one of these tags.
    Tags(Vec<String>),
    /// Every bound user.
    Broadcast,
}

/// One user's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserResult {
    /// The user.
    pub user_id: String,
    /// `success`, `failure`, `offline` or `timeout`.
    pub result: &'static str,
    /// MPUSH's code (1, 2, 3, 4).
    pub code: u8,
}

impl UserResult {
    fn new(user_id: String, r: PushResult) -> UserResult {
        UserResult { user_id, result: r.name(), code: r.code() }
    }
}

/// Counts `len` more bytes queued for a connection unless that would pass `max`; a push is
/// always admitted into an empty queue, so a bound below one push's size never starves it.
fn reserve(queued: &AtomicUsize, len: usize, max: usize) -> bool {
    queued
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| {
            (q == 0 || q.saturating_add(len) <= max).then(|| q.saturating_add(len))
        })
        .is_ok()
}

/// Takes back a [`reserve`] whose push was not queued.
fn release(queued: &AtomicUsize, len: usize) {
    let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(len)));
}

/// A push in flight to one connection, or its result when it could not be sent.
type Pending = Result<oneshot::Receiver<PushResult>, PushResult>;

/// Pushes to connected users; cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

impl Pusher {
    /// Pushes `content` to `target` and waits for every result: written (ack none), acked
    /// or timed out after `timeout` (auto/biz). A user with several connections (client
    /// types) succeeds when one of them does.
    pub async fn push(&self, target: PushTarget, content: Vec<u8>, ack: AckMode, timeout: Duration) -> Vec<UserResult> {
        let router = &self.shared.router;
        let users: Vec<(String, Vec<crate::router::ConnHandle>)> = match target {
            PushTarget::Users(ids) => {
                let mut seen = std::collections::HashSet::new();
                ids.into_iter().filter(|u| seen.insert(u.clone())).map(|u| (u.clone(), router.lookup(&u))).collect()
            }
            PushTarget::Tags(tags) => router.select(Some(&tags)),
            PushTarget::Broadcast => router.select(None),
        };
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let max_queued = self.shared.max_queued_push_bytes;
        // Send everything first so all pushes are in flight together.
        let mut waiting: Vec<(String, Vec<Pending>)> = Vec::new();
        for (user, conns) in users {
            let receivers = conns
                .into_iter()
                .map(|c| {
                    // The connection's queue is full (in pushes or bytes): it is not keeping
                    // up, e.g. a client that stopped reading.
                    if !reserve(&c.queued_push_bytes, content.len(), max_queued) {
                        return Err(PushResult::Failure);
                    }
                    let (reply, rx) = oneshot::channel();
                    let cmd = ConnCommand::Push { content: content.clone(), ack, timeout_ms, reply };
                    c.tx.try_send(cmd).map(|()| rx).map_err(|e| {
                        release(&c.queued_push_bytes, content.len());
                        match e {
                            mpsc::error::TrySendError::Full(_) => PushResult::Failure,
                            mpsc::error::TrySendError::Closed(_) => PushResult::Offline,
                        }
                    })
                })
                .collect();
            waiting.push((user, receivers));
        }
        // The session reports ack timeouts itself; this only guards against a stuck connection.
        let deadline = Instant::now() + timeout + Duration::from_secs(5);
        let mut results = Vec::with_capacity(waiting.len());
        for (user, receivers) in waiting {
            let mut best = PushResult::Offline;
            for r in receivers {
                let res = match r {
                    Ok(rx) => match tokio::time::timeout_at(deadline, rx).await {
                        Ok(Ok(res)) => res,
                        Ok(Err(_)) => PushResult::Failure,
                        Err(_) => PushResult::Timeout,
                    },
                    Err(res) => res,
                };
                if res.rank() < best.rank() {
                    best = res;
                }
            }
            results.push(UserResult::new(user, best));
        }
        results
    }

    /// Online users and their connections.
    pub fn users(&self) -> Vec<(String, Vec<crate::router::RouteInfo>)> {
        self.shared.router.users()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_push_bytes_are_bounded_but_an_empty_queue_takes_any_push() {
        let q = AtomicUsize::new(0);
        assert!(reserve(&q, 10, 4), "an empty queue takes a push larger than the bound");
        assert!(!reserve(&q, 1, 4));
        release(&q, 10);
        assert!(reserve(&q, 3, 4) && reserve(&q, 1, 4));
        assert!(!reserve(&q, 1, 4));
        assert_eq!(q.load(Ordering::Relaxed), 4);
    }
}
