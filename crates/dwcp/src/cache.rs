//! `dwcp cache stats|purge`: the edge response cache of the node spoken
//! to; a purge reaches every node of its cluster.

use serde_json::Value;

use crate::client::AdminClient;
use crate::commands::{percent_encode, print_json, text};

/// `dwcp cache …`.
#[derive(clap::Subcommand, Debug)]
pub enum CacheCommand {
    /// Hits, misses, revalidations, entries and bytes of this node's cache.
    ///
    /// Example: dwcp cache stats --json
    Stats {
        /// Print JSON: {hits, misses, revalidations, refreshes, stores, evictions, purged, entries, bytes, max_bytes}.
        #[arg(long)]
        json: bool,
    },
    /// Remove cached answers: all, a tenant's, an app's, or under a path (every node of the cluster).
    ///
    /// Example: dwcp cache purge demo/hello --path /api
    Purge {
        /// TENANT or TENANT/APP (default: everything).
        target: Option<String>,
        /// Only paths starting with this (with TENANT/APP).
        #[arg(long)]
        path: Option<String>,
    },
}

/// Runs `dwcp cache …`.
pub fn cache(client: &AdminClient, command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Stats { json } => {
            let s: Value = client.get("/v1/cache")?;
            if json {
                return print_json(&s);
            }
            let n = |k: &str| s[k].as_u64().unwrap_or(0);
            let looked = n("hits") + n("misses") + n("revalidations");
            let ratio = if looked == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * n("hits") as f64 / looked as f64)
            };
            println!(
                "hits {} ({ratio}), misses {}, revalidated {} ({} still fresh), stored {}, evicted {}, purged {}; {} entries, {} of {} bytes",
                n("hits"),
                n("misses"),
                n("revalidations"),
                n("refreshes"),
                n("stores"),
                n("evictions"),
                n("purged"),
                n("entries"),
                n("bytes"),
                n("max_bytes"),
            );
            Ok(())
        }
        CacheCommand::Purge { target, path } => {
            let mut query = Vec::new();
            if let Some(target) = &target {
                match target.split_once('/') {
                    Some((tenant, app)) => {
                        query.push(format!("tenant={}", percent_encode(tenant)));
                        query.push(format!("app={}", percent_encode(app)));
                    }
                    None => query.push(format!("tenant={}", percent_encode(target))),
                }
            }
            if let Some(path) = &path {
                query.push(format!("path={}", percent_encode(path)));
            }
            let out: Value = client.post_json(
                &format!("/v1/cache/purge?{}", query.join("&")),
                &Value::Null,
            )?;
            println!(
                "purged {} entries here{}",
                text(&out["removed_here"]),
                if out["cluster"] == true {
                    "; every other node of the cluster purges too"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}
