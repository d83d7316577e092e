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
//! - [`reader`]: reads a pcap or pcapng file through libpcap, one frame at a time.
//! - [`checksum`]: the Internet checksum (RFC 1071) of TCP, UDP and IPv4.
//! - [`dissect`]: turns a frame's bytes into a [`packet::Packet`]: link layer, IPv4/IPv6,
//!   TCP and UDP (options, checksums), with a "malformed" reason instead of a crash.
//! - [`live`]: `socklab capture`: capture on an interface, print one tcpdump-like line
//!   per packet or write a pcap file.
//! - [`views`]: what `socklab analyze` shows: one module per view.
//! - [`synth`]: a seeded generator of realistic captures, for exercises and benchmarks.
//!
//! Every capture module reports failures as a [`CaptureError`], which names the file,
//! filter or interface concerned.

pub mod analyze;
pub(crate) mod checksum;
pub mod dissect;
pub mod flows;
pub mod live;
pub mod packet;
pub mod reader;
pub mod render;
pub mod stages;
pub mod synth;
pub mod tcp;
pub mod views;

use std::path::PathBuf;

/// What can go wrong while reading a capture file or capturing live. Each variant
/// carries the path, filter or interface it concerns, so the one-line message names it.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The file could not be opened as a capture (missing, unreadable, not a pcap or
    /// pcapng file).
    #[error("cannot open {}: {message}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, as the OS or libpcap says it.
        message: String,
    },
    /// The BPF filter did not compile.
    #[error("bad filter '{filter}': {message}")]
    Filter {
        /// The filter as typed.
        filter: String,
        /// libpcap's complaint.
        message: String,
    },
    /// The file ends in the middle of a frame (a capture that was cut off, a partial
    /// download). The frames before it were delivered.
    #[error("{} is truncated: it ends inside the frame after frame {after_frame}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The number of the last complete frame (0: none).
        after_frame: u64,
    },
    /// Reading the file failed for another reason.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// libpcap's or the OS's reason.
        message: String,
    },
    /// Live capture on an interface failed (no such interface, it went down...).
    #[error("cannot capture on {interface}: {message}")]
    Live {
        /// The interface name as given.
        interface: String,
        /// Why.
        message: String,
    },
    /// Live capture needs privileges this process does not have.
    #[error(
        "cannot capture on {interface}: permission denied (run as root or give the binary \
         CAP_NET_RAW: sudo setcap cap_net_raw,cap_net_admin=eip $(which socklab))"
    )]
    Permission {
        /// The interface name as given.
        interface: String,
    },
    /// Writing a capture file failed.
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Another I/O operation failed; `what` says which ("cannot start the capture
    /// thread", ...).
    #[error("{what}: {}", crate::net::describe(source))]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The request cannot be served by this build (a view not wired in yet).
    #[error("{what}")]
    Unsupported {
        /// What is not available.
        what: String,
    },
    /// `follow` or `ladder` asked for a TCP stream the capture does not have.
    #[error("{} has no TCP stream {stream} ({})", path.display(), match streams {
        0 => "it has no TCP connection".to_string(),
        1 => "its only stream is 0".to_string(),
        n => format!("its streams are 0 to {}", n - 1),
    })]
    NoStream {
        /// The capture file.
        path: PathBuf,
        /// The stream asked for.
        stream: u64,
        /// How many TCP streams the capture has.
        streams: u64,
    },
}

/// libpcap's message for `error`, without `prefix` (libpcap often starts with the file
/// or device name, which our errors name already) and with a lower-case first letter,
/// as socklab's one-line errors are written.
pub(crate) fn pcap_text(error: &pcap::Error, prefix: &str) -> String {
    let text = match error {
        pcap::Error::PcapError(message) => message.clone(),
        other => other.to_string(),
    };
    let text = if prefix.is_empty() {
        &text
    } else {
        text.strip_prefix(prefix).unwrap_or(&text)
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "unknown libpcap error".to_string(),
    }
}
