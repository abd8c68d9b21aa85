//! The sessions' random generator: ChaCha20 keyed by the driver's seed, giving exactly the
//! output of `rand_chacha::ChaCha20Rng` (same block layout: 64-bit block counter, stream 0; same
//! buffering: four blocks at a time, consumed in 32-bit words, a partly used word discarded).
//!
//! Its own, compact rather than unrolled, because the browser package pays for code size:
//! `rand_chacha` took ~4.5 KB of wasm for the few dozen random bytes a handshake needs. The
//! tests check it word for word against `rand_chacha`.

use rand_core::{CryptoRng, Error, RngCore, SeedableRng};

/// Words of one refill: four 16-word ChaCha blocks, as `rand_chacha` buffers them.
const BUF_WORDS: usize = 64;

/// ChaCha20 as a random generator (see the module documentation).
#[derive(Clone)]
pub(crate) struct ChaCha20Rng {
    key: [u32; 8],
    /// The block counter of the next refill.
    counter: u64,
    buf: [u32; BUF_WORDS],
    /// The next unread word of `buf`; `BUF_WORDS` when it is used up.
    index: usize,
}

impl std::fmt::Debug for ChaCha20Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChaCha20Rng(..)")
    }
}

impl ChaCha20Rng {
    /// Fills `buf` with the next four blocks.
    fn refill(&mut self) {
        for (i, out) in self.buf.chunks_exact_mut(16).enumerate() {
            let counter = self.counter.wrapping_add(i as u64);
            let mut input = [0u32; 16];
            // "expand 32-byte k"
            input[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
            input[4..12].copy_from_slice(&self.key);
            input[12] = counter as u32;
            input[13] = (counter >> 32) as u32;
            // Words 14 and 15, the stream, stay 0.
            let mut x = input;
            for _ in 0..10 {
                for [a, b, c, d] in ROUNDS {
                    x[a] = x[a].wrapping_add(x[b]);
                    x[d] = (x[d] ^ x[a]).rotate_left(16);
                    x[c] = x[c].wrapping_add(x[d]);
                    x[b] = (x[b] ^ x[c]).rotate_left(12);
                    x[a] = x[a].wrapping_add(x[b]);
                    x[d] = (x[d] ^ x[a]).rotate_left(8);
                    x[c] = x[c].wrapping_add(x[d]);
                    x[b] = (x[b] ^ x[c]).rotate_left(7);
                }
            }
            for ((o, x), i) in out.iter_mut().zip(x).zip(input) {
                *o = x.wrapping_add(i);
            }
        }
        self.counter = self.counter.wrapping_add(4);
        self.index = 0;
    }

    fn next_word(&mut self) -> u32 {
        if self.index >= BUF_WORDS {
            self.refill();
        }
        self.index += 1;
        self.buf[self.index - 1]
    }
}

/// One double round: four column quarter-rounds, then four diagonal ones.
const ROUNDS: [[usize; 4]; 8] = [
    [0, 4, 8, 12],
    [1, 5, 9, 13],
    [2, 6, 10, 14],
    [3, 7, 11, 15],
    [0, 5, 10, 15],
    [1, 6, 11, 12],
    [2, 7, 8, 13],
    [3, 4, 9, 14],
];

impl SeedableRng for ChaCha20Rng {
    type Seed = [u8; 32];

    fn from_seed(seed: [u8; 32]) -> ChaCha20Rng {
        let mut key = [0u32; 8];
        for (k, b) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        ChaCha20Rng { key, counter: 0, buf: [0; BUF_WORDS], index: BUF_WORDS }
    }
}

impl RngCore for ChaCha20Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_word()
    }

    fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.next_word());
        lo | u64::from(self.next_word()) << 32
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // Whole words, little-endian; the rest of a word that ends the request is dropped.
        for chunk in dest.chunks_mut(4) {
            let word = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for ChaCha20Rng {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Word for word what `rand_chacha` gives, through refills, for every way of drawing.
    #[test]
    fn matches_rand_chacha() {
        for seed in [[0u8; 32], [7; 32], core::array::from_fn(|i| (i * 37) as u8)] {
            let mut ours = ChaCha20Rng::from_seed(seed);
            let mut theirs = rand_chacha::ChaCha20Rng::from_seed(seed);
            for step in 0..600usize {
                match step % 5 {
                    0 => assert_eq!(ours.next_u32(), theirs.next_u32()),
                    1 => assert_eq!(ours.next_u64(), theirs.next_u64()),
                    _ => {
                        let len = step % 71;
                        let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                        ours.fill_bytes(&mut a);
                        theirs.fill_bytes(&mut b);
                        assert_eq!(a, b, "step {step}");
                    }
                }
            }
        }
    }

    /// RFC 7539 appendix A.1, test vectors #1 and #2: the all-zero key and nonce at block
    /// counters 0 and 1 (where its 32-bit counter and 96-bit nonce lay out as ours do).
    #[test]
    fn rfc_7539_zero_key_blocks() {
        let mut rng = ChaCha20Rng::from_seed([0; 32]);
        let mut block = [0u8; 64];
        rng.fill_bytes(&mut block);
        assert_eq!(
            block[..16],
            [0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86, 0xbd, 0x28]
        );
        rng.fill_bytes(&mut block);
        assert_eq!(
            block[..16],
            [0x9f, 0x07, 0xe7, 0xbe, 0x55, 0x51, 0x38, 0x7a, 0x98, 0xba, 0x97, 0x7c, 0x73, 0x2d, 0x08, 0x0d]
        );
    }
}
