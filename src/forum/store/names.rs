//! Lab 3, the forum's data directory: which thread titles, file names, usernames,
//! passwords and message texts the store accepts. Pure functions, no I/O, so the client
//! can run the same checks before it sends anything (a quick, clear error) while the
//! server runs them again on every command (it never trusts a client).
//!
//! A title `t` is used as the file name `DIR/t`, and an upload `f` of `t` as `DIR/t-f`,
//! so a name must be exactly one harmless path component. Rather than list what is
//! dangerous (`/`, `..`, control characters, a leading `-` that a shell command would
//! read as an option...) we allow a small alphabet and nothing else:
//!
//! ```text
//!   name  = first rest{0,63}
//!   first = A-Z | a-z | 0-9 | "_"
//!   rest  = first | "." | "-"
//! ```
//!
//! Names starting with `.` stay free for the store's own hidden files (`.forum-journal`,
//! `.forum-upload-...`), so no valid name can ever collide with them.

use thiserror::Error;

use super::Refusal;

/// The longest thread title or file name, in characters (all of them ASCII, so also in
/// bytes). `t-f` is then at most 129 bytes, well under the 255 most file systems allow.
pub const MAX_NAME_LEN: usize = 64;

/// The longest message text, in bytes of UTF-8. A message line with its number and
/// author stays well inside one 1,200-byte datagram.
pub const MAX_TEXT: usize = 1024;

/// The file holding `username password` lines. Its name is valid by the alphabet above,
/// so it is refused by name: a thread called `credentials.txt` would be the password
/// file.
pub const CREDENTIALS_FILE: &str = "credentials.txt";

/// How many characters of a refused name a message shows: a 1 KB name would otherwise
/// fill the screen.
const SHOWN_NAME_CHARS: usize = 40;

/// Why a thread title or file name was refused.
///
/// The `Display` text is written to follow the name, as in
/// ``format!("`{name}` {problem}")``: "contains `/`: names may only hold letters,
/// digits, `.`, `_` and `-`". [`Refusal::BadName`] prints it that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NameProblem {
    /// The empty string.
    #[error("is empty: a name needs 1 to {MAX_NAME_LEN} characters")]
    Empty,
    /// More than [`MAX_NAME_LEN`] characters.
    #[error("is {len} characters long: a name may have at most {MAX_NAME_LEN}")]
    TooLong {
        /// The name's length in characters.
        len: usize,
    },
    /// A character outside `A-Z a-z 0-9 . _ -` (the first one found).
    #[error(
        "contains `{}`: names may only hold letters, digits, `.`, `_` and `-`",
        .ch.escape_debug()
    )]
    BadChar {
        /// The offending character.
        ch: char,
    },
    /// Starts with `.` (hidden files, `.` and `..`) or `-` (read as an option by shell
    /// commands).
    #[error("starts with `{ch}`: a name must start with a letter, a digit or `_`")]
    BadStart {
        /// The first character, `.` or `-`.
        ch: char,
    },
    /// `credentials.txt`, the password file.
    #[error("is reserved: it is the forum's password file")]
    Reserved,
}

/// Checks that `name` may be a thread title or an uploaded file's name.
///
/// The checks run in a fixed order, so `../x` is reported for its `/`: empty, then a
/// character outside the alphabet, then a bad first character, then the length, then
/// the reserved name.
///
/// # Errors
/// The first [`NameProblem`] found.
pub fn check_name(name: &str) -> Result<(), NameProblem> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(NameProblem::Empty);
    };
    if let Some(ch) = name.chars().find(|&ch| !is_name_char(ch)) {
        return Err(NameProblem::BadChar { ch });
    }
    if first == '.' || first == '-' {
        return Err(NameProblem::BadStart { ch: first });
    }
    // Every character is ASCII by now, so bytes and characters agree.
    if name.len() > MAX_NAME_LEN {
        return Err(NameProblem::TooLong { len: name.len() });
    }
    if name == CREDENTIALS_FILE {
        return Err(NameProblem::Reserved);
    }
    Ok(())
}

/// Whether `ch` may appear in a name at all.
fn is_name_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')
}

/// Whether `word` is a valid username or password: at least one character, none of them
/// a space (the separator in `credentials.txt` and in thread lines) or another
/// whitespace or control character.
pub(super) fn is_word(word: &str) -> bool {
    !word.is_empty() && !word.chars().any(|ch| ch.is_whitespace() || ch.is_control())
}

/// Checks a username or password before it is stored.
///
/// # Errors
/// [`Refusal::BadUser`] when it is empty or holds a space or a non-printable character.
pub fn check_user(word: &str) -> Result<(), Refusal> {
    if is_word(word) {
        Ok(())
    } else {
        Err(Refusal::BadUser)
    }
}

/// Whether `text` may be stored as a message text, leaving out the length limit: at least
/// one character, no control characters. A newline would split the thread file's line,
/// and a tab or escape sequence would garble every reader's terminal.
pub(super) fn is_text(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(char::is_control)
}

/// Checks a message text for `post` and `edit`: 1 to [`MAX_TEXT`] bytes, no control
/// characters (newline, carriage return and tab included).
///
/// # Errors
/// [`Refusal::BadText`] otherwise.
pub fn check_text(text: &str) -> Result<(), Refusal> {
    if is_text(text) && text.len() <= MAX_TEXT {
        Ok(())
    } else {
        Err(Refusal::BadText)
    }
}

/// `name` made safe to print inside a sentence: control characters escaped, cut to
/// [`SHOWN_NAME_CHARS`] characters with `...` after. Every message that repeats a
/// refused name uses it: a name is whatever a client sent, escape sequences included.
pub fn shown(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(SHOWN_NAME_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().nth(SHOWN_NAME_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "a", "t", "test.exe", "Lab_3", "a-b", "a..b", "x.", "9", "_x",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
        assert_eq!(check_name(&"n".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn hostile_names_are_refused_with_their_reason() {
        let cases: [(&str, NameProblem); 12] = [
            ("", NameProblem::Empty),
            ("../x", NameProblem::BadChar { ch: '/' }),
            ("/etc/passwd", NameProblem::BadChar { ch: '/' }),
            ("a b", NameProblem::BadChar { ch: ' ' }),
            ("\u{7}", NameProblem::BadChar { ch: '\u{7}' }),
            ("a\\b", NameProblem::BadChar { ch: '\\' }),
            ("é", NameProblem::BadChar { ch: 'é' }),
            ("..", NameProblem::BadStart { ch: '.' }),
            (".hidden", NameProblem::BadStart { ch: '.' }),
            ("-x", NameProblem::BadStart { ch: '-' }),
            ("credentials.txt", NameProblem::Reserved),
            (".forum-journal", NameProblem::BadStart { ch: '.' }),
        ];
        for (name, problem) in cases {
            assert_eq!(check_name(name), Err(problem), "{name:?}");
        }
        assert_eq!(
            check_name(&"n".repeat(1024)),
            Err(NameProblem::TooLong { len: 1024 })
        );
    }

    #[test]
    fn problems_read_as_the_rest_of_a_sentence() {
        assert_eq!(
            NameProblem::BadChar { ch: '/' }.to_string(),
            "contains `/`: names may only hold letters, digits, `.`, `_` and `-`"
        );
        // A control character is shown escaped, never sent raw to a terminal.
        assert!(NameProblem::BadChar { ch: '\u{7}' }
            .to_string()
            .starts_with("contains `\\u{7}`"));
        assert_eq!(
            NameProblem::TooLong { len: 70 }.to_string(),
            "is 70 characters long: a name may have at most 64"
        );
    }

    #[test]
    fn shown_names_are_escaped_and_cut() {
        assert_eq!(shown("a\nb"), "a\\nb");
        assert_eq!(shown(&"x".repeat(1000)), format!("{}...", "x".repeat(40)));
        assert_eq!(shown(&"x".repeat(40)), "x".repeat(40));
    }

    #[test]
    fn users_and_passwords_are_printable_words() {
        for word in ["yoda", "wise@!man", "do*!@#dedo", "Ünïcode", "a:b"] {
            assert_eq!(check_user(word), Ok(()), "{word:?}");
        }
        for word in ["", "a b", "tab\there", "cr\r", "bell\u{7}", "nbsp\u{a0}x"] {
            assert_eq!(check_user(word), Err(Refusal::BadUser), "{word:?}");
        }
    }

    #[test]
    fn texts_are_one_line_of_at_most_max_text_bytes() {
        assert_eq!(check_text("Networks is awesome"), Ok(()));
        assert_eq!(check_text("  spaces and ünïcode  "), Ok(()));
        assert_eq!(check_text(&"x".repeat(MAX_TEXT)), Ok(()));
        for text in ["", "two\nlines", "cr\r", "tab\t", "esc\u{1b}[31m"] {
            assert_eq!(check_text(text), Err(Refusal::BadText), "{text:?}");
        }
        assert_eq!(check_text(&"x".repeat(MAX_TEXT + 1)), Err(Refusal::BadText));
        // The limit is in bytes: 513 two-byte characters are 1,026 bytes.
        assert_eq!(check_text(&"é".repeat(513)), Err(Refusal::BadText));
    }
}
