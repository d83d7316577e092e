//! Golden-file tests of `socklab analyze`: every view on the sample captures in
//! `captures/`, rendered with `--color never`, compared byte for byte with the files in
//! `tests/golden/`. A change to a view's output fails here until the golden file is
//! updated on purpose: run `SOCKLAB_UPDATE_GOLDEN=1 cargo test golden`, then read the
//! diff (`git diff tests/golden`) before committing it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{run, socklab, stderr, stdout};

/// (golden file name, capture, arguments after the file).
const CASES: &[(&str, &str, &[&str])] = &[
    ("echo-tcp-summary", "echo-tcp.pcap", &["summary"]),
    ("echo-tcp-flows", "echo-tcp.pcap", &["flows"]),
    (
        "echo-tcp-handshakes",
        "echo-tcp.pcap",
        &["handshakes", "--explain"],
    ),
    ("echo-tcp-tcp", "echo-tcp.pcap", &["tcp", "--explain"]),
    ("echo-tcp-tcp-json", "echo-tcp.pcap", &["tcp", "--json"]),
    ("echo-tcp-follow", "echo-tcp.pcap", &["follow", "0"]),
    (
        "echo-tcp-follow-hex",
        "echo-tcp.pcap",
        &["follow", "0", "--hex"],
    ),
    ("echo-tcp-ladder", "echo-tcp.pcap", &["ladder", "0"]),
    ("echo-udp-summary", "echo-udp.pcap", &["summary"]),
    ("echo-udp-udp", "echo-udp.pcap", &["udp", "--explain"]),
    ("echo-udp-udp-json", "echo-udp.pcap", &["udp", "--json"]),
    ("echo-udp-flows", "echo-udp.pcap", &["flows", "--json"]),
    ("forum-forum", "forum.pcap", &["forum"]),
    ("forum-flows", "forum.pcap", &["flows"]),
    (
        "forum-lossy-forum",
        "forum-lossy.pcap",
        &["forum", "--json"],
    ),
    ("forum-lossy-udp", "forum-lossy.pcap", &["udp"]),
    ("tcp-bulk-summary", "tcp-bulk.pcap", &["summary"]),
    (
        "tcp-bulk-handshakes",
        "tcp-bulk.pcap",
        &["handshakes", "--json"],
    ),
    ("tcp-bulk-tcp", "tcp-bulk.pcap", &["tcp", "--explain"]),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn golden_path(name: &str) -> PathBuf {
    repo().join("tests/golden").join(format!("{name}.txt"))
}

#[test]
fn every_view_on_the_sample_captures_matches_its_golden_file() {
    let update = std::env::var_os("SOCKLAB_UPDATE_GOLDEN").is_some();
    let mut differing = Vec::new();
    for (name, capture, args) in CASES {
        let file = repo().join("captures").join(capture);
        let output = run(
            socklab()
                .arg("--color")
                .arg("never")
                .arg("analyze")
                .arg(&file)
                .args(*args),
            Duration::from_secs(30),
        );
        assert!(
            output.status.success(),
            "analyze {capture} {args:?} failed: {}",
            stderr(&output)
        );
        let text = stdout(&output);
        let path = golden_path(name);
        if update {
            std::fs::write(&path, &text).expect("write the golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read {}: {error} (create it with SOCKLAB_UPDATE_GOLDEN=1)",
                path.display()
            )
        });
        if text != expected {
            let line = text
                .lines()
                .zip(expected.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "length".to_string(), |n| format!("line {}", n + 1));
            differing.push(format!("{name} (first difference: {line})"));
        }
    }
    assert!(
        differing.is_empty(),
        "output differs from tests/golden for: {}",
        differing.join(", ")
    );
}

/// Every golden file belongs to a case: a renamed or dropped case leaves no stale file
/// behind that nobody checks.
#[test]
fn every_golden_file_has_a_case() {
    let names: Vec<String> = CASES
        .iter()
        .map(|(name, _, _)| format!("{name}.txt"))
        .collect();
    for entry in std::fs::read_dir(repo().join("tests/golden")).expect("read tests/golden") {
        let file = entry.expect("a directory entry").file_name();
        let file = file.to_string_lossy().to_string();
        assert!(
            names.contains(&file),
            "tests/golden/{file} has no case in golden.rs"
        );
    }
}
