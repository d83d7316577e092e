//! Lab 4: the Internet checksum (RFC 1071) that TCP, UDP and IPv4 carry, shared by
//! the dissector (which verifies checksums) and the synthetic-capture writer (which
//! computes them).
//!
//! The checksum is the one's complement of the one's-complement sum of the data taken
//! as 16-bit big-endian words; TCP and UDP also sum a "pseudo-header" of IP fields:
//!
//! ```text
//! IPv4: +-------------+-------------+------+----------+----------------+
//!       | source (4)  | dest. (4)   | zero | protocol | TCP/UDP length |
//!       +-------------+-------------+------+----------+----------------+
//! IPv6: source (16), destination (16), length (4), three zero bytes, next header (1)
//! ```
//!
//! Summing data that includes a correct checksum gives all ones (0xFFFF).

use std::net::IpAddr;

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with zero) to
/// `sum`: the Internet checksum's one's-complement sum, folded later (RFC 1071).
///
/// Two facts from RFC 1071 section 2 make this fast:
///
/// - **Byte order does not matter** (2(B)): summing the words with their two bytes
///   swapped gives the swapped sum. So the bytes are read in the machine's own order,
///   with no per-word swap, and only the 16-bit result is swapped at the end.
/// - **Wider words give the same fold** (2(C)): adding 32-bit words into a 64-bit
///   accumulator keeps every carry (2^32 words would be needed to overflow it), and
///   folding the 64-bit total down to 16 bits adds those carries back in, exactly as
///   adding the 16-bit words one by one would.
///
/// The loop is then a plain sum of `u32`s into a `u64`, which the compiler turns into
/// SIMD additions. The test `fast_sum_folds_like_word_by_word` checks it against the
/// definition for every length up to 200 bytes.
pub(crate) fn add_words(sum: u64, bytes: &[u8]) -> u64 {
    let mut total = sum;
    // Blocks of 1 GiB (2^28 words) can never overflow the accumulator, whatever the
    // length of `bytes`; every block but the last is a multiple of four bytes long.
    for block in bytes.chunks(1 << 30) {
        let mut words = block.chunks_exact(4);
        let mut native = 0u64;
        for word in &mut words {
            let mut four = [0u8; 4];
            four.copy_from_slice(word);
            native += u64::from(u32::from_ne_bytes(four));
        }
        // The last one to three bytes, padded with zeros after them: a zero byte adds
        // nothing, and the bytes keep their places in their 16-bit words.
        let mut last = [0u8; 4];
        let rest = words.remainder();
        if let Some(place) = last.get_mut(..rest.len()) {
            place.copy_from_slice(rest);
        }
        native += u64::from(u32::from_ne_bytes(last));
        // Back to network byte order: the folded sum's bytes, as they lie in memory,
        // are the big-endian sum's bytes.
        let big_endian = u16::from_be_bytes(fold(native).to_ne_bytes());
        total = add_with_carry(total, u64::from(big_endian));
    }
    total
}

/// Adds `part`, the sum of some bytes taken as 16-bit words from their own first byte,
/// to a `sum` of words counted from `offset` bytes earlier. At an even offset the
/// words line up; at an odd one each byte of `part` sits in the other half of its word,
/// which swaps the bytes of the folded sum (RFC 1071 section 2(B)). This is how a sum
/// is put together from pieces: the staged reader (see [`super::stages`]) sums the
/// middle of a long frame it does not keep, and the dissector adds it in.
pub(crate) fn add_at_offset(sum: u64, part: u64, offset: usize) -> u64 {
    let folded = fold(part);
    let aligned = if offset % 2 == 0 {
        folded
    } else {
        folded.swap_bytes()
    };
    add_with_carry(sum, u64::from(aligned))
}

/// `a + b` in 64-bit one's-complement arithmetic: the carry out is added back in.
pub(crate) fn add_with_carry(a: u64, b: u64) -> u64 {
    let (sum, carried) = a.overflowing_add(b);
    sum + u64::from(carried)
}

/// Folds the carries back in until the sum fits in 16 bits.
pub(crate) fn fold(mut sum: u64) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    // The loop leaves at most 0xFFFF.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The one's-complement sum of the pseudo-header for a `len`-byte segment.
pub(crate) fn pseudo_header_sum(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u64 {
    let mut sum = 0;
    for address in [src, dst] {
        sum = match address {
            IpAddr::V4(v4) => add_words(sum, &v4.octets()),
            IpAddr::V6(v6) => add_words(sum, &v6.octets()),
        };
    }
    // IPv4 has a 16-bit length and IPv6 a 32-bit one, but as a sum of 16-bit words
    // both come to the same: the length's halves plus the protocol.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    sum + u64::from(len >> 16) + u64::from(len & 0xFFFF) + u64::from(protocol)
}

/// The checksum field's value for a running `sum`: the folded sum, complemented.
pub(crate) fn finish(sum: u64) -> u16 {
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The eight-bytes-at-a-time sum folds to the same checksum as adding 16-bit words
    /// one by one (RFC 1071's definition), for every length and alignment of the tail.
    #[test]
    fn fast_sum_folds_like_word_by_word() {
        let mut rng = ChaCha8Rng::seed_from_u64(1071);
        for len in 0..200 {
            for _ in 0..20 {
                let mut bytes = vec![0u8; len];
                rng.fill_bytes(&mut bytes);
                if len > 0 && rng.next_u32() % 4 == 0 {
                    bytes.fill(0xFF); // all ones: the carries at their largest
                }
                let mut naive = 0u64;
                for word in bytes.chunks(2) {
                    let high = u64::from(word[0]);
                    let low = u64::from(word.get(1).copied().unwrap_or(0));
                    naive += (high << 8) | low;
                }
                let start = u64::from(rng.next_u32() & 0xFFFF);
                assert_eq!(
                    fold(add_words(start, &bytes)),
                    fold(start + naive),
                    "length {len}"
                );
            }
        }
    }

    /// A sum put together from pieces, at every split point (odd ones included), folds
    /// like the sum of the whole.
    #[test]
    fn pieces_at_any_offset_add_up_to_the_whole() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for len in 0..80 {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            let whole = fold(add_words(0, &bytes));
            for first in 0..=len {
                for second in first..=len {
                    let mut sum = add_words(0, &bytes[..first]);
                    sum = add_at_offset(sum, add_words(0, &bytes[first..second]), first);
                    sum = add_at_offset(sum, add_words(0, &bytes[second..]), second);
                    assert_eq!(
                        fold(sum),
                        whole,
                        "length {len}, split at {first} and {second}"
                    );
                }
            }
        }
    }

    /// RFC 1071's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc_1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_words(0, &data)), 0xddf2);
        assert_eq!(finish(add_words(0, &data)), !0xddf2);
    }
}
