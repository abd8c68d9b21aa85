//! Where upstream pushes (client -> server, cmd 15) go: a log line by default, optionally a
//! webhook that receives them as JSON.
//!
//! Delivery guarantee: a push whose client asked for an auto ack is acked only once the sink
//! says it has it ([`Receipt::stored`]): for the webhook, once it answered 2xx. The ack is the
//! raw Ack MPUSH's `ClientPushHandler` sends, only later. A push the sink cannot take (queue
//! full, every attempt failed, the gateway stopping) is never acked, so its client's own ack
//! timeout tells it to send again: an acked push is never lost. A push may reach the webhook
//! twice (a retry after an answer that was lost), so the webhook should be idempotent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::task::TaskTracker;

use crate::config::UpstreamConfig;
use crate::http_proxy::{send_plain_http, PlainRequest};

/// One upstream push, as the sink receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamMessage {
    /// The bound user, if any.
    pub user_id: Option<String>,
    /// The device that pushed.
    pub device_id: String,
    /// The push's header session id.
    pub session_id: i32,
    /// The content.
    pub content: Vec<u8>,
}

/// The JSON a webhook receives.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookBody<'a> {
    user_id: Option<&'a str>,
    device_id: &'a str,
    session_id: i32,
    content_base64: String,
}

impl UpstreamMessage {
    /// The webhook's JSON: `{"userId":..,"deviceId":..,"sessionId":..,"contentBase64":..}`.
    pub fn to_json(&self) -> String {
        let body = WebhookBody {
            user_id: self.user_id.as_deref(),
            device_id: &self.device_id,
            session_id: self.session_id,
            content_base64: base64::engine::general_purpose::STANDARD.encode(&self.content),
        };
        serde_json::to_string(&body).unwrap_or_default()
    }
}

/// What a sink answers about one upstream push. The connection acks the push (when its
/// client asked for an auto ack) on [`Receipt::stored`] only; [`Receipt::refused`], or
/// dropping the receipt unanswered (a sink that panicked, a task aborted at shutdown), leaves
/// it unacked.
#[derive(Debug)]
pub struct Receipt {
    tx: oneshot::Sender<bool>,
}

impl Receipt {
    /// A receipt and what its connection waits on: `true` once stored.
    pub(crate) fn new() -> (Receipt, oneshot::Receiver<bool>) {
        let (tx, rx) = oneshot::channel();
        (Receipt { tx }, rx)
    }

    /// The push is stored where it will not be lost: it may be acked.
    pub fn stored(self) {
        let _ = self.tx.send(true);
    }

    /// The push could not be taken: it is not acked.
    pub fn refused(self) {
        let _ = self.tx.send(false);
    }
}

/// Receives upstream pushes.
pub trait UpstreamSink: Send + Sync + 'static {
    /// Takes one upstream push and answers `receipt` once it is stored or refused. Called
    /// from connection tasks: must not block (spawn for I/O).
    fn deliver(&self, msg: UpstreamMessage, receipt: Receipt);

    /// Called once when the gateway stops, after its connections closed: take no more pushes
    /// and finish the ones taken. The gateway waits for it until its `drain-timeout` is up.
    fn drain(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// Logs each upstream push (the default); a logged push counts as stored.
#[derive(Debug, Default)]
pub struct LogSink;

impl UpstreamSink for LogSink {
    fn deliver(&self, msg: UpstreamMessage, receipt: Receipt) {
        tracing::info!(
            user = msg.user_id.as_deref().unwrap_or("-"),
            device = %msg.device_id,
            bytes = msg.content.len(),
            content = %String::from_utf8_lossy(&msg.content[..msg.content.len().min(200)]),
            "upstream push"
        );
        receipt.stored();
    }
}

/// Counts of what a [`WebhookSink`] did since start, and what it has under way now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookStats {
    /// Pushes the webhook answered 2xx to.
    pub stored: u64,
    /// Pushes refused at once: the queue was full or the gateway stopping.
    pub refused: u64,
    /// Pushes given up after `webhook-attempts` failed POSTs.
    pub given_up: u64,
    /// POSTs that failed (non-2xx, no connection, timeout) and were tried again.
    pub retries: u64,
    /// Pushes taken and not yet stored or given up, now: posting, waiting for a POST slot or
    /// for a retry (at most `webhook-queue`).
    pub queued: u64,
    /// POSTs under way now (at most `webhook-concurrency`).
    pub posting: u64,
}

#[derive(Debug, Default)]
struct Counters {
    stored: AtomicU64,
    refused: AtomicU64,
    given_up: AtomicU64,
    retries: AtomicU64,
}

#[derive(Debug)]
struct Webhook {
    url: String,
    timeout: Duration,
    attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
    /// Pushes taken and not yet stored or given up (`webhook-queue`).
    queue: Arc<Semaphore>,
    /// `queue`'s permits in all: those taken are the pushes queued.
    queue_size: usize,
    /// POSTs under way (`webhook-concurrency`).
    posting: Semaphore,
    /// `posting`'s permits in all: those taken are the POSTs under way.
    concurrency: usize,
    /// Every push's task, so that a drain can wait for them.
    tasks: TaskTracker,
    counters: Counters,
}

/// POSTs each upstream push as JSON to a plain-HTTP URL, with a bounded queue, a bounded
/// number of POSTs at once, and retries with exponential backoff. The push is stored (and
/// acked) when the webhook answers 2xx; a full queue refuses it at once, and so does a
/// gateway that is stopping.
#[derive(Debug, Clone)]
pub struct WebhookSink {
    inner: Arc<Webhook>,
}

impl WebhookSink {
    /// A sink posting to `url` (`http://host[:port]/path`) with the `[upstream]` defaults.
    pub fn new(url: impl Into<String>) -> WebhookSink {
        WebhookSink::with_config(url, &UpstreamConfig::default())
    }

    /// A sink posting to `url` with `config`'s queue, concurrency, timeout and retry
    /// settings (zeros are raised to 1).
    pub fn with_config(url: impl Into<String>, config: &UpstreamConfig) -> WebhookSink {
        let queue_size = config.webhook_queue.clamp(1, Semaphore::MAX_PERMITS);
        let concurrency = config.webhook_concurrency.clamp(1, Semaphore::MAX_PERMITS);
        WebhookSink {
            inner: Arc::new(Webhook {
                url: url.into(),
                timeout: Duration::from_millis(config.webhook_timeout.max(1)),
                attempts: config.webhook_attempts.max(1),
                backoff: Duration::from_millis(config.webhook_backoff),
                max_backoff: Duration::from_millis(config.webhook_max_backoff.max(config.webhook_backoff)),
                queue: Arc::new(Semaphore::new(queue_size)),
                queue_size,
                posting: Semaphore::new(concurrency),
                concurrency,
                tasks: TaskTracker::new(),
                counters: Counters::default(),
            }),
        }
    }

    /// What the sink did since start, and what it has under way now.
    pub fn stats(&self) -> WebhookStats {
        let w = &self.inner;
        let c = &w.counters;
        // Neither semaphore is ever closed, and permits only go back to them, so the taken
        // ones are exactly the pushes queued and the POSTs under way.
        let taken = |size: usize, free: usize| u64::try_from(size.saturating_sub(free)).unwrap_or(u64::MAX);
        WebhookStats {
            stored: c.stored.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            given_up: c.given_up.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            queued: taken(w.queue_size, w.queue.available_permits()),
            posting: taken(w.concurrency, w.posting.available_permits()),
        }
    }
}

impl Webhook {
    /// POSTs `body` until the webhook answers 2xx or the attempts are used up.
    async fn post(&self, body: Vec<u8>) -> bool {
        let mut backoff = self.backoff;
        for attempt in 1..=self.attempts {
            let outcome = {
                // Only the POST itself holds a slot: a push waiting for its retry does not
                // keep the others from being posted.
                let Ok(_slot) = self.posting.acquire().await else { return false };
                let req = PlainRequest {
                    method: http::Method::POST,
                    uri: self.url.clone(),
                    headers: vec![
                        ("content-type".into(), "application/json".into()),
                        // Tells a webhook that a later attempt may repeat an earlier one.
                        ("x-mpush-attempt".into(), attempt.to_string()),
                    ],
                    body: body.clone(),
                };
                tokio::time::timeout(self.timeout, send_plain_http(req, None, 64 * 1024)).await
            };
            let why = match outcome {
                Ok(Ok(resp)) if resp.status.is_success() => return true,
                Ok(Ok(resp)) => format!("status {}", resp.status),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_owned(),
            };
            if attempt == self.attempts {
                tracing::warn!(url = %self.url, attempt, %why, "webhook failed: upstream push given up, not acked");
                break;
            }
            tracing::info!(url = %self.url, attempt, %why, retry_in = ?backoff, "webhook failed, retrying");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
        false
    }
}

impl UpstreamSink for WebhookSink {
    fn deliver(&self, msg: UpstreamMessage, receipt: Receipt) {
        let inner = &self.inner;
        if inner.tasks.is_closed() {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %msg.device_id, "upstream push refused: the gateway is stopping");
            return receipt.refused();
        }
        let Ok(slot) = inner.queue.clone().try_acquire_owned() else {
            inner.counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %msg.device_id, "upstream push refused: webhook queue full (not acked)");
            return receipt.refused();
        };
        let hook = inner.clone();
        let body = msg.to_json().into_bytes();
        inner.tasks.spawn(async move {
            let stored = hook.post(body).await;
            drop(slot);
            if stored {
                hook.counters.stored.fetch_add(1, Ordering::Relaxed);
                receipt.stored();
            } else {
                hook.counters.given_up.fetch_add(1, Ordering::Relaxed);
                receipt.refused();
            }
        });
    }

    fn drain(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.inner.tasks.close();
            let left = self.inner.tasks.len();
            if left > 0 {
                tracing::info!(posts = left, "waiting for webhook posts under way");
            }
            self.inner.tasks.wait().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_json_shape() {
        let m = UpstreamMessage {
            user_id: Some("u1".into()),
            device_id: "d1".into(),
            session_id: 7,
            content: b"hi".to_vec(),
        };
        assert_eq!(m.to_json(), r#"{"userId":"u1","deviceId":"d1","sessionId":7,"contentBase64":"aGk="}"#);
    }

    #[tokio::test]
    async fn a_dropped_receipt_is_a_refusal() {
        let (r, rx) = Receipt::new();
        drop(r);
        assert!(rx.await.is_err(), "the connection reads an error as not stored");
        let (r, rx) = Receipt::new();
        r.stored();
        assert_eq!(rx.await.ok(), Some(true));
    }

    #[tokio::test]
    async fn a_stopping_webhook_refuses_new_pushes() {
        // Port 9 on loopback: nothing listens; the push must be refused before any POST.
        let sink = WebhookSink::new("http://127.0.0.1:9/hook");
        sink.drain().await;
        let (r, rx) = Receipt::new();
        sink.deliver(UpstreamMessage { user_id: None, device_id: "d".into(), session_id: 1, content: vec![] }, r);
        assert_eq!(rx.await.ok(), Some(false));
        assert_eq!(sink.stats().refused, 1);
    }
}
