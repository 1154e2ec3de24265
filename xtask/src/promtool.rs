//! `promtool`, which checks and unit-tests `deploy/prometheus/alerts.yml`
//! in the observability test: Debian's `prometheus` package, installed with
//! apt-get when no `promtool` is on the PATH.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// Finds `promtool` (`DWCP_PROMTOOL`, else the PATH), installing Debian's
/// `prometheus` package when there is none, and returns the environment the
/// observability test reads (`DWCP_PROMTOOL`).
pub fn install() -> anyhow::Result<Vec<(String, OsString)>> {
    if let Some(given) = std::env::var_os("DWCP_PROMTOOL") {
        return Ok(vec![("DWCP_PROMTOOL".into(), given)]);
    }
    if let Some(found) = on_path() {
        return Ok(vec![("DWCP_PROMTOOL".into(), found.into_os_string())]);
    }
    eprintln!("installing Debian's prometheus package (promtool, for the alert rules' tests)");
    let install = || apt(&["install", "-y", "--no-install-recommends", "prometheus"]);
    // Missing or stale package lists make the install fail: refresh them
    // once and try again.
    if install().is_err() {
        apt(&["update"])?;
        install()?;
    }
    let found = on_path()
        .context("the prometheus package is installed, but promtool is not on the PATH")?;
    Ok(vec![("DWCP_PROMTOOL".into(), found.into_os_string())])
}

/// The first `promtool` file on the PATH.
fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        // Never stop to ask (tzdata and friends).
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
