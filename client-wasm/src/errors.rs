//! Errors as JavaScript sees them: real `Error` objects (name `MPushError`) with a stable
//! string `code`, plus `serverCode` for errors the MPUSH server sent.

use js_sys::Reflect;
use mpush_protocol::{ClientError, RequestError};
use wasm_bindgen::JsValue;

/// The stable `code` of every error this package raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// A constructor option is missing or invalid.
    InvalidOption,
    /// An argument to a method is invalid.
    InvalidArgument,
    /// The call needs a ready connection and there is none.
    NotConnected,
    /// `unbind` without a bound user.
    NotBound,
    /// The server did not answer in time (request, connect or liveness probe).
    Timeout,
    /// The server answered with an MPUSH Error message (see `serverCode`).
    ServerError,
    /// The connection was lost before the answer arrived.
    ConnectionLost,
    /// `close()` was called while the operation was pending.
    Closed,
    /// The server sent bytes that break the protocol.
    ProtocolError,
    /// `fetch` with a method MPUSH cannot carry (only GET, POST, PUT, DELETE).
    HttpMethodUnsupported,
    /// The browser lacks something the client needs (WebSocket, crypto.getRandomValues).
    Unsupported,
    /// The request's body, compressed and encrypted, is larger than the server accepts
    /// (`maxPacketSize`); nothing was sent and the connection is unaffected.
    PayloadTooLarge,
    /// The server refused the handshake (see `serverCode`; 100 is what MPUSH answers when it
    /// cannot decrypt the handshake: a wrong `publicKey`). The client stopped reconnecting.
    HandshakeRefused,
    /// The server refused the bind (MPUSH's `bind failed`: its bind validator said no; with
    /// mpush-gateway, a missing, expired or wrong bind token) and closed the connection. The
    /// user is not bound again automatically; bind with a fresh token.
    BindRefused,
    /// A connection attempt failed before the WebSocket opened. The browser does not say why
    /// (close code 1006 for a refused origin, a wrong path and a proxy that is down alike), so
    /// the message names the usual causes.
    ConnectFailed,
    /// The client gave up after `reconnect.maxAttempts` failed reconnect attempts in a row;
    /// `cause` is the last attempt's error.
    AttemptLimit,
}

impl ErrorCode {
    /// The string JavaScript sees in `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidOption => "INVALID_OPTION",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::NotConnected => "NOT_CONNECTED",
            ErrorCode::NotBound => "NOT_BOUND",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::ConnectionLost => "CONNECTION_LOST",
            ErrorCode::Closed => "CLOSED",
            ErrorCode::ProtocolError => "PROTOCOL_ERROR",
            ErrorCode::HttpMethodUnsupported => "HTTP_METHOD_UNSUPPORTED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::HandshakeRefused => "HANDSHAKE_REFUSED",
            ErrorCode::BindRefused => "BIND_REFUSED",
            ErrorCode::ConnectFailed => "CONNECT_FAILED",
            ErrorCode::AttemptLimit => "ATTEMPT_LIMIT",
        }
    }
}

/// An `Error` with `name = "MPushError"` and `code`.
pub fn js_error(code: ErrorCode, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    // Reflect::set on a fresh Error object cannot fail (and is one import for both fields).
    let _ = Reflect::set(&e, &"name".into(), &"MPushError".into());
    let _ = Reflect::set(&e, &"code".into(), &code.as_str().into());
    e.into()
}

/// Sets `cause` (the error that led to `e`, as `new Error(msg, { cause })` does).
pub fn with_cause(e: JsValue, cause: &JsValue) -> JsValue {
    let _ = Reflect::set(&e, &"cause".into(), cause);
    e
}

/// Puts the name of the API method that failed in front of an error's message ("push: not
/// connected"), so a failure in a chain of calls names its call. Messages that already start
/// with it are left alone.
pub fn in_method(method: &str, e: JsValue) -> JsValue {
    let msg = Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
    let prefix = [method, ": "].concat();
    if !msg.starts_with(&prefix) {
        let _ = Reflect::set(&e, &"message".into(), &[prefix, msg].concat().into());
    }
    e
}

/// `n` in decimal. Every number in a message goes through this one integer type: each width
/// has its own formatting code in core.
pub fn decimal(n: i64) -> String {
    n.to_string()
}

/// Sets `serverCode` and `serverReason` (MPUSH's error code and reason text).
fn with_server_fields(e: JsValue, server_code: u8, reason: Option<&str>) -> JsValue {
    let _ = Reflect::set(&e, &"serverCode".into(), &JsValue::from(server_code));
    let _ = Reflect::set(&e, &"serverReason".into(), &reason.map_or(JsValue::UNDEFINED, JsValue::from));
    e
}

/// "`prefix` `code`: `reason`".
fn describe_server(prefix: &str, server_code: u8, reason: Option<&str>) -> String {
    let mut msg = String::from(prefix);
    msg.push_str(&decimal(server_code.into()));
    if let Some(r) = reason.filter(|r| !r.is_empty()) {
        msg.push_str(": ");
        msg.push_str(r);
    }
    msg
}

/// A `SERVER_ERROR` carrying MPUSH's error code as `serverCode`.
pub fn server_error(server_code: u8, reason: Option<&str>) -> JsValue {
    let e = js_error(ErrorCode::ServerError, &describe_server("server error ", server_code, reason));
    with_server_fields(e, server_code, reason)
}

/// A `HANDSHAKE_REFUSED` carrying MPUSH's error code and reason.
pub fn handshake_refused(server_code: u8, reason: Option<&str>) -> JsValue {
    let mut msg = describe_server("the server refused the handshake: error ", server_code, reason);
    if server_code == 100 {
        // MPUSH's dispatcher answers an undecryptable handshake with DISPATCH_ERROR.
        msg.push_str(" (is publicKey the server's key?)");
    }
    with_server_fields(js_error(ErrorCode::HandshakeRefused, &msg), server_code, reason)
}

/// MPUSH's reason when its bind validator refuses a bind (only binds are answered with it).
const BIND_FAILED: &str = "bind failed";

/// Whether a failed request is a refused bind.
pub fn is_bind_refusal(e: &RequestError) -> bool {
    matches!(e, RequestError::Rejected { reason: Some(r), .. } if r == BIND_FAILED)
}

/// Maps a failed request.
pub fn request_error(e: &RequestError) -> JsValue {
    match e {
        RequestError::Timeout => js_error(ErrorCode::Timeout, "request timed out"),
        RequestError::Rejected { code, reason } if is_bind_refusal(e) => with_server_fields(
            js_error(
                ErrorCode::BindRefused,
                "the server refused the bind (bind failed): is the bind token valid, unexpired and minted for this \
                 user id?",
            ),
            code.0,
            reason.as_deref(),
        ),
        RequestError::Rejected { code, reason } => server_error(code.0, reason.as_deref()),
        RequestError::Refused { code, reason } => handshake_refused(code.0, reason.as_deref()),
        RequestError::ConnectionLost => js_error(ErrorCode::ConnectionLost, "connection lost"),
        _ => js_error(ErrorCode::ProtocolError, "request failed"),
    }
}

/// A message for an error of the protocol session. Static text instead of `Display` keeps
/// the formatting machinery of every nested error type out of the wasm binary.
pub fn client_error_message(e: &ClientError) -> String {
    match e {
        ClientError::NotReady(_) | ClientError::InvalidState(_) => "not connected".into(),
        ClientError::NotBound => "no user is bound".into(),
        ClientError::InvalidArgument(m) => String::from(m.as_ref()),
        ClientError::PeerMisbehaved(m) => ["the server broke the protocol: ", m].concat(),
        ClientError::Frame(_) => "malformed packet from the server".into(),
        ClientError::Crypto { .. } => "could not decrypt or inflate a packet from the server".into(),
        ClientError::Decode { .. } => "malformed message from the server".into(),
        ClientError::Encrypt(_) => "could not encrypt the handshake".into(),
        ClientError::PayloadTooLarge { size, max } => [
            "the body is ",
            &decimal(*size as i64),
            " bytes compressed and encrypted; the server accepts at most ",
            &decimal(*max as i64),
            " (maxPacketSize)",
        ]
        .concat(),
        _ => "protocol error".into(),
    }
}

/// Maps an error of the protocol session.
pub fn client_error(e: &ClientError) -> JsValue {
    let code = match e {
        ClientError::NotReady(_) | ClientError::InvalidState(_) => ErrorCode::NotConnected,
        ClientError::NotBound => ErrorCode::NotBound,
        ClientError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        ClientError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::ProtocolError,
    };
    js_error(code, &client_error_message(e))
}

/// The `code` of a JS error value, if it has one (used by tests and by the driver's logging).
pub fn code_of(e: &JsValue) -> Option<String> {
    Reflect::get(e, &"code".into()).ok()?.as_string()
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mpush_protocol::{ClientState, ErrorCode as ServerCode};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn errors_are_real_errors_with_codes() {
        let e = js_error(ErrorCode::NotConnected, "nope");
        assert!(e.is_instance_of::<js_sys::Error>());
        assert_eq!(code_of(&e).as_deref(), Some("NOT_CONNECTED"));
        let e: js_sys::Error = e.unchecked_into();
        assert_eq!(String::from(e.message()), "nope");
        assert_eq!(String::from(e.name()), "MPushError");
    }

    #[wasm_bindgen_test]
    fn server_errors_carry_the_mpush_code() {
        let e = request_error(&RequestError::Rejected { code: ServerCode::OFFLINE, reason: Some("gone".into()) });
        assert_eq!(code_of(&e).as_deref(), Some("SERVER_ERROR"));
        assert_eq!(Reflect::get(&e, &"serverCode".into()).unwrap().as_f64(), Some(1.0));
        assert_eq!(code_of(&request_error(&RequestError::Timeout)).as_deref(), Some("TIMEOUT"));
        assert_eq!(code_of(&request_error(&RequestError::ConnectionLost)).as_deref(), Some("CONNECTION_LOST"));
        let e = client_error(&ClientError::NotReady(ClientState::Disconnected));
        assert_eq!(code_of(&e).as_deref(), Some("NOT_CONNECTED"));
        assert_eq!(code_of(&client_error(&ClientError::NotBound)).as_deref(), Some("NOT_BOUND"));
        let e = client_error(&ClientError::PayloadTooLarge { size: 20_016, max: 10_240 });
        assert_eq!(code_of(&e).as_deref(), Some("PAYLOAD_TOO_LARGE"));
        let e: js_sys::Error = e.unchecked_into();
        assert!(String::from(e.message()).contains("20016"), "{:?}", e.message());
    }

    #[wasm_bindgen_test]
    fn messages_name_the_method_once_and_causes_are_kept() {
        let e = in_method("bind", client_error(&ClientError::NotReady(ClientState::Disconnected)));
        assert_eq!(String::from(e.unchecked_ref::<js_sys::Error>().message()), "bind: not connected");
        let again = in_method("bind", e);
        assert_eq!(String::from(again.unchecked_ref::<js_sys::Error>().message()), "bind: not connected");
        let cause = js_error(ErrorCode::ConnectFailed, "could not connect");
        let e = with_cause(js_error(ErrorCode::AttemptLimit, "gave up"), &cause);
        assert_eq!(code_of(&e).as_deref(), Some("ATTEMPT_LIMIT"));
        assert_eq!(code_of(&Reflect::get(&e, &"cause".into()).unwrap()).as_deref(), Some("CONNECT_FAILED"));
    }

    #[wasm_bindgen_test]
    fn a_refused_handshake_carries_the_server_code_and_reason() {
        let e = request_error(&RequestError::Refused {
            code: ServerCode::DISPATCH_ERROR,
            reason: Some("handle message error".into()),
        });
        assert_eq!(code_of(&e).as_deref(), Some("HANDSHAKE_REFUSED"));
        assert_eq!(Reflect::get(&e, &"serverCode".into()).unwrap().as_f64(), Some(100.0));
        assert_eq!(
            Reflect::get(&e, &"serverReason".into()).unwrap().as_string().as_deref(),
            Some("handle message error")
        );
        let msg = String::from(e.unchecked_into::<js_sys::Error>().message());
        assert!(msg.contains("100") && msg.contains("publicKey"), "{msg}");
    }
}
