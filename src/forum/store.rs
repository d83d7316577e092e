//! Lab 3: the forum's storage, the only code that touches the data directory DIR.
//! The UDP server, the client and the TCP transfers all go through [`Store`], so every
//! rule about names, ownership and durability lives here once.
//!
//! # What is in DIR
//!
//! ```text
//!   DIR/
//!   ├── credentials.txt            yoda wise@!man          (one user a line)
//!   ├── 3331                       yoda                    (thread "3331": creator,
//!   │                              1 yoda: Networks is awesome    then its lines)
//!   │                              obiwan uploaded test.exe
//!   ├── 3331-test.exe              (the upload test.exe of thread 3331)
//!   ├── .forum-journal             (only while a multi-file change is under way)
//!   ├── .forum-log.7               (the write-ahead log of appends, see `wal`; while
//!   │                               the server runs, and after a crash until `open`)
//!   ├── .forum-upload-3f9c...      (an upload being received; `.forum-rewrite-...`
//!   │                               is a thread being rewritten)
//!   └── Cargo.toml, notes/ ...     (anything else: DIR defaults to the current
//!                                   directory, so unrelated files are left alone)
//! ```
//!
//! Titles and file names come from a small alphabet that cannot spell `/`, `..` or a
//! leading `.` ([`check_name`]), so a name always stays inside DIR and never meets
//! the store's hidden files. A name that would collide with a file of another kind
//! (`CRT a-b` while `a-b` is an upload of `a`, `UPD t f` while a thread `t-f` exists,
//! or any unrelated file) is refused, never overwritten.
//!
//! # Durability: what survives a crash
//!
//! A *kill* (SIGKILL at any instant) loses nothing the process wrote: the kernel still
//! has it. A *power cut* loses whatever was not fsynced. "Reply" means the server's
//! answer, sent only once the change is durable.
//!
//! | change | how | after a kill | after a power cut |
//! |---|---|---|---|
//! | new user | one `write` of `user password\n`, fsync, then reply | old or new | new once replied |
//! | `CRT` | create with `O_EXCL` (never replaces), one `write`; logged | no file, or the thread | replayed from the log (file recreated) |
//! | `MSG` | one `write` of the line with `O_APPEND`; logged | old or new thread | replayed from the log |
//! | `DLT`, `EDT` | fsync old file + DIR, barrier in the log (fsync), new thread in a temp file, fsync, `rename`, DIR fsync | old or new | old or new |
//! | `UPD` | journal, link temp to `t-f`, append the line (logged), sync, delete journal | rolled forward | rolled forward |
//! | `RMV` | fsync `t`, journal, barrier in the log (fsync), delete `t`, delete each `t-f`, delete journal | rolled forward | rolled forward |
//!
//! An fsync (making the data survive power loss, not only a killed process) costs
//! about 150-200 µs on the lab VM's ext4 disk (median 158 µs for `fdatasync` of an
//! appended line, 200 µs for a directory; the append itself is ~1 µs). Doing one per
//! message would cap the server near 6,000 messages/s: posting 1,000 messages through
//! the store with a `sync` after each took 164 µs a message, with one `sync` at the
//! end 15 µs (a debug build). So appends use *group commit*: they are written to their
//! thread files and recorded in the write-ahead log (`wal`), and [`Store::sync`] makes
//! the whole batch durable with one fdatasync of the log, however many threads it
//! touched (before the log, it fsynced each of them: ~17 a batch under load). The
//! thread files are fsynced later, in the background, when the log is checkpointed.
//! The server runs a batch of commands, calls `sync` once, and only then sends the
//! replies, so "Message posted" still means "on disk". New users are the exception:
//! they are fsynced before `add_user` returns.
//!
//! # Start-up
//!
//! [`Store::open`] creates `credentials.txt` if it is missing, replays the write-ahead
//! log and deletes it (see `wal`), finishes a change an interrupted journal describes
//! (see `journal`), deletes the store's stale temporary
//! files (and nothing else), then loads every file with a valid name that parses
//! strictly as a thread (see `format`). An upload `t-f` is never taken for a thread,
//! even when its contents happen to look like one. A file that looks like a thread but
//! breaks the format further down is left alone and reported in [`Store::warnings`].
//!
//! The store is plain synchronous `std::fs`: the server keeps it behind a mutex and
//! calls it from a blocking context.

mod format;
mod journal;
mod names;
#[cfg(test)]
mod tests;
mod wal;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use thiserror::Error;

use crate::net::describe;
use journal::{Intent, JOURNAL_FILE};
use wal::{Checkpoint, CheckpointState, Kind, Log, Record};

pub use names::{
    check_name, check_text, check_user, shown, NameProblem, CREDENTIALS_FILE, MAX_NAME_LEN,
    MAX_TEXT,
};

/// Threads that flush files at once for a checkpoint. The file system joins
/// concurrent flushes into one journal commit, so a checkpoint of twenty threads costs
/// a few commits instead of twenty in a row.
const FLUSH_THREADS: usize = 32;

/// The name of a file being uploaded: this, then [`TEMP_SUFFIX_DIGITS`] hex digits.
const UPLOAD_TEMP: &str = ".forum-upload-";

/// The name of a thread (or the journal) being rewritten: this, then hex digits.
const REWRITE_TEMP: &str = ".forum-rewrite-";

/// Hex digits of randomness in a temporary file's name (64 bits).
const TEMP_SUFFIX_DIGITS: usize = 16;

/// How many random names to try before giving up on creating a temporary file. With 64
/// random bits a second try is already astronomically rare.
const TEMP_ATTEMPTS: usize = 4;

/// One line of a thread after its first (the creator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `N author: text`. The number is not stored: it is the message's position among
    /// the thread's messages, which is why a delete renumbers the ones after it.
    Message {
        /// Who posted it.
        author: String,
        /// The text, one line.
        text: String,
    },
    /// `user uploaded file`; the file is `DIR/title-file`.
    Upload {
        /// Who uploaded it.
        user: String,
        /// The upload's name.
        file: String,
    },
}

/// A thread as loaded from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// Line 1: who created it, the only user who may remove it.
    pub creator: String,
    /// The other lines, in order.
    pub lines: Vec<Line>,
}

impl Thread {
    /// How many messages (not uploads) the thread holds; the next one gets this plus 1.
    pub fn message_count(&self) -> usize {
        self.lines
            .iter()
            .filter(|line| matches!(line, Line::Message { .. }))
            .count()
    }

    /// Message `number` (from 1) as `(author, text)`.
    pub fn message(&self, number: usize) -> Option<(&str, &str)> {
        match &self.lines[self.message_index(number)?] {
            Line::Message { author, text } => Some((author, text)),
            Line::Upload { .. } => None,
        }
    }

    /// The names of the thread's uploads, in order.
    pub fn uploads(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|line| match line {
            Line::Upload { file, .. } => Some(file.as_str()),
            Line::Message { .. } => None,
        })
    }

    /// Whether `file` was uploaded to the thread.
    pub fn has_upload(&self, file: &str) -> bool {
        self.uploads().any(|name| name == file)
    }

    /// The index in `lines` of message `number` (from 1).
    fn message_index(&self, number: usize) -> Option<usize> {
        let wanted = number.checked_sub(1)?;
        self.lines
            .iter()
            .enumerate()
            .filter(|(_, line)| matches!(line, Line::Message { .. }))
            .nth(wanted)
            .map(|(index, _)| index)
    }
}

/// A "no" the forum gives a user: the request was understood but cannot be done. The
/// server maps each to the spec's wording (`Thread t exists`, ...); `Display` is a
/// plain sentence for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// A thread title or file name outside the allowed alphabet or length.
    #[error("{}", bad_name(.name, .problem))]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// `CRT` of a thread that exists.
    #[error("a thread with that title already exists")]
    ThreadExists,
    /// The name belongs to a file that is not a thread (an upload, an unrelated file),
    /// or an upload's `t-f` would land on one.
    #[error("that name is taken by another file in the forum's directory")]
    NameTaken,
    /// No thread with that title.
    #[error("the thread does not exist")]
    NoThread,
    /// The thread has no message with that number.
    #[error("message {number} does not exist in the thread")]
    NoMessage {
        /// The number asked for.
        number: usize,
    },
    /// `DLT`/`EDT` of another user's message.
    #[error("the message belongs to another user")]
    NotAuthor,
    /// `RMV` of another user's thread.
    #[error("the thread was created by another user")]
    NotCreator,
    /// `UPD` of a name the thread already has.
    #[error("a file with that name was already uploaded to the thread")]
    FileExists,
    /// `DWN` of a name the thread does not have.
    #[error("no file with that name was uploaded to the thread")]
    NoFile,
    /// A message text that is empty, longer than [`MAX_TEXT`] bytes or holds a control
    /// character (newline, tab...).
    #[error(
        "a message must be 1 to {MAX_TEXT} bytes of text without newlines, tabs or other \
         control characters"
    )]
    BadText,
    /// A username or password that is empty or holds a space or non-printable character.
    #[error("usernames and passwords must be printable characters without spaces")]
    BadUser,
    /// `add_user` of a registered name.
    #[error("that username is already registered")]
    UserExists,
}

/// `BadName`'s sentence: the name (escaped, shortened), then the problem.
fn bad_name(name: &str, problem: &NameProblem) -> String {
    if name.is_empty() {
        format!("the name {problem}")
    } else {
        format!("`{}` {problem}", names::shown(name))
    }
}

/// Anything a [`Store`] operation can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The forum says no (see [`Refusal`]); nothing was changed.
    #[error("{0}")]
    Refused(Refusal),
    /// The file system failed (disk full, permission denied...).
    #[error("{}: {}", .path.display(), describe(.cause))]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// `credentials.txt` or the journal cannot be understood; a person has to look, since
    /// guessing could lock users out or delete the wrong files.
    #[error("{} line {line}: {reason}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    /// The refusal, when this is one: the server answers those to the user and treats
    /// the rest as its own failure.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            StoreError::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

impl From<Refusal> for StoreError {
    fn from(refusal: Refusal) -> StoreError {
        StoreError::Refused(refusal)
    }
}

/// Counts for `forum bench` and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Threads loaded or created.
    pub threads: usize,
    /// Messages over all threads.
    pub messages: usize,
    /// Uploads over all threads.
    pub uploads: usize,
    /// fsync calls since [`Store::open`] (the log, files and the directory), to show
    /// what group commit saves.
    pub fsyncs: u64,
    /// Group commits since [`Store::open`] that had something to make durable: with the
    /// log, a batch of appends costs one fsync, so `fsyncs / syncs` stays near 1.
    pub syncs: u64,
}

/// A thread and what the store must remember about its file.
#[derive(Debug)]
struct Entry {
    thread: Thread,
    /// The file's last line has no `\n` (a hand-made file): the next append writes one.
    unterminated: bool,
}

/// The forum's data directory, loaded: credentials and threads in memory, every change
/// written through to the files. See the module documentation for the layout and the
/// crash-safety rules.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    users: HashMap<String, String>,
    /// `credentials.txt` lacks its final `\n`.
    credentials_unterminated: bool,
    /// By title; a `BTreeMap` so that `list` comes out sorted.
    threads: BTreeMap<String, Entry>,
    /// Threads appended to in the current log generation, each with an open handle,
    /// which is reused for the next append (a rewrite or removal drops it: the handle
    /// would point to the replaced file). Their checkpoint fsyncs them.
    appended: BTreeMap<String, File>,
    /// Files to fsync directly at the next [`Store::sync`], not through the log: only
    /// `open` writes such (the credentials file it creates, an upload line it restores).
    unsynced: Vec<(PathBuf, File)>,
    /// Entries were created, renamed or deleted since the last [`Store::sync`].
    dir_unsynced: bool,
    /// The write-ahead log's current generation.
    log: Log,
    /// How the background checkpoints went.
    checkpoints: Arc<Mutex<CheckpointState>>,
    fsyncs: u64,
    /// Log fsyncs counted in `fsyncs` that [`PendingSync::run_group`] found it could
    /// share with a later batch's, and so did not make.
    shared_fsyncs: Arc<AtomicU64>,
    syncs: u64,
    warnings: Vec<String>,
}

impl Store {
    /// Opens the forum in `dir` (created if missing): creates `credentials.txt` if it is
    /// missing, restores the appends a power cut lost from the write-ahead log (see
    /// `wal`), finishes an interrupted upload or removal, deletes stale temporary
    /// files and loads the threads. Everything it changed is on disk when it returns.
    ///
    /// # Errors
    /// [`StoreError::Io`] when DIR or a file in it cannot be read or written;
    /// [`StoreError::Corrupt`] when `credentials.txt` or the journal is unusable (the
    /// server should not start and guess).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // An empty path means the current directory, but cannot be listed as such.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::create_dir_all(dir).map_err(|cause| io_error(dir, cause))?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            users: HashMap::new(),
            credentials_unterminated: false,
            threads: BTreeMap::new(),
            appended: BTreeMap::new(),
            unsynced: Vec::new(),
            dir_unsynced: false,
            log: Log::new(0),
            checkpoints: Arc::default(),
            fsyncs: 0,
            shared_fsyncs: Arc::new(AtomicU64::new(0)),
            syncs: 0,
            warnings: Vec::new(),
        };
        store.load_credentials()?;
        // The log before the journal: an interrupted upload's journal reads the thread
        // file, which must hold every logged line first; an interrupted removal then
        // deletes whatever the log restored.
        store.replay_log()?;
        store.replay_journal()?;
        store.sweep_temps()?;
        store.load_threads()?;
        store.sync()?;
        Ok(store)
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `open` noticed and worked around: files that looked like threads but were
    /// left alone (with the line and reason), a thread listing a missing upload, an
    /// interrupted change it finished, stale temporary files it deleted.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The password of `user`, if registered.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    /// Registers `user` with `password`, appending `user password` to
    /// `credentials.txt`. The line is on disk (fsynced) when this returns, because the
    /// server's `Welcome` must not promise an account a crash would lose.
    ///
    /// # Errors
    /// [`Refusal::BadUser`] for an empty or non-printable username or password, or one
    /// with a space; [`Refusal::UserExists`]; [`StoreError::Io`] when the line cannot be
    /// written (the user is then not registered) or fsynced (registered, but a power
    /// cut may lose the line).
    pub fn add_user(&mut self, user: &str, password: &str) -> Result<(), StoreError> {
        check_user(user)?;
        check_user(password)?;
        if self.users.contains_key(user) {
            return Err(Refusal::UserExists.into());
        }
        let path = self.dir.join(CREDENTIALS_FILE);
        let mut record = String::new();
        if self.credentials_unterminated {
            record.push('\n');
        }
        record.push_str(&format!("{user} {password}\n"));
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|cause| io_error(&path, cause))?;
        append_once(&file, record.as_bytes()).map_err(|cause| io_error(&path, cause))?;
        self.credentials_unterminated = false;
        // Known from now on even if the fsync fails: the line is in the file, and a
        // second `add_user` must not append the name twice.
        self.users.insert(user.to_string(), password.to_string());
        self.fsyncs += 1;
        file.sync_data().map_err(|cause| io_error(&path, cause))
    }

    /// Creates thread `title` with `creator` on its first line.
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::ThreadExists`], [`Refusal::NameTaken`] (a file
    /// of another kind has the name, or a thread's upload is listed under it),
    /// [`Refusal::BadUser`], [`StoreError::Io`].
    pub fn create_thread(&mut self, title: &str, creator: &str) -> Result<(), StoreError> {
        valid_name(title)?;
        if self.threads.contains_key(title) {
            return Err(Refusal::ThreadExists.into());
        }
        if self.listed_as_upload(title) {
            return Err(Refusal::NameTaken.into());
        }
        check_user(creator)?;
        let path = self.dir.join(title);
        // `create_new` is O_EXCL: the check that nothing is there and the creation are
        // one step, so an existing file can never be replaced.
        let file = match OpenOptions::new().append(true).create_new(true).open(&path) {
            Ok(file) => file,
            Err(cause) if cause.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Refusal::NameTaken.into())
            }
            Err(cause) => return Err(io_error(&path, cause)),
        };
        let first = format!("{creator}\n");
        let logged = append_once(&file, first.as_bytes())
            .map_err(|cause| io_error(&path, cause))
            .and_then(|offset| self.write_log(&Record::append(title, offset, first.as_bytes())));
        if let Err(error) = logged {
            // The file is ours and empty or torn: remove it so the name stays free.
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        // DIR is not fsynced for the new name: if a power cut loses the file, replaying
        // the log recreates it from this first line (offset 0). The checkpoint makes
        // the name itself durable.
        self.appended.insert(title.to_string(), file);
        let thread = Thread {
            creator: creator.to_string(),
            lines: Vec::new(),
        };
        self.threads.insert(
            title.to_string(),
            Entry {
                thread,
                unterminated: false,
            },
        );
        Ok(())
    }

    /// Appends the message `user: text` to thread `title` and returns its number. On
    /// disk after the next [`Store::sync`].
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`], [`Refusal::BadUser`],
    /// [`Refusal::BadText`], [`StoreError::Io`].
    pub fn post(&mut self, title: &str, user: &str, text: &str) -> Result<usize, StoreError> {
        let thread = self.existing(title)?;
        check_user(user)?;
        check_text(text)?;
        let number = thread.message_count() + 1;
        let line = Line::Message {
            author: user.to_string(),
            text: text.to_string(),
        };
        self.append(title, &format::render_line(&line, number))?;
        self.push_line(title, line);
        Ok(number)
    }

    /// Deletes message `number` of thread `title`, which `user` must have written; the
    /// later messages move up one number. The thread file is replaced atomically.
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`], [`Refusal::NoMessage`],
    /// [`Refusal::NotAuthor`], [`StoreError::Io`].
    pub fn delete(&mut self, title: &str, number: usize, user: &str) -> Result<(), StoreError> {
        let index = self.own_message(title, number, user)?;
        let mut thread = self.existing(title)?.clone();
        thread.lines.remove(index);
        self.rewrite(title, thread)
    }

    /// Replaces the text of message `number` of thread `title`, which `user` must have
    /// written; its number and author stay. The thread file is replaced atomically.
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`], [`Refusal::NoMessage`],
    /// [`Refusal::NotAuthor`], [`Refusal::BadText`], [`StoreError::Io`].
    pub fn edit(
        &mut self,
        title: &str,
        number: usize,
        user: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        let index = self.own_message(title, number, user)?;
        check_text(text)?;
        let mut thread = self.existing(title)?.clone();
        thread.lines[index] = Line::Message {
            author: user.to_string(),
            text: text.to_string(),
        };
        self.rewrite(title, thread)
    }

    /// The thread titles in byte order (`B` before `a`).
    pub fn list(&self) -> Vec<String> {
        self.threads.keys().cloned().collect()
    }

    /// The lines of thread `title` after the first, exactly as in its file (messages
    /// with their current numbers, uploads).
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`].
    pub fn read(&self, title: &str) -> Result<Vec<String>, StoreError> {
        Ok(format::render_lines(self.existing(title)?))
    }

    /// Thread `title`, if it exists.
    pub fn thread(&self, title: &str) -> Option<&Thread> {
        self.threads.get(title).map(|entry| &entry.thread)
    }

    /// Checks that `file` may be uploaded to thread `title`, before any bytes are sent.
    /// [`Store::commit_upload`] checks again: another client may win the race.
    ///
    /// # Errors
    /// [`Refusal::BadName`] (title, then file), [`Refusal::NoThread`],
    /// [`Refusal::FileExists`], [`Refusal::NameTaken`] (`title-file` is a thread,
    /// another thread's upload or an unrelated file), [`StoreError::Io`] when DIR
    /// cannot be examined.
    pub fn check_upload(&self, title: &str, file: &str) -> Result<(), StoreError> {
        valid_name(title)?;
        valid_name(file)?;
        let thread = self.existing(title)?;
        if thread.has_upload(file) {
            return Err(Refusal::FileExists.into());
        }
        let stored = upload_name(title, file);
        if self.threads.contains_key(&stored) || self.listed_as_upload(&stored) {
            return Err(Refusal::NameTaken.into());
        }
        let path = self.dir.join(&stored);
        match fs::symlink_metadata(&path) {
            Ok(_) => Err(Refusal::NameTaken.into()),
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(cause) => Err(io_error(&path, cause)),
        }
    }

    /// Creates an empty hidden temporary file in DIR (`.forum-upload-` and 16 random hex
    /// digits) to receive an upload into, opened for reading and writing. Hand it to
    /// [`Store::commit_upload`] once it is complete and verified; if the transfer fails,
    /// delete it (a crash leaves it for the next [`Store::open`] to sweep).
    ///
    /// # Errors
    /// [`StoreError::Io`] when it cannot be created.
    pub fn upload_temp(&self) -> Result<(File, PathBuf), StoreError> {
        self.create_temp(UPLOAD_TEMP)
    }

    /// Makes the received upload `temp` visible as `file` of thread `title`: moves it to
    /// `DIR/title-file` and appends `user uploaded file` to the thread, both or (after a
    /// crash and [`Store::open`]) neither half-done. The caller has checked its size and
    /// SHA-256. On disk when this returns.
    ///
    /// # Errors
    /// The refusals of [`Store::check_upload`] and [`Refusal::BadUser`], re-checked now
    /// (the temp file is then deleted); [`StoreError::Io`] when `temp` is not a file
    /// from [`Store::upload_temp`] (left alone) or the file system fails (the upload is
    /// then undone, or finished by the next `open`).
    pub fn commit_upload(
        &mut self,
        title: &str,
        file: &str,
        user: &str,
        temp: &Path,
    ) -> Result<(), StoreError> {
        let temp_name = self.own_temp(temp)?;
        let checked = check_user(user)
            .map_err(StoreError::from)
            .and_then(|()| self.check_upload(title, file));
        if let Err(error) = checked {
            let _ = fs::remove_file(temp);
            return Err(error);
        }
        // The data must be on disk before a name points at it, or a power cut could
        // leave a listed upload full of zeros.
        self.fsync_file(temp)?;
        self.write_journal(&Intent::Upload {
            title: title.to_string(),
            file: file.to_string(),
            user: user.to_string(),
            temp: temp_name,
        })?;
        let stored = self.dir.join(upload_name(title, file));
        // A hard link, not a rename: it fails instead of replacing a file that appeared
        // since the check (by another program: we hold the only `&mut Store`).
        if let Err(cause) = fs::hard_link(temp, &stored) {
            let _ = fs::remove_file(temp);
            self.delete_journal()?;
            return Err(if cause.kind() == io::ErrorKind::AlreadyExists {
                Refusal::NameTaken.into()
            } else {
                io_error(&stored, cause)
            });
        }
        self.dir_unsynced = true;
        // Only a duplicate name of the data goes; a failure leaves a stale temp file
        // that the next `open` sweeps.
        let _ = fs::remove_file(temp);
        let line = Line::Upload {
            user: user.to_string(),
            file: file.to_string(),
        };
        if let Err(error) = self.append(title, &format::render_line(&line, 0)) {
            // Undo the link so the upload leaves nothing behind; if that fails too, the
            // journal stays and the next `open` finishes the upload instead.
            if fs::remove_file(&stored).is_ok() {
                self.delete_journal()?;
            }
            return Err(error);
        }
        self.push_line(title, line);
        // Both steps must be durable before the journal that could redo them goes.
        self.sync()?;
        self.delete_journal()
    }

    /// The path of upload `file` of thread `title`, to send to a downloader.
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`], [`Refusal::NoFile`] (not uploaded
    /// to this thread, or its file has gone from DIR).
    pub fn download_path(&self, title: &str, file: &str) -> Result<PathBuf, StoreError> {
        valid_name(title)?;
        valid_name(file)?;
        let thread = self.existing(title)?;
        let path = self.dir.join(upload_name(title, file));
        let is_file = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file());
        if !thread.has_upload(file) || !is_file {
            return Err(Refusal::NoFile.into());
        }
        Ok(path)
    }

    /// Removes thread `title`, which `user` must have created, and every upload it
    /// lists (only those), and returns the names of the files deleted from DIR
    /// (`title` first, then each `title-file` that existed). On disk after the next
    /// [`Store::sync`]; a crash half-way is finished by the next [`Store::open`].
    ///
    /// # Errors
    /// [`Refusal::BadName`], [`Refusal::NoThread`], [`Refusal::NotCreator`],
    /// [`StoreError::Io`] (if the thread's file went but an upload could not be
    /// deleted, the thread is gone and the journal stays for the next `open`).
    pub fn remove(&mut self, title: &str, user: &str) -> Result<Vec<String>, StoreError> {
        let thread = self.existing(title)?;
        if thread.creator != user {
            return Err(Refusal::NotCreator.into());
        }
        let files: Vec<String> = thread.uploads().map(String::from).collect();
        // The barrier below hides the thread's logged lines from a replay, so they must
        // be in its file on disk first; the journal's DIR fsync makes its name durable.
        self.fsync_thread(title)?;
        self.write_journal(&Intent::Remove {
            title: title.to_string(),
            files: files.clone(),
        })?;
        // Without it a replay could recreate the thread from its logged first line.
        let barrier = self.write_barrier(title, Kind::Removed);
        let mut removed = Vec::new();
        match barrier.and_then(|()| self.remove_if_present(title)) {
            Ok(true) => removed.push(title.to_string()),
            Ok(false) => {}
            Err(error) => {
                self.delete_journal()?;
                return Err(error);
            }
        }
        self.threads.remove(title);
        for file in &files {
            let stored = upload_name(title, file);
            if self.remove_if_present(&stored)? {
                removed.push(stored);
            }
        }
        // The deletions must be durable before the journal that could redo them goes.
        self.fsync_dir()?;
        self.delete_journal()?;
        Ok(removed)
    }

    /// Makes every change so far durable: fsyncs each thread file appended to or
    /// created since the last call, once, then DIR if entries were created, renamed or
    /// deleted. The server calls it once per batch of commands, before the replies.
    ///
    /// # Errors
    /// [`StoreError::Io`] from the first fsync that fails. The failed file is not
    /// retried (after a failed fsync, Linux may already have dropped the unwritten
    /// pages, so a second fsync would succeed without saving them).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.take_pending_sync().run()
    }

    /// Ends the current log generation now and waits for its checkpoint: every thread
    /// file it touched is fsynced and the log deleted. The server does not need it (a
    /// log is checkpointed when it grows past a few megabytes); it leaves DIR without a
    /// log, for a clean shutdown or a test.
    ///
    /// # Errors
    /// [`StoreError::Io`] from the first fsync or deletion that fails; the log then
    /// stays for the next [`Store::open`].
    pub fn checkpoint(&mut self) -> Result<(), StoreError> {
        let mut pending = self.take_sync(true);
        let checkpoint = pending.checkpoint.take();
        pending.run()?;
        let Some(checkpoint) = checkpoint else {
            return Ok(());
        };
        let (done, result) = mpsc::channel();
        checkpoint.start(Some(done));
        result.recv().unwrap_or_else(|_| {
            Err(io_error(
                &self.dir,
                io::Error::other("the checkpoint thread stopped"),
            ))
        })
    }

    /// Takes the flushes [`Store::sync`] would do, to run them later and elsewhere:
    /// the server's command loop hands them to its sender, which flushes outside the
    /// store's lock while the loop executes the next batch, and only then sends the
    /// replies of this one.
    ///
    /// Appends are made durable by one fdatasync of the write-ahead log, whatever the
    /// number of threads they touched (see `wal`); DIR is fsynced too when names
    /// changed. When the log has grown enough, this also starts its checkpoint, which
    /// runs in the background after the flush and never delays the replies.
    pub fn take_pending_sync(&mut self) -> PendingSync {
        self.take_sync(false)
    }

    /// [`Store::take_pending_sync`], ending the log generation if `force_checkpoint`.
    fn take_sync(&mut self, force_checkpoint: bool) -> PendingSync {
        let log = std::mem::take(&mut self.log.unsynced)
            .then(|| self.log.file.clone().map(|file| (self.log_path(), file)))
            .flatten();
        if log.is_some() {
            self.log.batches += 1;
        }
        let rotate = self.log.due() || (force_checkpoint && self.log.file.is_some());
        let checkpoint = rotate.then(|| self.rotate_log());
        let files = std::mem::take(&mut self.unsynced);
        let dir = std::mem::take(&mut self.dir_unsynced).then(|| self.dir.clone());
        let pending = PendingSync {
            log,
            files,
            dir,
            checkpoint,
            failures: Some(Arc::clone(&self.checkpoints)),
            shared_fsyncs: Some(Arc::clone(&self.shared_fsyncs)),
        };
        if !pending.is_empty() {
            self.syncs += 1;
        }
        let checkpoint_fsyncs = pending
            .checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.files.len() as u64 + 1);
        self.fsyncs += u64::from(pending.log.is_some())
            + pending.files.len() as u64
            + u64::from(pending.dir.is_some())
            + checkpoint_fsyncs;
        pending
    }

    /// Counts of threads, messages and uploads, and fsyncs so far.
    pub fn stats(&self) -> StoreStats {
        let threads = self.threads.values().map(|entry| &entry.thread);
        StoreStats {
            threads: self.threads.len(),
            messages: threads.clone().map(Thread::message_count).sum(),
            uploads: threads.map(|thread| thread.uploads().count()).sum(),
            fsyncs: self
                .fsyncs
                .saturating_sub(self.shared_fsyncs.load(Ordering::Relaxed)),
            syncs: self.syncs,
        }
    }

    // ----- checks shared by the commands -----

    /// Thread `title`, after checking the name.
    fn existing(&self, title: &str) -> Result<&Thread, StoreError> {
        valid_name(title)?;
        self.thread(title)
            .ok_or(StoreError::Refused(Refusal::NoThread))
    }

    /// The index in `lines` of message `number` of `title`, checked in the spec's order:
    /// name, thread, message, author.
    fn own_message(&self, title: &str, number: usize, user: &str) -> Result<usize, StoreError> {
        let thread = self.existing(title)?;
        let index = thread
            .message_index(number)
            .ok_or(Refusal::NoMessage { number })?;
        match &thread.lines[index] {
            Line::Message { author, .. } if author == user => Ok(index),
            _ => Err(Refusal::NotAuthor.into()),
        }
    }

    /// Whether `name` is `t-f` for a thread `t` that lists an upload `f`, whether or not
    /// the file is still there: creating `name` now would make the next `open` take it
    /// for that upload.
    fn listed_as_upload(&self, name: &str) -> bool {
        name.match_indices('-').any(|(dash, _)| {
            let (title, file) = (&name[..dash], &name[dash + 1..]);
            self.thread(title)
                .is_some_and(|thread| thread.has_upload(file))
        })
    }

    /// Checks that `temp` is a file [`Store::upload_temp`] made, and returns its name.
    fn own_temp(&self, temp: &Path) -> Result<String, StoreError> {
        let name = temp.file_name().and_then(|name| name.to_str());
        match name {
            Some(name) if temp.parent() == Some(self.dir.as_path()) && is_temp_name(name) => {
                Ok(name.to_string())
            }
            _ => Err(io_error(
                temp,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an upload file made by this forum's store",
                ),
            )),
        }
    }

    // ----- writing -----

    /// Appends `line` and its `\n` to thread `title`'s file in one `write`, so a killed
    /// server leaves the old or the new file, never half a line, then logs the append.
    fn append(&mut self, title: &str, line: &str) -> Result<(), StoreError> {
        let path = self.dir.join(title);
        let unterminated = self
            .threads
            .get(title)
            .is_some_and(|entry| entry.unterminated);
        let mut record = String::with_capacity(line.len() + 2);
        if unterminated {
            record.push('\n');
        }
        record.push_str(line);
        record.push('\n');
        let file = match self.appended.entry(title.to_string()) {
            std::collections::btree_map::Entry::Occupied(slot) => slot.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => slot.insert(
                OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|cause| io_error(&path, cause))?,
            ),
        };
        let offset =
            append_once(file, record.as_bytes()).map_err(|cause| io_error(&path, cause))?;
        if let Err(error) = self.write_log(&Record::append(title, offset, record.as_bytes())) {
            // A line the log does not hold must not stay: the caller hears it failed, and
            // a power cut would keep it or not at random.
            if let Some(file) = self.appended.get(title) {
                let _ = file.set_len(offset);
            }
            return Err(error);
        }
        if let Some(entry) = self.threads.get_mut(title) {
            entry.unterminated = false;
        }
        Ok(())
    }

    /// Records in memory a line already appended to `title`'s file.
    fn push_line(&mut self, title: &str, line: Line) {
        if let Some(entry) = self.threads.get_mut(title) {
            entry.thread.lines.push(line);
        }
    }

    /// Replaces `title`'s file with `thread` atomically: a complete, fsynced temporary
    /// file is renamed over it, so a reader (or a crash) sees the old or the new thread.
    ///
    /// The log needs a barrier between the old file's appends and the new file's (see
    /// `wal`), and each step must be on disk before the next can be:
    ///
    /// ```text
    ///   new file -> temp, fsync    old file fsync, DIR fsync    barrier, log fsync
    ///   rename temp -> title, DIR fsync    (later appends are logged at new offsets)
    /// ```
    fn rewrite(&mut self, title: &str, thread: Thread) -> Result<(), StoreError> {
        let path = self.dir.join(title);
        let temp = self.write_temp(format::render_file(&thread).as_bytes())?;
        let barrier = self
            .fsync_thread(title)
            .and_then(|()| self.fsync_dir())
            .and_then(|()| self.write_barrier(title, Kind::Rewritten));
        if let Err(error) =
            barrier.and_then(|()| fs::rename(&temp, &path).map_err(|cause| io_error(&path, cause)))
        {
            let _ = fs::remove_file(&temp);
            return Err(error);
        }
        self.threads.insert(
            title.to_string(),
            Entry {
                thread,
                unterminated: false,
            },
        );
        // The appends that follow are logged at the new file's offsets, so its name
        // must be durable before they can be.
        self.fsync_dir()
    }

    /// Writes `bytes` to a new temporary file, fsyncs it and renames it to `path`.
    fn write_replacing(&mut self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let temp = self.write_temp(bytes)?;
        if let Err(cause) = fs::rename(&temp, path) {
            let _ = fs::remove_file(&temp);
            return Err(io_error(path, cause));
        }
        self.dir_unsynced = true;
        Ok(())
    }

    /// Writes `bytes` to a new temporary file and fsyncs it; returns its path.
    fn write_temp(&mut self, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let (mut file, temp) = self.create_temp(REWRITE_TEMP)?;
        self.fsyncs += 1;
        if let Err(cause) = file.write_all(bytes).and_then(|()| file.sync_data()) {
            drop(file);
            let _ = fs::remove_file(&temp);
            return Err(io_error(&temp, cause));
        }
        Ok(temp)
    }

    /// fsyncs thread `title`'s file, and forgets its handle: a barrier is about to hide
    /// its logged appends, and the file is about to be replaced or deleted. A missing
    /// file has nothing to lose.
    fn fsync_thread(&mut self, title: &str) -> Result<(), StoreError> {
        self.appended.remove(title);
        let path = self.dir.join(title);
        match fs::symlink_metadata(&path) {
            Ok(_) => self.fsync_file(&path),
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(cause) => Err(io_error(&path, cause)),
        }
    }

    // ----- the write-ahead log -----

    /// The path of the current generation's log.
    fn log_path(&self) -> PathBuf {
        self.dir.join(wal::log_name(self.log.generation))
    }

    /// Appends `record` to the log (created with its header on first use). On disk
    /// after the next sync.
    fn write_log(&mut self, record: &Record) -> Result<(), StoreError> {
        let path = self.log_path();
        let file = match &self.log.file {
            Some(file) => Arc::clone(file),
            None => self.create_log(&path)?,
        };
        let bytes = record.encode();
        append_once(&file, &bytes).map_err(|cause| io_error(&path, cause))?;
        self.log.len += bytes.len() as u64;
        self.log.unsynced = true;
        Ok(())
    }

    /// Creates the current generation's log file and writes its header.
    fn create_log(&mut self, path: &Path) -> Result<Arc<File>, StoreError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|cause| io_error(path, cause))?;
        if let Err(cause) = append_once(&file, wal::HEADER) {
            let _ = fs::remove_file(path);
            return Err(io_error(path, cause));
        }
        // The log's records are only durable once its name is.
        self.dir_unsynced = true;
        let file = Arc::new(file);
        self.log.file = Some(Arc::clone(&file));
        self.log.len = wal::HEADER.len() as u64;
        Ok(file)
    }

    /// Writes a barrier for `title` and makes it durable now (with DIR, if the log was
    /// just created): the caller replaces or deletes the file only after this. The
    /// caller has fsynced the file, so the appends the barrier hides are on disk.
    fn write_barrier(&mut self, title: &str, kind: Kind) -> Result<(), StoreError> {
        self.write_log(&Record::barrier(title, kind))?;
        let path = self.log_path();
        if let Some(file) = &self.log.file {
            self.fsyncs += 1;
            file.sync_data().map_err(|cause| io_error(&path, cause))?;
        }
        // Every record so far is durable: the batch's sync need not flush the log.
        self.log.unsynced = false;
        if self.dir_unsynced {
            self.fsync_dir()?;
        }
        Ok(())
    }

    /// Starts the next log generation; returns the checkpoint that retires this one.
    fn rotate_log(&mut self) -> Checkpoint {
        let old = self.log_path();
        self.log = Log::new(wal::next_generation(self.log.generation));
        let files = std::mem::take(&mut self.appended)
            .into_iter()
            .map(|(title, file)| (self.dir.join(title), file))
            .collect();
        Checkpoint {
            log: old,
            files,
            dir: self.dir.clone(),
            state: Arc::clone(&self.checkpoints),
        }
    }

    /// Replays every log in DIR (see `wal`), makes what it repaired durable, then
    /// deletes the logs; the store's own log starts at a later generation.
    fn replay_log(&mut self) -> Result<(), StoreError> {
        let mut logs: Vec<(u64, String)> = self
            .file_names()?
            .into_iter()
            .filter_map(|name| wal::parse_log_name(&name).map(|generation| (generation, name)))
            .collect();
        logs.sort();
        let newest = logs.last().map_or(0, |(generation, _)| *generation);
        self.log = Log::new(wal::next_generation(newest));
        if logs.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (_, name) in &logs {
            let path = self.dir.join(name);
            let bytes = fs::read(&path).map_err(|cause| io_error(&path, cause))?;
            let scan = wal::scan(&bytes);
            if let Some((at, reason)) = scan.stopped {
                self.warnings.push(format!(
                    "read {name} up to byte {at} only: then comes {reason} (the end of a \
                     write a crash interrupted, never confirmed to anyone)"
                ));
            }
            records.extend(scan.records);
        }
        let replayed = wal::replay(&self.dir, &records)?;
        self.fsyncs += replayed.fsyncs;
        self.warnings.extend(replayed.warnings);
        if replayed.created {
            self.fsync_dir()?;
        }
        // Deleted only now that what they restored is durable; the DIR fsync at the end
        // of `open` makes the deletion itself durable before a new log can start.
        for (_, name) in &logs {
            self.remove_if_present(name)?;
        }
        Ok(())
    }

    /// Creates a new hidden file `prefix` + random hex digits in DIR.
    fn create_temp(&self, prefix: &str) -> Result<(File, PathBuf), StoreError> {
        let mut last = io::Error::other("no attempt made");
        for _ in 0..TEMP_ATTEMPTS {
            let path = self.dir.join(temp_name(prefix, rand::random()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok((file, path)),
                Err(cause) if cause.kind() == io::ErrorKind::AlreadyExists => last = cause,
                Err(cause) => return Err(io_error(&path, cause)),
            }
        }
        Err(io_error(&self.dir, last))
    }

    /// Deletes `name` from DIR; `Ok(false)` when it was not there.
    fn remove_if_present(&mut self, name: &str) -> Result<bool, StoreError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.dir_unsynced = true;
                Ok(true)
            }
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(cause) => Err(io_error(&path, cause)),
        }
    }

    /// fsyncs the file at `path` (opened for writing: some systems refuse to fsync a
    /// read-only handle).
    fn fsync_file(&mut self, path: &Path) -> Result<(), StoreError> {
        self.fsyncs += 1;
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.sync_data())
            .map_err(|cause| io_error(path, cause))
    }

    /// fsyncs DIR itself, which is what makes created, renamed and deleted names
    /// durable on Linux.
    fn fsync_dir(&mut self) -> Result<(), StoreError> {
        self.dir_unsynced = false;
        if cfg!(unix) {
            self.fsyncs += 1;
        }
        sync_dir(&self.dir)
    }

    // ----- the journal -----

    /// Writes the journal for `intent` and makes it durable before any step is taken.
    fn write_journal(&mut self, intent: &Intent) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        self.write_replacing(&path, journal::encode(intent).as_bytes())?;
        self.fsync_dir()
    }

    /// Deletes the journal once its steps are durable. Its deletion itself is made
    /// durable by the next [`Store::sync`]; should it come back after a power cut,
    /// replaying it again changes nothing.
    fn delete_journal(&mut self) -> Result<(), StoreError> {
        self.remove_if_present(JOURNAL_FILE).map(drop)
    }

    /// Finishes the change an interrupted journal describes, if there is one.
    fn replay_journal(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(cause) => return Err(io_error(&path, cause)),
        };
        let corrupt = |line: usize, reason: String| StoreError::Corrupt {
            path: path.clone(),
            line,
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| corrupt(1, "is not UTF-8 text".into()))?;
        let intent = journal::decode(&text).map_err(|(line, reason)| corrupt(line, reason))?;
        match intent {
            Intent::Upload {
                title,
                file,
                user,
                temp,
            } => self.finish_upload(&title, &file, &user, &temp)?,
            Intent::Remove { title, files } => {
                self.remove_if_present(&title)?;
                for file in &files {
                    self.remove_if_present(&upload_name(&title, file))?;
                }
                self.warnings.push(format!(
                    "finished removing thread {title}, interrupted by a crash"
                ));
            }
        }
        self.sync()?;
        self.delete_journal()
    }

    /// Rolls an interrupted upload forward: each step is done only if it is not done
    /// yet. Runs before the threads are loaded, so it reads the thread file itself.
    fn finish_upload(
        &mut self,
        title: &str,
        file: &str,
        user: &str,
        temp: &str,
    ) -> Result<(), StoreError> {
        let temp_path = self.dir.join(temp);
        let stored_name = upload_name(title, file);
        let stored = self.dir.join(&stored_name);
        let temp_there = fs::symlink_metadata(&temp_path).is_ok();
        if temp_there {
            if fs::symlink_metadata(&stored).is_err() {
                fs::hard_link(&temp_path, &stored).map_err(|cause| io_error(&stored, cause))?;
            }
            // Either we just linked it, or the crash came between link and delete.
            self.remove_if_present(temp)?;
            self.dir_unsynced = true;
        }
        if fs::symlink_metadata(&stored).is_err() {
            self.warnings.push(format!(
                "dropped an interrupted upload of {file} to thread {title}: its data is gone"
            ));
            return Ok(());
        }
        let thread_path = self.dir.join(title);
        let parsed = File::open(&thread_path)
            .map_err(|cause| format!("cannot read it: {}", describe(&cause)))
            .and_then(|opened| {
                format::parse_thread(&mut BufReader::new(opened))
                    .map_err(|e| format!("line {}: {}", e.line, e.reason))
            });
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                self.warnings.push(format!(
                    "could not finish the upload of {file} to thread {title} ({reason}); \
                     {stored_name} is left as an ordinary file"
                ));
                return Ok(());
            }
        };
        if !parsed.thread.has_upload(file) {
            let mut record = if parsed.unterminated { "\n" } else { "" }.to_string();
            let line = Line::Upload {
                user: user.to_string(),
                file: file.to_string(),
            };
            record.push_str(&format::render_line(&line, 0));
            record.push('\n');
            let opened = OpenOptions::new()
                .append(true)
                .open(&thread_path)
                .map_err(|cause| io_error(&thread_path, cause))?;
            append_once(&opened, record.as_bytes())
                .map_err(|cause| io_error(&thread_path, cause))?;
            self.unsynced.push((thread_path, opened));
        }
        self.warnings.push(format!(
            "finished the upload of {file} to thread {title}, interrupted by a crash"
        ));
        Ok(())
    }

    // ----- loading -----

    /// Reads `credentials.txt`, creating it empty if it is missing.
    fn load_credentials(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(CREDENTIALS_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(cause) if cause.kind() == io::ErrorKind::NotFound => {
                let file = File::create_new(&path).map_err(|cause| io_error(&path, cause))?;
                self.unsynced.push((path.clone(), file));
                self.dir_unsynced = true;
                Vec::new()
            }
            Err(cause) => return Err(io_error(&path, cause)),
        };
        let credentials = format::parse_credentials(&bytes).map_err(|bad| StoreError::Corrupt {
            path: path.clone(),
            line: bad.line,
            reason: bad.reason,
        })?;
        self.users = credentials.users;
        self.credentials_unterminated = credentials.unterminated;
        Ok(())
    }

    /// Deletes the temporary files a crash left behind; only names the store itself
    /// makes (`.forum-upload-` or `.forum-rewrite-` and 16 hex digits).
    fn sweep_temps(&mut self) -> Result<(), StoreError> {
        for name in self.file_names()? {
            if is_temp_name(&name) {
                self.remove_if_present(&name)?;
                self.warnings.push(format!(
                    "deleted {name}, left by an upload or edit a crash interrupted"
                ));
            }
        }
        Ok(())
    }

    /// Loads every file with a valid name that parses as a thread and is not another
    /// thread's upload.
    fn load_threads(&mut self) -> Result<(), StoreError> {
        let mut candidates = Vec::new();
        for name in self.file_names()? {
            if check_name(&name).is_err() {
                continue;
            }
            let path = self.dir.join(&name);
            let parsed = File::open(&path)
                .map_err(|cause| format!("cannot read it: {}", describe(&cause)))
                .and_then(
                    |file| match format::parse_thread(&mut BufReader::new(file)) {
                        Ok(parsed) => Ok(Some(parsed)),
                        Err(e) if e.looked_like_thread() => {
                            Err(format!("line {}: {}", e.line, e.reason))
                        }
                        Err(_) => Ok(None),
                    },
                );
            match parsed {
                Ok(Some(parsed)) => candidates.push((name, parsed)),
                Ok(None) => {}
                Err(reason) => self
                    .warnings
                    .push(format!("left {name} alone, it is not a thread: {reason}")),
            }
        }
        // An upload `t-f` is longer than its thread `t`, so going from short names to
        // long ones settles every thread before the names its uploads claim are met.
        candidates.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
        let mut uploads = HashSet::new();
        for (name, parsed) in candidates {
            if uploads.contains(&name) {
                continue;
            }
            for file in parsed.thread.uploads() {
                let stored = upload_name(&name, file);
                if fs::symlink_metadata(self.dir.join(&stored)).is_err() {
                    self.warnings.push(format!(
                        "thread {name} lists the upload {file}, but {stored} is missing"
                    ));
                }
                uploads.insert(stored);
            }
            let entry = Entry {
                thread: parsed.thread,
                unterminated: parsed.unterminated,
            };
            self.threads.insert(name, entry);
        }
        Ok(())
    }

    /// The UTF-8 names of the regular files in DIR (not directories, not symbolic links:
    /// a link named like a thread could point outside DIR).
    fn file_names(&self) -> Result<Vec<String>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|cause| io_error(&self.dir, cause))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|cause| io_error(&self.dir, cause))?;
            let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
            if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// Checks a title or file name, as a refusal.
fn valid_name(name: &str) -> Result<(), Refusal> {
    check_name(name).map_err(|problem| Refusal::BadName {
        name: name.to_string(),
        problem,
    })
}

/// The name in DIR of upload `file` of thread `title`.
fn upload_name(title: &str, file: &str) -> String {
    format!("{title}-{file}")
}

/// A temporary file's name: `prefix` and `suffix` as hex digits.
fn temp_name(prefix: &str, suffix: u64) -> String {
    format!("{prefix}{suffix:0width$x}", width = TEMP_SUFFIX_DIGITS)
}

/// Whether `name` is one of the store's temporary files (and so safe to sweep).
fn is_temp_name(name: &str) -> bool {
    [UPLOAD_TEMP, REWRITE_TEMP].iter().any(|prefix| {
        name.strip_prefix(prefix).is_some_and(|suffix| {
            suffix.len() == TEMP_SUFFIX_DIGITS
                && suffix
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    })
}

/// Appends `bytes` with a single `write` call and returns the offset they went to (the
/// file's length before). If the system writes only part (a full disk), the file is cut
/// back to its old length, so it never ends in half a line.
fn append_once(mut file: &File, bytes: &[u8]) -> io::Result<u64> {
    let before = file.metadata()?.len();
    let failure = match file.write(bytes) {
        Ok(written) if written == bytes.len() => return Ok(before),
        Ok(_) => io::Error::new(
            io::ErrorKind::WriteZero,
            "the disk took only part of a line",
        ),
        Err(cause) => cause,
    };
    let _ = file.set_len(before);
    Err(failure)
}

/// A [`StoreError::Io`] for `path`.
/// Flushes taken from the store by [`Store::take_pending_sync`]: the write-ahead log
/// if appends were logged since the last sync, the directory if names changed in it,
/// and perhaps a checkpoint to start once they are done.
#[derive(Debug, Default)]
pub struct PendingSync {
    log: Option<(PathBuf, Arc<File>)>,
    /// Files `open` wrote directly.
    files: Vec<(PathBuf, File)>,
    dir: Option<PathBuf>,
    checkpoint: Option<Checkpoint>,
    /// Where a failed background checkpoint is waiting to be reported.
    failures: Option<Arc<Mutex<CheckpointState>>>,
    /// Where to count a log fsync this batch shared with a later one.
    shared_fsyncs: Option<Arc<AtomicU64>>,
}

impl PendingSync {
    /// Whether there is nothing to flush.
    pub fn is_empty(&self) -> bool {
        self.log.is_none()
            && self.files.is_empty()
            && self.dir.is_none()
            && self.checkpoint.is_none()
    }

    /// Flushes the log (one fdatasync for the whole batch), any other file, then the
    /// directory; then hands a due checkpoint to the background checkpointer without
    /// waiting for it.
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the first file that could not be flushed, or a
    /// background checkpoint that failed since the last sync (its log is then kept for
    /// the next [`Store::open`] to replay).
    pub fn run(self) -> Result<(), StoreError> {
        PendingSync::run_group(vec![self])
    }

    /// Flushes the changes of several batches at once, oldest first: group commit
    /// across batches. When the server executes batches faster than the disk flushes
    /// them, the batches waiting behind a flush share the next one: every append of
    /// theirs is already in the log file, so one fdatasync of it (per log generation)
    /// makes them all durable. Each batch's own order is kept: logs, then files, then
    /// the directory, then checkpoints.
    ///
    /// # Errors
    /// As [`PendingSync::run`], for the first failure in the group.
    pub fn run_group(group: Vec<PendingSync>) -> Result<(), StoreError> {
        let mut logs: Vec<(PathBuf, Arc<File>)> = Vec::new();
        let mut files = Vec::new();
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut checkpoints = Vec::new();
        let mut failures = None;
        for sync in group {
            if let Some((path, file)) = sync.log {
                // One generation is one file: one fdatasync flushes every batch's
                // appends to it.
                if logs.iter().any(|(seen, _)| *seen == path) {
                    if let Some(shared) = &sync.shared_fsyncs {
                        shared.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    logs.push((path, file));
                }
            }
            files.extend(sync.files);
            if let Some(dir) = sync.dir {
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            checkpoints.extend(sync.checkpoint);
            failures = failures.or(sync.failures);
        }
        for (path, file) in logs {
            // `sync_data` (fdatasync) also writes the new length, which is all an
            // append changes besides the data.
            file.sync_data().map_err(|cause| io_error(&path, cause))?;
        }
        if let Some(error) = flush_files(files) {
            return Err(error);
        }
        for dir in dirs {
            sync_dir(&dir)?;
        }
        for checkpoint in checkpoints {
            checkpoint.start(None);
        }
        match failures.and_then(|state| wal::take_failure(&state)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Whether `name` is one of the write-ahead log's files (`.forum-log.` and a
/// generation number). It is in DIR while a server runs, and after a crash until the
/// next [`Store::open`] replays and deletes it.
pub fn is_log_name(name: &str) -> bool {
    wal::parse_log_name(name).is_some()
}

/// fsyncs `files`, in parallel when there are several: the file system joins
/// concurrent flushes into one journal commit, so a checkpoint of twenty threads costs
/// about one flush instead of twenty in a row. Returns the first failure.
fn flush_files(files: Vec<(PathBuf, File)>) -> Option<StoreError> {
    match files.len() {
        0 => None,
        // One file: flushing it here is cheaper than waking a flusher.
        1 => files
            .first()
            .and_then(|(path, file)| file.sync_data().err().map(|e| io_error(path, e))),
        _ => flush_in_parallel(files),
    }
}

/// fsyncs the directory `dir`, which makes created, renamed and deleted names durable
/// on Linux. Only Unix can open a directory to fsync it; elsewhere the file system
/// journals names itself, or offers no way to ask.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|cause| io_error(dir, cause))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A file to flush, and where to say how it went.
type FlushJob = ((PathBuf, File), mpsc::Sender<Option<StoreError>>);

/// The flusher threads, started on first use and kept: starting a thread costs tens of
/// microseconds, about as much as the flush it would do.
static FLUSHERS: OnceLock<Mutex<mpsc::Sender<FlushJob>>> = OnceLock::new();

/// Flushes `files` on the flusher threads at once; returns the first failure.
fn flush_in_parallel(files: Vec<(PathBuf, File)>) -> Option<StoreError> {
    let queue = FLUSHERS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<FlushJob>();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..FLUSH_THREADS {
            let receiver = Arc::clone(&receiver);
            // A flusher that cannot start only means fewer flushes at once.
            let _ = std::thread::Builder::new()
                .name("forum-flush".into())
                .spawn(move || loop {
                    let job = match receiver.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(((path, file), done)) = job else {
                        return;
                    };
                    let _ = done.send(file.sync_data().err().map(|e| io_error(&path, e)));
                });
        }
        Mutex::new(sender)
    });
    let (done, results) = mpsc::channel();
    let mut waiting = 0;
    let mut failure = None;
    for entry in files {
        let sent = queue
            .lock()
            .map_err(|_| ())
            .and_then(|q| q.send((entry, done.clone())).map_err(|_| ()));
        match sent {
            Ok(()) => waiting += 1,
            Err(()) => {
                failure = Some(io_error(
                    Path::new("."),
                    io::Error::other("no flusher thread"),
                ))
            }
        }
    }
    drop(done);
    for _ in 0..waiting {
        match results.recv() {
            Ok(Some(error)) => failure = failure.or(Some(error)),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    failure
}

fn io_error(path: &Path, cause: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        cause,
    }
}
