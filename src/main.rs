//! The `socklab` binary: parse the command line, decide colour once, run the chosen
//! subcommand on a tokio runtime, and turn the outcome into an exit code:
//! 0 success, 1 "ran, but a check failed" (e.g. a lost UDP reply), 2 an error.
//!
//! Every error a user can cause (a port in use, a refused connection, an unknown host,
//! a bad argument) is printed as one line, `socklab: cannot bind 127.0.0.1:9000:
//! address already in use`, on stderr.

mod cli;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use cli::{CaptureArgs, Cli, Command, EchoCommand, FileCommand, ForumCommand, ProxyArgs};
use socklab::echo::{self, ClientOptions, ServerOptions, Transport};
use socklab::output::{self, Reporter, Verbosity};
use socklab::proxy::{self, config::ProxyConfig};
use socklab::{capture, demo, file, forum, net};

/// What a successful run concluded.
enum Outcome {
    /// Everything worked.
    Success,
    /// The command ran but a check failed (exit code 1), e.g. requests were lost.
    CheckFailed,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse_ordered() {
        Ok(cli) => cli,
        Err(error) => return report_usage_error(error),
    };
    let no_color = std::env::var("NO_COLOR").ok();
    let color = output::decide_color(
        cli.color.into(),
        io::stdout().is_terminal(),
        no_color.as_deref(),
    );
    colored::control::set_override(color);

    let mut builder = match cli.command {
        // The proxy's UDP relay is one task fed by small reader tasks: on one thread
        // they hand datagrams over without waking another thread, which measured about
        // 40 µs less per round trip on loopback. (Its fast path, for unimpaired UDP,
        // runs on threads of its own: proxy::fast.) Everything else uses every core.
        Command::Proxy(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "socklab: cannot start the async runtime: {}",
                net::describe(&error)
            );
            return ExitCode::from(2);
        }
    };
    // `block_on` polls its future on this, the main thread, outside tokio's worker
    // pool: a server awaited there has every readiness event handed over from a worker
    // thread (measured: 3 context switches per UDP echo instead of 1, and 0.8x the
    // throughput at 50 clients). Spawning runs the command on a worker instead.
    match runtime.block_on(async { tokio::spawn(run(cli)).await }) {
        Ok(Ok(Outcome::Success)) => ExitCode::SUCCESS,
        Ok(Ok(Outcome::CheckFailed)) => ExitCode::from(1),
        Ok(Err(error)) => {
            eprintln!("socklab: {}", one_line(&error));
            ExitCode::from(2)
        }
        Err(panic) => {
            eprintln!("socklab: internal error (please report it): {panic}");
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, joined with ": " as anyhow's `{:#}` does, but
/// without a cause the line already says: typed errors put their OS error in their own
/// message ("cannot write the analysis: no space left on device"), so printing the
/// source again would repeat it ("...: No space left on device (os error 28)").
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        let plain = text
            .find(" (os error")
            .map_or(text.as_str(), |cut| &text[..cut]);
        if !line.is_empty() && line.to_lowercase().contains(&plain.to_lowercase()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints a clap error. Help and version go to stdout with exit 0; a bare `socklab`
/// prints the help on stderr; every other mistake is one line on stderr, exit 2.
fn report_usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(2)
        }
        _ => {
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("socklab: {first} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Writes one line to stdout. When the reader of a pipe has gone away (`socklab ... |
/// head`), exit quietly with success instead of failing: that is what the user wanted.
fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    if let Err(error) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// Prints a block of text (a rendered table) line by line through [`print_line`].
fn print_block(text: &str) {
    for line in text.lines() {
        print_line(line);
    }
}

/// The reporter long-running commands write their event lines to.
fn stdout_reporter(verbosity: Verbosity) -> Reporter {
    Reporter::new(verbosity, print_line)
}

/// Resolves when the user presses Ctrl-C (or the process gets SIGINT).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler could be installed: never resolve, run until killed.
        std::future::pending::<()>().await;
    }
}

async fn run(cli: Cli) -> Result<Outcome> {
    let verbosity = cli.verbosity();
    match cli.command {
        Command::Echo(command) => run_echo(command, verbosity).await,
        Command::File(command) => run_file(command, verbosity).await,
        Command::Forum(command) => run_forum(command, verbosity).await,
        Command::Proxy(args) => run_proxy(*args, verbosity).await,
        Command::Capture(args) => run_capture(&args, verbosity).await,
        Command::Analyze(args) => run_analyze(&args),
        Command::Synth(args) => {
            let options = socklab::capture::synth::SynthOptions::from(&args);
            let summary = socklab::capture::synth::write_synthetic(&args.file, &options)?;
            // The file is the result; the account of it goes to stderr, so stdout stays
            // free for a pipeline.
            eprintln!(
                "{}",
                socklab::capture::synth::render_summary(&args.file, &summary)
            );
            Ok(Outcome::Success)
        }
        Command::Demo(args) => {
            demo::run(&args.bench_duration, stdout_reporter(verbosity)).await?;
            Ok(Outcome::Success)
        }
        Command::Completions { shell } => {
            let mut buffer = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "socklab", &mut buffer);
            print_block(&String::from_utf8_lossy(&buffer));
            Ok(Outcome::Success)
        }
    }
}

async fn run_echo(command: EchoCommand, verbosity: Verbosity) -> Result<Outcome> {
    let reporter = stdout_reporter(verbosity);
    match command {
        EchoCommand::Server(args) => {
            let options = ServerOptions::from(&args);
            let addr = args.addr();
            match options.transport {
                Transport::Tcp => {
                    let listener = net::bind_tcp(addr).await?;
                    echo::serve_tcp(listener, options, reporter, ctrl_c()).await?;
                }
                Transport::Udp => {
                    let socket = net::bind_udp(addr).await?;
                    echo::serve_udp(socket, options, reporter, ctrl_c()).await?;
                }
            }
            Ok(Outcome::Success)
        }
        EchoCommand::Client(args) => {
            let options = ClientOptions::from(&args);
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let summary =
                echo::run_client(&args.host, args.port, &options, stdin, reporter).await?;
            Ok(if summary.lost() > 0 {
                Outcome::CheckFailed
            } else {
                Outcome::Success
            })
        }
        EchoCommand::Bench(args) => {
            let options = echo::BenchOptions::from(&args);
            let report = echo::bench(&args.host, args.port, &options).await?;
            if args.json {
                print_line(&serde_json::to_string(&report).context("cannot encode the report")?);
            } else {
                print_block(&echo::render_bench(&report));
            }
            Ok(if report.errors > 0 {
                Outcome::CheckFailed
            } else {
                Outcome::Success
            })
        }
    }
}

async fn run_file(command: FileCommand, verbosity: Verbosity) -> Result<Outcome> {
    let reporter = stdout_reporter(verbosity);
    // Progress bars are for people: only on a terminal, and never with -q.
    let progress = io::stderr().is_terminal() && verbosity > Verbosity::Quiet;
    match command {
        FileCommand::Serve(args) => {
            let addr = std::net::SocketAddr::new(args.bind, args.port);
            let listener = net::bind_tcp(addr).await?;
            let options = file::ServeOptions {
                dir: args.dir,
                max_size: args.max_size,
            };
            file::serve(listener, options, reporter, ctrl_c()).await?;
        }
        FileCommand::Put(args) => {
            let options = file::TransferOptions {
                force: args.force,
                progress,
            };
            let report = file::put(
                &args.host,
                args.port,
                &args.path,
                args.name.as_deref(),
                &options,
            )
            .await?;
            reporter.info(report);
        }
        FileCommand::Get(args) => {
            let options = file::TransferOptions {
                force: args.force,
                progress,
            };
            let report = file::get(
                &args.host,
                args.port,
                &args.name,
                args.output.as_deref(),
                &options,
            )
            .await?;
            reporter.info(report);
        }
        FileCommand::List(args) => {
            let entries = file::list(&args.host, args.port).await?;
            if args.json {
                print_block(&file::render_list_json(&entries)?);
            } else {
                print_block(&file::render_list(&entries));
            }
        }
    }
    Ok(Outcome::Success)
}

async fn run_forum(command: ForumCommand, verbosity: Verbosity) -> Result<Outcome> {
    match command {
        ForumCommand::Server(args) => {
            let store = forum::store::Store::open(&args.dir)?;
            let (udp, tcp) = forum::server::bind(args.bind, args.port).await?;
            let local = udp.local_addr()?;
            // The spec fixes stdout (the server log); where we listen is a diagnostic.
            let diag = Reporter::new(verbosity, |line| eprintln!("{line}"));
            diag.info(format!(
                "forum server listening on {local} (udp and tcp), data in {}",
                args.dir.display()
            ));
            let options = forum::server::ServerOptions {
                session_timeout: args.session_timeout,
                max_upload: args.max_upload,
                ..forum::server::ServerOptions::default()
            };
            let log = Reporter::new(Verbosity::Normal, print_line);
            forum::server::serve(udp, tcp, store, options, log, diag, ctrl_c()).await?;
            Ok(Outcome::Success)
        }
        ForumCommand::Bench(args) => {
            let options = forum::bench::ForumBenchOptions {
                clients: args.clients,
                duration: args.duration,
                warmup: args.warmup,
                loss: args.loss,
                seed: args.seed,
                retry: forum::reliable::RetryConfig::default(),
            };
            let report = forum::bench::bench(&options).await?;
            if args.json {
                print_block(&serde_json::to_string_pretty(&report)?);
            } else {
                print_block(&forum::bench::render(&report));
            }
            Ok(if report.exactly_once() {
                Outcome::Success
            } else {
                Outcome::CheckFailed
            })
        }
        ForumCommand::Client(args) => {
            let (host, port) = args.host_port().map_err(anyhow::Error::msg)?;
            let server = net::resolve_udp(&host, port).await?;
            let options = forum::client::ClientOptions {
                server,
                retry: forum::reliable::RetryConfig {
                    initial_rto: args.timeout,
                    retries: args.retries,
                    ..forum::reliable::RetryConfig::default()
                },
                heartbeat: args.heartbeat,
                dir: std::env::current_dir()?,
                progress: io::stderr().is_terminal() && verbosity > Verbosity::Quiet,
            };
            let input = tokio::io::BufReader::new(tokio::io::stdin());
            let outcome = forum::client::run(options, input, QuietPipe(io::stdout())).await?;
            Ok(match outcome {
                forum::client::ClientOutcome::ServerGone => Outcome::CheckFailed,
                _ => Outcome::Success,
            })
        }
    }
}

/// `socklab analyze`: reading a file is blocking work, done on tokio's blocking pool.
fn run_analyze(args: &cli::AnalyzeArgs) -> Result<Outcome> {
    let options = args.options();
    let mut out = io::BufWriter::new(QuietPipe(io::stdout()));
    let outcome = tokio::task::block_in_place(|| capture::analyze::analyze(&options, &mut out))?;
    out.flush()?;
    for warning in &outcome.warnings {
        eprintln!("socklab: warning: {warning}");
    }
    Ok(Outcome::Success)
}

/// Standard output for the forum client: a reader that went away (`| head`) ends the
/// program quietly, as everywhere in socklab.
struct QuietPipe(io::Stdout);

impl Write for QuietPipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        quiet_on_broken_pipe(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        quiet_on_broken_pipe(self.0.flush())
    }
}

fn quiet_on_broken_pipe<T>(result: io::Result<T>) -> io::Result<T> {
    if let Err(error) = &result {
        if error.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
    result
}

async fn run_proxy(args: ProxyArgs, verbosity: Verbosity) -> Result<Outcome> {
    // The file first, then every flag in the order typed: later settings win.
    let mut config = match &args.config {
        Some(path) => proxy::load_config(path)?,
        None => ProxyConfig::default(),
    };
    for (key, value) in &args.settings {
        config.apply(key, value)?;
    }
    // What single settings cannot check (a gap without reordering...), once all are in.
    config.validate()?;
    let listen = proxy::listen_addr(&config)?;
    let log = match args.log.as_deref() {
        None => None,
        Some("-") => Some(Box::new(io::stdout()) as Box<dyn Write + Send>),
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| anyhow::anyhow!("cannot create {path}: {}", net::describe(&e)))?;
            Some(Box::new(io::BufWriter::new(file)) as Box<dyn Write + Send>)
        }
    };
    let sockets = proxy::bind(listen).await?;
    let options = proxy::RunOptions {
        reporter: stdout_reporter(verbosity),
        log,
        // A table every few seconds is for someone watching, not for a log file.
        stats_interval: args.stats_interval.filter(|_| io::stdout().is_terminal()),
    };
    let summary = proxy::run(config, sockets, options, ctrl_c()).await?;
    print_block(&proxy::render_summary(&summary));
    Ok(Outcome::Success)
}

/// `socklab capture`: libpcap blocks while it waits for packets, so the capture runs on
/// a blocking thread; Ctrl-C here sets the flag it checks after every read timeout.
async fn run_capture(args: &CaptureArgs, verbosity: Verbosity) -> Result<Outcome> {
    use socklab::capture::live::{self, LiveOptions};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let options = LiveOptions::from(args);
    let stop = Arc::new(AtomicBool::new(false));
    // Diagnostics on stderr, so stdout holds only the packet lines.
    let diag = Reporter::new(verbosity, |line| eprintln!("{line}"));
    let worker = {
        let stop = Arc::clone(&stop);
        let diag = diag.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            let mut capture = live::open(&options)?;
            diag.info(capture.started_line());
            capture.run(&options, &stop, write_line)
        })
    };
    tokio::pin!(worker);
    let joined = tokio::select! {
        joined = &mut worker => joined,
        () = ctrl_c() => {
            stop.store(true, Ordering::Relaxed);
            worker.await
        }
    };
    let summary = joined.context("the capture thread failed")??;
    if summary.reader_gone {
        return Ok(Outcome::Success);
    }
    match (&options.write, summary.written) {
        (Some(path), Some(written)) => diag.info(format!(
            "{written} packet{} written to {}",
            if written == 1 { "" } else { "s" },
            path.display()
        )),
        _ => diag.info(format!(
            "{} packet{} captured",
            summary.captured,
            if summary.captured == 1 { "" } else { "s" }
        )),
    }
    if let Some(dropped) = summary.dropped.filter(|&dropped| dropped > 0) {
        diag.info(format!("{dropped} packets dropped by the kernel"));
    }
    Ok(Outcome::Success)
}

/// Writes one line to stdout; false when the reader has gone away (`| head`), so the
/// capture stops quietly.
fn write_line(line: &str) -> bool {
    let mut out = io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        // A closed pipe, or a stdout that cannot be written any more: stop quietly.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed error that names its OS error is not followed by that error again; a
    /// plain context chain still shows every link.
    #[test]
    fn one_line_leaves_out_a_cause_already_said() {
        let typed = anyhow::Error::from(capture::CaptureError::Io {
            what: "cannot write the analysis".to_string(),
            source: io::Error::from_raw_os_error(28),
        });
        assert_eq!(
            one_line(&typed),
            "cannot write the analysis: no space left on device"
        );
        let chained =
            anyhow::Error::from(io::Error::from_raw_os_error(2)).context("reading lab.yaml");
        assert_eq!(
            one_line(&chained),
            "reading lab.yaml: No such file or directory (os error 2)"
        );
    }
}
