//! Progressive rollouts on a node: starting one, the operator's commands,
//! the once-a-second look that advances, holds, promotes or aborts, and
//! the status that shows why.
//!
//! The decisions are `dwcp_release::rollout`'s; this module feeds it each
//! version's totals, stores every decision in the app's record (so a
//! restart picks the rollout up where it was) and switches the live app.
//! Every change is the same three steps under the deploy lock: change the
//! record's rollout, store it, rebuild the live app from the record
//! ([`Control::install`] reuses the versions already live, so a step or a
//! promotion compiles nothing and keeps warm instances).

use std::convert::Infallible;
use std::sync::Arc;

use dwcp_release::analysis::{AnalysisConfig, ArmStats};
use dwcp_release::rollout::{Action, Decision, Phase, Rollout, Strategy};
use dwcp_release::split::percent;
use dwcp_runtime::HttpError;
use dwcp_store::{AppId, AppRecord, RolloutRecord, unix_now};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde::Serialize;

use crate::apps::Arm;
use crate::control::{Control, ControlError};

/// Requests a blue-green check sends to the new version before it takes
/// all traffic; every one must answer below 500.
const WARM_CHECKS: usize = 3;

/// The salt of a rollout's split: each rollout splits users afresh.
pub(crate) fn rollout_salt(record: &AppRecord, rollout: &RolloutRecord) -> String {
    format!(
        "{}/{}/{}/{}",
        record.tenant, record.app, rollout.version, rollout.started_at
    )
}

/// Refuses a change that needs the app's traffic unsplit: while a rollout
/// is in progress or an experiment runs.
pub(crate) fn release_idle(record: &AppRecord) -> Result<(), ControlError> {
    let id = format!("{}/{}", record.tenant, record.app);
    if let Some(r) = record.rollout.as_ref().filter(|r| r.in_progress()) {
        return Err(ControlError::BadOption(format!(
            "{id} is rolling out {}: `dwcp rollout promote` or `abort` it first",
            r.version
        )));
    }
    if let Some(e) = record.experiment.as_ref().filter(|e| e.running()) {
        return Err(ControlError::BadOption(format!(
            "{id} runs an experiment of {}: `dwcp experiment stop {id}` first",
            e.treatment
        )));
    }
    Ok(())
}

/// What an operator does to a rollout in progress.
#[derive(Debug, Clone, Copy)]
pub enum RolloutCommand {
    /// All traffic to the new version now.
    Promote,
    /// Hold the weight where it is.
    Pause,
    /// Carry on from where it was paused.
    Resume,
    /// All traffic back to the stable version.
    Abort,
    /// Set the canary's weight (basis points) and pause there.
    SetWeight(u32),
}

/// `dwcp rollout status`: where a rollout stands and why.
#[derive(Debug, Serialize)]
pub struct RolloutStatus {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The version serving everyone not in the canary.
    pub stable: String,
    /// The version before it, kept warm for `undo`.
    pub previous: Option<String>,
    /// The last rollout (`None`: the app never had one).
    pub rollout: Option<RolloutView>,
}

/// A rollout as `status` shows it.
#[derive(Debug, Serialize)]
pub struct RolloutView {
    /// The version rolling out.
    pub version: String,
    /// The version it was compared with.
    pub baseline: String,
    /// How it proceeds.
    pub strategy: Strategy,
    /// Where it stands.
    pub phase: Phase,
    /// The new version's share of users now, in percent.
    pub weight_percent: f64,
    /// When it started (Unix seconds).
    pub started_at: u64,
    /// Requests, errors and latency of each version since it started, as
    /// of the last look (`None` once it has ended).
    pub live: Option<ArmsView>,
    /// Every decision, oldest first, with the numbers behind it.
    pub decisions: Vec<Decision>,
}

/// Both versions' totals.
#[derive(Debug, Serialize)]
pub struct ArmsView {
    /// The stable version's.
    pub stable: ArmView,
    /// The new version's.
    pub canary: ArmView,
}

/// One version's totals.
#[derive(Debug, Serialize)]
pub struct ArmView {
    /// Responses.
    pub requests: u64,
    /// 5xx responses (traps included).
    pub errors: u64,
    /// Geometric mean latency in milliseconds (0 before any request).
    pub latency_ms: f64,
}

impl From<ArmStats> for ArmView {
    fn from(s: ArmStats) -> Self {
        Self {
            requests: s.requests,
            errors: s.errors,
            latency_ms: if s.requests == 0 {
                0.0
            } else {
                s.log_latency_ms.mean().exp()
            },
        }
    }
}

impl Control {
    /// The strategy a deploy or `rollout start` uses when it names none.
    pub(crate) fn default_strategy(record: Option<&AppRecord>) -> Strategy {
        record
            .and_then(|r| r.release.strategy.clone())
            .unwrap_or(Strategy::Immediate)
    }

    /// Sets `record` to roll out `version` by `strategy` from `now`
    /// (immediate: switches at once). Checks only; stores nothing.
    pub(crate) fn begin_rollout(
        record: &mut AppRecord,
        version: &str,
        strategy: Strategy,
        analysis: Option<AnalysisConfig>,
        now: u64,
    ) -> Result<(), ControlError> {
        let id = format!("{}/{}", record.tenant, record.app);
        release_idle(record)?;
        if !record.versions.iter().any(|v| v.version == version) {
            return Err(ControlError::NotFound(format!(
                "{id} has no version `{version}`: `dwcp versions {id}` lists them"
            )));
        }
        // A first version, or the one serving already, has nothing to
        // compare with: it just serves.
        let progressive = strategy != Strategy::Immediate
            && !record.active.is_empty()
            && record.active != version;
        if progressive && record.stateful.is_some() {
            return Err(ControlError::BadOption(format!(
                "{id} is stateful: its keys stay on the version their state belongs to, so it cannot split traffic; deploy with --strategy immediate"
            )));
        }
        if !progressive {
            if record.active != version {
                record.previous = Some(std::mem::replace(&mut record.active, version.to_string()))
                    .filter(|p| !p.is_empty());
            }
            return Ok(());
        }
        let analysis = analysis.or(record.release.analysis).unwrap_or_default();
        record.rollout = Some(RolloutRecord {
            version: version.to_string(),
            stable: record.active.clone(),
            started_at: now,
            state: Rollout::start(strategy, analysis, now),
            seen: Default::default(),
            carried: Default::default(),
            run: 0,
        });
        Ok(())
    }

    /// Rolls out `version`, already stored, by `strategy` (the app's
    /// default if `None`). Returns when its first step serves; a
    /// blue-green rollout returns once checked and switched (or refused).
    pub async fn start_rollout(
        self: &Arc<Self>,
        id: &AppId,
        version: String,
        strategy: Option<Strategy>,
        analysis: Option<AnalysisConfig>,
    ) -> Result<RolloutStatus, ControlError> {
        let target = id.clone();
        self.blocking_under_lock("rollout", move |this| {
            let mut record = this.record(&target)?;
            let strategy = strategy.unwrap_or_else(|| Self::default_strategy(Some(&record)));
            Self::begin_rollout(&mut record, &version, strategy, analysis, unix_now())?;
            this.commit_release(record).map(drop)
        })
        .await?;
        self.check_green(id).await?;
        self.rollout_status(id)
    }

    /// Stores `record` and serves what it now says.
    pub(crate) fn commit_release(&self, record: AppRecord) -> Result<AppRecord, ControlError> {
        let env = self.guest_env(&record)?;
        self.state.put_app(&record)?;
        self.install(&record, None, env).map_err(|e| {
            ControlError::StoredNotServing(format!(
                "{}/{}: the change is stored, but the app does not serve it: {e}",
                record.tenant, record.app
            ))
        })?;
        Ok(record)
    }

    /// An operator's command to the rollout in progress.
    pub async fn rollout_command(
        self: &Arc<Self>,
        id: &AppId,
        command: RolloutCommand,
    ) -> Result<RolloutStatus, ControlError> {
        let target = id.clone();
        self.blocking_under_lock("rollout", move |this| {
            let mut record = this.record(&target)?;
            let now = unix_now();
            let Some(r) = record.rollout.as_mut().filter(|r| r.in_progress()) else {
                return Err(ControlError::BadOption(format!(
                    "{target} has no rollout in progress (`dwcp rollout start {target} VERSION` begins one)"
                )));
            };
            let phase = r.state.phase();
            let decided = match command {
                RolloutCommand::Promote => r.state.promote(now),
                RolloutCommand::Pause => r.state.pause(now),
                RolloutCommand::Resume => r.state.resume(now),
                RolloutCommand::Abort => r.state.abort(now),
                RolloutCommand::SetWeight(bp) => r.state.set_weight(now, bp),
            }
            .cloned();
            let Some(decision) = decided else {
                return Err(ControlError::BadOption(format!(
                    "{target}'s rollout of {} is {}: it cannot be {}",
                    r.version,
                    phase_name(phase),
                    command_done(command)
                )));
            };
            this.decided(&mut record, &decision, true);
            this.commit_release(record).map(drop)
        })
        .await?;
        self.rollout_status(id)
    }

    /// `dwcp rollout undo`: aborts a rollout in progress; otherwise puts
    /// `to` (default: the previous version) back in place of the stable
    /// one, from the next request.
    pub async fn undo(
        self: &Arc<Self>,
        id: &AppId,
        to: Option<String>,
    ) -> Result<RolloutStatus, ControlError> {
        if let Some(r) = self.record(id)?.rollout.filter(|r| r.in_progress()) {
            if to.is_some() {
                return Err(ControlError::BadOption(format!(
                    "{id} is rolling out {}: `dwcp rollout undo {id}` without --to aborts it",
                    r.version
                )));
            }
            return self.rollout_command(id, RolloutCommand::Abort).await;
        }
        let target = id.clone();
        self.blocking_under_lock("undo", move |this| {
            let mut record = this.record(&target)?;
            // Checked again under the lock: one may have begun since.
            release_idle(&record)?;
            let Some(to) = to.or_else(|| record.previous.clone()) else {
                return Err(ControlError::BadOption(format!(
                    "{target} has no previous version to go back to; name one with --to (`dwcp versions {target}`)"
                )));
            };
            if to == record.active {
                return Err(ControlError::BadOption(format!("{target} serves {to} already")));
            }
            if !record.versions.iter().any(|v| v.version == to) {
                return Err(ControlError::NotFound(format!(
                    "{target} has no version `{to}`: `dwcp versions {target}` lists them"
                )));
            }
            let from = std::mem::replace(&mut record.active, to.clone());
            record.previous = Some(from.clone());
            tracing::info!(tenant = %target.tenant, app = %target.app, %from, %to, "undo: switched back");
            this.commit_release(record).map(drop)
        })
        .await?;
        self.rollout_status(id)
    }

    /// Where the app's rollout stands.
    pub fn rollout_status(&self, id: &AppId) -> Result<RolloutStatus, ControlError> {
        let record = self.record(id)?;
        let rollout = record.rollout.map(|r| {
            // What the analysis saw at its last look (at most a second old).
            let arms = r.in_progress().then(|| ArmsView {
                stable: r.seen.stable.into(),
                canary: r.seen.canary.into(),
            });
            RolloutView {
                version: r.version,
                baseline: r.stable,
                strategy: r.state.strategy().clone(),
                phase: r.state.phase(),
                weight_percent: percent(r.state.weight_bp()),
                started_at: r.started_at,
                live: arms,
                decisions: r.state.decisions().to_vec(),
            }
        });
        Ok(RolloutStatus {
            tenant: record.tenant,
            app: record.app,
            stable: record.active,
            previous: record.previous,
            rollout,
        })
    }

    /// One look at every rollout in progress on this node: each is
    /// advanced, held, promoted or aborted as its analysis says, and what
    /// changed is stored. Runs once a second.
    pub async fn tick_rollouts(self: &Arc<Self>) {
        for live in self.apps.rolling_out() {
            let labels = live.version().labels();
            let id = AppId {
                tenant: labels.tenant.clone(),
                app: labels.app.clone(),
            };
            if live.conversion.is_some() {
                // An experiment: its split never moves; its counts are stored
                // (or it stops, if its treatment cannot serve).
                let target = id.clone();
                let error = live.canary_error.clone();
                let flushed = self
                    .blocking_under_lock("experiment", move |this| match error {
                        Some(error) => this.fail_experiment(&target, &error),
                        None => this.flush_experiment(&target).map(drop),
                    })
                    .await;
                if let Err(e) = flushed {
                    tracing::warn!(tenant = %id.tenant, app = %id.app, "experiment counts not stored: {e}");
                }
                continue;
            }
            let looked = self
                .blocking_under_lock("rollout", move |this| this.look_at_rollout(&id))
                .await;
            match looked {
                Ok(Look::Warming(id)) => {
                    if let Err(e) = self.check_green(&id).await {
                        tracing::warn!(tenant = %id.tenant, app = %id.app, "blue-green check failed to run: {e}");
                    }
                }
                Ok(Look::Done) => {}
                Err(e) => {
                    tracing::warn!(tenant = %labels.tenant, app = %labels.app, "rollout look failed: {e}")
                }
            }
        }
    }

    /// Feeds the two versions' totals to the rollout and stores what
    /// changed (a decision, or only the analysis's running p-values and
    /// the totals seen). The live app is read here, under the lock, and
    /// must be this rollout's: same versions and same split.
    fn look_at_rollout(&self, id: &AppId) -> Result<Look, ControlError> {
        let mut record = self.record(id)?;
        let live = self.apps.get_app(&id.tenant, &id.app);
        let Some(r) = record.rollout.as_ref().filter(|r| r.in_progress()) else {
            return Ok(Look::Done);
        };
        if let Some(error) = live.as_ref().and_then(|l| l.canary_error.clone()) {
            return self.fail_rollout(record, &error).map(|_| Look::Done);
        }
        let salt = rollout_salt(&record, r);
        let Some((stable, canary)) = live.as_ref().and_then(|l| {
            let canary = l.canary.as_ref().filter(|c| c.salt == salt)?;
            (l.stable.name() == r.stable && canary.arm.name() == r.version)
                .then(|| (l.stable.stats.totals(), canary.arm.stats.totals()))
        }) else {
            return Ok(Look::Done);
        };
        if r.state.phase() == Phase::Warming {
            return Ok(Look::Warming(id.clone()));
        }
        let Some(r) = record.rollout.as_mut() else {
            return Ok(Look::Done);
        };
        // This run's counters join what earlier runs of the node counted.
        if r.run != self.run_id {
            r.carried = r.seen;
            r.run = self.run_id;
        }
        let totals = dwcp_store::ArmTotals {
            stable: r.carried.stable.merge(&stable),
            canary: r.carried.canary.merge(&canary),
        };
        let before = (r.state.clone(), r.seen);
        let decision = r
            .state
            .tick(unix_now(), &totals.stable, &totals.canary)
            .cloned();
        r.seen = totals;
        if (r.state.clone(), r.seen) == before {
            return Ok(Look::Done);
        }
        match decision {
            Some(decision) => {
                self.decided(&mut record, &decision, false);
                self.commit_release(record)?;
            }
            // Only the running p-values and totals moved: stored, nothing
            // to switch.
            None => self.state.put_app(&record)?,
        }
        Ok(Look::Done)
    }

    /// Aborts the rollout in progress because its version cannot serve.
    fn fail_rollout(&self, mut record: AppRecord, error: &str) -> Result<(), ControlError> {
        let Some(r) = record.rollout.as_mut().filter(|r| r.in_progress()) else {
            return Ok(());
        };
        let reason = format!("the new version cannot serve: {error}");
        if let Some(decision) = r.state.fail(unix_now(), &reason).cloned() {
            self.decided(&mut record, &decision, false);
        }
        self.commit_release(record).map(drop)
    }

    /// Blue-green: warms the new version, sends it a few requests and
    /// switches all traffic to it if every one answered below 500 (else
    /// the rollout is aborted). Does nothing unless one is warming.
    pub(crate) async fn check_green(self: &Arc<Self>, id: &AppId) -> Result<(), ControlError> {
        let Some(live) = self.apps.get_app(&id.tenant, &id.app) else {
            return Ok(());
        };
        let Some(canary) = live.canary.clone() else {
            return Ok(());
        };
        let warming = self
            .record(id)?
            .rollout
            .is_some_and(|r| r.state.phase() == Phase::Warming && r.version == canary.arm.name());
        if !warming {
            return Ok(());
        }
        let host = format!("{}.{}.{}", id.app, id.tenant, self.settings.domain);
        let (ok, detail) = warm_check(&canary.arm, &host).await;
        let target = id.clone();
        let version = canary.arm.name().to_string();
        self.blocking_under_lock("rollout", move |this| {
            let mut record = this.record(&target)?;
            let Some(r) = record
                .rollout
                .as_mut()
                .filter(|r| r.state.phase() == Phase::Warming && r.version == version)
            else {
                return Ok(());
            };
            if let Some(decision) = r.state.warmed(unix_now(), ok, &detail).cloned() {
                this.decided(&mut record, &decision, false);
            }
            this.commit_release(record).map(drop)
        })
        .await
    }

    /// Acts on a decision just taken on `record`'s rollout: a promotion
    /// makes its version the stable one (the old stable one becomes the
    /// previous, kept warm for `undo`). Logs it; one that moves traffic
    /// also goes to the audit log.
    fn decided(&self, record: &mut AppRecord, decision: &Decision, by_hand: bool) {
        let Some(version) = record.rollout.as_ref().map(|r| r.version.clone()) else {
            return;
        };
        if decision.action == Action::Promote && record.active != version {
            record.previous = Some(std::mem::replace(&mut record.active, version.clone()));
        }
        let id = format!("{}/{}", record.tenant, record.app);
        let percent = percent(decision.weight_bp);
        let action = format!("{:?}", decision.action).to_lowercase();
        self.metrics
            .record_decision(&record.tenant, &record.app, &action);
        match decision.action {
            Action::Abort => {
                tracing::warn!(app = %id, %version, reason = %decision.reason, "rollout aborted: all traffic back on the stable version")
            }
            _ => {
                tracing::info!(app = %id, %version, %action, percent, reason = %decision.reason, "rollout decision")
            }
        }
        // Operators' own commands are audited by the admin API already.
        let moves = matches!(
            decision.action,
            Action::Advance | Action::Promote | Action::Abort
        );
        if moves && !by_hand {
            self.audit(
                format!(
                    "rollout {action} {id} {version} at {percent}%: {}",
                    decision.reason
                ),
                None,
                200,
            );
        }
    }
}

/// What a look at one rollout found to do next.
enum Look {
    /// Nothing more.
    Done,
    /// A blue-green rollout waits for its check.
    Warming(AppId),
}

/// Warms `arm` and sends it [`WARM_CHECKS`] `GET /` requests addressed to
/// `host`: whether every one answered below 500, and what they answered.
async fn warm_check(arm: &Arm, host: &str) -> (bool, String) {
    if let Err(e) = arm.version.instantiate_only().await {
        return (false, format!("the new version does not instantiate: {e}"));
    }
    let mut statuses = Vec::with_capacity(WARM_CHECKS);
    for _ in 0..WARM_CHECKS {
        let request = hyper::Request::builder()
            .uri("/")
            .header(hyper::header::HOST, host)
            .header("user-agent", "dwcp-blue-green-check")
            .body(
                Empty::<Bytes>::new().map_err(|never: Infallible| -> HttpError { match never {} }),
            );
        let request = match request {
            Ok(request) => request,
            Err(e) => return (false, format!("cannot build the check request: {e}")),
        };
        let response = arm.version.clone().handle(request, ()).await;
        statuses.push(response.status().as_u16());
    }
    let ok = statuses.iter().all(|s| *s < 500);
    let list = statuses
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let detail = if ok {
        format!("{WARM_CHECKS} requests to / answered {list}")
    } else {
        format!("{WARM_CHECKS} requests to / answered {list} (a 5xx fails the check)")
    };
    (ok, detail)
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Warming => "warming",
        Phase::Running { .. } => "running",
        Phase::Paused { .. } => "paused",
        Phase::Promoted => "promoted",
        Phase::Aborted => "aborted",
    }
}

fn command_done(command: RolloutCommand) -> &'static str {
    match command {
        RolloutCommand::Promote => "promoted",
        RolloutCommand::Pause => "paused",
        RolloutCommand::Resume => "resumed",
        RolloutCommand::Abort => "aborted",
        RolloutCommand::SetWeight(_) => "given a weight",
    }
}
