//! Where upstream pushes (client -> server, cmd 15) go: a log line by default, optionally a
//! webhook that receives them as JSON.

use std::time::Duration;

use base64::Engine;
use serde::Serialize;

use crate::http_proxy::{send_plain_http, PlainRequest};

/// One upstream push, as the sink receives it. The session has already acked it when the
/// client asked for an auto ack.
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

/// Receives upstream pushes. Called from connection tasks: must not block (spawn for I/O).
pub trait UpstreamSink: Send + Sync + 'static {
    /// Takes one upstream push.
    fn deliver(&self, msg: UpstreamMessage);
}

/// Logs each upstream push (the default).
#[derive(Debug, Default)]
pub struct LogSink;

impl UpstreamSink for LogSink {
    fn deliver(&self, msg: UpstreamMessage) {
        tracing::info!(
            user = msg.user_id.as_deref().unwrap_or("-"),
            device = %msg.device_id,
            bytes = msg.content.len(),
            content = %String::from_utf8_lossy(&msg.content[..msg.content.len().min(200)]),
            "upstream push"
        );
    }
}

/// POSTs each upstream push as JSON to a plain-HTTP URL (fire and forget, 10 s timeout,
/// failures logged).
#[derive(Debug)]
pub struct WebhookSink {
    url: String,
}

impl WebhookSink {
    /// A sink posting to `url` (`http://host[:port]/path`).
    pub fn new(url: impl Into<String>) -> WebhookSink {
        WebhookSink { url: url.into() }
    }
}

impl UpstreamSink for WebhookSink {
    fn deliver(&self, msg: UpstreamMessage) {
        let url = self.url.clone();
        let body = msg.to_json().into_bytes();
        tokio::spawn(async move {
            let req = PlainRequest {
                method: http::Method::POST,
                uri: url.clone(),
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            };
            match tokio::time::timeout(Duration::from_secs(10), send_plain_http(req, None, 64 * 1024)).await {
                Ok(Ok(resp)) if resp.status.is_success() => {}
                Ok(Ok(resp)) => tracing::warn!(%url, status = %resp.status, "webhook refused an upstream push"),
                Ok(Err(e)) => tracing::warn!(%url, error = %e, "webhook failed"),
                Err(_) => tracing::warn!(%url, "webhook timed out"),
            }
        });
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
}
