//! Lab 4, synthetic captures: one TCP connection, simulated end to end so that its
//! packets obey TCP exactly (the sequence and acknowledgment arithmetic, the options,
//! the windows, the reactions to loss), as a capture point on the path would see them.
//!
//! ```text
//!   client ──── a (1-40 ms) ──── capture point ── b (0.05-0.5 ms) ── server
//!          <- lost here or here: a dropped data segment never reaches the capture ->
//! ```
//!
//! The capture point sits at the servers' edge: what the servers send passes it at once,
//! what the clients send has crossed most of the path. Both ends run a small TCP:
//!
//! - the three-way handshake with MSS, SACK-permitted, timestamps and window scale;
//! - data cut into segments of `MSS - 12` bytes (the timestamp option each segment
//!   carries), sent within the congestion window (slow start from 10 segments, RFC 6928)
//!   and the peer's window, which is large and constant so it never fills;
//! - receivers acknowledge every second segment and after 40 ms for a lone one
//!   (delayed ACK, RFC 9293 3.8.6.3), or every segment ("quick ACK" connections), at once
//!   for data out of order (a duplicate ACK carrying SACK blocks) or filling a gap;
//! - a sender that gets three duplicate ACKs resends the first missing segment (fast
//!   retransmission) and, like NewReno, the next one on each partial ACK, sending no new
//!   data until it is out of recovery; a segment still unacknowledged after the
//!   retransmission timeout (RFC 6298, at least 200 ms as in Linux) is resent with the
//!   congestion window back at one segment;
//! - FIN teardowns (four-way, three-way with FIN+ACK, or the server closing first) or a
//!   RST from the client; and a few connections refused with RST at the SYN.
//!
//! Afterwards the packets are read in capture order and the books a capture analyzer
//! keeps are kept (tshark's rules, [`account`]): a resent segment that starts below the
//! highest sequence number already seen in its direction is a visible retransmission
//! (spurious if the other side's last ACK already covers it, as happens when a resent
//! segment crosses the ACK that makes it unnecessary); one that fills a hole nobody saw
//! looks new.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::wire::TcpOptionSet;
use crate::capture::packet::tcp_flags::{ACK, FIN, PSH, RST, SYN};

/// Index of the client in per-side arrays.
const CLIENT: usize = 0;
/// Index of the server in per-side arrays.
const SERVER: usize = 1;

/// The MSS both ends announce: an Ethernet MTU of 1500 minus 40 bytes of IPv4 and TCP.
pub(crate) const MSS: u16 = 1460;
/// Bytes of the timestamp option (NOP, NOP, kind, length, two 4-byte values), carried
/// on every segment after the handshake, so a full segment carries `MSS - 12` bytes.
const TIMESTAMP_OPTION_LEN: u32 = 12;
/// Payload bytes of a full-sized segment.
pub(crate) const SEGMENT_DATA: u32 = MSS as u32 - TIMESTAMP_OPTION_LEN;
/// Initial congestion window in segments (RFC 6928).
const INITIAL_CWND: u32 = 10;
/// Duplicate ACKs that trigger a fast retransmission (RFC 5681).
const DUP_ACK_THRESHOLD: u32 = 3;
/// Linux's lower bound on the retransmission timeout (RFC 6298 says 1 s).
const MIN_RTO_US: u64 = 200_000;
/// Upper bound on the retransmission timeout after backing off.
const MAX_RTO_US: u64 = 60_000_000;
/// The delayed-ACK timer (Linux's minimum; RFC 9293 allows up to 500 ms).
const DELAYED_ACK_US: u64 = 40_000;
/// Time a receiver takes to answer with an ACK (interrupt, softirq): keeps every reply
/// strictly after what caused it.
const ACK_PROCESSING_US: u64 = 15;
/// SYN windows as Linux sends them (unscaled: a SYN's window is never scaled).
const CLIENT_SYN_WINDOW: u16 = 64_240;
/// The SYN-ACK's window.
const SERVER_SYN_WINDOW: u16 = 65_160;
/// The most SACK blocks that fit next to the timestamp option.
const MAX_SACK_BLOCKS: usize = 3;
/// Bytes on the wire per packet besides the payload and TCP options: Ethernet 14 +
/// IPv4 20 + TCP 20, plus Ethernet's preamble, FCS and gap (24), for serialization time.
const WIRE_OVERHEAD: u64 = 14 + 20 + 20 + 24;

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// Client FIN, server ACK, later server FIN, client ACK.
    ClientFourWay,
    /// Client FIN, server FIN+ACK at once, client ACK.
    ClientThreeWay,
    /// The server sends FIN right after its last response; four-way from there.
    ServerFirst,
    /// The client aborts with RST after the last response.
    ClientReset,
}

/// One request and its response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exchange {
    /// Bytes the client sends.
    pub request: u32,
    /// Bytes the server answers with.
    pub response: u32,
    /// How long the client waits before sending the request (think time).
    pub think_us: u64,
    /// How long the server takes to answer once the request is complete.
    pub server_us: u64,
}

/// Everything drawn at random for one connection; the simulation adds only the loss.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionPlan {
    /// When the client sends its SYN, microseconds from the start of the capture.
    pub start_us: u64,
    /// One-way delay between the client and the capture point.
    pub client_delay_us: u64,
    /// One-way delay between the capture point and the server.
    pub server_delay_us: u64,
    /// Link speed of each side, bits per second (how fast a burst leaves it).
    pub link_bps: [u64; 2],
    /// Initial sequence numbers.
    pub isn: [u32; 2],
    /// Offsets of each side's timestamp clock (RFC 7323: any starting value).
    pub ts_offset: [u32; 2],
    /// Window scale shift each side announces.
    pub window_scale: [u8; 2],
    /// Receive buffer of each side in bytes: the window it advertises, constant.
    pub receive_window: [u32; 2],
    /// The requests and responses, in order.
    pub exchanges: Vec<Exchange>,
    /// How the connection ends.
    pub close: Close,
    /// How long after the last response the client closes (or the second FIN follows).
    pub close_delay_us: u64,
    /// The client acknowledges every segment instead of every second one.
    pub quick_ack: bool,
    /// The server answers the SYN with RST: nothing listens there.
    pub refused: bool,
    /// Probability that a data segment is dropped before the capture point.
    pub loss: f64,
}

/// One packet as it passes the capture point.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    /// Capture time, microseconds from the start of the capture.
    pub time_us: u64,
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// Raw sequence number.
    pub seq: u32,
    /// Raw acknowledgment number (0 without ACK).
    pub ack: u32,
    /// TCP flags.
    pub flags: u16,
    /// Window field (unscaled).
    pub window: u16,
    /// Payload bytes.
    pub len: u32,
    /// Offset of the first payload byte in the sender's byte stream.
    pub stream_offset: u64,
    /// Options.
    pub options: TcpOptionSet,
    /// Sequence number relative to the sender's ISN (0 is the SYN), for the books.
    rel_seq: u64,
    /// Acknowledgment number relative to the receiver's ISN.
    rel_ack: u64,
    /// Why the segment was resent, if it was.
    resend: Option<Cause>,
}

/// What the capture shows of TCP's loss recovery, counted as tshark counts it: for one
/// connection, and summed over the file in [`super::SynthSummary`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpCounts {
    /// Data segments dropped before the capture point.
    pub drops: u64,
    /// Resent segments the capture shows as retransmissions.
    pub retransmissions: u64,
    /// Of those, resent on the third duplicate ACK.
    pub fast_retransmissions: u64,
    /// Of the retransmissions, those whose acknowledgment the capture point had already
    /// seen go the other way (it crossed the resent segment on the path).
    pub spurious_retransmissions: u64,
    /// Resent segments that fill a hole the capture never saw, so look new.
    pub unseen_retransmissions: u64,
    /// Segments that start beyond the highest sequence number seen so far ("previous
    /// segment not captured").
    pub gaps: u64,
    /// Duplicate ACKs as tshark counts them (no data, same ACK and window as before).
    pub duplicate_acks: u64,
    /// The same with a different window: tshark's "window update". Windows here are
    /// constant, so this is only a server's duplicate ACK right after its SYN-ACK,
    /// whose window was unscaled.
    pub window_updates: u64,
    /// RST segments.
    pub resets: u64,
}

impl std::ops::AddAssign for TcpCounts {
    fn add_assign(&mut self, other: TcpCounts) {
        self.drops += other.drops;
        self.retransmissions += other.retransmissions;
        self.fast_retransmissions += other.fast_retransmissions;
        self.spurious_retransmissions += other.spurious_retransmissions;
        self.unseen_retransmissions += other.unseen_retransmissions;
        self.gaps += other.gaps;
        self.duplicate_acks += other.duplicate_acks;
        self.window_updates += other.window_updates;
        self.resets += other.resets;
    }
}

/// Why a segment is being resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Cause {
    /// Three duplicate ACKs.
    Fast,
    /// A partial ACK during fast recovery.
    PartialAck,
    /// The retransmission timer.
    Timeout,
}

/// A segment in flight, as the simulated network carries it (sequence numbers relative
/// to each side's ISN: 0 is the SYN, data starts at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wire {
    seq: u64,
    len: u32,
    flags: u16,
    ack: u64,
    tsval: u32,
    sack: [(u64, u64); MAX_SACK_BLOCKS],
    sack_len: u8,
}

impl Wire {
    /// Sequence space the segment occupies: its data, plus one for SYN or FIN.
    fn space(&self) -> u64 {
        u64::from(self.len) + u64::from(self.flags & (SYN | FIN) != 0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A segment reaches side `to`.
    Arrive { to: usize, wire: Wire },
    /// The retransmission timer of `side` fires, if `generation` is still current.
    Rto { side: usize, generation: u64 },
    /// The delayed-ACK timer of `side` fires, if `generation` is still current.
    DelayedAck { side: usize, generation: u64 },
    /// The client writes request `k`.
    Request(usize),
    /// The server writes response `k`.
    Response(usize),
    /// `side` closes its end (sends FIN after its data).
    Close(usize),
    /// The client aborts with RST.
    Reset,
}

/// A segment the sender has sent and not yet seen acknowledged.
#[derive(Debug, Clone, Copy)]
struct Sent {
    start: u64,
    end: u64,
    fin: bool,
    sent_us: u64,
    transmissions: u32,
    sacked: bool,
    /// Declared lost and not yet resent.
    lost: Option<Cause>,
}

/// One end of the connection.
#[derive(Debug, Default)]
struct Endpoint {
    // Sending.
    snd_una: u64,
    snd_nxt: u64,
    /// End of the data the application has written so far.
    app_end: u64,
    fin_queued: bool,
    fin_sent: bool,
    inflight: VecDeque<Sent>,
    cwnd: u32,
    ssthresh: u32,
    /// Segments acknowledged in congestion avoidance since cwnd last grew.
    cwnd_credit: u32,
    dupacks: u32,
    /// In fast recovery until this is acknowledged.
    recover: Option<u64>,
    srtt_us: u64,
    rttvar_us: u64,
    rto_us: u64,
    rto_generation: u64,
    rto_armed: bool,
    /// When this side's link is free to send the next frame.
    link_free_us: u64,
    /// When the server sent its SYN-ACK, to time the handshake's last ACK (the SYN-ACK
    /// is never lost, so it is not kept in flight).
    syn_ack_sent_us: u64,
    // Receiving.
    rcv_nxt: u64,
    /// Out-of-order data held: sorted, disjoint [start, end) ranges.
    ooo: Vec<(u64, u64)>,
    /// Where the last out-of-order segment landed (the first SACK block, RFC 2018).
    last_ooo: (u64, u64),
    unacked_segments: u32,
    delack_generation: u64,
    delack_armed: bool,
    /// TSval of the last segment received, echoed as TSecr.
    ts_recent: u32,
    fin_received: bool,
    /// Gone: sent or received a RST.
    closed: bool,
}

impl Endpoint {
    /// Segments in flight that are neither SACKed nor waiting to be resent (RFC 6675's
    /// "pipe", in segments).
    fn pipe(&self) -> u32 {
        self.inflight
            .iter()
            .filter(|s| !s.sacked && s.lost.is_none())
            .count() as u32
    }

    /// Takes in an RTT measurement (RFC 6298 2.2-2.3).
    fn sample_rtt(&mut self, rtt_us: u64) {
        if self.srtt_us == 0 {
            self.srtt_us = rtt_us.max(1);
            self.rttvar_us = rtt_us / 2;
        } else {
            let error = self.srtt_us.abs_diff(rtt_us);
            self.rttvar_us = (3 * self.rttvar_us + error) / 4;
            self.srtt_us = (7 * self.srtt_us + rtt_us) / 8;
        }
        self.rto_us = (self.srtt_us + 4 * self.rttvar_us).clamp(MIN_RTO_US, MAX_RTO_US);
    }

    /// Marks as SACKed every segment inside one of `blocks`.
    fn take_sack(&mut self, blocks: &[(u64, u64)]) {
        for sent in self.inflight.iter_mut() {
            if blocks
                .iter()
                .any(|&(left, right)| left <= sent.start && sent.end <= right)
            {
                sent.sacked = true;
                sent.lost = None;
            }
        }
    }
}

/// The view of one direction from the capture point, kept like tshark's analysis.
#[derive(Debug, Default, Clone, Copy)]
struct TapDirection {
    /// One past the highest sequence number seen (relative), once a segment was seen.
    next_seq: Option<u64>,
    last_ack: Option<u64>,
    last_window: u16,
}

/// Simulates one connection; returns its packets in capture order and what they show.
pub(crate) fn simulate(plan: &ConnectionPlan, rng: &mut ChaCha8Rng) -> (Vec<Segment>, TcpCounts) {
    let mut sim = Simulation::new(plan, rng);
    sim.run();
    // Each direction is already in time order; merge them (stable: equal times keep the
    // order they were produced in).
    sim.packets.sort_by_key(|s| s.time_us);
    let mut stats = account(&sim.packets);
    stats.drops = sim.drops;
    (sim.packets, stats)
}

/// Keeps the books a capture analyzer keeps (tshark's rules), over the packets in the
/// order the capture point saw them: a segment sent earlier can reach it later than
/// one from the other side, so this cannot be done while simulating.
fn account(packets: &[Segment]) -> TcpCounts {
    let mut stats = TcpCounts::default();
    let mut tap = [TapDirection::default(); 2];
    for packet in packets {
        let side = usize::from(!packet.from_client);
        let peer_last_ack = tap[1 - side].last_ack;
        let this = &mut tap[side];
        let space = u64::from(packet.len) + u64::from(packet.flags & (SYN | FIN) != 0);
        let seq = packet.rel_seq;
        if let Some(next) = this.next_seq {
            if seq > next && packet.flags & RST == 0 {
                stats.gaps += 1;
            }
            if space > 0 && seq < next {
                stats.retransmissions += 1;
                if packet.resend == Some(Cause::Fast) {
                    stats.fast_retransmissions += 1;
                } else if packet.len > 0
                    && peer_last_ack.is_some_and(|ack| seq + u64::from(packet.len) <= ack)
                {
                    stats.spurious_retransmissions += 1;
                }
            } else if packet.resend.is_some() {
                stats.unseen_retransmissions += 1;
            }
            if packet.len == 0
                && packet.flags & (SYN | FIN | RST) == 0
                && seq == next
                && this.last_ack == Some(packet.rel_ack)
            {
                if this.last_window == packet.window {
                    stats.duplicate_acks += 1;
                } else {
                    stats.window_updates += 1;
                }
            }
        }
        if this.next_seq.is_none_or(|next| seq + space > next) {
            this.next_seq = Some(seq + space);
        }
        if packet.flags & ACK != 0 {
            this.last_ack = Some(packet.rel_ack);
        }
        this.last_window = packet.window;
        if packet.flags & RST != 0 {
            stats.resets += 1;
        }
    }
    stats
}

struct Simulation<'a> {
    plan: &'a ConnectionPlan,
    rng: &'a mut ChaCha8Rng,
    now: u64,
    next_order: u64,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    ends: [Endpoint; 2],
    /// Cumulative end (relative sequence) of each request and each response.
    request_ends: Vec<u64>,
    response_ends: Vec<u64>,
    /// Requests the server has seen complete; responses the client has.
    requests_done: usize,
    responses_done: usize,
    packets: Vec<Segment>,
    /// Data segments dropped before the capture point.
    drops: u64,
}

impl<'a> Simulation<'a> {
    fn new(plan: &'a ConnectionPlan, rng: &'a mut ChaCha8Rng) -> Simulation<'a> {
        let cumulative = |sizes: &mut dyn Iterator<Item = u32>| -> Vec<u64> {
            let mut end = 1; // data starts after the SYN
            sizes
                .map(|size| {
                    end += u64::from(size);
                    end
                })
                .collect()
        };
        let request_ends = cumulative(&mut plan.exchanges.iter().map(|e| e.request));
        let response_ends = cumulative(&mut plan.exchanges.iter().map(|e| e.response));
        let new_end = || Endpoint {
            cwnd: INITIAL_CWND,
            ssthresh: u32::MAX,
            app_end: 1,        // data starts after the SYN
            rto_us: 1_000_000, // RFC 6298 2.1, before any RTT sample
            ..Endpoint::default()
        };
        Simulation {
            plan,
            rng,
            now: plan.start_us,
            next_order: 0,
            events: BinaryHeap::new(),
            ends: [new_end(), new_end()],
            request_ends,
            response_ends,
            requests_done: 0,
            responses_done: 0,
            packets: Vec::new(),
            drops: 0,
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.events.push(Reverse((at, self.next_order, event)));
        self.next_order += 1;
    }

    fn run(&mut self) {
        self.send_syn();
        while let Some(Reverse((at, _, event))) = self.events.pop() {
            self.now = at;
            match event {
                Event::Arrive { to, wire } => self.arrive(to, wire),
                Event::Rto { side, generation } => {
                    let end = &self.ends[side];
                    if end.rto_armed && end.rto_generation == generation && !end.closed {
                        self.retransmission_timeout(side);
                    }
                }
                Event::DelayedAck { side, generation } => {
                    let end = &self.ends[side];
                    if end.delack_armed && end.delack_generation == generation && !end.closed {
                        self.send_ack(side);
                    }
                }
                Event::Request(k) => {
                    self.ends[CLIENT].app_end = self.request_ends[k];
                    self.output(CLIENT);
                }
                Event::Response(k) => {
                    self.ends[SERVER].app_end = self.response_ends[k];
                    let last = k + 1 == self.plan.exchanges.len();
                    if last && self.plan.close == Close::ServerFirst {
                        self.ends[SERVER].fin_queued = true;
                    }
                    self.output(SERVER);
                }
                Event::Close(side) => {
                    self.ends[side].fin_queued = true;
                    self.output(side);
                }
                Event::Reset => self.send_reset(CLIENT),
            }
        }
    }

    /// One-way delay from `side` to the capture point.
    fn delay_to_tap(&self, side: usize) -> u64 {
        if side == CLIENT {
            self.plan.client_delay_us
        } else {
            self.plan.server_delay_us
        }
    }

    /// The window field `side` advertises after the handshake (scaled down).
    fn window_field(&self, side: usize) -> u16 {
        let field = self.plan.receive_window[side] >> self.plan.window_scale[side];
        field.min(u32::from(u16::MAX)) as u16
    }

    /// Current timestamp clock of `side` (milliseconds, as Linux's).
    fn tsval(&self, side: usize, at_us: u64) -> u32 {
        self.plan.ts_offset[side].wrapping_add((at_us / 1000) as u32)
    }

    /// Puts a segment on the wire from `side`: it takes its turn on the link, may be
    /// dropped before the capture point (data only), is recorded by the capture point,
    /// and arrives at the other side. `resend` says why, for a retransmission.
    fn transmit(&mut self, side: usize, wire: Wire, options: TcpOptionSet, resend: Option<Cause>) {
        let option_len = match options {
            TcpOptionSet::None => 0,
            TcpOptionSet::Syn { .. } => 20,
            TcpOptionSet::Timestamps { sack_len, .. } => {
                12 + if sack_len > 0 {
                    4 + 8 * u64::from(sack_len)
                } else {
                    0
                }
            }
        };
        let bits = (WIRE_OVERHEAD + option_len + u64::from(wire.len)) * 8;
        let end = &mut self.ends[side];
        let leave_at = self.now.max(end.link_free_us);
        end.link_free_us = leave_at + (bits * 1_000_000).div_ceil(self.plan.link_bps[side]);

        if wire.len > 0 && self.plan.loss > 0.0 && self.rng.gen_bool(self.plan.loss) {
            self.drops += 1;
            return;
        }
        let at_tap = leave_at + self.delay_to_tap(side);
        self.record(side, at_tap, &wire, options, resend);
        let arrive_at = leave_at + self.plan.client_delay_us + self.plan.server_delay_us;
        self.schedule(arrive_at, Event::Arrive { to: 1 - side, wire });
    }

    /// The capture point sees `wire` from `side` at `at`: store the packet, with raw
    /// sequence numbers (the books are kept afterwards, in capture order: [`account`]).
    fn record(
        &mut self,
        side: usize,
        at: u64,
        wire: &Wire,
        options: TcpOptionSet,
        resend: Option<Cause>,
    ) {
        let window = if wire.flags & RST != 0 {
            0
        } else if wire.flags & SYN != 0 {
            if side == CLIENT {
                CLIENT_SYN_WINDOW
            } else {
                SERVER_SYN_WINDOW
            }
        } else {
            self.window_field(side)
        };
        let other = 1 - side;
        let to_raw = |isn: u32, relative: u64| isn.wrapping_add(relative as u32);
        let options = match options {
            TcpOptionSet::Timestamps { tsval, tsecr, .. } => {
                let mut sack = [(0, 0); MAX_SACK_BLOCKS];
                for (raw, &(left, right)) in sack.iter_mut().zip(&wire.sack) {
                    *raw = (
                        to_raw(self.plan.isn[other], left),
                        to_raw(self.plan.isn[other], right),
                    );
                }
                TcpOptionSet::Timestamps {
                    tsval,
                    tsecr,
                    sack,
                    sack_len: wire.sack_len,
                }
            }
            other_options => other_options,
        };
        self.packets.push(Segment {
            time_us: at,
            from_client: side == CLIENT,
            seq: to_raw(self.plan.isn[side], wire.seq),
            ack: if wire.flags & ACK != 0 {
                to_raw(self.plan.isn[other], wire.ack)
            } else {
                0
            },
            flags: wire.flags,
            window,
            len: wire.len,
            stream_offset: wire.seq.saturating_sub(1),
            options,
            rel_seq: wire.seq,
            rel_ack: wire.ack,
            resend,
        });
    }

    fn send_syn(&mut self) {
        let client = &mut self.ends[CLIENT];
        client.snd_nxt = 1;
        client.snd_una = 0;
        let wire = Wire {
            seq: 0,
            len: 0,
            flags: SYN,
            ack: 0,
            tsval: self.tsval(CLIENT, self.now),
            sack: [(0, 0); MAX_SACK_BLOCKS],
            sack_len: 0,
        };
        let options = TcpOptionSet::Syn {
            mss: MSS,
            window_scale: self.plan.window_scale[CLIENT],
            tsval: wire.tsval,
            tsecr: 0,
        };
        self.transmit(CLIENT, wire, options, None);
    }

    /// The options of a segment `side` sends now, with SACK blocks when asked.
    fn timestamp_options(&self, side: usize, tsval: u32) -> TcpOptionSet {
        TcpOptionSet::Timestamps {
            tsval,
            tsecr: self.ends[side].ts_recent,
            sack: [(0, 0); MAX_SACK_BLOCKS],
            sack_len: 0,
        }
    }

    /// The SACK blocks `side` reports: the block holding the latest out-of-order
    /// arrival first, then the others from the highest down (RFC 2018 section 4).
    fn sack_blocks(&self, side: usize) -> ([(u64, u64); MAX_SACK_BLOCKS], u8) {
        let end = &self.ends[side];
        let mut blocks = [(0, 0); MAX_SACK_BLOCKS];
        let mut count = 0;
        let latest = end
            .ooo
            .iter()
            .copied()
            .find(|&(s, e)| s <= end.last_ooo.0 && end.last_ooo.1 <= e);
        if let Some(block) = latest {
            blocks[0] = block;
            count = 1;
        }
        for &block in end.ooo.iter().rev() {
            if count == MAX_SACK_BLOCKS {
                break;
            }
            if Some(block) != latest {
                blocks[count] = block;
                count += 1;
            }
        }
        (blocks, count as u8)
    }

    /// A pure ACK from `side` (with SACK blocks when data is held out of order).
    fn send_ack(&mut self, side: usize) {
        let tsval = self.tsval(side, self.now);
        let (sack, sack_len) = self.sack_blocks(side);
        let end = &mut self.ends[side];
        end.unacked_segments = 0;
        end.delack_armed = false;
        let wire = Wire {
            seq: end.snd_nxt,
            len: 0,
            flags: ACK,
            ack: end.rcv_nxt,
            tsval,
            sack,
            sack_len,
        };
        let options = self.timestamp_options(side, tsval);
        self.transmit(side, wire, options, None);
    }

    fn send_reset(&mut self, side: usize) {
        let end = &mut self.ends[side];
        end.closed = true;
        let wire = Wire {
            seq: end.snd_nxt,
            len: 0,
            flags: RST | ACK,
            ack: end.rcv_nxt,
            tsval: 0,
            sack: [(0, 0); MAX_SACK_BLOCKS],
            sack_len: 0,
        };
        self.transmit(side, wire, TcpOptionSet::None, None);
    }

    /// Sends one data segment (or FIN) covering [start, end) from `side`.
    fn send_segment(
        &mut self,
        side: usize,
        start: u64,
        end: u64,
        fin: bool,
        resend: Option<Cause>,
    ) {
        let tsval = self.tsval(side, self.now);
        let endpoint = &mut self.ends[side];
        // Any segment carries the current acknowledgment: a pending delayed ACK rides on it.
        endpoint.unacked_segments = 0;
        endpoint.delack_armed = false;
        let len = (end - start - u64::from(fin)) as u32;
        let mut flags = ACK;
        if fin {
            flags |= FIN;
        } else if end == endpoint.app_end {
            flags |= PSH; // the last segment of what the application wrote
        }
        let wire = Wire {
            seq: start,
            len,
            flags,
            ack: endpoint.rcv_nxt,
            tsval,
            sack: [(0, 0); MAX_SACK_BLOCKS],
            sack_len: 0,
        };
        if !endpoint.rto_armed {
            self.arm_rto(side);
        }
        let options = self.timestamp_options(side, tsval);
        self.transmit(side, wire, options, resend);
    }

    fn arm_rto(&mut self, side: usize) {
        let end = &mut self.ends[side];
        end.rto_generation += 1;
        end.rto_armed = true;
        let (at, generation) = (self.now + end.rto_us, end.rto_generation);
        self.schedule(at, Event::Rto { side, generation });
    }

    /// Sends what `side` may send now: segments declared lost first, then new data
    /// within the congestion and receive windows, then the FIN.
    fn output(&mut self, side: usize) {
        if self.ends[side].closed {
            return;
        }
        // Resend lost segments: the first unacknowledged one always (so recovery never
        // stalls), the others while the pipe has room.
        loop {
            let end = &self.ends[side];
            let pipe = end.pipe();
            let next = end
                .inflight
                .iter()
                .enumerate()
                .find(|(_, s)| s.lost.is_some() && !s.sacked);
            let Some((index, sent)) = next else { break };
            if index > 0 && pipe >= end.cwnd {
                break;
            }
            let (start, stop, fin) = (sent.start, sent.end, sent.fin);
            let cause = sent.lost;
            let now = self.now;
            let entry = &mut self.ends[side].inflight[index];
            entry.lost = None;
            entry.transmissions += 1;
            entry.sent_us = now;
            if index == 0 {
                // Resending the oldest segment restarts the timer (as Linux does), or a
                // timer started long before would fire right after a fast
                // retransmission and send the same segment again.
                self.arm_rto(side);
            }
            self.send_segment(side, start, stop, fin, cause);
        }
        let peer_window = u64::from(self.plan.receive_window[1 - side]);
        loop {
            let end = &self.ends[side];
            if end.recover.is_some() || end.pipe() >= end.cwnd {
                // Like Reno: no new data during fast recovery, so a resent segment is
                // never mistaken for one sent out of order.
                break;
            }
            if end.snd_nxt < end.app_end {
                let stop = (end.snd_nxt + u64::from(SEGMENT_DATA)).min(end.app_end);
                // Stay a full segment short of the peer's window: never "window full".
                if stop - end.snd_una + u64::from(SEGMENT_DATA) > peer_window {
                    break;
                }
                let start = end.snd_nxt;
                self.push_inflight(side, start, stop, false);
                self.send_segment(side, start, stop, false, None);
            } else if end.fin_queued && !end.fin_sent {
                let start = end.snd_nxt;
                self.ends[side].fin_sent = true;
                self.push_inflight(side, start, start + 1, true);
                self.send_segment(side, start, start + 1, true, None);
            } else {
                break;
            }
        }
    }

    fn push_inflight(&mut self, side: usize, start: u64, end: u64, fin: bool) {
        let now = self.now;
        let endpoint = &mut self.ends[side];
        endpoint.snd_nxt = end;
        endpoint.inflight.push_back(Sent {
            start,
            end,
            fin,
            sent_us: now,
            transmissions: 1,
            sacked: false,
            lost: None,
        });
    }

    fn retransmission_timeout(&mut self, side: usize) {
        let end = &mut self.ends[side];
        end.rto_armed = false;
        if end.inflight.is_empty() {
            return;
        }
        end.rto_us = (end.rto_us * 2).min(MAX_RTO_US); // back off (RFC 6298 5.5)
        end.ssthresh = (end.pipe() / 2).max(2);
        end.cwnd = 1;
        end.cwnd_credit = 0;
        end.dupacks = 0;
        end.recover = None;
        for sent in end.inflight.iter_mut().filter(|s| !s.sacked) {
            sent.lost = Some(Cause::Timeout);
        }
        self.output(side);
        if !self.ends[side].rto_armed {
            self.arm_rto(side);
        }
    }

    /// A segment reaches `side`.
    fn arrive(&mut self, side: usize, wire: Wire) {
        if self.ends[side].closed {
            return;
        }
        if wire.flags & RST != 0 {
            let end = &mut self.ends[side];
            end.closed = true;
            end.rto_armed = false;
            end.delack_armed = false;
            return;
        }
        if wire.flags & SYN != 0 {
            self.arrive_syn(side, wire);
            return;
        }
        self.ends[side].ts_recent = wire.tsval;
        if wire.flags & ACK != 0 {
            self.take_ack(side, &wire);
        }
        if wire.space() > 0 {
            self.take_data(side, &wire);
        }
        self.output(side);
    }

    fn arrive_syn(&mut self, side: usize, wire: Wire) {
        // The handshake is answered without the processing time other ACKs take: the
        // handshake's round trip is then the shortest the connection sees, and tshark,
        // which takes any resent segment within that time of the highest one for
        // "out-of-order", never confuses a retransmission with one.
        let now = self.now;
        if side == SERVER {
            // A SYN: answer with SYN-ACK, or with RST when nothing listens.
            let server = &mut self.ends[SERVER];
            server.rcv_nxt = 1;
            server.ts_recent = wire.tsval;
            if self.plan.refused {
                server.closed = true;
                let reply = Wire {
                    seq: 0,
                    len: 0,
                    flags: RST | ACK,
                    ack: 1,
                    tsval: 0,
                    sack: [(0, 0); MAX_SACK_BLOCKS],
                    sack_len: 0,
                };
                self.transmit(SERVER, reply, TcpOptionSet::None, None);
                return;
            }
            server.snd_nxt = 1;
            server.snd_una = 0;
            let tsval = self.tsval(SERVER, now);
            let reply = Wire {
                seq: 0,
                len: 0,
                flags: SYN | ACK,
                ack: 1,
                tsval,
                sack: [(0, 0); MAX_SACK_BLOCKS],
                sack_len: 0,
            };
            let options = TcpOptionSet::Syn {
                mss: MSS,
                window_scale: self.plan.window_scale[SERVER],
                tsval,
                tsecr: wire.tsval,
            };
            self.ends[SERVER].syn_ack_sent_us = now;
            self.transmit(SERVER, reply, options, None);
        } else {
            // The SYN-ACK: the handshake's RTT is the client's first sample; ACK it and
            // send the first request after the client's think time.
            let client = &mut self.ends[CLIENT];
            client.rcv_nxt = 1;
            client.snd_una = 1;
            client.ts_recent = wire.tsval;
            client.sample_rtt(self.now - self.plan.start_us);
            self.send_ack(CLIENT);
            if let Some(first) = self.plan.exchanges.first() {
                self.schedule(now + first.think_us, Event::Request(0));
            }
        }
    }

    /// Processes the acknowledgment (and SACK blocks) of a segment arriving at `side`.
    fn take_ack(&mut self, side: usize, wire: &Wire) {
        let now = self.now;
        let end = &mut self.ends[side];
        if end.snd_una == 0 && wire.ack >= 1 {
            // The handshake's last ACK reaches the server: its first RTT sample.
            end.snd_una = 1;
            let rtt = now.saturating_sub(end.syn_ack_sent_us);
            end.sample_rtt(rtt);
            return;
        }
        if wire.sack_len > 0 {
            end.take_sack(&wire.sack[..usize::from(wire.sack_len)]);
        }
        if wire.ack > end.snd_una {
            let mut acked = 0;
            let mut sample = None;
            while let Some(first) = end.inflight.front() {
                if first.end > wire.ack {
                    break;
                }
                // Karn's rule: only a segment sent once gives an RTT sample.
                if first.transmissions == 1 {
                    sample = Some(now - first.sent_us);
                }
                acked += 1;
                end.inflight.pop_front();
            }
            end.snd_una = wire.ack;
            end.dupacks = 0;
            if let Some(rtt) = sample {
                end.sample_rtt(rtt);
            }
            match end.recover {
                Some(recover) if wire.ack >= recover => {
                    end.recover = None;
                    end.cwnd = end.ssthresh.max(1);
                }
                Some(_) => {
                    // A partial ACK: the next hole is lost too (NewReno, RFC 6582).
                    if let Some(first) = end.inflight.front_mut() {
                        if !first.sacked {
                            first.lost = Some(Cause::PartialAck);
                        }
                    }
                }
                None => {
                    if end.cwnd < end.ssthresh {
                        end.cwnd += acked; // slow start
                    } else {
                        end.cwnd_credit += acked; // congestion avoidance
                        if end.cwnd_credit >= end.cwnd {
                            end.cwnd_credit -= end.cwnd;
                            end.cwnd += 1;
                        }
                    }
                }
            }
            // Restart the timer for what is still outstanding (RFC 6298 5.3).
            if end.inflight.is_empty() {
                end.rto_armed = false;
            } else {
                self.arm_rto(side);
            }
        } else if wire.ack == end.snd_una
            && wire.len == 0
            && wire.flags & FIN == 0
            && !end.inflight.is_empty()
        {
            end.dupacks += 1;
            if end.dupacks == DUP_ACK_THRESHOLD && end.recover.is_none() {
                end.ssthresh = (end.pipe() / 2).max(2);
                end.cwnd = end.ssthresh;
                end.recover = Some(end.snd_nxt);
                if let Some(first) = end.inflight.front_mut() {
                    if !first.sacked {
                        first.lost = Some(Cause::Fast);
                    }
                }
            }
        }
    }

    /// Takes in the data or FIN of a segment arriving at `side`, and acknowledges it.
    fn take_data(&mut self, side: usize, wire: &Wire) {
        let start = wire.seq;
        let stop = wire.seq + wire.space();
        let end = &mut self.ends[side];
        if stop <= end.rcv_nxt || end.ooo.iter().any(|&(s, e)| s <= start && stop <= e) {
            // Already have it: say so at once.
            self.ack_now(side);
            return;
        }
        if start > end.rcv_nxt {
            // Out of order: hold it and send a duplicate ACK with SACK blocks at once.
            insert_range(&mut end.ooo, (start, stop));
            end.last_ooo = (start, stop);
            self.ack_now(side);
            return;
        }
        let filled_gap = !end.ooo.is_empty();
        end.rcv_nxt = stop;
        // Pull in whatever the hole was holding back.
        while let Some(&(s, e)) = end.ooo.first() {
            if s > end.rcv_nxt {
                break;
            }
            end.rcv_nxt = end.rcv_nxt.max(e);
            end.ooo.remove(0);
        }
        let fin_now = !end.fin_received && self.fin_reached(side);
        if fin_now {
            self.ends[side].fin_received = true;
        }
        self.deliver(side);
        if fin_now {
            self.peer_closed(side);
        } else if filled_gap || (side == CLIENT && self.plan.quick_ack) {
            self.ack_now(side);
        } else {
            let end = &mut self.ends[side];
            end.unacked_segments += 1;
            if end.unacked_segments >= 2 {
                self.ack_now(side);
            } else if !end.delack_armed {
                end.delack_armed = true;
                end.delack_generation += 1;
                let generation = end.delack_generation;
                self.schedule(
                    self.now + DELAYED_ACK_US,
                    Event::DelayedAck { side, generation },
                );
            }
        }
    }

    /// Whether everything up to the peer's FIN has arrived at `side`.
    fn fin_reached(&self, side: usize) -> bool {
        let peer = &self.ends[1 - side];
        peer.fin_sent && self.ends[side].rcv_nxt == peer.app_end + 1
    }

    fn ack_now(&mut self, side: usize) {
        self.now += ACK_PROCESSING_US;
        self.send_ack(side);
        self.now -= ACK_PROCESSING_US;
    }

    /// The application at `side` reads what arrived in order: the server answers
    /// complete requests, the client sends its next request or ends the connection.
    fn deliver(&mut self, side: usize) {
        let received = self.ends[side].rcv_nxt;
        if side == SERVER {
            while self.requests_done < self.request_ends.len()
                && self.request_ends[self.requests_done] <= received
            {
                let k = self.requests_done;
                self.requests_done += 1;
                self.schedule(
                    self.now + self.plan.exchanges[k].server_us,
                    Event::Response(k),
                );
            }
            return;
        }
        while self.responses_done < self.response_ends.len()
            && self.response_ends[self.responses_done] <= received
        {
            self.responses_done += 1;
            let k = self.responses_done;
            if k < self.plan.exchanges.len() {
                self.schedule(
                    self.now + self.plan.exchanges[k].think_us,
                    Event::Request(k),
                );
            } else {
                let at = self.now + self.plan.close_delay_us;
                match self.plan.close {
                    Close::ClientFourWay | Close::ClientThreeWay => {
                        self.schedule(at, Event::Close(CLIENT))
                    }
                    Close::ClientReset => self.schedule(at, Event::Reset),
                    Close::ServerFirst => {}
                }
            }
        }
    }

    /// The peer's FIN has arrived at `side`, in order.
    fn peer_closed(&mut self, side: usize) {
        let own_fin_sent = self.ends[side].fin_sent;
        if side == SERVER && self.plan.close == Close::ClientThreeWay && !own_fin_sent {
            // Close at once: the FIN carries the ACK of the client's FIN.
            self.ends[SERVER].fin_queued = true;
            self.now += ACK_PROCESSING_US;
            self.output(SERVER);
            self.now -= ACK_PROCESSING_US;
            return;
        }
        self.ack_now(side);
        if !own_fin_sent {
            self.schedule(self.now + self.plan.close_delay_us, Event::Close(side));
        }
    }
}

/// Inserts [start, end) into sorted, disjoint ranges, merging neighbours.
fn insert_range(ranges: &mut Vec<(u64, u64)>, (start, end): (u64, u64)) {
    let at = ranges.partition_point(|&(s, _)| s < start);
    ranges.insert(at, (start, end));
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const CLIENT_ISN: u32 = 0xffff_ff00; // wraps during the response: arithmetic mod 2^32
    const SERVER_ISN: u32 = 1_000;

    fn plan(request: u32, response: u32, close: Close, loss: f64) -> ConnectionPlan {
        ConnectionPlan {
            start_us: 1_000,
            client_delay_us: 10_000,
            server_delay_us: 200,
            link_bps: [100_000_000, 1_000_000_000],
            isn: [CLIENT_ISN, SERVER_ISN],
            ts_offset: [7, 9],
            window_scale: [7, 7],
            receive_window: [256 * 1024, 256 * 1024],
            exchanges: vec![Exchange {
                request,
                response,
                think_us: 100,
                server_us: 500,
            }],
            close,
            close_delay_us: 1_000,
            quick_ack: false,
            refused: false,
            loss,
        }
    }

    fn run(plan: &ConnectionPlan, seed: u64) -> (Vec<Segment>, TcpCounts) {
        simulate(plan, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    /// (from_client, relative seq, len, relative ack, flags) of each packet.
    fn outline(packets: &[Segment]) -> Vec<(bool, u32, u32, u32, u16)> {
        packets
            .iter()
            .map(|p| {
                let (own, peer) = if p.from_client {
                    (CLIENT_ISN, SERVER_ISN)
                } else {
                    (SERVER_ISN, CLIENT_ISN)
                };
                let ack = if p.flags & ACK != 0 {
                    p.ack.wrapping_sub(peer)
                } else {
                    0
                };
                (p.from_client, p.seq.wrapping_sub(own), p.len, ack, p.flags)
            })
            .collect()
    }

    #[test]
    fn clean_exchange_has_exact_sequence_and_ack_numbers() {
        let (packets, stats) = run(&plan(100, 3000, Close::ClientFourWay, 0.0), 1);
        let c = true;
        let s = false;
        assert_eq!(
            outline(&packets),
            vec![
                (c, 0, 0, 0, SYN),
                (s, 0, 0, 1, SYN | ACK), // ack = client ISN + 1
                (c, 1, 0, 1, ACK),
                (c, 1, 100, 1, ACK | PSH),
                // The response, cut into full segments, each acknowledging the request.
                (s, 1, 1448, 101, ACK),
                (s, 1449, 1448, 101, ACK),
                (s, 2897, 104, 101, ACK | PSH),
                // Delayed ACK: one ACK for the first two segments...
                (c, 101, 0, 2897, ACK),
                // ...and the third is acknowledged by the FIN, which comes first.
                (c, 101, 0, 3001, ACK | FIN),
                (s, 3001, 0, 102, ACK),
                (s, 3001, 0, 102, ACK | FIN),
                (c, 102, 0, 3002, ACK),
            ]
        );
        assert_eq!(stats, TcpCounts::default());
        // The handshake carries the options; the SYN-ACK echoes the SYN's timestamp.
        let TcpOptionSet::Syn { tsval, .. } = packets[0].options else {
            panic!("the SYN carries SYN options")
        };
        assert!(matches!(
            packets[1].options,
            TcpOptionSet::Syn { mss: MSS, window_scale: 7, tsecr, .. } if tsecr == tsval
        ));
        assert_eq!((packets[0].window, packets[1].window), (64_240, 65_160));
        assert!(packets[2..]
            .iter()
            .all(|p| u32::from(p.window) == (256 * 1024) >> 7));
    }

    #[test]
    fn three_way_close_and_reset() {
        let (packets, _) = run(&plan(10, 10, Close::ClientThreeWay, 0.0), 1);
        let tail: Vec<_> = outline(&packets).into_iter().rev().take(3).collect();
        assert_eq!(
            tail,
            vec![
                (true, 12, 0, 12, ACK),
                (false, 11, 0, 12, ACK | FIN), // the server's FIN acknowledges the client's
                (true, 11, 0, 11, ACK | FIN),
            ]
        );
        let (packets, stats) = run(&plan(10, 10, Close::ClientReset, 0.0), 1);
        let last = packets.last().unwrap();
        assert_eq!((last.from_client, last.flags), (true, RST | ACK));
        assert_eq!(stats.resets, 1);
    }

    #[test]
    fn refused_connection_is_a_syn_and_a_reset() {
        let mut refused = plan(10, 10, Close::ClientFourWay, 0.0);
        refused.refused = true;
        let (packets, stats) = run(&refused, 1);
        assert_eq!(
            outline(&packets),
            vec![(true, 0, 0, 0, SYN), (false, 0, 0, 1, RST | ACK)]
        );
        assert_eq!(stats.resets, 1);
    }

    /// The highest acknowledgment each side sent, relative to the other's ISN.
    fn final_acks(packets: &[Segment]) -> (u32, u32) {
        let rel = outline(packets);
        let last = |client: bool| {
            rel.iter()
                .filter(|p| p.0 == client && p.4 & ACK != 0)
                .map(|p| p.3)
                .max()
                .unwrap()
        };
        (last(true), last(false))
    }

    #[test]
    fn lost_segments_are_resent_until_everything_is_acknowledged() {
        let mut resent = 0;
        let mut drops = 0;
        let mut fast = 0;
        for seed in 0..40 {
            let (packets, stats) = run(&plan(4000, 100_000, Close::ClientFourWay, 0.05), seed);
            // Both streams and both FINs arrive whatever was lost.
            assert_eq!(final_acks(&packets), (100_000 + 2, 4000 + 2), "seed {seed}");
            // A resent segment can be lost again (a drop the capture never shows), so
            // resends seen are at least the drops less those: at least one per loss.
            if stats.drops > 0 {
                assert!(stats.retransmissions + stats.unseen_retransmissions > 0);
            }
            assert!(stats.fast_retransmissions <= stats.retransmissions);
            // Each direction leaves the capture point in time order.
            for side in [true, false] {
                let times: Vec<u64> = packets
                    .iter()
                    .filter(|p| p.from_client == side)
                    .map(|p| p.time_us)
                    .collect();
                assert!(times.windows(2).all(|w| w[0] < w[1]), "seed {seed}");
            }
            resent += stats.retransmissions + stats.unseen_retransmissions;
            drops += stats.drops;
            fast += stats.fast_retransmissions;
        }
        assert!(drops > 100, "5% of ~3,000 data segments: {drops}");
        assert!(
            resent * 10 >= drops * 9,
            "{resent} resent for {drops} drops"
        );
        assert!(fast > 0, "large flights recover by fast retransmission");
    }

    #[test]
    fn a_lost_lone_request_is_resent_after_the_timeout() {
        // Search a seed whose only drop is the single request segment.
        let plan = plan(100, 100, Close::ClientFourWay, 0.5);
        let (packets, stats) = (0..100)
            .map(|seed| run(&plan, seed))
            .find(|(packets, stats)| {
                stats.drops == 1
                    && packets
                        .iter()
                        .filter(|p| p.from_client && p.len == 100)
                        .count()
                        == 1
                    && packets
                        .iter()
                        .filter(|p| !p.from_client && p.len == 100)
                        .count()
                        == 1
                    && stats.unseen_retransmissions == 1
            })
            .expect("some seed drops just the request");
        let ack = packets
            .iter()
            .position(|p| p.from_client && p.len == 0)
            .unwrap();
        let request = packets
            .iter()
            .position(|p| p.from_client && p.len == 100)
            .unwrap();
        // Nothing acknowledged it, so it went again after at least the minimum RTO,
        // and the capture cannot tell it from a first transmission.
        assert!(packets[request].time_us - packets[ack].time_us >= MIN_RTO_US);
        assert_eq!(stats.retransmissions, 0);
    }

    /// A packet for [`account`], with relative numbers.
    fn seen(
        from_client: bool,
        seq: u64,
        len: u32,
        ack: u64,
        flags: u16,
        resend: Option<Cause>,
    ) -> Segment {
        Segment {
            time_us: 0,
            from_client,
            seq: seq as u32,
            ack: ack as u32,
            flags,
            window: 100,
            len,
            stream_offset: 0,
            options: TcpOptionSet::None,
            rel_seq: seq,
            rel_ack: ack,
            resend,
        }
    }

    #[test]
    fn books_are_kept_as_tshark_keeps_them() {
        let (c, s) = (true, false);
        let mut packets = vec![
            seen(c, 0, 0, 0, SYN, None),
            seen(s, 0, 0, 1, SYN | ACK, None),
            seen(c, 1, 0, 1, ACK, None),
            // Same numbers, another window: a window update, not a duplicate ACK.
            seen(c, 1, 0, 1, ACK, None),
            seen(s, 1, 100, 1, ACK, None),
            // 101..201 was lost before the capture point: a gap.
            seen(s, 201, 100, 1, ACK, None),
            seen(c, 1, 0, 101, ACK, None),
            seen(c, 1, 0, 101, ACK, None), // a duplicate ACK
            seen(s, 101, 100, 1, ACK, Some(Cause::Fast)),
            seen(c, 1, 0, 301, ACK, None),
            // Resent although the capture point already saw it acknowledged: spurious.
            seen(s, 201, 100, 1, ACK, Some(Cause::Timeout)),
            // A last segment lost and resent: the capture cannot tell.
            seen(s, 301, 50, 1, ACK | PSH, Some(Cause::Timeout)),
            seen(c, 1, 0, 351, ACK | RST, None),
        ];
        for packet in packets.iter_mut().skip(3).filter(|p| p.from_client) {
            packet.window = 200;
        }
        let stats = account(&packets);
        assert_eq!(
            stats,
            TcpCounts {
                drops: 0,
                retransmissions: 2,
                fast_retransmissions: 1,
                spurious_retransmissions: 1,
                unseen_retransmissions: 1,
                gaps: 1,
                duplicate_acks: 1,
                window_updates: 1,
                resets: 1,
            }
        );
    }

    #[test]
    fn ranges_merge() {
        let mut ranges = vec![(10, 20), (30, 40)];
        insert_range(&mut ranges, (20, 30));
        assert_eq!(ranges, vec![(10, 40)]);
        insert_range(&mut ranges, (50, 60));
        insert_range(&mut ranges, (0, 5));
        assert_eq!(ranges, vec![(0, 5), (10, 40), (50, 60)]);
    }
}
