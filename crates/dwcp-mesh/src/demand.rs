//! Where an app's requests enter the cluster, and the replica moves that
//! calls for.
//!
//! Each node counts the requests it takes for each app in slots of a few
//! seconds; the counts of the last window (5 minutes by default) give each
//! region's share. A region that sends at least `add_share` (20%) of an
//! app's requests and has no replica gets one, within the app's replica
//! budget; when the budget is full, the replica of the region with the
//! least demand (below `remove_share`) makes room. Decisions are a pure
//! function of the counts, sorted by share then name, so every node that
//! sees the same counts decides the same, and each comes with its numbers.

use std::collections::{BTreeMap, VecDeque};

/// Requests per region over a sliding window of slots.
#[derive(Debug, Clone)]
pub struct DemandWindow {
    slot_secs: u64,
    slots: usize,
    /// (slot number, requests per region), oldest first.
    counts: VecDeque<(u64, BTreeMap<String, u64>)>,
}

impl DemandWindow {
    /// A window of `window_secs` in slots of `slot_secs`.
    pub fn new(window_secs: u64, slot_secs: u64) -> Self {
        let slot_secs = slot_secs.max(1);
        Self {
            slot_secs,
            slots: window_secs.div_ceil(slot_secs).max(1) as usize,
            counts: VecDeque::new(),
        }
    }

    /// Counts `n` requests entering through `region` at `now` (Unix seconds).
    pub fn record(&mut self, now: u64, region: &str, n: u64) {
        let slot = now / self.slot_secs;
        self.expire(slot);
        match self.counts.back_mut() {
            Some((s, regions)) if *s == slot => {
                *regions.entry(region.to_string()).or_default() += n;
            }
            // A late count for an older slot joins the newest: close enough,
            // and the window never runs backwards.
            Some((s, regions)) if *s > slot => {
                *regions.entry(region.to_string()).or_default() += n;
            }
            _ => self
                .counts
                .push_back((slot, BTreeMap::from([(region.to_string(), n)]))),
        }
    }

    /// Requests per region within the window ending at `now`.
    pub fn totals(&mut self, now: u64) -> BTreeMap<String, u64> {
        self.expire(now / self.slot_secs);
        let mut totals = BTreeMap::new();
        for (_, regions) in &self.counts {
            for (region, n) in regions {
                *totals.entry(region.clone()).or_insert(0u64) += n;
            }
        }
        totals
    }

    fn expire(&mut self, slot: u64) {
        let oldest = slot.saturating_sub(self.slots as u64 - 1);
        while self.counts.front().is_some_and(|(s, _)| *s < oldest) {
            self.counts.pop_front();
        }
    }
}

/// When demand moves replicas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandPolicy {
    /// A region without a replica that sends at least this share gets one.
    pub add_share: f64,
    /// A replica's region whose share is below this may give it up.
    pub remove_share: f64,
    /// Requests in the window before demand decides anything.
    pub min_requests: u64,
}

impl Default for DemandPolicy {
    fn default() -> Self {
        Self {
            add_share: 0.2,
            remove_share: 0.05,
            min_requests: 100,
        }
    }
}

/// A replica move demand calls for, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Move {
    /// Place a replica in `region`.
    Add {
        /// Where.
        region: String,
        /// The region's share of the app's requests.
        share: f64,
    },
    /// Remove one replica from `region`.
    Remove {
        /// Where.
        region: String,
        /// The region's share of the app's requests.
        share: f64,
    },
}

/// The moves demand calls for, in the order to make them: `totals` are
/// requests per region in the window, `replicas` the app's replicas per
/// region, `budget` the most it may have. Deterministic. With the budget
/// full, the removal that makes room comes just before its add; removals
/// of regions whose demand is gone come last, after the adds, so an app
/// always keeps at least one replica.
pub fn moves(
    totals: &BTreeMap<String, u64>,
    replicas: &BTreeMap<String, u32>,
    budget: u32,
    policy: &DemandPolicy,
) -> Vec<Move> {
    let all: u64 = totals.values().sum();
    if all < policy.min_requests.max(1) {
        return Vec::new();
    }
    let share = |region: &str| totals.get(region).copied().unwrap_or(0) as f64 / all as f64;
    // Regions wanting a replica, most demand first (then by name).
    let mut wanted: Vec<(&str, f64)> = totals
        .keys()
        .map(|r| (r.as_str(), share(r)))
        .filter(|(r, s)| *s >= policy.add_share && replicas.get(*r).copied().unwrap_or(0) == 0)
        .collect();
    wanted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    // Regions that could give one up, least demand first.
    let mut spare: Vec<(&str, f64)> = replicas
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, _)| (r.as_str(), share(r)))
        .filter(|(_, s)| *s < policy.remove_share)
        .collect();
    spare.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
    let mut count: u32 = replicas.values().sum();
    let mut out = Vec::new();
    let mut spare = spare.into_iter();
    for (region, s) in wanted {
        if count >= budget {
            // Room only by moving a replica away from where demand went.
            match spare.next() {
                Some((from, fs)) if budget > 0 => {
                    out.push(Move::Remove {
                        region: from.to_string(),
                        share: fs,
                    });
                    count -= 1;
                }
                _ => break,
            }
        }
        if count < budget {
            out.push(Move::Add {
                region: region.to_string(),
                share: s,
            });
            count += 1;
        }
    }
    // Demand gone from a region, and another replica elsewhere: give it up.
    for (region, s) in spare {
        if count <= 1 {
            break;
        }
        if s == 0.0 {
            out.push(Move::Remove {
                region: region.to_string(),
                share: s,
            });
            count -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<T: Copy>(pairs: &[(&str, T)]) -> BTreeMap<String, T> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn the_window_slides_and_forgets_old_slots() {
        let mut w = DemandWindow::new(300, 10);
        w.record(1_000, "eu", 5);
        w.record(1_004, "eu", 5);
        w.record(1_100, "us", 7);
        assert_eq!(w.totals(1_100), map(&[("eu", 10), ("us", 7)]));
        // 300 s after the first slot, it is gone; the later one stays.
        assert_eq!(w.totals(1_300), map(&[("us", 7)]));
        assert_eq!(w.totals(1_400), BTreeMap::new());
        // A late count does not reopen the past.
        w.record(1_500, "eu", 1);
        w.record(1_200, "ap", 2);
        assert_eq!(w.totals(1_500), map(&[("ap", 2), ("eu", 1)]));
    }

    #[test]
    fn a_region_with_a_fifth_of_the_requests_gets_a_replica_within_budget() {
        let policy = DemandPolicy::default();
        let replicas = map(&[("eu", 1u32)]);
        // 25% from us, which has none: add there.
        let totals = map(&[("eu", 750u64), ("us", 250)]);
        assert_eq!(
            moves(&totals, &replicas, 3, &policy),
            vec![Move::Add {
                region: "us".into(),
                share: 0.25
            }]
        );
        // 19%: not enough.
        let totals = map(&[("eu", 810u64), ("us", 190)]);
        assert!(moves(&totals, &replicas, 3, &policy).is_empty());
        // Too few requests to say anything.
        let totals = map(&[("eu", 10u64), ("us", 40)]);
        assert!(moves(&totals, &replicas, 3, &policy).is_empty());
    }

    #[test]
    fn a_full_budget_moves_the_replica_whose_demand_went() {
        let policy = DemandPolicy::default();
        let replicas = map(&[("eu", 1u32), ("us", 1)]);
        let totals = map(&[("eu", 500u64), ("us", 10), ("ap", 490)]);
        assert_eq!(
            moves(&totals, &replicas, 2, &policy),
            vec![
                Move::Remove {
                    region: "us".into(),
                    share: 0.01
                },
                Move::Add {
                    region: "ap".into(),
                    share: 0.49
                },
            ]
        );
        // No region to spare: nothing moves, the budget holds.
        let totals = map(&[("eu", 400u64), ("us", 300), ("ap", 300)]);
        assert!(moves(&totals, &replicas, 2, &policy).is_empty());
    }

    #[test]
    fn a_region_without_requests_gives_up_its_replica_but_the_last_stays() {
        let policy = DemandPolicy::default();
        let replicas = map(&[("eu", 1u32), ("us", 1)]);
        let totals = map(&[("eu", 1_000u64)]);
        assert_eq!(
            moves(&totals, &replicas, 3, &policy),
            vec![Move::Remove {
                region: "us".into(),
                share: 0.0
            }]
        );
        // The only replica moves to where the demand is: added there first,
        // then removed, so the app is never without one.
        let only = map(&[("us", 1u32)]);
        assert_eq!(
            moves(&totals, &only, 3, &policy),
            vec![
                Move::Add {
                    region: "eu".into(),
                    share: 1.0
                },
                Move::Remove {
                    region: "us".into(),
                    share: 0.0
                }
            ]
        );
        // With no demand anywhere else it is the last, and stays.
        let quiet = map(&[("us", 0u64), ("eu", 1_000)]);
        let both = map(&[("eu", 1u32)]);
        assert!(moves(&quiet, &both, 3, &policy).is_empty());
    }

    #[test]
    fn the_same_counts_give_the_same_moves_in_any_order() {
        let policy = DemandPolicy::default();
        let replicas = map(&[("eu", 1u32)]);
        let a = map(&[("us", 300u64), ("ap", 300), ("eu", 400)]);
        let b: BTreeMap<String, u64> = a.iter().rev().map(|(k, v)| (k.clone(), *v)).collect();
        let m = moves(&a, &replicas, 3, &policy);
        assert_eq!(m, moves(&b, &replicas, 3, &policy));
        // Ties broken by name: ap before us.
        assert!(matches!(&m[0], Move::Add { region, .. } if region == "ap"));
        assert_eq!(m.len(), 2);
    }
}
