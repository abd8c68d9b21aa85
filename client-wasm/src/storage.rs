//! Where the device id and the resumable session (for fast connect across reloads) live:
//! `localStorage`, `sessionStorage`, memory, or a user adapter `{ get(k), set(k, v), remove(k) }`.
//!
//! Storage failures (quota, privacy modes, sandboxed iframes) never break the client: a web
//! storage that cannot be opened falls back to memory, and failed writes are ignored.

use std::cell::RefCell;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::errors::{js_error, ErrorCode};

/// Key suffix of the persisted device id.
pub const DEVICE_ID_KEY: &str = "deviceId";
/// Key suffix of the persisted `StoredSession`.
pub const SESSION_KEY: &str = "session";

/// A key-value store for the client's small persistent state.
#[derive(Debug)]
pub enum Storage {
    /// `localStorage` or `sessionStorage`.
    Web(web_sys::Storage),
    /// Lost on reload.
    Memory(RefCell<Vec<(String, String)>>),
    /// A user adapter with synchronous `get`, `set` and `remove` methods.
    Custom {
        /// The adapter object (`this` for its methods).
        target: Object,
        /// `get(key) -> string | null | undefined`.
        get: Function,
        /// `set(key, value)`.
        set: Function,
        /// `remove(key)`.
        remove: Function,
    },
}

fn web_storage(name: &str) -> Option<web_sys::Storage> {
    // Reading `localStorage` throws a SecurityError in some sandboxed or privacy contexts.
    let v = Reflect::get(&crate::browser::global(), &name.into()).ok()?;
    v.dyn_into::<web_sys::Storage>().ok()
}

impl Storage {
    /// An empty memory store.
    pub fn memory() -> Storage {
        Storage::Memory(RefCell::new(Vec::new()))
    }

    /// From the `storage` option: `undefined` (= "local"), "local", "session", "memory" or an
    /// adapter object.
    pub fn from_option(v: &JsValue) -> Result<Storage, JsValue> {
        if v.is_undefined() || v.is_null() {
            return Ok(Storage::web_or_memory("localStorage"));
        }
        if let Some(s) = v.as_string() {
            return match s.as_str() {
                "local" => Ok(Storage::web_or_memory("localStorage")),
                "session" => Ok(Storage::web_or_memory("sessionStorage")),
                "memory" => Ok(Storage::memory()),
                _ => Err(js_error(
                    ErrorCode::InvalidOption,
                    "storage must be \"local\", \"session\", \"memory\" or { get, set, remove }",
                )),
            };
        }
        let target: Object = v
            .clone()
            .dyn_into()
            .map_err(|_| js_error(ErrorCode::InvalidOption, "storage must be a string or an object"))?;
        let method = |name: &str| -> Result<Function, JsValue> {
            Reflect::get(&target, &name.into()).ok().and_then(|f| f.dyn_into::<Function>().ok()).ok_or_else(|| {
                let mut msg = String::from("storage adapter lacks a ");
                msg.push_str(name);
                msg.push_str("() method");
                js_error(ErrorCode::InvalidOption, &msg)
            })
        };
        Ok(Storage::Custom { get: method("get")?, set: method("set")?, remove: method("remove")?, target })
    }

    fn web_or_memory(name: &str) -> Storage {
        web_storage(name).map_or_else(Storage::memory, Storage::Web)
    }

    /// Whether values survive a reload.
    pub fn is_persistent(&self) -> bool {
        !matches!(self, Storage::Memory(_))
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        match self {
            Storage::Web(s) => s.get_item(key).ok().flatten(),
            Storage::Memory(m) => m.borrow().iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
            Storage::Custom { target, get, .. } => get.call1(target, &key.into()).ok()?.as_string(),
        }
    }

    /// Stores `value` under `key`; failures are ignored (the client then just handshakes
    /// again after a reload).
    pub fn set(&self, key: &str, value: &str) {
        match self {
            Storage::Web(s) => {
                let _ = s.set_item(key, value);
            }
            Storage::Memory(m) => {
                // A handful of keys: a Vec is smaller in wasm than a map.
                let mut m = m.borrow_mut();
                m.retain(|(k, _)| k != key);
                m.push((key.to_owned(), value.to_owned()));
            }
            Storage::Custom { target, set, .. } => {
                let _ = set.call2(target, &key.into(), &value.into());
            }
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &str) {
        match self {
            Storage::Web(s) => {
                let _ = s.remove_item(key);
            }
            Storage::Memory(m) => m.borrow_mut().retain(|(k, _)| k != key),
            Storage::Custom { target, remove, .. } => {
                let _ = remove.call1(target, &key.into());
            }
        }
    }
}

/// A fresh random device id: 32 hex digits from `crypto.getRandomValues`.
pub fn random_device_id() -> Result<String, JsValue> {
    let mut b = [0u8; 16];
    crate::browser::random_bytes(&mut b)?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    Ok(b.iter().flat_map(|x| [HEX[(x >> 4) as usize] as char, HEX[(x & 15) as usize] as char]).collect())
}

/// The device id to use: the explicit one, else the stored one, else a new one (stored).
pub fn device_id(storage: &Storage, prefix: &str, explicit: Option<&str>) -> Result<String, JsValue> {
    if let Some(id) = explicit {
        return Ok(id.to_owned());
    }
    let key = [prefix, DEVICE_ID_KEY].concat();
    if let Some(id) = storage.get(&key).filter(|id| !id.is_empty() && !id.contains(',')) {
        return Ok(id);
    }
    let id = random_device_id()?;
    storage.set(&key, &id);
    Ok(id)
}

#[cfg(all(test, target_arch = "wasm32"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn round_trip(s: &Storage) {
        s.remove("mpush-test:k");
        assert_eq!(s.get("mpush-test:k"), None);
        s.set("mpush-test:k", "v1");
        assert_eq!(s.get("mpush-test:k").as_deref(), Some("v1"));
        s.remove("mpush-test:k");
        assert_eq!(s.get("mpush-test:k"), None);
    }

    #[wasm_bindgen_test]
    fn builtin_storages_round_trip() {
        for name in ["local", "session", "memory"] {
            let s = Storage::from_option(&name.into()).unwrap();
            assert_eq!(s.is_persistent(), name != "memory", "{name}");
            round_trip(&s);
        }
        assert!(matches!(Storage::from_option(&JsValue::UNDEFINED).unwrap(), Storage::Web(_)));
    }

    #[wasm_bindgen_test]
    fn custom_adapter_is_called_with_this() {
        let adapter = js_sys::eval(
            "({ m: new Map(), get(k) { return this.m.has(k) ? this.m.get(k) : null; }, \
               set(k, v) { this.m.set(k, v); }, remove(k) { this.m.delete(k); } })",
        )
        .unwrap();
        let s = Storage::from_option(&adapter).unwrap();
        round_trip(&s);
        s.set("a", "b");
        let m = Reflect::get(&adapter, &"m".into()).unwrap().dyn_into::<js_sys::Map>().unwrap();
        assert_eq!(m.get(&"a".into()).as_string().as_deref(), Some("b"));
    }

    #[wasm_bindgen_test]
    fn bad_storage_options_are_rejected() {
        let e = Storage::from_option(&"disk".into()).unwrap_err();
        assert_eq!(crate::errors::code_of(&e).as_deref(), Some("INVALID_OPTION"));
        let no_remove = js_sys::eval("({ get() {}, set() {} })").unwrap();
        assert!(Storage::from_option(&no_remove).is_err());
        assert!(Storage::from_option(&JsValue::from(5)).is_err());
    }

    #[wasm_bindgen_test]
    fn device_id_is_generated_once_and_persisted() {
        let s = Storage::memory();
        let a = device_id(&s, "p:", None).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(device_id(&s, "p:", None).unwrap(), a);
        assert_eq!(s.get("p:deviceId").as_deref(), Some(a.as_str()));
        assert_ne!(device_id(&s, "q:", None).unwrap(), a);
        assert_eq!(device_id(&s, "p:", Some("explicit")).unwrap(), "explicit");
    }
}
