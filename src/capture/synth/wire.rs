//! Lab 4, synthetic captures: turning a generated packet into the bytes of an Ethernet
//! frame, and frames into a classic pcap file.
//!
//! A frame as written (Ethernet II, IPv4 without options, then TCP or UDP):
//!
//! ```text
//! 0        6        12     14                    34
//! +--------+--------+------+---------------------+----------------------+---------+
//! | dst MAC| src MAC| 0800 | IPv4 header (20 B)  | TCP header (20-60 B) | payload |
//! |        |        | IPv4 | checksum computed   | or UDP header (8 B), |         |
//! |        |        |      |                     | checksum computed    |         |
//! +--------+--------+------+---------------------+----------------------+---------+
//! ```
//!
//! The file is libpcap's classic format, little-endian, microsecond timestamps:
//!
//! ```text
//! file header, 24 bytes
//! 0          4       6       8          12        16         20         24
//! +----------+-------+-------+----------+---------+----------+----------+
//! | a1b2c3d4 | 2     | 4     | thiszone | sigfigs | snaplen  | linktype |
//! | (magic)  | major | minor | 0        | 0       | 262144   | 1 (Eth.) |
//! +----------+-------+-------+----------+---------+----------+----------+
//! then per packet a 16-byte record header and the frame
//! 0          4          8          12         16
//! +----------+----------+----------+----------+--------------------+
//! | ts sec   | ts usec  | incl_len | orig_len | frame (incl_len B) |
//! +----------+----------+----------+----------+--------------------+
//! ```
//!
//! We write the file ourselves rather than through `pcap::Capture::dead(..).savefile()`:
//! the crate's `PacketHeader` takes a `libc::timeval` (one more dependency just to build
//! a timestamp) and its `Savefile::write` cannot report an I/O error (a full disk would
//! go unnoticed). Fifty lines of plain `Write` avoid both, and make the bytes easy to
//! test.

use std::io::{self, Write};
use std::net::Ipv4Addr;

use crate::capture::checksum;
use crate::capture::dissect::option_kind;

/// The pcap magic number for microsecond timestamps, written in our (little-endian)
/// byte order so that readers can tell the order from it.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
/// pcap format version 2.4, the only one in use.
const PCAP_VERSION: (u16, u16) = (2, 4);
/// The snap length we declare: every frame is stored whole.
pub(crate) const PCAP_SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Length of the pcap file header.
pub(crate) const PCAP_FILE_HEADER_LEN: usize = 24;
/// Length of each packet's record header.
pub(crate) const PCAP_RECORD_HEADER_LEN: usize = 16;

/// EtherType of IPv4.
const ETHERTYPE_IPV4: u16 = 0x0800;
/// IPv4 header without options.
pub(crate) const IPV4_HEADER_LEN: usize = 20;
/// Version 4, header length 5 words (20 bytes, no options).
const IPV4_VERSION_IHL: u8 = 0x45;
/// The "don't fragment" flag: what Linux sets on TCP and on path-MTU-probing UDP.
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
/// IP protocol numbers.
pub(crate) const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub(crate) const PROTO_UDP: u8 = 17;
/// TCP header without options.
pub(crate) const TCP_HEADER_LEN: usize = 20;
/// UDP header.
pub(crate) const UDP_HEADER_LEN: usize = 8;
/// The longest TCP options field (header length is at most 15 words = 60 bytes).
pub(crate) const TCP_MAX_OPTIONS: usize = 40;

/// The IPv4 and Ethernet fields of one frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpFields {
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Identification field.
    pub ident: u16,
    /// Time to live as seen at the capture point.
    pub ttl: u8,
}

/// The TCP header fields of one segment; options already encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcpFields<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (0 without ACK).
    pub ack: u32,
    /// Flags, see `crate::capture::packet::tcp_flags`.
    pub flags: u16,
    /// Window field, unscaled.
    pub window: u16,
    /// The options bytes, a multiple of 4 long, at most [`TCP_MAX_OPTIONS`].
    pub options: &'a [u8],
}

/// TCP options as the generator describes them, before encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpOptionSet {
    /// No options (RST segments).
    None,
    /// A SYN's options in Linux's order: MSS, SACK-permitted, timestamps, NOP, window
    /// scale.
    Syn {
        /// Maximum segment size.
        mss: u16,
        /// Window scale shift.
        window_scale: u8,
        /// Timestamp value.
        tsval: u32,
        /// Timestamp echo reply (0 on a SYN).
        tsecr: u32,
    },
    /// Every other segment: NOP, NOP, timestamps, and SACK blocks when some data
    /// arrived out of order (NOP, NOP, SACK).
    Timestamps {
        /// Timestamp value.
        tsval: u32,
        /// Timestamp echo reply.
        tsecr: u32,
        /// SACK blocks (left edge, right edge), raw sequence numbers.
        sack: [(u32, u32); 3],
        /// How many of `sack` are used (0 to 3: three fit next to the timestamps).
        sack_len: u8,
    },
}

impl TcpOptionSet {
    /// Encodes the options into `out`, returning how many bytes were written (a
    /// multiple of 4).
    pub(crate) fn encode(&self, out: &mut [u8; TCP_MAX_OPTIONS]) -> usize {
        use option_kind::*;
        match *self {
            TcpOptionSet::None => 0,
            TcpOptionSet::Syn {
                mss,
                window_scale,
                tsval,
                tsecr,
            } => {
                // 4 (MSS) + 2 (SACK-permitted) + 10 (timestamps) + 1 (NOP) + 3 (WS) = 20
                out[0] = MSS;
                out[1] = 4;
                out[2..4].copy_from_slice(&mss.to_be_bytes());
                out[4] = SACK_PERMITTED;
                out[5] = 2;
                out[6] = TIMESTAMPS;
                out[7] = 10;
                out[8..12].copy_from_slice(&tsval.to_be_bytes());
                out[12..16].copy_from_slice(&tsecr.to_be_bytes());
                out[16] = NOP;
                out[17] = WINDOW_SCALE;
                out[18] = 3;
                out[19] = window_scale;
                20
            }
            TcpOptionSet::Timestamps {
                tsval,
                tsecr,
                sack,
                sack_len,
            } => {
                out[0] = NOP;
                out[1] = NOP;
                out[2] = TIMESTAMPS;
                out[3] = 10;
                out[4..8].copy_from_slice(&tsval.to_be_bytes());
                out[8..12].copy_from_slice(&tsecr.to_be_bytes());
                let blocks = usize::from(sack_len.min(3));
                if blocks == 0 {
                    return 12;
                }
                out[12] = NOP;
                out[13] = NOP;
                out[14] = SACK;
                out[15] = 2 + 8 * blocks as u8;
                for (i, (left, right)) in sack.iter().take(blocks).enumerate() {
                    let at = 16 + 8 * i;
                    out[at..at + 4].copy_from_slice(&left.to_be_bytes());
                    out[at + 4..at + 8].copy_from_slice(&right.to_be_bytes());
                }
                16 + 8 * blocks
            }
        }
    }
}

/// The checksum of an IPv4 header (its checksum field must be zero while summing).
pub(crate) fn ipv4_header_checksum(header: &[u8]) -> u16 {
    checksum::finish(checksum::add_words(0, header))
}

/// The TCP or UDP checksum of `segment` (header with a zero checksum field, then the
/// payload) under the IPv4 pseudo-header:
///
/// ```text
/// +----------------+----------------+------+-------+----------------+
/// | source address | dest. address  | zero | proto | TCP/UDP length |
/// +----------------+----------------+------+-------+----------------+
/// ```
pub(crate) fn transport_checksum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, segment: &[u8]) -> u16 {
    let pseudo = checksum::pseudo_header_sum(src.into(), dst.into(), proto, segment.len());
    checksum::finish(checksum::add_words(pseudo, segment))
}

/// Fills `out` with bytes of the endless text `pattern`, starting `offset` bytes into
/// it: the payload of a stream is this pattern, so a retransmission carries exactly the
/// bytes of the original and nothing needs to be stored.
pub(crate) fn fill_pattern(out: &mut [u8], pattern: &[u8], offset: u64) {
    let mut at = (offset % pattern.len() as u64) as usize;
    let mut written = 0;
    while written < out.len() {
        let take = (pattern.len() - at).min(out.len() - written);
        out[written..written + take].copy_from_slice(&pattern[at..at + take]);
        written += take;
        at = 0;
    }
}

/// Writes the Ethernet and IPv4 headers for a packet carrying `transport_len` bytes of
/// `proto`, with the IPv4 checksum filled in.
fn push_ethernet_ipv4(frame: &mut Vec<u8>, ip: &IpFields, proto: u8, transport_len: usize) {
    frame.extend_from_slice(&ip.dst_mac);
    frame.extend_from_slice(&ip.src_mac);
    frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = frame.len();
    let total_len = (IPV4_HEADER_LEN + transport_len) as u16;
    frame.push(IPV4_VERSION_IHL);
    frame.push(0); // DSCP/ECN: best effort, not ECN-capable
    frame.extend_from_slice(&total_len.to_be_bytes());
    frame.extend_from_slice(&ip.ident.to_be_bytes());
    frame.extend_from_slice(&IPV4_DONT_FRAGMENT.to_be_bytes());
    frame.push(ip.ttl);
    frame.push(proto);
    frame.extend_from_slice(&[0, 0]); // checksum, filled in below
    frame.extend_from_slice(&ip.src.octets());
    frame.extend_from_slice(&ip.dst.octets());
    let checksum = ipv4_header_checksum(&frame[ip_start..]);
    frame[ip_start + 10..ip_start + 12].copy_from_slice(&checksum.to_be_bytes());
}

/// Builds a whole Ethernet/IPv4/TCP frame into `frame` (cleared first). The payload is
/// `payload_len` bytes of `pattern` from `payload_offset`.
pub(crate) fn build_tcp_frame(
    frame: &mut Vec<u8>,
    ip: &IpFields,
    tcp: &TcpFields<'_>,
    pattern: &[u8],
    payload_offset: u64,
    payload_len: usize,
) {
    debug_assert!(tcp.options.len() % 4 == 0 && tcp.options.len() <= TCP_MAX_OPTIONS);
    frame.clear();
    let header_len = TCP_HEADER_LEN + tcp.options.len();
    push_ethernet_ipv4(frame, ip, PROTO_TCP, header_len + payload_len);
    let tcp_start = frame.len();
    frame.extend_from_slice(&tcp.src_port.to_be_bytes());
    frame.extend_from_slice(&tcp.dst_port.to_be_bytes());
    frame.extend_from_slice(&tcp.seq.to_be_bytes());
    frame.extend_from_slice(&tcp.ack.to_be_bytes());
    // Data offset (header length in 32-bit words) in the top 4 bits, then the 12 flag
    // bits (3 reserved, NS, CWR, ECE, URG, ACK, PSH, RST, SYN, FIN).
    let offset_and_flags = ((header_len as u16 / 4) << 12) | (tcp.flags & 0x0fff);
    frame.extend_from_slice(&offset_and_flags.to_be_bytes());
    frame.extend_from_slice(&tcp.window.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]); // checksum (below), urgent pointer
    frame.extend_from_slice(tcp.options);
    let payload_start = frame.len();
    frame.resize(payload_start + payload_len, 0);
    fill_pattern(&mut frame[payload_start..], pattern, payload_offset);
    let checksum = transport_checksum(ip.src, ip.dst, PROTO_TCP, &frame[tcp_start..]);
    frame[tcp_start + 16..tcp_start + 18].copy_from_slice(&checksum.to_be_bytes());
}

/// Builds a whole Ethernet/IPv4/UDP frame into `frame` (cleared first).
pub(crate) fn build_udp_frame(
    frame: &mut Vec<u8>,
    ip: &IpFields,
    ports: (u16, u16),
    pattern: &[u8],
    payload_offset: u64,
    payload_len: usize,
) {
    frame.clear();
    let udp_len = UDP_HEADER_LEN + payload_len;
    push_ethernet_ipv4(frame, ip, PROTO_UDP, udp_len);
    let udp_start = frame.len();
    frame.extend_from_slice(&ports.0.to_be_bytes());
    frame.extend_from_slice(&ports.1.to_be_bytes());
    frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.resize(udp_start + udp_len, 0);
    fill_pattern(
        &mut frame[udp_start + UDP_HEADER_LEN..],
        pattern,
        payload_offset,
    );
    let mut checksum = transport_checksum(ip.src, ip.dst, PROTO_UDP, &frame[udp_start..]);
    // RFC 768: a computed zero is sent as all ones; zero means "no checksum".
    if checksum == 0 {
        checksum = 0xffff;
    }
    frame[udp_start + 6..udp_start + 8].copy_from_slice(&checksum.to_be_bytes());
}

/// Writes a classic pcap file: the header once, then one record per frame.
pub(crate) struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub(crate) fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut header = [0u8; PCAP_FILE_HEADER_LEN];
        header[0..4].copy_from_slice(&PCAP_MAGIC.to_le_bytes());
        header[4..6].copy_from_slice(&PCAP_VERSION.0.to_le_bytes());
        header[6..8].copy_from_slice(&PCAP_VERSION.1.to_le_bytes());
        // thiszone and sigfigs stay 0: timestamps are UTC, accuracy unknown.
        header[16..20].copy_from_slice(&PCAP_SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter { out })
    }

    /// Appends one frame captured at `time_us` (microseconds since the Unix epoch).
    ///
    /// # Errors
    /// The writer's I/O error.
    pub(crate) fn write_frame(&mut self, time_us: u64, frame: &[u8]) -> io::Result<()> {
        let mut record = [0u8; PCAP_RECORD_HEADER_LEN];
        let seconds = (time_us / 1_000_000) as u32;
        let micros = (time_us % 1_000_000) as u32;
        let len = frame.len() as u32;
        record[0..4].copy_from_slice(&seconds.to_le_bytes());
        record[4..8].copy_from_slice(&micros.to_le_bytes());
        record[8..12].copy_from_slice(&len.to_le_bytes());
        record[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(frame)
    }

    /// Flushes and returns the underlying writer.
    ///
    /// # Errors
    /// The writer's I/O error.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_of_a_known_header() {
        // The classic example header (Wikipedia, "IPv4 header checksum"): 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_header_checksum(&header), 0xb861);
        // A header with its checksum in place sums to zero.
        let mut filled = header;
        filled[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(ipv4_header_checksum(&filled), 0);
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(ipv4_header_checksum(&[0x01]), !0x0100);
        assert_eq!(ipv4_header_checksum(&[0x01, 0x02, 0x03]), !0x0402);
    }

    #[test]
    fn options_encode_as_linux_sends_them() {
        let mut out = [0u8; TCP_MAX_OPTIONS];
        let syn = TcpOptionSet::Syn {
            mss: 1460,
            window_scale: 7,
            tsval: 0x0102_0304,
            tsecr: 0,
        };
        assert_eq!(syn.encode(&mut out), 20);
        assert_eq!(
            out[..20],
            [2, 4, 0x05, 0xb4, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        let sack = TcpOptionSet::Timestamps {
            tsval: 5,
            tsecr: 6,
            sack: [(0x10, 0x20), (0x30, 0x40), (0, 0)],
            sack_len: 2,
        };
        assert_eq!(sack.encode(&mut out), 32);
        assert_eq!(
            out[..16],
            [1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6, 1, 1, 5, 18]
        );
        assert_eq!(out[16..24], [0, 0, 0, 0x10, 0, 0, 0, 0x20]);
    }

    #[test]
    fn pattern_wraps_around() {
        let mut out = [0u8; 7];
        fill_pattern(&mut out, b"abc", 2);
        assert_eq!(&out, b"cabcabc");
    }

    fn sample_ip() -> IpFields {
        IpFields {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(10, 1, 0, 7),
            dst: Ipv4Addr::new(192, 0, 2, 10),
            ident: 0x1234,
            ttl: 57,
        }
    }

    #[test]
    fn tcp_frame_fields_lengths_and_checksums() {
        let mut options = [0u8; TCP_MAX_OPTIONS];
        let used = TcpOptionSet::Timestamps {
            tsval: 1,
            tsecr: 2,
            sack: [(0, 0); 3],
            sack_len: 0,
        }
        .encode(&mut options);
        let tcp = TcpFields {
            src_port: 40000,
            dst_port: 12000,
            seq: 0xffff_fff0,
            ack: 7,
            flags: 0x018,
            window: 2000,
            options: &options[..used],
        };
        let mut frame = Vec::new();
        build_tcp_frame(&mut frame, &sample_ip(), &tcp, b"hello ", 0, 11);
        assert_eq!(frame.len(), 14 + 20 + 32 + 11);
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        // IP total length, protocol, and a header that checks.
        assert_eq!(u16::from_be_bytes([frame[16], frame[17]]), 20 + 32 + 11);
        assert_eq!(frame[23], PROTO_TCP);
        assert_eq!(ipv4_header_checksum(&frame[14..34]), 0);
        // TCP: data offset 8 words, PSH|ACK, and a segment that checks.
        assert_eq!(frame[46] >> 4, 8);
        assert_eq!(frame[47], 0x18);
        let segment = &frame[34..];
        let sum = transport_checksum(sample_ip().src, sample_ip().dst, PROTO_TCP, segment);
        assert_eq!(sum, 0, "a segment with its checksum in place sums to zero");
        assert_eq!(&frame[frame.len() - 11..], b"hello hello");
    }

    #[test]
    fn udp_frame_length_and_checksum() {
        let mut frame = Vec::new();
        build_udp_frame(&mut frame, &sample_ip(), (5353, 12053), b"q", 0, 33);
        assert_eq!(frame.len(), 14 + 20 + 8 + 33);
        assert_eq!(u16::from_be_bytes([frame[38], frame[39]]), 8 + 33);
        assert_eq!(frame[23], PROTO_UDP);
        let sum = transport_checksum(sample_ip().src, sample_ip().dst, PROTO_UDP, &frame[34..]);
        assert_eq!(sum, 0);
        assert_ne!(u16::from_be_bytes([frame[40], frame[41]]), 0);
    }

    #[test]
    fn pcap_header_and_record_layout() {
        let mut writer = PcapWriter::new(Vec::new()).unwrap();
        writer
            .write_frame(1_700_000_001_000_042, &[0xaa; 3])
            .unwrap();
        let bytes = writer.finish().unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 3);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0]);
        assert_eq!(
            u32::from_le_bytes(bytes[16..20].try_into().unwrap()),
            PCAP_SNAPLEN
        );
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(bytes[24..28].try_into().unwrap()),
            1_700_000_001
        );
        assert_eq!(u32::from_le_bytes(bytes[28..32].try_into().unwrap()), 42);
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(bytes[36..40].try_into().unwrap()), 3);
    }
}
