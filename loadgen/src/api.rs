//! A minimal HTTP/1.1 client for the gateway push API (one request per connection keeps the
//! measurement free of pooling effects and the tool free of an HTTP stack).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The push API of an `mpush-gateway`.
pub struct PushApi {
    host: String,
    path: String,
    token: Option<String>,
}

impl PushApi {
    /// From a base URL like `http://127.0.0.1:3001`.
    pub fn new(base: &str, token: Option<String>) -> Result<PushApi, String> {
        let rest = base.strip_prefix("http://").ok_or("push API URL must start with http://")?;
        let (host, path) = match rest.split_once('/') {
            Some((h, p)) => (h.to_owned(), format!("/{}", p.trim_end_matches('/'))),
            None => (rest.to_owned(), String::new()),
        };
        Ok(PushApi { host, path: format!("{path}/push"), token })
    }

    /// Pushes `content` to each user (no ack) and checks the API accepted it.
    pub async fn push(&self, users: &[&str], content: &str) -> Result<(), String> {
        let body = serde_json::json!({ "userIds": users, "content": content, "ack": "none" }).to_string();
        let auth = self.token.as_ref().map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
        let req = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{auth}connection: close\r\n\r\n{body}",
            self.path,
            self.host,
            body.len()
        );
        let mut s = TcpStream::connect(&self.host).await.map_err(|e| format!("push API connect: {e}"))?;
        s.write_all(req.as_bytes()).await.map_err(|e| format!("push API write: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.map_err(|e| format!("push API read: {e}"))?;
        let text = String::from_utf8_lossy(&resp);
        if !text.starts_with("HTTP/1.1 200") {
            return Err(format!("push API answered: {}", text.lines().next().unwrap_or("")));
        }
        Ok(())
    }
}
