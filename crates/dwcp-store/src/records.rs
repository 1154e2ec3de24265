//! The records kept in the state store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, as stored in records.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A tenant: a namespace of apps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantRecord {
    /// The tenant's name (a DNS label).
    pub name: String,
    /// When it was created (Unix seconds).
    pub created_at: u64,
    /// What its apps may use together.
    #[serde(default)]
    pub quota: TenantQuota,
}

/// What a tenant's apps may use together; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TenantQuota {
    /// Memory the tenant's live instances may reserve at once, in bytes: each
    /// instance counts its app's memory limit.
    pub memory_bytes: Option<u64>,
    /// Instances the tenant may have live at once.
    pub instances: Option<u32>,
}

/// The limits every instance of an app runs under.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppLimits {
    /// Maximum linear memory of one instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time a request may keep the guest running, in milliseconds.
    pub deadline_ms: u64,
    /// Requests served at once; more wait up to 1 s, then get 503.
    pub concurrency: u32,
    /// Requests one instance may serve before it is dropped (1: a fresh
    /// instance per request).
    pub reuse: u32,
    /// Largest request body accepted, in bytes.
    pub max_request_body: u64,
    /// Largest response body sent, in bytes; beyond it the response is cut off.
    pub max_response_body: u64,
}

impl Default for AppLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            deadline_ms: 1000,
            concurrency: 100,
            reuse: 1,
            max_request_body: 16 << 20,
            max_response_body: 64 << 20,
        }
    }
}

/// One uploaded version of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VersionRecord {
    /// The version's name (`v1`, `v2`, … unless named at deploy).
    pub version: String,
    /// SHA-256 of the component, lowercase hex: the artifact's address.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was deployed (Unix seconds).
    pub deployed_at: u64,
    /// The function run at deploy to pre-initialize it (`--preinit`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preinit: Option<String>,
    /// SHA-256 of the component as uploaded, when what is stored differs
    /// from it (pre-initialized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    /// The id of the publisher key whose signature was checked at upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// That signature (base64), kept so that other nodes of a cluster can
    /// check it before they serve the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// An app: its versions, the one serving, and its limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppRecord {
    /// The owning tenant.
    pub tenant: String,
    /// The app's name.
    pub app: String,
    /// The version that serves requests.
    pub active: String,
    /// Every stored version, oldest first.
    pub versions: Vec<VersionRecord>,
    /// The limits its instances run under.
    pub limits: AppLimits,
    /// When the app was first deployed (Unix seconds).
    pub created_at: u64,
    /// What its guests may reach with outgoing HTTP (nothing by default).
    #[serde(default)]
    pub egress: EgressSettings,
    /// Config values, given to the guest as environment variables.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets, sealed; given to the guest as environment variables.
    #[serde(default)]
    pub secrets: BTreeMap<String, SealedSecret>,
    /// How many versions to keep (`None`: the node's `--keep-versions`).
    #[serde(default)]
    pub keep_versions: Option<u32>,
    /// Set for a stateful app (`deploy --stateful`): one long-lived instance
    /// per key, checkpointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful: Option<StatefulSettings>,
    /// The version that served before the last switch: where `dwcp rollout
    /// undo` goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// The progressive rollout in progress, or the last one (kept for
    /// `dwcp rollout status` until the next starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
    /// How new versions of the app take over, and how users are split.
    #[serde(default)]
    pub release: ReleaseSettings,
    /// The A/B experiment running, or the last one (kept for its results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<ExperimentRecord>,
    /// How long the edge cache keeps its GET answers that state no
    /// freshness of their own, in milliseconds (`apps set --cache-ttl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_ms: Option<u64>,
    /// Where its replicas go in a cluster (a node alone serves every app).
    #[serde(default, skip_serializing_if = "PlacementSpec::is_everywhere")]
    pub placement: PlacementSpec,
}

/// How many replicas of an app a cluster runs, and where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlacementSpec {
    /// How many (`None`: one on every node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Only in these regions (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
}

impl PlacementSpec {
    /// Whether every node serves the app (the default).
    pub fn is_everywhere(&self) -> bool {
        self.replicas.is_none() && self.regions.is_empty()
    }
}

impl AppRecord {
    /// Where the app's replicas go in a cluster. A stateful app runs one
    /// replica whatever it asked: its keys' state lives with one instance
    /// each, and requests are not routed to a key's owner across replicas.
    pub fn placement_spec(&self) -> PlacementSpec {
        let mut spec = self.placement.clone();
        if self.stateful.is_some() {
            spec.replicas = Some(1);
        }
        spec
    }
}

/// An A/B experiment: between the stable version (control) and another,
/// or between two variants of one of the tenant's flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExperimentRecord {
    /// The flag whose variants are compared (`None`: versions are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// The control: the stable version when it started, or a variant.
    pub control: String,
    /// The treatment: a version, or a variant.
    pub treatment: String,
    /// The treatment's share of users, in basis points (for a flag: the
    /// share its targeting is meant to give, which the sample-ratio check
    /// holds it to).
    pub split_bp: u32,
    /// What counts as a conversion.
    pub conversion: ConversionRule,
    /// When it started (Unix seconds).
    pub started_at: u64,
    /// When it stopped (`None`: it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<u64>,
    /// The control's exposures and conversions so far.
    #[serde(default)]
    pub control_counts: dwcp_release::experiment::VariantCounts,
    /// The treatment's.
    #[serde(default)]
    pub treatment_counts: dwcp_release::experiment::VariantCounts,
}

impl ExperimentRecord {
    /// Whether it still splits traffic.
    pub fn running(&self) -> bool {
        self.stopped_at.is_none()
    }
}

/// What counts as a conversion in an experiment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ConversionRule {
    /// The app's response carries this header (which the node removes).
    Header(String),
    /// The response's status is in this class (2 for 2xx).
    StatusClass(u16),
}

/// A progressive rollout of one version against the stable one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RolloutRecord {
    /// The version rolling out (the canary, or blue-green's green).
    pub version: String,
    /// The version it is compared with, which serves the rest.
    pub stable: String,
    /// When it started (Unix seconds).
    pub started_at: u64,
    /// The rollout's state and every decision so far.
    pub state: dwcp_release::rollout::Rollout,
    /// Both versions' totals at the last look: what the analysis has seen.
    #[serde(default)]
    pub seen: ArmTotals,
    /// The part of `seen` counted by earlier runs of the node (its live
    /// counters start again at a restart; the analysis must not).
    #[serde(default)]
    pub carried: ArmTotals,
    /// Which run of the node counted the rest.
    #[serde(default)]
    pub run: u64,
}

/// The stable version's and the canary's totals.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ArmTotals {
    /// The stable version's.
    pub stable: dwcp_release::analysis::ArmStats,
    /// The canary's.
    pub canary: dwcp_release::analysis::ArmStats,
}

impl RolloutRecord {
    /// Whether the rollout still splits traffic (not promoted or aborted).
    pub fn in_progress(&self) -> bool {
        !self.state.is_over()
    }
}

/// An app's release settings (`dwcp apps set --strategy …`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReleaseSettings {
    /// The strategy of a deploy that names none (`None`: immediate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<dwcp_release::rollout::Strategy>,
    /// The analysis's settings (`None`: the defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<dwcp_release::analysis::AnalysisConfig>,
    /// The request header that names the user for sticky splits (`None`:
    /// `x-user-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_header: Option<String>,
    /// A cookie that names the user when the header is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_cookie: Option<String>,
}

/// How a stateful app's keys are addressed, checkpointed and hibernated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatefulSettings {
    /// The request header that names the key.
    pub key_header: String,
    /// Checkpoint every N milliseconds (`None`: after every request, so an
    /// acknowledged request is never lost).
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Checkpoints kept per key.
    pub keep: u32,
    /// A key idle this long is checkpointed and its instance dropped.
    pub hibernate_after_ms: u64,
}

impl Default for StatefulSettings {
    fn default() -> Self {
        Self {
            key_header: "x-dwcp-key".into(),
            checkpoint_interval_ms: None,
            keep: 5,
            hibernate_after_ms: 300_000,
        }
    }
}

/// A secret as stored: sealed with the node's secrets key (AEAD), bound to
/// its tenant, app and name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealedSecret {
    /// The nonce, hex.
    pub nonce: String,
    /// Ciphertext and tag, hex.
    pub sealed: String,
}

/// An app's egress policy as stored: the rules as the operator wrote them,
/// validated when set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EgressSettings {
    /// `--allow-host` rules: `api.example.com`, `*.svc.example`, `host:port`.
    pub allow_hosts: Vec<String>,
    /// `--allow-private` CIDRs.
    pub allow_private: Vec<String>,
}

impl AppRecord {
    /// The version record that serves requests.
    pub fn active_version(&self) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == self.active)
    }

    /// Removes and returns the versions beyond the newest `keep` that
    /// nothing may still need. The active version and the one deployed
    /// before it (where an undo returns to) are always kept, whatever
    /// `keep` says.
    pub fn prune_versions(&mut self, keep: usize) -> Vec<VersionRecord> {
        self.prune_versions_except(keep, &[])
    }

    /// [`AppRecord::prune_versions`], keeping also the versions `pinned`
    /// names (a stateful app's versions that keys hold state on).
    pub fn prune_versions_except(&mut self, keep: usize, pinned: &[String]) -> Vec<VersionRecord> {
        let active = self.versions.iter().position(|v| v.version == self.active);
        let pinned_at: Vec<bool> = self
            .versions
            .iter()
            .map(|v| pinned.contains(&v.version))
            .collect();
        // Also kept: the version an undo goes back to, the one rolling out
        // and those an experiment runs.
        let release: Vec<bool> = self
            .versions
            .iter()
            .map(|v| {
                self.previous.as_deref() == Some(v.version.as_str())
                    || self.rollout.as_ref().is_some_and(|r| {
                        r.in_progress() && (r.version == v.version || r.stable == v.version)
                    })
                    || self.experiment.as_ref().is_some_and(|e| {
                        e.running() && (e.control == v.version || e.treatment == v.version)
                    })
            })
            .collect();
        let protected =
            |i: usize| active.is_some_and(|a| i == a || i + 1 == a) || pinned_at[i] || release[i];
        let first_kept = self.versions.len().saturating_sub(keep);
        let mut pruned = Vec::new();
        let mut i = 0;
        self.versions.retain(|v| {
            let keep = i >= first_kept || protected(i);
            if !keep {
                pruned.push(v.clone());
            }
            i += 1;
            keep
        });
        pruned
    }

    /// The name the next unnamed deploy gets: `v` and one more than the
    /// highest `vN` so far.
    pub fn next_version_name(&self) -> String {
        let highest = self
            .versions
            .iter()
            .filter_map(|v| v.version.strip_prefix('v')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("v{}", highest + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(name: &str) -> VersionRecord {
        VersionRecord {
            version: name.into(),
            sha256: "00".into(),
            size: 1,
            deployed_at: 0,
            preinit: None,
            source_sha256: None,
            signed_by: None,
            signature: None,
        }
    }

    fn app(versions: &[&str], active: &str) -> AppRecord {
        AppRecord {
            tenant: "t".into(),
            app: "a".into(),
            active: active.into(),
            versions: versions.iter().map(|v| version(v)).collect(),
            limits: AppLimits::default(),
            created_at: 0,
            egress: Default::default(),
            config: Default::default(),
            secrets: Default::default(),
            keep_versions: None,
            stateful: None,
            previous: None,
            rollout: None,
            release: Default::default(),
            experiment: None,
            placement: Default::default(),
            cache_ttl_ms: None,
        }
    }

    fn names(versions: &[VersionRecord]) -> Vec<&str> {
        versions.iter().map(|v| v.version.as_str()).collect()
    }

    #[test]
    fn pruning_keeps_the_newest_and_what_an_undo_needs() {
        let mut r = app(&["v1", "v2", "v3", "v4", "v5"], "v5");
        assert_eq!(names(&r.prune_versions(3)), ["v1", "v2"]);
        assert_eq!(names(&r.versions), ["v3", "v4", "v5"]);
        // Nothing more to prune at the same setting.
        assert!(r.prune_versions(3).is_empty());

        // An older version serving: it and its predecessor stay.
        let mut r = app(&["v1", "v2", "v3", "v4", "v5"], "v2");
        assert_eq!(names(&r.prune_versions(2)), ["v3"]);
        assert_eq!(names(&r.versions), ["v1", "v2", "v4", "v5"]);

        // keep 1 still keeps the undo target.
        let mut r = app(&["v1", "v2", "v3"], "v3");
        assert_eq!(names(&r.prune_versions(1)), ["v1"]);
        assert_eq!(names(&r.versions), ["v2", "v3"]);
    }

    #[test]
    fn next_version_skips_named_versions() {
        let mut app = app(&["v1"], "v1");
        assert_eq!(app.next_version_name(), "v2");
        app.versions.push(version("beta"));
        app.versions.push(version("v7"));
        assert_eq!(app.next_version_name(), "v8");
        assert_eq!(app.active_version().map(|v| v.version.as_str()), Some("v1"));
    }
}

/// One admin action, as the audit log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// When (Unix seconds).
    pub at: u64,
    /// Which token did it (its id), once admin tokens exist.
    pub token: Option<String>,
    /// What: the method and path (`PUT /v1/tenants/acme/quota?memory=2GiB`).
    pub action: String,
    /// The outcome: the HTTP status answered.
    pub status: u16,
}
