//! The typed bodies of PROTOCOL.md section 4, in both directions.
//!
//! Each message encodes to and decodes from its *plaintext* body; compression and encryption
//! are applied around it by [`crate::crypto`]. Decoding rejects truncated and trailing data.

use crate::codec::{DecodeError, Reader, Writer};
use crate::frame::Command;

/// A body with a fixed layout.
pub trait Message: Sized {
    /// Appends the plaintext body.
    fn write(&self, w: &mut Writer);
    /// Reads the fields (the caller checks for trailing bytes).
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// The plaintext body.
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }
    /// Decodes a whole plaintext body.
    fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let m = Self::read(&mut r)?;
        r.finish()?;
        Ok(m)
    }
}

/// Client -> server, cmd 2, RSA-encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The device id (required by the server).
    pub device_id: String,
    /// OS name; its lower-cased content decides the client type ("web" -> WEB).
    pub os_name: String,
    /// OS version.
    pub os_version: String,
    /// Client version.
    pub client_version: String,
    /// AES IV for the session (16 bytes).
    pub iv: Vec<u8>,
    /// Client half of the session key (16 bytes).
    pub client_key: Vec<u8>,
    /// Smallest acceptable heartbeat, ms.
    pub min_heartbeat: i32,
    /// Largest acceptable heartbeat, ms.
    pub max_heartbeat: i32,
    /// Client clock, epoch ms.
    pub timestamp: i64,
}

impl Message for Handshake {
    fn write(&self, w: &mut Writer) {
        w.str(&self.device_id).str(&self.os_name).str(&self.os_version).str(&self.client_version);
        w.bytes(Some(&self.iv)).bytes(Some(&self.client_key));
        w.i32(self.min_heartbeat).i32(self.max_heartbeat).i64(self.timestamp);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Handshake {
            device_id: r.str()?,
            os_name: r.str()?,
            os_version: r.str()?,
            client_version: r.str()?,
            iv: r.byte_vec()?,
            client_key: r.byte_vec()?,
            min_heartbeat: r.i32()?,
            max_heartbeat: r.i32()?,
            timestamp: r.i64()?,
        })
    }
}

/// Server -> client, cmd 2, encrypted with AES(clientKey, iv).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeOk {
    /// Server half of the session key (16 bytes).
    pub server_key: Vec<u8>,
    /// Negotiated heartbeat, ms.
    pub heartbeat: i32,
    /// Resumable session id for fast connect.
    pub session_id: String,
    /// When the resumable session expires, epoch ms.
    pub expire_time: i64,
}

impl Message for HandshakeOk {
    fn write(&self, w: &mut Writer) {
        w.bytes(Some(&self.server_key)).i32(self.heartbeat).str(&self.session_id).i64(self.expire_time);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HandshakeOk { server_key: r.byte_vec()?, heartbeat: r.i32()?, session_id: r.str()?, expire_time: r.i64()? })
    }
}

/// Client -> server, cmd 7, unencrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastConnect {
    /// The resumable session id from an earlier HandshakeOk.
    pub session_id: String,
    /// The device id; must match the stored session's.
    pub device_id: String,
    /// Smallest acceptable heartbeat, ms.
    pub min_heartbeat: i32,
    /// Largest acceptable heartbeat, ms.
    pub max_heartbeat: i32,
}

impl Message for FastConnect {
    fn write(&self, w: &mut Writer) {
        w.str(&self.session_id).str(&self.device_id).i32(self.min_heartbeat).i32(self.max_heartbeat);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FastConnect { session_id: r.str()?, device_id: r.str()?, min_heartbeat: r.i32()?, max_heartbeat: r.i32()? })
    }
}

/// Server -> client, cmd 7, unencrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastConnectOk {
    /// Negotiated heartbeat, ms.
    pub heartbeat: i32,
}

impl Message for FastConnectOk {
    fn write(&self, w: &mut Writer) {
        w.i32(self.heartbeat);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FastConnectOk { heartbeat: r.i32()? })
    }
}

/// Client -> server, Bind (cmd 5) and Unbind (cmd 6), session-encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindUser {
    /// The user id.
    pub user_id: String,
    /// Alias; MPUSH reads it as `data` for its bind validator.
    pub alias: Option<String>,
    /// Tags, comma-separated by convention.
    pub tags: Option<String>,
}

impl Message for BindUser {
    fn write(&self, w: &mut Writer) {
        w.str(&self.user_id).opt_str(self.alias.as_deref()).opt_str(self.tags.as_deref());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BindUser { user_id: r.str()?, alias: r.opt_str()?, tags: r.opt_str()? })
    }
}

/// Server -> client, cmd 11, unencrypted: a request succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OkMessage {
    /// The command of the request this answers.
    pub cmd: Command,
    /// Result code (0).
    pub code: u8,
    /// Free text, e.g. "bind success".
    pub data: Option<String>,
}

impl Message for OkMessage {
    fn write(&self, w: &mut Writer) {
        w.u8(self.cmd.0).u8(self.code).opt_str(self.data.as_deref());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OkMessage { cmd: Command(r.u8()?), code: r.u8()?, data: r.opt_str()? })
    }
}

/// MPUSH error codes carried by [`ErrorMessage`].
///
/// MPUSH 0.8.0's server sends only 100 and 101 from this list: every refusal by a handler
/// (bad handshake, repeated handshake, expired session, other device, bind/unbind refused)
/// has code 0 ([`ErrorCode::NONE`]) and says what happened in its reason. 102-104 come
/// from later MPUSH versions and the Java client's own table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// No code: what MPUSH 0.8.0 sends for every refusal a handler makes (the reason says
    /// which, e.g. "session expired", "repeat handshake", "not handshake").
    pub const NONE: ErrorCode = ErrorCode(0);
    /// The user is offline.
    pub const OFFLINE: ErrorCode = ErrorCode(1);
    /// Pushing to the client failed.
    pub const PUSH_CLIENT_FAILURE: ErrorCode = ErrorCode(2);
    /// The user's route changed.
    pub const ROUTER_CHANGE: ErrorCode = ErrorCode(3);
    /// The client did not ack in time.
    pub const ACK_TIMEOUT: ErrorCode = ErrorCode(4);
    /// The server failed to dispatch the request.
    pub const DISPATCH_ERROR: ErrorCode = ErrorCode(100);
    /// The server does not handle this command (the connection is closed).
    pub const UNSUPPORTED_CMD: ErrorCode = ErrorCode(101);
    /// A second handshake on the same connection. Not sent by MPUSH 0.8.0 (code 0 there).
    pub const REPEAT_HANDSHAKE: ErrorCode = ErrorCode(102);
    /// Fast connect: the resumable session is unknown or expired. Not sent by MPUSH 0.8.0 (code 0 there).
    pub const SESSION_EXPIRED: ErrorCode = ErrorCode(103);
    /// Fast connect: the session belongs to another device. Not sent by MPUSH 0.8.0 (code 0 there).
    pub const INVALID_DEVICE: ErrorCode = ErrorCode(104);
}

/// Server -> client, cmd 10, unencrypted: a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorMessage {
    /// The command of the request this answers.
    pub cmd: Command,
    /// The error code.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub reason: Option<String>,
    /// Extra data.
    pub data: Option<String>,
}

impl Message for ErrorMessage {
    fn write(&self, w: &mut Writer) {
        w.u8(self.cmd.0).u8(self.code.0).opt_str(self.reason.as_deref()).opt_str(self.data.as_deref());
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ErrorMessage { cmd: Command(r.u8()?), code: ErrorCode(r.u8()?), reason: r.opt_str()?, data: r.opt_str()? })
    }
}

/// Server -> client, cmd 13, session-encrypted: another connection bound the same user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kick {
    /// Device id of this (kicked) connection.
    pub device_id: String,
    /// The user id.
    pub user_id: String,
}

impl Message for Kick {
    fn write(&self, w: &mut Writer) {
        w.str(&self.device_id).str(&self.user_id);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Kick { device_id: r.str()?, user_id: r.str()? })
    }
}

/// HTTP method byte of [`HttpRequest`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// 0
    Get,
    /// 1
    Post,
    /// 2
    Put,
    /// 3
    Delete,
}

impl HttpMethod {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            HttpMethod::Get => 0,
            HttpMethod::Post => 1,
            HttpMethod::Put => 2,
            HttpMethod::Delete => 3,
        }
    }
    /// From the wire byte; MPUSH reads unknown values as GET.
    pub fn from_code(b: u8) -> HttpMethod {
        match b {
            1 => HttpMethod::Post,
            2 => HttpMethod::Put,
            3 => HttpMethod::Delete,
            _ => HttpMethod::Get,
        }
    }
    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
        }
    }
    /// Parses a method name, case-insensitively; `None` for methods MPUSH cannot carry.
    pub fn parse(name: &str) -> Option<HttpMethod> {
        match name.to_ascii_uppercase().as_str() {
            "GET" => Some(HttpMethod::Get),
            "POST" => Some(HttpMethod::Post),
            "PUT" => Some(HttpMethod::Put),
            "DELETE" => Some(HttpMethod::Delete),
            _ => None,
        }
    }
}

/// HTTP headers as MPUSH carries them: ordered `(name, value)` pairs.
pub type Headers = Vec<(String, String)>;

/// Formats headers as `name:value\n` per header; no headers is a null field.
pub fn format_headers(h: &[(String, String)]) -> Option<String> {
    if h.is_empty() {
        return None;
    }
    let mut s = String::new();
    for (k, v) in h {
        s.push_str(k);
        s.push(':');
        s.push_str(v);
        s.push('\n');
    }
    Some(s)
}

/// Parses `name:value\n` lines: split on `\n`, then on the first `:`; nameless entries are skipped.
pub fn parse_headers(s: &str) -> Headers {
    s.split('\n')
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            if k.is_empty() {
                None
            } else {
                Some((k.to_owned(), v.to_owned()))
            }
        })
        .collect()
}

/// Client -> server, cmd 12, session-encrypted: an HTTP request for the server to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    /// Method.
    pub method: HttpMethod,
    /// Absolute URL.
    pub uri: String,
    /// Headers, including MPUSH's `readTimeout` (ms).
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

impl Message for HttpRequest {
    fn write(&self, w: &mut Writer) {
        w.u8(self.method.code()).str(&self.uri).opt_str(format_headers(&self.headers).as_deref());
        w.bytes(Some(&self.body));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HttpRequest {
            method: HttpMethod::from_code(r.u8()?),
            uri: r.str()?,
            headers: parse_headers(&r.str()?),
            body: r.byte_vec()?,
        })
    }
}

/// Server -> client, cmd 12: the answer to an [`HttpRequest`] (raw for proxy-generated errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status_code: i32,
    /// Reason phrase.
    pub reason_phrase: Option<String>,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

impl Message for HttpResponse {
    fn write(&self, w: &mut Writer) {
        w.i32(self.status_code).opt_str(self.reason_phrase.as_deref());
        w.opt_str(format_headers(&self.headers).as_deref()).bytes(Some(&self.body));
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(HttpResponse {
            status_code: r.i32()?,
            reason_phrase: r.opt_str()?,
            headers: parse_headers(&r.str()?),
            body: r.byte_vec()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_skip_nameless() {
        let h = parse_headers("a:1\n:x\nnocolon\nb:c:d\n");
        assert_eq!(h, vec![("a".into(), "1".into()), ("b".into(), "c:d".into())]);
        assert_eq!(format_headers(&h).as_deref(), Some("a:1\nb:c:d\n"));
        assert_eq!(format_headers(&[]), None);
    }

    #[test]
    fn truncated_and_trailing_bodies_are_rejected() {
        let body = Kick { device_id: "d".into(), user_id: "u".into() }.encode();
        for n in 0..body.len() {
            assert!(Kick::decode(&body[..n]).is_err());
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(Kick::decode(&longer), Err(DecodeError::TrailingBytes(1)));
        assert!(Kick::decode(&body).is_ok());
    }
}
