//! Lock-free instruments: counters, gauges and bounded histograms on atomics, and the
//! sampler that decides which calls are timed.

use std::{
    borrow::Cow,
    cell::Cell,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::Serialize;

/// Upper bounds (seconds) of the latency buckets: 50 µs to 60 s, roughly x2.5 apart.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as f64 bits).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Upper bounds (bytes) for size histograms: powers of four from 1 KiB to 16 GiB.
pub const BYTE_BUCKETS: [f64; 13] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    4_294_967_296.0,
    17_179_869_184.0,
];

/// A fixed-bucket histogram of seconds (or any base unit). Memory is bounded by the
/// bucket count whatever is recorded.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, rising: the shared latency bounds, or a plugin's own.
    bounds: Cow<'static, [f64]>,
    /// One slot per bound, plus the overflow (`+Inf`) slot.
    buckets: Box<[AtomicU64]>,
    /// Sum of recorded values in nanounits.
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        // Borrowed: every component has three of these, and a thousand components
        // should not hold three thousand copies of one table.
        Self::over(Cow::Borrowed(&LATENCY_BUCKETS))
    }
}

/// A histogram's state at one moment. Counts are exact: a histogram fed a sample of
/// events counts the sample, and says so in its help text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`; the last bound is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of values.
    pub sum: f64,
    /// Number of values.
    pub count: f64,
}

/// Estimated quantiles of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Events the estimate rests on.
    pub count: f64,
}

impl Histogram {
    /// A histogram with the given upper bounds (rising).
    pub fn with_bounds(bounds: &[f64]) -> Self {
        Self::over(Cow::Owned(bounds.to_vec()))
    }

    fn over(bounds: Cow<'static, [f64]>) -> Self {
        Self {
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one value: two relaxed atomic additions (its bucket and the sum); the
    /// count is the buckets' total.
    #[inline]
    pub fn record(&self, value: f64) {
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos
            .fetch_add((value.max(0.0) * 1e9) as u64, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Cumulative bucket counts, sum and count.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0u64;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let bound = self.bounds.get(index).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative as f64));
        }
        HistogramSnapshot {
            buckets,
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            count: cumulative as f64,
        }
    }
}

impl HistogramSnapshot {
    /// Estimates quantile `q` (0-1) by linear interpolation inside its bucket.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return 0.0;
        }
        let rank = q * self.count;
        let mut lower_bound = 0.0;
        let mut lower_count = 0.0;
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank {
                if bound.is_infinite() {
                    return lower_bound;
                }
                let in_bucket = cumulative - lower_count;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower_count) / in_bucket
                } else {
                    0.0
                };
                return lower_bound + (bound - lower_bound) * fraction;
            }
            lower_bound = bound;
            lower_count = cumulative;
        }
        lower_bound
    }

    /// p50, p95 and p99.
    pub fn quantiles(&self) -> Quantiles {
        Quantiles {
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            p99: self.quantile(0.99),
            count: self.count,
        }
    }
}

/// Decides which events are timed: each with probability `rate`, using a per-thread
/// xorshift generator (no lock, no system call).
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    threshold: u64,
    rate: f64,
    /// The share of events whose CPU time is read (see [`Self::sample_cpu`]).
    cpu_threshold: u64,
    cpu_rate: f64,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // Distinct per thread: the address of a thread-local plus the time.
    let local = 0u8;
    let address = &local as *const u8 as u64;
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (address ^ time.rotate_left(17)) | 1
}

impl Sampler {
    /// A sampler keeping a `rate` share (clamped to 0-1) of events.
    pub fn new(rate: f64) -> Self {
        let rate = rate.clamp(0.0, 1.0);
        Self {
            threshold: (rate * u64::MAX as f64) as u64,
            rate,
            cpu_threshold: 0,
            cpu_rate: 0.0,
        }
    }

    /// This sampler, keeping a `rate` share (clamped to 0-1) of events for a CPU time
    /// reading too. A thread's CPU clock is a system call (0.2-0.8 us on the machines
    /// here), so it is read more sparingly than the wall clock.
    pub fn with_cpu_rate(self, rate: f64) -> Self {
        let rate = rate.clamp(0.0, 1.0);
        Self {
            cpu_threshold: (rate * u64::MAX as f64) as u64,
            cpu_rate: rate,
            ..self
        }
    }

    /// The share of events whose CPU time is read.
    pub fn cpu_rate(&self) -> f64 {
        self.cpu_rate
    }

    /// Whether to read this event's CPU time.
    #[inline]
    pub fn sample_cpu(&self) -> bool {
        if self.cpu_rate >= 1.0 {
            return true;
        }
        self.cpu_threshold > 0 && next_random() < self.cpu_threshold
    }

    /// The share of events kept.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether to time this event.
    #[inline]
    pub fn sample(&self) -> bool {
        if self.rate >= 1.0 {
            return true;
        }
        next_random() < self.threshold
    }
}

/// The next number of this thread's xorshift generator.
#[inline]
fn next_random() -> u64 {
    RNG.with(|cell| {
        let mut x = cell.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cell.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounded() {
        let histogram = Histogram::default();
        for value in [0.000_01, 0.003, 0.003, 2.0, 1000.0] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5.0);
        assert_eq!(snapshot.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(snapshot.buckets[0], (0.000_05, 1.0));
        let at = |bound: f64| {
            snapshot
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .unwrap()
                .1
        };
        assert_eq!(at(0.005), 3.0);
        assert_eq!(at(2.5), 4.0);
        assert_eq!(snapshot.buckets.last().unwrap(), &(f64::INFINITY, 5.0));
        assert!((snapshot.sum - 1_002.006_01).abs() < 1e-6);
    }

    #[test]
    fn quantiles_fall_inside_the_right_buckets() {
        let histogram = Histogram::default();
        for _ in 0..90 {
            histogram.record(0.002);
        }
        for _ in 0..10 {
            histogram.record(0.2);
        }
        let q = histogram.snapshot().quantiles();
        assert!(q.p50 > 0.001 && q.p50 <= 0.0025, "{q:?}");
        assert!(q.p99 > 0.1 && q.p99 <= 0.25, "{q:?}");
    }

    #[test]
    fn counts_are_exact_and_the_count_is_the_buckets_total() {
        let histogram = Histogram::default();
        for value in [0.0001, 0.002, 0.002, 0.2, 1e6] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 5.0);
        assert_eq!(histogram.count(), 5);
        assert_eq!(snapshot.buckets.last().map(|b| b.1), Some(5.0));
        assert!((snapshot.sum - (0.0001 + 0.004 + 0.2 + 1e6)).abs() < 1e-6);
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        assert!((0..1000).all(|_| Sampler::new(1.0).sample()));
        assert!((0..1000).all(|_| !Sampler::new(0.0).sample()));
    }
}
