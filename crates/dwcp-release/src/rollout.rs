//! A rollout's decisions: when to advance the canary's weight, hold,
//! promote or abort, with the numbers behind each.
//!
//! Pure: the caller passes the time and each version's totals at every
//! tick; [`Rollout`] keeps the state and the log of decisions. No data is
//! its own outcome: a step whose time is up without enough requests holds,
//! it never advances.

use crate::analysis::{Analysis, AnalysisConfig, ArmStats, MetricReading, Verdict};
use crate::split::BUCKETS;

/// How a new version takes over.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    /// All traffic at once.
    Immediate,
    /// The new version is warmed and checked while the old one serves
    /// everything, then takes all traffic at once.
    BlueGreen,
    /// The canary's share grows through `steps` (basis points), each held
    /// for at least `step_secs` and until the analysis has enough data.
    Canary {
        /// The weights, in basis points, the last one 10,000.
        steps: Vec<u32>,
        /// The least time at each step.
        step_secs: u64,
    },
}

impl Strategy {
    /// The default canary: 1% → 5% → 25% → 50% → 100%, a minute each.
    pub fn default_canary() -> Self {
        Strategy::Canary {
            steps: vec![100, 500, 2_500, 5_000, BUCKETS],
            step_secs: 60,
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Blue-green: waiting for the new version's warm-up check.
    Warming,
    /// Canary at `steps[step]`.
    Running {
        /// Index into the steps.
        step: usize,
    },
    /// Stopped by an operator at the current weight.
    Paused {
        /// The step it was at.
        step: usize,
    },
    /// The new version serves everything.
    Promoted,
    /// All traffic is back on the stable version.
    Aborted,
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The rollout began at its first weight.
    Start,
    /// The canary moved to the next step.
    Advance,
    /// A step's time is up but the data does not allow a decision yet.
    Hold,
    /// The new version took all traffic.
    Promote,
    /// The canary was worse (or an operator said so): all traffic to stable.
    Abort,
    /// An operator paused the rollout.
    Pause,
    /// An operator resumed it.
    Resume,
    /// An operator set the canary's weight by hand (the rollout pauses there).
    SetWeight,
}

/// One decision, with why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// When (Unix seconds).
    pub at: u64,
    /// What.
    pub action: Action,
    /// The canary's weight after it, in basis points.
    pub weight_bp: u32,
    /// Why, in words.
    pub reason: String,
    /// The analysis's numbers at that moment (none for operator actions).
    pub readings: Vec<MetricReading>,
}

/// A rollout in progress (or ended). Serializable, so that the node can
/// store it with the app and pick it up again after a restart.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    strategy: Strategy,
    analysis: Analysis,
    phase: Phase,
    weight_bp: u32,
    step_started_at: u64,
    held_at_step: Option<usize>,
    decisions: Vec<Decision>,
}

impl Rollout {
    /// Starts a rollout at `now`.
    pub fn start(strategy: Strategy, analysis: AnalysisConfig, now: u64) -> Self {
        let (phase, weight_bp, reason) = match &strategy {
            Strategy::Immediate => (Phase::Promoted, BUCKETS, "immediate: all traffic at once"),
            Strategy::BlueGreen => (Phase::Warming, 0, "blue-green: warming the new version"),
            Strategy::Canary { steps, .. } => (
                Phase::Running { step: 0 },
                steps.first().copied().unwrap_or(BUCKETS).min(BUCKETS),
                "canary: first step",
            ),
        };
        let mut rollout = Self {
            strategy,
            analysis: Analysis::new(analysis),
            phase,
            weight_bp,
            step_started_at: now,
            held_at_step: None,
            decisions: Vec::new(),
        };
        rollout.record(now, Action::Start, reason.into(), Vec::new());
        rollout
    }

    /// The canary's share of traffic now, in basis points.
    pub fn weight_bp(&self) -> u32 {
        self.weight_bp
    }

    /// Where it stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Every decision so far, oldest first.
    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    /// Looks at the versions' totals since the start; returns the decision
    /// taken, if any.
    pub fn tick(&mut self, now: u64, stable: &ArmStats, canary: &ArmStats) -> Option<&Decision> {
        let Phase::Running { step } = self.phase else {
            return None;
        };
        let Strategy::Canary { steps, step_secs } = &self.strategy else {
            return None;
        };
        let (last, step_secs) = (steps.len().saturating_sub(1), *step_secs);
        let next_weight = steps.get(step + 1).copied().unwrap_or(BUCKETS).min(BUCKETS);
        let time_up = now.saturating_sub(self.step_started_at) >= step_secs;
        match self.analysis.look(stable, canary) {
            Verdict::Worse(readings) => {
                let reason = readings
                    .iter()
                    .filter(|r| r.worse)
                    .map(|r| {
                        format!(
                            "{:?} worse: canary {:.4} vs stable {:.4}, p = {:.2e} < α = {}",
                            r.metric, r.canary, r.stable, r.p_value, r.alpha
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                Some(self.end(now, Phase::Aborted, reason, readings))
            }
            Verdict::NotEnoughData { samples } if time_up => {
                // Said once per step, not at every tick.
                if self.held_at_step == Some(step) {
                    return None;
                }
                self.held_at_step = Some(step);
                let reason = format!(
                    "not enough data to decide: {} stable and {} canary requests",
                    samples.0, samples.1
                );
                Some(self.record(now, Action::Hold, reason, Vec::new()))
            }
            Verdict::NotWorse(readings) if time_up => {
                self.step_started_at = now;
                // The step to all traffic is the promotion itself.
                if step >= last || next_weight >= BUCKETS {
                    let reason = "the last step passed its analysis".to_string();
                    Some(self.end(now, Phase::Promoted, reason, readings))
                } else {
                    self.phase = Phase::Running { step: step + 1 };
                    // Never down: a weight set by hand above the next step stays.
                    self.weight_bp = self.weight_bp.max(next_weight);
                    let reason = "no metric worse beyond tolerance".to_string();
                    Some(self.record(now, Action::Advance, reason, readings))
                }
            }
            _ => None,
        }
    }

    /// Blue-green: the warm-up check's result. Passing promotes, failing
    /// aborts.
    pub fn warmed(&mut self, now: u64, ok: bool, detail: &str) -> Option<&Decision> {
        if self.phase != Phase::Warming {
            return None;
        }
        let phase = if ok { Phase::Promoted } else { Phase::Aborted };
        Some(self.end(now, phase, format!("warm-up check: {detail}"), Vec::new()))
    }

    /// An operator's pause: the weight stays; nothing advances.
    pub fn pause(&mut self, now: u64) -> Option<&Decision> {
        let Phase::Running { step } = self.phase else {
            return None;
        };
        self.phase = Phase::Paused { step };
        Some(self.record(
            now,
            Action::Pause,
            "paused by an operator".into(),
            Vec::new(),
        ))
    }

    /// An operator's resume: the step's time starts again.
    pub fn resume(&mut self, now: u64) -> Option<&Decision> {
        let Phase::Paused { step } = self.phase else {
            return None;
        };
        self.phase = Phase::Running { step };
        self.step_started_at = now;
        // A weight set by hand below the step's (even 0) would starve the
        // canary of data and hold forever: resuming restores the step's.
        if let Strategy::Canary { steps, .. } = &self.strategy {
            let floor = steps.get(step).copied().unwrap_or(BUCKETS).min(BUCKETS);
            self.weight_bp = self.weight_bp.max(floor);
        }
        Some(self.record(
            now,
            Action::Resume,
            "resumed by an operator".into(),
            Vec::new(),
        ))
    }

    /// An operator's weight, in basis points: the rollout pauses there
    /// (`resume` carries on from the step at or below it; the weight never
    /// goes down by itself). Only while it runs or is paused.
    pub fn set_weight(&mut self, now: u64, weight_bp: u32) -> Option<&Decision> {
        let (Phase::Running { .. } | Phase::Paused { .. }) = self.phase else {
            return None;
        };
        let weight_bp = weight_bp.min(BUCKETS);
        let step = match &self.strategy {
            Strategy::Canary { steps, .. } => {
                steps.iter().rposition(|&w| w <= weight_bp).unwrap_or(0)
            }
            _ => 0,
        };
        self.phase = Phase::Paused { step };
        self.weight_bp = weight_bp;
        let reason = format!(
            "weight set to {}% by an operator; paused there",
            weight_bp as f64 / 100.0
        );
        Some(self.record(now, Action::SetWeight, reason, Vec::new()))
    }

    /// How it was started.
    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    /// Whether it has ended (promoted or aborted).
    pub fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Promoted | Phase::Aborted)
    }

    /// An operator's promote: all traffic to the new version now.
    pub fn promote(&mut self, now: u64) -> Option<&Decision> {
        self.end_by_hand(now, Phase::Promoted, "promoted by an operator")
    }

    /// An operator's abort: all traffic back to stable now.
    pub fn abort(&mut self, now: u64) -> Option<&Decision> {
        self.end_by_hand(now, Phase::Aborted, "aborted by an operator")
    }

    /// Aborts for a reason outside the analysis (the new version does not
    /// load, say).
    pub fn fail(&mut self, now: u64, reason: &str) -> Option<&Decision> {
        self.end_by_hand(now, Phase::Aborted, reason)
    }

    fn end_by_hand(&mut self, now: u64, phase: Phase, reason: &str) -> Option<&Decision> {
        if matches!(self.phase, Phase::Promoted | Phase::Aborted) {
            return None;
        }
        Some(self.end(now, phase, reason.into(), Vec::new()))
    }

    /// Ends the rollout: promoted (all traffic to the new version) or
    /// aborted (all back to stable).
    fn end(
        &mut self,
        now: u64,
        phase: Phase,
        reason: String,
        readings: Vec<MetricReading>,
    ) -> &Decision {
        let (weight, action) = match phase {
            Phase::Promoted => (BUCKETS, Action::Promote),
            _ => (0, Action::Abort),
        };
        self.phase = phase;
        self.weight_bp = weight;
        self.record(now, action, reason, readings)
    }

    fn record(
        &mut self,
        at: u64,
        action: Action,
        reason: String,
        readings: Vec<MetricReading>,
    ) -> &Decision {
        self.decisions.push(Decision {
            at,
            action,
            weight_bp: self.weight_bp,
            reason,
            readings,
        });
        self.decisions.last().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arms(stable_errors: u64, canary_errors: u64, n: u64) -> (ArmStats, ArmStats) {
        let (mut s, mut c) = (ArmStats::default(), ArmStats::default());
        for i in 0..n {
            // Errors spread evenly; latencies with a little spread.
            let latency = 10.0 + (i % 7) as f64;
            s.record(i < stable_errors, latency);
            c.record(i < canary_errors, latency);
        }
        (s, c)
    }

    fn canary() -> Rollout {
        Rollout::start(Strategy::default_canary(), AnalysisConfig::default(), 1_000)
    }

    #[test]
    fn a_good_canary_walks_every_step_then_is_promoted() {
        let mut r = canary();
        assert_eq!(
            (r.weight_bp(), r.phase()),
            (100, Phase::Running { step: 0 })
        );
        let (s, c) = arms(5, 5, 1_000);
        // Before a step's minute is up nothing happens.
        assert!(r.tick(1_030, &s, &c).is_none());
        let mut now = 1_000;
        for expected in [500, 2_500, 5_000, 10_000] {
            now += 60;
            let d = r.tick(now, &s, &c).expect("a decision").clone();
            assert_eq!(d.weight_bp, expected);
            assert!(!d.readings.is_empty(), "the numbers are kept");
        }
        assert_eq!(r.phase(), Phase::Promoted);
        assert_eq!(
            r.decisions().last().map(|d| d.action),
            Some(Action::Promote)
        );
        assert!(
            r.tick(now + 60, &s, &c).is_none(),
            "a promoted rollout is done"
        );
    }

    #[test]
    fn a_bad_canary_is_aborted_with_the_numbers_and_all_traffic_goes_back() {
        let mut r = canary();
        let (s, c) = arms(5, 60, 1_000);
        // Aborted as soon as the evidence is there, before the step's time.
        let d = r.tick(1_010, &s, &c).expect("an abort").clone();
        assert_eq!((d.action, d.weight_bp), (Action::Abort, 0));
        assert!(d.reason.contains("ErrorRate worse"), "{}", d.reason);
        assert_eq!(r.phase(), Phase::Aborted);
        assert_eq!(r.weight_bp(), 0);
        assert!(
            r.promote(1_020).is_none(),
            "an aborted rollout stays aborted"
        );
    }

    #[test]
    fn without_data_a_step_holds_once_and_never_advances() {
        let mut r = canary();
        let (s, c) = arms(0, 0, 50);
        let d = r.tick(1_060, &s, &c).expect("a hold").clone();
        assert_eq!((d.action, d.weight_bp), (Action::Hold, 100));
        assert!(d.reason.contains("50 canary requests"), "{}", d.reason);
        assert!(r.tick(1_120, &s, &c).is_none(), "held once per step");
        assert_eq!(r.phase(), Phase::Running { step: 0 });
        // Enough data: it advances.
        let (s, c) = arms(1, 1, 400);
        assert_eq!(
            r.tick(1_121, &s, &c).map(|d| d.action),
            Some(Action::Advance)
        );
    }

    #[test]
    fn pause_resume_promote_and_abort_by_hand() {
        let mut r = canary();
        let (s, c) = arms(5, 5, 1_000);
        assert_eq!(r.pause(1_010).map(|d| d.action), Some(Action::Pause));
        assert!(
            r.tick(2_000, &s, &c).is_none(),
            "a paused rollout does not move"
        );
        assert!(r.pause(2_001).is_none());
        assert_eq!(r.resume(2_002).map(|d| d.action), Some(Action::Resume));
        // Its step starts again at the resume.
        assert!(r.tick(2_030, &s, &c).is_none());
        assert_eq!(r.tick(2_062, &s, &c).map(|d| d.weight_bp), Some(500));
        assert_eq!(r.promote(2_070).map(|d| d.weight_bp), Some(BUCKETS));
        let mut other = canary();
        assert_eq!(other.abort(1_001).map(|d| d.weight_bp), Some(0));
    }

    #[test]
    fn immediate_and_blue_green() {
        let r = Rollout::start(Strategy::Immediate, AnalysisConfig::default(), 5);
        assert_eq!((r.phase(), r.weight_bp()), (Phase::Promoted, BUCKETS));
        let mut bg = Rollout::start(Strategy::BlueGreen, AnalysisConfig::default(), 5);
        assert_eq!((bg.phase(), bg.weight_bp()), (Phase::Warming, 0));
        let (s, c) = arms(0, 0, 1_000);
        assert!(
            bg.tick(100, &s, &c).is_none(),
            "blue-green waits for its check"
        );
        assert_eq!(
            bg.warmed(6, true, "200 OK").map(|d| d.weight_bp),
            Some(BUCKETS)
        );
        let mut failed = Rollout::start(Strategy::BlueGreen, AnalysisConfig::default(), 5);
        let d = failed
            .warmed(6, false, "trap at start")
            .expect("an abort")
            .clone();
        assert_eq!((d.action, d.weight_bp), (Action::Abort, 0));
        assert!(d.reason.contains("trap at start"));
    }

    #[test]
    fn a_weight_set_by_hand_pauses_there_and_resuming_never_lowers_it() {
        let mut r = canary();
        let d = r.set_weight(1_010, 3_000).expect("set").clone();
        assert_eq!((d.action, d.weight_bp), (Action::SetWeight, 3_000));
        // Paused at the step at or below 30% (25%, index 2).
        assert_eq!(r.phase(), Phase::Paused { step: 2 });
        let (s, c) = arms(5, 5, 1_000);
        assert!(r.tick(2_000, &s, &c).is_none(), "paused: nothing moves");
        r.resume(2_000).expect("resume");
        let d = r.tick(2_060, &s, &c).expect("advance").clone();
        assert_eq!(
            (d.action, d.weight_bp),
            (Action::Advance, 5_000),
            "on to 50%, the next step above"
        );
        // A hand weight above the next step is kept when the step passes.
        r.set_weight(2_070, 8_000).expect("set");
        r.resume(2_070).expect("resume");
        let d = r.tick(2_130, &s, &c).expect("a decision").clone();
        assert_eq!(
            d.action,
            Action::Promote,
            "the 50% step was the last but one"
        );
        assert!(r.set_weight(2_140, 100).is_none(), "over: no more weights");
    }

    #[test]
    fn resuming_from_a_weight_of_zero_gives_the_canary_its_steps_share() {
        let mut r = canary();
        r.set_weight(1_010, 0).expect("set");
        r.resume(1_020).expect("resume");
        assert_eq!(r.weight_bp(), 100, "back to the first step's 1%");
        let d = r
            .fail(1_030, "the new version does not load")
            .expect("fail")
            .clone();
        assert_eq!((d.action, d.weight_bp), (Action::Abort, 0));
        assert!(r.fail(1_040, "again").is_none());
    }

    #[test]
    fn a_rollout_survives_a_trip_through_json() {
        let mut r = canary();
        let (s, c) = arms(5, 5, 1_000);
        r.tick(1_060, &s, &c).expect("advance");
        let json = serde_json::to_string(&r).expect("serialize");
        let mut back: Rollout = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.decisions(), r.decisions());
        assert_eq!((back.phase(), back.weight_bp()), (r.phase(), r.weight_bp()));
        assert_eq!(back.tick(1_120, &s, &c), r.tick(1_120, &s, &c));
    }
}
