//! The `MPushClient` constructor options: read from a plain JS object with `Reflect`, checked,
//! and turned into typed settings. Every problem is an `INVALID_OPTION` error naming the option.

use js_sys::Reflect;
use mpush_protocol::RsaPublicKey;
use wasm_bindgen::JsValue;

use crate::errors::{js_error, ErrorCode};
use crate::storage::Storage;

/// Default `storageKey` prefix.
pub const DEFAULT_STORAGE_KEY: &str = "mpush:";
/// Default heartbeat bounds (the Java client's): 3 minutes.
pub const DEFAULT_HEARTBEAT: i32 = 180_000;

/// Checked constructor options.
#[derive(Debug)]
pub struct Options {
    /// `ws://` or `wss://` URL of the proxy.
    pub url: String,
    /// The server's RSA public key.
    pub public_key: RsaPublicKey,
    /// Explicit device id, if given.
    pub device_id: Option<String>,
    /// OS name (default "web", which MPUSH maps to client type WEB).
    pub os_name: String,
    /// OS version.
    pub os_version: String,
    /// Client version.
    pub client_version: String,
    /// User to bind after the first connect (the session re-binds after reconnects).
    pub user_id: Option<String>,
    /// Tags for that bind.
    pub tags: Option<String>,
    /// Alias for that bind: the bind's `data` field, which carries the `bindToken` option when
    /// one is given (a gateway with bind tokens checks it; MPUSH hands it to its validator).
    pub alias: Option<String>,
    /// Heartbeat bounds, ms.
    pub min_heartbeat: i32,
    /// Heartbeat bounds, ms.
    pub max_heartbeat: i32,
    /// Persistent state.
    pub storage: Storage,
    /// Prefix of the storage keys.
    pub storage_key: String,
    /// Reconnect delays `(min, max)` in ms, or `None` for no reconnects.
    pub reconnect: Option<(f64, f64)>,
    /// `reconnect.maxAttempts`: failed reconnect attempts in a row after which the client gives
    /// up (`ATTEMPT_LIMIT`); `None` for no limit.
    pub max_attempts: Option<u32>,
    /// Request timeout, ms.
    pub request_timeout: u64,
    /// Time allowed for opening the WebSocket plus handshake or fast connect, ms.
    pub connect_timeout: u64,
    /// Largest body the client sends, after compression and encryption: the server's
    /// `mp.core.max-packet-size`.
    pub max_packet_size: usize,
}

fn invalid(name: &str, what: &str) -> JsValue {
    js_error(ErrorCode::InvalidOption, &[name, " ", what].concat())
}

fn field(obj: &JsValue, name: &str) -> JsValue {
    Reflect::get(obj, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn opt_string(obj: &JsValue, name: &str) -> Result<Option<String>, JsValue> {
    let v = field(obj, name);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string().map(Some).ok_or_else(|| invalid(name, "must be a string"))
}

/// Milliseconds from `min` (2000 for the heartbeat bounds, else 1) to [`MAX_TIMEOUT`].
fn opt_ms(obj: &JsValue, name: &str, min: f64) -> Result<Option<f64>, JsValue> {
    let v = field(obj, name);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= min && n <= MAX_TIMEOUT => Ok(Some(n.floor())),
        // Fixed texts: no number formatting here.
        _ if min == 2000.0 => Err(invalid(name, "must be a number of milliseconds in 2000..2147483647")),
        _ => Err(invalid(name, "must be a number of milliseconds in 1..2147483647")),
    }
}

/// A whole number of attempts, 1 or more (`Infinity`, `undefined` and `null` mean no limit).
fn opt_count(obj: &JsValue, name: &str) -> Result<Option<u32>, JsValue> {
    let v = field(obj, name);
    if v.is_undefined() || v.is_null() || v.as_f64() == Some(f64::INFINITY) {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && (1.0..=MAX_TIMEOUT).contains(&n) => Ok(Some(n as u32)),
        _ => Err(invalid(["reconnect.", name].concat().as_str(), "must be a whole number of attempts, 1 or more")),
    }
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

const MAX_TIMEOUT: f64 = 2_147_483_647.0;

/// The `tags` and `alias` arguments of `bind(userId, tags?, alias?)`, or its options form
/// `bind(userId, { tags?, alias?, token? })`: `(tags, data)`, where `data` is the bind's data
/// field (the alias, or the bind token; not both). Anything else is `INVALID_ARGUMENT`.
pub fn bind_args(tags: &JsValue, alias: &JsValue) -> Result<(Option<String>, Option<String>), JsValue> {
    let bad = |what: &str| js_error(ErrorCode::InvalidArgument, &["bind: ", what].concat());
    let string = |v: &JsValue, name: &str| -> Result<Option<String>, JsValue> {
        if v.is_undefined() || v.is_null() {
            return Ok(None);
        }
        v.as_string().map(Some).ok_or_else(|| bad(&[name, " must be a string"].concat()))
    };
    if !tags.is_object() {
        return Ok((string(tags, "tags")?, string(alias, "alias")?));
    }
    if !(alias.is_undefined() || alias.is_null()) {
        return Err(bad("no third argument with the options form bind(userId, { tags, alias, token })"));
    }
    let (tags, alias, token) = (string(&field(tags, "tags"), "tags")?, string(&field(tags, "alias"), "alias")?, {
        string(&field(tags, "token"), "token")?
    });
    if alias.is_some() && token.is_some() {
        return Err(bad("alias and token cannot both be given (both are the bind's data)"));
    }
    Ok((tags, alias.or(token)))
}

/// `maxPacketSize`: bytes, default MPUSH's `mp.core.max-packet-size` (10240). At least 1024:
/// a handshake is 128 bytes per 117 of its fields, and the limit is a server setting, not a
/// way to forbid requests.
fn max_packet_size(obj: &JsValue) -> Result<usize, JsValue> {
    let v = field(obj, "maxPacketSize");
    if v.is_undefined() || v.is_null() {
        return Ok(mpush_protocol::frame::DEFAULT_MAX_BODY);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && (1024.0..=MAX_TIMEOUT).contains(&n) => Ok(n.floor() as usize),
        _ => Err(invalid("maxPacketSize", "must be a number of bytes in 1024..2147483647")),
    }
}

impl Options {
    /// Reads and checks the options object.
    pub fn parse(obj: &JsValue) -> Result<Options, JsValue> {
        if !obj.is_object() {
            return Err(js_error(ErrorCode::InvalidOption, "options must be an object with url and publicKey"));
        }
        let url = opt_string(obj, "url")?.ok_or_else(|| invalid("url", "is required"))?;
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
            return Err(invalid("url", "must be a ws:// or wss:// URL"));
        }
        let key = opt_string(obj, "publicKey")?.ok_or_else(|| invalid("publicKey", "is required"))?;
        let public_key = RsaPublicKey::from_base64(key.trim())
            .map_err(|_| invalid("publicKey", "is not a base64 X.509 RSA public key"))?;
        // Filled in field by field, so an invalid option drops one struct, not every string
        // read so far (that cleanup code was a large part of the constructor's wasm).
        let mut o = Options {
            url,
            public_key,
            device_id: None,
            os_name: String::new(),
            os_version: String::new(),
            client_version: String::new(),
            user_id: None,
            tags: None,
            alias: None,
            min_heartbeat: DEFAULT_HEARTBEAT,
            max_heartbeat: DEFAULT_HEARTBEAT,
            storage: Storage::memory(),
            storage_key: String::new(),
            reconnect: None,
            max_attempts: None,
            request_timeout: 0,
            connect_timeout: 0,
            max_packet_size: 0,
        };
        o.device_id = opt_string(obj, "deviceId")?;
        if let Some(id) = &o.device_id {
            if id.is_empty() || id.contains(',') {
                return Err(invalid("deviceId", "must be non-empty and contain no comma"));
            }
        }
        o.user_id = non_empty(opt_string(obj, "userId")?);
        o.tags = non_empty(opt_string(obj, "tags")?);
        o.alias = non_empty(opt_string(obj, "alias")?);
        let bind_token = non_empty(opt_string(obj, "bindToken")?);
        if o.user_id.is_none() && (o.tags.is_some() || o.alias.is_some() || bind_token.is_some()) {
            return Err(invalid("tags", "alias and bindToken need userId"));
        }
        // Both travel in the bind's one `data` field.
        if o.alias.is_some() && bind_token.is_some() {
            return Err(invalid("bindToken", "and alias cannot both be given (both are the bind's data)"));
        }
        if bind_token.is_some() {
            o.alias = bind_token;
        }

        let min_hb = opt_ms(obj, "minHeartbeat", 2000.0)?;
        let max_hb = opt_ms(obj, "maxHeartbeat", 2000.0)?;
        (o.min_heartbeat, o.max_heartbeat) = match (min_hb, max_hb) {
            (Some(a), Some(b)) if a > b => return Err(invalid("minHeartbeat", "must not exceed maxHeartbeat")),
            (Some(a), Some(b)) => (a as i32, b as i32),
            (Some(a), None) => (a as i32, (a as i32).max(DEFAULT_HEARTBEAT)),
            (None, Some(b)) => ((b as i32).min(DEFAULT_HEARTBEAT), b as i32),
            (None, None) => (DEFAULT_HEARTBEAT, DEFAULT_HEARTBEAT),
        };

        let v = field(obj, "reconnect");
        if v.is_undefined() || v.is_null() || v.as_bool() == Some(true) {
            o.reconnect = Some((500.0, 20_000.0));
        } else if v.as_bool() == Some(false) {
            o.reconnect = None;
        } else if v.is_object() {
            let min = opt_ms(&v, "minDelay", 1.0)?.unwrap_or(500.0);
            let max = opt_ms(&v, "maxDelay", 1.0)?.unwrap_or(min.max(20_000.0));
            if max < min {
                return Err(invalid("reconnect.maxDelay", "must not be below reconnect.minDelay"));
            }
            o.max_attempts = opt_count(&v, "maxAttempts")?;
            o.reconnect = Some((min, max));
        } else {
            return Err(invalid("reconnect", "must be true, false or { minDelay, maxDelay, maxAttempts }"));
        }

        o.os_name = non_empty(opt_string(obj, "osName")?).unwrap_or_else(|| "web".into());
        o.os_version = opt_string(obj, "osVersion")?.unwrap_or_default();
        o.client_version = opt_string(obj, "clientVersion")?.unwrap_or_default();
        o.storage = Storage::from_option(&field(obj, "storage"))?;
        o.storage_key = opt_string(obj, "storageKey")?.unwrap_or_else(|| DEFAULT_STORAGE_KEY.into());
        o.request_timeout = opt_ms(obj, "requestTimeout", 1.0)?.unwrap_or(10_000.0) as u64;
        o.connect_timeout = opt_ms(obj, "connectTimeout", 1.0)?.unwrap_or(10_000.0) as u64;
        o.max_packet_size = max_packet_size(obj)?;
        Ok(o)
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::errors::code_of;
    use wasm_bindgen_test::wasm_bindgen_test;

    /// The public key of shared/vectors/mpush-java-reference.json.
    pub(crate) const KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCI9vj8vqUVx2JVhl+dZumNkgC11+wd6AzO7MiooCylAMkaWRorSjnKX9nUqmVMJQ8n+u+4KguoEh0NN3qRgB8f4bPbwxqnZAXtYE4i4UCR+n/ef14ovI7ws7gLfsYF5rRIFRlw325kKnuCUrQpHSlRG6S15X9CbVJt0XMh5IUe8wIDAQAB";

    fn opts(js: &str) -> Result<Options, JsValue> {
        let src = ["({ url: 'ws://127.0.0.1:1/mpush', publicKey: '", KEY, "', storage: 'memory', ", js, " })"].concat();
        Options::parse(&js_sys::eval(&src).unwrap())
    }

    fn code(r: Result<Options, JsValue>) -> String {
        code_of(&r.unwrap_err()).unwrap()
    }

    #[wasm_bindgen_test]
    fn defaults() {
        let o = opts("").unwrap();
        assert_eq!(o.os_name, "web");
        assert_eq!((o.min_heartbeat, o.max_heartbeat), (180_000, 180_000));
        assert_eq!(o.reconnect, Some((500.0, 20_000.0)));
        assert_eq!(o.request_timeout, 10_000);
        assert_eq!(o.storage_key, "mpush:");
        assert_eq!(o.max_packet_size, 10_240);
        assert!(o.device_id.is_none() && o.user_id.is_none());
    }

    #[wasm_bindgen_test]
    fn values_are_read() {
        let o = opts("deviceId: 'd1', userId: 'u', tags: 't', alias: 'a', maxHeartbeat: 30000, reconnect: { minDelay: 100 }, requestTimeout: 5000, storageKey: 'x:'").unwrap();
        assert_eq!(o.device_id.as_deref(), Some("d1"));
        assert_eq!((o.user_id.as_deref(), o.tags.as_deref(), o.alias.as_deref()), (Some("u"), Some("t"), Some("a")));
        assert_eq!((o.min_heartbeat, o.max_heartbeat), (30_000, 30_000));
        assert_eq!(o.reconnect, Some((100.0, 20_000.0)));
        assert_eq!(o.request_timeout, 5000);
        assert_eq!(opts("reconnect: false").unwrap().reconnect, None);
        assert_eq!(opts("reconnect: { maxAttempts: 3 }").unwrap().max_attempts, Some(3));
        assert_eq!(opts("reconnect: { maxAttempts: Infinity }").unwrap().max_attempts, None);
        assert_eq!(opts("").unwrap().max_attempts, None);
        assert_eq!(opts("maxPacketSize: 65536").unwrap().max_packet_size, 65_536);
    }

    #[wasm_bindgen_test]
    fn the_bind_token_is_the_automatic_binds_data() {
        let o = opts("userId: 'u', bindToken: 'v1.99.mac', tags: 't'").unwrap();
        assert_eq!((o.alias.as_deref(), o.tags.as_deref()), (Some("v1.99.mac"), Some("t")));
    }

    #[wasm_bindgen_test]
    fn bind_takes_tags_and_alias_or_an_options_object() {
        let js = |src: &str| js_sys::eval(src).unwrap();
        let u = JsValue::UNDEFINED;
        assert_eq!(bind_args(&js("'vip'"), &js("'al'")).unwrap(), (Some("vip".into()), Some("al".into())));
        assert_eq!(bind_args(&u, &u).unwrap(), (None, None));
        assert_eq!(
            bind_args(&js("({ token: 'v1.9.m', tags: 'vip' })"), &u).unwrap(),
            (Some("vip".into()), Some("v1.9.m".into()))
        );
        assert_eq!(bind_args(&js("({ alias: 'al' })"), &u).unwrap(), (None, Some("al".into())));
        for (tags, alias) in [
            ("({ token: 't', alias: 'a' })", "undefined"),
            ("({ token: 5 })", "undefined"),
            ("({ token: 't' })", "'alias too'"),
            ("7", "undefined"),
            ("'vip'", "8"),
        ] {
            let r = bind_args(&js(tags), &js(alias));
            assert_eq!(code_of(&r.unwrap_err()).as_deref(), Some("INVALID_ARGUMENT"), "{tags} {alias}");
        }
    }

    #[wasm_bindgen_test]
    fn invalid_options_are_rejected_with_invalid_option() {
        assert_eq!(code(Options::parse(&JsValue::UNDEFINED)), "INVALID_OPTION");
        let no_url = ["({ publicKey: '", KEY, "' })"].concat();
        assert_eq!(code(Options::parse(&js_sys::eval(&no_url).unwrap())), "INVALID_OPTION");
        for bad in [
            "url: 'http://x'",
            "publicKey: 'not a key'",
            "publicKey: undefined",
            "deviceId: 'a,b'",
            "deviceId: ''",
            "minHeartbeat: 1000",
            "minHeartbeat: 60000, maxHeartbeat: 30000",
            "maxHeartbeat: 'x'",
            "reconnect: { minDelay: 1000, maxDelay: 10 }",
            "reconnect: 5",
            "reconnect: { maxAttempts: 0 }",
            "reconnect: { maxAttempts: 1.5 }",
            "reconnect: { maxAttempts: '3' }",
            "requestTimeout: -1",
            "storage: 'disk'",
            "tags: 'x'",
            "bindToken: 'v1.1.x'",
            "userId: 'u', alias: 'a', bindToken: 'v1.1.x'",
            "userId: 'u', bindToken: 5",
            "osVersion: 7",
            "maxPacketSize: 100",
            "maxPacketSize: 'big'",
        ] {
            assert_eq!(code(opts(bad)), "INVALID_OPTION", "{bad}");
        }
    }
}
