//! `socklab synth`: the synthetic capture, judged by tshark. The generator claims what
//! it put in the file (connections, retransmissions, gaps, duplicate ACKs); tshark's
//! TCP analysis, which knows nothing of how the file was made, must count the same.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use socklab::capture::synth::{write_synthetic, SynthOptions};

use crate::util::{run, socklab, stderr};

/// How long tshark may take over 5,000 packets.
const TSHARK_TIMEOUT: Duration = Duration::from_secs(60);

fn tshark(args: &[&str]) -> String {
    assert!(
        Command::new("tshark").arg("-v").output().is_ok(),
        "tshark is needed for this test: bash .ci/deps installs it"
    );
    let output = run(Command::new("tshark").args(args), TSHARK_TIMEOUT);
    assert!(
        output.status.success(),
        "tshark {args:?}: {}",
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How many frames tshark gives each of the `tcp.analysis.*` flags, in one pass.
fn analysis_counts(file: &Path, flags: &[&str]) -> Vec<usize> {
    let mut args = vec![
        "-r",
        file.to_str().expect("a UTF-8 temp path"),
        "-Y",
        "tcp.analysis.flags",
        "-T",
        "fields",
        "-E",
        "occurrence=f",
    ];
    let fields: Vec<String> = flags.iter().map(|f| format!("tcp.analysis.{f}")).collect();
    for field in &fields {
        args.extend(["-e", field.as_str()]);
    }
    let text = tshark(&args);
    let mut counts = vec![0; flags.len()];
    for line in text.lines() {
        for (count, value) in counts.iter_mut().zip(line.split('\t')) {
            *count += usize::from(!value.is_empty());
        }
    }
    counts
}

#[test]
fn tshark_agrees_with_what_synth_generated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synth.pcap");
    let output = run(
        socklab().args([
            "synth",
            file.to_str().unwrap(),
            "--packets",
            "5000",
            "--seed",
            "11",
            "--loss",
            "2%",
        ]),
        Duration::from_secs(30),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("5000 packets"),
        "{}",
        stderr(&output)
    );

    // The library with the same options writes the same bytes and says what is in them.
    let same = dir.path().join("same.pcap");
    let options = SynthOptions {
        packets: 5_000,
        seed: 11,
        loss: 0.02,
        ..SynthOptions::default()
    };
    let summary = write_synthetic(&same, &options).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), std::fs::read(&same).unwrap());
    assert!(
        summary.tcp.drops > 20 && summary.tcp.fast_retransmissions > 5,
        "{summary:?}"
    );

    // Connections: one line per address/port pair in tshark's conversation table.
    let conversations = tshark(&["-r", file.to_str().unwrap(), "-q", "-z", "conv,tcp"]);
    let connections = conversations.lines().filter(|l| l.contains("<->")).count();
    assert_eq!(connections as u64, summary.tcp_connections);

    let flags = [
        "retransmission",
        "fast_retransmission",
        "lost_segment",
        "duplicate_ack",
        "window_update",
        "ack_lost_segment",
        "out_of_order",
        "spurious_retransmission",
        "keep_alive",
        "window_full",
        "zero_window",
    ];
    let counts = analysis_counts(&file, &flags);
    let found: Vec<(&str, usize)> = flags.iter().copied().zip(counts).collect();
    let expected = [
        // Timeout and fast retransmissions: every resent segment the capture can show.
        ("retransmission", summary.tcp.retransmissions),
        ("fast_retransmission", summary.tcp.fast_retransmissions),
        // "Previous segment not captured": exactly where a dropped segment left a hole.
        ("lost_segment", summary.tcp.gaps),
        ("duplicate_ack", summary.tcp.duplicate_acks),
        // A server's duplicate ACK right after its SYN-ACK changes the window from the
        // unscaled SYN value, so tshark calls it a window update instead.
        ("window_update", summary.tcp.window_updates),
        // Nothing was acknowledged that the capture did not see, no resent segment
        // came so soon after the highest one that it looks out of order, and windows
        // never filled.
        ("ack_lost_segment", 0),
        ("out_of_order", 0),
        // A timeout retransmission can cross the ACK that makes it unnecessary (the
        // ACK of a lost segment's own retransmission): tshark calls that spurious.
        (
            "spurious_retransmission",
            summary.tcp.spurious_retransmissions,
        ),
        ("keep_alive", 0),
        ("window_full", 0),
        ("zero_window", 0),
    ];
    let expected: Vec<(&str, usize)> = expected.iter().map(|&(f, n)| (f, n as usize)).collect();
    assert_eq!(
        found, expected,
        "tshark's counts vs the generator's ({summary:?})"
    );
}

#[test]
fn an_unwritable_path_is_one_line() {
    let output = run(
        socklab().args(["synth", "/nonexistent-dir/x.pcap", "--packets", "10"]),
        Duration::from_secs(10),
    );
    let line = crate::util::assert_user_error(&output);
    assert!(
        line.starts_with("socklab: cannot write /nonexistent-dir/x.pcap: "),
        "{line}"
    );
}
