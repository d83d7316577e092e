//! Lab 1: echo servers and clients over TCP and UDP, the sticky-packet lesson and a
//! load generator.
//!
//! - [`tcp`]: the TCP server (a task per connection) and the client side of a TCP
//!   conversation, plain or with 4-byte length-prefixed frames.
//! - [`udp`]: the UDP server (one socket answers every datagram to its sender) and the
//!   client side of a UDP conversation with timeouts.
//! - [`client`]: what `socklab echo client` does with either: interactive lines, a
//!   ping-style `--count` run, or a `--burst`.
//! - [`bench`](mod@bench): `socklab echo bench`, a closed-loop ping-pong load generator.
//! - [`stats`]: round-trip statistics (ping's min/avg/max/mdev, percentiles).
//!
//! The servers work on bytes, not text: `--upper` upper-cases ASCII letters only, so a
//! reply always has exactly as many bytes as the request. (Unicode upper-casing can
//! change the length, `ß` becomes `SS`, and a multi-byte character may be split
//! between two TCP reads, so byte-level echo is the honest choice.)

pub mod bench;
pub mod client;
pub mod stats;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::net::{describe, NetError};

pub use bench::{bench, render_bench, BenchOptions, BenchReport};
pub use client::{run_client, ClientOptions, ClientSummary};
pub use tcp::serve_tcp;
pub use udp::serve_udp;

/// The largest frame the echo server accepts in `--framed` mode. A length prefix is a
/// promise made by the peer; we never allocate more than this on its word.
pub const MAX_FRAME: usize = 1 << 20;

/// Which transport protocol a server or client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A reliable, ordered byte stream over a connection.
    #[default]
    Tcp,
    /// Independent datagrams: each may be lost, duplicated or reordered.
    Udp,
}

impl Transport {
    /// `"tcp"` or `"udp"`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Options of `socklab echo server`.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// TCP or UDP.
    pub transport: Transport,
    /// Upper-case ASCII letters in every reply.
    pub upper: bool,
    /// Report the size of every read (TCP) or datagram (UDP).
    pub show_reads: bool,
    /// Sleep this long before each TCP read, so that messages pile up in the buffer.
    pub read_delay: Option<Duration>,
    /// Echo 4-byte length-prefixed frames instead of raw bytes (TCP).
    pub framed: bool,
}

/// Errors of the echo servers and clients.
#[derive(Debug, Error)]
pub enum EchoError {
    /// Resolving, binding or connecting failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A socket operation on an established conversation failed.
    #[error("{operation} {addr} failed: {}", describe(.cause))]
    Io {
        /// What we were doing ("reading from", "sending to").
        operation: &'static str,
        /// The peer or local address concerned.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
    /// The server closed a TCP connection before echoing everything.
    #[error("{addr} closed the connection before echoing everything")]
    Closed {
        /// The server.
        addr: SocketAddr,
    },
    /// A peer announced a frame larger than [`MAX_FRAME`].
    #[error("{addr} announced a frame of {len} bytes, more than the {MAX_FRAME}-byte limit")]
    FrameTooLarge {
        /// The peer.
        addr: SocketAddr,
        /// The announced length.
        len: usize,
    },
    /// Reading the user's input failed.
    #[error("cannot read standard input: {}", describe(.0))]
    Stdin(io::Error),
}

impl EchoError {
    /// A `map_err` adapter: `stream.read(..).await.map_err(EchoError::io("reading from", peer))`.
    pub fn io(operation: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> EchoError {
        move |cause| EchoError::Io {
            operation,
            addr,
            cause,
        }
    }
}

/// Upper-cases ASCII letters in place (what `--upper` does to a reply).
pub fn make_upper(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

/// A short, printable preview of a payload for log lines: at most `PREVIEW_CHARS`
/// characters, control characters escaped, quoted.
pub fn preview(bytes: &[u8]) -> String {
    const PREVIEW_CHARS: usize = 60;
    let text = String::from_utf8_lossy(bytes);
    let mut shown: String = text.chars().take(PREVIEW_CHARS).collect::<String>();
    shown = shown.escape_debug().to_string();
    if text.chars().count() > PREVIEW_CHARS {
        format!("\"{shown}\"...")
    } else {
        format!("\"{shown}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_keeps_length_and_non_ascii() {
        let mut bytes = "hello ß 1".as_bytes().to_vec();
        let before = bytes.len();
        make_upper(&mut bytes);
        assert_eq!(bytes.len(), before);
        assert_eq!(String::from_utf8(bytes).unwrap(), "HELLO ß 1");
    }

    #[test]
    fn preview_escapes_and_truncates() {
        assert_eq!(preview(b"a\nb"), "\"a\\nb\"");
        let long = vec![b'x'; 100];
        let shown = preview(&long);
        assert!(shown.ends_with("\"..."));
        assert_eq!(shown.matches('x').count(), 60);
        assert_eq!(preview(&[0xff, b'a']), "\"\u{fffd}a\"");
    }
}
