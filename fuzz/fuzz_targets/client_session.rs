#![no_main]
//! Arbitrary input to a client session while handshaking or after a fast connect.
use libfuzzer_sys::fuzz_target;
use mpush_protocol::message::{FastConnectOk, Message};
use mpush_protocol::*;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let cfg = ClientConfig::new(common::public_key(), "d");
    let stored = StoredSession { session_id: "s1".into(), expire_time: i64::MAX, key: common::KEY, iv: common::IV };
    let mut c = if mode & 1 == 1 {
        ClientSession::resume(cfg, [1; 32], stored).expect("config")
    } else {
        ClientSession::new(cfg, [1; 32]).expect("config")
    };
    c.handle_connected(common::NOW).expect("connect");
    if mode & 2 == 2 && mode & 1 == 1 {
        let p = Packet { cmd: Command::FAST_CONNECT, flags: Flags::NONE, session_id: 1, body: FastConnectOk { heartbeat: 60_000 }.encode() };
        c.handle_input(common::NOW, &p.to_bytes()).expect("fast connect ok");
    }
    let _ = c.handle_input(common::NOW, input);
    c.handle_timeout(common::NOW + 10_000_000);
    while c.poll_transmit().is_some() {}
    while c.poll_event().is_some() {}
});
