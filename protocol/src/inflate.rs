//! A small zlib (RFC 1950) inflater for the browser package: stored, fixed and dynamic
//! Huffman blocks (RFC 1951) decoded one bit at a time with canonical codes, the method of
//! Mark Adler's `puff.c`. About 1.5 KB of wasm where miniz_oxide's inflater is ~5.5 KB
//! gzipped; slower per byte, which pushes (MPUSH compresses bodies over 1 KB) do not notice.
//! Without the `compress` feature [`crate::crypto::decompress`] uses it; the native builds
//! keep miniz_oxide.
//!
//! It reads what miniz_oxide's `decompress_to_vec_zlib_with_limit` reads: the zlib header
//! (deflate, no preset dictionary, any window size), the Adler-32 checked, bytes after it
//! ignored, code-length tables up to 288 + 32 entries, codes that are complete or have at
//! most one symbol, and the output cap. Symbols no encoder writes (lengths 286 and 287,
//! distances 30 and 31), and bit patterns outside a one-symbol code, are errors here.

use crate::deflate::{DIST_BASE, LEN_BASE, LEN_EXTRA};

/// Why a stream did not inflate.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// Not a valid zlib stream (or cut short).
    Invalid,
    /// The output would exceed the cap.
    TooLarge,
}

use InflateError::{Invalid, TooLarge};

/// The input, read least significant bit first.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    n: u32,
}

impl Input<'_> {
    /// The next `count` (at most 16) bits.
    fn bits(&mut self, count: u32) -> Result<u32, InflateError> {
        while self.n < count {
            let b = *self.data.get(self.pos).ok_or(Invalid)?;
            self.pos += 1;
            self.acc |= u32::from(b) << self.n;
            self.n += 8;
        }
        let v = self.acc & ((1 << count) - 1);
        self.acc >>= count;
        self.n -= count;
        Ok(v)
    }

    /// Drops the bits left of the current byte (fewer than 8: `bits` reads no byte early).
    fn align(&mut self) {
        self.acc = 0;
        self.n = 0;
    }
}

/// A canonical Huffman code: how many codes of each length, and the symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: [u16; 288],
}

impl Huffman {
    /// The code of the given code lengths (each 0..=15, at most 288 of them); `None` when it
    /// is over-subscribed, or incomplete with more than one symbol (miniz_oxide's rule).
    fn new(lengths: &[u8]) -> Option<Huffman> {
        let mut h = Huffman { count: [0; 16], symbol: [0; 288] };
        for &l in lengths {
            *h.count.get_mut(usize::from(l))? += 1;
        }
        let used = lengths.len() - usize::from(h.count[0]);
        let mut left: i32 = 1;
        for &c in &h.count[1..] {
            left = (left << 1) - i32::from(c);
            if left < 0 {
                return None;
            }
        }
        if left > 0 && used > 1 {
            return None;
        }
        let mut offset = [0u16; 16];
        for len in 1..15 {
            offset[len + 1] = offset[len] + h.count[len];
        }
        for (sym, &l) in lengths.iter().enumerate() {
            if l != 0 {
                let o = offset.get_mut(usize::from(l))?;
                *h.symbol.get_mut(usize::from(*o))? = sym as u16;
                *o += 1;
            }
        }
        Some(h)
    }

    /// The next symbol.
    fn decode(&self, input: &mut Input<'_>) -> Result<u16, InflateError> {
        // `code` is the bits read so far; `first` the first code of this length, `index` the
        // first symbol of this length in `symbol`.
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for &count in &self.count[1..] {
            code |= input.bits(1)? as i32;
            let count = i32::from(count);
            if code - count < first {
                return self.symbol.get((index + code - first) as usize).copied().ok_or(Invalid);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(Invalid)
    }
}

/// Inflates the zlib stream `data`; more than `max` bytes of output is [`InflateError::TooLarge`].
pub(crate) fn zlib(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    let [cmf, flg, ..] = *data else { return Err(Invalid) };
    if cmf & 0x0f != 8 || flg & 0x20 != 0 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
        return Err(Invalid);
    }
    let mut input = Input { data, pos: 2, acc: 0, n: 0 };
    let mut out = Vec::new();
    loop {
        let last = input.bits(1)?;
        match input.bits(2)? {
            0 => stored(&mut input, &mut out, max)?,
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                let lit = Huffman::new(&lengths).ok_or(Invalid)?;
                // 32 distance codes (30 and 31 unused) make the fixed code complete.
                let dist = Huffman::new(&[5; 32]).ok_or(Invalid)?;
                block(&mut input, &mut out, max, &lit, &dist)?;
            }
            2 => dynamic(&mut input, &mut out, max)?,
            _ => return Err(Invalid),
        }
        if last == 1 {
            break;
        }
    }
    input.align();
    let check = data.get(input.pos..input.pos + 4).ok_or(Invalid)?;
    if check != adler32(&out).to_be_bytes() {
        return Err(Invalid);
    }
    Ok(out)
}

/// The zlib trailer's checksum (RFC 1950), shared with the deflater.
pub(crate) fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that cannot overflow `b` before the reduction.
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    b << 16 | a
}

fn push_all(out: &mut Vec<u8>, bytes: &[u8], max: usize) -> Result<(), InflateError> {
    if bytes.len() > max - out.len() {
        return Err(TooLarge);
    }
    out.extend_from_slice(bytes);
    Ok(())
}

fn stored(input: &mut Input<'_>, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    input.align();
    let p = input.pos;
    let header = input.data.get(p..p + 4).ok_or(Invalid)?;
    let len = u16::from_le_bytes([header[0], header[1]]);
    if len != !u16::from_le_bytes([header[2], header[3]]) {
        return Err(Invalid);
    }
    // What is there is output before a cut-short block fails, as miniz_oxide does.
    let end = (p + 4 + usize::from(len)).min(input.data.len());
    let bytes = input.data.get(p + 4..end).ok_or(Invalid)?;
    push_all(out, bytes, max)?;
    if bytes.len() < usize::from(len) {
        return Err(Invalid);
    }
    input.pos = end;
    Ok(())
}

/// A dynamic block: its code-length code, the literal/length and distance code lengths, then
/// the data.
fn dynamic(input: &mut Input<'_>, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    const ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
    let nlen = input.bits(5)? as usize + 257;
    let ndist = input.bits(5)? as usize + 1;
    let ncode = input.bits(4)? as usize + 4;
    let mut code_lengths = [0u8; 19];
    for &i in &ORDER[..ncode] {
        code_lengths[i] = input.bits(3)? as u8;
    }
    let code = Huffman::new(&code_lengths).ok_or(Invalid)?;
    // The literal/length code lengths, then the distance code lengths: one sequence, which a
    // repeat may cross.
    let mut lengths = [0u8; 288 + 32];
    let total = nlen + ndist;
    let mut i = 0;
    while i < total {
        let (value, repeat) = match code.decode(input)? {
            sym @ 0..=15 => (sym as u8, 1),
            16 => (*lengths.get(i.wrapping_sub(1)).ok_or(Invalid)?, 3 + input.bits(2)?),
            17 => (0, 3 + input.bits(3)?),
            _ => (0, 11 + input.bits(7)?),
        };
        let end = i + repeat as usize;
        lengths.get_mut(i..end).filter(|_| end <= total).ok_or(Invalid)?.fill(value);
        i = end;
    }
    let lit = Huffman::new(&lengths[..nlen]).ok_or(Invalid)?;
    let dist = Huffman::new(&lengths[nlen..total]).ok_or(Invalid)?;
    block(input, out, max, &lit, &dist)
}

/// The data of a Huffman block, up to its end-of-block symbol.
fn block(
    input: &mut Input<'_>,
    out: &mut Vec<u8>,
    max: usize,
    lit: &Huffman,
    dist: &Huffman,
) -> Result<(), InflateError> {
    loop {
        let sym = usize::from(lit.decode(input)?);
        if sym < 256 {
            push_all(out, &[sym as u8], max)?;
            continue;
        }
        if sym == 256 {
            return Ok(());
        }
        let (&base, &extra) = LEN_BASE.get(sym - 257).zip(LEN_EXTRA.get(sym - 257)).ok_or(Invalid)?;
        let len = usize::from(base) + input.bits(u32::from(extra))? as usize;
        let d = usize::from(dist.decode(input)?);
        let base = *DIST_BASE.get(d).ok_or(Invalid)?;
        // Distance codes 0..=3 have no extra bits; then two codes per extra bit.
        let extra = if d < 4 { 0 } else { (d as u32 - 2) / 2 };
        let distance = usize::from(base) + input.bits(extra)? as usize;
        if distance > out.len() {
            return Err(Invalid);
        }
        if len > max - out.len() {
            return Err(TooLarge);
        }
        // Byte by byte: the copy may overlap what it writes.
        let start = out.len() - distance;
        for k in start..start + len {
            let b = out.get(k).copied().ok_or(Invalid)?;
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::inflate::{decompress_to_vec_zlib_with_limit, TINFLStatus};

    fn miniz(data: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        decompress_to_vec_zlib_with_limit(data, max).map_err(|e| {
            if e.status == TINFLStatus::HasMoreOutput {
                TooLarge
            } else {
                Invalid
            }
        })
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut state = 0x1234_5678u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let text = br#"{"title":"MPUSH","body":"a push, with some text in it"} "#.repeat(300);
        let random: Vec<u8> = (0..70_000).map(|_| next() as u8).collect();
        let mixed: Vec<u8> =
            (0..100_000u32).map(|i| if (i / 1000) % 2 == 0 { (i % 7) as u8 } else { next() as u8 % 16 }).collect();
        vec![vec![], b"a".to_vec(), b"hello hello hello".to_vec(), text, random, mixed, vec![0; 300_000]]
    }

    /// miniz_oxide at every level (0: stored blocks, 1: fixed codes, higher: dynamic) and the
    /// crate's own deflate.
    fn streams(data: &[u8]) -> Vec<Vec<u8>> {
        let mut s: Vec<Vec<u8>> =
            (0..=10).map(|level| miniz_oxide::deflate::compress_to_vec_zlib(data, level)).collect();
        s.push(crate::deflate::compress(data));
        s
    }

    #[test]
    fn inflates_what_deflaters_write_up_to_the_cap() {
        for data in samples() {
            for z in streams(&data) {
                assert_eq!(zlib(&z, data.len()).as_deref(), Ok(&data[..]), "{} bytes", data.len());
                assert_eq!(zlib(&z, usize::MAX).as_deref(), Ok(&data[..]));
                if !data.is_empty() {
                    assert_eq!(zlib(&z, data.len() - 1), Err(TooLarge));
                    assert_eq!(miniz(&z, data.len() - 1), Err(TooLarge));
                }
            }
        }
    }

    #[test]
    fn damaged_streams_fail_as_miniz_fails() {
        // Small streams (every damaged variant is inflated twice): short texts, and the start of
        // the random and mixed samples, whose streams have dynamic blocks.
        let mut small: Vec<Vec<u8>> = samples().into_iter().filter(|d| d.len() < 100).collect();
        small.extend(samples().into_iter().skip(3).take(3).map(|d| d[..1500].to_vec()));
        small.push(br#"{"a":[1,2,3],"b":"xyzxyzxyz"}"#.repeat(40));
        for data in &small {
            for z in streams(data) {
                for cut in 0..z.len() {
                    assert_eq!(zlib(&z[..cut], 1 << 16), miniz(&z[..cut], 1 << 16), "cut at {cut}");
                }
                for pos in 0..z.len() {
                    for v in [z[pos] ^ 1, z[pos] ^ 0x10, z[pos] ^ 0x80, 0, 0xff] {
                        let mut bad = z.clone();
                        bad[pos] = v;
                        for max in [data.len(), 1 << 16] {
                            assert_eq!(zlib(&bad, max), miniz(&bad, max), "byte {pos} = {v:#x}, max {max}");
                        }
                    }
                }
            }
        }
        for header in [[0x78, 0x9c], [0x78, 0x9d], [0x79, 0x9c], [0x78, 0xbb], [0x88, 0x18], [0x08, 0x1d]] {
            let mut z = miniz_oxide::deflate::compress_to_vec_zlib(b"header", 6);
            z[..2].copy_from_slice(&header);
            assert_eq!(zlib(&z, 100), miniz(&z, 100), "{header:x?}");
        }
    }
}
