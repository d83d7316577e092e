//! The forum's datagram format (lab 3): every UDP datagram between a forum client and
//! the server is one of these, a fixed 20-byte header followed by a body.
//!
//! ```text
//!  0      2     3      4                12          16       18       20
//!  +------+-----+------+----------------+-----------+--------+--------+------------------+
//!  | "SF" | ver | kind | session (u64)  | request   | frag   | count  | body: 0..1180 B  |
//!  |magic | =1  |      |                | id (u32)  | (u16)  | (u16)  | (UTF-8 text, or  |
//!  +------+-----+------+----------------+-----------+--------+--------+  u16 list)       |
//! ```
//!
//! All integers are big-endian ("network byte order"). The kinds:
//!
//! | kind | value | direction | meaning |
//! |---|---|---|---|
//! | Request   | 1 | client → server | one command; `frag` 0, `count` 1; body = the command text |
//! | Reply     | 2 | server → client | fragment `frag` (from 0) of `count` of the answer to `request` |
//! | Resend    | 3 | client → server | "I still miss these fragments of the reply to `request`"; body = u16 indices |
//! | Heartbeat | 4 | client → server | "I am alive"; `request` 0, empty body, never answered |
//! | Error     | 5 | server → client | the server refuses `request`; body = UTF-8 reason |
//!
//! Why these fields:
//! - **magic and version** let the server drop stray datagrams (a port scan, an echo
//!   client pointed at the wrong port) and let the format change later.
//! - **session** names the logged-in client, so the server does not depend on the
//!   client's address, which a NAT may change.
//! - **request** numbers the commands of a session 1, 2, 3, ... The client sends one at a
//!   time, so a reply whose number is not the current one is a late duplicate and is
//!   ignored, and a retransmitted request is recognised and answered from a cache
//!   instead of being executed twice (see [`super::reliable`]).
//! - **frag / count** split a long reply (a big `RDT`) into datagrams of at most
//!   [`MAX_DATAGRAM`] bytes, the spec's limit that keeps every datagram clear of IP
//!   fragmentation. A client missing some fragments asks for just those with a Resend.
//!
//! Code shape (as in smoltcp): [`Packet`] is a zero-copy view over received bytes whose
//! [`Packet::new_checked`] validates lengths once so no accessor can panic; [`Repr`] is
//! what the datagram means, with [`Repr::parse`] and [`Repr::emit`]. An unknown kind is
//! kept as [`Kind::Unknown`] by the view (a capture analyzer can still show it) and
//! refused only by [`Repr::parse`].

use std::fmt;

use thiserror::Error;

/// The first two bytes of every forum datagram: "SF", socklab forum.
pub const MAGIC: [u8; 2] = *b"SF";

/// The only version of the format this code speaks.
pub const VERSION: u8 = 1;

/// The length of the fixed header: the body starts at this offset.
pub const HEADER_LEN: usize = field::BODY.start;

/// The largest datagram (UDP payload) either side sends or accepts: the spec's 1,200
/// bytes, which with 48 bytes of IPv6 + UDP headers still fits the 1,280-byte minimum
/// MTU of IPv6, so no path needs to fragment it.
pub const MAX_DATAGRAM: usize = 1200;

/// The largest body one datagram carries.
pub const MAX_BODY: usize = MAX_DATAGRAM - HEADER_LEN;

/// The most fragment indices one Resend datagram carries (two bytes each).
pub const MAX_MISSING_PER_DATAGRAM: usize = MAX_BODY / INDEX_LEN;

/// The longest reply body [`split_reply`] can send: `u16::MAX` fragments of
/// [`MAX_BODY`] bytes, about 77 MB. Longer bodies are truncated to this length.
pub const MAX_REPLY_BODY: usize = u16::MAX as usize * MAX_BODY;

/// Bytes per fragment index in a Resend body.
const INDEX_LEN: usize = 2;

/// How many characters of a body [`describe`] shows before cutting it short.
const PREVIEW_CHARS: usize = 48;

/// How many indices of a Resend list [`describe`] shows before cutting it short.
const PREVIEW_INDICES: usize = 12;

/// Byte offsets of the header fields (smoltcp's habit: one place names every offset).
mod field {
    use std::ops::{Range, RangeFrom};

    pub const MAGIC: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const KIND: usize = 3;
    pub const SESSION: Range<usize> = 4..12;
    pub const REQUEST: Range<usize> = 12..16;
    pub const FRAG: Range<usize> = 16..18;
    pub const COUNT: Range<usize> = 18..20;
    pub const BODY: RangeFrom<usize> = 20..;
}

/// The values of the `kind` byte.
mod code {
    pub const REQUEST: u8 = 1;
    pub const REPLY: u8 = 2;
    pub const RESEND: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const ERROR: u8 = 5;
}

/// What a datagram is for (the `kind` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Client → server: one command.
    Request,
    /// Server → client: one fragment of the answer to a request.
    Reply,
    /// Client → server: the fragments of a reply still missing.
    Resend,
    /// Client → server: liveness only, never answered.
    Heartbeat,
    /// Server → client: the request was refused; the body says why.
    Error,
    /// A value this version does not know, kept so it can be shown.
    Unknown(u8),
}

impl From<u8> for Kind {
    fn from(value: u8) -> Self {
        match value {
            code::REQUEST => Kind::Request,
            code::REPLY => Kind::Reply,
            code::RESEND => Kind::Resend,
            code::HEARTBEAT => Kind::Heartbeat,
            code::ERROR => Kind::Error,
            other => Kind::Unknown(other),
        }
    }
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Request => code::REQUEST,
            Kind::Reply => code::REPLY,
            Kind::Resend => code::RESEND,
            Kind::Heartbeat => code::HEARTBEAT,
            Kind::Error => code::ERROR,
            Kind::Unknown(other) => other,
        }
    }
}

impl fmt::Display for Kind {
    /// Upper-case names as logs show them: `REQUEST`, `REPLY`, ..., `UNKNOWN(9)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Request => f.write_str("REQUEST"),
            Kind::Reply => f.write_str("REPLY"),
            Kind::Resend => f.write_str("RESEND"),
            Kind::Heartbeat => f.write_str("HEARTBEAT"),
            Kind::Error => f.write_str("ERROR"),
            Kind::Unknown(value) => write!(f, "UNKNOWN({value})"),
        }
    }
}

/// Why bytes are not a forum datagram, or a datagram cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer bytes than the fixed header.
    #[error("datagram of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// More bytes than any forum datagram may have.
    #[error("datagram of {len} bytes is longer than the {MAX_DATAGRAM}-byte limit")]
    TooLong {
        /// The datagram's length.
        len: usize,
    },
    /// The first two bytes are not "SF": not a forum datagram at all.
    #[error("datagram does not start with the forum's magic \"SF\"")]
    BadMagic,
    /// A version of the format this code does not speak.
    #[error("datagram has format version {0}; this program speaks version {VERSION}")]
    UnsupportedVersion(u8),
    /// `count` is 0 or `frag` is not below `count`.
    #[error("{}", bad_fragment(*frag, *count))]
    BadFragment {
        /// The fragment index.
        frag: u16,
        /// The fragment count.
        count: u16,
    },
    /// A body longer than one datagram carries.
    #[error("a body of {len} bytes does not fit in one datagram (at most {MAX_BODY} bytes)")]
    BodyTooLong {
        /// The body's length.
        len: usize,
    },
    /// [`Repr::emit`] was given a buffer too short for the datagram.
    #[error("a buffer of {len} bytes is too short for a datagram of {needed} bytes")]
    BufferTooShort {
        /// The buffer's length.
        len: usize,
        /// The datagram's length.
        needed: usize,
    },
    /// A `kind` byte this version does not know.
    #[error("datagram has unknown kind {0}")]
    UnknownKind(u8),
    /// A kind that is always one datagram (everything but Reply) with `frag`/`count`
    /// other than 0/1.
    #[error("a {kind} datagram is not fragmented, but this one says fragment {frag} of {count}")]
    NotSingle {
        /// The datagram's kind.
        kind: Kind,
        /// Its fragment index.
        frag: u16,
        /// Its fragment count.
        count: u16,
    },
    /// A Heartbeat with a request id or a body.
    #[error("a HEARTBEAT carries request 0 and no body, not request {request} and {len} bytes")]
    BadHeartbeat {
        /// Its request id.
        request: u32,
        /// Its body length.
        len: usize,
    },
    /// A list of fragment indices whose length is odd.
    #[error("a list of fragment indices has 2 bytes per index, not {len} bytes in all")]
    OddMissingList {
        /// The body's length.
        len: usize,
    },
}

fn bad_fragment(frag: u16, count: u16) -> String {
    if count == 0 {
        "datagram says it is one of 0 fragments; a reply has at least one".to_string()
    } else {
        format!("fragment index {frag} is not below the fragment count {count}")
    }
}

/// A read-only view of a forum datagram in a byte buffer (a `&[u8]`, a `Vec<u8>`...).
///
/// Built with [`Packet::new_checked`], which validates the header once; after that no
/// accessor can panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` after checking that it holds a well-formed header: a length from
    /// [`HEADER_LEN`] to [`MAX_DATAGRAM`], the magic, version 1, `count` at least 1 and
    /// `frag` below `count`. The kind is not checked (see [`Kind::Unknown`]).
    ///
    /// # Errors
    /// [`WireError::TooShort`], [`WireError::TooLong`], [`WireError::BadMagic`],
    /// [`WireError::UnsupportedVersion`] or [`WireError::BadFragment`], checked in that
    /// order.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = Packet { buffer };
        packet.check()?;
        Ok(packet)
    }

    fn check(&self) -> Result<(), WireError> {
        let data = self.buffer.as_ref();
        let len = data.len();
        if len < HEADER_LEN {
            return Err(WireError::TooShort { len });
        }
        if len > MAX_DATAGRAM {
            return Err(WireError::TooLong { len });
        }
        if data[field::MAGIC] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if data[field::VERSION] != VERSION {
            return Err(WireError::UnsupportedVersion(data[field::VERSION]));
        }
        let (frag, count) = (self.frag(), self.count());
        if count == 0 || frag >= count {
            return Err(WireError::BadFragment { frag, count });
        }
        Ok(())
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The `kind` byte.
    pub fn kind(&self) -> Kind {
        Kind::from(self.buffer.as_ref()[field::KIND])
    }

    /// The session id.
    pub fn session(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::SESSION]);
        u64::from_be_bytes(bytes)
    }

    /// The request id.
    pub fn request(&self) -> u32 {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&self.buffer.as_ref()[field::REQUEST]);
        u32::from_be_bytes(bytes)
    }

    /// The fragment index, from 0.
    pub fn frag(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FRAG.start)
    }

    /// How many fragments the whole message has (at least 1).
    pub fn count(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::COUNT.start)
    }

    /// The body: everything after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
    }
}

impl<'a> Packet<&'a [u8]> {
    /// The body, borrowed for as long as the underlying buffer (not just the view), so a
    /// [`Repr`] can outlive the `Packet` it was parsed from.
    pub fn body_ref(&self) -> &'a [u8] {
        &self.buffer[field::BODY]
    }
}

fn read_u16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// What a datagram means: the header fields and a borrowed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// What the datagram is for.
    pub kind: Kind,
    /// The session it belongs to.
    pub session: u64,
    /// The request it is, or answers.
    pub request: u32,
    /// Fragment index, from 0 (always 0 except for a Reply).
    pub frag: u16,
    /// Fragment count, at least 1 (always 1 except for a Reply).
    pub count: u16,
    /// The body: text, or for a Resend a list of u16 indices (see [`encode_missing`]).
    pub body: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Reads the meaning of a checked datagram, checking what depends on its kind:
    /// every kind but Reply is a single datagram (`frag` 0, `count` 1), a Heartbeat
    /// has request 0 and no body, and a Resend body is a whole number of indices.
    /// The body's text is not checked for UTF-8 here: the command parser does that and
    /// can answer with a useful message.
    ///
    /// # Errors
    /// [`WireError::UnknownKind`], [`WireError::NotSingle`], [`WireError::BadHeartbeat`]
    /// or [`WireError::OddMissingList`].
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Repr<'a>, WireError> {
        let repr = Repr {
            kind: packet.kind(),
            session: packet.session(),
            request: packet.request(),
            frag: packet.frag(),
            count: packet.count(),
            body: packet.body_ref(),
        };
        match repr.kind {
            Kind::Unknown(value) => return Err(WireError::UnknownKind(value)),
            Kind::Reply => {}
            kind if repr.frag != 0 || repr.count != 1 => {
                return Err(WireError::NotSingle {
                    kind,
                    frag: repr.frag,
                    count: repr.count,
                })
            }
            Kind::Heartbeat if repr.request != 0 || !repr.body.is_empty() => {
                return Err(WireError::BadHeartbeat {
                    request: repr.request,
                    len: repr.body.len(),
                })
            }
            Kind::Resend if repr.body.len() % INDEX_LEN != 0 => {
                return Err(WireError::OddMissingList {
                    len: repr.body.len(),
                })
            }
            _ => {}
        }
        Ok(repr)
    }

    /// The length of the encoded datagram.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Writes the datagram into the first [`Repr::buffer_len`] bytes of `buf`.
    ///
    /// # Errors
    /// [`WireError::BodyTooLong`] when the body is over [`MAX_BODY`] (nothing is
    /// written), [`WireError::BufferTooShort`] when `buf` is shorter than
    /// [`Repr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<(), WireError> {
        if self.body.len() > MAX_BODY {
            return Err(WireError::BodyTooLong {
                len: self.body.len(),
            });
        }
        let needed = self.buffer_len();
        if buf.len() < needed {
            return Err(WireError::BufferTooShort {
                len: buf.len(),
                needed,
            });
        }
        self.write(&mut buf[..needed]);
        Ok(())
    }

    /// The encoded datagram in a new vector.
    ///
    /// Never fails: a body over [`MAX_BODY`] is encoded whole, giving a datagram every
    /// receiver refuses as [`WireError::TooLong`]. Senders keep bodies within the limit
    /// ([`split_reply`] splits replies; the client refuses long requests), and
    /// [`Repr::emit`] reports it as an error instead.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.write(&mut buf);
        buf
    }

    /// Writes header and body into `buf`, which is exactly `buffer_len()` long.
    fn write(&self, buf: &mut [u8]) {
        buf[field::MAGIC].copy_from_slice(&MAGIC);
        buf[field::VERSION] = VERSION;
        buf[field::KIND] = u8::from(self.kind);
        buf[field::SESSION].copy_from_slice(&self.session.to_be_bytes());
        buf[field::REQUEST].copy_from_slice(&self.request.to_be_bytes());
        buf[field::FRAG].copy_from_slice(&self.frag.to_be_bytes());
        buf[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        buf[field::BODY].copy_from_slice(self.body);
    }
}

/// Encodes the reply `body` to request `request` of `session` as Reply datagrams:
/// fragment `i` carries bytes `i × MAX_BODY ..` of the body, every datagram at most
/// [`MAX_DATAGRAM`] bytes. An empty body is one fragment with an empty body.
///
/// The fragment count is a u16, so a body longer than [`MAX_REPLY_BODY`] (about 77 MB,
/// far beyond any forum thread) is truncated to that length rather than failing: the
/// server builds replies from text it holds and has no better answer to give.
pub fn split_reply(session: u64, request: u32, body: &[u8]) -> Vec<Vec<u8>> {
    let body = &body[..body.len().min(MAX_REPLY_BODY)];
    let chunks: Vec<&[u8]> = if body.is_empty() {
        vec![body]
    } else {
        body.chunks(MAX_BODY).collect()
    };
    let count =
        u16::try_from(chunks.len()).expect("the body was truncated to at most u16::MAX fragments");
    chunks
        .iter()
        .zip(0..count)
        .map(|(chunk, frag)| {
            Repr {
                kind: Kind::Reply,
                session,
                request,
                frag,
                count,
                body: chunk,
            }
            .to_vec()
        })
        .collect()
}

/// Encodes an Error datagram answering `request` of `session` with `reason`, cut to
/// [`MAX_BODY`] bytes at a character boundary if it is longer.
pub fn error_datagram(session: u64, request: u32, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_BODY);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Repr {
        kind: Kind::Error,
        session,
        request,
        frag: 0,
        count: 1,
        body: &reason.as_bytes()[..end],
    }
    .to_vec()
}

/// Encodes fragment indices as a Resend body: two big-endian bytes each, in the given
/// order. One datagram carries at most [`MAX_MISSING_PER_DATAGRAM`] of them; the caller
/// splits longer lists.
pub fn encode_missing(list: &[u16]) -> Vec<u8> {
    list.iter().flat_map(|index| index.to_be_bytes()).collect()
}

/// Decodes a Resend body into fragment indices.
///
/// # Errors
/// [`WireError::OddMissingList`] when the body's length is odd.
pub fn decode_missing(body: &[u8]) -> Result<Vec<u16>, WireError> {
    if body.len() % INDEX_LEN != 0 {
        return Err(WireError::OddMissingList { len: body.len() });
    }
    Ok(body
        .chunks_exact(INDEX_LEN)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .collect())
}

/// Collects the fragments of one reply, in any order, with duplicates, until all
/// `count` are there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassembly {
    fragments: Vec<Option<Vec<u8>>>,
    received: usize,
}

impl Reassembly {
    /// Starts collecting a reply of `count` fragments. (`count` 0, which no checked
    /// datagram has, gives a reassembly that is complete and empty from the start.)
    pub fn new(count: u16) -> Self {
        Reassembly {
            fragments: vec![None; usize::from(count)],
            received: 0,
        }
    }

    /// Stores fragment `frag`. Returns true if it is new; a duplicate or an index not
    /// below the count is ignored and returns false.
    pub fn insert(&mut self, frag: u16, body: &[u8]) -> bool {
        match self.fragments.get_mut(usize::from(frag)) {
            Some(slot @ None) => {
                *slot = Some(body.to_vec());
                self.received += 1;
                true
            }
            _ => false,
        }
    }

    /// The fragment count this reassembly expects.
    pub fn count(&self) -> u16 {
        u16::try_from(self.fragments.len()).expect("built from a u16 count")
    }

    /// True once every fragment has arrived.
    pub fn is_complete(&self) -> bool {
        self.received == self.fragments.len()
    }

    /// The indices still missing, in increasing order.
    pub fn missing(&self) -> Vec<u16> {
        (0..self.count())
            .filter(|&index| self.fragments[usize::from(index)].is_none())
            .collect()
    }

    /// How many distinct fragments have arrived.
    pub fn received(&self) -> usize {
        self.received
    }

    /// The reply body: the fragments concatenated in index order. Call it once
    /// [`Reassembly::is_complete`]; missing fragments would simply be left out.
    pub fn into_body(self) -> Vec<u8> {
        let len = self.fragments.iter().flatten().map(Vec::len).sum();
        let mut body = Vec::with_capacity(len);
        for fragment in self.fragments.into_iter().flatten() {
            body.extend_from_slice(&fragment);
        }
        body
    }
}

/// A one-line summary of a datagram for logs and the capture analyzer, e.g.
/// `REQUEST session=00000000000004d2, request=3, 1/1, 8 B: "CRT 3331"`. The session is
/// in hex (sessions are random numbers); the fragment is shown from 1 (`2/5`); text
/// bodies are quoted with escapes and cut after a few dozen characters.
pub fn describe<T: AsRef<[u8]>>(packet: &Packet<T>) -> String {
    let body = packet.body();
    let head = format!(
        "{} session={:016x}, request={}, {}/{}, {} B",
        packet.kind(),
        packet.session(),
        packet.request(),
        u32::from(packet.frag()) + 1,
        packet.count(),
        body.len()
    );
    if body.is_empty() {
        return head;
    }
    match packet.kind() {
        Kind::Resend => format!("{head}: missing {}", preview_missing(body)),
        Kind::Unknown(_) => head,
        _ => format!("{head}: {}", preview_text(body)),
    }
}

/// Like [`describe`], for raw bytes that may not be a forum datagram at all:
/// `malformed, 7 B: datagram of 7 bytes is shorter than the 20-byte header`.
pub fn describe_datagram(bytes: &[u8]) -> String {
    match Packet::new_checked(bytes) {
        Ok(packet) => describe(&packet),
        Err(error) => format!("malformed, {} B: {error}", bytes.len()),
    }
}

fn preview_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut shown: String = text.chars().take(PREVIEW_CHARS).collect();
    let cut = shown.len() < text.len();
    shown = format!("{shown:?}");
    if cut {
        shown.push_str("...");
    }
    shown
}

fn preview_missing(body: &[u8]) -> String {
    match decode_missing(body) {
        Ok(list) => {
            let shown: Vec<String> = list
                .iter()
                .take(PREVIEW_INDICES)
                .map(u16::to_string)
                .collect();
            if list.len() > PREVIEW_INDICES {
                format!("[{}, ... ({} in all)]", shown.join(", "), list.len())
            } else {
                format!("[{}]", shown.join(", "))
            }
        }
        Err(error) => format!("(malformed: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A Request of session 0x1122334455667788, request 3, body "CRT 3331".
    const REQUEST_BYTES: [u8; 28] = [
        b'S', b'F', 0x01, 0x01, // magic, version, kind = Request
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // session
        0x00, 0x00, 0x00, 0x03, // request
        0x00, 0x00, 0x00, 0x01, // frag 0, count 1
        b'C', b'R', b'T', b' ', b'3', b'3', b'3', b'1', // body
    ];

    /// Fragment 1 (the second) of 3 of the reply to request 7, body "hi".
    const REPLY_BYTES: [u8; 22] = [
        b'S', b'F', 0x01, 0x02, // magic, version, kind = Reply
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, // session 1234
        0x00, 0x00, 0x00, 0x07, // request
        0x00, 0x01, 0x00, 0x03, // frag 1, count 3
        b'h', b'i',
    ];

    /// A Resend for request 7 missing fragments 3 and 258.
    const RESEND_BYTES: [u8; 24] = [
        b'S', b'F', 0x01, 0x03, // magic, version, kind = Resend
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xd2, // session 1234
        0x00, 0x00, 0x00, 0x07, // request
        0x00, 0x00, 0x00, 0x01, // frag 0, count 1
        0x00, 0x03, 0x01, 0x02, // 3, 258
    ];

    fn request_repr() -> Repr<'static> {
        Repr {
            kind: Kind::Request,
            session: 0x1122_3344_5566_7788,
            request: 3,
            frag: 0,
            count: 1,
            body: b"CRT 3331",
        }
    }

    #[test]
    fn deconstruct_request() {
        let packet = Packet::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(packet.kind(), Kind::Request);
        assert_eq!(packet.session(), 0x1122_3344_5566_7788);
        assert_eq!(packet.request(), 3);
        assert_eq!(packet.frag(), 0);
        assert_eq!(packet.count(), 1);
        assert_eq!(packet.body(), b"CRT 3331");
        assert_eq!(packet.into_inner(), &REQUEST_BYTES[..]);
    }

    #[test]
    fn deconstruct_reply_and_resend() {
        let packet = Packet::new_checked(&REPLY_BYTES[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                kind: Kind::Reply,
                session: 1234,
                request: 7,
                frag: 1,
                count: 3,
                body: b"hi",
            }
        );
        let packet = Packet::new_checked(&RESEND_BYTES[..]).unwrap();
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.kind, Kind::Resend);
        assert_eq!(decode_missing(repr.body).unwrap(), vec![3, 258]);
    }

    #[test]
    fn construct_request() {
        let repr = request_repr();
        assert_eq!(repr.buffer_len(), REQUEST_BYTES.len());
        let mut buf = [0xAAu8; 40];
        repr.emit(&mut buf).unwrap();
        assert_eq!(&buf[..REQUEST_BYTES.len()], &REQUEST_BYTES[..]);
        assert!(buf[REQUEST_BYTES.len()..].iter().all(|&b| b == 0xAA));
        assert_eq!(repr.to_vec(), REQUEST_BYTES.to_vec());
    }

    #[test]
    fn construct_resend() {
        let body = encode_missing(&[3, 258]);
        let repr = Repr {
            kind: Kind::Resend,
            session: 1234,
            request: 7,
            frag: 0,
            count: 1,
            body: &body,
        };
        assert_eq!(repr.to_vec(), RESEND_BYTES.to_vec());
    }

    #[test]
    fn round_trip_every_kind() {
        for kind in [
            Kind::Request,
            Kind::Reply,
            Kind::Resend,
            Kind::Heartbeat,
            Kind::Error,
        ] {
            let body: &[u8] = match kind {
                Kind::Heartbeat => b"",
                Kind::Resend => &[0, 1, 0, 2],
                _ => b"Thread 3331 created",
            };
            let request = if kind == Kind::Heartbeat { 0 } else { 42 };
            let repr = Repr {
                kind,
                session: u64::MAX,
                request,
                frag: 0,
                count: 1,
                body,
            };
            let bytes = repr.to_vec();
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Repr::parse(&packet).unwrap(), repr, "{kind}");
        }
    }

    #[test]
    fn kind_codes() {
        for value in 0..=u8::MAX {
            assert_eq!(u8::from(Kind::from(value)), value);
        }
        assert_eq!(Kind::from(1), Kind::Request);
        assert_eq!(Kind::from(5), Kind::Error);
        assert_eq!(Kind::from(0), Kind::Unknown(0));
        assert_eq!(Kind::from(6), Kind::Unknown(6));
    }

    #[test]
    fn every_truncation_is_too_short_or_valid() {
        for len in 0..REQUEST_BYTES.len() {
            let result = Packet::new_checked(&REQUEST_BYTES[..len]);
            if len < HEADER_LEN {
                assert_eq!(result.unwrap_err(), WireError::TooShort { len });
            } else {
                // A shorter body is still a datagram: UDP keeps boundaries, so the
                // header cannot know the body's length and does not carry it.
                assert_eq!(result.unwrap().body(), &REQUEST_BYTES[HEADER_LEN..len]);
            }
        }
    }

    #[test]
    fn too_long() {
        let mut bytes = request_repr().to_vec();
        bytes.resize(MAX_DATAGRAM, b'x');
        assert!(Packet::new_checked(&bytes[..]).is_ok());
        bytes.push(b'x');
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::TooLong {
                len: MAX_DATAGRAM + 1
            }
        );
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = REQUEST_BYTES;
        bytes[1] = b'G';
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::BadMagic
        );
        let mut bytes = REQUEST_BYTES;
        bytes[2] = 2;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn fragment_must_be_below_count() {
        let mut bytes = REPLY_BYTES;
        bytes[17] = 3; // frag 3 of 3
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::BadFragment { frag: 3, count: 3 }
        );
        let mut bytes = REPLY_BYTES;
        bytes[17] = 0;
        bytes[19] = 0; // frag 0 of 0
        let error = Packet::new_checked(&bytes[..]).unwrap_err();
        assert_eq!(error, WireError::BadFragment { frag: 0, count: 0 });
        assert_eq!(
            error.to_string(),
            "datagram says it is one of 0 fragments; a reply has at least one"
        );
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            Packet::new_checked(&REQUEST_BYTES[..7])
                .unwrap_err()
                .to_string(),
            "datagram of 7 bytes is shorter than the 20-byte header"
        );
        assert_eq!(
            WireError::BadFragment { frag: 5, count: 5 }.to_string(),
            "fragment index 5 is not below the fragment count 5"
        );
        assert_eq!(
            WireError::NotSingle {
                kind: Kind::Request,
                frag: 1,
                count: 2
            }
            .to_string(),
            "a REQUEST datagram is not fragmented, but this one says fragment 1 of 2"
        );
    }

    #[test]
    fn parse_checks_what_depends_on_the_kind() {
        let mut bytes = REQUEST_BYTES;
        bytes[3] = 9;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.kind(), Kind::Unknown(9));
        assert_eq!(Repr::parse(&packet), Err(WireError::UnknownKind(9)));

        let mut bytes = REPLY_BYTES;
        bytes[3] = 1; // a Request claiming to be fragment 1 of 3
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Repr::parse(&packet),
            Err(WireError::NotSingle {
                kind: Kind::Request,
                frag: 1,
                count: 3
            })
        );

        let mut bytes = REQUEST_BYTES;
        bytes[3] = 4; // a Heartbeat with request 3 and a body
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Repr::parse(&packet),
            Err(WireError::BadHeartbeat { request: 3, len: 8 })
        );

        let packet = Packet::new_checked(&RESEND_BYTES[..23]).unwrap();
        assert_eq!(
            Repr::parse(&packet),
            Err(WireError::OddMissingList { len: 3 })
        );
    }

    #[test]
    fn emit_refuses_long_bodies_and_short_buffers() {
        let long = vec![b'x'; MAX_BODY + 1];
        let repr = Repr {
            body: &long,
            ..request_repr()
        };
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            repr.emit(&mut buf),
            Err(WireError::BodyTooLong { len: MAX_BODY + 1 })
        );
        let mut short = [0u8; 27];
        assert_eq!(
            request_repr().emit(&mut short),
            Err(WireError::BufferTooShort {
                len: 27,
                needed: 28
            })
        );
        // to_vec encodes it anyway, and the receiver refuses it.
        let bytes = repr.to_vec();
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            WireError::TooLong {
                len: MAX_DATAGRAM + 1
            }
        );
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(3331);
        let mut valid = 0;
        for round in 0..10_000 {
            let len = rng.gen_range(0..=MAX_DATAGRAM + 8);
            let mut bytes = vec![0u8; len];
            rng.fill(&mut bytes[..]);
            // Half the buffers get a real magic and version, so the checks after them
            // are exercised too, not just the first one.
            if round % 2 == 0 && len >= HEADER_LEN {
                bytes[..2].copy_from_slice(&MAGIC);
                bytes[2] = VERSION;
                bytes[3] = rng.gen_range(0..8);
                bytes[16] = 0;
                bytes[18] = 0;
            }
            let _ = describe_datagram(&bytes);
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                valid += 1;
                assert!(packet.frag() < packet.count());
                let _ = (packet.kind(), packet.session(), packet.request());
                assert_eq!(packet.body().len(), len - HEADER_LEN);
                if let Ok(repr) = Repr::parse(&packet) {
                    assert_eq!(repr.to_vec(), bytes);
                }
            }
        }
        assert!(
            valid > 1000,
            "only {valid} valid buffers: the test is too weak"
        );
    }

    #[test]
    fn missing_list_round_trip() {
        let list = [0, 1, 7, 300, u16::MAX];
        let body = encode_missing(&list);
        assert_eq!(body, [0, 0, 0, 1, 0, 7, 1, 44, 255, 255]);
        assert_eq!(decode_missing(&body).unwrap(), list);
        assert_eq!(decode_missing(&[]).unwrap(), Vec::<u16>::new());
        assert_eq!(
            decode_missing(&[0, 1, 2]),
            Err(WireError::OddMissingList { len: 3 })
        );
        assert_eq!(MAX_MISSING_PER_DATAGRAM, 590);
    }

    /// Splits `len` seeded bytes, feeds the fragments in shuffled order with every
    /// third one duplicated, and checks the reassembled body.
    fn split_and_reassemble(len: usize, expected_fragments: usize) {
        let mut rng = ChaCha8Rng::seed_from_u64(len as u64);
        let mut body = vec![0u8; len];
        rng.fill(&mut body[..]);
        let datagrams = split_reply(99, 5, &body);
        assert_eq!(datagrams.len(), expected_fragments, "len {len}");

        let mut order: Vec<usize> = (0..datagrams.len()).collect();
        order.extend((0..datagrams.len()).step_by(3));
        order.shuffle(&mut rng);

        let mut reassembly: Option<Reassembly> = None;
        let mut new = 0;
        for index in order {
            let bytes = &datagrams[index];
            assert!(bytes.len() <= MAX_DATAGRAM);
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            let repr = Repr::parse(&packet).unwrap();
            assert_eq!(
                (repr.kind, repr.session, repr.request),
                (Kind::Reply, 99, 5)
            );
            assert_eq!(usize::from(repr.count), expected_fragments);
            let assembly = reassembly.get_or_insert_with(|| Reassembly::new(repr.count));
            if assembly.insert(repr.frag, repr.body) {
                new += 1;
            }
        }
        let reassembly = reassembly.unwrap();
        assert_eq!(new, expected_fragments);
        assert!(reassembly.is_complete());
        assert!(reassembly.missing().is_empty());
        assert_eq!(reassembly.received(), expected_fragments);
        assert_eq!(reassembly.into_body(), body);
    }

    #[test]
    fn split_and_reassemble_sizes() {
        split_and_reassemble(0, 1);
        split_and_reassemble(1, 1);
        split_and_reassemble(MAX_BODY, 1);
        split_and_reassemble(MAX_BODY + 1, 2);
        split_and_reassemble(150_000, 128);
    }

    #[test]
    fn empty_reply_is_one_empty_fragment() {
        let datagrams = split_reply(1, 2, b"");
        assert_eq!(datagrams.len(), 1);
        let packet = Packet::new_checked(&datagrams[0][..]).unwrap();
        assert_eq!((packet.frag(), packet.count()), (0, 1));
        assert!(packet.body().is_empty());
    }

    #[test]
    fn split_truncates_beyond_the_fragment_limit() {
        let body = vec![b'x'; MAX_REPLY_BODY + 10];
        let datagrams = split_reply(1, 2, &body);
        assert_eq!(datagrams.len(), usize::from(u16::MAX));
        let last = Packet::new_checked(&datagrams[datagrams.len() - 1][..]).unwrap();
        assert_eq!((last.frag(), last.count()), (u16::MAX - 1, u16::MAX));
        assert_eq!(last.body().len(), MAX_BODY);
    }

    #[test]
    fn reassembly_ignores_duplicates_and_out_of_range() {
        let mut reassembly = Reassembly::new(3);
        assert_eq!(reassembly.count(), 3);
        assert_eq!(reassembly.missing(), vec![0, 1, 2]);
        assert!(reassembly.insert(2, b"c"));
        assert!(!reassembly.insert(2, b"X"));
        assert!(!reassembly.insert(3, b"X"));
        assert!(reassembly.insert(0, b"a"));
        assert_eq!(reassembly.missing(), vec![1]);
        assert_eq!(reassembly.received(), 2);
        assert!(!reassembly.is_complete());
        assert!(reassembly.insert(1, b"b"));
        assert!(reassembly.is_complete());
        assert_eq!(reassembly.into_body(), b"abc");
        assert!(Reassembly::new(0).is_complete());
    }

    #[test]
    fn error_datagram_cuts_at_a_character_boundary() {
        let reason = "é".repeat(MAX_BODY); // 2 bytes each
        let bytes = error_datagram(1, 2, &reason);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.kind(), Kind::Error);
        assert_eq!(packet.body().len(), MAX_BODY);
        assert!(std::str::from_utf8(packet.body()).is_ok());

        let reason = format!("x{}", "é".repeat(MAX_BODY));
        let bytes = error_datagram(1, 2, &reason);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.body().len(), MAX_BODY - 1);
        assert!(std::str::from_utf8(packet.body()).is_ok());
    }

    #[test]
    fn describe_lines() {
        assert_eq!(
            describe(&Packet::new_checked(&REQUEST_BYTES[..]).unwrap()),
            "REQUEST session=1122334455667788, request=3, 1/1, 8 B: \"CRT 3331\""
        );
        assert_eq!(
            describe(&Packet::new_checked(&REPLY_BYTES[..]).unwrap()),
            "REPLY session=00000000000004d2, request=7, 2/3, 2 B: \"hi\""
        );
        assert_eq!(
            describe(&Packet::new_checked(&RESEND_BYTES[..]).unwrap()),
            "RESEND session=00000000000004d2, request=7, 1/1, 4 B: missing [3, 258]"
        );
        let many: Vec<u16> = (0..20).collect();
        let body = encode_missing(&many);
        let bytes = Repr {
            kind: Kind::Resend,
            session: 1,
            request: 1,
            frag: 0,
            count: 1,
            body: &body,
        }
        .to_vec();
        assert!(describe_datagram(&bytes)
            .ends_with("missing [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ... (20 in all)]"));
        let heartbeat = Repr {
            kind: Kind::Heartbeat,
            session: 1,
            request: 0,
            frag: 0,
            count: 1,
            body: b"",
        }
        .to_vec();
        assert_eq!(
            describe_datagram(&heartbeat),
            "HEARTBEAT session=0000000000000001, request=0, 1/1, 0 B"
        );
        let text = "line one\nline two with a much longer tail that goes on and on";
        let bytes = error_datagram(1, 9, text);
        assert_eq!(
            describe_datagram(&bytes),
            "ERROR session=0000000000000001, request=9, 1/1, 61 B: \
             \"line one\\nline two with a much longer tail that g\"..."
        );
        assert_eq!(
            describe_datagram(b"hello"),
            "malformed, 5 B: datagram of 5 bytes is shorter than the 20-byte header"
        );
    }
}
