//! Round-trip statistics: ping's summary line (min/avg/max/mdev) for the echo client and
//! latency percentiles for the load generator. Pure functions over recorded samples.

use std::time::Duration;

use serde::Serialize;

/// ping's summary of a set of round-trip times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RttSummary {
    /// The fastest round trip.
    pub min: Duration,
    /// The mean.
    pub avg: Duration,
    /// The slowest.
    pub max: Duration,
    /// The mean deviation as iputils ping computes it: sqrt(mean(x^2) - mean(x)^2),
    /// i.e. the population standard deviation.
    pub mdev: Duration,
}

impl RttSummary {
    /// Summarises `samples`, or `None` when there are none (every request was lost).
    pub fn of(samples: &[Duration]) -> Option<RttSummary> {
        let min = *samples.iter().min()?;
        let max = *samples.iter().max()?;
        let n = samples.len() as f64;
        let secs: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        let mean = secs.iter().sum::<f64>() / n;
        let mean_sq = secs.iter().map(|s| s * s).sum::<f64>() / n;
        // Rounding can make the difference slightly negative for identical samples.
        let mdev = (mean_sq - mean * mean).max(0.0).sqrt();
        Some(RttSummary {
            min,
            avg: Duration::from_secs_f64(mean),
            max,
            mdev: Duration::from_secs_f64(mdev),
        })
    }
}

/// Latency percentiles in microseconds, as the load generator reports them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest sample.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Percentiles {
    /// Computes percentiles of `samples_ns` (nanoseconds), sorting it in place.
    /// Uses the nearest-rank method: the p-th percentile is the smallest sample such
    /// that at least p% of samples are less than or equal to it.
    pub fn of(samples_ns: &mut [u64]) -> Percentiles {
        if samples_ns.is_empty() {
            return Percentiles::default();
        }
        samples_ns.sort_unstable();
        let rank = |p: f64| -> f64 {
            let n = samples_ns.len();
            let index = ((p / 100.0) * n as f64).ceil() as usize;
            samples_ns[index.clamp(1, n) - 1] as f64 / 1e3
        };
        let sum: u128 = samples_ns.iter().map(|&s| u128::from(s)).sum();
        Percentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples_ns[samples_ns.len() - 1] as f64 / 1e3,
            mean: sum as f64 / samples_ns.len() as f64 / 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_matches_ping_arithmetic() {
        let ms = |m: u64| Duration::from_millis(m);
        let s = RttSummary::of(&[ms(1), ms(2), ms(3), ms(4)]).unwrap();
        assert_eq!((s.min, s.max), (ms(1), ms(4)));
        assert!((s.avg.as_secs_f64() - 0.0025).abs() < 1e-9);
        // population standard deviation of 1,2,3,4 ms is sqrt(1.25) ms
        assert!((s.mdev.as_secs_f64() - 1.25f64.sqrt() / 1e3).abs() < 1e-9);
        assert_eq!(RttSummary::of(&[]), None);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut samples: Vec<u64> = (1..=100).rev().map(|i| i * 1000).collect();
        let p = Percentiles::of(&mut samples);
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert!((p.mean - 50.5).abs() < 1e-9);
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
        assert_eq!(Percentiles::of(&mut [7000]).p99, 7.0);
    }
}
