//! MPUSH's idle check (`ServerConnectionManager.HeartbeatCheckTask`): it runs every heartbeat
//! from the moment of connection, the pre-handshake heartbeat (10 s) until a handshake; a
//! check that finds nothing read for more than heartbeat + 1 s is a miss, any other resets
//! the count, and the third miss in a row closes. There is no separate handshake timeout.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::*;
use server_common::*;

fn closed_at(s: &mut Server, until: u64) -> Option<u64> {
    while let Some(at) = s.s.poll_timeout().filter(|at| *at <= until) {
        s.now = at;
        s.s.handle_timeout(at);
        if s.s.is_closed() {
            assert_eq!(close_reason(&s.events()), Some(CloseReason::IdleTimeout));
            return Some(at);
        }
    }
    None
}

#[test]
fn a_silent_connection_is_closed_by_the_fourth_pre_handshake_check() {
    // Checks at 10 s (10 s < 11 s: no miss), 20, 30, 40 s (misses 1, 2, 3).
    let mut s = Server::new();
    assert_eq!(s.s.poll_timeout(), Some(T0 + 10_000));
    assert_eq!(closed_at(&mut s, T0 + 3_600_000), Some(T0 + 40_000));
}

#[test]
fn the_pre_handshake_heartbeat_is_configurable() {
    let mut s = Server::with(|c| c.pre_handshake_heartbeat = 2_000);
    assert_eq!(closed_at(&mut s, T0 + 3_600_000), Some(T0 + 8_000));
    let mut s = Server::with(|c| c.max_heartbeat_timeouts = 0);
    assert_eq!(closed_at(&mut s, T0 + 3_600_000), Some(T0 + 20_000));
}

#[test]
fn heartbeats_alone_keep_an_unhandshaked_connection_open() {
    let mut s = Server::new();
    let end = T0 + 600_000;
    while s.now < end {
        let t = s.now + 9_000;
        assert_eq!(closed_at(&mut s, t), None);
        s.now = t;
        s.input(&[0xDF]);
        s.out();
    }
    assert!(!s.s.is_closed());
}

#[test]
fn only_whole_packets_count_as_reads() {
    // A frame trickling in byte by byte never completes: MPUSH counts no read.
    let mut s = Server::new();
    let frame = packet(Command::PUSH, Flags::NONE, 1, vec![0; 100]);
    let mut sent = 0;
    let mut closed = None;
    while closed.is_none() && sent < frame.len() - 1 {
        s.input(&frame[sent..sent + 1]);
        sent += 1;
        let t = s.now + 5_000;
        closed = closed_at(&mut s, t);
        s.now = t;
    }
    assert_eq!(closed, Some(T0 + 40_000));
}

#[test]
fn after_a_handshake_the_check_keeps_its_tick_and_takes_the_new_heartbeat() {
    let mut s = Server::with(|c| {
        c.min_heartbeat = 30_000;
        c.max_heartbeat = 30_000;
    });
    s.now = T0 + 5_000;
    s.input(&vector_packet("fast_connect"));
    assert_eq!(s.s.heartbeat(), 30_000);
    // The tick set at connection (10 s) stays; it finds a read 5 s ago, then ticks every 30 s:
    // 40 s (35 s > 31 s: miss 1), 70 s, 100 s: closed.
    assert_eq!(s.s.poll_timeout(), Some(T0 + 10_000));
    assert_eq!(closed_at(&mut s, T0 + 99_999), None);
    assert_eq!(closed_at(&mut s, T0 + 100_000), Some(T0 + 100_000));

    // A read between checks resets the count at the next one.
    let mut s = Server::with(|c| {
        c.min_heartbeat = 30_000;
        c.max_heartbeat = 30_000;
    });
    s.input(&vector_packet("fast_connect"));
    assert_eq!(closed_at(&mut s, T0 + 70_000), None); // misses at 40 s and 70 s
    s.now = T0 + 75_000;
    s.input(&[0xDF]);
    assert_eq!(closed_at(&mut s, T0 + 160_000), None); // 100 s resets; 130, 160 miss
    assert_eq!(closed_at(&mut s, T0 + 190_000), Some(T0 + 190_000));
}
