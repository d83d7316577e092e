//! The forum server (lab 3): one UDP socket for commands, one TCP listener on the same
//! port number for file transfers, and the [`Store`] behind both.
//!
//! ```text
//!   clients ──UDP──► ┌───────────────────────────┐        ┌──────────────┐
//!                    │ command loop (one task)   │──lock──► Store (DIR)  │
//!            ◄─UDP── │ sessions, reply caches    │        │ the only     │
//!                    └──────────┬────────────────┘        │ module that  │
//!                               │ one-time tokens         │ touches DIR  │
//!   clients ──TCP──► ┌──────────▼────────────────┐        │              │
//!                    │ transfer tasks (one per   │──lock──►              │
//!                    │ connection), transfer.rs  │        └──────────────┘
//!                    └───────────────────────────┘
//! ```
//!
//! How a request is handled, and why:
//!
//! - **Sessions.** A client picks a random 64-bit session id and puts it in every
//!   datagram; the server keeps, per session, the logged-in user and a
//!   [`ReplyCache`]. A request whose id was already answered is answered again from the
//!   cache and never executed twice: that is what makes a retransmitted `MSG` post
//!   once. An unknown session may only start a login (`HELLO`); anything else gets an
//!   Error datagram ("log in again"), which is also what a forged or expired session id
//!   gets.
//! - **Group commit.** The loop reads every datagram already waiting (up to
//!   [`BATCH`]), executes them in arrival order, makes the changes durable with a
//!   single [`Store::sync`], and only then sends the replies. A reply that says
//!   "posted" therefore means "on disk", yet fifty clients posting at once share one
//!   fsync instead of paying one each.
//! - **Liveness.** Every datagram of a session, heartbeats included, refreshes it; a
//!   session silent for `session_timeout` is dropped and its user may log in again
//!   (forum-spec.md, Login, 5).
//! - **Hostile input** never stops the loop: a datagram that is not ours is counted and
//!   reported on stderr (at most [`REPORTS_PER_SECOND`] lines a second), a request that
//!   makes no sense gets an Error datagram, a storage error becomes a refusal.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{self, Instant};

use super::command::{self, Command, Login, Reply, Status};
use super::reliable::{Admission, ReplyCache};
use super::store::{shown, PendingSync, Refusal, Store, StoreError};
use super::transfer::{self, Grant, GrantKind, Grants};
use super::wire::{self, Kind, Packet, Repr};
use super::ForumError;
use crate::net::{self, describe, NetError};
use crate::output::Reporter;

/// At most this many datagrams are executed between two group commits.
pub const BATCH: usize = 64;

/// Sessions that have not (yet) logged in are capped, so 10,000 forged `HELLO`s cannot
/// grow the table without bound; the oldest is forgotten first.
pub const MAX_PENDING_LOGINS: usize = 1024;

/// At most this many malformed-datagram reports a second reach stderr; the rest are
/// counted and summarised.
pub const REPORTS_PER_SECOND: u32 = 10;

/// Batches whose replies wait for their flush at most; then the loop waits too.
const OUTBOX_BATCHES: usize = 4;

/// How often idle sessions and unused tokens are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A session with no datagram for this long is logged out.
    pub session_timeout: Duration,
    /// A transfer token not used within this long expires.
    pub token_timeout: Duration,
    /// The largest upload accepted, in bytes.
    pub max_upload: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            session_timeout: Duration::from_secs(30),
            token_timeout: Duration::from_secs(60),
            max_upload: 1 << 30,
        }
    }
}

/// Binds the UDP socket and the TCP listener on the same port of `ip`.
///
/// With port 0 the kernel picks the UDP port and the TCP listener must get the same
/// number; should it be taken for TCP, another port is tried.
///
/// # Errors
/// [`NetError::Bind`] naming the address when either cannot be bound.
pub async fn bind(ip: IpAddr, port: u16) -> Result<(UdpSocket, TcpListener), NetError> {
    const ATTEMPTS: usize = 20;
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let udp = net::bind_udp(SocketAddr::new(ip, port)).await?;
        let local = udp.local_addr().map_err(|cause| NetError::Bind {
            addr: SocketAddr::new(ip, port),
            cause,
        })?;
        match net::bind_tcp(local).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if port == 0 => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or(NetError::Bind {
        addr: SocketAddr::new(ip, port),
        cause: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    }))
}

/// Runs the forum on already-bound sockets until `shutdown` resolves.
///
/// `log` receives the spec's server log lines (stdout in the binary); `diag` receives
/// diagnostics (the listening address, malformed datagrams, storage errors; stderr).
///
/// # Errors
/// [`ForumError::Io`] if the UDP socket itself fails (not a single datagram).
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    store: Store,
    options: ServerOptions,
    log: Reporter,
    diag: Reporter,
    shutdown: impl Future,
) -> Result<(), ForumError> {
    let store = Arc::new(Mutex::new(store));
    serve_shared(udp, tcp, store, options, log, diag, shutdown).await
}

/// [`serve`] with a store the caller keeps a handle to, to read its
/// [`Store::stats`] afterwards (`forum bench` reports its fsyncs).
///
/// # Errors
/// As [`serve`].
pub async fn serve_shared(
    udp: UdpSocket,
    tcp: TcpListener,
    store: Arc<Mutex<Store>>,
    options: ServerOptions,
    log: Reporter,
    diag: Reporter,
    shutdown: impl Future,
) -> Result<(), ForumError> {
    let grants: Grants = Arc::default();
    let transfers = tokio::spawn(transfer::serve_transfers(
        tcp,
        Arc::clone(&store),
        Arc::clone(&grants),
        options.max_upload,
        log.clone(),
        diag.clone(),
    ));
    log.result("Waiting for clients");
    let udp = Arc::new(udp);
    let (outbox, pending) = mpsc::channel(OUTBOX_BATCHES);
    let sender = tokio::spawn(send_replies(Arc::clone(&udp), pending, diag.clone()));
    let mut server = Server {
        udp,
        outbox,
        store,
        grants,
        options,
        sessions: HashMap::new(),
        online: HashMap::new(),
        log,
        diag,
        malformed: RateLimit::default(),
    };
    let result = tokio::select! {
        result = server.run() => result,
        _ = shutdown => Ok(()),
    };
    transfers.abort();
    sender.abort();
    result
}

/// The replies of one batch and the flushes they wait for.
struct Outbox {
    sync: PendingSync,
    datagrams: Vec<Outgoing>,
}

/// Flushes each batch's changes, then sends its replies, batch after batch in order.
///
/// Running apart from the command loop lets the loop execute batch N+1 while batch N
/// is being flushed (an fsync takes ~0.2 ms here, longer than executing fifty
/// commands); keeping the batches in order keeps the promise that a reply is sent
/// only once everything before it is on disk. Batches that queued up during a flush
/// are flushed together by the next one ([`PendingSync::run_group`]), so under load
/// the flushes do not fall behind the commands.
async fn send_replies(udp: Arc<UdpSocket>, mut pending: mpsc::Receiver<Outbox>, diag: Reporter) {
    while let Some(first) = pending.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match pending.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let syncs: Vec<PendingSync> = group
            .iter_mut()
            .map(|outbox| std::mem::take(&mut outbox.sync))
            .filter(|sync| !sync.is_empty())
            .collect();
        if !syncs.is_empty() {
            let flushed = tokio::task::spawn_blocking(move || PendingSync::run_group(syncs)).await;
            match flushed {
                Ok(Ok(())) => {}
                // The changes are in the files but may not be on disk: say so loudly.
                // The replies still go out; withholding them would only make clients
                // retry commands that were applied.
                Ok(Err(error)) => diag.info(format!("cannot sync the forum to disk: {error}")),
                Err(join) => diag.info(format!("cannot sync the forum to disk: {join}")),
            }
        }
        for outbox in group {
            for (peer, datagram) in outbox.datagrams {
                if let Err(error) = udp.send_to(&datagram, peer).await {
                    diag.detail(format!("cannot send to {peer}: {}", describe(&error)));
                }
            }
        }
    }
}

/// At most this many queued batches share one flush: a bound on the replies held
/// back at once, far above what a queue reaches in practice.
const MAX_GROUP: usize = 64;

/// One client's session.
struct Session {
    /// The logged-in user, once the login succeeded.
    user: Option<String>,
    /// The user a `HELLO` named, waiting for its password.
    pending: Option<String>,
    /// Whether the session logged out (kept only to answer a retransmitted `XIT`).
    closed: bool,
    /// The last reply, for duplicates.
    cache: ReplyCache,
    /// When the last datagram of this session arrived.
    last_seen: Instant,
}

/// The command loop's state.
struct Server {
    udp: Arc<UdpSocket>,
    outbox: mpsc::Sender<Outbox>,
    store: Arc<Mutex<Store>>,
    grants: Grants,
    options: ServerOptions,
    sessions: HashMap<u64, Session>,
    /// Logged-in users and their session ids: one live login per user.
    online: HashMap<String, u64>,
    log: Reporter,
    diag: Reporter,
    malformed: RateLimit,
}

/// A datagram to send.
type Outgoing = (SocketAddr, Vec<u8>);

impl Server {
    async fn run(&mut self) -> Result<(), ForumError> {
        let mut buffer = vec![0u8; net::MAX_UDP_PAYLOAD + 1];
        let mut sweep = time::interval(SWEEP_INTERVAL);
        let mut batch: Vec<(SocketAddr, Vec<u8>)> = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                received = self.udp.recv_from(&mut buffer) => match received {
                    Ok((len, peer)) => batch.push((peer, buffer[..len].to_vec())),
                    Err(error) => {
                        // An ICMP error for an earlier reply (the client went away)
                        // surfaces here on some systems: a property of that client,
                        // not of our socket.
                        self.diag.detail(format!("receive error: {}", describe(&error)));
                        continue;
                    }
                },
                _ = sweep.tick() => {
                    self.sweep();
                    continue;
                }
            }
            while batch.len() < BATCH {
                match self.udp.try_recv_from(&mut buffer) {
                    Ok((len, peer)) => batch.push((peer, buffer[..len].to_vec())),
                    Err(_) => break,
                }
            }
            let outbox = self.handle_batch(&batch);
            batch.clear();
            if self.outbox.send(outbox).await.is_err() {
                return Err(ForumError::Io {
                    what: "the reply sender".into(),
                    cause: std::io::Error::other("it stopped"),
                });
            }
        }
    }

    /// Executes a batch; returns its replies and the flushes they must wait for.
    fn handle_batch(&mut self, batch: &[(SocketAddr, Vec<u8>)]) -> Outbox {
        let store = Arc::clone(&self.store);
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut outgoing = Vec::new();
        for (peer, datagram) in batch {
            self.handle_datagram(&mut store, now, *peer, datagram, &mut outgoing);
        }
        Outbox {
            sync: store.take_pending_sync(),
            datagrams: outgoing,
        }
    }

    fn handle_datagram(
        &mut self,
        store: &mut Store,
        now: Instant,
        peer: SocketAddr,
        datagram: &[u8],
        outgoing: &mut Vec<Outgoing>,
    ) {
        let packet = match Packet::new_checked(datagram) {
            Ok(packet) => packet,
            Err(error) => return self.report_malformed(peer, &error.to_string()),
        };
        let repr = match Repr::parse(&packet) {
            Ok(repr) => repr,
            Err(error) => return self.report_malformed(peer, &error.to_string()),
        };
        match repr.kind {
            Kind::Request => self.on_request(store, now, peer, &repr, outgoing),
            Kind::Resend => self.on_resend(now, peer, &repr, outgoing),
            Kind::Heartbeat => {
                if let Some(session) = self.sessions.get_mut(&repr.session) {
                    session.last_seen = now;
                }
            }
            other => self.report_malformed(peer, &format!("unexpected {other:?} datagram")),
        }
    }

    fn on_resend(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        repr: &Repr<'_>,
        outgoing: &mut Vec<Outgoing>,
    ) {
        let Some(session) = self.sessions.get_mut(&repr.session) else {
            return self.report_malformed(peer, "resend for an unknown session");
        };
        session.last_seen = now;
        let Ok(missing) = wire::decode_missing(repr.body) else {
            return self.report_malformed(peer, "resend with a malformed fragment list");
        };
        for fragment in session.cache.fragments(repr.request, &missing) {
            outgoing.push((peer, fragment.to_vec()));
        }
    }

    fn on_request(
        &mut self,
        store: &mut Store,
        now: Instant,
        peer: SocketAddr,
        repr: &Repr<'_>,
        outgoing: &mut Vec<Outgoing>,
    ) {
        let body = std::str::from_utf8(repr.body).ok();
        if !self.sessions.contains_key(&repr.session) {
            // Only a login may open a session; anything else is a forged, expired or
            // logged-out session, and the client should start again.
            let is_hello = matches!(
                body.and_then(command::parse_login),
                Some(Login::Hello { .. })
            );
            if !is_hello {
                let text = "unknown or expired session: please log in again";
                outgoing.push((peer, error_datagram(repr, text)));
                return;
            }
            self.open_session(repr.session, now);
        }
        let Some(session) = self.sessions.get_mut(&repr.session) else {
            return;
        };
        session.last_seen = now;
        match session.cache.admit(repr.request) {
            Admission::Stale => return,
            Admission::Duplicate => {
                if let Some(datagrams) = session.cache.replay(repr.request) {
                    outgoing.extend(datagrams.iter().map(|d| (peer, d.clone())));
                }
                return;
            }
            Admission::New => {}
        }
        let datagrams = match body {
            None => vec![error_datagram(repr, "the request is not valid UTF-8 text")],
            Some(body) => match self.execute(store, repr.session, body) {
                Ok(reply) => {
                    wire::split_reply(repr.session, repr.request, reply.encode().as_bytes())
                }
                Err(text) => vec![error_datagram(repr, &text)],
            },
        };
        outgoing.extend(datagrams.iter().map(|d| (peer, d.clone())));
        if let Some(session) = self.sessions.get_mut(&repr.session) {
            session.cache.store(repr.request, datagrams);
        }
    }

    fn open_session(&mut self, id: u64, now: Instant) {
        let pending = self.sessions.values().filter(|s| s.user.is_none()).count();
        if pending >= MAX_PENDING_LOGINS {
            let oldest = self
                .sessions
                .iter()
                .filter(|(_, s)| s.user.is_none())
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        self.sessions.insert(
            id,
            Session {
                user: None,
                pending: None,
                closed: false,
                cache: ReplyCache::new(),
                last_seen: now,
            },
        );
    }

    /// Executes one request of session `id`. `Err` is a protocol error (sent as an
    /// Error datagram); refusals the user should read are `Ok` replies with status NO.
    fn execute(&mut self, store: &mut Store, id: u64, body: &str) -> Result<Reply, String> {
        let (user, closed) = match self.sessions.get(&id) {
            Some(session) => (session.user.clone(), session.closed),
            None => return Err("unknown session".into()),
        };
        if closed {
            return Err("this session has logged out: please log in again".into());
        }
        if let Some(login) = command::parse_login(body) {
            return Ok(match user {
                Some(user) => Reply::no(format!("Already logged in as {user}")),
                None => self.login(store, id, login),
            });
        }
        let Some(user) = user else {
            return Err("log in first".into());
        };
        let command = match command::parse(body) {
            Ok(command) => command,
            Err(error) => {
                self.log.result(format!("{user} issued an invalid command"));
                return Ok(Reply::no(error.to_string()));
            }
        };
        self.log
            .result(format!("{user} issued {} command", command.word()));
        Ok(self.run_command(store, id, &user, command))
    }

    fn login(&mut self, store: &mut Store, id: u64, login: Login) -> Reply {
        match login {
            Login::Hello { user } => {
                self.log.result("Client authenticating");
                if !command::is_credential(&user) {
                    return Reply::no("Invalid username: use printable characters without spaces");
                }
                if self.is_online(&user, id) {
                    let text = format!("{user} has already logged in");
                    self.log.result(&text);
                    return Reply::no(text);
                }
                let known = store.password(&user).is_some();
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.pending = Some(user);
                }
                if known {
                    Reply {
                        status: Status::Password,
                        lines: vec![],
                    }
                } else {
                    self.log.result("New user");
                    Reply {
                        status: Status::NewUser,
                        lines: vec![],
                    }
                }
            }
            Login::Login { user, password } => {
                if !self.is_pending(id, &user) {
                    return Reply::no("Say HELLO first");
                }
                if store.password(&user) != Some(password.as_str()) {
                    self.log.result("Incorrect password");
                    return Reply::no("Invalid password");
                }
                if self.is_online(&user, id) {
                    let text = format!("{user} has already logged in");
                    self.log.result(&text);
                    return Reply::no(text);
                }
                self.log.result(format!("{user} successful login"));
                self.bind_user(id, user);
                Reply::ok("Welcome to the forum")
            }
            Login::Register { user, password } => {
                if !self.is_pending(id, &user) {
                    return Reply::no("Say HELLO first");
                }
                if !command::is_credential(&password) {
                    return Reply::no("Invalid password: use printable characters without spaces");
                }
                if store.password(&user).is_some() {
                    // Someone registered this name between our HELLO and now.
                    return Reply::no(format!("{user} already exists: log in again"));
                }
                if let Err(error) = store.add_user(&user, &password) {
                    self.diag.info(format!("cannot add user {user}: {error}"));
                    return Reply::no(refusal_text(&error, "", ""));
                }
                self.log.result(format!("{user} successfully logged in"));
                self.bind_user(id, user);
                Reply::ok("Welcome to the forum")
            }
        }
    }

    fn is_pending(&self, id: u64, user: &str) -> bool {
        self.sessions
            .get(&id)
            .and_then(|s| s.pending.as_deref())
            .is_some_and(|pending| pending == user)
    }

    /// Whether `user` is logged in on a live session other than `id`.
    fn is_online(&self, user: &str, id: u64) -> bool {
        self.online.get(user).is_some_and(|&other| other != id)
    }

    fn bind_user(&mut self, id: u64, user: String) {
        self.online.insert(user.clone(), id);
        if let Some(session) = self.sessions.get_mut(&id) {
            session.pending = None;
            session.user = Some(user);
        }
    }

    fn run_command(&mut self, store: &mut Store, id: u64, user: &str, command: Command) -> Reply {
        match command {
            Command::Create { title } => match store.create_thread(&title, user) {
                Ok(()) => self.ok(format!("Thread {title} created")),
                Err(error) => self.refuse(&error, &title, ""),
            },
            Command::Post { title, text } => match store.post(&title, user, &text) {
                Ok(_) => self.ok(format!("Message posted to {title} thread")),
                Err(error) => self.refuse(&error, &title, ""),
            },
            Command::Delete { title, number } => match store.delete(&title, number, user) {
                Ok(()) => {
                    self.log.result("Message has been deleted");
                    Reply::ok("The message has been deleted")
                }
                Err(error) => self.refuse_message(&error, &title, number, "deleted"),
            },
            Command::Edit {
                title,
                number,
                text,
            } => match store.edit(&title, number, user, &text) {
                Ok(()) => {
                    self.log.result("Message has been edited");
                    Reply::ok("The message has been edited")
                }
                Err(error) => self.refuse_message(&error, &title, number, "edited"),
            },
            Command::List => {
                let titles = store.list();
                if titles.is_empty() {
                    Reply::ok("No threads to list")
                } else {
                    let mut lines = vec!["The list of active threads:".to_string()];
                    lines.extend(titles);
                    Reply {
                        status: Status::Ok,
                        lines,
                    }
                }
            }
            Command::Read { title } => match store.read(&title) {
                Ok(lines) => {
                    self.log.result(format!("Thread {title} read"));
                    if lines.is_empty() {
                        Reply::ok(format!("Thread {title} is empty"))
                    } else {
                        Reply {
                            status: Status::Ok,
                            lines,
                        }
                    }
                }
                Err(error) => self.refuse(&error, &title, ""),
            },
            Command::Upload { title, file } => match store.check_upload(&title, &file) {
                Ok(()) => {
                    let token = self.grant(user, GrantKind::Upload { title, file });
                    Reply {
                        status: Status::Upload { token },
                        lines: vec![],
                    }
                }
                Err(error) => self.refuse(&error, &title, &file),
            },
            Command::Download { title, file } => match store.download_path(&title, &file) {
                Ok(path) => self.grant_download(user, title, file, path),
                Err(error) => self.refuse(&error, &title, &file),
            },
            Command::Remove { title } => match store.remove(&title, user) {
                Ok(_) => self.ok(format!("Thread {title} removed")),
                Err(error) => self.refuse(&error, &title, ""),
            },
            Command::Exit => {
                self.log.result(format!("{user} exited"));
                self.online.remove(user);
                if let Some(session) = self.sessions.get_mut(&id) {
                    session.user = None;
                    session.closed = true;
                }
                Reply::with(Status::Bye, "Goodbye")
            }
        }
    }

    fn grant_download(&mut self, user: &str, title: String, file: String, path: PathBuf) -> Reply {
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                self.diag.info(format!(
                    "cannot read {}: {}",
                    path.display(),
                    describe(&error)
                ));
                return Reply::no(format!("File does not exist in Thread {title}"));
            }
        };
        let token = self.grant(user, GrantKind::Download { title, file, path });
        Reply {
            status: Status::Download { token, size },
            lines: vec![],
        }
    }

    fn grant(&mut self, user: &str, kind: GrantKind) -> String {
        let token = transfer::new_token();
        let grant = Grant {
            user: user.to_string(),
            kind,
            expires: Instant::now() + self.options.token_timeout,
        };
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token.clone(), grant);
        token
    }

    /// Logs and returns a success line (the log line is the same text).
    fn ok(&self, line: String) -> Reply {
        self.log.result(&line);
        Reply::ok(line)
    }

    /// Logs and returns a refusal for a command on thread `title` (and file `file`).
    fn refuse(&self, error: &StoreError, title: &str, file: &str) -> Reply {
        if let StoreError::Io { .. } | StoreError::Corrupt { .. } = error {
            self.diag.info(format!("storage error: {error}"));
        }
        let text = refusal_text(error, title, file);
        self.log.result(&text);
        Reply::no(text)
    }

    /// Like [`Server::refuse`], for DLT and EDT, whose refusals name the message.
    fn refuse_message(&self, error: &StoreError, title: &str, number: usize, verb: &str) -> Reply {
        let text = match error {
            StoreError::Refused(Refusal::NotAuthor) => {
                format!("The message belongs to another user and cannot be {verb}")
            }
            StoreError::Refused(Refusal::NoMessage { .. }) => {
                format!("Message {number} does not exist in thread {title}")
            }
            other => return self.refuse(other, title, ""),
        };
        self.log.result(&text);
        Reply::no(text)
    }

    /// Forgets idle sessions and unused tokens.
    fn sweep(&mut self) {
        let now = Instant::now();
        let timeout = self.options.session_timeout;
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_seen) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(session) = self.sessions.remove(&id) {
                if let Some(user) = session.user {
                    self.online.remove(&user);
                    self.log.result(format!("{user} timed out"));
                }
            }
        }
        self.grants
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, grant| grant.expires > now);
        if let Some(summary) = self.malformed.summary(now) {
            self.diag.info(summary);
        }
    }

    fn report_malformed(&mut self, peer: SocketAddr, reason: &str) {
        if self.malformed.allow(Instant::now()) {
            self.diag.info(format!(
                "dropped a malformed datagram from {peer}: {reason}"
            ));
        }
    }
}

/// An Error datagram answering `repr` with `text`.
fn error_datagram(repr: &Repr<'_>, text: &str) -> Vec<u8> {
    wire::error_datagram(repr.session, repr.request, text)
}

/// The client-facing sentence for a store refusal (forum-spec.md's table).
pub fn refusal_text(error: &StoreError, title: &str, file: &str) -> String {
    let refusal = match error {
        StoreError::Refused(refusal) => refusal,
        _ => return "The server could not complete the command (storage error)".into(),
    };
    match refusal {
        Refusal::BadName { name, problem } => format!("Invalid name {}: {problem}", shown(name)),
        Refusal::ThreadExists => format!("Thread {title} exists"),
        Refusal::NameTaken => {
            format!(
                "The name {title}{} is already used by another file on the server",
                if file.is_empty() {
                    String::new()
                } else {
                    format!("-{file}")
                }
            )
        }
        Refusal::NoThread => format!("Thread {title} does not exist"),
        Refusal::NoMessage { number } => {
            format!("Message {number} does not exist in thread {title}")
        }
        Refusal::NotAuthor => "The message belongs to another user".into(),
        Refusal::NotCreator => {
            "The thread was created by another user and cannot be removed".into()
        }
        Refusal::FileExists => format!("{file} already exists in thread {title}"),
        Refusal::NoFile => format!("File does not exist in Thread {title}"),
        Refusal::BadText => {
            "Invalid message: it must be 1 to 1024 bytes of text without control characters".into()
        }
        Refusal::BadUser => "Invalid username or password".into(),
        Refusal::UserExists => "That user already exists".into(),
    }
}

/// Counts malformed datagrams and lets only a few reports a second through.
#[derive(Default)]
struct RateLimit {
    window_start: Option<Instant>,
    reported: u32,
    suppressed: u64,
}

impl RateLimit {
    fn allow(&mut self, now: Instant) -> bool {
        let fresh = self
            .window_start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1));
        if fresh {
            self.window_start = Some(now);
            self.reported = 0;
        }
        if self.reported < REPORTS_PER_SECOND {
            self.reported += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// A line about the reports held back, once their second is over.
    fn summary(&mut self, now: Instant) -> Option<String> {
        let over = self
            .window_start
            .is_some_and(|start| now.duration_since(start) >= Duration::from_secs(1));
        if over && self.suppressed > 0 {
            let line = format!(
                "... and {} more malformed datagrams dropped",
                self.suppressed
            );
            self.suppressed = 0;
            Some(line)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forum::store::NameProblem;
    use crate::forum::wire::Repr;

    /// A server on 127.0.0.1:0 over a fresh directory, and a raw UDP socket to poke it.
    async fn start() -> (
        SocketAddr,
        tempfile::TempDir,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open the store");
        let (udp, tcp) = bind([127, 0, 0, 1].into(), 0).await.expect("bind");
        let addr = udp.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            udp,
            tcp,
            store,
            ServerOptions::default(),
            Reporter::silent(),
            Reporter::silent(),
            async {
                let _ = stopped.await;
            },
        ));
        (addr, dir, stop)
    }

    fn request(session: u64, request: u32, body: &str) -> Vec<u8> {
        Repr {
            kind: Kind::Request,
            session,
            request,
            frag: 0,
            count: 1,
            body: body.as_bytes(),
        }
        .to_vec()
    }

    /// Sends `datagram` and returns the body of the single datagram that answers it.
    async fn exchange(socket: &UdpSocket, datagram: &[u8]) -> (Kind, String) {
        socket.send(datagram).await.expect("send");
        let mut buffer = vec![0u8; 2048];
        let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
            .await
            .expect("an answer within 5 s")
            .expect("receive");
        let packet = Packet::new_checked(&buffer[..len]).expect("a valid datagram");
        let repr = Repr::parse(&packet).expect("parse");
        (repr.kind, String::from_utf8_lossy(repr.body).into_owned())
    }

    async fn log_in(socket: &UdpSocket, session: u64) {
        let (_, hello) = exchange(socket, &request(session, 1, "HELLO yoda")).await;
        assert_eq!(hello, "NEW-USER");
        let (_, welcome) = exchange(socket, &request(session, 2, "REGISTER yoda wise")).await;
        assert_eq!(welcome, "OK\nWelcome to the forum");
    }

    #[tokio::test]
    async fn a_retransmitted_request_is_answered_from_the_cache_and_applied_once() {
        let (addr, dir, _stop) = start().await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(addr).await.expect("connect");
        log_in(&socket, 7).await;
        let (_, created) = exchange(&socket, &request(7, 3, "CRT 3331")).await;
        assert_eq!(created, "OK\nThread 3331 created");
        // The same CRT again, as a retransmission after a lost reply: the cached
        // answer, not "exists".
        let (_, again) = exchange(&socket, &request(7, 3, "CRT 3331")).await;
        assert_eq!(again, "OK\nThread 3331 created");
        for _ in 0..3 {
            let (_, posted) = exchange(&socket, &request(7, 4, "MSG 3331 hello")).await;
            assert_eq!(posted, "OK\nMessage posted to 3331 thread");
        }
        let thread = std::fs::read_to_string(dir.path().join("3331")).expect("thread file");
        assert_eq!(thread, "yoda\n1 yoda: hello\n");
        // An old request overtaken by a newer one is dropped: no answer at all.
        socket.send(&request(7, 3, "CRT 3331")).await.expect("send");
        let (_, listed) = exchange(&socket, &request(7, 5, "LST")).await;
        assert_eq!(listed, "OK\nThe list of active threads:\n3331");
    }

    #[tokio::test]
    async fn unknown_sessions_and_early_commands_get_error_datagrams() {
        let (addr, _dir, _stop) = start().await;
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.connect(addr).await.expect("connect");
        let (kind, text) = exchange(&socket, &request(99, 1, "LST")).await;
        assert_eq!(kind, Kind::Error);
        assert!(text.contains("log in again"), "{text}");
        // A session that said HELLO but did not log in may not run commands.
        let (_, hello) = exchange(&socket, &request(5, 1, "HELLO r2d2")).await;
        assert_eq!(hello, "NEW-USER");
        let (kind, text) = exchange(&socket, &request(5, 2, "CRT x")).await;
        assert_eq!((kind, text.as_str()), (Kind::Error, "log in first"));
        // A request that is not UTF-8 is refused, and the server keeps serving.
        let mut bad = request(5, 3, "CRT x");
        let last = bad.len() - 1;
        bad[last] = 0xff;
        let (kind, _) = exchange(&socket, &bad).await;
        assert_eq!(kind, Kind::Error);
        log_in(&socket, 8).await;
    }

    #[tokio::test]
    async fn one_live_login_per_user() {
        let (addr, _dir, _stop) = start().await;
        let first = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        first.connect(addr).await.expect("connect");
        log_in(&first, 1).await;
        let second = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        second.connect(addr).await.expect("connect");
        let (_, refused) = exchange(&second, &request(2, 1, "HELLO yoda")).await;
        assert_eq!(refused, "NO\nyoda has already logged in");
        let (_, bye) = exchange(&first, &request(1, 3, "XIT")).await;
        assert_eq!(bye, "BYE\nGoodbye");
        let (_, asked) = exchange(&second, &request(2, 2, "HELLO yoda")).await;
        assert_eq!(asked, "PASSWORD");
        let (_, wrong) = exchange(&second, &request(2, 3, "LOGIN yoda nope")).await;
        assert_eq!(wrong, "NO\nInvalid password");
        let (_, welcome) = exchange(&second, &request(2, 4, "LOGIN yoda wise")).await;
        assert_eq!(welcome, "OK\nWelcome to the forum");
    }

    #[test]
    fn the_rate_limit_lets_ten_reports_a_second_through_and_summarises_the_rest() {
        let mut limit = RateLimit::default();
        let start = Instant::now();
        let allowed = (0..25).filter(|_| limit.allow(start)).count();
        assert_eq!(allowed, REPORTS_PER_SECOND as usize);
        assert_eq!(limit.summary(start), None);
        let later = start + Duration::from_secs(1);
        assert_eq!(
            limit.summary(later).as_deref(),
            Some("... and 15 more malformed datagrams dropped")
        );
        assert!(limit.allow(later));
    }

    fn bad_name(name: &str, problem: NameProblem) -> StoreError {
        StoreError::Refused(Refusal::BadName {
            name: name.to_string(),
            problem,
        })
    }

    #[test]
    fn refused_names_are_repeated_escaped_and_cut() {
        // A name is whatever a client sent: an escape sequence must not reach the
        // client's terminal or the server log raw, nor a 1 KB name fill the screen.
        let escape = bad_name("a\u{1b}[2J", NameProblem::BadChar { ch: '\u{1b}' });
        assert_eq!(
            refusal_text(&escape, "", ""),
            "Invalid name a\\u{1b}[2J: contains `\\u{1b}`: names may only hold letters, \
             digits, `.`, `_` and `-`"
        );
        let long = bad_name(&"n".repeat(1024), NameProblem::TooLong { len: 1024 });
        assert_eq!(
            refusal_text(&long, "", ""),
            format!(
                "Invalid name {}...: is 1024 characters long: a name may have at most 64",
                "n".repeat(40)
            )
        );
        let plain = bad_name("../x", NameProblem::BadChar { ch: '/' });
        assert!(refusal_text(&plain, "", "").starts_with("Invalid name ../x: contains `/`"));
    }
}
