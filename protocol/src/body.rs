//! The body pipeline around a message: encode -> compress (over a limit) -> encrypt, and the
//! reverse, honouring the flags actually set on each packet.

use crate::crypto::{compress, decompress, AesCipher, CryptoError};
use crate::frame::Flags;

/// Compresses `plain` if it is longer than `compress_over` (keeping the compressed form only
/// when non-empty), then encrypts it with `cipher` if there is one. Empty bodies stay empty
/// and unencrypted, as in MPUSH. Returns the wire body and the flags it needs.
pub fn seal(plain: Vec<u8>, cipher: Option<&AesCipher>, compress_over: usize) -> (Vec<u8>, Flags) {
    let mut flags = Flags::NONE;
    if plain.is_empty() {
        return (plain, flags);
    }
    let mut body = plain;
    if body.len() > compress_over {
        let z = compress(&body);
        if !z.is_empty() {
            body = z;
            flags.insert(Flags::COMPRESS);
        }
    }
    if let Some(c) = cipher {
        body = c.encrypt(&body);
        flags.insert(Flags::CRYPTO);
    }
    (body, flags)
}

/// Decrypts (if the CRYPTO flag is set) and inflates (if COMPRESS is set) a wire body.
/// An encrypted body with no cipher to open it is a [`CryptoError::Decrypt`].
pub fn open(
    body: &[u8],
    flags: Flags,
    cipher: Option<&AesCipher>,
    max_inflated: usize,
) -> Result<Vec<u8>, CryptoError> {
    let mut out = if flags.contains(Flags::CRYPTO) && !body.is_empty() {
        cipher.ok_or(CryptoError::Decrypt)?.decrypt(body)?
    } else {
        body.to_vec()
    };
    if flags.contains(Flags::COMPRESS) && !out.is_empty() {
        out = decompress(&out, max_inflated)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let c = AesCipher::new([3; 16], [4; 16]);
        for (plain, limit, want) in [
            (vec![], 10, Flags::NONE),
            (vec![1; 5], 10, Flags::CRYPTO),
            (vec![1; 50], 10, Flags::CRYPTO | Flags::COMPRESS),
        ] {
            let (body, flags) = seal(plain.clone(), Some(&c), limit);
            assert_eq!(flags, want);
            assert_eq!(open(&body, flags, Some(&c), 1000).unwrap(), plain);
        }
        let (body, flags) = seal(vec![7; 50], None, 10);
        assert_eq!(flags, Flags::COMPRESS);
        assert_eq!(open(&body, flags, None, 1000).unwrap(), vec![7; 50]);
        assert_eq!(open(&[1; 16], Flags::CRYPTO, None, 10), Err(CryptoError::Decrypt));
    }
}
