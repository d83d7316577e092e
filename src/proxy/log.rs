//! `socklab proxy --log FILE|-` (lab 2): one JSON object per line for every UDP
//! datagram the proxy handled, so a run can be replayed in a spreadsheet or compared
//! with the configured model.
//!
//! # Format
//!
//! ```text
//! {"time":0.012034,"dir":"c2s","index":3,"len":64,"actions":["drop-loss"],"delay":null}
//! {"time":0.013101,"dir":"s2c","index":3,"len":64,"actions":["corrupt","delay"],"delay":0.0052}
//! {"time":0.020002,"dir":"c2s","index":5,"len":64,"actions":["reorder"],"delay":null}
//! {"time":0.031877,"dir":"c2s","index":5,"len":64,"actions":["release"],"delay":0.011875}
//! ```
//!
//! - `time`: seconds since the proxy started, when the datagram arrived (or, for a
//!   `release` line, when the held datagram was let go).
//! - `dir`: `c2s` (client to server) or `s2c` (server to client).
//! - `index`: the datagram's number in its direction, from 1, in arrival order: the
//!   number `--drop-nth` counts, and what the model's decisions are keyed by.
//! - `len`: payload bytes.
//! - `actions`: what was done to it, in the model's order: `drop-rule`, `drop-loss`,
//!   `drop-queue`, `duplicate`, `corrupt`, `reorder` (held back), `delay` (sent later
//!   than it arrived), and `release` on the second line of a held datagram. An empty
//!   list means it was forwarded untouched, at once.
//! - `delay`: seconds from arrival to sending the (first) copy; `null` when it was
//!   dropped or held back.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use super::model::{Direction, DropCause};

/// Something done to a datagram, as written in the log's `actions` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Dropped by a scripted rule.
    DropRule,
    /// Dropped by the loss model.
    DropLoss,
    /// Dropped because a queue was full.
    DropQueue,
    /// A second copy was sent.
    Duplicate,
    /// One bit was flipped.
    Corrupt,
    /// Held back, to be sent after later datagrams.
    Reorder,
    /// Sent later than it arrived.
    Delay,
    /// A held datagram was let go.
    Release,
}

impl From<DropCause> for Action {
    fn from(cause: DropCause) -> Self {
        match cause {
            DropCause::Rule => Action::DropRule,
            DropCause::Loss => Action::DropLoss,
            DropCause::QueueFull => Action::DropQueue,
        }
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Seconds since the proxy started.
    pub time: f64,
    /// `c2s` or `s2c`.
    pub dir: &'static str,
    /// The datagram's index in its direction, from 1.
    pub index: u64,
    /// Payload bytes.
    pub len: usize,
    /// What was done to it.
    pub actions: Vec<Action>,
    /// Seconds from arrival to sending, if it was sent.
    pub delay: Option<f64>,
}

impl Record {
    /// A record for datagram `index` of `direction`, `len` bytes, at `time`.
    pub fn new(direction: Direction, index: u64, len: usize, time: Duration) -> Self {
        Record {
            time: time.as_secs_f64(),
            dir: direction.short_name(),
            index,
            len,
            actions: Vec::new(),
            delay: None,
        }
    }

    /// Adds an action once (a duplicate that is also corrupted says `corrupt` once).
    pub fn push(&mut self, action: Action) {
        if !self.actions.contains(&action) {
            self.actions.push(action);
        }
    }
}

/// The `--log` writer: one [`Record`] per line.
pub struct DatagramLog {
    out: Box<dyn Write + Send>,
}

impl DatagramLog {
    /// A log writing to `out` (a buffered file, or stdout for `--log -`).
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        DatagramLog { out }
    }

    /// Writes one record as a JSON line.
    ///
    /// # Errors
    /// The I/O error of the underlying writer (a full disk, a closed pipe).
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        // One write per line: with `--log -` the status lines of other tasks share
        // stdout, and stdout is locked per write, so lines never interleave.
        self.out.write_all(&line)
    }

    /// Flushes buffered lines.
    ///
    /// # Errors
    /// The I/O error of the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer tests can read back after handing it to the log.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_one_json_line_each() {
        let sink = Shared::default();
        let mut log = DatagramLog::new(Box::new(sink.clone()));
        let mut dropped = Record::new(Direction::ClientToServer, 3, 64, Duration::from_millis(12));
        dropped.push(Action::from(DropCause::Loss));
        log.write(&dropped).unwrap();
        let mut sent = Record::new(Direction::ServerToClient, 4, 10, Duration::from_millis(13));
        sent.push(Action::Corrupt);
        sent.push(Action::Corrupt);
        sent.push(Action::Delay);
        sent.delay = Some(0.005);
        log.write(&sent).unwrap();
        log.flush().unwrap();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            vec![
                r#"{"time":0.012,"dir":"c2s","index":3,"len":64,"actions":["drop-loss"],"delay":null}"#,
                r#"{"time":0.013,"dir":"s2c","index":4,"len":10,"actions":["corrupt","delay"],"delay":0.005}"#,
            ]
        );
    }
}
