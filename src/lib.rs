//! socklab: a socket-lab toolkit and packet-inspection teaching kit.
//!
//! The binary (`src/main.rs`, `src/cli.rs`) parses the command line and calls into this
//! library, which does the real work and never parses arguments itself. The crate map:
//!
//! - [`net`]: shared socket helpers: resolve, bind and connect with the address in every
//!   error, human-readable OS errors, duration parsing.
//! - [`units`]: parsing durations (`250ms`) and sizes (`10MB`) typed by people.
//! - [`output`]: where long-running commands report events, colour and table helpers.
//! - [`framing`]: length-prefixed frames (4-byte length + JSON header + body), shared by
//!   `file` and, later, the forum's TCP transfers.
//! - [`echo`]: lab 1: TCP and UDP echo servers and clients, the sticky-packet lesson and
//!   the `echo bench` load generator.
//! - [`file`](mod@file): upload and download of files over TCP with the [`framing`] format.
//! - [`forum`]: lab 3: the discussion-forum server and client (UDP commands with
//!   retransmission, TCP transfers).
//! - [`proxy`]: the seeded impairing proxy (loss, delay, reordering, a slow link) for UDP,
//!   relaying TCP on the same port.
//! - [`capture`]: lab 4: live capture and the capture analyzer (pcap files, TCP and UDP
//!   analysis, views as tables or JSON).
//! - [`demo`]: the built-in demo the README's first command runs.

pub mod capture;
pub mod demo;
pub mod echo;
pub mod file;
pub mod forum;
pub mod framing;
pub mod net;
pub mod output;
pub mod proxy;
pub mod units;
