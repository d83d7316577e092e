//! The settings of `socklab proxy` (lab 2), from command-line flags and from a YAML
//! file (`--config`), through one validation path: every flag and every YAML value is
//! handed, as text, to [`ProxyConfig::apply`] (or its per-direction core), then the
//! whole is checked by [`ProxyConfig::validate`].
//!
//! # Value syntax
//!
//! | what         | examples                    | notes                                    |
//! |--------------|-----------------------------|------------------------------------------|
//! | probability  | `20%`, `0.2`, `0.5%`        | 0 to 100%; a bare number is a fraction   |
//! | duration     | `250ms`, `10s`, `1.5s`      | [`crate::units::parse_duration`]; a bare number is seconds; never negative |
//! | rate         | `1mbit`, `500kbit`, `64000` | bits per second as tc spells them: `bit`, `kbit`, `mbit`, `gbit` (powers of 1000, any case, optional `/s`); a bare number is bits/s. tc's `bps` means *bytes* per second, so it is refused |
//! | count        | `3`, `1024`                 | a whole number                           |
//!
//! Per-direction settings take an optional prefix `c2s:` (client to server), `s2c:`
//! (server to client) or `both:` (the default): `--loss s2c:20%`,
//! `--loss-model c2s:gemodel:5%,50%`, `--drop-match c2s:^PING`. A prefix on a setting of
//! the whole proxy (`--seed c2s:1`) is an error.
//!
//! - `loss P`; `loss-model gemodel:p,r[,1-h[,1-k]]` (1-h defaults to 100%, 1-k to 0%) or
//!   `loss-model state:p13[,p31[,p32[,p23[,p14]]]]` (netem's defaults: p31 = 1 - p13,
//!   p32 = 0, p23 = 100%, p14 = 0). `loss` and `loss-model` exclude each other in one
//!   direction. netem's `gemodel p` alone (r = 1 - p) is plain Bernoulli loss, so here
//!   `r` is required: use `loss` for that.
//! - `delay D`, `jitter J`, `distribution uniform|normal|pareto` (default uniform).
//! - `duplicate P`, `corrupt P`.
//! - `reorder P`, `gap N`, `hold N` (default 1), `hold-timeout D` (default 200ms);
//!   `gap`, `hold` and `hold-timeout` need `reorder` above 0%.
//! - `rate R`, `queue N` (default 1000 datagrams; needs `rate`).
//! - `drop-nth N`, `drop-every N[+OFFSET]`, `drop-match REGEX` (each may be repeated;
//!   the regex is taken exactly as given, spaces included, and matched against the raw
//!   payload bytes with Unicode off: `.` is any byte but newline, `\xff` the byte 0xff).
//! - Whole proxy: `listen ADDR:PORT`, `upstream HOST:PORT`, `seed N`, `tcp-delay D`,
//!   `tcp-rate R`, `idle-timeout D` (default 60s), `max-mappings N` (default 1024).
//!
//! # The YAML file
//!
//! Every key is optional and spelled exactly like its flag (kebab-case:
//! `loss-model`, `hold-timeout`, `idle-timeout`); values are strings or numbers, read
//! with the syntax above. Per-direction keys go in a `both:`, `c2s:` or `s2c:` section
//! (no prefixes inside them); `both:` is applied first, so a direction's own section
//! adds to it and overrides it. A rule key takes one value or a list. The same file is
//! at `labs/proxy-example.yaml`:
//!
//! ```yaml
//! listen: 127.0.0.1:9000
//! upstream: 127.0.0.1:9001
//! seed: 42
//! idle-timeout: 60s
//! max-mappings: 1024
//! both:
//!   delay: 40ms
//!   jitter: 10ms
//!   distribution: normal
//! c2s:
//!   loss: 5%
//!   drop-nth: [3, 10]
//! s2c:
//!   loss-model: gemodel:5%,50%
//!   reorder: 10%
//!   rate: 1mbit
//!   queue: 100
//! tcp:
//!   delay: 20ms
//!   rate: 10mbit
//! ```
//!
//! An unknown key, a value out of range or a conflict is an error naming the file, the
//! line and the key. Flags given with `--config` are applied after the file, so they
//! override it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use thiserror::Error;

use super::model::{
    Delay, Direction, Distribution, Impairments, LossModel, Model, Probability, Rate, Reorder,
    Rule, DEFAULT_HOLD, DEFAULT_HOLD_TIMEOUT,
};
use crate::units::parse_duration;

/// How long a UDP client's mapping lives without traffic, unless `idle-timeout` says.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How many UDP clients the proxy tracks at once, unless `max-mappings` says.
pub const DEFAULT_MAX_MAPPINGS: usize = 1024;

/// The settings that may differ per direction, as flags spell them.
pub const DIRECTION_KEYS: [&str; 16] = [
    "loss",
    "loss-model",
    "delay",
    "jitter",
    "distribution",
    "duplicate",
    "corrupt",
    "reorder",
    "gap",
    "hold",
    "hold-timeout",
    "rate",
    "queue",
    "drop-nth",
    "drop-every",
    "drop-match",
];

/// The settings of the whole proxy, as flags spell them.
pub const PROXY_KEYS: [&str; 7] = [
    "listen",
    "upstream",
    "seed",
    "tcp-delay",
    "tcp-rate",
    "idle-timeout",
    "max-mappings",
];

/// Which direction(s) a per-direction setting applies to, from an optional `c2s:` /
/// `s2c:` / `both:` prefix of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `c2s:`: client to server only.
    ClientToServer,
    /// `s2c:`: server to client only.
    ServerToClient,
    /// No prefix (or `both:`).
    Both,
}

impl Which {
    /// Splits the direction prefix off `value`: `s2c:20%` gives `(ServerToClient,
    /// "20%")`, `20%` gives `(Both, "20%")`. The rest is not trimmed: a regex may end
    /// in a space on purpose.
    pub fn split(value: &str) -> (Which, &str) {
        for (prefix, which) in [
            ("c2s:", Which::ClientToServer),
            ("s2c:", Which::ServerToClient),
            ("both:", Which::Both),
        ] {
            if let Some(rest) = value.trim_start().strip_prefix(prefix) {
                return (which, rest);
            }
        }
        (Which::Both, value)
    }

    /// The directions it stands for.
    pub fn directions(self) -> &'static [Direction] {
        match self {
            Which::ClientToServer => &[Direction::ClientToServer],
            Which::ServerToClient => &[Direction::ServerToClient],
            Which::Both => &Direction::BOTH,
        }
    }
}

/// An invalid setting. Each names the key (and, from a file, the path and line); the
/// message is one line.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A key that is neither a flag nor a YAML field.
    #[error("unknown setting '{key}'")]
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// A value that does not parse or is out of range.
    #[error("{key}: {message}")]
    InvalidValue {
        /// The setting.
        key: String,
        /// What is wrong, quoting the value.
        message: String,
    },
    /// A direction prefix on a setting of the whole proxy.
    #[error("{key}: '{value}' has a direction prefix, but {key} applies to the whole proxy")]
    NotPerDirection {
        /// The setting.
        key: String,
        /// The value as given.
        value: String,
    },
    /// `loss` and `loss-model` for the same direction.
    #[error(
        "{key}: {direction} already has {other}; use loss (independent losses) or \
         loss-model (bursts), not both"
    )]
    LossConflict {
        /// The setting applied second.
        key: String,
        /// The direction with both.
        direction: Direction,
        /// The setting applied first.
        other: &'static str,
    },
    /// A setting that means nothing without another one.
    #[error("{key} is set for {direction}, but {needs} is not ({hint})")]
    Needs {
        /// The setting given.
        key: &'static str,
        /// The direction it was given for.
        direction: Direction,
        /// The setting it needs.
        needs: &'static str,
        /// An example that works.
        hint: &'static str,
    },
    /// A setting in a YAML file was invalid.
    #[error("{}:{line}: {error}", .path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The line of the offending key (1-based).
        line: usize,
        /// What was wrong with it.
        error: Box<ConfigError>,
    },
    /// A YAML file that does not fit the schema: bad syntax, an unknown key, a list
    /// where a value belongs.
    #[error("{}:{line}: {message}", .path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Where the YAML parser stopped (1-based).
        line: usize,
        /// The parser's message.
        message: String,
    },
}

/// Everything `socklab proxy` is told: addresses, seed, the impairments of each UDP
/// direction, TCP shaping and the client-table limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// `ADDR:PORT` to listen on (UDP and TCP); the YAML may set it, the flag overrides.
    pub listen: Option<String>,
    /// `HOST:PORT` to forward to.
    pub upstream: Option<String>,
    /// The seed of both directions' random streams; `None` means pick one at random.
    pub seed: Option<u64>,
    /// Impairments of datagrams from clients to the upstream.
    pub c2s: Impairments,
    /// Impairments of datagrams from the upstream back to clients.
    pub s2c: Impairments,
    /// Extra delay of relayed TCP data, each way.
    pub tcp_delay: Option<Duration>,
    /// Pace of relayed TCP data, each way, in bits per second.
    pub tcp_rate: Option<u64>,
    /// A UDP client's upstream socket is closed after this long without traffic.
    pub idle_timeout: Duration,
    /// At most this many UDP clients at once (the oldest idle one makes room).
    pub max_mappings: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: None,
            upstream: None,
            seed: None,
            c2s: Impairments::default(),
            s2c: Impairments::default(),
            tcp_delay: None,
            tcp_rate: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_mappings: DEFAULT_MAX_MAPPINGS,
        }
    }
}

impl ProxyConfig {
    /// Applies one setting as the CLI and YAML spell it: `key` is the long flag name
    /// without dashes (e.g. "loss", "loss-model", "delay", "jitter", "distribution",
    /// "duplicate", "corrupt", "reorder", "gap", "hold", "hold-timeout", "rate",
    /// "queue", "drop-nth", "drop-every", "drop-match", "tcp-delay", "tcp-rate",
    /// "idle-timeout", "max-mappings", "seed", "listen", "upstream"), `value` as typed,
    /// with an optional "c2s:"/"s2c:"/"both:" prefix for per-direction settings (e.g.
    /// "s2c:20%", "gemodel:5%,50%", "c2s:3", "c2s:^PING").
    ///
    /// A setting replaces the earlier value of the same key and direction; rules
    /// (`drop-*`) add up. Call [`ProxyConfig::validate`] after the last one (or use
    /// [`ProxyConfig::from_settings`]).
    ///
    /// # Errors
    /// [`ConfigError::UnknownKey`], [`ConfigError::InvalidValue`],
    /// [`ConfigError::NotPerDirection`] or [`ConfigError::LossConflict`].
    pub fn apply(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        if DIRECTION_KEYS.contains(&key) {
            let (which, rest) = Which::split(value);
            self.apply_to(which, key, rest)
        } else if PROXY_KEYS.contains(&key) {
            let (which, _) = Which::split(value);
            let trimmed = value.trim();
            if which != Which::Both || trimmed.starts_with("both:") {
                return Err(ConfigError::NotPerDirection {
                    key: key.to_string(),
                    value: trimmed.to_string(),
                });
            }
            self.apply_proxy_wide(key, trimmed)
        } else {
            Err(ConfigError::UnknownKey {
                key: key.to_string(),
            })
        }
    }

    /// Applies a per-direction setting to `which` direction(s); `value` has no prefix.
    /// This is what [`ProxyConfig::apply`] does after splitting the prefix off, and what
    /// a YAML section (`c2s:`, ...) does for each of its keys.
    ///
    /// # Errors
    /// As [`ProxyConfig::apply`].
    pub fn apply_to(&mut self, which: Which, key: &str, value: &str) -> Result<(), ConfigError> {
        // Parsed once, before any direction changes, so an error leaves both untouched.
        // Each parser trims what it reads, except the regex, which is taken as given.
        let setting = DirectionSetting::parse(key, value)?;
        for &direction in which.directions() {
            setting.set(self.impairments_mut(direction), key, direction)?;
        }
        Ok(())
    }

    /// Applies `settings` in order (each a key and a value as for
    /// [`ProxyConfig::apply`]) to the defaults, then validates: the CLI's whole path.
    ///
    /// # Errors
    /// The first invalid setting, or what [`ProxyConfig::validate`] finds.
    pub fn from_settings<'a>(
        settings: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ProxyConfig, ConfigError> {
        let mut config = ProxyConfig::default();
        for (key, value) in settings {
            config.apply(key, value)?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what single settings cannot: `gap`, `hold` and `hold-timeout` without
    /// `reorder` above 0%, `queue` without `rate`.
    ///
    /// # Errors
    /// [`ConfigError::Needs`] naming the setting and the direction.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for direction in Direction::BOTH {
            let impairments = self.impairments(direction);
            if let Some(reorder) = &impairments.reorder {
                let given = if reorder.gap.is_some() {
                    Some("gap")
                } else if reorder.hold != DEFAULT_HOLD {
                    Some("hold")
                } else if reorder.hold_timeout != DEFAULT_HOLD_TIMEOUT {
                    Some("hold-timeout")
                } else {
                    None
                };
                if let (Some(key), true) = (given, reorder.probability == 0.0) {
                    return Err(ConfigError::Needs {
                        key,
                        direction,
                        needs: "reorder above 0%",
                        hint: "e.g. --reorder 100% --gap 5 --hold 2 holds every 5th datagram \
                               until 2 more have passed",
                    });
                }
            }
            if impairments.rate.is_some_and(|r| r.bits_per_second == 0) {
                return Err(ConfigError::Needs {
                    key: "queue",
                    direction,
                    needs: "rate",
                    hint: "the queue holds datagrams waiting for a slow link, e.g. --rate 1mbit",
                });
            }
        }
        Ok(())
    }

    /// Loads a YAML file's text (see the module docs for the schema), validated.
    /// `path` is only used in error messages.
    ///
    /// # Errors
    /// [`ConfigError::Yaml`] for syntax, unknown keys and wrong shapes (with the line the
    /// parser reports), [`ConfigError::InFile`] for an invalid value or combination
    /// (with the line of its key).
    pub fn from_yaml(text: &str, path: &Path) -> Result<ProxyConfig, ConfigError> {
        let file = ProxyFile::parse(text, path)?;
        file.build().map_err(|(error, section, key)| {
            let line = locate(text, section, key).unwrap_or(1);
            ConfigError::InFile {
                path: path.to_path_buf(),
                line,
                error: Box::new(error),
            }
        })
    }

    /// A one-paragraph human description of the impairments per direction and of the
    /// TCP shaping (printed at start), e.g. `c2s: 5% loss; s2c: 40ms delay ± 10ms
    /// (normal), 1 Mbit/s link with a queue of 100 datagrams.`
    pub fn describe(&self) -> String {
        let c2s = describe_direction(&self.c2s);
        let s2c = describe_direction(&self.s2c);
        let mut parts = Vec::new();
        if c2s == s2c {
            match c2s {
                None => parts.push("no impairment, datagrams pass unchanged".to_string()),
                Some(text) => parts.push(format!("both directions: {text}")),
            }
        } else {
            let none = || "no impairment".to_string();
            parts.push(format!("c2s: {}", c2s.unwrap_or_else(none)));
            parts.push(format!("s2c: {}", s2c.unwrap_or_else(none)));
        }
        let mut tcp = Vec::new();
        if let Some(delay) = self.tcp_delay {
            tcp.push(format!("{} delay", show_duration(delay)));
        }
        if let Some(rate) = self.tcp_rate {
            tcp.push(format!("paced at {}", show_rate(rate)));
        }
        if !tcp.is_empty() {
            parts.push(format!("tcp: {}", tcp.join(", ")));
        }
        format!("{}.", parts.join("; "))
    }

    /// The impairments of `direction`.
    pub fn impairments(&self, direction: Direction) -> &Impairments {
        match direction {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }

    /// The impairments of `direction`, to change.
    pub fn impairments_mut(&mut self, direction: Direction) -> &mut Impairments {
        match direction {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        }
    }

    /// The decision model of both directions, seeded by `seed`.
    pub fn model(&self, seed: u64) -> Model {
        Model::new(self.c2s.clone(), self.s2c.clone(), seed)
    }

    fn apply_proxy_wide(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::InvalidValue {
            key: key.to_string(),
            message,
        };
        match key {
            "listen" | "upstream" => {
                if value.is_empty() {
                    return Err(invalid("an address is needed (ADDR:PORT)".to_string()));
                }
                let slot = if key == "listen" {
                    &mut self.listen
                } else {
                    &mut self.upstream
                };
                *slot = Some(value.to_string());
            }
            "seed" => self.seed = Some(parse_count(value, 0).map_err(invalid)?),
            "tcp-delay" => self.tcp_delay = Some(parse_duration(value).map_err(invalid)?),
            "tcp-rate" => self.tcp_rate = Some(parse_rate(value).map_err(invalid)?),
            "idle-timeout" => {
                let timeout = parse_duration(value).map_err(invalid)?;
                if timeout.is_zero() {
                    return Err(invalid(format!("'{value}' must be more than 0")));
                }
                self.idle_timeout = timeout;
            }
            "max-mappings" => {
                let count = parse_count(value, 1).map_err(invalid)?;
                self.max_mappings = usize::try_from(count)
                    .map_err(|_| invalid(format!("'{value}' is too large")))?;
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                })
            }
        }
        Ok(())
    }
}

/// One parsed per-direction setting, before it is stored in a direction.
#[derive(Debug, Clone)]
enum DirectionSetting {
    Loss(Probability),
    LossModel(LossModel),
    Delay(Duration),
    Jitter(Duration),
    Distribution(Distribution),
    Duplicate(Probability),
    Corrupt(Probability),
    Reorder(Probability),
    Gap(u32),
    Hold(u32),
    HoldTimeout(Duration),
    Rate(u64),
    Queue(usize),
    Rule(Rule),
}

impl DirectionSetting {
    fn parse(key: &str, value: &str) -> Result<DirectionSetting, ConfigError> {
        let invalid = |message: String| ConfigError::InvalidValue {
            key: key.to_string(),
            message,
        };
        let setting = match key {
            "loss" => DirectionSetting::Loss(parse_probability(value).map_err(invalid)?),
            "loss-model" => DirectionSetting::LossModel(parse_loss_model(value).map_err(invalid)?),
            "delay" => DirectionSetting::Delay(parse_duration(value).map_err(invalid)?),
            "jitter" => DirectionSetting::Jitter(parse_duration(value).map_err(invalid)?),
            "distribution" => {
                DirectionSetting::Distribution(parse_distribution(value).map_err(invalid)?)
            }
            "duplicate" => DirectionSetting::Duplicate(parse_probability(value).map_err(invalid)?),
            "corrupt" => DirectionSetting::Corrupt(parse_probability(value).map_err(invalid)?),
            "reorder" => DirectionSetting::Reorder(parse_probability(value).map_err(invalid)?),
            "gap" => DirectionSetting::Gap(parse_small_count(value).map_err(invalid)?),
            "hold" => DirectionSetting::Hold(parse_small_count(value).map_err(invalid)?),
            "hold-timeout" => {
                let timeout = parse_duration(value).map_err(invalid)?;
                if timeout.is_zero() {
                    return Err(invalid(format!("'{value}' must be more than 0")));
                }
                DirectionSetting::HoldTimeout(timeout)
            }
            "rate" => DirectionSetting::Rate(parse_rate(value).map_err(invalid)?),
            "queue" => {
                let count = parse_count(value, 1).map_err(invalid)?;
                let count = usize::try_from(count)
                    .map_err(|_| invalid(format!("'{value}' is too large")))?;
                DirectionSetting::Queue(count)
            }
            "drop-nth" => {
                DirectionSetting::Rule(Rule::DropNth(parse_count(value, 1).map_err(invalid)?))
            }
            "drop-every" => DirectionSetting::Rule(parse_drop_every(value).map_err(invalid)?),
            "drop-match" => DirectionSetting::Rule(parse_drop_match(value).map_err(invalid)?),
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_string(),
                })
            }
        };
        Ok(setting)
    }

    /// Stores the setting in one direction's impairments. Settings that refine another
    /// (`gap` of `reorder`, `queue` of `rate`, ...) create it with its defaults;
    /// [`ProxyConfig::validate`] later refuses the refinement alone.
    fn set(
        &self,
        impairments: &mut Impairments,
        key: &str,
        direction: Direction,
    ) -> Result<(), ConfigError> {
        let conflict = |other| ConfigError::LossConflict {
            key: key.to_string(),
            direction,
            other,
        };
        match self {
            DirectionSetting::Loss(p) => {
                if matches!(impairments.loss, Some(ref m) if !matches!(m, LossModel::Bernoulli(_)))
                {
                    return Err(conflict("a loss-model"));
                }
                impairments.loss = Some(LossModel::Bernoulli(*p));
            }
            DirectionSetting::LossModel(model) => {
                if matches!(impairments.loss, Some(LossModel::Bernoulli(_))) {
                    return Err(conflict("a loss"));
                }
                impairments.loss = Some(model.clone());
            }
            DirectionSetting::Delay(d) => delay_of(impairments).delay = *d,
            DirectionSetting::Jitter(j) => delay_of(impairments).jitter = *j,
            DirectionSetting::Distribution(d) => delay_of(impairments).distribution = *d,
            DirectionSetting::Duplicate(p) => impairments.duplicate = *p,
            DirectionSetting::Corrupt(p) => impairments.corrupt = *p,
            DirectionSetting::Reorder(p) => reorder_of(impairments).probability = *p,
            DirectionSetting::Gap(n) => reorder_of(impairments).gap = Some(*n),
            DirectionSetting::Hold(n) => reorder_of(impairments).hold = *n,
            DirectionSetting::HoldTimeout(d) => reorder_of(impairments).hold_timeout = *d,
            DirectionSetting::Rate(bits) => rate_of(impairments).bits_per_second = *bits,
            DirectionSetting::Queue(n) => rate_of(impairments).queue = *n,
            DirectionSetting::Rule(rule) => impairments.rules.push(rule.clone()),
        }
        Ok(())
    }
}

fn delay_of(impairments: &mut Impairments) -> &mut Delay {
    impairments.delay.get_or_insert_with(Delay::default)
}

fn reorder_of(impairments: &mut Impairments) -> &mut Reorder {
    impairments.reorder.get_or_insert_with(|| Reorder::new(0.0))
}

/// A rate of 0 stands for "queue given, rate not (yet)"; `validate` refuses it.
fn rate_of(impairments: &mut Impairments) -> &mut Rate {
    impairments.rate.get_or_insert_with(|| Rate::new(0))
}

/// `20%` or `0.2`, from 0 to 1.
fn parse_probability(text: &str) -> Result<Probability, String> {
    let text = text.trim();
    let (number, scale, range) = match text.strip_suffix('%') {
        Some(number) => (number.trim(), 100.0, "0-100%"),
        None => (
            text,
            1.0,
            "0-1 (a bare number is a fraction: write 20% for percent)",
        ),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a probability (write 20% or 0.2)"))?;
    let p = value / scale;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("'{text}' is outside {range}"));
    }
    Ok(p)
}

/// A whole number of at least `min`.
fn parse_count(text: &str, min: u64) -> Result<u64, String> {
    let text = text.trim();
    let n: u64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a whole number"))?;
    if n < min {
        return Err(format!("'{text}' must be at least {min}"));
    }
    Ok(n)
}

/// A whole number from 1 to `u32::MAX` (`gap`, `hold`).
fn parse_small_count(text: &str) -> Result<u32, String> {
    let n = parse_count(text, 1)?;
    u32::try_from(n).map_err(|_| format!("'{}' is too large", text.trim()))
}

/// Bits per second as tc writes them: `bit`, `kbit`, `mbit`, `gbit`, or a bare number.
fn parse_rate(text: &str) -> Result<u64, String> {
    let original = text.trim();
    let lower = original.to_ascii_lowercase();
    let lower = lower.strip_suffix("/s").unwrap_or(&lower);
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let scale = match unit.trim() {
        "" | "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" | "kbps" | "mbps" | "gbps" | "b" | "kb" | "mb" | "gb" => {
            return Err(format!(
                "'{original}': give bits per second (8mbit); in tc, bps means bytes per second"
            ))
        }
        _ => {
            return Err(format!(
                "'{original}' is not a rate (try 1mbit, 500kbit, 64000)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{original}' is not a rate (try 1mbit, 500kbit, 64000)"))?;
    let bits = value * scale;
    // `number` holds only digits and dots, so it cannot be NaN or infinite.
    if bits < 1.0 {
        return Err(format!("'{original}' must be at least 1 bit per second"));
    }
    if bits > u64::MAX as f64 {
        return Err(format!("'{original}' is too large a rate"));
    }
    Ok(bits.round() as u64)
}

fn parse_distribution(text: &str) -> Result<Distribution, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "uniform" => Ok(Distribution::Uniform),
        "normal" => Ok(Distribution::Normal),
        "pareto" => Ok(Distribution::Pareto),
        _ => Err(format!(
            "'{}' is not a distribution (uniform, normal or pareto)",
            text.trim()
        )),
    }
}

/// `gemodel:p,r[,1-h[,1-k]]` or `state:p13[,p31[,p32[,p23[,p14]]]]`.
fn parse_loss_model(text: &str) -> Result<LossModel, String> {
    const FORMS: &str = "gemodel:p,r[,1-h[,1-k]] or state:p13[,p31[,p32[,p23[,p14]]]]";
    let (name, list) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not a loss model ({FORMS})"))?;
    let values: Vec<&str> = list.split(',').map(str::trim).collect();
    let parameter = |i: usize, name: &str| -> Result<Option<f64>, String> {
        match values.get(i) {
            None => Ok(None),
            Some(v) => parse_probability(v)
                .map(Some)
                .map_err(|message| format!("{name} {message}")),
        }
    };
    match name.trim().to_ascii_lowercase().as_str() {
        "gemodel" => {
            if values.len() < 2 || values.len() > 4 {
                return Err(format!(
                    "'{text}' needs p and r, then optionally 1-h and 1-k \
                     (gemodel:p,r[,1-h[,1-k]]); for independent losses use loss"
                ));
            }
            let p = parameter(0, "p")?.unwrap_or_default();
            let r = parameter(1, "r")?.unwrap_or_default();
            Ok(LossModel::GilbertElliott {
                p,
                r,
                one_minus_h: parameter(2, "1-h")?.unwrap_or(1.0),
                one_minus_k: parameter(3, "1-k")?.unwrap_or(0.0),
            })
        }
        "state" => {
            if values.len() > 5 {
                return Err(format!(
                    "'{text}' has more than 5 parameters (state:p13[,p31[,p32[,p23[,p14]]]])"
                ));
            }
            let p13 = parameter(0, "p13")?.unwrap_or_default();
            let p31 = parameter(1, "p31")?.unwrap_or(1.0 - p13);
            let p32 = parameter(2, "p32")?.unwrap_or(0.0);
            let p23 = parameter(3, "p23")?.unwrap_or(1.0);
            let p14 = parameter(4, "p14")?.unwrap_or(0.0);
            // The chain's ways out of one state must not add up to more than certainty.
            if p13 + p14 > 1.0 + 1e-9 {
                return Err(format!("'{text}': p13 + p14 is more than 100%"));
            }
            if p31 + p32 > 1.0 + 1e-9 {
                return Err(format!("'{text}': p31 + p32 is more than 100%"));
            }
            Ok(LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            })
        }
        _ => Err(format!("'{text}' is not a loss model ({FORMS})")),
    }
}

/// `N` or `N+OFFSET`.
fn parse_drop_every(text: &str) -> Result<Rule, String> {
    let (every, offset) = match text.split_once('+') {
        Some((every, offset)) => (every, parse_count(offset, 0)?),
        None => (text, 0),
    };
    Ok(Rule::DropEvery {
        every: parse_count(every, 1)?,
        offset,
    })
}

/// A bytes regex with Unicode off, so it can match any payload byte.
fn parse_drop_match(text: &str) -> Result<Rule, String> {
    regex::bytes::RegexBuilder::new(text)
        .unicode(false)
        .build()
        .map(Rule::DropMatch)
        .map_err(|error| format!("'{text}' is not a valid regex: {}", regex_problem(&error)))
}

/// The one line of a regex error that says what is wrong (the full message draws the
/// pattern with a caret over several lines).
fn regex_problem(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or_else(|| text.lines().last().unwrap_or("invalid"))
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------
// The YAML file.

/// One YAML value: a string or a number, kept as text for the same parser the flag
/// uses (so `loss: 0.2`, `loss: 20%` and `--loss 20%` meet in one place).
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar(pub String);

/// One value or a list of them (rules may be given several times).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scalars(pub Vec<String>);

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor).map(Scalar)
    }
}

struct ScalarsVisitor;

impl<'de> Visitor<'de> for ScalarsVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a number or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut values = Vec::new();
        while let Some(Scalar(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(values)
    }
}

impl<'de> Deserialize<'de> for Scalars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarsVisitor).map(Scalars)
    }
}

/// The YAML form of [`ProxyConfig`] (the schema in the module docs). Public so the
/// scenario runner can embed it; [`ProxyFile::to_config`] turns it into settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a map of proxy settings (listen, upstream, seed, both, c2s, s2c, tcp, ...)"
)]
pub struct ProxyFile {
    /// `listen: ADDR:PORT`.
    pub listen: Option<Scalar>,
    /// `upstream: HOST:PORT`.
    pub upstream: Option<Scalar>,
    /// `seed: N`.
    pub seed: Option<Scalar>,
    /// `idle-timeout: D`.
    pub idle_timeout: Option<Scalar>,
    /// `max-mappings: N`.
    pub max_mappings: Option<Scalar>,
    /// Settings for both directions, applied first.
    pub both: Option<DirectionSettings>,
    /// Settings for client to server.
    pub c2s: Option<DirectionSettings>,
    /// Settings for server to client.
    pub s2c: Option<DirectionSettings>,
    /// TCP shaping.
    pub tcp: Option<TcpSettings>,
}

/// A `both:`, `c2s:` or `s2c:` section: the per-direction keys, spelled as the flags.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a map of per-direction settings (loss, delay, ...)"
)]
pub struct DirectionSettings {
    /// `loss: P`.
    pub loss: Option<Scalar>,
    /// `loss-model: gemodel:p,r[,1-h[,1-k]]` or `state:p13[,...]`.
    pub loss_model: Option<Scalar>,
    /// `delay: D`.
    pub delay: Option<Scalar>,
    /// `jitter: D`.
    pub jitter: Option<Scalar>,
    /// `distribution: uniform|normal|pareto`.
    pub distribution: Option<Scalar>,
    /// `duplicate: P`.
    pub duplicate: Option<Scalar>,
    /// `corrupt: P`.
    pub corrupt: Option<Scalar>,
    /// `reorder: P`.
    pub reorder: Option<Scalar>,
    /// `gap: N`.
    pub gap: Option<Scalar>,
    /// `hold: N`.
    pub hold: Option<Scalar>,
    /// `hold-timeout: D`.
    pub hold_timeout: Option<Scalar>,
    /// `rate: R`.
    pub rate: Option<Scalar>,
    /// `queue: N`.
    pub queue: Option<Scalar>,
    /// `drop-nth: N` or a list.
    pub drop_nth: Option<Scalars>,
    /// `drop-every: N[+OFFSET]` or a list.
    pub drop_every: Option<Scalars>,
    /// `drop-match: REGEX` or a list.
    pub drop_match: Option<Scalars>,
}

/// The `tcp:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    expecting = "a map with delay and rate"
)]
pub struct TcpSettings {
    /// `delay: D`, as the flag `--tcp-delay`.
    pub delay: Option<Scalar>,
    /// `rate: R`, as the flag `--tcp-rate`.
    pub rate: Option<Scalar>,
}

impl DirectionSettings {
    /// The keys that are set, with their values, in the order of [`DIRECTION_KEYS`].
    fn entries(&self) -> Vec<(&'static str, &str)> {
        let single = [
            ("loss", &self.loss),
            ("loss-model", &self.loss_model),
            ("delay", &self.delay),
            ("jitter", &self.jitter),
            ("distribution", &self.distribution),
            ("duplicate", &self.duplicate),
            ("corrupt", &self.corrupt),
            ("reorder", &self.reorder),
            ("gap", &self.gap),
            ("hold", &self.hold),
            ("hold-timeout", &self.hold_timeout),
            ("rate", &self.rate),
            ("queue", &self.queue),
        ];
        let lists = [
            ("drop-nth", &self.drop_nth),
            ("drop-every", &self.drop_every),
            ("drop-match", &self.drop_match),
        ];
        let mut entries: Vec<(&'static str, &str)> = single
            .into_iter()
            .filter_map(|(key, value)| value.as_ref().map(|Scalar(v)| (key, v.as_str())))
            .collect();
        for (key, values) in lists {
            for value in values.iter().flat_map(|Scalars(list)| list) {
                entries.push((key, value.as_str()));
            }
        }
        entries
    }
}

/// The top-level sections of the file, as written in it.
const SECTIONS: [(&str, Which); 3] = [
    ("both", Which::Both),
    ("c2s", Which::ClientToServer),
    ("s2c", Which::ServerToClient),
];

/// A failed setting and where it came from: the section (`None` for the top level) and
/// the key as written in the file.
type Located = (ConfigError, Option<&'static str>, &'static str);

impl ProxyFile {
    /// Parses YAML text into the file's structure (nothing validated yet but the keys).
    fn parse(text: &str, path: &Path) -> Result<ProxyFile, ConfigError> {
        // An empty file (or one of comments only) is a valid, empty configuration.
        if text
            .lines()
            .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
        {
            return Ok(ProxyFile::default());
        }
        serde_yaml::from_str(text).map_err(|error| {
            let line = error.location().map_or(1, |at| at.line());
            ConfigError::Yaml {
                path: path.to_path_buf(),
                line,
                message: yaml_message(&error),
            }
        })
    }

    /// Turns the file into a validated configuration, through the same code as flags.
    ///
    /// # Errors
    /// The first invalid setting, as [`ProxyConfig::apply`] and
    /// [`ProxyConfig::validate`] report it (without a line: see
    /// [`ProxyConfig::from_yaml`] for that).
    pub fn to_config(&self) -> Result<ProxyConfig, ConfigError> {
        self.build().map_err(|(error, _, _)| error)
    }

    fn build(&self) -> Result<ProxyConfig, Located> {
        let mut config = ProxyConfig::default();
        let top = [
            ("listen", &self.listen),
            ("upstream", &self.upstream),
            ("seed", &self.seed),
            ("idle-timeout", &self.idle_timeout),
            ("max-mappings", &self.max_mappings),
        ];
        for (key, value) in top {
            if let Some(Scalar(value)) = value {
                // The same path as the flag; a direction prefix here is refused there.
                config.apply(key, value).map_err(|e| (e, None, key))?;
            }
        }
        if let Some(tcp) = &self.tcp {
            for (key, flag, value) in [
                ("delay", "tcp-delay", &tcp.delay),
                ("rate", "tcp-rate", &tcp.rate),
            ] {
                if let Some(Scalar(value)) = value {
                    config
                        .apply(flag, value)
                        .map_err(|e| (e, Some("tcp"), key))?;
                }
            }
        }
        for (name, which) in SECTIONS {
            let section = match which {
                Which::Both => &self.both,
                Which::ClientToServer => &self.c2s,
                Which::ServerToClient => &self.s2c,
            };
            for (key, value) in section.iter().flat_map(DirectionSettings::entries) {
                config
                    .apply_to(which, key, value)
                    .map_err(|e| (e, Some(name), key))?;
            }
        }
        config.validate().map_err(|error| {
            // Point at the key in the direction's own section if it is there, else in
            // `both:`.
            let (section, key) = match &error {
                ConfigError::Needs { key, direction, .. } => {
                    let own = match direction {
                        Direction::ClientToServer => ("c2s", &self.c2s),
                        Direction::ServerToClient => ("s2c", &self.s2c),
                    };
                    let has = |s: &Option<DirectionSettings>| {
                        s.as_ref()
                            .is_some_and(|s| s.entries().iter().any(|(k, _)| k == key))
                    };
                    let section = if has(own.1) { own.0 } else { "both" };
                    (Some(section), *key)
                }
                _ => (None, ""),
            };
            (error, section, key)
        })?;
        Ok(config)
    }
}

/// serde_yaml's message without its trailing " at line L column C" (the line is
/// reported separately).
fn yaml_message(error: &serde_yaml::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines().next().unwrap_or("invalid YAML").to_string()
}

/// The 1-based line of `key` in `section` (or at the top level), found by reading the
/// text: serde_yaml reports positions for its own errors only. Handles block style
/// (`c2s:` then indented keys) and flow style (`c2s: {loss: 5%}`); falls back to the
/// section's line.
fn locate(text: &str, section: Option<&str>, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let top_level = |line: &&str| !line.starts_with([' ', '\t', '#', '-']) && !line.is_empty();
    let Some(section) = section else {
        return lines
            .iter()
            .position(|line| top_level(line) && starts_with_key(line, key))
            .map(|i| i + 1);
    };
    let start = lines
        .iter()
        .position(|line| top_level(line) && starts_with_key(line, section))?;
    if mentions_key(lines[start], key) {
        return Some(start + 1);
    }
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if top_level(line) {
            break;
        }
        if mentions_key(line, key) {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

/// Whether `line` (indentation and a list dash aside) starts with `key:`.
fn starts_with_key(line: &str, key: &str) -> bool {
    let line = line.trim_start().trim_start_matches("- ");
    let line = line.trim_start_matches(['"', '\'']);
    line.strip_prefix(key).is_some_and(|rest| {
        rest.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with(':')
    })
}

/// Whether `key:` appears in `line` as a whole key (not the tail of `hold-timeout:`
/// when looking for `timeout:`), in block or flow style.
fn mentions_key(line: &str, key: &str) -> bool {
    let pattern = format!("{key}:");
    line.match_indices(&pattern).any(|(at, _)| {
        line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
    })
}

// ---------------------------------------------------------------------------------
// Describing a configuration to people.

/// The impairments of one direction in pipeline order, or `None` when there are none.
fn describe_direction(impairments: &Impairments) -> Option<String> {
    let mut parts = Vec::new();
    for rule in &impairments.rules {
        parts.push(match rule {
            Rule::DropNth(n) => format!("drop the {} datagram", ordinal(*n)),
            Rule::DropEvery { every, offset } => format!(
                "drop every {} datagram from the {}",
                ordinal(*every),
                ordinal(offset + every)
            ),
            Rule::DropMatch(regex) => format!("drop payloads matching /{}/", regex.as_str()),
        });
    }
    match &impairments.loss {
        None => {}
        Some(LossModel::Bernoulli(p)) => parts.push(format!("{} loss", percent(*p))),
        Some(
            model @ LossModel::GilbertElliott {
                p,
                r,
                one_minus_h,
                one_minus_k,
            },
        ) => parts.push(format!(
            "Gilbert-Elliott loss (p {}, r {}, 1-h {}, 1-k {}: about {} lost in the long run)",
            percent(*p),
            percent(*r),
            percent(*one_minus_h),
            percent(*one_minus_k),
            percent(model.long_run_loss())
        )),
        Some(
            model @ LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            },
        ) => parts.push(format!(
            "4-state loss (p13 {}, p31 {}, p32 {}, p23 {}, p14 {}: about {} lost in the long run)",
            percent(*p13),
            percent(*p31),
            percent(*p32),
            percent(*p23),
            percent(*p14),
            percent(model.long_run_loss())
        )),
    }
    if impairments.duplicate > 0.0 {
        parts.push(format!("{} duplicated", percent(impairments.duplicate)));
    }
    if impairments.corrupt > 0.0 {
        parts.push(format!(
            "{} corrupted (one bit flipped)",
            percent(impairments.corrupt)
        ));
    }
    if let Some(reorder) = &impairments.reorder {
        let gap = match reorder.gap {
            Some(gap) if gap > 1 => format!(" (gap {gap})"),
            _ => String::new(),
        };
        let later = if reorder.hold == 1 {
            "1 later datagram".to_string()
        } else {
            format!("{} later datagrams", reorder.hold)
        };
        parts.push(format!(
            "{} held back{gap} until {later} passed or {}",
            percent(reorder.probability),
            show_duration(reorder.hold_timeout)
        ));
    }
    if let Some(delay) = &impairments.delay {
        if delay.jitter.is_zero() {
            parts.push(format!("{} delay", show_duration(delay.delay)));
        } else {
            parts.push(format!(
                "{} delay ± {} ({})",
                show_duration(delay.delay),
                show_duration(delay.jitter),
                delay.distribution.name()
            ));
        }
    }
    if let Some(rate) = &impairments.rate {
        parts.push(format!(
            "{} link with a queue of {} datagrams",
            show_rate(rate.bits_per_second),
            rate.queue
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `0.05` as `5%`, `0.001` as `0.1%`: at most four decimals, none trailing.
fn percent(p: f64) -> String {
    let text = format!("{:.4}", p * 100.0);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// `50ms`, `1.5s`, `250us`: the largest unit that keeps the number readable.
fn show_duration(d: Duration) -> String {
    let trim = |text: String| text.trim_end_matches('0').trim_end_matches('.').to_string();
    if d.is_zero() {
        "0ms".to_string()
    } else if d >= Duration::from_secs(1) {
        format!("{}s", trim(format!("{:.3}", d.as_secs_f64())))
    } else if d >= Duration::from_millis(1) {
        format!("{}ms", trim(format!("{:.3}", d.as_secs_f64() * 1e3)))
    } else {
        format!("{}us", trim(format!("{:.3}", d.as_secs_f64() * 1e6)))
    }
}

/// `1 Mbit/s`, `500 kbit/s`, `1.5 Mbit/s`, `300 bit/s`.
fn show_rate(bits: u64) -> String {
    let trim = |text: String| text.trim_end_matches('0').trim_end_matches('.').to_string();
    let value = bits as f64;
    for (scale, unit) in [(1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")] {
        if value >= scale {
            return format!("{} {unit}", trim(format!("{:.3}", value / scale)));
        }
    }
    format!("{bits} bit/s")
}

/// `1st`, `2nd`, `3rd`, `11th`, `22nd`.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(settings: &[(&str, &str)]) -> ProxyConfig {
        ProxyConfig::from_settings(settings.iter().copied()).expect("valid settings")
    }

    /// The one-line message of applying `settings` (the last one is expected to fail,
    /// or validation).
    fn error_of(settings: &[(&str, &str)]) -> String {
        let error =
            ProxyConfig::from_settings(settings.iter().copied()).expect_err("should be refused");
        let text = error.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        text
    }

    fn yaml(text: &str) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::from_yaml(text, Path::new("proxy.yaml"))
    }

    fn yaml_error(text: &str) -> String {
        let text = yaml(text).expect_err("should be refused").to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        text
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn defaults() {
        let config = ProxyConfig::default();
        assert_eq!(config.idle_timeout, Duration::from_secs(60));
        assert_eq!(config.max_mappings, 1024);
        assert!(config.c2s.is_none() && config.s2c.is_none());
        assert_eq!(
            config.describe(),
            "no impairment, datagrams pass unchanged."
        );
    }

    #[test]
    fn probabilities_as_percent_or_fraction() {
        let config = applied(&[("loss", "20%"), ("duplicate", "0.05"), ("corrupt", "0.5 %")]);
        assert_eq!(config.c2s.loss, Some(LossModel::Bernoulli(0.2)));
        assert_eq!(config.s2c.loss, Some(LossModel::Bernoulli(0.2)));
        assert_eq!(config.c2s.duplicate, 0.05);
        assert_eq!(config.s2c.corrupt, 0.005);
        assert_eq!(
            applied(&[("loss", "100%")]).c2s.loss,
            Some(LossModel::Bernoulli(1.0))
        );
    }

    #[test]
    fn direction_prefixes() {
        let config = applied(&[
            ("loss", "s2c:20%"),
            ("delay", "c2s:10ms"),
            ("corrupt", "both:1%"),
        ]);
        assert_eq!(config.c2s.loss, None);
        assert_eq!(config.s2c.loss, Some(LossModel::Bernoulli(0.2)));
        assert_eq!(config.c2s.delay.as_ref().map(|d| d.delay), Some(10 * MS));
        assert_eq!(config.s2c.delay, None);
        assert_eq!((config.c2s.corrupt, config.s2c.corrupt), (0.01, 0.01));
        // A later setting for one direction overrides the shared one.
        let config = applied(&[("loss", "10%"), ("loss", "c2s:30%")]);
        assert_eq!(config.c2s.loss, Some(LossModel::Bernoulli(0.3)));
        assert_eq!(config.s2c.loss, Some(LossModel::Bernoulli(0.1)));
    }

    #[test]
    fn delays_and_distributions() {
        let config = applied(&[
            ("delay", "50ms"),
            ("jitter", "10ms"),
            ("distribution", "c2s:pareto"),
            ("distribution", "s2c:Normal"),
        ]);
        assert_eq!(
            config.c2s.delay,
            Some(Delay {
                delay: 50 * MS,
                jitter: 10 * MS,
                distribution: Distribution::Pareto
            })
        );
        assert_eq!(
            config.s2c.delay.map(|d| d.distribution),
            Some(Distribution::Normal)
        );
        assert_eq!(
            applied(&[("delay", "1.5s")]).c2s.delay.map(|d| d.delay),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn loss_models_with_netem_defaults() {
        let config = applied(&[("loss-model", "gemodel:5%,50%")]);
        assert_eq!(config.c2s.loss, Some(LossModel::gilbert_elliott(0.05, 0.5)));
        let config = applied(&[("loss-model", "c2s:gemodel:5%,50%,80%,1%")]);
        assert_eq!(
            config.c2s.loss,
            Some(LossModel::GilbertElliott {
                p: 0.05,
                r: 0.5,
                one_minus_h: 0.8,
                one_minus_k: 0.01
            })
        );
        let config = applied(&[("loss-model", "state:10%")]);
        assert_eq!(config.s2c.loss, Some(LossModel::four_state(0.1)));
        let config = applied(&[("loss-model", "state:1%,30%,20%,40%,0.5%")]);
        assert_eq!(
            config.c2s.loss,
            Some(LossModel::FourState {
                p13: 0.01,
                p31: 0.3,
                p32: 0.2,
                p23: 0.4,
                p14: 0.005
            })
        );
    }

    #[test]
    fn reordering() {
        let config = applied(&[
            ("reorder", "25%"),
            ("gap", "5"),
            ("hold", "c2s:3"),
            ("hold-timeout", "s2c:1s"),
        ]);
        assert_eq!(
            config.c2s.reorder,
            Some(Reorder {
                probability: 0.25,
                gap: Some(5),
                hold: 3,
                hold_timeout: DEFAULT_HOLD_TIMEOUT
            })
        );
        assert_eq!(
            config.s2c.reorder,
            Some(Reorder {
                probability: 0.25,
                gap: Some(5),
                hold: 1,
                hold_timeout: Duration::from_secs(1)
            })
        );
        // The order of the flags does not matter.
        let later = applied(&[("hold", "c2s:3"), ("reorder", "25%")]);
        assert_eq!(later.c2s.reorder.map(|r| r.hold), Some(3));
    }

    #[test]
    fn rates_as_tc_spells_them() {
        let rate = |text: &str| {
            applied(&[("rate", text)])
                .c2s
                .rate
                .map(|r| r.bits_per_second)
        };
        assert_eq!(rate("1mbit"), Some(1_000_000));
        assert_eq!(rate("1Mbit/s"), Some(1_000_000));
        assert_eq!(rate("500kbit"), Some(500_000));
        assert_eq!(rate("1.5gbit"), Some(1_500_000_000));
        assert_eq!(rate("64000"), Some(64_000));
        assert_eq!(rate("300bit"), Some(300));
        let config = applied(&[("rate", "8mbit"), ("queue", "s2c:10")]);
        assert_eq!(config.c2s.rate, Some(Rate::new(8_000_000)));
        assert_eq!(
            config.s2c.rate,
            Some(Rate {
                bits_per_second: 8_000_000,
                queue: 10
            })
        );
        let tcp = applied(&[("tcp-rate", "10mbit"), ("tcp-delay", "20ms")]);
        assert_eq!(
            (tcp.tcp_rate, tcp.tcp_delay),
            (Some(10_000_000), Some(20 * MS))
        );
    }

    #[test]
    fn rules_add_up() {
        let config = applied(&[
            ("drop-nth", "3"),
            ("drop-nth", "c2s:10"),
            ("drop-every", "s2c:5+2"),
            ("drop-every", "c2s:4"),
            ("drop-match", "c2s:^PING"),
        ]);
        assert_eq!(
            config.c2s.rules,
            [
                Rule::DropNth(3),
                Rule::DropNth(10),
                Rule::DropEvery {
                    every: 4,
                    offset: 0
                },
                Rule::DropMatch(regex::bytes::Regex::new("^PING").unwrap()),
            ]
        );
        assert_eq!(
            config.s2c.rules,
            [
                Rule::DropNth(3),
                Rule::DropEvery {
                    every: 5,
                    offset: 2
                }
            ]
        );
    }

    #[test]
    fn drop_match_keeps_its_spaces() {
        let config = applied(&[("drop-match", "c2s:^PING 7 ")]);
        let Rule::DropMatch(regex) = &config.c2s.rules[0] else {
            panic!("a match rule");
        };
        assert_eq!(regex.as_str(), "^PING 7 ");
        assert!(!regex.is_match(b"PING 70"));
    }

    #[test]
    fn drop_match_sees_raw_bytes() {
        let config = applied(&[("drop-match", r"^\xff.PING")]);
        let Rule::DropMatch(regex) = &config.c2s.rules[0] else {
            panic!("a match rule");
        };
        assert!(regex.is_match(b"\xff\x00PING"));
    }

    #[test]
    fn proxy_wide_settings() {
        let config = applied(&[
            ("listen", "127.0.0.1:9000"),
            ("upstream", "localhost:9001"),
            ("seed", "42"),
            ("idle-timeout", "5s"),
            ("max-mappings", "16"),
        ]);
        assert_eq!(config.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(config.upstream.as_deref(), Some("localhost:9001"));
        assert_eq!(config.seed, Some(42));
        assert_eq!(config.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.max_mappings, 16);
    }

    #[test]
    fn invalid_values_name_the_key_and_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("loss", "150%")], "loss: '150%' is outside 0-100%"),
            (&[("loss", "20")], "loss: '20' is outside 0-1"),
            (&[("loss", "-5%")], "loss: '-5%' is outside 0-100%"),
            (
                &[("duplicate", "lots")],
                "duplicate: 'lots' is not a probability",
            ),
            (&[("delay", "-5ms")], "delay: '-5ms' is not a duration"),
            (
                &[("jitter", "s2c:soon")],
                "jitter: 'soon' is not a duration",
            ),
            (
                &[("distribution", "gauss")],
                "distribution: 'gauss' is not a distribution",
            ),
            (
                &[("drop-match", "(")],
                "drop-match: '(' is not a valid regex: unclosed group",
            ),
            (
                &[("loss-model", "gemodel:5%")],
                "loss-model: 'gemodel:5%' needs p and r",
            ),
            (
                &[("loss-model", "gemodel:5%,150%")],
                "loss-model: r '150%' is outside",
            ),
            (
                &[("loss-model", "markov:1%")],
                "loss-model: 'markov:1%' is not a loss model",
            ),
            (
                &[("loss-model", "state:60%,50%,0,1,50%")],
                "p13 + p14 is more than 100%",
            ),
            (&[("rate", "1Mbps")], "rate: '1Mbps': give bits per second"),
            (
                &[("rate", "0")],
                "rate: '0' must be at least 1 bit per second",
            ),
            (&[("rate", "fast")], "rate: 'fast' is not a rate"),
            (&[("queue", "0")], "queue: '0' must be at least 1"),
            (&[("gap", "1.5")], "gap: '1.5' is not a whole number"),
            (&[("drop-nth", "0")], "drop-nth: '0' must be at least 1"),
            (
                &[("drop-every", "5+x")],
                "drop-every: 'x' is not a whole number",
            ),
            (
                &[("hold-timeout", "0s")],
                "hold-timeout: '0s' must be more than 0",
            ),
            (&[("seed", "-1")], "seed: '-1' is not a whole number"),
            (
                &[("max-mappings", "0")],
                "max-mappings: '0' must be at least 1",
            ),
            (
                &[("idle-timeout", "0")],
                "idle-timeout: '0' must be more than 0",
            ),
            (&[("listen", " ")], "listen: an address is needed"),
            (&[("lose", "5%")], "unknown setting 'lose'"),
            (
                &[("seed", "c2s:5")],
                "seed: 'c2s:5' has a direction prefix, but seed applies to the whole proxy",
            ),
            (
                &[("tcp-delay", "s2c:5ms")],
                "tcp-delay: 's2c:5ms' has a direction prefix",
            ),
            (
                &[("loss", "10%"), ("loss-model", "gemodel:1%,50%")],
                "loss-model: c2s already has a loss; use loss (independent losses) or \
                 loss-model (bursts), not both",
            ),
            (
                &[("loss-model", "s2c:state:5%"), ("loss", "1%")],
                "loss: s2c already has a loss-model",
            ),
            (
                &[("hold", "3")],
                "hold is set for c2s, but reorder above 0% is not",
            ),
            (
                &[("reorder", "s2c:0%"), ("gap", "s2c:2")],
                "gap is set for s2c",
            ),
            (
                &[("queue", "s2c:10")],
                "queue is set for s2c, but rate is not",
            ),
        ];
        for (settings, expected) in cases {
            let message = error_of(settings);
            assert!(
                message.starts_with(expected) || message.contains(expected),
                "{settings:?}: got {message:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn a_failed_setting_changes_nothing() {
        let mut config = ProxyConfig::default();
        config.apply("loss", "c2s:5%").unwrap();
        assert!(config.apply("loss", "150%").is_err());
        assert_eq!(config.c2s.loss, Some(LossModel::Bernoulli(0.05)));
        assert_eq!(config.s2c.loss, None);
    }

    #[test]
    fn config_errors_convert_into_anyhow() {
        fn load() -> anyhow::Result<ProxyConfig> {
            Ok(yaml("seed: x\n")?)
        }
        let error = load().unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "proxy.yaml:1: seed: 'x' is not a whole number"
        );
    }

    const EXAMPLE: &str = include_str!("../../labs/proxy-example.yaml");

    #[test]
    fn example_file_equals_the_same_flags() {
        let from_file = yaml(EXAMPLE).expect("the example is valid");
        let from_flags = applied(&[
            ("listen", "127.0.0.1:9000"),
            ("upstream", "127.0.0.1:9001"),
            ("seed", "42"),
            ("idle-timeout", "60s"),
            ("max-mappings", "1024"),
            ("delay", "40ms"),
            ("jitter", "10ms"),
            ("distribution", "normal"),
            ("loss", "c2s:5%"),
            ("drop-nth", "c2s:3"),
            ("drop-nth", "c2s:10"),
            ("drop-match", "c2s:^PING 7 "),
            ("loss-model", "s2c:gemodel:5%,50%"),
            ("duplicate", "s2c:1%"),
            ("corrupt", "s2c:0.1%"),
            ("reorder", "s2c:10%"),
            ("gap", "s2c:5"),
            ("hold", "s2c:2"),
            ("hold-timeout", "s2c:300ms"),
            ("rate", "s2c:1mbit"),
            ("queue", "s2c:100"),
            ("drop-every", "s2c:10+5"),
            ("tcp-delay", "20ms"),
            ("tcp-rate", "10mbit"),
        ]);
        assert_eq!(from_file, from_flags);
    }

    #[test]
    fn yaml_numbers_and_strings_are_read_alike() {
        let a = yaml("seed: 7\nboth:\n  loss: 0.25\n  hold-timeout: 2\n  reorder: 1\n").unwrap();
        let b = applied(&[
            ("seed", "7"),
            ("loss", "25%"),
            ("hold-timeout", "2s"),
            ("reorder", "100%"),
        ]);
        assert_eq!(a, b);
        let flow = yaml("c2s: {loss: 5%, drop-nth: [1, 2]}\n").unwrap();
        assert_eq!(flow.c2s.rules, [Rule::DropNth(1), Rule::DropNth(2)]);
    }

    #[test]
    fn empty_yaml_is_the_default() {
        assert_eq!(yaml("").unwrap(), ProxyConfig::default());
        assert_eq!(yaml("# nothing yet\n\n").unwrap(), ProxyConfig::default());
    }

    #[test]
    fn yaml_errors_name_path_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "seed: 1\nc2s:\n  los: 5%\n",
                "proxy.yaml:3: c2s: unknown field `los`",
            ),
            (
                "seed: 1\nidle_timeout: 5s\n",
                "proxy.yaml:2: unknown field `idle_timeout`",
            ),
            (
                "seed: 1\ns2c:\n  delay: 5ms\n  loss: 150%\n",
                "proxy.yaml:4: loss: '150%' is outside 0-100%",
            ),
            (
                "both:\n  delay: -5ms\n",
                "proxy.yaml:2: delay: '-5ms' is not a duration",
            ),
            (
                "c2s:\n  drop-match: \"(\"\n",
                "proxy.yaml:2: drop-match: '(' is not a valid regex: unclosed group",
            ),
            (
                "s2c:\n  loss-model: gemodel:5%\n",
                "proxy.yaml:2: loss-model: 'gemodel:5%' needs p and r",
            ),
            (
                "both:\n  loss: 5%\nc2s:\n  jitter: 1ms\n  loss-model: state:1%\n",
                "proxy.yaml:5: loss-model: c2s already has a loss",
            ),
            (
                "seed: c2s:5\n",
                "proxy.yaml:1: seed: 'c2s:5' has a direction prefix",
            ),
            (
                "s2c: {delay: 5ms, hold: 2}\n",
                "proxy.yaml:1: hold is set for s2c, but reorder above 0% is not",
            ),
            (
                "both:\n  delay: 1ms\n  queue: 5\n",
                "proxy.yaml:3: queue is set for c2s, but rate is not",
            ),
            (
                "tcp:\n  rate: 1Mbps\n",
                "proxy.yaml:2: tcp-rate: '1Mbps': give bits per second",
            ),
            (
                "c2s:\n  loss: [1, 2]\n",
                "proxy.yaml:2: c2s.loss: invalid type: sequence",
            ),
            ("c2s: [\n", "proxy.yaml:"),
            (
                "c2s: 5\n",
                "proxy.yaml:1: c2s: invalid type: integer `5`, expected a map of per-direction",
            ),
        ];
        for (text, expected) in cases {
            let message = yaml_error(text);
            assert!(
                message.starts_with(expected),
                "{text:?}: got {message:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn scenario_runner_can_build_from_the_serde_type() {
        let file: ProxyFile = serde_yaml::from_str("s2c:\n  loss: 5%\n").unwrap();
        let config = file.to_config().unwrap();
        assert_eq!(config.s2c.loss, Some(LossModel::Bernoulli(0.05)));
        let bad: ProxyFile = serde_yaml::from_str("s2c:\n  loss: 500%\n").unwrap();
        assert_eq!(
            bad.to_config().unwrap_err().to_string(),
            "loss: '500%' is outside 0-100%"
        );
    }

    #[test]
    fn describe_lists_each_direction_in_pipeline_order() {
        let config = applied(&[
            ("loss", "c2s:5%"),
            ("drop-every", "c2s:5+2"),
            ("delay", "40ms"),
            ("jitter", "10ms"),
            ("distribution", "normal"),
            ("loss-model", "s2c:gemodel:5%,50%"),
            ("rate", "s2c:1.5mbit"),
            ("queue", "s2c:100"),
            ("reorder", "s2c:10%"),
            ("hold", "s2c:2"),
            ("tcp-delay", "20ms"),
        ]);
        assert_eq!(
            config.describe(),
            "c2s: drop every 5th datagram from the 7th, 5% loss, 40ms delay ± 10ms (normal); \
             s2c: Gilbert-Elliott loss (p 5%, r 50%, 1-h 100%, 1-k 0%: about 9.0909% lost in \
             the long run), 10% held back until 2 later datagrams passed or 200ms, 40ms delay \
             ± 10ms (normal), 1.5 Mbit/s link with a queue of 100 datagrams; tcp: 20ms delay."
        );
        let same = applied(&[("loss", "1%"), ("drop-nth", "3"), ("corrupt", "0.1%")]);
        assert_eq!(
            same.describe(),
            "both directions: drop the 3rd datagram, 1% loss, 0.1% corrupted (one bit flipped)."
        );
        let one = applied(&[("duplicate", "s2c:2%"), ("tcp-rate", "64kbit")]);
        assert_eq!(
            one.describe(),
            "c2s: no impairment; s2c: 2% duplicated; tcp: paced at 64 kbit/s."
        );
    }

    #[test]
    fn model_is_seeded_from_the_config() {
        let config = applied(&[("loss", "50%")]);
        let mut a = config.model(9);
        let mut b = config.model(9);
        for i in 0..100u32 {
            let now = MS * i;
            for direction in Direction::BOTH {
                assert_eq!(
                    a.direction_mut(direction).decide(b"x", now),
                    b.direction_mut(direction).decide(b"x", now)
                );
            }
        }
    }

    #[test]
    fn locating_keys() {
        let text = "seed: 1\nc2s:\n  # comment\n  hold-timeout: 1s\n  hold: 2\ns2c: {loss: 1%}\n";
        assert_eq!(locate(text, None, "seed"), Some(1));
        assert_eq!(locate(text, Some("c2s"), "hold"), Some(5));
        assert_eq!(locate(text, Some("c2s"), "hold-timeout"), Some(4));
        assert_eq!(locate(text, Some("s2c"), "loss"), Some(6));
        assert_eq!(locate(text, Some("c2s"), "rate"), Some(2));
        assert_eq!(locate(text, Some("tcp"), "rate"), None);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(percent(0.05), "5%");
        assert_eq!(percent(0.001), "0.1%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show_duration(Duration::from_micros(250)), "250us");
        assert_eq!(show_rate(1_000_000), "1 Mbit/s");
        assert_eq!(show_rate(999), "999 bit/s");
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(ordinal(23), "23rd");
    }
}
