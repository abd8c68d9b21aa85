//! A small zlib (RFC 1950) compressor: LZ77 with hash chains and one fixed-Huffman deflate
//! block (RFC 1951, BTYPE 01). It compresses text and JSON to within a few tens of percent of
//! `java.util.zip.Deflater`'s output while costing about 1 KB of wasm instead of the ~6 KB
//! (gzipped) of a full deflate with dynamic Huffman trees, so the browser package can compress
//! outbound bodies as the Java client does. Any inflater (MPUSH's `java.util.zip.Inflater`,
//! zlib, miniz) reads the output; it is not byte-identical to Deflater's and need not be.

use crate::inflate::adler32;

/// Window MPUSH's inflater accepts (the zlib header says 32 KB).
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const HASH_BITS: u32 = 13;
/// Candidates examined per position: a cap on time for very repetitive input.
const MAX_CHAIN: usize = 32;

/// Base match length of length codes 257..=285.
pub(crate) const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
/// Extra bits of length codes 257..=285.
pub(crate) const LEN_EXTRA: [u8; 29] =
    [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
/// Base distance of distance codes 0..=29.
pub(crate) const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];

struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// Appends the low `len` bits of `v`, least significant first (deflate's bit order).
    fn put(&mut self, v: u32, len: u32) {
        self.acc |= u64::from(v) << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Appends a Huffman code, which deflate stores most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    /// A literal byte or a length/end symbol (0..=285) in the fixed code.
    fn symbol(&mut self, s: u32) {
        match s {
            0..=143 => self.code(0x30 + s, 8),
            144..=255 => self.code(0x190 + s - 144, 9),
            256..=279 => self.code(s - 256, 7),
            _ => self.code(0xC0 + s - 280, 8),
        }
    }

    fn matched(&mut self, len: usize, dist: usize) {
        // Tables are tiny: a linear search keeps the code small.
        let i = LEN_BASE.iter().rposition(|&b| usize::from(b) <= len).unwrap_or(0);
        self.symbol(257 + i as u32);
        self.put((len - usize::from(LEN_BASE[i])) as u32, u32::from(LEN_EXTRA[i]));
        let d = DIST_BASE.iter().rposition(|&b| usize::from(b) <= dist).unwrap_or(0);
        self.code(d as u32, 5);
        // Distance codes 0..=3 have no extra bits; then two codes per extra bit.
        let extra = if d < 4 { 0 } else { (d as u32 - 2) / 2 };
        self.put((dist - usize::from(DIST_BASE[d])) as u32, extra);
    }
}

fn hash(b: &[u8]) -> usize {
    let v = u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16;
    (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
}

/// zlib-compresses `data`: a zlib header, one final fixed-Huffman block, the Adler-32.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut bits = Bits { out: Vec::with_capacity(data.len() / 2 + 16), acc: 0, n: 0 };
    // CMF 0x78 (deflate, 32 KB window), FLG 0x01 (no dictionary, check bits).
    bits.out.extend_from_slice(&[0x78, 0x01]);
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE 01: fixed Huffman codes

    // head[h] and prev[i] hold position + 1 (0: none) of earlier 3-byte strings with hash h.
    let mut head = vec![0u32; 1 << HASH_BITS];
    let mut prev = vec![0u32; data.len()];
    let insert = |i: usize, head: &mut [u32], prev: &mut [u32]| {
        if i + MIN_MATCH <= data.len() {
            let h = hash(&data[i..]);
            prev[i] = head[h];
            head[h] = i as u32 + 1;
        }
    };
    let mut i = 0;
    while i < data.len() {
        let (mut best_len, mut best_dist) = (0, 0);
        if i + MIN_MATCH <= data.len() {
            let max = (data.len() - i).min(MAX_MATCH);
            let mut cand = head[hash(&data[i..])] as usize;
            let mut chain = MAX_CHAIN;
            while cand > 0 && chain > 0 {
                let j = cand - 1;
                if i - j > WINDOW {
                    break;
                }
                let len = data[j..].iter().zip(&data[i..i + max]).take_while(|(a, b)| a == b).count();
                if len > best_len {
                    (best_len, best_dist) = (len, i - j);
                    if len == max {
                        break;
                    }
                }
                cand = prev[j] as usize;
                chain -= 1;
            }
        }
        if best_len >= MIN_MATCH {
            bits.matched(best_len, best_dist);
            for k in i..i + best_len {
                insert(k, &mut head, &mut prev);
            }
            i += best_len;
        } else {
            bits.symbol(u32::from(data[i]));
            insert(i, &mut head, &mut prev);
            i += 1;
        }
    }
    bits.symbol(256);
    bits.put(0, 7); // pad to a byte boundary (any leftover bits are flushed as one byte)
    let mut out = bits.out;
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::decompress;

    fn round(data: &[u8]) -> Vec<u8> {
        let z = compress(data);
        assert_eq!(decompress(&z, data.len().max(1)).unwrap(), data, "len {}", data.len());
        z
    }

    #[test]
    fn output_inflates_back_for_every_kind_of_input() {
        round(b"");
        round(b"a");
        round(b"ab");
        round(b"abc");
        round(b"hello hello hello hello");
        // Every byte value, literals of 8 and 9 bits.
        round(&(0..=255u8).cycle().take(3000).collect::<Vec<_>>());
        // Long runs: matches of the maximum length 258 at distance 1.
        let z = round(&vec![b'z'; 1500]);
        assert!(z.len() < 40, "{}", z.len());
        // Pseudo-random bytes: no matches; fixed codes expand them a little.
        let mut x: u32 = 0x1234_5678;
        let noise: Vec<u8> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        round(&noise[..20_000]);
        // Repeats far apart: distances near the 32 KB window edge, and beyond it.
        let mut far = noise[..5000].to_vec();
        far.extend_from_slice(&noise[5000..5000 + WINDOW - 5000 - 3]);
        far.extend_from_slice(&noise[..5000]);
        far.extend_from_slice(&noise[..300]);
        round(&far);
        // Every length and distance code boundary.
        let mut mixed = Vec::new();
        for len in 3..=258usize {
            mixed.extend_from_slice(&noise[len * 7 % 9000..][..len]);
            mixed.extend_from_slice(&noise[(len * 13) % 7000..][..len % 50]);
        }
        round(&mixed);
    }

    #[test]
    fn json_compresses_well() {
        let mut json = String::from("[");
        for i in 0..400 {
            json.push_str(
                &[
                    "{\"id\":",
                    &i.to_string(),
                    ",\"name\":\"user-",
                    &(i * 7).to_string(),
                    "\",\"tags\":[\"web\",\"vip\"],\"active\":true},",
                ]
                .concat(),
            );
        }
        json.push(']');
        let z = round(json.as_bytes());
        assert!(z.len() * 4 < json.len(), "{} -> {}", json.len(), z.len());
    }

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Long input exercises the modulo reduction.
        let big = vec![0xFFu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &big {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&big), (b << 16 | a) as u32);
    }
}
