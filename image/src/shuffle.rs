//! The byte shuffle of `Codec::Shuffle8` (as in Blosc): the bytes of 8-byte words regrouped by
//! position, all first bytes, then all second bytes, ... Arrays of doubles then compress much
//! better and faster, because their sign/exponent bytes repeat (measured with zstd -1 on 128 MiB,
//! 4 MiB chunks: quantized doubles 33x at 1.9 GB/s instead of 16.6x at 0.53 GB/s with
//! long-distance matching; smooth doubles 1.57x at 1.9 GB/s instead of 1.07x at 0.5 GB/s).

/// Transpose an 8x8 byte matrix held as 8 little-endian words (word i, byte k = element (i, k)):
/// afterwards word k, byte i holds what word i, byte k held. Its own inverse.
#[inline(always)]
fn transpose(a: &mut [u64; 8]) {
    for i in 0..4 {
        let t = ((a[i] >> 32) ^ a[i + 4]) & 0x0000_0000_FFFF_FFFF;
        a[i] ^= t << 32;
        a[i + 4] ^= t;
    }
    for i in [0, 1, 4, 5] {
        let t = ((a[i] >> 16) ^ a[i + 2]) & 0x0000_FFFF_0000_FFFF;
        a[i] ^= t << 16;
        a[i + 2] ^= t;
    }
    for i in [0, 2, 4, 6] {
        let t = ((a[i] >> 8) ^ a[i + 1]) & 0x00FF_00FF_00FF_00FF;
        a[i] ^= t << 8;
        a[i + 1] ^= t;
    }
}

fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))
}

/// Shuffle `src` (a multiple of 8 bytes) into `dst` (same length). 64 bytes at a time as an
/// 8x8 byte transpose in registers (several GB/s; a byte loop managed about 1).
pub fn shuffle8(src: &[u8], dst: &mut [u8]) {
    let m = src.len() / 8;
    debug_assert!(src.len() == m * 8 && dst.len() == src.len());
    let groups = m / 8;
    for g in 0..groups {
        let block = &src[g * 64..g * 64 + 64];
        let mut a = [0u64; 8];
        for (i, w) in a.iter_mut().enumerate() {
            *w = word(&block[i * 8..]);
        }
        transpose(&mut a);
        for (k, w) in a.iter().enumerate() {
            dst[k * m + g * 8..k * m + g * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
    }
    for i in groups * 8..m {
        for k in 0..8 {
            dst[k * m + i] = src[i * 8 + k];
        }
    }
}

/// The inverse of `shuffle8`.
pub fn unshuffle8(src: &[u8], dst: &mut [u8]) {
    let m = src.len() / 8;
    debug_assert!(src.len() == m * 8 && dst.len() == src.len());
    let groups = m / 8;
    for g in 0..groups {
        let mut a = [0u64; 8];
        for (k, w) in a.iter_mut().enumerate() {
            *w = word(&src[k * m + g * 8..]);
        }
        transpose(&mut a);
        let block = &mut dst[g * 64..g * 64 + 64];
        for (i, w) in a.iter().enumerate() {
            block[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
    }
    for i in groups * 8..m {
        for k in 0..8 {
            dst[i * 8 + k] = src[k * m + i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        // Lengths with and without a partial group of 8 words.
        for words in [4096usize, 8 * 37 + 5, 3, 0] {
            let src: Vec<u8> = (0..words as u32 * 8).map(|i| (i * 7 + i / 13) as u8).collect();
            let mut s = vec![0; src.len()];
            shuffle8(&src, &mut s);
            for i in 0..words {
                for k in 0..8 {
                    assert_eq!(s[k * words + i], src[i * 8 + k], "word {i} byte {k}");
                }
            }
            let mut back = vec![0; src.len()];
            unshuffle8(&s, &mut back);
            assert_eq!(back, src);
        }
    }
}
