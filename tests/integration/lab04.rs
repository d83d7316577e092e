//! The answers `labs/04-capture.md` quotes, checked against `socklab analyze` on the
//! sample captures: the handout promises that the Kurose & Ross TCP and UDP lab
//! questions are answered from socklab's output alone, and this keeps it honest. Each
//! test names the questions it covers; a re-recorded capture fails here until the
//! handout is updated with its numbers.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::{run, socklab, stderr, stdout};

/// `socklab analyze captures/CAPTURE ARGS --json`, one JSON value per line.
fn rows(capture: &str, args: &[&str]) -> Vec<Value> {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(capture);
    let output = run(
        socklab().arg("analyze").arg(&file).args(args).arg("--json"),
        Duration::from_secs(30),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

/// The row of the tcp view for `frame`.
fn segment(rows: &[Value], frame: u64) -> &Value {
    rows.iter()
        .find(|row| row["frame"] == frame)
        .unwrap_or_else(|| panic!("no row for frame {frame}"))
}

/// The handout's text, to check that it quotes what the tests check.
fn handout() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/04-capture.md");
    std::fs::read_to_string(path).expect("read the lab handout")
}

#[test]
fn q2_to_q5_the_handshake_of_tcp_bulk() {
    let handshakes = rows("captures/tcp-bulk.pcap", &["handshakes"]);
    let h = &handshakes[0];
    assert_eq!(h["client"], "127.0.0.1:52744");
    assert_eq!(h["server"], "127.0.0.1:12001");
    assert_eq!(h["syn"]["frame"], 1);
    assert_eq!(h["syn"]["seq_raw"], 3_247_563_202u64);
    assert_eq!(h["syn"]["flags"], "0x002");
    assert_eq!(h["syn_ack"]["frame"], 2);
    assert_eq!(h["syn_ack"]["seq_raw"], 2_859_557_570u64);
    assert_eq!(h["syn_ack"]["ack_raw"], 3_247_563_203u64);
    assert_eq!(h["syn_ack"]["flags"], "0x012");
    assert_eq!(h["ack"]["ack_raw"], 2_859_557_571u64);
    assert_eq!(h["ack"]["flags"], "0x010");
    assert_eq!(h["syn_ack_acks_isn_plus_1"], true);
    for side in ["syn", "syn_ack"] {
        assert_eq!(h[side]["options"]["sack_permitted"], true, "{side}");
        assert_eq!(h[side]["options"]["mss"], 65495, "{side}");
        assert_eq!(h[side]["options"]["window_scale"], 10, "{side}");
    }
    let text = handout();
    for quoted in [
        "127.0.0.1:52744",
        "3247563202",
        "2859557570",
        "3247563203",
        "2859557571",
    ] {
        assert!(text.contains(quoted), "the handout quotes {quoted}");
    }
}

#[test]
fn q6_to_q8_and_q11_the_first_segments_their_acks_and_rtts() {
    let tcp = rows("captures/tcp-bulk.pcap", &["tcp"]);
    // (frame, relative seq, length, time sent) of the first six data segments.
    let first_six = [
        (4, 1, 154, 0.004432),
        (8, 155, 1250, 0.019552),
        (9, 1405, 1250, 0.030727),
        (11, 2655, 1250, 0.042074),
        (12, 3905, 1250, 0.053402),
        (14, 5155, 1250, 0.064764),
    ];
    for (frame, seq, len, time) in first_six {
        let row = segment(&tcp, frame);
        assert_eq!(row["direction"], "c2s", "frame {frame}");
        assert_eq!(row["seq"], seq, "frame {frame}");
        assert_eq!(row["len"], len, "frame {frame}");
        assert_eq!(row["time_s"], time, "frame {frame}");
        assert_eq!(row["header_len"], 32, "frame {frame}");
    }
    // (ACK frame, ack, the frame it names, SampleRTT, EstimatedRTT) as in Q6 and Q7.
    let acks = [
        (5, 155, 4, 0.016, 0.016),
        (10, 2655, 9, 0.017, 0.016125),
        (13, 5155, 12, 0.017, 0.016234375),
        (16, 7655, 15, 0.017, 0.016330078125),
    ];
    for (frame, ack, acked, sample, estimated) in acks {
        let row = segment(&tcp, frame);
        assert_eq!(row["ack"], ack, "frame {frame}");
        assert_eq!(row["acks_frame"], acked, "frame {frame}");
        assert_eq!(row["sample_rtt_ms"], sample, "frame {frame}");
        let got = row["estimated_rtt_ms"].as_f64().expect("a number");
        assert!((got - estimated).abs() < 1e-9, "frame {frame}: {got}");
    }
    // Q11: frame 10's ack covers segments 8 and 9: 155 + 2 x 1250.
    assert_eq!(155 + 2 * 1250, 2655);
    let text = handout();
    for quoted in [
        "0.016125",
        "0.016234",
        "0.016330",
        "Frame 10 acknowledges 2655",
    ] {
        assert!(text.contains(quoted), "the handout quotes {quoted}");
    }
}

#[test]
fn q9_q10_q12_window_retransmissions_throughput() {
    let tcp = rows("captures/tcp-bulk.pcap", &["tcp"]);
    let throughput = tcp
        .iter()
        .find(|row| row["row"] == "throughput")
        .expect("the tcp view ends with a throughput row");
    assert_eq!(throughput["min_window_s2c"], 65483);
    assert_eq!(throughput["payload_bytes_c2s"], 204_954);
    let rate = throughput["throughput_c2s_bytes_per_s"]
        .as_f64()
        .expect("a number");
    assert_eq!(format!("{:.2}", rate / 1000.0), "108.39");
    assert_eq!(segment(&tcp, 10)["window"], 76);
    assert_eq!(segment(&tcp, 10)["window_scaled"], 77824);
    let flows = rows("captures/tcp-bulk.pcap", &["flows"]);
    assert_eq!(flows[0]["retransmissions"], 0);
    assert!(tcp
        .iter()
        .filter(|row| row["frame"].is_u64())
        .all(|row| row["marks"].as_array().is_some_and(Vec::is_empty)));
    let lossy = rows("tests/data/lossy-transfer.pcap", &["flows"]);
    assert_eq!(lossy[0]["retransmissions"], 2);
    let text = handout();
    for quoted in [
        "65483",
        "77824",
        "204954",
        "108.39 kB/s",
        "counts 2\nretransmissions",
    ] {
        assert!(text.contains(quoted), "the handout quotes {quoted:?}");
    }
}

#[test]
fn q13_to_q20_the_udp_lab_on_echo_udp() {
    let udp = rows("captures/echo-udp.pcap", &["udp"]);
    let first = &udp[0];
    assert_eq!(first["frame"], 1);
    assert_eq!(first["src_port"], 59250);
    assert_eq!(first["dst_port"], 12000);
    assert_eq!(first["length_field"], 14);
    assert_eq!(first["ip_length"], 14);
    assert_eq!(first["payload_captured"], 6);
    assert_eq!(first["checksum"], "not verified");
    let reply = &udp[1];
    assert_eq!(reply["src_port"], 12000);
    assert_eq!(reply["dst_port"], 59250);
    assert_eq!(reply["reply_to"], 1);
    let unanswered = udp
        .iter()
        .find(|row| row["frame"] == 9)
        .expect("frame 9 is a UDP datagram");
    assert_eq!(unanswered["dst_port"], 12009);
    assert!(unanswered["reply_to"].is_null() && unanswered["answered_by"].is_null());
    // The protocol number and the header fields come from --explain.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/echo-udp.pcap");
    let output = run(
        socklab()
            .arg("analyze")
            .arg(&file)
            .args(["udp", "--explain"]),
        Duration::from_secs(30),
    );
    let explained = stdout(&output);
    // (what --explain says, what the handout quotes from it)
    let facts = [
        ("The UDP header is 8 bytes", "the header is 8 bytes"),
        ("checksum 0xfe21", "checksum 0xfe21"),
        ("14 = 8 + 6", "14 =\n8 + 6"),
        ("65,507", "65,507"),
        ("17 is UDP", "17 (TCP is 6)"),
        ("after 0.142 ms", "0.142 ms later"),
    ];
    let text = handout();
    for (said, quoted) in facts {
        assert!(
            explained.contains(said),
            "--explain says {said:?}:\n{explained}"
        );
        assert!(text.contains(quoted), "the handout quotes {quoted:?}");
    }
}

#[test]
fn q21_the_lossy_forum_login_was_sent_four_times_and_applied_once() {
    let forum = rows("captures/forum-lossy.pcap", &["forum"]);
    let login = &forum[0];
    assert_eq!(login["frame"], 1);
    assert_eq!(login["attempts"], 4);
    assert_eq!(login["retransmission_frames"], serde_json::json!([2, 3, 4]));
    assert_eq!(login["reply_frame"], 5);
    assert!(handout().contains("went out four times (frames 1-4) before its\nreply (frame 5)"));
}
