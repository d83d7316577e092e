//! The command line itself: help, version, completions, colour, exit codes, and
//! quiet exit on a broken pipe.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use crate::util::{assert_user_error, run, socklab, stdout, Server};

const T: Duration = Duration::from_secs(20);

#[test]
fn help_lists_every_subcommand_with_a_description() {
    let out = run(socklab().arg("--help"), T);
    assert!(out.status.success());
    let text = stdout(&out);
    for (name, words) in [
        ("echo", "echo servers"),
        ("file", "files over TCP"),
        ("proxy", "impairing proxy"),
        ("demo", "demo"),
        ("completions", "completion"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from help:\n{text}"));
        assert!(line.contains(words), "{line}");
    }
    assert!(text.contains("--color <WHEN>"), "{text}");
}

#[test]
fn version_prints_the_crate_version() {
    let out = run(socklab().arg("--version"), T);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("socklab {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn completions_are_generated_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(socklab().args(["completions", shell]), T);
        assert!(out.status.success(), "{shell}");
        let text = stdout(&out);
        assert!(
            text.contains("socklab") && text.contains("echo"),
            "{shell}: {text}"
        );
    }
}

#[test]
fn usage_mistakes_exit_2_with_one_line() {
    for args in [
        vec!["frobnicate"],
        vec!["echo", "server"],
        vec!["echo", "bench", "--tcp", "127.0.0.1", "9", "-d", "forever"],
        vec!["--color", "sometimes", "demo"],
    ] {
        let out = run(socklab().args(&args), T);
        assert_user_error(&out);
    }
}

#[test]
fn bare_socklab_shows_help_and_exits_2() {
    let out = run(&mut socklab(), T);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: socklab"));
}

#[test]
fn color_always_overrides_no_color_and_never_wins_everywhere() {
    let server = Server::start(
        &["echo", "server", "--tcp", "--port", "0"],
        "TCP echo server listening on",
    );
    let bench = |color: &str| {
        let out = run(
            socklab()
                .args([
                    "--color",
                    color,
                    "echo",
                    "bench",
                    "--tcp",
                    "127.0.0.1",
                    &server.port(),
                ])
                .args(["-d", "100ms", "--warmup", "0s"]),
            T,
        );
        assert!(out.status.success());
        stdout(&out)
    };
    // The harness sets NO_COLOR=1 and stdout is a pipe: `auto` means no colour...
    assert!(!bench("auto").contains('\u{1b}'));
    assert!(!bench("never").contains('\u{1b}'));
    // ...but an explicit --color always wins.
    assert!(bench("always").contains('\u{1b}'));
}

#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    let mut child = socklab()
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read a few bytes, then hang up, as `| head -c 10` would.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 10];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status:?}, stderr {err:?}");
    assert!(err.is_empty(), "{err:?}");
}

#[test]
fn demo_runs_end_to_end() {
    // The demo keeps its capture in the temporary directory: give it one of ours.
    let scratch = tempfile::tempdir().unwrap();
    let out = run(
        socklab()
            .args(["demo", "--bench-duration", "200ms"])
            .env("TMPDIR", scratch.path()),
        Duration::from_secs(60),
    );
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        // The forum comes first: yoda straight to the server...
        "== 1. The forum",
        "  yoda: Enter password: wise@!man",
        "  server: yoda successful login",
        "  yoda: Thread 3331 created",
        "  server: yoda uploaded file notes.txt to 3331 thread",
        "  yoda: Goodbye",
        // ...then r2d2 through the lossy proxy, whose datagram lines show the losses.
        "== 2. r2d2 through the proxy",
        "  r2d2: New user, enter password: do*!@#dedo",
        "  r2d2: 1 yoda: Networks is awesome",
        "  r2d2: Message posted to 3331 thread",
        "  r2d2: notes.txt successfully downloaded",
        "  r2d2: Goodbye",
        " B  lost",
        "  2 r2d2: Beep boop, message received",
        "  r2d2 do*!@#dedo",
        "identical (1400 bytes)",
        // The echo and proxy steps follow, renumbered.
        "== 3. TCP echo",
        "\"HELLO 3\"",
        "5 requests sent, 5 replies received, 0% loss",
        "  server: ",
        "received 91 of 91 bytes in 10 frames for 10 messages",
        "in 10 datagrams for 10 messages",
        "round trips/s",
        "== 9. The UDP pinger through the impairing proxy",
        "proxy statistics after",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Exactly once: however many copies crossed the proxy, the server executed r2d2's
    // MSG once and the thread holds it once.
    let count = |needle: &str| text.lines().filter(|line| line.contains(needle)).count();
    assert_eq!(count("server: r2d2 issued MSG command"), 1, "{text}");
    assert_eq!(count("r2d2: Beep boop"), 1, "{text}");
    // Two proxy tables: the forum's and the pinger's.
    assert_eq!(count("proxy statistics after"), 2, "{text}");
    // Step 10 analyzes the demo's own capture where capturing is allowed (root, as in
    // CI), and says why not elsewhere.
    if text.contains("== 10. What crossed the wire") {
        let saved: Vec<_> = std::fs::read_dir(scratch.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().to_string())
            .filter(|name| name.starts_with("socklab-demo-") && name.ends_with(".pcap"))
            .collect();
        assert_eq!(saved.len(), 1, "the capture is kept: {saved:?}");
        for expected in [
            "$ socklab analyze",
            "TCP connections",
            "HELLO",
            "retransmitted: #",
        ] {
            assert!(
                text.contains(expected),
                "missing {expected:?} in step 10:\n{text}"
            );
        }
    } else {
        assert!(
            text.contains("(not recording the demo's packets for step 10: "),
            "{text}"
        );
    }
}
