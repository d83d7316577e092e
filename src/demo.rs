//! The built-in demo (`socklab demo`): the README's first command. On loopback, with
//! nothing to set up, it starts TCP and UDP echo servers inside this process, talks to
//! them the way lab 1 does (a TCP client, a UDP pinger, the sticky-packet lesson with
//! and without framing) and runs the load generator, printing what each step shows.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::echo::{self, BenchOptions, ClientOptions, EchoError, ServerOptions, Transport};
use crate::net;
use crate::output::{Reporter, Verbosity};

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
    servers.stop();
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
