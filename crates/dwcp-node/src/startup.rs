//! Loading the stored apps when a node starts.
//!
//! Usually every app's compiled code is in the AOT cache and loading takes
//! milliseconds. After an upgrade of `dwcp` the engine's compatibility hash
//! differs, no cached file fits, and every app compiles again: seconds per
//! app. So apps load on `--compile-jobs` threads, the busiest first (by the
//! requests they served, as last stored), and each serves as soon as it is
//! loaded; the others answer 503 with `Retry-After` meanwhile, and
//! `/readyz` says not ready until all are done. A line on the node's log
//! reports progress every two seconds.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dwcp_runtime::CacheOutcome;
use dwcp_store::AppRecord;

use crate::apps::Unavailable;
use crate::control::{Control, ControlError};
use crate::gc::GcReport;

/// How the loading at start went.
#[derive(Debug, Clone, Copy)]
pub struct LoadReport {
    /// Apps serving.
    pub loaded: usize,
    /// Of those, apps whose code had to be compiled.
    pub compiled: usize,
    /// Apps that could not be loaded (logged).
    pub failed: usize,
    /// How long it took.
    pub elapsed: Duration,
}

#[derive(Default)]
struct Counts {
    done: AtomicUsize,
    compiled: AtomicUsize,
    failed: AtomicUsize,
}

impl Control {
    /// Marks every stored app as loading, before the node serves at all:
    /// a request to an app that exists but is not loaded yet gets 503
    /// with `retry-after`, never 404.
    pub fn mark_stored_loading(&self) -> Result<(), ControlError> {
        for r in self.state.apps(None)? {
            self.apps
                .set_unavailable(&r.tenant, &r.app, Unavailable::Loading);
        }
        Ok(())
    }

    /// Loads every stored app on `jobs` threads, busiest first, after
    /// removing files no app refers to. One app that cannot be loaded is
    /// logged and skipped: it must not keep the others down.
    pub fn load_all(&self, jobs: usize) -> Result<LoadReport, ControlError> {
        let started = Instant::now();
        // The admin API already answers (health checks): a deploy arriving
        // now waits until the stored apps are loaded, so that start-up never
        // installs a record older than the deploy.
        let _serial = self.serial.blocking_lock();
        let mut records = self.state.apps(None)?;
        for r in &records {
            self.apps
                .set_unavailable(&r.tenant, &r.app, Unavailable::Loading);
        }
        self.sweep(&records)?;
        let served = self.state.served()?;
        records.sort_by_key(|r| {
            Reverse(
                served
                    .get(&format!("{}/{}", r.tenant, r.app))
                    .copied()
                    .unwrap_or(0),
            )
        });

        let next = AtomicUsize::new(0);
        let counts = Counts::default();
        // Apps sharing an artifact compile it once: the first takes its
        // lock and compiles, the others then find it in the cache.
        let artifact_locks: Mutex<HashMap<String, Arc<Mutex<()>>>> = Mutex::default();
        let total = records.len();
        let jobs = jobs.clamp(1, total.max(1));
        let this_thread = std::thread::current();
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| {
                    while let Some(record) = records.get(next.fetch_add(1, Ordering::Relaxed)) {
                        self.load_one(record, &artifact_locks, &counts);
                    }
                    this_thread.unpark();
                });
            }
            report_progress(&counts, total, started);
        });

        let report = LoadReport {
            loaded: total - counts.failed.load(Ordering::Relaxed),
            compiled: counts.compiled.load(Ordering::Relaxed),
            failed: counts.failed.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        };
        if total > 0 {
            tracing::info!(
                loaded = report.loaded,
                compiled = report.compiled,
                failed = report.failed,
                jobs,
                "loaded {} of {total} apps in {:.1?}",
                report.loaded,
                report.elapsed
            );
        }
        Ok(report)
    }

    fn load_one(
        &self,
        record: &AppRecord,
        artifact_locks: &Mutex<HashMap<String, Arc<Mutex<()>>>>,
        counts: &Counts,
    ) {
        // Counted as done however this ends, so that the progress loop ends.
        let _done = Done(&counts.done);
        let sha = record.active_version().map(|v| v.sha256.clone());
        let lock = sha.map(|sha| {
            artifact_locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(sha)
                .or_default()
                .clone()
        });
        let _compiling = lock.as_ref().map(|l| l.lock());
        // A panic in one app's loading (a wasmtime bug, say) fails that app,
        // not the node.
        let loaded =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.activate(record)))
                .unwrap_or_else(|_| {
                    Err(ControlError::BadOption(
                        "loading it panicked (a bug: please report it)".into(),
                    ))
                });
        match loaded {
            Ok(cache) => {
                if cache != CacheOutcome::Hit {
                    counts.compiled.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(tenant = %record.tenant, app = %record.app, ?cache, "app loaded");
            }
            Err(e) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                self.apps
                    .set_unavailable(&record.tenant, &record.app, Unavailable::Failed);
                tracing::error!(tenant = %record.tenant, app = %record.app, "not serving: {e}");
            }
        }
    }

    /// Removes artifacts and compiled code that no stored version uses:
    /// what a crash in the middle of a deploy or delete can leave.
    fn sweep(&self, records: &[AppRecord]) -> Result<(), ControlError> {
        let used: HashSet<String> = records
            .iter()
            .flat_map(|r| &r.versions)
            .map(|v| v.sha256.clone())
            .collect();
        let mut removed = GcReport::default();
        self.sweep_files(&used, false, false, &mut removed)?;
        for hash in &removed.artifacts {
            tracing::info!(artifact = %hash, "removed an artifact no app uses");
        }
        // No backup runs yet: any staging directory is a crashed one's.
        for entry in std::fs::read_dir(&self.data_dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(crate::backup::STAGING_PREFIX))
            {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        Ok(())
    }
}

struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs how far loading has got every two seconds until it is done (the
/// loaders unpark this thread when they finish).
fn report_progress(counts: &Counts, total: usize, started: Instant) {
    const EVERY: Duration = Duration::from_secs(2);
    let mut next_report = Instant::now() + EVERY;
    while counts.done.load(Ordering::Relaxed) < total {
        std::thread::park_timeout(next_report.saturating_duration_since(Instant::now()));
        if Instant::now() >= next_report && counts.done.load(Ordering::Relaxed) < total {
            next_report += EVERY;
            tracing::info!(
                "loading apps: {}/{total} done ({} compiled, {} failed), {:.0?} so far",
                counts.done.load(Ordering::Relaxed),
                counts.compiled.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                started.elapsed()
            );
        }
    }
}
