//! `socklab echo bench`: a closed-loop ping-pong load generator.
//!
//! Each of CONNS connections (UDP: connected sockets) keeps exactly one message in
//! flight: send SIZE bytes, wait for the SIZE-byte echo, record the round trip, repeat.
//! The throughput is therefore bound by latency (Little's law: round trips/s = CONNS /
//! mean round-trip time), which is what an echo server's quality shows in.
//!
//! The first `warmup` of the run is not recorded (connections are open, but caches and
//! the scheduler have not settled yet). UDP requests carry an 8-byte sequence number so
//! a late reply to a timed-out request is never counted as the answer to a newer one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::stats::Percentiles;
use super::{EchoError, Transport};
use crate::net;
use crate::output::{micros, table};

/// Bytes of sequence number at the start of each UDP request: eight ASCII decimal
/// digits. Digits, because a server running `--upper` rewrites the bytes `a`..`z`, and
/// a binary counter passes through that range (sequence 97 is the byte `a`).
const SEQUENCE_LEN: usize = 8;
/// Sequence numbers wrap at this value to fit in [`SEQUENCE_LEN`] digits.
const SEQUENCE_MODULUS: u64 = 100_000_000;

/// Options of `socklab echo bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// TCP or UDP.
    pub transport: Transport,
    /// Concurrent connections (UDP: sockets), each with one message in flight.
    pub connections: u32,
    /// Message size in bytes.
    pub size: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// UDP: how long before a missing reply counts as an error.
    pub timeout: Duration,
}

/// The result of a run, as printed in the table or as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `"tcp"` or `"udp"`.
    pub transport: &'static str,
    /// The server's address.
    pub target: SocketAddr,
    /// Concurrent connections.
    pub connections: u32,
    /// Message size in bytes.
    pub size: usize,
    /// The measured time in seconds (without the warm-up).
    pub duration_s: f64,
    /// Round trips completed in the measured time.
    pub round_trips: u64,
    /// Round trips per second.
    pub round_trips_per_sec: f64,
    /// Round-trip latency in microseconds.
    pub latency_us: Percentiles,
    /// Failed round trips: UDP timeouts, TCP connections that broke or stalled.
    pub errors: u64,
}

/// What one connection measured.
#[derive(Default)]
struct Worker {
    samples_ns: Vec<u64>,
    errors: u64,
}

/// Runs the load against `host:port` and returns the measurements.
///
/// # Errors
/// [`EchoError::Net`] when the server cannot be resolved or a connection cannot be
/// opened; failures during the run are counted in [`BenchReport::errors`].
pub async fn bench(
    host: &str,
    port: u16,
    options: &BenchOptions,
) -> Result<BenchReport, EchoError> {
    let connections = options.connections.max(1);
    let mut handles = Vec::with_capacity(connections as usize);
    let target;
    // Open every connection before the clock starts, so connection set-up is not
    // measured as echo latency.
    match options.transport {
        Transport::Tcp => {
            let addrs = net::resolve_all(host, port).await?;
            let mut streams = Vec::with_capacity(connections as usize);
            for _ in 0..connections {
                streams.push(net::connect_tcp(&addrs).await?);
            }
            target = peer_of(&streams[0], port);
            let (measure_from, end) = window(options);
            for stream in streams {
                let size = options.size;
                let grace = options.timeout;
                handles.push(tokio::spawn(async move {
                    tcp_worker(stream, size, measure_from, end, grace).await
                }));
            }
        }
        Transport::Udp => {
            target = net::resolve_udp(host, port).await?;
            let mut sockets = Vec::with_capacity(connections as usize);
            for _ in 0..connections {
                sockets.push(net::connect_udp(target).await?);
            }
            let (measure_from, end) = window(options);
            for socket in sockets {
                let size = options.size;
                let timeout = options.timeout;
                handles.push(tokio::spawn(async move {
                    udp_worker(socket, size, measure_from, end, timeout).await
                }));
            }
        }
    }

    let mut samples = Vec::new();
    let mut errors = 0;
    for handle in handles {
        // A worker that panicked would be a bug; count it as a failed connection
        // rather than bringing down the whole run.
        let worker = handle.await.unwrap_or_else(|_| Worker {
            samples_ns: Vec::new(),
            errors: 1,
        });
        samples.extend(worker.samples_ns);
        errors += worker.errors;
    }
    let round_trips = samples.len() as u64;
    let duration_s = options.duration.as_secs_f64();
    Ok(BenchReport {
        transport: options.transport.name(),
        target,
        connections,
        size: options.size,
        duration_s,
        round_trips,
        round_trips_per_sec: if duration_s > 0.0 {
            round_trips as f64 / duration_s
        } else {
            0.0
        },
        latency_us: Percentiles::of(&mut samples),
        errors,
    })
}

/// The measurement window: from the end of the warm-up to the end of the run.
fn window(options: &BenchOptions) -> (Instant, Instant) {
    let measure_from = Instant::now() + options.warmup;
    (measure_from, measure_from + options.duration)
}

fn peer_of(stream: &TcpStream, port: u16) -> SocketAddr {
    stream
        .peer_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)))
}

/// One TCP connection's ping-pong loop. A connection that breaks ends with one error;
/// one that stalls past the end of the run (plus `grace`) counts one error too.
async fn tcp_worker(
    mut stream: TcpStream,
    size: usize,
    measure_from: Instant,
    end: Instant,
    grace: Duration,
) -> Worker {
    let mut worker = Worker::default();
    let request = vec![b'x'; size];
    let mut reply = vec![0u8; size];
    let run = async {
        loop {
            let started = Instant::now();
            if started >= end {
                return Ok::<(), std::io::Error>(());
            }
            stream.write_all(&request).await?;
            stream.read_exact(&mut reply).await?;
            if started >= measure_from {
                worker.samples_ns.push(elapsed_ns(started));
            }
        }
    };
    match tokio::time::timeout_at((end + grace).into(), run).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) | Err(_) => worker.errors += 1,
    }
    worker
}

/// One UDP socket's ping-pong loop: a reply that does not come within `timeout` is an
/// error, and the next request goes out with the next sequence number.
async fn udp_worker(
    socket: UdpSocket,
    size: usize,
    measure_from: Instant,
    end: Instant,
    timeout: Duration,
) -> Worker {
    let mut worker = Worker::default();
    let mut request = vec![b'x'; size];
    let mut reply = vec![0u8; size.max(net::MAX_UDP_PAYLOAD)];
    let mut sequence: u64 = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            return worker;
        }
        sequence += 1;
        if size >= SEQUENCE_LEN {
            request[..SEQUENCE_LEN].copy_from_slice(&sequence_digits(sequence));
        }
        if socket.send(&request).await.is_err() {
            worker.errors += 1;
            continue;
        }
        let deadline = (started + timeout).into();
        let answered = loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut reply)).await {
                Ok(Ok(n)) if n == size && is_reply_to(&reply[..n], sequence) => break true,
                // A late reply to an earlier request, or a stray datagram: keep waiting.
                Ok(Ok(_)) => continue,
                // An ICMP error (nothing listening) or another receive error.
                Ok(Err(_)) => continue,
                Err(_elapsed) => break false,
            }
        };
        if !answered {
            worker.errors += 1;
        } else if started >= measure_from {
            worker.samples_ns.push(elapsed_ns(started));
        }
    }
}

/// Whether `reply` carries `sequence` (messages shorter than a sequence number cannot
/// be told apart and are accepted).
fn is_reply_to(reply: &[u8], sequence: u64) -> bool {
    reply.len() < SEQUENCE_LEN || reply[..SEQUENCE_LEN] == sequence_digits(sequence)
}

/// `sequence` as [`SEQUENCE_LEN`] ASCII digits.
fn sequence_digits(sequence: u64) -> [u8; SEQUENCE_LEN] {
    let mut digits = [b'0'; SEQUENCE_LEN];
    let mut rest = sequence % SEQUENCE_MODULUS;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits
}

fn elapsed_ns(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Renders a report as a table.
pub fn render_bench(report: &BenchReport) -> String {
    let mut t = table(&[
        "transport",
        "target",
        "conns",
        "size",
        "round trips",
        "round trips/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "errors",
    ]);
    let us = |v: f64| micros(Duration::from_secs_f64(v / 1e6));
    t.add_row(vec![
        report.transport.to_string(),
        report.target.to_string(),
        report.connections.to_string(),
        report.size.to_string(),
        report.round_trips.to_string(),
        format!("{:.0}", report.round_trips_per_sec),
        us(report.latency_us.p50),
        us(report.latency_us.p90),
        us(report.latency_us.p99),
        us(report.latency_us.max),
        report.errors.to_string(),
    ]);
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_tell_replies_apart() {
        let mut reply = vec![b'x'; 16];
        reply[..8].copy_from_slice(&sequence_digits(5));
        assert_eq!(&reply[..8], b"00000005");
        assert!(is_reply_to(&reply, 5));
        assert!(!is_reply_to(&reply, 6));
        assert!(is_reply_to(b"tiny", 6));
        // Upper-casing (a server with --upper) leaves the sequence intact.
        let mut upper = reply.clone();
        upper.make_ascii_uppercase();
        assert!(is_reply_to(&upper, 5));
        assert_eq!(&sequence_digits(123_456_789), b"23456789");
    }
}
