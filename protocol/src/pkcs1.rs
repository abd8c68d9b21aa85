//! RSA public-key encryption with PKCS#1 v1.5 padding (RFC 8017 §7.2.1) on a small Montgomery
//! exponentiation of its own.
//!
//! The browser client encrypts one handshake with the server's public key per connection; the
//! `rsa` crate with its general big-integer library cost the browser package ~13 KB of wasm
//! for that. This is just what public-key encryption needs: u32 limbs (wasm32 multiplies 64-bit
//! natively), a fixed-size Montgomery multiplication and square-and-multiply over the public
//! exponent. It accepts exactly the keys `rsa::RsaPublicKey::new` accepts and, from the same
//! random generator, produces the same bytes (tests compare the two).
//!
//! Timing: the exponent and modulus are public; the message holds the client's own random key.
//! The multiplication's loops do not depend on values, and its final subtraction is a masked
//! select rather than a branch.

use rand_core::RngCore;

/// Largest modulus accepted, in bits (`rsa::RsaPublicKey::MAX_SIZE`).
const MAX_BITS: usize = 4096;
/// Largest public exponent accepted (`rsa::RsaPublicKey::MAX_PUB_EXPONENT`).
const MAX_EXPONENT: u64 = (1 << 33) - 1;

/// An RSA public key prepared for Montgomery exponentiation.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    /// The modulus, big-endian, no leading zero byte: its length is the block size k.
    n_be: Vec<u8>,
    /// The public exponent.
    e: u64,
    /// The modulus in little-endian 32-bit limbs.
    n: Vec<u32>,
    /// `-n^-1 mod 2^32`.
    n0_inv: u32,
    /// `R^2 mod n`, R = 2^(32 * limbs): multiplying by it enters the Montgomery domain.
    rr: Vec<u32>,
}

impl PublicKey {
    /// A key from its big-endian modulus and exponent, checked as the `rsa` crate checks them:
    /// at most 4096 bits, n odd, e odd, 3 <= e <= 2^33 - 1, e < n.
    pub(crate) fn new(n: &[u8], e: &[u8]) -> Option<PublicKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.is_empty() {
            return None;
        }
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        if bits > MAX_BITS || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        let n_odd = n.last().is_some_and(|b| b & 1 == 1);
        // e < n: n is longer than 8 bytes or, as a number, larger.
        let e_below_n = n.len() > 8 || e < n.iter().fold(0u64, |a, b| a << 8 | u64::from(*b));
        if !n_odd || !e_below_n || e & 1 == 0 || !(2..=MAX_EXPONENT).contains(&e) {
            return None;
        }
        let limbs = from_be(n, n.len().div_ceil(4));
        // Newton's iteration doubles the correct low bits of an inverse of an odd number:
        // 1 -> 2 -> 4 -> 8 -> 16 -> 32 (x = n0 is already right to 3 bits).
        let n0 = limbs[0];
        let mut inv = n0;
        for _ in 0..4 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
        }
        // R^2 mod n by doubling 1 modulo n, 2 * 32 * limbs times: public data, once per key.
        let mut rr = vec![0u32; limbs.len()];
        rr[0] = 1;
        for _ in 0..64 * limbs.len() {
            let mut carry = 0u32;
            for x in rr.iter_mut() {
                let top = *x >> 31;
                *x = *x << 1 | carry;
                carry = top;
            }
            sub_if(&mut rr, &limbs, carry);
        }
        Some(PublicKey { n_be: n.to_vec(), e, n: limbs, n0_inv: inv.wrapping_neg(), rr })
    }

    /// The modulus, big-endian without leading zeros.
    pub(crate) fn modulus(&self) -> &[u8] {
        &self.n_be
    }

    /// The public exponent.
    pub(crate) fn exponent(&self) -> u64 {
        self.e
    }

    /// The block size k in bytes.
    pub(crate) fn size(&self) -> usize {
        self.n_be.len()
    }

    /// Encrypts `msg` (at most k - 11 bytes) into one k-byte block appended to `out`: `EM = 00
    /// 02 PS 00 msg` with PS nonzero random bytes drawn as the `rsa` crate draws them (one fill,
    /// then one byte at a time for each zero), then `EM^e mod n`. `None` if `msg` is too long.
    pub(crate) fn encrypt_block(&self, rng: &mut impl RngCore, msg: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let k = self.size();
        if msg.len() + 11 > k {
            return None;
        }
        let mut em = vec![0u8; k];
        em[1] = 2;
        let ps = &mut em[2..k - msg.len() - 1];
        rng.fill_bytes(ps);
        for b in ps.iter_mut() {
            while *b == 0 {
                rng.fill_bytes(core::slice::from_mut(b));
            }
        }
        em[k - msg.len()..].copy_from_slice(msg);
        // EM starts with a zero byte and n with a nonzero one, so EM < n.
        let m = from_be(&em, self.n.len());
        let c = self.pow(&m);
        let start = out.len();
        out.resize(start + k, 0);
        to_be(&c, &mut out[start..]);
        wipe(&mut em);
        Some(())
    }

    /// `m^e mod n` for m < n, left-to-right square-and-multiply over the public exponent.
    fn pow(&self, m: &[u32]) -> Vec<u32> {
        let len = self.n.len();
        let mut t = vec![0u32; len + 2];
        let mut base = vec![0u32; len];
        self.mont_mul(m, &self.rr, &mut t, &mut base);
        let mut acc = base.clone();
        let mut tmp = vec![0u32; len];
        for i in (0..63 - self.e.leading_zeros()).rev() {
            self.mont_mul(&acc, &acc, &mut t, &mut tmp);
            core::mem::swap(&mut acc, &mut tmp);
            if self.e >> i & 1 == 1 {
                self.mont_mul(&acc, &base, &mut t, &mut tmp);
                core::mem::swap(&mut acc, &mut tmp);
            }
        }
        // Leave the Montgomery domain: multiply by 1.
        let mut one = vec![0u32; len];
        one[0] = 1;
        self.mont_mul(&acc, &one, &mut t, &mut tmp);
        wipe(&mut base);
        wipe(&mut acc);
        wipe(&mut t);
        tmp
    }

    /// `out = a * b * R^-1 mod n` for a, b < n (CIOS Montgomery multiplication); `t` is scratch
    /// of limbs + 2.
    fn mont_mul(&self, a: &[u32], b: &[u32], t: &mut [u32], out: &mut [u32]) {
        let n = &self.n;
        let len = n.len();
        t.fill(0);
        for &ai in a {
            // t += ai * b
            let mut carry = 0u64;
            for (tj, &bj) in t.iter_mut().zip(b) {
                let s = u64::from(*tj) + u64::from(ai) * u64::from(bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[len]) + carry;
            t[len] = s as u32;
            t[len + 1] = (s >> 32) as u32;
            // t = (t + m * n) / 2^32, with m chosen so the low limb becomes zero.
            let m = t[0].wrapping_mul(self.n0_inv);
            let mut carry = (u64::from(t[0]) + u64::from(m) * u64::from(n[0])) >> 32;
            for j in 1..len {
                let s = u64::from(t[j]) + u64::from(m) * u64::from(n[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[len]) + carry;
            t[len - 1] = s as u32;
            t[len] = t[len + 1] + (s >> 32) as u32;
        }
        // t < 2n: subtract n once if t >= n (t[len] is the bit above the limbs).
        out.copy_from_slice(&t[..len]);
        sub_if(out, n, t[len]);
    }
}

/// `x -= n` when `x + high * 2^(32 * limbs) >= n` (high is 0 or 1 and the sum below 2n),
/// without a branch on the values.
fn sub_if(x: &mut [u32], n: &[u32], high: u32) {
    let mut diff = [0u32; MAX_BITS / 32 + 1];
    let diff = &mut diff[..x.len()];
    let mut borrow = 0u64;
    for ((d, &xi), &ni) in diff.iter_mut().zip(x.iter()).zip(n) {
        let s = u64::from(xi).wrapping_sub(u64::from(ni)).wrapping_sub(borrow);
        *d = s as u32;
        borrow = s >> 63;
    }
    // Keep the difference unless it borrowed past the high bit.
    let keep = (u64::from(high) | (borrow ^ 1)) as u32 & 1;
    let mask = keep.wrapping_neg();
    for (xi, d) in x.iter_mut().zip(diff.iter()) {
        *xi = (*d & mask) | (*xi & !mask);
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let lead = b.iter().take_while(|x| **x == 0).count();
    &b[lead..]
}

/// Big-endian bytes to `len` little-endian limbs (the bytes fit).
fn from_be(bytes: &[u8], len: usize) -> Vec<u32> {
    let mut limbs = vec![0u32; len];
    for (i, b) in bytes.iter().rev().enumerate() {
        limbs[i / 4] |= u32::from(*b) << (8 * (i % 4));
    }
    limbs
}

/// Little-endian limbs to big-endian bytes filling `out` (the value fits).
fn to_be(limbs: &[u32], out: &mut [u8]) {
    for (i, b) in out.iter_mut().rev().enumerate() {
        *b = (limbs[i / 4] >> (8 * (i % 4))) as u8;
    }
}

/// Clears a buffer that held secret material (best effort: the write is kept by `black_box`).
fn wipe<T: Default + Copy>(buf: &mut [T]) {
    buf.fill(T::default());
    core::hint::black_box(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `m^e mod n` by u128 square-and-multiply, for moduli under 2^64.
    fn naive_pow(m: u64, e: u64, n: u64) -> u64 {
        let (m, n) = (u128::from(m), u128::from(n));
        let mut acc = 1u128;
        for i in (0..64).rev() {
            acc = acc * acc % n;
            if e >> i & 1 == 1 {
                acc = acc * m % n;
            }
        }
        acc as u64
    }

    /// One- and two-limb moduli against plain arithmetic, edges of m included.
    #[test]
    fn montgomery_pow_matches_plain_arithmetic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..400 {
            let n = match round {
                0 => u64::MAX,
                1 => 0x8000_0000_0000_0001,
                2 => 0xffff_ffff,
                3 => 35,
                _ => (next() >> (round % 60)) | 1,
            };
            let e = [3, 17, 65537, (1 << 33) - 1, next() & ((1 << 33) - 1) | 1][round % 5];
            let Some(key) = PublicKey::new(&n.to_be_bytes(), &e.to_be_bytes()) else {
                assert!(e >= n || n < 5, "n = {n}, e = {e}");
                continue;
            };
            for m in [0, 1, 2, n - 1, n - 2, next() % n] {
                let limbs = from_be(&m.to_be_bytes(), key.n.len().max(2))[..key.n.len()].to_vec();
                let got = key.pow(&limbs);
                let mut bytes = [0u8; 8];
                to_be(&[got[0], got.get(1).copied().unwrap_or(0)], &mut bytes);
                assert_eq!(u64::from_be_bytes(bytes), naive_pow(m, e, n), "{m}^{e} mod {n}");
            }
        }
    }
}
