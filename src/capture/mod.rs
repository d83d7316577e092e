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
//! - [`tcp`]: TCP sequence analysis of one connection (Wireshark's marks, RTTs).
//! - [`flows`]: TCP connections and UDP conversations, Zeek's conn_state/history,
//!   handshakes, teardowns and the capture totals.
//! - [`render`]: the summary, flows, handshakes and tcp views as tables or JSON Lines.
//! - [`analyze`]: `socklab analyze`: streams a file through the analyzer into a view.
//! - [`views`]: what `socklab analyze` shows: one module per view.

pub mod analyze;
pub mod flows;
pub mod packet;
pub mod render;
pub mod tcp;
pub mod views;
