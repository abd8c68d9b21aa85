//! The HTTP proxy's protocol side as MPUSH 0.8.0's `HttpProxyHandler` does it before its HTTP
//! client takes over: the request as MPUSH parses it, the statuses it answers by itself, and
//! how responses are sealed (with the RSA key before any handshake).
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used)]

mod server_common;

use mpush_protocol::message::{HttpRequest, HttpResponse, Message};
use mpush_protocol::*;
use server_common::*;

fn request(uri: &str, headers: Option<&str>) -> Vec<u8> {
    let mut w = codec::Writer::new();
    w.u8(1).str(uri).opt_str(headers).bytes(Some(b"{}"));
    w.finish()
}

fn status(status: i32, reason: &str, sid: i32) -> Vec<u8> {
    let r = HttpResponse { status_code: status, reason_phrase: Some(reason.into()), headers: vec![], body: vec![] };
    packet(Command::HTTP_PROXY, Flags::NONE, sid, r.encode())
}

#[test]
fn the_reference_request_reaches_the_driver_and_the_reference_response_goes_back() {
    let mut s = Server::resumed();
    s.input(&vector_packet("http_request"));
    let ev = s.events();
    let [ServerEvent::HttpRequest { session_id: 4, request }] = &ev[..] else { panic!("{ev:?}") };
    assert_eq!(
        request,
        &HttpRequest {
            method: HttpMethod::Post,
            uri: "http://api.example.com/v1/echo?x=1".into(),
            headers: vec![("Content-Type".into(), "application/json".into()), ("readTimeout".into(), "5000".into())],
            body: br#"{"a":1}"#.to_vec(),
        }
    );
    let resp = HttpResponse {
        status_code: 200,
        reason_phrase: Some("OK".into()),
        headers: vec![("Content-Length".into(), "11".into())],
        body: br#"{"ok":true}"#.to_vec(),
    };
    s.s.http_response(s.now, 4, &resp).unwrap();
    assert_eq!(s.out(), vec![vector_packet("http_response")]);
    // The compressed reference request (flags 3) is inflated.
    s.input(&vector_packet("http_request_compressed"));
    assert!(
        matches!(&s.events()[..], [ServerEvent::HttpRequest { request, .. }] if request.body.len() == 1500 && request.method == HttpMethod::Put)
    );
}

#[test]
fn an_empty_uri_is_answered_400_and_then_502() {
    let mut s = Server::resumed();
    s.input(&packet(Command::HTTP_PROXY, Flags::CRYPTO, 9, cipher().encrypt(&request("", None))));
    // MPUSH sends 400 "Bad Request", goes on, builds its request with the null URI, throws:
    // 502 "Bad Gateway" too. Both raw, no headers, no body.
    assert_eq!(s.out(), vec![status(400, "Bad Request", 9), status(502, "Bad Gateway", 9)]);
    assert_eq!(
        status(400, "Bad Request", 9),
        hex::decode("000000150c0000000000000900 00000190 000b 4261642052657175657374 0000 0000".replace(' ', ""))
            .unwrap()
    );
    assert!(s.events().is_empty());
    assert!(!s.s.is_closed());
}

#[test]
fn headers_are_read_into_a_java_hash_map() {
    let mut s = Server::resumed();
    let headers = "a:1\nA:2\na:3\nempty:\n:nameless\nno-colon\nlast:dropped";
    s.input(&packet(Command::HTTP_PROXY, Flags::CRYPTO, 9, cipher().encrypt(&request("http://h/", Some(headers)))));
    let ev = s.events();
    let [ServerEvent::HttpRequest { request, .. }] = &ev[..] else { panic!("{ev:?}") };
    // Repeats keep their first place and last value; an empty value takes the previous line's;
    // the unterminated last line is dropped.
    assert_eq!(request.headers, vec![("a".into(), "3".into()), ("A".into(), "2".into()), ("empty".into(), "3".into())]);
}

#[test]
fn headers_netty_refuses_are_answered_502() {
    for headers in ["bad name:1\n", "first:\n", "x:json\r\n", "caf\u{e9}:1\n"] {
        let mut s = Server::resumed();
        s.input(&packet(Command::HTTP_PROXY, Flags::CRYPTO, 9, cipher().encrypt(&request("http://h/", Some(headers)))));
        assert_eq!(s.out(), vec![status(502, "Bad Gateway", 9)], "{headers:?}");
        assert!(s.events().is_empty());
    }
}

#[test]
fn requests_need_no_handshake_and_are_answered_under_the_rsa_key() {
    let mut s = Server::new();
    s.input(&packet(Command::HTTP_PROXY, Flags::NONE, 3, request("http://h/x", Some("k:v\n"))));
    assert!(matches!(&s.events()[..], [ServerEvent::HttpRequest { session_id: 3, .. }]));
    let resp =
        HttpResponse { status_code: 200, reason_phrase: Some("OK".into()), headers: vec![], body: b"hi".to_vec() };
    s.s.http_response(s.now, 3, &resp).unwrap();
    let p = parse(&s.out()[0]);
    assert_eq!((p.cmd, p.flags, p.session_id, p.body.len()), (Command::HTTP_PROXY, Flags::CRYPTO, 3, 128));
    assert_eq!(HttpResponse::decode(&keys().1.decrypt(&p.body).unwrap()).unwrap(), resp);
    // Generated statuses are raw.
    s.s.http_error(s.now, 3, 504, "Gateway Timeout").unwrap();
    assert_eq!(s.out(), vec![status(504, "Gateway Timeout", 3)]);
}
