//! Lab 3, the forum's data directory: the write-ahead log `DIR/.forum-log.<gen>`, which
//! makes a whole batch of appends durable with one `fdatasync` instead of one per
//! thread file touched.
//!
//! Every append to a thread file (a `CRT`'s creator line, a `MSG`, an upload's `user
//! uploaded f` line) is written to the thread file *and* to the log, as a record saying
//! where it went and what it was. Before the server answers a batch it fdatasyncs only
//! the log; the thread files are written but not synced. After a power cut
//! [`Store::open`](super::Store::open) replays the log and puts back every append the
//! cut lost. A killed process loses nothing either way: its writes are in the kernel's
//! page cache and reach the disk without it.
//!
//! A log file, then one record (integers big-endian):
//!
//! ```text
//!   "socklab forum log 1\n"            header, 20 bytes
//!   record record record ...           until the end of the file or a bad record
//!
//!   0      1      2             6                    14        14+T      14+T+L   +4
//!   +------+------+-------------+--------------------+---------+---------+--------+
//!   | kind | T    | L           | offset             | title   | line    | crc32  |
//!   | u8   | u8   | u32         | u64                | T bytes | L bytes | u32    |
//!   +------+------+-------------+--------------------+---------+---------+--------+
//!   kind 1, append:    `line` (with its `\n`) was written to file `title` at `offset`,
//!                      the file's length before the append
//!   kind 2, rewritten: a barrier: `title` was replaced by a new file (DLT, EDT)
//!   kind 3, removed:   a barrier: `title` was deleted (RMV); offset 0 and L 0 for both
//!   crc32:             CRC-32 (IEEE 802.3, as in Ethernet and zip) of every byte
//!                      before it in the record
//! ```
//!
//! # Replay
//!
//! The logs are read in generation order; a record that is cut short or whose checksum
//! does not match ends its log (the tail a power cut tore: it was never synced, so no
//! reply promised it). An append before a barrier of its title is skipped: its offset
//! refers to a file that has been replaced. Each remaining append is checked against
//! its thread file:
//!
//! ```text
//!   file length == offset                     -> append the line (the cut lost it)
//!   the line's bytes are there at offset      -> already on disk, nothing to do
//!   other bytes, or a shorter file            -> a torn append: cut the file back to
//!                                                offset, append the line
//!   file length < offset                      -> an earlier append is missing that
//!                                                the logs do not hold: leave the file
//! ```
//!
//! So replaying twice changes nothing the second time. The repaired files are fsynced,
//! then the logs are deleted.
//!
//! # Why barriers are safe
//!
//! Before a barrier for `t` is written, `t` and DIR are fsynced, and the barrier itself
//! is fsynced before the rewrite's `rename` (or the removal's first delete) happens. So
//! the appends a barrier hides are all in the old file on disk already, and the appends
//! after it always meet the new file.
//!
//! # Checkpoints
//!
//! A log is not kept forever: when it passes [`CHECKPOINT_BYTES`] or
//! [`CHECKPOINT_BATCHES`], the store starts the next generation and hands the old one
//! to a background thread that fsyncs every thread file the old generation touched,
//! then DIR, then deletes the old log. Checkpoints run one at a time, oldest first, so a
//! log never outlives a newer one that holds a barrier it needs.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock, PoisonError};

use super::format::MAX_LINE;
use super::names::{check_name, MAX_NAME_LEN};
use super::{flush_files, io_error, sync_dir, StoreError};

/// Log files are this, then the generation in decimal: `.forum-log.1`, `.forum-log.2`.
/// Hidden, so no valid title or file name collides with it.
pub(super) const LOG_PREFIX: &str = ".forum-log.";

/// The first bytes of every log: what the file is and the format's version.
pub(super) const HEADER: &[u8] = b"socklab forum log 1\n";

/// A log longer than this is checkpointed: replaying it after a power cut then reads at
/// most a few megabytes, and the thread files are synced every few seconds under load.
pub(super) const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

/// A log that has seen this many batches is checkpointed even if it is small, so a
/// quiet forum's thread files are synced now and then too.
pub(super) const CHECKPOINT_BATCHES: u64 = 10_000;

/// Bytes before the title: kind, title length, line length, offset.
const RECORD_HEAD: usize = 14;

/// Bytes of the checksum after the line.
const CRC_LEN: usize = 4;

/// The highest generation any store in this process has used. A new store starts above
/// it, so a checkpoint still finishing for a dropped store can never delete the log of
/// a new store on the same directory.
static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);

/// A generation above `found` (the highest on disk) and above every one this process
/// has used.
pub(super) fn next_generation(found: u64) -> u64 {
    LAST_GENERATION.fetch_max(found, Ordering::SeqCst);
    // The counter is at least `found` now; each caller gets its own number above it.
    LAST_GENERATION.fetch_add(1, Ordering::SeqCst) + 1
}

/// The file name of generation `generation`'s log.
pub(super) fn log_name(generation: u64) -> String {
    format!("{LOG_PREFIX}{generation}")
}

/// The generation of a log file's name; `None` for any other name.
pub(super) fn parse_log_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(LOG_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A line appended to a thread file.
    Append,
    /// Barrier: the thread file was replaced by a new one.
    Rewritten,
    /// Barrier: the thread file was deleted.
    Removed,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Append => 1,
            Kind::Rewritten => 2,
            Kind::Removed => 3,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Append),
            2 => Some(Kind::Rewritten),
            3 => Some(Kind::Removed),
            _ => None,
        }
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    /// What happened.
    pub kind: Kind,
    /// The thread.
    pub title: String,
    /// An append's position: the file's length before it. 0 for a barrier.
    pub offset: u64,
    /// An append's bytes exactly as written (with the `\n`). Empty for a barrier.
    pub line: Vec<u8>,
}

impl Record {
    /// `line` was appended to `title` at `offset`.
    pub fn append(title: &str, offset: u64, line: &[u8]) -> Record {
        Record {
            kind: Kind::Append,
            title: title.to_string(),
            offset,
            line: line.to_vec(),
        }
    }

    /// A barrier of kind `kind` (not [`Kind::Append`]) for `title`.
    pub fn barrier(title: &str, kind: Kind) -> Record {
        Record {
            kind,
            title: title.to_string(),
            offset: 0,
            line: Vec::new(),
        }
    }

    /// The record's bytes (see the module documentation). The title is a checked name
    /// (at most [`MAX_NAME_LEN`] bytes) and a line is far below 4 GB, so the lengths
    /// fit their fields.
    pub fn encode(&self) -> Vec<u8> {
        let title_len = u8::try_from(self.title.len()).expect("titles are checked names");
        let line_len = u32::try_from(self.line.len()).expect("a thread line is short");
        let mut bytes =
            Vec::with_capacity(RECORD_HEAD + self.title.len() + self.line.len() + CRC_LEN);
        bytes.push(self.kind.code());
        bytes.push(title_len);
        bytes.extend_from_slice(&line_len.to_be_bytes());
        bytes.extend_from_slice(&self.offset.to_be_bytes());
        bytes.extend_from_slice(self.title.as_bytes());
        bytes.extend_from_slice(&self.line);
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        bytes
    }
}

/// The records of one log file, and where and why reading stopped early, if it did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// The valid records, in order.
    pub records: Vec<Record>,
    /// The byte position of the first record not taken, and why.
    pub stopped: Option<(usize, &'static str)>,
}

/// Reads a log file's bytes. Never fails: whatever cannot be read ends the log.
pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    if bytes.len() < HEADER.len() {
        // Nothing, or part of the header: the cut came right after the log was created.
        if !HEADER.starts_with(bytes) {
            scan.stopped = Some((0, "the file does not start with the log's header"));
        }
        return scan;
    }
    if !bytes.starts_with(HEADER) {
        scan.stopped = Some((0, "the file does not start with the log's header"));
        return scan;
    }
    let mut at = HEADER.len();
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Ok((record, used)) => {
                scan.records.push(record);
                at += used;
            }
            Err(reason) => {
                scan.stopped = Some((at, reason));
                break;
            }
        }
    }
    scan
}

/// Decodes the record at the start of `bytes`; returns it and its length.
///
/// # Errors
/// Why it is not a whole, valid record.
fn decode(bytes: &[u8]) -> Result<(Record, usize), &'static str> {
    const CUT: &str = "a record cut short";
    let head = bytes.get(..RECORD_HEAD).ok_or(CUT)?;
    let title_len = usize::from(head[1]);
    let line_len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let line_len = usize::try_from(line_len).map_err(|_| "a line too long to be real")?;
    if title_len > MAX_NAME_LEN || line_len > MAX_LINE + 2 {
        // Checked before the lengths are used, so a torn length cannot make us wait
        // for gigabytes.
        return Err("a record with impossible lengths");
    }
    let body_end = RECORD_HEAD + title_len + line_len;
    let total = body_end + CRC_LEN;
    let whole = bytes.get(..total).ok_or(CUT)?;
    let stored = u32::from_be_bytes([
        whole[body_end],
        whole[body_end + 1],
        whole[body_end + 2],
        whole[body_end + 3],
    ]);
    if crc32(&whole[..body_end]) != stored {
        return Err("a record whose checksum does not match");
    }
    let kind = Kind::from_code(head[0]).ok_or("a record of an unknown kind")?;
    let title = std::str::from_utf8(&whole[RECORD_HEAD..RECORD_HEAD + title_len])
        .ok()
        .filter(|title| check_name(title).is_ok())
        .ok_or("a record whose title is not a valid name")?;
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&head[6..RECORD_HEAD]);
    let record = Record {
        kind,
        title: title.to_string(),
        offset: u64::from_be_bytes(offset),
        line: whole[RECORD_HEAD + title_len..body_end].to_vec(),
    };
    Ok((record, total))
}

/// The appends replay must check, in order: every append not followed by a barrier of
/// its title (later in the same log or in a later one).
pub(super) fn appends_to_replay(records: &[Record]) -> Vec<&Record> {
    let mut last_barrier: HashMap<&str, usize> = HashMap::new();
    for (index, record) in records.iter().enumerate() {
        if record.kind != Kind::Append {
            last_barrier.insert(&record.title, index);
        }
    }
    records
        .iter()
        .enumerate()
        .filter(|(index, record)| {
            record.kind == Kind::Append
                && last_barrier
                    .get(record.title.as_str())
                    .is_none_or(|barrier| barrier < index)
        })
        .map(|(_, record)| record)
        .collect()
}

/// What [`replay`] did.
#[derive(Debug, Default)]
pub(super) struct Replayed {
    /// Sentences for the store's warnings: threads repaired or left alone.
    pub warnings: Vec<String>,
    /// fsyncs made.
    pub fsyncs: u64,
    /// A thread file was created, so DIR must be fsynced before the logs go.
    pub created: bool,
}

/// A thread file replay is working on.
struct Target {
    file: File,
    /// Its length now.
    len: u64,
    /// Lines written back.
    restored: usize,
    /// Replay created it (its `CRT` was lost).
    created: bool,
}

/// Puts every append of `records` that its thread file lacks back into it (see the
/// module documentation), then fsyncs the files it changed.
///
/// # Errors
/// [`StoreError::Io`] when a thread file cannot be read, written or fsynced.
pub(super) fn replay(dir: &Path, records: &[Record]) -> Result<Replayed, StoreError> {
    let mut done = Replayed::default();
    // `None`: the title's file cannot be repaired; its later appends are skipped too.
    let mut targets: HashMap<&str, Option<Target>> = HashMap::new();
    for record in appends_to_replay(records) {
        let title = record.title.as_str();
        let path = dir.join(title);
        let slot = match targets.entry(title) {
            Slot::Occupied(slot) => slot.into_mut(),
            Slot::Vacant(slot) => slot.insert(open_target(&path, record.offset, &mut done)?),
        };
        let Some(target) = slot else { continue };
        if target.len < record.offset {
            done.warnings.push(format!(
                "could not restore thread {title} from the log: the file has {} bytes, \
                 but the log's next line starts at byte {}",
                target.len, record.offset
            ));
            *slot = None;
            continue;
        }
        let on_disk = matches_at(&mut target.file, target.len, record)
            .map_err(|cause| io_error(&path, cause))?;
        if !on_disk {
            write_at(&mut target.file, record).map_err(|cause| io_error(&path, cause))?;
            target.len = record.offset + record.line.len() as u64;
            target.restored += 1;
        }
    }
    let mut repaired: Vec<(&str, Target)> = targets
        .into_iter()
        .filter_map(|(title, target)| Some((title, target?)))
        .filter(|(_, target)| target.restored > 0)
        .collect();
    repaired.sort_by_key(|(title, _)| *title);
    for (title, target) in repaired {
        done.fsyncs += 1;
        target
            .file
            .sync_data()
            .map_err(|cause| io_error(&dir.join(title), cause))?;
        done.created |= target.created;
        done.warnings.push(format!(
            "restored {} line(s) of thread {title} from the log: a crash had kept them \
             from the disk",
            target.restored
        ));
    }
    Ok(done)
}

/// Opens the file of a title replay has appends for; `None` (with a warning) when it
/// must be left alone.
fn open_target(
    path: &Path,
    offset: u64,
    done: &mut Replayed,
) -> Result<Option<Target>, StoreError> {
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let open = |create: bool| {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if create {
            options.create_new(true);
        }
        options.open(path).map_err(|cause| io_error(path, cause))
    };
    match fs::symlink_metadata(path) {
        // Never through a symbolic link: it could point outside DIR.
        Ok(meta) if meta.is_file() => Ok(Some(Target {
            file: open(false)?,
            len: meta.len(),
            restored: 0,
            created: false,
        })),
        Ok(_) => {
            done.warnings.push(format!(
                "left {name} alone: the log holds lines for it, but it is not a file"
            ));
            Ok(None)
        }
        // The thread's creation was lost: its first record recreates it.
        Err(cause) if cause.kind() == io::ErrorKind::NotFound && offset == 0 => Ok(Some(Target {
            file: open(true)?,
            len: 0,
            restored: 0,
            created: true,
        })),
        Err(cause) if cause.kind() == io::ErrorKind::NotFound => {
            done.warnings.push(format!(
                "could not restore thread {name} from the log: the file is missing"
            ));
            Ok(None)
        }
        Err(cause) => Err(io_error(path, cause)),
    }
}

/// Whether `record`'s line is in `file` (of length `len`) at its offset.
fn matches_at(file: &mut File, len: u64, record: &Record) -> io::Result<bool> {
    if len < record.offset + record.line.len() as u64 {
        return Ok(false);
    }
    let mut found = vec![0u8; record.line.len()];
    file.seek(SeekFrom::Start(record.offset))?;
    file.read_exact(&mut found)?;
    Ok(found == record.line)
}

/// Cuts `file` back to `record`'s offset and writes its line there.
fn write_at(file: &mut File, record: &Record) -> io::Result<()> {
    file.set_len(record.offset)?;
    file.seek(SeekFrom::Start(record.offset))?;
    file.write_all(&record.line)
}

/// The store's current log generation.
#[derive(Debug)]
pub(super) struct Log {
    /// The number in the file's name.
    pub generation: u64,
    /// Created by the generation's first record, so a store that only reads leaves no
    /// log behind.
    pub file: Option<Arc<File>>,
    /// The file's length.
    pub len: u64,
    /// Group commits since the generation started.
    pub batches: u64,
    /// Records were written since the last sync took the log.
    pub unsynced: bool,
}

impl Log {
    /// A generation with no file yet.
    pub fn new(generation: u64) -> Log {
        Log {
            generation,
            file: None,
            len: 0,
            batches: 0,
            unsynced: false,
        }
    }

    /// Whether the generation is big or old enough to be checkpointed.
    pub fn due(&self) -> bool {
        self.file.is_some() && (self.len >= CHECKPOINT_BYTES || self.batches >= CHECKPOINT_BATCHES)
    }
}

/// How a store's checkpoints went, shared with the checkpointer thread.
#[derive(Debug, Default)]
pub(super) struct CheckpointState {
    /// A checkpoint failed: its log and every later one stay for the next `open` to
    /// replay. (Deleting a later log while keeping an earlier one could lose a barrier
    /// the earlier one needs; and after a failed fsync Linux may have dropped the
    /// pages, so trying again proves nothing.)
    failed: bool,
    /// The failure, until a sync reports it.
    unreported: Option<StoreError>,
}

/// Takes the failure of a background checkpoint not reported yet.
pub(super) fn take_failure(state: &Mutex<CheckpointState>) -> Option<StoreError> {
    state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .unreported
        .take()
}

/// A finished log generation: the thread files it touched are to be fsynced, then DIR,
/// then the log deleted.
#[derive(Debug)]
pub(super) struct Checkpoint {
    /// The old generation's log.
    pub log: PathBuf,
    /// The thread files appended to in it, with their open handles.
    pub files: Vec<(PathBuf, File)>,
    /// DIR: the names of threads created in the generation become durable with it.
    pub dir: PathBuf,
    /// Where a failure is recorded.
    pub state: Arc<Mutex<CheckpointState>>,
}

/// A checkpoint to run, and who waits for its result (nobody for a background one).
type CheckpointJob = (Checkpoint, Option<mpsc::Sender<Result<(), StoreError>>>);

/// The checkpointer thread's queue. One thread, so checkpoints finish in the order they
/// were started (see the module documentation); it fsyncs on the flusher threads.
static CHECKPOINTER: OnceLock<Mutex<mpsc::Sender<CheckpointJob>>> = OnceLock::new();

impl Checkpoint {
    /// Queues the checkpoint after every one started before it; `done` hears how it
    /// went, else a failure is kept for the next sync to report.
    pub fn start(self, done: Option<mpsc::Sender<Result<(), StoreError>>>) {
        let queue = CHECKPOINTER.get_or_init(|| {
            let (sender, receiver) = mpsc::channel::<CheckpointJob>();
            // If the thread cannot start, `receiver` is dropped with the closure and
            // every checkpoint runs in the caller instead (below).
            let _ = std::thread::Builder::new()
                .name("forum-checkpoint".into())
                .spawn(move || {
                    for (checkpoint, done) in receiver {
                        checkpoint.finish(done);
                    }
                });
            Mutex::new(sender)
        });
        let job = (self, done);
        let refused = match queue.lock() {
            Ok(queue) => queue.send(job).err().map(|refused| refused.0),
            Err(_) => Some(job),
        };
        if let Some((checkpoint, done)) = refused {
            checkpoint.finish(done);
        }
    }

    /// Runs the checkpoint and delivers its result.
    fn finish(self, done: Option<mpsc::Sender<Result<(), StoreError>>>) {
        let state = Arc::clone(&self.state);
        let result = self.run();
        match (done, result) {
            (Some(done), result) => {
                let _ = done.send(result);
            }
            (None, Err(error)) => {
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                state.unreported.get_or_insert(error);
            }
            (None, Ok(())) => {}
        }
    }

    /// fsyncs the files, then DIR, then deletes the log; does nothing once a checkpoint
    /// of this store has failed.
    fn run(self) -> Result<(), StoreError> {
        let Checkpoint {
            log,
            files,
            dir,
            state,
        } = self;
        if state.lock().unwrap_or_else(PoisonError::into_inner).failed {
            return Ok(());
        }
        let result = flush_files(files)
            .map_or(Ok(()), Err)
            .and_then(|()| sync_dir(&dir))
            .and_then(|()| match fs::remove_file(&log) {
                Ok(()) => Ok(()),
                Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(cause) => Err(io_error(&log, cause)),
            });
        if result.is_err() {
            state.lock().unwrap_or_else(PoisonError::into_inner).failed = true;
        }
        result
    }
}

/// The CRC-32 lookup table: entry `n` is the remainder of byte `n` (reflected
/// polynomial 0xEDB88320), computed once by the compiler.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
}

/// CRC-32 of `bytes` as Ethernet, zip and `crc32(1)` compute it: one table lookup a
/// byte. It catches every torn write of a few bytes and all but one in 4 billion of
/// the rest; the log needs no more (it guards against accidents, not attackers).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &byte| {
        CRC_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(records: &[Record]) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        for record in records {
            bytes.extend(record.encode());
        }
        bytes
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value every CRC-32 (IEEE) implementation publishes.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn an_append_record_has_the_documented_layout() {
        let bytes = Record::append("t", 5, b"1 yoda: hi\n").encode();
        let mut expected = vec![1, 1, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 5, b't'];
        expected.extend_from_slice(b"1 yoda: hi\n");
        let crc = crc32(&expected);
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(bytes, expected);
        let barrier = Record::barrier("t", Kind::Removed).encode();
        assert_eq!(
            barrier[..RECORD_HEAD + 1],
            [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b't']
        );
    }

    #[test]
    fn records_round_trip_through_a_log() {
        let records = vec![
            Record::append("t", 0, b"yoda\n"),
            Record::append("t", 5, b"1 yoda: hi\n"),
            Record::barrier("t", Kind::Rewritten),
            Record::append("u.v-w", 123_456_789_012, b"\nobiwan uploaded f\n"),
        ];
        let scan = scan(&log_of(&records));
        assert_eq!(scan.records, records);
        assert_eq!(scan.stopped, None);
    }

    #[test]
    fn a_torn_tail_ends_the_log_at_the_last_whole_record() {
        let records = vec![
            Record::append("t", 0, b"yoda\n"),
            Record::append("t", 5, b"1 yoda: hi\n"),
        ];
        let whole = log_of(&records);
        let first_end = HEADER.len() + records[0].encode().len();
        for cut in first_end..whole.len() {
            let scan = scan(&whole[..cut]);
            assert_eq!(scan.records, records[..1], "cut at {cut}");
            let expected = (cut > first_end).then_some((first_end, "a record cut short"));
            assert_eq!(scan.stopped, expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_record_ends_the_log() {
        let records = vec![
            Record::append("t", 0, b"yoda\n"),
            Record::append("t", 5, b"1 yoda: hi\n"),
            Record::append("t", 16, b"2 yoda: ho\n"),
        ];
        let mut bytes = log_of(&records);
        let second = HEADER.len() + records[0].encode().len();
        // A flipped bit in the second record's text; zeros where the disk lost a block.
        bytes[second + RECORD_HEAD + 3] ^= 0x20;
        let scan_flipped = scan(&bytes);
        assert_eq!(scan_flipped.records, records[..1]);
        assert_eq!(
            scan_flipped.stopped,
            Some((second, "a record whose checksum does not match"))
        );
        let mut zeros = log_of(&records);
        zeros[second..].fill(0);
        assert_eq!(scan(&zeros).records, records[..1]);
        assert!(scan(&zeros).stopped.is_some());
    }

    #[test]
    fn headers_and_hostile_records_are_refused() {
        assert_eq!(
            scan(b""),
            Scan::default(),
            "a log created just before the cut"
        );
        assert_eq!(scan(&HEADER[..7]), Scan::default());
        assert_eq!(
            scan(b"not a log at all, but long").stopped.map(|s| s.0),
            Some(0)
        );
        // A title that would leave DIR, with a valid checksum.
        let mut evil = vec![1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        evil.extend_from_slice(b"../x");
        let crc = crc32(&evil);
        evil.extend_from_slice(&crc.to_be_bytes());
        let mut bytes = HEADER.to_vec();
        bytes.extend(&evil);
        assert_eq!(
            scan(&bytes).stopped,
            Some((HEADER.len(), "a record whose title is not a valid name"))
        );
        // A length of 4 GB is refused before anything waits for it.
        let mut huge = HEADER.to_vec();
        huge.extend_from_slice(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, b't']);
        assert_eq!(
            scan(&huge).stopped,
            Some((HEADER.len(), "a record with impossible lengths"))
        );
    }

    #[test]
    fn appends_before_a_barrier_of_their_title_are_skipped() {
        let records = vec![
            Record::append("t", 0, b"yoda\n"),
            Record::append("u", 0, b"luke\n"),
            Record::append("t", 5, b"1 yoda: a\n"),
            Record::barrier("t", Kind::Rewritten),
            Record::append("t", 12, b"2 yoda: b\n"),
            Record::barrier("u", Kind::Removed),
            Record::append("u", 0, b"leia\n"),
        ];
        let kept: Vec<&Record> = appends_to_replay(&records);
        assert_eq!(kept, [&records[4], &records[6]]);
    }

    #[test]
    fn log_names_parse_only_generations() {
        assert_eq!(log_name(7), ".forum-log.7");
        assert_eq!(parse_log_name(".forum-log.7"), Some(7));
        assert_eq!(
            parse_log_name(".forum-log.18446744073709551615"),
            Some(u64::MAX)
        );
        for other in [
            ".forum-log.",
            ".forum-log",
            ".forum-log.x",
            ".forum-log.-1",
            "t",
        ] {
            assert_eq!(parse_log_name(other), None, "{other}");
        }
        let a = next_generation(41);
        assert!(a >= 42);
        assert!(
            next_generation(0) > a,
            "a generation is never handed out twice"
        );
    }
}
