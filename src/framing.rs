//! Length-prefixed frames: how `file` (and, later, the forum's TCP transfers) turn a TCP
//! byte stream back into messages.
//!
//! TCP delivers a stream of bytes, not messages: one `write` may arrive as three reads,
//! and three writes as one read (the echo lab's "sticky packets"). So every message
//! starts with its own length. A message is a JSON header, optionally followed by a body
//! of raw bytes whose length the header announces (for example in a `size` field):
//!
//! ```text
//!  0                   4                         4 + N                    4 + N + size
//!  +-------------------+-------------------------+-------------------------+
//!  | header length N   | header: N bytes of      | body: `size` raw bytes  |
//!  | u32, big-endian   | UTF-8 JSON, one object  | (only if the header     |
//!  | (network order)   | e.g. {"op":"get",...}   |  announces a body)      |
//!  +-------------------+-------------------------+-------------------------+
//! ```
//!
//! This module knows nothing of what the headers mean; `file::protocol` does. It only
//! moves bytes, and it is strict about them, because the peer may be anyone:
//!
//! - a header length above the reader's limit is refused *before* reading it, so a peer
//!   cannot make us allocate 4 GiB by sending `ff ff ff ff`;
//! - the header is collected only as its bytes arrive, never pre-allocated to the
//!   claimed length;
//! - the end of the stream before the first byte of a frame is a clean close
//!   (`Ok(None)`), while an end anywhere inside a frame is a truncated frame (an error);
//! - a body is copied in chunks, hashed with SHA-256 on the way through, and never read
//!   past the announced size.

use std::io;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::describe;

/// Bytes in the length prefix that starts every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// The usual limit on a header's length: 64 KiB is far more than any request needs (a
/// file name is at most 255 bytes), and small enough that a hostile peer gains nothing.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;

/// Size of the chunks a body is copied in: large enough that a 10 MB file takes only a
/// few hundred reads, small enough to keep memory flat whatever the body's size.
const BODY_CHUNK_LEN: usize = 64 * 1024;

/// What can go wrong while reading or writing frames.
///
/// A frame only knows its stream, not the address or file behind it, so these errors
/// name none; callers wrap them with the peer they were talking to (for example
/// `file::FileError::Connection`). Each message already includes its cause, so none
/// reports it again as a `source()`: `anyhow`'s `{:#}` would print it twice.
#[derive(Debug, Error)]
pub enum FrameError {
    /// Reading from the stream failed (connection reset, file unreadable...).
    #[error("read failed: {}", describe(.0))]
    Read(io::Error),
    /// Writing to the stream failed (broken pipe, disk full...).
    #[error("write failed: {}", describe(.0))]
    Write(io::Error),
    /// The stream ended inside the 4-byte length prefix.
    #[error("stream ended after {received} of the {LENGTH_PREFIX_LEN} length-prefix bytes")]
    TruncatedLength {
        /// How many prefix bytes arrived (1 to 3).
        received: usize,
    },
    /// The stream ended inside the JSON header.
    #[error("stream ended after {received} of the {expected} header bytes")]
    TruncatedHeader {
        /// The length the prefix announced.
        expected: u32,
        /// How many header bytes arrived.
        received: u64,
    },
    /// The length prefix announces a header longer than this reader accepts.
    #[error("header length {len} is over the limit of {max} bytes")]
    HeaderTooLarge {
        /// The announced (or, when writing, the actual) header length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// The header arrived whole but is not JSON of the expected shape.
    #[error("header is not valid JSON: {0}")]
    InvalidHeader(serde_json::Error),
    /// A header could not be turned into JSON (a map with non-string keys, say).
    #[error("cannot encode header: {0}")]
    Encode(serde_json::Error),
    /// The stream ended before the announced body was complete.
    #[error("stream ended after {received} of the {expected} body bytes")]
    TruncatedBody {
        /// The announced body size.
        expected: u64,
        /// How many body bytes arrived.
        received: u64,
    },
    /// No body byte could be read or written for `idle`: the peer is gone or stuck.
    #[error("no progress for {} s after {done} of the {expected} body bytes", .idle.as_secs())]
    Stalled {
        /// How long we waited.
        idle: Duration,
        /// Body bytes copied before the stall.
        done: u64,
        /// The announced body size.
        expected: u64,
    },
}

/// Writes one header frame: the 4-byte big-endian length, then `header` as JSON.
///
/// The prefix and the JSON go out in a single write, so a peer never sees a length
/// without its header merely because we were slow.
///
/// # Errors
/// [`FrameError::Encode`] if `header` cannot be serialised,
/// [`FrameError::HeaderTooLarge`] if its JSON does not fit in a `u32` length, and
/// [`FrameError::Write`] if the stream fails.
pub async fn write_header<W, T>(writer: &mut W, header: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let json = serde_json::to_vec(header).map_err(FrameError::Encode)?;
    let len = u32::try_from(json.len()).map_err(|_| FrameError::HeaderTooLarge {
        len: json.len() as u64,
        max: u32::MAX,
    })?;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_LEN + json.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&json);
    writer.write_all(&frame).await.map_err(FrameError::Write)?;
    writer.flush().await.map_err(FrameError::Write)
}

/// Reads one header frame and decodes its JSON into `T`.
///
/// Returns `Ok(None)` when the stream ends cleanly before the first byte of a frame: the
/// peer has simply finished. Decode into [`serde_json::Value`] to look at a header
/// before deciding what it is (that is how `file` answers unknown ops politely).
///
/// # Errors
/// [`FrameError::TruncatedLength`] or [`FrameError::TruncatedHeader`] if the stream ends
/// inside the frame, [`FrameError::HeaderTooLarge`] if the prefix announces more than
/// `max_len` bytes (nothing more is read), [`FrameError::InvalidHeader`] if the bytes
/// are not JSON of type `T`, and [`FrameError::Read`] if the stream fails.
pub async fn read_header<R, T>(reader: &mut R, max_len: u32) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let Some(len) = read_length_prefix(reader).await? else {
        return Ok(None);
    };
    if len > max_len {
        return Err(FrameError::HeaderTooLarge {
            len: u64::from(len),
            max: max_len,
        });
    }
    // `take` + `read_to_end` grows the buffer only as bytes actually arrive, so a peer
    // announcing 64 KiB and sending 3 bytes costs us 3 bytes, not 64 KiB.
    let mut json = Vec::new();
    let received = reader
        .take(u64::from(len))
        .read_to_end(&mut json)
        .await
        .map_err(FrameError::Read)?;
    if received < len as usize {
        return Err(FrameError::TruncatedHeader {
            expected: len,
            received: received as u64,
        });
    }
    let header = serde_json::from_slice(&json).map_err(FrameError::InvalidHeader)?;
    Ok(Some(header))
}

/// Reads the 4-byte length prefix, or `None` if the stream ends before its first byte.
async fn read_length_prefix<R>(reader: &mut R) -> Result<Option<u32>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; LENGTH_PREFIX_LEN];
    let mut filled = 0;
    // Not `read_exact`: it cannot tell "ended before the frame" (a clean close) from
    // "ended in the middle of the prefix" (a truncated frame), and we must.
    while filled < LENGTH_PREFIX_LEN {
        let n = reader
            .read(&mut prefix[filled..])
            .await
            .map_err(FrameError::Read)?;
        if n == 0 {
            return match filled {
                0 => Ok(None),
                received => Err(FrameError::TruncatedLength { received }),
            };
        }
        filled += n;
    }
    Ok(Some(u32::from_be_bytes(prefix)))
}

/// Copies exactly `size` body bytes from `reader` to `writer`, hashing them with
/// SHA-256, and returns the digest as lower-case hex (the form `sha256sum` prints).
///
/// Never reads more than `size` bytes, so whatever follows the body in the stream (the
/// next frame) is left for the next [`read_header`]. `on_progress` is called with the
/// length of each chunk copied (feed it to a progress bar). If no chunk can be read or
/// written for `idle`, the copy gives up: a peer that vanished without closing the
/// connection must not hold a transfer open forever. To only hash a stream, copy it
/// into [`tokio::io::sink`].
///
/// # Errors
/// [`FrameError::TruncatedBody`] if `reader` ends early, [`FrameError::Stalled`] after
/// `idle` without progress, [`FrameError::Read`] or [`FrameError::Write`] if a stream
/// fails.
pub async fn copy_body<R, W>(
    reader: &mut R,
    writer: &mut W,
    size: u64,
    idle: Duration,
    mut on_progress: impl FnMut(u64),
) -> Result<String, FrameError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BODY_CHUNK_LEN];
    let mut done: u64 = 0;
    let stalled = |done| FrameError::Stalled {
        idle,
        done,
        expected: size,
    };
    while done < size {
        // Never ask for more than is left: the bytes after the body belong to the next
        // frame, and a peer sending more than it announced must not get it written.
        let want =
            usize::try_from(size - done).map_or(BODY_CHUNK_LEN, |left| left.min(BODY_CHUNK_LEN));
        let n = tokio::time::timeout(idle, reader.read(&mut buffer[..want]))
            .await
            .map_err(|_| stalled(done))?
            .map_err(FrameError::Read)?;
        if n == 0 {
            return Err(FrameError::TruncatedBody {
                expected: size,
                received: done,
            });
        }
        let chunk = &buffer[..n];
        hasher.update(chunk);
        tokio::time::timeout(idle, writer.write_all(chunk))
            .await
            .map_err(|_| stalled(done))?
            .map_err(FrameError::Write)?;
        done += n as u64;
        on_progress(n as u64);
    }
    writer.flush().await.map_err(FrameError::Write)?;
    Ok(to_hex(&hasher.finalize()))
}

/// The SHA-256 of `data` as lower-case hex, as [`copy_body`] returns it.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Lower-case hex, two digits per byte.
fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const IDLE: Duration = Duration::from_secs(5);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hello {
        op: String,
        size: u64,
    }

    fn hello() -> Hello {
        Hello {
            op: "put".to_string(),
            size: 3,
        }
    }

    /// A frame built by hand, so the tests check the wire bytes, not just a round trip.
    fn frame(json: &[u8]) -> Vec<u8> {
        let mut bytes = (json.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(json);
        bytes
    }

    #[tokio::test]
    async fn header_is_big_endian_length_then_json() {
        let mut wire = Vec::new();
        write_header(&mut wire, &hello()).await.unwrap();
        let json = br#"{"op":"put","size":3}"#;
        assert_eq!(&wire[..4], &[0, 0, 0, json.len() as u8]);
        assert_eq!(&wire[4..], json);
    }

    #[tokio::test]
    async fn header_and_body_round_trip_and_leave_the_next_frame() {
        let mut wire = Vec::new();
        write_header(&mut wire, &hello()).await.unwrap();
        wire.extend_from_slice(b"abc");
        write_header(&mut wire, &hello()).await.unwrap();

        let mut reader = wire.as_slice();
        let header: Hello = read_header(&mut reader, MAX_HEADER_LEN)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(header, hello());
        let mut body = Vec::new();
        let mut progress = 0;
        let digest = copy_body(&mut reader, &mut body, header.size, IDLE, |n| progress += n)
            .await
            .unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(progress, 3);
        // `sha256sum` of "abc", the FIPS 180-2 test vector.
        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest, sha256_hex(b"abc"));
        let next: Hello = read_header(&mut reader, MAX_HEADER_LEN)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next, hello());
        let end: Option<Hello> = read_header(&mut reader, MAX_HEADER_LEN).await.unwrap();
        assert_eq!(end, None, "end of stream between frames is a clean close");
    }

    #[tokio::test]
    async fn empty_body_hashes_to_the_empty_digest() {
        let mut body = Vec::new();
        let digest = copy_body(&mut &b""[..], &mut body, 0, IDLE, |_| {})
            .await
            .unwrap();
        assert_eq!(
            digest,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[tokio::test]
    async fn truncated_length_prefix_is_an_error_not_a_clean_close() {
        let mut reader: &[u8] = &[0, 0];
        let err = read_header::<_, Hello>(&mut reader, MAX_HEADER_LEN)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::TruncatedLength { received: 2 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "stream ended after 2 of the 4 length-prefix bytes"
        );
    }

    #[tokio::test]
    async fn truncated_header_is_an_error() {
        let mut wire = frame(br#"{"op":"put","size":3}"#);
        wire.truncate(10);
        let err = read_header::<_, Hello>(&mut wire.as_slice(), MAX_HEADER_LEN)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TruncatedHeader {
                    expected: 21,
                    received: 6
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oversized_header_length_is_refused_before_reading_it() {
        // 0xffffffff claims a 4 GiB header; only the prefix is there, and the refusal
        // must come from the length alone.
        let mut reader: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let err = read_header::<_, Hello>(&mut reader, MAX_HEADER_LEN)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::HeaderTooLarge {
                    len: 0xffff_ffff,
                    max: MAX_HEADER_LEN
                }
            ),
            "{err:?}"
        );
        // A custom limit applies too.
        let wire = frame(br#"{"op":"put","size":3}"#);
        let err = read_header::<_, Hello>(&mut wire.as_slice(), 8)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FrameError::HeaderTooLarge { len: 21, max: 8 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn invalid_json_is_an_error() {
        let wire = frame(b"GET / HTTP/1.1");
        let err = read_header::<_, Hello>(&mut wire.as_slice(), MAX_HEADER_LEN)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::InvalidHeader(_)), "{err:?}");
        // Valid JSON of the wrong shape is reported the same way.
        let wire = frame(br#"{"op":"put"}"#);
        let err = read_header::<_, Hello>(&mut wire.as_slice(), MAX_HEADER_LEN)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::InvalidHeader(_)), "{err:?}");
    }

    #[tokio::test]
    async fn body_shorter_than_announced_is_an_error() {
        let mut body = Vec::new();
        let err = copy_body(&mut &b"ab"[..], &mut body, 5, IDLE, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TruncatedBody {
                    expected: 5,
                    received: 2
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn body_copy_stops_at_the_announced_size() {
        let mut reader: &[u8] = b"abcdef";
        let mut body = Vec::new();
        copy_body(&mut reader, &mut body, 4, IDLE, |_| {})
            .await
            .unwrap();
        assert_eq!(body, b"abcd");
        assert_eq!(reader, b"ef", "bytes past the body are left in the stream");
    }

    #[tokio::test]
    async fn silent_peer_stalls_the_body_copy() {
        // One end of a duplex pipe that never writes and never closes: a vanished peer.
        // (Real time, kept short: tokio's paused clock needs its `test-util` feature.)
        let (_peer, mut reader) = tokio::io::duplex(64);
        let mut body = Vec::new();
        let idle = Duration::from_millis(50);
        let err = copy_body(&mut reader, &mut body, 10, idle, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Stalled {
                    done: 0,
                    expected: 10,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
