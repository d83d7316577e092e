//! The UDP echo server, and the client's side of a UDP conversation.
//!
//! UDP keeps message boundaries: one `send` is one datagram, and one `recv` returns
//! exactly one datagram, never half of one and never two glued together. What UDP
//! does not promise is delivery: a datagram may be lost, duplicated or reordered, so
//! the client waits for each reply with a timeout, and must not mistake a late reply to
//! an earlier request for the answer to the current one.
//!
//! ```text
//! 0        2        4        6        8
//! +--------+--------+--------+--------+------------------------+
//! |src port|dst port| length |checksum| payload (length - 8 B) |
//! +--------+--------+--------+--------+------------------------+
//!           the UDP header, 8 bytes, written by the kernel
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::{make_upper, preview, EchoError, ServerOptions};
use crate::net::{self, describe};
use crate::output::Reporter;

/// A receive buffer one byte larger than the largest IPv4 UDP payload, so no datagram
/// is ever truncated by the buffer.
const RECEIVE_BUFFER: usize = net::MAX_UDP_PAYLOAD + 1;

/// Serves UDP echo on `socket` until `shutdown` resolves: every datagram goes straight
/// back to the address it came from. One socket serves every client; UDP has no
/// connections to accept.
///
/// # Errors
/// [`EchoError::Io`] when the socket's address cannot be read.
pub async fn serve_udp(
    socket: UdpSocket,
    options: ServerOptions,
    reporter: Reporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EchoError> {
    let local = socket.local_addr().map_err(EchoError::io(
        "reading the address of",
        SocketAddr::from(([0, 0, 0, 0], 0)),
    ))?;
    reporter.info(format!("UDP echo server listening on {local}"));
    tokio::select! {
        () = echo_loop(&socket, &options, &reporter) => Ok(()),
        () = shutdown => {
            reporter.info("shutting down");
            Ok(())
        }
    }
}

async fn echo_loop(socket: &UdpSocket, options: &ServerOptions, reporter: &Reporter) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    let mut datagrams = 0u64;
    loop {
        let (n, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // A receive error on one datagram (e.g. an ICMP error queued by an
                // earlier send) says nothing about the next: report it and go on.
                reporter.detail(format!("receive failed: {}", describe(&error)));
                continue;
            }
        };
        datagrams += 1;
        let data = &mut buffer[..n];
        if options.show_reads {
            reporter.result(format!(
                "{peer} datagram {datagrams}: {n} bytes {}",
                preview(data)
            ));
        } else if reporter.is_verbose() {
            // Checked first: formatting a line per datagram that nobody sees costs
            // measurable time at 100,000+ datagrams per second.
            reporter.detail(format!("datagram {datagrams} from {peer}: {n} bytes"));
        }
        if options.upper {
            make_upper(data);
        }
        if let Err(error) = socket.send_to(data, peer).await {
            reporter.info(format!("sending to {peer} failed: {}", describe(&error)));
        }
    }
}

/// What waiting for a UDP reply ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdpReply {
    /// The echo of the request arrived.
    Echo(Vec<u8>),
    /// Nothing matching arrived before the deadline. `unreachable` is true when the
    /// kernel reported an ICMP "port unreachable": nothing listens on the server port.
    TimedOut {
        /// Whether an ICMP port-unreachable error arrived meanwhile.
        unreachable: bool,
    },
}

/// The client's end of a UDP echo conversation: a socket connected to the server, so
/// the kernel only hands us datagrams from the server's address.
pub struct UdpConversation {
    socket: UdpSocket,
    peer: SocketAddr,
    buffer: Vec<u8>,
    stale: u64,
}

impl UdpConversation {
    /// Resolves `host` (preferring IPv4) and connects a UDP socket to it.
    ///
    /// # Errors
    /// [`EchoError::Net`] when the name does not resolve or no socket can be bound.
    pub async fn connect(host: &str, port: u16) -> Result<Self, EchoError> {
        let peer = net::resolve_udp(host, port).await?;
        let socket = net::connect_udp(peer).await?;
        Ok(UdpConversation {
            socket,
            peer,
            buffer: vec![0u8; RECEIVE_BUFFER],
            stale: 0,
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// How many datagrams arrived that were not the echo being waited for (late
    /// replies to requests that had already timed out).
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Sends one datagram. A send error caused by an earlier ICMP error is ignored:
    /// the datagram may still be sent, and the timeout decides.
    ///
    /// # Errors
    /// [`EchoError::Io`] for other send errors (e.g. a message too long).
    pub async fn send(&self, message: &[u8]) -> Result<(), EchoError> {
        match self.socket.send(message).await {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
            Err(cause) => Err(EchoError::io("sending to", self.peer)(cause)),
        }
    }

    /// Waits until `deadline` for the echo of `request`: a datagram equal to it, or to
    /// its upper-cased form (the server may run with `--upper`). Anything else is a
    /// stale reply and is skipped.
    ///
    /// # Errors
    /// [`EchoError::Io`] for receive errors other than ICMP port unreachable.
    pub async fn receive_echo(
        &mut self,
        request: &[u8],
        deadline: Instant,
    ) -> Result<UdpReply, EchoError> {
        let mut unreachable = false;
        loop {
            match self.receive_until(deadline).await {
                Received::Datagram(n) => {
                    let reply = &self.buffer[..n];
                    if reply.eq_ignore_ascii_case(request) {
                        return Ok(UdpReply::Echo(reply.to_vec()));
                    }
                    self.stale += 1;
                }
                Received::Unreachable => unreachable = true,
                Received::Deadline => return Ok(UdpReply::TimedOut { unreachable }),
                Received::Failed(cause) => {
                    return Err(EchoError::io("receiving from", self.peer)(cause))
                }
            }
        }
    }

    /// Waits until `deadline` for any datagram; `None` when none came in time.
    ///
    /// # Errors
    /// [`EchoError::Io`] for receive errors other than ICMP port unreachable.
    pub async fn receive_any(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, EchoError> {
        loop {
            match self.receive_until(deadline).await {
                Received::Datagram(n) => return Ok(Some(self.buffer[..n].to_vec())),
                Received::Unreachable => continue,
                Received::Deadline => return Ok(None),
                Received::Failed(cause) => {
                    return Err(EchoError::io("receiving from", self.peer)(cause))
                }
            }
        }
    }

    async fn receive_until(&mut self, deadline: Instant) -> Received {
        match tokio::time::timeout_at(deadline, self.socket.recv(&mut self.buffer)).await {
            Err(_elapsed) => Received::Deadline,
            Ok(Ok(n)) => Received::Datagram(n),
            // On a connected UDP socket Linux reports an ICMP port-unreachable for an
            // earlier datagram as ECONNREFUSED on the next receive.
            Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                Received::Unreachable
            }
            Ok(Err(error)) => Received::Failed(error),
        }
    }
}

enum Received {
    Datagram(usize),
    Unreachable,
    Deadline,
    Failed(io::Error),
}
