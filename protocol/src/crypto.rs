//! MPUSH's cryptography: RSA PKCS#1 v1.5 blockwise, AES-128-CBC with PKCS#7 and a fixed IV per
//! session, the session-key mix, and zlib with a cap on the inflated size.
//!
//! Public-key encryption (the client's side) is the crate's own (`pkcs1.rs`), so the
//! browser package carries no big-integer library. [`RsaPrivateKey`] (the server's side: key
//! generation, PKCS#8, decryption) uses the `rsa` crate and exists only with the `server`
//! feature; the crate's advisory RUSTSEC-2023-0071 (a timing side channel) concerns those
//! private-key operations, never the browser's public-key encryption.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use rand_core::CryptoRngCore;
#[cfg(feature = "server")]
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
#[cfg(feature = "server")]
use rsa::traits::PublicKeyParts;
#[cfg(feature = "server")]
use rsa::Pkcs1v15Encrypt;

use crate::pkcs1;

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

#[cfg(feature = "server")]
fn b64(s: &str) -> Result<Vec<u8>, CryptoError> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(clean).map_err(|e| CryptoError::InvalidKey(format!("base64: {e}")))
}

/// [`b64`] without the error's text: standard base64 as the `base64` crate's `STANDARD`
/// engine decodes it (padded to a multiple of 4 characters, canonical padding, zero trailing
/// bits), whitespace skipped. A loop of its own: the crate's decoder is ~2 KB of the browser
/// package, which parses one key with it.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits, mut chars, mut pad) = (0u32, 0u32, 0usize, 0usize);
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        chars += 1;
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            '=' => {
                pad += 1;
                continue;
            }
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // With a multiple of 4 characters and at most 2 '=', the padding matches the data; the
    // bits left over must be zero.
    (chars % 4 == 0 && pad <= 2 && acc == 0).then_some(out)
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

/// Appends a DER element: tag, definite minimal length, value.
fn der_put(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
}

/// Appends a non-negative DER INTEGER from its big-endian magnitude without leading zeros.
fn der_put_uint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let mut v = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend_from_slice(magnitude);
    der_put(out, 0x02, &v);
}

/// The server's RSA public key, as the client is configured with it.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey(pkcs1::PublicKey);

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits, e = {})", self.0.size() * 8, self.0.exponent())
    }
}

impl RsaPublicKey {
    /// Parses a base64 X.509 SubjectPublicKeyInfo (MPUSH's `mp.security.public-key`).
    ///
    /// A small DER reader of its own rather than the `rsa` crate's `pkcs8`/`der` decoders (and
    /// fixed error texts rather than their `Display`): this is the one key parse the browser
    /// package does. It accepts what `rsa` accepts: up to 4096 bits, odd n, odd e from 3 to
    /// 2^33 - 1, e < n.
    pub fn from_base64(s: &str) -> Result<RsaPublicKey, CryptoError> {
        let der = base64_decode(s).ok_or_else(|| CryptoError::InvalidKey("X.509 public key: invalid base64".into()))?;
        let (n, e) = spki_rsa_components(&der)
            .ok_or_else(|| CryptoError::InvalidKey("X.509 public key: not a DER RSA SubjectPublicKeyInfo".into()))?;
        Self::from_components(n, e)
    }

    /// A key from its big-endian modulus and public exponent, with the checks of
    /// [`RsaPublicKey::from_base64`].
    pub fn from_components(modulus: &[u8], exponent: &[u8]) -> Result<RsaPublicKey, CryptoError> {
        pkcs1::PublicKey::new(modulus, exponent)
            .map(RsaPublicKey)
            .ok_or_else(|| CryptoError::InvalidKey("X.509 public key: unusable RSA modulus or exponent".into()))
    }

    /// The modulus, big-endian without leading zeros.
    pub fn modulus(&self) -> &[u8] {
        self.0.modulus()
    }

    /// The public exponent.
    pub fn exponent(&self) -> u64 {
        self.0.exponent()
    }

    /// The key as base64 X.509 (DER SubjectPublicKeyInfo, as Java's `getEncoded()` writes it).
    pub fn to_base64(&self) -> String {
        let e = self.0.exponent().to_be_bytes();
        let mut key = Vec::new();
        der_put_uint(&mut key, self.0.modulus());
        der_put_uint(&mut key, &e[e.iter().take_while(|b| **b == 0).count()..]);
        let mut bits = vec![0];
        der_put(&mut bits, 0x30, &key);
        let mut algorithm = Vec::new();
        der_put(&mut algorithm, 0x06, RSA_ENCRYPTION_OID);
        der_put(&mut algorithm, 0x05, &[]);
        let mut spki = Vec::new();
        der_put(&mut spki, 0x30, &algorithm);
        der_put(&mut spki, 0x03, &bits);
        let mut der = Vec::new();
        der_put(&mut der, 0x30, &spki);
        to_b64(&der)
    }

    /// `RSA/ECB/PKCS1Padding` as Java does it: (k - 11)-byte chunks, each to a k-byte block.
    /// The padding's random bytes come from `rng`.
    pub fn encrypt(&self, rng: &mut impl CryptoRngCore, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.0.size();
        let chunk = k.checked_sub(11).filter(|c| *c > 0).ok_or(CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(plain.len().div_ceil(chunk).max(1) * k);
        // Java encrypts an empty input to one block.
        if plain.is_empty() {
            self.0.encrypt_block(rng, &[], &mut out).ok_or(CryptoError::Encrypt)?;
        }
        for c in plain.chunks(chunk) {
            self.0.encrypt_block(rng, c, &mut out).ok_or(CryptoError::Encrypt)?;
        }
        Ok(out)
    }
}

/// The server's RSA private key (gateway only; the `server` feature).
#[cfg(feature = "server")]
#[derive(Clone)]
pub struct RsaPrivateKey {
    key: rsa::RsaPrivateKey,
    public: RsaPublicKey,
}

#[cfg(feature = "server")]
impl std::fmt::Debug for RsaPrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPrivateKey(..)")
    }
}

#[cfg(feature = "server")]
impl RsaPrivateKey {
    fn wrap(key: rsa::RsaPrivateKey) -> Result<RsaPrivateKey, CryptoError> {
        let public = RsaPublicKey::from_components(&key.n().to_bytes_be(), &key.e().to_bytes_be())?;
        Ok(RsaPrivateKey { key, public })
    }

    /// Parses a base64 PKCS#8 private key (MPUSH's `mp.security.private-key`).
    pub fn from_base64(s: &str) -> Result<RsaPrivateKey, CryptoError> {
        let der = b64(s)?;
        let key = rsa::RsaPrivateKey::from_pkcs8_der(&der)
            .map_err(|e| CryptoError::InvalidKey(format!("PKCS#8 private key: {e}")))?;
        Self::wrap(key)
    }

    /// Generates a new key pair of `bits` bits (MPUSH uses 1024).
    pub fn generate(rng: &mut impl CryptoRngCore, bits: usize) -> Result<RsaPrivateKey, CryptoError> {
        Self::wrap(rsa::RsaPrivateKey::new(rng, bits).map_err(|e| CryptoError::InvalidKey(e.to_string()))?)
    }

    /// The key as base64 PKCS#8.
    pub fn to_base64(&self) -> String {
        self.key.to_pkcs8_der().map(|d| to_b64(d.as_bytes())).unwrap_or_default()
    }

    /// The matching public key.
    pub fn public_key(&self) -> RsaPublicKey {
        self.public.clone()
    }

    /// Decrypts k-byte blocks and concatenates the plaintexts.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let k = self.key.size();
        if data.is_empty() || data.len() % k != 0 {
            return Err(CryptoError::Decrypt);
        }
        let mut out = Vec::with_capacity(data.len());
        for block in data.chunks(k) {
            out.extend(self.key.decrypt(Pkcs1v15Encrypt, block).map_err(|_| CryptoError::Decrypt)?);
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
/// Only with the `compress` feature (on by default); without it [`crate::body::seal`]
/// compresses with the crate's small fixed-Huffman deflate ([`crate::deflate`]) instead.
#[cfg(feature = "compress")]
pub fn compress(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

/// Inflates a zlib stream, failing once the output would exceed `max` bytes.
///
/// With the `compress` feature miniz_oxide's inflater; without it (the browser package) the
/// crate's own small one (`inflate.rs`), which reads the same streams.
pub fn decompress(data: &[u8], max: usize) -> Result<Vec<u8>, CryptoError> {
    #[cfg(feature = "compress")]
    {
        use miniz_oxide::inflate::{decompress_to_vec_zlib_with_limit, TINFLStatus};
        decompress_to_vec_zlib_with_limit(data, max).map_err(|e| match e.status {
            TINFLStatus::HasMoreOutput => CryptoError::InflateTooLarge { max },
            _ => CryptoError::Inflate,
        })
    }
    #[cfg(not(feature = "compress"))]
    {
        crate::inflate::zlib(data, max).map_err(|e| match e {
            crate::inflate::InflateError::TooLarge => CryptoError::InflateTooLarge { max },
            crate::inflate::InflateError::Invalid => CryptoError::Inflate,
        })
    }
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

    /// The `rsa` crate's verdict on a DER SubjectPublicKeyInfo, as components.
    #[cfg(feature = "server")]
    #[test]
    fn base64_decoder_matches_the_base64_crate() {
        let crate_decode = |s: &str| {
            let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD.decode(clean).ok()
        };
        // Every string of up to 5 characters over an alphabet with each kind of character
        // (letters, digits, '+', '/', padding, whitespace, invalid bytes, non-ASCII).
        let alphabet = ['A', 'Q', 'g', 'z', '0', '+', '/', '=', ' ', '\n', '-', '\u{a0}', 'é'];
        let mut strings = vec![String::new()];
        for _ in 0..5 {
            strings = strings.iter().flat_map(|s| alphabet.map(|c| format!("{s}{c}"))).collect();
            for s in &strings {
                assert_eq!(base64_decode(s), crate_decode(s), "{s:?}");
            }
        }
        let key = to_b64(&[0x30, 0x81, 0x9f, 0xff, 0x00, 0x7f, 0x80, 0xfe]);
        for s in ["TWFu", "TWE=", "TQ==", "TQ=A", "TWE==", "TWFuTQ==", "TW\tFu\r\nTQ==", "TR==", "TWF=", &key] {
            assert_eq!(base64_decode(s), crate_decode(s), "{s:?}");
        }
    }

    #[cfg(feature = "server")]
    fn rsa_crate_parts(der: &[u8]) -> Option<(Vec<u8>, u64)> {
        use rsa::pkcs8::DecodePublicKey;
        let key = rsa::RsaPublicKey::from_public_key_der(der).ok()?;
        let e = key.e().to_bytes_be().iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        Some((key.n().to_bytes_be(), e))
    }

    #[cfg(feature = "server")]
    fn parts(key: &RsaPublicKey) -> (Vec<u8>, u64) {
        (key.modulus().to_vec(), key.exponent())
    }

    /// The hand-written SPKI reader and writer agree with the `rsa` crate's `der`-based ones.
    #[cfg(feature = "server")]
    #[test]
    fn spki_reader_matches_rsa_crate() {
        use rand_core::SeedableRng;
        use rsa::pkcs8::EncodePublicKey;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
        for bits in [512, 1024] {
            let private = RsaPrivateKey::generate(&mut rng, bits).unwrap();
            let key = private.public_key();
            let der = private.key.to_public_key().to_public_key_der().unwrap();
            let der = der.as_bytes();
            assert_eq!(key.to_base64(), to_b64(der), "{bits}: the writer");
            let parsed = RsaPublicKey::from_base64(&key.to_base64()).unwrap();
            assert_eq!(parsed, key);
            assert_eq!(Some(parts(&parsed)), rsa_crate_parts(der));
            // Every truncation, any trailing byte and every single-byte change in the DER
            // structure (everything before the modulus) get the same verdict from both.
            let ours = |d: &[u8]| RsaPublicKey::from_base64(&to_b64(d)).ok().map(|k| parts(&k));
            for len in 0..der.len() {
                assert_eq!(ours(&der[..len]), None, "{bits}: truncated to {len}");
            }
            assert_eq!(ours(&[der, &[0]].concat()), None);
            for i in 0..40 {
                for x in [0x01, 0x80, 0xff] {
                    let mut d = der.to_vec();
                    d[i] ^= x;
                    assert_eq!(ours(&d), rsa_crate_parts(&d), "{bits}: byte {i} ^ {x:#x}");
                }
            }
        }
        // Absent algorithm parameters, a negative modulus, an exponent with a needless 00.
        let oid = [&[0x06, 9][..], RSA_ENCRYPTION_OID].concat();
        let with_null = [&oid[..], &[0x05, 0]].concat();
        let n = [&[0x00, 0xc1][..], &[0x5b; 63]].concat();
        assert!(ours_ok(&spki(&with_null, &n, &[1, 0, 1])));
        assert!(!ours_ok(&spki(&oid, &n, &[1, 0, 1])));
        assert!(!ours_ok(&spki(&with_null, &n[1..], &[1, 0, 1])));
        assert!(!ours_ok(&spki(&with_null, &n, &[0, 1, 0, 1])));
        fn ours_ok(d: &[u8]) -> bool {
            let theirs = rsa_crate_parts(d).is_some();
            assert_eq!(spki_rsa_components(d).is_some() && RsaPublicKey::from_base64(&to_b64(d)).is_ok(), theirs);
            theirs
        }
    }

    /// A short-form SubjectPublicKeyInfo (modulus under 120 bytes) around `n` and `e`.
    #[cfg(feature = "server")]
    fn spki(alg: &[u8], n: &[u8], e: &[u8]) -> Vec<u8> {
        let int = |v: &[u8]| [&[0x02, v.len() as u8][..], v].concat();
        let key = [&[0x30, (n.len() + e.len() + 4) as u8][..], &int(n), &int(e)].concat();
        let bits = [&[0x03, key.len() as u8 + 1, 0][..], &key].concat();
        let alg = [&[0x30, alg.len() as u8][..], alg].concat();
        [&[0x30, (alg.len() + bits.len()) as u8][..], &alg, &bits].concat()
    }

    /// The key checks give `rsa::RsaPublicKey::new`'s verdict on the edges: exponent size,
    /// parity and range, modulus parity and size.
    #[cfg(feature = "server")]
    #[test]
    fn key_checks_match_rsa_crate() {
        let n_odd = [&[0xc1][..], &[0x5b; 62], &[0x5d]].concat();
        let n_even = [&[0xc1][..], &[0x5b; 63]].concat();
        let big = |bits: usize| {
            let mut n = vec![0xffu8; bits.div_ceil(8)];
            if bits % 8 != 0 {
                n[0] = 0xff >> (8 - bits % 8);
            }
            n
        };
        let e_cases: [&[u8]; 12] = [
            &[],
            &[1],
            &[2],
            &[3],
            &[4],
            &[1, 0, 1],
            &[1, 0, 0],
            &[1, 0xff, 0xff, 0xff, 0xff],
            &[2, 0, 0, 0, 1],
            &[1, 0xff, 0xff, 0xff, 0xfd],
            &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1],
        ];
        for n in [&n_odd[..], &n_even, &[0x07], &[0x03], &[0x01, 0x01], &[], &big(4096), &big(4097), &big(4095)] {
            for e in e_cases {
                let ours = RsaPublicKey::from_components(n, e).is_ok();
                let theirs =
                    rsa::RsaPublicKey::new(rsa::BigUint::from_bytes_be(n), rsa::BigUint::from_bytes_be(e)).is_ok();
                assert_eq!(ours, theirs, "n = {n:02x?}, e = {e:02x?}");
            }
        }
    }

    /// From the same random generator, the same ciphertext as the `rsa` crate, for several key
    /// sizes, exponents and message lengths; the private key decrypts it.
    #[cfg(feature = "server")]
    #[test]
    fn encryption_matches_rsa_crate() {
        use rand_core::SeedableRng;
        use rsa::traits::PublicKeyParts;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
        let mut keys = Vec::new();
        for bits in [512, 1024, 2048] {
            keys.push(rsa::RsaPrivateKey::new(&mut rng, bits).unwrap());
        }
        for e in [3u64, 17, (1 << 33) - 1] {
            keys.push(rsa::RsaPrivateKey::new_with_exp(&mut rng, 768, &rsa::BigUint::from(e)).unwrap());
        }
        for key in keys {
            let public = key.to_public_key();
            let ours = RsaPublicKey::from_components(&public.n().to_bytes_be(), &public.e().to_bytes_be()).unwrap();
            let k = public.size();
            for len in [0, 1, 16, 53, k - 11, k - 10, 3 * k] {
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                let seed = [len as u8; 32];
                let got = ours.encrypt(&mut rand_chacha::ChaCha20Rng::from_seed(seed), &msg).unwrap();
                let mut theirs = rand_chacha::ChaCha20Rng::from_seed(seed);
                let chunks: Vec<&[u8]> = if msg.is_empty() { vec![&[]] } else { msg.chunks(k - 11).collect() };
                let want: Vec<u8> =
                    chunks.iter().flat_map(|c| public.encrypt(&mut theirs, Pkcs1v15Encrypt, c).unwrap()).collect();
                assert_eq!(got, want, "{} bits, e = {}, {len} bytes", k * 8, ours.exponent());
                let private = RsaPrivateKey::wrap(key.clone()).unwrap();
                assert_eq!(private.decrypt(&got).unwrap(), msg);
            }
        }
    }

    /// A generator that writes zero bytes now and then: the padding redraws them one byte at a
    /// time, as the `rsa` crate does, and decrypts to the message.
    #[cfg(feature = "server")]
    #[test]
    fn padding_redraws_zero_bytes() {
        use rand_core::SeedableRng;
        use rsa::traits::PublicKeyParts;
        #[derive(Clone)]
        struct Zeros(u8);
        impl rand_core::RngCore for Zeros {
            fn next_u32(&mut self) -> u32 {
                rand_core::impls::next_u32_via_fill(self)
            }
            fn next_u64(&mut self) -> u64 {
                rand_core::impls::next_u64_via_fill(self)
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for b in dest {
                    self.0 = self.0.wrapping_add(1) % 5;
                    *b = self.0;
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Zeros {}
        let private = RsaPrivateKey::generate(&mut rand_chacha::ChaCha20Rng::from_seed([5; 32]), 512).unwrap();
        let public = private.key.to_public_key();
        let c = private.public_key().encrypt(&mut Zeros(0), b"key").unwrap();
        assert_eq!(c, public.encrypt(&mut Zeros(0), Pkcs1v15Encrypt, b"key").unwrap());
        assert_eq!(c.len(), public.size());
        assert_eq!(private.decrypt(&c).unwrap(), b"key");
    }

    #[test]
    fn bad_keys_are_errors() {
        assert!(matches!(RsaPublicKey::from_base64("!!"), Err(CryptoError::InvalidKey(_))));
        assert!(matches!(RsaPublicKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
        #[cfg(feature = "server")]
        assert!(matches!(RsaPrivateKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
    }
}
