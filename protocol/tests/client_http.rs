//! HTTP-proxy requests: exactly one `readTimeout` header named as MPUSH reads it, whatever
//! letter case the caller used, and a request the server does not answer resolves with a 408
//! response, as the Java client's `HttpRequestMgr` answers it.
#![allow(clippy::unwrap_used)]

mod client_common;

use client_common::*;
use mpush_protocol::message::{HttpMethod, HttpRequest, HttpResponse, Message};
use mpush_protocol::*;

fn get(headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: HttpMethod::Get,
        uri: "http://api.example.com/x".into(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: vec![],
    }
}

fn sent_headers(s: &mut ClientSession) -> Vec<(String, String)> {
    let p = packet(&transmits(s)[0]);
    HttpRequest::decode(&plain(&p)).unwrap().headers
}

#[test]
fn exactly_one_read_timeout_header_goes_out() {
    let mut s = ready_with(|c| c.http_read_timeout = 7000);
    // None given: the default.
    s.http_request(T0, get(&[("accept", "*/*")])).unwrap();
    assert_eq!(sent_headers(&mut s), vec![("accept".into(), "*/*".into()), ("readTimeout".into(), "7000".into())]);
    // Lower-cased by a browser, or given twice: one, canonical, the last value.
    s.http_request(T0, get(&[("readtimeout", "3000"), ("x", "1"), ("ReadTimeout", "4000")])).unwrap();
    assert_eq!(sent_headers(&mut s), vec![("readTimeout".into(), "4000".into()), ("x".into(), "1".into())]);
    // A value MPUSH would ignore (it falls back to its own default) is refused here.
    for bad in ["0", "soon", "3000, 4000"] {
        let r = s.http_request(T0, get(&[("readtimeout", bad)]));
        assert!(matches!(r, Err(ClientError::InvalidArgument(_))), "{bad}: {r:?}");
    }
    assert!(transmits(&mut s).is_empty());
}

#[test]
fn an_unanswered_request_resolves_with_408_after_its_read_timeout() {
    let mut s = ready_with(|c| c.request_timeout = 2000);
    let id = s.http_request(T0, get(&[("readtimeout", "5000")])).unwrap();
    transmits(&mut s);
    // The server's own 408 would come after 5 s; the client waits 2 s more.
    assert_eq!(s.poll_timeout(), Some(T0 + 7000));
    s.handle_timeout(T0 + 6999);
    assert!(events(&mut s).is_empty());
    s.handle_timeout(T0 + 7000);
    let response =
        HttpResponse { status_code: 408, reason_phrase: Some("Request Timeout".into()), headers: vec![], body: vec![] };
    assert_eq!(events(&mut s), vec![ClientEvent::HttpResponse { request: id, response }]);
    // A late answer is dropped.
    let late = HttpResponse { status_code: 200, reason_phrase: None, headers: vec![], body: b"late".to_vec() };
    s.handle_input(T0 + 8000, &sealed(Command::HTTP_PROXY, id.0, late.encode())).unwrap();
    assert!(events(&mut s).is_empty());
    assert_eq!(s.state(), ClientState::Ready);
}

#[test]
fn a_lost_connection_is_not_a_timeout() {
    let mut s = ready();
    let id = s.http_request(T0, get(&[])).unwrap();
    s.handle_disconnected(T0 + 1);
    assert_eq!(events(&mut s), vec![ClientEvent::RequestFailed { request: id, error: RequestError::ConnectionLost }]);
}

#[test]
fn answers_match_by_id() {
    let mut s = ready();
    let a = s.http_request(T0, get(&[])).unwrap();
    let b = s.http_request(T0, get(&[])).unwrap();
    let resp = |code| HttpResponse { status_code: code, reason_phrase: None, headers: vec![], body: vec![] };
    // MPUSH's own errors arrive raw (unencrypted).
    let raw = Packet { cmd: Command::HTTP_PROXY, flags: Flags::NONE, session_id: b.0, body: resp(504).encode() };
    s.handle_input(T0, &raw.to_bytes()).unwrap();
    s.handle_input(T0, &sealed(Command::HTTP_PROXY, a.0, resp(201).encode())).unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            ClientEvent::HttpResponse { request: b, response: resp(504) },
            ClientEvent::HttpResponse { request: a, response: resp(201) }
        ]
    );
}
