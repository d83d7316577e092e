//! Lab 4, TCP sequence analysis of one connection: relative sequence numbers, scaled
//! windows, Wireshark's analysis marks, the frame each ACK acknowledges with its RTT,
//! and the Kurose & Ross RTT estimator.
//!
//! The rules follow Wireshark 4.0's `tcp_analyze_sequence_number` (packet-tcp.c) so that
//! a student can put socklab's output next to Wireshark's and find the same marks on
//! the same frames. The code is our own; where a rule looks odd, the comment says that
//! Wireshark does it that way and why.
//!
//! The TCP header the analysis reads (RFC 9293):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |          Source Port          |       Destination Port        |
//! +-------------------------------+-------------------------------+
//! |                        Sequence Number                        |
//! +---------------------------------------------------------------+
//! |                    Acknowledgment Number                      |
//! +-------+-------+---------------+-------------------------------+
//! | Offset| Rsrvd |     Flags     |            Window             |
//! +-------+-------+---------------+-------------------------------+
//! |           Checksum            |         Urgent Pointer        |
//! +-------------------------------+-------------------------------+
//! |                    Options (MSS, WS, SACK, TS)                |
//! +---------------------------------------------------------------+
//! ```
//!
//! Sequence numbers wrap at 2^32, so every comparison is done modulo 2^32
//! ([`seq_lt`], [`seq_gt`]), as RFC 9293 section 3.4 asks.

use super::packet::{tcp_flags, TcpSegment};

/// Wireshark's `TCP_MAX_UNACKED_SEGMENTS`: beyond this many unacknowledged segments in
/// one direction (the capture is missing the ACKs), new ones are not remembered. Keeps
/// memory per connection bounded.
const MAX_UNACKED_SEGMENTS: usize = 10_000;

/// A fast retransmission must follow the last duplicate ACK within this time
/// (Wireshark: 20 ms).
const FAST_RETRANSMISSION_WINDOW_US: i64 = 20_000;

/// Without a handshake RTT, a segment arriving this soon after the highest one seen is
/// "out-of-order" rather than a retransmission (Wireshark: 3 ms).
const DEFAULT_OUT_OF_ORDER_THRESHOLD_US: i64 = 3_000;

/// The largest window-scale shift RFC 7323 allows; Wireshark caps larger values too.
const MAX_WINDOW_SCALE_SHIFT: u8 = 14;

/// `a < b` in sequence space (modulo 2^32).
pub fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a > b` in sequence space (modulo 2^32).
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `a <= b` in sequence space (modulo 2^32).
pub fn seq_le(a: u32, b: u32) -> bool {
    !seq_gt(a, b)
}

/// The analysis marks of one segment, as a bitset (no allocation per segment).
///
/// Names and meaning are Wireshark's `tcp.analysis.*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Marks(u16);

impl Marks {
    /// No mark.
    pub const NONE: Marks = Marks(0);
    /// Data sent again after the sender's retransmission timer expired.
    pub const RETRANSMISSION: Marks = Marks(1 << 0);
    /// Data sent again right after two or more duplicate ACKs asked for it.
    pub const FAST_RETRANSMISSION: Marks = Marks(1 << 1);
    /// Data sent again although the receiver had already acknowledged it.
    pub const SPURIOUS_RETRANSMISSION: Marks = Marks(1 << 2);
    /// An older segment arriving shortly after newer ones (reordering, not loss).
    pub const OUT_OF_ORDER: Marks = Marks(1 << 3);
    /// An ACK repeating the previous ACK: the receiver is missing data.
    pub const DUPLICATE_ACK: Marks = Marks(1 << 4);
    /// A gap before this segment: the capture missed data (or the network lost it).
    pub const PREVIOUS_SEGMENT_NOT_CAPTURED: Marks = Marks(1 << 5);
    /// This ACK covers data the capture never showed.
    pub const ACKED_UNSEEN_SEGMENT: Marks = Marks(1 << 6);
    /// The sender advertises a window of zero: "stop sending, my buffer is full".
    pub const ZERO_WINDOW: Marks = Marks(1 << 7);
    /// One byte sent into a zero window, to learn when it opens again.
    pub const ZERO_WINDOW_PROBE: Marks = Marks(1 << 8);
    /// The ACK answering a zero-window probe.
    pub const ZERO_WINDOW_PROBE_ACK: Marks = Marks(1 << 9);
    /// This segment fills the receiver's advertised window exactly.
    pub const WINDOW_FULL: Marks = Marks(1 << 10);
    /// A pure ACK that only announces a new window.
    pub const WINDOW_UPDATE: Marks = Marks(1 << 11);
    /// A probe one byte before the next sequence number: "are you still there?".
    pub const KEEP_ALIVE: Marks = Marks(1 << 12);
    /// The answer to a keep-alive.
    pub const KEEP_ALIVE_ACK: Marks = Marks(1 << 13);

    /// Every mark with its Wireshark name, in the order views print them.
    pub const ALL: [(Marks, &'static str); 14] = [
        (Marks::RETRANSMISSION, "retransmission"),
        (Marks::FAST_RETRANSMISSION, "fast retransmission"),
        (Marks::SPURIOUS_RETRANSMISSION, "spurious retransmission"),
        (Marks::OUT_OF_ORDER, "out-of-order"),
        (Marks::DUPLICATE_ACK, "duplicate ack"),
        (
            Marks::PREVIOUS_SEGMENT_NOT_CAPTURED,
            "previous segment not captured",
        ),
        (Marks::ACKED_UNSEEN_SEGMENT, "ACKed unseen segment"),
        (Marks::ZERO_WINDOW, "zero window"),
        (Marks::ZERO_WINDOW_PROBE, "zero window probe"),
        (Marks::ZERO_WINDOW_PROBE_ACK, "zero window probe ack"),
        (Marks::WINDOW_FULL, "window full"),
        (Marks::WINDOW_UPDATE, "window update"),
        (Marks::KEEP_ALIVE, "keep-alive"),
        (Marks::KEEP_ALIVE_ACK, "keep-alive ack"),
    ];

    /// Any of the three kinds of retransmission.
    pub const ANY_RETRANSMISSION: Marks = Marks(
        Marks::RETRANSMISSION.0 | Marks::FAST_RETRANSMISSION.0 | Marks::SPURIOUS_RETRANSMISSION.0,
    );

    /// Whether every mark in `other` is set.
    pub fn contains(self, other: Marks) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any mark in `other` is set.
    pub fn intersects(self, other: Marks) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no mark is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the marks in `other`.
    pub fn insert(&mut self, other: Marks) {
        self.0 |= other.0;
    }

    /// The names of the marks set, in [`Marks::ALL`] order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Marks::ALL
            .into_iter()
            .filter(move |(mark, _)| self.contains(*mark))
            .map(|(_, name)| name)
    }

    /// Whether the mark is a problem (drawn in red, like Wireshark's black rows) rather
    /// than a note (yellow).
    pub fn is_problem(self) -> bool {
        self.intersects(Marks(
            Marks::ANY_RETRANSMISSION.0
                | Marks::OUT_OF_ORDER.0
                | Marks::DUPLICATE_ACK.0
                | Marks::PREVIOUS_SEGMENT_NOT_CAPTURED.0
                | Marks::ACKED_UNSEEN_SEGMENT.0
                | Marks::ZERO_WINDOW.0,
        ))
    }
}

impl std::ops::BitOr for Marks {
    type Output = Marks;
    fn bitor(self, rhs: Marks) -> Marks {
        Marks(self.0 | rhs.0)
    }
}

/// Which way a segment or datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (the SYN sender, else the first sender) to the server.
    ClientToServer,
    /// From the server back to the client.
    ServerToClient,
}

impl Direction {
    /// 0 for client→server, 1 for server→client: an index into per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// An arrow for tables: `→` client to server, `←` back.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::ClientToServer => "→",
            Direction::ServerToClient => "←",
        }
    }

    /// A stable name for JSON: `c2s` or `s2c`.
    pub fn short_name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }
}

/// One round of the Kurose & Ross RTT estimator (RFC 6298 with alpha 1/8, beta 1/4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttEstimate {
    /// SampleRTT: this ACK's time minus the time of the segment it acknowledges, in µs.
    pub sample_us: i64,
    /// EstimatedRTT = 7/8 EstimatedRTT + 1/8 SampleRTT (the first one is the sample).
    pub estimated_us: f64,
    /// DevRTT = 3/4 DevRTT + 1/4 |SampleRTT − EstimatedRTT| (the first one is
    /// SampleRTT / 2, as RFC 6298 initialises RTTVAR).
    pub dev_us: f64,
}

impl RttEstimate {
    /// The retransmission timeout K&R derive from it: EstimatedRTT + 4 DevRTT, in µs.
    pub fn timeout_us(&self) -> f64 {
        self.estimated_us + 4.0 * self.dev_us
    }
}

/// Kurose & Ross's alpha: the weight of a new sample in EstimatedRTT.
const RTT_ALPHA: f64 = 1.0 / 8.0;
/// Kurose & Ross's beta: the weight of a new deviation in DevRTT.
const RTT_BETA: f64 = 1.0 / 4.0;

/// The running EstimatedRTT / DevRTT of one direction's data.
#[derive(Debug, Clone, Copy, Default)]
struct RttEstimator {
    state: Option<(f64, f64)>,
}

impl RttEstimator {
    fn update(&mut self, sample_us: i64) -> RttEstimate {
        let sample = sample_us as f64;
        let (estimated, dev) = match self.state {
            None => (sample, sample / 2.0),
            Some((estimated, dev)) => {
                // RFC 6298 updates DevRTT with the *old* estimate, then the estimate.
                let dev = (1.0 - RTT_BETA) * dev + RTT_BETA * (sample - estimated).abs();
                let estimated = (1.0 - RTT_ALPHA) * estimated + RTT_ALPHA * sample;
                (estimated, dev)
            }
        };
        self.state = Some((estimated, dev));
        RttEstimate {
            sample_us,
            estimated_us: estimated,
            dev_us: dev,
        }
    }
}

/// What the analysis says about one TCP segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentInfo {
    /// The connection's index, numbered from 0 in order of first appearance, as
    /// Wireshark's `tcp.stream`.
    pub stream: u64,
    /// Which way the segment goes.
    pub direction: Direction,
    /// Sequence number relative to the sender's ISN (the SYN is 0; without a SYN the
    /// first segment seen is 1, as Wireshark does).
    pub rel_seq: u32,
    /// Acknowledgment number relative to the peer's ISN, when the ACK flag is set.
    pub rel_ack: Option<u32>,
    /// The relative sequence number after this segment (SYN and FIN count one).
    pub rel_next_seq: u32,
    /// Payload bytes (from the IP header's length, not the captured bytes).
    pub len: u32,
    /// TCP flags, see [`tcp_flags`].
    pub flags: u16,
    /// The window field as sent.
    pub window: u16,
    /// The window in bytes: shifted by the sender's window-scale option when both SYNs
    /// carried one; SYN segments are never scaled; unknown scale leaves it raw.
    pub scaled_window: u32,
    /// Wireshark's analysis marks.
    pub marks: Marks,
    /// For a duplicate ACK: which one it is (1, 2, 3...) and the frame it repeats.
    pub duplicate_ack: Option<(u32, u64)>,
    /// The frame whose data (or SYN/FIN) this ACK acknowledges (`tcp.analysis.acks_frame`).
    pub acks_frame: Option<u64>,
    /// Time from that frame to this ACK, µs (`tcp.analysis.ack_rtt`).
    pub ack_rtt_us: Option<i64>,
    /// The K&R estimator after this ACK, when it acknowledges data that was never
    /// retransmitted (Karn's rule: a retransmitted segment's ACK is ambiguous).
    pub rtt: Option<RttEstimate>,
}

/// Whether the window scale of one direction is known (Wireshark's `win_scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowScale {
    /// No SYN seen from this side yet (-1).
    Unknown,
    /// A SYN without the option, or the peer did not agree: windows are raw (-2).
    NotUsed,
    /// Windows from this side are shifted left by this many bits.
    Shift(u8),
}

/// A segment sent but not yet acknowledged (Wireshark's `tcp_unacked_t`).
#[derive(Debug, Clone, Copy)]
struct Unacked {
    frame: u64,
    seq: u32,
    next_seq: u32,
    time_us: i64,
    has_data: bool,
    /// Karn's rule: this data was sent more than once, so its ACK gives no RTT sample.
    retransmitted: bool,
}

/// The state of one direction of a connection (Wireshark's `tcp_flow_t`).
#[derive(Debug, Clone)]
struct Side {
    base_seq: Option<u32>,
    win_scale: WindowScale,
    /// The last window this side advertised, raw.
    window: u16,
    /// The last segment from this side was its SYN: its window is not scaled
    /// (Wireshark's `is_first_ack`).
    last_was_syn: bool,
    /// Highest sequence number + length seen; 0 means "nothing yet", as in Wireshark.
    next_seq: u32,
    next_seq_frame: u64,
    next_seq_time_us: i64,
    /// Highest contiguous sequence number the peer may acknowledge.
    max_seq_to_be_acked: u32,
    /// The last ACK this side sent; 0 means "none yet".
    last_ack: u32,
    last_ack_time_us: i64,
    last_non_dup_ack_frame: u64,
    dup_ack_count: u32,
    last_marks: Marks,
    unacked: Vec<Unacked>,
    estimator: RttEstimator,
}

impl Default for Side {
    fn default() -> Self {
        Side {
            base_seq: None,
            win_scale: WindowScale::Unknown,
            window: 0,
            last_was_syn: false,
            next_seq: 0,
            next_seq_frame: 0,
            next_seq_time_us: 0,
            max_seq_to_be_acked: 0,
            last_ack: 0,
            last_ack_time_us: 0,
            last_non_dup_ack_frame: 0,
            dup_ack_count: 0,
            last_marks: Marks::NONE,
            unacked: Vec::new(),
            estimator: RttEstimator::default(),
        }
    }
}

/// The sequence analysis of one TCP connection, both directions.
#[derive(Debug, Clone, Default)]
pub struct TcpTracker {
    sides: [Side; 2],
    /// Time of the most recent SYN (without ACK), for the handshake RTT.
    last_syn_time_us: Option<i64>,
    /// Wireshark's `tcp.analysis.initial_rtt`: first ACK after the SYN minus the SYN.
    initial_rtt_us: Option<i64>,
}

impl TcpTracker {
    /// A tracker for a connection nothing has been seen of.
    pub fn new() -> Self {
        TcpTracker::default()
    }

    /// The handshake RTT (most recent SYN to the ACK completing the handshake), µs.
    pub fn initial_rtt_us(&self) -> Option<i64> {
        self.initial_rtt_us
    }

    /// The sender's initial sequence number as the analysis took it (for a connection
    /// seen without its SYN: the first seq minus one).
    pub fn base_seq(&self, direction: Direction) -> Option<u32> {
        self.sides[direction.index()].base_seq
    }

    /// Whether a SYN from `direction` with this sequence number starts a *new*
    /// connection on the same ports (Wireshark: a SYN whose seq differs from the ISN
    /// already known for that side).
    pub fn is_new_syn(&self, direction: Direction, segment: &TcpSegment<'_>) -> bool {
        segment.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && self.sides[direction.index()]
                .base_seq
                .is_some_and(|base| base != segment.seq)
    }

    /// Gives back spare room in the lists of unacknowledged segments (a closed
    /// connection rarely sends more), without forgetting anything.
    pub fn compact(&mut self) {
        for side in &mut self.sides {
            side.unacked.shrink_to_fit();
        }
    }

    /// Releases the memory of segments still waiting for an ACK (the connection is
    /// over); the marks of later segments may then miss `acks_frame`.
    pub fn shrink(&mut self) {
        for side in &mut self.sides {
            side.unacked = Vec::new();
        }
    }

    /// Analyses one segment going `direction`, seen in `frame` at `time_us`.
    pub fn analyze(
        &mut self,
        stream: u64,
        direction: Direction,
        frame: u64,
        time_us: i64,
        segment: &TcpSegment<'_>,
    ) -> SegmentInfo {
        let flags = segment.flags;
        let syn = flags & tcp_flags::SYN != 0;
        let has_ack = flags & tcp_flags::ACK != 0;

        // The handshake RTT, before the analysis as Wireshark does: the out-of-order
        // threshold of the handshake's own ACK already uses it.
        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
            self.last_syn_time_us = Some(time_us);
        }
        if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::ACK
            && self.initial_rtt_us.is_none()
        {
            if let Some(syn_time) = self.last_syn_time_us {
                self.initial_rtt_us = Some(time_us - syn_time);
            }
        }

        let (fwd_index, rev_index) = (direction.index(), direction.reverse().index());
        let analysis = self.analyze_sequence(fwd_index, rev_index, frame, time_us, segment);

        // The window-scale option is read after the analysis (Wireshark dissects the
        // options later), then checked against the peer's SYN.
        if syn {
            self.record_window_scale(fwd_index, rev_index, has_ack, segment);
        }
        let fwd = &mut self.sides[fwd_index];
        fwd.last_was_syn = syn;
        let scaled_window = match (syn, fwd.win_scale) {
            (false, WindowScale::Shift(shift)) => u32::from(segment.window) << shift,
            _ => u32::from(segment.window),
        };

        let base = fwd.base_seq.unwrap_or(segment.seq);
        let rel_seq = segment.seq.wrapping_sub(base);
        let extra = u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
        let rel_ack = if has_ack {
            let rev_base = self.sides[rev_index].base_seq.unwrap_or(segment.ack);
            Some(segment.ack.wrapping_sub(rev_base))
        } else {
            None
        };
        SegmentInfo {
            stream,
            direction,
            rel_seq,
            rel_ack,
            rel_next_seq: rel_seq
                .wrapping_add(segment.payload_len)
                .wrapping_add(extra),
            len: segment.payload_len,
            flags,
            window: segment.window,
            scaled_window,
            marks: analysis.marks,
            duplicate_ack: analysis.duplicate_ack,
            acks_frame: analysis.acks_frame,
            ack_rtt_us: analysis.ack_rtt_us,
            rtt: analysis.rtt,
        }
    }

    fn record_window_scale(
        &mut self,
        fwd: usize,
        rev: usize,
        is_syn_ack: bool,
        segment: &TcpSegment<'_>,
    ) {
        self.sides[fwd].win_scale = match segment.options.window_scale {
            Some(shift) => WindowScale::Shift(shift.min(MAX_WINDOW_SCALE_SHIFT)),
            None => WindowScale::NotUsed,
        };
        // RFC 7323 section 2.2: scaling is on only if both SYNs carry the option.
        if self.sides[fwd].win_scale == WindowScale::NotUsed {
            self.sides[rev].win_scale = WindowScale::NotUsed;
        } else if is_syn_ack && self.sides[rev].win_scale == WindowScale::NotUsed {
            self.sides[fwd].win_scale = WindowScale::NotUsed;
        }
    }

    /// Wireshark's `tcp_analyze_sequence_number`, on raw sequence numbers.
    fn analyze_sequence(
        &mut self,
        fwd_index: usize,
        rev_index: usize,
        frame: u64,
        time_us: i64,
        segment: &TcpSegment<'_>,
    ) -> Analysis {
        let (seq, ack, flags) = (segment.seq, segment.ack, segment.flags);
        let seglen = segment.payload_len;
        let window = segment.window;
        let syn = flags & tcp_flags::SYN != 0;
        let syn_fin_rst = flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0;
        let initial_rtt_us = self.initial_rtt_us;
        let [client, server] = &mut self.sides;
        let (fwd, rev) = if fwd_index == 0 {
            (client, server)
        } else {
            (server, client)
        };
        debug_assert_ne!(fwd_index, rev_index);
        let mut out = Analysis::default();

        // Relative numbers: a SYN gives the ISN; otherwise Wireshark takes seq - 1 so
        // that the first segment seen is 1. The peer's ISN is learned from the first
        // ACK if its SYN was not seen (ack - 1).
        if fwd.base_seq.is_none() {
            fwd.base_seq = Some(if syn { seq } else { seq.wrapping_sub(1) });
        }
        if rev.base_seq.is_none() && flags & tcp_flags::ACK != 0 {
            rev.base_seq = Some(ack.wrapping_sub(1));
        }

        'fwd: {
            // ZERO WINDOW PROBE: one byte at the next expected seq into a zero window.
            if seglen == 1 && seq == fwd.next_seq && rev.window == 0 {
                out.marks.insert(Marks::ZERO_WINDOW_PROBE);
                break 'fwd;
            }
            // ZERO WINDOW: window 0 on anything but SYN/FIN/RST.
            if window == 0 && !syn_fin_rst {
                out.marks.insert(Marks::ZERO_WINDOW);
            }
            // LOST PACKET: this segment starts beyond the highest seq seen.
            if fwd.next_seq != 0 && seq_gt(seq, fwd.next_seq) && flags & tcp_flags::RST == 0 {
                out.marks.insert(Marks::PREVIOUS_SEGMENT_NOT_CAPTURED);
            }
            // KEEP ALIVE: 0 or 1 byte starting one before the next expected seq.
            if seglen <= 1 && seq == fwd.next_seq.wrapping_sub(1) && !syn_fin_rst {
                out.marks.insert(Marks::KEEP_ALIVE);
            }
            let repeats_last =
                seglen == 0 && seq == fwd.next_seq && ack == fwd.last_ack && !syn_fin_rst;
            // WINDOW UPDATE: a pure ACK changing only the window.
            if repeats_last && window != 0 && window != fwd.window {
                out.marks.insert(Marks::WINDOW_UPDATE);
            }
            // WINDOW FULL: the data reaches exactly the edge of the peer's window.
            if seglen > 0 && rev.win_scale != WindowScale::Unknown && !syn_fin_rst {
                let shift = match rev.win_scale {
                    WindowScale::Shift(shift) if !rev.last_was_syn => shift,
                    _ => 0,
                };
                let edge = rev.last_ack.wrapping_add(u32::from(rev.window) << shift);
                if seq.wrapping_add(seglen) == edge {
                    out.marks.insert(Marks::WINDOW_FULL);
                }
            }
            // KEEP ALIVE ACK: repeats the last ACK right after a keep-alive.
            if repeats_last
                && window != 0
                && window == fwd.window
                && rev.last_marks.contains(Marks::KEEP_ALIVE)
            {
                out.marks.insert(Marks::KEEP_ALIVE_ACK);
                break 'fwd;
            }
            // ZERO WINDOW PROBE ACK: repeats the zero window after a probe.
            if repeats_last
                && window == 0
                && fwd.window == 0
                && rev.last_marks.contains(Marks::ZERO_WINDOW_PROBE)
            {
                out.marks.insert(Marks::ZERO_WINDOW_PROBE_ACK);
                break 'fwd;
            }
            // DUPLICATE ACK: same seq, ack and window, no data.
            if repeats_last && window != 0 && window == fwd.window {
                fwd.dup_ack_count += 1;
                out.marks.insert(Marks::DUPLICATE_ACK);
                out.duplicate_ack = Some((fwd.dup_ack_count, fwd.last_non_dup_ack_frame));
            }
        }

        // A new ACK number resets the duplicate-ACK count.
        if ack != fwd.last_ack {
            fwd.last_non_dup_ack_frame = frame;
            fwd.dup_ack_count = 0;
        }

        // ACKED LOST PACKET: this ACK covers data never seen going the other way.
        if rev.max_seq_to_be_acked != 0
            && seq_gt(ack, rev.max_seq_to_be_acked)
            && flags & tcp_flags::ACK != 0
        {
            out.marks.insert(Marks::ACKED_UNSEEN_SEGMENT);
            // Do not report the same gap again.
            rev.max_seq_to_be_acked = rev.next_seq;
        }

        // RETRANSMISSION / FAST RETRANSMISSION / OUT-OF-ORDER / SPURIOUS: data, SYN or
        // FIN that does not advance the sequence number. A keep-alive is none of them.
        let fin = flags & tcp_flags::FIN != 0;
        if (seglen > 0 || syn || fin) && !out.marks.contains(Marks::KEEP_ALIVE) {
            let mut not_advanced = fwd.next_seq != 0 && seq_lt(seq, fwd.next_seq);
            // More than one byte starting one before next_seq is new data following a
            // zero-window probe, not a retransmission.
            if seglen > 1 && fwd.next_seq.wrapping_sub(1) == seq {
                not_advanced = false;
            }
            let since_dup_acks = time_us - rev.last_ack_time_us;
            let ooo_threshold = initial_rtt_us.unwrap_or(DEFAULT_OUT_OF_ORDER_THRESHOLD_US);
            let since_highest = time_us - fwd.next_seq_time_us;
            // Wireshark also flags fast and spurious retransmissions as plain
            // retransmissions (the filter `tcp.analysis.retransmission` finds all three).
            if not_advanced
                && rev.dup_ack_count >= 2
                && rev.last_ack == seq
                && since_dup_acks < FAST_RETRANSMISSION_WINDOW_US
            {
                out.marks
                    .insert(Marks::FAST_RETRANSMISSION | Marks::RETRANSMISSION);
            } else if not_advanced
                && since_highest < ooo_threshold
                && fwd.next_seq != seq.wrapping_add(seglen)
            {
                out.marks.insert(Marks::OUT_OF_ORDER);
            } else if seglen > 0
                && rev.last_ack != 0
                && seq_le(seq.wrapping_add(seglen), rev.last_ack)
            {
                out.marks
                    .insert(Marks::SPURIOUS_RETRANSMISSION | Marks::RETRANSMISSION);
            } else if not_advanced {
                out.marks.insert(Marks::RETRANSMISSION);
            }
        }

        let mut next_seq = seq.wrapping_add(seglen);
        if syn || fin {
            next_seq = next_seq.wrapping_add(1);
        }
        let is_probe = out.marks.contains(Marks::ZERO_WINDOW_PROBE);
        if (seglen > 0 || syn || fin) && fwd.unacked.len() < MAX_UNACKED_SEGMENTS {
            let retransmitted = out.marks.intersects(Marks::ANY_RETRANSMISSION);
            if retransmitted {
                // Karn: the earlier copies of this data no longer give RTT samples.
                for old in &mut fwd.unacked {
                    if seq_lt(old.seq, next_seq) && seq_gt(old.next_seq, seq) {
                        old.retransmitted = true;
                    }
                }
            }
            fwd.unacked.push(Unacked {
                frame,
                seq,
                next_seq,
                time_us,
                has_data: seglen > 0,
                retransmitted,
            });
        }
        // A zero-window probe does not advance the highest sequence number.
        if (seq_gt(next_seq, fwd.next_seq) || fwd.next_seq == 0) && !is_probe {
            fwd.next_seq = next_seq;
            fwd.next_seq_frame = frame;
            fwd.next_seq_time_us = time_us;
        }
        if (seq == fwd.max_seq_to_be_acked || fwd.max_seq_to_be_acked == 0) && !is_probe {
            fwd.max_seq_to_be_acked = fwd.next_seq;
        }

        fwd.window = window;
        fwd.last_ack = ack;
        fwd.last_ack_time_us = time_us;
        fwd.last_marks = out.marks;

        // Remove what this ACK acknowledges from the peer's list. Wireshark walks the
        // list newest first and keeps the last (oldest) exact match as `acks_frame`.
        let mut acked: Option<Unacked> = None;
        rev.unacked.retain_mut(|segment| {
            if ack == segment.next_seq {
                // The list is oldest first here, so the first match is the oldest.
                if acked.is_none() {
                    acked = Some(*segment);
                }
                false
            } else if seq_gt(ack, segment.seq) && seq_le(ack, segment.next_seq) {
                // Partly acknowledged: keep the rest.
                segment.seq = ack;
                true
            } else {
                // Still waiting (ack before it), or old and now acknowledged.
                seq_gt(segment.next_seq, ack)
            }
        });
        if let Some(segment) = acked {
            let rtt = time_us - segment.time_us;
            out.acks_frame = Some(segment.frame);
            out.ack_rtt_us = Some(rtt);
            if segment.has_data && !segment.retransmitted {
                out.rtt = Some(rev.estimator.update(rtt));
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Analysis {
    marks: Marks,
    duplicate_ack: Option<(u32, u64)>,
    acks_frame: Option<u64>,
    ack_rtt_us: Option<i64>,
    rtt: Option<RttEstimate>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_comparisons_wrap_at_two_to_the_32() {
        assert!(seq_lt(1, 2) && seq_gt(2, 1) && seq_le(2, 2));
        // 0xFFFF_FFF0 is just before 0x10 once the counter wraps.
        assert!(seq_lt(0xFFFF_FFF0, 0x10));
        assert!(seq_gt(0x10, 0xFFFF_FFF0));
        assert!(!seq_gt(5, 5));
    }

    #[test]
    fn marks_are_named_like_wireshark() {
        let marks = Marks::RETRANSMISSION | Marks::FAST_RETRANSMISSION;
        assert_eq!(
            marks.names().collect::<Vec<_>>(),
            ["retransmission", "fast retransmission"]
        );
        assert!(marks.is_problem());
        assert!(!Marks::WINDOW_UPDATE.is_problem());
        assert!(Marks::NONE.is_empty());
        assert!(marks.intersects(Marks::ANY_RETRANSMISSION));
        assert_eq!(
            Direction::ClientToServer.reverse(),
            Direction::ServerToClient
        );
    }

    #[test]
    fn estimator_starts_at_the_sample_and_half_of_it() {
        let mut estimator = RttEstimator::default();
        let first = estimator.update(8_000);
        assert_eq!((first.estimated_us, first.dev_us), (8_000.0, 4_000.0));
        assert_eq!(first.timeout_us(), 24_000.0);
        // DevRTT uses the old estimate: 3/4 * 4000 + 1/4 * |16000 - 8000| = 5000.
        let second = estimator.update(16_000);
        assert_eq!((second.estimated_us, second.dev_us), (9_000.0, 5_000.0));
    }

    #[test]
    fn a_wrapping_connection_keeps_relative_numbers_small() {
        let mut tracker = TcpTracker::new();
        let syn = TcpSegment {
            seq: u32::MAX - 1,
            flags: tcp_flags::SYN,
            window: 100,
            ..TcpSegment::default()
        };
        let info = tracker.analyze(0, Direction::ClientToServer, 1, 0, &syn);
        assert_eq!((info.rel_seq, info.rel_next_seq), (0, 1));
        let data = TcpSegment {
            seq: u32::MAX,
            ack: 77,
            flags: tcp_flags::ACK,
            window: 100,
            payload_len: 10,
            ..TcpSegment::default()
        };
        let info = tracker.analyze(0, Direction::ClientToServer, 2, 10, &data);
        assert_eq!((info.rel_seq, info.rel_next_seq), (1, 11));
        assert!(info.marks.is_empty(), "{:?}", info.marks);
        assert_eq!(
            tracker.base_seq(Direction::ClientToServer),
            Some(u32::MAX - 1)
        );
    }
}
