//! Lab 3: the discussion forum. Commands travel over UDP with our own reliability
//! layer; uploads and downloads travel over TCP, authorised by the UDP exchange.
//! `shared/forum-spec.md` fixes what users see; this module is the reference
//! implementation students run and read.
//!
//! - [`wire`]: the datagram format (a 20-byte header, then a UTF-8 body or a list of
//!   fragment numbers), splitting long replies into fragments and reassembling them.
//! - [`reliable`]: the client's retransmission with an RFC 6298 timeout and Resend of
//!   missing fragments; the server's reply cache, which suppresses duplicates.
//! - [`store`]: the only module that touches the data directory.

pub mod reliable;
pub mod store;
pub mod wire;
