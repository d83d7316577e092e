//! The file service's messages: what each JSON header means, and the order they go in.
//!
//! Every message is one [`framing`] frame: a 4-byte big-endian length,
//! a JSON header, and, when the header carries a `size` of body bytes, exactly that
//! many raw bytes. Every header has `"version": 1` and an `"op"` naming the message, so
//! the format can grow: a peer refuses a version it does not speak, and answers an op it
//! does not know with an error instead of guessing.
//!
//! # Format
//!
//! Upload (`put`) works like HTTP's `Expect: 100-continue` (RFC 9110, section 10.1.1):
//! the client announces the file and waits, so a refusal (bad name, too large, exists)
//! costs one round trip instead of the whole upload.
//!
//! ```text
//!  client                                                server
//!    | {"version":1,"op":"put","name":"a.pdf","size":N,     |
//!    |  "sha256":"ab12...","overwrite":false}               |
//!    |----------------------------------------------------->| checks name, N against
//!    |                                                      | --max-size, existence
//!    |            {"version":1,"op":"continue"}             |
//!    |<-----------------------------------------------------|
//!    | N raw bytes (the body)                               |
//!    |----------------------------------------------------->| writes .a.pdf.part-RANDOM,
//!    |                                                      | checks size and sha256,
//!    | {"version":1,"op":"ok","name":"a.pdf","size":N,      | fsyncs, renames into place
//!    |  "sha256":"ab12..."}                                 |
//!    |<-----------------------------------------------------|
//!
//!    or, instead of "continue" (nothing is sent) or of "ok" (nothing is stored):
//!    | {"version":1,"op":"error","code":"exists",           |
//!    |  "message":"file exists"}                            |
//!    |<-----------------------------------------------------|
//! ```
//!
//! Download (`get`): the reply announces the size and checksum, then the body follows.
//!
//! ```text
//!    | {"version":1,"op":"get","name":"a.pdf"}              |
//!    |----------------------------------------------------->|
//!    | {"version":1,"op":"data","name":"a.pdf","size":N,    |
//!    |  "sha256":"ab12..."}  then N raw bytes               |
//!    |<-----------------------------------------------------|  (or an "error" reply)
//! ```
//!
//! Listing (`list`): regular files only; hidden (dot) files are left out.
//!
//! ```text
//!    | {"version":1,"op":"list"}                            |
//!    |----------------------------------------------------->|
//!    | {"version":1,"op":"listing",                         |
//!    |  "files":[{"name":"a.pdf","size":N},...]}            |
//!    |<-----------------------------------------------------|
//! ```
//!
//! A connection may carry several requests in a row; the client closes it when done.
//! A malformed request (bad JSON, unknown op, wrong version) gets an `error` reply with
//! code `bad-request` or `unsupported-version`; a frame the server cannot even delimit
//! (a header length over the limit, a truncated frame) gets an error reply if possible
//! and the connection is closed, because the stream is no longer in step.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::framing;

/// The protocol version this code speaks, sent in every header.
pub const VERSION: u32 = 1;

/// The longest request header the server reads: requests are small (a name is at most
/// 255 bytes), so the framing default is plenty.
pub const MAX_REQUEST_HEADER_LEN: u32 = framing::MAX_HEADER_LEN;

/// The longest reply header the client reads: a listing of [`MAX_LISTING_ENTRIES`]
/// files of 255-byte names fits with room to spare.
pub const MAX_REPLY_HEADER_LEN: u32 = 16 * 1024 * 1024;

/// The most files one listing carries, so that it always fits in
/// [`MAX_REPLY_HEADER_LEN`] (about 300 bytes of JSON per entry at most).
pub const MAX_LISTING_ENTRIES: usize = 10_000;

/// Length of a SHA-256 digest written in hex.
pub const SHA256_HEX_LEN: usize = 64;

/// A request, client to server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    /// Announce an upload; the body follows only after a [`Reply::Continue`].
    Put {
        /// The name to store it under (one path component).
        name: String,
        /// Body length in bytes.
        size: u64,
        /// SHA-256 of the body, lower-case hex.
        sha256: String,
        /// Replace an existing file of that name (`--force`).
        overwrite: bool,
    },
    /// Ask for a file.
    Get {
        /// Its name on the server.
        name: String,
    },
    /// Ask for the list of files.
    List,
}

/// A reply, server to client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Reply {
    /// The upload was accepted: send the body now.
    Continue,
    /// The upload was stored.
    Ok {
        /// The name it is stored under.
        name: String,
        /// Bytes stored.
        size: u64,
        /// SHA-256 of what was stored, as the server computed it.
        sha256: String,
    },
    /// A download: `size` body bytes follow this header.
    Data {
        /// The file's name.
        name: String,
        /// Body length in bytes.
        size: u64,
        /// SHA-256 of the body.
        sha256: String,
    },
    /// The files on offer.
    Listing {
        /// One entry per regular, non-hidden file, sorted by name.
        files: Vec<FileEntry>,
    },
    /// The request was refused or failed.
    Error {
        /// What kind of failure, for programs (the client adds `--force` hints by it).
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
}

/// One file in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The kind of failure an [`Reply::Error`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The name is not a plain file name.
    InvalidName,
    /// Upload without overwrite onto an existing file.
    Exists,
    /// Upload over the server's `--max-size`.
    TooLarge,
    /// Download of a file that is not there.
    NotFound,
    /// The body did not match its announced SHA-256.
    ChecksumMismatch,
    /// The request could not be understood (bad JSON, unknown op, missing field).
    BadRequest,
    /// The request's protocol version is not ours.
    UnsupportedVersion,
    /// The server failed on its side (disk full, permissions).
    ServerError,
    /// A code from a newer server: kept, not rejected, so old clients still show the
    /// message.
    #[serde(other)]
    Unknown,
}

/// Why a header could not be understood as a message. Pure, so it names no peer; the
/// server turns it into an error reply, the client into `FileError::BadReply`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The JSON is not an object (`[]`, `"put"`, `42`).
    #[error("header is not a JSON object")]
    NotAnObject,
    /// `version` is missing or not [`VERSION`].
    #[error("unsupported protocol version {found} (this socklab speaks version {VERSION})")]
    UnsupportedVersion {
        /// The version field as received (`missing` when absent).
        found: String,
    },
    /// `op` is missing or not a string.
    #[error("header has no \"op\" field")]
    MissingOp,
    /// An op this side does not know.
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    /// A known op with missing or mistyped fields.
    #[error("malformed {op:?} message: {reason}")]
    Malformed {
        /// The op.
        op: String,
        /// What serde said was wrong.
        reason: String,
    },
}

impl DecodeError {
    /// The error code a server replies with for this problem.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// A message with the protocol version beside its own fields, as it goes on the wire:
/// `{"version":1,"op":"get","name":"a.pdf"}`.
#[derive(Serialize)]
pub struct Versioned<'a, T> {
    version: u32,
    #[serde(flatten)]
    message: &'a T,
}

/// Wraps `message` with the current [`VERSION`] for [`framing::write_header`].
pub fn versioned<T>(message: &T) -> Versioned<'_, T> {
    Versioned {
        version: VERSION,
        message,
    }
}

impl Request {
    /// The op names a request can have.
    const OPS: &'static [&'static str] = &["put", "get", "list"];

    /// Understands a header read as JSON.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong with it.
    pub fn from_json(header: Value) -> Result<Request, DecodeError> {
        decode(header, Self::OPS)
    }
}

impl Reply {
    /// The op names a reply can have.
    const OPS: &'static [&'static str] = &["continue", "ok", "data", "listing", "error"];

    /// Understands a header read as JSON.
    ///
    /// # Errors
    /// A [`DecodeError`] saying what is wrong with it.
    pub fn from_json(header: Value) -> Result<Reply, DecodeError> {
        decode(header, Self::OPS)
    }

    /// The op name this reply goes by on the wire, for messages about it.
    pub fn op(&self) -> &'static str {
        match self {
            Reply::Continue => "continue",
            Reply::Ok { .. } => "ok",
            Reply::Data { .. } => "data",
            Reply::Listing { .. } => "listing",
            Reply::Error { .. } => "error",
        }
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        Reply::Error {
            code,
            message: message.into(),
        }
    }
}

/// Checks the version and the op before handing the header to serde, so that each
/// problem gets its own clear error rather than serde's "unknown variant" for them all.
fn decode<T: serde::de::DeserializeOwned>(header: Value, ops: &[&str]) -> Result<T, DecodeError> {
    let Value::Object(fields) = &header else {
        return Err(DecodeError::NotAnObject);
    };
    match fields.get("version") {
        Some(version) if version.as_u64() == Some(u64::from(VERSION)) => {}
        Some(other) => {
            return Err(DecodeError::UnsupportedVersion {
                found: other.to_string(),
            })
        }
        None => {
            return Err(DecodeError::UnsupportedVersion {
                found: "missing".to_string(),
            })
        }
    }
    let op = match fields.get("op").and_then(Value::as_str) {
        Some(op) => op.to_string(),
        None => return Err(DecodeError::MissingOp),
    };
    if !ops.contains(&op.as_str()) {
        return Err(DecodeError::UnknownOp(op));
    }
    serde_json::from_value(header).map_err(|e| DecodeError::Malformed {
        op,
        reason: e.to_string(),
    })
}

/// Whether `text` looks like a SHA-256 digest as we send them: 64 lower-case hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == SHA256_HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so that a message or name
/// from the peer stays on one line and cannot drive the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode<T: Serialize>(message: &T) -> Value {
        serde_json::to_value(versioned(message)).unwrap()
    }

    const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn requests_look_like_the_documented_format() {
        let put = Request::Put {
            name: "a.pdf".to_string(),
            size: 3,
            sha256: DIGEST.to_string(),
            overwrite: false,
        };
        assert_eq!(
            encode(&put),
            json!({"version": 1, "op": "put", "name": "a.pdf", "size": 3,
                   "sha256": DIGEST, "overwrite": false})
        );
        assert_eq!(
            encode(&Request::Get {
                name: "a.pdf".to_string()
            }),
            json!({"version": 1, "op": "get", "name": "a.pdf"})
        );
        assert_eq!(encode(&Request::List), json!({"version": 1, "op": "list"}));
    }

    #[test]
    fn replies_look_like_the_documented_format() {
        assert_eq!(
            encode(&Reply::Continue),
            json!({"version": 1, "op": "continue"})
        );
        assert_eq!(
            encode(&Reply::error(ErrorCode::Exists, "file exists")),
            json!({"version": 1, "op": "error", "code": "exists", "message": "file exists"})
        );
        let listing = Reply::Listing {
            files: vec![FileEntry {
                name: "a".to_string(),
                size: 1,
            }],
        };
        assert_eq!(
            encode(&listing),
            json!({"version": 1, "op": "listing", "files": [{"name": "a", "size": 1}]})
        );
    }

    #[test]
    fn every_message_round_trips() {
        let requests = [
            Request::Put {
                name: "a".to_string(),
                size: 0,
                sha256: DIGEST.to_string(),
                overwrite: true,
            },
            Request::Get {
                name: "b".to_string(),
            },
            Request::List,
        ];
        for request in requests {
            assert_eq!(Request::from_json(encode(&request)), Ok(request.clone()));
        }
        let replies = [
            Reply::Continue,
            Reply::Ok {
                name: "a".to_string(),
                size: 7,
                sha256: DIGEST.to_string(),
            },
            Reply::Data {
                name: "a".to_string(),
                size: 7,
                sha256: DIGEST.to_string(),
            },
            Reply::Listing { files: Vec::new() },
            Reply::error(ErrorCode::TooLarge, "too large"),
        ];
        for reply in replies {
            assert_eq!(encode(&reply)["op"], reply.op());
            assert_eq!(Reply::from_json(encode(&reply)), Ok(reply.clone()));
        }
    }

    #[test]
    fn unknown_ops_and_versions_are_reported_not_guessed() {
        assert_eq!(
            Request::from_json(json!({"version": 1, "op": "delete", "name": "a"})),
            Err(DecodeError::UnknownOp("delete".to_string()))
        );
        // A reply op is not a request op.
        assert_eq!(
            Request::from_json(json!({"version": 1, "op": "continue"})),
            Err(DecodeError::UnknownOp("continue".to_string()))
        );
        let err = Request::from_json(json!({"version": 2, "op": "list"})).unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
        assert_eq!(
            err.to_string(),
            "unsupported protocol version 2 (this socklab speaks version 1)"
        );
        assert_eq!(
            Request::from_json(json!({"op": "list"})),
            Err(DecodeError::UnsupportedVersion {
                found: "missing".to_string()
            })
        );
        assert_eq!(
            Request::from_json(json!({"version": 1})),
            Err(DecodeError::MissingOp)
        );
        assert_eq!(
            Request::from_json(json!([1, 2])),
            Err(DecodeError::NotAnObject)
        );
    }

    #[test]
    fn missing_or_mistyped_fields_are_malformed() {
        let err = Request::from_json(json!({"version": 1, "op": "get"})).unwrap_err();
        assert!(
            matches!(&err, DecodeError::Malformed { op, .. } if op == "get"),
            "{err:?}"
        );
        assert_eq!(err.code(), ErrorCode::BadRequest);
        let err = Request::from_json(json!({"version": 1, "op": "put", "name": "a",
            "size": -1, "sha256": DIGEST, "overwrite": false}))
        .unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn extra_fields_and_new_error_codes_are_tolerated() {
        // A newer peer may add fields and error codes; an old one must still cope.
        assert_eq!(
            Request::from_json(json!({"version": 1, "op": "list", "verbose": true})),
            Ok(Request::List)
        );
        assert_eq!(
            Reply::from_json(json!({"version": 1, "op": "error", "code": "quota",
                                    "message": "over quota"})),
            Ok(Reply::error(ErrorCode::Unknown, "over quota"))
        );
    }

    #[test]
    fn digests_must_be_lower_case_hex_of_the_right_length() {
        assert!(is_sha256_hex(DIGEST));
        assert!(!is_sha256_hex(&DIGEST.to_uppercase()));
        assert!(!is_sha256_hex(&DIGEST[1..]));
        assert!(!is_sha256_hex(&DIGEST.replace('a', "g")));
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(printable("file \"x\" exists"), "file \"x\" exists");
    }
}
