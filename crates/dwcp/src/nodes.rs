//! `dwcp nodes` and `dwcp cluster health`: the cluster's members as the
//! node the CLI speaks to sees them (that node alone without `--cluster`).

use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::client::AdminClient;
use crate::commands::{print_json, text};

/// `dwcp nodes …`.
#[derive(clap::Subcommand, Debug)]
pub enum NodesCommand {
    /// The live nodes: id, region, labels, state, address.
    ///
    /// Example: dwcp nodes list --region eu-west --json
    List {
        /// Only the nodes of this region.
        #[arg(long)]
        region: Option<String>,
        /// Print JSON: {cluster, this_node, nodes: [{node, region, labels, admission, http, version, self}]}.
        #[arg(long)]
        json: bool,
    },
    /// One node: its region, labels, state and address (for the node answering, also its apps).
    ///
    /// Example: dwcp nodes status edge-1
    Status {
        /// The node's id.
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take no new replicas on NODE (those it has stay).
    ///
    /// Example: dwcp nodes cordon edge-2
    Cordon {
        /// The node's id.
        node: String,
    },
    /// Take new replicas on NODE again.
    ///
    /// Example: dwcp nodes uncordon edge-2
    Uncordon {
        /// The node's id.
        node: String,
    },
    /// Move NODE's replicas to other nodes (and take no new ones); a
    /// stateful app's keys are migrated live, keeping their state.
    ///
    /// Example: dwcp nodes drain edge-2
    Drain {
        /// The node's id.
        node: String,
    },
    /// Forget a node that is gone (a live node is refused: drain and stop it first).
    ///
    /// Example: dwcp nodes remove edge-2
    Remove {
        /// The node's id.
        node: String,
    },
}

/// `dwcp route …`.
#[derive(clap::Subcommand, Debug)]
pub enum RouteCommand {
    /// Where an app's replicas are and why; their latency and load as this node sees them.
    ///
    /// Example: dwcp route status demo/hello --json
    Status {
        /// TENANT/APP.
        app: String,
        /// Print JSON: {app, spec, replicas: [{node, region, alive, self, latency_ms, in_flight, serving}], regions, reasons, decided_by, decided_at, forwarded, retried}.
        #[arg(long)]
        json: bool,
    },
}

/// `dwcp cluster …`.
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// The cluster at a glance: nodes by region, the link's state, readiness.
    ///
    /// Example: dwcp cluster health --json
    Health {
        /// Print JSON: {cluster, connected, healthy, nodes, not_active, regions, this_node}.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `dwcp nodes` (`list` when no subcommand is given).
pub fn nodes(
    client: &AdminClient,
    command: Option<NodesCommand>,
    json: bool,
) -> anyhow::Result<()> {
    match command.unwrap_or(NodesCommand::List { region: None, json }) {
        NodesCommand::List { region, json } => {
            let mut out: Value = client.get("/v1/nodes")?;
            if let (Some(region), Some(nodes)) = (&region, out["nodes"].as_array_mut()) {
                nodes.retain(|n| n["region"] == region.as_str());
            }
            if json {
                return print_json(&out);
            }
            let mut table = Table::new();
            *table.style_mut() = NOTHING;
            table.set_header(["NODE", "REGION", "STATE", "HTTP", "LABELS", "VERSION"]);
            for n in out["nodes"].as_array().into_iter().flatten() {
                let labels = n["labels"]
                    .as_object()
                    .map(|l| {
                        l.iter()
                            .map(|(k, v)| format!("{k}={}", text(v)))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                let mut id = text(&n["node"]);
                if n["self"] == true {
                    id.push_str(" (this)");
                }
                table.add_row([
                    id,
                    text(&n["region"]),
                    text(&n["admission"]),
                    text(&n["http"]),
                    labels,
                    text(&n["version"]),
                ]);
            }
            println!("{table}");
            if out["cluster"].is_null() {
                println!("(a node alone: start nodes with --cluster to join them)");
            }
            Ok(())
        }
        NodesCommand::Cordon { node } => admit(client, &node, "cordon"),
        NodesCommand::Uncordon { node } => admit(client, &node, "uncordon"),
        NodesCommand::Drain { node } => admit(client, &node, "drain"),
        NodesCommand::Remove { node } => {
            let _: Value = client.delete(&format!(
                "/v1/nodes/{}",
                crate::commands::percent_encode(&node)
            ))?;
            println!("{node}: removed from the cluster");
            Ok(())
        }
        NodesCommand::Status { node, json } => {
            let out: Value = client.get(&format!(
                "/v1/nodes/{}",
                crate::commands::percent_encode(&node)
            ))?;
            if json {
                return print_json(&out);
            }
            for (key, value) in out.as_object().into_iter().flatten() {
                println!("{key:>10}: {}", text(value));
            }
            Ok(())
        }
    }
}

fn admit(client: &AdminClient, node: &str, action: &str) -> anyhow::Result<()> {
    let out: Value = client.post_json(
        &format!(
            "/v1/nodes/{}/{action}",
            crate::commands::percent_encode(node)
        ),
        &Value::Null,
    )?;
    println!("{node}: {}", text(&out["admission"]));
    let migrating: Vec<String> = out["migrating"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if !migrating.is_empty() {
        println!(
            "migrating stateful keys away (one after another; `dwcp route status T/A` shows where they are): {}",
            migrating.join(", ")
        );
    }
    Ok(())
}

/// `dwcp scale TENANT/APP N [--region R]`: the app's replica count.
pub fn scale(
    client: &AdminClient,
    app: &str,
    replicas: u32,
    regions: &[String],
) -> anyhow::Result<()> {
    let (tenant, name) = app
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("give TENANT/APP, for example demo/hello"))?;
    let query = crate::commands::placement_query(Some(replicas), regions, "pin_region").join("&");
    let _: Value = client.send("PATCH", &format!("/v1/apps/{tenant}/{name}?{query}"))?;
    let pinned = if regions.is_empty() {
        String::new()
    } else {
        format!(" in {}", regions.join(", "))
    };
    println!(
        "{tenant}/{name}: {replicas} replica(s){pinned}; `dwcp route status {tenant}/{name}` shows where"
    );
    Ok(())
}

/// Runs `dwcp migrate`.
pub fn migrate(
    client: &AdminClient,
    app: &str,
    key: Option<String>,
    to: Option<String>,
    region: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let (tenant, name) = app
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("give TENANT/APP, for example demo/counter"))?;
    let body = serde_json::json!({ "to": to, "region": region, "key": key });
    let out: Value = client.post_json(&format!("/v1/apps/{tenant}/{name}/migrate"), &body)?;
    if json {
        return print_json(&out);
    }
    let what = match out["key"].as_str() {
        Some(key) => format!("key {key} of {app}"),
        None => format!("{app} ({} keys)", out["keys"]),
    };
    let mib = |v: &Value| v.as_f64().unwrap_or(0.0) / (1024.0 * 1024.0);
    println!(
        "moved {what} from {} to {}: {:.1} MiB copied while serving in {:.0} ms, then paused {:.1} ms ({:.2} MiB of changes); {:.0} ms in all",
        text(&out["from"]),
        text(&out["to"]),
        mib(&out["copied_bytes"]),
        out["copy_ms"].as_f64().unwrap_or(0.0),
        out["pause_ms"].as_f64().unwrap_or(0.0),
        mib(&out["delta_bytes"]),
        out["total_ms"].as_f64().unwrap_or(0.0),
    );
    Ok(())
}

/// Runs `dwcp route …`.
pub fn route(client: &AdminClient, command: RouteCommand) -> anyhow::Result<()> {
    let RouteCommand::Status { app, json } = command;
    let (tenant, name) = app
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("give TENANT/APP, for example demo/hello"))?;
    let out: Value = client.get(&format!("/v1/apps/{tenant}/{name}/route"))?;
    if json {
        return print_json(&out);
    }
    let spec = &out["spec"];
    if spec["everywhere"] == true {
        println!("{app}: a replica on every node");
    } else {
        let regions = spec["regions"]
            .as_array()
            .map(|r| r.iter().map(text).collect::<Vec<_>>().join(", "))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "any region".into());
        println!(
            "{app}: {} replica(s), {regions}",
            match &spec["replicas"] {
                Value::Null => "one per node".into(),
                n => text(n),
            }
        );
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header(["NODE", "REGION", "ALIVE", "LATENCY", "IN FLIGHT"]);
    for r in out["replicas"].as_array().into_iter().flatten() {
        let mut id = text(&r["node"]);
        if r["self"] == true {
            id.push_str(" (this)");
        }
        table.add_row([
            id,
            text(&r["region"]),
            text(&r["alive"]),
            r["latency_ms"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.2} ms")),
            text(&r["in_flight"]),
        ]);
    }
    println!("{table}");
    for reason in out["reasons"].as_array().into_iter().flatten() {
        println!("  - {}", text(reason));
    }
    println!(
        "forwarded from this node: {} (retried {})",
        text(&out["forwarded"]),
        text(&out["retried"])
    );
    Ok(())
}

/// Runs `dwcp cluster …`.
pub fn cluster(client: &AdminClient, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Health { json } => {
            let out: Value = client.get("/v1/cluster/health")?;
            if json {
                return print_json(&out);
            }
            let regions = out["regions"]
                .as_object()
                .map(|r| {
                    r.iter()
                        .map(|(k, v)| format!("{k}: {}", text(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            println!(
                "{}: {} node(s) ({regions}), {} not active; link {}; seen from {}",
                if out["healthy"] == true {
                    "healthy"
                } else {
                    "NOT healthy"
                },
                text(&out["nodes"]),
                text(&out["not_active"]),
                match (&out["cluster"], out["connected"] == true) {
                    (Value::Null, _) => "none (a node alone)".to_string(),
                    (url, true) => format!("up to {}", text(url)),
                    (url, false) => format!("DOWN to {}", text(url)),
                },
                text(&out["this_node"]),
            );
            if out["healthy"] != true {
                anyhow::bail!("the cluster is not healthy (see above)");
            }
            Ok(())
        }
    }
}
