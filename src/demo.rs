//! The built-in demo (`socklab demo`): the README's first command. On loopback, with
//! nothing to set up, it starts servers inside this process and talks to them the way
//! the labs do, printing what each step shows:
//!
//! 1. and 2. the discussion forum of lab 3 (in [`forum`]): a server on a scratch
//!    directory, a client that logs in, creates a thread, posts and uploads a file,
//!    and a second client that goes through the impairing proxy with 20% loss, whose
//!    lost datagrams are retransmitted and whose commands still apply once;
//! 3. to 8. lab 1: TCP and UDP echo servers, a TCP client, a UDP pinger, the
//!    sticky-packet lesson with and without framing, and the load generator;
//! 9. lab 2: the UDP pinger through the impairing proxy, and the proxy's statistics;
//! 10. lab 4: what the analyzer makes of the packets steps 1 to 4 sent, which the demo
//!     captured on the loopback interface (in [`capture`]; skipped, with the reason,
//!     where capturing is not allowed).

mod capture;
mod forum;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;

use crate::capture::CaptureError;
use crate::echo::{self, BenchOptions, ClientOptions, EchoError, ServerOptions, Transport};
use crate::forum::client::ClientOutcome;
use crate::forum::ForumError;
use crate::net::{self, describe};
use crate::output::{Reporter, Verbosity};
use crate::proxy::{self, config::ProxyConfig, ProxyError};

/// What can stop the demo. Lost datagrams and timeouts are part of the show, not
/// errors; these are the failures of the machinery itself.
#[derive(Debug, Error)]
pub enum DemoError {
    /// An echo step failed.
    #[error(transparent)]
    Echo(#[from] EchoError),
    /// The forum server or a forum client failed.
    #[error(transparent)]
    Forum(#[from] ForumError),
    /// A proxy step failed.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The demo's own capture could not be finished or analyzed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// A forum client's session ended without the server's goodbye.
    #[error("the demo's forum client {user} ended early: {}", describe_outcome(*.outcome))]
    Session {
        /// Whose client it was.
        user: &'static str,
        /// How it ended.
        outcome: ClientOutcome,
    },
    /// A file or directory of the demo's scratch directory could not be used.
    #[error("cannot {action} {}: {}", .path.display(), describe(.cause))]
    Files {
        /// What was being done ("create", "read").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// A server or proxy the demo started stopped with a panic.
    #[error("the demo's {what} stopped unexpectedly")]
    Panicked {
        /// Which one.
        what: &'static str,
    },
}

impl DemoError {
    /// A `map_err` adapter: `fs::read(path).map_err(DemoError::files("read", path))`.
    fn files(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DemoError {
        let path = path.to_path_buf();
        move |cause| DemoError::Files {
            action,
            path,
            cause,
        }
    }
}

fn describe_outcome(outcome: ClientOutcome) -> &'static str {
    match outcome {
        ClientOutcome::Goodbye => "it said goodbye",
        ClientOutcome::EndOfInput => "its script ended before it logged in",
        ClientOutcome::ServerGone => "the server stopped answering",
    }
}

/// Runs the demo, writing every step to `reporter`; each load-generator run lasts
/// `bench_duration`.
///
/// # Errors
/// [`DemoError`] when a loopback socket cannot be bound, the scratch directory cannot
/// be used, or a step fails.
pub async fn run(bench_duration: &Duration, reporter: Reporter) -> Result<(), DemoError> {
    let recording = capture::start(&reporter).await;
    forum::run(&reporter).await?;

    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers = Servers::default();
    let quiet = Reporter::silent();

    heading(
        &reporter,
        "3. TCP echo: a client sends lines, the server (--upper) answers in capitals",
    );
    let upper = ServerOptions {
        upper: true,
        ..ServerOptions::default()
    };
    let tcp = servers.tcp(loopback, upper.clone(), quiet.clone()).await?;
    reporter.info(format!(
        "$ socklab echo server --tcp --upper   (listening on {tcp})"
    ));
    reporter.info(format!(
        "$ socklab echo client --tcp {} {} --count 3 --interval 0 --message 'hello {{seq}}'",
        tcp.ip(),
        tcp.port()
    ));
    let client = ClientOptions {
        message: Some("hello {seq}".to_string()),
        count: Some(3),
        interval: Duration::ZERO,
        ..ClientOptions::default()
    };
    client_run(tcp, &client, &reporter).await?;

    heading(
        &reporter,
        "4. UDP pinger: each datagram is answered to its sender; lost ones would time out",
    );
    let udp = servers.udp(loopback, upper, quiet.clone()).await?;
    reporter.info(format!(
        "$ socklab echo client --udp {} {} --count 5 --interval 100",
        udp.ip(),
        udp.port()
    ));
    let pinger = ClientOptions {
        transport: Transport::Udp,
        count: Some(5),
        interval: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    client_run(udp, &pinger, &reporter).await?;
    // Steps 1 to 4 are what the capture is for; the load generator would swamp it.
    let recording = match recording {
        Some(recording) => Some(recording.stop().await?),
        None => None,
    };

    heading(
        &reporter,
        "5. Sticky packets: 10 quick writes, a server that reads every 100 ms",
    );
    // Only the server's result lines (its reads), not its status lines.
    let server_log = Reporter::new(Verbosity::Quiet, {
        let reporter = reporter.clone();
        move |line| reporter.result(format!("  server: {line}"))
    });
    let sticky = ServerOptions {
        show_reads: true,
        read_delay: Some(Duration::from_millis(100)),
        ..ServerOptions::default()
    };
    let raw = servers
        .tcp(loopback, sticky.clone(), server_log.clone())
        .await?;
    reporter.info(format!(
        "$ socklab echo server --tcp --show-reads --read-delay 100   (on {raw})"
    ));
    reporter.info(format!(
        "$ socklab echo client --tcp {} {} --burst 10",
        raw.ip(),
        raw.port()
    ));
    let burst = ClientOptions {
        burst: Some(10),
        ..ClientOptions::default()
    };
    client_run(raw, &burst, &reporter).await?;

    heading(
        &reporter,
        "6. The fix: a 4-byte length prefix on every message (--framed)",
    );
    let framed = servers
        .tcp(
            loopback,
            ServerOptions {
                framed: true,
                ..sticky
            },
            server_log,
        )
        .await?;
    reporter.info(format!(
        "$ socklab echo server --tcp --framed --show-reads --read-delay 100   (on {framed})"
    ));
    reporter.info(format!(
        "$ socklab echo client --tcp {} {} --burst 10 --framed",
        framed.ip(),
        framed.port()
    ));
    let framed_burst = ClientOptions {
        framed: true,
        ..burst.clone()
    };
    client_run(framed, &framed_burst, &reporter).await?;

    heading(
        &reporter,
        "7. The same burst over UDP: datagrams keep their boundaries",
    );
    reporter.info(format!(
        "$ socklab echo client --udp {} {} --burst 10",
        udp.ip(),
        udp.port()
    ));
    let udp_burst = ClientOptions {
        transport: Transport::Udp,
        ..burst
    };
    client_run(udp, &udp_burst, &reporter).await?;

    heading(
        &reporter,
        "8. Load generator: closed-loop ping-pong, 64-byte messages",
    );
    for (transport, target, connections) in [
        (Transport::Tcp, tcp, 1),
        (Transport::Tcp, tcp, 10),
        (Transport::Udp, udp, 1),
    ] {
        reporter.info(format!(
            "$ socklab echo bench --{} {} {} -c {connections} -s 64 -d {}s",
            transport.name(),
            target.ip(),
            target.port(),
            bench_duration.as_secs_f64()
        ));
        let options = BenchOptions {
            transport,
            connections,
            size: 64,
            duration: *bench_duration,
            warmup: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        };
        let report = echo::bench(&target.ip().to_string(), target.port(), &options).await?;
        reporter.result(echo::render_bench(&report));
    }

    heading(
        &reporter,
        "9. The UDP pinger through the impairing proxy: 20% loss each way, 5 ms +- 2 ms delay",
    );
    pinger_through_proxy(udp, &reporter).await?;
    servers.stop();
    if let Some(recording) = recording {
        recording.analyze(&reporter)?;
    }
    Ok(())
}

/// Step 9: starts a proxy in front of the UDP echo server at `udp`, runs the pinger
/// through it and prints the proxy's summary table. Lost pings are the point, not a
/// failure.
async fn pinger_through_proxy(udp: SocketAddr, reporter: &Reporter) -> Result<(), DemoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = ProxyConfig::default();
    let upstream = udp.to_string();
    for (key, value) in [
        ("upstream", upstream.as_str()),
        ("loss", "20%"),
        ("delay", "5ms"),
        ("jitter", "2ms"),
        ("seed", "7"),
    ] {
        config.apply(key, value).map_err(ProxyError::Config)?;
    }
    let sockets = proxy::bind(loopback).await?;
    let listen = sockets.local_addr();
    reporter.info(format!(
        "$ socklab proxy --listen {listen} --upstream {udp} --loss 20% --delay 5ms --jitter 2ms --seed 7"
    ));
    let proxy_log = Reporter::new(Verbosity::Normal, {
        let reporter = reporter.clone();
        move |line| reporter.info(format!("  proxy: {line}"))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = proxy::RunOptions {
        reporter: proxy_log,
        log: None,
        stats_interval: None,
    };
    let running = tokio::spawn(proxy::run(config, sockets, options, async {
        // Either a stop signal or the sender going away ends the proxy.
        let _ = stopped.await;
    }));
    reporter.info(format!(
        "$ socklab echo client --udp {} {} --count 20 --interval 20 --timeout 200",
        listen.ip(),
        listen.port()
    ));
    let pinger = ClientOptions {
        transport: Transport::Udp,
        count: Some(20),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(200),
        ..ClientOptions::default()
    };
    let pinged = client_run(listen, &pinger, reporter).await;
    let _ = stop.send(());
    let summary = match running.await {
        Ok(result) => result?,
        Err(_) => return Err(DemoError::Panicked { what: "proxy" }),
    };
    pinged?;
    reporter.result(proxy::render_summary(&summary));
    Ok(())
}

fn heading(reporter: &Reporter, title: &str) {
    reporter.result("");
    reporter.result(format!("== {title}"));
}

async fn client_run(
    target: SocketAddr,
    options: &ClientOptions,
    reporter: &Reporter,
) -> Result<(), EchoError> {
    let no_input = tokio::io::BufReader::new(tokio::io::empty());
    echo::run_client(
        &target.ip().to_string(),
        target.port(),
        options,
        no_input,
        reporter.clone(),
    )
    .await?;
    Ok(())
}

/// The servers the demo started, stopped when it ends.
#[derive(Default)]
struct Servers {
    tasks: Vec<JoinHandle<()>>,
}

impl Servers {
    async fn tcp(
        &mut self,
        addr: SocketAddr,
        options: ServerOptions,
        log: Reporter,
    ) -> Result<SocketAddr, EchoError> {
        let listener = net::bind_tcp(addr).await?;
        let local = local_addr(listener.local_addr(), addr)?;
        self.spawn(echo::serve_tcp(
            listener,
            options,
            log,
            std::future::pending(),
        ));
        Ok(local)
    }

    async fn udp(
        &mut self,
        addr: SocketAddr,
        options: ServerOptions,
        log: Reporter,
    ) -> Result<SocketAddr, EchoError> {
        let socket = net::bind_udp(addr).await?;
        let local = local_addr(socket.local_addr(), addr)?;
        self.spawn(echo::serve_udp(
            socket,
            options,
            log,
            std::future::pending(),
        ));
        Ok(local)
    }

    fn spawn(&mut self, server: impl Future<Output = Result<(), EchoError>> + Send + 'static) {
        self.tasks.push(tokio::spawn(async move {
            // The servers run until stopped; an error here has nobody left to report to.
            let _ = server.await;
        }));
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn local_addr(
    result: std::io::Result<SocketAddr>,
    bound: SocketAddr,
) -> Result<SocketAddr, EchoError> {
    result.map_err(EchoError::io("reading the address of", bound))
}
