//! Lab 4 (looking back at lab 3), the `forum` view of `socklab analyze`: the socklab
//! forum's conversation read back from a capture. One row per request: who sent it,
//! which command, how many times it was sent, how long the reply took, and what went
//! wrong on the way (retransmissions, duplicate replies, requests never answered,
//! malformed datagrams), with the TCP transfers tied to the `UPD`/`DWN` that allowed
//! them.
//!
//! Every forum datagram starts with the 20-byte header of [`crate::forum::wire`]; this
//! view parses it with that module's own code, so it reads exactly what the client and
//! server read:
//!
//! ```text
//!  0      2     3      4                12          16       18       20
//!  +------+-----+------+----------------+-----------+--------+--------+-----------+
//!  | "SF" | ver | kind | session (u64)  | request   | frag   | count  | body      |
//!  +------+-----+------+----------------+-----------+--------+--------+-----------+
//! ```
//!
//! A request is named by (session, request id). The same pair seen again is a
//! retransmission; a reply fragment seen again is a duplicate reply; a multi-fragment
//! reply is complete once every index below its count has arrived. An `UPD` or `DWN`
//! is answered with a one-time token (`UPLOAD T`, `DOWNLOAD T N`); the TCP connection
//! to the server's port whose first bytes carry the transfer header with token T (see
//! [`crate::forum::transfer`] and [`crate::framing`]) is the transfer that request
//! allowed:
//!
//! ```text
//!  TCP first payload:  +--------------+----------------------------------------+
//!                      | length N u32 | {"version":1,"token":"T",...} N bytes  |
//!                      +--------------+----------------------------------------+
//! ```
//!
//! **Hops.** Through `socklab proxy` on one machine, a loopback capture sees every
//! datagram twice: client → proxy, then proxy → server (and replies the other way).
//! The first copy of a request names the client; later copies of the same request
//! count as retransmissions only when they come from that client, and replies count
//! only when they reach it. Copies on the other hop are counted as relayed. Latency is
//! thus what the client saw.
//!
//! Give [`ForumView::observe`] every frame (UDP for the commands, TCP for the
//! transfers); UDP datagrams that are not forum traffic are counted and skipped.
//! Passwords travel in the clear in `LOGIN`/`REGISTER` requests (a lesson in itself);
//! this view shows the command word and the user, never the password.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use super::udp::{endpoints, millis, preview, seconds, thousands, UDP_HEADER_LEN};
use crate::capture::packet::{Frame, Packet, TcpSegment, Transport, UdpDatagram};
use crate::forum::command::{self, Login, Reply, Status};
use crate::forum::transfer;
use crate::forum::wire::{self, Kind, Reassembly, Repr};
use crate::framing::LENGTH_PREFIX_LEN;
use crate::output;

/// The most requests the view keeps a row for; later ones are only counted.
pub const MAX_REQUESTS: usize = 1_000_000;

/// The longest transfer header the view reads: the forum server's own limit (a token,
/// a size and a hash fit in a couple of hundred bytes).
const MAX_TRANSFER_HEADER: usize = 4096;

/// A command word longer than this is not one of ours; it is shown escaped.
const MAX_COMMAND_WORD: usize = 16;

/// How many bytes of an Error datagram's reason a row shows.
const ERROR_PREVIEW: usize = 48;

/// A request and what became of it.
#[derive(Debug, Clone)]
pub struct RequestRow {
    /// The frame of the first copy.
    pub frame: u64,
    /// Microseconds from the capture's first frame to the first copy.
    pub time_us: i64,
    /// Where the request came from.
    pub client: SocketAddr,
    /// Where it went: the forum server.
    pub server: SocketAddr,
    /// The session's user, when a login of this session is in the capture.
    pub user: Option<String>,
    /// The command word (`HELLO`, `LOGIN`, `CRT`, `UPD`...).
    pub command: String,
    /// The session id.
    pub session: u64,
    /// The request id within the session.
    pub request: u32,
    /// Frames of the later copies of this request (retransmissions).
    pub retransmissions: Vec<u64>,
    /// The reply so far.
    pub reply: ReplyState,
    /// Frames of reply datagrams that brought nothing new.
    pub duplicate_replies: Vec<u64>,
    /// Frames of Resend datagrams (the client asking for missing fragments).
    pub resends: Vec<u64>,
    /// Frames of malformed datagrams naming this request.
    pub malformed: Vec<u64>,
    /// Copies of the request or its reply seen on another hop (a proxy's relaying):
    /// neither retransmissions nor duplicates.
    pub relayed: u64,
    /// The TCP transfer this request's token allowed.
    pub transfer: Option<TransferTie>,
}

impl RequestRow {
    /// How many copies of the request were sent: 1 + retransmissions.
    pub fn attempts(&self) -> usize {
        1 + self.retransmissions.len()
    }
}

/// How far a request's reply got.
#[derive(Debug, Clone)]
pub enum ReplyState {
    /// No reply datagram seen.
    None,
    /// Some fragments of a multi-fragment reply, not all.
    Partial(Reassembly),
    /// The whole reply arrived.
    Complete(CompleteReply),
}

/// A reply that arrived whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteReply {
    /// The frame of the datagram that completed it.
    pub frame: u64,
    /// From the first copy of the request to that datagram, in microseconds.
    pub latency_us: i64,
    /// The reply's status word (`OK`, `NO`, `UPLOAD`...), or `ERROR` for an Error
    /// datagram.
    pub status: String,
    /// How many fragments it had.
    pub fragments: u16,
    /// An Error datagram's reason, quoted and escaped.
    pub error: Option<String>,
}

/// Which way a transfer moves a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to server (`UPD`).
    Upload,
    /// Server to client (`DWN`).
    Download,
}

/// A TCP transfer tied to the request whose token it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferTie {
    /// The frame of the connection's first payload (the transfer header).
    pub frame: u64,
    /// The frame of the UDP reply that granted the token.
    pub reply_frame: u64,
    /// The client's end of the connection.
    pub client: SocketAddr,
    /// The server's end (the proxy's, when the client goes through one).
    pub server: SocketAddr,
    /// Frames of the same transfer header relayed on another hop (by a proxy).
    pub relayed: Vec<u64>,
    /// Upload or download.
    pub direction: Direction,
    /// The file's size, from the transfer header (upload) or the reply (download).
    pub size: Option<u64>,
}

/// A forum datagram that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedDatagram {
    /// Its frame.
    pub frame: u64,
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Why it could not be read.
    pub reason: String,
}

/// A TCP connection to the forum's port that is not tied to any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayTransfer {
    /// The frame of its first payload.
    pub frame: u64,
    /// The client's end.
    pub client: SocketAddr,
    /// The server's end.
    pub server: SocketAddr,
    /// Why it is not tied to a request.
    pub reason: String,
}

/// A token handed out in a reply, waiting for its TCP connection.
#[derive(Debug, Clone, Copy)]
struct Grant {
    row: usize,
    reply_frame: u64,
    direction: Direction,
    size: Option<u64>,
}

/// The `forum` view: feed it frames with [`ForumView::observe`], then render it.
#[derive(Debug)]
pub struct ForumView {
    /// [`MAX_REQUESTS`], smaller in tests.
    max_requests: usize,
    start_us: Option<i64>,
    requests: Vec<RequestRow>,
    /// (session, request id) → index in `requests`.
    index: HashMap<(u64, u32), usize>,
    /// Every session seen, and the user its latest login named.
    sessions: HashMap<u64, Option<String>>,
    /// Where requests were sent: the forum server's addresses (UDP and TCP share the
    /// port number).
    servers: HashSet<SocketAddr>,
    tokens: HashMap<String, Grant>,
    /// TCP connections to a server whose first payload was already examined.
    connections: HashSet<(SocketAddr, SocketAddr)>,
    malformed: Vec<MalformedDatagram>,
    strays: Vec<StrayTransfer>,
    heartbeats: u64,
    /// Replies, errors and resends about requests not in the capture.
    unmatched: u64,
    /// UDP datagrams that are not forum traffic.
    ignored: u64,
    requests_not_shown: u64,
}

impl Default for ForumView {
    fn default() -> Self {
        ForumView::with_max_requests(MAX_REQUESTS)
    }
}

impl ForumView {
    /// An empty view.
    pub fn new() -> Self {
        ForumView::default()
    }

    fn with_max_requests(max_requests: usize) -> Self {
        ForumView {
            max_requests,
            start_us: None,
            requests: Vec::new(),
            index: HashMap::new(),
            sessions: HashMap::new(),
            servers: HashSet::new(),
            tokens: HashMap::new(),
            connections: HashSet::new(),
            malformed: Vec::new(),
            strays: Vec::new(),
            heartbeats: 0,
            unmatched: 0,
            ignored: 0,
            requests_not_shown: 0,
        }
    }

    /// The requests, in the order their first copies were captured.
    pub fn requests(&self) -> &[RequestRow] {
        &self.requests
    }

    /// The forum datagrams that could not be read.
    pub fn malformed(&self) -> &[MalformedDatagram] {
        &self.malformed
    }

    /// TCP connections to the forum's port not tied to a request.
    pub fn strays(&self) -> &[StrayTransfer] {
        &self.strays
    }

    /// UDP datagrams skipped because they are not forum traffic.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Takes one frame of the capture.
    pub fn observe(&mut self, frame: &Frame<'_>, packet: &Packet<'_>) {
        let start = *self.start_us.get_or_insert(frame.time_us);
        let time_us = frame.time_us - start;
        match &packet.transport {
            Transport::Udp(datagram) => {
                self.observe_datagram(frame.number, time_us, packet, datagram);
            }
            Transport::Tcp(segment) => self.observe_segment(frame.number, packet, segment),
            _ => {}
        }
    }

    fn observe_datagram(
        &mut self,
        frame: u64,
        time_us: i64,
        packet: &Packet<'_>,
        datagram: &UdpDatagram<'_>,
    ) {
        let payload = datagram.payload;
        if !payload.starts_with(&wire::MAGIC) {
            self.ignored += 1;
            return;
        }
        let (src, dst) = endpoints(packet, datagram.src_port, datagram.dst_port);
        // A datagram cut by the snap length would parse as a shorter, different one
        // (the header does not carry the body's length), so it is refused here.
        let sent = datagram
            .ip_len
            .min(u32::from(datagram.length_field))
            .saturating_sub(u32::from(UDP_HEADER_LEN));
        if (payload.len() as u64) < u64::from(sent) {
            let reason = format!(
                "only {} of its {sent} bytes were captured (snap length)",
                payload.len()
            );
            self.add_malformed(frame, src, dst, None, reason);
            return;
        }
        let checked = match wire::Packet::new_checked(payload) {
            Ok(checked) => checked,
            Err(error) => return self.add_malformed(frame, src, dst, None, error.to_string()),
        };
        let key = (checked.session(), checked.request());
        let repr = match Repr::parse(&checked) {
            Ok(repr) => repr,
            Err(error) => return self.add_malformed(frame, src, dst, Some(key), error.to_string()),
        };
        match repr.kind {
            Kind::Request => self.on_request(frame, time_us, src, dst, &repr),
            Kind::Reply | Kind::Error => self.on_reply(frame, time_us, (src, dst), &repr),
            Kind::Resend => match self.index.get(&key) {
                Some(&row) if self.requests[row].client == src => {
                    self.requests[row].resends.push(frame);
                }
                Some(&row) => self.requests[row].relayed += 1,
                None => self.unmatched += 1,
            },
            Kind::Heartbeat => {
                self.sessions.entry(repr.session).or_default();
                self.heartbeats += 1;
            }
            // Repr::parse refuses unknown kinds, so this arm only keeps the match whole.
            Kind::Unknown(value) => {
                let reason = wire::WireError::UnknownKind(value).to_string();
                self.add_malformed(frame, src, dst, Some(key), reason);
            }
        }
    }

    fn add_malformed(
        &mut self,
        frame: u64,
        src: SocketAddr,
        dst: SocketAddr,
        key: Option<(u64, u32)>,
        reason: String,
    ) {
        if let Some(&row) = key.and_then(|key| self.index.get(&key)) {
            self.requests[row].malformed.push(frame);
        }
        self.malformed.push(MalformedDatagram {
            frame,
            src,
            dst,
            reason,
        });
    }

    fn on_request(
        &mut self,
        frame: u64,
        time_us: i64,
        client: SocketAddr,
        server: SocketAddr,
        repr: &Repr<'_>,
    ) {
        self.servers.insert(server);
        let key = (repr.session, repr.request);
        if let Some(&row) = self.index.get(&key) {
            let row = &mut self.requests[row];
            if row.client == client {
                row.retransmissions.push(frame);
            } else {
                row.relayed += 1;
            }
            return;
        }
        // A login request names its user; every later request of the session is theirs.
        let login_user = std::str::from_utf8(repr.body)
            .ok()
            .and_then(command::parse_login)
            .map(|login| match login {
                Login::Hello { user }
                | Login::Login { user, .. }
                | Login::Register { user, .. } => user,
            });
        let session_user = self.sessions.entry(repr.session).or_default();
        if login_user.is_some() {
            session_user.clone_from(&login_user);
        }
        let user = session_user.clone();
        if self.requests.len() >= self.max_requests {
            self.requests_not_shown += 1;
            return;
        }
        self.index.insert(key, self.requests.len());
        self.requests.push(RequestRow {
            frame,
            time_us,
            client,
            server,
            user,
            command: command_word(repr.body),
            session: repr.session,
            request: repr.request,
            retransmissions: Vec::new(),
            reply: ReplyState::None,
            duplicate_replies: Vec::new(),
            resends: Vec::new(),
            malformed: Vec::new(),
            relayed: 0,
            transfer: None,
        });
    }

    /// Takes a Reply or Error datagram sent `from` → `to`.
    fn on_reply(
        &mut self,
        frame: u64,
        time_us: i64,
        (from, to): (SocketAddr, SocketAddr),
        repr: &Repr<'_>,
    ) {
        let Some(&row_index) = self.index.get(&(repr.session, repr.request)) else {
            self.unmatched += 1;
            return;
        };
        let row = &mut self.requests[row_index];
        if to != row.client {
            row.relayed += 1;
            return;
        }
        match row.reply {
            ReplyState::Complete(_) => {
                row.duplicate_replies.push(frame);
                return;
            }
            // An Error datagram is a whole answer in itself, whatever came before.
            _ if repr.kind == Kind::Error => {
                row.reply = ReplyState::Complete(CompleteReply {
                    frame,
                    latency_us: time_us - row.time_us,
                    status: "ERROR".to_string(),
                    fragments: 1,
                    error: Some(preview(repr.body, ERROR_PREVIEW)),
                });
                return;
            }
            ReplyState::None => row.reply = ReplyState::Partial(Reassembly::new(repr.count)),
            ReplyState::Partial(_) => {}
        }
        let ReplyState::Partial(reassembly) = &mut row.reply else {
            return; // Complete was handled above and None became Partial.
        };
        if reassembly.count() != repr.count {
            let reason = format!(
                "reply fragment {} of {} disagrees with the count {} of earlier fragments",
                u32::from(repr.frag) + 1,
                repr.count,
                reassembly.count()
            );
            row.malformed.push(frame);
            self.malformed.push(MalformedDatagram {
                frame,
                src: from,
                dst: to,
                reason,
            });
            return;
        }
        if !reassembly.insert(repr.frag, repr.body) {
            row.duplicate_replies.push(frame);
            return;
        }
        if !reassembly.is_complete() {
            return;
        }
        let fragments = reassembly.count();
        let body = std::mem::replace(reassembly, Reassembly::new(0)).into_body();
        let decoded = std::str::from_utf8(&body).ok().and_then(Reply::decode);
        let status = match &decoded {
            Some(_) => command_word(&body),
            None => "?".to_string(),
        };
        row.reply = ReplyState::Complete(CompleteReply {
            frame,
            latency_us: time_us - row.time_us,
            status,
            fragments,
            error: None,
        });
        let grant = |direction, size| Grant {
            row: row_index,
            reply_frame: frame,
            direction,
            size,
        };
        match decoded.map(|reply| reply.status) {
            Some(Status::Upload { token }) => {
                self.tokens.insert(token, grant(Direction::Upload, None));
            }
            Some(Status::Download { token, size }) => {
                self.tokens
                    .insert(token, grant(Direction::Download, Some(size)));
            }
            _ => {}
        }
    }

    fn observe_segment(&mut self, frame: u64, packet: &Packet<'_>, segment: &TcpSegment<'_>) {
        if segment.payload.is_empty() {
            return;
        }
        let (client, server) = endpoints(packet, segment.src_port, segment.dst_port);
        // Only the first payload a client sends to the server's port can be a transfer
        // header; later segments (and retransmissions of the first) are file bytes.
        if !self.servers.contains(&server) || !self.connections.insert((client, server)) {
            return;
        }
        let stray = |reason: String| StrayTransfer {
            frame,
            client,
            server,
            reason,
        };
        let header = match parse_transfer_header(segment.payload) {
            Ok(header) => header,
            Err(reason) => return self.strays.push(stray(reason)),
        };
        let Some(grant) = self.tokens.get(&header.token).copied() else {
            let reason = format!(
                "token {} was not granted by any reply in this capture",
                header.token
            );
            return self.strays.push(stray(reason));
        };
        let row = &mut self.requests[grant.row];
        if let Some(earlier) = &mut row.transfer {
            if earlier.server != server {
                // The same header on another hop: a proxy relaying the connection.
                earlier.relayed.push(frame);
                return;
            }
            // The server accepts a token once; a second connection is refused.
            let reason = format!(
                "token already used by the transfer in frame {}",
                earlier.frame
            );
            return self.strays.push(stray(reason));
        }
        row.transfer = Some(TransferTie {
            frame,
            reply_frame: grant.reply_frame,
            client,
            server,
            relayed: Vec::new(),
            direction: grant.direction,
            size: header.size.or(grant.size),
        });
    }

    /// Writes the table (and, with `explain`, the notes for students).
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_table(&self, out: &mut dyn Write, explain: bool) -> io::Result<()> {
        if self.requests.is_empty() {
            writeln!(out, "No forum requests in this capture.")?;
        } else {
            let mut table = output::table(&[
                "Frame", "Time", "Client", "User", "Command", "Session", "Req", "Attempts",
                "Reply", "Latency", "Marks",
            ]);
            for row in &self.requests {
                table.add_row(vec![
                    row.frame.to_string(),
                    seconds(row.time_us),
                    row.client.to_string(),
                    row.user.clone().unwrap_or_else(|| "?".to_string()),
                    row.command.clone(),
                    format!("{:016x}", row.session),
                    row.request.to_string(),
                    row.attempts().to_string(),
                    reply_cell(&row.reply),
                    latency_cell(&row.reply),
                    marks(row).join("\n"),
                ]);
            }
            writeln!(out, "{table}")?;
        }
        if !self.malformed.is_empty() {
            writeln!(out, "Malformed forum datagrams:")?;
            for bad in &self.malformed {
                writeln!(
                    out,
                    "  #{} {} → {}: {}",
                    bad.frame, bad.src, bad.dst, bad.reason
                )?;
            }
        }
        if !self.strays.is_empty() {
            writeln!(
                out,
                "TCP connections to the forum's port not tied to a request:"
            )?;
            for stray in &self.strays {
                writeln!(
                    out,
                    "  #{} {} → {}: {}",
                    stray.frame, stray.client, stray.server, stray.reason
                )?;
            }
        }
        writeln!(out, "{}", self.summary())?;
        if self.requests_not_shown > 0 {
            writeln!(
                out,
                "Only the first {} requests are kept (this view is for lab-sized captures); \
                 {} more were counted but not shown.",
                thousands(self.max_requests as u64),
                thousands(self.requests_not_shown)
            )?;
        }
        if explain {
            writeln!(out)?;
            out.write_all(self.explain().as_bytes())?;
        }
        Ok(())
    }

    /// Writes JSON Lines: one object per request (`"record": "request"`), then one per
    /// malformed datagram (`"malformed"`), one per stray TCP connection (`"stray"`) and
    /// a last `"totals"` object. Field names are stable; see the serde structs of this
    /// module for the full list.
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        for row in &self.requests {
            let (reply, incomplete) = match &row.reply {
                ReplyState::Complete(reply) => (Some(reply), None),
                ReplyState::Partial(reassembly) => (
                    None,
                    Some(FragmentsJson {
                        received: reassembly.received(),
                        count: reassembly.count(),
                    }),
                ),
                ReplyState::None => (None, None),
            };
            let json = RequestJson {
                record: "request",
                frame: row.frame,
                time: row.time_us as f64 / 1e6,
                client: row.client,
                server: row.server,
                user: row.user.as_deref(),
                command: &row.command,
                session: format!("{:016x}", row.session),
                request: row.request,
                attempts: row.attempts(),
                retransmission_frames: &row.retransmissions,
                reply_frame: reply.map(|reply| reply.frame),
                reply_status: reply.map(|reply| reply.status.as_str()),
                reply_fragments: reply.map(|reply| reply.fragments),
                error: reply.and_then(|reply| reply.error.as_deref()),
                latency_ms: reply.map(|reply| reply.latency_us as f64 / 1e3),
                never_answered: reply.is_none(),
                incomplete_reply: incomplete,
                duplicate_reply_frames: &row.duplicate_replies,
                resend_frames: &row.resends,
                malformed_frames: &row.malformed,
                relayed_copies: row.relayed,
                transfer: row.transfer.as_ref().map(|tie| TransferJson {
                    frame: tie.frame,
                    reply_frame: tie.reply_frame,
                    client: tie.client,
                    server: tie.server,
                    relayed_frames: &tie.relayed,
                    direction: tie.direction,
                    size: tie.size,
                }),
            };
            write_line(out, &json)?;
        }
        for bad in &self.malformed {
            let json = MalformedJson {
                record: "malformed",
                frame: bad.frame,
                src: bad.src,
                dst: bad.dst,
                reason: &bad.reason,
            };
            write_line(out, &json)?;
        }
        for stray in &self.strays {
            let json = StrayJson {
                record: "stray",
                frame: stray.frame,
                client: stray.client,
                server: stray.server,
                reason: &stray.reason,
            };
            write_line(out, &json)?;
        }
        let totals = TotalsJson {
            record: "totals",
            requests: self.requests.len(),
            sessions: self.sessions.len(),
            heartbeats: self.heartbeats,
            unmatched_datagrams: self.unmatched,
            ignored_datagrams: self.ignored,
            requests_not_shown: self.requests_not_shown,
        };
        write_line(out, &totals)
    }

    fn summary(&self) -> String {
        let count =
            |test: fn(&RequestRow) -> bool| self.requests.iter().filter(|r| test(r)).count();
        let retransmitted = count(|row| !row.retransmissions.is_empty());
        let duplicated = count(|row| !row.duplicate_replies.is_empty());
        let unanswered = count(|row| !matches!(row.reply, ReplyState::Complete(_)));
        let transfers = count(|row| row.transfer.is_some());
        let mut line = format!(
            "{} request(s) in {} session(s): {retransmitted} retransmitted, {duplicated} with \
             duplicate replies, {unanswered} never answered, {transfers} tied to a TCP \
             transfer; {} heartbeat(s).",
            self.requests.len(),
            self.sessions.len(),
            self.heartbeats
        );
        if self.unmatched > 0 {
            let _ = write!(
                line,
                " {} datagram(s) answer requests not in this capture.",
                self.unmatched
            );
        }
        if self.ignored > 0 {
            let _ = write!(
                line,
                " {} UDP datagram(s) that are not forum traffic were ignored.",
                self.ignored
            );
        }
        line
    }

    /// The `--explain` notes, with this capture's values where it has them.
    fn explain(&self) -> String {
        let mut notes = String::from("Notes (--explain):\n");
        let _ = writeln!(
            notes,
            "- Every forum datagram starts with a {}-byte header: \"SF\" (the magic that \
             tells forum traffic from anything else), the version, the kind (1 request, \
             2 reply, 3 resend, 4 heartbeat, 5 error), a 64-bit session id the client \
             picks at random, a 32-bit request id counting the session's commands, and a \
             fragment index and count. No datagram is over {} bytes, so none needs IP \
             fragmentation.",
            wire::HEADER_LEN,
            thousands(wire::MAX_DATAGRAM as u64)
        );
        if let Some(first) = self.requests.first() {
            let _ = writeln!(
                notes,
                "- The first request (frame {}) is {} from {} to the server at {}: session \
                 {:016x}, request {}.",
                first.frame,
                first.command,
                first.client,
                first.server,
                first.session,
                first.request
            );
        }
        let retransmitted = self
            .requests
            .iter()
            .find(|row| !row.retransmissions.is_empty());
        let example = match retransmitted {
            Some(row) => format!(
                " Here request {} of session {:016x} (frame {}) was sent {} times.",
                row.request,
                row.session,
                row.frame,
                row.attempts()
            ),
            None => " This capture has none.".to_string(),
        };
        let _ = writeln!(
            notes,
            "- The same session and request id seen again is a retransmission: the client's \
             timer ran out before the reply came (a loss, or just a slow reply). The server \
             runs the command once and answers the copy from its reply cache, which is why \
             a retransmission often brings a duplicate reply.{example}"
        );
        notes.push_str(
            "- A reply too long for one datagram is split into fragments (index/count); it \
             is complete when every index has arrived, and the client asks for missing ones \
             with a resend. Latency runs from the first copy of the request to the \
             datagram that completed the reply.\n",
        );
        let tie = self
            .requests
            .iter()
            .find_map(|row| row.transfer.as_ref().map(|tie| (row, tie)));
        let example = match tie {
            Some((row, tie)) => format!(
                " Here the {} in frame {} got its token in frame {}, and the TCP connection \
                 from {} presented it in frame {}.",
                row.command, row.frame, tie.reply_frame, tie.client, tie.frame
            ),
            None => String::new(),
        };
        let _ = writeln!(
            notes,
            "- UPD and DWN are answered with a one-time token (\"UPLOAD T\", \"DOWNLOAD T \
             N\"); the file then travels over TCP to the same port number, and the \
             connection's first bytes (a 4-byte length and a JSON header) carry the token. \
             That is how a TCP transfer is tied to its UDP request.{example}"
        );
        notes.push_str(
            "- Heartbeats keep a session alive and are never answered: they are counted, not \
             shown. LOGIN and REGISTER carry the password in the clear; this view does not \
             show it, but the capture holds it.\n",
        );
        notes
    }
}

/// Reads the transfer header at the start of a connection's first payload.
fn parse_transfer_header(payload: &[u8]) -> Result<transfer::Request, String> {
    let Some((prefix, rest)) = payload.split_first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Err(format!(
            "the first payload ({} B) is too short for a transfer header",
            payload.len()
        ));
    };
    let len = u32::from_be_bytes(*prefix) as usize;
    if len > MAX_TRANSFER_HEADER {
        return Err(format!(
            "the first payload announces a {len}-byte header; transfer headers are at most \
             {MAX_TRANSFER_HEADER} bytes"
        ));
    }
    let Some(json) = rest.get(..len) else {
        return Err(format!(
            "the {len}-byte transfer header does not fit in the first payload ({} B)",
            payload.len()
        ));
    };
    serde_json::from_slice(json).map_err(|error| format!("not a transfer header: {error}"))
}

/// The first word of a body when it looks like one of ours (`CRT`, `NEW-USER`), else
/// the word quoted and escaped, so odd bytes never reach the terminal raw.
fn command_word(body: &[u8]) -> String {
    let word = body
        .split(|&byte| byte == b' ' || byte == b'\n')
        .next()
        .unwrap_or_default();
    let plain = !word.is_empty()
        && word.len() <= MAX_COMMAND_WORD
        && word
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-');
    if plain {
        String::from_utf8_lossy(word).into_owned()
    } else {
        preview(word, MAX_COMMAND_WORD)
    }
}

fn reply_cell(reply: &ReplyState) -> String {
    match reply {
        ReplyState::None => "-".to_string(),
        ReplyState::Partial(reassembly) => format!(
            "incomplete ({}/{})",
            reassembly.received(),
            reassembly.count()
        ),
        ReplyState::Complete(reply) if reply.fragments > 1 => format!(
            "{} #{} ({} fragments)",
            reply.status, reply.frame, reply.fragments
        ),
        ReplyState::Complete(reply) => format!("{} #{}", reply.status, reply.frame),
    }
}

fn latency_cell(reply: &ReplyState) -> String {
    match reply {
        ReplyState::Complete(reply) => format!("{} ms", millis(reply.latency_us)),
        _ => "-".to_string(),
    }
}

/// The marks of a row, one per line of its cell.
fn marks(row: &RequestRow) -> Vec<String> {
    let frames = |frames: &[u64]| {
        frames
            .iter()
            .map(|frame| format!("#{frame}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut marks = Vec::new();
    if !row.retransmissions.is_empty() {
        marks.push(format!("retransmitted: {}", frames(&row.retransmissions)));
    }
    if !row.duplicate_replies.is_empty() {
        marks.push(format!(
            "duplicate reply: {}",
            frames(&row.duplicate_replies)
        ));
    }
    match &row.reply {
        ReplyState::None => marks.push("never answered".to_string()),
        ReplyState::Partial(reassembly) => marks.push(format!(
            "never answered: {} of {} fragments",
            reassembly.received(),
            reassembly.count()
        )),
        ReplyState::Complete(CompleteReply {
            error: Some(reason),
            ..
        }) => marks.push(format!("error: {reason}")),
        ReplyState::Complete(_) => {}
    }
    if !row.resends.is_empty() {
        marks.push(format!("resend asked: {}", frames(&row.resends)));
    }
    if !row.malformed.is_empty() {
        marks.push(format!("malformed datagram: {}", frames(&row.malformed)));
    }
    if row.relayed > 0 {
        marks.push(format!("relayed copies (another hop): {}", row.relayed));
    }
    if let Some(tie) = &row.transfer {
        let size = tie.size.map_or(String::new(), |size| format!(", {size} B"));
        let direction = match tie.direction {
            Direction::Upload => "upload",
            Direction::Download => "download",
        };
        marks.push(format!(
            "TCP {direction}: #{} from {} (token in #{}{size})",
            tie.frame, tie.client, tie.reply_frame
        ));
        if !tie.relayed.is_empty() {
            marks.push(format!("TCP relayed: {}", frames(&tie.relayed)));
        }
    }
    marks
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// One request as JSON.
#[derive(Serialize)]
struct RequestJson<'a> {
    record: &'static str,
    frame: u64,
    time: f64,
    client: SocketAddr,
    server: SocketAddr,
    user: Option<&'a str>,
    command: &'a str,
    session: String,
    request: u32,
    attempts: usize,
    retransmission_frames: &'a [u64],
    reply_frame: Option<u64>,
    reply_status: Option<&'a str>,
    reply_fragments: Option<u16>,
    error: Option<&'a str>,
    latency_ms: Option<f64>,
    never_answered: bool,
    incomplete_reply: Option<FragmentsJson>,
    duplicate_reply_frames: &'a [u64],
    resend_frames: &'a [u64],
    malformed_frames: &'a [u64],
    relayed_copies: u64,
    transfer: Option<TransferJson<'a>>,
}

/// How much of a never-completed reply arrived.
#[derive(Serialize)]
struct FragmentsJson {
    received: usize,
    count: u16,
}

/// A transfer tied to a request, as JSON.
#[derive(Serialize)]
struct TransferJson<'a> {
    frame: u64,
    reply_frame: u64,
    client: SocketAddr,
    server: SocketAddr,
    relayed_frames: &'a [u64],
    direction: Direction,
    size: Option<u64>,
}

/// A malformed datagram as JSON.
#[derive(Serialize)]
struct MalformedJson<'a> {
    record: &'static str,
    frame: u64,
    src: SocketAddr,
    dst: SocketAddr,
    reason: &'a str,
}

/// A stray TCP connection as JSON.
#[derive(Serialize)]
struct StrayJson<'a> {
    record: &'static str,
    frame: u64,
    client: SocketAddr,
    server: SocketAddr,
    reason: &'a str,
}

/// The counts at the end of the JSON output.
#[derive(Serialize)]
struct TotalsJson {
    record: &'static str,
    requests: usize,
    sessions: usize,
    heartbeats: u64,
    unmatched_datagrams: u64,
    ignored_datagrams: u64,
    requests_not_shown: u64,
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::capture::packet::{Checksum, IpInfo};
    use crate::forum::wire::{encode_missing, error_datagram, split_reply};

    const SESSION: u64 = 0x1122_3344_5566_7788;
    const CLIENT: ([u8; 4], u16) = ([127, 0, 0, 1], 41_000);
    const SERVER: ([u8; 4], u16) = ([127, 0, 0, 1], 9_000);

    fn ip(src: [u8; 4], dst: [u8; 4], protocol: u8) -> Option<IpInfo> {
        Some(IpInfo {
            version: 4,
            src: IpAddr::from(src),
            dst: IpAddr::from(dst),
            protocol,
            ttl: 64,
            header_len: 20,
            total_len: 0,
            ident: 0,
            fragment: None,
        })
    }

    fn frame(number: u64, time_us: i64) -> Frame<'static> {
        Frame {
            number,
            time_us,
            data: &[],
            wire_len: 0,
        }
    }

    /// Feeds a UDP datagram carrying `payload` (lengths consistent) to the view.
    fn udp(
        view: &mut ForumView,
        number: u64,
        time_us: i64,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        payload: &[u8],
    ) {
        let udp_len = payload.len() as u32 + u32::from(UDP_HEADER_LEN);
        let packet = Packet {
            ip: ip(src.0, dst.0, 17),
            transport: Transport::Udp(UdpDatagram {
                src_port: src.1,
                dst_port: dst.1,
                length_field: u16::try_from(udp_len).unwrap(),
                ip_len: udp_len,
                payload,
                checksum: Checksum::NotVerified,
            }),
            malformed: None,
        };
        view.observe(&frame(number, time_us), &packet);
    }

    /// Feeds a TCP segment carrying `payload` to the view.
    fn tcp(
        view: &mut ForumView,
        number: u64,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        payload: &[u8],
    ) {
        let packet = Packet {
            ip: ip(src.0, dst.0, 6),
            transport: Transport::Tcp(TcpSegment {
                src_port: src.1,
                dst_port: dst.1,
                payload_len: payload.len() as u32,
                payload,
                ..TcpSegment::default()
            }),
            malformed: None,
        };
        view.observe(&frame(number, 0), &packet);
    }

    fn request(session: u64, id: u32, text: &str) -> Vec<u8> {
        Repr {
            kind: Kind::Request,
            session,
            request: id,
            frag: 0,
            count: 1,
            body: text.as_bytes(),
        }
        .to_vec()
    }

    /// A one-fragment reply carrying `reply`.
    fn reply(session: u64, id: u32, reply: &Reply) -> Vec<u8> {
        let mut datagrams = split_reply(session, id, reply.encode().as_bytes());
        assert_eq!(datagrams.len(), 1);
        datagrams.remove(0)
    }

    /// A transfer connection's first payload: length prefix + JSON header.
    fn transfer_header(token: &str, size: Option<u64>) -> Vec<u8> {
        let header = transfer::Request {
            version: transfer::VERSION,
            token: token.to_string(),
            size,
            sha256: size.map(|_| "00".repeat(32)),
        };
        let json = serde_json::to_vec(&header).unwrap();
        let mut bytes = u32::try_from(json.len()).unwrap().to_be_bytes().to_vec();
        bytes.extend_from_slice(&json);
        bytes
    }

    fn render_table(view: &ForumView, explain: bool) -> String {
        let mut out = Vec::new();
        view.write_table(&mut out, explain).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render_json(view: &ForumView) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        view.write_json(&mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn complete(row: &RequestRow) -> &CompleteReply {
        match &row.reply {
            ReplyState::Complete(reply) => reply,
            other => panic!("request {} not complete: {other:?}", row.request),
        }
    }

    /// A login, then a command: users, command words, latencies.
    fn login_session(view: &mut ForumView) {
        udp(
            view,
            1,
            1_000_000,
            CLIENT,
            SERVER,
            &request(SESSION, 1, "HELLO yoda"),
        );
        let password = Reply::with(Status::Password, "Enter password: ");
        udp(
            view,
            2,
            1_000_400,
            SERVER,
            CLIENT,
            &reply(SESSION, 1, &password),
        );
        let login = request(SESSION, 2, "LOGIN yoda wise@!man");
        udp(view, 3, 1_002_000, CLIENT, SERVER, &login);
        let welcome = Reply::ok("Welcome to the forum");
        udp(
            view,
            4,
            1_002_500,
            SERVER,
            CLIENT,
            &reply(SESSION, 2, &welcome),
        );
        udp(
            view,
            5,
            1_010_000,
            CLIENT,
            SERVER,
            &request(SESSION, 3, "CRT 3331"),
        );
        let created = Reply::ok("Thread 3331 created");
        udp(
            view,
            6,
            1_011_250,
            SERVER,
            CLIENT,
            &reply(SESSION, 3, &created),
        );
    }

    #[test]
    fn requests_carry_user_command_and_latency() {
        let mut view = ForumView::new();
        login_session(&mut view);
        let rows = view.requests();
        assert_eq!(rows.len(), 3);
        let commands: Vec<&str> = rows.iter().map(|row| row.command.as_str()).collect();
        assert_eq!(commands, ["HELLO", "LOGIN", "CRT"]);
        assert!(rows.iter().all(|row| row.user.as_deref() == Some("yoda")));
        assert!(rows.iter().all(|row| row.attempts() == 1));
        assert_eq!(rows[2].time_us, 10_000);
        assert_eq!(rows[2].client.to_string(), "127.0.0.1:41000");
        assert_eq!(rows[2].server.to_string(), "127.0.0.1:9000");
        let created = complete(&rows[2]);
        assert_eq!(
            (created.frame, created.latency_us, created.status.as_str()),
            (6, 1_250, "OK")
        );
        assert_eq!(complete(&rows[0]).status, "PASSWORD");

        let table = render_table(&view, false);
        assert!(table.contains("1122334455667788"), "{table}");
        assert!(table.contains("OK #6"), "{table}");
        assert!(table.contains("1.250 ms"), "{table}");
        assert!(
            table.contains("3 request(s) in 1 session(s): 0 retransmitted"),
            "{table}"
        );
        // The password is in the capture, but never in the view.
        assert!(!table.contains("wise"), "{table}");
        let mut json = Vec::new();
        view.write_json(&mut json).unwrap();
        assert!(!String::from_utf8(json).unwrap().contains("wise"));
    }

    #[test]
    fn user_is_unknown_when_the_login_is_not_captured() {
        let mut view = ForumView::new();
        udp(&mut view, 1, 0, CLIENT, SERVER, &request(7, 9, "LST"));
        assert_eq!(view.requests()[0].user, None);
        assert!(render_table(&view, false).contains(" ? "));
    }

    #[test]
    fn retransmitted_request_and_duplicate_reply_are_marked() {
        let mut view = ForumView::new();
        let msg = request(SESSION, 4, "MSG 3331 Networks is awesome");
        udp(&mut view, 10, 0, CLIENT, SERVER, &msg);
        // The reply was lost on the way; the client's timer fires and it sends again.
        udp(&mut view, 11, 300_000, CLIENT, SERVER, &msg);
        let posted = reply(SESSION, 4, &Reply::ok("Message posted to 3331 thread"));
        udp(&mut view, 12, 300_400, SERVER, CLIENT, &posted);
        // The first copy's reply, late: a duplicate.
        udp(&mut view, 13, 301_000, SERVER, CLIENT, &posted);

        let row = &view.requests()[0];
        assert_eq!(row.attempts(), 2);
        assert_eq!(row.retransmissions, [11]);
        assert_eq!(row.duplicate_replies, [13]);
        assert_eq!(complete(row).latency_us, 300_400, "from the first copy");
        let table = render_table(&view, false);
        assert!(table.contains("retransmitted: #11"), "{table}");
        assert!(table.contains("duplicate reply: #13"), "{table}");
        assert!(
            table.contains("1 retransmitted, 1 with duplicate replies"),
            "{table}"
        );
        let json = render_json(&view);
        assert_eq!(json[0]["attempts"], 2);
        assert_eq!(json[0]["retransmission_frames"], serde_json::json!([11]));
        assert_eq!(json[0]["duplicate_reply_frames"], serde_json::json!([13]));
        assert_eq!(json[0]["latency_ms"], 300.4);
    }

    #[test]
    fn unanswered_request_is_marked() {
        let mut view = ForumView::new();
        udp(
            &mut view,
            1,
            0,
            CLIENT,
            SERVER,
            &request(SESSION, 1, "RDT 3331"),
        );
        let table = render_table(&view, false);
        assert!(table.contains("never answered"), "{table}");
        assert!(table.contains("1 never answered"), "{table}");
        let json = render_json(&view);
        assert_eq!(json[0]["never_answered"], true);
        assert!(json[0]["reply_frame"].is_null());
        assert!(json[0]["latency_ms"].is_null());
    }

    #[test]
    fn fragments_are_reassembled_in_any_order() {
        let mut body = String::from("OK");
        for n in 1..=100 {
            body.push_str(&format!("\n{n} yoda: message number {n} of a long thread"));
        }
        let fragments = split_reply(SESSION, 5, body.as_bytes());
        assert_eq!(fragments.len(), 4, "body of {} B", body.len());
        let mut view = ForumView::new();
        udp(
            &mut view,
            1,
            0,
            CLIENT,
            SERVER,
            &request(SESSION, 5, "RDT 3331"),
        );
        udp(&mut view, 2, 100, SERVER, CLIENT, &fragments[3]);
        udp(&mut view, 3, 200, SERVER, CLIENT, &fragments[0]);
        udp(&mut view, 4, 300, SERVER, CLIENT, &fragments[0]); // duplicated on the way
        let resend = Repr {
            kind: Kind::Resend,
            session: SESSION,
            request: 5,
            frag: 0,
            count: 1,
            body: &encode_missing(&[1, 2]),
        }
        .to_vec();
        udp(&mut view, 5, 400, CLIENT, SERVER, &resend);
        udp(&mut view, 6, 500, SERVER, CLIENT, &fragments[2]);
        assert!(matches!(view.requests()[0].reply, ReplyState::Partial(_)));
        let table = render_table(&view, false);
        assert!(table.contains("incomplete (3/4)"), "{table}");
        assert!(
            table.contains("never answered: 3 of 4 fragments"),
            "{table}"
        );
        assert_eq!(render_json(&view)[0]["incomplete_reply"]["received"], 3);

        udp(&mut view, 7, 600, SERVER, CLIENT, &fragments[1]);
        let row = &view.requests()[0];
        let reply = complete(row);
        assert_eq!(
            (reply.frame, reply.fragments, reply.latency_us),
            (7, 4, 600)
        );
        assert_eq!(reply.status, "OK");
        assert_eq!(row.duplicate_replies, [4]);
        assert_eq!(row.resends, [5]);
        let table = render_table(&view, false);
        assert!(table.contains("OK #7 (4 fragments)"), "{table}");
        assert!(table.contains("resend asked: #5"), "{table}");
    }

    #[test]
    fn fragment_count_disagreeing_with_earlier_fragments_is_malformed() {
        let long = "x".repeat(3000);
        let three = split_reply(SESSION, 5, long.as_bytes());
        let two = split_reply(SESSION, 5, &long.as_bytes()[..2000]);
        let mut view = ForumView::new();
        udp(
            &mut view,
            1,
            0,
            CLIENT,
            SERVER,
            &request(SESSION, 5, "RDT t"),
        );
        udp(&mut view, 2, 0, SERVER, CLIENT, &three[0]);
        udp(&mut view, 3, 0, SERVER, CLIENT, &two[1]);
        assert_eq!(view.requests()[0].malformed, [3]);
        assert_eq!(
            view.malformed()[0].reason,
            "reply fragment 2 of 2 disagrees with the count 3 of earlier fragments"
        );
        // The server's side sent it: the row's server → client.
        assert_eq!(view.malformed()[0].src.port(), 9_000);
    }

    #[test]
    fn error_datagram_answers_a_request() {
        let mut view = ForumView::new();
        udp(&mut view, 1, 0, CLIENT, SERVER, &request(99, 8, "LST"));
        let refusal = error_datagram(99, 8, "unknown or expired session: please log in again");
        udp(&mut view, 2, 50, SERVER, CLIENT, &refusal);
        let reply = complete(&view.requests()[0]);
        assert_eq!(reply.status, "ERROR");
        assert_eq!(
            reply.error.as_deref(),
            Some("\"unknown or expired session: please log in again\"")
        );
        assert!(render_table(&view, false).contains("error: \"unknown or expired session"));
    }

    #[test]
    fn transfers_are_tied_to_the_request_that_granted_their_token() {
        let mut view = ForumView::new();
        let upload_token = "0123456789abcdef0123456789abcdef";
        let download_token = "fedcba9876543210fedcba9876543210";
        udp(
            &mut view,
            1,
            0,
            CLIENT,
            SERVER,
            &request(SESSION, 6, "UPD 3331 a.pdf"),
        );
        let grant = Reply::with(
            Status::Upload {
                token: upload_token.to_string(),
            },
            "",
        );
        udp(&mut view, 2, 10, SERVER, CLIENT, &reply(SESSION, 6, &grant));
        let upload_client = ([127, 0, 0, 1], 50_001);
        tcp(
            &mut view,
            3,
            upload_client,
            SERVER,
            &transfer_header(upload_token, Some(5)),
        );
        // The file body that follows is not a header, and is not examined.
        tcp(&mut view, 4, upload_client, SERVER, b"hello");
        // The server's answer goes the other way and is not examined either.
        tcp(&mut view, 5, SERVER, upload_client, b"{\"ok\":true}");

        udp(
            &mut view,
            6,
            20,
            CLIENT,
            SERVER,
            &request(SESSION, 7, "DWN 3331 b.txt"),
        );
        let grant = Reply::with(
            Status::Download {
                token: download_token.to_string(),
                size: 42,
            },
            "",
        );
        udp(&mut view, 7, 30, SERVER, CLIENT, &reply(SESSION, 7, &grant));
        let download_client = ([127, 0, 0, 1], 50_002);
        tcp(
            &mut view,
            8,
            download_client,
            SERVER,
            &transfer_header(download_token, None),
        );

        let rows = view.requests();
        assert_eq!(
            rows[0].transfer,
            Some(TransferTie {
                frame: 3,
                reply_frame: 2,
                client: "127.0.0.1:50001".parse().unwrap(),
                server: "127.0.0.1:9000".parse().unwrap(),
                relayed: vec![],
                direction: Direction::Upload,
                size: Some(5),
            })
        );
        assert_eq!(
            rows[1].transfer,
            Some(TransferTie {
                frame: 8,
                reply_frame: 7,
                client: "127.0.0.1:50002".parse().unwrap(),
                server: "127.0.0.1:9000".parse().unwrap(),
                relayed: vec![],
                direction: Direction::Download,
                size: Some(42),
            })
        );
        assert!(view.strays().is_empty(), "{:?}", view.strays());
        let table = render_table(&view, false);
        assert!(
            table.contains("TCP upload: #3 from 127.0.0.1:50001 (token in #2, 5 B)"),
            "{table}"
        );
        assert!(table.contains("TCP download: #8"), "{table}");
        assert!(table.contains("2 tied to a TCP transfer"), "{table}");
        let json = render_json(&view);
        assert_eq!(json[0]["transfer"]["frame"], 3);
        assert_eq!(json[0]["transfer"]["direction"], "upload");
        assert_eq!(json[1]["transfer"]["size"], 42);
    }

    #[test]
    fn copies_relayed_by_a_proxy_are_neither_retransmissions_nor_duplicates() {
        // client 41000 → proxy 9001 → (proxy's own port 50000) → server 9000, and back.
        let proxy = ([127, 0, 0, 1], 9_001);
        let proxy_out = ([127, 0, 0, 1], 50_000);
        let token = "0123456789abcdef0123456789abcdef";
        let upd = request(SESSION, 6, "UPD 3331 a.pdf");
        let grant = reply(
            SESSION,
            6,
            &Reply::with(
                Status::Upload {
                    token: token.into(),
                },
                "",
            ),
        );
        let mut view = ForumView::new();
        udp(&mut view, 1, 0, CLIENT, proxy, &upd);
        udp(&mut view, 2, 100, proxy_out, SERVER, &upd);
        udp(&mut view, 3, 500, SERVER, proxy_out, &grant);
        udp(&mut view, 4, 700, proxy, CLIENT, &grant);
        // The client's own retransmission, relayed too, and its duplicate reply.
        udp(&mut view, 5, 900, CLIENT, proxy, &upd);
        udp(&mut view, 6, 950, proxy_out, SERVER, &upd);
        udp(&mut view, 7, 990, SERVER, proxy_out, &grant);
        udp(&mut view, 8, 999, proxy, CLIENT, &grant);
        // The transfer connection, on both hops.
        let header = transfer_header(token, Some(5));
        tcp(&mut view, 9, ([127, 0, 0, 1], 50_010), proxy, &header);
        tcp(&mut view, 10, ([127, 0, 0, 1], 50_011), SERVER, &header);

        let row = &view.requests()[0];
        assert_eq!(row.retransmissions, [5]);
        assert_eq!(row.duplicate_replies, [8]);
        assert_eq!(row.relayed, 4);
        let reply = complete(row);
        assert_eq!(
            (reply.frame, reply.latency_us),
            (4, 700),
            "as the client saw it"
        );
        let tie = row.transfer.as_ref().unwrap();
        assert_eq!(
            (tie.frame, tie.server.port(), tie.relayed.clone()),
            (9, 9_001, vec![10])
        );
        assert!(view.strays().is_empty(), "{:?}", view.strays());
        let table = render_table(&view, false);
        assert!(table.contains("relayed copies (another hop): 4"), "{table}");
        assert!(table.contains("TCP relayed: #10"), "{table}");
        assert_eq!(render_json(&view)[0]["relayed_copies"], 4);
    }

    #[test]
    fn connections_without_a_granted_token_are_strays() {
        let mut view = ForumView::new();
        let token = "0123456789abcdef0123456789abcdef";
        udp(
            &mut view,
            1,
            0,
            CLIENT,
            SERVER,
            &request(SESSION, 6, "UPD 3331 a.pdf"),
        );
        let grant = Reply::with(
            Status::Upload {
                token: token.into(),
            },
            "",
        );
        udp(&mut view, 2, 10, SERVER, CLIENT, &reply(SESSION, 6, &grant));
        tcp(
            &mut view,
            3,
            ([127, 0, 0, 1], 50_001),
            SERVER,
            &transfer_header(token, Some(1)),
        );
        // The same token again: the server accepts a token once.
        tcp(
            &mut view,
            4,
            ([127, 0, 0, 1], 50_002),
            SERVER,
            &transfer_header(token, Some(1)),
        );
        tcp(
            &mut view,
            5,
            ([127, 0, 0, 1], 50_003),
            SERVER,
            &transfer_header("guess", None),
        );
        tcp(
            &mut view,
            6,
            ([127, 0, 0, 1], 50_004),
            SERVER,
            b"GET / HTTP/1.1\r\n",
        );
        // A connection to another port is not the forum's business.
        tcp(
            &mut view,
            7,
            ([127, 0, 0, 1], 50_005),
            ([127, 0, 0, 1], 80),
            b"xx",
        );

        let reasons: Vec<(u64, &str)> = view
            .strays()
            .iter()
            .map(|stray| (stray.frame, stray.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert_eq!(
            reasons[0],
            (4, "token already used by the transfer in frame 3")
        );
        assert_eq!(
            reasons[1],
            (
                5,
                "token guess was not granted by any reply in this capture"
            )
        );
        assert_eq!(reasons[2].0, 6);
        assert!(reasons[2].1.contains("announces a"), "{}", reasons[2].1);
        let table = render_table(&view, false);
        assert!(table.contains("not tied to a request:"), "{table}");
        assert!(
            table.contains("#5 127.0.0.1:50003 → 127.0.0.1:9000"),
            "{table}"
        );
        let json = render_json(&view);
        assert_eq!(
            json.iter().filter(|obj| obj["record"] == "stray").count(),
            3
        );
    }

    #[test]
    fn transfer_header_parsing_never_panics() {
        assert!(parse_transfer_header(b"")
            .unwrap_err()
            .contains("too short"));
        assert!(parse_transfer_header(&[0, 0, 0])
            .unwrap_err()
            .contains("too short"));
        assert!(parse_transfer_header(&[0, 0, 0, 9, b'{'])
            .unwrap_err()
            .contains("does not fit"));
        assert!(parse_transfer_header(&[255, 255, 255, 255])
            .unwrap_err()
            .contains("at most 4096"));
        assert!(parse_transfer_header(&[0, 0, 0, 2, b'{', b'}'])
            .unwrap_err()
            .starts_with("not a transfer header"));
        let header = parse_transfer_header(&transfer_header("t0k3n", Some(3))).unwrap();
        assert_eq!((header.token.as_str(), header.size), ("t0k3n", Some(3)));
    }

    #[test]
    fn malformed_datagrams_are_reported_with_their_frames() {
        let mut view = ForumView::new();
        udp(&mut view, 1, 0, CLIENT, SERVER, &request(SESSION, 1, "LST"));
        // Too short for the header.
        udp(&mut view, 2, 0, CLIENT, SERVER, b"SF\x01\x01abc");
        // A future version.
        let mut future = request(SESSION, 2, "LST");
        future[2] = 2;
        udp(&mut view, 3, 0, CLIENT, SERVER, &future);
        // A request claiming to be fragment index 1 of 3, for request 1: attributed to
        // it. (The wire error counts fragments from 0, as the header does.)
        let odd = Repr {
            kind: Kind::Request,
            session: SESSION,
            request: 1,
            frag: 1,
            count: 3,
            body: b"LST",
        }
        .to_vec();
        udp(&mut view, 4, 0, CLIENT, SERVER, &odd);
        // Not forum traffic at all: ignored, counted.
        udp(&mut view, 5, 0, CLIENT, SERVER, b"hello echo");

        let malformed: Vec<(u64, &str)> = view
            .malformed()
            .iter()
            .map(|bad| (bad.frame, bad.reason.as_str()))
            .collect();
        assert_eq!(
            malformed,
            [
                (2, "datagram of 7 bytes is shorter than the 20-byte header"),
                (
                    3,
                    "datagram has format version 2; this program speaks version 1"
                ),
                (
                    4,
                    "a REQUEST datagram is not fragmented, but this one says fragment 1 of 3"
                ),
            ]
        );
        assert_eq!(view.requests()[0].malformed, [4]);
        assert_eq!(view.requests().len(), 1);
        assert_eq!(view.ignored(), 1);
        let table = render_table(&view, false);
        assert!(table.contains("malformed datagram: #4"), "{table}");
        assert!(
            table.contains("#2 127.0.0.1:41000 → 127.0.0.1:9000: datagram of 7 bytes"),
            "{table}"
        );
        assert!(
            table.contains("1 UDP datagram(s) that are not forum traffic"),
            "{table}"
        );
        let json = render_json(&view);
        assert_eq!(
            json.iter()
                .filter(|obj| obj["record"] == "malformed")
                .count(),
            3
        );
        assert_eq!(json.last().unwrap()["ignored_datagrams"], 1);
    }

    #[test]
    fn datagram_cut_by_snaplen_is_malformed_not_misread() {
        let mut view = ForumView::new();
        let full = request(SESSION, 1, "MSG 3331 a long message");
        let udp_len = full.len() as u32 + u32::from(UDP_HEADER_LEN);
        let packet = Packet {
            ip: ip(CLIENT.0, SERVER.0, 17),
            transport: Transport::Udp(UdpDatagram {
                src_port: CLIENT.1,
                dst_port: SERVER.1,
                length_field: u16::try_from(udp_len).unwrap(),
                ip_len: udp_len,
                payload: &full[..24],
                checksum: Checksum::NotVerified,
            }),
            malformed: Some("cut by snaplen".into()),
        };
        view.observe(&frame(1, 0), &packet);
        assert!(view.requests().is_empty());
        assert_eq!(
            view.malformed()[0].reason,
            format!(
                "only 24 of its {} bytes were captured (snap length)",
                full.len()
            )
        );
    }

    #[test]
    fn heartbeats_and_unmatched_replies_are_counted_not_shown() {
        let mut view = ForumView::new();
        let heartbeat = Repr {
            kind: Kind::Heartbeat,
            session: SESSION,
            request: 0,
            frag: 0,
            count: 1,
            body: b"",
        }
        .to_vec();
        udp(&mut view, 1, 0, CLIENT, SERVER, &heartbeat);
        udp(&mut view, 2, 0, CLIENT, SERVER, &heartbeat);
        // A reply to a request sent before the capture started.
        udp(
            &mut view,
            3,
            0,
            SERVER,
            CLIENT,
            &reply(SESSION, 1, &Reply::ok("x")),
        );
        assert!(view.requests().is_empty());
        let table = render_table(&view, false);
        assert!(
            table.starts_with("No forum requests in this capture."),
            "{table}"
        );
        assert!(table.contains("0 request(s) in 1 session(s)"), "{table}");
        assert!(table.contains("2 heartbeat(s)"), "{table}");
        assert!(
            table.contains("1 datagram(s) answer requests not in this capture"),
            "{table}"
        );
        let json = render_json(&view);
        assert_eq!(json.len(), 1);
        assert_eq!(json[0]["record"], "totals");
        assert_eq!(json[0]["heartbeats"], 2);
        assert_eq!(json[0]["unmatched_datagrams"], 1);
    }

    #[test]
    fn requests_stop_at_the_limit_and_the_rest_is_counted() {
        let mut view = ForumView::with_max_requests(1);
        udp(&mut view, 1, 0, CLIENT, SERVER, &request(SESSION, 1, "LST"));
        udp(&mut view, 2, 0, CLIENT, SERVER, &request(SESSION, 2, "LST"));
        udp(&mut view, 3, 0, CLIENT, SERVER, &request(SESSION, 3, "LST"));
        assert_eq!(view.requests().len(), 1);
        let table = render_table(&view, false);
        assert!(
            table.contains("Only the first 1 requests are kept"),
            "{table}"
        );
        assert!(table.contains("2 more were counted"), "{table}");
        assert_eq!(render_json(&view).last().unwrap()["requests_not_shown"], 2);
        assert_eq!(ForumView::new().max_requests, 1_000_000);
    }

    #[test]
    fn odd_command_words_are_escaped() {
        assert_eq!(command_word(b"CRT 3331"), "CRT");
        assert_eq!(command_word(b"NEW-USER\nEnter"), "NEW-USER");
        assert_eq!(command_word(b"\x1b[2J"), "\"\\x1b[2J\"");
        assert_eq!(command_word(b""), "\"\"");
        assert_eq!(
            command_word(b"AVERYLONGWORDTHATISNOTOURS"),
            "\"AVERYLONGWORDTHA\"..."
        );
    }

    #[test]
    fn explain_uses_this_captures_values() {
        let mut view = ForumView::new();
        login_session(&mut view);
        let crt = request(SESSION, 4, "CRT 9999");
        udp(&mut view, 7, 2_000_000, CLIENT, SERVER, &crt);
        udp(&mut view, 8, 2_300_000, CLIENT, SERVER, &crt);
        let table = render_table(&view, true);
        assert!(table.contains("a 20-byte header"), "{table}");
        assert!(
            table.contains(
                "The first request (frame 1) is HELLO from 127.0.0.1:41000 to the server at \
                 127.0.0.1:9000: session 1122334455667788, request 1."
            ),
            "{table}"
        );
        assert!(
            table
                .contains("Here request 4 of session 1122334455667788 (frame 7) was sent 2 times."),
            "{table}"
        );
    }
}
