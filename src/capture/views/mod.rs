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

/// A hand-made TCP connection for the views' tests: segments go through the real
/// [`super::flows::Analyzer`], so each view sees what it sees in a capture.
#[cfg(test)]
pub(crate) mod hand_made {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::capture::flows::{Analyzer, Observation};
    use crate::capture::packet::{Frame, IpInfo, LinkType, Packet, TcpSegment, Transport};

    /// The client's port; the client is 127.0.0.1, the server 127.0.0.2.
    pub const CLIENT_PORT: u16 = 40_000;
    /// The server's port.
    pub const SERVER_PORT: u16 = 12_000;
    /// The client's initial sequence number.
    pub const CLIENT_ISN: u32 = 1_000;
    /// The server's initial sequence number.
    pub const SERVER_ISN: u32 = 5_000;

    /// One frame's worth, owned so the test can hand out borrows.
    pub struct Made {
        pub frame: Frame<'static>,
        pub payload: Vec<u8>,
        pub from_client: bool,
        pub flags: u16,
        pub seq: u32,
        pub ack: u32,
    }

    impl Made {
        /// The dissected packet, borrowing the payload.
        pub fn packet(&self) -> Packet<'_> {
            let (src, dst, sport, dport) = if self.from_client {
                (1, 2, CLIENT_PORT, SERVER_PORT)
            } else {
                (2, 1, SERVER_PORT, CLIENT_PORT)
            };
            Packet {
                ip: Some(IpInfo {
                    version: 4,
                    src: IpAddr::V4(Ipv4Addr::new(127, 0, 0, src)),
                    dst: IpAddr::V4(Ipv4Addr::new(127, 0, 0, dst)),
                    protocol: 6,
                    ttl: 64,
                    header_len: 20,
                    total_len: 40 + self.payload.len() as u32,
                    ident: 0,
                    fragment: None,
                }),
                transport: Transport::Tcp(TcpSegment {
                    src_port: sport,
                    dst_port: dport,
                    seq: self.seq,
                    ack: self.ack,
                    flags: self.flags,
                    header_len: 20,
                    window: 512,
                    payload_len: self.payload.len() as u32,
                    payload: &self.payload,
                    ..TcpSegment::default()
                }),
                malformed: None,
            }
        }
    }

    /// Frames numbered from 1, one millisecond apart, through an analyzer.
    pub struct Connection {
        pub analyzer: Analyzer,
        number: u64,
    }

    impl Connection {
        pub fn new() -> Connection {
            Connection {
                analyzer: Analyzer::new(LinkType::Ethernet),
                number: 0,
            }
        }

        /// Analyses one segment and hands back the frame and the analyzer's verdict.
        pub fn segment(
            &mut self,
            from_client: bool,
            flags: u16,
            seq: u32,
            ack: u32,
            payload: &[u8],
        ) -> (Made, Observation) {
            self.number += 1;
            let made = Made {
                frame: Frame {
                    number: self.number,
                    time_us: 1_700_000_000_000_000 + self.number as i64 * 1_000,
                    data: &[],
                    wire_len: 54 + payload.len() as u32,
                },
                payload: payload.to_vec(),
                from_client,
                flags,
                seq,
                ack,
            };
            let observation = self.analyzer.observe(&made.frame, &made.packet());
            (made, observation)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hand_made::{Connection, CLIENT_ISN, SERVER_ISN};
    use crate::capture::analyze::{Session, View};
    use crate::capture::packet::tcp_flags::{ACK, PSH, SYN};
    use crate::capture::packet::{Frame, LinkType, Packet};

    /// Runs a short exchange through a [`Session`] showing `view`; returns its output.
    fn run(view: View, json: bool) -> String {
        let mut session =
            Session::new(&view, json, false, LinkType::Ethernet).expect("every view is built in");
        let mut connection = Connection::new();
        let mut out = Vec::new();
        let segments: [(bool, u16, u32, u32, &[u8]); 4] = [
            (true, SYN, CLIENT_ISN, 0, b""),
            (false, SYN | ACK, SERVER_ISN, CLIENT_ISN + 1, b""),
            (true, PSH | ACK, CLIENT_ISN + 1, SERVER_ISN + 1, b"ping\n"),
            (false, PSH | ACK, SERVER_ISN + 1, CLIENT_ISN + 6, b"pong\n"),
        ];
        for (from_client, flags, seq, ack, payload) in segments {
            let (made, _) = connection.segment(from_client, flags, seq, ack, payload);
            session
                .observe(&made.frame, &made.packet(), &mut out)
                .expect("write to a Vec");
        }
        // A frame that is not IP at all reaches the views too, and must not upset them.
        let other = Frame {
            number: 5,
            time_us: 1_700_000_000_010_000,
            data: &[],
            wire_len: 0,
        };
        session
            .observe(&other, &Packet::default(), &mut out)
            .expect("write to a Vec");
        session.finish(&mut out).expect("write to a Vec");
        String::from_utf8(out).expect("views write UTF-8")
    }

    #[test]
    fn the_session_runs_follow_and_ladder() {
        let follow = run(
            View::Follow {
                stream: 0,
                hex: false,
            },
            false,
        );
        assert!(follow.ends_with("> ping\n< pong\n"), "{follow}");
        let hex = run(
            View::Follow {
                stream: 0,
                hex: true,
            },
            true,
        );
        assert_eq!(hex.lines().count(), 2);
        assert!(hex.contains(r#""hex":"70696e670a""#), "{hex}");

        let ladder = run(View::Ladder { stream: 0 }, false);
        let arrows: Vec<&str> = ladder.lines().filter(|l| l.contains('|')).collect();
        assert_eq!(arrows.len(), 4, "{ladder}");
        assert!(arrows[0].contains("─ SYN seq=0 len=0 ─"));
        assert!(ladder.ends_with("4 segments.\n"));
    }

    #[test]
    fn the_session_runs_udp_and_forum() {
        assert_eq!(run(View::Udp, false), "No UDP datagrams in this capture.\n");
        assert_eq!(run(View::Udp, true), "");
        let forum = run(View::Forum, false);
        assert!(
            forum.starts_with("No forum requests in this capture."),
            "{forum}"
        );
    }
}
