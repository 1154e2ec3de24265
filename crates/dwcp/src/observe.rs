//! `dwcp logs` and `dwcp metrics`: what apps are doing.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::cli::{LogsArgs, MetricsArgs};
use crate::client::AdminClient;
use crate::commands::{print_json, split_app, text};

/// `dwcp logs TENANT/APP [--since 5m] [--follow] [--json]`.
pub fn logs(client: &AdminClient, default_tenant: &str, args: LogsArgs) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, &args.app)?;
    let since = match &args.since {
        Some(s) => since_ms(s)?,
        None => 0,
    };
    let path = format!(
        "/v1/apps/{tenant}/{app}/logs?since={since}&follow={}",
        args.follow
    );
    let mut out = std::io::stdout().lock();
    client.get_lines(&path, args.follow, |line| {
        if args.json {
            writeln!(out, "{line}")?;
        } else {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("unexpected line from the admin API: {line}"))?;
            writeln!(out, "{}", human_line(&v))?;
        }
        // Flushed per line: `--follow` is read as it comes.
        out.flush()?;
        Ok(())
    })
}

/// `2026-11-27T10:00:00.123Z v2 stderr| text`.
fn human_line(v: &Value) -> String {
    if let Some(n) = v["skipped"].as_u64() {
        return format!("… {n} lines skipped: this reader fell behind");
    }
    let at = UNIX_EPOCH + Duration::from_millis(v["at_ms"].as_u64().unwrap_or(0));
    format!(
        "{} {} {:>6}| {}",
        humantime::format_rfc3339_millis(at),
        text(&v["version"]),
        text(&v["stream"]),
        printable(&text(&v["text"]))
    )
}

/// A guest's text with control characters escaped: what a guest prints
/// must not drive the operator's terminal (colours, cursor moves, titles).
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() && c != '\t' {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// `--since`: a duration ago (`5m`) or a point in time (RFC 3339), in Unix ms.
fn since_ms(s: &str) -> anyhow::Result<u64> {
    let at = match humantime::parse_duration(s) {
        Ok(ago) => SystemTime::now()
            .checked_sub(ago)
            .context("--since reaches before 1970")?,
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|_| {
            anyhow::anyhow!("--since `{s}`: write a duration (`30s`, `5m`, `2h`) or a time (`2026-11-27T10:00:00Z`)")
        })?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// `dwcp metrics [TENANT/APP] [--window 5m] [--json]`.
pub fn metrics(
    client: &AdminClient,
    default_tenant: &str,
    args: MetricsArgs,
) -> anyhow::Result<()> {
    let window = humantime::parse_duration(&args.window)
        .ok()
        .filter(|w| (10..=900).contains(&w.as_secs()))
        .with_context(|| {
            format!(
                "--window `{}`: give a duration from `10s` to `15m`",
                args.window
            )
        })?
        .as_secs();
    let path = match &args.app {
        Some(app) => {
            let (tenant, app) = split_app(default_tenant, app)?;
            format!("/v1/metrics?tenant={tenant}&app={app}&window={window}")
        }
        None => format!("/v1/metrics?window={window}"),
    };
    let apps: Value = client.get(&path)?;
    if args.json {
        return print_json(&apps);
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header([
        "APP",
        "VERSION",
        "REQ/S",
        "P50",
        "P99",
        "ERRORS",
        "COLD STARTS",
    ]);
    for a in apps.as_array().cloned().unwrap_or_default() {
        table.add_row([
            format!("{}/{}", text(&a["tenant"]), text(&a["app"])),
            text(&a["active_version"]),
            format!("{:.2}", a["requests_per_second"].as_f64().unwrap_or(0.0)),
            millis(&a["p50_ms"]),
            millis(&a["p99_ms"]),
            format!(
                "{} ({:.1}%)",
                text(&a["errors"]),
                a["error_rate"].as_f64().unwrap_or(0.0) * 100.0
            ),
            text(&a["cold_starts"]),
        ]);
    }
    println!(
        "over the last {}:",
        humantime::format_duration(Duration::from_secs(window))
    );
    println!("{table}");
    Ok(())
}

/// `1.2 ms`, or `-` when there were no requests.
fn millis(v: &Value) -> String {
    match v.as_f64() {
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{ms:.0} ms"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_guests_are_escaped() {
        assert_eq!(printable("ok\tfine é"), "ok\tfine é");
        assert_eq!(printable("\u{1b}[31mred\u{7}"), "\\u{1b}[31mred\\u{7}");
    }

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let five_minutes_ago = since_ms("5m").unwrap();
        assert!((now - 300_000 - 1_000..=now - 300_000 + 1_000).contains(&five_minutes_ago));
        assert_eq!(since_ms("2026-11-27T10:00:00Z").unwrap(), 1_795_773_600_000);
        assert!(since_ms("yesterday").is_err());
    }
}
