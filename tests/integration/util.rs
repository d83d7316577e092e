//! The test harness: run the real `socklab` binary with a clean environment, start
//! servers and wait for their readiness line instead of sleeping, and read their
//! output with timeouts so a hung process fails the test instead of hanging it.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to print its readiness line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The real binary, with a clean environment: only PATH, and NO_COLOR so output is
/// plain text whatever terminal the tests run in.
pub fn socklab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socklab"));
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("NO_COLOR", "1");
    command.stdin(Stdio::null());
    command
}

/// Runs `command` to completion within `timeout`, killing it (and failing the test)
/// if it takes longer.
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the command");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Runs `command` with `input` on its stdin; like [`run`] otherwise.
pub fn run_with_input(command: &mut Command, input: &str, timeout: Duration) -> Output {
    let path = std::env::temp_dir().join(format!(
        "socklab-input-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, input).expect("write the input file");
    let file = std::fs::File::open(&path).expect("open the input file");
    let output = run(command.stdin(file), timeout);
    let _ = std::fs::remove_file(&path);
    output
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn drain(mut reader: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes);
        bytes
    })
}

/// Stdout of a finished command as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a finished command as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that a command failed as a user error: exit code 2 and exactly one line on
/// stderr, starting `socklab: `. Returns that line.
pub fn assert_user_error(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "exit code; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got: {err:?}");
    assert!(lines[0].starts_with("socklab: "), "{err:?}");
    lines[0].to_string()
}

/// A socklab server started by a test; killed when dropped.
pub struct Server {
    child: Child,
    /// The address the server printed in its readiness line.
    pub addr: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    new_line: Arc<(Mutex<()>, std::sync::Condvar)>,
}

impl Server {
    /// Spawns `socklab <args>` and waits until a stdout line starts with
    /// `ready_prefix`; that line ends in the `HOST:PORT` the server listens on.
    pub fn start(args: &[&str], ready_prefix: &str) -> Server {
        Server::start_in(args, ready_prefix, None)
    }

    /// Like [`Server::start`], with the readiness line on stdout or stderr (the forum
    /// server keeps stdout for its log), and in directory `cwd` if given. Other stderr
    /// lines are passed through to the test's stderr.
    pub fn start_in(args: &[&str], ready_prefix: &str, cwd: Option<&std::path::Path>) -> Server {
        let mut command = socklab();
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn().expect("spawn the server");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let new_line: Arc<(Mutex<()>, std::sync::Condvar)> = Arc::default();
        let (ready_tx, ready_rx) = mpsc::channel();
        {
            let ready_tx = ready_tx.clone();
            let prefix = ready_prefix.to_string();
            thread::spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with(&prefix) {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(line.clone());
                            continue;
                        }
                    }
                    eprintln!("{line}");
                }
            });
        }
        {
            let lines = Arc::clone(&lines);
            let new_line = Arc::clone(&new_line);
            let prefix = ready_prefix.to_string();
            thread::spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with(&prefix) {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(line.clone());
                            continue;
                        }
                    }
                    lines.lock().unwrap().push(line);
                    new_line.1.notify_all();
                }
            });
        }
        let ready = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("server {args:?} printed no '{ready_prefix}' line within {READY_TIMEOUT:?}");
            }
        };
        let addr = ready
            .rsplit(' ')
            .find_map(|word| word.trim_end_matches(',').parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in readiness line {ready:?}"));
        Server {
            child,
            addr,
            lines,
            new_line,
        }
    }

    /// The port as a string, for command lines.
    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    /// Every stdout line after the readiness line, so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a stdout line satisfies `pred`; `None` after `timeout`.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, condvar) = &*self.new_line;
        let mut guard = lock.lock().unwrap();
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            guard = condvar.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// Waits until `count` stdout lines satisfy `pred`, or `timeout` passes; returns
    /// the matching lines found.
    pub fn wait_for_lines(
        &self,
        pred: impl Fn(&str) -> bool,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let (lock, condvar) = &*self.new_line;
        let mut guard = lock.lock().unwrap();
        loop {
            let found: Vec<String> = self.lines().into_iter().filter(|l| pred(l)).collect();
            let now = Instant::now();
            if found.len() >= count || now >= deadline {
                return found;
            }
            guard = condvar.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server now (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits up to `timeout` for the server to
    /// exit, returning its exit status; panics if it does not. Its last stdout lines
    /// may still be on their way: read them with [`Server::wait_for_line`].
    pub fn interrupt(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!("the server did not exit within {timeout:?} of SIGINT");
            }
            // A child's exit cannot be awaited with a timeout in std: poll it.
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port that nothing listens on right now (bound to port 0, then released).
/// Used to hand a port to a peer tool (socat) that cannot report the port it chose.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port that nothing listens on right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether an external tool is installed; tests that need one fail loudly without it
/// (`.ci/run` installs them), unless SOCKLAB_SKIP_PEERS is set.
pub fn require_tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found && std::env::var_os("SOCKLAB_SKIP_PEERS").is_none() {
        panic!("{name} is not installed: run `bash .ci/deps` (or set SOCKLAB_SKIP_PEERS=1 to skip peer tests)");
    }
    found
}

/// A peer tool (socat, nc) started by a test, in a process group of its own; the
/// whole group is killed when dropped. (`socat ...,fork` forks a child per client;
/// killing only the parent would leave the children running, holding our pipes.)
pub struct Peer(Child);

impl Peer {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command) -> Peer {
        use std::os::unix::process::CommandExt;
        Peer(
            command
                .process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn the peer tool"),
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (a peer tool
/// has started listening); panics after `timeout`.
pub fn wait_for_tcp_listener(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            return;
        }
        // No readiness signal exists for a foreign tool: poll its port.
        thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listened on 127.0.0.1:{port} within {timeout:?}");
}

/// Waits until a UDP echo server on 127.0.0.1:`port` answers a probe datagram; panics
/// after `timeout`. (UDP has no "listening" state to poll: an answer is the signal.)
pub fn wait_for_udp_echo(port: u16, timeout: Duration) {
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 64];
    while Instant::now() < deadline {
        let _ = probe.send_to(b"probe", ("127.0.0.1", port));
        if probe.recv_from(&mut buffer).is_ok() {
            return;
        }
    }
    panic!("no UDP echo on 127.0.0.1:{port} within {timeout:?}");
}
