//! The built-in demo (`socklab demo`): the README's first command. On loopback, with
//! nothing to set up, it starts TCP and UDP echo servers inside this process, talks to
//! them the way lab 1 does (a TCP client, a UDP pinger, the sticky-packet lesson with
//! and without framing) and runs the load generator, printing what each step shows;
//! last, it runs the UDP pinger through the impairing proxy (lab 2) and prints the
//! proxy's statistics.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::echo::{self, BenchOptions, ClientOptions, EchoError, ServerOptions, Transport};
use crate::net;
use crate::output::{Reporter, Verbosity};
use crate::proxy::{self, config::ProxyConfig, ProxyError};

/// Runs the demo, writing every step to `reporter`; each load-generator run lasts
/// `bench_duration`.
///
/// # Errors
/// [`EchoError`] when a loopback socket cannot be bound or a step fails.
pub async fn run(bench_duration: &Duration, reporter: Reporter) -> Result<(), EchoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut servers = Servers::default();
    let quiet = Reporter::silent();

    heading(
        &reporter,
        "1. TCP echo: a client sends lines, the server (--upper) answers in capitals",
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
        "2. UDP pinger: each datagram is answered to its sender; lost ones would time out",
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

    heading(
        &reporter,
        "3. Sticky packets: 10 quick writes, a server that reads every 100 ms",
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
        "4. The fix: a 4-byte length prefix on every message (--framed)",
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
        "5. The same burst over UDP: datagrams keep their boundaries",
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
        "6. Load generator: closed-loop ping-pong, 64-byte messages",
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
        "7. The UDP pinger through the impairing proxy: 20% loss each way, 5 ms +- 2 ms delay",
    );
    pinger_through_proxy(udp, &reporter).await?;
    servers.stop();
    Ok(())
}

/// Step 7: starts a proxy in front of the UDP echo server at `udp`, runs the pinger
/// through it and prints the proxy's summary table. Lost pings are the point, not a
/// failure.
async fn pinger_through_proxy(udp: SocketAddr, reporter: &Reporter) -> Result<(), EchoError> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let failed = |error| proxy_failed(loopback, error);
    let mut config = ProxyConfig::default();
    let upstream = udp.to_string();
    for (key, value) in [
        ("upstream", upstream.as_str()),
        ("loss", "20%"),
        ("delay", "5ms"),
        ("jitter", "2ms"),
        ("seed", "7"),
    ] {
        config
            .apply(key, value)
            .map_err(|e| failed(ProxyError::Config(e)))?;
    }
    let sockets = proxy::bind(loopback).await.map_err(failed)?;
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
        Ok(result) => result.map_err(failed)?,
        // The proxy task panicked: report it like any other failed step.
        Err(join) => return Err(proxy_failed(loopback, join)),
    };
    pinged?;
    reporter.result(proxy::render_summary(&summary));
    Ok(())
}

/// The demo returns [`EchoError`]s; a failure of its proxy step becomes one, keeping
/// the proxy's own message.
fn proxy_failed(
    addr: SocketAddr,
    error: impl std::error::Error + Send + Sync + 'static,
) -> EchoError {
    EchoError::Io {
        operation: "running the demo's proxy on",
        addr,
        cause: std::io::Error::other(error),
    }
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
