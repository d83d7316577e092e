//! `socklab echo`: our clients against real peers (socat), real peers (nc, socat)
//! against our servers, the sticky-packet lesson, timeouts, the load generator and the
//! one-line errors.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::util::{
    assert_user_error, free_tcp_port, free_udp_port, require_tool, run, run_with_input, socklab,
    stdout, wait_for_tcp_listener, wait_for_udp_echo, Peer, Server,
};

const T: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

fn tcp_server(extra: &[&str]) -> Server {
    let mut args = vec!["echo", "server", "--tcp", "--port", "0"];
    args.extend_from_slice(extra);
    Server::start(&args, "TCP echo server listening on")
}

fn udp_server(extra: &[&str]) -> Server {
    let mut args = vec!["echo", "server", "--udp", "--port", "0"];
    args.extend_from_slice(extra);
    Server::start(&args, "UDP echo server listening on")
}

fn reply_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("reply from"))
        .collect()
}

#[test]
fn tcp_client_talks_to_a_socat_echo_server() {
    if !require_tool("socat") {
        return;
    }
    let port = free_tcp_port();
    let _socat = Peer::spawn(Command::new("socat").args([
        &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
        "EXEC:cat",
    ]));
    wait_for_tcp_listener(port, WAIT);
    let out = run(
        socklab()
            .args(["echo", "client", "--tcp", "127.0.0.1", &port.to_string()])
            .args([
                "--count",
                "3",
                "--interval",
                "0",
                "--message",
                "hello {seq}",
            ]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let replies = reply_lines(&text);
    assert_eq!(replies.len(), 3, "{text}");
    assert!(replies[2].ends_with("\"hello 3\""), "{text}");
    assert!(
        text.contains("3 requests sent, 3 replies received, 0% loss"),
        "{text}"
    );
}

#[test]
fn udp_client_talks_to_a_socat_echo_server() {
    if !require_tool("socat") {
        return;
    }
    let port = free_udp_port();
    let _socat = Peer::spawn(
        Command::new("socat").args([&format!("UDP-LISTEN:{port},bind=127.0.0.1,fork"), "PIPE"]),
    );
    wait_for_udp_echo(port, WAIT);
    let out = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &port.to_string()])
            .args(["--count", "4", "--interval", "0"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(reply_lines(&text).len(), 4, "{text}");
    assert!(text.contains("\"ping 4\""), "{text}");
    assert!(text.contains("rtt min/avg/max/mdev = "), "{text}");
}

#[test]
fn nc_and_socat_clients_get_upper_case_from_our_tcp_server() {
    if !require_tool("nc") || !require_tool("socat") {
        return;
    }
    let server = tcp_server(&["--upper"]);
    // netcat-openbsd: -N shuts the socket down for writing at end of input, so our
    // server sees end of stream, closes, and nc exits after printing the echo.
    let out = run_with_input(
        Command::new("nc").args(["-N", "127.0.0.1", &server.port()]),
        "hello world\nsecond line\n",
        T,
    );
    assert_eq!(stdout(&out), "HELLO WORLD\nSECOND LINE\n");
    let out = run_with_input(
        Command::new("socat").args(["-", &format!("TCP:{}", server.addr)]),
        "socat says hi\n",
        T,
    );
    assert_eq!(stdout(&out), "SOCAT SAYS HI\n");
}

#[test]
fn nc_and_socat_clients_get_upper_case_from_our_udp_server() {
    if !require_tool("nc") || !require_tool("socat") {
        return;
    }
    let server = udp_server(&["--upper"]);
    // -w1: nc exits one second after the last datagram, having printed the reply.
    let out = run_with_input(
        Command::new("nc").args(["-u", "-w1", "127.0.0.1", &server.port()]),
        "hello udp\n",
        T,
    );
    assert_eq!(stdout(&out), "HELLO UDP\n");
    let out = run_with_input(
        Command::new("socat").args(["-T", "1", "-", &format!("UDP:{}", server.addr)]),
        "from socat\n",
        T,
    );
    assert_eq!(stdout(&out), "FROM SOCAT\n");
}

#[test]
fn interactive_client_sends_each_stdin_line() {
    let server = tcp_server(&["--upper"]);
    let out = run_with_input(
        socklab().args(["echo", "client", "--tcp", "127.0.0.1", &server.port()]),
        "first\nsecond\n",
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let replies = reply_lines(&text);
    assert_eq!(replies.len(), 2, "{text}");
    assert!(replies[0].ends_with("\"FIRST\""), "{text}");
    assert!(replies[1].contains("seq=2 bytes=7 "), "{text}");
}

#[test]
fn udp_client_with_no_server_reports_total_loss_and_exits_1() {
    let port = free_udp_port();
    let out = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &port.to_string()])
            .args(["--count", "3", "--interval", "0", "--timeout", "150"]),
        T,
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("Request timed out").count(), 3, "{text}");
    assert!(
        text.contains("3 requests sent, 0 replies received, 100% loss"),
        "{text}"
    );
    assert!(
        !text.contains("rtt min"),
        "no rtt line without replies: {text}"
    );
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn framed_burst_arrives_as_exactly_n_messages() {
    let server = tcp_server(&["--framed", "--show-reads", "--read-delay", "50"]);
    let out = run(
        socklab()
            .args(["echo", "client", "--tcp", "127.0.0.1", &server.port()])
            .args(["--burst", "10", "--framed"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let frames = server.wait_for_lines(|l| l.contains(" frame "), 10, WAIT);
    assert_eq!(frames.len(), 10, "{frames:?}");
    for (i, line) in frames.iter().enumerate() {
        let n = i + 1;
        assert!(
            line.ends_with(&format!(
                "frame {n}: {} bytes \"message {n}\"",
                format!("message {n}").len()
            )),
            "{line}"
        );
    }
    let client_frames: Vec<&str> = text.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(client_frames.len(), 10, "{text}");
    assert!(text.contains("in 10 frames for 10 messages"), "{text}");
}

#[test]
fn unframed_burst_with_read_delay_coalesces_into_fewer_reads() {
    let server = tcp_server(&["--show-reads", "--read-delay", "200"]);
    let out = run(
        socklab()
            .args(["echo", "client", "--tcp", "127.0.0.1", &server.port()])
            .args(["--burst", "10"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let total: usize = (1..=10).map(|n| format!("message {n}").len()).sum();
    assert!(
        text.contains(&format!("received {total} of {total} bytes")),
        "{text}"
    );
    // Every byte arrived at the server, in fewer reads than there were messages.
    let reads = server.wait_for_lines(|l| l.contains(" read "), 1, WAIT);
    assert!(!reads.is_empty());
    let counted = |lines: &[String]| -> usize {
        lines
            .iter()
            .map(|l| {
                let after = l.split(": ").nth(1).unwrap();
                after.split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum()
    };
    let mut reads = server
        .lines()
        .into_iter()
        .filter(|l| l.contains(" read "))
        .collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + WAIT;
    while counted(&reads) < total && std::time::Instant::now() < deadline {
        reads = server.wait_for_lines(|l| l.contains(" read "), reads.len() + 1, WAIT);
    }
    assert_eq!(counted(&reads), total, "{reads:?}");
    assert!(reads.len() < 10, "expected coalesced reads, got {reads:?}");
    assert!(reads[0].contains("\"message 1message 2"), "{reads:?}");
}

#[test]
fn udp_burst_keeps_every_datagram_boundary() {
    let server = udp_server(&["--show-reads"]);
    let out = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &server.port()])
            .args(["--burst", "10"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    let datagrams = server.wait_for_lines(|l| l.contains(" datagram "), 10, WAIT);
    assert_eq!(datagrams.len(), 10, "{datagrams:?}");
    for (i, line) in datagrams.iter().enumerate() {
        assert!(line.ends_with(&format!("\"message {}\"", i + 1)), "{line}");
    }
    let client: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("datagram "))
        .collect();
    assert_eq!(client.len(), 10, "{text}");
}

#[test]
fn tcp_server_serves_many_clients_at_once() {
    let server = tcp_server(&[]);
    let addr = server.addr;
    // Open every connection first, so all 50 are live at the same time.
    let mut streams: Vec<TcpStream> = (0..50)
        .map(|_| {
            let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    let handles: Vec<_> = streams
        .drain(..)
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                for round in 0..20 {
                    let message = format!("client {i} round {round}\n");
                    s.write_all(message.as_bytes()).unwrap();
                    let mut reply = vec![0u8; message.len()];
                    s.read_exact(&mut reply).unwrap();
                    assert_eq!(reply, message.as_bytes());
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
}

#[test]
fn udp_server_answers_each_sender_and_survives_odd_datagrams() {
    let server = udp_server(&["--upper"]);
    let sockets: Vec<std::net::UdpSocket> = (0..5)
        .map(|_| {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            s
        })
        .collect();
    // An empty datagram and a maximum-size one are both legal and both echoed.
    let odd: Vec<Vec<u8>> = vec![Vec::new(), vec![b'a'; 65_507], vec![0xff, 0x00, b'x']];
    for payload in &odd {
        sockets[0].send_to(payload, server.addr).unwrap();
        let mut buffer = vec![0u8; 70_000];
        let (n, _) = sockets[0].recv_from(&mut buffer).unwrap();
        assert_eq!(n, payload.len());
        assert_eq!(&buffer[..n], &payload.to_ascii_uppercase()[..]);
    }
    for (i, s) in sockets.iter().enumerate() {
        s.send_to(format!("sender {i}").as_bytes(), server.addr)
            .unwrap();
    }
    for (i, s) in sockets.iter().enumerate() {
        let mut buffer = [0u8; 64];
        let (n, from) = s.recv_from(&mut buffer).unwrap();
        assert_eq!(from, server.addr);
        assert_eq!(&buffer[..n], format!("SENDER {i}").as_bytes());
    }
}

#[test]
fn framed_server_refuses_an_oversized_frame_and_keeps_serving() {
    let server = tcp_server(&["--framed"]);
    let mut hostile = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    hostile.set_read_timeout(Some(WAIT)).unwrap();
    hostile.write_all(&[0xff, 0xff, 0xff, 0xff, b'x']).unwrap();
    let mut buffer = [0u8; 16];
    // The server closes the connection instead of allocating 4 GiB.
    assert_eq!(hostile.read(&mut buffer).unwrap_or(0), 0);
    let out = run(
        socklab()
            .args([
                "echo",
                "client",
                "--tcp",
                "--framed",
                "127.0.0.1",
                &server.port(),
            ])
            .args(["--count", "2", "--interval", "0"]),
        T,
    );
    assert!(out.status.success(), "{}", stdout(&out));
    assert_eq!(reply_lines(&stdout(&out)).len(), 2);
}

#[test]
fn bench_measures_tcp_and_udp_as_json() {
    let tcp = tcp_server(&[]);
    let udp = udp_server(&[]);
    for (flag, server) in [("--tcp", &tcp), ("--udp", &udp)] {
        let out = run(
            socklab()
                .args(["echo", "bench", flag, "127.0.0.1", &server.port()])
                .args([
                    "-c", "4", "-s", "64", "-d", "300ms", "--warmup", "50ms", "--json",
                ]),
            T,
        );
        let text = stdout(&out);
        assert!(out.status.success(), "{text}");
        let report: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(report["connections"], 4);
        assert_eq!(report["errors"], 0);
        assert!(report["round_trips"].as_u64().unwrap() > 10, "{text}");
        let p = &report["latency_us"];
        assert!(p["p50"].as_f64().unwrap() <= p["p99"].as_f64().unwrap());
        assert!(p["p99"].as_f64().unwrap() <= p["max"].as_f64().unwrap());
    }
}

#[test]
fn bench_prints_a_table() {
    let server = tcp_server(&[]);
    let out = run(
        socklab()
            .args(["echo", "bench", "--tcp", "127.0.0.1", &server.port()])
            .args(["-c", "2", "-d", "200ms", "--warmup", "0s"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for header in ["round trips/s", "p50 µs", "p99 µs", "errors"] {
        assert!(text.contains(header), "{text}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes with NO_COLOR: {text}"
    );
}

#[test]
fn server_stops_cleanly_on_ctrl_c() {
    let server = udp_server(&[]);
    let pid = server.pid();
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let line = server.wait_for_line(|l| l == "shutting down", WAIT);
    assert!(line.is_some(), "{:?}", server.lines());
}

#[test]
fn port_in_use_is_a_one_line_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        socklab().args(["echo", "server", "--tcp", "--port", &port]),
        T,
    );
    let line = assert_user_error(&out);
    assert_eq!(
        line,
        format!("socklab: cannot bind 127.0.0.1:{port}: address already in use")
    );
}

#[test]
fn connection_refused_is_a_one_line_error() {
    let port = free_tcp_port().to_string();
    for args in [
        vec![
            "echo",
            "client",
            "--tcp",
            "127.0.0.1",
            &port,
            "--count",
            "1",
        ],
        vec!["echo", "bench", "--tcp", "127.0.0.1", &port, "-d", "100ms"],
    ] {
        let out = run(socklab().args(&args), T);
        let line = assert_user_error(&out);
        assert_eq!(
            line,
            format!("socklab: cannot connect to 127.0.0.1:{port}: connection refused")
        );
    }
}

#[test]
fn unknown_host_is_a_one_line_error() {
    let out = run(
        socklab().args(["echo", "client", "--udp", "no-such-host.invalid", "7"]),
        T,
    );
    let line = assert_user_error(&out);
    assert!(
        line.starts_with("socklab: cannot resolve no-such-host.invalid: "),
        "{line}"
    );
}

#[test]
fn invalid_port_is_a_one_line_error() {
    for bad in ["70000", "0", "echo"] {
        let out = run(
            socklab().args(["echo", "client", "--tcp", "127.0.0.1", bad]),
            T,
        );
        let line = assert_user_error(&out);
        assert!(line.contains(&format!("'{bad}' is not a port")), "{line}");
    }
    let out = run(
        socklab().args(["echo", "server", "--tcp", "--port", "65536"]),
        T,
    );
    assert_user_error(&out);
    let out = run(
        socklab().args(["echo", "server", "--udp", "--bind", "not-an-ip"]),
        T,
    );
    assert_user_error(&out);
}

#[test]
fn binding_an_address_not_on_this_machine_is_a_one_line_error() {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to a real host. Binding is
    // local: no packet is sent.
    let out = run(
        socklab().args([
            "echo",
            "server",
            "--udp",
            "--bind",
            "192.0.2.1",
            "--port",
            "0",
        ]),
        T,
    );
    let line = assert_user_error(&out);
    assert!(
        line.starts_with("socklab: cannot bind 192.0.2.1:0: "),
        "{line}"
    );
}
