//! The command line, declared with clap's derive API. This file and `main.rs` are the
//! only ones that know clap: each subcommand's `Args` struct is turned into the plain
//! option struct the library takes, so the library can be driven from tests without
//! parsing any arguments.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use socklab::capture::analyze::{AnalyzeOptions, View};
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
    /// Parses the process's arguments like [`Parser::try_parse`], and also records the
    /// command-line order of the proxy's settings (see [`ProxyArgs::settings`]).
    ///
    /// # Errors
    /// clap's error for a usage mistake (or `--help`/`--version`).
    pub fn try_parse_ordered() -> Result<Cli, clap::Error> {
        Cli::try_parse_ordered_from(std::env::args_os())
    }

    /// [`Cli::try_parse_ordered`] on the given arguments.
    ///
    /// # Errors
    /// clap's error for a usage mistake.
    pub fn try_parse_ordered_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        if let (Command::Proxy(proxy), Some(("proxy", sub))) =
            (&mut cli.command, matches.subcommand())
        {
            proxy.settings = proxy.ordered_settings(sub);
        }
        Ok(cli)
    }

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
    /// The discussion forum of lab 3: commands over UDP with retransmission, files over
    /// TCP.
    #[command(subcommand)]
    Forum(ForumCommand),
    /// An impairing proxy for UDP (loss, delay, duplication, reordering, corruption,
    /// rate), relaying TCP too.
    // Boxed: its many flags make it far larger than the other variants.
    Proxy(Box<ProxyArgs>),
    /// Capture packets on an interface (lab 4): one tcpdump-like line per packet, or a
    /// pcap file with -w. Needs root or CAP_NET_RAW.
    Capture(CaptureArgs),
    /// Analyze a capture file (pcap or pcapng): summary, flows, handshakes, TCP segments
    /// with Wireshark's analysis, UDP datagrams, forum traffic.
    Analyze(AnalyzeArgs),
    /// Write a synthetic capture for exercises and benchmarks: thousands of TCP
    /// connections (handshakes, data, loss and retransmissions, FINs) and UDP
    /// request/reply flows, seeded.
    Synth(SynthArgs),
    /// Run a short guided demo on loopback: the forum (also through a lossy proxy), echo
    /// servers and clients, the load generator and the proxy.
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

/// `socklab forum ...`
#[derive(Debug, Subcommand)]
pub enum ForumCommand {
    /// Run the forum server on UDP and TCP port PORT, keeping its data in DIR.
    Server(ForumServerArgs),
    /// Log in to a forum server and run commands (read from stdin, one per line).
    Client(ForumClientArgs),
    /// Load generator: N logged-in clients run MSG/RDT/LST against an in-process server
    /// (optionally through a lossy proxy), next to the UDP echo floor.
    Bench(ForumBenchArgs),
}

/// `socklab forum bench`
#[derive(Debug, Args)]
pub struct ForumBenchArgs {
    /// Concurrent logged-in clients.
    #[arg(short, long, default_value_t = 50, value_name = "N")]
    pub clients: u32,
    /// How long to measure.
    #[arg(short, long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Duration,
    /// How long to run before measuring.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Put `socklab proxy` in between, losing this share of datagrams each way (e.g. 10%).
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub loss: Option<f64>,
    /// Seed of the proxy and of the workload.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A percentage such as `10%` or `10`, from 0 to 100.
fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{text}' is not a percentage from 0% to 100%")),
    }
}

/// `socklab forum server`
#[derive(Debug, Args)]
pub struct ForumServerArgs {
    /// UDP and TCP port to listen on (0 picks a free one, printed on stderr).
    #[arg(value_parser = parse_port_or_zero)]
    pub port: u16,
    /// The data directory: credentials.txt, one file per thread, uploaded files.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Address to listen on (use 0.0.0.0 to accept clients from other machines).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: IpAddr,
    /// Log out a client that sent nothing (not even a heartbeat) for this long.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub session_timeout: Duration,
    /// Refuse uploads larger than this (e.g. 10MB, 1GiB).
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size)]
    pub max_upload: u64,
}

/// `socklab forum client`
#[derive(Debug, Args)]
pub struct ForumClientArgs {
    /// HOST (default 127.0.0.1) and PORT of the server, e.g. `12000` or `lab-pc 12000`.
    #[arg(value_name = "[HOST] PORT", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    /// First retransmission timeout, before any round trip was measured.
    #[arg(long, default_value = "500ms", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Give up on a command after this many timeouts in a row without progress.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    /// How often to tell the server we are still here while the user types.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat: Duration,
}

impl ForumClientArgs {
    /// The server's host and port.
    ///
    /// # Errors
    /// A one-line message when the port is not a number from 1 to 65535.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let (host, port) = match self.target.as_slice() {
            [port] => ("127.0.0.1".to_string(), port),
            [host, port] => (host.clone(), port),
            _ => return Err("expected [HOST] PORT".into()),
        };
        Ok((host, parse_port(port)?))
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

/// `socklab proxy`
#[derive(Debug, Args)]
#[command(after_help = PROXY_AFTER_HELP)]
pub struct ProxyArgs {
    /// Address to listen on, for UDP and TCP (port 0 picks a free port and prints it).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The server to forward to; TCP goes to the same host and port number.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: Option<String>,
    /// Seed of the impairment decisions (default: random, printed so the run can be
    /// repeated).
    #[arg(long, value_name = "N")]
    pub seed: Option<String>,
    /// Read settings from a YAML file first; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Lose each datagram independently with probability P (e.g. 20%).
    #[arg(long, value_name = "[DIR:]P", allow_hyphen_values = true)]
    pub loss: Vec<String>,
    /// Bursty loss: gemodel:p,r[,1-h[,1-k]] (Gilbert-Elliott) or
    /// state:p13[,p31[,p32[,p23[,p14]]]] (4-state Markov), as netem means them.
    #[arg(long, value_name = "[DIR:]MODEL", allow_hyphen_values = true)]
    pub loss_model: Vec<String>,
    /// Delay every datagram by D (e.g. 50ms).
    #[arg(long, value_name = "[DIR:]D", allow_hyphen_values = true)]
    pub delay: Vec<String>,
    /// Vary the delay by J around it.
    #[arg(long, value_name = "[DIR:]J", allow_hyphen_values = true)]
    pub jitter: Vec<String>,
    /// The jitter's shape: uniform, normal or pareto.
    #[arg(long, value_name = "[DIR:]NAME")]
    pub distribution: Vec<String>,
    /// Send a second copy with probability P.
    #[arg(long, value_name = "[DIR:]P", allow_hyphen_values = true)]
    pub duplicate: Vec<String>,
    /// Hold a datagram back (so later ones overtake it) with probability P.
    #[arg(long, value_name = "[DIR:]P", allow_hyphen_values = true)]
    pub reorder: Vec<String>,
    /// Only every N-th datagram may be held back (netem's gap; needs --reorder).
    #[arg(long, value_name = "[DIR:]N", allow_hyphen_values = true)]
    pub gap: Vec<String>,
    /// Release a held datagram after N later ones have passed (default 1).
    #[arg(long, value_name = "[DIR:]N", allow_hyphen_values = true)]
    pub hold: Vec<String>,
    /// ...or after this long, if fewer came (default 200ms).
    #[arg(long, value_name = "[DIR:]D", allow_hyphen_values = true)]
    pub hold_timeout: Vec<String>,
    /// Flip one random bit of the payload with probability P (the checksum stays
    /// valid, so the application sees the damage).
    #[arg(long, value_name = "[DIR:]P", allow_hyphen_values = true)]
    pub corrupt: Vec<String>,
    /// Serialise datagrams at this many bits per second (e.g. 1mbit, 64kbit).
    #[arg(long, value_name = "[DIR:]BITS/s", allow_hyphen_values = true)]
    pub rate: Vec<String>,
    /// At most N datagrams wait for the rate-limited link; more are dropped
    /// (default 1000).
    #[arg(long, value_name = "[DIR:]N", allow_hyphen_values = true)]
    pub queue: Vec<String>,
    /// Drop exactly the N-th datagram (counting from 1).
    #[arg(long, value_name = "[DIR:]N", allow_hyphen_values = true)]
    pub drop_nth: Vec<String>,
    /// Drop every N-th datagram, after OFFSET (5+2 drops 7, 12, 17, ...).
    #[arg(long, value_name = "[DIR:]N[+OFFSET]", allow_hyphen_values = true)]
    pub drop_every: Vec<String>,
    /// Drop datagrams whose payload matches this regular expression.
    #[arg(long, value_name = "[DIR:]REGEX", allow_hyphen_values = true)]
    pub drop_match: Vec<String>,

    /// Delay every chunk of relayed TCP data by D.
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub tcp_delay: Option<String>,
    /// Pace relayed TCP data to this many bits per second.
    #[arg(long, value_name = "BITS/s", allow_hyphen_values = true)]
    pub tcp_rate: Option<String>,
    /// Forget a UDP client after this long without traffic (default 60s).
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub idle_timeout: Option<String>,
    /// Relay for at most N UDP clients at once; a new one evicts the least recently
    /// used (default 1024).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_mappings: Option<String>,

    /// Write one JSON line per datagram to FILE (`-` for stdout).
    #[arg(long, value_name = "FILE|-")]
    pub log: Option<String>,
    /// Print the statistics table this often (only when stdout is a terminal).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub stats_interval: Option<Duration>,

    /// The settings given as flags, as (key, value) in command-line order: filled by
    /// [`Cli::try_parse_ordered`], handed to `ProxyConfig::apply` one by one.
    #[arg(skip)]
    pub settings: Vec<(String, String)>,
}

impl ProxyArgs {
    /// Every setting flag as (key, values), the key being the flag without dashes.
    fn setting_flags(&self) -> Vec<(&'static str, Vec<&String>)> {
        fn one(value: &Option<String>) -> Vec<&String> {
            value.iter().collect()
        }
        fn many(values: &[String]) -> Vec<&String> {
            values.iter().collect()
        }
        vec![
            ("listen", one(&self.listen)),
            ("upstream", one(&self.upstream)),
            ("seed", one(&self.seed)),
            ("loss", many(&self.loss)),
            ("loss-model", many(&self.loss_model)),
            ("delay", many(&self.delay)),
            ("jitter", many(&self.jitter)),
            ("distribution", many(&self.distribution)),
            ("duplicate", many(&self.duplicate)),
            ("reorder", many(&self.reorder)),
            ("gap", many(&self.gap)),
            ("hold", many(&self.hold)),
            ("hold-timeout", many(&self.hold_timeout)),
            ("corrupt", many(&self.corrupt)),
            ("rate", many(&self.rate)),
            ("queue", many(&self.queue)),
            ("drop-nth", many(&self.drop_nth)),
            ("drop-every", many(&self.drop_every)),
            ("drop-match", many(&self.drop_match)),
            ("tcp-delay", one(&self.tcp_delay)),
            ("tcp-rate", one(&self.tcp_rate)),
            ("idle-timeout", one(&self.idle_timeout)),
            ("max-mappings", one(&self.max_mappings)),
        ]
    }

    /// The setting flags in the order they were typed. clap's derive keeps each flag's
    /// values in order but not the order between flags; `indices_of` has it.
    fn ordered_settings(&self, matches: &ArgMatches) -> Vec<(String, String)> {
        let mut settings: Vec<(usize, String, String)> = Vec::new();
        for (key, values) in self.setting_flags() {
            let id = key.replace('-', "_");
            let indices = matches.indices_of(&id).into_iter().flatten();
            for (index, value) in indices.zip(values) {
                settings.push((index, key.to_string(), value.clone()));
            }
        }
        settings.sort_by_key(|(index, _, _)| *index);
        settings
            .into_iter()
            .map(|(_, key, value)| (key, value))
            .collect()
    }
}

/// `socklab capture`
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The interface to capture on (lo, eth0, any).
    #[arg(short = 'i', long, value_name = "IFACE")]
    pub interface: String,

    /// A BPF filter in tcpdump's language, e.g. "udp port 12000".
    #[arg(short = 'f', long, value_name = "BPF")]
    pub filter: Option<String>,

    /// Write the packets to this pcap file instead of printing a line for each.
    #[arg(short = 'w', long, value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Stop after COUNT packets.
    #[arg(short = 'c', long, value_name = "COUNT")]
    pub count: Option<u64>,

    /// Stop after this long (10s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Bytes kept of each packet (the snap length).
    #[arg(long, value_name = "N", default_value_t = socklab::capture::live::DEFAULT_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub snaplen: u32,
}

impl From<&CaptureArgs> for socklab::capture::live::LiveOptions {
    fn from(args: &CaptureArgs) -> Self {
        socklab::capture::live::LiveOptions {
            interface: args.interface.clone(),
            filter: args.filter.clone(),
            write: args.write.clone(),
            count: args.count,
            duration: args.duration,
            snaplen: args.snaplen,
        }
    }
}

/// `socklab synth`
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// The pcap file to write (replaced if it exists).
    pub file: PathBuf,
    /// Packets in the file, exactly.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub packets: u64,
    /// Seed of every random choice: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1, value_name = "S")]
    pub seed: u64,
    /// Share of TCP data segments lost before the capture point (each is then
    /// retransmitted), e.g. 1% (at most 50%).
    #[arg(long, default_value = "1%", value_name = "PERCENT", value_parser = parse_loss)]
    pub loss: f64,
    /// Share of the packets that are UDP.
    #[arg(long, default_value = "10%", value_name = "PERCENT", value_parser = parse_percent)]
    pub udp_share: f64,
}

impl From<&SynthArgs> for socklab::capture::synth::SynthOptions {
    fn from(args: &SynthArgs) -> Self {
        socklab::capture::synth::SynthOptions {
            packets: args.packets,
            seed: args.seed,
            loss: args.loss / 100.0,
            udp_share: args.udp_share / 100.0,
            ..Default::default()
        }
    }
}

/// A loss percentage for `synth`: at most [`socklab::capture::synth::MAX_LOSS`].
fn parse_loss(text: &str) -> Result<f64, String> {
    let percent = parse_percent(text)?;
    let max = socklab::capture::synth::MAX_LOSS * 100.0;
    if percent > max {
        return Err(format!("'{text}' is too much loss (use at most {max}%)"));
    }
    Ok(percent)
}

/// `socklab demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long each load-generator run lasts.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = parse_duration)]
    pub bench_duration: Duration,
}

/// The views of `socklab analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViewArg {
    /// Packets and bytes per protocol, duration, flows, notable events.
    Summary,
    /// One row per TCP connection and UDP conversation (Zeek's conn_state, history).
    Flows,
    /// Per TCP connection: the three-way handshake and the teardown.
    Handshakes,
    /// One row per TCP segment with Wireshark's analysis and the RTT estimator.
    Tcp,
    /// One row per UDP datagram, request/reply pairs.
    Udp,
    /// The byte stream of one TCP connection, as Wireshark's Follow Stream.
    Follow,
    /// A sequence diagram of one TCP connection.
    Ladder,
    /// socklab forum requests, replies and transfers.
    Forum,
}

/// `socklab analyze`
#[derive(Debug, Args)]
#[command(after_help = ANALYZE_AFTER_HELP)]
pub struct AnalyzeArgs {
    /// The capture file (pcap or pcapng, e.g. written by `socklab capture -w`).
    pub file: PathBuf,
    /// What to show.
    #[arg(value_enum, default_value_t = ViewArg::Summary)]
    pub view: ViewArg,
    /// The TCP stream number (see the flows view): optional for tcp, required for
    /// follow and ladder.
    #[arg(required_if_eq_any([("view", "follow"), ("view", "ladder")]))]
    pub stream: Option<u64>,
    /// Read only packets matching this BPF filter (e.g. "tcp port 12000").
    #[arg(short = 'f', long = "filter", value_name = "BPF")]
    pub filter: Option<String>,
    /// One JSON object per row (JSON Lines) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Add plain-language notes for students under the tables.
    #[arg(long, conflicts_with = "json")]
    pub explain: bool,
    /// follow: a hex dump instead of text.
    #[arg(long)]
    pub hex: bool,
}

impl AnalyzeArgs {
    /// The library's options.
    pub fn options(&self) -> AnalyzeOptions {
        let view = match self.view {
            ViewArg::Summary => View::Summary,
            ViewArg::Flows => View::Flows,
            ViewArg::Handshakes => View::Handshakes,
            ViewArg::Tcp => View::Tcp {
                stream: self.stream,
            },
            ViewArg::Udp => View::Udp,
            // clap requires STREAM for these two (required_if_eq_any above).
            ViewArg::Follow => View::Follow {
                stream: self.stream.unwrap_or_default(),
                hex: self.hex,
            },
            ViewArg::Ladder => View::Ladder {
                stream: self.stream.unwrap_or_default(),
            },
            ViewArg::Forum => View::Forum,
        };
        AnalyzeOptions {
            path: self.file.clone(),
            view,
            filter: self.filter.clone(),
            json: self.json,
            explain: self.explain,
        }
    }
}

/// The end of `socklab analyze --help`.
const ANALYZE_AFTER_HELP: &str = "\
Examples:
  socklab analyze echo.pcap                    summary: protocols, flows, events
  socklab analyze echo.pcap flows              one row per connection/conversation
  socklab analyze echo.pcap handshakes --explain
  socklab analyze echo.pcap tcp 0              segments of tcp.stream 0
  socklab analyze big.pcap flows --json -f \"tcp port 12000\"";

/// The end of `socklab proxy --help`: directions, order, examples.
const PROXY_AFTER_HELP: &str = "\
Each UDP impairment applies to both directions, or to one with a prefix: c2s: (client to
server) or s2c: (server to client), e.g. --loss s2c:20%. Flags are applied in the order
typed, after the --config file: a later one overrides an earlier one and the file.
Per datagram the order is fixed: drop (rules, then loss), duplicate, corrupt, reorder,
delay, rate queue.

Examples:
  socklab proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:12000 --loss 20% --seed 7
  socklab proxy --listen 127.0.0.1:9000 --upstream 127.0.0.1:12000 \\
      --loss-model s2c:gemodel:5%,50% --delay 20ms --jitter 5ms
  socklab proxy --config proxy.yaml --drop-nth c2s:3 --log -";

/// A port a client connects to: 1 to 65535 (0 means "any" only when binding).
/// A port number where 0 ("any free port") is allowed.
fn parse_port_or_zero(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("'{text}' is not a port (use a number from 0 to 65535)"))
}

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
    fn capture_arguments() {
        let cli = Cli::try_parse_from([
            "socklab",
            "capture",
            "-i",
            "lo",
            "-f",
            "udp port 9",
            "-w",
            "x.pcap",
            "-c",
            "3",
            "--duration",
            "2s",
            "--snaplen",
            "96",
        ])
        .unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let options = socklab::capture::live::LiveOptions::from(&args);
        assert_eq!(options.interface, "lo");
        assert_eq!(options.filter.as_deref(), Some("udp port 9"));
        assert_eq!(options.write, Some(PathBuf::from("x.pcap")));
        assert_eq!(options.count, Some(3));
        assert_eq!(options.duration, Some(Duration::from_secs(2)));
        assert_eq!(options.snaplen, 96);
        let cli = Cli::try_parse_from(["socklab", "capture", "-i", "eth0"]).unwrap();
        let Command::Capture(args) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(args.snaplen, 262_144);
        assert!(Cli::try_parse_from(["socklab", "capture"]).is_err());
        assert!(Cli::try_parse_from(["socklab", "capture", "-i", "lo", "--snaplen", "0"]).is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn analyze_views_and_streams() {
        let cli = Cli::try_parse_from(["socklab", "analyze", "x.pcap"]).unwrap();
        let Command::Analyze(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let opts = args.options();
        assert_eq!(
            (opts.view, opts.json, opts.filter),
            (View::Summary, false, None)
        );

        let cli = Cli::try_parse_from([
            "socklab",
            "analyze",
            "x.pcap",
            "tcp",
            "3",
            "--json",
            "-f",
            "tcp port 80",
        ])
        .unwrap();
        let Command::Analyze(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let opts = args.options();
        assert_eq!(opts.view, View::Tcp { stream: Some(3) });
        assert_eq!(opts.filter.as_deref(), Some("tcp port 80"));
        assert!(opts.json);

        let cli =
            Cli::try_parse_from(["socklab", "analyze", "x.pcap", "follow", "2", "--hex"]).unwrap();
        let Command::Analyze(args) = cli.command else {
            panic!("wrong subcommand")
        };
        assert_eq!(
            args.options().view,
            View::Follow {
                stream: 2,
                hex: true
            }
        );

        for view in ["follow", "ladder"] {
            let err = Cli::try_parse_from(["socklab", "analyze", "x.pcap", view]).unwrap_err();
            assert!(err.to_string().contains("STREAM"), "{err}");
        }
        assert!(Cli::try_parse_from(["socklab", "analyze", "x.pcap", "nosuch"]).is_err());
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
    fn proxy_settings_keep_command_line_order() {
        let cli = Cli::try_parse_ordered_from([
            "socklab",
            "proxy",
            "--loss",
            "20%",
            "--listen",
            "127.0.0.1:0",
            "--delay",
            "-5ms",
            "--loss",
            "s2c:0%",
            "--drop-nth",
            "c2s:3",
            "--log",
            "-",
        ])
        .unwrap();
        let Command::Proxy(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let typed: Vec<(&str, &str)> = args
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            typed,
            vec![
                ("loss", "20%"),
                ("listen", "127.0.0.1:0"),
                // A negative delay reaches the validator (and its clear message)
                // instead of being taken for a flag.
                ("delay", "-5ms"),
                ("loss", "s2c:0%"),
                ("drop-nth", "c2s:3"),
            ]
        );
        assert_eq!(args.log.as_deref(), Some("-"));
    }

    #[test]
    fn proxy_flag_ids_match_their_keys() {
        use socklab::proxy::config::{DIRECTION_KEYS, PROXY_KEYS};
        // Every key must name a real argument, or its values would be silently lost.
        let command = Cli::command();
        let proxy = command.find_subcommand("proxy").unwrap();
        let cli = Cli::try_parse_from(["socklab", "proxy"]).unwrap();
        let Command::Proxy(args) = cli.command else {
            panic!("wrong subcommand")
        };
        for (key, _) in args.setting_flags() {
            let id = key.replace('-', "_");
            let arg = proxy
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .unwrap_or_else(|| panic!("no argument for {key}"));
            assert_eq!(arg.get_long(), Some(key));
            // ...and every key must be one the configuration knows.
            assert!(
                DIRECTION_KEYS.contains(&key) || PROXY_KEYS.contains(&key),
                "{key} is not a configuration key"
            );
        }
        let flags = args.setting_flags().len();
        assert_eq!(
            flags,
            DIRECTION_KEYS.len() + PROXY_KEYS.len(),
            "a key has no flag"
        );
    }

    #[test]
    fn synth_defaults_and_percentages() {
        let cli = Cli::try_parse_from(["socklab", "synth", "x.pcap", "--loss", "2%"]).unwrap();
        let Command::Synth(args) = cli.command else {
            panic!("wrong subcommand")
        };
        let options = socklab::capture::synth::SynthOptions::from(&args);
        assert_eq!((options.packets, options.seed), (100_000, 1));
        assert!((options.loss - 0.02).abs() < 1e-12);
        assert!((options.udp_share - 0.1).abs() < 1e-12);
        let err = Cli::try_parse_from(["socklab", "synth", "x.pcap", "--loss", "60%"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("too much loss"), "{err}");
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
