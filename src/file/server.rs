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

use super::names::check_name;
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
    let dir_error = |source| FileError::ServeDir {
        path: dir.clone(),
        source,
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
                self.reporter.detail(format!(
                    "{peer}: idle for {} s, closing",
                    IDLE_TIMEOUT.as_secs()
                ));
                return Err(Hangup);
            }
            // The client closed the connection between requests: the normal end.
            Ok(Ok(None)) => return Err(Hangup),
            Ok(Ok(Some(header))) => header,
            // The whole frame was read, so the next one starts right after it: answer
            // and carry on.
            Ok(Err(error @ FrameError::InvalidHeader(_))) => {
                return self.refuse(stream, peer, "request", ErrorCode::BadRequest, error).await;
            }
            Ok(Err(error)) => {
                self.reporter.info(format!("{peer}: bad frame, closing: {error}"));
                if matches!(error, FrameError::HeaderTooLarge { .. }) {
                    // The peer may still be listening; tell it why before hanging up.
                    let _ = self.reply(stream, peer, &Reply::error(ErrorCode::BadRequest, error.to_string())).await;
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
            Err(error) => self.refuse(stream, peer, "request", error.code(), error).await,
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
        if let Err(problem) = check_name(&name) {
            let message = format!("invalid file name {name:?}: {problem}");
            return self.refuse(stream, peer, &what, ErrorCode::InvalidName, message).await;
        }
        if !protocol::is_sha256_hex(&sha256) {
            let message = "sha256 must be 64 lower-case hex digits";
            return self.refuse(stream, peer, &what, ErrorCode::BadRequest, message).await;
        }
        if size > self.max_size {
            let message = format!(
                "{size} bytes is over the server's limit of {} bytes",
                self.max_size
            );
            return self.refuse(stream, peer, &what, ErrorCode::TooLarge, message).await;
        }
        let dest = self.dir.join(&name);
        // An early check, so that a refusal costs no body bytes. It is not the real
        // guard against clobbering (another upload may create the file meanwhile):
        // `PartFile::install` is.
        match fs::symlink_metadata(&dest).await {
            Ok(meta) if !meta.is_file() => {
                let message = "a directory or other non-file of that name exists";
                return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
            }
            Ok(_) if !overwrite => {
                return self.refuse(stream, peer, &what, ErrorCode::Exists, "file exists").await;
            }
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                let message = format!("cannot check for an existing file: {}", describe(&error));
                return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
            }
            _ => {}
        }
        let mut part = match PartFile::create(&self.dir, &name).await {
            Ok(part) => part,
            Err(error) => {
                let message = format!("cannot create a file: {}", describe(&error));
                return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
            }
        };
        self.reply(stream, peer, &Reply::Continue).await?;

        // Reads exactly `size` bytes, never more, whatever the client sends.
        let digest = match framing::copy_body(stream, part.file(), size, IDLE_TIMEOUT, |_| {}).await {
            Ok(digest) => digest,
            Err(error) => {
                // Delete the part file before logging, so that whoever watches the log
                // finds the directory already clean.
                drop(part);
                self.reporter.info(format!("{peer} {what}: aborted: {error}"));
                if let FrameError::Write(source) = error {
                    // Our disk failed, not the client: tell it, then hang up, since the
                    // rest of its body would otherwise be read as frames.
                    let message = format!("cannot store the file: {}", describe(&source));
                    let _ = self.reply(stream, peer, &Reply::error(ErrorCode::ServerError, message)).await;
                }
                return Err(Hangup);
            }
        };
        if digest != sha256 {
            drop(part);
            let message = format!("body has sha256 {digest}, not the announced {sha256}; nothing stored");
            return self.refuse(stream, peer, &what, ErrorCode::ChecksumMismatch, message).await;
        }
        if let Err(error) = part.install(&dest, overwrite).await {
            return if error.kind() == io::ErrorKind::AlreadyExists {
                self.refuse(stream, peer, &what, ErrorCode::Exists, "file exists").await
            } else {
                let message = format!("cannot store the file: {}", describe(&error));
                self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await
            };
        }
        self.reporter.info(format!("{peer} {what}: stored {size} bytes, sha256 {digest}"));
        let stored = Reply::Ok {
            name,
            size,
            sha256: digest,
        };
        self.reply(stream, peer, &stored).await
    }

    /// Sends a file: hash it, announce size and checksum, then the body.
    async fn get(&self, stream: &mut TcpStream, peer: SocketAddr, name: String) -> Step {
        let what = format!("get {name:?}");
        if let Err(problem) = check_name(&name) {
            let message = format!("invalid file name {name:?}: {problem}");
            return self.refuse(stream, peer, &what, ErrorCode::InvalidName, message).await;
        }
        let (mut file, size) = match self.open_regular(&name).await {
            Ok(Some(opened)) => opened,
            Ok(None) => return self.refuse(stream, peer, &what, ErrorCode::NotFound, "no such file").await,
            Err(error) => {
                let message = format!("cannot open the file: {}", describe(&error));
                return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
            }
        };
        // The checksum goes in the header, before the body, so the file is read twice:
        // once to hash it, once to send it. Both from the same open file, so an upload
        // replacing it meanwhile (a rename) cannot mix old and new.
        let hashed = framing::copy_body(&mut file, &mut tokio::io::sink(), size, IDLE_TIMEOUT, |_| {}).await;
        let sha256 = match hashed {
            Ok(sha256) => sha256,
            Err(error) => {
                let message = format!("cannot read the file: {error}");
                return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
            }
        };
        if let Err(error) = file.seek(SeekFrom::Start(0)).await {
            let message = format!("cannot read the file: {}", describe(&error));
            return self.refuse(stream, peer, &what, ErrorCode::ServerError, message).await;
        }
        let data = Reply::Data {
            name,
            size,
            sha256,
        };
        self.reply(stream, peer, &data).await?;
        match framing::copy_body(&mut file, stream, size, IDLE_TIMEOUT, |_| {}).await {
            Ok(_) => {
                self.reporter.info(format!("{peer} {what}: sent {size} bytes"));
                Ok(())
            }
            Err(error) => {
                // The header promised `size` bytes; there is no taking that back, so
                // the only honest thing left is to close the connection.
                self.reporter.info(format!("{peer} {what}: aborted: {error}"));
                Err(Hangup)
            }
        }
    }

    /// Opens `name` in the served directory if it is a regular file (not a directory,
    /// not a symbolic link that might point outside), with its size.
    async fn open_regular(&self, name: &str) -> io::Result<Option<(File, u64)>> {
        let path = self.dir.join(name);
        match fs::symlink_metadata(&path).await {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => return Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        }
        let file = File::open(&path).await?;
        let size = file.metadata().await?.len();
        Ok(Some((file, size)))
    }

    /// Answers `list` with the regular, non-hidden files, sorted by name.
    async fn list(&self, stream: &mut TcpStream, peer: SocketAddr) -> Step {
        match self.listing().await {
            Ok(files) => {
                self.reporter.info(format!("{peer} list: {} files", files.len()));
                self.reply(stream, peer, &Reply::Listing { files }).await
            }
            Err(error) => {
                let message = format!("cannot read the directory: {}", describe(&error));
                self.refuse(stream, peer, "list", ErrorCode::ServerError, message).await
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

    /// Logs a refusal and sends it as an error reply.
    async fn refuse(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
        what: &str,
        code: ErrorCode,
        message: impl ToString,
    ) -> Step {
        let message = message.to_string();
        self.reporter.info(format!("{peer} {what}: refused: {message}"));
        self.reply(stream, peer, &Reply::error(code, message)).await
    }

    /// Sends one reply header.
    async fn reply(&self, stream: &mut TcpStream, peer: SocketAddr, reply: &Reply) -> Step {
        let header = versioned(reply);
        let write = framing::write_header(stream, &header);
        match tokio::time::timeout(IDLE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.reporter.detail(format!("{peer}: cannot reply: {error}"));
                Err(Hangup)
            }
            Err(_) => {
                self.reporter.detail(format!("{peer}: reply not taken within {} s", IDLE_TIMEOUT.as_secs()));
                Err(Hangup)
            }
        }
    }
}
