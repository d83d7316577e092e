//! `socklab analyze`, checked against tshark 4.0 on the same files: hand-made captures
//! of every TCP analysis case (tests/integration/scenarios.rs writes them with real
//! checksums) and a real loopback recording of a 400 kB transfer through random packet
//! loss (tests/data/lossy-transfer.pcap; made in a network namespace whose loopback
//! dropped 6% of data and 4% of ACKs with nftables, recorded by tcpdump -s 96, so only
//! headers are kept).
//!
//! Deliberate differences from tshark: none in the fields compared here. tshark's
//! `-z conv,tcp` prints bytes rounded to kB, so byte counts are compared with the sum
//! of `frame.len` per stream and direction, which is what conv adds up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::scenarios;
use crate::util::{assert_user_error, require_tool, run, socklab, stderr, stdout};

const TIMEOUT: Duration = Duration::from_secs(30);

fn data_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The hand-made capture of every case, in a temporary directory.
fn cases_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("cases.pcap");
    scenarios::write_scenario(&path, &scenarios::all_cases());
    path
}

fn analyze_json(file: &Path, args: &[&str]) -> Vec<Value> {
    let output = run(socklab().arg("analyze").arg(file).args(args), TIMEOUT);
    assert!(
        output.status.success(),
        "socklab failed: {}",
        stderr(&output)
    );
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// tshark's values of `fields` for every TCP frame, as strings ("" when absent).
fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut command = Command::new("tshark");
    command
        .arg("-r")
        .arg(file)
        .args(["-Y", "tcp", "-T", "fields", "-E", "separator=|"]);
    for field in fields {
        command.args(["-e", field]);
    }
    let output = run(&mut command, TIMEOUT);
    assert!(
        output.status.success(),
        "tshark failed: {}",
        stderr(&output)
    );
    stdout(&output)
        .lines()
        .map(|line| line.split('|').map(str::to_string).collect())
        .collect()
}

/// Frames tshark marks with `field` (e.g. `tcp.analysis.retransmission`).
fn tshark_frames_with(file: &Path, field: &str) -> BTreeSet<u64> {
    tshark_fields(file, &["frame.number", field])
        .into_iter()
        .filter(|row| !row[1].is_empty())
        .map(|row| row[0].parse().expect("a frame number"))
        .collect()
}

/// Frames socklab marks with `mark`.
fn socklab_frames_with(rows: &[Value], mark: &str) -> BTreeSet<u64> {
    rows.iter()
        .filter(|row| {
            row["marks"]
                .as_array()
                .is_some_and(|marks| marks.iter().any(|m| m == mark))
        })
        .map(|row| row["frame"].as_u64().expect("frame"))
        .collect()
}

fn segment_rows(rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .filter(|row| row.get("row").is_none())
        .collect()
}

/// The analysis marks and acks_frame of every frame agree with tshark.
fn check_marks_against_tshark(file: &Path, expect_marks: &[&str]) {
    let rows = segment_rows(analyze_json(file, &["tcp", "--json"]));
    let pairs = [
        ("tcp.analysis.retransmission", "retransmission"),
        ("tcp.analysis.fast_retransmission", "fast retransmission"),
        (
            "tcp.analysis.spurious_retransmission",
            "spurious retransmission",
        ),
        ("tcp.analysis.out_of_order", "out-of-order"),
        ("tcp.analysis.duplicate_ack", "duplicate ack"),
        ("tcp.analysis.lost_segment", "previous segment not captured"),
        ("tcp.analysis.ack_lost_segment", "ACKed unseen segment"),
        ("tcp.analysis.zero_window", "zero window"),
        ("tcp.analysis.zero_window_probe", "zero window probe"),
        ("tcp.analysis.window_update", "window update"),
        ("tcp.analysis.window_full", "window full"),
        ("tcp.analysis.keep_alive", "keep-alive"),
        ("tcp.analysis.keep_alive_ack", "keep-alive ack"),
    ];
    for (field, mark) in pairs {
        let theirs = tshark_frames_with(file, field);
        let ours = socklab_frames_with(&rows, mark);
        assert_eq!(ours, theirs, "{mark}: socklab vs tshark ({field})");
        if expect_marks.contains(&mark) {
            assert!(!ours.is_empty(), "the capture should show a {mark}");
        }
    }
    // Per frame: stream, relative seq/ack, the frame acknowledged, dup-ack numbers.
    let fields = [
        "frame.number",
        "tcp.stream",
        "tcp.seq",
        "tcp.ack",
        "tcp.flags.ack",
        "tcp.analysis.acks_frame",
        "tcp.analysis.duplicate_ack_num",
        "tcp.analysis.duplicate_ack_frame",
        "tcp.window_size",
    ];
    let theirs = tshark_fields(file, &fields);
    assert_eq!(theirs.len(), rows.len(), "one socklab row per TCP frame");
    let number = |s: &str| (!s.is_empty()).then(|| s.parse::<u64>().expect("a number"));
    for (t, ours) in theirs.iter().zip(&rows) {
        let frame = number(&t[0]);
        assert_eq!(ours["frame"].as_u64(), frame);
        let ack = if t[4] == "1" || t[4] == "True" {
            number(&t[3])
        } else {
            None
        };
        let expected = (
            number(&t[1]),
            number(&t[2]),
            ack,
            number(&t[5]),
            number(&t[6]),
            number(&t[7]),
            number(&t[8]),
        );
        let got = (
            ours["stream"].as_u64(),
            ours["seq"].as_u64(),
            ours["ack"].as_u64(),
            ours["acks_frame"].as_u64(),
            ours["duplicate_ack_num"].as_u64(),
            ours["duplicate_ack_of"].as_u64(),
            ours["window_scaled"].as_u64(),
        );
        assert_eq!(got, expected, "frame {frame:?}: (stream, seq, ack, acks_frame, dup#, dup of, window) socklab vs tshark");
    }
}

#[test]
fn analysis_marks_agree_with_tshark_on_every_hand_made_case() {
    if !require_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = cases_file(&dir);
    check_marks_against_tshark(
        &file,
        &[
            "retransmission",
            "fast retransmission",
            "spurious retransmission",
            "out-of-order",
            "duplicate ack",
            "previous segment not captured",
            "zero window",
            "zero window probe",
            "window update",
            "keep-alive",
            "keep-alive ack",
        ],
    );
}

#[test]
fn analysis_marks_agree_with_tshark_on_a_real_lossy_transfer() {
    if !require_tool("tshark") {
        return;
    }
    check_marks_against_tshark(
        &data_file("lossy-transfer.pcap"),
        &[
            "retransmission",
            "out-of-order",
            "duplicate ack",
            "window update",
        ],
    );
}

/// Per stream and direction: (frames, bytes) the way `tshark -z conv,tcp` counts.
fn tshark_conversations(file: &Path) -> BTreeMap<(u64, String), (u64, u64)> {
    let mut counts = BTreeMap::new();
    for row in tshark_fields(file, &["tcp.stream", "ip.src", "tcp.srcport", "frame.len"]) {
        let key = (row[0].parse().unwrap(), format!("{}:{}", row[1], row[2]));
        let entry = counts.entry(key).or_insert((0, 0));
        entry.0 += 1;
        entry.1 += row[3].parse::<u64>().unwrap();
    }
    counts
}

#[test]
fn flow_packet_and_byte_counts_agree_with_tshark() {
    if !require_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for file in [cases_file(&dir), data_file("lossy-transfer.pcap")] {
        let theirs = tshark_conversations(&file);
        let flows = analyze_json(&file, &["flows", "--json"]);
        let mut ours = BTreeMap::new();
        for flow in flows.iter().filter(|f| f["protocol"] == "tcp") {
            let stream = flow["stream"].as_u64().unwrap();
            let client = flow["client"].as_str().unwrap().to_string();
            let server = flow["server"].as_str().unwrap().to_string();
            let c2s = (
                flow["packets_c2s"].as_u64().unwrap(),
                flow["bytes_c2s"].as_u64().unwrap(),
            );
            let s2c = (
                flow["packets_s2c"].as_u64().unwrap(),
                flow["bytes_s2c"].as_u64().unwrap(),
            );
            if c2s.0 > 0 {
                ours.insert((stream, client), c2s);
            }
            if s2c.0 > 0 {
                ours.insert((stream, server), s2c);
            }
        }
        assert_eq!(
            ours,
            theirs,
            "{}: per-stream frames and bytes",
            file.display()
        );

        // The frame totals also match the conv table's "Total Frames" column.
        let conv = run(
            Command::new("tshark")
                .arg("-r")
                .arg(&file)
                .args(["-q", "-z", "conv,tcp"]),
            TIMEOUT,
        );
        let conv_frames: u64 = stdout(&conv)
            .lines()
            .filter(|line| line.contains("<->"))
            .map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                // address <-> address, frames, bytes, unit, frames, bytes, unit, TOTAL...
                words[9].parse::<u64>().expect("total frames column")
            })
            .sum();
        let our_frames: u64 = ours.values().map(|(frames, _)| frames).sum();
        assert_eq!(our_frames, conv_frames, "{}", file.display());
    }
}

#[test]
fn handshake_seq_and_ack_agree_with_tshark() {
    if !require_tool("tshark") {
        return;
    }
    let file = data_file("lossy-transfer.pcap");
    let handshakes = analyze_json(&file, &["handshakes", "--json"]);
    let h = &handshakes[0];
    let raw = tshark_fields(
        &file,
        &["frame.number", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags"],
    );
    let by_frame = |frame: &Value| {
        let n = frame.as_u64().unwrap().to_string();
        raw.iter()
            .find(|row| row[0] == n)
            .cloned()
            .expect("frame in tshark's output")
    };
    for (step, flags) in [("syn", "0x0002"), ("syn_ack", "0x0012"), ("ack", "0x0010")] {
        let ours = &h[step];
        let theirs = by_frame(&ours["frame"]);
        assert_eq!(
            ours["seq_raw"].as_u64().unwrap().to_string(),
            theirs[1],
            "{step} seq"
        );
        if step != "syn" {
            assert_eq!(
                ours["ack_raw"].as_u64().unwrap().to_string(),
                theirs[2],
                "{step} ack"
            );
        }
        assert_eq!(theirs[3], flags, "{step} flags");
    }
    assert_eq!(h["syn_ack_acks_isn_plus_1"], true);
    assert_eq!(h["ack_acks_isn_plus_1"], true);
    assert_eq!(h["syn"]["options"]["sack_permitted"], true);
    // tshark's initial RTT for the stream.
    let initial = tshark_fields(&file, &["tcp.analysis.initial_rtt"]);
    let theirs: f64 = initial.iter().find(|r| !r[0].is_empty()).unwrap()[0]
        .parse()
        .unwrap();
    let ours = h["initial_rtt_ms"].as_f64().unwrap() / 1e3;
    assert!(
        (ours - theirs).abs() < 1e-6,
        "initial RTT {ours} vs tshark {theirs}"
    );
}

#[test]
fn ack_rtt_agrees_with_tshark_and_estimator_follows_kurose_ross() {
    if !require_tool("tshark") {
        return;
    }
    let file = data_file("lossy-transfer.pcap");
    let rows = segment_rows(analyze_json(&file, &["tcp", "0", "--json"]));
    let theirs = tshark_fields(&file, &["frame.number", "tcp.analysis.ack_rtt"]);
    let mut samples = 0;
    let mut estimated: Option<f64> = None;
    for (row, t) in rows.iter().zip(&theirs) {
        if let Some(rtt) = row["ack_rtt_ms"].as_f64() {
            let tshark: f64 = t[1].parse().expect("tshark has an ack_rtt too");
            assert!((rtt / 1e3 - tshark).abs() < 1e-6, "frame {}", t[0]);
        }
        if let Some(sample) = row["sample_rtt_ms"].as_f64() {
            samples += 1;
            let expected = match estimated {
                None => sample,
                Some(old) => 0.875 * old + 0.125 * sample,
            };
            let est = row["estimated_rtt_ms"].as_f64().unwrap();
            assert!(
                (est - expected).abs() < 1e-9,
                "EstimatedRTT at frame {}",
                t[0]
            );
            estimated = Some(est);
            assert!(!row["marks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "retransmission"));
        }
    }
    assert!(
        samples > 10,
        "the transfer gives many RTT samples, got {samples}"
    );
}

#[test]
fn summary_and_flows_describe_the_cases() {
    let dir = tempfile::tempdir().unwrap();
    let file = cases_file(&dir);
    let flows = analyze_json(&file, &["flows", "--json"]);
    let states: Vec<&str> = flows
        .iter()
        .map(|f| f["conn_state"].as_str().unwrap())
        .collect();
    // Case 1 closes four-way, 2 three-way, 7 is rejected; the others stay open.
    assert_eq!(states, ["SF", "SF", "S1", "S1", "S1", "S1", "REJ", "S1"]);
    assert_eq!(flows[0]["history"], "ShADadFf");
    assert_eq!(flows[1]["retransmissions"], 1);

    let summary = analyze_json(&file, &["summary", "--json"]);
    assert_eq!(summary[0]["tcp_connections"], 8);
    let event = |name: &str| summary.iter().find(|r| r["event"] == name).unwrap().clone();
    assert_eq!(event("resets")["count"], 1);
    assert!(event("retransmissions")["count"].as_u64().unwrap() >= 4);

    let output = run(
        socklab()
            .arg("analyze")
            .arg(&file)
            .args(["handshakes", "--explain"]),
        TIMEOUT,
    );
    let text = stdout(&output);
    assert!(text.contains("ack = ISN+1: ok"), "{text}");
    assert!(
        text.contains("three-way") && text.contains("four-way") && text.contains("reset"),
        "{text}"
    );
    assert!(text.contains("Notes:"), "{text}");
}

#[test]
fn truncated_file_shows_what_was_read_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let file = cases_file(&dir);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 10);
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, bytes).unwrap();
    let output = run(
        socklab()
            .arg("analyze")
            .arg(&cut)
            .args(["summary", "--json"]),
        TIMEOUT,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.starts_with("socklab: warning:") && err.contains("truncated"),
        "{err}"
    );
    let first: Value = serde_json::from_str(stdout(&output).lines().next().unwrap()).unwrap();
    let all = scenarios::all_cases().len() as u64;
    assert_eq!(
        first["frames"].as_u64(),
        Some(all - 1),
        "every frame but the cut one"
    );
}

#[test]
fn user_errors_are_one_line() {
    let line = assert_user_error(&run(
        socklab().args(["analyze", "/nonexistent/x.pcap"]),
        TIMEOUT,
    ));
    assert!(line.contains("/nonexistent/x.pcap"), "{line}");
    // follow needs a STREAM: clap's usage error, one line.
    let line = assert_user_error(&run(
        socklab().args(["analyze", "x.pcap", "follow"]),
        TIMEOUT,
    ));
    assert!(line.contains("required"), "{line}");
    let dir = tempfile::tempdir().unwrap();
    let file = cases_file(&dir);
    let line = assert_user_error(&run(
        socklab()
            .arg("analyze")
            .arg(&file)
            .args(["-f", "tcp port banana"]),
        TIMEOUT,
    ));
    assert!(line.contains("banana"), "{line}");
    // Output to a full disk: one line naming the failure, exit 2, no hang (the staged
    // reading stops its threads).
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let mut child = socklab()
        .arg("analyze")
        .arg(data_file("lossy-transfer.pcap"))
        .args(["tcp", "--json"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn socklab");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while child.try_wait().expect("wait for socklab").is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!("socklab analyze hung writing to a full disk");
        }
        std::thread::sleep(Duration::from_millis(20)); // no readiness signal for an exit
    }
    let line = assert_user_error(&child.wait_with_output().expect("collect the output"));
    assert_eq!(
        line,
        "socklab: cannot write the analysis: no space left on device"
    );
}

#[test]
fn filter_keeps_only_matching_flows() {
    let dir = tempfile::tempdir().unwrap();
    let file = cases_file(&dir);
    let flows = analyze_json(&file, &["flows", "--json", "-f", "tcp port 40003"]);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["client"], "127.0.0.1:40003");
}

#[test]
fn udp_request_and_reply_show_in_flows_and_the_udp_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("udp.pcap");
    let datagram = |from_client: bool, payload: &[u8]| {
        let (src, dst, sport, dport) = if from_client {
            (scenarios::CLIENT_IP, scenarios::SERVER_IP, 50_000, 12_000)
        } else {
            (scenarios::SERVER_IP, scenarios::CLIENT_IP, 12_000, 50_000)
        };
        let mut bytes = Vec::new();
        etherparse::PacketBuilder::ethernet2([0; 6], [0; 6])
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut bytes, payload)
            .unwrap();
        bytes
    };
    scenarios::write_pcap(
        &path,
        &[
            (0, datagram(true, b"ping 1")),
            (250, datagram(false, b"PING 1")),
        ],
    );
    let flows = analyze_json(&path, &["flows", "--json"]);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0]["protocol"], "udp");
    assert_eq!(flows[0]["conn_state"], "SF");
    assert_eq!(flows[0]["history"], "Dd");
    assert_eq!(flows[0]["bytes_c2s"], 14 + 20 + 8 + 6);
    let rows = analyze_json(&path, &["udp", "--json"]);
    assert_eq!(rows.len(), 2, "one JSON object per datagram");
}
