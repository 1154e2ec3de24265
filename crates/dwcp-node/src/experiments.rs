//! A/B experiments on an app: between two versions (a sticky split that
//! does not move: the rollout's machinery, without its decisions) or
//! between two variants of one of the tenant's flags (the flag splits its
//! users; the app's responses are what converts); exposures and
//! conversions counted per version or variant, and results with an
//! always-valid interval and a sample-ratio check (`dwcp_release::experiment`).
//!
//! The unit is the user (the split's user key): a user is exposed to the
//! version the split gives them, once however many requests they send, and
//! converts once if any of their responses carries the conversion header
//! (removed before the client sees it) or has a status in the chosen class.
//! Counting users, not requests, keeps the statistics honest: the split is
//! per user, so requests of one user are not independent trials, and a
//! request count would inflate the sample-ratio test and narrow the
//! interval. Requests routed by `x-dwcp-version` are not counted. The sets
//! of users seen are in memory (about 16 bytes a user); counts go to the
//! app's record once a second. A restart forgets the sets: a user seen
//! before it and again after is counted twice (once per restart).

use std::sync::Arc;

use dwcp_release::experiment::{ExperimentConfig, ExperimentResults, VariantCounts, results};
use dwcp_release::split::BUCKETS;
use dwcp_runtime::ResponseBody;
use dwcp_store::{AppId, AppRecord, ConversionRule, ExperimentRecord, unix_now};
use serde::Serialize;

use crate::apps::{Arm, ArmCounter, LiveApp};
use crate::control::{Control, ControlError};
use crate::flags::FlagStore;

/// The response header an app sets to count a conversion, unless the
/// experiment names another.
pub const CONVERSION_HEADER: &str = "x-dwcp-conversion";

/// The salt of an experiment's split: its users are split afresh.
pub(crate) fn experiment_salt(record: &AppRecord, e: &ExperimentRecord) -> String {
    format!(
        "experiment/{}/{}/{}/{}",
        record.tenant, record.app, e.treatment, e.started_at
    )
}

/// The in-memory identity of a user key: experiments count distinct users.
pub(crate) fn user_hash(user: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    // Fixed keys: the same user hashes alike for the whole run (the sets
    // live in memory only).
    BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(user)
}

/// Where a request of `user` counts in the app's running experiment: the
/// version's counter (`arm`), or the counter of the flag variant the user
/// gets (none for a variant outside the experiment); with the user's hash.
pub(crate) fn exposed_counter(
    app: &LiveApp,
    arm: &Arm,
    flags: &FlagStore,
    tenant: &str,
    user: &str,
) -> Option<(Arc<ArmCounter>, u64)> {
    let counter = match &app.flag_experiment {
        None => arm.stats.clone(),
        Some(x) => {
            let variant = flags.variant(tenant, &x.flag, user)?;
            let [control, treatment] = &x.counters;
            if variant == x.control {
                control.clone()
            } else if variant == x.treatment {
                treatment.clone()
            } else {
                return None;
            }
        }
    };
    Some((counter, user_hash(user)))
}

/// Counts `user` as exposed in `counter`, and as converted if `response`
/// is a conversion by `rule`; a conversion header is removed either way
/// (it is for the node, not the client).
pub(crate) fn count_exposure(
    rule: &ConversionRule,
    counter: &ArmCounter,
    user: u64,
    response: &mut hyper::Response<ResponseBody>,
) {
    let converted = match rule {
        ConversionRule::Header(name) => response.headers_mut().remove(name.as_str()).is_some(),
        ConversionRule::StatusClass(class) => response.status().as_u16() / 100 == *class,
    };
    counter.expose(user, converted);
}

/// `dwcp experiment results`: the experiment and what its numbers say.
#[derive(Debug, Serialize)]
pub struct ExperimentStatus {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// Whether it still splits traffic.
    pub running: bool,
    /// The flag whose variants are compared (`None`: versions are).
    pub flag: Option<String>,
    /// The control: a version, or a variant.
    pub control: String,
    /// The treatment: a version, or a variant.
    pub treatment: String,
    /// The treatment's share of users, in percent.
    pub split_percent: f64,
    /// What counts as a conversion.
    pub conversion: ConversionRule,
    /// When it started (Unix seconds).
    pub started_at: u64,
    /// When it stopped.
    pub stopped_at: Option<u64>,
    /// The comparison.
    pub results: ExperimentResults,
}

/// What an experiment compares.
#[derive(Debug, Clone)]
pub enum ExperimentSubject {
    /// The stable version against this stored version.
    Version(String),
    /// Two variants of one of the tenant's flags (checked to exist).
    Flag {
        /// The flag.
        key: String,
        /// The control variant.
        control: String,
        /// The treatment variant.
        treatment: String,
    },
}

impl Control {
    /// Starts an experiment. A version experiment gives the treatment
    /// `split_bp` of users and the stable version the rest; a flag
    /// experiment leaves the split to the flag and holds the exposures to
    /// `split_bp` in its sample-ratio check.
    pub async fn start_experiment(
        self: &Arc<Self>,
        id: &AppId,
        subject: ExperimentSubject,
        split_bp: u32,
        conversion: ConversionRule,
    ) -> Result<ExperimentStatus, ControlError> {
        if split_bp == 0 || split_bp >= BUCKETS {
            return Err(ControlError::BadOption(
                "--split must be above 0 and below 100 percent".into(),
            ));
        }
        let target = id.clone();
        self.blocking_under_lock("experiment", move |this| {
            let mut record = this.record(&target)?;
            crate::rollouts::release_idle(&record)?;
            let (flag, control, treatment) = match subject {
                ExperimentSubject::Flag {
                    key,
                    control,
                    treatment,
                } => (Some(key), control, treatment),
                ExperimentSubject::Version(treatment) => {
                    if record.stateful.is_some() {
                        return Err(ControlError::BadOption(format!(
                            "{target} is stateful: its keys stay on the version their state belongs to, so it cannot split traffic between versions (an experiment over a flag can)"
                        )));
                    }
                    if treatment == record.active {
                        return Err(ControlError::BadOption(format!(
                            "{treatment} is {target}'s stable version, the experiment's control: name another"
                        )));
                    }
                    if !record.versions.iter().any(|v| v.version == treatment) {
                        return Err(ControlError::NotFound(format!(
                            "{target} has no version `{treatment}`: `dwcp versions {target}` lists them"
                        )));
                    }
                    (None, record.active.clone(), treatment)
                }
            };
            record.experiment = Some(ExperimentRecord {
                flag,
                control,
                treatment,
                split_bp,
                conversion,
                started_at: unix_now(),
                stopped_at: None,
                control_counts: VariantCounts::default(),
                treatment_counts: VariantCounts::default(),
            });
            this.commit_release(record).map(drop)
        })
        .await?;
        self.experiment_results(id).await
    }

    /// Stops the running experiment: everyone back on the control; its
    /// counts are kept for `results`.
    pub async fn stop_experiment(
        self: &Arc<Self>,
        id: &AppId,
    ) -> Result<ExperimentStatus, ControlError> {
        let target = id.clone();
        self.blocking_under_lock("experiment", move |this| {
            let mut record = this.record(&target)?;
            let live = this.apps.get_app(&target.tenant, &target.app);
            let Some(e) = record.experiment.as_mut().filter(|e| e.running()) else {
                return Err(ControlError::BadOption(format!(
                    "{target} runs no experiment (`dwcp experiment start {target} VERSION` begins one)"
                )));
            };
            if let Some(live) = &live {
                add_unflushed(e, live);
            }
            e.stopped_at = Some(unix_now());
            tracing::info!(tenant = %target.tenant, app = %target.app, treatment = %e.treatment, "experiment stopped");
            this.commit_release(record).map(drop)
        })
        .await?;
        self.experiment_results(id).await
    }

    /// The experiment's results, with the counts up to now.
    pub async fn experiment_results(
        self: &Arc<Self>,
        id: &AppId,
    ) -> Result<ExperimentStatus, ControlError> {
        let target = id.clone();
        let record = self
            .blocking_under_lock("experiment", move |this| this.flush_experiment(&target))
            .await?;
        let Some(e) = record.experiment else {
            return Err(ControlError::NotFound(format!(
                "{id} has had no experiment (`dwcp experiment start {id} VERSION` begins one)"
            )));
        };
        let config = ExperimentConfig {
            expected_share: f64::from(e.split_bp) / f64::from(BUCKETS),
            ..ExperimentConfig::default()
        };
        Ok(ExperimentStatus {
            tenant: record.tenant,
            app: record.app,
            running: e.running(),
            flag: e.flag,
            results: results(&e.control_counts, &e.treatment_counts, &config),
            split_percent: dwcp_release::split::percent(e.split_bp),
            control: e.control,
            treatment: e.treatment,
            conversion: e.conversion,
            started_at: e.started_at,
            stopped_at: e.stopped_at,
        })
    }

    /// Stops the running experiment because its treatment cannot serve.
    pub(crate) fn fail_experiment(&self, id: &AppId, error: &str) -> Result<(), ControlError> {
        let mut record = self.record(id)?;
        let Some(e) = record.experiment.as_mut().filter(|e| e.running()) else {
            return Ok(());
        };
        e.stopped_at = Some(unix_now());
        tracing::warn!(tenant = %id.tenant, app = %id.app, treatment = %e.treatment, "experiment stopped: the treatment cannot serve: {error}");
        self.audit(
            format!("experiment stopped {id}: the treatment cannot serve: {error}"),
            None,
            200,
        );
        self.commit_release(record).map(drop)
    }

    /// Adds the live counts not yet stored to the running experiment's
    /// record (stored only when there were any). Returns the record.
    pub(crate) fn flush_experiment(&self, id: &AppId) -> Result<AppRecord, ControlError> {
        let mut record = self.record(id)?;
        let live = self.apps.get_app(&id.tenant, &id.app);
        let added = match (
            record.experiment.as_mut().filter(|e| e.running()),
            live.as_ref(),
        ) {
            (Some(e), Some(live)) => add_unflushed(e, live),
            _ => false,
        };
        if added {
            self.state.put_app(&record)?;
        }
        Ok(record)
    }
}

/// Adds `live`'s unstored counts to `e`, when its arms are the
/// experiment's; whether anything was added.
fn add_unflushed(e: &mut ExperimentRecord, live: &LiveApp) -> bool {
    let counters: [&Arc<ArmCounter>; 2] = match (&e.flag, &live.flag_experiment, &live.canary) {
        (Some(flag), Some(x), _) if *flag == x.flag && e.started_at == x.started_at => {
            [&x.counters[0], &x.counters[1]]
        }
        (None, _, Some(canary))
            if live.stable.name() == e.control && canary.arm.name() == e.treatment =>
        {
            [&live.stable.stats, &canary.arm.stats]
        }
        _ => return false,
    };
    let mut added = false;
    for (counter, counts) in [
        (counters[0], &mut e.control_counts),
        (counters[1], &mut e.treatment_counts),
    ] {
        let (exposures, conversions) = counter.unflushed();
        counts.exposures += exposures;
        counts.conversions += conversions;
        added |= exposures > 0 || conversions > 0;
    }
    added
}
