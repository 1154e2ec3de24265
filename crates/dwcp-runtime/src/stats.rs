//! A per-app summary of the last minutes: requests, errors, latency
//! quantiles, cold starts. What `dwcp metrics` shows; Prometheus keeps the
//! long history.
//!
//! Time is cut into [`SLOT_SECONDS`] slots, [`SLOTS`] of them kept in a
//! ring: a summary merges the slots of the window asked for. Latencies go
//! into log-scale buckets, four per doubling, so a quantile is known to
//! within 19% (it is reported as its bucket's upper bound).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Seconds one slot covers.
pub const SLOT_SECONDS: u64 = 10;
/// Slots kept: the longest window is `SLOTS * SLOT_SECONDS` (15 minutes).
pub const SLOTS: usize = 90;

/// Buckets per doubling of latency.
const STEPS: usize = 4;
/// The first bucket's upper bound, in microseconds.
const FIRST_US: f64 = 16.0;
/// 16 µs × 2^22 ≈ 67 s; slower requests share the last bucket.
const BUCKETS: usize = 22 * STEPS + 1;

#[derive(Clone, Default)]
struct Slot {
    /// Which slot of time this is (seconds since the epoch / SLOT_SECONDS).
    index: u64,
    requests: u64,
    errors: u64,
    cold_starts: u64,
    /// Allocated on first use: most apps are idle in most slots.
    latency: Option<Box<[u32; BUCKETS]>>,
}

/// The recent activity of one app, every version's.
pub struct AppStats {
    slots: Mutex<Vec<Slot>>,
    /// Responses not yet counted in the store's lifetime total.
    unflushed: AtomicU64,
}

impl Default for AppStats {
    fn default() -> Self {
        Self {
            slots: Mutex::new(vec![Slot::default(); SLOTS]),
            unflushed: AtomicU64::new(0),
        }
    }
}

/// What `dwcp metrics` shows for one app over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatsSummary {
    /// The window, in seconds (the slots it merged).
    pub window_seconds: u64,
    /// Responses sent.
    pub requests: u64,
    /// Responses per second over the window.
    pub requests_per_second: f64,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// Median time to response headers, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile, in milliseconds.
    pub p99_ms: Option<f64>,
    /// Instances created for a request (rather than reused).
    pub cold_starts: u64,
}

impl AppStats {
    /// Records one response.
    pub fn observe(&self, status: u16, seconds: f64) {
        self.unflushed.fetch_add(1, Ordering::Relaxed);
        self.with_slot(|slot| {
            slot.requests += 1;
            if status >= 500 {
                slot.errors += 1;
            }
            let latency = slot.latency.get_or_insert_with(|| Box::new([0; BUCKETS]));
            latency[bucket_of(seconds)] += 1;
        });
    }

    /// Responses recorded since the last call: what to add to the stored
    /// total.
    pub fn take_unflushed(&self) -> u64 {
        self.unflushed.swap(0, Ordering::Relaxed)
    }

    /// Records an instance created to serve a request.
    pub fn cold_start(&self) {
        self.with_slot(|slot| slot.cold_starts += 1);
    }

    fn with_slot(&self, f: impl FnOnce(&mut Slot)) {
        let index = now_slot();
        if let Ok(mut slots) = self.slots.lock() {
            let slot = &mut slots[(index % SLOTS as u64) as usize];
            if slot.index != index {
                *slot = Slot {
                    index,
                    ..Slot::default()
                };
            }
            f(slot);
        }
    }

    /// The activity of the last `window_seconds` (rounded up to whole
    /// slots, at most 15 minutes), the current slot included.
    pub fn summary(&self, window_seconds: u64) -> StatsSummary {
        self.summary_at(now_slot(), window_seconds)
    }

    fn summary_at(&self, now: u64, window_seconds: u64) -> StatsSummary {
        let wanted = window_seconds.div_ceil(SLOT_SECONDS).clamp(1, SLOTS as u64);
        let oldest = now.saturating_sub(wanted - 1);
        let mut requests = 0;
        let mut errors = 0;
        let mut cold_starts = 0;
        let mut latency = [0u64; BUCKETS];
        if let Ok(slots) = self.slots.lock() {
            for slot in slots.iter().filter(|s| (oldest..=now).contains(&s.index)) {
                requests += slot.requests;
                errors += slot.errors;
                cold_starts += slot.cold_starts;
                if let Some(l) = &slot.latency {
                    for (sum, n) in latency.iter_mut().zip(l.iter()) {
                        *sum += u64::from(*n);
                    }
                }
            }
        }
        let window = wanted * SLOT_SECONDS;
        StatsSummary {
            window_seconds: window,
            requests,
            requests_per_second: requests as f64 / window as f64,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: quantile(&latency, 0.50),
            p99_ms: quantile(&latency, 0.99),
            cold_starts,
        }
    }
}

fn now_slot() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        / SLOT_SECONDS
}

/// The bucket whose range holds `seconds`.
fn bucket_of(seconds: f64) -> usize {
    let us = seconds * 1e6;
    if us.is_nan() || us <= FIRST_US {
        return 0;
    }
    let steps = ((us / FIRST_US).log2() * STEPS as f64).ceil();
    (steps as usize).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn upper_ms(i: usize) -> f64 {
    FIRST_US * 2f64.powf(i as f64 / STEPS as f64) / 1e3
}

/// The upper bound of the bucket holding the `q` quantile.
fn quantile(latency: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in latency.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(upper_ms(i));
        }
    }
    Some(upper_ms(BUCKETS - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_bound_is_within_19_percent_above_the_value() {
        for us in [20.0, 100.0, 1_000.0, 12_345.0, 1e6, 30e6] {
            let bound = upper_ms(bucket_of(us / 1e6)) * 1e3;
            assert!(bound >= us && bound <= us * 1.19, "{us} µs → {bound}");
        }
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(f64::NAN), 0);
        assert_eq!(bucket_of(1e9), BUCKETS - 1);
    }

    #[test]
    fn quantiles_errors_and_cold_starts_over_a_window() {
        let stats = AppStats::default();
        for i in 0..100 {
            // 98 fast requests (1 ms), two slow failures (500 ms).
            let (status, seconds) = if i < 98 { (200, 0.001) } else { (500, 0.5) };
            stats.observe(status, seconds);
        }
        stats.cold_start();
        let s = stats.summary(60);
        assert_eq!(s.window_seconds, 60);
        assert_eq!((s.requests, s.errors, s.cold_starts), (100, 2, 1));
        assert!((s.error_rate - 0.02).abs() < 1e-9);
        let p50 = s.p50_ms.unwrap();
        assert!((1.0..1.19).contains(&p50), "{p50}");
        let p99 = s.p99_ms.unwrap();
        assert!((500.0..595.0).contains(&p99), "{p99}");
    }

    #[test]
    fn slots_older_than_the_window_do_not_count() {
        let stats = AppStats::default();
        stats.observe(200, 0.001);
        let now = now_slot();
        assert_eq!(stats.summary_at(now, 10).requests, 1);
        // Six slots later, a one-minute window still holds it; a 50 s one not.
        assert_eq!(stats.summary_at(now + 5, 60).requests, 1);
        assert_eq!(stats.summary_at(now + 5, 50).requests, 0);
        // A ring's worth of slots later, the slot is reused, not counted.
        assert_eq!(stats.summary_at(now + SLOTS as u64, 900).requests, 0);
        let empty = stats.summary_at(now + 1, 10);
        assert_eq!(
            (empty.requests, empty.p50_ms, empty.error_rate),
            (0, None, 0.0)
        );
    }
}
