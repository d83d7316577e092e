//! Lab 4, the analyzer's vocabulary: what one captured frame means once dissected.
//!
//! These are plain values with no parsing logic (that is [`super::dissect`]) and no
//! I/O (that is [`super::reader`]), so the TCP analysis and the views can be tested on
//! hand-made packets. Payloads borrow from the frame's bytes: nothing is copied while a
//! capture streams past.

use std::net::IpAddr;

/// A frame as it came out of the capture file or the interface.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1 for the first frame of the file, as Wireshark counts (after any BPF filter,
    /// frames keep the numbers they have in the whole file only if no filter is given;
    /// with a filter they are numbered as read, as `tshark -r FILE -Y` would not: see
    /// [`super::reader`]).
    pub number: u64,
    /// Capture time, microseconds since the Unix epoch.
    pub time_us: i64,
    /// The bytes captured (at most the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire; larger than `data.len()` when snaplen cut it.
    pub wire_len: u32,
}

/// The link-layer header types the analyzer reads (libpcap's `LINKTYPE_` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101, also DLT_RAW 12 or 14 on some systems): a bare IPv4/IPv6 packet.
    Raw,
    /// LINKTYPE_LOOP (108): like NULL, with the family in network byte order.
    Loop,
    /// LINKTYPE_LINUX_SLL (113): Linux "cooked" capture v1, 16-byte header.
    LinuxSll,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL2 (276): Linux "cooked" capture v2, 20-byte header.
    LinuxSll2,
    /// Anything else, kept by number so the error can name it.
    Unknown(u32),
}

impl LinkType {
    /// Maps libpcap's link-type number (as in a pcap header or pcapng IDB).
    pub fn from_number(number: u32) -> LinkType {
        match number {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unknown(other),
        }
    }
}

/// A dissected frame: each layer that could be read, and why the rest could not.
#[derive(Debug, Clone, Default)]
pub struct Packet<'a> {
    /// The network layer, when the frame carries IPv4 or IPv6.
    pub ip: Option<IpInfo>,
    /// The transport layer.
    pub transport: Transport<'a>,
    /// Set when some layer was cut short or inconsistent: the reason, for a per-frame
    /// "malformed" note. Layers before the problem are still filled in.
    pub malformed: Option<String>,
}

/// The IP header fields the views show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpInfo {
    /// 4 or 6.
    pub version: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The upper-layer protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6...): for IPv6
    /// the last next-header after any extension headers.
    pub protocol: u8,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u8,
    /// The IP header's length in bytes, including IPv6 extension headers.
    pub header_len: u16,
    /// The packet's length according to the IP header (IPv4 total length; IPv6 40 +
    /// payload length), which is what the upper layers' lengths come from.
    pub total_len: u32,
    /// The identification field (IPv4), or the fragment header's (IPv6), else 0.
    pub ident: u32,
    /// Set when this packet is an IP fragment.
    pub fragment: Option<FragmentInfo>,
}

/// Where an IP fragment sits in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentInfo {
    /// Offset of this fragment's data in the datagram, in bytes.
    pub offset: u32,
    /// The "more fragments" flag: false on the last fragment.
    pub more: bool,
}

/// The transport layer of a frame.
#[derive(Debug, Clone, Default)]
pub enum Transport<'a> {
    /// A TCP segment.
    Tcp(TcpSegment<'a>),
    /// A UDP datagram.
    Udp(UdpDatagram<'a>),
    /// A fragment other than the first: its transport header is in another frame.
    Fragment,
    /// An IP protocol the analyzer does not dissect (ICMP, ...), by number.
    Other(u8),
    /// No IP at all (ARP, an unknown EtherType...) or the frame was unreadable.
    #[default]
    None,
}

/// TCP flag bits as they sit in the header's 12-bit flags field.
pub mod tcp_flags {
    /// No more data from the sender.
    pub const FIN: u16 = 0x001;
    /// Synchronise sequence numbers.
    pub const SYN: u16 = 0x002;
    /// Reset the connection.
    pub const RST: u16 = 0x004;
    /// Push.
    pub const PSH: u16 = 0x008;
    /// The acknowledgment field is significant.
    pub const ACK: u16 = 0x010;
    /// Urgent pointer is significant.
    pub const URG: u16 = 0x020;
    /// ECN echo.
    pub const ECE: u16 = 0x040;
    /// Congestion window reduced.
    pub const CWR: u16 = 0x080;
    /// ECN nonce (historic).
    pub const NS: u16 = 0x100;
}

/// A TCP segment's header and where its payload is.
#[derive(Debug, Clone, Default)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw acknowledgment number (meaningful only with ACK).
    pub ack: u32,
    /// Flags, see [`tcp_flags`].
    pub flags: u16,
    /// Header length in bytes (20 to 60).
    pub header_len: u8,
    /// The advertised window as sent (unscaled).
    pub window: u16,
    /// Options found in the header.
    pub options: TcpOptions,
    /// The payload's length according to the IP header (not the captured bytes).
    pub payload_len: u32,
    /// The payload bytes captured; shorter than `payload_len` when snaplen cut them.
    pub payload: &'a [u8],
    /// What the checksum says.
    pub checksum: Checksum,
}

/// The TCP options the views show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count.
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// SACK blocks (left, right edges), raw sequence numbers.
    pub sack_blocks: Vec<(u32, u32)>,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// A UDP datagram's header and payload.
#[derive(Debug, Clone, Default)]
pub struct UdpDatagram<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The header's length field: header (8) + payload, in bytes.
    pub length_field: u16,
    /// The length the IP header leaves for UDP (header + payload).
    pub ip_len: u32,
    /// The payload bytes captured.
    pub payload: &'a [u8],
    /// What the checksum says.
    pub checksum: Checksum,
}

/// The verdict on a TCP or UDP checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// Verified and correct.
    Good,
    /// Verified and wrong: the field holds `found`, the data sums to `expected`.
    Bad {
        /// The checksum field.
        found: u16,
        /// What it should be.
        expected: u16,
    },
    /// UDP over IPv4 with checksum 0: the sender did not compute one.
    Zero,
    /// Could not be verified: the segment was cut by snaplen, or the capture is on
    /// loopback / the sender's own interface, where the kernel leaves checksums to be
    /// filled in by the network card (offload), so the field is not the final value.
    #[default]
    NotVerified,
}

impl Packet<'_> {
    /// This packet without its payload bytes, owning everything it holds: every header
    /// field and length is kept, only the borrowed `payload` slices become empty. The
    /// views that read headers only (summary, flows, handshakes, tcp) get packets in
    /// this form from the thread that dissects the file (see [`super::stages`]). It
    /// takes the packet by value, so nothing is cloned: the fields move across.
    pub fn without_payload(self) -> Packet<'static> {
        let transport = match self.transport {
            Transport::Tcp(segment) => Transport::Tcp(TcpSegment {
                payload: &[],
                ..segment
            }),
            Transport::Udp(datagram) => Transport::Udp(UdpDatagram {
                payload: &[],
                ..datagram
            }),
            Transport::Fragment => Transport::Fragment,
            Transport::Other(protocol) => Transport::Other(protocol),
            Transport::None => Transport::None,
        };
        Packet {
            ip: self.ip,
            transport,
            malformed: self.malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn without_payload_keeps_every_header_field_and_length() {
        let bytes = b"hello";
        let packet = Packet {
            ip: Some(IpInfo {
                version: 4,
                src: IpAddr::V4(Ipv4Addr::LOCALHOST),
                dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
                protocol: 6,
                ttl: 64,
                header_len: 20,
                total_len: 65,
                ident: 7,
                fragment: None,
            }),
            transport: Transport::Tcp(TcpSegment {
                src_port: 40000,
                dst_port: 12000,
                seq: 1,
                ack: 2,
                flags: tcp_flags::PSH | tcp_flags::ACK,
                header_len: 40,
                window: 512,
                options: TcpOptions {
                    sack_blocks: vec![(10, 20)],
                    timestamps: Some((3, 4)),
                    ..TcpOptions::default()
                },
                payload_len: 5,
                payload: bytes,
                checksum: Checksum::Bad {
                    found: 1,
                    expected: 2,
                },
            }),
            malformed: Some("a note".to_string()),
        };
        let stripped = packet.clone().without_payload();
        assert_eq!(stripped.ip, packet.ip);
        assert_eq!(stripped.malformed.as_deref(), Some("a note"));
        let (Transport::Tcp(before), Transport::Tcp(after)) =
            (&packet.transport, &stripped.transport)
        else {
            panic!("still TCP");
        };
        assert!(after.payload.is_empty());
        assert_eq!(after.payload_len, 5);
        assert_eq!(after.options, before.options);
        assert_eq!(
            (
                after.seq,
                after.ack,
                after.flags,
                after.window,
                after.header_len
            ),
            (1, 2, before.flags, 512, 40)
        );
        assert_eq!(after.checksum, before.checksum);
    }
}
