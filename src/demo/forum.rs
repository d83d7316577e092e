//! Steps 1 and 2 of `socklab demo`: the discussion forum of lab 3, run inside this
//! process on a scratch directory.
//!
//! ```text
//!   yoda's client ───────────────UDP + TCP────────────────► forum server ─► DIR
//!   r2d2's client ──► socklab proxy (20% loss each way) ──►      ▲
//!                     one line per datagram ("lost" or not)      └ server log
//! ```
//!
//! Yoda logs in and creates a thread, posts and uploads a file, straight to the server.
//! Then r2d2 (a new user) reads, posts and downloads through a lossy proxy, with a
//! short first timeout so the retransmissions show in the proxy's datagram lines;
//! the server log shows each command once however many copies crossed the proxy.
//! Last, the files the server wrote: the thread, the upload, `credentials.txt`.
//!
//! The clients are the real [`client::run`], fed a script instead of a keyboard; what
//! they print is shown as a terminal would show it, each typed line after its prompt.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, Notify};

use super::{heading, DemoError};
use crate::forum::client::{self, ClientOptions, ClientOutcome};
use crate::forum::command::COMMAND_PROMPT;
use crate::forum::reliable::RetryConfig;
use crate::forum::server::{self, ServerOptions};
use crate::forum::store::Store;
use crate::forum::ForumError;
use crate::output::{Reporter, Verbosity};
use crate::proxy::{self, config::ProxyConfig, ProxyError};

/// The spec's sample user, known to the server before the demo starts.
const YODA: (&str, &str) = ("yoda", "wise@!man");

/// What yoda types: log in, create a thread, post to it, upload a file, leave.
const YODA_SCRIPT: &str = "yoda\nwise@!man\nCRT 3331\nMSG 3331 Networks is awesome\n\
                           UPD 3331 notes.txt\nXIT\n";

/// What r2d2 types: register (a new user), look around, post, download, leave.
const R2D2_SCRIPT: &str = "r2d2\ndo*!@#dedo\nLST\nRDT 3331\nMSG 3331 Beep boop, message received\n\
                           DWN 3331 notes.txt\nXIT\n";

/// The thread both scripts use, and the file yoda uploads and r2d2 downloads.
const THREAD: &str = "3331";
const UPLOAD: &str = "notes.txt";

/// Lines in the generated upload: about 1.5 KB, enough to cross TCP as a real file.
const UPLOAD_LINES: usize = 40;

/// The proxy's loss, each way, and its seed. With this seed the proxy loses the reply
/// to r2d2's first login request, the reply to the MSG and the DWN request: so the
/// output shows a request sent again and a retransmitted MSG answered from the
/// server's reply cache instead of being posted twice (see reliable.rs).
const LOSS: &str = "20%";
const SEED: &str = "27";

/// r2d2's `--timeout`: the first retransmission timeout, before any round trip is
/// measured. The default (500 ms) would make the demo wait; loopback answers in well
/// under a millisecond.
const R2D2_TIMEOUT: Duration = Duration::from_millis(100);

/// The client's default `--heartbeat`; the demo ends long before the first one.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long to wait for the server's "Waiting for clients" line and the proxy's
/// readiness line, which only keep the output in order: a server or proxy that never
/// says it is ready will make the first client fail anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the proxy's readiness line starts.
const PROXY_READY: &str = "proxy listening on";

/// The client's command prompt is 88 characters; in the demo it would wrap every
/// command line, so it is shown shortened.
const SHORT_COMMAND_PROMPT: &str = "Enter one of the following commands: ...: ";

/// Runs both forum steps, printing to `reporter`; the scratch directory is gone
/// when it returns.
///
/// # Errors
/// [`DemoError`] when the scratch directory, a socket, the server, the proxy or a
/// client fails.
pub(super) async fn run(reporter: &Reporter) -> Result<(), DemoError> {
    let scratch = Scratch::create()?;
    let data = scratch.subdir("server")?;
    let yoda_dir = scratch.subdir(YODA.0)?;
    let r2d2_dir = scratch.subdir("r2d2")?;

    heading(
        reporter,
        "1. The forum (lab 3): commands over UDP, files over TCP; yoda talks to the server",
    );
    let mut store = Store::open(&data).map_err(ForumError::from)?;
    store.add_user(YODA.0, YODA.1).map_err(ForumError::from)?;
    reporter.info(format!(
        "$ echo '{} {}' > {}",
        YODA.0,
        YODA.1,
        data.join("credentials.txt").display()
    ));
    let upload = yoda_dir.join(UPLOAD);
    write_file(&upload, &notes()).await?;
    reporter.info(format!(
        "$ (a {UPLOAD_LINES}-line file {} for yoda to upload)",
        upload.display()
    ));

    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (udp, tcp) = server::bind(loopback, 0).await.map_err(ForumError::from)?;
    let addr = udp.local_addr().map_err(|cause| ForumError::Io {
        what: "the forum server's UDP socket".into(),
        cause,
    })?;
    reporter.info(format!(
        "$ socklab forum server 0 --dir {}   (listening on {addr}, udp and tcp)",
        data.display()
    ));
    let ready = Arc::new(Notify::new());
    let log = Reporter::new(Verbosity::Normal, {
        let (reporter, ready) = (reporter.clone(), Arc::clone(&ready));
        move |line| {
            reporter.result(format!("  server: {line}"));
            ready.notify_one();
        }
    });
    let diag = prefixed(reporter, "  server (stderr): ");
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server::serve(
        udp,
        tcp,
        store,
        ServerOptions::default(),
        log,
        diag,
        async {
            // Either a stop signal or the sender going away ends the server.
            let _ = server_stopped.await;
        },
    ));
    // Nothing depends on it but the order of the lines, so a timeout is no error.
    let _ = tokio::time::timeout(READY_TIMEOUT, ready.notified()).await;

    reporter.info(format!(
        "$ cd {} && socklab forum client {} {}",
        yoda_dir.display(),
        addr.ip(),
        addr.port()
    ));
    let yoda = ClientOptions {
        server: addr,
        retry: RetryConfig::default(),
        heartbeat: HEARTBEAT,
        dir: yoda_dir.clone(),
        progress: false,
    };
    client_run(YODA.0, yoda, YODA_SCRIPT, reporter).await?;

    heading(
        reporter,
        "2. r2d2 through the proxy, 20% loss each way: lost datagrams are resent, commands apply once",
    );
    let proxied = r2d2_through_proxy(addr, &r2d2_dir, reporter).await;

    let _ = stop_server.send(());
    match serving.await {
        Ok(result) => result?,
        Err(_) => {
            return Err(DemoError::Panicked {
                what: "forum server",
            })
        }
    }
    proxied?;
    show_files(&data, &upload, &r2d2_dir.join(UPLOAD), reporter).await
}

/// Step 2: a proxy in front of the server at `server`, r2d2's session through it,
/// then the proxy's summary table.
async fn r2d2_through_proxy(
    server: SocketAddr,
    dir: &Path,
    reporter: &Reporter,
) -> Result<(), DemoError> {
    let mut config = ProxyConfig::default();
    let upstream = server.to_string();
    for (key, value) in [
        ("upstream", upstream.as_str()),
        ("loss", LOSS),
        ("seed", SEED),
    ] {
        config.apply(key, value).map_err(ProxyError::Config)?;
    }
    let sockets = proxy::bind(SocketAddr::new(server.ip(), 0)).await?;
    let listen = sockets.local_addr();
    reporter.info(format!(
        "$ socklab proxy --listen {listen} --upstream {server} --loss {LOSS} --seed {SEED} --log -"
    ));
    reporter.info(
        "  (--log - prints a JSON line per datagram; shown shortened: time, direction, \
         number in that direction, size, what the proxy did)",
    );
    let ready = Arc::new(Notify::new());
    let options = proxy::RunOptions {
        reporter: Reporter::new(Verbosity::Normal, {
            let (reporter, ready) = (reporter.clone(), Arc::clone(&ready));
            move |line| {
                reporter.info(format!("  proxy: {line}"));
                if line.starts_with(PROXY_READY) {
                    ready.notify_one();
                }
            }
        }),
        log: Some(Box::new(DatagramLines::new(reporter.clone()))),
        stats_interval: None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(proxy::run(config, sockets, options, async {
        let _ = stopped.await;
    }));
    // As for the server: only the order of the lines depends on it.
    let _ = tokio::time::timeout(READY_TIMEOUT, ready.notified()).await;

    reporter.info(format!(
        "$ cd {} && socklab forum client {} {} --timeout {}ms",
        dir.display(),
        listen.ip(),
        listen.port(),
        R2D2_TIMEOUT.as_millis()
    ));
    let r2d2 = ClientOptions {
        server: listen,
        retry: RetryConfig {
            initial_rto: R2D2_TIMEOUT,
            ..RetryConfig::default()
        },
        heartbeat: HEARTBEAT,
        dir: dir.to_path_buf(),
        progress: false,
    };
    let session = client_run("r2d2", r2d2, R2D2_SCRIPT, reporter).await;
    let _ = stop.send(());
    let summary = match running.await {
        Ok(result) => result?,
        Err(_) => return Err(DemoError::Panicked { what: "proxy" }),
    };
    session?;
    reporter.result(proxy::render_summary(&summary));
    Ok(())
}

/// Runs one forum client on `script`, showing its terminal with `user: ` in front.
///
/// # Errors
/// [`DemoError::Forum`] if the client cannot run, [`DemoError::Session`] if it ends
/// without the server's goodbye.
async fn client_run(
    user: &'static str,
    options: ClientOptions,
    script: &'static str,
    reporter: &Reporter,
) -> Result<(), DemoError> {
    let screen = Transcript::new(prefixed(reporter, &format!("  {user}: ")), script);
    match client::run(options, script.as_bytes(), screen).await? {
        ClientOutcome::Goodbye => Ok(()),
        outcome => Err(DemoError::Session { user, outcome }),
    }
}

/// Shows what the server wrote (the thread file, the upload, `credentials.txt`) and
/// whether r2d2's download matches yoda's file.
async fn show_files(
    data: &Path,
    original: &Path,
    downloaded: &Path,
    reporter: &Reporter,
) -> Result<(), DemoError> {
    reporter.info(format!("$ ls {}   (with sizes)", data.display()));
    let mut names = Vec::new();
    let mut entries = tokio::fs::read_dir(data)
        .await
        .map_err(DemoError::files("list", data))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(DemoError::files("list", data))?
    {
        let size = entry
            .metadata()
            .await
            .map_err(DemoError::files("read the size of", &entry.path()))?
            .len();
        names.push((entry.file_name().to_string_lossy().into_owned(), size));
    }
    names.sort();
    for (name, size) in names {
        reporter.result(format!("  {name:<16} {size:>5} bytes"));
    }
    for name in [THREAD, "credentials.txt"] {
        let path = data.join(name);
        reporter.info(format!("$ cat {}", path.display()));
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(DemoError::files("read", &path))?;
        for line in text.lines() {
            reporter.result(format!("  {line}"));
        }
    }
    reporter.info(format!(
        "$ cmp {} {}",
        original.display(),
        downloaded.display()
    ));
    let sent = read_file(original).await?;
    let received = read_file(downloaded).await?;
    reporter.result(if sent == received {
        format!("  identical ({} bytes)", sent.len())
    } else {
        format!("  they differ: {} and {} bytes", sent.len(), received.len())
    });
    Ok(())
}

/// The file yoda uploads: numbered lines, so a damaged copy would be easy to spot.
fn notes() -> Vec<u8> {
    (1..=UPLOAD_LINES)
        .map(|n| format!("{n:02} Do. Or do not. There is no try.\n"))
        .collect::<String>()
        .into_bytes()
}

async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    tokio::fs::write(path, bytes)
        .await
        .map_err(DemoError::files("write", path))
}

async fn read_file(path: &Path) -> Result<Vec<u8>, DemoError> {
    tokio::fs::read(path)
        .await
        .map_err(DemoError::files("read", path))
}

/// A reporter that shows every line as a result, with `prefix` in front.
fn prefixed(reporter: &Reporter, prefix: &str) -> Reporter {
    let (reporter, prefix) = (reporter.clone(), prefix.to_string());
    Reporter::new(Verbosity::Normal, move |line| {
        reporter.result(format!("{prefix}{line}"))
    })
}

/// The demo's scratch directory under the system's temporary directory, removed
/// when dropped (also when a step fails).
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates a fresh directory; the process id and the clock make its name unique,
    /// and `create_dir` refuses to reuse one that exists.
    fn create() -> Result<Scratch, DemoError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let name = format!("socklab-demo-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).map_err(DemoError::files("create", &path))?;
        Ok(Scratch { path })
    }

    /// Creates the subdirectory `name` (a client's working directory, the server's
    /// data directory).
    fn subdir(&self, name: &str) -> Result<PathBuf, DemoError> {
        let path = self.path.join(name);
        std::fs::create_dir(&path).map_err(DemoError::files("create", &path))?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is no reason to fail the demo.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A forum client's standard output, shown as its terminal would look: each line the
/// client prints, and each prompt followed by the line the script typed at it.
///
/// The client flushes after every prompt and before it reads, so whatever is
/// unterminated at a flush is a prompt waiting for the next line of the script.
struct Transcript {
    screen: Reporter,
    typed: std::vec::IntoIter<&'static str>,
    pending: Vec<u8>,
}

impl Transcript {
    fn new(screen: Reporter, script: &'static str) -> Self {
        Transcript {
            screen,
            typed: script.lines().collect::<Vec<_>>().into_iter(),
            pending: Vec::new(),
        }
    }
}

impl Write for Transcript {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        for line in take_lines(&mut self.pending) {
            self.screen.result(line);
        }
        if !self.pending.is_empty() {
            let prompt = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            let prompt = if prompt == COMMAND_PROMPT {
                SHORT_COMMAND_PROMPT
            } else {
                &prompt
            };
            let typed = self.typed.next().unwrap_or_default();
            self.screen.result(format!("{prompt}{typed}"));
        }
        Ok(())
    }
}

/// The proxy's `--log` output, one JSON line per datagram, shown as a short line:
/// `  proxy:    612 ms  c2s #2    30 B  lost`.
struct DatagramLines {
    reporter: Reporter,
    pending: Vec<u8>,
}

impl DatagramLines {
    fn new(reporter: Reporter) -> Self {
        DatagramLines {
            reporter,
            pending: Vec::new(),
        }
    }
}

impl Write for DatagramLines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        for line in take_lines(&mut self.pending) {
            let shown = describe_datagram(&line).unwrap_or(line);
            self.reporter.result(format!("  proxy: {shown}"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Removes the complete lines from the front of `pending` and returns them without
/// their line endings.
fn take_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
    }
    lines
}

/// One line of the proxy's datagram log (src/proxy/log.rs has the format), short:
/// when it arrived, which way, its number in that direction, its size, and what
/// happened to it. `None` if the line is not a log record.
fn describe_datagram(json: &str) -> Option<String> {
    let record: serde_json::Value = serde_json::from_str(json).ok()?;
    let millis = record.get("time")?.as_f64()? * 1e3;
    let dir = record.get("dir")?.as_str()?;
    let index = record.get("index")?.as_u64()?;
    let len = record.get("len")?.as_u64()?;
    let actions: Vec<&str> = record
        .get("actions")?
        .as_array()?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .map(|action| {
            if action == "drop-loss" {
                "lost"
            } else {
                action
            }
        })
        .collect();
    let fate = if actions.is_empty() {
        "forwarded".to_string()
    } else {
        actions.join(", ")
    };
    Some(format!(
        "{millis:>6.0} ms  {dir} #{index:<3} {len:>4} B  {fate}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn screen() -> (Reporter, Arc<Mutex<Vec<String>>>) {
        Reporter::capture(Verbosity::Normal)
    }

    #[test]
    fn a_transcript_shows_each_typed_line_after_its_prompt() {
        let (reporter, lines) = screen();
        let mut out = Transcript::new(reporter, "yoda\nLST\n");
        write!(out, "Enter username: ").unwrap();
        out.flush().unwrap();
        writeln!(out, "Welcome to the forum").unwrap();
        write!(out, "{COMMAND_PROMPT}").unwrap();
        out.flush().unwrap();
        writeln!(out, "The list of active threads:\n3331").unwrap();
        write!(out, "{COMMAND_PROMPT}").unwrap();
        out.flush().unwrap();
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "Enter username: yoda",
                "Welcome to the forum",
                "Enter one of the following commands: ...: LST",
                "The list of active threads:",
                "3331",
                // The script ran out: the prompt shows alone, as at the end of input.
                "Enter one of the following commands: ...: ",
            ]
        );
    }

    #[test]
    fn datagram_log_lines_are_shortened_and_other_lines_kept() {
        let (reporter, lines) = screen();
        let mut log = DatagramLines::new(reporter);
        let first = r#"{"time":0.512189,"dir":"c2s","index":1,"len":30,"actions":["drop-loss"],"delay":null}"#;
        let second = r#"{"time":1.5,"dir":"s2c","index":12,"len":1200,"actions":[],"delay":0.0}"#;
        // Split mid-line, as a writer may be called.
        let text = format!("{first}\n{second}\nnot json\n");
        let (a, b) = text.split_at(40);
        log.write_all(a.as_bytes()).unwrap();
        log.write_all(b.as_bytes()).unwrap();
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "  proxy:    512 ms  c2s #1     30 B  lost",
                "  proxy:   1500 ms  s2c #12  1200 B  forwarded",
                "  proxy: not json",
            ]
        );
    }

    #[test]
    fn the_scripts_end_with_xit_and_the_upload_is_small() {
        for script in [YODA_SCRIPT, R2D2_SCRIPT] {
            assert_eq!(script.lines().last(), Some("XIT"));
            assert!(script.lines().all(|line| line == line.trim()), "{script:?}");
        }
        let notes = notes();
        assert_eq!(notes.iter().filter(|&&b| b == b'\n').count(), UPLOAD_LINES);
        assert!(notes.len() < 4096);
    }
}
