//! The admin API of rollouts: start one, command it, see why it did what
//! it did. Also the strategy options a deploy and `apps set` take.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use dwcp_release::analysis::AnalysisConfig;
use dwcp_release::rollout::Strategy;
use dwcp_release::split::{BUCKETS, from_percent};
use serde::Deserialize;

use crate::admin::{AdminState, ApiResult, app_id};
use crate::control::ControlError;
use crate::experiments::{ExperimentStatus, ExperimentSubject};
use crate::rollouts::{RolloutCommand, RolloutStatus};
use dwcp_store::ConversionRule;

/// The rollout routes.
pub(crate) fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/v1/apps/{tenant}/{app}/rollout", get(status).post(start))
        .route("/v1/apps/{tenant}/{app}/rollout/{command}", post(command))
        .route(
            "/v1/apps/{tenant}/{app}/experiment",
            get(experiment_results).post(experiment_start),
        )
        .route(
            "/v1/apps/{tenant}/{app}/experiment/stop",
            post(experiment_stop),
        )
}

/// Query of `POST …/experiment`.
#[derive(Deserialize)]
struct ExperimentQuery {
    /// The treatment version (or `flag`).
    version: Option<String>,
    /// The flag whose variants are compared.
    flag: Option<String>,
    /// The flag's control variant (default: its default variant).
    control: Option<String>,
    /// The flag's treatment variant (default: its other variant, when it
    /// has two).
    treatment: Option<String>,
    /// Its share of users in percent (default 50).
    split: Option<String>,
    /// `header` (x-dwcp-conversion), `header:NAME` or `status:2xx`.
    conversion: Option<String>,
}

/// A conversion rule from the CLI's words.
fn conversion_rule(text: Option<&str>) -> Result<ConversionRule, ControlError> {
    let text = text.unwrap_or("header").trim();
    if text == "header" {
        return Ok(ConversionRule::Header(
            crate::experiments::CONVERSION_HEADER.into(),
        ));
    }
    if let Some(name) = text.strip_prefix("header:") {
        let name = name.trim().to_ascii_lowercase();
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ControlError::BadOption(format!(
                "--conversion header `{name}` is not a valid header name"
            )));
        }
        return Ok(ConversionRule::Header(name));
    }
    if let Some(class) = text.strip_prefix("status:") {
        let class = class.trim().to_ascii_lowercase();
        let digit = class
            .strip_suffix("xx")
            .and_then(|d| d.parse::<u16>().ok())
            .filter(|d| (1..=5).contains(d));
        if let Some(digit) = digit {
            return Ok(ConversionRule::StatusClass(digit));
        }
    }
    Err(ControlError::BadOption(format!(
        "--conversion `{text}`: use `header` ({}), `header:NAME` or `status:2xx`",
        crate::experiments::CONVERSION_HEADER
    )))
}

async fn experiment_start(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<ExperimentQuery>,
) -> ApiResult<ExperimentStatus> {
    let id = app_id(&tenant, &app)?;
    let percent = match q.split.as_deref() {
        None => 50.0,
        Some(p) => parse_percent(p)
            .filter(|p| *p > 0.0 && *p < 100.0)
            .ok_or_else(|| {
                ControlError::BadOption(format!(
                    "--split `{p}`: a percentage above 0 and below 100"
                ))
            })?,
    };
    let split_bp = from_percent(percent);
    let conversion = conversion_rule(q.conversion.as_deref())?;
    let subject = match (q.version, q.flag) {
        (Some(version), None) => ExperimentSubject::Version(version),
        (None, Some(key)) => flag_subject(&state, &tenant, key, q.control, q.treatment)?,
        _ => {
            return Err(ControlError::BadOption(
                "name a version to compare with the stable one, or --flag KEY (not both)".into(),
            )
            .into());
        }
    };
    Ok(axum::Json(
        state
            .control
            .start_experiment(&id, subject, split_bp, conversion)
            .await?,
    ))
}

/// The variants of flag `key` of `tenant` an experiment compares: checked
/// to exist and differ; by default the flag's default variant against its
/// other one.
fn flag_subject(
    state: &AdminState,
    tenant: &str,
    key: String,
    control: Option<String>,
    treatment: Option<String>,
) -> Result<ExperimentSubject, ControlError> {
    let definition = state.flags.get(tenant, &key).map_err(|_| {
        ControlError::NotFound(format!(
            "tenant `{tenant}` has no flag `{key}` (`dwcp --tenant {tenant} flags list`)"
        ))
    })?;
    let variants: Vec<String> = definition["variants"]
        .as_object()
        .map(|v| v.keys().cloned().collect())
        .unwrap_or_default();
    let control = control
        .or_else(|| definition["defaultVariant"].as_str().map(str::to_string))
        .ok_or_else(|| {
            ControlError::BadOption(format!(
                "flag `{key}` has no default variant: name --control"
            ))
        })?;
    let treatment = match treatment {
        Some(t) => t,
        None => {
            let others: Vec<&String> = variants.iter().filter(|v| **v != control).collect();
            match others.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(ControlError::BadOption(format!(
                        "flag `{key}` has variants {}: name the treatment with --treatment",
                        variants.join(", ")
                    )));
                }
            }
        }
    };
    for variant in [&control, &treatment] {
        if !variants.contains(variant) {
            return Err(ControlError::BadOption(format!(
                "flag `{key}` has no variant `{variant}` (it has {})",
                variants.join(", ")
            )));
        }
    }
    if control == treatment {
        return Err(ControlError::BadOption(format!(
            "--control and --treatment are both `{control}`"
        )));
    }
    Ok(ExperimentSubject::Flag {
        key,
        control,
        treatment,
    })
}

async fn experiment_stop(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<ExperimentStatus> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(state.control.stop_experiment(&id).await?))
}

async fn experiment_results(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<ExperimentStatus> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(state.control.experiment_results(&id).await?))
}

/// How a new version takes over, in the CLI's words: every field a string
/// (a query string's flattened numbers do not parse otherwise). Handlers
/// that take other options read it as a second `Query` of the same string.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StrategyQuery {
    /// `immediate`, `canary` or `blue-green`.
    pub strategy: Option<String>,
    /// Canary weights in percent, comma-separated (`1,5,25,50,100`).
    pub steps: Option<String>,
    /// The least time at each canary step (`60s`).
    pub step: Option<String>,
    /// How many percentage points more errors the canary may have.
    pub max_error_increase: Option<String>,
    /// How many percent slower the canary may be.
    pub max_latency_increase: Option<String>,
    /// Requests each version needs before anything is decided.
    pub min_samples: Option<String>,
    /// The analysis's overall false-abort rate.
    pub alpha: Option<String>,
}

impl StrategyQuery {
    /// The strategy and analysis settings asked for (`None`: not given).
    pub(crate) fn parse(&self) -> Result<(Option<Strategy>, Option<AnalysisConfig>), ControlError> {
        let bad = |m: String| ControlError::BadOption(m);
        let canary_only = self.steps.is_some() || self.step.is_some();
        let strategy = match self.strategy.as_deref() {
            None if canary_only => Some(canary(self.steps.as_deref(), self.step.as_deref())?),
            None => None,
            Some("canary") => Some(canary(self.steps.as_deref(), self.step.as_deref())?),
            Some(other) if canary_only => {
                return Err(bad(format!(
                    "--steps and --step-time go with --strategy canary, not `{other}`"
                )));
            }
            Some("immediate") => Some(Strategy::Immediate),
            Some("blue-green") => Some(Strategy::BlueGreen),
            Some(other) => {
                return Err(bad(format!(
                    "--strategy `{other}`: use immediate, canary or blue-green"
                )));
            }
        };
        let number = |flag: &str, v: &str, min: f64, max: f64| -> Result<f64, ControlError> {
            parse_percent(v)
                .filter(|x| *x >= min && *x <= max)
                .ok_or_else(|| bad(format!("{flag} `{v}`: a number from {min} to {max}")))
        };
        let mut analysis = AnalysisConfig::default();
        let mut any = false;
        if let Some(v) = &self.max_error_increase {
            analysis.error_tolerance = number("--max-error-increase", v, 0.0, 100.0)? / 100.0;
            any = true;
        }
        if let Some(v) = &self.max_latency_increase {
            analysis.latency_tolerance = number("--max-latency-increase", v, 0.0, 1000.0)? / 100.0;
            any = true;
        }
        if let Some(v) = &self.min_samples {
            analysis.min_samples = number("--min-samples", v, 1.0, 1e9)? as u64;
            any = true;
        }
        if let Some(v) = &self.alpha {
            analysis.alpha = number("--alpha", v, 1e-9, 0.5)?;
            any = true;
        }
        Ok((strategy, any.then_some(analysis)))
    }
}

/// A finite number as the CLI writes percentages (`25`, `25%`, `0.5`).
fn parse_percent(text: &str) -> Option<f64> {
    text.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

/// A canary strategy from `--steps` (percent) and `--step-time`.
fn canary(steps: Option<&str>, step: Option<&str>) -> Result<Strategy, ControlError> {
    let Strategy::Canary {
        steps: default_steps,
        step_secs: default_secs,
    } = Strategy::default_canary()
    else {
        unreachable!("the default canary is a canary")
    };
    let steps = match steps {
        None => default_steps,
        Some(list) => {
            let mut out = Vec::new();
            for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let percent = parse_percent(part)
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        ControlError::BadOption(format!(
                            "--steps: `{part}` is not a percentage above 0 and at most 100"
                        ))
                    })?;
                let bp = from_percent(percent);
                if out.last().is_some_and(|last| *last >= bp) {
                    return Err(ControlError::BadOption(format!(
                        "--steps must rise: `{list}`"
                    )));
                }
                out.push(bp.max(1));
            }
            if out.first().is_none_or(|first| *first >= BUCKETS) {
                // A first step of everyone leaves the stable version nothing
                // to compare with: it would hold forever.
                return Err(ControlError::BadOption(format!(
                    "--steps `{list}` needs a step below 100% (for everyone at once: --strategy immediate or blue-green)"
                )));
            }
            if out.last() != Some(&BUCKETS) {
                out.push(BUCKETS);
            }
            out
        }
    };
    let step_secs = match step {
        None => default_secs,
        Some(d) => humantime::parse_duration(d)
            .map_err(|e| {
                ControlError::BadOption(format!(
                    "--step-time `{d}`: {e} (write it as `30s` or `5m`)"
                ))
            })?
            .as_secs()
            .max(1),
    };
    Ok(Strategy::Canary { steps, step_secs })
}

async fn status(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
) -> ApiResult<RolloutStatus> {
    let id = app_id(&tenant, &app)?;
    Ok(axum::Json(state.control.rollout_status(&id)?))
}

/// Query of `POST …/rollout`: the version and how.
#[derive(Deserialize)]
struct StartQuery {
    version: String,
    #[serde(flatten)]
    strategy: StrategyQuery,
}

async fn start(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app)): Path<(String, String)>,
    Query(q): Query<StartQuery>,
) -> ApiResult<RolloutStatus> {
    let id = app_id(&tenant, &app)?;
    let (strategy, analysis) = q.strategy.parse()?;
    Ok(axum::Json(
        state
            .control
            .start_rollout(&id, q.version, strategy, analysis)
            .await?,
    ))
}

/// Query of a rollout command.
#[derive(Deserialize)]
struct CommandQuery {
    /// `weight`: the canary's new share in percent.
    percent: Option<String>,
    /// `undo`: the version to go back to (default: the previous one).
    to: Option<String>,
    /// `weight`: the version that gets the share; with no rollout in
    /// progress, a canary of it starts there.
    version: Option<String>,
}

async fn command(
    State(state): State<Arc<AdminState>>,
    Path((tenant, app, command)): Path<(String, String, String)>,
    Query(q): Query<CommandQuery>,
) -> ApiResult<RolloutStatus> {
    let id = app_id(&tenant, &app)?;
    let control = &state.control;
    let status = match command.as_str() {
        "promote" => {
            control
                .rollout_command(&id, RolloutCommand::Promote)
                .await?
        }
        "pause" => control.rollout_command(&id, RolloutCommand::Pause).await?,
        "resume" => control.rollout_command(&id, RolloutCommand::Resume).await?,
        "abort" => control.rollout_command(&id, RolloutCommand::Abort).await?,
        "undo" => control.undo(&id, q.to).await?,
        "weight" => {
            let percent = q
                .percent
                .as_deref()
                .and_then(parse_percent)
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    ControlError::BadOption("set-weight takes a percentage from 0 to 100".into())
                })?;
            let bp = from_percent(percent);
            if let Some(version) = q.version {
                let current = control.rollout_status(&id)?.rollout.filter(|r| {
                    !matches!(
                        r.phase,
                        dwcp_release::rollout::Phase::Promoted
                            | dwcp_release::rollout::Phase::Aborted
                    )
                });
                match current {
                    Some(r) if r.version != version => {
                        return Err(ControlError::BadOption(format!(
                            "{id} is rolling out {}, not {version}: promote or abort it first",
                            r.version
                        ))
                        .into());
                    }
                    Some(_) => {}
                    None => {
                        let canary = Some(Strategy::default_canary());
                        control.start_rollout(&id, version, canary, None).await?;
                    }
                }
            }
            control
                .rollout_command(&id, RolloutCommand::SetWeight(bp))
                .await?
        }
        other => {
            return Err(ControlError::BadOption(format!(
                "no rollout command `{other}`: promote, pause, resume, abort, undo or weight"
            ))
            .into());
        }
    };
    Ok(axum::Json(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(strategy: Option<&str>, steps: Option<&str>, step: Option<&str>) -> StrategyQuery {
        StrategyQuery {
            strategy: strategy.map(Into::into),
            steps: steps.map(Into::into),
            step: step.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn conversion_rules_parse_from_the_cli_words() {
        assert_eq!(
            conversion_rule(None).unwrap(),
            ConversionRule::Header("x-dwcp-conversion".into())
        );
        assert_eq!(
            conversion_rule(Some("header:X-Bought")).unwrap(),
            ConversionRule::Header("x-bought".into())
        );
        assert_eq!(
            conversion_rule(Some("status:2xx")).unwrap(),
            ConversionRule::StatusClass(2)
        );
        for bad in ["status:9xx", "status:200", "header:bad name", "clicks"] {
            assert!(conversion_rule(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn strategies_parse_from_the_cli_words() {
        assert_eq!(query(None, None, None).parse().unwrap(), (None, None));
        let (s, _) = query(Some("canary"), Some("10, 50"), Some("5s"))
            .parse()
            .unwrap();
        assert_eq!(
            s,
            Some(Strategy::Canary {
                steps: vec![1_000, 5_000, 10_000],
                step_secs: 5
            })
        );
        let (s, _) = query(None, Some("0.5,100"), None).parse().unwrap();
        assert!(matches!(s, Some(Strategy::Canary { steps, .. }) if steps == vec![50, 10_000]));
        assert_eq!(
            query(Some("blue-green"), None, None).parse().unwrap().0,
            Some(Strategy::BlueGreen)
        );
        for bad in [
            query(Some("yolo"), None, None),
            query(Some("canary"), Some("50,10"), None),
            query(Some("canary"), Some("0"), None),
            query(Some("canary"), Some("150"), None),
            query(Some("canary"), Some("100"), None),
            query(Some("canary"), Some(""), None),
            query(Some("immediate"), Some("5"), None),
            query(Some("canary"), None, Some("soon")),
        ] {
            assert!(bad.parse().is_err(), "{bad:?}");
        }
        let analysis = StrategyQuery {
            max_error_increase: Some("1".into()),
            min_samples: Some("50".into()),
            ..Default::default()
        };
        let (_, a) = analysis.parse().unwrap();
        let a = a.expect("analysis");
        assert_eq!((a.error_tolerance, a.min_samples), (0.01, 50));
        let zero = StrategyQuery {
            min_samples: Some("0".into()),
            ..Default::default()
        };
        assert!(zero.parse().is_err(), "no data must never decide");
    }
}
