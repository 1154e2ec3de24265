//! `dwcp rollout …` and the strategy flags of `deploy` and `apps set`.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::AdminClient;
use crate::commands::{percent_encode, print_json, split_app, text};

/// How a new version takes over (`deploy`, `rollout start`, `apps set`).
#[derive(Args, Debug, Default, Clone)]
pub struct StrategyFlags {
    /// immediate (all at once: the default), canary (a growing share of
    /// users, checked at each step) or blue-green (warmed and checked, then
    /// all at once).
    #[arg(long, value_name = "STRATEGY", value_parser = ["immediate", "canary", "blue-green"])]
    pub strategy: Option<String>,
    /// Canary steps in percent of users (default 1,5,25,50,100).
    #[arg(long, value_name = "PERCENTS")]
    pub steps: Option<String>,
    /// The least time at each canary step (default 60s).
    #[arg(long, value_name = "DURATION")]
    pub step_time: Option<String>,
    /// Abort when the canary's error rate exceeds stable's by more than this
    /// many percentage points (default 0.5).
    #[arg(long, value_name = "POINTS")]
    pub max_error_increase: Option<String>,
    /// Abort when the canary is slower than stable by more than this many
    /// percent (default 20).
    #[arg(long, value_name = "PERCENT")]
    pub max_latency_increase: Option<String>,
    /// Requests each version needs before anything is decided (default 200).
    #[arg(long, value_name = "N")]
    pub min_samples: Option<u64>,
    /// The analysis's false-abort rate over a whole rollout (default 0.01).
    #[arg(long, value_name = "RATE")]
    pub alpha: Option<String>,
}

impl StrategyFlags {
    /// The flags as query parameters (empty when none is given).
    pub fn query(&self) -> Vec<String> {
        let pairs = [
            ("strategy", self.strategy.clone()),
            ("steps", self.steps.clone()),
            ("step", self.step_time.clone()),
            ("max_error_increase", self.max_error_increase.clone()),
            ("max_latency_increase", self.max_latency_increase.clone()),
            ("min_samples", self.min_samples.map(|n| n.to_string())),
            ("alpha", self.alpha.clone()),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some(format!("{k}={}", percent_encode(&v?))))
            .collect()
    }
}

/// `dwcp rollout`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Roll out a version already uploaded.
    ///
    /// Example: dwcp rollout start demo/shop v3 --strategy canary --steps 5,25,100 --step-time 2m
    Start {
        /// TENANT/APP.
        app: String,
        /// The version (`dwcp versions` lists them).
        version: String,
        #[command(flatten)]
        strategy: StrategyFlags,
        /// Print the rollout's status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Where the rollout stands, and every decision with its numbers.
    ///
    /// Example: dwcp rollout status demo/shop
    Status(RolloutApp),
    /// Send all traffic to the new version now.
    ///
    /// Example: dwcp rollout promote demo/shop
    Promote(RolloutApp),
    /// Hold the new version's share where it is.
    ///
    /// Example: dwcp rollout pause demo/shop
    Pause(RolloutApp),
    /// Carry on a paused rollout.
    ///
    /// Example: dwcp rollout resume demo/shop
    Resume(RolloutApp),
    /// Send all traffic back to the stable version.
    ///
    /// Example: dwcp rollout abort demo/shop
    Abort(RolloutApp),
    /// Abort a rollout in progress, or put the previous version (or --to)
    /// back from the next request.
    ///
    /// Example: dwcp rollout undo demo/shop --to v1
    Undo {
        /// TENANT/APP.
        app: String,
        /// The version to go back to (default: the one before the stable one).
        #[arg(long)]
        to: Option<String>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the new version's share of users and pause there (with
    /// --version and no rollout in progress: start a canary of that version
    /// at this share).
    ///
    /// Example: dwcp rollout set-weight demo/shop 10 --version v3
    SetWeight {
        /// TENANT/APP.
        app: String,
        /// Percent of users, 0 to 100.
        percent: String,
        /// The version that gets them.
        #[arg(long)]
        version: Option<String>,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An app whose rollout a command acts on.
#[derive(Args, Debug)]
pub struct RolloutApp {
    /// TENANT/APP.
    pub app: String,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `dwcp rollout` command.
pub fn run(
    client: &AdminClient,
    default_tenant: &str,
    command: RolloutCommand,
) -> anyhow::Result<()> {
    let path = |app: &str| -> anyhow::Result<String> {
        let (tenant, app) = split_app(default_tenant, app)?;
        Ok(format!("/v1/apps/{tenant}/{app}/rollout"))
    };
    let (status, json): (Value, bool) = match command {
        RolloutCommand::Start {
            app,
            version,
            strategy,
            json,
        } => {
            let mut query = vec![format!("version={}", percent_encode(&version))];
            query.extend(strategy.query());
            let url = format!("{}?{}", path(&app)?, query.join("&"));
            (client.send("POST", &url)?, json)
        }
        RolloutCommand::Status(a) => (client.get(&path(&a.app)?)?, a.json),
        RolloutCommand::Promote(a) => (client.send("POST", &(path(&a.app)? + "/promote"))?, a.json),
        RolloutCommand::Pause(a) => (client.send("POST", &(path(&a.app)? + "/pause"))?, a.json),
        RolloutCommand::Resume(a) => (client.send("POST", &(path(&a.app)? + "/resume"))?, a.json),
        RolloutCommand::Abort(a) => (client.send("POST", &(path(&a.app)? + "/abort"))?, a.json),
        RolloutCommand::Undo { app, to, json } => {
            let mut url = path(&app)? + "/undo";
            if let Some(to) = to {
                url.push_str(&format!("?to={}", percent_encode(&to)));
            }
            (client.send("POST", &url)?, json)
        }
        RolloutCommand::SetWeight {
            app,
            percent,
            version,
            json,
        } => {
            let mut url = format!(
                "{}/weight?percent={}",
                path(&app)?,
                percent_encode(&percent)
            );
            if let Some(version) = version {
                url.push_str(&format!("&version={}", percent_encode(&version)));
            }
            (client.send("POST", &url)?, json)
        }
    };
    if json {
        return print_json(&status);
    }
    print_status(&status);
    Ok(())
}

/// The human form of a rollout status.
fn print_status(s: &Value) {
    let app = format!("{}/{}", text(&s["tenant"]), text(&s["app"]));
    let r = &s["rollout"];
    if r.is_null() {
        println!(
            "{app}: {} serves everyone; no rollout yet",
            text(&s["stable"])
        );
    } else {
        let phase = r["phase"]["phase"].as_str().unwrap_or("?");
        let strategy = r["strategy"]["kind"].as_str().unwrap_or("?");
        let weight = r["weight_percent"].as_f64().unwrap_or(0.0);
        let headline = match phase {
            "promoted" => format!(
                "{} was promoted ({strategy}); it serves everyone",
                text(&r["version"])
            ),
            "aborted" => format!(
                "the rollout of {} was aborted ({strategy}); {} serves everyone",
                text(&r["version"]),
                text(&s["stable"])
            ),
            "warming" => format!("warming {} before a blue-green switch", text(&r["version"])),
            _ => format!(
                "rolling out {} over {} ({strategy}), {phase} at {weight}% of users",
                text(&r["version"]),
                text(&r["baseline"])
            ),
        };
        println!("{app}: {headline}");
        if let Some(live) = r["live"].as_object() {
            for (side, name) in [("stable", &r["baseline"]), ("canary", &r["version"])] {
                let arm = &live[side];
                let requests = arm["requests"].as_u64().unwrap_or(0);
                let errors = arm["errors"].as_u64().unwrap_or(0);
                let rate = if requests == 0 {
                    0.0
                } else {
                    errors as f64 * 100.0 / requests as f64
                };
                println!(
                    "  {side:<6} {:<8} {requests:>9} requests {errors:>7} errors ({rate:.2}%)  {:.2} ms",
                    text(name),
                    arm["latency_ms"].as_f64().unwrap_or(0.0)
                );
            }
        }
        println!("  decisions:");
        for d in r["decisions"].as_array().into_iter().flatten() {
            let at = d["at"]
                .as_u64()
                .map(|t| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                    )
                    .to_string()
                })
                .unwrap_or_default();
            let weight = d["weight_bp"].as_f64().unwrap_or(0.0) / 100.0;
            println!(
                "    {at}  {:<10} {weight:>6}%  {}",
                text(&d["action"]),
                text(&d["reason"])
            );
            for reading in d["readings"].as_array().into_iter().flatten() {
                println!(
                    "        {:<10} stable {:.4}  canary {:.4}  p = {:.3e} (α {})",
                    text(&reading["metric"]),
                    reading["stable"].as_f64().unwrap_or(0.0),
                    reading["canary"].as_f64().unwrap_or(0.0),
                    reading["p_value"].as_f64().unwrap_or(1.0),
                    reading["alpha"].as_f64().unwrap_or(0.0),
                );
            }
        }
    }
    if let Some(previous) = s["previous"].as_str() {
        println!("  previous {previous} is kept warm: `dwcp rollout undo {app}` goes back to it");
    }
}
