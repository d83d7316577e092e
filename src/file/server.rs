//! The file server: accepts many clients at once, each on its own task, and answers
//! their `put`, `get` and `list` requests (see [`super::protocol`] for the exchanges).
//!
//! The server trusts nothing a client sends. Names are checked again here, sizes are
//! checked against `--max-size` before a single body byte is accepted, bodies are
//! checked against their SHA-256 before they are installed, and a client that sends
//! garbage, lies about lengths or vanishes mid-upload only loses its own connection:
//! it is logged, its partial file is deleted, and every other client carries on.
//!
//! Each request and its outcome is one log line, peer first:
//!
//! ```text
//! 127.0.0.1:53412 put "a.pdf": stored 10000000 bytes, sha256 ab12...
//! 127.0.0.1:53418 put "a.pdf": refused: file exists
//! 127.0.0.1:53420 put "big.iso": aborted: stream ended after 65536 of the 10000000 body bytes
//! 127.0.0.1:53424 get "a.pdf": sent 10000000 bytes
//! ```

use std::future::Future;
use std::io::{self, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::fs::{self, File};
use tokio::io::AsyncSeekExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::names::{check_name, NameProblem};
use super::partfile::{self, PartFile};
use super::protocol::{self, versioned, ErrorCode, FileEntry, Reply, Request};
use super::{FileError, ServeOptions, IDLE_TIMEOUT};
use crate::framing::{self, FrameError};
use crate::net::describe;
use crate::output::Reporter;

/// Pause after a failed `accept` (out of file descriptors, say), so that a persistent
/// failure does not spin the loop at full speed while waiting for one to free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the files in `opts.dir` on `listener` until `shutdown` resolves.
///
/// Takes an already-bound listener, not an address, so that a test can bind port 0 and
/// read the real port back. Creates the directory if needed and deletes part files a
/// crashed server left behind, then reports `file server listening on ADDR, serving
/// DIR` (only then, so that whoever waits for that line finds the server ready). On shutdown, transfers in
/// progress are abandoned and their part files deleted.
///
/// # Errors
/// [`FileError::ServeDir`] if the directory cannot be created or cleaned,
/// [`FileError::LocalAddr`] if the listener's address cannot be read. Errors of single
/// connections are logged, never returned: they must not stop the server.
pub async fn serve(
    listener: TcpListener,
    opts: ServeOptions,
    reporter: Reporter,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FileError> {
    let dir = opts.dir;
    let dir_error = |error| FileError::ServeDir {
        path: dir.clone(),
        error,
    };
    fs::create_dir_all(&dir).await.map_err(dir_error)?;
    for name in partfile::remove_stale(&dir).await.map_err(dir_error)? {
        reporter.info(format!("removed stale partial upload {name:?}"));
    }
    let addr = listener.local_addr().map_err(FileError::LocalAddr)?;
    reporter.info(format!(
        "file server listening on {addr}, serving {} (uploads up to {} bytes)",
        dir.display(),
        opts.max_size
    ));

    let server = Arc::new(Server {
        dir,
        max_size: opts.max_size,
        reporter: reporter.clone(),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let server = Arc::clone(&server);
                    connections.spawn(async move { server.handle_connection(stream, peer).await });
                }
                Err(error) => {
                    reporter.info(format!("cannot accept a connection: {}", describe(&error)));
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Collect finished connections so the set does not grow for ever.
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    reporter.info(format!("a connection task failed: {error}"));
                }
            }
        }
    }
    // Cancelling a task drops its `PartFile`, which deletes the partial upload.
    connections.shutdown().await;
    reporter.info("file server stopped");
    Ok(())
}

/// What every connection task shares.
struct Server {
    dir: PathBuf,
    max_size: u64,
    reporter: Reporter,
}

/// The connection cannot go on: the peer left, or the stream is out of step (we could
/// not tell where the next frame starts). Whatever happened has been logged.
struct Hangup;

/// The outcome of one request: `Ok` if the connection can carry another.
type Step = Result<(), Hangup>;

/// A request the server will not carry out, and why: becomes an error reply.
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    fn invalid_name(name: &str, problem: NameProblem) -> Refusal {
        Refusal::new(
            ErrorCode::InvalidName,
            format!("invalid file name {name:?}: {problem}"),
        )
    }

    /// A failure on the server's side (disk, permissions), while doing `what`.
    fn server_error(what: &str, error: &io::Error) -> Refusal {
        Refusal::new(
            ErrorCode::ServerError,
            format!("{what}: {}", describe(error)),
        )
    }
}

impl Server {
    /// Answers requests on one connection until the client closes it or breaks it.
    async fn handle_connection(&self, mut stream: TcpStream, peer: SocketAddr) {
        self.reporter.detail(format!("{peer} connected"));
        while self.handle_request(&mut stream, peer).await.is_ok() {}
        self.reporter.detail(format!("{peer} disconnected"));
    }

    /// Reads one request and answers it.
    async fn handle_request(&self, stream: &mut TcpStream, peer: SocketAddr) -> Step {
        let read = framing::read_header::<_, Value>(stream, protocol::MAX_REQUEST_HEADER_LEN);
        let header = match tokio::time::timeout(IDLE_TIMEOUT, read).await {
            Err(_) => {
                let idle = IDLE_TIMEOUT.as_secs();
                self.reporter
                    .detail(format!("{peer}: idle for {idle} s, closing"));
                return Err(Hangup);
            }
            // The client closed the connection between requests: the normal end.
            Ok(Ok(None)) => return Err(Hangup),
            Ok(Ok(Some(header))) => header,
            // The whole frame was read, so the next one starts right after it: answer
            // and carry on.
            Ok(Err(error @ FrameError::InvalidHeader(_))) => {
                let refusal = Refusal::new(ErrorCode::BadRequest, error.to_string());
                return self.refuse(stream, peer, "request", refusal).await;
            }
            Ok(Err(error)) => {
                self.reporter
                    .info(format!("{peer}: bad frame, closing: {error}"));
                if matches!(error, FrameError::HeaderTooLarge { .. }) {
                    // The peer may still be listening; tell it why before hanging up.
                    let reply = Reply::error(ErrorCode::BadRequest, error.to_string());
                    let _ = self.reply(stream, peer, &reply).await;
                }
                return Err(Hangup);
            }
        };
        match Request::from_json(header) {
            Ok(Request::Put {
                name,
                size,
                sha256,
                overwrite,
            }) => self.put(stream, peer, name, size, sha256, overwrite).await,
            Ok(Request::Get { name }) => self.get(stream, peer, name).await,
            Ok(Request::List) => self.list(stream, peer).await,
            Err(error) => {
                let refusal = Refusal::new(error.code(), error.to_string());
                self.refuse(stream, peer, "request", refusal).await
            }
        }
    }

    /// Receives an upload: check, `continue`, body into a part file, verify, install.
    async fn put(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        name: String,
        size: u64,
        sha256: String,
        overwrite: bool,
    ) -> Step {
        let what = format!("put {name:?}");
        let mut part = match self.accept_upload(&name, size, &sha256, overwrite).await {
            Ok(part) => part,
            Err(refusal) => return self.refuse(stream, peer, &what, refusal).await,
        };
        self.reply(stream, peer, &Reply::Continue).await?;

        // Reads exactly `size` bytes, never more, whatever the client sends.
        let received = framing::copy_body(stream, part.file(), size, IDLE_TIMEOUT, |_| {}).await;
        let digest = match received {
            Ok(digest) => digest,
            Err(error) => {
                // Delete the part file before logging, so that whoever watches the log
                // finds the directory already clean.
                drop(part);
                self.reporter
                    .info(format!("{peer} {what}: aborted: {error}"));
                if let FrameError::Write(cause) = &error {
                    // Our disk failed, not the client: tell it, then hang up, since the
                    // rest of its body would otherwise be read as frames.
                    let refusal = Refusal::server_error("cannot store the file", cause);
                    let _ = self.reply(stream, peer, &refusal.into()).await;
                }
                return Err(Hangup);
            }
        };
        if let Err(refusal) = self
            .install_upload(part, &name, &digest, &sha256, overwrite)
            .await
        {
            return self.refuse(stream, peer, &what, refusal).await;
        }
        self.reporter.info(format!(
            "{peer} {what}: stored {size} bytes, sha256 {digest}"
        ));
        let stored = Reply::Ok {
            name,
            size,
            sha256: digest,
        };
        self.reply(stream, peer, &stored).await
    }

    /// The checks before `continue`, so that a refusal costs no body bytes; returns the
    /// part file to receive the body into.
    async fn accept_upload(
        &self,
        name: &str,
        size: u64,
        sha256: &str,
        overwrite: bool,
    ) -> Result<PartFile, Refusal> {
        check_name(name).map_err(|problem| Refusal::invalid_name(name, problem))?;
        if !protocol::is_sha256_hex(sha256) {
            let message = "sha256 must be 64 lower-case hex digits";
            return Err(Refusal::new(ErrorCode::BadRequest, message));
        }
        if size > self.max_size {
            let limit = self.max_size;
            let message = format!("{size} bytes is over the server's limit of {limit} bytes");
            return Err(Refusal::new(ErrorCode::TooLarge, message));
        }
        // Not the real guard against clobbering (another upload may create the file
        // meanwhile; `PartFile::install` is), only an early answer.
        match fs::symlink_metadata(self.dir.join(name)).await {
            Ok(meta) if !meta.is_file() => {
                let message = "a directory or other non-file of that name exists";
                return Err(Refusal::new(ErrorCode::ServerError, message));
            }
            Ok(_) if !overwrite => return Err(Refusal::new(ErrorCode::Exists, "file exists")),
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(Refusal::server_error(
                    "cannot check for an existing file",
                    &error,
                ));
            }
            _ => {}
        }
        PartFile::create(&self.dir, name)
            .await
            .map_err(|error| Refusal::server_error("cannot create a file", &error))
    }

    /// The checks after the body: the checksum, then the atomic move into place.
    /// Dropping `part` on any refusal deletes it.
    async fn install_upload(
        &self,
        part: PartFile,
        name: &str,
        digest: &str,
        announced: &str,
        overwrite: bool,
    ) -> Result<(), Refusal> {
        if digest != announced {
            let message = format!("body has sha256 {digest}, not the announced {announced}");
            return Err(Refusal::new(ErrorCode::ChecksumMismatch, message));
        }
        part.install(&self.dir.join(name), overwrite)
            .await
            .map_err(|error| match error.kind() {
                io::ErrorKind::AlreadyExists => Refusal::new(ErrorCode::Exists, "file exists"),
                _ => Refusal::server_error("cannot store the file", &error),
            })
    }

    /// Sends a file: announce its size and checksum, then the body.
    async fn get(&self, stream: &mut TcpStream, peer: SocketAddr, name: String) -> Step {
        let what = format!("get {name:?}");
        let (mut file, size, sha256) = match self.prepare_download(&name).await {
            Ok(prepared) => prepared,
            Err(refusal) => return self.refuse(stream, peer, &what, refusal).await,
        };
        let data = Reply::Data { name, size, sha256 };
        self.reply(stream, peer, &data).await?;
        match framing::copy_body(&mut file, stream, size, IDLE_TIMEOUT, |_| {}).await {
            Ok(_) => {
                self.reporter
                    .info(format!("{peer} {what}: sent {size} bytes"));
                Ok(())
            }
            Err(error) => {
                // The header promised `size` bytes; there is no taking that back, so
                // the only honest thing left is to close the connection.
                self.reporter
                    .info(format!("{peer} {what}: aborted: {error}"));
                Err(Hangup)
            }
        }
    }

    /// Opens `name` if it is a regular file in the served directory (not a directory,
    /// not a symbolic link that might point outside) and hashes it; returns the file,
    /// rewound, with its size and SHA-256.
    async fn prepare_download(&self, name: &str) -> Result<(File, u64, String), Refusal> {
        check_name(name).map_err(|problem| Refusal::invalid_name(name, problem))?;
        let path = self.dir.join(name);
        let not_found = || Refusal::new(ErrorCode::NotFound, "no such file");
        match fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Err(not_found()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_found()),
            Err(error) => return Err(Refusal::server_error("cannot open the file", &error)),
        }
        let cannot_read = |error: io::Error| Refusal::server_error("cannot read the file", &error);
        let mut file = File::open(&path).await.map_err(cannot_read)?;
        let size = file.metadata().await.map_err(cannot_read)?.len();
        // The checksum goes in the header, before the body, so the file is read twice:
        // once to hash it, once to send it. Both from the same open file, so an upload
        // replacing it meanwhile (a rename) cannot mix old and new.
        let sink = &mut tokio::io::sink();
        let sha256 = framing::copy_body(&mut file, sink, size, IDLE_TIMEOUT, |_| {})
            .await
            .map_err(|error| {
                Refusal::new(
                    ErrorCode::ServerError,
                    format!("cannot read the file: {error}"),
                )
            })?;
        file.seek(SeekFrom::Start(0)).await.map_err(cannot_read)?;
        Ok((file, size, sha256))
    }

    /// Answers `list` with the regular, non-hidden files, sorted by name.
    async fn list(&self, stream: &mut TcpStream, peer: SocketAddr) -> Step {
        match self.listing().await {
            Ok(files) => {
                self.reporter
                    .info(format!("{peer} list: {} files", files.len()));
                self.reply(stream, peer, &Reply::Listing { files }).await
            }
            Err(error) => {
                let refusal = Refusal::server_error("cannot read the directory", &error);
                self.refuse(stream, peer, "list", refusal).await
            }
        }
    }

    /// The files `get` would serve: regular files whose names pass [`check_name`]
    /// (which leaves out hidden files, part files among them).
    async fn listing(&self) -> io::Result<Vec<FileEntry>> {
        let mut files = Vec::new();
        let mut entries = fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not UTF-8: it could not be named in a JSON request anyway
            };
            if check_name(&name).is_err() {
                continue;
            }
            // `DirEntry::metadata` does not follow symbolic links, as `get` does not.
            let meta = entry.metadata().await?;
            if meta.is_file() {
                files.push(FileEntry {
                    name,
                    size: meta.len(),
                });
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        // Keeps the reply under the client's header limit, however full the directory.
        files.truncate(protocol::MAX_LISTING_ENTRIES);
        Ok(files)
    }

    /// Logs a refusal of `what` and sends it as an error reply.
    async fn refuse(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        what: &str,
        refusal: Refusal,
    ) -> Step {
        self.reporter
            .info(format!("{peer} {what}: refused: {}", refusal.message));
        self.reply(stream, peer, &refusal.into()).await
    }

    /// Sends one reply header.
    async fn reply(&self, stream: &mut TcpStream, peer: SocketAddr, reply: &Reply) -> Step {
        let header = versioned(reply);
        let write = framing::write_header(stream, &header);
        match tokio::time::timeout(IDLE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.reporter
                    .detail(format!("{peer}: cannot reply: {error}"));
                Err(Hangup)
            }
            Err(_) => {
                let idle = IDLE_TIMEOUT.as_secs();
                self.reporter
                    .detail(format!("{peer}: reply not taken within {idle} s"));
                Err(Hangup)
            }
        }
    }
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Reply {
        Reply::error(refusal.code, refusal.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{self, TransferOptions};
    use crate::output::{Captured, Verbosity};
    use tokio::io::AsyncWriteExt;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const WAIT: Duration = Duration::from_secs(10);

    /// A server on a free loopback port serving `dir`, its log, and the switch that
    /// stops it.
    struct Running {
        addr: SocketAddr,
        log: Captured,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Result<(), FileError>>,
    }

    async fn start(dir: &std::path::Path, max_size: u64) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (reporter, log) = Reporter::capture(Verbosity::Normal);
        let (stop, stopped) = oneshot::channel::<()>();
        let opts = ServeOptions {
            dir: dir.to_path_buf(),
            max_size,
        };
        let task = tokio::spawn(serve(listener, opts, reporter, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            log,
            stop,
            task,
        }
    }

    impl Running {
        async fn stop(self) -> Vec<String> {
            self.stop.send(()).unwrap();
            tokio::time::timeout(WAIT, self.task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            self.log.lock().unwrap().clone()
        }
    }

    async fn request(stream: &mut TcpStream, request: Value) -> Reply {
        framing::write_header(stream, &request).await.unwrap();
        let reply = framing::read_header::<_, Value>(stream, protocol::MAX_REPLY_HEADER_LEN);
        let reply = tokio::time::timeout(WAIT, reply)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        Reply::from_json(reply).unwrap()
    }

    #[tokio::test]
    async fn library_clients_round_trip_and_the_server_stops_on_request() {
        let served = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let server = start(served.path(), 1 << 20).await;
        let port = server.addr.port();
        let source = local.path().join("a.txt");
        std::fs::write(&source, b"hello").unwrap();
        let opts = TransferOptions::default();

        let report = file::put("127.0.0.1", port, &source, Some("b.txt"), &opts)
            .await
            .unwrap();
        assert_eq!(report.bytes, 5);
        assert_eq!(report.sha256, framing::sha256_hex(b"hello"));
        let listing = file::list("127.0.0.1", port).await.unwrap();
        assert_eq!(
            listing,
            [FileEntry {
                name: "b.txt".to_string(),
                size: 5
            }]
        );
        let copy = local.path().join("copy.txt");
        file::get("127.0.0.1", port, "b.txt", Some(&copy), &opts)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), b"hello");

        let log = server.stop().await;
        assert!(
            log[0].starts_with("file server listening on 127.0.0.1:"),
            "{log:?}"
        );
        assert!(log.iter().any(|l| l.ends_with(r#"put "b.txt": stored 5 bytes, sha256 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"#)), "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("file server stopped"));
    }

    #[tokio::test]
    async fn body_that_fails_its_checksum_is_not_stored() {
        let served = tempfile::tempdir().unwrap();
        let server = start(served.path(), 1 << 20).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let put = serde_json::json!({"version": 1, "op": "put", "name": "a", "size": 3,
            "sha256": framing::sha256_hex(b"abc"), "overwrite": false});
        assert_eq!(request(&mut stream, put).await, Reply::Continue);
        stream.write_all(b"abd").await.unwrap();
        let reply = framing::read_header::<_, Value>(&mut stream, protocol::MAX_REPLY_HEADER_LEN);
        let reply = Reply::from_json(reply.await.unwrap().unwrap()).unwrap();
        assert!(
            matches!(
                &reply,
                Reply::Error {
                    code: ErrorCode::ChecksumMismatch,
                    ..
                }
            ),
            "{reply:?}"
        );
        // The body was read whole, so the connection is still in step.
        let list = serde_json::json!({"version": 1, "op": "list"});
        assert_eq!(
            request(&mut stream, list).await,
            Reply::Listing { files: Vec::new() }
        );
        assert_eq!(std::fs::read_dir(served.path()).unwrap().count(), 0);
        server.stop().await;
    }

    #[tokio::test]
    async fn shutdown_mid_upload_deletes_the_part_file() {
        let served = tempfile::tempdir().unwrap();
        let server = start(served.path(), 1 << 20).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let put = serde_json::json!({"version": 1, "op": "put", "name": "a", "size": 1000,
            "sha256": framing::sha256_hex(b""), "overwrite": false});
        assert_eq!(request(&mut stream, put).await, Reply::Continue);
        stream.write_all(&[0u8; 10]).await.unwrap();
        assert_eq!(
            std::fs::read_dir(served.path()).unwrap().count(),
            1,
            "the part file"
        );
        server.stop().await;
        assert_eq!(std::fs::read_dir(served.path()).unwrap().count(), 0);
    }
}
