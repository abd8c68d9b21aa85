//! Session-level types shared by the client and the server: ack modes, client types, and the
//! two stored-session formats MPUSH uses (the client's `PersistentSession` string and the
//! server's resumable session).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::frame::Flags;

/// How a push is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AckMode {
    /// No ack.
    #[default]
    None,
    /// The receiving client acks as soon as the push is delivered (flag AUTO_ACK).
    Auto,
    /// The receiving application acks explicitly (flag BIZ_ACK).
    Biz,
}

impl AckMode {
    /// The packet flag for this mode.
    pub fn flags(self) -> Flags {
        match self {
            AckMode::None => Flags::NONE,
            AckMode::Auto => Flags::AUTO_ACK,
            AckMode::Biz => Flags::BIZ_ACK,
        }
    }

    /// The mode a packet's flags ask for (BIZ_ACK wins if both are set).
    pub fn from_flags(f: Flags) -> AckMode {
        if f.contains(Flags::BIZ_ACK) {
            AckMode::Biz
        } else if f.contains(Flags::AUTO_ACK) {
            AckMode::Auto
        } else {
            AckMode::None
        }
    }
}

/// MPUSH's client type, derived from the OS name; a user has at most one connection per type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientType {
    /// "android", "ios"
    Mobile,
    /// "windows", "mac", "linux"
    Pc,
    /// "web", "h5"
    Web,
    /// Anything else.
    Unknown,
}

impl ClientType {
    /// MPUSH's rule: the first type one of whose names the lower-cased OS name contains.
    pub fn from_os_name(os_name: &str) -> ClientType {
        let os = os_name.to_lowercase();
        let table: [(ClientType, &[&str]); 3] = [
            (ClientType::Mobile, &["android", "ios"]),
            (ClientType::Pc, &["windows", "mac", "linux"]),
            (ClientType::Web, &["web", "h5"]),
        ];
        table.iter().find(|(_, names)| names.iter().any(|n| os.contains(n))).map_or(ClientType::Unknown, |(t, _)| *t)
    }
}

fn bytes_to_signed_list(b: &[u8; 16]) -> String {
    b.iter().map(|x| (*x as i8).to_string()).collect::<Vec<_>>().join("|")
}

fn signed_list_to_bytes(s: &str) -> Option<[u8; 16]> {
    let v: Vec<u8> = s.split('|').map(|x| x.trim().parse::<i8>().map(|b| b as u8)).collect::<Result<_, _>>().ok()?;
    v.try_into().ok()
}

/// A stored-session string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid stored session: {0}")]
pub struct StoredSessionError(pub &'static str);

/// What a client keeps for fast connect, in the Java client's `PersistentSession` format:
/// `sessionId,expireTime,k0|...|k15,i0|...|i15`, bytes as signed decimals.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Resumable session id.
    pub session_id: String,
    /// Expiry, epoch ms.
    pub expire_time: i64,
    /// Session key.
    pub key: [u8; 16],
    /// Session IV.
    pub iv: [u8; 16],
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("session_id", &self.session_id)
            .field("expire_time", &self.expire_time)
            .finish_non_exhaustive()
    }
}

impl StoredSession {
    /// The `PersistentSession` string.
    pub fn to_persistent_string(&self) -> String {
        // Concatenation rather than `format!`: the browser package has no other use for
        // core::fmt's machinery.
        let (exp, key, iv) =
            (self.expire_time.to_string(), bytes_to_signed_list(&self.key), bytes_to_signed_list(&self.iv));
        [self.session_id.as_str(), ",", &exp, ",", &key, ",", &iv].concat()
    }

    /// Parses a `PersistentSession` string.
    pub fn parse_persistent(s: &str) -> Result<StoredSession, StoredSessionError> {
        let parts: Vec<&str> = s.trim().split(',').collect();
        let [id, exp, key, iv] = parts.as_slice() else { return Err(StoredSessionError("expected 4 fields")) };
        if id.is_empty() {
            return Err(StoredSessionError("empty session id"));
        }
        Ok(StoredSession {
            session_id: (*id).to_owned(),
            expire_time: exp.parse().map_err(|_| StoredSessionError("expire time"))?,
            key: signed_list_to_bytes(key).ok_or(StoredSessionError("key"))?,
            iv: signed_list_to_bytes(iv).ok_or(StoredSessionError("iv"))?,
        })
    }

    /// Whether the session has expired at `now` (epoch ms).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expire_time <= now as i64
    }
}

/// What a server keeps for fast connect (MPUSH's `ReusableSession`).
#[derive(Clone, PartialEq, Eq)]
pub struct ResumableSession {
    /// OS name.
    pub os_name: String,
    /// OS version.
    pub os_version: String,
    /// Client version.
    pub client_version: String,
    /// Device id.
    pub device_id: String,
    /// Session key.
    pub key: [u8; 16],
    /// Session IV.
    pub iv: [u8; 16],
    /// Expiry, epoch ms.
    pub expire_time: i64,
}

impl std::fmt::Debug for ResumableSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableSession")
            .field("device_id", &self.device_id)
            .field("os_name", &self.os_name)
            .field("expire_time", &self.expire_time)
            .finish_non_exhaustive()
    }
}

impl ResumableSession {
    /// MPUSH's stored form: `osName,osVersion,clientVersion,deviceId,key,iv` (key and iv as
    /// `|`-joined signed bytes). MPUSH needs exactly six fields back, which is why clients
    /// keep commas out of these strings.
    pub fn to_mpush_string(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.os_name,
            self.os_version,
            self.client_version,
            self.device_id,
            bytes_to_signed_list(&self.key),
            bytes_to_signed_list(&self.iv)
        )
    }

    /// Parses MPUSH's stored form; the expiry is kept by the store, not in the string.
    pub fn parse_mpush(s: &str, expire_time: i64) -> Result<ResumableSession, StoredSessionError> {
        let parts: Vec<&str> = s.split(',').collect();
        let [os_name, os_version, client_version, device_id, key, iv] = parts.as_slice() else {
            return Err(StoredSessionError("expected 6 fields"));
        };
        Ok(ResumableSession {
            os_name: (*os_name).to_owned(),
            os_version: (*os_version).to_owned(),
            client_version: (*client_version).to_owned(),
            device_id: (*device_id).to_owned(),
            key: signed_list_to_bytes(key).ok_or(StoredSessionError("key"))?,
            iv: signed_list_to_bytes(iv).ok_or(StoredSessionError("iv"))?,
            expire_time,
        })
    }
}

/// Where a server keeps resumable sessions (MPUSH keeps them in Redis under `mp:rs:<id>`).
/// Shared by all connections, hence `&self` and `Sync`.
pub trait SessionStore: Send + Sync {
    /// The session stored under `id`, if any (expiry is checked by the caller).
    fn get(&self, id: &str) -> Option<ResumableSession>;
    /// Stores a session.
    fn put(&self, id: &str, session: ResumableSession);
}

/// An in-memory [`SessionStore`], bounded in entries.
#[derive(Debug)]
pub struct MemorySessionStore {
    map: Mutex<HashMap<String, ResumableSession>>,
    max_entries: usize,
}

impl MemorySessionStore {
    /// A store holding at most `max_entries` sessions (the ones expiring first are evicted).
    pub fn new(max_entries: usize) -> MemorySessionStore {
        MemorySessionStore { map: Mutex::new(HashMap::new()), max_entries: max_entries.max(1) }
    }

    /// Drops sessions that expired before `now` (MPUSH: `expireTime < now`); returns how
    /// many are left.
    pub fn purge_expired(&self, now: u64) -> usize {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| s.expire_time >= now as i64);
        m.len()
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    fn get(&self, id: &str) -> Option<ResumableSession> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn put(&self, id: &str, session: ResumableSession) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= self.max_entries && !m.contains_key(id) {
            let oldest = m.iter().min_by_key(|(_, s)| s.expire_time).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.remove(&k);
            }
        }
        m.insert(id.to_owned(), session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_types_follow_mpush() {
        assert_eq!(ClientType::from_os_name("web"), ClientType::Web);
        assert_eq!(ClientType::from_os_name("H5"), ClientType::Web);
        assert_eq!(ClientType::from_os_name("Android"), ClientType::Mobile);
        assert_eq!(ClientType::from_os_name("Windows"), ClientType::Pc);
        assert_eq!(ClientType::from_os_name("beos"), ClientType::Unknown);
    }

    #[test]
    fn resumable_session_string_round_trips() {
        let s = ResumableSession {
            os_name: "web".into(),
            os_version: "Chrome 156".into(),
            client_version: "1.0".into(),
            device_id: "d".into(),
            key: [0x80; 16],
            iv: [127; 16],
            expire_time: 5,
        };
        let text = s.to_mpush_string();
        assert!(text.starts_with("web,Chrome 156,1.0,d,-128|-128|"));
        assert_eq!(ResumableSession::parse_mpush(&text, 5).unwrap(), s);
        assert!(ResumableSession::parse_mpush("a,b,c", 0).is_err());
    }

    #[test]
    fn stored_session_rejects_garbage() {
        for bad in [
            "",
            "a,1,2",
            "a,x,1|2,3",
            "a,1,1|2|3,1|2|3",
            ",1,0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0,0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
        ] {
            assert!(StoredSession::parse_persistent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_store_is_bounded() {
        let st = MemorySessionStore::new(2);
        let mk = |e| ResumableSession {
            os_name: String::new(),
            os_version: String::new(),
            client_version: String::new(),
            device_id: String::new(),
            key: [0; 16],
            iv: [0; 16],
            expire_time: e,
        };
        st.put("a", mk(1));
        st.put("b", mk(2));
        st.put("c", mk(3));
        assert_eq!(st.len(), 2);
        assert!(st.get("a").is_none());
        assert_eq!(st.purge_expired(2), 2);
        assert_eq!(st.purge_expired(3), 1);
    }
}
