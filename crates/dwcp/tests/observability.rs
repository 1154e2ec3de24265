//! What operators load into Prometheus and Grafana: `deploy/prometheus/alerts.yml`
//! passes `promtool check rules` and fires as `alerts_test.yml` expects,
//! `deploy/grafana/dwcp.json` is a dashboard Grafana can import, and every
//! metric either of them queries is one a real node exports.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestNode, data_dir, request_with};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `promtool`: `DWCP_PROMTOOL` (which `cargo xtask test` sets, installing
/// Debian's `prometheus` package if need be), else the first on the PATH.
fn promtool() -> Option<PathBuf> {
    if let Some(given) = std::env::var_os("DWCP_PROMTOOL") {
        return Some(PathBuf::from(given));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dashboard, parsed.
fn dashboard() -> Value {
    let path = deploy_dir().join("grafana/dwcp.json");
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, those nested in collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The PromQL of every panel's queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .into_iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect()
}

/// The `expr:` of every rule in a rule file: the rest of its line, or the
/// block that follows `expr: |`.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        let key = line.trim_start().trim_start_matches("- ");
        let Some(rest) = key.strip_prefix("expr:") else {
            continue;
        };
        // The key's column: the block is what is indented deeper.
        let indent = line.len() - key.len();
        if !rest.trim().starts_with('|') {
            out.push(rest.trim().to_string());
            continue;
        }
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let deeper = next.len() - next.trim_start().len() > indent;
            if !deeper && !next.trim().is_empty() {
                break;
            }
            block.push_str(next.trim());
            block.push('\n');
            lines.next();
        }
        out.push(block);
    }
    out
}

/// The `dwcp_…` names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(at) = rest.find("dwcp_") {
        let starts_a_name = !rest[..at].chars().next_back().is_some_and(is_name);
        let tail = &rest[at..];
        let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
        if starts_a_name {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// The dashboard's queries as recording rules, with Grafana's variables
/// replaced, so that promtool parses them too.
fn dashboard_as_rules(exprs: &[String]) -> String {
    let mut out = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$tenant", ".*")
            .replace("$app", ".*")
            .replace("$instance", ".*");
        // A JSON string is a YAML double-quoted scalar.
        let quoted = serde_json::to_string(&expr).expect("a string serializes");
        out.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {quoted}\n"
        ));
    }
    out
}

#[test]
fn promtool_accepts_the_alert_rules_their_tests_pass_and_the_dashboard_queries_parse() {
    let Some(promtool) = promtool() else {
        eprintln!(
            "NOTICE: no promtool (set DWCP_PROMTOOL, or `apt-get install prometheus`; `cargo xtask test` does): the alert rules were NOT checked"
        );
        return;
    };
    let dir = deploy_dir().join("prometheus");
    run_promtool(&promtool, &["check", "rules", "alerts.yml"], &dir);
    // Synthetic series that make each alert fire, and others that must not.
    run_promtool(&promtool, &["test", "rules", "alerts_test.yml"], &dir);

    let scratch = data_dir();
    let rules = scratch.path().join("dashboard.yml");
    std::fs::write(&rules, dashboard_as_rules(&dashboard_exprs(&dashboard())))
        .expect("write the dashboard's rules");
    run_promtool(
        &promtool,
        &["check", "rules", rules.to_str().expect("a UTF-8 path")],
        scratch.path(),
    );
}

#[test]
fn the_dashboard_has_its_variables_and_unique_panel_ids() {
    let dashboard = dashboard();
    let all = panels(&dashboard);
    let ids: Vec<u64> = all.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), all.len(), "a panel without a numeric id");
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "panel ids repeat: {ids:?}");

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("template variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable `{name}`"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    for name in ["tenant", "app"] {
        let query = variable(name)["definition"].as_str().unwrap_or("");
        assert!(query.starts_with("label_values("), "{name}: {query}");
    }
    // Every query goes to the chosen data source.
    for panel in all.iter().filter(|p| p["type"] != "row") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{panel}");
        }
    }
}

/// A request as `user` (whom a rollout's split places); its status.
fn request_as(node: &TestNode, host: &str, user: &str) -> u16 {
    request_with(node.http, "GET", host, "/", &[("x-user-id", user)]).status
}

fn rollout_phase(node: &TestNode, app: &str) -> String {
    let status: Value =
        serde_json::from_str(&node.cli_ok(&["rollout", "status", app, "--json"])).expect("JSON");
    status["rollout"]["phase"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The names of the samples in an exposition: `_total` of counters,
/// `_bucket`, `_sum` and `_count` of histograms, gauges as they are; what a
/// query reads after Prometheus stored a scrape.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_alerts_query_is_exported_by_a_node() {
    let dir = data_dir();
    let node = TestNode::start(dir.path());

    // Requests, cold starts, a 5xx and guest stops: a canary that traps,
    // aborted by the rollout's analysis.
    common::deploy_trapping_canary(&node, "demo/app");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rollout_phase(&node, "demo/app") != "aborted" {
        assert!(
            Instant::now() < deadline,
            "the trapping canary was not aborted"
        );
        for user in 0..60 {
            request_as(&node, "app.demo.localhost", &format!("user-{user}"));
        }
    }
    // Egress, denied by default.
    node.deploy("demo/fetch", "fetch", &[]);
    let reply = node.request(
        "GET",
        "fetch.demo.localhost",
        "/?url=http://localhost:1/",
        b"",
    );
    assert_eq!(reply.status, 502, "{}", reply.text());
    // A stateful app's checkpoint.
    node.deploy("demo/counter", "counter", &["--stateful"]);
    let reply = request_with(
        node.http,
        "POST",
        "counter.demo.localhost",
        "/",
        &[("x-dwcp-key", "alice")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    // A key that expires (the node's own keys do not).
    node.cli_ok(&["keys", "gen", "--publisher", "acme"]);
    let acme_pub = dir.path().join("keys/acme.pub");
    node.cli_ok(&[
        "keys",
        "trust",
        acme_pub.to_str().expect("a UTF-8 path"),
        "--valid-for",
        "90d",
    ]);

    let exposition = node.admin_get("/metrics");
    let exported = sample_names(&exposition);

    let alerts = read(&deploy_dir().join("prometheus/alerts.yml"));
    let mut used: Vec<(String, &str)> = Vec::new();
    for expr in rule_exprs(&alerts) {
        used.extend(metric_names(&expr).into_iter().map(|n| (n, "alerts.yml")));
    }
    for expr in dashboard_exprs(&dashboard()) {
        used.extend(metric_names(&expr).into_iter().map(|n| (n, "dwcp.json")));
    }
    assert!(used.len() > 10, "too few metric names found: {used:?}");
    let missing: Vec<&(String, &str)> = used
        .iter()
        .filter(|(name, _)| !exported.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );

    let value = |series: &str| -> Option<f64> {
        exposition
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    assert_eq!(
        value(r#"dwcp_rollout_decisions_total{tenant="demo",app="app",action="abort"}"#),
        Some(1.0),
        "{exposition}"
    );
    assert_eq!(
        value(r#"dwcp_egress_requests_total{tenant="demo",app="fetch",outcome="denied"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"dwcp_checkpoints_total{tenant="demo",app="counter"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(r#"dwcp_checkpoint_failures_total{tenant="demo",app="counter"}"#),
        Some(0.0)
    );
    let expiry = exposition
        .lines()
        .find(|l| {
            l.starts_with("dwcp_key_expiry_timestamp_seconds{") && l.contains(r#"name="acme""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no expiry for acme's key in\n{exposition}"));
    let in_90_days = (unix_now() + 90 * 86_400) as f64;
    assert!(
        (expiry - in_90_days).abs() < 600.0,
        "acme's key expires at {expiry}, not in 90 days"
    );
    assert!(
        !exposition.contains(r#"name="local""#),
        "a key without an expiry is exported:\n{exposition}"
    );
    assert!(
        exposition
            .lines()
            .any(|l| l.starts_with("dwcp_build_info{version=") && l.ends_with(" 1")),
        "{exposition}"
    );
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[test]
fn metric_names_are_found_whole_and_only_where_they_start() {
    let names = metric_names(
        r#"sum(rate(dwcp_requests_total{class="5xx"}[5m])) / x_dwcp_other + dwcp_live_instances"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["dwcp_live_instances", "dwcp_requests_total"]
    );
    let exprs = rule_exprs("  - expr: up == 0\n  - expr: |\n      a\n      + b\n    for: 1m\n");
    assert_eq!(exprs, ["up == 0", "a\n+ b\n"]);
}
