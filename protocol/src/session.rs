//! Session-level types shared by the client and the server: ack modes, client types, and the
//! two stored-session formats MPUSH uses (the client's `PersistentSession` string and the
//! server's resumable session).

use std::collections::{HashMap, VecDeque};
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

// Plain loops rather than collect + join: the browser package carries neither then. The
// bytes are formatted as i64, the type the expiry time already brings the code for.
fn bytes_to_signed_list(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(16 * 4);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push('|');
        }
        s.push_str(&i64::from(*x as i8).to_string());
    }
    s
}

/// Exactly 16 signed decimal bytes separated by '|' (each may have whitespace around it).
fn signed_list_to_bytes(s: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut parts = s.split('|');
    for b in &mut out {
        *b = parts.next()?.trim().parse::<i8>().ok()? as u8;
    }
    parts.next().is_none().then_some(out)
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
///
/// Full, it evicts the session stored longest ago, in O(1): an insertion-ordered queue of
/// `(id, generation)` beside the map. Every server session gets the same lifetime, so that is
/// also the one expiring first. Re-storing an id (or purging) leaves a stale queue entry
/// behind, skipped when it comes up and dropped by a compaction once stale entries outnumber
/// live ones, so the queue stays within twice the map.
#[derive(Debug)]
pub struct MemorySessionStore {
    inner: Mutex<StoreInner>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct StoreInner {
    /// Session and the generation of its queue entry.
    map: HashMap<String, (ResumableSession, u64)>,
    /// Ids in insertion order with the generation they were stored under.
    order: VecDeque<(String, u64)>,
    next_gen: u64,
}

impl StoreInner {
    /// Removes the live session stored longest ago; amortized O(1).
    fn evict_oldest(&mut self) {
        while let Some((id, generation)) = self.order.pop_front() {
            if self.map.get(&id).is_some_and(|(_, g)| *g == generation) {
                self.map.remove(&id);
                return;
            }
        }
    }

    /// Drops stale queue entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order.retain(|(id, generation)| map.get(id).is_some_and(|(_, g)| g == generation));
        }
    }
}

impl MemorySessionStore {
    /// A store holding at most `max_entries` sessions (the ones stored first are evicted).
    pub fn new(max_entries: usize) -> MemorySessionStore {
        MemorySessionStore { inner: Mutex::new(StoreInner::default()), max_entries: max_entries.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops sessions that expired before `now` (MPUSH: `expireTime < now`); returns how
    /// many are left.
    pub fn purge_expired(&self, now: u64) -> usize {
        let mut inner = self.lock();
        inner.map.retain(|_, (s, _)| s.expire_time >= now as i64);
        inner.compact();
        inner.map.len()
    }

    /// Number of stored sessions.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SessionStore for MemorySessionStore {
    fn get(&self, id: &str) -> Option<ResumableSession> {
        self.lock().map.get(id).map(|(s, _)| s.clone())
    }

    fn put(&self, id: &str, session: ResumableSession) {
        let mut inner = self.lock();
        if inner.map.len() >= self.max_entries && !inner.map.contains_key(id) {
            inner.evict_oldest();
        }
        let generation = inner.next_gen;
        inner.next_gen += 1;
        inner.map.insert(id.to_owned(), (session, generation));
        inner.order.push_back((id.to_owned(), generation));
        inner.compact();
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
    fn signed_lists_read_and_write_as_before() {
        let old_write = |b: &[u8; 16]| b.iter().map(|x| (*x as i8).to_string()).collect::<Vec<_>>().join("|");
        let old_read = |s: &str| -> Option<[u8; 16]> {
            let v: Vec<u8> =
                s.split('|').map(|x| x.trim().parse::<i8>().map(|b| b as u8)).collect::<Result<_, _>>().ok()?;
            v.try_into().ok()
        };
        for b in [[0u8; 16], [0x80; 16], [0x7f; 16], core::array::from_fn(|i| (i * 17) as u8)] {
            assert_eq!(bytes_to_signed_list(&b), old_write(&b));
            assert_eq!(signed_list_to_bytes(&old_write(&b)), Some(b));
        }
        let sixteen = |x: &str| [x; 16].join("|");
        for s in [
            String::new(),
            "1|2|3".into(),
            sixteen("1"),
            sixteen(" -128 "),
            sixteen("128"),
            sixteen("+5"),
            [sixteen("1"), "|".into()].concat(),
            [sixteen("1"), "|x".into()].concat(),
            [sixteen("1"), "|1".into()].concat(),
            sixteen("1").replacen('1', "", 1),
            sixteen("x"),
        ] {
            assert_eq!(signed_list_to_bytes(&s), old_read(&s), "{s:?}");
        }
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

    fn session(expire_time: i64) -> ResumableSession {
        ResumableSession {
            os_name: String::new(),
            os_version: String::new(),
            client_version: String::new(),
            device_id: String::new(),
            key: [0; 16],
            iv: [0; 16],
            expire_time,
        }
    }

    #[test]
    fn memory_store_evicts_in_insertion_order() {
        let st = MemorySessionStore::new(3);
        for id in ["a", "b", "c"] {
            st.put(id, session(9));
        }
        // Re-storing "a" makes it the newest: "b" goes first, then "c".
        st.put("a", session(10));
        st.put("d", session(9));
        assert!(st.get("b").is_none());
        st.put("e", session(9));
        assert!(st.get("c").is_none());
        assert_eq!(st.get("a").map(|s| s.expire_time), Some(10));
        assert!(st.get("d").is_some() && st.get("e").is_some());
        assert_eq!(st.len(), 3);
    }

    #[test]
    fn memory_store_queue_stays_bounded() {
        // Re-storing one id over and over and purging must not grow the queue.
        let st = MemorySessionStore::new(4);
        for _ in 0..10_000 {
            st.put("same", session(1));
        }
        assert!(st.lock().order.len() <= 2 + 16 + 1);
        for i in 0..1000 {
            st.put(&i.to_string(), session(i));
        }
        assert_eq!(st.len(), 4);
        assert!(st.lock().order.len() <= 2 * 4 + 16 + 1);
        assert_eq!(st.purge_expired(999), 1);
        assert!(st.get("999").is_some());
        assert!(st.lock().order.len() <= 2 + 16 + 1);
        // A full store after purges still evicts the oldest live session.
        for id in ["x", "y", "z"] {
            st.put(id, session(5000));
        }
        st.put("w", session(5000));
        assert!(st.get("999").is_none());
        assert_eq!(st.len(), 4);
    }

    #[test]
    fn memory_store_put_is_fast_when_full() {
        // The old store scanned every entry on each put when full (quadratic here).
        let st = MemorySessionStore::new(50_000);
        for i in 0..150_000 {
            st.put(&i.to_string(), session(i));
        }
        assert_eq!(st.len(), 50_000);
        assert!(st.get("99999").is_none() && st.get("100000").is_some());
    }
}
