//! Lab 4: capture packets and analyze captures, the Wireshark lab done in a terminal.
//!
//! The path of a frame through the analyzer:
//!
//! ```text
//!   pcap/pcapng file ──reader──> Frame ──dissect──> Packet ──flows──> per-connection state
//!   (or an interface, live)      bytes               layers            │
//!                                                                      └─ views (tables, --json)
//! ```
//!
//! - [`packet`]: the plain values a dissected frame becomes.
//! - [`views`]: what `socklab analyze` shows: one module per view.

pub mod packet;
pub mod views;
