//! The forum client (lab 3): reads commands line by line, sends them over UDP through
//! the [`reliable`](super::reliable) layer, prints what the server answers, and moves
//! files over TCP for `UPD` and `DWN`.
//!
//! Everything the user reads is fixed by forum-spec.md. The prompts are printed even
//! when stdin is not a terminal, so a file of commands can be piped in (that is how
//! the tests and the demo drive it), and the end of the input acts like `XIT`.
//!
//! While the user thinks, a background task sends a heartbeat datagram every
//! `heartbeat` interval, so the server does not mistake a slow typist for a vanished
//! client; a client that is killed stops sending them, and its session expires.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::net::UdpSocket;

use super::command::{self, Command, Login, Reply, Status, COMMAND_PROMPT};
use super::reliable::{CallError, ReliableClient, RetryConfig};
use super::store::{check_name, shown};
use super::transfer;
use super::wire;
use super::ForumError;
use crate::net;

/// What the client says to a username that is not UTF-8 text (the server's words for a
/// username it refuses).
const INVALID_USERNAME: &str = "Invalid username: use printable characters without spaces";

/// What the client says to a new user's password that is not UTF-8 text.
const INVALID_NEW_PASSWORD: &str = "Invalid password: use printable characters without spaces";

/// How to run the client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The server: UDP for commands, TCP on the same port for transfers.
    pub server: SocketAddr,
    /// Retransmission settings.
    pub retry: RetryConfig,
    /// How often to send a heartbeat while logged in.
    pub heartbeat: Duration,
    /// Where `UPD` reads files from and `DWN` writes them to.
    pub dir: PathBuf,
    /// Whether to show progress bars for large transfers (stderr is a terminal).
    pub progress: bool,
}

/// How a client session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The user typed `XIT` (or the input ended) and the server said goodbye.
    Goodbye,
    /// The input ended before a login.
    EndOfInput,
    /// The server did not answer the final `XIT`.
    ServerGone,
}

/// The client's state.
struct Client<R, W> {
    options: ClientOptions,
    input: R,
    output: W,
    socket: Arc<UdpSocket>,
    reliable: ReliableClient,
    heartbeat: tokio::task::JoinHandle<()>,
}

/// What the login loop ended with.
enum LoginEnd {
    LoggedIn,
    EndOfInput,
}

/// Runs one client: logs in, then executes commands until `XIT` or the end of `input`.
/// Prompts and replies go to `output`.
///
/// # Errors
/// [`ForumError::Net`] if the UDP socket cannot be set up, [`ForumError::Io`] if
/// `input` or `output` fail (a closed stdout, say).
pub async fn run<R, W>(
    options: ClientOptions,
    input: R,
    output: W,
) -> Result<ClientOutcome, ForumError>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    let socket = Arc::new(net::connect_udp(options.server).await?);
    let reliable = ReliableClient::new(Arc::clone(&socket), rand::random(), options.retry);
    let heartbeat = spawn_heartbeat(&socket, &reliable, options.heartbeat);
    let mut client = Client {
        options,
        input,
        output,
        socket,
        reliable,
        heartbeat,
    };
    let outcome = client.session().await;
    client.heartbeat.abort();
    outcome
}

/// Sends the session's heartbeat datagram every `every` until aborted. Lost
/// heartbeats do not matter: the server only needs one per session timeout.
fn spawn_heartbeat(
    socket: &Arc<UdpSocket>,
    reliable: &ReliableClient,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let socket = Arc::clone(socket);
    let datagram = reliable.heartbeat();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let _ = socket.send(&datagram).await;
        }
    })
}

impl<R, W> Client<R, W>
where
    R: AsyncBufRead + Unpin,
    W: Write,
{
    async fn session(&mut self) -> Result<ClientOutcome, ForumError> {
        loop {
            match self.login().await? {
                LoginEnd::EndOfInput => return Ok(ClientOutcome::EndOfInput),
                LoginEnd::LoggedIn => {}
            }
            match self.commands().await? {
                Some(outcome) => return Ok(outcome),
                // The server forgot the session (it expired or restarted): log in
                // again with a new one.
                None => self.new_session(),
            }
        }
    }

    fn new_session(&mut self) {
        self.heartbeat.abort();
        self.reliable =
            ReliableClient::new(Arc::clone(&self.socket), rand::random(), self.options.retry);
        self.heartbeat = spawn_heartbeat(&self.socket, &self.reliable, self.options.heartbeat);
    }

    /// Asks for a username and password until the server welcomes us.
    async fn login(&mut self) -> Result<LoginEnd, ForumError> {
        loop {
            self.prompt("Enter username: ")?;
            let user = match self.read_credential().await? {
                None => return Ok(LoginEnd::EndOfInput),
                Some(Some(user)) => user,
                Some(None) => {
                    self.print(INVALID_USERNAME)?;
                    continue;
                }
            };
            let reply = match self
                .call(&Login::Hello { user: user.clone() }.to_string())
                .await?
            {
                Some(reply) => reply,
                None => continue,
            };
            let password_prompt = match reply.status {
                Status::Password => "Enter password: ",
                Status::NewUser => "New user, enter password: ",
                _ => {
                    self.print_lines(&reply.lines)?;
                    continue;
                }
            };
            self.prompt(password_prompt)?;
            let password = match self.read_credential().await? {
                None => return Ok(LoginEnd::EndOfInput),
                Some(Some(password)) => password,
                // No stored password has such bytes: for a known user it is simply wrong.
                Some(None) if reply.status == Status::Password => {
                    self.print("Invalid password")?;
                    continue;
                }
                Some(None) => {
                    self.print(INVALID_NEW_PASSWORD)?;
                    continue;
                }
            };
            let request = if reply.status == Status::Password {
                Login::Login { user, password }
            } else {
                Login::Register { user, password }
            };
            let Some(reply) = self.call(&request.to_string()).await? else {
                continue;
            };
            self.print_lines(&reply.lines)?;
            if reply.status == Status::Ok {
                return Ok(LoginEnd::LoggedIn);
            }
        }
    }

    /// Runs commands until `XIT` (`Some`) or until the server no longer knows our
    /// session (`None`: log in again).
    async fn commands(&mut self) -> Result<Option<ClientOutcome>, ForumError> {
        loop {
            self.prompt(COMMAND_PROMPT)?;
            let line = self.read_line().await?;
            let command = match line.as_deref() {
                None => Command::Exit,
                Some(line) => match command::parse(line) {
                    Ok(command) => command,
                    Err(error) => {
                        self.print(&error.to_string())?;
                        continue;
                    }
                },
            };
            if let Some(problem) = self.local_check(&command) {
                self.print(&problem)?;
                continue;
            }
            let text = command.to_string();
            let reply = match self.reliable.call(text.as_bytes()).await {
                Ok(body) => Reply::decode(&String::from_utf8_lossy(&body)),
                Err(CallError::Refused(reason)) => {
                    self.print(&capitalise(&reason))?;
                    return Ok(None);
                }
                Err(CallError::TooLong { .. }) => {
                    let limit = wire::MAX_BODY;
                    self.print(&format!("Command too long: at most {limit} bytes"))?;
                    continue;
                }
                Err(CallError::NoResponse { .. }) => {
                    self.print("Server not responding")?;
                    if command == Command::Exit {
                        return Ok(Some(ClientOutcome::ServerGone));
                    }
                    continue;
                }
                Err(CallError::Io { peer, cause }) => {
                    self.print(&format!(
                        "Server not responding ({peer}: {})",
                        net::describe(&cause)
                    ))?;
                    continue;
                }
            };
            let Some(reply) = reply else {
                self.print("The server sent a reply this client does not understand")?;
                continue;
            };
            match &reply.status {
                Status::Upload { token } => self.upload(&command, token).await?,
                Status::Download { token, .. } => self.download(&command, token).await?,
                Status::Bye => {
                    self.print_lines(&reply.lines)?;
                    return Ok(Some(ClientOutcome::Goodbye));
                }
                _ => self.print_lines(&reply.lines)?,
            }
        }
    }

    /// Checks what only the client can check: names used as local file names, and the
    /// local file of an upload.
    fn local_check(&self, command: &Command) -> Option<String> {
        match command {
            Command::Upload { file, .. } => {
                if let Err(problem) = check_name(file) {
                    return Some(format!("Invalid name {}: {problem}", shown(file)));
                }
                let path = self.options.dir.join(file);
                (!path.is_file()).then(|| format!("File {file} does not exist"))
            }
            Command::Download { file, .. } => check_name(file)
                .err()
                .map(|problem| format!("Invalid name {}: {problem}", shown(file))),
            _ => None,
        }
    }

    async fn upload(&mut self, command: &Command, token: &str) -> Result<(), ForumError> {
        let Command::Upload { file, .. } = command else {
            return self.print("The server answered UPLOAD to a command that is not UPD");
        };
        let path = self.options.dir.join(file);
        match transfer::upload(self.options.server, token, &path, self.options.progress).await {
            Ok(message) => self.print(&message),
            Err(error) => self.print(&format!("Upload failed: {error}")),
        }
    }

    async fn download(&mut self, command: &Command, token: &str) -> Result<(), ForumError> {
        let Command::Download { file, .. } = command else {
            return self.print("The server answered DOWNLOAD to a command that is not DWN");
        };
        let dir = self.options.dir.clone();
        match transfer::download(
            self.options.server,
            token,
            &dir,
            file,
            self.options.progress,
        )
        .await
        {
            Ok(_) => self.print(&format!("{file} successfully downloaded")),
            Err(error) => self.print(&format!("Download failed: {error}")),
        }
    }

    /// Sends a login request. `None` (after telling the user) when the server is not
    /// answering or refuses the session.
    async fn call(&mut self, body: &str) -> Result<Option<Reply>, ForumError> {
        match self.reliable.call(body.as_bytes()).await {
            Ok(body) => match Reply::decode(&String::from_utf8_lossy(&body)) {
                Some(reply) => Ok(Some(reply)),
                None => {
                    self.print("The server sent a reply this client does not understand")?;
                    Ok(None)
                }
            },
            Err(CallError::Refused(reason)) => {
                self.print(&capitalise(&reason))?;
                self.new_session();
                Ok(None)
            }
            Err(CallError::TooLong { .. }) => {
                self.print("Username or password too long")?;
                Ok(None)
            }
            Err(CallError::NoResponse { .. } | CallError::Io { .. }) => {
                self.print("Server not responding")?;
                Ok(None)
            }
        }
    }

    /// Reads one line without its line ending; `None` at the end of the input.
    async fn read_line(&mut self) -> Result<Option<String>, ForumError> {
        // Bytes that are not UTF-8 become U+FFFD, which no name accepts: the server
        // then refuses the name with a clear message instead of us guessing.
        let bytes = self.read_bytes().await?;
        Ok(bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Reads a username or password: `Some(None)` for a line that is not UTF-8.
    /// Unlike a command, it is not repaired with U+FFFD, which usernames and passwords
    /// may hold: two different invalid bytes would name the same account, or match the
    /// same password.
    async fn read_credential(&mut self) -> Result<Option<Option<String>>, ForumError> {
        let bytes = self.read_bytes().await?;
        Ok(bytes.map(|bytes| String::from_utf8(bytes).ok()))
    }

    /// Reads one line's bytes without its line ending; `None` at the end of the input.
    async fn read_bytes(&mut self) -> Result<Option<Vec<u8>>, ForumError> {
        let mut bytes = Vec::new();
        let read = self
            .input
            .read_until(b'\n', &mut bytes)
            .await
            .map_err(|cause| ForumError::Io {
                what: "standard input".into(),
                cause,
            })?;
        if read == 0 {
            return Ok(None);
        }
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        Ok(Some(bytes))
    }

    fn prompt(&mut self, text: &str) -> Result<(), ForumError> {
        write!(self.output, "{text}")
            .and_then(|()| self.output.flush())
            .map_err(output_error)
    }

    fn print(&mut self, line: &str) -> Result<(), ForumError> {
        writeln!(self.output, "{line}")
            .and_then(|()| self.output.flush())
            .map_err(output_error)
    }

    fn print_lines(&mut self, lines: &[String]) -> Result<(), ForumError> {
        for line in lines {
            writeln!(self.output, "{line}").map_err(output_error)?;
        }
        self.output.flush().map_err(output_error)
    }
}

fn output_error(cause: std::io::Error) -> ForumError {
    ForumError::Io {
        what: "standard output".into(),
        cause,
    }
}

/// The server's protocol errors start lower-case; a sentence for the user does not.
fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
