//! Partial files: how the receiving side of a transfer (the server for `put`, the client
//! for `get`) makes sure a file appears whole or not at all.
//!
//! The body is written to a hidden temporary file beside its destination,
//! `.NAME.part-RANDOM`, which is only moved into place once its size and SHA-256 have
//! been checked and its data flushed to disk:
//!
//! ```text
//!   create .a.pdf.part-3f9c...  ->  write body  ->  check size + sha256  ->  fsync
//!        |                              |                   |                  |
//!        |         any failure: the guard deletes the part file on drop        |
//!        v                                                                     v
//!   (nothing is left behind)                  rename (--force) or hard link (no clobber)
//!                                             onto a.pdf: readers see old or new, whole
//! ```
//!
//! The temporary file lives in the destination directory, not in /tmp, because a
//! rename is atomic only within one file system.

use std::io;
use std::path::{Path, PathBuf};

use tokio::fs::{self, File, OpenOptions};

/// Marks a part file's name: `.NAME.part-RANDOM`.
const PART_MARKER: &str = ".part-";

/// At most this many bytes of the final name go into the part file's name, so that the
/// part name (`.` + name + `.part-` + 16 hex digits) stays under the file system's
/// 255-byte limit even for a 255-byte name.
const MAX_NAME_IN_PART: usize = 200;

/// A hidden temporary file that is deleted when dropped, unless [`PartFile::install`]
/// moved it into place first.
pub struct PartFile {
    path: PathBuf,
    file: File,
    installed: bool,
}

impl PartFile {
    /// Creates a new, empty part file in `dir` for a file to be called `name`.
    ///
    /// # Errors
    /// The I/O error from creating it (directory missing, permission denied...).
    pub async fn create(dir: &Path, name: &str) -> io::Result<PartFile> {
        let path = dir.join(part_name(name, rand::random()));
        // `create_new`: should two transfers ever draw the same random suffix, the
        // second fails instead of writing into the first one's file.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(PartFile {
            path,
            file,
            installed: false,
        })
    }

    /// The open file, to write the body into.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Flushes the data to disk and moves the file to `dest`.
    ///
    /// With `replace`, an existing `dest` is replaced (rename, atomic). Without it, the
    /// file is hard-linked to `dest`, which fails if `dest` exists, even if it appeared
    /// a moment ago: checking first and renaming after would let two uploads of the same
    /// name both "win", the second silently replacing the first.
    ///
    /// # Errors
    /// An I/O error; [`io::ErrorKind::AlreadyExists`] when `dest` exists and `replace`
    /// is false. The part file is deleted in every error case.
    pub async fn install(mut self, dest: &Path, replace: bool) -> io::Result<()> {
        // tokio's `sync_all` first waits for writes still in flight on its blocking
        // pool, then fsyncs: after it, the data is on disk, not only in the page cache,
        // so a crash right after the rename cannot leave a renamed but empty file.
        self.file.sync_all().await?;
        if replace {
            fs::rename(&self.path, dest).await?;
            self.installed = true;
        } else {
            fs::hard_link(&self.path, dest).await?;
            // `dest` now names the data; the part name is only a second link to it,
            // which `Drop` removes.
        }
        sync_dir(dest).await;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.installed {
            // Blocking, but a single unlink: cheap, and `Drop` cannot be async. An error
            // here (already gone) leaves nothing to clean up anyway.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes a rename or link durable by fsyncing the directory that holds `dest` (on
/// Linux a new directory entry is only on disk once its directory is). Best effort:
/// the file itself is already safe, and some systems cannot open a directory to sync.
async fn sync_dir(dest: &Path) {
    #[cfg(unix)]
    if let Some(dir) = dest.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(handle) = File::open(dir).await {
            let _ = handle.sync_all().await;
        }
    }
    #[cfg(not(unix))]
    let _ = dest;
}

/// The part file name for `name` with the random `suffix`.
fn part_name(name: &str, suffix: u64) -> String {
    let mut cut = name.len().min(MAX_NAME_IN_PART);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{PART_MARKER}{suffix:016x}", &name[..cut])
}

/// Whether `file_name` looks like a part file (`.NAME.part-RANDOM`).
pub fn is_part_file(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.contains(PART_MARKER)
}

/// Deletes the part files a crashed server left in `dir` and returns their names.
///
/// Only the server calls this, at start-up: while it runs, every part file in its
/// directory belongs to a live transfer (so do not point two servers at one directory).
///
/// # Errors
/// The I/O error from reading the directory or deleting a file.
pub async fn remove_stale(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut entries = fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_part_file(&name) && entry.file_type().await?.is_file() {
            fs::remove_file(entry.path()).await?;
            removed.push(name);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn part_names_are_hidden_marked_and_short_enough() {
        assert_eq!(part_name("a.pdf", 0xabc), ".a.pdf.part-0000000000000abc");
        assert!(is_part_file(&part_name("a.pdf", 1)));
        assert!(!is_part_file("a.pdf"));
        assert!(!is_part_file("notes.part-1"), "not hidden, so not ours");
        let long = "é".repeat(127); // 254 bytes
        let part = part_name(&long, u64::MAX);
        assert!(part.len() <= 255, "{} bytes", part.len());
    }

    #[tokio::test]
    async fn dropped_part_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut part = PartFile::create(dir.path(), "a").await.unwrap();
        part.file().write_all(b"half").await.unwrap();
        assert_eq!(names_in(dir.path()).len(), 1);
        drop(part);
        assert!(names_in(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn install_without_replace_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a");
        std::fs::write(&dest, b"old").unwrap();
        let mut part = PartFile::create(dir.path(), "a").await.unwrap();
        part.file().write_all(b"new").await.unwrap();
        let err = part.install(&dest, false).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["a"], "the part file is gone");
    }

    #[tokio::test]
    async fn install_moves_the_data_into_place() {
        let dir = tempfile::tempdir().unwrap();
        for (replace, content) in [(false, &b"first"[..]), (true, &b"second"[..])] {
            let dest = dir.path().join("a");
            let mut part = PartFile::create(dir.path(), "a").await.unwrap();
            part.file().write_all(content).await.unwrap();
            part.install(&dest, replace).await.unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), content);
            assert_eq!(names_in(dir.path()), ["a"]);
        }
    }

    #[tokio::test]
    async fn stale_part_files_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [".a.part-00ff", ".hidden", "b.part-1", "c"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_stale(dir.path()).await.unwrap();
        assert_eq!(removed, [".a.part-00ff"]);
        assert_eq!(names_in(dir.path()), [".hidden", "b.part-1", "c"]);
    }
}
