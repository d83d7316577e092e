//! `socklab proxy`: seeded loss that repeats, scripted drops, corruption, many clients
//! at once, a large TCP transfer, and bad input (an unreachable upstream, invalid
//! settings, a flood beyond the queue) that must be counted, never crash the proxy.
//!
//! The proxy sits between our clients and a UDP echo server (the real `socklab echo
//! server`, or one in this process); every test seeds it, so a failure can be replayed.

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use socklab::echo::{self, ServerOptions, Transport};
use socklab::output::Reporter;
use socklab::proxy::{self, config::ProxyConfig, RunOptions};

use crate::util::{assert_user_error, free_udp_port, run, socklab, stdout, Server};

const T: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(5);

fn udp_echo() -> Server {
    Server::start(
        &["echo", "server", "--udp", "--port", "0"],
        "UDP echo server listening on",
    )
}

/// A proxy on a free loopback port in front of 127.0.0.1:`upstream_port`.
fn start_proxy(upstream_port: u16, extra: &[&str]) -> Server {
    let upstream = format!("127.0.0.1:{upstream_port}");
    let mut args = vec![
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream.as_str(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args, "proxy listening on")
}

/// A UDP socket talking to `proxy`, with a read timeout.
fn client_of(proxy: SocketAddr, timeout: Duration) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(proxy).unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Sends `count` numbered requests through the proxy at `proxy` and returns the
/// sequence numbers whose echo never came back.
///
/// Waiting for each request in turn would cost a timeout per loss (60 × 100 ms);
/// instead the requests go out back to back and a "fence" datagram follows, resent
/// until its echo returns. Nothing delays or reorders here (only loss is configured,
/// the proxy, the echo server and loopback are all first in, first out), so once the
/// fence's echo is back, every surviving request's echo is back too.
fn lost_requests(proxy: SocketAddr, count: u32) -> BTreeSet<u32> {
    let socket = client_of(proxy, Duration::from_millis(50));
    for seq in 1..=count {
        socket.send(format!("req {seq}").as_bytes()).unwrap();
        // Pacing, not waiting: keeps the burst within the socket buffers of the proxy
        // and the echo server, so only the proxy loses datagrams.
        thread::sleep(Duration::from_micros(100));
    }
    let mut answered = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    let mut buffer = [0u8; 64];
    for fence in 1.. {
        assert!(Instant::now() < deadline, "no fence came back");
        socket.send(format!("fence {fence}").as_bytes()).unwrap();
        loop {
            match socket.recv(&mut buffer) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    if let Some(seq) = text.strip_prefix("req ") {
                        answered.insert(seq.parse::<u32>().unwrap());
                    } else if text.starts_with("fence ") {
                        return (1..=count).filter(|s| !answered.contains(s)).collect();
                    }
                }
                // This fence was lost (it crosses the lossy proxy too): send another.
                Err(error) if is_timeout(&error) => break,
                Err(error) => panic!("receive failed: {error}"),
            }
        }
    }
    unreachable!("the fence loop only ends by returning or panicking")
}

#[test]
fn seeded_loss_is_about_right_and_repeats_exactly() {
    let echo = udp_echo();
    // Requests only (c2s): the replies' decisions would depend on which requests got
    // through, and the point here is that the client's sequence alone fixes the losses.
    let args = ["--loss", "c2s:30%", "--seed", "20240611"];
    let first = {
        let proxy = start_proxy(echo.addr.port(), &args);
        lost_requests(proxy.addr, 200)
    };
    let second = {
        let proxy = start_proxy(echo.addr.port(), &args);
        lost_requests(proxy.addr, 200)
    };
    assert_eq!(first, second, "the same seed must lose the same requests");
    // 200 Bernoulli(0.3) trials: mean 60, standard deviation sqrt(200 × 0.3 × 0.7) ≈ 6.5.
    // The seed fixes the count; ±25 (almost 4 σ) only guards against a model that
    // stopped meaning "30%", not against chance.
    assert!(
        (35..=85).contains(&first.len()),
        "lost {} of 200: {first:?}",
        first.len()
    );
    let third = {
        let proxy = start_proxy(echo.addr.port(), &["--loss", "c2s:30%", "--seed", "7"]);
        lost_requests(proxy.addr, 200)
    };
    assert_ne!(first, third, "another seed should lose other requests");
}

#[test]
fn drop_nth_drops_exactly_that_datagram_and_logs_it() {
    let echo = udp_echo();
    let proxy = start_proxy(
        echo.addr.port(),
        &["--drop-nth", "c2s:3", "--seed", "1", "--log", "-"],
    );
    let out = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &proxy.port()])
            .args(["--count", "5", "--interval", "0", "--timeout", "500"]),
        T,
    );
    let text = stdout(&out);
    // A lost reply is "ran, but a check failed".
    assert_eq!(out.status.code(), Some(1), "{text}");
    let timed_out: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Request timed out"))
        .collect();
    assert_eq!(timed_out, vec!["Request timed out (seq=3)"], "{text}");
    for seq in [1, 2, 4, 5] {
        assert!(
            text.contains(&format!(": seq={seq} ")),
            "no reply {seq}:\n{text}"
        );
    }
    // The JSON log says why.
    let logged = proxy
        .wait_for_line(
            |l| l.starts_with('{') && l.contains(r#""dir":"c2s","index":3,"#),
            WAIT,
        )
        .expect("a log line for the 3rd request");
    assert!(logged.contains(r#""actions":["drop-rule"]"#), "{logged}");
    assert!(logged.contains(r#""delay":null"#), "{logged}");
    let passed = proxy
        .wait_for_line(
            |l| l.starts_with('{') && l.contains(r#""dir":"c2s","index":4,"#),
            WAIT,
        )
        .expect("a log line for the 4th request");
    assert!(passed.contains(r#""actions":[]"#), "{passed}");
}

#[test]
fn corrupt_100_percent_flips_exactly_one_bit_of_every_datagram() {
    let echo = udp_echo();
    // One direction only: corrupting both could flip two bits (or the same one twice).
    let proxy = start_proxy(echo.addr.port(), &["--corrupt", "c2s:100%", "--seed", "5"]);
    let socket = client_of(proxy.addr, WAIT);
    let mut buffer = [0u8; 256];
    for i in 0..50u32 {
        let sent: Vec<u8> = (0..32u32).map(|j| (i * 31 + j * 7) as u8).collect();
        socket.send(&sent).unwrap();
        let n = socket.recv(&mut buffer).expect("the corrupted echo");
        let received = &buffer[..n];
        assert_eq!(received.len(), sent.len(), "datagram {i}");
        let flipped: u32 = sent
            .iter()
            .zip(received)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(flipped, 1, "datagram {i}: sent {sent:?}, got {received:?}");
    }
}

#[test]
fn fifty_concurrent_clients_each_get_only_their_own_replies() {
    let echo = udp_echo();
    // A little jitter so that replies to different clients interleave.
    let proxy = start_proxy(
        echo.addr.port(),
        &["--delay", "1ms", "--jitter", "1ms", "--seed", "9"],
    );
    let addr = proxy.addr;
    let clients: Vec<_> = (0..50)
        .map(|id| {
            thread::spawn(move || {
                let socket = client_of(addr, WAIT);
                let mut buffer = [0u8; 128];
                for k in 0..20 {
                    let message = format!("client {id} message {k}");
                    socket.send(message.as_bytes()).unwrap();
                    let n = socket.recv(&mut buffer).expect("a reply");
                    assert_eq!(
                        String::from_utf8_lossy(&buffer[..n]),
                        message,
                        "client {id} got someone else's reply"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
}

/// The `-v` line saying the proxy relays UDP on its fast path.
const FAST_PATH: &str = "take the fast path";

#[test]
fn without_impairments_fifty_clients_start_on_the_fast_path_and_get_their_own_replies() {
    let echo = udp_echo();
    let mut proxy = start_proxy(echo.addr.port(), &["-v"]);
    assert!(
        proxy.lines().iter().any(|l| l.contains(FAST_PATH)),
        "{:?}",
        proxy.lines()
    );
    let addr = proxy.addr;
    // The first few clients are served by the fast path's threads, the rest after the
    // event loop has taken over, while the first ones are still talking.
    let clients: Vec<_> = (0..50)
        .map(|id| {
            thread::spawn(move || {
                let socket = client_of(addr, WAIT);
                let mut buffer = [0u8; 128];
                for k in 0..20 {
                    let message = format!("client {id} message {k}");
                    socket.send(message.as_bytes()).unwrap();
                    let n = socket.recv(&mut buffer).expect("a reply");
                    assert_eq!(
                        String::from_utf8_lossy(&buffer[..n]),
                        message,
                        "client {id} got someone else's reply"
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    proxy
        .wait_for_line(|l| l.contains("the event loop takes over"), WAIT)
        .expect("the hand-over is said with -v");
    assert!(proxy.interrupt(WAIT).success());
    let mapped = proxy
        .wait_for_line(|l| l.starts_with("udp clients:"), WAIT)
        .expect("the summary");
    assert!(mapped.starts_with("udp clients: 50 mapped, "), "{mapped}");
    let forwarded = proxy
        .wait_for_line(|l| l.contains("forwarded") && !l.contains("bytes"), WAIT)
        .expect("the forwarded row");
    assert_eq!(forwarded.matches(" 1000 ").count(), 2, "{forwarded}");
}

#[test]
fn an_impairment_or_a_log_keeps_the_event_loop() {
    let echo = udp_echo();
    for extra in [&["--delay", "1ms"][..], &["--log", "-"][..]] {
        let proxy = start_proxy(echo.addr.port(), &[&["-v"][..], extra].concat());
        let lines = proxy.lines();
        assert!(
            !lines.iter().any(|l| l.contains(FAST_PATH)),
            "{extra:?}: {lines:?}"
        );
        let socket = client_of(proxy.addr, WAIT);
        socket.send(b"hello").unwrap();
        let mut buffer = [0u8; 16];
        let n = socket.recv(&mut buffer).expect("a reply");
        assert_eq!(&buffer[..n], b"hello");
    }
}

/// A deterministic pseudo-random byte stream (xorshift64), so a failing transfer can be
/// compared byte for byte run after run.
fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn ten_megabytes_over_tcp_arrive_byte_identical_with_half_close() {
    // A TCP echo upstream in this process: echoes until the client's FIN, then closes.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let echo = thread::spawn(move || {
        let (mut stream, _) = upstream.accept().unwrap();
        stream.set_read_timeout(Some(T)).unwrap();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = stream.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            stream.write_all(&buffer[..n]).unwrap();
        }
    });
    let mut proxy = start_proxy(upstream_port, &[]);
    let payload = pseudo_random_bytes(10 * 1024 * 1024, 0x50C1AB);
    let stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let to_send = payload.clone();
    let sender = thread::spawn(move || {
        writer.write_all(&to_send).unwrap();
        // Half-close: the proxy must pass the FIN on and keep relaying the echo.
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut received = Vec::with_capacity(payload.len());
    (&stream).read_to_end(&mut received).unwrap();
    sender.join().unwrap();
    echo.join().unwrap();
    assert_eq!(received.len(), payload.len());
    assert!(received == payload, "the echoed bytes differ");

    assert!(proxy.interrupt(WAIT).success());
    let line = proxy
        .wait_for_line(|l| l.starts_with("tcp connections:"), WAIT)
        .expect("the summary");
    assert!(line.contains("1 relayed, 0 refused"), "{line}");
    let bytes = proxy
        .wait_for_line(|l| l.contains("tcp bytes"), WAIT)
        .expect("the tcp bytes row");
    assert_eq!(bytes.matches("10485760").count(), 2, "{bytes}");
}

#[test]
fn an_unreachable_upstream_is_counted_and_the_proxy_stays_up() {
    // Nothing listens on this port, UDP or (almost surely) TCP.
    let port = free_udp_port();
    let mut proxy = start_proxy(port, &["-v", "--seed", "3"]);
    let socket = client_of(proxy.addr, Duration::from_millis(100));
    for _ in 0..3 {
        socket.send(b"anyone there?").unwrap();
    }
    proxy
        .wait_for_line(|l| l.contains("unreachable"), WAIT)
        .expect("the proxy notices the ICMP port unreachable");
    // The TCP side: the upstream refuses, so the client's connection is reset/closed.
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => {}
        Ok(_) => panic!("data from a refused upstream"),
        Err(error) => assert!(!is_timeout(&error), "the connection was left open"),
    }
    assert!(proxy.is_running());
    assert!(proxy.interrupt(WAIT).success(), "a clean exit on Ctrl-C");
    let udp = proxy
        .wait_for_line(|l| l.starts_with("udp clients:"), WAIT)
        .expect("the summary");
    let times: u64 = udp
        .split("unreachable ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {udp:?}"));
    assert!(times >= 1, "{udp}");
    let tcp = proxy
        .wait_for_line(|l| l.starts_with("tcp connections:"), WAIT)
        .expect("the summary");
    assert!(tcp.contains("1 refused"), "{tcp}");
}

#[test]
fn flags_override_the_config_file() {
    let echo = udp_echo();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:0\nupstream: 127.0.0.1:{}\nseed: 4\nboth:\n  loss: 100%\n",
        echo.addr.port()
    );
    std::fs::write(&path, yaml).unwrap();
    // The file loses everything; the flag, applied after it, loses nothing.
    let proxy = Server::start(
        &["proxy", "--config", path.to_str().unwrap(), "--loss", "0%"],
        "proxy listening on",
    );
    let out = run(
        socklab()
            .args(["echo", "client", "--udp", "127.0.0.1", &proxy.port()])
            .args(["--count", "3", "--interval", "0", "--timeout", "2000"]),
        T,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("3 replies received"), "{text}");
}

#[test]
fn invalid_settings_are_one_line_errors() {
    let proxy = |extra: &[&str]| {
        run(
            socklab()
                .args([
                    "proxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--upstream",
                    "127.0.0.1:9",
                ])
                .args(extra),
            T,
        )
    };
    for (extra, named) in [
        (&["--loss", "150%"][..], "150%"),
        (&["--delay", "-5ms"][..], "-5ms"),
        (&["--corrupt", "sideways:5%"][..], "sideways"),
    ] {
        let line = assert_user_error(&proxy(extra));
        assert!(line.contains(named), "{extra:?}: {line}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, "upstream: 127.0.0.1:9\nlosss: 5%\n").unwrap();
    let line = assert_user_error(&proxy(&["--config", path.to_str().unwrap()]));
    assert!(line.contains("losss"), "{line}");

    let missing = dir.path().join("missing.yaml");
    let line = assert_user_error(&proxy(&["--config", missing.to_str().unwrap()]));
    assert!(line.contains("missing.yaml"), "{line}");

    let out = run(socklab().args(["proxy", "--upstream", "127.0.0.1:9"]), T);
    assert!(assert_user_error(&out).contains("--listen"));
}

/// In-process, through the library entry point: a flood far beyond `--rate 1mbit
/// --queue 10` is dropped and counted as queue drops, and the proxy forwards again
/// once it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_queue_is_counted_and_the_proxy_recovers() {
    let echo_socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo_socket.local_addr().unwrap();
    let echo_options = ServerOptions {
        transport: Transport::Udp,
        ..ServerOptions::default()
    };
    let echo_server = tokio::spawn(echo::serve_udp(
        echo_socket,
        echo_options,
        Reporter::silent(),
        std::future::pending(),
    ));

    let mut config = ProxyConfig::default();
    let upstream = echo_addr.to_string();
    for (key, value) in [
        ("upstream", upstream.as_str()),
        ("rate", "1mbit"),
        ("queue", "10"),
        ("seed", "11"),
    ] {
        config.apply(key, value).unwrap();
    }
    let sockets = proxy::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = sockets.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = RunOptions {
        reporter: Reporter::silent(),
        log: None,
        stats_interval: None,
    };
    let running = tokio::spawn(proxy::run(config, sockets, options, async {
        let _ = stopped.await;
    }));

    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(addr).await.unwrap();
    // 100 bytes take 0.8 ms at 1 Mbit/s: 10,000 of them would need 8 s; the queue
    // holds 10.
    let flood = [0x55u8; 100];
    for _ in 0..10_000 {
        client.send(&flood).await.unwrap();
    }
    // Then a ping must get through again (the first few may still meet the tail of
    // the flood in the queue); late echoes of the flood are skipped.
    let mut buffer = [0u8; 256];
    let mut answered = false;
    'attempts: for attempt in 0..50 {
        let ping = format!("ping {attempt}");
        client.send(ping.as_bytes()).await.unwrap();
        while let Ok(received) =
            tokio::time::timeout(Duration::from_millis(100), client.recv(&mut buffer)).await
        {
            if received.is_ok_and(|n| buffer[..n] == *ping.as_bytes()) {
                answered = true;
                break 'attempts;
            }
        }
    }
    assert!(answered, "the proxy did not forward after the flood");

    let _ = stop.send(());
    let summary = tokio::time::timeout(WAIT, running)
        .await
        .expect("the proxy stops on shutdown")
        .expect("the proxy task did not panic")
        .expect("the proxy ran without error");
    echo_server.abort();
    let c2s = summary.c2s;
    assert!(c2s.dropped_queue > 0, "{c2s:?}");
    assert!(c2s.received > c2s.dropped_queue, "{c2s:?}");
    assert!(c2s.received <= 10_050, "{c2s:?}");
    assert!(c2s.forwarded >= 1, "{c2s:?}");
    assert_eq!(c2s.dropped_loss + c2s.dropped_rule, 0, "{c2s:?}");
}
