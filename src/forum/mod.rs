//! Lab 3: the discussion forum. Commands travel over UDP with our own reliability
//! layer; uploads and downloads travel over TCP, authorised by the UDP exchange.
//! `shared/forum-spec.md` fixes what users see; this module is the reference
//! implementation students run and read.
//!
//! ```text
//!   typed line ─► command.rs ─► reliable.rs ─► wire.rs ══UDP══► server.rs ─► store.rs ─► DIR
//!   (client.rs)   parse, text   retransmit,    20-byte           sessions,    the only
//!                               reassemble     header + body     dedup,       module that
//!                                                                group commit touches DIR
//!   UPD / DWN ─────────────────────────── transfer.rs ══TCP══► transfer.rs ─► store.rs
//!                                          (one-time token from the UDP reply)
//! ```
//!
//! - [`wire`]: the datagram format (a 20-byte header, then a UTF-8 body or a list of
//!   fragment numbers), splitting long replies into fragments and reassembling them.
//! - [`reliable`]: the client's retransmission with an RFC 6298 timeout and Resend of
//!   missing fragments; the server's reply cache, which suppresses duplicates.
//! - [`command`]: the commands as typed, and the request and reply texts.
//! - [`store`]: the only module that touches the data directory.
//! - [`server`]: the command loop: sessions, logins, group commit.
//! - [`transfer`]: UPD and DWN over TCP with one-time tokens.
//! - [`client`]: the interactive client.
//! - [`bench`]: `socklab forum bench`, the load generator.

use std::io;

use thiserror::Error;

use crate::net::{describe, NetError};

pub mod bench;
pub mod client;
pub mod command;
pub mod reliable;
pub mod server;
pub mod store;
pub mod transfer;
pub mod wire;

/// What can stop a forum server or client (single bad requests never do).
#[derive(Debug, Error)]
pub enum ForumError {
    /// A socket could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The data directory could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Reading or writing `what` failed.
    #[error("{what}: {}", describe(.cause))]
    Io {
        /// What was being read or written ("standard input", "the UDP socket").
        what: String,
        /// The OS error.
        cause: io::Error,
    },
}
