//! The file client: `put` uploads, `get` downloads, `list` asks what is there. Each
//! opens one connection, makes one request (see [`super::protocol`]) and closes it.
//!
//! The client checks what it can before touching the network (the name, the local
//! file, an existing download target), so that a mistake costs no round trip, and it
//! verifies a download's SHA-256 before the file appears under its name.

use std::ffi::OsStr;
use std::io::{self, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use tokio::fs::{self, File};
use tokio::io::AsyncSeekExt;
use tokio::net::TcpStream;

use super::names::check_name;
use super::partfile::PartFile;
use super::protocol::{self, printable, versioned, ErrorCode, FileEntry, Reply, Request};
use super::{Direction, FileError, TransferOptions, TransferReport, IDLE_TIMEOUT};
use crate::framing::{self, FrameError};
use crate::net;
use crate::output::progress_bar;

/// Uploads the file at `path` to the server at `host`:`port`, under `name` or, by
/// default, the file's own name.
///
/// The file is hashed first (the checksum goes in the request), then announced; only
/// when the server answers `continue` does the body follow.
///
/// # Errors
/// [`FileError::InvalidName`] or [`FileError::NoName`] before anything is sent,
/// [`FileError::ReadLocal`], [`FileError::NotAFile`] or [`FileError::LocalChanged`] for
/// the local file, [`FileError::Net`] if the server cannot be reached,
/// [`FileError::Refused`] if it refuses (exists, too large...), and the connection
/// errors of any exchange ([`FileError::Connection`], [`FileError::Timeout`],
/// [`FileError::NoReply`], [`FileError::BadReply`]).
pub async fn put(
    host: &str,
    port: u16,
    path: &Path,
    name: Option<&str>,
    opts: &TransferOptions,
) -> Result<TransferReport, FileError> {
    let name = match name {
        Some(name) => name,
        None => path
            .file_name()
            .and_then(OsStr::to_str)
            .ok_or_else(|| FileError::NoName {
                path: path.to_path_buf(),
            })?,
    };
    validate(name)?;
    let read_error = |error| FileError::ReadLocal {
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).await.map_err(read_error)?;
    let meta = file.metadata().await.map_err(read_error)?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let size = meta.len();

    let hashing = progress_bar(size, opts.progress, &format!("hashing {name}"));
    let hashed = framing::copy_body(&mut file, &mut tokio::io::sink(), size, IDLE_TIMEOUT, |n| {
        hashing.inc(n);
    })
    .await;
    hashing.finish_and_clear();
    let sha256 = hashed.map_err(|error| local_read_error(path, error))?;
    file.seek(SeekFrom::Start(0)).await.map_err(read_error)?;

    let started = Instant::now();
    let mut server = Connection::open(host, port).await?;
    let request = Request::Put {
        name: name.to_string(),
        size,
        sha256: sha256.clone(),
        overwrite: opts.force,
    };
    server.send(&request).await?;
    let action = format!("upload of {name:?}");
    match server.receive().await? {
        Reply::Continue => {}
        Reply::Error { code, message } => return Err(refused(action, code, &message)),
        other => return Err(server.unexpected("continue", &other)),
    }

    let uploading = progress_bar(size, opts.progress, &format!("uploading {name}"));
    let sent = framing::copy_body(&mut file, &mut server.stream, size, IDLE_TIMEOUT, |n| {
        uploading.inc(n);
    })
    .await;
    uploading.finish_and_clear();
    match sent {
        Ok(digest) if digest == sha256 => {}
        // Same length but different bytes: the server will refuse it, but the real
        // story is on our side.
        Ok(_) => {
            return Err(FileError::LocalChanged {
                path: path.to_path_buf(),
            })
        }
        Err(error @ (FrameError::Read(_) | FrameError::TruncatedBody { .. })) => {
            return Err(local_read_error(path, error))
        }
        Err(error @ FrameError::Write(_)) => {
            // The server may have stopped reading because it failed (disk full) and
            // said so before closing: its reason beats "connection reset".
            if let Ok(Reply::Error { code, message }) = server.receive().await {
                return Err(refused(action, code, &message));
            }
            return Err(server.failed(error));
        }
        Err(error) => return Err(server.failed(error)),
    }
    match server.receive().await? {
        Reply::Ok {
            size: stored,
            sha256: stored_sha256,
            ..
        } if stored == size && stored_sha256 == sha256 => {}
        Reply::Ok { .. } => {
            return Err(server.bad_reply("the stored size or sha256 differs from what was sent"))
        }
        Reply::Error { code, message } => return Err(refused(action, code, &message)),
        other => return Err(server.unexpected("ok", &other)),
    }
    Ok(TransferReport {
        direction: Direction::Upload,
        name: name.to_string(),
        path: path.to_path_buf(),
        bytes: size,
        sha256,
        elapsed: started.elapsed(),
    })
}

/// Downloads `name` from the server at `host`:`port` into `output` (a file path, or a
/// directory to put `name` in), or into `name` in the current directory.
///
/// The body goes into a hidden part file beside the destination and is renamed into
/// place only once its size and SHA-256 match the server's announcement; an existing
/// destination is replaced only with `opts.force`.
///
/// # Errors
/// [`FileError::InvalidName`] or [`FileError::LocalExists`] before anything is sent,
/// [`FileError::Net`] if the server cannot be reached, [`FileError::Refused`] if it
/// refuses (no such file...), [`FileError::ChecksumMismatch`] for a corrupt body,
/// [`FileError::WriteLocal`] if the file cannot be written, and the connection errors
/// of any exchange.
pub async fn get(
    host: &str,
    port: u16,
    name: &str,
    output: Option<&Path>,
    opts: &TransferOptions,
) -> Result<TransferReport, FileError> {
    validate(name)?;
    let dest = destination(name, output).await;
    // Checked again, atomically, when the file is installed; this early check only
    // spares a download that would be thrown away.
    if !opts.force && fs::symlink_metadata(&dest).await.is_ok() {
        return Err(FileError::LocalExists { path: dest });
    }

    let started = Instant::now();
    let mut server = Connection::open(host, port).await?;
    server
        .send(&Request::Get {
            name: name.to_string(),
        })
        .await?;
    let (size, sha256) = match server.receive().await? {
        Reply::Data {
            name: sent,
            size,
            sha256,
        } if sent == name && protocol::is_sha256_hex(&sha256) => (size, sha256),
        Reply::Data { .. } => {
            return Err(server.bad_reply("data for another file, or a malformed sha256"))
        }
        Reply::Error { code, message } => {
            return Err(refused(format!("download of {name:?}"), code, &message))
        }
        other => return Err(server.unexpected("data", &other)),
    };

    let dir = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let part_name = dest.file_name().and_then(OsStr::to_str).unwrap_or(name);
    let mut part = PartFile::create(&dir, part_name)
        .await
        .map_err(|error| FileError::WriteLocal { path: dir, error })?;
    let downloading = progress_bar(size, opts.progress, &format!("downloading {name}"));
    let received = framing::copy_body(&mut server.stream, part.file(), size, IDLE_TIMEOUT, |n| {
        downloading.inc(n);
    })
    .await;
    downloading.finish_and_clear();
    // Every early return from here drops `part`, which deletes the partial download.
    let digest = match received {
        Ok(digest) => digest,
        Err(FrameError::Write(error)) => return Err(FileError::WriteLocal { path: dest, error }),
        Err(error) => return Err(server.failed(error)),
    };
    if digest != sha256 {
        return Err(FileError::ChecksumMismatch {
            name: name.to_string(),
            addr: server.addr,
            expected: sha256,
            actual: digest,
        });
    }
    match part.install(&dest, opts.force).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(FileError::LocalExists { path: dest })
        }
        Err(error) => return Err(FileError::WriteLocal { path: dest, error }),
    }
    Ok(TransferReport {
        direction: Direction::Download,
        name: name.to_string(),
        path: dest,
        bytes: size,
        sha256,
        elapsed: started.elapsed(),
    })
}

/// Asks the server at `host`:`port` for its files.
///
/// # Errors
/// [`FileError::Net`] if the server cannot be reached, [`FileError::Refused`] if it
/// cannot list its directory, and the connection errors of the exchange.
pub async fn list(host: &str, port: u16) -> Result<Vec<FileEntry>, FileError> {
    let mut server = Connection::open(host, port).await?;
    server.send(&Request::List).await?;
    match server.receive().await? {
        Reply::Listing { files } => Ok(files),
        Reply::Error { code, message } => Err(refused("the listing".to_string(), code, &message)),
        other => Err(server.unexpected("listing", &other)),
    }
}

/// [`check_name`], as a [`FileError`].
fn validate(name: &str) -> Result<(), FileError> {
    check_name(name).map_err(|problem| FileError::InvalidName {
        name: name.to_string(),
        problem,
    })
}

/// Where a download goes: `output` itself, or `name` inside it when it is a directory
/// (as `cp` does), or `name` in the current directory.
async fn destination(name: &str, output: Option<&Path>) -> PathBuf {
    match output {
        Some(path) if fs::metadata(path).await.is_ok_and(|meta| meta.is_dir()) => path.join(name),
        Some(path) => path.to_path_buf(),
        None => PathBuf::from(name),
    }
}

/// A failure reading the local file being uploaded.
fn local_read_error(path: &Path, error: FrameError) -> FileError {
    match error {
        FrameError::Read(error) => FileError::ReadLocal {
            path: path.to_path_buf(),
            error,
        },
        // A body copy from a file can otherwise only end early: the file shrank.
        _ => FileError::LocalChanged {
            path: path.to_path_buf(),
        },
    }
}

/// The server's refusal, with its message made safe to print and, where we know the
/// remedy, a hint.
fn refused(action: String, code: ErrorCode, message: &str) -> FileError {
    let mut message = printable(message);
    if code == ErrorCode::Exists {
        message.push_str(" (use --force to replace it)");
    }
    FileError::Refused { action, message }
}

/// One connection to the server, with its address for error messages.
struct Connection {
    stream: TcpStream,
    addr: SocketAddr,
}

impl Connection {
    /// Resolves `host` and connects.
    async fn open(host: &str, port: u16) -> Result<Connection, FileError> {
        let addrs = net::resolve_all(host, port).await?;
        let stream = net::connect_tcp(&addrs).await?;
        let addr = match stream.peer_addr() {
            Ok(addr) => addr,
            // Fails only if the server hung up already, which the first exchange will
            // report; until then the first resolved address names it well enough
            // (`resolve_all` never returns an empty list).
            Err(_) => addrs[0],
        };
        Ok(Connection { stream, addr })
    }

    /// Sends one request header.
    async fn send(&mut self, request: &Request) -> Result<(), FileError> {
        let header = versioned(request);
        let write = framing::write_header(&mut self.stream, &header);
        match tokio::time::timeout(IDLE_TIMEOUT, write).await {
            Ok(result) => result.map_err(|error| self.failed(error)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Waits for one reply header.
    async fn receive(&mut self) -> Result<Reply, FileError> {
        let read =
            framing::read_header::<_, Value>(&mut self.stream, protocol::MAX_REPLY_HEADER_LEN);
        let header = match tokio::time::timeout(IDLE_TIMEOUT, read).await {
            Ok(Ok(Some(header))) => header,
            Ok(Ok(None)) => return Err(FileError::NoReply { addr: self.addr }),
            Ok(Err(error)) => return Err(self.failed(error)),
            Err(_) => return Err(self.timed_out()),
        };
        Reply::from_json(header).map_err(|error| self.bad_reply(error))
    }

    fn failed(&self, error: FrameError) -> FileError {
        FileError::Connection {
            addr: self.addr,
            error,
        }
    }

    fn timed_out(&self) -> FileError {
        FileError::Timeout {
            addr: self.addr,
            waited: IDLE_TIMEOUT,
        }
    }

    fn bad_reply(&self, reason: impl ToString) -> FileError {
        FileError::BadReply {
            addr: self.addr,
            reason: printable(&reason.to_string()),
        }
    }

    fn unexpected(&self, expected: &str, got: &Reply) -> FileError {
        self.bad_reply(format!("expected {expected:?}, got {:?}", got.op()))
    }
}
