//! The command line, declared with clap's derive API. This file and `main.rs` are the
//! only ones that know clap: each subcommand's `Args` struct is turned into the plain
//! option struct the library takes, so the library can be driven from tests without
//! parsing any arguments.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use socklab::echo::{BenchOptions, ClientOptions, ServerOptions, Transport};
use socklab::output::{ColorMode, Verbosity};
use socklab::units::{parse_duration, parse_size};

/// The port the echo lab uses by default, as in Kurose & Ross's socket programming lab.
const DEFAULT_ECHO_PORT: u16 = 12000;
/// The file server's default port, next to the echo port.
const DEFAULT_FILE_PORT: u16 = 12001;

/// socklab: a socket-lab toolkit for computer-networks classes.
///
/// Echo servers and clients, the sticky-packet lesson, a load generator and file
/// transfer over a length-prefixed framing. Run `socklab demo` for a guided tour.
#[derive(Debug, Parser)]
#[command(
    name = "socklab",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// When to use colour: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorArg::Auto, value_name = "WHEN")]
    pub color: ColorArg,

    /// Print more: one line per connection, datagram or read.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The verbosity `-q`/`-v` ask for.
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// The `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    /// Colour on a terminal unless NO_COLOR is set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

impl From<ColorArg> for ColorMode {
    fn from(arg: ColorArg) -> Self {
        match arg {
            ColorArg::Auto => ColorMode::Auto,
            ColorArg::Always => ColorMode::Always,
            ColorArg::Never => ColorMode::Never,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// TCP and UDP echo servers and clients, the sticky-packet lesson, a load generator.
    #[command(subcommand)]
    Echo(EchoCommand),
    /// Upload and download files over TCP (4-byte length + JSON header framing).
    #[command(subcommand)]
    File(FileCommand),
    /// Run a short guided demo on loopback: echo servers, clients and the load generator.
    Demo(DemoArgs),
    /// Print a shell completion script (e.g. `socklab completions bash > socklab.bash`).
    Completions {
        /// The shell to generate for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `socklab echo ...`
#[derive(Debug, Subcommand)]
pub enum EchoCommand {
    /// Run an echo server: TCP serves many clients at once, UDP answers each datagram.
    Server(EchoServerArgs),
    /// Talk to an echo server: interactively, a fixed count of pings, or a burst.
    Client(EchoClientArgs),
    /// Closed-loop load generator: CONNS connections each keep one message in flight.
    Bench(EchoBenchArgs),
}

/// `--tcp` or `--udp`, exactly one.
#[derive(Debug, Clone, Copy, Args)]
#[group(required = true, multiple = false)]
pub struct TransportArgs {
    /// Use TCP (a byte stream over a connection).
    #[arg(long)]
    pub tcp: bool,
    /// Use UDP (independent datagrams, no connection).
    #[arg(long)]
    pub udp: bool,
}

impl TransportArgs {
    fn transport(self) -> Transport {
        if self.udp {
            Transport::Udp
        } else {
            Transport::Tcp
        }
    }
}

/// `socklab echo server`
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Address to listen on (0.0.0.0 or :: to accept other machines).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long, default_value_t = DEFAULT_ECHO_PORT, value_name = "N")]
    pub port: u16,
    /// Upper-case every reply (ASCII letters only), as the classic lab does.
    #[arg(long)]
    pub upper: bool,
    /// Print the size of every read (TCP) or datagram (UDP): the sticky-packet lesson.
    #[arg(long)]
    pub show_reads: bool,
    /// Wait this long before each read so that messages pile up in the socket buffer.
    #[arg(long, value_name = "MS", conflicts_with = "udp")]
    pub read_delay: Option<u64>,
    /// Messages carry a 4-byte big-endian length prefix; echo them frame by frame.
    #[arg(long, conflicts_with = "udp")]
    pub framed: bool,
}

impl From<&EchoServerArgs> for ServerOptions {
    fn from(args: &EchoServerArgs) -> Self {
        ServerOptions {
            transport: args.transport.transport(),
            upper: args.upper,
            show_reads: args.show_reads,
            read_delay: args.read_delay.map(Duration::from_millis),
            framed: args.framed,
        }
    }
}

impl EchoServerArgs {
    /// The socket address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

/// `socklab echo client`
#[derive(Debug, Args)]
pub struct EchoClientArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    #[arg(value_parser = parse_port)]
    pub port: u16,
    /// Send this text instead of reading lines from stdin; `{seq}` becomes the sequence
    /// number (default with --count or --burst: "ping {seq}" / "message {seq}").
    #[arg(short, long, value_name = "TEXT")]
    pub message: Option<String>,
    /// Send this many requests, one at a time, then print the summary.
    #[arg(short, long, value_name = "N", conflicts_with = "burst")]
    pub count: Option<u32>,
    /// Milliseconds from one request to the next in --count mode.
    #[arg(short, long, value_name = "MS", default_value_t = 1000)]
    pub interval: u64,
    /// Milliseconds to wait for each reply before printing "Request timed out".
    #[arg(short, long, value_name = "MS", default_value_t = 1000)]
    pub timeout: u64,
    /// Send N messages back to back, then read the echoes: the sticky-packet lesson.
    #[arg(long, value_name = "N")]
    pub burst: Option<u32>,
    /// Send each message with a 4-byte big-endian length prefix (server needs --framed).
    #[arg(long, conflicts_with = "udp")]
    pub framed: bool,
}

impl From<&EchoClientArgs> for ClientOptions {
    fn from(args: &EchoClientArgs) -> Self {
        ClientOptions {
            transport: args.transport.transport(),
            message: args.message.clone(),
            count: args.count,
            interval: Duration::from_millis(args.interval),
            timeout: Duration::from_millis(args.timeout),
            burst: args.burst,
            framed: args.framed,
        }
    }
}

/// `socklab echo bench`
#[derive(Debug, Args)]
pub struct EchoBenchArgs {
    #[command(flatten)]
    pub transport: TransportArgs,
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    #[arg(value_parser = parse_port)]
    pub port: u16,
    /// Number of concurrent connections (UDP: sockets), each with one message in flight.
    #[arg(
        short = 'c',
        long = "connections",
        value_name = "CONNS",
        default_value_t = 1
    )]
    pub connections: u32,
    /// Message size in bytes (e.g. 64, 1KiB).
    #[arg(short, long, value_name = "SIZE", default_value = "64", value_parser = parse_message_size)]
    pub size: usize,
    /// How long to measure (e.g. 10s, 500ms).
    #[arg(short, long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring (connections open, caches warm), not counted.
    #[arg(long, value_name = "DURATION", default_value = "0.5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// UDP: milliseconds before a missing reply counts as an error and is resent.
    #[arg(short, long, value_name = "MS", default_value_t = 1000)]
    pub timeout: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl From<&EchoBenchArgs> for BenchOptions {
    fn from(args: &EchoBenchArgs) -> Self {
        BenchOptions {
            transport: args.transport.transport(),
            connections: args.connections,
            size: args.size,
            duration: args.duration,
            warmup: args.warmup,
            timeout: Duration::from_millis(args.timeout),
        }
    }
}

/// `socklab file ...`
#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// Serve a directory: accept uploads into it, send its files on request.
    Serve(FileServeArgs),
    /// Upload a local file.
    Put(FilePutArgs),
    /// Download a file.
    Get(FileGetArgs),
    /// List the files the server offers.
    List(FileListArgs),
}

/// `socklab file serve`
#[derive(Debug, Args)]
pub struct FileServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free port and prints it).
    #[arg(long, default_value_t = DEFAULT_FILE_PORT, value_name = "N")]
    pub port: u16,
    /// The directory to serve (created if missing).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Refuse uploads larger than this (e.g. 10MB, 1GiB).
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_size: u64,
}

/// `socklab file put`
#[derive(Debug, Args)]
pub struct FilePutArgs {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    #[arg(value_parser = parse_port)]
    pub port: u16,
    /// The local file to upload.
    pub path: PathBuf,
    /// Store it under this name (default: the file's own name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Replace a file of the same name on the server.
    #[arg(long)]
    pub force: bool,
}

/// `socklab file get`
#[derive(Debug, Args)]
pub struct FileGetArgs {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    #[arg(value_parser = parse_port)]
    pub port: u16,
    /// The name of the file on the server.
    pub name: String,
    /// Where to write it (default: NAME in the current directory).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace an existing local file.
    #[arg(long)]
    pub force: bool,
}

/// `socklab file list`
#[derive(Debug, Args)]
pub struct FileListArgs {
    /// The server's host name or address.
    pub host: String,
    /// The server's port.
    #[arg(value_parser = parse_port)]
    pub port: u16,
    /// Print JSON (one object per file) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `socklab demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long each load-generator run lasts.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub bench_duration: Duration,
}

/// A port a client connects to: 1 to 65535 (0 means "any" only when binding).
fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "'{text}' is not a port (use a number from 1 to 65535)"
        )),
    }
}

/// A message size for the load generator: at least 1 byte, at most a UDP datagram.
fn parse_message_size(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    if size == 0 || size > socklab::net::MAX_UDP_PAYLOAD as u64 {
        return Err(format!(
            "'{text}' is not a message size (use 1 to {} bytes)",
            socklab::net::MAX_UDP_PAYLOAD
        ));
    }
    Ok(size as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn echo_server_defaults() {
        let cli = Cli::try_parse_from(["socklab", "echo", "server", "--tcp"]).unwrap();
        let Command::Echo(EchoCommand::Server(args)) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(args.addr(), "127.0.0.1:12000".parse().unwrap());
        let opts = ServerOptions::from(&args);
        assert_eq!(opts.transport, Transport::Tcp);
        assert!(!opts.upper && !opts.framed);
    }

    #[test]
    fn transport_is_required_and_exclusive() {
        assert!(Cli::try_parse_from(["socklab", "echo", "server"]).is_err());
        assert!(Cli::try_parse_from(["socklab", "echo", "server", "--tcp", "--udp"]).is_err());
    }

    #[test]
    fn framed_and_read_delay_need_tcp() {
        assert!(Cli::try_parse_from(["socklab", "echo", "server", "--udp", "--framed"]).is_err());
        assert!(
            Cli::try_parse_from(["socklab", "echo", "server", "--udp", "--read-delay", "5"])
                .is_err()
        );
    }

    #[test]
    fn client_ports_are_checked() {
        for bad in ["0", "65536", "http"] {
            let err = Cli::try_parse_from(["socklab", "echo", "client", "--udp", "h", bad])
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a port"), "{err}");
        }
    }

    #[test]
    fn bench_parses_units() {
        let cli = Cli::try_parse_from([
            "socklab",
            "echo",
            "bench",
            "--tcp",
            "127.0.0.1",
            "9",
            "-c",
            "50",
            "-s",
            "1KiB",
            "-d",
            "250ms",
        ])
        .unwrap();
        let Command::Echo(EchoCommand::Bench(args)) = cli.command else {
            panic!("wrong subcommand")
        };
        let opts = BenchOptions::from(&args);
        assert_eq!((opts.connections, opts.size), (50, 1024));
        assert_eq!(opts.duration, Duration::from_millis(250));
        assert!(
            Cli::try_parse_from(["socklab", "echo", "bench", "--udp", "h", "9", "-s", "0"])
                .is_err()
        );
    }

    #[test]
    fn verbosity_flags() {
        let cli = Cli::try_parse_from(["socklab", "-v", "demo"]).unwrap();
        assert_eq!(cli.verbosity(), Verbosity::Verbose);
        let cli = Cli::try_parse_from(["socklab", "demo", "-q"]).unwrap();
        assert_eq!(cli.verbosity(), Verbosity::Quiet);
        assert!(Cli::try_parse_from(["socklab", "-q", "-v", "demo"]).is_err());
    }
}
