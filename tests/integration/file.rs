//! `socklab file`: uploads and downloads round-trip byte for byte, an interrupted upload
//! leaves nothing behind, names that could escape the served directory are refused on
//! both sides, `--max-size` and `--force` do what they say, `list` renders a table and
//! JSON lines, and garbage sent to the server does not stop it.
//!
//! File contents come from a seeded ChaCha generator, so every run moves the same bytes.
//! Some tests talk to the server with a raw TCP client that speaks (or mangles) the
//! protocol by hand, to do what the real client never would.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Output;
use std::thread;
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::util::{assert_user_error, free_tcp_port, run, socklab, stdout, Server};

/// Limit for one client command (the 10 MB transfers take well under a second).
const T: Duration = Duration::from_secs(20);
/// Limit for one wait on a server log line or a raw socket read.
const WAIT: Duration = Duration::from_secs(10);
/// SHA-256 of the empty string: a well-formed digest for hand-made requests.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A file server on a free port serving `dir`.
fn serve(dir: &Path, extra: &[&str]) -> Server {
    let dir = dir.to_str().expect("temporary paths are UTF-8");
    let mut args = vec!["file", "serve", "--port", "0", "--dir", dir];
    args.extend_from_slice(extra);
    Server::start(&args, "file server listening on")
}

/// `socklab file ARGS...` run in `cwd` (so a download without `-o` lands there).
fn file(cwd: &Path, args: &[&str]) -> Output {
    run(socklab().current_dir(cwd).arg("file").args(args), T)
}

/// `len` pseudo-random bytes, the same for the same `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Every entry in `dir`, hidden ones too, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A raw connection to the server, with a timeout on every read.
fn raw_client(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends `json` as one frame: 4-byte big-endian length, then the bytes.
fn send_frame(stream: &mut TcpStream, json: &[u8]) {
    stream
        .write_all(&(json.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(json).unwrap();
}

/// Reads one frame's JSON header.
fn read_frame(stream: &mut TcpStream) -> Value {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut json = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut json).unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// Asserts that the server closed `stream` (end of file, or a reset because it hung up
/// with our bytes unread).
fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
    }
}

fn temp_dirs() -> (TempDir, TempDir) {
    (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap())
}

#[test]
fn files_of_0_bytes_1_byte_and_10_mb_round_trip_byte_identical() {
    let (served, local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let port = server.port();
    for (name, len, seed) in [
        ("empty.bin", 0, 1),
        ("one.bin", 1, 2),
        ("big.bin", 10_000_000, 3),
    ] {
        let data = random_bytes(len, seed);
        let source = local.path().join(name);
        fs::write(&source, &data).unwrap();

        let out = file(
            local.path(),
            &["put", "127.0.0.1", &port, source.to_str().unwrap()],
        );
        assert_success(&out);
        assert!(
            stdout(&out).starts_with(&format!("uploaded {name}: {len} bytes, sha256 ")),
            "{}",
            stdout(&out)
        );
        // `assert!` rather than `assert_eq!`: a mismatch must not print 10 MB of bytes.
        assert!(
            fs::read(served.path().join(name)).unwrap() == data,
            "{name} stored differently"
        );

        let copy = local.path().join(format!("copy-{name}"));
        let out = file(
            local.path(),
            &[
                "get",
                "127.0.0.1",
                &port,
                name,
                "-o",
                copy.to_str().unwrap(),
            ],
        );
        assert_success(&out);
        assert!(
            stdout(&out).starts_with(&format!("downloaded {name} to ")),
            "{}",
            stdout(&out)
        );
        assert!(
            fs::read(&copy).unwrap() == data,
            "{name} downloaded differently"
        );
    }
    // No part files left on either side.
    assert_eq!(names_in(served.path()), ["big.bin", "empty.bin", "one.bin"]);
    assert_eq!(names_in(local.path()).len(), 6);
    let stored = server.wait_for_lines(|l| l.contains(": stored "), 3, WAIT);
    assert_eq!(stored.len(), 3, "{:?}", server.lines());
    assert!(
        stored
            .iter()
            .any(|l| l.contains(r#"put "big.bin": stored 10000000 bytes"#)),
        "{stored:?}"
    );
}

#[test]
fn download_without_output_lands_in_the_current_directory() {
    let (served, local) = temp_dirs();
    fs::write(served.path().join("notes.txt"), b"hello").unwrap();
    let server = serve(served.path(), &[]);
    let out = file(
        local.path(),
        &["get", "127.0.0.1", &server.port(), "notes.txt"],
    );
    assert_success(&out);
    assert_eq!(fs::read(local.path().join("notes.txt")).unwrap(), b"hello");
    assert_eq!(names_in(local.path()), ["notes.txt"]);
}

#[test]
fn client_killed_mid_upload_leaves_nothing_on_the_server() {
    let (served, _local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let mut stream = raw_client(&server);
    let put = json!({"version": 1, "op": "put", "name": "big.bin", "size": 10_000_000,
                     "sha256": EMPTY_SHA256, "overwrite": false});
    send_frame(&mut stream, put.to_string().as_bytes());
    assert_eq!(read_frame(&mut stream)["op"], "continue");
    stream.write_all(&random_bytes(1_000_000, 4)).unwrap();
    // The part file exists while the upload is in progress...
    assert!(names_in(served.path())
        .iter()
        .any(|n| n.starts_with(".big.bin.part-")));
    // ...and the client "dies": the connection closes a tenth of the way through.
    drop(stream);

    let aborted = server.wait_for_line(|l| l.contains(r#"put "big.bin": aborted"#), WAIT);
    assert!(aborted.is_some(), "no abort logged: {:?}", server.lines());
    assert!(
        aborted
            .unwrap()
            .ends_with("stream ended after 1000000 of the 10000000 body bytes"),
        "{:?}",
        server.lines()
    );
    assert_eq!(names_in(served.path()), Vec::<String>::new());
}

#[test]
fn stale_part_files_are_removed_when_the_server_starts() {
    let (served, local) = temp_dirs();
    fs::write(
        served.path().join(".crashed.bin.part-00000000deadbeef"),
        b"half",
    )
    .unwrap();
    fs::write(served.path().join(".hidden"), b"kept").unwrap();
    let server = serve(served.path(), &[]);
    // The readiness line comes after the clean-up, so it is already done.
    assert_eq!(names_in(served.path()), [".hidden"]);
    let out = file(local.path(), &["list", "127.0.0.1", &server.port()]);
    assert_success(&out);
    assert_eq!(stdout(&out).trim(), "(no files)");
}

#[test]
fn names_that_escape_the_directory_are_refused_by_put_and_get() {
    let (served, local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let port = server.port();
    let source = local.path().join("source.txt");
    fs::write(&source, b"data").unwrap();
    for name in ["../x", "/etc/passwd", "a/b", "a\nb"] {
        let expected = format!("invalid file name {name:?}: ");
        let out = file(
            local.path(),
            &[
                "put",
                "127.0.0.1",
                &port,
                source.to_str().unwrap(),
                "--name",
                name,
            ],
        );
        let line = assert_user_error(&out);
        assert!(line.starts_with(&format!("socklab: {expected}")), "{line}");

        let out = file(local.path(), &["get", "127.0.0.1", &port, name]);
        let line = assert_user_error(&out);
        assert!(line.starts_with(&format!("socklab: {expected}")), "{line}");
    }
    let out = file(
        local.path(),
        &[
            "put",
            "127.0.0.1",
            &port,
            source.to_str().unwrap(),
            "--name",
            "../x",
        ],
    );
    assert_eq!(
        assert_user_error(&out),
        r#"socklab: invalid file name "../x": must be a single path component"#
    );
    assert_eq!(names_in(served.path()), Vec::<String>::new());
    assert_eq!(names_in(local.path()), ["source.txt"]);
}

#[test]
fn server_refuses_bad_names_even_from_a_client_that_skips_the_check() {
    let (served, _local) = temp_dirs();
    let server = serve(served.path(), &[]);
    for name in ["../x", "/etc/passwd", "a/b", "a\nb", ".hidden"] {
        let mut stream = raw_client(&server);
        let put = json!({"version": 1, "op": "put", "name": name, "size": 0,
                         "sha256": EMPTY_SHA256, "overwrite": true});
        send_frame(&mut stream, put.to_string().as_bytes());
        let reply = read_frame(&mut stream);
        assert_eq!(reply["op"], "error", "{name:?}: {reply}");
        assert_eq!(reply["code"], "invalid-name", "{name:?}: {reply}");

        send_frame(
            &mut stream,
            json!({"version": 1, "op": "get", "name": name})
                .to_string()
                .as_bytes(),
        );
        let reply = read_frame(&mut stream);
        assert_eq!(reply["code"], "invalid-name", "{name:?}: {reply}");
    }
    assert_eq!(names_in(served.path()), Vec::<String>::new());
}

#[test]
fn max_size_is_enforced_before_the_upload() {
    let (served, local) = temp_dirs();
    let server = serve(served.path(), &["--max-size", "1000"]);
    let port = server.port();
    let too_big = local.path().join("too-big.bin");
    fs::write(&too_big, random_bytes(1001, 5)).unwrap();
    let out = file(
        local.path(),
        &["put", "127.0.0.1", &port, too_big.to_str().unwrap()],
    );
    assert_eq!(
        assert_user_error(&out),
        r#"socklab: server refused upload of "too-big.bin": 1001 bytes is over the server's limit of 1000 bytes"#
    );
    assert_eq!(names_in(served.path()), Vec::<String>::new());

    let just_right = local.path().join("just-right.bin");
    fs::write(&just_right, random_bytes(1000, 6)).unwrap();
    assert_success(&file(
        local.path(),
        &["put", "127.0.0.1", &port, just_right.to_str().unwrap()],
    ));
    assert_eq!(names_in(served.path()), ["just-right.bin"]);
}

#[test]
fn server_reads_no_more_than_was_announced() {
    let (served, _local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let mut stream = raw_client(&server);
    let body = b"abc";
    let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; // of "abc"
    let put = json!({"version": 1, "op": "put", "name": "abc.txt", "size": 3,
                     "sha256": digest, "overwrite": false});
    send_frame(&mut stream, put.to_string().as_bytes());
    assert_eq!(read_frame(&mut stream)["op"], "continue");
    // The body, then extra bytes the header never announced: they must not be stored.
    stream.write_all(body).unwrap();
    stream.write_all(b"EXTRA").unwrap();
    let reply = read_frame(&mut stream);
    assert_eq!(
        reply,
        json!({"version": 1, "op": "ok", "name": "abc.txt", "size": 3, "sha256": digest})
    );
    assert_eq!(fs::read(served.path().join("abc.txt")).unwrap(), body);
}

#[test]
fn overwriting_needs_force_on_both_sides() {
    let (served, local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let port = server.port();
    let source = local.path().join("a.txt");
    fs::write(&source, b"first").unwrap();
    assert_success(&file(local.path(), &["put", "127.0.0.1", &port, "a.txt"]));

    fs::write(&source, b"second").unwrap();
    let out = file(local.path(), &["put", "127.0.0.1", &port, "a.txt"]);
    assert_eq!(
        assert_user_error(&out),
        r#"socklab: server refused upload of "a.txt": file exists (use --force to replace it)"#
    );
    assert_eq!(fs::read(served.path().join("a.txt")).unwrap(), b"first");
    assert_success(&file(
        local.path(),
        &["put", "127.0.0.1", &port, "a.txt", "--force"],
    ));
    assert_eq!(fs::read(served.path().join("a.txt")).unwrap(), b"second");

    fs::write(&source, b"local").unwrap();
    let out = file(local.path(), &["get", "127.0.0.1", &port, "a.txt"]);
    assert_eq!(
        assert_user_error(&out),
        "socklab: cannot download to a.txt: file exists (use --force to replace it)"
    );
    assert_eq!(fs::read(&source).unwrap(), b"local");
    assert_success(&file(
        local.path(),
        &["get", "127.0.0.1", &port, "a.txt", "--force"],
    ));
    assert_eq!(fs::read(&source).unwrap(), b"second");
    assert_eq!(names_in(served.path()), ["a.txt"]);
    assert_eq!(names_in(local.path()), ["a.txt"]);
}

#[test]
fn missing_file_is_refused_by_name() {
    let (served, local) = temp_dirs();
    let server = serve(served.path(), &[]);
    let out = file(
        local.path(),
        &["get", "127.0.0.1", &server.port(), "nope.txt"],
    );
    assert_eq!(
        assert_user_error(&out),
        r#"socklab: server refused download of "nope.txt": no such file"#
    );
    assert_eq!(names_in(local.path()), Vec::<String>::new());
}

/// A fake server that answers one `get` with `header` and then `body`, and hangs up.
fn fake_server(header: Value, body: &'static [u8]) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(read_frame(&mut stream)["op"], "get");
        send_frame(&mut stream, header.to_string().as_bytes());
        stream.write_all(body).unwrap();
    });
    (port, handle)
}

#[test]
fn download_cut_short_or_corrupt_leaves_nothing_locally() {
    let local = tempfile::tempdir().unwrap();
    let data = |size: u64, sha256: &str| json!({"version": 1, "op": "data", "name": "a.bin", "size": size, "sha256": sha256});

    // The server promises 1000 bytes and disconnects after 10.
    let (port, server) = fake_server(data(1000, EMPTY_SHA256), &[7; 10]);
    let out = file(
        local.path(),
        &["get", "127.0.0.1", &port.to_string(), "a.bin"],
    );
    server.join().unwrap();
    assert_eq!(
        assert_user_error(&out),
        format!(
            "socklab: connection with 127.0.0.1:{port} failed: \
             stream ended after 10 of the 1000 body bytes"
        )
    );
    assert_eq!(names_in(local.path()), Vec::<String>::new());

    // The server sends every byte, but not the ones it announced.
    let (port, server) = fake_server(data(3, EMPTY_SHA256), b"abc");
    let out = file(
        local.path(),
        &["get", "127.0.0.1", &port.to_string(), "a.bin"],
    );
    server.join().unwrap();
    let line = assert_user_error(&out);
    assert!(
        line.starts_with(&format!(
            "socklab: download of \"a.bin\" from 127.0.0.1:{port} is corrupt: sha256 ba7816bf"
        )),
        "{line}"
    );
    assert_eq!(names_in(local.path()), Vec::<String>::new());
}

#[test]
fn list_shows_regular_visible_files_as_a_table_and_as_json() {
    let (served, local) = temp_dirs();
    fs::write(served.path().join("b.bin"), random_bytes(3, 7)).unwrap();
    fs::write(served.path().join("a.txt"), b"hello").unwrap();
    fs::write(served.path().join(".hidden"), b"secret").unwrap();
    fs::create_dir(served.path().join("subdir")).unwrap();
    let server = serve(served.path(), &[]);
    let port = server.port();

    let out = file(local.path(), &["list", "127.0.0.1", &port]);
    assert_success(&out);
    let text = stdout(&out);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|line| {
            line.split(['│', '┆'])
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .filter(|cells: &Vec<&str>| cells.len() == 2)
        .collect();
    assert_eq!(
        rows,
        [
            vec!["name", "size (bytes)"],
            vec!["a.txt", "5"],
            vec!["b.bin", "3"]
        ],
        "{text}"
    );
    assert!(
        !text.contains("hidden") && !text.contains("subdir"),
        "{text}"
    );

    let out = file(local.path(), &["list", "127.0.0.1", &port, "--json"]);
    assert_success(&out);
    let objects: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            json!({"name": "a.txt", "size": 5}),
            json!({"name": "b.bin", "size": 3})
        ]
    );
}

#[test]
fn unreachable_server_is_one_line_naming_the_address() {
    let local = tempfile::tempdir().unwrap();
    fs::write(local.path().join("a.txt"), b"data").unwrap();
    let port = free_tcp_port().to_string();
    let expected = format!("socklab: cannot connect to 127.0.0.1:{port}: connection refused");
    for args in [
        vec!["put", "127.0.0.1", &port, "a.txt"],
        vec!["get", "127.0.0.1", &port, "b.txt"],
        vec!["list", "127.0.0.1", &port],
    ] {
        assert_eq!(
            assert_user_error(&file(local.path(), &args)),
            expected,
            "{args:?}"
        );
    }
    assert_eq!(names_in(local.path()), ["a.txt"]);
}

#[test]
fn garbage_does_not_stop_the_server() {
    let (served, local) = temp_dirs();
    let mut server = serve(served.path(), &[]);

    // Random bytes: their first four read as an absurd header length.
    let mut stream = raw_client(&server);
    stream.write_all(&random_bytes(4096, 8)).unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    let mut ignored = Vec::new();
    let _ = stream.read_to_end(&mut ignored); // an error reply, a reset: either is fine

    // A 4 GiB header length alone: refused with a reply, then the connection closes.
    let mut stream = raw_client(&server);
    stream.write_all(&[0xff; 4]).unwrap();
    let reply = read_frame(&mut stream);
    assert_eq!(reply["code"], "bad-request", "{reply}");
    assert_closed(&mut stream);

    // Truncated frames and abrupt disconnects.
    for bytes in [&[0u8, 0][..], &[0, 0, 0, 50, b'{'][..], &[][..]] {
        let mut stream = raw_client(&server);
        stream.write_all(bytes).unwrap();
        drop(stream);
    }

    // Whole frames with bad contents are answered, and the connection goes on.
    let mut stream = raw_client(&server);
    for (bad, complaint) in [
        (&b"not json!!"[..], "not valid JSON"),
        (
            br#"{"version":1,"op":"delete","name":"a"}"#,
            "unknown op \"delete\"",
        ),
        (
            br#"{"version":2,"op":"list"}"#,
            "unsupported protocol version 2",
        ),
        (br#"{"version":1,"op":"get"}"#, "malformed \"get\" message"),
        (b"[1,2,3]", "not a JSON object"),
    ] {
        send_frame(&mut stream, bad);
        let reply = read_frame(&mut stream);
        assert_eq!(reply["op"], "error", "{reply}");
        assert!(
            reply["message"].as_str().unwrap().contains(complaint),
            "{reply}"
        );
    }
    send_frame(&mut stream, br#"{"version":1,"op":"list"}"#);
    assert_eq!(
        read_frame(&mut stream),
        json!({"version": 1, "op": "listing", "files": []})
    );
    drop(stream);

    // Still serving: a real upload works.
    fs::write(local.path().join("after.txt"), b"still here").unwrap();
    assert_success(&file(
        local.path(),
        &["put", "127.0.0.1", &server.port(), "after.txt"],
    ));
    assert_eq!(
        fs::read(served.path().join("after.txt")).unwrap(),
        b"still here"
    );
    assert!(server.is_running());
    assert_eq!(names_in(served.path()), ["after.txt"]);
}

#[test]
fn upload_of_a_missing_local_file_names_it() {
    let local = tempfile::tempdir().unwrap();
    let port = free_tcp_port().to_string();
    let out = file(local.path(), &["put", "127.0.0.1", &port, "missing.txt"]);
    assert_eq!(
        assert_user_error(&out),
        "socklab: cannot read missing.txt: no such file or directory"
    );
}
