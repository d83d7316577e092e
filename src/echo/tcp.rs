//! The TCP echo server, and the client's side of a TCP conversation.
//!
//! TCP delivers a *byte stream*: the receiver's reads need not line up with the sender's
//! writes. Ten quick writes of 9 bytes may arrive as one read of 90 bytes (they
//! "stick together"), and one large write may arrive in pieces. `--show-reads` makes
//! that visible; `--framed` fixes it by sending each message with its length first:
//!
//! ```text
//! 0          4
//! +----------+--------------------------+
//! |  length  |  payload (length bytes)  |
//! | u32, big |                          |
//! |  endian  |                          |
//! +----------+--------------------------+
//! ```
//!
//! The reader then reads exactly 4 bytes, learns how many follow, and reads exactly
//! that many, whatever sizes the individual reads happened to have.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{make_upper, preview, EchoError, ServerOptions, MAX_FRAME};
use crate::net::{self, describe};
use crate::output::Reporter;

/// Size of the frame's length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Bytes read from a connection at once: a socket read returns what is buffered, up to
/// this much.
const READ_BUFFER: usize = 16 * 1024;

/// After a failed `accept` (e.g. too many open files) wait this long before trying
/// again, instead of spinning on an error that will not clear at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves TCP echo on `listener` until `shutdown` resolves. Each connection gets its
/// own task, so one slow client never holds up the others.
///
/// Takes a bound listener, not an address, so tests can bind port 0 first.
///
/// # Errors
/// [`EchoError::Io`] when the listener's address cannot be read.
pub async fn serve_tcp(
    listener: TcpListener,
    options: ServerOptions,
    reporter: Reporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), EchoError> {
    let local = listener.local_addr().map_err(EchoError::io(
        "reading the address of",
        SocketAddr::from(([0, 0, 0, 0], 0)),
    ))?;
    reporter.info(format!("TCP echo server listening on {local}"));
    tokio::select! {
        () = accept_loop(listener, local, Arc::new(options), reporter.clone()) => Ok(()),
        () = shutdown => {
            reporter.info("shutting down");
            Ok(())
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    options: Arc<ServerOptions>,
    reporter: Reporter,
) {
    let connections = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let id = connections.fetch_add(1, Ordering::Relaxed) + 1;
                reporter.detail(format!("connection {id} from {peer}"));
                let options = Arc::clone(&options);
                let reporter = reporter.clone();
                tokio::spawn(async move {
                    match serve_connection(stream, peer, &options, &reporter).await {
                        Ok(echoed) => reporter.detail(format!(
                            "connection {id} from {peer} closed after echoing {echoed} bytes"
                        )),
                        Err(error) => reporter.info(format!("connection {id}: {error}")),
                    }
                });
            }
            Err(error) => {
                reporter.info(format!("accept on {local} failed: {}", describe(&error)));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Echoes one connection until the client closes it; returns the bytes echoed.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    options: &ServerOptions,
    reporter: &Reporter,
) -> Result<u64, EchoError> {
    // Replies are written whole, so Nagle's algorithm would only add delay.
    stream
        .set_nodelay(true)
        .map_err(EchoError::io("configuring the connection from", peer))?;
    if options.framed {
        echo_frames(&mut stream, peer, options, reporter).await
    } else {
        echo_bytes(&mut stream, peer, options, reporter).await
    }
}

/// Raw mode: whatever one read returns is written straight back.
async fn echo_bytes(
    stream: &mut TcpStream,
    peer: SocketAddr,
    options: &ServerOptions,
    reporter: &Reporter,
) -> Result<u64, EchoError> {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut reads = 0u64;
    let mut echoed = 0u64;
    loop {
        if let Some(delay) = options.read_delay {
            tokio::time::sleep(delay).await;
        }
        let n = stream
            .read(&mut buffer)
            .await
            .map_err(EchoError::io("reading from", peer))?;
        if n == 0 {
            return Ok(echoed);
        }
        reads += 1;
        let data = &mut buffer[..n];
        if options.show_reads {
            reporter.result(format!("{peer} read {reads}: {n} bytes {}", preview(data)));
        }
        if options.upper {
            make_upper(data);
        }
        stream
            .write_all(data)
            .await
            .map_err(EchoError::io("writing to", peer))?;
        echoed += n as u64;
    }
}

/// Framed mode: read one whole frame, echo it as one frame.
async fn echo_frames(
    stream: &mut TcpStream,
    peer: SocketAddr,
    options: &ServerOptions,
    reporter: &Reporter,
) -> Result<u64, EchoError> {
    let mut frames = 0u64;
    let mut echoed = 0u64;
    loop {
        if let Some(delay) = options.read_delay {
            tokio::time::sleep(delay).await;
        }
        let Some(mut payload) = read_frame(stream, peer).await? else {
            return Ok(echoed);
        };
        frames += 1;
        if options.show_reads {
            let len = payload.len();
            reporter.result(format!(
                "{peer} frame {frames}: {len} bytes {}",
                preview(&payload)
            ));
        }
        if options.upper {
            make_upper(&mut payload);
        }
        stream
            .write_all(&encode_frame(&payload))
            .await
            .map_err(EchoError::io("writing to", peer))?;
        echoed += payload.len() as u64;
    }
}

/// Encodes `payload` as one frame: the 4-byte big-endian length, then the bytes. One
/// buffer, so the frame leaves in one write.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(LENGTH_PREFIX + payload.len());
    // A payload is at most MAX_FRAME (1 MiB) long, so its length fits in a u32.
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Reads one frame. `Ok(None)` is a clean end of stream *between* frames; an end of
/// stream inside a frame is an error, as is a length above [`MAX_FRAME`].
///
/// # Errors
/// [`EchoError::Io`], [`EchoError::Closed`] or [`EchoError::FrameTooLarge`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    peer: SocketAddr,
) -> Result<Option<Vec<u8>>, EchoError> {
    let mut prefix = [0u8; LENGTH_PREFIX];
    // The first byte tells a clean close (0 bytes) from a frame in progress.
    let first = reader
        .read(&mut prefix[..1])
        .await
        .map_err(EchoError::io("reading from", peer))?;
    if first == 0 {
        return Ok(None);
    }
    read_exact(reader, &mut prefix[1..], peer).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME {
        return Err(EchoError::FrameTooLarge { addr: peer, len });
    }
    let mut payload = vec![0u8; len];
    read_exact(reader, &mut payload, peer).await?;
    Ok(Some(payload))
}

/// `read_exact` with our errors: an early end of stream is [`EchoError::Closed`].
async fn read_exact<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut [u8],
    peer: SocketAddr,
) -> Result<(), EchoError> {
    match reader.read_exact(buffer).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(EchoError::Closed { addr: peer })
        }
        Err(cause) => Err(EchoError::io("reading from", peer)(cause)),
    }
}

/// The client's end of a TCP echo conversation.
pub struct TcpConversation {
    stream: TcpStream,
    peer: SocketAddr,
    framed: bool,
}

impl TcpConversation {
    /// Connects to `host:port` (Nagle off: each message leaves at once).
    ///
    /// # Errors
    /// [`EchoError::Net`] when the name does not resolve or nobody accepts.
    pub async fn connect(host: &str, port: u16, framed: bool) -> Result<Self, EchoError> {
        let stream = net::connect_tcp_host(host, port).await?;
        let peer = stream.peer_addr().map_err(EchoError::io(
            "reading the address of",
            SocketAddr::from(([0, 0, 0, 0], port)),
        ))?;
        Ok(TcpConversation {
            stream,
            peer,
            framed,
        })
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message: as it is, or as one frame in framed mode.
    ///
    /// # Errors
    /// [`EchoError::Io`] when the write fails (e.g. the server reset the connection).
    pub async fn send(&mut self, message: &[u8]) -> Result<(), EchoError> {
        let result = if self.framed {
            self.stream.write_all(&encode_frame(message)).await
        } else {
            self.stream.write_all(message).await
        };
        result.map_err(EchoError::io("writing to", self.peer))
    }

    /// Receives the echo of a message of `len` bytes: exactly `len` bytes in raw mode
    /// (however many reads that takes), one frame in framed mode.
    ///
    /// # Errors
    /// [`EchoError::Closed`] when the server closes first, [`EchoError::Io`].
    pub async fn receive_echo(&mut self, len: usize) -> Result<Vec<u8>, EchoError> {
        if self.framed {
            read_frame(&mut self.stream, self.peer)
                .await?
                .ok_or(EchoError::Closed { addr: self.peer })
        } else {
            let mut reply = vec![0u8; len];
            read_exact(&mut self.stream, &mut reply, self.peer).await?;
            Ok(reply)
        }
    }

    /// One read of whatever has arrived (raw mode) or one frame (framed mode);
    /// `None` at end of stream. Used by the burst lesson to show the read sizes.
    ///
    /// # Errors
    /// [`EchoError::Io`], or a framing error.
    pub async fn receive_some(&mut self) -> Result<Option<Vec<u8>>, EchoError> {
        if self.framed {
            return read_frame(&mut self.stream, self.peer).await;
        }
        let mut buffer = vec![0u8; READ_BUFFER];
        let n = self
            .stream
            .read(&mut buffer)
            .await
            .map_err(EchoError::io("reading from", self.peer))?;
        if n == 0 {
            return Ok(None);
        }
        buffer.truncate(n);
        Ok(Some(buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[test]
    fn frame_is_length_then_payload() {
        assert_eq!(encode_frame(b"hi"), vec![0, 0, 0, 2, b'h', b'i']);
        assert_eq!(encode_frame(b""), vec![0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn frames_split_a_stream_back_into_messages() {
        let mut stream: Vec<u8> = Vec::new();
        for message in [&b"one"[..], b"", b"three"] {
            stream.extend(encode_frame(message));
        }
        let mut reader = &stream[..];
        assert_eq!(
            read_frame(&mut reader, peer()).await.unwrap(),
            Some(b"one".to_vec())
        );
        assert_eq!(
            read_frame(&mut reader, peer()).await.unwrap(),
            Some(Vec::new())
        );
        assert_eq!(
            read_frame(&mut reader, peer()).await.unwrap(),
            Some(b"three".to_vec())
        );
        assert_eq!(read_frame(&mut reader, peer()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_frames_are_errors_not_panics() {
        for cut in [&[0u8, 0][..], &[0, 0, 0, 5, b'a']] {
            let mut reader = cut;
            let err = read_frame(&mut reader, peer()).await.unwrap_err();
            assert!(matches!(err, EchoError::Closed { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn oversized_length_is_refused_before_allocating() {
        let mut reader = &[0xff_u8, 0xff, 0xff, 0xff][..];
        let err = read_frame(&mut reader, peer()).await.unwrap_err();
        assert!(
            matches!(
                err,
                EchoError::FrameTooLarge {
                    len: 0xffff_ffff,
                    ..
                }
            ),
            "{err}"
        );
    }
}
