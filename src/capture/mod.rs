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
//! - [`synth`]: a seeded generator of realistic captures, for exercises and benchmarks.

use std::path::PathBuf;

pub mod packet;
pub mod synth;

/// Errors of the capture subsystem. Each names the file concerned and already includes
/// its cause, so it prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A capture file could not be created or written.
    #[error("cannot write {}: {message}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong (the OS error, described).
        message: String,
    },
}
