//! Reliability over UDP for the forum (lab 3): the client retransmits with an adaptive
//! timeout until the whole reply is in, and the server answers a retransmitted request
//! from a cache instead of executing it twice. Together they give the spec's promise:
//! every command the client reports as done was applied exactly once.
//!
//! ```text
//!  client (ReliableClient::call)                       server (ReplyCache per session)
//!    | REQUEST 7 "MSG t hi" ----------X lost                 |
//!    |   rto() passes: on_timeout(), the RTO doubles         |
//!    | REQUEST 7 "MSG t hi" (retransmission) ------------->  | admit(7) = New: execute,
//!    | <------------------------------- REPLY 7 frag 1/3     |   split_reply, store(7, ..)
//!    | <-------------X lost             REPLY 7 frag 2/3     |
//!    | <------------------------------- REPLY 7 frag 3/3     |
//!    |   rto() passes with fragment 2 still missing          |
//!    | RESEND 7 [1] ------------------------------------->   | fragments(7, [1]) from
//!    | <------------------------------- REPLY 7 frag 2/3     |   the cache, not executed
//!    |   reply complete: call() returns it                   |
//!    | REQUEST 8 "LST" ---------------------------------->   | admit(8) = New: the new id
//!    |                                                       |   acknowledges reply 7
//! ```
//!
//! The pieces:
//! - [`RtoEstimator`]: TCP's retransmission timer (RFC 6298) as a pure value: feed it
//!   round-trip samples and timeouts, read the current timeout.
//! - [`ReliableClient`]: stop-and-wait requests over a connected UDP socket, with
//!   Karn's rule (no RTT sample from a retransmitted request, whose reply is ambiguous),
//!   exponential backoff, and Resend of just the missing fragments of a long reply.
//! - [`ReplyCache`]: the server's memory of the last reply per session, the duplicate
//!   suppression that makes a retransmitted `MSG` post once.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::wire::{
    encode_missing, Kind, Packet, Reassembly, Repr, MAX_BODY, MAX_DATAGRAM,
    MAX_MISSING_PER_DATAGRAM,
};
use crate::net::describe;

/// The timeout before the first RTT sample. RFC 6298 (2.1) says 1 s because a TCP
/// sender may be anywhere on the Internet; a lab forum runs on a LAN or loopback, where
/// 1 s would make the first lost command feel hung, so we start lower.
pub const DEFAULT_INITIAL_RTO: Duration = Duration::from_millis(500);

/// The smallest timeout. RFC 6298 (2.4) asks for 1 s on the Internet and Linux TCP
/// uses 200 ms. Our server answers in well under a millisecond on loopback, so the
/// estimate alone would drop to the 1 ms clock granularity; but a command that
/// changes the forum waits for an fsync, which can stall for tens of milliseconds.
/// 20 ms keeps a stalled fsync from looking like a loss most of the time while still
/// recovering from a real loss quickly; and when a stall does outlast it, the
/// retransmission is answered from the server's [`ReplyCache`], so it costs a datagram,
/// never a command executed twice.
pub const DEFAULT_MIN_RTO: Duration = Duration::from_millis(20);

/// The largest timeout, reached after a few doublings: RFC 6298 (2.5) allows a
/// maximum of at least 60 s, but a person is waiting at a prompt, and on a lossy path
/// a streak of losses would leave every following command paying the maximum until
/// one is answered on its first try (Karn's rule). 2 s between tries is as long as
/// the forum makes anyone wait.
pub const DEFAULT_MAX_RTO: Duration = Duration::from_secs(2);

/// How many tries without progress before the client says `Server not responding`.
/// With the defaults and no answer at all that is 0.5 + 1 + 2 × 6 = 13.5 s.
pub const DEFAULT_RETRIES: u32 = 8;

/// The clock granularity G of RFC 6298 (2.2, 2.3): tokio's timers tick in
/// milliseconds.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);

/// K of RFC 6298: the timeout allows this many mean deviations above the smoothed RTT.
const DEVIATIONS: u32 = 4;

/// How many times a send is tried when the socket reports an earlier ICMP error: Linux
/// reports a pending "port unreachable" on the next call on the socket, which may be a
/// send; reporting it clears it, so the second send goes out.
const SEND_ATTEMPTS: usize = 2;

/// The receive buffer: one byte more than the largest valid datagram, so a datagram
/// that is too long shows up as too long instead of being silently cut to fit.
const RECEIVE_BUFFER: usize = MAX_DATAGRAM + 1;

/// RFC 6298's retransmission-timeout estimator. Pure: no clock, no I/O; the caller
/// measures round trips and reports timeouts.
///
/// With R the first sample: SRTT = R, RTTVAR = R/2. With R' a later one (RTTVAR first,
/// from the old SRTT): RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|, SRTT = 7/8 SRTT + 1/8 R'.
/// Then RTO = SRTT + max(G, 4 RTTVAR), clamped to [min, max]. A timeout doubles the
/// RTO (section 5.5, "back off the timer") up to max; the next sample recomputes it
/// from the estimate, which ends the backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtoEstimator {
    min: Duration,
    max: Duration,
    srtt: Option<Duration>,
    rttvar: Option<Duration>,
    rto: Duration,
}

impl RtoEstimator {
    /// An estimator with no samples yet: the timeout is `initial`, clamped to
    /// [`min`, `max`]. A `max` below `min` is raised to `min`.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        RtoEstimator {
            min,
            max,
            srtt: None,
            rttvar: None,
            rto: initial.max(min).min(max),
        }
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The round-trip time variation, once there is a sample.
    pub fn rttvar(&self) -> Option<Duration> {
        self.rttvar
    }

    /// Takes one round-trip measurement into the estimate and recomputes the timeout,
    /// which also ends any backoff. Only measure requests that were sent once (Karn's
    /// rule): the reply to a retransmitted one may answer either copy.
    pub fn on_sample(&mut self, rtt: Duration) {
        let (srtt, rttvar) = match (self.srtt, self.rttvar) {
            (Some(srtt), Some(rttvar)) => {
                // RFC 6298 (2.3): beta = 1/4, alpha = 1/8, RTTVAR from the old SRTT.
                let deviation = srtt.abs_diff(rtt);
                let rttvar = rttvar.saturating_mul(3) / 4 + deviation / 4;
                let srtt = srtt.saturating_mul(7) / 8 + rtt / 8;
                (srtt, rttvar)
            }
            _ => (rtt, rtt / 2),
        };
        self.srtt = Some(srtt);
        self.rttvar = Some(rttvar);
        let spread = CLOCK_GRANULARITY.max(rttvar.saturating_mul(DEVIATIONS));
        self.rto = srtt.saturating_add(spread).max(self.min).min(self.max);
    }

    /// Records that the timeout expired: the timeout doubles, up to the maximum.
    pub fn on_timeout(&mut self) {
        self.rto = self.rto.saturating_mul(2).min(self.max);
    }
}

/// How the client retransmits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// The timeout before the first RTT sample.
    pub initial_rto: Duration,
    /// The smallest timeout.
    pub min_rto: Duration,
    /// The largest timeout, reached by backoff.
    pub max_rto: Duration,
    /// Tries without progress before a call fails with [`CallError::NoResponse`]
    /// (0 counts as 1).
    pub retries: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_rto: DEFAULT_INITIAL_RTO,
            min_rto: DEFAULT_MIN_RTO,
            max_rto: DEFAULT_MAX_RTO,
            retries: DEFAULT_RETRIES,
        }
    }
}

impl RetryConfig {
    /// A fresh estimator with this configuration's timeouts.
    pub fn estimator(&self) -> RtoEstimator {
        RtoEstimator::new(self.initial_rto, self.min_rto, self.max_rto)
    }
}

/// What the client has done so far, over all its calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Calls that sent a request (a request refused as too long is not counted).
    pub calls: u64,
    /// Datagrams sent by calls: first transmissions, retransmissions and Resends.
    pub transmissions: u64,
    /// Requests sent again after a timeout with no fragment of the reply.
    pub retransmissions: u64,
    /// Resend datagrams sent, asking for missing fragments.
    pub resend_requests: u64,
    /// Well-formed datagrams ignored because they belong to another request or
    /// session (late replies to earlier requests), or are of a kind the server never
    /// sends.
    pub stale: u64,
    /// Fragments of the current reply that had already arrived.
    pub duplicates: u64,
    /// Datagrams that are not valid forum datagrams, or a fragment whose count
    /// disagrees with the first fragment's.
    pub malformed: u64,
    /// ICMP "port unreachable" reports (the server is not running, or restarting);
    /// treated as losses.
    pub unreachable: u64,
    /// Round-trip samples given to the estimator (at most one per call, and none for a
    /// call whose request was retransmitted).
    pub rtt_samples: u64,
}

/// Why a call failed.
#[derive(Debug, Error)]
pub enum CallError {
    /// Every try timed out without any progress.
    #[error("no response from {peer} after {tries} tries")]
    NoResponse {
        /// Tries that ended in a timeout with nothing new received.
        tries: u32,
        /// The server's address.
        peer: SocketAddr,
    },
    /// The server answered with an Error datagram; the text is its reason.
    #[error("the server refused the request: {0}")]
    Refused(String),
    /// The request does not fit in one datagram; nothing was sent.
    #[error("a request of {len} bytes does not fit in one datagram (at most {MAX_BODY} bytes)")]
    TooLong {
        /// The request body's length.
        len: usize,
    },
    /// The socket failed for another reason than a lost datagram.
    #[error("cannot exchange datagrams with {peer}: {}", describe(.cause))]
    Io {
        /// The server's address (0.0.0.0:0 if the socket is not connected).
        peer: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
}

/// The client side of the forum's UDP exchange: one request at a time (stop-and-wait),
/// retransmitted until its whole reply is in.
///
/// The socket must be connected to the server (see [`crate::net::connect_udp`]), so the
/// kernel drops datagrams from anyone else and reports ICMP errors to us.
#[derive(Debug)]
pub struct ReliableClient {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    session: u64,
    config: RetryConfig,
    estimator: RtoEstimator,
    next_request: u32,
    stats: ClientStats,
}

/// What one wait on the socket gave.
enum Received {
    /// A datagram of this many bytes is in the buffer.
    Datagram(usize),
    /// The deadline passed first.
    Timeout,
}

impl ReliableClient {
    /// A client for `session` over `socket`, which is connected to the server. Request
    /// ids start at 1.
    pub fn new(socket: Arc<UdpSocket>, session: u64, config: RetryConfig) -> Self {
        let peer = socket
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        ReliableClient {
            socket,
            peer,
            session,
            config,
            estimator: config.estimator(),
            next_request: 1,
            stats: ClientStats::default(),
        }
    }

    /// Sends `body` as one request and returns the whole reply body.
    ///
    /// Every call takes the next request id (1, 2, 3, ...), also a call that fails, so
    /// a reply to an abandoned request can never be taken for a later one. The call
    /// waits [`ReliableClient::rto`] for the reply; each timeout doubles the timeout and
    /// then retransmits the request (no fragment yet) or sends Resends for the missing
    /// fragments. Each new fragment restarts the wait, so a long reply trickling in
    /// over a slow link is not cut short. Datagrams of other requests or sessions are
    /// ignored and counted in [`ClientStats`], so the server must echo the request's
    /// session and id in its Reply and Error datagrams; an ICMP "port unreachable"
    /// counts as a loss, since the server may be restarting.
    ///
    /// # Errors
    /// - [`CallError::TooLong`] if `body` is over [`MAX_BODY`] bytes (nothing is sent
    ///   and no id is used).
    /// - [`CallError::NoResponse`] after [`RetryConfig::retries`] timeouts in a row
    ///   with nothing new received.
    /// - [`CallError::Refused`] when the server answers with an Error datagram.
    /// - [`CallError::Io`] when the socket fails for another reason.
    pub async fn call(&mut self, body: &[u8]) -> Result<Vec<u8>, CallError> {
        if body.len() > MAX_BODY {
            return Err(CallError::TooLong { len: body.len() });
        }
        let request = self.next_request;
        // 4 billion commands in one session is far beyond any forum session's life.
        self.next_request = self.next_request.wrapping_add(1);
        self.stats.calls += 1;
        let datagram = Repr {
            kind: Kind::Request,
            session: self.session,
            request,
            frag: 0,
            count: 1,
            body,
        }
        .to_vec();

        let first_sent = Instant::now();
        self.send(&datagram).await?;
        let mut retransmitted = false;
        let mut reassembly: Option<Reassembly> = None;
        let mut progress = false;
        let mut failed_tries = 0;
        let max_tries = self.config.retries.max(1);
        let mut deadline = Instant::now() + self.estimator.rto();
        let mut buffer = vec![0u8; RECEIVE_BUFFER];

        loop {
            let len = match self.receive(&mut buffer, deadline).await? {
                Received::Datagram(len) => len,
                Received::Timeout => {
                    if !progress {
                        // RFC 6298 (5.5): back off only when nothing came back. A round
                        // that brought new fragments of a long reply shows the path
                        // works; the missing ones were lost (or overflowed a socket
                        // buffer), and waiting twice as long for them would only make
                        // a long reply under loss slower with every round.
                        self.estimator.on_timeout();
                        failed_tries += 1;
                        if failed_tries >= max_tries {
                            return Err(CallError::NoResponse {
                                tries: failed_tries,
                                peer: self.peer,
                            });
                        }
                    }
                    progress = false;
                    match &reassembly {
                        None => {
                            self.send(&datagram).await?;
                            self.stats.retransmissions += 1;
                            retransmitted = true;
                        }
                        Some(assembly) => self.send_resends(request, assembly).await?,
                    }
                    deadline = Instant::now() + self.estimator.rto();
                    continue;
                }
            };

            let Ok(packet) = Packet::new_checked(&buffer[..len]) else {
                self.stats.malformed += 1;
                continue;
            };
            if packet.session() != self.session || packet.request() != request {
                self.stats.stale += 1;
                continue;
            }
            match packet.kind() {
                Kind::Reply => {}
                Kind::Error => {
                    return Err(CallError::Refused(
                        String::from_utf8_lossy(packet.body()).into_owned(),
                    ))
                }
                _ => {
                    self.stats.stale += 1;
                    continue;
                }
            }

            // Karn's rule: after a retransmission we cannot tell which copy the reply
            // answers, so the round trip is unknown and no sample is taken.
            if reassembly.is_none() && !retransmitted {
                self.estimator.on_sample(first_sent.elapsed());
                self.stats.rtt_samples += 1;
            }
            let assembly = reassembly.get_or_insert_with(|| Reassembly::new(packet.count()));
            if assembly.count() != packet.count() {
                self.stats.malformed += 1;
                continue;
            }
            if !assembly.insert(packet.frag(), packet.body()) {
                self.stats.duplicates += 1;
                continue;
            }
            if assembly.is_complete() {
                let body = reassembly.take().map(Reassembly::into_body);
                return Ok(body.unwrap_or_default());
            }
            progress = true;
            deadline = Instant::now() + self.estimator.rto();
        }
    }

    /// The session id this client puts in every datagram.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The server's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// What the client has done so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.estimator.rto()
    }

    /// The estimator, to show SRTT and RTTVAR.
    pub fn estimator(&self) -> &RtoEstimator {
        &self.estimator
    }

    /// An encoded Heartbeat datagram of this session, which a background task may send
    /// on the same socket at any time: the server never answers it, so it cannot
    /// disturb a call in progress.
    pub fn heartbeat(&self) -> Vec<u8> {
        Repr {
            kind: Kind::Heartbeat,
            session: self.session,
            request: 0,
            frag: 0,
            count: 1,
            body: &[],
        }
        .to_vec()
    }

    /// Asks for the fragments `assembly` still misses, in as many Resend datagrams as
    /// the list needs.
    async fn send_resends(&mut self, request: u32, assembly: &Reassembly) -> Result<(), CallError> {
        for chunk in assembly.missing().chunks(MAX_MISSING_PER_DATAGRAM) {
            let body = encode_missing(chunk);
            let datagram = Repr {
                kind: Kind::Resend,
                session: self.session,
                request,
                frag: 0,
                count: 1,
                body: &body,
            }
            .to_vec();
            self.send(&datagram).await?;
            self.stats.resend_requests += 1;
        }
        Ok(())
    }

    /// Sends one datagram. An ICMP error left by an earlier datagram makes the send
    /// fail once; we try again, and if the server is still unreachable the datagram
    /// counts as lost (the retry timer will send it again).
    async fn send(&mut self, datagram: &[u8]) -> Result<(), CallError> {
        for _ in 0..SEND_ATTEMPTS {
            match self.socket.send(datagram).await {
                Ok(_) => {
                    self.stats.transmissions += 1;
                    return Ok(());
                }
                Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    self.stats.unreachable += 1;
                }
                Err(cause) => {
                    return Err(CallError::Io {
                        peer: self.peer,
                        cause,
                    })
                }
            }
        }
        Ok(())
    }

    /// Waits until `deadline` for one datagram. ICMP "port unreachable" is counted
    /// and waited past: it means our last datagram was lost, and the timer decides
    /// when to try again.
    async fn receive(
        &mut self,
        buffer: &mut [u8],
        deadline: Instant,
    ) -> Result<Received, CallError> {
        loop {
            match tokio::time::timeout_at(deadline, self.socket.recv(buffer)).await {
                Err(_elapsed) => return Ok(Received::Timeout),
                Ok(Ok(len)) => return Ok(Received::Datagram(len)),
                Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused => {
                    self.stats.unreachable += 1;
                }
                Ok(Err(cause)) => {
                    return Err(CallError::Io {
                        peer: self.peer,
                        cause,
                    })
                }
            }
        }
    }
}

/// How the server should treat a Request, by its id (see [`ReplyCache::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A request not seen before: execute it, then [`ReplyCache::store`] its reply.
    New,
    /// The request whose reply is cached, sent again because the reply (or part of
    /// it) was lost: send [`ReplyCache::replay`], do not execute it again.
    Duplicate,
    /// An old retransmission overtaken by a newer request, or a request with no
    /// reply to repeat: drop it.
    Stale,
}

/// The server's memory of one session's last reply, so a duplicate request is answered
/// from here and never executed twice. Pure: no I/O.
///
/// **Why one reply is enough.** The client is stop-and-wait: it sends request n + 1
/// only after it has the whole reply to n (or gave up on it). So a request with a new,
/// higher id is also the client's acknowledgement of the previous reply, which can then
/// be forgotten; and a request with a lower id can only be a late copy from the network.
///
/// **Use.** [`ReplyCache::admit`] only looks; the server executes a `New` request and
/// calls [`ReplyCache::store`] before it handles the next datagram of the session
/// (handle one session's datagrams one at a time, e.g. under the session's lock),
/// otherwise a duplicate arriving during execution would also look `New`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCache {
    last: u32,
    datagrams: Vec<Vec<u8>>,
}

impl ReplyCache {
    /// An empty cache: no request seen yet (the client's first id is 1).
    pub fn new() -> Self {
        ReplyCache::default()
    }

    /// Classifies request id `request`: higher than the last stored → `New`; equal and
    /// its reply cached → `Duplicate`; lower, or equal with nothing cached (only id 0,
    /// which no client uses) → `Stale`.
    pub fn admit(&self, request: u32) -> Admission {
        if request > self.last {
            Admission::New
        } else if request == self.last && !self.datagrams.is_empty() {
            Admission::Duplicate
        } else {
            Admission::Stale
        }
    }

    /// Remembers `datagrams` (the encoded reply, e.g. from
    /// [`split_reply`](super::wire::split_reply)) as the answer to `request`, freeing the
    /// previous one. A `request` lower than the last stored is ignored: the cache never
    /// goes back.
    pub fn store(&mut self, request: u32, datagrams: Vec<Vec<u8>>) {
        if request >= self.last {
            self.last = request;
            self.datagrams = datagrams;
        }
    }

    /// The cached reply to `request`, if it is the last request and has a reply.
    pub fn replay(&self, request: u32) -> Option<&[Vec<u8>]> {
        if request == self.last && !self.datagrams.is_empty() {
            Some(&self.datagrams)
        } else {
            None
        }
    }

    /// The cached fragments numbered in `missing` (a Resend's list), in the list's
    /// order, each at most once. Indices beyond the reply, or a `request` that is not
    /// the cached one, give nothing.
    pub fn fragments(&self, request: u32, missing: &[u16]) -> Vec<&[u8]> {
        if request != self.last {
            return Vec::new();
        }
        let mut sent = vec![false; self.datagrams.len()];
        let mut fragments = Vec::new();
        for &index in missing {
            let index = usize::from(index);
            if let (Some(datagram), Some(seen)) = (self.datagrams.get(index), sent.get_mut(index)) {
                if !*seen {
                    *seen = true;
                    fragments.push(datagram.as_slice());
                }
            }
        }
        fragments
    }

    /// The highest request id stored so far (0 before the first).
    pub fn last_request(&self) -> u32 {
        self.last
    }

    /// Bytes held by the cached datagrams, for the server's memory accounting.
    pub fn cached_bytes(&self) -> usize {
        self.datagrams.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    //! The estimator and the cache are tested on plain values. The client is tested over
    //! loopback against a scripted fake server task in the same runtime, in tokio's
    //! virtual time (`start_paused`): timers jump forward only while nothing is ready,
    //! and a datagram sent on loopback is readable before the sender's next await, so a
    //! reply always beats a timeout, round trips measure 0 ms, and timeouts land on
    //! exact instants.

    use std::sync::Mutex;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::forum::wire::{decode_missing, error_datagram, split_reply};

    /// The fake server stops after this much (virtual) silence, so no test can hang.
    const SERVER_IDLE: Duration = Duration::from_secs(600);

    const SESSION: u64 = 0x5EED_0000_3331;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    // ---------------------------------------------------------------- estimator

    #[test]
    fn estimator_starts_at_the_initial_rto_clamped() {
        let estimator = RtoEstimator::new(ms(500), ms(20), ms(4000));
        assert_eq!(estimator.rto(), ms(500));
        assert_eq!((estimator.srtt(), estimator.rttvar()), (None, None));
        assert_eq!(RtoEstimator::new(ms(5), ms(20), ms(4000)).rto(), ms(20));
        assert_eq!(
            RtoEstimator::new(ms(9000), ms(20), ms(4000)).rto(),
            ms(4000)
        );
        // A max below the min is raised to the min rather than panicking in a clamp.
        assert_eq!(RtoEstimator::new(ms(500), ms(20), ms(10)).rto(), ms(20));
    }

    #[test]
    fn estimator_follows_rfc_6298_arithmetic() {
        let mut estimator = RtoEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        // First sample R = 100: SRTT = 100, RTTVAR = 50, RTO = 100 + 4 × 50 = 300.
        estimator.on_sample(ms(100));
        assert_eq!(estimator.srtt(), Some(ms(100)));
        assert_eq!(estimator.rttvar(), Some(ms(50)));
        assert_eq!(estimator.rto(), ms(300));
        // R' = 200: RTTVAR = 3/4 × 50 + 1/4 × |100 - 200| = 62.5,
        // SRTT = 7/8 × 100 + 1/8 × 200 = 112.5, RTO = 112.5 + 4 × 62.5 = 362.5.
        estimator.on_sample(ms(200));
        assert_eq!(estimator.rttvar(), Some(Duration::from_micros(62_500)));
        assert_eq!(estimator.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(estimator.rto(), Duration::from_micros(362_500));
        // R' = 112.5 = SRTT: RTTVAR = 3/4 × 62.5 = 46.875, SRTT stays,
        // RTO = 112.5 + 187.5 = 300.
        estimator.on_sample(Duration::from_micros(112_500));
        assert_eq!(estimator.rttvar(), Some(Duration::from_micros(46_875)));
        assert_eq!(estimator.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(estimator.rto(), ms(300));
    }

    #[test]
    fn estimator_never_goes_below_srtt_plus_granularity() {
        let mut estimator = RtoEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        estimator.on_sample(Duration::ZERO);
        assert_eq!(estimator.rto(), CLOCK_GRANULARITY);
        // Steady 10 ms samples: RTTVAR decays by 3/4 each time until 4 × RTTVAR is
        // below G, then RTO = SRTT + G.
        let mut estimator = RtoEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        for _ in 0..20 {
            estimator.on_sample(ms(10));
        }
        assert_eq!(estimator.srtt(), Some(ms(10)));
        assert_eq!(estimator.rto(), ms(11));
    }

    #[test]
    fn estimator_clamps_to_min_and_max() {
        let mut estimator = RtoEstimator::new(ms(500), ms(20), ms(4000));
        estimator.on_sample(ms(1)); // 1 + max(1, 2) = 3 ms, raised to 20
        assert_eq!(estimator.rto(), ms(20));
        estimator.on_sample(Duration::from_secs(10));
        assert_eq!(estimator.rto(), ms(4000));
        estimator.on_sample(Duration::MAX); // saturates instead of overflowing
        assert_eq!(estimator.rto(), ms(4000));
    }

    #[test]
    fn estimator_backs_off_and_a_sample_ends_it() {
        let mut estimator = RtoEstimator::new(ms(500), ms(20), ms(4000));
        let mut seen = Vec::new();
        for _ in 0..5 {
            estimator.on_timeout();
            seen.push(estimator.rto());
        }
        assert_eq!(seen, [ms(1000), ms(2000), ms(4000), ms(4000), ms(4000)]);
        estimator.on_sample(ms(100));
        assert_eq!(estimator.rto(), ms(300));
    }

    // ---------------------------------------------------------------- reply cache

    #[test]
    fn reply_cache_admission_table() {
        let mut cache = ReplyCache::new();
        assert_eq!(cache.last_request(), 0);
        assert_eq!(cache.admit(0), Admission::Stale);
        assert_eq!(cache.admit(1), Admission::New);
        assert_eq!(cache.replay(1), None);

        cache.store(1, vec![vec![1; 10], vec![2; 5]]);
        assert_eq!(cache.admit(0), Admission::Stale);
        assert_eq!(cache.admit(1), Admission::Duplicate);
        assert_eq!(cache.admit(2), Admission::New);
        assert_eq!(cache.replay(1).map(<[Vec<u8>]>::len), Some(2));
        assert_eq!(cache.replay(2), None);
        assert_eq!(cache.cached_bytes(), 15);

        // Request 3 acknowledges reply 1, which is freed; 1 and 2 are now stale.
        cache.store(3, vec![vec![3; 7]]);
        assert_eq!(cache.admit(1), Admission::Stale);
        assert_eq!(cache.admit(2), Admission::Stale);
        assert_eq!(cache.admit(3), Admission::Duplicate);
        assert_eq!(cache.admit(u32::MAX), Admission::New);
        assert_eq!(cache.replay(1), None);
        assert_eq!(cache.cached_bytes(), 7);

        // The cache never goes back.
        cache.store(2, vec![vec![2; 100]]);
        assert_eq!(cache.last_request(), 3);
        assert_eq!(cache.cached_bytes(), 7);

        // A request with no reply to repeat is not executed again either.
        cache.store(4, Vec::new());
        assert_eq!(cache.admit(4), Admission::Stale);
        assert_eq!(cache.replay(4), None);
    }

    #[test]
    fn reply_cache_serves_resends() {
        let mut cache = ReplyCache::new();
        let datagrams = split_reply(SESSION, 5, &vec![b'x'; 3 * MAX_BODY]);
        cache.store(5, datagrams.clone());
        assert_eq!(
            cache.fragments(5, &[2, 0, 2, 9]),
            vec![datagrams[2].as_slice(), datagrams[0].as_slice()]
        );
        assert!(cache.fragments(4, &[0]).is_empty());
        assert!(cache.fragments(5, &[]).is_empty());
    }

    // ---------------------------------------------------------------- client

    /// What the fake server saw.
    #[derive(Debug, Default)]
    struct Seen {
        /// Request ids, every copy.
        requests: Vec<u32>,
        /// Request ids executed.
        executed: Vec<u32>,
        /// (request, missing list) of every Resend.
        resends: Vec<(u32, Vec<u16>)>,
        /// Heartbeats received.
        heartbeats: usize,
    }

    /// The forum server's reliability logic in miniature, for one session: a
    /// [`ReplyCache`], and an `execute` function for requests the cache calls new.
    struct Forum {
        cache: ReplyCache,
        seen: Arc<Mutex<Seen>>,
    }

    impl Forum {
        fn new() -> (Forum, Arc<Mutex<Seen>>) {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let forum = Forum {
                cache: ReplyCache::new(),
                seen: Arc::clone(&seen),
            };
            (forum, seen)
        }

        /// The datagrams answering `datagram`.
        fn answer(
            &mut self,
            datagram: &[u8],
            execute: impl FnOnce(&[u8]) -> Vec<u8>,
        ) -> Vec<Vec<u8>> {
            let packet = Packet::new_checked(datagram).unwrap();
            let repr = Repr::parse(&packet).unwrap();
            assert_eq!(repr.session, SESSION);
            let mut seen = self.seen.lock().unwrap();
            match repr.kind {
                Kind::Request => {
                    seen.requests.push(repr.request);
                    match self.cache.admit(repr.request) {
                        Admission::New => {
                            seen.executed.push(repr.request);
                            let body = execute(repr.body);
                            let reply = split_reply(repr.session, repr.request, &body);
                            self.cache.store(repr.request, reply);
                        }
                        Admission::Duplicate => {}
                        Admission::Stale => return Vec::new(),
                    }
                    self.cache
                        .replay(repr.request)
                        .map(<[Vec<u8>]>::to_vec)
                        .unwrap_or_default()
                }
                Kind::Resend => {
                    let missing = decode_missing(repr.body).unwrap();
                    let fragments = self.cache.fragments(repr.request, &missing);
                    seen.resends.push((repr.request, missing));
                    fragments.into_iter().map(<[u8]>::to_vec).collect()
                }
                Kind::Heartbeat => {
                    seen.heartbeats += 1;
                    Vec::new()
                }
                other => panic!("a client never sends {other}"),
            }
        }
    }

    fn echo(body: &[u8]) -> Vec<u8> {
        [b"ok: ", body].concat()
    }

    /// A client connected to a fresh socket, which the test makes its fake server.
    async fn setup(config: RetryConfig) -> (ReliableClient, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(server.local_addr().unwrap()).await.unwrap();
        (
            ReliableClient::new(Arc::new(client), SESSION, config),
            server,
        )
    }

    /// Serves `socket`: each datagram received goes to `handler` with its position
    /// (from 0), and what it returns is sent back, yielding after each datagram so the
    /// client reads them as they come (a burst of 128 fragments could otherwise
    /// overflow its receive buffer: a loss the test did not choose).
    fn serve<F>(socket: UdpSocket, mut handler: F) -> JoinHandle<()>
    where
        F: FnMut(usize, &[u8]) -> Vec<Vec<u8>> + Send + 'static,
    {
        tokio::spawn(async move {
            let mut buffer = vec![0u8; RECEIVE_BUFFER];
            let mut nth = 0;
            while let Ok(Ok((len, from))) =
                tokio::time::timeout(SERVER_IDLE, socket.recv_from(&mut buffer)).await
            {
                for datagram in handler(nth, &buffer[..len]) {
                    socket.send_to(&datagram, from).await.unwrap();
                    tokio::task::yield_now().await;
                }
                nth += 1;
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn clean_calls_take_one_sample_each() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        serve(socket, move |_, datagram| forum.answer(datagram, echo));

        assert_eq!(client.rto(), DEFAULT_INITIAL_RTO);
        assert_eq!(client.call(b"CRT 3331").await.unwrap(), b"ok: CRT 3331");
        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        assert_eq!(
            client.stats(),
            &ClientStats {
                calls: 2,
                transmissions: 2,
                rtt_samples: 2,
                ..ClientStats::default()
            }
        );
        // Virtual time: loopback answers in 0 ms, so the estimate falls to the minimum.
        assert_eq!(client.estimator().srtt(), Some(Duration::ZERO));
        assert_eq!(client.rto(), DEFAULT_MIN_RTO);
        assert_eq!(seen.lock().unwrap().requests, [1, 2]);
        assert_eq!(client.session(), SESSION);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_requests_back_off_and_karn_takes_no_sample() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        serve(socket, move |nth, datagram| {
            if nth < 2 {
                Vec::new() // the first two requests are lost
            } else {
                forum.answer(datagram, echo)
            }
        });

        let start = Instant::now();
        assert_eq!(client.call(b"MSG t hi").await.unwrap(), b"ok: MSG t hi");
        // Timeouts of 500 ms, then 1 s (doubled), then the third copy is answered.
        assert_eq!(start.elapsed(), ms(1500));
        assert_eq!(client.stats().transmissions, 3);
        assert_eq!(client.stats().retransmissions, 2);
        // Karn: the reply may answer any of the copies, so no sample, and the backoff
        // stays until a clean exchange measures the path again.
        assert_eq!(client.stats().rtt_samples, 0);
        assert_eq!(client.estimator().srtt(), None);
        assert_eq!(client.rto(), ms(2000));
        assert_eq!(seen.lock().unwrap().executed, [1]);

        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        assert_eq!(client.stats().rtt_samples, 1);
        assert_eq!(client.rto(), DEFAULT_MIN_RTO);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_reply_is_answered_from_the_cache_not_executed_twice() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        let posts = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let thread = Arc::clone(&posts);
        serve(socket, move |nth, datagram| {
            let reply = forum.answer(datagram, |body| {
                thread.lock().unwrap().push(body.to_vec());
                b"Message posted to t thread".to_vec()
            });
            if nth == 0 {
                Vec::new() // executed, but the reply is lost
            } else {
                reply
            }
        });

        let reply = client.call(b"MSG t hello").await.unwrap();
        assert_eq!(reply, b"Message posted to t thread");
        assert_eq!(posts.lock().unwrap().len(), 1, "posted exactly once");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.requests, [1, 1]);
        assert_eq!(seen.executed, [1]);
        assert_eq!(client.stats().retransmissions, 1);
        assert_eq!(client.stats().rtt_samples, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_fragments_are_asked_for_with_resend() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        let body: Vec<u8> = (0..20 * MAX_BODY - 100).map(|i| (i % 251) as u8).collect();
        let reply = body.clone();
        serve(socket, move |nth, datagram| {
            let mut out = forum.answer(datagram, |_| reply.clone());
            if nth == 0 {
                assert_eq!(out.len(), 20);
                out = (0..out.len())
                    .zip(out)
                    .filter(|(index, _)| *index != 3 && *index != 7)
                    .map(|(_, datagram)| datagram)
                    .collect();
            }
            out
        });

        let start = Instant::now();
        assert_eq!(client.call(b"RDT t").await.unwrap(), body);
        assert_eq!(seen.lock().unwrap().resends, [(1, vec![3, 7])]);
        assert_eq!(seen.lock().unwrap().executed, [1]);
        let stats = client.stats();
        assert_eq!(
            (
                stats.transmissions,
                stats.resend_requests,
                stats.retransmissions
            ),
            (2, 1, 0)
        );
        // The first fragment gave a sample (0 ms, so RTO = min); the wait for 3 and 7
        // timed out once, but that round had brought new fragments: no backoff.
        assert_eq!(stats.rtt_samples, 1);
        assert_eq!(start.elapsed(), DEFAULT_MIN_RTO);
        assert_eq!(client.rto(), DEFAULT_MIN_RTO);
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_without_new_fragments_back_off_and_give_up() {
        let config = RetryConfig {
            retries: 3,
            ..RetryConfig::default()
        };
        let (mut client, socket) = setup(config).await;
        let (mut forum, _seen) = Forum::new();
        let reply = vec![b'x'; 4 * MAX_BODY];
        // Fragment 2 never arrives, and Resends are ignored.
        serve(socket, move |nth, datagram| {
            if nth > 0 {
                return Vec::new();
            }
            let mut out = forum.answer(datagram, |_| reply.clone());
            out.remove(2);
            out
        });

        let start = Instant::now();
        let error = client.call(b"RDT t").await.unwrap_err();
        assert!(
            matches!(error, CallError::NoResponse { tries: 3, .. }),
            "{error:?}"
        );
        // The first round brought three fragments (RTO min, a sample of 0 ms): no
        // backoff. Then three rounds with nothing new: 20 + 20 + 40 + 80 ms.
        assert_eq!(start.elapsed(), ms(160));
        assert_eq!(client.stats().resend_requests, 3);
        assert_eq!(client.rto(), ms(160));
    }

    #[tokio::test(start_paused = true)]
    async fn long_missing_lists_take_several_resends() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        let fragments = MAX_MISSING_PER_DATAGRAM + 110;
        let body = vec![b'r'; fragments * MAX_BODY];
        let reply = body.clone();
        serve(socket, move |nth, datagram| {
            let mut out = forum.answer(datagram, |_| reply.clone());
            if nth == 0 {
                out.truncate(1); // only fragment 0 arrives
            }
            out
        });

        assert_eq!(client.call(b"RDT big").await.unwrap(), body);
        let seen = seen.lock().unwrap();
        let lengths: Vec<usize> = seen.resends.iter().map(|(_, list)| list.len()).collect();
        assert_eq!(
            lengths,
            [
                MAX_MISSING_PER_DATAGRAM,
                fragments - 1 - MAX_MISSING_PER_DATAGRAM
            ]
        );
        assert_eq!(seen.resends[0].1[0], 1);
        assert_eq!(client.stats().resend_requests, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_with_progress_is_not_a_failed_try() {
        // Two tries only, but each round brings one new fragment, so the call goes on.
        let config = RetryConfig {
            retries: 2,
            ..RetryConfig::default()
        };
        let (mut client, socket) = setup(config).await;
        let (mut forum, _seen) = Forum::new();
        let body = vec![b'p'; 4 * MAX_BODY];
        let reply = body.clone();
        serve(socket, move |_, datagram| {
            let mut out = forum.answer(datagram, |_| reply.clone());
            out.truncate(1); // one fragment per answer
            out
        });

        assert_eq!(client.call(b"RDT slow").await.unwrap(), body);
        assert_eq!(client.stats().resend_requests, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicate_stale_and_malformed_datagrams_are_ignored() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, _seen) = Forum::new();
        let body = vec![b'd'; 3 * MAX_BODY];
        let reply = body.clone();
        let mut previous: Vec<Vec<u8>> = Vec::new();
        serve(socket, move |nth, datagram| {
            let out = forum.answer(datagram, |_| reply.clone());
            let mut sent = Vec::new();
            if nth == 1 {
                let wrong_kind = Repr {
                    kind: Kind::Resend,
                    session: SESSION,
                    request: 2,
                    frag: 0,
                    count: 1,
                    body: &[],
                };
                let oversized = Repr {
                    kind: Kind::Reply,
                    session: SESSION,
                    request: 2,
                    frag: 0,
                    count: 3,
                    body: &[0; MAX_BODY + 1],
                };
                sent.push(previous[0].clone()); // a late copy of reply 1: stale
                sent.push(split_reply(SESSION + 1, 2, b"not yours").remove(0)); // stale
                sent.push(wrong_kind.to_vec()); // stale
                sent.push(b"garbage".to_vec()); // malformed
                sent.push(oversized.to_vec()); // malformed
                sent.push(out[0].clone());
                // Fragment 1 "of 5": disagrees with the count of fragment 0. Malformed.
                sent.push(split_reply(SESSION, 2, &[0; 5 * MAX_BODY]).remove(1));
            }
            for datagram in &out {
                sent.push(datagram.clone());
                sent.push(datagram.clone());
            }
            previous = out;
            sent
        });

        assert_eq!(client.call(b"RDT a").await.unwrap(), body);
        // 0, 0, 1, 1, 2: the copies of 0 and 1 are duplicates, the copy of 2 is left.
        assert_eq!(client.stats().duplicates, 2);
        assert_eq!(client.call(b"RDT b").await.unwrap(), body);
        let stats = client.stats();
        // The copy of reply 1's last fragment, then the three above.
        assert_eq!(stats.stale, 4);
        assert_eq!(stats.malformed, 3);
        // The early fragment 0, then 0, 0, 1, 1, 2.
        assert_eq!(stats.duplicates, 2 + 3);
        assert_eq!((stats.retransmissions, stats.rtt_samples), (0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn error_reply_refuses_and_still_uses_the_id() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        serve(socket, move |nth, datagram| {
            if nth == 0 {
                let packet = Packet::new_checked(datagram).unwrap();
                vec![
                    error_datagram(SESSION, 99, "not for you"), // another request: stale
                    error_datagram(packet.session(), packet.request(), "unknown session"),
                ]
            } else {
                forum.answer(datagram, echo)
            }
        });

        let error = client.call(b"LST").await.unwrap_err();
        assert!(matches!(&error, CallError::Refused(text) if text == "unknown session"));
        assert_eq!(
            error.to_string(),
            "the server refused the request: unknown session"
        );
        assert_eq!(client.stats().stale, 1);
        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        assert_eq!(seen.lock().unwrap().requests, [2]);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_server_gives_no_response_after_the_retries() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let server = socket.local_addr().unwrap();

        let start = Instant::now();
        let error = client.call(b"LST").await.unwrap_err();
        assert!(
            matches!(error, CallError::NoResponse { tries: DEFAULT_RETRIES, peer } if peer == server),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("no response from {server} after 8 tries")
        );
        // 0.5 + 1 + 2 + 2 + 2 + 2 + 2 + 2 s, every try but the last answered by a
        // retransmission.
        assert_eq!(start.elapsed(), ms(13_500));
        assert_eq!(client.stats().transmissions, 8);
        assert_eq!(client.stats().retransmissions, 7);
        assert_eq!(client.rto(), DEFAULT_MAX_RTO);

        let mut buffer = [0u8; RECEIVE_BUFFER];
        for _ in 0..8 {
            let len = socket.try_recv(&mut buffer).unwrap();
            assert_eq!(Packet::new_checked(&buffer[..len]).unwrap().request(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_retries_means_one_try() {
        let config = RetryConfig {
            retries: 0,
            ..RetryConfig::default()
        };
        let (mut client, _socket) = setup(config).await;
        let error = client.call(b"LST").await.unwrap_err();
        assert!(matches!(error, CallError::NoResponse { tries: 1, .. }));
        assert_eq!(client.stats().transmissions, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn too_long_request_is_refused_before_sending() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        serve(socket, move |_, datagram| forum.answer(datagram, echo));

        let error = client.call(&vec![b'x'; MAX_BODY + 1]).await.unwrap_err();
        assert!(matches!(error, CallError::TooLong { len } if len == MAX_BODY + 1));
        assert_eq!(
            error.to_string(),
            "a request of 1181 bytes does not fit in one datagram (at most 1180 bytes)"
        );
        assert_eq!(client.stats(), &ClientStats::default());

        let longest = vec![b'x'; MAX_BODY];
        assert_eq!(client.call(&longest).await.unwrap(), echo(&longest));
        assert_eq!(seen.lock().unwrap().requests, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_server_is_a_loss_and_retried() {
        // A port nothing listens on until the fake server starts 1 s (virtual) later,
        // like a server being restarted.
        let placeholder = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = placeholder.local_addr().unwrap();
        drop(placeholder);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(addr).await.unwrap();
        let mut client = ReliableClient::new(Arc::new(socket), SESSION, RetryConfig::default());
        assert_eq!(client.peer(), addr);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let socket = UdpSocket::bind(addr).await.unwrap();
            let (mut forum, _seen) = Forum::new();
            serve(socket, move |_, datagram| forum.answer(datagram, echo));
        });

        let start = Instant::now();
        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        // Tries at 0 and 0.5 s hit the closed port; the one at 1.5 s is answered.
        assert_eq!(start.elapsed(), ms(1500));
        assert_eq!(client.stats().retransmissions, 2);
        assert!(client.stats().unreachable >= 1, "{:?}", client.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn long_reply_completes_through_seeded_loss() {
        const LOSS: f64 = 0.2;
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let (mut forum, seen) = Forum::new();
        let mut body = vec![0u8; 150_000];
        ChaCha8Rng::seed_from_u64(150).fill(&mut body[..]);
        let reply = body.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(3331);
        let dropped = Arc::new(Mutex::new((0usize, 0usize)));
        let counter = Arc::clone(&dropped);
        serve(socket, move |_, datagram| {
            // Both directions lose 20%: requests and resends on the way in, fragments
            // on the way out.
            if rng.gen_bool(LOSS) {
                counter.lock().unwrap().0 += 1;
                return Vec::new();
            }
            let out = forum.answer(datagram, |_| reply.clone());
            let before = out.len();
            let kept: Vec<Vec<u8>> = out.into_iter().filter(|_| !rng.gen_bool(LOSS)).collect();
            counter.lock().unwrap().1 += before - kept.len();
            kept
        });

        assert_eq!(client.call(b"RDT big").await.unwrap(), body);
        assert_eq!(seen.lock().unwrap().executed, [1]);
        let (lost_in, lost_out) = *dropped.lock().unwrap();
        assert!(
            lost_in > 0 && lost_out > 20,
            "the loss must bite: {lost_in} lost on the way in, {lost_out} on the way out"
        );
        assert!(client.stats().resend_requests >= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_is_a_valid_datagram_the_server_never_answers() {
        let (mut client, socket) = setup(RetryConfig::default()).await;
        let heartbeat = client.heartbeat();
        let packet = Packet::new_checked(&heartbeat[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            (repr.kind, repr.session, repr.request, repr.body),
            (Kind::Heartbeat, SESSION, 0, &[][..])
        );

        let (mut forum, seen) = Forum::new();
        serve(socket, move |_, datagram| forum.answer(datagram, echo));
        client.socket.send(&heartbeat).await.unwrap();
        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        client.socket.send(&heartbeat).await.unwrap();
        assert_eq!(client.call(b"LST").await.unwrap(), b"ok: LST");
        assert_eq!(seen.lock().unwrap().heartbeats, 2);
        assert_eq!(client.stats().retransmissions, 0);
    }
}
