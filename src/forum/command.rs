//! The forum's commands (lab 3): the line a user types, parsed into a [`Command`], and
//! the request and reply texts that carry it inside a datagram's body.
//!
//! The client and the server use the same parser: the client to answer a typo at once
//! without a round trip, the server because it trusts nobody (a request may come from
//! any program, not only our client).
//!
//! # Request bodies (client to server, UTF-8)
//! ```text
//! HELLO <user>                 start a login: is this user known, new, or logged in?
//! LOGIN <user> <password>      log in as a known user
//! REGISTER <user> <password>   create a new user and log in
//! CRT <t> | MSG <t> <text> | DLT <t> <n> | EDT <t> <n> <text> | LST | RDT <t>
//! UPD <t> <f> | DWN <t> <f> | RMV <t> | XIT          a command, exactly as typed
//! ```
//!
//! # Reply bodies (server to client, UTF-8)
//! The first line is a status word (and its fields), the rest is what the client
//! prints, line by line, exactly as the spec fixes it:
//! ```text
//! OK                 the request succeeded         e.g. "OK\nThread 3331 created"
//! NO                 the request was refused       e.g. "NO\nThread 3331 exists"
//! PASSWORD           (to HELLO) a known user: ask for the password
//! NEW-USER           (to HELLO) an unknown user: ask for a new password
//! UPLOAD <token>     (to UPD) send the file over TCP with this one-time token
//! DOWNLOAD <token> <size>  (to DWN) fetch the file over TCP with this token
//! BYE                (to XIT) logged out         "BYE\nGoodbye"
//! ```
//! Keeping the printed text in the reply keeps the client thin (the server decides
//! what happened, the client shows it), while the status word lets a program, or a
//! student reading a capture, see the outcome without parsing English.

use std::fmt;

/// The prompt printed before each command (forum-spec.md, "Commands").
pub const COMMAND_PROMPT: &str =
    "Enter one of the following commands: CRT, MSG, DLT, EDT, LST, RDT, UPD, DWN, RMV, XIT: ";

/// A command a logged-in user can give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `CRT t`: create thread `t`.
    Create { title: String },
    /// `MSG t text`: post a message.
    Post { title: String, text: String },
    /// `DLT t n`: delete message `n`.
    Delete { title: String, number: usize },
    /// `EDT t n text`: replace the text of message `n`.
    Edit {
        title: String,
        number: usize,
        text: String,
    },
    /// `LST`: list the threads.
    List,
    /// `RDT t`: read a thread.
    Read { title: String },
    /// `UPD t f`: upload local file `f` to thread `t`.
    Upload { title: String, file: String },
    /// `DWN t f`: download file `f` of thread `t`.
    Download { title: String, file: String },
    /// `RMV t`: remove thread `t` and its files.
    Remove { title: String },
    /// `XIT`: log out.
    Exit,
}

/// Why a typed line is not a command; the `Display` is the spec's client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not one of the ten command words (they are upper-case).
    Invalid,
    /// A known command with the wrong number or shape of arguments.
    Syntax(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Invalid => f.write_str("Invalid command"),
            ParseError::Syntax(word) => write!(f, "Incorrect syntax for {word}"),
        }
    }
}

impl Command {
    /// The command word (`CRT`, `MSG` ...), as the server log names it.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Create { .. } => "CRT",
            Command::Post { .. } => "MSG",
            Command::Delete { .. } => "DLT",
            Command::Edit { .. } => "EDT",
            Command::List => "LST",
            Command::Read { .. } => "RDT",
            Command::Upload { .. } => "UPD",
            Command::Download { .. } => "DWN",
            Command::Remove { .. } => "RMV",
            Command::Exit => "XIT",
        }
    }
}

/// The canonical text of a command: what the client sends, and what [`parse`] reads
/// back into the same command.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word();
        match self {
            Command::Create { title } | Command::Read { title } | Command::Remove { title } => {
                write!(f, "{word} {title}")
            }
            Command::Post { title, text } => write!(f, "{word} {title} {text}"),
            Command::Delete { title, number } => write!(f, "{word} {title} {number}"),
            Command::Edit {
                title,
                number,
                text,
            } => write!(f, "{word} {title} {number} {text}"),
            Command::Upload { title, file } | Command::Download { title, file } => {
                write!(f, "{word} {title} {file}")
            }
            Command::List | Command::Exit => f.write_str(word),
        }
    }
}

/// Parses one typed line (without its line ending).
///
/// Arguments are single words separated by single spaces (so two spaces in a row make
/// an empty argument, which is a syntax error); the text of `MSG` and `EDT` is the rest
/// of the line, spaces included, and may not be empty.
///
/// # Errors
/// [`ParseError::Invalid`] for an unknown command word, [`ParseError::Syntax`] for a
/// known one with the wrong arguments (a message number must be a decimal number).
pub fn parse(line: &str) -> Result<Command, ParseError> {
    let (word, rest) = match line.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (line, None),
    };
    let (word, arity, takes_text) = match word {
        "CRT" => ("CRT", 1, false),
        "MSG" => ("MSG", 1, true),
        "DLT" => ("DLT", 2, false),
        "EDT" => ("EDT", 2, true),
        "LST" => ("LST", 0, false),
        "RDT" => ("RDT", 1, false),
        "UPD" => ("UPD", 2, false),
        "DWN" => ("DWN", 2, false),
        "RMV" => ("RMV", 1, false),
        "XIT" => ("XIT", 0, false),
        _ => return Err(ParseError::Invalid),
    };
    let syntax = ParseError::Syntax(word);
    let args = split_args(rest, arity, takes_text).ok_or(syntax.clone())?;
    let arg = |i: usize| args[i].to_string();
    let number = |i: usize| -> Result<usize, ParseError> {
        let text = args[i];
        if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().map_err(|_| syntax.clone())
        } else {
            Err(syntax.clone())
        }
    };
    Ok(match word {
        "CRT" => Command::Create { title: arg(0) },
        "MSG" => Command::Post {
            title: arg(0),
            text: arg(1),
        },
        "DLT" => Command::Delete {
            title: arg(0),
            number: number(1)?,
        },
        "EDT" => Command::Edit {
            title: arg(0),
            number: number(1)?,
            text: arg(2),
        },
        "LST" => Command::List,
        "RDT" => Command::Read { title: arg(0) },
        "UPD" => Command::Upload {
            title: arg(0),
            file: arg(1),
        },
        "DWN" => Command::Download {
            title: arg(0),
            file: arg(1),
        },
        "RMV" => Command::Remove { title: arg(0) },
        _ => Command::Exit,
    })
}

/// Splits `rest` into exactly `arity` non-empty words, plus the non-empty rest of the
/// line when `takes_text`. `None` when the shape is wrong.
fn split_args(rest: Option<&str>, arity: usize, takes_text: bool) -> Option<Vec<&str>> {
    let wanted = arity + usize::from(takes_text);
    let Some(rest) = rest else {
        return (wanted == 0).then(Vec::new);
    };
    if wanted == 0 {
        return None;
    }
    let args: Vec<&str> = if takes_text {
        rest.splitn(wanted, ' ').collect()
    } else {
        rest.split(' ').collect()
    };
    let well_formed = args.len() == wanted && args.iter().all(|arg| !arg.is_empty());
    well_formed.then_some(args)
}

/// A login step the client asks of the server (the first word of a login request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Login {
    /// `HELLO user`
    Hello { user: String },
    /// `LOGIN user password`
    Login { user: String, password: String },
    /// `REGISTER user password`
    Register { user: String, password: String },
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::Hello { user } => write!(f, "HELLO {user}"),
            Login::Login { user, password } => write!(f, "LOGIN {user} {password}"),
            Login::Register { user, password } => write!(f, "REGISTER {user} {password}"),
        }
    }
}

/// Reads a login request, or `None` if `body` is not one.
pub fn parse_login(body: &str) -> Option<Login> {
    let mut words = body.split(' ');
    let login = match (words.next(), words.next(), words.next()) {
        (Some("HELLO"), Some(user), None) => Login::Hello {
            user: user.to_string(),
        },
        (Some("LOGIN"), Some(user), Some(password)) => Login::Login {
            user: user.to_string(),
            password: password.to_string(),
        },
        (Some("REGISTER"), Some(user), Some(password)) => Login::Register {
            user: user.to_string(),
            password: password.to_string(),
        },
        _ => return None,
    };
    words.next().is_none().then_some(login)
}

/// Whether `word` may be a username or password: printable, no spaces
/// (forum-spec.md: "any printable non-space characters").
pub fn is_credential(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// The outcome word that starts every reply body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The request succeeded.
    Ok,
    /// The request was refused (the text says why).
    No,
    /// A known user: ask for the password.
    Password,
    /// An unknown user: ask for a new password.
    NewUser,
    /// Upload the file over TCP with this token.
    Upload { token: String },
    /// Download the file over TCP with this token; it has `size` bytes.
    Download { token: String, size: u64 },
    /// Logged out.
    Bye,
}

/// A reply: its status and the lines the client prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// What happened.
    pub status: Status,
    /// The lines to print, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// A success with one line of text.
    pub fn ok(line: impl Into<String>) -> Reply {
        Reply::with(Status::Ok, line)
    }

    /// A refusal with one line of text.
    pub fn no(line: impl Into<String>) -> Reply {
        Reply::with(Status::No, line)
    }

    /// A reply with `status` and one line.
    pub fn with(status: Status, line: impl Into<String>) -> Reply {
        Reply {
            status,
            lines: vec![line.into()],
        }
    }

    /// The reply's body: the status line, then one line per text line.
    pub fn encode(&self) -> String {
        let mut body = match &self.status {
            Status::Ok => "OK".to_string(),
            Status::No => "NO".to_string(),
            Status::Password => "PASSWORD".to_string(),
            Status::NewUser => "NEW-USER".to_string(),
            Status::Upload { token } => format!("UPLOAD {token}"),
            Status::Download { token, size } => format!("DOWNLOAD {token} {size}"),
            Status::Bye => "BYE".to_string(),
        };
        for line in &self.lines {
            body.push('\n');
            body.push_str(line);
        }
        body
    }

    /// Reads a reply body, or `None` if its status line is not one of ours.
    pub fn decode(body: &str) -> Option<Reply> {
        let mut lines = body.split('\n');
        let status_line = lines.next()?;
        let mut words = status_line.split(' ');
        let status = match (words.next()?, words.next(), words.next()) {
            ("OK", None, None) => Status::Ok,
            ("NO", None, None) => Status::No,
            ("PASSWORD", None, None) => Status::Password,
            ("NEW-USER", None, None) => Status::NewUser,
            ("BYE", None, None) => Status::Bye,
            ("UPLOAD", Some(token), None) => Status::Upload {
                token: token.to_string(),
            },
            ("DOWNLOAD", Some(token), Some(size)) => Status::Download {
                token: token.to_string(),
                size: size.parse().ok()?,
            },
            _ => return None,
        };
        if words.next().is_some() {
            return None;
        }
        Some(Reply {
            status,
            lines: lines.map(str::to_string).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_prints_back_the_same() {
        let lines = [
            "CRT 3331",
            "MSG 3331 Networks is awesome",
            "MSG 3331  two  spaces kept ",
            "DLT 3331 1",
            "EDT 3331 2 I love networks",
            "LST",
            "RDT 3331",
            "UPD 3331 test.exe",
            "DWN 3331 test.exe",
            "RMV 3331",
            "XIT",
        ];
        for line in lines {
            let command = parse(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(command.to_string(), line);
        }
        assert_eq!(
            parse("EDT t 12 a b").unwrap(),
            Command::Edit {
                title: "t".into(),
                number: 12,
                text: "a b".into()
            }
        );
    }

    #[test]
    fn unknown_words_are_invalid_commands() {
        for line in ["", "crt 3331", "FOO", "CRTX 3331", " CRT 3331", "XIT\t"] {
            assert_eq!(parse(line), Err(ParseError::Invalid), "{line:?}");
        }
        assert_eq!(ParseError::Invalid.to_string(), "Invalid command");
    }

    #[test]
    fn wrong_arguments_are_syntax_errors_naming_the_command() {
        let cases = [
            ("LST 3331", "LST"),
            ("XIT now", "XIT"),
            ("RDT", "RDT"),
            ("RDT a b", "RDT"),
            ("CRT", "CRT"),
            ("CRT a b", "CRT"),
            ("CRT  a", "CRT"),
            ("CRT a ", "CRT"),
            ("MSG 3331", "MSG"),
            ("MSG 3331 ", "MSG"),
            ("DLT 3331", "DLT"),
            ("DLT 3331 one", "DLT"),
            ("DLT 3331 -1", "DLT"),
            ("DLT 3331 1 2", "DLT"),
            ("DLT 3331 99999999999999999999999", "DLT"),
            ("EDT 3331 1", "EDT"),
            ("EDT 3331 x text", "EDT"),
            ("UPD 3331", "UPD"),
            ("DWN a b c", "DWN"),
            ("RMV", "RMV"),
        ];
        for (line, word) in cases {
            assert_eq!(parse(line), Err(ParseError::Syntax(word)), "{line:?}");
        }
        assert_eq!(
            ParseError::Syntax("LST").to_string(),
            "Incorrect syntax for LST"
        );
    }

    #[test]
    fn login_requests_round_trip_and_reject_extra_words() {
        for login in [
            Login::Hello {
                user: "yoda".into(),
            },
            Login::Login {
                user: "yoda".into(),
                password: "wise@!man".into(),
            },
            Login::Register {
                user: "r2d2".into(),
                password: "do*!@#dedo".into(),
            },
        ] {
            assert_eq!(parse_login(&login.to_string()), Some(login));
        }
        for body in ["HELLO", "HELLO a b", "LOGIN a", "LOGIN a b c", "CRT x", ""] {
            assert_eq!(parse_login(body), None, "{body:?}");
        }
    }

    #[test]
    fn credentials_are_printable_words() {
        assert!(is_credential("wise@!man"));
        assert!(is_credential("do*!@#dedo"));
        for bad in ["", "a b", "tab\tx", "bell\u{7}"] {
            assert!(!is_credential(bad), "{bad:?}");
        }
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::ok("Thread 3331 created"),
            Reply::no("Thread 3331 exists"),
            Reply {
                status: Status::Ok,
                lines: vec!["The list of active threads:".into(), "3331".into()],
            },
            Reply {
                status: Status::Password,
                lines: vec![],
            },
            Reply {
                status: Status::NewUser,
                lines: vec![],
            },
            Reply {
                status: Status::Upload {
                    token: "00ff".into(),
                },
                lines: vec![],
            },
            Reply {
                status: Status::Download {
                    token: "ab".into(),
                    size: 12,
                },
                lines: vec![],
            },
            Reply::with(Status::Bye, "Goodbye"),
        ];
        for reply in replies {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
        for bad in [
            "",
            "MAYBE",
            "OK extra",
            "DOWNLOAD t",
            "DOWNLOAD t x",
            "UPLOAD",
        ] {
            assert_eq!(Reply::decode(bad), None, "{bad:?}");
        }
    }
}
