//! Lab 4, the `ladder STREAM` view of `socklab analyze`: a sequence diagram of one TCP
//! connection in the terminal, like Wireshark's flow graph or the drawings in a
//! textbook. One line per segment, its arrow pointing the way it went:
//!
//! ```text
//!       Time  Frame 127.0.0.1:40000                    127.0.0.2:12000 Marks
//!   0.000000      1 |─ SYN seq=0 len=0 ─────────────────────────────▶|
//!   0.001000      2 |◀────────────────── SYN, ACK seq=0 ack=1 len=0 ─|
//!   0.002000      3 |─ ACK seq=1 ack=1 len=0 ───────────────────────▶|
//!   0.003000      4 |─ PSH, ACK seq=1 ack=1 len=5 ──────────────────▶|
//!   0.004000      5 |─ PSH, ACK seq=1 ack=1 len=5 ──────────────────▶| retransmission
//! ```
//!
//! Time is seconds since the capture's first frame; seq and ack are relative (the
//! `tcp` view's numbers); marks are the TCP analysis's, Wireshark's names, in red for
//! problems and yellow for notes when colour is on. Every line fits in
//! [`LINE_WIDTH`] columns; long marks continue on the next line.
//!
//! Lines are written as the capture streams: nothing is kept per segment.

use std::io::{self, Write};
use std::net::SocketAddr;

use colored::Colorize;
use serde_json::{json, Value};

use crate::capture::flows::Observation;
use crate::capture::packet::{Frame, Packet, Transport};
use crate::capture::render::{flag_hex, flag_names};
use crate::capture::tcp::{Direction, SegmentInfo};
use crate::output;

/// The widest line the diagram draws.
pub const LINE_WIDTH: usize = 100;
/// Width of the time column (`123.456789`).
const TIME_WIDTH: usize = 10;
/// Width of the frame column.
const FRAME_WIDTH: usize = 6;
/// Width of the arrow between the two bars.
const ARROW_WIDTH: usize = 48;
/// Where the left bar (the client's line) stands: after time, frame and two spaces.
const LEFT_BAR: usize = TIME_WIDTH + 1 + FRAME_WIDTH + 1;
/// Width left for the marks after the right bar and a space.
const MARKS_WIDTH: usize = LINE_WIDTH - LEFT_BAR - ARROW_WIDTH - 3;
/// The most characters of an endpoint's address the column header shows.
const MAX_ADDRESS_WIDTH: usize = ARROW_WIDTH / 2;
/// Characters an arrow needs beside its label: `─ ` + label + ` ` + at least one `─` +
/// the head.
const ARROW_FRAME: usize = 5;

/// The `ladder` view: feed it every frame with [`LadderView::observe`], which writes
/// the chosen stream's lines as they come, then [`LadderView::finish`].
#[derive(Debug)]
pub struct LadderView {
    stream: u64,
    json: bool,
    /// The capture's first frame time, which the time column counts from.
    start_us: Option<i64>,
    segments: u64,
}

impl LadderView {
    /// A ladder of `tcp.stream` `stream`, as a diagram or (`json`) JSON Lines.
    pub fn new(stream: u64, json: bool) -> LadderView {
        LadderView {
            stream,
            json,
            start_us: None,
            segments: 0,
        }
    }

    /// Takes one frame and what the analyzer made of it; a segment of the chosen stream
    /// is written to `out` at once (the header before the first).
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn observe(
        &mut self,
        frame: &Frame<'_>,
        packet: &Packet<'_>,
        observation: &Observation,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        let start = *self.start_us.get_or_insert(frame.time_us);
        let Observation::Tcp(info) = observation else {
            return Ok(());
        };
        if info.stream != self.stream {
            return Ok(());
        }
        let (Transport::Tcp(segment), Some(ip)) = (&packet.transport, &packet.ip) else {
            return Ok(());
        };
        let src = SocketAddr::new(ip.src, segment.src_port);
        let dst = SocketAddr::new(ip.dst, segment.dst_port);
        let time_us = frame.time_us - start;
        self.segments += 1;
        if self.json {
            serde_json::to_writer(
                &mut *out,
                &arrow_json(frame.number, time_us, src, dst, info),
            )?;
            return out.write_all(b"\n");
        }
        if self.segments == 1 {
            let (client, server) = match info.direction {
                Direction::ClientToServer => (src, dst),
                Direction::ServerToClient => (dst, src),
            };
            out.write_all(header(self.stream, client, server).as_bytes())?;
        }
        let line = arrow_lines(frame.number, time_us, info, output::color_enabled());
        out.write_all(line.as_bytes())
    }

    /// Ends the diagram: a count of segments, or a note that the stream was not found.
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn finish(self, out: &mut dyn Write) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        if self.segments == 0 {
            writeln!(out, "No TCP stream {} in this capture.", self.stream)
        } else {
            writeln!(out, "{} segments.", self.segments)
        }
    }
}

/// Cuts `text` to `max` characters, ending in `…` when it was longer.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The header: which stream (endpoints on lines of their own if one line would be too
/// wide), what the numbers mean, and the column titles with each endpoint above its bar.
pub fn header(stream: u64, client: SocketAddr, server: SocketAddr) -> String {
    let mut text = format!("TCP stream {stream}: client {client} ⇄ server {server}\n");
    if text.chars().count() > LINE_WIDTH + 1 {
        text = format!("TCP stream {stream}:\n  client {client}\n  server {server}\n");
    }
    text.push_str("Time in seconds since the capture's first frame; seq and ack relative.\n");
    let left = fit(&client.to_string(), MAX_ADDRESS_WIDTH);
    let right = fit(&server.to_string(), MAX_ADDRESS_WIDTH);
    // The client's address starts over its bar, the server's ends over its bar.
    let gap = ARROW_WIDTH + 2 - left.chars().count() - right.chars().count();
    text.push_str(&format!(
        "{:>TIME_WIDTH$} {:>FRAME_WIDTH$} {left}{}{right} Marks\n",
        "Time",
        "Frame",
        " ".repeat(gap),
    ));
    text
}

/// The label on an arrow: flags, relative seq and ack, payload length.
fn label(info: &SegmentInfo) -> String {
    let mut text = format!("{} seq={}", flag_names(info.flags), info.rel_seq);
    if let Some(ack) = info.rel_ack {
        text.push_str(&format!(" ack={ack}"));
    }
    text.push_str(&format!(" len={}", info.len));
    text
}

/// The arrow between the bars, [`ARROW_WIDTH`] characters, pointing `direction`.
fn arrow(direction: Direction, label: &str) -> String {
    let label = fit(label, ARROW_WIDTH - ARROW_FRAME);
    let fill = "─".repeat(ARROW_WIDTH - ARROW_FRAME + 1 - label.chars().count());
    match direction {
        Direction::ClientToServer => format!("─ {label} {fill}▶"),
        Direction::ServerToClient => format!("◀{fill} {label} ─"),
    }
}

/// The marks as text, Wireshark's names; a duplicate ACK says which one and of what.
fn marks_names(info: &SegmentInfo) -> Vec<String> {
    info.marks
        .names()
        .map(|name| match info.duplicate_ack {
            Some((n, frame)) if name == "duplicate ack" => format!("duplicate ack #{n} of {frame}"),
            _ => name.to_string(),
        })
        .collect()
}

/// Groups the marks into lines of at most [`MARKS_WIDTH`] characters.
fn wrap_marks(names: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for name in names {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 2 + name.chars().count() <= MARKS_WIDTH => {
                line.push_str(", ");
                line.push_str(name);
            }
            _ => lines.push(name.clone()),
        }
    }
    lines
}

/// One segment's line (and continuation lines for long marks), ending in a newline.
/// With `color`, a segment with marks is drawn red (a problem) or yellow (a note).
pub fn arrow_lines(frame: u64, time_us: i64, info: &SegmentInfo, color: bool) -> String {
    let paint = |text: String| -> String {
        if !color || info.marks.is_empty() {
            text
        } else if info.marks.is_problem() {
            text.red().to_string()
        } else {
            text.yellow().to_string()
        }
    };
    let time = format!("{:.6}", time_us as f64 / 1e6);
    let body = paint(arrow(info.direction, &label(info)));
    let marks = wrap_marks(&marks_names(info));
    let mut text = format!("{time:>TIME_WIDTH$} {frame:>FRAME_WIDTH$} |{body}|");
    let mut rest = marks.into_iter();
    if let Some(first) = rest.next() {
        text.push(' ');
        text.push_str(&paint(first));
    }
    text.push('\n');
    for more in rest {
        let blank = " ".repeat(ARROW_WIDTH);
        let line = format!("{:LEFT_BAR$}|{blank}| {}\n", "", paint(more));
        text.push_str(&line);
    }
    text
}

/// One arrow as a JSON object: `stream`, `frame`, `time_s`, `direction` (`c2s` or
/// `s2c`), `from`, `to`, `flags` (hex), `flag_names`, `seq`, `ack` (null without
/// ACK), `len`, `marks` (Wireshark's names).
pub fn arrow_json(
    frame: u64,
    time_us: i64,
    from: SocketAddr,
    to: SocketAddr,
    info: &SegmentInfo,
) -> Value {
    json!({
        "stream": info.stream,
        "frame": frame,
        "time_s": time_us as f64 / 1e6,
        "direction": info.direction.short_name(),
        "from": from.to_string(),
        "to": to.to_string(),
        "flags": flag_hex(info.flags),
        "flag_names": flag_names(info.flags),
        "seq": info.rel_seq,
        "ack": info.rel_ack,
        "len": info.len,
        "marks": marks_names(info),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::packet::tcp_flags::{ACK, FIN, PSH, SYN};
    use crate::capture::views::hand_made::{Connection, CLIENT_ISN, SERVER_ISN};

    /// Runs segments (from_client, flags, seq, ack, payload length) through the
    /// analyzer and a ladder of stream 0, and returns what the ladder wrote.
    fn draw(json: bool, segments: &[(bool, u16, u32, u32, usize)]) -> String {
        let mut connection = Connection::new();
        let mut view = LadderView::new(0, json);
        let mut out = Vec::new();
        for &(from_client, flags, seq, ack, len) in segments {
            let payload = vec![b'x'; len];
            let (made, observation) = connection.segment(from_client, flags, seq, ack, &payload);
            view.observe(&made.frame, &made.packet(), &observation, &mut out)
                .expect("write to a Vec");
        }
        view.finish(&mut out).expect("write to a Vec");
        String::from_utf8(out).expect("the ladder is UTF-8")
    }

    const C: u32 = CLIENT_ISN;
    const S: u32 = SERVER_ISN;

    /// Handshake, a request, its reply, a four-way close.
    const EXCHANGE: [(bool, u16, u32, u32, usize); 9] = [
        (true, SYN, C, 0, 0),
        (false, SYN | ACK, S, C + 1, 0),
        (true, ACK, C + 1, S + 1, 0),
        (true, PSH | ACK, C + 1, S + 1, 5),
        (false, PSH | ACK, S + 1, C + 6, 5),
        (true, FIN | ACK, C + 6, S + 6, 0),
        (false, ACK, S + 6, C + 7, 0),
        (false, FIN | ACK, S + 6, C + 7, 0),
        (true, ACK, C + 7, S + 7, 0),
    ];

    #[test]
    fn a_handshake_data_and_close_draw_one_arrow_each_in_its_direction() {
        let text = draw(false, &EXCHANGE);
        let expected = "\
TCP stream 0: client 127.0.0.1:40000 ⇄ server 127.0.0.2:12000
Time in seconds since the capture's first frame; seq and ack relative.
      Time  Frame 127.0.0.1:40000                    127.0.0.2:12000 Marks
  0.000000      1 |─ SYN seq=0 len=0 ─────────────────────────────▶|
  0.001000      2 |◀────────────────── SYN, ACK seq=0 ack=1 len=0 ─|
  0.002000      3 |─ ACK seq=1 ack=1 len=0 ───────────────────────▶|
  0.003000      4 |─ PSH, ACK seq=1 ack=1 len=5 ──────────────────▶|
  0.004000      5 |◀────────────────── PSH, ACK seq=1 ack=6 len=5 ─|
  0.005000      6 |─ FIN, ACK seq=6 ack=6 len=0 ──────────────────▶|
  0.006000      7 |◀─────────────────────── ACK seq=6 ack=7 len=0 ─|
  0.007000      8 |◀────────────────── FIN, ACK seq=6 ack=7 len=0 ─|
  0.008000      9 |─ ACK seq=7 ack=7 len=0 ───────────────────────▶|
9 segments.
";
        assert_eq!(text, expected);
    }

    #[test]
    fn every_line_fits_and_the_bars_line_up() {
        let text = draw(false, &EXCHANGE);
        for line in text.lines() {
            assert!(line.chars().count() <= LINE_WIDTH, "too wide: {line}");
        }
        for line in text.lines().skip(3).filter(|l| l.contains('|')) {
            let bars: Vec<usize> = line
                .chars()
                .enumerate()
                .filter(|(_, c)| *c == '|')
                .map(|(i, _)| i)
                .collect();
            assert_eq!(bars, [LEFT_BAR, LEFT_BAR + ARROW_WIDTH + 1], "{line}");
        }
    }

    #[test]
    fn marks_follow_the_arrow_and_wrap_within_the_width() {
        let text = draw(
            false,
            &[
                (true, SYN, C, 0, 0),
                (false, SYN | ACK, S, C + 1, 0),
                (true, ACK, C + 1, S + 1, 0),
                (true, PSH | ACK, C + 1, S + 1, 5),
                // The same data again: a retransmission.
                (true, PSH | ACK, C + 1, S + 1, 5),
                // Data after a hole the capture missed.
                (true, PSH | ACK, C + 16, S + 1, 5),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[7].ends_with("| retransmission"), "{}", lines[7]);
        assert!(
            lines[8].ends_with("| previous segment not captured"),
            "{}",
            lines[8]
        );
        assert_eq!(lines[9], "6 segments.");

        let names: Vec<String> = ["retransmission", "out-of-order", "keep-alive"]
            .map(String::from)
            .to_vec();
        let wrapped = wrap_marks(&names);
        assert_eq!(wrapped, ["retransmission, out-of-order", "keep-alive"]);
        assert!(wrapped
            .iter()
            .all(|line| line.chars().count() <= MARKS_WIDTH));
    }

    #[test]
    fn a_missing_stream_says_so() {
        let text = draw(false, &EXCHANGE[..1]);
        let view = LadderView::new(3, false);
        let mut out = Vec::new();
        view.finish(&mut out).expect("write to a Vec");
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "No TCP stream 3 in this capture.\n"
        );
        assert!(text.ends_with("1 segments.\n"));
    }

    #[test]
    fn json_has_one_object_per_arrow() {
        let text = draw(true, &EXCHANGE[..2]);
        let rows: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(
            rows,
            [
                json!({"stream": 0, "frame": 1, "time_s": 0.0, "direction": "c2s",
                       "from": "127.0.0.1:40000", "to": "127.0.0.2:12000", "flags": "0x002",
                       "flag_names": "SYN", "seq": 0, "ack": null, "len": 0, "marks": []}),
                json!({"stream": 0, "frame": 2, "time_s": 0.001, "direction": "s2c",
                       "from": "127.0.0.2:12000", "to": "127.0.0.1:40000", "flags": "0x012",
                       "flag_names": "SYN, ACK", "seq": 0, "ack": 1, "len": 0, "marks": []}),
            ]
        );
    }

    #[test]
    fn long_labels_are_cut_to_fit_the_arrow() {
        let label =
            "FIN, SYN, RST, PSH, ACK, URG, ECE, CWR seq=4294967295 ack=4294967295 len=65535";
        let drawn = arrow(Direction::ServerToClient, label);
        assert_eq!(drawn.chars().count(), ARROW_WIDTH);
        assert!(drawn.starts_with("◀─ FIN, SYN"));
        assert!(drawn.ends_with("… ─"));
    }
}
