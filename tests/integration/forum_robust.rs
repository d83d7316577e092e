//! `socklab forum`, part 2: the forum under loss, crashes and hostile input (lab 3).
//!
//! - **Loss.** Five clients run the same seeded scripts twice, once straight to a server
//!   and once through `socklab proxy` losing, duplicating and reordering datagrams both
//!   ways; the two data directories must come out byte for byte the same, every command
//!   must have been executed exactly once, and every file must arrive intact. A 5,000
//!   message thread is read through 20% loss.
//! - **Crashes.** The server is SIGKILLed at seeded moments of a stream of EDT, DLT,
//!   MSG and UPD; after each restart the thread holds the state before or after the
//!   interrupted change and no partial upload is visible.
//! - **Hostile input.** Names that try to leave DIR, forged and stale sessions, junk on
//!   the transfer port, oversized and random datagrams: each is refused, the server keeps
//!   serving, and DIR does not change.
//!
//! The harness below starts the real binaries (server, client, proxy) and also speaks
//! the datagram format by hand through `socklab::forum::wire`, to send what our client
//! never would. Every random choice comes from a seeded ChaCha generator.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use socklab::forum::command::COMMAND_PROMPT;
use socklab::forum::store::{is_log_name, Store};
use socklab::forum::wire::{Kind, Packet, Reassembly, Repr, HEADER_LEN, MAGIC, VERSION};
use tempfile::TempDir;

use crate::util::{run, socklab, stdout, Server};

/// Limit for one client process. A lossy run takes up to 9 s; the limit is far above
/// that because a client's timeout backs off up to 4 s after a run of losses (RFC 6298
/// with Karn's rule), so an unlucky run is slow, and slow is not wrong.
const T: Duration = Duration::from_secs(90);
/// Limit for one wait on a server log line or a raw socket read.
const WAIT: Duration = Duration::from_secs(10);
/// The forum server's readiness line (on stderr).
const SERVER_READY: &str = "forum server listening on";
/// The proxy's readiness line (on stdout).
const PROXY_READY: &str = "proxy listening on";
/// Client options for lossy runs: a short first timeout, enough tries that 20% loss
/// each way (a round trip survives with probability 0.64) never exhausts them, and no
/// heartbeat within a run, so that nothing but the script's own datagrams (and their
/// retransmissions) crosses the proxy.
const LOSSY_CLIENT: [&str; 6] = ["--timeout", "50ms", "--retries", "12", "--heartbeat", "10m"];
/// The proxy's impairments for the lossy runs. A held datagram is released by the next
/// one or after 30 ms, longer than the client's shortest timeout (20 ms): so a request
/// is overtaken by its own retransmission, and a reply by its replay from the server's
/// cache, which is the reordering that could break exactly-once.
const IMPAIRMENTS: [&str; 8] = [
    "--loss",
    "20%",
    "--duplicate",
    "5%",
    "--reorder",
    "10%",
    "--hold-timeout",
    "30ms",
];
/// How long a raw client waits for a reply before sending its request again.
const RAW_TIMEOUT: Duration = Duration::from_millis(200);
/// How many times a raw client sends a request before failing the test.
const RAW_TRIES: u32 = 25;
/// Receive buffer of a raw client: the largest datagram the forum sends.
const RAW_BUFFER: usize = 2048;

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

/// A forum server on a free port keeping its data in `dir`.
fn forum_server(dir: &Path, extra: &[&str]) -> Server {
    let dir = dir.to_str().expect("temporary paths are UTF-8");
    let mut args = vec!["forum", "server", "0", "--dir", dir];
    args.extend_from_slice(extra);
    Server::start_in(&args, SERVER_READY, None)
}

/// `socklab proxy` on a free loopback port in front of `upstream`, seeded, with the
/// impairments `extra`.
fn lossy_proxy(upstream: SocketAddr, seed: u64, extra: &[&str]) -> Server {
    let upstream = upstream.to_string();
    let seed = seed.to_string();
    let mut args = vec![
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        upstream.as_str(),
        "--seed",
        seed.as_str(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args, PROXY_READY)
}

/// A forum client command for `port` running in `cwd` (where UPD reads and DWN
/// writes), with `input` (any bytes, not only UTF-8) on its stdin.
fn client_command(port: u16, cwd: &Path, input: &[u8], extra: &[&str]) -> std::process::Command {
    let mut stdin = tempfile::tempfile().expect("create the client's input file");
    stdin.write_all(input).expect("write the client's input");
    stdin.seek(SeekFrom::Start(0)).expect("rewind the input");
    let mut command = socklab();
    command
        .current_dir(cwd)
        .args(["forum", "client", &port.to_string()])
        .args(extra)
        .stdin(Stdio::from(stdin));
    command
}

/// Runs a forum client to completion (see [`client_command`]) and returns its stdout.
fn run_client(port: u16, cwd: &Path, input: &[u8], extra: &[&str]) -> String {
    let output = run(&mut client_command(port, cwd, input, extra), T);
    assert!(
        output.status.success(),
        "client failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(&output)
}

/// What the client printed for each command: the text between one command prompt and
/// the next (the login exchange before the first prompt is left out). The last entry
/// answers the final `XIT` (or the end of input).
fn replies(stdout: &str) -> Vec<String> {
    stdout
        .split(COMMAND_PROMPT)
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Every file in `dir`, hidden ones too, with its contents; but not the store's
/// write-ahead log, which is there while a server runs and whose bytes depend on how
/// the server happened to batch the requests (the crash test checks that a restart
/// deletes it).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list the directory")
        .filter_map(|entry| {
            let entry = entry.expect("read a directory entry");
            let name = entry.file_name().into_string().expect("UTF-8 file name");
            if is_log_name(&name) {
                return None;
            }
            let bytes = fs::read(entry.path()).expect("read a file");
            Some((name, bytes))
        })
        .collect()
}

/// Asserts that two snapshots hold the same names and bytes, naming the first
/// difference (binary contents are summarised, not dumped).
fn assert_same_files(
    left: &BTreeMap<String, Vec<u8>>,
    right: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    let names = |map: &BTreeMap<String, Vec<u8>>| map.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(left), names(right), "{what}: the file names differ");
    for (name, bytes) in left {
        let other = &right[name];
        if bytes != other {
            let show = |b: &[u8]| match std::str::from_utf8(b) {
                Ok(text) if b.len() < 4096 => text.to_string(),
                _ => format!("{} bytes", b.len()),
            };
            panic!(
                "{what}: {name} differs:\n--- left\n{}\n--- right\n{}",
                show(bytes),
                show(other)
            );
        }
    }
}

/// `len` pseudo-random bytes, the same for the same `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Writes `DIR/credentials.txt` with these `(user, password)` pairs, so logins do not
/// register anyone and the file is the same whatever order clients log in.
fn write_credentials(dir: &Path, users: &[(&str, &str)]) {
    let text: String = users
        .iter()
        .map(|(user, password)| format!("{user} {password}\n"))
        .collect();
    fs::write(dir.join("credentials.txt"), text).expect("write credentials.txt");
}

/// A new directory `name` under `root`.
fn subdir(root: &Path, name: &str) -> PathBuf {
    let path = root.join(name);
    fs::create_dir_all(&path).expect("create a directory");
    path
}

/// A reply as a raw client sees it: the datagram kind that ended it and the body.
#[derive(Debug)]
struct RawReply {
    kind: Kind,
    body: String,
}

impl RawReply {
    /// The reply's first line: its status word (`OK`, `NO`, `UPLOAD <token>` ...).
    fn status(&self) -> &str {
        self.body.lines().next().unwrap_or("")
    }

    /// The lines a client would print.
    fn text(&self) -> String {
        self.body.lines().skip(1).collect::<Vec<_>>().join("\n")
    }
}

/// A hand-driven forum session: builds request datagrams with `socklab::forum::wire`
/// and collects the reply, retransmitting (with the same request id, as the real client
/// does) until it is complete.
struct RawSession {
    socket: UdpSocket,
    session: u64,
    next_request: u32,
}

impl RawSession {
    /// A session with id `session` talking to `server`.
    fn new(server: SocketAddr, session: u64) -> RawSession {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a raw client");
        socket.connect(server).expect("connect the raw client");
        socket
            .set_read_timeout(Some(RAW_TIMEOUT))
            .expect("set a read timeout");
        RawSession {
            socket,
            session,
            next_request: 1,
        }
    }

    /// Sends `body` (any bytes) as the next request and returns the whole reply.
    fn call(&mut self, body: &[u8]) -> RawReply {
        let request = self.next_request;
        self.next_request += 1;
        let datagram = Repr {
            kind: Kind::Request,
            session: self.session,
            request,
            frag: 0,
            count: 1,
            body,
        }
        .to_vec();
        let mut buffer = [0u8; RAW_BUFFER];
        let mut reassembly: Option<Reassembly> = None;
        for _ in 0..RAW_TRIES {
            self.socket.send(&datagram).expect("send a raw request");
            while let Ok(len) = self.socket.recv(&mut buffer) {
                let Ok(packet) = Packet::new_checked(&buffer[..len]) else {
                    continue;
                };
                if packet.session() != self.session || packet.request() != request {
                    continue;
                }
                match packet.kind() {
                    Kind::Error => {
                        return RawReply {
                            kind: Kind::Error,
                            body: String::from_utf8_lossy(packet.body()).into_owned(),
                        }
                    }
                    Kind::Reply => {
                        let assembly =
                            reassembly.get_or_insert_with(|| Reassembly::new(packet.count()));
                        assembly.insert(packet.frag(), packet.body());
                        if assembly.is_complete() {
                            let body = reassembly.take().map(Reassembly::into_body);
                            return RawReply {
                                kind: Kind::Reply,
                                body: String::from_utf8_lossy(&body.unwrap_or_default())
                                    .into_owned(),
                            };
                        }
                    }
                    _ => {}
                }
            }
        }
        panic!(
            "no reply to raw request {:?} within {RAW_TRIES} tries",
            String::from_utf8_lossy(body)
        );
    }

    /// Logs in as a registered `user`.
    fn login(&mut self, user: &str, password: &str) {
        let hello = self.call(format!("HELLO {user}").as_bytes());
        assert_eq!(hello.status(), "PASSWORD", "{hello:?}");
        let login = self.call(format!("LOGIN {user} {password}").as_bytes());
        assert_eq!(
            (login.status(), login.text().as_str()),
            ("OK", "Welcome to the forum"),
            "{login:?}"
        );
    }
}

/// Reads a length-prefixed JSON header (the transfer framing) from `stream`; `None`
/// when the server closes the connection first.
fn read_frame(stream: &mut TcpStream) -> Option<Value> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).ok()?;
    let mut header = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut header).ok()?;
    Some(serde_json::from_slice(&header).expect("the server sends JSON headers"))
}

/// Writes `value` as a length-prefixed JSON header.
fn write_frame(stream: &mut TcpStream, value: &Value) {
    let header = serde_json::to_vec(value).expect("encode a header");
    let len = u32::try_from(header.len()).expect("a small header");
    stream
        .write_all(&len.to_be_bytes())
        .expect("write a prefix");
    stream.write_all(&header).expect("write a header");
}

/// Reads until the server closes the connection (EOF or reset), failing the test if it
/// keeps it open for [`WAIT`]. The server drops its temporary files before it closes,
/// so this is also the signal that a refused upload has been cleaned up.
fn wait_for_close(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(error) => panic!("the server kept the connection open: {error}"),
        }
    }
}

/// The hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    socklab::framing::sha256_hex(bytes)
}

// ---------------------------------------------------------------------------------
// 1. Five clients through a lossy proxy end like a loss-free run
// ---------------------------------------------------------------------------------

/// Clients of the loss test.
const CLIENTS: usize = 5;
/// Random steps per client, besides a fixed start and end of eight commands: 5 × 41 =
/// 205 commands in all.
const STEPS: usize = 33;
/// Sizes of each client's files to upload: empty, one byte, exactly one datagram's
/// worth, odd sizes around the 64 KiB copy chunk, and a few hundred KB.
const UPLOAD_SIZES: [usize; 5] = [0, 1, 1200, 65_537, 250_000];
/// Sizes of the uploads of thread `shared`, in DIR before the server starts, which
/// every client may download: their copies are checked against the originals.
const SHARED_SIZES: [usize; 3] = [7, 3601, 150_000];

/// One client's script and what it should leave behind.
struct Workload {
    /// Lines for stdin: login, then one command a line.
    lines: Vec<String>,
    /// For each command line: whether its reply is the same in every interleaving
    /// (commands on the client's own threads or on `shared`; not RDT of another
    /// client's thread, nor LST).
    deterministic: Vec<bool>,
    /// `(thread, file)` uploads that stay on the server.
    uploads: Vec<(String, String)>,
    /// Files of `shared` downloaded into the client's directory.
    downloads: BTreeSet<String>,
}

/// The name of client `i`'s `k`-th file to upload.
fn source_name(i: usize, k: usize) -> String {
    format!("f{i}-{k}.bin")
}

/// The contents of client `i`'s `k`-th file to upload.
fn source_bytes(i: usize, k: usize) -> Vec<u8> {
    random_bytes(UPLOAD_SIZES[k], (i * 100 + k) as u64)
}

/// The name of the `k`-th upload of thread `shared`.
fn shared_name(k: usize) -> String {
    format!("s{k}.bin")
}

/// The contents of the `k`-th upload of thread `shared`.
fn shared_bytes(k: usize) -> Vec<u8> {
    random_bytes(SHARED_SIZES[k], 1000 + k as u64)
}

/// Client `i`'s script: it creates threads `a{i}`, `b{i}` and `c{i}`; posts, edits,
/// deletes, uploads and downloads on them only; downloads from `shared`; reads the
/// others' threads; and finally removes `c{i}` with its uploads.
fn workload(i: usize, seed: u64) -> Workload {
    let mut rng = ChaCha8Rng::seed_from_u64(seed + i as u64);
    let own = [format!("a{i}"), format!("b{i}"), format!("c{i}")];
    // Per own thread: how many messages, which files were uploaded.
    let mut messages = [0usize; 3];
    let mut uploaded: [Vec<usize>; 3] = Default::default();
    let mut lines = vec![format!("u{i}"), format!("pw{i}")];
    let mut deterministic = Vec::new();
    let mut downloads = BTreeSet::new();
    let mut push = |line: String, det: bool, lines: &mut Vec<String>| {
        lines.push(line);
        deterministic.push(det);
    };
    for title in &own {
        push(format!("CRT {title}"), true, &mut lines);
    }
    push(format!("CRT {}", own[0]), true, &mut lines);
    let mut texts = 0;
    let mut text = |rng: &mut ChaCha8Rng| {
        texts += 1;
        let flavour = ["hello", "ünïcode ok", "spaces  inside", "colons: too"];
        format!("m{i}-{texts} {}", flavour.choose(rng).expect("not empty"))
    };
    for _ in 0..STEPS {
        let t = rng.gen_range(0..own.len());
        let title = &own[t];
        let roll = rng.gen_range(0..100);
        if roll < 26 || (roll < 48 && messages[t] == 0) {
            push(format!("MSG {title} {}", text(&mut rng)), true, &mut lines);
            messages[t] += 1;
        } else if roll < 37 {
            // One past the last is a refusal, which must be the same either way.
            let n = rng.gen_range(1..=messages[t] + 1);
            let line = format!("EDT {title} {n} {}", text(&mut rng));
            push(line, true, &mut lines);
        } else if roll < 48 {
            let n = rng.gen_range(1..=messages[t] + 1);
            push(format!("DLT {title} {n}"), true, &mut lines);
            if n <= messages[t] {
                messages[t] -= 1;
            }
        } else if roll < 64 {
            let fresh: Vec<usize> = (0..UPLOAD_SIZES.len())
                .filter(|k| !uploaded[t].contains(k))
                .collect();
            match fresh.choose(&mut rng) {
                Some(&k) => {
                    push(
                        format!("UPD {title} {}", source_name(i, k)),
                        true,
                        &mut lines,
                    );
                    uploaded[t].push(k);
                }
                None => push(format!("RDT {title}"), true, &mut lines),
            }
        } else if roll < 80 {
            // Downloads: from `shared` into a new file, or of an own upload (which
            // lands on its source, so that must stay intact).
            match uploaded[t].choose(&mut rng) {
                Some(&k) if rng.gen_bool(0.3) => {
                    push(
                        format!("DWN {title} {}", source_name(i, k)),
                        true,
                        &mut lines,
                    );
                }
                _ => {
                    let file = shared_name(rng.gen_range(0..SHARED_SIZES.len()));
                    push(format!("DWN shared {file}"), true, &mut lines);
                    downloads.insert(file);
                }
            }
        } else if roll < 86 {
            push(format!("RDT {title}"), true, &mut lines);
        } else if roll < 94 {
            let other = (i + rng.gen_range(1..CLIENTS)) % CLIENTS;
            push(format!("RDT a{other}"), false, &mut lines);
        } else {
            push("LST".to_string(), false, &mut lines);
        }
    }
    // The thread that goes takes an upload with it, and nothing can be done to it after.
    if uploaded[2].is_empty() {
        let file = source_name(i, UPLOAD_SIZES.len() - 1);
        push(format!("UPD {} {file}", own[2]), true, &mut lines);
    }
    push(format!("RMV {}", own[2]), true, &mut lines);
    push(format!("RDT {}", own[2]), true, &mut lines);
    push(
        format!("MSG {} after the removal", own[2]),
        true,
        &mut lines,
    );
    push("XIT".to_string(), true, &mut lines);
    let uploads = (0..2)
        .flat_map(|t| {
            uploaded[t]
                .iter()
                .map(move |&k| (format!("{}{i}", ["a", "b"][t]), source_name(i, k)))
        })
        .collect();
    Workload {
        lines,
        deterministic,
        uploads,
        downloads,
    }
}

/// What one run (direct or through the proxy) left and printed.
struct RunResult {
    /// DIR afterwards.
    dir: BTreeMap<String, Vec<u8>>,
    /// Per client, what it printed for each command.
    replies: Vec<Vec<String>>,
    /// `issued` lines in the server's log: commands its loop executed.
    issued: usize,
    elapsed: Duration,
}

/// Runs every client's script at once against a fresh DIR under `root/name`, through
/// a seeded lossy proxy when `proxy_seed` is given, and checks each client's directory.
fn run_workload(
    root: &Path,
    name: &str,
    scripts: &[Workload],
    proxy_seed: Option<u64>,
) -> RunResult {
    let dir = subdir(root, &format!("{name}-dir"));
    let users: Vec<(String, String)> = (0..CLIENTS)
        .map(|i| (format!("u{i}"), format!("pw{i}")))
        .collect();
    let users: Vec<(&str, &str)> = users
        .iter()
        .map(|(u, p)| (u.as_str(), p.as_str()))
        .collect();
    write_credentials(&dir, &users);
    let mut shared = String::from("u0\n1 u0: files for everyone\n");
    for k in 0..SHARED_SIZES.len() {
        shared.push_str(&format!("u0 uploaded {}\n", shared_name(k)));
        fs::write(
            dir.join(format!("shared-{}", shared_name(k))),
            shared_bytes(k),
        )
        .unwrap();
    }
    fs::write(dir.join("shared"), shared).unwrap();
    let cwds: Vec<PathBuf> = (0..CLIENTS)
        .map(|i| {
            let cwd = subdir(root, &format!("{name}-client{i}"));
            for k in 0..UPLOAD_SIZES.len() {
                fs::write(cwd.join(source_name(i, k)), source_bytes(i, k)).unwrap();
            }
            cwd
        })
        .collect();

    let server = forum_server(&dir, &[]);
    // One proxy per client: each client's datagrams then meet the same seeded losses in
    // every run, whatever the other clients do, so a run's duration is reproducible.
    let proxies: Vec<Server> = match proxy_seed {
        Some(seed) => (0..CLIENTS)
            .map(|i| lossy_proxy(server.addr, seed + i as u64, &IMPAIRMENTS))
            .collect(),
        None => Vec::new(),
    };
    let ports: Vec<u16> = (0..CLIENTS)
        .map(|i| proxies.get(i).map_or(server.addr.port(), |p| p.addr.port()))
        .collect();
    let extra: &[&str] = if proxies.is_empty() {
        &[]
    } else {
        &LOSSY_CLIENT
    };
    let started = Instant::now();
    let outputs: Vec<String> = thread::scope(|scope| {
        let handles: Vec<_> = scripts
            .iter()
            .zip(&cwds)
            .zip(ports)
            .map(|((script, cwd), port)| {
                let input = script.lines.join("\n") + "\n";
                scope.spawn(move || {
                    let started = Instant::now();
                    let out = run_client(port, cwd, input.as_bytes(), extra);
                    eprintln!("{name}: {} took {:?}", script.lines[0], started.elapsed());
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a client thread panicked"))
            .collect()
    });
    let elapsed = started.elapsed();
    let commands: usize = scripts.iter().map(|w| w.deterministic.len()).sum();
    let issued = server
        .wait_for_lines(|l| l.contains(" issued "), commands, WAIT)
        .len();

    // Each client's directory: its sources intact (an own download lands on its
    // source), and each file downloaded from `shared` identical to the original.
    for (i, cwd) in cwds.iter().enumerate() {
        let mut expected: BTreeMap<String, Vec<u8>> = (0..UPLOAD_SIZES.len())
            .map(|k| (source_name(i, k), source_bytes(i, k)))
            .collect();
        for k in 0..SHARED_SIZES.len() {
            if scripts[i].downloads.contains(&shared_name(k)) {
                expected.insert(shared_name(k), shared_bytes(k));
            }
        }
        assert_same_files(
            &expected,
            &snapshot(cwd),
            &format!("{name}: client {i}'s files"),
        );
    }
    RunResult {
        dir: snapshot(&dir),
        replies: outputs.iter().map(|out| replies(out)).collect(),
        issued,
        elapsed,
    }
}

#[test]
fn five_clients_through_a_lossy_proxy_end_like_a_loss_free_run() {
    const SEED: u64 = 20;
    let root = TempDir::new().unwrap();
    let scripts: Vec<Workload> = (0..CLIENTS).map(|i| workload(i, SEED)).collect();
    let commands: usize = scripts.iter().map(|w| w.deterministic.len()).sum();
    assert!(commands >= 200, "only {commands} commands");
    let used =
        |pred: &dyn Fn(&str) -> bool| scripts.iter().any(|w| w.lines.iter().any(|l| pred(l)));
    for word in ["UPD ", "DWN shared ", "EDT ", "DLT ", "RMV "] {
        assert!(used(&|l| l.starts_with(word)), "no {word} in the scripts");
    }
    let own_download = |l: &str| l.starts_with("DWN ") && !l.starts_with("DWN shared ");
    assert!(used(&own_download), "no download of an own upload");

    let direct = run_workload(root.path(), "direct", &scripts, None);
    let lossy = run_workload(root.path(), "lossy", &scripts, Some(SEED));
    eprintln!(
        "{commands} commands from {CLIENTS} clients: loss-free {:?}, lossy {:?}",
        direct.elapsed, lossy.elapsed
    );

    // The same files, byte for byte: nothing lost, nothing applied twice.
    assert_same_files(&direct.dir, &lossy.dir, "direct vs lossy DIR");
    assert!(direct.dir.contains_key("a0") && !direct.dir.contains_key("c0"));
    assert!(
        direct.dir.keys().all(|name| !name.starts_with('.')),
        "temporary files left: {:?}",
        direct.dir.keys()
    );
    // Each command reached the server's command loop exactly once: a duplicate answered
    // from the reply cache is not executed (and so not logged) again.
    assert_eq!(direct.issued, commands, "commands executed, loss-free");
    assert_eq!(lossy.issued, commands, "commands executed, lossy");
    // No message text appears twice anywhere.
    let mut seen = BTreeSet::new();
    for (name, bytes) in &lossy.dir {
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        for line in text.lines().filter(|l| l.contains(": m")) {
            let body = line.split_once(": ").map_or(line, |(_, t)| t);
            assert!(seen.insert(body.to_string()), "{body:?} twice (in {name})");
        }
    }
    // Uploads that stayed are their sources byte for byte; the removed ones are gone.
    for (i, script) in scripts.iter().enumerate() {
        for (title, file) in &script.uploads {
            let source = (0..UPLOAD_SIZES.len())
                .find(|&k| source_name(i, k) == *file)
                .expect("a source");
            assert!(lossy.dir[&format!("{title}-{file}")] == source_bytes(i, source));
        }
        let prefix = format!("c{i}");
        assert!(!lossy.dir.keys().any(|name| name.starts_with(&prefix)));
    }
    // Each client saw the same answers, where they do not depend on interleaving.
    for (i, script) in scripts.iter().enumerate() {
        let (d, l) = (&direct.replies[i], &lossy.replies[i]);
        assert_eq!(d.len(), script.deterministic.len(), "client {i}: {d:?}");
        assert_eq!(l.len(), d.len(), "client {i}: {l:?}");
        for (k, det) in script.deterministic.iter().enumerate() {
            let command = &script.lines[k + 2];
            assert!(
                !l[k].contains("not responding") && !l[k].contains("failed"),
                "client {i}, {command:?}: {}",
                l[k]
            );
            if *det {
                assert_eq!(l[k], d[k], "client {i}, command {command:?}");
            }
        }
    }
    assert_eq!(direct.replies[0][3], "Thread a0 exists\n");
}

// ---------------------------------------------------------------------------------
// 2. A 5,000-message thread read through 20% loss
// ---------------------------------------------------------------------------------

#[test]
fn a_five_thousand_message_thread_is_read_through_loss() {
    const MESSAGES: usize = 5000;
    /// Words per message, at most. Short messages keep the reply near 100 fragments:
    /// the server sends a reply's fragments back to back, and a burst much larger than
    /// a socket's receive buffer (about 200 KB) loses datagrams in the kernel as well
    /// as in the proxy, which makes the run slower and its duration a matter of luck.
    const MAX_WORDS: usize = 3;
    const SEED: u64 = 5000;
    let root = TempDir::new().unwrap();
    let dir = subdir(root.path(), "data");
    let cwd = subdir(root.path(), "client");
    write_credentials(&dir, &[("yoda", "wise@!man"), ("obiwan", "hello")]);
    // Messages of several lengths and authors, with an upload line now and then.
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let words = [
        "networks",
        "are",
        "ünïcode",
        "awesome",
        "UDP",
        "loss:",
        "€",
        "42",
    ];
    let mut file = String::from("yoda\n");
    for n in 1..=MESSAGES {
        let author = ["yoda", "obiwan"][rng.gen_range(0..2)];
        let len = rng.gen_range(1..=MAX_WORDS);
        let text: Vec<&str> = (0..len).map(|_| *words.choose(&mut rng).unwrap()).collect();
        file.push_str(&format!("{n} {author}: {}\n", text.join(" ")));
        if n % 1000 == 0 {
            let upload = format!("file{n}.txt");
            fs::write(dir.join(format!("big-{upload}")), format!("upload {n}")).unwrap();
            file.push_str(&format!("{author} uploaded {upload}\n"));
        }
    }
    fs::write(dir.join("big"), &file).unwrap();

    let server = forum_server(&dir, &[]);
    let proxy = lossy_proxy(server.addr, SEED, &["--loss", "20%"]);
    let started = Instant::now();
    let out = run_client(
        proxy.addr.port(),
        &cwd,
        b"yoda\nwise@!man\nRDT big\nXIT\n",
        &LOSSY_CLIENT,
    );
    eprintln!(
        "RDT of {} bytes through 20% loss: {:?}",
        file.len(),
        started.elapsed()
    );
    let replies = replies(&out);
    assert_eq!(replies.len(), 2, "{out}");
    let expected: String = file.lines().skip(1).map(|l| format!("{l}\n")).collect();
    assert!(
        replies[0] == expected,
        "the printed thread differs from the file ({} vs {} bytes)",
        replies[0].len(),
        expected.len()
    );
    assert_eq!(replies[1], "Goodbye\n");
    assert!(fs::read(dir.join("big")).unwrap() == file.as_bytes());
}

// ---------------------------------------------------------------------------------
// 3. SIGKILL during a stream of changes
// ---------------------------------------------------------------------------------

/// The thread the crash test changes.
const CRASH_THREAD: &str = "k";
/// How many times the server is killed.
const KILLS: usize = 15;
/// Changes per client run (the kill comes somewhere inside them).
const CHANGES: usize = 10;
/// Upload sizes of the crash test: large ones keep a transfer open long enough to be
/// interrupted.
const CRASH_SIZES: [usize; 5] = [0, 3, 70_000, 600_000, 2_000_000];

/// A line of thread [`CRASH_THREAD`], all by `yoda` (so every change is allowed).
#[derive(Clone, Debug, PartialEq)]
enum Entry {
    Message(String),
    Upload(String),
}

/// What the test expects thread [`CRASH_THREAD`] to hold.
#[derive(Clone, Debug, PartialEq)]
struct Model {
    entries: Vec<Entry>,
}

/// One change the crash test's client makes.
#[derive(Clone, Debug)]
enum Change {
    Post(String),
    Edit(usize, String),
    Delete(usize),
    Upload(String),
}

impl Change {
    fn line(&self) -> String {
        match self {
            Change::Post(text) => format!("MSG {CRASH_THREAD} {text}"),
            Change::Edit(n, text) => format!("EDT {CRASH_THREAD} {n} {text}"),
            Change::Delete(n) => format!("DLT {CRASH_THREAD} {n}"),
            Change::Upload(file) => format!("UPD {CRASH_THREAD} {file}"),
        }
    }
}

impl Model {
    fn messages(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Message(_)))
            .count()
    }

    /// The index in `entries` of message `n` (from 1).
    fn index(&self, n: usize) -> usize {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, Entry::Message(_)))
            .nth(n - 1)
            .map(|(index, _)| index)
            .expect("the script only names existing messages")
    }

    fn apply(&mut self, change: &Change) {
        match change {
            Change::Post(text) => self.entries.push(Entry::Message(text.clone())),
            Change::Edit(n, text) => {
                let index = self.index(*n);
                self.entries[index] = Entry::Message(text.clone());
            }
            Change::Delete(n) => {
                let index = self.index(*n);
                self.entries.remove(index);
            }
            Change::Upload(file) => self.entries.push(Entry::Upload(file.clone())),
        }
    }

    /// The thread file as the spec fixes it.
    fn render(&self) -> String {
        let mut out = String::from("yoda\n");
        let mut n = 0;
        for entry in &self.entries {
            match entry {
                Entry::Message(text) => {
                    n += 1;
                    out.push_str(&format!("{n} yoda: {text}\n"));
                }
                Entry::Upload(file) => out.push_str(&format!("yoda uploaded {file}\n")),
            }
        }
        out
    }

    fn uploads(&self) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Entry::Upload(file) => Some(file.clone()),
                Entry::Message(_) => None,
            })
            .collect()
    }
}

/// A client process whose stdout is collected while it runs, so it can be killed.
struct RunningClient {
    child: Child,
    stdout: thread::JoinHandle<Vec<u8>>,
}

impl RunningClient {
    fn spawn(port: u16, cwd: &Path, input: &[u8]) -> RunningClient {
        let mut child = client_command(port, cwd, input, &["--timeout", "50ms", "--retries", "3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a client");
        let mut pipe = child.stdout.take().expect("stdout is piped");
        let stdout = thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        });
        RunningClient { child, stdout }
    }

    /// Kills the client (it may have finished already) and returns what it printed.
    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bytes = self.stdout.join().expect("the stdout reader");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Whether a server log line reports a change of the crash test as done.
fn is_change_result(line: &str) -> bool {
    line == "Message has been edited"
        || line == "Message has been deleted"
        || line.starts_with("yoda uploaded file ")
        || line == format!("Message posted to {CRASH_THREAD} thread")
}

/// Whether a client line reports a change of the crash test as done.
fn is_change_reply(line: &str) -> bool {
    line == "The message has been edited"
        || line == "The message has been deleted"
        || line.ends_with(&format!(" uploaded to {CRASH_THREAD} thread"))
        || line == format!("Message posted to {CRASH_THREAD} thread")
}

#[test]
fn sigkill_during_changes_leaves_the_old_or_the_new_state() {
    const SEED: u64 = 9;
    let root = TempDir::new().unwrap();
    let dir = subdir(root.path(), "data");
    let cwd = subdir(root.path(), "client");
    write_credentials(&dir, &[("yoda", "pw")]);
    let mut model = Model {
        entries: (1..=12)
            .map(|n| Entry::Message(format!("seed {n}")))
            .collect(),
    };
    fs::write(dir.join(CRASH_THREAD), model.render()).unwrap();
    let mut sources: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (mut interrupted, mut unreported) = (0, 0);
    let started = Instant::now();

    for round in 0..KILLS {
        // A script of changes that are all valid one after the other.
        let mut states = vec![model.clone()];
        let mut changes = Vec::new();
        for step in 0..CHANGES {
            let current = states.last().expect("not empty");
            let text = format!("r{round}s{step} edited ünïcode");
            let roll = rng.gen_range(0..100);
            let change = if current.messages() < 4 || roll < 15 {
                Change::Post(text)
            } else if roll < 50 {
                Change::Edit(rng.gen_range(1..=current.messages()), text)
            } else if roll < 70 {
                Change::Delete(rng.gen_range(1..=current.messages()))
            } else {
                let file = format!("r{round}-{step}.bin");
                let size = *CRASH_SIZES.choose(&mut rng).expect("not empty");
                let bytes = random_bytes(size, (round * 100 + step) as u64);
                fs::write(cwd.join(&file), &bytes).unwrap();
                sources.insert(file.clone(), bytes);
                Change::Upload(file)
            };
            let mut next = current.clone();
            next.apply(&change);
            states.push(next);
            changes.push(change);
        }
        let mut input = String::from("yoda\npw\n");
        for change in &changes {
            input.push_str(&change.line());
            input.push('\n');
        }
        // The kill point: after the log shows the target command issued (it is being
        // executed) or done, plus a seeded pause of up to 1.5 ms to land inside an
        // fsync, a rename or a transfer. The pause is the point of the test, not a
        // wait for something that could be signalled.
        let target = rng.gen_range(1..=CHANGES);
        let after_result = rng.gen_bool(0.5);
        let pause = Duration::from_micros(rng.gen_range(0..1500));

        let mut server = forum_server(&dir, &[]);
        let client = RunningClient::spawn(server.addr.port(), &cwd, input.as_bytes());
        let seen = if after_result {
            server.wait_for_lines(is_change_result, target, WAIT)
        } else {
            server.wait_for_lines(|l| l.starts_with("yoda issued "), target, WAIT)
        };
        assert!(
            seen.len() >= target,
            "round {round}: the server log: {:?}",
            server.lines()
        );
        thread::sleep(pause);
        server.kill();
        let printed = client.kill();
        let printed_lines: Vec<&str> = printed
            .split(COMMAND_PROMPT)
            .skip(1)
            .flat_map(str::lines)
            .collect();
        let done = printed_lines.iter().filter(|l| is_change_reply(l)).count();
        for line in &printed_lines {
            assert!(
                is_change_reply(line)
                    || line.starts_with("Server not responding")
                    || line.starts_with("Upload failed")
                    || *line == "Goodbye",
                "round {round}: unexpected client line {line:?}"
            );
        }

        // What the crash left, then what a restart makes of it.
        let leftovers = snapshot(&dir)
            .into_keys()
            .filter(|name| name.starts_with('.'))
            .count();
        interrupted += usize::from(leftovers > 0);
        let store = Store::open(&dir).expect("the store opens after a crash");
        for warning in store.warnings() {
            assert!(
                warning.starts_with("deleted .forum-")
                    || warning.starts_with("finished the upload"),
                "round {round}: {warning}"
            );
        }
        let thread = store.thread(CRASH_THREAD).expect("the thread loads");
        assert_eq!(thread.creator, "yoda");
        drop(store);
        let logs: Vec<String> = fs::read_dir(&dir)
            .expect("list the directory")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| is_log_name(name))
            .collect();
        assert!(
            logs.is_empty(),
            "round {round}: logs left after the restart: {logs:?}"
        );

        let files = snapshot(&dir);
        let actual = String::from_utf8(files[CRASH_THREAD].clone()).expect("UTF-8 thread");
        let j = (done..=done + 1)
            .filter(|&j| j < states.len())
            .find(|&j| states[j].render() == actual)
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: {done} changes reported done, but the thread is neither \
                     before nor after the next one:\n{actual}\nscript:\n{input}"
                )
            });
        unreported += usize::from(j > done);
        model = states[j].clone();
        // Exactly the listed uploads are there, each complete; nothing else is.
        let expected: BTreeSet<String> = ["credentials.txt".to_string(), CRASH_THREAD.to_string()]
            .into_iter()
            .chain(
                model
                    .uploads()
                    .iter()
                    .map(|f| format!("{CRASH_THREAD}-{f}")),
            )
            .collect();
        assert_eq!(
            files.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "round {round}: files after the restart's sweep"
        );
        for file in model.uploads() {
            assert!(
                files[&format!("{CRASH_THREAD}-{file}")] == sources[&file],
                "round {round}: upload {file} is not the source byte for byte"
            );
        }
    }
    eprintln!(
        "{KILLS} kills in {:?}: {interrupted} left temporary files or a journal, \
         {unreported} changes were on disk before the client heard of them",
        started.elapsed()
    );

    // The final state is what a restarted server serves.
    let server = forum_server(&dir, &[]);
    let out = run_client(server.addr.port(), &cwd, b"yoda\npw\nRDT k\nXIT\n", &[]);
    let expected: String = model
        .render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(replies(&out)[0], expected);
}

// ---------------------------------------------------------------------------------
// 4. Hostile input
// ---------------------------------------------------------------------------------

/// A DIR with two users, a thread `good` holding a message and an upload `a.txt`, and
/// an unrelated file; a sibling directory holding a secret; and a client directory with
/// a file `ok.txt` to upload.
struct HostileSetup {
    root: TempDir,
    dir: PathBuf,
    cwd: PathBuf,
}

/// The contents of the upload `good-a.txt`.
const GOOD_UPLOAD: &[u8] = b"the upload a.txt\n";

impl HostileSetup {
    fn new() -> HostileSetup {
        let root = TempDir::new().unwrap();
        let dir = subdir(root.path(), "data");
        let cwd = subdir(root.path(), "client");
        let outside = subdir(root.path(), "outside");
        write_credentials(&dir, &[("yoda", "pw"), ("luke", "pw2")]);
        fs::write(
            dir.join("good"),
            "yoda\n1 yoda: hello\nyoda uploaded a.txt\n",
        )
        .unwrap();
        fs::write(dir.join("good-a.txt"), GOOD_UPLOAD).unwrap();
        fs::write(dir.join("notes.md"), "# not a thread\n").unwrap();
        fs::write(outside.join("secret"), "secret\n").unwrap();
        fs::write(cwd.join("ok.txt"), "local file\n").unwrap();
        HostileSetup { root, dir, cwd }
    }

    /// DIR, the sibling directory and the client's directory, as one snapshot.
    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let mut all = BTreeMap::new();
        for sub in ["data", "outside", "client"] {
            for (name, bytes) in snapshot(&self.root.path().join(sub)) {
                all.insert(format!("{sub}/{name}"), bytes);
            }
        }
        all
    }

    /// A normal session must still work: log in, list, read, download into a fresh
    /// directory (so DIR stays as it was).
    fn assert_still_serving(&self, server: &Server) {
        let fresh = TempDir::new().unwrap();
        let out = run_client(
            server.addr.port(),
            fresh.path(),
            b"yoda\npw\nLST\nRDT good\nDWN good a.txt\nXIT\n",
            &[],
        );
        assert!(out.starts_with("Enter username: Enter password: Welcome to the forum\n"));
        assert_eq!(
            replies(&out),
            [
                "The list of active threads:\ngood\n",
                "1 yoda: hello\nyoda uploaded a.txt\n",
                "a.txt successfully downloaded\n",
                "Goodbye\n"
            ]
        );
        assert!(fs::read(fresh.path().join("a.txt")).unwrap() == GOOD_UPLOAD);
    }
}

/// Asserts that `line` is a refusal a person can read: not too long (a 1 KB name is
/// shortened), no control characters (an escape sequence in a name is shown escaped).
fn assert_readable(line: &str, context: &str) {
    const MAX_REFUSAL: usize = 200;
    assert!(
        line.chars().count() <= MAX_REFUSAL,
        "{context}: a {}-character message: {line:?}",
        line.chars().count()
    );
    assert!(
        !line.chars().any(char::is_control),
        "{context}: control characters in {line:?}"
    );
}

#[test]
fn hostile_names_are_refused_and_dir_is_unchanged() {
    let setup = HostileSetup::new();
    let server = forum_server(&setup.dir, &[]);
    let before = setup.snapshot();
    let long = "n".repeat(1024);

    // (line typed, the start of the expected answer)
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"CRT ../x".to_vec(), "Invalid name ../x: contains `/`"),
        (b"CRT /etc".to_vec(), "Invalid name /etc: contains `/`"),
        (b"CRT a/b".to_vec(), "Invalid name a/b: contains `/`"),
        (b"CRT ..".to_vec(), "Invalid name ..: starts with `.`"),
        (
            b"CRT .forum-journal".to_vec(),
            "Invalid name .forum-journal: starts",
        ),
        (b"CRT -rf".to_vec(), "Invalid name -rf: starts with `-`"),
        (
            b"CRT credentials.txt".to_vec(),
            "Invalid name credentials.txt: is reserved",
        ),
        (
            b"CRT good-a.txt".to_vec(),
            "The name good-a.txt is already used",
        ),
        (
            b"CRT notes.md".to_vec(),
            "The name notes.md is already used",
        ),
        (b"CRT good".to_vec(), "Thread good exists"),
        (b"CRT a b".to_vec(), "Incorrect syntax for CRT"),
        (b"CRT  a".to_vec(), "Incorrect syntax for CRT"),
        (b"CRT a\tb".to_vec(), "Invalid name a\\tb: contains `\\t`"),
        (
            b"CRT a\x1b[2Jb".to_vec(),
            "Invalid name a\\u{1b}[2Jb: contains `\\u{1b}`",
        ),
        (b"CRT a\0b".to_vec(), "Invalid name a\\0b: contains `\\0`"),
        (
            format!("CRT {long}").into_bytes(),
            "Invalid name nnnnnnnnnn",
        ),
        (
            b"CRT \xff\xfe".to_vec(),
            "Invalid name \u{fffd}\u{fffd}: contains `\u{fffd}`",
        ),
        (
            b"CRT ok\xc3".to_vec(),
            "Invalid name ok\u{fffd}: contains `\u{fffd}`",
        ),
        (
            b"MSG ../credentials.txt hi".to_vec(),
            "Invalid name ../credentials.txt",
        ),
        (
            b"MSG credentials.txt hi".to_vec(),
            "Invalid name credentials.txt: is reserved",
        ),
        (
            b"MSG notes.md hi".to_vec(),
            "Thread notes.md does not exist",
        ),
        (b"RDT ../data/good".to_vec(), "Invalid name ../data/good"),
        (
            b"RDT credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (
            b"RDT good-a.txt".to_vec(),
            "Thread good-a.txt does not exist",
        ),
        (b"RDT \xff".to_vec(), "Invalid name \u{fffd}"),
        (b"EDT ../good 1 x".to_vec(), "Invalid name ../good"),
        (b"DLT /good 1".to_vec(), "Invalid name /good"),
        (b"RMV ..".to_vec(), "Invalid name ..: starts with `.`"),
        (
            b"RMV credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (b"RMV ../outside".to_vec(), "Invalid name ../outside"),
        (b"UPD good ../ok.txt".to_vec(), "Invalid name ../ok.txt"),
        (
            b"UPD good credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (b"UPD good a b".to_vec(), "Incorrect syntax for UPD"),
        (
            format!("UPD good {long}").into_bytes(),
            "Invalid name nnnnnnnnnn",
        ),
        (
            b"UPD good ok\xff.txt".to_vec(),
            "Invalid name ok\u{fffd}.txt",
        ),
        (b"UPD ../x ok.txt".to_vec(), "Invalid name ../x"),
        (b"UPD good\xff ok.txt".to_vec(), "Invalid name good\u{fffd}"),
        (
            format!("UPD {long} ok.txt").into_bytes(),
            "Invalid name nnnnnnnnnn",
        ),
        (b"UPD good a.txt".to_vec(), "File a.txt does not exist"),
        (
            b"DWN good ../../outside/secret".to_vec(),
            "Invalid name ../../outside/secret",
        ),
        (
            b"DWN good credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (
            b"DWN good .forum-journal".to_vec(),
            "Invalid name .forum-journal",
        ),
        (b"DWN ../good a.txt".to_vec(), "Invalid name ../good"),
        (
            b"DWN good notes.md".to_vec(),
            "File does not exist in Thread good",
        ),
        (b"DWN good \xff".to_vec(), "Invalid name \u{fffd}"),
    ];
    // Logins first: a username, a new user's password and a known user's password
    // that are not UTF-8 are refused, so no account is created under a mangled name.
    let mut input = b"lu\xffke\nnewbie\nse\xffcret\nluke\npw\xff2\nluke\npw2\n".to_vec();
    for (line, _) in &cases {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"RDT good\n");
    let out = run_client(server.addr.port(), &setup.cwd, &input, &[]);
    let login = out.split(COMMAND_PROMPT).next().unwrap_or_default();
    assert_eq!(
        login,
        "Enter username: Invalid username: use printable characters without spaces\n\
         Enter username: New user, enter password: \
         Invalid password: use printable characters without spaces\n\
         Enter username: Enter password: Invalid password\n\
         Enter username: Enter password: Welcome to the forum\n"
    );
    let replies = replies(&out);
    assert_eq!(replies.len(), cases.len() + 2, "{out}");
    for ((line, expected), reply) in cases.iter().zip(&replies) {
        let typed = String::from_utf8_lossy(line);
        let lines: Vec<&str> = reply.lines().collect();
        assert_eq!(lines.len(), 1, "{typed:?}: {reply:?}");
        assert!(
            lines[0].starts_with(expected),
            "{typed:?}: {reply:?}, not {expected:?}"
        );
        assert_readable(lines[0], &typed);
    }
    assert_eq!(replies[cases.len()], "1 yoda: hello\nyoda uploaded a.txt\n");
    // The refusals the server made reached its log readable too.
    for line in server.lines() {
        assert_readable(&line, "server log");
    }

    // The same names straight in datagrams, past the client's own checks.
    let mut raw = RawSession::new(server.addr, 0x5eed_0001);
    raw.login("yoda", "pw");
    let raw_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"UPD good ../ok.txt".to_vec(), "Invalid name ../ok.txt"),
        (
            b"UPD good credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (
            b"UPD good .forum-journal".to_vec(),
            "Invalid name .forum-journal",
        ),
        (
            format!("UPD good {long}").into_bytes(),
            "Invalid name nnnnnnnnnn",
        ),
        (
            b"UPD good a.txt".to_vec(),
            "a.txt already exists in thread good",
        ),
        (b"DWN good ../good".to_vec(), "Invalid name ../good"),
        (b"DWN good /etc/passwd".to_vec(), "Invalid name /etc/passwd"),
        (
            b"DWN good credentials.txt".to_vec(),
            "Invalid name credentials.txt",
        ),
        (b"DWN good ..".to_vec(), "Invalid name ..: starts with `.`"),
        (
            b"DWN good a\x1b]0;x\x07".to_vec(),
            "Invalid name a\\u{1b}]0;x\\u{7}",
        ),
        (b"CRT a b".to_vec(), "Incorrect syntax for CRT"),
        (b"CRT x\ny".to_vec(), "Invalid name x\\ny: contains `\\n`"),
        (b"MSG good two\nlines".to_vec(), "Invalid message"),
    ];
    for (body, expected) in &raw_cases {
        let reply = raw.call(body);
        let shown = String::from_utf8_lossy(body);
        assert_eq!(
            (reply.kind, reply.status()),
            (Kind::Reply, "NO"),
            "{shown:?}: {reply:?}"
        );
        assert!(reply.text().starts_with(expected), "{shown:?}: {reply:?}");
        assert_readable(&reply.text(), &shown);
    }
    // A body that is not UTF-8 at all is refused as a protocol error.
    for body in [&b"CRT \xff\xfe"[..], b"\xc3", b"LST \x80"] {
        let reply = raw.call(body);
        assert_eq!(reply.kind, Kind::Error, "{reply:?}");
        assert!(reply.body.contains("not valid UTF-8"), "{reply:?}");
    }
    // The session survived all that.
    let reply = raw.call(b"RDT good");
    assert_eq!(reply.text(), "1 yoda: hello\nyoda uploaded a.txt");
    assert_eq!(raw.call(b"XIT").text(), "Goodbye");

    assert_same_files(&before, &setup.snapshot(), "after hostile names");
    setup.assert_still_serving(&server);
    assert_same_files(&before, &setup.snapshot(), "after a normal session");
}

#[test]
fn forged_and_stale_sessions_get_an_error_datagram() {
    let setup = HostileSetup::new();
    // A short session timeout, so an idle session expires within the test.
    let server = forum_server(&setup.dir, &["--session-timeout", "300ms"]);
    let before = setup.snapshot();
    let mut rng = ChaCha8Rng::seed_from_u64(4);

    // A session id nobody logged in with, for every kind of command.
    for body in [
        "LST",
        "RDT good",
        "CRT forged",
        "XIT",
        "LOGIN yoda pw",
        "REGISTER x y",
    ] {
        let mut forged = RawSession::new(server.addr, rng.gen());
        let reply = forged.call(body.as_bytes());
        assert_eq!(reply.kind, Kind::Error, "{body}: {reply:?}");
        assert!(reply.body.contains("log in again"), "{body}: {reply:?}");
        assert_readable(&reply.body, body);
    }

    // A session that logged out.
    let mut gone = RawSession::new(server.addr, rng.gen());
    gone.login("yoda", "pw");
    assert_eq!(gone.call(b"XIT").text(), "Goodbye");
    let reply = gone.call(b"CRT after-logout");
    assert_eq!(reply.kind, Kind::Error, "{reply:?}");
    assert!(reply.body.contains("logged out"), "{reply:?}");

    // A session that went silent until it expired.
    let mut idle = RawSession::new(server.addr, rng.gen());
    idle.login("luke", "pw2");
    assert_eq!(idle.call(b"LST").status(), "OK");
    let expired = server.wait_for_line(|l| l == "luke timed out", WAIT);
    assert!(expired.is_some(), "no expiry in {:?}", server.lines());
    let reply = idle.call(b"MSG good stale session");
    assert_eq!(reply.kind, Kind::Error, "{reply:?}");
    assert!(
        reply.body.contains("unknown or expired session"),
        "{reply:?}"
    );

    // The expired user is free to log in again, and so is the one who left.
    let out = run_client(
        server.addr.port(),
        &setup.cwd,
        b"luke\npw2\nRDT good\nXIT\n",
        &["--heartbeat", "50ms"],
    );
    assert!(out.contains("Welcome to the forum"), "{out}");
    assert_eq!(replies(&out)[0], "1 yoda: hello\nyoda uploaded a.txt\n");
    assert_same_files(&before, &setup.snapshot(), "after stale sessions");
    setup.assert_still_serving(&server);
}

#[test]
fn junk_on_the_transfer_port_is_harmless() {
    let setup = HostileSetup::new();
    let server = forum_server(&setup.dir, &[]);
    let before = setup.snapshot();
    let tcp = server.addr;
    let connect = || {
        let stream = TcpStream::connect_timeout(&tcp, WAIT).expect("connect to the transfer port");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    };
    // One connection that says nothing stays open through all of the rest: a silent
    // peer must not hold up anyone else.
    let silent = connect();

    // Connect and close.
    drop(connect());
    // An HTTP request: its first four bytes announce a header far over the limit.
    let mut http = connect();
    http.write_all(b"GET /credentials.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_for_close(&mut http);
    // A length prefix of 4 GiB.
    let mut huge = connect();
    huge.write_all(&[0xff; 8]).unwrap();
    wait_for_close(&mut huge);
    // Seeded random bytes.
    let mut garbage = connect();
    garbage.write_all(&random_bytes(10_000, 77)).unwrap();
    wait_for_close(&mut garbage);
    // A well-formed prefix followed by something that is not JSON.
    let mut not_json = connect();
    not_json.write_all(&[0, 0, 0, 5]).unwrap();
    not_json.write_all(b"hello").unwrap();
    wait_for_close(&mut not_json);

    // Valid-looking headers with a token the server never issued, for an upload
    // (with its body following at once) and for a download.
    let body = b"overwrite good-a.txt";
    let forged_upload = json!({
        "version": 1, "token": "0123456789abcdef0123456789abcdef",
        "size": body.len(), "sha256": sha256_hex(body),
    });
    let forged_download = json!({"version": 1, "token": "ffffffffffffffffffffffffffffffff"});
    for header in [&forged_upload, &forged_download] {
        let mut stream = connect();
        write_frame(&mut stream, header);
        let response = read_frame(&mut stream).expect("a refusal");
        assert_eq!(response["ok"], json!(false), "{response}");
        assert_eq!(
            response["message"],
            json!("unknown or expired transfer token")
        );
        wait_for_close(&mut stream);
    }

    // Tokens are one-time: a real download token works once, then never again.
    let mut raw = RawSession::new(server.addr, 0x70_6b65);
    raw.login("yoda", "pw");
    let reply = raw.call(b"DWN good a.txt");
    let token = reply
        .status()
        .strip_prefix("DOWNLOAD ")
        .and_then(|rest| rest.split(' ').next())
        .expect("a download token")
        .to_string();
    let download = json!({"version": 1, "token": token});
    let mut first = connect();
    write_frame(&mut first, &download);
    let response = read_frame(&mut first).expect("a download header");
    assert_eq!(response["ok"], json!(true), "{response}");
    let mut received = Vec::new();
    first.read_to_end(&mut received).unwrap();
    assert!(received == GOOD_UPLOAD);
    let mut again = connect();
    write_frame(&mut again, &download);
    assert_eq!(
        read_frame(&mut again).expect("a refusal")["ok"],
        json!(false)
    );
    wait_for_close(&mut again);

    // A real upload token, with a body that does not match its checksum, and with a
    // body cut short: neither leaves a file behind.
    for cut_short in [false, true] {
        let reply = raw.call(b"UPD good new.txt");
        let token = reply
            .status()
            .strip_prefix("UPLOAD ")
            .expect("an upload token");
        let mut stream = connect();
        let header = json!({
            "version": 1, "token": token, "size": 1000, "sha256": sha256_hex(b"other"),
        });
        write_frame(&mut stream, &header);
        assert_eq!(
            read_frame(&mut stream).expect("a go-ahead")["ok"],
            json!(true)
        );
        if cut_short {
            stream.write_all(&[7; 10]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
        } else {
            stream.write_all(&[7; 1000]).unwrap();
            let response = read_frame(&mut stream).expect("a verdict");
            assert_eq!(response["ok"], json!(false), "{response}");
            assert!(response["message"].as_str().unwrap().contains("damaged"));
        }
        wait_for_close(&mut stream);
        assert_same_files(&before, &setup.snapshot(), "after a bad upload");
    }

    assert_eq!(raw.call(b"XIT").text(), "Goodbye");
    drop(silent);
    assert_same_files(
        &before,
        &setup.snapshot(),
        "after junk on the transfer port",
    );
    setup.assert_still_serving(&server);
}

#[test]
fn oversized_and_random_datagrams_do_not_stop_the_server() {
    /// The largest UDP payload IPv4 can carry.
    const LARGEST: usize = 65_507;
    const RANDOM: usize = 10_000;
    /// After this many random datagrams, wait for a reply to a probe, so the server has
    /// read them all before more come: its socket's receive buffer holds only about a
    /// hundred, and the datagrams are meant to reach the server, not the kernel's floor.
    const FENCE_EVERY: usize = 50;
    let setup = HostileSetup::new();
    let server = forum_server(&setup.dir, &[]);
    let before = setup.snapshot();
    let started = Instant::now();

    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood.connect(server.addr).unwrap();
    flood.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
    // A datagram as large as UDP allows, starting like a real request.
    let mut largest = Repr {
        kind: Kind::Request,
        session: 1,
        request: 1,
        frag: 0,
        count: 1,
        body: b"HELLO yoda",
    }
    .to_vec();
    largest.resize(LARGEST, b'x');
    flood.send(&largest).expect("send a 65,507-byte datagram");
    let mut buffer = [0u8; RAW_BUFFER];
    assert!(
        flood.recv(&mut buffer).is_err(),
        "the server answered an oversized datagram"
    );

    // A probe: a forged session's request, always answered with an Error datagram.
    let mut probe = RawSession::new(server.addr, 0x0bad_5e55);
    let mut fence = || {
        let reply = probe.call(b"LST");
        assert_eq!(reply.kind, Kind::Error, "{reply:?}");
    };
    fence();

    let mut rng = ChaCha8Rng::seed_from_u64(10_000);
    let bodies: [&[u8]; 10] = [
        b"HELLO yoda",
        b"HELLO mallory",
        b"LOGIN yoda wrong-password",
        b"LST",
        b"RDT good",
        b"CRT evil",
        b"XIT",
        b"UPD good a.txt",
        b"\xff\xfe\xfd",
        b"",
    ];
    for n in 0..RANDOM {
        let datagram = match rng.gen_range(0..4) {
            // Anything at all.
            0 => {
                let mut bytes = vec![0u8; rng.gen_range(0..1400)];
                rng.fill_bytes(&mut bytes);
                bytes
            }
            // The right magic and version, then anything.
            1 => {
                let mut bytes = vec![0u8; rng.gen_range(HEADER_LEN - 4..1400)];
                rng.fill_bytes(&mut bytes);
                bytes[..2].copy_from_slice(&MAGIC);
                bytes[2] = VERSION;
                bytes
            }
            // A well-formed header of a random kind and fields, a plausible body.
            2 => {
                let body = bodies.choose(&mut rng).expect("not empty");
                let count = rng.gen_range(1..4);
                Repr {
                    kind: Kind::from(rng.gen_range(0..8u8)),
                    session: rng.gen_range(0..4),
                    request: rng.gen_range(0..4),
                    frag: rng.gen_range(0..count),
                    count,
                    body,
                }
                .to_vec()
            }
            // A well-formed request of a random session, with one byte flipped.
            _ => {
                let mut bytes = Repr {
                    kind: Kind::Request,
                    session: rng.gen(),
                    request: rng.gen(),
                    frag: 0,
                    count: 1,
                    body: bodies.choose(&mut rng).expect("not empty"),
                }
                .to_vec();
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
                bytes
            }
        };
        // A full socket buffer may refuse a send; the datagram is then simply lost.
        let _ = flood.send(&datagram);
        if (n + 1) % FENCE_EVERY == 0 {
            fence();
        }
    }
    eprintln!("{RANDOM} random datagrams in {:?}", started.elapsed());

    assert_same_files(&before, &setup.snapshot(), "after random datagrams");
    setup.assert_still_serving(&server);
    assert_same_files(&before, &setup.snapshot(), "after a normal session");
}
