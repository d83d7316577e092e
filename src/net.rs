//! Shared socket helpers: name resolution, binding and connecting with the address in
//! every error, timeouts, and turning OS errors into the short lower-case phrases a
//! student can read (`address already in use`, not `Address already in use (os error 98)`).
//!
//! Every subcommand goes through these helpers, so "cannot bind 127.0.0.1:9000: address
//! already in use" reads the same whether the echo server or the file server hit it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// The largest UDP payload that fits in one IPv4 datagram: 65,535 minus the 20-byte IPv4
/// header and the 8-byte UDP header.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// How long a TCP connect may take before we give up (a SYN to a silent host would
/// otherwise retry for about two minutes, RFC 6298 backoff on the SYN).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors from resolving, binding and connecting. Each names the address it concerns.
#[derive(Debug, Error)]
pub enum NetError {
    /// The host name could not be turned into an address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name as the user typed it.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// A local address could not be bound (port in use, address not on this machine...).
    #[error("cannot bind {addr}: {}", describe(.cause))]
    Bind {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
    /// A TCP connection could not be established.
    #[error("cannot connect to {addr}: {}", describe(.cause))]
    Connect {
        /// The peer we tried.
        addr: SocketAddr,
        /// The OS error (connection refused, timed out, ...).
        cause: io::Error,
    },
    /// Reading from or writing to an established socket failed.
    #[error("connection with {addr} failed: {}", describe(.cause))]
    Io {
        /// The peer.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
}

/// Renders an OS error the way socklab prints it: the message without the
/// `(os error N)` suffix, starting lower-case, e.g. `connection refused`.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.find(" (os error") {
        Some(cut) => &text[..cut],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Resolves `host` and `port` to every address the resolver returns, in its order.
///
/// # Errors
/// [`NetError::Resolve`] when the name does not resolve or resolves to nothing.
pub async fn resolve_all(host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
    // A bracketed IPv6 literal ("[::1]") is accepted as people write it in URLs.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let found = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| NetError::Resolve {
            host: host.to_string(),
            reason: describe(&e),
        })?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(NetError::Resolve {
            host: host.to_string(),
            reason: "no addresses found".to_string(),
        });
    }
    Ok(addrs)
}

/// Resolves `host` to one address for a UDP peer.
///
/// UDP has no handshake to tell us which of several addresses answers, so we prefer
/// IPv4 (a name like `localhost` often lists `::1` first, while lab servers usually
/// bind `127.0.0.1`).
///
/// # Errors
/// [`NetError::Resolve`] as for [`resolve_all`].
pub async fn resolve_udp(host: &str, port: u16) -> Result<SocketAddr, NetError> {
    let addrs = resolve_all(host, port).await?;
    let chosen = addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0]);
    Ok(*chosen)
}

/// Binds a TCP listener on `addr`.
///
/// # Errors
/// [`NetError::Bind`] naming `addr`.
pub async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, NetError> {
    TcpListener::bind(addr)
        .await
        .map_err(|cause| NetError::Bind { addr, cause })
}

/// Binds a UDP socket on `addr`.
///
/// # Errors
/// [`NetError::Bind`] naming `addr`.
pub async fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, NetError> {
    UdpSocket::bind(addr)
        .await
        .map_err(|cause| NetError::Bind { addr, cause })
}

/// Binds a UDP socket on the wildcard address of `peer`'s family and connects it to
/// `peer`, so the kernel drops datagrams from anyone else and reports ICMP
/// "port unreachable" to us as a receive error.
///
/// # Errors
/// [`NetError::Bind`] or [`NetError::Connect`].
pub async fn connect_udp(peer: SocketAddr) -> Result<UdpSocket, NetError> {
    let local = wildcard_of(peer);
    let socket = bind_udp(local).await?;
    socket
        .connect(peer)
        .await
        .map_err(|cause| NetError::Connect { addr: peer, cause })?;
    Ok(socket)
}

/// [`connect_udp`] for a plain (blocking) thread: the same socket, as a
/// `std::net::UdpSocket` in blocking mode.
///
/// # Errors
/// [`NetError::Bind`] or [`NetError::Connect`].
pub fn connect_udp_blocking(peer: SocketAddr) -> Result<std::net::UdpSocket, NetError> {
    let local = wildcard_of(peer);
    let socket =
        std::net::UdpSocket::bind(local).map_err(|cause| NetError::Bind { addr: local, cause })?;
    socket
        .connect(peer)
        .map_err(|cause| NetError::Connect { addr: peer, cause })?;
    Ok(socket)
}

/// The wildcard address (any interface, any port) of `peer`'s address family.
fn wildcard_of(peer: SocketAddr) -> SocketAddr {
    if peer.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

/// Connects to the first of `addrs` that accepts, within [`CONNECT_TIMEOUT`] each, and
/// turns Nagle's algorithm off (every program here is interactive or measures latency).
///
/// # Errors
/// [`NetError::Connect`] for the last address tried.
pub async fn connect_tcp(addrs: &[SocketAddr]) -> Result<TcpStream, NetError> {
    let mut last = None;
    for &addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                stream
                    .set_nodelay(true)
                    .map_err(|cause| NetError::Io { addr, cause })?;
                return Ok(stream);
            }
            Ok(Err(cause)) => last = Some(NetError::Connect { addr, cause }),
            Err(_) => {
                last = Some(NetError::Connect {
                    addr,
                    cause: io::Error::new(io::ErrorKind::TimedOut, "timed out"),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| NetError::Resolve {
        host: "(none)".to_string(),
        reason: "no addresses to connect to".to_string(),
    }))
}

/// Resolves `host` and connects to it over TCP.
///
/// # Errors
/// [`NetError::Resolve`] or [`NetError::Connect`].
pub async fn connect_tcp_host(host: &str, port: u16) -> Result<TcpStream, NetError> {
    let addrs = resolve_all(host, port).await?;
    connect_tcp(&addrs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_strips_os_error_suffix_and_capital() {
        let e = io::Error::from_raw_os_error(98);
        assert_eq!(describe(&e), "address already in use");
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(describe(&e), "connection refused");
    }

    #[tokio::test]
    async fn bind_error_names_the_address() {
        let first = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind_tcp(addr).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot bind {addr}: address already in use")
        );
    }

    #[tokio::test]
    async fn unresolvable_host_is_a_resolve_error() {
        let err = resolve_all("no-such-host.invalid", 80).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot resolve no-such-host.invalid: "),
            "{err}"
        );
    }
}
