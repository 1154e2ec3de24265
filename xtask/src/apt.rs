//! Debian packages the tests need (chromium, promtool), installed with
//! apt-get when missing.

use std::process::Command;

use anyhow::{Context, bail};

/// Installs `packages`; missing or stale package lists make the first try
/// fail, so the lists are refreshed once and the install tried again.
pub fn install(packages: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args).is_err() {
        apt(&["update"])?;
        apt(&args)?;
    }
    Ok(())
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
