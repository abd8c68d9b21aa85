//! MPUSH's cryptography: RSA PKCS#1 v1.5 blockwise, AES-128-CBC with PKCS#7 and a fixed IV per
//! session, the session-key mix, and zlib with a cap on the inflated size.
//!
//! Only the gateway uses [`RsaPrivateKey`]; the `rsa` crate's advisory RUSTSEC-2023-0071 (a
//! timing side channel) concerns private-key operations, never the browser's public-key
//! encryption.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use rand_core::CryptoRngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::Pkcs1v15Encrypt;

/// A cryptographic or compression failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// A key could not be parsed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An AES key or IV is not 16 bytes.
    #[error("AES key and IV must be 16 bytes, got {0}")]
    BadKeyLength(usize),
    /// Ciphertext that does not decrypt (wrong key, bad padding or length).
    #[error("decryption failed")]
    Decrypt,
    /// RSA encryption failed.
    #[error("RSA encryption failed")]
    Encrypt,
    /// A compressed body is not a valid zlib stream.
    #[error("invalid zlib stream")]
    Inflate,
    /// A compressed body inflates beyond the allowed size.
    #[error("compressed body inflates beyond {max} bytes")]
    InflateTooLarge {
        /// The cap.
        max: usize,
    },
}

fn b64(s: &str) -> Result<Vec<u8>, CryptoError> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).map_err(|e| CryptoError::InvalidKey(format!("base64: {e}")))
}

/// [`b64`] without the error's text.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// The value of the DER element of tag `tag` at the start of `input`, which moves past it.
/// Definite, minimal lengths only.
fn der_take<'a>(input: &mut &'a [u8], tag: u8) -> Option<&'a [u8]> {
    let [t, l0, ref rest @ ..] = **input else { return None };
    if t != tag {
        return None;
    }
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        // 0x80 is BER's indefinite length; lengths past 4 bytes do not fit a key.
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes.iter().fold(0usize, |a, b| a << 8 | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    *input = rest;
    Some(value)
}

/// A non-negative, minimally encoded DER INTEGER's big-endian magnitude.
fn der_uint<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    match der_take(input, 0x02)? {
        [] => None,
        [b, ..] if b & 0x80 != 0 => None,
        [0, rest @ ..] if !rest.is_empty() => (rest[0] & 0x80 != 0).then_some(rest),
        v => Some(v),
    }
}

/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Modulus and public exponent of an X.509 SubjectPublicKeyInfo holding an RSA key:
/// `SEQUENCE { SEQUENCE { OID rsaEncryption, NULL }, BIT STRING { SEQUENCE { INTEGER n,
/// INTEGER e } } }`, nothing after any of it.
fn spki_rsa_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut input = der;
    let mut spki = der_take(&mut input, 0x30)?;
    let mut algorithm = der_take(&mut spki, 0x30)?;
    let bits = der_take(&mut spki, 0x03)?;
    if !input.is_empty() || !spki.is_empty() || der_take(&mut algorithm, 0x06)? != RSA_ENCRYPTION_OID {
        return None;
    }
    if !der_take(&mut algorithm, 0x05)?.is_empty() || !algorithm.is_empty() {
        return None;
    }
    // The BIT STRING's first byte counts the unused bits of the last byte: none here.
    let [0, ref key_der @ ..] = *bits else { return None };
    let mut bits = key_der;
    let mut key = der_take(&mut bits, 0x30)?;
    let n = der_uint(&mut key)?;
    let e = der_uint(&mut key)?;
    (bits.is_empty() && key.is_empty()).then_some((n, e))
}

fn to_b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The server's RSA public key, as the client is configured with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublicKey(rsa::RsaPublicKey);

impl RsaPublicKey {
    /// Parses a base64 X.509 SubjectPublicKeyInfo (MPUSH's `mp.security.public-key`).
    ///
    /// A small DER reader of its own rather than the `rsa` crate's `pkcs8`/`der` decoders (and
    /// fixed error texts rather than their `Display`): this is the one key parse the browser
    /// package does, and those decoders cost it ~9 KB. It accepts what `rsa` accepts.
    pub fn from_base64(s: &str) -> Result<RsaPublicKey, CryptoError> {
        let der = base64_decode(s).ok_or_else(|| CryptoError::InvalidKey("X.509 public key: invalid base64".into()))?;
        let (n, e) = spki_rsa_components(&der)
            .ok_or_else(|| CryptoError::InvalidKey("X.509 public key: not a DER RSA SubjectPublicKeyInfo".into()))?;
        rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from_bytes_be(e))
            .map(RsaPublicKey)
            .map_err(|_| CryptoError::InvalidKey("X.509 public key: unusable RSA modulus or exponent".into()))
    }

    /// The key as base64 X.509.
    pub fn to_base64(&self) -> String {
        self.0.to_public_key_der().map(|d| to_b64(d.as_bytes())).unwrap_or_default()
    }

    /// `RSA/ECB/PKCS1Padding` as Java does it: (k - 11)-byte chunks, each to a k-byte block.
    pub fn encrypt(&self, rng: &mut impl CryptoRngCore, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.0.size();
        let chunk = k.checked_sub(11).filter(|c| *c > 0).ok_or(CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(plain.len().div_ceil(chunk).max(1) * k);
        // Java encrypts an empty input to one block.
        let chunks: Vec<&[u8]> = if plain.is_empty() { vec![&[][..]] } else { plain.chunks(chunk).collect() };
        for c in chunks {
            let block = self.0.encrypt(rng, Pkcs1v15Encrypt, c).map_err(|_| CryptoError::Encrypt)?;
            out.extend_from_slice(&block);
        }
        Ok(out)
    }
}

/// The server's RSA private key (gateway only).
#[derive(Clone)]
pub struct RsaPrivateKey(rsa::RsaPrivateKey);

impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPrivateKey(..)")
    }
}

impl RsaPrivateKey {
    /// Parses a base64 PKCS#8 private key (MPUSH's `mp.security.private-key`).
    pub fn from_base64(s: &str) -> Result<RsaPrivateKey, CryptoError> {
        let der = b64(s)?;
        rsa::RsaPrivateKey::from_pkcs8_der(&der)
            .map(RsaPrivateKey)
            .map_err(|e| CryptoError::InvalidKey(format!("PKCS#8 private key: {e}")))
    }

    /// Generates a new key pair of `bits` bits (MPUSH uses 1024).
    pub fn generate(rng: &mut impl CryptoRngCore, bits: usize) -> Result<RsaPrivateKey, CryptoError> {
        rsa::RsaPrivateKey::new(rng, bits).map(RsaPrivateKey).map_err(|e| CryptoError::InvalidKey(e.to_string()))
    }

    /// The key as base64 PKCS#8.
    pub fn to_base64(&self) -> String {
        self.0.to_pkcs8_der().map(|d| to_b64(d.as_bytes())).unwrap_or_default()
    }

    /// The matching public key.
    pub fn public_key(&self) -> RsaPublicKey {
        RsaPublicKey(self.0.to_public_key())
    }

    /// Decrypts k-byte blocks and concatenates the plaintexts.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.0.size();
        if data.is_empty() || data.len() % k != 0 {
            return Err(CryptoError::Decrypt);
        }
        let mut out = Vec::with_capacity(data.len());
        for block in data.chunks(k) {
            out.extend(self.0.decrypt(Pkcs1v15Encrypt, block).map_err(|_| CryptoError::Decrypt)?);
        }
        Ok(out)
    }
}

/// AES-128-CBC with PKCS#7; every packet starts again from the session's IV, as MPUSH does.
#[derive(Clone, PartialEq, Eq)]
pub struct AesCipher {
    key: [u8; 16],
    iv: [u8; 16],
}

impl std::fmt::Debug for AesCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCipher(..)")
    }
}

impl AesCipher {
    /// A cipher from a 16-byte key and IV.
    pub fn new(key: [u8; 16], iv: [u8; 16]) -> AesCipher {
        AesCipher { key, iv }
    }

    /// A cipher from slices, checking they are 16 bytes each.
    pub fn from_slices(key: &[u8], iv: &[u8]) -> Result<AesCipher, CryptoError> {
        let key: [u8; 16] = key.try_into().map_err(|_| CryptoError::BadKeyLength(key.len()))?;
        let iv: [u8; 16] = iv.try_into().map_err(|_| CryptoError::BadKeyLength(iv.len()))?;
        Ok(AesCipher { key, iv })
    }

    /// The key.
    pub fn key(&self) -> &[u8; 16] {
        &self.key
    }
    /// The IV.
    pub fn iv(&self) -> &[u8; 16] {
        &self.iv
    }

    /// Encrypts one body.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        cbc::Encryptor::<aes::Aes128>::new(&self.key.into(), &self.iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain)
    }

    /// Decrypts one body.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        cbc::Decryptor::<aes::Aes128>::new(&self.key.into(), &self.iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(data)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// The session key: client key XOR server key (both branches of Java's `mixKey` are XOR).
pub fn mix_key(client_key: &[u8; 16], server_key: &[u8; 16]) -> [u8; 16] {
    let mut k = [0u8; 16];
    for i in 0..16 {
        k[i] = client_key[i] ^ server_key[i];
    }
    k
}

/// zlib-compresses `data` (RFC 1950, default level 6, like `java.util.zip.Deflater`).
///
/// Only with the `compress` feature (on by default); without it nothing is compressed on the
/// way out (see [`crate::body::seal`]), while inbound bodies are still inflated.
#[cfg(feature = "compress")]
pub fn compress(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Inflates a zlib stream, failing once the output would exceed `max` bytes.
pub fn decompress(data: &[u8], max: usize) -> Result<Vec<u8>, CryptoError> {
    use miniz_oxide::inflate::{decompress_to_vec_zlib_with_limit, TINFLStatus};
    decompress_to_vec_zlib_with_limit(data, max).map_err(|e| match e.status {
        TINFLStatus::HasMoreOutput => CryptoError::InflateTooLarge { max },
        _ => CryptoError::Inflate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "compress")]
    #[test]
    fn zip_bomb_is_capped() {
        let bomb = compress(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        assert_eq!(decompress(&bomb, 1 << 20), Err(CryptoError::InflateTooLarge { max: 1 << 20 }));
        assert_eq!(decompress(&bomb, 10 << 20).map(|v| v.len()), Ok(10 << 20));
        assert_eq!(decompress(b"not zlib", 100), Err(CryptoError::Inflate));
        let small = compress(b"hello hello hello");
        assert_eq!(decompress(&small, 17).unwrap(), b"hello hello hello");
        assert_eq!(decompress(&small, 16), Err(CryptoError::InflateTooLarge { max: 16 }));
        assert_eq!(decompress(&small[..small.len() - 1], 100), Err(CryptoError::Inflate));
        assert_eq!(decompress(&[], 100), Err(CryptoError::Inflate));
    }

    #[test]
    fn aes_rejects_bad_ciphertext() {
        let c = AesCipher::new([1; 16], [2; 16]);
        assert_eq!(c.decrypt(&[0; 15]), Err(CryptoError::Decrypt));
        assert_eq!(c.decrypt(&c.encrypt(b"hello")).unwrap(), b"hello");
        assert!(AesCipher::from_slices(&[0; 15], &[0; 16]).is_err());
    }

    /// The hand-written SPKI reader agrees with the `rsa` crate's `der`-based one.
    #[test]
    fn spki_reader_matches_rsa_crate() {
        use rand_core::SeedableRng;
        use rsa::pkcs8::DecodePublicKey;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
        for bits in [512, 1024] {
            let key = RsaPrivateKey::generate(&mut rng, bits).unwrap().public_key();
            let der = key.0.to_public_key_der().unwrap();
            let der = der.as_bytes();
            let parsed = RsaPublicKey::from_base64(&key.to_base64()).unwrap();
            assert_eq!(parsed, key);
            assert_eq!(parsed.0, rsa::RsaPublicKey::from_public_key_der(der).unwrap());
            // Every truncation, any trailing byte and every single-byte change in the DER
            // structure (everything before the modulus) get the same verdict from both.
            let ours = |d: &[u8]| RsaPublicKey::from_base64(&to_b64(d)).ok().map(|k| k.0);
            let theirs = |d: &[u8]| rsa::RsaPublicKey::from_public_key_der(d).ok();
            for len in 0..der.len() {
                assert_eq!(ours(&der[..len]), None, "{bits}: truncated to {len}");
            }
            assert_eq!(ours(&[der, &[0]].concat()), None);
            for i in 0..40 {
                for x in [0x01, 0x80, 0xff] {
                    let mut d = der.to_vec();
                    d[i] ^= x;
                    assert_eq!(ours(&d), theirs(&d), "{bits}: byte {i} ^ {x:#x}");
                }
            }
        }
        // Absent algorithm parameters, a negative modulus, an exponent with a needless 00.
        let spki = |alg: &[u8], n: &[u8], e: &[u8]| {
            let int = |v: &[u8]| [&[0x02, v.len() as u8][..], v].concat();
            let key = [&[0x30, (n.len() + e.len() + 4) as u8][..], &int(n), &int(e)].concat();
            let bits = [&[0x03, key.len() as u8 + 1, 0][..], &key].concat();
            let alg = [&[0x30, alg.len() as u8][..], alg].concat();
            [&[0x30, (alg.len() + bits.len()) as u8][..], &alg, &bits].concat()
        };
        let oid = [&[0x06, 9][..], RSA_ENCRYPTION_OID].concat();
        let with_null = [&oid[..], &[0x05, 0]].concat();
        let n = [&[0x00, 0xc1][..], &[0x5b; 63]].concat();
        assert!(ours_ok(&spki(&with_null, &n, &[1, 0, 1])));
        assert!(!ours_ok(&spki(&oid, &n, &[1, 0, 1])));
        assert!(!ours_ok(&spki(&with_null, &n[1..], &[1, 0, 1])));
        assert!(!ours_ok(&spki(&with_null, &n, &[0, 1, 0, 1])));
        fn ours_ok(d: &[u8]) -> bool {
            let theirs = rsa::RsaPublicKey::from_public_key_der(d).is_ok();
            assert_eq!(spki_rsa_components(d).is_some() && RsaPublicKey::from_base64(&to_b64(d)).is_ok(), theirs);
            theirs
        }
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(matches!(RsaPublicKey::from_base64("!!"), Err(CryptoError::InvalidKey(_))));
        assert!(matches!(RsaPublicKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
        assert!(matches!(RsaPrivateKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
    }
}
