//! Lab 3, the forum's data directory: the text formats of its files, parsed and
//! rendered without any I/O of their own (the parsers take a reader or bytes).
//!
//! A thread file `DIR/t`, one line each, `\n` after every line (a missing final `\n` is
//! tolerated on reading):
//!
//! ```text
//!   yoda                          <- line 1: the creator's username
//!   1 yoda: Networks is awesome   <- message: number, author + ":", text
//!   obiwan uploaded test.exe      <- upload: no number; the file is DIR/t-test.exe
//!   2 obiwan: Learn from it       <- numbers count messages only, from 1, no gaps
//! ```
//!
//! The two kinds of line cannot be mistaken for each other: a message's second word ends
//! with `:`, an upload's is exactly `uploaded`. Because the data directory is often the
//! user's current directory, the thread parser is strict and stops at the first line
//! that is not exactly what the store itself would have written: a `Cargo.toml` is
//! recognised as "not a thread" on its second line, a binary file on its first.
//!
//! `DIR/credentials.txt`, split at the first space; blank lines, `\r\n` line ends, a
//! UTF-8 byte-order mark and a missing final `\n` are tolerated:
//!
//! ```text
//!   yoda wise@!man
//!   r2d2 do*!@#dedo
//! ```

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read};

use super::names::{check_name, is_text, is_word, MAX_TEXT};
use super::{Line, Thread};

/// The longest line the thread parser reads before it gives up on a file. Far more than
/// a message line needs (its text is at most [`MAX_TEXT`] bytes); it bounds the memory
/// spent on a large unrelated file that has no newline.
pub(super) const MAX_LINE: usize = 64 * 1024;

/// The separator word of an upload line, `user uploaded file`.
const UPLOADED: &str = "uploaded";

/// A file that parsed as a thread.
#[derive(Debug)]
pub(super) struct Parsed {
    /// Its contents.
    pub thread: Thread,
    /// The last line has no `\n` after it, so an append must write one first.
    pub unterminated: bool,
}

/// Why a file is not a thread.
#[derive(Debug)]
pub(super) struct NotAThread {
    /// The line (from 1) where parsing stopped.
    pub line: usize,
    /// What was wrong there.
    pub reason: String,
}

impl NotAThread {
    /// Whether the file got far enough to look like a thread: its first line is a
    /// username. Only those are worth a warning; a binary file or a README is not.
    pub fn looked_like_thread(&self) -> bool {
        self.line > 1
    }
}

/// Parses a thread file strictly (see the module documentation).
///
/// # Errors
/// [`NotAThread`] at the first line that is not exactly as the store writes it, or when
/// reading fails.
pub(super) fn parse_thread(reader: &mut impl BufRead) -> Result<Parsed, NotAThread> {
    let mut buf = Vec::new();
    let mut number = 1;
    let fail = |line: usize, reason: String| NotAThread { line, reason };

    let creator = match next_line(reader, &mut buf, number) {
        Ok(Some(text)) if is_word(text) => text.to_string(),
        Ok(Some(_)) => return Err(fail(number, "the first line is not a username".into())),
        Ok(None) => return Err(fail(number, "the file is empty".into())),
        Err(reason) => return Err(fail(number, reason)),
    };
    let mut thread = Thread {
        creator,
        lines: Vec::new(),
    };
    // `read_until` stops without a newline only at the end of the file, so only the
    // last line read can be unterminated.
    let mut unterminated = buf.last() != Some(&b'\n');
    let mut uploads = HashSet::new();
    let mut next_message = 1;
    loop {
        number += 1;
        let text = match next_line(reader, &mut buf, number) {
            Ok(Some(text)) => text,
            Ok(None) => break,
            Err(reason) => return Err(fail(number, reason)),
        };
        let line = parse_line(text, next_message).map_err(|reason| fail(number, reason))?;
        match &line {
            Line::Message { .. } => next_message += 1,
            Line::Upload { file, .. } => {
                if !uploads.insert(file.clone()) {
                    return Err(fail(number, format!("`{file}` is uploaded twice")));
                }
            }
        }
        thread.lines.push(line);
        unterminated = buf.last() != Some(&b'\n');
    }
    Ok(Parsed {
        thread,
        unterminated,
    })
}

/// Reads the next line into `buf` (with its `\n`, if any) and returns its text without
/// the `\n`, or `None` at the end of the file.
///
/// # Errors
/// A sentence saying why the line cannot be part of a thread: too long, not UTF-8, or
/// the read failed.
fn next_line<'a>(
    reader: &mut impl BufRead,
    buf: &'a mut Vec<u8>,
    number: usize,
) -> Result<Option<&'a str>, String> {
    buf.clear();
    // One byte more than the limit allows, so an overlong line shows as a full buffer
    // without a newline.
    let limit = u64::try_from(MAX_LINE + 1).expect("the line limit fits in u64");
    let read = reader
        .by_ref()
        .take(limit)
        .read_until(b'\n', buf)
        .map_err(|e| format!("cannot be read: {}", crate::net::describe(&e)))?;
    if read == 0 {
        return Ok(None);
    }
    let content = buf.strip_suffix(b"\n").unwrap_or(buf);
    if content.len() > MAX_LINE {
        return Err(format!("line {number} is longer than {MAX_LINE} bytes"));
    }
    std::str::from_utf8(content)
        .map(Some)
        .map_err(|_| format!("line {number} is not UTF-8 text"))
}

/// Parses one line after the first: a message numbered `next_message`, or an upload.
///
/// # Errors
/// A sentence saying why it is neither.
pub(super) fn parse_line(text: &str, next_message: usize) -> Result<Line, String> {
    let words: Vec<&str> = text.split(' ').collect();
    if let [user, UPLOADED, file] = words[..] {
        if is_word(user) && check_name(file).is_ok() {
            return Ok(Line::Upload {
                user: user.to_string(),
                file: file.to_string(),
            });
        }
    }
    let neither =
        || "neither a message (`N user: text`) nor an upload (`user uploaded file`)".to_string();
    let (number, rest) = text.split_once(' ').ok_or_else(neither)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(neither());
    }
    let (author, message) = rest.split_once(' ').ok_or_else(neither)?;
    let author = author.strip_suffix(':').ok_or_else(neither)?;
    if !is_word(author) {
        return Err(format!("`{author}` is not a valid username"));
    }
    // Compared as text, so `01` or `+1` is refused like any other wrong number.
    if number != next_message.to_string() {
        return Err(format!(
            "message number {number} where {next_message} should be"
        ));
    }
    if !is_text(message) || message.len() > MAX_TEXT {
        return Err(format!(
            "the message text is empty, has control characters or is over {MAX_TEXT} bytes"
        ));
    }
    Ok(Line::Message {
        author: author.to_string(),
        text: message.to_string(),
    })
}

/// Renders `line` as it appears in the file, without the newline; `number` is used only
/// for a message.
pub(super) fn render_line(line: &Line, number: usize) -> String {
    match line {
        Line::Message { author, text } => format!("{number} {author}: {text}"),
        Line::Upload { user, file } => format!("{user} {UPLOADED} {file}"),
    }
}

/// Renders every line after the first, numbering the messages from 1.
pub(super) fn render_lines(thread: &Thread) -> Vec<String> {
    let mut number = 0;
    thread
        .lines
        .iter()
        .map(|line| {
            if matches!(line, Line::Message { .. }) {
                number += 1;
            }
            render_line(line, number)
        })
        .collect()
}

/// Renders the whole file, every line ended by `\n`.
pub(super) fn render_file(thread: &Thread) -> String {
    let mut out = String::with_capacity(thread.creator.len() + 1);
    out.push_str(&thread.creator);
    out.push('\n');
    for line in render_lines(thread) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The contents of `credentials.txt`.
#[derive(Debug, Default)]
pub(super) struct Credentials {
    /// Username to password.
    pub users: HashMap<String, String>,
    /// The file is not empty and does not end with `\n`: the next append writes one
    /// first, or the new user would be glued to the last password.
    pub unterminated: bool,
}

/// Why `credentials.txt` cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadCredentials {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The byte-order mark some Windows editors put at the start of a UTF-8 file.
const BOM: &str = "\u{feff}";

/// Parses `credentials.txt`.
///
/// A line we cannot understand stops the server rather than being skipped: a skipped
/// user would be greeted as new and could register a second password for the name.
///
/// # Errors
/// [`BadCredentials`] for invalid UTF-8, a line without a space, an empty or
/// non-printable username or password, or a username listed twice.
pub(super) fn parse_credentials(bytes: &[u8]) -> Result<Credentials, BadCredentials> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        BadCredentials {
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
            reason: "is not UTF-8 text".into(),
        }
    })?;
    let mut credentials = Credentials {
        users: HashMap::new(),
        unterminated: !text.is_empty() && !text.ends_with('\n'),
    };
    let text = text.strip_prefix(BOM).unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let bad = |reason: &str| BadCredentials {
            line: index + 1,
            reason: reason.to_string(),
        };
        // `lines` already drops a `\r` before `\n`; this catches one before the end of
        // the file.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let (user, password) = line
            .split_once(' ')
            .ok_or_else(|| bad("has no space between username and password"))?;
        if !is_word(user) {
            return Err(bad("has an empty or non-printable username"));
        }
        // Split at the first space, so a password may hold spaces a hand-written file
        // put there; it must still be printable and not empty.
        if password.is_empty() || password.chars().any(char::is_control) {
            return Err(bad("has an empty or non-printable password"));
        }
        if credentials
            .users
            .insert(user.to_string(), password.to_string())
            .is_some()
        {
            return Err(bad(&format!("lists user `{user}` a second time")));
        }
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Parsed, NotAThread> {
        parse_thread(&mut text.as_bytes())
    }

    fn message(author: &str, text: &str) -> Line {
        Line::Message {
            author: author.into(),
            text: text.into(),
        }
    }

    fn upload(user: &str, file: &str) -> Line {
        Line::Upload {
            user: user.into(),
            file: file.into(),
        }
    }

    #[test]
    fn a_thread_round_trips() {
        let text = "yoda\n1 yoda: Networks is awesome\nobiwan uploaded test.exe\n\
                    2 obiwan: Learn: from it\n3 a:b: x\n";
        let parsed = parse(text).unwrap();
        assert!(!parsed.unterminated);
        assert_eq!(parsed.thread.creator, "yoda");
        assert_eq!(
            parsed.thread.lines,
            vec![
                message("yoda", "Networks is awesome"),
                upload("obiwan", "test.exe"),
                message("obiwan", "Learn: from it"),
                message("a:b", "x"),
            ]
        );
        assert_eq!(render_file(&parsed.thread), text);
    }

    #[test]
    fn a_missing_final_newline_is_accepted_and_remembered() {
        let parsed = parse("yoda\n1 yoda: hi").unwrap();
        assert!(parsed.unterminated);
        assert_eq!(parsed.thread.lines, vec![message("yoda", "hi")]);
        assert!(parse("yoda").unwrap().unterminated);
        assert!(!parse("yoda\n").unwrap().unterminated);
    }

    #[test]
    fn anything_the_store_would_not_write_is_not_a_thread() {
        let cases: [(&str, usize); 14] = [
            ("", 1),
            ("\n", 1),
            ("yoda wise\n", 1),
            ("\u{7f}ELF\u{2}\u{1}\n", 1),
            ("yoda\n\n", 2),
            ("yoda\n2 yoda: skipped one\n", 2),
            ("yoda\n01 yoda: leading zero\n", 2),
            ("yoda\n1 yoda:no space\n", 2),
            ("yoda\n1 yoda: \n", 2),
            ("yoda\n1 yoda: tab\there\n", 2),
            ("yoda\n1 yoda: crlf\r\n", 2),
            ("yoda\nobiwan uploaded ../x\n", 2),
            ("yoda\nu uploaded f\nu uploaded f\n", 3),
            ("[package]\nname = \"socklab\"\n", 2),
        ];
        for (text, line) in cases {
            let error = parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {}", error.reason);
        }
        let long = format!("yoda\n1 yoda: {}\n", "x".repeat(MAX_TEXT + 1));
        assert_eq!(parse(&long).unwrap_err().line, 2);
        let huge = format!("yoda\n{}", "x".repeat(MAX_LINE + 1));
        assert!(parse(&huge).unwrap_err().reason.contains("longer"));
        let mut binary = b"yoda\n".to_vec();
        binary.extend([0xff, 0xfe, b'\n']);
        assert!(parse_thread(&mut &binary[..])
            .unwrap_err()
            .reason
            .contains("UTF-8"));
    }

    #[test]
    fn message_and_upload_lines_cannot_be_confused() {
        // A user called `5` uploading, a user called `uploaded` posting.
        assert_eq!(parse_line("5 uploaded x", 5), Ok(upload("5", "x")));
        assert_eq!(
            parse_line("1 uploaded: x y", 1),
            Ok(message("uploaded", "x y"))
        );
        assert_eq!(
            parse_line("1 u: uploaded x", 1),
            Ok(message("u", "uploaded x"))
        );
    }

    #[test]
    fn credentials_tolerate_crlf_blank_lines_bom_and_no_final_newline() {
        let parsed =
            parse_credentials(b"\xef\xbb\xbfyoda wise@!man\r\n\r\n\nr2d2 do*!@#dedo\r").unwrap();
        assert_eq!(parsed.users.len(), 2);
        assert_eq!(parsed.users["yoda"], "wise@!man");
        assert_eq!(parsed.users["r2d2"], "do*!@#dedo");
        assert!(parsed.unterminated);
        assert!(!parse_credentials(b"a b\n").unwrap().unterminated);
        assert!(!parse_credentials(b"").unwrap().unterminated);
        // Split at the first space: the rest is the password.
        assert_eq!(parse_credentials(b"a b c").unwrap().users["a"], "b c");
    }

    #[test]
    fn unusable_credentials_name_their_line() {
        let cases: [(&[u8], usize); 6] = [
            (b"a b\nnospace\n", 2),
            (b" b\n", 1),
            (b"a \n", 1),
            (b"a b\na c\n", 2),
            (b"a b\n\nc d\xff\n", 3),
            (b"a b\tc\n", 1),
        ];
        for (bytes, line) in cases {
            let error = parse_credentials(bytes).unwrap_err();
            assert_eq!(error.line, line, "{:?}: {}", bytes, error.reason);
        }
    }
}
