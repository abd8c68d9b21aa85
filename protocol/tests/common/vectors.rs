//! Checks of every case in `tests/data/mpush-java-reference.json` (bytes produced by the Java
//! MPUSH client classes) against this crate's public API.
//!
//! Shared by the native test (`tests/vectors.rs`) and the browser test (`tests/wasm.rs`) so
//! the same assertions run on x86_64 and inside headless Chromium. Each includes this file
//! with `#[path]` and expands [`vector_tests!`] with its own test attribute.
#![allow(clippy::unwrap_used, dead_code)]

use mpush_protocol::body;
#[cfg(feature = "compress")]
use mpush_protocol::crypto::compress;
use mpush_protocol::crypto::{decompress, mix_key};
use mpush_protocol::frame::DEFAULT_MAX_BODY;
use mpush_protocol::message::{
    BindUser, ErrorMessage, FastConnect, FastConnectOk, Handshake, HandshakeOk, Kick, OkMessage,
};
use mpush_protocol::{
    AesCipher, Command, ErrorCode, Flags, Frame, FrameDecoder, HttpMethod, HttpRequest, HttpResponse, Message, Packet,
    RsaPublicKey, StoredSession, HEARTBEAT_BYTE,
};
use rand_chacha::rand_core::SeedableRng;
use serde_json::Value;

/// The vectors, embedded so the wasm build needs no file system.
pub const JSON: &str = include_str!("../data/mpush-java-reference.json");

/// Bodies the vectors inflate to stay far below this.
const MAX_INFLATED: usize = 1 << 20;

/// Expands to one test per check, each marked with `$attr` (`test` or `wasm_bindgen_test`).
#[macro_export]
macro_rules! vector_tests {
    ($attr:meta) => {
        #[$attr]
        fn aes_cbc_cases() {
            vectors::aes_cbc_cases();
        }
        #[$attr]
        fn mix_key_cases() {
            vectors::mix_key_cases();
        }
        #[$attr]
        fn rsa_ciphertexts_decrypt() {
            vectors::rsa_ciphertexts_decrypt();
        }
        #[$attr]
        fn rsa_round_trip() {
            vectors::rsa_round_trip();
        }
        #[$attr]
        fn zlib_cases() {
            vectors::zlib_cases();
        }
        #[$attr]
        fn message_packets() {
            vectors::message_packets();
        }
        #[$attr]
        fn message_packets_split() {
            vectors::message_packets_split();
        }
        #[$attr]
        fn handshake_plain_body() {
            vectors::handshake_plain_body();
        }
        #[$attr]
        fn long_string_field() {
            vectors::long_string_field();
        }
        #[$attr]
        fn heartbeat() {
            vectors::heartbeat();
        }
        #[$attr]
        fn persistent_session() {
            vectors::persistent_session();
        }
    };
}

/// The parsed vectors.
pub fn root() -> Value {
    serde_json::from_str(JSON).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_else(|| panic!("field {k} is not a string in {v}"))
}

fn opt_s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    if v[k].is_null() {
        None
    } else {
        Some(s(v, k))
    }
}

fn int(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("field {k} is not an integer in {v}"))
}

fn hx(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(s(v, k)).unwrap()
}

fn key16(v: &Value, k: &str) -> [u8; 16] {
    hx(v, k).try_into().unwrap()
}

/// Expands the vectors' shorthand `"z repeated 1500 times"` / `"'d' repeated 40000 times"`.
pub fn expand(text: &str) -> String {
    if let Some((unit, rest)) = text.split_once(" repeated ") {
        if let Some(n) = rest.strip_suffix(" times").and_then(|n| n.parse::<usize>().ok()) {
            return unit.trim_matches('\'').repeat(n);
        }
    }
    text.to_owned()
}

/// The session cipher the message vectors are encrypted with.
pub fn cipher(root: &Value) -> AesCipher {
    let a = &root["aes_cbc"];
    AesCipher::new(key16(a, "key_hex"), key16(a, "iv_hex"))
}

pub fn aes_cbc_cases() {
    let root = root();
    let c = cipher(&root);
    let cases = root["aes_cbc"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let plain = hx(case, "plain_hex");
        let want = hx(case, "cipher_hex");
        assert_eq!(hex::encode(c.encrypt(&plain)), hex::encode(&want), "encrypt {}", s(case, "plain_hex"));
        assert_eq!(c.decrypt(&want).unwrap(), plain);
        // PKCS#7: a full block of padding after every whole block.
        assert_eq!(want.len(), (plain.len() / 16 + 1) * 16);
    }
    // A flipped last byte breaks the padding: a typed error, not a panic.
    let mut bad = hx(&cases[1], "cipher_hex");
    *bad.last_mut().unwrap() ^= 0x01;
    assert!(c.decrypt(&bad).is_err());
}

pub fn mix_key_cases() {
    let cases = root()["mix_key"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in &cases {
        let got = mix_key(&key16(case, "client_key_hex"), &key16(case, "server_key_hex"));
        assert_eq!(hex::encode(got), s(case, "session_key_hex"));
    }
}

/// The vectors' private key: the crate's own `RsaPrivateKey` with the `server` feature.
#[cfg(feature = "server")]
fn private_key(b64: &str) -> mpush_protocol::RsaPrivateKey {
    mpush_protocol::RsaPrivateKey::from_base64(b64).unwrap()
}

/// Without `server` (the browser package's feature set) the crate has no private key: the
/// `rsa` dev-dependency decrypts instead, 128-byte block by block as `RsaPrivateKey` does, so
/// the client's own PKCS#1 v1.5 encryption is still checked against the vectors.
#[cfg(not(feature = "server"))]
fn private_key(b64: &str) -> ReferenceKey {
    use base64::Engine;
    use rsa::pkcs8::DecodePrivateKey;
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    ReferenceKey(rsa::RsaPrivateKey::from_pkcs8_der(&der).unwrap())
}

#[cfg(not(feature = "server"))]
struct ReferenceKey(rsa::RsaPrivateKey);

#[cfg(not(feature = "server"))]
impl ReferenceKey {
    fn public_key(&self) -> RsaPublicKey {
        use rsa::traits::PublicKeyParts;
        RsaPublicKey::from_components(&self.0.n().to_bytes_be(), &self.0.e().to_bytes_be()).unwrap()
    }

    fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, rsa::Error> {
        if data.is_empty() || data.len() % 128 != 0 {
            return Err(rsa::Error::Decryption);
        }
        let mut out = Vec::new();
        for block in data.chunks(128) {
            out.extend(self.0.decrypt(rsa::Pkcs1v15Encrypt, block)?);
        }
        Ok(out)
    }
}

pub fn rsa_ciphertexts_decrypt() {
    let root = root();
    let r = &root["rsa"];
    let private = private_key(s(r, "private_key_pkcs8_b64"));
    let public = RsaPublicKey::from_base64(s(r, "public_key_x509_b64")).unwrap();
    assert_eq!(private.public_key(), public);
    assert_eq!(public.to_base64(), s(r, "public_key_x509_b64"));
    let cases = r["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let plain = hx(case, "plain_hex");
        let ct = hx(case, "cipher_hex");
        // 117-byte chunks, one 128-byte block each.
        assert_eq!(ct.len(), plain.len().div_ceil(117).max(1) * 128, "blocks for {} bytes", plain.len());
        assert_eq!(hex::encode(private.decrypt(&ct).unwrap()), s(case, "plain_hex"));
    }
    // Truncated ciphertext is an error.
    let ct = hx(&cases[0], "cipher_hex");
    assert!(private.decrypt(&ct[..ct.len() - 1]).is_err());
}

pub fn rsa_round_trip() {
    let root = root();
    let r = &root["rsa"];
    let private = private_key(s(r, "private_key_pkcs8_b64"));
    let public = RsaPublicKey::from_base64(s(r, "public_key_x509_b64")).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([7; 32]);
    // Around the 117-byte chunk boundary, and a whole handshake body.
    let handshake = hx(message(&root, "handshake_plain_body"), "body_plain_hex");
    let inputs: Vec<Vec<u8>> = vec![vec![], vec![1], vec![2; 116], vec![3; 117], vec![4; 118], vec![5; 300], handshake];
    for plain in inputs {
        let ct = public.encrypt(&mut rng, &plain).unwrap();
        assert_eq!(ct.len(), plain.len().div_ceil(117).max(1) * 128);
        assert_eq!(private.decrypt(&ct).unwrap(), plain, "{} bytes", plain.len());
    }
    // PKCS#1 v1.5 is randomized.
    assert_ne!(public.encrypt(&mut rng, b"x").unwrap(), public.encrypt(&mut rng, b"x").unwrap());
}

pub fn zlib_cases() {
    let cases = root()["zlib"].as_array().unwrap().clone();
    assert!(!cases.is_empty());
    for case in &cases {
        let plain = hx(case, "plain_hex");
        let deflated = hx(case, "deflated_hex");
        assert_eq!(decompress(&deflated, MAX_INFLATED).unwrap(), plain);
        // Our deflate need not match Java's byte for byte, but it must inflate back.
        #[cfg(feature = "compress")]
        assert_eq!(decompress(&compress(&plain), MAX_INFLATED).unwrap(), plain);
        assert!(decompress(&deflated, plain.len().saturating_sub(1)).is_err() || plain.is_empty());
    }
}

fn message<'a>(root: &'a Value, name: &str) -> &'a Value {
    root["messages"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

fn headers(text: Option<&str>) -> Vec<(String, String)> {
    text.map(mpush_protocol::message::parse_headers).unwrap_or_default()
}

/// Decodes `plain` as the message the vector `m` names, checks its fields, and returns the
/// re-encoded body.
fn check_fields(m: &Value) -> Vec<u8> {
    let name = s(m, "name");
    let f = &m["fields"];
    let plain = hx(m, "body_plain_hex");
    fn round<M: Message + std::fmt::Debug + PartialEq>(plain: &[u8], want: M) -> Vec<u8> {
        assert_eq!(M::decode(plain).unwrap(), want);
        want.encode()
    }
    match name {
        "fast_connect" => round(
            &plain,
            FastConnect {
                session_id: s(f, "session_id").into(),
                device_id: s(f, "device_id").into(),
                min_heartbeat: int(f, "min_heartbeat") as i32,
                max_heartbeat: int(f, "max_heartbeat") as i32,
            },
        ),
        "bind" | "unbind" => round(
            &plain,
            BindUser {
                user_id: s(f, "user_id").into(),
                alias: opt_s(f, "alias").map(Into::into),
                tags: opt_s(f, "tags").map(Into::into),
            },
        ),
        "http_request" | "http_request_compressed" => round(
            &plain,
            HttpRequest {
                method: HttpMethod::from_code(int(f, "method") as u8),
                uri: s(f, "uri").into(),
                headers: headers(opt_s(f, "headers")),
                body: expand(s(f, "body_utf8")).into_bytes(),
            },
        ),
        "ack" => {
            assert!(plain.is_empty(), "ack has no body");
            plain
        }
        "push_upstream_auto_ack" | "push_biz_ack" => {
            // A push body is the raw content.
            assert_eq!(String::from_utf8(plain.clone()).unwrap(), s(f, "content_utf8"));
            plain
        }
        "handshake_ok" => round(
            &plain,
            HandshakeOk {
                server_key: hx(f, "server_key_hex"),
                heartbeat: int(f, "heartbeat") as i32,
                session_id: s(f, "session_id").into(),
                expire_time: int(f, "expire_time"),
            },
        ),
        "fast_connect_ok" => round(&plain, FastConnectOk { heartbeat: int(f, "heartbeat") as i32 }),
        "ok_bind" => round(
            &plain,
            OkMessage {
                cmd: Command(int(f, "cmd") as u8),
                code: int(f, "code") as u8,
                data: opt_s(f, "data").map(Into::into),
            },
        ),
        "error_session_expired" => {
            let want = ErrorMessage {
                cmd: Command(int(f, "cmd") as u8),
                code: ErrorCode(int(f, "code") as u8),
                reason: opt_s(f, "reason").map(Into::into),
                data: opt_s(f, "data").map(Into::into),
            };
            assert_eq!(want.code, ErrorCode::SESSION_EXPIRED);
            round(&plain, want)
        }
        "kick" => round(&plain, Kick { device_id: s(f, "device_id").into(), user_id: s(f, "user_id").into() }),
        "http_response" => round(
            &plain,
            HttpResponse {
                status_code: int(f, "status") as i32,
                reason_phrase: opt_s(f, "reason").map(Into::into),
                headers: headers(opt_s(f, "headers")),
                body: expand(s(f, "body_utf8")).into_bytes(),
            },
        ),
        other => panic!("vector {other} has no check; add one"),
    }
}

/// The message vectors that come as whole packets.
fn packet_vectors(root: &Value) -> Vec<&Value> {
    root["messages"].as_array().unwrap().iter().filter(|m| m.get("packet_hex").is_some()).collect()
}

fn only_packet(mut frames: Vec<Frame>) -> Packet {
    assert_eq!(frames.len(), 1, "{frames:?}");
    match frames.remove(0) {
        Frame::Packet(p) => p,
        Frame::Heartbeat => panic!("heartbeat instead of packet"),
    }
}

/// Checks one decoded packet against its vector: header, body pipeline, fields, re-encoding.
fn check_packet(root: &Value, m: &Value, p: &Packet) {
    let name = s(m, "name");
    let c = cipher(root);
    assert_eq!(p.cmd, Command(int(m, "cmd") as u8), "{name}: cmd");
    assert_eq!(p.flags, Flags(int(m, "flags") as u8), "{name}: flags");
    assert_eq!(i64::from(p.session_id), int(m, "session_id"), "{name}: header session id");
    let plain = body::open(&p.body, p.flags, Some(&c), MAX_INFLATED).unwrap();
    assert_eq!(hex::encode(&plain), s(m, "body_plain_hex"), "{name}: plaintext body");
    assert_eq!(hex::encode(check_fields(m)), s(m, "body_plain_hex"), "{name}: re-encoded body");

    // Sealing the plaintext again gives the flags back, COMPRESS included with either
    // compressor (miniz_oxide with the `compress` feature, the crate's small deflate without
    // it: the compressed vector's body shrinks with both); without compression (deflate output
    // may differ from Java's) it gives the exact packet back.
    let ack = Flags(p.flags.0 & (Flags::BIZ_ACK.0 | Flags::AUTO_ACK.0));
    let encrypted = p.flags.contains(Flags::CRYPTO);
    let (sealed, flags) = body::seal(plain.clone(), encrypted.then_some(&c), 1024);
    assert_eq!(Flags(flags.0 | ack.0), p.flags, "{name}: sealed flags");
    assert_eq!(body::open(&sealed, flags, Some(&c), MAX_INFLATED).unwrap(), plain);
    if !p.flags.contains(Flags::COMPRESS) {
        let again = Packet { cmd: p.cmd, flags: p.flags, session_id: p.session_id, body: sealed };
        assert_eq!(hex::encode(again.to_bytes()), s(m, "packet_hex"), "{name}: re-encoded packet");
    }
}

pub fn message_packets() {
    let root = root();
    let vectors = packet_vectors(&root);
    assert!(vectors.len() >= 14);
    for m in vectors {
        let bytes = hx(m, "packet_hex");
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        d.feed(&bytes);
        let mut frames = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            frames.push(f);
        }
        assert_eq!(d.buffered(), 0);
        check_packet(&root, m, &only_packet(frames));
    }
}

/// All packets back to back with heartbeats between them, fed in chunks of every size from 1
/// to 64 bytes: the same packets come out.
pub fn message_packets_split() {
    let root = root();
    let vectors = packet_vectors(&root);
    let mut stream = Vec::new();
    for m in &vectors {
        stream.extend(hx(m, "packet_hex"));
        stream.push(HEARTBEAT_BYTE);
    }
    for chunk in 1..=64 {
        let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
        let mut frames = Vec::new();
        for piece in stream.chunks(chunk) {
            d.feed(piece);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(d.buffered(), 0, "chunk {chunk}");
        assert_eq!(frames.len(), vectors.len() * 2, "chunk {chunk}");
        for (pair, m) in frames.chunks(2).zip(&vectors) {
            assert_eq!(pair[1], Frame::Heartbeat);
            match &pair[0] {
                Frame::Packet(p) => {
                    assert_eq!(hex::encode(p.to_bytes()), s(m, "packet_hex"), "chunk {chunk}");
                    if chunk == 1 {
                        check_packet(&root, m, p);
                    }
                }
                f => panic!("chunk {chunk}: {f:?}"),
            }
        }
    }
}

pub fn handshake_plain_body() {
    let root = root();
    let m = message(&root, "handshake_plain_body");
    let f = &m["fields"];
    assert_eq!(int(m, "cmd"), i64::from(Command::HANDSHAKE.0));
    let want = Handshake {
        device_id: s(f, "device_id").into(),
        os_name: s(f, "os_name").into(),
        os_version: s(f, "os_version").into(),
        client_version: s(f, "client_version").into(),
        iv: hx(f, "iv_hex"),
        client_key: hx(f, "client_key_hex"),
        min_heartbeat: int(f, "min_heartbeat") as i32,
        max_heartbeat: int(f, "max_heartbeat") as i32,
        timestamp: int(f, "timestamp"),
    };
    let plain = hx(m, "body_plain_hex");
    assert_eq!(Handshake::decode(&plain).unwrap(), want);
    assert_eq!(hex::encode(want.encode()), s(m, "body_plain_hex"));
}

pub fn long_string_field() {
    let root = root();
    let m = message(&root, "long_string_field");
    let f = &m["fields"];
    assert_eq!(int(m, "cmd"), i64::from(Command::KICK.0));
    let kick = Kick { device_id: expand(s(f, "device_id")), user_id: s(f, "user_id").into() };
    assert_eq!(kick.device_id.len(), 40000);
    let plain = kick.encode();
    assert_eq!(plain.len() as i64, int(m, "body_plain_len"));
    assert!(hex::encode(&plain).starts_with(s(m, "body_plain_prefix_hex")), "{}", hex::encode(&plain[..8]));
    assert_eq!(Kick::decode(&plain).unwrap(), kick);
}

pub fn heartbeat() {
    let root = root();
    assert_eq!(hex::encode([HEARTBEAT_BYTE]), s(&root, "heartbeat_hex"));
    let mut d = FrameDecoder::new(DEFAULT_MAX_BODY);
    d.feed(&[HEARTBEAT_BYTE]);
    assert_eq!(d.next_frame().unwrap(), Some(Frame::Heartbeat));
    assert_eq!(d.next_frame().unwrap(), None);
    let mut out = Vec::new();
    Frame::Heartbeat.encode(&mut out);
    assert_eq!(out, [HEARTBEAT_BYTE]);
}

pub fn persistent_session() {
    let root = root();
    let v = &root["persistent_session"];
    let want = StoredSession {
        session_id: s(v, "session_id").into(),
        expire_time: int(v, "expire_time"),
        key: key16(v, "key_hex"),
        iv: key16(v, "iv_hex"),
    };
    assert_eq!(want.to_persistent_string(), s(v, "encoded"));
    assert_eq!(StoredSession::parse_persistent(s(v, "encoded")).unwrap(), want);
    // Expired exactly at expire_time.
    let at = u64::try_from(want.expire_time).unwrap();
    assert!(!want.is_expired(at - 1) && want.is_expired(at));
    // Damaged strings are errors, not panics.
    for bad in ["", "id,1", "id,x,1|2,3|4", &s(v, "encoded").replace("|-39,", "|999,")] {
        assert!(StoredSession::parse_persistent(bad).is_err(), "{bad:?}");
    }
}
