//! MPUSH's cryptography: RSA PKCS#1 v1.5 blockwise, AES-128-CBC with PKCS#7 and a fixed IV per
//! session, the session-key mix, and zlib with a cap on the inflated size.
//!
//! Only the gateway uses [`RsaPrivateKey`]; the `rsa` crate's advisory RUSTSEC-2023-0071 (a
//! timing side channel) concerns private-key operations, never the browser's public-key
//! encryption.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use rand_core::CryptoRngCore;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
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

fn to_b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The server's RSA public key, as the client is configured with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RsaPublicKey(rsa::RsaPublicKey);

impl RsaPublicKey {
    /// Parses a base64 X.509 SubjectPublicKeyInfo (MPUSH's `mp.security.public-key`).
    pub fn from_base64(s: &str) -> Result<RsaPublicKey, CryptoError> {
        let der = b64(s)?;
        rsa::RsaPublicKey::from_public_key_der(&der)
            .map(RsaPublicKey)
            .map_err(|e| CryptoError::InvalidKey(format!("X.509 public key: {e}")))
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

    #[cfg(feature = "compress")]
    #[test]
    fn bad_keys_are_errors() {
        assert!(matches!(RsaPublicKey::from_base64("!!"), Err(CryptoError::InvalidKey(_))));
        assert!(matches!(RsaPublicKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
        assert!(matches!(RsaPrivateKey::from_base64("AAAA"), Err(CryptoError::InvalidKey(_))));
    }
}
