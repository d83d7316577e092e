//! Lab 4, how the analyzer's results look: the `summary`, `flows`, `handshakes` and
//! `tcp` views as tables (comfy-table, coloured only when colour is on) or as JSON
//! Lines (one object per row, stable field names), and the `--explain` notes that
//! turn this capture's values into the lesson (what a SYN, an ISN, a FIN are).
//!
//! Renderers return strings or JSON values; they never print.

use std::fmt::Write as _;
use std::net::SocketAddr;

use comfy_table::{Cell, Color, Table};
use serde::Serialize;
use serde_json::{json, Value};

use super::flows::{HandshakeOptions, HandshakeSegment, Report, TcpConnection, Totals};
use super::packet::tcp_flags;
use super::tcp::{Direction, Marks, SegmentInfo};
use crate::output::{color_enabled, table};

/// Microseconds in a second.
const US_PER_SEC: f64 = 1e6;
/// Microseconds in a millisecond.
const US_PER_MS: f64 = 1e3;

/// Flag names in the order Wireshark's info column lists them (lowest bit first).
const FLAG_NAMES: [(u16, &str); 9] = [
    (tcp_flags::FIN, "FIN"),
    (tcp_flags::SYN, "SYN"),
    (tcp_flags::RST, "RST"),
    (tcp_flags::PSH, "PSH"),
    (tcp_flags::ACK, "ACK"),
    (tcp_flags::URG, "URG"),
    (tcp_flags::ECE, "ECE"),
    (tcp_flags::CWR, "CWR"),
    (tcp_flags::NS, "NS"),
];

/// TCP flags by name, Wireshark's order and spelling: `SYN, ACK`.
pub fn flag_names(flags: u16) -> String {
    let names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// TCP flags in hex as Wireshark prints them: `0x012`.
pub fn flag_hex(flags: u16) -> String {
    format!("0x{flags:03x}")
}

/// Seconds with six decimals, as Wireshark's time column.
fn seconds(us: i64) -> String {
    format!("{:.6}", us as f64 / US_PER_SEC)
}

/// Milliseconds with three decimals.
fn millis(us: i64) -> String {
    format!("{:.3}", us as f64 / US_PER_MS)
}

fn millis_f(us: f64) -> String {
    format!("{:.3}", us / US_PER_MS)
}

/// A rate in bytes/s with a unit people read (B/s, kB/s, MB/s; SI, as tcptrace).
pub fn rate(bytes_per_sec: f64) -> String {
    if bytes_per_sec >= 1e6 {
        format!("{:.2} MB/s", bytes_per_sec / 1e6)
    } else if bytes_per_sec >= 1e3 {
        format!("{:.2} kB/s", bytes_per_sec / 1e3)
    } else {
        format!("{bytes_per_sec:.0} B/s")
    }
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn endpoints(client: SocketAddr, server: SocketAddr) -> String {
    format!("{client} → {server}")
}

/// A cell coloured for its marks when colour is on: red for problems, yellow for notes.
fn marks_cell(text: String, marks: Marks) -> Cell {
    let cell = Cell::new(text);
    if !color_enabled() || marks.is_empty() {
        cell
    } else if marks.is_problem() {
        cell.fg(Color::Red)
    } else {
        cell.fg(Color::Yellow)
    }
}

// ---------------------------------------------------------------------------------
// summary

/// The protocol rows of the summary: name and counter.
fn protocol_rows(totals: &Totals) -> [(&'static str, super::flows::Counter); 10] {
    [
        ("all frames", totals.all),
        ("ethernet", totals.ethernet),
        ("ipv4", totals.ipv4),
        ("ipv6", totals.ipv6),
        ("tcp", totals.tcp),
        ("udp", totals.udp),
        ("icmp", totals.icmp),
        ("other", totals.other),
        ("malformed", totals.malformed),
        ("fragments", totals.fragments),
    ]
}

/// The `summary` view as tables, with `--explain` notes when asked.
pub fn summary_table(report: &Report, explain: bool) -> String {
    let totals = &report.totals;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} frames, {} bytes, {} s; {} TCP connections, {} UDP conversations",
        totals.all.packets,
        totals.all.bytes,
        seconds(totals.duration_us()),
        report.tcp.len(),
        report.udp.len()
    );
    let mut protocols = table(&["Protocol", "Packets", "Bytes"]);
    for (name, counter) in protocol_rows(totals) {
        if counter.packets > 0 || matches!(name, "all frames" | "tcp" | "udp") {
            protocols.add_row(vec![
                name.to_string(),
                counter.packets.to_string(),
                counter.bytes.to_string(),
            ]);
        }
    }
    let _ = writeln!(text, "{protocols}");
    let mut events = table(&["Event", "Count", "First frame"]);
    for (name, event) in totals.events.iter() {
        let marks = if event.count > 0 && name != "fragments" {
            Marks::RETRANSMISSION
        } else {
            Marks::NONE
        };
        events.add_row(vec![
            Cell::new(name.replace('_', " ")),
            marks_cell(event.count.to_string(), marks),
            Cell::new(or_dash(event.first_frame)),
        ]);
    }
    let _ = writeln!(text, "{events}");
    if explain {
        text.push_str(&summary_notes(report));
    }
    text
}

fn summary_notes(report: &Report) -> String {
    let totals = &report.totals;
    let mut notes = String::from("Notes:\n");
    let _ = writeln!(
        notes,
        "- Bytes are whole frames as captured on the wire (headers included), as `tshark -z conv` counts them."
    );
    let _ = writeln!(
        notes,
        "- A TCP connection is one stream (handshake to close); a UDP conversation is every datagram between the same two address:port pairs."
    );
    if totals.events.retransmissions.count > 0 {
        let _ = writeln!(
            notes,
            "- {} retransmissions, the first in frame {}: data sent again because it was (or seemed) lost. See `tcp` for which kind.",
            totals.events.retransmissions.count,
            or_dash(totals.events.retransmissions.first_frame)
        );
    }
    let _ = writeln!(
        notes,
        "- Checksums of packets captured on loopback are filled in by the network card (offload), so they are \"not verified\", never counted as bad."
    );
    notes
}

/// The `summary` view as JSON Lines: one capture object, one per protocol, one per
/// event.
pub fn summary_json(report: &Report) -> Vec<Value> {
    let totals = &report.totals;
    let mut rows = vec![json!({
        "row": "capture",
        "frames": totals.all.packets,
        "bytes": totals.all.bytes,
        "duration_s": totals.duration_us() as f64 / US_PER_SEC,
        "tcp_connections": report.tcp.len(),
        "udp_conversations": report.udp.len(),
    })];
    for (name, counter) in protocol_rows(totals) {
        rows.push(json!({
            "row": "protocol",
            "protocol": name,
            "packets": counter.packets,
            "bytes": counter.bytes,
        }));
    }
    for (name, event) in totals.events.iter() {
        rows.push(json!({
            "row": "event",
            "event": name,
            "count": event.count,
            "first_frame": event.first_frame,
        }));
    }
    rows
}

// ---------------------------------------------------------------------------------
// flows

/// One row of the `flows` view, shared by the table and JSON.
struct FlowRow<'a> {
    protocol: &'static str,
    stream: u64,
    client: SocketAddr,
    server: SocketAddr,
    packets: [u64; 2],
    bytes: [u64; 2],
    duration_us: i64,
    conn_state: &'static str,
    history: &'a str,
    retransmissions: Option<u64>,
}

fn flow_rows(report: &Report) -> impl Iterator<Item = FlowRow<'_>> + '_ {
    let tcp = report.tcp.iter().map(|c| FlowRow {
        protocol: "tcp",
        stream: c.stream,
        client: c.stats.client,
        server: c.stats.server,
        packets: c.stats.packets,
        bytes: c.stats.bytes,
        duration_us: c.stats.duration_us(),
        conn_state: c.conn_state().as_str(),
        history: c.history.as_str(),
        retransmissions: Some(c.retransmissions),
    });
    let udp = report.udp.iter().map(|u| FlowRow {
        protocol: "udp",
        stream: u.stream,
        client: u.stats.client,
        server: u.stats.server,
        packets: u.stats.packets,
        bytes: u.stats.bytes,
        duration_us: u.stats.duration_us(),
        conn_state: u.conn_state().as_str(),
        history: u.history.as_str(),
        retransmissions: None,
    });
    tcp.chain(udp)
}

/// The `flows` view as a table.
pub fn flows_table(report: &Report, explain: bool) -> String {
    let mut t = table(&[
        "Proto",
        "Stream",
        "Client → Server",
        "Pkts →",
        "Pkts ←",
        "Bytes →",
        "Bytes ←",
        "Duration s",
        "State",
        "History",
        "Retrans",
    ]);
    for row in flow_rows(report) {
        let retrans = row.retransmissions.unwrap_or(0);
        let marks = if retrans > 0 {
            Marks::RETRANSMISSION
        } else {
            Marks::NONE
        };
        t.add_row(vec![
            Cell::new(row.protocol),
            Cell::new(row.stream),
            Cell::new(endpoints(row.client, row.server)),
            Cell::new(row.packets[0]),
            Cell::new(row.packets[1]),
            Cell::new(row.bytes[0]),
            Cell::new(row.bytes[1]),
            Cell::new(seconds(row.duration_us)),
            Cell::new(row.conn_state),
            Cell::new(row.history),
            marks_cell(or_dash(row.retransmissions), marks),
        ]);
    }
    let mut text = format!("{t}\n");
    if explain {
        text.push_str(&flows_notes(report));
    }
    text
}

fn flows_notes(report: &Report) -> String {
    let mut notes = String::from("Notes:\n");
    let _ = writeln!(
        notes,
        "- → is client to server (the client sent the SYN, or for UDP the first datagram); bytes are whole frames."
    );
    let _ = writeln!(
        notes,
        "- State is Zeek's conn_state: S0 attempt without reply, S1 established, SF opened and closed normally, REJ rejected by RST, RSTO/RSTR aborted by the client/server, OTH no SYN seen."
    );
    let _ = writeln!(
        notes,
        "- History letters (upper case from the client, lower case from the server): S SYN, H SYN-ACK, A pure ACK, D data, F FIN, R RST, T retransmission, W zero window, C bad checksum, ^ roles flipped."
    );
    if let Some(c) = report.tcp.first() {
        let _ = writeln!(
            notes,
            "- Stream {}: state {} ({}), history {}.",
            c.stream,
            c.conn_state().as_str(),
            c.conn_state().meaning(),
            c.history.as_str()
        );
    }
    notes
}

/// The `flows` view as JSON Lines.
pub fn flows_json(report: &Report) -> impl Iterator<Item = FlowJson<'_>> + '_ {
    flow_rows(report).map(|row| FlowJson {
        bytes_c2s: row.bytes[0],
        bytes_s2c: row.bytes[1],
        client: row.client,
        conn_state: row.conn_state,
        duration_s: row.duration_us as f64 / US_PER_SEC,
        history: row.history,
        packets_c2s: row.packets[0],
        packets_s2c: row.packets[1],
        protocol: row.protocol,
        retransmissions: row.retransmissions,
        server: row.server,
        stream: row.stream,
    })
}

/// One row of `flows --json`. A plain struct rather than a `serde_json::Value`: a
/// capture can hold hundreds of thousands of flows, and rows are written one at a
/// time as they are made, so memory does not grow with them (fields in alphabetical
/// order, as the other views' JSON objects have them).
#[derive(Debug, Serialize)]
pub struct FlowJson<'a> {
    bytes_c2s: u64,
    bytes_s2c: u64,
    client: SocketAddr,
    conn_state: &'static str,
    duration_s: f64,
    history: &'a str,
    packets_c2s: u64,
    packets_s2c: u64,
    protocol: &'static str,
    retransmissions: Option<u64>,
    server: SocketAddr,
    stream: u64,
}

// ---------------------------------------------------------------------------------
// handshakes

/// Options as Wireshark's info column lists them: `MSS=65495 WS=128 SACK_PERM TSval=.. TSecr=..`.
pub fn options_text(options: &HandshakeOptions) -> String {
    let mut parts = Vec::new();
    if let Some(mss) = options.mss {
        parts.push(format!("MSS={mss}"));
    }
    if let Some(shift) = options.window_scale {
        // Wireshark shows the multiplier: WS=128 for a shift of 7.
        parts.push(format!("WS={} (shift {shift})", 1u32 << shift.min(14)));
    }
    if options.sack_permitted {
        parts.push("SACK_PERM".to_string());
    }
    if let Some((tsval, tsecr)) = options.timestamps {
        parts.push(format!("TSval={tsval} TSecr={tsecr}"));
    }
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join(" ")
    }
}

fn options_json(options: &HandshakeOptions) -> Value {
    json!({
        "mss": options.mss,
        "window_scale": options.window_scale,
        "sack_permitted": options.sack_permitted,
        "timestamps": options.timestamps.map(|(v, e)| json!({"tsval": v, "tsecr": e})),
    })
}

/// The ISNs a connection's relative numbers are based on (client, server).
fn isns(c: &TcpConnection) -> (Option<u32>, Option<u32>) {
    (
        c.handshake.syn.map(|s| s.seq),
        c.handshake.syn_ack.map(|s| s.seq),
    )
}

fn relative(raw: u32, base: Option<u32>) -> String {
    match base {
        Some(base) => format!("{raw} ({})", raw.wrapping_sub(base)),
        None => raw.to_string(),
    }
}

fn check(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "WRONG",
        None => "-",
    }
}

/// The `handshakes` view: one small table per connection (handshake and teardown
/// segments), then the RTTs and the close kind.
pub fn handshakes_table(report: &Report, explain: bool) -> String {
    let mut text = String::new();
    for c in &report.tcp {
        let (client_isn, server_isn) = isns(c);
        let h = &c.handshake;
        let _ = writeln!(
            text,
            "Stream {}: {}  [{}]",
            c.stream,
            endpoints(c.stats.client, c.stats.server),
            c.conn_state().as_str()
        );
        let mut t = table(&[
            "Step",
            "Frame",
            "Dir",
            "Flags",
            "Seq raw (rel)",
            "Ack raw (rel)",
            "Window",
            "Options",
            "Check",
        ]);
        let mut add = |step: &str, seg: &HandshakeSegment, dir: Direction, check_text: String| {
            let (seq_base, ack_base) = match dir {
                Direction::ClientToServer => (client_isn, server_isn),
                Direction::ServerToClient => (server_isn, client_isn),
            };
            let ack = if seg.flags & tcp_flags::ACK != 0 {
                relative(seg.ack, ack_base)
            } else {
                "-".to_string()
            };
            t.add_row(vec![
                step.to_string(),
                seg.frame.to_string(),
                dir.arrow().to_string(),
                format!("{} {}", flag_hex(seg.flags), flag_names(seg.flags)),
                relative(seg.seq, seq_base),
                ack,
                seg.window.to_string(),
                options_text(&seg.options),
                check_text,
            ]);
        };
        if let Some(syn) = &h.syn {
            let resent = if h.syn_count > 1 {
                format!("sent {} times", h.syn_count)
            } else {
                String::new()
            };
            add("SYN", syn, Direction::ClientToServer, resent);
        }
        if let Some(syn_ack) = &h.syn_ack {
            let text = format!("ack = ISN+1: {}", check(h.syn_ack_acks_isn()));
            add("SYN-ACK", syn_ack, Direction::ServerToClient, text);
        }
        if let Some(ack) = &h.ack {
            let text = format!("ack = ISN+1: {}", check(h.ack_acks_isn()));
            add("ACK", ack, Direction::ClientToServer, text);
        }
        let _ = writeln!(text, "{t}");
        let _ = writeln!(
            text,
            "  handshake RTT: SYN→SYN-ACK {} ms, SYN-ACK→ACK {} ms, total {} ms",
            or_dash(h.syn_to_syn_ack_us.map(millis)),
            or_dash(h.syn_ack_to_ack_us.map(millis)),
            or_dash(h.initial_rtt_us.map(millis)),
        );
        let _ = writeln!(text, "  close: {}", teardown_text(c));
        text.push('\n');
    }
    if report.tcp.is_empty() {
        text.push_str("no TCP connections in this capture\n");
    }
    if explain {
        text.push_str(&handshake_notes(report));
    }
    text
}

fn teardown_text(c: &TcpConnection) -> String {
    let t = &c.teardown;
    let mut parts = vec![c.teardown.kind().as_str().to_string()];
    for dir in [Direction::ClientToServer, Direction::ServerToClient] {
        if let Some(fin) = t.fin[dir.index()] {
            let acked = t.fin_acked_in[dir.index()]
                .map(|f| format!(", acked in {f}"))
                .unwrap_or_default();
            parts.push(format!("FIN {} frame {}{acked}", dir.arrow(), fin.frame));
        }
    }
    if let Some((rst, dir)) = t.rst {
        parts.push(format!("RST {} frame {}", dir.arrow(), rst.frame));
    }
    parts.join("; ")
}

fn handshake_notes(report: &Report) -> String {
    let mut notes = String::from("Notes:\n");
    let Some(c) = report.tcp.iter().find(|c| c.handshake.is_complete()) else {
        let _ = writeln!(notes, "- No complete three-way handshake in this capture.");
        return notes;
    };
    let h = &c.handshake;
    let (Some(syn), Some(syn_ack), Some(ack)) = (h.syn, h.syn_ack, h.ack) else {
        return notes;
    };
    let _ = writeln!(
        notes,
        "- SYN (frame {}): the client {} asks to open a connection and picks its initial sequence number (ISN) {}. Relative numbers count from the ISN, so the SYN is seq 0. The SYN flag is bit 0x002.",
        syn.frame, c.stats.client, syn.seq
    );
    let _ = writeln!(
        notes,
        "- SYN-ACK (frame {}, flags 0x012 = SYN + ACK): the server {} picks its own ISN {} and acknowledges the client's: ack = {} + 1 = {}. A SYN takes one sequence number, so the next byte expected is ISN + 1.",
        syn_ack.frame, c.stats.server, syn_ack.seq, syn.seq, syn_ack.ack
    );
    let _ = writeln!(
        notes,
        "- ACK (frame {}, flags 0x010): the client acknowledges the server's SYN: ack = {} + 1 = {}. The connection is open.",
        ack.frame, syn_ack.seq, ack.ack
    );
    if syn.options.sack_permitted && syn_ack.options.sack_permitted {
        let _ = writeln!(
            notes,
            "- Both SYNs carry SACK_PERM: the receiver may report blocks received after a gap (selective acknowledgment)."
        );
    }
    let _ = writeln!(
        notes,
        "- FIN (flag 0x001) closes one direction; each FIN is acknowledged. Four-way: FIN, ACK, FIN, ACK; three-way: the second FIN carries the ACK. RST (0x004) aborts at once."
    );
    notes
}

fn segment_json(seg: &HandshakeSegment) -> Value {
    json!({
        "frame": seg.frame,
        "seq_raw": seg.seq,
        "ack_raw": seg.ack,
        "flags": flag_hex(seg.flags),
        "flag_names": flag_names(seg.flags),
        "window": seg.window,
        "options": options_json(&seg.options),
    })
}

/// The `handshakes` view as JSON Lines, one object per connection.
pub fn handshakes_json(report: &Report) -> Vec<Value> {
    report
        .tcp
        .iter()
        .map(|c| {
            let h = &c.handshake;
            let t = &c.teardown;
            let fin = |d: Direction| {
                t.fin[d.index()]
                    .map(|f| json!({"frame": f.frame, "acked_in": t.fin_acked_in[d.index()]}))
            };
            json!({
                "stream": c.stream,
                "client": c.stats.client.to_string(),
                "server": c.stats.server.to_string(),
                "syn": h.syn.as_ref().map(segment_json),
                "syn_count": h.syn_count,
                "syn_ack": h.syn_ack.as_ref().map(segment_json),
                "ack": h.ack.as_ref().map(segment_json),
                "syn_ack_acks_isn_plus_1": h.syn_ack_acks_isn(),
                "ack_acks_isn_plus_1": h.ack_acks_isn(),
                "rtt_syn_to_syn_ack_ms": h.syn_to_syn_ack_us.map(|us| us as f64 / US_PER_MS),
                "rtt_syn_ack_to_ack_ms": h.syn_ack_to_ack_us.map(|us| us as f64 / US_PER_MS),
                "initial_rtt_ms": h.initial_rtt_us.map(|us| us as f64 / US_PER_MS),
                "teardown": c.teardown.kind().as_str(),
                "fin_c2s": fin(Direction::ClientToServer),
                "fin_s2c": fin(Direction::ServerToClient),
                "rst": t.rst.map(|(r, d)| json!({"frame": r.frame, "direction": d.short_name()})),
                "conn_state": c.conn_state().as_str(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// tcp

/// Facts about a segment's frame the `tcp` view prints next to the analysis.
#[derive(Debug, Clone, Copy)]
pub struct SegmentFrame {
    /// Frame number.
    pub number: u64,
    /// Time since the first frame of the capture, µs.
    pub since_start_us: i64,
    /// TCP header length, bytes.
    pub header_len: u8,
}

fn marks_text(info: &SegmentInfo) -> String {
    let mut parts: Vec<String> = info.marks.names().map(str::to_string).collect();
    if let Some((n, frame)) = info.duplicate_ack {
        if let Some(dup) = parts.iter_mut().find(|p| p.as_str() == "duplicate ack") {
            *dup = format!("duplicate ack #{n} of {frame}");
        }
    }
    parts.join(", ")
}

/// The header of the `tcp` view's table.
pub const TCP_HEADERS: [&str; 14] = [
    "Frame",
    "Time",
    "Stream",
    "Dir",
    "Seq",
    "Len",
    "Hdr+Data",
    "Flags",
    "Ack",
    "Win",
    "Win scaled",
    "Marks",
    "Acks frame (RTT ms)",
    "Sample/Est/Dev RTT ms",
];

/// One row of the `tcp` view's table.
pub fn tcp_row(frame: &SegmentFrame, info: &SegmentInfo) -> Vec<Cell> {
    let acks = match (info.acks_frame, info.ack_rtt_us) {
        (Some(f), Some(rtt)) => format!("{f} ({})", millis(rtt)),
        _ => String::new(),
    };
    let rtt = info
        .rtt
        .map(|r| {
            format!(
                "{} / {} / {}",
                millis(r.sample_us),
                millis_f(r.estimated_us),
                millis_f(r.dev_us)
            )
        })
        .unwrap_or_default();
    vec![
        Cell::new(frame.number),
        Cell::new(seconds(frame.since_start_us)),
        Cell::new(info.stream),
        Cell::new(info.direction.arrow()),
        Cell::new(info.rel_seq),
        Cell::new(info.len),
        Cell::new(format!("{}+{}", frame.header_len, info.len)),
        Cell::new(flag_names(info.flags)),
        Cell::new(or_dash(info.rel_ack)),
        Cell::new(info.window),
        Cell::new(info.scaled_window),
        marks_cell(marks_text(info), info.marks),
        Cell::new(acks),
        Cell::new(rtt),
    ]
}

/// One JSON object of the `tcp` view.
pub fn tcp_json(frame: &SegmentFrame, info: &SegmentInfo) -> Value {
    let marks: Vec<&str> = info.marks.names().collect();
    json!({
        "frame": frame.number,
        "time_s": frame.since_start_us as f64 / US_PER_SEC,
        "stream": info.stream,
        "direction": info.direction.short_name(),
        "seq": info.rel_seq,
        "next_seq": info.rel_next_seq,
        "ack": info.rel_ack,
        "len": info.len,
        "header_len": frame.header_len,
        "flags": flag_hex(info.flags),
        "flag_names": flag_names(info.flags),
        "window": info.window,
        "window_scaled": info.scaled_window,
        "marks": marks,
        "duplicate_ack_num": info.duplicate_ack.map(|(n, _)| n),
        "duplicate_ack_of": info.duplicate_ack.map(|(_, f)| f),
        "acks_frame": info.acks_frame,
        "ack_rtt_ms": info.ack_rtt_us.map(|us| us as f64 / US_PER_MS),
        "sample_rtt_ms": info.rtt.map(|r| r.sample_us as f64 / US_PER_MS),
        "estimated_rtt_ms": info.rtt.map(|r| r.estimated_us / US_PER_MS),
        "dev_rtt_ms": info.rtt.map(|r| r.dev_us / US_PER_MS),
    })
}

/// The per-stream throughput table at the end of the `tcp` view.
pub fn throughput_table(connections: &[&TcpConnection]) -> Table {
    let mut t = table(&[
        "Stream",
        "Client → Server",
        "Data →",
        "Throughput →",
        "Data ←",
        "Throughput ←",
        "Min win ←",
    ]);
    for c in connections {
        let [up, down] = c.throughput();
        t.add_row(vec![
            c.stream.to_string(),
            endpoints(c.stats.client, c.stats.server),
            c.stats.payload_bytes[0].to_string(),
            up.map_or_else(|| "-".to_string(), rate),
            c.stats.payload_bytes[1].to_string(),
            down.map_or_else(|| "-".to_string(), rate),
            or_dash(c.min_window[1]),
        ]);
    }
    t
}

/// JSON objects for the throughput rows (`"row": "throughput"`).
pub fn throughput_json(connections: &[&TcpConnection]) -> Vec<Value> {
    connections
        .iter()
        .map(|c| {
            let [up, down] = c.throughput();
            json!({
                "row": "throughput",
                "stream": c.stream,
                "payload_bytes_c2s": c.stats.payload_bytes[0],
                "payload_bytes_s2c": c.stats.payload_bytes[1],
                "throughput_c2s_bytes_per_s": up,
                "throughput_s2c_bytes_per_s": down,
                "min_window_c2s": c.min_window[0],
                "min_window_s2c": c.min_window[1],
            })
        })
        .collect()
}

/// The `--explain` notes under the `tcp` view, with the first connection's values.
pub fn tcp_notes(connections: &[&TcpConnection], first_rtt: Option<(u64, SegmentInfo)>) -> String {
    let mut notes = String::from("Notes:\n");
    let _ = writeln!(
        notes,
        "- Seq and Ack are relative: the sender's ISN is subtracted so the SYN is 0 and the first data byte is 1. Len is the payload; Hdr+Data the TCP header and payload sizes."
    );
    let _ = writeln!(
        notes,
        "- Ack says \"I have everything before this byte\". An ACK that covers two segments acknowledges both; Acks frame names the segment it completes and the time it took (the RTT sample)."
    );
    if let Some((frame, info)) = first_rtt {
        if let Some(r) = info.rtt {
            let _ = writeln!(
                notes,
                "- SampleRTT = time from a segment to its ACK (first: frame {frame}, {} ms). EstimatedRTT = 7/8 EstimatedRTT + 1/8 SampleRTT, starting at the first sample; DevRTT = 3/4 DevRTT + 1/4 |SampleRTT - EstimatedRTT|, starting at SampleRTT/2; TimeoutInterval = EstimatedRTT + 4 DevRTT ({} ms here). Each direction's data has its own estimator. Retransmitted segments give no sample (Karn's rule).",
                millis(r.sample_us),
                millis_f(r.timeout_us())
            );
        }
    }
    let _ = writeln!(
        notes,
        "- Win is the receive window as sent; Win scaled multiplies it by 2^shift when both SYNs carried the window-scale option (SYNs themselves are never scaled)."
    );
    let _ = writeln!(
        notes,
        "- Marks follow Wireshark: retransmission (timer expired), fast retransmission (after duplicate ACKs), duplicate ack, out-of-order, previous segment not captured, zero window, window full, keep-alive."
    );
    for c in connections {
        if let (Some(min), Some(bytes)) = (c.min_window[1], c.stats.payload_bytes.first()) {
            let _ = writeln!(
                notes,
                "- Stream {}: the server's smallest advertised window was {min} bytes; the client sent {bytes} payload bytes.",
                c.stream
            );
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::flows::TeardownKind;

    #[test]
    fn flags_print_as_wireshark_does() {
        assert_eq!(flag_names(tcp_flags::SYN | tcp_flags::ACK), "SYN, ACK");
        assert_eq!(
            flag_names(tcp_flags::FIN | tcp_flags::PSH | tcp_flags::ACK),
            "FIN, PSH, ACK"
        );
        assert_eq!(flag_hex(tcp_flags::SYN | tcp_flags::ACK), "0x012");
        assert_eq!(flag_hex(tcp_flags::ACK), "0x010");
        assert_eq!(flag_names(0), "none");
    }

    #[test]
    fn options_and_rates_read_well() {
        let options = HandshakeOptions {
            mss: Some(65_495),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
        };
        assert_eq!(
            options_text(&options),
            "MSS=65495 WS=128 (shift 7) SACK_PERM TSval=1 TSecr=0"
        );
        assert_eq!(options_text(&HandshakeOptions::default()), "-");
        assert_eq!(rate(1_500_000.0), "1.50 MB/s");
        assert_eq!(rate(2_000.0), "2.00 kB/s");
        assert_eq!(rate(12.0), "12 B/s");
    }

    #[test]
    fn teardown_kinds_have_stable_names() {
        assert_eq!(TeardownKind::ThreeWay.as_str(), "three-way");
        assert_eq!(seconds(1_500_000), "1.500000");
        assert_eq!(millis(1_234), "1.234");
    }
}
