//! Lab 3, the forum's data directory: the intent journal, `DIR/.forum-journal`, which
//! makes a change of several files all-or-nothing across a crash.
//!
//! An upload is two steps (link the finished temp file to `t-f`, append `user uploaded
//! f` to `t`) and a remove is several (delete `t`, then each `t-f`). Before the first
//! step the store writes what it is about to do; after the last it deletes the journal.
//! A store that opens with a journal present finishes the job ("rolls forward"): every
//! step is written so that doing it again is harmless.
//!
//! ```text
//!   socklab forum journal 1        socklab forum journal 1
//!   upload                         remove
//!   t                              t
//!   f                              2              <- how many uploads follow
//!   yoda                           a.txt
//!   .forum-upload-00c0ffee00c0ffee b.png
//!   end                            end
//! ```
//!
//! The journal is itself written to a temporary file and renamed into place, so it is
//! either absent or complete; the count and the `end` line catch a hand-edited one.

use super::is_temp_name;
use super::names::{check_name, is_word};

/// The journal's file name in DIR; hidden, so no valid name collides with it.
pub(super) const JOURNAL_FILE: &str = ".forum-journal";

/// The first line: what the file is, and the format's version.
const MAGIC: &str = "socklab forum journal 1";

/// The last line.
const END: &str = "end";

/// A multi-file change the store is about to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Intent {
    /// Link `temp` to `title-file`, then append `user uploaded file` to `title`.
    Upload {
        /// The thread.
        title: String,
        /// The upload's name.
        file: String,
        /// Who uploads it.
        user: String,
        /// The finished temporary file in DIR.
        temp: String,
    },
    /// Delete `title`, then `title-f` for every upload `f` it lists.
    Remove {
        /// The thread.
        title: String,
        /// The names of its uploads.
        files: Vec<String>,
    },
}

/// Renders `intent` as the journal's text.
pub(super) fn encode(intent: &Intent) -> String {
    let mut lines = vec![MAGIC.to_string()];
    match intent {
        Intent::Upload {
            title,
            file,
            user,
            temp,
        } => {
            lines.extend(["upload", title, file, user, temp].map(String::from));
        }
        Intent::Remove { title, files } => {
            lines.extend(["remove".to_string(), title.clone(), files.len().to_string()]);
            lines.extend(files.iter().cloned());
        }
    }
    lines.push(END.to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Why a journal cannot be replayed: the line (from 1) and what is wrong there.
pub(super) type BadJournal = (usize, String);

/// Parses a journal, checking every name in it: a replay deletes and links files, so a
/// doctored journal must not be able to point it outside DIR or at `credentials.txt`.
///
/// # Errors
/// The line and reason of the first problem.
pub(super) fn decode(text: &str) -> Result<Intent, BadJournal> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let mut next = |what: &str| {
        lines
            .next()
            .ok_or_else(|| (text.lines().count() + 1, format!("{what} is missing")))
    };
    let (line, magic) = next("the header")?;
    if magic != MAGIC {
        return Err((line, format!("expected `{MAGIC}`")));
    }
    let name = |(line, name): (usize, &str)| match check_name(name) {
        Ok(()) => Ok(name.to_string()),
        Err(problem) => Err((line, format!("`{}` {problem}", super::names::shown(name)))),
    };
    let (line, kind) = next("the kind of change")?;
    let intent = match kind {
        "upload" => {
            let title = name(next("the thread")?)?;
            let file = name(next("the file")?)?;
            let (line, user) = next("the user")?;
            if !is_word(user) {
                return Err((line, "not a username".into()));
            }
            let (line, temp) = next("the temporary file")?;
            if !is_temp_name(temp) {
                return Err((line, "not one of the store's temporary files".into()));
            }
            Intent::Upload {
                title,
                file,
                user: user.to_string(),
                temp: temp.to_string(),
            }
        }
        "remove" => {
            let title = name(next("the thread")?)?;
            let (line, count) = next("the number of uploads")?;
            let count: usize = count
                .parse()
                .map_err(|_| (line, "not a number of uploads".to_string()))?;
            let mut files = Vec::new();
            for _ in 0..count {
                files.push(name(next("an upload")?)?);
            }
            Intent::Remove { title, files }
        }
        _ => return Err((line, "expected `upload` or `remove`".into())),
    };
    let (line, end) = next("the `end` line")?;
    if end != END {
        return Err((line, format!("expected `{END}`")));
    }
    if let Ok((line, _)) = next("nothing") {
        return Err((line, format!("text after `{END}`")));
    }
    Ok(intent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload() -> Intent {
        Intent::Upload {
            title: "t".into(),
            file: "f.txt".into(),
            user: "yoda".into(),
            temp: ".forum-upload-00c0ffee00c0ffee".into(),
        }
    }

    #[test]
    fn intents_round_trip() {
        let remove = Intent::Remove {
            title: "t".into(),
            files: vec!["end".into(), "b.png".into()],
        };
        for intent in [
            upload(),
            remove,
            Intent::Remove {
                title: "t".into(),
                files: vec![],
            },
        ] {
            assert_eq!(decode(&encode(&intent)), Ok(intent));
        }
        assert_eq!(
            encode(&upload()),
            "socklab forum journal 1\nupload\nt\nf.txt\nyoda\n.forum-upload-00c0ffee00c0ffee\nend\n"
        );
    }

    #[test]
    fn doctored_or_cut_journals_are_refused_with_their_line() {
        let good = encode(&upload());
        let cases: Vec<(String, usize)> = vec![
            (good.replace("\nt\n", "\n../etc\n"), 3),
            (good.replace("f.txt", "credentials.txt"), 4),
            (good.replace(".forum-upload-00c0ffee00c0ffee", "../x"), 6),
            (good.replace("upload\n", "rename\n"), 2),
            (good.replace("journal 1", "journal 9"), 1),
            (good.replace("end\n", ""), 7),
            (format!("{good}more\n"), 8),
            ("socklab forum journal 1\nremove\nt\n2\nend\n".into(), 6),
            ("socklab forum journal 1\nremove\nt\nmany\nend\n".into(), 4),
            (String::new(), 1),
        ];
        for (text, line) in cases {
            let (found, reason) = decode(&text).expect_err(&text);
            assert_eq!(found, line, "{text:?}: {reason}");
        }
    }
}
