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
/// The bulk is added eight bytes at a time, as 64-bit words with end-around carry (a
/// carry out of the top bit is added back at the bottom): in one's-complement
/// arithmetic 2^64 counts as 1, as 2^16 does, so the fold comes out the same as adding
/// the 16-bit words one by one (RFC 1071 section 2(C), "parallel summation"), with a
/// quarter of the additions. The test `fast_sum_folds_like_word_by_word` checks it
/// against the definition for every length up to 200 bytes.
pub(crate) fn add_words(sum: u64, bytes: &[u8]) -> u64 {
    // Four running sums, one per 8-byte lane of each 32-byte block: each addition then
    // waits for the one four steps back, not for the previous one, so the processor
    // overlaps them. One's-complement addition is associative, so they are simply added
    // together at the end.
    let mut lanes = [sum, 0, 0, 0];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, eight) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            *lane = add_with_carry(*lane, u64::from_be_bytes(word));
        }
    }
    let mut sum = lanes.into_iter().fold(0, add_with_carry);
    let mut eights = blocks.remainder().chunks_exact(8);
    for eight in &mut eights {
        let mut word = [0u8; 8];
        word.copy_from_slice(eight);
        sum = add_with_carry(sum, u64::from_be_bytes(word));
    }
    let mut words = eights.remainder().chunks_exact(2);
    for word in &mut words {
        if let [high, low] = *word {
            sum = add_with_carry(sum, u64::from(u16::from_be_bytes([high, low])));
        }
    }
    if let [last] = *words.remainder() {
        sum = add_with_carry(sum, u64::from(u16::from_be_bytes([last, 0])));
    }
    sum
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

    /// RFC 1071's worked example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc_1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add_words(0, &data)), 0xddf2);
        assert_eq!(finish(add_words(0, &data)), !0xddf2);
    }
}
