#![no_main]
//! Arbitrary input to a server session, fresh or already resumed through fast connect.
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use mpush_protocol::message::{FastConnect, Message};
use mpush_protocol::*;

mod common;

fn config() -> Arc<ServerConfig> {
    static C: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = ServerConfig::new(common::private_key());
        c.http_proxy_enabled = true;
        Arc::new(c)
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let store = MemorySessionStore::new(4);
    store.put(
        "s1",
        ResumableSession {
            os_name: "web".into(),
            os_version: String::new(),
            client_version: String::new(),
            device_id: "d".into(),
            key: common::KEY,
            iv: common::IV,
            expire_time: (common::NOW + 1000) as i64,
        },
    );
    let mut s = ServerSession::new(config(), [0; 32], common::NOW);
    if mode & 1 == 1 {
        let fc = FastConnect { session_id: "s1".into(), device_id: "d".into(), min_heartbeat: 0, max_heartbeat: 0 };
        let p = Packet { cmd: Command::FAST_CONNECT, flags: Flags::NONE, session_id: 1, body: fc.encode() };
        s.handle_input(common::NOW, &p.to_bytes(), &store).expect("fast connect");
    }
    let _ = s.handle_input(common::NOW, input, &store);
    s.handle_timeout(common::NOW + 10_000_000);
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
});
