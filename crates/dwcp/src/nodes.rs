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
