// Shared set-up for the session fuzz targets: the reference key pair from the test vectors.
#![allow(dead_code)]

const VECTORS: &str = include_str!("../../protocol/tests/data/mpush-java-reference.json");

fn field(name: &str) -> &'static str {
    let start = VECTORS.find(&format!("\"{name}\": \"")).expect("field") + name.len() + 5;
    let end = VECTORS[start..].find('"').expect("end") + start;
    &VECTORS[start..end]
}

pub fn public_key() -> mpush_protocol::RsaPublicKey {
    mpush_protocol::RsaPublicKey::from_base64(field("public_key_x509_b64")).expect("public key")
}

pub fn private_key() -> mpush_protocol::RsaPrivateKey {
    mpush_protocol::RsaPrivateKey::from_base64(field("private_key_pkcs8_b64")).expect("private key")
}

pub const NOW: u64 = 1_764_000_000_000;
pub const KEY: [u8; 16] = [7; 16];
pub const IV: [u8; 16] = [9; 16];
