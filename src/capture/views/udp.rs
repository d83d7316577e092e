//! Lab 4, the `udp` view of `socklab analyze`: one row per UDP datagram. It answers the
//! UDP questions of the Kurose & Ross Wireshark lab from a capture of your own traffic.
//!
//! Each row shows the frame, the time since the capture's first frame, the ports (and
//! the addresses, once the capture holds more than one pair of hosts), the header's
//! length field against the length the IP header leaves for UDP, the checksum verdict,
//! a payload preview and the datagram's place in a request/reply pair. The header every
//! row takes apart (RFC 768):
//!
//! ```text
//!  0        2        4        6        8
//!  +--------+--------+--------+--------+---------------------+
//!  | source | dest.  | length | check- | payload             |
//!  | port   | port   | 8 + n  | sum    | (n bytes)           |
//!  +--------+--------+--------+--------+---------------------+
//! ```
//!
//! **Pairing.** UDP has no notion of a request or a reply, but the request/reply
//! programs of the labs (echo, pinger, forum) answer from the port a request was sent
//! to, to the port it came from. So a datagram B→A is taken as the reply to the oldest
//! unanswered A→B datagram (same addresses and ports, swapped), and the time between
//! them is the RTT. A one-way stream simply shows "no reply".
//!
//! **Memory.** Unlike the flow views, this view keeps a row per datagram: it is meant
//! for small lab captures. It keeps at most [`MAX_ROWS`] rows and counts the rest.
//!
//! **Frames.** Give [`UdpView::observe`] every frame of the capture, UDP or not: times
//! are relative to the capture's first frame, as in Wireshark.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;

use crate::capture::packet::{Checksum, Frame, Packet, Transport, UdpDatagram};
use crate::output;

/// The most datagrams the view keeps a row for; later ones are only counted. A million
/// rows is far beyond a lab capture and still only some hundred megabytes.
pub const MAX_ROWS: usize = 1_000_000;

/// The UDP header's length in bytes: four 16-bit fields.
pub const UDP_HEADER_LEN: u16 = 8;

/// How many payload bytes a preview shows.
pub const PREVIEW_BYTES: usize = 32;

/// The IP protocol number of UDP (RFC 768; TCP is 6).
const IP_PROTOCOL_UDP: u8 = 17;

/// An IPv4 header without options, which is what every lab capture has.
const IPV4_HEADER_LEN: u32 = 20;

/// The largest IP packet: the 16-bit total-length field of IPv4 (and payload-length
/// field of IPv6).
const MAX_IP_LEN: u32 = 65_535;

/// One datagram of the capture.
#[derive(Debug, Clone, PartialEq)]
pub struct UdpRow {
    /// The frame number, from 1.
    pub frame: u64,
    /// Microseconds since the capture's first frame.
    pub time_us: i64,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// The header's length field: header + payload.
    pub length_field: u16,
    /// What the IP header leaves for UDP (header + payload).
    pub ip_len: u32,
    /// True when the datagram is the first fragment of a fragmented IP packet: the
    /// length field then counts data that arrives in later frames.
    pub ip_fragment: bool,
    /// The checksum verdict.
    pub checksum: Checksum,
    /// Payload bytes captured (fewer than announced when snaplen cut the frame).
    pub captured: usize,
    /// The payload's first [`PREVIEW_BYTES`] bytes, quoted and escaped (see [`preview`]).
    pub preview: String,
    /// The datagram's place in a request/reply pair.
    pub role: Role,
    /// The dissector's "malformed" note for this frame, if any.
    pub malformed: Option<String>,
}

impl UdpRow {
    /// Whether the length field and the IP header disagree (not counting the first
    /// fragment of a fragmented packet, where they differ by design).
    pub fn length_mismatch(&self) -> bool {
        !self.ip_fragment && u32::from(self.length_field) != self.ip_len
    }
}

/// Where a datagram sits in request/reply pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent, and no datagram came back on the swapped ports (yet).
    NoReply,
    /// Sent, and answered by the datagram in frame `reply_frame`.
    Answered {
        /// The reply's frame.
        reply_frame: u64,
        /// Reply time minus request time, in microseconds.
        rtt_us: i64,
    },
    /// The reply to the datagram in frame `request_frame`.
    Reply {
        /// The request's frame.
        request_frame: u64,
        /// Reply time minus request time, in microseconds.
        rtt_us: i64,
    },
}

/// The first datagram's header, kept for the `--explain` notes.
#[derive(Debug, Clone, Copy)]
struct FirstDatagram {
    frame: u64,
    src_port: u16,
    dst_port: u16,
    length_field: u16,
    ip_len: u32,
    /// The raw checksum field, when it could be found in the frame's bytes.
    checksum_field: Option<u16>,
    checksum: Checksum,
    ip_version: u8,
    ip_protocol: u8,
}

/// The `udp` view: feed it frames with [`UdpView::observe`], then render it.
#[derive(Debug)]
pub struct UdpView {
    /// [`MAX_ROWS`], smaller in tests.
    max_rows: usize,
    /// The capture's first frame time, which row times count from.
    start_us: Option<i64>,
    rows: Vec<UdpRow>,
    /// Unanswered datagrams per (source, destination), oldest first, as row indices.
    pending: HashMap<(SocketAddr, SocketAddr), VecDeque<usize>>,
    /// The first pair of hosts seen (lower address first), to decide whether rows need
    /// addresses or ports are enough.
    first_hosts: Option<(IpAddr, IpAddr)>,
    many_hosts: bool,
    first: Option<FirstDatagram>,
    /// Datagrams beyond [`MAX_ROWS`]: counted, not kept.
    not_shown: u64,
    /// IP fragments after the first of a UDP datagram: they carry no UDP header.
    continuation_fragments: u64,
}

impl Default for UdpView {
    fn default() -> Self {
        UdpView::with_max_rows(MAX_ROWS)
    }
}

impl UdpView {
    /// An empty view.
    pub fn new() -> Self {
        UdpView::default()
    }

    /// An empty view keeping at most `max_rows` rows (tests use a small limit).
    fn with_max_rows(max_rows: usize) -> Self {
        UdpView {
            max_rows,
            start_us: None,
            rows: Vec::new(),
            pending: HashMap::new(),
            first_hosts: None,
            many_hosts: false,
            first: None,
            not_shown: 0,
            continuation_fragments: 0,
        }
    }

    /// Takes one frame of the capture: a UDP datagram becomes a row, anything else only
    /// moves the clock's origin (the first frame) or is counted.
    pub fn observe(&mut self, frame: &Frame<'_>, packet: &Packet<'_>) {
        let start = *self.start_us.get_or_insert(frame.time_us);
        match &packet.transport {
            Transport::Udp(datagram) => self.add(frame, packet, datagram, start),
            Transport::Fragment
                if packet
                    .ip
                    .as_ref()
                    .is_some_and(|ip| ip.protocol == IP_PROTOCOL_UDP) =>
            {
                self.continuation_fragments += 1;
            }
            _ => {}
        }
    }

    /// The rows kept so far, in capture order.
    pub fn rows(&self) -> &[UdpRow] {
        &self.rows
    }

    /// How many datagrams came after [`MAX_ROWS`] and were only counted.
    pub fn not_shown(&self) -> u64 {
        self.not_shown
    }

    fn add(
        &mut self,
        frame: &Frame<'_>,
        packet: &Packet<'_>,
        datagram: &UdpDatagram<'_>,
        start: i64,
    ) {
        if self.rows.len() >= self.max_rows {
            self.not_shown += 1;
            return;
        }
        let (src, dst) = endpoints(packet, datagram.src_port, datagram.dst_port);
        self.note_hosts(src.ip(), dst.ip());
        if self.first.is_none() {
            self.first = Some(FirstDatagram {
                frame: frame.number,
                src_port: datagram.src_port,
                dst_port: datagram.dst_port,
                length_field: datagram.length_field,
                ip_len: datagram.ip_len,
                checksum_field: find_checksum_field(frame.data, datagram),
                checksum: datagram.checksum,
                ip_version: packet.ip.as_ref().map_or(0, |ip| ip.version),
                ip_protocol: packet.ip.as_ref().map_or(IP_PROTOCOL_UDP, |ip| ip.protocol),
            });
        }

        let index = self.rows.len();
        let time_us = frame.time_us - start;
        let role = match self.take_pending(dst, src) {
            Some(request) => {
                let request_row = &mut self.rows[request];
                let rtt_us = time_us - request_row.time_us;
                request_row.role = Role::Answered {
                    reply_frame: frame.number,
                    rtt_us,
                };
                Role::Reply {
                    request_frame: request_row.frame,
                    rtt_us,
                }
            }
            None => {
                self.pending.entry((src, dst)).or_default().push_back(index);
                Role::NoReply
            }
        };
        self.rows.push(UdpRow {
            frame: frame.number,
            time_us,
            src,
            dst,
            length_field: datagram.length_field,
            ip_len: datagram.ip_len,
            ip_fragment: packet.ip.as_ref().is_some_and(|ip| ip.fragment.is_some()),
            checksum: datagram.checksum,
            captured: datagram.payload.len(),
            preview: preview(datagram.payload, PREVIEW_BYTES),
            role,
            malformed: packet.malformed.clone(),
        });
    }

    /// The oldest unanswered datagram from `from` to `to`, removed from the queue.
    fn take_pending(&mut self, from: SocketAddr, to: SocketAddr) -> Option<usize> {
        let queue = self.pending.get_mut(&(from, to))?;
        let oldest = queue.pop_front();
        if queue.is_empty() {
            // Drop empty queues so a capture of many short exchanges does not keep
            // one entry per port pair forever.
            self.pending.remove(&(from, to));
        }
        oldest
    }

    fn note_hosts(&mut self, a: IpAddr, b: IpAddr) {
        let pair = if a <= b { (a, b) } else { (b, a) };
        match self.first_hosts {
            None => self.first_hosts = Some(pair),
            Some(first) if first != pair => self.many_hosts = true,
            Some(_) => {}
        }
    }

    /// Writes the table (and, with `explain`, the notes for students).
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_table(&self, out: &mut dyn Write, explain: bool) -> io::Result<()> {
        if self.rows.is_empty() {
            writeln!(out, "No UDP datagrams in this capture.")?;
        } else {
            let route = if self.many_hosts {
                "Source → Destination"
            } else {
                "Ports"
            };
            let mut table = output::table(&[
                "Frame",
                "Time",
                route,
                "Length",
                "Checksum",
                "Payload",
                "Request/reply",
            ]);
            for row in &self.rows {
                table.add_row(vec![
                    row.frame.to_string(),
                    seconds(row.time_us),
                    self.route_cell(row),
                    length_cell(row),
                    checksum_cell(row.checksum),
                    payload_cell(row),
                    role_cell(row.role),
                ]);
            }
            writeln!(out, "{table}")?;
            writeln!(out, "{}", self.summary())?;
        }
        if self.not_shown > 0 {
            writeln!(
                out,
                "Only the first {} datagrams are kept (this view is for lab-sized captures); \
                 {} more were counted but not shown.",
                thousands(self.max_rows as u64),
                thousands(self.not_shown)
            )?;
        }
        if self.continuation_fragments > 0 {
            writeln!(
                out,
                "{} IP fragment(s) continue UDP datagrams: they carry no UDP header, so \
                 their data counts in the row of the datagram's first fragment.",
                self.continuation_fragments
            )?;
        }
        if explain {
            writeln!(out)?;
            out.write_all(self.explain().as_bytes())?;
        }
        Ok(())
    }

    /// Writes one JSON object per datagram (JSON Lines). Field names are stable:
    /// `frame`, `time` (s), `src`, `src_port`, `dst`, `dst_port`, `length_field`,
    /// `ip_length`, `length_mismatch`, `ip_fragment`, `checksum` (`ok`, `bad`, `zero`,
    /// `not verified`), `checksum_found`, `checksum_expected`, `payload_captured`,
    /// `preview`, `reply_to`, `answered_by`, `rtt_ms`, `malformed`. If rows were
    /// dropped at [`MAX_ROWS`], one last object `{"not_shown": N}` says how many.
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        for row in &self.rows {
            let (checksum_found, checksum_expected) = match row.checksum {
                Checksum::Bad { found, expected } => (Some(found), Some(expected)),
                _ => (None, None),
            };
            let (reply_to, answered_by, rtt_us) = match row.role {
                Role::NoReply => (None, None, None),
                Role::Answered {
                    reply_frame,
                    rtt_us,
                } => (None, Some(reply_frame), Some(rtt_us)),
                Role::Reply {
                    request_frame,
                    rtt_us,
                } => (Some(request_frame), None, Some(rtt_us)),
            };
            let json = DatagramJson {
                frame: row.frame,
                time: row.time_us as f64 / 1e6,
                src: row.src.ip(),
                src_port: row.src.port(),
                dst: row.dst.ip(),
                dst_port: row.dst.port(),
                length_field: row.length_field,
                ip_length: row.ip_len,
                length_mismatch: row.length_mismatch(),
                ip_fragment: row.ip_fragment,
                checksum: checksum_word(row.checksum),
                checksum_found,
                checksum_expected,
                payload_captured: row.captured,
                preview: &row.preview,
                reply_to,
                answered_by,
                rtt_ms: rtt_us.map(|us| us as f64 / 1e3),
                malformed: row.malformed.as_deref(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        if self.not_shown > 0 {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "not_shown": self.not_shown })
            )?;
        }
        Ok(())
    }

    fn route_cell(&self, row: &UdpRow) -> String {
        if self.many_hosts {
            format!("{} → {}", row.src, row.dst)
        } else {
            format!("{} → {}", row.src.port(), row.dst.port())
        }
    }

    fn summary(&self) -> String {
        let pairs = self
            .rows
            .iter()
            .filter(|row| matches!(row.role, Role::Reply { .. }))
            .count();
        let unanswered = self
            .rows
            .iter()
            .filter(|row| row.role == Role::NoReply)
            .count();
        let mut line = format!(
            "{} UDP datagram(s): {pairs} request/reply pair(s), {unanswered} without reply.",
            self.rows.len()
        );
        if !self.many_hosts {
            match self.first_hosts {
                Some((a, b)) if a == b => {
                    let _ = write!(line, " Host: {a} (both ends).");
                }
                Some((a, b)) => {
                    let _ = write!(line, " Hosts: {a} and {b}.");
                }
                None => {}
            }
        }
        let mismatches = self.rows.iter().filter(|row| row.length_mismatch()).count();
        if mismatches > 0 {
            let _ = write!(
                line,
                " {mismatches} length field(s) disagree with the IP header."
            );
        }
        line
    }

    /// The `--explain` notes, with this capture's values.
    fn explain(&self) -> String {
        let mut notes = String::from("Notes (--explain):\n");
        let Some(first) = self.first else {
            notes.push_str(
                "- This capture has no UDP datagram to explain. Capture your echo or forum \
                 traffic (`socklab capture -i lo -f udp -w udp.pcap`) and try again.\n",
            );
            return notes;
        };
        let checksum = match first.checksum_field {
            Some(field) => format!("0x{field:04x} ({})", checksum_word(first.checksum)),
            None => format!(
                "{} (the field was not found in the frame's bytes)",
                checksum_word(first.checksum)
            ),
        };
        let _ = writeln!(
            notes,
            "- The UDP header is {UDP_HEADER_LEN} bytes: four 2-byte fields, source port, \
             destination port, length and checksum. This capture's first datagram (frame {}): \
             source port {}, destination port {}, length {}, checksum {checksum}.",
            first.frame, first.src_port, first.dst_port, first.length_field,
        );
        let _ = writeln!(
            notes,
            "- The length field counts the header and the payload: {} = {UDP_HEADER_LEN} + {} \
             payload bytes. The IP header leaves {} bytes for UDP; a mismatch would be \
             marked in the Length column.",
            first.length_field,
            first.length_field.saturating_sub(UDP_HEADER_LEN),
            first.ip_len
        );
        let max_ipv4 = MAX_IP_LEN - IPV4_HEADER_LEN - u32::from(UDP_HEADER_LEN);
        let max_ipv6 = MAX_IP_LEN - u32::from(UDP_HEADER_LEN);
        let _ = writeln!(
            notes,
            "- The largest payload: over IPv4 the whole packet must fit in the 16-bit total \
             length, so 65,535 − 8 (UDP) − 20 (IP) = {} bytes. (Over IPv6 the 40-byte header \
             is not counted in the payload length: 65,535 − 8 = {} bytes.) This capture is \
             IPv{}.",
            thousands(u64::from(max_ipv4)),
            thousands(u64::from(max_ipv6)),
            first.ip_version
        );
        let _ = writeln!(
            notes,
            "- The IP header's protocol field says what it carries: {IP_PROTOCOL_UDP} is UDP \
             (6 is TCP). Frame {} has protocol {}.",
            first.frame, first.ip_protocol
        );
        let pair = self.rows.iter().find_map(|row| match row.role {
            Role::Answered {
                reply_frame,
                rtt_us,
            } => Some((row, reply_frame, rtt_us)),
            _ => None,
        });
        match pair {
            Some((request, reply_frame, rtt_us)) => {
                let _ = writeln!(
                    notes,
                    "- A reply swaps the ports: it goes from the port the request was sent to, \
                     back to the port the request came from. Frame {} went {} → {}; its reply, \
                     frame {reply_frame}, went {} → {} after {} ms (the RTT).",
                    request.frame,
                    request.src.port(),
                    request.dst.port(),
                    request.dst.port(),
                    request.src.port(),
                    millis(rtt_us)
                );
            }
            None => notes.push_str(
                "- A reply swaps the ports: it goes from the port the request was sent to, back \
                 to the port the request came from. This capture has no such pair.\n",
            ),
        }
        notes.push_str(
            "- Checksum \"not verified\": on loopback (and on the sender's own interface) the \
             kernel leaves the checksum for the network card to fill in (offload), so the \
             captured value is not final and proves nothing. \"zero\": over IPv4 a sender \
             may skip the checksum by sending 0; IPv6 requires one.\n",
        );
        notes
    }
}

/// One datagram as JSON (see [`UdpView::write_json`] for the field list).
#[derive(Serialize)]
struct DatagramJson<'a> {
    frame: u64,
    time: f64,
    src: IpAddr,
    src_port: u16,
    dst: IpAddr,
    dst_port: u16,
    length_field: u16,
    ip_length: u32,
    length_mismatch: bool,
    ip_fragment: bool,
    checksum: &'static str,
    checksum_found: Option<u16>,
    checksum_expected: Option<u16>,
    payload_captured: usize,
    preview: &'a str,
    reply_to: Option<u64>,
    answered_by: Option<u64>,
    rtt_ms: Option<f64>,
    malformed: Option<&'a str>,
}

/// The source and destination of a transport header, with the IP addresses when the
/// frame has an IP layer (a UDP datagram always does; the fallback keeps a hand-made
/// packet without one from panicking).
pub fn endpoints(packet: &Packet<'_>, src_port: u16, dst_port: u16) -> (SocketAddr, SocketAddr) {
    let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let (src, dst) = packet
        .ip
        .as_ref()
        .map_or((unknown, unknown), |ip| (ip.src, ip.dst));
    (
        SocketAddr::new(src, src_port),
        SocketAddr::new(dst, dst_port),
    )
}

/// Finds the datagram's raw checksum field in the frame's bytes.
///
/// [`UdpDatagram`] carries the checksum's verdict, not the field, and the link-layer
/// header's length is not known here; so this looks for the header's first six bytes
/// (ports and length, all known) and reads the two after them. Only used for the
/// `--explain` note, where a wrong guess in some odd frame would cost nothing.
fn find_checksum_field(data: &[u8], datagram: &UdpDatagram<'_>) -> Option<u16> {
    let mut known = [0u8; 6];
    known[0..2].copy_from_slice(&datagram.src_port.to_be_bytes());
    known[2..4].copy_from_slice(&datagram.dst_port.to_be_bytes());
    known[4..6].copy_from_slice(&datagram.length_field.to_be_bytes());
    let header_len = usize::from(UDP_HEADER_LEN);
    data.windows(header_len)
        .find(|window| window[..known.len()] == known)
        .map(|window| u16::from_be_bytes([window[6], window[7]]))
}

/// Quotes the first `max` bytes of `payload` for a table cell or a JSON field:
/// printable ASCII as is, `"` and `\` escaped, `\n`, `\r`, `\t` by name, any other byte
/// as `\xNN`; `...` after the closing quote when the payload is longer.
pub fn preview(payload: &[u8], max: usize) -> String {
    let mut text = String::with_capacity(max + 2);
    text.push('"');
    for &byte in payload.iter().take(max) {
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b' '..=b'~' => text.push(char::from(byte)),
            other => {
                let _ = write!(text, "\\x{other:02x}");
            }
        }
    }
    text.push('"');
    if payload.len() > max {
        text.push_str("...");
    }
    text
}

/// Microseconds as seconds with six decimals, as Wireshark's time column (`0.000125`).
pub fn seconds(us: i64) -> String {
    format!("{:.6}", us as f64 / 1e6)
}

/// Microseconds as milliseconds with three decimals, as ping does (`0.142`).
pub fn millis(us: i64) -> String {
    format!("{:.3}", us as f64 / 1e3)
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// The checksum verdict's one word, shared by the table and JSON.
fn checksum_word(checksum: Checksum) -> &'static str {
    match checksum {
        Checksum::Good => "ok",
        Checksum::Bad { .. } => "bad",
        Checksum::Zero => "zero",
        Checksum::NotVerified => "not verified",
    }
}

fn checksum_cell(checksum: Checksum) -> String {
    match checksum {
        Checksum::Bad { found, expected } => {
            format!("bad (0x{found:04x}, should be 0x{expected:04x})")
        }
        other => checksum_word(other).to_string(),
    }
}

fn length_cell(row: &UdpRow) -> String {
    if row.ip_fragment {
        format!("{} ({} in this IP fragment)", row.length_field, row.ip_len)
    } else if row.length_mismatch() {
        format!("{} ≠ IP {} (!)", row.length_field, row.ip_len)
    } else {
        row.length_field.to_string()
    }
}

fn payload_cell(row: &UdpRow) -> String {
    let mut cell = format!("{} B {}", row.captured, row.preview);
    let announced = row.ip_len.saturating_sub(u32::from(UDP_HEADER_LEN));
    if !row.ip_fragment && (row.captured as u64) < u64::from(announced) {
        let _ = write!(cell, " (cut: {announced} B sent)");
    }
    if let Some(reason) = &row.malformed {
        let _ = write!(cell, "\nmalformed: {reason}");
    }
    cell
}

fn role_cell(role: Role) -> String {
    match role {
        Role::NoReply => "no reply".to_string(),
        Role::Answered {
            reply_frame,
            rtt_us,
        } => format!("answered by #{reply_frame}, RTT {} ms", millis(rtt_us)),
        Role::Reply {
            request_frame,
            rtt_us,
        } => format!("reply to #{request_frame}, RTT {} ms", millis(rtt_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::packet::{FragmentInfo, IpInfo};

    const CLIENT: [u8; 4] = [127, 0, 0, 1];
    const OTHER: [u8; 4] = [127, 0, 0, 2];

    /// A UDP packet from `src` to `dst` carrying `payload`, with consistent lengths.
    fn udp_packet<'a>(
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        payload: &'a [u8],
        checksum: Checksum,
    ) -> Packet<'a> {
        let udp_len = u16::try_from(payload.len()).unwrap() + UDP_HEADER_LEN;
        Packet {
            ip: Some(IpInfo {
                version: 4,
                src: IpAddr::from(src.0),
                dst: IpAddr::from(dst.0),
                protocol: IP_PROTOCOL_UDP,
                ttl: 64,
                header_len: 20,
                total_len: 20 + u32::from(udp_len),
                ident: 0,
                fragment: None,
            }),
            transport: Transport::Udp(UdpDatagram {
                src_port: src.1,
                dst_port: dst.1,
                length_field: udp_len,
                ip_len: u32::from(udp_len),
                payload,
                checksum,
            }),
            malformed: None,
        }
    }

    fn frame(number: u64, time_us: i64) -> Frame<'static> {
        Frame {
            number,
            time_us,
            data: &[],
            wire_len: 0,
        }
    }

    fn render_table(view: &UdpView, explain: bool) -> String {
        let mut out = Vec::new();
        view.write_table(&mut out, explain).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render_json(view: &UdpView) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        view.write_json(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn replies_pair_with_the_oldest_unanswered_request() {
        let mut view = UdpView::new();
        let a = (CLIENT, 50_000);
        let b = (CLIENT, 9_000);
        // Two requests, then two replies: FIFO pairing, 1 with 3 and 2 with 4.
        view.observe(
            &frame(1, 1_000_000),
            &udp_packet(a, b, b"ping 1", Checksum::Good),
        );
        view.observe(
            &frame(2, 1_000_500),
            &udp_packet(a, b, b"ping 2", Checksum::Good),
        );
        view.observe(
            &frame(3, 1_001_250),
            &udp_packet(b, a, b"pong 1", Checksum::Good),
        );
        view.observe(
            &frame(4, 1_002_000),
            &udp_packet(b, a, b"pong 2", Checksum::Good),
        );
        // A request that never gets an answer.
        view.observe(
            &frame(5, 1_003_000),
            &udp_packet(a, b, b"ping 3", Checksum::Good),
        );

        let roles: Vec<Role> = view.rows().iter().map(|row| row.role).collect();
        assert_eq!(
            roles,
            vec![
                Role::Answered {
                    reply_frame: 3,
                    rtt_us: 1_250
                },
                Role::Answered {
                    reply_frame: 4,
                    rtt_us: 1_500
                },
                Role::Reply {
                    request_frame: 1,
                    rtt_us: 1_250
                },
                Role::Reply {
                    request_frame: 2,
                    rtt_us: 1_500
                },
                Role::NoReply,
            ]
        );
        assert_eq!(view.rows()[2].time_us, 1_250, "relative to the first frame");

        let table = render_table(&view, false);
        assert!(table.contains("reply to #1, RTT 1.250 ms"), "{table}");
        assert!(table.contains("answered by #4, RTT 1.500 ms"), "{table}");
        assert!(table.contains("no reply"), "{table}");
        assert!(table.contains("50000 → 9000"), "{table}");
        assert!(table.contains("0.001250"), "{table}");
        assert!(table.contains(
            "5 UDP datagram(s): 2 request/reply pair(s), 1 without reply. \
             Host: 127.0.0.1 (both ends)."
        ));
        // These hand-made frames have no bytes, so the raw checksum cannot be shown.
        let notes = render_table(&view, true);
        assert!(
            notes.contains("checksum ok (the field was not found in the frame's bytes)"),
            "{notes}"
        );
    }

    #[test]
    fn other_ports_do_not_pair() {
        let mut view = UdpView::new();
        view.observe(
            &frame(1, 0),
            &udp_packet((CLIENT, 1000), (CLIENT, 2000), b"x", Checksum::Good),
        );
        // Same hosts, different client port: not a reply to frame 1.
        view.observe(
            &frame(2, 10),
            &udp_packet((CLIENT, 2000), (CLIENT, 1001), b"y", Checksum::Good),
        );
        assert_eq!(view.rows()[0].role, Role::NoReply);
        assert_eq!(view.rows()[1].role, Role::NoReply);
    }

    #[test]
    fn times_count_from_the_first_frame_even_if_it_is_not_udp() {
        let mut view = UdpView::new();
        view.observe(&frame(1, 5_000_000), &Packet::default());
        view.observe(
            &frame(2, 5_250_000),
            &udp_packet((CLIENT, 1), (CLIENT, 2), b"", Checksum::Good),
        );
        assert_eq!(view.rows().len(), 1);
        assert_eq!(view.rows()[0].time_us, 250_000);
        assert_eq!(view.rows()[0].frame, 2);
    }

    #[test]
    fn length_mismatch_is_marked() {
        let mut packet = udp_packet((CLIENT, 1), (CLIENT, 2), b"abcd", Checksum::Good);
        if let Transport::Udp(datagram) = &mut packet.transport {
            datagram.length_field = 40; // the header claims more than IP carries (12)
        }
        let mut view = UdpView::new();
        view.observe(&frame(1, 0), &packet);
        view.observe(
            &frame(2, 0),
            &udp_packet((CLIENT, 3), (CLIENT, 4), b"abcd", Checksum::Good),
        );
        assert!(view.rows()[0].length_mismatch());
        assert!(!view.rows()[1].length_mismatch());
        let table = render_table(&view, false);
        assert!(table.contains("40 ≠ IP 12 (!)"), "{table}");
        assert!(table.contains("1 length field(s) disagree"), "{table}");
        let json = render_json(&view);
        assert_eq!(json[0]["length_mismatch"], true);
        assert_eq!(json[0]["length_field"], 40);
        assert_eq!(json[0]["ip_length"], 12);
        assert_eq!(json[1]["length_mismatch"], false);
    }

    #[test]
    fn first_fragment_is_not_a_mismatch() {
        let mut packet = udp_packet((CLIENT, 1), (CLIENT, 2), b"abcd", Checksum::NotVerified);
        if let Transport::Udp(datagram) = &mut packet.transport {
            datagram.length_field = 3_008;
        }
        if let Some(ip) = &mut packet.ip {
            ip.fragment = Some(FragmentInfo {
                offset: 0,
                more: true,
            });
        }
        let mut rest = Packet {
            transport: Transport::Fragment,
            ..packet.clone()
        };
        if let Some(ip) = &mut rest.ip {
            ip.fragment = Some(FragmentInfo {
                offset: 1480,
                more: false,
            });
        }
        let mut view = UdpView::new();
        view.observe(&frame(1, 0), &packet);
        view.observe(&frame(2, 0), &rest);
        assert_eq!(view.rows().len(), 1);
        assert!(!view.rows()[0].length_mismatch());
        let table = render_table(&view, false);
        assert!(table.contains("3008 (12 in this IP fragment)"), "{table}");
        assert!(
            table.contains("1 IP fragment(s) continue UDP datagrams"),
            "{table}"
        );
    }

    #[test]
    fn every_checksum_status_has_its_word() {
        let statuses = [
            Checksum::Good,
            Checksum::Bad {
                found: 0x1234,
                expected: 0xabcd,
            },
            Checksum::Zero,
            Checksum::NotVerified,
        ];
        let mut view = UdpView::new();
        for (number, status) in (1..).zip(statuses) {
            view.observe(
                &frame(number, 0),
                &udp_packet((CLIENT, 1), (OTHER, 2), b"", status),
            );
        }
        let json = render_json(&view);
        let words: Vec<&str> = json
            .iter()
            .map(|row| row["checksum"].as_str().unwrap())
            .collect();
        assert_eq!(words, ["ok", "bad", "zero", "not verified"]);
        assert_eq!(json[1]["checksum_found"], 0x1234);
        assert_eq!(json[1]["checksum_expected"], 0xabcd);
        assert!(json[3]["checksum_found"].is_null());
        let table = render_table(&view, false);
        assert!(table.contains("bad (0x1234, should be 0xabcd)"), "{table}");
        assert!(table.contains("not verified"), "{table}");
        // Loopback offload is never reported as bad.
        assert_eq!(table.matches("bad").count(), 1, "{table}");
    }

    #[test]
    fn preview_escapes_and_cuts() {
        assert_eq!(preview(b"hello", 32), "\"hello\"");
        assert_eq!(
            preview(b"a\"b\\c\n\r\t\x00\xff~", 32),
            "\"a\\\"b\\\\c\\n\\r\\t\\x00\\xff~\""
        );
        assert_eq!(preview(b"", 32), "\"\"");
        let long = [b'x'; 40];
        assert_eq!(preview(&long, 32), format!("\"{}\"...", "x".repeat(32)));
        assert_eq!(preview(&long[..32], 32), format!("\"{}\"", "x".repeat(32)));
        // Non-ASCII text is shown byte by byte, never as raw bytes in the table.
        assert_eq!(preview("é".as_bytes(), 32), "\"\\xc3\\xa9\"");
    }

    #[test]
    fn addresses_appear_only_with_several_host_pairs() {
        let mut view = UdpView::new();
        view.observe(
            &frame(1, 0),
            &udp_packet((CLIENT, 1000), (OTHER, 53), b"q", Checksum::Good),
        );
        view.observe(
            &frame(2, 0),
            &udp_packet((OTHER, 53), (CLIENT, 1000), b"r", Checksum::Good),
        );
        let table = render_table(&view, false);
        assert!(table.contains("Ports"), "{table}");
        assert!(table.contains("2 UDP datagram(s)"), "{table}");
        assert!(!table.contains("127.0.0.2:53"), "{table}");
        assert!(table.contains("Hosts: 127.0.0.1 and 127.0.0.2."), "{table}");

        view.observe(
            &frame(3, 0),
            &udp_packet((CLIENT, 1000), (CLIENT, 7), b"s", Checksum::Good),
        );
        let table = render_table(&view, false);
        assert!(table.contains("Source → Destination"), "{table}");
        assert!(table.contains("127.0.0.1:1000 → 127.0.0.2:53"), "{table}");
    }

    #[test]
    fn json_has_one_object_per_datagram_with_stable_fields() {
        let mut view = UdpView::new();
        let a = (CLIENT, 40_000);
        let b = (OTHER, 7);
        view.observe(
            &frame(1, 100),
            &udp_packet(a, b, b"hi\n", Checksum::NotVerified),
        );
        view.observe(
            &frame(2, 2_100),
            &udp_packet(b, a, b"hi\n", Checksum::NotVerified),
        );
        let json = render_json(&view);
        assert_eq!(json.len(), 2);
        let first = &json[0];
        assert_eq!(first["frame"], 1);
        assert_eq!(first["time"], 0.0);
        assert_eq!(first["src"], "127.0.0.1");
        assert_eq!(first["src_port"], 40_000);
        assert_eq!(first["dst"], "127.0.0.2");
        assert_eq!(first["dst_port"], 7);
        assert_eq!(first["length_field"], 11);
        assert_eq!(first["payload_captured"], 3);
        assert_eq!(first["preview"], "\"hi\\n\"");
        assert_eq!(first["answered_by"], 2);
        assert!(first["reply_to"].is_null());
        assert_eq!(first["rtt_ms"], 2.0);
        assert!(first["malformed"].is_null());
        assert_eq!(json[1]["reply_to"], 1);
        assert_eq!(json[1]["time"], 0.002);
    }

    #[test]
    fn snaplen_cut_and_malformed_notes_show() {
        let mut packet = udp_packet(
            (CLIENT, 1),
            (CLIENT, 2),
            b"0123456789",
            Checksum::NotVerified,
        );
        if let Transport::Udp(datagram) = &mut packet.transport {
            datagram.payload = b"0123";
        }
        packet.malformed = Some("UDP payload cut by snaplen".to_string());
        let mut view = UdpView::new();
        view.observe(&frame(1, 0), &packet);
        let table = render_table(&view, false);
        assert!(table.contains("4 B \"0123\" (cut: 10 B sent)"), "{table}");
        assert!(
            table.contains("malformed: UDP payload cut by snaplen"),
            "{table}"
        );
    }

    #[test]
    fn explain_uses_the_first_datagrams_values() {
        // An Ethernet frame whose UDP header (ports 50000 → 9000, length 12,
        // checksum 0xbeef) sits at offset 34, as a dissector would have read it.
        let mut data = vec![0u8; 34];
        data.extend_from_slice(&[0xc3, 0x50, 0x23, 0x28, 0x00, 0x0c, 0xbe, 0xef]);
        data.extend_from_slice(b"ping");
        let frame = Frame {
            number: 1,
            time_us: 0,
            data: &data,
            wire_len: 46,
        };
        let a = (CLIENT, 50_000);
        let b = (CLIENT, 9_000);
        let mut view = UdpView::new();
        view.observe(&frame, &udp_packet(a, b, b"ping", Checksum::NotVerified));
        view.observe(
            &self::frame(2, 300),
            &udp_packet(b, a, b"pong", Checksum::NotVerified),
        );
        let table = render_table(&view, true);
        assert!(
            table.contains(
                "(frame 1): source port 50000, destination port 9000, length 12, \
                 checksum 0xbeef (not verified)"
            ),
            "{table}"
        );
        assert!(table.contains("12 = 8 + 4 payload bytes"), "{table}");
        assert!(table.contains("= 65,507 bytes"), "{table}");
        assert!(table.contains("17 is UDP"), "{table}");
        assert!(table.contains("Frame 1 has protocol 17"), "{table}");
        assert!(
            table.contains("frame 2, went 9000 → 50000 after 0.300 ms"),
            "{table}"
        );
    }

    #[test]
    fn empty_capture_says_so() {
        let mut view = UdpView::new();
        view.observe(&frame(1, 0), &Packet::default());
        let table = render_table(&view, true);
        assert!(
            table.starts_with("No UDP datagrams in this capture."),
            "{table}"
        );
        assert!(table.contains("no UDP datagram to explain"), "{table}");
        assert!(render_json(&view).is_empty());
    }

    #[test]
    fn rows_stop_at_the_limit_and_the_rest_is_counted() {
        let mut view = UdpView::with_max_rows(2);
        for number in 1..=5 {
            view.observe(
                &frame(number, 0),
                &udp_packet((CLIENT, 1), (CLIENT, 2), b"x", Checksum::Good),
            );
        }
        assert_eq!(view.rows().len(), 2);
        assert_eq!(view.not_shown(), 3);
        let table = render_table(&view, false);
        assert!(
            table.contains("Only the first 2 datagrams are kept"),
            "{table}"
        );
        assert!(
            table.contains("3 more were counted but not shown"),
            "{table}"
        );
        let json = render_json(&view);
        assert_eq!(json.len(), 3);
        assert_eq!(json[2]["not_shown"], 3);
        assert_eq!(UdpView::new().max_rows, 1_000_000);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(65_507), "65,507");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
