//! Lab 4, `socklab analyze FILE [VIEW]`: streams a capture file through the reader,
//! the dissector and the [`Analyzer`], and renders the chosen view.
//!
//! ```text
//!   file ──reader──> Frame ──dissect──> Packet ──Analyzer::observe──> Observation
//!                                                        │                 │
//!                                       finish: Report ──┴─> summary,      └─> tcp rows
//!                                                            flows,            (as they
//!                                                            handshakes        stream)
//! ```
//!
//! Only the `tcp` view writes rows while the capture streams (JSON rows at once; table
//! rows are kept, up to [`MAX_TABLE_ROWS`], because a table needs all its rows to size
//! its columns). The other views are rendered from the [`Report`] at the end, so memory
//! grows with the number of flows, not packets.

use std::io::{self, Write};
use std::path::PathBuf;

use comfy_table::Cell;
use serde_json::Value;

use super::flows::{Analyzer, Observation, Report};
use super::packet::{Frame, LinkType, Packet, Transport};
use super::tcp::SegmentInfo;
use super::views::{follow, forum, ladder, udp, FrameView};
use super::{dissect, reader, render, stages, CaptureError};
use crate::output::table;

/// The `tcp` table keeps at most this many rows (about 1 kB each); beyond, it says how
/// many it left out (use `--json`, which streams, or pick a STREAM).
pub const MAX_TABLE_ROWS: usize = 20_000;

/// Which view `socklab analyze` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Packets and bytes per protocol, duration, flows, notable events.
    Summary,
    /// One row per TCP connection and UDP conversation.
    Flows,
    /// Per TCP connection: the three-way handshake and the teardown.
    Handshakes,
    /// One row per TCP segment (of one stream, or all), then per-stream throughput.
    Tcp {
        /// Only this `tcp.stream`.
        stream: Option<u64>,
    },
    /// One row per UDP datagram, with request/reply pairs.
    Udp,
    /// The reassembled byte stream of one TCP connection.
    Follow {
        /// The `tcp.stream`.
        stream: u64,
        /// Hex dump instead of text.
        hex: bool,
    },
    /// A terminal sequence diagram of one TCP connection.
    Ladder {
        /// The `tcp.stream`.
        stream: u64,
    },
    /// socklab forum requests and replies.
    Forum,
}

impl View {
    /// Whether the view needs only the packets' headers, never their payload bytes.
    pub fn reads_headers_only(&self) -> bool {
        matches!(
            self,
            View::Summary | View::Flows | View::Handshakes | View::Tcp { .. }
        )
    }

    /// The view's name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            View::Summary => "summary",
            View::Flows => "flows",
            View::Handshakes => "handshakes",
            View::Tcp { .. } => "tcp",
            View::Udp => "udp",
            View::Follow { .. } => "follow",
            View::Ladder { .. } => "ladder",
            View::Forum => "forum",
        }
    }
}

/// What `socklab analyze` was asked to do.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// The pcap or pcapng file.
    pub path: PathBuf,
    /// The view to print.
    pub view: View,
    /// A BPF filter applied while reading (`-f "tcp port 12000"`).
    pub filter: Option<String>,
    /// JSON Lines instead of tables.
    pub json: bool,
    /// Plain-language notes for students under the tables.
    pub explain: bool,
}

/// How an analysis went, apart from its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnalyzeOutcome {
    /// Frames read.
    pub frames: u64,
    /// Warnings for stderr (a truncated file: the results cover the frames before it).
    pub warnings: Vec<String>,
}

/// A view that is not built into this session (it is wired in elsewhere, or not yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedView(pub &'static str);

impl std::fmt::Display for UnsupportedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the `{}` view is not available in this build", self.0)
    }
}

/// Reads the capture `opts.path` and writes the chosen view to `out`.
///
/// A truncated file is not an error: the view covers the frames before the cut, and
/// the outcome carries a warning for stderr.
///
/// # Errors
/// The file cannot be opened or read, the filter does not compile, the view is not
/// available here, or writing to `out` fails.
pub fn analyze(opts: &AnalyzeOptions, out: &mut dyn Write) -> Result<AnalyzeOutcome, CaptureError> {
    let capture = reader::open(&opts.path, opts.filter.as_deref())?;
    let link = capture.link_type();
    let mut session =
        Session::new(&opts.view, opts.json, opts.explain, link).map_err(|unsupported| {
            CaptureError::Unsupported {
                what: unsupported.to_string(),
            }
        })?;
    let warnings = if opts.view.reads_headers_only() {
        stages::read_in_stages(
            capture,
            &opts.path,
            opts.filter.as_deref(),
            &mut session,
            out,
        )?
        .warnings
    } else {
        read_in_one_stage(capture, &mut session, out)?
    };
    if let View::Follow { stream, .. } | View::Ladder { stream } = opts.view {
        let streams = session.tcp_streams();
        if stream >= streams {
            return Err(CaptureError::NoStream {
                path: opts.path.clone(),
                stream,
                streams,
            });
        }
    }
    let frames = session.frames();
    session.finish(out).map_err(write_error)?;
    Ok(AnalyzeOutcome { frames, warnings })
}

/// The error for a failed write of the analysis.
pub(crate) fn write_error(source: io::Error) -> CaptureError {
    CaptureError::Io {
        what: "cannot write the analysis".to_string(),
        source,
    }
}

/// The warning for a file that ends inside a frame.
pub(crate) fn truncation_warning(truncated: &CaptureError) -> String {
    format!("{truncated}; showing the frames before it")
}

/// Reads, dissects and analyses each frame in turn, on this thread: for the views
/// that show payload bytes (udp, forum, follow, ladder), and for the rest of a file
/// whose frames the staged reading cannot take apart from what it keeps
/// (see [`stages`]).
pub(crate) fn read_in_one_stage(
    mut capture: reader::CaptureFile,
    session: &mut Session,
    out: &mut dyn Write,
) -> Result<Vec<String>, CaptureError> {
    let link = capture.link_type();
    loop {
        match capture.next_frame() {
            Ok(Some(frame)) => {
                let packet = dissect::dissect(link, &frame);
                session.observe(&frame, &packet, out).map_err(write_error)?;
            }
            Ok(None) => return Ok(Vec::new()),
            Err(truncated @ CaptureError::Truncated { .. }) => {
                return Ok(vec![truncation_warning(&truncated)])
            }
            Err(other) => return Err(other),
        }
    }
}

/// One analysis in progress: feed it frames, then finish it. Kept apart from file
/// reading so that tests can drive it with hand-made frames.
pub struct Session {
    view: View,
    json: bool,
    explain: bool,
    analyzer: Analyzer,
    first_time_us: Option<i64>,
    frames: u64,
    tcp_rows: Vec<Vec<Cell>>,
    tcp_rows_left_out: u64,
    /// The first segment with a K&R RTT sample, for the `--explain` notes.
    first_rtt: Option<(u64, SegmentInfo)>,
    /// The udp, forum, follow or ladder view, which see every frame themselves.
    frame_view: Option<FrameView>,
}

impl Session {
    /// A session for `view` on a capture of link type `link`.
    ///
    /// # Errors
    /// [`UnsupportedView`] for a view this build does not render (none at present).
    pub fn new(
        view: &View,
        json: bool,
        explain: bool,
        link: LinkType,
    ) -> Result<Session, UnsupportedView> {
        let frame_view = match *view {
            View::Summary | View::Flows | View::Handshakes | View::Tcp { .. } => None,
            View::Udp => Some(FrameView::Udp(udp::UdpView::new())),
            View::Forum => Some(FrameView::Forum(forum::ForumView::new())),
            View::Follow { stream, hex } => {
                Some(FrameView::Follow(follow::FollowView::new(stream, hex)))
            }
            View::Ladder { stream } => {
                Some(FrameView::Ladder(ladder::LadderView::new(stream, json)))
            }
        };
        Ok(Session {
            view: view.clone(),
            json,
            explain,
            analyzer: Analyzer::new(link),
            first_time_us: None,
            frames: 0,
            tcp_rows: Vec::new(),
            tcp_rows_left_out: 0,
            first_rtt: None,
            frame_view,
        })
    }

    /// Frames fed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// TCP streams seen so far (`tcp.stream` numbers 0 to this minus one).
    pub fn tcp_streams(&self) -> u64 {
        self.analyzer.report().tcp.len() as u64
    }

    /// Analyses one frame; the `tcp` view may write its row to `out`.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn observe(
        &mut self,
        frame: &Frame<'_>,
        packet: &Packet<'_>,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        self.frames += 1;
        let first = *self.first_time_us.get_or_insert(frame.time_us);
        let observation = self.analyzer.observe(frame, packet);
        if let Some(view) = &mut self.frame_view {
            return view.observe(frame, packet, &observation, out);
        }
        let View::Tcp { stream } = self.view else {
            return Ok(());
        };
        let Observation::Tcp(info) = observation else {
            return Ok(());
        };
        if stream.is_some_and(|s| s != info.stream) {
            return Ok(());
        }
        if info.rtt.is_some() && self.first_rtt.is_none() {
            self.first_rtt = Some((info.acks_frame.unwrap_or(frame.number), info));
        }
        let header_len = match &packet.transport {
            Transport::Tcp(segment) => segment.header_len,
            _ => 0,
        };
        let seg_frame = render::SegmentFrame {
            number: frame.number,
            since_start_us: frame.time_us - first,
            header_len,
        };
        if self.json {
            write_json(out, &render::tcp_json(&seg_frame, &info))
        } else {
            if self.tcp_rows.len() < MAX_TABLE_ROWS {
                self.tcp_rows.push(render::tcp_row(&seg_frame, &info));
            } else {
                self.tcp_rows_left_out += 1;
            }
            Ok(())
        }
    }

    /// Ends the analysis and writes the view.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn finish(self, out: &mut dyn Write) -> io::Result<Report> {
        let report = self.analyzer.finish();
        if let Some(view) = self.frame_view {
            view.finish(out, self.json, self.explain)?;
            return Ok(report);
        }
        match (&self.view, self.json) {
            (View::Summary, false) => {
                out.write_all(render::summary_table(&report, self.explain).as_bytes())?
            }
            (View::Summary, true) => write_all_json(out, &render::summary_json(&report))?,
            (View::Flows, false) => {
                out.write_all(render::flows_table(&report, self.explain).as_bytes())?
            }
            (View::Flows, true) => {
                // Each row is made in one reused buffer and written whole: one call
                // through `out` a row instead of one per token.
                let mut line = Vec::with_capacity(256);
                for row in render::flows_json(&report) {
                    line.clear();
                    serde_json::to_writer(&mut line, &row)?;
                    line.push(b'\n');
                    out.write_all(&line)?;
                }
            }
            (View::Handshakes, false) => {
                out.write_all(render::handshakes_table(&report, self.explain).as_bytes())?
            }
            (View::Handshakes, true) => write_all_json(out, &render::handshakes_json(&report))?,
            (View::Tcp { stream }, json) => {
                let connections: Vec<_> = report
                    .tcp
                    .iter()
                    .filter(|c| stream.is_none_or(|s| s == c.stream))
                    .collect();
                if json {
                    write_all_json(out, &render::throughput_json(&connections))?;
                } else {
                    let mut rows = table(&render::TCP_HEADERS);
                    for row in self.tcp_rows {
                        rows.add_row(row);
                    }
                    writeln!(out, "{rows}")?;
                    if self.tcp_rows_left_out > 0 {
                        writeln!(
                            out,
                            "({} more segments left out of the table: use --json, or give a STREAM)",
                            self.tcp_rows_left_out
                        )?;
                    }
                    writeln!(
                        out,
                        "Throughput (payload bytes / time from first to last data segment):"
                    )?;
                    writeln!(out, "{}", render::throughput_table(&connections))?;
                    if self.explain {
                        out.write_all(render::tcp_notes(&connections, self.first_rtt).as_bytes())?;
                    }
                }
            }
            // The udp, forum, follow and ladder views returned above.
            (_, _) => {}
        }
        Ok(report)
    }
}

fn write_json(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

fn write_all_json(out: &mut dyn Write, values: &[Value]) -> io::Result<()> {
    for value in values {
        write_json(out, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::packet::{tcp_flags, IpInfo, TcpOptions, TcpSegment};
    use std::net::{IpAddr, Ipv4Addr};

    /// The pipelined reading of the header-only views gives byte for byte what reading,
    /// dissecting and analysing one frame at a time gives, on a real lossy capture and
    /// on a file cut short.
    #[test]
    fn staged_reading_matches_one_frame_at_a_time() {
        let real =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lossy-transfer.pcap");
        let dir = tempfile::tempdir().expect("a scratch directory");
        let cut = dir.path().join("cut.pcap");
        let bytes = std::fs::read(&real).expect("read the sample");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).expect("write the cut copy");
        for path in [real, cut] {
            for (view, json) in [
                (View::Summary, false),
                (View::Flows, true),
                (View::Handshakes, true),
                (View::Tcp { stream: None }, true),
            ] {
                let run = |staged: bool| {
                    let capture = reader::open(&path, None).expect("open");
                    let link = capture.link_type();
                    let mut session = Session::new(&view, json, false, link).expect("a view");
                    let mut out = Vec::new();
                    let warnings = if staged {
                        stages::read_in_stages(capture, &path, None, &mut session, &mut out)
                            .map(|staged| staged.warnings)
                    } else {
                        read_in_one_stage(capture, &mut session, &mut out)
                    }
                    .expect("read");
                    let frames = session.frames();
                    session.finish(&mut out).expect("finish");
                    (String::from_utf8(out).expect("text"), warnings, frames)
                };
                let (staged, one) = (run(true), run(false));
                assert!(staged.2 > 100, "{}: frames read", path.display());
                if path.ends_with("cut.pcap") {
                    assert_eq!(
                        staged.1.len(),
                        1,
                        "the cut file is reported: {:?}",
                        staged.1
                    );
                }
                assert_eq!(staged, one, "{} {view:?}", path.display());
            }
        }
    }

    const ISN_C: u32 = 100;
    const ISN_S: u32 = 900;

    /// (from client?, ms, flags, seq, ack, len)
    type Spec = (bool, i64, u16, u32, u32, u32);

    fn conversation() -> Vec<Spec> {
        let (s, a, f, p) = (
            tcp_flags::SYN,
            tcp_flags::ACK,
            tcp_flags::FIN,
            tcp_flags::PSH,
        );
        vec![
            (true, 0, s, ISN_C, 0, 0),
            (false, 1, s | a, ISN_S, ISN_C + 1, 0),
            (true, 2, a, ISN_C + 1, ISN_S + 1, 0),
            (true, 10, a | p, ISN_C + 1, ISN_S + 1, 5),
            (false, 12, a | p, ISN_S + 1, ISN_C + 6, 5),
            (true, 20, f | a, ISN_C + 6, ISN_S + 6, 0),
            (false, 21, f | a, ISN_S + 6, ISN_C + 7, 0),
            (true, 22, a, ISN_C + 7, ISN_S + 7, 0),
        ]
    }

    fn run(view: View, json: bool, explain: bool) -> String {
        let mut session = Session::new(&view, json, explain, LinkType::Ethernet).unwrap();
        let mut out = Vec::new();
        for (i, &(client, ms, flags, seq, ack, len)) in conversation().iter().enumerate() {
            let (src, dst) = if client { (1, 2) } else { (2, 1) };
            let (sport, dport) = if client {
                (40_000, 12_000)
            } else {
                (12_000, 40_000)
            };
            let options = TcpOptions {
                mss: (flags & tcp_flags::SYN != 0).then_some(65_495),
                sack_permitted: flags & tcp_flags::SYN != 0,
                ..TcpOptions::default()
            };
            let packet = Packet {
                ip: Some(IpInfo {
                    version: 4,
                    src: IpAddr::V4(Ipv4Addr::new(127, 0, 0, src)),
                    dst: IpAddr::V4(Ipv4Addr::new(127, 0, 0, dst)),
                    protocol: 6,
                    ttl: 64,
                    header_len: 20,
                    total_len: 40 + len,
                    ident: 0,
                    fragment: None,
                }),
                transport: Transport::Tcp(TcpSegment {
                    src_port: sport,
                    dst_port: dport,
                    seq,
                    ack,
                    flags,
                    header_len: 20,
                    window: 1000,
                    options,
                    payload_len: len,
                    payload: &[],
                    checksum: crate::capture::packet::Checksum::NotVerified,
                }),
                malformed: None,
            };
            let frame = Frame {
                number: i as u64 + 1,
                time_us: 1_000_000 + ms * 1000,
                data: &[],
                wire_len: 54 + len,
            };
            session.observe(&frame, &packet, &mut out).unwrap();
        }
        assert_eq!(session.frames(), 8);
        session.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json_lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn every_view_is_built_in() {
        for view in [
            View::Summary,
            View::Flows,
            View::Handshakes,
            View::Tcp { stream: None },
            View::Udp,
            View::Follow {
                stream: 0,
                hex: false,
            },
            View::Ladder { stream: 0 },
            View::Forum,
        ] {
            let session = Session::new(&view, false, false, LinkType::Ethernet);
            assert!(session.is_ok(), "{} refused", view.name());
        }
    }

    #[test]
    fn summary_counts_frames_and_flows() {
        let rows = json_lines(&run(View::Summary, true, false));
        assert_eq!(rows[0]["row"], "capture");
        assert_eq!(rows[0]["frames"], 8);
        assert_eq!(rows[0]["tcp_connections"], 1);
        assert_eq!(rows[0]["duration_s"], 0.022);
        let tcp = rows.iter().find(|r| r["protocol"] == "tcp").unwrap();
        assert_eq!(tcp["bytes"], 54 * 8 + 10);
        let table = run(View::Summary, false, true);
        assert!(table.contains("8 frames, 442 bytes"), "{table}");
        assert!(table.contains("Notes:"), "{table}");
    }

    #[test]
    fn flows_row_has_state_history_and_counts() {
        let rows = json_lines(&run(View::Flows, true, false));
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row["client"], "127.0.0.1:40000");
        assert_eq!(row["server"], "127.0.0.2:12000");
        assert_eq!(
            (row["packets_c2s"].as_u64(), row["packets_s2c"].as_u64()),
            (Some(5), Some(3))
        );
        assert_eq!(row["conn_state"], "SF");
        assert_eq!(row["history"], "ShADdFf");
        assert_eq!(row["retransmissions"], 0);
        let table = run(View::Flows, false, false);
        assert!(table.contains("ShADdFf") && table.contains("127.0.0.1:40000 → 127.0.0.2:12000"));
    }

    #[test]
    fn handshakes_show_isn_checks_and_teardown() {
        let rows = json_lines(&run(View::Handshakes, true, false));
        let h = &rows[0];
        assert_eq!(h["syn"]["seq_raw"], ISN_C);
        assert_eq!(h["syn"]["flags"], "0x002");
        assert_eq!(h["syn_ack"]["flags"], "0x012");
        assert_eq!(h["syn_ack"]["ack_raw"], ISN_C + 1);
        assert_eq!(h["syn_ack_acks_isn_plus_1"], true);
        assert_eq!(h["ack_acks_isn_plus_1"], true);
        assert_eq!(h["initial_rtt_ms"], 2.0);
        assert_eq!(h["syn"]["options"]["mss"], 65_495);
        assert_eq!(h["teardown"], "three-way");
        let table = run(View::Handshakes, false, true);
        assert!(table.contains("ack = ISN+1: ok"), "{table}");
        assert!(
            table.contains("100 (0)") && table.contains("901 (1)"),
            "{table}"
        );
        assert!(table.contains("ack = 100 + 1 = 101"), "{table}");
    }

    #[test]
    fn tcp_view_streams_rows_then_throughput() {
        let rows = json_lines(&run(View::Tcp { stream: None }, true, false));
        assert_eq!(rows.len(), 9, "8 segments and 1 throughput row");
        assert_eq!(rows[3]["seq"], 1);
        assert_eq!(rows[3]["len"], 5);
        assert_eq!(rows[3]["time_s"], 0.01);
        assert_eq!(rows[4]["acks_frame"], 4);
        assert_eq!(rows[4]["sample_rtt_ms"], 2.0);
        assert_eq!(rows[4]["estimated_rtt_ms"], 2.0);
        assert_eq!(rows[4]["dev_rtt_ms"], 1.0);
        assert_eq!(rows[8]["row"], "throughput");
        assert_eq!(rows[8]["payload_bytes_c2s"], 5);
        assert!(
            run(View::Tcp { stream: Some(1) }, true, false)
                .lines()
                .count()
                == 0
        );
        let table = run(View::Tcp { stream: Some(0) }, false, true);
        assert!(
            table.contains("Throughput") && table.contains("SampleRTT"),
            "{table}"
        );
    }
}
