//! Lab 4, conversations: groups dissected packets into TCP connections and UDP
//! conversations, numbers them as Wireshark does (`tcp.stream`, `udp.stream`), and
//! keeps per-flow facts: packets and bytes each way, Zeek's `conn_state` and
//! `history`, the three-way handshake, the teardown and the throughput, plus the
//! capture-wide totals the `summary` view prints.
//!
//! Pure logic, no I/O: feed it [`Frame`] + [`Packet`] pairs with
//! [`Analyzer::observe`]. Memory grows with the number of flows, never with the number
//! of packets: per-segment facts are returned by `observe` and not kept.
//!
//! ```text
//!   client (SYN sender)                         server
//!        │ ── SYN        seq=ISN_c ──────────────▶ │
//!        │ ◀─ SYN, ACK   seq=ISN_s ack=ISN_c+1 ─── │   handshake
//!        │ ── ACK        ack=ISN_s+1 ────────────▶ │
//!        │ ══ data ═════════════════════════════▶ │
//!        │ ── FIN ───────────────────────────────▶ │
//!        │ ◀─ ACK ── ◀─ FIN ──                     │   teardown (four-way)
//!        │ ── ACK ───────────────────────────────▶ │
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use super::packet::{tcp_flags, Checksum, Frame, IpInfo, LinkType, Packet, TcpSegment, Transport};
use super::tcp::{Direction, Marks, SegmentInfo, TcpTracker};

/// IP protocol numbers counted separately in the totals.
const IPPROTO_ICMP: u8 = 1;
/// ICMP for IPv6.
const IPPROTO_ICMPV6: u8 = 58;
/// The UDP header: ports, length, checksum.
const UDP_HEADER_LEN: u32 = 8;

/// What the analyzer made of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// A TCP segment, with its sequence analysis.
    Tcp(SegmentInfo),
    /// A UDP datagram.
    Udp(DatagramInfo),
    /// Anything else (ARP, ICMP, later IP fragments, malformed frames).
    Other,
}

/// Where a UDP datagram belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramInfo {
    /// The conversation's index, numbered from 0 in order of first appearance, as
    /// Wireshark's `udp.stream`.
    pub stream: u64,
    /// Client (first sender) to server, or back.
    pub direction: Direction,
}

/// A conversation's key: both endpoints, smaller first, so both directions meet.
///
/// The addresses are kept as plain numbers (an IPv4 address in the low 32 bits), not
/// as `SocketAddr`s: every packet builds, hashes and compares one, and integers are
/// the cheapest things to hash and compare (`SocketAddr` also hashes its enum tag and
/// IPv6's flow label and scope id, which a flow key never needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    addresses: [u128; 2],
    ports: [u16; 2],
    /// IPv4 and IPv6 flows never meet, even when the numbers look alike (::1 and 0.0.0.1).
    ipv6: bool,
}

/// The flow tables: a [`FlowKey`] to an index into the report's list.
type FlowTable = HashMap<FlowKey, usize, BuildHasherDefault<FlowHasher>>;

/// The flow tables' hasher: FxHash's multiply-and-rotate, a few cycles a word, where
/// the standard library's SipHash took 7% of a whole `socklab analyze summary` run
/// (every packet looks its flow up). SipHash resists inputs crafted to collide; here
/// the input is a capture file its user chose, and the worst a crafted one can do is
/// make its own analysis slow.
#[derive(Debug, Default, Clone, Copy)]
struct FlowHasher(u64);

impl FlowHasher {
    /// FxHash's constant (from Firefox and rustc): odd, with well-spread bits.
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FlowHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FlowKey {
    fn new(a: SocketAddr, b: SocketAddr) -> FlowKey {
        let ipv6 = a.is_ipv6();
        let a = (address_bits(a.ip()), a.port());
        let b = (address_bits(b.ip()), b.port());
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            addresses: [low.0, high.0],
            ports: [low.1, high.1],
            ipv6,
        }
    }
}

/// An address as one number: IPv4's 32 bits, or IPv6's 128.
fn address_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Hash for FlowKey {
    /// Five 64-bit words: the two addresses' halves, then both ports and the family.
    fn hash<H: Hasher>(&self, state: &mut H) {
        for address in self.addresses {
            state.write_u64(address as u64); // the low half (truncation intended)
            state.write_u64((address >> 64) as u64);
        }
        let [low, high] = self.ports;
        state.write_u64(u64::from(low) | u64::from(high) << 16 | u64::from(self.ipv6) << 32);
    }
}

/// Counts and times of one flow, per direction (index with [`Direction::index`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStats {
    /// The client: the SYN sender (TCP), else the first sender.
    pub client: SocketAddr,
    /// The server.
    pub server: SocketAddr,
    /// Frame number of the flow's first packet.
    pub first_frame: u64,
    /// Time of the first packet, µs since the epoch.
    pub first_us: i64,
    /// Time of the last packet, µs since the epoch.
    pub last_us: i64,
    /// Packets each way.
    pub packets: [u64; 2],
    /// Bytes each way, counted as frame lengths on the wire (as `tshark -z conv` does).
    pub bytes: [u64; 2],
    /// Transport payload bytes each way (retransmitted data counted again).
    pub payload_bytes: [u64; 2],
    /// Time of the first and last packet carrying payload, each way.
    pub data_times_us: [Option<(i64, i64)>; 2],
}

impl FlowStats {
    fn new(client: SocketAddr, server: SocketAddr, frame: &Frame<'_>) -> FlowStats {
        FlowStats {
            client,
            server,
            first_frame: frame.number,
            first_us: frame.time_us,
            last_us: frame.time_us,
            packets: [0; 2],
            bytes: [0; 2],
            payload_bytes: [0; 2],
            data_times_us: [None; 2],
        }
    }

    fn count(&mut self, direction: Direction, frame: &Frame<'_>, payload_len: u32) {
        let i = direction.index();
        self.last_us = self.last_us.max(frame.time_us);
        self.packets[i] += 1;
        self.bytes[i] += u64::from(frame.wire_len);
        self.payload_bytes[i] += u64::from(payload_len);
        if payload_len > 0 {
            let t = frame.time_us;
            self.data_times_us[i] = Some(match self.data_times_us[i] {
                None => (t, t),
                Some((first, last)) => (first, last.max(t)),
            });
        }
    }

    /// Which way a packet from `src` goes.
    fn direction_of(&self, src: SocketAddr) -> Direction {
        if src == self.client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }

    /// Time from the first to the last packet, µs.
    pub fn duration_us(&self) -> i64 {
        self.last_us - self.first_us
    }

    /// Payload bytes per second one way: payload bytes / (last − first data time).
    /// `None` with fewer than two data packets at different times.
    pub fn throughput_bytes_per_sec(&self, direction: Direction) -> Option<f64> {
        let i = direction.index();
        let (first, last) = self.data_times_us[i]?;
        if last <= first {
            return None;
        }
        Some(self.payload_bytes[i] as f64 / ((last - first) as f64 / 1e6))
    }
}

/// Zeek's per-endpoint TCP state, from which [`ConnState`] is derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointState {
    /// Nothing sent yet.
    Inactive,
    /// Sent a SYN.
    SynSent,
    /// Sent a SYN-ACK.
    SynAckSent,
    /// Active, but its SYN was never seen (the capture started mid-connection).
    Partial,
    /// Handshake done.
    Established,
    /// Sent a FIN.
    Closed,
    /// Sent a RST.
    Reset,
}

impl EndpointState {
    fn inactive(self) -> bool {
        matches!(self, EndpointState::Inactive | EndpointState::Partial)
    }
}

/// Zeek's `conn_state`: how far a connection got, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// A SYN, no reply.
    S0,
    /// Established, not terminated.
    S1,
    /// Established and closed normally (both FINs); for UDP: both sides sent.
    SF,
    /// The SYN was answered with a RST: rejected.
    Rej,
    /// Established; the client sent a FIN, no FIN back.
    S2,
    /// Established; the server sent a FIN, no FIN back.
    S3,
    /// Established; the client aborted with a RST.
    Rsto,
    /// Established; the server aborted with a RST.
    Rstr,
    /// The client sent a SYN then a RST; no SYN-ACK seen.
    Rstos0,
    /// The server sent a SYN-ACK then a RST; no SYN seen.
    Rstrh,
    /// The client sent a SYN then a FIN; no SYN-ACK seen (half-open).
    Sh,
    /// The server sent a SYN-ACK then a FIN; no SYN seen.
    Shr,
    /// None of the above: e.g. mid-stream traffic without a SYN.
    Oth,
}

impl ConnState {
    /// Zeek's spelling (`S0`, `SF`, `REJ`, `RSTOS0`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::S0 => "S0",
            ConnState::S1 => "S1",
            ConnState::SF => "SF",
            ConnState::Rej => "REJ",
            ConnState::S2 => "S2",
            ConnState::S3 => "S3",
            ConnState::Rsto => "RSTO",
            ConnState::Rstr => "RSTR",
            ConnState::Rstos0 => "RSTOS0",
            ConnState::Rstrh => "RSTRH",
            ConnState::Sh => "SH",
            ConnState::Shr => "SHR",
            ConnState::Oth => "OTH",
        }
    }

    /// What the state means, for `--explain`.
    pub fn meaning(self) -> &'static str {
        match self {
            ConnState::S0 => "connection attempt seen, no reply",
            ConnState::S1 => "established, not terminated",
            ConnState::SF => "normal establishment and termination",
            ConnState::Rej => "connection attempt rejected (SYN answered by RST)",
            ConnState::S2 => "established, client closed, no close from the server",
            ConnState::S3 => "established, server closed, no close from the client",
            ConnState::Rsto => "established, client aborted (RST)",
            ConnState::Rstr => "established, server aborted (RST)",
            ConnState::Rstos0 => "client sent SYN then RST, no SYN-ACK seen",
            ConnState::Rstrh => "server sent SYN-ACK then RST, no SYN seen",
            ConnState::Sh => "client sent SYN then FIN, no SYN-ACK seen",
            ConnState::Shr => "server sent SYN-ACK then FIN, no SYN seen",
            ConnState::Oth => "no SYN seen, mid-stream traffic",
        }
    }
}

/// Zeek's `history` string: one letter per kind of event, upper case from the client
/// (originator), lower case from the server.
///
/// S SYN, H SYN-ACK, A pure ACK, D data, F FIN, R RST, C bad checksum, T retransmitted
/// data, W zero window, I inconsistent (FIN+RST), Q multi-flag (SYN+FIN or SYN+RST),
/// ^ the direction was flipped (the first packet seen was a SYN-ACK). A, D, I, Q appear
/// once per direction; S, H, F, R again when their sequence number changes; C, T, W
/// again at 10, 100, 1000... occurrences (Zeek's logarithmic repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    letters: String,
    /// Letters recorded once, per direction, as bits of [`ONCE_LETTERS`].
    seen: [u8; 2],
    /// Last sequence number recorded for S, H, F, R, per direction.
    last_seq: [[Option<u32>; 4]; 2],
    /// Counts and next threshold for C, T, W, per direction.
    counts: [[(u64, u64); 3]; 2],
}

/// Letters Zeek records at most once per direction.
const ONCE_LETTERS: [char; 4] = ['A', 'D', 'I', 'Q'];
/// Letters repeated when the sequence number changes.
const SEQ_LETTERS: [char; 4] = ['S', 'H', 'F', 'R'];
/// Letters repeated logarithmically.
const COUNTED_LETTERS: [char; 3] = ['C', 'T', 'W'];
/// Zeek repeats a counted letter each time its count reaches ten times the last.
const HISTORY_REPEAT_FACTOR: u64 = 10;

impl History {
    /// The letters so far (e.g. `ShADadFf`).
    pub fn as_str(&self) -> &str {
        &self.letters
    }

    fn push(&mut self, direction: Direction, letter: char) {
        self.letters.push(match direction {
            Direction::ClientToServer => letter,
            Direction::ServerToClient => letter.to_ascii_lowercase(),
        });
    }

    fn once(&mut self, direction: Direction, letter: char) {
        let Some(bit) = ONCE_LETTERS.iter().position(|&l| l == letter) else {
            return;
        };
        let seen = &mut self.seen[direction.index()];
        if *seen & (1 << bit) == 0 {
            *seen |= 1 << bit;
            self.push(direction, letter);
        }
    }

    fn with_seq(&mut self, direction: Direction, letter: char, seq: u32) {
        let Some(slot) = SEQ_LETTERS.iter().position(|&l| l == letter) else {
            return;
        };
        let last = &mut self.last_seq[direction.index()][slot];
        if *last != Some(seq) {
            *last = Some(seq);
            self.push(direction, letter);
        }
    }

    fn counted(&mut self, direction: Direction, letter: char) {
        let Some(slot) = COUNTED_LETTERS.iter().position(|&l| l == letter) else {
            return;
        };
        let (count, threshold) = &mut self.counts[direction.index()][slot];
        *count += 1;
        if *threshold == 0 {
            *threshold = 1;
        }
        if *count == *threshold {
            *threshold *= HISTORY_REPEAT_FACTOR;
            self.push(direction, letter);
        }
    }
}

/// The TCP options a handshake view shows (the SACK blocks are left out: a SYN has
/// none, and this keeps the struct free of allocations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeOptions {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift.
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

/// One segment of the handshake or teardown, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeSegment {
    /// Frame number.
    pub frame: u64,
    /// Capture time, µs since the epoch.
    pub time_us: i64,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw acknowledgment number.
    pub ack: u32,
    /// Flags.
    pub flags: u16,
    /// The raw window.
    pub window: u16,
    /// Options.
    pub options: HandshakeOptions,
}

impl HandshakeSegment {
    fn new(frame: &Frame<'_>, segment: &TcpSegment<'_>) -> HandshakeSegment {
        HandshakeSegment {
            frame: frame.number,
            time_us: frame.time_us,
            seq: segment.seq,
            ack: segment.ack,
            flags: segment.flags,
            window: segment.window,
            options: HandshakeOptions {
                mss: segment.options.mss,
                window_scale: segment.options.window_scale,
                sack_permitted: segment.options.sack_permitted,
                timestamps: segment.options.timestamps,
            },
        }
    }
}

/// The three-way handshake of a connection, as far as it was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The client's first SYN.
    pub syn: Option<HandshakeSegment>,
    /// How many SYNs the client sent (more than one: the SYN was retransmitted).
    pub syn_count: u32,
    /// Time of the most recent SYN before the SYN-ACK, µs.
    last_syn_us: Option<i64>,
    /// The server's first SYN-ACK.
    pub syn_ack: Option<HandshakeSegment>,
    /// The client's first ACK after the SYN-ACK (no SYN flag).
    pub ack: Option<HandshakeSegment>,
    /// SYN → SYN-ACK, µs (from the most recent SYN, if the SYN was resent).
    pub syn_to_syn_ack_us: Option<i64>,
    /// SYN-ACK → ACK, µs.
    pub syn_ack_to_ack_us: Option<i64>,
    /// SYN → ACK, µs: Wireshark's `tcp.analysis.initial_rtt`.
    pub initial_rtt_us: Option<i64>,
}

impl Handshake {
    /// Whether the SYN-ACK acknowledges the client's ISN + 1 (`None`: not both seen).
    pub fn syn_ack_acks_isn(&self) -> Option<bool> {
        let (syn, syn_ack) = (self.syn?, self.syn_ack?);
        Some(syn_ack.ack == syn.seq.wrapping_add(1))
    }

    /// Whether the final ACK acknowledges the server's ISN + 1.
    pub fn ack_acks_isn(&self) -> Option<bool> {
        let (syn_ack, ack) = (self.syn_ack?, self.ack?);
        Some(ack.ack == syn_ack.seq.wrapping_add(1))
    }

    /// Whether all three segments were seen.
    pub fn is_complete(&self) -> bool {
        self.syn.is_some() && self.syn_ack.is_some() && self.ack.is_some()
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeardownKind {
    /// FIN, ACK, FIN, ACK: each side closes on its own.
    FourWay,
    /// FIN, FIN+ACK, ACK: the second FIN also acknowledges the first.
    ThreeWay,
    /// A RST ended it before both FINs.
    Reset,
    /// Only one side sent a FIN (so far).
    HalfClosed,
    /// No FIN, no RST: still open when the capture ended.
    None,
}

impl TeardownKind {
    /// A short name for tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TeardownKind::FourWay => "four-way",
            TeardownKind::ThreeWay => "three-way",
            TeardownKind::Reset => "reset",
            TeardownKind::HalfClosed => "half-closed",
            TeardownKind::None => "none",
        }
    }
}

/// A FIN or RST segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseSegment {
    /// Frame number.
    pub frame: u64,
    /// Capture time, µs.
    pub time_us: i64,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw sequence number after it (a FIN counts one).
    pub end_seq: u32,
    /// Flags.
    pub flags: u16,
}

/// The FINs and RST of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Teardown {
    /// The first FIN each way (index with [`Direction::index`]).
    pub fin: [Option<CloseSegment>; 2],
    /// The first frame from the other side acknowledging that FIN.
    pub fin_acked_in: [Option<u64>; 2],
    /// The first RST and who sent it.
    pub rst: Option<(CloseSegment, Direction)>,
}

impl Teardown {
    /// Which kind of close this was.
    pub fn kind(&self) -> TeardownKind {
        match self.fin {
            [Some(client), Some(server)] => {
                // The first FIN's ACK came in the other side's FIN segment.
                let (first, second) = if client.frame <= server.frame {
                    (0, server)
                } else {
                    (1, client)
                };
                if self.fin_acked_in[first] == Some(second.frame) {
                    TeardownKind::ThreeWay
                } else {
                    TeardownKind::FourWay
                }
            }
            _ if self.rst.is_some() => TeardownKind::Reset,
            [Some(_), None] | [None, Some(_)] => TeardownKind::HalfClosed,
            [None, None] => TeardownKind::None,
        }
    }
}

/// One TCP connection.
#[derive(Debug, Clone)]
pub struct TcpConnection {
    /// Wireshark's `tcp.stream`.
    pub stream: u64,
    /// Counts, times, endpoints.
    pub stats: FlowStats,
    /// Zeek's history.
    pub history: History,
    /// Segments marked as any kind of retransmission.
    pub retransmissions: u64,
    /// The handshake.
    pub handshake: Handshake,
    /// The teardown.
    pub teardown: Teardown,
    /// The smallest window each side advertised, scaled (K&R: "the minimum amount of
    /// buffer space advertised").
    pub min_window: [Option<u32>; 2],
    states: [EndpointState; 2],
    tracker: TcpTracker,
}

impl TcpConnection {
    fn new(stream: u64, src: SocketAddr, dst: SocketAddr, flags: u16, frame: &Frame<'_>) -> Self {
        // The client is the SYN sender; a capture starting with the SYN-ACK flips the
        // roles so the client is still the side that opened (Zeek's '^').
        let flipped = flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK;
        let (client, server) = if flipped { (dst, src) } else { (src, dst) };
        let mut history = History::default();
        if flipped {
            history.letters.push('^');
        }
        TcpConnection {
            stream,
            stats: FlowStats::new(client, server, frame),
            history,
            retransmissions: 0,
            handshake: Handshake::default(),
            teardown: Teardown::default(),
            min_window: [None; 2],
            states: [EndpointState::Inactive; 2],
            tracker: TcpTracker::new(),
        }
    }

    /// Zeek's connection state.
    pub fn conn_state(&self) -> ConnState {
        use EndpointState as E;
        let [os, rs] = self.states;
        if rs == E::Reset {
            if matches!(os, E::SynSent | E::SynAckSent)
                || (os == E::Reset && self.stats.payload_bytes == [0, 0])
            {
                ConnState::Rej
            } else if os.inactive() {
                ConnState::Rstrh
            } else {
                ConnState::Rstr
            }
        } else if os == E::Reset {
            if rs.inactive() {
                if self.history_is_syn_then_rst() {
                    ConnState::Rstos0
                } else {
                    ConnState::Oth
                }
            } else {
                ConnState::Rsto
            }
        } else if os == E::Closed && rs == E::Closed {
            ConnState::SF
        } else if os == E::Closed {
            if rs.inactive() {
                ConnState::Sh
            } else {
                ConnState::S2
            }
        } else if rs == E::Closed {
            if os.inactive() {
                ConnState::Shr
            } else {
                ConnState::S3
            }
        } else if os == E::SynSent && rs == E::Inactive {
            ConnState::S0
        } else if os == E::Established && rs == E::Established {
            ConnState::S1
        } else {
            ConnState::Oth
        }
    }

    /// Zeek's test for RSTOS0: the history matches `^?S[^HAFGIQ]*R`.
    fn history_is_syn_then_rst(&self) -> bool {
        let letters = self.history.as_str().trim_start_matches('^');
        let Some(rest) = letters.strip_prefix('S') else {
            return false;
        };
        for letter in rest.chars() {
            match letter {
                'R' => return true,
                'H' | 'A' | 'F' | 'G' | 'I' | 'Q' => return false,
                _ => {}
            }
        }
        false
    }

    /// Payload bytes per second from the client (index 0) and the server (index 1).
    pub fn throughput(&self) -> [Option<f64>; 2] {
        [
            self.stats
                .throughput_bytes_per_sec(Direction::ClientToServer),
            self.stats
                .throughput_bytes_per_sec(Direction::ServerToClient),
        ]
    }

    fn observe(
        &mut self,
        direction: Direction,
        frame: &Frame<'_>,
        segment: &TcpSegment<'_>,
        checksum_bad: bool,
    ) -> SegmentInfo {
        self.stats.count(direction, frame, segment.payload_len);
        let info =
            self.tracker
                .analyze(self.stream, direction, frame.number, frame.time_us, segment);
        if info.marks.intersects(Marks::ANY_RETRANSMISSION) {
            self.retransmissions += 1;
        }
        let min = &mut self.min_window[direction.index()];
        *min = Some(min.map_or(info.scaled_window, |m| m.min(info.scaled_window)));
        self.update_handshake(direction, frame, segment);
        self.update_teardown(direction, frame, segment);
        // Memory stays O(flows): a finished connection keeps no spare list capacity.
        if segment.flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
            self.tracker.compact();
        }
        if checksum_bad {
            // Zeek ignores a packet with a bad checksum apart from noting it.
            self.history.counted(direction, 'C');
        } else {
            self.update_history(direction, segment, info.marks);
            self.update_states(direction, segment);
        }
        info
    }

    fn update_history(&mut self, direction: Direction, segment: &TcpSegment<'_>, marks: Marks) {
        let flags = segment.flags;
        let (syn, ack) = (flags & tcp_flags::SYN != 0, flags & tcp_flags::ACK != 0);
        let (fin, rst) = (flags & tcp_flags::FIN != 0, flags & tcp_flags::RST != 0);
        let h = &mut self.history;
        if syn {
            h.with_seq(direction, if ack { 'H' } else { 'S' }, segment.seq);
            if fin || rst {
                h.once(direction, 'Q');
            }
        }
        if fin && rst {
            h.once(direction, 'I');
        }
        if fin {
            h.with_seq(direction, 'F', segment.seq);
        }
        if rst {
            h.with_seq(direction, 'R', segment.seq);
        }
        if segment.payload_len > 0 {
            h.once(direction, 'D');
        } else if ack && !syn && !fin && !rst {
            h.once(direction, 'A');
        }
        if marks.intersects(Marks::ANY_RETRANSMISSION) && segment.payload_len > 0 {
            h.counted(direction, 'T');
        }
        if segment.window == 0 && !syn && !rst {
            h.counted(direction, 'W');
        }
    }

    fn update_states(&mut self, direction: Direction, segment: &TcpSegment<'_>) {
        use EndpointState as E;
        let flags = segment.flags;
        let (me, peer) = (direction.index(), direction.reverse().index());
        let state = self.states[me];
        if flags & tcp_flags::RST != 0 {
            self.states[me] = E::Reset;
            return;
        }
        if state == E::Reset {
            return;
        }
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;
        if syn {
            if matches!(state, E::Inactive | E::Partial | E::SynSent) {
                self.states[me] = if ack { E::SynAckSent } else { E::SynSent };
            }
        } else if ack || segment.payload_len > 0 {
            match state {
                E::Inactive => self.states[me] = E::Partial,
                E::SynSent | E::SynAckSent => self.states[me] = E::Established,
                _ => {}
            }
            // This ACK completes the peer's half of the handshake.
            if ack && matches!(self.states[peer], E::SynSent | E::SynAckSent) {
                self.states[peer] = E::Established;
            }
        }
        if flags & tcp_flags::FIN != 0 {
            self.states[me] = E::Closed;
        }
    }

    fn update_handshake(
        &mut self,
        direction: Direction,
        frame: &Frame<'_>,
        segment: &TcpSegment<'_>,
    ) {
        let flags = segment.flags & (tcp_flags::SYN | tcp_flags::ACK);
        let h = &mut self.handshake;
        match (direction, flags) {
            (Direction::ClientToServer, tcp_flags::SYN) => {
                h.syn_count += 1;
                if h.syn.is_none() {
                    h.syn = Some(HandshakeSegment::new(frame, segment));
                }
                if h.syn_ack.is_none() {
                    h.last_syn_us = Some(frame.time_us);
                }
            }
            (Direction::ServerToClient, f)
                if f == tcp_flags::SYN | tcp_flags::ACK && h.syn_ack.is_none() =>
            {
                h.syn_ack = Some(HandshakeSegment::new(frame, segment));
                h.syn_to_syn_ack_us = h.last_syn_us.map(|syn| frame.time_us - syn);
            }
            (Direction::ClientToServer, tcp_flags::ACK) if h.ack.is_none() => {
                if let Some(syn_ack) = h.syn_ack {
                    h.ack = Some(HandshakeSegment::new(frame, segment));
                    h.syn_ack_to_ack_us = Some(frame.time_us - syn_ack.time_us);
                    h.initial_rtt_us = self.tracker.initial_rtt_us();
                }
            }
            _ => {}
        }
    }

    fn update_teardown(
        &mut self,
        direction: Direction,
        frame: &Frame<'_>,
        segment: &TcpSegment<'_>,
    ) {
        let flags = segment.flags;
        let (me, peer) = (direction.index(), direction.reverse().index());
        let close = CloseSegment {
            frame: frame.number,
            time_us: frame.time_us,
            seq: segment.seq,
            end_seq: segment
                .seq
                .wrapping_add(segment.payload_len)
                .wrapping_add(u32::from(flags & tcp_flags::FIN != 0)),
            flags,
        };
        let t = &mut self.teardown;
        // Does this segment acknowledge the peer's FIN?
        if let Some(peer_fin) = t.fin[peer] {
            if t.fin_acked_in[peer].is_none()
                && flags & tcp_flags::ACK != 0
                && !super::tcp::seq_lt(segment.ack, peer_fin.end_seq)
            {
                t.fin_acked_in[peer] = Some(frame.number);
            }
        }
        if flags & tcp_flags::FIN != 0 && t.fin[me].is_none() {
            t.fin[me] = Some(close);
        }
        if flags & tcp_flags::RST != 0 && t.rst.is_none() {
            t.rst = Some((close, direction));
        }
    }
}

/// One UDP conversation (same address and port pair, either way).
#[derive(Debug, Clone)]
pub struct UdpConversation {
    /// Wireshark's `udp.stream`.
    pub stream: u64,
    /// Counts, times, endpoints (the client is the first sender).
    pub stats: FlowStats,
    /// Zeek's history: D from the client, d from the server.
    pub history: History,
}

impl UdpConversation {
    /// Zeek's UDP `conn_state`: SF when both sides sent, S0 when only the client did.
    pub fn conn_state(&self) -> ConnState {
        match self.stats.packets {
            [_, 0] => ConnState::S0,
            _ => ConnState::SF,
        }
    }
}

/// Packets and bytes (frame lengths on the wire) of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes on the wire.
    pub bytes: u64,
}

impl Counter {
    fn add(&mut self, frame: &Frame<'_>) {
        self.packets += 1;
        self.bytes += u64::from(frame.wire_len);
    }
}

/// A notable event: how often, and the first frame it happened in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Event {
    /// How many frames.
    pub count: u64,
    /// The first such frame.
    pub first_frame: Option<u64>,
}

impl Event {
    fn record(&mut self, frame: u64) {
        self.count += 1;
        self.first_frame.get_or_insert(frame);
    }
}

/// The notable events the `summary` view lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    /// TCP segments marked retransmission, fast or spurious retransmission.
    pub retransmissions: Event,
    /// Duplicate ACKs.
    pub duplicate_acks: Event,
    /// Out-of-order segments.
    pub out_of_order: Event,
    /// Zero-window advertisements.
    pub zero_windows: Event,
    /// TCP segments with RST.
    pub resets: Event,
    /// TCP or UDP checksums verified wrong (loopback offload is never counted).
    pub bad_checksums: Event,
    /// Frames the dissector called malformed.
    pub malformed: Event,
    /// IP fragments.
    pub fragments: Event,
}

impl Events {
    /// Each event with a stable name, in the order views print them.
    pub fn iter(&self) -> [(&'static str, Event); 8] {
        [
            ("retransmissions", self.retransmissions),
            ("duplicate_acks", self.duplicate_acks),
            ("out_of_order", self.out_of_order),
            ("zero_windows", self.zero_windows),
            ("resets", self.resets),
            ("bad_checksums", self.bad_checksums),
            ("malformed", self.malformed),
            ("fragments", self.fragments),
        ]
    }
}

/// Capture-wide counts for the `summary` view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Every frame.
    pub all: Counter,
    /// Time of the first and last frame, µs.
    pub first_us: Option<i64>,
    /// Time of the last frame, µs.
    pub last_us: Option<i64>,
    /// Frames of an Ethernet capture.
    pub ethernet: Counter,
    /// IPv4 packets.
    pub ipv4: Counter,
    /// IPv6 packets.
    pub ipv6: Counter,
    /// TCP segments.
    pub tcp: Counter,
    /// UDP datagrams.
    pub udp: Counter,
    /// ICMP and ICMPv6.
    pub icmp: Counter,
    /// Everything else (other IP protocols, non-IP frames).
    pub other: Counter,
    /// Frames the dissector called malformed.
    pub malformed: Counter,
    /// IP fragments.
    pub fragments: Counter,
    /// Notable events.
    pub events: Events,
}

impl Totals {
    /// Time from the first to the last frame, µs.
    pub fn duration_us(&self) -> i64 {
        match (self.first_us, self.last_us) {
            (Some(first), Some(last)) => last - first,
            _ => 0,
        }
    }

    fn count(&mut self, link: LinkType, frame: &Frame<'_>, packet: &Packet<'_>) {
        self.all.add(frame);
        self.first_us = Some(
            self.first_us
                .map_or(frame.time_us, |t| t.min(frame.time_us)),
        );
        self.last_us = Some(self.last_us.map_or(frame.time_us, |t| t.max(frame.time_us)));
        if link == LinkType::Ethernet {
            self.ethernet.add(frame);
        }
        if packet.malformed.is_some() {
            self.malformed.add(frame);
            self.events.malformed.record(frame.number);
        }
        match &packet.ip {
            Some(ip) if ip.version == 4 => self.ipv4.add(frame),
            Some(_) => self.ipv6.add(frame),
            None => {}
        }
        if packet.ip.as_ref().is_some_and(|ip| ip.fragment.is_some()) {
            self.fragments.add(frame);
            self.events.fragments.record(frame.number);
        }
        let checksum = match &packet.transport {
            Transport::Tcp(segment) => {
                self.tcp.add(frame);
                Some(segment.checksum)
            }
            Transport::Udp(datagram) => {
                self.udp.add(frame);
                Some(datagram.checksum)
            }
            Transport::Other(IPPROTO_ICMP | IPPROTO_ICMPV6) => {
                self.icmp.add(frame);
                None
            }
            Transport::Fragment => None,
            Transport::Other(_) | Transport::None => {
                self.other.add(frame);
                None
            }
        };
        if matches!(checksum, Some(Checksum::Bad { .. })) {
            self.events.bad_checksums.record(frame.number);
        }
    }
}

/// Everything the analyzer learned, once the capture is read.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// TCP connections, in `tcp.stream` order.
    pub tcp: Vec<TcpConnection>,
    /// UDP conversations, in `udp.stream` order.
    pub udp: Vec<UdpConversation>,
    /// Capture-wide totals.
    pub totals: Totals,
}

/// The streaming analyzer: one [`Analyzer::observe`] per frame, then
/// [`Analyzer::finish`].
#[derive(Debug)]
pub struct Analyzer {
    link: LinkType,
    tcp_index: FlowTable,
    udp_index: FlowTable,
    report: Report,
}

impl Analyzer {
    /// An analyzer for a capture of link type `link` (it counts Ethernet frames).
    pub fn new(link: LinkType) -> Analyzer {
        Analyzer {
            link,
            tcp_index: FlowTable::default(),
            udp_index: FlowTable::default(),
            report: Report::default(),
        }
    }

    /// The results so far (the `tcp` view reads flows while the capture streams).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Analyses one frame.
    pub fn observe(&mut self, frame: &Frame<'_>, packet: &Packet<'_>) -> Observation {
        self.report.totals.count(self.link, frame, packet);
        let Some(ip) = &packet.ip else {
            return Observation::Other;
        };
        match &packet.transport {
            Transport::Tcp(segment) => Observation::Tcp(self.observe_tcp(frame, ip, segment)),
            Transport::Udp(datagram) => {
                let src = SocketAddr::new(ip.src, datagram.src_port);
                let dst = SocketAddr::new(ip.dst, datagram.dst_port);
                // The payload by the IP header's count (the UDP length field may lie).
                let payload_len = datagram.ip_len.saturating_sub(UDP_HEADER_LEN);
                Observation::Udp(self.observe_udp(frame, src, dst, payload_len))
            }
            _ => Observation::Other,
        }
    }

    /// Ends the analysis and hands over the results.
    pub fn finish(mut self) -> Report {
        for connection in &mut self.report.tcp {
            connection.tracker.shrink();
        }
        self.report
    }

    fn observe_tcp(
        &mut self,
        frame: &Frame<'_>,
        ip: &IpInfo,
        segment: &TcpSegment<'_>,
    ) -> SegmentInfo {
        let src = SocketAddr::new(ip.src, segment.src_port);
        let dst = SocketAddr::new(ip.dst, segment.dst_port);
        let key = FlowKey::new(src, dst);
        let existing = self.tcp_index.get(&key).copied().filter(|&index| {
            let connection = &self.report.tcp[index];
            let direction = connection.stats.direction_of(src);
            // A SYN with a new ISN on known ports is a new connection (port reuse).
            !connection.tracker.is_new_syn(direction, segment)
        });
        let index = match existing {
            Some(index) => index,
            None => {
                if let Some(&old) = self.tcp_index.get(&key) {
                    self.report.tcp[old].tracker.shrink();
                }
                let index = self.report.tcp.len();
                let stream = index as u64;
                self.report
                    .tcp
                    .push(TcpConnection::new(stream, src, dst, segment.flags, frame));
                self.tcp_index.insert(key, index);
                index
            }
        };
        let connection = &mut self.report.tcp[index];
        let direction = connection.stats.direction_of(src);
        let bad = matches!(segment.checksum, Checksum::Bad { .. });
        let info = connection.observe(direction, frame, segment, bad);

        let events = &mut self.report.totals.events;
        if info.marks.intersects(Marks::ANY_RETRANSMISSION) {
            events.retransmissions.record(frame.number);
        }
        if info.marks.contains(Marks::DUPLICATE_ACK) {
            events.duplicate_acks.record(frame.number);
        }
        if info.marks.contains(Marks::OUT_OF_ORDER) {
            events.out_of_order.record(frame.number);
        }
        if info.marks.contains(Marks::ZERO_WINDOW) {
            events.zero_windows.record(frame.number);
        }
        if segment.flags & tcp_flags::RST != 0 {
            events.resets.record(frame.number);
        }
        info
    }

    fn observe_udp(
        &mut self,
        frame: &Frame<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        payload_len: u32,
    ) -> DatagramInfo {
        let key = FlowKey::new(src, dst);
        let next = self.report.udp.len();
        let index = *self.udp_index.entry(key).or_insert(next);
        if index == next {
            self.report.udp.push(UdpConversation {
                stream: next as u64,
                stats: FlowStats::new(src, dst, frame),
                history: History::default(),
            });
        }
        let conversation = &mut self.report.udp[index];
        let direction = conversation.stats.direction_of(src);
        conversation.stats.count(direction, frame, payload_len);
        if payload_len > 0 {
            conversation.history.once(direction, 'D');
        }
        DatagramInfo {
            stream: conversation.stream,
            direction,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::packet::{TcpOptions, UdpDatagram};
    use crate::capture::tcp::RttEstimate;
    use std::net::{IpAddr, Ipv4Addr};

    const CLIENT: u16 = 40_000;
    const SERVER: u16 = 12_000;
    const CLIENT_ISN: u32 = 1_000;
    const SERVER_ISN: u32 = 5_000;
    const S: u16 = tcp_flags::SYN;
    const A: u16 = tcp_flags::ACK;
    const F: u16 = tcp_flags::FIN;
    const R: u16 = tcp_flags::RST;
    const P: u16 = tcp_flags::PSH;

    fn ip(src_last: u8, dst_last: u8, protocol: u8) -> IpInfo {
        IpInfo {
            version: 4,
            src: IpAddr::V4(Ipv4Addr::new(127, 0, 0, src_last)),
            dst: IpAddr::V4(Ipv4Addr::new(127, 0, 0, dst_last)),
            protocol,
            ttl: 64,
            header_len: 20,
            total_len: 40,
            ident: 0,
            fragment: None,
        }
    }

    /// A hand-made capture: frames numbered from 1, times in ms from 0.
    struct Capture {
        analyzer: Analyzer,
        number: u64,
    }

    /// One TCP segment to feed: who sends it and its header fields.
    #[derive(Clone)]
    struct Seg {
        from_client: bool,
        time_ms: f64,
        flags: u16,
        seq: u32,
        ack: u32,
        len: u32,
        window: u16,
        options: TcpOptions,
        checksum: Checksum,
        client_port: u16,
    }

    fn c(time_ms: f64, flags: u16, seq: u32, ack: u32, len: u32) -> Seg {
        Seg {
            from_client: true,
            time_ms,
            flags,
            seq,
            ack,
            len,
            window: 512,
            options: TcpOptions::default(),
            checksum: Checksum::NotVerified,
            client_port: CLIENT,
        }
    }

    fn s(time_ms: f64, flags: u16, seq: u32, ack: u32, len: u32) -> Seg {
        Seg {
            from_client: false,
            ..c(time_ms, flags, seq, ack, len)
        }
    }

    impl Seg {
        fn window(mut self, window: u16) -> Seg {
            self.window = window;
            self
        }
        fn scale(mut self, shift: u8) -> Seg {
            self.options.window_scale = Some(shift);
            self
        }
        fn port(mut self, port: u16) -> Seg {
            self.client_port = port;
            self
        }
    }

    impl Capture {
        fn new() -> Capture {
            Capture {
                analyzer: Analyzer::new(LinkType::Ethernet),
                number: 0,
            }
        }

        fn frame(&mut self, time_ms: f64, wire_len: u32) -> Frame<'static> {
            self.number += 1;
            Frame {
                number: self.number,
                time_us: (time_ms * 1000.0).round() as i64,
                data: &[],
                wire_len,
            }
        }

        fn tcp(&mut self, seg: Seg) -> SegmentInfo {
            let (src, dst, sport, dport) = if seg.from_client {
                (1, 2, seg.client_port, SERVER)
            } else {
                (2, 1, SERVER, seg.client_port)
            };
            let packet = Packet {
                ip: Some(ip(src, dst, 6)),
                transport: Transport::Tcp(TcpSegment {
                    src_port: sport,
                    dst_port: dport,
                    seq: seg.seq,
                    ack: seg.ack,
                    flags: seg.flags,
                    header_len: 20,
                    window: seg.window,
                    options: seg.options.clone(),
                    payload_len: seg.len,
                    payload: &[],
                    checksum: seg.checksum,
                }),
                malformed: None,
            };
            let frame = self.frame(seg.time_ms, 54 + seg.len);
            match self.analyzer.observe(&frame, &packet) {
                Observation::Tcp(info) => info,
                other => panic!("expected a TCP observation, got {other:?}"),
            }
        }

        fn udp(&mut self, time_ms: f64, from: (u8, u16), to: (u8, u16), len: u32) -> DatagramInfo {
            let packet = Packet {
                ip: Some(ip(from.0, to.0, 17)),
                transport: Transport::Udp(UdpDatagram {
                    src_port: from.1,
                    dst_port: to.1,
                    length_field: (8 + len) as u16,
                    ip_len: 8 + len,
                    payload: &[],
                    checksum: Checksum::NotVerified,
                }),
                malformed: None,
            };
            let frame = self.frame(time_ms, 42 + len);
            match self.analyzer.observe(&frame, &packet) {
                Observation::Udp(info) => info,
                other => panic!("expected a UDP observation, got {other:?}"),
            }
        }

        /// SYN at 0 ms, SYN-ACK at 1 ms, ACK at 2 ms (frames 1-3).
        fn handshake(&mut self) -> [SegmentInfo; 3] {
            [
                self.tcp(c(0.0, S, CLIENT_ISN, 0, 0)),
                self.tcp(s(1.0, S | A, SERVER_ISN, CLIENT_ISN + 1, 0)),
                self.tcp(c(2.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 0)),
            ]
        }

        fn connection(&self, stream: usize) -> &TcpConnection {
            &self.analyzer.report().tcp[stream]
        }
    }

    fn marks_of(info: &SegmentInfo) -> Vec<&'static str> {
        info.marks.names().collect()
    }

    #[test]
    fn handshake_gives_relative_numbers_acks_frames_and_rtts() {
        let mut cap = Capture::new();
        let [syn, syn_ack, ack] = cap.handshake();
        assert_eq!((syn.stream, syn.direction), (0, Direction::ClientToServer));
        assert_eq!((syn.rel_seq, syn.rel_ack, syn.rel_next_seq), (0, None, 1));
        assert_eq!(syn_ack.direction, Direction::ServerToClient);
        assert_eq!((syn_ack.rel_seq, syn_ack.rel_ack), (0, Some(1)));
        assert_eq!((ack.rel_seq, ack.rel_ack), (1, Some(1)));
        // The SYN-ACK acknowledges the SYN (frame 1), the ACK the SYN-ACK (frame 2).
        assert_eq!(
            (syn_ack.acks_frame, syn_ack.ack_rtt_us),
            (Some(1), Some(1000))
        );
        assert_eq!((ack.acks_frame, ack.ack_rtt_us), (Some(2), Some(1000)));
        // No data was acknowledged: no K&R sample.
        assert_eq!(ack.rtt, None);
        assert!(syn.marks.is_empty() && syn_ack.marks.is_empty() && ack.marks.is_empty());

        let conn = cap.connection(0);
        let h = &conn.handshake;
        assert_eq!(h.syn.map(|x| x.frame), Some(1));
        assert_eq!(
            h.syn_ack.map(|x| (x.frame, x.seq, x.ack)),
            Some((2, SERVER_ISN, CLIENT_ISN + 1))
        );
        assert_eq!(h.ack.map(|x| x.frame), Some(3));
        assert_eq!(
            (h.syn_ack_acks_isn(), h.ack_acks_isn()),
            (Some(true), Some(true))
        );
        assert_eq!(
            (h.syn_to_syn_ack_us, h.syn_ack_to_ack_us, h.initial_rtt_us),
            (Some(1000), Some(1000), Some(2000))
        );
        assert_eq!(conn.stats.client.port(), CLIENT);
        assert_eq!(conn.conn_state(), ConnState::S1);
        assert_eq!(conn.history.as_str(), "ShA");
        assert_eq!(conn.teardown.kind(), TeardownKind::None);
    }

    #[test]
    fn data_and_acks_feed_the_kurose_ross_estimator() {
        let mut cap = Capture::new();
        cap.handshake();
        let d1 = cap.tcp(c(10.0, A | P, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        assert_eq!((d1.rel_seq, d1.rel_next_seq, d1.len), (1, 101, 100));
        let a1 = cap.tcp(s(20.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0));
        assert_eq!((a1.acks_frame, a1.ack_rtt_us), (Some(4), Some(10_000)));
        assert_eq!(
            a1.rtt,
            Some(RttEstimate {
                sample_us: 10_000,
                estimated_us: 10_000.0,
                dev_us: 5_000.0
            })
        );
        cap.tcp(c(30.0, A | P, CLIENT_ISN + 101, SERVER_ISN + 1, 100));
        let a2 = cap.tcp(s(50.0, A, SERVER_ISN + 1, CLIENT_ISN + 201, 0));
        let rtt = a2.rtt.expect("the second ACK gives a sample");
        assert_eq!(rtt.sample_us, 20_000);
        // Est = 7/8 * 10000 + 1/8 * 20000; Dev = 3/4 * 5000 + 1/4 * |20000 - 10000|.
        assert_eq!(rtt.estimated_us, 11_250.0);
        assert_eq!(rtt.dev_us, 6_250.0);
        assert_eq!(rtt.timeout_us(), 36_250.0);
        let conn = cap.connection(0);
        assert_eq!(conn.stats.payload_bytes, [200, 0]);
        // 200 bytes between the first (10 ms) and last (30 ms) data segment.
        assert_eq!(conn.throughput()[0], Some(10_000.0));
        assert_eq!(conn.throughput()[1], None);
        assert_eq!(conn.history.as_str(), "ShADa");
    }

    #[test]
    fn an_ack_covering_two_segments_acks_the_later_one() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(10.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        cap.tcp(c(11.0, A, CLIENT_ISN + 101, SERVER_ISN + 1, 100));
        let ack = cap.tcp(s(20.0, A, SERVER_ISN + 1, CLIENT_ISN + 201, 0));
        assert_eq!((ack.acks_frame, ack.ack_rtt_us), (Some(5), Some(9_000)));
    }

    #[test]
    fn timeout_retransmission_is_marked_and_gives_no_rtt_sample() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(10.0, A | P, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        let again = cap.tcp(c(210.0, A | P, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        assert_eq!(marks_of(&again), ["retransmission"]);
        let ack = cap.tcp(s(211.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0));
        // Wireshark names the oldest copy; Karn's rule forbids a sample.
        assert_eq!(ack.acks_frame, Some(4));
        assert_eq!(ack.rtt, None);
        let conn = cap.connection(0);
        assert_eq!(conn.retransmissions, 1);
        assert_eq!(conn.history.as_str(), "ShADTa");
        let events = &cap.analyzer.report().totals.events;
        assert_eq!(
            (
                events.retransmissions.count,
                events.retransmissions.first_frame
            ),
            (1, Some(5))
        );
    }

    #[test]
    fn three_duplicate_acks_then_fast_retransmission() {
        let mut cap = Capture::new();
        cap.handshake();
        let seq = |n: u32| CLIENT_ISN + 1 + 100 * n;
        cap.tcp(c(10.0, A, seq(0), SERVER_ISN + 1, 100)); // frame 4
                                                          // Segment 1 (seq(1)) is lost: the capture never sees it.
        let gap = cap.tcp(c(10.2, A, seq(2), SERVER_ISN + 1, 100)); // 5
        assert_eq!(marks_of(&gap), ["previous segment not captured"]);
        cap.tcp(c(10.4, A, seq(3), SERVER_ISN + 1, 100)); // 6
        cap.tcp(c(10.6, A, seq(4), SERVER_ISN + 1, 100)); // 7
        let first = cap.tcp(s(11.0, A, SERVER_ISN + 1, seq(1), 0)); // 8
        assert!(first.marks.is_empty());
        assert_eq!(first.acks_frame, Some(4));
        let dups: Vec<SegmentInfo> = (0..3)
            .map(|i| cap.tcp(s(11.2 + f64::from(i) * 0.2, A, SERVER_ISN + 1, seq(1), 0)))
            .collect();
        for (i, dup) in dups.iter().enumerate() {
            assert_eq!(marks_of(dup), ["duplicate ack"]);
            assert_eq!(dup.duplicate_ack, Some((i as u32 + 1, 8)));
        }
        let fast = cap.tcp(c(12.0, A, seq(1), SERVER_ISN + 1, 100)); // 12
        assert_eq!(marks_of(&fast), ["retransmission", "fast retransmission"]);
        let ack = cap.tcp(s(13.0, A, SERVER_ISN + 1, seq(5), 0));
        assert_eq!(ack.acks_frame, Some(7));
        let events = &cap.analyzer.report().totals.events;
        assert_eq!(
            (
                events.duplicate_acks.count,
                events.duplicate_acks.first_frame
            ),
            (3, Some(9))
        );
    }

    #[test]
    fn an_early_segment_arriving_late_is_out_of_order() {
        let mut cap = Capture::new();
        cap.handshake();
        let later = cap.tcp(c(10.0, A, CLIENT_ISN + 101, SERVER_ISN + 1, 100));
        assert_eq!(marks_of(&later), ["previous segment not captured"]);
        // 1 ms later, below the handshake RTT (2 ms): reordering, not a retransmission.
        let earlier = cap.tcp(c(11.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        assert_eq!(marks_of(&earlier), ["out-of-order"]);
        // The same segment much later is a retransmission.
        let resent = cap.tcp(c(300.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        assert_eq!(marks_of(&resent), ["retransmission"]);
    }

    #[test]
    fn acked_data_sent_again_is_a_spurious_retransmission() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(10.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        cap.tcp(s(11.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0));
        let again = cap.tcp(c(300.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        assert_eq!(
            marks_of(&again),
            ["retransmission", "spurious retransmission"]
        );
    }

    #[test]
    fn zero_window_probe_and_its_ack() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(10.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 100));
        let zero = cap.tcp(s(11.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0).window(0));
        assert_eq!(marks_of(&zero), ["zero window"]);
        let probe = cap.tcp(c(200.0, A, CLIENT_ISN + 101, SERVER_ISN + 1, 1));
        assert_eq!(marks_of(&probe), ["zero window probe"]);
        let probe_ack = cap.tcp(s(201.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0).window(0));
        // Still a zero window, and the answer to the probe.
        assert_eq!(
            marks_of(&probe_ack),
            ["zero window", "zero window probe ack"]
        );
        let update = cap.tcp(s(300.0, A, SERVER_ISN + 1, CLIENT_ISN + 101, 0).window(1024));
        assert_eq!(marks_of(&update), ["window update"]);
        assert_eq!(cap.connection(0).history.as_str(), "ShADaw");
    }

    #[test]
    fn keep_alive_and_its_ack() {
        let mut cap = Capture::new();
        cap.handshake();
        let probe = cap.tcp(c(7_200_000.0, A, CLIENT_ISN, SERVER_ISN + 1, 0));
        assert_eq!(marks_of(&probe), ["keep-alive"]);
        let answer = cap.tcp(s(7_200_001.0, A, SERVER_ISN + 1, CLIENT_ISN + 1, 0));
        assert_eq!(marks_of(&answer), ["keep-alive ack"]);
    }

    #[test]
    fn window_is_scaled_only_when_both_syns_carry_the_option() {
        let mut cap = Capture::new();
        let syn = cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0).window(65_535).scale(7));
        assert_eq!(syn.scaled_window, 65_535, "SYNs are never scaled");
        cap.tcp(
            s(1.0, S | A, SERVER_ISN, CLIENT_ISN + 1, 0)
                .window(65_483)
                .scale(2),
        );
        let ack = cap.tcp(c(2.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 0).window(512));
        assert_eq!((ack.window, ack.scaled_window), (512, 512 << 7));
        let back = cap.tcp(s(3.0, A, SERVER_ISN + 1, CLIENT_ISN + 1, 0).window(100));
        assert_eq!(back.scaled_window, 400);

        let mut cap = Capture::new();
        cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0).scale(7));
        cap.tcp(s(1.0, S | A, SERVER_ISN, CLIENT_ISN + 1, 0));
        let ack = cap.tcp(c(2.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 0).window(512));
        assert_eq!(
            ack.scaled_window, 512,
            "the server did not agree to scaling"
        );
    }

    #[test]
    fn syn_answered_by_reset_is_rej() {
        let mut cap = Capture::new();
        cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0));
        let rst = cap.tcp(s(0.1, R | A, 0, CLIENT_ISN + 1, 0));
        assert_eq!(rst.acks_frame, Some(1));
        let conn = cap.connection(0);
        assert_eq!(conn.conn_state(), ConnState::Rej);
        assert_eq!(conn.history.as_str(), "Sr");
        assert_eq!(conn.teardown.kind(), TeardownKind::Reset);
        assert_eq!(
            conn.teardown.rst.map(|(x, d)| (x.frame, d)),
            Some((2, Direction::ServerToClient))
        );
        assert_eq!(cap.analyzer.report().totals.events.resets.count, 1);
    }

    #[test]
    fn four_way_close_is_sf() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(10.0, A | P, CLIENT_ISN + 1, SERVER_ISN + 1, 5)); // 4
        cap.tcp(s(11.0, A | P, SERVER_ISN + 1, CLIENT_ISN + 6, 5)); // 5
        cap.tcp(c(12.0, F | A, CLIENT_ISN + 6, SERVER_ISN + 6, 0)); // 6
        cap.tcp(s(13.0, A, SERVER_ISN + 6, CLIENT_ISN + 7, 0)); // 7
        let fin = cap.tcp(s(14.0, F | A, SERVER_ISN + 6, CLIENT_ISN + 7, 0)); // 8
        assert_eq!((fin.rel_seq, fin.rel_next_seq), (6, 7));
        let last = cap.tcp(c(15.0, A, CLIENT_ISN + 7, SERVER_ISN + 7, 0)); // 9
        assert_eq!(last.acks_frame, Some(8));
        let conn = cap.connection(0);
        assert_eq!(conn.conn_state(), ConnState::SF);
        // The server's first pure ACK (frame 7) comes after its data and the client FIN.
        assert_eq!(conn.history.as_str(), "ShADdFaf");
        assert_eq!(conn.teardown.kind(), TeardownKind::FourWay);
        assert_eq!(conn.teardown.fin_acked_in, [Some(7), Some(9)]);
        assert_eq!(conn.stats.packets, [5, 4]);
        assert_eq!(conn.stats.bytes, [54 * 5 + 5, 54 * 4 + 5]);
    }

    #[test]
    fn fin_answered_by_fin_ack_is_three_way() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(12.0, F | A, CLIENT_ISN + 1, SERVER_ISN + 1, 0)); // 4
        cap.tcp(s(13.0, F | A, SERVER_ISN + 1, CLIENT_ISN + 2, 0)); // 5
        cap.tcp(c(14.0, A, CLIENT_ISN + 2, SERVER_ISN + 2, 0)); // 6
        let conn = cap.connection(0);
        assert_eq!(conn.teardown.kind(), TeardownKind::ThreeWay);
        assert_eq!(conn.conn_state(), ConnState::SF);
    }

    #[test]
    fn half_closed_and_reset_states() {
        // Client FIN only: S2, half-closed.
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(12.0, F | A, CLIENT_ISN + 1, SERVER_ISN + 1, 0));
        let conn = cap.connection(0);
        assert_eq!(
            (conn.conn_state(), conn.teardown.kind()),
            (ConnState::S2, TeardownKind::HalfClosed)
        );

        // Server FIN only: S3.
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(s(12.0, F | A, SERVER_ISN + 1, CLIENT_ISN + 1, 0));
        assert_eq!(cap.connection(0).conn_state(), ConnState::S3);

        // Client aborts: RSTO. Server aborts: RSTR.
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(12.0, R | A, CLIENT_ISN + 1, SERVER_ISN + 1, 0));
        assert_eq!(cap.connection(0).conn_state(), ConnState::Rsto);
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(s(12.0, R, SERVER_ISN + 1, 0, 0));
        assert_eq!(cap.connection(0).conn_state(), ConnState::Rstr);
    }

    #[test]
    fn unanswered_and_midstream_states() {
        // A lone SYN: S0.
        let mut cap = Capture::new();
        cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0));
        cap.tcp(c(1000.0, S, CLIENT_ISN, 0, 0));
        let conn = cap.connection(0);
        assert_eq!(
            (conn.conn_state(), conn.history.as_str()),
            (ConnState::S0, "S")
        );
        assert_eq!(conn.handshake.syn_count, 2);

        // SYN then RST from the client, no answer: RSTOS0.
        let mut cap = Capture::new();
        cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0));
        cap.tcp(c(1.0, R, CLIENT_ISN + 1, 0, 0));
        assert_eq!(cap.connection(0).conn_state(), ConnState::Rstos0);

        // SYN then FIN, no answer: SH.
        let mut cap = Capture::new();
        cap.tcp(c(0.0, S, CLIENT_ISN, 0, 0));
        cap.tcp(c(1.0, F, CLIENT_ISN + 1, 0, 0));
        assert_eq!(cap.connection(0).conn_state(), ConnState::Sh);

        // Mid-stream data without a SYN: OTH, relative seq starts at 1.
        let mut cap = Capture::new();
        let first = cap.tcp(c(0.0, A, 777, 888, 10));
        assert_eq!((first.rel_seq, first.rel_ack), (1, Some(1)));
        cap.tcp(s(1.0, A, 888, 787, 0));
        let conn = cap.connection(0);
        assert_eq!(
            (conn.conn_state(), conn.history.as_str()),
            (ConnState::Oth, "Da")
        );
        assert!(!conn.handshake.is_complete());
    }

    #[test]
    fn capture_starting_at_the_syn_ack_flips_the_roles() {
        let mut cap = Capture::new();
        let syn_ack = cap.tcp(s(0.0, S | A, SERVER_ISN, CLIENT_ISN + 1, 0));
        assert_eq!(syn_ack.direction, Direction::ServerToClient);
        cap.tcp(c(1.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 0));
        let conn = cap.connection(0);
        assert_eq!(conn.stats.client.port(), CLIENT);
        assert_eq!(conn.history.as_str(), "^hA");
    }

    #[test]
    fn a_new_syn_on_used_ports_starts_a_new_stream() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.tcp(c(3.0, F | A, CLIENT_ISN + 1, SERVER_ISN + 1, 0));
        cap.tcp(s(4.0, F | A, SERVER_ISN + 1, CLIENT_ISN + 2, 0));
        cap.tcp(c(5.0, A, CLIENT_ISN + 2, SERVER_ISN + 2, 0));
        // The same SYN again (a retransmission) stays in stream 0...
        let resent = cap.tcp(c(6.0, S, CLIENT_ISN, 0, 0));
        assert_eq!(resent.stream, 0);
        // ...a SYN with a new ISN is a new connection.
        let new = cap.tcp(c(7.0, S, 90_000, 0, 0));
        assert_eq!((new.stream, new.rel_seq), (1, 0));
        let other_port = cap.tcp(c(8.0, S, 91_000, 0, 0).port(40_001));
        assert_eq!(other_port.stream, 2);
        assert_eq!(cap.analyzer.report().tcp.len(), 3);
    }

    #[test]
    fn bad_checksum_is_noted_as_c_and_counted() {
        let mut cap = Capture::new();
        cap.handshake();
        let mut seg = c(10.0, A, CLIENT_ISN + 1, SERVER_ISN + 1, 10);
        seg.checksum = Checksum::Bad {
            found: 1,
            expected: 2,
        };
        cap.tcp(seg);
        assert_eq!(cap.connection(0).history.as_str(), "ShAC");
        let events = &cap.analyzer.report().totals.events;
        assert_eq!(
            (events.bad_checksums.count, events.bad_checksums.first_frame),
            (1, Some(4))
        );
    }

    #[test]
    fn counted_history_letters_repeat_at_powers_of_ten() {
        let mut history = History::default();
        for _ in 0..100 {
            history.counted(Direction::ServerToClient, 'W');
        }
        assert_eq!(history.as_str(), "www");
    }

    #[test]
    fn udp_conversations_are_numbered_and_directed() {
        let mut cap = Capture::new();
        let q = cap.udp(0.0, (1, 5000), (2, 53), 20);
        let r = cap.udp(1.0, (2, 53), (1, 5000), 40);
        let other = cap.udp(2.0, (1, 5001), (2, 53), 20);
        assert_eq!((q.stream, q.direction), (0, Direction::ClientToServer));
        assert_eq!((r.stream, r.direction), (0, Direction::ServerToClient));
        assert_eq!(other.stream, 1);
        let report = cap.analyzer.finish();
        assert_eq!(report.udp[0].conn_state(), ConnState::SF);
        assert_eq!(report.udp[0].history.as_str(), "Dd");
        assert_eq!(report.udp[1].conn_state(), ConnState::S0);
        assert_eq!(report.udp[0].stats.payload_bytes, [20, 40]);
        assert_eq!(report.udp[0].stats.bytes, [62, 82]);
    }

    #[test]
    fn totals_count_protocols_and_time() {
        let mut cap = Capture::new();
        cap.handshake();
        cap.udp(5.0, (1, 5000), (2, 53), 20);
        let frame = cap.frame(6.0, 60);
        let arp = Packet::default();
        assert_eq!(cap.analyzer.observe(&frame, &arp), Observation::Other);
        let frame = cap.frame(7.0, 98);
        let ping = Packet {
            ip: Some(ip(1, 2, 1)),
            transport: Transport::Other(1),
            malformed: None,
        };
        cap.analyzer.observe(&frame, &ping);
        let frame = cap.frame(8.0, 30);
        let broken = Packet {
            malformed: Some("IPv4 header cut: 10 of 20 bytes".into()),
            ..Packet::default()
        };
        cap.analyzer.observe(&frame, &broken);
        let t = cap.analyzer.finish().totals;
        assert_eq!(
            t.all,
            Counter {
                packets: 7,
                bytes: 54 * 3 + 62 + 60 + 98 + 30
            }
        );
        assert_eq!(t.ethernet.packets, 7);
        assert_eq!(
            (t.ipv4.packets, t.tcp.packets, t.udp.packets, t.icmp.packets),
            (5, 3, 1, 1)
        );
        assert_eq!(t.other.packets, 2);
        assert_eq!(
            (t.malformed.packets, t.events.malformed.first_frame),
            (1, Some(7))
        );
        assert_eq!(t.duration_us(), 8_000);
    }
}
