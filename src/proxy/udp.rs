//! The proxy's UDP relay (lab 2): datagrams from clients go to the upstream server and
//! replies come back, each passing through the impairment [`model`](super::model) of
//! its direction on the way.
//!
//! ```text
//!                      listen socket                      one socket per client,
//!   client 10.0.0.5:4000 ─►┌──────────┐  c2s model  ┌────► connected to the upstream
//!   client 10.0.0.7:5123 ─►│  relay   ├─ schedule ──┤
//!                        ◄─┤ (1 task) │◄─ s2c model ┴──── reader task per socket
//!                          └──────────┘
//! ```
//!
//! - **NAT-style mappings.** Every client address gets its own upstream socket, so the
//!   upstream sees one distinct source port per client and a reply on socket *k* can
//!   only belong to client *k*. A mapping idle for `idle_timeout` (no datagram either
//!   way) is removed. The table holds at most `max_mappings`; when it is full, a new
//!   client evicts the **least recently used** mapping, counted as `evicted`: refusing
//!   newcomers instead would let clients that went away lock everyone else out until
//!   they time out. (An evicted client that comes back simply gets a new mapping, with
//!   a new source port towards the upstream.)
//! - **One model per direction**, shared by all clients. The seed therefore fixes one
//!   decision sequence per direction: "the 3rd datagram from any client to the server",
//!   which is what `--drop-nth 3` means. The model's clock is the time since the proxy
//!   started.
//! - **One task** owns the table, both models and the send schedule, so no locks are
//!   needed and decisions are taken in arrival order. Replies are read by a small task
//!   per upstream socket and handed over through a bounded channel.
//! - **Scheduling.** A datagram the model sends "now" goes out at once; a later one
//!   (delay, jitter, rate queue, and a duplicate, which the model spaces 1 µs behind its
//!   original) waits in a heap ordered by send time, ties in the model's order.
//!   Held-back datagrams (reordering) wait in a table until the model releases them,
//!   together with their copy. Both are bounded ([`MAX_PENDING_DATAGRAMS`],
//!   [`MAX_PENDING_BYTES`]; the model itself holds back at most
//!   [`MAX_HELD`](super::model::MAX_HELD) and queues at most `--queue` for the rate): a
//!   flood beyond that is dropped and counted as a queue drop, so memory stays bounded
//!   whatever arrives.
//! - **Corruption** flips the bit the model chose before sending; the kernel then
//!   computes a valid UDP checksum, so the receiver sees a corrupted payload rather
//!   than a loss (which is what a real corrupted datagram with a bad checksum becomes).
//! - **Errors of single datagrams never stop the relay**: an ICMP "port unreachable"
//!   from the upstream (nothing listens there) arrives as `ECONNREFUSED` on the
//!   connected upstream socket and is counted; a failed send is counted.
//! - **When nothing can happen to a datagram** (no impairment in either direction, no
//!   `--log`), all of the above is work for nothing, and a relay's cost is what a
//!   student measuring latency through it sees. The proxy then starts on the
//!   [`fast`](super::fast) path instead: blocking threads, two system calls per
//!   datagram where this event loop makes four. It serves at most
//!   [`FAST_PATH_CLIENTS`](super::fast::FAST_PATH_CLIENTS) clients at once; with more,
//!   one loop that wakes once for many datagrams is cheaper than a thread per client,
//!   so this relay takes over (`UdpRelay::take_over`) with the same client table and
//!   serves for the rest of the run.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::config::ProxyConfig;
use super::fast::Handover;
use super::log::{Action, DatagramLog, Record};
use super::model::{Direction, DirectionModel, Emission, Impairments, Verdict};
use super::stats::{add, Counters};
use crate::net::{self, describe};
use crate::output::Reporter;

/// A receive buffer one byte larger than the largest IPv4 UDP payload, so no datagram
/// is ever truncated. (A zeroed `Vec` this size is lazily backed by the OS: a reader
/// task that only ever sees 64-byte replies touches one page of it.)
pub(super) const RECEIVE_BUFFER: usize = net::MAX_UDP_PAYLOAD + 1;

/// Replies read from upstream sockets that may wait for the relay task. When it is
/// full the reader tasks wait, the kernel's socket buffers fill and the kernel drops:
/// backpressure instead of unbounded memory.
const REPLY_QUEUE: usize = 256;

/// At most this many datagrams wait in the proxy (delayed, rate-queued or held back),
/// both directions together; more are dropped and counted as queue drops.
pub const MAX_PENDING_DATAGRAMS: usize = 65_536;

/// At most this many payload bytes wait in the proxy (the same bound, in bytes: 1,000
/// maximum-size datagrams are already 64 MB).
pub const MAX_PENDING_BYTES: usize = 64 << 20;

/// Idle mappings are looked for every quarter of the idle timeout, but not more often
/// than this (a sweep walks the whole table)...
const MIN_SWEEP: Duration = Duration::from_millis(10);
/// ...and not less often than this (the sweep also flushes the log file).
const MAX_SWEEP: Duration = Duration::from_secs(1);

/// A held-back datagram the model never released after this long (longer than any
/// hold timeout in use) is forgotten, so a model bug cannot leak memory.
const HELD_GRACE: Duration = Duration::from_secs(10);

/// The UDP relay's settings, taken from a [`ProxyConfig`].
#[derive(Debug, Clone)]
pub struct UdpSettings {
    /// Impairments of client-to-server datagrams.
    pub c2s: Impairments,
    /// Impairments of server-to-client datagrams.
    pub s2c: Impairments,
    /// The seed both directions' RNG streams derive from.
    pub seed: u64,
    /// A mapping without traffic for this long is removed.
    pub idle_timeout: Duration,
    /// The most client mappings at once.
    pub max_mappings: usize,
}

impl UdpSettings {
    /// The UDP part of `config`, with the run's `seed`.
    pub fn from_config(config: &ProxyConfig, seed: u64) -> Self {
        UdpSettings {
            c2s: config.c2s.clone(),
            s2c: config.s2c.clone(),
            seed,
            idle_timeout: config.idle_timeout,
            max_mappings: config.max_mappings,
        }
    }
}

/// Where a datagram goes: up through a client's upstream socket, or back to a client
/// through the listening socket.
#[derive(Clone)]
enum Route {
    Upstream(Arc<UdpSocket>),
    Client(SocketAddr),
}

/// A client's entry in the table. Dropping it stops its reader task (the socket closes
/// once no scheduled datagram still holds it).
struct Mapping {
    socket: Arc<UdpSocket>,
    reader: AbortHandle,
    last_used: Instant,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a reader task hands to the relay.
enum FromUpstream {
    /// A reply for `client`.
    Reply {
        client: SocketAddr,
        payload: Vec<u8>,
    },
    /// The upstream (or the way to it) is unreachable: an ICMP error came back.
    Unreachable { client: SocketAddr },
    /// The upstream socket failed for good; the reader has stopped.
    Failed {
        client: SocketAddr,
        cause: io::Error,
    },
}

/// A datagram waiting for its send time. Ordered by (time, arrival order), so
/// datagrams due at the same instant leave in the order they were scheduled.
struct Scheduled {
    at: Duration,
    order: u64,
    direction: Direction,
    route: Route,
    payload: Vec<u8>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// A datagram the model held back (reordering), waiting to be released.
struct Held {
    payload: Vec<u8>,
    route: Route,
    arrived: Duration,
}

/// One direction: its model and the datagrams it holds back, by index.
struct Lane {
    model: DirectionModel,
    held: HashMap<u64, Held>,
    /// The model releases every held datagram at most this long after it arrived.
    hold_timeout: Duration,
}

impl Lane {
    fn new(direction: Direction, impairments: Impairments, seed: u64) -> Lane {
        let hold_timeout = impairments
            .reorder
            .as_ref()
            .map_or(Duration::ZERO, |r| r.hold_timeout);
        Lane {
            model: DirectionModel::new(direction, impairments, seed),
            held: HashMap::new(),
            hold_timeout,
        }
    }
}

/// What the event loop woke up for.
enum Event {
    FromClient(io::Result<(usize, SocketAddr)>),
    FromUpstream(FromUpstream),
    Timer,
    Sweep,
}

/// What happened to one copy handed to [`UdpRelay::emit`], for the log.
struct Emitted {
    corrupted: bool,
    dropped: bool,
    delay: Duration,
}

/// The UDP relay: the listening socket, the client table, both models and the send
/// schedule, all owned by the one task that runs [`UdpRelay::serve`].
pub struct UdpRelay {
    listen: UdpSocket,
    upstream: SocketAddr,
    started: Instant,
    c2s: Lane,
    s2c: Lane,
    mappings: HashMap<SocketAddr, Mapping>,
    idle_timeout: Duration,
    max_mappings: usize,
    held_horizon: Duration,
    replies_tx: mpsc::Sender<FromUpstream>,
    replies_rx: mpsc::Receiver<FromUpstream>,
    schedule: BinaryHeap<Reverse<Scheduled>>,
    next_order: u64,
    pending_datagrams: usize,
    pending_bytes: usize,
    counters: Arc<Counters>,
    log: Option<DatagramLog>,
    reporter: Reporter,
}

impl UdpRelay {
    /// A relay from `listen` to `upstream`. `started` is time zero of the models'
    /// clock; `counters` are shared with the TCP relay and the periodic summary.
    pub fn new(
        listen: UdpSocket,
        upstream: SocketAddr,
        settings: UdpSettings,
        started: Instant,
        counters: Arc<Counters>,
        log: Option<DatagramLog>,
        reporter: Reporter,
    ) -> Self {
        let c2s = Lane::new(Direction::ClientToServer, settings.c2s, settings.seed);
        let s2c = Lane::new(Direction::ServerToClient, settings.s2c, settings.seed);
        let held_horizon = c2s.hold_timeout.max(s2c.hold_timeout) * 2 + HELD_GRACE;
        let (replies_tx, replies_rx) = mpsc::channel(REPLY_QUEUE);
        UdpRelay {
            listen,
            upstream,
            started,
            c2s,
            s2c,
            mappings: HashMap::new(),
            idle_timeout: effective_idle_timeout(settings.idle_timeout),
            max_mappings: settings.max_mappings.max(1),
            held_horizon,
            replies_tx,
            replies_rx,
            schedule: BinaryHeap::new(),
            next_order: 0,
            pending_datagrams: 0,
            pending_bytes: 0,
            counters,
            log,
            reporter,
        }
    }

    /// The relay that takes over from the [`fast`](super::fast) path when a client too
    /// many arrives: it adopts the fast path's listening socket and client table (the
    /// same upstream sockets, so every client keeps its source port towards the
    /// upstream, and their "last used" times), then relays the datagram that did not
    /// fit. Counts nothing twice: the adopted clients were counted as created already.
    ///
    /// # Errors
    /// The OS error when the listening socket cannot be registered with the runtime.
    /// (A client's socket that cannot be is dropped, said with `-v`: that client gets
    /// a new one with its next datagram.)
    pub(super) async fn take_over(
        handover: Handover,
        upstream: SocketAddr,
        settings: UdpSettings,
        started: Instant,
        counters: Arc<Counters>,
        reporter: Reporter,
    ) -> io::Result<UdpRelay> {
        let Handover {
            listen,
            mappings,
            first: (client, payload),
        } = handover;
        listen.set_nonblocking(true)?;
        let listen = UdpSocket::from_std(listen)?;
        let mut relay = UdpRelay::new(
            listen, upstream, settings, started, counters, None, reporter,
        );
        for (mapped, socket, last_used) in mappings {
            if let Err(cause) = relay.adopt(mapped, socket, Instant::from_std(last_used)) {
                relay.reporter.detail(format!(
                    "cannot take over the upstream socket of client {mapped}: {}",
                    describe(&cause)
                ));
            }
        }
        relay.on_client_datagram(client, &payload).await;
        Ok(relay)
    }

    /// Adds a client mapped elsewhere (by the fast path) to the table, with a reader
    /// task for its upstream socket.
    fn adopt(
        &mut self,
        client: SocketAddr,
        socket: std::net::UdpSocket,
        last_used: Instant,
    ) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(socket)?);
        let reader = tokio::spawn(read_replies(
            Arc::clone(&socket),
            client,
            self.replies_tx.clone(),
        ))
        .abort_handle();
        self.mappings.insert(
            client,
            Mapping {
                socket,
                reader,
                last_used,
            },
        );
        Ok(())
    }

    /// Relays datagrams until the future is dropped (the proxy shuts down). Never
    /// fails: a problem with one datagram is counted, not returned.
    pub async fn serve(&mut self) {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let mut sweeps = tokio::time::interval(sweep_period(self.idle_timeout));
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.next_wake();
            let event = tokio::select! {
                received = self.listen.recv_from(&mut buffer) => Event::FromClient(received),
                Some(message) = self.replies_rx.recv() => Event::FromUpstream(message),
                () = sleep_until(wake) => Event::Timer,
                _ = sweeps.tick() => Event::Sweep,
            };
            match event {
                Event::FromClient(Ok((n, client))) => {
                    self.on_client_datagram(client, &buffer[..n]).await
                }
                Event::FromClient(Err(error)) => {
                    // Typically an ICMP error about an earlier send to a client that
                    // has gone away; it says nothing about the next datagram.
                    self.reporter.detail(format!(
                        "receiving on the listening socket failed: {}",
                        describe(&error)
                    ));
                }
                Event::FromUpstream(message) => self.on_upstream_message(message).await,
                Event::Timer => self.on_timer().await,
                Event::Sweep => self.sweep(),
            }
        }
    }

    /// Flushes the datagram log; call once the relay has stopped.
    pub fn finish(&mut self) {
        if let Some(log) = self.log.as_mut() {
            if let Err(error) = log.flush() {
                self.reporter.info(format!(
                    "cannot write the datagram log: {}",
                    describe(&error)
                ));
            }
        }
    }

    /// Time on the models' clock.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn lane(&mut self, direction: Direction) -> &mut Lane {
        match direction {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        }
    }

    async fn on_client_datagram(&mut self, client: SocketAddr, payload: &[u8]) {
        let counters = self.counters.direction(Direction::ClientToServer);
        add(&counters.received, 1);
        add(&counters.received_bytes, payload.len() as u64);
        let Some(socket) = self.mapping_for(client).await else {
            // Not shown to the model: the decision sequence stays that of the
            // datagrams that could be forwarded at all.
            return;
        };
        let now = self.now();
        let verdict = self.c2s.model.decide(payload, now);
        let route = Route::Upstream(socket);
        self.apply(Direction::ClientToServer, verdict, payload, route, now)
            .await;
    }

    async fn on_upstream_message(&mut self, message: FromUpstream) {
        match message {
            FromUpstream::Reply { client, payload } => {
                let counters = self.counters.direction(Direction::ServerToClient);
                add(&counters.received, 1);
                add(&counters.received_bytes, payload.len() as u64);
                if let Some(mapping) = self.mappings.get_mut(&client) {
                    mapping.last_used = Instant::now();
                }
                let now = self.now();
                let verdict = self.s2c.model.decide(&payload, now);
                let route = Route::Client(client);
                self.apply(Direction::ServerToClient, verdict, &payload, route, now)
                    .await;
            }
            FromUpstream::Unreachable { client } => {
                add(&self.counters.udp.unreachable, 1);
                self.reporter.detail(format!(
                    "upstream {} unreachable (for client {client})",
                    self.upstream
                ));
            }
            FromUpstream::Failed { client, cause } => {
                self.reporter.info(format!(
                    "upstream socket of client {client} failed: {}; it gets a new one",
                    describe(&cause)
                ));
                self.mappings.remove(&client);
            }
        }
    }

    /// The upstream socket of `client`, created (and its reader task started) on the
    /// client's first datagram. `None` when no socket could be made (counted).
    async fn mapping_for(&mut self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        if let Some(mapping) = self.mappings.get_mut(&client) {
            mapping.last_used = Instant::now();
            return Some(Arc::clone(&mapping.socket));
        }
        if self.mappings.len() >= self.max_mappings {
            self.evict_least_recently_used();
        }
        let socket = match net::connect_udp(self.upstream).await {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                count_mapping_failure(&self.counters, &self.reporter, client, &error);
                return None;
            }
        };
        let reader = tokio::spawn(read_replies(
            Arc::clone(&socket),
            client,
            self.replies_tx.clone(),
        ))
        .abort_handle();
        add(&self.counters.udp.mappings_created, 1);
        if self.reporter.is_verbose() {
            let local = socket
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string());
            self.reporter.detail(format!(
                "new udp client {client}: relayed through {local} to {}",
                self.upstream
            ));
        }
        self.mappings.insert(
            client,
            Mapping {
                socket: Arc::clone(&socket),
                reader,
                last_used: Instant::now(),
            },
        );
        Some(socket)
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .mappings
            .iter()
            .min_by_key(|(_, m)| m.last_used)
            .map(|(client, _)| *client);
        if let Some(client) = oldest {
            self.mappings.remove(&client);
            add(&self.counters.udp.mappings_evicted, 1);
            self.reporter
                .detail(format!("udp client table full: evicted {client}"));
        }
    }

    /// Carries out the model's verdict on an arriving datagram: sends or schedules its
    /// copies and the held datagrams it released, or keeps it if it is held back.
    async fn apply(
        &mut self,
        direction: Direction,
        verdict: Verdict,
        payload: &[u8],
        route: Route,
        now: Duration,
    ) {
        let mut record = self
            .log
            .is_some()
            .then(|| Record::new(direction, verdict.index, payload.len(), now));
        if let Some(cause) = verdict.dropped {
            push(&mut record, cause.into());
        }
        let mut original_sent = false;
        let mut released = Vec::new();
        for emission in &verdict.emissions {
            if emission.index != verdict.index {
                self.release(direction, emission, now, &mut released).await;
                continue;
            }
            original_sent |= !emission.duplicate;
            let emitted = self
                .emit(direction, emission, payload.to_vec(), route.clone(), now)
                .await;
            if let Some(record) = record.as_mut() {
                describe_copy(record, emission, &emitted);
            }
        }
        if verdict.queue_dropped.contains(&verdict.index) {
            // Its duplicate copy found the rate queue full.
            push(&mut record, Action::DropQueue);
        }
        self.forget_released(direction, &verdict.emissions, &verdict.queue_dropped, now);
        if verdict.dropped.is_none() && !original_sent {
            // Held back by the reorder stage: the model names it in a later verdict
            // (or in `expire`), and we need its bytes and destination then.
            if self.reserve(payload.len()) {
                self.lane(direction).held.insert(
                    verdict.index,
                    Held {
                        payload: payload.to_vec(),
                        route,
                        arrived: now,
                    },
                );
                push(&mut record, Action::Reorder);
            } else {
                add(&self.counters.direction(direction).dropped_overflow, 1);
                push(&mut record, Action::DropQueue);
            }
        }
        self.mirror(direction);
        // The arrival first, then what it released (it is what let them go).
        self.write_log(record);
        for record in released {
            self.write_log(Some(record));
        }
    }

    /// Sends (or schedules) one copy of a held-back datagram the model released, and
    /// notes it in `records` (one `release` line per datagram, copies included). The
    /// held bytes stay until [`UdpRelay::forget_released`]: the duplicate copy of a
    /// held datagram is released in the same batch as the original.
    async fn release(
        &mut self,
        direction: Direction,
        emission: &Emission,
        now: Duration,
        records: &mut Vec<Record>,
    ) {
        let lane = self.lane(direction);
        let Some(held) = lane.held.get(&emission.index) else {
            // It was not kept (the pending bound was reached; counted then).
            return;
        };
        let (payload, route, arrived) = (held.payload.clone(), held.route.clone(), held.arrived);
        let len = payload.len();
        let emitted = self.emit(direction, emission, payload, route, now).await;
        if self.log.is_none() {
            return;
        }
        let position = records.iter().position(|r| r.index == emission.index);
        let record = match position {
            Some(i) => &mut records[i],
            None => {
                let mut record = Record::new(direction, emission.index, len, now);
                record.push(Action::Release);
                records.push(record);
                let last = records.len() - 1;
                &mut records[last]
            }
        };
        describe_copy(record, emission, &emitted);
        if !emission.duplicate && !emitted.dropped {
            // From arrival, hold included.
            record.delay = Some(emission.at.max(now).saturating_sub(arrived).as_secs_f64());
        }
    }

    /// Frees the held datagrams the model has let go of: those released in this batch
    /// (`emissions`), those the rate queue dropped on release (`queue_dropped`), and,
    /// as a safety net, those whose hold timeout has passed by `now` (the model
    /// releases every one of them by then).
    fn forget_released(
        &mut self,
        direction: Direction,
        emissions: &[Emission],
        queue_dropped: &[u64],
        now: Duration,
    ) {
        let lane = self.lane(direction);
        let hold_timeout = lane.hold_timeout;
        let mut freed = Vec::new();
        let mut lost = Vec::new();
        lane.held.retain(|&index, held| {
            let sent = emissions.iter().any(|e| e.index == index);
            let gone = sent
                || queue_dropped.contains(&index)
                || held.arrived.saturating_add(hold_timeout) <= now;
            if gone {
                freed.push(held.payload.len());
                if !sent {
                    lost.push((index, held.payload.len()));
                }
            }
            !gone
        });
        for len in freed {
            self.unreserve(len);
        }
        if self.log.is_some() {
            for (index, len) in lost {
                let mut record = Record::new(direction, index, len, now);
                record.push(Action::Release);
                record.push(Action::DropQueue);
                self.write_log(Some(record));
            }
        }
    }

    /// Copies the model's decision totals into the shared counters.
    fn mirror(&mut self, direction: Direction) {
        let counts = self.lane(direction).model.counts();
        self.counters.direction(direction).mirror(&counts);
    }

    /// Puts one copy on its way: flips the chosen bit, then sends it now or schedules
    /// it for `emission.at`.
    async fn emit(
        &mut self,
        direction: Direction,
        emission: &Emission,
        mut payload: Vec<u8>,
        route: Route,
        now: Duration,
    ) -> Emitted {
        emission.corrupt(&mut payload);
        let corrupted = emission.flip_bit.is_some() && !payload.is_empty();
        let delay = emission.at.saturating_sub(now);
        if delay.is_zero() {
            // Anything already due goes first, so "now" never overtakes "earlier".
            self.send_due(now).await;
            send(
                &self.listen,
                &self.counters,
                &self.reporter,
                direction,
                &route,
                &payload,
            )
            .await;
            return Emitted {
                corrupted,
                dropped: false,
                delay,
            };
        }
        if !self.reserve(payload.len()) {
            add(&self.counters.direction(direction).dropped_overflow, 1);
            return Emitted {
                corrupted,
                dropped: true,
                delay,
            };
        }
        self.next_order += 1;
        self.schedule.push(Reverse(Scheduled {
            at: emission.at,
            order: self.next_order,
            direction,
            route,
            payload,
        }));
        Emitted {
            corrupted,
            dropped: false,
            delay,
        }
    }

    /// Sends every scheduled datagram whose time has come, oldest first.
    async fn send_due(&mut self, now: Duration) {
        while self.schedule.peek().is_some_and(|top| top.0.at <= now) {
            let Some(Reverse(due)) = self.schedule.pop() else {
                break;
            };
            self.unreserve(due.payload.len());
            send(
                &self.listen,
                &self.counters,
                &self.reporter,
                due.direction,
                &due.route,
                &due.payload,
            )
            .await;
        }
    }

    /// When the loop must wake up next without any datagram arriving: the next
    /// scheduled send, or a model's hold timeout.
    fn next_wake(&self) -> Option<Instant> {
        let next_send = self.schedule.peek().map(|top| top.0.at);
        [
            next_send,
            self.c2s.model.next_deadline(),
            self.s2c.model.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| self.started + at)
    }

    async fn on_timer(&mut self) {
        let now = self.now();
        self.send_due(now).await;
        for direction in Direction::BOTH {
            let lane = self.lane(direction);
            if lane.model.next_deadline().is_some_and(|at| at <= now) {
                let released = lane.model.expire(now);
                let mut records = Vec::new();
                for emission in &released.emissions {
                    self.release(direction, emission, now, &mut records).await;
                }
                self.forget_released(direction, &released.emissions, &released.queue_dropped, now);
                self.mirror(direction);
                for record in records {
                    self.write_log(Some(record));
                }
            }
        }
    }

    /// Removes idle mappings and forgotten held datagrams; flushes the log file so
    /// `tail -f` shows it.
    fn sweep(&mut self) {
        let now = Instant::now();
        let idle_timeout = self.idle_timeout;
        let before = self.mappings.len();
        self.mappings
            .retain(|_, mapping| now.duration_since(mapping.last_used) < idle_timeout);
        let expired = before - self.mappings.len();
        if expired > 0 {
            add(&self.counters.udp.mappings_expired, expired as u64);
            self.reporter
                .detail(format!("{expired} idle udp client(s) expired"));
        }
        let clock = self.now();
        let horizon = self.held_horizon;
        let mut forgotten = Vec::new();
        for lane in [&mut self.c2s, &mut self.s2c] {
            lane.held.retain(|_, held| {
                let keep = clock.saturating_sub(held.arrived) < horizon;
                if !keep {
                    forgotten.push(held.payload.len());
                }
                keep
            });
        }
        for len in forgotten {
            self.unreserve(len);
        }
        if let Some(log) = self.log.as_mut() {
            let _ = log.flush();
        }
    }

    /// Takes room for one waiting datagram of `len` bytes; false when the proxy's
    /// pending bound is reached.
    fn reserve(&mut self, len: usize) -> bool {
        if self.pending_datagrams >= MAX_PENDING_DATAGRAMS
            || self.pending_bytes + len > MAX_PENDING_BYTES
        {
            return false;
        }
        self.pending_datagrams += 1;
        self.pending_bytes += len;
        true
    }

    fn unreserve(&mut self, len: usize) {
        self.pending_datagrams = self.pending_datagrams.saturating_sub(1);
        self.pending_bytes = self.pending_bytes.saturating_sub(len);
    }

    fn write_log(&mut self, record: Option<Record>) {
        let (Some(log), Some(record)) = (self.log.as_mut(), record) else {
            return;
        };
        if let Err(error) = log.write(&record) {
            // A full disk or a closed pipe must not stop the proxy: say so once and
            // stop logging.
            self.reporter.info(format!(
                "cannot write the datagram log: {}; logging stops",
                describe(&error)
            ));
            self.log = None;
        }
    }
}

/// Adds `action` to the record, if there is one.
fn push(record: &mut Option<Record>, action: Action) {
    if let Some(record) = record.as_mut() {
        record.push(action);
    }
}

/// Notes in `record` what happened to one copy of its datagram.
fn describe_copy(record: &mut Record, emission: &Emission, emitted: &Emitted) {
    if emission.duplicate {
        record.push(Action::Duplicate);
    }
    if emitted.corrupted {
        record.push(Action::Corrupt);
    }
    if emitted.dropped {
        record.push(Action::DropQueue);
        return;
    }
    // The copy's own 1 µs spacing is not a delay of the datagram.
    if !emission.duplicate {
        if !emitted.delay.is_zero() {
            record.push(Action::Delay);
        }
        if record.delay.is_none() {
            record.delay = Some(emitted.delay.as_secs_f64());
        }
    }
}

/// Sends one datagram and counts the outcome. (A free function over the fields it
/// needs rather than a method: the relay holds the log writer, which is `Send` but not
/// `Sync`, so `&UdpRelay` cannot be held across an `.await` in a spawned task.)
async fn send(
    listen: &UdpSocket,
    counters: &Counters,
    reporter: &Reporter,
    direction: Direction,
    route: &Route,
    payload: &[u8],
) {
    let result = match route {
        Route::Upstream(socket) => socket.send(payload).await,
        Route::Client(client) => listen.send_to(payload, *client).await,
    };
    count_send(counters, reporter, direction, payload.len(), result);
}

/// Counts the outcome of sending one datagram of `len` bytes in `direction`: forwarded,
/// an ICMP "unreachable" report, or a send error. (Shared with the
/// [`fast`](super::fast) path, so both count alike.)
pub(super) fn count_send(
    counters: &Counters,
    reporter: &Reporter,
    direction: Direction,
    len: usize,
    result: io::Result<usize>,
) {
    let lane = counters.direction(direction);
    match result {
        Ok(_) => {
            add(&lane.forwarded, 1);
            add(&lane.forwarded_bytes, len as u64);
        }
        // Linux reports an earlier ICMP "port unreachable" on the next send of a
        // connected socket too, and that datagram is not sent.
        Err(error) if is_unreachable(&error) => {
            add(&counters.udp.unreachable, 1);
            reporter.detail(format!(
                "sending a {} datagram: destination unreachable ({})",
                direction.short_name(),
                describe(&error)
            ));
        }
        Err(error) => {
            add(&lane.send_errors, 1);
            reporter.detail(format!(
                "sending a {} datagram ({len} bytes) failed: {}",
                direction.short_name(),
                describe(&error)
            ));
        }
    }
}

/// Counts a client that could not be given an upstream socket (out of file descriptors,
/// typically). The first failure is said; later ones only with `-v`, since a line per
/// datagram would flood the terminal.
pub(super) fn count_mapping_failure(
    counters: &Counters,
    reporter: &Reporter,
    client: SocketAddr,
    error: &dyn std::fmt::Display,
) {
    let failures = &counters.udp.mapping_failures;
    let line = format!("cannot relay for client {client}: {error}");
    if failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 {
        reporter.info(line);
    } else {
        reporter.detail(line);
    }
}

/// How often idle mappings are looked for: a quarter of the idle timeout, within
/// [`MIN_SWEEP`] and [`MAX_SWEEP`].
pub(super) fn sweep_period(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(MIN_SWEEP, MAX_SWEEP)
}

/// The idle timeout actually used: zero would expire every mapping before its reply
/// could come back.
pub(super) fn effective_idle_timeout(idle_timeout: Duration) -> Duration {
    idle_timeout.max(MIN_SWEEP)
}

/// Whether a socket error is an ICMP "unreachable" report rather than a local fault.
pub(super) fn is_unreachable(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Sleeps until `wake`, or forever when there is nothing to wake up for.
async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads the replies arriving on a client's upstream socket and hands them to the
/// relay, until the relay drops the mapping (which aborts this task).
async fn read_replies(
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    relay: mpsc::Sender<FromUpstream>,
) {
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        let message = match socket.recv(&mut buffer).await {
            Ok(n) => FromUpstream::Reply {
                client,
                payload: buffer[..n].to_vec(),
            },
            Err(error) if is_unreachable(&error) => FromUpstream::Unreachable { client },
            Err(cause) => {
                let _ = relay.send(FromUpstream::Failed { client, cause }).await;
                return;
            }
        };
        if relay.send(message).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::model::Reorder;
    use std::sync::Mutex;

    /// Every test's waits end after this, so a bug fails the test instead of hanging it.
    const WAIT: Duration = Duration::from_secs(5);

    /// A UDP echo server on loopback, as the upstream.
    async fn echo_upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; RECEIVE_BUFFER];
            while let Ok((n, peer)) = socket.recv_from(&mut buffer).await {
                let _ = socket.send_to(&buffer[..n], peer).await;
            }
        });
        addr
    }

    fn settings(c2s: Impairments) -> UdpSettings {
        UdpSettings {
            c2s,
            s2c: Impairments::default(),
            seed: 1,
            idle_timeout: Duration::from_secs(60),
            max_mappings: 16,
        }
    }

    /// A log writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Starts a relay in front of an echo server; returns its address and counters.
    async fn start(settings: UdpSettings, log: Option<Shared>) -> (SocketAddr, Arc<Counters>) {
        let upstream = echo_upstream().await;
        let listen = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = listen.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let log = log.map(|shared| DatagramLog::new(Box::new(shared)));
        let mut relay = UdpRelay::new(
            listen,
            upstream,
            settings,
            Instant::now(),
            Arc::clone(&counters),
            log,
            Reporter::silent(),
        );
        tokio::spawn(async move { relay.serve().await });
        (addr, counters)
    }

    async fn client(relay: SocketAddr) -> UdpSocket {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(relay).await.unwrap();
        socket
    }

    async fn receive(socket: &UdpSocket) -> String {
        let mut buffer = [0u8; 128];
        let n = tokio::time::timeout(WAIT, socket.recv(&mut buffer))
            .await
            .expect("a reply in time")
            .unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    async fn ping(socket: &UdpSocket, text: &str) {
        socket.send(text.as_bytes()).await.unwrap();
        assert_eq!(receive(socket).await, text);
    }

    #[tokio::test]
    async fn held_datagrams_and_their_copies_come_out_after_the_overtakers() {
        // gap 2: the 2nd, 4th, 6th... are held until one more has passed (or 50 ms);
        // every datagram also gets a duplicate, which must leave with its original.
        let impairments = Impairments {
            duplicate: 1.0,
            reorder: Some(Reorder {
                probability: 1.0,
                gap: Some(2),
                hold: 1,
                hold_timeout: Duration::from_millis(50),
            }),
            ..Impairments::default()
        };
        let log = Shared::default();
        let (relay, counters) = start(settings(impairments), Some(log.clone())).await;
        let socket = client(relay).await;
        for n in 1..=6 {
            socket.send(n.to_string().as_bytes()).await.unwrap();
        }
        let mut order = Vec::new();
        for _ in 0..12 {
            order.push(receive(&socket).await);
        }
        // A copy leaves 1 µs after its original (the model's spacing), so the released
        // 2 goes out between 3 and 3's copy. The 6th has nobody to overtake it: its hold
        // timeout lets it go.
        assert_eq!(
            order,
            ["1", "1", "3", "2", "3", "2", "5", "4", "5", "4", "6", "6"]
        );
        let c2s = counters.snapshot(Duration::ZERO).c2s;
        assert_eq!((c2s.received, c2s.forwarded), (6, 12));
        assert_eq!((c2s.duplicated, c2s.reordered), (6, 3));

        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let second: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(r#""dir":"c2s","index":2,"#))
            .collect();
        assert_eq!(second.len(), 2, "{text}");
        assert!(second[0].contains(r#""actions":["reorder"]"#), "{text}");
        assert!(
            second[1].contains(r#""actions":["release","duplicate"]"#),
            "{text}"
        );
        assert!(!second[1].contains(r#""delay":null"#), "{text}");
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_least_recently_used_client() {
        let (relay, counters) = start(
            UdpSettings {
                max_mappings: 2,
                ..settings(Impairments::default())
            },
            None,
        )
        .await;
        let (a, b, c) = (
            client(relay).await,
            client(relay).await,
            client(relay).await,
        );
        ping(&a, "a1").await;
        ping(&b, "b1").await;
        ping(&a, "a2").await;
        // Full: c's arrival evicts b, used least recently.
        ping(&c, "c1").await;
        ping(&a, "a3").await;
        let udp = counters.snapshot(Duration::ZERO).udp;
        assert_eq!((udp.mappings_created, udp.mappings_evicted), (3, 1));
        // b is a new client again, and still served.
        ping(&b, "b2").await;
        let udp = counters.snapshot(Duration::ZERO).udp;
        assert_eq!((udp.mappings_created, udp.mappings_evicted), (4, 2));
    }

    #[tokio::test]
    async fn idle_mappings_expire() {
        let (relay, counters) = start(
            UdpSettings {
                idle_timeout: Duration::from_millis(20),
                ..settings(Impairments::default())
            },
            None,
        )
        .await;
        let socket = client(relay).await;
        ping(&socket, "hello").await;
        let deadline = Instant::now() + WAIT;
        // No event announces an expiry: poll the counter.
        while counters.snapshot(Duration::ZERO).udp.mappings_expired == 0 {
            assert!(Instant::now() < deadline, "the idle mapping never expired");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A client that comes back is simply mapped again.
        ping(&socket, "again").await;
        assert_eq!(counters.snapshot(Duration::ZERO).udp.mappings_created, 2);
    }

    #[tokio::test]
    async fn the_largest_and_the_empty_datagram_pass_whole() {
        // Corruption everywhere: the empty datagram has no bit to flip and must pass
        // untouched; the largest arrives with its length intact.
        let (relay, counters) = start(
            settings(Impairments {
                corrupt: 1.0,
                ..Impairments::default()
            }),
            None,
        )
        .await;
        let socket = client(relay).await;
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        let largest = vec![0xA5u8; net::MAX_UDP_PAYLOAD];
        for sent in [Vec::new(), largest] {
            socket.send(&sent).await.unwrap();
            let n = tokio::time::timeout(WAIT, socket.recv(&mut buffer))
                .await
                .expect("the echo in time")
                .unwrap();
            assert_eq!(n, sent.len());
            let flipped: u32 = sent
                .iter()
                .zip(&buffer[..n])
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(flipped, u32::from(!sent.is_empty()));
        }
        let c2s = counters.snapshot(Duration::ZERO).c2s;
        assert_eq!((c2s.forwarded, c2s.corrupted), (2, 1));
    }

    #[test]
    fn schedule_orders_by_time_then_arrival() {
        let item = |at: u64, order: u64| {
            Reverse(Scheduled {
                at: Duration::from_millis(at),
                order,
                direction: Direction::ClientToServer,
                route: Route::Client(SocketAddr::from(([127, 0, 0, 1], 9))),
                payload: Vec::new(),
            })
        };
        let mut heap = BinaryHeap::new();
        heap.push(item(5, 1));
        heap.push(item(2, 3));
        heap.push(item(2, 2));
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| heap.pop())
            .map(|Reverse(s)| (s.at.as_millis() as u64, s.order))
            .collect();
        assert_eq!(order, vec![(2, 2), (2, 3), (5, 1)]);
    }

    #[test]
    fn unreachable_kinds_are_recognised() {
        assert!(is_unreachable(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
        assert!(!is_unreachable(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }
}
