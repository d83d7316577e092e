//! The proxy's fast path for UDP (lab 2): used instead of the [`udp`](super::udp)
//! event loop when nothing can happen to a datagram on its way (no impairment in either
//! direction: [`is_transparent`](super::model::Impairments::is_transparent)) and no
//! `--log` is written, for as long as at most [`FAST_PATH_CLIENTS`] clients are mapped
//! at once. There is then nothing to decide, schedule or record, and plain blocking
//! threads relay each datagram with two system calls, a receive and a send:
//!
//! ```text
//!              listen socket (blocking)            one socket per client, connected
//!  client A ──►┌────────────────────────┐  send   ┌───────────────┐
//!  client B ──►│ c2s thread: recv_from, ├────────►│ upstream A, B ├───► upstream
//!              │ find the client's      │         └───────┬───────┘
//!              │ socket (create it)     │                 │ recv: a reader thread
//!  client A ◄──┤                        │◄────────────────┘ per client, send_to
//!              └────────────────────────┘   through the listen socket
//! ```
//!
//! **Why it exists.** A relay costs every round trip two extra wake-ups (it sleeps
//! waiting for the request and again for the reply), whatever it does in between; what
//! it controls is the work around them. The event loop makes eight system calls per
//! round trip (per direction: the receive, a second receive that finds the socket
//! empty, `epoll_wait`, the send) and hands every reply from a reader task to the relay
//! task through a channel. A thread blocked in `recv` needs only the receive and the
//! send: half the system calls, no channel, no timers, no copy. Measured with client,
//! proxy and server pinned to one core (where a wake-up is cheap and the relay's own
//! work shows), one client made 26,500-27,000 round trips/s through it against
//! 21,600-24,700 through the event loop and 24,600-25,400 through socat (three runs,
//! 2 cores); unpinned, where waking an idle core costs more than all of this, the
//! three were within the noise of each other.
//!
//! **Why only for a few clients.** With many busy clients it is the other way round:
//! one event loop wakes once for many datagrams, while a thread per client wakes once
//! per datagram, and every wake-up costs CPU that the clients and the server need too
//! (at 8 clients the threads made 0.88x the event loop's round trips, at 50 0.75x).
//! So when a client arrives while [`FAST_PATH_CLIENTS`] are mapped, the fast path
//! hands its listening socket and its client table (the same upstream sockets, so each
//! client keeps its source port towards the upstream) to the event loop, which serves
//! from then on, for the rest of the run.
//!
//! **What stays the same.** Every counter of the summary table counts as on the event
//! loop (atomics: the threads update them concurrently). A client gets its own upstream
//! socket; a mapping idle for `idle_timeout` is removed by the same rule; the table
//! holds at most `max_mappings` and evicts the least recently used client when full;
//! an ICMP "port unreachable" from the upstream is counted. The seed changes nothing
//! here (there is nothing to draw).
//!
//! **Threads.** The c2s thread owns the table: only it creates, expires and evicts
//! mappings, so the table needs no lock; a reader thread shares with it only its
//! socket, a "last used" time and two flags. Removing a mapping shuts its socket down
//! for reading, which wakes its reader at once. Every blocking receive also has a
//! timeout ([`STOP_CHECK`], [`READER_CHECK`]) after which the thread looks at the stop
//! flag, so the proxy always stops.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::sync::oneshot;

use super::model::Direction;
use super::stats::{add, Counters};
use super::udp::{
    count_mapping_failure, count_send, effective_idle_timeout, is_unreachable, sweep_period,
    UdpRelay, UdpSettings, RECEIVE_BUFFER,
};
use crate::net::{self, describe};
use crate::output::Reporter;

/// The fast path serves at most this many clients at once (a reader thread each); one
/// more, and the event loop takes over. Measured on 2 cores: at 3 busy clients the
/// threads still made as many round trips as the event loop, at 8 fewer.
pub const FAST_PATH_CLIENTS: usize = 4;

/// How long the c2s thread waits in `recv_from` before it looks at the stop flag (and
/// whether a sweep is due): the longest Ctrl-C may take to stop the relay.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// How long a reader thread waits in `recv` before it looks at the stop flag. Removing
/// a mapping or stopping the relay also shuts its socket down, which ends the wait at
/// once; after a hand-over the socket lives on, so its reader notices with the next
/// reply or this timeout (whichever of it and the event loop gets a reply first
/// forwards it).
pub const READER_CHECK: Duration = Duration::from_millis(200);

/// Whether the fast path relays for `settings`: neither direction has an impairment
/// that could change a datagram, and no datagram log is written (its lines need the
/// model's per-direction indices, taken in arrival order by one task).
pub fn applies(settings: &UdpSettings, logging: bool) -> bool {
    !logging && settings.c2s.is_transparent() && settings.s2c.is_transparent()
}

/// What every thread of the fast path shares.
struct Shared {
    /// The proxy's listening socket, blocking: the c2s thread receives on it, every
    /// reader sends replies through it (sends on one UDP socket from several threads
    /// are safe; each datagram is one system call).
    listen: UdpSocket,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    reporter: Reporter,
    /// Time zero of the "last used" clock.
    started: Instant,
    stop: AtomicBool,
    /// Set when the event loop takes over: readers forward what they already received,
    /// then end.
    handed_over: AtomicBool,
}

impl Shared {
    /// Nanoseconds since `started`, the "last used" clock.
    fn clock(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.started))
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A client's upstream socket and what its reader thread and the c2s thread share.
struct Slot {
    /// Connected to the upstream; blocking, with timeouts.
    socket: UdpSocket,
    client: SocketAddr,
    /// When a datagram last passed either way ([`Shared::clock`]).
    last_used: AtomicU64,
    /// Set when the mapping is removed: the reader stops, and a reply it was handed
    /// just then is not forwarded.
    closed: AtomicBool,
    /// Set by the reader when the socket failed for good: the client's next datagram
    /// gets a new mapping.
    failed: AtomicBool,
}

impl Slot {
    fn touch(&self, clock: u64) {
        self.last_used.store(clock, Ordering::Relaxed);
    }

    fn last_used(&self) -> u64 {
        self.last_used.load(Ordering::Relaxed)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A client's entry in the c2s thread's table.
struct Mapping {
    slot: Arc<Slot>,
    reader: JoinHandle<()>,
}

impl Mapping {
    /// Stops the reader: marks the slot closed, then shuts the socket down for
    /// reading, which makes a `recv` blocked on it return at once (Linux returns 0
    /// bytes). If that fails, the reader still stops at its next [`READER_CHECK`].
    /// Returns the thread, for whoever wants to wait for its end.
    fn close(self) -> JoinHandle<()> {
        self.slot.closed.store(true, Ordering::Release);
        let _ = SockRef::from(&self.slot.socket).shutdown(Shutdown::Read);
        self.reader
    }
}

/// What the fast path hands to the event loop (`UdpRelay::take_over`).
pub struct Handover {
    /// The listening socket (another handle to it: the fast path no longer reads it).
    pub(super) listen: UdpSocket,
    /// Every client mapped so far: its upstream socket (another handle to it) and when
    /// it was last used.
    pub(super) mappings: Vec<(SocketAddr, UdpSocket, Instant)>,
    /// The client that did not fit, and its datagram: the first the event loop relays.
    pub(super) first: (SocketAddr, Vec<u8>),
}

/// The fast path, running: the c2s thread, which owns the reader threads. Built by
/// [`FastRelay::start`], stopped by [`FastRelay::stop`].
pub struct FastRelay {
    shared: Arc<Shared>,
    c2s: Option<JoinHandle<()>>,
    /// What the event loop needs to take over.
    settings: UdpSettings,
    max_clients: usize,
    /// Receives the hand-over; closed without one when the c2s thread ends otherwise.
    /// `None` once received.
    handover: Option<oneshot::Receiver<Handover>>,
}

impl FastRelay {
    /// Starts relaying between clients on `listen` and `upstream`: sets `listen` to
    /// blocking mode with timeouts and starts the c2s thread. `counters` are shared
    /// with the TCP relay and the periodic summary.
    ///
    /// # Errors
    /// The OS error when the socket cannot be switched to blocking mode or given its
    /// timeouts, or the thread cannot be started.
    pub fn start(
        listen: UdpSocket,
        upstream: SocketAddr,
        settings: &UdpSettings,
        counters: Arc<Counters>,
        reporter: Reporter,
    ) -> io::Result<FastRelay> {
        Self::start_with(
            listen,
            upstream,
            settings,
            counters,
            reporter,
            FAST_PATH_CLIENTS,
        )
    }

    /// [`FastRelay::start`], handing over when a client arrives while `max_clients`
    /// are mapped.
    fn start_with(
        listen: UdpSocket,
        upstream: SocketAddr,
        settings: &UdpSettings,
        counters: Arc<Counters>,
        reporter: Reporter,
        max_clients: usize,
    ) -> io::Result<FastRelay> {
        let idle_timeout = effective_idle_timeout(settings.idle_timeout);
        let period = sweep_period(idle_timeout);
        listen.set_nonblocking(false)?;
        // It wakes for the stop flag, and for sweeps as often as the event loop.
        listen.set_read_timeout(Some(STOP_CHECK.min(period)))?;
        // A UDP send waits only while the socket's send buffer is full, which a
        // datagram leaving it soon ends; the timeout makes sure a thread waiting there
        // still sees the stop flag (the datagram is then counted as a send error).
        listen.set_write_timeout(Some(STOP_CHECK))?;
        let shared = Arc::new(Shared {
            listen,
            upstream,
            counters,
            reporter,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
        });
        let table = Table {
            shared: Arc::clone(&shared),
            mappings: HashMap::new(),
            max_clients,
            idle_timeout,
            sweep_period: period,
            max_mappings: settings.max_mappings.max(1),
        };
        let (handover_tx, handover) = oneshot::channel();
        let c2s = thread::Builder::new()
            .name("socklab-udp-c2s".to_string())
            .spawn(move || table.run(handover_tx))?;
        Ok(FastRelay {
            shared,
            c2s: Some(c2s),
            settings: settings.clone(),
            max_clients,
            handover: Some(handover),
        })
    }

    /// Waits until a client too many arrives, then returns the event loop that takes
    /// over from here on (it has relayed that client's datagram already); until then the
    /// threads relay. Returns `None` if the relay ended otherwise (its thread failed,
    /// or the hand-over did: said on the reporter). Once it has returned, it never
    /// resolves again.
    pub async fn serve(&mut self) -> Option<UdpRelay> {
        let Some(receiver) = self.handover.as_mut() else {
            return std::future::pending().await;
        };
        let received = receiver.await;
        self.handover = None;
        let handover = received.ok()?;
        let shared = &self.shared;
        let relay = UdpRelay::take_over(
            handover,
            shared.upstream,
            self.settings.clone(),
            tokio::time::Instant::from_std(shared.started),
            Arc::clone(&shared.counters),
            shared.reporter.clone(),
        )
        .await;
        match relay {
            Ok(relay) => {
                shared.reporter.detail(format!(
                    "udp: more than {} clients at once, so the event loop takes over from \
                     the fast path",
                    self.max_clients
                ));
                Some(relay)
            }
            Err(cause) => {
                shared.reporter.info(format!(
                    "udp relaying stops: cannot hand the listening socket to the event \
                     loop: {}",
                    describe(&cause)
                ));
                None
            }
        }
    }

    /// Stops every thread and waits for them: within [`STOP_CHECK`] for the c2s
    /// thread, at once for the readers it stops (within [`READER_CHECK`] for those
    /// of a hand-over). After it, the threads no longer change the counters.
    pub async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let Some(c2s) = self.c2s.take() else {
            return;
        };
        // Joining a thread blocks; the runtime's thread has other work.
        let joined = tokio::task::spawn_blocking(move || c2s.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            self.shared
                .reporter
                .info("the udp relay thread failed (please report it)");
        }
    }
}

/// The client table, owned by the c2s thread.
struct Table {
    shared: Arc<Shared>,
    mappings: HashMap<SocketAddr, Mapping>,
    /// Hand over when a new client arrives while this many are mapped.
    max_clients: usize,
    idle_timeout: Duration,
    sweep_period: Duration,
    max_mappings: usize,
}

impl Table {
    /// The c2s thread: relays until the stop flag is set or it has handed over, then
    /// waits for its readers.
    fn run(mut self, handover: oneshot::Sender<Handover>) {
        let readers: Vec<JoinHandle<()>> = match self.relay_requests() {
            Some(prepared) => {
                // The readers forward what they hold and end: the event loop reads
                // their sockets now.
                let readers = self.mappings.drain().map(|(_, m)| m.reader).collect();
                let _ = handover.send(prepared);
                readers
            }
            None => self.mappings.drain().map(|(_, m)| m.close()).collect(),
        };
        for reader in readers {
            let _ = reader.join();
        }
    }

    /// Relays requests until the stop flag is set (returns `None`) or a client too
    /// many arrives (returns the hand-over, with the readers told), sweeping idle
    /// mappings on the way.
    fn relay_requests(&mut self) -> Option<Handover> {
        let shared = Arc::clone(&self.shared);
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let mut next_sweep = Instant::now() + self.sweep_period;
        while !shared.stopping() {
            let received = shared.listen.recv_from(&mut buffer);
            let now = Instant::now();
            match received {
                Ok((n, client)) => {
                    if let Some(handover) = self.forward(client, &buffer[..n], now) {
                        return Some(handover);
                    }
                }
                Err(error) if is_timeout(&error) => {}
                Err(error) => {
                    // Typically an ICMP error about an earlier send to a client that
                    // has gone away; it says nothing about the next datagram.
                    shared.reporter.detail(format!(
                        "receiving on the listening socket failed: {}",
                        describe(&error)
                    ));
                }
            }
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + self.sweep_period;
            }
        }
        None
    }

    /// Sends one request on to the upstream through the client's socket, or, for a
    /// client too many, returns the hand-over (the event loop counts and relays it).
    fn forward(&mut self, client: SocketAddr, payload: &[u8], now: Instant) -> Option<Handover> {
        let is_new = !self.mappings.contains_key(&client);
        if is_new
            && self.mappings.len() >= self.max_clients
            && self.mappings.len() < self.max_mappings
        {
            match self.hand_over(client, payload) {
                Ok(handover) => return Some(handover),
                Err(cause) => {
                    // Out of file descriptors, typically: this client is not served,
                    // as when its own socket cannot be made.
                    let reason =
                        format!("cannot hand over to the event loop: {}", describe(&cause));
                    count_mapping_failure(
                        &self.shared.counters,
                        &self.shared.reporter,
                        client,
                        &reason,
                    );
                    return None;
                }
            }
        }
        let shared = Arc::clone(&self.shared);
        let lane = shared.counters.direction(Direction::ClientToServer);
        add(&lane.received, 1);
        add(&lane.received_bytes, payload.len() as u64);
        let slot = self.mapping_for(client, now)?;
        count_send(
            &shared.counters,
            &shared.reporter,
            Direction::ClientToServer,
            payload.len(),
            slot.socket.send(payload),
        );
        None
    }

    /// Prepares the hand-over: a second handle to every socket (so the event loop owns
    /// its own), then tells the readers.
    fn hand_over(&self, client: SocketAddr, payload: &[u8]) -> io::Result<Handover> {
        let listen = self.shared.listen.try_clone()?;
        let now = Instant::now();
        let clock = self.shared.clock(now);
        let mut mappings = Vec::with_capacity(self.mappings.len());
        for (&mapped, mapping) in &self.mappings {
            let idle = Duration::from_nanos(clock.saturating_sub(mapping.slot.last_used()));
            let last_used = now.checked_sub(idle).unwrap_or(self.shared.started);
            mappings.push((mapped, mapping.slot.socket.try_clone()?, last_used));
        }
        self.shared.handed_over.store(true, Ordering::Release);
        Ok(Handover {
            listen,
            mappings,
            first: (client, payload.to_vec()),
        })
    }

    /// The upstream socket of `client`, created (and its reader thread started) on the
    /// client's first datagram, or again after its socket failed. `None` when no
    /// socket or thread could be made (counted).
    fn mapping_for(&mut self, client: SocketAddr, now: Instant) -> Option<Arc<Slot>> {
        let clock = self.shared.clock(now);
        if let Some(mapping) = self.mappings.get(&client) {
            if !mapping.slot.failed.load(Ordering::Acquire) {
                mapping.slot.touch(clock);
                return Some(Arc::clone(&mapping.slot));
            }
            // Its reader said why and has stopped.
            self.remove(&client);
        }
        if self.mappings.len() >= self.max_mappings {
            self.evict_least_recently_used();
        }
        let shared = Arc::clone(&self.shared);
        let fail = |reason: &dyn std::fmt::Display| {
            count_mapping_failure(&shared.counters, &shared.reporter, client, reason);
        };
        let socket = match net::connect_udp_blocking(shared.upstream) {
            Ok(socket) => socket,
            Err(error) => {
                fail(&error);
                return None;
            }
        };
        let timeouts = socket
            .set_read_timeout(Some(READER_CHECK))
            .and_then(|()| socket.set_write_timeout(Some(STOP_CHECK)));
        if let Err(cause) = timeouts {
            fail(&describe(&cause));
            return None;
        }
        let slot = Arc::new(Slot {
            socket,
            client,
            last_used: AtomicU64::new(clock),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let spawned = {
            let (shared, slot) = (Arc::clone(&shared), Arc::clone(&slot));
            thread::Builder::new()
                .name("socklab-udp-s2c".to_string())
                .spawn(move || read_replies(&shared, &slot))
        };
        let reader = match spawned {
            Ok(reader) => reader,
            Err(cause) => {
                // Out of threads (a process or cgroup limit): like out of sockets.
                fail(&format!("cannot start a thread: {}", describe(&cause)));
                return None;
            }
        };
        add(&shared.counters.udp.mappings_created, 1);
        if shared.reporter.is_verbose() {
            let local = slot
                .socket
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            shared.reporter.detail(format!(
                "new udp client {client}: relayed through {local} to {}",
                shared.upstream
            ));
        }
        let mapping = Mapping {
            slot: Arc::clone(&slot),
            reader,
        };
        self.mappings.insert(client, mapping);
        Some(slot)
    }

    /// Removes a mapping and stops its reader, without waiting for it (it ends at once:
    /// [`Mapping::close`]).
    fn remove(&mut self, client: &SocketAddr) {
        if let Some(mapping) = self.mappings.remove(client) {
            let _ = mapping.close();
        }
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .mappings
            .iter()
            .min_by_key(|(_, m)| m.slot.last_used())
            .map(|(client, _)| *client);
        if let Some(client) = oldest {
            self.remove(&client);
            add(&self.shared.counters.udp.mappings_evicted, 1);
            self.shared
                .reporter
                .detail(format!("udp client table full: evicted {client}"));
        }
    }

    /// Removes the mappings idle for `idle_timeout` or longer (the event loop's rule).
    fn sweep(&mut self, now: Instant) {
        let clock = self.shared.clock(now);
        let idle = nanos(self.idle_timeout);
        let expired: Vec<SocketAddr> = self
            .mappings
            .iter()
            .filter(|(_, m)| clock.saturating_sub(m.slot.last_used()) >= idle)
            .map(|(client, _)| *client)
            .collect();
        for client in &expired {
            self.remove(client);
        }
        if !expired.is_empty() {
            add(
                &self.shared.counters.udp.mappings_expired,
                expired.len() as u64,
            );
            self.shared
                .reporter
                .detail(format!("{} idle udp client(s) expired", expired.len()));
        }
    }
}

/// A reader thread: relays the replies arriving on one client's upstream socket back to
/// the client, until the mapping is removed, the relay stops or hands over.
fn read_replies(shared: &Shared, slot: &Slot) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        let received = slot.socket.recv(&mut buffer);
        // Checked after every return: closing the slot makes `recv` return 0 bytes
        // (an empty datagram, for all we could tell otherwise).
        if slot.is_closed() || shared.stopping() {
            return;
        }
        match received {
            Ok(n) => {
                let lane = shared.counters.direction(Direction::ServerToClient);
                add(&lane.received, 1);
                add(&lane.received_bytes, n as u64);
                slot.touch(shared.clock(Instant::now()));
                let result = shared.listen.send_to(&buffer[..n], slot.client);
                count_send(
                    &shared.counters,
                    &shared.reporter,
                    Direction::ServerToClient,
                    n,
                    result,
                );
            }
            // After a hand-over the socket does not block any more: this ends the
            // wait at once.
            Err(error) if is_timeout(&error) => {}
            Err(error) if is_unreachable(&error) => {
                add(&shared.counters.udp.unreachable, 1);
                shared.reporter.detail(format!(
                    "upstream {} unreachable (for client {})",
                    shared.upstream, slot.client
                ));
            }
            Err(cause) => {
                shared.reporter.info(format!(
                    "upstream socket of client {} failed: {}; it gets a new one",
                    slot.client,
                    describe(&cause)
                ));
                slot.failed.store(true, Ordering::Release);
                return;
            }
        }
        if shared.handed_over() {
            return;
        }
    }
}

/// Whether a receive error is the end of a receive timeout (Linux says `EAGAIN`,
/// `WouldBlock`; other systems `TimedOut`).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::{Delay, Impairments, LossModel};
    use crate::proxy::stats::ProxySummary;

    /// Every test's waits end after this, so a bug fails the test instead of hanging it.
    const WAIT: Duration = Duration::from_secs(5);

    /// Well above [`STOP_CHECK`] and [`READER_CHECK`], well below `WAIT`.
    const PROMPTLY: Duration = Duration::from_secs(1);

    /// A UDP server on loopback (a thread), as the upstream: answers every datagram
    /// with `reply(peer, payload)`. It ends after `WAIT` without a datagram.
    fn upstream(reply: fn(SocketAddr, &[u8]) -> Vec<u8>) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let addr = socket.local_addr().unwrap();
        thread::spawn(move || {
            let mut buffer = vec![0u8; RECEIVE_BUFFER];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&reply(peer, &buffer[..n]), peer);
            }
        });
        addr
    }

    fn echo_upstream() -> SocketAddr {
        upstream(|_, payload| payload.to_vec())
    }

    /// Answers with the address the datagram came from: the proxy's source port for
    /// that client.
    fn whoami_upstream() -> SocketAddr {
        upstream(|peer, _| peer.to_string().into_bytes())
    }

    fn settings() -> UdpSettings {
        UdpSettings {
            c2s: Impairments::default(),
            s2c: Impairments::default(),
            seed: 1,
            idle_timeout: Duration::from_secs(60),
            max_mappings: 64,
        }
    }

    /// Starts a fast relay in front of `upstream` that hands over when a client
    /// arrives while `max_clients` are mapped; returns it, its address and its
    /// counters.
    fn start(
        settings: &UdpSettings,
        upstream: SocketAddr,
        max_clients: usize,
    ) -> (FastRelay, SocketAddr, Arc<Counters>) {
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = listen.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let relay = FastRelay::start_with(
            listen,
            upstream,
            settings,
            Arc::clone(&counters),
            Reporter::silent(),
            max_clients,
        )
        .unwrap();
        (relay, addr, counters)
    }

    fn client(relay: SocketAddr) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(relay).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket
    }

    /// Sends `text` and returns the reply.
    fn ask(socket: &UdpSocket, text: &str) -> String {
        socket.send(text.as_bytes()).unwrap();
        let mut buffer = [0u8; 128];
        let n = socket.recv(&mut buffer).expect("a reply in time");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    fn ping(socket: &UdpSocket, text: &str) {
        assert_eq!(ask(socket, text), text);
    }

    /// `clients` clients at once, each sending `messages` numbered messages and
    /// checking that every reply is its own.
    fn many_clients(relay: SocketAddr, clients: usize, messages: usize) {
        let threads: Vec<_> = (0..clients)
            .map(|id| {
                thread::spawn(move || {
                    let socket = client(relay);
                    for k in 0..messages {
                        ping(&socket, &format!("client {id} message {k}"));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a client got a wrong reply or none");
        }
    }

    fn assert_all_relayed(summary: &ProxySummary, total: u64) {
        for direction in [summary.c2s, summary.s2c] {
            assert_eq!((direction.received, direction.forwarded), (total, total));
            assert_eq!(direction.send_errors, 0);
        }
    }

    /// Waits until `done` holds for the counters; no event announces what they count
    /// (an expiry, an ICMP report), so they are polled.
    fn wait_until(counters: &Counters, done: impl Fn(&ProxySummary) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&counters.snapshot(Duration::ZERO)) {
            assert!(Instant::now() < deadline, "the counters never got there");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the relay has handed over (its `serve` has something to return).
    async fn handed_over(relay: &mut FastRelay) -> bool {
        tokio::time::timeout(Duration::ZERO, relay.serve())
            .await
            .is_ok()
    }

    #[test]
    fn applies_only_when_nothing_can_change_a_datagram() {
        assert!(applies(&settings(), false));
        assert!(!applies(&settings(), true), "--log needs the event loop");
        let mut lossy = settings();
        lossy.c2s.loss = Some(LossModel::Bernoulli(0.01));
        assert!(!applies(&lossy, false));
        let mut delayed = settings();
        delayed.s2c.delay = Some(Delay {
            delay: Duration::from_millis(1),
            ..Delay::default()
        });
        assert!(!applies(&delayed, false));
        // Settings that do nothing change nothing.
        let mut zero = settings();
        zero.c2s.loss = Some(LossModel::Bernoulli(0.0));
        zero.s2c.delay = Some(Delay::default());
        assert!(applies(&zero, false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_clients_on_the_fast_path_get_only_their_own_replies() {
        // Room for all of them: no hand-over, a reader thread each.
        let (mut relay, addr, counters) = start(&settings(), echo_upstream(), 50);
        many_clients(addr, 50, 20);
        assert!(!handed_over(&mut relay).await);
        relay.stop().await;
        let summary = counters.snapshot(Duration::ZERO);
        assert_all_relayed(&summary, 50 * 20);
        assert_eq!(summary.udp.mappings_created, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_too_many_hands_over_to_the_event_loop_mid_flight() {
        let (mut fast, addr, counters) = start(&settings(), echo_upstream(), FAST_PATH_CLIENTS);
        let (stop, stopped) = oneshot::channel::<()>();
        // What the proxy's run does: serve on the fast path, then on the event loop.
        let serving = tokio::spawn(async move {
            let mut relay = fast.serve().await.expect("the event loop takes over");
            tokio::select! {
                () = relay.serve() => {}
                _ = stopped => {}
            }
            fast.stop().await;
        });
        // Fifty at once: the hand-over happens while the first clients are busy.
        many_clients(addr, 50, 20);
        let _ = stop.send(());
        tokio::time::timeout(WAIT, serving)
            .await
            .expect("the relay stops")
            .expect("the relay did not panic");
        let summary = counters.snapshot(Duration::ZERO);
        assert_all_relayed(&summary, 50 * 20);
        // The event loop adopted the fast path's clients rather than mapping them anew.
        assert_eq!(summary.udp.mappings_created, 50);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_keep_their_source_port_across_the_hand_over() {
        let (mut fast, addr, _) = start(&settings(), whoami_upstream(), 1);
        let first = client(addr);
        let before = ask(&first, "who am i?");
        // A second client: the event loop takes over.
        let second = client(addr);
        second.send(b"me too").unwrap();
        let mut relay = tokio::time::timeout(WAIT, fast.serve())
            .await
            .expect("a hand-over in time")
            .expect("the event loop takes over");
        let serving = tokio::spawn(async move { relay.serve().await });
        assert_ne!(ask(&second, "who am i?"), before);
        assert_eq!(ask(&first, "who am i?"), before);
        serving.abort();
        fast.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_table_evicts_the_least_recently_used_client() {
        // The table is smaller than the fast path: it evicts rather than hands over.
        let small = UdpSettings {
            max_mappings: 2,
            ..settings()
        };
        let (mut relay, addr, counters) = start(&small, echo_upstream(), FAST_PATH_CLIENTS);
        let (a, b, c) = (client(addr), client(addr), client(addr));
        ping(&a, "a1");
        ping(&b, "b1");
        ping(&a, "a2");
        // Full: c's arrival evicts b, used least recently.
        ping(&c, "c1");
        ping(&a, "a3");
        let udp = counters.snapshot(Duration::ZERO).udp;
        assert_eq!((udp.mappings_created, udp.mappings_evicted), (3, 1));
        // b is a new client again, and still served.
        ping(&b, "b2");
        let udp = counters.snapshot(Duration::ZERO).udp;
        assert_eq!((udp.mappings_created, udp.mappings_evicted), (4, 2));
        assert!(!handed_over(&mut relay).await);
        relay.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_mappings_expire() {
        let quick = UdpSettings {
            idle_timeout: Duration::from_millis(20),
            ..settings()
        };
        let (relay, addr, counters) = start(&quick, echo_upstream(), FAST_PATH_CLIENTS);
        let socket = client(addr);
        ping(&socket, "hello");
        wait_until(&counters, |s| s.udp.mappings_expired == 1);
        // A client that comes back is simply mapped again.
        ping(&socket, "again");
        assert_eq!(counters.snapshot(Duration::ZERO).udp.mappings_created, 2);
        relay.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_upstream_is_counted_and_the_relay_goes_on() {
        // Nothing listens there once this socket is gone: the kernel answers with ICMP
        // "port unreachable".
        let gone = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (relay, addr, counters) = start(&settings(), gone, FAST_PATH_CLIENTS);
        let socket = client(addr);
        socket.send(b"anyone there?").unwrap();
        wait_until(&counters, |s| s.udp.unreachable >= 1);
        socket.send(b"still nobody?").unwrap();
        wait_until(&counters, |s| s.c2s.received == 2);
        let udp = counters.snapshot(Duration::ZERO).udp;
        assert_eq!((udp.mappings_created, udp.mapping_failures), (1, 0));
        relay.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_ends_every_reader_at_once() {
        let (relay, addr, counters) = start(&settings(), echo_upstream(), FAST_PATH_CLIENTS);
        let clients: Vec<UdpSocket> = (0..FAST_PATH_CLIENTS).map(|_| client(addr)).collect();
        for (i, socket) in clients.iter().enumerate() {
            ping(socket, &format!("client {i}"));
        }
        let stopping = Instant::now();
        relay.stop().await;
        // The c2s thread sees the flag within STOP_CHECK, the readers are woken by
        // the shutdown of their sockets (see the next test).
        assert!(stopping.elapsed() < PROMPTLY, "{:?}", stopping.elapsed());
        // Nothing is relayed any more.
        clients[0].send(b"late").unwrap();
        clients[0]
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(clients[0].recv(&mut [0u8; 16]).is_err());
        assert_eq!(
            counters.snapshot(Duration::ZERO).c2s.received,
            FAST_PATH_CLIENTS as u64
        );
    }

    #[test]
    fn closing_a_mapping_wakes_its_reader_at_once() {
        let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
        let upstream = echo_upstream();
        let shared = Arc::new(Shared {
            listen,
            upstream,
            counters: Arc::new(Counters::default()),
            reporter: Reporter::silent(),
            started: Instant::now(),
            stop: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
        });
        let socket = net::connect_udp_blocking(upstream).unwrap();
        // Far longer than the test may take: only the shutdown can end the wait.
        socket.set_read_timeout(Some(WAIT)).unwrap();
        let slot = Arc::new(Slot {
            socket,
            client: SocketAddr::from(([127, 0, 0, 1], 9)),
            last_used: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        });
        let reader = {
            let (shared, slot) = (Arc::clone(&shared), Arc::clone(&slot));
            thread::spawn(move || read_replies(&shared, &slot))
        };
        let closing = Instant::now();
        Mapping { slot, reader }.close().join().unwrap();
        assert!(closing.elapsed() < PROMPTLY, "{:?}", closing.elapsed());
    }
}
