//! Lab 2: `socklab proxy`, an impairing proxy. It sits between a client and a server
//! and does to UDP datagrams what a bad network would (loss, delay, duplication,
//! reordering, corruption, a slow link), seeded so every run can be repeated; TCP
//! connections to the same port are relayed too, optionally delayed and paced.
//!
//! ```text
//!             listen ADDR:PORT                         upstream HOST:PORT
//!  client A ──┐  ┌──────────────────────────────────┐
//!  client B ──┼──┤ udp: decide (model) ─► schedule ─┼─► one upstream socket per client
//!  client C ──┘  │ tcp: relay, delay, pace          ├─► one connection per connection
//!                └──────────────────────────────────┘
//! ```
//!
//! - [`model`]: the impairment decisions. Pure and seeded: no sockets, no clock.
//! - [`config`]: the settings, from command-line flags and a YAML file, validated.
//! - [`udp`]: the UDP relay: per-client upstream sockets, the send schedule.
//! - [`fast`]: the UDP fast path, used while no impairment and no `--log` could make
//!   a difference and few clients are mapped: blocking threads, half the system calls
//!   per datagram, no model. The [`udp`] relay takes over with more clients.
//! - [`tcp`]: the TCP relay on the same port number, with `--tcp-delay`/`--tcp-rate`.
//! - [`stats`]: the counters both relays update and the summary table.
//! - [`log`]: `--log`, one JSON line per datagram.
//!
//! The entry point is [`run`]: it takes already-bound sockets ([`bind`]) and a shutdown
//! future, so a test can bind port 0, run the proxy in-process and stop it.
//!
//! A runtime control channel (changing impairments without a restart, as Toxiproxy's
//! HTTP API does) is not built. It would be one more branch in the UDP relay's event
//! loop: a `tokio::sync::watch` receiver of new [`config::ProxyConfig`]s, fed by a small
//! line protocol on a local TCP port, swapping the two [`model::DirectionModel`]s.

pub mod config;
pub mod fast;
pub mod log;
pub mod model;
pub mod stats;
pub mod tcp;
pub mod udp;

use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use thiserror::Error;
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::Instant;

use crate::net::{self, describe, NetError};
use crate::output::Reporter;
use config::{ConfigError, ProxyConfig};
use stats::{Counters, ProxySummary};

pub use log::DatagramLog;
pub use stats::render_summary;

/// How many times [`bind`] tries to find a port number free for both UDP and TCP when
/// asked for port 0 (the kernel picks the UDP port; TCP may already use that number).
const BIND_ATTEMPTS: usize = 20;

/// Errors of the proxy. Each names the address or file it concerns.
#[derive(Debug, Error)]
pub enum ProxyError {
    /// The settings are invalid (a flag or the configuration file).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Resolving, binding or connecting failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The configuration file could not be read.
    #[error("cannot read {}: {}", .path.display(), describe(.cause))]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Neither `--listen` nor the configuration file gave a listen address.
    #[error("no listen address: give --listen ADDR:PORT (or `listen:` in the configuration file)")]
    NoListen,
    /// Neither `--upstream` nor the configuration file gave an upstream.
    #[error("no upstream: give --upstream HOST:PORT (or `upstream:` in the configuration file)")]
    NoUpstream,
    /// The listen address is not `ADDR:PORT`.
    #[error("'{text}' is not a listen address (use ADDR:PORT, e.g. 127.0.0.1:9000)")]
    BadListen {
        /// What was given.
        text: String,
    },
    /// The upstream is not `HOST:PORT` with a port from 1 to 65535.
    #[error("'{text}' is not an upstream (use HOST:PORT, e.g. localhost:12000)")]
    BadUpstream {
        /// What was given.
        text: String,
    },
    /// The UDP socket could not be prepared for the fast path (blocking mode, timeouts,
    /// its thread).
    #[error("cannot prepare the udp socket bound to {addr}: {}", describe(.cause))]
    Prepare {
        /// The address it is bound to.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
    /// A socket's own address could not be read.
    #[error("cannot read the address of the socket bound to {addr}: {}", describe(.cause))]
    LocalAddr {
        /// The address it was bound to.
        addr: SocketAddr,
        /// The OS error.
        cause: io::Error,
    },
}

/// Reads a YAML configuration file (`--config`).
///
/// # Errors
/// [`ProxyError::ReadConfig`] when the file cannot be read, [`ProxyError::Config`]
/// when its contents are invalid (the error names the file).
pub fn load_config(path: &Path) -> Result<ProxyConfig, ProxyError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ProxyError::ReadConfig {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(ProxyConfig::from_yaml(&text, path)?)
}

/// The proxy's two listening sockets: UDP and TCP on the same address and port number.
/// (UDP and TCP ports are separate name spaces, so both can hold the same number.)
pub struct ProxySockets {
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
}

impl ProxySockets {
    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Parses the listen address of `config`.
///
/// # Errors
/// [`ProxyError::NoListen`] or [`ProxyError::BadListen`].
pub fn listen_addr(config: &ProxyConfig) -> Result<SocketAddr, ProxyError> {
    let text = config.listen.as_deref().ok_or(ProxyError::NoListen)?;
    text.trim().parse().map_err(|_| ProxyError::BadListen {
        text: text.to_string(),
    })
}

/// Binds UDP and TCP on `addr`. With port 0 the kernel picks the UDP port and TCP takes
/// the same number; if TCP already uses it, another UDP port is tried.
///
/// # Errors
/// [`ProxyError::Net`] naming the address when either bind fails.
pub async fn bind(addr: SocketAddr) -> Result<ProxySockets, ProxyError> {
    let attempts = if addr.port() == 0 { BIND_ATTEMPTS } else { 1 };
    let mut attempt = 1;
    loop {
        let udp = net::bind_udp(addr).await?;
        let bound = udp
            .local_addr()
            .map_err(|cause| ProxyError::LocalAddr { addr, cause })?;
        match net::bind_tcp(bound).await {
            Ok(tcp) => {
                return Ok(ProxySockets {
                    udp,
                    tcp,
                    addr: bound,
                })
            }
            Err(error) if attempt >= attempts => return Err(error.into()),
            Err(_) => attempt += 1,
        }
    }
}

/// Where the proxy forwards to: the address UDP datagrams go to, and the addresses a
/// TCP connection is tried on (same port number).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The name as given (`localhost:12000`), for messages.
    pub name: String,
    /// Where UDP goes (IPv4 preferred, as [`net::resolve_udp`] does).
    pub udp: SocketAddr,
    /// Every address the name resolved to, tried in order for TCP.
    pub tcp: Vec<SocketAddr>,
}

/// Resolves the upstream `HOST:PORT` of `config`.
///
/// # Errors
/// [`ProxyError::NoUpstream`], [`ProxyError::BadUpstream`], or a resolve error.
pub async fn resolve_upstream(config: &ProxyConfig) -> Result<Upstream, ProxyError> {
    let text = config.upstream.as_deref().ok_or(ProxyError::NoUpstream)?;
    let bad = || ProxyError::BadUpstream {
        text: text.to_string(),
    };
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    let tcp = net::resolve_all(host, port).await?;
    let udp = *tcp.iter().find(|a| a.is_ipv4()).unwrap_or(&tcp[0]);
    Ok(Upstream {
        name: text.trim().to_string(),
        udp,
        tcp,
    })
}

/// A seed for a run that was given none: from the operating system's RNG, so two runs
/// differ. (Only the seed comes from the OS; every decision comes from the seeded
/// ChaCha streams in [`model`], which is what makes a run repeatable.)
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
        // No OS randomness (a very unusual sandbox): the clock still gives a seed that
        // differs between runs, and the seed is printed either way.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        return nanos as u64;
    }
    u64::from_le_bytes(bytes)
}

/// How a proxy run reports: where status lines go, the datagram log, periodic tables.
pub struct RunOptions {
    /// Status lines (seed, impairments, readiness, periodic summaries).
    pub reporter: Reporter,
    /// `--log`: where one JSON line per datagram goes, if anywhere.
    pub log: Option<Box<dyn Write + Send>>,
    /// Print the summary table this often (the binary sets it only on a terminal).
    pub stats_interval: Option<Duration>,
}

/// Runs the proxy on `sockets` until `shutdown` resolves, then returns the counters.
///
/// Prints the seed (drawn at random when `config.seed` is `None`, and printed so the run
/// can be repeated), the impairments and the readiness line
/// `proxy listening on ADDR:PORT (udp and tcp)`. Problems of single datagrams or
/// connections (an unreachable upstream, a full queue, a refused TCP connection) are
/// counted in the summary and never end the run.
///
/// # Errors
/// [`ProxyError::Config`] when the settings do not validate; [`ProxyError`] when the
/// upstream is missing or cannot be resolved.
pub async fn run(
    config: ProxyConfig,
    sockets: ProxySockets,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ProxySummary, ProxyError> {
    config.validate()?;
    let upstream = resolve_upstream(&config).await?;
    let seed = config.seed.unwrap_or_else(random_seed);
    let reporter = options.reporter;
    reporter.info(format!("seed {seed} (repeat this run with --seed {seed})"));
    reporter.info(config.describe());
    // Say what a name resolved to; an address needs no translation.
    let resolved = if upstream.name == upstream.udp.to_string() {
        String::new()
    } else {
        format!(" = {}", upstream.udp)
    };
    reporter.info(format!(
        "upstream {}{resolved} (udp; tcp to port {} of the same host)",
        upstream.name,
        upstream.udp.port()
    ));

    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let settings = udp::UdpSettings::from_config(&config, seed);
    let mut udp_relay = if fast::applies(&settings, options.log.is_some()) {
        reporter.detail("udp: no impairment and no --log, so datagrams take the fast path");
        let listen = sockets
            .udp
            .into_std()
            .map_err(|cause| ProxyError::Prepare {
                addr: sockets.addr,
                cause,
            })?;
        let relay = fast::FastRelay::start(
            listen,
            upstream.udp,
            &settings,
            Arc::clone(&counters),
            reporter.clone(),
        )
        .map_err(|cause| ProxyError::Prepare {
            addr: sockets.addr,
            cause,
        })?;
        UdpPath {
            fast: Some(relay),
            event_loop: None,
        }
    } else {
        let relay = udp::UdpRelay::new(
            sockets.udp,
            upstream.udp,
            settings,
            started,
            Arc::clone(&counters),
            options.log.map(DatagramLog::new),
            reporter.clone(),
        );
        UdpPath {
            fast: None,
            event_loop: Some(relay),
        }
    };
    let tcp_relay = tcp::relay(
        sockets.tcp,
        upstream.tcp.clone(),
        tcp::Shaping {
            delay: config.tcp_delay,
            bits_per_second: config.tcp_rate,
        },
        Arc::clone(&counters),
        reporter.clone(),
    );
    // The readiness line comes last, and the only address in it is the listen address
    // (the upstream has its own line above): scripts, and our test harness, read it.
    reporter.info(format!("proxy listening on {} (udp and tcp)", sockets.addr));
    tokio::select! {
        () = udp_relay.serve() => {}
        () = tcp_relay => {}
        () = print_periodically(options.stats_interval, &counters, started, &reporter) => {}
        () = shutdown => {}
    }
    reporter.info("shutting down");
    udp_relay.finish().await;
    Ok(counters.snapshot(started.elapsed()))
}

/// The UDP relay a run uses: the model-driven event loop of [`udp`], or the [`fast`]
/// path when it cannot change what happens to a datagram, until it hands over to the
/// event loop.
struct UdpPath {
    fast: Option<fast::FastRelay>,
    event_loop: Option<udp::UdpRelay>,
}

impl UdpPath {
    /// Relays until the future is dropped; ends early only if the relay failed.
    async fn serve(&mut self) {
        if self.event_loop.is_none() {
            let Some(fast) = self.fast.as_mut() else {
                return;
            };
            match fast.serve().await {
                Some(relay) => self.event_loop = Some(relay),
                None => return,
            }
        }
        if let Some(relay) = self.event_loop.as_mut() {
            relay.serve().await;
        }
    }

    /// Stops relaying: stops and waits for the fast path's threads (so the counters
    /// are final) and flushes the log.
    async fn finish(self) {
        if let Some(fast) = self.fast {
            fast.stop().await;
        }
        if let Some(mut relay) = self.event_loop {
            relay.finish();
        }
    }
}

/// Prints the summary table every `interval`; never resolves without one.
async fn print_periodically(
    interval: Option<Duration>,
    counters: &Counters,
    started: Instant,
    reporter: &Reporter,
) {
    let Some(period) = interval.filter(|p| !p.is_zero()) else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval_at(started + period, period);
    // After a pause (a suspended laptop) print once, not once per missed period.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        reporter.info(render_summary(&counters.snapshot(started.elapsed())));
    }
}
