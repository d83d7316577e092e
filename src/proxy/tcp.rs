//! The proxy's TCP relay (lab 2): connections to the listen port are relayed to the
//! upstream host at the same port number (the forum uses one port number for its UDP
//! and TCP sides), optionally delayed (`--tcp-delay`) and paced (`--tcp-rate`).
//!
//! TCP already repairs loss, duplication and reordering, so the proxy does not try to
//! impair single segments: it can only make the byte stream late and slow, which is
//! what a long or thin link looks like to an application.
//!
//! ```text
//!  client ──► read ──► [delay line: chunks stamped with their arrival] ──► write ──► upstream
//!  client ◄── write ◄── [delay line] ◄── read ◄──────────────────────────────────── upstream
//! ```
//!
//! Each direction is pumped on its own, so one side finishing (a half-close: the client
//! sends its request and shuts down its write side) is passed on as a FIN while the
//! other direction goes on until the upstream finishes too. An error on either side
//! (a reset) ends the whole connection.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::stats::{add, Counters};
use crate::net::{self, describe};
use crate::output::Reporter;

/// Bytes read at once when the stream is relayed as fast as it comes.
const CHUNK: usize = 64 * 1024;

/// Chunks a delay line may hold per direction: with a delay, this bounds the bytes in
/// flight inside the proxy (and so the throughput: at most this many chunks per delay).
const DELAY_LINE_CHUNKS: usize = 256;

/// With `--tcp-rate`, read chunks worth about this long on the link, so pacing is
/// smooth rather than one big burst per 64 KiB.
const PACING_SLICE: Duration = Duration::from_millis(10);

/// The smallest chunk under pacing (very low rates still send whole small messages).
const MIN_PACED_CHUNK: usize = 512;

/// After a failed `accept` (out of file descriptors), wait this long before trying
/// again instead of spinning on the error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the byte stream is slowed down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shaping {
    /// Every chunk is written this long after it was read.
    pub delay: Option<Duration>,
    /// The stream is paced to this many bits per second.
    pub bits_per_second: Option<u64>,
}

impl Shaping {
    fn is_none(&self) -> bool {
        self.delay.is_none_or(|d| d.is_zero()) && self.bits_per_second.is_none()
    }

    /// The read size: whole 64 KiB chunks, or about [`PACING_SLICE`] of the link.
    fn chunk(&self) -> usize {
        match self.bits_per_second {
            Some(bits) => {
                let bytes_per_slice = bits as f64 / 8.0 * PACING_SLICE.as_secs_f64();
                (bytes_per_slice as usize).clamp(MIN_PACED_CHUNK, CHUNK)
            }
            None => CHUNK,
        }
    }

    /// How long `len` bytes take on the link.
    fn transmission_time(&self, len: usize) -> Duration {
        match self.bits_per_second {
            Some(bits) if bits > 0 => Duration::from_secs_f64(len as f64 * 8.0 / bits as f64),
            _ => Duration::ZERO,
        }
    }
}

/// Accepts connections on `listener` and relays each to `upstream` (tried in order),
/// until the future is dropped; then every relayed connection is closed.
pub async fn relay(
    listener: TcpListener,
    upstream: Vec<SocketAddr>,
    shaping: Shaping,
    counters: Arc<Counters>,
    reporter: Reporter,
) {
    let upstream: Arc<[SocketAddr]> = upstream.into();
    // Dropping the set (when the proxy stops) aborts every connection task.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    add(&counters.tcp.connections, 1);
                    connections.spawn(relay_connection(
                        client,
                        peer,
                        Arc::clone(&upstream),
                        shaping,
                        Arc::clone(&counters),
                        reporter.clone(),
                    ));
                }
                Err(error) => {
                    reporter.info(format!(
                        "accepting a tcp connection failed: {}",
                        describe(&error)
                    ));
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections so the set does not grow with every one.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay_connection(
    client: TcpStream,
    peer: SocketAddr,
    upstream: Arc<[SocketAddr]>,
    shaping: Shaping,
    counters: Arc<Counters>,
    reporter: Reporter,
) {
    let server = match net::connect_tcp(&upstream).await {
        Ok(server) => server,
        Err(error) => {
            add(&counters.tcp.refused, 1);
            reporter.detail(format!("tcp client {peer}: {error}; closing it"));
            // Reset rather than close, so the client sees a failure (as it would
            // connecting to the upstream directly) instead of an empty answer.
            let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
            return;
        }
    };
    // Latency matters more than segment count in a lab (see `net::connect_tcp`).
    let _ = client.set_nodelay(true);
    reporter.detail(format!("tcp client {peer}: relaying"));
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let outcome = tokio::try_join!(
        pump(client_read, server_write, shaping, &counters.tcp.c2s_bytes),
        pump(server_read, client_write, shaping, &counters.tcp.s2c_bytes),
    );
    match outcome {
        Ok(_) => reporter.detail(format!("tcp client {peer}: closed")),
        Err(error) => {
            add(&counters.tcp.failed, 1);
            reporter.detail(format!("tcp client {peer}: {}", describe(&error)));
        }
    }
}

/// Copies `from` to `to` until `from` ends, then shuts `to` down for writing (passing
/// the FIN on), counting the bytes in `bytes`.
async fn pump<R, W>(from: R, mut to: W, shaping: Shaping, bytes: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if shaping.is_none() {
        copy(from, &mut to, bytes).await?;
    } else {
        delay_line(from, &mut to, shaping, bytes).await?;
    }
    to.shutdown().await
}

async fn copy<R, W>(mut from: R, to: &mut W, bytes: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
        add(bytes, n as u64);
    }
}

/// Reads chunks as they come and writes each `delay` after it was read, no faster
/// than the rate. The reader and the writer run concurrently, joined by a bounded
/// channel: the delay applies to every chunk, not one after another, and a slow
/// upstream pushes back on the reader instead of filling memory.
async fn delay_line<R, W>(
    mut from: R,
    to: &mut W,
    shaping: Shaping,
    bytes: &AtomicU64,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (line_in, mut line_out) = mpsc::channel::<(Instant, Vec<u8>)>(DELAY_LINE_CHUNKS);
    let chunk = shaping.chunk();
    let reader = async move {
        loop {
            let mut buffer = vec![0u8; chunk];
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                // Dropping `line_in` tells the writer the stream has ended.
                return Ok::<(), io::Error>(());
            }
            buffer.truncate(n);
            if line_in.send((Instant::now(), buffer)).await.is_err() {
                return Ok(());
            }
        }
    };
    let writer = async {
        let delay = shaping.delay.unwrap_or_default();
        // When the link is next free: pacing sends each chunk after the previous one
        // has been "transmitted".
        let mut link_free = Instant::now();
        while let Some((read_at, data)) = line_out.recv().await {
            tokio::time::sleep_until(read_at + delay).await;
            let start = link_free.max(Instant::now());
            link_free = start + shaping.transmission_time(data.len());
            tokio::time::sleep_until(link_free).await;
            to.write_all(&data).await?;
            add(bytes, data.len() as u64);
        }
        Ok(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_rate() {
        let fast = Shaping::default();
        assert!(fast.is_none());
        assert_eq!(fast.chunk(), CHUNK);
        // 8 Mbit/s is 1 MB/s: 10 ms of it is 10,000 bytes.
        let paced = Shaping {
            delay: None,
            bits_per_second: Some(8_000_000),
        };
        assert!(!paced.is_none());
        assert_eq!(paced.chunk(), 10_000);
        assert_eq!(paced.transmission_time(1_000), Duration::from_millis(1));
        let slow = Shaping {
            delay: None,
            bits_per_second: Some(1_000),
        };
        assert_eq!(slow.chunk(), MIN_PACED_CHUNK);
        let zero_delay = Shaping {
            delay: Some(Duration::ZERO),
            bits_per_second: None,
        };
        assert!(zero_delay.is_none());
    }

    #[tokio::test]
    async fn delay_line_delays_and_half_closes() {
        let (mut near, far) = tokio::io::duplex(1024);
        let (mut out_read, out_write) = tokio::io::duplex(1024);
        let counter = AtomicU64::new(0);
        let shaping = Shaping {
            delay: Some(Duration::from_millis(50)),
            bits_per_second: None,
        };
        let started = Instant::now();
        let pumping = pump(far, out_write, shaping, &counter);
        let talking = async {
            near.write_all(b"hello").await.unwrap();
            near.shutdown().await.unwrap();
            let mut got = Vec::new();
            out_read.read_to_end(&mut got).await.unwrap();
            (got, started.elapsed())
        };
        let (pumped, (got, elapsed)) = tokio::join!(pumping, talking);
        pumped.unwrap();
        assert_eq!(got, b"hello");
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 5);
    }

    // Real time, not tokio's paused clock (the crate does not enable tokio's
    // `test-util`): only lower bounds are asserted, so a slow machine cannot fail it.
    #[tokio::test]
    async fn pacing_spreads_bytes_over_time() {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let (mut out_read, out_write) = tokio::io::duplex(64 * 1024);
        let counter = AtomicU64::new(0);
        // 80 kbit/s = 10,000 bytes/s: 2,000 bytes take 200 ms.
        let shaping = Shaping {
            delay: None,
            bits_per_second: Some(80_000),
        };
        let started = Instant::now();
        let pumping = pump(far, out_write, shaping, &counter);
        let talking = async {
            near.write_all(&[7u8; 2_000]).await.unwrap();
            near.shutdown().await.unwrap();
            let mut got = Vec::new();
            out_read.read_to_end(&mut got).await.unwrap();
            (got.len(), started.elapsed())
        };
        let (pumped, (len, elapsed)) = tokio::join!(pumping, talking);
        pumped.unwrap();
        assert_eq!(len, 2_000);
        assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    }
}
