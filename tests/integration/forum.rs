//! `socklab forum` (lab 3), part 1: whole sessions of the real client against the real
//! server, checked byte for byte against forum-spec.md: what the client prints, what
//! the server logs, and what lands in the data directory (threads, `credentials.txt`,
//! uploads) and in the client's directory (downloads).
//!
//! - one client after another: the spec's Yoda then Obi-wan walk-through;
//! - two clients at once, taking turns in a fixed order: duplicate login, concurrent
//!   commands, renumbering after `DLT`, refusals for the non-creator;
//! - every client message of the spec's command table, login and syntax errors, and
//!   "Server not responding" (with the server down, then back);
//! - liveness: a killed client's user is locked out only until its session expires,
//!   while an idle client that sends heartbeats keeps its session;
//! - persistence: a server stopped with SIGINT and restarted on the same DIR shows the
//!   same forum.
//!
//! The harness at the top runs clients two ways. [`Forum::run_client`] pipes a whole
//! script into a client and returns its stdout, for sequential sessions. [`Client`]
//! drives a client one line at a time, reading its stdout up to the next prompt, so
//! two clients can take turns in an order the test fixes (nothing else orders them,
//! since each waits for its reply before the next line is sent).

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use socklab::forum::store::is_log_name;
use tempfile::TempDir;

use crate::util::{run_with_input, socklab, stdout, Server};

/// The prompt before each command, as a literal so `concat!` can build transcripts.
macro_rules! command_prompt {
    () => {
        "Enter one of the following commands: CRT, MSG, DLT, EDT, LST, RDT, UPD, DWN, RMV, XIT: "
    };
}

/// The literal `text`, then the command prompt: what a client prints for one command.
macro_rules! then_prompt {
    ($($text:expr),* $(,)?) => {
        concat!($($text,)* command_prompt!())
    };
}

/// The command prompt, then the literal `text`: a command's part of a piped session.
macro_rules! after_prompt {
    ($($text:expr),* $(,)?) => {
        concat!(command_prompt!(), $($text,)*)
    };
}

/// The prompt before each command (forum-spec.md, "Commands").
const PROMPT: &str = command_prompt!();
/// The login prompts (forum-spec.md, "Login").
const USERNAME: &str = "Enter username: ";
const PASSWORD: &str = "Enter password: ";
const NEW_PASSWORD: &str = "New user, enter password: ";
/// Every prompt: a client waiting for a line has printed one of these last.
const PROMPTS: [&str; 4] = [PROMPT, USERNAME, PASSWORD, NEW_PASSWORD];

/// The forum server's readiness line on stderr.
const READY: &str = "forum server listening on";
/// Limit for a whole scripted client session.
const T: Duration = Duration::from_secs(20);
/// Limit for one reply, one server log line, one client exit.
const WAIT: Duration = Duration::from_secs(10);

/// The spec's example users (forum-spec.md, "Starting").
const YODA: &str = "yoda wise@!man\n";
const R2D2: &str = "r2d2 do*!@#dedo\n";

/// The file Yoda uploads: binary, with NUL, 0xff and a CR LF, so any text-mode
/// mangling on the way shows.
const TEST_EXE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\xff\xff\r\nA lightsaber\x00\n";
/// The file R2D2 uploads.
const R2_BIN: &[u8] = b"\x00\x01\x02beep\r\nboop\xfe\xff";

/// A forum server on a free port with its data directory, plus room for the clients'
/// working directories, all in one temporary directory.
struct Forum {
    root: TempDir,
    server: Server,
}

impl Forum {
    /// A server whose DIR starts with `credentials` in credentials.txt; `extra` are
    /// more server options (`--session-timeout 1s`).
    fn start(credentials: &str, extra: &[&str]) -> Forum {
        let root = tempfile::tempdir().expect("create a temporary directory");
        let data = root.path().join("data");
        fs::create_dir(&data).expect("create DIR");
        fs::write(data.join("credentials.txt"), credentials).expect("write credentials");
        let server = start_server(&data, "0", extra);
        Forum { root, server }
    }

    /// The server's DIR.
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The server's port, for command lines.
    fn port(&self) -> String {
        self.server.port()
    }

    /// A new working directory for a client, holding `files`.
    fn client_dir(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = self.root.path().join(name);
        fs::create_dir(&dir).expect("create a client directory");
        for (file, bytes) in files {
            fs::write(dir.join(file), bytes).expect("write a client file");
        }
        dir
    }

    /// Runs a client in `cwd` with `script` on its stdin to the end; returns its stdout.
    fn run_client(&self, cwd: &Path, script: &str) -> String {
        let output = run_with_input(
            socklab()
                .current_dir(cwd)
                .args(["forum", "client", &self.port()]),
            script,
            T,
        );
        assert!(
            output.status.success(),
            "client exit {:?}, stderr: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        stdout(&output)
    }

    /// A client in `cwd` driven line by line, with `extra` client options.
    fn client(&self, cwd: &Path, extra: &[&str]) -> Client {
        Client::start(&self.port(), cwd, extra)
    }

    /// The server log once it has `count` lines, as text with a newline after each.
    fn log(&self, count: usize) -> String {
        let lines = self.server.wait_for_lines(|_| true, count, WAIT);
        assert!(
            lines.len() >= count,
            "the server logged {} lines, not {count}: {lines:#?}",
            lines.len()
        );
        lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Stops the server with SIGINT and starts it again on the same DIR and `port`
    /// ("0": any free port), with `extra` options.
    fn restart(&mut self, port: &str, extra: &[&str]) {
        let status = self.server.interrupt(WAIT);
        assert!(status.success(), "server exit after SIGINT: {status:?}");
        self.server = start_server(&self.data(), port, extra);
    }
}

/// `socklab forum server PORT --dir DIR EXTRA...`, ready.
fn start_server(data: &Path, port: &str, extra: &[&str]) -> Server {
    let dir = data.to_str().expect("temporary paths are UTF-8");
    let mut args = vec!["forum", "server", port, "--dir", dir];
    args.extend_from_slice(extra);
    Server::start_in(&args, READY, None)
}

/// The number of lines in `text`: how many log lines a literal expects.
fn line_count(text: &str) -> usize {
    text.lines().count()
}

/// Every entry in `dir`, hidden ones too, sorted; but not the store's write-ahead log,
/// which is there while the server runs.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read a directory")
        .map(|entry| {
            entry
                .expect("read a directory entry")
                .file_name()
                .into_string()
                .expect("names are UTF-8")
        })
        .filter(|name| !is_log_name(name))
        .collect();
    names.sort();
    names
}

/// The contents of `dir/name` as text.
fn read_text(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The contents of `dir/name`.
fn read_bytes(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// A client driven one line at a time, with its stdout read up to each prompt.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Chunks of stdout from a reader thread; disconnected at end of output.
    chunks: Receiver<Vec<u8>>,
    /// Everything the client printed, for failure messages.
    transcript: Vec<u8>,
    /// Where the output not yet returned by [`Client::send`] starts.
    unread: usize,
}

impl Client {
    /// Starts `socklab forum client PORT EXTRA...` in `cwd` and checks that it asks
    /// for a username first.
    fn start(port: &str, cwd: &Path, extra: &[&str]) -> Client {
        let mut child = socklab()
            .current_dir(cwd)
            .args(["forum", "client", port])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the client");
        let stdin = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout is piped");
        let (tx, chunks) = mpsc::channel();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                match out.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buffer[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            chunks,
            transcript: Vec::new(),
            unread: 0,
        };
        assert_eq!(client.read_reply(), USERNAME);
        client
    }

    /// Types `line`; returns what the client prints until it waits again (ending in
    /// a prompt) or, after `XIT`, until its output ends.
    fn send(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().expect("the client's stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("write to the client");
        self.read_reply()
    }

    /// Types `line` and asserts that the client answers exactly `expected`.
    fn step(&mut self, line: &str, expected: &str) {
        let reply = self.send(line);
        assert_eq!(reply, expected, "reply to {line:?}");
    }

    fn read_reply(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let fresh = String::from_utf8_lossy(&self.transcript[self.unread..]).into_owned();
            if PROMPTS.iter().any(|prompt| fresh.ends_with(prompt)) {
                self.unread = self.transcript.len();
                return fresh;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.transcript.extend_from_slice(&chunk),
                Err(RecvTimeoutError::Disconnected) => {
                    self.unread = self.transcript.len();
                    return fresh;
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no prompt from the client within {WAIT:?}; its output:\n{}",
                    String::from_utf8_lossy(&self.transcript)
                ),
            }
        }
    }

    /// Waits for the client to exit (after `XIT`, or once its stdin is closed).
    fn wait_exit(&mut self) -> ExitStatus {
        self.stdin = None;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the client") {
                return status;
            }
            assert!(Instant::now() < deadline, "the client did not exit");
            // A child's exit cannot be awaited with a timeout in std: poll it.
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the client with SIGKILL: it vanishes without `XIT`.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The spec's sequential walk-through: Yoda, then the new user Obi-wan.
#[test]
fn yoda_then_obi_wan_sequential_session() {
    let forum = Forum::start(YODA, &[]);
    let yoda_dir = forum.client_dir("yoda", &[("test.exe", TEST_EXE)]);
    let obi_dir = forum.client_dir("obi-wan", &[]);

    let yoda = forum.run_client(
        &yoda_dir,
        "yoda\nwise@man\nyoda\nwise@!man\nLST\nHELP\nCRT 3331\nCRT 3331\nCRT 9331\n\
         LST 3331\nLST\nMSG 3331 Networks is awesome\nRDT\nRDT 9331\nRDT 3331\n\
         UPD 3331 test.exe\nRDT 3331\nRMV 9331\nXIT\n",
    );
    assert_eq!(
        yoda,
        concat!(
            "Enter username: Enter password: Invalid password\n",
            "Enter username: Enter password: Welcome to the forum\n",
            after_prompt!("No threads to list\n"),
            after_prompt!("Invalid command\n"),
            after_prompt!("Thread 3331 created\n"),
            after_prompt!("Thread 3331 exists\n"),
            after_prompt!("Thread 9331 created\n"),
            after_prompt!("Incorrect syntax for LST\n"),
            after_prompt!("The list of active threads:\n3331\n9331\n"),
            after_prompt!("Message posted to 3331 thread\n"),
            after_prompt!("Incorrect syntax for RDT\n"),
            after_prompt!("Thread 9331 is empty\n"),
            after_prompt!("1 yoda: Networks is awesome\n"),
            after_prompt!("test.exe uploaded to 3331 thread\n"),
            after_prompt!("1 yoda: Networks is awesome\nyoda uploaded test.exe\n"),
            after_prompt!("Thread 9331 removed\n"),
            after_prompt!("Goodbye\n"),
        )
    );
    assert_eq!(
        read_text(&forum.data(), "3331"),
        "yoda\n1 yoda: Networks is awesome\nyoda uploaded test.exe\n"
    );

    let obi_wan = forum.run_client(
        &obi_dir,
        "Obi-wan\nhello@there\nCRT jedi\nMSG 3331 Hello there\nMSG jedi Use the force\n\
         LST\nRDT 7777\nRDT 3331\nDWN 3331 map.png\nDWN 3331 test.exe\n\
         EDT 3331 1 Networks is hard\nEDT 3331 2 General Kenobi\nRMV 3331\nRMV jedi\n\
         LST\nXIT\n",
    );
    assert_eq!(
        obi_wan,
        concat!(
            "Enter username: New user, enter password: Welcome to the forum\n",
            after_prompt!("Thread jedi created\n"),
            after_prompt!("Message posted to 3331 thread\n"),
            after_prompt!("Message posted to jedi thread\n"),
            after_prompt!("The list of active threads:\n3331\njedi\n"),
            after_prompt!("Thread 7777 does not exist\n"),
            after_prompt!(
                "1 yoda: Networks is awesome\nyoda uploaded test.exe\n2 Obi-wan: Hello there\n"
            ),
            after_prompt!("File does not exist in Thread 3331\n"),
            after_prompt!("test.exe successfully downloaded\n"),
            after_prompt!("The message belongs to another user and cannot be edited\n"),
            after_prompt!("The message has been edited\n"),
            after_prompt!("The thread was created by another user and cannot be removed\n"),
            after_prompt!("Thread jedi removed\n"),
            after_prompt!("The list of active threads:\n3331\n"),
            after_prompt!("Goodbye\n"),
        )
    );

    // Syntax errors ("HELP", "LST 3331", "RDT") never reach the server.
    let expected_log = "\
Waiting for clients
Client authenticating
Incorrect password
Client authenticating
yoda successful login
yoda issued LST command
yoda issued CRT command
Thread 3331 created
yoda issued CRT command
Thread 3331 exists
yoda issued CRT command
Thread 9331 created
yoda issued LST command
yoda issued MSG command
Message posted to 3331 thread
yoda issued RDT command
Thread 9331 read
yoda issued RDT command
Thread 3331 read
yoda issued UPD command
yoda uploaded file test.exe to 3331 thread
yoda issued RDT command
Thread 3331 read
yoda issued RMV command
Thread 9331 removed
yoda issued XIT command
yoda exited
Client authenticating
New user
Obi-wan successfully logged in
Obi-wan issued CRT command
Thread jedi created
Obi-wan issued MSG command
Message posted to 3331 thread
Obi-wan issued MSG command
Message posted to jedi thread
Obi-wan issued LST command
Obi-wan issued RDT command
Thread 7777 does not exist
Obi-wan issued RDT command
Thread 3331 read
Obi-wan issued DWN command
File does not exist in Thread 3331
Obi-wan issued DWN command
test.exe downloaded from Thread 3331
Obi-wan issued EDT command
The message belongs to another user and cannot be edited
Obi-wan issued EDT command
Message has been edited
Obi-wan issued RMV command
The thread was created by another user and cannot be removed
Obi-wan issued RMV command
Thread jedi removed
Obi-wan issued LST command
Obi-wan issued XIT command
Obi-wan exited
";
    assert_eq!(forum.log(line_count(expected_log)), expected_log);

    let data = forum.data();
    assert_eq!(
        names_in(&data),
        ["3331", "3331-test.exe", "credentials.txt"]
    );
    assert_eq!(
        read_text(&data, "3331"),
        "yoda\n1 yoda: Networks is awesome\nyoda uploaded test.exe\n2 Obi-wan: General Kenobi\n"
    );
    assert_eq!(read_bytes(&data, "3331-test.exe"), TEST_EXE);
    assert_eq!(
        read_text(&data, "credentials.txt"),
        "yoda wise@!man\nObi-wan hello@there\n"
    );
    assert_eq!(names_in(&obi_dir), ["test.exe"]);
    assert_eq!(read_bytes(&obi_dir, "test.exe"), TEST_EXE);
    assert_eq!(names_in(&yoda_dir), ["test.exe"]);
    assert_eq!(read_bytes(&yoda_dir, "test.exe"), TEST_EXE);
}

/// Yoda and R2D2 at once, taking turns in a fixed order.
#[test]
fn yoda_and_r2d2_concurrent_session() {
    let credentials = format!("{YODA}{R2D2}");
    let forum = Forum::start(&credentials, &[]);
    let yoda_dir = forum.client_dir("yoda", &[("test.exe", TEST_EXE)]);
    let r2d2_dir = forum.client_dir("r2d2", &[("r2.bin", R2_BIN)]);
    let data = forum.data();
    let mut yoda = forum.client(&yoda_dir, &[]);
    let mut r2d2 = forum.client(&r2d2_dir, &[]);

    yoda.step("yoda", PASSWORD);
    yoda.step("wise@!man", then_prompt!("Welcome to the forum\n"));
    // The same user on a second client is refused, and asked for a username again.
    r2d2.step("yoda", "yoda has already logged in\nEnter username: ");
    r2d2.step("r2d2", PASSWORD);
    r2d2.step("do*!@#dedo", then_prompt!("Welcome to the forum\n"));

    yoda.step("CRT 3331", then_prompt!("Thread 3331 created\n"));
    r2d2.step("CRT 3331", then_prompt!("Thread 3331 exists\n"));
    r2d2.step("CRT 9331", then_prompt!("Thread 9331 created\n"));
    yoda.step(
        "MSG 3331 Networks is awesome",
        then_prompt!("Message posted to 3331 thread\n"),
    );
    r2d2.step(
        "MSG 3331 Beep boop",
        then_prompt!("Message posted to 3331 thread\n"),
    );
    yoda.step(
        "MSG 3331 Trust the force",
        then_prompt!("Message posted to 3331 thread\n"),
    );
    r2d2.step(
        "MSG 9331 Bleep",
        then_prompt!("Message posted to 9331 thread\n"),
    );
    yoda.step(
        "UPD 3331 test.exe",
        then_prompt!("test.exe uploaded to 3331 thread\n"),
    );
    r2d2.step(
        "UPD 9331 r2.bin",
        then_prompt!("r2.bin uploaded to 9331 thread\n"),
    );
    r2d2.step(
        "DWN 3331 test.exe",
        then_prompt!("test.exe successfully downloaded\n"),
    );
    yoda.step(
        "DWN 9331 r2.bin",
        then_prompt!("r2.bin successfully downloaded\n"),
    );
    yoda.step(
        "LST",
        then_prompt!("The list of active threads:\n3331\n9331\n"),
    );
    r2d2.step(
        "RDT 3331",
        then_prompt!(
            "1 yoda: Networks is awesome\n2 r2d2: Beep boop\n3 yoda: Trust the force\n",
            "yoda uploaded test.exe\n"
        ),
    );

    // Only the author deletes; the later messages move up and keep their authors.
    r2d2.step(
        "DLT 3331 1",
        then_prompt!("The message belongs to another user and cannot be deleted\n"),
    );
    yoda.step("DLT 3331 1", then_prompt!("The message has been deleted\n"));
    assert_eq!(
        read_text(&data, "3331"),
        "yoda\n1 r2d2: Beep boop\n2 yoda: Trust the force\nyoda uploaded test.exe\n"
    );
    r2d2.step(
        "RDT 3331",
        then_prompt!("1 r2d2: Beep boop\n2 yoda: Trust the force\nyoda uploaded test.exe\n"),
    );
    r2d2.step("DLT 3331 1", then_prompt!("The message has been deleted\n"));
    assert_eq!(
        read_text(&data, "3331"),
        "yoda\n1 yoda: Trust the force\nyoda uploaded test.exe\n"
    );

    // Anyone may upload to any thread; only the creator removes it, files and all.
    yoda.step(
        "UPD 9331 test.exe",
        then_prompt!("test.exe uploaded to 9331 thread\n"),
    );
    assert_eq!(
        read_text(&data, "9331"),
        "r2d2\n1 r2d2: Bleep\nr2d2 uploaded r2.bin\nyoda uploaded test.exe\n"
    );
    r2d2.step(
        "RMV 3331",
        then_prompt!("The thread was created by another user and cannot be removed\n"),
    );
    yoda.step(
        "RMV 9331",
        then_prompt!("The thread was created by another user and cannot be removed\n"),
    );
    r2d2.step("RMV 9331", then_prompt!("Thread 9331 removed\n"));
    yoda.step("RDT 9331", then_prompt!("Thread 9331 does not exist\n"));
    yoda.step("XIT", "Goodbye\n");
    r2d2.step("XIT", "Goodbye\n");
    assert!(yoda.wait_exit().success());
    assert!(r2d2.wait_exit().success());

    let expected_log = "\
Waiting for clients
Client authenticating
yoda successful login
Client authenticating
yoda has already logged in
Client authenticating
r2d2 successful login
yoda issued CRT command
Thread 3331 created
r2d2 issued CRT command
Thread 3331 exists
r2d2 issued CRT command
Thread 9331 created
yoda issued MSG command
Message posted to 3331 thread
r2d2 issued MSG command
Message posted to 3331 thread
yoda issued MSG command
Message posted to 3331 thread
r2d2 issued MSG command
Message posted to 9331 thread
yoda issued UPD command
yoda uploaded file test.exe to 3331 thread
r2d2 issued UPD command
r2d2 uploaded file r2.bin to 9331 thread
r2d2 issued DWN command
test.exe downloaded from Thread 3331
yoda issued DWN command
r2.bin downloaded from Thread 9331
yoda issued LST command
r2d2 issued RDT command
Thread 3331 read
r2d2 issued DLT command
The message belongs to another user and cannot be deleted
yoda issued DLT command
Message has been deleted
r2d2 issued RDT command
Thread 3331 read
r2d2 issued DLT command
Message has been deleted
yoda issued UPD command
yoda uploaded file test.exe to 9331 thread
r2d2 issued RMV command
The thread was created by another user and cannot be removed
yoda issued RMV command
The thread was created by another user and cannot be removed
r2d2 issued RMV command
Thread 9331 removed
yoda issued RDT command
Thread 9331 does not exist
yoda issued XIT command
yoda exited
r2d2 issued XIT command
r2d2 exited
";
    assert_eq!(forum.log(line_count(expected_log)), expected_log);

    assert_eq!(
        names_in(&data),
        ["3331", "3331-test.exe", "credentials.txt"]
    );
    assert_eq!(read_bytes(&data, "3331-test.exe"), TEST_EXE);
    assert_eq!(read_text(&data, "credentials.txt"), credentials);
    assert_eq!(names_in(&yoda_dir), ["r2.bin", "test.exe"]);
    assert_eq!(read_bytes(&yoda_dir, "r2.bin"), R2_BIN);
    assert_eq!(names_in(&r2d2_dir), ["r2.bin", "test.exe"]);
    assert_eq!(read_bytes(&r2d2_dir, "test.exe"), TEST_EXE);
}

/// Which of the two clients of [`STEPS`] types a line.
#[derive(Clone, Copy)]
enum Who {
    Yoda,
    R2d2,
}

/// Each line typed, and the client's exact answer up to its next prompt. Together
/// the answers hold every message of [`SPEC_MESSAGES`].
#[rustfmt::skip] // a table reads best one row a line
const STEPS: &[(Who, &str, &str)] = &[
    // Login: a wrong password, a second login of a logged-in user, a new user.
    (Who::Yoda, "yoda", PASSWORD),
    (Who::Yoda, "wise@man", "Invalid password\nEnter username: "),
    (Who::Yoda, "yoda", PASSWORD),
    (Who::Yoda, "wise@!man", then_prompt!("Welcome to the forum\n")),
    (Who::R2d2, "yoda", "yoda has already logged in\nEnter username: "),
    (Who::R2d2, "r2d2", NEW_PASSWORD),
    (Who::R2d2, "do*!@#dedo", then_prompt!("Welcome to the forum\n")),
    // Typos, answered by the client itself.
    (Who::Yoda, "LST", then_prompt!("No threads to list\n")),
    (Who::Yoda, "HELP", then_prompt!("Invalid command\n")),
    (Who::Yoda, "crt 3331", then_prompt!("Invalid command\n")),
    (Who::Yoda, "CRT", then_prompt!("Incorrect syntax for CRT\n")),
    (Who::Yoda, "CRT 3331 4441", then_prompt!("Incorrect syntax for CRT\n")),
    (Who::Yoda, "MSG 3331", then_prompt!("Incorrect syntax for MSG\n")),
    (Who::Yoda, "DLT 3331", then_prompt!("Incorrect syntax for DLT\n")),
    (Who::Yoda, "DLT 3331 one", then_prompt!("Incorrect syntax for DLT\n")),
    (Who::Yoda, "EDT 3331 1", then_prompt!("Incorrect syntax for EDT\n")),
    (Who::Yoda, "LST 3331", then_prompt!("Incorrect syntax for LST\n")),
    (Who::Yoda, "RDT", then_prompt!("Incorrect syntax for RDT\n")),
    (Who::Yoda, "UPD 3331", then_prompt!("Incorrect syntax for UPD\n")),
    (Who::Yoda, "DWN 3331", then_prompt!("Incorrect syntax for DWN\n")),
    (Who::Yoda, "RMV", then_prompt!("Incorrect syntax for RMV\n")),
    (Who::Yoda, "XIT now", then_prompt!("Incorrect syntax for XIT\n")),
    // CRT, MSG, LST, RDT.
    (Who::Yoda, "CRT 3331", then_prompt!("Thread 3331 created\n")),
    (Who::Yoda, "CRT 3331", then_prompt!("Thread 3331 exists\n")),
    (Who::Yoda, "MSG 3331 Networks is awesome", then_prompt!("Message posted to 3331 thread\n")),
    (Who::Yoda, "MSG 4441 Anyone there?", then_prompt!("Thread 4441 does not exist\n")),
    (Who::Yoda, "LST", then_prompt!("The list of active threads:\n3331\n")),
    (Who::Yoda, "RDT 3331", then_prompt!("1 yoda: Networks is awesome\n")),
    (Who::Yoda, "RDT 4441", then_prompt!("Thread 4441 does not exist\n")),
    (Who::R2d2, "CRT 5551", then_prompt!("Thread 5551 created\n")),
    (Who::R2d2, "RDT 5551", then_prompt!("Thread 5551 is empty\n")),
    // UPD and DWN.
    (Who::Yoda, "UPD 3331 test.exe", then_prompt!("test.exe uploaded to 3331 thread\n")),
    (Who::Yoda, "UPD 3331 test.exe", then_prompt!("test.exe already exists in thread 3331\n")),
    (Who::Yoda, "UPD 4441 test.exe", then_prompt!("Thread 4441 does not exist\n")),
    (Who::Yoda, "UPD 3331 plans.pdf", then_prompt!("File plans.pdf does not exist\n")),
    (Who::R2d2, "DWN 3331 test.exe", then_prompt!("test.exe successfully downloaded\n")),
    (Who::R2d2, "DWN 3331 plans.pdf", then_prompt!("File does not exist in Thread 3331\n")),
    (Who::R2d2, "DWN 4441 test.exe", then_prompt!("Thread 4441 does not exist\n")),
    // EDT and DLT: message 1 is Yoda's, message 2 R2D2's.
    (Who::R2d2, "MSG 3331 Beep", then_prompt!("Message posted to 3331 thread\n")),
    (Who::R2d2, "EDT 3331 1 Beep boop", then_prompt!("The message belongs to another user and cannot be edited\n")),
    (Who::R2d2, "EDT 3331 3 Beep boop", then_prompt!("Message 3 does not exist in thread 3331\n")),
    (Who::R2d2, "EDT 4441 1 Beep boop", then_prompt!("Thread 4441 does not exist\n")),
    (Who::R2d2, "EDT 3331 2 Beep boop", then_prompt!("The message has been edited\n")),
    (Who::R2d2, "DLT 3331 1", then_prompt!("The message belongs to another user and cannot be deleted\n")),
    (Who::R2d2, "DLT 3331 3", then_prompt!("Message 3 does not exist in thread 3331\n")),
    (Who::R2d2, "DLT 4441 1", then_prompt!("Thread 4441 does not exist\n")),
    (Who::R2d2, "DLT 3331 2", then_prompt!("The message has been deleted\n")),
    // RMV, then XIT.
    (Who::R2d2, "RMV 3331", then_prompt!("The thread was created by another user and cannot be removed\n")),
    (Who::R2d2, "RMV 4441", then_prompt!("Thread 4441 does not exist\n")),
    (Who::Yoda, "RMV 3331", then_prompt!("Thread 3331 removed\n")),
    (Who::R2d2, "RMV 5551", then_prompt!("Thread 5551 removed\n")),
    (Who::Yoda, "LST", then_prompt!("No threads to list\n")),
    (Who::Yoda, "XIT", "Goodbye\n"),
    (Who::R2d2, "XIT", "Goodbye\n"),
];

/// Every client message of forum-spec.md (login, the command table, typos), with
/// t = 3331 or 4441, f = test.exe or plans.pdf, n = 3.
const SPEC_MESSAGES: &[&str] = &[
    // Login.
    USERNAME,
    PASSWORD,
    NEW_PASSWORD,
    "Welcome to the forum",
    "Invalid password",
    "yoda has already logged in",
    PROMPT,
    // Typos.
    "Invalid command",
    "Incorrect syntax for CRT",
    "Incorrect syntax for MSG",
    "Incorrect syntax for DLT",
    "Incorrect syntax for EDT",
    "Incorrect syntax for LST",
    "Incorrect syntax for RDT",
    "Incorrect syntax for UPD",
    "Incorrect syntax for DWN",
    "Incorrect syntax for RMV",
    "Incorrect syntax for XIT",
    // CRT.
    "Thread 3331 created",
    "Thread 3331 exists",
    // MSG.
    "Message posted to 3331 thread",
    "Thread 4441 does not exist",
    // DLT.
    "The message has been deleted",
    "The message belongs to another user and cannot be deleted",
    "Message 3 does not exist in thread 3331",
    // EDT.
    "The message has been edited",
    "The message belongs to another user and cannot be edited",
    // LST.
    "The list of active threads:",
    "No threads to list",
    // RDT.
    "1 yoda: Networks is awesome",
    "Thread 5551 is empty",
    // UPD.
    "test.exe uploaded to 3331 thread",
    "test.exe already exists in thread 3331",
    "File plans.pdf does not exist",
    // DWN.
    "test.exe successfully downloaded",
    "File does not exist in Thread 3331",
    // RMV.
    "Thread 3331 removed",
    "The thread was created by another user and cannot be removed",
    // XIT.
    "Goodbye",
];

/// Every client message of the spec, each produced by a step of [`STEPS`].
#[test]
fn every_spec_client_message() {
    for message in SPEC_MESSAGES {
        let produced = STEPS
            .iter()
            .any(|(_, _, reply)| reply.split('\n').any(|line| line == *message));
        assert!(produced, "no step produces {message:?}");
    }
    // "Thread t does not exist" is a refusal of MSG, RDT, UPD, DWN, EDT, DLT and RMV.
    for word in ["MSG", "RDT", "UPD", "DWN", "EDT", "DLT", "RMV"] {
        let refused = STEPS.iter().any(|(_, line, reply)| {
            line.starts_with(word) && *reply == then_prompt!("Thread 4441 does not exist\n")
        });
        assert!(refused, "no step shows {word} on a missing thread");
    }

    let forum = Forum::start(YODA, &[]);
    let yoda_dir = forum.client_dir("yoda", &[("test.exe", TEST_EXE)]);
    let r2d2_dir = forum.client_dir("r2d2", &[]);
    let mut yoda = forum.client(&yoda_dir, &[]);
    let mut r2d2 = forum.client(&r2d2_dir, &[]);
    for (who, line, expected) in STEPS {
        let client = match who {
            Who::Yoda => &mut yoda,
            Who::R2d2 => &mut r2d2,
        };
        client.step(line, expected);
    }
    assert!(yoda.wait_exit().success());
    assert!(r2d2.wait_exit().success());
    assert_eq!(read_bytes(&r2d2_dir, "test.exe"), TEST_EXE);
    assert_eq!(names_in(&forum.data()), ["credentials.txt"]);

    // The typos were answered by the client alone: the server never saw them (it
    // would have logged "<user> issued an invalid command").
    let last = forum
        .server
        .wait_for_line(|line| line == "r2d2 exited", WAIT);
    assert!(
        last.is_some(),
        "no exit logged: {:#?}",
        forum.server.lines()
    );
    let log = forum.server.lines();
    for line in &log {
        assert!(
            !line.contains("invalid"),
            "a typo reached the server: {log:#?}"
        );
    }
}

/// "Server not responding", at login and for a command, and the user may try again
/// once the server is back.
#[test]
fn server_not_responding_then_try_again() {
    let mut forum = Forum::start(YODA, &[]);
    let port = forum.port();
    let yoda_dir = forum.client_dir("yoda", &[]);
    // Nothing listens on the port any more (and nothing else takes it this quickly).
    forum.server.kill();
    let mut yoda = forum.client(&yoda_dir, &["--retries", "2", "--timeout", "50ms"]);
    yoda.step("yoda", "Server not responding\nEnter username: ");

    forum.server = start_server(&forum.data(), &port, &[]);
    yoda.step("yoda", PASSWORD);
    yoda.step("wise@!man", then_prompt!("Welcome to the forum\n"));
    yoda.step("CRT 3331", then_prompt!("Thread 3331 created\n"));

    forum.server.kill();
    yoda.step("LST", then_prompt!("Server not responding\n"));
    yoda.step("LST", then_prompt!("Server not responding\n"));

    // A restarted server has forgotten the session: the client logs in again.
    forum.server = start_server(&forum.data(), &port, &[]);
    yoda.step(
        "LST",
        "Unknown or expired session: please log in again\nEnter username: ",
    );
    yoda.step("yoda", PASSWORD);
    yoda.step("wise@!man", then_prompt!("Welcome to the forum\n"));
    yoda.step("LST", then_prompt!("The list of active threads:\n3331\n"));
    yoda.step("XIT", "Goodbye\n");
    assert!(yoda.wait_exit().success());
}

/// A client killed without `XIT` holds its user only until its session expires.
#[test]
fn killed_client_frees_its_user_after_the_session_timeout() {
    let forum = Forum::start(YODA, &["--session-timeout", "1s"]);
    let dir = forum.client_dir("yoda", &[]);
    let mut first = forum.client(&dir, &[]);
    // Heartbeats keep the second client's own session alive while it waits.
    let mut second = forum.client(&dir, &["--heartbeat", "200ms"]);
    first.step("yoda", PASSWORD);
    first.step("wise@!man", then_prompt!("Welcome to the forum\n"));
    first.step("LST", then_prompt!("No threads to list\n"));

    first.kill();
    second.step("yoda", "yoda has already logged in\nEnter username: ");
    let expired = forum
        .server
        .wait_for_line(|line| line == "yoda timed out", WAIT);
    assert!(
        expired.is_some(),
        "the session did not expire: {:#?}",
        forum.server.lines()
    );
    second.step("yoda", PASSWORD);
    second.step("wise@!man", then_prompt!("Welcome to the forum\n"));
    second.step("XIT", "Goodbye\n");
    assert!(second.wait_exit().success());

    let expected_log = "\
Waiting for clients
Client authenticating
yoda successful login
yoda issued LST command
Client authenticating
yoda has already logged in
yoda timed out
Client authenticating
yoda successful login
yoda issued XIT command
yoda exited
";
    assert_eq!(forum.log(line_count(expected_log)), expected_log);
}

/// A live client that only sends heartbeats keeps its session past the timeout.
#[test]
fn idle_client_with_heartbeats_keeps_its_session() {
    /// Twice the session timeout: long enough to expire a silent session.
    const IDLE: Duration = Duration::from_secs(2);
    let forum = Forum::start(YODA, &["--session-timeout", "1s"]);
    let dir = forum.client_dir("yoda", &[]);
    let mut yoda = forum.client(&dir, &["--heartbeat", "200ms"]);
    yoda.step("yoda", PASSWORD);
    yoda.step("wise@!man", then_prompt!("Welcome to the forum\n"));

    // What is tested is that nothing happens for a while: no signal to wait for.
    thread::sleep(IDLE);

    let mut other = forum.client(&dir, &[]);
    other.step("yoda", "yoda has already logged in\nEnter username: ");
    yoda.step("LST", then_prompt!("No threads to list\n"));
    yoda.step("XIT", "Goodbye\n");
    assert!(yoda.wait_exit().success());

    let expected_log = "\
Waiting for clients
Client authenticating
yoda successful login
Client authenticating
yoda has already logged in
yoda issued LST command
yoda issued XIT command
yoda exited
";
    assert_eq!(forum.log(line_count(expected_log)), expected_log);
}

/// A server stopped with SIGINT and restarted on the same DIR shows the same forum.
#[test]
fn forum_survives_a_restart() {
    let mut forum = Forum::start(YODA, &[]);
    let yoda_dir = forum.client_dir("yoda", &[("test.exe", TEST_EXE)]);
    let reader_dir = forum.client_dir("reader", &[]);

    let before = forum.run_client(
        &yoda_dir,
        "yoda\nwise@!man\nCRT 3331\nMSG 3331 Networks is awesome\nMSG 3331 Trust the force\n\
         MSG 3331 Do or do not\nUPD 3331 test.exe\nEDT 3331 2 There is no try\nDLT 3331 1\n\
         CRT 9331\nLST\nRDT 3331\nRDT 9331\nXIT\n",
    );
    assert_eq!(
        before,
        concat!(
            "Enter username: Enter password: Welcome to the forum\n",
            after_prompt!("Thread 3331 created\n"),
            after_prompt!("Message posted to 3331 thread\n"),
            after_prompt!("Message posted to 3331 thread\n"),
            after_prompt!("Message posted to 3331 thread\n"),
            after_prompt!("test.exe uploaded to 3331 thread\n"),
            after_prompt!("The message has been edited\n"),
            after_prompt!("The message has been deleted\n"),
            after_prompt!("Thread 9331 created\n"),
            after_prompt!("The list of active threads:\n3331\n9331\n"),
            after_prompt!(
                "1 yoda: There is no try\n2 yoda: Do or do not\nyoda uploaded test.exe\n"
            ),
            after_prompt!("Thread 9331 is empty\n"),
            after_prompt!("Goodbye\n"),
        )
    );
    let registered = forum.run_client(&reader_dir, "r2d2\ndo*!@#dedo\nXIT\n");
    assert_eq!(
        registered,
        concat!(
            "Enter username: New user, enter password: Welcome to the forum\n",
            after_prompt!("Goodbye\n"),
        )
    );

    forum.restart("0", &[]);
    // The same answers, the new user is known, and the upload is still there.
    let after = forum.run_client(
        &reader_dir,
        "r2d2\ndo*!@#dedo\nLST\nRDT 3331\nRDT 9331\nDWN 3331 test.exe\nXIT\n",
    );
    assert_eq!(
        after,
        concat!(
            "Enter username: Enter password: Welcome to the forum\n",
            after_prompt!("The list of active threads:\n3331\n9331\n"),
            after_prompt!(
                "1 yoda: There is no try\n2 yoda: Do or do not\nyoda uploaded test.exe\n"
            ),
            after_prompt!("Thread 9331 is empty\n"),
            after_prompt!("test.exe successfully downloaded\n"),
            after_prompt!("Goodbye\n"),
        )
    );
    assert_eq!(read_bytes(&reader_dir, "test.exe"), TEST_EXE);

    let data = forum.data();
    assert_eq!(
        names_in(&data),
        ["3331", "3331-test.exe", "9331", "credentials.txt"]
    );
    assert_eq!(
        read_text(&data, "3331"),
        "yoda\n1 yoda: There is no try\n2 yoda: Do or do not\nyoda uploaded test.exe\n"
    );
    assert_eq!(read_text(&data, "9331"), "yoda\n");
    assert_eq!(
        read_text(&data, "credentials.txt"),
        "yoda wise@!man\nr2d2 do*!@#dedo\n"
    );
    let expected_log = "\
Waiting for clients
Client authenticating
r2d2 successful login
r2d2 issued LST command
r2d2 issued RDT command
Thread 3331 read
r2d2 issued RDT command
Thread 9331 read
r2d2 issued DWN command
test.exe downloaded from Thread 3331
r2d2 issued XIT command
r2d2 exited
";
    assert_eq!(forum.log(line_count(expected_log)), expected_log);
}
