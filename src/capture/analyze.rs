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
use super::render;
use super::tcp::SegmentInfo;
use super::views::{follow, forum, ladder, udp, FrameView};
use crate::output::table;

/// The `tcp` table keeps at most this many rows; beyond, it says how many it left out
/// (use `--json`, which streams, or pick a STREAM).
pub const MAX_TABLE_ROWS: usize = 200_000;

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
            (View::Flows, true) => write_all_json(out, &render::flows_json(&report))?,
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
