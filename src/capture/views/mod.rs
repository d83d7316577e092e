//! Lab 4, the views of `socklab analyze`: each turns the stream of dissected frames
//! into the rows one question needs (a table, or JSON Lines with `--json`).
//!
//! - [`udp`]: one row per UDP datagram, with request/reply pairing (the UDP lab).
//! - [`forum`]: the socklab forum's requests, replies, retransmissions and transfers.
//! - [`follow`]: the reassembled bytes of one TCP connection, per direction.
//! - [`ladder`]: a sequence diagram of one TCP connection.
//!
//! [`FrameView`] holds whichever of them a session runs: unlike the summary and flow
//! views, which render the analyzer's report at the end, these see every frame.

pub mod follow;
pub mod forum;
pub mod ladder;
pub mod udp;

use std::io::{self, Write};

use super::flows::Observation;
use super::packet::{Frame, Packet};

/// One of the views that are fed every frame (with the analyzer's verdict on it).
#[derive(Debug)]
pub enum FrameView {
    /// `udp`.
    Udp(udp::UdpView),
    /// `forum`.
    Forum(forum::ForumView),
    /// `follow STREAM`.
    Follow(follow::FollowView),
    /// `ladder STREAM` (writes its lines while the capture streams).
    Ladder(ladder::LadderView),
}

impl FrameView {
    /// Takes one frame; the ladder may write its line to `out`.
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
        match self {
            FrameView::Udp(view) => view.observe(frame, packet),
            FrameView::Forum(view) => view.observe(frame, packet),
            FrameView::Follow(view) => view.observe(frame, packet, observation),
            FrameView::Ladder(view) => return view.observe(frame, packet, observation, out),
        }
        Ok(())
    }

    /// Ends the view and writes it: a table (with notes when `explain`), a text, or
    /// JSON Lines when `json`.
    ///
    /// # Errors
    /// Whatever writing to `out` returns.
    pub fn finish(self, out: &mut dyn Write, json: bool, explain: bool) -> io::Result<()> {
        match (self, json) {
            (FrameView::Udp(view), false) => view.write_table(out, explain),
            (FrameView::Udp(view), true) => view.write_json(out),
            (FrameView::Forum(view), false) => view.write_table(out, explain),
            (FrameView::Forum(view), true) => view.write_json(out),
            (FrameView::Follow(view), json) => {
                let hex = view.hex();
                let stream = view.finish();
                if json {
                    stream.write_json(out, hex)
                } else {
                    stream.write_text(out, hex)
                }
            }
            (FrameView::Ladder(view), _) => view.finish(out),
        }
    }
}
