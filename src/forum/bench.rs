//! `socklab forum bench` (lab 3): how many forum commands a second the server takes,
//! and how fast, with N logged-in clients running a mixed MSG / RDT / LST workload,
//! optionally through the impairing proxy, next to the UDP echo floor measured in the
//! same run.
//!
//! ```text
//!   N clients ──UDP──► [ socklab proxy --loss P% both ways ] ──► forum server (own thread)
//!   (one task each,       (only with --loss)                     data in a fresh temp dir
//!    stop-and-wait)
//!   N clients ──UDP──► UDP echo server (own thread): the floor, what UDP costs here
//! ```
//!
//! Every client logs in as its own user and creates its own thread, then until the
//! time is up picks (with a seeded RNG) one of: `MSG` to its own current thread, `RDT`
//! of a random client's first thread, `LST`. A thread that reaches
//! [`MESSAGES_PER_THREAD`] messages is full: the client opens its next one (`CRT`).
//! That keeps the workload steady (a thread read always holds at most that many
//! messages, about two reply datagrams), where threads growing without bound would
//! make every `RDT` slower than the last and the result depend on the run's length.
//!
//! Every message text is unique (`b<client>-<n>`), so after the run the bench reads
//! the thread files back and checks **exactly once**: every post the server
//! confirmed is there once, none twice.
//!
//! The server and the proxy each run on their own thread with their own runtime, as
//! separate processes would; the clients share the main runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::command::{Login, Reply, Status};
use super::reliable::{CallError, ReliableClient, RetryConfig};
use super::server::{self, ServerOptions};
use super::store::Store;
use super::ForumError;
use crate::echo::stats::Percentiles;
use crate::echo::{self, BenchOptions, BenchReport, Transport};
use crate::net;
use crate::output::{self, Reporter};
use crate::proxy::{self, config::ProxyConfig};

/// Messages a bench thread holds before its client opens the next one.
pub const MESSAGES_PER_THREAD: u32 = 100;

/// How to run the bench.
#[derive(Clone, Debug)]
pub struct ForumBenchOptions {
    /// Concurrent logged-in clients.
    pub clients: u32,
    /// How long to measure.
    pub duration: Duration,
    /// How long to run before measuring.
    pub warmup: Duration,
    /// Loss in each direction through the proxy, in percent (`None`: no proxy).
    pub loss: Option<f64>,
    /// Seed of the proxy and of the workload.
    pub seed: u64,
    /// Retransmission settings of the clients.
    pub retry: RetryConfig,
}

/// Latency and count of one kind of operation.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    /// `MSG`, `RDT`, `LST` or `all`.
    pub op: String,
    /// Operations completed in the measured window.
    pub count: u64,
    /// Per second.
    pub per_sec: f64,
    /// Latency percentiles, µs.
    pub latency_us: Percentiles,
}

/// What the bench measured.
#[derive(Clone, Debug, Serialize)]
pub struct ForumBenchReport {
    /// Concurrent clients.
    pub clients: u32,
    /// Loss per direction, percent (0 without the proxy).
    pub loss_percent: f64,
    /// Seed of the proxy and the workload.
    pub seed: u64,
    /// Measured seconds.
    pub duration_s: f64,
    /// All operations, then one row per kind.
    pub ops: Vec<OpReport>,
    /// Operations that gave up (`Server not responding`).
    pub failed: u64,
    /// Requests sent more than once.
    pub retransmissions: u64,
    /// Posts the server confirmed.
    pub posts_confirmed: u64,
    /// Posts found in the thread files afterwards.
    pub posts_found: u64,
    /// Confirmed posts missing from the files.
    pub posts_lost: u64,
    /// Posts found more than once.
    pub posts_duplicated: u64,
    /// The UDP echo floor with as many clients, measured in the same run.
    pub echo_floor: BenchReport,
    /// fsyncs the server's store made over the whole run (warm-up included).
    pub fsyncs: u64,
    /// Group commits (batches with something to make durable) over the whole run.
    pub group_commits: u64,
}

impl ForumBenchReport {
    /// Whether every operation completed and every post is there exactly once.
    pub fn exactly_once(&self) -> bool {
        self.failed == 0 && self.posts_lost == 0 && self.posts_duplicated == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Post,
    Read,
    List,
    Create,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Post => "MSG",
            Op::Read => "RDT",
            Op::List => "LST",
            Op::Create => "CRT",
        }
    }
}

/// What one client did.
#[derive(Default)]
struct ClientResult {
    samples: HashMap<&'static str, Vec<u64>>,
    failed: u64,
    retransmissions: u64,
    confirmed: Vec<String>,
}

/// Runs the bench.
///
/// # Errors
/// [`ForumError`] when the server, the proxy or the echo server cannot be set up, or
/// a client cannot log in; failures during the run are counted instead.
pub async fn bench(options: &ForumBenchOptions) -> Result<ForumBenchReport, ForumError> {
    let dir = TempDir::new()?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));

    let (server_addr, stop_server, store) = start_server(dir.path())?;
    let (target, stop_proxy) = match options.loss {
        Some(loss) => {
            let (addr, stop) = start_proxy(server_addr, loss, options.seed)?;
            (addr, Some(stop))
        }
        None => (server_addr, None),
    };

    let echo_floor = echo_floor(options, loopback).await?;

    let clients = options.clients.max(1);
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + options.warmup;
    let until = measure_from + options.duration;
    let mut handles = Vec::new();
    for k in 0..clients {
        let retry = options.retry;
        let seed = options.seed.wrapping_add(u64::from(k));
        handles.push(tokio::spawn(async move {
            run_client(k, clients, target, retry, seed, start, measure_from, until).await
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result?),
            Err(join) => {
                return Err(ForumError::Io {
                    what: "a bench client".into(),
                    cause: std::io::Error::other(join.to_string()),
                })
            }
        }
    }
    if let Some(stop) = stop_proxy {
        let _ = stop.send(());
    }
    let _ = stop_server.send(());

    let mut report = summarise(options, clients, results, dir.path(), echo_floor)?;
    let stats = store.lock().unwrap_or_else(PoisonError::into_inner).stats();
    report.fsyncs = stats.fsyncs;
    report.group_commits = stats.syncs;
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    k: u32,
    clients: u32,
    target: SocketAddr,
    retry: RetryConfig,
    seed: u64,
    start: Instant,
    measure_from: Instant,
    until: Instant,
) -> Result<ClientResult, ForumError> {
    let socket = Arc::new(net::connect_udp(target).await?);
    let mut client = ReliableClient::new(socket, rand::random(), retry);
    let user = format!("bench{k}");
    login(&mut client, &user, target).await?;
    let mut thread_number = 0u32;
    let mut current = thread_title(k, thread_number);
    expect_ok(&mut client, &format!("CRT {current}"), target).await?;
    let mut in_current = 0u32;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut result = ClientResult::default();
    tokio::time::sleep_until(start.into()).await;
    let mut n = 0u64;
    while Instant::now() < until {
        let op = if in_current >= MESSAGES_PER_THREAD {
            Op::Create
        } else {
            match rng.gen_range(0..3) {
                0 => Op::Post,
                1 => Op::Read,
                _ => Op::List,
            }
        };
        let (request, text) = match op {
            Op::Post => {
                n += 1;
                let text = format!("b{k}-{n}");
                (format!("MSG {current} {text}"), Some(text))
            }
            Op::Read => {
                let other = rng.gen_range(0..clients);
                (format!("RDT {}", thread_title(other, 0)), None)
            }
            Op::List => ("LST".to_string(), None),
            Op::Create => {
                thread_number += 1;
                current = thread_title(k, thread_number);
                in_current = 0;
                (format!("CRT {current}"), None)
            }
        };
        if op == Op::Post {
            in_current += 1;
        }
        let sent = Instant::now();
        let outcome = client.call(request.as_bytes()).await;
        let took = sent.elapsed();
        match outcome {
            Ok(body) => {
                if let Some(text) = text {
                    if posted(&body) {
                        result.confirmed.push(text);
                    }
                }
                if sent >= measure_from && Instant::now() <= until {
                    let samples = result.samples.entry(op.name()).or_default();
                    samples.push(took.as_nanos() as u64);
                }
            }
            Err(_) => result.failed += 1,
        }
    }
    let _ = client.call(b"XIT").await;
    result.retransmissions = client.stats().retransmissions;
    Ok(result)
}

/// The title of thread `number` of client `k`.
fn thread_title(k: u32, number: u32) -> String {
    format!("bench-{k}-{number}")
}

fn posted(body: &[u8]) -> bool {
    Reply::decode(&String::from_utf8_lossy(body)).is_some_and(|reply| reply.status == Status::Ok)
}

async fn login(
    client: &mut ReliableClient,
    user: &str,
    server: SocketAddr,
) -> Result<(), ForumError> {
    let hello = Login::Hello { user: user.into() }.to_string();
    let reply = call(client, &hello, server).await?;
    let password = "bench".to_string();
    let request = match reply.status {
        Status::Password => Login::Login {
            user: user.into(),
            password,
        },
        _ => Login::Register {
            user: user.into(),
            password,
        },
    };
    expect_ok(client, &request.to_string(), server).await
}

async fn expect_ok(
    client: &mut ReliableClient,
    body: &str,
    server: SocketAddr,
) -> Result<(), ForumError> {
    let reply = call(client, body, server).await?;
    if reply.status == Status::Ok {
        Ok(())
    } else {
        Err(bench_error(
            server,
            &format!("`{body}` was refused: {}", reply.lines.join(" ")),
        ))
    }
}

async fn call(
    client: &mut ReliableClient,
    body: &str,
    server: SocketAddr,
) -> Result<Reply, ForumError> {
    let bytes = client
        .call(body.as_bytes())
        .await
        .map_err(|error| match error {
            CallError::NoResponse { .. } => bench_error(server, "server not responding"),
            other => bench_error(server, &other.to_string()),
        })?;
    Reply::decode(&String::from_utf8_lossy(&bytes))
        .ok_or_else(|| bench_error(server, "reply not understood"))
}

fn bench_error(server: SocketAddr, text: &str) -> ForumError {
    ForumError::Io {
        what: format!("forum bench against {server}"),
        cause: std::io::Error::other(text.to_string()),
    }
}

/// Starts a forum server on its own thread; returns its address, its stop switch and
/// its store.
fn start_server(dir: &Path) -> Result<(SocketAddr, oneshot::Sender<()>, SharedStore), ForumError> {
    let store = Arc::new(Mutex::new(Store::open(dir)?));
    let shared = Arc::clone(&store);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    spawn_named("forum-server", move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready_tx.send(Err(ForumError::Io {
                    what: "the server's runtime".into(),
                    cause: error,
                }));
                return;
            }
        };
        runtime.block_on(async move {
            let bound = server::bind([127, 0, 0, 1].into(), 0).await;
            let (udp, tcp) = match bound {
                Ok(sockets) => sockets,
                Err(error) => {
                    let _ = ready_tx.send(Err(error.into()));
                    return;
                }
            };
            let addr = udp.local_addr();
            let _ = ready_tx.send(addr.map_err(|cause| ForumError::Io {
                what: "the server's socket".into(),
                cause,
            }));
            let _ = server::serve_shared(
                udp,
                tcp,
                store,
                ServerOptions::default(),
                Reporter::silent(),
                Reporter::silent(),
                async {
                    let _ = stop_rx.await;
                },
            )
            .await;
        });
    })?;
    let addr = ready_rx.recv().map_err(|_| ForumError::Io {
        what: "the bench's forum server".into(),
        cause: std::io::Error::other("it stopped before it was ready"),
    })??;
    Ok((addr, stop_tx, shared))
}

/// The server's store, also held by the bench to read its counts.
type SharedStore = Arc<Mutex<Store>>;

/// Starts `socklab proxy` with `loss` % each way in front of `upstream`, on its own
/// thread; returns its address and its stop switch.
fn start_proxy(
    upstream: SocketAddr,
    loss: f64,
    seed: u64,
) -> Result<(SocketAddr, oneshot::Sender<()>), ForumError> {
    let mut config = ProxyConfig::default();
    let proxy_error = |text: String| ForumError::Io {
        what: "the bench's proxy".into(),
        cause: std::io::Error::other(text),
    };
    for (key, value) in [
        ("upstream", upstream.to_string()),
        ("loss", format!("{loss}%")),
        ("seed", seed.to_string()),
    ] {
        config
            .apply(key, &value)
            .map_err(|e| proxy_error(e.to_string()))?;
    }
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    spawn_named("forum-proxy", move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = ready_tx.send(Err(error.to_string()));
                return;
            }
        };
        runtime.block_on(async move {
            let sockets = match proxy::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await {
                Ok(sockets) => sockets,
                Err(error) => {
                    let _ = ready_tx.send(Err(error.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(sockets.local_addr()));
            let options = proxy::RunOptions {
                reporter: Reporter::silent(),
                log: None,
                stats_interval: None,
            };
            let _ = proxy::run(config, sockets, options, async {
                let _ = stop_rx.await;
            })
            .await;
        });
    })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| proxy_error("it stopped before it was ready".into()))?
        .map_err(proxy_error)?;
    Ok((addr, stop_tx))
}

/// The UDP echo floor: `echo bench --udp` with as many clients, against an echo server
/// on its own thread.
async fn echo_floor(
    options: &ForumBenchOptions,
    loopback: SocketAddr,
) -> Result<BenchReport, ForumError> {
    let socket = std::net::UdpSocket::bind(loopback).map_err(|cause| ForumError::Io {
        what: "the echo floor's server".into(),
        cause,
    })?;
    let addr = socket.local_addr().map_err(|cause| ForumError::Io {
        what: "the echo floor's server".into(),
        cause,
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|cause| ForumError::Io {
            what: "the echo floor's server".into(),
            cause,
        })?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = spawn_named("echo-floor", move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let Ok(socket) = UdpSocket::from_std(socket) else {
                return;
            };
            let serve_options = echo::ServerOptions {
                transport: Transport::Udp,
                upper: false,
                show_reads: false,
                read_delay: None,
                framed: false,
            };
            let _ = echo::udp::serve_udp(socket, serve_options, Reporter::silent(), async {
                let _ = stop_rx.await;
            })
            .await;
        });
    })?;
    let bench_options = BenchOptions {
        transport: Transport::Udp,
        connections: options.clients.max(1),
        size: 64,
        duration: options.duration,
        warmup: options.warmup,
        timeout: Duration::from_secs(1),
    };
    let report = echo::bench(&addr.ip().to_string(), addr.port(), &bench_options).await;
    let _ = stop_tx.send(());
    let _ = thread.join();
    report.map_err(|error| ForumError::Io {
        what: "the echo floor".into(),
        cause: std::io::Error::other(error.to_string()),
    })
}

fn summarise(
    options: &ForumBenchOptions,
    clients: u32,
    results: Vec<ClientResult>,
    dir: &Path,
    echo_floor: BenchReport,
) -> Result<ForumBenchReport, ForumError> {
    let seconds = options.duration.as_secs_f64();
    let mut all = Vec::new();
    let mut by_op: HashMap<&'static str, Vec<u64>> = HashMap::new();
    let (mut failed, mut retransmissions) = (0, 0);
    let mut confirmed = Vec::new();
    for result in results {
        for (op, samples) in result.samples {
            all.extend_from_slice(&samples);
            by_op.entry(op).or_default().extend(samples);
        }
        failed += result.failed;
        retransmissions += result.retransmissions;
        confirmed.extend(result.confirmed);
    }
    let row = |op: &str, samples: &mut Vec<u64>| OpReport {
        op: op.to_string(),
        count: samples.len() as u64,
        per_sec: samples.len() as f64 / seconds,
        latency_us: Percentiles::of(samples),
    };
    let mut ops = vec![row("all", &mut all)];
    for op in [Op::Post, Op::Read, Op::List, Op::Create] {
        let mut samples = by_op.remove(op.name()).unwrap_or_default();
        ops.push(row(op.name(), &mut samples));
    }

    // Exactly once: count every bench message text in the thread files.
    let store = Store::open(dir)?;
    let mut found: HashMap<String, u64> = HashMap::new();
    for title in store.list() {
        for line in store.read(&title).map_err(ForumError::Store)? {
            if let Some((_, text)) = line.split_once(": ") {
                *found.entry(text.to_string()).or_default() += 1;
            }
        }
    }
    let posts_found = found.values().sum();
    let posts_lost = confirmed.iter().filter(|t| !found.contains_key(*t)).count() as u64;
    let posts_duplicated = found.values().filter(|&&n| n > 1).count() as u64;
    Ok(ForumBenchReport {
        clients,
        loss_percent: options.loss.unwrap_or(0.0),
        seed: options.seed,
        duration_s: seconds,
        ops,
        failed,
        retransmissions,
        posts_confirmed: confirmed.len() as u64,
        posts_found,
        posts_lost,
        posts_duplicated,
        echo_floor,
        fsyncs: 0,
        group_commits: 0,
    })
}

/// Renders the report as a table.
pub fn render(report: &ForumBenchReport) -> String {
    let mut table = output::table(&["workload", "ops/s", "p50 µs", "p99 µs", "max µs", "count"]);
    let floor = &report.echo_floor;
    table.add_row(vec![
        format!("UDP echo floor, {} clients", floor.connections),
        format!("{:.0}", floor.round_trips_per_sec),
        format!("{:.1}", floor.latency_us.p50),
        format!("{:.1}", floor.latency_us.p99),
        format!("{:.1}", floor.latency_us.max),
        floor.round_trips.to_string(),
    ]);
    for op in &report.ops {
        let label = if op.op == "all" {
            format!("forum MSG/RDT/LST (+CRT), {} clients", report.clients)
        } else {
            format!("  {}", op.op)
        };
        table.add_row(vec![
            label,
            format!("{:.0}", op.per_sec),
            format!("{:.1}", op.latency_us.p50),
            format!("{:.1}", op.latency_us.p99),
            format!("{:.1}", op.latency_us.max),
            op.count.to_string(),
        ]);
    }
    let verdict = if report.exactly_once() {
        "every operation completed; every confirmed post is in its thread exactly once".to_string()
    } else {
        format!(
            "{} operations failed, {} confirmed posts lost, {} posts duplicated",
            report.failed, report.posts_lost, report.posts_duplicated
        )
    };
    format!(
        "{table}\nloss {}% each way (seed {}), {:.1} s measured, {} retransmissions\nposts confirmed {}, found in the thread files {}: {verdict}\nstore: {} fsyncs for {} batches with changes (whole run)",
        report.loss_percent,
        report.seed,
        report.duration_s,
        report.retransmissions,
        report.posts_confirmed,
        report.posts_found,
        report.fsyncs,
        report.group_commits,
    )
}

/// A temporary data directory, deleted when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, ForumError> {
        let path = std::env::temp_dir().join(format!(
            "socklab-forum-bench-{:016x}",
            rand::random::<u64>()
        ));
        std::fs::create_dir(&path).map_err(|cause| ForumError::Io {
            what: format!("creating {}", path.display()),
            cause,
        })?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a named thread (the name shows in `top -H` and `perf`).
fn spawn_named(
    name: &str,
    body: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, ForumError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(|cause| ForumError::Io {
            what: format!("starting the {name} thread"),
            cause,
        })
}
