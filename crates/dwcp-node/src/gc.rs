//! `dwcp gc`: keeps the data directory bounded. Old versions beyond each
//! app's retention go, then whatever no version uses any more: artifacts,
//! compiled code (also code compiled by an earlier `dwcp`, whose engine no
//! longer loads it), and audit entries older than the audit retention.
//!
//! Deploys already prune their app's versions as they go; `gc` is the
//! sweep over everything, and with `--dry-run` the way to see what it
//! would remove.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::control::{Control, ControlError};

/// What `dwcp gc` removed, or would remove.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Whether nothing was removed (only listed).
    pub dry_run: bool,
    /// Versions past retention, as `tenant/app@version`.
    pub versions: Vec<String>,
    /// Artifacts no version uses, by SHA-256.
    pub artifacts: Vec<String>,
    /// Compiled-code files no version uses or no longer loadable.
    pub compiled: Vec<String>,
    /// Audit entries older than the retention.
    pub audit_entries: usize,
    /// Bytes of files removed.
    pub bytes: u64,
}

impl Control {
    /// Runs a collection; with `dry_run`, only reports.
    pub async fn gc(self: &Arc<Self>, dry_run: bool) -> Result<GcReport, ControlError> {
        self.blocking_under_lock("gc", move |this| this.gc_blocking(dry_run))
            .await
    }

    fn gc_blocking(&self, dry_run: bool) -> Result<GcReport, ControlError> {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let mut used = HashSet::new();
        for mut record in self.state.apps(None)? {
            let pruned = record
                .prune_versions_except(self.keep_for(&record), &self.pinned_versions(&record));
            for v in &pruned {
                report
                    .versions
                    .push(format!("{}/{}@{}", record.tenant, record.app, v.version));
            }
            if !pruned.is_empty() && !dry_run {
                self.state.put_app(&record)?;
            }
            used.extend(record.versions.into_iter().map(|v| v.sha256));
        }

        self.sweep_files(&used, true, dry_run, &mut report)?;

        let cutoff = SystemTime::now()
            .checked_sub(self.settings.audit_retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as u64);
        report.audit_entries = self.state.prune_audit(cutoff, dry_run)?;

        tracing::info!(
            dry_run,
            versions = report.versions.len(),
            artifacts = report.artifacts.len(),
            compiled = report.compiled.len(),
            audit_entries = report.audit_entries,
            bytes = report.bytes,
            "garbage collected"
        );
        Ok(report)
    }

    /// Removes (with `dry_run`, only lists in `report`) the artifacts and
    /// compiled code no hash in `used` needs; with `other_engines`, also
    /// compiled code this engine cannot load. Start-up keeps those (a
    /// downgrade would use them); `gc` removes them.
    pub(crate) fn sweep_files(
        &self,
        used: &HashSet<String>,
        other_engines: bool,
        dry_run: bool,
        report: &mut GcReport,
    ) -> Result<(), ControlError> {
        for hash in self.artifacts.list()? {
            if used.contains(&hash) {
                continue;
            }
            report.bytes += std::fs::metadata(self.artifacts.path(&hash)).map_or(0, |m| m.len());
            if !dry_run {
                self.artifacts.remove(&hash)?;
            }
            report.artifacts.push(hash);
        }
        for file in self.runtime.aot_cache().files()? {
            if used.contains(&file.sha256) && (file.current_engine || !other_engines) {
                continue;
            }
            report.bytes += file.size;
            if !dry_run {
                match std::fs::remove_file(&file.path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            if let Some(name) = file.path.file_name().and_then(|n| n.to_str()) {
                report.compiled.push(name.to_string());
            }
        }
        Ok(())
    }
}
