//! Lab 4, the views of `socklab analyze`: each turns the stream of dissected frames
//! into the rows one question needs (a table, or JSON Lines with `--json`).
//!
//! - [`udp`]: one row per UDP datagram, with request/reply pairing (the UDP lab).
//! - [`forum`]: the socklab forum's requests, replies, retransmissions and transfers.

pub mod forum;
pub mod udp;
