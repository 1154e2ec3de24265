//! `dwcp snapshot`, `snapshots` and `restore`: a stateful app's keys and
//! their checkpoints.

use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::cli::{KeyArgs, RestoreArgs};
use crate::client::AdminClient;
use crate::commands::{age, bytes, percent_encode, print_json, split_app, text};

fn path(
    default_tenant: &str,
    args: &KeyArgs,
    suffix: &str,
    seq: Option<u64>,
) -> anyhow::Result<String> {
    let (tenant, app) = split_app(default_tenant, &args.app)?;
    let mut query = Vec::new();
    if let Some(key) = &args.key {
        query.push(format!("key={}", percent_encode(key)));
    }
    if let Some(seq) = seq {
        query.push(format!("seq={seq}"));
    }
    Ok(format!(
        "/v1/apps/{tenant}/{app}/snapshots{suffix}?{}",
        query.join("&")
    ))
}

/// Prints checkpoints as a table (or JSON).
fn print(rows: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(rows);
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header([
        "KEY", "SEQ", "VERSION", "KIND", "SIZE", "MEMORY", "TAKEN", "WHY",
    ]);
    for r in rows.as_array().cloned().unwrap_or_default() {
        let kind = match r["base"].as_u64() {
            Some(base) => format!("delta of {base}"),
            None => "full".into(),
        };
        table.add_row([
            text(&r["key"]),
            text(&r["seq"]),
            text(&r["version"]),
            kind,
            bytes(r["bytes"].as_u64()),
            bytes(r["memory_bytes"].as_u64()),
            age(r["taken_at"].as_u64()),
            text(&r["reason"]),
        ]);
    }
    println!("{table}");
    Ok(())
}

/// `dwcp snapshot`.
pub fn snapshot(client: &AdminClient, default_tenant: &str, args: KeyArgs) -> anyhow::Result<()> {
    let path = path(default_tenant, &args, "", None)?;
    let rows: Value = crate::client::with_spinner("checkpointing", || client.send("POST", &path))?;
    print(&rows, args.json)
}

/// `dwcp snapshots`.
pub fn snapshots(client: &AdminClient, default_tenant: &str, args: KeyArgs) -> anyhow::Result<()> {
    let rows: Value = client.get(&path(default_tenant, &args, "", None)?)?;
    print(&rows, args.json)
}

/// `dwcp restore`.
pub fn restore(
    client: &AdminClient,
    default_tenant: &str,
    args: RestoreArgs,
) -> anyhow::Result<()> {
    let path = path(default_tenant, &args.target, "/restore", args.snapshot)?;
    let rows: Value = crate::client::with_spinner("restoring", || client.send("POST", &path))?;
    if !args.target.json {
        println!("restored; the next request to each key resumes from:");
    }
    print(&rows, args.target.json)
}
