//! Lab 4, the `follow STREAM` view of `socklab analyze`: the bytes one TCP connection
//! carried, put back together per direction, as Wireshark's "Follow TCP Stream" does.
//!
//! TCP numbers every byte it sends, so the receiver (and this view) can rebuild the
//! stream from segments whatever happened on the way:
//!
//! ```text
//!  data offset:  0         10        20        30
//!                ├─────────┼─────────┼─────────┤
//!  frame 4       [ seg A  ]                        delivered: 0..10
//!  frame 6                           [ seg C  ]    ahead of 20: kept aside (out of order)
//!  frame 7       [ seg A  ]                        again: already delivered, shown once
//!  frame 8                 [ seg B  ]              fills 10..20, then C follows: 10..30
//! ```
//!
//! The data offset of a byte is its sequence number minus the ISN minus one (the SYN
//! takes sequence number ISN itself), which is the relative sequence number the `tcp`
//! view shows, minus one.
//!
//! - Retransmitted and overlapping bytes are shown once; the first copy wins, as in
//!   Wireshark.
//! - A segment beyond the next expected byte waits until the hole before it is filled.
//! - A hole the receiver acknowledges (so the data did arrive, the capture missed it),
//!   or one still open when the capture ends, becomes a `[N bytes missing]` chunk.
//!
//! Chunks are listed in the order they became contiguous, both directions interleaved,
//! so a request is followed by its reply. **Memory:** only the chosen stream's bytes
//! are kept, at most [`MAX_KEPT_BYTES`]; beyond, the view stops and says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use colored::Colorize;
use serde_json::json;

use crate::capture::flows::Observation;
use crate::capture::packet::{tcp_flags, Frame, Packet, Transport};
use crate::capture::tcp::{Direction, SegmentInfo};
use crate::output;

/// The most stream bytes (delivered and waiting) the view keeps: a lab conversation is
/// far smaller; a bulk transfer is cut here rather than filling memory.
pub const MAX_KEPT_BYTES: usize = 64 * 1024 * 1024;

/// Bytes per line of the hex dump, as `hexdump -C`.
const HEX_BYTES_PER_LINE: usize = 16;

/// A line prefix per direction, so the output reads without colour too.
fn prefix(direction: Direction) -> &'static str {
    match direction {
        Direction::ClientToServer => "> ",
        Direction::ServerToClient => "< ",
    }
}

/// What a chunk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkBody {
    /// Bytes, in stream order.
    Data(Vec<u8>),
    /// A hole: this many bytes were never captured.
    Missing(u64),
}

/// A run of bytes of one direction that became contiguous at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Which way the bytes went.
    pub direction: Direction,
    /// Data offset of the first byte in its direction (0 is the first byte after the
    /// SYN).
    pub offset: u64,
    /// The frames whose payload the chunk holds, in stream order (none for a hole).
    pub frames: Vec<u64>,
    /// The bytes, or the size of the hole.
    pub body: ChunkBody,
}

impl Chunk {
    /// The chunk's length in stream bytes.
    pub fn len(&self) -> u64 {
        match &self.body {
            ChunkBody::Data(bytes) => bytes.len() as u64,
            ChunkBody::Missing(len) => *len,
        }
    }

    /// Whether the chunk holds no byte (never produced; for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A segment that arrived ahead of the next expected byte.
#[derive(Debug, Clone)]
struct Waiting {
    frame: u64,
    data: Vec<u8>,
}

/// The reassembly of one direction.
#[derive(Debug, Default)]
struct Reassembly {
    /// Data offset of the next byte expected: everything before it was delivered (or
    /// declared missing).
    next: i64,
    /// Segments ahead of `next`, by data offset.
    waiting: BTreeMap<i64, Waiting>,
    /// The highest data offset the peer acknowledged: bytes before it reached the
    /// receiver, so a hole below it will not be filled by this capture.
    acked: Option<i64>,
    /// Data offset of this side's FIN, when seen: the stream's last byte is before it.
    fin: Option<i64>,
    /// Stream bytes delivered (holes included).
    delivered: u64,
    /// Payload bytes that repeated bytes already delivered or waiting.
    duplicate: u64,
}

impl Reassembly {
    /// Where `offset32` (a wrapping data offset) lies as a full offset: sequence
    /// numbers wrap at 2^32, so take the nearest to `next` (RFC 9293 section 3.4).
    fn unwrap(&self, offset32: u32) -> i64 {
        let next32 = self.next as u32;
        self.next + i64::from(offset32.wrapping_sub(next32) as i32)
    }
}

/// The reassembled stream, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedStream {
    /// The `tcp.stream` asked for.
    pub stream: u64,
    /// Client and server addresses, when the stream was found.
    pub endpoints: Option<(SocketAddr, SocketAddr)>,
    /// The chunks, in the order they became contiguous.
    pub chunks: Vec<Chunk>,
    /// Stream bytes each way (index with [`Direction::index`]), holes included.
    pub bytes: [u64; 2],
    /// Bytes each way that were never captured.
    pub missing: [u64; 2],
    /// Payload bytes each way that repeated bytes already seen (retransmissions,
    /// overlaps), shown once.
    pub duplicate: [u64; 2],
    /// Set when [`MAX_KEPT_BYTES`] was reached: the chunks stop there; this many
    /// payload bytes (retransmissions included) came after.
    pub truncated: Option<u64>,
}

/// The `follow` view: feed it every frame with [`FollowView::observe`], then
/// [`FollowView::finish`].
#[derive(Debug)]
pub struct FollowView {
    stream: u64,
    hex: bool,
    /// [`MAX_KEPT_BYTES`], smaller in tests.
    max_kept: usize,
    kept: usize,
    endpoints: Option<(SocketAddr, SocketAddr)>,
    sides: [Reassembly; 2],
    chunks: Vec<Chunk>,
    truncated: Option<u64>,
}

impl FollowView {
    /// A view of `tcp.stream` `stream`, as text or (`hex`) a hex dump.
    pub fn new(stream: u64, hex: bool) -> FollowView {
        FollowView::with_max_kept(stream, hex, MAX_KEPT_BYTES)
    }

    fn with_max_kept(stream: u64, hex: bool, max_kept: usize) -> FollowView {
        FollowView {
            stream,
            hex,
            max_kept,
            kept: 0,
            endpoints: None,
            sides: Default::default(),
            chunks: Vec::new(),
            truncated: None,
        }
    }

    /// Takes one frame and what the analyzer made of it; only segments of the chosen
    /// stream count.
    pub fn observe(&mut self, frame: &Frame<'_>, packet: &Packet<'_>, observation: &Observation) {
        let Observation::Tcp(info) = observation else {
            return;
        };
        if info.stream != self.stream {
            return;
        }
        let (Transport::Tcp(segment), Some(ip)) = (&packet.transport, &packet.ip) else {
            return;
        };
        if self.endpoints.is_none() {
            let src = SocketAddr::new(ip.src, segment.src_port);
            let dst = SocketAddr::new(ip.dst, segment.dst_port);
            self.endpoints = Some(match info.direction {
                Direction::ClientToServer => (src, dst),
                Direction::ServerToClient => (dst, src),
            });
        }
        if let Some(after) = &mut self.truncated {
            *after += u64::from(info.len);
            return;
        }
        self.add_segment(frame.number, info, segment.payload);
    }

    /// Reassembles one segment: `payload` holds the bytes captured (snaplen may have cut
    /// some; the rest becomes a hole).
    fn add_segment(&mut self, frame: u64, info: &SegmentInfo, payload: &[u8]) {
        let direction = info.direction;
        // Never more than the segment's length, whatever the dissector handed over.
        let payload = &payload[..payload.len().min(info.len as usize)];
        // The peer's ACK says how far this direction's receiver got.
        if let Some(rel_ack) = info.rel_ack {
            let peer = &mut self.sides[direction.reverse().index()];
            // Relative ack 1 is data offset 0 (the SYN took relative 0).
            let acked = peer.unwrap(rel_ack.wrapping_sub(1));
            if peer.acked.is_none_or(|old| acked > old) {
                peer.acked = Some(acked);
            }
            self.release_acknowledged(direction.reverse());
        }

        let syn = u32::from(info.flags & tcp_flags::SYN != 0);
        let side = &mut self.sides[direction.index()];
        let start = side.unwrap(info.rel_seq.wrapping_add(syn).wrapping_sub(1));
        if info.flags & tcp_flags::FIN != 0 {
            side.fin = Some(start + i64::from(info.len));
        }
        if payload.is_empty() {
            return;
        }
        let end = start + payload.len() as i64;
        if end <= side.next {
            side.duplicate += payload.len() as u64;
            return;
        }
        if start > side.next {
            self.wait(direction, frame, start, payload);
            self.release_acknowledged(direction);
            return;
        }
        // Starts at or before the next expected byte: the part after it is new.
        let skip = (side.next - start) as usize;
        side.duplicate += skip as u64;
        let mut chunk = Chunk {
            direction,
            offset: side.next as u64,
            frames: vec![frame],
            body: ChunkBody::Data(Vec::new()),
        };
        if !self.reserve(payload.len() - skip) {
            return;
        }
        if let ChunkBody::Data(bytes) = &mut chunk.body {
            bytes.extend_from_slice(&payload[skip..]);
        }
        let side = &mut self.sides[direction.index()];
        side.next = end;
        Self::drain_waiting(side, &mut chunk);
        self.deliver(chunk);
    }

    /// Keeps a segment that arrived ahead of a hole.
    fn wait(&mut self, direction: Direction, frame: u64, start: i64, payload: &[u8]) {
        let side = &mut self.sides[direction.index()];
        if let Some(old) = side.waiting.get(&start) {
            if old.data.len() >= payload.len() {
                side.duplicate += payload.len() as u64;
                return;
            }
        }
        if !self.reserve(payload.len()) {
            return;
        }
        let side = &mut self.sides[direction.index()];
        if let Some(old) = side.waiting.insert(
            start,
            Waiting {
                frame,
                data: payload.to_vec(),
            },
        ) {
            // A longer copy replaced a shorter one at the same offset.
            side.duplicate += old.data.len() as u64;
            self.kept -= old.data.len();
        }
    }

    /// Appends to `chunk` every waiting segment that is now contiguous.
    fn drain_waiting(side: &mut Reassembly, chunk: &mut Chunk) {
        while let Some(entry) = side.waiting.first_entry() {
            let start = *entry.key();
            if start > side.next {
                break;
            }
            let waiting = entry.remove();
            let end = start + waiting.data.len() as i64;
            if end <= side.next {
                side.duplicate += waiting.data.len() as u64;
                continue;
            }
            let skip = (side.next - start) as usize;
            side.duplicate += skip as u64;
            if let ChunkBody::Data(bytes) = &mut chunk.body {
                bytes.extend_from_slice(&waiting.data[skip..]);
            }
            chunk.frames.push(waiting.frame);
            side.next = end;
        }
    }

    /// A hole the receiver acknowledged will never be filled from this capture: declare
    /// it missing and deliver what waits behind it.
    fn release_acknowledged(&mut self, direction: Direction) {
        loop {
            let side = &self.sides[direction.index()];
            let Some((&first, _)) = side.waiting.first_key_value() else {
                return;
            };
            if side.acked.is_none_or(|acked| acked < first) {
                return;
            }
            self.skip_hole(direction, first);
        }
    }

    /// Declares the bytes from the next expected one up to `until` missing, then
    /// delivers the waiting segments that follow.
    fn skip_hole(&mut self, direction: Direction, until: i64) {
        let side = &mut self.sides[direction.index()];
        if until > side.next {
            let hole = Chunk {
                direction,
                offset: side.next as u64,
                frames: Vec::new(),
                body: ChunkBody::Missing((until - side.next) as u64),
            };
            side.next = until;
            self.deliver(hole);
        }
        let side = &mut self.sides[direction.index()];
        let mut chunk = Chunk {
            direction,
            offset: side.next as u64,
            frames: Vec::new(),
            body: ChunkBody::Data(Vec::new()),
        };
        Self::drain_waiting(side, &mut chunk);
        if !chunk.is_empty() {
            self.deliver(chunk);
        }
    }

    /// Counts `len` more kept bytes; false (and the view stops) past the limit.
    fn reserve(&mut self, len: usize) -> bool {
        if self.kept + len > self.max_kept {
            self.truncated = Some(len as u64);
            return false;
        }
        self.kept += len;
        true
    }

    fn deliver(&mut self, chunk: Chunk) {
        self.sides[chunk.direction.index()].delivered += chunk.len();
        self.chunks.push(chunk);
    }

    /// Ends the reassembly: holes still open become missing chunks (including one
    /// before a FIN whose data never showed), and the stream is handed over.
    pub fn finish(mut self) -> FollowedStream {
        if self.truncated.is_none() {
            for direction in [Direction::ClientToServer, Direction::ServerToClient] {
                while let Some((&first, _)) =
                    self.sides[direction.index()].waiting.first_key_value()
                {
                    self.skip_hole(direction, first);
                }
                let side = &self.sides[direction.index()];
                if let Some(fin) = side.fin.filter(|&fin| fin > side.next) {
                    self.skip_hole(direction, fin);
                }
            }
        }
        let mut missing = [0; 2];
        for chunk in &self.chunks {
            if let ChunkBody::Missing(len) = chunk.body {
                missing[chunk.direction.index()] += len;
            }
        }
        FollowedStream {
            stream: self.stream,
            endpoints: self.endpoints,
            bytes: [self.sides[0].delivered, self.sides[1].delivered],
            missing,
            duplicate: [self.sides[0].duplicate, self.sides[1].duplicate],
            truncated: self.truncated,
            chunks: self.chunks,
        }
    }

    /// Whether this view renders a hex dump.
    pub fn hex(&self) -> bool {
        self.hex
    }
}

impl FollowedStream {
    /// The header: endpoints and byte counts each way.
    pub fn header(&self) -> String {
        let Some((client, server)) = self.endpoints else {
            return format!("No TCP stream {} in this capture.\n", self.stream);
        };
        let mut text = format!(
            "Follow TCP stream {}: client {client} (lines \"> \"), server {server} (lines \"< \")\n",
            self.stream
        );
        for direction in [Direction::ClientToServer, Direction::ServerToClient] {
            let i = direction.index();
            let (from, to) = match direction {
                Direction::ClientToServer => ("client", "server"),
                Direction::ServerToClient => ("server", "client"),
            };
            let _ = write!(text, "  {from} → {to}: {} bytes", self.bytes[i]);
            if self.missing[i] > 0 {
                let _ = write!(text, " ({} missing from the capture)", self.missing[i]);
            }
            if self.duplicate[i] > 0 {
                let _ = write!(
                    text,
                    ", {} retransmitted bytes shown once",
                    self.duplicate[i]
                );
            }
            text.push('\n');
        }
        text
    }

    /// The footer: a note when the stream was cut at [`MAX_KEPT_BYTES`].
    fn footer(&self) -> String {
        match self.truncated {
            Some(after) => format!(
                "(stopped after {} MB of this stream, the most the view keeps; {after} more \
                 payload bytes followed)\n",
                MAX_KEPT_BYTES / (1024 * 1024)
            ),
            None => String::new(),
        }
    }

    /// The stream as text: printable ASCII as is, other bytes as `.`, each line prefixed
    /// by its direction; client red and server blue when `color` is on (Wireshark's
    /// colours).
    pub fn to_text(&self, color: bool) -> String {
        let mut text = self.header();
        // A chunk that does not end a line is continued by the next chunk of the same
        // direction, as Wireshark shows them; the other direction starts a new line.
        let mut open_line: Option<Direction> = None;
        for chunk in &self.chunks {
            if open_line.is_some_and(|d| d != chunk.direction) || missing(chunk) {
                if open_line.is_some() {
                    text.push('\n');
                }
                open_line = None;
            }
            match &chunk.body {
                ChunkBody::Missing(len) => {
                    let line = format!("{}[{len} bytes missing]", prefix(chunk.direction));
                    text.push_str(&paint(&line, chunk.direction, color));
                    text.push('\n');
                }
                ChunkBody::Data(bytes) => {
                    let printable = printable_text(bytes, false);
                    let mut lines = printable.split('\n').peekable();
                    while let Some(line) = lines.next() {
                        let last = lines.peek().is_none();
                        if last && line.is_empty() {
                            // The chunk ended with a newline.
                            open_line = None;
                            break;
                        }
                        let mut piece = String::new();
                        if open_line.is_none() {
                            // An empty line is the bare marker, without a trailing space.
                            let marker = prefix(chunk.direction);
                            piece.push_str(if line.is_empty() {
                                marker.trim_end()
                            } else {
                                marker
                            });
                        }
                        piece.push_str(line);
                        text.push_str(&paint(&piece, chunk.direction, color));
                        if last {
                            open_line = Some(chunk.direction);
                        } else {
                            text.push('\n');
                            open_line = None;
                        }
                    }
                }
            }
        }
        if open_line.is_some() {
            text.push('\n');
        }
        text.push_str(&self.footer());
        text
    }

    /// The stream as a hex dump, `hexdump -C` style: per chunk, lines of 16 bytes with
    /// the data offset in the chunk's direction, hex, and the bytes as text.
    pub fn to_hex(&self, color: bool) -> String {
        let mut text = self.header();
        for chunk in &self.chunks {
            match &chunk.body {
                ChunkBody::Missing(len) => {
                    let line = format!(
                        "{}{:08x}  [{len} bytes missing]",
                        prefix(chunk.direction),
                        chunk.offset
                    );
                    text.push_str(&paint(&line, chunk.direction, color));
                    text.push('\n');
                }
                ChunkBody::Data(bytes) => {
                    for (i, line) in bytes.chunks(HEX_BYTES_PER_LINE).enumerate() {
                        let offset = chunk.offset + (i * HEX_BYTES_PER_LINE) as u64;
                        let row = format!("{}{}", prefix(chunk.direction), hex_line(offset, line));
                        text.push_str(&paint(&row, chunk.direction, color));
                        text.push('\n');
                    }
                }
            }
        }
        text.push_str(&self.footer());
        text
    }

    /// Writes the view as text or hex dump, coloured when colour is on.
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_text(&self, out: &mut dyn Write, hex: bool) -> io::Result<()> {
        let color = output::color_enabled();
        let text = if hex {
            self.to_hex(color)
        } else {
            self.to_text(color)
        };
        out.write_all(text.as_bytes())
    }

    /// Writes one JSON object per chunk (JSON Lines): `stream`, `direction` (`c2s` or
    /// `s2c`), `offset`, `len`, `frames`, `missing` (true for a hole), and `text`
    /// (printable ASCII, `\n`, `\r` and `\t` as is, other bytes as `.`) or, with `hex`,
    /// `hex` (two lowercase digits per byte). A last `{"stream", "truncated_after"}`
    /// object when the view stopped at [`MAX_KEPT_BYTES`].
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_json(&self, out: &mut dyn Write, hex: bool) -> io::Result<()> {
        for chunk in &self.chunks {
            let mut value = json!({
                "stream": self.stream,
                "direction": chunk.direction.short_name(),
                "offset": chunk.offset,
                "len": chunk.len(),
                "frames": chunk.frames,
                "missing": missing(chunk),
            });
            if let ChunkBody::Data(bytes) = &chunk.body {
                if hex {
                    value["hex"] = hex_string(bytes).into();
                } else {
                    value["text"] = printable_text(bytes, true).into();
                }
            }
            serde_json::to_writer(&mut *out, &value)?;
            out.write_all(b"\n")?;
        }
        if let Some(after) = self.truncated {
            let value = json!({"stream": self.stream, "truncated_after": after});
            serde_json::to_writer(&mut *out, &value)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

fn missing(chunk: &Chunk) -> bool {
    matches!(chunk.body, ChunkBody::Missing(_))
}

/// Colours a piece of output for its direction: client red, server blue (Wireshark).
fn paint(text: &str, direction: Direction, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    match direction {
        Direction::ClientToServer => text.red().to_string(),
        Direction::ServerToClient => text.blue().to_string(),
    }
}

/// Bytes as text: printable ASCII and tab as is, `\n` as a line break (`\r\n` too),
/// every other byte as `.`; with `keep_cr`, a `\r` is kept as is (JSON escapes it).
fn printable_text(bytes: &[u8], keep_cr: bool) -> String {
    let mut text = String::with_capacity(bytes.len());
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'\r' if keep_cr => text.push('\r'),
            // The CR of a CRLF line end: the LF breaks the line.
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
            b'\n' | b'\t' | b' '..=b'~' => text.push(char::from(byte)),
            _ => text.push('.'),
        }
    }
    text
}

/// One `hexdump -C` line: offset, 16 bytes in two groups of 8, the bytes as text.
fn hex_line(offset: u64, bytes: &[u8]) -> String {
    let mut line = format!("{offset:08x}  ");
    for i in 0..HEX_BYTES_PER_LINE {
        match bytes.get(i) {
            Some(byte) => {
                let _ = write!(line, "{byte:02x} ");
            }
            None => line.push_str("   "),
        }
        if i == HEX_BYTES_PER_LINE / 2 - 1 {
            line.push(' ');
        }
    }
    line.push_str(" |");
    for &byte in bytes {
        line.push(if (b' '..=b'~').contains(&byte) {
            char::from(byte)
        } else {
            '.'
        });
    }
    line.push('|');
    line
}

/// Bytes as lowercase hex digits, two per byte.
fn hex_string(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::packet::tcp_flags::{ACK, FIN, PSH, SYN};
    use crate::capture::views::hand_made::{Connection, CLIENT_ISN, SERVER_ISN};

    const PA: u16 = PSH | ACK;

    /// A connection followed by a [`FollowView`] of stream 0. Offsets are data offsets:
    /// `c(PA, 5, 0, b"x")` is the client's byte 5, acknowledging none of the server's.
    struct Follow {
        connection: Connection,
        view: FollowView,
    }

    impl Follow {
        fn new() -> Follow {
            Follow::with_view(FollowView::new(0, false))
        }

        fn with_view(view: FollowView) -> Follow {
            Follow {
                connection: Connection::new(),
                view,
            }
        }

        fn raw(&mut self, from_client: bool, flags: u16, seq: u32, ack: u32, payload: &[u8]) {
            let (made, observation) =
                self.connection
                    .segment(from_client, flags, seq, ack, payload);
            self.view.observe(&made.frame, &made.packet(), &observation);
        }

        fn c(&mut self, flags: u16, offset: u32, acked: u32, payload: &[u8]) {
            let (seq, ack) = (CLIENT_ISN + 1 + offset, SERVER_ISN + 1 + acked);
            self.raw(true, flags, seq, ack, payload);
        }

        fn s(&mut self, flags: u16, offset: u32, acked: u32, payload: &[u8]) {
            let (seq, ack) = (SERVER_ISN + 1 + offset, CLIENT_ISN + 1 + acked);
            self.raw(false, flags, seq, ack, payload);
        }

        /// Frames 1-3.
        fn handshake(&mut self) {
            self.raw(true, SYN, CLIENT_ISN, 0, b"");
            self.raw(false, SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, b"");
            self.c(ACK, 0, 0, b"");
        }

        fn finish(self) -> FollowedStream {
            self.view.finish()
        }
    }

    fn data(direction: Direction, offset: u64, frames: &[u64], bytes: &[u8]) -> Chunk {
        Chunk {
            direction,
            offset,
            frames: frames.to_vec(),
            body: ChunkBody::Data(bytes.to_vec()),
        }
    }

    fn hole(direction: Direction, offset: u64, len: u64) -> Chunk {
        Chunk {
            direction,
            offset,
            frames: Vec::new(),
            body: ChunkBody::Missing(len),
        }
    }

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn request_and_reply_come_out_in_order_with_counts() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"hello\n"); // frame 4
        follow.s(PA, 0, 6, b"HELLO\n"); // frame 5
        follow.c(FIN | ACK, 6, 6, b""); // frame 6
        follow.s(FIN | ACK, 6, 7, b"");
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [
                data(C2S, 0, &[4], b"hello\n"),
                data(S2C, 0, &[5], b"HELLO\n")
            ]
        );
        assert_eq!(
            (stream.bytes, stream.missing, stream.duplicate),
            ([6, 6], [0, 0], [0, 0])
        );
        assert_eq!(
            stream.to_text(false),
            "Follow TCP stream 0: client 127.0.0.1:40000 (lines \"> \"), server \
             127.0.0.2:12000 (lines \"< \")\n  client → server: 6 bytes\n  server → client: \
             6 bytes\n> hello\n< HELLO\n"
        );
    }

    #[test]
    fn a_retransmission_is_shown_once() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"abcd"); // frame 4
        follow.c(PA, 0, 0, b"abcd"); // frame 5: the same again
        follow.c(PA, 4, 0, b"ef"); // frame 6
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [data(C2S, 0, &[4], b"abcd"), data(C2S, 4, &[6], b"ef")]
        );
        assert_eq!((stream.bytes[0], stream.duplicate[0]), (6, 4));
        // Chunks of one direction that do not end a line continue it.
        assert!(stream.to_text(false).ends_with("\n> abcdef\n"));
    }

    #[test]
    fn an_overlapping_segment_adds_only_its_new_bytes_and_the_first_copy_wins() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"0123456789"); // frame 4
        follow.c(PA, 5, 0, b"XXXXXabcde"); // frame 5: 5..10 again (different bytes), then 10..15
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [
                data(C2S, 0, &[4], b"0123456789"),
                data(C2S, 10, &[5], b"abcde")
            ]
        );
        assert_eq!((stream.bytes[0], stream.duplicate[0]), (15, 5));
    }

    #[test]
    fn out_of_order_segments_are_put_in_order() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 6, 0, b"ghij"); // frame 4, ahead
        follow.c(PA, 4, 0, b"efgh"); // frame 5, ahead too, overlapping the first by 2
        follow.c(PA, 0, 0, b"abcd"); // frame 6 fills the hole
        let stream = follow.finish();
        assert_eq!(stream.chunks, [data(C2S, 0, &[6, 5, 4], b"abcdefghij")]);
        assert_eq!(
            (stream.bytes[0], stream.missing[0], stream.duplicate[0]),
            (10, 0, 2)
        );
    }

    #[test]
    fn a_hole_the_receiver_acknowledged_is_missing_at_once() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"abc"); // frame 4
        follow.c(PA, 6, 0, b"ghi"); // frame 5: 3..6 was not captured
        follow.s(PA, 0, 3, b"ok"); // frame 6: the server has 0..3 only: wait
        follow.s(ACK, 2, 9, b""); // frame 7: it has all 9 bytes: 3..6 was lost by the capture
        follow.c(PA, 9, 2, b"jk"); // frame 8
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [
                data(C2S, 0, &[4], b"abc"),
                data(S2C, 0, &[6], b"ok"),
                hole(C2S, 3, 3),
                data(C2S, 6, &[5], b"ghi"),
                data(C2S, 9, &[8], b"jk"),
            ]
        );
        assert_eq!((stream.bytes, stream.missing), ([11, 2], [3, 0]));
        assert_eq!(
            stream.to_text(false).lines().skip(3).collect::<Vec<_>>(),
            ["> abc", "< ok", "> [3 bytes missing]", "> ghijk"]
        );
    }

    #[test]
    fn holes_still_open_at_the_end_and_before_a_fin_are_missing() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"ab"); // frame 4
        follow.c(PA, 4, 0, b"ef"); // frame 5: 2..4 never seen, never acknowledged
        follow.s(FIN | ACK, 3, 2, b""); // frame 6: the server's 0..3 were never seen
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [
                data(C2S, 0, &[4], b"ab"),
                hole(C2S, 2, 2),
                data(C2S, 4, &[5], b"ef"),
                hole(S2C, 0, 3),
            ]
        );
        assert_eq!(stream.missing, [2, 3]);
    }

    #[test]
    fn sequence_numbers_wrapping_past_zero_keep_the_stream_whole() {
        let mut follow = Follow::new();
        let isn = u32::MAX - 2; // data offset 0 is at u32::MAX - 1
        follow.raw(true, SYN, isn, 0, b"");
        follow.raw(false, SYN | ACK, SERVER_ISN, isn.wrapping_add(1), b"");
        follow.raw(true, PA, isn.wrapping_add(5), SERVER_ISN + 1, b"efgh"); // ahead, after the wrap
        follow.raw(true, PA, isn.wrapping_add(1), SERVER_ISN + 1, b"abcd"); // across the wrap
        let stream = follow.finish();
        assert_eq!(stream.chunks, [data(C2S, 0, &[4, 3], b"abcdefgh")]);
    }

    #[test]
    fn a_capture_without_the_handshake_starts_at_the_first_segment_seen() {
        let mut follow = Follow::new();
        follow.raw(true, PA, 777, 9_000, b"mid"); // frame 1
        follow.raw(false, PA, 9_000, 780, b"way"); // frame 2
        let stream = follow.finish();
        assert_eq!(
            stream.chunks,
            [data(C2S, 0, &[1], b"mid"), data(S2C, 0, &[2], b"way")]
        );
    }

    #[test]
    fn only_the_chosen_stream_is_followed() {
        let mut follow = Follow::with_view(FollowView::new(1, false));
        follow.handshake();
        follow.c(PA, 0, 0, b"stream zero");
        let stream = follow.finish();
        assert!(stream.chunks.is_empty());
        assert_eq!(stream.to_text(false), "No TCP stream 1 in this capture.\n");
    }

    #[test]
    fn the_view_stops_at_its_memory_limit_and_says_so() {
        let mut follow = Follow::with_view(FollowView::with_max_kept(0, false, 8));
        follow.handshake();
        follow.c(PA, 0, 0, b"123456"); // kept
        follow.c(PA, 6, 0, b"789abc"); // would pass 8 bytes: the view stops
        follow.c(PA, 12, 0, b"def"); // only counted
        let stream = follow.finish();
        assert_eq!(stream.chunks, [data(C2S, 0, &[4], b"123456")]);
        assert_eq!(stream.truncated, Some(9));
        assert!(stream
            .to_text(false)
            .ends_with("(stopped after 64 MB of this stream, the most the view keeps; 9 more payload bytes followed)\n"));
    }

    #[test]
    fn text_shows_unprintable_bytes_as_dots_and_crlf_as_a_line_end() {
        assert_eq!(
            printable_text(b"GET /\r\nx\x00\x7f\xff\ty", false),
            "GET /\nx...\ty"
        );
        assert_eq!(printable_text(b"a\r\nb\rc", true), "a\r\nb\rc");
    }

    #[test]
    fn hex_dump_looks_like_hexdump_c() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"0123456789abcdef\x00hi"); // frame 4
        follow.s(PA, 0, 19, b"ok\n"); // frame 5
        let hex = follow.finish().to_hex(false);
        let lines: Vec<&str> = hex.lines().skip(3).collect();
        assert_eq!(
            lines,
            [
                "> 00000000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|",
                "> 00000010  00 68 69                                          |.hi|",
                "< 00000000  6f 6b 0a                                          |ok.|",
            ]
        );
    }

    #[test]
    fn json_has_one_object_per_chunk_with_text_or_hex() {
        let mut follow = Follow::new();
        follow.handshake();
        follow.c(PA, 0, 0, b"ab");
        follow.c(PA, 4, 0, b"ef\r\n"); // frame 5, after a hole
        let stream = follow.finish();

        let mut out = Vec::new();
        stream.write_json(&mut out, false).expect("write to a Vec");
        let rows: Vec<serde_json::Value> = String::from_utf8(out)
            .expect("JSON is UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        assert_eq!(
            rows,
            [
                json!({"stream": 0, "direction": "c2s", "offset": 0, "len": 2, "frames": [4],
                       "missing": false, "text": "ab"}),
                json!({"stream": 0, "direction": "c2s", "offset": 2, "len": 2, "frames": [],
                       "missing": true}),
                json!({"stream": 0, "direction": "c2s", "offset": 4, "len": 4, "frames": [5],
                       "missing": false, "text": "ef\r\n"}),
            ]
        );

        let mut out = Vec::new();
        stream.write_json(&mut out, true).expect("write to a Vec");
        let first: serde_json::Value = serde_json::from_str(
            String::from_utf8(out)
                .expect("UTF-8")
                .lines()
                .next()
                .expect("a line"),
        )
        .expect("JSON");
        assert_eq!(first["hex"], "6162");
        assert!(first.get("text").is_none());
    }
}
