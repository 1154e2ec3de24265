//! `dwcp ask "…"`: plain English to one `dwcp` command. The offline engine
//! (`dwcp-ask`) names the intent and its slots; this module turns them into
//! the command a user would have typed, shows it, asks before anything
//! destructive, and runs it through the same code as the typed command.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use clap::Parser;
use dwcp_ask::{Engine, NONE, Parse};
use serde_json::{Map, Value};

use crate::cli::Cli;

/// Arguments of `dwcp ask`.
#[derive(clap::Args, Debug)]
pub struct AskArgs {
    /// What to do, in plain English (quotes optional).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// Show what would run, run nothing (needs no node).
    #[arg(long)]
    pub dry_run: bool,
    /// Print what was understood as JSON: {intent, slots, confidence[, suggestions, missing]}.
    #[arg(long)]
    pub json: bool,
    /// Run destructive steps without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// An OpenAI-compatible chat endpoint (e.g. http://127.0.0.1:8080/v1 of
    /// llama.cpp or Ollama) consulted only when the offline engine is unsure.
    #[arg(long, value_name = "URL")]
    pub llm: Option<String>,
    /// The model name sent to --llm.
    #[arg(long, default_value = "default", requires = "llm")]
    pub llm_model: String,
}

/// The global options of the `dwcp` invocation, passed on to the command run.
pub struct Globals {
    /// --admin.
    pub admin: String,
    /// --token.
    pub token: Option<String>,
    /// --tenant (DWCP_TENANT, else `default`).
    pub tenant: String,
    /// --data-dir.
    pub data_dir: Option<std::path::PathBuf>,
}

/// What a parse leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// These `dwcp` commands, in order (arguments after `dwcp`).
    Run(Vec<Vec<String>>),
    /// Text to print; nothing runs.
    Say(String),
    /// The capability is not in this build: say why, run nothing.
    NotHere(String),
}

/// Runs `dwcp ask`.
pub fn run(globals: &Globals, args: AskArgs) -> anyhow::Result<()> {
    let text = args.text.join(" ");
    let engine = Engine::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut parse = engine.parse(&text);
    if let Some(url) = &args.llm
        && unsure(&parse)
    {
        match crate::ask_llm::consult(url, &args.llm_model, engine, &text) {
            Ok(Some(better)) => parse = better,
            Ok(None) => {}
            Err(e) => eprintln!("note: --llm was not used: {e:#}"),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&parse)?);
        if args.dry_run {
            return Ok(());
        }
    }
    if parse.intent == NONE {
        bail!(
            "that does not match anything dwcp does (closest: {}); `dwcp ask help` lists what it understands",
            parse.suggestions.join(", ")
        );
    }
    let interactive = std::io::stdin().is_terminal();
    for slot in parse.missing.clone() {
        if args.dry_run || !interactive {
            bail!(
                "{}: say which {slot} (for example: dwcp ask \"{}\")",
                parse.intent,
                example_for(&parse.intent)
            );
        }
        let value = prompt(&format!("which {slot}? "))?;
        let intent = engine.spec().intent(&parse.intent).context("intent")?;
        let kind = &intent.slot(&slot).context("slot")?.kind;
        let normalized = dwcp_ask::values::normalize_written(&slot, kind, &value)
            .with_context(|| format!("`{value}` is not a {slot}"))?;
        parse.slots.insert(slot, normalized);
    }
    let plan = plan(&parse, &globals.tenant);
    let destructive = engine
        .spec()
        .intent(&parse.intent)
        .is_some_and(|i| i.destructive);
    match plan {
        Plan::Say(text) => {
            println!("{text}");
            Ok(())
        }
        Plan::NotHere(why) => bail!("understood `{}`, but {why}; nothing was run", parse.intent),
        Plan::Run(commands) => {
            for c in &commands {
                println!("plan: dwcp {}", shell_words(c));
            }
            if args.dry_run {
                return Ok(());
            }
            if destructive && !args.yes {
                if !interactive {
                    bail!("this is destructive: run it again with --yes to go ahead");
                }
                let answer = prompt("this is destructive; run it? [y/N] ")?;
                if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
                    println!("nothing was run");
                    return Ok(());
                }
            }
            for c in commands {
                let mut argv = vec!["dwcp".to_string()];
                argv.extend(c.iter().cloned());
                let mut cli = Cli::try_parse_from(&argv).with_context(|| {
                    format!("the plan `dwcp {}` does not parse", shell_words(&c))
                })?;
                cli.admin = globals.admin.clone();
                cli.token = globals.token.clone();
                cli.data_dir = globals.data_dir.clone();
                crate::commands::run(cli)
                    .with_context(|| format!("`dwcp {}` failed", shell_words(&c)))?;
            }
            Ok(())
        }
    }
}

/// Whether the engine's answer is worth a second opinion.
fn unsure(parse: &Parse) -> bool {
    parse.intent == NONE || parse.confidence < 0.7 || !parse.missing.is_empty()
}

fn prompt(question: &str) -> anyhow::Result<String> {
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Quotes arguments that a shell would split.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\*?".contains(c)) {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn example_for(intent: &str) -> String {
    match intent {
        "deploy_app" => "deploy ./app.wasm as app shop".into(),
        "set_traffic_split" => "send 10% of shop's traffic to the new version".into(),
        "set_flag_rollout" => "roll out the new-ui flag to 20% of users".into(),
        _ => format!("{} …", intent.replace('_', " ")),
    }
}

fn text(slots: &Map<String, Value>, name: &str) -> Option<String> {
    slots.get(name).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// `args` followed by `FLAG VALUE+UNIT` for each `(slot, flag, unit)` the
/// parse has a value for.
fn with_flags(
    slots: &Map<String, Value>,
    mut args: Vec<String>,
    flags: &[(&str, &str, &str)],
) -> Vec<String> {
    for (slot, flag, unit) in flags {
        if let Some(value) = text(slots, slot) {
            args.push(flag.to_string());
            args.push(format!("{value}{unit}"));
        }
    }
    args
}

/// The `dwcp` command(s) for a parse; `tenant` is used when the text named none.
pub fn plan(parse: &Parse, default_tenant: &str) -> Plan {
    let s = &parse.slots;
    let get = |name: &str| text(s, name);
    let tenant = get("tenant").unwrap_or_else(|| default_tenant.to_string());
    let app = || format!("{tenant}/{}", get("app").unwrap_or_default());
    let v = |items: &[&str]| items.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    let one = |args: Vec<String>| Plan::Run(vec![args]);
    let with_tenant = |mut rest: Vec<String>| {
        let mut args = v(&["--tenant", &tenant]);
        args.append(&mut rest);
        Plan::Run(vec![args])
    };
    let node = || get("node").unwrap_or_default();
    match parse.intent.as_str() {
        "deploy_app" => {
            let args = v(&["deploy", &app(), &get("file").unwrap_or_default()]);
            let options = [
                ("version", "--version", ""),
                ("replicas", "--replicas", ""),
                ("region", "--region", ""),
            ];
            one(with_flags(s, args, &options))
        }
        "delete_app" => one(v(&["delete", &app()])),
        "list_apps" => match get("tenant") {
            Some(t) => one(v(&["apps", "list", &t])),
            None => one(v(&["apps", "list"])),
        },
        "app_status" => one(v(&["status", &app()])),
        "scale_app" => {
            let args = v(&["scale", &app(), &get("replicas").unwrap_or_default()]);
            one(with_flags(s, args, &[("region", "--region", "")]))
        }
        "set_limits" => {
            let limits = [
                ("memory_mib", "--memory", "MiB"),
                ("cpu_ms", "--deadline", "ms"),
                ("concurrency", "--concurrency", ""),
            ];
            match with_flags(s, v(&["apps", "set", &app()]), &limits) {
                args if args.len() > 3 => one(args),
                _ => Plan::Say(
                    "say which limit: memory (e.g. 256MB), CPU time per request (e.g. 50ms) or concurrency".into(),
                ),
            }
        }
        "restart_app" => one(v(&["restart", &app()])),
        "list_versions" => one(v(&["versions", &app()])),
        "show_logs" => one(with_flags(
            s,
            v(&["logs", &app()]),
            &[("since_s", "--since", "s")],
        )),
        "show_metrics" => {
            if matches!(get("metric").as_deref(), Some("memory" | "cpu")) {
                return Plan::NotHere(
                    "per-app memory and CPU figures are not among this build's metrics (requests, latency, errors, cold starts are; `dwcp status` shows an app's memory limit)".into(),
                );
            }
            match get("app") {
                Some(_) => one(v(&["metrics", &app()])),
                None => one(v(&["metrics"])),
            }
        }
        "start_rollout" => {
            let version = get("version").unwrap_or_default();
            let args = v(&["rollout", "start", &app(), &version]);
            one(with_flags(s, args, &[("strategy", "--strategy", "")]))
        }
        "rollout_status" => one(v(&["rollout", "status", &app()])),
        "promote_rollout" => one(v(&["rollout", "promote", &app()])),
        "pause_rollout" => one(v(&["rollout", "pause", &app()])),
        "resume_rollout" => one(v(&["rollout", "resume", &app()])),
        "abort_rollout" => one(v(&["rollout", "abort", &app()])),
        "rollback_app" => one(with_flags(
            s,
            v(&["rollout", "undo", &app()]),
            &[("version", "--to", "")],
        )),
        "set_traffic_split" => {
            let percent = get("percent").unwrap_or_default();
            let args = v(&["rollout", "set-weight", &app(), &percent]);
            one(with_flags(s, args, &[("version", "--version", "")]))
        }
        "list_flags" => with_tenant(v(&["flags", "list"])),
        "create_flag" => with_tenant(v(&["flags", "create", &get("flag").unwrap_or_default()])),
        "enable_flag" => with_tenant(v(&["flags", "enable", &get("flag").unwrap_or_default()])),
        "disable_flag" => with_tenant(v(&["flags", "disable", &get("flag").unwrap_or_default()])),
        "set_flag_rollout" => with_tenant(v(&[
            "flags",
            "rollout",
            &get("flag").unwrap_or_default(),
            &get("percent").unwrap_or_default(),
        ])),
        "delete_flag" => with_tenant(v(&["flags", "delete", &get("flag").unwrap_or_default()])),
        "flag_status" => with_tenant(v(&["flags", "get", &get("flag").unwrap_or_default()])),
        "start_experiment" | "stop_experiment" | "experiment_results" => {
            experiment_plan(parse, &tenant)
        }
        "snapshot_app" => one(v(&["snapshot", &app()])),
        "list_snapshots" => one(v(&["snapshots", &app()])),
        "restore_app" => match get("snapshot") {
            None => one(v(&["restore", &app()])),
            Some(n) if n.bytes().all(|b| b.is_ascii_digit()) => one(v(&["restore", &app(), &n])),
            Some(name) => Plan::NotHere(format!(
                "snapshots here are numbered, not named (`dwcp snapshots {}` lists them); there is no snapshot called {name}",
                app()
            )),
        },
        "migrate_app" => match (get("node"), get("region")) {
            (Some(node), _) => one(v(&["migrate", &app(), "--to", &node])),
            (None, Some(region)) => one(v(&["migrate", &app(), "--region", &region])),
            (None, None) => Plan::Say(format!(
                "say where {} should go: a node (`to node edge-2`) or a region (`to us-east`)",
                app()
            )),
        },
        "list_nodes" => one(with_flags(
            s,
            v(&["nodes", "list"]),
            &[("region", "--region", "")],
        )),
        "node_status" => one(v(&["nodes", "status", &get("node").unwrap_or_default()])),
        "cluster_health" => one(v(&["cluster", "health"])),
        "drain_node" => one(v(&["nodes", "drain", &node()])),
        "cordon_node" => one(v(&["nodes", "cordon", &node()])),
        "uncordon_node" => one(v(&["nodes", "uncordon", &node()])),
        "remove_node" => one(v(&["nodes", "remove", &node()])),
        "pin_region" => one(v(&[
            "apps",
            "set",
            &app(),
            "--pin-region",
            &get("region").unwrap_or_default(),
        ])),
        "route_status" => one(v(&["route", "status", &app()])),
        "purge_cache" => {
            let target = match (get("tenant"), get("app")) {
                (_, Some(_)) => Some(app()),
                (Some(t), None) => Some(t),
                (None, None) => None,
            };
            let mut args = v(&["cache", "purge"]);
            args.extend(target);
            one(with_flags(s, args, &[("path", "--path", "")]))
        }
        "cache_stats" => one(v(&["cache", "stats"])),
        "set_cache_ttl" => one(with_flags(
            s,
            v(&["apps", "set", &app()]),
            &[("ttl_s", "--cache-ttl", "s")],
        )),
        "rotate_keys" => {
            let scope = get("scope").unwrap_or_else(|| "publisher".into());
            one(v(&["keys", "rotate", "--scope", &scope]))
        }
        "list_keys" => one(v(&["keys", "list"])),
        "trust_key" => one(v(&["keys", "trust", &get("key").unwrap_or_default()])),
        "revoke_key" => one(v(&["keys", "revoke", &get("key").unwrap_or_default()])),
        "verify_artifact" => one(v(&["verify", &get("file").unwrap_or_default()])),
        "create_tenant" => one(v(&["tenants", "create", &tenant])),
        "delete_tenant" => one(v(&["tenants", "delete", &tenant])),
        "list_tenants" => one(v(&["tenants", "list"])),
        "set_tenant_quota" => {
            let quota = [
                ("memory_mib", "--memory", "MiB"),
                ("instances", "--instances", ""),
            ];
            match with_flags(s, v(&["tenants", "quota", &tenant]), &quota) {
                args if args.len() > 3 => one(args),
                _ => Plan::Say("say which quota: memory (e.g. 4GB) or instances (e.g. 20)".into()),
            }
        }
        "gen_terraform" | "gen_k8s" | "gen_ansible" => {
            let target = parse.intent.trim_start_matches("gen_");
            let options = [
                ("nodes", "--nodes", ""),
                ("region", "--region", ""),
                ("provider", "--provider", ""),
                ("namespace", "--namespace", ""),
            ];
            one(with_flags(s, v(&["gen", target]), &options))
        }
        "run_benchmark" => match get("kind").as_deref() {
            None | Some("all") => Plan::Run(
                ["coldstart", "http", "codec", "crypto", "rollout"]
                    .iter()
                    .map(|k| v(&["bench", k]))
                    .collect(),
            ),
            Some(kind) => one(v(&["bench", kind])),
        },
        "help" => Plan::Say(help(get("topic").as_deref())),
        other => Plan::NotHere(format!("this build has no command for {other}")),
    }
}

/// Experiments are kept per app here: an experiment's name is the app's,
/// or the flag it compares.
fn experiment_plan(parse: &Parse, tenant: &str) -> Plan {
    let s = &parse.slots;
    let get = |name: &str| text(s, name);
    let target = get("app").or_else(|| get("experiment")).unwrap_or_default();
    let app = format!("{tenant}/{target}");
    let args = |items: &[&str]| vec![items.iter().map(|i| i.to_string()).collect::<Vec<_>>()];
    match parse.intent.as_str() {
        "stop_experiment" => Plan::Run(args(&["experiment", "stop", &app])),
        "experiment_results" => Plan::Run(args(&["experiment", "results", &app])),
        _ => match get("experiment") {
            // A named experiment compares the variants of the flag of that name.
            Some(flag) => {
                let split = get("percent").unwrap_or_else(|| "50".into());
                Plan::Run(args(&[
                    "experiment",
                    "start",
                    &app,
                    "--flag",
                    &flag,
                    "--split",
                    &split,
                ]))
            }
            None => Plan::NotHere(format!(
                "an experiment here compares the stable version with another version or a flag's variants; say which (e.g. `dwcp experiment start {app} v3 --split 20`)"
            )),
        },
    }
}

/// What `dwcp ask` understands, by group, or the intents of one topic.
pub fn help(topic: Option<&str>) -> String {
    let spec = dwcp_ask::Spec::builtin();
    let wanted = |group: &str, name: &str| match topic {
        None => true,
        Some(t) => {
            let t = t.trim_end_matches('s');
            group.contains(t) || name.contains(t)
        }
    };
    let mut out = String::from("dwcp ask understands:\n");
    let mut any = false;
    for intent in spec.intents.iter().filter(|i| wanted(&i.group, &i.name)) {
        any = true;
        out.push_str(&format!(
            "  {:<20} {}{}\n",
            intent.name,
            intent.summary,
            if intent.destructive {
                " (asks first)"
            } else {
                ""
            }
        ));
    }
    if !any {
        out = format!(
            "nothing about {} here; `dwcp ask help` lists everything",
            topic.unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(intent: &str, slots: Value) -> Parse {
        Parse {
            intent: intent.into(),
            slots: slots.as_object().cloned().unwrap_or_default(),
            confidence: 1.0,
            suggestions: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// Every intent, with every slot it can take, plans commands the CLI
    /// itself accepts (or says plainly that it cannot).
    #[test]
    fn every_plan_is_a_command_the_cli_parses() {
        let sample = |name: &str| -> Value {
            match name {
                "tenant" => "acme".into(),
                "file" => "./app.wasm".into(),
                "version" => "v2".into(),
                "region" => "eu-west".into(),
                "replicas" | "nodes" | "concurrency" | "instances" => 3.into(),
                "memory_mib" => 256.into(),
                "cpu_ms" => 50.into(),
                "since_s" | "ttl_s" => 300.into(),
                "percent" => 20.into(),
                "metric" => "latency".into(),
                "strategy" => "canary".into(),
                "provider" => "aws".into(),
                "scope" => "node".into(),
                "kind" => "http".into(),
                "snapshot" => "12".into(),
                "path" => "/static/logo.png".into(),
                "namespace" => "dwcp".into(),
                _ => "thing".into(),
            }
        };
        for intent in &dwcp_ask::Spec::builtin().intents {
            for all in [false, true] {
                let slots: Map<String, Value> = intent
                    .slots
                    .iter()
                    .filter(|s| s.required || all)
                    .map(|s| (s.name.clone(), sample(&s.name)))
                    .collect();
                let p = parse(&intent.name, Value::Object(slots));
                match plan(&p, "default") {
                    Plan::Run(commands) => {
                        for c in commands {
                            let mut argv = vec!["dwcp".to_string()];
                            argv.extend(c.clone());
                            if let Err(e) = Cli::try_parse_from(&argv) {
                                panic!("{}: `dwcp {}`: {e}", intent.name, shell_words(&c));
                            }
                        }
                    }
                    Plan::Say(text) | Plan::NotHere(text) => assert!(!text.is_empty()),
                }
            }
        }
    }

    #[test]
    fn the_tenant_comes_from_the_text_else_the_default() {
        let named = parse(
            "delete_app",
            serde_json::json!({"tenant": "acme", "app": "cart"}),
        );
        assert_eq!(
            plan(&named, "demo"),
            Plan::Run(vec![vec!["delete".into(), "acme/cart".into()]])
        );
        let unnamed = parse("delete_app", serde_json::json!({"app": "cart"}));
        assert_eq!(
            plan(&unnamed, "demo"),
            Plan::Run(vec![vec!["delete".into(), "demo/cart".into()]])
        );
    }

    #[test]
    fn optional_slots_become_flags_with_their_units() {
        let args = |intent: &str, slots: Value| match plan(&parse(intent, slots), "demo") {
            Plan::Run(mut commands) => commands.remove(0),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            args(
                "rollback_app",
                serde_json::json!({"app": "cart", "version": "v2"})
            ),
            ["rollout", "undo", "demo/cart", "--to", "v2"]
        );
        assert_eq!(
            args(
                "show_logs",
                serde_json::json!({"app": "cart", "since_s": 300})
            ),
            ["logs", "demo/cart", "--since", "300s"]
        );
        assert_eq!(
            args(
                "set_traffic_split",
                serde_json::json!({"app": "cart", "percent": 10})
            ),
            ["rollout", "set-weight", "demo/cart", "10"]
        );
    }

    #[test]
    fn cluster_intents_plan_their_commands() {
        let run = |intent: &str, slots: serde_json::Value| match plan(&parse(intent, slots), "demo")
        {
            Plan::Run(steps) => steps[0].join(" "),
            other => panic!("{intent}: {other:?}"),
        };
        assert_eq!(
            run(
                "scale_app",
                serde_json::json!({"app": "cart", "replicas": 3, "region": "eu-west"})
            ),
            "scale demo/cart 3 --region eu-west"
        );
        assert_eq!(
            run(
                "deploy_app",
                serde_json::json!({"app": "a", "file": "a.wasm", "replicas": 2, "region": "eu-west"})
            ),
            "deploy demo/a a.wasm --replicas 2 --region eu-west"
        );
        assert_eq!(
            run("drain_node", serde_json::json!({"node": "edge-2"})),
            "nodes drain edge-2"
        );
        assert_eq!(
            run(
                "pin_region",
                serde_json::json!({"app": "cart", "region": "us-east"})
            ),
            "apps set demo/cart --pin-region us-east"
        );
        assert_eq!(
            run(
                "purge_cache",
                serde_json::json!({"app": "cart", "path": "/api"})
            ),
            "cache purge demo/cart --path /api"
        );
        assert_eq!(run("purge_cache", serde_json::json!({})), "cache purge");
        assert_eq!(
            run(
                "set_cache_ttl",
                serde_json::json!({"app": "cart", "ttl_s": 30})
            ),
            "apps set demo/cart --cache-ttl 30s"
        );
        assert_eq!(
            run(
                "migrate_app",
                serde_json::json!({"app": "cart", "node": "edge-2"})
            ),
            "migrate demo/cart --to edge-2"
        );
        assert_eq!(
            run(
                "migrate_app",
                serde_json::json!({"tenant": "acme", "app": "auth", "region": "us-east"})
            ),
            "migrate acme/auth --region us-east"
        );
        assert!(matches!(
            plan(
                &parse("migrate_app", serde_json::json!({"app": "cart"})),
                "demo"
            ),
            Plan::Say(_)
        ));
    }
}
