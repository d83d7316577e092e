//! Lab 4: synthetic captures for exercises and benchmarks: a seeded generator of a
//! realistic capture, written as a pcap file, whose every TCP and UDP detail is known.
//!
//! The picture: a capture point at the edge of a small server farm, watching thousands
//! of clients talk to it at once.
//!
//! ```text
//!   10.1.0.0/16 clients ──(a: 1-40 ms)── [capture] ──(b: 50-500 µs)── 192.0.2.10 :12000 echo
//!   (2,000 of them,                                                    192.0.2.11 :12080 web
//!    ephemeral ports)                                                  192.0.2.12 :12001 files
//!                                                                      192.0.2.53 :12053 UDP
//! ```
//!
//! - TCP connections (see `synth/tcp.rs`) with the handshake and its options, requests and
//!   responses of varied sizes cut into MSS-sized segments, cumulative and delayed
//!   ACKs, FIN teardowns and a few RSTs; data segments dropped before the capture point
//!   with probability `loss`, recovered by fast retransmission or after a timeout.
//! - UDP request/reply flows with DNS-like sizes, a few requests never answered.
//!
//! Flows start as a Poisson process and overlap; each is simulated whole when it starts
//! (it is small), and the packets of all open flows are merged by time as they are
//! written, so memory holds only the open flows. The same seed gives the same bytes.

mod tcp;
mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

pub use self::tcp::TcpCounts;
use self::tcp::{Close, ConnectionPlan, Exchange, Segment};
use self::wire::{build_tcp_frame, build_udp_frame, IpFields, PcapWriter, TcpFields};
use super::CaptureError;

/// Capture time of the first packet: 2023-11-14 22:13:20 UTC, fixed so that the same
/// seed gives the same file whenever it is made.
const EPOCH_US: u64 = 1_700_000_000_000_000;
/// The largest `loss` accepted: beyond it connections spend most of their time in
/// backed-off timeouts.
pub const MAX_LOSS: f64 = 0.5;
/// Size of the write buffer in front of the file.
const WRITE_BUFFER: usize = 1 << 20;

/// MAC address of the router the clients' packets come through.
const ROUTER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
/// Base MAC address of the servers (the last byte is the address's last byte).
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x01, 0x00];
/// TTL the servers send with (Linux's default); the clients' packets arrive with less.
const SERVER_TTL: u8 = 64;
/// First client address: 10.1.0.1, then upwards.
const FIRST_CLIENT: u32 = u32::from_be_bytes([10, 1, 0, 1]);
/// Linux's ephemeral port range (net.ipv4.ip_local_port_range).
const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 32_768..=60_999;

/// Payload of the clients' streams and requests: a pattern, repeated.
const CLIENT_PATTERN: &[u8] =
    b"socklab synthetic request: the quick brown fox jumps over the lazy dog 0123456789\n";
/// Payload of the servers' streams and replies.
const SERVER_PATTERN: &[u8] =
    b"socklab synthetic response: pack my box with five dozen liquor jugs 9876543210\n";

/// A TCP service the clients use, and the shape of its traffic.
#[derive(Debug, Clone, Copy)]
struct Service {
    address: Ipv4Addr,
    port: u16,
    /// Share of the connections that go to this service (the shares add up to 1).
    share: f64,
    /// Request/response exchanges per connection (inclusive range).
    exchanges: (u32, u32),
    /// Request sizes (inclusive), bytes.
    request: (u32, u32),
    /// Response sizes (inclusive, drawn log-uniformly); `None`: echo the request.
    response: Option<(u32, u32)>,
}

/// The TCP services. Requests stay within three segments, so a client never has more
/// than two segments after a hole and recovers by timeout, as a real client sending
/// short requests does.
const SERVICES: [Service; 3] = [
    Service {
        address: Ipv4Addr::new(192, 0, 2, 10),
        port: 12000,
        share: 0.3,
        exchanges: (1, 6),
        request: (16, 1400),
        response: None,
    },
    Service {
        address: Ipv4Addr::new(192, 0, 2, 11),
        port: 12080,
        share: 0.6,
        exchanges: (1, 4),
        request: (80, 3 * tcp::SEGMENT_DATA),
        response: Some((300, 120_000)),
    },
    Service {
        address: Ipv4Addr::new(192, 0, 2, 12),
        port: 12001,
        share: 0.1,
        exchanges: (1, 1),
        request: (100, 400),
        response: Some((40_000, 120_000)),
    },
];

/// The UDP request/reply service.
const UDP_SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// Its port.
const UDP_PORT: u16 = 12053;
/// Request payload sizes, DNS-query-like (inclusive).
const UDP_REQUEST: (u32, u32) = (28, 80);
/// Reply payload sizes, DNS-answer-like (inclusive).
const UDP_REPLY: (u32, u32) = (60, 480);
/// Share of UDP requests that get no reply.
const UDP_UNANSWERED: f64 = 0.05;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Packets in the file, exactly.
    pub packets: u64,
    /// Seed of every random choice: the same seed gives the same bytes.
    pub seed: u64,
    /// Fraction of TCP data segments dropped on the wire before the capture point
    /// (0 to [`MAX_LOSS`]; larger values are treated as `MAX_LOSS`), each causing a
    /// retransmission.
    pub loss: f64,
    /// Fraction of the packets that are UDP (0 to 1).
    pub udp_share: f64,
    /// Client addresses (10.1.0.1 upwards, at most 65,000).
    pub clients: u32,
    /// New flows (TCP connections and UDP flows) per second of capture time.
    pub flows_per_second: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            packets: 100_000,
            seed: 1,
            loss: 0.01,
            udp_share: 0.1,
            clients: 2_000,
            flows_per_second: 2_000.0,
        }
    }
}

/// What was generated, to check an analyzer against. Counts follow what the capture
/// shows, with tshark's rules (see `synth/tcp.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SynthSummary {
    /// Packets written.
    pub packets: u64,
    /// Bytes of the frames written (without pcap headers).
    pub frame_bytes: u64,
    /// From the first packet to the last, microseconds.
    pub duration_us: u64,
    /// TCP connections (each a distinct address/port pair), refused ones included.
    pub tcp_connections: u64,
    /// Connections answered with RST at the SYN.
    pub refused_connections: u64,
    /// TCP packets.
    pub tcp_packets: u64,
    /// Loss and its recovery as tshark counts it: dropped segments (absent from the
    /// file), retransmissions (fast and spurious ones among them, and resent segments
    /// that look new because the capture never saw the hole), gaps ("previous segment
    /// not captured"), duplicate ACKs, window updates, resets. In JSON these fields sit
    /// beside the others.
    #[serde(flatten)]
    pub tcp: TcpCounts,
    /// UDP flows (request/reply exchanges between one client port and the server).
    pub udp_flows: u64,
    /// UDP packets.
    pub udp_packets: u64,
    /// UDP requests that got no reply.
    pub udp_unanswered: u64,
}

/// Writes a synthetic capture of exactly `options.packets` packets to `path`.
///
/// # Errors
/// [`CaptureError::Write`] when the file cannot be created or written.
pub fn write_synthetic(path: &Path, options: &SynthOptions) -> Result<SynthSummary, CaptureError> {
    let write_error = |error: std::io::Error| CaptureError::Write {
        path: path.to_path_buf(),
        message: crate::net::describe(&error),
    };
    let file = File::create(path).map_err(write_error)?;
    let out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut writer = PcapWriter::new(out).map_err(write_error)?;
    let summary = generate(options, |time_us, frame| writer.write_frame(time_us, frame))
        .map_err(write_error)?;
    writer.finish().map_err(write_error)?;
    Ok(summary)
}

/// A one-paragraph account of a generated file, for the command line.
pub fn render_summary(path: &Path, summary: &SynthSummary) -> String {
    format!(
        "wrote {}: {} packets, {:.1} MB of frames, {:.1} s of traffic\n\
         TCP: {} connections ({} refused), {} packets; {} data segments dropped before the \
         capture point; {} retransmissions visible ({} fast, {} spurious), {} unseen; {} gaps \
         (previous segment not captured), {} duplicate ACKs ({} window updates), {} resets\n\
         UDP: {} flows, {} packets, {} requests unanswered",
        path.display(),
        summary.packets,
        summary.frame_bytes as f64 / 1e6,
        summary.duration_us as f64 / 1e6,
        summary.tcp_connections,
        summary.refused_connections,
        summary.tcp_packets,
        summary.tcp.drops,
        summary.tcp.retransmissions,
        summary.tcp.fast_retransmissions,
        summary.tcp.spurious_retransmissions,
        summary.tcp.unseen_retransmissions,
        summary.tcp.gaps,
        summary.tcp.duplicate_acks,
        summary.tcp.window_updates,
        summary.tcp.resets,
        summary.udp_flows,
        summary.udp_packets,
        summary.udp_unanswered,
    )
}

/// One UDP datagram of a flow.
#[derive(Debug, Clone, Copy)]
struct Datagram {
    time_us: u64,
    from_client: bool,
    len: u32,
    /// Offset into the payload pattern (0: payloads that start mid-pattern can look
    /// like other protocols to tshark's heuristic dissectors).
    offset: u64,
}

/// The packets of a flow not yet written.
enum Packets {
    Tcp(VecDeque<Segment>),
    Udp(VecDeque<Datagram>),
}

/// A flow between its first and last packet.
struct OpenFlow {
    client: Ipv4Addr,
    client_port: u16,
    server: Ipv4Addr,
    server_port: u16,
    /// TTL of the client's packets when they reach the capture point.
    client_ttl: u8,
    /// Next IP identification of the client and the server.
    ident: [u16; 2],
    packets: Packets,
}

impl OpenFlow {
    fn next_time(&self) -> Option<u64> {
        match &self.packets {
            Packets::Tcp(segments) => segments.front().map(|s| s.time_us),
            Packets::Udp(datagrams) => datagrams.front().map(|d| d.time_us),
        }
    }

    /// Builds the flow's next frame into `frame`; returns its capture time.
    fn next_frame(&mut self, frame: &mut Vec<u8>) -> Option<u64> {
        let (time_us, from_client) = match &self.packets {
            Packets::Tcp(segments) => segments.front().map(|s| (s.time_us, s.from_client))?,
            Packets::Udp(datagrams) => datagrams.front().map(|d| (d.time_us, d.from_client))?,
        };
        let side = usize::from(!from_client);
        let ident = self.ident[side];
        self.ident[side] = ident.wrapping_add(1);
        let server_mac = {
            let mut mac = SERVER_MAC;
            mac[5] = self.server.octets()[3];
            mac
        };
        let ip = if from_client {
            IpFields {
                src_mac: ROUTER_MAC,
                dst_mac: server_mac,
                src: self.client,
                dst: self.server,
                ident,
                ttl: self.client_ttl,
            }
        } else {
            IpFields {
                src_mac: server_mac,
                dst_mac: ROUTER_MAC,
                src: self.server,
                dst: self.client,
                ident,
                ttl: SERVER_TTL,
            }
        };
        let ports = if from_client {
            (self.client_port, self.server_port)
        } else {
            (self.server_port, self.client_port)
        };
        let pattern = if from_client {
            CLIENT_PATTERN
        } else {
            SERVER_PATTERN
        };
        match &mut self.packets {
            Packets::Tcp(segments) => {
                let segment = segments.pop_front()?;
                let mut options = [0u8; wire::TCP_MAX_OPTIONS];
                let options_len = segment.options.encode(&mut options);
                let fields = TcpFields {
                    src_port: ports.0,
                    dst_port: ports.1,
                    seq: segment.seq,
                    ack: segment.ack,
                    flags: segment.flags,
                    window: segment.window,
                    options: &options[..options_len],
                };
                build_tcp_frame(
                    frame,
                    &ip,
                    &fields,
                    pattern,
                    segment.stream_offset,
                    segment.len as usize,
                );
            }
            Packets::Udp(datagrams) => {
                let datagram = datagrams.pop_front()?;
                build_udp_frame(
                    frame,
                    &ip,
                    ports,
                    pattern,
                    datagram.offset,
                    datagram.len as usize,
                );
            }
        }
        Some(time_us)
    }
}

/// The generator's state: the random source, the clients' next ports, the counts.
struct Generator<'a> {
    options: &'a SynthOptions,
    rng: ChaCha8Rng,
    /// Next ephemeral port of each client.
    next_port: Vec<u16>,
    summary: SynthSummary,
    /// Packets already assigned to flows (written or waiting in open flows).
    assigned: u64,
    /// UDP packets among them.
    assigned_udp: u64,
}

/// Runs the generator, handing each frame to `write` in capture order.
fn generate(
    options: &SynthOptions,
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<SynthSummary> {
    let clients = options.clients.clamp(1, 65_000);
    let mut generator = Generator {
        options,
        rng: ChaCha8Rng::seed_from_u64(options.seed),
        next_port: Vec::with_capacity(clients as usize),
        summary: SynthSummary::default(),
        assigned: 0,
        assigned_udp: 0,
    };
    for _ in 0..clients {
        let port = generator.rng.gen_range(EPHEMERAL_PORTS);
        generator.next_port.push(port);
    }
    let mean_gap_us = 1e6 / options.flows_per_second.max(1.0);

    // Open flows in slots, and a heap of (next packet time, start order, slot) so that
    // equal times come out in a fixed order.
    let mut slots: Vec<Option<OpenFlow>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut frame = Vec::with_capacity(2048);
    let mut next_start = 0u64;
    let mut started = 0u64;
    let mut first_time = None;
    let mut last_time = 0;

    loop {
        let next_packet = heap.peek().map(|Reverse((time, _, _))| *time);
        let budget = options.packets - generator.assigned;
        if budget > 0 && next_packet.is_none_or(|time| next_start <= time) {
            let flow = generator.new_flow(next_start, budget);
            if let Some(time) = flow.next_time() {
                let slot = free.pop().unwrap_or_else(|| {
                    slots.push(None);
                    slots.len() - 1
                });
                slots[slot] = Some(flow);
                heap.push(Reverse((time, started, slot)));
                started += 1;
            }
            // Exponential gaps between starts: a Poisson process of new flows.
            let uniform: f64 = generator.rng.gen_range(f64::EPSILON..1.0);
            next_start += (-uniform.ln() * mean_gap_us) as u64 + 1;
            continue;
        }
        let Some(Reverse((_, order, slot))) = heap.pop() else {
            break;
        };
        let flow = slots[slot]
            .as_mut()
            .expect("the heap only names open slots");
        if let Some(time) = flow.next_frame(&mut frame) {
            write(EPOCH_US + time, &frame)?;
            first_time.get_or_insert(time);
            last_time = time;
            generator.summary.packets += 1;
            generator.summary.frame_bytes += frame.len() as u64;
        }
        match flow.next_time() {
            Some(time) => heap.push(Reverse((time, order, slot))),
            None => {
                slots[slot] = None;
                free.push(slot);
            }
        }
    }
    let mut summary = generator.summary;
    summary.duration_us = last_time - first_time.unwrap_or(last_time);
    Ok(summary)
}

impl Generator<'_> {
    /// A client address and a fresh port for it (ports count up, as Linux's do per
    /// destination, so no two flows share an address/port pair).
    fn pick_client(&mut self) -> (Ipv4Addr, u16) {
        let index = self.rng.gen_range(0..self.next_port.len());
        let port = self.next_port[index];
        self.next_port[index] = if port >= *EPHEMERAL_PORTS.end() {
            *EPHEMERAL_PORTS.start()
        } else {
            port + 1
        };
        (Ipv4Addr::from(FIRST_CLIENT + index as u32), port)
    }

    /// Starts a flow at `start_us` with at most `budget` packets.
    fn new_flow(&mut self, start_us: u64, budget: u64) -> OpenFlow {
        let udp_share = self.options.udp_share.clamp(0.0, 1.0);
        // Keep the UDP share of the packets assigned so far on target.
        let udp_behind = (self.assigned_udp as f64) < udp_share * (self.assigned + 1) as f64;
        if !udp_behind {
            let (service, plan) = self.tcp_plan(start_us);
            let mut rng = ChaCha8Rng::seed_from_u64(self.rng.gen());
            let (segments, stats) = tcp::simulate(&plan, &mut rng);
            if segments.len() as u64 <= budget {
                return self.open_tcp(service, &plan, segments, stats);
            }
            // Too long for what is left of the file: end it with small UDP flows.
        }
        self.open_udp(start_us, budget)
    }

    /// Draws a TCP connection: its service, path, options, exchanges and ending.
    fn tcp_plan(&mut self, start_us: u64) -> (Service, ConnectionPlan) {
        let rng = &mut self.rng;
        let mut pick: f64 = rng.gen();
        let mut service = SERVICES[SERVICES.len() - 1];
        for candidate in SERVICES {
            if pick < candidate.share {
                service = candidate;
                break;
            }
            pick -= candidate.share;
        }
        let count = rng.gen_range(service.exchanges.0..=service.exchanges.1);
        let exchanges = (0..count)
            .map(|k| {
                let request = message_size(rng.gen_range(service.request.0..=service.request.1));
                let response = match service.response {
                    None => request,
                    Some((low, high)) => message_size(log_uniform(rng, low, high)),
                };
                Exchange {
                    request,
                    response,
                    // The first request follows the handshake closely; later ones after
                    // the user or program thinks.
                    think_us: if k == 0 {
                        rng.gen_range(20..300)
                    } else {
                        log_uniform(rng, 500, 50_000).into()
                    },
                    server_us: log_uniform(rng, 50, 5_000).into(),
                }
            })
            .collect();
        let close = match rng.gen_range(0..100) {
            0..=44 => Close::ClientFourWay,
            45..=74 => Close::ClientThreeWay,
            75..=96 => Close::ServerFirst,
            _ => Close::ClientReset,
        };
        // A window of 192 KiB to 1 MiB, expressed with a scale that fits it in 16 bits.
        let mut window = || {
            let bytes = rng.gen_range(192 * 1024..=1024 * 1024);
            let scale = rng.gen_range(5..=9u8);
            let scale = scale.max(bytes_scale_needed(bytes));
            (bytes, scale)
        };
        let (client_window, client_scale) = window();
        let (server_window, server_scale) = window();
        let plan = ConnectionPlan {
            start_us,
            client_delay_us: log_uniform(rng, 1_000, 40_000).into(),
            server_delay_us: rng.gen_range(50..=500),
            link_bps: [log_uniform(rng, 20, 200) as u64 * 1_000_000, 1_000_000_000],
            isn: [rng.gen(), rng.gen()],
            ts_offset: [rng.gen(), rng.gen()],
            window_scale: [client_scale, server_scale],
            receive_window: [client_window, server_window],
            exchanges,
            close,
            close_delay_us: log_uniform(rng, 100, 20_000).into(),
            quick_ack: rng.gen_bool(0.3),
            refused: rng.gen_bool(0.01),
            loss: self.options.loss.clamp(0.0, MAX_LOSS),
        };
        (service, plan)
    }

    fn open_tcp(
        &mut self,
        service: Service,
        plan: &ConnectionPlan,
        segments: Vec<Segment>,
        stats: TcpCounts,
    ) -> OpenFlow {
        let (client, client_port) = self.pick_client();
        let count = segments.len() as u64;
        let summary = &mut self.summary;
        summary.tcp_connections += 1;
        summary.refused_connections += u64::from(plan.refused);
        summary.tcp_packets += count;
        summary.tcp += stats;
        self.assigned += count;
        OpenFlow {
            client,
            client_port,
            server: service.address,
            server_port: service.port,
            client_ttl: self.rng.gen_range(48..=60),
            ident: [self.rng.gen(), self.rng.gen()],
            packets: Packets::Tcp(segments.into()),
        }
    }

    /// A UDP flow: one to three requests from one client port, each answered after a
    /// round trip to the server unless it goes unanswered; at most `budget` packets.
    fn open_udp(&mut self, start_us: u64, budget: u64) -> OpenFlow {
        let (client, client_port) = self.pick_client();
        let rng = &mut self.rng;
        let client_delay: u64 = log_uniform(rng, 1_000, 40_000).into();
        let server_delay: u64 = rng.gen_range(50..=500);
        let requests = rng.gen_range(1..=3);
        let mut datagrams = VecDeque::new();
        let mut time = start_us;
        let mut unanswered = 0;
        for _ in 0..requests {
            if datagrams.len() as u64 >= budget {
                break;
            }
            datagrams.push_back(Datagram {
                time_us: time,
                from_client: true,
                len: rng.gen_range(UDP_REQUEST.0..=UDP_REQUEST.1),
                offset: 0,
            });
            let answered = !rng.gen_bool(UDP_UNANSWERED);
            if answered && (datagrams.len() as u64) < budget {
                let server_us: u64 = log_uniform(rng, 30, 3_000).into();
                datagrams.push_back(Datagram {
                    time_us: time + 2 * server_delay + server_us,
                    from_client: false,
                    len: log_uniform(rng, UDP_REPLY.0, UDP_REPLY.1),
                    offset: 0,
                });
            } else {
                unanswered += 1;
            }
            // The next request after the reply reached the client and it thought.
            time += 2 * (client_delay + server_delay) + log_uniform(rng, 5_000, 200_000) as u64;
        }
        let count = datagrams.len() as u64;
        self.summary.udp_flows += 1;
        self.summary.udp_packets += count;
        self.summary.udp_unanswered += unanswered;
        self.assigned += count;
        self.assigned_udp += count;
        // The times above are the client's; everything reaches the capture point one
        // client-side delay later (requests on their way out, replies having come from
        // the server, which is `server_delay` behind the capture point).
        for datagram in datagrams.iter_mut() {
            datagram.time_us += client_delay;
        }
        OpenFlow {
            client,
            client_port,
            server: UDP_SERVER,
            server_port: UDP_PORT,
            client_ttl: self.rng.gen_range(48..=60),
            ident: [self.rng.gen(), self.rng.gen()],
            packets: Packets::Udp(datagrams),
        }
    }
}

/// A size drawn log-uniformly from [low, high]: small values common, a long tail of
/// large ones, as message and object sizes are.
fn log_uniform(rng: &mut ChaCha8Rng, low: u32, high: u32) -> u32 {
    let (low, high) = (f64::from(low.max(1)), f64::from(high.max(low.max(1))));
    let value = (low.ln() + rng.gen::<f64>() * (high.ln() - low.ln())).exp();
    (value.round() as u32).clamp(low as u32, high as u32)
}

/// Adjusts a message size so that its last segment carries at least 2 bytes: tshark
/// takes a resent 1-byte segment just below the highest sequence number for a
/// keep-alive probe, not a retransmission.
fn message_size(size: u32) -> u32 {
    let size = size.max(2);
    if size % tcp::SEGMENT_DATA == 1 {
        size + 1
    } else {
        size
    }
}

/// The smallest window scale that fits `bytes` in the 16-bit window field.
fn bytes_scale_needed(bytes: u32) -> u8 {
    let mut scale = 0;
    while bytes >> scale > u32::from(u16::MAX) {
        scale += 1;
    }
    scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn frames(options: &SynthOptions) -> (Vec<(u64, Vec<u8>)>, SynthSummary) {
        let mut frames = Vec::new();
        let summary = generate(options, |time, frame| {
            frames.push((time, frame.to_vec()));
            Ok(())
        })
        .unwrap();
        (frames, summary)
    }

    fn small(seed: u64) -> SynthOptions {
        SynthOptions {
            packets: 3_000,
            seed,
            loss: 0.02,
            ..SynthOptions::default()
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let (a, summary_a) = frames(&small(5));
        let (b, summary_b) = frames(&small(5));
        assert_eq!(a, b);
        assert_eq!(summary_a, summary_b);
        let (c, _) = frames(&small(6));
        assert_ne!(a, c);
    }

    #[test]
    fn exact_count_increasing_times_and_checksums_that_verify() {
        let (frames, summary) = frames(&small(7));
        assert_eq!(frames.len(), 3_000);
        assert_eq!(summary.packets, 3_000);
        assert_eq!(summary.tcp_packets + summary.udp_packets, 3_000);
        assert!(frames.windows(2).all(|w| w[0].0 <= w[1].0));
        let (mut tcp, mut udp) = (0, 0);
        for (_, frame) in &frames {
            // Checked with etherparse, independently of our own checksum code.
            let packet = SlicedPacket::from_ethernet(frame).expect("a well-formed frame");
            let Some(NetSlice::Ipv4(ip)) = &packet.net else {
                panic!("IPv4 expected")
            };
            let header = ip.header().to_header();
            assert_eq!(header.calc_header_checksum(), header.header_checksum);
            assert_eq!(usize::from(header.total_len), frame.len() - 14);
            match &packet.transport {
                Some(TransportSlice::Tcp(segment)) => {
                    let expected = segment
                        .calc_checksum_ipv4(header.source, header.destination)
                        .unwrap();
                    assert_eq!(segment.checksum(), expected);
                    tcp += 1;
                }
                Some(TransportSlice::Udp(datagram)) => {
                    let expected = datagram
                        .to_header()
                        .calc_checksum_ipv4(&header, datagram.payload())
                        .unwrap();
                    assert_eq!(datagram.checksum(), expected);
                    assert_eq!(
                        usize::from(datagram.to_header().length),
                        8 + datagram.payload().len()
                    );
                    udp += 1;
                }
                other => panic!("unexpected transport {other:?}"),
            }
        }
        assert_eq!((tcp, udp), (summary.tcp_packets, summary.udp_packets));
        // About a tenth of the packets are UDP, as asked.
        assert!((250..=350).contains(&udp), "{udp} UDP packets");
        assert!(summary.tcp_connections > 30);
        assert!(summary.tcp.drops > 0 && summary.tcp.retransmissions > 0);
    }

    #[test]
    fn no_loss_means_no_retransmissions() {
        let (_, summary) = frames(&SynthOptions {
            loss: 0.0,
            ..small(8)
        });
        assert_eq!(
            (
                summary.tcp.drops,
                summary.tcp.retransmissions,
                summary.tcp.gaps,
                summary.tcp.duplicate_acks
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn tiny_files_are_exact_too() {
        for packets in [0, 1, 2, 5] {
            let (frames, summary) = frames(&SynthOptions {
                packets,
                ..small(9)
            });
            assert_eq!(frames.len() as u64, packets);
            assert_eq!(summary.packets, packets);
        }
    }

    #[test]
    fn message_sizes_never_end_in_a_one_byte_segment() {
        assert_eq!(message_size(tcp::SEGMENT_DATA + 1), tcp::SEGMENT_DATA + 2);
        assert_eq!(message_size(1), 2);
        assert_eq!(message_size(500), 500);
        assert_eq!(bytes_scale_needed(1024 * 1024), 5);
        assert_eq!(bytes_scale_needed(65_535), 0);
    }
}
