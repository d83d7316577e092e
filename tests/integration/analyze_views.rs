//! `socklab analyze` views `follow`, `ladder`, `udp` and `forum` on captures: a
//! hand-made one (retransmission, reordering, overlap, a hole the capture missed)
//! checked byte for byte against tshark's `-z follow,tcp,raw`, and real loopback
//! recordings (tcpdump on `lo`) of a socklab echo session and a forum session.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etherparse::PacketBuilder;
use serde_json::Value;

use crate::scenarios::{self, ACK, FIN, PSH, SYN};
use crate::util::{require_tool, run, socklab, stderr, stdout, Server};

const TIMEOUT: Duration = Duration::from_secs(30);
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SERVER_PORT: u16 = 8_080;
const C_ISN: u32 = 1_000;
const S_ISN: u32 = 700_000;
const PA: u16 = PSH | ACK;

/// A hand-made segment: client port, from the client?, flags, seq and ack as offsets
/// from the sender's and the peer's ISN, payload.
type Segment = (u16, bool, u16, u32, u32, &'static [u8]);

/// A hole follow reported: direction (`c2s`/`s2c`), stream offset, length.
type Hole = (String, u64, u64);

/// One frame: Ethernet, IPv4, TCP with real checksums, `payload`.
fn tcp_frame(
    client_port: u16,
    from_client: bool,
    flags: u16,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst, sport, dport) = if from_client {
        (CLIENT, SERVER, client_port, SERVER_PORT)
    } else {
        (SERVER, CLIENT, SERVER_PORT, client_port)
    };
    let mut tcp = PacketBuilder::ethernet2([0; 6], [0; 6])
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(sport, dport, seq, 1024);
    if flags & SYN != 0 {
        tcp = tcp.syn();
    }
    if flags & FIN != 0 {
        tcp = tcp.fin();
    }
    if flags & PSH != 0 {
        tcp = tcp.psh();
    }
    if flags & ACK != 0 {
        tcp = tcp.ack(ack);
    }
    let mut bytes = Vec::new();
    tcp.write(&mut bytes, payload).expect("write to a Vec");
    bytes
}

/// The hand-made capture: stream 0 exercises retransmission, reordering and overlap;
/// stream 1 loses a client segment from the capture (the server acknowledges it).
fn write_follow_cases(path: &Path) {
    let segments: [Segment; 21] = [
        (40_000, true, SYN, 0, 0, b""),
        (40_000, false, SYN | ACK, 0, 1, b""),
        (40_000, true, ACK, 1, 1, b""),
        (40_000, true, PA, 1, 1, b"GET /index"),
        (40_000, true, PA, 21, 1, b"\r\n\r\n"), // ahead of a hole
        (40_000, true, PA, 11, 1, b".html HTTP"), // fills it
        (40_000, true, PA, 1, 1, b"GET /index"), // retransmission
        (40_000, true, PA, 6, 1, b"index.html"), // overlap, nothing new
        (40_000, false, ACK, 1, 25, b""),
        (40_000, false, PA, 1, 25, b"HTTP/1.0 200 OK\r\n\r\n"),
        (40_000, false, PA, 20, 25, b"hello\n"),
        (40_000, false, PA, 20, 25, b"hello\n"), // retransmission
        (40_000, true, FIN | ACK, 25, 26, b""),
        (40_000, false, FIN | ACK, 26, 26, b""),
        (40_000, true, ACK, 26, 27, b""),
        (40_001, true, SYN, 0, 0, b""),
        (40_001, false, SYN | ACK, 0, 1, b""),
        (40_001, true, PA, 1, 1, b"aaaa"),
        (40_001, true, PA, 9, 1, b"cccc"), // "bbbb" at 5 never captured
        (40_001, false, ACK, 1, 13, b""),  // the server got all 12 bytes
        (40_001, false, PA, 1, 13, b"ok"),
    ];
    let frames: Vec<(u64, Vec<u8>)> = segments
        .iter()
        .enumerate()
        .map(|(i, &(port, from_client, flags, seq, ack, payload))| {
            let (own, peer) = if from_client {
                (C_ISN, S_ISN)
            } else {
                (S_ISN, C_ISN)
            };
            let ack = if flags & ACK != 0 { peer + ack } else { 0 };
            let time_us = i as u64 * 1_000;
            (
                time_us,
                tcp_frame(port, from_client, flags, own + seq, ack, payload),
            )
        })
        .collect();
    scenarios::write_pcap(path, &frames);
}

fn analyze(file: &Path, args: &[&str]) -> String {
    let output = run(socklab().arg("analyze").arg(file).args(args), TIMEOUT);
    assert!(
        output.status.success(),
        "socklab failed: {}",
        stderr(&output)
    );
    stdout(&output)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// The bytes `socklab analyze FILE follow STREAM --json --hex` gives each way
/// (client→server, server→client), and the holes it reports as (direction, offset, len).
fn socklab_follow(file: &Path, stream: u64) -> ([Vec<u8>; 2], Vec<Hole>) {
    let mut bytes = [Vec::new(), Vec::new()];
    let mut holes = Vec::new();
    for chunk in json_lines(&analyze(
        file,
        &["follow", &stream.to_string(), "--json", "--hex"],
    )) {
        let direction = chunk["direction"]
            .as_str()
            .expect("a direction")
            .to_string();
        let offset = chunk["offset"].as_u64().expect("an offset");
        let len = chunk["len"].as_u64().expect("a length");
        if chunk["missing"] == true {
            holes.push((direction, offset, len));
            continue;
        }
        let side = usize::from(direction == "s2c");
        assert_eq!(
            bytes[side].len() as u64 + holes_before(&holes, &direction),
            offset,
            "{chunk}"
        );
        bytes[side].extend(from_hex(chunk["hex"].as_str().expect("hex")));
    }
    (bytes, holes)
}

fn holes_before(holes: &[Hole], direction: &str) -> u64 {
    holes.iter().filter(|h| h.0 == direction).map(|h| h.2).sum()
}

/// The bytes tshark's Follow TCP Stream gives each way: in `-z follow,tcp,raw`, the
/// first node's data lines are flush left, the second node's start with a tab.
fn tshark_follow(file: &Path, stream: u64) -> (String, [Vec<u8>; 2]) {
    let output = run(
        Command::new("tshark").arg("-r").arg(file).args([
            "-q",
            "-z",
            &format!("follow,tcp,raw,{stream}"),
        ]),
        TIMEOUT,
    );
    assert!(
        output.status.success(),
        "tshark failed: {}",
        stderr(&output)
    );
    let text = stdout(&output);
    let mut node0 = String::new();
    let mut bytes = [Vec::new(), Vec::new()];
    let mut in_data = false;
    for line in text.lines() {
        if let Some(address) = line.strip_prefix("Node 0: ") {
            node0 = address.to_string();
        } else if line.starts_with("Node 1: ") {
            in_data = true;
        } else if line.starts_with("====") {
            in_data = false;
        } else if in_data {
            match line.strip_prefix('\t') {
                Some(hex) => bytes[1].extend(from_hex(hex)),
                None => bytes[0].extend(from_hex(line)),
            }
        }
    }
    (node0, bytes)
}

#[test]
fn follow_agrees_with_tshark_on_retransmission_reordering_and_overlap() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("follow.pcap");
    write_follow_cases(&file);
    let (ours, holes) = socklab_follow(&file, 0);
    assert_eq!(ours[0], b"GET /index.html HTTP\r\n\r\n");
    assert_eq!(ours[1], b"HTTP/1.0 200 OK\r\n\r\nhello\n");
    assert!(holes.is_empty(), "{holes:?}");
    if require_tool("tshark") {
        let (node0, theirs) = tshark_follow(&file, 0);
        assert_eq!(
            node0, "127.0.0.1:40000",
            "tshark's first node is the client"
        );
        assert_eq!(ours, theirs, "socklab vs tshark, per direction");
    }

    let text = analyze(&file, &["follow", "0"]);
    let body: Vec<&str> = text.lines().skip(3).collect();
    assert_eq!(
        body,
        [
            "> GET /index.html HTTP",
            ">",
            "< HTTP/1.0 200 OK",
            "<",
            "< hello"
        ],
        "{text}"
    );
    assert!(
        text.contains("client → server: 24 bytes, 20 retransmitted bytes shown once"),
        "{text}"
    );
}

#[test]
fn follow_marks_the_bytes_the_capture_missed() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("follow.pcap");
    write_follow_cases(&file);
    let (ours, holes) = socklab_follow(&file, 1);
    assert_eq!(ours[0], b"aaaacccc");
    assert_eq!(ours[1], b"ok");
    assert_eq!(holes, [("c2s".to_string(), 4, 4)]);
    if require_tool("tshark") {
        let (_, theirs) = tshark_follow(&file, 1);
        // tshark writes a hole into the raw data as "[N bytes missing in capture file]"
        // and a NUL byte: the same hole, at the same place.
        let (client_bytes, their_holes) = strip_tshark_holes(&theirs[0]);
        assert_eq!(their_holes, [(4, 4)], "tshark's holes");
        assert_eq!(
            [client_bytes, theirs[1].clone()],
            ours,
            "socklab vs tshark, per direction"
        );
    }
    let text = analyze(&file, &["follow", "1"]);
    assert!(
        text.contains("> aaaa\n> [4 bytes missing]\n> cccc\n< ok\n"),
        "{text}"
    );
}

/// Takes tshark's "[N bytes missing in capture file]\0" markers out of raw follow data;
/// returns the data and each hole as (stream offset, length).
fn strip_tshark_holes(raw: &[u8]) -> (Vec<u8>, Vec<(u64, u64)>) {
    const OPEN: &[u8] = b"[";
    const CLOSE: &[u8] = b" bytes missing in capture file]\0";
    let mut data = Vec::new();
    let mut holes = Vec::new();
    let mut offset = 0u64;
    let mut rest = raw;
    while !rest.is_empty() {
        let marker = rest
            .windows(CLOSE.len())
            .position(|w| w == CLOSE)
            .and_then(|close| {
                let open = rest[..close].iter().rposition(|&b| b == OPEN[0])?;
                let len = std::str::from_utf8(&rest[open + 1..close])
                    .ok()?
                    .parse::<u64>()
                    .ok()?;
                Some((open, close + CLOSE.len(), len))
            });
        match marker {
            Some((open, end, len)) => {
                data.extend_from_slice(&rest[..open]);
                offset += open as u64;
                holes.push((offset, len));
                offset += len;
                rest = &rest[end..];
            }
            None => {
                data.extend_from_slice(rest);
                rest = &[];
            }
        }
    }
    (data, holes)
}

/// tcpdump recording loopback traffic into a file; killed when dropped.
struct Recording {
    child: std::process::Child,
}

impl Recording {
    /// Starts `tcpdump -i lo -U -w file FILTER` and waits for its "listening on" line.
    fn start(file: &Path, filter: &str) -> Recording {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-w"])
            .arg(file)
            .arg(filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let recording = Recording { child };
        ready_rx
            .recv_timeout(TIMEOUT)
            .expect("tcpdump says it is listening");
        recording
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the capture shows `stream`'s connection closed by both sides (Zeek's
/// state SF in the flows view): the last packets may still be on their way to tcpdump.
fn wait_for_close(file: &Path, stream: u64) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let output = run(
            socklab().arg("analyze").arg(file).args(["flows", "--json"]),
            TIMEOUT,
        );
        let closed = json_lines(&stdout(&output))
            .iter()
            .any(|row| row["stream"] == stream && row["conn_state"] == "SF");
        if closed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the capture never showed the close"
        );
        // No readiness signal tells when tcpdump has written a packet: poll.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn follow_and_ladder_on_a_recorded_echo_session() {
    if !require_tool("tcpdump") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("echo.pcap");
    let server = Server::start(
        &["echo", "server", "--tcp", "--port", "0"],
        "TCP echo server listening on",
    );
    let port = server.port();
    let recording = Recording::start(&file, &format!("tcp port {port}"));
    let client = run(
        socklab()
            .args(["echo", "client", "--tcp", "127.0.0.1", &port])
            .args([
                "--count",
                "3",
                "--interval",
                "0",
                "--message",
                "hello {seq}",
            ]),
        TIMEOUT,
    );
    assert!(client.status.success(), "{}", stderr(&client));
    wait_for_close(&file, 0);
    drop(recording);

    // The client's bytes come back unchanged, and tshark reads the same stream.
    let (ours, holes) = socklab_follow(&file, 0);
    assert!(holes.is_empty(), "{holes:?}");
    let sent = String::from_utf8_lossy(&ours[0]).to_string();
    for seq in 1..=3 {
        assert!(sent.contains(&format!("hello {seq}")), "{sent:?}");
    }
    assert_eq!(ours[0], ours[1], "an echo server sends back what it got");
    if require_tool("tshark") {
        let (_, theirs) = tshark_follow(&file, 0);
        assert_eq!(ours, theirs, "socklab vs tshark, per direction");
    }

    // The ladder starts with the handshake's three arrows.
    let arrows = json_lines(&analyze(&file, &["ladder", "0", "--json"]));
    let first: Vec<(&str, &str)> = arrows
        .iter()
        .take(3)
        .map(|a| {
            (
                a["direction"].as_str().expect("a direction"),
                a["flag_names"].as_str().expect("flag names"),
            )
        })
        .collect();
    assert_eq!(first, [("c2s", "SYN"), ("s2c", "SYN, ACK"), ("c2s", "ACK")]);
    let text = analyze(&file, &["ladder", "0"]);
    assert!(
        text.lines().all(|line| line.chars().count() <= 100),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("{} segments.\n", arrows.len())),
        "{text}"
    );
}

#[test]
fn udp_view_on_a_recorded_udp_echo_session() {
    if !require_tool("tcpdump") {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("udp.pcap");
    let server = Server::start(
        &["echo", "server", "--udp", "--port", "0"],
        "UDP echo server listening on",
    );
    let port = server.port();
    let recording = Recording::start(&file, &format!("udp port {port}"));
    let client = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &port])
            .args(["--count", "2", "--interval", "0", "--message", "ping {seq}"]),
        TIMEOUT,
    );
    assert!(client.status.success(), "{}", stderr(&client));
    // Four datagrams: two requests, two echoes.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let rows = loop {
        let rows = json_lines(&analyze(&file, &["udp", "--json"]));
        if rows.len() >= 4 || std::time::Instant::now() > deadline {
            break rows;
        }
        // No readiness signal tells when tcpdump has written a packet: poll.
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(recording);
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[0]["dst_port"].as_u64(), port.parse().ok());
    assert_eq!(rows[0]["answered_by"], rows[1]["frame"]);
    assert_eq!(rows[1]["reply_to"], rows[0]["frame"]);
    assert_eq!(
        rows[0]["checksum"], "not verified",
        "loopback leaves checksums to offload"
    );
    assert!(rows[0]["preview"]
        .as_str()
        .expect("a preview")
        .contains("ping 1"));
}

/// `follow` and `ladder` of a stream the capture does not have: one line naming the
/// file and the streams it has, exit 2, nothing on stdout.
#[test]
fn a_stream_that_is_not_there_is_a_one_line_error() {
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    for (capture, view, stream, says) in [
        (
            "echo-tcp.pcap",
            "follow",
            "3",
            "has no TCP stream 3 (its only stream is 0)",
        ),
        (
            "echo-tcp.pcap",
            "ladder",
            "1",
            "has no TCP stream 1 (its only stream is 0)",
        ),
        (
            "echo-udp.pcap",
            "follow",
            "0",
            "has no TCP stream 0 (it has no TCP connection)",
        ),
    ] {
        let output = run(
            socklab()
                .arg("analyze")
                .arg(captures.join(capture))
                .args([view, stream]),
            Duration::from_secs(30),
        );
        let line = crate::util::assert_user_error(&output);
        assert!(line.contains(capture) && line.ends_with(says), "{line}");
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    }
}
