//! Which file names the file service accepts. Pure functions, used twice: by the client
//! before it sends anything (a quick, clear error) and by the server on every request
//! (it must never trust the client: a hostile one can send any bytes it likes).
//!
//! A name is joined onto the served directory, so a name that is not exactly one plain
//! path component would let a client escape it: `../../etc/passwd` reads outside,
//! `/etc/passwd` replaces the directory entirely (`Path::join` with an absolute path
//! returns that path), `a/b` reaches into subdirectories. Names starting with `.` are
//! kept for hidden and temporary files (`.NAME.part-RANDOM`, see `partfile`).

use std::fmt;
use std::path::{Component, Path};

/// The longest name accepted, in bytes: the limit of most file systems (ext4, APFS, NTFS
/// in UTF-16 units).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused. Displayed after the name: `invalid file name "../x": must
/// be a single path component`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The empty string.
    Empty,
    /// `.`, `..`, a path with separators, or an absolute path.
    NotSingleComponent,
    /// A control character (newline, tab, escape...) that would garble logs and
    /// terminals.
    ControlCharacter,
    /// Starts with `.`: hidden and temporary files are the server's own.
    Hidden,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    TooLong,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => write!(f, "must not be empty"),
            NameProblem::NotSingleComponent => write!(f, "must be a single path component"),
            NameProblem::ControlCharacter => write!(f, "must not contain control characters"),
            NameProblem::Hidden => {
                write!(
                    f,
                    "must not start with '.' (reserved for hidden and temporary files)"
                )
            }
            NameProblem::TooLong => write!(f, "must be at most {MAX_NAME_LEN} bytes"),
        }
    }
}

/// Checks that `name` is a plain file name the service may store or send.
///
/// # Errors
/// The first [`NameProblem`] found.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    // Both separators on every platform: a server on Linux must still refuse `..\x`,
    // which a Windows client would write outside its directory.
    if name == "." || name == ".." || name.contains(['/', '\\']) {
        return Err(NameProblem::NotSingleComponent);
    }
    if name.chars().any(char::is_control) {
        return Err(NameProblem::ControlCharacter);
    }
    if name.starts_with('.') {
        return Err(NameProblem::Hidden);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong);
    }
    // The platform's own view, which also catches a Windows drive prefix (`C:`) when
    // built there: exactly one ordinary component.
    let mut components = Path::new(name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(NameProblem::NotSingleComponent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "report.pdf",
            "a",
            "notes v2.txt",
            "Überblick.md",
            "x.tar.gz",
            "a..b",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
        assert_eq!(check_name(&"n".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn path_tricks_are_refused() {
        for name in [
            ".",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\\b",
            "..\\x",
            "C:\\x",
            "x/",
        ] {
            assert_eq!(
                check_name(name),
                Err(NameProblem::NotSingleComponent),
                "{name:?}"
            );
        }
    }

    #[test]
    fn other_bad_names_are_refused_with_their_reason() {
        assert_eq!(check_name(""), Err(NameProblem::Empty));
        assert_eq!(check_name("a\nb"), Err(NameProblem::ControlCharacter));
        assert_eq!(check_name("tab\there"), Err(NameProblem::ControlCharacter));
        assert_eq!(check_name("bell\u{7}"), Err(NameProblem::ControlCharacter));
        assert_eq!(check_name(".hidden"), Err(NameProblem::Hidden));
        assert_eq!(check_name(".x.part-1234"), Err(NameProblem::Hidden));
        assert_eq!(
            check_name(&"n".repeat(MAX_NAME_LEN + 1)),
            Err(NameProblem::TooLong)
        );
        // 128 two-byte characters: 128 characters but 256 bytes.
        assert_eq!(check_name(&"é".repeat(128)), Err(NameProblem::TooLong));
    }

    #[test]
    fn problems_read_as_the_end_of_a_sentence() {
        assert_eq!(
            NameProblem::NotSingleComponent.to_string(),
            "must be a single path component"
        );
        assert_eq!(
            NameProblem::TooLong.to_string(),
            "must be at most 255 bytes"
        );
    }
}
