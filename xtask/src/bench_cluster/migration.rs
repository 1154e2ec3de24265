//! Measurement 5: live migration of a stateful key holding 64 MiB of
//! heap, moved from node to node while a client increments it through
//! edge-a. Each migration's own report gives the copy (while serving) and
//! the pause (requests held); the client's samples give what it saw: no
//! failure, every increment counted once, and how long the slowest
//! request around the move took. The copy time is the baseline the pause
//! is compared with: a stop-and-copy move would hold requests that long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// The key's heap.
const PAD: usize = 64 << 20;
/// Migrations measured, each to the next node.
const MIGRATIONS: usize = 5;
/// Load before each migration starts and after it ends.
const AROUND: Duration = Duration::from_secs(1);
const HOST: &str = "counter.demo.localhost";
const KEY: (&str, &str) = ("x-dwcp-key", "big");

/// One increment as the client saw it.
struct Increment {
    end: Duration,
    latency: Duration,
    /// The count answered, or why there was none.
    outcome: Result<u64, String>,
}

pub(super) fn migration(cluster: &Cluster, notes: &mut Vec<String>) -> anyhow::Result<Value> {
    let a = cluster.node("edge-a")?;
    let deploy = [
        "deploy",
        "demo/counter",
        path_str(&cluster.tools.counter)?,
        "--stateful",
        "--memory",
        "128MiB",
    ];
    a.cli(&deploy)?;
    let route = poll(Duration::from_secs(20), "demo/counter placed", || {
        let route = a.route("demo/counter")?;
        Ok((replica_nodes(&route).len() == 1).then_some(route))
    })?;
    let mut at = replica_nodes(&route).remove(0);
    poll(Duration::from_secs(20), "demo/counter serving", || {
        Ok((http_request(a.http, "GET", HOST, "/", &[KEY])?.status == 200).then_some(()))
    })?;
    let grow = http_request(a.http, "POST", HOST, &format!("/?pad={PAD}"), &[KEY])?;
    ensure!(
        grow.status == 200,
        "growing the key's heap: {} {}",
        grow.status,
        String::from_utf8_lossy(&grow.body)
    );
    let mut count: u64 = String::from_utf8_lossy(&grow.body).trim().parse()?;

    let mut rows = Vec::new();
    let nodes = ["edge-a", "edge-b", "edge-c"];
    for _ in 0..MIGRATIONS {
        let next = nodes.iter().position(|n| *n == at).map_or(0, |i| i + 1);
        let to = nodes[next % nodes.len()];
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let load = {
            let (stop, addr) = (stop.clone(), a.http);
            std::thread::spawn(move || increments(addr, start, &stop))
        };
        std::thread::sleep(AROUND);
        let began = start.elapsed();
        let out = a.cli(&["migrate", "demo/counter", "--to", to, "--json"]);
        let ended = start.elapsed();
        std::thread::sleep(AROUND);
        stop.store(true, Ordering::Relaxed);
        let samples = load
            .join()
            .map_err(|_| anyhow::anyhow!("the load thread panicked"))?;
        let report: Value = serde_json::from_str(&out?)?;
        let row = MigrationRow::new(&at, to, report, &samples, began, ended, &mut count);
        row.check(notes);
        rows.push(row);
        at = to.to_string();
    }
    // Every increment acknowledged is in the count, wherever it is now.
    let now = http_request(a.http, "GET", HOST, "/", &[KEY])?;
    let final_count: u64 = String::from_utf8_lossy(&now.body).trim().parse()?;
    if final_count != count {
        notes.push(format!(
            "migration: the key counts {final_count}, the client had {count} increments acknowledged"
        ));
    }
    print_rows(a, &deploy, &rows);
    let pauses: Vec<f64> = rows.iter().map(|r| r.pause_ms).collect();
    let copies: Vec<f64> = rows.iter().map(|r| r.copy_ms).collect();
    Ok(json!({
        "state_bytes": PAD,
        "migrations": rows.iter().map(MigrationRow::json).collect::<Vec<_>>(),
        "pause_p50_ms": round(percentile(&pauses, 50.0), 1),
        "pause_max_ms": round(max(&pauses), 1),
        "copy_p50_ms": round(percentile(&copies, 50.0), 1),
        "final_count": final_count,
        "acknowledged": count,
    }))
}

/// POSTs increments through `addr` one after another until `stop`.
fn increments(addr: SocketAddr, start: Instant, stop: &AtomicBool) -> Vec<Increment> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let outcome = match http_request(addr, "POST", HOST, "/", &[KEY]) {
            Ok(reply) if reply.status == 200 => String::from_utf8_lossy(&reply.body)
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("200 without a count: {e}")),
            Ok(reply) => Err(format!(
                "{} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            )),
            Err(e) => Err(format!("{e:#}")),
        };
        samples.push(Increment {
            end: start.elapsed(),
            latency: sent.elapsed(),
            outcome,
        });
    }
    samples
}

/// One migration: its report and what the client saw.
struct MigrationRow {
    from: String,
    to: String,
    copied_mib: f64,
    copy_ms: f64,
    delta_kib: f64,
    pause_ms: f64,
    total_ms: f64,
    requests: usize,
    failed: Vec<String>,
    /// Counts answered out of order (lost or doubled increments).
    wrong_counts: usize,
    /// The slowest request that ended while the keys were copied.
    slowest_copy_ms: f64,
    /// The slowest that ended from the pause on: it waited at the door,
    /// or was the first on the destination (which wakes the key there).
    slowest_switch_ms: f64,
    p50_before_ms: f64,
}

impl MigrationRow {
    fn new(
        from: &str,
        to: &str,
        report: Value,
        samples: &[Increment],
        began: Duration,
        ended: Duration,
        count: &mut u64,
    ) -> MigrationRow {
        let mut failed = Vec::new();
        let mut wrong_counts = 0;
        for sample in samples {
            match &sample.outcome {
                Ok(n) if *n == *count + 1 => *count = *n,
                Ok(n) => {
                    wrong_counts += 1;
                    *count = *n;
                }
                Err(e) => failed.push(e.clone()),
            }
        }
        let before: Vec<f64> = samples
            .iter()
            .filter(|s| s.end < began)
            .map(|s| ms(s.latency))
            .collect();
        let field = |name: &str| report[name].as_f64().unwrap_or(f64::NAN);
        // Requests that were in flight at some point of the migration; and
        // of those, the ones that ended during the copy, and the ones that
        // ended from the pause on (the pause starts when the copy ends,
        // the command's own start-up aside).
        let during: Vec<&Increment> = samples
            .iter()
            .filter(|s| s.end >= began && s.end.saturating_sub(s.latency) <= ended)
            .collect();
        let switch_at = ended.saturating_sub(Duration::from_secs_f64(
            (field("total_ms") - field("copy_ms")).max(0.0) / 1e3,
        ));
        let slowest = |copying: bool| {
            max(&during
                .iter()
                .filter(|s| (s.end < switch_at) == copying)
                .map(|s| ms(s.latency))
                .collect::<Vec<_>>())
        };
        MigrationRow {
            from: from.to_string(),
            to: to.to_string(),
            copied_mib: field("copied_bytes") / (1024.0 * 1024.0),
            copy_ms: field("copy_ms"),
            delta_kib: field("delta_bytes") / 1024.0,
            pause_ms: field("pause_ms"),
            total_ms: field("total_ms"),
            requests: during.len(),
            failed,
            wrong_counts,
            slowest_copy_ms: slowest(true),
            slowest_switch_ms: slowest(false),
            p50_before_ms: percentile(&before, 50.0),
        }
    }

    fn check(&self, notes: &mut Vec<String>) {
        if !self.failed.is_empty() {
            notes.push(format!(
                "migration {} → {}: {} increments failed, first: {}",
                self.from,
                self.to,
                self.failed.len(),
                self.failed[0]
            ));
        }
        if self.wrong_counts > 0 {
            notes.push(format!(
                "migration {} → {}: {} counts out of order (lost or doubled increments)",
                self.from, self.to, self.wrong_counts
            ));
        }
    }

    fn json(&self) -> Value {
        json!({
            "from": self.from,
            "to": self.to,
            "copied_mib": round(self.copied_mib, 2),
            "copy_ms": round(self.copy_ms, 1),
            "delta_kib": round(self.delta_kib, 1),
            "pause_ms": round(self.pause_ms, 1),
            "total_ms": round(self.total_ms, 1),
            "requests_during": self.requests,
            "failed": self.failed.len(),
            "wrong_counts": self.wrong_counts,
            "slowest_copy_ms": round(self.slowest_copy_ms, 1),
            "slowest_switch_ms": round(self.slowest_switch_ms, 1),
            "p50_before_ms": round(self.p50_before_ms, 2),
        })
    }
}

fn print_rows(a: &Node, deploy: &[&str], rows: &[MigrationRow]) {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "\n## 5. Live migration of a key holding {} MiB, under load\n\n\
         `{}`, one POST `/?pad={PAD}` to key `big` (its heap grows to {} MiB), then \
         {MIGRATIONS} times: POSTs through edge-a one after another (`Connection: close`), \
         and after {:?} `{}`. Copy and pause from the command's report; the client's \
         columns from its own timings. A stop-and-copy move would hold requests for the \
         whole copy.\n",
        PAD >> 20,
        a.shown(&deploy.join(" ")),
        PAD >> 20,
        AROUND,
        a.shown("migrate demo/counter --to NODE --json"),
    );
    table.push_str(
        "| move | copied (MiB) | copy (ms) | changes in the pause (KiB) | **pause (ms)** | whole (ms) | increments during | failed | out of order | slowest in the copy (ms) | slowest from the pause on (ms) | p50 before (ms) |\n",
    );
    table.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let _ = writeln!(
            table,
            "| {} → {} | {:.1} | {:.0} | {:.1} | **{:.1}** | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.2} |",
            r.from,
            r.to,
            r.copied_mib,
            r.copy_ms,
            r.delta_kib,
            r.pause_ms,
            r.total_ms,
            r.requests,
            r.failed.len(),
            r.wrong_counts,
            r.slowest_copy_ms,
            r.slowest_switch_ms,
            r.p50_before_ms,
        );
    }
    print!("{table}");
}
