//! Lab 4: `socklab capture`, live capture on an interface, as tcpdump does it: one
//! line per packet, or every packet written to a pcap file for the analyzer (or
//! Wireshark) to read later.
//!
//! The capture runs on a blocking thread: libpcap waits for packets in `poll()`, and on
//! Linux that wait does not end on its own while the interface is quiet (the read
//! timeout only flushes buffers that hold packets). So a small watchdog thread checks
//! the clock (`--duration`) and the `stop` flag (Ctrl-C) every [`WATCH_INTERVAL`] and
//! wakes libpcap with `pcap_breakloop` when it is time to stop. Immediate mode hands
//! each packet over as soon as it arrives instead of waiting for a buffer to fill, so
//! the lines appear while you watch.
//!
//! A line, as [`describe`] writes it (tcpdump's format; sequence numbers relative to
//! the first seen in each direction, see [`RelativeSeq`]):
//!
//! ```text
//! 12:00:00.123456 IP 127.0.0.1.40000 > 127.0.0.1.12000: Flags [S], seq 0, win 65495, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0
//! 12:00:00.123500 IP 127.0.0.1.40000 > 127.0.0.1.12000: UDP, length 5
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pcap::{Active, Capture, Savefile};

use super::dissect::{dissect_with_options, TcpOption};
use super::packet::{tcp_flags, Frame, IpInfo, LinkType, TcpSegment, Transport};
use super::{pcap_text, CaptureError};

/// libpcap's buffer timeout (milliseconds); with immediate mode it hardly matters, but
/// libpcap wants one.
pub const READ_TIMEOUT_MS: i32 = 100;
/// How often the watchdog looks at the stop flag: short enough that Ctrl-C feels
/// immediate.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// tcpdump's default snap length: every packet whole, even 64 KiB loopback segments.
pub const DEFAULT_SNAPLEN: u32 = 262_144;
/// Connections [`RelativeSeq`] remembers before it starts over, so a capture running
/// for days does not grow without bound.
const MAX_REMEMBERED_DIRECTIONS: usize = 65_536;
/// Microseconds in a second and seconds in a day, to print the time of day.
const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// What to capture and where it goes.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The interface (`lo`, `eth0`, `any`).
    pub interface: String,
    /// A BPF filter in tcpdump's language, applied in the kernel.
    pub filter: Option<String>,
    /// Write packets to this pcap file instead of describing them.
    pub write: Option<PathBuf>,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Bytes kept of each packet.
    pub snaplen: u32,
}

/// An open capture handle, ready to [`LiveCapture::run`].
pub struct LiveCapture {
    capture: Capture<Active>,
    link: LinkType,
    interface: String,
    snaplen: u32,
    savefile: Option<(Savefile, PathBuf)>,
}

/// How a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveSummary {
    /// Packets received from libpcap (after the filter).
    pub captured: u64,
    /// Packets written to the `-w` file, if there was one.
    pub written: Option<u64>,
    /// Packets the kernel dropped because we did not read fast enough, when known.
    pub dropped: Option<u32>,
    /// The consumer of the lines went away (a closed pipe): stopped early, quietly.
    pub reader_gone: bool,
}

/// Opens `options.interface` for capture, applies the filter and creates the `-w`
/// file. The capture is running when this returns (packets are being buffered).
///
/// # Errors
/// [`CaptureError::Permission`] without root or CAP_NET_RAW; [`CaptureError::Live`]
/// for an unknown or down interface; [`CaptureError::Filter`] for a bad filter;
/// [`CaptureError::Write`] when the file cannot be created.
pub fn open(options: &LiveOptions) -> Result<LiveCapture, CaptureError> {
    let interface = options.interface.clone();
    let live_error = |error: pcap::Error| classify_open_error(&interface, &pcap_text(&error, ""));
    let snaplen = i32::try_from(options.snaplen).unwrap_or(i32::MAX);
    let mut capture = Capture::from_device(interface.as_str())
        .map_err(live_error)?
        .immediate_mode(true)
        .timeout(READ_TIMEOUT_MS)
        .snaplen(snaplen)
        .open()
        .map_err(live_error)?;
    if let Some(filter) = &options.filter {
        capture
            .filter(filter, true)
            .map_err(|error| CaptureError::Filter {
                filter: filter.clone(),
                message: pcap_text(&error, ""),
            })?;
    }
    let savefile = match &options.write {
        None => None,
        Some(path) => {
            let write_error = |message: String| CaptureError::Write {
                path: path.clone(),
                message,
            };
            // The pcap crate needs a UTF-8 path (it would panic on another).
            let Some(name) = path.to_str() else {
                return Err(write_error(
                    "the path is not valid UTF-8, which libpcap needs".into(),
                ));
            };
            let savefile = capture
                .savefile(path)
                .map_err(|error| write_error(pcap_text(&error, &format!("{name}: "))))?;
            Some((savefile, path.clone()))
        }
    };
    let link = LinkType::from_number(u32::try_from(capture.get_datalink().0).unwrap_or(u32::MAX));
    Ok(LiveCapture {
        capture,
        link,
        interface,
        snaplen: options.snaplen,
        savefile,
    })
}

/// Turns libpcap's complaint when opening `interface` into our error.
fn classify_open_error(interface: &str, message: &str) -> CaptureError {
    let lower = message.to_lowercase();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        CaptureError::Permission {
            interface: interface.to_string(),
        }
    } else if lower.contains("no such device") {
        CaptureError::Live {
            interface: interface.to_string(),
            message: "no such interface".to_string(),
        }
    } else if lower.contains("not up") {
        CaptureError::Live {
            interface: interface.to_string(),
            message: "the interface is down".to_string(),
        }
    } else {
        CaptureError::Live {
            interface: interface.to_string(),
            message: message.to_string(),
        }
    }
}

impl LiveCapture {
    /// The link-layer type of the interface.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The readiness line: "capturing on lo, link-type Ethernet, snapshot length
    /// 262144 bytes" (tcpdump says "listening on ...").
    pub fn started_line(&self) -> String {
        format!(
            "capturing on {}, link-type {}, snapshot length {} bytes",
            self.interface,
            link_name(self.link),
            self.snaplen
        )
    }

    /// Captures until `options.count` packets, `options.duration`, `stop` being set
    /// (Ctrl-C), or `on_line` returning false (its reader went away). Without a `-w`
    /// file each packet is described and handed to `on_line`.
    ///
    /// # Errors
    /// [`CaptureError::Live`] when reading from the interface fails (it went away);
    /// [`CaptureError::Write`] when the file cannot be flushed.
    pub fn run(
        &mut self,
        options: &LiveOptions,
        stop: &AtomicBool,
        on_line: impl FnMut(&str) -> bool,
    ) -> Result<LiveSummary, CaptureError> {
        let deadline = options.duration.map(|duration| Instant::now() + duration);
        let breaker = self.capture.breakloop_handle();
        let (done, done_seen) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                loop {
                    let wait = deadline.map_or(WATCH_INTERVAL, |deadline| {
                        deadline
                            .saturating_duration_since(Instant::now())
                            .min(WATCH_INTERVAL)
                    });
                    match done_seen.recv_timeout(wait) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // The capture loop has ended (the sender was dropped).
                        _ => return,
                    }
                    let late = deadline.is_some_and(|deadline| Instant::now() >= deadline);
                    if late || stop.load(Ordering::Relaxed) {
                        breaker.breakloop();
                        return;
                    }
                }
            });
            let result = self.capture_loop(options, stop, deadline, on_line);
            drop(done);
            result
        })
    }

    fn capture_loop(
        &mut self,
        options: &LiveOptions,
        stop: &AtomicBool,
        deadline: Option<Instant>,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<LiveSummary, CaptureError> {
        let mut summary = LiveSummary::default();
        let mut relative = RelativeSeq::default();
        let mut written = 0;
        loop {
            let finished = stop.load(Ordering::Relaxed)
                || options.count.is_some_and(|count| summary.captured >= count)
                || deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if finished {
                break;
            }
            let packet = match self.capture.next_packet() {
                Ok(packet) => packet,
                Err(pcap::Error::TimeoutExpired) => continue,
                // The watchdog called pcap_breakloop (libpcap reports it like the end
                // of a file): the loop condition says why.
                Err(pcap::Error::NoMorePackets) => continue,
                Err(error) => {
                    return Err(CaptureError::Live {
                        interface: self.interface.clone(),
                        message: pcap_text(&error, ""),
                    })
                }
            };
            summary.captured += 1;
            if let Some((savefile, _)) = &mut self.savefile {
                savefile.write(&packet);
                written += 1;
                continue;
            }
            #[allow(clippy::useless_conversion)] // i64 on 64-bit Linux, narrower elsewhere
            let time_us = i64::from(packet.header.ts.tv_sec) * MICROS_PER_SECOND
                + i64::from(packet.header.ts.tv_usec);
            let frame = Frame {
                number: summary.captured,
                time_us,
                data: packet.data,
                wire_len: packet.header.len,
            };
            if !on_line(&describe(self.link, &frame, &mut relative)) {
                summary.reader_gone = true;
                break;
            }
        }
        if let Some((savefile, path)) = &mut self.savefile {
            savefile.flush().map_err(|error| CaptureError::Write {
                path: path.clone(),
                message: pcap_text(&error, ""),
            })?;
            summary.written = Some(written);
        }
        summary.dropped = self.capture.stats().ok().map(|stats| stats.dropped);
        Ok(summary)
    }
}

/// The name tcpdump users know a link type by.
fn link_name(link: LinkType) -> String {
    match link {
        LinkType::Null => "NULL (BSD loopback)".to_string(),
        LinkType::Ethernet => "Ethernet".to_string(),
        LinkType::Raw => "raw IP".to_string(),
        LinkType::Loop => "LOOP (OpenBSD loopback)".to_string(),
        LinkType::LinuxSll => "Linux cooked (SLL)".to_string(),
        LinkType::Ipv4 => "IPv4".to_string(),
        LinkType::Ipv6 => "IPv6".to_string(),
        LinkType::LinuxSll2 => "Linux cooked v2 (SLL2)".to_string(),
        LinkType::Unknown(number) => format!("{number} (not dissected)"),
    }
}

/// Relative sequence numbers, as tcpdump and Wireshark show them: each direction of a
/// connection counts from the first sequence number seen in it (the SYN's, when the
/// handshake was captured), so a SYN shows `seq 0` and the first data byte is 1. An
/// acknowledgment is relative to the other direction's base.
///
/// tcpdump itself prints a SYN's absolute number and starts counting at the next
/// segment; here the SYN already reads 0, as in Wireshark.
#[derive(Debug, Default)]
pub struct RelativeSeq {
    /// The base sequence number of each direction (source, destination).
    bases: HashMap<(SocketAddr, SocketAddr), u32>,
}

impl RelativeSeq {
    /// The relative (seq, ack) of `segment` sent from `src` to `dst`, remembering the
    /// bases it establishes.
    pub fn relative(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        segment: &TcpSegment<'_>,
    ) -> (u32, u32) {
        if self.bases.len() >= MAX_REMEMBERED_DIRECTIONS {
            self.bases.clear();
        }
        let syn = segment.flags & tcp_flags::SYN != 0;
        let ack = segment.flags & tcp_flags::ACK != 0;
        if syn && !ack {
            // A new connection on these ports: forget the previous one's numbers.
            self.bases.remove(&(dst, src));
        }
        let base = if syn {
            self.bases.insert((src, dst), segment.seq);
            segment.seq
        } else {
            *self.bases.entry((src, dst)).or_insert(segment.seq)
        };
        let ack_base = if ack {
            // Capture started mid-connection: the first byte the peer has not sent yet
            // is "1", as tcpdump counts.
            *self
                .bases
                .entry((dst, src))
                .or_insert(segment.ack.wrapping_sub(1))
        } else {
            0
        };
        (
            segment.seq.wrapping_sub(base),
            if ack {
                segment.ack.wrapping_sub(ack_base)
            } else {
                segment.ack
            },
        )
    }

    /// The other direction's base, to show SACK edges relative as acks are.
    fn ack_base(&self, src: SocketAddr, dst: SocketAddr) -> u32 {
        self.bases.get(&(dst, src)).copied().unwrap_or(0)
    }
}

/// One tcpdump-like line for a frame: time of day (UTC), addresses and ports, and the
/// TCP flags, relative sequence numbers, window, options and payload length, or the
/// UDP payload length; a problem found by the dissector is appended in brackets.
pub fn describe(link: LinkType, frame: &Frame<'_>, relative: &mut RelativeSeq) -> String {
    let (packet, options) = dissect_with_options(link, frame);
    let mut line = time_of_day(frame.time_us);
    match &packet.ip {
        None => {
            let what = if packet.malformed.is_some() {
                "frame"
            } else {
                "non-IP frame"
            };
            let _ = write!(line, " {what}, length {}", frame.wire_len);
        }
        Some(ip) => {
            let family = if ip.version == 6 { "IP6" } else { "IP" };
            match &packet.transport {
                Transport::Tcp(segment) => {
                    let src = SocketAddr::new(ip.src, segment.src_port);
                    let dst = SocketAddr::new(ip.dst, segment.dst_port);
                    let _ = write!(line, " {family} {} > {}: ", endpoint(src), endpoint(dst));
                    describe_tcp(&mut line, src, dst, segment, &options, relative);
                }
                Transport::Udp(datagram) => {
                    let src = SocketAddr::new(ip.src, datagram.src_port);
                    let dst = SocketAddr::new(ip.dst, datagram.dst_port);
                    let length = datagram.length_field.saturating_sub(8);
                    let _ = write!(
                        line,
                        " {family} {} > {}: UDP, length {length}",
                        endpoint(src),
                        endpoint(dst)
                    );
                }
                Transport::Fragment => {
                    let (offset, more) = ip.fragment.map_or((0, false), |f| (f.offset, f.more));
                    let _ = write!(
                        line,
                        " {family} {} > {}: {} fragment, id {}, offset {offset}{}, length {}",
                        ip.src,
                        ip.dst,
                        protocol_name(ip),
                        ip.ident,
                        if more { ", more" } else { "" },
                        ip_payload_len(ip)
                    );
                }
                Transport::Other(_) | Transport::None => {
                    let _ = write!(
                        line,
                        " {family} {} > {}: {}, length {}",
                        ip.src,
                        ip.dst,
                        protocol_name(ip),
                        ip_payload_len(ip)
                    );
                }
            }
        }
    }
    if let Some(reason) = &packet.malformed {
        let _ = write!(line, " [malformed: {reason}]");
    }
    line
}

fn describe_tcp(
    line: &mut String,
    src: SocketAddr,
    dst: SocketAddr,
    segment: &TcpSegment<'_>,
    options: &[TcpOption],
    relative: &mut RelativeSeq,
) {
    let (seq, ack) = relative.relative(src, dst, segment);
    let _ = write!(line, "Flags [{}]", flag_letters(segment.flags));
    let announces_seq = segment.flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) != 0;
    if segment.payload_len > 0 {
        let _ = write!(
            line,
            ", seq {seq}:{}",
            seq.wrapping_add(segment.payload_len)
        );
    } else if announces_seq {
        let _ = write!(line, ", seq {seq}");
    }
    if segment.flags & tcp_flags::ACK != 0 {
        let _ = write!(line, ", ack {ack}");
    }
    let _ = write!(line, ", win {}", segment.window);
    if !options.is_empty() {
        let ack_base = relative.ack_base(src, dst);
        let described: Vec<String> = options
            .iter()
            .map(|option| describe_option(option, ack_base))
            .collect();
        let _ = write!(line, ", options [{}]", described.join(","));
    }
    let _ = write!(line, ", length {}", segment.payload_len);
}

/// tcpdump's flag letters, in its order: S(YN) F(IN) P(USH) R(ST) U(RG) W (CWR) E
/// (ECE), and "." for ACK; "none" when no flag is set.
fn flag_letters(flags: u16) -> String {
    const LETTERS: [(u16, char); 8] = [
        (tcp_flags::SYN, 'S'),
        (tcp_flags::FIN, 'F'),
        (tcp_flags::PSH, 'P'),
        (tcp_flags::RST, 'R'),
        (tcp_flags::URG, 'U'),
        (tcp_flags::CWR, 'W'),
        (tcp_flags::ECE, 'E'),
        (tcp_flags::ACK, '.'),
    ];
    let letters: String = LETTERS
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|&(_, letter)| letter)
        .collect();
    if letters.is_empty() {
        "none".to_string()
    } else {
        letters
    }
}

/// One option as tcpdump prints it; SACK edges relative to `ack_base`.
fn describe_option(option: &TcpOption, ack_base: u32) -> String {
    match option {
        TcpOption::End => "eol".to_string(),
        TcpOption::Nop => "nop".to_string(),
        TcpOption::Mss(mss) => format!("mss {mss}"),
        TcpOption::WindowScale(shift) => format!("wscale {shift}"),
        TcpOption::SackPermitted => "sackOK".to_string(),
        TcpOption::Sack(blocks) => {
            let edges: String = blocks
                .iter()
                .map(|(left, right)| {
                    format!(
                        "{{{}:{}}}",
                        left.wrapping_sub(ack_base),
                        right.wrapping_sub(ack_base)
                    )
                })
                .collect();
            format!("sack {} {edges}", blocks.len())
        }
        TcpOption::Timestamps(value, echo) => format!("TS val {value} ecr {echo}"),
        TcpOption::Other { kind, len } => format!("unknown-{kind} len {len}"),
    }
}

/// `127.0.0.1.40000` or `::1.40000`: tcpdump joins address and port with a dot.
fn endpoint(addr: SocketAddr) -> String {
    format!("{}.{}", addr.ip(), addr.port())
}

fn protocol_name(ip: &IpInfo) -> String {
    match ip.protocol {
        1 => "ICMP".to_string(),
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        58 => "ICMP6".to_string(),
        other => format!("ip-proto-{other}"),
    }
}

/// The bytes after the IP header, as the IP header counts them.
fn ip_payload_len(ip: &IpInfo) -> u32 {
    ip.total_len.saturating_sub(u32::from(ip.header_len))
}

/// `HH:MM:SS.micros`, in UTC (tcpdump prints local time; UTC keeps the library free of
/// time-zone lookups and the tests independent of the machine).
fn time_of_day(time_us: i64) -> String {
    let seconds = time_us
        .div_euclid(MICROS_PER_SECOND)
        .rem_euclid(SECONDS_PER_DAY);
    let micros = time_us.rem_euclid(MICROS_PER_SECOND);
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake and a datagram captured on Linux's `lo` (Ethernet, zero MACs).
    const SYN: [u8; 74] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0x00, 0x00, 0x3c, 0x22, 0xd0, 0x40,
        0x00, 0x40, 0x06, 0x19, 0xea, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0x9f, 0x72,
        0xb8, 0x13, 0x14, 0x88, 0x7a, 0x6d, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xff, 0xd7, 0xfe,
        0x30, 0x00, 0x00, 0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0x7a, 0x6e, 0xea, 0x26,
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];
    const SYN_ACK: [u8; 74] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x40,
        0x00, 0x40, 0x06, 0x3c, 0xba, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xb8, 0x13,
        0x9f, 0x72, 0xcf, 0xc5, 0x8d, 0xc8, 0x14, 0x88, 0x7a, 0x6e, 0xa0, 0x12, 0xff, 0xcb, 0xfe,
        0x30, 0x00, 0x00, 0x02, 0x04, 0xff, 0xd7, 0x04, 0x02, 0x08, 0x0a, 0xf3, 0x99, 0x8e, 0x91,
        0x7a, 0x6e, 0xea, 0x26, 0x01, 0x03, 0x03, 0x0a,
    ];
    const ACK: [u8; 66] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0x00, 0x00, 0x34, 0x22, 0xd1, 0x40,
        0x00, 0x40, 0x06, 0x19, 0xf1, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0x9f, 0x72,
        0xb8, 0x13, 0x14, 0x88, 0x7a, 0x6e, 0xcf, 0xc5, 0x8d, 0xc9, 0x80, 0x10, 0x00, 0x40, 0xfe,
        0x28, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x7a, 0x6e, 0xea, 0x27, 0xf3, 0x99, 0x8e, 0x91,
    ];
    const UDP: [u8; 47] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, 0x45, 0x00, 0x00, 0x21, 0x8d, 0x88, 0x40,
        0x00, 0x40, 0x11, 0xaf, 0x41, 0x7f, 0x00, 0x00, 0x01, 0x7f, 0x00, 0x00, 0x01, 0xdf, 0xdb,
        0xb8, 0x14, 0x00, 0x0d, 0xfe, 0x20, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    /// Noon UTC plus 123456 µs on some day.
    const NOON: i64 = (19_000 * SECONDS_PER_DAY + 12 * 3600) * MICROS_PER_SECOND + 123_456;

    fn line(data: &[u8], time_us: i64, relative: &mut RelativeSeq) -> String {
        let frame = Frame {
            number: 1,
            time_us,
            data,
            wire_len: data.len() as u32,
        };
        describe(LinkType::Ethernet, &frame, relative)
    }

    #[test]
    fn a_handshake_with_relative_numbers() {
        let mut relative = RelativeSeq::default();
        assert_eq!(
            line(&SYN, NOON, &mut relative),
            "12:00:00.123456 IP 127.0.0.1.40818 > 127.0.0.1.47123: Flags [S], seq 0, win 65495, \
             options [mss 65495,sackOK,TS val 2054089254 ecr 0,nop,wscale 10], length 0"
        );
        assert_eq!(
            line(&SYN_ACK, NOON + 135, &mut relative),
            "12:00:00.123591 IP 127.0.0.1.47123 > 127.0.0.1.40818: Flags [S.], seq 0, ack 1, \
             win 65483, options [mss 65495,sackOK,TS val 4086926993 ecr 2054089254,nop,wscale 10], \
             length 0"
        );
        // A pure ACK shows no seq, as in tcpdump without -vv.
        assert_eq!(
            line(&ACK, NOON + 153, &mut relative),
            "12:00:00.123609 IP 127.0.0.1.40818 > 127.0.0.1.47123: Flags [.], ack 1, win 64, \
             options [nop,nop,TS val 2054089255 ecr 4086926993], length 0"
        );
    }

    #[test]
    fn data_mid_connection_counts_from_the_first_segment_seen() {
        let mut relative = RelativeSeq::default();
        // The ACK alone, with 5 bytes of data appended: capture started mid-connection.
        let mut data = ACK.to_vec();
        data[17] = 0x34 + 5;
        data[47] = 0x18; // PSH ACK
        data.extend_from_slice(b"hello");
        assert_eq!(
            line(&data, 0, &mut relative),
            "00:00:00.000000 IP 127.0.0.1.40818 > 127.0.0.1.47123: Flags [P.], seq 0:5, ack 1, \
             win 64, options [nop,nop,TS val 2054089255 ecr 4086926993], length 5"
        );
        // The next segment continues from there.
        let seq = u32::from_be_bytes([data[38], data[39], data[40], data[41]]) + 5;
        data[38..42].copy_from_slice(&seq.to_be_bytes());
        assert!(line(&data, 0, &mut relative).contains("seq 5:10, ack 1,"));
    }

    #[test]
    fn udp_fragments_and_other_frames() {
        let mut relative = RelativeSeq::default();
        assert_eq!(
            line(&UDP, NOON, &mut relative),
            "12:00:00.123456 IP 127.0.0.1.57307 > 127.0.0.1.47124: UDP, length 5"
        );
        let mut arp = UDP;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            line(&arp, NOON, &mut relative),
            "12:00:00.123456 non-IP frame, length 47"
        );
        // A later fragment (offset 8 x 8 bytes) of datagram 0x8d88.
        let mut fragment = UDP;
        fragment[20..22].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            line(&fragment, NOON, &mut relative),
            "12:00:00.123456 IP 127.0.0.1 > 127.0.0.1: UDP fragment, id 36232, offset 64, length 13"
        );
        let mut icmp = UDP;
        icmp[23] = 1;
        assert_eq!(
            line(&icmp, NOON, &mut relative),
            "12:00:00.123456 IP 127.0.0.1 > 127.0.0.1: ICMP, length 13"
        );
        assert_eq!(
            line(&UDP[..30], NOON, &mut relative),
            "12:00:00.123456 frame, length 30 [malformed: IPv4 header cut: 16 of 20 bytes]"
        );
    }

    #[test]
    fn flags_in_tcpdump_order() {
        assert_eq!(flag_letters(tcp_flags::SYN | tcp_flags::ACK), "S.");
        assert_eq!(
            flag_letters(tcp_flags::FIN | tcp_flags::PSH | tcp_flags::ACK),
            "FP."
        );
        assert_eq!(flag_letters(tcp_flags::RST), "R");
        assert_eq!(
            flag_letters(tcp_flags::SYN | tcp_flags::ECE | tcp_flags::CWR),
            "SWE"
        );
        assert_eq!(flag_letters(0), "none");
        assert_eq!(
            describe_option(&TcpOption::Sack(vec![(1100, 1200), (1300, 1400)]), 1000),
            "sack 2 {100:200}{300:400}"
        );
    }

    #[test]
    fn a_new_syn_on_the_same_ports_starts_over() {
        let mut relative = RelativeSeq::default();
        line(&SYN, 0, &mut relative);
        line(&SYN_ACK, 0, &mut relative);
        let mut again = SYN;
        again[38..42].copy_from_slice(&7u32.to_be_bytes());
        assert!(line(&again, 0, &mut relative).contains("Flags [S], seq 0, win"));
        // The answer to the new SYN acknowledges ISN + 1, relative 1.
        let mut answer = SYN_ACK;
        answer[42..46].copy_from_slice(&8u32.to_be_bytes());
        assert!(line(&answer, 0, &mut relative).contains("seq 0, ack 1,"));
    }

    #[test]
    fn times_of_day_in_utc() {
        assert_eq!(time_of_day(0), "00:00:00.000000");
        assert_eq!(time_of_day(NOON), "12:00:00.123456");
        assert_eq!(time_of_day(-1), "23:59:59.999999");
    }

    #[test]
    fn open_errors_are_classified() {
        let permission = classify_open_error(
            "lo",
            "you don't have permission to capture on that device (socket: Operation not permitted)",
        );
        assert!(matches!(permission, CaptureError::Permission { .. }));
        assert_eq!(
            permission.to_string(),
            "cannot capture on lo: permission denied (run as root or give the binary \
             CAP_NET_RAW: sudo setcap cap_net_raw,cap_net_admin=eip $(which socklab))"
        );
        assert_eq!(
            classify_open_error(
                "eth9",
                "no such device exists (SIOCGIFHWADDR: No such device)"
            )
            .to_string(),
            "cannot capture on eth9: no such interface"
        );
        assert_eq!(
            classify_open_error("eth1", "that device is not up").to_string(),
            "cannot capture on eth1: the interface is down"
        );
    }
}
