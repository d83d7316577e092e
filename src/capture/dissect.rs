//! Lab 4: the dissector, which turns one captured frame's bytes into a [`Packet`]:
//! link layer, then IPv4 or IPv6, then TCP or UDP.
//!
//! It never fails and never panics: whatever bytes come in (a frame cut by the snap
//! length, a corrupted file, random garbage), the layers that could be read are filled
//! in and the first problem becomes `malformed: Some(reason)`, naming the layer
//! ("TCP header cut: 12 of 20 bytes"). Every read goes through a length check first.
//!
//! # Link layers
//!
//! libpcap's link type (in the file header) says what the frame starts with:
//!
//! ```text
//! Ethernet (1)     | dst MAC (6) | src MAC (6) | [VLAN tag (4)]x0..2 | EtherType (2) | IP...
//!                    a VLAN tag is | TPID 0x8100/0x88a8 (2) | TCI (2) |, inside the type
//! Linux SLL (113)  | packet type (2) | ARPHRD (2) | addr len (2) | addr (8) | protocol (2) | IP...
//! Linux SLL2 (276) | protocol (2) | reserved (2) | ifindex (4) | ARPHRD (2) | pkt type (1)
//!                  | addr len (1) | addr (8) | IP...
//! NULL (0)         | address family (4, the capturing host's byte order) | IP...
//! LOOP (108)       | address family (4, network byte order) | IP...
//! Raw (101), IPv4 (228), IPv6 (229)  | IP... (Raw: the version nibble says which)
//! ```
//!
//! A frame that is not IP (ARP, LLDP, an unknown EtherType or family) has
//! `Transport::None` and is not malformed: it is simply not ours to read. A link type
//! we do not read gives "unsupported link type N" on every frame.
//!
//! # IP
//!
//! IPv4 (with options) and IPv6 (with extension headers) are read with `etherparse`.
//! Lengths come from the IP header, not from how many bytes were captured: a segment
//! cut by the snap length still has its real `payload_len`, only fewer `payload` bytes.
//! A fragment other than the first is `Transport::Fragment` (its transport header is in
//! the first fragment); the first fragment's TCP or UDP header is read when complete.
//!
//! # TCP and UDP checksums, and why loopback captures "fail" them
//!
//! The checksum covers a pseudo-header (addresses, protocol, length) and the whole
//! segment. It is verified only when the whole segment was captured and is not a
//! fragment; otherwise the verdict is `NotVerified`.
//!
//! ```text
//! IPv4 pseudo-header: | source (4) | destination (4) | 0 (1) | protocol (1) | length (2) |
//! IPv6 pseudo-header: | source (16) | destination (16) | length (4) | 0 (3) | next hdr (1) |
//! ```
//!
//! On the sending host, the kernel usually leaves the checksum to the network card
//! ("checksum offload"): the packet is captured before the card fills it in, and the
//! field holds only the pseudo-header's partial sum. On loopback no card ever fills it
//! in, so nearly every segment captured on `lo` looks wrong. The rule used here:
//!
//! - the checksum adds up: `Good`;
//! - UDP over IPv4 with a checksum field of 0: `Zero` (the sender did not compute one,
//!   which IPv4 allows);
//! - it does not add up, and the capture is loopback-like (link NULL or LOOP, Linux SLL
//!   or SLL2 with ARPHRD_LOOPBACK, or Ethernet with both MAC addresses zero, which is
//!   how Linux's `lo` looks), or the field holds the pseudo-header's partial sum
//!   (folded, complemented or not: offload on a real interface): `NotVerified`;
//! - otherwise: `Bad`, with the value found and the value expected.

use std::net::IpAddr;

use etherparse::err::ip::{HeaderError as IpHeaderError, LaxHeaderSliceError};
use etherparse::err::ipv6_exts::HeaderSliceError as Ipv6ExtError;
use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

use super::checksum::{add_at_offset, add_with_carry, add_words, fold, pseudo_header_sum};
use super::packet::{
    Checksum, FragmentInfo, Frame, IpInfo, LinkType, Packet, TcpOptions, TcpSegment, Transport,
    UdpDatagram,
};

/// EtherType values (IEEE 802) the dissector acts on.
mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// An 802.1Q VLAN tag follows.
    pub const VLAN: u16 = 0x8100;
    /// An 802.1ad ("QinQ") service tag follows.
    pub const QINQ: u16 = 0x88A8;
    /// The pre-standard QinQ tag some switches still send.
    pub const QINQ_LEGACY: u16 = 0x9100;
}

/// Ethernet: two MAC addresses and the EtherType.
const ETHERNET_HEADER_LEN: usize = 14;
/// Bytes of the two MAC addresses at the start of an Ethernet header.
const ETHERNET_ADDRESSES_LEN: usize = 12;
/// An 802.1Q/802.1ad tag: the tag control information and the next EtherType.
const VLAN_TAG_LEN: usize = 4;
/// Stacked VLAN tags we unwrap (802.1ad's outer and inner tag).
const MAX_VLAN_TAGS: usize = 2;
/// Linux "cooked" capture, version 1.
const SLL_HEADER_LEN: usize = 16;
/// Linux "cooked" capture, version 2.
const SLL2_HEADER_LEN: usize = 20;
/// The ARPHRD_ type of Linux's loopback device.
const ARPHRD_LOOPBACK: u16 = 772;
/// NULL and LOOP: a 4-byte address family.
const FAMILY_HEADER_LEN: usize = 4;
/// AF_INET on every system.
const AF_INET: u32 = 2;
/// AF_INET6 differs between systems: Linux 10, NetBSD/OpenBSD 24, FreeBSD 28, macOS 30.
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// An IPv4 header without options.
const IPV4_MIN_HEADER_LEN: usize = 20;
/// The fixed IPv6 header (extension headers follow it).
const IPV6_HEADER_LEN: usize = 40;

/// IP protocol numbers (IANA) the dissector reads further.
const PROTOCOL_TCP: u8 = 6;
/// UDP.
const PROTOCOL_UDP: u8 = 17;

/// A TCP header without options.
const TCP_MIN_HEADER_LEN: usize = 20;
/// Where the TCP checksum sits in the header.
const TCP_CHECKSUM_OFFSET: usize = 16;
/// A UDP header.
const UDP_HEADER_LEN: usize = 8;
/// Where the UDP checksum sits in the header.
const UDP_CHECKSUM_OFFSET: usize = 6;
/// The TCP flag bits kept from bytes 12-13 (the low 12 bits: NS..FIN and the reserved).
const TCP_FLAGS_MASK: u16 = 0x0FFF;

/// TCP option kinds (IANA); the synthetic-capture writer uses them too.
pub(crate) mod option_kind {
    /// End of option list.
    pub const END: u8 = 0;
    /// No operation (padding).
    pub const NOP: u8 = 1;
    /// Maximum segment size (RFC 9293).
    pub const MSS: u8 = 2;
    /// Window scale (RFC 7323).
    pub const WINDOW_SCALE: u8 = 3;
    /// SACK permitted (RFC 2018).
    pub const SACK_PERMITTED: u8 = 4;
    /// SACK blocks (RFC 2018).
    pub const SACK: u8 = 5;
    /// Timestamps (RFC 7323).
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option as it appears in the header, in order (the views print them as
/// tcpdump does: `mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpOption {
    /// End of the option list (kind 0); the rest of the header is padding.
    End,
    /// No operation (kind 1), used to align the next option.
    Nop,
    /// Maximum segment size.
    Mss(u16),
    /// Window scale shift count.
    WindowScale(u8),
    /// SACK permitted.
    SackPermitted,
    /// SACK blocks: (left edge, right edge) raw sequence numbers.
    Sack(Vec<(u32, u32)>),
    /// Timestamps: TSval and TSecr.
    Timestamps(u32, u32),
    /// Any other option, by kind and length.
    Other {
        /// The option kind.
        kind: u8,
        /// The length byte (kind and length included).
        len: u8,
    },
}

/// Dissects one frame captured on a `link` link layer. Never panics; see the module
/// documentation for what is read and how problems are reported.
pub fn dissect<'a>(link: LinkType, frame: &Frame<'a>) -> Packet<'a> {
    dissect_into(link, frame, None)
}

/// [`dissect`], also returning the TCP options in the order they appear in the header
/// (empty for anything but TCP), for views that print them as tcpdump does.
pub fn dissect_with_options<'a>(link: LinkType, frame: &Frame<'a>) -> (Packet<'a>, Vec<TcpOption>) {
    let mut options = Vec::new();
    let packet = dissect_into(link, frame, Some(&mut options));
    (packet, options)
}

/// What the staged reader (see [`super::stages`]) keeps of a long frame after its
/// first bytes: how many bytes it skipped and their sum, then the frame's last bytes.
///
/// ```text
/// | head: frame.data (kept) | skipped: len bytes, only their sum kept | tail (kept) |
/// ```
///
/// The headers are in the head; a TCP or UDP checksum covers the segment to its end,
/// which is in the tail (or is the frame's end), so the sum of the skipped middle is
/// all the checksum needs of it.
#[derive(Debug, Clone, Copy)]
pub struct Skipped<'a> {
    /// How many bytes were skipped after the head.
    pub len: usize,
    /// Their one's-complement sum, as 16-bit words counted from the first skipped byte.
    pub sum: u16,
    /// The frame's last bytes, which follow the skipped ones.
    pub tail: &'a [u8],
}

impl Skipped<'_> {
    /// The frame's bytes after its head: the skipped ones and the tail.
    fn after_head(&self) -> usize {
        self.len + self.tail.len()
    }
}

/// [`dissect_kept`] needed bytes that the reader skipped: a header that runs past the
/// head, or a segment that ends among the skipped bytes (a trailer longer than the
/// tail). The frame must be dissected whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotKept;

/// Dissects a long frame of which only `frame.data` (its first bytes), the sum of the
/// `skipped` ones and its tail were kept, with the same result, payloads aside, as
/// [`dissect`] of the whole frame would give: every header field, length, note and
/// checksum verdict. The packet has empty payloads, as from
/// [`Packet::without_payload`].
///
/// # Errors
/// [`NotKept`] when the frame needs the skipped bytes themselves (see there).
pub fn dissect_kept(
    link: LinkType,
    frame: &Frame<'_>,
    skipped: Skipped<'_>,
) -> Result<Packet<'static>, NotKept> {
    let mut out = Dissection::new(frame, None, Some(skipped));
    if let Err(reason) = dissect_link(link, frame.data, &mut out) {
        out.note(reason);
    }
    if out.not_kept {
        return Err(NotKept);
    }
    Ok(out.packet.without_payload())
}

/// [`dissect`], filling `options` with the TCP options in header order when asked to.
fn dissect_into<'a>(
    link: LinkType,
    frame: &Frame<'a>,
    options: Option<&mut Vec<TcpOption>>,
) -> Packet<'a> {
    let mut out = Dissection::new(frame, options, None);
    if let Err(reason) = dissect_link(link, frame.data, &mut out) {
        out.note(reason);
    }
    out.packet
}

/// The packet being filled in, layer by layer.
struct Dissection<'a, 'o> {
    packet: Packet<'a>,
    /// Where to list the TCP options in header order, for the callers that print them.
    options: Option<&'o mut Vec<TcpOption>>,
    /// The frame was longer on the wire than what was captured (snap length).
    cut_by_snaplen: bool,
    /// For [`dissect_kept`]: what follows the frame's bytes in hand.
    skipped: Option<Skipped<'a>>,
    /// For [`dissect_kept`]: a skipped byte was needed.
    not_kept: bool,
}

impl<'a, 'o> Dissection<'a, 'o> {
    fn new(
        frame: &Frame<'a>,
        options: Option<&'o mut Vec<TcpOption>>,
        skipped: Option<Skipped<'a>>,
    ) -> Self {
        let captured = frame.data.len() + skipped.map_or(0, |s| s.after_head());
        Dissection {
            packet: Packet::default(),
            options,
            cut_by_snaplen: usize::try_from(frame.wire_len).unwrap_or(usize::MAX) > captured,
            skipped,
            not_kept: false,
        }
    }

    /// Records a problem; the first one is the one reported.
    fn note(&mut self, reason: String) {
        self.packet.malformed.get_or_insert(reason);
    }

    /// Captured bytes that are not in the slice being read: those after a kept head.
    fn beyond_head(&self) -> usize {
        self.skipped.map_or(0, |s| s.after_head())
    }

    /// A header was cut short where the head ends: with skipped bytes after it, that is
    /// the reader's cut, not the frame's (the frame must be read whole).
    fn cut(&mut self, reason: String) -> String {
        if self.skipped.is_some() {
            self.not_kept = true;
        }
        reason
    }
}

/// What the link layer carries.
enum Network<'a> {
    /// An IP packet, and the version the link layer announced (`None`: the version
    /// nibble decides, as on LINKTYPE_RAW).
    Ip {
        bytes: &'a [u8],
        announced: Option<u8>,
    },
    /// Something other than IP.
    NotIp,
}

/// The first `N` bytes of `bytes` as an array, or "`layer` cut: x of N bytes". After
/// this check, reading the array at constant positions cannot go out of bounds.
fn fixed<'b, const N: usize>(bytes: &'b [u8], layer: &str) -> Result<&'b [u8; N], String> {
    bytes
        .get(..N)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| format!("{layer} cut: {} of {N} bytes", bytes.len()))
}

/// The bytes after the first `n` (empty if there are fewer).
fn after(bytes: &[u8], n: usize) -> &[u8] {
    bytes.get(n..).unwrap_or(&[])
}

fn be16(high: u8, low: u8) -> u16 {
    u16::from_be_bytes([high, low])
}

/// Reads the link-layer header, then hands the rest to the IP layer.
fn dissect_link<'a>(
    link: LinkType,
    data: &'a [u8],
    out: &mut Dissection<'a, '_>,
) -> Result<(), String> {
    let (network, loopback) = match link {
        LinkType::Ethernet => ethernet(data)?,
        LinkType::LinuxSll => {
            let header: &[u8; SLL_HEADER_LEN] = fixed(data, "Linux cooked (SLL) header")?;
            let arphrd = be16(header[2], header[3]);
            let protocol = be16(header[14], header[15]);
            let payload = after(data, SLL_HEADER_LEN);
            (by_ethertype(protocol, payload), arphrd == ARPHRD_LOOPBACK)
        }
        LinkType::LinuxSll2 => {
            let header: &[u8; SLL2_HEADER_LEN] = fixed(data, "Linux cooked v2 (SLL2) header")?;
            let protocol = be16(header[0], header[1]);
            let arphrd = be16(header[8], header[9]);
            let payload = after(data, SLL2_HEADER_LEN);
            (by_ethertype(protocol, payload), arphrd == ARPHRD_LOOPBACK)
        }
        LinkType::Null => {
            let header: &[u8; FAMILY_HEADER_LEN] = fixed(data, "NULL (BSD loopback) header")?;
            // The family is in the byte order of the host that captured, which the file
            // does not record. Families are small numbers, so at most one reading is one
            // we know.
            let version = ip_version_of_family(u32::from_le_bytes(*header))
                .or_else(|| ip_version_of_family(u32::from_be_bytes(*header)));
            (by_version(version, after(data, FAMILY_HEADER_LEN)), true)
        }
        LinkType::Loop => {
            let header: &[u8; FAMILY_HEADER_LEN] = fixed(data, "LOOP (OpenBSD loopback) header")?;
            let version = ip_version_of_family(u32::from_be_bytes(*header));
            (by_version(version, after(data, FAMILY_HEADER_LEN)), true)
        }
        LinkType::Raw => (
            Network::Ip {
                bytes: data,
                announced: None,
            },
            false,
        ),
        LinkType::Ipv4 => (
            Network::Ip {
                bytes: data,
                announced: Some(4),
            },
            false,
        ),
        LinkType::Ipv6 => (
            Network::Ip {
                bytes: data,
                announced: Some(6),
            },
            false,
        ),
        LinkType::Unknown(number) => return Err(format!("unsupported link type {number}")),
    };
    match network {
        Network::Ip { bytes, announced } => dissect_ip(bytes, announced, loopback, out),
        Network::NotIp => Ok(()),
    }
}

/// Ethernet II with up to two VLAN tags. Returns what it carries and whether it looks
/// like Linux's loopback (both MAC addresses zero).
fn ethernet(data: &[u8]) -> Result<(Network<'_>, bool), String> {
    let header: &[u8; ETHERNET_HEADER_LEN] = fixed(data, "Ethernet header")?;
    let loopback = header[..ETHERNET_ADDRESSES_LEN]
        .iter()
        .all(|&byte| byte == 0);
    let mut ethertype = be16(header[12], header[13]);
    let mut rest = after(data, ETHERNET_HEADER_LEN);
    let mut tags = 0;
    while matches!(
        ethertype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_LEGACY
    ) {
        if tags == MAX_VLAN_TAGS {
            return Err(format!("Ethernet: more than {MAX_VLAN_TAGS} VLAN tags"));
        }
        let tag: &[u8; VLAN_TAG_LEN] = fixed(rest, "VLAN tag")?;
        ethertype = be16(tag[2], tag[3]);
        rest = after(rest, VLAN_TAG_LEN);
        tags += 1;
    }
    Ok((by_ethertype(ethertype, rest), loopback))
}

fn by_ethertype(ethertype: u16, payload: &[u8]) -> Network<'_> {
    match ethertype {
        ethertype::IPV4 => by_version(Some(4), payload),
        ethertype::IPV6 => by_version(Some(6), payload),
        _ => Network::NotIp,
    }
}

fn by_version(version: Option<u8>, payload: &[u8]) -> Network<'_> {
    match version {
        Some(version) => Network::Ip {
            bytes: payload,
            announced: Some(version),
        },
        None => Network::NotIp,
    }
}

fn ip_version_of_family(family: u32) -> Option<u8> {
    if family == AF_INET {
        Some(4)
    } else if AF_INET6.contains(&family) {
        Some(6)
    } else {
        None
    }
}

/// Where the transport layer sits and what is needed to verify its checksum.
struct TransportContext<'a> {
    src: IpAddr,
    dst: IpAddr,
    /// The transport layer's length according to the IP header.
    len: usize,
    /// How many of its bytes were captured (at most `len`).
    captured: usize,
    /// The transport bytes in hand: all those captured, or for [`dissect_kept`] those
    /// in the head, the rest being `skipped` and its tail.
    bytes: &'a [u8],
    skipped: Option<Skipped<'a>>,
    /// The checksum can be verified: the segment is not a fragment, and was captured
    /// whole (checked again against `len` by each protocol).
    verifiable: bool,
    /// The capture is loopback-like: a wrong checksum is not evidence of corruption.
    loopback: bool,
}

impl TransportContext<'_> {
    /// Whether the head ends inside the transport layer (only for [`dissect_kept`]).
    fn cut_by_head(&self) -> bool {
        self.bytes.len() < self.captured
    }

    /// The one's-complement sum of the first `end` transport bytes (at most
    /// `captured`), or `None` when they end among skipped bytes. Past a kept head the
    /// sum is put together from the head's bytes, the skipped bytes' sum and the tail's.
    fn sum_of_first(&self, end: usize) -> Option<u64> {
        let in_head = self.bytes.len();
        if end <= in_head {
            return self.bytes.get(..end).map(|bytes| add_words(0, bytes));
        }
        let skipped = self.skipped?;
        let tail = skipped
            .tail
            .get(..end.checked_sub(in_head + skipped.len)?)?;
        let mut sum = add_words(0, self.bytes);
        sum = add_at_offset(sum, u64::from(skipped.sum), in_head);
        Some(add_at_offset(
            sum,
            add_words(0, tail),
            in_head + skipped.len,
        ))
    }
}

/// Reads the IPv4 or IPv6 header (with etherparse), fills `out.packet.ip`, then the
/// transport layer.
fn dissect_ip<'a>(
    bytes: &'a [u8],
    announced: Option<u8>,
    loopback: bool,
    out: &mut Dissection<'a, '_>,
) -> Result<(), String> {
    let version = bytes.first().map(|byte| byte >> 4);
    match (announced, version) {
        (Some(announced), None) => {
            let minimum = if announced == 4 {
                IPV4_MIN_HEADER_LEN
            } else {
                IPV6_HEADER_LEN
            };
            return Err(format!("IPv{announced} header cut: 0 of {minimum} bytes"));
        }
        (None, None) => return Err("IP header cut: the packet is empty".to_string()),
        (Some(announced), Some(version)) if announced != version => {
            return Err(format!(
                "IPv{announced} header: the link layer announced IPv{announced}, the version field says {version}"
            ));
        }
        _ => {}
    }
    let (slice, extension_error) = LaxIpSlice::from_slice(bytes).map_err(|error| match error {
        LaxHeaderSliceError::Len(len) => {
            let layer = if version == Some(6) { "IPv6" } else { "IPv4" };
            out.cut(format!(
                "{layer} header cut: {} of {} bytes",
                len.len, len.required_len
            ))
        }
        LaxHeaderSliceError::Content(IpHeaderError::UnsupportedIpVersion { version_number }) => {
            format!("IP header: version {version_number} is neither 4 nor 6")
        }
        LaxHeaderSliceError::Content(IpHeaderError::Ipv4HeaderLengthSmallerThanHeader { ihl }) => {
            format!(
                "IPv4 header: header length {} bytes is less than the {IPV4_MIN_HEADER_LEN}-byte minimum",
                u16::from(ihl) * 4
            )
        }
    })?;
    // What was captured of the packet, including any bytes after a kept head.
    let captured_ip_len = bytes.len() + out.beyond_head();
    let (mut info, payload, announced_len) = match &slice {
        LaxIpSlice::Ipv4(ipv4) => {
            let header = ipv4.header();
            let auth_len = ipv4.extensions().auth.map_or(0, |auth| auth.slice().len());
            let header_len = header.slice().len() + auth_len;
            let fragment_offset = u32::from(header.fragments_offset().byte_offset());
            let info = IpInfo {
                version: 4,
                src: IpAddr::V4(header.source_addr()),
                dst: IpAddr::V4(header.destination_addr()),
                protocol: ipv4.payload_ip_number().0,
                ttl: header.ttl(),
                header_len: u16::try_from(header_len).unwrap_or(u16::MAX),
                // Replaced below by the length actually used.
                total_len: 0,
                ident: u32::from(header.identification()),
                fragment: (fragment_offset > 0 || header.more_fragments()).then_some(
                    FragmentInfo {
                        offset: fragment_offset,
                        more: header.more_fragments(),
                    },
                ),
            };
            (
                info,
                ipv4.payload().payload,
                usize::from(header.total_len()),
            )
        }
        LaxIpSlice::Ipv6(ipv6) => {
            let header = ipv6.header();
            let header_len = header.slice().len() + ipv6.extensions().slice().len();
            let fragment =
                ipv6.extensions()
                    .clone()
                    .into_iter()
                    .find_map(|extension| match extension {
                        Ipv6ExtensionSlice::Fragment(fragment) => Some(fragment),
                        _ => None,
                    });
            let payload_length = usize::from(header.payload_length());
            let info = IpInfo {
                version: 6,
                src: IpAddr::V6(header.source_addr()),
                dst: IpAddr::V6(header.destination_addr()),
                protocol: ipv6.payload().ip_number.0,
                ttl: header.hop_limit(),
                header_len: u16::try_from(header_len).unwrap_or(u16::MAX),
                // Replaced below by the length actually used.
                total_len: 0,
                ident: fragment.as_ref().map_or(0, |f| f.identification()),
                fragment: fragment
                    .as_ref()
                    .filter(|f| f.is_fragmenting_payload())
                    .map(|f| FragmentInfo {
                        offset: u32::from(f.fragment_offset().byte_offset()),
                        more: f.more_fragments(),
                    }),
            };
            // A payload length of 0 means a jumbogram, or a large segment captured
            // before the kernel split it (TSO): the captured bytes are all we have.
            let announced = if payload_length == 0 {
                0
            } else {
                40 + payload_length
            };
            (info, ipv6.payload().payload, announced)
        }
    };
    let header_len = usize::from(info.header_len);
    let version = info.version;
    // A total length of 0 is what Linux records for large TCP segments captured before
    // segmentation offload splits them (Wireshark's "TSO" case): use what was captured.
    let total_len = if announced_len == 0 {
        captured_ip_len
    } else {
        announced_len
    };
    info.total_len = u32::try_from(total_len).unwrap_or(u32::MAX);
    let is_later_fragment = info.fragment.is_some_and(|f| f.offset > 0);
    let is_fragment = info.fragment.is_some();
    let (src, dst, protocol) = (info.src, info.dst, info.protocol);
    out.packet.ip = Some(info);

    if total_len < header_len {
        return Err(format!(
            "IPv{version} total length {total_len} is less than its header ({header_len} bytes)"
        ));
    }
    if let Some((error, layer)) = extension_error {
        return Err(match error {
            Ipv6ExtError::Len(len) => out.cut(format!(
                "IPv{version} extension header ({layer}) cut: {} of {} bytes",
                len.len, len.required_len
            )),
            Ipv6ExtError::Content(content) => format!("IPv{version} extension header: {content}"),
        });
    }
    if total_len > captured_ip_len && !out.cut_by_snaplen {
        // Not a snap-length cut: the frame itself is shorter than IP says.
        out.note(format!(
            "IPv{version} length {total_len} exceeds the {captured_ip_len} bytes in the frame"
        ));
    }
    if is_later_fragment {
        out.packet.transport = Transport::Fragment;
        return Ok(());
    }
    let context = TransportContext {
        src,
        dst,
        len: total_len - header_len,
        captured: total_len.min(captured_ip_len).saturating_sub(header_len),
        bytes: payload,
        skipped: out.skipped,
        verifiable: !is_fragment,
        loopback,
    };
    match protocol {
        PROTOCOL_TCP => dissect_tcp(&context, out),
        PROTOCOL_UDP => dissect_udp(&context, is_fragment, out),
        other => {
            out.packet.transport = Transport::Other(other);
            Ok(())
        }
    }
}

/// Reads a TCP header:
///
/// ```text
///  0               8               16              24             32
/// +---------------+---------------+---------------+---------------+
/// |          source port          |       destination port        |
/// +---------------+---------------+---------------+---------------+
/// |                        sequence number                        |
/// +---------------+---------------+---------------+---------------+
/// |                    acknowledgment number                      |
/// +-------+-------+---------------+---------------+---------------+
/// | offset| rsvd  |C E U A P R S F|            window             |
/// +-------+-------+---------------+---------------+---------------+
/// |           checksum            |        urgent pointer         |
/// +---------------+---------------+---------------+---------------+
/// |            options (offset * 4 - 20 bytes)    |    payload ...
/// ```
fn dissect_tcp<'a>(
    context: &TransportContext<'a>,
    out: &mut Dissection<'a, '_>,
) -> Result<(), String> {
    let bytes = context.bytes;
    let header: &[u8; TCP_MIN_HEADER_LEN] = match fixed(bytes, "TCP header") {
        Ok(header) => header,
        Err(reason) if context.cut_by_head() => return Err(out.cut(reason)),
        Err(reason) => return Err(reason),
    };
    let header_len = usize::from(header[12] >> 4) * 4;
    let mut segment = TcpSegment {
        src_port: be16(header[0], header[1]),
        dst_port: be16(header[2], header[3]),
        seq: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        ack: u32::from_be_bytes([header[8], header[9], header[10], header[11]]),
        flags: be16(header[12], header[13]) & TCP_FLAGS_MASK,
        header_len: u8::try_from(header_len).unwrap_or(u8::MAX),
        window: be16(header[14], header[15]),
        options: TcpOptions::default(),
        payload_len: 0,
        payload: &[],
        checksum: Checksum::NotVerified,
    };
    let found = be16(header[TCP_CHECKSUM_OFFSET], header[TCP_CHECKSUM_OFFSET + 1]);
    if header_len < TCP_MIN_HEADER_LEN {
        out.packet.transport = Transport::Tcp(segment);
        return Err(format!(
            "TCP header: data offset {} ({header_len} bytes) is less than the {TCP_MIN_HEADER_LEN}-byte minimum",
            header_len / 4
        ));
    }
    if header_len > context.len {
        out.packet.transport = Transport::Tcp(segment);
        return Err(format!(
            "TCP header length {header_len} exceeds the {} bytes IP leaves for the segment",
            context.len
        ));
    }
    let option_bytes = bytes.get(TCP_MIN_HEADER_LEN..header_len);
    let option_bytes_read = option_bytes.unwrap_or(after(bytes, TCP_MIN_HEADER_LEN));
    let option_error = match out.options.as_deref_mut() {
        Some(list) => {
            let error = walk_tcp_options(option_bytes_read, &mut |option| list.push(option));
            segment.options = summarize_options(list);
            error
        }
        None => {
            let summary = &mut segment.options;
            walk_tcp_options(option_bytes_read, &mut |option| summarize(summary, option))
        }
    };
    segment.payload_len = u32::try_from(context.len - header_len).unwrap_or(u32::MAX);
    // `bytes` holds at most what IP announced, so the payload never reaches padding.
    segment.payload = after(bytes, header_len);
    if context.verifiable && context.captured == context.len {
        segment.checksum = verify_checksum(context, PROTOCOL_TCP, context.len, found, false, out);
    }
    out.packet.transport = Transport::Tcp(segment);
    if option_bytes.is_none() {
        let reason = format!(
            "TCP options cut: {} of {} bytes",
            bytes.len().saturating_sub(TCP_MIN_HEADER_LEN),
            header_len - TCP_MIN_HEADER_LEN
        );
        return Err(if context.cut_by_head() {
            out.cut(reason)
        } else {
            reason
        });
    }
    match option_error {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// Reads a UDP header:
///
/// ```text
///  0               8               16              24             32
/// +---------------+---------------+---------------+---------------+
/// |          source port          |       destination port        |
/// +---------------+---------------+---------------+---------------+
/// |     length (header + data)    |           checksum            |
/// +---------------+---------------+---------------+---------------+
/// |                          payload ...
/// ```
fn dissect_udp<'a>(
    context: &TransportContext<'a>,
    is_fragment: bool,
    out: &mut Dissection<'a, '_>,
) -> Result<(), String> {
    let bytes = context.bytes;
    let header: &[u8; UDP_HEADER_LEN] = match fixed(bytes, "UDP header") {
        Ok(header) => header,
        Err(reason) if context.cut_by_head() => return Err(out.cut(reason)),
        Err(reason) => return Err(reason),
    };
    let length_field = be16(header[4], header[5]);
    let found = be16(header[UDP_CHECKSUM_OFFSET], header[UDP_CHECKSUM_OFFSET + 1]);
    let length = usize::from(length_field);
    // The length field must fit in what IP carries; in a first fragment it describes
    // the whole datagram, which continues in the next fragments.
    let consistent = is_fragment || (UDP_HEADER_LEN..=context.len).contains(&length);
    let end = if is_fragment || !consistent {
        context.len
    } else {
        length
    };
    let checksum = if context.src.is_ipv4() && found == 0 {
        Checksum::Zero
    } else if context.verifiable && consistent && context.captured >= length {
        verify_checksum(context, PROTOCOL_UDP, length, found, true, out)
    } else {
        Checksum::NotVerified
    };
    out.packet.transport = Transport::Udp(UdpDatagram {
        src_port: be16(header[0], header[1]),
        dst_port: be16(header[2], header[3]),
        length_field,
        ip_len: u32::try_from(context.len).unwrap_or(u32::MAX),
        payload: bytes
            .get(UDP_HEADER_LEN..end.min(bytes.len()))
            .unwrap_or(&[]),
        checksum,
    });
    if consistent {
        Ok(())
    } else if length < UDP_HEADER_LEN {
        Err(format!(
            "UDP length field {length} is less than its 8-byte header"
        ))
    } else {
        Err(format!(
            "UDP length field {length} exceeds the {} bytes IP leaves for it",
            context.len
        ))
    }
}

/// Walks the TCP options (kind, length, value; kinds 0 and 1 are a single byte) and
/// returns those read, with the reason it stopped early if the options are broken.
pub fn parse_tcp_options(bytes: &[u8]) -> (Vec<TcpOption>, Option<String>) {
    let mut options = Vec::new();
    let error = walk_tcp_options(bytes, &mut |option| options.push(option));
    (options, error)
}

/// Reads TCP options one by one, handing each to `visit`; stops at the end-of-list
/// option or at the first option it cannot read, and says why. [`parse_tcp_options`]
/// collects them; [`dissect`] only keeps what [`TcpOptions`] holds, without building a
/// list (a list per segment would be an allocation per packet).
fn walk_tcp_options(bytes: &[u8], visit: &mut dyn FnMut(TcpOption)) -> Option<String> {
    use option_kind::*;
    let mut at = 0;
    while let Some(&kind) = bytes.get(at) {
        match kind {
            END => {
                visit(TcpOption::End);
                break;
            }
            NOP => {
                visit(TcpOption::Nop);
                at += 1;
                continue;
            }
            _ => {}
        }
        let Some(&len) = bytes.get(at + 1) else {
            return Some(format!("TCP option {kind} cut: no length byte"));
        };
        if len < 2 {
            return Some(format!("TCP option {kind} has length {len}, less than 2"));
        }
        let Some(value) = bytes.get(at + 2..at + usize::from(len)) else {
            return Some(format!(
                "TCP option {kind} cut: {} of {len} bytes",
                bytes.len() - at
            ));
        };
        let option = match (kind, value) {
            (MSS, &[high, low]) => TcpOption::Mss(be16(high, low)),
            (WINDOW_SCALE, &[shift]) => TcpOption::WindowScale(shift),
            (SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (SACK, blocks) if !blocks.is_empty() && blocks.len() % 8 == 0 => TcpOption::Sack(
                blocks
                    .chunks_exact(8)
                    .filter_map(|block| match *block {
                        [a, b, c, d, e, f, g, h] => Some((
                            u32::from_be_bytes([a, b, c, d]),
                            u32::from_be_bytes([e, f, g, h]),
                        )),
                        _ => None,
                    })
                    .collect(),
            ),
            (TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps(
                u32::from_be_bytes([a, b, c, d]),
                u32::from_be_bytes([e, f, g, h]),
            ),
            (MSS | WINDOW_SCALE | SACK_PERMITTED | SACK | TIMESTAMPS, _) => {
                return Some(format!("TCP option {kind} has a wrong length ({len})"));
            }
            _ => TcpOption::Other { kind, len },
        };
        visit(option);
        at += usize::from(len);
    }
    None
}

/// The options the views show, gathered from the list.
fn summarize_options(options: &[TcpOption]) -> TcpOptions {
    let mut summary = TcpOptions::default();
    for option in options {
        summarize(&mut summary, option.clone());
    }
    summary
}

/// Adds one option to the summary the views show.
fn summarize(summary: &mut TcpOptions, option: TcpOption) {
    match option {
        TcpOption::Mss(mss) => summary.mss = Some(mss),
        TcpOption::WindowScale(shift) => summary.window_scale = Some(shift),
        TcpOption::SackPermitted => summary.sack_permitted = true,
        TcpOption::Sack(blocks) => summary.sack_blocks.extend_from_slice(&blocks),
        TcpOption::Timestamps(value, echo) => summary.timestamps = Some((value, echo)),
        TcpOption::End | TcpOption::Nop | TcpOption::Other { .. } => {}
    }
}

/// Verifies the checksum of a whole TCP or UDP segment, the first `len` transport
/// bytes, whose field holds `found`, applying the loopback/offload rule of the module
/// documentation.
fn verify_checksum(
    context: &TransportContext<'_>,
    protocol: u8,
    len: usize,
    found: u16,
    is_udp: bool,
    out: &mut Dissection<'_, '_>,
) -> Checksum {
    let pseudo = pseudo_header_sum(context.src, context.dst, protocol, len);
    let Some(segment_sum) = context.sum_of_first(len) else {
        // The segment ends among bytes the staged reader skipped.
        out.not_kept = true;
        return Checksum::NotVerified;
    };
    let total = add_with_carry(pseudo, segment_sum);
    // Summing the data with a correct checksum in it gives all ones (RFC 1071).
    if fold(total) == 0xFFFF {
        return Checksum::Good;
    }
    // The checksum field is one aligned 16-bit word, so removing it from the sum is
    // subtracting it, which in one's-complement arithmetic is adding its complement.
    let mut expected = !fold(add_with_carry(total, u64::from(!found)));
    if is_udp && expected == 0 {
        // UDP sends a computed 0 as 0xFFFF: 0 means "no checksum" (RFC 768).
        expected = 0xFFFF;
    }
    let partial = fold(pseudo);
    if context.loopback || found == partial || found == !partial {
        Checksum::NotVerified
    } else {
        Checksum::Bad { found, expected }
    }
}

#[cfg(test)]
mod tests;
