//! `dwcp experiment …`: A/B experiments between two versions of an app.

use clap::Subcommand;
use serde_json::Value;

use crate::client::AdminClient;
use crate::commands::{percent_encode, print_json, split_app, text};

/// `dwcp experiment`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum ExperimentCommand {
    /// Split users between the stable version (control) and VERSION, or
    /// compare two variants of a flag (--flag), and count each one's users
    /// and conversions on this app.
    ///
    /// Example: dwcp experiment start demo/shop v3 --split 50 --conversion header
    Start {
        /// TENANT/APP.
        app: String,
        /// The treatment version (already uploaded); or give --flag.
        #[arg(required_unless_present = "flag", conflicts_with = "flag")]
        version: Option<String>,
        /// Compare two variants of this flag of the app's tenant instead.
        #[arg(long, value_name = "KEY")]
        flag: Option<String>,
        /// The flag's control variant (default: its default variant).
        #[arg(long, requires = "flag")]
        control: Option<String>,
        /// The flag's treatment variant (default: its other variant).
        #[arg(long, requires = "flag")]
        treatment: Option<String>,
        /// The treatment's share of users in percent (for a flag: the share
        /// its targeting gives, which the sample-ratio check expects).
        #[arg(long, default_value = "50")]
        split: String,
        /// What a conversion is: `header` (the app's response carries
        /// x-dwcp-conversion), `header:NAME`, or `status:2xx` (a status class).
        #[arg(long, default_value = "header")]
        conversion: String,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop splitting (everyone back on the control); the results stay.
    ///
    /// Example: dwcp experiment stop demo/shop
    Stop {
        /// TENANT/APP.
        app: String,
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The effect with its always-valid interval, and the sample-ratio check.
    ///
    /// Example: dwcp experiment results demo/shop --json
    Results {
        /// TENANT/APP.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `dwcp experiment` command.
pub fn run(
    client: &AdminClient,
    default_tenant: &str,
    command: ExperimentCommand,
) -> anyhow::Result<()> {
    let path = |app: &str| -> anyhow::Result<String> {
        let (tenant, app) = split_app(default_tenant, app)?;
        Ok(format!("/v1/apps/{tenant}/{app}/experiment"))
    };
    let (status, json): (Value, bool) = match command {
        ExperimentCommand::Start {
            app,
            version,
            flag,
            control,
            treatment,
            split,
            conversion,
            json,
        } => {
            let mut query = vec![
                format!("split={}", percent_encode(&split)),
                format!("conversion={}", percent_encode(&conversion)),
            ];
            for (key, value) in [
                ("version", version),
                ("flag", flag),
                ("control", control),
                ("treatment", treatment),
            ] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", percent_encode(&v)));
                }
            }
            let url = format!("{}?{}", path(&app)?, query.join("&"));
            (client.send("POST", &url)?, json)
        }
        ExperimentCommand::Stop { app, json } => {
            (client.send("POST", &(path(&app)? + "/stop"))?, json)
        }
        ExperimentCommand::Results { app, json } => (client.get(&path(&app)?)?, json),
    };
    if json {
        return print_json(&status);
    }
    print_results(&status);
    Ok(())
}

fn print_results(s: &Value) {
    let r = &s["results"];
    let state = if s["running"].as_bool() == Some(true) {
        "running"
    } else {
        "stopped"
    };
    let over = match s["flag"].as_str() {
        Some(flag) => format!("flag {flag}: variant "),
        None => String::new(),
    };
    println!(
        "{}/{}: experiment {over}{} (treatment, {}% of users) against {} (control), {state}",
        text(&s["tenant"]),
        text(&s["app"]),
        text(&s["treatment"]),
        s["split_percent"].as_f64().unwrap_or(0.0),
        text(&s["control"]),
    );
    let conversion = match s["conversion"]["kind"].as_str() {
        Some("header") => format!("the response carries {}", text(&s["conversion"]["value"])),
        Some("status_class") => format!("a {}xx status", text(&s["conversion"]["value"])),
        _ => "?".into(),
    };
    println!("  conversion: {conversion}");
    for (side, version) in [("control", &s["control"]), ("treatment", &s["treatment"])] {
        let v = &r[side];
        println!(
            "  {side:<9} {:<8} {:>9} exposures {:>9} conversions  {:.2}%",
            text(version),
            v["exposures"].as_u64().unwrap_or(0),
            v["conversions"].as_u64().unwrap_or(0),
            v["rate"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    let points = |v: &Value| v.as_f64().unwrap_or(0.0) * 100.0;
    let lift = r["relative_lift"]
        .as_f64()
        .map(|l| format!(" (lift {:+.1}%)", l * 100.0))
        .unwrap_or_default();
    println!(
        "  effect {:+.2} points{lift}; {:.0}% always-valid interval [{:+.2}, {:+.2}] points; p = {:.3e}",
        points(&r["effect"]),
        (1.0 - r["alpha"].as_f64().unwrap_or(0.05)) * 100.0,
        points(&r["interval"]["lower"]),
        points(&r["interval"]["upper"]),
        r["p_value"].as_f64().unwrap_or(1.0),
    );
    let srm = &r["srm"];
    println!(
        "  sample ratio: treatment {:.2}% of exposures against {:.2}% planned, p = {:.3e}{}",
        srm["observed_share"].as_f64().unwrap_or(0.0) * 100.0,
        srm["expected_share"].as_f64().unwrap_or(0.0) * 100.0,
        srm["p_value"].as_f64().unwrap_or(1.0),
        if srm["mismatch"].as_bool() == Some(true) {
            ": MISMATCH, the split is not what was planned; do not trust the effect"
        } else {
            ""
        }
    );
    let verdict = match r["verdict"].as_str() {
        Some("not_enough_data") => "not enough data yet".to_string(),
        Some("no_detectable_effect") => "no effect detected (so far)".to_string(),
        Some("treatment_better") => "the treatment converts better".to_string(),
        Some("treatment_worse") => "the treatment converts worse".to_string(),
        Some("sample_ratio_mismatch") => "sample ratio mismatch: fix the split first".to_string(),
        other => other.unwrap_or("?").to_string(),
    };
    println!("  verdict: {verdict}");
}
