//! File transfers of the forum (lab 3): `UPD` and `DWN` move file bodies over TCP, on
//! the same port number as the UDP commands, with the [`framing`](crate::framing)
//! format the `file` service uses.
//!
//! A TCP connection alone proves nothing: anyone can connect. So the UDP exchange
//! comes first. The server checks the command (thread exists, name valid, file absent
//! or present) and answers with a **one-time token**, 128 random bits it remembers for
//! a minute together with what the token allows; the connection must present it.
//!
//! ```text
//!   client                                           server
//!   UDP  "UPD 3331 a.pdf"  ───────────────────────►  check, grant token T
//!        ◄──────────────────────────  "UPLOAD T"
//!   TCP  {"version":1,"token":T,"size":N,"sha256":H} ─►  T valid for this upload?
//!        ◄────────────────────  {"version":1,"ok":true}  (or ok:false + message: stop)
//!        N body bytes ─────────────────────────────────►  temp file, hash on the way
//!        ◄──── {"version":1,"ok":true,"message":"a.pdf uploaded to 3331 thread"}
//!
//!   UDP  "DWN 3331 a.pdf"  ───────────────────────►  check, grant token T
//!        ◄──────────────────────────  "DOWNLOAD T N"
//!   TCP  {"version":1,"token":T}  ─────────────────►  T valid for this download?
//!        ◄──── {"version":1,"ok":true,"size":N,"sha256":H} then N body bytes
//! ```
//!
//! Both receivers write to a hidden temporary file and move it into place only when
//! the size and the SHA-256 match: the server through [`Store::commit_upload`], the
//! client with a [`PartFile`]. An interrupted transfer leaves nothing behind.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{self, Instant};

use super::store::Store;
use crate::file::partfile::PartFile;
use crate::framing::{self, FrameError};
use crate::net::{self, describe};
use crate::output::{self, Reporter};

/// The version every transfer header carries.
pub const VERSION: u32 = 1;

/// A peer must send its header within this long after connecting.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// A transfer with no progress for this long is abandoned.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Transfer headers are tiny; a hostile peer gets no more than this.
const MAX_HEADER: u32 = 4096;

/// Files at least this large get a progress bar on a terminal.
const PROGRESS_THRESHOLD: u64 = 1 << 20;

/// What a token allows.
#[derive(Clone, Debug)]
pub enum GrantKind {
    /// Upload `file` into thread `title`.
    Upload { title: String, file: String },
    /// Download `file` of thread `title`, stored at `path`.
    Download {
        title: String,
        file: String,
        path: PathBuf,
    },
}

/// A token's permission.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The user who asked.
    pub user: String,
    /// What may be transferred.
    pub kind: GrantKind,
    /// When the token stops working.
    pub expires: Instant,
}

/// The tokens handed out and not yet used, shared by the command loop and the
/// transfer tasks.
pub type Grants = Arc<Mutex<HashMap<String, Grant>>>;

/// A new random token: 128 bits as 32 hex digits.
pub fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The header a client sends first.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Always [`VERSION`].
    pub version: u32,
    /// The token from the UDP reply.
    pub token: String,
    /// For an upload: the body's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For an upload: the body's SHA-256, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The header a server answers with.
#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    /// Always [`VERSION`].
    pub version: u32,
    /// Whether the transfer is allowed (first answer) or succeeded (final answer).
    pub ok: bool,
    /// What to tell the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// For a download: the body's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For a download: the body's SHA-256, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Response {
    fn ok() -> Response {
        Response {
            version: VERSION,
            ok: true,
            message: None,
            size: None,
            sha256: None,
        }
    }

    fn refused(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            message: Some(message.into()),
            ..Response::ok()
        }
    }
}

/// What can go wrong in a transfer.
#[derive(Debug, Error)]
pub enum TransferError {
    /// Connecting to the server's TCP port failed.
    #[error(transparent)]
    Connect(#[from] net::NetError),
    /// The connection broke or carried nonsense.
    #[error("transfer with {peer}: {cause}")]
    Frame {
        /// The server.
        peer: SocketAddr,
        /// What went wrong.
        cause: FrameError,
    },
    /// The server refused the transfer.
    #[error("{message}")]
    Refused {
        /// The server's reason.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {}", .path.display(), describe(.cause))]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        cause: io::Error,
    },
    /// The received file does not match what the server announced.
    #[error("the downloaded file is damaged: {detail}")]
    Mismatch {
        /// Which check failed.
        detail: String,
    },
}

/// Accepts transfer connections until the task is aborted. Each connection runs in its
/// own task; a bad one is reported on `diag` and closed.
pub async fn serve_transfers(
    listener: TcpListener,
    store: Arc<Mutex<Store>>,
    grants: Grants,
    max_upload: u64,
    log: Reporter,
    diag: Reporter,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: wait a moment instead of spinning.
                diag.info(format!(
                    "cannot accept a transfer connection: {}",
                    describe(&error)
                ));
                time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let store = Arc::clone(&store);
        let grants = Arc::clone(&grants);
        let (log, diag) = (log.clone(), diag.clone());
        tokio::spawn(async move {
            if let Err(reason) = serve_one(stream, &store, &grants, max_upload, &log).await {
                diag.info(format!("transfer connection from {peer} closed: {reason}"));
            }
        });
    }
}

/// Serves one transfer connection. `Err` is the reason it failed, for the diagnostics.
async fn serve_one(
    stream: TcpStream,
    store: &Arc<Mutex<Store>>,
    grants: &Grants,
    max_upload: u64,
    log: &Reporter,
) -> Result<(), String> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let header: Option<Request> = match time::timeout(
        HEADER_TIMEOUT,
        framing::read_header(&mut reader, MAX_HEADER),
    )
    .await
    {
        Ok(Ok(header)) => header,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => return Err("no header within 10 s".into()),
    };
    let Some(request) = header else {
        return Err("closed before sending a header".into());
    };
    let grant = grants
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&request.token)
        .filter(|grant| grant.expires > Instant::now());
    let Some(grant) = grant else {
        let response = Response::refused("unknown or expired transfer token");
        let _ = framing::write_header(&mut writer, &response).await;
        return Err("unknown or expired token".into());
    };
    match grant.kind {
        GrantKind::Upload { title, file } => {
            let (Some(size), Some(sha256)) = (request.size, request.sha256) else {
                let _ = framing::write_header(
                    &mut writer,
                    &Response::refused("size and sha256 are required"),
                )
                .await;
                return Err("upload header without size or sha256".into());
            };
            if size > max_upload {
                let message =
                    format!("{file} is larger than the server's limit of {max_upload} bytes");
                let _ =
                    framing::write_header(&mut writer, &Response::refused(message.clone())).await;
                return Err(message);
            }
            receive_upload(
                &mut reader,
                &mut writer,
                store,
                &grant.user,
                &title,
                &file,
                size,
                &sha256,
                log,
            )
            .await
        }
        GrantKind::Download { title, file, path } => {
            send_download(&mut writer, &path).await?;
            log.result(format!("{file} downloaded from Thread {title}"));
            Ok(())
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn receive_upload<R, W>(
    reader: &mut R,
    writer: &mut W,
    store: &Arc<Mutex<Store>>,
    user: &str,
    title: &str,
    file: &str,
    size: u64,
    sha256: &str,
    log: &Reporter,
) -> Result<(), String>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let temp = {
        let store = store.lock().unwrap_or_else(PoisonError::into_inner);
        store.upload_temp().map_err(|e| e.to_string())?
    };
    let (std_file, temp_path) = temp;
    // Deletes the temp file on every early return; disarmed once committed.
    let mut guard = TempGuard(Some(temp_path.clone()));
    framing::write_header(writer, &Response::ok())
        .await
        .map_err(|e| e.to_string())?;
    let mut file_out = tokio::fs::File::from_std(std_file);
    let digest = framing::copy_body(reader, &mut file_out, size, IDLE_TIMEOUT, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    file_out.flush().await.map_err(|e| describe(&e))?;
    file_out.sync_all().await.map_err(|e| describe(&e))?;
    drop(file_out);
    if !digest.eq_ignore_ascii_case(sha256) {
        let response = Response::refused(format!("{file} arrived damaged (sha256 mismatch)"));
        let _ = framing::write_header(writer, &response).await;
        return Err("sha256 mismatch".into());
    }
    let committed = {
        let store = Arc::clone(store);
        let (title, file, user) = (title.to_string(), file.to_string(), user.to_string());
        let temp_path = temp_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            store
                .commit_upload(&title, &file, &user, &temp_path)
                .and_then(|()| store.sync())
        })
        .await
        .map_err(|e| e.to_string())?
    };
    // commit_upload consumed or deleted the temp file either way.
    guard.0 = None;
    let response = match committed {
        Ok(()) => {
            log.result(format!("{user} uploaded file {file} to {title} thread"));
            Response {
                message: Some(format!("{file} uploaded to {title} thread")),
                ..Response::ok()
            }
        }
        Err(error) => {
            let text = super::server::refusal_text(&error, title, file);
            log.result(&text);
            Response::refused(text)
        }
    };
    framing::write_header(writer, &response)
        .await
        .map_err(|e| e.to_string())
}

/// Deletes a temporary file when dropped, unless emptied.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn send_download<W>(writer: &mut W, path: &Path) -> Result<(), String>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    // Open once: should the thread be removed meanwhile, the open file stays readable.
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| describe(&e))?;
    let (size, sha256) = hash_open_file(&mut file).await.map_err(|e| describe(&e))?;
    let response = Response {
        size: Some(size),
        sha256: Some(sha256),
        ..Response::ok()
    };
    framing::write_header(writer, &response)
        .await
        .map_err(|e| e.to_string())?;
    let mut limited = file.take(size);
    framing::copy_body(&mut limited, writer, size, IDLE_TIMEOUT, |_| {})
        .await
        .map_err(|e| e.to_string())?;
    writer.flush().await.map_err(|e| describe(&e))?;
    Ok(())
}

use tokio::io::AsyncSeekExt;

/// Uploads local file `path` with `token` to the server at `server`; returns the
/// server's message ("f uploaded to t thread").
///
/// # Errors
/// [`TransferError`] naming what failed: the file, the connection, or the server's
/// refusal.
pub async fn upload(
    server: SocketAddr,
    token: &str,
    path: &Path,
    progress: bool,
) -> Result<String, TransferError> {
    let file_error = |cause| TransferError::File {
        path: path.to_path_buf(),
        cause,
    };
    let (size, sha256) = hash_file(path).await.map_err(file_error)?;
    let frame = |cause| TransferError::Frame {
        peer: server,
        cause,
    };
    let (mut reader, mut writer, _) = open(server, token, Some((size, sha256))).await?;
    let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
    let bar = output::progress_bar(size, progress && size >= PROGRESS_THRESHOLD, "upload");
    framing::copy_body(&mut file, &mut writer, size, IDLE_TIMEOUT, |n| bar.inc(n))
        .await
        .map_err(frame)?;
    writer
        .flush()
        .await
        .map_err(|cause| frame(FrameError::Write(cause)))?;
    bar.finish_and_clear();
    let response = expect_ok(&mut reader, server).await?;
    Ok(response.message.unwrap_or_default())
}

/// Downloads the file a `token` grants into `dir/name`, replacing a file of that name
/// only once the new one is complete and verified.
///
/// # Errors
/// [`TransferError`] naming what failed.
pub async fn download(
    server: SocketAddr,
    token: &str,
    dir: &Path,
    name: &str,
    progress: bool,
) -> Result<u64, TransferError> {
    let frame = |cause| TransferError::Frame {
        peer: server,
        cause,
    };
    let (mut reader, _writer, response) = open(server, token, None).await?;
    let (Some(size), Some(sha256)) = (response.size, response.sha256) else {
        return Err(TransferError::Mismatch {
            detail: "the server did not announce the size and sha256".into(),
        });
    };
    let dest = dir.join(name);
    let file_error = |cause| TransferError::File {
        path: dest.clone(),
        cause,
    };
    let mut part = PartFile::create(dir, name).await.map_err(file_error)?;
    let bar = output::progress_bar(size, progress && size >= PROGRESS_THRESHOLD, "download");
    let digest = framing::copy_body(&mut reader, part.file(), size, IDLE_TIMEOUT, |n| bar.inc(n))
        .await
        .map_err(frame)?;
    bar.finish_and_clear();
    if !digest.eq_ignore_ascii_case(&sha256) {
        return Err(TransferError::Mismatch {
            detail: format!("sha256 {digest}, the server announced {sha256}"),
        });
    }
    // The server logs "f downloaded from Thread t" and only then closes the connection.
    // Waiting for that close before reporting success keeps the server log in the order
    // things happened: without it, the user's next command could be logged first.
    expect_end(&mut reader, server).await?;
    part.install(&dest, true).await.map_err(file_error)?;
    Ok(size)
}

/// Connects to the server's transfer port, presents `token` (with the size and
/// SHA-256 of an upload's body) and reads the server's first answer, which must allow
/// the transfer. Returns both halves of the connection and that answer.
async fn open(
    server: SocketAddr,
    token: &str,
    upload: Option<(u64, String)>,
) -> Result<
    (
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
        Response,
    ),
    TransferError,
> {
    let stream = net::connect_tcp(&[server]).await?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let (size, sha256) = upload.unzip();
    let request = Request {
        version: VERSION,
        token: token.to_string(),
        size,
        sha256,
    };
    framing::write_header(&mut writer, &request)
        .await
        .map_err(|cause| TransferError::Frame {
            peer: server,
            cause,
        })?;
    let response = expect_ok(&mut reader, server).await?;
    Ok((reader, writer, response))
}

async fn expect_ok<R>(reader: &mut R, server: SocketAddr) -> Result<Response, TransferError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let frame = |cause| TransferError::Frame {
        peer: server,
        cause,
    };
    let response: Option<Response> = framing::read_header(reader, MAX_HEADER)
        .await
        .map_err(frame)?;
    match response {
        Some(response) if response.ok => Ok(response),
        Some(response) => Err(TransferError::Refused {
            message: response
                .message
                .unwrap_or_else(|| "the server refused the transfer".into()),
        }),
        None => Err(frame(FrameError::Read(io::Error::from(
            io::ErrorKind::UnexpectedEof,
        )))),
    }
}

/// Waits until the server closes the connection after a download's body.
async fn expect_end<R>(reader: &mut R, server: SocketAddr) -> Result<(), TransferError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let frame = |cause| TransferError::Frame {
        peer: server,
        cause: FrameError::Read(cause),
    };
    let mut extra = [0u8; 1];
    match time::timeout(IDLE_TIMEOUT, reader.read(&mut extra)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(_)) => Err(TransferError::Mismatch {
            detail: "the server sent more bytes than it announced".into(),
        }),
        Ok(Err(cause)) => Err(frame(cause)),
        Err(_) => Err(frame(io::Error::from(io::ErrorKind::TimedOut))),
    }
}

/// The size and SHA-256 of a local file.
async fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = tokio::fs::File::open(path).await?;
    hash_open_file(&mut file).await
}

/// The size and SHA-256 of an open file, which is left at its start again. The hashing
/// is `copy_body`'s, into a sink.
async fn hash_open_file(file: &mut tokio::fs::File) -> io::Result<(u64, String)> {
    let size = file.metadata().await?.len();
    let digest = framing::copy_body(file, &mut tokio::io::sink(), size, IDLE_TIMEOUT, |_| {})
        .await
        .map_err(|error| io::Error::other(error.to_string()))?;
    file.rewind().await?;
    Ok((size, digest))
}
