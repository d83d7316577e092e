//! The dissector's tests: real frames captured on Linux's `lo` (as literal bytes, with
//! the checksums tcpdump computed for them), every link type, IPv4 options, IPv6
//! extension headers, fragments, checksums, truncations, and a seeded fuzz loop.

use super::*;
use crate::capture::packet::tcp_flags;
use etherparse::{PacketBuilder, TcpOptionElement};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A SYN from 127.0.0.1:40818 to 127.0.0.1:47123, captured on `lo` with tcpdump
/// (Ethernet with zero MACs). Its checksum field holds the pseudo-header's partial sum
/// 0xfe30; tcpdump says the correct value would be 0x04ee.
const LO_SYN: [u8; 74] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x3c, 0x22, 0xd0, 0x40, 0x00, 0x40, 0x06, 0x19, 0xea, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00,
    0x00, 0x01, 0x9f, 0x72, 0xb8, 0x13, 0x14, 0x88, 0x7a, 0x6d, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
    0xff, 0xd7, 0xfe, 0x30, 0x00, 0x00, 0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0x7a, 0x6e,
    0xea, 0x26, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
];
/// The offset of the TCP checksum field in [`LO_SYN`].
const LO_SYN_CHECKSUM_AT: usize = 14 + 20 + 16;
/// What tcpdump computed as the correct checksum of [`LO_SYN`].
const LO_SYN_CORRECT: u16 = 0x04ee;

/// A UDP datagram "hello" from 127.0.0.1:57307 to 127.0.0.1:47124, captured on `lo`;
/// field 0xfe20 (partial sum), correct value 0x260f (tcpdump).
const LO_UDP: [u8; 47] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x21, 0x8d, 0x88, 0x40, 0x00, 0x40, 0x11, 0xaf, 0x41, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00,
    0x00, 0x01, 0xdf, 0xdb, 0xb8, 0x14, 0x00, 0x0d, 0xfe, 0x20, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
];
const LO_UDP_CHECKSUM_AT: usize = 14 + 20 + 6;
const LO_UDP_CORRECT: u16 = 0x260f;

/// The IPv4 packet inside [`LO_UDP`], for wrapping in other link layers.
fn udp_ip() -> &'static [u8] {
    &LO_UDP[14..]
}

/// A frame holding all of `data`, as captured with no snap length cut.
fn frame(data: &[u8]) -> Frame<'_> {
    Frame {
        number: 1,
        time_us: 0,
        data,
        wire_len: data.len() as u32,
    }
}

fn with_checksum(bytes: &[u8], at: usize, value: u16) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[at..at + 2].copy_from_slice(&value.to_be_bytes());
    copy
}

/// Gives an Ethernet frame non-zero MAC addresses: no longer loopback-like.
fn with_macs(bytes: &[u8]) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    copy
}

fn tcp(packet: &Packet<'_>) -> TcpSegment<'static> {
    match &packet.transport {
        Transport::Tcp(segment) => TcpSegment {
            payload: &[],
            ..segment.clone()
        },
        other => panic!("expected TCP, got {other:?} ({:?})", packet.malformed),
    }
}

fn udp<'a>(packet: &Packet<'a>) -> UdpDatagram<'a> {
    match &packet.transport {
        Transport::Udp(datagram) => datagram.clone(),
        other => panic!("expected UDP, got {other:?} ({:?})", packet.malformed),
    }
}

#[test]
fn a_loopback_syn_with_every_field() {
    let (packet, options) = dissect_with_options(LinkType::Ethernet, &frame(&LO_SYN));
    assert_eq!(packet.malformed, None);
    let ip = packet.ip.clone().unwrap();
    assert_eq!(
        ip,
        IpInfo {
            version: 4,
            src: "127.0.0.1".parse().unwrap(),
            dst: "127.0.0.1".parse().unwrap(),
            protocol: 6,
            ttl: 64,
            header_len: 20,
            total_len: 60,
            ident: 0x22d0,
            fragment: None,
        }
    );
    let segment = tcp(&packet);
    assert_eq!((segment.src_port, segment.dst_port), (40818, 47123));
    assert_eq!(segment.seq, 344_488_557);
    assert_eq!(segment.ack, 0);
    assert_eq!(segment.flags, tcp_flags::SYN);
    assert_eq!(segment.header_len, 40);
    assert_eq!(segment.window, 65495);
    assert_eq!(segment.payload_len, 0);
    assert_eq!(
        segment.options,
        TcpOptions {
            mss: Some(65495),
            window_scale: Some(10),
            sack_permitted: true,
            sack_blocks: vec![],
            timestamps: Some((2_054_089_254, 0)),
        }
    );
    assert_eq!(
        options,
        vec![
            TcpOption::Mss(65495),
            TcpOption::SackPermitted,
            TcpOption::Timestamps(2_054_089_254, 0),
            TcpOption::Nop,
            TcpOption::WindowScale(10),
        ]
    );
    // On lo the field holds the partial sum: not verifiable, not "bad".
    assert_eq!(segment.checksum, Checksum::NotVerified);
}

#[test]
fn tcp_checksum_rule() {
    let off_lo = with_macs(&LO_SYN);
    let verdict = |bytes: &[u8]| tcp(&dissect(LinkType::Ethernet, &frame(bytes))).checksum;
    // The partial sum, plain or complemented, on a real interface: offload, not an error.
    assert_eq!(verdict(&off_lo), Checksum::NotVerified);
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_SYN_CHECKSUM_AT, !0xfe30)),
        Checksum::NotVerified
    );
    // The value tcpdump computed is good, on lo and off it.
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_SYN_CHECKSUM_AT, LO_SYN_CORRECT)),
        Checksum::Good
    );
    assert_eq!(
        verdict(&with_checksum(&LO_SYN, LO_SYN_CHECKSUM_AT, LO_SYN_CORRECT)),
        Checksum::Good
    );
    // Any other value is bad off loopback, not verified on it.
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_SYN_CHECKSUM_AT, 0x1234)),
        Checksum::Bad {
            found: 0x1234,
            expected: LO_SYN_CORRECT
        }
    );
    assert_eq!(
        verdict(&with_checksum(&LO_SYN, LO_SYN_CHECKSUM_AT, 0x1234)),
        Checksum::NotVerified
    );
}

#[test]
fn a_loopback_udp_datagram_and_its_checksums() {
    let packet = dissect(LinkType::Ethernet, &frame(&LO_UDP));
    assert_eq!(packet.malformed, None);
    let datagram = udp(&packet);
    assert_eq!((datagram.src_port, datagram.dst_port), (57307, 47124));
    assert_eq!(datagram.length_field, 13);
    assert_eq!(datagram.ip_len, 13);
    assert_eq!(datagram.payload, b"hello");
    assert_eq!(datagram.checksum, Checksum::NotVerified);

    let off_lo = with_macs(&LO_UDP);
    let verdict = |bytes: &[u8]| udp(&dissect(LinkType::Ethernet, &frame(bytes))).checksum;
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_UDP_CHECKSUM_AT, LO_UDP_CORRECT)),
        Checksum::Good
    );
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_UDP_CHECKSUM_AT, 0)),
        Checksum::Zero
    );
    assert_eq!(
        verdict(&with_checksum(&off_lo, LO_UDP_CHECKSUM_AT, 0x1111)),
        Checksum::Bad {
            found: 0x1111,
            expected: LO_UDP_CORRECT
        }
    );
}

/// Dissects [`LO_UDP`]'s IP packet (with a wrong checksum 0x1111) behind `header` on
/// `link`, and returns the packet's UDP payload and checksum verdict.
fn wrapped(link: LinkType, header: &[u8]) -> (Option<String>, Vec<u8>, Checksum) {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&with_checksum(udp_ip(), 26, 0x1111));
    let packet = dissect(link, &frame(&bytes));
    match &packet.transport {
        Transport::Udp(datagram) => (
            packet.malformed.clone(),
            datagram.payload.to_vec(),
            datagram.checksum,
        ),
        other => panic!(
            "{link:?}: expected UDP, got {other:?} ({:?})",
            packet.malformed
        ),
    }
}

const BAD_1111: Checksum = Checksum::Bad {
    found: 0x1111,
    expected: LO_UDP_CORRECT,
};

#[test]
fn linux_cooked_v1_and_v2() {
    let mut sll = [0u8; 16];
    sll[2..4].copy_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK
    sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
    assert_eq!(
        wrapped(LinkType::LinuxSll, &sll),
        (None, b"hello".to_vec(), Checksum::NotVerified)
    );
    sll[2..4].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    assert_eq!(wrapped(LinkType::LinuxSll, &sll).2, BAD_1111);

    let mut sll2 = [0u8; 20];
    sll2[0..2].copy_from_slice(&0x0800u16.to_be_bytes());
    sll2[8..10].copy_from_slice(&772u16.to_be_bytes());
    assert_eq!(
        wrapped(LinkType::LinuxSll2, &sll2),
        (None, b"hello".to_vec(), Checksum::NotVerified)
    );
    sll2[8..10].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(wrapped(LinkType::LinuxSll2, &sll2).2, BAD_1111);

    let packet = dissect(LinkType::LinuxSll2, &frame(&sll2[..15]));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("Linux cooked v2 (SLL2) header cut: 15 of 20 bytes")
    );
}

#[test]
fn null_and_loop_families_in_either_byte_order() {
    // NULL: the capturing host's order, little-endian (x86) or big-endian.
    for header in [[2, 0, 0, 0], [0, 0, 0, 2]] {
        assert_eq!(
            wrapped(LinkType::Null, &header),
            (None, b"hello".to_vec(), Checksum::NotVerified)
        );
    }
    assert_eq!(
        wrapped(LinkType::Loop, &[0, 0, 0, 2]),
        (None, b"hello".to_vec(), Checksum::NotVerified)
    );
    // LOOP is always network order: a little-endian 2 is an unknown family.
    let mut bytes = vec![2, 0, 0, 0];
    bytes.extend_from_slice(udp_ip());
    let packet = dissect(LinkType::Loop, &frame(&bytes));
    assert!(matches!(packet.transport, Transport::None));
    assert_eq!(packet.malformed, None);

    // Every system's AF_INET6 carries IPv6.
    let ipv6 = ipv6_udp_packet();
    for family in [10u32, 24, 28, 30] {
        let mut bytes = family.to_le_bytes().to_vec();
        bytes.extend_from_slice(&ipv6);
        let packet = dissect(LinkType::Null, &frame(&bytes));
        assert_eq!(
            packet.ip.as_ref().map(|ip| ip.version),
            Some(6),
            "family {family}"
        );
        assert_eq!(udp(&packet).payload, b"six");
    }
}

#[test]
fn raw_ipv4_and_ipv6_link_types() {
    assert_eq!(
        wrapped(LinkType::Raw, &[]),
        (None, b"hello".to_vec(), BAD_1111)
    );
    assert_eq!(
        wrapped(LinkType::Ipv4, &[]),
        (None, b"hello".to_vec(), BAD_1111)
    );
    let ipv6 = ipv6_udp_packet();
    assert_eq!(udp(&dissect(LinkType::Raw, &frame(&ipv6))).payload, b"six");
    assert_eq!(
        udp(&dissect(LinkType::Ipv6, &frame(&ipv6))).checksum,
        Checksum::Good
    );

    let packet = dissect(LinkType::Ipv6, &frame(udp_ip()));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("IPv6 header: the link layer announced IPv6, the version field says 4")
    );
    let packet = dissect(LinkType::Raw, &frame(&[0x50, 0, 0, 0]));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("IP header: version 5 is neither 4 nor 6")
    );
    let packet = dissect(LinkType::Raw, &frame(&[]));
    assert!(packet.malformed.unwrap().contains("empty"));
}

#[test]
fn vlan_tags_arp_and_unknown_link_types() {
    let tagged = |tags: usize| {
        let mut bytes = with_macs(&LO_UDP)[..12].to_vec();
        for _ in 0..tags {
            bytes.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        }
        bytes.extend_from_slice(&[0x08, 0x00]);
        bytes.extend_from_slice(&with_checksum(udp_ip(), 26, LO_UDP_CORRECT));
        bytes
    };
    for tags in [1, 2] {
        let bytes = tagged(tags);
        let packet = dissect(LinkType::Ethernet, &frame(&bytes));
        assert_eq!(packet.malformed, None, "{tags} tags");
        assert_eq!(udp(&packet).checksum, Checksum::Good);
    }
    let bytes = tagged(3);
    let packet = dissect(LinkType::Ethernet, &frame(&bytes));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("Ethernet: more than 2 VLAN tags")
    );

    // ARP is not IP: nothing to dissect, nothing wrong.
    let mut arp = LO_UDP.to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let packet = dissect(LinkType::Ethernet, &frame(&arp));
    assert!(packet.ip.is_none());
    assert!(matches!(packet.transport, Transport::None));
    assert_eq!(packet.malformed, None);

    let packet = dissect(LinkType::Unknown(147), &frame(&LO_UDP));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("unsupported link type 147")
    );
    let packet = dissect(LinkType::Ethernet, &frame(&LO_UDP[..10]));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("Ethernet header cut: 10 of 14 bytes")
    );
}

/// An IPv6 UDP packet ::1 -> ::2 carrying "six" behind a hop-by-hop extension header
/// (next header 0, 8 bytes: next 17, length 0, a PadN option), checksum computed by
/// etherparse.
fn ipv6_udp_packet() -> Vec<u8> {
    let src: [u8; 16] = "::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let dst: [u8; 16] = "::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let payload = b"six";
    let header =
        etherparse::UdpHeader::with_ipv6_checksum(5353, 53, &ipv6_header(src, dst), payload)
            .unwrap();
    let mut bytes = vec![0x60, 0, 0, 0, 0, 8 + 8 + 3, 0, 64];
    bytes.extend_from_slice(&src);
    bytes.extend_from_slice(&dst);
    bytes.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
    bytes.extend_from_slice(&header.to_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn ipv6_header(src: [u8; 16], dst: [u8; 16]) -> etherparse::Ipv6Header {
    etherparse::Ipv6Header {
        source: src,
        destination: dst,
        ..Default::default()
    }
}

#[test]
fn ipv6_with_an_extension_header() {
    let bytes = ipv6_udp_packet();
    let packet = dissect(LinkType::Ipv6, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    let ip = packet.ip.clone().unwrap();
    assert_eq!(ip.version, 6);
    assert_eq!(ip.header_len, 48);
    assert_eq!(ip.total_len, 40 + 19);
    assert_eq!(ip.protocol, 17);
    assert_eq!(ip.ttl, 64);
    let datagram = udp(&packet);
    assert_eq!(
        (datagram.src_port, datagram.dst_port, datagram.length_field),
        (5353, 53, 11)
    );
    assert_eq!(datagram.checksum, Checksum::Good);
    // A UDP checksum of 0 is not allowed over IPv6: it is checked like any other.
    let zeroed = with_checksum(&bytes, 48 + 6, 0);
    assert!(matches!(
        udp(&dissect(LinkType::Ipv6, &frame(&zeroed))).checksum,
        Checksum::Bad { found: 0, .. }
    ));
    // The extension header cut short.
    let cut = &bytes[..44];
    let mut cut = cut.to_vec();
    cut[5] = 4; // payload length matches what is left, so only the extension is short
    let packet = dissect(LinkType::Ipv6, &frame(&cut));
    assert!(packet.ip.is_some());
    let reason = packet.malformed.unwrap();
    assert!(reason.starts_with("IPv6 extension header"), "{reason}");
}

#[test]
fn ipv6_tcp_with_sack_blocks_built_by_etherparse() {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            63,
        )
        .tcp(443, 50000, 1000, 512)
        .ack(2000)
        .psh()
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement((100, 200), [Some((300, 400)), None, None]),
        ])
        .unwrap();
    let payload = b"0123456789";
    let mut bytes = Vec::new();
    builder.write(&mut bytes, payload).unwrap();
    let (packet, options) = dissect_with_options(LinkType::Ethernet, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    let segment = tcp(&packet);
    assert_eq!(segment.flags, tcp_flags::ACK | tcp_flags::PSH);
    assert_eq!(
        (segment.seq, segment.ack, segment.window),
        (1000, 2000, 512)
    );
    assert_eq!(segment.options.sack_blocks, vec![(100, 200), (300, 400)]);
    assert_eq!(segment.payload_len, 10);
    assert_eq!(segment.checksum, Checksum::Good);
    assert_eq!(
        options[..3],
        [
            TcpOption::Nop,
            TcpOption::Nop,
            TcpOption::Sack(vec![(100, 200), (300, 400)])
        ]
    );
    match dissect(LinkType::Ethernet, &frame(&bytes)).transport {
        Transport::Tcp(segment) => assert_eq!(segment.payload, payload),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv4_options_move_the_transport_header() {
    // IHL 6: 4 bytes of options (NOP NOP NOP EOL) before the UDP header.
    let ip = with_checksum(udp_ip(), 26, LO_UDP_CORRECT);
    let mut bytes = vec![0x46, 0x00, 0x00, 0x25];
    bytes.extend_from_slice(&ip[4..20]);
    bytes.extend_from_slice(&[1, 1, 1, 0]);
    bytes.extend_from_slice(&ip[20..]);
    let packet = dissect(LinkType::Raw, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    assert_eq!(packet.ip.as_ref().unwrap().header_len, 24);
    let datagram = udp(&packet);
    assert_eq!(datagram.payload, b"hello");
    // The pseudo-header does not include the IP options: the same checksum is good.
    assert_eq!(datagram.checksum, Checksum::Good);
}

/// An IPv4 header for a fragment: `ident` 0x1234, flags/offset word given.
fn ipv4_fragment(flags_offset: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut bytes = vec![0x45, 0];
    bytes.extend_from_slice(&total.to_be_bytes());
    bytes.extend_from_slice(&[0x12, 0x34]);
    bytes.extend_from_slice(&flags_offset.to_be_bytes());
    bytes.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    bytes.extend_from_slice(payload);
    bytes
}

/// The IPv4 "more fragments" flag in the flags/offset word.
const MORE_FRAGMENTS: u16 = 0x2000;

#[test]
fn ipv4_fragments() {
    // First fragment: a UDP header saying 1008 bytes, and 16 bytes of data here.
    let mut first_payload = vec![0x13, 0x88, 0x00, 0x35, 0x03, 0xf0, 0xab, 0xcd];
    first_payload.extend_from_slice(&[7; 16]);
    let bytes = ipv4_fragment(MORE_FRAGMENTS, &first_payload);
    let packet = dissect(LinkType::Raw, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    let ip = packet.ip.clone().unwrap();
    assert_eq!(
        ip.fragment,
        Some(FragmentInfo {
            offset: 0,
            more: true
        })
    );
    assert_eq!(ip.ident, 0x1234);
    let datagram = udp(&packet);
    assert_eq!((datagram.length_field, datagram.ip_len), (1008, 24));
    assert_eq!(datagram.payload, &[7; 16]);
    assert_eq!(datagram.checksum, Checksum::NotVerified);

    // A later fragment (offset 24 bytes = 3 units of 8), the last one.
    let bytes = ipv4_fragment(3, &[9; 40]);
    let packet = dissect(LinkType::Raw, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    assert_eq!(
        packet.ip.unwrap().fragment,
        Some(FragmentInfo {
            offset: 24,
            more: false
        })
    );
    assert!(matches!(packet.transport, Transport::Fragment));
}

#[test]
fn ipv6_fragments() {
    let fragment = |offset_units: u16, more: bool, payload: &[u8]| {
        let mut bytes = vec![0x60, 0, 0, 0];
        bytes.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        bytes.extend_from_slice(&[44, 64]); // next header: Fragment
        bytes.extend_from_slice(&[0; 15]);
        bytes.push(1);
        bytes.extend_from_slice(&[0; 15]);
        bytes.push(2);
        let word = (offset_units << 3) | u16::from(more);
        bytes.extend_from_slice(&[17, 0]);
        bytes.extend_from_slice(&word.to_be_bytes());
        bytes.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    };
    let bytes = fragment(
        0,
        true,
        &[0x13, 0x88, 0x00, 0x35, 0x05, 0xdc, 0, 0, 1, 2, 3, 4],
    );
    let packet = dissect(LinkType::Ipv6, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    let ip = packet.ip.clone().unwrap();
    assert_eq!(
        (ip.ident, ip.header_len, ip.protocol),
        (0xdead_beef, 48, 17)
    );
    assert_eq!(
        ip.fragment,
        Some(FragmentInfo {
            offset: 0,
            more: true
        })
    );
    let datagram = udp(&packet);
    assert_eq!((datagram.dst_port, datagram.length_field), (53, 1500));
    assert_eq!(datagram.payload, &[1, 2, 3, 4]);

    let bytes = fragment(100, false, &[5; 20]);
    let packet = dissect(LinkType::Ipv6, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    assert_eq!(
        packet.ip.unwrap().fragment,
        Some(FragmentInfo {
            offset: 800,
            more: false
        })
    );
    assert!(matches!(packet.transport, Transport::Fragment));
}

/// A SYN-less data segment: [`LO_SYN`] turned into a 40-byte-header segment with 100
/// bytes of payload (IP total length 160).
fn lo_data_segment() -> Vec<u8> {
    let mut bytes = LO_SYN.to_vec();
    bytes[16..18].copy_from_slice(&160u16.to_be_bytes());
    bytes[47] = 0x18; // PSH ACK
    bytes.extend_from_slice(&[b'x'; 100]);
    bytes
}

#[test]
fn snaplen_cuts_keep_lengths_from_the_ip_header() {
    let bytes = lo_data_segment();
    let cut = Frame {
        number: 1,
        time_us: 0,
        data: &bytes[..100],
        wire_len: bytes.len() as u32,
    };
    let packet = dissect(LinkType::Ethernet, &cut);
    assert_eq!(packet.malformed, None);
    match packet.transport {
        Transport::Tcp(segment) => {
            assert_eq!(segment.payload_len, 100);
            assert_eq!(segment.payload.len(), 100 - 14 - 20 - 40);
            assert_eq!(segment.checksum, Checksum::NotVerified);
        }
        other => panic!("{other:?}"),
    }

    // Cut inside the TCP header.
    let cut = Frame {
        data: &bytes[..14 + 20 + 12],
        ..cut
    };
    let packet = dissect(LinkType::Ethernet, &cut);
    assert!(packet.ip.is_some());
    assert_eq!(
        packet.malformed.as_deref(),
        Some("TCP header cut: 12 of 20 bytes")
    );
}

#[test]
fn truncations_and_inconsistencies_name_the_layer() {
    let malformed = |link: LinkType, bytes: &[u8]| dissect(link, &frame(bytes)).malformed;
    assert_eq!(
        malformed(LinkType::Ethernet, &LO_SYN[..24]).as_deref(),
        Some("IPv4 header cut: 10 of 20 bytes")
    );
    // The frame ends before the length IP announces, and it was not a snaplen cut.
    let bytes = lo_data_segment();
    assert_eq!(
        malformed(LinkType::Ethernet, &bytes[..120]).as_deref(),
        Some("IPv4 length 160 exceeds the 106 bytes in the frame")
    );
    // Options cut: the header says 40 bytes, 30 are there (and IP agrees with the frame).
    let mut short = LO_SYN[..14 + 20 + 30].to_vec();
    short[16..18].copy_from_slice(&50u16.to_be_bytes());
    assert_eq!(
        malformed(LinkType::Ethernet, &short).as_deref(),
        Some("TCP header length 40 exceeds the 30 bytes IP leaves for the segment")
    );
    // A data offset below 5.
    let mut small = LO_SYN.to_vec();
    small[46] = 0x40;
    assert_eq!(
        malformed(LinkType::Ethernet, &small).as_deref(),
        Some("TCP header: data offset 4 (16 bytes) is less than the 20-byte minimum")
    );
    // UDP: the header cut, and length fields that do not fit.
    assert_eq!(
        malformed(LinkType::Raw, &udp_ip()[..24]).as_deref(),
        Some("IPv4 length 33 exceeds the 24 bytes in the frame")
    );
    let mut cut_ip = udp_ip()[..24].to_vec();
    cut_ip[2..4].copy_from_slice(&24u16.to_be_bytes());
    assert_eq!(
        malformed(LinkType::Raw, &cut_ip).as_deref(),
        Some("UDP header cut: 4 of 8 bytes")
    );
    let mut long = udp_ip().to_vec();
    long[24..26].copy_from_slice(&40u16.to_be_bytes());
    assert_eq!(
        malformed(LinkType::Raw, &long).as_deref(),
        Some("UDP length field 40 exceeds the 13 bytes IP leaves for it")
    );
    long[24..26].copy_from_slice(&4u16.to_be_bytes());
    assert_eq!(
        malformed(LinkType::Raw, &long).as_deref(),
        Some("UDP length field 4 is less than its 8-byte header")
    );
    // An IPv4 total length shorter than the header.
    let mut tiny = udp_ip().to_vec();
    tiny[2..4].copy_from_slice(&12u16.to_be_bytes());
    assert_eq!(
        malformed(LinkType::Raw, &tiny).as_deref(),
        Some("IPv4 total length 12 is less than its header (20 bytes)")
    );
}

#[test]
fn tcp_options_parsing() {
    let (options, error) = parse_tcp_options(&[2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 0, 0]);
    assert_eq!(error, None);
    assert_eq!(
        options,
        vec![
            TcpOption::Mss(1460),
            TcpOption::Nop,
            TcpOption::WindowScale(7),
            TcpOption::SackPermitted,
            TcpOption::End,
        ]
    );
    // Unknown options are kept by kind and length and skipped over.
    let (options, error) = parse_tcp_options(&[254, 4, 0xf9, 0x89, 1]);
    assert_eq!(error, None);
    assert_eq!(
        options,
        vec![TcpOption::Other { kind: 254, len: 4 }, TcpOption::Nop]
    );
    // Broken ones stop the walk with a reason.
    assert_eq!(
        parse_tcp_options(&[1, 2, 3, 0]).1.as_deref(),
        Some("TCP option 2 has a wrong length (3)")
    );
    assert_eq!(
        parse_tcp_options(&[8, 10, 0, 0]).1.as_deref(),
        Some("TCP option 8 cut: 4 of 10 bytes")
    );
    assert_eq!(
        parse_tcp_options(&[1, 8]).1.as_deref(),
        Some("TCP option 8 cut: no length byte")
    );
    assert_eq!(
        parse_tcp_options(&[30, 1]).1.as_deref(),
        Some("TCP option 30 has length 1, less than 2")
    );
    // A bad option inside a real header marks the packet malformed but keeps the rest.
    let mut bytes = LO_SYN.to_vec();
    bytes[14 + 20 + 20 + 1] = 9; // MSS with length 9
    let packet = dissect(LinkType::Ethernet, &frame(&bytes));
    assert_eq!(
        packet.malformed.as_deref(),
        Some("TCP option 2 has a wrong length (9)")
    );
    assert_eq!(tcp(&packet).seq, 344_488_557);
}

#[test]
fn tso_zero_total_length_uses_the_captured_length() {
    let mut bytes = lo_data_segment();
    bytes[16..18].copy_from_slice(&[0, 0]);
    let packet = dissect(LinkType::Ethernet, &frame(&bytes));
    assert_eq!(packet.malformed, None);
    assert_eq!(packet.ip.as_ref().unwrap().total_len, 160);
    assert_eq!(tcp(&packet).payload_len, 100);
}

/// Valid frames of every link type, for the fuzz loop to mutate.
fn valid_frames() -> Vec<(LinkType, Vec<u8>)> {
    let ipv6 = ipv6_udp_packet();
    let data = lo_data_segment();
    let prefixed = |prefix: &[u8], ip: &[u8]| {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(ip);
        bytes
    };
    let mut sll = [0u8; 16];
    sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
    let mut sll2 = [0u8; 20];
    sll2[0..2].copy_from_slice(&0x86DDu16.to_be_bytes());
    vec![
        (LinkType::Ethernet, LO_SYN.to_vec()),
        (LinkType::Ethernet, LO_UDP.to_vec()),
        (LinkType::Ethernet, data.clone()),
        (LinkType::LinuxSll, prefixed(&sll, &data[14..])),
        (LinkType::LinuxSll2, prefixed(&sll2, &ipv6)),
        (LinkType::Null, prefixed(&[2, 0, 0, 0], &LO_SYN[14..])),
        (LinkType::Null, prefixed(&[30, 0, 0, 0], &ipv6)),
        (LinkType::Loop, prefixed(&[0, 0, 0, 2], udp_ip())),
        (LinkType::Raw, ipv6.clone()),
        (LinkType::Ipv4, ipv4_fragment(MORE_FRAGMENTS, &LO_SYN[34..])),
        (LinkType::Ipv6, ipv6),
        (LinkType::Unknown(147), LO_UDP.to_vec()),
    ]
}

/// Whether `inner` lies within `outer` (an empty slice anywhere is fine).
fn within(inner: &[u8], outer: &[u8]) -> bool {
    let outer_range = outer.as_ptr_range();
    inner.is_empty()
        || (outer_range.start <= inner.as_ptr() && inner.as_ptr_range().end <= outer_range.end)
}

#[test]
fn random_and_mutated_frames_never_panic() {
    const ROUNDS: usize = 200_000;
    let mut rng = ChaCha8Rng::seed_from_u64(0x050C_41AB);
    let samples = valid_frames();
    let links = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Null,
        LinkType::Loop,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Unknown(147),
    ];
    let mut dissected_tcp_or_udp = 0;
    for _ in 0..ROUNDS {
        let (link, mut bytes) = if rng.gen_bool(0.3) {
            let len = rng.gen_range(0..128);
            let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            (links[rng.gen_range(0..links.len())], bytes)
        } else {
            let (link, bytes) = &samples[rng.gen_range(0..samples.len())];
            (*link, bytes.clone())
        };
        for _ in 0..rng.gen_range(0..4) {
            if !bytes.is_empty() {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        if rng.gen_bool(0.3) {
            bytes.truncate(rng.gen_range(0..=bytes.len()));
        }
        let wire_len = bytes.len() as u32
            + if rng.gen_bool(0.2) {
                rng.gen_range(1..2000)
            } else {
                0
            };
        let frame = Frame {
            number: 1,
            time_us: 0,
            data: &bytes,
            wire_len,
        };
        let (packet, _) = dissect_with_options(link, &frame);
        match &packet.transport {
            Transport::Tcp(segment) => {
                dissected_tcp_or_udp += 1;
                assert!(within(segment.payload, &bytes));
                assert!(segment.payload.len() as u64 <= u64::from(segment.payload_len));
            }
            Transport::Udp(datagram) => {
                dissected_tcp_or_udp += 1;
                assert!(within(datagram.payload, &bytes));
                assert!(datagram.payload.len() as u64 + 8 <= u64::from(datagram.ip_len).max(8));
            }
            _ => {}
        }
    }
    // The loop must exercise the deep layers, not only reject garbage at the top.
    assert!(dissected_tcp_or_udp > ROUNDS / 4, "{dissected_tcp_or_udp}");
}

/// A long frame with real headers: Ethernet (loopback-like or not), IPv4 or IPv6, TCP
/// (with options) or UDP, and `payload_len` random bytes, with correct checksums.
fn long_frame(rng: &mut ChaCha8Rng, payload_len: usize) -> Vec<u8> {
    let macs = if rng.gen_bool(0.5) {
        ([0; 6], [0; 6])
    } else {
        ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
    };
    let ethernet = PacketBuilder::ethernet2(macs.0, macs.1);
    let ip = if rng.gen_bool(0.7) {
        ethernet.ipv4([10, 0, 0, rng.gen()], [10, 0, 1, rng.gen()], 64)
    } else {
        ethernet.ipv6([0xfd; 16], [0xfe; 16], 64)
    };
    let payload: Vec<u8> = (0..payload_len).map(|_| rng.gen()).collect();
    let mut bytes = Vec::new();
    if rng.gen_bool(0.7) {
        let tcp = ip
            .tcp(rng.gen(), rng.gen(), rng.gen(), rng.gen())
            .ack(rng.gen())
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(rng.gen(), rng.gen()),
            ])
            .unwrap();
        tcp.write(&mut bytes, &payload).unwrap();
    } else {
        ip.udp(rng.gen(), rng.gen())
            .write(&mut bytes, &payload)
            .unwrap();
    }
    bytes
}

/// The staged reader's contract: a long frame of which only the head, the skipped
/// bytes' sum and the tail are kept dissects exactly as the whole frame does (payloads
/// aside), or says it cannot (`NotKept`) and is then read whole. Checked on long real
/// frames, some with a bit flipped, a trailer after the IP packet, a snap-length cut or
/// the checksum broken, for random head and tail sizes.
#[test]
fn kept_frames_dissect_like_whole_ones() {
    const ROUNDS: usize = 20_000;
    let mut rng = ChaCha8Rng::seed_from_u64(0x4EAD);
    let (mut same, mut not_kept) = (0, 0);
    let (mut good, mut bad) = (0, 0);
    for _ in 0..ROUNDS {
        let payload_len = rng.gen_range(0..1500);
        let mut bytes = long_frame(&mut rng, payload_len);
        let mut plain = true;
        if rng.gen_bool(0.2) {
            let trailer = rng.gen_range(1..100);
            bytes.extend((0..trailer).map(|_| rng.gen::<u8>()));
            plain = false;
        }
        if rng.gen_bool(0.2) {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
            plain = false;
        }
        let mut wire_len = bytes.len() as u32;
        if rng.gen_bool(0.1) {
            bytes.truncate(rng.gen_range(0..=bytes.len()));
        }
        if rng.gen_bool(0.05) {
            wire_len += 1;
        }
        let head = rng.gen_range(28..=400);
        let tail = rng.gen_range(0..=100);
        if bytes.len() <= head + tail {
            continue; // kept whole: nothing to compare
        }
        let whole_frame = Frame {
            number: 7,
            time_us: 1,
            data: &bytes,
            wire_len,
        };
        let whole = dissect(LinkType::Ethernet, &whole_frame).without_payload();
        let kept_frame = Frame {
            data: &bytes[..head],
            ..whole_frame
        };
        let middle = &bytes[head..bytes.len() - tail];
        let skipped = Skipped {
            len: middle.len(),
            sum: fold(add_words(0, middle)),
            tail: &bytes[bytes.len() - tail..],
        };
        match dissect_kept(LinkType::Ethernet, &kept_frame, skipped) {
            Ok(kept) => {
                assert_eq!(
                    format!("{kept:?}"),
                    format!("{whole:?}"),
                    "head {head}, tail {tail}"
                );
                same += 1;
                match &kept.transport {
                    Transport::Tcp(TcpSegment { checksum, .. })
                    | Transport::Udp(UdpDatagram { checksum, .. }) => match checksum {
                        Checksum::Good => good += 1,
                        Checksum::Bad { .. } => bad += 1,
                        _ => {}
                    },
                    _ => {}
                }
            }
            Err(NotKept) => {
                // Real frames whose trailer (if any) fits in the tail never need more.
                assert!(
                    !(plain && head >= 160),
                    "head {head}, tail {tail}: {whole:?}"
                );
                not_kept += 1;
            }
        }
    }
    eprintln!("{same} compared ({good} good, {bad} bad checksums), {not_kept} not kept");
    assert!(same > ROUNDS / 2, "{same} compared");
    // The sums put together from pieces were exercised both ways.
    assert!(good > ROUNDS / 10 && bad > 50, "{good} good, {bad} bad");
    assert!(not_kept > 0, "the NotKept path was never taken");
}
