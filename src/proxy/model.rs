//! The impairment model of `socklab proxy` (lab 2): for every datagram, in one
//! direction, decide whether it is dropped, duplicated, corrupted, reordered and how
//! long it is delayed. Pure: no sockets, no clock, no OS randomness. The caller passes
//! the arrival time (virtual time in tests, time since the proxy started in `udp.rs`)
//! and the model owns one seeded ChaCha RNG per direction, so the same seed and the
//! same datagram sequence give the same decisions, whatever the timing (smoltcp's
//! `fault_injector` idea).
//!
//! Decisions are taken in this fixed order for each datagram:
//!
//! ```text
//!  arrival ──► 1 drop ──► 2 duplicate ──► 3 corrupt ──► 4 reorder ──► 5 delay ──► 6 rate queue ──► send
//!             rules,      second copy     flip one      hold back     base +       serialise at
//!             then the    right after     random bit    until N       jitter       BITS/s, drop
//!             loss model  the first       of payload    later ones                 if queue full
//! ```
//!
//! What each stage means exactly:
//!
//! 1. **Drop.** The scripted [`Rule`]s are checked first (`--drop-nth 3` drops the 3rd
//!    datagram of the direction; `--drop-every 5+2` drops 7, 12, 17, ...;
//!    `--drop-match RE` drops payloads the bytes regex matches), then the [`LossModel`]:
//!    Bernoulli (each datagram lost with probability p), Gilbert-Elliott or netem's
//!    4-state Markov chain (see each variant). The loss chain advances on *every*
//!    datagram, even one a rule dropped, so adding a rule never moves the random losses.
//!    A dropped datagram goes no further: it is never duplicated, corrupted, held or
//!    delayed.
//! 2. **Duplicate.** With probability `duplicate` a second copy is sent. The copy is
//!    identical to the original as it leaves the pipeline (same flipped bit, if any;
//!    same hold-back; same delay) and is scheduled [`DUPLICATE_SPACING`] (1 µs) later,
//!    so sorting by send time keeps it behind the original.
//! 3. **Corrupt.** With probability `corrupt` one bit, chosen uniformly among the
//!    payload's `8 × len` bits, is flipped ([`Emission::flip_bit`]). An empty payload has
//!    no bit to flip and is never corrupted.
//! 4. **Reorder.** A candidate datagram is held back with probability `reorder` until
//!    `hold` later datagrams of the direction have passed this stage, or `hold_timeout`
//!    after it arrived, whichever comes first; then it is released (and delayed like any
//!    other). "Passed" means reached this stage and was not held itself. With
//!    `gap N` (netem's meaning) a datagram is a candidate only once `N - 1` datagrams
//!    have passed since the last one held, so `--reorder 100% --gap 5` holds the 5th,
//!    10th, 15th, ... At most [`MAX_HELD`] datagrams are held at once.
//! 5. **Delay.** `delay ± jitter` in the chosen [`Distribution`], never negative.
//! 6. **Rate.** With a [`Rate`], the link sends one datagram at a time: a datagram
//!    reaching the link at `t` leaves at `max(t, link free) + 8 × len / rate` (payload
//!    bytes only, no IP/UDP headers), and at most `queue` datagrams may be waiting or on
//!    the wire; one more is dropped ([`DropCause::QueueFull`]). The link sees datagrams
//!    in decision order, which with jitter is an approximation (as in netem).
//!
//! **Randomness.** Each datagram takes the same fixed block of draws from its
//! direction's ChaCha8 stream, in a fixed order (loss transition, loss, duplicate,
//! corrupt, corrupt bit, reorder, two for the delay), whatever is configured and
//! whatever happens to it. So enabling a later stage never changes what an earlier stage
//! decided for the same seed, and the decisions for datagram *n* depend only on the
//! seed, the direction, the datagrams before it and its own payload. Draws are turned
//! into numbers here (not by `rand`'s distributions, which may draw a varying number of
//! times), so the mapping from seed to decisions is spelled out in this file.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How much later than the original the duplicate copy is scheduled.
pub const DUPLICATE_SPACING: Duration = Duration::from_micros(1);

/// The default of [`Reorder::hold`]: release after one later datagram, the smallest
/// reordering there is.
pub const DEFAULT_HOLD: u32 = 1;

/// The default of [`Reorder::hold_timeout`]: long enough to reorder a burst, short
/// enough that a ping-pong protocol (which sends nothing more until it gets an answer)
/// sees a late reply rather than a loss.
pub const DEFAULT_HOLD_TIMEOUT: Duration = Duration::from_millis(200);

/// The default of [`Rate::queue`], in datagrams: netem's default `limit`.
pub const DEFAULT_QUEUE: usize = 1000;

/// At most this many datagrams are held back at once; a datagram chosen to be held while
/// this many wait passes instead. Keeps memory bounded under a flood with `--reorder`.
pub const MAX_HELD: usize = 1024;

/// Shape α of the Pareto jitter. 3 is heavy-tailed yet has a finite variance, as
/// netem's table (`pareto.dist`) has.
const PARETO_SHAPE: f64 = 3.0;

/// The Pareto jitter is cut off at `delay + PARETO_CAP_JITTERS × jitter`, so one
/// datagram in a million is not held for minutes (netem's tables stop near 4 σ). The
/// cut touches about one datagram in 20,000.
const PARETO_CAP_JITTERS: f64 = 100.0;

/// Which way a datagram travels through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client towards the upstream server.
    ClientToServer,
    /// From the upstream server back to a client.
    ServerToClient,
}

impl Direction {
    /// Both directions, client to server first.
    pub const BOTH: [Direction; 2] = [Direction::ClientToServer, Direction::ServerToClient];

    /// The short name used on the command line and in logs: `c2s` or `s2c`.
    pub fn short_name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }

    /// The ChaCha stream of this direction: both directions start from the same seed but
    /// never share random numbers.
    fn stream(self) -> u64 {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// A probability in [0, 1] (the CLI and YAML take percentages: `20%`).
pub type Probability = f64;

/// How datagrams are lost.
#[derive(Debug, Clone, PartialEq)]
pub enum LossModel {
    /// Each datagram is lost independently with probability `p`.
    Bernoulli(Probability),
    /// Gilbert-Elliott, with netem's meaning of the parameters (`gemodel p r 1-h 1-k`):
    /// `p` good→bad, `r` bad→good, `one_minus_h` loss probability in the bad state
    /// (default 1), `one_minus_k` loss probability in the good state (default 0).
    ///
    /// As in netem, a datagram is lost with the loss probability of the state the chain
    /// is in when it arrives; then the chain moves. The chain starts in the good state.
    /// Bursts (runs in the bad state) last `1/r` datagrams on average, and the long-run
    /// loss is `(p (1-h) + r (1-k)) / (p + r)`.
    GilbertElliott {
        /// P(good -> bad).
        p: Probability,
        /// P(bad -> good).
        r: Probability,
        /// Loss probability in the bad state.
        one_minus_h: Probability,
        /// Loss probability in the good state.
        one_minus_k: Probability,
    },
    /// netem's 4-state Markov model (`state p13 p31 p32 p23 p14`), the "GI" model of
    /// Salsano et al.: state 1 good reception within a gap, state 2 good reception
    /// within a burst, state 3 loss within a burst, state 4 isolated loss within a gap.
    /// As in netem, every datagram first moves the chain (from the start state 1), and
    /// it is lost when the chain lands in state 3 or 4. Defaults as netem: p31 = 1 - p13,
    /// p32 = 0, p23 = 1, p14 = 0, which with p13 alone is Bernoulli loss p13.
    ///
    /// ```text
    ///             p14                 p13                 p32
    ///   4 loss ◄────── 1 good ───────────────► 3 loss ──────────► 2 good
    ///          ───────►       ◄───────────────        ◄──────────
    ///             1                   p31                 p23
    /// ```
    FourState {
        /// P(1 -> 3): a burst starts.
        p13: Probability,
        /// P(3 -> 1): the burst ends.
        p31: Probability,
        /// P(3 -> 2): a good datagram within the burst.
        p32: Probability,
        /// P(2 -> 3): back to losing within the burst.
        p23: Probability,
        /// P(1 -> 4): an isolated loss.
        p14: Probability,
    },
}

impl LossModel {
    /// Gilbert-Elliott with netem's defaults for the loss probabilities: everything
    /// lost in the bad state, nothing in the good one.
    pub fn gilbert_elliott(p: Probability, r: Probability) -> LossModel {
        LossModel::GilbertElliott {
            p,
            r,
            one_minus_h: 1.0,
            one_minus_k: 0.0,
        }
    }

    /// The 4-state model with netem's defaults for everything but `p13`.
    pub fn four_state(p13: Probability) -> LossModel {
        LossModel::FourState {
            p13,
            p31: 1.0 - p13,
            p32: 0.0,
            p23: 1.0,
            p14: 0.0,
        }
    }

    /// The fraction of datagrams lost in the long run (the stationary loss rate of the
    /// chain, from its start state), to compare with what a run observed.
    pub fn long_run_loss(&self) -> f64 {
        match *self {
            LossModel::Bernoulli(p) => p,
            LossModel::GilbertElliott {
                p,
                r,
                one_minus_h,
                one_minus_k,
            } => {
                if p + r == 0.0 {
                    // Never leaves the good state it starts in.
                    return one_minus_k;
                }
                (p * one_minus_h + r * one_minus_k) / (p + r)
            }
            LossModel::FourState {
                p13,
                p31,
                p32,
                p23,
                p14,
            } => four_state_long_run_loss(p13, p31, p32, p23, p14),
        }
    }
}

/// The stationary loss of the 4-state chain started in state 1. Balance equations:
/// π3 = π1 p13 / p31, π2 = π3 p32 / p23, π4 = π1 p14; loss = (π3 + π4) / Σπ. The
/// special cases are the chains that get stuck in the burst states.
fn four_state_long_run_loss(p13: f64, p31: f64, p32: f64, p23: f64, p14: f64) -> f64 {
    if p13 > 0.0 && p31 == 0.0 {
        // Once in the burst, never out: states 2 and 3 alone.
        if p32 == 0.0 {
            return 1.0;
        }
        if p23 == 0.0 {
            return 0.0;
        }
        return p23 / (p23 + p32);
    }
    if p13 > 0.0 && p32 > 0.0 && p23 == 0.0 {
        // State 2 is a trap the chain eventually falls into.
        return 0.0;
    }
    let pi1 = 1.0;
    let pi3 = if p13 > 0.0 { p13 / p31 } else { 0.0 };
    let pi2 = if pi3 > 0.0 && p32 > 0.0 {
        pi3 * p32 / p23
    } else {
        0.0
    };
    let pi4 = p14;
    (pi3 + pi4) / (pi1 + pi2 + pi3 + pi4)
}

/// The shape of the jitter around the base delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distribution {
    /// Uniform in [delay - jitter, delay + jitter).
    #[default]
    Uniform,
    /// Normal with mean (and median) `delay` and standard deviation `jitter`.
    Normal,
    /// Pareto (heavy tail to the right): never below `delay - jitter`, median `delay`,
    /// a quarter of the datagrams above `delay + 1.26 jitter`, one in ten above
    /// `delay + 3.4 jitter`, cut off at `delay + 100 jitter`. (A Pareto of shape 3
    /// shifted and scaled so that `jitter` is the distance from the minimum to the
    /// median.)
    Pareto,
}

impl Distribution {
    /// The name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
            Distribution::Pareto => "pareto",
        }
    }
}

/// Delay settings. Samples below zero are clamped to zero: a datagram cannot leave
/// before it arrived.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delay {
    /// The base (median) delay.
    pub delay: Duration,
    /// The spread around it (see [`Distribution`] for what it means in each shape).
    pub jitter: Duration,
    /// How the spread is distributed.
    pub distribution: Distribution,
}

/// Reordering settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Reorder {
    /// Probability that a candidate datagram is held back.
    pub probability: Probability,
    /// netem's gap: when set, a datagram is a candidate only once `gap - 1` datagrams
    /// have passed since the last one held (with 100%: every `gap`-th is held).
    pub gap: Option<u32>,
    /// A held datagram is released after this many later datagrams have passed.
    pub hold: u32,
    /// ...or after this long, if fewer came (a request/reply protocol may send
    /// nothing more until it gets an answer).
    pub hold_timeout: Duration,
}

impl Reorder {
    /// Reordering with `probability` and the defaults: no gap, [`DEFAULT_HOLD`],
    /// [`DEFAULT_HOLD_TIMEOUT`].
    pub fn new(probability: Probability) -> Reorder {
        Reorder {
            probability,
            gap: None,
            hold: DEFAULT_HOLD,
            hold_timeout: DEFAULT_HOLD_TIMEOUT,
        }
    }
}

/// A scripted drop rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Drop exactly the n-th datagram (1-based) of the direction.
    DropNth(u64),
    /// Drop every n-th datagram, starting at `offset + n` (`--drop-every 5+2` drops
    /// 7, 12, 17, ...; no offset drops 5, 10, 15, ...).
    DropEvery {
        /// The period.
        every: u64,
        /// The offset.
        offset: u64,
    },
    /// Drop datagrams whose payload matches (bytes regex).
    DropMatch(regex::bytes::Regex),
}

impl Rule {
    /// Whether this rule drops datagram `index` (1-based) carrying `payload`.
    pub fn matches(&self, index: u64, payload: &[u8]) -> bool {
        match self {
            Rule::DropNth(n) => index == *n,
            Rule::DropEvery { every, offset } => {
                *every > 0 && index > *offset && (index - offset) % every == 0
            }
            Rule::DropMatch(regex) => regex.is_match(payload),
        }
    }
}

// By hand because `Regex` has no `PartialEq`: two patterns are equal when their text is.
impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        match (self, other) {
            (Rule::DropNth(a), Rule::DropNth(b)) => a == b,
            (
                Rule::DropEvery { every, offset },
                Rule::DropEvery {
                    every: every_b,
                    offset: offset_b,
                },
            ) => every == every_b && offset == offset_b,
            (Rule::DropMatch(a), Rule::DropMatch(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// The impairments of one direction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impairments {
    /// Scripted drops, checked before the loss model.
    pub rules: Vec<Rule>,
    /// Random loss.
    pub loss: Option<LossModel>,
    /// Probability of sending a second copy.
    pub duplicate: Probability,
    /// Probability of flipping one random bit of the payload.
    pub corrupt: Probability,
    /// Reordering.
    pub reorder: Option<Reorder>,
    /// Delay and jitter.
    pub delay: Option<Delay>,
    /// Link rate in bits per second, and the queue bound in datagrams.
    pub rate: Option<Rate>,
}

impl Impairments {
    /// Whether nothing at all is configured (datagrams pass untouched and at once).
    pub fn is_none(&self) -> bool {
        *self == Impairments::default()
    }

    /// Whether these impairments can never change a datagram: nothing configured, or
    /// only settings that do nothing (`--loss 0%`, `--delay 0ms`, `--reorder 0%`...).
    /// Every datagram then passes untouched and at once, in arrival order, which is
    /// what lets the proxy skip the model altogether (its [`fast`](super::fast) path).
    pub fn is_transparent(&self) -> bool {
        let never_lost = match self.loss {
            None => true,
            Some(LossModel::Bernoulli(p)) => p <= 0.0,
            // It starts in the good state and loses there with 1-k; it reaches the bad
            // state only with p > 0, and loses there with 1-h.
            Some(LossModel::GilbertElliott {
                p,
                one_minus_h,
                one_minus_k,
                ..
            }) => one_minus_k <= 0.0 && (p <= 0.0 || one_minus_h <= 0.0),
            // Starting in state 1, it can only lose by moving to 3 or 4.
            Some(LossModel::FourState { p13, p14, .. }) => p13 <= 0.0 && p14 <= 0.0,
        };
        let never_held = self
            .reorder
            .as_ref()
            .is_none_or(|r| r.probability <= 0.0 || r.hold == 0);
        let never_delayed = self
            .delay
            .as_ref()
            .is_none_or(|d| d.delay.is_zero() && d.jitter.is_zero());
        let never_queued = self.rate.is_none_or(|r| r.bits_per_second == 0);
        self.rules.is_empty()
            && never_lost
            && self.duplicate <= 0.0
            && self.corrupt <= 0.0
            && never_held
            && never_delayed
            && never_queued
    }
}

/// Serialisation rate and queue bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Bits per second.
    pub bits_per_second: u64,
    /// Datagrams that may wait; more are dropped (tail drop) and counted.
    pub queue: usize,
}

impl Rate {
    /// A link of `bits_per_second` with the default queue ([`DEFAULT_QUEUE`]).
    pub fn new(bits_per_second: u64) -> Rate {
        Rate {
            bits_per_second,
            queue: DEFAULT_QUEUE,
        }
    }

    /// How long `len` payload bytes take on the wire (rounded down to a nanosecond).
    pub fn transmission_time(&self, len: usize) -> Duration {
        if self.bits_per_second == 0 {
            return Duration::ZERO;
        }
        let nanos = (len as u128 * 8 * 1_000_000_000) / u128::from(self.bits_per_second);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropCause {
    /// A scripted rule (`--drop-nth`, `--drop-every`, `--drop-match`).
    Rule,
    /// The loss model.
    Loss,
    /// The rate queue was full.
    QueueFull,
}

/// One datagram to put on the wire: which arrival it is, when, and how it was altered.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    /// The datagram's index in its direction (1-based, in arrival order).
    pub index: u64,
    /// When to send it (same time base as the arrival times).
    pub at: Duration,
    /// The bit to flip (bit 0 is the most significant bit of byte 0), if corrupted.
    pub flip_bit: Option<usize>,
    /// Whether this is the duplicate copy.
    pub duplicate: bool,
    /// Whether it was held back (reordered).
    pub reordered: bool,
}

impl Emission {
    /// Applies [`Emission::flip_bit`] to `payload` (the caller's copy of the datagram).
    /// A bit index beyond the payload is ignored.
    pub fn corrupt(&self, payload: &mut [u8]) {
        if let Some(bit) = self.flip_bit {
            if let Some(byte) = payload.get_mut(bit / 8) {
                // Bit 0 is the most significant bit, as in a packet diagram.
                *byte ^= 0x80 >> (bit % 8);
            }
        }
    }
}

/// What the model decided for one arriving datagram (and what it released because of
/// it: held datagrams whose `hold` count was reached, or whose timeout had passed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The arriving datagram's index (1-based, per direction).
    pub index: u64,
    /// Set when the arriving datagram is dropped.
    pub dropped: Option<DropCause>,
    /// Datagrams to send, possibly including earlier held ones; may be empty
    /// (dropped, or held back). When two have the same `at`, send them in this order.
    pub emissions: Vec<Emission>,
    /// Indices of *other* copies the rate queue dropped during this call: a duplicate
    /// copy, or a held datagram released now. (The arriving datagram's own queue drop
    /// is in `dropped`.)
    pub queue_dropped: Vec<u64>,
}

/// What [`DirectionModel::expire`] let go: held datagrams whose hold timeout passed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Released {
    /// The released datagrams (and copies) to send, in the order to send them.
    pub emissions: Vec<Emission>,
    /// Indices of released datagrams, or of their copies, that the rate queue dropped.
    pub queue_dropped: Vec<u64>,
}

impl Released {
    /// Whether nothing was released.
    pub fn is_empty(&self) -> bool {
        self.emissions.is_empty() && self.queue_dropped.is_empty()
    }
}

/// Running totals of one direction's decisions, kept by the model so that drops the
/// caller cannot see in a [`Verdict`] (queue drops of datagrams released by
/// [`DirectionModel::expire`]) are counted too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecisionCounts {
    /// Datagrams that arrived.
    pub arrived: u64,
    /// Dropped by a scripted rule.
    pub dropped_rule: u64,
    /// Dropped by the loss model.
    pub dropped_loss: u64,
    /// Dropped because the rate queue was full (copies and released ones included).
    pub dropped_queue: u64,
    /// Datagrams given a second copy.
    pub duplicated: u64,
    /// Datagrams with a bit flipped.
    pub corrupted: u64,
    /// Datagrams held back.
    pub reordered: u64,
    /// Datagrams given a delay above zero, counted when they leave with it (when the
    /// rate queue accepts them), so a datagram the queue drops is not counted here.
    pub delayed: u64,
    /// Emissions produced (copies included).
    pub emitted: u64,
}

/// One datagram's fixed block of random numbers, drawn whether or not each stage is
/// configured. The field order is the draw order; changing it changes every seeded run.
struct Draws {
    loss_transition: f64,
    loss: f64,
    duplicate: f64,
    corrupt: f64,
    corrupt_bit: u64,
    reorder: f64,
    delay_a: f64,
    delay_b: f64,
}

impl Draws {
    fn take(rng: &mut ChaCha8Rng) -> Draws {
        Draws {
            loss_transition: unit(rng),
            loss: unit(rng),
            duplicate: unit(rng),
            corrupt: unit(rng),
            corrupt_bit: rng.next_u64(),
            reorder: unit(rng),
            delay_a: unit(rng),
            delay_b: unit(rng),
        }
    }
}

/// A uniform number in [0, 1) from one 64-bit draw: the top 53 bits, the precision of
/// an `f64`.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    (rng.next_u64() >> 11) as f64 * SCALE
}

/// Maps a 64-bit draw onto `0..n` by multiplying and keeping the high word (Lemire's
/// method, without the rejection step: the bias is below n / 2^64, far below anything
/// a lab can measure, and the draw count stays fixed).
fn below(draw: u64, n: usize) -> usize {
    ((u128::from(draw) * n as u128) >> 64) as usize
}

/// Where the loss chain is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossState {
    /// Bernoulli loss, or no loss model: no memory.
    Memoryless,
    /// Gilbert-Elliott: in the bad state or not.
    GilbertElliott { bad: bool },
    /// The 4-state model: 1 to 4 as in netem.
    FourState(u8),
}

impl LossState {
    fn start(model: Option<&LossModel>) -> LossState {
        match model {
            Some(LossModel::GilbertElliott { .. }) => LossState::GilbertElliott { bad: false },
            Some(LossModel::FourState { .. }) => LossState::FourState(1),
            _ => LossState::Memoryless,
        }
    }

    /// Advances the chain by one datagram and says whether that datagram is lost.
    fn step(&mut self, model: Option<&LossModel>, draws: &Draws) -> bool {
        let u = draws.loss_transition;
        match (model, *self) {
            (Some(LossModel::Bernoulli(p)), _) => draws.loss < *p,
            (
                Some(LossModel::GilbertElliott {
                    p,
                    r,
                    one_minus_h,
                    one_minus_k,
                }),
                LossState::GilbertElliott { bad },
            ) => {
                // netem's order: the loss uses the state the datagram arrives in, then
                // the chain moves for the next one.
                let lost = draws.loss < if bad { *one_minus_h } else { *one_minus_k };
                let bad = if bad { u >= *r } else { u < *p };
                *self = LossState::GilbertElliott { bad };
                lost
            }
            (
                Some(LossModel::FourState {
                    p13,
                    p31,
                    p32,
                    p23,
                    p14,
                }),
                LossState::FourState(state),
            ) => {
                // netem's loss_4state: move first, lost if the new state is 3 or 4.
                let next = match state {
                    1 if u < *p14 => 4,
                    1 if u < p14 + p13 => 3,
                    1 => 1,
                    2 if u < *p23 => 3,
                    2 => 2,
                    3 if u < *p32 => 2,
                    3 if u < p32 + p31 => 1,
                    3 => 3,
                    _ => 1, // state 4 always returns to 1
                };
                *self = LossState::FourState(next);
                next == 3 || next == 4
            }
            _ => false,
        }
    }
}

/// What the later stages need to know about a datagram that passed the drop stage.
#[derive(Debug, Clone, Copy)]
struct Passed {
    index: u64,
    len: usize,
    duplicate: bool,
    flip_bit: Option<usize>,
    delay: Duration,
}

/// A datagram held back by the reorder stage.
#[derive(Debug, Clone, Copy)]
struct Held {
    datagram: Passed,
    /// When the hold timeout releases it.
    deadline: Duration,
    /// How many more datagrams must pass before it is released.
    remaining: u32,
}

/// The decision state of one direction. Construct with [`DirectionModel::new`].
#[derive(Debug)]
pub struct DirectionModel {
    direction: Direction,
    impairments: Impairments,
    rng: ChaCha8Rng,
    /// Index of the last datagram that arrived (0 before the first).
    index: u64,
    loss_state: LossState,
    /// Datagrams that passed the reorder stage since the last one held (netem's
    /// `counter`, for `gap`).
    since_held: u64,
    held: VecDeque<Held>,
    /// When the link finishes sending what it has accepted.
    link_free: Duration,
    /// Departure times of datagrams accepted by the link and not yet gone, oldest
    /// first; its length is the queue occupancy.
    link_queue: VecDeque<Duration>,
    counts: DecisionCounts,
}

impl DirectionModel {
    /// A model for `direction` with `impairments`, seeded by `seed` (each direction
    /// derives its own stream from the same seed).
    pub fn new(direction: Direction, impairments: Impairments, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(direction.stream());
        DirectionModel {
            direction,
            loss_state: LossState::start(impairments.loss.as_ref()),
            impairments,
            rng,
            index: 0,
            since_held: 0,
            held: VecDeque::new(),
            link_free: Duration::ZERO,
            link_queue: VecDeque::new(),
            counts: DecisionCounts::default(),
        }
    }

    /// The direction this model decides for.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The impairments it applies.
    pub fn impairments(&self) -> &Impairments {
        &self.impairments
    }

    /// The running totals of its decisions.
    pub fn counts(&self) -> DecisionCounts {
        self.counts
    }

    /// How many datagrams are held back right now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Decides the fate of a datagram of `payload` arriving at `now`.
    ///
    /// Held datagrams whose timeout passed by `now` are released first (at their
    /// deadline), so the outcome does not depend on whether the caller called
    /// [`DirectionModel::expire`] in time. Arrival times must not go backwards.
    pub fn decide(&mut self, payload: &[u8], now: Duration) -> Verdict {
        self.index += 1;
        let index = self.index;
        // Always the same draws, first, whatever happens below (see the module docs).
        let draws = Draws::take(&mut self.rng);
        self.counts.arrived += 1;
        let mut verdict = Verdict {
            index,
            ..Verdict::default()
        };
        self.release_expired(now, &mut verdict.emissions, &mut verdict.queue_dropped);

        // 1. Drop: rules, then the loss chain, which steps even when a rule matched.
        let ruled = self
            .impairments
            .rules
            .iter()
            .any(|rule| rule.matches(index, payload));
        let lost = self.loss_state.step(self.impairments.loss.as_ref(), &draws);
        if ruled || lost {
            let cause = if ruled {
                self.counts.dropped_rule += 1;
                DropCause::Rule
            } else {
                self.counts.dropped_loss += 1;
                DropCause::Loss
            };
            verdict.dropped = Some(cause);
            return verdict;
        }

        // 2. Duplicate.
        let duplicate = draws.duplicate < self.impairments.duplicate;
        if duplicate {
            self.counts.duplicated += 1;
        }

        // 3. Corrupt: one of the payload's bits; an empty payload has none.
        let bits = payload.len() * 8;
        let flip_bit = (draws.corrupt < self.impairments.corrupt && bits > 0)
            .then(|| below(draws.corrupt_bit, bits));
        if flip_bit.is_some() {
            self.counts.corrupted += 1;
        }

        // 5. The delay is sampled now, from this datagram's draws, and applied when it
        // leaves the reorder stage.
        let delay = self.impairments.delay.as_ref().map_or(Duration::ZERO, |d| {
            sample_delay(d, draws.delay_a, draws.delay_b)
        });
        let passed = Passed {
            index,
            len: payload.len(),
            duplicate,
            flip_bit,
            delay,
        };

        // 4. Reorder.
        if let Some(hold_timeout) = self.chooses_to_hold(draws.reorder) {
            self.counts.reordered += 1;
            self.held.push_back(Held {
                datagram: passed,
                deadline: now.saturating_add(hold_timeout),
                remaining: self.impairments.reorder.as_ref().map_or(1, |r| r.hold),
            });
            return verdict;
        }

        // 5 and 6 for this datagram, then the held ones it was the last to wait for.
        if !self.send(
            &passed,
            now,
            false,
            &mut verdict.emissions,
            &mut verdict.queue_dropped,
        ) {
            verdict.dropped = Some(DropCause::QueueFull);
        }
        let mut released = Vec::new();
        self.held.retain_mut(|held| {
            held.remaining = held.remaining.saturating_sub(1);
            if held.remaining == 0 {
                released.push(held.datagram);
            }
            held.remaining > 0
        });
        for datagram in released {
            self.send_released(
                &datagram,
                now,
                &mut verdict.emissions,
                &mut verdict.queue_dropped,
            );
        }
        verdict
    }

    /// Releases held datagrams whose hold timeout has passed by `now`. Each leaves at
    /// its deadline plus its delay (not at `now`, so a late call changes nothing). A
    /// released datagram the rate queue drops (or its copy) is named in
    /// [`Released::queue_dropped`] and counted in [`DirectionModel::counts`].
    pub fn expire(&mut self, now: Duration) -> Released {
        let mut released = Released::default();
        self.release_expired(now, &mut released.emissions, &mut released.queue_dropped);
        released
    }

    /// When the next held datagram times out, if any (so the caller can sleep until
    /// then).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.held.iter().map(|held| held.deadline).min()
    }

    /// Whether the reorder stage holds this datagram back; if so, for how long at most.
    fn chooses_to_hold(&mut self, draw: f64) -> Option<Duration> {
        let reorder = self.impairments.reorder.as_ref()?;
        // netem: gap 0 or 1 both mean "every datagram is a candidate".
        let gap = u64::from(reorder.gap.unwrap_or(1).max(1));
        let candidate = self.since_held >= gap - 1;
        if candidate && reorder.hold > 0 && draw < reorder.probability && self.held.len() < MAX_HELD
        {
            self.since_held = 0;
            Some(reorder.hold_timeout)
        } else {
            self.since_held = self.since_held.saturating_add(1);
            None
        }
    }

    /// Releases, in arrival order, the held datagrams whose deadline is at or before
    /// `now`.
    fn release_expired(
        &mut self,
        now: Duration,
        emissions: &mut Vec<Emission>,
        queue_dropped: &mut Vec<u64>,
    ) {
        let mut expired = Vec::new();
        self.held.retain(|held| {
            let due = held.deadline <= now;
            if due {
                expired.push(*held);
            }
            !due
        });
        for held in expired {
            self.send_released(&held.datagram, held.deadline, emissions, queue_dropped);
        }
    }

    fn send_released(
        &mut self,
        datagram: &Passed,
        released_at: Duration,
        emissions: &mut Vec<Emission>,
        queue_dropped: &mut Vec<u64>,
    ) {
        if !self.send(datagram, released_at, true, emissions, queue_dropped) {
            queue_dropped.push(datagram.index);
        }
    }

    /// Stages 5 and 6 for a datagram leaving the reorder stage at `left_at`: delay it,
    /// put it and its copy (if any) on the link. Returns false when the original was
    /// dropped by the full queue (its copy is then not attempted: it would find the
    /// queue just as full).
    fn send(
        &mut self,
        datagram: &Passed,
        left_at: Duration,
        reordered: bool,
        emissions: &mut Vec<Emission>,
        queue_dropped: &mut Vec<u64>,
    ) -> bool {
        let at = left_at.saturating_add(datagram.delay);
        let Some(departure) = self.link(at, datagram.len) else {
            return false;
        };
        // Counted once it is sure to leave: a datagram the full queue drops was not
        // delayed but dropped (a flood would otherwise read "delayed" for every arrival).
        if !datagram.delay.is_zero() {
            self.counts.delayed += 1;
        }
        let emission = Emission {
            index: datagram.index,
            at: departure,
            flip_bit: datagram.flip_bit,
            duplicate: false,
            reordered,
        };
        if datagram.duplicate {
            match self.link(at.saturating_add(DUPLICATE_SPACING), datagram.len) {
                Some(copy_departure) => {
                    emissions.push(emission.clone());
                    emissions.push(Emission {
                        at: copy_departure,
                        duplicate: true,
                        ..emission
                    });
                    self.counts.emitted += 2;
                }
                None => {
                    emissions.push(emission);
                    queue_dropped.push(datagram.index);
                    self.counts.emitted += 1;
                }
            }
        } else {
            emissions.push(emission);
            self.counts.emitted += 1;
        }
        true
    }

    /// Stage 6: a datagram of `len` bytes reaches the link at `at`. Returns when it
    /// leaves, or `None` when the queue is full.
    fn link(&mut self, at: Duration, len: usize) -> Option<Duration> {
        let Some(rate) = self.impairments.rate.filter(|r| r.bits_per_second > 0) else {
            return Some(at);
        };
        while self.link_queue.front().is_some_and(|&gone| gone <= at) {
            self.link_queue.pop_front();
        }
        if self.link_queue.len() >= rate.queue {
            self.counts.dropped_queue += 1;
            return None;
        }
        let departure = at
            .max(self.link_free)
            .saturating_add(rate.transmission_time(len));
        self.link_free = departure;
        self.link_queue.push_back(departure);
        Some(departure)
    }
}

/// Stage 5: a delay from two uniform draws `a` and `b` in [0, 1).
fn sample_delay(delay: &Delay, a: f64, b: f64) -> Duration {
    let base = delay.delay.as_secs_f64();
    let jitter = delay.jitter.as_secs_f64();
    if jitter == 0.0 {
        return delay.delay;
    }
    let seconds = match delay.distribution {
        Distribution::Uniform => base + jitter * (2.0 * a - 1.0),
        Distribution::Normal => base + jitter * standard_normal(a, b),
        Distribution::Pareto => {
            // V = (1 - a)^(-1/α) is Pareto with minimum 1 and median 2^(1/α); map the
            // minimum to delay - jitter and the median to delay.
            let v = (1.0 - a).powf(-1.0 / PARETO_SHAPE);
            let median = 2f64.powf(1.0 / PARETO_SHAPE);
            let sample = base - jitter + jitter * (v - 1.0) / (median - 1.0);
            sample.min(base + PARETO_CAP_JITTERS * jitter)
        }
    };
    // Clamp: a datagram cannot leave before it arrived. (`max` also turns NaN into 0.)
    Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(delay.delay)
}

/// A standard normal number from two uniform draws (Box–Muller). `1 - a` is in (0, 1],
/// so the logarithm is finite.
fn standard_normal(a: f64, b: f64) -> f64 {
    (-2.0 * (1.0 - a).ln()).sqrt() * (std::f64::consts::TAU * b).cos()
}

/// Both directions' models, built from the same seed.
#[derive(Debug)]
pub struct Model {
    c2s: DirectionModel,
    s2c: DirectionModel,
}

impl Model {
    /// The two direction models for `c2s` and `s2c` impairments, seeded by `seed`.
    pub fn new(c2s: Impairments, s2c: Impairments, seed: u64) -> Model {
        Model {
            c2s: DirectionModel::new(Direction::ClientToServer, c2s, seed),
            s2c: DirectionModel::new(Direction::ServerToClient, s2c, seed),
        }
    }

    /// The model of `direction`.
    pub fn direction(&self, direction: Direction) -> &DirectionModel {
        match direction {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }

    /// The model of `direction`, to decide with.
    pub fn direction_mut(&mut self, direction: Direction) -> &mut DirectionModel {
        match direction {
            Direction::ClientToServer => &mut self.c2s,
            Direction::ServerToClient => &mut self.s2c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 20_240_601;
    const MS: Duration = Duration::from_millis(1);

    fn model(impairments: Impairments) -> DirectionModel {
        DirectionModel::new(Direction::ClientToServer, impairments, SEED)
    }

    /// Feeds `count` datagrams of `payload`, `spacing` apart from time zero.
    fn run(
        model: &mut DirectionModel,
        count: u64,
        payload: &[u8],
        spacing: Duration,
    ) -> Vec<Verdict> {
        (0..count)
            .map(|i| model.decide(payload, spacing * i as u32))
            .collect()
    }

    fn lost_flags(verdicts: &[Verdict]) -> Vec<bool> {
        verdicts.iter().map(|v| v.dropped.is_some()).collect()
    }

    fn fraction_lost(verdicts: &[Verdict]) -> f64 {
        verdicts.iter().filter(|v| v.dropped.is_some()).count() as f64 / verdicts.len() as f64
    }

    /// Lengths of the runs of consecutive losses.
    fn bursts(lost: &[bool]) -> Vec<usize> {
        let mut bursts = Vec::new();
        let mut current = 0;
        for &l in lost {
            if l {
                current += 1;
            } else if current > 0 {
                bursts.push(current);
                current = 0;
            }
        }
        if current > 0 {
            bursts.push(current);
        }
        bursts
    }

    fn with_loss(loss: LossModel) -> Impairments {
        Impairments {
            loss: Some(loss),
            ..Impairments::default()
        }
    }

    fn delays(distribution: Distribution, delay: u64, jitter: u64, n: u64) -> Vec<Duration> {
        let mut m = model(Impairments {
            delay: Some(Delay {
                delay: MS * delay as u32,
                jitter: MS * jitter as u32,
                distribution,
            }),
            ..Impairments::default()
        });
        run(&mut m, n, b"x", Duration::ZERO)
            .into_iter()
            .map(|v| v.emissions[0].at)
            .collect()
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    fn close(a: Duration, b: Duration, within: Duration) -> bool {
        a.max(b) - a.min(b) <= within
    }

    #[test]
    fn bernoulli_ten_percent_lands_within_half_a_point() {
        let mut m = model(with_loss(LossModel::Bernoulli(0.10)));
        let loss = fraction_lost(&run(&mut m, 100_000, b"ping", Duration::ZERO));
        assert!((loss - 0.10).abs() < 0.005, "observed {loss}");
        assert_eq!(m.counts().dropped_loss, (loss * 100_000.0).round() as u64);
    }

    #[test]
    fn gilbert_elliott_bursts_last_one_over_r() {
        let (p, r) = (0.05, 0.5);
        let mut m = model(with_loss(LossModel::gilbert_elliott(p, r)));
        let verdicts = run(&mut m, 200_000, b"ping", Duration::ZERO);
        let bursts = bursts(&lost_flags(&verdicts));
        let mean_burst = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
        assert!(
            (mean_burst - 1.0 / r).abs() <= 0.05 / r,
            "mean burst {mean_burst}"
        );
        let expected = p / (p + r);
        let loss = fraction_lost(&verdicts);
        assert!(
            (loss - expected).abs() <= 0.05 * expected,
            "loss {loss}, expected {expected}"
        );
        let model = LossModel::gilbert_elliott(p, r);
        assert!((model.long_run_loss() - expected).abs() < 1e-12);
    }

    #[test]
    fn gilbert_elliott_loses_with_each_states_probability() {
        // 1-h = 50%: only half of the bad state's datagrams are lost; 1-k = 1%.
        let (p, r, h1, k1) = (0.1, 0.4, 0.5, 0.01);
        let model_spec = LossModel::GilbertElliott {
            p,
            r,
            one_minus_h: h1,
            one_minus_k: k1,
        };
        let expected = (p * h1 + r * k1) / (p + r);
        assert!((model_spec.long_run_loss() - expected).abs() < 1e-12);
        let mut m = model(with_loss(model_spec));
        let loss = fraction_lost(&run(&mut m, 100_000, b"ping", Duration::ZERO));
        assert!(
            (loss - expected).abs() <= 0.05 * expected,
            "loss {loss}, expected {expected}"
        );
    }

    #[test]
    fn four_state_loses_at_its_stationary_rate() {
        let (p13, p31, p32, p23, p14) = (0.04, 0.5, 0.3, 0.6, 0.02);
        // Balance equations of the chain, solved by hand: with π1 = 1,
        // π3 = p13/p31 (flow 1→3 equals 3→1), π2 = π3 p32/p23 (2↔3), π4 = p14 (1→4→1).
        let pi3 = p13 / p31;
        let pi2 = pi3 * p32 / p23;
        let pi4 = p14;
        let expected = (pi3 + pi4) / (1.0 + pi2 + pi3 + pi4);
        let spec = LossModel::FourState {
            p13,
            p31,
            p32,
            p23,
            p14,
        };
        assert!((spec.long_run_loss() - expected).abs() < 1e-12);
        let mut m = model(with_loss(spec));
        let loss = fraction_lost(&run(&mut m, 200_000, b"ping", Duration::ZERO));
        assert!(
            (loss - expected).abs() <= 0.05 * expected,
            "loss {loss}, expected {expected}"
        );
    }

    #[test]
    fn four_state_with_p13_alone_is_bernoulli() {
        let mut m = model(with_loss(LossModel::four_state(0.2)));
        let loss = fraction_lost(&run(&mut m, 100_000, b"ping", Duration::ZERO));
        assert!((loss - 0.2).abs() < 0.005, "observed {loss}");
    }

    #[test]
    fn four_state_isolated_losses_come_alone() {
        // Only state 4: every loss is followed by a delivery (4 always returns to 1).
        let spec = LossModel::FourState {
            p13: 0.0,
            p31: 1.0,
            p32: 0.0,
            p23: 1.0,
            p14: 0.3,
        };
        let mut m = model(with_loss(spec));
        let lost = lost_flags(&run(&mut m, 10_000, b"ping", Duration::ZERO));
        assert!(bursts(&lost).iter().all(|&b| b == 1));
        assert!(lost.iter().any(|&l| l));
    }

    #[test]
    fn uniform_delay_has_its_median_and_bounds() {
        let samples = delays(Distribution::Uniform, 50, 10, 100_000);
        assert!(close(median(samples.clone()), 50 * MS, MS));
        assert!(samples.iter().all(|&d| (40 * MS..=60 * MS).contains(&d)));
    }

    #[test]
    fn normal_delay_has_its_median_and_two_thirds_within_one_sigma() {
        let samples = delays(Distribution::Normal, 50, 10, 100_000);
        assert!(close(median(samples.clone()), 50 * MS, MS));
        let within = samples
            .iter()
            .filter(|&&d| (40 * MS..=60 * MS).contains(&d))
            .count() as f64
            / samples.len() as f64;
        assert!((within - 0.6827).abs() < 0.01, "within one sigma: {within}");
    }

    #[test]
    fn pareto_delay_has_its_median_floor_and_heavy_tail() {
        let samples = delays(Distribution::Pareto, 50, 10, 100_000);
        assert!(close(median(samples.clone()), 50 * MS, MS));
        assert!(samples.iter().all(|&d| d >= 40 * MS));
        assert!(samples.iter().all(|&d| d <= 50 * MS + 100 * 10 * MS));
        // Heavier on the right than the left: the mean is above the median.
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        assert!(mean > 52 * MS, "mean {mean:?}");
    }

    #[test]
    fn delays_are_never_negative() {
        for distribution in [
            Distribution::Uniform,
            Distribution::Normal,
            Distribution::Pareto,
        ] {
            // Jitter larger than the delay: some samples fall below zero and are
            // clamped; arrival is at time zero, so `at` is the delay itself.
            let samples = delays(distribution, 5, 20, 10_000);
            assert!(samples.contains(&Duration::ZERO), "{distribution:?}");
        }
    }

    /// Everything on, so a decision log exercises every stage.
    fn everything() -> Impairments {
        Impairments {
            rules: vec![Rule::DropNth(7)],
            loss: Some(LossModel::gilbert_elliott(0.1, 0.5)),
            duplicate: 0.1,
            corrupt: 0.1,
            reorder: Some(Reorder::new(0.1)),
            delay: Some(Delay {
                delay: 20 * MS,
                jitter: 5 * MS,
                distribution: Distribution::Normal,
            }),
            rate: Some(Rate::new(1_000_000)),
        }
    }

    fn decision_log(seed: u64) -> Vec<Verdict> {
        let mut m = DirectionModel::new(Direction::ClientToServer, everything(), seed);
        (0..2_000u32)
            .map(|i| m.decide(&i.to_be_bytes(), MS * i))
            .collect()
    }

    #[test]
    fn same_seed_same_log_other_seed_another() {
        let first = decision_log(1);
        assert_eq!(first, decision_log(1));
        assert_ne!(first, decision_log(2));
    }

    #[test]
    fn directions_draw_from_different_streams() {
        let loss = with_loss(LossModel::Bernoulli(0.5));
        let mut c2s = DirectionModel::new(Direction::ClientToServer, loss.clone(), SEED);
        let mut s2c = DirectionModel::new(Direction::ServerToClient, loss, SEED);
        let a = lost_flags(&run(&mut c2s, 200, b"x", Duration::ZERO));
        let b = lost_flags(&run(&mut s2c, 200, b"x", Duration::ZERO));
        assert_ne!(a, b);
    }

    #[test]
    fn enabling_later_stages_keeps_earlier_decisions() {
        let loss_only = with_loss(LossModel::Bernoulli(0.3));
        let mut more = everything();
        more.rules.clear();
        more.loss = Some(LossModel::Bernoulli(0.3));
        let a = lost_flags(&run(&mut model(loss_only), 5_000, b"abc", MS));
        let b: Vec<bool> = run(&mut model(more), 5_000, b"abc", MS)
            .iter()
            .map(|v| matches!(v.dropped, Some(DropCause::Loss)))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn a_rule_does_not_move_the_random_losses() {
        let plain = with_loss(LossModel::gilbert_elliott(0.1, 0.3));
        let mut ruled = plain.clone();
        ruled.rules.push(Rule::DropEvery {
            every: 10,
            offset: 0,
        });
        let a = run(&mut model(plain), 1_000, b"x", MS);
        let b = run(&mut model(ruled), 1_000, b"x", MS);
        for (x, y) in a.iter().zip(&b) {
            if y.dropped != Some(DropCause::Rule) {
                assert_eq!(x.dropped, y.dropped, "datagram {}", x.index);
            }
        }
    }

    #[test]
    fn order_dropped_datagrams_go_no_further() {
        let mut m = model(Impairments {
            loss: Some(LossModel::Bernoulli(0.5)),
            duplicate: 1.0,
            corrupt: 1.0,
            delay: Some(Delay {
                delay: 10 * MS,
                ..Delay::default()
            }),
            ..Impairments::default()
        });
        let verdicts = run(&mut m, 1_000, b"payload", MS);
        for v in &verdicts {
            if v.dropped.is_some() {
                assert!(v.emissions.is_empty());
            } else {
                // Duplicated after corruption: both copies carry the same flipped bit,
                // the copy 1 µs behind, both delayed.
                let [first, copy] = &v.emissions[..] else {
                    panic!("expected two emissions, got {v:?}");
                };
                assert!(first.flip_bit.is_some());
                assert_eq!(first.flip_bit, copy.flip_bit);
                assert!(!first.duplicate && copy.duplicate);
                assert_eq!(copy.at, first.at + DUPLICATE_SPACING);
            }
        }
        let c = m.counts();
        assert_eq!(c.duplicated, c.corrupted);
        assert_eq!(c.duplicated + c.dropped_loss, 1_000);
    }

    #[test]
    fn order_rules_come_before_the_loss_model() {
        let mut impairments = with_loss(LossModel::Bernoulli(1.0));
        impairments.rules.push(Rule::DropNth(2));
        let verdicts = run(&mut model(impairments), 3, b"x", MS);
        let causes: Vec<_> = verdicts.iter().map(|v| v.dropped).collect();
        assert_eq!(
            causes,
            [
                Some(DropCause::Loss),
                Some(DropCause::Rule),
                Some(DropCause::Loss)
            ]
        );
    }

    #[test]
    fn reordered_datagram_is_released_after_exactly_hold_later_ones() {
        let mut m = model(Impairments {
            reorder: Some(Reorder {
                probability: 1.0,
                gap: Some(5),
                hold: 3,
                hold_timeout: Duration::from_secs(10),
            }),
            ..Impairments::default()
        });
        let verdicts = run(&mut m, 12, b"x", MS);
        assert!(verdicts[4].emissions.is_empty(), "the 5th is held");
        let sent: Vec<(u64, bool)> = verdicts
            .iter()
            .flat_map(|v| v.emissions.iter().map(|e| (e.index, e.reordered)))
            .collect();
        assert_eq!(
            sent,
            [
                (1, false),
                (2, false),
                (3, false),
                (4, false),
                (6, false),
                (7, false),
                (8, false),
                (5, true), // released by the 8th, the third after it
                (9, false),
                (11, false),
                (12, false),
            ]
        );
        // The 5th leaves when the 8th arrived; the 10th is still held.
        assert_eq!(verdicts[7].emissions[1].at, 7 * MS);
        assert_eq!(m.held(), 1);
    }

    #[test]
    fn hold_timeout_releases_at_the_deadline() {
        let timeout = 200 * MS;
        let mut m = model(Impairments {
            reorder: Some(Reorder {
                hold: 5,
                hold_timeout: timeout,
                ..Reorder::new(1.0)
            }),
            ..Impairments::default()
        });
        let first = m.decide(b"x", 10 * MS);
        assert!(first.emissions.is_empty());
        assert_eq!(m.next_deadline(), Some(210 * MS));
        assert!(m.expire(209 * MS).is_empty());
        // Called late: still released at its deadline, not at the call.
        let released = m.expire(500 * MS).emissions;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].at, 210 * MS);
        assert!(released[0].reordered);
        assert_eq!(m.next_deadline(), None);

        // Without an expire() call, the next arrival releases it first.
        let held = m.decide(b"x", Duration::from_secs(1));
        assert!(held.emissions.is_empty());
        let next = m.decide(b"x", Duration::from_secs(2));
        assert_eq!(next.emissions.len(), 1);
        assert_eq!(next.emissions[0].index, 2);
        assert_eq!(next.emissions[0].at, Duration::from_secs(1) + timeout);
    }

    #[test]
    fn rate_sends_one_datagram_per_millisecond_at_8_mbit() {
        let mut m = model(Impairments {
            rate: Some(Rate {
                bits_per_second: 8_000_000,
                queue: 1_000,
            }),
            ..Impairments::default()
        });
        let verdicts = run(&mut m, 1_000, &[0u8; 1000], Duration::ZERO);
        for (i, v) in verdicts.iter().enumerate() {
            assert_eq!(v.dropped, None);
            assert_eq!(v.emissions[0].at, MS * (i as u32 + 1));
        }
    }

    #[test]
    fn rate_queue_bound_drops_the_excess() {
        let mut m = model(Impairments {
            rate: Some(Rate {
                bits_per_second: 8_000_000,
                queue: 100,
            }),
            ..Impairments::default()
        });
        let verdicts = run(&mut m, 1_000, &[0u8; 1000], Duration::ZERO);
        let sent: Vec<&Verdict> = verdicts.iter().filter(|v| v.dropped.is_none()).collect();
        assert_eq!(sent.len(), 100);
        assert!(sent
            .iter()
            .enumerate()
            .all(|(i, v)| v.index == i as u64 + 1));
        assert!(verdicts[100..]
            .iter()
            .all(|v| v.dropped == Some(DropCause::QueueFull)));
        assert_eq!(m.counts().dropped_queue, 900);
        // Once the first has left, the queue takes one more.
        let later = m.decide(&[0u8; 1000], MS);
        assert_eq!(later.dropped, None);
        assert_eq!(later.emissions[0].at, 101 * MS);
    }

    fn dropped_indices(rule: Rule, payloads: &[&[u8]]) -> Vec<u64> {
        let mut m = model(Impairments {
            rules: vec![rule],
            ..Impairments::default()
        });
        payloads
            .iter()
            .map(|p| m.decide(p, Duration::ZERO))
            .filter(|v| v.dropped == Some(DropCause::Rule))
            .map(|v| v.index)
            .collect()
    }

    #[test]
    fn drop_nth_drops_exactly_that_one() {
        assert_eq!(dropped_indices(Rule::DropNth(3), &[&b"x"[..]; 10]), [3]);
    }

    #[test]
    fn drop_every_with_offset() {
        let rule = Rule::DropEvery {
            every: 5,
            offset: 2,
        };
        assert_eq!(dropped_indices(rule, &[&b"x"[..]; 20]), [7, 12, 17]);
        let rule = Rule::DropEvery {
            every: 5,
            offset: 0,
        };
        assert_eq!(dropped_indices(rule, &[&b"x"[..]; 12]), [5, 10]);
    }

    #[test]
    fn drop_match_looks_at_the_payload_bytes() {
        let rule = Rule::DropMatch(regex::bytes::Regex::new("^PING").unwrap());
        let payloads: [&[u8]; 4] = [b"PING 1", b"PONG 1", b"a PING", b"PING\xff"];
        assert_eq!(dropped_indices(rule, &payloads), [1, 4]);
    }

    #[test]
    fn empty_payload_is_never_corrupted() {
        let mut m = model(Impairments {
            corrupt: 1.0,
            ..Impairments::default()
        });
        let v = m.decide(b"", Duration::ZERO);
        assert_eq!(v.emissions[0].flip_bit, None);
        assert_eq!(m.counts().corrupted, 0);
    }

    #[test]
    fn corruption_flips_exactly_one_bit_within_the_payload() {
        let mut m = model(Impairments {
            corrupt: 1.0,
            ..Impairments::default()
        });
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2_000 {
            let v = m.decide(b"abc", Duration::ZERO);
            let bit = v.emissions[0].flip_bit.expect("corrupt is 100%");
            assert!(bit < 24);
            seen.insert(bit);
            let mut copy = *b"abc";
            v.emissions[0].corrupt(&mut copy);
            let changed: u32 = copy
                .iter()
                .zip(b"abc")
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(changed, 1);
        }
        assert_eq!(seen.len(), 24, "every bit gets chosen");
    }

    #[test]
    fn flip_bit_zero_is_the_most_significant_bit() {
        let emission = Emission {
            index: 1,
            at: Duration::ZERO,
            flip_bit: Some(0),
            duplicate: false,
            reordered: false,
        };
        let mut payload = [0u8, 0];
        emission.corrupt(&mut payload);
        assert_eq!(payload, [0x80, 0]);
    }

    #[test]
    fn no_impairment_passes_everything_at_once() {
        let mut m = model(Impairments::default());
        let v = m.decide(b"hello", 7 * MS);
        assert_eq!(
            v,
            Verdict {
                index: 1,
                dropped: None,
                emissions: vec![Emission {
                    index: 1,
                    at: 7 * MS,
                    flip_bit: None,
                    duplicate: false,
                    reordered: false,
                }],
                queue_dropped: vec![],
            }
        );
    }

    #[test]
    fn settings_that_do_nothing_are_transparent_and_pass_everything_at_once() {
        let transparent = [
            Impairments::default(),
            with_loss(LossModel::Bernoulli(0.0)),
            with_loss(LossModel::four_state(0.0)),
            // Never leaves the good state, where it loses nothing.
            with_loss(LossModel::GilbertElliott {
                p: 0.0,
                r: 0.5,
                one_minus_h: 1.0,
                one_minus_k: 0.0,
            }),
            Impairments {
                delay: Some(Delay::default()),
                reorder: Some(Reorder::new(0.0)),
                rate: Some(Rate::new(0)),
                ..Impairments::default()
            },
        ];
        for impairments in transparent {
            assert!(impairments.is_transparent(), "{impairments:?}");
            // What the claim means: the model never does anything to a datagram.
            let mut m = model(impairments);
            for (i, v) in run(&mut m, 1_000, b"payload", MS).iter().enumerate() {
                let expected = Emission {
                    index: i as u64 + 1,
                    at: MS * i as u32,
                    flip_bit: None,
                    duplicate: false,
                    reordered: false,
                };
                assert_eq!((v.dropped, &v.emissions[..]), (None, &[expected][..]));
            }
        }
    }

    #[test]
    fn anything_that_can_act_is_not_transparent() {
        let acting = [
            with_loss(LossModel::Bernoulli(0.01)),
            with_loss(LossModel::gilbert_elliott(0.01, 0.5)),
            // Loses in the good state it starts in.
            with_loss(LossModel::GilbertElliott {
                p: 0.0,
                r: 0.0,
                one_minus_h: 0.0,
                one_minus_k: 0.1,
            }),
            with_loss(LossModel::FourState {
                p13: 0.0,
                p31: 1.0,
                p32: 0.0,
                p23: 1.0,
                p14: 0.01,
            }),
            Impairments {
                rules: vec![Rule::DropNth(5)],
                ..Impairments::default()
            },
            Impairments {
                duplicate: 0.01,
                ..Impairments::default()
            },
            Impairments {
                corrupt: 0.01,
                ..Impairments::default()
            },
            Impairments {
                reorder: Some(Reorder::new(0.01)),
                ..Impairments::default()
            },
            Impairments {
                // No base delay, but a spread around it.
                delay: Some(Delay {
                    jitter: MS,
                    ..Delay::default()
                }),
                ..Impairments::default()
            },
            Impairments {
                rate: Some(Rate::new(1_000_000)),
                ..Impairments::default()
            },
        ];
        for impairments in acting {
            assert!(!impairments.is_transparent(), "{impairments:?}");
        }
    }

    #[test]
    fn delayed_counts_only_datagrams_the_rate_queue_accepted() {
        let mut m = model(Impairments {
            delay: Some(Delay {
                delay: 10 * MS,
                ..Delay::default()
            }),
            rate: Some(Rate {
                bits_per_second: 8_000_000,
                queue: 100,
            }),
            ..Impairments::default()
        });
        run(&mut m, 1_000, &[0u8; 1000], Duration::ZERO);
        let counts = m.counts();
        // A flood: the queue takes 100, drops the rest, and those were not delayed.
        assert_eq!((counts.delayed, counts.dropped_queue), (100, 900));
    }

    #[test]
    fn expire_names_the_released_datagrams_the_queue_dropped() {
        let mut m = model(Impairments {
            reorder: Some(Reorder {
                gap: Some(2),
                hold: 5,
                ..Reorder::new(1.0)
            }),
            // 1000 bytes take a second at 8 kbit/s; the queue holds one.
            rate: Some(Rate {
                bits_per_second: 8_000,
                queue: 1,
            }),
            ..Impairments::default()
        });
        // The 1st passes and occupies the link for a second; the 2nd is held.
        assert_eq!(m.decide(&[0u8; 1000], Duration::ZERO).emissions.len(), 1);
        assert!(m.decide(&[0u8; 1000], Duration::ZERO).emissions.is_empty());
        // Its hold timeout releases it into the full queue.
        let released = m.expire(DEFAULT_HOLD_TIMEOUT);
        assert_eq!(
            released,
            Released {
                emissions: vec![],
                queue_dropped: vec![2],
            }
        );
        assert_eq!(m.counts().dropped_queue, 1);
        assert!(m.expire(Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn held_datagrams_are_bounded() {
        let mut m = model(Impairments {
            reorder: Some(Reorder {
                hold_timeout: Duration::from_secs(3600),
                ..Reorder::new(1.0)
            }),
            ..Impairments::default()
        });
        let mut most = 0;
        for _ in 0..3 * MAX_HELD {
            m.decide(b"x", Duration::ZERO);
            most = most.max(m.held());
        }
        assert_eq!(most, MAX_HELD);
    }
}
