//! `socklab echo client`: talks to an echo server over TCP or UDP in one of three ways.
//!
//! - **Interactive** (no `--message`, `--count` or `--burst`): each line of stdin is sent
//!   and the reply printed with its round-trip time, as in the classic socket lab.
//! - **Ping** (`--count N` and/or `--message TEXT`): N requests, one at a time, each
//!   with a timeout; a lost UDP reply prints `Request timed out`. Ends with ping's
//!   summary (sent, received, loss, rtt min/avg/max/mdev).
//! - **Burst** (`--burst N`): N messages back to back, then the echoes are read and
//!   every read's size printed: the sticky-packet lesson. Over TCP the reads do not
//!   line up with the writes (unless `--framed`); over UDP every datagram arrives whole.
//!
//! `{seq}` in the message is replaced by the request's sequence number, so each
//! request is distinguishable and a late UDP reply cannot be taken for a newer one.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::time::Instant;

use super::stats::RttSummary;
use super::tcp::TcpConversation;
use super::udp::{UdpConversation, UdpReply};
use super::{preview, EchoError, Transport};
use crate::output::{millis, Reporter};

/// The message of a `--count` run when none is given.
pub const DEFAULT_PING_MESSAGE: &str = "ping {seq}";
/// The message of a `--burst` when none is given.
pub const DEFAULT_BURST_MESSAGE: &str = "message {seq}";

/// Options of `socklab echo client`.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP or UDP.
    pub transport: Transport,
    /// The message to send (`{seq}` becomes the sequence number); `None` with no
    /// `count` and no `burst` means "read lines from the input".
    pub message: Option<String>,
    /// How many requests to send in ping mode.
    pub count: Option<u32>,
    /// Time from one request to the next in ping mode.
    pub interval: Duration,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Send this many messages back to back (the sticky-packet lesson).
    pub burst: Option<u32>,
    /// Length-prefixed frames (TCP only).
    pub framed: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: Transport::Tcp,
            message: None,
            count: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            burst: None,
            framed: false,
        }
    }
}

/// What a client run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSummary {
    /// The server's address.
    pub peer: SocketAddr,
    /// Messages sent.
    pub sent: u32,
    /// Messages whose echo came back.
    pub received: u32,
    /// Round-trip time of every answered request (ping and interactive modes).
    pub rtts: Vec<Duration>,
    /// For a burst: the size of every read (TCP), frame or datagram that came back.
    pub reads: Vec<usize>,
}

impl ClientSummary {
    /// Messages sent whose echo never came.
    pub fn lost(&self) -> u32 {
        self.sent.saturating_sub(self.received)
    }

    /// The loss in percent (0 when nothing was sent).
    pub fn loss_percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            f64::from(self.lost()) * 100.0 / f64::from(self.sent)
        }
    }
}

/// Runs the client against `host:port`, reading lines from `input` in interactive
/// mode, and reports every reply and the summary to `reporter`.
///
/// # Errors
/// [`EchoError`] when the server cannot be reached or the conversation breaks; lost
/// UDP replies are not errors, they show in the returned summary.
pub async fn run_client<R: AsyncBufRead + Unpin>(
    host: &str,
    port: u16,
    options: &ClientOptions,
    input: R,
    reporter: Reporter,
) -> Result<ClientSummary, EchoError> {
    let mut conversation = Conversation::connect(host, port, options).await?;
    let started = Instant::now();
    if let Some(n) = options.burst {
        let template = options.message.as_deref().unwrap_or(DEFAULT_BURST_MESSAGE);
        return run_burst(&mut conversation, n, template, options, &reporter).await;
    }
    let mut summary = ClientSummary {
        peer: conversation.peer(),
        sent: 0,
        received: 0,
        rtts: Vec::new(),
        reads: Vec::new(),
    };
    if options.message.is_some() || options.count.is_some() {
        let template = options.message.as_deref().unwrap_or(DEFAULT_PING_MESSAGE);
        let count = options.count.unwrap_or(1);
        for seq in 1..=count {
            let sent_at = Instant::now();
            let message = expand(template, seq);
            if !exchange(
                &mut conversation,
                &message,
                seq,
                options,
                &reporter,
                &mut summary,
            )
            .await?
            {
                break;
            }
            if seq < count {
                tokio::time::sleep_until(sent_at + options.interval).await;
            }
        }
    } else {
        let mut lines = input.lines();
        let mut seq = 0;
        while let Some(line) = lines.next_line().await.map_err(EchoError::Stdin)? {
            seq += 1;
            if !exchange(
                &mut conversation,
                &line,
                seq,
                options,
                &reporter,
                &mut summary,
            )
            .await?
            {
                break;
            }
        }
    }
    reporter.result(render_summary(
        &summary,
        options.transport,
        started.elapsed(),
    ));
    Ok(summary)
}

/// Replaces `{seq}` in `template` by `seq`.
pub fn expand(template: &str, seq: u32) -> String {
    template.replace("{seq}", &seq.to_string())
}

/// ping's closing lines:
/// ```text
/// --- 127.0.0.1:12000 udp echo statistics ---
/// 10 requests sent, 9 replies received, 10% loss, time 9012 ms
/// rtt min/avg/max/mdev = 0.081/0.102/0.140/0.020 ms
/// ```
pub fn render_summary(summary: &ClientSummary, transport: Transport, elapsed: Duration) -> String {
    let mut text = format!(
        "--- {} {} echo statistics ---\n{} requests sent, {} replies received, {}% loss, time {} ms",
        summary.peer,
        transport.name(),
        summary.sent,
        summary.received,
        (summary.loss_percent() * 10.0).round() / 10.0,
        elapsed.as_millis()
    );
    if let Some(rtt) = RttSummary::of(&summary.rtts) {
        text.push_str(&format!(
            "\nrtt min/avg/max/mdev = {}/{}/{}/{} ms",
            millis(rtt.min),
            millis(rtt.avg),
            millis(rtt.max),
            millis(rtt.mdev)
        ));
    }
    text
}

/// Sends one request and waits for its echo; returns whether the conversation can go
/// on (a TCP request that timed out leaves the byte stream out of step, so it ends).
async fn exchange(
    conversation: &mut Conversation,
    text: &str,
    seq: u32,
    options: &ClientOptions,
    reporter: &Reporter,
    summary: &mut ClientSummary,
) -> Result<bool, EchoError> {
    let message = conversation.wire_message(text);
    let started = Instant::now();
    summary.sent += 1;
    let outcome = conversation
        .request(&message, started + options.timeout)
        .await?;
    match outcome {
        Some(reply) => {
            let rtt = started.elapsed();
            summary.received += 1;
            summary.rtts.push(rtt);
            let shown = reply.strip_suffix(b"\n").unwrap_or(&reply);
            reporter.result(format!(
                "reply from {}: seq={seq} bytes={} time={} ms {}",
                conversation.peer(),
                reply.len(),
                millis(rtt),
                preview(shown)
            ));
            Ok(true)
        }
        None => {
            reporter.result(format!("Request timed out (seq={seq})"));
            if conversation.saw_unreachable() {
                reporter.detail(format!(
                    "ICMP port unreachable from {}: nothing is listening on that port",
                    conversation.peer()
                ));
            }
            Ok(matches!(conversation, Conversation::Udp(..)))
        }
    }
}

/// The sticky-packet lesson: `n` messages back to back, then every read of the echo.
async fn run_burst(
    conversation: &mut Conversation,
    n: u32,
    template: &str,
    options: &ClientOptions,
    reporter: &Reporter,
) -> Result<ClientSummary, EchoError> {
    let messages: Vec<Vec<u8>> = (1..=n)
        .map(|seq| expand(template, seq).into_bytes())
        .collect();
    let total: usize = messages.iter().map(Vec::len).sum();
    for message in &messages {
        conversation.send(message).await?;
    }
    let unit = match (&*conversation, options.framed) {
        (Conversation::Udp(..), _) => "datagram",
        (Conversation::Tcp(..), true) => "frame",
        (Conversation::Tcp(..), false) => "read",
    };
    reporter.info(format!(
        "sent {n} messages ({total} bytes) in {n} {}",
        if unit == "datagram" {
            "datagrams"
        } else {
            "writes"
        }
    ));

    let mut reads = Vec::new();
    let mut bytes = 0usize;
    // Read until every byte (raw TCP) or every message (frames, datagrams) is back, or
    // nothing more arrives within the timeout.
    let done = |reads: &Vec<usize>, bytes: usize| {
        if unit == "read" {
            bytes >= total
        } else {
            reads.len() >= n as usize
        }
    };
    while !done(&reads, bytes) {
        let Some(data) = conversation
            .receive_some(Instant::now() + options.timeout)
            .await?
        else {
            break;
        };
        reads.push(data.len());
        bytes += data.len();
        reporter.result(format!(
            "{unit} {}: {} bytes {}",
            reads.len(),
            data.len(),
            preview(&data)
        ));
    }

    let received = match unit {
        "read" => messages_covered(&messages, bytes),
        _ => reads.len() as u32,
    };
    reporter.result(format!(
        "received {bytes} of {total} bytes in {} {unit}s for {n} messages",
        reads.len()
    ));
    match unit {
        "read" if reads.len() < n as usize => reporter.info(
            "TCP is a byte stream: the boundaries between writes were not kept (try --framed)",
        ),
        "frame" => reporter.info("each length-prefixed frame came back as one message"),
        "datagram" => reporter.info("UDP keeps boundaries: each datagram came back whole"),
        _ => {}
    }
    Ok(ClientSummary {
        peer: conversation.peer(),
        sent: n,
        received,
        rtts: Vec::new(),
        reads,
    })
}

/// How many whole messages the first `bytes` bytes of their concatenation cover.
fn messages_covered(messages: &[Vec<u8>], bytes: usize) -> u32 {
    let mut end = 0;
    let mut covered = 0;
    for message in messages {
        end += message.len();
        if end > bytes {
            break;
        }
        covered += 1;
    }
    covered
}

/// A TCP or a UDP conversation behind one interface.
enum Conversation {
    Tcp(TcpConversation, bool),
    Udp(UdpConversation, bool),
}

impl Conversation {
    async fn connect(host: &str, port: u16, options: &ClientOptions) -> Result<Self, EchoError> {
        Ok(match options.transport {
            Transport::Tcp => Conversation::Tcp(
                TcpConversation::connect(host, port, options.framed).await?,
                options.framed,
            ),
            Transport::Udp => Conversation::Udp(UdpConversation::connect(host, port).await?, false),
        })
    }

    fn peer(&self) -> SocketAddr {
        match self {
            Conversation::Tcp(tcp, _) => tcp.peer(),
            Conversation::Udp(udp, _) => udp.peer(),
        }
    }

    /// The bytes a line of text becomes: raw TCP adds the newline that line-based
    /// peers (nc, socat, a Python `readline`) expect; frames and datagrams have their
    /// own boundaries.
    fn wire_message(&self, text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        if let Conversation::Tcp(_, false) = self {
            bytes.push(b'\n');
        }
        bytes
    }

    fn saw_unreachable(&self) -> bool {
        matches!(self, Conversation::Udp(_, true))
    }

    async fn send(&mut self, message: &[u8]) -> Result<(), EchoError> {
        match self {
            Conversation::Tcp(tcp, _) => tcp.send(message).await,
            Conversation::Udp(udp, _) => udp.send(message).await,
        }
    }

    /// Sends `message` and waits until `deadline` for its echo; `None` on timeout.
    async fn request(
        &mut self,
        message: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, EchoError> {
        self.send(message).await?;
        match self {
            Conversation::Tcp(tcp, _) => {
                match tokio::time::timeout_at(deadline, tcp.receive_echo(message.len())).await {
                    Ok(reply) => reply.map(Some),
                    Err(_elapsed) => Ok(None),
                }
            }
            Conversation::Udp(udp, unreachable) => match udp.receive_echo(message, deadline).await?
            {
                UdpReply::Echo(reply) => Ok(Some(reply)),
                UdpReply::TimedOut { unreachable: seen } => {
                    *unreachable |= seen;
                    Ok(None)
                }
            },
        }
    }

    /// One read (raw TCP), frame or datagram, or `None` when nothing came in time or
    /// the server closed the connection.
    async fn receive_some(&mut self, deadline: Instant) -> Result<Option<Vec<u8>>, EchoError> {
        match self {
            Conversation::Tcp(tcp, _) => {
                match tokio::time::timeout_at(deadline, tcp.receive_some()).await {
                    Ok(result) => result,
                    Err(_elapsed) => Ok(None),
                }
            }
            Conversation::Udp(udp, _) => udp.receive_any(deadline).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_sequence_numbers() {
        assert_eq!(expand("ping {seq}", 7), "ping 7");
        assert_eq!(expand("no number", 7), "no number");
    }

    #[test]
    fn covered_messages_count_whole_ones_only() {
        let messages = vec![b"ab".to_vec(), b"cde".to_vec(), b"f".to_vec()];
        assert_eq!(messages_covered(&messages, 0), 0);
        assert_eq!(messages_covered(&messages, 4), 1);
        assert_eq!(messages_covered(&messages, 5), 2);
        assert_eq!(messages_covered(&messages, 6), 3);
    }

    #[test]
    fn summary_reads_like_ping() {
        let summary = ClientSummary {
            peer: "127.0.0.1:12000".parse().unwrap(),
            sent: 3,
            received: 2,
            rtts: vec![Duration::from_micros(100), Duration::from_micros(300)],
            reads: Vec::new(),
        };
        let text = render_summary(&summary, Transport::Udp, Duration::from_millis(2001));
        assert_eq!(
            text,
            "--- 127.0.0.1:12000 udp echo statistics ---\n\
             3 requests sent, 2 replies received, 33.3% loss, time 2001 ms\n\
             rtt min/avg/max/mdev = 0.100/0.200/0.300/0.100 ms"
        );
        assert_eq!(summary.lost(), 1);
    }
}
