//! `socklab capture` on `lo` (we run as root in the lab VM and CI): the lines it prints
//! for datagrams we send, the pcap file it writes (read back by tshark and by our own
//! reader), and its one-line errors.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use socklab::capture::dissect::dissect;
use socklab::capture::packet::Transport;
use socklab::capture::reader;

use crate::util::{assert_user_error, require_tool, run, socklab, stderr, stdout, READY_TIMEOUT};

/// How long a capture of a few datagrams may take once they are sent.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams each test sends.
const COUNT: usize = 3;

/// A capture started in the background, with its stderr lines arriving on a channel.
struct Running {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stdout: thread::JoinHandle<Vec<u8>>,
}

/// Starts `socklab capture ARGS` and waits for its "capturing on lo" line.
fn start_capture(args: &[&str]) -> Running {
    let mut child = socklab()
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn socklab capture");
    let mut out = child.stdout.take().expect("stdout is piped");
    let stdout = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let (tx, stderr_lines) = mpsc::channel();
    let err = child.stderr.take().expect("stderr is piped");
    thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running {
        child,
        stderr_lines,
        stdout,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match running.stderr_lines.recv_timeout(left) {
            Ok(line) if line.starts_with("capturing on lo") => return running,
            Ok(_) => {}
            Err(_) => panic!("socklab capture {args:?} printed no 'capturing on lo' line"),
        }
    }
}

impl Running {
    /// Waits for the capture to exit by itself; returns its output (stderr after the
    /// readiness line).
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for socklab capture") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("socklab capture did not finish within {FINISH_TIMEOUT:?}");
            }
            // A child's exit cannot be awaited with a timeout in std: poll it.
            thread::sleep(Duration::from_millis(5));
        };
        let stdout = self.stdout.join().expect("stdout reader");
        let mut stderr = String::new();
        while let Ok(line) = self.stderr_lines.recv_timeout(Duration::from_secs(2)) {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        Output {
            status,
            stdout,
            stderr: stderr.into_bytes(),
        }
    }
}

/// A receiver on a free port (so no ICMP "port unreachable" comes back) and a sender;
/// sends `COUNT` datagrams "hello" and returns the sender's port.
fn send_datagrams(receiver: &UdpSocket) -> u16 {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..COUNT {
        sender
            .send_to(b"hello", receiver.local_addr().unwrap())
            .unwrap();
    }
    sender.local_addr().unwrap().port()
}

#[test]
fn capture_prints_a_line_per_datagram() {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let filter = format!("udp port {port}");
    let running = start_capture(&["-i", "lo", "-c", &COUNT.to_string(), "-f", &filter]);
    let sender_port = send_datagrams(&receiver);
    let output = running.finish();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), COUNT, "{text}");
    let expected = format!(" IP 127.0.0.1.{sender_port} > 127.0.0.1.{port}: UDP, length 5");
    for line in &lines {
        // "HH:MM:SS.micros" then the packet.
        let (time, rest) = line.split_at(15);
        assert_eq!(time.len(), 15);
        assert_eq!(&time[2..3], ":", "{line}");
        assert_eq!(&time[8..9], ".", "{line}");
        assert_eq!(rest, expected);
    }
    assert!(
        stderr(&output).contains(&format!("{COUNT} packets captured")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn capture_writes_a_pcap_file_tshark_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("udp.pcap");
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let filter = format!("udp port {port}");
    let running = start_capture(&[
        "-i",
        "lo",
        "-c",
        &COUNT.to_string(),
        "-f",
        &filter,
        "-w",
        path.to_str().unwrap(),
    ]);
    send_datagrams(&receiver);
    let output = running.finish();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "", "with -w nothing goes to stdout");
    assert!(
        stderr(&output).contains(&format!("{COUNT} packets written to {}", path.display())),
        "{}",
        stderr(&output)
    );

    // Our own reader and dissector see the datagrams.
    let mut file = reader::open(&path, None).unwrap();
    let link = file.link_type();
    let mut payloads = Vec::new();
    while let Some(frame) = file.next_frame().unwrap() {
        match dissect(link, &frame).transport {
            Transport::Udp(datagram) => payloads.push(datagram.payload.to_vec()),
            other => panic!("expected UDP, got {other:?}"),
        }
    }
    assert_eq!(payloads, vec![b"hello".to_vec(); COUNT]);

    if require_tool("tshark") {
        let output = run(
            std::process::Command::new("tshark")
                .arg("-r")
                .arg(&path)
                .env("LC_ALL", "C"),
            FINISH_TIMEOUT,
        );
        assert!(output.status.success(), "tshark: {}", stderr(&output));
        assert_eq!(
            stdout(&output).lines().count(),
            COUNT,
            "{}",
            stdout(&output)
        );
    }
}

#[test]
fn an_unknown_interface_is_one_line() {
    let output = run(
        socklab().args(["capture", "-i", "nosuch0", "-c", "1"]),
        FINISH_TIMEOUT,
    );
    let line = assert_user_error(&output);
    assert_eq!(
        line,
        "socklab: cannot capture on nosuch0: no such interface"
    );
}

#[test]
fn a_bad_filter_is_one_line() {
    let output = run(
        socklab().args(["capture", "-i", "lo", "-c", "1", "-f", "udp prt 5"]),
        FINISH_TIMEOUT,
    );
    let line = assert_user_error(&output);
    assert!(
        line.starts_with("socklab: bad filter 'udp prt 5': "),
        "{line}"
    );
}

#[test]
fn duration_ends_a_quiet_capture() {
    // A filter nothing matches: only the watchdog can end this capture.
    let started = Instant::now();
    let output = run(
        socklab().args([
            "capture",
            "-i",
            "lo",
            "--duration",
            "300ms",
            "-f",
            "udp port 9 and host 127.0.0.254",
        ]),
        FINISH_TIMEOUT,
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        stderr(&output).contains("0 packets captured"),
        "{}",
        stderr(&output)
    );
}
