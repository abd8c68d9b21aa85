//! The body pipeline around a message: encode -> compress (over a limit) -> encrypt, and the
//! reverse, honouring the flags actually set on each packet.
//!
//! Compression on the way out uses `miniz_oxide`'s deflate with the crate's `compress` feature
//! (on by default: the gateway and native clients) and the small fixed-Huffman compressor of
//! [`crate::deflate`] without it (the browser package, where every kilobyte counts). Both write
//! zlib streams any inflater reads; [`open`] always inflates what arrives compressed.

use crate::crypto::{decompress, AesCipher, CryptoError};
use crate::frame::Flags;

/// Compresses `plain` if it is longer than `compress_over` (keeping the compressed form when
/// non-empty, as MPUSH does; without the `compress` feature only when it is smaller), then
/// encrypts it with `cipher` if there is one. Empty bodies stay empty and unencrypted, as in
/// MPUSH. Returns the wire body and the flags it needs.
pub fn seal(plain: Vec<u8>, cipher: Option<&AesCipher>, compress_over: usize) -> (Vec<u8>, Flags) {
    if plain.is_empty() {
        return (plain, Flags::NONE);
    }
    let (mut body, mut flags) = maybe_compress(plain, compress_over);
    if let Some(c) = cipher {
        body = c.encrypt(&body);
        flags.insert(Flags::CRYPTO);
    }
    (body, flags)
}

#[cfg(feature = "compress")]
fn maybe_compress(plain: Vec<u8>, compress_over: usize) -> (Vec<u8>, Flags) {
    if plain.len() > compress_over {
        let z = crate::crypto::compress(&plain);
        if !z.is_empty() {
            return (z, Flags::COMPRESS);
        }
    }
    (plain, Flags::NONE)
}

/// The small compressor's fixed codes expand incompressible data by up to 1/8, where a full
/// deflate would fall back to stored blocks: keep the compressed form only when it is smaller.
#[cfg(not(feature = "compress"))]
fn maybe_compress(plain: Vec<u8>, compress_over: usize) -> (Vec<u8>, Flags) {
    if plain.len() > compress_over {
        let z = crate::deflate::compress(&plain);
        if z.len() < plain.len() {
            return (z, Flags::COMPRESS);
        }
    }
    (plain, Flags::NONE)
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

    #[cfg(feature = "compress")]
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

    #[cfg(not(feature = "compress"))]
    #[test]
    fn seal_without_compress_feature_uses_the_small_compressor_when_it_helps() {
        let c = AesCipher::new([3; 16], [4; 16]);
        let (body, flags) = seal(vec![1; 5000], Some(&c), 1024);
        assert_eq!(flags, Flags::CRYPTO | Flags::COMPRESS);
        assert!(body.len() < 100);
        assert_eq!(open(&body, flags, Some(&c), 10_000).unwrap(), vec![1; 5000]);
        // At the limit: not compressed.
        let (body, flags) = seal(vec![1; 1024], None, 1024);
        assert_eq!((body.len(), flags), (1024, Flags::NONE));
        // Incompressible: sent as is.
        let mut x: u32 = 0x9E37_79B9;
        let noise: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let (body, flags) = seal(noise.clone(), None, 1024);
        assert_eq!((body, flags), (noise, Flags::NONE));
    }
}
