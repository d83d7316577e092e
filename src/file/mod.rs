//! Lab 2: a file service over TCP. `socklab file serve` shares a directory; `put`
//! uploads a file into it, `get` downloads one, `list` shows what is there.
//!
//! The lesson is that a byte stream needs a protocol on top: every message is a
//! length-prefixed JSON header ([`crate::framing`]), optionally followed by a body
//! whose size the header announces, and the receiver checks the body against a
//! SHA-256 before it believes it. The modules:
//!
//! - [`protocol`]: the messages and the order they go in (diagrams there).
//! - [`names`]: which file names are accepted, on both sides.
//! - [`partfile`]: receive into a hidden temporary file, install it only when complete.
//! - `server`: [`serve`], many clients at once.
//! - `client`: [`put`], [`get`] and [`list`].

mod client;
pub mod names;
pub mod partfile;
pub mod protocol;
mod server;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::framing::FrameError;
use crate::net::{describe, NetError};

pub use client::{get, list, put};
pub use names::{check_name, NameProblem};
pub use protocol::FileEntry;
pub use server::serve;

/// How long either side waits for the peer to send (or accept) the next bytes before
/// giving up on it. Generous, because the server fsyncs a whole upload before replying.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `socklab file serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The directory served (created if missing).
    pub dir: PathBuf,
    /// Largest upload accepted, in bytes.
    pub max_size: u64,
}

/// Options of `put` and `get`.
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    /// Overwrite an existing file at the destination.
    pub force: bool,
    /// Show a progress bar.
    pub progress: bool,
}

/// Which way a transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `put`: local file to server.
    Upload,
    /// `get`: server to local file.
    Download,
}

/// What a finished `put` or `get` did; its `Display` is the one-line summary
/// `uploaded report.pdf: 10000000 bytes, sha256 ab12..., 0.12 s (83.1 MB/s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferReport {
    /// Upload or download.
    pub direction: Direction,
    /// The name on the server.
    pub name: String,
    /// The local file read or written.
    pub path: PathBuf,
    /// Body bytes transferred.
    pub bytes: u64,
    /// SHA-256 of the body, lower-case hex, checked by the receiver.
    pub sha256: String,
    /// From connecting to the final reply or byte.
    pub elapsed: Duration,
}

impl fmt::Display for TransferReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.direction {
            Direction::Upload => write!(f, "uploaded {}", self.name)?,
            Direction::Download => {
                write!(f, "downloaded {} to {}", self.name, self.path.display())?
            }
        }
        let seconds = self.elapsed.as_secs_f64();
        write!(
            f,
            ": {} bytes, sha256 {}, {seconds:.2} s",
            self.bytes, self.sha256
        )?;
        // A rate over a zero-length interval means nothing; leave it out.
        if seconds > 0.0 {
            write!(f, " ({:.1} MB/s)", self.bytes as f64 / seconds / 1e6)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the file service. Each message is one line naming
/// the file, name or address concerned, and already includes its cause, so no variant
/// reports that cause again as a `source()` (`anyhow`'s `{:#}`, which `main` prints,
/// would repeat it: `connection refused: Connection refused (os error 111)`).
#[derive(Debug, Error)]
pub enum FileError {
    /// Resolving, binding or connecting failed (`cannot connect to 127.0.0.1:9:
    /// connection refused`).
    #[error("{0}")]
    Net(NetError),
    /// A file name that is not a single plain path component.
    #[error("invalid file name {name:?}: {problem}")]
    InvalidName {
        /// The name as given (debug-quoted when shown, so a newline is visible).
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// A local file could not be opened or read.
    #[error("cannot read {}: {}", .path.display(), describe(.error))]
    ReadLocal {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A local file changed (shrank, or was rewritten) while it was being uploaded.
    #[error("{} changed while it was being uploaded", .path.display())]
    LocalChanged {
        /// The file.
        path: PathBuf,
    },
    /// An upload without `--name` of a path whose last component is missing (`..`) or
    /// not UTF-8.
    #[error("cannot upload {}: no usable file name (give one with --name)", .path.display())]
    NoName {
        /// The path.
        path: PathBuf,
    },
    /// A local path is a directory or device, not a file to upload.
    #[error("cannot upload {}: not a regular file", .path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A downloaded file could not be written or installed.
    #[error("cannot write {}: {}", .path.display(), describe(.error))]
    WriteLocal {
        /// The destination (or its directory).
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A download would replace a local file and `--force` was not given.
    #[error("cannot download to {}: file exists (use --force to replace it)", .path.display())]
    LocalExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The served directory could not be created or cleaned of stale part files.
    #[error("cannot serve {}: {}", .path.display(), describe(.error))]
    ServeDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// The listening socket's own address could not be read.
    #[error("cannot read the listening address: {}", describe(.0))]
    LocalAddr(io::Error),
    /// The server answered a request with an error reply.
    #[error("server refused {action}: {message}")]
    Refused {
        /// What was refused, with the name: `upload of "a.pdf"`.
        action: String,
        /// The server's reason, control characters escaped, plus a hint when we have
        /// one (`(use --force to replace it)`).
        message: String,
    },
    /// Talking to the server failed mid-exchange (reset, truncated frame, stall).
    #[error("connection with {addr} failed: {error}")]
    Connection {
        /// The server.
        addr: SocketAddr,
        /// What went wrong with the frames.
        error: FrameError,
    },
    /// The server sent no reply within [`IDLE_TIMEOUT`].
    #[error("no reply from {addr} within {} s", .waited.as_secs())]
    Timeout {
        /// The server.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
    },
    /// The server closed the connection instead of replying.
    #[error("{addr} closed the connection without replying")]
    NoReply {
        /// The server.
        addr: SocketAddr,
    },
    /// The server replied with something this client cannot understand or did not ask
    /// for.
    #[error("unexpected reply from {addr}: {reason}")]
    BadReply {
        /// The server.
        addr: SocketAddr,
        /// What was wrong with it.
        reason: String,
    },
    /// A downloaded body did not match the checksum the server announced.
    #[error("download of {name:?} from {addr} is corrupt: sha256 {actual}, expected {expected}")]
    ChecksumMismatch {
        /// The file's name.
        name: String,
        /// The server.
        addr: SocketAddr,
        /// What the server announced.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The listing could not be encoded as JSON.
    #[error("cannot encode the listing as JSON: {0}")]
    Json(serde_json::Error),
}

impl From<NetError> for FileError {
    fn from(error: NetError) -> Self {
        FileError::Net(error)
    }
}

/// Renders a listing as a table: name and size in bytes, in the server's order (by
/// name). Returns the text; printing is the caller's job.
pub fn render_list(entries: &[FileEntry]) -> String {
    if entries.is_empty() {
        return "(no files)".to_string();
    }
    let mut table = crate::output::table(&["name", "size (bytes)"]);
    for entry in entries {
        // The names come from the server: escape anything that could drive the
        // terminal.
        table.add_row(vec![
            protocol::printable(&entry.name),
            entry.size.to_string(),
        ]);
    }
    if let Some(size) = table.column_mut(1) {
        size.set_cell_alignment(comfy_table::CellAlignment::Right);
    }
    table.to_string()
}

/// Renders a listing as JSON lines: one `{"name":...,"size":...}` object per file, for
/// scripts (`socklab file list HOST PORT --json | jq .size`). Empty for no files.
///
/// # Errors
/// [`FileError::Json`] if an entry cannot be encoded (not expected for these types).
pub fn render_list_json(entries: &[FileEntry]) -> Result<String, FileError> {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry).map_err(FileError::Json)?);
        text.push('\n');
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<FileEntry> {
        vec![
            FileEntry {
                name: "a.bin".to_string(),
                size: 1,
            },
            FileEntry {
                name: "big.iso".to_string(),
                size: 10_000_000,
            },
        ]
    }

    #[test]
    fn report_is_one_line_with_size_checksum_and_rate() {
        let report = TransferReport {
            direction: Direction::Upload,
            name: "report.pdf".to_string(),
            path: PathBuf::from("report.pdf"),
            bytes: 10_000_000,
            sha256: "ab12".to_string(),
            elapsed: Duration::from_millis(125),
        };
        assert_eq!(
            report.to_string(),
            "uploaded report.pdf: 10000000 bytes, sha256 ab12, 0.12 s (80.0 MB/s)"
        );
        let report = TransferReport {
            direction: Direction::Download,
            path: PathBuf::from("out/r.pdf"),
            elapsed: Duration::ZERO,
            ..report
        };
        assert_eq!(
            report.to_string(),
            "downloaded report.pdf to out/r.pdf: 10000000 bytes, sha256 ab12, 0.00 s"
        );
    }

    #[test]
    fn errors_are_one_line_and_name_what_they_concern() {
        let err = FileError::InvalidName {
            name: "a\nb".to_string(),
            problem: NameProblem::ControlCharacter,
        };
        assert_eq!(
            err.to_string(),
            r#"invalid file name "a\nb": must not contain control characters"#
        );
        let err = FileError::Refused {
            action: r#"upload of "x""#.to_string(),
            message: "file exists (use --force to replace it)".to_string(),
        };
        assert_eq!(
            err.to_string(),
            r#"server refused upload of "x": file exists (use --force to replace it)"#
        );
    }

    #[test]
    fn listing_renders_as_a_table() {
        let text = render_list(&entries());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].contains("name") && lines[1].contains("size (bytes)"),
            "{text}"
        );
        assert!(
            text.contains("a.bin") && text.contains("10000000"),
            "{text}"
        );
        assert_eq!(render_list(&[]), "(no files)");
    }

    #[test]
    fn listing_renders_as_json_lines() {
        let text = render_list_json(&entries()).unwrap();
        assert_eq!(
            text,
            "{\"name\":\"a.bin\",\"size\":1}\n{\"name\":\"big.iso\",\"size\":10000000}\n"
        );
        assert_eq!(render_list_json(&[]).unwrap(), "");
    }
}
