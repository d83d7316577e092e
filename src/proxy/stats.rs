//! The proxy's counters and its summary table (lab 2): what happened to the datagrams
//! of each direction, to the UDP client table, and to the relayed TCP connections.
//!
//! The relays update [`Counters`] (atomics: the UDP relay and every TCP connection
//! task write to them concurrently); [`Counters::snapshot`] copies them into a plain
//! [`ProxySummary`], which [`render_summary`] turns into a table. The renderer returns a
//! string and never prints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use comfy_table::{Cell, CellAlignment};
use serde::Serialize;

use super::model::{DecisionCounts, Direction};
use crate::output::table;

/// Adds `n` to a counter. Relaxed ordering: each counter is a statistic read on its
/// own, nothing is synchronised through it.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The live counters of one UDP direction. The decision counts (drops by the model,
/// duplicates, corruptions, holds, delays) are the model's own totals, mirrored after
/// every decision, so the table says exactly what the model decided; the rest is
/// counted by the relay as it receives and sends.
#[derive(Debug, Default)]
pub struct DirectionCounters {
    pub(crate) received: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) forwarded_bytes: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    /// Datagrams dropped because the proxy's own bound on waiting datagrams was
    /// reached (not the model's rate queue).
    pub(crate) dropped_overflow: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_rule: AtomicU64,
    dropped_queue: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    reordered: AtomicU64,
    delayed: AtomicU64,
}

impl DirectionCounters {
    /// Copies the model's running totals of its decisions.
    pub(crate) fn mirror(&self, counts: &DecisionCounts) {
        let store = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        store(&self.dropped_loss, counts.dropped_loss);
        store(&self.dropped_rule, counts.dropped_rule);
        store(&self.dropped_queue, counts.dropped_queue);
        store(&self.duplicated, counts.duplicated);
        store(&self.corrupted, counts.corrupted);
        store(&self.reordered, counts.reordered);
        store(&self.delayed, counts.delayed);
    }

    fn snapshot(&self) -> DirectionSummary {
        DirectionSummary {
            received: get(&self.received),
            received_bytes: get(&self.received_bytes),
            forwarded: get(&self.forwarded),
            forwarded_bytes: get(&self.forwarded_bytes),
            dropped_loss: get(&self.dropped_loss),
            dropped_rule: get(&self.dropped_rule),
            dropped_queue: get(&self.dropped_queue) + get(&self.dropped_overflow),
            duplicated: get(&self.duplicated),
            corrupted: get(&self.corrupted),
            reordered: get(&self.reordered),
            delayed: get(&self.delayed),
            send_errors: get(&self.send_errors),
        }
    }
}

/// The live counters of the UDP client table.
#[derive(Debug, Default)]
pub struct UdpCounters {
    pub(crate) mappings_created: AtomicU64,
    pub(crate) mappings_expired: AtomicU64,
    pub(crate) mappings_evicted: AtomicU64,
    pub(crate) mapping_failures: AtomicU64,
    pub(crate) unreachable: AtomicU64,
}

/// The live counters of the TCP relay.
#[derive(Debug, Default)]
pub struct TcpCounters {
    pub(crate) connections: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) c2s_bytes: AtomicU64,
    pub(crate) s2c_bytes: AtomicU64,
}

/// Every counter of a proxy run.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) c2s: DirectionCounters,
    pub(crate) s2c: DirectionCounters,
    pub(crate) udp: UdpCounters,
    pub(crate) tcp: TcpCounters,
}

impl Counters {
    /// The counters of one UDP direction.
    pub fn direction(&self, direction: Direction) -> &DirectionCounters {
        match direction {
            Direction::ClientToServer => &self.c2s,
            Direction::ServerToClient => &self.s2c,
        }
    }

    /// Copies the counters into a plain summary; `elapsed` is the run's duration so far.
    pub fn snapshot(&self, elapsed: Duration) -> ProxySummary {
        ProxySummary {
            elapsed,
            c2s: self.c2s.snapshot(),
            s2c: self.s2c.snapshot(),
            udp: UdpSummary {
                mappings_created: get(&self.udp.mappings_created),
                mappings_expired: get(&self.udp.mappings_expired),
                mappings_evicted: get(&self.udp.mappings_evicted),
                mapping_failures: get(&self.udp.mapping_failures),
                unreachable: get(&self.udp.unreachable),
            },
            tcp: TcpSummary {
                connections: get(&self.tcp.connections),
                refused: get(&self.tcp.refused),
                failed: get(&self.tcp.failed),
                c2s_bytes: get(&self.tcp.c2s_bytes),
                s2c_bytes: get(&self.tcp.s2c_bytes),
            },
        }
    }
}

/// What happened to the UDP datagrams of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DirectionSummary {
    /// Datagrams that arrived at the proxy.
    pub received: u64,
    /// Their bytes (payload only).
    pub received_bytes: u64,
    /// Datagrams sent on, duplicates included.
    pub forwarded: u64,
    /// Their bytes.
    pub forwarded_bytes: u64,
    /// Dropped by the loss model.
    pub dropped_loss: u64,
    /// Dropped by a scripted rule (`--drop-nth`, `--drop-every`, `--drop-match`).
    pub dropped_rule: u64,
    /// Dropped because a queue was full: the `--rate` queue (copies and released
    /// datagrams included), or the proxy's own bound on datagrams waiting to be sent.
    pub dropped_queue: u64,
    /// Datagrams given a second copy.
    pub duplicated: u64,
    /// Datagrams with one bit flipped (a duplicate carries the same flip).
    pub corrupted: u64,
    /// Datagrams held back, to be sent after later ones.
    pub reordered: u64,
    /// Datagrams sent with a delay above zero (`--delay`/`--jitter`; time spent in the
    /// rate queue is not counted here, and a delayed datagram the rate queue then
    /// dropped counts as a queue drop only).
    pub delayed: u64,
    /// Sends the operating system refused (other than "port unreachable").
    pub send_errors: u64,
}

impl DirectionSummary {
    /// Every dropped datagram, whatever the cause.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss + self.dropped_rule + self.dropped_queue
    }

    /// The share of received datagrams the proxy dropped, in percent (0 when none came).
    pub fn observed_loss_percent(&self) -> f64 {
        if self.received == 0 {
            0.0
        } else {
            self.dropped() as f64 * 100.0 / self.received as f64
        }
    }
}

/// What happened to the table of UDP clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpSummary {
    /// Client addresses that got an upstream socket.
    pub mappings_created: u64,
    /// Mappings removed after `--idle-timeout` without traffic.
    pub mappings_expired: u64,
    /// Mappings removed to make room (the least recently used, when the table is full).
    pub mappings_evicted: u64,
    /// Upstream sockets that could not be created (out of file descriptors...).
    pub mapping_failures: u64,
    /// "Port unreachable" reports from the upstream (nothing listening there).
    pub unreachable: u64,
}

/// What happened to the relayed TCP connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpSummary {
    /// Connections accepted from clients.
    pub connections: u64,
    /// Connections closed because the upstream refused (or did not answer).
    pub refused: u64,
    /// Connections that ended with an error (a reset) instead of a clean close.
    pub failed: u64,
    /// Bytes relayed from clients to the upstream.
    pub c2s_bytes: u64,
    /// Bytes relayed from the upstream to clients.
    pub s2c_bytes: u64,
}

/// Everything a proxy run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProxySummary {
    /// How long the proxy ran.
    pub elapsed: Duration,
    /// UDP, client to server.
    pub c2s: DirectionSummary,
    /// UDP, server to client.
    pub s2c: DirectionSummary,
    /// The UDP client table.
    pub udp: UdpSummary,
    /// The TCP relay.
    pub tcp: TcpSummary,
}

/// Renders the summary as a table, one row per counter, one column per direction:
///
/// ```text
/// proxy statistics after 12.3 s
/// ┌──────────────────┬──────────────────────┬──────────────────────┐
/// │                  ┆ c2s (client→server)  ┆ s2c (server→client)  │
/// ╞══════════════════╪══════════════════════╪══════════════════════╡
/// │ udp received     ┆ 200                  ┆ 140                  │
/// ...
/// ```
///
/// followed by a line about the UDP client table.
pub fn render_summary(summary: &ProxySummary) -> String {
    let mut rows = table(&["", "c2s (client→server)", "s2c (server→client)"]);
    let (c, s) = (&summary.c2s, &summary.s2c);
    let counts: [(&str, u64, u64); 12] = [
        ("udp received", c.received, s.received),
        ("forwarded", c.forwarded, s.forwarded),
        ("dropped: loss", c.dropped_loss, s.dropped_loss),
        ("dropped: rule", c.dropped_rule, s.dropped_rule),
        ("dropped: queue", c.dropped_queue, s.dropped_queue),
        ("duplicated", c.duplicated, s.duplicated),
        ("corrupted", c.corrupted, s.corrupted),
        ("reordered", c.reordered, s.reordered),
        ("delayed", c.delayed, s.delayed),
        ("send errors", c.send_errors, s.send_errors),
        ("bytes forwarded", c.forwarded_bytes, s.forwarded_bytes),
        ("tcp bytes", summary.tcp.c2s_bytes, summary.tcp.s2c_bytes),
    ];
    for (i, (name, c2s, s2c)) in counts.into_iter().enumerate() {
        rows.add_row(vec![
            Cell::new(name),
            Cell::new(c2s).set_alignment(CellAlignment::Right),
            Cell::new(s2c).set_alignment(CellAlignment::Right),
        ]);
        // Observed loss goes right after the drop causes it sums up.
        if i == 4 {
            rows.add_row(vec![
                Cell::new("observed loss %"),
                Cell::new(format!("{:.1}", c.observed_loss_percent()))
                    .set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}", s.observed_loss_percent()))
                    .set_alignment(CellAlignment::Right),
            ]);
        }
    }
    let udp = &summary.udp;
    let tcp = &summary.tcp;
    format!(
        "proxy statistics after {:.1} s\n{rows}\n\
         udp clients: {} mapped, {} expired, {} evicted, {} failed; upstream unreachable {} times\n\
         tcp connections: {} relayed, {} refused by the upstream, {} ended with an error",
        summary.elapsed.as_secs_f64(),
        udp.mappings_created,
        udp.mappings_expired,
        udp.mappings_evicted,
        udp.mapping_failures,
        udp.unreachable,
        tcp.connections,
        tcp.refused,
        tcp.failed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_loss_sums_every_cause() {
        let d = DirectionSummary {
            received: 200,
            dropped_loss: 30,
            dropped_rule: 1,
            dropped_queue: 9,
            ..DirectionSummary::default()
        };
        assert_eq!(d.dropped(), 40);
        assert!((d.observed_loss_percent() - 20.0).abs() < 1e-9);
        assert_eq!(DirectionSummary::default().observed_loss_percent(), 0.0);
    }

    #[test]
    fn snapshot_copies_counters_by_direction() {
        let counters = Counters::default();
        add(&counters.direction(Direction::ClientToServer).received, 3);
        let s2c = counters.direction(Direction::ServerToClient);
        s2c.mirror(&DecisionCounts {
            dropped_queue: 2,
            corrupted: 4,
            ..DecisionCounts::default()
        });
        add(&s2c.dropped_overflow, 1);
        add(&counters.tcp.c2s_bytes, 10);
        let summary = counters.snapshot(Duration::from_secs(2));
        assert_eq!(summary.c2s.received, 3);
        // The rate queue's drops and the proxy's own overflow are both queue drops.
        assert_eq!(summary.s2c.dropped_queue, 3);
        assert_eq!(summary.s2c.corrupted, 4);
        assert_eq!(summary.tcp.c2s_bytes, 10);
        assert_eq!(summary.elapsed, Duration::from_secs(2));
    }

    #[test]
    fn table_has_a_row_per_counter_and_the_client_line() {
        let summary = ProxySummary {
            c2s: DirectionSummary {
                received: 10,
                forwarded: 7,
                dropped_loss: 3,
                ..DirectionSummary::default()
            },
            udp: UdpSummary {
                mappings_created: 2,
                unreachable: 5,
                ..UdpSummary::default()
            },
            ..ProxySummary::default()
        };
        let text = render_summary(&summary);
        for expected in [
            "proxy statistics after 0.0 s",
            "c2s (client→server)",
            "dropped: loss",
            "dropped: queue",
            "observed loss %",
            "30.0",
            "tcp bytes",
            "udp clients: 2 mapped, 0 expired, 0 evicted, 0 failed; upstream unreachable 5 times",
            "tcp connections: 0 relayed",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let loss_row = text
            .lines()
            .find(|l| l.contains("observed loss %"))
            .unwrap();
        assert!(
            loss_row.contains("30.0") && loss_row.contains("0.0"),
            "{loss_row}"
        );
    }
}
